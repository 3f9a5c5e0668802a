//! The `idle` protection domain: [`idle::IdleAccount`] in a loop that never ends (seL4), or
//! nothing at all (host).
//!
//! System contract: the lowest priority of the system, so that it runs exactly when nothing
//! else can; not passive; no channels; one `<map>` of the counters region (rw,
//! [`idle::REGION_SIZE`]) with `setvar_vaddr="idle_counters"`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use microkit::{ChannelSet, Handler};

microkit::setvar!(
    /// Where the counters region is mapped. Host mode patches it too (the runner sets every
    /// setvar of the system description) and `init` checks it there as well, but never touches
    /// the region.
    idle_counters
);

/// The PD (host: it only exists; seL4: `init` never returns).
struct IdlePd;

impl Handler for IdlePd {
    #[cfg(target_os = "none")]
    fn init() -> Self {
        let counters = counters_region(counters_vaddr());
        let mut account =
            idle::IdleAccount::new(pd_support::counter::now(), pd_support::counter::frequency());
        microkit::debug_println!(
            "{}: counting idle time ({} Hz counter, gaps under {} ticks)",
            microkit::pd_name(),
            pd_support::counter::frequency(),
            account.threshold()
        );
        loop {
            account.step(counters, pd_support::counter::now());
        }
    }

    /// Host mode takes utilisation from `/proc/stat`; spinning here would only burn a host CPU.
    /// The system description is checked all the same.
    #[cfg(not(target_os = "none"))]
    fn init() -> Self {
        counters_vaddr();
        IdlePd
    }

    /// The PD has no channels, so nothing ever arrives.
    fn notified(&mut self, _channels: ChannelSet) {}
}

/// The counters region's address from the setvar, checked.
fn counters_vaddr() -> u64 {
    let vaddr = idle_counters.get();
    if vaddr == 0 || !vaddr.is_multiple_of(8) {
        panic!(
            "{}: setvar idle_counters is {vaddr:#x}: map the counters region with setvar_vaddr=\"idle_counters\"",
            microkit::pd_name()
        );
    }
    vaddr
}

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
fn counters_region(vaddr: u64) -> &'static idle::IdleCounters {
    // SAFETY: the system description maps the counters region (REGION_SIZE >= 24 bytes) rw at
    // this 8-byte aligned address for the PD's whole life; it holds plain atomics, for which
    // any bit pattern (zero-filled at boot) is valid, and other PDs only read it.
    unsafe { &*(vaddr as *const idle::IdleCounters) }
}

microkit::protection_domain!(IdlePd);
