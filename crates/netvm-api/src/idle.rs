//! The idle PD's counters region, which the echo servers read for utilisation (netvm's; the
//! layout is sDDF's `struct bench` from `benchmark/idle.c`, which sDDF does not put in a header).
//!
//! | bytes | field | sDDF |
//! |---|---|---|
//! | 0..8 | [`IdleCounters::core`] | `core_ccount` |
//! | 8..16 | [`IdleCounters::prev`] | `prev_ccount` |
//! | 16..24 | [`IdleCounters::idle`] | `idle_ccount` |
//!
//! Single writer (the idle PD), every field a naturally aligned 64-bit word written with one
//! store, so a reader never sees a torn value.
use core::sync::atomic::{AtomicU64, Ordering};

/// The setvar (on the `<map>` of the counters region) that gives a PD the region's address.
pub const SETVAR: &str = "idle_counters";

/// Bytes of the counters region (one page; [`IdleCounters`] uses the first 24).
pub const REGION_SIZE: u64 = 0x1000;

/// The shared counters (sDDF `struct bench`).
#[repr(C)]
#[derive(Debug, Default)]
pub struct IdleCounters {
    /// The counter at the idle loop's latest pass (sDDF `core_ccount`).
    pub core: AtomicU64,
    /// The counter at the pass before (sDDF `prev_ccount`).
    pub prev: AtomicU64,
    /// Ticks counted as idle since the idle PD started (sDDF `idle_ccount`).
    pub idle: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<IdleCounters>() == 24);
const _: () = assert!(core::mem::size_of::<IdleCounters>() as u64 <= REGION_SIZE);

impl IdleCounters {
    /// All zero.
    pub const fn new() -> Self {
        IdleCounters {
            core: AtomicU64::new(0),
            prev: AtomicU64::new(0),
            idle: AtomicU64::new(0),
        }
    }

    /// Idle ticks so far (what a utilisation daemon samples).
    pub fn idle_ticks(&self) -> u64 {
        self.idle.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_sddf_struct_bench() {
        let c = IdleCounters::new();
        let base = &c as *const IdleCounters as usize;
        assert_eq!(&c.core as *const AtomicU64 as usize - base, 0);
        assert_eq!(&c.prev as *const AtomicU64 as usize - base, 8);
        assert_eq!(&c.idle as *const AtomicU64 as usize - base, 16);
    }
}
