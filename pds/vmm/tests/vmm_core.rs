//! The VMM core against a recording platform (`common`): MMIO emulation with real register
//! transfer, doorbells, vIRQ injection and EOI, counters, unexpected faults, restarts and the
//! watchdog. PSCI and WFI are in `vmm_psci.rs`.

mod common;

use common::*;
use vmm::fault::{label, Fault};
use vmm::regs::UserContext;
use vmm::vgic::{reg, GICD_BASE};
use vmm::{Config, Doorbell, Reply, RunState, StopReason, VirqRoute, Vmm};

#[test]
fn gicd_accesses_are_emulated_with_register_transfer() {
    let (mut vmm, mut p) = started(true);
    linux_gic_init(&mut vmm, &mut p);
    // A store reads only the registers up to Rt, then writes back only the pc.
    p.regs.set_x(20, 0x77);
    assert_eq!(
        guest_store(
            &mut vmm,
            &mut p,
            0x9000_0200,
            GICD_BASE + reg::IPRIORITYR + 112,
            19,
            0xa0a0_a0a0
        ),
        Reply::Resume
    );
    assert_eq!(p.last_read, UserContext::prefix_for(19));
    assert_eq!(p.regs.pc(), 0x9000_0204);
    assert_eq!(p.regs.x(20), 0x77, "other registers untouched");
    // Byte load of one priority; xzr as target discards the value but still advances.
    assert_eq!(
        guest_load(
            &mut vmm,
            &mut p,
            0x9000_0300,
            GICD_BASE + reg::IPRIORITYR + 113,
            1,
            5
        ),
        0xa0
    );
    let before = p.regs;
    guest_load(&mut vmm, &mut p, 0x9000_0400, GICD_BASE + reg::CTLR, 4, 31);
    assert_eq!(&p.regs.0[1..], &before.0[1..]);
    // An invalid access is logged and ignored, the guest continues.
    guest_store(&mut vmm, &mut p, 0x9000_0500, GICD_BASE + reg::TYPER, 1, 0);
    assert!(p.log.contains("ReadOnly"), "{}", p.log);
    assert_eq!(vmm.state(), RunState::Running);
    let c = vmm.counters();
    assert_eq!((c.gicd_reads, c.gicd_writes), (4, 3));
}

#[test]
fn doorbells_notify_and_virt_notifications_inject() {
    let (mut vmm, mut p) = started(true);
    linux_gic_init(&mut vmm, &mut p);
    // The uio-driver rings rx_fault (a one-byte store) and tx_fault.
    p.regs.set_pc(0x40_1000);
    let reply = vmm.handle_fault(&mut p, &vm_fault(0x40_1000, RX_FAULT, dabt(true, 1, 8)));
    assert_eq!(reply, Reply::Resume);
    assert_eq!(p.regs.pc(), 0x40_1004);
    guest_store(&mut vmm, &mut p, 0x40_2000, TX_FAULT + 0x40, 3, 0);
    assert_eq!(p.notified, [VIRT_RX, VIRT_TX]);
    // A doorbell load reads 0.
    assert_eq!(guest_load(&mut vmm, &mut p, 0x40_3000, RX_FAULT, 4, 4), 0);
    let c = vmm.counters();
    assert_eq!((c.rx_fault_doorbells, c.tx_fault_doorbells), (1, 1));
    assert_eq!(c.other_doorbells, 0);

    // virt_rx notifies before the guest enabled rx_irq: queued, delivered on enable.
    assert!(vmm.notified(&mut p, VIRT_RX));
    assert!(p.loads.is_empty());
    enable_irq(&mut vmm, &mut p, RX_IRQ);
    assert_eq!(p.loads, [(RX_IRQ, 0, 0)]);
    enable_irq(&mut vmm, &mut p, TX_IRQ);
    assert!(vmm.notified(&mut p, VIRT_TX));
    assert_eq!(p.loads[1], (TX_IRQ, 0, 1));
    // A second rx notification before the guest's EOI waits for it; a third merges with it.
    assert!(vmm.notified(&mut p, VIRT_RX));
    assert!(vmm.notified(&mut p, VIRT_RX));
    assert_eq!(p.loads.len(), 2);
    let eoi = Fault::decode(label::VGIC_MAINTENANCE, |_| 0);
    assert_eq!(vmm.handle_fault(&mut p, &eoi), Reply::Resume);
    assert_eq!(p.loads[2], (RX_IRQ, 0, 0));
    assert!(
        p.irq_acks.is_empty(),
        "UIO vIRQs have no physical IRQ to ack"
    );
    assert!(!vmm.notified(&mut p, 40), "not a VMM channel");
    let c = vmm.counters();
    assert_eq!((c.rx_irq_injections, c.rx_irq_coalesced), (3, 1));
    assert_eq!((c.tx_irq_injections, c.tx_irq_coalesced), (1, 0));
    assert_eq!((c.notifications, c.unknown_notifications), (5, 1));
    assert_eq!((c.maintenance_faults, c.passthrough_acks), (1, 0));
}

