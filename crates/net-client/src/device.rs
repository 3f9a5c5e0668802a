//! [`NetDevice`]: the RX and TX queue pairs of one client, with descriptor validation, batching
//! and the sDDF notification rule.

use netvm_api::reconnect::ControlWords;
use netvm_api::stats::{StatsError, StatsSlot, StatsWriter};
use sddf::config::NetClientConfig;
use sddf::queue::{Capacity, DrainSide, FillSide, Queue, QueueError};
use sddf::shm::Region;
use sddf::{BuffDesc, NET_BUFFER_SIZE};

use crate::filter::Malformed;
use crate::{Error, NetInfo, RegionName, Regions, Signal, MTU};

/// Bytes per buffer, as `u64` for descriptor arithmetic.
const BUF: u64 = NET_BUFFER_SIZE as u64;

netvm_api::counters! {
/// Per-device counters (Firecracker-style metrics): every drop has a reason.
pub struct Counters {
    /// Frames received and handed on.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// RX descriptors from the copier with a bad offset or length (dropped).
    pub rx_bad_desc: u64,
    /// RX queue operations refused because the peer corrupted the indices.
    pub rx_queue_errors: u64,
    /// Frames shorter than an Ethernet header (smoltcp device only).
    pub rx_runts: u64,
    /// Frames with a truncated or inconsistent IPv4, UDP, TCP or ARP header (smoltcp device only).
    pub rx_bad_headers: u64,
    /// Frames with a wrong IPv4, UDP or TCP checksum (smoltcp device only).
    pub rx_bad_checksums: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// TX descriptors returned by virt_tx with a bad offset (dropped).
    pub tx_bad_desc: u64,
    /// TX queue operations refused because the peer corrupted the indices (or a full queue).
    pub tx_queue_errors: u64,
    /// Frames not sent because no TX buffer was free.
    pub tx_no_buffer: u64,
    /// Notifications sent to the RX peer.
    pub rx_notifies: u64,
    /// Notifications sent to virt_tx.
    pub tx_notifies: u64,
    /// TX buffers the device holds outside every queue (0 or 1, a gauge; see
    /// [`NetDevice::holds_tx_buffer`]).
    pub tx_held: u64,
    /// Queue pairs still waiting for their peer to finish a reconnect reset (0 to 2, a gauge;
    /// see [`NetDevice::reconnecting`]).
    pub reconnect_waiting: u64,
}
}

/// A queue pair of a restarted instance, waiting for its peer to rebuild it
/// ([`netvm_api::reconnect`]): nothing of it may be touched until the peer has announced the reset.
#[derive(Clone, Copy)]
struct Waiting<'a> {
    free: Queue<'a>,
    active: Queue<'a>,
    words: ControlWords<'a>,
    epoch: u32,
    /// Whether the peer has been notified of the request.
    asked: bool,
}

impl<'a> Waiting<'a> {
    /// Whether the peer has rebuilt the pair (then it may be used).
    fn done(&self) -> bool {
        self.words.reset_done(self.epoch)
    }
}

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// No TX buffer is free; virt_tx has been asked to signal when one comes back (try again then).
    NoBuffer,
    /// The frame length is 0 or larger than a 2048-byte sDDF buffer.
    Length(usize),
    /// The TX active queue refused the frame (full, or its indices are corrupt); the buffer is kept
    /// for the next frame.
    Queue(QueueError),
}

impl core::fmt::Display for TxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TxError::NoBuffer => f.write_str("tx: no free TX buffer"),
            TxError::Length(len) => write!(
                f,
                "tx: frame of {len} bytes does not fit a {NET_BUFFER_SIZE}-byte buffer"
            ),
            TxError::Queue(e) => write!(f, "tx_active: {e}"),
        }
    }
}

/// A received frame, lent for the duration of [`NetDevice::receive`]'s callback.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'r> {
    region: Region<'r>,
}

impl<'r> RxFrame<'r> {
    /// The frame's bytes in shared memory (zero-copy; bounds-checked volatile access).
    pub fn region(&self) -> Region<'r> {
        self.region
    }

    /// Length in bytes (1..=2048).
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always `false`: empty frames are rejected as bad descriptors.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }

    /// Copies the frame into `dst` (memcpy speed) and returns its length, or `None` if `dst` is
    /// too short.
    pub fn copy_to(&self, dst: &mut [u8]) -> Option<usize> {
        let dst = dst.get_mut(..self.len())?;
        self.region.copy_to_slice(0, dst).ok()?;
        Some(dst.len())
    }
}

