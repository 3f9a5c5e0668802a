//! The other side of a client's queues, for tests: a scripted copier (fills RX buffers) and
//! virt_tx (drains TX buffers) over heap memory standing in for the shared regions.
//!
//! ```ignore
//! let mem = MockMemory::new(8, 8, [2, 0, 0, 0, 0, 1]);
//! let (mut dev, mut peer) = mem.connect().unwrap();
//! assert!(peer.inject(&frame));           // copier delivers a frame
//! let sent = peer.take_frame();           // virt_tx collects what the client sent
//! peer.audit(&dev).unwrap();              // every buffer is where it belongs
//! ```
use std::boxed::Box;
use std::collections::BTreeSet;
use std::format;
use std::string::String;
use std::vec::Vec;

use netvm_api::reconnect::{ControlWords, PeerEnd, Poll};
use sddf::config::{ConnectionResource, MacAddr, NetClientConfig, RegionResource, NET_MAGIC};
use sddf::queue::{queue_bytes, Capacity, DrainSide, FillSide, Queue, QueueError};
use sddf::shm::{OwnedRegion, Region};
use sddf::{BuffDesc, NET_BUFFER_SIZE};
use zerocopy::FromZeros;

use crate::{Error, NetDevice, RegionName, Regions, Signal};

/// Where the mock pretends each region is mapped (only used as the mapper's key).
const VADDRS: [u64; 6] = [
    0x2000_0000,
    0x2010_0000,
    0x2020_0000,
    0x2100_0000,
    0x2110_0000,
    0x2120_0000,
];

fn index(name: RegionName) -> usize {
    match name {
        RegionName::RxFree => 0,
        RegionName::RxActive => 1,
        RegionName::RxData => 2,
        RegionName::TxFree => 3,
        RegionName::TxActive => 4,
        RegionName::TxData => 5,
    }
}

/// The six regions and the client config describing them.
pub struct MockMemory {
    regions: [OwnedRegion; 6],
    config: Box<NetClientConfig>,
}

impl MockMemory {
    /// Regions for `rx_buffers` RX and `tx_buffers` TX buffers (powers of two) and a config whose
    /// MAC is `mac`. Queue regions are page-rounded as Microkit makes them, so they hold the
    /// [`netvm_api::reconnect`] words.
    pub fn new(rx_buffers: u16, tx_buffers: u16, mac: MacAddr) -> Self {
        let page = |n: usize| n.next_multiple_of(4096);
        let size = |i: usize| -> usize {
            match i {
                0 | 1 => page(queue_bytes(usize::from(rx_buffers))),
                2 => usize::from(rx_buffers) * NET_BUFFER_SIZE,
                3 | 4 => page(queue_bytes(usize::from(tx_buffers))),
                _ => usize::from(tx_buffers) * NET_BUFFER_SIZE,
            }
        };
        let res = |i: usize| RegionResource {
            vaddr: VADDRS[i],
            size: size(i) as u64,
        };
        let mut config = NetClientConfig::new_box_zeroed().expect("128-byte allocation");
        config.magic = NET_MAGIC;
        config.rx = ConnectionResource::new(res(0), res(1), rx_buffers, 3);
        config.rx_data = res(2);
        config.tx = ConnectionResource::new(res(3), res(4), tx_buffers, 4);
        config.tx_data = res(5);
        config.mac_addr = mac;
        MockMemory {
            regions: core::array::from_fn(|i| OwnedRegion::new(size(i))),
            config,
        }
    }

    /// The client config.
    pub fn config(&self) -> &NetClientConfig {
        &self.config
    }

