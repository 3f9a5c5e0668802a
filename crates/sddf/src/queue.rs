//! `net_queue_t`: sDDF's single-producer single-consumer descriptor ring, and its signalling.
//!
//! # Layout (shared memory, little-endian)
//!
//! | bytes | field | written by |
//! |---|---|---|
//! | 0..2 | `tail`: free-running u16 producer index | producer |
//! | 2..4 | `head`: free-running u16 consumer index | consumer |
//! | 4..8 | `consumer_signalled`: 0 = "signal me", 1 = "don't" | both (see below) |
//! | 8.. | `capacity` × [`BuffDesc`] | producer |
//!
//! Slot = index mod capacity; capacity is a power of two from trusted config ([`Capacity`]).
//! Length = `tail - head` (u16 wrapping); empty = 0; full = capacity. (sDDF's C `full` check
//! promotes to int and is wrong once `tail` has wrapped and `head` has not; this one is not.)
//!
//! # Ordering
//!
//! The producer writes the slot then publishes `tail` with Release; the consumer loads `tail` with
//! Acquire before reading slots, and publishes `head` with Release after reading them, which the
//! producer loads with Acquire before reusing a slot. The signal flag is Dekker-style: the consumer
//! stores "signal me" then issues a SeqCst fence before re-checking `tail`; the producer issues a
//! SeqCst fence after publishing `tail` and before reading the flag. So whenever the consumer goes
//! to sleep with work queued, the producer sees the request and a notification is owed (checked
//! with loom in `tests/loom.rs`).
//!
//! # Untrusted peers
//!
//! Both indices are checked on every load: a distance beyond the capacity is
//! [`QueueError::PeerMisbehaviour`], never "empty" or "full", and no slot outside the ring is ever
//! touched because slots are always taken mod capacity. The consumer keeps `head` privately, so a
//! producer scribbling on it cannot make the consumer re-read or skip entries. The producer reads
//! `tail` back from shared memory: sDDF lets the *consuming* side of a free queue fill it once at
//! start-up (a client its TX buffers, a copier its client's RX buffers), possibly after the
//! producer attached, so `tail` has two writers at init; a consumer that scribbles on `tail` later
//! can only garble entries meant for itself. The one other time a side writes its peer's index
//! is a reconnect (netvm's `netvm_api::reconnect`): the surviving side of a restarted client's
//! queue pair empties both queues while the client waits.
//!
//! # sDDF and this crate
//!
//! The layout and the signalling protocol are sDDF's (include/sddf/network/queue.h). What this
//! module adds is Rust API over the same bytes, no new ABI: role-typed handles, the index checks
//! above, [`Producer::take_signal_request`] (sDDF's `require_signal` plus `cancel_signal`), and
//! the queue resets a peer needs to rebuild a pair (used by netvm's restart protocol).
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::desc::BuffDesc;
use crate::shm::Slot;
use crate::sync::{fence, AtomicU16, AtomicU32};

/// The 8-byte queue header, exactly as in shared memory.
#[repr(C)]
pub(crate) struct QueueHeader {
    tail: AtomicU16,
    head: AtomicU16,
    consumer_signalled: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(core::mem::size_of::<QueueHeader>() == 8);
    assert!(core::mem::offset_of!(QueueHeader, tail) == 0);
    assert!(core::mem::offset_of!(QueueHeader, head) == 2);
    assert!(core::mem::offset_of!(QueueHeader, consumer_signalled) == 4);
};

/// Bytes a queue of `capacity` entries occupies (`8 + 16 * capacity`).
pub const fn queue_bytes(capacity: usize) -> usize {
    8 + 16 * capacity
}

/// A queue capacity: a power of two from 1 to 32768, taken only from trusted configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity(u16);

/// The capacity given is not a power of two in 1..=32768.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCapacity(pub u32);

impl core::fmt::Display for BadCapacity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "queue capacity {} is not a power of two in 1..=32768",
            self.0
        )
    }
}

impl Capacity {
    /// Checks that `n` is a power of two no larger than 32768 (so that free-running u16 indices
    /// stay consistent mod the capacity across their wrap).
    pub const fn new(n: u32) -> Result<Capacity, BadCapacity> {
        if n.is_power_of_two() && n <= 32768 {
            Ok(Capacity(n as u16))
        } else {
            Err(BadCapacity(n))
        }
    }

