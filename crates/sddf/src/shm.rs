//! Shared memory: the crate's one place that uses `unsafe`.
//!
//! A [`Region`] is a view of memory that other protection domains (or processes, or a guest) may
//! read and write at any time. Every access through it is bounds-checked and volatile, and the
//! memory is never turned into ordinary Rust references to plain data: peers may race with us, so
//! the only references made are to atomics and `UnsafeCell`s (see `Region::queue_parts`).
//!
//! sDDF's C components use plain pointers; this module is the Rust side's generic access to the
//! same memory (no layout of its own). [`Region::atomic_u32`] serves protocols that keep words
//! beside sDDF's structures (netvm's reconnect words, defined in `netvm_api::reconnect`).
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::desc::BuffDesc;
#[cfg(not(loom))]
use crate::queue::QueueHeader;

/// An access that would leave its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// First byte of the attempted access.
    pub offset: usize,
    /// Length of the attempted access.
    pub len: usize,
    /// Size of the region.
    pub region_len: usize,
}

impl core::fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "access of {} bytes at offset {:#x} leaves a region of {:#x} bytes",
            self.len, self.offset, self.region_len
        )
    }
}

/// A bounds-checked view of shared memory, valid for `'a`.
#[derive(Clone, Copy)]
pub struct Region<'a> {
    base: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a UnsafeCell<[u8]>>,
}

// SAFETY: a Region only performs volatile or atomic accesses to memory that is shared by
// construction; moving the view to another thread adds no new sharing.
unsafe impl Send for Region<'_> {}
// SAFETY: as above: concurrent use from several threads is the same as concurrent use by a peer.
unsafe impl Sync for Region<'_> {}