#[test]
fn vtimer_is_acked_on_eoi_and_passthrough_at_the_next_activation() {
    let (mut vmm, mut p) = started(true);
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, UART_IRQ);
    enable_irq(&mut vmm, &mut p, 27);
    assert!(vmm.notified(&mut p, UART_IRQ_CH));
    let vppi = Fault::decode(label::VPPI_EVENT, |_| 27);
    assert_eq!(vmm.handle_fault(&mut p, &vppi), Reply::Resume);
    assert_eq!(p.loads, [(UART_IRQ, 0, 0), (27, 0, 1)]);
    let eoi = |i: u64| Fault::decode(label::VGIC_MAINTENANCE, move |_| i);
    vmm.handle_fault(&mut p, &eoi(1));
    assert_eq!(p.vppi_acks, [27]);
    assert!(p.irq_acks.is_empty());
    // The passthrough EOI itself re-enables nothing...
    vmm.handle_fault(&mut p, &eoi(0));
    assert!(p.irq_acks.is_empty(), "acked at its own EOI");
    // ...nor does a doorbell (the guest is still working through its frames)...
    guest_store(&mut vmm, &mut p, 0x40_2000, RX_FAULT, 3, 0);
    assert!(p.irq_acks.is_empty(), "acked at a doorbell");
    // ...the next other activation of the VMM does, once.
    assert!(vmm.notified(&mut p, VIRT_TX));
    assert_eq!(p.irq_acks, [UART_IRQ_CH]);
    assert!(vmm.notified(&mut p, VIRT_TX));
    assert_eq!(p.irq_acks, [UART_IRQ_CH]);
    let c = vmm.counters();
    assert_eq!((c.uart_injections, c.passthrough_acks), (1, 1));
    assert_eq!(c.passthrough_acks_deferred, 1);
    assert_eq!((c.vppi_events, c.maintenance_faults), (1, 2));
}

