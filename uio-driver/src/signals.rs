//! SIGUSR1 (print counters) and SIGTERM / SIGINT (stop), as flags the event loop polls.
use std::io;
use std::sync::atomic::Ordering;

use crate::sys;

/// Installs the handlers. They interrupt a sleeping `poll`, so the loop reacts at once.
pub fn install() -> io::Result<()> {
    sys::install_signal_flags()
}

/// Whether SIGUSR1 arrived since the last call.
pub fn take_usr1() -> bool {
    sys::SIGUSR1_SEEN.swap(false, Ordering::Relaxed)
}

/// Whether SIGTERM or SIGINT arrived.
pub fn stop_requested() -> bool {
    sys::STOP_SEEN.load(Ordering::Relaxed)
}
