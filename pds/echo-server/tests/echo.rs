//! The echo server over real shared memory (sddf OwnedRegions) with a scripted copier and virt_tx
//! (net_client::mock), answering frames built with smoltcp's wire module and a second smoltcp
//! stack acting as the remote host.
use core::net::Ipv4Addr;
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use echo_server::{
    Buffers, Clock, CycleSource, EchoServer, IpConfig, Sockets, TakeOnce, TCP_ECHO_CONNS,
    TCP_ECHO_PORT, UDP_ECHO_PORT, UTILISATION_PORT,
};
use net_client::filter;
use net_client::mock::{frames, CountingSignal, MockMemory, MockPeer};
use sddf::BuffDesc;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpProtocol, Ipv4Packet,
    TcpPacket, TcpSeqNumber, UdpPacket,
};
use testkit::Rng;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const RX_BUFFERS: u16 = 64;
const TX_BUFFERS: u16 = 64;

/// Time the test controls, and the wake-up the server asked for last (absolute, in µs).
#[derive(Clone, Default)]
struct TestClock {
    now: Rc<Cell<u64>>,
    wake_at: Rc<Cell<Option<u64>>>,
}

impl TestClock {
    fn advance_ms(&self, ms: u64) {
        self.now.set(self.now.get() + ms * 1000);
    }
    fn set_us(&self, us: u64) {
        self.now.set(us);
    }
    fn instant(&self) -> Instant {
        Instant::from_micros(self.now.get() as i64)
    }
}

impl Clock for TestClock {
    fn now_us(&mut self) -> u64 {
        self.now.get()
    }
    fn wake_in(&mut self, delay_us: u64) {
        self.wake_at.set(Some(self.now.get() + delay_us));
    }
}

/// Counters that advance by (idle 7, total 100) per sample.
#[derive(Default)]
struct TestCycles {
    samples: u64,
    started: u32,
    stopped: u32,
}

impl CycleSource for TestCycles {
    fn sample(&mut self) -> (u64, u64) {
        self.samples += 1;
        (7 * self.samples, 100 * self.samples)
    }
    fn measurement_started(&mut self) {
        self.started += 1;
    }
    fn measurement_stopped(&mut self) {
        self.stopped += 1;
    }
}

type Server = EchoServer<'static, TestCycles, TestClock>;

struct Rig {
    server: Server,
    peer: MockPeer<'static>,
    clock: TestClock,
    signal: CountingSignal,
}

/// Each test's own socket storage (tests run in parallel).
struct Storage {
    sockets: TakeOnce<Sockets<'static>>,
    buffers: TakeOnce<Buffers>,
}

impl Storage {
    const fn new() -> Self {
        Storage {
            sockets: TakeOnce::new(Sockets::new()),
            buffers: TakeOnce::new(Buffers::new()),
        }
    }
}

fn rig(storage: &'static Storage) -> Rig {
    rig_with(
        storage,
        IpConfig::Static {
            addr: IP,
            prefix_len: 24,
            gateway: None,
        },
    )
}

fn rig_with(storage: &'static Storage, ip: IpConfig) -> Rig {
    let mem: &'static MockMemory =
        Box::leak(Box::new(MockMemory::new(RX_BUFFERS, TX_BUFFERS, MAC)));
    let (dev, peer) = mem.connect().unwrap();
    let clock = TestClock::default();
    let server = EchoServer::new(
        dev,
        ip,
        storage.sockets.take().unwrap(),
        storage.buffers.take().unwrap(),
        TestCycles::default(),
        clock.clone(),
    );
    Rig {
        server,
        peer,
        clock,
        signal: CountingSignal::default(),
    }
}

impl Rig {
    /// Delivers frames, lets the server run, returns what it sent.
    fn exchange(&mut self, input: &[Vec<u8>]) -> Vec<Vec<u8>> {
        for f in input {
            assert!(self.peer.inject(f), "copier ran out of client buffers");
        }
        self.server.process(&mut self.signal);
        std::iter::from_fn(|| self.peer.take_frame()).collect()
    }