    /// The number of entries.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// As a `usize`.
    pub const fn entries(self) -> usize {
        self.0 as usize
    }
}

/// Why a queue operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue holds no descriptor (try again after the next notification).
    Empty,
    /// The queue holds `capacity` descriptors (try again after the consumer catches up).
    Full,
    /// The peer left indices no honest peer can produce: `tail - head` exceeds the capacity.
    PeerMisbehaviour {
        /// The index this side keeps.
        ours: u16,
        /// The index read from the peer.
        theirs: u16,
    },
}

impl core::fmt::Display for QueueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            QueueError::Empty => f.write_str("queue is empty"),
            QueueError::Full => f.write_str("queue is full"),
            QueueError::PeerMisbehaviour { ours, theirs } => write!(
                f,
                "peer misbehaved: its index {theirs} is impossible against ours {ours}"
            ),
        }
    }
}

/// One queue (free or active) before it is given a role.
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    header: &'a QueueHeader,
    slots: &'a [Slot],
    mask: u16,
}

impl<'a> Queue<'a> {
    /// The queue in `region`, which must hold at least [`queue_bytes`]`(capacity)` bytes.
    #[cfg(not(loom))]
    pub fn new(
        region: crate::shm::Region<'a>,
        capacity: Capacity,
    ) -> Result<Queue<'a>, crate::shm::OutOfBounds> {
        let (header, slots) = region.queue_parts(capacity.entries())?;
        Ok(Queue {
            header,
            slots,
            mask: capacity.get() - 1,
        })
    }

    /// A queue in loom-tracked memory (model checking only).
    #[cfg(loom)]
    pub fn new_loom(mem: &'a LoomQueueMemory) -> Queue<'a> {
        Queue {
            header: &mem.header,
            slots: &mem.slots,
            mask: (mem.slots.len() - 1) as u16,
        }
    }

    fn capacity(&self) -> u16 {
        self.mask.wrapping_add(1)
    }

    /// Descriptors queued, as a third party sees them (a monitor or `netvm stats`, never a
    /// side of the queue): both published indices, checked against the capacity. Racy by nature
    /// while the queue is in use; exact when both sides are idle.
    pub fn observed_len(&self) -> Result<u16, QueueError> {
        let tail = self.header.tail.load(Acquire);
        let head = self.header.head.load(Acquire);
        let len = tail.wrapping_sub(head);
        if len > self.capacity() {
            return Err(QueueError::PeerMisbehaviour {
                ours: head,
                theirs: tail,
            });
        }
        Ok(len)
    }

    /// The consumer's index as a third party sees it: it moves whenever the consumer takes a
    /// descriptor (a watchdog compares it over time). Racy by nature, like
    /// [`Queue::observed_len`].
    pub fn observed_head(&self) -> u16 {
        self.header.head.load(Acquire)
    }

    /// Empties the queue as fresh memory is: both indices 0, signal flag "signal wanted".
    ///
    /// The one place where a side writes its peer's index, so only for a reconnect (netvm's
    /// `netvm_api::reconnect`): the caller must know that nothing else uses the queue meanwhile
    /// (the peer's old instance is dead and its new one waits for the reset to be announced).
    /// Publishing the reset is the caller's job (a Release store the peer Acquire-loads).
    fn reset(&self) {
        self.header.tail.store(0, Relaxed);
        self.header.head.store(0, Relaxed);
        self.header.consumer_signalled.store(0, Relaxed);
    }

    /// Takes the producer role.
    pub fn into_producer(self) -> Producer<'a> {
        Producer { q: self }
    }

    /// Takes the consumer role, starting from the `head` currently published.
    pub fn into_consumer(self) -> Consumer<'a> {
        let head = self.header.head.load(Relaxed);
        Consumer {
            q: self,
            head,
            tail_seen: head,
        }
    }
}

/// Loom-tracked queue memory for model checking.
#[cfg(loom)]
pub struct LoomQueueMemory {
    header: QueueHeader,
    slots: std::vec::Vec<Slot>,
}

#[cfg(loom)]
impl LoomQueueMemory {
    /// A zeroed queue of `capacity` (a power of two) entries.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two());
        LoomQueueMemory {
            header: QueueHeader {
                tail: AtomicU16::new(0),
                head: AtomicU16::new(0),
                consumer_signalled: AtomicU32::new(0),
            },
            slots: (0..capacity)
                .map(|_| Slot::new(BuffDesc::default()))
                .collect(),
        }
    }
}

