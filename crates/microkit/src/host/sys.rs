//! Linux system interface of the host backend: shared mappings, futexes, signals, re-exec and
//! writes into the PD's own image. The host backend's only `unsafe` lives here.
//!
//! Calls go through `nix` where it has them (mmap, munmap, kill, sched_yield, write,
//! sigprocmask, sigaction). `libc` remains, audited here, for what nix 0.29 lacks or cannot do
//! in a signal handler: futex, sigaltstack, `_exit`, and `execve` from a handler (nix's
//! `execve` builds its pointer arrays on the heap at each call).
#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;
use std::vec::Vec;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use super::control::{Header, PdRecord, RECORD_SIZE};
use super::manifest::Perms;

/// Types that may be viewed in shared memory another process writes concurrently.
///
/// # Safety
/// Implementors consist of atomics only (every bit pattern valid, all access synchronised) and
/// fit in `RECORD_SIZE` bytes with an alignment dividing it.
pub(crate) unsafe trait Slot {}
// SAFETY: two AtomicU64, 16 bytes.
unsafe impl Slot for Header {}
// SAFETY: atomics only; size and alignment are RECORD_SIZE (asserted in control.rs).
unsafe impl Slot for PdRecord {}

/// A `MAP_SHARED` read-write mapping of a whole file, at an address the kernel picks.
pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only accessed through `Slot` types (atomics), so sharing the handle
// between threads is as safe as sharing the atomics.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Creates or truncates `path` to `len` zero bytes and maps it.
    pub(crate) fn create(path: &Path, len: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len as u64)?;
        Self::map(&file, len)
    }

    /// Maps the whole of an existing file.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        Self::map(&file, len)
    }

    fn map(file: &File, len: usize) -> io::Result<Self> {
        let size = NonZeroUsize::new(len).ok_or(io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: a fresh shared mapping of an open file at a kernel-chosen address; it aliases
        // no Rust object. The fd may be closed afterwards; the mapping stays valid.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file,
                0,
            )
        }?;
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slot `index` (`RECORD_SIZE` bytes each) viewed as `T`.
    pub(crate) fn slot<T: Slot>(&self, index: usize) -> Option<&T> {
        let end = index.checked_add(1)?.checked_mul(RECORD_SIZE)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above); page-aligned base plus a multiple of RECORD_SIZE
        // satisfies T's alignment; T is all atomics (`Slot`), valid for any contents and safe to
        // share with other processes; the reference cannot outlive the mapping (borrow of self).
        Some(unsafe { &*self.ptr.as_ptr().add(index * RECORD_SIZE).cast::<T>() })
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `map`; no references outlive `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Maps `size` bytes of `path` at exactly `vaddr` with `perms`, never replacing an existing
/// mapping. The mapping lives as long as the process.
pub(crate) fn map_fixed(path: &Path, vaddr: u64, size: u64, perms: Perms) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(perms.write)
        .open(path)?;
    if file.metadata()?.len() < size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "backing file is smaller than the region",
        ));
    }
    let len = usize::try_from(size)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or(io::Error::from(io::ErrorKind::InvalidInput))?;
    let addr = usize::try_from(vaddr)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or(io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut prot = ProtFlags::empty();
    for (on, bit) in [
        (perms.read, ProtFlags::PROT_READ),
        (perms.write, ProtFlags::PROT_WRITE),
        (perms.execute, ProtFlags::PROT_EXEC),
    ] {
        if on {
            prot |= bit;
        }
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no Rust object can be
    // aliased or unmapped; the kernel fails with EEXIST instead.
    let got = unsafe {
        mmap(
            Some(addr),
            len,
            prot,
            MapFlags::MAP_SHARED | MapFlags::MAP_FIXED_NOREPLACE,
            &file,
            0,
        )
    }?;
    if got.as_ptr() as u64 != vaddr {
        // Kernels before 4.17 treat the flag as a hint; undo and fail rather than map elsewhere.
        // SAFETY: unmaps the mapping just created, which nothing references.
        let _ = unsafe { munmap(got, len.get()) };
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "kernel ignored MAP_FIXED_NOREPLACE",
        ));
    }
    Ok(())
}

// futex(2) has no wrapper in nix 0.29 (nor in std): raw syscalls.

/// `FUTEX_WAIT` (shared, not private: the words live in a file shared between processes) while
/// `word == expected`. Returns on wake-up, value mismatch or signal; callers re-check.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; no timeout pointer.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// `FUTEX_WAKE` up to `count` waiters of `word`.
pub(crate) fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads its address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
}

/// `sched_yield(2)`: lets another runnable task on this CPU run first, if there is one;
/// returns at once otherwise.
pub(crate) fn yield_now() {
    // It cannot fail on Linux.
    let _ = nix::sched::sched_yield();
}

pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Sends `signal` to process `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    let pid = libc::pid_t::try_from(pid).map_err(|_| invalid())?;
    // A positive pid only: never a process group, never every process.
    if pid <= 0 {
        return Err(invalid());
    }
    let signal = Signal::try_from(signal).map_err(|_| invalid())?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
    Ok(())
}

/// Writes to stderr without allocating or locking (usable in a signal handler).
pub(crate) fn write_stderr(bytes: &[u8]) {
    // `Stderr::as_fd` takes no lock; short writes are acceptable for diagnostics.
    let _ = nix::unistd::write(io::stderr().as_fd(), bytes);
}

