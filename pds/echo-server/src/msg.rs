//! The messaging role (`.echo_peers` with `msg=<master>`, [`echo_api::peers`]): the PD is a
//! node of `node_msg` on its smoltcp stack (`node_msg::smol`, UDP port [`node_msg::PORT`]). It
//! joins the master and prints its id; then every round (the `.echo_peers` period) it sends one
//! message to every peer that is a node (an address of [`netvm_api::lan`]'s shape names its
//! node id), and checks every message that arrives.
//!
//! Message `k` to a peer (`k` counts from 0 per peer) is [`node_msg::content`]'s pattern keyed
//! by this node's id, the peer's and `k`, [`BIG`] bytes for even `k` (three fragments) and
//! [`SMALL`] for odd; so message 0 is what `netvm node exchange --size 3000` expects.
//! A message that arrives is *received* if it is [`node_msg::content`]'s pattern from its
//! source to this node (any sequence number), *bad* if not; datagrams the node drops as
//! malformed or inconsistent count as bad too (not those for another node or incarnation: late
//! answers to an earlier join are normal). Outcomes of sent messages come from
//! the node: *delivered* (acknowledged) or *lost* (not confirmed: no ack, unknown id, ...).
//! A peer's message is only sent when the node has a free TX slot; otherwise that round skips it.
//! A message lost because the master knows no node of that id restarts the peer's numbering:
//! a node that joins (again) gets message 0 first. A join the master does not answer (it is
//! not up yet) or refuses is tried again every round, as a new incarnation. The PD never stops,
//! so it never leaves.
use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use echo_api::peers::MAX_PEERS;
use node_msg::{Config, Event, LossReason, Node, State, MAX_MESSAGE, PORT};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant;

/// Bytes of even-numbered messages: more than two fragments.
pub const BIG: usize = 3000;
/// Bytes of odd-numbered messages: one fragment.
pub const SMALL: usize = 64;

netvm_api::counters! {
    /// The role's counters (entries `msg.<field>` of the stats page).
    pub struct MsgCounters {
        /// This node's id (255 until joined).
        pub id: u64,
        /// Messages sent.
        pub sent: u64,
        /// Messages acknowledged by their destination.
        pub delivered: u64,
        /// Messages given up (not acknowledged, unknown or departed id, silent master).
        pub lost: u64,
        /// Messages received with the content their source and sequence number call for.
        pub received: u64,
        /// Messages received with other content, and datagrams dropped as malformed or
        /// inconsistent.
        pub bad: u64,
    }
}

/// One peer node's numbers (console only: the stats page has no room).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerMsgs {
    /// Its node id.
    pub id: u8,
    /// Messages sent to it.
    pub sent: u32,
    /// Of those, acknowledged.
    pub delivered: u32,
    /// Of those, given up.
    pub lost: u32,
    /// Good messages from it.
    pub received: u32,
    /// The sequence number of the next message to it.
    pub next_seq: u32,
}

/// What the role prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgLine<'a> {
    /// Joined: the node's id.
    Joined(u8),
    /// The join failed this way (the node's counters say what it saw); joining again.
    Rejoin(State, node_msg::Counters),
    /// The end of a round: totals and each peer's numbers.
    Round(u32, &'a MsgCounters, &'a [PeerMsgs]),
}

