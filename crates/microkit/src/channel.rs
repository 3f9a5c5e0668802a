//! Channels, channel sets, child PDs and vCPUs: the handles a PD acts on.

use core::fmt;

use crate::{backend, deferred, DeferredAction, MessageInfo, MAX_CHANNEL_ID};

/// A channel end of this PD, by its local id in the system description (`microkit_channel`).
/// IRQs use the same id space (`<irq id=...>`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct Channel(u8);

impl Channel {
    /// The channel (or IRQ) with local id `id`.
    pub const fn new(id: u8) -> Self {
        Self(id)
    }

    /// The local id.
    pub const fn id(self) -> u8 {
        self.0
    }

    /// This channel's bit in a mask such as `microkit_notifications`; 0 for an id above 61.
    fn bit(self) -> u64 {
        if self.0 > MAX_CHANNEL_ID {
            0
        } else {
            1 << self.0
        }
    }

    /// Whether the system description lets this PD notify on this channel.
    pub fn can_notify(self) -> bool {
        backend::notification_mask() & self.bit() != 0
    }

    /// Whether the system description lets this PD make protected calls on this channel.
    pub fn can_pp_call(self) -> bool {
        backend::pp_mask() & self.bit() != 0
    }

    /// Whether this id is one of this PD's IRQs.
    pub fn is_irq(self) -> bool {
        backend::irq_mask() & self.bit() != 0
    }

    /// Signals the other end (`microkit_notify`). Like libmicrokit, a channel this PD may not
    /// notify on only prints an error and does nothing.
    pub fn notify(self) {
        if self.can_notify() {
            backend::notify(self.0);
        } else {
            invalid_channel("microkit_notify", self);
        }
    }

    /// Acknowledges the IRQ with this id (`microkit_irq_ack`); an invalid id prints an error.
    pub fn irq_ack(self) {
        if self.is_irq() {
            backend::irq_ack(self.0);
        } else {
            invalid_channel("microkit_irq_ack", self);
        }
    }

    /// Protected procedure call to the other end (`microkit_ppcall`): message registers
    /// `0..msg.count()` go to the callee, which runs its `protected` handler while this PD blocks;
    /// returns the reply, whose registers are then in this PD's message registers. An invalid
    /// channel prints an error and returns an empty message, as libmicrokit does.
    pub fn pp_call(self, msg: MessageInfo) -> MessageInfo {
        if self.can_pp_call() {
            backend::pp_call(self.0, msg)
        } else {
            invalid_channel("microkit_ppcall", self);
            MessageInfo::new(0, 0)
        }
    }

    /// Notifies when the PD next blocks, fused with its receive (`microkit_deferred_notify`).
    /// Replaces any other pending deferred action (see [`DeferredAction`]).
    pub fn deferred_notify(self) {
        if self.can_notify() {
            deferred::set(DeferredAction::Notify(self));
        } else {
            invalid_channel("microkit_deferred_notify", self);
        }
    }

    /// Acknowledges the IRQ when the PD next blocks (`microkit_deferred_irq_ack`).
    /// Replaces any other pending deferred action (see [`DeferredAction`]).
    pub fn deferred_irq_ack(self) {
        if self.is_irq() {
            deferred::set(DeferredAction::IrqAck(self));
        } else {
            invalid_channel("microkit_deferred_irq_ack", self);
        }
    }
}

/// Prints libmicrokit's message for a call on a channel the PD does not have.
fn invalid_channel(function: &str, ch: Channel) {
    crate::debug_print!(
        "{} {function}: invalid channel given '{}'\n",
        crate::pd_name(),
        ch.0
    );
}

/// The set of channels in one notification badge, iterated from the lowest id up (the order in
/// which libmicrokit calls `notified`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ChannelSet(u64);

impl ChannelSet {
    /// A set from a notification badge (bit `i` = channel or IRQ `i`).
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The badge bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether `ch` is in the set.
    pub fn contains(self, ch: Channel) -> bool {
        ch.id() < 64 && self.0 & (1 << ch.id()) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Iterator for ChannelSet {
    type Item = Channel;

    fn next(&mut self) -> Option<Channel> {
        if self.0 == 0 {
            return None;
        }
        let id = self.0.trailing_zeros() as u8;
        self.0 &= self.0 - 1;
        Some(Channel(id))
    }
}

/// An error code returned by a kernel invocation (`seL4_Error`, nonzero).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InvocationError(pub u64);

impl InvocationError {
    /// `seL4_IllegalOperation`: also what the host backend returns for operations it cannot model.
    pub const ILLEGAL_OPERATION: Self = Self(3);

    /// `Ok` for `seL4_NoError` (0), the error otherwise.
    #[cfg(any(target_os = "none", test))]
    pub(crate) fn check(code: u64) -> Result<(), Self> {
        if code == 0 {
            Ok(())
        } else {
            Err(Self(code))
        }
    }
}

impl fmt::Display for InvocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 11] = [
            "NoError",
            "InvalidArgument",
            "InvalidCapability",
            "IllegalOperation",
            "RangeError",
            "AlignmentError",
            "FailedLookup",
            "TruncatedMessage",
            "DeleteFirst",
            "RevokeFirst",
            "NotEnoughMemory",
        ];
        match NAMES.get(self.0 as usize) {
            Some(name) => write!(f, "seL4 invocation failed: {name}"),
            None => write!(f, "seL4 invocation failed: error {}", self.0),
        }
    }
}

