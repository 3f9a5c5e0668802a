//! A hostile net client, for host-mode fault injection (`netvm/tests/fault_clients.rs`).
//!
//! It takes a client's place in a system (the same `.net_client_config` and `.netvm_stats`
//! sections as an echo server) and, from `init` on, never stops misbehaving: every round it
//! writes garbage descriptors into the two queues it produces (RX free towards its copier, TX
//! active towards virt_tx), plausible-looking descriptors for buffers it does not hold
//! (duplicates), random indices into the queue headers it consumes and produces, and random
//! bytes over its data regions, then notifies both peers. Rounds are paced (one every
//! [`ROUND`]) so that it attacks the protocol, not the host's CPU.
//!
//! On SIGUSR1 it reads an address the system does not give it ([`FORBIDDEN`]): host mode maps
//! only what the SDF gives, so that is a fault the runner must report by PD name.
#![deny(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use microkit::{Channel, ChannelSet, Handler};
use net_client::Regions;
use netvm_api::stats::{Counters as _, StatsWriter};
use sddf::config::NetClientConfig;
use sddf::shm::Region;
use testkit::Rng;

netvm_api::counters! {
    /// What the hostile client did (its stats region, `hostile.*`).
    struct HostileCounters {
        /// Rounds of attack.
        rounds: u64,
        /// Garbage descriptors written into queues.
        descriptors: u64,
    }
}

microkit::config_section!(".net_client_config", NET_CLIENT_CONFIG: [u8; 128]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);
microkit::setvar!(
    /// The idle PD's counters, which the system gives every echo client (unused here; declared
    /// so that the hostile client can take an echo client's place unchanged).
    idle_counters
);

/// Time between rounds.
const ROUND: Duration = Duration::from_millis(1);
/// Descriptors written into each queue per round.
const PER_ROUND: usize = 16;
/// Unmapped in every client of netvm's system.xml (the UIO window's guest-physical base).
const FORBIDDEN: u64 = 0x3000_0000;

static TOUCH_FORBIDDEN: AtomicBool = AtomicBool::new(false);

/// One descriptor's 16 bytes: random, or a plausible offset with a plausible length.
fn garbage_desc(rng: &mut Rng, buffers: u64) -> [u8; 16] {
    let mut d = [0u8; 16];
    let (offset, len) = match rng.next() % 4 {
        0 => ((rng.next() % buffers) * 2048, 60 + rng.next() % 1400),
        1 => (rng.next() % (buffers * 2048), rng.next() % 4096),
        2 => (u64::MAX - rng.next() % 4096, rng.next()),
        _ => (rng.next(), rng.next()),
    };
    d[..8].copy_from_slice(&offset.to_le_bytes());
    d[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    d[10] = (rng.next() % 3) as u8; // oid: mostly 0, sometimes another region's
    d
}

/// Scribbles on one queue: descriptors into `PER_ROUND` slots after the tail it finds, then a
/// tail moved by that much or at random; sometimes a random head too.
fn attack_queue(rng: &mut Rng, q: &Region<'_>, capacity: u64, buffers: u64) {
    let mut header = [0u8; 8];
    if q.read_words(0, &mut header).is_err() {
        return;
    }
    let tail = u16::from_le_bytes([header[0], header[1]]);
    for i in 0..PER_ROUND as u64 {
        let slot = (u64::from(tail) + i) % capacity;
        let _ = q.write_words(8 + 16 * slot as usize, &garbage_desc(rng, buffers));
    }
    let new_tail = if rng.next().is_multiple_of(4) {
        rng.next() as u16
    } else {
        tail.wrapping_add(PER_ROUND as u16)
    };
    header[..2].copy_from_slice(&new_tail.to_le_bytes());
    if rng.next().is_multiple_of(8) {
        header[2..4].copy_from_slice(&(rng.next() as u16).to_le_bytes());
    }
    let _ = q.write_words(0, &header);
}

fn scribble(rng: &mut Rng, data: &Region<'_>) {
    for _ in 0..8 {
        let at = (rng.next() as usize % data.len().max(1)) & !7;
        let _ = data.write_words(at, &rng.next().to_le_bytes());
    }
}

#[allow(unsafe_code)]
mod unsafe_parts {
    use super::*;

    extern "C" fn on_usr1(_: libc::c_int) {
        TOUCH_FORBIDDEN.store(true, Ordering::Relaxed);
    }

    pub fn catch_usr1() {
        // SAFETY: installs a handler for SIGUSR1, which nothing else in this PD uses; the
        // handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                libc::SIGUSR1,
                on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }

    /// Reads the forbidden address: the fault the test expects.
    pub fn touch_forbidden() -> u64 {
        // SAFETY: deliberately not safe: FORBIDDEN is unmapped, so this faults, and the runner
        // reports it. Nothing in this process depends on the read's result.
        unsafe { (FORBIDDEN as *const u64).read_volatile() }
    }

    pub fn stats(cfg: &[u8]) -> Option<StatsWriter<'static>> {
        // SAFETY: the system maps the stats region rw at the section's vaddr for the PD's whole
        // life; it is only accessed through Region views.
        let mem = unsafe { sddf::shm::IdentityMapped::new() };
        StatsWriter::from_section(cfg, &mem, microkit::pd_name())
            .unwrap_or_else(|e| panic!("hostile: {e}"))
    }

    pub fn regions(cfg: &NetClientConfig) -> Regions<'static> {
        // SAFETY: the system maps the client's six regions rw at the config's vaddrs for the
        // PD's whole life; they are only accessed through Region views.
        unsafe { Regions::at_config_vaddrs(cfg) }.unwrap_or_else(|e| panic!("hostile: {e}"))
    }
}

