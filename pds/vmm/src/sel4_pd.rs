//! The Microkit handler: owns vCPU 0, implements [`Platform`] with seL4 invocations, loads the
//! guest images into 1:1 guest RAM and starts the guest in `init`.
//!
//! System contract (system.xml, examples/vmm-boot/system.xml): everything that differs between
//! systems comes from the `.vmm_config` section the image build derives from the SDF
//! ([`vmm::config`]): the IRQ channels of the passed-through PL011 and NIC, the channels to the
//! virtualisers (the `rx_fault` / `tx_fault` doorbells notify them, their notifications raise
//! `rx_irq` / `tx_irq`) and to the timer PD (which wakes a guest that waits in WFI for its
//! virtual timer), and where the doorbells and vIRQs sit in the guest. Guest RAM is mapped in
//! this PD at its guest-physical address, patched into `guest_ram_vaddr` / `guest_ram_size`.

use core::fmt;

use microkit::{Channel, ChannelSet, Child, MessageInfo, Vcpu};
use netvm_api::stats::StatsWriter;
use sddf::shm::IdentityMapped;
use vmm::config::{VmmConfig, SIZE as CONFIG_SIZE};
use vmm::fault::Fault;
use vmm::linux::{BootPlan, GuestRam};
use vmm::regs::{UserContext, USER_CONTEXT_WORDS};
use vmm::vgic::{ListRegisters, LoadError, GICD_BASE};
use vmm::vmm::{KernelError, Vtimer};
use vmm::{Config, Doorbell, Platform, Reply, VirqRoute, Vmm};

mod images {
    include!(concat!(env!("OUT_DIR"), "/images.rs"));
}

/// The only vCPU.
const VCPU: Vcpu = Vcpu::new(0);

microkit::config_section!(".vmm_config", VMM_CONFIG: [u8; CONFIG_SIZE]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);
microkit::config_section!(
    ".net_driver_config",
    NET_DRIVER_CONFIG: [u8; core::mem::size_of::<sddf::config::NetDriverConfig>()]
);

/// The doorbells and vIRQ routes of this system, built once from `.vmm_config` in `init`.
struct Routes {
    doorbells: [Doorbell; 2],
    virqs: [VirqRoute; 4],
    count: usize,
}

impl Routes {
    fn new(cfg: &VmmConfig) -> Self {
        let mut virqs = [VirqRoute {
            name: "",
            channel: 0,
            irq: 0,
            passthrough: false,
        }; 4];
        let mut count = 0;
        let mut add = |route: VirqRoute| {
            virqs[count] = route;
            count += 1;
        };
        if let Some(d) = cfg.uart {
            add(VirqRoute {
                name: "uart",
                channel: d.channel,
                irq: d.intid,
                passthrough: true,
            });
        }
        if let Some(d) = cfg.nic {
            add(VirqRoute {
                name: "virtio-net",
                channel: d.channel,
                irq: d.intid,
                passthrough: true,
            });
        }
        if let Some(ch) = cfg.virt_rx {
            add(VirqRoute {
                name: "rx_irq",
                channel: ch,
                irq: cfg.rx_irq,
                passthrough: false,
            });
        }
        if let Some(ch) = cfg.virt_tx {
            add(VirqRoute {
                name: "tx_irq",
                channel: ch,
                irq: cfg.tx_irq,
                passthrough: false,
            });
        }
        Routes {
            doorbells: [
                Doorbell {
                    name: "rx_fault",
                    gpa: cfg.rx_fault,
                    channel: cfg.virt_rx,
                },
                Doorbell {
                    name: "tx_fault",
                    gpa: cfg.tx_fault,
                    channel: cfg.virt_tx,
                },
            ],
            virqs,
            count,
        }
    }

    fn virqs(&self) -> &[VirqRoute] {
        &self.virqs[..self.count]
    }
}

static ROUTES: once::InitOnce<Routes> = once::InitOnce::new();

