//! Real UDP in network namespaces: a master and three nodes, each in its own namespace, joined
//! by veths to a Linux bridge. Every pair exchanges messages with verified content, ids are
//! unique and follow the addresses, and a message to a node that left is reported lost.
#![cfg(target_os = "linux")]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use netvm_api::lan::{client_ip, client_mac, HOST_IP};
use node_msg::udp::{Error, UdpMaster, UdpNode};
use node_msg::{Config, LossReason, PORT};
use testkit::bridge::BridgeLan;

const NODES: u8 = 3;

fn message(src: u8, dest: u8) -> Vec<u8> {
    let len = 3000 * usize::from(src) + 17 * usize::from(dest);
    (0..len)
        .map(|i| (i as u8) ^ src.wrapping_mul(16) ^ dest)
        .collect()
}

/// Node `n`: join, send to every other node, receive from every other node, then the leave test.
fn node(rig: &BridgeLan, n: u8, barrier: &Barrier) -> Result<u8, String> {
    BridgeLan::enter(&rig.node(n))?;
    let sock = UdpSocket::bind(SocketAddrV4::new(client_ip(n, 0).unwrap(), PORT))
        .map_err(|e| e.to_string())?;
    let master = SocketAddrV4::new(HOST_IP, PORT);
    let mut node = UdpNode::join(sock, master, client_mac(n, 0).unwrap(), Config::default())
        .map_err(|e| format!("node {n} join: {e}"))?;
    let id = node.id().unwrap();
    barrier.wait();
    for dest in (1..=NODES).filter(|d| *d != id) {
        node.send(dest, &message(id, dest))
            .map_err(|e| format!("{id} -> {dest}: {e}"))?;
    }
    for _ in 1..NODES {
        let (src, data) = node
            .recv(Duration::from_secs(10))
            .map_err(|e| format!("node {id} recv: {e}"))?;
        if data != message(src, id) {
            return Err(format!(
                "node {id}: the message from {src} came wrong ({} bytes)",
                data.len()
            ));
        }
    }
    node.serve_for(Duration::from_millis(300))
        .map_err(|e| e.to_string())?;
    barrier.wait();
    if id == 2 {
        node.leave().map_err(|e| e.to_string())?;
        barrier.wait();
        return Ok(id);
    }
    barrier.wait();
    match node.send(2, b"are you there?") {
        Err(Error::Lost(_, LossReason::NoAck | LossReason::UnknownId)) => Ok(id),
        other => Err(format!(
            "node {id}: a message to a node that left: {other:?}"
        )),
    }
}

#[test]
fn three_nodes_in_namespaces_exchange_messages_by_id() {
    let rig = match BridgeLan::create("msg", &[1, 2, 3]) {
        Ok(rig) => Arc::new(rig),
        Err(e) => {
            testkit::skip(
                "three_nodes_in_namespaces_exchange_messages_by_id",
                format!("cannot build the namespaces (needs root and iproute2): {e}"),
            );
            return;
        }
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let master = {
        let (rig, stop) = (rig.clone(), stop.clone());
        thread::spawn(move || {
            BridgeLan::enter(&rig.host()).unwrap();
            let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
            let mut m = UdpMaster::new(sock, 254);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                m.serve_once(Duration::from_millis(20)).unwrap();
            }
            m.master().counters()
        })
    };
    let barrier = Arc::new(Barrier::new(usize::from(NODES)));
    let nodes: Vec<_> = (1..=NODES)
        .map(|n| {
            let (rig, barrier) = (rig.clone(), barrier.clone());
            thread::spawn(move || node(&rig, n, &barrier))
        })
        .collect();
    let ids: Vec<_> = nodes.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let counters = master.join().unwrap();
    let ids: Vec<u8> = ids.into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(ids, [1, 2, 3], "ids are unique and follow the addresses");
    assert_eq!(
        (counters.joins, counters.leaves, counters.malformed),
        (3, 1, 0)
    );
}
