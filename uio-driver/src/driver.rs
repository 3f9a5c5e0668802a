//! The driver core: moves frames between a [`Nic`] and the driver side of sDDF's queues, and
//! signals virt_rx / virt_tx through a [`Platform`]. It knows nothing of UIO or sockets.
//!
//! # Contract
//!
//! * RX (driver = fill side of the rx_free / rx_active pair): for each frame from the NIC, take a
//!   free `{offset}` from virt_rx, copy the frame into `rx_data` at `offset` (aligned 64-bit
//!   volatile stores only: the data region may be a Device-memory UIO mapping), enqueue
//!   `{offset, len}` on rx_active. One doorbell per batch when virt_rx asked for one.
//! * TX (driver = drain side of the tx_active / tx_free pair): dequeue `{offset, len, oid}`,
//!   validate it, copy the frame out of client TX region `oid` (aligned 64-bit volatile loads),
//!   hand it to the NIC, return `{offset, 0, oid}` on tx_free. One doorbell per batch.
//! * Every TX descriptor is validated before anything is read through it: `len` in
//!   `1..=2048`, `oid` < number of TX regions, `offset` a multiple of 2048 with the whole buffer
//!   inside the region. A bad one is returned to tx_free unchanged (length 0) and counted; its
//!   buffer is never touched. Free RX descriptors are checked the same way (they cannot be handed
//!   back, since the driver consumes that queue, so they are counted and dropped).
//! * Frames longer than one buffer, or truncated by the NIC, are dropped and counted.
//! * Signalling follows sDDF: producers notify only when the consumer asked
//!   ([`sddf::queue::Producer::take_signal_request`]). The driver asks for tx_active signals only
//!   when it is about to sleep ([`Driver::arm_for_sleep`]: request, then double-check) and
//!   withdraws the request when it wakes, so virt_tx does not interrupt a guest that is awake
//!   and will look at tx_active anyway: it does so on every pass. (In the driver VM each such
//!   interrupt costs the guest two trapped distributor writes, a VGIC maintenance fault and a
//!   wake-up of this process.) It asks for rx_free signals only when it ran out of buffers with
//!   frames waiting, so that virt_rx does not interrupt the guest needlessly.
//! * Order after a wake-up is TX first, then RX, as sDDF drivers do (sddf-net.md §2.5).
//! * A restarted driver ([`connect`], before any queue handle exists) asks virt_rx and virt_tx
//!   to rebuild its two queue pairs, as a restarted client asks its peers ([`netvm_api::reconnect`]):
//!   it touches no queue until both answered, so the buffers the dead instance held are neither
//!   lost nor handed out twice.
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use netvm_api::reconnect::ControlWords;
use sddf::queue::{Capacity, DrainSide, FillSide, QueueError};
use sddf::shm::Region;
use sddf::{BuffDesc, NET_BUFFER_SIZE};

use crate::counters::Counters;

/// Frames or descriptors handled per pass before the loop looks at the other direction.
pub const BATCH: usize = 64;

/// A file descriptor the NIC wants polled, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicPoll {
    /// The descriptor.
    pub fd: RawFd,
    /// Wake when it is readable.
    pub readable: bool,
    /// Wake when it is writable.
    pub writable: bool,
}

impl NicPoll {
    /// As a `poll(2)` entry.
    pub fn pollfd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.fd,
            events: if self.readable { libc::POLLIN } else { 0 }
                | if self.writable { libc::POLLOUT } else { 0 },
            revents: 0,
        }
    }
}

/// What woke [`Platform::wait`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// virt_rx notified the driver (free RX buffers arrived).
    pub rx_notified: bool,
    /// virt_tx notified the driver (frames to send arrived).
    pub tx_notified: bool,
    /// A NIC descriptor polled for reading is readable.
    pub nic_readable: bool,
    /// A NIC descriptor polled for writing is writable.
    pub nic_writable: bool,
    /// The wait was cut short by a signal.
    pub interrupted: bool,
}

