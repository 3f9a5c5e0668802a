//! `netvm demo`: the main job. On one Linux machine it builds a private virtual LAN, runs the
//! echo system of `system.xml` in host mode on it, and benchmarks it against a Linux kernel echo
//! on the same kind of link, in the same run.
//!
//! ```text
//!  ns <p>-sys                     ns <p>-peer                    ns <p>-ref
//!  netvm run system.xml           netvm bench                    netvm kernel-echo
//!  (uio_driver_host on sys0) ---- peer0 10.0.0.1/24              10.0.1.10/24 on ref0
//!   client0 10.0.0.10             peer1 10.0.1.1/24 ------------ ref0
//!   client1 10.0.0.11
//! ```
//!
//! Offloads (checksum, TSO/GSO/GRO) are off on every veth end: a veth hands partially
//! checksummed and merged frames to a raw socket, which a real NIC would not. Everything is
//! torn down at the end, on error, and on Ctrl-C / SIGTERM (namespaces, processes, shm files).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set by SIGINT / SIGTERM; every wait checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The addresses of the virtual LAN, in one place.
pub mod lan {
    /// The peer's address on the system's link.
    pub const PEER: &str = "10.0.0.1/24";
    /// The echo clients' addresses, in client order.
    pub const CLIENTS: [&str; 2] = ["10.0.0.10", "10.0.0.11"];
    /// Prefix length of the system's link.
    pub const PREFIX: u8 = 24;
    /// The peer's address on the reference link.
    pub const PEER_REF: &str = "10.0.1.1/24";
    /// The kernel echo's address.
    pub const KERNEL_ECHO: &str = "10.0.1.10";
}

/// What `netvm demo` does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The system description.
    pub system: PathBuf,
    /// The client MAC list file (`system.macs`).
    pub macs: PathBuf,
    /// Where CSV and SVG files go.
    pub out_dir: PathBuf,
    /// UDP rates (bit/s).
    pub udp_rates: Vec<u64>,
    /// TCP rates (bit/s).
    pub tcp_rates: Vec<u64>,
    /// Warm-up per point.
    pub warmup: Duration,
    /// Sampling per point.
    pub duration: Duration,
    /// Cool-down per point.
    pub cooldown: Duration,
    /// Parallel flows.
    pub flows: u32,
    /// Where the virtualisers write their pcap files (`netvm run --pcap`), if anywhere.
    pub pcap: Option<PathBuf>,
}

/// A failed demo step (`netvm demo` and `netvm sel4-demo`; the caller prefixes its name).
#[derive(Debug)]
pub struct DemoError(pub String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, DemoError>;

pub(crate) fn err(what: impl std::fmt::Display) -> DemoError {
    DemoError(what.to_string())
}

pub(crate) fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err(err("interrupted"))
    } else {
        Ok(())
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set [`INTERRUPTED`] instead of killing the process, so the
/// tear-down runs.
pub(crate) fn catch_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        #[allow(unsafe_code)]
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| err(format!("sigaction: {e}")))?;
    }
    Ok(())
}

pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| err(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

pub(crate) fn ip(args: &[&str]) -> Result<()> {
    run_cmd(Command::new("ip").args(args))
}

/// The virtual LAN and every process on it; dropping it tears everything down.
pub struct Lan {
    /// Namespace of the system (its driver's veth end).
    pub sys: String,
    /// Namespace of the load generator.
    pub peer: String,
    /// Namespace of the kernel reference echo.
    pub reference: String,
    children: Vec<(String, Child)>,
}

impl Lan {
    /// Creates the three namespaces and two veth pairs, offloads off.
    pub fn create(prefix: &str) -> Result<Lan> {
        let lan = Lan {
            sys: format!("{prefix}-sys"),
            peer: format!("{prefix}-peer"),
            reference: format!("{prefix}-ref"),
            children: Vec::new(),
        };
        for ns in [&lan.sys, &lan.peer, &lan.reference] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link", "add", "sys0", "netns", &lan.sys, "type", "veth", "peer", "name", "peer0",
            "netns", &lan.peer,
        ])?;
        ip(&[
            "link",
            "add",
            "ref0",
            "netns",
            &lan.reference,
            "type",
            "veth",
            "peer",
            "name",
            "peer1",
            "netns",
            &lan.peer,
        ])?;
        ip(&["-n", &lan.peer, "addr", "add", lan::PEER, "dev", "peer0"])?;
        ip(&[
            "-n",
            &lan.peer,
            "addr",
            "add",
            lan::PEER_REF,
            "dev",
            "peer1",
        ])?;
        let ref_addr = format!("{}/{}", lan::KERNEL_ECHO, lan::PREFIX);
        ip(&[
            "-n",
            &lan.reference,
            "addr",
            "add",
            &ref_addr,
            "dev",
            "ref0",
        ])?;
        for (ns, dev) in [
            (&lan.sys, "sys0"),
            (&lan.peer, "peer0"),
            (&lan.peer, "peer1"),
            (&lan.reference, "ref0"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            run_cmd(
                Command::new("ip")
                    .args(["netns", "exec", ns, "ethtool", "-K", dev])
                    .args([
                        "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
                    ]),
            )?;
        }
        Ok(lan)
    }

    /// A command run inside namespace `ns`.
    pub fn exec(ns: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Starts `cmd` and keeps it for the tear-down.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<&mut Child> {
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("starting {name}: {e}")))?;
        self.children.push((name.to_owned(), child));
        Ok(&mut self.children.last_mut().expect("just pushed").1)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            // SIGTERM first: the runner then stops its PDs and removes its shm files.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in self.children.iter_mut() {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.sys, &self.peer, &self.reference] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One CSV row as the bench wrote it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Point {
    /// Requested, bit/s.
    pub requested: u64,
    /// Received, bit/s.
    pub received: u64,
    /// Sent, bit/s.
    pub sent: u64,
    /// Median RTT, µs.
    pub median_rtt: u64,
    /// Bad packets.
    pub bad: u64,
    /// Packets sent over the whole point (`netvm bench --counts`).
    pub sent_packets: u64,
    /// Of those, never echoed by the end of the drain.
    pub lost_packets: u64,
    /// 99th percentile RTT, µs (`netvm bench --counts`).
    pub p99_rtt: u64,
    /// Nonzero when the point may show the load generator's limit rather than the system's
    /// (`netvm bench --counts` Generator_Limited).
    pub generator_limited: u64,
    /// Idle units from the utilisation daemon over the sampling phase (0 without one).
    pub idle: u64,
    /// Total units from the utilisation daemon over the sampling phase (0 without one).
    pub total: u64,
}

impl Point {
    /// Loss over the whole point, percent: packets never echoed, as the bench counted them.
    pub fn loss_percent(&self) -> f64 {
        if self.sent_packets == 0 {
            return 100.0;
        }
        100.0 * self.lost_packets as f64 / self.sent_packets as f64
    }

    /// Busy share of the echo side's CPU over the sampling phase, percent, if it was measured.
    pub fn utilisation_percent(&self) -> Option<f64> {
        (self.total > 0).then(|| 100.0 * (1.0 - self.idle as f64 / self.total as f64))
    }
}

/// Adds the `--counts` file's packet counts to the CSV rows of the same sweep.
pub(crate) fn add_counts(points: &mut [Point], text: &str) {
    for line in text.lines().skip(1) {
        let f: Vec<u64> = line
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        if let [requested, sent, lost, ..] = f[..] {
            if let Some(p) = points.iter_mut().find(|p| p.requested == requested) {
                p.sent_packets = sent;
                p.lost_packets = lost;
                p.p99_rtt = f.get(5).copied().unwrap_or(0);
                p.generator_limited = f.get(6).copied().unwrap_or(0);
            }
        }
    }
}

pub(crate) fn parse_csv(text: &str) -> Vec<Point> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f.get(i)?.trim().parse::<u64>().ok();
            Some(Point {
                requested: n(0)?,
                received: n(1)?,
                sent: n(2)?,
                median_rtt: n(8)?,
                bad: n(9)?,
                idle: n(10).unwrap_or(0),
                total: n(11).unwrap_or(0),
                ..Point::default()
            })
        })
        .collect()
}

