//! The RX virtualiser: shares the driver's received frames among the clients by destination MAC.
//!
//! Drop-in for sDDF 0.7's `network_virt_rx.elf`: it reads the same `.net_virt_rx_config` and
//! behaves the same way towards a well-behaved driver and well-behaved copiers:
//!
//! * init hands every RX DMA buffer to the driver's free queue;
//! * a received frame is cache-cleaned-and-invalidated, then matched against each client's MAC
//!   addresses in client order; broadcast goes to every client; an unmatched frame goes straight
//!   back to the driver;
//! * a buffer given to several clients returns to the driver only when all of them returned it;
//! * clients are notified immediately, the driver with a deferred notification.
//!
//! Where sDDF only `assert`s (compiled out in release), this checks at run time. Every buffer has
//! an owner record: with the driver, or a bitmask of the clients holding it. A descriptor from the
//! driver or a client that is misaligned, out of range, or names a buffer its sender does not hold
//! (a duplicate) is dropped and counted, never dereferenced, and cannot disturb any other client.
//!
//! **Restarted driver** ([`netvm_api::reconnect`], with the driver in the client's role): a driver
//! that restarts announces a new epoch in the reconnect words of `rx_free` and waits. At its next
//! notification virt_rx first takes what the dead driver completed into `rx_active` as usual
//! (frames are delivered), then empties both driver queues (anything left is counted in
//! `reset_dropped`) and puts into `rx_free`, once each, every buffer its owner table says is with
//! the driver. The owner table is the only source of truth: nothing the driver wrote to its
//! queues or to `done` is read back, and only an epoch that moved forward counts (a backwards one
//! is counted in `bad_reset_requests`), so a hostile driver cannot make virt_rx lose or duplicate
//! a buffer through the words; resetting at will only costs it its own frames.
//!
//! Options (`.netvm_net_options`, see [`netvm_api::options`]; all off in an all-zero section, which
//! then behaves as sDDF 0.7): driver-VM offset mode (the driver gets offsets, not IO addresses),
//! and multicast delivered to every client (sDDF drops it, which breaks IPv6 neighbour
//! discovery).
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

use netvm_api::options::NetOptions;
use netvm_api::reconnect::{ControlWords, Notify, PeerEnd, ResetCounts};
use netvm_api::stats::{StatsError, StatsSlot, StatsWriter};
use netvm_api::tap::{Tap, TapPoint};
use sddf::config::{NetVirtRxConfig, QueuePairError};
use sddf::queue::{DrainSide, FillSide, QueueError};
use sddf::shm::{AddressSpace, Region};
use sddf::{BuffDesc, Notifier, NET_BUFFER_SIZE};

/// Most RX DMA buffers this virtualiser tracks (the owner table is fixed-size: no heap in PDs).
pub const MAX_BUFFERS: usize = 4096;
/// Most clients (one bit each in the owner masks).
pub const MAX_CLIENTS: usize = 64;

/// Why the virtualiser cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The config section is invalid.
    Config(sddf::config::ConfigError),
    /// The options section is invalid.
    Options(netvm_api::options::OptionsError),
    /// The RX DMA region named in the config is not mapped.
    Unmapped {
        /// Its vaddr.
        vaddr: u64,
    },
    /// A connection's queues cannot be found.
    Queues {
        /// Client index, or `None` for the driver's connection.
        client: Option<usize>,
        /// What is wrong with them.
        error: QueuePairError,
    },
    /// The driver's free queue refused the RX buffers at start-up (its indices are corrupt).
    ProvideBuffers(QueueError),
    /// More RX buffers than [`MAX_BUFFERS`], or a data region too small for them.
    Buffers {
        /// Buffers configured.
        count: usize,
    },
    /// The RX DMA region's IO addresses run past 2^64, so the driver could not be given them.
    IoAddress {
        /// The region's IO address.
        io_addr: u64,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Config(e) => write!(f, "virt_rx: {e}"),
            Error::Options(e) => write!(f, "virt_rx: {e}"),
            Error::Unmapped { vaddr } => {
                write!(f, "virt_rx: RX DMA region at {vaddr:#x} is not mapped")
            }
            Error::Queues { client: Some(c), error } => write!(f, "virt_rx: client {c} {error}"),
            Error::Queues { client: None, error } => write!(f, "virt_rx: driver {error}"),
            Error::ProvideBuffers(e) => {
                write!(f, "virt_rx: driver free queue refused the RX buffers: {e}")
            }
            Error::Buffers { count } => write!(
                f,
                "virt_rx: {count} RX buffers: more than {MAX_BUFFERS}, or the DMA region is too small"
            ),
            Error::IoAddress { io_addr } => write!(
                f,
                "virt_rx: RX DMA region at IO address {io_addr:#x} ends beyond 2^64"
            ),
        }
    }
}

