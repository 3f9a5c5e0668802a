//! The nodes of a `netvm lan`: a host-mode system (`netvm run` in a namespace of its own, its
//! driver on a port of the switch) or a seL4 image (built per node, booted on QEMU with its
//! NIC on the switch). A node's MACs and addresses come from its id alone
//! ([`netvm_api::lan`]).

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netvm_api::lan::{client_ip, client_mac, HOST_IP, PREFIX_LEN};

use super::switch::{terminate, Switch, SwitchKind};
use super::LanOptions;
use crate::demo::{err, follow_runner_into, ip, Lan, Result};
use crate::observe::ComponentStats;
use crate::qemu_stats::{
    components, refresh, FoundPage, QmpError, QmpMem, DEFAULT_RAM_SIZE, VIRT_RAM_BASE,
};
use crate::sel4_demo::{copy_output, make};

/// Echo clients per node (system.xml's `client0` and `client1`).
pub const CLIENTS: u8 = 2;
/// The interface a host-mode node's driver uses, in the node's namespace.
const NODE_IF: &str = "lan0";

/// One node; dropping it stops its system and deletes its namespace.
pub(super) struct Node {
    /// Its id.
    pub id: u8,
    /// Its namespace (host mode: the driver's port; seL4: where `make qemu` runs).
    pub ns: String,
    /// Host mode: the runner's pid (its run directory is `/dev/shm/netvm-run.<pid>.*`).
    pub runner_pid: Option<u32>,
    /// The running system: `netvm run`, or `make qemu` leading QEMU's process group.
    process: Option<Child>,
    /// When its namespace was made (seL4: before QEMU started).
    pub started: std::time::Instant,
    /// seL4: QEMU's console, written to `console_file` at the end.
    console: Arc<Mutex<Vec<u8>>>,
    console_file: Option<PathBuf>,
    /// seL4: QEMU's QMP socket, and the stats pages found in its RAM.
    qmp: Option<PathBuf>,
    pages: Vec<FoundPage>,
}