microkit::setvar!(
    /// Where guest RAM is mapped in this PD (= its guest-physical base: RAM is 1:1).
    guest_ram_vaddr
);
microkit::setvar!(
    /// Size of guest RAM.
    guest_ram_size
);
microkit::setvar!(
    /// Where the passed-through NIC's virtio-mmio registers are mapped in this PD (0: not
    /// mapped, the NIC is not reset before a boot).
    nic_regs_vaddr
);

/// `seL4_VCPUReg` numbers of the virtual timer (libsel4 `sel4_arch/constants.h`).
const VCPU_REG_CNTV_CTL: u64 = 20;
const VCPU_REG_CNTV_CVAL: u64 = 21;
const VCPU_REG_CNTVOFF: u64 = 22;
/// The EL1 system registers a restart puts back (`seL4_VCPUReg` 0..=21: SCTLR, TTBRs, TCR,
/// MAIR, ..., VBAR, TPIDR_EL1, VMPIDR, SP_EL1, ELR_EL1, SPSR_EL1, CNTV_CTL, CNTV_CVAL). Not
/// CNTVOFF: seL4 manages the virtual counter's offset itself.
const VCPU_RESET_REGS: usize = VCPU_REG_CNTVOFF as usize;

/// How many times the VMM boots the guest again after it crashed or asked for a reset. Each
/// restart is counted (`vmm.guest_restarts`) and logged; past the budget the guest stays down,
/// so a guest that crashes at every boot cannot keep this PD busy for ever.
const RESTART_BUDGET: u32 = 16;
/// How long an interrupt may wait for the guest's EOI before the watchdog stops and restarts
/// the guest. A Linux guest EOIs its timer tick within milliseconds; this is far beyond any
/// honest delay, even under TCG on a loaded host.
const WATCHDOG_SECONDS: u64 = 10;

/// The seL4 side of [`Platform`].
struct Sel4 {
    /// The channel to the timer PD, if the system has one.
    timer: Option<Channel>,
    /// The vCPU's system registers as seL4 created them (read before the first boot); `None`
    /// where a read failed (that register is then left alone at a restart).
    pristine: [Option<u64>; VCPU_RESET_REGS],
    /// virt_tx's queue of clients' frames to the guest's driver (`tx_active`), read by the
    /// watchdog; `None` without a usable `.net_driver_config`.
    tx_active: Option<sddf::queue::Queue<'static>>,
}

impl Sel4 {
    fn snapshot_vcpu() -> [Option<u64>; VCPU_RESET_REGS] {
        core::array::from_fn(|reg| VCPU.read_reg(reg as u64).ok())
    }

    /// The driver's TX queue from `.net_driver_config` (this PD maps the driver-side queues,
    /// uncached, as the guest does). A missing or broken section only costs the watchdog one
    /// of its signs, so it is reported and the guest runs anyway.
    fn tx_active() -> Option<sddf::queue::Queue<'static>> {
        let bytes = NET_DRIVER_CONFIG.as_bytes();
        if bytes.iter().all(|&b| b == 0) {
            return None;
        }
        let config = match sddf::config::parse::<sddf::config::NetDriverConfig>(bytes) {
            Ok(c) => c,
            Err(e) => {
                microkit::debug_println!(
                    "vmm: .net_driver_config: {e}; the watchdog does not see the driver's TX queue"
                );
                return None;
            }
        };
        #[allow(unsafe_code)]
        // SAFETY: Microkit maps the regions `.net_driver_config` names (derived from the SDF by
        // `guest-image sel4-pds` for this PD) at those vaddrs for the PD's whole life; this PD only
        // reads the queue indices through `sddf::queue::Queue`, atomically.
        let mem = unsafe { IdentityMapped::new() };
        match config.virt_tx.queues(&mem) {
            Ok(pair) => Some(pair.active),
            Err(e) => {
                microkit::debug_println!(
                    "vmm: the driver's TX queue: {e}; the watchdog does not see it"
                );
                None
            }
        }
    }
}

fn kernel(e: microkit::InvocationError) -> KernelError {
    KernelError(e.0)
}

