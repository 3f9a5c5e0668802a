//! [`Master`]: the table of node ids and the answers to join, leave and lookup requests.

use core::net::SocketAddrV4;

use netvm_api::lan::{node_of_ip, node_of_mac};

use crate::wire::{Header, Kind, Refusal, MAX_DATAGRAM};
use crate::MASTER;

/// Answers waiting to be sent.
const REPLY_QUEUE: usize = 32;
/// Number of node ids.
const IDS: usize = MASTER as usize;

netvm_api::counters! {
/// What the master saw.
pub struct MasterCounters {
    /// Joins answered with a new id.
    pub joins: u64,
    /// Joins repeated from an address that already has an id (answered with that id).
    pub rejoins: u64,
    /// Joins refused (table full).
    pub refused: u64,
    /// Members removed by a leave.
    pub leaves: u64,
    /// Lookups answered.
    pub lookups: u64,
    /// Datagrams that failed [`Header::parse`](crate::wire::Header::parse).
    pub malformed: u64,
    /// Well-formed datagrams the master does not serve: node-to-node kinds, answers, leaves
    /// and lookups from an address that is not the member with that id.
    pub foreign: u64,
    /// Answers not sent because the reply queue was full (the node asks again).
    pub reply_dropped: u64,
}
}

/// A queued answer.
#[derive(Debug, Clone, Copy)]
struct Reply {
    to: SocketAddrV4,
    header: Header,
    payload: [u8; 7],
    len: usize,
}

/// The master of a LAN: who has which id, and where. Sans-IO like [`crate::Node`].
pub struct Master {
    table: [Option<SocketAddrV4>; IDS],
    capacity: usize,
    replies: [Option<Reply>; REPLY_QUEUE],
    c: MasterCounters,
}

impl Master {
    /// A master that gives out at most `capacity` ids at once (at most 255).
    pub fn new(capacity: usize) -> Master {
        Master {
            table: [None; IDS],
            capacity: capacity.min(IDS),
            replies: [None; REPLY_QUEUE],
            c: MasterCounters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> MasterCounters {
        self.c
    }

    /// The members: `(id, address)`, lowest id first.
    pub fn members(&self) -> impl Iterator<Item = (u8, SocketAddrV4)> + '_ {
        self.table
            .iter()
            .enumerate()
            .filter_map(|(id, a)| Some((id as u8, (*a)?)))
    }

    /// Handles one request from `from`. Never fails: what is wrong is counted.
    pub fn handle_datagram(&mut self, from: SocketAddrV4, bytes: &[u8]) {
        let Ok((h, payload)) = Header::parse(bytes) else {
            self.c.malformed += 1;
            return;
        };
        let member =
            |t: &[Option<SocketAddrV4>; IDS]| t.get(usize::from(h.src)) == Some(&Some(from));
        match h.kind {
            Kind::Join => self.join(from, h.seq, payload),
            Kind::Leave if member(&self.table) => {
                self.table[usize::from(h.src)] = None;
                self.c.leaves += 1;
                self.reply(
                    from,
                    Header::control(Kind::LeaveOk, MASTER, h.src, h.seq),
                    &[],
                );
            }
            Kind::Leave if self.table[usize::from(h.src)].is_none() => {
                // Already gone (our LeaveOk was lost): say so again.
                self.reply(
                    from,
                    Header::control(Kind::LeaveOk, MASTER, h.src, h.seq),
                    &[],
                );
            }
            Kind::Lookup if member(&self.table) => self.lookup(from, &h, payload[0]),
            _ => self.c.foreign += 1,
        }
    }

    fn join(&mut self, from: SocketAddrV4, nonce: u32, mac: &[u8]) {
        if let Some(id) = self.table.iter().position(|a| *a == Some(from)) {
            self.c.rejoins += 1;
            return self.reply(
                from,
                Header::control(Kind::JoinOk, MASTER, id as u8, nonce),
                &[],
            );
        }
        let mac: [u8; 6] = mac.try_into().unwrap_or_default();
        let preferred = node_of_ip(*from.ip())
            .or_else(|| node_of_mac(mac))
            .map(|(node, _)| usize::from(node))
            .filter(|&n| self.table[n].is_none());
        let full = self.members().count() >= self.capacity;
        match preferred.or_else(|| self.table.iter().position(Option::is_none)) {
            Some(id) if !full => {
                self.table[id] = Some(from);
                self.c.joins += 1;
                self.reply(
                    from,
                    Header::control(Kind::JoinOk, MASTER, id as u8, nonce),
                    &[],
                );
            }
            _ => {
                self.c.refused += 1;
                let h = Header::control(Kind::JoinRefused, MASTER, MASTER, nonce);
                self.reply(from, h, &[Refusal::Full as u8]);
            }
        }
    }

    fn lookup(&mut self, from: SocketAddrV4, h: &Header, target: u8) {
        self.c.lookups += 1;
        let answer = self.table.get(usize::from(target)).copied().flatten();
        match answer {
            Some(addr) => {
                let mut p = [target, 0, 0, 0, 0, 0, 0];
                p[1..5].copy_from_slice(&addr.ip().octets());
                p[5..7].copy_from_slice(&addr.port().to_be_bytes());
                self.reply(
                    from,
                    Header::control(Kind::LookupOk, MASTER, h.src, h.seq),
                    &p,
                );
            }
            None => {
                let r = Header::control(Kind::LookupUnknown, MASTER, h.src, h.seq);
                self.reply(from, r, &[target]);
            }
        }
    }

    fn reply(&mut self, to: SocketAddrV4, header: Header, p: &[u8]) {
        let mut payload = [0; 7];
        payload[..p.len()].copy_from_slice(p);
        let r = Reply {
            to,
            header,
            payload,
            len: p.len(),
        };
        match self.replies.iter_mut().find(|r| r.is_none()) {
            Some(free) => *free = Some(r),
            None => self.c.reply_dropped += 1,
        }
    }

    /// The next answer to send, written into `buf` (at least [`MAX_DATAGRAM`] bytes), as its
    /// destination and length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddrV4, usize)> {
        let buf = buf.get_mut(..MAX_DATAGRAM)?;
        let r = self.replies.iter_mut().find_map(Option::take)?;
        Some((r.to, r.header.emit(&r.payload[..r.len], buf)?))
    }
}
