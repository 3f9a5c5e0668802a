//! The RX copier: copies each frame from the shared RX DMA region into its client's private RX
//! region, so an untrusted client never sees other clients' traffic and never holds a DMA buffer.
//!
//! Drop-in for sDDF 0.7's `network_copy.elf` (`.net_copy_config`): at init it gives the client
//! all of its RX buffers; for each frame from virt_rx it takes a free client buffer, copies,
//! hands the copy to the client and returns the DMA buffer to virt_rx at once. When the client
//! has no free buffer the frame is dropped (the DMA buffer goes straight back): a slow client
//! costs only itself. The client is notified immediately, virt_rx deferred.
//!
//! Unlike sDDF, every descriptor is checked before use: a frame descriptor from virt_rx with an
//! unknown `oid`, or an offset/length leaving its region, is returned uncopied and counted; a
//! client buffer that is misaligned or out of range is discarded and counted, as in sDDF.
//! With a `.netvm_vswitch` section ([`Copier::attach_local`]) it also copies the frames other
//! clients of the system send its client, from their TX regions (the `local` module). A
//! client that lists one of its buffers twice can only make two of its own frames share that
//! buffer: the client region is private to the client and this copier, so no one else is harmed.
//!
//! # Restarted client
//!
//! A client that restarts asks for a reset through the [`netvm_api::reconnect`] words of its RX free
//! queue. The copier holds a client buffer only within one [`Copier::notified`] call, so between
//! calls every client RX buffer is in the client's two queues or was held by the dead instance:
//! at the start of the next call the copier empties both queues (the frames waiting in the
//! active queue were for the dead instance: counted in `reset_dropped`), hands the client every
//! RX buffer once, exactly as at its own start (in sDDF the copier, not the client, fills the
//! client's RX free queue), announces the reset and notifies the client. An epoch that moves
//! backwards is counted in `bad_reset_requests` and ignored.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod local;

use netvm_api::reconnect::{ControlWords, Notify, PeerEnd, ResetCounts};
use netvm_api::stats::{StatsError, StatsSlot, StatsWriter};
use sddf::config::{NetCopyConfig, QueuePairError};
use sddf::queue::{DrainSide, FillSide, QueueError, ResetError};
use sddf::shm::{AddressSpace, Region};
use sddf::{BuffDesc, Notifier, NET_BUFFER_SIZE};

/// Most source regions (`rx_data[]` entries).
pub const MAX_SOURCES: usize = 64;
/// Why the copier cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The config section is invalid.
    Config(sddf::config::ConfigError),
    /// A region named in the config is not mapped.
    Unmapped {
        /// Which region.
        what: &'static str,
        /// Its vaddr.
        vaddr: u64,
    },
    /// A connection's queues cannot be found.
    Queues {
        /// Which connection: `virt_rx` or `client`.
        what: &'static str,
        /// What is wrong with them.
        error: QueuePairError,
    },
    /// The client's RX region cannot hold its buffers.
    ClientRegion {
        /// Buffers configured.
        buffers: usize,
    },
    /// The local queues from virt_tx (`.netvm_vswitch`) cannot be found.
    LocalQueues(QueuePairError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Config(e) => write!(f, "copier: {e}"),
            Error::Unmapped { what, vaddr } => {
                write!(f, "copier: {what} at {vaddr:#x} is not mapped")
            }
            Error::Queues { what, error } => write!(f, "copier: {what} {error}"),
            Error::ClientRegion { buffers } => {
                write!(f, "copier: client RX region cannot hold {buffers} buffers")
            }
            Error::LocalQueues(e) => write!(f, "copier: local queues (netvm_vswitch): {e}"),
        }
    }
}

