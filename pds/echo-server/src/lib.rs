//! The echo-server client PD (the Rust counterpart of sDDF's `examples/echo_server` client, see
//! sddf-net.md §4.5): on smoltcp over [`net_client`],
//!
//! * UDP echo on [`UDP_ECHO_PORT`] (1235): every datagram goes back to its sender;
//! * TCP echo on [`TCP_ECHO_PORT`] (1236): [`TCP_ECHO_CONNS`] concurrent connections, Nagle off,
//!   each listening socket re-opened when its connection ends;
//! * the ipbench utilisation daemon (`cpu_target_lukem`) on [`UTILISATION_PORT`] (1237), see
//!   [`utilisation`];
//! * ICMP echo and ARP, answered by smoltcp itself.
//!
//! All logic is in this library and runs on the host in tests; `src/main.rs` is the Microkit
//! entry ([`pd`]). The IP configuration comes from the `.echo_config` section ([`config`]); idle
//! and total cycle counts from a [`CycleSource`]; time, and wake-ups when smoltcp has work due
//! (TCP retransmissions, DHCP), from a [`Clock`] ([`timer_clock`] on seL4).
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(target_os = "linux")]
extern crate std;

/// The `.echo_config` ABI, in its own crate ([`echo_api`]) so that tools need not build this PD.
pub use echo_api as config;
#[cfg(target_os = "linux")]
pub mod host;
pub mod msg;
pub mod origin;
pub mod origin_io;
pub mod pd;
mod server;
mod storage;
pub mod timer_clock;
pub mod utilisation;

pub use config::{EchoConfig, IpConfig};
pub use server::{EchoServer, EchoStats};
pub use storage::{Buffers, Sockets, TakeOnce};

pub use echo_api::{TCP_ECHO_PORT, UDP_ECHO_PORT, UTILISATION_PORT};
/// Concurrent TCP echo connections: twice the benchmark's default of 4 flows, because `netvm
/// bench` (like ipbench) opens the next point's connections in the same instant it closes the
/// last point's, before their FINs have reached the server; with only 4 sockets the new
/// connections were refused (seen on seL4 under TCG).
pub const TCP_ECHO_CONNS: usize = 8;

/// Idle and total CPU time counters for the utilisation daemon.
///
/// seL4: the idle PD's counters (see [`pd`]; generic-timer ticks); host: `host::ProcStat`.
pub trait CycleSource {
    /// `(idle, total)`: free-running counters in one unit (cycles, microseconds, ...), summed
    /// over the cores measured. Utilisation = 1 − Δidle/Δtotal.
    fn sample(&mut self) -> (u64, u64);
    /// The daemon received START (sDDF notifies the benchmark PD here).
    fn measurement_started(&mut self) {}
    /// The daemon received STOP (sDDF notifies the benchmark PD here).
    fn measurement_stopped(&mut self) {}
}

/// A [`CycleSource`] for systems without counters: reports 0, 0, as sDDF's echo server does for
/// client1, non-benchmark builds and x86.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCycles;

impl CycleSource for NoCycles {
    fn sample(&mut self) -> (u64, u64) {
        (0, 0)
    }
}

/// Monotonic time for the IP stack, and wake-ups.
///
/// Host: `host::MonotonicClock` (no wake-ups); seL4: [`timer_clock::TimerClock`], the timer PD.
pub trait Clock {
    /// Microseconds since an arbitrary fixed point; never decreases.
    fn now_us(&mut self) -> u64;

    /// The server has work due `delay_us` microseconds after the time [`Clock::now_us`] last
    /// returned and nothing else may wake it then: a clock that can, arranges a notification
    /// of the PD at (or soon after) that time. The default cannot, so the server runs only
    /// when frames or buffers arrive.
    fn wake_in(&mut self, delay_us: u64) {
        let _ = delay_us;
    }
}