/// Where the driver runs: how it rings the virtualisers and how it sleeps.
///
/// In the guest ([`crate::uio::UioPlatform`]) doorbells are stores to unmapped UIO pages and
/// notifications are UIO interrupts; in host mode they are Microkit notifications (or, in tests
/// and benchmarks, eventfds: [`crate::host::EventFdPlatform`]).
pub trait Platform {
    /// Notifies virt_rx (frames were added to rx_active and it asked for a signal).
    fn doorbell_rx(&mut self) -> io::Result<()>;
    /// Notifies virt_tx (buffers were added to tx_free and it asked for a signal).
    fn doorbell_tx(&mut self) -> io::Result<()>;
    /// Sleeps until a virtualiser notifies the driver, one of `nic` is ready, a signal arrives or
    /// `timeout` passes (`None` = no limit). Notifications are consumed and re-armed before this
    /// returns, so one that arrives while the driver works wakes the next call.
    fn wait(&mut self, nic: &[NicPoll], timeout: Option<Duration>) -> io::Result<Events>;
}

/// One frame offered by the NIC.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'f> {
    /// The bytes captured.
    pub data: &'f [u8],
    /// The frame's length on the wire (larger than `data.len()` if the NIC truncated it).
    pub wire_len: usize,
}

/// What the driver did with an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxVerdict {
    /// Copied or dropped: the NIC may release it.
    Consumed,
    /// No buffer: keep it (and everything after it) for the next call.
    Keep,
}

/// What one [`Nic::tx_flush`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxReport {
    /// Frames the NIC accepted.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Frames the NIC refused for good (they are dropped).
    pub failed: u64,
}

/// The packet side: a source and sink of Ethernet frames.
pub trait Nic {
    /// The descriptors to poll: readable if `want_rx`, writable if `want_tx`.
    fn poll_set(&self, want_rx: bool, want_tx: bool) -> Vec<NicPoll>;
    /// Offers up to `budget` received frames to `deliver`, in order; stops at the first
    /// [`RxVerdict::Keep`]. Returns `true` if frames may remain (budget exhausted or kept).
    fn receive(
        &mut self,
        budget: usize,
        deliver: &mut dyn FnMut(RxFrame<'_>) -> RxVerdict,
    ) -> io::Result<bool>;
    /// A free transmit buffer of [`NET_BUFFER_SIZE`] bytes, or `None` while the NIC is full.
    fn tx_buffer(&mut self) -> Option<&mut [u8]>;
    /// Queues the first `len` bytes of the buffer last returned by [`Nic::tx_buffer`].
    fn tx_commit(&mut self, len: usize);
    /// Hands the queued frames to the device (one system call per batch where possible).
    fn tx_flush(&mut self) -> io::Result<TxReport>;
    /// Whether committed frames are still waiting for room in the device.
    fn tx_pending(&self) -> bool;
    /// Frames the device dropped since the last call because the driver did not keep up.
    fn take_dropped(&mut self) -> io::Result<u64>;
    /// Whether [`Nic::receive`] would find a frame now, looked up without a system call (for
    /// [`Driver::set_busy_poll`]). A NIC that cannot tell says `false`; busy polling then
    /// only watches tx_active.
    fn rx_ready(&self) -> bool {
        false
    }
}

/// The driver's side of the four queues and the data regions they refer to.
pub struct DriverQueues<'a> {
    /// rx_free (consumed) / rx_active (produced).
    pub rx: FillSide<'a>,
    /// The RX data region that rx offsets index.
    pub rx_data: Region<'a>,
    /// tx_active (consumed) / tx_free (produced).
    pub tx: DrainSide<'a>,
    /// Client TX data regions, indexed by `oid`.
    pub tx_data: Vec<Region<'a>>,
}

/// The driver's reconnect words ([`netvm_api::reconnect`]), in the spare bytes after the descriptor
/// arrays of rx_free (answered by virt_rx) and tx_free (answered by virt_tx). `None`: that queue
/// region has no room for them, and the pair is always taken as fresh.
#[derive(Clone, Copy)]
pub struct DriverWords<'a> {
    /// In rx_free.
    pub rx: Option<ControlWords<'a>>,
    /// In tx_free.
    pub tx: Option<ControlWords<'a>>,
}

