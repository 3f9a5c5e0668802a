//! Restarting a client PD: its surviving peers rebuild its queues (netvm's extension of sDDF;
//! sDDF 0.7 has no restart protocol).
//!
//! # The problem
//!
//! When a client PD dies, some of its buffers are in its queues, some were held by the dead
//! instance and some of its TX buffers are with the driver. A new instance that initialises its
//! queues as at first start (a client hands itself every TX buffer) duplicates buffers; one
//! that hands itself none loses those the dead instance held. Only the peers know the truth:
//! the copier holds a client RX buffer only within one of its handlers, so every RX buffer is in
//! the client's two RX queues or was held by the dead instance; virt_tx has an in-flight bit for
//! every TX buffer it gave the driver, and every other TX buffer is in the client's TX queues or
//! was held by the dead instance.
//!
//! # The protocol
//!
//! Each client connection (copier ↔ client, virt_tx ↔ client) has two 32-bit words, the
//! client's `epoch` and the peer's `done`:
//!
//! 1. A client instance starts by reading `epoch`. 0 means no instance ever connected: it
//!    writes 1 ([`FIRST_EPOCH`]) *before touching any queue* and initialises its queues as sDDF
//!    does (fresh memory needs no reset, and this is the only behaviour a C sDDF peer knows).
//!    Anything else means an earlier instance existed: it writes the next epoch `n`, notifies
//!    the peer on the connection's channel, and touches none of the pair's queues (not even a
//!    signal flag) until it reads `done == n`.
//! 2. The peer, on every notification, compares `epoch` with the last one it served (kept
//!    privately, starting at 1). When `epoch` is ahead, it rebuilds the pair as fresh memory
//!    plus the buffers the client should hold: both queues emptied (what the active queue held
//!    is counted as dropped), then every buffer of the client that is not elsewhere goes into
//!    the client's free queue (the copier: all of the client's RX buffers, as at its own start;
//!    virt_tx: every TX buffer of the client that is not in flight; the in-flight ones come
//!    back through completions as usual). Then it writes `done = n` (Release) and notifies the
//!    client.
//! 3. The client reads `done` (Acquire), builds its queue handles from the reset indices, and
//!    runs. The queue roles after a reset are those of a first start: the side that filled a
//!    free queue at start-up (copier, or virt_tx for TX) filled it again.
//!
//! Writing `epoch` before the first queue access makes every death safe: a first instance that
//! dies half-way through handing itself its TX buffers is followed by one that asks for a reset.
//! An instance that dies while waiting is followed by one that asks for a later epoch; the peer
//! serves whichever epoch it reads, the newest instance waits for its own.
//!
//! # The driver as a client
//!
//! A driver (netvm's uio-driver, in a driver VM or as host mode's stand-in) restarts the same
//! way, in the client's role: its words are in its `rx_free` (answered by virt_rx) and `tx_free`
//! (answered by virt_tx). virt_rx refills `rx_free` from its owner table (every buffer no client
//! holds), virt_tx hands every buffer still in flight back to its client as a dropped frame; both
//! first take what the dead driver completed, as on any notification. The driver side is
//! `uio_driver::driver::connect`.
//!
//! # Where the words live
//!
//! In the free queue region of the connection (the client's `rx_free` and `tx_free`), at
//! [`words_offset`] = the end of the descriptor array rounded up to 64 bytes (a cache line of
//! their own, away from the descriptors). Microkit regions are whole pages and a queue takes
//! `8 + 16 × capacity` bytes, which is never a page multiple, so every page-rounded queue region
//! has at least 2 KiB spare after its array: the words cost no region, no system-description
//! change and no new config field, and both sides find them from the queue config they already
//! have. A C sDDF component reads and writes only the header and the array, so the queue stays
//! binary compatible; the spare bytes are zero in fresh memory, which is "no instance yet". A
//! separate control region per connection would be cleaner to read in the SDF but would need
//! the SDF generator, the config derivations and every PD's config to grow, for 8 bytes.
//! A region too small to hold the words (possible only in tests) leaves the connection without
//! restart support: the client always starts fresh, the peer never resets.
//!
//! # Untrusted client
//!
//! The peer trusts nothing in the words: it keeps the epoch it served privately (a client
//! writing `done` fools only itself), acts only on an `epoch` that moved forward (wrapping
//! distance below 2^31), and reports one that moved backwards as [`Poll::Bad`], once per
//! distinct value. A reset touches only that client's queues and buffers, so a client that asks
//! for resets while it runs garbles only its own traffic; each costs the peer one pass over that
//! client's buffers, the same order of work as a full queue of descriptors.
use core::sync::atomic::Ordering::{Acquire, Release};