    /// Teaches the server the peer's MAC the way a real peer does: by ARP.
    fn arp_from_peer(&mut self) {
        let out = self.exchange(&[frames::arp_request(PEER_MAC, PEER_IP, IP)]);
        assert_eq!(out.len(), 1);
    }

    fn audit(&mut self) {
        self.peer.audit(self.server.device()).unwrap();
    }
}

fn udp_to_server(payload: &[u8]) -> Vec<u8> {
    frames::udp(PEER_MAC, MAC, PEER_IP, IP, 5000, UDP_ECHO_PORT, payload)
}

/// Checks a frame the server sent is well-formed UDP from 1235 to the peer; returns the payload.
fn udp_payload(frame: &[u8]) -> Vec<u8> {
    assert_eq!(
        filter::check(frame),
        Ok(()),
        "server sent a malformed frame"
    );
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), EthernetAddress(PEER_MAC));
    assert_eq!(eth.src_addr(), EthernetAddress(MAC));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (IP, PEER_IP));
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (UDP_ECHO_PORT, 5000));
    udp.payload().to_vec()
}

#[test]
fn answers_arp_for_its_address_only() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    let out = r.exchange(&[frames::arp_request(PEER_MAC, PEER_IP, IP)]);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    assert_eq!(eth.dst_addr(), EthernetAddress(PEER_MAC));
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(MAC),
            source_protocol_addr: IP,
            target_hardware_addr: EthernetAddress(PEER_MAC),
            target_protocol_addr: PEER_IP,
        }
    );
    let other = frames::arp_request(PEER_MAC, PEER_IP, Ipv4Addr::new(10, 0, 0, 99));
    assert!(r.exchange(&[other]).is_empty());
    // The copier is notified once (its zeroed flag), virt_tx once (ditto); neither re-arms.
    assert_eq!(r.signal, CountingSignal { rx: 1, tx: 1 });
    r.audit();
}

#[test]
fn answers_ping() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    r.arp_from_peer();
    for (seq, size) in [(1u16, 0usize), (2, 56), (3, 1472)] {
        let data = Rng(u64::from(seq)).bytes(size);
        let ping = frames::icmp_echo_request(PEER_MAC, MAC, PEER_IP, IP, 0x4242, seq, &data);
        let out = r.exchange(&[ping]);
        assert_eq!(out.len(), 1, "one reply to ping {seq}");
        let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (IP, PEER_IP));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        let repr = Icmpv4Repr::parse(&icmp, &Default::default()).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoReply {
                ident: 0x4242,
                seq_no: seq,
                data: &data
            }
        );
    }
    r.audit();
}

#[test]
fn udp_payloads_of_every_size_come_back_identical() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    r.arp_from_peer();
    let mut rng = Rng(0x1235);
    let sizes: Vec<usize> = (1..=1472).collect();
    // Batches of 32 datagrams per notification, as a loaded copier delivers them.
    for batch in sizes.chunks(32) {
        let payloads: Vec<Vec<u8>> = batch.iter().map(|&n| rng.bytes(n)).collect();
        let input: Vec<Vec<u8>> = payloads.iter().map(|p| udp_to_server(p)).collect();
        let out = r.exchange(&input);
        let echoed: Vec<Vec<u8>> = out.iter().map(|f| udp_payload(f)).collect();
        assert_eq!(echoed, payloads);
    }
    assert_eq!(r.server.stats().udp_echoed, 1472);
    assert_eq!(r.server.stats().udp_dropped, 0);
    r.audit();
}

