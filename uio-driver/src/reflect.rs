//! The reflector: the driver's own packet path in Linux with nothing behind it, to measure what
//! that path can carry (issue #18).
//!
//! `uio-driver --reflect <a.b.c.d>` (the guest's `netvm.mode=reflect`, booted without seL4 by
//! `make qemu-reference REF_MODE=reflect`) opens the same [`PacketNic`](crate::packet::PacketNic)
//! the driver opens, with the same ring, wake-ups and `sendmmsg` batches, and instead of
//! queueing each received frame to sDDF answers it itself, as a host at `a.b.c.d`: ARP requests
//! for that address, ICMP echo requests and UDP datagrams to it (the UDP payload back to its
//! sender, which is what `netvm bench` and the echo servers' port 1235 expect). Its MAC is
//! [`Reflector::mac`]. The guest kernel itself stays silent on the link, as in the driver VM (no
//! address, no ARP, no IPv6), so every frame costs the guest exactly the driver VM's kernel
//! path: the virtio-net receive, the packet sockets, and the transmit. Run inside the seL4
//! driver VM (`GUEST_APPEND="netvm.mode=reflect ..."`), its echoed rate is a ceiling for the
//! driver VM on this kernel: the full system adds the sDDF side behind it. Booted alone on QEMU
//! the same path measured slower than inside seL4's VM (BENCHMARKS.md, issue #18), so that
//! figure is a reference for Linux, not a bound.
//!
//! Only UDP echo (no TCP): it has no TCP stack, and TCP would measure one more thing.
//!
//! [`Reflector::answer`] is pure and total: any bytes give an answer or a reason for none.
use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use sddf::NET_BUFFER_SIZE;

use crate::driver::{Nic, NicPoll, RxVerdict, BATCH};

use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Message,
    Icmpv4Packet, IpProtocol, Ipv4Address, Ipv4Packet, UdpPacket,
};

/// What [`Reflector::answer`] turned a frame into (the answer is in the same buffer, with the
/// same length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An ARP reply to a request for the reflector's address.
    Arp,
    /// An ICMP echo reply.
    Ping,
    /// The UDP datagram back to its sender.
    Udp,
}

/// Why a frame got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Too short or malformed for its EtherType / protocol.
    Malformed,
    /// Not addressed to the reflector (another MAC or IPv4 address, an ARP request for another
    /// address, an ARP reply).
    NotOurs,
    /// Ours, but nothing it answers (another EtherType or IP protocol, an ICMP message other than
    /// an echo request, an IPv4 fragment or a packet with options).
    Unsupported,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ignored::Malformed => "malformed",
            Ignored::NotOurs => "not addressed to the reflector",
            Ignored::Unsupported => "not answered",
        })
    }
}

/// A host at one IPv4 address that answers ARP, ping and UDP by rewriting frames in place.
#[derive(Debug, Clone, Copy)]
pub struct Reflector {
    ip: Ipv4Address,
    mac: EthernetAddress,
}

impl Reflector {
    /// The reflector at `ip`; its MAC is locally administered, `02:52:` and the address's four
    /// bytes (`0x52`, "R"), so it is never the NIC's own and the guest kernel drops what it is
    /// sent as another host's frames (`PACKET_OTHERHOST`), as in the driver VM.
    pub fn new(ip: Ipv4Addr) -> Reflector {
        let o = ip.octets();
        Reflector {
            ip: Ipv4Address::from(o),
            mac: EthernetAddress([0x02, 0x52, o[0], o[1], o[2], o[3]]),
        }
    }

