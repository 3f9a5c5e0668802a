//! `guest-image sel4-pds` gives every PD of system.xml that maps its `netvm/stats/<pd>` region a
//! `.netvm_stats` section naming it, the VMM included (on seL4 it publishes its own counters;
//! the driver's sDDF configs and options stay left out).
use std::net::Ipv4Addr;

use echo_api::IpConfig;
use std::path::Path;

use system_plan::{driver_vm, sections, Clients};

fn ip(addr: Ipv4Addr) -> IpConfig {
    IpConfig::Static {
        addr,
        prefix_len: 24,
        gateway: None,
    }
}

#[test]
fn every_pd_with_a_stats_region_gets_its_section_the_vmm_too() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let xml = root.join("system.xml");
    let sys = sdf::parse(&xml, sdf::Arch::Aarch64).unwrap();
    let macs = std::fs::read_to_string(root.join("system.macs")).unwrap();
    let macs = sdf::net::parse_mac_list(&macs).unwrap();
    let echo = [
        ("client0".to_string(), ip(Ipv4Addr::new(10, 0, 0, 10))),
        ("client1".to_string(), ip(Ipv4Addr::new(10, 0, 0, 11))),
    ];
    let vm = driver_vm(
        &sys,
        &xml,
        "console=ttyAMA0",
        &Clients {
            macs: &macs,
            ..Default::default()
        },
    )
    .unwrap();
    let derived = sections(
        &sys,
        &xml,
        &vm,
        &Clients {
            macs: &macs,
            ..Default::default()
        },
        (&echo, &[]),
    )
    .unwrap();
    let stats: Vec<&str> = derived
        .iter()
        .filter(|s| s.name == netvm_api::stats::SECTION)
        .map(|s| s.pd.as_str())
        .collect();
    for pd in ["vmm", "net_virt_rx", "net_virt_tx", "client0", "client1"] {
        assert!(stats.contains(&pd), "no .netvm_stats for {pd}: {stats:?}");
    }
    let vmm = derived
        .iter()
        .find(|s| s.pd == "vmm" && s.name == netvm_api::stats::SECTION)
        .unwrap();
    let mut expected = 0x7000_0000u64.to_le_bytes().to_vec();
    expected.extend(0x1000u64.to_le_bytes());
    assert_eq!(vmm.bytes, expected, "netvm/stats/vmm at 0x70000000, 4 KiB");
    // The VMM gets no virtualiser options: it is no sDDF driver.
    assert!(!derived
        .iter()
        .any(|s| s.pd == "vmm" && s.name == netvm_api::options::SECTION));
}
