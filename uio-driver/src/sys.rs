//! The crate's one place that uses `unsafe`: memory mappings, packet sockets and signals.
//!
//! Everything else in the crate goes through the safe wrappers here. The wrappers take and
//! return plain Rust values; raw pointers never leave this module except inside
//! [`sddf::shm::Region`], whose own contract (bounds-checked volatile access) applies.
//!
//! Calls go through `nix` where it covers them (mmap, munmap, recv, eventfd, if_nametoindex,
//! sysconf, sigaction). `libc` remains, audited here, where nix 0.29 does not: an `AF_PACKET`
//! socket for an arbitrary EtherType (`SockProtocol` has no such value), untyped socket
//! options (the `PACKET_*` ring options, classic BPF), `sockaddr_ll` (no safe constructor of
//! nix's `LinkAddr`), the ethtool ioctl, `poll` over the callers' `pollfd` arrays, and
//! `sendmmsg` in the transmit hot path (nix's takes its headers in a `MultiHeaders` built per
//! batch and returns a collected `Vec` of results, an allocation per call), and the
//! `sched_setscheduler` system call (nix 0.29 has none; musl's wrapper is a stub).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{recv, MsgFlags};

use sddf::shm::Region;

/// A shared, read-write memory mapping of a file (a `/dev/uioN` map or a packet ring).
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only volatilely or through `Region`; moving the
// owner to another thread changes nothing about who else may access it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from `file_offset`, shared; read-write, or read-only when not
    /// `writable` (the caller then only reads the region: a store would fault).
    pub fn map(fd: RawFd, len: usize, file_offset: u64, writable: bool) -> io::Result<Mapping> {
        let size = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        let off = libc::off_t::try_from(file_offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        if fd < 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: `fd` is not -1 and the caller keeps it open for the duration of the call; a
        // fresh mapping at an address the kernel picks cannot alias any Rust object.
        let p = unsafe {
            mmap(
                None,
                size,
                prot,
                MapFlags::MAP_SHARED,
                BorrowedFd::borrow_raw(fd),
                off,
            )
        }?;
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// The whole mapping as shared memory.
    pub fn region(&self) -> Region<'_> {
        // SAFETY: the mapping is live and readable for as long as `self` is borrowed, and
        // writable unless it was mapped read-only, whose callers only read it (`Mapping::map`),
        // and this crate makes no plain Rust references into it except `bytes` below, whose
        // caller guarantees no one writes those bytes meanwhile.
        unsafe { Region::new(self.ptr, self.len) }
    }

    fn at<T>(&self, offset: usize) -> Option<*mut T> {
        let end = offset.checked_add(size_of::<T>())?;
        if end > self.len || !offset.is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: `offset + size_of::<T>() <= len`, so the pointer stays inside the mapping.
        Some(unsafe { self.ptr.as_ptr().add(offset) }.cast::<T>())
    }

    /// One naturally aligned 32-bit volatile store (a UIO doorbell: Device memory needs
    /// exactly one aligned access of a size the fault decoder understands). `false` if
    /// `offset` is unaligned or out of range.
    pub fn store_u32(&self, offset: usize, value: u32) -> bool {
        match self.at::<u32>(offset) {
            Some(p) => {
                // SAFETY: in bounds and aligned (checked by `at`); volatile because other
                // parties (the kernel, a VMM, a peer process) observe this memory.
                unsafe { p.write_volatile(value) };
                true
            }
            None => false,
        }
    }

    /// One aligned 32-bit volatile load, `None` if out of range or unaligned.
    pub fn load_u32(&self, offset: usize) -> Option<u32> {
        // SAFETY: in bounds and aligned; volatile because the kernel writes concurrently.
        self.at::<u32>(offset).map(|p| unsafe { p.read_volatile() })
    }

    /// One aligned 16-bit volatile load, `None` if out of range or unaligned.
    pub fn load_u16(&self, offset: usize) -> Option<u16> {
        // SAFETY: as for `load_u32`.
        self.at::<u16>(offset).map(|p| unsafe { p.read_volatile() })
    }

    /// Zeroes `len` bytes at `offset` (ordinary memory only). `false` if out of range.
    pub fn zero(&self, offset: usize, len: usize) -> bool {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: in bounds; the caller owns these bytes at this moment (a ring block
                // handed to user space), so no one else writes them concurrently.
                unsafe { self.ptr.as_ptr().add(offset).write_bytes(0, len) };
                true
            }
            _ => false,
        }
    }

    /// Borrows `len` bytes at `offset` as a slice. The caller must know that no one writes them
    /// while the slice lives (a completed frame in a packet ring: the kernel writes a frame's
    /// bytes before publishing its header and never again until the block is handed back).
    pub fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds, and by the caller's protocol nobody mutates the bytes while the
        // shared borrow of `self` (and thus of the slice) lasts.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and every Region or slice made from
        // this mapping borrows `self`, so none outlives it.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A nonblocking `AF_PACKET`/`SOCK_RAW` socket for EtherType `protocol` (0 = receive nothing).
