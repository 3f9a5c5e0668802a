//! Outgoing messages: a slot per message, from lookup through fragments and retransmissions to
//! its outcome.

use core::net::SocketAddrV4;

use super::{Counters, Event, LossReason, MsgId, Node, IDS};
use crate::wire::{fragment_len, Header, Kind, FRAG_PAYLOAD};
use crate::{Config, MASTER, MAX_MESSAGE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxState {
    Free,
    /// Waiting for the master to say where `dest` is.
    Resolving,
    /// Fragments going out, then waiting for the ack.
    Sending,
    /// Finished; the outcome waits for `poll_event`.
    Done(Option<LossReason>),
}

pub(super) struct TxSlot {
    pub(super) state: TxState,
    pub(super) dest: u8,
    seq: u32,
    len: usize,
    /// Next fragment to send; `count()` once all are out.
    next_frag: usize,
    /// Transmissions (of lookups while resolving, of the whole message while sending).
    tries: u8,
    /// Resolving: when to ask again; sending with all fragments out: when the ack is overdue.
    due: u64,
    data: [u8; MAX_MESSAGE],
}

impl TxSlot {
    pub(super) const fn new() -> TxSlot {
        TxSlot {
            state: TxState::Free,
            dest: 0,
            seq: 0,
            len: 0,
            next_frag: 0,
            tries: 0,
            due: 0,
            data: [0; MAX_MESSAGE],
        }
    }

    /// Free again, its data left as it is (no 16 KiB temporary).
    pub(super) fn clear(&mut self) {
        self.state = TxState::Free;
        (
            self.dest,
            self.seq,
            self.len,
            self.next_frag,
            self.tries,
            self.due,
        ) = (0, 0, 0, 0, 0, 0);
    }

    fn count(&self) -> usize {
        self.len.div_ceil(FRAG_PAYLOAD)
    }

    fn id(&self) -> MsgId {
        MsgId {
            dest: self.dest,
            seq: self.seq,
        }
    }

    /// Takes a new message (`data` is 1..=MAX_MESSAGE bytes, checked by `send`).
    pub(super) fn load(&mut self, id: MsgId, data: &[u8], resolved: bool, now: u64) {
        self.dest = id.dest;
        self.seq = id.seq;
        self.len = data.len();
        self.data[..data.len()].copy_from_slice(data);
        self.tries = 0;
        self.due = now;
        if resolved {
            self.start_sending(now);
        } else {
            self.state = TxState::Resolving;
        }
    }

    pub(super) fn start_sending(&mut self, now: u64) {
        self.state = TxState::Sending;
        self.next_frag = 0;
        self.tries = 0;
        self.due = now;
    }

    /// Whether this slot waits for a lookup of `id` sent with nonce `nonce`.
    pub(super) fn resolving(&self, id: u8, nonce: u32) -> bool {
        self.state == TxState::Resolving && self.dest == id && self.seq == nonce
    }

    pub(super) fn give_up(&mut self, why: LossReason, c: &mut Counters) {
        if matches!(self.state, TxState::Resolving | TxState::Sending) {
            self.state = TxState::Done(Some(why));
            c.tx_lost += 1;
        }
    }

    pub(super) fn take_outcome(&mut self) -> Option<Event> {
        let TxState::Done(outcome) = self.state else {
            return None;
        };
        self.state = TxState::Free;
        Some(match outcome {
            None => Event::Delivered(self.id()),
            Some(why) => Event::Lost(self.id(), why),
        })
    }

    pub(super) fn due(&self) -> Option<u64> {
        match self.state {
            TxState::Resolving => Some(self.due),
            TxState::Sending if self.next_frag < self.count() => Some(0),
            TxState::Sending => Some(self.due),
            _ => None,
        }
    }

    /// Gives up or schedules a retransmission when the answer is overdue; returns the
    /// destination of a message given up for lack of an ack.
    pub(super) fn on_timeout(&mut self, now: u64, cfg: &Config, c: &mut Counters) -> Option<u8> {
        let all_out = self.next_frag >= self.count();
        let overdue = self.due <= now && self.tries >= cfg.max_tries;
        match self.state {
            TxState::Resolving if overdue => self.give_up(LossReason::MasterSilent, c),
            TxState::Sending if all_out && overdue => {
                self.give_up(LossReason::NoAck, c);
                return Some(self.dest);
            }
            TxState::Sending if all_out && self.due <= now => {
                self.next_frag = 0;
                c.tx_retransmits += 1;
            }
            _ => {}
        }
        None
    }

    /// The next datagram of this slot due at `now`: a lookup (to the master: `None` address) or
    /// a fragment.
    #[allow(clippy::too_many_arguments)] // the node's parts this slot reads, borrowed apart
    pub(super) fn poll_transmit(
        &mut self,
        now: u64,
        me: u8,
        session: u16,
        peers: &[Option<SocketAddrV4>; IDS],
        cfg: &Config,
        buf: &mut [u8],
        c: &mut Counters,
    ) -> Option<(Option<SocketAddrV4>, usize)> {
        match self.state {
            TxState::Resolving if self.due <= now && self.tries < cfg.max_tries => {
                self.tries += 1;
                self.due = now.saturating_add(cfg.rto_ms);
                let h = Header::control(Kind::Lookup, me, MASTER, self.seq);
                Some((None, h.emit(&[self.dest], buf)?))
            }
            TxState::Sending if self.next_frag < self.count() => {
                let Some(to) = peers[usize::from(self.dest)] else {
                    // The address was forgotten (another message to it was lost): ask again.
                    self.state = TxState::Resolving;
                    self.tries = 0;
                    self.due = now;
                    return None;
                };
                let frag = self.next_frag;
                let start = frag * FRAG_PAYLOAD;
                let h = Header {
                    kind: Kind::Data,
                    src: me,
                    dst: self.dest,
                    session,
                    seq: self.seq,
                    frag: frag as u8,
                    count: self.count() as u8,
                    total: self.len as u16,
                };
                let n = h.emit(&self.data[start..start + fragment_len(self.len, frag)], buf)?;
                self.next_frag += 1;
                if self.next_frag == self.count() {
                    self.tries += 1;
                    self.due = now.saturating_add(cfg.rto_ms);
                }
                c.tx_fragments += 1;
                Some((Some(to), n))
            }
            _ => None,
        }
    }
}

impl Node {
    /// An ack: completes the message it names, if it is still in flight.
    pub(super) fn on_ack(&mut self, h: &Header) -> bool {
        if self.id() != Some(h.dst) {
            return false;
        }
        let session = self.session;
        let slot = self.tx.iter_mut().find(|s| {
            s.state == TxState::Sending && s.dest == h.src && s.seq == h.seq && h.session == session
        });
        match slot {
            Some(slot) => {
                slot.state = TxState::Done(None);
                self.c.tx_delivered += 1;
            }
            None => self.c.rx_stale_acks += 1,
        }
        true
    }
}
