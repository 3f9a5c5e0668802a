//! `net_buff_desc_t`: the 16-byte descriptor carried by every network queue.
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..8 | `io_or_offset` | offset into a data region, or an IO (DMA) address on the driver side |
//! | 8..10 | `len` | bytes of valid data |
//! | 10, bits 0..5 | `oid` | which data region the offset refers to (new in sDDF 0.7) |
//! | 10 bits 6..7, 11..16 | padding | written as zero, ignored on read |
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod field {
    /// Byte holding the 6-bit `oid` bit-field.
    pub const OID_BYTE: usize = 10;
    /// The `oid` bits within [`OID_BYTE`].
    pub const OID_MASK: u8 = 0x3f;
}

/// Largest `oid` a descriptor can carry (6 bits).
pub const MAX_OID: u8 = field::OID_MASK;

/// One sDDF network buffer descriptor, exactly as laid out in shared memory.
#[derive(Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BuffDesc {
    /// Offset into a data region (client side) or IO address (driver side).
    pub io_or_offset: u64,
    /// Number of valid bytes in the buffer.
    pub len: u16,
    /// Byte 10 (the `oid` bit-field) and the five padding bytes after it.
    oid_and_pad: [u8; 6],
}

const _: () = {
    assert!(core::mem::size_of::<BuffDesc>() == 16);
    assert!(core::mem::align_of::<BuffDesc>() == 8);
    assert!(core::mem::offset_of!(BuffDesc, io_or_offset) == 0);
    assert!(core::mem::offset_of!(BuffDesc, len) == 8);
    assert!(core::mem::offset_of!(BuffDesc, oid_and_pad) == field::OID_BYTE);
};

impl BuffDesc {
    /// A descriptor with zeroed padding, as C brace-initialisation writes it.
    ///
    /// Bits of `oid` above the six the field holds are dropped, as the C bit-field does.
    pub const fn new(io_or_offset: u64, len: u16, oid: u8) -> Self {
        BuffDesc {
            io_or_offset,
            len,
            oid_and_pad: [oid & field::OID_MASK, 0, 0, 0, 0, 0],
        }
    }

    /// The 6-bit owner / region id; padding bits are ignored.
    pub const fn oid(&self) -> u8 {
        self.oid_and_pad[0] & field::OID_MASK
    }

    /// The same descriptor with another `oid` (padding cleared).
    pub const fn with_oid(self, oid: u8) -> Self {
        BuffDesc::new(self.io_or_offset, self.len, oid)
    }

    /// The same descriptor with another length.
    pub const fn with_len(self, len: u16) -> Self {
        BuffDesc::new(self.io_or_offset, len, self.oid())
    }
}

impl core::fmt::Debug for BuffDesc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BuffDesc")
            .field("io_or_offset", &format_args!("{:#x}", self.io_or_offset))
            .field("len", &self.len)
            .field("oid", &self.oid())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_lives_in_low_six_bits_of_byte_ten() {
        let d = BuffDesc::new(0, 0, 0x3f);
        let bytes = d.as_bytes();
        assert_eq!(bytes[10], 0x3f);
        assert!(bytes.iter().enumerate().all(|(i, b)| i == 10 || *b == 0));
    }

    #[test]
    fn oid_reads_ignore_padding_garbage() {
        let mut raw = [0xffu8; 16];
        raw[10] = 0xc5;
        let d = BuffDesc::read_from_bytes(&raw).unwrap();
        assert_eq!(d.oid(), 0x05);
        assert_eq!(d.len, 0xffff);
    }

    #[test]
    fn oid_wider_than_six_bits_is_truncated_like_c() {
        assert_eq!(BuffDesc::new(1, 2, 0x41).oid(), 1);
    }

    #[test]
    fn little_endian_fields() {
        let d = BuffDesc::new(0x1122_3344_5566_7788, 0x99aa, 3);
        assert_eq!(
            d.as_bytes(),
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xaa, 0x99, 3, 0, 0, 0, 0, 0]
        );
    }
}
