//! `netvm node`: node messaging by id (crate node-msg) from a shell or a namespace: run a
//! master, send, receive, or exchange verified messages with every other node.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use netvm_api::lan::{client_mac, node_of_ip};
use node_msg::udp::{Error, UdpMaster, UdpNode};
use node_msg::{Config, LossReason, PORT};

#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

/// Where a node is and where its master is.
#[derive(clap::Args)]
struct Join {
    /// The master's address.
    #[arg(long, default_value_t = SocketAddrV4::new(netvm_api::lan::HOST_IP, PORT))]
    master: SocketAddrV4,
    /// The node's own UDP address (its id follows from an address of netvm_api::lan's shape).
    #[arg(long, default_value_t = SocketAddrV4::new([0, 0, 0, 0].into(), PORT))]
    bind: SocketAddrV4,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    /// Run a master: give out node ids and answer lookups until interrupted (or --timeout).
    Master {
        /// Address to listen on.
        #[arg(long, default_value_t = SocketAddrV4::new([0, 0, 0, 0].into(), PORT))]
        listen: SocketAddrV4,
        /// Most nodes at once.
        #[arg(long, default_value_t = 254)]
        capacity: usize,
        /// Stop after this long.
        #[arg(long, value_parser = netvm::bench::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Join, send one message to node --to and wait for its acknowledgement. Exit status 1 if
    /// it is reported lost.
    Send {
        #[command(flatten)]
        join: Join,
        /// Destination node id.
        #[arg(long)]
        to: u8,
        /// The message.
        message: String,
    },
    /// Join and print the next --count messages as `from <id>: <text>`. Exit status 1 if they
    /// do not all arrive within --timeout.
    Recv {
        #[command(flatten)]
        join: Join,
        /// Messages to wait for.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// How long to wait for them.
        #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Join, send a --size-byte message to every node of --peers (but this one), receive one
    /// from each, and check every byte; one line per pair. Exit status 1 if any is lost or wrong.
    Exchange {
        #[command(flatten)]
        join: Join,
        /// Node ids taking part (this node's included), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<u8>,
        /// Bytes per message (1..=16384).
        #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u16).range(1..=node_msg::MAX_MESSAGE as i64))]
        size: u16,
        /// How long to wait for the others' messages.
        #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "30s")]
        timeout: Duration,
    },
}

pub(crate) fn run_node(a: NodeArgs) -> ExitCode {
    let result = match a.command {
        NodeCommand::Master {
            listen,
            capacity,
            timeout,
        } => master(listen, capacity, timeout),
        NodeCommand::Send { join, to, message } => send(&join, to, &message),
        NodeCommand::Recv {
            join,
            count,
            timeout,
        } => recv(&join, count, timeout),
        NodeCommand::Exchange {
            join,
            peers,
            size,
            timeout,
        } => exchange(&join, &peers, usize::from(size), timeout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("netvm node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn master(listen: SocketAddrV4, capacity: usize, timeout: Option<Duration>) -> Result<(), String> {
    let sock = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let mut m = UdpMaster::new(sock, capacity);
    println!("master listening on {listen}");
    let start = Instant::now();
    let mut members: Vec<(u8, SocketAddrV4)> = Vec::new();
    while timeout.is_none_or(|t| start.elapsed() < t) {
        m.serve_once(Duration::from_millis(100))
            .map_err(|e| format!("master on {listen}: {e}"))?;
        let now: Vec<_> = m.master().members().collect();
        for (id, addr) in now.iter().filter(|x| !members.contains(x)) {
            println!("joined: node {id} at {addr}");
        }
        for (id, addr) in members.iter().filter(|x| !now.contains(x)) {
            println!("left: node {id} at {addr}");
        }
        members = now;
    }
    Ok(())
}

fn joined(j: &Join) -> Result<UdpNode, String> {
    let sock = UdpSocket::bind(j.bind).map_err(|e| format!("bind {}: {e}", j.bind))?;
    let mac = node_of_ip(source_ip(j))
        .and_then(|(n, c)| client_mac(n, c).ok())
        .unwrap_or([0x52, 0x54, 0x01, 0xff, 0, 0]);
    let node = UdpNode::join(sock, j.master, mac, Config::default())
        .map_err(|e| format!("join {} from {}: {e}", j.master, j.bind))?;
    tracing::info!("joined {} as node {}", j.master, node.id().unwrap_or(0));
    Ok(node)
}

/// The address the master will see this node at (its MAC is announced from it): asks the
/// kernel's routing with a throwaway connected socket.
fn source_ip(j: &Join) -> std::net::Ipv4Addr {
    let probe = UdpSocket::bind(SocketAddrV4::new(*j.bind.ip(), 0))
        .and_then(|s| s.connect(j.master).and_then(|()| s.local_addr()));
    match probe {
        Ok(SocketAddr::V4(a)) => *a.ip(),
        _ => *j.bind.ip(),
    }
}

fn send(j: &Join, to: u8, message: &str) -> Result<(), String> {
    let mut n = joined(j)?;
    n.send(to, message.as_bytes()).map_err(|e| e.to_string())?;
    let me = n.id().unwrap_or(0);
    println!("node {me}: {} bytes to node {to} delivered", message.len());
    n.leave().map_err(|e| e.to_string())
}

fn recv(j: &Join, count: usize, timeout: Duration) -> Result<(), String> {
    let mut n = joined(j)?;
    let deadline = Instant::now() + timeout;
    for i in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match n.recv(left) {
            Ok((src, data)) => println!("from {src}: {}", String::from_utf8_lossy(&data)),
            Err(Error::Timeout) => {
                return Err(format!("{i} of {count} messages within {timeout:?}"))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    // Stay a moment so a retransmission whose ack was lost is acknowledged again.
    n.serve_for(Duration::from_millis(500))
        .map_err(|e| e.to_string())?;
    n.leave().map_err(|e| e.to_string())
}

/// The bytes node `src` sends node `dest` in an exchange: every byte depends on both ids
/// (message 0 of `node_msg::content`, so an echo-server PD's messaging role checks it too).
pub(crate) fn exchange_payload(src: u8, dest: u8, size: usize) -> Vec<u8> {
    let mut data = vec![0; size];
    node_msg::content::fill(src, dest, 0, &mut data);
    data
}

/// Sends `data` to `dest`, and again while the master does not know `dest` yet (the nodes of
/// an exchange start together, so some join later than others) until `deadline`.
fn send_when_joined(
    n: &mut UdpNode,
    dest: u8,
    data: &[u8],
    deadline: Instant,
) -> Result<(), Error> {
    loop {
        match n.send(dest, data) {
            Err(Error::Lost(_, LossReason::UnknownId)) if Instant::now() < deadline => {
                n.serve_for(Duration::from_millis(100))?;
            }
            other => return other,
        }
    }
}

fn exchange(j: &Join, peers: &[u8], size: usize, timeout: Duration) -> Result<(), String> {
    let mut n = joined(j)?;
    let me = n.id().ok_or("no id")?;
    let others: Vec<u8> = peers.iter().copied().filter(|p| *p != me).collect();
    let mut failed = 0;
    let deadline = Instant::now() + timeout;
    for &dest in &others {
        let t = Instant::now();
        match send_when_joined(&mut n, dest, &exchange_payload(me, dest, size), deadline) {
            Ok(()) => println!(
                "{me} -> {dest}: {size} bytes delivered in {:?}",
                t.elapsed()
            ),
            Err(e) => {
                println!("{me} -> {dest}: {e}");
                failed += 1;
            }
        }
    }
    let mut heard = Vec::new();
    while heard.len() < others.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (src, data) = match n.recv(left) {
            Ok(m) => m,
            Err(Error::Timeout) => break,
            Err(e) => return Err(e.to_string()),
        };
        let ok = data == exchange_payload(src, me, size);
        println!(
            "{src} -> {me}: {} bytes {}",
            data.len(),
            if ok { "verified" } else { "WRONG" }
        );
        failed += usize::from(!ok);
        heard.push(src);
    }
    for missing in others.iter().filter(|o| !heard.contains(o)) {
        println!("{missing} -> {me}: nothing within {timeout:?}");
        failed += 1;
    }
    n.serve_for(Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    n.leave().map_err(|e| e.to_string())?;
    if failed == 0 {
        println!(
            "node {me}: exchanged with {} nodes, all verified",
            others.len()
        );
        Ok(())
    } else {
        Err(format!(
            "node {me}: {failed} of {} exchanges failed",
            2 * others.len()
        ))
    }
}