netvm_api::counters! {
/// Copier counters.
pub struct Counters {
    /// Frames copied to the client.
    pub frames: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Frames dropped because the client had no free buffer.
    pub dropped_no_buffer: u64,
    /// Frame descriptors from virt_rx that were invalid (returned uncopied).
    pub bad_frames: u64,
    /// Client buffers that were invalid or duplicates (discarded).
    pub bad_client_buffers: u64,
    /// Times virt_rx left impossible queue indices.
    pub virt_misbehaviour: u64,
    /// Times the client left impossible queue indices.
    pub client_misbehaviour: u64,
    /// Notifications sent to the client.
    pub client_notifications: u64,
    /// Notifications sent to virt_rx.
    pub virt_notifications: u64,
    /// Resets for a restarted client ([`netvm_api::reconnect`]).
    pub resets: u64,
    /// Frames waiting for the client when it restarted (discarded by a reset).
    pub reset_dropped: u64,
    /// Reconnect epochs from the client that moved backwards (ignored).
    pub bad_reset_requests: u64,
    /// Frames from other clients of the system (virt_tx's local queues) copied to the client.
    pub local_frames: u64,
    /// Bytes of those frames.
    pub local_bytes: u64,
    /// Local frames dropped because the client had no free buffer (or corrupted its queues).
    pub local_dropped: u64,
    /// Local frame descriptors naming no mapped source region, or leaving it (returned uncopied).
    pub bad_local_frames: u64,
    /// Times virt_tx left impossible local queue indices.
    pub local_misbehaviour: u64,
    /// Notifications sent to virt_tx for returned local frames.
    pub local_notifications: u64,
}
}

/// The copier's state.
pub struct Copier<'a> {
    virt: DrainSide<'a>,
    virt_channel: u8,
    sources: [Option<Region<'a>>; MAX_SOURCES],
    client: FillSide<'a>,
    client_channel: u8,
    client_data: Region<'a>,
    client_buffers: usize,
    reconnect: PeerEnd<'a>,
    /// Counters.
    pub counters: Counters,
    stats: StatsSlot<'a>,
    local: Option<local::LocalIn<'a>>,
}

