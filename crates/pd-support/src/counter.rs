//! The ARM generic timer's physical count, read at EL0.
//!
//! The physical count, not the virtual one: the Microkit 2.3.0 kernels export the physical
//! counter to user level (`EXPORT_PCNT_USER` in the SDK's `gen_config.json`, which the timer PD
//! relies on too) but not the virtual one (`EXPORT_VCNT_USER` is off), and the virtual count
//! would also move by the driver VM's `CNTVOFF_EL2` whenever its vCPU state is loaded.
#![allow(unsafe_code)]

use core::arch::asm;

/// `CNTPCT_EL0`: the physical count, in ticks of [`frequency`].
pub fn now() -> u64 {
    let v: u64;
    // SAFETY: a read of a system register that EL0 may read (see the module docs); no memory or
    // stack effects. The isb keeps the read from being done early, so consecutive reads in a
    // loop measure the loop.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// `CNTFRQ_EL0`: the counter's frequency in Hz.
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: as for `now`; CNTFRQ_EL0 is readable wherever a counter is.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}
