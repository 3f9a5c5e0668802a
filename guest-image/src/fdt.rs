//! The guest device tree, written with `vm-fdt` from a validated [`GuestLayout`].
//!
//! Node set (vmm-guest-boot.md §4.2): root `linux,dummy-virt`; one `cortex-a53`; memory;
//! `reserved-memory` (`no-map`) carve-outs; GICv2; the architected timer; PSCI; the PL011 with
//! its 24 MHz `apb-pclk`; the virtio-mmio NIC; one `generic-uio` node per UIO region (node name
//! = region name, so `uio_pdrv_genirq` names the UIO device after it); the IRQ-only `rx_irq` and
//! `tx_irq` nodes (no `reg`); `chosen` with the boot arguments and the uio-driver's
//! `.net_driver_config` blob (`netvm,net-driver-config`, [`netvm_api::uio::DT_PROPERTY`]).

use vm_fdt::FdtWriter;

use crate::error::GuestError;
use system_plan::layout::{names, GuestLayout, PsciMethod, Range};

const PHANDLE_GIC: u32 = 1;
const PHANDLE_APB_PCLK: u32 = 2;

/// `interrupts` cell 0: shared peripheral interrupt / private peripheral interrupt.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// `interrupts` cell 2 flags.
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
/// PPI CPU mask for one CPU (bits 8..15).
const PPI_CPU0: u32 = 1 << 8;

/// Builds the flattened device tree for `layout`; `initrd_size` fills `linux,initrd-end` when the
/// layout names an initrd address.
pub fn build_dtb(layout: &GuestLayout, initrd_size: u64) -> Result<Vec<u8>, GuestError> {
    layout.validate()?;
    write(layout, initrd_size).map_err(|e| GuestError::Fdt {
        reason: e.to_string(),
    })
}

fn reg(r: &Range) -> [u64; 2] {
    [r.base, r.size]
}

/// The device tree, node by node in the order Linux's `virt` machine has them.
fn write(l: &GuestLayout, initrd_size: u64) -> Result<Vec<u8>, vm_fdt::Error> {
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_string("model", "netvm driver VM")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &l.full_bootargs())?;
    if let Some(uart) = &l.uart {
        f.property_string("stdout-path", &format!("/pl011@{:x}", uart.reg.base))?;
    }
    if let Some(start) = l.initrd_addr {
        f.property_u64("linux,initrd-start", start)?;
        f.property_u64("linux,initrd-end", start + initrd_size)?;
    }
    f.property(netvm_api::uio::DT_PROPERTY, &l.net_driver_config)?;
    f.end_node(chosen)?;

    write_cpus_and_memory(&mut f, l)?;
    write_interrupts(&mut f, l)?;
    write_devices(&mut f, l)?;
    f.end_node(root)?;
    f.finish()
}

/// `/cpus` (one cortex-a53), `/memory`, and the UIO regions' carve-outs.
fn write_cpus_and_memory(f: &mut FdtWriter, l: &GuestLayout) -> Result<(), vm_fdt::Error> {
    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    let cpu = f.begin_node("cpu@0")?;
    f.property_string("device_type", "cpu")?;
    f.property_string("compatible", "arm,cortex-a53")?;
    f.property_u32("reg", 0)?;
    f.end_node(cpu)?;
    f.end_node(cpus)?;

    let mem = f.begin_node(&format!("memory@{:x}", l.memory.base))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &reg(&l.memory))?;
    f.end_node(mem)?;

    if !l.reserved.is_empty() {
        let rm = f.begin_node("reserved-memory")?;
        f.property_u32("#address-cells", 2)?;
        f.property_u32("#size-cells", 2)?;
        f.property_null("ranges")?;
        for r in &l.reserved {
            let n = f.begin_node(&format!("uio-carveout@{:x}", r.base))?;
            f.property_array_u64("reg", &reg(r))?;
            f.property_null("no-map")?;
            f.end_node(n)?;
        }
        f.end_node(rm)?;
    }
    Ok(())
}

/// PSCI, the GICv2 and the architected timer.
fn write_interrupts(f: &mut FdtWriter, l: &GuestLayout) -> Result<(), vm_fdt::Error> {
    let psci = f.begin_node("psci")?;
    f.property_string_list("compatible", vec!["arm,psci-0.2".into(), "arm,psci".into()])?;
    f.property_string(
        "method",
        match l.psci {
            PsciMethod::Hvc => "hvc",
            PsciMethod::Smc => "smc",
        },
    )?;
    f.end_node(psci)?;

    let gic = f.begin_node(&format!("intc@{:x}", l.gic.distributor.base))?;
    f.property_string("compatible", "arm,cortex-a15-gic")?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_array_u64(
        "reg",
        &[
            l.gic.distributor.base,
            l.gic.distributor.size,
            l.gic.cpu_interface.base,
            l.gic.cpu_interface.size,
        ],
    )?;
    f.property_phandle(PHANDLE_GIC)?;
    f.end_node(gic)?;

    let timer = f.begin_node("timer")?;
    f.property_string("compatible", "arm,armv8-timer")?;
    // Secure physical, non-secure physical, virtual, hypervisor PPIs.
    let mut cells = Vec::new();
    for ppi in [13, 14, 11, 10] {
        cells.extend([GIC_PPI, ppi, PPI_CPU0 | IRQ_LEVEL_HIGH]);
    }
    f.property_array_u32("interrupts", &cells)?;
    f.property_null("always-on")?;
    f.end_node(timer)?;
    Ok(())
}

