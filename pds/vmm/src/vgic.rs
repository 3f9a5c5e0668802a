//! A GICv2 distributor model for one vCPU, and the list registers behind it.
//!
//! The guest's GICD page (0x08000000 on QEMU `virt`) is left unmapped, so every access traps
//! and lands in [`Vgic::read`] / [`Vgic::write`]. The CPU interface is the real GICV page mapped
//! at the guest's GICC address, so acknowledging and EOI'ing happen in hardware; seL4 tells the
//! VMM about each EOI with a VGICMaintenance fault naming the list register (it always sets the
//! EOI-maintenance bit), which ends up in [`Vgic::maintenance`].
//!
//! State per INTID:
//! - **enabled** (ISENABLER/ICENABLER);
//! - **pending**: raised (by [`Vgic::inject`], ISPENDR or SGIR) and not yet in a list register;
//! - **in a list register** ("active" as far as the VMM knows: pending or active in the
//!   hardware, EOI not yet seen). ISACTIVER reads these.
//!
//! Delivery rule: an IRQ goes into a free list register as soon as it is pending, enabled, the
//! distributor is enabled and the same INTID is not already in a list register (a second edge
//! while the first is being handled waits for its EOI). Otherwise it stays pending and goes in
//! later — when the guest enables it, when a list register frees up, or after the EOI of its
//! previous instance. Pending IRQs are picked by priority (lower value first), then INTID; the
//! pending bitmap is the queue, so nothing is ever dropped and re-raising a pending IRQ coalesces.

/// Guest-physical base of the GICv2 distributor on QEMU `virt`.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Size of the emulated distributor page.
pub const GICD_SIZE: u64 = 0x1000;
/// INTIDs modelled: SGIs 0–15, PPIs 16–31, SPIs 32–255 (`GICD_TYPER.ITLinesNumber` = 7).
pub const NUM_IRQS: usize = 256;
/// List registers of QEMU's GICv2 virtual CPU interface (GICH_VTR.ListRegs + 1).
pub const NUM_LIST_REGS: usize = 4;
/// The virtual timer PPI (seL4 VPPIEvent) on QEMU `virt`.
pub const VTIMER_IRQ: u16 = 27;
/// Most IRQs that can have an EOI action ([`Vgic::set_ack`]).
pub const MAX_ACKS: usize = 16;
/// What a guest reset leaves in occupied list registers, one distinct SGI per register (one
/// INTID in two list registers is UNPREDICTABLE in the GIC architecture): IPIs a Linux guest
/// handles harmlessly at any time once its GIC is up: reschedule (0), call-function (1),
/// irq-work (5) and timer broadcast (4, one extra tick). Never CPU_STOP (2, 3) or WAKEUP (6).
pub const LEFTOVER_SGIS: [u16; NUM_LIST_REGS] = [0, 1, 5, 4];

const WORDS: usize = NUM_IRQS / 32;

/// Distributor register offsets (GIC architecture spec v2, table 4-1).
pub mod reg {
    /// Distributor control.
    pub const CTLR: u64 = 0x000;
    /// Interrupt controller type.
    pub const TYPER: u64 = 0x004;
    /// Implementer identification.
    pub const IIDR: u64 = 0x008;
    /// Interrupt group registers.
    pub const IGROUPR: u64 = 0x080;
    /// Set-enable.
    pub const ISENABLER: u64 = 0x100;
    /// Clear-enable.
    pub const ICENABLER: u64 = 0x180;
    /// Set-pending.
    pub const ISPENDR: u64 = 0x200;
    /// Clear-pending.
    pub const ICPENDR: u64 = 0x280;
    /// Set-active.
    pub const ISACTIVER: u64 = 0x300;
    /// Clear-active.
    pub const ICACTIVER: u64 = 0x380;
    /// Priorities, one byte per INTID.
    pub const IPRIORITYR: u64 = 0x400;
    /// CPU targets, one byte per INTID.
    pub const ITARGETSR: u64 = 0x800;
    /// Configuration, two bits per INTID.
    pub const ICFGR: u64 = 0xc00;
    /// Software-generated interrupts (write only).
    pub const SGIR: u64 = 0xf00;
    /// SGI clear-pending, one byte per SGI.
    pub const CPENDSGIR: u64 = 0xf10;
    /// SGI set-pending, one byte per SGI.
    pub const SPENDSGIR: u64 = 0xf20;
    /// First peripheral/component ID register (PIDR4).
    pub const ID_START: u64 = 0xfd0;
}