#[test]
fn udp_burst_larger_than_the_tx_queue_is_echoed_once_buffers_return() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    r.arp_from_peer();
    // Fill every client RX buffer, but let virt_tx hold on to the TX buffers.
    let payloads: Vec<Vec<u8>> = (0..u64::from(RX_BUFFERS))
        .map(|i| Rng(i + 1).bytes(1000))
        .collect();
    for p in &payloads {
        assert!(r.peer.inject(&udp_to_server(p)));
    }
    r.server.process(&mut r.signal);
    let mut echoed = Vec::new();
    // virt_tx returns buffers slowly; each return wakes the server (it asked for a signal).
    while echoed.len() < payloads.len() {
        let f = r
            .peer
            .take_frame()
            .expect("server sent everything it could");
        echoed.push(udp_payload(&f));
        r.server.process(&mut r.signal);
    }
    assert_eq!(echoed, payloads);
    r.audit();
}

#[test]
fn malformed_frames_and_descriptors_are_dropped_counted_and_survived() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    r.arp_from_peer();
    let good = udp_to_server(b"still alive");
    let tcp_syn = {
        // A SYN to the echo port: a UDP-built frame whose 20-byte L4 part is rewritten as TCP.
        let mut f = frames::udp(PEER_MAC, MAC, PEER_IP, IP, 5000, TCP_ECHO_PORT, &[0; 12]);
        f[14 + 9] = 6;
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        let mut t = TcpPacket::new_unchecked(&mut f[34..]);
        t.set_header_len(20);
        t.set_seq_number(TcpSeqNumber(1));
        t.set_syn(true);
        t.set_window_len(1000);
        t.fill_checksum(&IpAddress::Ipv4(PEER_IP), &IpAddress::Ipv4(IP));
        assert_eq!(filter::check(&f), Ok(()));
        f
    };
    let mut bad: Vec<Vec<u8>> = Vec::new();
    for len in 1..14 {
        bad.push(good[..len].to_vec()); // runts
    }
    bad.push(good[..14 + 10].to_vec()); // truncated IPv4 header
    bad.push(good[..14 + 20 + 4].to_vec()); // truncated UDP header
    bad.push(tcp_syn[..14 + 20 + 12].to_vec()); // truncated TCP header
    let mut f = good.clone();
    f[14 + 8] = 1; // TTL changed: IP checksum wrong
    bad.push(f);
    let mut f = good.clone();
    *f.last_mut().unwrap() ^= 1; // UDP checksum wrong
    bad.push(f);
    let mut f = tcp_syn.clone();
    f[14 + 20 + 16] ^= 0xff; // TCP checksum field wrong
    bad.push(f);
    let mut f = good.clone();
    f[14 + 2..14 + 4].copy_from_slice(&1500u16.to_be_bytes()); // IP total length beyond the frame
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.fill_checksum();
    bad.push(f);
    assert!(r.exchange(&bad).is_empty(), "nothing answers garbage");
    // Hostile descriptors from the copier: bad offsets and oversize lengths.
    r.peer.enqueue_rx(BuffDesc::new(3, 60, 0)).unwrap();
    r.peer
        .enqueue_rx(BuffDesc::new(u64::from(RX_BUFFERS) * 2048, 60, 0))
        .unwrap();
    for len in [2049, 4096, u16::MAX, 0] {
        let d = r.peer.take_rx_buffer().unwrap();
        r.peer.enqueue_rx(d.with_len(len)).unwrap();
    }
    let out = r.exchange(std::slice::from_ref(&good));
    assert_eq!(out.len(), 1);
    assert_eq!(udp_payload(&out[0]), b"still alive");
    let c = r.server.net_counters();
    assert_eq!(c.rx_runts, 13);
    assert_eq!(c.rx_bad_headers, 4);
    assert_eq!(c.rx_bad_checksums, 3);
    assert_eq!(c.rx_bad_desc, 6);
    r.audit();
}

/// The remote host: a second smoltcp stack whose device is an in-memory link to the rig.
struct Remote {
    iface: Interface,
    sockets: SocketSet<'static>,
    link: Link,
}

#[derive(Default)]
struct Link {
    inbox: VecDeque<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
}

