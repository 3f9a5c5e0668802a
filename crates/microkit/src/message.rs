//! Message info words and message registers.

use crate::backend;

/// Number of message registers (`seL4_MsgMaxLength`).
pub const MAX_MESSAGE_REGISTERS: usize = 120;

/// Bits of the label field in an seL4 message-info word.
const LABEL_BITS: u32 = 52;
/// Bits of the length field.
const LENGTH_BITS: u32 = 7;

/// An seL4 message-info word: a label and a count of message registers
/// (`microkit_msginfo`; capability transfer fields are always zero in Microkit).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MessageInfo(u64);

impl MessageInfo {
    /// A message with `label` (52 bits kept) and `count` message registers (at most 120).
    pub const fn new(label: u64, count: usize) -> Self {
        let count = if count > MAX_MESSAGE_REGISTERS {
            MAX_MESSAGE_REGISTERS
        } else {
            count
        };
        Self(((label & ((1 << LABEL_BITS) - 1)) << 12) | count as u64)
    }

    /// The label (for a reply to an invocation: the seL4 error code).
    pub const fn label(self) -> u64 {
        self.0 >> 12
    }

    /// The number of message registers, clamped to [`MAX_MESSAGE_REGISTERS`] (the kernel clamps
    /// the 7-bit length field the same way).
    pub const fn count(self) -> usize {
        let len = (self.0 & ((1 << LENGTH_BITS) - 1)) as usize;
        if len > MAX_MESSAGE_REGISTERS {
            MAX_MESSAGE_REGISTERS
        } else {
            len
        }
    }

    /// The raw word as the kernel encodes it:
    /// `label << 12 | capsUnwrapped << 9 | extraCaps << 7 | length`.
    pub const fn to_word(self) -> u64 {
        self.0
    }

    /// Wraps a raw message-info word.
    pub const fn from_word(word: u64) -> Self {
        Self(word)
    }
}

/// Reads message register `index` of this PD's IPC buffer (`microkit_mr_get`).
///
/// # Panics
/// If `index >= MAX_MESSAGE_REGISTERS`.
pub fn mr_get(index: usize) -> u64 {
    assert!(
        index < MAX_MESSAGE_REGISTERS,
        "message register {index} out of range"
    );
    backend::mr_get(index)
}

/// Writes message register `index` of this PD's IPC buffer (`microkit_mr_set`).
///
/// # Panics
/// If `index >= MAX_MESSAGE_REGISTERS`.
pub fn mr_set(index: usize, value: u64) {
    assert!(
        index < MAX_MESSAGE_REGISTERS,
        "message register {index} out of range"
    );
    backend::mr_set(index, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_libsel4() {
        let info = MessageInfo::new(42, 2);
        assert_eq!(info.to_word(), (42 << 12) | 2);
        assert_eq!((info.label(), info.count()), (42, 2));
        assert_eq!(MessageInfo::new(1 << 60, 500).count(), 120);
        assert_eq!(MessageInfo::new(u64::MAX, 0).label(), (1 << 52) - 1);
        // A kernel word with caps fields set still decodes the label and length.
        let word = (7 << 12) | (1 << 9) | (2 << 7) | 3;
        assert_eq!(MessageInfo::from_word(word).label(), 7);
        assert_eq!(MessageInfo::from_word(word).count(), 3);
    }
}
