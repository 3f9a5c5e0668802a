//! The datagram format. Every datagram is one header and a payload, in one UDP payload of at most
//! [`MAX_DATAGRAM`] bytes; all numbers big-endian:
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..2 | magic | `"NM"` |
//! | 2 | version | [`VERSION`] |
//! | 3 | kind | [`Kind`] |
//! | 4 | src | sender's node id ([`MASTER`] for the master and for a node not yet joined) |
//! | 5 | dst | receiver's node id ([`MASTER`] for requests to the master) |
//! | 6..8 | session | the data sender's incarnation (its join nonce); 0 in requests |
//! | 8..12 | seq | message sequence number (data, ack) or request nonce (join, leave, lookup) |
//! | 12 | frag | fragment index (data), else 0 |
//! | 13 | count | fragment count (data), else 0 |
//! | 14..16 | len | payload bytes in this datagram |
//! | 16..18 | total | message length (data), else 0 |
//! | 18..20 | reserved | 0 |
//! | 20..24 | checksum | FNV-1a 32 over the datagram with this field zero |
//!
//! [`Header::parse`] checks every field; nothing from the wire is trusted before that.

use crate::{MASTER, MAX_MESSAGE};

/// Largest UDP payload a datagram may have: a 1500-byte MTU less IPv4 and UDP headers.
pub const MAX_DATAGRAM: usize = 1472;
/// Header bytes in every datagram.
pub const HEADER_LEN: usize = 24;
/// Message bytes per data fragment.
pub const FRAG_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN;
/// Fragments of the largest message.
pub const MAX_FRAGS: usize = MAX_MESSAGE.div_ceil(FRAG_PAYLOAD);
/// Protocol version.
pub const VERSION: u8 = 1;
const MAGIC: [u8; 2] = *b"NM";

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const SRC: usize = 4;
    pub const DST: usize = 5;
    pub const SESSION: Range<usize> = 6..8;
    pub const SEQ: Range<usize> = 8..12;
    pub const FRAG: usize = 12;
    pub const COUNT: usize = 13;
    pub const LEN: Range<usize> = 14..16;
    pub const TOTAL: Range<usize> = 16..18;
    pub const RESERVED: Range<usize> = 18..20;
    pub const CHECKSUM: Range<usize> = 20..24;
}

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Node → master: give me an id. Payload: the node's MAC (6 bytes).
    Join = 1,
    /// Master → node: your id is `dst`. No payload.
    JoinOk = 2,
    /// Master → node: no id. Payload: the [`Refusal`] code (1 byte).
    JoinRefused = 3,
    /// Node → master: forget me. No payload.
    Leave = 4,
    /// Master → node: forgotten. No payload.
    LeaveOk = 5,
    /// Node → master: where is a node? Payload: its id (1 byte).
    Lookup = 6,
    /// Master → node: payload: id (1), IPv4 address (4), UDP port (2).
    LookupOk = 7,
    /// Master → node: no node has that id. Payload: the id (1 byte).
    LookupUnknown = 8,
    /// Node → node: one fragment of a message.
    Data = 9,
    /// Node → node: the whole message `seq` of `session` arrived. No payload.
    Ack = 10,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        use Kind::*;
        Some(match v {
            1 => Join,
            2 => JoinOk,
            3 => JoinRefused,
            4 => Leave,
            5 => LeaveOk,
            6 => Lookup,
            7 => LookupOk,
            8 => LookupUnknown,
            9 => Data,
            10 => Ack,
            _ => return None,
        })
    }

    /// The payload length this kind must have (`None`: data, checked against the fragment).
    fn payload_len(self) -> Option<usize> {
        use Kind::*;
        match self {
            Join => Some(6),
            JoinRefused | Lookup | LookupUnknown => Some(1),
            LookupOk => Some(7),
            JoinOk | Leave | LeaveOk | Ack => Some(0),
            Data => None,
        }
    }
}

