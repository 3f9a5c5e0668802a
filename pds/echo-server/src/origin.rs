//! The originating role's logic (`.echo_peers`, [`echo_api::peers`]): rounds of echo requests
//! to peers, and the checks of what comes back. No sockets here (see `origin_io`), so the rounds
//! run on the host in tests with a fake clock.
//!
//! A round starts every `period`. In it, for every peer at once:
//! * **UDP**: `udp_count` requests of `udp_size` bytes to the peer's port 1235, request `i` sent
//!   at `i / udp_rate` seconds into the round. A request is `[round u32][seq u32][sent_us u64]`
//!   (little-endian) followed by a pattern keyed by all three and the peer's address, so an
//!   echo with any byte changed is *bad*, one whose sequence number was already echoed this
//!   round is a *duplicate*, one from an earlier round is *late*; requests without an echo by the
//!   end of the round, good or bad, are *lost*. RTT = arrival − `sent_us` of good echoes (the pattern covers
//!   the send time, so it cannot be forged by the peer without being counted bad).
//! * **TCP**: one connection per peer to port 1236 in the peer's slot of the round (the round is
//!   divided evenly among the peers, so one dead peer cannot starve the others), carrying
//!   `tcp_bytes` of a keyed pattern and checking every echoed byte; a stream not echoed in full
//!   by the end of its slot *failed*. Throughput = echoed bits / (last byte − connect) of the
//!   round's stream, in kbit/s.
//!
//! What is reported: cumulative counters per peer ([`PeerCounters`], the stats page's `peer<i>.`
//! entries; `rtt_us_min/avg/max` over every good echo so far, `throughput_kbps` of the latest
//! completed stream), and per round and peer one line ([`RoundLine`]) with that round's numbers.
use core::fmt;
use core::net::Ipv4Addr;

use echo_api::peers::{Load, MAX_PEERS, MAX_UDP_PER_ROUND};

/// Bytes of a UDP request's header: round, sequence number, send time.
pub const UDP_HEADER: usize = 16;

netvm_api::counters! {
    /// One peer's cumulative results (entries `peer<i>.<field>` of the stats page).
    pub struct PeerCounters {
        /// The peer's IPv4 address as a number (10.0.1.10 = 0x0a00010a).
        pub addr: u64,
        /// UDP requests sent.
        pub udp_sent: u64,
        /// Good UDP echoes (right content, first of their sequence number, in their round).
        pub udp_echoed: u64,
        /// UDP echoes with wrong content or length, or from the wrong port.
        pub udp_bad: u64,
        /// UDP echoes of a request already echoed.
        pub udp_dup: u64,
        /// UDP echoes that came after their round ended.
        pub udp_late: u64,
        /// UDP requests without an echo (good or bad) by the end of their round.
        pub udp_lost: u64,
        /// Least RTT of a good UDP echo, microseconds (0: none yet).
        pub rtt_us_min: u64,
        /// Mean RTT of the good UDP echoes, microseconds.
        pub rtt_us_avg: u64,
        /// Greatest RTT of a good UDP echo, microseconds.
        pub rtt_us_max: u64,
        /// TCP bytes echoed back as sent.
        pub tcp_bytes_echoed: u64,
        /// TCP bytes echoed back different from what was sent.
        pub tcp_bad: u64,
        /// TCP streams not echoed in full within their slot (no connection, reset, too slow).
        pub tcp_failed: u64,
        /// Echo throughput of the latest complete TCP stream, kbit/s.
        pub throughput_kbps: u64,
        /// Rounds skipped because the peer's address did not resolve and another unresolved
        /// peer had the turn to ask for its own (see `origin_io`).
        pub unresolved: u64,
    }
}

netvm_api::counters! {
    /// The role's own counters (entries `origin.<field>`).
    pub struct OriginCounters {
        /// Rounds started.
        pub rounds: u64,
        /// Peers configured.
        pub peers: u64,
    }
}

/// Running RTT statistics without a heap: least, greatest, sum and count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rtt {
    min: u64,
    max: u64,
    sum: u64,
    n: u64,
}

impl Rtt {
    fn add(&mut self, us: u64) {
        self.min = if self.n == 0 { us } else { self.min.min(us) };
        self.max = self.max.max(us);
        self.sum = self.sum.saturating_add(us);
        self.n += 1;
    }