impl ListRegisters for Sel4 {
    fn load(&mut self, irq: u16, priority: u8, index: u8) -> Result<(), LoadError> {
        VCPU.inject_irq(irq, priority, 0, index)
            .map_err(|e| LoadError(e.0))
    }
}

impl Platform for Sel4 {
    fn read_regs(&mut self, count: usize) -> Result<UserContext, KernelError> {
        sys::read_registers(VCPU.id(), count).map_err(KernelError)
    }
    fn write_regs(&mut self, ctx: &UserContext, count: usize) -> Result<(), KernelError> {
        sys::write_registers(VCPU.id(), ctx, count).map_err(KernelError)
    }
    fn stop_vcpu(&mut self) -> Result<(), KernelError> {
        VCPU.stop().map_err(kernel)
    }
    fn resume_vcpu(&mut self, pc: u64) -> Result<(), KernelError> {
        VCPU.restart(pc as usize).map_err(kernel)
    }
    fn ack_vppi(&mut self, irq: u16) -> Result<(), KernelError> {
        VCPU.ack_vppi(irq.into()).map_err(kernel)
    }
    fn irq_ack(&mut self, channel: u8) {
        // The wake-up comes from the timer PD, a notification with nothing to acknowledge.
        let ch = Channel::new(channel);
        if ch.is_irq() {
            ch.irq_ack();
        }
    }
    fn notify(&mut self, channel: u8) {
        // A system without that virtualiser: the doorbell is counted, nobody is told.
        let ch = Channel::new(channel);
        if ch.can_notify() {
            ch.notify();
        }
    }
    fn vtimer(&mut self) -> Result<Vtimer, KernelError> {
        Ok(Vtimer {
            ctl: VCPU.read_reg(VCPU_REG_CNTV_CTL).map_err(kernel)?,
            cval: VCPU.read_reg(VCPU_REG_CNTV_CVAL).map_err(kernel)?,
            offset: VCPU.read_reg(VCPU_REG_CNTVOFF).map_err(kernel)?,
        })
    }
    fn now(&mut self) -> u64 {
        sys::physical_count()
    }
    fn set_wakeup(&mut self, deadline: Option<u64>) -> bool {
        let Some(timer) = self.timer else {
            return false;
        };
        // The sDDF timer protocol has no cancel: a disarmed wake-up that still fires only
        // makes the VMM look at the guest's timer again (a spurious WFI wake-up is allowed).
        if let Some(d) = deadline {
            let ticks = d.saturating_sub(sys::physical_count());
            microkit::mr_set(0, sddf::timer::ticks_to_ns(ticks, sys::counter_frequency()));
            timer.pp_call(MessageInfo::new(sddf::timer::SET_TIMEOUT, 1));
        }
        true
    }
    fn log(&mut self, args: fmt::Arguments<'_>) {
        microkit::debug_print!("{args}");
    }
    fn driver_backlog(&mut self) -> Option<(u16, u16)> {
        // Impossible indices (a guest that scribbles on the queue) read as nothing waiting.
        self.tx_active
            .map(|q| (q.observed_len().unwrap_or(0), q.observed_head()))
    }
    fn reset_vcpu(&mut self) -> Result<(), KernelError> {
        for (reg, value) in self.pristine.iter().enumerate() {
            if let Some(value) = *value {
                VCPU.write_reg(reg as u64, value).map_err(kernel)?;
            }
        }
        Ok(())
    }
}

/// The PD's state.
pub struct VmmPd {
    vmm: Vmm<'static>,
    hw: Sel4,
    /// `.vmm_config` was valid (otherwise the guest is never started).
    configured: bool,
}

impl VmmPd {
    /// After the guest stopped: boots it again if it crashed or asked for a reset and the
    /// restart budget allows (reloading kernel, device tree and initrd from this PD's pristine
    /// copies; the sDDF queue regions are not touched: the new guest's driver asks the
    /// virtualisers to rebuild its queues).
    fn maybe_restart(&mut self) {
        if self.vmm.state() == vmm::RunState::Stopped && self.vmm.restart(&mut self.hw) {
            self.boot();
            self.vmm.publish_stats();
        }
    }

