//! Incoming messages: reassembly slots and the per-source window of delivered sequence numbers.

use core::net::SocketAddrV4;

use super::{Counters, Node, RecvError};
use crate::wire::{fragment_len, Header, Kind, FRAG_PAYLOAD};
use crate::MAX_MESSAGE;

/// Sequence numbers a window remembers behind the newest.
const WINDOW: u32 = 64;

/// What a window says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    New,
    Duplicate,
    Stale,
}

/// The messages delivered from one source in one session: the newest sequence number and a
/// bitmap of the 64 before it (bit i: `top - i` delivered).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Window {
    known: bool,
    session: u16,
    top: u32,
    mask: u64,
}

impl Window {
    /// Nothing delivered yet.
    pub(super) const EMPTY: Window = Window {
        known: false,
        session: 0,
        top: 0,
        mask: 0,
    };

    fn check(&self, session: u16, seq: u32) -> Seen {
        if !self.known || session != self.session {
            return Seen::New;
        }
        let behind = self.top.wrapping_sub(seq);
        if behind >= 1 << 31 {
            Seen::New // ahead of the newest
        } else if behind >= WINDOW {
            Seen::Stale
        } else if self.mask & (1 << behind) != 0 {
            Seen::Duplicate
        } else {
            Seen::New
        }
    }

    fn mark(&mut self, session: u16, seq: u32) {
        if !self.known || session != self.session {
            *self = Window {
                known: true,
                session,
                top: seq,
                mask: 1,
            };
            return;
        }
        let behind = self.top.wrapping_sub(seq);
        if behind >= 1 << 31 {
            let ahead = seq.wrapping_sub(self.top);
            self.mask = if ahead >= WINDOW {
                0
            } else {
                self.mask << ahead
            };
            self.mask |= 1;
            self.top = seq;
        } else if behind < WINDOW {
            self.mask |= 1 << behind;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RxState {
    Free,
    Partial,
    Complete,
}

pub(super) struct RxSlot {
    state: RxState,
    src: u8,
    session: u16,
    seq: u32,
    total: u16,
    count: u8,
    /// Bit i: fragment i received.
    got: u16,
    deadline: u64,
    /// Completion order, so messages are received oldest first.
    pub(super) order: u64,
    data: [u8; MAX_MESSAGE],
}

impl RxSlot {
    pub(super) const fn new() -> RxSlot {
        RxSlot {
            state: RxState::Free,
            src: 0,
            session: 0,
            seq: 0,
            total: 0,
            count: 0,
            got: 0,
            deadline: 0,
            order: 0,
            data: [0; MAX_MESSAGE],
        }
    }

    /// Free again, its data left as it is (no 16 KiB temporary).
    pub(super) fn clear(&mut self) {
        self.state = RxState::Free;
        (self.src, self.session, self.seq, self.total) = (0, 0, 0, 0);
        (self.count, self.got, self.deadline, self.order) = (0, 0, 0, 0);
    }

    pub(super) fn complete(&self) -> bool {
        self.state == RxState::Complete
    }

    pub(super) fn deadline(&self) -> Option<u64> {
        (self.state == RxState::Partial).then_some(self.deadline)
    }

    /// Drops a partial message whose deadline has passed.
    pub(super) fn expire(&mut self, now: u64, c: &mut Counters) {
        if self.state == RxState::Partial && self.deadline <= now {
            self.state = RxState::Free;
            c.rx_expired += 1;
        }
    }

    fn is(&self, h: &Header) -> bool {
        self.state != RxState::Free
            && (self.src, self.session, self.seq) == (h.src, h.session, h.seq)
    }

    pub(super) fn take(&mut self, buf: &mut [u8]) -> Result<(u8, usize), RecvError> {
        let len = usize::from(self.total);
        let dst = buf.get_mut(..len).ok_or(RecvError::BufferTooSmall(len))?;
        dst.copy_from_slice(&self.data[..len]);
        self.state = RxState::Free;
        Ok((self.src, len))
    }
}

impl Node {
    /// A data fragment: checked against this node, the window and the message's other
    /// fragments, stored, and acknowledged with the whole message.
    pub(super) fn on_data(&mut self, now: u64, from: SocketAddrV4, h: &Header, p: &[u8]) -> bool {
        if self.id() != Some(h.dst) {
            return false;
        }
        let src = usize::from(h.src);
        match self.windows[src].check(h.session, h.seq) {
            Seen::Stale => {
                self.c.rx_stale += 1;
                return true;
            }
            Seen::Duplicate => {
                self.c.rx_dup_messages += 1;
                self.queue_ack(from, ack_for(h));
                return true;
            }
            Seen::New => {}
        }
        let Some(i) = self.rx_slot_for(now, h) else {
            self.c.rx_no_slot += 1;
            return true;
        };
        let slot = &mut self.rx[i];
        if (slot.total, slot.count) != (h.total, h.count) {
            self.c.rx_inconsistent += 1;
            return true;
        }
        if slot.got & (1 << h.frag) != 0 {
            self.c.rx_dup_fragments += 1;
            return true;
        }
        let start = usize::from(h.frag) * FRAG_PAYLOAD;
        let len = fragment_len(usize::from(h.total), usize::from(h.frag));
        slot.data[start..start + len].copy_from_slice(p);
        slot.got |= 1 << h.frag;
        self.c.rx_fragments += 1;
        if slot.got.count_ones() == u32::from(slot.count) {
            slot.state = RxState::Complete;
            self.completed += 1;
            slot.order = self.completed;
            self.windows[src].mark(h.session, h.seq);
            self.c.rx_messages += 1;
            // The sender may have moved: answer where the message came from, remember it there.
            self.peers[src] = Some(from);
            self.queue_ack(from, ack_for(h));
        }
        true
    }

    /// The slot reassembling `h`'s message, or a fresh one (a free slot, or one whose partial
    /// message has expired).
    fn rx_slot_for(&mut self, now: u64, h: &Header) -> Option<usize> {
        if let Some(i) = self.rx.iter().position(|s| s.is(h)) {
            return Some(i);
        }
        for s in &mut self.rx {
            s.expire(now, &mut self.c);
        }
        let i = self.rx.iter().position(|s| s.state == RxState::Free)?;
        let s = &mut self.rx[i];
        s.state = RxState::Partial;
        (s.src, s.session, s.seq) = (h.src, h.session, h.seq);
        (s.total, s.count, s.got) = (h.total, h.count, 0);
        s.deadline = now.saturating_add(self.cfg.reassembly_ms);
        Some(i)
    }
}

/// The ack of the message `h` is a fragment of.
fn ack_for(h: &Header) -> Header {
    Header {
        session: h.session,
        ..Header::control(Kind::Ack, h.dst, h.src, h.seq)
    }
}
