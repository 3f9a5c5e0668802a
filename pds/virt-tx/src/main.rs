//! The `virt_tx` protection domain: sDDF's `.net_virt_tx_config` plus netvm's options in, the
//! [`virt_tx::VirtTx`] logic behind Microkit's event loop.
#![cfg_attr(target_os = "none", no_std, no_main)]

use sddf::config::NetVirtTxConfig;
use sddf::options::NetOptions;
use sddf::pd::{fail, MicrokitNotifier};
use sddf::shm::IdentityMapped;

microkit::config_section!(".net_virt_tx_config", CONFIG: [u8; core::mem::size_of::<NetVirtTxConfig>()]);
microkit::config_section!(".netvm_net_options", OPTIONS: [u8; core::mem::size_of::<NetOptions>()]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);

struct Pd(virt_tx::VirtTx<'static>);

impl microkit::Handler for Pd {
    fn init() -> Self {
        let config =
            sddf::config::parse::<NetVirtTxConfig>(CONFIG.as_bytes()).unwrap_or_else(|e| fail(&e));
        let options = NetOptions::parse(OPTIONS.as_bytes()).unwrap_or_else(|e| fail(&e));
        #[allow(unsafe_code)]
        // SAFETY: Microkit (and the host runner) map every region the config section names at
        // the vaddr it gives, for the PD's whole life, and this PD touches them only through
        // sddf::shm::Region.
        let mem = unsafe { IdentityMapped::new() };
        let mut virt = virt_tx::VirtTx::new(config, &options, &mem, &mut MicrokitNotifier)
            .unwrap_or_else(|e| fail(&e));
        if let Some(stats) = sddf::pd::stats_writer(STATS.as_bytes(), &mem) {
            virt.attach_stats(stats).unwrap_or_else(|e| fail(&e));
        }
        #[cfg(target_os = "linux")]
        {
            use sddf::tap::TapPoint;
            let clients = (0..config.clients().len()).map(|i| TapPoint::ClientTx(i as u8));
            let points: Vec<TapPoint> = [TapPoint::DriverTx].into_iter().chain(clients).collect();
            if let Some(tap) = sddf::pd::pcap_tap(&points) {
                virt.attach_tap(tap);
            }
        }
        Pd(virt)
    }

    fn notified(&mut self, _channels: microkit::ChannelSet) {
        self.0.notified(&mut MicrokitNotifier);
    }
}

microkit::protection_domain!(Pd);
