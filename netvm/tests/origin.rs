//! The originating echo client in host mode, on the real system.xml with real veths and kernel
//! peers (needs root; otherwise says it was skipped): client1, given `--echo-peers`, sends
//! paced UDP echo requests and a TCP stream every round to three peers in the peer namespace,
//! and reports per peer in its stats page (read as `netvm stats` reads it) and on the console:
//!
//! * a kernel echo (`netvm kernel-echo`): UDP and TCP echoed, RTT > 0, nothing bad or failed;
//! * an address nobody has: every request lost, every stream failed, and the rounds go on;
//! * a UDP echo that flips a byte (python, in the namespace): every echo counted bad.
//!
//! Meanwhile both clients still answer echo traffic from the peer namespace.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::system::{counters, echo_check, exclusive, ping, Running, ALL_UP, BOTH_CLIENTS};
use netvm::demo::Lan;

/// The kernel echo, the address nobody has, the corrupting echo.
const GOOD: &str = "10.0.0.1";
const ABSENT: &str = "10.0.0.99";
const CORRUPT: &str = "10.0.0.2";

/// A UDP echo on `CORRUPT`:1235 that flips the last byte of every datagram.
const FLIPPER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.0.2", 1235))
while True:
    d, a = s.recvfrom(4096)
    d = bytearray(d)
    d[-1] ^= 0xff
    s.sendto(bytes(d), a)
"#;

fn python_available() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn an_originating_client_measures_good_absent_and_corrupting_peers() {
    let Some(_one) = exclusive("origin") else {
        return;
    };
    if !python_available() {
        testkit::skip("origin", "python3 is needed for the corrupting echo peer");
        return;
    }
    let peers = format!("client1={GOOD}+{ABSENT}+{CORRUPT}/udp=20x200@200/tcp=20000/period=600");
    let mut sys = Running::echo_system(
        "nvo",
        &[
            "--echo-ips".as_ref(),
            BOTH_CLIENTS.as_ref(),
            "--echo-peers".as_ref(),
            peers.as_ref(),
        ],
        &ALL_UP,
    );
    let peer_ns = sys.peer();
    // The peers: a second address for the corrupting echo, the kernel echo on the first.
    let status = Command::new("ip")
        .args(["-n", &peer_ns, "addr", "add", "10.0.0.2/24", "dev", "peer0"])
        .status()
        .unwrap();
    assert!(status.success(), "adding {CORRUPT} in the peer namespace");
    let mut echo = Lan::exec(&peer_ns, Path::new(env!("CARGO_BIN_EXE_netvm")));
    echo.args(["kernel-echo", "--bind", GOOD]);
    sys.lan.spawn("kernel-echo", echo).expect("kernel echo");
    let mut flipper = Lan::exec(&peer_ns, Path::new("python3"));
    flipper.args(["-c", FLIPPER]);
    sys.lan.spawn("flipper", flipper).expect("corrupting echo");

    sys.wait_for("client1: originating to 3 peers", Duration::from_secs(10));
    // Rounds go on whatever the peers do: the absent one does not hold them up, nor keep the
    // corrupting one (whose address was added after the system started) from resolving.
    sys.wait_line(
        "a round of corrupted echoes",
        Duration::from_secs(30),
        |l| {
            l.contains(&format!("client1: peer {CORRUPT} round "))
                && l.contains("udp 20 sent 0 echoed 20 bad")
        },
    );
    sys.wait_for(
        &format!("client1: peer {ABSENT} round"),
        Duration::from_secs(5),
    );

    // The echo service still answers while the client originates.
    for target in netvm::demo::lan::CLIENTS {
        assert!(ping(&peer_ns, target), "ping {target}");
        let (received, bad) = echo_check(&peer_ns, target, "udp");
        assert!(received > 1_000_000 && bad == 0, "udp echo of {target}");
    }

    // Fresh round lines, from after the load.
    let good_lines = format!("client1: peer {GOOD} round ");
    let seen = sys.seen.iter().filter(|l| l.contains(&good_lines)).count();
    sys.wait_count(&good_lines, seen + 2, Duration::from_secs(10));

    let view = sys.view();
    let stats = counters(&view, "client1");
    for line in sys.seen.iter().filter(|l| l.contains("[client1]")) {
        eprintln!("{line}");
    }
    let get = |name: &str| {
        stats
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
    };
    assert!(get("origin.rounds") >= 4);
    assert!(get("peer0.udp_sent") >= 60, "{stats:?}");
    assert_eq!(
        get("net.rx_bad_checksums"),
        0,
        "the device group is still there"
    );
    for (i, addr) in [GOOD, ABSENT, CORRUPT].iter().enumerate() {
        let ip: std::net::Ipv4Addr = addr.parse().unwrap();
        assert_eq!(get(&format!("peer{i}.addr")), u64::from(u32::from(ip)));
        assert!(get(&format!("peer{i}.udp_sent")) >= 4, "peer{i} {stats:?}");
    }
    // The kernel echo: echoed, timed, checked.
    assert!(get("peer0.udp_echoed") >= 60, "{stats:?}");
    assert_eq!(get("peer0.udp_bad") + get("peer0.udp_dup"), 0, "{stats:?}");
    assert!(get("peer0.rtt_us_min") > 0, "{stats:?}");
    assert!(get("peer0.rtt_us_avg") >= get("peer0.rtt_us_min"));
    assert!(get("peer0.rtt_us_max") >= get("peer0.rtt_us_avg"));
    assert!(get("peer0.tcp_bytes_echoed") >= 3 * 20_000, "{stats:?}");
    assert_eq!(get("peer0.tcp_bad"), 0, "{stats:?}");
    assert!(get("peer0.throughput_kbps") > 0, "{stats:?}");
    // Nobody at the address: lost, failed or skipped while it does not resolve, never echoed.
    assert_eq!(get("peer1.udp_echoed") + get("peer1.tcp_bytes_echoed"), 0);
    assert!(get("peer1.udp_lost") >= 4, "{stats:?}");
    assert!(get("peer1.tcp_failed") >= 1, "{stats:?}");
    assert!(get("peer1.unresolved") >= 1, "{stats:?}");
    // The corrupting echo: every echo bad, none good; its TCP port refuses.
    assert_eq!(get("peer2.udp_echoed"), 0, "{stats:?}");
    assert!(get("peer2.udp_bad") >= 20, "{stats:?}");
    assert!(get("peer2.tcp_failed") >= 1, "{stats:?}");

    // A round line of the kernel echo says it all worked.
    let line = sys
        .seen
        .iter()
        .rev()
        .find(|l| l.contains(&format!("client1: peer {GOOD} round ")))
        .expect("a round line for the kernel echo");
    assert!(
        line.contains("0 bad 0 dup") && line.contains("complete"),
        "{line}"
    );

    // `netvm stats` shows the same counters.
    let out = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .arg("stats")
        .arg("--run-dir")
        .arg(view.dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "netvm stats: {text}");
    assert!(
        text.contains(&format!("({GOOD})")),
        "the peer's address shown: {text}"
    );
    for name in [
        "peer0.udp_echoed",
        "peer1.udp_lost",
        "peer2.udp_bad",
        "peer0.rtt_us_avg",
    ] {
        assert!(text.contains(name), "netvm stats lacks {name}:\n{text}");
    }
    sys.assert_console_free_of(&["panicked"]);
}
