//! Local delivery: frames from one client to another of the same system never leave it
//! ([`netvm_api::vswitch`]).
//!
//! A checked frame whose destination MAC is another client's goes to that client's copier
//! through its local queue pair instead of the driver; broadcast (and multicast when the
//! options deliver it) goes to every other client with a port *and* the driver; never back to
//! its sender. Each local destination holding a buffer is one bit of `holders[slot]` (as the
//! in-flight bit is for the driver); the buffer goes back to its client only once the driver
//! and every holder are done with it, so neither a driver reset nor a client reset can return it
//! while a copier may still read it, and no copier can make it come back twice: a return whose
//! holder bit is clear is refused and counted (`local_misbehaviour` of the copier's client).
//!
//! Without a `.netvm_vswitch` section (all zero) there are no ports and nothing changes.

use netvm_api::vswitch::VirtTxLocalConfig;
use sddf::config::MacAddr;
use sddf::queue::{FillSide, QueueError};
use sddf::shm::AddressSpace;
use sddf::{BuffDesc, Notifier, NET_BUFFER_SIZE};

use crate::{Error, VirtTx, MAX_BUFFERS};

/// Most clients with a local port: the holder masks are 16 bits, so that the table stays small
/// (16 KiB; virt_tx lives on its PD's stack until Microkit's event loop takes it).
pub const MAX_LOCAL_PORTS: usize = 16;

/// One client's local port: its copier's local queues.
pub(crate) struct Port<'a> {
    queues: FillSide<'a>,
    channel: u8,
    mac: MacAddr,
}

/// The local-delivery state of virt_tx.
pub(crate) struct Local<'a> {
    ports: [Option<Port<'a>>; MAX_LOCAL_PORTS],
    /// Per TX buffer slot: the clients whose copiers hold it.
    holders: [u16; MAX_BUFFERS],
    multicast: bool,
    /// Ports given frames since the last [`VirtTx::notify_local`].
    pending: u64,
    /// Buffers each port holds (the bits of `holders` per port).
    held_by: [u32; MAX_LOCAL_PORTS],
    /// Slots with any holder.
    held_slots: usize,
}

impl Local<'_> {
    /// No ports: local delivery off.
    pub(crate) fn off(multicast: bool) -> Self {
        Local {
            ports: [const { None }; MAX_LOCAL_PORTS],
            holders: [0; MAX_BUFFERS],
            multicast,
            pending: 0,
            held_by: [0; MAX_LOCAL_PORTS],
            held_slots: 0,
        }
    }

    /// Whether any local destination holds buffer `slot`.
    pub(crate) fn held(&self, slot: usize) -> bool {
        self.holders[slot] != 0
    }

    /// Buffers held by local destinations (one per buffer, however many hold it).
    pub(crate) fn held_count(&self) -> usize {
        self.held_slots
    }

    /// Port `b` now holds `slot`.
    fn hold(&mut self, slot: usize, b: usize) {
        if self.holders[slot] == 0 {
            self.held_slots += 1;
        }
        self.holders[slot] |= 1 << b;
        self.held_by[b] += 1;
    }

    /// Port `b` gave `slot` back (its bit was set).
    fn release(&mut self, slot: usize, b: usize) {
        self.holders[slot] &= !(1 << b);
        self.held_by[b] = self.held_by[b].saturating_sub(1);
        if self.holders[slot] == 0 {
            self.held_slots = self.held_slots.saturating_sub(1);
        }
    }

    /// Whether client `c` has a port.
    pub(crate) fn has_port(&self, c: usize) -> bool {
        self.ports.get(c).is_some_and(Option::is_some)
    }

    /// The clients other than `from` with a port that get a frame to `dst`, and whether the
    /// driver gets it too.
    fn destinations(&self, from: usize, dst: &MacAddr) -> (u16, bool) {
        let group = dst[0] & 1 != 0;
        let broadcast = *dst == [0xff; 6];
        let mut mask = 0u16;
        for (c, port) in self.ports.iter().enumerate() {
            let Some(port) = port else { continue };
            if c == from {
                continue;
            }
            if broadcast || (group && self.multicast) || port.mac == *dst {
                mask |= 1 << c;
            }
        }
        // Unicast to a local client stays inside; everything else reaches the wire as before.
        (mask, group || mask == 0)
    }
}

impl<'a> VirtTx<'a> {
    /// Turns local delivery on with the ports of `config` (module docs). Without a port for a
    /// client, frames to it go to the driver as before.
    pub fn attach_local(
        &mut self,
        config: &VirtTxLocalConfig,
        mem: &impl AddressSpace<'a>,
    ) -> Result<(), Error> {
        if config.ports().len() != self.num_clients {
            return Err(Error::LocalPorts {
                ports: config.ports().len(),
            });
        }
        for (c, port) in config.ports().iter().enumerate() {
            if port.enabled == 0 {
                continue;
            }
            if c >= MAX_LOCAL_PORTS {
                return Err(Error::LocalPortLimit { client: c });
            }
            let queues = port
                .conn
                .queues(mem)
                .map_err(|error| Error::LocalQueues { client: c, error })?;
            self.local.ports[c] = Some(Port {
                queues: FillSide::new(queues.free, queues.active),
                channel: port.conn.id,
                mac: port.mac,
            });
        }
        Ok(())
    }

    /// Whether local delivery is on (some client has a port).
    pub fn local_delivery(&self) -> bool {
        self.local.ports.iter().any(Option::is_some)
    }

