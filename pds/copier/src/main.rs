//! The `copier` protection domain: sDDF's `.net_copy_config` in, the [`copier::Copier`] logic
//! behind Microkit's event loop.
#![cfg_attr(target_os = "none", no_std, no_main)]

use sddf::config::NetCopyConfig;
use sddf::pd::{fail, MicrokitNotifier};
use sddf::shm::IdentityMapped;

microkit::config_section!(".net_copy_config", CONFIG: [u8; core::mem::size_of::<NetCopyConfig>()]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);

struct Pd(copier::Copier<'static>);

impl microkit::Handler for Pd {
    fn init() -> Self {
        let config =
            sddf::config::parse::<NetCopyConfig>(CONFIG.as_bytes()).unwrap_or_else(|e| fail(&e));
        #[allow(unsafe_code)]
        // SAFETY: Microkit (and the host runner) map every region the config section names at
        // the vaddr it gives, for the PD's whole life, and this PD touches them only through
        // sddf::shm::Region.
        let mem = unsafe { IdentityMapped::new() };
        let mut copier = copier::Copier::new(config, &mem).unwrap_or_else(|e| fail(&e));
        if let Some(stats) = sddf::pd::stats_writer(STATS.as_bytes(), &mem) {
            copier.attach_stats(stats).unwrap_or_else(|e| fail(&e));
        }
        Pd(copier)
    }

    fn notified(&mut self, _channels: microkit::ChannelSet) {
        self.0.notified(&mut MicrokitNotifier);
    }
}

microkit::protection_domain!(Pd);
