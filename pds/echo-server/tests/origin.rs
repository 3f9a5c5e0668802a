//! The originating role over real shared memory with a scripted copier and virt_tx
//! (net_client::mock): the requests go out at their paced times and only then (the server asks
//! its clock for each wake-up, and sends nothing between them), the scripted peer's echoes are
//! checked, and peers whose address never resolves take turns to ask for it.
use core::net::Ipv4Addr;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Mutex;

use echo_server::origin::RoundLine;
use echo_server::{
    Buffers, Clock, EchoServer, IpConfig, NoCycles, Sockets, TakeOnce, UDP_ECHO_PORT,
};
use net_client::mock::{frames, CountingSignal, MockMemory, MockPeer};
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket,
};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

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

struct Rig {
    server: EchoServer<'static, NoCycles, TestClock>,
    peer: MockPeer<'static>,
    clock: TestClock,
    signal: CountingSignal,
}

fn rig(
    storage: &'static (TakeOnce<Sockets<'static>>, TakeOnce<Buffers>),
    peers: &str,
    log: fn(&RoundLine),
) -> Rig {
    let mem: &'static MockMemory = Box::leak(Box::new(MockMemory::new(64, 64, MAC)));
    let (dev, peer) = mem.connect().unwrap();
    let clock = TestClock::default();
    let ip = IpConfig::Static {
        addr: IP,
        prefix_len: 24,
        gateway: None,
    };
    let mut server = EchoServer::new(
        dev,
        ip,
        storage.0.take().unwrap(),
        storage.1.take().unwrap(),
        NoCycles,
        clock.clone(),
    );
    let plan = echo_api::peers::parse_peer_list(peers)
        .next()
        .unwrap()
        .unwrap()
        .1;
    server.originate(&plan, None, log);
    Rig {
        server,
        peer,
        clock,
        signal: CountingSignal::default(),
    }
}

impl Rig {
    fn exchange(&mut self, input: &[Vec<u8>]) -> Vec<Vec<u8>> {
        for f in input {
            assert!(self.peer.inject(f));
        }
        self.server.process(&mut self.signal);
        std::iter::from_fn(|| self.peer.take_frame()).collect()
    }

    /// Runs to the wake-up the server asked for; what it sent then.
    fn wake(&mut self) -> Vec<Vec<u8>> {
        let at = self
            .clock
            .wake_at
            .get()
            .expect("the server asked to be woken");
        let now = self.clock.now.get();
        assert!(at > now, "a wake-up for {at} at {now}: a busy loop");
        self.clock.now.set(at);
        self.exchange(&[])
    }
}

/// `(destination, source port, payload)` of a UDP frame, or `None`.
fn udp(frame: &[u8]) -> Option<(Ipv4Addr, u16, u16, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    Some((
        ip.dst_addr(),
        udp.src_port(),
        udp.dst_port(),
        udp.payload().to_vec(),
    ))
}

/// The address an ARP request asks for, or `None`.
fn arp_target(frame: &[u8]) -> Option<Ipv4Addr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            target_protocol_addr,
            ..
        } => Some(target_protocol_addr),
        _ => None,
    }
}

fn echo_of(src_port: u16, payload: &[u8]) -> Vec<u8> {
    frames::udp(PEER_MAC, MAC, PEER_IP, IP, UDP_ECHO_PORT, src_port, payload)
}

#[test]
fn requests_go_out_at_their_paced_times_and_echoes_are_checked() {
    static STORAGE: (TakeOnce<Sockets<'static>>, TakeOnce<Buffers>) =
        (TakeOnce::new(Sockets::new()), TakeOnce::new(Buffers::new()));
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn log(line: &RoundLine) {
        LINES.lock().unwrap().push(line.to_string());
    }
    let mut r = rig(&STORAGE, "c=10.0.0.1/udp=4x64@100/tcp=0/period=1000", log);
    // The peer is known (it asked for us), so requests need no ARP.
    // The first run starts round 1: its first request goes out with the ARP reply.
    let first = r.exchange(&[frames::arp_request(PEER_MAC, PEER_IP, IP)]);
    let mut out: Vec<Vec<u8>> = first.into_iter().filter(|f| udp(f).is_some()).collect();
    let mut times = Vec::new();
    for n in 0..4 {
        let (dst, src_port, dst_port, payload) = udp(&out[0]).expect("a request");
        assert_eq!((dst, src_port, dst_port), (PEER_IP, 40_000, UDP_ECHO_PORT));
        assert_eq!(payload.len(), 64);
        times.push(r.clock.now.get());
        let mut echo = payload.clone();
        if n == 3 {
            echo[40] ^= 1; // the last echo corrupted
        }
        r.clock.now.set(r.clock.now.get() + 500);
        assert!(r.exchange(&[echo_of(src_port, &echo)]).is_empty());
        if n == 0 {
            // A duplicate of a good echo.
            r.exchange(&[echo_of(src_port, &payload)]);
        }
        // Nothing more until the next request is due.
        assert!(r.exchange(&[]).is_empty(), "sent between paced times");
        out = r.wake();
    }
    assert_eq!(times, [0, 10_000, 20_000, 30_000], "paced at 100/s");
    // After the 4th request only the round's end was due; round 2 starts with its first.
    assert_eq!(r.clock.now.get(), 1_000_000);
    assert_eq!(out.len(), 1, "round 2's first request");
    let peers: Vec<_> = r.server.origin_peers().collect();
    let (addr, c) = peers[0];
    assert_eq!(addr, PEER_IP);
    assert_eq!(
        (c.udp_sent, c.udp_echoed, c.udp_bad, c.udp_dup, c.udp_lost),
        (5, 3, 1, 1, 0)
    );
    assert_eq!(c.rtt_us_min, 500);
    let lines = LINES.lock().unwrap();
    assert_eq!(
        lines[0],
        "peer 10.0.0.1 round 1: udp 4 sent 3 echoed 1 bad 1 dup 0 late 0 lost, rtt min/avg/max 500/500/500 us"
    );
}

#[test]
fn unresolved_peers_take_turns_to_ask_for_their_address() {
    static STORAGE: (TakeOnce<Sockets<'static>>, TakeOnce<Buffers>) =
        (TakeOnce::new(Sockets::new()), TakeOnce::new(Buffers::new()));
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    fn log(line: &RoundLine) {
        LINES.lock().unwrap().push(line.to_string());
    }
    let mut r = rig(
        &STORAGE,
        "c=10.0.0.3+10.0.0.4/udp=1x64@100/tcp=0/period=600",
        log,
    );
    let mut asked = Vec::new();
    let mut out = r.exchange(&[]);
    while r.clock.now.get() < 12_000_000 {
        asked.extend(out.iter().filter_map(|f| arp_target(f)));
        assert!(out.iter().all(|f| udp(f).is_none()), "nothing resolves");
        out = r.wake();
    }
    let third = Ipv4Addr::new(10, 0, 0, 3);
    let fourth = Ipv4Addr::new(10, 0, 0, 4);
    let count = |a| asked.iter().filter(|t| **t == a).count();
    assert!(
        count(third) >= 2 && count(fourth) >= 2,
        "ARP requests: {asked:?}"
    );
    let lines = LINES.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("skipped")), "{lines:?}");
    let c: Vec<_> = r.server.origin_peers().map(|(_, c)| c).collect();
    assert!(c
        .iter()
        .all(|c| c.udp_echoed == 0 && c.unresolved > 0 && c.udp_lost > 0));
}
