//! `netvm sel4-demo`: the main job. Builds the seL4 image of `system.xml` (`make
//! MICROKIT_CONFIG=release`), boots it on QEMU, and measures it against Linux alone on the same
//! emulated machine, in the same run:
//!
//! ```text
//!  ns <p>-0: tap0 10.0.0.1/24 ── QEMU: seL4 image (driver VM + PDs), client0 10.0.0.10, client1 .11
//!  ns <p>-1: tap0 10.0.0.1/24 ── QEMU: the guest's kernel alone, /bin/kernel-echo on 10.0.0.20
//!  ns <p>-2: tap0 10.0.0.1/24 ── QEMU: --peer-image (any Microkit echo image), DHCP from dnsmasq
//! ```
//!
//! Every machine is booted by the Makefile (`make qemu`, `make qemu-reference`: one QEMU command
//! line, so the reference has the seL4 image's machine and NIC options), on a tap in a private
//! network namespace of its own (never slirp), one after the other; once it answers ping and UDP
//! echo it is paused over QMP (`stop`), so an idle machine costs no host CPU while another is
//! measured. The sweeps then alternate per point: for each rate, each machine in turn is
//! resumed, measured with `netvm bench` from its namespace, and paused again. One table of every
//! point comes out at the end (and `summary.csv`, per-machine CSV, counts and SVG files).
//!
//! Everything (QEMU process groups, dnsmasq, namespaces) is torn down at the end, on error and
//! on Ctrl-C / SIGTERM.

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bench::{csv, svg};
use crate::demo::{
    bench_points, check_interrupt, err, lan, payload_size, run_cmd, wait_child, BenchSettings, Lan,
    Point, Result,
};
use crate::qemu_stats::Qmp;

/// The host side of every machine's tap (each tap is in a namespace of its own).
const HOST_IP: &str = "10.0.0.1/24";
/// The tap's name in each namespace.
const TAP: &str = "tap0";
/// The reference's static address (`make qemu-reference REF_IP=...`).
const REFERENCE_IP: &str = "10.0.0.20";
/// What dnsmasq leases to a peer image's clients.
const DHCP_RANGE: &str = "10.0.0.100,10.0.0.150,255.255.255.0,1h";
/// From QEMU's start until every echo address answers (a loaded 2-core host under TCG takes
/// 20–60 s for the seL4 image).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// After a peer's first DHCP lease, how long to wait for its other clients' leases.
const MORE_LEASES: Duration = Duration::from_secs(20);

/// What `netvm sel4-demo` does.
#[derive(Debug, Clone)]
pub struct Sel4DemoOptions {
    /// The workspace whose Makefile builds and boots the image.
    pub workspace: PathBuf,
    /// Where CSV, SVG, console and summary files go.
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
    /// Build the image first (`make MICROKIT_CONFIG=release`).
    pub build: bool,
    /// Measure the reference (the guest kernel alone) too.
    pub reference: bool,
    /// Other Microkit echo images (plain or gzip'd) measured in the same run.
    pub peer_images: Vec<PathBuf>,
}

/// What a machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// `build/loader.img`: the seL4 system of `system.xml`.
    Sel4,
    /// The guest's kernel booted directly, running the kernel echo.
    Reference,
    /// Another Microkit image (already decompressed), addresses by DHCP.
    Peer(PathBuf),
}

/// One QEMU in its namespace; dropping it stops QEMU and dnsmasq and deletes the namespace.
struct Machine {
    /// Its name in the table.
    label: String,
    /// Its name in file names.
    file_label: String,
    kind: Kind,
    ns: String,
    qmp_path: PathBuf,
    qmp: Option<Qmp>,
    /// `make qemu...`, leader of the process group that QEMU is in.
    qemu: Option<Child>,
    dnsmasq: Option<Child>,
    console: Arc<Mutex<Vec<u8>>>,
    console_file: PathBuf,
    /// Echo addresses; the first is the one measured.
    targets: Vec<String>,
    /// Whether it answers the ipbench utilisation daemon (port 1237).
    util: bool,
}

