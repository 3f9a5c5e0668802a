//! The real echo system (system.xml) in host mode on a private virtual LAN, for the end-to-end
//! and fault-injection tests: start it, read its console, drive load from the peer namespace,
//! read its counters.
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netvm::demo::Lan;
use netvm::observe::{render_pools, render_stats, RunView};
use netvm_api::stats::Snapshot;

/// The static addresses of both clients of system.xml on the test LAN (`--echo-ips`).
pub const BOTH_CLIENTS: &str = "client0=10.0.0.10/24,client1=10.0.0.11/24";
/// The console lines of system.xml once the driver and both echo clients are up.
pub const ALL_UP: [&str; 3] = [
    "uio-driver: ready",
    "client0: echo server up",
    "client1: echo server up",
];

/// The `netvm run` options of a system whose PDs are restarted when they fault, three times
/// at most (besides `--echo-ips` [`BOTH_CLIENTS`]).
pub const RESTART_3: [&str; 6] = [
    "--echo-ips",
    BOTH_CLIENTS,
    "--on-fault",
    "restart",
    "--max-restarts",
    "3",
];

/// virt_tx's counters of what it refused from a client (`client<i>.<name>`).
pub const VIRT_TX_REFUSALS: [&str; 5] = [
    "bad_length",
    "bad_oid",
    "bad_offset",
    "duplicates",
    "peer_misbehaviour",
];

/// For a test that runs a system on a virtual LAN: `None` when network namespaces cannot be
/// made here (the test is reported skipped as `test` and returns), else the guard that runs
/// the systems of this test binary one at a time (they share the CPU and /dev/shm).
pub fn exclusive(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !can_make_namespaces() {
        testkit::skip(test, "cannot create network namespaces (needs root)");
        return None;
    }
    Some(one_at_a_time())
}

/// The guard that runs the systems of this test binary one at a time.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether network namespaces can be made here (root).
pub fn can_make_namespaces() -> bool {
    // Unique per call: the tests of one binary probe concurrently, and a name another thread
    // is probing with would read as "cannot" (and skip a test that should have run).
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("nvprobe{}.{n}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    ok
}

/// Builds every host PD of system.xml (and the hostile client) into this test's target
/// directory.
pub fn system_bins() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--release", "--bins", "--target-dir"])
        .arg(&target);
    for p in [
        "virt-rx",
        "virt-tx",
        "copier",
        "echo-server",
        "timer",
        "idle",
        "uio-driver",
        "hostile-client",
        "vmm",
    ] {
        cmd.args(["-p", p]);
    }
    let status = cmd.current_dir(super::workspace()).status().expect("cargo");
    assert!(status.success(), "building the system's host PDs failed");
    target.join("release")
}

/// `netvm bench` from the peer namespace without the utilisation daemon; returns
/// (received bit/s, bad packets) of the CSV row.
pub fn echo_check_at(peer: &str, target: &str, proto: &str, rate: &str, secs: &str) -> (u64, u64) {
    let size = if proto == "udp" { "1472" } else { "1460" };
    let out = Lan::exec(peer, Path::new(env!("CARGO_BIN_EXE_netvm")))
        .args([
            "bench", "--target", target, "--proto", proto, "--size", size, "--rates", rate,
        ])
        .args([
            "--warmup",
            "200ms",
            "--duration",
            secs,
            "--cooldown",
            "200ms",
            "--flows",
            "2",
        ])
        .args(["--no-util", "--quiet"])
        .output()
        .expect("netvm bench");
    assert!(
        out.status.success(),
        "bench {proto} {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no CSV row: {text}"))
        .split(',')
        .filter_map(|f| f.parse::<f64>().ok().map(|v| v as u64))
        .collect();
    (row[1], row[9])
}

/// A short echo check at 20 Mb/s.
pub fn echo_check(peer: &str, target: &str, proto: &str) -> (u64, u64) {
    echo_check_at(peer, target, proto, "20M", "1s")
}

/// Two pings from `peer` to `target`.
pub fn ping(peer: &str, target: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", peer, "ping", "-c", "2", "-i", "0.2", "-W", "2", target,
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pid of the PD process of the run in `run_dir` whose manifest names it `pd` (runner's PD
/// processes carry NETVM_PD_MANIFEST, a file in their run directory, in their environment;
/// other systems may be running on the machine).
pub fn pd_pid(run_dir: &Path, pd: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let Some(manifest) = env
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix("NETVM_PD_MANIFEST="))
            .filter(|m| Path::new(m).starts_with(run_dir))
        else {
            continue;
        };
        let text = std::fs::read_to_string(manifest).unwrap_or_default();
        if text.lines().any(|l| l == format!("name {pd}")) {
            return Some(pid);
        }
    }
    None
}

