//! Glue for protection-domain entry points (feature `microkit`).
use microkit::{Channel, DeferredAction};

/// [`Notifier`](crate::Notifier) over Microkit channels.
///
/// Microkit has one deferred-action slot; a second deferred notification would silently replace
/// the first. So, as sDDF's `lib_sddf_lwip` does, a deferred notification whose slot is taken by
/// another action is sent immediately instead, and one already pending for the same channel is
/// not repeated.
#[derive(Debug, Default, Clone, Copy)]
pub struct MicrokitNotifier;

impl crate::Notifier for MicrokitNotifier {
    fn notify(&mut self, ch: u8) {
        Channel::new(ch).notify();
    }

    fn deferred_notify(&mut self, ch: u8) {
        match microkit::deferred_pending() {
            None => Channel::new(ch).deferred_notify(),
            Some(DeferredAction::Notify(pending)) if pending.id() == ch => {}
            Some(_) => Channel::new(ch).notify(),
        }
    }
}

/// Reports a start-up error the way a PD can (the console where there is one) and stops the PD
/// with a fault, which the monitor (or host runner) reports with the PD's name.
pub fn fail(what: &dyn core::fmt::Display) -> ! {
    microkit::debug_println!("{}: {}", microkit::pd_name(), what);
    panic!("{}: start-up failed", microkit::pd_name());
}
