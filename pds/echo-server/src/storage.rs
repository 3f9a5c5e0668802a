//! Socket storage: fixed arrays, no heap (a PD on seL4 has none), split so that the large
//! all-zero part can live in `.bss` rather than in the PD image.
//!
//! Sizes follow the performance notes in anchors.md §A.7 (small smoltcp buffers make echo slow):
//! each TCP echo connection gets 64 KiB each way (lwIP's echo uses a 44 × 1460 B window), and the
//! UDP socket holds two RX batches of full-size datagrams each way.
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use smoltcp::iface::SocketStorage;
use smoltcp::socket::udp;

use echo_api::peers::{MAX_PEERS, MAX_UDP_SIZE};

use crate::TCP_ECHO_CONNS;

/// Sockets: UDP echo, the TCP echo connections, the utilisation daemon, DHCP, for the
/// originating role (`crate::origin`) a UDP socket per peer and one TCP connection, and the
/// messaging role's UDP socket (`crate::msg`).
pub(crate) const SOCKETS: usize = TCP_ECHO_CONNS + 3 + MAX_PEERS + 1 + 1;
/// Bytes per direction per TCP echo connection.
pub const TCP_BUFFER: usize = 64 * 1024;
/// Datagrams per direction in the UDP echo socket.
pub const UDP_PACKETS: usize = 2 * net_client::DEFAULT_RX_BUDGET;
/// Payload bytes per direction in the UDP echo socket.
pub const UDP_BUFFER: usize = UDP_PACKETS * 1536;
/// Bytes per direction for the utilisation daemon.
pub const UTIL_BUFFER: usize = 1024;
/// Echoes waiting per originating peer's UDP socket: requests are paced, so a few RX batches'
/// worth of one peer's echoes is plenty.
pub const PEER_UDP_RX: usize = 8;
/// Requests waiting to be sent per peer (a peer whose address does not resolve holds them).
pub const PEER_UDP_TX: usize = 4;
const PEER_DATAGRAM: usize = MAX_UDP_SIZE as usize;
/// One peer's echo buffer.
pub(crate) type PeerRx = [u8; PEER_UDP_RX * PEER_DATAGRAM];
/// One peer's request buffer.
pub(crate) type PeerTx = [u8; PEER_UDP_TX * PEER_DATAGRAM];
/// Bytes per direction of the originating role's TCP connection.
pub const ORIGIN_TCP_BUFFER: usize = 16 * 1024;
/// Datagrams per direction in the messaging role's socket: the fragments of a few messages.
pub const MSG_PACKETS: usize = 16;
/// Payload bytes per direction in the messaging role's socket.
pub const MSG_BUFFER: usize = MSG_PACKETS * node_msg::wire::MAX_DATAGRAM;

/// The sockets and the UDP packet metadata (about 23 KiB; not all-zero, so a static of it is in
/// `.data`).
pub struct Sockets<'a> {
    pub(crate) sockets: [SocketStorage<'a>; SOCKETS],
    pub(crate) udp_rx_meta: [udp::PacketMetadata; UDP_PACKETS],
    pub(crate) udp_tx_meta: [udp::PacketMetadata; UDP_PACKETS],
    pub(crate) peer_rx_meta: [[udp::PacketMetadata; PEER_UDP_RX]; MAX_PEERS],
    pub(crate) peer_tx_meta: [[udp::PacketMetadata; PEER_UDP_TX]; MAX_PEERS],
    pub(crate) msg_rx_meta: [udp::PacketMetadata; MSG_PACKETS],
    pub(crate) msg_tx_meta: [udp::PacketMetadata; MSG_PACKETS],
}

