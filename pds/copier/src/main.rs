//! The `copier` protection domain: sDDF's `.net_copy_config` in, the [`copier::Copier`] logic
//! behind Microkit's event loop ([`pd_support::net_pd!`]).
#![cfg_attr(target_os = "none", no_std, no_main)]

use pd_support::fail;
use sddf::config::NetCopyConfig;

microkit::config_section!(".net_copy_config", CONFIG: [u8; core::mem::size_of::<NetCopyConfig>()]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);

pd_support::net_pd! {
    component: copier::Copier<'static>,
    stats: STATS.as_bytes(),
    init: |mem| {
        let config =
            sddf::config::parse::<NetCopyConfig>(CONFIG.as_bytes()).unwrap_or_else(|e| fail(&e));
        copier::Copier::new(config, mem).unwrap_or_else(|e| fail(&e))
    },
}