/// A child PD of this PD, by its `id` attribute (`microkit_child`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Child(u8);

impl Child {
    /// The child (or vCPU, in [`crate::Handler::fault`]) with id `id`.
    pub const fn new(id: u8) -> Self {
        Self(id)
    }

    /// The id.
    pub const fn id(self) -> u8 {
        self.0
    }

    /// Restarts the child at `entry_ip` and resumes it (`microkit_pd_restart`: TCB_WriteRegisters
    /// of the pc with resume; a PD of this crate resets its sp in `_start`, and its memory keeps
    /// the previous run's contents). Host: the child process re-executes its image from the start (the
    /// entry point is always the image entry there) — see [`crate::host`].
    pub fn restart(self, entry_ip: usize) -> Result<(), InvocationError> {
        backend::child_restart(self.0, entry_ip)
    }

    /// Suspends the child (`microkit_pd_stop`: TCB_Suspend).
    pub fn stop(self) -> Result<(), InvocationError> {
        backend::child_stop(self.0)
    }

    /// Resumes a stopped child (`microkit_pd_resume`: TCB_Resume).
    pub fn resume(self) -> Result<(), InvocationError> {
        backend::child_resume(self.0)
    }

    /// The vCPU with this id (child and vCPU ids share one namespace per parent).
    pub const fn vcpu(self) -> Vcpu {
        Vcpu(self.0)
    }
}

/// A vCPU of this PD's virtual machine, by its `id` (ARM hypervisor kernels). The host backend
/// has no vCPUs: every operation returns [`InvocationError::ILLEGAL_OPERATION`] there.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Vcpu(u8);

impl Vcpu {
    /// The vCPU with id `id`.
    pub const fn new(id: u8) -> Self {
        Self(id)
    }

    /// The id.
    pub const fn id(self) -> u8 {
        self.0
    }

    /// Sets the vCPU thread's pc and resumes it (`microkit_vcpu_restart`).
    pub fn restart(self, entry_ip: usize) -> Result<(), InvocationError> {
        backend::vcpu_restart(self.0, entry_ip)
    }

    /// Suspends the vCPU thread (`microkit_vcpu_stop`).
    pub fn stop(self) -> Result<(), InvocationError> {
        backend::vcpu_stop(self.0)
    }

    /// Injects virtual IRQ `irq` into list register `index` (`microkit_vcpu_arm_inject_irq`).
    pub fn inject_irq(
        self,
        irq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), InvocationError> {
        let mr0 = u64::from(irq)
            | (u64::from(priority) << 16)
            | (u64::from(group) << 24)
            | (u64::from(index) << 32);
        backend::vcpu_inject_irq(self.0, mr0)
    }

    /// Acknowledges a virtual PPI (`microkit_vcpu_arm_ack_vppi`).
    pub fn ack_vppi(self, irq: u64) -> Result<(), InvocationError> {
        backend::vcpu_ack_vppi(self.0, irq)
    }

    /// Reads a vCPU system register (`microkit_vcpu_arm_read_reg`; `seL4_VCPUReg` numbering).
    pub fn read_reg(self, reg: u64) -> Result<u64, InvocationError> {
        backend::vcpu_read_reg(self.0, reg)
    }

    /// Writes a vCPU system register (`microkit_vcpu_arm_write_reg`).
    pub fn write_reg(self, reg: u64, value: u64) -> Result<(), InvocationError> {
        backend::vcpu_write_reg(self.0, reg, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_set_iterates_lowest_first() {
        let set = ChannelSet::from_bits((1 << 61) | (1 << 3) | 1);
        assert!(set.contains(Channel::new(3)) && !set.contains(Channel::new(2)));
        let ids: std::vec::Vec<u8> = set.map(Channel::id).collect();
        assert_eq!(ids, [0, 3, 61]);
        assert_eq!(ChannelSet::from_bits(0).next(), None);
    }

    #[test]
    fn invocation_error_names() {
        assert_eq!(InvocationError::check(0), Ok(()));
        let err = InvocationError::check(3).unwrap_err();
        assert_eq!(
            std::format!("{err}"),
            "seL4 invocation failed: IllegalOperation"
        );
    }
}