/// Every kind of activation but a doorbell re-enables a passthrough IRQ whose EOI came earlier;
/// above all a WFI, so an idle guest never sleeps with its NIC's interrupt masked.
#[test]
fn a_deferred_passthrough_ack_is_flushed_by_any_activation() {
    type Activation = fn(&mut Vmm<'static>, &mut Mock);
    let activations: [(&str, Activation); 4] = [
        ("wfi", |vmm, p| {
            wfi(vmm, p, 0x9000_8000);
        }),
        ("vppi", |vmm, p| {
            vmm.handle_fault(p, &Fault::decode(label::VPPI_EVENT, |_| 27));
        }),
        ("virt_tx notification", |vmm, p| {
            vmm.notified(p, VIRT_TX);
        }),
        ("gicd write", |vmm, p| enable_irq(vmm, p, RX_IRQ)),
    ];
    for (what, activate) in activations {
        let (mut vmm, mut p) = started(true);
        linux_gic_init(&mut vmm, &mut p);
        enable_irq(&mut vmm, &mut p, UART_IRQ);
        enable_irq(&mut vmm, &mut p, 27);
        enable_irq(&mut vmm, &mut p, TX_IRQ);
        assert!(vmm.notified(&mut p, UART_IRQ_CH));
        vmm.handle_fault(&mut p, &Fault::decode(label::VGIC_MAINTENANCE, |_| 0));
        assert!(p.irq_acks.is_empty(), "{what}");
        activate(&mut vmm, &mut p);
        assert_eq!(p.irq_acks, [UART_IRQ_CH], "{what}");
    }
}

#[test]
fn counters_are_published_in_the_stats_region() {
    use netvm_api::stats::{Counters as _, Snapshot, StatsWriter};
    use sddf::shm::OwnedRegion;

    let mem = OwnedRegion::new(4096);
    let (mut vmm, mut p) = started(true);
    vmm.attach_stats(StatsWriter::new(mem.region(), "vmm").unwrap())
        .unwrap();
    let snap = Snapshot::read(&mem.region()).unwrap();
    assert_eq!(snap.component, "vmm");
    assert_eq!(snap.entries.len(), vmm::vmm::Counters::NAMES.len());
    assert_eq!(snap.get("vmm.faults"), Some(0));

    linux_gic_init(&mut vmm, &mut p);
    guest_store(&mut vmm, &mut p, 0x40_1000, RX_FAULT, 8, 1);
    enable_irq(&mut vmm, &mut p, TX_IRQ);
    assert!(vmm.notified(&mut p, VIRT_TX));
    // Nothing moves in the region until the PD publishes (after each fault and batch).
    assert_eq!(
        Snapshot::read(&mem.region()).unwrap().get("vmm.faults"),
        Some(0)
    );
    vmm.publish_stats();
    let snap = Snapshot::read(&mem.region()).unwrap();
    let c = vmm.counters();
    assert!(c.faults > 2 && c.gicd_writes > 0);
    assert_eq!(snap.get("vmm.faults"), Some(c.faults));
    assert_eq!(snap.get("vmm.gicd_writes"), Some(c.gicd_writes));
    assert_eq!(snap.get("vmm.rx_fault_doorbells"), Some(1));
    assert_eq!(snap.get("vmm.tx_irq_injections"), Some(1));
    assert_eq!(snap.get("vmm.notifications"), Some(1));
    // Every name fits the region's 40-byte name field whole.
    for name in vmm::vmm::Counters::NAMES {
        assert!(snap.get(&format!("vmm.{name}")).is_some(), "{name} cut");
    }
}

#[test]
fn unknown_doorbells_and_routes_are_counted_apart() {
    const BELLS: [Doorbell; 1] = [Doorbell {
        name: "extra",
        gpa: 0x3030_0000,
        channel: None,
    }];
    const ROUTES: [VirqRoute; 1] = [VirqRoute {
        name: "extra_irq",
        channel: 9,
        irq: 120,
        passthrough: false,
    }];
    let mut vmm = Vmm::new(Config {
        gicd_base: GICD_BASE,
        doorbells: &BELLS,
        virqs: &ROUTES,
        wakeup_channel: None,
        restart_budget: 0,
        watchdog_ticks: None,
    });
    let mut p = Mock::default();
    vmm.start(&mut p, &UserContext::default()).unwrap();
    guest_store(&mut vmm, &mut p, 0x40_0000, 0x3030_0000, 8, 1);
    assert!(vmm.notified(&mut p, 9));
    assert!(vmm.notified(&mut p, 9));
    let c = vmm.counters();
    assert_eq!((c.other_doorbells, c.rx_fault_doorbells), (1, 0));
    assert_eq!((c.other_injections, c.other_coalesced), (2, 1));
    assert!(
        p.notified.is_empty(),
        "a doorbell without a channel only counts"
    );
}

#[test]
fn unexpected_faults_dump_registers_and_stop_only_the_guest() {
    let (mut vmm, mut p) = started(true);
    p.regs.set_x(7, 0x1234_5678);
    p.regs.set_pc(0x9040_0000);
    // A store to an address nothing emulates.
    let f = vm_fault(0x9040_0000, 0x0a00_0000, dabt(true, 4, 1));
    assert_eq!(vmm.handle_fault(&mut p, &f), Reply::None);
    assert!(p.suspended);
    assert_eq!(vmm.stop_reason(), Some(StopReason::Unexpected));
    assert!(p.log.contains("unexpected guest fault"), "{}", p.log);
    assert!(p.log.contains("0xa000000"), "{}", p.log);
    assert!(p.log.contains("x7   0x0000000012345678"), "{}", p.log);
    // Notifications are still served (the PD did not die).
    assert!(vmm.notified(&mut p, VIRT_RX));

    // A GICD access without a valid syndrome (e.g. ldp) cannot be emulated.
    let (mut vmm, mut p) = started(true);
    let no_isv = u64::from((0x24u32 << 26) | (1 << 25) | 7);
    let f = vm_fault(0x9040_0000, GICD_BASE, no_isv);
    assert_eq!(vmm.handle_fault(&mut p, &f), Reply::None);
    assert!(p.log.contains("ISV=0"), "{}", p.log);

    // A trapped MSR and a user exception are unexpected too.
    for f in [
        Fault::decode(label::VCPU_FAULT, |_| 0x6000_0000),
        Fault::decode(label::USER_EXCEPTION, |i| [0x9000_0000, 0, 0, 0, 0][i]),
    ] {
        let (mut vmm, mut p) = started(true);
        assert_eq!(vmm.handle_fault(&mut p, &f), Reply::None);
        assert_eq!(vmm.state(), RunState::Stopped);
        let c = vmm.counters();
        assert_eq!((c.faults, c.unexpected_faults), (1, 1));
    }
}

#[test]
fn restart_after_reset_clears_the_vgic_and_settles_what_was_in_flight() {
    let (mut vmm, mut p) = started(true);
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, RX_IRQ);
    enable_irq(&mut vmm, &mut p, UART_IRQ);
    enable_irq(&mut vmm, &mut p, 27);
    // In flight at the reset: the UART's IRQ and the timer PPI in list registers (never
    // EOI'd), virt_rx's vIRQ too.
    vmm.notified(&mut p, VIRT_RX);
    vmm.notified(&mut p, UART_IRQ_CH);
    let vppi = Fault::decode(label::VPPI_EVENT, |_| 27);
    vmm.handle_fault(&mut p, &vppi);
    assert_eq!(p.loads.len(), 3);
    smc(&mut vmm, &mut p, 0x9000_0000, [0x8400_0009, 0, 0, 0]);
    assert_eq!(vmm.stop_reason(), Some(StopReason::SystemReset));
    assert!(p.irq_acks.is_empty() && p.vppi_acks.is_empty());
    assert!(vmm.restart(&mut p));
    let mut ctx = UserContext::default();
    ctx.set_pc(0x9000_0000);
    vmm.start(&mut p, &ctx).unwrap();
    assert_eq!(vmm.state(), RunState::Running);
    // The UART's line and the timer can fire again; the new guest starts with a clean vCPU.
    assert_eq!(p.irq_acks, [UART_IRQ_CH]);
    assert_eq!(p.vppi_acks, [27]);
    assert_eq!(p.vcpu_resets, 2, "at the first boot and at the restart");
    assert!(!vmm.vgic().distributor_enabled() && !vmm.vgic().has_work());
    assert_eq!(vmm.stop_reason(), None);
    let c = vmm.counters();
    assert_eq!((c.guest_restarts, c.restart_acks), (1, 2));
    // The old IRQs are gone from the list registers: harmless SGIs took their place.
    assert_eq!(&p.loads[3..], [(0, 0, 0), (1, 0, 1), (5, 0, 2)]);
    // The new guest brings its GIC up; the UART's next IRQ goes into the free register, and
    // the leftovers' EOIs ack nothing.
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, UART_IRQ);
    vmm.notified(&mut p, UART_IRQ_CH);
    assert_eq!(p.loads.last(), Some(&(UART_IRQ, 0, 3)));
    let eoi = |i: u64| Fault::decode(label::VGIC_MAINTENANCE, move |_| i);
    for i in 0..3 {
        vmm.handle_fault(&mut p, &eoi(i));
    }
    assert_eq!(p.irq_acks, [UART_IRQ_CH]);
    vmm.handle_fault(&mut p, &eoi(3));
    vmm.notified(&mut p, VIRT_TX);
    assert_eq!(p.irq_acks, [UART_IRQ_CH, UART_IRQ_CH]);
}