impl<'a> DriverWords<'a> {
    /// The words in the whole rx_free and tx_free regions (not just their descriptor arrays).
    pub fn new(
        rx_free: Region<'a>,
        rx_capacity: Capacity,
        tx_free: Region<'a>,
        tx_capacity: Capacity,
    ) -> Self {
        DriverWords {
            rx: ControlWords::new(rx_free, rx_capacity),
            tx: ControlWords::new(tx_free, tx_capacity),
        }
    }
}

/// How long a restarted driver waits for an answer before ringing again. A doorbell only makes
/// the virtualiser look at the words, so ringing twice is harmless; it covers a notification
/// lost with the dead instance (e.g. the VMM reset the guest's interrupt state).
pub const RESET_RING_AGAIN: Duration = Duration::from_millis(100);

/// Announces this driver instance in `words`, before any queue handle is built (a handle reads
/// the queue indices when it is made, and a reset rewrites them). The first instance of the
/// system gets `Ok(false)` at once: its queues are as virt_rx and virt_tx made them. A later one
/// rings virt_rx and virt_tx and waits (in `platform.wait`) until each has rebuilt its pair, then
/// gets `Ok(true)`; it rings again every [`RESET_RING_AGAIN`]. `keep_going` is asked after every
/// wake-up; when it says stop, this fails with [`io::ErrorKind::Interrupted`].
pub fn connect(
    words: DriverWords<'_>,
    platform: &mut dyn Platform,
    keep_going: &mut dyn FnMut() -> bool,
) -> io::Result<bool> {
    let rx = words.rx.and_then(|w| Some((w, w.client_announce()?)));
    let tx = words.tx.and_then(|w| Some((w, w.client_announce()?)));
    if rx.is_none() && tx.is_none() {
        return Ok(false);
    }
    let pending = |p: Option<(ControlWords<'_>, u32)>| p.is_some_and(|(w, e)| !w.reset_done(e));
    let mut rung: Option<Instant> = None;
    while pending(rx) || pending(tx) {
        if !keep_going() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "stopped while waiting for virt_rx / virt_tx to reset the queues",
            ));
        }
        if rung.is_none_or(|t| t.elapsed() >= RESET_RING_AGAIN) {
            if pending(rx) {
                platform.doorbell_rx()?;
            }
            if pending(tx) {
                platform.doorbell_tx()?;
            }
            rung = Some(Instant::now());
        }
        platform.wait(&[], Some(RESET_RING_AGAIN))?;
    }
    Ok(true)
}

/// Why a descriptor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadDesc {
    Len,
    Oid,
    Offset,
}

/// Checks that `offset` names a whole buffer of `region`.
fn buffer_offset(region: &Region<'_>, offset: u64) -> Option<usize> {
    let offset = usize::try_from(offset).ok()?;
    let fits = offset
        .checked_add(NET_BUFFER_SIZE)
        .is_some_and(|end| end <= region.len());
    (offset.is_multiple_of(NET_BUFFER_SIZE) && fits).then_some(offset)
}

/// The driver core.
pub struct Driver<'a> {
    q: DriverQueues<'a>,
    counters: Counters,
    /// Frames are waiting but rx_free was empty: sleep on rx_irq, not on the NIC.
    rx_starved: bool,
    /// The NIC had no room: sleep on NIC writability before taking more from tx_active.
    tx_blocked: bool,
    /// A pass stopped at its budget: run again without sleeping.
    rx_more: bool,
    tx_more: bool,
    /// How long to look for work before sleeping ([`Driver::set_busy_poll`]).
    busy_poll: Duration,
}

/// Looks at the NIC and tx_active this many times between two reads of the clock while busy
/// polling: in the driver VM under QEMU every read of the counter takes QEMU's global lock.
const BUSY_POLL_CHECKS: u32 = 64;

