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
//! With `--cpus split` (the default, [`cpus`]) the echo side and the bench run on CPUs of their
//! own. Offloads (checksum, TSO/GSO/GRO) are off on every veth end: a veth hands partially
//! checksummed and merged frames to a raw socket, which a real NIC would not. Everything is
//! torn down at the end, on error, and on Ctrl-C / SIGTERM (namespaces, processes, shm files).

pub mod cpus;
mod netns;
mod points;
mod process;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use cpus::CpuPlacement;
pub use netns::Lan;
pub(crate) use points::{bench_points, payload_size, BenchSettings};
pub use points::{Point, Sweep};
pub(crate) use process::{catch_signals, check_interrupt, err, ip, run_cmd, wait_child, Result};
pub use process::{check_writable, is_root, run_in_user_namespace, DemoError, USERNS_ENV};

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
    /// The rates and how each point is measured.
    pub sweep: Sweep,
    /// Where the virtualisers write their pcap files (`netvm run --pcap`), if anywhere.
    pub pcap: Option<PathBuf>,
    /// Where the echo side and the load generator run.
    pub cpus: CpuPlacement,
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
    tracing::info!(
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
    /// Where the processes ran (one line).
    pub cpus: String,
}

/// The summary table's value columns, in order (between `proto` and `bad`).
const VALUE_COLUMNS: [&str; 10] = [
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
];

impl Summary {
    /// The summary table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // The header is formatted with the widths of the rows, so the two line up.
        let [req, sys_rx, ker_rx, ratio, sys_loss, ker_loss, s50, s99, k50, k99] = VALUE_COLUMNS;
        out.push_str(&format!(
            "{:5} {req:>13}  {sys_rx:>13} {ker_rx:>13} {ratio:>5}  {sys_loss:>9}  {ker_loss:>9}  {s50:>9}  {s99:>9}  {k50:>9}  {k99:>9}  {}\n",
            "proto", "bad"
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
                tracing::info!("  {line}");
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

/// Starts `netvm run` of the system in its namespace, with the driver on sys0, and waits until
/// the driver and both echo clients are up; returns the runner's pid.
fn start_system(
    lan: &mut Lan,
    netvm: &Path,
    opts: &DemoOptions,
    split: Option<&cpus::Split>,
) -> Result<u32> {
    let bin_dir = netvm.parent().map(Path::to_path_buf).unwrap_or_default();
    // The system, in its namespace, with the driver on sys0.
    let ips: Vec<String> = lan::CLIENTS
        .iter()
        .enumerate()
        .map(|(i, a)| format!("client{i}={a}/{}", lan::PREFIX))
        .collect();
    let mut cmd = Lan::exec(&lan.sys, netvm);
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
    if let Some(s) = split {
        cpus::pin(&mut cmd, s.echo);
    }
    let system = lan.spawn("netvm run", cmd)?;
    let runner_pid = system.id();
    follow_runner(system, &["client0", "client1"])?;
    Ok(runner_pid)
}

/// Waits until the runner `system` (started with piped stdout and stderr) has printed that its
/// driver and every one of `clients`' echo servers are up, then keeps draining its output so it
/// never blocks on a full pipe.
pub(crate) fn follow_runner(system: &mut std::process::Child, clients: &[&str]) -> Result<()> {
    follow_runner_into(system, clients, None)
}

/// [`follow_runner`], and every line after the ready ones also appended to `keep` (a node's
/// console, read for what its PDs print).
pub(crate) fn follow_runner_into(
    system: &mut std::process::Child,
    clients: &[&str],
    keep: Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>,
) -> Result<()> {
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
    let mut wanted = vec!["uio-driver: ready".to_string()];
    wanted.extend(clients.iter().map(|c| format!("{c}: echo server up")));
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    wait_ready(&rx, &wanted, Duration::from_secs(30))?;
    // Keep draining the runner's output so it never blocks on a full pipe.
    std::thread::spawn(move || {
        while let Ok(line) = rx.recv() {
            if let Some(Ok(mut k)) = keep.as_ref().map(|k| k.lock()) {
                k.extend_from_slice(line.as_bytes());
                k.push(b'\n');
            }
        }
    });
    Ok(())
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
    let split = match opts.cpus {
        CpuPlacement::Split => Some(cpus::Split::of_this_process()?),
        CpuPlacement::Shared => None,
    };
    let mut placement = cpus::describe(split.as_ref());
    let mut lan = Lan::create(&format!("nvd{}", std::process::id()))?;
    if let Some(s) = &split {
        // Steering needs CAP_NET_ADMIN in the first user namespace; without it (the
        // unprivileged demo) the processes are still pinned, and the output says so.
        let steered = [
            (&lan.sys, "sys0", &s.echo),
            (&lan.reference, "ref0", &s.echo),
            (&lan.peer, "peer0", &s.generator),
            (&lan.peer, "peer1", &s.generator),
        ]
        .into_iter()
        .try_for_each(|(ns, dev, set)| cpus::steer_receive(ns, dev, set));
        if let Err(e) = steered {
            placement = format!(
                "{placement}; BUT receive processing NOT steered, it runs on the sender's CPU ({e})"
            );
        }
    }
    tracing::info!("netvm demo: {placement}");

    let runner_pid = start_system(&mut lan, &netvm, opts, split.as_ref())?;

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
    if let Some(s) = &split {
        cpus::pin(&mut cmd, s.echo);
    }
    lan.spawn("netvm kernel-echo", cmd)?;
    std::thread::sleep(Duration::from_millis(300));

    let mut summary = Summary {
        cpus: placement,
        ..Summary::default()
    };
    for (proto, rates) in opts.sweep.protocols() {
        if rates.is_empty() {
            continue;
        }
        // The system's utilisation is its own processes' CPU time (with --cpus shared the bench
        // shares its cores); the kernel echo's comes from its ipbench daemon (/proc/stat, the
        // whole machine, the bench's CPUs too).
        let settings = |util_pid| BenchSettings {
            cpus: split.as_ref().map(|s| s.generator),
            ..opts.sweep.settings(&opts.out_dir, true, util_pid, true)
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
    use super::points::{add_counts, parse_csv};
    use super::*;

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
        for label in VALUE_COLUMNS {
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