/// A system started with `netvm run` in the LAN's system namespace, driver on `sys0`.
pub struct Running {
    /// The LAN (dropping it stops everything).
    pub lan: Lan,
    /// The runner's pid.
    pub runner: u32,
    rx: mpsc::Receiver<String>,
    /// Every console line so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `system` (PDs from `bins`) with `--on-fault continue`, the MACs of system.macs
    /// (unless `args` bring their own `--sections` or `--sdfgen-dir`) and `args`, and waits for
    /// each of `ready`.
    pub fn start(
        tag: &str,
        system: &Path,
        bins: &Path,
        args: &[&OsStr],
        ready: &[&str],
    ) -> Running {
        let root = super::workspace();
        let mut lan = Lan::create(&format!("{tag}{}", std::process::id())).expect("virtual LAN");
        let mut cmd = Lan::exec(&lan.sys, Path::new(env!("CARGO_BIN_EXE_netvm")));
        cmd.arg("run").arg(system).arg("--bin-dir").arg(bins);
        if !args
            .iter()
            .any(|a| *a == "--sections" || *a == "--sdfgen-dir")
        {
            cmd.arg(format!(
                "--net-macs=@{}",
                root.join("system.macs").display()
            ));
        }
        cmd.args(["--driver-vm-iface", "sys0", "--timeout", "150s"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = lan.spawn("netvm run", cmd).expect("start the system");
        let runner = child.id();
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut running = Running {
            lan,
            runner,
            rx,
            seen: Vec::new(),
        };
        for line in ready {
            running.wait_for(line, Duration::from_secs(30));
        }
        running
    }

    /// Starts the workspace's system.xml (its PDs built by [`system_bins`]) like [`start`].
    ///
    /// [`start`]: Running::start
    pub fn echo_system(tag: &str, args: &[&OsStr], ready: &[&str]) -> Running {
        let system = super::workspace().join("system.xml");
        Running::start(tag, &system, &system_bins(), args, ready)
    }

    /// Starts the workspace's system.xml with [`RESTART_3`] and waits for [`ALL_UP`].
    pub fn restarting(tag: &str) -> Running {
        let args: Vec<&OsStr> = RESTART_3.iter().map(OsStr::new).collect();
        Running::echo_system(tag, &args, &ALL_UP)
    }

    /// Asserts that no console line so far contains any of `signs` (say "panicked").
    pub fn assert_console_free_of(&self, signs: &[&str]) {
        assert!(
            !self
                .seen
                .iter()
                .any(|l| signs.iter().any(|s| l.contains(s))),
            "a PD failed ({signs:?}):\n{}",
            self.seen.join("\n")
        );
    }

    /// Asserts that each PD of `pds` still has its process.
    pub fn assert_alive(&self, pds: &[&str]) {
        for pd in pds {
            assert!(self.pd_pid(pd).is_some(), "{pd} is gone");
        }
    }

    /// Waits up to `limit` for a console line for which `pred` holds.
    pub fn wait_line(&mut self, what: &str, limit: Duration, mut pred: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + limit;
        while !self.seen.iter().any(|l| pred(l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} from the system; it printed:\n{}",
                self.seen.join("\n")
            );
            if let Ok(line) = self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                self.seen.push(line);
            }
        }
    }

    /// Waits up to `limit` until `n` console lines contain `what`.
    pub fn wait_count(&mut self, what: &str, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.seen.iter().filter(|l| l.contains(what)).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not {n} lines with '{what}' from the system; it printed:\n{}",
                self.seen.join("\n")
            );
            if let Ok(line) = self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                self.seen.push(line);
            }
        }
    }

    /// Waits up to `limit` for a console line containing `what`.
    pub fn wait_for(&mut self, what: &str, limit: Duration) {
        self.wait_line(&format!("'{what}'"), limit, |l| l.contains(what));
    }

    /// The running system seen from outside.
    pub fn view(&self) -> RunView {
        RunView::of_runner(Path::new("/dev/shm"), self.runner).expect("the run's directory")
    }

    /// The pid of PD `pd` of this system.
    pub fn pd_pid(&self, pd: &str) -> Option<i32> {
        pd_pid(self.view().dir(), pd)
    }

    /// The peer namespace.
    pub fn peer(&self) -> String {
        self.lan.peer.clone()
    }
}

/// PD `pd`'s counters, now.
pub fn counters(view: &RunView, pd: &str) -> Snapshot {
    // A PD publishes its first snapshot when it first runs; right after start-up (or on a
    // loaded machine) it may not have yet, so wait a little for it rather than fail.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = view.stats().into_iter().find(|c| c.pd == pd);
        match found.map(|c| c.snapshot) {
            Some(Ok(snapshot)) => return snapshot,
            Some(Err(e)) if Instant::now() >= deadline => panic!("{pd}'s counters: {e}"),
            None if Instant::now() >= deadline => panic!("{pd} publishes no counters"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `after - before` of counter `name`.
pub fn delta(before: &Snapshot, after: &Snapshot, name: &str) -> u64 {
    let get = |s: &Snapshot| s.get(name).unwrap_or_else(|| panic!("no counter {name}"));
    get(after) - get(before)
}

/// Every buffer of the pools named (all when `pools` is empty) back in a queue once the
/// system is idle.
pub fn assert_buffers_accounted(view: &RunView, when: &str, pools: &[&str]) {
    let wanted = |name: &str| pools.is_empty() || pools.contains(&name);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = view.pools().expect("pools");
        let chosen: Vec<_> = all.into_iter().filter(|p| wanted(&p.name)).collect();
        if chosen.iter().all(|p| p.balanced()) {
            assert!(!chosen.is_empty(), "no pool named {pools:?}");
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{when}: sDDF buffers missing:\n{}{}",
                render_pools(&chosen),
                render_stats(&view.stats())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