impl<'a> Driver<'a> {
    /// Takes over the queues. rx_free signals are withdrawn: the driver asks for them only when it
    /// runs out of buffers.
    pub fn new(q: DriverQueues<'a>) -> Self {
        q.rx.free.cancel_signal();
        Driver {
            q,
            counters: Counters::default(),
            rx_starved: false,
            tx_blocked: false,
            rx_more: false,
            tx_more: false,
            busy_poll: Duration::ZERO,
        }
    }

    /// Before sleeping, look for work for up to `d` ([`Nic::rx_ready`], tx_active) without a
    /// system call; zero (the default) sleeps at once. In the driver VM a sleep is a WFI the VMM
    /// traps, and the wake-up an injected interrupt: under load the next frames arrive within
    /// a few hundred microseconds, and finding them awake saves both. The cost is the CPU the
    /// poll burns, which the system's idle time pays (and utilisation counts as busy).
    pub fn set_busy_poll(&mut self, d: Duration) {
        self.busy_poll = d;
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Number of client TX regions.
    pub fn tx_regions(&self) -> usize {
        self.q.tx_data.len()
    }

    /// Moves frames from the NIC into RX buffers until the NIC is empty, buffers run out or one
    /// batch is done; rings virt_rx once if it asked.
    pub fn rx_process(&mut self, nic: &mut dyn Nic, platform: &mut dyn Platform) -> io::Result<()> {
        loop {
            let mut moved = 0u64;
            let mut out_of_buffers = false;
            let mut active_stuck = false;
            let q = &mut self.q;
            let c = &mut self.counters;
            let more = nic.receive(BATCH, &mut |frame| {
                if frame.wire_len > frame.data.len() {
                    c.rx_drop_truncated += 1;
                    return RxVerdict::Consumed;
                }
                if frame.data.len() > NET_BUFFER_SIZE {
                    c.rx_drop_oversize += 1;
                    return RxVerdict::Consumed;
                }
                match q.rx.active.is_full() {
                    Ok(false) => {}
                    Ok(true) => {
                        active_stuck = true;
                        return RxVerdict::Keep;
                    }
                    Err(_) => {
                        c.rx_queue_misbehaviour += 1;
                        active_stuck = true;
                        return RxVerdict::Keep;
                    }
                }
                let offset = loop {
                    match q.rx.free.dequeue() {
                        Ok(d) => match buffer_offset(&q.rx_data, d.io_or_offset) {
                            Some(o) => break o,
                            None => c.rx_bad_free_desc += 1,
                        },
                        Err(e) => {
                            if e != QueueError::Empty {
                                c.rx_queue_misbehaviour += 1;
                            }
                            out_of_buffers = true;
                            return RxVerdict::Keep;
                        }
                    }
                };
                // Cannot fail: the offset was checked to leave a whole buffer, and the frame fits
                // in one (with its zero padding to 8 bytes).
                if q.rx_data.write_words(offset, frame.data).is_err() {
                    c.rx_bad_free_desc += 1;
                    return RxVerdict::Consumed;
                }
                let desc = BuffDesc::new(offset as u64, frame.data.len() as u16, 0);
                if q.rx.active.enqueue(desc).is_err() {
                    // Checked not full above; only a peer rewriting our index gets here.
                    c.rx_queue_misbehaviour += 1;
                    return RxVerdict::Consumed;
                }
                c.rx_frames += 1;
                c.rx_bytes += frame.data.len() as u64;
                moved += 1;
                RxVerdict::Consumed
            })?;
            self.counters.rx_batch.record(moved);
            if moved > 0 && self.q.rx.active.take_signal_request() {
                self.counters.doorbells_rx += 1;
                platform.doorbell_rx()?;
            }
            self.rx_more = more && !out_of_buffers && !active_stuck;
            self.rx_starved = false;
            if active_stuck {
                // rx_active is full (virt_rx sized it wrongly) or corrupt: nothing to retry until
                // virt_rx moves; sleep until it next returns a buffer.
                self.q.rx.free.request_signal();
                self.rx_starved = true;
                return Ok(());
            }
            if !out_of_buffers {
                return Ok(());
            }
            // Out of buffers with frames waiting: ask virt_rx for a signal, then look again
            // (the sDDF double-check), so that buffers returned meanwhile are not missed.
            match self.q.rx.free.rearm() {
                Ok(true) => continue,
                Ok(false) => {
                    self.rx_starved = true;
                    return Ok(());
                }
                Err(_) => {
                    self.counters.rx_queue_misbehaviour += 1;
                    self.rx_starved = true;
                    return Ok(());
                }
            }
        }
    }

    fn validate_tx(&self, d: &BuffDesc) -> Result<(usize, usize), BadDesc> {
        let len = usize::from(d.len);
        if len == 0 || len > NET_BUFFER_SIZE {
            return Err(BadDesc::Len);
        }
        let region = self
            .q
            .tx_data
            .get(usize::from(d.oid()))
            .ok_or(BadDesc::Oid)?;
        let offset = buffer_offset(region, d.io_or_offset).ok_or(BadDesc::Offset)?;
        Ok((offset, len))
    }

    /// Returns a TX descriptor to virt_tx, unchanged but for its length.
    fn tx_return(&mut self, d: BuffDesc) -> bool {
        match self.q.tx.free.enqueue(d.with_len(0)) {
            Ok(()) => true,
            Err(_) => {
                self.counters.tx_queue_misbehaviour += 1;
                false
            }
        }
    }

    /// Sends what virt_tx queued, until tx_active is empty, the NIC is full or one batch is done;
    /// returns the buffers and rings virt_tx once if it asked.
    pub fn tx_process(&mut self, nic: &mut dyn Nic, platform: &mut dyn Platform) -> io::Result<()> {
        let mut taken = 0usize;
        let mut moved = 0u64;
        let mut returned = false;
        let mut blocked = false;
        let mut peer_broke = false;
        if nic.tx_pending() {
            self.flush(nic)?;
        }
        while taken < BATCH {
            let Some(buf) = nic.tx_buffer() else {
                blocked = true;
                break;
            };
            let d = match self.q.tx.active.dequeue() {
                Ok(d) => d,
                Err(QueueError::Empty) => break,
                Err(_) => {
                    self.counters.tx_queue_misbehaviour += 1;
                    peer_broke = true;
                    break;
                }
            };
            taken += 1;
            match self.validate_tx(&d) {
                Ok((offset, len)) => {
                    let region = self.q.tx_data[usize::from(d.oid())];
                    // Cannot fail: validated to lie in a whole buffer of the region.
                    if region.read_words(offset, &mut buf[..len]).is_ok() {
                        nic.tx_commit(len);
                        moved += 1;
                    } else {
                        self.counters.tx_bad_offset += 1;
                    }
                }
                Err(BadDesc::Len) => self.counters.tx_bad_len += 1,
                Err(BadDesc::Oid) => self.counters.tx_bad_oid += 1,
                Err(BadDesc::Offset) => self.counters.tx_bad_offset += 1,
            }
            // The frame (if any) now lives in the NIC's buffer: the sDDF buffer goes back.
            returned |= self.tx_return(d);
        }
        if moved > 0 {
            self.flush(nic)?;
        }
        self.counters.tx_batch.record(moved);
        if returned && self.q.tx.free.take_signal_request() {
            self.counters.doorbells_tx += 1;
            platform.doorbell_tx()?;
        }
        self.tx_blocked = blocked || nic.tx_pending();
        self.tx_more = !self.tx_blocked && !peer_broke && taken == BATCH;
        Ok(())
    }

    /// Before sleeping: asks virt_tx for a signal on tx_active, then looks again (the sDDF
    /// double-check). Returns `true` if frames arrived meanwhile (the request is withdrawn and
    /// the caller should process them instead of sleeping). A driver that sleeps on the NIC
    /// because it is full needs no signal.
    pub fn arm_for_sleep(&mut self) -> bool {
        if self.tx_blocked || self.tx_more || self.rx_more {
            return self.tx_more || self.rx_more;
        }
        match self.q.tx.active.rearm() {
            Ok(true) => {
                self.tx_more = true;
                true
            }
            Ok(false) => false,
            Err(_) => {
                self.counters.tx_queue_misbehaviour += 1;
                false
            }
        }
    }

    /// Looks for work for up to the busy-poll time ([`Driver::set_busy_poll`]). `Some` with the
    /// events to handle as soon as the NIC has a frame or tx_active a descriptor (or at once when
    /// the last pass left work); `None` when the time ran out, or busy polling is off or cannot
    /// help (the driver waits for RX buffers or NIC room, which only a notification or the NIC's
    /// writability announce).
    fn busy_poll(&mut self, nic: &dyn Nic) -> Option<Events> {
        if self.busy_poll.is_zero() || self.rx_starved || self.tx_blocked {
            return None;
        }
        if self.rx_more || self.tx_more {
            return Some(Events {
                nic_readable: self.rx_more,
                ..Events::default()
            });
        }
        let start = Instant::now();
        loop {
            for _ in 0..BUSY_POLL_CHECKS {
                let rx = nic.rx_ready();
                // An inconsistent tx_active is no reason to stay awake: the next pass after a
                // wake-up counts it (tx_process).
                let tx = !self.q.tx.active.is_empty().unwrap_or(true);
                if rx || tx {
                    self.counters.busy_poll_hits += 1;
                    return Some(Events {
                        nic_readable: rx,
                        ..Events::default()
                    });
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= self.busy_poll {
                self.counters.busy_poll_misses += 1;
                return None;
            }
        }
    }

    /// After waking: withdraws the tx_active signal request; the driver looks at tx_active on
    /// every pass until it next sleeps.
    pub fn woke(&mut self) {
        self.q.tx.active.cancel_signal();
    }

    fn flush(&mut self, nic: &mut dyn Nic) -> io::Result<()> {
        let r = nic.tx_flush()?;
        self.counters.tx_frames += r.sent;
        self.counters.tx_bytes += r.sent_bytes;
        self.counters.tx_send_errors += r.failed;
        Ok(())
    }

    /// Handles one wake-up: TX first, then RX.
    pub fn handle(
        &mut self,
        ev: Events,
        nic: &mut dyn Nic,
        platform: &mut dyn Platform,
    ) -> io::Result<()> {
        if ev.rx_notified {
            self.counters.irqs_rx += 1;
        }
        if ev.tx_notified {
            self.counters.irqs_tx += 1;
        }
        // tx_active is looked at on every pass (virt_tx signals only a sleeping driver), unless
        // the NIC is full and has not become writable.
        if !self.tx_blocked || ev.nic_writable {
            self.tx_process(nic, platform)?;
        }
        if ev.nic_readable || self.rx_more || (self.rx_starved && ev.rx_notified) {
            self.rx_process(nic, platform)?;
        }
        Ok(())
    }

    /// The event loop: processes both directions once, then sleeps and handles wake-ups until
    /// `keep_going` (called after every wake-up, with the counters and the NIC) returns `false`.
    pub fn run(
        &mut self,
        nic: &mut dyn Nic,
        platform: &mut dyn Platform,
        keep_going: &mut dyn FnMut(&Counters, &mut dyn Nic) -> bool,
    ) -> io::Result<()> {
        self.tx_process(nic, platform)?;
        self.rx_process(nic, platform)?;
        while keep_going(&self.counters, nic) {
            if let Some(ev) = self.busy_poll(nic) {
                self.handle(ev, nic, platform)?;
                continue;
            }
            let busy = self.arm_for_sleep();
            let polls = nic.poll_set(!self.rx_starved, self.tx_blocked);
            let timeout = busy.then_some(Duration::ZERO);
            let ev = platform.wait(&polls, timeout)?;
            self.woke();
            self.handle(ev, nic, platform)?;
        }
        Ok(())
    }
}
