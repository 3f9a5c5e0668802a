//! `netvm bench`: its arguments and handler.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use netvm::bench::{self, csv, svg, BenchConfig, Phase, Progress, Proto, SampleStop};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ProtoArg {
    Udp,
    Tcp,
}

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Echo server IP address.
    #[arg(long)]
    target: IpAddr,
    /// UDP echo port.
    #[arg(long, default_value_t = bench::UDP_ECHO_PORT)]
    udp_port: u16,
    /// TCP echo port.
    #[arg(long, default_value_t = bench::TCP_ECHO_PORT)]
    tcp_port: u16,
    /// ipbench utilisation daemon port (cpu_target_lukem).
    #[arg(long, default_value_t = bench::UTIL_PORT, conflicts_with = "no_util")]
    util_port: u16,
    /// Do not contact a utilisation daemon; Idle_Cycles and Total_Cycles are 0.
    #[arg(long)]
    no_util: bool,
    /// Instead of asking a utilisation daemon, measure the CPU time these processes and their
    /// descendants used over the sampling phase (/proc/<pid>/stat; comma-separated pids).
    /// Idle_Cycles = Total_Cycles - that, Total_Cycles = wall time x online CPUs, in clock ticks.
    #[arg(long, value_delimiter = ',', conflicts_with = "no_util")]
    util_pids: Vec<u32>,
    /// Transport.
    #[arg(long, value_enum, default_value = "udp")]
    proto: ProtoArg,
    /// Payload bytes per packet [default: 1472 for UDP, 1460 for TCP].
    #[arg(long)]
    size: Option<usize>,
    /// Requested rates in bit/s, comma-separated, suffixes K/M/G (decimal), e.g. 10M,100M,1G.
    #[arg(long, value_parser = bench::parse_rates)]
    rates: std::vec::Vec<u64>,
    /// Warm-up before sampling (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = bench::parse_duration)]
    warmup: Duration,
    /// End sampling after this many RTT samples (in total over all flows).
    #[arg(long, conflicts_with = "duration")]
    samples: Option<u64>,
    /// End sampling after this long [default: 5s].
    #[arg(long, value_parser = bench::parse_duration)]
    duration: Option<Duration>,
    /// With --samples: give up sampling after this long.
    #[arg(long, default_value = "60s", value_parser = bench::parse_duration)]
    sample_timeout: Duration,
    /// Cool-down after sampling.
    #[arg(long, default_value = "1s", value_parser = bench::parse_duration)]
    cooldown: Duration,
    /// Parallel flows (UDP sockets / TCP connections); the rate is split evenly.
    #[arg(long, default_value_t = 4)]
    flows: u32,
    /// Also write the CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Draw Receive_Throughput and median and p99 RTT against the requested rate into this SVG
    /// file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Also write the packet counts behind each row to this CSV file
    /// (Requested_Throughput,Sent_Packets,Lost_Packets,Late_Packets,Bad_Packets,P99_RTT,
    /// Generator_Limited; lost = sent and never echoed by the end of the drain; P99_RTT in µs;
    /// Generator_Limited 0 = no, bit 1 = UDP sent < 97% of requested, bit 2 = requested above
    /// the calibrated ceiling), which the ipbench columns do not carry.
    #[arg(long)]
    counts: Option<PathBuf>,
    /// No progress display (the per-point summary with loss % still goes to stderr).
    #[arg(long)]
    quiet: bool,
    /// Skip measuring the bench's own ceiling before the sweep (a 1 s run against an in-process
    /// kernel echo on 127.0.0.1); points are then marked generator-limited only by their
    /// achieved send rate.
    #[arg(long)]
    no_calibrate: bool,
}

