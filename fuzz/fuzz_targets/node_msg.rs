//! node-msg's `Node` and `Master` on a LAN of three (master, node A, node B) where the fuzzer
//! also injects datagrams: raw bytes, or headers with any fields and a valid checksum (so they
//! get past the checksum to the field checks), from the peers' or a stranger's address; honest
//! sends, leaves, receives and time passing in between, the honest traffic lossy at will.
//!
//! Checks: nothing panics; no more messages in flight than TX slots; every received message is
//! 1..=MAX_MESSAGE bytes; the master never holds more members than its capacity; and once the
//! fuzzer stops, honest traffic settles: every message A sent gets an outcome.
#![no_main]
use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use netvm_api::lan::{client_ip, client_mac, HOST_IP};
use netvm_fuzz::Input;
use node_msg::wire::{Header, Kind, MAX_DATAGRAM};
use node_msg::{Config, Master, Node, MAX_MESSAGE, PORT, TX_SLOTS};

const M: SocketAddrV4 = SocketAddrV4::new(HOST_IP, PORT);

struct Lan {
    master: Box<Master>,
    nodes: [Box<Node>; 2],
    addrs: [SocketAddrV4; 2],
    now: u64,
    wire: Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    capacity: usize,
}

impl Lan {
    /// Everyone sends what is due; what is on the wire arrives unless `drop` says no.
    fn step(&mut self, ms: u64, mut drop: impl FnMut() -> bool) {
        self.now += ms;
        let mut buf = [0u8; MAX_DATAGRAM];
        for i in 0..2 {
            self.nodes[i].handle_timeout(self.now);
            while let Some((to, n)) = self.nodes[i].poll_transmit(self.now, &mut buf) {
                self.wire.push((self.addrs[i], to, buf[..n].to_vec()));
            }
        }
        while let Some((to, n)) = self.master.poll_transmit(&mut buf) {
            self.wire.push((M, to, buf[..n].to_vec()));
        }
        for (from, to, bytes) in std::mem::take(&mut self.wire) {
            if drop() {
                continue;
            }
            self.deliver(from, to, &bytes);
        }
        self.check();
    }

    fn deliver(&mut self, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) {
        if to == M {
            self.master.handle_datagram(from, bytes);
        } else if let Some(i) = self.addrs.iter().position(|a| *a == to) {
            self.nodes[i].handle_datagram(self.now, from, bytes);
        }
    }

    fn check(&mut self) {
        let mut buf = vec![0; MAX_MESSAGE];
        for n in &mut self.nodes {
            assert!(n.in_flight() <= TX_SLOTS);
            while let Ok((_, len)) = n.try_recv(&mut buf) {
                assert!((1..=MAX_MESSAGE).contains(&len));
            }
            while n.poll_event().is_some() {}
        }
        assert!(self.master.members().count() <= self.capacity);
    }
}

/// A header with fuzzer-chosen fields (kind among the real ones most of the time).
fn forged(inp: &mut Input) -> Vec<u8> {
    let kind = match inp.u8() % 10 {
        0 => Kind::Join,
        1 => Kind::JoinOk,
        2 => Kind::JoinRefused,
        3 => Kind::Leave,
        4 => Kind::LeaveOk,
        5 => Kind::Lookup,
        6 => Kind::LookupOk,
        7 => Kind::LookupUnknown,
        8 => Kind::Ack,
        _ => Kind::Data,
    };
    let h = Header {
        kind,
        src: inp.u8(),
        dst: inp.u8(),
        session: inp.u16(),
        seq: inp.u32() % 8,
        frag: inp.u8() % 16,
        count: inp.u8() % 16,
        total: inp.u16() % (MAX_MESSAGE as u16 + 64),
    };
    let payload = inp.chunk(1500);
    let mut buf = [0u8; MAX_DATAGRAM];
    match h.emit(payload, &mut buf) {
        Some(n) => buf[..n].to_vec(),
        None => payload.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let capacity = usize::from(inp.u8() % 3) + 1;
    let addrs = [1u8, 2].map(|n| SocketAddrV4::new(client_ip(n, 0).unwrap(), PORT));
    let cfg = Config::default();
    let node = |n: u8| {
        Box::new(Node::new(
            M,
            client_mac(n, 0).unwrap(),
            u32::from(n) * 1000,
            cfg,
        ))
    };
    let mut lan = Lan {
        master: Box::new(Master::new(capacity)),
        nodes: [node(1), node(2)],
        addrs,
        now: 0,
        wire: Vec::new(),
        capacity,
    };
    let stranger = SocketAddrV4::new(Ipv4Addr::new(10, 0, 9, 99), PORT);
    while !inp.is_empty() {
        let from = [addrs[0], addrs[1], M, stranger][usize::from(inp.u8() % 4)];
        let to = [addrs[0], addrs[1], M][usize::from(inp.u8() % 3)];
        match inp.u8() % 7 {
            0 => {
                let bytes = inp.chunk(1600).to_vec();
                lan.deliver(from, to, &bytes);
            }
            1 => {
                let bytes = forged(&mut inp);
                lan.deliver(from, to, &bytes);
            }
            2 => {
                let i = usize::from(inp.u8() % 2);
                let len = usize::from(inp.u16()) % (MAX_MESSAGE + 2);
                let dest = inp.u8() % 4;
                let fill = inp.u8();
                let _ = lan.nodes[i].send(lan.now, dest, &vec![fill; len]);
            }
            3 => {
                let ms = u64::from(inp.u16() % 3000);
                let lossy = inp.u8();
                let mut k = 0u32;
                lan.step(ms, || {
                    k += 1;
                    lossy != 0 && k % u32::from(lossy) == 0
                });
            }
            4 => lan.nodes[usize::from(inp.u8() % 2)].leave(),
            _ => lan.step(1, || false),
        }
        lan.check();
    }
    // Honest traffic only: every message in flight gets an outcome.
    for _ in 0..400 {
        lan.step(50, || false);
    }
    assert!(lan.nodes.iter().all(|n| n.in_flight() == 0));
});