impl fmt::Display for MsgLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgLine::Joined(id) => write!(f, "node id {id}"),
            MsgLine::Rejoin(state, c) => write!(
                f,
                "node messaging: {state:?} ({} malformed, {} foreign datagrams), joining again",
                c.rx_malformed, c.rx_foreign
            ),
            MsgLine::Round(round, c, peers) => {
                write!(
                    f,
                    "msg round {round}: sent {} delivered {} lost {} received {} bad {}",
                    c.sent, c.delivered, c.lost, c.received, c.bad
                )?;
                for p in *peers {
                    write!(
                        f,
                        "; node {}: {} sent {} delivered {} lost {} received",
                        p.id, p.sent, p.delivered, p.lost, p.received
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Prints a line of the role (the PD's console).
pub type MsgLog = fn(&MsgLine<'_>);

/// The node ids of the peers at addresses of [`netvm_api::lan`]'s shape, each once.
pub fn peer_nodes(peers: &[Ipv4Addr]) -> ([PeerMsgs; MAX_PEERS], usize) {
    let mut out = [PeerMsgs::default(); MAX_PEERS];
    let mut n = 0;
    for (node, _) in peers.iter().filter_map(|a| netvm_api::lan::node_of_ip(*a)) {
        if !out[..n].iter().any(|p| p.id == node) {
            out[n].id = node;
            n += 1;
        }
    }
    (out, n)
}

/// The role on its socket.
pub(crate) struct Messaging<'a> {
    node: &'a mut Node,
    socket: SocketHandle,
    peers: [PeerMsgs; MAX_PEERS],
    count: usize,
    c: MsgCounters,
    period_us: u64,
    round: u32,
    next_round_us: u64,
    /// Where messages are built and received (the largest a node accepts).
    buf: &'a mut [u8; MAX_MESSAGE],
    log: MsgLog,
    /// The first incarnation's seed: the later ones' differ from it.
    seed: u32,
    /// Joins tried.
    joins: u32,
}

impl<'a> Messaging<'a> {
    /// Starts `node` (whatever it was) joining `master` in place, and adds `socket`, bound to
    /// [`PORT`].
    pub(crate) fn new(
        (node, buf): (&'a mut Node, &'a mut [u8; MAX_MESSAGE]),
        mut socket: udp::Socket<'a>,
        sockets: &mut SocketSet<'a>,
        (master, mac, seed): (Ipv4Addr, [u8; 6], u32),
        peers: &[Ipv4Addr],
        period_ms: u32,
        log: MsgLog,
    ) -> Self {
        node.rejoin_at(SocketAddrV4::new(master, PORT), mac, seed, Config::DEFAULT);
        // A fresh socket binds to a nonzero port.
        let _ = socket.bind(PORT);
        let (peers, count) = peer_nodes(peers);
        Messaging {
            node,
            socket: sockets.add(socket),
            peers,
            count,
            c: MsgCounters {
                id: u64::from(node_msg::MASTER),
                ..MsgCounters::default()
            },
            period_us: u64::from(period_ms) * 1000,
            round: 0,
            next_round_us: 0,
            buf,
            log,
            seed,
            joins: 1,
        }
    }

    /// Runs the node at `now`: what arrived, timers, outcomes, the round's messages, what is
    /// to be sent. `true` if anything moved.
    pub(crate) fn service(&mut self, now: Instant, sockets: &mut SocketSet<'a>) -> bool {
        let s = sockets.get_mut::<udp::Socket>(self.socket);
        let before = (self.c, self.node.counters());
        let mut moved = node_msg::smol::poll(self.node, s, now) > 0;
        if let (Some(id), false) = (self.node.id(), self.joined()) {
            self.c.id = u64::from(id);
            (self.log)(&MsgLine::Joined(id));
        }
        self.outcomes();
        self.receive();
        let now_us = now.total_micros().max(0) as u64;
        let failed = matches!(self.node.state(), State::MasterSilent | State::Refused(_));
        if failed && now_us >= self.next_round_us {
            self.next_round_us = now_us + self.period_us;
            self.rejoin();
            moved |= node_msg::smol::poll(self.node, s, now) > 0;
        }
        if self.joined() && now_us >= self.next_round_us {
            self.next_round_us = now_us + self.period_us;
            self.new_round(now_us);
            moved |= node_msg::smol::poll(self.node, s, now) > 0;
        }
        let n = self.node.counters();
        // Not `rx_foreign`: late answers to an earlier join or lookup are normal.
        let dropped = |c: node_msg::Counters| c.rx_malformed + c.rx_inconsistent;
        self.c.bad += dropped(n).saturating_sub(dropped(before.1));
        moved || self.c != before.0
    }

    /// A new incarnation of the node asks the master again.
    fn rejoin(&mut self) {
        (self.log)(&MsgLine::Rejoin(self.node.state(), self.node.counters()));
        self.joins += 1;
        self.node
            .rejoin(self.seed ^ self.joins.wrapping_mul(0x9e37_79b9));
    }

    fn joined(&self) -> bool {
        self.c.id != u64::from(node_msg::MASTER)
    }

    /// Microseconds after `now` when the node or the next round is due (`None`: nothing).
    pub(crate) fn next_wake_us(&self, now: Instant) -> Option<u64> {
        let now_us = now.total_micros().max(0) as u64;
        let node = node_msg::smol::poll_at(self.node)
            .map(|at| (at.total_micros().max(0) as u64).saturating_sub(now_us));
        let failed = matches!(self.node.state(), State::MasterSilent | State::Refused(_));
        let round = (self.joined() || failed).then(|| self.next_round_us.saturating_sub(now_us));
        match (node, round) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The counters so far.
    pub(crate) fn counters(&self) -> MsgCounters {
        self.c
    }

    /// Every peer node's numbers so far.
    pub(crate) fn peers(&self) -> &[PeerMsgs] {
        &self.peers[..self.count]
    }

    fn peer(&mut self, id: u8) -> Option<&mut PeerMsgs> {
        self.peers[..self.count].iter_mut().find(|p| p.id == id)
    }

    fn outcomes(&mut self) {
        while let Some(event) = self.node.poll_event() {
            let (dest, delivered, unknown) = match event {
                Event::Delivered(m) => (m.dest, true, false),
                Event::Lost(m, why) => (m.dest, false, why == LossReason::UnknownId),
            };
            if delivered {
                self.c.delivered += 1;
            } else {
                self.c.lost += 1;
            }
            if let Some(p) = self.peer(dest) {
                if delivered {
                    p.delivered += 1;
                } else {
                    p.lost += 1;
                }
                if unknown {
                    p.next_seq = 0;
                }
            }
        }
    }

    fn receive(&mut self) {
        let Some(me) = self.node.id() else {
            return;
        };
        // `buf` holds the largest message a node accepts, so no message is ever too big for it.
        while let Ok((src, n)) = self.node.try_recv(&mut self.buf[..]) {
            if node_msg::content::check(src, me, &self.buf[..n]).is_some() {
                self.c.received += 1;
                if let Some(p) = self.peer(src) {
                    p.received += 1;
                }
            } else {
                self.c.bad += 1;
            }
        }
    }

    /// Prints the last round's line and sends this round's messages.
    fn new_round(&mut self, now_us: u64) {
        if self.round > 0 {
            (self.log)(&MsgLine::Round(self.round, &self.c, self.peers()));
        }
        self.round += 1;
        let Some(me) = self.node.id() else {
            return;
        };
        for i in 0..self.count {
            let p = self.peers[i];
            if p.id == me || !self.node.can_send() {
                continue;
            }
            let seq = p.next_seq;
            let size = if seq.is_multiple_of(2) { BIG } else { SMALL };
            let msg = &mut self.buf[..size];
            node_msg::content::fill(me, p.id, seq, msg);
            if self.node.send(now_us / 1000, p.id, msg).is_ok() {
                self.peers[i].sent += 1;
                self.peers[i].next_seq = seq.wrapping_add(1);
                self.c.sent += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn peers_at_lan_addresses_are_nodes_each_once() {
        let peers = [
            Ipv4Addr::new(10, 0, 2, 10),
            Ipv4Addr::new(10, 0, 0, 1), // no LAN client address: not a node
            Ipv4Addr::new(10, 0, 2, 11), // node 2's client 1: node 2 again
            Ipv4Addr::new(10, 0, 7, 10),
        ];
        let (nodes, n) = peer_nodes(&peers);
        let ids: std::vec::Vec<u8> = nodes[..n].iter().map(|p| p.id).collect();
        assert_eq!(ids, [2, 7]);
    }

    #[test]
    fn lines_say_the_id_and_each_peers_numbers() {
        assert_eq!(MsgLine::Joined(3).to_string(), "node id 3");
        let c = MsgCounters {
            id: 3,
            sent: 4,
            delivered: 3,
            lost: 1,
            received: 2,
            bad: 0,
        };
        let p = PeerMsgs {
            id: 2,
            sent: 4,
            delivered: 3,
            lost: 1,
            received: 2,
            next_seq: 4,
        };
        assert_eq!(
            MsgLine::Round(5, &c, &[p]).to_string(),
            "msg round 5: sent 4 delivered 3 lost 1 received 2 bad 0; node 2: 4 sent 3 delivered 1 lost 2 received"
        );
    }
}
