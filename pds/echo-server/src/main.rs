//! Entry point of the echo-server PD (all logic is in the library).
#![cfg_attr(target_os = "none", no_std, no_main)]
microkit::protection_domain!(echo_server::pd::EchoPd);