/// Why the master refused a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every id is taken.
    Full = 1,
}

impl Refusal {
    /// The refusal a wire code names.
    pub fn from_u8(v: u8) -> Option<Refusal> {
        (v == 1).then_some(Refusal::Full)
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a header, or longer than [`MAX_DATAGRAM`].
    Size,
    /// Wrong magic or version.
    Magic,
    /// Unknown kind.
    Kind,
    /// The checksum does not match.
    Checksum,
    /// A field is out of range or inconsistent with another (lengths, fragment numbers, ids,
    /// reserved bits).
    Field,
}

/// A checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the datagram is.
    pub kind: Kind,
    /// Sender's id.
    pub src: u8,
    /// Receiver's id.
    pub dst: u8,
    /// The data sender's incarnation.
    pub session: u16,
    /// Message sequence number or request nonce.
    pub seq: u32,
    /// Fragment index.
    pub frag: u8,
    /// Fragment count.
    pub count: u8,
    /// Message length (data).
    pub total: u16,
}

impl Header {
    /// A control header (no fragment fields).
    pub fn control(kind: Kind, src: u8, dst: u8, seq: u32) -> Header {
        Header {
            kind,
            src,
            dst,
            session: 0,
            seq,
            frag: 0,
            count: 0,
            total: 0,
        }
    }