/// GICD_IIDR: implementer ARM (0x43b), product "GIC-400"-like 0x02, revision 0.
const IIDR_VALUE: u32 = 0x0200_043b;
/// PIDR4..PIDR7, PIDR0..PIDR3, CIDR0..CIDR3 of a GICv2 (ArchRev 2 in PIDR2[7:4]).
const ID_REGS: [u32; 12] = [
    0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];
/// ITARGETSR for SGIs and PPIs: always the (only) CPU interface 0.
const CPU0_TARGETS: u32 = 0x0101_0101;

/// What happens when the guest EOIs an IRQ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ack {
    /// Acknowledge the virtual PPI at seL4 so that it can fire again (the vtimer).
    Vppi,
    /// Acknowledge the physical IRQ of this Microkit channel (a passed-through device IRQ).
    Passthrough(u8),
}

/// Where list registers get loaded: `seL4_ARM_VCPU_InjectIRQ` on seL4, a recorder in tests.
pub trait ListRegisters {
    /// Loads `irq` with GIC priority `priority` (0..=31, the five bits a GICv2 list register
    /// holds) into list register `index`, group 0.
    fn load(&mut self, irq: u16, priority: u8, index: u8) -> Result<(), LoadError>;
}

/// A list register could not be loaded; the kernel's error code (`seL4_Error`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LoadError(pub u64);

/// How [`Vgic::inject`] handled an IRQ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Injection {
    /// Loaded into this list register now.
    Delivered(u8),
    /// Left pending; it goes in when the reason goes away.
    Queued(QueueReason),
    /// It was already pending: edges merge.
    Coalesced,
}

/// Why a pending IRQ is not in a list register yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueueReason {
    /// GICD_CTLR.Enable is clear.
    DistributorDisabled,
    /// The guest has not enabled this INTID.
    IrqDisabled,
    /// The previous instance of this INTID has not been EOI'd.
    AlreadyInListRegister,
    /// All list registers are in use.
    NoFreeListRegister,
    /// Loading the list register failed (the error was logged by the caller).
    LoadFailed(LoadError),
}

/// An EOI'd INTID and the action registered for it.
pub type Eoi = (u16, Option<Ack>);

/// An INTID beyond [`NUM_IRQS`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NoSuchIrq(pub u32);

/// A distributor access the model refuses; reads return 0 and writes are ignored (RAZ/WI).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AccessError {
    /// Width other than 4 bytes, or 1 byte outside the byte-accessible registers.
    BadWidth {
        /// Offset into GICD.
        offset: u64,
        /// Bytes.
        width: u32,
    },
    /// Not naturally aligned.
    Unaligned {
        /// Offset into GICD.
        offset: u64,
    },
    /// An offset with no register.
    Reserved {
        /// Offset into GICD.
        offset: u64,
    },
    /// A write to a read-only register.
    ReadOnly {
        /// Offset into GICD.
        offset: u64,
    },
}

/// The distributor and list-register state of one vCPU.
pub struct Vgic {
    ctlr: u32,
    enabled: [u32; WORDS],
    pending: [u32; WORDS],
    in_lr: [u32; WORDS],
    priority: [u8; NUM_IRQS],
    targets: [u8; NUM_IRQS],
    config: [u32; NUM_IRQS / 16],
    lrs: [Option<u16>; NUM_LIST_REGS],
    /// List registers (bit = index) still holding an IRQ of a guest instance that has since
    /// been reset: its EOI action already ran at the reset, its EOI only frees the register.
    stale: u8,
    acks: [Option<(u16, Ack)>; MAX_ACKS],
}

impl Default for Vgic {
    fn default() -> Self {
        Self::new()
    }
}

fn bit(irq: usize) -> (usize, u32) {
    (irq / 32, 1 << (irq % 32))
}

