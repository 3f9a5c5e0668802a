//! The Microkit protection-domain (PD) runtime for Rust PDs.
//!
//! One PD source builds for two targets:
//! - **seL4** (`target_os = "none"`, `aarch64-unknown-none`, stable Rust, no external runtime): the
//!   libmicrokit ABI of Microkit 2.3.0 re-implemented with raw `svc #0` syscalls, the six symbols
//!   the Microkit tool patches, and libmicrokit's event loop (see [`sel4`](crate#sel4-backend));
//! - **host** (`target_os = "linux"`): every PD is a Linux process started by a host runner, with
//!   shared-memory notification words, futexes and a shared PPC slot ([`host`]). The runner/PD
//!   contract is [`host::manifest`] plus [`host::control`].
//!
//! A PD crate's `main.rs`:
//!
//! ```ignore
//! #![cfg_attr(target_os = "none", no_std, no_main)]
//! microkit::protection_domain!(my_pd::Server);
//! ```
//!
//! where `my_pd::Server` implements [`Handler`]. Semantics follow libmicrokit (`main.c`,
//! `microkit.h` of Microkit 2.3.0); deliberate differences are documented where they occur.
//!
//! # seL4 backend
//!
//! `_start` branches to the PD's entry on the stack the CapDL initialiser set up (top
//! `0xff_ffff_e000`, guard page below the IPC buffer), so the SDF `stack_size` is honoured and a
//! stack overflow faults instead of corrupting `.bss`; it resets sp to that top first, so that a
//! child restarted at [`PD_ENTRY`] starts on a fresh stack. A restarted PD keeps its memory
//! (`.data`, `.bss`, patched symbols), unlike a restarted host PD, which re-executes its image.
//! Invocation labels come from the SDK config being targeted (`MICROKIT_SDK`, `MICROKIT_CONFIG`;
//! see `build.rs`). `debug_println!` uses `seL4_DebugPutChar` and is a no-op for configs whose
//! kernel cannot print (release, benchmark). A panic prints its message and
//! executes `udf #0`, i.e. the PD takes a user-exception fault that its parent or the monitor sees.
#![no_std]
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
extern crate std;

mod channel;
mod deferred;
mod handler;
mod macros;
mod message;

#[cfg(target_os = "none")]
mod sel4;
#[cfg(target_os = "none")]
use sel4 as backend;
#[cfg(target_os = "none")]
pub use sel4::call_cap;

#[cfg(target_os = "linux")]
pub mod host;
#[cfg(target_os = "linux")]
use host::backend;

#[cfg(not(any(target_os = "none", target_os = "linux")))]
compile_error!("microkit has a seL4 backend (target_os = \"none\") and a Linux host backend only");

pub use channel::{Channel, ChannelSet, Child, InvocationError, Vcpu};
pub use deferred::{pending as deferred_pending, DeferredAction};
pub use handler::{fault_label, Handler};
pub use macros::{ConfigSection, SetVar};
pub use message::{mr_get, mr_set, MessageInfo, MAX_MESSAGE_REGISTERS};

/// Largest channel, IRQ, child or vCPU id Microkit allows (`PD_MAX_ID` in the tool).
pub const MAX_CHANNEL_ID: u8 = 61;

/// Entry address (`_start`) of every PD image linked by this crate's linker script, i.e. what a
/// parent passes to [`Child::restart`] to restart a child from the beginning (libmicrokit PDs use
/// the same address). The host backend ignores the address.
pub const PD_ENTRY: usize = 0x20_0000;

/// The name of this PD as given in the system description.
pub fn pd_name() -> &'static str {
    backend::pd_name()
}

/// Whether the system description marks this PD `passive`.
pub fn pd_is_passive() -> bool {
    backend::pd_is_passive()
}

/// Writes a string to the debug console (seL4 debug kernels: `seL4_DebugPutChar`; host: stderr).
pub fn debug_puts(s: &str) {
    backend::debug_puts(s);
}

/// Runs the PD: constructs the handler with [`Handler::init`] and enters the event loop.
///
/// Called by [`protection_domain!`]; never returns.
#[doc(hidden)]
pub fn run<H: Handler>() -> ! {
    backend::run::<H>()
}

/// One event the loop delivers to the handler, after the backend decoded it.
pub(crate) enum Event {
    /// Notification badge bits (channels and IRQs).
    Notified(ChannelSet),
    /// A protected procedure call on a channel.
    Protected(Channel, MessageInfo),
    /// A fault of a child PD or vCPU.
    Fault(Child, MessageInfo),
}

/// Hands one event to the handler; returns the reply to send, if any (libmicrokit `handler_loop`).
pub(crate) fn dispatch<H: Handler>(handler: &mut H, event: Event) -> Option<MessageInfo> {
    match event {
        Event::Notified(set) => {
            handler.notified(set);
            None
        }
        Event::Protected(ch, info) => Some(handler.protected(ch, info)),
        Event::Fault(child, info) => handler.fault(child, info),
    }
}

/// `core::fmt::Write` sink for the debug console, used by [`debug_print!`].
#[doc(hidden)]
pub struct DebugWriter;

impl core::fmt::Write for DebugWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        debug_puts(s);
        Ok(())
    }
}
