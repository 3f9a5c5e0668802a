//! The VMM's fault decoder: `vmm::fault::Fault::decode(label, mr)` over any label and message
//! registers, and everything the VMM then asks of the decoded fault (ESR classes, data-abort and
//! system-register fields, load extension, `Display`).
//!
//! Checks: no panic; the decoder reads only the message registers `Fault::message_len(label)`
//! says the fault has (the seL4 handler saves exactly those before any invocation overwrites the
//! IPC buffer); decoding is a pure function of those registers.
#![no_main]
use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use netvm_fuzz::Input;
use vmm::fault::{Esr, Fault};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    // Labels 0..16 cover every fault seL4 delivers for a vCPU; the rest reach `Other`.
    let label = match input.u8() % 4 {
        0 => input.u64(),
        _ => u64::from(input.u8() % 16),
    };
    let mrs: Vec<u64> = (0..16).map(|_| input.u64()).collect();
    let highest = Cell::new(None::<usize>);
    let fault = Fault::decode(label, |i| {
        highest.set(highest.get().max(Some(i)));
        mrs.get(i).copied().unwrap_or(0)
    });
    if let Some(i) = highest.get() {
        assert!(
            i < Fault::message_len(label),
            "label {label} read MR{i}, message has {}",
            Fault::message_len(label)
        );
    }
    // Registers beyond the message do not change the decoding.
    let again = Fault::decode(label, |i| {
        if i < Fault::message_len(label) {
            mrs[i]
        } else {
            !0
        }
    });
    assert_eq!(fault, again);
    let _ = fault.to_string();
    let esr = match fault {
        Fault::VmFault(f) => f.fsr,
        Fault::VcpuFault(esr) => esr,
        _ => Esr(mrs[0] as u32),
    };
    let _ = (esr.ec_name(), esr.to_string());
    if let Some(da) = esr.data_abort() {
        let _ = da.dfsc_name();
        let _ = da.extend_load(mrs[1]);
    }
    let _ = esr.sysreg();
});