impl Vgic {
    /// A distributor out of reset: disabled, every INTID disabled, idle, priority 0.
    pub const fn new() -> Self {
        let mut config = [0; NUM_IRQS / 16];
        // SGIs are edge-triggered and read-only.
        config[0] = 0xaaaa_aaaa;
        Self {
            ctlr: 0,
            enabled: [0; WORDS],
            pending: [0; WORDS],
            in_lr: [0; WORDS],
            priority: [0; NUM_IRQS],
            targets: [0; NUM_IRQS],
            config,
            lrs: [None; NUM_LIST_REGS],
            stale: 0,
            acks: [None; MAX_ACKS],
        }
    }

    /// A guest reset: the distributor back to the state of [`Vgic::new`], keeping the EOI
    /// actions, and nothing left owed to the kernel.
    ///
    /// Returns every IRQ whose EOI action has not run yet (in a list register, or pending), to
    /// be run now: the old guest will never EOI it, and a passed-through IRQ that is not
    /// acknowledged stays masked at the kernel for good (the NIC or UART would fall silent), as
    /// would a virtual timer PPI.
    ///
    /// seL4 has no invocation that empties a list register, and the new guest must not find
    /// the old IRQs there: it takes a pending one as soon as it unmasks interrupts, before its
    /// drivers have mapped that INTID, and Linux's GICv2 driver then never EOIs it, so it stays
    /// active and blocks every interrupt of its priority (seen: a restarted guest spinning in
    /// WFI with its timer dead). So each occupied register is overwritten with an SGI of
    /// [`LEFTOVER_SGIS`], which Linux handles from the moment its GIC is up (a spurious IPI),
    /// none of them an INTID another register still holds. The register stays marked until the
    /// new guest EOIs it; that EOI runs no action ([`Vgic::maintenance`]). A register that is
    /// active (the guest died inside a handler) cannot be overwritten (seL4_DeleteFirst): it
    /// keeps the old INTID, which then cannot be delivered again, and costs a list register.
    pub fn reset(&mut self, lrs: &mut impl ListRegisters) -> [Option<(u16, Ack)>; MAX_ACKS] {
        let mut owed = [None; MAX_ACKS];
        let mut n = 0;
        for w in 0..WORDS {
            let mut bits = self.in_lr[w] | self.pending[w];
            while bits != 0 {
                let irq = (w * 32) as u16 + bits.trailing_zeros() as u16;
                bits &= bits - 1;
                // An IRQ in a register the previous reset already settled owes nothing.
                let settled = self
                    .lrs
                    .iter()
                    .enumerate()
                    .any(|(i, l)| *l == Some(irq) && self.stale & (1 << i) != 0)
                    && !Self::test(&self.pending, irq.into());
                if let (Some(ack), false, Some(slot)) = (self.ack_of(irq), settled, owed.get_mut(n))
                {
                    *slot = Some((irq, ack));
                    n += 1;
                }
            }
        }
        let (acks, old) = (self.acks, self.lrs);
        *self = Self::new();
        self.acks = acks;
        // Old INTIDs may stay (a failed overwrite): no leftover SGI may equal one of them.
        let mut taken = old;
        for (index, irq) in old.iter().enumerate() {
            let Some(irq) = *irq else { continue };
            let sgi = LEFTOVER_SGIS
                .iter()
                .copied()
                .find(|s| !taken.contains(&Some(*s)));
            let kept = match sgi.map(|sgi| (sgi, lrs.load(sgi, 0, index as u8))) {
                Some((sgi, Ok(()))) => sgi,
                _ => irq,
            };
            taken[index] = Some(kept);
            let (w, m) = bit(kept.into());
            self.in_lr[w] |= m;
            self.lrs[index] = Some(kept);
            self.stale |= 1 << index;
        }
        owed
    }

    /// List registers (bit = index) still holding an IRQ from before the last reset.
    pub fn stale_list_registers(&self) -> u8 {
        self.stale
    }

    /// Registers what happens when the guest EOIs `irq`. Returns `false` when the table is full
    /// or `irq` is out of range.
    pub fn set_ack(&mut self, irq: u16, ack: Ack) -> bool {
        if usize::from(irq) >= NUM_IRQS {
            return false;
        }
        if let Some(slot) = self
            .acks
            .iter_mut()
            .find(|a| a.is_none_or(|(i, _)| i == irq))
        {
            *slot = Some((irq, ack));
            true
        } else {
            false
        }
    }

