//! The sDDF 0.7 network ABI, in Rust.
//!
//! This crate is the binary contract between netvm's components and sDDF's C components:
//!
//! * [`desc`]: the 16-byte buffer descriptor `net_buff_desc_t` (`io_or_offset`, `len`, 6-bit `oid`).
//! * [`queue`]: the single-producer single-consumer ring `net_queue_t` (u16 `tail`, u16 `head`,
//!   u32 `consumer_signalled`, descriptors from byte 8) with free-running u16 indices, the
//!   request-signal / double-check / require-signal protocol, and role-typed handles so that the code
//!   owning one side of a queue pair cannot act as the other side.
//! * [`shm`]: bounds-checked volatile access to shared memory; [`cache`]: DMA cache maintenance.
//! * [`config`]: the config blobs sdfgen (>= 0.31, sDDF 0.7) writes into the `.net_*_config` and
//!   `.device_resources` ELF sections, with checked parsing.
//! * [`timer`]: the timer subsystem's protocol labels and `.timer_client_config`.
//!
//! Nothing else: netvm's extensions (its options section, stats regions, restart words, frame
//! taps, UIO names) are the `netvm-api` crate, and the glue to the Microkit runtime is
//! `pd-support`. This crate has no runtime dependency, so tools and tests use it as PDs do.
//! Beyond the C headers it keeps only what a Rust user of the ABI needs to use it safely: the
//! bounds-checked memory access ([`shm`]), queue handles with roles, a queue reset (for a peer
//! that rebuilds a queue pair) and test support (feature `std`).
//!
//! # Contract
//!
//! Shared memory is untrusted. Nothing read from it can make this crate panic, index outside the
//! region it was given, or mistake a corrupt queue for an empty or full one: a peer that leaves
//! impossible indices is reported as [`queue::QueueError::PeerMisbehaviour`]. Each side keeps its
//! own index privately and only publishes it, so a peer scribbling on our index hurts only itself.
//! Queue capacities come only from trusted configuration, never from shared memory.
//!
//! Descriptors themselves (offsets, lengths, `oid`) are *not* validated here: what is valid depends
//! on the component (see the virtualisers).
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "std", loom))]
extern crate std;

pub mod cache;
pub mod config;
pub mod desc;
pub mod queue;
pub mod shm;
mod sync;
#[cfg(all(feature = "std", not(loom)))]
pub mod testing;
pub mod timer;

/// Size in bytes of every sDDF network buffer; buffer `i` of a data region starts at `i * 2048`.
pub const NET_BUFFER_SIZE: usize = 2048;

pub use desc::BuffDesc;

/// How a component signals its peers: Microkit notifications, immediate or deferred to the end
/// of the current handler (one pending slot, as libmicrokit). sDDF's `sddf_notify` and
/// `sddf_deferred_notify` (include/microkit/os/sddf.h); the Microkit implementation is
/// `pd_support::MicrokitNotifier`, so this crate needs no runtime.
pub trait Notifier {
    /// Signals channel `ch` now.
    fn notify(&mut self, ch: u8);
    /// Signals channel `ch` when the current handler returns.
    fn deferred_notify(&mut self, ch: u8);
}
pub use queue::{Capacity, QueueError};
