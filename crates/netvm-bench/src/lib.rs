//! `netvm bench`: an ipbench `latency-check`-compatible load generator and RTT sampler.
//!
//! One measurement *point* per requested rate, with ipbench's phases:
//! warm-up (time) → sampling (until `samples` echoes, or for a duration) → cool-down (time),
//! then a drain so in-flight echoes are not counted as lost. Throughput and RTT samples
//! come from the sampling phase only; Bad_Packets are counted over the whole point.
//!
//! The drain adapts to the RTT the point observed (see [`drain_quiet`]): it ends once no echo
//! has arrived for `max(200 ms, 2 × the largest RTT seen in the point)` (at most 5 s), or after
//! [`DRAIN_LIMIT`], whichever comes first. It does not stop as soon as every packet is back, so
//! duplicates and corrupted copies arriving just after are still counted. A fixed drain
//! shorter than the RTT of an overloaded system would count its late echoes as lost.
//!
//! Threads per point: one paced sender for all flows, one receiver for all flows, and the
//! calling thread, which speaks the utilisation protocol and reports progress. The receiver
//! owns the phase clock because it is the one that knows when enough samples have arrived.

#![forbid(unsafe_code)]

mod calibrate;
pub mod clock;
pub mod csv;
mod engine;
pub mod payload;
pub mod procutil;
pub mod stats;
pub mod svg;
mod tcp;
pub mod track;
mod udp;
mod units;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::monotonic_ns;
use kernel_echo::util_proto::{UtilClient, UtilError, Utilisation};
use stats::RttStats;
use track::BadKind;

pub use calibrate::{calibrate, Ceiling};
use engine::{pace, RecvOutcome, RecvState, Shared, Transmit};
pub use units::{parse_duration, parse_rate, parse_rates};

/// Default UDP echo port (sDDF `echo.h`).
pub const UDP_ECHO_PORT: u16 = kernel_echo::UDP_PORT;
/// Default TCP echo port (sDDF `echo.h`).
pub const TCP_ECHO_PORT: u16 = kernel_echo::TCP_PORT;
/// Default ipbench utilisation daemon port (sDDF `echo.h`).
pub const UTIL_PORT: u16 = kernel_echo::UTIL_PORT;

/// Packets handed to the kernel per sender call and flow.
const SEND_BATCH: u64 = 32;
/// Shortest quiet period that ends the drain (the old fixed drain).
pub const DRAIN_MIN_QUIET: Duration = Duration::from_millis(200);
/// Longest quiet period that ends the drain, however large the observed RTT.
pub const DRAIN_MAX_QUIET: Duration = Duration::from_secs(5);
/// The quiet period is this many times the largest RTT observed in the point.
pub const DRAIN_RTT_FACTOR: u64 = 2;
/// Longest the drain lasts, even while echoes keep trickling in.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long the drain waits without any echo before it ends, given the largest RTT observed in
/// the point: `DRAIN_RTT_FACTOR × max_rtt`, clamped to `DRAIN_MIN_QUIET..=DRAIN_MAX_QUIET`.
/// The largest RTT rather than the median or p99: a packet still in flight when the sender stops
/// may be as slow as the slowest one seen.
pub fn drain_quiet(max_rtt: Duration) -> Duration {
    (max_rtt * DRAIN_RTT_FACTOR as u32).clamp(DRAIN_MIN_QUIET, DRAIN_MAX_QUIET)
}

/// Longest the receiver blocks in epoll before re-checking the phase clock.
const RECV_POLL: Duration = Duration::from_millis(5);
/// Longest the sender sleeps before re-checking the phase.
const SEND_MAX_SLEEP_NS: u64 = 5_000_000;
/// How often the calling thread reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Timeout for connecting and for each utilisation protocol exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Transport protocol of a benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// UDP datagrams, one socket per flow.
    Udp,
    /// TCP, one connection per flow, TCP_NODELAY.
    Tcp,
}

/// When the sampling phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleStop {
    /// After this many verified echoes in total (ipbench `samples`), or after `sample_timeout`.
    Samples(u64),
    /// After this long.
    Duration(Duration),
}