netvm_api::counters! {
/// Counters for the driver side.
pub struct DriverCounters {
    /// Frames received from the driver.
    pub frames: u64,
    /// Bytes received from the driver.
    pub bytes: u64,
    /// Frames that matched no client and went straight back.
    pub unmatched: u64,
    /// Broadcast frames.
    pub broadcast: u64,
    /// Multicast frames (delivered or dropped per option).
    pub multicast: u64,
    /// Descriptors from the driver that were invalid (offset, length, or not the driver's).
    pub bad_descriptors: u64,
    /// Times the driver left impossible queue indices.
    pub peer_misbehaviour: u64,
    /// Buffers returned to the driver.
    pub returned: u64,
    /// Notifications sent to the driver.
    pub notifications: u64,
    /// Largest batch taken from the driver in one pass.
    pub max_batch: u64,
    /// Buffers held by at least one client right now (a gauge: 0 when the system is idle).
    pub buffers_at_clients: u64,
    /// Resets for a restarted driver ([`netvm_api::reconnect`]).
    pub resets: u64,
    /// Descriptors left in `rx_active` by a dead driver, dropped by a reset.
    pub reset_dropped: u64,
    /// Reconnect epochs from the driver that moved backwards (ignored).
    pub bad_reset_requests: u64,
}
}

netvm_api::counters! {
/// Counters for one client.
pub struct ClientCounters {
    /// Frames given to the client.
    pub frames: u64,
    /// Bytes given to the client.
    pub bytes: u64,
    /// Frames dropped because the client's queue was full.
    pub dropped_full: u64,
    /// Buffers the client returned.
    pub returned: u64,
    /// Returned descriptors that were invalid or not held by the client (duplicates).
    pub bad_returns: u64,
    /// Times the client left impossible queue indices.
    pub peer_misbehaviour: u64,
    /// Notifications sent to the client.
    pub notifications: u64,
    /// Notifications not needed because the client had not asked.
    pub notifications_suppressed: u64,
}
}

/// Who holds an RX buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The driver (free queue, hardware, or active queue): owner mask 0. This is the at-driver
    /// record a driver reset rebuilds `rx_free` from.
    Driver,
    /// These clients (bit `i` = client `i`).
    Clients(u64),
}

struct Client<'a> {
    queues: FillSide<'a>,
    channel: u8,
    macs: [[u8; 6]; MAX_CLIENTS],
    num_macs: usize,
    counters: ClientCounters,
}

/// The RX virtualiser's state.
pub struct VirtRx<'a> {
    driver: DrainSide<'a>,
    driver_channel: u8,
    /// The driver's reconnect words, in `rx_free`'s spare bytes.
    driver_reconnect: PeerEnd<'a>,
    data: Region<'a>,
    /// Added to an offset to give what the driver sees (0 in offset mode).
    driver_base: u64,
    capacity: usize,
    clients: [Option<Client<'a>>; MAX_CLIENTS],
    num_clients: usize,
    all_clients: u64,
    deliver_multicast: bool,
    /// Bit `c` set: client `c` holds the buffer; all zero: the driver holds it.
    owners: [u64; MAX_BUFFERS],
    notify_driver: bool,
    /// Driver-side counters.
    pub driver_counters: DriverCounters,
    stats: StatsSlot<'a>,
    tap: Option<&'a mut dyn Tap>,
}

