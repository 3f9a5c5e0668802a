//! Frames for the fault-injection tests: the MACs of system.macs, hand-made Ethernet, IPv4,
//! UDP and TCP with right and wrong checksums, a flood of malformed frames by the counter that
//! must count each, and a raw AF_PACKET sender in a network namespace.
use std::io::Write as _;
use std::process::Command;

/// The clients' MACs, in the order system.macs lists them.
pub fn client_macs() -> Vec<[u8; 6]> {
    let text = std::fs::read_to_string(super::workspace().join("system.macs")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| sdf::net::parse_mac(l.split_once('=').unwrap().1).unwrap())
        .collect()
}

/// The Internet checksum of `data`.
pub fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The kernel peer's MAC and address, and client 0's address, on the test LAN.
pub const PEER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];
pub const PEER_IP: [u8; 4] = [10, 0, 0, 1];
pub const CLIENT0_IP: [u8; 4] = [10, 0, 0, 10];

/// An Ethernet frame from the peer to `dst`.
pub fn ether(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A valid IPv4 header (checksum right) for `payload_len` bytes of `proto`.
pub fn ipv4(proto: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&PEER_IP);
    h.extend_from_slice(&CLIENT0_IP);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A UDP or TCP segment to client 0 with its checksum deliberately wrong.
pub fn bad_l4(proto: u8, port: u16) -> Vec<u8> {
    let mut seg = if proto == 17 {
        let mut u = vec![0x30, 0x39];
        u.extend_from_slice(&port.to_be_bytes());
        u.extend_from_slice(&(8u16 + 32).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&[0x5a; 32]);
        u
    } else {
        let mut t = vec![0x30, 0x39];
        t.extend_from_slice(&port.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        t
    };
    let mut pseudo = PEER_IP.to_vec();
    pseudo.extend_from_slice(&CLIENT0_IP);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&seg);
    let right = csum(&pseudo);
    let wrong = (right ^ 0x5555).max(1);
    let at = if proto == 17 { 6 } else { 16 };
    seg[at..at + 2].copy_from_slice(&wrong.to_be_bytes());
    let mut ip = ipv4(proto, seg.len());
    ip.extend_from_slice(&seg);
    ip
}

/// The malformed frames, by the counter that must count each.
pub struct Flood {
    pub frames: Vec<Vec<u8>>,
    pub bad_headers: u64,
    pub bad_checksums: u64,
    pub oversize: u64,
    pub unmatched: u64,
}

/// `rounds` rounds of every kind of malformed frame for client 0 (MAC `client0`).
pub fn malformed_frames(client0: [u8; 6], rounds: usize) -> Flood {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut f = Flood {
        frames: Vec::new(),
        bad_headers: 0,
        bad_checksums: 0,
        oversize: 0,
        unmatched: 0,
    };
    for _ in 0..rounds {
        // Runt: an Ethernet header and nothing else (AF_PACKET will not send less).
        f.frames.push(ether(client0, 0x0800, &[]));
        // Truncated IPv4 header.
        f.frames.push(ether(client0, 0x0800, &ipv4(17, 0)[..10]));
        // IPv4 total length beyond the frame.
        let mut long = ipv4(17, 400);
        long.extend_from_slice(&[0; 8]);
        f.frames.push(ether(client0, 0x0800, &long));
        // Truncated UDP header in a consistent IPv4 packet.
        let mut short = ipv4(17, 4);
        short.extend_from_slice(&[0x30, 0x39, 0x04, 0xd3]);
        f.frames.push(ether(client0, 0x0800, &short));
        // Truncated ARP.
        f.frames.push(ether(client0, 0x0806, &[0, 1, 8, 0, 6]));
        f.bad_headers += 5;
        // Bad IPv4 header checksum.
        let mut ip = ipv4(17, 8);
        ip[10] ^= 0xff;
        ip.extend_from_slice(&[0x30, 0x39, 0x04, 0xd3, 0, 8, 0, 0]);
        f.frames.push(ether(client0, 0x0800, &ip));
        // Bad UDP checksum (to the echo port) and bad TCP checksum (a SYN to the echo port).
        f.frames.push(ether(client0, 0x0800, &bad_l4(17, 1235)));
        f.frames.push(ether(client0, 0x0800, &bad_l4(6, 1236)));
        f.bad_checksums += 3;
        // A giant: longer than any sDDF buffer (the test's veths allow it through).
        f.frames.push(ether(client0, 0x0800, &vec![0xab; 4000]));
        f.oversize += 1;
        // Random bytes to a MAC nobody has.
        let junk: Vec<u8> = (0..60 + next() % 1400).map(|_| next() as u8).collect();
        f.frames.push(ether(
            [0x02, 0x99, 0, 0, 0, 7],
            (next() as u16) | 0x0600,
            &junk,
        ));
        f.unmatched += 1;
    }
    f
}

/// Sends `frames` from `iface` in namespace `ns` with a real AF_PACKET socket (Python's, so
/// the test needs no unsafe code), as fast as the socket takes them.
pub fn send_raw(ns: &str, iface: &str, frames: &[Vec<u8>]) {
    let dir = super::temp_dir("flood");
    let path = dir.join("frames.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    for f in frames {
        file.write_all(&(f.len() as u32).to_be_bytes()).unwrap();
        file.write_all(f).unwrap();
    }
    drop(file);
    let script = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[2], 0))
data = open(sys.argv[1], 'rb').read()
i = sent = 0
while i < len(data):
    (n,) = struct.unpack_from('>I', data, i)
    frame = data[i + 4:i + 4 + n]
    while True:
        try:
            s.send(frame)
            break
        except OSError as e:
            if e.errno != 105:  # ENOBUFS: the queue is full, wait a little
                raise
            time.sleep(0.0005)
    i += 4 + n
    sent += 1
print(sent)
"#;
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .arg(&path)
        .arg(iface)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "raw sender: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(sent, frames.len());
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs `ip args`, which must succeed.
pub fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}