/// Everything one benchmark run needs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Echo server address.
    pub target: IpAddr,
    /// UDP echo port.
    pub udp_port: u16,
    /// TCP echo port.
    pub tcp_port: u16,
    /// Utilisation daemon port, or `None` to report 0,0 (unless `util_pids` is set).
    pub util_port: Option<u16>,
    /// Processes whose CPU time (with their descendants') over the sampling phase is the
    /// utilisation to report, instead of asking a daemon (see [`procutil`]). Empty: not used.
    pub util_pids: Vec<u32>,
    /// Transport.
    pub proto: Proto,
    /// Payload bytes per packet (per TCP write).
    pub size: usize,
    /// Requested rates, bit/s of payload; one point each.
    pub rates: Vec<u64>,
    /// Warm-up before sampling.
    pub warmup: Duration,
    /// Sampling phase length.
    pub stop: SampleStop,
    /// Upper bound on the sampling phase when stopping by sample count.
    pub sample_timeout: Duration,
    /// Cool-down after sampling (traffic continues, nothing is counted).
    pub cooldown: Duration,
    /// Parallel flows (sockets or connections); the rate is split evenly between them.
    pub flows: u32,
    /// The load generator's own ceiling in bit/s (from [`calibrate`]), if measured: points
    /// requesting more are marked [`LIMIT_ABOVE_CEILING`].
    pub ceiling_bps: Option<u64>,
}

impl BenchConfig {
    /// A configuration with the sDDF defaults for `target` and `proto`: ports 1235/1236/1237,
    /// size 1472 (UDP) or 1460 (TCP), 2 s warm-up, 5 s sampling, 1 s cool-down, 4 flows.
    pub fn new(target: IpAddr, proto: Proto, rates: Vec<u64>) -> BenchConfig {
        BenchConfig {
            target,
            udp_port: UDP_ECHO_PORT,
            tcp_port: TCP_ECHO_PORT,
            util_port: Some(UTIL_PORT),
            util_pids: Vec::new(),
            proto,
            size: if proto == Proto::Udp { 1472 } else { 1460 },
            rates,
            warmup: Duration::from_secs(2),
            stop: SampleStop::Duration(Duration::from_secs(5)),
            sample_timeout: Duration::from_secs(60),
            cooldown: Duration::from_secs(1),
            flows: 4,
            ceiling_bps: None,
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Config(m));
        let max_size = if self.proto == Proto::Udp {
            MAX_UDP_PAYLOAD
        } else {
            MAX_TCP_MESSAGE
        };
        if self.size == 0 || self.size > max_size {
            return bad(format!(
                "packet size {} is outside 1..={max_size}",
                self.size
            ));
        }
        if self.flows == 0 || self.flows > MAX_FLOWS {
            return bad(format!(
                "flow count {} is outside 1..={MAX_FLOWS}",
                self.flows
            ));
        }
        if self.util_port.is_some() && !self.util_pids.is_empty() {
            return bad("utilisation comes from a daemon or from processes, not both".into());
        }
        if self.rates.is_empty() || self.rates.contains(&0) {
            return bad("at least one rate is needed, and every rate must be above 0".into());
        }
        let sampling = match self.stop {
            SampleStop::Samples(0) => return bad("samples must be above 0".into()),
            SampleStop::Samples(_) => self.sample_timeout,
            SampleStop::Duration(d) if d.is_zero() => {
                return bad("the sampling duration must be above 0".into())
            }
            SampleStop::Duration(d) => d,
        };
        let total = self.warmup + sampling + self.cooldown + DRAIN_LIMIT;
        if total > MAX_POINT {
            return bad(format!(
                "one point would last {total:?}, longer than the {MAX_POINT:?} limit"
            ));
        }
        Ok(())
    }

    fn echo_addr(&self) -> SocketAddr {
        let port = if self.proto == Proto::Udp {
            self.udp_port
        } else {
            self.tcp_port
        };
        SocketAddr::new(self.target, port)
    }
}

/// Largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Largest TCP message size accepted.
pub const MAX_TCP_MESSAGE: usize = 1 << 20;
/// Most flows accepted.
pub const MAX_FLOWS: u32 = 256;
/// Longest one point may last (warm-up + sampling bound + cool-down).
pub const MAX_POINT: Duration = Duration::from_secs(3600);

