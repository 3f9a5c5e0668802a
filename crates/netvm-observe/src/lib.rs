//! Observability of a netvm system from outside: the counters and buffer pools of a running
//! host-mode system ([`host`], over its region files), and of a seL4 system in QEMU, found in
//! its RAM through QMP ([`qemu_stats`], [`qemu_pools`], placed with the Microkit tool's report,
//! [`microkit_report`]). `netvm stats`, the demos and the end-to-end tests read systems through
//! this crate; it never writes a region.
#![deny(unsafe_code)]

pub mod host;
mod mapped;
pub mod microkit_report;
pub mod qemu_pools;
pub mod qemu_stats;

pub use mapped::MappedFile;