pub(crate) fn wait_child(
    child: &mut Child,
    what: &str,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Err(e) = check_interrupt() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        if let Some(status) = child.try_wait().map_err(|e| err(format!("{what}: {e}")))? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(err(format!("{what} did not finish within {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How each `netvm bench` point runs, and where its files go.
pub(crate) struct BenchSettings<'a> {
    /// Where the CSV, counts and SVG files go.
    pub out_dir: &'a Path,
    /// Warm-up per point.
    pub warmup: Duration,
    /// Sampling per point.
    pub duration: Duration,
    /// Cool-down per point.
    pub cooldown: Duration,
    /// Parallel flows.
    pub flows: u32,
    /// Whether to ask the echo side's ipbench utilisation daemon (port 1237).
    pub util: bool,
    /// Instead, take utilisation from this process and its descendants (`--util-pids`): the
    /// host-mode system, whose cores the load generator shares.
    pub util_pid: Option<u32>,
    /// Whether the bench measures its own ceiling on loopback first (`--no-calibrate` if not).
    pub calibrate: bool,
}

/// Payload bytes per packet: UDP 1472 B and TCP 1460 B fill a 1500-byte MTU.
pub(crate) fn payload_size(proto: &str) -> &'static str {
    if proto == "udp" {
        "1472"
    } else {
        "1460"
    }
}

/// Runs `netvm bench` at `rates` against `target` from namespace `ns`, writing
/// `<label>-<proto>.csv`, `-counts.csv`, `.svg` and `.log` (its stderr); returns the points and
/// the CSV text.
pub(crate) fn bench_points(
    ns: &str,
    netvm: &Path,
    settings: &BenchSettings,
    target: &str,
    proto: &str,
    rates: &[u64],
    label: &str,
) -> Result<(Vec<Point>, String)> {
    let out_dir = settings.out_dir;
    let csv = out_dir.join(format!("{label}-{proto}.csv"));
    let svg = out_dir.join(format!("{label}-{proto}.svg"));
    let counts = out_dir.join(format!("{label}-{proto}-counts.csv"));
    let log_path = out_dir.join(format!("{label}-{proto}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| err(format!("{}: {e}", log_path.display())))?;
    let rates_arg: Vec<String> = rates.iter().map(u64::to_string).collect();
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let mut cmd = Lan::exec(ns, netvm);
    cmd.args(["bench", "--target", target, "--proto", proto])
        .args(["--size", payload_size(proto)])
        .args(["--rates", &rates_arg.join(",")])
        .args(["--warmup", &secs(settings.warmup)])
        .args(["--duration", &secs(settings.duration)])
        .args(["--cooldown", &secs(settings.cooldown)])
        .args(["--flows", &settings.flows.to_string()])
        .arg("--csv")
        .arg(&csv)
        .arg("--svg")
        .arg(&svg)
        .arg("--counts")
        .arg(&counts)
        .arg("--quiet")
        .args((!settings.calibrate).then_some("--no-calibrate"))
        .args(match (settings.util_pid, settings.util) {
            (Some(pid), _) => vec!["--util-pids".to_string(), pid.to_string()],
            (None, true) => vec![],
            (None, false) => vec!["--no-util".to_string()],
        })
        .stdout(Stdio::null())
        .stderr(log);
    let mut child = cmd.spawn().map_err(|e| err(format!("netvm bench: {e}")))?;
    let per_point =
        settings.warmup + settings.duration + settings.cooldown + Duration::from_secs(15);
    let status = wait_child(&mut child, "netvm bench", per_point * rates.len() as u32)?;
    if !status.success() {
        let said = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(err(format!(
            "netvm bench against {target} ({proto}) failed ({status}): {}",
            said.trim()
        )));
    }
    let text = std::fs::read_to_string(&csv).map_err(|e| err(format!("{}: {e}", csv.display())))?;
    let mut points = parse_csv(&text);
    let counted =
        std::fs::read_to_string(&counts).map_err(|e| err(format!("{}: {e}", counts.display())))?;
    add_counts(&mut points, &counted);
    Ok((points, text))
}

/// Runs one sweep from the peer namespace; returns its points.
fn sweep(
    lan: &Lan,
    netvm: &Path,
    settings: &BenchSettings,
    target: &str,
    proto: &str,
    rates: &[u64],
    label: &str,
) -> Result<Vec<Point>> {
    eprintln!(
        "netvm demo: {label} {proto}: {} points against {target}",
        rates.len()
    );
    let (points, text) = bench_points(&lan.peer, netvm, settings, target, proto, rates, label)?;
    print!("# {label} {proto} ({target})\n{text}");
    Ok(points)
}

/// The result of a demo.
#[derive(Debug, Default)]
pub struct Summary {
    /// (proto, system points, kernel points).
    pub sweeps: Vec<(String, Vec<Point>, Vec<Point>)>,
    /// The system's counters and buffer pools after the last point (`netvm stats` format).
    pub counters: String,
    /// Whether every sDDF buffer was back in a queue once the system was idle.
    pub buffers_accounted: bool,
}

impl Summary {
    /// The summary table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // The header is formatted with the widths of the rows, so the two line up.
        out.push_str(&format!(
            "{:5} {:>13}  {:>13} {:>13} {:>5}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {}\n",
            "proto",
            "requested",
            "system rx",
            "kernel rx",
            "ratio",
            "sys loss%",
            "ker loss%",
            "sys RTT50",
            "sys RTT99",
            "ker RTT50",
            "ker RTT99",
            "bad"
        ));
        let mut limited = false;
        for (proto, sys, ker) in &self.sweeps {
            for (s, k) in sys.iter().zip(ker) {
                let mbps = |b: u64| b as f64 / 1e6;
                let mark = if s.generator_limited + k.generator_limited > 0 {
                    limited = true;
                    "*"
                } else {
                    " "
                };
                out.push_str(&format!(
                    "{proto:5} {:8.0} Mb/s{mark} {:8.1} Mb/s {:8.1} Mb/s {:5.2}  {:9.3}  {:9.3}  {:6} us  {:6} us  {:6} us  {:6} us  {}\n",
                    mbps(s.requested),
                    mbps(s.received),
                    mbps(k.received),
                    s.received as f64 / k.received.max(1) as f64,
                    s.loss_percent(),
                    k.loss_percent(),
                    s.median_rtt,
                    s.p99_rtt,
                    k.median_rtt,
                    k.p99_rtt,
                    s.bad + k.bad,
                ));
            }
            let lossless = |pts: &[Point]| {
                pts.iter()
                    .filter(|p| p.loss_percent() < 0.1)
                    .map(|p| p.requested)
                    .max()
                    .unwrap_or(0)
            };
            if proto == "udp" {
                let (s, k) = (lossless(sys), lossless(ker));
                out.push_str(&format!(
                    "udp   highest rate with < 0.1% loss: system {:.0} Mb/s, kernel {:.0} Mb/s, ratio {:.2}\n",
                    s as f64 / 1e6,
                    k as f64 / 1e6,
                    s as f64 / k.max(1) as f64
                ));
            }
        }
        if limited {
            out.push_str(
                "* the bench sent short of the requested rate or was asked for more than its \
                 calibrated ceiling: that row may show the load generator's limit, not the echo's\n",
            );
        }
        out
    }
}

/// Creates `dir` if needed and checks that files can be written in it, so a run does not fail
/// after its sweeps (for example on a folder an earlier root run left behind).
pub fn check_writable(dir: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create {}: {e} (pass --out DIR)", dir.display()))?;
    let probe = dir.join(format!(".netvm-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "cannot write to {}: {e} (an earlier run as another user? pass --out DIR)",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Waits until the runner has printed every line in `wanted` (in any order).
fn wait_ready(lines: &mpsc::Receiver<String>, wanted: &[&str], limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut missing: Vec<&str> = wanted.to_vec();
    while !missing.is_empty() {
        check_interrupt()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(err(format!(
                "the system did not print {missing:?} within {limit:?}"
            )));
        }
        match lines.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                eprintln!("  {line}");
                missing.retain(|w| !line.contains(w));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(err(format!(
                    "the system stopped before printing {missing:?}"
                )))
            }
        }
    }
    Ok(())
}

/// Whether this process is root (in its user namespace).
pub fn is_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

/// Set in the re-executed demo inside its user namespace (so it never re-executes twice).
pub const USERNS_ENV: &str = "NETVM_DEMO_USERNS";

/// For a user who is not root: runs this same command again inside a new unprivileged user
/// namespace (util-linux `unshare --user --map-root-user`) with its own mount and network
/// namespaces and a private `/run`, where it is root for everything the demo creates: network
/// namespaces, veth pairs, raw sockets. Returns `None` when that is not possible here (already
/// inside one, or the kernel or `unshare` refuses), so the caller reports the need for root.
pub fn run_in_user_namespace() -> Option<std::process::ExitStatus> {
    if std::env::var_os(USERNS_ENV).is_some() {
        return None;
    }
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    eprintln!("netvm: not root: running in an unprivileged user namespace");
    Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--net",
            "--propagation",
            "slave",
            "sh",
            "-c",
            // `ip netns` keeps its namespaces under /run/netns: a private /run to write there.
            "mount -t tmpfs tmpfs /run && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(USERNS_ENV, "1")
        .status()
        .ok()
}

/// Runs the whole demo; see the module docs.
pub fn run(opts: &DemoOptions) -> Result<Summary> {
    catch_signals()?;
    if !is_root() {
        return Err(err(
            "needs root (network namespaces and veth pairs), or an unprivileged user namespace \
             (see run_in_user_namespace); run it with sudo",
        ));
    }
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| err(format!("{}: {e}", opts.out_dir.display())))?;
    let netvm = std::env::current_exe().map_err(|e| err(format!("current_exe: {e}")))?;
    let bin_dir = netvm.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut lan = Lan::create(&format!("nvd{}", std::process::id()))?;

    // The system, in its namespace, with the driver on sys0.
    let ips: Vec<String> = lan::CLIENTS
        .iter()
        .enumerate()
        .map(|(i, a)| format!("client{i}={a}/{}", lan::PREFIX))
        .collect();
    let mut cmd = Lan::exec(&lan.sys, &netvm);
    cmd.arg("run")
        .arg(&opts.system)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg(format!("--net-macs=@{}", opts.macs.display()))
        .args(["--echo-ips", &ips.join(","), "--driver-vm-iface", "sys0"])
        .args(
            opts.pcap
                .iter()
                .flat_map(|d| [std::ffi::OsStr::new("--pcap"), d.as_os_str()]),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let system = lan.spawn("netvm run", cmd)?;
    let runner_pid = system.id();
    let (tx, rx) = mpsc::channel();
    let out: Box<dyn std::io::Read + Send> = Box::new(
        system
            .stdout
            .take()
            .ok_or_else(|| err("no runner stdout"))?,
    );
    let errs: Box<dyn std::io::Read + Send> = Box::new(
        system
            .stderr
            .take()
            .ok_or_else(|| err("no runner stderr"))?,
    );
    for stream in [out, errs] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    wait_ready(
        &rx,
        &[
            "uio-driver: ready",
            "client0: echo server up",
            "client1: echo server up",
        ],
        Duration::from_secs(30),
    )?;
    // Keep draining the runner's output so it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});

    // The reference: a kernel echo on the same kind of link.
    let mut cmd = Lan::exec(&lan.reference, &netvm);
    cmd.args([
        "kernel-echo",
        "--bind",
        lan::KERNEL_ECHO,
        "--util-port",
        "1237",
    ])
    .stdout(Stdio::null());
    lan.spawn("netvm kernel-echo", cmd)?;
    std::thread::sleep(Duration::from_millis(300));

    let mut summary = Summary::default();
    for (proto, rates) in [("udp", &opts.udp_rates), ("tcp", &opts.tcp_rates)] {
        if rates.is_empty() {
            continue;
        }
        // The system's utilisation is its own processes' CPU time (the bench shares the cores);
        // the kernel echo's comes from its ipbench daemon (/proc/stat, the whole machine).
        let settings = |util_pid| BenchSettings {
            out_dir: &opts.out_dir,
            warmup: opts.warmup,
            duration: opts.duration,
            cooldown: opts.cooldown,
            flows: opts.flows,
            util: true,
            util_pid,
            calibrate: true,
        };
        let sys_settings = settings(Some(runner_pid));
        let sys = sweep(
            &lan,
            &netvm,
            &sys_settings,
            lan::CLIENTS[0],
            proto,
            rates,
            "system",
        )?;
        let ker = sweep(
            &lan,
            &netvm,
            &settings(None),
            lan::KERNEL_ECHO,
            proto,
            rates,
            "kernel",
        )?;
        summary.sweeps.push((proto.to_owned(), sys, ker));
    }
    let view = crate::observe::RunView::of_runner(Path::new("/dev/shm"), runner_pid)
        .map_err(|e| err(format!("the system's counters: {e}")))?;
    let pools = view
        .wait_balanced(Duration::from_secs(3))
        .map_err(|e| err(format!("the system's buffer pools: {e}")))?;
    summary.buffers_accounted = pools.is_ok();
    let pools = pools.unwrap_or_else(|p| p);
    summary.counters = crate::observe::render_stats(&view.stats());
    summary.counters += &crate::observe::render_pools(&pools);
    drop(lan);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_comes_from_the_bench_counts_not_the_rates() {
        let csv = "header\n1000000000,1000010083,999977700,1472,1,2,3,4.00,318,0,0,0\n";
        let mut points = parse_csv(csv);
        assert_eq!(points.len(), 1);
        // Received above sent (rates over the sampling phase) hides 96 lost packets.
        add_counts(
            &mut points,
            "Requested_Throughput,Sent_Packets,Lost_Packets,Late_Packets,Bad_Packets\n1000000000,509520,96,0,0\n",
        );
        let loss = points[0].loss_percent();
        assert!((loss - 0.018_84).abs() < 1e-4, "{loss}");
        // Without counts, the point says nothing came back rather than claiming no loss.
        assert_eq!(parse_csv(csv)[0].loss_percent(), 100.0);
    }

    #[test]
    fn the_summary_header_lines_up_with_its_columns() {
        let csv = "h\n1000000000,990000000,999977700,1472,1,2,3,4.00,318,0,0,0\n";
        let summary = Summary {
            sweeps: vec![("udp".into(), parse_csv(csv), parse_csv(csv))],
            ..Summary::default()
        };
        let table = summary.table();
        let mut lines = table.lines();
        let (header, row) = (lines.next().unwrap(), lines.next().unwrap());
        // Each header label ends where its column's values end.
        let ends = |line: &str| -> Vec<usize> {
            let b = line.as_bytes();
            (0..b.len())
                .filter(|&i| b[i] != b' ' && (i + 1 == b.len() || b[i + 1] == b' '))
                .collect()
        };
        let (h, r) = (ends(header), ends(row));
        // Values with units end at the unit ("Mb/s", "us"), as do their labels.
        for label in [
            "requested",
            "system rx",
            "kernel rx",
            "ratio",
            "sys loss%",
            "ker loss%",
            "sys RTT50",
            "sys RTT99",
            "ker RTT50",
            "ker RTT99",
        ] {
            let end = header.find(label).unwrap() + label.len() - 1;
            assert!(h.contains(&end));
            assert!(
                r.contains(&end),
                "{label:?} ends at {end}, no value ends there:\n{header}\n{row}"
            );
        }
        // The last column is left-aligned.
        assert_eq!(header.find("bad"), row.rfind(' ').map(|i| i + 1));
        // A generator-limited row is marked after its requested rate, and explained below.
        let mut limited = parse_csv(csv);
        add_counts(&mut limited, "h\n1000000000,100,0,0,0,900,2\n");
        assert_eq!(limited[0].generator_limited, 2);
        assert_eq!(limited[0].p99_rtt, 900);
        let table = Summary {
            sweeps: vec![("udp".into(), limited, parse_csv(csv))],
            ..Summary::default()
        }
        .table();
        assert!(table.contains("1000 Mb/s* "), "{table}");
        assert!(table.contains("* the bench sent short"), "{table}");
        assert!(table.contains("    900 us"), "{table}");
    }
}