/// The producing side of one queue: enqueues descriptors and decides when to notify.
pub struct Producer<'a> {
    q: Queue<'a>,
}

impl Producer<'_> {
    /// `(tail, number queued)`, checking the consumer's `head` against `tail`.
    fn indices(&self) -> Result<(u16, u16), QueueError> {
        let tail = self.q.header.tail.load(Acquire);
        let head = self.q.header.head.load(Acquire);
        let len = tail.wrapping_sub(head);
        if len > self.q.capacity() {
            return Err(QueueError::PeerMisbehaviour {
                ours: tail,
                theirs: head,
            });
        }
        Ok((tail, len))
    }

    /// Descriptors currently queued.
    pub fn len(&self) -> Result<u16, QueueError> {
        Ok(self.indices()?.1)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }

    /// Whether no slot is free.
    pub fn is_full(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == self.q.capacity())
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> u16 {
        self.q.capacity()
    }

    /// Appends `desc` and publishes it.
    pub fn enqueue(&mut self, desc: BuffDesc) -> Result<(), QueueError> {
        let (tail, len) = self.indices()?;
        if len == self.q.capacity() {
            return Err(QueueError::Full);
        }
        self.q.slots[usize::from(tail & self.q.mask)].write(desc);
        self.q.header.tail.store(tail.wrapping_add(1), Release);
        Ok(())
    }

    /// The notification phase, after a batch of enqueues: returns `true` when the consumer asked
    /// to be signalled, in which case the request is consumed and the caller must notify it.
    ///
    /// (`require_signal` + `cancel_signal` of sDDF, with the fence SMP needs.)
    pub fn take_signal_request(&self) -> bool {
        fence(SeqCst);
        if self.q.header.consumer_signalled.load(Relaxed) == 0 {
            self.q.header.consumer_signalled.store(1, Relaxed);
            true
        } else {
            false
        }
    }
}

/// The consuming side of one queue: dequeues descriptors and re-arms its signal.
pub struct Consumer<'a> {
    q: Queue<'a>,
    head: u16,
    /// Last `tail` validated, so a batch costs one Acquire load, not one per descriptor.
    tail_seen: u16,
}