/// Errors running a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// invalid benchmark configuration: {0}
    #[error("invalid benchmark configuration: {0}")]
    Config(String),
    /// {what} for {addr} failed: {source}
    #[error("{what} for {addr} failed: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// Echo server address.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// the echo server at {addr} closed TCP flow {flow} during the measurement
    #[error("the echo server at {addr} closed TCP flow {flow} during the measurement")]
    PeerClosed {
        /// Echo server address.
        addr: SocketAddr,
        /// Flow index.
        flow: u32,
    },
    /// utilisation protocol failed: {0}
    #[error("utilisation protocol failed: {0}")]
    Util(#[from] UtilError),
}

/// Bad_Packets broken down by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BadCounts {
    /// Wrong length or truncated.
    pub length: u64,
    /// Sequence number never sent.
    pub unknown: u64,
    /// Echo received twice.
    pub duplicate: u64,
    /// Bytes differ from what was sent.
    pub corrupt: u64,
}

impl BadCounts {
    /// Total Bad_Packets.
    pub fn total(&self) -> u64 {
        self.length + self.unknown + self.duplicate + self.corrupt
    }

    fn add(&mut self, kind: BadKind) {
        match kind {
            BadKind::Length => self.length += 1,
            BadKind::Unknown => self.unknown += 1,
            BadKind::Duplicate => self.duplicate += 1,
            BadKind::Corrupt => self.corrupt += 1,
        }
    }
}

/// The outcome of one measurement point.
#[derive(Clone, Debug)]
pub struct PointResult {
    /// The CSV row.
    pub row: csv::Row,
    /// RTT statistics (also in the row).
    pub rtt: RttStats,
    /// Packets (TCP messages) sent over the whole point.
    pub sent: u64,
    /// Verified echoes over the whole point (including late ones).
    pub echoed: u64,
    /// Echoes too old to match their send record.
    pub late: u64,
    /// Bad_Packets by cause.
    pub bad: BadCounts,
    /// Length of the sampling phase.
    pub sampling: Duration,
    /// Whether sampling ended by `sample_timeout` before reaching the sample count.
    pub timed_out: bool,
    /// How long the drain after cool-down lasted (see [`drain_quiet`]).
    pub drain: Duration,
    /// Why this point may show the load generator's limit rather than the system's: a set of
    /// `LIMIT_*` bits, 0 if none.
    pub generator_limit: u8,
    /// Transport of the point.
    pub proto: Proto,
}

/// [`PointResult::generator_limit`] bit: over UDP, the sender put out less than
/// `100 - SEND_SHORTFALL_PERCENT` % of the requested rate during sampling: the bench (or the local
/// socket path) did not keep up. Not set over TCP, where a sender held back is normally the echo's
/// flow control, i.e. the system's limit (the summary still says how short it fell).
pub const LIMIT_SEND_SHORT: u8 = 1;
/// [`PointResult::generator_limit`] bit: the requested rate is above the calibrated ceiling.
pub const LIMIT_ABOVE_CEILING: u8 = 2;
/// How far (percent) the achieved send rate may fall below the requested one before a point is
/// marked [`LIMIT_SEND_SHORT`].
pub const SEND_SHORTFALL_PERCENT: u64 = 3;

/// Whether `sent` bit/s falls short of `requested` by more than [`SEND_SHORTFALL_PERCENT`].
fn sent_short(requested: u64, sent: u64) -> bool {
    u128::from(sent) * 100 < u128::from(requested) * u128::from(100 - SEND_SHORTFALL_PERCENT)
}

/// The generator limit bits for a `proto` point that requested `requested` bit/s and sent `sent`
/// bit/s, given the calibrated ceiling.
pub fn generator_limit(proto: Proto, requested: u64, sent: u64, ceiling_bps: Option<u64>) -> u8 {
    let mut bits = 0;
    if proto == Proto::Udp && sent_short(requested, sent) {
        bits |= LIMIT_SEND_SHORT;
    }
    if ceiling_bps.is_some_and(|c| requested > c) {
        bits |= LIMIT_ABOVE_CEILING;
    }
    bits
}

/// Header of the `--counts` file: the packet counts behind each CSV row, and the 99th
/// percentile RTT in µs, which ipbench's columns do not carry either.
/// Generator_Limited is [`PointResult::generator_limit`] (0: none; bit 1: UDP sent short of the
/// request; bit 2: requested above the calibrated ceiling).
pub const COUNTS_HEADER: &str =
    "Requested_Throughput,Sent_Packets,Lost_Packets,Late_Packets,Bad_Packets,P99_RTT,Generator_Limited";