#[test]
fn crashed_guests_restart_within_the_budget() {
    let (mut vmm, mut p) = started(true);
    // Nothing to restart while the guest runs, or after it powered off.
    assert!(!vmm.restart(&mut p));
    let crash = vm_fault(0x9040_0000, 0x0a00_0000, dabt(true, 4, 1));
    for n in 1..=2 {
        assert_eq!(vmm.handle_fault(&mut p, &crash), Reply::None);
        assert!(vmm.restart(&mut p), "restart {n}");
        assert!(p.log.contains(&format!("restart {n} of 2")), "{}", p.log);
        vmm.start(&mut p, &UserContext::default()).unwrap();
    }
    assert_eq!(vmm.handle_fault(&mut p, &crash), Reply::None);
    assert!(!vmm.restart(&mut p), "the budget of 2 is spent");
    assert!(p.log.contains("restarts are spent"), "{}", p.log);
    assert_eq!(vmm.state(), RunState::Stopped);
    assert_eq!(vmm.counters().guest_restarts, 2);

    let (mut vmm, mut p) = started(true);
    smc(&mut vmm, &mut p, 0x9000_0000, [0x8400_0008, 0, 0, 0]);
    assert_eq!(vmm.stop_reason(), Some(StopReason::SystemOff));
    assert!(!vmm.restart(&mut p), "a power-off is not a crash");
}