use core::sync::atomic::AtomicU32;

use sddf::config::QueuePair;
use sddf::queue::{queue_bytes, Capacity};
use sddf::shm::Region;
use sddf::Notifier;

/// `epoch` before any client instance connected (fresh memory).
pub const NOT_CONNECTED: u32 = 0;
/// `epoch` of the first instance, which needs no reset.
pub const FIRST_EPOCH: u32 = 1;

/// Bytes the words take: `epoch` (written by the client only) at [`words_offset`], then `done`
/// (written by the peer only).
pub const WORDS_BYTES: usize = 8;

/// Where the words are in a free queue region of `capacity` entries.
pub const fn words_offset(capacity: usize) -> usize {
    queue_bytes(capacity).next_multiple_of(64)
}

/// The epoch after `epoch`, skipping [`NOT_CONNECTED`] and [`FIRST_EPOCH`] on wrapping.
pub const fn next_epoch(epoch: u32) -> u32 {
    match epoch.checked_add(1) {
        Some(n) => n,
        None => FIRST_EPOCH + 1,
    }
}

/// The reconnect words of one connection.
#[derive(Clone, Copy)]
pub struct ControlWords<'a> {
    words: Words<'a>,
}

/// The two words in shared memory.
#[derive(Clone, Copy)]
struct Words<'a> {
    /// Written by the client only.
    epoch: &'a AtomicU32,
    /// Written by the peer only.
    done: &'a AtomicU32,
}

impl<'a> ControlWords<'a> {
    /// The words in `free_queue` (the connection's free queue region, `capacity` entries), or
    /// `None` when the region has no room for them after its array.
    pub fn new(free_queue: Region<'a>, capacity: Capacity) -> Option<Self> {
        let offset = words_offset(capacity.entries());
        let epoch = free_queue.atomic_u32(offset).ok()?;
        let done = free_queue.atomic_u32(offset + 4).ok()?;
        Some(ControlWords {
            words: Words { epoch, done },
        })
    }

    /// The words of a connection as [`sddf::config::ConnectionResource::queues`] found it (in
    /// its free queue region), or `None` when that region has no room for them (the connection
    /// cannot be rebuilt).
    pub fn of(pair: &QueuePair<'a>) -> Option<Self> {
        Self::new(pair.free_region, pair.capacity)
    }

    /// Client, once per instance, before touching the queues: announces the instance. `None`
    /// for the first instance (initialise the queues as sDDF does), `Some(n)` for a later one:
    /// it must leave the pair's queues alone until [`ControlWords::reset_done`]`(n)`. The
    /// caller notifies the peer after a `Some`.
    pub fn client_announce(&self) -> Option<u32> {
        // Only this client writes `epoch`: it reads back its previous instance's value.
        let last = self.words.epoch.load(Acquire);
        if last == NOT_CONNECTED {
            self.words.epoch.store(FIRST_EPOCH, Release);
            return None;
        }
        let epoch = next_epoch(last);
        self.words.epoch.store(epoch, Release);
        Some(epoch)
    }

    /// Client: whether the peer has rebuilt the queues for `epoch` (Acquire: the reset indices
    /// and descriptors are visible once this returns `true`).
    pub fn reset_done(&self, epoch: u32) -> bool {
        self.words.done.load(Acquire) == epoch
    }
}

