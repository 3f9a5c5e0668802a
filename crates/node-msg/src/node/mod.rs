//! [`Node`]: one member of the LAN: its join/leave requests to the master, its outgoing messages
//! ([`tx`]) and its incoming ones ([`rx`]).

mod rx;
mod tx;

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::wire::{Header, Kind, Refusal, MAX_DATAGRAM};
use crate::{Config, MASTER, MAX_MESSAGE, RX_SLOTS, TX_SLOTS};
use rx::{RxSlot, Window};
use tx::{TxSlot, TxState};

/// Acks waiting to be sent.
const ACK_QUEUE: usize = 16;
/// Number of node ids.
const IDS: usize = MASTER as usize;

netvm_api::counters! {
/// What a node saw: every dropped datagram has a reason.
pub struct Counters {
    /// Messages delivered to this node (complete, before `recv`).
    pub rx_messages: u64,
    /// Data fragments accepted.
    pub rx_fragments: u64,
    /// Datagrams that failed [`Header::parse`](crate::wire::Header::parse) (size, magic, kind,
    /// checksum or fields).
    pub rx_malformed: u64,
    /// Well-formed datagrams not meant for this node: another destination id, a master answer
    /// not from the master or not matching a request, data before joining.
    pub rx_foreign: u64,
    /// Fragments that disagree with the earlier fragments of their message.
    pub rx_inconsistent: u64,
    /// Fragments already received.
    pub rx_dup_fragments: u64,
    /// Messages already delivered (acknowledged again).
    pub rx_dup_messages: u64,
    /// Messages too far behind the sequence window (dropped unacknowledged).
    pub rx_stale: u64,
    /// Partial messages dropped because fragments were missing at the reassembly deadline.
    pub rx_expired: u64,
    /// Fragments of a new message dropped because every RX slot was busy.
    pub rx_no_slot: u64,
    /// Acks that matched no message in flight.
    pub rx_stale_acks: u64,
    /// Acks not sent because the ack queue was full (the sender will retransmit).
    pub ack_dropped: u64,
    /// Messages sent (first transmission).
    pub tx_messages: u64,
    /// Fragments sent, retransmissions included.
    pub tx_fragments: u64,
    /// Retransmission rounds.
    pub tx_retransmits: u64,
    /// Messages acknowledged.
    pub tx_delivered: u64,
    /// Messages given up.
    pub tx_lost: u64,
}
}

impl Counters {
    /// All zero, usable in a `const`.
    pub const ZERO: Counters = Counters {
        rx_messages: 0,
        rx_fragments: 0,
        rx_malformed: 0,
        rx_foreign: 0,
        rx_inconsistent: 0,
        rx_dup_fragments: 0,
        rx_dup_messages: 0,
        rx_stale: 0,
        rx_expired: 0,
        rx_no_slot: 0,
        rx_stale_acks: 0,
        ack_dropped: 0,
        tx_messages: 0,
        tx_fragments: 0,
        tx_retransmits: 0,
        tx_delivered: 0,
        tx_lost: 0,
    };
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Asking the master for an id.
    Joining,
    /// A member with this id.
    Joined(u8),
    /// The master refused the join.
    Refused(Refusal),
    /// The master did not answer the join.
    MasterSilent,
    /// Telling the master it leaves (no messages are sent or received).
    Leaving(u8),
    /// Left (or never joined).
    Left,
}

/// A message handed to [`Node::send`]: its destination and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgId {
    /// Destination node id.
    pub dest: u8,
    /// Sequence number (per destination).
    pub seq: u32,
}

/// Why a message was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// Not acknowledged after [`Config::max_tries`] transmissions.
    NoAck,
    /// The master knows no node with that id.
    UnknownId,
    /// The master did not answer the lookup.
    MasterSilent,
    /// This node left before the message was acknowledged.
    Left,
}

/// The outcome of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The destination acknowledged the whole message.
    Delivered(MsgId),
    /// The message was given up.
    Lost(MsgId, LossReason),
}

/// Why [`Node::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The node has no id (not joined yet, refused, or left).
    NotJoined,
    /// The message is empty or longer than [`MAX_MESSAGE`] bytes.
    Length(usize),
    /// The destination is this node or not a node id.
    BadDest(u8),
    /// Every TX slot holds a message in flight or an outcome not yet taken: take events
    /// ([`Node::poll_event`]) and try again.
    Busy,
}