    /// Publishes the counters in the region `.netvm_stats` names, if any. A broken section is
    /// reported and the guest runs without published counters: unlike in a virtualiser, a
    /// stats problem must not take the driver VM (and with it the whole network) down.
    fn attach_stats(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: Microkit maps the region the `.netvm_stats` section names (derived from the
        // SDF by `guest-image sel4-pds`) at that vaddr for the PD's whole life, and this PD touches
        // it only through `sddf::shm::Region`.
        let mem = unsafe { IdentityMapped::new() };
        let attached = StatsWriter::from_section(STATS.as_bytes(), &mem, microkit::pd_name())
            .and_then(|w| w.map_or(Ok(()), |w| self.vmm.attach_stats(w)));
        if let Err(e) = attached {
            microkit::debug_println!("vmm: counters not published: {e}");
        }
    }

    /// Copies the images into guest RAM and starts the guest; reports why not otherwise.
    fn boot(&mut self) {
        let ram = GuestRam {
            base: guest_ram_vaddr.get(),
            size: guest_ram_size.get(),
        };
        if !self.configured {
            return;
        }
        if images::KERNEL.is_empty() {
            microkit::debug_println!(
                "vmm: no guest kernel embedded (VMM_GUEST_KERNEL unset at build time)"
            );
            return;
        }
        if let Err(e) = check_device_tree(images::DTB, self.vmm.config()) {
            microkit::debug_println!("vmm: cannot boot the guest: {e}");
            return;
        }
        let plan = match BootPlan::new(ram, images::KERNEL, images::DTB, images::INITRD) {
            Ok(plan) => plan,
            Err(e) => {
                microkit::debug_println!("vmm: cannot boot the guest: {e}");
                return;
            }
        };
        reset_nic();
        let t0 = sys::physical_count();
        sys::copy_to_guest(ram, plan.kernel, images::KERNEL);
        sys::copy_to_guest(ram, plan.dtb, images::DTB);
        if let Some(initrd) = plan.initrd {
            sys::copy_to_guest(ram, initrd, images::INITRD);
        }
        let copy_us = (sys::physical_count() - t0) * 1_000_000 / sys::counter_frequency().max(1);
        microkit::debug_println!(
            "vmm: starting guest: Image {:#x} ({} bytes), DTB {:#x}, initrd {:#x} ({} bytes), RAM {:#x}+{:#x}, copied in {} us",
            plan.kernel,
            images::KERNEL.len(),
            plan.dtb,
            plan.initrd.unwrap_or(0),
            images::INITRD.len(),
            ram.base,
            ram.size,
            copy_us
        );
        if let Err(KernelError(e)) = self.vmm.start(&mut self.hw, &plan.initial_context()) {
            microkit::debug_println!("vmm: starting vCPU 0 failed: seL4 error {e}");
        }
    }
}

/// Stops the passed-through NIC before guest RAM is (re)loaded: after a crash it still DMAs into
/// the old guest's receive buffers ([`vmm::virtio`]).
fn reset_nic() {
    let vaddr = nic_regs_vaddr.get();
    if vaddr == 0 {
        microkit::debug_println!(
            "vmm: the NIC's registers are not mapped (no nic_regs_vaddr): it is not reset before the guest boots"
        );
        return;
    }
    match vmm::virtio::reset_page(&mut sys::Mmio(vaddr)) {
        Ok(found) if found.were_running != 0 => microkit::debug_println!(
            "vmm: NIC reset (virtio-mmio transports {:#04x} of its page were running)",
            found.were_running
        ),
        Ok(found) if found.devices == 0 => {
            microkit::debug_println!("vmm: NIC not reset: no virtio-mmio device in its page")
        }
        Ok(_) => {}
        Err((index, e)) => {
            microkit::debug_println!("vmm: NIC transport {index} at {vaddr:#x} not reset: {e}")
        }
    }
}

/// Checks that the guest's device tree puts the doorbells and UIO IRQs where this VMM expects
/// them: a mismatch would otherwise show up as a guest fault or a driver that never wakes.
fn check_device_tree(dtb: &[u8], config: &Config<'_>) -> Result<(), DtMismatch> {
    for bell in config.doorbells {
        let node = vmm::linux::dtb_node(dtb, bell.name).map_err(DtMismatch::Dtb)?;
        if node.and_then(|n| n.reg) != Some(bell.gpa) {
            return Err(DtMismatch::Node {
                name: bell.name,
                expected: bell.gpa,
                found: node.and_then(|n| n.reg),
            });
        }
    }
    for route in config.virqs.iter().filter(|r| !r.passthrough) {
        let node = vmm::linux::dtb_node(dtb, route.name).map_err(DtMismatch::Dtb)?;
        let found = node.and_then(|n| n.intid);
        if found != Some(route.irq) {
            return Err(DtMismatch::Node {
                name: route.name,
                expected: route.irq.into(),
                found: found.map(u64::from),
            });
        }
    }
    Ok(())
}

/// The embedded device tree disagrees with this VMM.
enum DtMismatch {
    /// It is not a device tree.
    Dtb(vmm::linux::BootError),
    /// A UIO node's address or INTID differs (or the node is missing).
    Node {
        name: &'static str,
        expected: u64,
        found: Option<u64>,
    },
}

impl fmt::Display for DtMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtMismatch::Dtb(e) => write!(f, "{e}"),
            DtMismatch::Node {
                name,
                expected,
                found: Some(v),
            } => {
                write!(
                    f,
                    "device tree: node '{name}' has {v:#x}, the vmm expects {expected:#x}"
                )
            }
            DtMismatch::Node {
                name,
                expected,
                found: None,
            } => {
                write!(f, "device tree: no node '{name}' with {expected:#x}")
            }
        }
    }
}

