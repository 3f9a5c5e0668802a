//! The messaging role over real shared memory with a scripted copier and virt_tx
//! (net_client::mock): behind the scripted peer run a `node_msg::Master` and a second
//! `node_msg::Node`; the PD joins, its message is delivered to the other node with the content
//! `node_msg::content` calls for, the other node's is checked by the PD, junk is counted bad,
//! and between events the PD sleeps until the wake-up it asked its clock for.
use core::net::{Ipv4Addr, SocketAddrV4};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Mutex;

use echo_server::msg::MsgLine;
use echo_server::{Buffers, Clock, EchoServer, IpConfig, NoCycles, Sockets, TakeOnce};
use net_client::mock::{frames, CountingSignal, MockMemory, MockPeer};
use node_msg::{Config, Master, Node, PORT};
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket};

const MAC: [u8; 6] = [0x52, 0x54, 0x01, 0x00, 0x03, 0x11];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 11);
const MASTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 1);
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 10);

#[derive(Clone, Default)]
struct TestClock {
    now: Rc<Cell<u64>>,
    wake_at: Rc<Cell<Option<u64>>>,
}

impl Clock for TestClock {
    fn now_us(&mut self) -> u64 {
        self.now.get()
    }
    fn wake_in(&mut self, delay_us: u64) {
        self.wake_at.set(Some(self.now.get() + delay_us));
    }
}

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
fn log(line: &MsgLine<'_>) {
    LINES.lock().unwrap().push(line.to_string());
}
fn log_round(_: &echo_server::origin::RoundLine) {}

/// `(source, destination, payload)` of a UDP datagram to port 1240, or `None`.
fn msg_datagram(frame: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    let from = SocketAddrV4::new(ip.src_addr(), udp.src_port());
    let to = SocketAddrV4::new(ip.dst_addr(), udp.dst_port());
    (udp.dst_port() == PORT).then(|| (from, to, udp.payload().to_vec()))
}

/// The scripted side: the master and the other node, at their addresses.
struct Lan {
    master: Box<Master>,
    other: Box<Node>,
}

impl Lan {
    /// Hands every datagram in `out` to its addressee and returns the frames for the PD that
    /// the answers make (the master's and the other node's, until nothing more moves).
    fn carry(&mut self, now_ms: u64, out: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut to_pd = Vec::new();
        let mut queue: Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)> =
            out.iter().filter_map(|f| msg_datagram(f)).collect();
        let mut buf = [0u8; 1472];
        for _ in 0..8 {
            for (from, to, bytes) in queue.drain(..) {
                match *to.ip() {
                    MASTER_IP => self.master.handle_datagram(from, &bytes),
                    OTHER_IP => self.other.handle_datagram(now_ms, from, &bytes),
                    _ => panic!("a datagram to {to}"),
                }
            }
            self.other.handle_timeout(now_ms);
            let me = SocketAddrV4::new(OTHER_IP, PORT);
            let master = SocketAddrV4::new(MASTER_IP, PORT);
            while let Some((to, n)) = self.other.poll_transmit(now_ms, &mut buf) {
                queue.push((me, to, buf[..n].to_vec()));
            }
            while let Some((to, n)) = self.master.poll_transmit(&mut buf) {
                queue.push((master, to, buf[..n].to_vec()));
            }
            let (pd, rest): (Vec<_>, Vec<_>) = queue.drain(..).partition(|d| *d.1.ip() == IP);
            queue = rest;
            for (from, _, bytes) in pd {
                let (src, port) = (*from.ip(), from.port());
                to_pd.push(frames::udp(PEER_MAC, MAC, src, IP, port, PORT, &bytes));
            }
        }
        to_pd
    }
}

