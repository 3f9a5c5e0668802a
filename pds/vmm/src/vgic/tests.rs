//! The vGIC model's unit tests.
use super::*;

/// Records list-register loads; can be told to fail.
#[derive(Default)]
struct Lrs {
    loads: std::vec::Vec<(u16, u8, u8)>,
    fail: Option<u64>,
    /// Registers (bit = index) that hold an active IRQ: loading them fails like seL4 does
    /// (seL4_DeleteFirst, 8).
    active: u8,
}

extern crate std;

impl ListRegisters for Lrs {
    fn load(&mut self, irq: u16, priority: u8, index: u8) -> Result<(), LoadError> {
        if let Some(e) = self.fail {
            return Err(LoadError(e));
        }
        if self.active & (1 << index) != 0 {
            return Err(LoadError(8));
        }
        self.loads.push((irq, priority, index));
        Ok(())
    }
}

fn enabled_gic(lrs: &mut Lrs, irqs: &[u16]) -> Vgic {
    let mut gic = Vgic::new();
    gic.write(reg::CTLR, 4, 1, lrs).unwrap();
    for &irq in irqs {
        let off = reg::ISENABLER + 4 * u64::from(irq / 32);
        gic.write(off, 4, 1 << (irq % 32), lrs).unwrap();
    }
    gic
}

#[test]
fn id_registers_and_typer_describe_a_uniprocessor_gicv2() {
    let gic = Vgic::new();
    assert_eq!(
        gic.read(reg::TYPER, 4),
        Ok(7),
        "ITLinesNumber 7 = 256 INTIDs, 1 CPU"
    );
    assert_eq!(gic.read(reg::IIDR, 4).unwrap() & 0xfff, 0x43b);
    assert_eq!(gic.read(0xfe8, 4), Ok(0x2b), "PIDR2: GICv2");
    assert_eq!(gic.read(0xff0, 4), Ok(0x0d));
    // Linux reads ITARGETSR0..7 to find its own CPU mask: must be nonzero.
    for off in (reg::ITARGETSR..reg::ITARGETSR + 32).step_by(4) {
        assert_eq!(gic.read(off, 4), Ok(0x0101_0101));
    }
    assert_eq!(gic.read(reg::ICFGR, 4), Ok(0xaaaa_aaaa));
}

#[test]
fn enable_set_and_clear_registers_are_write_one_to_act() {
    let mut lrs = Lrs::default();
    let mut gic = Vgic::new();
    gic.write(reg::ISENABLER + 12, 4, 0x0003_0000, &mut lrs)
        .unwrap(); // 112, 113
    assert!(gic.is_enabled(112) && gic.is_enabled(113) && !gic.is_enabled(114));
    gic.write(reg::ISENABLER + 12, 4, 0, &mut lrs).unwrap();
    assert!(
        gic.is_enabled(112),
        "writing 0 to ISENABLER changes nothing"
    );
    gic.write(reg::ICENABLER + 12, 4, 0x0001_0000, &mut lrs)
        .unwrap();
    assert!(!gic.is_enabled(112) && gic.is_enabled(113));
    assert_eq!(gic.read(reg::ISENABLER + 12, 4), Ok(0x0002_0000));
    assert_eq!(gic.read(reg::ICENABLER + 12, 4), Ok(0x0002_0000));
}

#[test]
fn priority_and_target_bytes_by_word_and_byte() {
    let mut lrs = Lrs::default();
    let mut gic = Vgic::new();
    gic.write(reg::IPRIORITYR + 112, 4, 0xa0b0_c0d0, &mut lrs)
        .unwrap();
    assert_eq!(gic.read(reg::IPRIORITYR + 113, 1), Ok(0xc0));
    gic.write(reg::IPRIORITYR + 114, 1, 0x10, &mut lrs).unwrap();
    assert_eq!(gic.read(reg::IPRIORITYR + 112, 4), Ok(0xa010_c0d0));
    // Only CPU interface 0 exists; SGI/PPI targets are read-only.
    gic.write(reg::ITARGETSR + 112, 4, 0xffff_ffff, &mut lrs)
        .unwrap();
    assert_eq!(gic.read(reg::ITARGETSR + 112, 4), Ok(0x0101_0101));
    gic.write(reg::ITARGETSR, 4, 0, &mut lrs).unwrap();
    assert_eq!(gic.read(reg::ITARGETSR, 4), Ok(0x0101_0101));
}

