//! An in-memory LAN for node-msg tests: a master and nodes exchanging datagrams over a mock link
//! that can drop, duplicate and reorder them (a mock of the link only: the nodes are real).
#![allow(dead_code)] // each test file uses part of it

use std::net::{Ipv4Addr, SocketAddrV4};

use netvm_api::lan::{client_ip, client_mac, HOST_IP};
use node_msg::{Config, Event, Master, Node, PORT};

pub const MASTER_ADDR: SocketAddrV4 = SocketAddrV4::new(HOST_IP, PORT);

/// A datagram in flight.
struct Flight {
    at: u64,
    from: SocketAddrV4,
    to: SocketAddrV4,
    bytes: Vec<u8>,
}

pub struct Lan {
    pub master: Box<Master>,
    pub nodes: Vec<Box<Node>>,
    pub addrs: Vec<SocketAddrV4>,
    /// Nodes whose address no longer answers (left and gone).
    pub gone: Vec<bool>,
    pub now: u64,
    flights: Vec<Flight>,
    rng: u64,
    /// Percent of datagrams dropped.
    pub drop_pct: u64,
    /// Percent of datagrams delivered twice.
    pub dup_pct: u64,
    /// Whether datagrams take 1..=8 ms instead of 1 ms (so they overtake each other).
    pub reorder: bool,
    /// Drops datagrams this says yes to.
    pub drop_if: Option<fn(&[u8]) -> bool>,
    pub events: Vec<Vec<Event>>,
    /// When set, every step receives every node's complete messages into `received`.
    pub auto_drain: bool,
    pub received: Vec<Vec<(u8, Vec<u8>)>>,
}

impl Lan {
    /// `n` nodes at the `netvm_api::lan` addresses of nodes 1..=n, joined.
    pub fn new(n: u8, seed: u64, cfg: Config) -> Lan {
        let addrs: Vec<_> = (1..=n)
            .map(|i| SocketAddrV4::new(client_ip(i, 0).unwrap(), PORT))
            .collect();
        Lan::with_addrs(addrs, seed, cfg, 254)
    }

    /// Nodes at `addrs` and a master with room for `capacity`; runs until every join is answered.
    pub fn with_addrs(addrs: Vec<SocketAddrV4>, seed: u64, cfg: Config, capacity: usize) -> Lan {
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (node, _) = netvm_api::lan::node_of_ip(*a.ip()).unwrap_or((0, 0));
                let mac = client_mac(node, 0).unwrap();
                let seed = seed as u32 + i as u32 * 7919;
                Box::new(Node::new(MASTER_ADDR, mac, seed, cfg))
            })
            .collect();
        let n = addrs.len();
        let mut lan = Lan {
            master: Box::new(Master::new(capacity)),
            nodes,
            addrs,
            gone: vec![false; n],
            now: 1,
            flights: Vec::new(),
            rng: seed | 1,
            drop_pct: 0,
            dup_pct: 0,
            reorder: false,
            drop_if: None,
            events: vec![Vec::new(); n],
            auto_drain: false,
            received: vec![Vec::new(); n],
        };
        lan.run_until(10_000, |l| {
            l.nodes
                .iter()
                .all(|n| n.state() != node_msg::State::Joining)
        });
        lan
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11
    }

    fn put(&mut self, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) {
        if self.drop_if.is_some_and(|f| f(bytes)) || self.rand() % 100 < self.drop_pct {
            return;
        }
        let copies = if self.rand() % 100 < self.dup_pct {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.reorder { 1 + self.rand() % 8 } else { 1 };
            self.flights.push(Flight {
                at: self.now + delay,
                from,
                to,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// One millisecond: every node and the master send what is due, due datagrams arrive.
    pub fn step(&mut self) {
        let mut buf = [0u8; 1500];
        for i in 0..self.nodes.len() {
            if self.gone[i] {
                continue;
            }
            self.nodes[i].handle_timeout(self.now);
            while let Some((to, n)) = self.nodes[i].poll_transmit(self.now, &mut buf) {
                let from = self.addrs[i];
                self.put(from, to, &buf[..n]);
            }
            while let Some(e) = self.nodes[i].poll_event() {
                self.events[i].push(e);
            }
            if self.auto_drain {
                let got = self.drain(i);
                self.received[i].extend(got);
            }
        }
        while let Some((to, n)) = self.master.poll_transmit(&mut buf) {
            self.put(MASTER_ADDR, to, &buf[..n]);
        }
        self.now += 1;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flights.drain(..).partition(|f| f.at <= now);
        self.flights = later;
        for f in due {
            if f.to == MASTER_ADDR {
                self.master.handle_datagram(f.from, &f.bytes);
            } else if let Some(i) = self.addrs.iter().position(|a| *a == f.to) {
                if !self.gone[i] {
                    self.nodes[i].handle_datagram(now, f.from, &f.bytes);
                }
            }
        }
    }

    /// Steps until `done` or `max_ms` pass; returns whether `done` held.
    pub fn run_until(&mut self, max_ms: u64, done: impl Fn(&Lan) -> bool) -> bool {
        let end = self.now + max_ms;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Whether nothing is in flight and no node has a message in flight.
    pub fn quiet(&self) -> bool {
        self.flights.is_empty() && self.nodes.iter().all(|n| n.in_flight() == 0)
    }

    /// Every message node `i` has received so far.
    pub fn drain(&mut self, i: usize) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0; node_msg::MAX_MESSAGE];
        while let Ok((src, len)) = self.nodes[i].try_recv(&mut buf) {
            out.push((src, buf[..len].to_vec()));
        }
        out
    }
}

/// A message whose bytes say who sent it, to whom, and which one it is.
pub fn pattern(src: u8, dest: u8, n: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 ^ n.wrapping_mul(31) ^ (u32::from(src) << 3) ^ u32::from(dest)) as u8)
        .collect()
}

/// An address of no `netvm_api::lan` shape.
pub fn host(last: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 168, 7, last), 5000)
}