    /// The regions, found through [`Regions::from_config`] as a PD would.
    pub fn regions(&self) -> Result<Regions<'_>, Error> {
        Regions::from_config(&self.config, |name, vaddr, _| {
            let i = index(name);
            (VADDRS[i] == vaddr).then(|| self.regions[i].region())
        })
    }

    fn region(&self, name: RegionName) -> Region<'_> {
        self.regions[index(name)].region()
    }

    /// Starts the system in PD order: the copier hands the client its RX buffers, the client
    /// connects (handing itself its TX buffers), then virt_tx takes its side.
    pub fn connect(&self) -> Result<(NetDevice<'_>, MockPeer<'_>), Error> {
        let q = |name: RegionName, n: u16| {
            Queue::new(
                self.region(name),
                Capacity::new(u32::from(n)).expect("power of two"),
            )
            .expect("region sized for the queue")
        };
        let (rxn, txn) = (self.config.rx.num_buffers, self.config.tx.num_buffers);
        let copier = FillSide::new_self_provided(
            q(RegionName::RxFree, rxn),
            q(RegionName::RxActive, rxn),
            rxn,
        )
        .expect("fresh rx_free");
        let (dev, _) = NetDevice::connect(&self.config, self.regions()?)?;
        let virt_tx = DrainSide::new(q(RegionName::TxFree, txn), q(RegionName::TxActive, txn));
        let words = |name: RegionName, n: u16| {
            let cap = Capacity::new(u32::from(n)).expect("power of two");
            PeerEnd::new(ControlWords::new(self.region(name), cap))
        };
        let peer = MockPeer {
            copier,
            virt_tx,
            rx_words: words(RegionName::RxFree, rxn),
            tx_words: words(RegionName::TxFree, txn),
            rx_data: self.region(RegionName::RxData),
            tx_data: self.region(RegionName::TxData),
            rx_buffers: rxn,
            tx_buffers: txn,
            pool: Vec::new(),
        };
        Ok((dev, peer))
    }

    /// A new instance of the client on the same memory (the old one died): connects as a PD
    /// restarted by the runner does.
    pub fn restart(&self) -> Result<NetDevice<'_>, Error> {
        Ok(NetDevice::connect(&self.config, self.regions()?)?.0)
    }
}

/// The scripted copier and virt_tx.
pub struct MockPeer<'a> {
    /// The copier's side of the client RX pair.
    pub copier: FillSide<'a>,
    /// virt_tx's side of the client TX pair.
    pub virt_tx: DrainSide<'a>,
    rx_words: PeerEnd<'a>,
    tx_words: PeerEnd<'a>,
    rx_data: Region<'a>,
    tx_data: Region<'a>,
    rx_buffers: u16,
    tx_buffers: u16,
    /// Client RX buffers the copier holds (taken from `rx_free`, not yet filled).
    pool: Vec<BuffDesc>,
}

impl MockPeer<'_> {
    /// Serves a restarted client's reset requests as the copier and virt_tx do (the mock's
    /// virt_tx never has a buffer in flight: `take_frame` completes at once). Returns how many
    /// pairs it reset.
    pub fn serve_reconnect(&mut self) -> usize {
        let mut served = 0;
        if let Poll::Reset(epoch) = self.rx_words.poll() {
            self.pool.clear();
            self.copier
                .reset_self_provided(self.rx_buffers)
                .expect("rx queues of the mock's own making");
            self.rx_words.served(epoch);
            served += 1;
        }
        if let Poll::Reset(epoch) = self.tx_words.poll() {
            self.virt_tx
                .reset()
                .expect("tx indices of the mock's own making");
            for i in 0..u64::from(self.tx_buffers) {
                self.virt_tx
                    .free
                    .enqueue(BuffDesc::new(i * NET_BUFFER_SIZE as u64, 0, 0))
                    .expect("tx_free has room for every buffer");
            }
            self.tx_words.served(epoch);
            served += 1;
        }
        served
    }

    /// Takes a free client RX buffer, as the copier does before copying a frame into it.
    pub fn take_rx_buffer(&mut self) -> Option<BuffDesc> {
        if let Some(d) = self.pool.pop() {
            return Some(d);
        }
        self.copier.free.dequeue().ok()
    }

    /// Enqueues a descriptor on `rx_active` as it is (for well-formed and hostile descriptors).
    pub fn enqueue_rx(&mut self, desc: BuffDesc) -> Result<(), QueueError> {
        self.copier.active.enqueue(desc)
    }

    /// Delivers `frame` like the copier: into a free client buffer, then onto `rx_active`.
    /// `false` if the client has no free buffer (the copier would drop the frame).
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        let Some(d) = self.take_rx_buffer() else {
            return false;
        };
        self.rx_data
            .write(d.io_or_offset as usize, frame)
            .expect("client buffer offset from the mock's own init");
        self.enqueue_rx(BuffDesc::new(d.io_or_offset, frame.len() as u16, 0))
            .expect("rx_active has room for every buffer");
        true
    }

    /// Collects the next frame the client queued, like virt_tx (and a driver that sent it at
    /// once): reads it and returns the buffer through `tx_free`.
    pub fn take_frame(&mut self) -> Option<Vec<u8>> {
        let d = self.virt_tx.active.dequeue().ok()?;
        let mut frame = std::vec![0; usize::from(d.len)];
        self.tx_data
            .read(d.io_or_offset as usize, &mut frame)
            .expect("client TX descriptor inside tx_data");
        self.virt_tx
            .free
            .enqueue(BuffDesc::new(d.io_or_offset, 0, 0))
            .expect("tx_free has room for every buffer");
        Some(frame)
    }

    /// Checks that no buffer is lost or duplicated: every RX buffer is free (in `rx_free` or held
    /// by the copier) or pending in `rx_active`, each exactly once; every TX buffer is in
    /// `tx_free`, pending in `tx_active`, or the one the device holds.
    pub fn audit(&mut self, dev: &NetDevice<'_>) -> Result<(), String> {
        while let Ok(d) = self.copier.free.dequeue() {
            self.pool.push(d);
        }
        let pending_rx = self
            .copier
            .active
            .len()
            .map_err(|e| format!("rx_active: {e}"))?;
        let mut seen = BTreeSet::new();
        for d in &self.pool {
            if !seen.insert(d.io_or_offset) {
                return Err(format!("rx buffer {:#x} returned twice", d.io_or_offset));
            }
        }
        let free_rx = seen.len() as u16;
        if free_rx + pending_rx != self.rx_buffers {
            return Err(format!(
                "rx: {free_rx} free + {pending_rx} pending != {} buffers",
                self.rx_buffers
            ));
        }
        let free_tx = self
            .virt_tx
            .free
            .len()
            .map_err(|e| format!("tx_free: {e}"))?;
        let pending_tx = self
            .virt_tx
            .active
            .len()
            .map_err(|e| format!("tx_active: {e}"))?;
        let held = u16::from(dev.holds_tx_buffer());
        if free_tx + pending_tx + held != self.tx_buffers {
            return Err(format!(
                "tx: {free_tx} free + {pending_tx} pending + {held} held != {} buffers",
                self.tx_buffers
            ));
        }
        Ok(())
    }
}

