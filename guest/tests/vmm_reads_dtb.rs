//! The device tree `guest` derives for the driver VM of the real system.xml, read back by the VMM
//! core's own DT reader (`vmm::linux`): the initrd range, the doorbell pages, the UIO IRQs, the
//! NIC's IRQ and guest RAM are where the VMM's `.vmm_config` says. (This replaces a check of a
//! hand-written example DTS, which the derivation made obsolete.)
use std::path::Path;

use guest::fdt::build_dtb;
use guest::system::{driver_vm, RX_FAULT_GPA, TX_FAULT_GPA};
use vmm::linux::{dtb_initrd, dtb_node};

#[test]
fn the_derived_device_tree_says_what_the_vmm_expects() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../system.xml");
    let sys = sdf::parse(&path, sdf::Arch::Aarch64).unwrap();
    let vm = driver_vm(&sys, &path, "console=ttyAMA0").unwrap();
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