    /// Client buffers held by local destinations (copiers that have not returned them yet).
    pub fn local_held(&self) -> usize {
        self.local.held_count()
    }

    /// Hands the checked frame `d` of client `c` (buffer `slot` of region `region_index`) to
    /// every local destination; returns whether the driver should get it too.
    pub(crate) fn deliver_local(
        &mut self,
        c: usize,
        d: &BuffDesc,
        region_index: usize,
        slot: usize,
    ) -> bool {
        let Some(region) = self.regions[region_index] else {
            return true;
        };
        let mut dst = [0u8; 6];
        if usize::from(d.len) < 14 || region.view.read(d.io_or_offset as usize, &mut dst).is_err() {
            return true;
        }
        let (mask, to_driver) = self.local.destinations(c, &dst);
        for b in 0..self.num_clients.min(MAX_LOCAL_PORTS) {
            if mask & (1 << b) == 0 {
                continue;
            }
            let Some(port) = self.local.ports[b].as_mut() else {
                continue;
            };
            let out = BuffDesc::new(d.io_or_offset, d.len, region_index as u8);
            let Some(client) = self.clients[c].as_mut() else {
                continue;
            };
            match port.queues.active.enqueue(out) {
                Ok(()) => {
                    self.local.hold(slot, b);
                    self.local.pending |= 1 << b;
                    client.counters.local_delivered += 1;
                }
                // Full (the copier is not taking frames) or corrupt: this destination misses it.
                Err(_) => client.counters.local_dropped += 1,
            }
        }
        to_driver
    }

    /// Notifies each copier whose local active queue got frames and asked for a signal; returns
    /// whether any copier got frames.
    pub(crate) fn notify_local(&mut self, notifier: &mut impl Notifier) -> bool {
        let pending = core::mem::take(&mut self.local.pending);
        for (c, port) in self.local.ports.iter_mut().enumerate() {
            let Some(port) = port else { continue };
            if pending & (1 << c) != 0 && port.queues.active.take_signal_request() {
                notifier.notify(port.channel);
            }
        }
        pending != 0
    }

    /// Takes back what the copiers are done with; a buffer no one else holds goes back to its
    /// client.
    pub(crate) fn local_return(&mut self, notifier: &mut impl Notifier) {
        let mut notify = 0u64;
        for b in 0..self.num_clients.min(MAX_LOCAL_PORTS) {
            if !self.local.has_port(b) {
                continue;
            }
            loop {
                while let Some(d) = self.next_local_return(b) {
                    if let Some(owner) = self.take_back(b, &d) {
                        notify |= 1 << owner;
                    }
                }
                let holding = self.local.held_by[b] > 0;
                let Some(port) = self.local.ports[b].as_mut() else {
                    break;
                };
                if !holding {
                    port.queues.free.cancel_signal();
                    break;
                }
                match port.queues.free.rearm() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(_) => {
                        self.local_misbehaved(b);
                        break;
                    }
                }
            }
        }
        self.notify_clients(notify, notifier);
    }

    fn next_local_return(&mut self, b: usize) -> Option<BuffDesc> {
        let port = self.local.ports[b].as_mut()?;
        match port.queues.free.dequeue() {
            Ok(d) => Some(d),
            Err(QueueError::Empty) => None,
            Err(_) => {
                self.local_misbehaved(b);
                None
            }
        }
    }

    fn local_misbehaved(&mut self, b: usize) {
        if let Some(client) = self.clients[b].as_mut() {
            client.counters.local_misbehaviour += 1;
        }
    }

    /// Copier `b` is done with `d`: clears its holder bit; returns the owning client if the
    /// buffer went back to it. A descriptor naming no buffer `b` holds is refused and counted.
    fn take_back(&mut self, b: usize, d: &BuffDesc) -> Option<usize> {
        let region_index = usize::from(d.oid());
        let region = self.regions[..self.num_regions]
            .get(region_index)
            .copied()
            .flatten();
        let slot = region.and_then(|r| {
            let index = d.io_or_offset / NET_BUFFER_SIZE as u64;
            (d.io_or_offset.is_multiple_of(NET_BUFFER_SIZE as u64) && index < r.buffers as u64)
                .then_some(r.first + index as usize)
        });
        let (Some(region), Some(slot)) = (region, slot) else {
            self.local_misbehaved(b);
            return None;
        };
        if self.local.holders[slot] & (1 << b) == 0 {
            self.local_misbehaved(b);
            return None;
        }
        self.local.release(slot, b);
        if self.local.held(slot) || self.bit(slot) {
            return None;
        }
        let back = BuffDesc::new(d.io_or_offset, 0, region.local_oid);
        let client = self.clients[region.client].as_mut()?;
        match client.queues.free.enqueue(back) {
            Ok(()) => {
                client.counters.returned += 1;
                Some(region.client)
            }
            Err(_) => {
                client.counters.peer_misbehaviour += 1;
                None
            }
        }
    }

    /// Notifies each client in `mask` whose free queue asked for a signal.
    pub(crate) fn notify_clients(&mut self, mask: u64, notifier: &mut impl Notifier) {
        for c in 0..self.num_clients {
            if mask & (1 << c) == 0 {
                continue;
            }
            let Some(client) = self.clients[c].as_mut() else {
                continue;
            };
            if client.queues.free.take_signal_request() {
                client.counters.notifications += 1;
                notifier.notify(client.channel);
            }
        }
    }
}
