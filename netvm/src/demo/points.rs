//! Benchmark points: running `netvm bench` from a namespace and reading back its CSV and
//! counts files.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::netns::Lan;
use super::process::{err, wait_child, Result};

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
/// What a demo measures and how each point is measured (`netvm demo` and `netvm sel4-demo`
/// alike).
#[derive(Debug, Clone)]
pub struct Sweep {
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
}

impl Sweep {
    /// `(protocol, rates)` for UDP then TCP.
    pub(crate) fn protocols(&self) -> [(&'static str, &[u64]); 2] {
        [("udp", &self.udp_rates), ("tcp", &self.tcp_rates)]
    }

    /// The bench settings of every point, writing into `out_dir`.
    pub(crate) fn settings<'a>(
        &self,
        out_dir: &'a Path,
        util: bool,
        util_pid: Option<u32>,
        calibrate: bool,
    ) -> BenchSettings<'a> {
        BenchSettings {
            out_dir,
            warmup: self.warmup,
            duration: self.duration,
            cooldown: self.cooldown,
            flows: self.flows,
            util,
            util_pid,
            calibrate,
            cpus: None,
        }
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
    /// The CPUs the bench may run on (`None`: any).
    pub cpus: Option<nix::sched::CpuSet>,
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
    if let Some(set) = settings.cpus {
        super::cpus::pin(&mut cmd, set);
    }
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
}