struct Hostile;

impl Handler for Hostile {
    fn init() -> Self {
        let cfg: NetClientConfig = zerocopy::FromBytes::read_from_bytes(&NET_CLIENT_CONFIG.bytes())
            .unwrap_or_else(|_| panic!("hostile: bad .net_client_config"));
        let r = unsafe_parts::regions(&cfg);
        let (rx, tx) = (Channel::new(cfg.rx.id), Channel::new(cfg.tx.id));
        let (rx_cap, tx_cap) = (u64::from(cfg.rx.num_buffers), u64::from(cfg.tx.num_buffers));
        unsafe_parts::catch_usr1();
        let mut stats = unsafe_parts::stats(&STATS.bytes());
        if let Some(s) = stats.as_mut() {
            s.group::<HostileCounters>(format_args!("hostile"))
                .unwrap_or_else(|e| panic!("hostile: {e}"));
            s.finish();
        }
        let mut counters = HostileCounters::default();
        // Printed so that the setvar's symbol stays in the executable (the runner patches it).
        microkit::debug_println!(
            "{}: hostile client attacking (idle counters at {:#x})",
            microkit::pd_name(),
            idle_counters.get()
        );
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(cfg.mac_addr[5]));
        loop {
            if TOUCH_FORBIDDEN.load(Ordering::Relaxed) {
                microkit::debug_println!(
                    "{}: reading {FORBIDDEN:#x}, which the system does not give me",
                    microkit::pd_name()
                );
                let _ = unsafe_parts::touch_forbidden();
            }
            attack_queue(&mut rng, &r.rx_free, rx_cap, rx_cap);
            attack_queue(&mut rng, &r.tx_active, tx_cap, tx_cap);
            // Consumer heads: pretend to have taken what we never took.
            for q in [&r.rx_active, &r.tx_free] {
                if rng.next().is_multiple_of(4) {
                    let _ = q.write_words(0, &rng.next().to_le_bytes()[..4]);
                }
            }
            scribble(&mut rng, &r.rx_data);
            scribble(&mut rng, &r.tx_data);
            rx.notify();
            tx.notify();
            counters.rounds += 1;
            counters.descriptors += 2 * PER_ROUND as u64;
            if let Some(s) = stats.as_mut() {
                s.publish(counters.values());
            }
            std::thread::sleep(ROUND);
        }
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

microkit::protection_domain!(Hostile);