/// A started guest with a wake-up timer and a watchdog of 1000 ticks.
fn watched() -> (Vmm<'static>, Mock) {
    let mut vmm = Vmm::new(Config {
        watchdog_ticks: Some(1000),
        ..config(true)
    });
    let mut p = Mock {
        has_wakeup: true,
        ..Mock::default()
    };
    vmm.start(&mut p, &UserContext::default()).unwrap();
    (vmm, p)
}

/// A guest that stops taking interrupts is stopped by the watchdog (from the wake-up timer, as
/// such a guest causes no exits) and may be restarted; one that EOIs is left alone.
#[test]
fn the_watchdog_stops_a_guest_that_no_longer_takes_interrupts() {
    let (mut vmm, mut p) = watched();
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, UART_IRQ);
    assert_eq!(p.wakeup, None, "nothing waits: no timer");
    // An interrupt delivered at t=100: the timer will look at t=1100.
    p.now = 100;
    vmm.notified(&mut p, UART_IRQ_CH);
    assert_eq!(p.wakeup, Some(1100));
    // The guest EOIs it at t=900 (healthy); the next one, at t=950, gets its own 1000 ticks.
    p.now = 900;
    let eoi = Fault::decode(label::VGIC_MAINTENANCE, |_| 0);
    vmm.handle_fault(&mut p, &eoi);
    p.now = 950;
    assert!(vmm.notified(&mut p, VIRT_TX), "any activation");
    vmm.notified(&mut p, UART_IRQ_CH);
    // The timer fires at 1100 (armed earlier): too early to give up, so it is armed again.
    p.now = 1100;
    assert!(vmm.notified(&mut p, WAKEUP_CH));
    assert_eq!(vmm.state(), RunState::Running);
    assert_eq!(p.wakeup, Some(1950));
    // At 1950 the guest still has not EOI'd: stopped, and restartable.
    p.now = 1950;
    assert!(vmm.notified(&mut p, WAKEUP_CH));
    assert_eq!(vmm.state(), RunState::Stopped);
    assert_eq!(vmm.stop_reason(), Some(StopReason::Watchdog));
    assert!(p.suspended);
    assert!(p.log.contains("watchdog"), "{}", p.log);
    assert_eq!(vmm.counters().watchdog_expiries, 1);
    assert!(vmm.restart(&mut p));

    // Without a wake-up timer there is no watchdog (nothing would look again).
    let mut vmm = Vmm::new(Config {
        watchdog_ticks: Some(1000),
        ..config(false)
    });
    let mut p = Mock::default();
    vmm.start(&mut p, &UserContext::default()).unwrap();
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, UART_IRQ);
    vmm.notified(&mut p, UART_IRQ_CH);
    p.now = 1_000_000;
    vmm.notified(&mut p, VIRT_TX);
    assert_eq!(vmm.state(), RunState::Running);
}

