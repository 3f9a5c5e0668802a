//! The TX virtualiser: merges the clients' transmit queues into the driver's.
//!
//! Drop-in for sDDF 0.7's `network_virt_tx.elf`: it reads the same `.net_virt_tx_config`; each
//! client descriptor is checked (length 1..=2048, `oid` below the client's region count, offset
//! aligned and inside the region) and a bad one goes straight back to that client's free queue;
//! a good one is cache-cleaned and handed to the driver; buffers the driver completes go back to
//! the client that owns them. The driver is notified deferred, clients immediately.
//!
//! Better than sDDF where sDDF is weak (the first three only when `.netvm_net_options` switches
//! them on, as netvm's tools do: an all-zero options section behaves exactly as sDDF 0.7):
//! * **Fair TX**: clients are served round robin, at most `tx_budget` descriptors each per round,
//!   instead of draining client 0 completely before client 1 (strict order stays an option).
//! * **Ownership**: every client buffer has an in-flight bit. A client cannot submit a buffer that
//!   is already with the driver (a duplicate), and a completion from the driver for a buffer
//!   that is not in flight is dropped and counted, so no client can be handed another's buffer.
//! * **Lazy completions**: sDDF's virt_tx asks the driver for a signal after every drain of its
//!   free queue, so each batch the driver sends costs a notification back; from a driver VM
//!   that is a VM exit. Returning buffers is not urgent: every client's transmit notification
//!   runs this PD, which collects completions first. So the driver is asked to signal only
//!   while some client with buffers at the driver is running low (its free queue holds under a
//!   quarter of its buffers), which is when a client could be left waiting for buffers.
//! * **Driver-VM offset mode**: the driver sees `offset` within a region plus a driver-side `oid`
//!   naming the region (client-major order of the config), never an IO address.
//! * **Restarted clients**: a client that restarts asks for a reset through the
//!   [`netvm_api::reconnect`] words of its TX free queue. At the start of the next notification
//!   virt_tx empties that client's two TX queues and puts into its free queue every buffer of
//!   the client whose in-flight bit is clear; the in-flight ones come back through completions
//!   as usual. Frames the dead instance left in the active queue are **dropped** (counted in
//!   `reset_dropped`), not sent: they belong to a process that no longer exists (its TCP state,
//!   for one, died with it), it may have died because it was corrupt, and dropping keeps the
//!   reset one bounded pass with nothing to wait for when the driver's queue is full. Only that
//!   client's queues and buffers are touched, so a client abusing the words hurts only itself;
//!   an epoch that moves backwards is counted in `bad_reset_requests` and ignored.
//! * **Restarted driver**: the driver takes the client's role in the same protocol, through the
//!   words of the driver's `tx_free`. At the next notification virt_tx first collects the
//!   completions the dead driver left (returned as usual), then empties both driver queues and
//!   hands every buffer whose in-flight bit is still set back to its client's free queue,
//!   counted in that client's `driver_reset_dropped` (a frame the dead driver may or may not
//!   have sent: dropped, never a lost buffer). The in-flight bits are the only source of truth,
//!   and only an epoch that moved forward counts (a backwards one is counted in the driver's
//!   `bad_reset_requests`), so a hostile driver cannot make virt_tx lose or duplicate a buffer
//!   through the words.
//! * **Local delivery** (with a `.netvm_vswitch` section, [`VirtTx::attach_local`]): a frame to
//!   another client's MAC goes to that client's copier instead of the driver, broadcast to both
//!   (the `local` module); a buffer returns to its client only once the driver and every copier
//!   holding it are done.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod local;

pub use error::Error;
pub use local::MAX_LOCAL_PORTS;

use netvm_api::options::NetOptions;
use netvm_api::reconnect::{ControlWords, Notify, PeerEnd, ResetCounts};
use netvm_api::stats::{StatsError, StatsSlot, StatsWriter};
use netvm_api::tap::{Tap, TapPoint};
use sddf::config::NetVirtTxConfig;
use sddf::queue::{DrainSide, FillSide, QueueError};
use sddf::shm::{AddressSpace, Region};
use sddf::{BuffDesc, Notifier, NET_BUFFER_SIZE};

/// Most clients.
pub const MAX_CLIENTS: usize = 64;
/// Most TX data regions over all clients (a driver-side `oid` has 6 bits).
pub const MAX_REGIONS: usize = 64;
/// Most TX buffers over all regions (the in-flight table is fixed-size: no heap in PDs).
pub const MAX_BUFFERS: usize = 8192;

