//! Host-mode implementations of [`CycleSource`] and [`Clock`] (Linux).
use std::fs;
use std::time::Instant;

use crate::{Clock, CycleSource};

/// Microseconds per `/proc/stat` tick (`USER_HZ` is 100 on every Linux ABI).
const US_PER_TICK: u64 = 10_000;

/// Idle and total CPU time of the whole machine from `/proc/stat`, in microseconds summed over
/// all CPUs: the host counterpart of the seL4 idle PD's cycle counters.
#[derive(Debug, Default)]
pub struct ProcStat {
    last: (u64, u64),
}

impl ProcStat {
    /// A source reading `/proc/stat`.
    pub fn new() -> Self {
        ProcStat::default()
    }
}

/// `(idle, total)` in ticks from the aggregate `cpu` line of `/proc/stat`: idle = idle + iowait;
/// total = user + nice + system + idle + iowait + irq + softirq + steal (guest time is already in
/// user and nice).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut f = [0u64; 8];
    let mut fields = line.split_ascii_whitespace().skip(1);
    for v in &mut f[..4] {
        *v = fields.next()?.parse().ok()?;
    }
    // Older kernels stop after idle; missing fields are zero.
    for v in &mut f[4..] {
        *v = fields.next().map_or(Some(0), |s| s.parse().ok())?;
    }
    let idle = f[3] + f[4];
    Some((idle, f.iter().sum()))
}

impl CycleSource for ProcStat {
    fn sample(&mut self) -> (u64, u64) {
        if let Some((idle, total)) = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t))
        {
            self.last = (idle * US_PER_TICK, total * US_PER_TICK);
        }
        self.last
    }
}

/// `std::time::Instant` since creation.
#[derive(Debug)]
pub struct MonotonicClock {
    start: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            start: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now_us(&mut self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_idle_and_total() {
        let text = "cpu  10 2 30 400 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1 1 1\nintr 1\n";
        assert_eq!(parse_proc_stat(text), Some((405, 468)));
        assert_eq!(parse_proc_stat("cpu  1 2 3 4\n"), Some((4, 10)));
        assert_eq!(parse_proc_stat("cpu  1 x 3 4\n"), None);
        assert_eq!(parse_proc_stat("intr 5\n"), None);
    }

    #[test]
    fn this_machine_counts_forward() {
        let mut p = ProcStat::new();
        let (idle0, total0) = p.sample();
        assert!(total0 > 0 && idle0 <= total0, "read /proc/stat");
        let end = Instant::now() + std::time::Duration::from_millis(30);
        while Instant::now() < end {}
        let (idle1, total1) = p.sample();
        assert!(total1 >= total0 && idle1 >= idle0);
        let mut c = MonotonicClock::default();
        let a = c.now_us();
        assert!(c.now_us() >= a);
    }
}
