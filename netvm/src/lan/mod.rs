//! `netvm lan`: several netvm systems (*nodes*) on one virtual switch.
//!
//! ```text
//!                    ns <p>-host: host0 10.0.255.1/16 (pings, netvm bench, tcpdump -> switch.pcap)
//!                         |
//!  vde_switch --hub (or a Linux bridge with ageing_time 0 in ns <p>-sw)
//!       |                       |                          |
//!  ns <p>-n0: lan0          ns <p>-n1: lan0            QEMU (--sel4): -netdev vde
//!  netvm run system.xml     netvm run system.xml       seL4 image of node 2
//!  10.0.0.10, 10.0.0.11     10.0.1.10, 10.0.1.11       10.0.2.10, 10.0.2.11
//! ```
//!
//! Node `n`'s MACs and addresses follow from `n` alone ([`netvm_api::lan`]). A host-mode node is
//! `netvm run` in a namespace of its own, its driver (`--driver-vm-iface`) on a tap plugged into
//! the switch (`vde_plug2tap`) or a veth into the bridge; a seL4 node is its own image (`make`
//! with the node's `MACS=` and `ECHO_IPS=`) booted by `make qemu` with its NIC on the switch.
//! A node is up when every echo client answers ping and UDP echo from the host side. The switch
//! is a hub, so the host side's port sees every frame: its capture is the switch's pcap.
//!
//! The table's host row is `netvm bench` from the host side to each node. The node rows are
//! measured by the nodes themselves: every node's client1 originates UDP and TCP echo traffic
//! to client0 of every other node (`--echo-peers`; see [`MEASURED_PEERS`]), and once every node is up its
//! stats are read (host mode: the runner's run directory; seL4: QEMU's RAM over QMP), then
//! again `peer_rounds` rounds later; the difference fills the cells ([`node_to_node`]). A
//! pair that should have reached each other and did not is named, and the run fails.
//!
//! Node messages ([`MsgTable`]): a node-msg master runs on the host side, every node's client1
//! joins it and messages the nodes on its peer page (its client1 page); after the rounds each
//! node's `msg.*` counters and its console's per-peer `msg round` line fill the messages table,
//! and a pair that did not exchange verified messages both ways fails the run.
//!
//! Everything (nodes, QEMU, plugs, switch, capture, namespaces, master) is torn down at the end, on
//! error and on Ctrl-C / SIGTERM.

mod matrix;
mod messages;
mod nodes;
mod pcap;
mod peers;
mod switch;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use matrix::{node_to_node, Cell, Matrix, NodeRows, NodeStats, Pair};
pub use messages::{last_round, parse_round, MsgTable, NodeMsgs, PeerMsgs};
pub use pcap::{End, FrameCounts};
pub use peers::{parse_load, MEASURED_PEERS, PEERS_PER_PAGE};
pub use switch::{vde_available, SwitchKind};

use crate::demo::{bench_points, catch_signals, check_interrupt, err, Result, Sweep};
use crate::sel4_demo::udp_echoes;
use nodes::Node;
use switch::Switch;

/// The most nodes on one LAN: node ids are one byte, and `10.0.255.x` is the host side's.
pub const MAX_NODES: u16 = netvm_api::lan::MAX_NODE as u16 + 1;

