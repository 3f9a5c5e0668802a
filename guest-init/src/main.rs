//! The driver VM's `/init` (PID 1), a static aarch64 musl binary.
//!
//! 1. mounts proc, sysfs and devtmpfs;
//! 2. loads `/lib/modules/<name>.ko` in the order of `/lib/modules/order` with `finit_module`,
//!    passing `<module>.<param>=` words from the kernel command line (the kernel applies those
//!    only to built-in code);
//! 3. logs every UIO device it finds (`init: uioN name=… map0=addr+size`);
//! 4. turns the NIC's offloads off (the uio-driver must see frames as they are on the wire, not
//!    GRO-merged or awaiting checksum), takes the guest's own IP presence off it (no ARP, no
//!    IPv6, no address) and brings it up;
//! 5. runs `/bin/uio-driver --iface <if>`, restarting it with exponential backoff when it dies;
//!    in the reference mode (`netvm.mode=echo netvm.ip=<a.b.c.d/p>`, see `cmdline`) instead
//!    gives the NIC that address, leaves its offloads as Linux sets them, and runs
//!    `/bin/kernel-echo` on it the same way; in the reflect mode (`netvm.mode=reflect`) sets
//!    the NIC up as for the driver and runs `/bin/uio-driver --reflect <a.b.c.d>`, the packet
//!    path answering for that address itself;
//! 6. powers off cleanly on SIGTERM, SIGINT (Ctrl-Alt-Del), SIGPWR, or a line `netvm.poweroff`
//!    on the console — and also after a fatal setup error, since PID 1 must not exit;
//! 7. in a debug image only (`netvm.debug` on the kernel command line, which the image build
//!    adds for debug configurations), a console line `netvm.crash` panics the kernel through
//!    `/proc/sysrq-trigger`; with `panic=-1` the kernel then asks the VMM for a reset, and the
//!    VMM boots it again (the restart tests use this); `netvm.hang` panics it with the panic
//!    timeout set to 0, so that it spins with interrupts masked instead of rebooting (the VMM's
//!    watchdog must notice). A release image ignores both lines.
#![deny(unsafe_code)]

mod cmdline;
mod sys;

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cmdline::{Mode, Options};
use nix::sys::signal::Signal;

/// What a console line must say to power the guest off.
const POWEROFF_COMMAND: &str = "netvm.poweroff";
/// What a console line must say to crash the kernel (debug images only).
const CRASH_COMMAND: &str = "netvm.crash";
/// What a console line must say to hang the kernel (debug images only).
const HANG_COMMAND: &str = "netvm.hang";

/// What a console line asks of `/init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConsoleCommand {
    PowerOff,
    Crash,
    Hang,
    /// `netvm.crash` or `netvm.hang` in an image without `netvm.debug`.
    Refused,
}

fn console_command(line: &[u8], debug: bool) -> Option<ConsoleCommand> {
    match String::from_utf8_lossy(line).trim() {
        POWEROFF_COMMAND => Some(ConsoleCommand::PowerOff),
        CRASH_COMMAND if debug => Some(ConsoleCommand::Crash),
        HANG_COMMAND if debug => Some(ConsoleCommand::Hang),
        CRASH_COMMAND | HANG_COMMAND => Some(ConsoleCommand::Refused),
        _ => None,
    }
}
/// Where the builder puts things in the initramfs (see guest's `initramfs` module).
const MODULE_DIR: &str = "/lib/modules";
const MODULE_ORDER: &str = "/lib/modules/order";
const UIO_DRIVER: &str = "/bin/uio-driver";
const KERNEL_ECHO: &str = "/bin/kernel-echo";
/// The ipbench utilisation daemon's port (sDDF's `echo.h`), served by the kernel echo.
const UTIL_PORT: &str = "1237";
/// How long to wait for the NIC's interface to appear after virtio_net loaded.
const IFACE_WAIT: Duration = Duration::from_secs(5);
/// Restart backoff: first delay, cap, and how long a run must last to reset the delay.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How long the driver gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Legacy ethtool set commands (linux/ethtool.h), in an order that respects their
/// dependencies (segmentation offloads before scatter-gather and checksumming).
const OFFLOADS: [(&str, u32); 6] = [
    ("tso", 0x1f),
    ("gso", 0x24),
    ("gro", 0x2c),
    ("sg", 0x19),
    ("tx-checksum", 0x17),
    ("rx-checksum", 0x15),
];