/// What a peer finds in the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Nothing to do.
    Idle,
    /// A new client instance waits for a reset to this epoch.
    Reset(u32),
    /// The client wrote an epoch behind the one served (hostile or corrupt; ignored).
    Bad(u32),
}

/// The peer's end of one connection's words.
pub struct PeerEnd<'a> {
    words: Option<ControlWords<'a>>,
    /// The epoch last served, private (never read back from shared memory).
    served: u32,
    /// The last bad epoch reported, so that one scribble is reported once.
    last_bad: Option<u32>,
}

impl<'a> PeerEnd<'a> {
    /// The peer's end of `words` (`None`: the connection has no restart support).
    pub fn new(words: Option<ControlWords<'a>>) -> Self {
        PeerEnd {
            words,
            served: FIRST_EPOCH,
            last_bad: None,
        }
    }

    /// Whether the connection has reconnect words.
    pub fn supported(&self) -> bool {
        self.words.is_some()
    }

    /// Looks at the client's `epoch` (one Acquire load).
    pub fn poll(&mut self) -> Poll {
        let Some(words) = self.words else {
            return Poll::Idle;
        };
        let epoch = words.words.epoch.load(Acquire);
        let ahead = epoch.wrapping_sub(self.served);
        if epoch == NOT_CONNECTED || ahead == 0 {
            Poll::Idle
        } else if ahead < 1 << 31 {
            Poll::Reset(epoch)
        } else if self.last_bad == Some(epoch) {
            Poll::Idle
        } else {
            self.last_bad = Some(epoch);
            Poll::Bad(epoch)
        }
    }

    /// [`PeerEnd::poll`] as a serving peer acts on it: the epoch to serve if the client asks for
    /// a reset, else `None`; a request that moved backwards counts in `bad_requests` (once per
    /// bad epoch, as `poll` reports it).
    pub fn reset_requested(&mut self, bad_requests: &mut u64) -> Option<u32> {
        match self.poll() {
            Poll::Idle => None,
            Poll::Bad(_) => {
                *bad_requests += 1;
                None
            }
            Poll::Reset(epoch) => Some(epoch),
        }
    }

    /// After rebuilding the queues for `epoch` (a value [`PeerEnd::poll`] returned): publishes
    /// `done` (Release). The caller then notifies the client.
    pub fn served(&mut self, epoch: u32) {
        self.served = epoch;
        self.last_bad = None;
        if let Some(words) = self.words {
            words.words.done.store(epoch, Release);
        }
    }

    /// The end of every reset a peer serves, after it rebuilt the queues for `epoch`: publishes
    /// `done` ([`PeerEnd::served`]), counts the reset in `resets`, and notifies the client on
    /// `channel` (counted in `notifications`), always: the new instance waits for `done`, not
    /// for a signal request. `when` is how the peer notifies that client otherwise.
    pub fn finish_reset(
        &mut self,
        epoch: u32,
        counts: ResetCounts<'_>,
        notifier: &mut impl Notifier,
        channel: u8,
        when: Notify,
    ) {
        *counts.resets += 1;
        self.served(epoch);
        *counts.notifications += 1;
        match when {
            Notify::Now => notifier.notify(channel),
            Notify::Deferred => notifier.deferred_notify(channel),
        }
    }
}

/// The counters [`PeerEnd::finish_reset`] adds to.
pub struct ResetCounts<'c> {
    /// Resets served.
    pub resets: &'c mut u64,
    /// Notifications sent to the client.
    pub notifications: &'c mut u64,
}

