//! What the guest's device tree describes: RAM, interrupt controller, timer, PSCI, console, the
//! passed-through virtio-mmio NIC and the UIO regions of the driver VM.
//!
//! A [`GuestLayout`] is plain data; [`GuestLayout::validate`] checks it before a device tree is
//! written, so that a missing UIO region is reported at build time (naming the region) instead
//! of as a uio-driver that never becomes ready inside the guest.
//!
//! The UIO names are spelled once, in the uio-driver's [`names`] module: `uio_pdrv_genirq` names
//! each UIO device after its device-tree node (without the unit address), and the uio-driver
//! looks its devices up by exactly these names.

use sddf::config::RegionResource;
use sddf::queue::{queue_bytes, Capacity};
use uio_driver::config::DriverConfig;

use crate::PlanError;

pub use netvm_api::uio as names;

/// Queue capacity of a guest without virtualisers (a standalone driver VM, or the guest
/// `guest build` makes for plain QEMU): sdfgen's default, as for a derived system.
pub const STANDALONE_QUEUE_CAPACITY: u16 = sdf::net::DEFAULT_BUFFERS;

/// The UIO regions with memory other than the client TX data regions, in device-tree order
/// (the rest of `names::FIXED` are the IRQ-only `rx_irq` and `tx_irq`).
pub const FIXED_REGIONS: [&str; 7] = [
    names::RX_FREE,
    names::RX_ACTIVE,
    names::RX_DATA,
    names::TX_FREE,
    names::TX_ACTIVE,
    names::RX_FAULT,
    names::TX_FAULT,
];

/// UIO maps are page granular: every region starts and ends on a 4 KiB page.
pub const PAGE_SIZE: u64 = 0x1000;

/// The kernel parameter `uio_pdrv_genirq` needs to bind `compatible = "generic-uio"` nodes.
pub const UIO_OF_ID_ARG: &str = "uio_pdrv_genirq.of_id=generic-uio";

/// A guest-physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Range {
    /// One past the last byte, `None` if the range wraps around 2^64.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    fn overlaps(&self, other: &Range) -> bool {
        match (self.end(), other.end()) {
            (Some(a), Some(b)) => self.base < b && other.base < a,
            _ => true,
        }
    }

    fn contains(&self, other: &Range) -> bool {
        match (self.end(), other.end()) {
            (Some(a), Some(b)) => self.base <= other.base && b <= a,
            _ => false,
        }
    }
}

/// How Linux calls PSCI: QEMU `virt` without EL2 firmware answers `hvc`; a VMM picks its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PsciMethod {
    /// `method = "hvc"`.
    Hvc,
    /// `method = "smc"`.
    Smc,
}

/// A GICv2 (`arm,cortex-a15-gic`): distributor and CPU interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GicV2 {
    /// GICD.
    pub distributor: Range,
    /// GICC.
    pub cpu_interface: Range,
}

/// A PL011 UART used as the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pl011 {
    /// Its MMIO page.
    pub reg: Range,
    /// Its SPI number (GIC INTID - 32).
    pub spi: u32,
}

/// The virtio-mmio transport of the NIC that Linux drives (`virtio_net` -> eth0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VirtioMmio {
    /// The transport's registers (0x200 bytes on QEMU `virt`).
    pub reg: Range,
    /// Its SPI number.
    pub spi: u32,
    /// Edge triggered (QEMU's virtio-mmio interrupts are).
    pub edge: bool,
}

/// One UIO device with memory: a `generic-uio` node with one `reg`, hence one map (`map0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UioRegion {
    /// Node name = UIO device name (see [`names`]).
    pub name: String,
    /// Where it sits in guest-physical memory.
    pub reg: Range,
}