/// The RX half: we drain `rx_active` and return buffers through `rx_free`.
pub(crate) struct Rx<'a> {
    side: DrainSide<'a>,
    /// `Some` until the copier has rebuilt the queues of this restarted instance.
    waiting: Option<Waiting<'a>>,
    data: Region<'a>,
    /// Buffers in the RX data region (the queue capacity).
    buffers: u64,
    /// Buffers returned since the last notify.
    returned: bool,
    /// Private copy of the frame being handed to the stack.
    pub(crate) scratch: [u8; NET_BUFFER_SIZE],
    pub(crate) c: Counters,
}

impl Rx<'_> {
    /// Whether the queues may be used: `false` while a reconnect is pending.
    fn live(&mut self) -> bool {
        match self.waiting {
            None => true,
            Some(w) if w.done() => {
                // After the Acquire in `done`: the copier's reset indices are visible.
                self.side = DrainSide::new(w.free, w.active);
                self.waiting = None;
                true
            }
            Some(_) => false,
        }
    }

    /// The next descriptor that names a real buffer and a sane length, as `(offset, len)`.
    fn next(&mut self) -> Option<(u64, usize)> {
        if !self.live() {
            return None;
        }
        loop {
            let d = match self.side.active.dequeue() {
                Ok(d) => d,
                Err(QueueError::Empty) => return None,
                Err(_) => {
                    self.c.rx_queue_errors += 1;
                    return None;
                }
            };
            let offset = d.io_or_offset;
            if !offset.is_multiple_of(BUF) || offset / BUF >= self.buffers {
                // Not one of our buffers: nothing to read and nothing to give back.
                self.c.rx_bad_desc += 1;
                continue;
            }
            let len = usize::from(d.len);
            if len == 0 || len > NET_BUFFER_SIZE {
                // A real buffer with a lying length: give it back unread so it is not lost.
                self.c.rx_bad_desc += 1;
                self.give_back(offset);
                continue;
            }
            return Some((offset, len));
        }
    }

    fn give_back(&mut self, offset: u64) {
        match self.side.free.enqueue(BuffDesc::new(offset, 0, 0)) {
            Ok(()) => self.returned = true,
            Err(_) => self.c.rx_queue_errors += 1,
        }
    }

    /// Copies the next frame into `scratch`, returns the buffer, and gives the frame's length.
    pub(crate) fn take_into_scratch(&mut self) -> Option<usize> {
        let (offset, len) = self.next()?;
        // In bounds: `offset + len <= buffers * 2048 <= data.len()` (checked in `connect`).
        let copied = self
            .data
            .copy_to_slice(offset as usize, &mut self.scratch[..len]);
        self.give_back(offset);
        if copied.is_err() {
            self.c.rx_bad_desc += 1;
            return None;
        }
        self.c.rx_frames += 1;
        self.c.rx_bytes += len as u64;
        Some(len)
    }

    pub(crate) fn count(&mut self, m: Malformed) {
        match m {
            Malformed::Runt => self.c.rx_runts += 1,
            Malformed::BadHeader => self.c.rx_bad_headers += 1,
            Malformed::BadChecksum => self.c.rx_bad_checksums += 1,
        }
    }
}

/// The TX half: we take buffers from `tx_free` and queue frames on `tx_active`.
pub(crate) struct Tx<'a> {
    side: FillSide<'a>,
    /// `Some` until virt_tx has rebuilt the queues of this restarted instance.
    waiting: Option<Waiting<'a>>,
    data: Region<'a>,
    /// Buffers in the TX data region (the queue capacity).
    buffers: u64,
    /// A validated free buffer taken from `tx_free` and not yet used.
    held: Option<u64>,
    /// Frames queued since the last notify.
    queued: bool,
    /// Where a frame is built before it is copied into its buffer.
    pub(crate) scratch: [u8; NET_BUFFER_SIZE],
    pub(crate) c: Counters,
}

