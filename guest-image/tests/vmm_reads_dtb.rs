//! The device tree `guest-image` writes for the driver VM of the real system.xml, read back by the VMM
//! core's own DT reader (`vmm::linux`): the initrd range, the doorbell pages, the UIO IRQs, the
//! NIC's IRQ and guest RAM are where the VMM's `.vmm_config` says. (This replaces a check of a
//! hand-written example DTS, which the derivation made obsolete.)
use std::path::Path;

use guest_image::fdt::build_dtb;
use system_plan::{driver_vm, Clients, RX_FAULT_GPA, TX_FAULT_GPA};
use vmm::linux::{dtb_initrd, dtb_node};

fn macs() -> Vec<(String, [u8; 6])> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../system.macs"))
            .unwrap();
    sdf::net::parse_mac_list(&text).unwrap()
}

/// The value of the property whose 88 bytes are `blob`, if the device tree holds it: an
/// `FDT_PROP` token, the length, a name offset, then the value.
fn has_property_value(dtb: &[u8], blob: &[u8]) -> bool {
    dtb.windows(blob.len()).enumerate().any(|(at, w)| {
        w == blob
            && at >= 12
            && dtb[at - 12..at - 8] == 3u32.to_be_bytes()
            && dtb[at - 8..at - 4] == (blob.len() as u32).to_be_bytes()
    })
}

/// The driver VM of `sys` (parsed from `path`) with system.macs' MACs and the default buffers.
fn system_vm(sys: &sdf::SystemDescription, path: &Path) -> system_plan::DriverVm {
    let clients = Clients {
        macs: &macs(),
        ..Default::default()
    };
    driver_vm(sys, path, "console=ttyAMA0", &clients).unwrap()
}

#[test]
fn the_guest_gets_the_drivers_derived_config_byte_for_byte() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system.xml");
    let sys = sdf::parse(&path, sdf::Arch::Aarch64).unwrap();
    // Derived here independently: what sdf::net gives the driver PD (the vmm).
    let spec = sdf::net::NetSystemSpec::infer(&sys, &macs()).unwrap();
    let derived = sdf::net::derive(&sys, &spec).unwrap();
    let blob = &derived
        .iter()
        .find(|s| s.pd == "vmm" && s.name == sdf::net::DRIVER_SECTION)
        .unwrap()
        .bytes;
    assert_eq!(blob.len(), 88);
    let vm = system_vm(&sys, &path);
    assert_eq!(&vm.layout.net_driver_config, blob);
    let dtb = build_dtb(&vm.layout, 0x1000).unwrap();
    assert!(
        has_property_value(&dtb, blob),
        "the blob is a property value"
    );
    let name = uio_driver::config::DT_PROPERTY.as_bytes();
    assert!(dtb.windows(name.len()).any(|w| w == name));
    // And it is what the uio-driver reads: system.xml's capacities.
    let config = uio_driver::config::DriverConfig::parse(blob, "dtb").unwrap();
    assert_eq!(
        (config.rx_capacity.get(), config.tx_capacity.get()),
        (512, 1024)
    );
}

#[test]
fn the_derived_device_tree_says_what_the_vmm_expects() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system.xml");
    let sys = sdf::parse(&path, sdf::Arch::Aarch64).unwrap();
    let vm = system_vm(&sys, &path);
    let initrd_size = 0x9_e816;
    let dtb = build_dtb(&vm.layout, initrd_size).unwrap();

    let (start, end) = dtb_initrd(&dtb).unwrap().expect("an initrd range");
    assert_eq!(end - start, initrd_size);
    assert!(
        start >= 0x9000_0000 && end <= 0xa000_0000,
        "initrd in guest RAM"
    );
    let node = |name| {
        dtb_node(&dtb, name)
            .unwrap()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let cfg = vm.vmm_config;
    assert_eq!(node("rx_fault").reg, Some(RX_FAULT_GPA));
    assert_eq!(node("tx_fault").reg, Some(TX_FAULT_GPA));
    assert_eq!((cfg.rx_fault, cfg.tx_fault), (RX_FAULT_GPA, TX_FAULT_GPA));
    let (rx_irq, tx_irq) = (node("rx_irq").intid, node("tx_irq").intid);
    assert!(rx_irq.is_some() && tx_irq.is_some() && rx_irq != tx_irq);
    assert_eq!(
        node("virtio_mmio").intid,
        cfg.nic.map(|n| n.intid),
        "the NIC's IRQ"
    );
    assert_eq!(node("memory").reg, Some(0x9000_0000));
    assert_eq!(dtb_node(&dtb, "no_such_node").unwrap(), None);
}

#[test]
fn without_the_macs_the_driver_config_cannot_be_derived_and_says_so() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system.xml");
    let sys = sdf::parse(&path, sdf::Arch::Aarch64).unwrap();
    let err = driver_vm(&sys, &path, "", &Clients::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs the clients' MACs") && err.contains("client0"),
        "{err}"
    );
}
