//! The benchmark payload: what each datagram or TCP message carries, and how an echo is checked.
//!
//! A payload of `size` bytes is the first `size` bytes of this message (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | sequence number within the flow |
//! | 8..12 | magic `NVB1` |
//! | 12..16 | flow id |
//! | 16..24 | send timestamp, CLOCK_MONOTONIC nanoseconds |
//! | 24.. | pattern: a pseudo-random stream seeded by (flow, sequence) |
//!
//! The sequence number comes first so that even a 1-byte payload identifies its packet (modulo
//! 256). Because every byte is a function of (flow, sequence, send time) and the sender remembers
//! the send time, the receiver regenerates the exact payload and compares it byte for byte: a
//! flipped bit anywhere, a payload moved to another packet or flow, or a wrong length is caught.

use std::ops::Range;

/// Field offsets within the message (smoltcp `wire` style).
mod field {
    use super::Range;
    pub const SEQ: Range<usize> = 0..8;
    pub const MAGIC: Range<usize> = 8..12;
    pub const FLOW: Range<usize> = 12..16;
    pub const TIMESTAMP: Range<usize> = 16..24;
    pub const PATTERN_START: usize = 24;
}

/// Magic identifying a netvm benchmark payload.
pub const MAGIC: [u8; 4] = *b"NVB1";

/// Offset of the send timestamp: a payload shorter than this plus 8 carries only part of it.
pub const TIMESTAMP_OFFSET: usize = field::TIMESTAMP.start;

/// Bytes of header before the pattern; shorter payloads carry a prefix of the header.
pub const HEADER_LEN: usize = field::PATTERN_START;

/// Writes the payload for (`flow`, `seq`, `timestamp_ns`) into all of `buf`.
pub fn encode(buf: &mut [u8], flow: u32, seq: u64, timestamp_ns: u64) {
    let mut header = [0u8; HEADER_LEN];
    header[field::SEQ].copy_from_slice(&seq.to_le_bytes());
    header[field::MAGIC].copy_from_slice(&MAGIC);
    header[field::FLOW].copy_from_slice(&flow.to_le_bytes());
    header[field::TIMESTAMP].copy_from_slice(&timestamp_ns.to_le_bytes());
    let head = buf.len().min(HEADER_LEN);
    buf[..head].copy_from_slice(&header[..head]);
    if buf.len() > HEADER_LEN {
        fill_pattern(&mut buf[HEADER_LEN..], flow, seq);
    }
}

/// The sequence bits a payload of `len` bytes carries: `(value, bit count)`. Payloads shorter
/// than 8 bytes carry only the low `8*len` bits of the sequence number.
pub fn seq_bits(payload: &[u8]) -> (u64, u32) {
    let n = payload.len().min(field::SEQ.end);
    let mut bytes = [0u8; 8];
    bytes[..n].copy_from_slice(&payload[..n]);
    (u64::from_le_bytes(bytes), 8 * n as u32)
}

/// The send timestamp carried by a payload, if it is long enough to hold one.
pub fn timestamp(payload: &[u8]) -> Option<u64> {
    payload
        .get(field::TIMESTAMP)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

/// Whether `payload` is exactly what [`encode`] produces for (`flow`, `seq`, `timestamp_ns`).
/// `scratch` is reused to avoid allocating per packet.
pub fn matches(
    payload: &[u8],
    flow: u32,
    seq: u64,
    timestamp_ns: u64,
    scratch: &mut Vec<u8>,
) -> bool {
    scratch.resize(payload.len(), 0);
    encode(scratch, flow, seq, timestamp_ns);
    scratch.as_slice() == payload
}

/// Fills `out` with the pattern for (`flow`, `seq`): xorshift64* seeded by a mix of both, so a
/// payload copied from another packet or flow does not match.
fn fill_pattern(out: &mut [u8], flow: u32, seq: u64) {
    let mut state = (seq ^ (u64::from(flow) << 48) ^ 0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        | 1;
    for chunk in out.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_round_trips_and_detects_a_flip() {
        let mut scratch = Vec::new();
        for size in 1..=1472usize {
            let mut buf = vec![0u8; size];
            encode(&mut buf, 3, 0x0102_0304_0506_0708, 42);
            assert!(matches(&buf, 3, 0x0102_0304_0506_0708, 42, &mut scratch));
            let at = size / 2;
            buf[at] ^= 0x10;
            assert!(
                !matches(&buf, 3, 0x0102_0304_0506_0708, 42, &mut scratch),
                "size {size}"
            );
        }
    }

    #[test]
    fn pattern_depends_on_flow_and_seq() {
        let (mut a, mut b, mut c) = (vec![0u8; 64], vec![0u8; 64], vec![0u8; 64]);
        encode(&mut a, 1, 7, 0);
        encode(&mut b, 2, 7, 0);
        encode(&mut c, 1, 8, 0);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert_ne!(a[HEADER_LEN..], c[HEADER_LEN..]);
    }

    #[test]
    fn short_payloads_carry_low_sequence_bits() {
        let mut buf = [0u8; 2];
        encode(&mut buf, 0, 0xABCD_1234, 0);
        assert_eq!(seq_bits(&buf), (0x1234, 16));
        assert_eq!(timestamp(&buf), None);
        let mut full = [0u8; 30];
        encode(&mut full, 0, 5, 99);
        assert_eq!(seq_bits(&full), (5, 64));
        assert_eq!(timestamp(&full), Some(99));
    }
}