impl Tx<'_> {
    /// Whether the queues may be used: `false` while a reconnect is pending.
    fn live(&mut self) -> bool {
        match self.waiting {
            None => true,
            Some(w) if w.done() => {
                // After the Acquire in `done`: virt_tx's reset indices are visible.
                self.side = FillSide::new(w.free, w.active);
                self.waiting = None;
                true
            }
            Some(_) => false,
        }
    }

    /// Makes sure a valid free buffer is held. When `tx_free` is empty, asks virt_tx to signal
    /// when it returns one (request + double-check), so the PD is woken to send what is pending.
    /// While a reconnect is pending there is none (virt_tx notifies when the reset is done).
    pub(crate) fn reserve(&mut self) -> bool {
        if self.held.is_some() {
            return true;
        }
        if !self.live() {
            return false;
        }
        loop {
            match self.side.free.dequeue() {
                Ok(d) => {
                    let offset = d.io_or_offset;
                    if offset.is_multiple_of(BUF) && offset / BUF < self.buffers {
                        self.held = Some(offset);
                        return true;
                    }
                    self.c.tx_bad_desc += 1;
                }
                Err(QueueError::Empty) => match self.side.free.rearm() {
                    Ok(true) => continue,
                    Ok(false) => return false,
                    Err(_) => {
                        self.c.tx_queue_errors += 1;
                        return false;
                    }
                },
                Err(_) => {
                    self.c.tx_queue_errors += 1;
                    return false;
                }
            }
        }
    }

    /// Sends `scratch[..len]` in the held buffer (`reserve` must have succeeded; `len` must be in
    /// 1..=2048).
    pub(crate) fn send_scratch(&mut self, len: usize) -> Result<(), TxError> {
        let offset = self.held.ok_or(TxError::NoBuffer)?;
        self.data
            .copy_from_slice(offset as usize, &self.scratch[..len])
            .map_err(|_| TxError::Length(len))?;
        // `len <= 2048` fits u16.
        match self
            .side
            .active
            .enqueue(BuffDesc::new(offset, len as u16, 0))
        {
            Ok(()) => {
                self.held = None;
                self.queued = true;
                self.c.tx_frames += 1;
                self.c.tx_bytes += len as u64;
                Ok(())
            }
            Err(e) => {
                self.c.tx_queue_errors += 1;
                Err(TxError::Queue(e))
            }
        }
    }
}

/// A connected client network device.
pub struct NetDevice<'a> {
    pub(crate) rx: Rx<'a>,
    pub(crate) tx: Tx<'a>,
    info: NetInfo,
    /// Frames the smoltcp device may still take in this batch (see [`NetDevice::start_rx_batch`]).
    pub(crate) rx_left: usize,
    stats: StatsSlot<'a>,
}

fn capacity(queue: &'static str, value: u16) -> Result<Capacity, Error> {
    Capacity::new(u32::from(value)).map_err(|_| Error::BadCapacity { queue, value })
}

fn queue<'a>(region: Region<'a>, name: RegionName, cap: Capacity) -> Result<Queue<'a>, Error> {
    Queue::new(region, cap).map_err(|e| Error::RegionTooSmall {
        region: name,
        size: e.region_len,
        needed: sddf::queue::queue_bytes(cap.entries()),
    })
}

fn data_fits(region: Region<'_>, name: RegionName, cap: Capacity) -> Result<(), Error> {
    let needed = cap.entries() * NET_BUFFER_SIZE;
    if region.len() < needed {
        return Err(Error::RegionTooSmall {
            region: name,
            size: region.len(),
            needed,
        });
    }
    Ok(())
}