/// The passed-through PL011 (with its clock) and NIC, and the UIO devices.
fn write_devices(f: &mut FdtWriter, l: &GuestLayout) -> Result<(), vm_fdt::Error> {
    if let Some(uart) = &l.uart {
        let clk = f.begin_node("apb-pclk")?;
        f.property_string("compatible", "fixed-clock")?;
        f.property_u32("#clock-cells", 0)?;
        f.property_u32("clock-frequency", 24_000_000)?;
        f.property_string("clock-output-names", "clk24mhz")?;
        f.property_phandle(PHANDLE_APB_PCLK)?;
        f.end_node(clk)?;

        let n = f.begin_node(&format!("pl011@{:x}", uart.reg.base))?;
        f.property_string_list(
            "compatible",
            vec!["arm,pl011".into(), "arm,primecell".into()],
        )?;
        f.property_array_u64("reg", &reg(&uart.reg))?;
        f.property_array_u32("interrupts", &[GIC_SPI, uart.spi, IRQ_LEVEL_HIGH])?;
        f.property_array_u32("clocks", &[PHANDLE_APB_PCLK, PHANDLE_APB_PCLK])?;
        f.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
        f.end_node(n)?;
    }

    let nic = f.begin_node(&format!("virtio_mmio@{:x}", l.nic.reg.base))?;
    f.property_string("compatible", "virtio,mmio")?;
    f.property_array_u64("reg", &reg(&l.nic.reg))?;
    let trigger = if l.nic.edge {
        IRQ_EDGE_RISING
    } else {
        IRQ_LEVEL_HIGH
    };
    f.property_array_u32("interrupts", &[GIC_SPI, l.nic.spi, trigger])?;
    f.property_null("dma-coherent")?;
    f.end_node(nic)?;

    for r in &l.uio_regions {
        let n = f.begin_node(&format!("{}@{:x}", r.name, r.reg.base))?;
        f.property_string("compatible", "generic-uio")?;
        f.property_array_u64("reg", &reg(&r.reg))?;
        f.end_node(n)?;
    }
    for (name, spi) in [(names::RX_IRQ, l.rx_irq_spi), (names::TX_IRQ, l.tx_irq_spi)] {
        let n = f.begin_node(name)?;
        f.property_string("compatible", "generic-uio")?;
        f.property_array_u32("interrupts", &[GIC_SPI, spi, IRQ_LEVEL_HIGH])?;
        f.end_node(n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoke() -> GuestLayout {
        GuestLayout::qemu_virt(512 << 20, 2, 0x4000, 0x10_0000)
    }

    /// Every node name in the blob's strings block order (structure block walk).
    fn node_names(dtb: &[u8]) -> Vec<String> {
        let be = |o: usize| u32::from_be_bytes(dtb[o..o + 4].try_into().unwrap()) as usize;
        let (off_struct, size_struct) = (be(8), be(36));
        let mut names = Vec::new();
        let mut p = off_struct;
        while p < off_struct + size_struct {
            match be(p) {
                1 => {
                    let start = p + 4;
                    let end = start + dtb[start..].iter().position(|&b| b == 0).unwrap();
                    names.push(String::from_utf8(dtb[start..end].to_vec()).unwrap());
                    p = (end + 1).next_multiple_of(4);
                }
                3 => p += 12 + be(p + 4).next_multiple_of(4),
                2 | 4 => p += 4,
                9 => break,
                t => panic!("token {t}"),
            }
        }
        names
    }

    #[test]
    fn dtb_has_one_node_per_uio_region_named_after_it() {
        let l = smoke();
        let dtb = build_dtb(&l, 0).unwrap();
        assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        let nodes = node_names(&dtb);
        for r in &l.uio_regions {
            let want = format!("{}@{:x}", r.name, r.reg.base);
            assert_eq!(nodes.iter().filter(|n| **n == want).count(), 1, "{want}");
        }
        for n in [
            "rx_irq",
            "tx_irq",
            "psci",
            "timer",
            "chosen",
            "reserved-memory",
        ] {
            assert!(nodes.iter().any(|x| x == n), "{n} in {nodes:?}");
        }
        assert!(nodes.iter().any(|x| x == "virtio_mmio@a003e00"));
    }

    #[test]
    fn invalid_layout_gives_no_dtb() {
        let mut l = smoke();
        l.uio_regions.retain(|r| r.name != names::RX_FAULT);
        let err = build_dtb(&l, 0).unwrap_err();
        assert!(err.to_string().contains("rx_fault"), "{err}");
    }
}
