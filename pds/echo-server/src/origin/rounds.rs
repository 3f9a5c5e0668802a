//! [`Origin`]'s round logic: when things are due, what requests hold, what echoes are.
use core::net::Ipv4Addr;

use echo_api::peers::PeerPlan;

use super::{
    pattern_byte, tcp_key, udp_key, Origin, OriginCounters, Peer, PeerCounters, RoundLine, Rtt,
    Stream, Verdict, SEEN_WORDS, UDP_HEADER,
};

impl Peer {
    fn new(addr: Ipv4Addr) -> Self {
        let total = PeerCounters {
            addr: u32::from(addr).into(),
            ..PeerCounters::default()
        };
        Peer {
            addr,
            total,
            rtt: Rtt::default(),
            sent: 0,
            seen: [0; SEEN_WORDS],
            at_start: total,
            round_rtt: Rtt::default(),
            stream: Stream::Waiting,
            skipped: false,
        }
    }

    fn seen_count(&self) -> u32 {
        self.seen.iter().map(|w| w.count_ones()).sum()
    }
}

fn minus(a: &PeerCounters, b: &PeerCounters) -> PeerCounters {
    PeerCounters {
        addr: a.addr,
        udp_sent: a.udp_sent - b.udp_sent,
        udp_echoed: a.udp_echoed - b.udp_echoed,
        udp_bad: a.udp_bad - b.udp_bad,
        udp_dup: a.udp_dup - b.udp_dup,
        udp_late: a.udp_late - b.udp_late,
        udp_lost: a.udp_lost - b.udp_lost,
        tcp_bytes_echoed: a.tcp_bytes_echoed - b.tcp_bytes_echoed,
        tcp_bad: a.tcp_bad - b.tcp_bad,
        tcp_failed: a.tcp_failed - b.tcp_failed,
        unresolved: a.unresolved - b.unresolved,
        ..PeerCounters::default()
    }
}

impl Origin {
    /// The role for `plan`; the first round starts at the first [`Origin::tick`].
    pub fn new(plan: &PeerPlan) -> Self {
        let mut peers = [Peer::new(Ipv4Addr::UNSPECIFIED); echo_api::peers::MAX_PEERS];
        for (peer, addr) in peers.iter_mut().zip(plan.peers()) {
            *peer = Peer::new(*addr);
        }
        Origin {
            load: plan.load,
            peers,
            count: plan.peers().len(),
            round: 0,
            round_start_us: 0,
        }
    }

    /// The peers' addresses, in configured order.
    pub fn peers(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.peers[..self.count].iter().map(|p| p.addr)
    }

    /// The load offered to each peer.
    pub fn load(&self) -> &echo_api::peers::Load {
        &self.load
    }

    /// The current round (0 before the first).
    pub fn round(&self) -> u32 {
        self.round
    }

    fn period_us(&self) -> u64 {
        u64::from(self.load.period_ms) * 1000
    }

    /// Ends the round if its period is over (giving each peer's [`RoundLine`] to `report`) and
    /// starts the next; `true` if a round started.
    pub fn tick(&mut self, now_us: u64, report: &mut impl FnMut(&RoundLine)) -> bool {
        if self.round != 0 && now_us < self.round_start_us + self.period_us() {
            return false;
        }
        if self.round != 0 {
            self.finish_round(report);
        }
        self.round += 1;
        self.round_start_us = now_us;
        for p in &mut self.peers[..self.count] {
            p.sent = 0;
            p.seen = [0; SEEN_WORDS];
            p.at_start = p.total;
            p.round_rtt = Rtt::default();
            p.stream = Stream::Waiting;
            p.skipped = false;
        }
        true
    }

    /// Skips peer `i` this round (before anything was sent to it): no requests, no stream, and
    /// the round counted `unresolved` instead of lost or failed.
    pub fn skip(&mut self, i: usize) {
        if let Some(p) = self.peers[..self.count].get_mut(i) {
            if !p.skipped && p.sent == 0 && p.stream == Stream::Waiting {
                p.skipped = true;
                p.stream = Stream::Skipped;
                p.total.unresolved += 1;
            }
        }
    }

    fn finish_round(&mut self, report: &mut impl FnMut(&RoundLine)) {
        let tcp = self.load.tcp_bytes > 0;
        for p in &mut self.peers[..self.count] {
            // Bad echoes cannot be trusted to say which request they answer, but each is an
            // answer: lost are the requests neither a good nor a bad echo came back for.
            let bad = p.total.udp_bad - p.at_start.udp_bad;
            let answered = u64::from(p.seen_count()) + bad;
            p.total.udp_lost += u64::from(p.sent).saturating_sub(answered);
            if tcp && !matches!(p.stream, Stream::Done | Stream::Failed | Stream::Skipped) {
                p.stream = Stream::Failed;
                p.total.tcp_failed += 1;
            }
            let done = p.stream == Stream::Done;
            report(&RoundLine {
                round: self.round,
                addr: p.addr,
                delta: minus(&p.total, &p.at_start),
                rtt: p.round_rtt,
                tcp_ok: tcp.then_some(done),
                throughput_kbps: if done { p.total.throughput_kbps } else { 0 },
                skipped: p.skipped,
            });
        }
    }

