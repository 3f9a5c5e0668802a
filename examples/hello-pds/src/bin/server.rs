//! Entry point of the `server` PD.
#![cfg_attr(target_os = "none", no_std, no_main)]
microkit::protection_domain!(hello_pds::server::Server);
