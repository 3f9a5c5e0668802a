//! Batched datagram I/O with `recvmmsg(2)` and `sendmmsg(2)`, which neither std nor a small
//! safe wrapper offers without per-call allocation: the one module of this crate that opts back
//! into `unsafe`.
//!
//! Contract: a [`Batch`] owns every buffer and address the kernel writes into; the `mmsghdr` and
//! `iovec` arrays handed to the kernel are rebuilt on each call from those owned buffers and live
//! only for the duration of that call, so no pointer outlives or aliases the memory it names.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A set of datagram buffers (with optional peer addresses) for one batched call.
pub struct Batch {
    /// The datagram buffers; each has a fixed capacity.
    bufs: Vec<Box<[u8]>>,
    /// Bytes valid in each buffer: set by [`Batch::recv`], or by the caller before [`Batch::send`].
    lens: Vec<usize>,
    /// Whether the datagram received into each buffer was longer than the buffer.
    truncated: Vec<bool>,
    /// Peer addresses: filled by `recv`, used by `send` when sending to addresses.
    addrs: Vec<libc::sockaddr_storage>,
    /// Valid length of each entry of `addrs`.
    addr_lens: Vec<libc::socklen_t>,
}

impl Batch {
    /// A batch of `count` buffers of `capacity` bytes each.
    pub fn new(count: usize, capacity: usize) -> Batch {
        // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Batch {
            bufs: (0..count)
                .map(|_| vec![0u8; capacity].into_boxed_slice())
                .collect(),
            lens: vec![0; count],
            truncated: vec![false; count],
            addrs: vec![zero_addr; count],
            addr_lens: vec![0; count],
        }
    }

    /// Number of buffers.
    pub fn count(&self) -> usize {
        self.bufs.len()
    }

    /// The whole of buffer `i` (for filling before a send).
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Marks buffer `i` as holding `len` bytes to send (clamped to its capacity).
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(self.bufs[i].len());
    }

    /// The valid bytes of buffer `i`.
    pub fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// Whether datagram `i` of the last receive did not fit its buffer.
    pub fn truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    /// Builds the iovec array for the first `n` buffers, each covering `len_of(i)` bytes.
    fn iovecs(&mut self, n: usize, whole: bool) -> Vec<libc::iovec> {
        (0..n)
            .map(|i| libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: if whole {
                    self.bufs[i].len()
                } else {
                    self.lens[i]
                },
            })
            .collect()
    }

    /// Receives up to `count()` datagrams without blocking. Returns how many arrived (0 when
    /// none were waiting). Peer addresses are recorded for a later [`Batch::send`] with `to_peers`.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let n = self.bufs.len();
        let mut iovs = self.iovecs(n, true);
        let mut hdrs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: mmsghdr is plain old data; all-zero is a valid (empty) header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
                h.msg_hdr.msg_iov = &mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: `hdrs` has `n` entries, each pointing at one live iovec in `iovs` (which covers
        // exactly one owned buffer of `self.bufs`) and at one owned sockaddr_storage of the right
        // size; all of these outlive the call and nothing else references them meanwhile. A null
        // timeout is allowed; MSG_DONTWAIT makes the call non-blocking.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                // The flags are an int in glibc and an unsigned int in musl.
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // A connected UDP socket reports an ICMP port-unreachable here; nothing was
                // received, and the loss figures show the consequence.
                io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(e),
            };
        }
        let got = r as usize;
        for (i, h) in hdrs.iter().enumerate().take(got) {
            let len = h.msg_len as usize;
            self.truncated[i] = (h.msg_hdr.msg_flags & libc::MSG_TRUNC) != 0;
            self.lens[i] = len.min(self.bufs[i].len());
            self.addr_lens[i] = h.msg_hdr.msg_namelen;
        }
        Ok(got)
    }

    /// Sends buffers `from..to` (each `set_len`/received length) without blocking, to the
    /// connected peer or, with `to_peers`, back to the addresses of the last receive. Returns how
    /// many were sent (0 when the socket buffer is full).
    pub fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        from: usize,
        to: usize,
        to_peers: bool,
    ) -> io::Result<usize> {
        let to = to.min(self.bufs.len());
        if from >= to {
            return Ok(0);
        }
        let n = to - from;
        let mut iovs = self.iovecs(to, false);
        let mut hdrs: Vec<libc::mmsghdr> = (from..to)
            .map(|i| {
                // SAFETY: mmsghdr is plain old data; all-zero is a valid (empty) header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                if to_peers {
                    h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                    h.msg_hdr.msg_namelen = self.addr_lens[i];
                }
                h.msg_hdr.msg_iov = &mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: as in `recv`: every header points at one live iovec over `lens[i]` initialised
        // bytes of an owned buffer and, with `to_peers`, at an owned address whose length the
        // kernel itself reported; all outlive the call.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                // The flags are an int in glibc and an unsigned int in musl.
                libc::MSG_DONTWAIT as _,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // Connected UDP sockets report an earlier ICMP port-unreachable on the next
                // call; that datagram is lost, which the loss counters show, so carry on.
                io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }
}
