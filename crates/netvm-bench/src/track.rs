//! Per-flow bookkeeping shared by a flow's sender and the receiver: when each packet was sent,
//! and which echoes were already seen. This is how every echo is classified as a sample, a late
//! echo, or a [`BadKind`].
//!
//! Like ipbench's `packet_list`, the send log is a ring indexed by sequence number: an echo whose
//! ring slot has since been reused for a newer packet is *late* (not a sample, not bad). The ring
//! is sized to hold at least two seconds of packets (see [`window_for`]).
//!
//! A late echo is still checked: its bytes must be exactly what the sender built for its flow,
//! sequence number and the send time it carries (which must lie between the point's start and
//! the send time of the newer packet that took its slot), and it must not repeat an echo already
//! seen. Which sequence numbers were answered is remembered for [`HISTORY_FACTOR`] ring lengths,
//! so a duplicate is caught up to that far back; an echo older than that is counted late without
//! the duplicate check (and a late echo shorter than 8 bytes, which names its packet only modulo
//! 256^len, is bad, as before).

use std::sync::atomic::{AtomicU64, Ordering};

use super::payload;

/// Bits of a slot word holding the generation (sequence number divided by the ring size).
const GEN_BITS: u32 = 20;
/// Send times are stored relative to the point's epoch in the remaining 44 bits (~4.9 hours),
/// which bounds how long one measurement point may last; see [`MAX_POINT_NS`].
pub const MAX_POINT_NS: u64 = (1 << (64 - GEN_BITS)) - 2;
/// Largest ring: bounds memory at 2 MiB of send log plus 512 KiB of answer bits per flow.
const MAX_WINDOW: u64 = 1 << 18;
/// Smallest ring, so slow rates still tolerate bursts of late echoes.
const MIN_WINDOW: u64 = 1 << 12;
/// How many older sequence numbers with the same low bits a short payload (< 8 bytes) may
/// stand for; see [`Matcher::check`].
const SHORT_SEQ_CANDIDATES: u64 = 8;
/// How many send-log ring lengths back the receiver remembers which echoes it has seen.
pub const HISTORY_FACTOR: u64 = 16;

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

    /// The send time of whatever packet now holds `seq`'s slot, if any.
    fn slot_time(&self, seq: u64) -> Option<u64> {
        let word = self.slots[(seq & self.mask) as usize].load(Ordering::Acquire);
        (word != 0).then(|| self.epoch_ns + (word >> GEN_BITS) - 1)
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

/// Which of the last `HISTORY_FACTOR × window` sequence numbers were answered: a ring of bits,
/// cleared as the sender moves on.
struct Answered {
    bits: Vec<u64>,
    /// Sequence numbers below this have had their bit cleared when they came into the ring;
    /// bits cover `[horizon - len, horizon)`.
    horizon: u64,
}

impl Answered {
    fn new(window: u64) -> Answered {
        Answered {
            bits: vec![0; (window * HISTORY_FACTOR / 64) as usize],
            horizon: 0,
        }
    }

    fn len(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    /// Brings sequence numbers below `attempted` into the ring, clearing their (stale) bits.
    fn advance(&mut self, attempted: u64) {
        if attempted <= self.horizon {
            return;
        }
        if attempted - self.horizon >= self.len() {
            self.bits.iter_mut().for_each(|w| *w = 0);
        } else {
            for seq in self.horizon..attempted {
                let i = seq % self.len();
                self.bits[(i / 64) as usize] &= !(1 << (i % 64));
            }
        }
        self.horizon = attempted;
    }

    /// Whether `seq` is recent enough for its bit to mean something.
    fn covers(&self, seq: u64) -> bool {
        seq < self.horizon && seq >= self.horizon.saturating_sub(self.len())
    }

    fn get(&self, seq: u64) -> bool {
        let i = seq % self.len();
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64) {
        let i = seq % self.len();
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
    }
}

/// The receiver-owned half: which sequence numbers were already answered.
pub struct Matcher {
    size: usize,
    answered: Answered,
    scratch: Vec<u8>,
}

impl Matcher {
    /// A matcher for packets of `size` bytes against a log of `log.window()` slots.
    pub fn new(log: &SendLog, size: usize) -> Matcher {
        Matcher {
            size,
            answered: Answered::new(log.window()),
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
        self.answered.advance(attempted);
        let (carried, bits) = payload::seq_bits(echo);
        if bits == 64 {
            let seq = carried;
            if seq >= attempted {
                return Verdict::Bad(BadKind::Unknown);
            }
            let Some(sent_ns) = log.lookup(seq) else {
                return self.check_late(log, seq, echo);
            };
            if self.answered.get(seq) {
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
            if self.answered.get(seq) {
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

    /// Classifies an echo of `seq` whose send-log slot was reused by a newer packet.
    fn check_late(&mut self, log: &SendLog, seq: u64, echo: &[u8]) -> Verdict {
        let remembered = self.answered.covers(seq);
        if remembered && self.answered.get(seq) {
            return Verdict::Bad(BadKind::Duplicate);
        }
        let genuine = match payload::timestamp(echo) {
            // The send time it carries must be plausible and every byte must follow from it.
            Some(sent_ns) => {
                let newer = log.slot_time(seq).unwrap_or(u64::MAX);
                (log.epoch_ns..=newer).contains(&sent_ns)
                    && payload::matches(echo, log.flow, seq, sent_ns, &mut self.scratch)
            }
            // Too short to carry the whole send time: the header prefix it does carry must
            // match, whatever the send time was.
            None => {
                let known = echo.len().min(payload::TIMESTAMP_OFFSET);
                self.scratch.resize(echo.len(), 0);
                payload::encode(&mut self.scratch, log.flow, seq, 0);
                self.scratch[..known] == echo[..known]
            }
        };
        if !genuine {
            return Verdict::Bad(BadKind::Corrupt);
        }
        if remembered {
            self.answered.set(seq);
        }
        Verdict::Late
    }

    fn accept(&mut self, log: &SendLog, seq: u64) {
        self.answered.set(seq);
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
    fn late_echoes_are_checked_for_content_and_duplicates() {
        let log = SendLog::new(0, 4096, 0);
        let mut m = Matcher::new(&log, 64);
        let on_time = sent(&log, 1, 64, 10);
        assert_eq!(m.check(&log, &on_time), Verdict::Sample { sent_ns: 10 });
        let late = sent(&log, 2, 64, 11);
        let mut corrupt_late = sent(&log, 3, 64, 12);
        corrupt_late[50] ^= 0x20;
        // A late echo claiming a send time after the packet that reused its slot is forged.
        let mut forged_time = vec![0u8; 64];
        payload::encode(&mut forged_time, 0, 4, 1_000_000);
        sent(&log, 4, 64, 13);
        for seq in 5..=4100 {
            sent(&log, seq, 64, 20 + seq);
        }
        assert_eq!(m.check(&log, &late), Verdict::Late);
        assert_eq!(m.check(&log, &late), Verdict::Bad(BadKind::Duplicate));
        assert_eq!(m.check(&log, &corrupt_late), Verdict::Bad(BadKind::Corrupt));
        assert_eq!(m.check(&log, &forged_time), Verdict::Bad(BadKind::Corrupt));
        // An on-time echo repeated after its slot was reused is a duplicate, not late.
        assert_eq!(m.check(&log, &on_time), Verdict::Bad(BadKind::Duplicate));
    }

    #[test]
    fn late_short_echoes_check_the_header_they_carry() {
        let log = SendLog::new(1, 4096, 0);
        let mut m = Matcher::new(&log, 12);
        let late = sent(&log, 0, 12, 10);
        let mut bad_magic = sent(&log, 1, 12, 11);
        bad_magic[9] ^= 1;
        for seq in 2..=4097 {
            sent(&log, seq, 12, 20 + seq);
        }
        assert_eq!(m.check(&log, &late), Verdict::Late);
        assert_eq!(m.check(&log, &late), Verdict::Bad(BadKind::Duplicate));
        assert_eq!(m.check(&log, &bad_magic), Verdict::Bad(BadKind::Corrupt));
    }

    #[test]
    fn echoes_older_than_the_history_are_late_without_duplicate_check() {
        let log = SendLog::new(0, 4096, 0);
        let mut m = Matcher::new(&log, 32);
        let ancient = sent(&log, 0, 32, 10);
        for seq in 1..=4096 * HISTORY_FACTOR + 1 {
            sent(&log, seq, 32, 20 + seq);
        }
        assert_eq!(m.check(&log, &ancient), Verdict::Late);
        assert_eq!(m.check(&log, &ancient), Verdict::Late);
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
