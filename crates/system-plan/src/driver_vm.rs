//! The seL4 image's derived pieces, from the system description alone: the driver VM's device
//! tree, the VMM's `.vmm_config`, and every PD's config sections patched into a per-PD copy of
//! its ELF (what sDDF's Makefiles do with sdfgen's `.data` files and `objcopy --update-section`).
//!
//! What is read from `system.xml` (and checked, naming the PD, region or map involved):
//! - the driver PD and its UIO regions: [`sdf::net::driver_vm_regions`]; each region's guest
//!   address is the VM's `<map>` of it. A system without an sDDF net part (no virtualisers, e.g.
//!   `examples/vmm-boot`, which boots the guest alone) may instead give the one PD with a
//!   `virtual_machine` memory regions named exactly like the UIO regions (`rx_free`, ...,
//!   `tx_data0`, ...): a *standalone* driver VM, whose `.vmm_config` has no virtualiser channels
//!   and which gets no other config section;
//! - guest RAM: the VM's one executable map, which must be 1:1 (the NIC DMAs to guest-physical
//!   addresses) and mapped at the same address in the driver PD (which loads the guest there);
//! - the passed-through devices by their physical pages on QEMU `virt`: the PL011 (INTID 33)
//!   and a page of virtio-mmio transports, whose transport is the one the driver PD has the
//!   `<irq>` of (transport `i` at `0x0a000000 + i * 0x200` has INTID `48 + i`);
//! - channel ids of the driver PD: to virt_rx, to virt_tx, and its one `pp` channel (the timer).
//!
//! The guest's uio-driver gets its queue capacities as data: the driver PD's
//! `.net_driver_config` as `sdf::net::derive` makes it (which needs the clients' MACs to infer
//! the spec), in the device tree's `/chosen/netvm,net-driver-config`; a standalone VM gets
//! queues of [`crate::layout::STANDALONE_QUEUE_CAPACITY`] entries.
//!
//! What this module chooses, in one place: the doorbell pages [`RX_FAULT_GPA`] /
//! [`TX_FAULT_GPA`] (deliberately unmapped in the VM), the `rx_irq` / `tx_irq` SPIs, and where
//! the initrd goes. Both the device tree and `.vmm_config` are written from these, so they agree
//! by construction, and the VMM checks them against each other before it boots the guest.

use std::path::Path;

use sdf::{Map, ProtectionDomain, SystemDescription, VirtualMachine};
use vmm_api::{DeviceIrq, VmmConfig};

use crate::layout::{
    names, qemu_virt, standalone_driver_config, GicV2, GuestLayout, Pl011, PsciMethod, Range,
    UioRegion, VirtioMmio, PAGE_SIZE,
};
use crate::{Clients, PlanError, Subject};

