//! The VMM's decisions: what each fault and notification does to the guest.
//!
//! [`Vmm`] owns the vGIC and the guest's run state and talks to the kernel only through
//! [`Platform`], which the seL4 PD implements with Microkit/seL4 invocations and tests
//! implement with a recorder. One vCPU (id 0).
//!
//! - **MMIO**: GICD accesses are emulated by [`Vgic`]; a store to a UIO doorbell page notifies
//!   the virtualiser's channel (loads read 0); both advance the pc by 4 and resume. Any other
//!   stage-2 fault is unexpected.
//! - **PSCI** over SMC (a VCPUFault, registers through TCB_Read/WriteRegisters) and over HVC (an
//!   UnknownSyscall, whose reply itself writes x0–x7 and the pc).
//! - **WFI** blocks: if no interrupt is pending for the guest, the vCPU thread is suspended and
//!   the fault is not replied to; it resumes after the WFI when an IRQ is loaded into a list
//!   register, or when the guest's virtual timer deadline passes. seL4 masks the virtual timer
//!   while the vCPU is not running, so the deadline must be watched from outside: the platform
//!   arms a wake-up timer ([`Platform::set_wakeup`]); without one, a WFI with the timer armed
//!   returns at once (libvmm's behaviour).
//! - **Passed-through IRQs** (the NIC's, the UART's) are re-enabled at the kernel not when the
//!   guest EOIs their vIRQ but at the VMM's next activation after that other than a doorbell
//!   (a timer tick, a WFI, another EOI, a notification). This is the interrupt moderation a
//!   NIC does in hardware: while the guest works through what one interrupt announced (ringing
//!   doorbells as it goes), more frames raise no further interrupt, and each interrupt would
//!   cost two round trips through this VMM (delivery and EOI maintenance). Nothing waits long:
//!   a busy guest exits at least every timer tick, an idle one traps its WFI, and the physical
//!   line stays latched while masked, so it is delivered the moment it is re-enabled.
//! - **Unexpected** faults print the decoded reason and all registers and stop the guest; the
//!   VMM PD itself carries on (it still answers notifications).
//! - **Watchdog**: the guest is stopped ([`StopReason::Watchdog`]) and restarted like a crashed
//!   one when, for [`Config::watchdog_ticks`],
//!   - an interrupt waits in a list register and the guest EOIs nothing: it no longer takes
//!     interrupts (a hard lockup); or
//!   - its driver, once it has rung a doorbell since the guest booted, makes no progress (no
//!     doorbell, and it takes none of the frames virt_tx queued for it,
//!     [`Platform::driver_backlog`]) while work waits for it: frames in that queue, or a
//!     virtualiser's vIRQ undelivered because the driver told the guest's UIO layer to keep
//!     its interrupt off and never asked again. Nothing in the guest serves the queues (a
//!     kernel that panicked without rebooting and spins with interrupts on, a hung driver).
//!
//!   A guest in such a state may cause no exits at all, so the wake-up timer is armed to look
//!   again.
//! - **Restarts**: a guest that stopped on an unexpected fault or asked for PSCI SYSTEM_RESET
//!   (Linux does on a panic with `panic=-1`) is booted again by the PD, at most
//!   [`Config::restart_budget`] times ([`Vmm::restart`]). [`Vmm::start`] settles what the
//!   old instance left in flight first: the EOI actions it still owed run (passed-through IRQs
//!   acknowledged, the timer PPI too), and the vCPU's system registers go back to how seL4
//!   made them ([`Platform::reset_vcpu`]: MMU and caches off, timer off), as a boot expects.

use core::fmt;

use crate::fault::{ec, Esr, Fault, UnknownSyscall, VmFault, FAULT_IP_MR};
use crate::psci;
use crate::regs::{UserContext, USER_CONTEXT_WORDS};
use crate::vgic::{self, Ack, Injection, ListRegisters, LoadError, Vgic};
use netvm_api::stats::{StatsError, StatsSlot, StatsWriter};

/// CNTV_CTL_EL0.ENABLE.
const CNTV_ENABLE: u64 = 1;
/// CNTV_CTL_EL0.IMASK.
const CNTV_IMASK: u64 = 2;

