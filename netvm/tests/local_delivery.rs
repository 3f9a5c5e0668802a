//! Host mode, the real system.xml: clients of one system reach each other inside it
//! (`netvm_api::vswitch`), and a raw capture on the peer end of the driver's veth, running all
//! the while, proves none of their frames left through the driver.
//!
//! * The kernel peer sends client 0 an ARP request and UDP echo requests that claim to come from
//!   client 1 (its address and MAC): client 0's ARP reply and echoes go to client 1's MAC, so
//!   virt_tx delivers them through client 1's copier, and client 1 answers (port unreachable)
//!   the same way; virt_tx's and the copier's counters show the local path, and frames client 0
//!   sends the peer do show in the capture. Without local delivery the capture sees them all
//!   (the test fails then, on the capture as on the counters).
//! * client 1, originating (`--echo-peers`), echoes UDP and TCP with client 0 and checks every
//!   echo itself.
//!
//! Needs root (network namespaces); otherwise it says it was skipped.
mod common;

use std::process::{Command, Stdio};

use common::frames::{client_macs, csum, send_raw};
use common::system::{
    assert_buffers_accounted, counters, delta, exclusive, ping, Running, ALL_UP, BOTH_CLIENTS,
};
use netvm::demo::lan;

const CLIENT0_IP: [u8; 4] = [10, 0, 0, 10];
const CLIENT1_IP: [u8; 4] = [10, 0, 0, 11];
const REQUESTS: u64 = 20;

/// A UDP echo request to client 0 that claims to come from client 1 (`client1`: its MAC).
fn spoofed_request(client0: [u8; 6], client1: [u8; 6], seq: u8) -> Vec<u8> {
    let payload = [seq; 32];
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&echo_api::UDP_ECHO_PORT.to_be_bytes());
    udp.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let mut pseudo = CLIENT1_IP.to_vec();
    pseudo.extend_from_slice(&CLIENT0_IP);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let c = csum(&pseudo);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0, seq, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&CLIENT1_IP);
    ip.extend_from_slice(&CLIENT0_IP);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    let mut frame = client0.to_vec();
    frame.extend_from_slice(&client1);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame
}

/// An ARP request to client 0 that claims to come from client 1: client 0 learns client 1's
/// MAC from it and answers to that MAC, which is then local too.
fn spoofed_arp(client0: [u8; 6], client1: [u8; 6]) -> Vec<u8> {
    let mut frame = client0.to_vec();
    frame.extend_from_slice(&client1);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&client1);
    frame.extend_from_slice(&CLIENT1_IP);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&CLIENT0_IP);
    frame
}