/// `_exit(2)`: ends the process at once (async-signal-safe).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// What a fault signal tells about the fault.
pub(crate) struct FaultSignal {
    pub(crate) signo: i32,
    pub(crate) code: i32,
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) addr: u64,
}

/// Signals that mean the PD faulted.
pub(crate) const FAULT_SIGNALS: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];
/// Signal a parent sends a running child to make it restart.
pub(crate) const RESTART_SIGNAL: i32 = libc::SIGUSR1;

extern "C" fn fault_trampoline(signo: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO handler.
    let (code, addr, ip, sp) = unsafe {
        let uc = &*ctx.cast::<libc::ucontext_t>();
        let (ip, sp) = context_ip_sp(uc);
        ((*info).si_code, (*info).si_addr() as u64, ip, sp)
    };
    super::on_fault_signal(FaultSignal {
        signo,
        code,
        ip,
        sp,
        addr,
    });
}

#[cfg(target_arch = "x86_64")]
fn context_ip_sp(uc: &libc::ucontext_t) -> (u64, u64) {
    let regs = &uc.uc_mcontext.gregs;
    (
        regs[libc::REG_RIP as usize] as u64,
        regs[libc::REG_RSP as usize] as u64,
    )
}

#[cfg(target_arch = "aarch64")]
fn context_ip_sp(uc: &libc::ucontext_t) -> (u64, u64) {
    (uc.uc_mcontext.pc, uc.uc_mcontext.sp)
}

extern "C" fn restart_trampoline(_signo: i32) {
    super::on_restart_signal();
}

/// Unblocks every signal (a restarted PD inherits the mask of the handler it exec'd from),
/// installs an alternate signal stack (so stack overflows are reported too), and the handlers.
pub(crate) fn install_signal_handlers() -> io::Result<()> {
    const ALT_STACK: usize = 64 * 1024;
    let stack: &'static mut [u8] = Vec::leak(std::vec![0u8; ALT_STACK]);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: ALT_STACK,
    };
    // SAFETY: `ss` describes a valid stack that is leaked, so it lives as long as the process.
    // (nix 0.29 has no sigaltstack.)
    if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let fault = SigAction::new(
        SigHandler::SigAction(fault_trampoline),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
        SigSet::empty(),
    );
    let restart = SigAction::new(
        SigHandler::Handler(restart_trampoline),
        SaFlags::SA_ONSTACK,
        SigSet::empty(),
    );
    let handlers = FAULT_SIGNALS
        .map(|signo| (signo, &fault))
        .into_iter()
        .chain([(RESTART_SIGNAL, &restart)]);
    for (signo, action) in handlers {
        let signal = Signal::try_from(signo)?;
        // SAFETY: the handlers only do async-signal-safe work (record the fault in shared
        // atomics, write(2), execve(2), _exit(2)) on the alternate stack installed above.
        unsafe { sigaction(signal, action) }?;
    }
    Ok(())
}

/// argv and envp for re-executing this PD, built before any fault (no allocation in handlers).
struct ExecArgs {
    _strings: Vec<CString>,
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into `_strings`, which is owned and never mutated after creation.
unsafe impl Send for ExecArgs {}
// SAFETY: as above; only read.
unsafe impl Sync for ExecArgs {}

static EXEC_ARGS: OnceLock<ExecArgs> = OnceLock::new();

/// Records this process's arguments and environment for [`exec_self`].
pub(crate) fn prepare_exec() {
    let to_c = |s: OsString| CString::new(s.into_vec()).ok();
    let args: Vec<CString> = std::env::args_os().filter_map(to_c).collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect();
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let argv = ptrs(&args);
    let envp = ptrs(&env);
    let strings = args.into_iter().chain(env).collect();
    let path = CString::new("/proc/self/exe").expect("no NUL in literal");
    let _ = EXEC_ARGS.set(ExecArgs {
        _strings: strings,
        path,
        argv,
        envp,
    });
}

/// Re-executes this PD's image with its original arguments and environment (the host form of a
/// restart). Async-signal-safe (hence raw execve: nix's allocates). Exits with status 2 if the
/// exec fails.
pub(crate) fn exec_self() -> ! {
    if let Some(args) = EXEC_ARGS.get() {
        // SAFETY: NUL-terminated arrays of pointers to live C strings, prepared in `prepare_exec`.
        unsafe { libc::execve(args.path.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr()) };
    }
    write_stderr(b"microkit: restart: cannot re-execute /proc/self/exe\n");
    exit_now(2)
}

/// Anchor whose link-time address (from `.symtab`) and run-time address give the load bias of a
/// position-independent executable.
#[no_mangle]
#[used]
static __microkit_host_anchor: u8 = 0;

/// Run-time address of the anchor.
pub(crate) fn anchor_address() -> u64 {
    std::ptr::addr_of!(__microkit_host_anchor) as u64
}

/// Copies `bytes` to run-time address `addr` of this executable's image.
///
/// # Safety
/// `addr..addr + bytes.len()` must be a writable part of this executable's loaded image that
/// holds only setvar or config-section statics (interior-mutable, read volatilely), and no other
/// thread may run.
pub(crate) unsafe fn write_image(addr: u64, bytes: &[u8]) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
}
