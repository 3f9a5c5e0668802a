//! Quiescing a passed-through virtio-mmio device before the guest is booted again.
//!
//! A guest that crashed leaves its NIC running: the device still owns the receive buffers the
//! old kernel posted and writes every arriving frame into them, while the VMM loads the new
//! kernel and initrd over that memory and the new kernel reuses it. Without an IOMMU nothing
//! else stops it (SECURITY.md), so the VMM resets the device first, as a platform reset would:
//! writing 0 to the virtio-mmio `Status` register makes the device drop its queues and stop
//! all DMA (virtio 1.2 §4.2.2.1, §2.4); the new guest's driver then sets it up from scratch.

/// Register offsets of the virtio-mmio transport (virtio 1.2 §4.2.2).
pub mod reg {
    /// `MagicValue`: `"virt"` little-endian.
    pub const MAGIC: usize = 0x000;
    /// `Version`: 1 (legacy) or 2.
    pub const VERSION: usize = 0x004;
    /// `DeviceID`: 0 = no device in this slot.
    pub const DEVICE_ID: usize = 0x008;
    /// `Status`: writing 0 resets the device.
    pub const STATUS: usize = 0x070;
}

/// `"virt"`.
pub const MAGIC_VALUE: u32 = 0x7472_6976;

/// 32-bit accesses to one device's register page.
pub trait Mmio {
    /// Reads the register at byte offset `offset`.
    fn read32(&mut self, offset: usize) -> u32;
    /// Writes the register at byte offset `offset`.
    fn write32(&mut self, offset: usize, value: u32);
}

/// Why a device was not reset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ResetError {
    /// The page holds no virtio-mmio transport (the wrong page is mapped).
    NotVirtio {
        /// What `MagicValue` read.
        magic: u32,
    },
    /// `Status` still reads non-zero after the reset and a re-read: the device did not reset.
    StillRunning {
        /// What `Status` read.
        status: u32,
    },
}

impl core::fmt::Display for ResetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResetError::NotVirtio { magic } => write!(
                f,
                "no virtio-mmio device there (MagicValue {magic:#x}, expected {MAGIC_VALUE:#x})"
            ),
            ResetError::StillRunning { status } => {
                write!(f, "the device did not reset (Status reads {status:#x})")
            }
        }
    }
}

/// Bytes per virtio-mmio transport: QEMU `virt` packs eight into each 4 KiB page (the NIC
/// system.xml passes through is the last of the page at 0x0a00_3000, at +0xe00).
pub const TRANSPORT_SIZE: usize = 0x200;
/// Transports in one 4 KiB page.
pub const TRANSPORTS_PER_PAGE: usize = 0x1000 / TRANSPORT_SIZE;

/// What [`reset_page`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PageReset {
    /// Transports (bit = index in the page) with a device, all reset.
    pub devices: u8,
    /// ... of which were in use (`Status` not 0) before.
    pub were_running: u8,
}

/// Resets every device in a passed-through page of virtio-mmio transports: the whole page is
/// the guest's, so any device in it may hold DMA buffers of the old guest. `regs` addresses the
/// page; each transport is at `index * TRANSPORT_SIZE`. Fails on the first transport that is
/// not virtio-mmio or does not reset.
pub fn reset_page(regs: &mut impl Mmio) -> Result<PageReset, (usize, ResetError)> {
    let mut found = PageReset::default();
    for index in 0..TRANSPORTS_PER_PAGE {
        let mut transport = Offset(regs, index * TRANSPORT_SIZE);
        if transport.read32(reg::MAGIC) == MAGIC_VALUE && transport.read32(reg::DEVICE_ID) == 0 {
            continue;
        }
        let before = reset(&mut transport).map_err(|e| (index, e))?;
        found.devices |= 1 << index;
        if before != 0 {
            found.were_running |= 1 << index;
        }
    }
    Ok(found)
}

/// One transport of a page.
struct Offset<'a, M>(&'a mut M, usize);

impl<M: Mmio> Mmio for Offset<'_, M> {
    fn read32(&mut self, offset: usize) -> u32 {
        self.0.read32(self.1 + offset)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.0.write32(self.1 + offset, value)
    }
}

/// How many times `Status` is read back before the reset counts as failed. A device must
/// complete the reset before a read of `Status` returns 0; QEMU does so synchronously.
const STATUS_POLLS: usize = 1000;

