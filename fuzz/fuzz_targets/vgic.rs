//! The VMM's GICv2 distributor model (`vmm::vgic::Vgic`) under any sequence of guest register
//! reads and writes (any offset, any width), device injections, EOI maintenance faults (any list
//! register index), EOI actions, guest resets and failing list-register loads.
//!
//! Checks: no panic; reads and writes at an invalid width or alignment, or outside the page,
//! are refused; the VMM's list registers hold distinct INTIDs, exactly those it reports as in a
//! list register, each loaded through `ListRegisters` into that register; after every operation
//! that refills list registers with loads succeeding, no list register is free while a pending,
//! enabled INTID could go in; every read-only register is refused for writes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netvm_fuzz::Input;
use vmm::vgic::{
    AccessError, Ack, Injection, ListRegisters, LoadError, Vgic, WriteError, GICD_SIZE, NUM_IRQS,
    NUM_LIST_REGS,
};

struct Lrs {
    /// What the hardware list registers hold, as loaded.
    hw: [Option<u16>; NUM_LIST_REGS],
    fail: bool,
}

impl ListRegisters for Lrs {
    fn load(&mut self, irq: u16, priority: u8, index: u8) -> Result<(), LoadError> {
        assert!(
            priority < 32,
            "priority {priority} does not fit a list register"
        );
        assert!(usize::from(irq) < NUM_IRQS);
        if self.fail {
            return Err(LoadError(1));
        }
        self.hw[usize::from(index)] = Some(irq);
        Ok(())
    }
}

fn check(gic: &Vgic, lrs: &Lrs, refilled: bool) {
    let held = gic.list_registers();
    for (k, irq) in held.iter().enumerate() {
        if let Some(irq) = irq {
            assert!(
                held[..k].iter().all(|o| *o != Some(*irq)),
                "INTID {irq} in two LRs"
            );
            assert_eq!(lrs.hw[k], Some(*irq), "LR {k} was never loaded with {irq}");
        }
    }
    for irq in 0..NUM_IRQS as u16 {
        assert_eq!(
            gic.is_in_list_register(irq),
            held.contains(&Some(irq)),
            "INTID {irq}"
        );
    }
    if refilled && !lrs.fail && held.contains(&None) && gic.distributor_enabled() {
        for irq in 0..NUM_IRQS as u16 {
            assert!(
                !(gic.is_pending(irq) && gic.is_enabled(irq) && !gic.is_in_list_register(irq)),
                "INTID {irq} deliverable but left out of a free list register"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut gic = Vgic::new();
    let mut lrs = Lrs {
        hw: [None; NUM_LIST_REGS],
        fail: false,
    };
    while !input.is_empty() {
        let offset = match input.u8() % 4 {
            0 => input.u64(),
            _ => u64::from(input.u16()) % (GICD_SIZE + 0x10),
        };
        let width = match input.u8() % 4 {
            0 => input.u32(),
            1 => 1,
            _ => 4,
        };
        let mut refilled = false;
        match input.u8() % 8 {
            0 | 1 => match gic.read(offset, width) {
                Ok(_) => {
                    assert!(offset < GICD_SIZE && (width == 4 || width == 1));
                    assert!(width == 1 || offset % 4 == 0);
                }
                Err(AccessError::BadWidth { .. } | AccessError::Unaligned { .. }) => {}
                Err(AccessError::Reserved { offset: o }) => assert_eq!(o, offset),
                Err(AccessError::ReadOnly { .. }) => panic!("a read refused as read-only"),
            },
            2 | 3 => {
                let value = input.u32();
                match gic.write(offset, width, value, &mut lrs) {
                    Ok(()) => {
                        assert!(offset < GICD_SIZE);
                        refilled = true;
                    }
                    Err(WriteError::Load(_)) => assert!(lrs.fail),
                    Err(WriteError::Access(AccessError::ReadOnly { offset: o })) => {
                        assert!(o == 0x004 || o == 0x008 || (0xfd0..0x1000).contains(&o));
                    }
                    Err(WriteError::Access(_)) => {}
                }
            }
            4 => {
                let irq = input.u16() % (NUM_IRQS as u16 + 8);
                match gic.inject(irq, &mut lrs) {
                    Ok(Injection::Delivered(k)) => {
                        assert_eq!(gic.list_registers()[usize::from(k)], Some(irq));
                    }
                    Ok(_) => {}
                    Err(_) => assert!(usize::from(irq) >= NUM_IRQS),
                }
            }
            5 => {
                let index = input.u8() % (NUM_LIST_REGS as u8 + 2);
                let before = gic
                    .list_registers()
                    .get(usize::from(index))
                    .copied()
                    .flatten();
                if let Some(irq) = before {
                    lrs.hw[usize::from(index)] = None;
                    let _ = irq;
                }
                let (eoi, loaded) = gic.maintenance(index, &mut lrs);
                assert_eq!(eoi.map(|(irq, _)| irq), before);
                refilled = loaded.is_ok();
            }
            6 => {
                let irq = input.u16() % (NUM_IRQS as u16 + 8);
                let ack = if input.bool() {
                    Ack::Vppi
                } else {
                    Ack::Passthrough(input.u8())
                };
                let _ = gic.set_ack(irq, ack);
            }
            _ => match input.u8() % 4 {
                0 => {
                    // A guest reset: occupied registers are overwritten through `lrs` (or keep
                    // their INTID when loading fails); each owed action is handed back once.
                    let owed = gic.reset(&mut lrs);
                    let owed: Vec<u16> = owed.iter().flatten().map(|&(irq, _)| irq).collect();
                    for (i, irq) in owed.iter().enumerate() {
                        assert!(!owed[..i].contains(irq), "INTID {irq} owed twice");
                    }
                    assert!(!gic.distributor_enabled());
                }
                1 => lrs.fail = !lrs.fail,
                _ => refilled = gic.flush(&mut lrs).is_ok(),
            },
        }
        let _ = gic.has_work();
        check(&gic, &lrs, refilled);
    }
});