    fn ack_of(&self, irq: u16) -> Option<Ack> {
        self.acks
            .iter()
            .flatten()
            .find(|(i, _)| *i == irq)
            .map(|&(_, a)| a)
    }

    fn test(bits: &[u32; WORDS], irq: usize) -> bool {
        let (w, m) = bit(irq);
        bits[w] & m != 0
    }

    /// Whether the distributor is enabled (GICD_CTLR.Enable).
    pub fn distributor_enabled(&self) -> bool {
        self.ctlr & 1 != 0
    }

    /// Whether the guest enabled `irq`.
    pub fn is_enabled(&self, irq: u16) -> bool {
        usize::from(irq) < NUM_IRQS && Self::test(&self.enabled, irq.into())
    }

    /// Whether `irq` is pending and not yet in a list register.
    pub fn is_pending(&self, irq: u16) -> bool {
        usize::from(irq) < NUM_IRQS && Self::test(&self.pending, irq.into())
    }

    /// Whether `irq` sits in a list register (delivered, EOI not yet seen).
    pub fn is_in_list_register(&self, irq: u16) -> bool {
        usize::from(irq) < NUM_IRQS && Self::test(&self.in_lr, irq.into())
    }

    /// The IRQ in each list register.
    pub fn list_registers(&self) -> [Option<u16>; NUM_LIST_REGS] {
        self.lrs
    }

    /// Whether an interrupt would wake a guest waiting in WFI: something sits in a list register
    /// or is pending and deliverable.
    /// A register still holding an IRQ of a reset guest does not count: it may be active, and
    /// a guest waiting on it would spin.
    pub fn has_work(&self) -> bool {
        self.awaits_eoi() || self.next_candidate().is_some()
    }

    /// Whether an interrupt sits in a list register waiting for the guest to take and EOI it
    /// (a register left over from before a reset does not count).
    pub fn awaits_eoi(&self) -> bool {
        self.lrs
            .iter()
            .enumerate()
            .any(|(i, l)| l.is_some() && self.stale & (1 << i) == 0)
    }

    fn why_not_deliverable(&self, irq: usize) -> Option<QueueReason> {
        if !self.distributor_enabled() {
            Some(QueueReason::DistributorDisabled)
        } else if !Self::test(&self.enabled, irq) {
            Some(QueueReason::IrqDisabled)
        } else if Self::test(&self.in_lr, irq) {
            Some(QueueReason::AlreadyInListRegister)
        } else {
            None
        }
    }

    /// Raises `irq` (a device or VMM event): marks it pending and loads it into a list register
    /// if it can go in now.
    pub fn inject(
        &mut self,
        irq: u16,
        lrs: &mut impl ListRegisters,
    ) -> Result<Injection, NoSuchIrq> {
        let i = usize::from(irq);
        if i >= NUM_IRQS {
            return Err(NoSuchIrq(irq.into()));
        }
        if Self::test(&self.pending, i) {
            return Ok(Injection::Coalesced);
        }
        let (w, m) = bit(i);
        self.pending[w] |= m;
        if let Some(reason) = self.why_not_deliverable(i) {
            return Ok(Injection::Queued(reason));
        }
        let Some(index) = self.lrs.iter().position(Option::is_none) else {
            return Ok(Injection::Queued(QueueReason::NoFreeListRegister));
        };
        match self.load(i, index, lrs) {
            Ok(()) => Ok(Injection::Delivered(index as u8)),
            Err(e) => Ok(Injection::Queued(QueueReason::LoadFailed(e))),
        }
    }

    fn load(
        &mut self,
        irq: usize,
        index: usize,
        lrs: &mut impl ListRegisters,
    ) -> Result<(), LoadError> {
        lrs.load(irq as u16, self.priority[irq] >> 3, index as u8)?;
        let (w, m) = bit(irq);
        self.pending[w] &= !m;
        self.in_lr[w] |= m;
        self.lrs[index] = Some(irq as u16);
        Ok(())
    }