/// Resets the device (virtio 1.2 §4.2.3.1: "the driver writes 0 to Status and reads it back
/// until it returns 0"). Returns the `Status` the device had (0: it was not in use). A slot
/// without a device (`DeviceID` 0) needs nothing and succeeds.
pub fn reset(regs: &mut impl Mmio) -> Result<u32, ResetError> {
    let magic = regs.read32(reg::MAGIC);
    if magic != MAGIC_VALUE {
        return Err(ResetError::NotVirtio { magic });
    }
    if regs.read32(reg::DEVICE_ID) == 0 {
        return Ok(0);
    }
    let before = regs.read32(reg::STATUS);
    regs.write32(reg::STATUS, 0);
    let mut status = regs.read32(reg::STATUS);
    for _ in 0..STATUS_POLLS {
        if status == 0 {
            return Ok(before);
        }
        status = regs.read32(reg::STATUS);
    }
    Err(ResetError::StillRunning { status })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A virtio-mmio page: `resets_after` reads of Status before a written 0 takes effect.
    struct Device {
        magic: u32,
        id: u32,
        status: u32,
        pending_reset: Option<usize>,
        writes: Vec<(usize, u32)>,
    }

    impl Device {
        fn new(status: u32) -> Self {
            Device {
                magic: MAGIC_VALUE,
                id: 1,
                status,
                pending_reset: None,
                writes: Vec::new(),
            }
        }
    }

    impl Mmio for Device {
        fn read32(&mut self, offset: usize) -> u32 {
            match offset {
                reg::MAGIC => self.magic,
                reg::VERSION => 2,
                reg::DEVICE_ID => self.id,
                reg::STATUS => {
                    if let Some(n) = self.pending_reset.as_mut() {
                        if *n == 0 {
                            self.status = 0;
                            self.pending_reset = None;
                        } else {
                            *n -= 1;
                        }
                    }
                    self.status
                }
                _ => 0,
            }
        }
        fn write32(&mut self, offset: usize, value: u32) {
            self.writes.push((offset, value));
            if offset == reg::STATUS && value == 0 {
                self.pending_reset = Some(3);
            }
        }
    }

    #[test]
    fn a_running_device_is_reset_and_waited_for() {
        // ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK.
        let mut dev = Device::new(0xf);
        assert_eq!(reset(&mut dev), Ok(0xf));
        assert_eq!(dev.writes, [(reg::STATUS, 0)]);
        assert_eq!(dev.status, 0);
    }

    #[test]
    fn an_empty_slot_or_a_wrong_page_is_not_written() {
        let mut dev = Device::new(0);
        dev.id = 0;
        assert_eq!(reset(&mut dev), Ok(0));
        assert!(dev.writes.is_empty());
        let mut dev = Device::new(0xf);
        dev.magic = 0x1234;
        assert_eq!(
            reset(&mut dev),
            Err(ResetError::NotVirtio { magic: 0x1234 })
        );
        assert!(dev.writes.is_empty());
    }

    /// A page of eight transports, a device in slot 7 only (QEMU's layout for system.xml).
    struct Page {
        slots: Vec<Device>,
    }

    impl Mmio for Page {
        fn read32(&mut self, offset: usize) -> u32 {
            self.slots[offset / TRANSPORT_SIZE].read32(offset % TRANSPORT_SIZE)
        }
        fn write32(&mut self, offset: usize, value: u32) {
            self.slots[offset / TRANSPORT_SIZE].write32(offset % TRANSPORT_SIZE, value)
        }
    }

    #[test]
    fn every_device_of_a_page_is_reset() {
        let mut slots: Vec<Device> = (0..8)
            .map(|_| {
                let mut d = Device::new(0);
                d.id = 0;
                d
            })
            .collect();
        slots[7] = Device::new(0xf);
        let mut page = Page { slots };
        assert_eq!(
            reset_page(&mut page),
            Ok(PageReset {
                devices: 0x80,
                were_running: 0x80
            })
        );
        assert_eq!(page.slots[7].status, 0);
        assert!(page.slots[..7].iter().all(|d| d.writes.is_empty()));
        // Not a page of transports at all.
        page.slots[0].magic = 0;
        assert_eq!(
            reset_page(&mut page),
            Err((0, ResetError::NotVirtio { magic: 0 }))
        );
    }

    #[test]
    fn a_device_that_never_resets_is_reported() {
        let mut dev = Device::new(0xf);
        dev.pending_reset = None;
        // Writes are ignored: make the write not schedule a reset.
        struct Stuck(Device);
        impl Mmio for Stuck {
            fn read32(&mut self, offset: usize) -> u32 {
                self.0.read32(offset)
            }
            fn write32(&mut self, _offset: usize, _value: u32) {}
        }
        assert_eq!(
            reset(&mut Stuck(dev)),
            Err(ResetError::StillRunning { status: 0xf })
        );
    }
}