/// The driver VM's kernel tuning, on the guest's command line after the console options (the
/// image's device tree; the reflect reference, `make qemu-reference REF_MODE=reflect`, boots
/// with it too, so that it measures the same kernel).
/// `virtio_net.napi_tx=0`: the guest frees transmitted buffers when it next transmits instead of
/// taking a TX-completion interrupt for them. Every guest interrupt costs a round trip through
/// the VMM and a VGIC maintenance fault; without it UDP echo lost frames from 20 Mb/s, with it
/// it was lossless at 30 Mb/s in the same session (TCG; BENCHMARKS.md).
/// `ipv6.disable=1`: the driver VM is no host on the clients' link; without IPv6 in the kernel
/// it cannot send MLD reports, DAD or router solicitations or answer ND and ping6 (`/init` also
/// turns IPv6 and ARP off on the NIC, for command lines without it).
///
/// The rest take per-frame work off the guest kernel, which under QEMU's TCG is most of what
/// limits the image (issue #18; BENCHMARKS.md has the profile and the before/after runs). The
/// driver VM runs one program that moves frames and holds no secrets; seL4 contains it, so
/// hardening inside it buys little and costs every frame:
/// - `randomize_kstack_offset=off`: Debian's kernel draws a random stack offset on every system
///   call. The guest has no entropy source, its RNG never becomes ready, and each refill of the
///   per-CPU batch then extracts from the input pool (BLAKE2s): 9% of the guest's translated
///   code at 100 Mb/s UDP before this flag;
/// - `init_on_alloc=0`: no zeroing of every page and slab object (each skb's data) on allocation;
/// - `hardened_usercopy=off`, `audit=0`, `psi=0`: no object checks on each copy to or from user
///   space, no audit context per system call, no pressure accounting on each context switch;
/// - `lsm=capability`: no security module but capabilities. Debian's kernel otherwise starts
///   SELinux, TOMOYO, Landlock and the BPF LSM (with `apparmor=0` SELinux took AppArmor's
///   place), each with hooks on every socket operation;
/// - `rodata=on`: read-only kernel data without `rodata=full`'s page-granular linear map, so
///   the linear map keeps its block mappings. QEMU refills its TLB after every VM exit and
///   entry, and each refill walks the guest's stage-1 tables (nested in stage 2): fewer levels
///   to walk per refill. With `lsm=capability`, ~3% more UDP echoed at saturation, in four of
///   four interleaved pairs (BENCHMARKS.md, issue #18);
/// - `nowatchdog`: no lockup-detector timers (each guest timer interrupt is a VM exit);
/// - `mitigations=off`: the guest's Spectre workarounds (the cortex-a53 needs few).
///
/// Three words are the uio-driver's (`/init` passes `uio_driver.<option>=<value>` on as
/// `--<option> <value>`), for the same reason:
/// - `uio_driver.rx_wakeup=frame-ring`: a TPACKET_V2 ring, a slot per frame, instead of V3's
///   blocks with a second socket to wake the driver per frame: no second delivery per frame in
///   the kernel, no block to zero (median RTT at 10 Mb/s 1.70 against 1.77 ms, four of four
///   interleaved pairs, the same throughput);
/// - `uio_driver.qdisc_bypass=1`: the driver's frames go straight to virtio-net's queue
///   (`PACKET_QDISC_BYPASS`), not through the interface's qdisc;
/// - `uio_driver.driver_first=1`: the NIC's NAPI in a kernel thread and the driver `SCHED_FIFO`
///   above it (`uio_driver::sched`), so that past its capacity the guest stops taking frames off
///   the NIC instead of receiving them only for the packet ring to drop them; the device then
///   drops what the guest has no room for, before the guest pays for it (UDP 1472 B at 160 Mb/s
///   offered: ~100 instead of ~89 Mb/s echoed).
pub const GUEST_KERNEL_TUNING: &str = "ipv6.disable=1 virtio_net.napi_tx=0 \
randomize_kstack_offset=off init_on_alloc=0 hardened_usercopy=off audit=0 psi=0 \
lsm=capability rodata=on nowatchdog mitigations=off \
uio_driver.rx_wakeup=frame-ring uio_driver.qdisc_bypass=1 uio_driver.driver_first=1";

/// Guest-physical page of the `rx_fault` doorbell.
pub const RX_FAULT_GPA: u64 = 0x3f00_0000;
/// Guest-physical page of the `tx_fault` doorbell.
pub const TX_FAULT_GPA: u64 = 0x3f00_1000;
/// The initrd's offset into guest RAM (as libvmm places it; the kernel image sits at the base).
pub const INITRD_OFFSET: u64 = 0x0d00_0000;
/// QEMU `virt`'s 32 virtio-mmio transports: the first one, the stride, the first INTID.
const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
const VIRTIO_MMIO_STRIDE: u64 = 0x200;
const VIRTIO_MMIO_COUNT: u64 = 32;
const VIRTIO_MMIO_FIRST_INTID: u64 = 48;
/// QEMU `virt`'s GIC virtual CPU interface (mapped at the guest's GICC).
const GICV: u64 = 0x0804_0000;

/// What the driver VM looks like, read off the system description.
#[derive(Debug, Clone)]
pub struct DriverVm {
    /// The PD that runs the VM.
    pub driver: String,
    /// The guest's device tree contents (initrd address included).
    pub layout: GuestLayout,
    /// The VMM's config section.
    pub vmm_config: VmmConfig,
    /// No sDDF net part: the UIO regions are found by name, there are no virtualisers.
    pub standalone: bool,
}

