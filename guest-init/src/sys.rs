//! The system calls `/init` needs that std does not offer: mount, finit_module, interface
//! ioctls, signalfd, poll, waitpid, kill, reboot. The only module of the crate with `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `mount(source, target, fstype, 0, NULL)`.
pub fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    let (s, t, f) = (cstr(source)?, cstr(target)?, cstr(fstype)?);
    // SAFETY: three valid NUL-terminated strings that outlive the call; flags 0 and a null data
    // pointer are valid arguments.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) })?;
    Ok(())
}

/// `finit_module(fd, params, 0)`: loads the module file open at `file`.
pub fn finit_module(file: &std::fs::File, params: &str) -> io::Result<()> {
    let p = cstr(params)?;
    // SAFETY: SYS_finit_module takes an open fd, a NUL-terminated parameter string (valid for
    // the call) and flags; the kernel copies the string and reads the file through the fd.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), p.as_ptr(), 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct ifreq` with the `ifr_flags` member.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `struct ifreq` with the `ifr_data` member.
#[repr(C)]
struct IfReqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// `struct ifreq` with the `ifr_addr` member holding an IPv4 `struct sockaddr_in`.
#[repr(C)]
struct IfReqAddr {
    name: [u8; libc::IFNAMSIZ],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

const _: () = assert!(std::mem::size_of::<IfReqFlags>() == 40);
const _: () = assert!(std::mem::size_of::<IfReqAddr>() == 40);
const _: () = assert!(std::mem::size_of::<IfReqData>() == 40);

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ifname(name: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let mut out = [0u8; libc::IFNAMSIZ];
    if name.is_empty() || name.len() >= out.len() || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

/// A datagram socket to issue interface ioctls on.
pub fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned fd is checked and owned below.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a freshly opened descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets `IFF_UP` on `iface`.
pub fn set_up(sock: &OwnedFd, iface: &str) -> io::Result<()> {
    add_flags(sock, iface, libc::IFF_UP as libc::c_short)
}

/// Sets `IFF_NOARP` on `iface`: the kernel neither answers nor sends ARP on it.
pub fn set_noarp(sock: &OwnedFd, iface: &str) -> io::Result<()> {
    add_flags(sock, iface, libc::IFF_NOARP as libc::c_short)
}

/// Adds `flags` to `iface`'s interface flags.
fn add_flags(sock: &OwnedFd, iface: &str, flags: libc::c_short) -> io::Result<()> {
    let mut req = IfReqFlags {
        name: ifname(iface)?,
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifr_flags of a 40-byte struct ifreq,
    // which `req` is (size asserted above) and which lives across the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) })?;
    req.flags |= flags;
    // SAFETY: as above; SIOCSIFFLAGS only reads the struct.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut req) })?;
    Ok(())
}

/// Gives `iface` the IPv4 address `addr` with netmask `mask` (SIOCSIFADDR, SIOCSIFNETMASK;
/// the kernel adds the subnet's route).
pub fn set_ipv4(
    sock: &OwnedFd,
    iface: &str,
    addr: std::net::Ipv4Addr,
    mask: std::net::Ipv4Addr,
) -> io::Result<()> {
    for (cmd, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
        let mut req = IfReqAddr {
            name: ifname(iface)?,
            addr: libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(value).to_be(),
                },
                sin_zero: [0; 8],
            },
            _pad: [0; 8],
        };
        // SAFETY: SIOCSIFADDR / SIOCSIFNETMASK read the name and ifr_addr of a 40-byte struct
        // ifreq, which `req` is (size asserted above) and which lives across the call.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), cmd as _, &mut req) })?;
    }
    Ok(())
}

/// A legacy ethtool "set" command (`ETHTOOL_S*`) with value `data` on `iface`.
pub fn ethtool_set(sock: &OwnedFd, iface: &str, cmd: u32, data: u32) -> io::Result<()> {
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfReqData {
        name: ifname(iface)?,
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    // SAFETY: SIOCETHTOOL reads the name and the ifr_data pointer, which points at `value`, a
    // struct ethtool_value that lives across the call; both structs have the kernel's layout.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) })?;
    Ok(())
}

/// Signals `/init` handles through a signalfd (blocked for normal delivery). Children spawned
/// with `std::process::Command` start with an empty signal mask, so they are unaffected.
pub const HANDLED: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR];

/// Blocks [`HANDLED`] and returns a non-blocking signalfd for them.
pub fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: -1 asks for a new fd; `set` is initialised; the result is checked and owned.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: `fd` is a freshly opened descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal number from a signalfd, `None` when none is pending.
pub fn read_signal(fd: &OwnedFd) -> io::Result<Option<u32>> {
    // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is writable for `size` bytes and outlives the call.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok((n as usize == size).then_some(info.ssi_signo))
}

/// Polls `fds` for input for at most `timeout_ms` (-1: forever); returns which are readable.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds that outlives the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(vec![false; fds.len()])
        } else {
            Err(e)
        };
    }
    Ok(p.iter()
        .map(|x| x.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}

/// Reaps one exited child without blocking: `(pid, raw wait status)`.
pub fn reap() -> Option<(i32, i32)> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Describes a raw wait status.
pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// Flushes file systems and powers the machine off (PSCI SYSTEM_OFF on arm64).
pub fn power_off() -> io::Error {
    // SAFETY: sync(2) and reboot(2) have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    io::Error::last_os_error()
}

/// Makes Ctrl-Alt-Del send SIGINT to init instead of rebooting at once.
pub fn ctrl_alt_del_signals_init() -> io::Result<()> {
    // SAFETY: reboot(2) with RB_DISABLE_CAD only changes a kernel flag.
    check(unsafe { libc::reboot(libc::RB_DISABLE_CAD) })?;
    Ok(())
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) on an fd number: at worst EBADF, which is reported.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}