fn uptime() -> String {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn log(msg: impl AsRef<str>) {
    // One write per line, so lines from the driver on the same console do not interleave.
    let line = format!("init [{}]: {}\n", uptime(), msg.as_ref());
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Panics the kernel (`/proc/sysrq-trigger`); returns only if that failed.
fn crash_kernel() {
    if let Err(e) = fs::write("/proc/sysrq-trigger", b"c") {
        log(format!("/proc/sysrq-trigger: {e}"));
    }
}

fn main() {
    if let Err(e) = setup_and_supervise() {
        log(format!("fatal: {e}; powering off"));
    }
    let e = sys::power_off();
    log(format!("power off failed: {e}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn mount_all() -> io::Result<()> {
    for (src, dir, fs_type) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        fs::create_dir_all(dir)?;
        sys::mount(src, dir, fs_type)
            .map_err(|e| io::Error::new(e.kind(), format!("mount {fs_type} on {dir}: {e}")))?;
    }
    Ok(())
}

fn load_modules(opts: &Options) -> io::Result<()> {
    let order = fs::read_to_string(MODULE_ORDER)
        .map_err(|e| io::Error::new(e.kind(), format!("{MODULE_ORDER}: {e}")))?;
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = format!("{MODULE_DIR}/{name}.ko");
        let file =
            fs::File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        let params = opts.module_params(name);
        match sys::finit_module(&file, &params) {
            Ok(()) => log(format!("loaded {name} {params}")),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                log(format!("{name} already loaded"))
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("loading {path} ({params}): {e}"),
                ))
            }
        }
    }
    Ok(())
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Logs `uioN name=<name> map0=<addr>+<size>` (or `irq-only`) for every UIO device.
fn log_uio_devices() {
    let mut devs: Vec<(u32, std::path::PathBuf)> = fs::read_dir("/sys/class/uio")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e
                        .file_name()
                        .to_string_lossy()
                        .strip_prefix("uio")?
                        .parse()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    devs.sort();
    for (n, dir) in &devs {
        let name = read_trim(&dir.join("name")).unwrap_or_else(|| "?".into());
        let map = match (
            read_trim(&dir.join("maps/map0/addr")),
            read_trim(&dir.join("maps/map0/size")),
        ) {
            (Some(a), Some(s)) => format!("map0={a}+{s}"),
            _ => "irq-only".into(),
        };
        log(format!("uio{n} name={name} {map}"));
    }
    log(format!("{} UIO devices", devs.len()));
}

/// Brings `iface` up, with its offloads off if `offloads_off`.
fn bring_up_nic(iface: &str, offloads_off: bool) -> io::Result<()> {
    let dir = Path::new("/sys/class/net").join(iface);
    let start = Instant::now();
    while !dir.exists() {
        if start.elapsed() > IFACE_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {iface} after {IFACE_WAIT:?} (is the virtio-mmio NIC in the device tree?)"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = sys::control_socket()?;
    let mut report = Vec::new();
    for (name, cmd) in OFFLOADS.into_iter().filter(|_| offloads_off) {
        match sys::ethtool_set(&sock, iface, cmd, 0) {
            Ok(()) => report.push(format!("{name} off")),
            // The device does not offer it (e.g. no checksum offload without a vnet header):
            // it is off already.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                report.push(format!("{name} not offered"))
            }
            Err(e) => report.push(format!("{name} unchanged ({e})")),
        }
    }
    if offloads_off {
        // The driver VM (not the reference mode, which is a host on the link on purpose).
        log(format!("{iface}: {}", report.join(", ")));
        silence(&sock, iface)?;
    }
    sys::set_up(&sock, iface).map_err(|e| io::Error::new(e.kind(), format!("{iface} up: {e}")))?;
    log(format!("{iface} up"));
    Ok(())
}

