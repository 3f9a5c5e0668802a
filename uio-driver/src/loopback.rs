//! The sDDF side alone: a [`Nic`] with no wire behind it, where a [`Reflector`] plays the peer
//! (issue #18).
//!
//! `uio-driver --loopback <peer>,<client ip>,<client mac>,<n>` (on the guest's command line
//! `uio_driver.loopback=...`) drives the real queues, doorbells and vIRQs with this NIC instead
//! of the packet socket: it starts with `n` UDP datagrams from `peer` to the client's echo port
//! ([`ECHO_PORT`]) as received frames, and every frame the driver
//! transmits is answered by the reflector at `peer` (ARP for the peer's address, the echoed
//! datagram sent straight back) and received again. The `n` datagrams then circle between the
//! driver and the echo client for as long as it runs, through virt_rx, the copier and virt_tx,
//! with no guest network stack in the way: the driver's counters (`netvm stats --qmp`,
//! component `driver_vm`) give the rate the sDDF side carries by itself, to set beside the
//! reflector's rate for the guest's packet path alone.
//!
//! Frames the reflector does not answer are counted and dropped.
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use sddf::NET_BUFFER_SIZE;

use crate::driver::{Nic, NicPoll, RxFrame, RxVerdict, TxReport};
use crate::reflect::Reflector;

/// The echo servers' UDP port.
pub const ECHO_PORT: u16 = 1235;
/// The seed datagrams' payload length (the benchmark's 1472-byte datagrams: 1514-byte frames).
pub const PAYLOAD: usize = 1472;
/// Most datagrams `--loopback` may seed.
pub const MAX_SEED: usize = 4096;

/// What `--loopback` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopbackSpec {
    /// The peer the reflector plays.
    pub peer: Ipv4Addr,
    /// The echo client's address.
    pub client_ip: Ipv4Addr,
    /// The echo client's MAC.
    pub client_mac: [u8; 6],
    /// Datagrams in flight.
    pub count: usize,
}

impl std::str::FromStr for LoopbackSpec {
    type Err = String;

    /// `<peer ip>,<client ip>,<client mac>,<count>`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').collect();
        let [peer, ip, mac, count] = parts[..] else {
            return Err(format!(
                "{s}: expected <peer ip>,<client ip>,<client mac>,<count>"
            ));
        };
        let peer: Ipv4Addr = peer.parse().map_err(|e| format!("{peer}: {e}"))?;
        let client_ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
        let bytes: Vec<u8> = mac
            .split(':')
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{mac}: {e}"))?;
        let client_mac: [u8; 6] = bytes
            .try_into()
            .map_err(|_| format!("{mac}: expected six bytes"))?;
        let count: usize = count.parse().map_err(|e| format!("{count}: {e}"))?;
        if count == 0 || count > MAX_SEED {
            return Err(format!("{count}: between 1 and {MAX_SEED} datagrams"));
        }
        Ok(LoopbackSpec {
            peer,
            client_ip,
            client_mac,
            count,
        })
    }
}

/// Frames the driver transmits, answered and handed back as received frames.
pub struct LoopbackNic {
    reflector: Reflector,
    rx: VecDeque<Vec<u8>>,
    /// The buffer [`Nic::tx_buffer`] lends ([`NET_BUFFER_SIZE`] bytes).
    tx: Vec<u8>,
    /// Received buffers, reused for transmission (no allocation per frame once warm).
    spare: Vec<Vec<u8>>,
    /// Frames and bytes committed since the last flush.
    committed: (u64, u64),
    /// Readable while `rx` holds frames.
    ready: File,
    /// Transmitted frames the reflector did not answer.
    pub unanswered: u64,
}

impl LoopbackNic {
    /// The NIC with `spec.count` datagrams waiting to be received.
    pub fn new(spec: &LoopbackSpec) -> io::Result<LoopbackNic> {
        let reflector = Reflector::new(spec.peer);
        let mut nic = LoopbackNic {
            reflector,
            rx: VecDeque::new(),
            tx: vec![0; NET_BUFFER_SIZE],
            spare: Vec::new(),
            committed: (0, 0),
            ready: crate::sys::eventfd()?,
            unanswered: 0,
        };
        for i in 0..spec.count {
            let f = datagram(spec, &reflector, i);
            nic.push(f)?;
        }
        Ok(nic)
    }

    fn push(&mut self, frame: Vec<u8>) -> io::Result<()> {
        if self.rx.is_empty() {
            self.ready.write_all(&1u64.to_ne_bytes())?;
        }
        self.rx.push_back(frame);
        Ok(())
    }
}

/// Seed datagram `i`: from the peer (port 40000 + i) to the client's echo port, 1472 bytes of a
/// pattern, with valid IPv4 and UDP checksums.
fn datagram(spec: &LoopbackSpec, peer: &Reflector, i: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..PAYLOAD).map(|j| (i + j) as u8).collect();
    crate::reflect::udp_frame(
        (peer.mac(), spec.peer, 40000 + (i % 20000) as u16),
        (spec.client_mac, spec.client_ip, ECHO_PORT),
        &payload,
    )
}

impl Nic for LoopbackNic {
    fn poll_set(&self, want_rx: bool, _want_tx: bool) -> Vec<NicPoll> {
        vec![NicPoll {
            fd: self.ready.as_raw_fd(),
            readable: want_rx,
            writable: false,
        }]
    }

