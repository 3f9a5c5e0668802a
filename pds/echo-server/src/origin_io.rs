//! The originating role on smoltcp sockets: [`crate::origin::Origin`]'s rounds driven through a
//! UDP socket per peer (so that requests to a peer whose address never resolves, which smoltcp
//! keeps at the head of the socket's queue, hold up only that peer) and one TCP connection used
//! by each peer in turn; and its counters in the PD's stats page.
//!
//! Peers whose address does not resolve take turns to ask for it. smoltcp sends at most one ARP
//! request a second for the whole interface, to whichever socket asks first once that second is
//! over, and its sockets ask in a fixed order: with two such peers the first would take every
//! turn and the second never get its ARP request out, even after its host came up. So a peer
//! whose requests were still queued a round later counts as unresolved; one unresolved peer at a
//! time (the *prober*, for at least [`PROBE_HOLD_US`]) may keep sending, the others skip their
//! rounds (counted `unresolved`, neither lost nor failed).
use core::net::Ipv4Addr;

use echo_api::peers::{PeerPlan, MAX_PEERS};
use net_client::Counters;
use netvm_api::stats::{Counters as _, StatsError, StatsWriter, ENTRY_BYTES, HEADER_BYTES};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::Socket;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpAddress;

use crate::msg::MsgCounters;
use crate::origin::{Origin, OriginCounters, PeerCounters, RoundLine, Stream};
use crate::storage::{PeerRx, PeerTx, ORIGIN_TCP_BUFFER, PEER_UDP_RX, PEER_UDP_TX};
use crate::{TCP_ECHO_PORT, UDP_ECHO_PORT};

/// Local UDP port of peer `i`'s socket: `ORIGIN_UDP_PORT + i`.
pub const ORIGIN_UDP_PORT: u16 = 40_000;
/// Local TCP ports cycle through `ORIGIN_TCP_PORT..ORIGIN_TCP_PORT + 8192`, a new one per
/// stream, so a peer still holding the last connection's TIME-WAIT does not refuse the next.
pub const ORIGIN_TCP_PORT: u16 = 41_000;

/// How long an unresolved peer keeps the turn to ask for its address: over two of smoltcp's
/// one-second ARP silences, so that it gets at least one request out after the last prober's.
pub const PROBE_HOLD_US: u64 = 2_500_000;

/// The socket buffers the role may use, lent by [`crate::EchoServer::new`] until
/// [`crate::EchoServer::originate`] takes them.
pub(crate) struct Parts<'a> {
    pub(crate) udp: [udp::Socket<'a>; MAX_PEERS],
    pub(crate) tcp: tcp::Socket<'a>,
}

/// Most entries a stats page can need: the device's, the role's, messaging's and every peer's.
const MAX_VALUES: usize = Counters::NAMES.len()
    + OriginCounters::NAMES.len()
    + MsgCounters::NAMES.len()
    + MAX_PEERS * PeerCounters::NAMES.len();

impl<'a> Parts<'a> {
    /// The role's sockets over its buffers (none bound yet).
    pub(crate) fn new(
        (rx_meta, tx_meta): (
            &'a mut [[udp::PacketMetadata; PEER_UDP_RX]; MAX_PEERS],
            &'a mut [[udp::PacketMetadata; PEER_UDP_TX]; MAX_PEERS],
        ),
        (rx, tx): (&'a mut [PeerRx; MAX_PEERS], &'a mut [PeerTx; MAX_PEERS]),
        (tcp_rx, tcp_tx): (
            &'a mut [u8; ORIGIN_TCP_BUFFER],
            &'a mut [u8; ORIGIN_TCP_BUFFER],
        ),
    ) -> Self {
        let mut buffers = rx_meta.iter_mut().zip(tx_meta).zip(rx.iter_mut().zip(tx));
        let udp = core::array::from_fn(|_| {
            let ((rx_meta, tx_meta), (rx, tx)) = buffers.next().expect("MAX_PEERS of each buffer");
            udp::Socket::new(
                udp::PacketBuffer::new(&mut rx_meta[..], &mut rx[..]),
                udp::PacketBuffer::new(&mut tx_meta[..], &mut tx[..]),
            )
        });
        let tcp = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut tcp_rx[..]),
            tcp::SocketBuffer::new(&mut tcp_tx[..]),
        );
        Parts { udp, tcp }
    }
}

/// Prints a round's line (the PD's console).
pub type RoundLog = fn(&RoundLine);

/// The role on its sockets.
pub(crate) struct OriginIo<'a> {
    origin: Origin,
    udp: [SocketHandle; MAX_PEERS],
    tcp: SocketHandle,
    /// The peer whose stream the TCP socket carries.
    active: Option<usize>,
    stats: Option<(StatsWriter<'a>, usize)>,
    log: RoundLog,
    /// Peers whose requests were still queued at the end of a round they took part in.
    unresolved: [bool; MAX_PEERS],
    /// Peers that took part in (were not skipped from) the current round.
    tried: [bool; MAX_PEERS],
    /// The unresolved peer that may ask for its address, and since when.
    prober: Option<(usize, u64)>,
    /// Peers with a request due that their full socket could not take.
    blocked: [bool; MAX_PEERS],
}

