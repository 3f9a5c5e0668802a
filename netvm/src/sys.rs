//! The one module that opts back into `unsafe`: the benchmark's clock, the pre-exec set-up of PD
//! processes (`prctl`, `sigprocmask` between fork and exec), and shared mappings of a running
//! system's region files for `netvm stats` ([`MappedFile`]). Batched datagram I/O
//! (`recvmmsg`/`sendmmsg`) lives with the kernel echo, in `kernel_echo::batch`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// CLOCK_MONOTONIC now, in nanoseconds: the clock benchmark timestamps are taken from.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always supported on Linux,
    // so the call cannot fail (and if it did, `ts` would stay zero, which is still a value).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (absolute, so pacing does not drift by
/// the time spent between deciding to sleep and sleeping). Returns early on a signal.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec with tv_nsec < 1e9; the remaining-time pointer may be
    // null with TIMER_ABSTIME. An EINTR return just ends the sleep early, which callers tolerate.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

/// Prepares `cmd` (a PD process) to die with the runner and to start with no blocked signals.
///
/// `PR_SET_PDEATHSIG` makes the kernel SIGKILL the PD when the thread that forked it exits
/// (the runner's supervisor thread lives as long as the system), so a runner killed outright
/// leaves no PDs behind; it survives the PD's own re-exec on restart. The signal mask is
/// cleared because a runner that blocks SIGINT/SIGTERM to `sigwait` for them would otherwise
/// pass that mask on through `exec`.
pub fn die_with_runner(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let runner = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: prctl, getppid, sigemptyset and sigprocmask are (no allocation, no
    // locks); it captures only a copied integer.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The runner may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != runner {
                return Err(std::io::Error::other("the runner exited during start-up"));
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// A region file of a running system, mapped shared so that an observer sees what the PDs
/// write. Only ever accessed through [`sddf::shm::Region`] (volatile and atomic accesses).
pub struct MappedFile {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl MappedFile {
    /// Maps the whole of `path` (which must not be empty).
    pub fn open(path: &std::path::Path) -> io::Result<MappedFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty file"));
        }
        // SAFETY: a fresh shared mapping of an open file at a kernel-chosen address; it aliases
        // no Rust object, and the mapping outlives the fd.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(MappedFile { ptr, len })
    }

    /// The mapping as shared memory.
    pub fn region(&self) -> sddf::shm::Region<'_> {
        // SAFETY: the mapping is readable and writable for `len` bytes until `self` drops, which
        // the borrow prevents; it is only accessed through `Region`. Other processes (the PDs)
        // write it concurrently, which `Region` allows.
        unsafe { sddf::shm::Region::new(self.ptr, self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no `Region` outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
