//! Utilisation of a set of processes, from `/proc/<pid>/stat`: how much CPU time the system's own
//! processes (e.g. `netvm run` and its PD processes in host mode) used over the sampling phase.
//!
//! In host mode the load generator shares the machine's cores with the system, so whole-machine
//! idle time (`/proc/stat`, what the utilisation daemon reports) counts the bench's own work as
//! the system's. Here Total_Cycles is the sampling phase's wall time times the number of online
//! CPUs and Idle_Cycles is Total minus the CPU time (utime + stime, all threads) of the given
//! processes and their descendants, both in clock ticks (`USER_HZ`, usually 100/s): the same
//! units and the same "share of the whole machine" meaning as `/proc/stat`.
//!
//! Limits: tick granularity (10 ms per process per snapshot); processes are found at the start of
//! sampling, so one started later is not counted and one that exits during sampling counts only
//! up to its last snapshot (nothing, if it is gone by the end).

use std::fs;

/// CPU time of the processes of one snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was taken, CLOCK_MONOTONIC ns.
    at_ns: u64,
    /// (pid, utime + stime in ticks).
    ticks: Vec<(u32, u64)>,
}

/// `(ppid, utime + stime)` from the text of `/proc/<pid>/stat`.
fn parse_stat(text: &str) -> Option<(u32, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) … utime(14) stime(15); f[0] is field 3.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn read_stat(pid: u32) -> Option<(u32, u64)> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `roots` and every live descendant of them.
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, _)) = read_stat(pid) {
                all.push((pid, ppid));
            }
        }
    }
    let mut found: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for &(pid, ppid) in &all {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        i += 1;
    }
    found
}

/// CPU time of `pids` at `now_ns`.
pub fn snapshot(pids: &[u32], now_ns: u64) -> Snapshot {
    Snapshot {
        at_ns: now_ns,
        ticks: pids
            .iter()
            .filter_map(|&p| read_stat(p).map(|(_, t)| (p, t)))
            .collect(),
    }
}

impl Snapshot {
    /// Whether none of the processes could be read.
    pub fn is_empty(&self) -> bool {
        self.ticks.is_empty()
    }
}

/// `(idle, total)` in clock ticks between two snapshots of the same processes.
pub fn between(start: &Snapshot, end: &Snapshot) -> (u64, u64) {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|h| u64::try_from(h).ok())
        .filter(|&h| h > 0)
        .unwrap_or(100);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let wall_ns = end.at_ns.saturating_sub(start.at_ns);
    let total = (u128::from(wall_ns) * u128::from(hz) * u128::from(cpus) / 1_000_000_000) as u64;
    let busy: u64 = end
        .ticks
        .iter()
        .filter_map(|&(pid, t)| {
            let before = start.ticks.iter().find(|&&(p, _)| p == pid)?.1;
            Some(t.saturating_sub(before))
        })
        .sum();
    (total.saturating_sub(busy), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parens() {
        let text = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 1 2 3 4 250 31 0 0 20 0 3 0 9 1 2";
        assert_eq!(parse_stat(text), Some((17, 281)));
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn a_busy_child_is_counted_and_idle_is_the_rest() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn sh");
        let pids = with_descendants(&[me]);
        assert!(pids.contains(&child.id()), "{pids:?}");
        let start = snapshot(&pids, crate::clock::monotonic_ns());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let end = snapshot(&pids, crate::clock::monotonic_ns());
        let _ = child.kill();
        let _ = child.wait();
        let (idle, total) = between(&start, &end);
        // The spinning child used some of the 500 ms (how much depends on the machine's load).
        assert!(total > 0 && idle < total, "{idle} {total}");
    }
}