impl<'a> Copier<'a> {
    /// Checks the config, finds every region and gives the client all of its RX buffers.
    pub fn new(config: &NetCopyConfig, mem: &impl AddressSpace<'a>) -> Result<Copier<'a>, Error> {
        sddf::config::Config::validate(config).map_err(Error::Config)?;
        let queues = |conn: &sddf::config::ConnectionResource, what| {
            conn.queues(mem)
                .map_err(|error| Error::Queues { what, error })
        };
        let virt = queues(&config.rx, "virt_rx")?;
        let client = queues(&config.client, "client")?;
        let mut sources = [None; MAX_SOURCES];
        for (i, r) in config.rx_data.iter().enumerate() {
            if r.vaddr != 0 {
                sources[i] = Some(mem.region(r.vaddr, r.size).ok_or(Error::Unmapped {
                    what: "RX data region",
                    vaddr: r.vaddr,
                })?);
            }
        }
        let client_buffers = usize::from(config.client.num_buffers);
        let client_data = mem
            .region(config.client_data.vaddr, config.client_data.size)
            .ok_or(Error::Unmapped {
                what: "client RX region",
                vaddr: config.client_data.vaddr,
            })?;
        if client_data.len() < client_buffers * NET_BUFFER_SIZE {
            return Err(Error::ClientRegion {
                buffers: client_buffers,
            });
        }
        let words = ControlWords::of(&client);
        // The client may be running already (host mode starts every PD at once), and a hostile
        // one may have scribbled on its free queue before the copier filled it: then it gets no
        // buffers until it reconnects. Its own loss, counted; the copier lives on for virt_rx
        // (tests/hostile-client; CI once saw the copier die here and publish no counters).
        let mut counters = Counters::default();
        let client =
            FillSide::new_self_provided(client.free, client.active, config.client.num_buffers)
                .unwrap_or_else(|_| {
                    counters.client_misbehaviour += 1;
                    FillSide::new(client.free, client.active)
                });
        Ok(Copier {
            virt: DrainSide::new(virt.free, virt.active),
            virt_channel: config.rx.id,
            sources,
            client,
            client_channel: config.client.id,
            client_data,
            client_buffers,
            reconnect: PeerEnd::new(words),
            counters,
            stats: StatsSlot::default(),
            local: None,
        })
    }

    /// A free client buffer, skipping (and counting) invalid ones; `None` when there is none.
    fn take_client_buffer(&mut self) -> Option<usize> {
        loop {
            let d = match self.client.free.dequeue() {
                Ok(d) => d,
                Err(QueueError::Empty) => return None,
                Err(_) => {
                    self.counters.client_misbehaviour += 1;
                    return None;
                }
            };
            let index = (d.io_or_offset / NET_BUFFER_SIZE as u64) as usize;
            if d.io_or_offset.is_multiple_of(NET_BUFFER_SIZE as u64) && index < self.client_buffers
            {
                return Some(index);
            }
            self.counters.bad_client_buffers += 1;
        }
    }

    /// Copies `len` bytes at `offset` of `source` into a free client buffer and hands it to the
    /// client: `Some(true)` done, `Some(false)` the client's queues are corrupt, `None` no free
    /// client buffer.
    fn copy_in(&mut self, source: &Region<'a>, offset: usize, len: u16) -> Option<bool> {
        let index = self.take_client_buffer()?;
        let dst = index * NET_BUFFER_SIZE;
        let copied = self
            .client_data
            .copy_from_region(dst, source, offset, usize::from(len))
            .is_ok();
        Some(
            copied
                && self
                    .client
                    .active
                    .enqueue(BuffDesc::new(dst as u64, len, 0))
                    .is_ok(),
        )
    }

    /// Serves a reset a restarted client asks for (module docs).
    fn serve_reconnect(&mut self, notifier: &mut impl Notifier) {
        let Some(epoch) = self
            .reconnect
            .reset_requested(&mut self.counters.bad_reset_requests)
        else {
            return;
        };
        // `client_buffers` came from the u16 `num_buffers`.
        match self.client.reset_self_provided(self.client_buffers as u16) {
            Ok(waiting) => self.counters.reset_dropped += u64::from(waiting),
            // Impossible active indices (the dead instance's last words); cannot refill only
            // if `num_buffers` exceeded the capacity, which `new` rules out.
            Err(ResetError::Indices(_) | ResetError::Refill(_)) => {
                self.counters.client_misbehaviour += 1
            }
        }
        let counts = ResetCounts {
            resets: &mut self.counters.resets,
            notifications: &mut self.counters.client_notifications,
        };
        self.reconnect
            .finish_reset(epoch, counts, notifier, self.client_channel, Notify::Now);
    }

    /// Handles a notification from anyone: serves a restarted client's reset, then moves frames
    /// from virt_rx to the client.
    pub fn notified(&mut self, notifier: &mut impl Notifier) {
        self.serve_reconnect(notifier);
        let mut to_client = false;
        let mut to_virt = false;
        loop {
            loop {
                let d = match self.virt.active.dequeue() {
                    Ok(d) => d,
                    Err(QueueError::Empty) => break,
                    Err(_) => {
                        self.counters.virt_misbehaviour += 1;
                        break;
                    }
                };
                to_virt = true;
                let len = usize::from(d.len);
                let source = self
                    .sources
                    .get(usize::from(d.oid()))
                    .copied()
                    .flatten()
                    .filter(|s| {
                        len > 0
                            && len <= NET_BUFFER_SIZE
                            && (d.io_or_offset as usize)
                                .checked_add(len)
                                .is_some_and(|e| e <= s.len())
                    });
                if let Some(source) = source {
                    match self.copy_in(&source, d.io_or_offset as usize, d.len) {
                        Some(true) => {
                            self.counters.frames += 1;
                            self.counters.bytes += len as u64;
                            to_client = true;
                        }
                        Some(false) => self.counters.client_misbehaviour += 1,
                        None => self.counters.dropped_no_buffer += 1,
                    }
                } else {
                    self.counters.bad_frames += 1;
                }
                if self.virt.free.enqueue(d).is_err() {
                    self.counters.virt_misbehaviour += 1;
                }
            }
            match self.virt.active.rearm() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    self.counters.virt_misbehaviour += 1;
                    break;
                }
            }
        }
        to_client |= self.local_notified(notifier);
        if to_client && self.client.active.take_signal_request() {
            self.counters.client_notifications += 1;
            notifier.notify(self.client_channel);
        }
        if to_virt && self.virt.free.take_signal_request() {
            self.counters.virt_notifications += 1;
            notifier.deferred_notify(self.virt_channel);
        }
        self.publish();
    }

    /// Publishes the counters into `stats` (group `copier`) from now on.
    pub fn attach_stats(&mut self, stats: StatsWriter<'a>) -> Result<(), StatsError> {
        self.stats.attach(stats, "copier", &self.counters)
    }

    fn publish(&mut self) {
        self.stats.publish(&self.counters);
    }
}
