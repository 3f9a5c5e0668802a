//! The PDs of the `hello-pds` example system (`system.xml`), one module per PD; `src/bin/*.rs`
//! are the one-line entry points. The same code runs on seL4 and as host processes.
//!
//! - `client` notifies `server` (which answers with a deferred notify), makes a PPC to it, and
//!   is the parent of `crasher`;
//! - `server` is passive, reads and writes the region `shared` (mapped at different vaddrs in the
//!   two PDs, found through `setvar_vaddr`) and reads its config section;
//! - `crasher` faults on its first run and panics on its second and third; each time `client`
//!   restarts it; on its fourth run it notifies `client`, which prints `client: done`.
//!
//! The client also leaves the results of the exchange in `shared` ([`SHARED_WORDS`]), so that a
//! test can check the run where nothing is printed (a release seL4 kernel has no debug console).
#![no_std]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

microkit::setvar!(
    /// Address of the region `shared` in this PD (`setvar_vaddr="shared_vaddr"` in client and
    /// server; one symbol, since every PD image links this whole crate).
    pub shared_vaddr
);

/// The first four words of the region `shared` once the system has run to the end: the client's
/// value, the server's answer (value + 1), the PPC reply's MR0, and [`DONE`].
pub const SHARED_WORDS: [u64; 4] = [0x1234_5678, 0x1234_5679, 42, DONE];

/// What the client writes to `shared[3]` when the crasher's last run notified it ("done").
pub const DONE: u64 = 0x656e_6f64;

/// Word `index` of the shared region whose address a setvar holds.
fn word(vaddr: u64, index: usize) -> &'static AtomicU64 {
    assert!(
        vaddr != 0 && index < 512,
        "setvar not patched or index out of the page"
    );
    shared::word(vaddr, index)
}

/// The one place this crate touches raw memory.
#[allow(unsafe_code)]
mod shared {
    use core::sync::atomic::AtomicU64;

    pub(crate) fn word(vaddr: u64, index: usize) -> &'static AtomicU64 {
        // SAFETY: the system maps a 4 KiB RW region at `vaddr` in every PD that uses this
        // (system.xml `<map>` with the setvar that holds `vaddr`, checked non-zero by the
        // caller); index < 512 keeps the word inside it; AtomicU64 is valid for any contents.
        unsafe { &*(vaddr as *const AtomicU64).add(index) }
    }

    /// Writes to an unmapped address: the deliberate fault of the crasher's first run.
    pub(crate) fn fault_at(addr: u64) {
        // SAFETY: deliberately invalid — the store faults (seL4: VM fault to the parent; host:
        // SIGSEGV reported as one). Volatile so it cannot be removed.
        unsafe { core::ptr::write_volatile(addr as *mut u64, 1) };
    }
}

/// The client PD: parent of `crasher`.
pub mod client {
    use super::*;
    use microkit::{debug_println, Channel, ChannelSet, Child, Handler, MessageInfo};

    /// Channel to the server (notify + pp).
    pub const SERVER: Channel = Channel::new(0);
    /// Channel on which the crasher notifies.
    pub const CRASHER: Channel = Channel::new(2);

    /// The client's state.
    pub struct Client;

    impl Handler for Client {
        fn init() -> Self {
            word(shared_vaddr.get(), 0).store(SHARED_WORDS[0], Ordering::SeqCst);
            debug_println!("client: init, notifying server");
            SERVER.notify();
            Client
        }

        fn notified(&mut self, channels: ChannelSet) {
            for ch in channels {
                if ch == SERVER {
                    let seen = word(shared_vaddr.get(), 1).load(Ordering::SeqCst);
                    debug_println!("client: notified by server, shared[1]={seen:#x}");
                    microkit::mr_set(0, 7);
                    let reply = SERVER.pp_call(MessageInfo::new(42, 1));
                    let answer = microkit::mr_get(0);
                    debug_println!("client: ppcall reply label={} mr0={answer}", reply.label());
                    word(shared_vaddr.get(), 2).store(answer, Ordering::SeqCst);
                } else if ch == CRASHER {
                    word(shared_vaddr.get(), 3).store(DONE, Ordering::SeqCst);
                    debug_println!("client: done");
                }
            }
        }

        fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
            debug_println!(
                "client: fault from child {} label={} mr0={:#x} mr1={:#x}",
                child.id(),
                msg.label(),
                microkit::mr_get(0),
                microkit::mr_get(1)
            );
            match child.restart(microkit::PD_ENTRY) {
                Ok(()) => debug_println!("client: restarted child {}", child.id()),
                Err(e) => debug_println!("client: restart failed: {e}"),
            }
            None
        }
    }
}

/// The passive server PD.
pub mod server {
    use super::*;
    use microkit::{debug_println, Channel, ChannelSet, Handler, MessageInfo};

    microkit::config_section!(".hello_config", HELLO_CONFIG: [u8; 16]);

    /// Channel to the client.
    pub const CLIENT: Channel = Channel::new(3);

    /// The server's state.
    pub struct Server;

    impl Handler for Server {
        fn init() -> Self {
            debug_println!(
                "server: init passive={} config[0..4]={:02x?}",
                microkit::pd_is_passive(),
                &HELLO_CONFIG.bytes()[..4]
            );
            Server
        }

        fn notified(&mut self, channels: ChannelSet) {
            for ch in channels {
                let value = word(shared_vaddr.get(), 0).load(Ordering::SeqCst);
                debug_println!("server: notified on {}, shared[0]={value:#x}", ch.id());
                word(shared_vaddr.get(), 1).store(value + 1, Ordering::SeqCst);
                CLIENT.deferred_notify();
            }
        }

        fn protected(&mut self, ch: Channel, msg: MessageInfo) -> MessageInfo {
            debug_println!(
                "server: protected on {} label={} mr0={}",
                ch.id(),
                msg.label(),
                microkit::mr_get(0)
            );
            microkit::mr_set(0, microkit::mr_get(0) * 6);
            MessageInfo::new(0, 1)
        }
    }
}

/// The crasher PD: child 1 of the client.
pub mod crasher {
    use super::*;
    use microkit::{debug_println, Channel, ChannelSet, Handler};

    microkit::setvar!(crash_count_vaddr);

    /// Channel to the parent.
    pub const PARENT: Channel = Channel::new(0);
    /// Where the first run faults.
    pub const FAULT_ADDR: u64 = 0xdead000;

    /// The crasher's state.
    pub struct Crasher;

    impl Handler for Crasher {
        fn init() -> Self {
            // The run count lives in a shared region: on the host a restart re-executes the
            // image, so private memory does not survive it.
            let run = word(crash_count_vaddr.get(), 0).fetch_add(1, Ordering::SeqCst) + 1;
            debug_println!("crasher: run {run}");
            match run {
                1 => super::shared::fault_at(FAULT_ADDR),
                // Two panics at the same point: the parent sees both user exceptions at the same
                // SP only if a restart starts the child on a fresh stack.
                2 | 3 => panic!("deliberate panic on run {run}"),
                _ => PARENT.notify(),
            }
            Crasher
        }

        fn notified(&mut self, _channels: ChannelSet) {}
    }
}