/// What `netvm lan` does.
#[derive(Debug, Clone)]
pub struct LanOptions {
    /// How many nodes (ids 0..nodes).
    pub nodes: u16,
    /// How many nodes (the first ids) are seL4 images on QEMU; the others are host-mode
    /// systems.
    pub sel4_nodes: u16,
    /// The switch; `None`: VDE where it is installed, else a Linux bridge.
    pub switch: Option<SwitchKind>,
    /// Where the pcap, logs and per-node builds go.
    pub out_dir: PathBuf,
    /// The capture; `None`: `<out_dir>/switch.pcap`.
    pub pcap: Option<PathBuf>,
    /// Sampling time of each host → node measurement.
    pub duration: Duration,
    /// Requested UDP rate of each host → node measurement, bit/s.
    pub rate: u64,
    /// The system description (host mode).
    pub system: PathBuf,
    /// The netvm checkout whose Makefile builds and boots the seL4 images.
    pub workspace: PathBuf,
    /// The seL4 images' `MICROKIT_CONFIG`.
    pub microkit_config: String,
    /// What each node's originating clients offer each peer per round.
    pub peer_load: echo_api::peers::Load,
    /// Rounds of node-to-node traffic measured after every node is up.
    pub peer_rounds: u32,
    /// Client1 of every node also originates to client0 of its own node (the matrix's
    /// diagonal: a client-to-client echo inside one system).
    pub in_system: bool,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct LanReport {
    /// The switch used.
    pub switch: SwitchKind,
    /// The measured table.
    pub matrix: Matrix,
    /// The capture read back.
    pub frames: FrameCounts,
    /// Where the capture is.
    pub pcap: PathBuf,
    /// Pairs of nodes that should have reached each other and did not (the run fails).
    pub unreached: usize,
    /// The node messages exchanged.
    pub messages: MsgTable,
    /// What went wrong with them (not empty: the run fails).
    pub msg_failures: Vec<String>,
}

impl LanReport {
    /// Everything printed at the end of a run.
    pub fn render(&self) -> String {
        let failures: String = self.msg_failures.iter().map(|f| format!("\n{f}")).collect();
        format!(
            "switch: {}\n\nreachability (rows: from, columns: to; round trip, echoed throughput, UDP loss):\n{}\n\n\
             node messages (rows: from, columns: to; delivered/lost as the sender saw them, then \
             received with verified content by the receiver):\n{}{failures}\n\n\
             switch capture {}: {}",
            self.switch,
            self.matrix.table(),
            self.messages.table(),
            self.pcap.display(),
            self.frames.render()
        )
    }
}

/// Checks the options that need nothing from the machine: the node count and, with seL4 nodes,
/// the Microkit SDK.
pub fn check_options(opts: &LanOptions) -> Result<()> {
    if opts.nodes == 0 {
        return Err(err("--nodes 0: a LAN needs at least one node"));
    }
    if opts.nodes > MAX_NODES {
        return Err(err(format!(
            "--nodes {}: at most {MAX_NODES} (node ids are one byte; 10.0.255.x is the host side's)",
            opts.nodes
        )));
    }
    if opts.sel4_nodes > opts.nodes {
        return Err(err(format!(
            "--sel4-nodes {}: more than the {} nodes",
            opts.sel4_nodes, opts.nodes
        )));
    }
    if opts.sel4_nodes < opts.nodes && !opts.system.is_file() {
        return Err(err(format!(
            "{}: no such system description (--system)",
            opts.system.display()
        )));
    }
    if opts.sel4_nodes > 0 {
        let sdk = std::env::var_os("MICROKIT_SDK").filter(|s| !s.is_empty());
        let Some(sdk) = sdk else {
            return Err(err(
                "--sel4 needs the Microkit SDK: MICROKIT_SDK is not set (scripts/sdk.sh finds \
                 it and writes .cache/sdk.env)",
            ));
        };
        if !Path::new(&sdk).join("bin/microkit").is_file() {
            return Err(err(format!(
                "--sel4: MICROKIT_SDK={} has no bin/microkit (expected a Microkit 2.3.0 SDK)",
                Path::new(&sdk).display()
            )));
        }
        if !opts.workspace.join("Makefile").is_file() {
            return Err(err(format!(
                "--sel4: no Makefile in {} (--workspace is the netvm checkout)",
                opts.workspace.display()
            )));
        }
    }
    Ok(())
}

/// The switch to use: the one asked for, or VDE where it is installed, else a bridge.
fn choose_switch(asked: Option<SwitchKind>) -> Result<SwitchKind> {
    match asked {
        Some(SwitchKind::Vde) if !vde_available() => Err(err(
            "--switch vde: vde_switch / vde_plug2tap not found (Debian package vde2; \
             scripts/setup.sh installs it); --switch bridge uses a Linux bridge",
        )),
        Some(kind) => Ok(kind),
        None if vde_available() => Ok(SwitchKind::Vde),
        None => {
            tracing::info!("netvm lan: vde_switch not found (Debian vde2): using a Linux bridge");
            Ok(SwitchKind::Bridge)
        }
    }
}

/// Pings `ip` from `ns` once a second until it answers; fails at `deadline`.
fn wait_ping(node: &mut Node, ns: &str, ip: &str, deadline: Instant) -> Result<()> {
    loop {
        check_interrupt()?;
        node.check_alive()?;
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-q", ip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "node {}: {ip} did not answer ping from the host side{}",
                node.id,
                if node.console_tail(1).is_empty() {
                    String::new()
                } else {
                    format!("; console:\n{}", node.console_tail(30))
                }
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until every echo client of `node` answers ping and UDP echo from the host side.
fn wait_up(node: &mut Node, host_ns: &str, netvm: &Path, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    for ipaddr in node.addresses() {
        wait_ping(node, host_ns, &ipaddr.to_string(), t0 + limit)?;
    }
    for ipaddr in node.addresses() {
        if !udp_echoes(netvm, host_ns, &ipaddr.to_string(), false)? {
            return Err(err(format!(
                "node {}: {ipaddr} answers ping but not UDP echo",
                node.id
            )));
        }
    }
    tracing::info!(
        "node {}: up in {:.1} s from its start ({} answer ping and UDP echo from the host side)",
        node.id,
        node.started.elapsed().as_secs_f64(),
        node.addresses()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Starts every node on `switch` (seL4: builds every image first) and waits until each is up.
fn start_nodes(
    opts: &LanOptions,
    out_dir: &Path,
    prefix: &str,
    switch: &mut Switch,
    images: &[PathBuf],
    netvm: &Path,
) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for id in 0..opts.nodes {
        check_interrupt()?;
        let id = u8::try_from(id).map_err(|_| err(format!("node id {id} is above 254")))?;
        nodes.push(if let Some(image) = images.get(usize::from(id)) {
            nodes::boot_sel4(id, prefix, switch, opts, out_dir, image)?
        } else {
            nodes::start_host(id, prefix, switch, netvm, opts)?
        });
    }
    // A loaded 2-core host under TCG takes 20-60 s to boot one seL4 image, more for several.
    let limit = Duration::from_secs(if opts.sel4_nodes > 0 {
        240 + 60 * nodes.len() as u64
    } else {
        30
    });
    for node in nodes.iter_mut() {
        wait_up(node, &switch.host_ns, netvm, limit)?;
    }
    Ok(nodes)
}

/// Host side → each node: one UDP point of `netvm bench` against the node's client0.
fn measure(
    opts: &LanOptions,
    out_dir: &Path,
    host_ns: &str,
    nodes: &mut [Node],
    netvm: &Path,
) -> Result<Vec<Option<Cell>>> {
    let sweep = Sweep {
        udp_rates: vec![opts.rate],
        tcp_rates: Vec::new(),
        warmup: Duration::from_secs(1),
        duration: opts.duration,
        cooldown: Duration::ZERO,
        flows: 1,
    };
    let settings = sweep.settings(out_dir, false, None, false);
    let mut row = Vec::new();
    for node in nodes.iter_mut() {
        check_interrupt()?;
        let Some(target) = node.addresses().first().map(ToString::to_string) else {
            return Err(err(format!("node {}: no echo client", node.id)));
        };
        let label = format!("node{}", node.id);
        let (points, _) = bench_points(
            host_ns,
            netvm,
            &settings,
            &target,
            "udp",
            &[opts.rate],
            &label,
        )?;
        node.check_alive()?;
        let cell = points.first().and_then(Cell::of_point);
        match &cell {
            Some(c) => tracing::info!(
                "host -> node {}: median RTT {} us, {:.1} Mb/s echoed",
                node.id,
                c.rtt_us,
                c.mbps
            ),
            None => tracing::warn!("host -> node {}: nothing echoed", node.id),
        }
        row.push(cell);
    }
    Ok(row)
}

/// The nodes' own stats, for [`node_to_node`], and why a node's could not be read.
fn node_stats(nodes: &mut [Node]) -> (Vec<NodeStats>, Vec<String>) {
    let mut stats = Vec::new();
    let mut why = Vec::new();
    for node in nodes {
        match node.stats() {
            Ok(s) => stats.push((node.id, s)),
            Err(e) => why.push(format!(
                "node {} -> other nodes: not measured: {e}",
                node.id
            )),
        }
    }
    (stats, why)
}

/// Waits until `rounds` of node-to-node traffic have passed since `since` (and one more, so
/// that the last counted round has ended).
fn wait_rounds(opts: &LanOptions, since: Instant) -> Result<()> {
    let period = Duration::from_millis(u64::from(opts.peer_load.period_ms));
    let until = since + period * (opts.peer_rounds + 1);
    while Instant::now() < until {
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
    }
    Ok(())
}

/// The node-to-node rows: each node's stats read once every node is up (`before`) and again
/// `peer_rounds` rounds later, the difference in the table; every cell left `-` explained.
fn node_rows(
    opts: &LanOptions,
    nodes: &mut [Node],
    before: &[NodeStats],
    since: Instant,
) -> Result<NodeRows> {
    wait_rounds(opts, since)?;
    let (after, mut why) = node_stats(nodes);
    let (cells, pairs, more) = node_to_node(nodes.len(), before, &after);
    why.extend(more);
    Ok((cells, pairs, why))
}

/// The node messages table: each node's `msg.*` counters read now and its console's per-peer
/// numbers since `consoles` (the consoles at the start of the window), and what is wrong.
fn node_messages(
    opts: &LanOptions,
    nodes: &mut [Node],
    (before, consoles): (&[NodeStats], &[String]),
    master: &messages::Master,
) -> (MsgTable, Vec<String>) {
    let (stats, mut why) = node_stats(nodes);
    let mut table = MsgTable {
        nodes: nodes
            .iter()
            .zip(consoles)
            .map(|(node, console)| {
                let s = stats.iter().find(|(id, _)| *id == node.id);
                let b = before.iter().find(|(id, _)| *id == node.id);
                NodeMsgs::read(node.id, s, console, &node.console_text()).with_window(b)
            })
            .collect(),
        joined: master.joined(),
        notes: Vec::new(),
    };
    let n = opts.nodes;
    let messaged = |from, to| peers::messaged(from, to, n, opts.in_system);
    table.notes = table.attribute_totals(messaged);
    let failures = table.failures(messaged);
    if failures.is_empty() {
        why.clear();
    }
    why.extend(failures);
    (table, why)
}

/// Runs the whole LAN; see the module docs.
pub fn run(opts: &LanOptions) -> Result<LanReport> {
    check_options(opts)?;
    let kind = choose_switch(opts.switch)?;
    catch_signals()?;
    if !crate::demo::is_root() {
        return Err(err(
            "needs root (network namespaces, taps, a switch); run it with sudo",
        ));
    }
    crate::demo::check_writable(&opts.out_dir).map_err(err)?;
    let out_dir = std::fs::canonicalize(&opts.out_dir)
        .map_err(|e| err(format!("{}: {e}", opts.out_dir.display())))?;
    let pcap = opts
        .pcap
        .clone()
        .unwrap_or_else(|| out_dir.join("switch.pcap"));
    let netvm = std::env::current_exe().map_err(|e| err(format!("current_exe: {e}")))?;
    tracing::info!("netvm lan: {} nodes on a {kind}", opts.nodes);
    let images = {
        let mut images = Vec::new();
        for id in 0..opts.sel4_nodes {
            let id = u8::try_from(id).map_err(|_| err(format!("node id {id} is above 254")))?;
            images.push(nodes::build_sel4(opts, &out_dir, id)?);
        }
        images
    };

    let prefix = format!("nvl{}", std::process::id());
    let mut switch = Switch::start(kind, &prefix, &out_dir)?;
    switch.start_capture(&pcap)?;
    let mut master = messages::Master::start(&switch.host_ns, &netvm)?;
    let mut nodes = start_nodes(opts, &out_dir, &prefix, &mut switch, &images, &netvm)?;
    if usize::from(opts.nodes) > 1 + MEASURED_PEERS - usize::from(opts.in_system) {
        tracing::warn!(
            "netvm lan: {} nodes: each node measures {MEASURED_PEERS} peers ({PEERS_PER_PAGE} per \
             client's stats page, client1 and client0); the other pairs are not measured",
            opts.nodes
        );
    }
    let (before, _) = node_stats(&mut nodes);
    let consoles: Vec<String> = nodes.iter().map(Node::console_text).collect();
    let since = Instant::now();
    let host = measure(opts, &out_dir, &switch.host_ns.clone(), &mut nodes, &netvm)?;
    let (node_cells, pairs, why) = node_rows(opts, &mut nodes, &before, since)?;
    master.check_alive()?;
    let (messages, msg_failures) = node_messages(opts, &mut nodes, (&before, &consoles), &master);
    drop(master);
    let mut matrix = Matrix {
        host,
        nodes: node_cells,
        pairs,
        why,
    };
    let n = opts.nodes;
    let unreached = matrix.explain(|from, to| peers::planned(from, to, n, opts.in_system));
    if !opts.in_system {
        matrix.why.push(
            "node n -> node n: not a path on the LAN (--in-system measures it inside the node)"
                .into(),
        );
    }

    // The nodes go quiet before the capture ends, so that it holds the whole run.
    drop(nodes);
    switch.stop_capture();
    drop(switch);
    let frames = FrameCounts::read(&pcap).map_err(err)?;
    Ok(LanReport {
        switch: kind,
        matrix,
        frames,
        pcap,
        unreached,
        messages,
        msg_failures,
    })
}
