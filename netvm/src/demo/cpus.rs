//! Where the host-mode demo's processes run: the system under test (and, in its turn, the kernel
//! echo) on some CPUs, the load generator on the others, as ipbench's load generators run on
//! machines of their own.
//!
//! On a machine with few cores the bench otherwise competes with the system it measures: every
//! hand-off between the system's processes may wait for a CPU the bench holds, and a veth runs
//! the receiver's network stack in the sender's context, so each side's packets are processed on
//! whichever CPU the other side happened to send from. [`CpuPlacement::Split`] pins each side's
//! processes to its own CPUs and steers each side's links' receive processing (RPS) to them.

use std::process::Command;

use nix::sched::CpuSet;

use super::process::{err, run_cmd, Result};

/// How `netvm demo` places its processes on the machine's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CpuPlacement {
    /// The echo side (the system, then the kernel echo) on the first half of the CPUs this
    /// process may use, the load generator on the rest; each side's links' receive processing
    /// on its own CPUs. Needs at least two CPUs.
    #[default]
    Split,
    /// Every process wherever the scheduler puts it, the load generator among them.
    Shared,
}

/// The two sides' CPUs under [`CpuPlacement::Split`].
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// The echo side's CPUs.
    pub echo: CpuSet,
    /// The load generator's CPUs.
    pub generator: CpuSet,
}

impl Split {
    /// Halves `allowed` (lower-numbered CPUs to the echo side, an odd one out to the load
    /// generator); `None` with fewer than two CPUs.
    pub fn of(allowed: &[usize]) -> Option<Split> {
        if allowed.len() < 2 {
            return None;
        }
        let (echo, generator) = allowed.split_at(allowed.len() / 2);
        Some(Split {
            echo: cpu_set(echo),
            generator: cpu_set(generator),
        })
    }

    /// The split of the CPUs this process may run on.
    pub fn of_this_process() -> Result<Split> {
        let allowed = allowed_cpus()?;
        Split::of(&allowed).ok_or_else(|| {
            err(format!(
                "--cpus split needs at least two CPUs, this process may use {allowed:?}; \
                 use --cpus shared"
            ))
        })
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map_err(|e| err(format!("sched_getaffinity: {e}")))?;
    Ok(cpus_of(&set))
}

/// The CPUs in `set`, ascending.
pub fn cpus_of(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

fn cpu_set(cpus: &[usize]) -> CpuSet {
    let mut set = CpuSet::new();
    for &c in cpus {
        // Every CPU came from a CpuSet, so it is below CpuSet::count().
        let _ = set.set(c);
    }
    set
}

/// `set` as the hexadecimal mask `/sys/class/net/*/queues/rx-*/rps_cpus` takes: 32-bit words,
/// most significant first, separated by commas.
pub fn rps_mask(set: &CpuSet) -> String {
    let cpus = cpus_of(set);
    let words = cpus.iter().max().map_or(1, |m| m / 32 + 1);
    let mut mask = vec![0u32; words];
    for c in cpus {
        mask[c / 32] |= 1 << (c % 32);
    }
    mask.iter()
        .rev()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Makes `cmd`, and every process it starts, run only on `set`.
pub fn pin(cmd: &mut Command, set: CpuSet) {
    use std::os::unix::process::CommandExt;
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec; it only makes one system call
    // (sched_setaffinity), which is async-signal-safe, and touches no lock or allocation.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(std::io::Error::from)
        });
    }
}

/// Steers the receive processing of `dev` in namespace `ns` to `set` (RPS on every receive
/// queue the device has).
pub fn steer_receive(ns: &str, dev: &str, set: &CpuSet) -> Result<()> {
    let script = format!(
        "for q in /sys/class/net/{dev}/queues/rx-*; do echo {} > $q/rps_cpus || exit 1; done",
        rps_mask(set)
    );
    run_cmd(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", &script]))
        .map_err(|e| err(format!("steering {dev}'s receive processing in {ns}: {e}")))
}

/// How the placement reads in the demo's output: `split` is the split in force, `None` when the
/// CPUs are shared.
pub fn describe(split: Option<&Split>) -> String {
    match split {
        Some(s) => format!(
            "cpus: echo side (system, then kernel echo) and its links' receive processing on \
             {:?}, load generator and its links' on {:?} (--cpus split)",
            cpus_of(&s.echo),
            cpus_of(&s.generator)
        ),
        None => "cpus: shared by the echo side and the load generator (--cpus shared)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_gives_each_side_its_own_cpus() {
        assert!(Split::of(&[]).is_none());
        assert!(Split::of(&[3]).is_none());
        let s = Split::of(&[0, 1]).unwrap();
        assert_eq!(
            (cpus_of(&s.echo), cpus_of(&s.generator)),
            (vec![0], vec![1])
        );
        let s = Split::of(&[2, 5, 7]).unwrap();
        assert_eq!(
            (cpus_of(&s.echo), cpus_of(&s.generator)),
            (vec![2], vec![5, 7])
        );
    }

    #[test]
    fn a_pinned_command_and_its_children_run_only_on_the_given_cpus() {
        let allowed = allowed_cpus().unwrap();
        let last = *allowed.last().unwrap();
        let mut cmd = Command::new("sh");
        // The shell's child (grep) reads its own affinity: pinning is inherited.
        cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        pin(&mut cmd, cpu_set(&[last]));
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.split_whitespace().nth(1),
            Some(&*last.to_string()),
            "{text}"
        );
        // A CPU outside the machine's set makes the spawn fail rather than run unpinned.
        let mut bad = Command::new("true");
        pin(&mut bad, cpu_set(&[CpuSet::count() - 1]));
        assert!(bad.status().is_err() || allowed.contains(&(CpuSet::count() - 1)));
    }

    #[test]
    fn rps_masks_are_32_bit_words_most_significant_first() {
        assert_eq!(rps_mask(&cpu_set(&[0])), "00000001");
        assert_eq!(rps_mask(&cpu_set(&[1, 3])), "0000000a");
        assert_eq!(rps_mask(&cpu_set(&[0, 33])), "00000002,00000001");
        assert_eq!(rps_mask(&CpuSet::new()), "00000000");
    }
}
