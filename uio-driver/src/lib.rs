//! netvm's guest network driver: moves Ethernet frames between a promiscuous `AF_PACKET` socket
//! and the driver side of sDDF's network queues, which reach the guest as UIO devices.
//!
//! * [`config`]: the driver's configuration ([`config::DriverConfig`], sDDF's
//!   `.net_driver_config`): the queue capacities, from the device tree or a PD section.
//! * [`driver`]: the core ([`driver::Driver`]), independent of UIO and sockets, behind the
//!   [`driver::Platform`] (doorbells, sleeping) and [`driver::Nic`] (frames) traits.
//! * [`uio`]: finding UIO devices by name and the guest [`uio::UioPlatform`].
//! * [`packet`]: the TPACKET_V3 (or V2) receive ring and `sendmmsg` transmit ([`packet::PacketNic`]).
//! * [`host`]: an eventfd [`driver::Platform`] for running the core as an ordinary process.
//! * [`names`]: the UIO device names (shared with the guest image builder).
//! * [`counters`]: what the driver counts.
//! * [`reflect`]: the reflector (`--reflect`), the packet path alone with nothing behind it.
//! * [`loopback`]: a NIC with the reflector as its wire (`--loopback`), the sDDF side alone.
//!
//! # Building for the guest
//!
//! A static aarch64 binary, linked with the toolchain's own `rust-lld` and musl's self-contained
//! start files (no cross C toolchain needed), with strict alignment:
//!
//! ```text
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+strict-align" \
//!     cargo build -p uio-driver --release --target aarch64-unknown-linux-musl
//! ```
//!
//! The result, `target/aarch64-unknown-linux-musl/release/uio-driver`, is a statically linked
//! AArch64 ELF. `+strict-align` is needed because UIO maps are Device memory, where an access
//! not aligned to its own size faults: without it LLVM writes a 16-byte queue descriptor
//! (8-byte aligned) with one `str q0` (seen in `sddf::queue::Producer::enqueue`); with it, two
//! aligned 64-bit stores. (rustc warns that the feature is unstable; the C driver used
//! `-mstrict-align` for the same reason.)
//!
//! # Usage
//!
//! `uio-driver --iface eth0 [--config FILE] [--sysfs-root /sys] [--dev-root /dev]`; the queue
//! capacities come from the `.net_driver_config` blob in `FILE`, by default the device tree's
//! `/chosen/netvm,net-driver-config` ([`config::DT_PATHS`]). Once everything is found it prints
//! `uio-driver: ready iface=<if> rx_capacity=N tx_capacity=N tx_regions=N` on stdout.
//! SIGUSR1 prints the counters; SIGTERM/SIGINT print them and exit.
#![deny(unsafe_code)]

pub mod config;
pub mod counters;
pub mod driver;
pub mod host;
pub mod loopback;
pub mod names;
pub mod packet;
pub mod reflect;
pub mod sched;
pub mod signals;
mod sys;
pub mod uio;
