//! netvm command-line library: the host-mode runner (`run`), the ipbench-compatible benchmark
//! (`bench`), the Linux kernel-socket reference echo server (`kernel_echo`), the ipbench
//! utilisation protocol (`util_proto`) and the counters and buffer pools of a seL4 system in
//! QEMU (`qemu_stats`, `qemu_pools`, `microkit_report`). `main.rs` is a thin CLI over these, and other code
//! (tests, demos) can call them in-process.
#![deny(unsafe_code)]

pub mod bench;
pub mod demo;
pub mod microkit_report;
pub mod observe;
pub mod qemu_pools;
pub mod qemu_stats;
pub mod run;
pub mod sel4_demo;
mod sys;

/// The reference echo server (its own crate: it also runs inside the guest).
pub use kernel_echo;
pub use kernel_echo::util_proto;
