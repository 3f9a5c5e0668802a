//! Frames from the other clients of the system ([`netvm_api::vswitch`]): virt_tx queues
//! `{offset, len, oid}` on the local active queue, `oid` naming the sender's TX data region,
//! which this copier maps read-only. Each is copied into a free client buffer (or dropped and
//! counted when there is none) and the descriptor goes back unchanged on the local free queue,
//! at once, so the sender's buffer is never held past one [`Copier::notified`] call. A
//! descriptor naming no mapped region, or leaving it, goes back uncopied and is counted.

use netvm_api::vswitch::CopyLocalConfig;
use sddf::queue::{DrainSide, QueueError};
use sddf::shm::{AddressSpace, Region};
use sddf::{Notifier, NET_BUFFER_SIZE};

use crate::{Copier, Error, MAX_SOURCES};

/// The local queues from virt_tx and the TX regions they name.
pub(crate) struct LocalIn<'a> {
    queues: DrainSide<'a>,
    channel: u8,
    sources: [Option<Region<'a>>; MAX_SOURCES],
}

impl<'a> Copier<'a> {
    /// Takes frames from the other clients through the local queues of `config`.
    pub fn attach_local(
        &mut self,
        config: &CopyLocalConfig,
        mem: &impl AddressSpace<'a>,
    ) -> Result<(), Error> {
        let queues = config.conn.queues(mem).map_err(Error::LocalQueues)?;
        let mut sources = [None; MAX_SOURCES];
        for (i, r) in config.sources().iter().enumerate() {
            if r.vaddr != 0 {
                sources[i] = Some(mem.region(r.vaddr, r.size).ok_or(Error::Unmapped {
                    what: "TX data region of another client",
                    vaddr: r.vaddr,
                })?);
            }
        }
        self.local = Some(LocalIn {
            queues: DrainSide::new(queues.free, queues.active),
            channel: config.conn.id,
            sources,
        });
        Ok(())
    }

    /// Moves the local frames to the client; returns whether the client got any.
    pub(crate) fn local_notified(&mut self, notifier: &mut impl Notifier) -> bool {
        let Some(mut local) = self.local.take() else {
            return false;
        };
        let (mut to_client, mut returned) = (false, false);
        loop {
            loop {
                let d = match local.queues.active.dequeue() {
                    Ok(d) => d,
                    Err(QueueError::Empty) => break,
                    Err(_) => {
                        self.counters.local_misbehaviour += 1;
                        break;
                    }
                };
                returned = true;
                let len = usize::from(d.len);
                let source = local.sources.get(usize::from(d.oid())).copied().flatten();
                let source = source.filter(|s| {
                    len > 0
                        && len <= NET_BUFFER_SIZE
                        && (d.io_or_offset as usize)
                            .checked_add(len)
                            .is_some_and(|e| e <= s.len())
                });
                match source.map(|s| self.copy_in(&s, d.io_or_offset as usize, d.len)) {
                    Some(Some(true)) => {
                        self.counters.local_frames += 1;
                        self.counters.local_bytes += len as u64;
                        to_client = true;
                    }
                    Some(Some(false)) => {
                        self.counters.client_misbehaviour += 1;
                        self.counters.local_dropped += 1;
                    }
                    Some(None) => self.counters.local_dropped += 1,
                    None => self.counters.bad_local_frames += 1,
                }
                if local.queues.free.enqueue(d).is_err() {
                    self.counters.local_misbehaviour += 1;
                }
            }
            match local.queues.active.rearm() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    self.counters.local_misbehaviour += 1;
                    break;
                }
            }
        }
        if returned && local.queues.free.take_signal_request() {
            self.counters.local_notifications += 1;
            notifier.deferred_notify(local.channel);
        }
        self.local = Some(local);
        to_client
    }
}