    /// The reflector's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac.0
    }

    /// Rewrites `frame` into the answer to it, or says why there is none (then `frame` may
    /// be partly rewritten and must not be sent).
    pub fn answer(&self, frame: &mut [u8]) -> Result<Answer, Ignored> {
        let mut eth = EthernetFrame::new_checked(frame).map_err(|_| Ignored::Malformed)?;
        let dst = eth.dst_addr();
        let src = eth.src_addr();
        if src.is_multicast() {
            return Err(Ignored::Malformed);
        }
        let answer = match eth.ethertype() {
            EthernetProtocol::Arp if dst == self.mac || dst.is_broadcast() => {
                self.arp(eth.payload_mut())?
            }
            EthernetProtocol::Ipv4 if dst == self.mac => self.ipv4(eth.payload_mut())?,
            EthernetProtocol::Arp | EthernetProtocol::Ipv4 => return Err(Ignored::NotOurs),
            _ if dst == self.mac => return Err(Ignored::Unsupported),
            _ => return Err(Ignored::NotOurs),
        };
        eth.set_dst_addr(src);
        eth.set_src_addr(self.mac);
        Ok(answer)
    }

    fn arp(&self, payload: &mut [u8]) -> Result<Answer, Ignored> {
        let mut arp = ArpPacket::new_checked(payload).map_err(|_| Ignored::Malformed)?;
        // Ethernet / IPv4 only: six-byte hardware and four-byte protocol addresses.
        if arp.hardware_type() != smoltcp::wire::ArpHardware::Ethernet
            || arp.protocol_type() != EthernetProtocol::Ipv4
            || arp.hardware_len() != 6
            || arp.protocol_len() != 4
        {
            return Err(Ignored::Unsupported);
        }
        if arp.operation() != ArpOperation::Request
            || arp.target_protocol_addr() != self.ip.octets()
        {
            return Err(Ignored::NotOurs);
        }
        let (sha, spa) = (
            arp.source_hardware_addr().to_vec(),
            arp.source_protocol_addr().to_vec(),
        );
        arp.set_operation(ArpOperation::Reply);
        arp.set_target_hardware_addr(&sha);
        arp.set_target_protocol_addr(&spa);
        arp.set_source_hardware_addr(&self.mac.0);
        arp.set_source_protocol_addr(&self.ip.octets());
        Ok(Answer::Arp)
    }

    fn ipv4(&self, payload: &mut [u8]) -> Result<Answer, Ignored> {
        let mut ip = Ipv4Packet::new_checked(payload).map_err(|_| Ignored::Malformed)?;
        if ip.dst_addr() != self.ip {
            return Err(Ignored::NotOurs);
        }
        if ip.header_len() != 20 || ip.more_frags() || ip.frag_offset() != 0 {
            return Err(Ignored::Unsupported);
        }
        let src = ip.src_addr();
        if src.is_broadcast() || src.is_multicast() || src.is_unspecified() {
            return Err(Ignored::Malformed);
        }
        let answer = match ip.next_header() {
            IpProtocol::Udp => {
                let mut udp =
                    UdpPacket::new_checked(ip.payload_mut()).map_err(|_| Ignored::Malformed)?;
                let (sport, dport) = (udp.src_port(), udp.dst_port());
                // Swapping the ports and (below) the addresses leaves both checksums right.
                udp.set_src_port(dport);
                udp.set_dst_port(sport);
                Answer::Udp
            }
            IpProtocol::Icmp => {
                let mut icmp =
                    Icmpv4Packet::new_checked(ip.payload_mut()).map_err(|_| Ignored::Malformed)?;
                if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
                    return Err(Ignored::Unsupported);
                }
                icmp.set_msg_type(Icmpv4Message::EchoReply);
                icmp.fill_checksum();
                Answer::Ping
            }
            _ => return Err(Ignored::Unsupported),
        };
        ip.set_dst_addr(src);
        ip.set_src_addr(self.ip);
        Ok(answer)
    }
}

/// A UDP datagram in an Ethernet frame, `from` (MAC, address, port) `to` (MAC, address, port),
/// with valid IPv4 and UDP checksums and TTL 64: what the reflector answers, and what
/// [`crate::loopback`] seeds.
pub fn udp_frame(
    from: ([u8; 6], Ipv4Addr, u16),
    to: ([u8; 6], Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (
        Ipv4Address::from(from.1.octets()),
        Ipv4Address::from(to.1.octets()),
    );
    let mut buf = vec![0u8; 14 + 20 + 8 + payload.len()];
    smoltcp::wire::EthernetRepr {
        src_addr: EthernetAddress(from.0),
        dst_addr: EthernetAddress(to.0),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    let mut p = Ipv4Packet::new_unchecked(&mut buf[14..]);
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    smoltcp::wire::Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    }
    .emit(&mut p, &caps);
    smoltcp::wire::UdpRepr {
        src_port: from.2,
        dst_port: to.2,
    }
    .emit(
        &mut UdpPacket::new_unchecked(p.payload_mut()),
        &smoltcp::wire::IpAddress::Ipv4(src),
        &smoltcp::wire::IpAddress::Ipv4(dst),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    buf
}

/// What [`run`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReflectCounts {
    /// Frames received.
    pub rx_frames: u64,
    /// UDP datagrams sent back.
    pub udp: u64,
    /// ARP and ping answers.
    pub arp_ping: u64,
    /// Frames with no answer (not ours, malformed or unsupported).
    pub ignored: u64,
    /// Answers dropped because the NIC had no room (the transmit side did not keep up).
    pub tx_full: u64,
    /// Answers the NIC refused for good.
    pub tx_failed: u64,
}

impl fmt::Display for ReflectCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx_frames={} udp={} arp_ping={} ignored={} tx_full={} tx_failed={}",
            self.rx_frames, self.udp, self.arp_ping, self.ignored, self.tx_full, self.tx_failed
        )
    }
}

