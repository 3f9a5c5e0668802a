//! Entry point of the `crasher` PD.
#![cfg_attr(target_os = "none", no_std, no_main)]
microkit::protection_domain!(hello_pds::crasher::Crasher);