struct LinkRx(Vec<u8>);
struct LinkTx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for LinkRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for LinkTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = LinkRx;
    type TxToken<'a> = LinkTx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(LinkRx, LinkTx<'_>)> {
        let f = self.inbox.pop_front()?;
        Some((LinkRx(f), LinkTx(&mut self.outbox)))
    }
    fn transmit(&mut self, _: Instant) -> Option<LinkTx<'_>> {
        Some(LinkTx(&mut self.outbox))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn leak(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; n].into_boxed_slice())
}

impl Remote {
    fn new(clock: &TestClock) -> Self {
        let mut link = Link::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(PEER_MAC)));
        config.random_seed = 7;
        let mut iface = Interface::new(config, &mut link, clock.instant());
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(PEER_IP), 24)).unwrap());
        let storage: &'static mut [SocketStorage<'static>] =
            Box::leak(Box::new([SocketStorage::EMPTY; 8]));
        Remote {
            iface,
            sockets: SocketSet::new(storage),
            link,
        }
    }

    fn connect(&mut self, port: u16, local_port: u16) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(leak(256 * 1024)),
            tcp::SocketBuffer::new(leak(256 * 1024)),
        );
        s.set_nagle_enabled(false);
        s.connect(self.iface.context(), (IP, port), local_port)
            .unwrap();
        self.sockets.add(s)
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

/// One round trip over the link: the remote's frames to the server and back.
fn step(r: &mut Rig, remote: &mut Remote) {
    r.clock.advance_ms(1);
    let now = r.clock.instant();
    remote
        .iface
        .poll(now, &mut remote.link, &mut remote.sockets);
    let mut pending: VecDeque<Vec<u8>> = remote.link.outbox.drain(..).collect();
    loop {
        // The copier drops what does not fit the client's free buffers, as sDDF's does.
        while let Some(f) = pending.pop_front() {
            if !r.peer.inject(&f) {
                break;
            }
        }
        r.server.process(&mut r.signal);
        remote
            .link
            .inbox
            .extend(std::iter::from_fn(|| r.peer.take_frame()));
        if pending.is_empty() {
            break;
        }
    }
    remote
        .iface
        .poll(now, &mut remote.link, &mut remote.sockets);
}

#[test]
fn four_parallel_tcp_streams_come_back_identical_and_sockets_reopen() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    let mut remote = Remote::new(&r.clock);
    const LEN: usize = 300_000;
    for round in 0..2u16 {
        let mut rng = Rng(0x1236 + u64::from(round));
        let data: Vec<Vec<u8>> = (0..TCP_ECHO_CONNS).map(|_| rng.bytes(LEN)).collect();
        let handles: Vec<SocketHandle> = (0..TCP_ECHO_CONNS)
            .map(|i| remote.connect(TCP_ECHO_PORT, 40000 + round * 10 + i as u16))
            .collect();
        let mut sent = [0; TCP_ECHO_CONNS];
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); TCP_ECHO_CONNS];
        for _ in 0..20_000 {
            for (i, &h) in handles.iter().enumerate() {
                let s = remote.tcp(h);
                if s.can_send() && sent[i] < LEN {
                    sent[i] += s.send_slice(&data[i][sent[i]..]).unwrap();
                }
                while s.can_recv() {
                    s.recv(|b| {
                        got[i].extend_from_slice(b);
                        (b.len(), ())
                    })
                    .unwrap();
                }
            }
            if got.iter().all(|g| g.len() >= LEN) {
                break;
            }
            step(&mut r, &mut remote);
        }
        for i in 0..TCP_ECHO_CONNS {
            assert!(
                got[i] == data[i],
                "round {round} stream {i}: {} of {LEN} bytes, or different",
                got[i].len()
            );
        }
        // Close from the remote side; the server finishes, closes and listens again.
        for &h in &handles {
            remote.tcp(h).close();
        }
        for _ in 0..200 {
            step(&mut r, &mut remote);
            if handles.iter().all(|&h| {
                matches!(
                    remote.tcp(h).state(),
                    tcp::State::TimeWait | tcp::State::Closed
                )
            }) {
                break;
            }
        }
        for &h in &handles {
            let state = remote.tcp(h).state();
            assert!(
                matches!(state, tcp::State::TimeWait | tcp::State::Closed),
                "{state}"
            );
            remote.sockets.remove(h);
        }
        step(&mut r, &mut remote);
    }
    let stats = r.server.stats();
    assert_eq!(stats.tcp_connections, 2 * TCP_ECHO_CONNS as u64);
    assert_eq!(stats.tcp_echoed_bytes, 2 * (TCP_ECHO_CONNS * LEN) as u64);
    r.audit();
}