    fn udp_due_us(&self, seq: u32) -> u64 {
        self.round_start_us + u64::from(seq) * 1_000_000 / u64::from(self.load.udp_rate)
    }

    /// Whether peer `i` has a UDP request due at `now_us`.
    pub fn udp_due(&self, i: usize, now_us: u64) -> bool {
        self.peers[..self.count].get(i).is_some_and(|p| {
            self.round != 0
                && !p.skipped
                && p.sent < self.load.udp_count
                && self.udp_due_us(p.sent) <= now_us
        })
    }

    /// Peers configured.
    pub fn peer_count(&self) -> usize {
        self.count
    }

    /// Writes peer `i`'s next request, sent at `now_us`, into `buf` and counts it sent; its
    /// length (0 if `buf` is too short for it).
    pub fn udp_fill(&mut self, i: usize, now_us: u64, buf: &mut [u8]) -> usize {
        let size = usize::from(self.load.udp_size);
        let (Some(buf), Some(p)) = (buf.get_mut(..size), self.peers.get_mut(i)) else {
            return 0;
        };
        let seq = p.sent;
        buf[..4].copy_from_slice(&self.round.to_le_bytes());
        buf[4..8].copy_from_slice(&seq.to_le_bytes());
        buf[8..16].copy_from_slice(&now_us.to_le_bytes());
        let key = udp_key(p.addr, self.round, seq, now_us);
        for (j, b) in buf[UDP_HEADER..].iter_mut().enumerate() {
            *b = pattern_byte(key, j);
        }
        p.sent += 1;
        p.total.udp_sent += 1;
        size
    }

    /// Checks an echo on peer `i`'s socket, from the peer's echo port (`from_echo_port`) or
    /// not, arriving at `now_us`, and counts it.
    pub fn udp_echo(
        &mut self,
        i: usize,
        from_echo_port: bool,
        now_us: u64,
        data: &[u8],
    ) -> Verdict {
        let round = self.round;
        let size = usize::from(self.load.udp_size);
        let Some(p) = self.peers[..self.count].get_mut(i) else {
            return Verdict::Bad;
        };
        let verdict = check_udp(p, round, size, from_echo_port, now_us, data);
        match verdict {
            Verdict::Echoed(rtt) => {
                p.total.udp_echoed += 1;
                p.rtt.add(rtt);
                p.round_rtt.add(rtt);
            }
            Verdict::Bad => p.total.udp_bad += 1,
            Verdict::Duplicate => p.total.udp_dup += 1,
            Verdict::Late => p.total.udp_late += 1,
        }
        verdict
    }

    /// The peer whose TCP slot `now_us` is in (the round's period divided evenly), if TCP is
    /// configured.
    pub fn tcp_slot(&self, now_us: u64) -> Option<usize> {
        if self.round == 0 || self.load.tcp_bytes == 0 || self.count == 0 {
            return None;
        }
        let into = now_us.saturating_sub(self.round_start_us);
        let slot = (into * self.count as u64 / self.period_us()) as usize;
        (slot < self.count).then_some(slot)
    }

    /// Peer `i`'s stream this round.
    pub fn stream(&self, i: usize) -> Stream {
        self.peers.get(i).map_or(Stream::Failed, |p| p.stream)
    }

    /// Peer `i`'s stream is connecting from `now_us`.
    pub fn stream_start(&mut self, i: usize, now_us: u64) {
        if let Some(p) = self.peers[..self.count].get_mut(i) {
            p.stream = Stream::Running {
                start_us: now_us,
                sent: 0,
                checked: 0,
            };
        }
    }

    /// Peer `i`'s stream ended unfinished (reset, closed, its slot over).
    pub fn stream_failed(&mut self, i: usize) {
        if let Some(p) = self.peers[..self.count].get_mut(i) {
            if matches!(p.stream, Stream::Running { .. }) {
                p.stream = Stream::Failed;
                p.total.tcp_failed += 1;
            }
        }
    }