impl Node {
    /// The echo clients' addresses.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        node_ips(self.id)
    }

    /// Everything its console holds so far (host mode: the runner's lines after its start).
    pub fn console_text(&self) -> String {
        self.console
            .lock()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` of a seL4 node's console.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = self
            .console
            .lock()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its components' stats, as `netvm stats` reads them: a host-mode node's from its
    /// runner's run directory, a seL4 node's from QEMU's RAM over QMP (the pages found by the
    /// first read are read again after).
    pub fn stats(&mut self) -> Result<Vec<ComponentStats>> {
        if let Some(pid) = self.runner_pid {
            let view = crate::observe::RunView::of_runner(Path::new("/dev/shm"), pid)
                .map_err(|e| err(format!("node {}: its stats: {e}", self.id)))?;
            return Ok(view.stats());
        }
        let Some(socket) = &self.qmp else {
            return Err(err(format!("node {}: no stats to read", self.id)));
        };
        let fail = |e: QmpError| err(format!("node {}: its stats over QMP: {e}", self.id));
        let mut mem = QmpMem::connect(socket).map_err(fail)?;
        refresh(&mut mem, &mut self.pages, VIRT_RAM_BASE, DEFAULT_RAM_SIZE).map_err(fail)?;
        Ok(components(&self.pages))
    }

    /// Fails if the node's system has stopped.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut() {
            if let Ok(Some(status)) = p.try_wait() {
                return Err(err(format!(
                    "node {}: its system stopped ({status}){}",
                    self.id,
                    if self.console_file.is_some() {
                        format!("; console:\n{}", self.console_tail(30))
                    } else {
                        String::new()
                    }
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            if self.console_file.is_some() {
                // make and QEMU share the process group whose leader make is.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = p.wait();
            } else {
                // SIGTERM first: the runner then stops its PDs and removes its shm files.
                let t0 = std::time::Instant::now();
                if terminate(&mut p, Duration::from_secs(5)) {
                    tracing::debug!("node {}: stopped in {:?}", self.id, t0.elapsed());
                } else {
                    tracing::warn!(
                        "node {}: its runner did not stop within 5 s of SIGTERM: killed (its \
                         run directory in /dev/shm goes with the next netvm run)",
                        self.id
                    );
                }
            }
        }
        if let (Some(file), Ok(c)) = (&self.console_file, self.console.lock()) {
            let _ = std::fs::write(file, &*c);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Node `id`'s echo client addresses, in client order.
pub fn node_ips(id: u8) -> Vec<Ipv4Addr> {
    (0..CLIENTS).filter_map(|c| client_ip(id, c).ok()).collect()
}

/// `client0=<mac>,client1=<mac>` of node `id` (`netvm run --net-macs`, a `MACS=` file).
pub fn macs_list(id: u8, sep: &str) -> Result<String> {
    let mut items = Vec::new();
    for c in 0..CLIENTS {
        let m = client_mac(id, c).map_err(err)?;
        items.push(format!(
            "client{c}={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ));
    }
    Ok(items.join(sep))
}

/// `client0=<ip>/16,client1=<ip>/16` of node `id` (`--echo-ips`, `ECHO_IPS=`).
pub fn ips_list(id: u8) -> Result<String> {
    let mut items = Vec::new();
    for c in 0..CLIENTS {
        let a = client_ip(id, c).map_err(err)?;
        items.push(format!("client{c}={a}/{PREFIX_LEN}"));
    }
    Ok(items.join(","))
}

fn new_node(id: u8, ns: String) -> Result<Node> {
    ip(&["netns", "add", &ns])?;
    let node = Node {
        id,
        ns,
        runner_pid: None,
        process: None,
        started: std::time::Instant::now(),
        console: Arc::new(Mutex::new(Vec::new())),
        console_file: None,
        qmp: None,
        pages: Vec::new(),
    };
    ip(&["-n", &node.ns, "link", "set", "lo", "up"])?;
    Ok(node)
}

/// Starts host-mode node `id`: its namespace with a port of `switch`, and `netvm run` of the
/// system on it; returns once the driver and both echo servers are up.
pub(super) fn start_host(
    id: u8,
    prefix: &str,
    switch: &mut Switch,
    netvm: &Path,
    opts: &LanOptions,
) -> Result<Node> {
    let mut node = new_node(id, format!("{prefix}-n{id}"))?;
    switch.plug(&node.ns, NODE_IF)?;
    let bin_dir = netvm.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cmd = Lan::exec(&node.ns, netvm);
    cmd.arg("run")
        .arg(&opts.system)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg(format!("--net-macs={}", macs_list(id, ",")?))
        .arg(format!("--echo-ips={}", ips_list(id)?))
        .args(["--driver-vm-iface", NODE_IF])
        .args(
            super::peers::peer_list(
                id,
                opts.nodes,
                &opts.peer_load,
                opts.in_system,
                Some(HOST_IP),
            )
            .map(|list| format!("--echo-peers={list}")),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = node.process.insert(
        cmd.spawn()
            .map_err(|e| err(format!("node {id}: netvm run: {e}")))?,
    );
    node.runner_pid = Some(child.id());
    tracing::info!(
        "node {id}: netvm run (pid {}) in namespace {}",
        child.id(),
        node.ns
    );
    let clients: Vec<String> = (0..CLIENTS).map(|c| format!("client{c}")).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let keep = Some(node.console.clone());
    follow_runner_into(child, &clients, keep).map_err(|e| err(format!("node {id}: {e}")))?;
    Ok(node)
}

/// The per-node files of a seL4 node under the run's directory.
fn sel4_dir(out_dir: &Path, id: u8) -> PathBuf {
    out_dir.join(format!("node{id}"))
}

/// Builds node `id`'s seL4 image: `make` with its own `MACS=` file, `ECHO_IPS=`, `OUT=` and
/// `IMAGE=` under the run's directory; returns the image.
pub(super) fn build_sel4(opts: &LanOptions, out_dir: &Path, id: u8) -> Result<PathBuf> {
    let dir = sel4_dir(out_dir, id);
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let macs = dir.join("node.macs");
    std::fs::write(&macs, format!("{}\n", macs_list(id, "\n")?))
        .map_err(|e| err(format!("{}: {e}", macs.display())))?;
    let image = dir.join("loader.img");
    let args = [
        format!("MICROKIT_CONFIG={}", opts.microkit_config),
        format!("MACS={}", macs.display()),
        format!("ECHO_IPS={}", ips_list(id)?),
        format!("OUT={}", dir.join("sel4").display()),
        format!("IMAGE={}", image.display()),
    ];
    let mut args = args.to_vec();
    args.extend(
        super::peers::peer_list(
            id,
            opts.nodes,
            &opts.peer_load,
            opts.in_system,
            Some(HOST_IP),
        )
        .map(|list| format!("ECHO_PEERS={list}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tracing::info!("node {id}: make {}", args.join(" "));
    make(&opts.workspace, &args, &dir.join("build.log"))?;
    Ok(image)
}

/// Boots seL4 node `id` from `image` on QEMU (the Makefile's `qemu` target: the same machine
/// and NIC options as every seL4 run), its NIC on `switch`.
pub(super) fn boot_sel4(
    id: u8,
    prefix: &str,
    switch: &mut Switch,
    opts: &LanOptions,
    out_dir: &Path,
    image: &Path,
) -> Result<Node> {
    let dir = sel4_dir(out_dir, id);
    let qmp = dir.join("qmp.sock");
    let mut node = new_node(id, format!("{prefix}-n{id}"))?;
    node.qmp = Some(qmp.clone());
    let (netns, tap, netdev) = match switch.kind {
        SwitchKind::Vde => (
            node.ns.clone(),
            "tap0".to_string(),
            format!("vde,id=n0,sock={}", switch.sock.display()),
        ),
        SwitchKind::Bridge => {
            let tap = format!("q{id}");
            switch.bridge_tap(&tap)?;
            (
                switch.bridge_ns.clone(),
                tap.clone(),
                format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            )
        }
    };
    let args = [
        "-s".to_string(),
        "qemu".to_string(),
        format!("MICROKIT_CONFIG={}", opts.microkit_config),
        format!("NETNS={netns}"),
        format!("TAP={tap}"),
        // The namespace's tap is not the LAN: no address on it.
        "HOST_IP=".to_string(),
        format!("NETDEV={netdev}"),
        // Each NIC its own MAC on the one LAN (the guest's own frames, if any, stay apart).
        format!("NIC_MAC=52:54:00:12:35:{id:02x}"),
        format!("QMP={}", qmp.display()),
        format!("BOOT_IMAGE={}", image.display()),
    ];
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(&opts.workspace)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the tear-down kills QEMU with make, and a Ctrl-C on the
        // terminal reaches only this program (which then tears down).
        .process_group(0);
    let child = node.process.insert(
        cmd.spawn()
            .map_err(|e| err(format!("node {id}: make qemu: {e}")))?,
    );
    copy_output(child, &node.console);
    node.console_file = Some(dir.join("console.log"));
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_follow_the_shared_addressing() {
        assert_eq!(
            macs_list(0, ",").unwrap(),
            "client0=52:54:01:00:00:10,client1=52:54:01:00:00:11"
        );
        assert_eq!(
            macs_list(2, "\n").unwrap(),
            "client0=52:54:01:00:02:10\nclient1=52:54:01:00:02:11"
        );
        assert_eq!(
            ips_list(2).unwrap(),
            "client0=10.0.2.10/16,client1=10.0.2.11/16"
        );
        assert_eq!(
            node_ips(1),
            vec![Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 11)]
        );
        assert!(macs_list(255, ",").is_err());
    }
}