impl PointResult {
    /// This point's line of the `--counts` file (see [`COUNTS_HEADER`]).
    pub fn counts_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.row.requested_bps,
            self.sent,
            self.sent.saturating_sub(self.echoed),
            self.late,
            self.bad.total(),
            self.rtt.p99_us,
            self.generator_limit
        )
    }

    /// Percentage of packets sent in the whole point that never came back verified.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * self.sent.saturating_sub(self.echoed) as f64 / self.sent as f64
    }

    /// One human-readable line: rate, RTT median and p99, loss, bad packets by cause, drain.
    pub fn summary(&self) -> String {
        format!(
            "requested {} b/s: received {} b/s, sent {} b/s, {} samples, median RTT {} us, p99 RTT {} us, loss {:.3}% ({} of {}), late {}, bad {} (length {}, unknown {}, duplicate {}, corrupt {}), drain {} ms{}",
            self.row.requested_bps,
            self.row.receive_bps,
            self.row.send_bps,
            self.rtt.count,
            self.row.median_rtt_us,
            self.rtt.p99_us,
            self.loss_percent(),
            self.sent.saturating_sub(self.echoed),
            self.sent,
            self.late,
            self.bad.total(),
            self.bad.length,
            self.bad.unknown,
            self.bad.duplicate,
            self.bad.corrupt,
            self.drain.as_millis(),
            if self.timed_out { ", sampling timed out before the sample count" } else { "" }
        ) + &self.limit_note()
    }

    /// Why this point may be the load generator's limit, not the system's ("" if it is not).
    pub fn limit_note(&self) -> String {
        let mut note = String::new();
        if self.generator_limit & LIMIT_SEND_SHORT != 0 {
            note += &format!(
                "; GENERATOR-LIMITED: sent {:.1}% of the requested rate",
                100.0 * self.row.send_bps as f64 / self.row.requested_bps.max(1) as f64
            );
        }
        if self.generator_limit & LIMIT_ABOVE_CEILING != 0 {
            note += "; GENERATOR-LIMITED: requested above the bench's calibrated ceiling";
        }
        if !note.is_empty() {
            note += " (not the system's limit)";
        } else if self.proto == Proto::Tcp && sent_short(self.row.requested_bps, self.row.send_bps)
        {
            note += &format!(
                "; sent {:.1}% of the requested rate (TCP flow control: the echo took no more)",
                100.0 * self.row.send_bps as f64 / self.row.requested_bps.max(1) as f64
            );
        }
        note
    }
}

/// Phase of a point, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Traffic flows, nothing is counted.
    Warmup = 0,
    /// Samples and throughput are counted.
    Sampling = 1,
    /// Traffic flows, nothing is counted.
    Cooldown = 2,
    /// The sender has stopped; late echoes are still collected for the loss figure.
    Drain = 3,
    /// Finished (or aborted).
    Done = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Warmup,
            1 => Phase::Sampling,
            2 => Phase::Cooldown,
            3 => Phase::Drain,
            _ => Phase::Done,
        }
    }
}

/// A progress snapshot, reported about every 100 ms.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Requested rate of the current point.
    pub rate: u64,
    /// Current phase.
    pub phase: Phase,
    /// Packets sent so far in this point.
    pub sent: u64,
    /// RTT samples so far in this point.
    pub samples: u64,
}

