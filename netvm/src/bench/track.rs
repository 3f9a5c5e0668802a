//! Per-flow bookkeeping shared by a flow's sender and the receiver: when each packet was sent,
//! and which echoes were already seen. This is how every echo is classified as a sample, a late
//! echo, or a [`BadKind`].
//!
//! Like ipbench's `packet_list`, the send log is a ring indexed by sequence number: an echo whose
//! ring slot has since been reused for a newer packet is *late* (not a sample, not bad). The ring
//! is sized to hold at least two seconds of packets (see [`window_for`]).

use std::sync::atomic::{AtomicU64, Ordering};

use super::payload;

/// Bits of a slot word holding the generation (sequence number divided by the ring size).
const GEN_BITS: u32 = 20;
/// Send times are stored relative to the point's epoch in the remaining 44 bits (~4.9 hours),
/// which bounds how long one measurement point may last; see [`MAX_POINT_NS`].
pub const MAX_POINT_NS: u64 = (1 << (64 - GEN_BITS)) - 2;
/// Largest ring: bounds memory at 2 MiB of send log plus 2 MiB of answer log per flow.
const MAX_WINDOW: u64 = 1 << 18;
/// Smallest ring, so slow rates still tolerate bursts of late echoes.
const MIN_WINDOW: u64 = 1 << 12;
/// How many older sequence numbers with the same low bits a short payload (< 8 bytes) may
/// stand for; see [`Matcher::check`].
const SHORT_SEQ_CANDIDATES: u64 = 8;

/// Why an echo is a Bad_Packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadKind {
    /// The echo's length differs from the packet size (or it was truncated).
    Length,
    /// The echo names a sequence number this flow never sent.
    Unknown,
    /// The echo repeats one already received.
    Duplicate,
    /// The echo's bytes differ from what was sent (header, timestamp or pattern).
    Corrupt,
}

/// What one echo turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A verified echo of a packet sent at `sent_ns`.
    Sample {
        /// Send time, CLOCK_MONOTONIC ns.
        sent_ns: u64,
    },
    /// A verified-looking echo too old to match (its log slot was reused).
    Late,
    /// A malformed, corrupted, unknown or duplicate echo.
    Bad(BadKind),
}

/// Ring size for a flow sending `pps` packets per second: two seconds' worth, bounded.
pub fn window_for(pps: f64) -> u64 {
    let want = (pps * 2.0)
        .ceil()
        .max(MIN_WINDOW as f64)
        .min(MAX_WINDOW as f64) as u64;
    want.next_power_of_two()
}

/// The sender-written half: send times by sequence number, and the count of packets handed to
/// the socket.
pub struct SendLog {
    flow: u32,
    epoch_ns: u64,
    shift: u32,
    mask: u64,
    slots: Box<[AtomicU64]>,
    attempted: AtomicU64,
    answered: AtomicU64,
}