/// Why [`Node::try_recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No complete message is waiting: try again later.
    WouldBlock,
    /// The next message has this many bytes, more than the buffer holds (it is kept).
    BufferTooSmall(usize),
}

/// A join or leave request in flight.
#[derive(Debug, Clone, Copy)]
struct Request {
    kind: Kind,
    nonce: u32,
    due: u64,
    tries: u8,
}

/// One node: join, send, receive, leave. See the crate docs for the contract.
pub struct Node {
    master: SocketAddrV4,
    mac: [u8; 6],
    cfg: Config,
    session: u16,
    nonce: u32,
    state: State,
    request: Option<Request>,
    peers: [Option<SocketAddrV4>; IDS],
    next_seq: [u32; IDS],
    windows: [Window; IDS],
    tx: [TxSlot; TX_SLOTS],
    rx: [RxSlot; RX_SLOTS],
    acks: [Option<(SocketAddrV4, Header)>; ACK_QUEUE],
    completed: u64,
    c: Counters,
}

impl Node {
    /// A node that will join the master at `master`, announcing `mac`. `seed` makes this
    /// incarnation's session and nonces differ from an earlier one's (a clock or random value).
    /// The join request goes out with the first [`Node::poll_transmit`]. A `const fn`, so a
    /// PD can keep a node in a static built at compile time (see [`Node::rejoin_at`]) rather
    /// than build one on its stack.
    pub const fn new(master: SocketAddrV4, mac: [u8; 6], seed: u32, cfg: Config) -> Node {
        let session = (seed ^ (seed >> 16)) as u16;
        Node {
            master,
            mac,
            cfg,
            session,
            nonce: seed.wrapping_mul(0x9e37_79b9),
            state: State::Joining,
            request: Some(Request {
                kind: Kind::Join,
                nonce: seed,
                due: 0,
                tries: 0,
            }),
            peers: [None; IDS],
            next_seq: [1; IDS],
            windows: [Window::EMPTY; IDS],
            tx: [const { TxSlot::new() }; TX_SLOTS],
            rx: [const { RxSlot::new() }; RX_SLOTS],
            acks: [None; ACK_QUEUE],
            completed: 0,
            c: Counters::ZERO,
        }
    }

    /// [`Node::rejoin`], but to the master at `master`, announcing `mac`, with `cfg`: for a
    /// node built at compile time, which knows none of them then.
    pub fn rejoin_at(&mut self, master: SocketAddrV4, mac: [u8; 6], seed: u32, cfg: Config) {
        (self.master, self.mac, self.cfg) = (master, mac, cfg);
        self.rejoin(seed);
    }

    /// Starts over in place as a new incarnation seeded `seed`, as [`Node::new`] with the same
    /// master, MAC and config would, but without a node-sized temporary (a PD's stack need not
    /// hold a second node): everything in flight or held is dropped without an outcome, the
    /// counters carry on. For a node whose join failed ([`State::MasterSilent`],
    /// [`State::Refused`]) to try again.
    pub fn rejoin(&mut self, seed: u32) {
        self.session = (seed ^ (seed >> 16)) as u16;
        self.nonce = seed.wrapping_mul(0x9e37_79b9);
        self.state = State::Joining;
        self.request = Some(Request {
            kind: Kind::Join,
            nonce: seed,
            due: 0,
            tries: 0,
        });
        self.peers = [None; IDS];
        self.next_seq = [1; IDS];
        self.windows = [Window::EMPTY; IDS];
        self.tx.iter_mut().for_each(TxSlot::clear);
        self.rx.iter_mut().for_each(RxSlot::clear);
        self.acks = [None; ACK_QUEUE];
        self.completed = 0;
    }

    /// This node's id, once joined.
    pub fn id(&self) -> Option<u8> {
        match self.state {
            State::Joined(id) => Some(id),
            _ => None,
        }
    }

    /// Where the node is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// This incarnation's session number (carried in its data fragments).
    pub fn session(&self) -> u16 {
        self.session
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.c
    }