impl Consumer<'_> {
    fn refresh(&mut self) -> Result<u16, QueueError> {
        let tail = self.q.header.tail.load(Acquire);
        let len = tail.wrapping_sub(self.head);
        if len > self.q.capacity() {
            return Err(QueueError::PeerMisbehaviour {
                ours: self.head,
                theirs: tail,
            });
        }
        self.tail_seen = tail;
        Ok(len)
    }

    /// Descriptors ready to dequeue.
    pub fn len(&mut self) -> Result<u16, QueueError> {
        self.refresh()
    }

    /// Whether nothing is ready.
    pub fn is_empty(&mut self) -> Result<bool, QueueError> {
        Ok(self.refresh()? == 0)
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> u16 {
        self.q.capacity()
    }

    /// Removes the oldest descriptor.
    pub fn dequeue(&mut self) -> Result<BuffDesc, QueueError> {
        if self.tail_seen == self.head && self.refresh()? == 0 {
            return Err(QueueError::Empty);
        }
        let desc = self.q.slots[usize::from(self.head & self.q.mask)].read();
        self.head = self.head.wrapping_add(1);
        self.q.header.head.store(self.head, Release);
        Ok(desc)
    }

    /// Forgets the private index after [`Queue::reset`].
    fn restart_from_zero(&mut self) {
        self.head = 0;
        self.tail_seen = 0;
    }

    /// Asks the producer for a signal on its next enqueue (`request_signal`).
    pub fn request_signal(&self) {
        self.q.header.consumer_signalled.store(0, Relaxed);
        fence(SeqCst);
    }

    /// Withdraws a signal request (`cancel_signal`).
    pub fn cancel_signal(&self) {
        self.q.header.consumer_signalled.store(1, Relaxed);
    }

    /// The double-check that ends a drain: request a signal, then look again. Returns `true` when
    /// more work arrived meanwhile (the request is withdrawn and the caller should drain again),
    /// `false` when it is safe to wait for a notification.
    pub fn rearm(&mut self) -> Result<bool, QueueError> {
        self.request_signal();
        if self.refresh()? != 0 {
            self.cancel_signal();
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

/// The side of a queue pair that *fills* buffers: takes empty ones from `free`, passes full ones
/// on through `active` (a driver's RX side, a client's TX side, virt_rx towards a copier, a
/// copier towards its client, virt_tx towards the driver).
pub struct FillSide<'a> {
    /// Empty buffers coming back.
    pub free: Consumer<'a>,
    /// Full buffers going out.
    pub active: Producer<'a>,
}

/// The side of a queue pair that *drains* buffers: takes full ones from `active`, returns empty
/// ones through `free` (virt_rx from the driver, a copier from virt_rx, a client's RX side,
/// virt_tx from a client, the driver's TX side).
pub struct DrainSide<'a> {
    /// Full buffers coming in.
    pub active: Consumer<'a>,
    /// Empty buffers going back.
    pub free: Producer<'a>,
}

impl<'a> FillSide<'a> {
    /// Takes the fill role on a free/active pair.
    pub fn new(free: Queue<'a>, active: Queue<'a>) -> Self {
        FillSide {
            free: free.into_consumer(),
            active: active.into_producer(),
        }
    }

    /// Takes the fill role on a pair whose buffers this side owns (a client's TX data, a copier's
    /// client RX data): before the peer runs, hands itself every buffer through `free` as offsets
    /// `i * 2048` for `i` in `0..count`, as sDDF's `net_buffers_init(handle, 0)` does there.
    pub fn new_self_provided(
        free: Queue<'a>,
        active: Queue<'a>,
        count: u16,
    ) -> Result<Self, QueueError> {
        fill_with_own_buffers(free, count)?;
        Ok(FillSide::new(free, active))
    }

    /// Reconnect (netvm's `netvm_api::reconnect`) of a pair whose buffers this side owns: empties
    /// both queues, then hands itself every buffer again as [`FillSide::new_self_provided`] does.
    /// Returns how many descriptors `active` held (frames the peer's dead instance never took;
    /// `Err` when its indices were impossible); the reset happens either way. Only while the peer
    /// is known not to touch the queues.
    pub fn reset_self_provided(&mut self, count: u16) -> Result<u16, ResetError> {
        let discarded = self.active.q.observed_len();
        self.free.q.reset();
        self.active.q.reset();
        self.free.restart_from_zero();
        fill_with_own_buffers(self.free.q, count).map_err(ResetError::Refill)?;
        discarded.map_err(ResetError::Indices)
    }
}

/// What went wrong in a reconnect reset (the queues were emptied all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetError {
    /// The active queue's indices were impossible, so how many descriptors it held is unknown.
    Indices(QueueError),
    /// Handing the buffers back failed (more buffers than the queue holds).
    Refill(QueueError),
}

impl core::fmt::Display for ResetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResetError::Indices(e) => write!(f, "reset: active queue: {e}"),
            ResetError::Refill(e) => write!(f, "reset: refilling the free queue: {e}"),
        }
    }
}

/// Enqueues offsets `i * 2048` for `i` in `0..count` on `free` through a producer handle of its
/// own: the consuming side filling its free queue (sDDF's `net_buffers_init(handle, 0)`).
fn fill_with_own_buffers(free: Queue<'_>, count: u16) -> Result<(), QueueError> {
    let mut producer = free.into_producer();
    for i in 0..u64::from(count) {
        producer.enqueue(BuffDesc::new(i * crate::NET_BUFFER_SIZE as u64, 0, 0))?;
    }
    Ok(())
}

impl<'a> DrainSide<'a> {
    /// Takes the drain role on a free/active pair.
    pub fn new(free: Queue<'a>, active: Queue<'a>) -> Self {
        DrainSide {
            active: active.into_consumer(),
            free: free.into_producer(),
        }
    }

    /// Reconnect (netvm's `netvm_api::reconnect`) of a pair whose filling peer restarted: empties
    /// both queues. Returns how many descriptors `active` held (frames the peer's dead instance
    /// queued and this side never took; `Err` when its indices were impossible); the reset happens
    /// either way. The caller then hands the peer the buffers it should have through `free`. Only
    /// while the peer is known not to touch the queues.
    pub fn reset(&mut self) -> Result<u16, QueueError> {
        let discarded = self.active.q.observed_len();
        self.free.q.reset();
        self.active.q.reset();
        self.active.restart_from_zero();
        discarded
    }