/// The guest's virtual timer, as saved in its VCPU object.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Vtimer {
    /// CNTV_CTL_EL0.
    pub ctl: u64,
    /// CNTV_CVAL_EL0 (virtual count).
    pub cval: u64,
    /// CNTVOFF_EL2: virtual count = physical count - offset.
    pub offset: u64,
}

impl Vtimer {
    /// The physical count at which the timer fires, if it is enabled and unmasked.
    pub fn deadline(&self) -> Option<u64> {
        (self.ctl & (CNTV_ENABLE | CNTV_IMASK) == CNTV_ENABLE)
            .then(|| self.cval.wrapping_add(self.offset))
    }
}

/// An seL4 invocation failed; its error code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KernelError(pub u64);

/// The kernel operations the VMM needs, on vCPU 0 and its own channels.
pub trait Platform: ListRegisters {
    /// `TCB_ReadRegisters` of the first `count` words of `seL4_UserContext`.
    fn read_regs(&mut self, count: usize) -> Result<UserContext, KernelError>;
    /// `TCB_WriteRegisters` of the first `count` words, without resuming.
    fn write_regs(&mut self, ctx: &UserContext, count: usize) -> Result<(), KernelError>;
    /// Suspends the vCPU thread (`TCB_Suspend`).
    fn stop_vcpu(&mut self) -> Result<(), KernelError>;
    /// Sets the vCPU's pc and resumes it (`microkit_vcpu_restart`).
    fn resume_vcpu(&mut self, pc: u64) -> Result<(), KernelError>;
    /// Acknowledges a virtual PPI at the kernel.
    fn ack_vppi(&mut self, irq: u16) -> Result<(), KernelError>;
    /// Acknowledges the physical IRQ of a Microkit channel.
    fn irq_ack(&mut self, channel: u8);
    /// Notifies a Microkit channel.
    fn notify(&mut self, channel: u8);
    /// The guest's virtual timer registers.
    fn vtimer(&mut self) -> Result<Vtimer, KernelError>;
    /// The physical counter (CNTPCT).
    fn now(&mut self) -> u64;
    /// Arms (Some) or disarms (None) the wake-up timer at a physical count; `false` if the
    /// platform has none.
    fn set_wakeup(&mut self, deadline: Option<u64>) -> bool;
    /// Writes to the VMM's log (the debug console on seL4).
    fn log(&mut self, args: fmt::Arguments<'_>);
    /// The clients' frames waiting for the guest's driver (virt_tx's queue to it, `tx_active`)
    /// and that queue's consumer index, which moves whenever the driver takes one: `None`
    /// where the platform cannot see that queue (then only the other watchdog signs count).
    fn driver_backlog(&mut self) -> Option<(u16, u16)>;
    /// Puts the vCPU's system registers back as they were before the first boot (seL4 creates
    /// a vCPU with the MMU and caches off), so that a restarted guest boots as from reset.
    fn reset_vcpu(&mut self) -> Result<(), KernelError>;
}

/// A doorbell page: a guest store to it notifies `channel`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Doorbell {
    /// Name for logs (`rx_fault`, `tx_fault`).
    pub name: &'static str,
    /// Guest-physical page base (unmapped in the VM).
    pub gpa: u64,
    /// The channel to notify; `None` counts the ring without notifying (a system without that
    /// virtualiser).
    pub channel: Option<u8>,
}

/// A notification that raises a virtual IRQ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VirqRoute {
    /// Name for logs (`rx_irq`, `tx_irq`, `uart`, `virtio-net`).
    pub name: &'static str,
    /// The Microkit channel (or IRQ id) whose notification raises it.
    pub channel: u8,
    /// The guest INTID.
    pub irq: u16,
    /// A passed-through device IRQ: acknowledged at the kernel when the guest EOIs it.
    pub passthrough: bool,
}

/// What the VMM is configured with.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// Guest-physical base of the emulated distributor.
    pub gicd_base: u64,
    /// Doorbell pages (4 KiB each).
    pub doorbells: &'a [Doorbell],
    /// Notifications that raise vIRQs.
    pub virqs: &'a [VirqRoute],
    /// The channel of the wake-up timer IRQ, if the system has one.
    pub wakeup_channel: Option<u8>,
    /// How many times the guest may be booted again after it crashed or reset itself.
    pub restart_budget: u32,
    /// Counter ticks an interrupt may wait in a list register with no EOI from the guest before
    /// the watchdog stops it; `None`: no watchdog (it also needs `wakeup_channel`).
    pub watchdog_ticks: Option<u64>,
}

