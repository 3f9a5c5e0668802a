//! Benchmark (not a test): notification ping-pong between two host PD processes, against a bare
//! two-process futex ping-pong measured in the same run.
//!
//! `cargo run --release -p microkit --example notify_pingpong [round_trips [runs]]`
//!
//! Prints ns per round trip for both: the median over `runs` (default 7) runs of `round_trips`
//! (default 100,000) each, then the minimum and every run. PD and bare runs alternate, so load
//! from other processes on a shared machine falls on both alike; the ratio of the medians is the
//! figure to compare. The PD path is the real runtime: `Channel::notify` sets a bit in the peer's
//! notification word and wakes it by futex only if it sleeps; the receiver's event loop (which
//! spins briefly before sleeping, see `microkit::host`) takes the word and calls `notified`. The
//! bare path is a single shared futex word flipped between two processes, always with a
//! `FUTEX_WAKE` and sleeping in `FUTEX_WAIT` whenever it is not its turn.
//!
//! With `PINGPONG_PIN=1`, ping runs on CPU 0 and pong on CPU 1 in both kinds of run.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use microkit::host::control::ControlRegion;
use microkit::host::manifest::{ChannelEnd, Manifest, MANIFEST_ENV};
use microkit::{debug_println, Channel, ChannelSet, Handler};

const PEER: Channel = Channel::new(0);
const WARMUP: u64 = 1000;
const ROUND_TRIPS_ENV: &str = "PINGPONG_ROUND_TRIPS";
const BARE_ENV: &str = "PINGPONG_BARE";
/// Set (to anything) to pin ping to CPU 0 and pong to CPU 1, in both the PD and the bare runs:
/// the cross-CPU case, which the scheduler otherwise picks only now and then.
const PIN_ENV: &str = "PINGPONG_PIN";

/// Pins the calling process to `cpu` if [`PIN_ENV`] is set.
fn maybe_pin(cpu: usize) {
    if std::env::var_os(PIN_ENV).is_none() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it; sched_setaffinity
    // only reads it.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "cannot pin to CPU {cpu}");
}

