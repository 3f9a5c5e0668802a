//! `uio-driver --reflect` on a veth pair in namespaces made by the test, against the peer
//! namespace's own kernel: its ARP resolves the reflector, its ping is answered, and UDP
//! datagrams from an ordinary socket come back byte for byte; the reflector's final counters
//! account for each. Needs root (`ip netns`).
mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::VethPair;

const REFLECTOR: &str = "10.77.0.2";
const PEER: &str = "10.77.0.1/24";

#[test]
fn reflector_answers_the_kernel_peer_arp_ping_and_udp() {
    let veth = match VethPair::new("refl") {
        Ok(v) => v,
        Err(e) => {
            testkit::skip(
                "reflector on a veth",
                format_args!("cannot create network namespaces ({e}); run as root with iproute2"),
            );
            return;
        }
    };
    let ok = Command::new("ip")
        .args([
            "-n",
            &veth.ns_peer,
            "addr",
            "add",
            PEER,
            "dev",
            &veth.if_peer,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    // The peer's kernel must put real UDP checksums in what it sends (a veth offloads them by
    // default); the reflector's swaps keep them valid on the way back.
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            &veth.ns_peer,
            "ethtool",
            "-K",
            &veth.if_peer,
            "tx",
            "off",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("ethtool (scripts/setup.sh installs it)");
    assert!(ok.success());
    let (mut child, lines) = common::spawn_until(
        Command::new("ip")
            .args(["netns", "exec", &veth.ns_driver])
            .arg(env!("CARGO_BIN_EXE_uio-driver"))
            .args(["--iface", &veth.if_driver, "--reflect", REFLECTOR]),
        &format!(
            "uio-driver: reflecting iface={} ip={REFLECTOR} mac=02:52:0a:4d:00:02",
            veth.if_driver
        ),
    );

    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &veth.ns_peer,
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            REFLECTOR,
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    const DATAGRAMS: usize = 200;
    let echoed = VethPair::in_ns(&veth.ns_peer, || {
        let s = UdpSocket::bind("10.77.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.connect((REFLECTOR, 1235)).unwrap();
        let mut echoed = 0;
        let mut buf = [0u8; 2048];
        for i in 0..DATAGRAMS {
            let payload: Vec<u8> = (0..1472).map(|j| (i * 7 + j) as u8).collect();
            s.send(&payload).unwrap();
            let n = s.recv(&mut buf).expect("no echo within 2 s");
            assert_eq!(&buf[..n], &payload[..], "datagram {i} came back changed");
            echoed += 1;
        }
        echoed
    });
    assert_eq!(echoed, DATAGRAMS);

    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "reflector exited with {status}");
    let counters = lines
        .iter()
        .find(|l| l.starts_with("uio-driver: reflector counters"))
        .expect("no final counters line");
    assert!(
        counters.contains(&format!(" udp={DATAGRAMS} ")),
        "counters: {counters}"
    );
    // At least the ARP request and two pings (the peer may re-check its neighbour entry).
    let arp_ping: u64 = counters
        .split_whitespace()
        .find_map(|w| w.strip_prefix("arp_ping="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(arp_ping >= 3, "counters: {counters}");
    assert!(
        counters.contains(" tx_full=0 tx_failed=0 "),
        "counters: {counters}"
    );
}
