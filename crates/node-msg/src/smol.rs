//! The adapter over a smoltcp UDP socket, for a client PD's poll loop: no allocation, no
//! blocking. The PD binds a UDP socket to [`PORT`](crate::PORT) on its `Interface`, keeps the
//! [`Node`] in a static, and in every round of its loop:
//!
//! ```text
//! iface.poll(now, &mut device, &mut sockets);          // frames in -> socket
//! node_msg::smol::poll(&mut node, sockets.get_mut(h), now);
//! iface.poll(now, &mut device, &mut sockets);          // socket -> frames out
//! // wait for a notification or until node_msg::smol::poll_at(&node)
//! ```
//!
//! It lives in node-msg behind the `smoltcp` feature rather than in net-client because it needs
//! nothing of net-client: it works over any smoltcp `Device` (net-client's sDDF device in a PD,
//! a TAP or loopback device on a host), and net-client stays free of the messaging protocol.

use core::net::SocketAddrV4;

use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::wire::MAX_DATAGRAM;
use crate::{Master, Node};

/// Milliseconds since smoltcp's epoch: the node's clock.
fn millis(now: Instant) -> u64 {
    now.total_millis().max(0) as u64
}

/// Feeds `node` every datagram waiting in `socket`, runs its timers, and queues on `socket`
/// every datagram it has to send (as many as the socket's TX buffer takes; the rest go in a
/// later round). Returns how many datagrams were queued.
pub fn poll(node: &mut Node, socket: &mut udp::Socket<'_>, now: Instant) -> usize {
    let ms = millis(now);
    while let Ok((bytes, meta)) = socket.recv() {
        // Irrefutable unless another crate turns on smoltcp's IPv6 (features unify).
        #[allow(irrefutable_let_patterns)]
        if let IpAddress::Ipv4(ip) = meta.endpoint.addr {
            node.handle_datagram(ms, SocketAddrV4::new(ip, meta.endpoint.port), bytes);
        }
    }
    node.handle_timeout(ms);
    let mut sent = 0;
    let mut buf = [0u8; MAX_DATAGRAM];
    while socket.can_send() {
        let Some((to, n)) = node.poll_transmit(ms, &mut buf) else {
            break;
        };
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
        // A full payload buffer drops this datagram: the node's retransmission covers it.
        if socket.send_slice(&buf[..n], endpoint).is_ok() {
            sent += 1;
        }
    }
    sent
}

/// [`poll`] for a master on a PD (or any smoltcp stack): answers every request waiting in
/// `socket`. Returns how many answers were queued.
pub fn poll_master(master: &mut Master, socket: &mut udp::Socket<'_>) -> usize {
    while let Ok((bytes, meta)) = socket.recv() {
        // Irrefutable unless another crate turns on smoltcp's IPv6 (features unify).
        #[allow(irrefutable_let_patterns)]
        if let IpAddress::Ipv4(ip) = meta.endpoint.addr {
            master.handle_datagram(SocketAddrV4::new(ip, meta.endpoint.port), bytes);
        }
    }
    let mut sent = 0;
    let mut buf = [0u8; MAX_DATAGRAM];
    while socket.can_send() {
        let Some((to, n)) = master.poll_transmit(&mut buf) else {
            break;
        };
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
        if socket.send_slice(&buf[..n], endpoint).is_ok() {
            sent += 1;
        }
    }
    sent
}

/// When [`poll`] next has timer work, on smoltcp's clock.
pub fn poll_at(node: &Node) -> Option<Instant> {
    node.poll_timeout()
        .map(|ms| Instant::from_millis(ms.min(i64::MAX as u64) as i64))
}