pub(crate) fn run_bench(a: BenchArgs) -> ExitCode {
    let proto = match a.proto {
        ProtoArg::Udp => Proto::Udp,
        ProtoArg::Tcp => Proto::Tcp,
    };
    let mut cfg = BenchConfig::new(a.target, proto, a.rates);
    cfg.udp_port = a.udp_port;
    cfg.tcp_port = a.tcp_port;
    cfg.util_port = (!a.no_util && a.util_pids.is_empty()).then_some(a.util_port);
    cfg.util_pids = a.util_pids;
    if let Some(size) = a.size {
        cfg.size = size;
    }
    cfg.warmup = a.warmup;
    cfg.cooldown = a.cooldown;
    cfg.sample_timeout = a.sample_timeout;
    cfg.flows = a.flows;
    cfg.stop = match (a.samples, a.duration) {
        (Some(n), _) => SampleStop::Samples(n),
        (None, Some(d)) => SampleStop::Duration(d),
        (None, None) => SampleStop::Duration(Duration::from_secs(5)),
    };

    let bar = progress_bar(a.quiet);
    let mut on_progress = |p: &Progress| {
        let phase = match p.phase {
            Phase::Warmup => "warm-up",
            Phase::Sampling => "sampling",
            Phase::Cooldown => "cool-down",
            Phase::Drain | Phase::Done => "draining",
        };
        bar.set_message(format!(
            "{} b/s: {phase}, {} sent, {} samples",
            p.rate, p.sent, p.samples
        ));
        bar.tick();
    };

    if !a.no_calibrate {
        set_ceiling(&mut cfg);
    }
    println!("{}", csv::HEADER);
    let mut rows = Vec::new();
    let mut p99s = Vec::new();
    let mut counts = String::from(bench::COUNTS_HEADER);
    counts.push('\n');
    for &rate in &cfg.rates {
        match bench::run_point(&cfg, rate, &mut on_progress) {
            Ok(r) => {
                bar.suspend(|| {
                    println!("{}", r.row.to_line());
                    tracing::info!("netvm bench: {}", r.summary());
                });
                counts.push_str(&r.counts_line());
                counts.push('\n');
                rows.push(r.row);
                p99s.push(r.rtt.p99_us);
            }
            Err(e) => {
                bar.finish_and_clear();
                tracing::error!("netvm bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    bar.finish_and_clear();
    if let Some(path) = &a.csv {
        if let Err(e) = std::fs::write(path, csv::render(&rows)) {
            tracing::error!("netvm bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &a.counts {
        if let Err(e) = std::fs::write(path, &counts) {
            tracing::error!("netvm bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &a.svg {
        let proto_name = if proto == Proto::Udp { "UDP" } else { "TCP" };
        let title = format!(
            "{proto_name} echo, {} B payload, {} flows, target {}",
            cfg.size, cfg.flows, cfg.target
        );
        let chart = match svg::render_with_p99(&rows, &p99s, &title) {
            Ok(chart) => chart,
            Err(e) => {
                tracing::error!("netvm bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, chart) {
            tracing::error!("netvm bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The progress spinner on stderr: hidden with `--quiet` or when stderr is not a terminal.
fn progress_bar(quiet: bool) -> ProgressBar {
    let show = !quiet && std::io::stderr().is_terminal();
    let bar = if show {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_draw_target(if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// Measures the generator's ceiling for `cfg` (see `bench::calibrate`) into `cfg.ceiling_bps`,
/// saying so (info; a warning if it cannot); on failure leaves it unset.
fn set_ceiling(cfg: &mut BenchConfig) {
    match bench::calibrate(cfg, Duration::from_secs(1)) {
        Ok(c) => {
            tracing::info!(
                "netvm bench: generator ceiling: sends {} b/s ({} b/s echoed, median RTT {} us) \
                 against an in-process kernel echo on 127.0.0.1 at {} B, {} flows; \
                 higher requested rates are marked GENERATOR-LIMITED",
                c.send_bps,
                c.receive_bps,
                c.median_rtt_us,
                cfg.size,
                cfg.flows
            );
            cfg.ceiling_bps = Some(c.send_bps);
        }
        Err(e) => tracing::warn!(
            "netvm bench: generator ceiling not measured ({e}); points are marked \
             GENERATOR-LIMITED only by their achieved send rate"
        ),
    }
}