/// A driver that has rung doorbells and then leaves its UIO interrupt off while virt_rx calls
/// it (the guest kernel alive, the driver not) is stopped by the watchdog; before its first
/// doorbell (the guest still booting) it is not.
#[test]
fn the_watchdog_stops_a_guest_whose_driver_went_silent() {
    let (mut vmm, mut p) = watched();
    linux_gic_init(&mut vmm, &mut p);
    // Booting: virt_rx calls a driver that does not exist yet; its IRQ is off. No watchdog.
    p.now = 10;
    vmm.notified(&mut p, VIRT_RX);
    assert_eq!(p.wakeup, None);
    p.now = 5000;
    vmm.notified(&mut p, VIRT_TX);
    assert_eq!(vmm.state(), RunState::Running);
    // The driver comes up: rings, then turns its interrupt on and takes the pending one.
    guest_store(&mut vmm, &mut p, 0x40_2000, RX_FAULT, 3, 0);
    enable_irq(&mut vmm, &mut p, RX_IRQ);
    enable_irq(&mut vmm, &mut p, TX_IRQ);
    for index in [0, 1] {
        let eoi = Fault::decode(label::VGIC_MAINTENANCE, move |_| index);
        vmm.handle_fault(&mut p, &eoi);
    }
    assert!(!vmm.vgic().has_work());
    // The UIO layer turned it off again (the driver is working); virt_rx calls again at 5100,
    // and the driver rings at 5500: alive.
    guest_store(
        &mut vmm,
        &mut p,
        0x40_2004,
        GICD_BASE + reg::ICENABLER + 4 * u64::from(RX_IRQ / 32),
        2,
        1 << (RX_IRQ % 32),
    );
    p.now = 5100;
    vmm.notified(&mut p, VIRT_RX);
    // (The timer armed at 5000, when TX_IRQ was still off, looks first.)
    assert_eq!(p.wakeup, Some(6000));
    p.now = 5500;
    guest_store(&mut vmm, &mut p, 0x40_2000, RX_FAULT, 3, 0);
    // Then silence with virt_rx's call pending since that doorbell: still running at 6000,
    // stopped at 6500.
    p.now = 6000;
    vmm.notified(&mut p, WAKEUP_CH);
    assert_eq!(vmm.state(), RunState::Running);
    assert_eq!(p.wakeup, Some(6500));
    p.now = 6500;
    vmm.notified(&mut p, WAKEUP_CH);
    assert_eq!(vmm.stop_reason(), Some(StopReason::Watchdog));
    assert!(p.log.contains("no progress"), "{}", p.log);
    // A restarted guest starts unseen again.
    assert!(vmm.restart(&mut p));
    vmm.start(&mut p, &UserContext::default()).unwrap();
    linux_gic_init(&mut vmm, &mut p);
    p.now = 7200;
    vmm.notified(&mut p, VIRT_RX);
    p.now = 100_000;
    vmm.notified(&mut p, VIRT_TX);
    assert_eq!(vmm.state(), RunState::Running);
}

/// Frames waiting in the driver's TX queue with its consumer index standing still count as
/// a stall even when no vIRQ is pending (virt_tx signals a silent driver only once).
#[test]
fn the_watchdog_sees_frames_the_driver_no_longer_takes() {
    let (mut vmm, mut p) = watched();
    linux_gic_init(&mut vmm, &mut p);
    guest_store(&mut vmm, &mut p, 0x40_2000, TX_FAULT, 3, 0);
    // 3 frames waiting; then the driver takes one (its index moves): fine.
    p.backlog = Some((3, 10));
    p.now = 100;
    vmm.notified(&mut p, VIRT_RX);
    assert_eq!(p.wakeup, Some(1100));
    p.backlog = Some((2, 11));
    p.now = 1100;
    vmm.notified(&mut p, WAKEUP_CH);
    assert_eq!(vmm.state(), RunState::Running);
    assert_eq!(p.wakeup, Some(2100), "counting again from the progress");
    // Then it stands still with 2 frames waiting: stopped at 2100.
    p.now = 2100;
    vmm.notified(&mut p, WAKEUP_CH);
    assert_eq!(vmm.stop_reason(), Some(StopReason::Watchdog));

    // An empty queue is no stall.
    let (mut vmm, mut p) = watched();
    guest_store(&mut vmm, &mut p, 0x40_2000, TX_FAULT, 3, 0);
    p.backlog = Some((0, 11));
    // (Activations that leave nothing undelivered for the driver: the UART's IRQ, disabled.)
    p.now = 1_000_000;
    vmm.notified(&mut p, UART_IRQ_CH);
    p.now = 2_000_000;
    vmm.notified(&mut p, UART_IRQ_CH);
    assert_eq!(vmm.state(), RunState::Running);
    assert_eq!(p.wakeup, None, "nothing to watch");
}

/// A doorbell store costs no register read: only the pc is written.
#[test]
fn a_doorbell_reads_no_register() {
    let (mut vmm, mut p) = started(true);
    p.last_read = 99;
    assert_eq!(
        guest_store(&mut vmm, &mut p, 0x40_2000, RX_FAULT, 3, 0x1234),
        Reply::Resume
    );
    assert_eq!(p.last_read, 99, "no TCB_ReadRegisters");
    assert_eq!(p.regs.pc(), 0x40_2004);
    assert_eq!(p.regs.x(3), 0x1234, "registers untouched");
    assert_eq!(p.notified, [VIRT_RX]);
}