fn bad(system: &Path, subject: Subject, reason: String) -> PlanError {
    PlanError::System {
        path: system.to_path_buf(),
        subject,
        reason,
    }
}

/// Reads the driver VM off `sys` (parsed from `path`); `bootargs` is the kernel command line,
/// `clients` the clients' MAC addresses and buffer counts (for the net spec whose `.net_driver_config` the guest
/// gets; a standalone VM needs none).
pub fn driver_vm(
    sys: &SystemDescription,
    path: &Path,
    bootargs: &str,
    clients: &Clients<'_>,
) -> Result<DriverVm, PlanError> {
    let (driver, mut regions, standalone) = match sdf::net::driver_vm_regions(sys) {
        Ok((driver, regions)) => (driver, regions, false),
        Err(e) => {
            let (driver, regions) = standalone_vm_regions(sys)
                .ok_or_else(|| bad(path, Subject::System, e.to_string()))?;
            (driver, regions, true)
        }
    };
    let pd = sys.pd(&driver).ok_or_else(|| {
        bad(
            path,
            Subject::Pd(driver.clone()),
            format!("no PD '{driver}'"),
        )
    })?;
    let vm = pd.virtual_machine.as_ref().ok_or_else(|| {
        bad(
            path,
            Subject::Pd(driver.clone()),
            format!("the net driver PD '{driver}' runs no virtual_machine"),
        )
    })?;
    let ram = guest_ram(sys, path, pd, vm)?;
    // The guest driver's counters page, when the VM maps one (writable: the guest writes it).
    let stats_mr = format!("{}{}", sdf::net::STATS_PREFIX, names::STATS_COMPONENT);
    if vm.maps.iter().any(|m| m.mr == stats_mr && m.perms.write) {
        regions.push((names::STATS.to_owned(), stats_mr));
    }
    let uio_regions = uio_regions(sys, path, vm, &regions)?;
    let uart = uart(sys, path, pd, vm)?;
    let (nic, nic_irq) = nic(sys, path, pd, vm)?;
    let (virt_rx, virt_tx, timer) = driver_channels(sys, path, &driver, standalone)?;

    // The driver's queue capacities, as data: the very `.net_driver_config` sdf::net derives for
    // the driver PD (which virt_rx and virt_tx agree with), or a standalone one.
    let net_driver_config = if standalone {
        standalone_driver_config(&uio_regions)
    } else {
        derived_driver_config(sys, path, clients)?
    };
    let [rx_spi, tx_spi] = qemu_virt::FREE_SPIS;
    let layout = GuestLayout {
        memory: ram,
        reserved: Vec::new(),
        gic: GicV2 {
            distributor: qemu_virt::GICD,
            cpu_interface: qemu_virt::GICC,
        },
        psci: PsciMethod::Hvc,
        uart: uart.map(|(u, _)| u),
        nic,
        uio_regions,
        rx_irq_spi: rx_spi,
        tx_irq_spi: tx_spi,
        initrd_addr: Some(ram.base + INITRD_OFFSET),
        bootargs: bootargs.to_string(),
        net_driver_config,
    };
    layout.validate()?;
    let vmm_config = VmmConfig {
        uart: uart.map(|(_, irq)| irq),
        nic: Some(nic_irq),
        virt_rx,
        virt_tx,
        timer,
        rx_irq: (32 + rx_spi) as u16,
        tx_irq: (32 + tx_spi) as u16,
        rx_fault: RX_FAULT_GPA,
        tx_fault: TX_FAULT_GPA,
    };
    // The VMM refuses what it cannot use; refuse it here first, at build time.
    VmmConfig::parse(&vmm_config.to_bytes())
        .map_err(|e| bad(path, Subject::Pd(driver.clone()), format!("derived {e}")))?;
    Ok(DriverVm {
        driver,
        layout,
        vmm_config,
        standalone,
    })
}

/// The size of the memory region `map` maps (0 if there is none: the SDF was validated).
fn size_of(sys: &SystemDescription, map: &Map) -> u64 {
    sys.memory_region(&map.mr).map_or(0, |mr| mr.size)
}

