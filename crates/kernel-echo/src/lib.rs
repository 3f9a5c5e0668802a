//! The Linux kernel-socket echo server netvm is compared against, answering on the same ports as
//! sDDF's echo server (UDP 1235, TCP 1236, ipbench utilisation 1237), and the ipbench
//! `cpu_target_lukem` utilisation protocol, both sides.
//!
//! One crate for both places the reference runs: on the host (`netvm kernel-echo`, the host-mode
//! demo's reference) and inside the Debian guest booted without seL4 (`/bin/kernel-echo`, the
//! seL4 demo's reference), so the two measure the same code.
#![deny(unsafe_code)]

pub mod batch;
mod server;
pub mod util_proto;

pub use server::{EchoConfig, EchoError, EchoServer, EchoStats};

use nix::sys::signal::{SigSet, Signal};

/// UDP echo port (sDDF's echo server).
pub const UDP_PORT: u16 = 1235;
/// TCP echo port.
pub const TCP_PORT: u16 = 1236;
/// ipbench utilisation daemon port.
pub const UTIL_PORT: u16 = 1237;

/// Serves `cfg` until SIGINT or SIGTERM, logging under `name`. Blocks those signals first (call
/// it before starting other threads: threads inherit the mask) and waits for one synchronously,
/// so no asynchronous handler is needed.
pub fn serve_until_signalled(cfg: EchoConfig, name: &str) -> Result<(), String> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| format!("{name}: cannot block SIGINT/SIGTERM: {e}"))?;
    let server = EchoServer::start(cfg).map_err(|e| format!("{name}: {e}"))?;
    eprintln!(
        "{name}: UDP {} TCP {}{}",
        server.udp_addr(),
        server.tcp_addr(),
        server
            .util_addr()
            .map(|u| format!(" utilisation {u}"))
            .unwrap_or_default()
    );
    let sig = signals.wait();
    eprintln!(
        "{name}: {}, stopping",
        sig.map(|s| s.as_str()).unwrap_or("signal wait failed")
    );
    server.stop().map_err(|e| format!("{name}: {e}"))
}