/// A [`Signal`] that counts notifications.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountingSignal {
    /// Notifications to the copier.
    pub rx: u32,
    /// Notifications to virt_tx.
    pub tx: u32,
}

impl Signal for CountingSignal {
    fn notify_rx(&mut self) {
        self.rx += 1;
    }
    fn notify_tx(&mut self) {
        self.tx += 1;
    }
}

/// Frames for tests, built with smoltcp's wire module (checksums filled in).
pub mod frames {
    use core::net::Ipv4Addr;
    use std::vec::Vec;

    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
        UdpPacket, UdpRepr,
    };

    /// Ethernet header + IPv4 header + `l4_len` bytes written by `emit_l4`.
    fn ipv4(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: IpProtocol,
        l4_len: usize,
        emit_l4: impl FnOnce(&mut [u8]),
    ) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: EthernetAddress(src_mac),
            dst_addr: EthernetAddress(dst_mac),
            ethertype: EthernetProtocol::Ipv4,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: proto,
            payload_len: l4_len,
            hop_limit: 64,
        };
        let mut buf = std::vec![0; eth.buffer_len() + ip.buffer_len() + l4_len];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &ChecksumCapabilities::default());
        emit_l4(packet.payload_mut());
        buf
    }

    /// A UDP datagram.
    #[allow(clippy::too_many_arguments)]
    pub fn udp(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        ipv4(
            src_mac,
            dst_mac,
            src,
            dst,
            IpProtocol::Udp,
            8 + payload.len(),
            |l4| {
                UdpRepr { src_port, dst_port }.emit(
                    &mut UdpPacket::new_unchecked(l4),
                    &IpAddress::Ipv4(src),
                    &IpAddress::Ipv4(dst),
                    payload.len(),
                    |p| p.copy_from_slice(payload),
                    &ChecksumCapabilities::default(),
                )
            },
        )
    }

    /// An ICMP echo request.
    pub fn icmp_echo_request(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ident: u16,
        seq_no: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let icmp = Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        };
        ipv4(
            src_mac,
            dst_mac,
            src,
            dst,
            IpProtocol::Icmp,
            icmp.buffer_len(),
            |l4| {
                icmp.emit(
                    &mut Icmpv4Packet::new_unchecked(l4),
                    &ChecksumCapabilities::default(),
                )
            },
        )
    }

    /// A broadcast ARP request: who has `target`?
    pub fn arp_request(src_mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(src_mac),
            source_protocol_addr: src,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(src_mac),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut buf = std::vec![0; eth.buffer_len() + arp.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        buf
    }
}
