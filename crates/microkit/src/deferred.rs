//! The single deferred-action slot (libmicrokit `microkit_have_signal` / `microkit_signal_cap`).
//!
//! libmicrokit keeps **one** pending signal: `microkit_deferred_notify` and
//! `microkit_deferred_irq_ack` overwrite it, so a second deferred call before the PD next blocks
//! replaces the first (the first is lost). This slot has exactly that semantics. The event loop
//! takes the action when the PD is about to block and fuses it with the receive (seL4:
//! `seL4_NBSendRecv`, or a plain send before `seL4_ReplyRecv` when a reply is pending).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::Channel;

/// An action deferred until the PD next blocks in its event loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeferredAction {
    /// Notify the channel.
    Notify(Channel),
    /// Acknowledge the IRQ of the channel.
    IrqAck(Channel),
}

const NONE: u32 = 0;
const NOTIFY: u32 = 1 << 8;
const IRQ_ACK: u32 = 2 << 8;

/// Encoded as kind | channel id. A PD's handler runs on one thread, so relaxed ordering suffices;
/// the atomic only avoids `static mut`.
static SLOT: AtomicU32 = AtomicU32::new(NONE);

/// Replaces the pending action (libmicrokit semantics: last one wins).
pub(crate) fn set(action: DeferredAction) {
    let word = match action {
        DeferredAction::Notify(ch) => NOTIFY | u32::from(ch.id()),
        DeferredAction::IrqAck(ch) => IRQ_ACK | u32::from(ch.id()),
    };
    SLOT.store(word, Ordering::Relaxed);
}

/// The pending action, if any, left in place.
pub fn pending() -> Option<DeferredAction> {
    decode(SLOT.load(Ordering::Relaxed))
}

/// Takes the pending action, leaving the slot empty.
pub(crate) fn take() -> Option<DeferredAction> {
    decode(SLOT.swap(NONE, Ordering::Relaxed))
}

fn decode(word: u32) -> Option<DeferredAction> {
    let ch = Channel::new((word & 0xff) as u8);
    match word & !0xff {
        NOTIFY => Some(DeferredAction::Notify(ch)),
        IRQ_ACK => Some(DeferredAction::IrqAck(ch)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_deferred_call_replaces_the_first() {
        assert_eq!(take(), None);
        set(DeferredAction::Notify(Channel::new(3)));
        set(DeferredAction::IrqAck(Channel::new(61)));
        assert_eq!(take(), Some(DeferredAction::IrqAck(Channel::new(61))));
        assert_eq!(take(), None);
    }
}
