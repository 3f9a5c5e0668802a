//! The PD's entry points (libmicrokit `init`, `notified`, `protected`, `fault`).

use crate::{Channel, ChannelSet, Child, MessageInfo};

/// A protection domain's event handlers. The runtime calls [`Handler::init`] once, then the other
/// methods from its event loop, one event at a time, on the PD's only thread.
pub trait Handler: Sized {
    /// Initialises the PD and returns its state (libmicrokit `init`). Runs before the PD first
    /// blocks; for a passive PD, before it hands its scheduling context back.
    fn init() -> Self;

    /// Notifications and IRQs that arrived in one badge. libmicrokit calls `notified` once per
    /// bit, lowest first; here the whole badge comes at once ([`ChannelSet`] iterates in the same
    /// order).
    fn notified(&mut self, channels: ChannelSet);

    /// A protected procedure call on `channel`; the caller blocks until this returns. The returned
    /// message and the message registers `0..count` form the reply.
    ///
    /// The default, like libmicrokit's weak symbol, reports the missing entry point and faults.
    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        let _ = (channel, msg);
        panic!(
            "{} is missing the 'protected' entry point",
            crate::pd_name()
        );
    }

    /// A fault of child PD (or vCPU) `child`; `msg.label()` is the seL4 fault type and the message
    /// registers hold its details (e.g. VMFault: MR0 ip, MR1 address). Returning `Some(reply)`
    /// replies to the fault, which resumes the child; `None` leaves it blocked (unless the handler
    /// restarted it with [`Child::restart`]).
    ///
    /// The default, like libmicrokit's weak symbol, reports the missing entry point and faults.
    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        let _ = (child, msg);
        panic!("{} is missing the 'fault' entry point", crate::pd_name());
    }
}

/// seL4 fault labels (`seL4_FaultType`) as they arrive in [`Handler::fault`].
pub mod fault_label {
    /// `seL4_Fault_CapFault`.
    pub const CAP_FAULT: u64 = 1;
    /// `seL4_Fault_UnknownSyscall`.
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`: MR0 ip, MR1 sp, MR2 spsr, MR3 number, MR4 code.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_Timeout`.
    pub const TIMEOUT: u64 = 5;
    /// `seL4_Fault_VMFault`: MR0 ip, MR1 address, MR2 prefetch fault, MR3 FSR.
    pub const VM_FAULT: u64 = 6;
    /// `seL4_Fault_VGICMaintenance`: MR0 list-register index.
    pub const VGIC_MAINTENANCE: u64 = 7;
    /// `seL4_Fault_VCPUFault`: MR0 HSR.
    pub const VCPU_FAULT: u64 = 8;
    /// `seL4_Fault_VPPIEvent`: MR0 IRQ.
    pub const VPPI_EVENT: u64 = 9;
}
