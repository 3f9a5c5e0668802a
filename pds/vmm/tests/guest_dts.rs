//! The example guest device tree (examples/vmm-boot/guest.dts), compiled with `dtc`, says what
//! the VMM core reads from it: the initrd range, the doorbell pages and the UIO IRQs.

use std::process::Command;

use vmm::linux::{dtb_initrd, dtb_node, DtNode};

#[test]
fn example_device_tree_matches_the_vmm() {
    let template = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/vmm-boot/guest.dts"
    );
    let dts = std::fs::read_to_string(template)
        .unwrap()
        .replace("@INITRD_START@", "0x9d000000")
        .replace("@INITRD_END@", "0x9d09e816");
    let dir = std::env::temp_dir().join(format!("vmm-guest-dts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("guest.dts"), dts).unwrap();
    let out = match Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(dir.join("guest.dtb"))
        .arg(dir.join("guest.dts"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("SKIPPED guest_dts: dtc not available ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dtb = std::fs::read(dir.join("guest.dtb")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(dtb_initrd(&dtb), Ok(Some((0x9d00_0000, 0x9d09_e816))));
    let node = |name| dtb_node(&dtb, name).unwrap();
    assert_eq!(
        node("rx_fault"),
        Some(DtNode {
            reg: Some(0x3001_0000),
            intid: None
        })
    );
    assert_eq!(
        node("tx_fault"),
        Some(DtNode {
            reg: Some(0x3001_1000),
            intid: None
        })
    );
    assert_eq!(
        node("rx_irq"),
        Some(DtNode {
            reg: None,
            intid: Some(112)
        })
    );
    assert_eq!(
        node("tx_irq"),
        Some(DtNode {
            reg: None,
            intid: Some(113)
        })
    );
    assert_eq!(node("virtio_mmio").and_then(|n| n.intid), Some(79));
    assert_eq!(node("memory").and_then(|n| n.reg), Some(0x9000_0000));
    assert_eq!(node("no_such_node"), None);
}