/// Guest RAM: the VM's one executable map, 1:1, also mapped by the driver PD at the same
/// address (with a setvar: it loads the guest there).
fn guest_ram(
    sys: &SystemDescription,
    path: &Path,
    pd: &ProtectionDomain,
    vm: &VirtualMachine,
) -> Result<Range, PlanError> {
    let mut exec = vm.maps.iter().filter(|m| m.perms.execute);
    let (Some(ram_map), None) = (exec.next(), exec.next()) else {
        return Err(bad(
            path,
            Subject::Vm(vm.name.clone()),
            format!(
                "virtual_machine '{}' needs exactly one executable map (guest RAM)",
                vm.name
            ),
        ));
    };
    let ram = Range {
        base: ram_map.vaddr,
        size: size_of(sys, ram_map),
    };
    let ram_mr = sys.memory_region(&ram_map.mr).ok_or_else(|| {
        bad(
            path,
            Subject::Region(ram_map.mr.clone()),
            format!("no memory region '{}'", ram_map.mr),
        )
    })?;
    if ram_mr.phys_addr != Some(ram.base) {
        return Err(bad(
            path,
            Subject::Region(ram_mr.name.clone()),
            format!(
                "guest RAM '{}' is mapped at {:#x} but its phys_addr is {:?}: it must be 1:1 so that the passed-through NIC's DMA reaches it",
                ram_mr.name, ram.base, ram_mr.phys_addr
            ),
        ));
    }
    if !pd
        .maps
        .iter()
        .any(|m| m.mr == ram_mr.name && m.vaddr == ram.base && m.setvar_vaddr.is_some())
    {
        return Err(bad(
            path,
            Subject::Pd(pd.name.clone()),
            format!(
                "PD '{}' must map guest RAM '{}' at {:#x} with setvar_vaddr (it loads the guest there)",
                pd.name, ram_mr.name, ram.base
            ),
        ));
    }
    Ok(ram)
}

/// The UIO regions (`(UIO name, memory region)`) at the VM's maps of them, then the doorbells,
/// which no map may cover.
fn uio_regions(
    sys: &SystemDescription,
    path: &Path,
    vm: &VirtualMachine,
    regions: &[(String, String)],
) -> Result<Vec<UioRegion>, PlanError> {
    let mut uio_regions = Vec::new();
    for (name, mr) in regions {
        let map = vm.maps.iter().find(|m| &m.mr == mr).ok_or_else(|| {
            bad(
                path,
                Subject::Region(mr.clone()),
                format!("the UIO region '{name}' (memory region '{mr}') is not mapped into virtual_machine '{}'", vm.name),
            )
        })?;
        uio_regions.push(UioRegion {
            name: name.clone(),
            reg: Range {
                base: map.vaddr,
                size: size_of(sys, map),
            },
        });
    }
    for (name, gpa) in [
        (names::RX_FAULT, RX_FAULT_GPA),
        (names::TX_FAULT, TX_FAULT_GPA),
    ] {
        if let Some(m) = vm
            .maps
            .iter()
            .find(|m| m.vaddr < gpa + PAGE_SIZE && gpa < m.vaddr + size_of(sys, m))
        {
            return Err(bad(
                path,
                Subject::Region(m.mr.clone()),
                format!("map of '{}' at {:#x} covers the {name} doorbell page {gpa:#x}, which must stay unmapped so that a store traps", m.mr, m.vaddr),
            ));
        }
        uio_regions.push(UioRegion {
            name: name.to_string(),
            reg: Range {
                base: gpa,
                size: PAGE_SIZE,
            },
        });
    }
    Ok(uio_regions)
}

/// The VM's maps of devices, with their physical addresses; checks the GIC virtual CPU
/// interface sits at the guest's GICC.
fn device_maps<'a>(
    sys: &SystemDescription,
    path: &Path,
    vm: &'a VirtualMachine,
) -> Result<Vec<(&'a Map, u64)>, PlanError> {
    let device_maps: Vec<(&Map, u64)> = vm
        .maps
        .iter()
        .filter_map(|m| Some((m, sys.memory_region(&m.mr)?.phys_addr?)))
        .collect();
    if !device_maps
        .iter()
        .any(|(m, pa)| *pa == GICV && m.vaddr == qemu_virt::GICC.base)
    {
        return Err(bad(
            path,
            Subject::Vm(vm.name.clone()),
            format!(
                "virtual_machine '{}' must map the GIC virtual CPU interface (physical {GICV:#x}) at the guest's GICC {:#x}",
                vm.name,
                qemu_virt::GICC.base
            ),
        ));
    }
    Ok(device_maps)
}

