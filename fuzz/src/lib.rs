//! Helpers shared by the fuzz targets: a reader that turns libFuzzer's bytes into choices, and a
//! view of a queue's pending entries read straight from shared memory (for invariants that must
//! hold whatever the components under test believe).
use sddf::queue::Capacity;
use sddf::shm::Region;
use sddf::BuffDesc;
use zerocopy::FromBytes;

/// Reads choices from the fuzzer's input; an exhausted input reads as zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// The input.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// A length read as a u16 below `max`, then up to that many bytes.
    pub fn chunk(&mut self, max: u16) -> &'a [u8] {
        let n = self.u16() % max;
        self.bytes(usize::from(n))
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.le::<1>()[0]
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.le())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.le())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.le())
    }

    /// `true` with probability about 1/2.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A descriptor: half the time garbage, half the time plausible (aligned offsets near the
    /// real range, lengths around the limits, small oids), which is what finds confused-deputy
    /// bugs.
    pub fn desc(&mut self) -> BuffDesc {
        if self.bool() {
            BuffDesc::new(self.u64(), self.u16(), self.u8())
        } else {
            let k = u64::from(self.u8() % 20);
            let len = match self.u8() % 4 {
                0 => u16::from(self.u8() % 3),
                1 => 2046 + u16::from(self.u8() % 6),
                _ => 14 + self.u16() % 1500,
            };
            BuffDesc::new(k * 2048, len, self.u8() % 4)
        }
    }
}

/// The entries between `head` and `tail` of the queue in `region`, read without consuming them:
/// what the producer has published and the consumer not yet taken. `None` when the indices are
/// impossible (only a scribbling peer can make them so).
pub fn pending(region: Region<'_>, capacity: Capacity) -> Option<Vec<BuffDesc>> {
    let mut header = [0u8; 4];
    region.read(0, &mut header).ok()?;
    let tail = u16::from_le_bytes([header[0], header[1]]);
    let head = u16::from_le_bytes([header[2], header[3]]);
    let len = tail.wrapping_sub(head);
    if len > capacity.get() {
        return None;
    }
    let mask = capacity.get() - 1;
    (0..len)
        .map(|k| {
            let slot = usize::from(head.wrapping_add(k) & mask);
            let mut raw = [0u8; 16];
            region.read(8 + 16 * slot, &mut raw).ok()?;
            BuffDesc::read_from_bytes(&raw).ok()
        })
        .collect()
}
