//! The ARM generic timer from EL0: CNTPCT_EL0 for the time, the EL1 physical timer
//! (CNTP_CVAL_EL0 / CNTP_CTL_EL0, INTID 30) for the alarm.
#![allow(unsafe_code)]

use core::arch::asm;

use microkit::Channel;
use timer::{ns_to_ticks, ticks_to_ns, Alarm};

/// CNTP_CTL_EL0.ENABLE (IMASK clear).
const CTL_ENABLE: u64 = 1;

/// The EL1 physical timer.
pub struct Hardware {
    freq: u64,
}

impl Hardware {
    /// Reads the counter frequency; the IRQ channel needs nothing here.
    pub fn new(_irq: Channel) -> Self {
        let freq: u64;
        // SAFETY: CNTFRQ_EL0 is readable at EL0 whenever the counter is (EXPORT_PCNT_USER);
        // a plain register read without memory or stack effects.
        unsafe { asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack)) };
        Hardware { freq }
    }

    fn count() -> u64 {
        let v: u64;
        // SAFETY: as for CNTFRQ_EL0; the isb keeps the read from being hoisted before earlier
        // instructions (so a deadline computed from it is never stale).
        unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
        v
    }
}

impl Alarm for Hardware {
    fn now_ns(&mut self) -> u64 {
        ticks_to_ns(Self::count(), self.freq)
    }

    fn set(&mut self, deadline_ns: Option<u64>) {
        match deadline_ns {
            // SAFETY: EL0 access to the EL1 physical timer is enabled by the kernel config
            // (EXPORT_PTMR_USER), and this PD owns it: its IRQ is this PD's only <irq>. Writing
            // the compare value and enabling only changes when INTID 30 is raised.
            Some(d) => unsafe {
                asm!("msr cntp_cval_el0, {}", "msr cntp_ctl_el0, {}", "isb",
                    in(reg) ns_to_ticks(d, self.freq), in(reg) CTL_ENABLE,
                    options(nomem, nostack));
            },
            // SAFETY: as above; ENABLE = 0 also drops the level-triggered IRQ.
            None => unsafe {
                asm!("msr cntp_ctl_el0, {}", "isb", in(reg) 0u64, options(nomem, nostack));
            },
        }
    }
}