/// Entries of the stats page: the device's `net.` group, `origin.`, with `msg` the messaging
/// role's `msg.` group (`crate::msg`), then `peer<i>.` groups for as many peers as fit
/// (returned) in a region of `region_len` bytes. Peers that do not fit are reported on the
/// console only. (A 4 KiB page holds 84 entries: 16 + 2 + 6 + 4 peers of 15.)
pub fn lay_out_stats(
    writer: &mut StatsWriter<'_>,
    region_len: usize,
    peers: usize,
    msg: bool,
) -> Result<usize, StatsError> {
    let entries = region_len.saturating_sub(HEADER_BYTES) / ENTRY_BYTES;
    let msg_entries = if msg { MsgCounters::NAMES.len() } else { 0 };
    let fixed = Counters::NAMES.len() + OriginCounters::NAMES.len() + msg_entries;
    let fit = peers.min(entries.saturating_sub(fixed) / PeerCounters::NAMES.len());
    writer.group::<Counters>(format_args!("net"))?;
    writer.group::<OriginCounters>(format_args!("origin"))?;
    if msg {
        writer.group::<MsgCounters>(format_args!("msg"))?;
    }
    for i in 0..fit {
        writer.group::<PeerCounters>(format_args!("peer{i}"))?;
    }
    writer.finish();
    Ok(fit)
}

