//! The machines of `netvm sel4-demo`: one QEMU each in its own network namespace, booted by the
//! Makefile, checked for ping and UDP echo, and paused over QMP between points.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::Events;
use super::{make, ReferenceMode, Sel4DemoOptions};
use crate::demo::{check_interrupt, err, lan, Lan, Result};
use crate::qemu_stats::{
    components, refresh, FoundPage, Qmp, QmpMem, DEFAULT_RAM_SIZE, VIRT_RAM_BASE,
};

/// The host side of every machine's tap (each tap is in a namespace of its own).
const HOST_IP: &str = "10.0.0.1/24";
/// The tap's name in each namespace.
const TAP: &str = "tap0";
/// The reference's static address (`make qemu-reference REF_IP=...`).
pub(super) const REFERENCE_IP: &str = "10.0.0.20";
/// What dnsmasq leases to a peer image's clients.
const DHCP_RANGE: &str = "10.0.0.100,10.0.0.150,255.255.255.0,1h";
/// From QEMU's start until every echo address answers (a loaded 2-core host under TCG takes
/// 20–60 s for the seL4 image).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// After a peer's first DHCP lease, how long to wait for its other clients' leases.
const MORE_LEASES: Duration = Duration::from_secs(20);

/// What a machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// `build/loader.img`: the seL4 system of `system.xml`.
    Sel4,
    /// The guest's kernel booted directly, running the kernel echo or the reflector.
    Reference(ReferenceMode),
    /// Another Microkit image (already decompressed), addresses by DHCP.
    Peer(PathBuf),
}

/// One QEMU in its namespace; dropping it stops QEMU and dnsmasq and deletes the namespace.
pub(super) struct Machine {
    /// Its name in the table.
    pub(super) label: String,
    /// Its name in file names.
    pub(super) file_label: String,
    kind: Kind,
    pub(super) ns: String,
    qmp_path: PathBuf,
    /// QMP, also for reading the seL4 image's stats pages from its RAM.
    qmp: Option<QmpMem>,
    /// The seL4 image's stats pages, once found.
    pages: Vec<FoundPage>,
    /// `make qemu...`, leader of the process group that QEMU is in.
    qemu: Option<Child>,
    dnsmasq: Option<Child>,
    console: Arc<Mutex<Vec<u8>>>,
    console_file: PathBuf,
    /// Echo addresses; the first is the one measured.
    pub(super) targets: Vec<String>,
    /// Whether it answers the ipbench utilisation daemon (port 1237).
    pub(super) util: bool,
}