    /// Writes the next bytes of peer `i`'s stream into `buf` (without counting them sent);
    /// how many.
    pub fn stream_fill(&self, i: usize, buf: &mut [u8]) -> usize {
        let Some(Stream::Running { sent, .. }) = self.peers.get(i).map(|p| p.stream) else {
            return 0;
        };
        let n = buf.len().min((self.load.tcp_bytes - sent) as usize);
        let key = tcp_key(self.peers[i].addr, self.round);
        for (j, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(key, sent as usize + j);
        }
        n
    }

    /// `n` bytes of what [`Origin::stream_fill`] wrote were accepted by the socket.
    pub fn stream_sent(&mut self, i: usize, n: usize) {
        if let Some(Stream::Running { sent, .. }) = self.peers.get_mut(i).map(|p| &mut p.stream) {
            *sent = sent.saturating_add(n as u32);
        }
    }

    /// Checks echoed bytes of peer `i`'s stream, arriving at `now_us`; `true` once all are in
    /// (the stream is then [`Stream::Done`]).
    pub fn stream_check(&mut self, i: usize, now_us: u64, data: &[u8]) -> bool {
        let (round, total) = (self.round, self.load.tcp_bytes);
        let Some(p) = self.peers[..self.count].get_mut(i) else {
            return false;
        };
        let Stream::Running {
            start_us, checked, ..
        } = &mut p.stream
        else {
            return false;
        };
        let key = tcp_key(p.addr, round);
        let mut bad = 0u64;
        for (j, b) in data.iter().enumerate() {
            let at = *checked as usize + j;
            if at >= total as usize || *b != pattern_byte(key, at) {
                bad += 1;
            }
        }
        *checked = checked.saturating_add(data.len() as u32);
        p.total.tcp_bad += bad;
        p.total.tcp_bytes_echoed += data.len() as u64 - bad;
        if *checked < total {
            return false;
        }
        let us = now_us.saturating_sub(*start_us).max(1);
        p.total.throughput_kbps = u64::from(total) * 8 * 1000 / us;
        p.stream = Stream::Done;
        true
    }

    /// Microseconds from `now_us` until something is due: the next UDP request (of the peers
    /// not `blocked`: their socket is full, and what empties it wakes the PD), the next TCP
    /// slot, the end of the round.
    pub fn next_wake_us(&self, now_us: u64, blocked: &[bool]) -> u64 {
        if self.round == 0 {
            return 0;
        }
        let end = self.round_start_us + self.period_us();
        let mut at = end;
        for (i, p) in self.peers[..self.count].iter().enumerate() {
            let blocked = blocked.get(i).copied().unwrap_or(false);
            if !blocked && !p.skipped && p.sent < self.load.udp_count {
                at = at.min(self.udp_due_us(p.sent));
            }
        }
        if let Some(slot) = self.tcp_slot(now_us) {
            let next =
                self.round_start_us + (slot as u64 + 1) * self.period_us() / self.count as u64;
            at = at.min(next);
        }
        at.saturating_sub(now_us)
    }

    /// The role's counters.
    pub fn counters(&self) -> OriginCounters {
        OriginCounters {
            rounds: self.round.into(),
            peers: self.count as u64,
        }
    }

    /// Peer `i`'s cumulative counters.
    pub fn peer_counters(&self, i: usize) -> PeerCounters {
        let p = &self.peers[i.min(self.peers.len() - 1)];
        let (rtt_us_min, rtt_us_avg, rtt_us_max) = p.rtt.min_avg_max();
        PeerCounters {
            rtt_us_min,
            rtt_us_avg,
            rtt_us_max,
            ..p.total
        }
    }
}

fn check_udp(
    p: &mut Peer,
    round: u32,
    size: usize,
    from_echo_port: bool,
    now_us: u64,
    data: &[u8],
) -> Verdict {
    if !from_echo_port || data.len() != size || size < UDP_HEADER {
        return Verdict::Bad;
    }
    let word = |r: core::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&data[r]);
        u64::from_le_bytes(b)
    };
    let (their_round, seq, sent_us) = (word(0..4) as u32, word(4..8) as u32, word(8..16));
    let key = udp_key(p.addr, their_round, seq, sent_us);
    let pattern_ok = data[UDP_HEADER..]
        .iter()
        .enumerate()
        .all(|(j, b)| *b == pattern_byte(key, j));
    if !pattern_ok || sent_us > now_us {
        return Verdict::Bad;
    }
    if their_round != round {
        return if their_round != 0 && their_round < round {
            Verdict::Late
        } else {
            Verdict::Bad
        };
    }
    if seq >= p.sent {
        return Verdict::Bad;
    }
    let (word, bit) = (seq as usize / 64, seq % 64);
    if p.seen[word] & (1 << bit) != 0 {
        return Verdict::Duplicate;
    }
    p.seen[word] |= 1 << bit;
    Verdict::Echoed(now_us - sent_us)
}
