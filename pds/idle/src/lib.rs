//! Idle-time accounting for seL4, after sDDF's `benchmark/idle.c` (sddf-net.md §4.7), on the
//! ARM generic timer's count instead of the PMU cycle counter (which the kernels do not export
//! to user level outside the benchmark config).
//!
//! The `idle` PD runs at the lowest priority and does nothing but read the counter
//! (`pd_support::counter`, `CNTPCT_EL0`) in a loop ([`IdleAccount::step`]): when two consecutive reads are less than [`IdleAccount::threshold`]
//! apart, nothing ran in between, so the gap was idle time and is added to
//! [`IdleCounters::idle`]; a larger gap means the loop was preempted (kernel or another PD ran),
//! and it is not counted. The echo server's utilisation daemon reads the idle count at START and
//! STOP, and the counter itself for the total: utilisation = 1 − Δidle / Δtotal, both in counter
//! ticks (`CNTFRQ_EL0` per second; 62.5 MHz on QEMU `virt`).
//!
//! The counters live in a small shared region ([`IdleCounters`], sDDF's `struct bench` layout,
//! defined in `netvm_api::idle` because the echo server reads it too:
//! `core_ccount` at 0, `prev_ccount` at 8, `idle_ccount` at 16) that the idle PD maps read-write
//! and each echo client read-only; both learn its address from the setvar [`SETVAR`] on their
//! map of it. Single writer (the idle PD), and every field is a naturally aligned 64-bit word
//! written with one store, so a reader on the same core never sees a torn value.
//!
//! In host mode the idle PD does not spin (utilisation there comes from `/proc/stat`): its
//! `init` returns and it waits for notifications that never come.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

use core::sync::atomic::Ordering;

pub use netvm_api::idle::{IdleCounters, REGION_SIZE, SETVAR};

/// Longest gap between two reads of the counter, in nanoseconds, that still counts as idle.
///
/// One pass of the loop takes tens of nanoseconds (a counter read, a compare, two stores); any
/// preemption costs at least a kernel entry and exit, which is well above a microsecond under
/// QEMU's TCG and a good fraction of one on hardware. sDDF uses 150 CPU cycles; the virtual
/// counter is much coarser (16 ns per tick on QEMU `virt`, 42 ns at 24 MHz), so the bound is a
/// time, converted to ticks with the counter's frequency. Counted gaps are a lower bound of idle
/// time: a host that deschedules QEMU mid-pass shows up as busy time.
pub const MAX_IDLE_STEP_NS: u64 = 1_000;

/// The idle loop's state: the previous read and the threshold.
#[derive(Debug, Clone, Copy)]
pub struct IdleAccount {
    prev: u64,
    threshold: u64,
}

impl IdleAccount {
    /// Starts accounting at counter value `now`, for a counter running at `freq` Hz.
    pub fn new(now: u64, freq: u64) -> Self {
        IdleAccount {
            prev: now,
            threshold: threshold_ticks(freq),
        }
    }

    /// Gaps shorter than this many ticks are idle time.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// One pass of the idle loop with the counter at `now`: counts the gap since the previous
    /// pass as idle if it is short, and publishes the reads. Returns whether it counted.
    pub fn step(&mut self, counters: &IdleCounters, now: u64) -> bool {
        // The virtual count never goes backwards; wrapping keeps a (theoretical) 64-bit wrap
        // from being read as a huge gap that is then simply not counted.
        let gap = now.wrapping_sub(self.prev);
        counters.core.store(now, Ordering::Relaxed);
        let idle = gap < self.threshold;
        if idle {
            // Single writer: a load and a store, no read-modify-write needed.
            let total = counters.idle.load(Ordering::Relaxed).wrapping_add(gap);
            counters.idle.store(total, Ordering::Relaxed);
        }
        counters.prev.store(now, Ordering::Relaxed);
        self.prev = now;
        idle
    }
}

/// [`MAX_IDLE_STEP_NS`] in ticks of a counter at `freq` Hz, rounded up, and at least 2 so that
/// consecutive reads one tick apart always count.
pub fn threshold_ticks(freq: u64) -> u64 {
    let ticks = (u128::from(freq) * u128::from(MAX_IDLE_STEP_NS)).div_ceil(1_000_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_a_microsecond_of_ticks() {
        assert_eq!(threshold_ticks(62_500_000), 63, "QEMU virt: 16 ns per tick");
        assert_eq!(threshold_ticks(24_000_000), 24);
        assert_eq!(threshold_ticks(1_000_000), 2, "never below 2");
        assert_eq!(threshold_ticks(0), 2);
        assert_eq!(threshold_ticks(u64::MAX), 18_446_744_073_710);
    }

    #[test]
    fn short_gaps_count_and_preemptions_do_not() {
        let c = IdleCounters::new();
        let mut a = IdleAccount::new(1_000, 62_500_000);
        // Ten idle passes, 5 ticks apart.
        let mut now = 1_000;
        for _ in 0..10 {
            now += 5;
            assert!(a.step(&c, now));
        }
        assert_eq!(c.idle_ticks(), 50);
        // Preempted for 10 ms: not idle.
        now += 625_000;
        assert!(!a.step(&c, now));
        assert_eq!(c.idle_ticks(), 50);
        // Idle again right after the preemption; exactly at the threshold is not idle.
        now += 62;
        assert!(a.step(&c, now));
        now += 63;
        assert!(!a.step(&c, now));
        assert_eq!(c.idle_ticks(), 112);
        assert_eq!(c.core.load(Ordering::Relaxed), now);
        assert_eq!(c.prev.load(Ordering::Relaxed), now);
    }

    #[test]
    fn a_busy_and_an_idle_stretch_give_the_utilisation() {
        // 1 s at 62.5 MHz: the first half busy (the loop runs once per 1 ms slice, after 0.9
        // ms of other work), the second half idle (a pass every 4 ticks).
        let c = IdleCounters::new();
        let mut a = IdleAccount::new(0, 62_500_000);
        let mut now = 0u64;
        let start = (c.idle_ticks(), now);
        while now < 31_250_000 {
            now += 56_250; // 0.9 ms preempted
            a.step(&c, now);
            for _ in 0..1_562 {
                now += 4; // 0.1 ms of idle passes
                a.step(&c, now);
            }
        }
        while now < 62_500_000 {
            now += 4;
            a.step(&c, now);
        }
        let idle = c.idle_ticks() - start.0;
        let total = now - start.1;
        let utilisation = 1.0 - idle as f64 / total as f64;
        assert!((0.44..0.46).contains(&utilisation), "{utilisation}");
    }
}