#[test]
fn bad_accesses_are_refused() {
    let mut lrs = Lrs::default();
    let mut gic = Vgic::new();
    assert_eq!(
        gic.read(reg::CTLR, 1),
        Err(AccessError::BadWidth {
            offset: 0,
            width: 1
        })
    );
    assert_eq!(
        gic.read(0x102, 4),
        Err(AccessError::Unaligned { offset: 0x102 })
    );
    assert_eq!(
        gic.read(0x00c, 4),
        Err(AccessError::Reserved { offset: 0xc })
    );
    assert_eq!(
        gic.read(0x1000, 4),
        Err(AccessError::Reserved { offset: 0x1000 })
    );
    assert_eq!(
        gic.write(reg::TYPER, 4, 0, &mut lrs),
        Err(WriteError::Access(AccessError::ReadOnly { offset: 4 }))
    );
    assert_eq!(gic.read(reg::TYPER, 4), Ok(7));
    assert!(gic.read(reg::IPRIORITYR + 3, 1).is_ok());
}

#[test]
fn inject_waits_for_distributor_and_irq_enable() {
    let mut lrs = Lrs::default();
    let mut gic = Vgic::new();
    assert_eq!(
        gic.inject(112, &mut lrs),
        Ok(Injection::Queued(QueueReason::DistributorDisabled))
    );
    assert_eq!(gic.inject(112, &mut lrs), Ok(Injection::Coalesced));
    gic.write(reg::CTLR, 4, 1, &mut lrs).unwrap();
    assert!(lrs.loads.is_empty(), "112 is still disabled");
    assert!(gic.is_pending(112));
    gic.write(reg::IPRIORITYR + 112, 1, 0xa0, &mut lrs).unwrap();
    gic.write(reg::ISENABLER + 12, 4, 1 << 16, &mut lrs)
        .unwrap();
    assert_eq!(lrs.loads, [(112, 0xa0 >> 3, 0)]);
    assert!(!gic.is_pending(112) && gic.is_in_list_register(112));
    assert_eq!(gic.read(reg::ISACTIVER + 12, 4), Ok(1 << 16));
}

#[test]
fn reinjection_while_in_a_list_register_waits_for_eoi() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[112]);
    assert_eq!(gic.inject(112, &mut lrs), Ok(Injection::Delivered(0)));
    assert_eq!(
        gic.inject(112, &mut lrs),
        Ok(Injection::Queued(QueueReason::AlreadyInListRegister))
    );
    assert_eq!(gic.inject(112, &mut lrs), Ok(Injection::Coalesced));
    let (done, res) = gic.maintenance(0, &mut lrs);
    assert_eq!(done, Some((112, None)));
    res.unwrap();
    assert_eq!(
        lrs.loads,
        [(112, 0, 0), (112, 0, 0)],
        "second edge delivered after EOI"
    );
    let (done, _) = gic.maintenance(0, &mut lrs);
    assert_eq!(done, Some((112, None)));
    assert!(!gic.has_work());
}

#[test]
fn full_list_registers_queue_by_priority_and_refill_on_eoi() {
    let mut lrs = Lrs::default();
    let irqs = [33u16, 79, 112, 113, 114, 115];
    let mut gic = enabled_gic(&mut lrs, &irqs);
    gic.write(reg::IPRIORITYR + 115, 1, 0x00, &mut lrs).unwrap();
    for irq in [33u16, 79, 112, 113, 114] {
        gic.write(reg::IPRIORITYR + u64::from(irq), 1, 0xa0, &mut lrs)
            .unwrap();
    }
    for (i, irq) in [33u16, 79, 112, 113].into_iter().enumerate() {
        assert_eq!(gic.inject(irq, &mut lrs), Ok(Injection::Delivered(i as u8)));
    }
    assert_eq!(
        gic.inject(114, &mut lrs),
        Ok(Injection::Queued(QueueReason::NoFreeListRegister))
    );
    assert_eq!(
        gic.inject(115, &mut lrs),
        Ok(Injection::Queued(QueueReason::NoFreeListRegister))
    );
    // EOI of LR 2: 115 (priority 0) goes before 114 (priority 0xa0).
    assert_eq!(gic.maintenance(2, &mut lrs).0, Some((112, None)));
    assert_eq!(lrs.loads.last(), Some(&(115, 0, 2)));
    assert_eq!(gic.maintenance(0, &mut lrs).0, Some((33, None)));
    assert_eq!(lrs.loads.last(), Some(&(114, 0xa0 >> 3, 0)));
    assert_eq!(
        gic.list_registers(),
        [Some(114), Some(79), Some(115), Some(113)]
    );
}