/// When [`PeerEnd::finish_reset`] notifies the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// At once.
    Now,
    /// When the current handler returns.
    Deferred,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sddf::queue::{DrainSide, FillSide, Queue, QueueError};
    use sddf::shm::OwnedRegion;
    use sddf::BuffDesc;

    fn cap(n: u32) -> Capacity {
        Capacity::new(n).unwrap()
    }

    #[test]
    fn words_sit_after_the_array_on_their_own_cache_line() {
        assert_eq!(words_offset(512), 8256);
        assert_eq!(words_offset(1), 64);
        // Every page-rounded queue region has room for them.
        for shift in 0..=15 {
            let n = 1usize << shift;
            let region = queue_bytes(n).next_multiple_of(4096);
            assert!(words_offset(n) + WORDS_BYTES <= region, "capacity {n}");
        }
        let exact = OwnedRegion::new(queue_bytes(4));
        assert!(ControlWords::new(exact.region(), cap(4)).is_none());
        let page = OwnedRegion::new(4096);
        assert!(ControlWords::new(page.region(), cap(4)).is_some());
    }

    #[test]
    fn first_instance_needs_no_reset_later_ones_ask_for_the_next_epoch() {
        let mem = OwnedRegion::new(4096);
        let words = ControlWords::new(mem.region(), cap(8)).unwrap();
        let mut peer = PeerEnd::new(Some(words));
        assert_eq!(peer.poll(), Poll::Idle, "nobody connected yet");
        assert_eq!(words.client_announce(), None);
        assert_eq!(peer.poll(), Poll::Idle, "the first instance asks nothing");
        assert_eq!(words.client_announce(), Some(2));
        assert!(!words.reset_done(2));
        assert_eq!(peer.poll(), Poll::Reset(2));
        peer.served(2);
        assert!(words.reset_done(2));
        assert_eq!(peer.poll(), Poll::Idle);
        // An instance that died waiting, then another: the peer serves the newest.
        assert_eq!(words.client_announce(), Some(3));
        assert_eq!(words.client_announce(), Some(4));
        assert_eq!(peer.poll(), Poll::Reset(4));
        peer.served(4);
        assert!(words.reset_done(4) && !words.reset_done(3));
    }

    #[test]
    fn epochs_wrap_without_meaning_first_start() {
        assert_eq!(next_epoch(u32::MAX), 2);
        let mem = OwnedRegion::new(4096);
        let words = ControlWords::new(mem.region(), cap(8)).unwrap();
        let mut peer = PeerEnd::new(Some(words));
        // Walk the served epoch up in legitimate (forward) steps.
        for epoch in [0x4000_0000, 0x8000_0000, 0xc000_0000, u32::MAX - 1] {
            mem.region()
                .write(words_offset(8), &u32::to_le_bytes(epoch))
                .unwrap();
            assert_eq!(peer.poll(), Poll::Reset(epoch));
            peer.served(epoch);
        }
        assert_eq!(words.client_announce(), Some(u32::MAX));
        assert_eq!(peer.poll(), Poll::Reset(u32::MAX));
        peer.served(u32::MAX);
        assert_eq!(words.client_announce(), Some(2));
        assert_eq!(peer.poll(), Poll::Reset(2), "across the wrap");
    }

    #[test]
    fn a_backwards_epoch_is_reported_once_and_ignored() {
        let mem = OwnedRegion::new(4096);
        let at = words_offset(8);
        let words = ControlWords::new(mem.region(), cap(8)).unwrap();
        let mut peer = PeerEnd::new(Some(words));
        mem.region().write(at, &10u32.to_le_bytes()).unwrap();
        assert_eq!(peer.poll(), Poll::Reset(10));
        peer.served(10);
        mem.region().write(at, &7u32.to_le_bytes()).unwrap();
        assert_eq!(peer.poll(), Poll::Bad(7));
        assert_eq!(peer.poll(), Poll::Idle, "reported once");
        mem.region().write(at, &1u32.to_le_bytes()).unwrap();
        assert_eq!(peer.poll(), Poll::Bad(1));
        // A scribbled `done` changes nothing on the peer's side.
        mem.region().write(at + 4, &99u32.to_le_bytes()).unwrap();
        mem.region().write(at, &10u32.to_le_bytes()).unwrap();
        assert_eq!(peer.poll(), Poll::Idle);
        // Without words there is nothing to poll.
        assert_eq!(PeerEnd::new(None).poll(), Poll::Idle);
        assert!(!PeerEnd::new(None).supported());
    }

    fn queues<'a>(
        free: &'a OwnedRegion,
        active: &'a OwnedRegion,
        n: u32,
    ) -> (Queue<'a>, Queue<'a>) {
        (
            Queue::new(free.region(), cap(n)).unwrap(),
            Queue::new(active.region(), cap(n)).unwrap(),
        )
    }

    #[test]
    fn fill_side_reset_discards_active_and_hands_every_buffer_back_once() {
        let (fm, am) = (OwnedRegion::new(4096), OwnedRegion::new(4096));
        let (free, active) = queues(&fm, &am, 8);
        let mut copier = FillSide::new_self_provided(free, active, 8).unwrap();
        let mut client = DrainSide::new(free, active);
        // Traffic: the copier delivers 5 frames, the client takes 2 and returns 1, and dies
        // holding the other.
        for _ in 0..5 {
            let d = copier.free.dequeue().unwrap();
            copier
                .active
                .enqueue(BuffDesc::new(d.io_or_offset, 60, 0))
                .unwrap();
        }
        let a = client.active.dequeue().unwrap();
        client.active.dequeue().unwrap();
        client
            .free
            .enqueue(BuffDesc::new(a.io_or_offset, 0, 0))
            .unwrap();
        assert_eq!(copier.reset_self_provided(8), Ok(3));
        let mut client = DrainSide::new(free, active);
        assert_eq!(client.active.dequeue(), Err(QueueError::Empty));
        let mut seen = [false; 8];
        while let Ok(d) = copier.free.dequeue() {
            let i = (d.io_or_offset / 2048) as usize;
            assert!(!seen[i], "buffer {i} twice");
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s), "every buffer once: {seen:?}");
        // The queues work as fresh ones afterwards, signal flags included.
        copier.active.enqueue(BuffDesc::new(0, 60, 0)).unwrap();
        assert!(copier.active.take_signal_request());
        assert_eq!(client.active.dequeue().unwrap().len, 60);
    }

    #[test]
    fn drain_side_reset_discards_active_and_empties_free() {
        let (fm, am) = (OwnedRegion::new(4096), OwnedRegion::new(4096));
        let (free, active) = queues(&fm, &am, 4);
        let mut client = FillSide::new_self_provided(free, active, 4).unwrap();
        let mut virt = DrainSide::new(free, active);
        for _ in 0..3 {
            let d = client.free.dequeue().unwrap();
            client
                .active
                .enqueue(BuffDesc::new(d.io_or_offset, 60, 0))
                .unwrap();
        }
        virt.active.dequeue().unwrap();
        assert_eq!(virt.reset(), Ok(2));
        assert_eq!(virt.active.dequeue(), Err(QueueError::Empty));
        virt.free.enqueue(BuffDesc::new(2048, 0, 0)).unwrap();
        let mut client = FillSide::new(free, active);
        assert_eq!(client.free.dequeue().unwrap().io_or_offset, 2048);
        assert_eq!(client.free.dequeue(), Err(QueueError::Empty));
    }

    #[test]
    fn a_reset_of_garbled_indices_reports_them_and_still_empties_the_queues() {
        let (fm, am) = (OwnedRegion::new(4096), OwnedRegion::new(4096));
        let (free, active) = queues(&fm, &am, 4);
        let mut virt = DrainSide::new(free, active);
        // A scribbling client left tail 9 against head 0 in a queue of 4.
        am.region().write(0, &9u16.to_le_bytes()).unwrap();
        assert!(matches!(
            virt.reset(),
            Err(QueueError::PeerMisbehaviour { .. })
        ));
        assert_eq!(virt.active.len(), Ok(0));
        assert_eq!(virt.free.len(), Ok(0));
        let mut copier = FillSide::new(free, active);
        am.region().write(0, &9u16.to_le_bytes()).unwrap();
        assert!(matches!(
            copier.reset_self_provided(4),
            Err(sddf::queue::ResetError::Indices(_))
        ));
        assert_eq!(copier.free.len(), Ok(4), "refilled all the same");
        // More buffers than the queue holds: refused, not wrapped.
        assert!(matches!(
            copier.reset_self_provided(5),
            Err(sddf::queue::ResetError::Refill(QueueError::Full))
        ));
    }
}