/// Everything the guest device tree describes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestLayout {
    /// Guest RAM.
    pub memory: Range,
    /// Ranges of RAM Linux must not use (`reserved-memory`, `no-map`): where the UIO regions
    /// sit when they are carved out of RAM, as in the QEMU smoke test.
    pub reserved: Vec<Range>,
    /// The interrupt controller.
    pub gic: GicV2,
    /// PSCI conduit.
    pub psci: PsciMethod,
    /// Console UART, if the guest has one.
    pub uart: Option<Pl011>,
    /// The NIC Linux drives.
    pub nic: VirtioMmio,
    /// Every UIO region with memory: [`FIXED_REGIONS`] plus `tx_data0..tx_data<N-1>`.
    pub uio_regions: Vec<UioRegion>,
    /// SPI of the IRQ-only UIO device [`names::RX_IRQ`].
    pub rx_irq_spi: u32,
    /// SPI of the IRQ-only UIO device [`names::TX_IRQ`].
    pub tx_irq_spi: u32,
    /// Where the VMM loads the initrd; `None` when the loader (QEMU `-initrd`) fills in
    /// `linux,initrd-start/end` itself.
    pub initrd_addr: Option<u64>,
    /// Kernel command line; [`UIO_OF_ID_ARG`] is appended if absent.
    pub bootargs: String,
    /// The driver's `.net_driver_config` blob (its queue capacities), passed to the guest as
    /// the `/chosen` property [`netvm_api::uio::DT_PROPERTY`].
    pub net_driver_config: Vec<u8>,
}

/// QEMU `virt` constants (hw/arm/virt.c), used by [`GuestLayout::qemu_virt`].
pub mod qemu_virt {
    use super::Range;

    /// RAM starts here.
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// GIC distributor.
    pub const GICD: Range = Range {
        base: 0x0800_0000,
        size: 0x1_0000,
    };
    /// GIC CPU interface.
    pub const GICC: Range = Range {
        base: 0x0801_0000,
        size: 0x1_0000,
    };
    /// PL011 UART and its SPI.
    pub const UART: Range = Range {
        base: 0x0900_0000,
        size: 0x1000,
    };
    /// SPI of the PL011.
    pub const UART_SPI: u32 = 1;
    /// The transport the *first* `-device virtio-*-device` gets: the last of 32 (guest-linux.md
    /// §5.4, vmm-guest-boot.md §3).
    pub const FIRST_VIRTIO_MMIO: Range = Range {
        base: 0x0a00_3e00,
        size: 0x200,
    };
    /// Its SPI (edge).
    pub const FIRST_VIRTIO_MMIO_SPI: u32 = 47;
    /// SPIs no QEMU `virt` device uses (the platform bus starts at 112).
    pub const FREE_SPIS: [u32; 2] = [80, 81];
}