#[test]
fn eoi_returns_the_registered_ack() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[27, 79]);
    assert!(gic.set_ack(27, Ack::Vppi));
    assert!(gic.set_ack(79, Ack::Passthrough(2)));
    gic.inject(27, &mut lrs).unwrap();
    gic.inject(79, &mut lrs).unwrap();
    assert_eq!(
        gic.maintenance(1, &mut lrs).0,
        Some((79, Some(Ack::Passthrough(2))))
    );
    assert_eq!(gic.maintenance(0, &mut lrs).0, Some((27, Some(Ack::Vppi))));
    assert_eq!(gic.maintenance(0, &mut lrs).0, None, "empty list register");
    assert_eq!(
        gic.maintenance(200, &mut lrs).0,
        None,
        "no such list register"
    );
}

#[test]
fn pending_registers_and_sgis() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[]);
    gic.write(reg::ISPENDR + 12, 4, 1 << 16, &mut lrs).unwrap();
    assert!(gic.is_pending(112) && lrs.loads.is_empty());
    assert_eq!(gic.read(reg::ISPENDR + 12, 4), Ok(1 << 16));
    gic.write(reg::ICPENDR + 12, 4, 1 << 16, &mut lrs).unwrap();
    assert!(!gic.is_pending(112));
    // SGI 3 to self, enabled: delivered at once.
    gic.write(reg::ISENABLER, 4, 1 << 3, &mut lrs).unwrap();
    gic.write(reg::SGIR, 4, (2 << 24) | 3, &mut lrs).unwrap();
    assert_eq!(lrs.loads, [(3, 0, 0)]);
    // SGI 5 to "all but self" reaches no one; via SPENDSGIR it pends.
    gic.write(reg::SGIR, 4, (1 << 24) | 5, &mut lrs).unwrap();
    assert!(!gic.is_pending(5));
    gic.write(reg::SPENDSGIR + 5, 1, 1, &mut lrs).unwrap();
    assert_eq!(gic.read(reg::SPENDSGIR + 4, 4), Ok(0x100));
    gic.write(reg::CPENDSGIR + 5, 1, 1, &mut lrs).unwrap();
    assert!(!gic.is_pending(5));
}

#[test]
fn failed_load_keeps_the_irq_pending() {
    let mut lrs = Lrs {
        fail: Some(4),
        ..Lrs::default()
    };
    let mut gic = enabled_gic(&mut lrs, &[112]);
    assert_eq!(
        gic.inject(112, &mut lrs),
        Ok(Injection::Queued(QueueReason::LoadFailed(LoadError(4))))
    );
    assert!(gic.is_pending(112));
    lrs.fail = None;
    gic.flush(&mut lrs).unwrap();
    assert_eq!(lrs.loads, [(112, 0, 0)]);
    assert_eq!(gic.inject(300, &mut lrs), Err(NoSuchIrq(300)));
}

#[test]
fn reset_keeps_acks_and_clears_state() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[27]);
    gic.set_ack(27, Ack::Vppi);
    assert_eq!(
        gic.reset(&mut lrs),
        [None; MAX_ACKS],
        "nothing was in flight"
    );
    assert!(lrs.loads.is_empty());
    assert!(!gic.distributor_enabled() && !gic.has_work());
    gic.write(reg::CTLR, 4, 1, &mut lrs).unwrap();
    gic.write(reg::ISENABLER, 4, 1 << 27, &mut lrs).unwrap();
    gic.inject(27, &mut lrs).unwrap();
    assert_eq!(gic.maintenance(0, &mut lrs).0, Some((27, Some(Ack::Vppi))));
}

fn owed_list(owed: [Option<(u16, Ack)>; MAX_ACKS]) -> std::vec::Vec<(u16, Ack)> {
    owed.into_iter().flatten().collect()
}