impl microkit::Handler for VmmPd {
    fn init() -> Self {
        let parsed = VmmConfig::parse(VMM_CONFIG.as_bytes());
        let cfg = parsed.unwrap_or_else(|e| {
            microkit::debug_println!("vmm: cannot boot the guest: {e}");
            // A VMM without routes: it still answers faults and notifications it knows.
            VmmConfig {
                uart: None,
                nic: None,
                virt_rx: None,
                virt_tx: None,
                timer: None,
                rx_irq: 0,
                tx_irq: 0,
                rx_fault: 0,
                tx_fault: 0,
            }
        });
        let routes = ROUTES
            .set(Routes::new(&cfg))
            .expect("init runs once per PD");
        let timer = cfg.timer.map(Channel::new).filter(|c| c.can_pp_call());
        if cfg.timer.is_some() && timer.is_none() {
            microkit::debug_println!(
                "vmm: .vmm_config names timer channel {:?}, but the system gives no pp call there",
                cfg.timer
            );
        }
        let config = Config {
            gicd_base: GICD_BASE,
            doorbells: if parsed.is_ok() {
                &routes.doorbells
            } else {
                &[]
            },
            virqs: routes.virqs(),
            wakeup_channel: timer.map(|c| c.id()),
            restart_budget: RESTART_BUDGET,
            watchdog_ticks: Some(WATCHDOG_SECONDS * sys::counter_frequency()),
        };
        let mut pd = VmmPd {
            vmm: Vmm::new(config),
            hw: Sel4 {
                timer,
                pristine: Sel4::snapshot_vcpu(),
                tx_active: Sel4::tx_active(),
            },
            configured: parsed.is_ok(),
        };
        pd.attach_stats();
        pd.boot();
        pd
    }