/// A benchmark's next point connects its flows in the same instant it closes the last point's
/// (`netvm bench` and ipbench both do): the new connections must be accepted even though the old
/// ones have not finished closing.
#[test]
fn next_points_connections_are_accepted_while_the_last_points_close() {
    const FLOWS: usize = 4;
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    let mut remote = Remote::new(&r.clock);
    let old: Vec<SocketHandle> = (0..FLOWS)
        .map(|i| remote.connect(TCP_ECHO_PORT, 41000 + i as u16))
        .collect();
    for _ in 0..20 {
        step(&mut r, &mut remote);
    }
    for &h in &old {
        assert_eq!(remote.tcp(h).state(), tcp::State::Established);
        remote.tcp(h).close();
    }
    // Same round trip: the FINs and the new SYNs reach the server together.
    let new: Vec<SocketHandle> = (0..FLOWS)
        .map(|i| remote.connect(TCP_ECHO_PORT, 42000 + i as u16))
        .collect();
    for _ in 0..20 {
        step(&mut r, &mut remote);
    }
    for (i, &h) in new.iter().enumerate() {
        let state = remote.tcp(h).state();
        assert_eq!(state, tcp::State::Established, "new flow {i}: {state}");
    }
    assert_eq!(r.server.stats().tcp_connections, 2 * FLOWS as u64);
    r.audit();
}

#[test]
fn utilisation_daemon_transcript_is_byte_exact_and_it_serves_again() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    let mut remote = Remote::new(&r.clock);
    for run in 0..2u16 {
        let h = remote.connect(UTILISATION_PORT, 50000 + run);
        let mut transcript = Vec::new();
        let exchange = |r: &mut Rig, remote: &mut Remote, send: &[u8], expect: usize| {
            if !send.is_empty() {
                assert_eq!(remote.tcp(h).send_slice(send).unwrap(), send.len());
            }
            let mut got = Vec::new();
            for _ in 0..50 {
                step(r, remote);
                let s = remote.tcp(h);
                while s.can_recv() {
                    s.recv(|b| {
                        got.extend_from_slice(b);
                        (b.len(), ())
                    })
                    .unwrap();
                }
                if got.len() >= expect {
                    break;
                }
            }
            got
        };
        transcript.extend(exchange(&mut r, &mut remote, b"", 17));
        transcript.extend(exchange(&mut r, &mut remote, b"HELLO\n", 21));
        transcript.extend(exchange(&mut r, &mut remote, b"LOAD cpu_target_lukem\n", 7));
        transcript.extend(exchange(&mut r, &mut remote, b"SETUP args::\"\"\n", 7));
        transcript.extend(exchange(&mut r, &mut remote, b"START\n", 0));
        transcript.extend(exchange(&mut r, &mut remote, b"STOP\n", 58));
        // TestCycles: START samples (7n, 100n), STOP samples (7(n+1), 100(n+1)).
        let expected: &[u8] = b"100 IPBENCH V1.0\n200 OK (Ready to go)\n200 OK\n200 OK\n\
            220 VALID DATA (Data to follow)\nContent-length: 7\n,7,100\0";
        assert_eq!(
            String::from_utf8_lossy(&transcript),
            String::from_utf8_lossy(expected),
            "run {run}"
        );
        // The server half-closed after the result.
        assert!(!remote.tcp(h).may_recv(), "server sent FIN after STOP");
        remote.tcp(h).close();
        for _ in 0..20 {
            step(&mut r, &mut remote);
        }
        remote.sockets.remove(h);
    }
    assert_eq!(r.server.stats().util_sessions, 2);
    r.audit();
}