impl SendLog {
    /// A log for `flow` with a ring of `window` (a power of two) slots; times are relative to
    /// `epoch_ns`.
    pub fn new(flow: u32, window: u64, epoch_ns: u64) -> SendLog {
        debug_assert!(window.is_power_of_two());
        SendLog {
            flow,
            epoch_ns,
            shift: window.trailing_zeros(),
            mask: window - 1,
            slots: (0..window).map(|_| AtomicU64::new(0)).collect(),
            attempted: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// This log's flow id.
    pub fn flow(&self) -> u32 {
        self.flow
    }

    /// Ring size.
    pub fn window(&self) -> u64 {
        self.mask + 1
    }

    /// Records that `seq` is about to be sent at `now_ns`. Must precede the send, and
    /// [`SendLog::publish_attempted`] must cover `seq` before the packet can be echoed, so the
    /// receiver never sees an echo it cannot look up.
    pub fn record(&self, seq: u64, now_ns: u64) {
        let rel = now_ns.saturating_sub(self.epoch_ns).min(MAX_POINT_NS) + 1;
        let word = (rel << GEN_BITS) | ((seq >> self.shift) & ((1 << GEN_BITS) - 1));
        self.slots[(seq & self.mask) as usize].store(word, Ordering::Release);
    }

    /// Declares every sequence number below `upto` as possibly sent.
    pub fn publish_attempted(&self, upto: u64) {
        self.attempted.store(upto, Ordering::Release);
    }

    /// Sequence numbers below this may have been sent.
    pub fn attempted(&self) -> u64 {
        self.attempted.load(Ordering::Acquire)
    }

    /// How many echoes of this flow were verified (used by the TCP sender to bound the data in
    /// flight to the log's window).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// The send time of `seq` if its slot still holds it.
    fn lookup(&self, seq: u64) -> Option<u64> {
        let word = self.slots[(seq & self.mask) as usize].load(Ordering::Acquire);
        let gen = (seq >> self.shift) & ((1 << GEN_BITS) - 1);
        if word == 0 || word & ((1 << GEN_BITS) - 1) != gen {
            return None;
        }
        Some(self.epoch_ns + (word >> GEN_BITS) - 1)
    }
}

/// The receiver-owned half: which sequence numbers were already answered.
pub struct Matcher {
    size: usize,
    answered: Vec<u64>,
    scratch: Vec<u8>,
}

impl Matcher {
    /// A matcher for packets of `size` bytes against a log of `log.window()` slots.
    pub fn new(log: &SendLog, size: usize) -> Matcher {
        Matcher {
            size,
            answered: vec![0; log.window() as usize],
            scratch: Vec::with_capacity(size),
        }
    }

    /// Classifies one echo of `log`'s flow.
    ///
    /// Payloads shorter than 8 bytes carry only the low bits of the sequence number; such an echo
    /// is matched to the oldest unanswered packet, among the last few with those low bits, whose
    /// bytes it reproduces. Under heavy reordering or loss with tiny payloads this may attribute
    /// an echo to the wrong packet (skewing that RTT), and a very late tiny echo counts as bad.
    pub fn check(&mut self, log: &SendLog, echo: &[u8]) -> Verdict {
        if echo.len() != self.size {
            return Verdict::Bad(BadKind::Length);
        }
        let attempted = log.attempted();
        let (carried, bits) = payload::seq_bits(echo);
        if bits == 64 {
            let seq = carried;
            if seq >= attempted {
                return Verdict::Bad(BadKind::Unknown);
            }
            let Some(sent_ns) = log.lookup(seq) else {
                return Verdict::Late;
            };
            let idx = (seq & log.mask) as usize;
            if self.answered[idx] == seq + 1 {
                return Verdict::Bad(BadKind::Duplicate);
            }
            if !payload::matches(echo, log.flow, seq, sent_ns, &mut self.scratch) {
                return Verdict::Bad(BadKind::Corrupt);
            }
            self.accept(log, seq);
            return Verdict::Sample { sent_ns };
        }
        let modulus = 1u64 << bits;
        let Some(newest) = attempted.checked_sub(1) else {
            return Verdict::Bad(BadKind::Unknown);
        };
        if newest < carried {
            return Verdict::Bad(BadKind::Unknown);
        }
        let newest = newest - (newest - carried) % modulus;
        let floor = attempted.saturating_sub(log.window());
        let mut candidates = Vec::with_capacity(SHORT_SEQ_CANDIDATES as usize);
        let mut s = newest;
        while candidates.len() < SHORT_SEQ_CANDIDATES as usize && s >= floor {
            candidates.push(s);
            match s.checked_sub(modulus) {
                Some(next) => s = next,
                None => break,
            }
        }
        let mut saw_answered = false;
        for &seq in candidates.iter().rev() {
            let Some(sent_ns) = log.lookup(seq) else {
                continue;
            };
            if self.answered[(seq & log.mask) as usize] == seq + 1 {
                saw_answered = true;
                continue;
            }
            if payload::matches(echo, log.flow, seq, sent_ns, &mut self.scratch) {
                self.accept(log, seq);
                return Verdict::Sample { sent_ns };
            }
        }
        Verdict::Bad(if saw_answered {
            BadKind::Duplicate
        } else {
            BadKind::Unknown
        })
    }

    fn accept(&mut self, log: &SendLog, seq: u64) {
        self.answered[(seq & log.mask) as usize] = seq + 1;
        log.answered.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(log: &SendLog, seq: u64, size: usize, now: u64) -> Vec<u8> {
        log.record(seq, now);
        log.publish_attempted(seq + 1);
        let mut p = vec![0u8; size];
        payload::encode(&mut p, log.flow(), seq, now);
        p
    }

    #[test]
    fn sample_duplicate_unknown_corrupt_length() {
        let log = SendLog::new(2, 4096, 1_000);
        let mut m = Matcher::new(&log, 64);
        let p = sent(&log, 0, 64, 5_000);
        assert_eq!(m.check(&log, &p), Verdict::Sample { sent_ns: 5_000 });
        assert_eq!(m.check(&log, &p), Verdict::Bad(BadKind::Duplicate));
        let mut future = vec![0u8; 64];
        payload::encode(&mut future, 2, 9, 5_000);
        assert_eq!(m.check(&log, &future), Verdict::Bad(BadKind::Unknown));
        let mut q = sent(&log, 1, 64, 6_000);
        q[40] ^= 1;
        assert_eq!(m.check(&log, &q), Verdict::Bad(BadKind::Corrupt));
        assert_eq!(m.check(&log, &q[..63]), Verdict::Bad(BadKind::Length));
        let mut other_flow = vec![0u8; 64];
        payload::encode(&mut other_flow, 3, 1, 6_000);
        assert_eq!(m.check(&log, &other_flow), Verdict::Bad(BadKind::Corrupt));
    }

    #[test]
    fn reused_slot_is_late() {
        let log = SendLog::new(0, 4096, 0);
        let mut m = Matcher::new(&log, 32);
        let old = sent(&log, 0, 32, 10);
        sent(&log, 4096, 32, 20);
        assert_eq!(m.check(&log, &old), Verdict::Late);
    }

    #[test]
    fn one_byte_payloads_match_oldest_unanswered() {
        let log = SendLog::new(0, 4096, 0);
        let mut m = Matcher::new(&log, 1);
        let a = sent(&log, 3, 1, 10);
        for seq in 4..=259 {
            sent(&log, seq, 1, 10 + seq);
        }
        // seq 3 and 259 share their low byte; the first echo is taken as the older packet.
        assert_eq!(m.check(&log, &a), Verdict::Sample { sent_ns: 10 });
        assert_eq!(m.check(&log, &a), Verdict::Sample { sent_ns: 269 });
        assert_eq!(m.check(&log, &a), Verdict::Bad(BadKind::Duplicate));
    }
}