/// The passed-through PL011, if the VM maps it, with the driver PD's `<irq>` of it.
fn uart(
    sys: &SystemDescription,
    path: &Path,
    pd: &ProtectionDomain,
    vm: &VirtualMachine,
) -> Result<Option<(Pl011, DeviceIrq)>, PlanError> {
    let mut uart = None;
    for (map, pa) in device_maps(sys, path, vm)? {
        if pa != qemu_virt::UART.base {
            continue;
        }
        let intid = 32 + u64::from(qemu_virt::UART_SPI);
        let irq = pd.irqs.iter().find(|i| i.irq == intid).ok_or_else(|| {
            bad(
                path,
                Subject::Pd(pd.name.clone()),
                format!(
                    "PD '{}' passes the PL011 through but has no <irq irq=\"{intid}\">",
                    pd.name
                ),
            )
        })?;
        uart = Some((
            Pl011 {
                reg: Range {
                    base: map.vaddr,
                    size: PAGE_SIZE,
                },
                spi: qemu_virt::UART_SPI,
            },
            DeviceIrq {
                channel: irq.id,
                intid: intid as u16,
            },
        ));
    }
    Ok(uart)
}

/// The passed-through virtio-mmio NIC: of the transports a device map covers, the one whose
/// `<irq>` the driver PD has (transport `i` at `0x0a000000 + i * 0x200` has INTID `48 + i`).
fn nic(
    sys: &SystemDescription,
    path: &Path,
    pd: &ProtectionDomain,
    vm: &VirtualMachine,
) -> Result<(VirtioMmio, DeviceIrq), PlanError> {
    let mut nic = None;
    for (map, pa) in device_maps(sys, path, vm)? {
        let page_end = pa + size_of(sys, map);
        let transports = (0..VIRTIO_MMIO_COUNT)
            .map(|i| {
                (
                    VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE,
                    VIRTIO_MMIO_FIRST_INTID + i,
                )
            })
            .filter(|(t, _)| (pa..page_end).contains(t))
            .collect::<Vec<_>>();
        if transports.is_empty() {
            continue;
        }
        let mut with_irq = transports
            .iter()
            .filter_map(|(t, intid)| Some((*t, pd.irqs.iter().find(|i| i.irq == *intid)?)));
        let (Some((transport, irq)), None) = (with_irq.next(), with_irq.next()) else {
            return Err(bad(
                path,
                Subject::Region(map.mr.clone()),
                format!(
                    "map of '{}' passes virtio-mmio transports {:#x}..{page_end:#x} through: PD '{}' needs the <irq> of exactly one of them (INTID 48 + transport index) to say which is the NIC",
                    map.mr, pa, pd.name
                ),
            ));
        };
        nic = Some((
            VirtioMmio {
                reg: Range {
                    base: map.vaddr + (transport - pa),
                    size: VIRTIO_MMIO_STRIDE,
                },
                spi: (irq.irq - 32) as u32,
                edge: true,
            },
            DeviceIrq {
                channel: irq.id,
                intid: irq.irq as u16,
            },
        ));
    }
    nic.ok_or_else(|| {
        bad(
            path,
            Subject::Vm(vm.name.clone()),
            format!(
                "virtual_machine '{}' has no virtio-mmio NIC passed through",
                vm.name
            ),
        )
    })
}

/// The driver PD's channel ids: `(virt_rx, virt_tx, timer)`.
type DriverChannels = (Option<u8>, Option<u8>, Option<u8>);