    /// `(min, avg, max)` in microseconds, zeros without samples.
    pub fn min_avg_max(&self) -> (u64, u64, u64) {
        match self.n {
            0 => (0, 0, 0),
            n => (self.min, self.sum / n, self.max),
        }
    }
}

/// The TCP stream of one peer in one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stream {
    /// Its slot has not begun.
    #[default]
    Waiting,
    /// Connecting or running since `start_us`: `sent` bytes given to the socket, `checked`
    /// echoed bytes compared (`bad` of them different).
    Running {
        /// When the connection was started.
        start_us: u64,
        /// Bytes handed to the socket.
        sent: u32,
        /// Echoed bytes compared.
        checked: u32,
    },
    /// Echoed in full.
    Done,
    /// Not echoed in full within its slot.
    Failed,
    /// Not tried: the round was skipped ([`Origin::skip`]).
    Skipped,
}

const SEEN_WORDS: usize = MAX_UDP_PER_ROUND as usize / 64;

/// One peer's state.
#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: Ipv4Addr,
    total: PeerCounters,
    rtt: Rtt,
    /// This round: requests sent, echoes seen (a bit per sequence number), counters at its
    /// start, RTTs, the stream.
    sent: u32,
    seen: [u64; SEEN_WORDS],
    at_start: PeerCounters,
    round_rtt: Rtt,
    stream: Stream,
    /// This round is skipped ([`Origin::skip`]).
    skipped: bool,
}

/// One peer's numbers for one round, printed as a console line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundLine {
    /// The round.
    pub round: u32,
    /// The peer.
    pub addr: Ipv4Addr,
    /// This round's counters (differences).
    pub delta: PeerCounters,
    /// This round's RTTs.
    pub rtt: Rtt,
    /// Whether the round's stream was echoed in full (`None`: no TCP configured).
    pub tcp_ok: Option<bool>,
    /// The stream's throughput (kbit/s), if it completed.
    pub throughput_kbps: u64,
    /// The round was skipped: the peer's address does not resolve.
    pub skipped: bool,
}

impl fmt::Display for RoundLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.delta;
        if self.skipped {
            return write!(
                f,
                "peer {} round {}: skipped, its address does not resolve (no ARP reply yet)",
                self.addr, self.round
            );
        }
        let (min, avg, max) = self.rtt.min_avg_max();
        write!(
            f,
            "peer {} round {}: udp {} sent {} echoed {} bad {} dup {} late {} lost, rtt min/avg/max {}/{}/{} us",
            self.addr, self.round, d.udp_sent, d.udp_echoed, d.udp_bad, d.udp_dup, d.udp_late,
            d.udp_lost, min, avg, max
        )?;
        match self.tcp_ok {
            None => Ok(()),
            Some(ok) => write!(
                f,
                "; tcp {} B echoed {} bad {}, {} kbit/s",
                d.tcp_bytes_echoed,
                d.tcp_bad,
                if ok { "complete" } else { "FAILED" },
                self.throughput_kbps
            ),
        }
    }
}

/// What a UDP echo was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Good, with its RTT.
    Echoed(u64),
    /// Wrong content, length or source.
    Bad,
    /// A sequence number already echoed.
    Duplicate,
    /// From an earlier round.
    Late,
}

/// The rounds of one originating PD.
#[derive(Debug)]
pub struct Origin {
    load: Load,
    peers: [Peer; MAX_PEERS],
    count: usize,
    /// The current round (1-based; 0: none started).
    round: u32,
    round_start_us: u64,
}

/// SplitMix64: a cheap, well-mixed function of a key (the patterns need no cryptography, only
/// that a changed byte changes what is expected).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Byte `i` of the pattern keyed `key`.
pub fn pattern_byte(key: u64, i: usize) -> u8 {
    (mix(key ^ (i as u64 / 8)) >> ((i % 8) * 8)) as u8
}

fn addr_key(addr: Ipv4Addr) -> u64 {
    u64::from(u32::from(addr)) << 16
}

fn udp_key(addr: Ipv4Addr, round: u32, seq: u32, sent_us: u64) -> u64 {
    mix((u64::from(round) << 32) | u64::from(seq)) ^ mix(sent_us) ^ addr_key(addr)
}

/// The key of round `round`'s TCP stream to `addr`.
pub fn tcp_key(addr: Ipv4Addr, round: u32) -> u64 {
    mix(u64::from(round) ^ 0x7c9_0000_0000) ^ addr_key(addr)
}

mod rounds;
#[cfg(test)]
mod tests;