impl<'a> NetDevice<'a> {
    /// Connects to the queues described by `cfg` in `regions`: checks every region against the
    /// capacities, announces this instance in the [`netvm_api::reconnect`] words, and
    ///
    /// * as the first instance, hands all `cfg.tx.num_buffers` TX buffers to ourselves through
    ///   `tx_free` (so the TX queues must be fresh, as at PD start);
    /// * as a restarted one, touches no queue until each peer has rebuilt its pair: the requests
    ///   go out with the next [`NetDevice::notify`], and until the answers arrive nothing is
    ///   received or sent ([`NetDevice::reconnecting`]).
    pub fn connect(cfg: &NetClientConfig, regions: Regions<'a>) -> Result<(Self, NetInfo), Error> {
        let rx_cap = capacity("rx", cfg.rx.num_buffers)?;
        let tx_cap = capacity("tx", cfg.tx.num_buffers)?;
        let rx_free = queue(regions.rx_free, RegionName::RxFree, rx_cap)?;
        let rx_active = queue(regions.rx_active, RegionName::RxActive, rx_cap)?;
        let tx_free = queue(regions.tx_free, RegionName::TxFree, tx_cap)?;
        let tx_active = queue(regions.tx_active, RegionName::TxActive, tx_cap)?;
        data_fits(regions.rx_data, RegionName::RxData, rx_cap)?;
        data_fits(regions.tx_data, RegionName::TxData, tx_cap)?;
        // Announce this instance before touching any queue (netvm_api::reconnect): a first instance
        // initialises as sDDF does, a later one waits for each peer to rebuild its pair.
        let waiting = |free, active, region, cap| {
            let words = ControlWords::new(region, cap)?;
            let epoch = words.client_announce()?;
            Some(Waiting {
                free,
                active,
                words,
                epoch,
                asked: false,
            })
        };
        let rx_waiting = waiting(rx_free, rx_active, regions.rx_free, rx_cap);
        let tx_waiting = waiting(tx_free, tx_active, regions.tx_free, tx_cap);
        let tx_side = if tx_waiting.is_some() {
            FillSide::new(tx_free, tx_active)
        } else {
            FillSide::new_self_provided(tx_free, tx_active, tx_cap.get()).map_err(Error::TxInit)?
        };
        let info = NetInfo {
            mac: cfg.mac_addr,
            mtu: MTU,
        };
        let dev = NetDevice {
            rx: Rx {
                side: DrainSide::new(rx_free, rx_active),
                waiting: rx_waiting,
                data: regions.rx_data,
                buffers: u64::from(rx_cap.get()),
                returned: false,
                scratch: [0; NET_BUFFER_SIZE],
                c: Counters::default(),
            },
            tx: Tx {
                side: tx_side,
                waiting: tx_waiting,
                data: regions.tx_data,
                buffers: u64::from(tx_cap.get()),
                held: None,
                queued: false,
                scratch: [0; NET_BUFFER_SIZE],
                c: Counters::default(),
            },
            info,
            rx_left: usize::MAX,
            stats: StatsSlot::default(),
        };
        Ok((dev, info))
    }

    /// MAC address and MTU.
    pub fn info(&self) -> NetInfo {
        self.info
    }

