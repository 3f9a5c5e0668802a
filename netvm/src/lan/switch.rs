//! The switch of a `netvm lan`, its ports and the host side's namespace with the capture.
//!
//! VDE has no mirror port, and a Linux bridge port sees only what is flooded to it, so the
//! switch runs as a *hub*: `vde_switch --hub`, or a bridge with `ageing_time 0` (it never learns
//! a MAC, so it floods every frame). Every port then sees every frame, and the host side's
//! port, captured with `tcpdump`, holds the whole LAN's traffic in one pcap.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::demo::{check_interrupt, err, ip, run_cmd, Lan, Result};

/// Which switch joins the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchKind {
    /// VDE's `vde_switch` (Debian `vde2`), in hub mode; taps join it with `vde_plug2tap`,
    /// QEMU with `-netdev vde`.
    Vde,
    /// A Linux bridge in a private namespace that never learns (`ageing_time 0`); host-mode
    /// nodes join with a veth, QEMU with a tap in that namespace.
    Bridge,
}

impl std::fmt::Display for SwitchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwitchKind::Vde => "VDE switch (vde_switch --hub)",
            SwitchKind::Bridge => "Linux bridge (ageing_time 0) in a private namespace",
        })
    }
}

/// Whether `vde_switch` and `vde_plug2tap` can be run here.
pub fn vde_available() -> bool {
    ["vde_switch", "vde_plug2tap"].iter().all(|tool| {
        Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// The name of the bridge inside its namespace.
const BRIDGE: &str = "br0";
/// The host side's interface.
const HOST_IF: &str = "host0";

/// The switch, the host side's namespace and every process attached to them; dropping it
/// stops them and deletes the namespaces it created.
pub(super) struct Switch {
    /// Which switch this is.
    pub kind: SwitchKind,
    /// VDE: the switch's socket directory.
    pub sock: PathBuf,
    /// Bridge: the bridge's namespace.
    pub bridge_ns: String,
    /// The host side's namespace (address [`HOST_IP`](netvm_api::lan::HOST_IP)).
    pub host_ns: String,
    /// `vde_switch`; its stdin is its console, and EOF there stops it, so it is kept open.
    vde: Option<(Child, ChildStdin)>,
    /// `vde_plug2tap`s, one per tap.
    plugs: Vec<Child>,
    capture: Option<Child>,
    namespaces: Vec<String>,
    ports: usize,
}

impl Switch {
    /// Starts the switch (files under `dir`, names from `prefix`) and the host side on it.
    pub fn start(kind: SwitchKind, prefix: &str, dir: &Path) -> Result<Switch> {
        let mut sw = Switch {
            kind,
            sock: dir.join("switch"),
            bridge_ns: format!("{prefix}-sw"),
            host_ns: format!("{prefix}-host"),
            vde: None,
            plugs: Vec::new(),
            capture: None,
            namespaces: Vec::new(),
            ports: 0,
        };
        match kind {
            SwitchKind::Vde => sw.start_vde(dir)?,
            SwitchKind::Bridge => {
                sw.add_namespace(&sw.bridge_ns.clone())?;
                let ns = sw.bridge_ns.clone();
                ip(&["-n", &ns, "link", "add", BRIDGE, "type", "bridge"])?;
                ip(&[
                    "-n",
                    &ns,
                    "link",
                    "set",
                    BRIDGE,
                    "type",
                    "bridge",
                    "ageing_time",
                    "0",
                ])?;
                ip(&["-n", &ns, "link", "set", BRIDGE, "up"])?;
            }
        }
        let host = sw.host_ns.clone();
        sw.add_namespace(&host)?;
        sw.plug(&host, HOST_IF)?;
        let addr = format!("{}/{}", netvm_api::lan::HOST_IP, netvm_api::lan::PREFIX_LEN);
        ip(&["-n", &host, "addr", "add", &addr, "dev", HOST_IF])?;
        Ok(sw)
    }

    fn start_vde(&mut self, dir: &Path) -> Result<()> {
        let log = dir.join("vde_switch.log");
        let file =
            std::fs::File::create(&log).map_err(|e| err(format!("{}: {e}", log.display())))?;
        let file2 = file.try_clone().map_err(|e| err(format!("{e}")))?;
        let mut child = Command::new("vde_switch")
            .arg("--sock")
            .arg(&self.sock)
            .args(["--hub", "--numports", "64"])
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| err(format!("vde_switch: {e} (Debian package vde2)")))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| err("vde_switch: no stdin"))?;
        self.vde = Some((child, stdin));
        let ctl = self.sock.join("ctl");
        wait_for(
            &format!("{}", ctl.display()),
            Duration::from_secs(5),
            || Ok(ctl.exists()),
        )
    }

    fn add_namespace(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// Plugs interface `ifname` of namespace `ns` (which exists) into the switch: a tap with
    /// `vde_plug2tap`, or a veth into the bridge. It is up, its offloads off.
    pub fn plug(&mut self, ns: &str, ifname: &str) -> Result<()> {
        self.ports += 1;
        match self.kind {
            SwitchKind::Vde => {
                let mut cmd = Lan::exec(ns, Path::new("vde_plug2tap"));
                cmd.arg("--sock")
                    .arg(&self.sock)
                    .arg(ifname)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let child = cmd.spawn().map_err(|e| err(format!("vde_plug2tap: {e}")))?;
                self.plugs.push(child);
                wait_for(&format!("{ifname} in {ns}"), Duration::from_secs(5), || {
                    Ok(Command::new("ip")
                        .args(["-n", ns, "link", "show", ifname])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success()))
                })?;
            }
            SwitchKind::Bridge => {
                let port = format!("p{}", self.ports);
                let br = self.bridge_ns.clone();
                ip(&[
                    "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", &port,
                    "netns", &br,
                ])?;
                ip(&["-n", &br, "link", "set", &port, "master", BRIDGE])?;
                ip(&["-n", &br, "link", "set", &port, "up"])?;
            }
        }
        ip(&["-n", ns, "link", "set", ifname, "up"])?;
        run_cmd(
            Command::new("ip")
                .args(["netns", "exec", ns, "ethtool", "-K", ifname])
                .args([
                    "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
                ]),
        )
    }

    /// Bridge: a tap `name` in the bridge's namespace, on the bridge, for a QEMU to open.
    pub fn bridge_tap(&mut self, name: &str) -> Result<()> {
        let br = self.bridge_ns.clone();
        ip(&["-n", &br, "tuntap", "add", "dev", name, "mode", "tap"])?;
        ip(&["-n", &br, "link", "set", name, "master", BRIDGE])?;
        ip(&["-n", &br, "link", "set", name, "up"])
    }

    /// Starts capturing the host side's port (which sees every frame) into `pcap`.
    pub fn start_capture(&mut self, pcap: &Path) -> Result<()> {
        let mut cmd = Lan::exec(&self.host_ns, Path::new("tcpdump"));
        // The first 256 bytes of each frame (every header, the start of each payload): a
        // full-size capture of a measured run is hundreds of MB.
        cmd.args(["-i", HOST_IF, "-U", "-Z", "root", "-s", "256", "-w"])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("tcpdump: {e} (Debian package tcpdump)")))?;
        // tcpdump says "listening on ..." once it captures; until then frames would be missed.
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| err("tcpdump: no stderr"))?;
        self.capture = Some(child);
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            match stderr.read(&mut buf) {
                Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                _ => {
                    return Err(err(format!(
                        "tcpdump stopped before capturing: {}",
                        String::from_utf8_lossy(&seen).trim()
                    )))
                }
            }
        }
        // Keep reading its stderr so that it never blocks on a full pipe.
        std::thread::spawn(move || while stderr.read(&mut buf).is_ok_and(|n| n > 0) {});
        Ok(())
    }

    /// Stops the capture (tcpdump writes out what it holds on SIGTERM).
    pub fn stop_capture(&mut self) {
        if let Some(mut c) = self.capture.take() {
            let _ = terminate(&mut c, Duration::from_secs(5));
        }
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; reaps the child. Returns whether it exited
/// within `grace`.
pub(super) fn terminate(child: &mut Child, grace: Duration) -> bool {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + grace;
    let mut exited = false;
    while !exited && Instant::now() < deadline {
        exited = child.try_wait().ok().flatten().is_some();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    exited
}

/// Polls `ready` every 50 ms until it is true; fails after `limit` naming `what`.
pub(super) fn wait_for(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ready()? {
        check_interrupt()?;
        if Instant::now() > deadline {
            return Err(err(format!("{what} did not appear within {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop_capture();
        for plug in self.plugs.iter_mut() {
            let _ = terminate(plug, Duration::from_secs(2));
        }
        if let Some((mut child, stdin)) = self.vde.take() {
            drop(stdin);
            let _ = terminate(&mut child, Duration::from_secs(2));
            let _ = std::fs::remove_dir_all(&self.sock);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
