//! The `copier` protection domain: sDDF's `.net_copy_config` in, the [`copier::Copier`] logic
//! behind Microkit's event loop ([`pd_support::net_pd!`]).
#![cfg_attr(target_os = "none", no_std, no_main)]

use netvm_api::vswitch::CopyLocalConfig;
use pd_support::fail;
use sddf::config::NetCopyConfig;

microkit::config_section!(".net_copy_config", CONFIG: [u8; core::mem::size_of::<NetCopyConfig>()]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);
microkit::config_section!(".netvm_vswitch", LOCAL: [u8; core::mem::size_of::<CopyLocalConfig>()]);

pd_support::net_pd! {
    component: copier::Copier<'static>,
    stats: STATS.as_bytes(),
    init: |mem| {
        let config =
            sddf::config::parse::<NetCopyConfig>(CONFIG.as_bytes()).unwrap_or_else(|e| fail(&e));
        let mut copier = copier::Copier::new(config, mem).unwrap_or_else(|e| fail(&e));
        // All zero (sdfgen's systems, older ones): no frames from the other clients.
        if let Some(local) = CopyLocalConfig::parse(LOCAL.as_bytes()).unwrap_or_else(|e| fail(&e)) {
            copier.attach_local(&local, mem).unwrap_or_else(|e| fail(&e));
        }
        copier
    },
}