    /// Takes the next valid frame, lends it to `f` as a shared-memory view, then returns the buffer
    /// to the copier (the return is published by the next [`NetDevice::notify`]). `None` when no
    /// frame is waiting. Bad descriptors met on the way are counted and skipped.
    pub fn receive<R>(&mut self, f: impl FnOnce(RxFrame<'_>) -> R) -> Option<R> {
        let rx = &mut self.rx;
        loop {
            let (offset, len) = rx.next()?;
            let Ok(region) = rx.data.slice(offset as usize, len) else {
                rx.c.rx_bad_desc += 1;
                rx.give_back(offset);
                continue;
            };
            let r = f(RxFrame { region });
            rx.give_back(offset);
            rx.c.rx_frames += 1;
            rx.c.rx_bytes += len as u64;
            return Some(r);
        }
    }

    /// Copies the next valid frame into `buf` and returns its length; the buffer goes straight
    /// back to the copier. `None` when no frame is waiting.
    pub fn receive_into(&mut self, buf: &mut [u8; NET_BUFFER_SIZE]) -> Option<usize> {
        let len = self.rx.take_into_scratch()?;
        buf[..len].copy_from_slice(&self.rx.scratch[..len]);
        Some(len)
    }

    /// Whether frames are waiting in `rx_active`.
    pub fn rx_pending(&mut self) -> bool {
        if !self.rx.live() {
            return false;
        }
        match self.rx.side.active.is_empty() {
            Ok(empty) => !empty,
            Err(_) => {
                self.rx.c.rx_queue_errors += 1;
                false
            }
        }
    }

    /// Ends an RX drain as sDDF requires: asks the copier for a signal, then looks again. Returns
    /// `true` if frames arrived meanwhile (the request is withdrawn: drain again), `false` when the
    /// PD may wait for the next notification.
    pub fn rearm_rx(&mut self) -> bool {
        if !self.rx.live() {
            return false;
        }
        match self.rx.side.active.rearm() {
            Ok(more) => more,
            Err(_) => {
                self.rx.c.rx_queue_errors += 1;
                false
            }
        }
    }

    /// Whether a frame could be sent now (holds a free TX buffer if so). When not, virt_tx has
    /// been asked to signal when a buffer comes back.
    pub fn can_transmit(&mut self) -> bool {
        self.tx.reserve()
    }

    /// Sends a frame of `len` bytes that `f` writes into a private buffer, which is then copied
    /// into a TX buffer and queued (published to virt_tx by the next [`NetDevice::notify`]).
    /// `f` is not called when the frame cannot be sent.
    pub fn write_into<R>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, TxError> {
        if len == 0 || len > NET_BUFFER_SIZE {
            return Err(TxError::Length(len));
        }
        if !self.tx.reserve() {
            self.tx.c.tx_no_buffer += 1;
            return Err(TxError::NoBuffer);
        }
        let r = f(&mut self.tx.scratch[..len]);
        self.tx.send_scratch(len)?;
        Ok(r)
    }

    /// The notification phase after a batch: notifies the copier if buffers were returned and it
    /// asked for a signal, and virt_tx if frames were queued and it asked; each at most once.
    pub fn notify(&mut self, signal: &mut impl Signal) {
        // A restarted instance's reset requests, once per pair; a pair whose peer has answered
        // goes live here even when nothing was received or sent.
        if let Some(w) = self.rx.waiting.as_mut().filter(|w| !w.asked) {
            w.asked = true;
            self.rx.c.rx_notifies += 1;
            signal.notify_rx();
        } else if self.rx.waiting.is_some() {
            self.rx.live();
        }
        if let Some(w) = self.tx.waiting.as_mut().filter(|w| !w.asked) {
            w.asked = true;
            self.tx.c.tx_notifies += 1;
            signal.notify_tx();
        } else if self.tx.waiting.is_some() {
            self.tx.live();
        }
        if core::mem::take(&mut self.rx.returned) && self.rx.side.free.take_signal_request() {
            self.rx.c.rx_notifies += 1;
            signal.notify_rx();
        }
        if core::mem::take(&mut self.tx.queued) && self.tx.side.active.take_signal_request() {
            self.tx.c.tx_notifies += 1;
            signal.notify_tx();
        }
        // The counters are gathered from both halves: only when someone reads them.
        if self.stats.is_attached() {
            let counters = self.counters();
            self.stats.publish(&counters);
        }
    }

    /// Publishes the counters into `stats` (group `net`) at every [`NetDevice::notify`].
    pub fn attach_stats(&mut self, stats: StatsWriter<'a>) -> Result<(), StatsError> {
        let counters = self.counters();
        self.stats.attach(stats, "net", &counters)
    }

    /// Limits how many frames the smoltcp device hands to the stack until the next call, so a PD
    /// can interleave "take a batch, let the stack answer, notify" (the default is no limit).
    pub fn start_rx_batch(&mut self, budget: usize) {
        self.rx_left = budget;
    }

    /// Whether the smoltcp device stopped taking frames because the batch budget ran out (so
    /// frames may still be waiting).
    pub fn rx_batch_exhausted(&self) -> bool {
        self.rx_left == 0
    }

    /// Whether the device holds a free TX buffer taken from `tx_free` for the next frame (at most
    /// one; it is used before any other).
    pub fn holds_tx_buffer(&self) -> bool {
        self.tx.held.is_some()
    }

    /// Whether this restarted instance still waits for a peer to rebuild a queue pair
    /// ([`NetDevice::connect`]); checks the peers' answers, so it turns `false` as soon as both
    /// have answered. Always `false` for a first instance.
    pub fn reconnecting(&mut self) -> bool {
        let (rx, tx) = (self.rx.live(), self.tx.live());
        !(rx && tx)
    }

    /// All counters.
    pub fn counters(&self) -> Counters {
        let (r, t) = (&self.rx.c, &self.tx.c);
        Counters {
            rx_frames: r.rx_frames,
            rx_bytes: r.rx_bytes,
            rx_bad_desc: r.rx_bad_desc,
            rx_queue_errors: r.rx_queue_errors,
            rx_runts: r.rx_runts,
            rx_bad_headers: r.rx_bad_headers,
            rx_bad_checksums: r.rx_bad_checksums,
            rx_notifies: r.rx_notifies,
            tx_frames: t.tx_frames,
            tx_bytes: t.tx_bytes,
            tx_bad_desc: t.tx_bad_desc,
            tx_queue_errors: t.tx_queue_errors,
            tx_no_buffer: t.tx_no_buffer,
            tx_notifies: t.tx_notifies,
            tx_held: u64::from(self.tx.held.is_some()),
            reconnect_waiting: u64::from(self.rx.waiting.is_some())
                + u64::from(self.tx.waiting.is_some()),
        }
    }
}