impl Machine {
    fn console_tail(&self, lines: usize) -> String {
        let text = self
            .console
            .lock()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn qmp(&mut self) -> Result<&mut Qmp> {
        let label = &self.label;
        self.qmp
            .as_mut()
            .map(QmpMem::qmp)
            .ok_or_else(|| err(format!("{label}: no QMP connection")))
    }

    /// The seL4 image's event counters now (`None` for the other machines); a failed read is
    /// logged and gives `None`, so the point is measured without its counts.
    pub(super) fn events(&mut self) -> Option<Events> {
        if self.kind != Kind::Sel4 {
            return None;
        }
        let mem = self.qmp.as_mut()?;
        match refresh(mem, &mut self.pages, VIRT_RAM_BASE, DEFAULT_RAM_SIZE) {
            Ok(()) => {
                let events = Events::read(&components(&self.pages));
                if events.is_none() {
                    tracing::warn!(
                        "{}: no VMM or driver counters among its {} stats pages",
                        self.label,
                        self.pages.len()
                    );
                }
                events
            }
            Err(e) => {
                tracing::warn!("{}: reading its stats pages over QMP: {e}", self.label);
                None
            }
        }
    }

    pub(super) fn pause(&mut self) -> Result<()> {
        let label = self.label.clone();
        self.qmp()?
            .pause()
            .map_err(|e| err(format!("{label}: pausing: {e}")))
    }

    pub(super) fn resume(&mut self) -> Result<()> {
        let label = self.label.clone();
        self.qmp()?
            .resume()
            .map_err(|e| err(format!("{label}: resuming: {e}")))
    }

    /// Fails with the console's tail if QEMU has exited.
    pub(super) fn check_alive(&mut self) -> Result<()> {
        if let Some(q) = self.qemu.as_mut() {
            if let Ok(Some(status)) = q.try_wait() {
                return Err(err(format!(
                    "{}: QEMU exited ({status}); console (also in {}):\n{}",
                    self.label,
                    self.console_file.display(),
                    self.console_tail(30)
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.qmp = None;
        if let Some(mut q) = self.qemu.take() {
            // make and QEMU share the process group whose leader make is.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(q.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = q.wait();
        }
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_file(&self.qmp_path);
        if let Ok(c) = self.console.lock() {
            let _ = std::fs::write(&self.console_file, &*c);
        }
    }
}

/// The addresses in a dnsmasq lease file (`expiry mac ip name client-id` per line), sorted.
fn leased_addresses(text: &str) -> Vec<String> {
    let mut ips: Vec<std::net::Ipv4Addr> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips.iter().map(ToString::to_string).collect()
}

/// Pings `ip` from `ns` once a second until it answers or `deadline` passes.
fn wait_ping(m: &mut Machine, ip: &str, deadline: Instant) -> Result<()> {
    loop {
        check_interrupt()?;
        m.check_alive()?;
        let ok = Command::new("ip")
            .args([
                "netns", "exec", &m.ns, "ping", "-c", "1", "-W", "1", "-q", ip,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "{}: {ip} did not answer ping within {BOOT_TIMEOUT:?}; console (also in {}):\n{}",
                m.label,
                m.console_file.display(),
                m.console_tail(30)
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A short UDP echo check of `ip` (20 samples at 1 Mb/s). With `util`, also through the
/// utilisation daemon. Returns whether echoes came back.
pub(crate) fn udp_echoes(netvm: &Path, ns: &str, ip: &str, util: bool) -> Result<bool> {
    let mut cmd = Lan::exec(ns, netvm);
    cmd.args(["bench", "--target", ip, "--proto", "udp", "--rates", "1M"])
        .args(["--samples", "20", "--sample-timeout", "20s"])
        .args([
            "--warmup",
            "0s",
            "--cooldown",
            "0s",
            "--flows",
            "1",
            "--quiet",
        ])
        .args(if util { &[][..] } else { &["--no-util"][..] });
    let out = cmd.output().map_err(|e| err(format!("netvm bench: {e}")))?;
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(out.status.success()
        && text
            .lines()
            .filter(|l| l.starts_with("netvm bench: requested"))
            .any(|l| !l.contains(" 0 samples")))
}

/// Starts a machine and waits until every echo address answers ping and UDP echo; leaves it
/// paused.
pub(super) fn boot(
    opts: &Sel4DemoOptions,
    out_dir: &Path,
    netvm: &Path,
    kind: Kind,
    index: usize,
    peer: usize,
    prefix: &str,
) -> Result<Machine> {
    let (label, file_label) = match &kind {
        Kind::Sel4 => ("seL4 netvm".to_string(), "sel4".to_string()),
        Kind::Reference(ReferenceMode::Echo) => ("Linux alone".to_string(), "linux".to_string()),
        Kind::Reference(mode @ ReferenceMode::Reflect) => {
            (mode.label().to_string(), "reflect".to_string())
        }
        Kind::Peer(_) => (format!("peer {peer}"), format!("peer{peer}")),
    };
    let mut m = Machine {
        label,
        kind,
        ns: format!("{prefix}-{index}"),
        qmp_path: out_dir.join(format!("{file_label}.qmp")),
        qmp: None,
        pages: Vec::new(),
        qemu: None,
        dnsmasq: None,
        console: Arc::new(Mutex::new(Vec::new())),
        console_file: out_dir.join(format!("{file_label}-console.log")),
        targets: Vec::new(),
        util: true,
        file_label,
    };
    let t0 = Instant::now();
    let ns_arg = format!("NETNS={}", m.ns);
    let tap_arg = format!("TAP={TAP}");
    let host_arg = format!("HOST_IP={HOST_IP}");
    let qmp_arg = format!("QMP={}", m.qmp_path.display());
    // The Makefile's netns target: the namespace with its tap, up, host side addressed.
    make(
        &opts.workspace,
        &["-s", "netns", &ns_arg, &tap_arg, &host_arg],
        &out_dir.join(format!("{}-netns.log", m.file_label)),
    )?;
    let leases = out_dir.join(format!("{}.leases", m.file_label));
    let mut args = vec!["-s".to_string(), ns_arg.clone(), tap_arg, host_arg, qmp_arg];
    match &m.kind {
        Kind::Sel4 => args.insert(1, "qemu".into()),
        Kind::Reference(mode) => {
            args.insert(1, "qemu-reference".into());
            args.push(format!("REF_IP={REFERENCE_IP}/{}", lan::PREFIX));
            if *mode == ReferenceMode::Reflect {
                // The same kernel as the driver VM's: its command-line tuning too.
                args.push("REF_MODE=reflect".into());
                args.push(format!("REF_APPEND={}", system_plan::GUEST_KERNEL_TUNING));
            }
        }
        Kind::Peer(image) => {
            args.insert(1, "qemu".into());
            args.push(format!("BOOT_IMAGE={}", image.display()));
            // sDDF's virtio-net driver (the usual peer) finds the NIC in the first slot.
            args.push("NIC_BUS=virtio-mmio-bus.0".into());
            let _ = std::fs::remove_file(&leases);
            m.dnsmasq = Some(start_dnsmasq(&m, out_dir, &leases)?);
        }
    }
    let _ = std::fs::remove_file(&m.qmp_path);
    let mut child = Command::new("make");
    child
        .arg("-C")
        .arg(&opts.workspace)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the tear-down kills QEMU with make, and a Ctrl-C on
        // the terminal reaches only this program (which then tears down).
        .process_group(0);
    let mut child = child
        .spawn()
        .map_err(|e| err(format!("make {}: {e}", args.join(" "))))?;
    copy_output(&mut child, &m.console);
    m.qemu = Some(child);
    let deadline = t0 + BOOT_TIMEOUT;

    connect_qmp(&mut m, t0)?;

    m.targets = match &m.kind {
        Kind::Sel4 => lan::CLIENTS.iter().map(ToString::to_string).collect(),
        Kind::Reference(_) => vec![REFERENCE_IP.to_string()],
        Kind::Peer(_) => wait_leases(&mut m, &leases, deadline)?,
    };
    for ip in m.targets.clone() {
        wait_ping(&mut m, &ip, deadline)?;
    }
    for ip in m.targets.clone() {
        if !udp_echoes(netvm, &m.ns, &ip, false)? {
            return Err(err(format!(
                "{}: {ip} answers ping but not UDP echo",
                m.label
            )));
        }
    }
    m.util = udp_echoes(netvm, &m.ns, &m.targets[0], true)?;
    tracing::info!(
        "boot {}: up in {:.1} s, {} answer ping and UDP echo{}",
        m.label,
        t0.elapsed().as_secs_f64(),
        m.targets.join(", "),
        if m.util {
            ""
        } else {
            " (no utilisation daemon on port 1237)"
        }
    );
    m.pause()?;
    Ok(m)
}

/// Connects to `m`'s QMP socket as soon as QEMU (started at `t0`) listens; gives up 30 s
/// after `t0`.
fn connect_qmp(m: &mut Machine, t0: Instant) -> Result<()> {
    while m.qmp.is_none() {
        check_interrupt()?;
        m.check_alive()?;
        match QmpMem::connect(&m.qmp_path) {
            Ok(q) => m.qmp = Some(q),
            Err(e) if Instant::now() > t0 + Duration::from_secs(30) => {
                return Err(err(format!("{}: QMP: {e}", m.label)))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    Ok(())
}

/// Starts dnsmasq in `m`'s namespace, leasing [`DHCP_RANGE`] on its tap into `leases`.
fn start_dnsmasq(m: &Machine, out_dir: &Path, leases: &Path) -> Result<Child> {
    let mut cmd = Lan::exec(&m.ns, Path::new("dnsmasq"));
    cmd.args(["--no-daemon", "--port=0", "--conf-file=/dev/null"])
        .arg(format!("--interface={TAP}"))
        .args(["--bind-interfaces", "--user=root"])
        .arg(format!("--dhcp-range={DHCP_RANGE}"))
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg(format!(
            "--log-facility={}",
            out_dir
                .join(format!("{}-dnsmasq.log", m.file_label))
                .display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn()
        .map_err(|e| err(format!("starting dnsmasq: {e}")))
}

/// Copies `child`'s stdout and stderr into `console`, each from a thread of its own.
pub(crate) fn copy_output(child: &mut Child, console: &Arc<Mutex<Vec<u8>>>) {
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let console = console.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                if let Ok(mut c) = console.lock() {
                    c.extend_from_slice(&buf[..n]);
                }
            }
        });
    }
}

/// Waits for a peer's DHCP leases in `leases`: two, or what came within [`MORE_LEASES`] of the
/// first; fails at `deadline`.
fn wait_leases(m: &mut Machine, leases: &Path, deadline: Instant) -> Result<Vec<String>> {
    let mut first = None;
    loop {
        check_interrupt()?;
        m.check_alive()?;
        let ips = leased_addresses(&std::fs::read_to_string(leases).unwrap_or_default());
        let now = Instant::now();
        if !ips.is_empty() && first.is_none() {
            first = Some(now);
        }
        if ips.len() >= 2 || first.is_some_and(|f| now > f + MORE_LEASES) {
            return Ok(ips);
        }
        if now > deadline {
            return Err(err(format!(
                "{}: no DHCP lease within {BOOT_TIMEOUT:?}; console:\n{}",
                m.label,
                m.console_tail(30)
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_sorted_and_unique() {
        let text = "1767225600 52:54:01:00:00:11 10.0.0.101 * 01:52:54:01:00:00:11\n\
                    1767225600 52:54:01:00:00:10 10.0.0.100 * 01:52:54:01:00:00:10\n\
                    garbage\n";
        assert_eq!(leased_addresses(text), vec!["10.0.0.100", "10.0.0.101"]);
        assert!(leased_addresses("").is_empty());
    }
}