    fn receive(
        &mut self,
        budget: usize,
        deliver: &mut dyn FnMut(RxFrame<'_>) -> RxVerdict,
    ) -> io::Result<bool> {
        for _ in 0..budget {
            let Some(f) = self.rx.front() else {
                // Empty: clear the wake-up (a push after this sets it again).
                let mut b = [0u8; 8];
                match self.ready.read(&mut b) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                return Ok(false);
            };
            let verdict = deliver(RxFrame {
                data: f,
                wire_len: f.len(),
            });
            if verdict == RxVerdict::Keep {
                return Ok(true);
            }
            if let Some(b) = self.rx.pop_front() {
                self.spare.push(b);
            }
        }
        Ok(!self.rx.is_empty())
    }

    fn tx_buffer(&mut self) -> Option<&mut [u8]> {
        // One frame at a time: it is answered in `tx_commit`.
        Some(&mut self.tx)
    }

    fn tx_commit(&mut self, len: usize) {
        let len = len.min(NET_BUFFER_SIZE);
        self.committed.0 += 1;
        self.committed.1 += len as u64;
        // The lent buffer becomes the received frame; a spare one is lent next.
        let mut next = self.spare.pop().unwrap_or_default();
        next.resize(NET_BUFFER_SIZE, 0);
        let mut frame = std::mem::replace(&mut self.tx, next);
        frame.truncate(len);
        match self.reflector.answer(&mut frame) {
            Ok(_) => {
                if self.push(frame).is_err() {
                    self.unanswered += 1;
                }
            }
            Err(_) => self.unanswered += 1,
        }
    }

    fn tx_flush(&mut self) -> io::Result<TxReport> {
        let (sent, sent_bytes) = std::mem::take(&mut self.committed);
        Ok(TxReport {
            sent,
            sent_bytes,
            failed: 0,
        })
    }

    fn tx_pending(&self) -> bool {
        false
    }

    fn take_dropped(&mut self) -> io::Result<u64> {
        Ok(0)
    }

    fn rx_ready(&self) -> bool {
        !self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, UdpPacket};

    fn spec() -> LoopbackSpec {
        "10.0.0.1,10.0.0.10,52:54:01:00:00:10,3".parse().unwrap()
    }

    #[test]
    fn the_spec_is_parsed_and_checked() {
        let s = spec();
        assert_eq!(s.peer, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(s.client_mac, [0x52, 0x54, 1, 0, 0, 0x10]);
        for bad in [
            "10.0.0.1,10.0.0.10,52:54:01:00:00:10",
            "10.0.0.1,10.0.0.10,52:54:01:00:00,3",
            "10.0.0.1,10.0.0.10,52:54:01:00:00:10,0",
            "10.0.0.1,10.0.0.10,52:54:01:00:00:10,5000",
            "10.0.0.256,10.0.0.10,52:54:01:00:00:10,3",
        ] {
            assert!(bad.parse::<LoopbackSpec>().is_err(), "{bad}");
        }
    }

    /// What the echo client would send back for `frame`: the datagram to its sender.
    fn echo(frame: &[u8]) -> Vec<u8> {
        let mut f = frame.to_vec();
        let (d, s) = (f[0..6].to_vec(), f[6..12].to_vec());
        f[0..6].copy_from_slice(&s);
        f[6..12].copy_from_slice(&d);
        let (a, b) = (f[26..30].to_vec(), f[30..34].to_vec());
        f[26..30].copy_from_slice(&b);
        f[30..34].copy_from_slice(&a);
        let (p, q) = (f[34..36].to_vec(), f[36..38].to_vec());
        f[34..36].copy_from_slice(&q);
        f[36..38].copy_from_slice(&p);
        f
    }

    #[test]
    fn seeded_datagrams_circle_through_the_reflector() {
        let mut nic = LoopbackNic::new(&spec()).unwrap();
        assert!(nic.rx_ready());
        let mut got = Vec::new();
        let more = nic
            .receive(64, &mut |f| {
                got.push(f.data.to_vec());
                RxVerdict::Consumed
            })
            .unwrap();
        assert!(!more);
        assert_eq!(got.len(), 3);
        let client = Ipv4Address::new(10, 0, 0, 10);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f.len(), 14 + 20 + 8 + PAYLOAD);
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.dst_addr(), client);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&IpAddress::Ipv4(ip.src_addr()), &IpAddress::Ipv4(client)));
            assert_eq!(udp.dst_port(), ECHO_PORT);
            assert_eq!(udp.src_port(), 40000 + i as u16);
        }
        // The client's echo goes out, comes back in as the same datagram.
        for f in &got {
            let e = echo(f);
            let b = nic.tx_buffer().unwrap();
            b[..e.len()].copy_from_slice(&e);
            nic.tx_commit(e.len());
        }
        let r = nic.tx_flush().unwrap();
        assert_eq!((r.sent, r.sent_bytes), (3, 3 * 1514));
        let mut again = Vec::new();
        nic.receive(64, &mut |f| {
            again.push(f.data.to_vec());
            RxVerdict::Consumed
        })
        .unwrap();
        assert_eq!(again, got);
        // Something the reflector does not answer is counted, not looped.
        let b = nic.tx_buffer().unwrap();
        b[..60].fill(0xab);
        nic.tx_commit(60);
        assert_eq!(nic.unanswered, 1);
        assert!(!nic.rx_ready());
    }
}
