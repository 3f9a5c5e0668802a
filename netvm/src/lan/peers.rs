//! Who originates traffic to whom in a `netvm lan`: every node's client1 sends echo requests to
//! client0 of every other node (`netvm run --echo-peers`, `make ECHO_PEERS=`), so the nodes
//! measure the node-to-node cells themselves. A client's stats page holds
//! [`PEERS_PER_PAGE`] peers, so beyond that client0 originates too (it still echoes): up to
//! [`MEASURED_PEERS`] peers per node; in a LAN of more nodes the pairs past that are not
//! measured (and the table says so).

use std::net::Ipv4Addr;

use echo_api::peers::{parse_peer_list, Load};

use crate::demo::{err, Result};

/// Peers whose results one client's stats page holds (`peer0.` .. `peer3.`).
pub const PEERS_PER_PAGE: usize = 4;
/// The originating clients of a node, in the order peers are given to them.
const ORIGINATORS: [u8; 2] = [1, 0];
/// Most peers one node measures.
pub const MEASURED_PEERS: usize = PEERS_PER_PAGE * ORIGINATORS.len();

/// The load each originating client offers each peer per round, from the `--peer-udp`
/// (`<count>x<size>@<rate>`), `--peer-tcp` (bytes) and `--peer-period` (ms) values, checked as
/// `--echo-peers` checks them.
pub fn parse_load(udp: &str, tcp: &str, period: &str) -> Result<Load> {
    let entry = format!("x=10.0.0.10/udp={udp}/tcp={tcp}/period={period}");
    let parsed = parse_peer_list(&entry).next();
    match parsed {
        Some(Ok((_, plan))) => Ok(plan.load),
        Some(Err(e)) => Err(err(format!(
            "--peer-udp {udp} --peer-tcp {tcp} --peer-period {period}: {e}"
        ))),
        None => Err(err("no peer load")),
    }
}

/// The peers of node `id` in a LAN of `n` nodes, nearest ids after it first (`in_system`: one
/// slot fewer, its own client0 takes it).
fn peers_of(id: u8, n: u16, in_system: bool) -> Vec<u8> {
    (1..n)
        .filter_map(|d| u8::try_from((u16::from(id) + d) % n).ok())
        .take(MEASURED_PEERS - usize::from(in_system))
        .collect()
}

/// Whether node `from` measures node `to` in a LAN of `n` nodes (itself: with `in_system`).
pub fn planned(from: u8, to: u8, n: u16, in_system: bool) -> bool {
    if from == to {
        return in_system;
    }
    peers_of(from, n, in_system).contains(&to)
}

/// Whether node `from` messages node `to` (and `to` checks what it receives from `from`): `to`
/// is on the page of client1, the messaging client (`/msg=` on its entry only: the master
/// gives one id per node).
pub fn messaged(from: u8, to: u8, n: u16, in_system: bool) -> bool {
    from != to
        && peers_of(from, n, in_system)
            .iter()
            .take(PEERS_PER_PAGE - usize::from(in_system))
            .any(|&p| p == to)
}

/// Node `id`'s `--echo-peers` / `ECHO_PEERS=` list in a LAN of `n` nodes; `in_system` adds
/// client0 of its own node to client1's peers (a client-to-client echo inside the system).
/// `msg`: client1 also messages its peers through the master at `msg` (node messaging).
/// `None` for a LAN of one node without `in_system`.
pub fn peer_list(
    id: u8,
    n: u16,
    load: &Load,
    in_system: bool,
    msg: Option<Ipv4Addr>,
) -> Option<String> {
    let mut peers: Vec<String> = peers_of(id, n, in_system)
        .iter()
        .map(|p| format!("node{p}"))
        .collect();
    if in_system {
        peers.insert(0, format!("node{id}.0"));
    }
    let options = format!(
        "udp={}x{}@{}/tcp={}/period={}",
        load.udp_count, load.udp_size, load.udp_rate, load.tcp_bytes, load.period_ms
    );
    let entries: Vec<String> = peers
        .chunks(PEERS_PER_PAGE)
        .zip(ORIGINATORS)
        .enumerate()
        .map(|(i, (chunk, client))| {
            let msg = match msg {
                Some(master) if i == 0 => format!("/msg={master}"),
                _ => String::new(),
            };
            format!("client{client}={}/{options}{msg}", chunk.join("+"))
        })
        .collect();
    (!entries.is_empty()).then(|| entries.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_node_is_a_peer_and_beyond_a_page_client0_originates_too() {
        let load = Load::default();
        assert_eq!(
            peer_list(0, 3, &load, false, None).unwrap(),
            "client1=node1+node2/udp=32x256@1000/tcp=16384/period=1000"
        );
        assert_eq!(peer_list(0, 1, &load, false, None), None);
        assert_eq!(
            peer_list(1, 2, &load, true, None).unwrap(),
            "client1=node1.0+node0/udp=32x256@1000/tcp=16384/period=1000"
        );
        let seven = peer_list(5, 7, &load, false, None).unwrap();
        assert!(
            seven.starts_with("client1=node6+node0+node1+node2/")
                && seven.contains(",client0=node3+node4/"),
            "{seven}"
        );
        // Every list is one `--echo-peers` accepts, with the load given.
        for entry in parse_peer_list(&seven) {
            assert_eq!(entry.unwrap().1.load, load);
        }
        // Ten nodes: 8 peers each, the ninth not measured; 7 with the node's own client0.
        assert!(planned(0, 8, 10, false) && !planned(0, 9, 10, false) && planned(9, 0, 10, false));
        assert!(planned(0, 7, 10, true) && !planned(0, 8, 10, true) && planned(0, 0, 10, true));
        assert!(!planned(2, 2, 3, false));
        // Messaging: on client1's entry only, to the peers of its page.
        let master = Some(Ipv4Addr::new(10, 0, 255, 1));
        let ten_msg = peer_list(0, 10, &load, false, master).unwrap();
        assert!(
            ten_msg.contains("node4/udp=32x256@1000/tcp=16384/period=1000/msg=10.0.255.1,client0=")
                && ten_msg.matches("/msg=").count() == 1,
            "{ten_msg}"
        );
        for entry in parse_peer_list(&ten_msg) {
            let plan = entry.unwrap().1;
            assert!(
                plan.msg_master.is_none() || plan.msg_master == Some(Ipv4Addr::new(10, 0, 255, 1))
            );
        }
        assert!(
            messaged(0, 4, 10, false) && !messaged(0, 5, 10, false) && !messaged(0, 0, 3, true)
        );
        assert!(messaged(0, 3, 10, true) && !messaged(0, 4, 10, true));
        assert!(messaged(1, 0, 2, true) && messaged(2, 1, 3, false));
        let ten = peer_list(0, 10, &load, true, None).unwrap();
        assert!(
            ten.starts_with("client1=node0.0+node1+node2+node3/")
                && ten.contains(",client0=node4+node5+node6+node7/"),
            "{ten}"
        );
    }

    #[test]
    fn the_load_is_checked_as_echo_peers_checks_it() {
        let load = parse_load("10x64@500", "0", "250").unwrap();
        assert_eq!(
            (
                load.udp_count,
                load.udp_size,
                load.udp_rate,
                load.tcp_bytes,
                load.period_ms
            ),
            (10, 64, 500, 0, 250)
        );
        for (udp, tcp, period) in [
            ("10x8@500", "0", "250"),
            ("10", "0", "250"),
            ("1x64@1", "x", "9"),
        ] {
            let e = parse_load(udp, tcp, period).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--peer-udp {udp}")), "{e}");
        }
    }
}