impl GuestLayout {
    /// The layout for QEMU `virt` with `ram_size` bytes of RAM (`-m`), the NIC on the first
    /// `-device virtio-net-device`, and the UIO regions on a `reserved-memory` carve-out at the
    /// top of RAM: queues of `queue_size` bytes, `rx_data` and each of `tx_clients` TX data
    /// regions of `data_size` bytes, one page per doorbell. The carve-out leaves RAM Linux uses
    /// untouched, so the uio-driver maps memory no one else writes.
    pub fn qemu_virt(ram_size: u64, tx_clients: usize, queue_size: u64, data_size: u64) -> Self {
        let mut sizes: Vec<(String, u64)> = vec![
            (names::RX_FREE.into(), queue_size),
            (names::RX_ACTIVE.into(), queue_size),
            (names::RX_DATA.into(), data_size),
            (names::TX_FREE.into(), queue_size),
            (names::TX_ACTIVE.into(), queue_size),
            (names::RX_FAULT.into(), PAGE_SIZE),
            (names::TX_FAULT.into(), PAGE_SIZE),
        ];
        sizes.extend((0..tx_clients).map(|i| (names::tx_data(i), data_size)));
        let total: u64 = sizes.iter().map(|(_, s)| s).sum();
        // Carve out from a 2 MiB boundary below the end of RAM, so Linux keeps whole huge pages.
        let carve_size = total.next_multiple_of(0x20_0000);
        let carve_base = qemu_virt::RAM_BASE + ram_size - carve_size;
        let mut next = carve_base;
        let uio_regions: Vec<UioRegion> = sizes
            .into_iter()
            .map(|(name, size)| {
                let reg = Range { base: next, size };
                next += size;
                UioRegion { name, reg }
            })
            .collect();
        let net_driver_config = standalone_driver_config(&uio_regions);
        GuestLayout {
            memory: Range {
                base: qemu_virt::RAM_BASE,
                size: ram_size,
            },
            reserved: vec![Range {
                base: carve_base,
                size: carve_size,
            }],
            gic: GicV2 {
                distributor: qemu_virt::GICD,
                cpu_interface: qemu_virt::GICC,
            },
            psci: PsciMethod::Hvc,
            uart: Some(Pl011 {
                reg: qemu_virt::UART,
                spi: qemu_virt::UART_SPI,
            }),
            nic: VirtioMmio {
                reg: qemu_virt::FIRST_VIRTIO_MMIO,
                spi: qemu_virt::FIRST_VIRTIO_MMIO_SPI,
                edge: true,
            },
            uio_regions,
            rx_irq_spi: qemu_virt::FREE_SPIS[0],
            tx_irq_spi: qemu_virt::FREE_SPIS[1],
            initrd_addr: None,
            bootargs: format!("console=ttyAMA0 panic=-1 ipv6.disable=1 {UIO_OF_ID_ARG}"),
            net_driver_config,
        }
    }

    /// The number of client TX data regions (`tx_data0..tx_data<N-1>`).
    pub fn tx_clients(&self) -> usize {
        (0..)
            .take_while(|i| self.region(&names::tx_data(*i)).is_some())
            .count()
    }

    /// The UIO region called `name`, if present.
    pub fn region(&self, name: &str) -> Option<&UioRegion> {
        self.uio_regions.iter().find(|r| r.name == name)
    }

    /// The kernel command line, with [`UIO_OF_ID_ARG`] guaranteed.
    pub fn full_bootargs(&self) -> String {
        if self.bootargs.split_whitespace().any(|a| a == UIO_OF_ID_ARG) {
            self.bootargs.clone()
        } else if self.bootargs.is_empty() {
            UIO_OF_ID_ARG.to_string()
        } else {
            format!("{} {UIO_OF_ID_ARG}", self.bootargs)
        }
    }

