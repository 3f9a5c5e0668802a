//! The machinery of one point: the state its threads share, the receiver's phase clock and
//! counters, and the paced sender loop.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use super::track::{SendLog, Verdict};
use super::{
    drain_quiet, procutil, BadCounts, BenchConfig, BenchError, Phase, SampleStop, DRAIN_LIMIT,
    RECV_POLL, SEND_BATCH, SEND_MAX_SLEEP_NS,
};
use crate::clock::{monotonic_ns, sleep_until_ns};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// State shared by a point's sender, receiver and coordinator.
pub(super) struct Shared {
    pub(super) phase: AtomicU8,
    pub(super) logs: Vec<SendLog>,
    pub(super) size: usize,
    pub(super) sent: AtomicU64,
    pub(super) sent_sampling: AtomicU64,
    pub(super) samples: AtomicU64,
}

impl Shared {
    /// A point's shared state at `start` (ns): warming up, one send log of `window` entries per
    /// flow, nothing sent.
    pub(super) fn new(flows: u32, size: usize, window: u64, start: u64) -> Shared {
        Shared {
            phase: AtomicU8::new(Phase::Warmup as u8),
            logs: (0..flows).map(|f| SendLog::new(f, window, start)).collect(),
            size,
            sent: AtomicU64::new(0),
            sent_sampling: AtomicU64::new(0),
            samples: AtomicU64::new(0),
        }
    }

    pub(super) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub(super) fn set_phase(&self, p: Phase) {
        self.phase.fetch_max(p as u8, Ordering::AcqRel);
    }
}

/// What the receiver hands back.
#[derive(Default)]
pub(super) struct RecvOutcome {
    pub(super) samples_us: Vec<u64>,
    pub(super) sampling_ns: u64,
    pub(super) received_sampling: u64,
    pub(super) echoed: u64,
    pub(super) late: u64,
    pub(super) bad: BadCounts,
    pub(super) timed_out: bool,
    pub(super) drain_ns: u64,
    /// (idle, total) of the watched processes over the sampling phase, if any were watched.
    pub(super) proc_util: Option<(u64, u64)>,
}

/// The receiver's phase clock and counters, shared by the UDP and TCP receivers.
pub(super) struct RecvState<'a> {
    pub(super) shared: &'a Shared,
    warmup_end: u64,
    sample_start: u64,
    sampling_deadline: u64,
    cooldown_end: u64,
    drain_start: u64,
    /// Latest arrival of anything on the echo sockets (verified or not).
    last_echo: u64,
    /// Largest RTT of any verified echo in the point, ns.
    max_rtt_ns: u64,
    /// Processes whose CPU time is the utilisation (empty: none), and their CPU time when
    /// sampling began.
    util_pids: &'a [u32],
    util_start: Option<procutil::Snapshot>,
    stop: SampleStop,
    sampling_ns_for_duration: u64,
    sample_timeout_ns: u64,
    cooldown_ns: u64,
    pub(super) out: RecvOutcome,
}

impl<'a> RecvState<'a> {
    pub(super) fn new(
        shared: &'a Shared,
        cfg: &BenchConfig,
        start: u64,
        util_pids: &'a [u32],
    ) -> RecvState<'a> {
        RecvState {
            shared,
            warmup_end: start + cfg.warmup.as_nanos() as u64,
            sample_start: 0,
            sampling_deadline: u64::MAX,
            cooldown_end: u64::MAX,
            drain_start: u64::MAX,
            last_echo: 0,
            max_rtt_ns: 0,
            util_pids,
            util_start: None,
            stop: cfg.stop,
            sampling_ns_for_duration: match cfg.stop {
                SampleStop::Duration(d) => d.as_nanos() as u64,
                SampleStop::Samples(_) => 0,
            },
            sample_timeout_ns: cfg.sample_timeout.as_nanos() as u64,
            cooldown_ns: cfg.cooldown.as_nanos() as u64,
            out: RecvOutcome::default(),
        }
    }

    /// Advances the phase clock to `now`; returns the current phase.
    pub(super) fn tick(&mut self, now: u64) -> Phase {
        let phase = self.shared.phase();
        match phase {
            Phase::Warmup if now >= self.warmup_end => {
                self.sample_start = now;
                self.sampling_deadline = now
                    + match self.stop {
                        SampleStop::Duration(_) => self.sampling_ns_for_duration,
                        SampleStop::Samples(_) => self.sample_timeout_ns,
                    };
                if !self.util_pids.is_empty() {
                    self.util_start = Some(procutil::snapshot(self.util_pids, now));
                }
                self.shared.set_phase(Phase::Sampling);
                Phase::Sampling
            }
            Phase::Sampling => {
                let enough =
                    matches!(self.stop, SampleStop::Samples(n) if self.out.received_sampling >= n);
                if enough || now >= self.sampling_deadline {
                    self.out.timed_out = !enough && matches!(self.stop, SampleStop::Samples(_));
                    self.out.sampling_ns = now - self.sample_start;
                    if let Some(first) = &self.util_start {
                        let last = procutil::snapshot(self.util_pids, now);
                        self.out.proc_util = Some(procutil::between(first, &last));
                    }
                    self.cooldown_end = now + self.cooldown_ns;
                    self.shared.set_phase(Phase::Cooldown);
                    return Phase::Cooldown;
                }
                phase
            }
            Phase::Cooldown if now >= self.cooldown_end => {
                self.drain_start = now;
                self.shared.set_phase(Phase::Drain);
                Phase::Drain
            }
            Phase::Drain if self.drain_over(now) => {
                self.out.drain_ns = now - self.drain_start;
                self.shared.set_phase(Phase::Done);
                Phase::Done
            }
            p => p,
        }
    }

    /// Whether the drain, under way since `drain_start`, is over at `now` (see [`drain_quiet`]).
    fn drain_over(&self, now: u64) -> bool {
        let quiet = drain_quiet(Duration::from_nanos(self.max_rtt_ns)).as_nanos() as u64;
        now >= self.drain_start.max(self.last_echo) + quiet
            || now >= self.drain_start + DRAIN_LIMIT.as_nanos() as u64
    }

    /// Accounts one classified echo received at `now`.
    pub(super) fn account(&mut self, verdict: Verdict, now: u64) {
        self.last_echo = now;
        match verdict {
            Verdict::Sample { sent_ns } => {
                self.max_rtt_ns = self.max_rtt_ns.max(now.saturating_sub(sent_ns));
                self.out.echoed += 1;
                if self.shared.phase() == Phase::Sampling {
                    self.out.received_sampling += 1;
                    self.out
                        .samples_us
                        .push(now.saturating_sub(sent_ns) / 1_000);
                    self.shared.samples.fetch_add(1, Ordering::Relaxed);
                    // Like ipbench, sampling ends at exactly the requested sample count, not
                    // at the end of the receive batch that reached it.
                    if matches!(self.stop, SampleStop::Samples(n) if self.out.received_sampling >= n)
                    {
                        self.tick(now);
                    }
                }
            }
            Verdict::Late => {
                self.out.echoed += 1;
                self.out.late += 1;
            }
            Verdict::Bad(kind) => self.out.bad.add(kind),
        }
    }
}