/// Takes the guest's own IP presence off the NIC before it comes up: the NIC carries the
/// clients' frames only, so the driver VM must not be a host on that link. No IPv4 address is
/// ever configured; `IFF_NOARP` stops ARP; IPv6 is off on the interface (no link-local address,
/// DAD, MLD reports, router solicitations or ND answers) unless the kernel has no IPv6 at all
/// (`ipv6.disable=1`, which the seL4 system's command line carries). The seL4 system test
/// captures every frame leaving the NIC and checks that none is the guest's own.
fn silence(sock: &std::os::fd::OwnedFd, iface: &str) -> io::Result<()> {
    sys::set_noarp(sock, iface)
        .map_err(|e| io::Error::new(e.kind(), format!("{iface} noarp: {e}")))?;
    let ipv6 = Path::new("/proc/sys/net/ipv6/conf");
    if ipv6.exists() {
        for conf in [iface, "default"] {
            let knob = ipv6.join(conf).join("disable_ipv6");
            fs::write(&knob, "1")
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", knob.display())))?;
        }
        log(format!("{iface}: no ARP, IPv6 off on the interface"));
    } else {
        log(format!("{iface}: no ARP, no IPv6 in the kernel"));
    }
    Ok(())
}

/// The supervised program: the uio-driver, or the kernel echo in the reference mode.
struct Service {
    path: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

impl Service {
    fn start(&mut self) {
        let path = self.path;
        self.restart_at = None;
        match Command::new(path).args(&self.args).spawn() {
            Ok(c) => {
                log(format!(
                    "started {path} {} (pid {})",
                    self.args.join(" "),
                    c.id()
                ));
                self.child = Some(c);
                self.started = Instant::now();
            }
            Err(e) => {
                log(format!("cannot start {path}: {e}"));
                self.schedule_restart();
            }
        }
    }

    fn schedule_restart(&mut self) {
        let path = self.path;
        if self.started.elapsed() >= HEALTHY_RUN {
            self.backoff = BACKOFF_FIRST;
        }
        log(format!(
            "restarting {path} in {} ms",
            self.backoff.as_millis()
        ));
        self.restart_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// A child exited: if it was this service, log and schedule its restart.
    fn reaped(&mut self, pid: i32, status: nix::sys::wait::WaitStatus) {
        let path = self.path;
        if self.pid() == Some(pid) {
            self.child = None;
            log(format!(
                "{path} exited ({}) after {:.1} s",
                sys::describe_status(&status),
                self.started.elapsed().as_secs_f64()
            ));
            self.schedule_restart();
        }
    }

    /// SIGTERM, then SIGKILL after the grace period.
    fn stop(&mut self) {
        let path = self.path;
        let Some(pid) = self.pid() else { return };
        let _ = sys::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some((p, status)) = sys::reap() {
                if p == pid {
                    log(format!(
                        "{path} stopped ({})",
                        sys::describe_status(&status)
                    ));
                    self.child = None;
                    return;
                }
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = sys::kill(pid, Signal::SIGKILL);
        log(format!("{path} killed after {STOP_GRACE:?}"));
        self.child = None;
    }
}

/// Starts the service the command line's mode asks for: the uio-driver on the NIC, (the
/// reference) the kernel echo on an addressed NIC, or the uio-driver's reflector.
fn start_service(opts: &Options) -> io::Result<Service> {
    let mode = opts
        .mode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    load_modules(opts)?;
    let (path, args) = match mode {
        Mode::Driver => {
            log_uio_devices();
            bring_up_nic(&opts.iface, true)?;
            let mut args = vec!["--iface".to_string(), opts.iface.clone()];
            args.extend(opts.driver_args.iter().cloned());
            (UIO_DRIVER, args)
        }
        Mode::Echo { addr, mask } => {
            bring_up_nic(&opts.iface, false)?;
            sys::set_ipv4(&sys::control_socket()?, &opts.iface, addr, mask).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{} address {addr}/{mask}: {e}", opts.iface),
                )
            })?;
            log(format!("reference mode: {} is {addr}/{mask}", opts.iface));
            let args = ["--bind", &addr.to_string(), "--util-port", UTIL_PORT];
            (KERNEL_ECHO, args.map(String::from).to_vec())
        }
        Mode::Reflect { addr } => {
            bring_up_nic(&opts.iface, true)?;
            let mut args = vec![
                "--iface".to_string(),
                opts.iface.clone(),
                "--reflect".to_string(),
                addr.to_string(),
            ];
            args.extend(opts.driver_args.iter().cloned());
            (UIO_DRIVER, args)
        }
    };
    let mut service = Service {
        path,
        args,
        child: None,
        started: Instant::now(),
        backoff: BACKOFF_FIRST,
        restart_at: None,
    };
    service.start();
    Ok(service)
}