    /// Checks that every region the uio-driver needs is there exactly once, page aligned, in
    /// guest-physical space not used by anything else, and that UIO regions inside RAM sit on
    /// a reserved carve-out.
    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |reason: String| Err(PlanError::Layout { reason });
        for name in FIXED_REGIONS {
            if self.region(name).is_none() {
                return Err(PlanError::MissingRegion {
                    name: name.to_string(),
                });
            }
        }
        let clients = self.tx_clients();
        if clients == 0 {
            return Err(PlanError::MissingRegion {
                name: names::tx_data(0),
            });
        }
        for r in &self.uio_regions {
            self.validate_region(r, clients)?;
        }
        for c in &self.reserved {
            if !self.memory.contains(c) {
                return bad(format!(
                    "reserved range {:#x}+{:#x} is not inside guest RAM {:#x}+{:#x}",
                    c.base, c.size, self.memory.base, self.memory.size
                ));
            }
        }
        if self.rx_irq_spi == self.tx_irq_spi
            || [self.rx_irq_spi, self.tx_irq_spi].contains(&self.nic.spi)
            || self
                .uart
                .is_some_and(|u| [self.rx_irq_spi, self.tx_irq_spi].contains(&u.spi))
        {
            return bad(format!(
                "rx_irq (SPI {}) and tx_irq (SPI {}) need two SPIs of their own",
                self.rx_irq_spi, self.tx_irq_spi
            ));
        }
        // GICv2 has at most 988 SPIs.
        for spi in [self.rx_irq_spi, self.tx_irq_spi, self.nic.spi] {
            if spi > 987 {
                return bad(format!("SPI {spi} is beyond what a GICv2 offers (0..=987)"));
            }
        }
        // What the uio-driver will check in the guest, checked here first.
        let config = DriverConfig::parse(&self.net_driver_config, "the net driver config")
            .map_err(|e| PlanError::Layout {
                reason: e.to_string(),
            })?;
        for (queues, capacity) in [
            ([names::RX_FREE, names::RX_ACTIVE], config.rx_capacity),
            ([names::TX_FREE, names::TX_ACTIVE], config.tx_capacity),
        ] {
            let need = queue_bytes(capacity.entries()) as u64;
            for name in queues {
                let size = self.region(name).map_or(0, |r| r.reg.size);
                if size < need {
                    return bad(format!(
                        "UIO region '{name}' holds {size:#x} bytes, but the net driver config's \
                         queue of capacity {} needs {need:#x}",
                        capacity.get()
                    ));
                }
            }
        }
        Ok(())
    }
    /// One UIO region: known to the uio-driver, once, whole pages, off RAM Linux uses and off
    /// every device and other region.
    fn validate_region(&self, r: &UioRegion, clients: usize) -> Result<(), PlanError> {
        let bad = |reason: String| Err(PlanError::Layout { reason });
        let known = FIXED_REGIONS.contains(&r.name.as_str())
            || r.name == names::STATS
            || r.name
                .strip_prefix(names::TX_DATA_PREFIX)
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i < clients && names::tx_data(i) == r.name);
        if !known {
            return bad(format!(
                "UIO region '{}' is not one the uio-driver knows (expected {}, optionally {}, and \
                 tx_data0..tx_data{}; TX data regions must be numbered from 0 without gaps)",
                r.name,
                FIXED_REGIONS.join(", "),
                names::STATS,
                clients - 1
            ));
        }
        if self.uio_regions.iter().filter(|o| o.name == r.name).count() > 1 {
            return bad(format!("UIO region '{}' appears more than once", r.name));
        }
        if r.reg.size == 0
            || !r.reg.base.is_multiple_of(PAGE_SIZE)
            || !r.reg.size.is_multiple_of(PAGE_SIZE)
        {
            return bad(format!(
                "UIO region '{}' ({:#x}+{:#x}) must be non-empty and 4 KiB aligned in base and size: \
                 UIO maps whole pages",
                r.name, r.reg.base, r.reg.size
            ));
        }
        if r.reg.end().is_none() {
            return bad(format!(
                "UIO region '{}' wraps around the address space",
                r.name
            ));
        }
        if r.reg.overlaps(&self.memory) && !self.reserved.iter().any(|c| c.contains(&r.reg)) {
            return bad(format!(
                "UIO region '{}' ({:#x}+{:#x}) lies in guest RAM but on no reserved carve-out: \
                 Linux would hand that memory out; add a reserved range covering it",
                r.name, r.reg.base, r.reg.size
            ));
        }
        for dev in [self.gic.distributor, self.gic.cpu_interface, self.nic.reg]
            .iter()
            .chain(self.uart.as_ref().map(|u| &u.reg))
        {
            if r.reg.overlaps(dev) {
                return bad(format!(
                    "UIO region '{}' ({:#x}+{:#x}) overlaps a device at {:#x}",
                    r.name, r.reg.base, r.reg.size, dev.base
                ));
            }
        }
        for o in &self.uio_regions {
            if o.name != r.name && r.reg.overlaps(&o.reg) {
                return bad(format!("UIO regions '{}' and '{}' overlap", r.name, o.name));
            }
        }
        Ok(())
    }
}