    fn notified(&mut self, channels: ChannelSet) {
        for ch in channels {
            if !self.vmm.notified(&mut self.hw, ch.id()) {
                microkit::debug_println!("vmm: notification on unexpected channel {}", ch.id());
            }
        }
        self.vmm.publish_stats();
        // Resuming a waiting guest can fail and stop it.
        self.maybe_restart();
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        // Decoding reads every fault MR before any invocation overwrites the IPC buffer.
        let fault = Fault::decode(msg.label(), microkit::mr_get);
        if child.id() != VCPU.id() {
            microkit::debug_println!("vmm: fault from unknown child {}: {fault}", child.id());
            return None;
        }
        let reply = self.vmm.handle_fault(&mut self.hw, &fault);
        // Every fault: a vCPU exit already costs two context switches and TCB invocations;
        // the seqlock and ~30 word stores are noise beside it, and a reader never sees stale
        // counters while the guest is busy with MMIO only.
        self.vmm.publish_stats();
        if let Some(reason) = self.vmm.stop_reason().filter(|_| reply == Reply::None) {
            let c = self.vmm.counters();
            microkit::debug_println!(
                "vmm: guest stopped ({reason:?}); faults {}, gicd r/w {}/{}, doorbells rx/tx {}/{}, psci {}, wfx {} (blocked {}), vppi {}, eoi {}, virq rx/tx {}/{}",
                c.faults, c.gicd_reads, c.gicd_writes, c.rx_fault_doorbells, c.tx_fault_doorbells,
                c.psci_calls, c.wfx_traps, c.wfi_blocks, c.vppi_events, c.maintenance_faults,
                c.rx_irq_injections, c.tx_irq_injections
            );
            // A crash, a reset or the watchdog boots it again (`Vmm::restart` decides).
            self.maybe_restart();
        }
        match reply {
            Reply::Resume => Some(MessageInfo::new(0, 0)),
            Reply::ResumeWith { mrs } => {
                for (i, &v) in mrs.iter().enumerate() {
                    microkit::mr_set(i, v);
                }
                Some(MessageInfo::new(0, mrs.len()))
            }
            Reply::None => None,
        }
    }
}

/// The raw pieces: TCB register transfer (over `microkit::call_cap`: the runtime has no wrapper
/// for it), the EL0 physical counter (`pd_support::counter`), copying into guest RAM, and a cell
/// written once in `init`.
mod sys {
    #![allow(unsafe_code)]

    use vmm::linux::GuestRam;
    use vmm::regs::{UserContext, USER_CONTEXT_WORDS};

    /// `BASE_VM_TCB_CAP` of libmicrokit.
    const BASE_VM_TCB_CAP: u64 = 266;
    /// `TCBReadRegisters` / `TCBWriteRegisters`: 2 and 3 in every Microkit 2.3.0 config
    /// (they precede the labels `HardwareDebugAPI` shifts; `invocations_all.json`).
    const TCB_READ_REGISTERS: u64 = 2;
    const TCB_WRITE_REGISTERS: u64 = 3;

    /// `seL4_Call(cap, msginfo(label, len))` with the message in the IPC buffer and MR0..3;
    /// returns the reply label (the seL4 error).
    fn call(cap: u64, label: u64, len: usize) -> u64 {
        microkit::call_cap(cap, microkit::MessageInfo::new(label, len)).label()
    }

    /// `seL4_TCB_ReadRegisters(vm_tcb, suspend = false, arch_flags = 0, count)`.
    pub fn read_registers(vcpu: u8, count: usize) -> Result<UserContext, u64> {
        let count = count.min(USER_CONTEXT_WORDS);
        microkit::mr_set(0, 0);
        microkit::mr_set(1, count as u64);
        match call(BASE_VM_TCB_CAP + u64::from(vcpu), TCB_READ_REGISTERS, 2) {
            0 => {
                let mut ctx = UserContext::default();
                for (i, slot) in ctx.0.iter_mut().enumerate().take(count) {
                    *slot = microkit::mr_get(i);
                }
                Ok(ctx)
            }
            e => Err(e),
        }
    }

