//! A client PD as a node of node messaging, in host mode on the real system.xml with real veths
//! (needs root; otherwise says it was skipped): client1 at 10.0.3.11/16 (node 3; 10.0.1.0/24 is the test LAN's reference path), given
//! `--echo-peers client1=10.0.2.10+10.0.4.10/.../msg=10.0.255.1`, joins a `netvm node master`
//! in the peer namespace and messages every round the nodes 2 and 4:
//!
//! * a `netvm node exchange` host process as node 2: the PD's first message to it (3000 bytes,
//!   three fragments) is delivered and verified by the host, the host's to the PD received and
//!   verified by the PD; once the host node has left, messages to it are reported lost;
//! * node 4 never joins: every message to it is lost;
//! * junk datagrams at port 1240 and a message with the wrong content count as bad, and the
//!   PD goes on.
mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::system::{counters, exclusive, Running, ALL_UP};
use netvm::demo::Lan;

const NETVM: &str = env!("CARGO_BIN_EXE_netvm");
const MASTER: &str = "10.0.255.1:1240";
const HOST_NODE: &str = "10.0.2.10:1240";

fn in_ns(ns: &str, program: &str, args: &[&str]) -> Output {
    let mut c = Lan::exec(ns, Path::new(program));
    c.args(args);
    c.output().unwrap()
}

/// The numbers of node `node` on the PD's latest round line
/// (`; node 2: S sent D delivered L lost R received`).
fn peer_numbers(sys: &Running, node: u8) -> Option<[u64; 4]> {
    let line = sys
        .seen
        .iter()
        .rev()
        .find(|l| l.contains("client1: msg round "))?;
    let tail = line.split(&format!("; node {node}: ")).nth(1)?;
    let mut words = tail.split_whitespace().step_by(2);
    let mut out = [0u64; 4];
    for v in &mut out {
        *v = words.next()?.parse().ok()?;
    }
    Some(out)
}

#[test]
fn a_client_pd_exchanges_verified_messages_with_a_host_node() {
    let Some(_one) = exclusive("pd_messaging") else {
        return;
    };
    let peers = "client1=10.0.2.10+10.0.4.10/udp=0x16@1/tcp=0/period=400/msg=10.0.255.1";
    let ips = "client0=10.0.0.10/24,client1=10.0.3.11/16";
    let args = ["--echo-ips", ips, "--echo-peers", peers];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let mut sys = Running::echo_system("nvmsg", &args, &ALL_UP);
    let peer_ns = sys.peer();
    for addr in ["10.0.255.1/16", "10.0.2.10/16"] {
        let status = Command::new("ip")
            .args(["-n", &peer_ns, "addr", "add", addr, "dev", "peer0"])
            .status()
            .unwrap();
        assert!(status.success(), "adding {addr} in the peer namespace");
    }
    sys.wait_for(
        "client1: node messaging through the master at 10.0.255.1",
        Duration::from_secs(5),
    );
    let mut master = Lan::exec(&peer_ns, Path::new(NETVM));
    master.args(["node", "master", "--listen", MASTER, "--timeout", "120s"]);
    sys.lan.spawn("master", master).expect("node master");
    // The PD's first join found no master; it joins again in a later round.
    sys.wait_for("client1: node id 3", Duration::from_secs(15));

    let exchange = in_ns(
        &peer_ns,
        NETVM,
        &[
            "node",
            "exchange",
            "--master",
            MASTER,
            "--bind",
            HOST_NODE,
            "--peers",
            "2,3",
            "--size",
            "3000",
            "--timeout",
            "20s",
        ],
    );
    let text = String::from_utf8_lossy(&exchange.stdout);
    assert!(exchange.status.success(), "host node:\n{text}");
    assert!(text.contains("3 -> 2: 3000 bytes verified"), "{text}");
    assert!(text.contains("2 -> 3: 3000 bytes delivered"), "{text}");

    // Hostile input at the node's port: junk, and a well-formed message with wrong content.
    let junk = "for i in 1 2 3; do printf junk > /dev/udp/10.0.3.11/1240; done";
    assert!(in_ns(&peer_ns, "bash", &["-c", junk]).status.success());
    let wrong = in_ns(
        &peer_ns,
        NETVM,
        &[
            "node", "send", "--master", MASTER, "--bind", HOST_NODE, "--to", "3", "hello",
        ],
    );
    assert!(
        wrong.status.success(),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // The host node has left for good: the PD's messages to it are lost from now on.
    let rounds = sys
        .seen
        .iter()
        .filter(|l| l.contains("client1: msg round "))
        .count();
    sys.wait_count("client1: msg round ", rounds + 2, Duration::from_secs(5));
    let lost_before = peer_numbers(&sys, 2).map_or(0, |n| n[2]);
    sys.wait_line(
        "a message to the departed node lost",
        Duration::from_secs(15),
        |l| {
            l.contains("client1: msg round ")
                && l.split("; node 2: ")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().nth(4))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|lost| lost > lost_before)
        },
    );
    let [sent2, delivered2, lost2, received2] = peer_numbers(&sys, 2).unwrap();
    assert!(
        delivered2 >= 1 && received2 >= 1,
        "node 2: {sent2} {delivered2} {lost2} {received2}"
    );
    let [sent3, delivered3, lost3, received3] = peer_numbers(&sys, 4).unwrap();
    assert!(sent3 >= 3 && lost3 >= 2, "node 4: {sent3} {lost3}");
    assert_eq!((delivered3, received3), (0, 0));

    for line in sys.seen.iter().filter(|l| l.contains("client1: ")) {
        eprintln!("{line}");
    }
    let view = sys.view();
    let stats = counters(&view, "client1");
    let get = |name: &str| {
        stats
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
    };
    assert_eq!(get("msg.id"), 3);
    assert!(get("msg.sent") >= sent2 + sent3, "{stats:?}");
    assert!(get("msg.delivered") >= 1, "{stats:?}");
    assert!(get("msg.lost") >= lost2 + lost3, "{stats:?}");
    // The exchange's message (and the wrong one, which the PD's node acknowledged).
    assert_eq!(get("msg.received"), 1, "{stats:?}");
    assert!(
        get("msg.bad") >= 4,
        "3 junk datagrams, 1 wrong message: {stats:?}"
    );
    assert_eq!(
        get("peer0.addr"),
        u64::from(u32::from(std::net::Ipv4Addr::new(10, 0, 2, 10)))
    );
    sys.assert_alive(&["client1"]);
}