/// The driver PD's channel ids: to virt_rx and virt_tx (none for a standalone VM), and its one
/// `pp` channel, to the timer.
fn driver_channels(
    sys: &SystemDescription,
    path: &Path,
    driver: &str,
    standalone: bool,
) -> Result<DriverChannels, PlanError> {
    let channels = sys.channels_of(driver);
    let to = |peer: &str| {
        channels
            .iter()
            .find(|c| c.peer_pd == peer)
            .map(|c| c.local_id)
            .ok_or_else(|| {
                bad(
                    path,
                    Subject::Channel {
                        pd: driver.to_owned(),
                        peer: peer.to_owned(),
                    },
                    format!("no channel between '{driver}' and '{peer}'"),
                )
            })
    };
    let (virt_rx, virt_tx) = if standalone {
        (None, None)
    } else {
        let roles = net_roles(sys, path)?;
        (Some(to(&roles.0)?), Some(to(&roles.1)?))
    };
    let mut pps = channels.iter().filter(|c| c.pp);
    let timer = match (pps.next(), pps.next()) {
        (None, _) => None,
        (Some(c), None) if c.peer_notify => Some(c.local_id),
        _ => {
            return Err(bad(
                path,
                Subject::Pd(driver.to_owned()),
                format!(
                    "PD '{driver}' may have one pp channel, to the timer PD that also notifies it"
                ),
            ))
        }
    };
    Ok((virt_rx, virt_tx, timer))
}

/// The `.net_driver_config` that `sdf::net::derive` gives the driver PD of `sys`, with the
/// spec [`sdf::net::NetSystemSpec::infer`] reads off it (as [`crate::sections`] derives every other
/// PD's config).
pub fn derived_driver_config(
    sys: &SystemDescription,
    path: &Path,
    clients: &Clients<'_>,
) -> Result<Vec<u8>, PlanError> {
    let spec = clients.spec(sys).map_err(|e| {
        bad(
            path,
            Subject::System,
            format!(
                "the driver's net config (for the guest device tree) needs the clients' MACs: {e}"
            ),
        )
    })?;
    sdf::net::derive(sys, &spec)
        .map_err(|e| bad(path, Subject::System, e.to_string()))?
        .into_iter()
        .find(|s| s.pd == spec.driver && s.name == sdf::net::DRIVER_SECTION)
        .map(|s| s.bytes)
        .ok_or_else(|| {
            bad(
                path,
                Subject::Pd(spec.driver.clone()),
                "sdf::net derived no .net_driver_config".to_owned(),
            )
        })
}

/// A standalone driver VM (see the module documentation): the one PD with a
/// `virtual_machine`, and each UIO region as the memory region of that name, if the VM maps
/// every fixed one and `tx_data0`.
fn standalone_vm_regions(sys: &SystemDescription) -> Option<(String, Vec<(String, String)>)> {
    let mut vms = sys.pds().filter(|(pd, _)| pd.virtual_machine.is_some());
    let (Some((pd, _)), None) = (vms.next(), vms.next()) else {
        return None;
    };
    let vm = pd.virtual_machine.as_ref()?;
    let mapped = |name: &str| vm.maps.iter().any(|m| m.mr == name);
    // The order of sdf::net::driver_vm_regions.
    let mut names: Vec<String> = [
        names::RX_FREE,
        names::RX_ACTIVE,
        names::TX_FREE,
        names::TX_ACTIVE,
        names::RX_DATA,
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    if !names.iter().all(|n| mapped(n)) || !mapped(&names::tx_data(0)) {
        return None;
    }
    names.extend((0..).map(names::tx_data).take_while(|n| mapped(n)));
    Some((
        pd.name.clone(),
        names.into_iter().map(|n| (n.clone(), n)).collect(),
    ))
}

/// (virt_rx, virt_tx) PD names, as sdf::net reads them off the region names.
fn net_roles(sys: &SystemDescription, path: &Path) -> Result<(String, String), PlanError> {
    let (_, regions) =
        sdf::net::driver_vm_regions(sys).map_err(|e| bad(path, Subject::System, e.to_string()))?;
    // `{dev}/net/queue/{driver}/{virt}/free`: the fourth component is the virtualiser.
    let peer = |uio: &str| {
        regions
            .iter()
            .find(|(n, _)| n == uio)
            .map(|(_, mr)| mr.split('/').nth(4).unwrap_or_default().to_string())
            .ok_or_else(|| {
                bad(
                    path,
                    Subject::Region(uio.to_owned()),
                    format!("the driver VM has no UIO region '{uio}'"),
                )
            })
    };
    Ok((peer(names::RX_FREE)?, peer(names::TX_FREE)?))
}