    /// Writes the header and `payload` into `buf` with the checksum; returns the datagram length,
    /// or `None` when `buf` is too short.
    pub fn emit(&self, payload: &[u8], buf: &mut [u8]) -> Option<usize> {
        let n = HEADER_LEN + payload.len();
        let buf = buf.get_mut(..n).filter(|_| n <= MAX_DATAGRAM)?;
        buf[field::MAGIC].copy_from_slice(&MAGIC);
        buf[field::VERSION] = VERSION;
        buf[field::KIND] = self.kind as u8;
        buf[field::SRC] = self.src;
        buf[field::DST] = self.dst;
        buf[field::SESSION].copy_from_slice(&self.session.to_be_bytes());
        buf[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        buf[field::FRAG] = self.frag;
        buf[field::COUNT] = self.count;
        buf[field::LEN].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        buf[field::TOTAL].copy_from_slice(&self.total.to_be_bytes());
        buf[field::RESERVED].fill(0);
        buf[field::CHECKSUM].fill(0);
        buf[HEADER_LEN..].copy_from_slice(payload);
        let sum = fnv1a(buf);
        buf[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        Some(n)
    }

    /// Checks every field of `bytes` and returns the header and the payload.
    pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), Malformed> {
        if bytes.len() < HEADER_LEN || bytes.len() > MAX_DATAGRAM {
            return Err(Malformed::Size);
        }
        if bytes[field::MAGIC] != MAGIC || bytes[field::VERSION] != VERSION {
            return Err(Malformed::Magic);
        }
        let kind = Kind::from_u8(bytes[field::KIND]).ok_or(Malformed::Kind)?;
        let u16_at =
            |r: core::ops::Range<usize>| u16::from_be_bytes([bytes[r.start], bytes[r.start + 1]]);
        let stored = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        if stored != checksum_of(bytes) {
            return Err(Malformed::Checksum);
        }
        let h = Header {
            kind,
            src: bytes[field::SRC],
            dst: bytes[field::DST],
            session: u16_at(field::SESSION),
            seq: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            frag: bytes[field::FRAG],
            count: bytes[field::COUNT],
            total: u16_at(field::TOTAL),
        };
        let payload = &bytes[HEADER_LEN..];
        let len_ok = usize::from(u16_at(field::LEN)) == payload.len();
        if !len_ok || u16_at(field::RESERVED) != 0 || !h.fields_ok(payload.len()) {
            return Err(Malformed::Field);
        }
        Ok((h, payload))
    }

    /// The per-kind rules: payload size, fragment numbers, ids.
    fn fields_ok(&self, payload: usize) -> bool {
        let to_master = matches!(self.kind, Kind::Join | Kind::Leave | Kind::Lookup);
        let from_master = matches!(
            self.kind,
            Kind::JoinOk | Kind::JoinRefused | Kind::LeaveOk | Kind::LookupOk | Kind::LookupUnknown
        );
        let ids_ok = if to_master {
            self.dst == MASTER && (self.kind == Kind::Join || self.src != MASTER)
        } else if from_master {
            self.src == MASTER && (self.kind != Kind::JoinOk || self.dst != MASTER)
        } else {
            self.src != MASTER && self.dst != MASTER && self.src != self.dst
        };
        let numbers_zero = self.frag == 0 && self.count == 0 && self.total == 0;
        match self.kind.payload_len() {
            Some(n) => ids_ok && payload == n && numbers_zero,
            None => ids_ok && data_fragment_ok(self.frag, self.count, self.total, payload),
        }
    }
}

/// Whether a data fragment's numbers agree: the message fits, the count is the one its length
/// needs, the index is below it, and the fragment has exactly its share of the message.
fn data_fragment_ok(frag: u8, count: u8, total: u16, payload: usize) -> bool {
    let total = usize::from(total);
    if total == 0 || total > MAX_MESSAGE || usize::from(count) != total.div_ceil(FRAG_PAYLOAD) {
        return false;
    }
    frag < count && payload == fragment_len(total, usize::from(frag))
}

/// Bytes of fragment `frag` of a message of `total` bytes.
pub fn fragment_len(total: usize, frag: usize) -> usize {
    total.saturating_sub(frag * FRAG_PAYLOAD).min(FRAG_PAYLOAD)
}

fn checksum_of(bytes: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    for (i, b) in bytes.iter().enumerate() {
        let b = if field::CHECKSUM.contains(&i) { 0 } else { *b };
        h = (h ^ u32::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(frag: u8, count: u8, total: u16) -> Header {
        Header {
            kind: Kind::Data,
            src: 1,
            dst: 2,
            session: 7,
            seq: 9,
            frag,
            count,
            total,
        }
    }

    #[test]
    fn a_datagram_round_trips_and_any_flipped_bit_is_caught() {
        let mut buf = [0; MAX_DATAGRAM];
        let payload = [0xab; 100];
        let n = data(0, 1, 100).emit(&payload, &mut buf).unwrap();
        let (h, p) = Header::parse(&buf[..n]).unwrap();
        assert_eq!((h, p), (data(0, 1, 100), &payload[..]));
        for bit in 0..n * 8 {
            let mut bad = buf;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::parse(&bad[..n]).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn inconsistent_fragment_numbers_are_refused() {
        let mut buf = [0; MAX_DATAGRAM];
        // Count not the one the length needs; index past the count; short middle fragment.
        for (h, len) in [
            (data(0, 2, 100), 100),
            (data(1, 1, 100), 100),
            (data(0, 2, 2000), 1000),
            (data(0, 1, 0), 0),
        ] {
            let n = h.emit(&[0; MAX_DATAGRAM][..len], &mut buf).unwrap();
            assert_eq!(Header::parse(&buf[..n]), Err(Malformed::Field), "{h:?}");
        }
        let join_from_nobody_to_a_node = Header::control(Kind::Join, MASTER, 3, 1);
        let n = join_from_nobody_to_a_node.emit(&[0; 6], &mut buf).unwrap();
        assert_eq!(Header::parse(&buf[..n]), Err(Malformed::Field));
    }

    #[test]
    fn the_largest_message_needs_every_fragment_it_is_given() {
        assert_eq!(MAX_FRAGS, 12);
        let total: usize = (0..MAX_FRAGS).map(|f| fragment_len(MAX_MESSAGE, f)).sum();
        assert_eq!(total, MAX_MESSAGE);
    }
}