fn round_trips() -> u64 {
    std::env::var(ROUND_TRIPS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

struct Ping {
    count: u64,
    total: u64,
    start: Instant,
}

impl Handler for Ping {
    fn init() -> Self {
        maybe_pin(0);
        PEER.notify();
        Ping {
            count: 0,
            total: round_trips(),
            start: Instant::now(),
        }
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.count += 1;
        if self.count == WARMUP {
            self.start = Instant::now();
        }
        if self.count == WARMUP + self.total {
            let ns = self.start.elapsed().as_nanos() as f64 / self.total as f64;
            debug_println!("RESULT pd {ns:.0}");
            std::process::exit(0);
        }
        PEER.notify();
    }
}

struct Pong;

impl Handler for Pong {
    fn init() -> Self {
        maybe_pin(1);
        Pong
    }

    fn notified(&mut self, _channels: ChannelSet) {
        PEER.notify();
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: valid aligned u32 in a shared mapping; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            0usize,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: valid aligned u32 in a shared mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// One side of the bare ping-pong: `turn` is 0 when ping may go, 1 when pong may.
fn bare(role: &str, path: &str) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("bare file");
    // SAFETY: shared mapping of a 4 KiB file at a kernel-chosen address; only its first u32 is
    // used, as an AtomicU32 (valid for any contents).
    let turn = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap");
        &*(p as *const AtomicU32)
    };
    let (mine, theirs) = if role == "ping" { (0, 1) } else { (1, 0) };
    maybe_pin(mine as usize);
    let total = round_trips() + WARMUP;
    let mut start = Instant::now();
    for i in 0..total {
        if i == WARMUP {
            start = Instant::now();
        }
        while turn.load(Ordering::SeqCst) != mine {
            futex_wait(turn, theirs);
        }
        turn.store(theirs, Ordering::SeqCst);
        futex_wake(turn);
    }
    if role == "ping" {
        // Wait for the last answer so both sides count full round trips.
        while turn.load(Ordering::SeqCst) != mine {
            futex_wait(turn, theirs);
        }
        let ns = start.elapsed().as_nanos() as f64 / round_trips() as f64;
        eprintln!("RESULT bare {ns:.0}");
    }
}

/// Spawns this example twice with the given extra environment and returns ping's RESULT value.
fn run_pair(envs: [Vec<(String, String)>; 2]) -> String {
    let exe = std::env::current_exe().expect("exe");
    let mut children: Vec<_> = envs
        .into_iter()
        .map(|env| {
            Command::new(&exe)
                .envs(env)
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let stderr = children[0].stderr.take().expect("piped");
    let mut result = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("RESULT ") {
            result = rest.to_string();
            break;
        }
        eprintln!("{line}");
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Median (upper median for an even count) and minimum of a non-empty list.
fn median_min(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0])
}

fn summary(values: &mut [f64]) -> String {
    let all: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    let (median, min) = median_min(values);
    format!(
        "{median:.0} ns/round-trip (median; min {min:.0}; runs {})",
        all.join(" ")
    )
}

fn main() {
    if std::env::var_os(MANIFEST_ENV).is_some() {
        let manifest = Manifest::from_env().expect("manifest");
        if manifest.name == "ping" {
            microkit::run::<Ping>();
        }
        microkit::run::<Pong>();
    }
    if let Ok(spec) = std::env::var(BARE_ENV) {
        let (role, path) = spec.split_once(':').expect("role:path");
        bare(role, path);
        return;
    }

    let mut args = std::env::args().skip(1);
    if let Some(n) = args.next() {
        std::env::set_var(ROUND_TRIPS_ENV, n);
    }
    let runs: usize = args
        .next()
        .map(|n| n.parse().expect("runs: a number"))
        .unwrap_or(7)
        .max(1);
    let dir = std::env::temp_dir().join(format!("pingpong-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let (mut pd_ns, mut bare_ns) = (Vec::new(), Vec::new());
    for run in 0..runs {
        // A fresh control region per run: a killed PD leaves its record (pending bits, sleeping
        // flag) behind.
        let control_path = dir.join(format!("control-{run}"));
        let _control = ControlRegion::create(&control_path, 2).expect("control region");
        let mut pd_envs = Vec::new();
        for (name, index, peer) in [("ping", 0, 1), ("pong", 1, 0)] {
            let mut m = Manifest::new(name, index, &control_path);
            m.channels.push(ChannelEnd {
                id: 0,
                peer,
                peer_id: 0,
                notify: true,
                pp: false,
            });
            let path = dir.join(format!("{name}-{run}.manifest"));
            m.write(&path).expect("manifest");
            pd_envs.push(vec![(MANIFEST_ENV.to_string(), path.display().to_string())]);
        }
        // Pong must not be first in the list: ping's stderr carries the result.
        let pd = run_pair([pd_envs[0].clone(), pd_envs[1].clone()]);

        let bare_path = dir.join(format!("bare-{run}"));
        std::fs::File::create(&bare_path)
            .and_then(|f| f.set_len(4096))
            .expect("bare file");
        let bare_env = |role: &str| {
            vec![(
                BARE_ENV.to_string(),
                format!("{role}:{}", bare_path.display()),
            )]
        };
        let bare = run_pair([bare_env("ping"), bare_env("pong")]);
        let parse = |result: &str, prefix: &str| -> f64 {
            result
                .strip_prefix(prefix)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no result from the {prefix}run: {result:?}"))
        };
        pd_ns.push(parse(&pd, "pd "));
        bare_ns.push(parse(&bare, "bare "));
    }
    let _ = std::fs::remove_dir_all(&dir);

    let ratio = median_min(&mut pd_ns.clone()).0 / median_min(&mut bare_ns.clone()).0;
    println!(
        "round trips: {} per run, {runs} runs (PD and bare runs alternate)",
        round_trips()
    );
    println!("microkit host notify ping-pong: {}", summary(&mut pd_ns));
    println!("bare futex ping-pong:           {}", summary(&mut bare_ns));
    println!("ratio of medians (PD / bare):   {ratio:.2}");
}
