//! The echo server's frame input: arbitrary frames delivered through the mock copier
//! (`net_client::mock`, as in `pds/echo-server/tests/echo.rs`), interleaved with processing
//! passes, time passing, and TX buffers coming back.
//!
//! Frames are either raw bytes (exercising the device's frame filter) or built from fuzzer
//! choices with valid checksums so that they reach smoltcp's sockets: ARP requests, ICMP echo,
//! UDP datagrams (echo, utilisation and DHCP ports) and TCP segments with any flags, sequence
//! and acknowledgement numbers towards the echo and utilisation ports. The server runs with a
//! static address or DHCP (first byte).
//!
//! Checks: no panic; every frame the server sends comes from its MAC, fits an Ethernet frame
//! and passes the frame filter; at the end every client buffer is accounted for
//! (`MockPeer::audit`: RX buffers free or pending exactly once, TX buffers free, pending or held).
#![no_main]
use core::net::Ipv4Addr;
use std::cell::Cell;
use std::rc::Rc;

use echo_server::{Buffers, Clock, EchoServer, IpConfig, NoCycles, Sockets};
use libfuzzer_sys::fuzz_target;
use net_client::filter;
use net_client::mock::{frames, CountingSignal, MockMemory};
use netvm_fuzz::Input;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpPacket,
};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

#[derive(Clone, Default)]
struct TestClock(Rc<Cell<u64>>);

impl Clock for TestClock {
    fn now_us(&mut self) -> u64 {
        self.0.get()
    }
}

/// A TCP segment from the peer with a valid checksum.
fn tcp(input: &mut Input<'_>) -> Vec<u8> {
    let port = match input.u8() % 4 {
        0 => echo_server::UTILISATION_PORT,
        3 => input.u16(),
        _ => echo_server::TCP_ECHO_PORT,
    };
    let src_port = 40000 + u16::from(input.u8() % 4);
    let (seq, ack, flags, window) = (input.u32(), input.u32(), input.u8(), input.u16());
    let payload = input.chunk(1400).to_vec();
    let tcp_len = 20 + payload.len();
    let eth = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let ip = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        hop_limit: 64,
    };
    let mut buf = vec![0; eth.buffer_len() + ip.buffer_len() + tcp_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    let mut seg = TcpPacket::new_unchecked(packet.payload_mut());
    seg.set_src_port(src_port);
    seg.set_dst_port(port);
    seg.set_seq_number(smoltcp::wire::TcpSeqNumber(seq as i32));
    seg.set_ack_number(smoltcp::wire::TcpSeqNumber(ack as i32));
    seg.set_header_len(20);
    seg.set_fin(flags & 1 != 0);
    seg.set_syn(flags & 2 != 0);
    seg.set_rst(flags & 4 != 0);
    seg.set_psh(flags & 8 != 0);
    seg.set_ack(flags & 16 != 0);
    seg.set_urg(flags & 32 != 0);
    seg.set_window_len(window);
    seg.payload_mut().copy_from_slice(&payload);
    seg.fill_checksum(&IpAddress::Ipv4(PEER_IP), &IpAddress::Ipv4(IP));
    buf
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let ip = if mode & 1 != 0 {
        IpConfig::Dhcp
    } else {
        IpConfig::Static {
            addr: IP,
            prefix_len: 24,
            gateway: (mode & 2 != 0).then_some(PEER_IP),
        }
    };
    let mem = MockMemory::new(16, 16, MAC);
    let mut sockets = Box::new(Sockets::new());
    let mut buffers = Box::new(Buffers::new());
    let (dev, mut peer) = mem.connect().unwrap();
    let clock = TestClock::default();
    let mut server = EchoServer::new(dev, ip, &mut sockets, &mut buffers, NoCycles, clock.clone());
    let mut signal = CountingSignal::default();
    let mut steps = 0;
    while !input.is_empty() && steps < 500 {
        steps += 1;
        let frame = match input.u8() % 8 {
            0 => Some(input.chunk(2049).to_vec()),
            1 => Some(frames::arp_request(PEER_MAC, PEER_IP, IP)),
            2 => {
                let payload = input.chunk(1472).to_vec();
                let (ident, seq_no) = (input.u16(), input.u16());
                Some(frames::icmp_echo_request(
                    PEER_MAC, MAC, PEER_IP, IP, ident, seq_no, &payload,
                ))
            }
            3 => {
                let (src, dst) = match input.u8() % 4 {
                    0 => (67, 68),
                    1 => (5000, echo_server::UTILISATION_PORT),
                    2 => (input.u16(), input.u16()),
                    _ => (5000, echo_server::UDP_ECHO_PORT),
                };
                let payload = input.chunk(1472).to_vec();
                Some(frames::udp(PEER_MAC, MAC, PEER_IP, IP, src, dst, &payload))
            }
            4 | 5 => Some(tcp(&mut input)),
            6 => {
                clock.0.set(clock.0.get() + u64::from(input.u16()) * 1000);
                None
            }
            _ => {
                // virt_tx and the driver send what the server queued, returning the buffers.
                while let Some(out) = peer.take_frame() {
                    assert!(out.len() <= 1514, "oversize frame of {} bytes", out.len());
                    assert_eq!(out[6..12], MAC, "frame not from the server's MAC");
                    assert_eq!(filter::check(&out), Ok(()), "server sent a malformed frame");
                }
                None
            }
        };
        if let Some(f) = frame {
            if !f.is_empty() {
                let _ = peer.inject(&f);
            }
        }
        if input.bool() {
            server.process(&mut signal);
            let _ = server.poll_delay_us();
        }
    }
    server.process(&mut signal);
    while let Some(out) = peer.take_frame() {
        assert_eq!(filter::check(&out), Ok(()), "server sent a malformed frame");
    }
    peer.audit(server.device()).unwrap();
    let _ = (server.stats(), server.net_counters(), server.ipv4_addr());
});