impl Machine {
    fn console_tail(&self, lines: usize) -> String {
        let text = self
            .console
            .lock()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn qmp(&mut self) -> Result<&mut Qmp> {
        let label = &self.label;
        self.qmp
            .as_mut()
            .ok_or_else(|| err(format!("{label}: no QMP connection")))
    }

    fn pause(&mut self) -> Result<()> {
        let label = self.label.clone();
        self.qmp()?
            .pause()
            .map_err(|e| err(format!("{label}: pausing: {e}")))
    }

    fn resume(&mut self) -> Result<()> {
        let label = self.label.clone();
        self.qmp()?
            .resume()
            .map_err(|e| err(format!("{label}: resuming: {e}")))
    }

    /// Fails with the console's tail if QEMU has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(q) = self.qemu.as_mut() {
            if let Ok(Some(status)) = q.try_wait() {
                return Err(err(format!(
                    "{}: QEMU exited ({status}); console (also in {}):\n{}",
                    self.label,
                    self.console_file.display(),
                    self.console_tail(30)
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.qmp = None;
        if let Some(mut q) = self.qemu.take() {
            // make and QEMU share the process group whose leader make is.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(q.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = q.wait();
        }
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_file(&self.qmp_path);
        if let Ok(c) = self.console.lock() {
            let _ = std::fs::write(&self.console_file, &*c);
        }
    }
}

/// One row of the table: a machine's point (or why it has none).
#[derive(Debug, Clone)]
pub struct TableRow {
    /// The machine's name.
    pub system: String,
    /// `udp` or `tcp`.
    pub proto: String,
    /// Requested rate, bit/s.
    pub requested: u64,
    /// The point, or the error of its bench.
    pub point: std::result::Result<Point, String>,
}

/// The result of a run: every point of every machine, in measuring order.
#[derive(Debug, Default)]
pub struct Sel4Summary {
    /// The rows, grouped by proto and rate, machines in boot order within a rate.
    pub rows: Vec<TableRow>,
    /// The machine the "vs ref" column divides by, if measured.
    pub reference: Option<String>,
}

fn mbps(bps: u64) -> f64 {
    bps as f64 / 1e6
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

impl Sel4Summary {
    /// The echoed rate of the reference at this proto and rate.
    fn reference_received(&self, proto: &str, requested: u64) -> Option<u64> {
        let name = self.reference.as_deref()?;
        self.rows
            .iter()
            .find(|r| r.system == name && r.proto == proto && r.requested == requested)
            .and_then(|r| r.point.as_ref().ok())
            .map(|p| p.received)
    }

    /// The table: one line per machine and point. Loss is the bench's packet count (sent and
    /// never echoed), utilisation the echo side's busy share from its ipbench daemon.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<14} {:<5} {:>10} {:>12} {:>8} {:>11} {:>11} {:>6} {:>7}",
            "system",
            "proto",
            "requested",
            "echoed",
            "loss",
            "median RTT",
            "p99 RTT",
            "busy",
            "vs ref"
        );
        for r in &self.rows {
            let _ = write!(
                out,
                "{:<14} {:<5} {:>5.0} Mb/s ",
                r.system,
                r.proto.to_uppercase(),
                mbps(r.requested)
            );
            match &r.point {
                Ok(p) => {
                    let busy = p
                        .utilisation_percent()
                        .map_or_else(|| "-".to_string(), |u| format!("{u:.0}%"));
                    let vs = self
                        .reference_received(&r.proto, r.requested)
                        .filter(|_| self.reference.as_deref() != Some(r.system.as_str()))
                        .map_or_else(
                            || "-".to_string(),
                            |k| format!("{:.2}", p.received as f64 / k.max(1) as f64),
                        );
                    let _ = writeln!(
                        out,
                        "{:>7.1} Mb/s {:>7.3}% {:>11} {:>11} {:>6} {:>7}",
                        mbps(p.received),
                        p.loss_percent(),
                        ms(p.median_rtt),
                        ms(p.p99_rtt),
                        busy,
                        vs
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "bench failed: {e}");
                }
            }
        }
        out
    }

    /// The same rows as CSV (bit/s, percent, µs; empty fields where not measured).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "System,Proto,Packet_Size,Requested_Throughput,Receive_Throughput,Loss_Percent,\
             Median_RTT,P99_RTT,Busy_Percent,Sent_Packets,Lost_Packets,Error\n",
        );
        for r in &self.rows {
            let size = payload_size(&r.proto);
            match &r.point {
                Ok(p) => {
                    let busy = p
                        .utilisation_percent()
                        .map(|u| format!("{u:.1}"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{},{},{size},{},{},{:.4},{},{},{busy},{},{},",
                        r.system,
                        r.proto,
                        r.requested,
                        p.received,
                        p.loss_percent(),
                        p.median_rtt,
                        p.p99_rtt,
                        p.sent_packets,
                        p.lost_packets
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "{},{},{size},{},,,,,,,,\"{}\"",
                        r.system,
                        r.proto,
                        r.requested,
                        e.replace('"', "'")
                    );
                }
            }
        }
        out
    }
}

/// Checks up front that `dir` can be written (rather than after minutes of booting), and
/// returns it canonical.
fn check_writable(dir: &Path) -> Result<PathBuf> {
    crate::demo::check_writable(dir).map_err(err)?;
    std::fs::canonicalize(dir).map_err(|e| err(format!("{}: {e}", dir.display())))
}

/// `make -C <workspace> <args>` with output into `log`; on failure, the log's tail.
fn make(workspace: &Path, args: &[&str], log: &Path) -> Result<()> {
    let file = std::fs::File::create(log).map_err(|e| err(format!("{}: {e}", log.display())))?;
    let file2 = file
        .try_clone()
        .map_err(|e| err(format!("{}: {e}", log.display())))?;
    let mut child = Command::new("make")
        .arg("-C")
        .arg(workspace)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn()
        .map_err(|e| err(format!("make: {e}")))?;
    let status = wait_child(&mut child, "make", Duration::from_secs(3600))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        return Err(err(format!(
            "make {} failed ({status}); the end of {}:\n{}",
            args.join(" "),
            log.display(),
            lines[lines.len().saturating_sub(25)..].join("\n")
        )));
    }
    Ok(())
}

/// `FILE` itself, or for `FILE.gz` its decompressed copy in `out_dir`.
fn peer_image(file: &Path, out_dir: &Path, index: usize) -> Result<PathBuf> {
    let file = std::fs::canonicalize(file)
        .map_err(|e| err(format!("--peer-image {}: {e}", file.display())))?;
    if file.extension().is_none_or(|e| e != "gz") {
        return Ok(file);
    }
    let plain = out_dir.join(format!("peer{index}.img"));
    let out =
        std::fs::File::create(&plain).map_err(|e| err(format!("{}: {e}", plain.display())))?;
    run_cmd(Command::new("gzip").arg("-dc").arg(&file).stdout(out))?;
    Ok(plain)
}

/// The addresses in a dnsmasq lease file (`expiry mac ip name client-id` per line), sorted.
fn leased_addresses(text: &str) -> Vec<String> {
    let mut ips: Vec<std::net::Ipv4Addr> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips.iter().map(ToString::to_string).collect()
}

/// Pings `ip` from `ns` once a second until it answers or `deadline` passes.
fn wait_ping(m: &mut Machine, ip: &str, deadline: Instant) -> Result<()> {
    loop {
        check_interrupt()?;
        m.check_alive()?;
        let ok = Command::new("ip")
            .args([
                "netns", "exec", &m.ns, "ping", "-c", "1", "-W", "1", "-q", ip,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "{}: {ip} did not answer ping within {BOOT_TIMEOUT:?}; console (also in {}):\n{}",
                m.label,
                m.console_file.display(),
                m.console_tail(30)
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A short UDP echo check of `ip` (20 samples at 1 Mb/s). With `util`, also through the
/// utilisation daemon. Returns whether echoes came back.
fn udp_echoes(netvm: &Path, ns: &str, ip: &str, util: bool) -> Result<bool> {
    let mut cmd = Lan::exec(ns, netvm);
    cmd.args(["bench", "--target", ip, "--proto", "udp", "--rates", "1M"])
        .args(["--samples", "20", "--sample-timeout", "20s"])
        .args([
            "--warmup",
            "0s",
            "--cooldown",
            "0s",
            "--flows",
            "1",
            "--quiet",
        ])
        .args(if util { &[][..] } else { &["--no-util"][..] });
    let out = cmd.output().map_err(|e| err(format!("netvm bench: {e}")))?;
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(out.status.success()
        && text
            .lines()
            .filter(|l| l.starts_with("netvm bench: requested"))
            .any(|l| !l.contains(" 0 samples")))
}

/// Starts a machine and waits until every echo address answers ping and UDP echo; leaves it
/// paused.
fn boot(
    opts: &Sel4DemoOptions,
    out_dir: &Path,
    netvm: &Path,
    kind: Kind,
    index: usize,
    peer: usize,
    prefix: &str,
) -> Result<Machine> {
    let (label, file_label) = match &kind {
        Kind::Sel4 => ("seL4 netvm".to_string(), "sel4".to_string()),
        Kind::Reference => ("Linux alone".to_string(), "linux".to_string()),
        Kind::Peer(_) => (format!("peer {peer}"), format!("peer{peer}")),
    };
    let mut m = Machine {
        label,
        kind,
        ns: format!("{prefix}-{index}"),
        qmp_path: out_dir.join(format!("{file_label}.qmp")),
        qmp: None,
        qemu: None,
        dnsmasq: None,
        console: Arc::new(Mutex::new(Vec::new())),
        console_file: out_dir.join(format!("{file_label}-console.log")),
        targets: Vec::new(),
        util: true,
        file_label,
    };
    let t0 = Instant::now();
    let ns_arg = format!("NETNS={}", m.ns);
    let tap_arg = format!("TAP={TAP}");
    let host_arg = format!("HOST_IP={HOST_IP}");
    let qmp_arg = format!("QMP={}", m.qmp_path.display());
    // The Makefile's netns target: the namespace with its tap, up, host side addressed.
    make(
        &opts.workspace,
        &["-s", "netns", &ns_arg, &tap_arg, &host_arg],
        &out_dir.join(format!("{}-netns.log", m.file_label)),
    )?;
    let leases = out_dir.join(format!("{}.leases", m.file_label));
    let mut args = vec!["-s".to_string(), ns_arg.clone(), tap_arg, host_arg, qmp_arg];
    match &m.kind {
        Kind::Sel4 => args.insert(1, "qemu".into()),
        Kind::Reference => {
            args.insert(1, "qemu-reference".into());
            args.push(format!("REF_IP={REFERENCE_IP}/{}", lan::PREFIX));
        }
        Kind::Peer(image) => {
            args.insert(1, "qemu".into());
            args.push(format!("BOOT_IMAGE={}", image.display()));
            // sDDF's virtio-net driver (the usual peer) finds the NIC in the first slot.
            args.push("NIC_BUS=virtio-mmio-bus.0".into());
            let _ = std::fs::remove_file(&leases);
            let mut cmd = Lan::exec(&m.ns, Path::new("dnsmasq"));
            cmd.args(["--no-daemon", "--port=0", "--conf-file=/dev/null"])
                .arg(format!("--interface={TAP}"))
                .args(["--bind-interfaces", "--user=root"])
                .arg(format!("--dhcp-range={DHCP_RANGE}"))
                .arg(format!("--dhcp-leasefile={}", leases.display()))
                .arg(format!(
                    "--log-facility={}",
                    out_dir
                        .join(format!("{}-dnsmasq.log", m.file_label))
                        .display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            m.dnsmasq = Some(
                cmd.spawn()
                    .map_err(|e| err(format!("starting dnsmasq: {e}")))?,
            );
        }
    }
    let _ = std::fs::remove_file(&m.qmp_path);
    let mut child = Command::new("make");
    child
        .arg("-C")
        .arg(&opts.workspace)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the tear-down kills QEMU with make, and a Ctrl-C on
        // the terminal reaches only this program (which then tears down).
        .process_group(0);
    let mut child = child
        .spawn()
        .map_err(|e| err(format!("make {}: {e}", args.join(" "))))?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let console = m.console.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                if let Ok(mut c) = console.lock() {
                    c.extend_from_slice(&buf[..n]);
                }
            }
        });
    }
    m.qemu = Some(child);
    let deadline = t0 + BOOT_TIMEOUT;

    // QMP, as soon as QEMU listens.
    while m.qmp.is_none() {
        check_interrupt()?;
        m.check_alive()?;
        match Qmp::connect(&m.qmp_path) {
            Ok(q) => m.qmp = Some(q),
            Err(e) if Instant::now() > t0 + Duration::from_secs(30) => {
                return Err(err(format!("{}: QMP: {e}", m.label)))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }

    m.targets = match &m.kind {
        Kind::Sel4 => lan::CLIENTS.iter().map(ToString::to_string).collect(),
        Kind::Reference => vec![REFERENCE_IP.to_string()],
        Kind::Peer(_) => {
            let mut first = None;
            loop {
                check_interrupt()?;
                m.check_alive()?;
                let ips = leased_addresses(&std::fs::read_to_string(&leases).unwrap_or_default());
                let now = Instant::now();
                if !ips.is_empty() && first.is_none() {
                    first = Some(now);
                }
                if ips.len() >= 2 || first.is_some_and(|f| now > f + MORE_LEASES) {
                    break ips;
                }
                if now > deadline {
                    return Err(err(format!(
                        "{}: no DHCP lease within {BOOT_TIMEOUT:?}; console:\n{}",
                        m.label,
                        m.console_tail(30)
                    )));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    for ip in m.targets.clone() {
        wait_ping(&mut m, &ip, deadline)?;
    }
    for ip in m.targets.clone() {
        if !udp_echoes(netvm, &m.ns, &ip, false)? {
            return Err(err(format!(
                "{}: {ip} answers ping but not UDP echo",
                m.label
            )));
        }
    }
    m.util = udp_echoes(netvm, &m.ns, &m.targets[0], true)?;
    eprintln!(
        "boot {}: up in {:.1} s, {} answer ping and UDP echo{}",
        m.label,
        t0.elapsed().as_secs_f64(),
        m.targets.join(", "),
        if m.util {
            ""
        } else {
            " (no utilisation daemon on port 1237)"
        }
    );
    m.pause()?;
    Ok(m)
}

/// Merges the per-point files of one machine and proto into `<machine>-<proto>.csv`,
/// `-counts.csv` and `.svg`.
fn merge_files(out_dir: &Path, m: &Machine, proto: &str, rates: &[u64]) -> Result<()> {
    let points_dir = out_dir.join("points");
    let mut csv_text = format!("{}\n", csv::HEADER);
    let mut counts_text = format!("{}\n", crate::bench::COUNTS_HEADER);
    let mut rows = Vec::new();
    for rate in rates {
        let stem = points_dir.join(format!("{}-{rate}-{proto}", m.file_label));
        let read = |suffix: &str| {
            std::fs::read_to_string(format!("{}{suffix}", stem.display())).unwrap_or_default()
        };
        for line in read(".csv").lines().skip(1) {
            csv_text.push_str(line);
            csv_text.push('\n');
            rows.extend(csv::Row::parse(line));
        }
        for line in read("-counts.csv").lines().skip(1) {
            counts_text.push_str(line);
            counts_text.push('\n');
        }
    }
    let stem = out_dir.join(format!("{}-{proto}", m.file_label));
    let title = format!(
        "{} {} echo, {} B payload, {}",
        m.label,
        proto.to_uppercase(),
        payload_size(proto),
        m.targets[0]
    );
    for (suffix, text) in [
        (".csv", csv_text),
        ("-counts.csv", counts_text),
        (".svg", svg::render(&rows, &title)),
    ] {
        let path = format!("{}{suffix}", stem.display());
        std::fs::write(&path, text).map_err(|e| err(format!("{path}: {e}")))?;
    }
    Ok(())
}

/// Runs the whole job; see the module docs.
pub fn run(opts: &Sel4DemoOptions) -> Result<Sel4Summary> {
    crate::demo::catch_signals()?;
    if !crate::demo::is_root() {
        return Err(err(
            "needs root (network namespaces and taps), or an unprivileged user namespace, \
             which this kernel does not allow here; run it with sudo",
        ));
    }
    let out_dir = check_writable(&opts.out_dir)?;
    let points_dir = out_dir.join("points");
    std::fs::create_dir_all(&points_dir)
        .map_err(|e| err(format!("{}: {e}", points_dir.display())))?;
    let netvm = std::env::current_exe().map_err(|e| err(format!("current_exe: {e}")))?;
    if !opts.workspace.join("Makefile").is_file() {
        return Err(err(format!(
            "no Makefile in {} (--workspace is the netvm checkout)",
            opts.workspace.display()
        )));
    }

    if opts.build {
        if std::env::var_os("MICROKIT_SDK").is_none_or(|s| s.is_empty()) {
            return Err(err(
                "MICROKIT_SDK is not set: export the Microkit 2.3.0 SDK's path (scripts/run.sh \
                 reads it from .cache/sdk.env), or pass --no-build to boot what was built",
            ));
        }
        let log = out_dir.join("build.log");
        eprintln!(
            "build: make MICROKIT_CONFIG=release (log: {})",
            log.display()
        );
        let t0 = Instant::now();
        make(&opts.workspace, &["MICROKIT_CONFIG=release"], &log)?;
        eprintln!("build: done in {:.0} s", t0.elapsed().as_secs_f64());
    }

    let mut kinds = vec![Kind::Sel4];
    if opts.reference {
        kinds.push(Kind::Reference);
    }
    for (i, image) in opts.peer_images.iter().enumerate() {
        kinds.push(Kind::Peer(peer_image(image, &out_dir, i + 1)?));
    }
    let prefix = format!("nvs{}", std::process::id());
    let mut machines: Vec<Machine> = Vec::new();
    let mut peers = 0;
    for (i, kind) in kinds.into_iter().enumerate() {
        eprintln!(
            "boot {}",
            match &kind {
                Kind::Sel4 => "seL4 netvm: make qemu (build/loader.img)".to_string(),
                Kind::Reference => format!(
                    "Linux alone: make qemu-reference (the guest kernel, kernel echo on {REFERENCE_IP})"
                ),
                Kind::Peer(p) => format!("peer {}: make qemu BOOT_IMAGE={}", peers + 1, p.display()),
            }
        );
        if matches!(kind, Kind::Peer(_)) {
            peers += 1;
        }
        machines.push(boot(opts, &out_dir, &netvm, kind, i, peers, &prefix)?);
    }

    let settings = |util: bool| BenchSettings {
        out_dir: &points_dir,
        warmup: opts.warmup,
        duration: opts.duration,
        cooldown: opts.cooldown,
        flows: opts.flows,
        util,
    };
    let mut summary = Sel4Summary {
        reference: opts.reference.then(|| "Linux alone".to_string()),
        ..Sel4Summary::default()
    };
    for (proto, rates) in [("udp", &opts.udp_rates), ("tcp", &opts.tcp_rates)] {
        for &rate in rates.iter() {
            for m in machines.iter_mut() {
                check_interrupt()?;
                m.resume()?;
                let label = format!("{}-{rate}", m.file_label);
                let result = bench_points(
                    &m.ns,
                    &netvm,
                    &settings(m.util),
                    &m.targets[0],
                    proto,
                    &[rate],
                    &label,
                );
                check_interrupt()?;
                m.check_alive()?;
                m.pause()?;
                let point = match result {
                    Ok((points, _)) => points
                        .into_iter()
                        .next()
                        .ok_or_else(|| "no CSV row".to_string()),
                    Err(e) => Err(e.0),
                };
                match &point {
                    Ok(p) => eprintln!(
                        "{proto} {:.0} Mb/s {}: echoed {:.1} Mb/s, loss {:.3}%, median RTT {}",
                        mbps(rate),
                        m.label,
                        mbps(p.received),
                        p.loss_percent(),
                        ms(p.median_rtt)
                    ),
                    Err(e) => eprintln!("{proto} {:.0} Mb/s {}: {e}", mbps(rate), m.label),
                }
                summary.rows.push(TableRow {
                    system: m.label.clone(),
                    proto: proto.to_string(),
                    requested: rate,
                    point,
                });
            }
        }
    }
    for m in &machines {
        for (proto, rates) in [("udp", &opts.udp_rates), ("tcp", &opts.tcp_rates)] {
            if !rates.is_empty() {
                merge_files(&out_dir, m, proto, rates)?;
            }
        }
    }
    for (name, text) in [
        ("summary.txt", summary.table()),
        ("summary.csv", summary.csv()),
    ] {
        let path = out_dir.join(name);
        std::fs::write(&path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
    }
    drop(machines);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(received: u64, lost: u64, idle: u64) -> Point {
        Point {
            requested: 10_000_000,
            received,
            sent: 10_000_000,
            median_rtt: 3_210,
            bad: 0,
            sent_packets: 1000,
            lost_packets: lost,
            p99_rtt: 12_500,
            idle,
            total: 100,
        }
    }

    fn summary() -> Sel4Summary {
        let row = |system: &str, proto: &str, point| TableRow {
            system: system.into(),
            proto: proto.into(),
            requested: 10_000_000,
            point,
        };
        Sel4Summary {
            rows: vec![
                row("seL4 netvm", "udp", Ok(point(5_000_000, 500, 25))),
                row("Linux alone", "udp", Ok(point(10_000_000, 0, 80))),
                row("seL4 netvm", "tcp", Err("connection refused".into())),
                row("Linux alone", "tcp", Ok(point(10_000_000, 0, 0))),
            ],
            reference: Some("Linux alone".into()),
        }
    }

    #[test]
    fn table_has_one_line_per_machine_and_point() {
        let t = summary().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("system"));
        // seL4 UDP: half the reference's echoed rate, 50% lost, 75% busy.
        assert!(
            lines[1].starts_with("seL4 netvm     UDP      10 Mb/s"),
            "{t}"
        );
        for field in ["5.0 Mb/s", "50.000%", "3.21 ms", "12.50 ms", "75%", "0.50"] {
            assert!(lines[1].contains(field), "{field} missing: {}", lines[1]);
        }
        // The reference has no ratio to itself.
        assert!(lines[2].trim_end().ends_with('-'), "{}", lines[2]);
        assert!(lines[3].contains("bench failed: connection refused"));
        // Linux TCP had a daemon reporting total 100 idle 0: 100% busy.
        assert!(lines[4].contains("100%"), "{}", lines[4]);
    }

    #[test]
    fn summary_csv_rows() {
        let c = summary().csv();
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[1],
            "seL4 netvm,udp,1472,10000000,5000000,50.0000,3210,12500,75.0,1000,500,"
        );
        assert!(lines[3].ends_with(",\"connection refused\""));
        assert_eq!(lines[4].split(',').count(), lines[0].split(',').count());
    }

    #[test]
    fn leases_sorted_and_unique() {
        let text = "1767225600 52:54:01:00:00:11 10.0.0.101 * 01:52:54:01:00:00:11\n\
                    1767225600 52:54:01:00:00:10 10.0.0.100 * 01:52:54:01:00:00:10\n\
                    garbage\n";
        assert_eq!(leased_addresses(text), vec!["10.0.0.100", "10.0.0.101"]);
        assert!(leased_addresses("").is_empty());
    }
}