const BROADCAST: [u8; 6] = [0xff; 6];

impl<'a> VirtRx<'a> {
    /// Checks the config and options, finds every region, and hands all RX buffers to the driver
    /// (notifying it, deferred, if it asked).
    pub fn new(
        config: &NetVirtRxConfig,
        options: &NetOptions,
        mem: &impl AddressSpace<'a>,
        notifier: &mut impl Notifier,
    ) -> Result<VirtRx<'a>, Error> {
        sddf::config::Config::validate(config).map_err(Error::Config)?;
        let driver = config.driver.queues(mem).map_err(|error| Error::Queues {
            client: None,
            error,
        })?;
        let capacity = usize::from(config.driver.num_buffers);
        let data = mem
            .region(config.data.region.vaddr, config.data.region.size)
            .ok_or(Error::Unmapped {
                vaddr: config.data.region.vaddr,
            })?;
        if capacity > MAX_BUFFERS || data.len() < capacity * NET_BUFFER_SIZE {
            return Err(Error::Buffers { count: capacity });
        }
        let driver_base = if options.driver_offsets() {
            0
        } else {
            config.data.io_addr
        };
        // Every address handed to the driver is `driver_base + i * 2048`: it must not wrap.
        if driver_base
            .checked_add((capacity * NET_BUFFER_SIZE) as u64)
            .is_none()
        {
            return Err(Error::IoAddress {
                io_addr: driver_base,
            });
        }
        let mut clients: [Option<Client<'a>>; MAX_CLIENTS] = [const { None }; MAX_CLIENTS];
        for (i, c) in config.clients().iter().enumerate() {
            let queues = c.conn.queues(mem).map_err(|error| Error::Queues {
                client: Some(i),
                error,
            })?;
            let mut macs = [[0u8; 6]; MAX_CLIENTS];
            macs[..c.macs().len()].copy_from_slice(c.macs());
            clients[i] = Some(Client {
                queues: FillSide::new(queues.free, queues.active),
                channel: c.conn.id,
                macs,
                num_macs: c.macs().len(),
                counters: ClientCounters::default(),
            });
        }
        let num_clients = config.clients().len();
        let mut v = VirtRx {
            driver: DrainSide::new(driver.free, driver.active),
            driver_channel: config.driver.id,
            driver_reconnect: PeerEnd::new(ControlWords::of(&driver)),
            data,
            driver_base,
            capacity,
            clients,
            num_clients,
            all_clients: if num_clients == 64 {
                u64::MAX
            } else {
                (1u64 << num_clients) - 1
            },
            deliver_multicast: options.deliver_multicast(),
            owners: [0; MAX_BUFFERS],
            notify_driver: false,
            driver_counters: DriverCounters::default(),
            stats: StatsSlot::default(),
            tap: None,
        };
        v.driver
            .provide_all_buffers(driver_base, config.driver.num_buffers)
            .map_err(Error::ProvideBuffers)?;
        v.notify_driver = true;
        v.signal_driver(notifier);
        Ok(v)
    }

    /// Handles a notification from anyone: frames from the driver, a reset for a restarted
    /// driver, then buffers from clients.
    pub fn notified(&mut self, notifier: &mut impl Notifier) {
        self.rx_return(notifier);
        self.serve_driver_reset(notifier);
        self.rx_provide(notifier);
        self.publish();
        if let Some(tap) = self.tap.as_mut() {
            tap.flush();
        }
    }

    /// Shows every frame from the driver ([`TapPoint::DriverRx`]) and every frame delivered to
    /// a client ([`TapPoint::ClientRx`]) to `tap` from now on.
    pub fn attach_tap(&mut self, tap: &'a mut dyn Tap) {
        self.tap = Some(tap);
    }

    /// Publishes the counters into `stats` (driver, then `client<i>` per client) from now on.
    pub fn attach_stats(&mut self, stats: StatsWriter<'a>) -> Result<(), StatsError> {
        self.stats
            .attach_driver_and_clients::<DriverCounters, ClientCounters>(stats, self.num_clients)?;
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        let clients = self.clients[..self.num_clients]
            .iter()
            .flatten()
            .map(|c| &c.counters);
        self.stats
            .publish_driver_and_clients(&self.driver_counters, clients);
    }

