//! The smoltcp adapter: a master and two nodes, each a smoltcp `Interface` over net-client's
//! sDDF device (the mock of its copier and virt_tx), frames carried between them by a hub.

use net_client::mock::MockMemory;
use net_client::NetDevice;
use netvm_api::lan::{client_ip, client_mac, HOST_IP};
use node_msg::{smol, Config, Event, Master, Node, PORT};
use smoltcp::iface::{Config as IfConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::net::{Ipv4Addr, SocketAddrV4};

fn leak<T: Clone>(v: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![v; n].into_boxed_slice())
}

/// One smoltcp stack over one client device.
struct Stack<'a> {
    dev: NetDevice<'a>,
    peer: net_client::mock::MockPeer<'a>,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
}

impl<'a> Stack<'a> {
    fn new(mem: &'a MockMemory, mac: [u8; 6], ip: Ipv4Addr) -> Stack<'a> {
        let (mut dev, peer) = mem.connect().unwrap();
        let cfg = IfConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_millis(0));
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(ip), 16)).unwrap());
        let mut sockets = SocketSet::new(&mut Box::leak(Box::new([SocketStorage::EMPTY; 2]))[..]);
        let buffer =
            || udp::PacketBuffer::new(leak(udp::PacketMetadata::EMPTY, 32), leak(0u8, 48 * 1024));
        let mut s = udp::Socket::new(buffer(), buffer());
        s.bind(PORT).unwrap();
        let udp = sockets.add(s);
        Stack {
            dev,
            peer,
            iface,
            sockets,
            udp,
        }
    }

    fn poll(&mut self, now: Instant, node: Option<&mut Node>, master: Option<&mut Master>) {
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let sock = self.sockets.get_mut::<udp::Socket>(self.udp);
        if let Some(node) = node {
            smol::poll(node, sock, now);
        }
        if let Some(master) = master {
            smol::poll_master(master, sock);
        }
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
    }
}

#[test]
fn two_smoltcp_nodes_exchange_messages_through_a_master_on_smoltcp() {
    let macs = [
        [0x52, 0x54, 1, 0, 0xff, 1],
        client_mac(1, 0).unwrap(),
        client_mac(2, 0).unwrap(),
    ];
    let ips = [HOST_IP, client_ip(1, 0).unwrap(), client_ip(2, 0).unwrap()];
    let mems: Vec<_> = macs.iter().map(|m| MockMemory::new(64, 64, *m)).collect();
    let mut stacks: Vec<_> = (0..3)
        .map(|i| Stack::new(&mems[i], macs[i], ips[i]))
        .collect();
    let mut master = Box::new(Master::new(254));
    let master_addr = SocketAddrV4::new(HOST_IP, PORT);
    let mut nodes: Vec<_> = (1..3)
        .map(|i| {
            Box::new(Node::new(
                master_addr,
                macs[i],
                100 + i as u32,
                Config::default(),
            ))
        })
        .collect();
    let big: Vec<u8> = (0..node_msg::MAX_MESSAGE).map(|i| (i * 7) as u8).collect();
    let mut sent = false;
    let mut got = Vec::new();
    let mut buf = vec![0; node_msg::MAX_MESSAGE];
    for ms in 0..5000 {
        let now = Instant::from_millis(ms);
        stacks[0].poll(now, None, Some(&mut master));
        for (i, node) in nodes.iter_mut().enumerate() {
            stacks[i + 1].poll(now, Some(node), None);
        }
        // The hub: every frame to every other stack (smoltcp drops what is not for its MAC).
        for from in 0..3 {
            while let Some(frame) = stacks[from].peer.take_frame() {
                for to in (0..3).filter(|t| *t != from) {
                    stacks[to].peer.inject(&frame);
                }
            }
        }
        if !sent && nodes.iter().all(|n| n.id().is_some()) {
            nodes[0].send(ms as u64, 2, &big).unwrap();
            nodes[1].send(ms as u64, 1, b"hello from 2").unwrap();
            sent = true;
        }
        for n in nodes.iter_mut() {
            while let Ok((src, len)) = n.try_recv(&mut buf) {
                got.push((n.id().unwrap(), src, buf[..len].to_vec()));
            }
        }
        if got.len() == 2 && nodes.iter().all(|n| n.in_flight() == 0) {
            break;
        }
    }
    assert_eq!(
        nodes.iter().map(|n| n.id()).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    got.sort();
    assert_eq!(got, [(1, 2, b"hello from 2".to_vec()), (2, 1, big)]);
    for n in nodes.iter_mut() {
        let ev = n.poll_event();
        assert!(
            matches!(ev, Some(Event::Delivered(_))),
            "{ev:?} {:?}",
            n.counters()
        );
    }
}
