//! netvm command-line library: the demos that orchestrate a system and measure it (`demo`,
//! `sel4_demo`). The host-mode runner is its own crate (`netvm-run`, re-exported as
//! [`run`](mod@run)), the benchmark too (`netvm-bench`, re-exported as [`bench`](mod@bench)), and so is the observability of a
//! running system (`netvm-observe`: [`observe`] for host mode, [`qemu_stats`], [`qemu_pools`]
//! and [`microkit_report`] for seL4 in QEMU); the re-exports keep one `netvm::` path for the
//! CLI, the tests and the demos. `main.rs` is a thin CLI over these, and other code (tests,
//! demos) can call them in-process.
#![deny(unsafe_code)]

pub mod demo;
pub mod lan;
pub mod sel4_demo;

/// The host-mode runner (the `netvm-run` crate).
pub use netvm_run as run;

/// The ipbench-compatible benchmark (the `netvm-bench` crate).
pub use netvm_bench as bench;
/// A running host-mode system seen from outside (`netvm_observe::host`).
pub use netvm_observe::host as observe;
pub use netvm_observe::{microkit_report, qemu_pools, qemu_stats};

/// The reference echo server (its own crate: it also runs inside the guest).
pub use kernel_echo;
pub use kernel_echo::util_proto;