#[test]
fn reset_hands_back_what_was_in_flight_and_empties_the_registers() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[27, 33, 79]);
    gic.set_ack(27, Ack::Vppi);
    gic.set_ack(79, Ack::Passthrough(5));
    gic.set_ack(40, Ack::Passthrough(6));
    // The NIC's IRQ in list register 0, the vtimer in 1, the UART (no action) in 2; IRQ 40
    // raised while the guest had it disabled.
    for irq in [79, 27, 33, 40] {
        gic.inject(irq, &mut lrs).unwrap();
    }
    lrs.loads.clear();
    let owed = owed_list(gic.reset(&mut lrs));
    assert_eq!(
        owed,
        [
            (27, Ack::Vppi),
            (40, Ack::Passthrough(6)),
            (79, Ack::Passthrough(5))
        ]
    );
    // Every occupied register now holds a harmless SGI, each a different one.
    assert_eq!(lrs.loads, [(0, 0, 0), (1, 0, 1), (5, 0, 2)]);
    assert_eq!(gic.stale_list_registers(), 0b111);
    assert!(!gic.has_work(), "a leftover is no reason to leave WFI");
    assert!(
        !gic.is_pending(40),
        "the new guest starts with nothing pending"
    );
    // The new guest: the NIC's IRQ goes into the free register at once.
    gic.write(reg::CTLR, 4, 1, &mut lrs).unwrap();
    gic.write(reg::ISENABLER + 8, 4, 1 << 15, &mut lrs).unwrap();
    assert_eq!(gic.inject(79, &mut lrs), Ok(Injection::Delivered(3)));
    // The new guest EOIs a leftover: no action, the register is free again.
    assert_eq!(gic.maintenance(0, &mut lrs).0, Some((0, None)));
    assert_eq!(gic.stale_list_registers(), 0b110);
    assert_eq!(
        gic.maintenance(3, &mut lrs).0,
        Some((79, Some(Ack::Passthrough(5))))
    );
}

#[test]
fn an_active_register_keeps_its_irq_until_the_new_guest_eois_it() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[79]);
    gic.set_ack(79, Ack::Passthrough(5));
    gic.inject(79, &mut lrs).unwrap();
    lrs.active = 0b1;
    assert_eq!(owed_list(gic.reset(&mut lrs)), [(79, Ack::Passthrough(5))]);
    assert_eq!(gic.list_registers()[0], Some(79));
    // Never in two registers: the new instance waits for the old one's EOI.
    gic.write(reg::CTLR, 4, 1, &mut lrs).unwrap();
    gic.write(reg::ISENABLER + 8, 4, 1 << 15, &mut lrs).unwrap();
    assert_eq!(
        gic.inject(79, &mut lrs),
        Ok(Injection::Queued(QueueReason::AlreadyInListRegister))
    );
    // A second reset (the register no longer active) owes only the new instance, not the
    // one the first reset settled.
    lrs.active = 0;
    assert_eq!(owed_list(gic.reset(&mut lrs)), [(79, Ack::Passthrough(5))]);
    let mut lrs2 = Lrs::default();
    gic.write(reg::CTLR, 4, 1, &mut lrs2).unwrap();
    gic.write(reg::ISENABLER + 8, 4, 1 << 15, &mut lrs2)
        .unwrap();
    gic.inject(79, &mut lrs2).unwrap();
    let (done, refill) = gic.maintenance(0, &mut lrs2);
    assert_eq!(done, Some((0, None)), "overwritten at the second reset");
    refill.unwrap();
}

#[test]
fn leftover_sgis_never_share_an_intid_with_a_kept_register() {
    let mut lrs = Lrs::default();
    let mut gic = enabled_gic(&mut lrs, &[0, 1, 79]);
    // SGI 0 (the guest sent itself a reschedule) active in register 0, SGI 1 and the NIC's
    // IRQ pending in 1 and 2.
    for irq in [0, 1, 79] {
        gic.inject(irq, &mut lrs).unwrap();
    }
    lrs.active = 0b1;
    lrs.loads.clear();
    gic.reset(&mut lrs);
    let held = gic.list_registers();
    assert_eq!(held[0], Some(0), "active: kept");
    assert_eq!(
        &held[1..3],
        [Some(5), Some(1)],
        "not 0, which register 0 still holds"
    );
    assert_eq!(lrs.loads, [(5, 0, 1), (1, 0, 2)]);
}
