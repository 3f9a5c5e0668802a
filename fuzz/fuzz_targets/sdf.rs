//! The SDF parser and validator (`sdf::parse_str`), and what netvm derives from a system it
//! accepts: the driver VM's region list and every sDDF net config blob.
//!
//! Checks: no panic on any text; errors carry a `file:line:col` position in the named file; for
//! an accepted system that is a network system, every blob `sdf::net::derive` produces is
//! accepted by `sddf::config::parse_owned` (the PDs would refuse to boot otherwise).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sddf::config::*;
use sdf::net::{derive, driver_vm_regions, NetError, NetSystemSpec};
use sdf::{parse_str, Arch};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let sys = match parse_str(&text, "fuzz.system", Arch::Aarch64) {
        Ok(sys) => sys,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("fuzz.system:"),
                "error without a position: {msg}"
            );
            return;
        }
    };
    let _ = driver_vm_regions(&sys);
    // Give every client the MAC it asks for, one at a time (as system.macs would).
    let mut macs = Vec::new();
    let spec = loop {
        match NetSystemSpec::infer(&sys, &macs) {
            Ok(spec) => break spec,
            Err(NetError::MissingMac { client }) if macs.len() < 64 => {
                let n = macs.len() as u8;
                macs.push((client, [2, 0, 0, 0, 0, n]));
            }
            Err(_) => return,
        }
    };
    let Ok(sections) = derive(&sys, &spec) else {
        return;
    };
    for sdf::Section {
        pd,
        name: section,
        bytes: blob,
    } in sections
    {
        let ok = match section.as_str() {
            ".net_driver_config" => parse_owned::<NetDriverConfig>(&blob).map(drop),
            ".device_resources" => parse_owned::<DeviceResources>(&blob).map(drop),
            ".net_virt_rx_config" => parse_owned::<NetVirtRxConfig>(&blob).map(drop),
            ".net_virt_tx_config" => parse_owned::<NetVirtTxConfig>(&blob).map(drop),
            ".net_copy_config" => parse_owned::<NetCopyConfig>(&blob).map(drop),
            ".net_client_config" => parse_owned::<NetClientConfig>(&blob).map(drop),
            other => panic!("derive made an unknown section {other} for {pd}"),
        };
        if let Err(e) = ok {
            panic!("derived {section} of {pd} is refused: {e}");
        }
    }
});
