//! The checks every frame passes before the smoltcp device hands it to the stack.
//!
//! smoltcp drops malformed frames too, but silently; doing the checks here lets the device count
//! each drop by reason ([`Counters`](crate::Counters)), and since the checksums are verified here
//! the device tells smoltcp not to verify them again (`Checksum::Tx`), so each is computed once.
//! ICMP checksums are left to smoltcp, which verifies them while answering.
//!
//! Checked: Ethernet header present; IPv4 version, header length, total length within the frame
//! and header checksum; for unfragmented IPv4, the UDP or TCP header length and checksum (a zero
//! UDP checksum means "none", RFC 768); ARP length. Other EtherTypes pass unchanged (smoltcp
//! ignores what it does not speak). IPv4 fragments pass without L4 checks: without reassembly
//! smoltcp drops them.
use smoltcp::wire::{
    ArpPacket, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header (14 bytes).
    Runt,
    /// An IPv4, UDP, TCP or ARP header is truncated or inconsistent with the frame.
    BadHeader,
    /// An IPv4, UDP or TCP checksum is wrong.
    BadChecksum,
}

/// Checks one frame (see the module documentation).
pub fn check(frame: &[u8]) -> Result<(), Malformed> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Malformed::Runt)?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => check_ipv4(eth.payload()),
        EthernetProtocol::Arp => ArpPacket::new_checked(eth.payload())
            .map(|_| ())
            .map_err(|_| Malformed::BadHeader),
        _ => Ok(()),
    }
}

fn check_ipv4(bytes: &[u8]) -> Result<(), Malformed> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| Malformed::BadHeader)?;
    if ip.version() != 4 {
        return Err(Malformed::BadHeader);
    }
    if !ip.verify_checksum() {
        return Err(Malformed::BadChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Ok(());
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let ok = match ip.next_header() {
        IpProtocol::Udp => UdpPacket::new_checked(ip.payload())
            .map_err(|_| Malformed::BadHeader)?
            .verify_checksum(&src, &dst),
        IpProtocol::Tcp => TcpPacket::new_checked(ip.payload())
            .map_err(|_| Malformed::BadHeader)?
            .verify_checksum(&src, &dst),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Malformed::BadChecksum)
    }
}