    /// `net_buffers_init`: hands every buffer of a data region to the fill side, as offsets (or IO
    /// addresses) `base + i * 2048` for `i` in `0..count`.
    pub fn provide_all_buffers(&mut self, base: u64, count: u16) -> Result<(), QueueError> {
        for i in 0..u64::from(count) {
            self.free.enqueue(BuffDesc::new(
                base + i * crate::NET_BUFFER_SIZE as u64,
                0,
                0,
            ))?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shm::OwnedRegion;

    fn pair(mem: &OwnedRegion, cap: u32) -> (Producer<'_>, Consumer<'_>) {
        let cap = Capacity::new(cap).unwrap();
        let p = Queue::new(mem.region(), cap).unwrap().into_producer();
        let c = Queue::new(mem.region(), cap).unwrap().into_consumer();
        (p, c)
    }

    fn d(i: u64) -> BuffDesc {
        BuffDesc::new(i * 2048, (i % 1500) as u16 + 1, (i % 64) as u8)
    }

    #[test]
    fn capacity_must_be_power_of_two_up_to_32768() {
        for ok in [1, 2, 512, 32768] {
            assert!(Capacity::new(ok).is_ok(), "{ok}");
        }
        for bad in [0, 3, 513, 65536, 40000] {
            assert_eq!(Capacity::new(bad), Err(BadCapacity(bad)));
        }
    }

    #[test]
    fn region_too_small_for_capacity_is_refused() {
        let mem = OwnedRegion::new(queue_bytes(4));
        assert!(Queue::new(mem.region(), Capacity::new(4).unwrap()).is_ok());
        assert!(Queue::new(mem.region(), Capacity::new(8).unwrap()).is_err());
    }

    #[test]
    fn fifo_until_full_then_full_then_empty() {
        let mem = OwnedRegion::new(queue_bytes(8));
        let (mut p, mut c) = pair(&mem, 8);
        assert_eq!(c.dequeue(), Err(QueueError::Empty));
        for i in 0..8 {
            p.enqueue(d(i)).unwrap();
        }
        assert_eq!(p.enqueue(d(99)), Err(QueueError::Full));
        assert!(p.is_full().unwrap());
        for i in 0..8 {
            assert_eq!(c.dequeue().unwrap(), d(i));
        }
        assert_eq!(c.dequeue(), Err(QueueError::Empty));
    }

    #[test]
    fn full_is_detected_after_tail_wraps_and_head_has_not() {
        // The case sDDF's C `full` check gets wrong: head = 65530, tail = 506 (512 queued).
        let mem = OwnedRegion::new(queue_bytes(512));
        let region = mem.region();
        region.write(0, &506u16.to_le_bytes()).unwrap();
        region.write(2, &65530u16.to_le_bytes()).unwrap();
        let (mut p, mut c) = pair(&mem, 512);
        assert_eq!(p.len(), Ok(512));
        assert_eq!(p.enqueue(d(1)), Err(QueueError::Full));
        assert_eq!(c.len(), Ok(512));
        c.dequeue().unwrap();
        assert_eq!(p.enqueue(d(1)), Ok(()));
    }

    #[test]
    fn header_bytes_match_the_c_layout() {
        let mem = OwnedRegion::new(queue_bytes(4));
        let (mut p, mut c) = pair(&mem, 4);
        p.enqueue(BuffDesc::new(0x1000, 60, 2)).unwrap();
        p.enqueue(BuffDesc::new(0x1800, 61, 0)).unwrap();
        c.dequeue().unwrap();
        c.cancel_signal();
        let mut raw = [0u8; 8 + 32];
        mem.region().read(0, &mut raw).unwrap();
        assert_eq!(&raw[0..8], &[2, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(&raw[8..16], &0x1000u64.to_le_bytes());
        assert_eq!(&raw[16..18], &60u16.to_le_bytes());
        assert_eq!(raw[18], 2);
    }

    #[test]
    fn peer_moving_head_past_tail_is_misbehaviour() {
        let mem = OwnedRegion::new(queue_bytes(16));
        let (mut p, _c) = pair(&mem, 16);
        p.enqueue(d(0)).unwrap();
        mem.region().write(2, &5u16.to_le_bytes()).unwrap();
        assert_eq!(
            p.enqueue(d(1)),
            Err(QueueError::PeerMisbehaviour { ours: 1, theirs: 5 })
        );
    }

    #[test]
    fn peer_moving_tail_too_far_is_misbehaviour_not_data() {
        let mem = OwnedRegion::new(queue_bytes(16));
        let (_p, mut c) = pair(&mem, 16);
        mem.region().write(0, &17u16.to_le_bytes()).unwrap();
        assert_eq!(
            c.dequeue(),
            Err(QueueError::PeerMisbehaviour {
                ours: 0,
                theirs: 17
            })
        );
        assert_eq!(
            c.len(),
            Err(QueueError::PeerMisbehaviour {
                ours: 0,
                theirs: 17
            })
        );
    }

    #[test]
    fn producer_scribbling_on_head_does_not_affect_the_consumer() {
        let mem = OwnedRegion::new(queue_bytes(4));
        let (mut p, mut c) = pair(&mem, 4);
        p.enqueue(d(7)).unwrap();
        p.enqueue(d(8)).unwrap();
        assert_eq!(c.dequeue().unwrap(), d(7));
        // A hostile producer rewinds head; the consumer keeps its own copy and republishes.
        mem.region().write(2, &0u16.to_le_bytes()).unwrap();
        assert_eq!(c.dequeue().unwrap(), d(8));
        assert_eq!(c.dequeue(), Err(QueueError::Empty));
    }

    #[test]
    fn a_second_filler_at_init_is_seen_by_the_producer() {
        // The consuming side fills its free queue at start-up after the producer attached.
        let mem = OwnedRegion::new(queue_bytes(4));
        let (mut p, mut c) = pair(&mem, 4);
        let mut filler = Queue::new(mem.region(), Capacity::new(4).unwrap())
            .unwrap()
            .into_producer();
        filler.enqueue(d(1)).unwrap();
        filler.enqueue(d(2)).unwrap();
        assert_eq!(c.dequeue().unwrap(), d(1));
        p.enqueue(d(3)).unwrap();
        assert_eq!(c.dequeue().unwrap(), d(2));
        assert_eq!(c.dequeue().unwrap(), d(3));
    }

    #[test]
    fn signalling_protocol_round_trip() {
        let mem = OwnedRegion::new(queue_bytes(4));
        let (mut p, mut c) = pair(&mem, 4);
        // Zeroed memory means "signal wanted": the first batch notifies, once.
        p.enqueue(d(1)).unwrap();
        assert!(p.take_signal_request());
        p.enqueue(d(2)).unwrap();
        assert!(!p.take_signal_request());
        // The consumer drains, re-arms, and nothing arrived: it may sleep.
        while c.dequeue().is_ok() {}
        assert_eq!(c.rearm(), Ok(false));
        p.enqueue(d(3)).unwrap();
        assert!(p.take_signal_request());
        // Work that arrives before the re-check is found by the double-check.
        p.enqueue(d(4)).unwrap();
        assert_eq!(c.rearm(), Ok(true));
        assert!(!p.take_signal_request(), "request was withdrawn");
    }

    #[test]
    fn self_provided_fill_side_starts_with_every_buffer() {
        let free = OwnedRegion::new(queue_bytes(4));
        let active = OwnedRegion::new(queue_bytes(4));
        fn q(r: &OwnedRegion) -> Queue<'_> {
            Queue::new(r.region(), Capacity::new(4).unwrap()).unwrap()
        }
        let mut fill = FillSide::new_self_provided(q(&free), q(&active), 4).unwrap();
        for i in 0..4u64 {
            assert_eq!(fill.free.dequeue().unwrap(), BuffDesc::new(i * 2048, 0, 0));
        }
        assert_eq!(fill.free.dequeue(), Err(QueueError::Empty));
        assert!(FillSide::new_self_provided(q(&free), q(&active), 5).is_err());
    }

    #[test]
    fn provide_all_buffers_fills_free_with_offsets() {
        let free = OwnedRegion::new(queue_bytes(8));
        let active = OwnedRegion::new(queue_bytes(8));
        let cap = Capacity::new(8).unwrap();
        let mut drain = DrainSide::new(
            Queue::new(free.region(), cap).unwrap(),
            Queue::new(active.region(), cap).unwrap(),
        );
        drain.provide_all_buffers(0x5fef_0000, 8).unwrap();
        let mut fill = FillSide::new(
            Queue::new(free.region(), cap).unwrap(),
            Queue::new(active.region(), cap).unwrap(),
        );
        for i in 0..8u64 {
            assert_eq!(
                fill.free.dequeue().unwrap(),
                BuffDesc::new(0x5fef_0000 + i * 2048, 0, 0)
            );
        }
    }
}