/// The sender's view of a transport: put `count` packets of flow `flow` starting at `first_seq`
/// on the wire (recording each in the flow's log first); returns how many went.
pub(super) trait Transmit {
    fn send(&mut self, shared: &Shared, flow: usize, first_seq: u64, count: u64)
        -> io::Result<u64>;

    /// Pushes out anything accepted by `send` but not yet on the wire; returns whether nothing
    /// is left. Called after the sending phases end, so counted packets do reach the wire.
    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

/// The paced sender loop: each flow owes `elapsed * pps` packets; owed packets go out in
/// batches, and between batches the thread sleeps until the next packet is due (absolute
/// deadlines, so the schedule does not drift).
pub(super) fn pace<T: Transmit>(
    shared: &Shared,
    tx: &mut T,
    start: u64,
    pps_per_flow: f64,
) -> io::Result<()> {
    let flows = shared.logs.len();
    let mut sent = vec![0u64; flows];
    let ns_per_packet = 1e9 / pps_per_flow;
    loop {
        let phase = shared.phase();
        if phase >= Phase::Drain {
            while shared.phase() < Phase::Done && !tx.flush()? {
                sleep_until_ns(monotonic_ns() + 50_000);
            }
            return Ok(());
        }
        let now = monotonic_ns();
        let due = ((now - start) as f64 / ns_per_packet) as u64;
        let mut blocked = false;
        for (flow, sent_f) in sent.iter_mut().enumerate() {
            let owed = due.saturating_sub(*sent_f).min(SEND_BATCH);
            if owed == 0 {
                continue;
            }
            let went = tx.send(shared, flow, *sent_f, owed)?;
            *sent_f += went;
            shared.sent.fetch_add(went, Ordering::Relaxed);
            if shared.phase() == Phase::Sampling {
                shared.sent_sampling.fetch_add(went, Ordering::Relaxed);
            }
            blocked |= went < owed;
        }
        let behind = sent.iter().any(|&s| s < due);
        if blocked {
            // The socket (or the TCP window) is full: give the receiver side time to drain.
            sleep_until_ns(monotonic_ns() + 50_000);
        } else if !behind {
            let slowest = sent.iter().copied().min().unwrap_or(0);
            let next_due = start + ((slowest + 1) as f64 * ns_per_packet) as u64;
            sleep_until_ns(next_due.min(now + SEND_MAX_SLEEP_NS));
        }
    }
}

/// The receivers' event loop, for any transport: registers every flow's socket with one epoll
/// instance, then until the phase clock in `st` reaches `Done`, calls `on_ready(flow, st)` for
/// each flow with data. `register` names what is registered, for the error; `fail` builds the
/// transport's socket error.
pub(super) fn poll_flows<'a, S: AsFd>(
    sockets: &[S],
    register: &'static str,
    fail: &dyn Fn(&'static str, io::Error) -> BenchError,
    st: &mut RecvState<'a>,
    mut on_ready: impl FnMut(usize, &mut RecvState<'a>) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| fail("creating an epoll instance", e.into()))?;
    for (i, s) in sockets.iter().enumerate() {
        epoll
            .add(s, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .map_err(|e| fail(register, e.into()))?;
    }
    let mut events = vec![EpollEvent::empty(); sockets.len()];
    let timeout = EpollTimeout::try_from(RECV_POLL)
        .map_err(|e| fail("epoll timeout", io::Error::other(e)))?;
    while st.tick(monotonic_ns()) != Phase::Done {
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail("waiting in epoll", e.into())),
        };
        for ev in &events[..ready] {
            on_ready(ev.data() as usize, st)?;
        }
    }
    Ok(())
}