    /// The deliverable pending IRQ with the best (lowest) priority, lowest INTID first.
    fn next_candidate(&self) -> Option<usize> {
        if !self.distributor_enabled() {
            return None;
        }
        let mut best: Option<usize> = None;
        for w in 0..WORDS {
            let mut ready = self.pending[w] & self.enabled[w] & !self.in_lr[w];
            while ready != 0 {
                let irq = w * 32 + ready.trailing_zeros() as usize;
                ready &= ready - 1;
                if best.is_none_or(|b| self.priority[irq] < self.priority[b]) {
                    best = Some(irq);
                }
            }
        }
        best
    }

    /// Fills free list registers from the pending IRQs. Returns the first load error (the IRQ
    /// stays pending). Called after every change that can make an IRQ deliverable.
    pub fn flush(&mut self, lrs: &mut impl ListRegisters) -> Result<(), LoadError> {
        while let Some(index) = self.lrs.iter().position(Option::is_none) {
            let Some(irq) = self.next_candidate() else {
                return Ok(());
            };
            self.load(irq, index, lrs)?;
        }
        Ok(())
    }

    /// The guest EOI'd the IRQ in list register `index` (a VGICMaintenance fault): frees the
    /// register, refills it from the pending IRQs, and returns the EOI'd INTID and its action.
    /// `None` when that register held nothing the VMM put there.
    pub fn maintenance(
        &mut self,
        index: u8,
        lrs: &mut impl ListRegisters,
    ) -> (Option<Eoi>, Result<(), LoadError>) {
        let stale = self.stale & 1u8.checked_shl(index.into()).unwrap_or(0);
        self.stale &= !stale;
        let done = self
            .lrs
            .get_mut(usize::from(index))
            .and_then(Option::take)
            .map(|irq| {
                let (w, m) = bit(irq.into());
                self.in_lr[w] &= !m;
                (irq, if stale != 0 { None } else { self.ack_of(irq) })
            });
        (done, self.flush(lrs))
    }

    /// A guest read of `width` bytes at `offset` into the distributor page.
    pub fn read(&self, offset: u64, width: u32) -> Result<u32, AccessError> {
        check_access(offset, width)?;
        let byte_reg = |start: u64| {
            let first = (offset - start) as usize;
            let mut v = 0u32;
            for k in 0..width as usize {
                v |= u32::from(self.byte_register(start, first + k)) << (8 * k);
            }
            v
        };
        let word = ((offset & 0x7f) / 4) as usize;
        Ok(match offset {
            reg::CTLR => self.ctlr,
            reg::TYPER => (NUM_IRQS / 32 - 1) as u32,
            reg::IIDR => IIDR_VALUE,
            0x080..=0x0ff => 0,
            0x100..=0x17f => self.enabled.get(word).copied().unwrap_or(0),
            0x180..=0x1ff => self.enabled.get(word).copied().unwrap_or(0),
            0x200..=0x2ff => self.pending.get(word).copied().unwrap_or(0),
            0x300..=0x3ff => self.in_lr.get(word).copied().unwrap_or(0),
            0x400..=0x7ff => byte_reg(reg::IPRIORITYR),
            0x800..=0xbff => byte_reg(reg::ITARGETSR),
            0xc00..=0xcff => self
                .config
                .get(((offset - reg::ICFGR) / 4) as usize)
                .copied()
                .unwrap_or(0),
            reg::SGIR => 0,
            0xf10..=0xf2f => byte_reg(offset & !0xf),
            0xfd0..=0xfff => ID_REGS[((offset - reg::ID_START) / 4) as usize],
            _ => return Err(AccessError::Reserved { offset }),
        })
    }

    fn byte_register(&self, start: u64, index: usize) -> u8 {
        match start {
            reg::IPRIORITYR => self.priority.get(index).copied().unwrap_or(0),
            reg::ITARGETSR if index < 32 => CPU0_TARGETS as u8,
            reg::ITARGETSR => self.targets.get(index).copied().unwrap_or(0),
            // CPENDSGIR / SPENDSGIR: bit 0 of byte n = SGI n pending from CPU 0.
            _ if index < 16 => u8::from(Self::test(&self.pending, index)),
            _ => 0,
        }
    }