#[test]
fn the_pd_joins_and_exchanges_checked_messages_with_another_node() {
    static STORAGE: (TakeOnce<Sockets<'static>>, TakeOnce<Buffers>) =
        (TakeOnce::new(Sockets::new()), TakeOnce::new(Buffers::new()));
    let mem: &'static MockMemory = Box::leak(Box::new(MockMemory::new(64, 64, MAC)));
    let (dev, mut peer): (_, MockPeer<'static>) = mem.connect().unwrap();
    let clock = TestClock::default();
    let ip = IpConfig::Static {
        addr: IP,
        prefix_len: 16,
        gateway: None,
    };
    let (sockets, buffers) = (STORAGE.0.take().unwrap(), STORAGE.1.take().unwrap());
    let mut server = EchoServer::new(dev, ip, sockets, buffers, NoCycles, clock.clone());
    let plan = echo_api::peers::parse_peer_list(
        "client1=10.0.2.10/udp=0x16@1/tcp=0/period=1000/msg=10.0.255.1",
    )
    .next()
    .unwrap()
    .unwrap()
    .1;
    server.originate(&plan, None, log_round);
    // Whatever node it is given, the PD starts it over.
    let node = Box::leak(Box::new(Node::new(
        SocketAddrV4::new(OTHER_IP, 9),
        [9; 6],
        5,
        Config::default(),
    )));
    server.message(node, MASTER_IP, &plan, log);
    let master_at = SocketAddrV4::new(MASTER_IP, PORT);
    let mut lan = Lan {
        master: Box::new(Master::new(254)),
        other: Box::new(Node::new(master_at, [2; 6], 7, Config::default())),
    };
    let mut signal = CountingSignal::default();
    // Both addresses announce themselves, so the PD needs no ARP.
    let mut input = vec![
        frames::arp_request(PEER_MAC, MASTER_IP, IP),
        frames::arp_request(PEER_MAC, OTHER_IP, IP),
    ];
    let mut sent_other = false;
    let mut got = Vec::new();
    for _ in 0..40 {
        for f in &input {
            assert!(peer.inject(f));
        }
        server.process(&mut signal);
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| peer.take_frame()).collect();
        let now_ms = clock.now.get() / 1000;
        input = lan.carry(now_ms, &out);
        if lan.other.id() == Some(2) && !sent_other {
            let mut m = vec![0u8; 3000];
            node_msg::content::fill(2, 3, 0, &mut m);
            lan.other.send(now_ms, 3, &m).unwrap();
            sent_other = true;
            input.extend(lan.carry(now_ms, &[]));
        }
        let mut buf = vec![0u8; node_msg::MAX_MESSAGE];
        if let Ok((src, n)) = lan.other.try_recv(&mut buf) {
            got.push((src, node_msg::content::check(3, 2, &buf[..n]), n));
        }
        if input.is_empty() {
            let at = clock.wake_at.get().expect("the PD asked to be woken");
            assert!(at > clock.now.get(), "a wake-up for now: a busy loop");
            clock.now.set(at);
        }
    }
    // One message a round, numbered from 0, 3000 and 64 bytes in turn, every byte as keyed.
    assert!(got.len() >= 10, "{got:?}");
    for (k, m) in got.iter().enumerate() {
        let size = if k % 2 == 0 { 3000 } else { 64 };
        assert_eq!(*m, (3, Some(k as u32), size), "message {k}");
    }
    assert!(LINES.lock().unwrap().iter().any(|l| l == "node id 3"));
    // Junk at the node's port.
    let junk = frames::udp(PEER_MAC, MAC, OTHER_IP, IP, PORT, PORT, b"junk");
    assert!(peer.inject(&junk));
    server.process(&mut signal);
    let (c, peers) = server.messaging().unwrap();
    assert_eq!((c.id, c.received, c.bad), (3, 1, 1), "{c:?}");
    assert!(
        c.sent >= got.len() as u64 && c.delivered >= got.len() as u64 - 1,
        "{c:?}"
    );
    assert_eq!((peers[0].id, peers[0].received), (2, 1));
}
