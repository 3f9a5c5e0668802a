//! Verifiable message content, shared by every sender and receiver that checks what arrives
//! (`netvm node exchange`, the echo-server PD's messaging role): a pattern keyed by source id,
//! destination id and a sequence number, whose first four bytes also carry the sequence number,
//! so a receiver can check a message without knowing which one to expect. Sequence 0 is the
//! exchange's historical payload, byte for byte.

/// Byte `i` of message `seq` from node `src` to node `dest`, before the sequence number is
/// mixed in.
fn base(src: u8, dest: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ src.rotate_left(4) ^ dest ^ (i >> 8) as u8
}

/// What sequence `seq` changes in byte `i`: its little-endian bytes in bytes 0..4, a mix of it
/// after them; nothing for sequence 0.
fn keyed(seq: u32, i: usize) -> u8 {
    match i {
        0..4 => seq.to_le_bytes()[i],
        _ => (seq.wrapping_mul(0x9e37_79b1).rotate_left((i % 32) as u32) >> 24) as u8,
    }
}

/// Byte `i` of message `seq` from `src` to `dest`.
pub fn byte(src: u8, dest: u8, seq: u32, i: usize) -> u8 {
    base(src, dest, i) ^ keyed(seq, i)
}

/// Fills `buf` with message `seq` from `src` to `dest`.
pub fn fill(src: u8, dest: u8, seq: u32, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte(src, dest, seq, i);
    }
}

/// The sequence number of `msg` if every byte is as [`fill`] makes message from `src` to
/// `dest`; `None` if any byte is not (or it is shorter than the four bytes that carry it).
pub fn check(src: u8, dest: u8, msg: &[u8]) -> Option<u32> {
    let head: [u8; 4] = msg.get(..4)?.try_into().ok()?;
    let mut le = [0u8; 4];
    for (i, (b, h)) in le.iter_mut().zip(head).enumerate() {
        *b = h ^ base(src, dest, i);
    }
    let seq = u32::from_le_bytes(le);
    let ok = msg
        .iter()
        .enumerate()
        .all(|(i, b)| *b == byte(src, dest, seq, i));
    ok.then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_check_with_their_sequence_and_any_change_is_caught() {
        let mut m = [0u8; 3000];
        fill(3, 7, 41, &mut m);
        assert_eq!(check(3, 7, &m), Some(41));
        assert_eq!(check(7, 3, &m), None, "keyed by direction");
        assert_eq!(check(3, 8, &m), None, "keyed by destination");
        for at in [0, 3, 4, 1000, 2999] {
            let mut bad = m;
            bad[at] ^= 1;
            assert_eq!(check(3, 7, &bad), None, "byte {at}");
        }
        assert_eq!(check(3, 7, &m[..3]), None);
        let mut other = [0u8; 3000];
        fill(3, 7, 42, &mut other);
        assert_ne!(&other[4..], &m[4..], "the body depends on the sequence");
    }

    #[test]
    fn sequence_0_is_the_plain_pattern() {
        for i in 0..600 {
            let old = (i as u8).wrapping_mul(31) ^ 2u8.rotate_left(4) ^ 5 ^ (i >> 8) as u8;
            assert_eq!(byte(2, 5, 0, i), old);
        }
    }
}