    /// The address known for node `id` (from a lookup or from its messages).
    pub fn peer(&self, id: u8) -> Option<SocketAddrV4> {
        *self.peers.get(usize::from(id))?
    }

    /// Starts leaving: messages still in flight are reported [`LossReason::Left`], nothing more
    /// is sent or received, and the master is told (retried like a join); [`State::Left`] when
    /// it answers or after [`Config::max_tries`].
    pub fn leave(&mut self) {
        for slot in &mut self.tx {
            slot.give_up(LossReason::Left, &mut self.c);
        }
        self.state = match self.state {
            State::Joined(id) => {
                self.nonce = self.nonce.wrapping_add(1);
                self.request = Some(Request {
                    kind: Kind::Leave,
                    nonce: self.nonce,
                    due: 0,
                    tries: 0,
                });
                State::Leaving(id)
            }
            State::Leaving(id) => State::Leaving(id),
            _ => {
                self.request = None;
                State::Left
            }
        };
    }

    /// Handles one datagram that arrived from `from`. Never fails: what is wrong is counted.
    pub fn handle_datagram(&mut self, now: u64, from: SocketAddrV4, bytes: &[u8]) {
        let (h, payload) = match Header::parse(bytes) {
            Ok(p) => p,
            Err(_) => {
                self.c.rx_malformed += 1;
                return;
            }
        };
        let ok = match h.kind {
            Kind::Data => self.on_data(now, from, &h, payload),
            Kind::Ack => self.on_ack(&h),
            _ if from != self.master => false,
            Kind::JoinOk | Kind::JoinRefused | Kind::LeaveOk => self.on_answer(&h, payload),
            Kind::LookupOk | Kind::LookupUnknown => self.on_lookup(now, &h, payload),
            Kind::Join | Kind::Leave | Kind::Lookup => false,
        };
        if !ok {
            self.c.rx_foreign += 1;
        }
    }

    /// A join or leave answer from the master: valid only for the request in flight.
    fn on_answer(&mut self, h: &Header, payload: &[u8]) -> bool {
        let Some(req) = self.request.filter(|r| r.nonce == h.seq) else {
            return false;
        };
        self.state = match (req.kind, h.kind) {
            (Kind::Join, Kind::JoinOk) => State::Joined(h.dst),
            (Kind::Join, Kind::JoinRefused) => match Refusal::from_u8(payload[0]) {
                Some(r) => State::Refused(r),
                None => return false,
            },
            (Kind::Leave, Kind::LeaveOk) => State::Left,
            _ => return false,
        };
        self.request = None;
        true
    }

    /// A lookup answer: resolves (or gives up) every message waiting for that id.
    fn on_lookup(&mut self, now: u64, h: &Header, payload: &[u8]) -> bool {
        let id = payload[0];
        if self.id().is_none() || id == MASTER || !self.tx.iter().any(|s| s.resolving(id, h.seq)) {
            return false;
        }
        if h.kind == Kind::LookupOk {
            let ip = Ipv4Addr::new(payload[1], payload[2], payload[3], payload[4]);
            let port = u16::from_be_bytes([payload[5], payload[6]]);
            self.peers[usize::from(id)] = Some(SocketAddrV4::new(ip, port));
        }
        for slot in &mut self.tx {
            if slot.state == TxState::Resolving && slot.dest == id {
                if h.kind == Kind::LookupOk {
                    slot.start_sending(now);
                } else {
                    slot.give_up(LossReason::UnknownId, &mut self.c);
                }
            }
        }
        true
    }

