//! Data cache maintenance for buffers shared with DMA devices (sDDF `util/cache.c`).
//!
//! On aarch64 seL4 (user cache maintenance enabled, 64-byte lines on cortex-a53) these are
//! `dc cvac` / `dc civac` over the lines of the range followed by a barrier, exactly where sDDF
//! does them: virt_rx cleans and invalidates each received buffer before reading it, virt_tx
//! cleans each buffer before handing it to the driver. Elsewhere (host mode, or a driver VM whose
//! DMA is coherent) they are compiler fences only.
#![allow(unsafe_code)]

use crate::shm::Region;

/// Cache line size the maintenance loops step by.
pub const LINE: usize = 64;

/// Writes dirty lines of `region[offset..offset+len]` back to memory (`dc cvac`, `dmb sy`).
pub fn clean(region: &Region<'_>, offset: usize, len: usize) {
    maintain::<false>(region, offset, len)
}

/// Writes back and discards lines of `region[offset..offset+len]` (`dc civac`, `dsb sy`), so
/// the CPU then reads what a device wrote.
pub fn clean_and_invalidate(region: &Region<'_>, offset: usize, len: usize) {
    maintain::<true>(region, offset, len)
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
fn maintain<const INVALIDATE: bool>(region: &Region<'_>, offset: usize, len: usize) {
    let Some(end) = offset.checked_add(len).filter(|e| *e <= region.len()) else {
        return;
    };
    let start = (region.base_addr() + offset) & !(LINE - 1);
    let end = region.base_addr() + end;
    let mut line = start;
    while line < end {
        // SAFETY: cache maintenance by VA on lines of a mapped region the caller owns a view of;
        // it changes no architectural memory contents (clean) or only discards stale lines that
        // a device has overwritten (civac after clean), as sDDF does on the same buffers.
        unsafe {
            if INVALIDATE {
                core::arch::asm!("dc civac, {0}", in(reg) line, options(nostack, preserves_flags));
            } else {
                core::arch::asm!("dc cvac, {0}", in(reg) line, options(nostack, preserves_flags));
            }
        }
        line += LINE;
    }
    // SAFETY: barriers only order memory accesses.
    unsafe {
        if INVALIDATE {
            core::arch::asm!("dsb sy", options(nostack, preserves_flags));
        } else {
            core::arch::asm!("dmb sy", options(nostack, preserves_flags));
        }
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn maintain<const INVALIDATE: bool>(_region: &Region<'_>, _offset: usize, _len: usize) {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}
