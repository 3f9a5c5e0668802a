//! Node messaging by id over UDP, in the shape of zCore's distributed-kernel network framework:
//! a node **joins** a master (a PD or a host process on the LAN) and gets a unique id, then
//! **sends** messages to other nodes by id and **receives** `(source id, bytes)`; it **leaves**
//! when done. The master keeps the table id → address and answers lookups, so a node can send to
//! an id it has never heard from.
//!
//! The crate is sans-IO and `#![no_std]`, like smoltcp's sockets: the caller feeds [`Node`] (and
//! [`Master`]) the datagrams that arrive and the time, and asks it for the datagrams to send and
//! when to call again. Nothing is allocated: a node holds [`TX_SLOTS`] outgoing and [`RX_SLOTS`]
//! incoming messages of up to [`MAX_MESSAGE`] bytes each in fixed buffers (about 130 KiB in all;
//! a PD keeps its `Node` in a static, a host tool in a `Box`). Adapters drive it over
//! `std::net::UdpSocket` (feature `std`, module `udp`) and over a smoltcp UDP socket (feature
//! `smoltcp`, module `smol`).
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddrV4};
//! use node_msg::{Config, Event, Master, Node, PORT};
//!
//! let at = |n: u8| SocketAddrV4::new(Ipv4Addr::new(10, 0, n, 10), PORT);
//! let master_at = SocketAddrV4::new(Ipv4Addr::new(10, 0, 255, 1), PORT);
//! let mut master = Box::new(Master::new(254));
//! let mut nodes = [1u8, 2].map(|n| Box::new(Node::new(master_at, [0; 6], n.into(), Config::default())));
//! nodes[0].send(0, 2, b"too early").unwrap_err(); // no id yet
//! // The caller's I/O loop: here every datagram simply arrives.
//! let mut buf = [0u8; 1472];
//! let mut run = |nodes: &mut [Box<Node>; 2], now: u64| {
//!     for _ in 0..4 {
//!         for i in 0..2 {
//!             while let Some((to, n)) = nodes[i].poll_transmit(now, &mut buf) {
//!                 let dgram = buf[..n].to_vec();
//!                 if to == master_at {
//!                     master.handle_datagram(at(i as u8 + 1), &dgram);
//!                 } else {
//!                     nodes[usize::from(to.ip().octets()[2]) - 1].handle_datagram(now, at(i as u8 + 1), &dgram);
//!                 }
//!             }
//!         }
//!         while let Some((to, n)) = master.poll_transmit(&mut buf) {
//!             let dgram = buf[..n].to_vec();
//!             nodes[usize::from(to.ip().octets()[2]) - 1].handle_datagram(now, master_at, &dgram);
//!         }
//!     }
//! };
//! run(&mut nodes, 0);
//! assert_eq!((nodes[0].id(), nodes[1].id()), (Some(1), Some(2))); // ids follow addresses
//! let sent = nodes[0].send(1, 2, b"hello").unwrap();
//! run(&mut nodes, 1);
//! let mut msg = [0u8; 64];
//! assert_eq!(nodes[1].try_recv(&mut msg), Ok((1, 5)));
//! assert_eq!(&msg[..5], b"hello");
//! assert_eq!(nodes[0].poll_event(), Some(Event::Delivered(sent)));
//! ```
//!
//! # Contract
//!
//! * **Ids.** Node ids are `0..=254` ([`netvm_api::lan::MAX_NODE`]); [`MASTER`] (255) names the
//!   master and a node that has no id yet. A node whose address (or else MAC) has the
//!   [`netvm_api::lan`] shape gets the id its address names, so ids agree with addresses; a
//!   repeated join from the same address gets the same id; anyone else gets the lowest free id;
//!   when the master's table is full the join is refused with [`Refusal::Full`].
//! * **Messages** of 1..=[`MAX_MESSAGE`] bytes are split into fragments that each fit one
//!   1472-byte UDP payload ([`wire::MAX_DATAGRAM`]), each carrying source id, the sender's session
//!   (incarnation), message sequence number, fragment index and count, lengths and a checksum
//!   (the layout is in [`wire`]). The receiver reassembles them and acknowledges the whole message.
//! * **Loss is reported, not silent.** An unacknowledged message is sent again every
//!   [`Config::rto_ms`], at most [`Config::max_tries`] times; then [`Node::poll_event`] reports
//!   it [`Event::Lost`] (so "lost" means "not confirmed"); an acknowledged one is reported
//!   [`Event::Delivered`]. A TX slot is only reused after its outcome has been taken, so no
//!   outcome is ever overwritten. A receiver drops a message whose fragments do not all arrive
//!   within [`Config::reassembly_ms`] and counts it (`rx_expired`).
//! * **Duplicates.** Repeated fragments are recognised by index, repeated messages by a 64-entry
//!   window of sequence numbers per source and session (a repeated message is acknowledged again,
//!   not delivered again); a message more than 64 behind the newest is dropped unacknowledged.
//! * **Hostile input.** Every field of every datagram is checked ([`wire::Header::parse`]);
//!   malformed, truncated, oversized, foreign (not addressed to this node, or a master answer not
//!   from the master) and inconsistent datagrams are counted in [`Counters`] and dropped. No input
//!   panics.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod content;
mod master;
mod node;
#[cfg(feature = "smoltcp")]
pub mod smol;
#[cfg(feature = "std")]
pub mod udp;
pub mod wire;

pub use master::{Master, MasterCounters};
pub use node::{Counters, Event, LossReason, MsgId, Node, RecvError, SendError, State};
pub use wire::Refusal;

/// The UDP port node messaging uses, on the master and on every node.
pub const PORT: u16 = 1240;
/// The id of the master (and the source id of a node that has not joined yet).
pub const MASTER: u8 = 255;
/// Largest message, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Outgoing messages a node holds at once (sending, or with an outcome not yet taken).
pub const TX_SLOTS: usize = 4;
/// Incoming messages a node holds at once (being reassembled, or complete and not yet received).
pub const RX_SLOTS: usize = 4;

/// Timing of a node, in milliseconds of the caller's clock. `rto_ms * max_tries` must outlast
/// address resolution: smoltcp holds a datagram for a host it has no ARP entry for and sends at
/// most one ARP request a second for all hosts together (so the first message to a new peer
/// can wait a second behind the ARP request for the master); the default gives a message 1.6 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Time to wait for an answer (ack, join, lookup) before sending again.
    pub rto_ms: u64,
    /// Transmissions of a message or request before it is given up.
    pub max_tries: u8,
    /// Time a partly received message may wait for its missing fragments.
    pub reassembly_ms: u64,
}

impl Config {
    /// [`Config::default`], usable in a `const`.
    pub const DEFAULT: Config = Config {
        rto_ms: 200,
        max_tries: 8,
        reassembly_ms: 2000,
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}