/// Runs one point at `rate` bit/s, calling `progress` about every 100 ms.
pub fn run_point(
    cfg: &BenchConfig,
    rate: u64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PointResult, BenchError> {
    cfg.validate()?;
    let addr = cfg.echo_addr();
    let pps_per_flow = rate as f64 / (8.0 * cfg.size as f64) / f64::from(cfg.flows);
    let window = track::window_for(pps_per_flow);
    tracing::debug!(
        rate,
        proto = ?cfg.proto,
        flows = cfg.flows,
        size = cfg.size,
        window,
        target = %addr,
        "bench point: starting"
    );
    let util_pids = watched_pids(cfg)?;

    let mut util = match cfg.util_port {
        Some(port) => Some(UtilClient::connect(
            SocketAddr::new(cfg.target, port),
            CONNECT_TIMEOUT,
        )?),
        None => None,
    };
    let sockets = match cfg.proto {
        Proto::Udp => Sockets::Udp(udp::connect(addr, cfg.flows)?),
        Proto::Tcp => Sockets::Tcp(tcp::connect(addr, cfg.flows)?),
    };
    if let Some(u) = util.as_mut() {
        u.start()?;
    }

    let start = monotonic_ns();
    let shared = Shared::new(cfg.flows, cfg.size, window, start);
    let sampling_bound = match cfg.stop {
        SampleStop::Duration(d) => d,
        SampleStop::Samples(_) => cfg.sample_timeout,
    };
    // A backstop in case a thread wedges: the receiver ends the point well before this.
    let hard_deadline = start
        + (cfg.warmup + sampling_bound + cfg.cooldown + DRAIN_LIMIT + Duration::from_secs(5))
            .as_nanos() as u64;

    let (sent_res, recv_res) = std::thread::scope(|s| {
        let shared = &shared;
        let sockets = &sockets;
        let sender = s.spawn(move || {
            let r = match sockets {
                Sockets::Udp(socks) => pace(
                    shared,
                    &mut udp::Sender::new(socks, cfg.size),
                    start,
                    pps_per_flow,
                ),
                Sockets::Tcp(streams) => pace(
                    shared,
                    &mut tcp::Sender::new(streams, cfg.size),
                    start,
                    pps_per_flow,
                ),
            };
            if r.is_err() {
                shared.set_phase(Phase::Done);
            }
            r
        });
        let receiver = s.spawn(move || {
            let mut st = RecvState::new(shared, cfg, start, &util_pids);
            let r = match sockets {
                Sockets::Udp(socks) => udp::receive(socks, &mut st),
                Sockets::Tcp(streams) => tcp::receive(streams, addr, &mut st),
            };
            shared.set_phase(Phase::Done);
            r.map(|()| st.out)
        });
        while !receiver.is_finished() {
            std::thread::sleep(PROGRESS_EVERY);
            progress(&Progress {
                rate,
                phase: shared.phase(),
                sent: shared.sent.load(Ordering::Relaxed),
                samples: shared.samples.load(Ordering::Relaxed),
            });
            if monotonic_ns() > hard_deadline {
                shared.set_phase(Phase::Done);
            }
        }
        let sent_res = sender.join();
        let recv_res = receiver.join();
        (sent_res, recv_res)
    });
    let io_fail = |what, source| BenchError::Socket { what, addr, source };
    let panicked = || io::Error::other("benchmark thread panicked");
    sent_res
        .map_err(|_| panicked())
        .and_then(|r| r)
        .map_err(|e| io_fail("sending", e))?;
    let out = recv_res.map_err(|_| BenchError::Socket {
        what: "receiving",
        addr,
        source: panicked(),
    })??;

    point_result(cfg, rate, util, out, &shared)
}

/// The processes whose CPU time is the utilisation: `cfg.util_pids` and their descendants
/// (empty if none were given).
fn watched_pids(cfg: &BenchConfig) -> Result<Vec<u32>, BenchError> {
    Ok(if cfg.util_pids.is_empty() {
        Vec::new()
    } else {
        if let Some(gone) = cfg
            .util_pids
            .iter()
            .find(|&&p| procutil::snapshot(&[p], 0).is_empty())
        {
            return Err(BenchError::Config(format!(
                "--util-pids: no process {gone} (/proc/{gone}/stat)"
            )));
        }
        procutil::with_descendants(&cfg.util_pids)
    })
}

/// Builds a point's result from what the receiver collected and the sender counted.
fn point_result(
    cfg: &BenchConfig,
    rate: u64,
    util: Option<UtilClient>,
    mut out: RecvOutcome,
    shared: &Shared,
) -> Result<PointResult, BenchError> {
    let utilisation = match (util, out.proc_util) {
        (Some(u), _) => u.stop()?,
        (None, Some((idle, total))) => Utilisation { idle, total },
        (None, None) => Utilisation::default(),
    };
    let rtt = RttStats::from_samples(&mut out.samples_us);
    let secs_us = (out.sampling_ns / 1_000).max(1) as u128;
    let bps =
        |packets: u64| (8 * u128::from(packets) * cfg.size as u128 * 1_000_000 / secs_us) as u64;
    let row = csv::Row {
        requested_bps: rate,
        receive_bps: bps(out.received_sampling),
        send_bps: bps(shared.sent_sampling.load(Ordering::Relaxed)),
        packet_size: cfg.size as u64,
        min_rtt_us: rtt.min_us,
        avg_rtt_us: rtt.avg_us,
        max_rtt_us: rtt.max_us,
        stdev_rtt_us: rtt.stdev_us,
        median_rtt_us: rtt.median_us,
        bad_packets: out.bad.total(),
        idle_cycles: utilisation.idle,
        total_cycles: utilisation.total,
    };
    Ok(PointResult {
        generator_limit: generator_limit(cfg.proto, rate, row.send_bps, cfg.ceiling_bps),
        proto: cfg.proto,
        row,
        rtt,
        sent: shared.sent.load(Ordering::Relaxed),
        echoed: out.echoed,
        late: out.late,
        bad: out.bad,
        sampling: Duration::from_nanos(out.sampling_ns),
        timed_out: out.timed_out,
        drain: Duration::from_nanos(out.drain_ns),
    })
}

/// Runs every rate of `cfg` in order.
pub fn run(
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<PointResult>, BenchError> {
    cfg.validate()?;
    cfg.rates
        .iter()
        .map(|&rate| run_point(cfg, rate, progress))
        .collect()
}

/// The connected sockets of one point.
enum Sockets {
    Udp(Vec<std::net::UdpSocket>),
    Tcp(Vec<std::net::TcpStream>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_limit_bits() {
        let udp = Proto::Udp;
        assert_eq!(generator_limit(udp, 100, 97, None), 0);
        assert_eq!(generator_limit(udp, 100, 96, None), LIMIT_SEND_SHORT);
        assert_eq!(generator_limit(udp, 100, 100, Some(100)), 0);
        assert_eq!(
            generator_limit(udp, 100, 100, Some(99)),
            LIMIT_ABOVE_CEILING
        );
        assert_eq!(
            generator_limit(udp, 100, 50, Some(60)),
            LIMIT_SEND_SHORT | LIMIT_ABOVE_CEILING
        );
        // A TCP sender held back is the echo's flow control unless the request is above the
        // ceiling.
        assert_eq!(generator_limit(Proto::Tcp, 100, 50, Some(200)), 0);
        assert_eq!(
            generator_limit(Proto::Tcp, 100, 50, Some(60)),
            LIMIT_ABOVE_CEILING
        );
    }

    #[test]
    fn the_summary_says_who_held_the_sender_back() {
        let point = |proto, send_bps, ceiling| PointResult {
            row: csv::Row {
                requested_bps: 1000,
                send_bps,
                ..csv::Row::default()
            },
            rtt: RttStats::default(),
            sent: 1,
            echoed: 1,
            late: 0,
            bad: BadCounts::default(),
            sampling: Duration::from_secs(1),
            timed_out: false,
            drain: DRAIN_MIN_QUIET,
            generator_limit: generator_limit(proto, 1000, send_bps, ceiling),
            proto,
        };
        assert_eq!(point(Proto::Udp, 1000, Some(2000)).limit_note(), "");
        let udp_short = point(Proto::Udp, 500, Some(2000)).limit_note();
        assert!(
            udp_short.contains("GENERATOR-LIMITED: sent 50.0%"),
            "{udp_short}"
        );
        let tcp_short = point(Proto::Tcp, 500, Some(2000)).limit_note();
        assert!(
            !tcp_short.contains("GENERATOR") && tcp_short.contains("TCP flow control"),
            "{tcp_short}"
        );
        let above = point(Proto::Tcp, 500, Some(800)).limit_note();
        assert!(above.contains("calibrated ceiling"), "{above}");
    }

    #[test]
    fn drain_quiet_follows_the_largest_rtt_within_bounds() {
        assert_eq!(drain_quiet(Duration::ZERO), DRAIN_MIN_QUIET);
        assert_eq!(
            drain_quiet(Duration::from_millis(170)),
            Duration::from_millis(340)
        );
        assert_eq!(drain_quiet(Duration::from_secs(60)), DRAIN_MAX_QUIET);
    }
}