/// Answers what `nic` receives until `keep_going` (asked after every wake-up) says stop: up to
/// [`BATCH`] frames are copied out of the receive ring, answered, and sent with one flush, the
/// same batches and copies per frame as the driver (ring to an sDDF buffer, a TX buffer to the
/// NIC's transmit slots).
pub fn run(
    nic: &mut dyn Nic,
    reflector: &Reflector,
    keep_going: &mut dyn FnMut(&ReflectCounts) -> bool,
) -> io::Result<ReflectCounts> {
    let mut c = ReflectCounts::default();
    let mut bufs = vec![0u8; BATCH * NET_BUFFER_SIZE].into_boxed_slice();
    let mut lens = [0usize; BATCH];
    while keep_going(&c) {
        let mut fds: Vec<libc::pollfd> = nic
            .poll_set(true, nic.tx_pending())
            .iter()
            .map(NicPoll::pollfd)
            .collect();
        // A signal (SIGTERM) ends the wait; `keep_going` then decides.
        crate::sys::poll(&mut fds, 1000)?;
        loop {
            let mut n = 0;
            let more = nic.receive(BATCH, &mut |f| {
                // Truncated frames (longer than a buffer) are not answered.
                if f.data.len() == f.wire_len && f.data.len() <= NET_BUFFER_SIZE {
                    bufs[n * NET_BUFFER_SIZE..][..f.data.len()].copy_from_slice(f.data);
                    lens[n] = f.data.len();
                } else {
                    lens[n] = 0;
                }
                n += 1;
                RxVerdict::Consumed
            })?;
            c.rx_frames += n as u64;
            for (i, &len) in lens[..n].iter().enumerate() {
                let frame = &mut bufs[i * NET_BUFFER_SIZE..][..len];
                match reflector.answer(frame) {
                    Ok(a) => {
                        let Some(tx) = nic.tx_buffer() else {
                            c.tx_full += 1;
                            continue;
                        };
                        tx[..len].copy_from_slice(frame);
                        nic.tx_commit(len);
                        match a {
                            Answer::Udp => c.udp += 1,
                            Answer::Arp | Answer::Ping => c.arp_ping += 1,
                        }
                    }
                    Err(_) => c.ignored += 1,
                }
            }
            c.tx_failed += nic.tx_flush()?.failed;
            if !more {
                break;
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{ArpRepr, EthernetRepr, Icmpv4Repr, IpAddress, Ipv4Repr};

    const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 30);
    const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0, 0, 1]);

    fn eth(dst: EthernetAddress, ethertype: EthernetProtocol, payload_len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 14 + payload_len];
        EthernetRepr {
            src_addr: PEER_MAC,
            dst_addr: dst,
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf));
        buf
    }

    fn udp_frame(dst_mac: EthernetAddress, dst_ip: Ipv4Address, payload: &[u8]) -> Vec<u8> {
        super::udp_frame(
            (PEER_MAC.0, Ipv4Addr::from(PEER_IP.octets()), 40000),
            (dst_mac.0, Ipv4Addr::from(dst_ip.octets()), 1235),
            payload,
        )
    }

    #[test]
    fn udp_comes_back_to_its_sender_with_valid_checksums() {
        let r = Reflector::new(ME);
        let me = Ipv4Address::from(ME.octets());
        let mut f = udp_frame(EthernetAddress(r.mac()), me, b"netvm bench payload");
        assert_eq!(r.answer(&mut f), Ok(Answer::Udp));
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (e.dst_addr(), e.src_addr()),
            (PEER_MAC, EthernetAddress(r.mac()))
        );
        let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (me, PEER_IP));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(&IpAddress::Ipv4(me), &IpAddress::Ipv4(PEER_IP)));
        assert_eq!((udp.src_port(), udp.dst_port()), (1235, 40000));
        assert_eq!(udp.payload(), b"netvm bench payload");
    }

    #[test]
    fn arp_request_for_its_address_gets_a_reply() {
        let r = Reflector::new(ME);
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: PEER_MAC,
            source_protocol_addr: PEER_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Address::from(ME.octets()),
        };
        let mut f = eth(
            EthernetAddress::BROADCAST,
            EthernetProtocol::Arp,
            req.buffer_len(),
        );
        req.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
        assert_eq!(r.answer(&mut f), Ok(Answer::Arp));
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst_addr(), PEER_MAC);
        let rep = ArpRepr::parse(&ArpPacket::new_checked(e.payload()).unwrap()).unwrap();
        assert_eq!(
            rep,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(r.mac()),
                source_protocol_addr: Ipv4Address::from(ME.octets()),
                target_hardware_addr: PEER_MAC,
                target_protocol_addr: PEER_IP,
            }
        );
        // A request for another address is not answered.
        let mut other = eth(
            EthernetAddress::BROADCAST,
            EthernetProtocol::Arp,
            req.buffer_len(),
        );
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: PEER_MAC,
            source_protocol_addr: PEER_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Address::new(10, 0, 0, 31),
        }
        .emit(&mut ArpPacket::new_unchecked(&mut other[14..]));
        assert_eq!(r.answer(&mut other), Err(Ignored::NotOurs));
    }

    #[test]
    fn ping_gets_an_echo_reply() {
        let r = Reflector::new(ME);
        let me = Ipv4Address::from(ME.octets());
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 7,
            seq_no: 3,
            data: b"ping",
        };
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: me,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut f = eth(
            EthernetAddress(r.mac()),
            EthernetProtocol::Ipv4,
            20 + icmp.buffer_len(),
        );
        let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.emit(&mut p, &ChecksumCapabilities::default());
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(p.payload_mut()),
            &ChecksumCapabilities::default(),
        );
        assert_eq!(r.answer(&mut f), Ok(Answer::Ping));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.dst_addr(), PEER_IP);
        let reply = Icmpv4Repr::parse(
            &Icmpv4Packet::new_checked(ip.payload()).unwrap(),
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        assert_eq!(
            reply,
            Icmpv4Repr::EchoReply {
                ident: 7,
                seq_no: 3,
                data: b"ping"
            }
        );
    }

    #[test]
    fn frames_for_others_are_not_answered() {
        let r = Reflector::new(ME);
        let me = Ipv4Address::from(ME.octets());
        // Another host's MAC (what the driver VM's NIC sees for the clients), another address,
        // a fragment.
        let mut f = udp_frame(PEER_MAC, me, b"x");
        assert_eq!(r.answer(&mut f), Err(Ignored::NotOurs));
        let mut f = udp_frame(EthernetAddress(r.mac()), PEER_IP, b"x");
        assert_eq!(r.answer(&mut f), Err(Ignored::NotOurs));
        let mut f = udp_frame(EthernetAddress(r.mac()), me, b"x");
        f[14 + 6] |= 0x20; // more fragments
        assert_eq!(r.answer(&mut f), Err(Ignored::Unsupported));
        let mut f = eth(EthernetAddress(r.mac()), EthernetProtocol::Ipv6, 40);
        assert_eq!(r.answer(&mut f), Err(Ignored::Unsupported));
        // Truncated everywhere.
        let full = udp_frame(EthernetAddress(r.mac()), me, b"payload");
        for len in 0..full.len() - 7 {
            let mut f = full[..len].to_vec();
            assert!(r.answer(&mut f).is_err(), "answered a {len}-byte frame");
        }
    }

    #[test]
    fn any_bytes_get_an_answer_or_a_reason() {
        // A cheap exhaustive-ish sweep: every short length, every byte value at each position of
        // a valid frame (no panic, and whatever is answered still parses).
        let r = Reflector::new(ME);
        let me = Ipv4Address::from(ME.octets());
        let base = udp_frame(EthernetAddress(r.mac()), me, b"abcdefgh");
        for pos in 0..base.len() {
            for v in [0u8, 1, 0x45, 0x7f, 0x80, 0xff] {
                let mut f = base.clone();
                f[pos] = v;
                if r.answer(&mut f).is_ok() {
                    assert!(EthernetFrame::new_checked(&f[..]).is_ok());
                }
            }
        }
    }
}
