//! The system calls `/init` needs that std does not offer. Through `nix` where it has them:
//! mount, finit_module, the control socket, signalfd, poll, waitpid, kill, reboot, fcntl. What
//! `nix` lacks is written here: the interface ioctls (`struct ifreq` flags, IPv4 address,
//! ethtool). The only module of the crate with `unsafe`, and only in those ioctls.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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
    nix::mount::mount(
        Some(source),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )?;
    Ok(())
}

/// `finit_module(fd, params, 0)`: loads the module file open at `file`.
pub fn finit_module(file: &std::fs::File, params: &str) -> io::Result<()> {
    let params = cstr(params)?;
    nix::kmod::finit_module(file, &params, nix::kmod::ModuleInitFlags::empty())?;
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
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
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
pub const HANDLED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
];

/// Blocks [`HANDLED`] and returns a non-blocking signalfd for them.
pub fn signalfd() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in HANDLED {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

/// Reads one pending signal from a signalfd, `None` when none is pending.
pub fn read_signal(fd: &SignalFd) -> io::Result<Option<Signal>> {
    match fd.read_signal()? {
        // A number the kernel would not send: treated as a request to stop (as any other
        // handled signal but SIGCHLD is).
        Some(info) => Ok(Some(
            Signal::try_from(info.ssi_signo as i32).unwrap_or(Signal::SIGTERM),
        )),
        None => Ok(None),
    }
}

/// Polls `fds` for input for at most `timeout_ms` (-1: forever); returns which are readable.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    match nix::poll::poll(&mut p, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(vec![false; fds.len()]),
        Err(e) => return Err(e.into()),
    }
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    Ok(p.iter()
        .map(|x| x.revents().is_some_and(|r| r.intersects(ready)))
        .collect())
}

/// Reaps one exited child without blocking: its pid and how it ended.
pub fn reap() -> Option<(i32, WaitStatus)> {
    match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => status.pid().map(|pid| (pid.as_raw(), status)),
        Err(_) => None,
    }
}

/// Describes how a child ended.
pub fn describe_status(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("signal {}", *sig as i32),
        other => format!("status {other:?}"),
    }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: Signal) -> io::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(pid), sig)?;
    Ok(())
}

/// Flushes file systems and powers the machine off (PSCI SYSTEM_OFF on arm64).
pub fn power_off() -> io::Error {
    nix::unistd::sync();
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

/// Makes Ctrl-Alt-Del send SIGINT to init instead of rebooting at once.
pub fn ctrl_alt_del_signals_init() -> io::Result<()> {
    nix::sys::reboot::set_cad_enabled(false)?;
    Ok(())
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fd = fd.as_fd().as_raw_fd();
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