impl Default for Sockets<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl Sockets<'_> {
    /// Empty socket slots.
    pub const fn new() -> Self {
        Sockets {
            sockets: [SocketStorage::EMPTY; SOCKETS],
            udp_rx_meta: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
            udp_tx_meta: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
            peer_rx_meta: [[udp::PacketMetadata::EMPTY; PEER_UDP_RX]; MAX_PEERS],
            peer_tx_meta: [[udp::PacketMetadata::EMPTY; PEER_UDP_TX]; MAX_PEERS],
            msg_rx_meta: [udp::PacketMetadata::EMPTY; MSG_PACKETS],
            msg_tx_meta: [udp::PacketMetadata::EMPTY; MSG_PACKETS],
        }
    }
}

/// The socket data buffers (about 1.3 MiB of zeros, so a static of it is in `.bss`; the
/// originating role's part, about 300 KiB, and the messaging role's, about 64 KiB, are used
/// only when configured).
pub struct Buffers {
    pub(crate) udp_rx: [u8; UDP_BUFFER],
    pub(crate) udp_tx: [u8; UDP_BUFFER],
    pub(crate) tcp_rx: [[u8; TCP_BUFFER]; TCP_ECHO_CONNS],
    pub(crate) tcp_tx: [[u8; TCP_BUFFER]; TCP_ECHO_CONNS],
    pub(crate) util_rx: [u8; UTIL_BUFFER],
    pub(crate) util_tx: [u8; UTIL_BUFFER],
    pub(crate) peer_rx: [PeerRx; MAX_PEERS],
    pub(crate) peer_tx: [PeerTx; MAX_PEERS],
    pub(crate) origin_tcp_rx: [u8; ORIGIN_TCP_BUFFER],
    pub(crate) origin_tcp_tx: [u8; ORIGIN_TCP_BUFFER],
    pub(crate) msg_rx: [u8; MSG_BUFFER],
    pub(crate) msg_tx: [u8; MSG_BUFFER],
    pub(crate) msg_buf: [u8; node_msg::MAX_MESSAGE],
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

impl Buffers {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Buffers {
            udp_rx: [0; UDP_BUFFER],
            udp_tx: [0; UDP_BUFFER],
            tcp_rx: [[0; TCP_BUFFER]; TCP_ECHO_CONNS],
            tcp_tx: [[0; TCP_BUFFER]; TCP_ECHO_CONNS],
            util_rx: [0; UTIL_BUFFER],
            util_tx: [0; UTIL_BUFFER],
            peer_rx: [[0; PEER_UDP_RX * PEER_DATAGRAM]; MAX_PEERS],
            peer_tx: [[0; PEER_UDP_TX * PEER_DATAGRAM]; MAX_PEERS],
            origin_tcp_rx: [0; ORIGIN_TCP_BUFFER],
            origin_tcp_tx: [0; ORIGIN_TCP_BUFFER],
            msg_rx: [0; MSG_BUFFER],
            msg_tx: [0; MSG_BUFFER],
            msg_buf: [0; node_msg::MAX_MESSAGE],
        }
    }
}

/// A value in a static, lent out mutably once: how a PD gets its [`Sockets`] and [`Buffers`]
/// without a heap and without a megabyte-sized stack frame.
///
/// ```ignore
/// static BUFFERS: TakeOnce<Buffers> = TakeOnce::new(Buffers::new());
/// let buffers: &'static mut Buffers = BUFFERS.take().expect("taken once");
/// ```
pub struct TakeOnce<T> {
    cell: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the only access to `cell` is the one `&mut` that `take` hands out, at most once
// (guarded by the atomic swap), so sharing the static between threads cannot alias it; the value
// may then be used from whichever thread took it, hence `T: Send`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    /// `value`, not yet taken.
    pub const fn new(value: T) -> Self {
        TakeOnce {
            cell: UnsafeCell::new(value),
            taken: AtomicBool::new(false),
        }
    }

    /// The value, the first time only.
    // `&self` to `&mut`: sound because `taken` lets exactly one caller through.
    #[allow(unsafe_code, clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above returned `false` exactly once for this static, so this is the
        // only reference to the cell's contents ever created; the static lives forever.
        Some(unsafe { &mut *self.cell.get() })
    }
}