impl<'a> Region<'a> {
    /// Views `len` bytes at `base` as shared memory.
    ///
    /// # Safety
    ///
    /// `base..base+len` must be mapped, readable and writable, and stay so for `'a`; nothing in this
    /// process may hold Rust references to plain data in it. Peers may access it concurrently.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Region {
            base,
            len,
            _memory: PhantomData,
        }
    }

    /// Views memory owned by this process (host tests and host mode's in-process parts).
    pub fn from_cells(cells: &'a [UnsafeCell<u64>]) -> Self {
        let base = NonNull::new(UnsafeCell::raw_get(cells.as_ptr()).cast::<u8>())
            .unwrap_or(NonNull::dangling());
        // SAFETY: the cells are borrowed for 'a, are writable through UnsafeCell, and
        // `size_of_val` bytes long; being cells, no plain reference to their contents can exist.
        unsafe { Region::new(base, core::mem::size_of_val(cells)) }
    }

    /// Size of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address (for diagnostics and address arithmetic only).
    pub fn base_addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    fn check(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: offset <= len of the mapping, so the pointer stays inside (or one past) it.
                Ok(unsafe { self.base.as_ptr().add(offset) })
            }
            _ => Err(OutOfBounds {
                offset,
                len,
                region_len: self.len,
            }),
        }
    }

    /// A sub-region `offset..offset+len`.
    pub fn slice(&self, offset: usize, len: usize) -> Result<Region<'a>, OutOfBounds> {
        let p = self.check(offset, len)?;
        // SAFETY: `p..p+len` lies inside this region, which satisfies `new`'s contract for 'a.
        Ok(unsafe { Region::new(NonNull::new_unchecked(p), len) })
    }

    /// Copies bytes out of the region.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let p = self.check(offset, dst.len())?;
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds (checked above); volatile because a peer may write concurrently.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies bytes into the region.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let p = self.check(offset, src.len())?;
        for (i, b) in src.iter().enumerate() {
            // SAFETY: in bounds (checked above); volatile because a peer may read concurrently.
            unsafe { p.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Copies `len` bytes from `src` at `src_offset` into this region at `offset` (memcpy speed).
    ///
    /// For ordinary (cacheable) memory only: the copy may use unaligned and vector accesses.
    pub fn copy_from_region(
        &self,
        offset: usize,
        src: &Region<'_>,
        src_offset: usize,
        len: usize,
    ) -> Result<(), OutOfBounds> {
        let d = self.check(offset, len)?;
        let s = src.check(src_offset, len)?;
        // SAFETY: both ranges are in bounds. Overlap is possible only if the two regions alias, so
        // use `copy` (memmove) rather than `copy_nonoverlapping`. A racing peer can tear the data,
        // which is the documented hazard of shared buffers; it cannot make us leave the regions.
        unsafe { core::ptr::copy(s, d, len) };
        Ok(())
    }

    /// Copies `src` into the region at a memcpy speed (ordinary memory only, see
    /// [`Region::copy_from_region`]).
    pub fn copy_from_slice(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let d = self.check(offset, src.len())?;
        // SAFETY: in bounds; `src` is a Rust slice and cannot overlap shared memory we never
        // hand out references to.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), d, src.len()) };
        Ok(())
    }

    /// Copies out of the region at memcpy speed (ordinary memory only).
    pub fn copy_to_slice(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let s = self.check(offset, dst.len())?;
        // SAFETY: in bounds; `dst` is exclusively borrowed Rust memory, disjoint from the region.
        unsafe { core::ptr::copy_nonoverlapping(s, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region with aligned 64-bit volatile stores only, as device (uncached)
    /// mappings such as Linux UIO maps require: no byte, unaligned or vector accesses.
    ///
    /// `offset` must be 8-aligned relative to an 8-aligned base; the last word is padded with zero
    /// bytes, so up to 7 bytes after `src.len()` are overwritten (they must lie in the region).
    pub fn write_words(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let words = src.len().div_ceil(8);
        let p = self.check(offset, words * 8)?;
        if !(p as usize).is_multiple_of(8) {
            return Err(OutOfBounds {
                offset,
                len: src.len(),
                region_len: self.len,
            });
        }
        let p = p.cast::<u64>();
        let mut chunks = src.chunks_exact(8);
        let mut i = 0;
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            // SAFETY: `p` is 8-aligned and word `i` is inside the checked range.
            unsafe { p.add(i).write_volatile(u64::from_ne_bytes(w)) };
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // SAFETY: as above; the padded last word is inside the checked range.
            unsafe { p.add(i).write_volatile(u64::from_ne_bytes(w)) };
        }
        Ok(())
    }

    /// Copies out of the region with aligned 64-bit volatile loads only (see
    /// [`Region::write_words`]). Reads up to 7 bytes past `dst.len()` (they must lie in the region).
    pub fn read_words(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let words = dst.len().div_ceil(8);
        let p = self.check(offset, words * 8)?;
        if !(p as usize).is_multiple_of(8) {
            return Err(OutOfBounds {
                offset,
                len: dst.len(),
                region_len: self.len,
            });
        }
        let p = p.cast::<u64>();
        for (i, c) in dst.chunks_mut(8).enumerate() {
            // SAFETY: `p` is 8-aligned and word `i` is inside the checked range.
            let w = unsafe { p.add(i).read_volatile() }.to_ne_bytes();
            c.copy_from_slice(&w[..c.len()]);
        }
        Ok(())
    }

    /// Splits a queue region into its header and `capacity` descriptor slots.
    #[cfg(not(loom))]
    pub(crate) fn queue_parts(
        &self,
        capacity: usize,
    ) -> Result<(&'a QueueHeader, &'a [Slot]), OutOfBounds> {
        let bytes = 8 + 16 * capacity;
        let p = self.check(0, bytes)?;
        if !(p as usize).is_multiple_of(8) {
            return Err(OutOfBounds {
                offset: 0,
                len: bytes,
                region_len: self.len,
            });
        }
        // SAFETY: the range is in bounds and 8-aligned. QueueHeader is repr(C) atomics only and
        // Slot is an UnsafeCell, so shared references to them permit the concurrent mutation that
        // peers perform; the memory lives for 'a by `new`'s contract.
        unsafe {
            let header = &*p.cast::<QueueHeader>();
            let slots = core::slice::from_raw_parts(p.add(8).cast::<Slot>(), capacity);
            Ok((header, slots))
        }
    }
}

#[cfg(not(loom))]
impl<'a> Region<'a> {
    /// The 32-bit word at `offset` as an atomic, for control words a protocol keeps in a region
    /// beside sDDF's structures (netvm's reconnect words). `offset` must be 4-aligned in memory.
    pub fn atomic_u32(
        &self,
        offset: usize,
    ) -> Result<&'a core::sync::atomic::AtomicU32, OutOfBounds> {
        let len = core::mem::size_of::<u32>();
        let p = self.check(offset, len)?;
        if !(p as usize).is_multiple_of(len) {
            return Err(OutOfBounds {
                offset,
                len,
                region_len: self.len,
            });
        }
        // SAFETY: the range is in bounds and 4-aligned; an AtomicU32 accepts every bit pattern
        // and a shared reference to it permits the concurrent writes a peer makes; the memory
        // lives for 'a by `new`'s contract.
        Ok(unsafe { &*p.cast::<core::sync::atomic::AtomicU32>() })
    }
}

impl core::fmt::Debug for Region<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Region({:#x}+{:#x})", self.base_addr(), self.len)
    }
}

/// One descriptor slot of a queue: written by the producer, read by the consumer.
#[repr(transparent)]
pub(crate) struct Slot {
    #[cfg(not(loom))]
    cell: UnsafeCell<BuffDesc>,
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<BuffDesc>,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Slot>() == 16);

// SAFETY: a slot is shared memory by design: the producer writes it (volatile) before publishing
// `tail` with Release, the consumer reads it (volatile) after loading `tail` with Acquire. Using
// a queue from another thread of the same process is the same as from another process.
unsafe impl Sync for Slot {}

impl Slot {
    #[cfg(loom)]
    pub(crate) fn new(d: BuffDesc) -> Self {
        Slot {
            cell: loom::cell::UnsafeCell::new(d),
        }
    }

    /// Reads the slot. The queue protocol makes the producer finish writing before it publishes
    /// `tail` (Release) and the consumer read `tail` (Acquire) first; a misbehaving peer can still
    /// race, hence volatile reads of plain data. Two aligned 64-bit accesses, never one 128-bit
    /// (vector) access: queues may be device (uncached) mappings in a driver VM, where aarch64
    /// faults on vector accesses that are not 16-byte aligned.
    #[inline]
    pub(crate) fn read(&self) -> BuffDesc {
        #[cfg(not(loom))]
        // SAFETY: the cell is inside a live region and 8-aligned (the queue region is, and slots
        // are 16 bytes from offset 8); BuffDesc is two plain words, valid for any bits.
        return unsafe {
            let words = self.cell.get().cast::<u64>();
            let mut d = BuffDesc::default();
            let out = (&raw mut d).cast::<u64>();
            out.write(words.read_volatile());
            out.add(1).write(words.add(1).read_volatile());
            d
        };
        #[cfg(loom)]
        // SAFETY: loom checks the causality of this access.
        return self.cell.with(|p| unsafe { p.read() });
    }

    /// Writes the slot (producer only, before publishing `tail`), as two aligned 64-bit volatile
    /// stores (see [`Slot::read`]).
    #[inline]
    pub(crate) fn write(&self, d: BuffDesc) {
        #[cfg(not(loom))]
        // SAFETY: as for `read`; the consumer does not read this slot until `tail` is published.
        unsafe {
            let words = self.cell.get().cast::<u64>();
            let src = (&raw const d).cast::<u64>();
            words.write_volatile(src.read());
            words.add(1).write_volatile(src.add(1).read());
        };
        #[cfg(loom)]
        // SAFETY: loom checks the causality of this access.
        self.cell.with_mut(|p| unsafe { p.write(d) });
    }
}

/// Heap memory standing in for a shared region, for host tests and host mode.
#[cfg(any(test, feature = "std", loom))]
pub struct OwnedRegion {
    cells: std::boxed::Box<[UnsafeCell<u64>]>,
}

#[cfg(any(test, feature = "std", loom))]
impl OwnedRegion {
    /// `len` zeroed bytes (rounded up to 8), 8-aligned.
    pub fn new(len: usize) -> Self {
        OwnedRegion {
            cells: (0..len.div_ceil(8)).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// A view of the memory.
    pub fn region(&self) -> Region<'_> {
        Region::from_cells(&self.cells)
    }
}

/// Where a component finds the regions its config names by virtual address.
///
/// On seL4 and in host mode every region is mapped at the vaddr the system description gives, so
/// the lookup is the identity ([`IdentityMapped`]); tests map vaddrs to heap memory
/// (`OwnedSpace`, feature `std`).
pub trait AddressSpace<'a> {
    /// The region `vaddr..vaddr+size`, or `None` when it is not mapped here.
    fn region(&self, vaddr: u64, size: u64) -> Option<Region<'a>>;
}

/// The address space of a protection domain whose regions are mapped where its config says.
#[derive(Debug, Clone, Copy)]
pub struct IdentityMapped(());

impl IdentityMapped {
    /// # Safety
    ///
    /// Every `(vaddr, size)` later asked of [`AddressSpace::region`] must be mapped read-write (or
    /// read-only, if the caller only reads it) for the rest of the program, as Microkit and the
    /// host runner guarantee for the regions a PD's config section names, and must be accessed
    /// only through [`Region`]s.
    pub unsafe fn new() -> Self {
        IdentityMapped(())
    }
}

impl AddressSpace<'static> for IdentityMapped {
    fn region(&self, vaddr: u64, size: u64) -> Option<Region<'static>> {
        let base = NonNull::new(usize::try_from(vaddr).ok()? as *mut u8)?;
        // SAFETY: `IdentityMapped::new`'s caller guaranteed the mapping for the program's life.
        Some(unsafe { Region::new(base, usize::try_from(size).ok()?) })
    }
}

/// Heap regions standing at chosen virtual addresses, for tests of components that take their
/// regions from a config.
#[cfg(any(test, feature = "std", loom))]
#[derive(Default)]
pub struct OwnedSpace {
    regions: std::vec::Vec<(u64, OwnedRegion)>,
}

#[cfg(any(test, feature = "std", loom))]
impl OwnedSpace {
    /// An empty address space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `size` zeroed bytes at `vaddr` and returns it for chaining.
    pub fn add(&mut self, vaddr: u64, size: u64) -> &mut Self {
        self.regions.push((vaddr, OwnedRegion::new(size as usize)));
        self
    }
}

#[cfg(any(test, feature = "std", loom))]
impl<'a> AddressSpace<'a> for &'a OwnedSpace {
    fn region(&self, vaddr: u64, size: u64) -> Option<Region<'a>> {
        self.regions.iter().find_map(|(base, mem)| {
            let off = vaddr.checked_sub(*base)?;
            mem.region().slice(off as usize, size as usize).ok()
        })
    }
}
