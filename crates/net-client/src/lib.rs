//! The client side of an sDDF 0.7 network connection: what a client PD (an echo server, a web
//! server, a benchmark) uses to send and receive Ethernet frames over the RX queues from its copier
//! and the TX queues to virt_tx, shaped like Solo5's `Mkernel.Net`, plus a smoltcp
//! [`phy::Device`](smoltcp::phy::Device) over it. [`solo5`] is the public API of a client PD in
//! Solo5's shape (acquire by name, info, read, write, write-into), with the mapping table.
//!
//! ```text
//! copier --rx_active--> [NetDevice] --rx_free--> copier      (rx_data: the copier's copies)
//! virt_tx <-tx_active-- [NetDevice] <-tx_free--- virt_tx     (tx_data: our own buffers)
//! ```
//!
//! # Contract
//!
//! * [`NetDevice::connect`] takes the PD's parsed `.net_client_config` and the six shared regions
//!   ([`Regions`], built by [`Regions::from_config`] from a mapper, or from the configured vaddrs
//!   with [`Regions::at_config_vaddrs`]). It hands every TX buffer to itself through `tx_free`
//!   (sDDF's `net_buffers_init(tx, 0)`); the copier does the same for RX.
//! * **Restart.** `connect` first announces the instance in the [`netvm_api::reconnect`] words of
//!   `rx_free` and `tx_free`. The first instance of a client initialises as above (what a C sDDF
//!   peer expects); a later one (the PD was restarted and its regions kept their contents)
//!   hands itself nothing, asks the copier and virt_tx for a reset in its first
//!   [`NetDevice::notify`], and touches neither queue pair until its peer has rebuilt it
//!   ([`NetDevice::reconnecting`]); meanwhile nothing is received or sent. Restarting needs
//!   netvm's copier and virt_tx: a C sDDF peer never answers.
//! * Every descriptor the peers hand over is validated before use: the offset must be a multiple
//!   of 2048 naming one of the `num_buffers` buffers, and an RX length must be in `1..=2048`. A bad
//!   descriptor is counted and dropped without touching the memory it names; an RX buffer with a
//!   valid offset but a bad length is returned to the copier so no buffer is lost.
//! * **Copies.** Shared memory is never viewed as `&[u8]`: a peer may write it at any time, and a
//!   Rust reference to memory that changes under it is undefined behaviour (concretely, a parser
//!   that reads a length twice could see two values). So [`NetDevice::receive`] lends the frame
//!   as a bounds-checked [`Region`](sddf::shm::Region) (zero-copy, for consumers that can work with
//!   volatile reads) and [`NetDevice::receive_into`] / the smoltcp device copy it once, at memcpy
//!   speed, into private memory; the RX buffer goes back to the copier as soon as the frame has
//!   been read, so a slow stack never starves the copier. [`NetDevice::write_into`] lets the
//!   caller build a frame in a private 2048-byte buffer, then copies it into the TX buffer once.
//!   lib_sddf_lwip makes the same single copy on TX and none on RX (lwIP parses in place); the RX
//!   copy is the price of soundness here, and it is also the snapshot that makes the frame filter's
//!   checks stick.
//! * **Signalling** follows sDDF exactly (sddf-net.md §1.6): work is batched, then
//!   [`NetDevice::notify`] notifies each peer at most once, only if that peer's queue asks for it.
//!   Draining RX ends with [`NetDevice::rearm_rx`] (request-signal + double-check). Unlike
//!   lib_sddf_lwip, a client that runs out of TX buffers asks virt_tx for a signal on `tx_free`,
//!   so it is woken when buffers come back instead of waiting for unrelated traffic.
//! * Queue indices a peer corrupts are reported by the sddf crate as peer misbehaviour; here they
//!   are counted and treated as "no work", never trusted.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "mock")]
extern crate std;

mod device;
pub mod filter;
#[cfg(feature = "mock")]
pub mod mock;
pub mod phy;
mod regions;
pub mod solo5;

pub use device::{Counters, NetDevice, RxFrame, TxError};
pub use phy::{DEFAULT_RX_BUDGET, ETHERNET_FRAME_MAX};
pub use regions::{RegionName, Regions};

use sddf::config::MacAddr;
use sddf::queue::QueueError;

/// The IP MTU every client gets: the Ethernet payload that fits a 2048-byte sDDF buffer with room
/// to spare, and what the rest of the network (virtio-net, veth) carries.
pub const MTU: u16 = 1500;

/// What a connected client learns about its interface (Solo5's `net_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetInfo {
    /// This client's MAC address, from its config.
    pub mac: MacAddr,
    /// The IP MTU ([`MTU`]).
    pub mtu: u16,
}

/// How the client notifies its peers; the PD supplies it (seL4: `microkit` channels, host tests:
/// counters). Called at most once per queue per [`NetDevice::notify`].
pub trait Signal {
    /// Notify the RX peer (the copier, or virt_rx): RX buffers were returned.
    fn notify_rx(&mut self);
    /// Notify virt_tx: frames were queued for transmission.
    fn notify_tx(&mut self);
}

/// Why a client could not connect. Every message names the region or queue involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The config gives no usable mapping for a region (vaddr 0, or the mapper knows none).
    Unmapped {
        /// The region.
        region: RegionName,
        /// The vaddr the config gives.
        vaddr: u64,
    },
    /// A region is smaller than its queue or its buffers need.
    RegionTooSmall {
        /// The region.
        region: RegionName,
        /// Its size.
        size: usize,
        /// The bytes needed.
        needed: usize,
    },
    /// A queue capacity (`num_buffers`) is not a power of two in 1..=32768.
    BadCapacity {
        /// `"rx"` or `"tx"`.
        queue: &'static str,
        /// The capacity found.
        value: u16,
    },
    /// Handing our own TX buffers to `tx_free` failed (the queue already held descriptors, or its
    /// indices are corrupt): the TX queues were not fresh.
    TxInit(QueueError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Unmapped { region, vaddr } => write!(
                f,
                "net_client_config: region {} at vaddr {vaddr:#x} is not mapped",
                region.as_str()
            ),
            Error::RegionTooSmall {
                region,
                size,
                needed,
            } => write!(
                f,
                "net_client_config: region {} is {size:#x} bytes, needs {needed:#x}",
                region.as_str()
            ),
            Error::BadCapacity { queue, value } => write!(
                f,
                "net_client_config: {queue} num_buffers {value} is not a power of two in 1..=32768"
            ),
            Error::TxInit(e) => write!(
                f,
                "net_client_config: cannot hand TX buffers to tx_free: {e}"
            ),
        }
    }
}
