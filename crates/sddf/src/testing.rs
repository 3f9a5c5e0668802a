//! Test support for components built on this crate (feature `std`): heap-backed address spaces
//! laid out like a PD's, config building blocks, and a notifier that records what it was asked.
use std::vec::Vec;

use crate::config::{ConnectionResource, QueueKind, RegionResource};
use crate::desc::BuffDesc;
use crate::queue::{queue_bytes, Queue};
use crate::shm::{AddressSpace, OwnedSpace};

/// Records notifications: `(channel, deferred)`.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    /// Every call, in order.
    pub events: Vec<(u8, bool)>,
}

impl RecordingNotifier {
    /// Channels notified (immediately or deferred), then forgets them.
    pub fn take(&mut self) -> Vec<(u8, bool)> {
        core::mem::take(&mut self.events)
    }
}

impl crate::Notifier for RecordingNotifier {
    fn notify(&mut self, ch: u8) {
        self.events.push((ch, false));
    }
    fn deferred_notify(&mut self, ch: u8) {
        self.events.push((ch, true));
    }
}

/// Allocates regions at increasing page-aligned vaddrs in one [`OwnedSpace`].
pub struct Layout {
    /// The memory.
    pub space: OwnedSpace,
    next: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            space: OwnedSpace::new(),
            next: 0x2000_0000,
        }
    }
}

impl Layout {
    /// A new empty layout.
    pub fn new() -> Self {
        Self::default()
    }

    /// A zeroed region of `size` bytes.
    pub fn region(&mut self, size: u64) -> RegionResource {
        let vaddr = self.next;
        self.space.add(vaddr, size);
        self.next += size.div_ceil(0x1000) * 0x1000 + 0x1000;
        RegionResource { vaddr, size }
    }

    /// A queue pair of `capacity` entries towards channel `id`, in page-rounded regions as
    /// Microkit makes them (so the spare bytes after the array hold netvm's reconnect
    /// words).
    pub fn connection(&mut self, capacity: u16, id: u8) -> ConnectionResource {
        let bytes = queue_bytes(capacity.into()).next_multiple_of(0x1000) as u64;
        let free = self.region(bytes);
        let active = self.region(bytes);
        ConnectionResource::new(free, active, capacity, id)
    }

    /// The two queues of a connection, for a scripted peer. Panics as
    /// [`ConnectionResource::queues`] would fail: a test's layout is wrong.
    pub fn queues(&self, conn: &ConnectionResource) -> (Queue<'_>, Queue<'_>) {
        let pair = conn
            .queues(&&self.space)
            .unwrap_or_else(|e| panic!("test connection: {e}"));
        (pair.free, pair.active)
    }

    /// The descriptors `queue` of `conn` holds, oldest first, read from its bytes without
    /// touching its indices (so a test can look at a queue a component owns). Panics when the
    /// indices are impossible for the capacity.
    pub fn peek(&self, conn: &ConnectionResource, queue: QueueKind) -> Vec<BuffDesc> {
        use zerocopy::FromBytes;
        let view = self.view(match queue {
            QueueKind::Free => &conn.free_queue,
            QueueKind::Active => &conn.active_queue,
        });
        let mut h = [0u8; 4];
        view.read(0, &mut h).expect("queue header");
        let (tail, head) = (
            u16::from_le_bytes([h[0], h[1]]),
            u16::from_le_bytes([h[2], h[3]]),
        );
        let len = tail.wrapping_sub(head);
        assert!(len <= conn.num_buffers, "impossible indices");
        (0..len)
            .map(|k| {
                let slot = usize::from(head.wrapping_add(k) & (conn.num_buffers - 1));
                let mut b = [0u8; 16];
                view.read(8 + 16 * slot, &mut b).expect("queue slot");
                BuffDesc::read_from_bytes(&b).expect("16 bytes")
            })
            .collect()
    }

    /// A view of a region.
    pub fn view(&self, r: &RegionResource) -> crate::shm::Region<'_> {
        (&self.space).region(r.vaddr, r.size).expect("mapped")
    }
}
