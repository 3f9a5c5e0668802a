//! The `virt_tx` protection domain: sDDF's `.net_virt_tx_config` plus netvm's options in, the
//! [`virt_tx::VirtTx`] logic behind Microkit's event loop ([`pd_support::net_pd!`]).
#![cfg_attr(target_os = "none", no_std, no_main)]

use netvm_api::options::NetOptions;
#[cfg(target_os = "linux")]
use netvm_api::tap::TapPoint;
use netvm_api::vswitch::VirtTxLocalConfig;
use pd_support::{fail, MicrokitNotifier};
use sddf::config::NetVirtTxConfig;

microkit::config_section!(".net_virt_tx_config", CONFIG: [u8; core::mem::size_of::<NetVirtTxConfig>()]);
microkit::config_section!(".netvm_net_options", OPTIONS: [u8; core::mem::size_of::<NetOptions>()]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);
microkit::config_section!(".netvm_vswitch", LOCAL: [u8; core::mem::size_of::<VirtTxLocalConfig>()]);

pd_support::net_pd! {
    component: virt_tx::VirtTx<'static>,
    stats: STATS.as_bytes(),
    init: |mem| {
        let config = sddf::config::parse::<NetVirtTxConfig>(CONFIG.as_bytes()).unwrap_or_else(|e| fail(&e));
        let options = NetOptions::parse(OPTIONS.as_bytes()).unwrap_or_else(|e| fail(&e));
        let mut virt = virt_tx::VirtTx::new(config, &options, mem, &mut MicrokitNotifier)
            .unwrap_or_else(|e| fail(&e));
        match VirtTxLocalConfig::parse(LOCAL.as_bytes()).unwrap_or_else(|e| fail(&e)) {
            Some(local) => virt.attach_local(&local, mem).unwrap_or_else(|e| fail(&e)),
            None => microkit::debug_println!(
                "net_virt_tx: no .netvm_vswitch: local delivery off, frames between clients go through the driver"
            ),
        }
        #[cfg(target_os = "linux")]
        if let Some(tap) = pd_support::component_tap(
            TapPoint::DriverTx,
            TapPoint::ClientTx,
            config.clients().len(),
        ) {
            virt.attach_tap(tap);
        }
        virt
    },
}