    /// A guest write of `width` bytes of `value` at `offset` into the distributor page. Writes
    /// that can make an IRQ deliverable load list registers through `lrs`.
    pub fn write(
        &mut self,
        offset: u64,
        width: u32,
        value: u32,
        lrs: &mut impl ListRegisters,
    ) -> Result<(), WriteError> {
        check_access(offset, width).map_err(WriteError::Access)?;
        let word = ((offset & 0x7f) / 4) as usize;
        let in_range = word < WORDS;
        match offset {
            reg::CTLR => self.ctlr = value & 1,
            reg::TYPER | reg::IIDR | 0xfd0..=0xfff => {
                return Err(WriteError::Access(AccessError::ReadOnly { offset }))
            }
            // No security extensions: groups are RAZ/WI.
            0x080..=0x0ff => {}
            0x100..=0x17f if in_range => self.enabled[word] |= value,
            0x180..=0x1ff if in_range => self.enabled[word] &= !value,
            0x200..=0x27f if in_range => self.pending[word] |= value & !self.in_lr[word],
            0x280..=0x2ff if in_range => self.pending[word] &= !value,
            // Active state lives in the list registers, which only the guest's EOI clears;
            // Linux writes ICACTIVER at boot to clear a state that is already clear.
            0x300..=0x3ff => {}
            0x400..=0x7ff => {
                let first = (offset - reg::IPRIORITYR) as usize;
                for k in 0..width as usize {
                    if let Some(p) = self.priority.get_mut(first + k) {
                        *p = (value >> (8 * k)) as u8;
                    }
                }
            }
            0x800..=0xbff => {
                let first = (offset - reg::ITARGETSR) as usize;
                for k in 0..width as usize {
                    // SGI/PPI targets are read-only; only CPU interface 0 exists.
                    if let Some(t) = self.targets.get_mut(first + k).filter(|_| first + k >= 32) {
                        *t = (value >> (8 * k)) as u8 & 1;
                    }
                }
            }
            0xc00..=0xcff => {
                let index = ((offset - reg::ICFGR) / 4) as usize;
                // ICFGR0 (SGIs) is read-only.
                if index > 0 {
                    if let Some(c) = self.config.get_mut(index) {
                        *c = value;
                    }
                }
            }
            reg::SGIR => self.sgi(value),
            0xf10..=0xf2f => {
                let set = offset >= reg::SPENDSGIR;
                let first = (offset & 0xf) as usize;
                for k in 0..width as usize {
                    let sgi = first + k;
                    if (value >> (8 * k)) & 1 != 0 && sgi < 16 {
                        let (w, m) = bit(sgi);
                        if set {
                            self.pending[w] |= m & !self.in_lr[w];
                        } else {
                            self.pending[w] &= !m;
                        }
                    }
                }
            }
            _ if (0x100..0x400).contains(&offset) => {} // beyond NUM_IRQS: RAZ/WI
            _ => return Err(WriteError::Access(AccessError::Reserved { offset })),
        }
        self.flush(lrs).map_err(WriteError::Load)
    }

    /// GICD_SGIR: target-list filter (bits 25:24), CPU target list (23:16), SGI INTID (3:0).
    /// With one vCPU only "to myself" and target lists including CPU 0 reach anyone.
    fn sgi(&mut self, value: u32) {
        let filter = (value >> 24) & 3;
        let targets = (value >> 16) & 0xff;
        let to_self = match filter {
            0 => targets & 1 != 0,
            2 => true,
            _ => false,
        };
        if to_self {
            let (w, m) = bit((value & 0xf) as usize);
            self.pending[w] |= m & !self.in_lr[w];
        }
    }
}

/// A distributor write the model refused or could not complete.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteError {
    /// The access itself is invalid (ignored).
    Access(AccessError),
    /// The write took effect, but loading a now-deliverable IRQ failed (it stays pending).
    Load(LoadError),
}

/// Word accesses anywhere; byte accesses to IPRIORITYR, ITARGETSR, CPENDSGIR and SPENDSGIR.
fn check_access(offset: u64, width: u32) -> Result<(), AccessError> {
    if offset >= GICD_SIZE {
        return Err(AccessError::Reserved { offset });
    }
    let byte_ok = (0x400..0xc00).contains(&offset) || (0xf10..0xf30).contains(&offset);
    match width {
        4 if offset.is_multiple_of(4) => Ok(()),
        4 => Err(AccessError::Unaligned { offset }),
        1 if byte_ok => Ok(()),
        _ => Err(AccessError::BadWidth { offset, width }),
    }
}

#[cfg(test)]
mod tests;