pub fn packet_socket(protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the returned descriptor is checked and then owned.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &value)` for a plain-data option value.
pub fn setsockopt<T: Copy>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at `size_of::<T>()` readable bytes for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(fd, level, name)` for a plain-data option value of type `T`.
pub fn getsockopt<T: Copy + Default>(fd: RawFd, level: i32, name: i32) -> io::Result<T> {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is `len` writable bytes; the kernel writes at most `len`.
    check(unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut T).cast(), &mut len) })?;
    Ok(v)
}

/// A `sockaddr_ll` for interface `ifindex` and EtherType `protocol`.
pub fn sockaddr_ll(ifindex: u32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data for which all-zero bytes are valid.
    let mut a: libc::sockaddr_ll = unsafe { zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = protocol.to_be();
    a.sll_ifindex = ifindex as i32;
    a.sll_halen = 6;
    a
}

/// Binds a packet socket to one interface.
pub fn bind(fd: RawFd, addr: &libc::sockaddr_ll) -> io::Result<()> {
    // SAFETY: `addr` is a valid sockaddr_ll for the duration of the call.
    check(unsafe {
        libc::bind(
            fd,
            (addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The index of network interface `name`.
pub fn if_index(name: &str) -> io::Result<u32> {
    Ok(nix::net::if_::if_nametoindex(name)?)
}

/// `struct ethtool_value` (linux/ethtool.h).
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Runs the legacy ethtool "set" command `cmd` with `data` on interface `ifname`.
pub fn ethtool_set(fd: RawFd, ifname: &str, cmd: u32, data: u32) -> io::Result<()> {
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain data for which all-zero bytes are valid.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: `ifr` names the interface and points at `value`, which outlives the call;
    // SIOCETHTOOL reads and writes only the ethtool_value it points at.
    check(unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut ifr) }).map(drop)
}

/// Attaches the classic BPF program "accept the first `bytes` bytes of every packet".
pub fn attach_truncating_filter(fd: RawFd, bytes: u32) -> io::Result<()> {
    let mut insn = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: bytes,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: insn.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Receives and discards one datagram; `Ok(false)` when none is waiting.
pub fn recv_discard(fd: RawFd) -> io::Result<bool> {
    let mut b = [0u8; 1];
    // MSG_TRUNC makes the kernel drop the rest of the datagram.
    match recv(fd, &mut b, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends `frames` to `addr` with one `sendmmsg` (MSG_DONTWAIT). Returns how many were sent,
/// or the error that stopped the first one.
pub fn sendmmsg(fd: RawFd, frames: &[&[u8]], addr: &libc::sockaddr_ll) -> io::Result<usize> {
    let mut iov: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: msghdr is plain data for which all-zero bytes are valid.
            let mut h: libc::msghdr = unsafe { zeroed() };
            h.msg_name = (addr as *const libc::sockaddr_ll).cast_mut().cast();
            h.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            h.msg_iov = v;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: every header points at a live iovec, frame and address for the duration of the
    // call; the kernel only reads them (and writes msg_len).
    let n = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `poll(2)`; a signal yields `Ok(None)`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<Option<usize>> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for the duration.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(None)
    } else {
        Err(e)
    }
}

/// A nonblocking eventfd, as a `File` (8-byte reads and writes).
pub fn eventfd() -> io::Result<File> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
    Ok(File::from(OwnedFd::from(fd)))
}

/// The system page size.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

/// Set by SIGUSR1 (print counters).
pub static SIGUSR1_SEEN: AtomicBool = AtomicBool::new(false);
/// Set by SIGTERM or SIGINT (print counters and exit).
pub static STOP_SEEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: set a flag, the event loop does the rest.
    if sig == libc::SIGUSR1 {
        SIGUSR1_SEEN.store(true, Ordering::Relaxed);
    } else {
        STOP_SEEN.store(true, Ordering::Relaxed);
    }
}

/// Routes SIGUSR1, SIGTERM and SIGINT to [`SIGUSR1_SEEN`] / [`STOP_SEEN`], without
/// `SA_RESTART`, so a blocking `poll` returns and the loop sees the flag at once.
pub fn install_signal_flags() -> io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Makes the calling thread `SCHED_FIFO` at `priority` (nix 0.29 has no `sched_setscheduler`).
pub fn set_fifo(priority: i32) -> io::Result<()> {
    // SAFETY: sched_param is plain integers (musl adds SCHED_SPORADIC fields), all-zero valid.
    let mut param: libc::sched_param = unsafe { zeroed() };
    param.sched_priority = priority;
    // musl's sched_setscheduler() is a stub that fails with ENOSYS (POSIX's per-process meaning
    // is not Linux's per-thread one), so the system call is made directly.
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_FIFO,
            &param as *const libc::sched_param,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