/// The guest's run state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunState {
    /// Not started, or stopped (power-off, CPU_OFF, an unexpected fault).
    Stopped,
    /// Running (or blocked in a fault the VMM is handling).
    Running,
    /// Waiting in WFI (or CPU_SUSPEND); resumes at `resume_pc` with x0 = `x0` if set.
    Waiting {
        /// Where the guest continues.
        resume_pc: u64,
        /// A value for x0 (CPU_SUSPEND returns SUCCESS).
        x0: Option<u64>,
    },
}

/// Why the guest stopped, when it did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopReason {
    /// PSCI SYSTEM_OFF.
    SystemOff,
    /// PSCI SYSTEM_RESET: the PD should boot the guest again.
    SystemReset,
    /// PSCI CPU_OFF of the only vCPU.
    CpuOff,
    /// A fault the VMM cannot handle.
    Unexpected,
    /// The watchdog: the guest stopped taking interrupts.
    Watchdog,
}

/// How `fault()` must answer the kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reply {
    /// Reply with an empty message: the vCPU resumes.
    Resume,
    /// Reply with these message registers (an UnknownSyscall reply writes x0–x7 and the pc).
    ResumeWith {
        /// MR values.
        mrs: [u64; FAULT_IP_MR + 1],
    },
    /// Do not reply: the vCPU waits (WFI) or has stopped.
    None,
}

mod counters;
mod restart;
pub use counters::Counters;

/// Group name of the VMM's counters in its stats region (entries `vmm.<field>`).
pub const STATS_GROUP: &str = "vmm";

/// The VMM core for one single-vCPU guest.
pub struct Vmm<'a> {
    config: Config<'a>,
    vgic: Vgic,
    state: RunState,
    stop_reason: Option<StopReason>,
    counters: Counters,
    stats: StatsSlot<'a>,
    /// Channels (bit = channel id) whose physical IRQ the guest has EOI'd and that wait for the
    /// next activation to be acknowledged.
    deferred_acks: u64,
    /// Since when an interrupt has waited in a list register with no EOI since (the watchdog).
    busy_since: Option<u64>,
    /// Since when a virtualiser's vIRQ has waited undelivered with no doorbell since (the
    /// watchdog).
    stalled_since: Option<u64>,
    /// The guest's driver has rung a doorbell since the guest (re)started.
    driver_seen: bool,
    /// The driver's consumer index of `tx_active` when last looked at.
    tx_head: Option<u16>,
    /// The deadline the wake-up timer was last armed with and that has not fired yet (the
    /// timer holds one; a later arming replaces it).
    armed: Option<u64>,
}

/// Where a stage-2 fault landed.
enum Target {
    Gicd(u64),
    Doorbell(Doorbell),
}

impl<'a> Vmm<'a> {
    /// A VMM with the guest stopped; registers the vtimer and passthrough EOI actions.
    pub fn new(config: Config<'a>) -> Self {
        let mut vgic = Vgic::new();
        vgic.set_ack(vgic::VTIMER_IRQ, Ack::Vppi);
        for route in config.virqs.iter().filter(|r| r.passthrough) {
            vgic.set_ack(route.irq, Ack::Passthrough(route.channel));
        }
        Self {
            config,
            vgic,
            state: RunState::Stopped,
            stop_reason: None,
            counters: Counters::default(),
            stats: StatsSlot::default(),
            deferred_acks: 0,
            busy_since: None,
            stalled_since: None,
            driver_seen: false,
            tx_head: None,
            armed: None,
        }
    }

    /// Lays out `stats` (group [`STATS_GROUP`]) and publishes the counters there from now on,
    /// whenever [`Vmm::publish_stats`] is called.
    pub fn attach_stats(&mut self, stats: StatsWriter<'a>) -> Result<(), StatsError> {
        self.stats.attach(stats, STATS_GROUP, &self.counters)
    }

    /// Publishes the counters into the attached stats region (a sequence lock and one store
    /// per counter; nothing without a region).
    pub fn publish_stats(&mut self) {
        self.stats.publish(&self.counters);
    }