/// Why a client descriptor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `len` is 0 or above 2048.
    Length,
    /// `oid` names no region of this client.
    Oid,
    /// The offset is misaligned or outside the region.
    Offset,
    /// The buffer is already with the driver.
    Duplicate,
}

netvm_api::counters! {
/// Counters for one client.
pub struct ClientCounters {
    /// Frames passed to the driver.
    pub frames: u64,
    /// Bytes passed to the driver.
    pub bytes: u64,
    /// Descriptors refused for their length.
    pub bad_length: u64,
    /// Descriptors refused for their oid.
    pub bad_oid: u64,
    /// Descriptors refused for their offset.
    pub bad_offset: u64,
    /// Descriptors refused because the buffer was already in flight.
    pub duplicates: u64,
    /// Buffers returned to the client once the driver (and any local destination) finished.
    pub returned: u64,
    /// Times the client left impossible queue indices.
    pub peer_misbehaviour: u64,
    /// Notifications sent to the client.
    pub notifications: u64,
    /// Largest number of descriptors taken from the client in one round.
    pub max_batch: u64,
    /// Resets for a restarted client ([`netvm_api::reconnect`]).
    pub resets: u64,
    /// Frames the client's dead instance had queued, dropped by a reset.
    pub reset_dropped: u64,
    /// Reconnect epochs from the client that moved backwards (ignored).
    pub bad_reset_requests: u64,
    /// Buffers that were with a driver when it restarted, returned unsent by the reset.
    pub driver_reset_dropped: u64,
    /// Frames from this client handed to another client's copier (one per destination).
    pub local_delivered: u64,
    /// Frames from this client a local destination's queue could not take.
    pub local_dropped: u64,
    /// Bad descriptors or impossible queue indices from this client's copier's local queues.
    pub local_misbehaviour: u64,
}
}

netvm_api::counters! {
/// Counters for the driver side.
pub struct DriverCounters {
    /// Frames handed to the driver.
    pub frames: u64,
    /// Completions from the driver.
    pub completions: u64,
    /// Completions naming no client buffer in flight.
    pub bad_completions: u64,
    /// Times the driver left impossible queue indices.
    pub peer_misbehaviour: u64,
    /// Times the driver's active queue was full (frames left with their client for later).
    pub full: u64,
    /// Notifications sent to the driver.
    pub notifications: u64,
    /// Client buffers with the driver when the counters were last published (a gauge: 0 when
    /// the system is idle).
    pub in_flight: u64,
    /// Resets for a restarted driver ([`netvm_api::reconnect`]).
    pub resets: u64,
    /// Reconnect epochs from the driver that moved backwards (ignored).
    pub bad_reset_requests: u64,
    /// Client buffers held by local destinations when last published (a gauge).
    pub local_held: u64,
}
}

#[derive(Clone, Copy)]
struct DataRegion<'a> {
    view: Region<'a>,
    io_addr: u64,
    buffers: usize,
    /// Index of its first buffer in the in-flight table.
    first: usize,
    client: usize,
    /// Its index among the client's regions (the client-side `oid`).
    local_oid: u8,
}

struct Client<'a> {
    queues: DrainSide<'a>,
    channel: u8,
    /// Driver-side oids of this client's regions.
    first_region: usize,
    num_regions: usize,
    reconnect: PeerEnd<'a>,
    counters: ClientCounters,
    /// Buffers of this client with the driver.
    in_flight: usize,
}