/// Counts what arrives at `iface` in namespace `ns` for `secs` seconds (frames the interface
/// sends are left out): `total to_client0 to_client1 ip_between_clients from_client0`.
const CAPTURE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.1)
c0, c1 = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
ip0, ip1 = bytes([10, 0, 0, 10]), bytes([10, 0, 0, 11])
total = to0 = to1 = ip01 = from0 = 0
print("capturing", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        f, addr = s.recvfrom(4096)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    total += 1
    to0 += f[0:6] == c0
    to1 += f[0:6] == c1
    from0 += f[6:12] == c0
    ip01 += f[12:14] == b"\x08\x00" and sorted([f[26:30], f[30:34]]) == [ip0, ip1]
print(total, to0, to1, ip01, from0, flush=True)
"#;

/// What [`CAPTURE`] counted.
struct Seen {
    to_client0: u64,
    to_client1: u64,
    ip_between_clients: u64,
    from_client0: u64,
}

impl Seen {
    fn assert_nothing_between_clients(&self) {
        assert_eq!(
            self.to_client0, 0,
            "a frame to client0's MAC left the system"
        );
        assert_eq!(
            self.to_client1, 0,
            "a frame to client1's MAC left the system"
        );
        assert_eq!(
            self.ip_between_clients, 0,
            "a packet between client0 and client1 left the system"
        );
    }
}

/// [`CAPTURE`] running on the peer end of the driver's veth.
struct Capture {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Capture {
    /// Starts capturing for `secs` seconds and waits until it is.
    fn start(peer: &str, macs: &[[u8; 6]], secs: u32) -> Capture {
        let hex = |m: &[u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut child = Command::new("ip")
            .args(["netns", "exec", peer, "python3", "-c", CAPTURE, "peer0"])
            .arg(secs.to_string())
            .args([hex(&macs[0]), hex(&macs[1])])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "capturing");
        Capture { child, out }
    }

    /// Waits for the end of the capture and reads what it counted.
    fn finish(mut self) -> Seen {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut line).unwrap();
        assert!(self.child.wait().unwrap().success(), "capture failed");
        let n: Vec<u64> = line
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        let [total, to_client0, to_client1, ip_between_clients, from_client0] = n[..] else {
            panic!("capture printed {line:?}");
        };
        eprintln!("capture on peer0: {total} frames, {from_client0} from client0");
        Seen {
            to_client0,
            to_client1,
            ip_between_clients,
            from_client0,
        }
    }
}

#[test]
fn frames_between_clients_of_one_system_never_leave_through_the_driver() {
    let Some(_one) = exclusive("local_delivery") else {
        return;
    };
    let sys = Running::echo_system(
        "nvl",
        &["--echo-ips".as_ref(), BOTH_CLIENTS.as_ref()],
        &ALL_UP,
    );
    sys.assert_console_free_of(&["local delivery off", "panicked"]);
    let peer = sys.peer();
    let view = sys.view();
    let macs = client_macs();
    let capture = Capture::start(&peer, &macs, 4);

    let (tx0, cp1) = (
        counters(&view, "net_virt_tx"),
        counters(&view, "client1_net_copier"),
    );
    send_raw(&peer, "peer0", &[spoofed_arp(macs[0], macs[1])]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let frames: Vec<Vec<u8>> = (0..REQUESTS as u8)
        .map(|i| spoofed_request(macs[0], macs[1], i))
        .collect();
    send_raw(&peer, "peer0", &frames);
    // Frames from client 0 that do go to the peer: the capture sees the driver's output.
    assert!(ping(&peer, lan::CLIENTS[0]), "ping client0");

    let seen = capture.finish();
    assert!(
        seen.from_client0 > 0,
        "the capture sees what the driver sends"
    );
    seen.assert_nothing_between_clients();

    let (tx1, cp2) = (
        counters(&view, "net_virt_tx"),
        counters(&view, "client1_net_copier"),
    );
    let echoed = delta(&tx0, &tx1, "client0.local_delivered");
    assert!(
        echoed >= REQUESTS,
        "client0 delivered {echoed} frames locally"
    );
    let copied = delta(&cp1, &cp2, "copier.local_frames");
    assert!(
        copied >= REQUESTS,
        "client1's copier copied {copied} local frames"
    );
    assert_eq!(delta(&tx0, &tx1, "client1.local_misbehaviour"), 0);
    assert!(
        delta(&tx0, &tx1, "client1.local_delivered") > 0,
        "client1 answered locally"
    );
    assert_buffers_accounted(&view, "after local delivery", &[]);
}

/// The originating role (`--echo-peers`): client1 echoes UDP and TCP with client0 of the same
/// system, verified by client1 itself, and none of it leaves through the driver.
#[test]
fn client1_echoes_with_client0_inside_the_system() {
    let Some(_one) = exclusive("local_delivery") else {
        return;
    };
    let peers = "client1=10.0.0.10/udp=20x200@200/tcp=20000/period=600";
    let mut sys = Running::echo_system(
        "nvk",
        &[
            "--echo-ips".as_ref(),
            BOTH_CLIENTS.as_ref(),
            "--echo-peers".as_ref(),
            peers.as_ref(),
        ],
        &ALL_UP,
    );
    let peer = sys.peer();
    let view = sys.view();
    let capture = Capture::start(&peer, &client_macs(), 4);
    let rounds = "client1: peer 10.0.0.10 round ";
    sys.wait_count(rounds, 3, std::time::Duration::from_secs(30));
    let seen = capture.finish();
    seen.assert_nothing_between_clients();

    let stats = counters(&view, "client1");
    let get = |name: &str| stats.get(name).unwrap_or_else(|| panic!("no {name}"));
    assert!(get("peer0.udp_echoed") >= 40, "{stats:?}");
    assert_eq!(get("peer0.udp_bad") + get("peer0.udp_dup"), 0, "{stats:?}");
    assert!(get("peer0.tcp_bytes_echoed") >= 2 * 20_000, "{stats:?}");
    assert_eq!(get("peer0.tcp_bad"), 0, "{stats:?}");
    let tx = counters(&view, "net_virt_tx");
    for c in ["client0", "client1"] {
        let delivered = tx.get(&format!("{c}.local_delivered")).unwrap();
        assert!(delivered > 0, "{c}: {tx:?}");
        assert_eq!(tx.get(&format!("{c}.local_misbehaviour")), Some(0));
    }
    assert_buffers_accounted(&view, "after client1's echoes", &[]);
}