    /// Counters of client `i`.
    pub fn client_counters(&self, i: usize) -> Option<&ClientCounters> {
        self.clients.get(i)?.as_ref().map(|c| &c.counters)
    }

    /// Who holds buffer `index` (for conservation checks).
    pub fn holder(&self, index: usize) -> Option<Holder> {
        if index >= self.capacity {
            return None;
        }
        Some(match self.owners[index] {
            0 => Holder::Driver,
            mask => Holder::Clients(mask),
        })
    }

    /// Number of RX buffers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The buffer index of a driver descriptor, if it is valid and the driver holds that buffer.
    fn driver_buffer(&self, d: &BuffDesc) -> Option<usize> {
        let offset = d.io_or_offset.checked_sub(self.driver_base)?;
        let index = usize::try_from(offset / NET_BUFFER_SIZE as u64).ok()?;
        let ok = offset.is_multiple_of(NET_BUFFER_SIZE as u64)
            && index < self.capacity
            && (1..=NET_BUFFER_SIZE as u16).contains(&d.len)
            && self.owners[index] == 0;
        ok.then_some(index)
    }

    /// Which clients a frame goes to, from its destination MAC.
    fn destinations(&mut self, dest: [u8; 6]) -> u64 {
        for (i, c) in self.clients[..self.num_clients].iter().enumerate() {
            if let Some(c) = c {
                if c.macs[..c.num_macs].contains(&dest) {
                    return 1 << i;
                }
            }
        }
        if dest == BROADCAST {
            self.driver_counters.broadcast += 1;
            return self.all_clients;
        }
        if dest[0] & 1 != 0 {
            self.driver_counters.multicast += 1;
            if self.deliver_multicast {
                return self.all_clients;
            }
        }
        0
    }

    fn return_to_driver(&mut self, index: usize) {
        let d = BuffDesc::new(self.driver_base + (index * NET_BUFFER_SIZE) as u64, 0, 0);
        // The free queue holds every buffer, so it cannot be full unless the driver corrupted it.
        match self.driver.free.enqueue(d) {
            Ok(()) => {
                self.driver_counters.returned += 1;
                self.notify_driver = true;
            }
            Err(_) => self.driver_counters.peer_misbehaviour += 1,
        }
    }

    /// Serves a reset a restarted driver asks for (module docs): its queues are emptied and
    /// `rx_free` gets every buffer whose owner mask is 0, once.
    fn serve_driver_reset(&mut self, notifier: &mut impl Notifier) {
        let Some(epoch) = self
            .driver_reconnect
            .reset_requested(&mut self.driver_counters.bad_reset_requests)
        else {
            return;
        };
        match self.driver.reset() {
            Ok(queued) => self.driver_counters.reset_dropped += u64::from(queued),
            Err(_) => self.driver_counters.peer_misbehaviour += 1,
        }
        for index in 0..self.capacity {
            if self.owners[index] != 0 {
                continue;
            }
            let d = BuffDesc::new(self.driver_base + (index * NET_BUFFER_SIZE) as u64, 0, 0);
            // Cannot fail: the queue was just emptied and holds every buffer.
            if self.driver.free.enqueue(d).is_err() {
                self.driver_counters.peer_misbehaviour += 1;
            }
        }
        let counts = ResetCounts {
            resets: &mut self.driver_counters.resets,
            notifications: &mut self.driver_counters.notifications,
        };
        let channel = self.driver_channel;
        self.driver_reconnect
            .finish_reset(epoch, counts, notifier, channel, Notify::Deferred);
    }