/// Acts on one console line; true when it asks for power-off.
fn on_console_line(line: &[u8], debug: bool) -> bool {
    match console_command(line, debug) {
        Some(ConsoleCommand::PowerOff) => {
            log(format!(
                "{POWEROFF_COMMAND} requested on the console: powering off"
            ));
            return true;
        }
        Some(ConsoleCommand::Crash) => {
            log(format!(
                "{CRASH_COMMAND} requested on the console: panicking the kernel"
            ));
            crash_kernel();
        }
        Some(ConsoleCommand::Hang) => {
            log(format!(
                "{HANG_COMMAND} requested on the console: panicking the kernel with no reboot"
            ));
            match fs::write("/proc/sys/kernel/panic", b"0") {
                Ok(()) => crash_kernel(),
                Err(e) => log(format!("{HANG_COMMAND}: /proc/sys/kernel/panic: {e}")),
            }
        }
        Some(ConsoleCommand::Refused) => log(
            "netvm.crash / netvm.hang ignored: not a debug image (no netvm.debug on the kernel command line)",
        ),
        None => {}
    }
    false
}

fn setup_and_supervise() -> io::Result<()> {
    let signals = sys::signalfd()?;
    mount_all()?;
    log("started");
    if let Err(e) = sys::ctrl_alt_del_signals_init() {
        log(format!("cannot route Ctrl-Alt-Del to init: {e}"));
    }
    let opts = Options::parse(&fs::read_to_string("/proc/cmdline")?);
    let mut driver = start_service(&opts)?;

    let console = io::stdin();
    let mut console_ok = sys::set_nonblocking(console.as_fd()).is_ok();
    let mut line = Vec::new();
    loop {
        let timeout = driver
            .restart_at
            .map(|t| {
                t.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            })
            .unwrap_or(-1);
        let mut fds = vec![signals.as_fd()];
        if console_ok {
            fds.push(console.as_fd());
        }
        let ready = sys::poll_readable(&fds, timeout)?;
        if ready[0] {
            while let Some(sig) = sys::read_signal(&signals)? {
                if sig == Signal::SIGCHLD {
                    while let Some((pid, status)) = sys::reap() {
                        driver.reaped(pid, status);
                    }
                } else {
                    log(format!("signal {}: powering off", sig as i32));
                    driver.stop();
                    return Ok(());
                }
            }
        }
        if ready.get(1).copied().unwrap_or(false) {
            let mut buf = [0u8; 256];
            match console.lock().read(&mut buf) {
                Ok(0) => {
                    log("console closed; power off by signal only");
                    console_ok = false;
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' || b == b'\r' {
                            if on_console_line(&line, opts.debug) {
                                driver.stop();
                                return Ok(());
                            }
                            line.clear();
                        } else if line.len() < 256 {
                            line.push(b);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => log(format!("console read failed: {e}")),
            }
        }
        if driver.restart_at.is_some_and(|t| Instant::now() >= t) {
            driver.start();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_command_needs_a_debug_image() {
        assert_eq!(
            console_command(b" netvm.crash\r", true),
            Some(ConsoleCommand::Crash)
        );
        assert_eq!(
            console_command(b"netvm.crash", false),
            Some(ConsoleCommand::Refused)
        );
        assert_eq!(
            console_command(b"netvm.hang", true),
            Some(ConsoleCommand::Hang)
        );
        assert_eq!(
            console_command(b"netvm.hang", false),
            Some(ConsoleCommand::Refused)
        );
        assert_eq!(
            console_command(b"netvm.poweroff", false),
            Some(ConsoleCommand::PowerOff)
        );
        assert_eq!(console_command(b"netvm.crashx", true), None);
        assert_eq!(console_command(b"\xff\xfe", true), None);
    }
}
