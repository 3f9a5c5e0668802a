//! The benchmark's clock: CLOCK_MONOTONIC in nanoseconds, and an absolute sleep on it.

use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};

/// CLOCK_MONOTONIC now, in nanoseconds: the clock benchmark timestamps are taken from.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC is always supported on Linux, so this cannot fail; if it did, zero is
    // still a value (as the hand-written call it replaces returned).
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap_or(TimeSpec::new(0, 0));
    (ts.tv_sec() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec() as u64)
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (absolute, so pacing does not drift by
/// the time spent between deciding to sleep and sleeping). Returns early on a signal.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = TimeSpec::new(
        (deadline_ns / 1_000_000_000) as nix::libc::time_t,
        (deadline_ns % 1_000_000_000) as nix::libc::c_long,
    );
    // An EINTR return just ends the sleep early, which callers tolerate.
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_reaches_the_deadline_and_the_clock_advances() {
        let start = monotonic_ns();
        assert!(start > 0);
        let deadline = start + 2_000_000;
        sleep_until_ns(deadline);
        assert!(monotonic_ns() >= deadline);
    }
}