    fn rx_return(&mut self, notifier: &mut impl Notifier) {
        let mut notify = 0u64;
        loop {
            let mut batch = 0u64;
            loop {
                let d = match self.driver.active.dequeue() {
                    Ok(d) => d,
                    Err(QueueError::Empty) => break,
                    Err(_) => {
                        self.driver_counters.peer_misbehaviour += 1;
                        break;
                    }
                };
                batch += 1;
                let Some(index) = self.driver_buffer(&d) else {
                    self.driver_counters.bad_descriptors += 1;
                    continue;
                };
                let offset = index * NET_BUFFER_SIZE;
                let len = usize::from(d.len);
                self.driver_counters.frames += 1;
                self.driver_counters.bytes += len as u64;
                sddf::cache::clean_and_invalidate(&self.data, offset, len);
                if let Some(tap) = self.tap.as_mut() {
                    tap.frame(TapPoint::DriverRx, &self.data, offset, len);
                }
                let mut dest = [0u8; 6];
                let mask = if len >= 14 && self.data.read(offset, &mut dest).is_ok() {
                    self.destinations(dest)
                } else {
                    0
                };
                let mut delivered = 0u64;
                let desc = BuffDesc::new(offset as u64, d.len, 0);
                for i in 0..self.num_clients {
                    if mask & (1 << i) == 0 {
                        continue;
                    }
                    let Some(c) = self.clients[i].as_mut() else {
                        continue;
                    };
                    match c.queues.active.enqueue(desc) {
                        Ok(()) => {
                            if let Some(tap) = self.tap.as_mut() {
                                tap.frame(TapPoint::ClientRx(i as u8), &self.data, offset, len);
                            }
                            delivered |= 1 << i;
                            c.counters.frames += 1;
                            c.counters.bytes += len as u64;
                        }
                        Err(QueueError::Full) => c.counters.dropped_full += 1,
                        Err(_) => c.counters.peer_misbehaviour += 1,
                    }
                }
                notify |= delivered;
                if delivered == 0 {
                    if mask == 0 {
                        self.driver_counters.unmatched += 1;
                    }
                    self.return_to_driver(index);
                } else {
                    self.owners[index] = delivered;
                    self.driver_counters.buffers_at_clients += 1;
                }
            }
            self.driver_counters.max_batch = self.driver_counters.max_batch.max(batch);
            match self.driver.active.rearm() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    self.driver_counters.peer_misbehaviour += 1;
                    break;
                }
            }
        }
        for i in 0..self.num_clients {
            if notify & (1 << i) == 0 {
                continue;
            }
            let Some(c) = self.clients[i].as_mut() else {
                continue;
            };
            if c.queues.active.take_signal_request() {
                c.counters.notifications += 1;
                notifier.notify(c.channel);
            } else {
                c.counters.notifications_suppressed += 1;
            }
        }
    }

    fn rx_provide(&mut self, notifier: &mut impl Notifier) {
        for i in 0..self.num_clients {
            loop {
                while let Some(c) = self.clients[i].as_mut() {
                    let d = match c.queues.free.dequeue() {
                        Ok(d) => d,
                        Err(QueueError::Empty) => break,
                        Err(_) => {
                            c.counters.peer_misbehaviour += 1;
                            break;
                        }
                    };
                    let offset = d.io_or_offset;
                    let index = (offset / NET_BUFFER_SIZE as u64) as usize;
                    let bit = 1u64 << i;
                    if !offset.is_multiple_of(NET_BUFFER_SIZE as u64)
                        || index >= self.capacity
                        || self.owners[index] & bit == 0
                    {
                        c.counters.bad_returns += 1;
                        continue;
                    }
                    c.counters.returned += 1;
                    self.owners[index] &= !bit;
                    if self.owners[index] == 0 {
                        self.driver_counters.buffers_at_clients =
                            self.driver_counters.buffers_at_clients.saturating_sub(1);
                        self.return_to_driver(index);
                    }
                }
                let Some(c) = self.clients[i].as_mut() else {
                    break;
                };
                match c.queues.free.rearm() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(_) => {
                        c.counters.peer_misbehaviour += 1;
                        break;
                    }
                }
            }
        }
        self.signal_driver(notifier);
    }

    fn signal_driver(&mut self, notifier: &mut impl Notifier) {
        if self.notify_driver && self.driver.free.take_signal_request() {
            self.driver_counters.notifications += 1;
            notifier.deferred_notify(self.driver_channel);
        }
        self.notify_driver = false;
    }
}