impl<'a> OriginIo<'a> {
    /// Adds the role's sockets for `plan` to `sockets`.
    pub(crate) fn new(
        plan: &PeerPlan,
        parts: Parts<'a>,
        sockets: &mut SocketSet<'a>,
        stats: Option<(StatsWriter<'a>, usize)>,
        log: RoundLog,
    ) -> Self {
        let mut udp = [SocketHandle::default(); MAX_PEERS];
        for (i, (mut s, handle)) in parts.udp.into_iter().zip(&mut udp).enumerate() {
            if i < plan.peers().len() {
                // A fresh socket binds to a nonzero port.
                let _ = s.bind(ORIGIN_UDP_PORT + i as u16);
                *handle = sockets.add(s);
            }
        }
        let mut tcp = parts.tcp;
        // As the echo sockets (`server::echo_socket`): the stream is sent as fast as the window
        // allows and its echo acknowledged at once, without a delayed-ACK timer.
        tcp.set_nagle_enabled(false);
        tcp.set_ack_delay(None);
        OriginIo {
            origin: Origin::new(plan),
            udp,
            tcp: sockets.add(tcp),
            active: None,
            stats,
            log,
            unresolved: [false; MAX_PEERS],
            tried: [true; MAX_PEERS],
            prober: None,
            blocked: [false; MAX_PEERS],
        }
    }

    /// Runs the role's side of the sockets at `now_us`; `true` if anything moved.
    pub(crate) fn service(
        &mut self,
        now_us: u64,
        iface: &mut Interface,
        sockets: &mut SocketSet<'a>,
    ) -> bool {
        let log = self.log;
        let mut moved = false;
        if self.origin.tick(now_us, &mut |line| log(line)) {
            self.new_round(now_us, sockets);
            moved = true;
        }
        for i in 0..self.origin.peer_count() {
            moved |= self.service_udp(i, now_us, sockets);
        }
        moved | self.service_tcp(now_us, iface, sockets)
    }

    /// Microseconds until the role has something due.
    pub(crate) fn next_wake_us(&self, now_us: u64) -> u64 {
        self.origin.next_wake_us(now_us, &self.blocked)
    }

    /// A new round: the last round's connection is over; peers whose requests are still
    /// queued are unresolved, and their requests dropped rather than sent a round late, but
    /// for the prober's; the turn to probe passes on; unresolved peers without it skip the round.
    fn new_round(&mut self, now_us: u64, sockets: &mut SocketSet<'a>) {
        if self.active.take().is_some() {
            sockets.get_mut::<tcp::Socket>(self.tcp).abort();
        }
        let count = self.origin.peer_count();
        for i in 0..count {
            let stuck = sockets.get_mut::<udp::Socket>(self.udp[i]).send_queue() > 0;
            if self.tried[i] {
                self.unresolved[i] = stuck;
            }
        }
        let holds = |&(p, since): &(usize, u64)| {
            self.unresolved[p] && now_us.saturating_sub(since) < PROBE_HOLD_US
        };
        if !self.prober.as_ref().is_some_and(holds) {
            let after = self.prober.map_or(0, |(p, _)| p + 1);
            self.prober = (0..count)
                .map(|k| (after + k) % count)
                .find(|&p| self.unresolved[p])
                .map(|p| (p, now_us));
        }
        for i in 0..count {
            let prober = self.prober.is_some_and(|(p, _)| p == i);
            let s = sockets.get_mut::<udp::Socket>(self.udp[i]);
            if s.send_queue() > 0 && !prober {
                s.close();
                let _ = s.bind(ORIGIN_UDP_PORT + i as u16);
            }
            self.tried[i] = !self.unresolved[i] || prober;
            if !self.tried[i] {
                self.origin.skip(i);
            }
        }
    }

    fn service_udp(&mut self, i: usize, now_us: u64, sockets: &mut SocketSet<'a>) -> bool {
        let Some(peer) = self.origin.peers().nth(i) else {
            return false;
        };
        let s = sockets.get_mut::<udp::Socket>(self.udp[i]);
        let mut moved = false;
        while let Ok((data, meta)) = s.recv() {
            let from = meta.endpoint;
            let from_echo_port = from.addr == IpAddress::Ipv4(peer) && from.port == UDP_ECHO_PORT;
            self.origin.udp_echo(i, from_echo_port, now_us, data);
            moved = true;
        }
        let size = usize::from(self.origin.load().udp_size);
        self.blocked[i] = false;
        while self.origin.udp_due(i, now_us) {
            let Ok(buf) = s.send(size, (IpAddress::Ipv4(peer), UDP_ECHO_PORT)) else {
                // Full: egress makes room (and runs the server again), or the peer does not
                // resolve (smoltcp's own retry time wakes the PD).
                self.blocked[i] = true;
                break;
            };
            self.origin.udp_fill(i, now_us, buf);
            moved = true;
        }
        moved
    }

    fn service_tcp(
        &mut self,
        now_us: u64,
        iface: &mut Interface,
        sockets: &mut SocketSet<'a>,
    ) -> bool {
        let want = self.origin.tcp_slot(now_us);
        if self.active != want {
            if let Some(done) = self.active.take() {
                self.origin.stream_failed(done);
                sockets.get_mut::<tcp::Socket>(self.tcp).abort();
            }
            if let Some(k) = want.filter(|k| self.origin.stream(*k) == Stream::Waiting) {
                self.start_stream(k, now_us, iface, sockets);
            }
        }
        let s = sockets.get_mut::<tcp::Socket>(self.tcp);
        let Some(k) = self.active else {
            return false;
        };
        if !matches!(self.origin.stream(k), Stream::Running { .. }) {
            return false;
        }
        if s.state() == tcp::State::Closed {
            // Refused or reset.
            self.origin.stream_failed(k);
            return true;
        }
        let mut moved = false;
        if s.may_send() {
            let origin = &mut self.origin;
            if let Ok(n) = s.send(|buf| {
                let n = origin.stream_fill(k, buf);
                (n, n)
            }) {
                origin.stream_sent(k, n);
                moved |= n > 0;
            }
        }
        while s.can_recv() {
            let origin = &mut self.origin;
            let Ok(done) = s.recv(|data| (data.len(), origin.stream_check(k, now_us, data))) else {
                break;
            };
            moved = true;
            if done {
                s.close();
                break;
            }
        }
        moved
    }

    /// Connects peer `k`'s stream on a fresh copy of the socket: smoltcp keeps, per socket
    /// slot, the address whose ARP reply it last waited for, and would hold a new connection
    /// back for up to a second while the last peer's address is unresolved.
    fn start_stream(
        &mut self,
        k: usize,
        now_us: u64,
        iface: &mut Interface,
        sockets: &mut SocketSet<'a>,
    ) {
        let Some(peer) = self.origin.peers().nth(k) else {
            return;
        };
        let mut s = match sockets.remove(self.tcp) {
            Socket::Tcp(s) => s,
            // Never: the handle is this TCP socket's. Put it back unchanged.
            other => {
                self.tcp = sockets.add(other);
                return;
            }
        };
        s.abort();
        let turn = self.origin.round() as usize * MAX_PEERS + k;
        let local = ORIGIN_TCP_PORT + (turn % 8192) as u16;
        self.active = Some(k);
        self.origin.stream_start(k, now_us);
        let remote = (IpAddress::Ipv4(peer), TCP_ECHO_PORT);
        let connected = s.connect(iface.context(), remote, local);
        self.tcp = sockets.add(s);
        if connected.is_err() {
            // No source address yet (DHCP): the slot fails.
            self.origin.stream_failed(k);
        }
    }

    /// Publishes the device's counters `net`, the role's and messaging's `msg` (if
    /// [`lay_out_stats`] was told of it) into the stats page, if any.
    pub(crate) fn publish(&mut self, net: &Counters, msg: Option<MsgCounters>) {
        let Some((writer, fit)) = self.stats.as_mut() else {
            return;
        };
        let mut values = [0u64; MAX_VALUES];
        let origin = self.origin.counters();
        let mut n = 0;
        let fixed = net
            .values()
            .chain(origin.values())
            .chain(msg.iter().flat_map(|m| m.values()));
        for v in fixed {
            if let Some(slot) = values.get_mut(n) {
                *slot = v;
                n += 1;
            }
        }
        for i in 0..*fit {
            for v in self.origin.peer_counters(i).values() {
                if let Some(slot) = values.get_mut(n) {
                    *slot = v;
                    n += 1;
                }
            }
        }
        writer.publish(values[..n].iter().copied());
    }

    /// Peer `i`'s counters so far.
    pub(crate) fn peer_counters(&self, i: usize) -> PeerCounters {
        self.origin.peer_counters(i)
    }

    /// The peers.
    pub(crate) fn peers(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.origin.peers()
    }
}
