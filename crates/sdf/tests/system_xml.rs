//! The project's own top-level system.xml: it is valid, its sDDF net configs derive cleanly, and
//! it is exactly what scripts/gen_system.py (sdfgen 0.35) writes.
use std::path::{Path, PathBuf};
use std::process::Command;

use sdf::net::{derive, parse_mac_list, NetSystemSpec};
use sdf::Arch;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn system_xml_is_valid_and_its_net_configs_derive() {
    let sys =
        sdf::parse(root().join("system.xml"), Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    let macs =
        parse_mac_list(&std::fs::read_to_string(root().join("system.macs")).unwrap()).unwrap();
    let spec = NetSystemSpec::infer(&sys, &macs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.driver, "vmm");
    assert_eq!(spec.clients.len(), 2);
    let sections = derive(&sys, &spec).unwrap_or_else(|e| panic!("{e}"));
    // Driver (2), virt_rx, virt_tx, a copier and a client config per client.
    assert_eq!(sections.len(), 4 + 2 * spec.clients.len());
    let vmm = sys.pd("vmm").unwrap();
    assert!(
        vmm.virtual_machine.is_some(),
        "the driver is a VMM with its Linux guest"
    );
}

/// Least privilege (SECURITY.md): the driver VM maps the clients' TX data read-only, none of
/// the regions between the virtualisers and the clients, and executes only its own RAM; the
/// copiers only read the device's RX data.
#[test]
fn the_driver_vm_and_the_copiers_get_no_more_than_they_need() {
    let sys =
        sdf::parse(root().join("system.xml"), Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    let vm = sys.pd("vmm").unwrap().virtual_machine.as_ref().unwrap();
    let mut tx_data = 0;
    for map in &vm.maps {
        let what = format!("the driver VM's map of {} ({})", map.mr, map.perms);
        if map.mr.starts_with("generic/net/tx/data/client/") {
            tx_data += 1;
            assert!(!map.perms.write, "{what}: the driver only reads TX data");
        }
        assert!(
            !map.mr.starts_with("generic/net/rx/data/client/")
                && !map.mr.starts_with("generic/net/queue/net_virt")
                && !map.mr.starts_with("generic/net/queue/client"),
            "{what}: the clients' side is none of the driver's business"
        );
        assert!(
            !map.perms.execute || map.mr == "guest_ram",
            "{what}: only guest RAM holds code"
        );
    }
    assert_eq!(tx_data, 2, "one TX data region per client");
    for copier in ["client0_net_copier", "client1_net_copier"] {
        let map = sys
            .pd(copier)
            .unwrap()
            .maps
            .iter()
            .find(|m| m.mr == "generic/net/rx/data/device")
            .unwrap();
        assert!(!map.perms.write, "{copier} only copies out of the RX data");
    }
}

#[test]
fn system_xml_is_what_gen_system_writes() {
    let python = root().join(".venv/bin/python");
    if !python.exists() {
        testkit::skip(
            "system.xml regeneration check",
            format_args!(
                "no venv at {} (scripts/setup.sh makes it)",
                python.display()
            ),
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("netvm-gen-system-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (xml, macs) = (dir.join("system.xml"), dir.join("system.macs"));
    std::fs::copy(root().join("system.macs"), &macs).unwrap();
    let out = Command::new(&python)
        .arg(root().join("scripts/gen_system.py"))
        .args([&xml, &macs])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (generated, committed) in [(&xml, "system.xml"), (&macs, "system.macs")] {
        assert_eq!(
            std::fs::read_to_string(generated).unwrap(),
            std::fs::read_to_string(root().join(committed)).unwrap(),
            "{committed} is stale: run .venv/bin/python scripts/gen_system.py system.xml system.macs"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_driver_vm_sees_every_driver_side_region_in_its_uio_window() {
    let sys = sdf::parse(root().join("system.xml"), Arch::Aarch64).unwrap();
    let (driver, regions) = sdf::net::driver_vm_regions(&sys).unwrap();
    assert_eq!(driver, "vmm");
    let names: Vec<&str> = regions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "rx_free",
            "rx_active",
            "tx_free",
            "tx_active",
            "rx_data",
            "tx_data0",
            "tx_data1"
        ]
    );
    let vm = sys.pd("vmm").unwrap().virtual_machine.as_ref().unwrap();
    for (name, mr) in &regions {
        let map = vm
            .maps
            .iter()
            .find(|m| &m.mr == mr)
            .unwrap_or_else(|| panic!("{name}: {mr} not in the VM"));
        assert!(
            (0x3000_0000..0x4000_0000).contains(&map.vaddr),
            "{name} at {:#x}",
            map.vaddr
        );
    }
}

#[test]
fn each_virtualiser_copier_and_client_has_a_stats_region_of_its_own() {
    use zerocopy::FromBytes;
    let sys = sdf::parse(root().join("system.xml"), Arch::Aarch64).unwrap();
    let sections = sdf::net::stats_sections(&sys);
    let pds: Vec<&str> = sections.iter().map(|s| s.pd.as_str()).collect();
    assert_eq!(
        pds,
        [
            "vmm",
            "net_virt_rx",
            "net_virt_tx",
            "client0_net_copier",
            "client1_net_copier",
            "client0",
            "client1"
        ]
    );
    for sdf::Section { pd, name, bytes } in &sections {
        assert_eq!(name, netvm_api::stats::SECTION);
        let r = sddf::config::RegionResource::read_from_bytes(bytes).unwrap();
        let map = sys
            .pd(pd)
            .unwrap()
            .maps
            .iter()
            .find(|m| m.mr == format!("{}{pd}", sdf::net::STATS_PREFIX))
            .unwrap();
        assert_eq!((r.vaddr, r.size), (map.vaddr, 0x1000));
        // Mapped into that PD only.
        let others = sys
            .pds()
            .filter(|(p, _)| p.name != *pd && p.maps.iter().any(|m| m.mr == map.mr))
            .count();
        assert_eq!(others, 0, "{pd}'s stats region is private");
    }
}

#[test]
fn every_buffer_pool_names_queues_that_exist_and_fit() {
    let sys = sdf::parse(root().join("system.xml"), Arch::Aarch64).unwrap();
    let pools = sdf::net::buffer_pools_of(&sys).unwrap();
    let names: Vec<(&str, u64, usize)> = pools
        .iter()
        .map(|p| (p.name.as_str(), p.buffers, p.queues.len()))
        .collect();
    // rx: driver pair + a pair per copier; a client's rx: its copier pair; tx: a pair per
    // client + the driver pair.
    assert_eq!(
        names,
        [
            ("rx", 512, 6),
            ("client0 rx", 512, 2),
            ("client1 rx", 512, 2),
            ("tx", 1024, 6)
        ]
    );
    for q in pools.iter().flat_map(|p| &p.queues) {
        let mr = sys
            .memory_region(&q.region)
            .unwrap_or_else(|| panic!("{}: no region {}", q.label, q.region));
        assert!(
            mr.size >= sddf::queue::queue_bytes(q.capacity as usize) as u64,
            "{}",
            q.label
        );
    }
}

/// An all-zero `.netvm_net_options` means sDDF 0.7's semantics, so the derivation must switch
/// netvm's behaviours on explicitly (and offset mode, since the driver runs a VM).
#[test]
fn the_derived_options_switch_netvms_behaviours_on() {
    use netvm_api::options::{NetOptions, DRIVER_OFFSETS, NETVM_BEHAVIOURS};
    let sys =
        sdf::parse(root().join("system.xml"), Arch::Aarch64).unwrap_or_else(|e| panic!("{e}"));
    let macs =
        parse_mac_list(&std::fs::read_to_string(root().join("system.macs")).unwrap()).unwrap();
    let spec = NetSystemSpec::infer(&sys, &macs).unwrap_or_else(|e| panic!("{e}"));
    let sections = sdf::net::options_sections(&sys, &spec);
    assert_eq!(sections.len(), 2, "virt_rx and virt_tx");
    for sdf::Section {
        pd,
        name: section,
        bytes,
    } in sections
    {
        assert_eq!(section, netvm_api::options::SECTION);
        let o = NetOptions::parse(&bytes).unwrap_or_else(|e| panic!("{pd}: {e}"));
        assert_eq!(o.flags, DRIVER_OFFSETS | NETVM_BEHAVIOURS, "{pd}");
    }
}
