//! netvm command-line library: the ipbench-compatible benchmark (`bench`), the Linux
//! kernel-socket reference echo server (`kernel_echo`) and the ipbench utilisation protocol
//! (`util_proto`). `main.rs` is a thin CLI over these, and other code (e.g. `netvm run`) can
//! call them in-process.
#![deny(unsafe_code)]

pub mod bench;
pub mod kernel_echo;
mod sys;
pub mod util_proto;