    /// `seL4_TCB_WriteRegisters(vm_tcb, resume = false, arch_flags = 0, count, ctx)`.
    pub fn write_registers(vcpu: u8, ctx: &UserContext, count: usize) -> Result<(), u64> {
        let count = count.min(USER_CONTEXT_WORDS);
        microkit::mr_set(0, 0);
        microkit::mr_set(1, count as u64);
        for (i, &v) in ctx.0.iter().enumerate().take(count) {
            microkit::mr_set(2 + i, v);
        }
        match call(
            BASE_VM_TCB_CAP + u64::from(vcpu),
            TCB_WRITE_REGISTERS,
            2 + count,
        ) {
            0 => Ok(()),
            e => Err(e),
        }
    }

    /// The 4 KiB register page of a device mapped (uncached) at this vaddr (`nic_regs_vaddr`).
    pub struct Mmio(pub u64);

    impl vmm::virtio::Mmio for Mmio {
        fn read32(&mut self, offset: usize) -> u32 {
            assert!(offset < 0x1000 && offset.is_multiple_of(4));
            // SAFETY: the system maps the device's page read-write and uncached at `self.0`
            // for the PD's whole life (`nic_regs_vaddr`); the offset is an aligned register
            // inside it. Device registers need volatile accesses.
            unsafe { core::ptr::read_volatile((self.0 as usize + offset) as *const u32) }
        }
        fn write32(&mut self, offset: usize, value: u32) {
            assert!(offset < 0x1000 && offset.is_multiple_of(4));
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile((self.0 as usize + offset) as *mut u32, value) }
        }
    }

    pub use pd_support::counter::{frequency as counter_frequency, now as physical_count};

    /// Copies `bytes` to guest-physical `gpa` through this PD's 1:1 mapping of guest RAM.
    ///
    /// # Panics
    /// If the range is not inside guest RAM (the boot plan checked it already).
    pub fn copy_to_guest(ram: GuestRam, gpa: u64, bytes: &[u8]) {
        let end = gpa
            .checked_add(bytes.len() as u64)
            .expect("guest range wraps");
        assert!(
            gpa >= ram.base && end <= ram.base + ram.size,
            "{gpa:#x}..{end:#x} outside guest RAM"
        );
        // SAFETY: the system maps guest RAM read-write at vaddr = guest-physical address for
        // this PD's whole life (`guest_ram_vaddr`/`guest_ram_size`), and the range was checked
        // to lie inside it. The vCPU is not running while the VMM loads images, so nothing else
        // writes these bytes, and `bytes` (the PD's rodata) cannot overlap guest RAM.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), gpa as *mut u8, bytes.len()) };
    }
}

/// A value set once, in `init`, and read-only afterwards: the routes the VMM core borrows for
/// the PD's whole life.
mod once {
    #![allow(unsafe_code)]

    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// See the module documentation.
    pub struct InitOnce<T> {
        set: AtomicBool,
        value: UnsafeCell<Option<T>>,
    }

    // SAFETY: the value is written only by the single `set` that wins the `swap` below, before
    // any reference to it exists, and is only read afterwards; a PD has one thread anyway.
    unsafe impl<T: Sync> Sync for InitOnce<T> {}

    impl<T> InitOnce<T> {
        /// Empty.
        pub const fn new() -> Self {
            InitOnce {
                set: AtomicBool::new(false),
                value: UnsafeCell::new(None),
            }
        }

        /// Stores `value` and returns it for the program's life; `None` if already set.
        pub fn set(&'static self, value: T) -> Option<&'static T> {
            if self.set.swap(true, Ordering::AcqRel) {
                return None;
            }
            // SAFETY: the swap above lets exactly one caller get here, and no reference to the
            // contents exists before this one is handed out; after this write the contents are
            // never written again, so the shared reference stays valid forever.
            unsafe {
                *self.value.get() = Some(value);
                (*self.value.get()).as_ref()
            }
        }
    }
}

const _: () = assert!(USER_CONTEXT_WORDS + 2 <= microkit::MAX_MESSAGE_REGISTERS);