    /// Processes what is due at `now`: retransmissions, given-up messages and requests, expired
    /// partial messages.
    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(req) = self
            .request
            .filter(|r| r.due <= now && r.tries >= self.cfg.max_tries)
        {
            self.request = None;
            self.state = match req.kind {
                Kind::Join => State::MasterSilent,
                _ => State::Left,
            };
        }
        for slot in &mut self.tx {
            if let Some(dest) = slot.on_timeout(now, &self.cfg, &mut self.c) {
                // Whoever had that id may be gone: ask the master again next time.
                self.peers[usize::from(dest)] = None;
            }
        }
        for slot in &mut self.rx {
            slot.expire(now, &mut self.c);
        }
    }

    /// When [`Node::handle_timeout`] next has work (`None`: nothing is pending).
    pub fn poll_timeout(&self) -> Option<u64> {
        let req = self.request.map(|r| r.due);
        let tx = self.tx.iter().filter_map(|s| s.due());
        let rx = self.rx.iter().filter_map(|s| s.deadline());
        req.into_iter().chain(tx).chain(rx).min()
    }

    /// The next datagram to send, written into `buf` (at least [`MAX_DATAGRAM`] bytes), as its
    /// destination and length; `None` when nothing is due at `now`. Call until `None`.
    pub fn poll_transmit(&mut self, now: u64, buf: &mut [u8]) -> Option<(SocketAddrV4, usize)> {
        let buf = buf.get_mut(..MAX_DATAGRAM)?;
        if let Some((to, h)) = self.acks.iter_mut().find_map(Option::take) {
            return Some((to, h.emit(&[], buf)?));
        }
        if let Some(out) = self.poll_request(now, buf) {
            return Some(out);
        }
        let me = self.id()?;
        let (peers, session, cfg) = (&self.peers, self.session, &self.cfg);
        for slot in &mut self.tx {
            let out = slot.poll_transmit(now, me, session, peers, cfg, buf, &mut self.c);
            if let Some((to, n)) = out {
                return Some((to.unwrap_or(self.master), n));
            }
        }
        None
    }

    fn poll_request(&mut self, now: u64, buf: &mut [u8]) -> Option<(SocketAddrV4, usize)> {
        let req = self.request.as_mut().filter(|r| r.due <= now)?;
        if req.tries >= self.cfg.max_tries {
            return None;
        }
        req.tries += 1;
        req.due = now.saturating_add(self.cfg.rto_ms);
        let n = match (req.kind, self.state) {
            (Kind::Leave, State::Leaving(id)) => {
                Header::control(Kind::Leave, id, MASTER, req.nonce).emit(&[], buf)?
            }
            _ => Header::control(Kind::Join, MASTER, MASTER, req.nonce).emit(&self.mac, buf)?,
        };
        Some((self.master, n))
    }

    /// Queues `data` for node `dest`; its outcome comes later from [`Node::poll_event`].
    pub fn send(&mut self, now: u64, dest: u8, data: &[u8]) -> Result<MsgId, SendError> {
        let me = self.id().ok_or(SendError::NotJoined)?;
        if data.is_empty() || data.len() > MAX_MESSAGE {
            return Err(SendError::Length(data.len()));
        }
        if dest == me || dest == MASTER {
            return Err(SendError::BadDest(dest));
        }
        let slot = self
            .tx
            .iter_mut()
            .find(|s| s.state == TxState::Free)
            .ok_or(SendError::Busy)?;
        let d = usize::from(dest);
        let seq = self.next_seq[d];
        self.next_seq[d] = seq.wrapping_add(1);
        let id = MsgId { dest, seq };
        slot.load(id, data, self.peers[d].is_some(), now);
        self.c.tx_messages += 1;
        Ok(id)
    }

    /// Takes the outcome of one message, if one is known.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.tx.iter_mut().find_map(TxSlot::take_outcome)
    }

    /// Messages sent and not yet acknowledged or given up.
    pub fn in_flight(&self) -> usize {
        let busy = |s: &&TxSlot| matches!(s.state, TxState::Resolving | TxState::Sending);
        self.tx.iter().filter(busy).count()
    }

    /// Whether `send` would find a free TX slot.
    pub fn can_send(&self) -> bool {
        self.tx.iter().any(|s| s.state == TxState::Free)
    }

    /// Copies the oldest complete message into `buf` and returns its source id and length.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<(u8, usize), RecvError> {
        let slot = self
            .rx
            .iter_mut()
            .filter(|s| s.complete())
            .min_by_key(|s| s.order)
            .ok_or(RecvError::WouldBlock)?;
        slot.take(buf)
    }

    /// Queues an ack (dropped and counted when the queue is full: the sender retransmits).
    fn queue_ack(&mut self, to: SocketAddrV4, h: Header) {
        match self.acks.iter_mut().find(|a| a.is_none()) {
            Some(free) => *free = Some((to, h)),
            None => self.c.ack_dropped += 1,
        }
    }
}