    /// What the VMM was configured with.
    pub fn config(&self) -> &Config<'a> {
        &self.config
    }

    /// The vGIC.
    pub fn vgic(&self) -> &Vgic {
        &self.vgic
    }

    /// The guest's run state.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// Why the guest last stopped.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason
    }

    /// Event counts so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Starts the guest with `ctx` (all of it is written, then the vCPU resumes at its pc).
    /// The images must already be in guest RAM. For a guest that ran before, first settles what
    /// it left: the owed EOI actions run, the vGIC and the vCPU's system registers are reset.
    pub fn start(&mut self, p: &mut impl Platform, ctx: &UserContext) -> Result<(), KernelError> {
        self.flush_acks(p);
        let mut owed = 0;
        for (irq, ack) in self.vgic.reset(p).into_iter().flatten() {
            owed += 1;
            match ack {
                Ack::Passthrough(channel) => p.irq_ack(channel),
                Ack::Vppi => {
                    if let Err(KernelError(e)) = p.ack_vppi(irq) {
                        p.log(format_args!(
                            "vmm: ack of VPPI {irq} at reset failed: seL4 error {e}\n"
                        ));
                    }
                }
            }
        }
        self.counters.restart_acks += owed;
        (self.busy_since, self.stalled_since, self.driver_seen) = (None, None, false);
        p.reset_vcpu()?;
        self.stop_reason = None;
        p.write_regs(ctx, USER_CONTEXT_WORDS)?;
        p.resume_vcpu(ctx.pc())?;
        self.state = RunState::Running;
        Ok(())
    }

    /// Handles a fault of vCPU 0; the result says how to reply.
    pub fn handle_fault(&mut self, p: &mut impl Platform, fault: &Fault) -> Reply {
        self.counters.faults += 1;
        // A doorbell is the one activation that leaves deferred acks alone: a guest ringing it
        // is mid-way through its frames (see the module docs).
        let doorbell = matches!(fault, Fault::VmFault(vm) if matches!(self.target(vm.addr), Some(Target::Doorbell(_))));
        if !doorbell {
            self.flush_acks(p);
        }
        let result = match *fault {
            Fault::VmFault(vm) => self.vm_fault(p, vm),
            Fault::VcpuFault(esr) => self.vcpu_fault(p, esr),
            Fault::UnknownSyscall(call) => return self.hvc(p, fault, call),
            Fault::VgicMaintenance { index } => {
                self.counters.maintenance_faults += 1;
                if let Some(index) = index {
                    self.eoi(p, index);
                }
                Ok(Reply::Resume)
            }
            Fault::VppiEvent { irq } => {
                self.counters.vppi_events += 1;
                self.vppi(p, irq);
                Ok(Reply::Resume)
            }
            Fault::UserException { .. } | Fault::Other { .. } => Err(None),
        };
        let reply = result.unwrap_or_else(|err| self.unexpected(p, fault, err));
        if self.watch(p) {
            return Reply::None;
        }
        reply
    }

    /// A notification on `channel`: raises its vIRQ, or wakes a waiting guest from the wake-up
    /// timer. Returns `false` if the channel is not one of the VMM's.
    pub fn notified(&mut self, p: &mut impl Platform, channel: u8) -> bool {
        self.counters.notifications += 1;
        self.flush_acks(p);
        if self.config.wakeup_channel == Some(channel) {
            self.counters.wakeups += 1;
            self.armed = None;
            p.set_wakeup(None);
            p.irq_ack(channel);
            self.wake(p);
            self.watch(p);
            return true;
        }
        let Some(route) = self
            .config
            .virqs
            .iter()
            .find(|r| r.channel == channel)
            .copied()
        else {
            self.counters.unknown_notifications += 1;
            return false;
        };
        let coalesced = self.inject(p, route.irq, route.name) == Some(Injection::Coalesced);
        let (injections, merged) = self.counters.route(route.name);
        *injections += 1;
        *merged += u64::from(coalesced);
        self.watch(p);
        true
    }

    /// Raises guest IRQ `irq`; wakes the guest if it got into a list register. Returns what
    /// the vGIC did with it (`None`: no such INTID, logged).
    pub fn inject(&mut self, p: &mut impl Platform, irq: u16, name: &str) -> Option<Injection> {
        let result = self.vgic.inject(irq, p);
        match result {
            Ok(Injection::Delivered(_)) => self.wake(p),
            Ok(Injection::Queued(vgic::QueueReason::LoadFailed(LoadError(e)))) => {
                p.log(format_args!(
                    "vmm: loading vIRQ {irq} ({name}) failed: seL4 error {e}\n"
                ));
            }
            Ok(_) => {}
            Err(vgic::NoSuchIrq(n)) => {
                p.log(format_args!(
                    "vmm: vIRQ {n} ({name}) is beyond the vGIC's {} INTIDs\n",
                    vgic::NUM_IRQS
                ));
            }
        }
        result.ok()
    }

    fn vppi(&mut self, p: &mut impl Platform, irq: u64) {
        match u16::try_from(irq) {
            Ok(irq) => {
                self.inject(p, irq, "vppi");
            }
            Err(_) => p.log(format_args!("vmm: VPPI event for impossible INTID {irq}\n")),
        }
    }

    fn eoi(&mut self, p: &mut impl Platform, index: u8) {
        // The guest takes interrupts: whatever waits now waits from now.
        self.busy_since = None;
        let (done, refill) = self.vgic.maintenance(index, p);
        match done {
            Some((irq, Some(Ack::Vppi))) => {
                if let Err(KernelError(e)) = p.ack_vppi(irq) {
                    p.log(format_args!(
                        "vmm: ack of VPPI {irq} failed: seL4 error {e}\n"
                    ));
                }
            }
            Some((_, Some(Ack::Passthrough(channel)))) => match 1u64.checked_shl(channel.into()) {
                Some(bit) => self.deferred_acks |= bit,
                None => {
                    self.counters.passthrough_acks += 1;
                    p.irq_ack(channel);
                }
            },
            Some((_, None)) | None => {}
        }
        if let Err(LoadError(e)) = refill {
            p.log(format_args!(
                "vmm: refilling list register {index} failed: seL4 error {e}\n"
            ));
        }
    }

    /// Acknowledges the passed-through IRQs whose EOI came at an earlier activation.
    fn flush_acks(&mut self, p: &mut impl Platform) {
        let mut pending = core::mem::take(&mut self.deferred_acks);
        while pending != 0 {
            let channel = pending.trailing_zeros() as u8;
            pending &= pending - 1;
            self.counters.passthrough_acks += 1;
            self.counters.passthrough_acks_deferred += 1;
            p.irq_ack(channel);
        }
    }

    /// Resumes a waiting guest.
    fn wake(&mut self, p: &mut impl Platform) {
        let RunState::Waiting { resume_pc, x0 } = self.state else {
            return;
        };
        if let Some(x0) = x0 {
            let result = p.read_regs(UserContext::prefix_for(0)).and_then(|mut ctx| {
                ctx.set_x(0, x0);
                p.write_regs(&ctx, UserContext::prefix_for(0))
            });
            if let Err(KernelError(e)) = result {
                p.log(format_args!(
                    "vmm: setting x0 of the waking vCPU failed: seL4 error {e}\n"
                ));
            }
        }
        p.set_wakeup(None);
        match p.resume_vcpu(resume_pc) {
            Ok(()) => self.state = RunState::Running,
            Err(KernelError(e)) => {
                p.log(format_args!(
                    "vmm: resuming the vCPU failed: seL4 error {e}\n"
                ));
                self.stop(p, StopReason::Unexpected);
            }
        }
    }

    fn target(&self, addr: u64) -> Option<Target> {
        if let Some(off) = addr
            .checked_sub(self.config.gicd_base)
            .filter(|&o| o < vgic::GICD_SIZE)
        {
            return Some(Target::Gicd(off));
        }
        self.config.doorbells.iter().find_map(|d| {
            addr.checked_sub(d.gpa)
                .filter(|&o| o < 0x1000)
                .map(|_| Target::Doorbell(*d))
        })
    }

    /// Err(None) = unexpected with no further detail; Err(Some(msg)) with detail.
    fn vm_fault(
        &mut self,
        p: &mut impl Platform,
        vm: VmFault,
    ) -> Result<Reply, Option<&'static str>> {
        let target = self.target(vm.addr).ok_or(None)?;
        if vm.prefetch {
            return Err(Some("instruction fetch from an MMIO page"));
        }
        let da = vm.fsr.data_abort().ok_or(Some("not a data abort"))?;
        if !da.isv() {
            return Err(Some(
                "no valid syndrome (ISV=0): the access cannot be emulated",
            ));
        }
        let rt = da.srt();
        let kernel = |_| Some("a TCB invocation failed");
        if let (true, Target::Doorbell(bell)) = (da.is_write(), &target) {
            // The value stored means nothing: no register is read (one TCB invocation fewer on
            // the hottest exit), only the pc moves past the store.
            self.ring(p, *bell);
            return self.advance(p, vm.ip + 4).map_err(kernel);
        }
        if da.is_write() {
            let count = UserContext::prefix_for(rt);
            let mut ctx = p.read_regs(count).map_err(kernel)?;
            let width_mask = if da.width() == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * da.width())) - 1
            };
            let value = ctx.x(rt) & width_mask;
            match target {
                Target::Gicd(off) => {
                    self.counters.gicd_writes += 1;
                    if let Err(e) = self.vgic.write(off, da.width(), value as u32, p) {
                        p.log(format_args!(
                            "vmm: GICD write of {value:#x} ({} bytes) at +{off:#x}: {e:?} (ignored)\n",
                            da.width()
                        ));
                    }
                    // A write can load list registers (enable, set-pending, SGI), which
                    // concerns the running guest only: it is not waiting.
                }
                Target::Doorbell(bell) => self.ring(p, bell),
            }
            ctx.set_pc(vm.ip + 4);
            p.write_regs(&ctx, 1).map_err(kernel)?;
        } else {
            let count = UserContext::prefix_for(rt);
            let mut ctx = p.read_regs(count).map_err(kernel)?;
            let raw = match target {
                Target::Gicd(off) => {
                    self.counters.gicd_reads += 1;
                    self.vgic.read(off, da.width()).unwrap_or_else(|e| {
                        p.log(format_args!(
                            "vmm: GICD read ({} bytes) at +{off:#x}: {e:?} (reads 0)\n",
                            da.width()
                        ));
                        0
                    })
                }
                Target::Doorbell(_) => 0,
            };
            ctx.set_x(rt, da.extend_load(u64::from(raw)));
            ctx.set_pc(vm.ip + 4);
            p.write_regs(&ctx, count).map_err(kernel)?;
        }
        Ok(Reply::Resume)
    }

    fn ring(&mut self, p: &mut impl Platform, bell: Doorbell) {
        *self.counters.doorbell(bell.name) += 1;
        self.driver_seen = true;
        self.stalled_since = None;
        if let Some(channel) = bell.channel {
            p.notify(channel);
        }
    }

    fn vcpu_fault(
        &mut self,
        p: &mut impl Platform,
        esr: Esr,
    ) -> Result<Reply, Option<&'static str>> {
        let kernel = |_| Some("a TCB invocation failed");
        match esr.ec() {
            ec::WFX => {
                self.counters.wfx_traps += 1;
                let ctx = p.read_regs(1).map_err(kernel)?;
                let next = ctx.pc() + 4;
                if esr.is_wfe() {
                    // One vCPU: no other CPU will send an event; WFE is a hint, continue.
                    return self.advance(p, next).map_err(kernel);
                }
                self.wait(p, next, None).map_err(kernel)
            }
            ec::SMC64 => {
                let count = UserContext::prefix_for(3);
                let mut ctx = p.read_regs(count).map_err(kernel)?;
                let args = [ctx.x(0), ctx.x(1), ctx.x(2), ctx.x(3)];
                let next = ctx.pc() + 4;
                match self.psci(p, args) {
                    PsciResult::Return(x0) => {
                        ctx.set_x(0, x0);
                        ctx.set_pc(next);
                        p.write_regs(&ctx, count).map_err(kernel)?;
                        Ok(Reply::Resume)
                    }
                    PsciResult::Wait => self.wait(p, next, Some(0)).map_err(kernel),
                    PsciResult::Stopped => Ok(Reply::None),
                }
            }
            _ => Err(None),
        }
    }

    fn advance(&mut self, p: &mut impl Platform, pc: u64) -> Result<Reply, KernelError> {
        let mut ctx = UserContext::default();
        ctx.set_pc(pc);
        p.write_regs(&ctx, 1)?;
        Ok(Reply::Resume)
    }

    /// WFI (or CPU_SUSPEND): continue at `next` now if an interrupt is due, otherwise suspend
    /// the vCPU until one is.
    fn wait(
        &mut self,
        p: &mut impl Platform,
        next: u64,
        x0: Option<u64>,
    ) -> Result<Reply, KernelError> {
        let deadline = p.vtimer()?.deadline();
        let timer_due = deadline.is_some_and(|d| p.now() >= d);
        let must_spin = deadline.is_some() && self.config.wakeup_channel.is_none();
        if self.vgic.has_work() || timer_due || must_spin {
            let mut ctx = p.read_regs(UserContext::prefix_for(0))?;
            ctx.set_pc(next);
            if let Some(x0) = x0 {
                ctx.set_x(0, x0);
            }
            p.write_regs(&ctx, UserContext::prefix_for(0))?;
            return Ok(Reply::Resume);
        }
        if let Some(d) = deadline {
            self.arm(p, d);
        }
        p.stop_vcpu()?;
        self.counters.wfi_blocks += 1;
        self.state = RunState::Waiting {
            resume_pc: next,
            x0,
        };
        Ok(Reply::None)
    }

    fn psci(&mut self, p: &mut impl Platform, args: [u64; 4]) -> PsciResult {
        self.counters.psci_calls += 1;
        match psci::handle(args) {
            psci::Action::Return(x0) => PsciResult::Return(x0),
            psci::Action::Standby => PsciResult::Wait,
            psci::Action::CpuOff => {
                self.stop(p, StopReason::CpuOff);
                PsciResult::Stopped
            }
            psci::Action::SystemOff => {
                self.stop(p, StopReason::SystemOff);
                PsciResult::Stopped
            }
            psci::Action::SystemReset => {
                self.stop(p, StopReason::SystemReset);
                PsciResult::Stopped
            }
        }
    }

    /// A guest `hvc`: PSCI through the UnknownSyscall reply, which writes x0–x7 and the pc.
    fn hvc(&mut self, p: &mut impl Platform, fault: &Fault, call: UnknownSyscall) -> Reply {
        let mut mrs = [0u64; FAULT_IP_MR + 1];
        mrs[..8].copy_from_slice(&call.x);
        // seL4 reports the hvc itself as FaultIP; continue after it.
        let next = call.fault_ip + 4;
        mrs[FAULT_IP_MR] = next;
        match self.psci(p, [call.x[0], call.x[1], call.x[2], call.x[3]]) {
            PsciResult::Return(x0) => {
                mrs[0] = x0;
                Reply::ResumeWith { mrs }
            }
            PsciResult::Wait => match self.wait(p, next, Some(0)) {
                // `wait` wrote pc and x0 through the TCB already; reply without registers
                // so that the kernel keeps them.
                Ok(reply) => reply,
                Err(_) => self.unexpected(p, fault, Some("a TCB invocation failed")),
            },
            PsciResult::Stopped => Reply::None,
        }
    }

    fn stop(&mut self, p: &mut impl Platform, reason: StopReason) {
        if let Err(KernelError(e)) = p.stop_vcpu() {
            p.log(format_args!(
                "vmm: suspending the vCPU failed: seL4 error {e}\n"
            ));
        }
        p.set_wakeup(None);
        self.state = RunState::Stopped;
        self.stop_reason = Some(reason);
    }

    /// Prints the fault and the vCPU registers and stops the guest.
    fn unexpected(&mut self, p: &mut impl Platform, fault: &Fault, detail: Option<&str>) -> Reply {
        self.counters.unexpected_faults += 1;
        p.log(format_args!(
            "vmm: unexpected guest fault, stopping the guest: {fault}\n"
        ));
        if let Some(detail) = detail {
            p.log(format_args!("vmm: ({detail})\n"));
        }
        match p.read_regs(USER_CONTEXT_WORDS) {
            Ok(ctx) => p.log(format_args!("{ctx}")),
            Err(KernelError(e)) => p.log(format_args!(
                "vmm: cannot read the vCPU registers: seL4 error {e}\n"
            )),
        }
        self.stop(p, StopReason::Unexpected);
        Reply::None
    }
}

enum PsciResult {
    Return(u64),
    Wait,
    Stopped,
}