#[test]
fn a_lost_echo_is_sent_again_when_the_clock_wakes_the_server() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig(&STORAGE);
    let mut remote = Remote::new(&r.clock);
    let h = remote.connect(TCP_ECHO_PORT, 41000);
    for _ in 0..20 {
        step(&mut r, &mut remote);
        if remote.tcp(h).state() == tcp::State::Established {
            break;
        }
    }
    assert_eq!(remote.tcp(h).state(), tcp::State::Established);
    r.clock.wake_at.set(None);

    // The remote's data reaches the server; the server's echo is lost on the way back.
    let payload = b"retransmit me";
    remote.tcp(h).send_slice(payload).unwrap();
    r.clock.advance_ms(1);
    remote
        .iface
        .poll(r.clock.instant(), &mut remote.link, &mut remote.sockets);
    for f in remote.link.outbox.drain(..) {
        assert!(r.peer.inject(&f));
    }
    r.server.process(&mut r.signal);
    let lost: Vec<Vec<u8>> = std::iter::from_fn(|| r.peer.take_frame()).collect();
    let carries = |frames: &[Vec<u8>]| {
        frames
            .iter()
            .any(|f| f.windows(payload.len()).any(|w| w == payload))
    };
    assert!(carries(&lost), "the echo went out");
    let sent_at = r.clock.now.get();
    let wake = r
        .clock
        .wake_at
        .get()
        .expect("the server asks to be woken for the retransmission");
    assert!(wake > sent_at, "a retransmission timeout lies ahead");

    // Woken early (any notification): nothing is due yet, and it asks again.
    r.clock.set_us(wake - 1);
    r.server.process(&mut r.signal);
    assert!(r.peer.take_frame().is_none(), "nothing before the timeout");
    assert_eq!(r.clock.wake_at.get(), Some(wake));

    // The timeout: the same data goes out again, with nothing received in between.
    r.clock.set_us(wake);
    r.server.process(&mut r.signal);
    let again: Vec<Vec<u8>> = std::iter::from_fn(|| r.peer.take_frame()).collect();
    assert!(carries(&again), "the retransmission");
    remote.link.inbox.extend(again);
    remote
        .iface
        .poll(r.clock.instant(), &mut remote.link, &mut remote.sockets);
    let mut got = Vec::new();
    while remote.tcp(h).can_recv() {
        remote
            .tcp(h)
            .recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
    }
    assert_eq!(got, payload);
    r.audit();
}

#[test]
fn a_dhcp_client_discovers_and_asks_to_be_woken_for_retries() {
    static STORAGE: Storage = Storage::new();
    let mut r = rig_with(&STORAGE, IpConfig::Dhcp);
    r.clock.set_us(1_000);
    let out = r.exchange(&[]);
    let discover = out
        .iter()
        .find(|f| {
            let eth = EthernetFrame::new_unchecked(&f[..]);
            eth.dst_addr() == EthernetAddress([0xff; 6])
                && eth.ethertype() == EthernetProtocol::Ipv4
                && f.len() > 14 + 20 + 8
                && f[14 + 20 + 2..14 + 20 + 4] == 67u16.to_be_bytes()
        })
        .unwrap_or_else(|| panic!("no DHCP DISCOVER in {} frames: {out:02x?}", out.len()));
    assert!(filter::check(discover).is_ok());
    assert!(r.server.ipv4_addr().is_none());
    let wake = r.clock.wake_at.get().expect("a wake-up for the DHCP retry");
    assert!(wake > 1_000);
}