/// The TX virtualiser's state.
pub struct VirtTx<'a> {
    driver: FillSide<'a>,
    driver_channel: u8,
    /// The driver's reconnect words, in `tx_free`'s spare bytes.
    driver_reconnect: PeerEnd<'a>,
    clients: [Option<Client<'a>>; MAX_CLIENTS],
    num_clients: usize,
    regions: [Option<DataRegion<'a>>; MAX_REGIONS],
    num_regions: usize,
    in_flight: [u64; MAX_BUFFERS / 64],
    driver_offsets: bool,
    strict_order: bool,
    lazy_completions: bool,
    budget: usize,
    next_client: usize,
    /// Driver-side counters.
    pub driver_counters: DriverCounters,
    stats: StatsSlot<'a>,
    tap: Option<&'a mut dyn Tap>,
    local: local::Local<'a>,
}

impl<'a> VirtTx<'a> {
    /// Checks the config, finds every region, and passes on anything already queued.
    pub fn new(
        config: &NetVirtTxConfig,
        options: &NetOptions,
        mem: &impl AddressSpace<'a>,
        notifier: &mut impl Notifier,
    ) -> Result<VirtTx<'a>, Error> {
        sddf::config::Config::validate(config).map_err(Error::Config)?;
        let driver = config.driver.queues(mem).map_err(|error| Error::Queues {
            client: None,
            error,
        })?;
        let mut v = VirtTx {
            driver: FillSide::new(driver.free, driver.active),
            driver_channel: config.driver.id,
            driver_reconnect: PeerEnd::new(ControlWords::of(&driver)),
            clients: [const { None }; MAX_CLIENTS],
            num_clients: config.clients().len(),
            regions: [const { None }; MAX_REGIONS],
            num_regions: 0,
            in_flight: [0; MAX_BUFFERS / 64],
            driver_offsets: options.driver_offsets(),
            strict_order: !options.fair_tx(),
            lazy_completions: options.lazy_completions(),
            budget: usize::from(options.tx_budget()),
            next_client: 0,
            driver_counters: DriverCounters::default(),
            stats: StatsSlot::default(),
            tap: None,
            local: local::Local::off(options.deliver_multicast()),
        };
        let mut buffers = 0usize;
        for (c, cc) in config.clients().iter().enumerate() {
            let queues = cc.conn.queues(mem).map_err(|error| Error::Queues {
                client: Some(c),
                error,
            })?;
            let first_region = v.num_regions;
            for (local, r) in cc.regions().iter().enumerate() {
                let n = r.num_buffers as usize;
                // In IO-address mode the driver gets `io_addr + offset`: it must not wrap.
                let io_wraps = !v.driver_offsets
                    && r.data
                        .io_addr
                        .checked_add((n * NET_BUFFER_SIZE) as u64)
                        .is_none();
                if v.num_regions == MAX_REGIONS
                    || buffers + n > MAX_BUFFERS
                    || (r.data.region.size as usize) < n * NET_BUFFER_SIZE
                    || io_wraps
                {
                    return Err(Error::Regions { client: c });
                }
                let view =
                    mem.region(r.data.region.vaddr, r.data.region.size)
                        .ok_or(Error::Unmapped {
                            client: c,
                            vaddr: r.data.region.vaddr,
                        })?;
                v.regions[v.num_regions] = Some(DataRegion {
                    view,
                    io_addr: r.data.io_addr,
                    buffers: n,
                    first: buffers,
                    client: c,
                    local_oid: local as u8,
                });
                v.num_regions += 1;
                buffers += n;
            }
            v.clients[c] = Some(Client {
                queues: DrainSide::new(queues.free, queues.active),
                channel: cc.conn.id,
                first_region,
                num_regions: cc.regions().len(),
                reconnect: PeerEnd::new(ControlWords::of(&queues)),
                counters: ClientCounters::default(),
                in_flight: 0,
            });
        }
        v.tx_provide(notifier);
        Ok(v)
    }

    /// Handles a notification from anyone: resets for restarted clients, completions from the
    /// driver, a reset for a restarted driver, then clients' frames.
    pub fn notified(&mut self, notifier: &mut impl Notifier) {
        for c in 0..self.num_clients {
            self.serve_reconnect(c, notifier);
        }
        self.tx_return(notifier);
        self.local_return(notifier);
        self.serve_driver_reset(notifier);
        self.tx_provide(notifier);
        if self.notify_local(notifier) {
            // Ask the copiers just given frames to signal their returns (nothing else would
            // run this PD once traffic stops), collecting what they already gave back.
            self.local_return(notifier);
        }
        // What was just sent may have left a client low: then arm for its completions now.
        if self.lazy_completions && self.completions_wanted() {
            self.tx_return(notifier);
        }
        self.publish();
        if let Some(tap) = self.tap.as_mut() {
            tap.flush();
        }
    }

    /// Shows every frame taken from a client ([`TapPoint::ClientTx`]) and handed to the driver
    /// ([`TapPoint::DriverTx`]) to `tap` from now on.
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
        // `in_flight` is a gauge computed only for readers: skip it when there are none.
        if !self.stats.is_attached() {
            return;
        }
        self.driver_counters.in_flight = self.in_flight() as u64;
        self.driver_counters.local_held = self.local.held_count() as u64;
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

    /// Buffers currently with the driver.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn bit(&self, slot: usize) -> bool {
        self.in_flight[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn set_bit(&mut self, slot: usize, on: bool) {
        if on {
            self.in_flight[slot / 64] |= 1 << (slot % 64);
        } else {
            self.in_flight[slot / 64] &= !(1 << (slot % 64));
        }
    }

    /// Checks a client descriptor; on success gives (driver-side oid, buffer slot).
    fn check(&self, c: usize, d: &BuffDesc) -> Result<(usize, usize), Refusal> {
        let client = self.clients[c].as_ref().ok_or(Refusal::Oid)?;
        if d.len == 0 || usize::from(d.len) > NET_BUFFER_SIZE {
            return Err(Refusal::Length);
        }
        let oid = usize::from(d.oid());
        if oid >= client.num_regions {
            return Err(Refusal::Oid);
        }
        let region_index = client.first_region + oid;
        let region = self.regions[region_index].as_ref().ok_or(Refusal::Oid)?;
        let index = d.io_or_offset / NET_BUFFER_SIZE as u64;
        if !d.io_or_offset.is_multiple_of(NET_BUFFER_SIZE as u64) || index >= region.buffers as u64
        {
            return Err(Refusal::Offset);
        }
        let slot = region.first + index as usize;
        if self.bit(slot) || self.local.held(slot) {
            return Err(Refusal::Duplicate);
        }
        Ok((region_index, slot))
    }

    /// Serves a reset client `c` asks for (module docs).
    fn serve_reconnect(&mut self, c: usize, notifier: &mut impl Notifier) {
        let Some(client) = self.clients[c].as_mut() else {
            return;
        };
        let Some(epoch) = client
            .reconnect
            .reset_requested(&mut client.counters.bad_reset_requests)
        else {
            return;
        };
        match client.queues.reset() {
            Ok(queued) => client.counters.reset_dropped += u64::from(queued),
            Err(_) => client.counters.peer_misbehaviour += 1,
        }
        let (first, count) = (client.first_region, client.num_regions);
        for r in first..first + count {
            let Some(region) = self.regions[r] else {
                continue;
            };
            for i in 0..region.buffers {
                if self.bit(region.first + i) || self.local.held(region.first + i) {
                    continue;
                }
                let back = BuffDesc::new((i * NET_BUFFER_SIZE) as u64, 0, region.local_oid);
                let client = self.clients[c].as_mut().expect("checked above");
                if client.queues.free.enqueue(back).is_err() {
                    // Only when the client has more buffers than its queue holds.
                    client.counters.peer_misbehaviour += 1;
                }
            }
        }
        let client = self.clients[c].as_mut().expect("checked above");
        let counts = ResetCounts {
            resets: &mut client.counters.resets,
            notifications: &mut client.counters.notifications,
        };
        client
            .reconnect
            .finish_reset(epoch, counts, notifier, client.channel, Notify::Now);
    }

    /// Serves a reset a restarted driver asks for (module docs): both driver queues emptied,
    /// every in-flight buffer back to its client.
    fn serve_driver_reset(&mut self, notifier: &mut impl Notifier) {
        let Some(epoch) = self
            .driver_reconnect
            .reset_requested(&mut self.driver_counters.bad_reset_requests)
        else {
            return;
        };
        // What `tx_active` held is in flight too, so it comes back below; nothing to count here.
        if self.driver.reset_self_provided(0).is_err() {
            self.driver_counters.peer_misbehaviour += 1;
        }
        let mut notify = 0u64;
        for r in 0..self.num_regions {
            let Some(region) = self.regions[r] else {
                continue;
            };
            for i in 0..region.buffers {
                if !self.bit(region.first + i) {
                    continue;
                }
                self.set_bit(region.first + i, false);
                let back = BuffDesc::new((i * NET_BUFFER_SIZE) as u64, 0, region.local_oid);
                let held = self.local.held(region.first + i);
                let Some(client) = self.clients[region.client].as_mut() else {
                    continue;
                };
                client.in_flight = client.in_flight.saturating_sub(1);
                client.counters.driver_reset_dropped += 1;
                if held {
                    // Its local destinations still read it: it comes back through them.
                    continue;
                }
                match client.queues.free.enqueue(back) {
                    Ok(()) => notify |= 1 << region.client,
                    // Only when the client has more buffers than its queue holds.
                    Err(_) => client.counters.peer_misbehaviour += 1,
                }
            }
        }
        self.notify_clients(notify, notifier);
        let counts = ResetCounts {
            resets: &mut self.driver_counters.resets,
            notifications: &mut self.driver_counters.notifications,
        };
        let channel = self.driver_channel;
        self.driver_reconnect
            .finish_reset(epoch, counts, notifier, channel, Notify::Deferred);
    }

    /// Moves up to `budget` descriptors from client `c` to the driver; returns how many it took
    /// and whether the client may have more.
    fn drain_client(&mut self, c: usize, budget: usize) -> (usize, bool) {
        let mut taken = 0;
        while taken < budget {
            if self.driver.active.is_full().unwrap_or(true) {
                self.driver_counters.full += 1;
                return (taken, true);
            }
            let Some(client) = self.clients[c].as_mut() else {
                return (taken, false);
            };
            let d = match client.queues.active.dequeue() {
                Ok(d) => d,
                Err(QueueError::Empty) => return (taken, false),
                Err(_) => {
                    client.counters.peer_misbehaviour += 1;
                    return (taken, false);
                }
            };
            taken += 1;
            match self.check(c, &d) {
                Ok((region_index, slot)) => {
                    if !self.forward(c, d, region_index, slot) {
                        return (taken, false);
                    }
                }
                Err(why) => {
                    let client = self.clients[c].as_mut().expect("checked above");
                    match why {
                        Refusal::Length => client.counters.bad_length += 1,
                        Refusal::Oid => client.counters.bad_oid += 1,
                        Refusal::Offset => client.counters.bad_offset += 1,
                        Refusal::Duplicate => client.counters.duplicates += 1,
                    }
                    // sDDF returns a bad descriptor to its client as it came. A duplicate is
                    // not returned: the buffer is already with the driver and comes back once.
                    if why != Refusal::Duplicate {
                        self.bounce(c, d);
                    }
                }
            }
        }
        (taken, true)
    }

    /// Sends the checked frame `d` of client `c` on: to its local destinations, then, unless it
    /// stays inside the system, to the driver. `false` if the driver's queue is corrupt.
    fn forward(&mut self, c: usize, d: BuffDesc, region_index: usize, slot: usize) -> bool {
        let Some(region) = self.regions[region_index] else {
            return true;
        };
        let (offset, len) = (d.io_or_offset, usize::from(d.len));
        sddf::cache::clean(&region.view, offset as usize, len);
        if let Some(tap) = self.tap.as_mut() {
            tap.frame(
                TapPoint::ClientTx(c as u8),
                &region.view,
                offset as usize,
                len,
            );
        }
        if !self.deliver_local(c, &d, region_index, slot) {
            // Delivered inside the system only; back at once if no destination took it.
            if !self.local.held(slot) {
                self.bounce(c, d);
            }
            return true;
        }
        let out = if self.driver_offsets {
            BuffDesc::new(offset, d.len, region_index as u8)
        } else {
            BuffDesc::new(region.io_addr + offset, d.len, d.oid())
        };
        if self.driver.active.enqueue(out).is_err() {
            // Full was checked before, so only a driver corrupting its queue gets here: the
            // frame goes back to its client unsent (once its local destinations are done).
            self.driver_counters.peer_misbehaviour += 1;
            if !self.local.held(slot) {
                self.bounce(c, d);
            }
            return false;
        }
        if let Some(tap) = self.tap.as_mut() {
            tap.frame(TapPoint::DriverTx, &region.view, offset as usize, len);
        }
        self.set_bit(slot, true);
        self.driver_counters.frames += 1;
        if let Some(client) = self.clients[c].as_mut() {
            client.in_flight += 1;
            client.counters.frames += 1;
            client.counters.bytes += d.len as u64;
        }
        true
    }

    fn bounce(&mut self, c: usize, d: BuffDesc) {
        if let Some(client) = self.clients[c].as_mut() {
            if client.queues.free.enqueue(d).is_err() {
                client.counters.peer_misbehaviour += 1;
            }
        }
    }

    fn tx_provide(&mut self, notifier: &mut impl Notifier) {
        let before = self.driver_counters.frames;
        let n = self.num_clients;
        if self.strict_order {
            for c in 0..n {
                self.drain_fully(c, usize::MAX);
            }
        } else {
            // Round robin: every client gets `budget` per round until all are drained.
            let mut pending = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            while pending != 0 && !self.driver.active.is_full().unwrap_or(true) {
                for k in 0..n {
                    let c = (self.next_client + k) % n;
                    if pending & (1 << c) == 0 {
                        continue;
                    }
                    let (taken, more) = self.drain_client(c, self.budget);
                    self.note_batch(c, taken);
                    if !more && !self.rearm(c) {
                        pending &= !(1 << c);
                    }
                }
                self.next_client = (self.next_client + 1) % n.max(1);
            }
        }
        if self.driver_counters.frames != before && self.driver.active.take_signal_request() {
            self.driver_counters.notifications += 1;
            notifier.deferred_notify(self.driver_channel);
        }
    }

    fn drain_fully(&mut self, c: usize, budget: usize) {
        loop {
            let (taken, more) = self.drain_client(c, budget);
            self.note_batch(c, taken);
            if more || self.rearm(c) {
                if self.driver.active.is_full().unwrap_or(true) {
                    return;
                }
                continue;
            }
            return;
        }
    }

    fn note_batch(&mut self, c: usize, taken: usize) {
        if let Some(client) = self.clients[c].as_mut() {
            client.counters.max_batch = client.counters.max_batch.max(taken as u64);
        }
    }

    /// The double-check on a client's active queue: `true` if more arrived.
    fn rearm(&mut self, c: usize) -> bool {
        let Some(client) = self.clients[c].as_mut() else {
            return false;
        };
        match client.queues.active.rearm() {
            Ok(more) => more,
            Err(_) => {
                client.counters.peer_misbehaviour += 1;
                false
            }
        }
    }

    /// Finds the region and slot a completed driver descriptor refers to.
    fn completion(&self, d: &BuffDesc) -> Option<(usize, u64, usize)> {
        let (region_index, offset) = if self.driver_offsets {
            (usize::from(d.oid()), d.io_or_offset)
        } else {
            let i = self.regions[..self.num_regions].iter().position(|r| {
                r.as_ref().is_some_and(|r| {
                    d.io_or_offset >= r.io_addr
                        && d.io_or_offset - r.io_addr < (r.buffers * NET_BUFFER_SIZE) as u64
                })
            })?;
            (i, d.io_or_offset - self.regions[i]?.io_addr)
        };
        let region = self.regions.get(region_index)?.as_ref()?;
        let index = offset / NET_BUFFER_SIZE as u64;
        if !offset.is_multiple_of(NET_BUFFER_SIZE as u64) || index >= region.buffers as u64 {
            return None;
        }
        let slot = region.first + index as usize;
        self.bit(slot).then_some((region_index, offset, slot))
    }

    /// Whether the driver should signal its next completions: some client with buffers at the
    /// driver has fewer than a quarter of its buffers in its free queue (see the module docs).
    /// A client with more can go on sending, and its next notification collects completions.
    /// Without lazy completions, always (sDDF asks after every drain of the free queue).
    fn completions_wanted(&self) -> bool {
        if !self.lazy_completions {
            return true;
        }
        self.clients[..self.num_clients].iter().flatten().any(|c| {
            c.in_flight > 0
                && c.queues.free.len().map_or(true, |n| {
                    usize::from(n) < usize::from(c.queues.free.capacity()) / 4
                })
        })
    }

    fn tx_return(&mut self, notifier: &mut impl Notifier) {
        let mut notify = 0u64;
        loop {
            loop {
                let d = match self.driver.free.dequeue() {
                    Ok(d) => d,
                    Err(QueueError::Empty) => break,
                    Err(_) => {
                        self.driver_counters.peer_misbehaviour += 1;
                        break;
                    }
                };
                let Some((region_index, offset, slot)) = self.completion(&d) else {
                    self.driver_counters.bad_completions += 1;
                    continue;
                };
                let Some(region) = self.regions[region_index] else {
                    continue;
                };
                self.set_bit(slot, false);
                self.driver_counters.completions += 1;
                if self.local.held(slot) {
                    // Local destinations still read it: it goes back when they are done.
                    if let Some(client) = self.clients[region.client].as_mut() {
                        client.in_flight = client.in_flight.saturating_sub(1);
                    }
                    continue;
                }
                let back = BuffDesc::new(offset, 0, region.local_oid);
                if let Some(client) = self.clients[region.client].as_mut() {
                    client.in_flight = client.in_flight.saturating_sub(1);
                    match client.queues.free.enqueue(back) {
                        Ok(()) => {
                            client.counters.returned += 1;
                            notify |= 1 << region.client;
                        }
                        Err(_) => client.counters.peer_misbehaviour += 1,
                    }
                }
            }
            if !self.completions_wanted() {
                self.driver.free.cancel_signal();
                break;
            }
            match self.driver.free.rearm() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    self.driver_counters.peer_misbehaviour += 1;
                    break;
                }
            }
        }
        self.notify_clients(notify, notifier);
    }
}