/// The `.net_driver_config` of a guest without virtualisers: queues of
/// [`STANDALONE_QUEUE_CAPACITY`] entries at the UIO regions' guest addresses. The regions must
/// hold them ([`GuestLayout::validate`] checks).
pub fn standalone_driver_config(uio_regions: &[UioRegion]) -> Vec<u8> {
    let queue = |name: &str| {
        uio_regions
            .iter()
            .find(|r| r.name == name)
            .map_or(RegionResource::default(), |r| RegionResource {
                vaddr: r.reg.base,
                size: r.reg.size,
            })
    };
    let capacity = match Capacity::new(STANDALONE_QUEUE_CAPACITY.into()) {
        Ok(c) => c,
        Err(_) => unreachable!("sdfgen's default capacity is a power of two"),
    };
    DriverConfig::standalone(
        capacity,
        capacity,
        [queue(names::RX_FREE), queue(names::RX_ACTIVE)],
        [queue(names::TX_FREE), queue(names::TX_ACTIVE)],
    )
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smoke() -> GuestLayout {
        GuestLayout::qemu_virt(512 << 20, 2, 0x4000, 0x10_0000)
    }

    #[test]
    fn qemu_layout_is_valid_and_carved_out_of_ram_top() {
        let l = smoke();
        l.validate().unwrap();
        assert_eq!(l.tx_clients(), 2);
        let carve = l.reserved[0];
        assert_eq!(carve.end(), Some(0x6000_0000));
        assert_eq!(carve.base % 0x20_0000, 0);
        for r in &l.uio_regions {
            assert!(carve.contains(&r.reg), "{}", r.name);
        }
        assert!(l.full_bootargs().contains(UIO_OF_ID_ARG));
    }

    #[test]
    fn missing_region_is_named() {
        for name in FIXED_REGIONS
            .iter()
            .map(|s| s.to_string())
            .chain([names::tx_data(0)])
        {
            let mut l = smoke();
            l.uio_regions.retain(|r| r.name != name);
            let err = l.validate().unwrap_err();
            assert!(
                matches!(&err, PlanError::MissingRegion { name: n } if *n == name),
                "{err}"
            );
            assert!(err.to_string().contains(&name), "{err}");
        }
    }

    #[test]
    fn gaps_duplicates_and_misplaced_regions_are_rejected() {
        let mut l = smoke();
        l.uio_regions.retain(|r| r.name != "tx_data0");
        // tx_data1 without tx_data0: reported as the missing first one.
        assert!(matches!(l.validate(), Err(PlanError::MissingRegion { .. })));

        let mut l = smoke();
        let dup = l.uio_regions[0].clone();
        l.uio_regions.push(dup);
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("more than once"));

        let mut l = smoke();
        l.reserved.clear();
        assert!(l.validate().unwrap_err().to_string().contains("carve-out"));

        let mut l = smoke();
        l.uio_regions[0].reg.base += 8;
        assert!(l.validate().unwrap_err().to_string().contains("aligned"));

        let mut l = smoke();
        l.tx_irq_spi = l.rx_irq_spi;
        assert!(l.validate().is_err());

        let mut l = smoke();
        l.uio_regions[0].name = "rx_fre".into();
        assert!(l.validate().is_err());
    }

    #[test]
    fn queues_too_small_for_the_configured_capacity_are_refused() {
        let mut l = smoke();
        let cap = |n| Capacity::new(n).unwrap();
        let q = [RegionResource::default(); 2];
        l.net_driver_config = DriverConfig::standalone(cap(512), cap(1024), q, q).to_bytes();
        let e = l.validate().unwrap_err().to_string();
        assert!(
            e.contains("'tx_free' holds 0x4000 bytes") && e.contains("capacity 1024 needs 0x4008"),
            "{e}"
        );
        l.net_driver_config = vec![0; 88];
        let e = l.validate().unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn bootargs_get_the_uio_of_id_once() {
        let mut l = smoke();
        l.bootargs = String::new();
        assert_eq!(l.full_bootargs(), UIO_OF_ID_ARG);
        l.bootargs = format!("quiet {UIO_OF_ID_ARG}");
        assert_eq!(l.full_bootargs().matches(UIO_OF_ID_ARG).count(), 1);
    }
}
