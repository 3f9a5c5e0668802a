//! netvm's own ABI: every layout, name and magic beyond sDDF 0.7 that crosses a protection-domain
//! boundary (or the boundary between a PD and netvm's tools). The sDDF 0.7 ABI itself is the
//! `sddf` crate; this crate only adds to it and changes nothing of it, so a C sDDF component
//! that ignores these extensions still interoperates.
//!
//! * [`options`]: the virtualisers' `.netvm_net_options` section (driver-VM offset mode,
//!   multicast, TX fairness, lazy completions).
//! * [`stats`]: the `.netvm_stats` section and the counters region it names, which `netvm stats`
//!   reads.
//! * [`reconnect`]: the restart protocol's words in the spare bytes of a free queue region.
//! * [`tap`]: the frame-tap hook and the pcap file names host mode writes (`netvm run --pcap`).
//! * [`uio`]: the UIO device names the guest driver looks up (and the image builder gives).
//! * [`idle`]: the idle PD's counters region, read by the echo servers.
//! * [`driver_host`]: host mode's `.netvm_driver_host`, the interface of the driver stand-in.
//! * [`lan`]: node ids and the MACs and addresses that follow from them (`netvm lan`).
//! * [`vswitch`]: `.netvm_vswitch`, the local queues between virt_tx and the copiers (clients
//!   of one system reach each other without the frame leaving the system).
//!
//! Like `sddf`, this crate has no runtime: no dependency on `microkit`, so tools, tests and the
//! guest use it as they use `sddf`. PD glue (notifiers, start-up failures, the pcap writer) is in
//! `pd-support`.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod driver_host;
pub mod idle;
pub mod lan;
pub mod options;
#[cfg(not(loom))]
pub mod reconnect;
pub mod stats;
pub mod tap;
#[cfg(feature = "std")]
pub mod testing;
pub mod uio;
pub mod vswitch;
