//! The VMM core against a recording platform (`common`): PSCI over SMC and HVC, WFI blocking
//! and sleeping until the guest timer's deadline, CPU_SUSPEND.

mod common;

use common::*;
use vmm::fault::{label, Fault};
use vmm::vmm::Vtimer;
use vmm::{Reply, RunState, StopReason};

#[test]
fn psci_over_smc_writes_x0_and_skips_the_smc() {
    let (mut vmm, mut p) = started(true);
    assert_eq!(
        smc(&mut vmm, &mut p, 0x9010_0000, [0x8400_0000, 0, 0, 0]),
        Reply::Resume
    );
    assert_eq!((p.regs.x(0), p.regs.pc()), (0x10001, 0x9010_0004));
    smc(
        &mut vmm,
        &mut p,
        0x9010_0000,
        [0xc400_0003, 1, 0x9000_0000, 0],
    );
    assert_eq!(
        p.regs.x(0) as i64,
        -2,
        "CPU_ON for a CPU that does not exist"
    );
    smc(
        &mut vmm,
        &mut p,
        0x9010_0000,
        [0xc400_0003, 0, 0x9000_0000, 0],
    );
    assert_eq!(
        p.regs.x(0) as i64,
        -4,
        "CPU_ON for the running CPU: ALREADY_ON"
    );
    smc(&mut vmm, &mut p, 0x9010_0000, [0x8600_0000, 0, 0, 0]);
    assert_eq!(p.regs.x(0) as i64, -1);
    assert_eq!(p.regs.x(1), 0, "x1 untouched");
    // SYSTEM_OFF: no reply, vCPU suspended, reason recorded.
    assert_eq!(
        smc(&mut vmm, &mut p, 0x9010_0000, [0x8400_0008, 0, 0, 0]),
        Reply::None
    );
    assert!(p.suspended);
    assert_eq!(
        (vmm.state(), vmm.stop_reason()),
        (RunState::Stopped, Some(StopReason::SystemOff))
    );
    assert_eq!(vmm.counters().psci_calls, 5);
}

#[test]
fn psci_over_hvc_answers_in_the_fault_reply() {
    let (mut vmm, mut p) = started(true);
    let mrs = [
        0x8400_000a,
        0x8000_0000,
        0,
        0,
        0,
        0,
        0,
        0,
        0x9020_00a8,
        0x9fff_0000,
        0,
        0x3c5,
        0,
    ];
    let call = Fault::decode(label::UNKNOWN_SYSCALL, |i| mrs[i]);
    let Reply::ResumeWith { mrs: out } = vmm.handle_fault(&mut p, &call) else {
        panic!()
    };
    assert_eq!(out[0] as i64, -1, "FEATURES(SMCCC_VERSION) = NOT_SUPPORTED");
    assert_eq!(out[1], 0x8000_0000, "x1 written back unchanged");
    assert_eq!(out[8], 0x9020_00ac, "pc after the hvc");
    let reset = [0x8400_0009, 0, 0, 0, 0, 0, 0, 0, 0x9020_00a8, 0, 0, 0, 0];
    let call = Fault::decode(label::UNKNOWN_SYSCALL, |i| reset[i]);
    assert_eq!(vmm.handle_fault(&mut p, &call), Reply::None);
    assert_eq!(vmm.stop_reason(), Some(StopReason::SystemReset));
}

#[test]
fn wfi_blocks_until_an_irq_is_injected() {
    let (mut vmm, mut p) = started(true);
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, RX_IRQ);
    // Nothing pending, timer off: the vCPU is suspended and the fault not replied to.
    assert_eq!(wfi(&mut vmm, &mut p, 0x9000_8000), Reply::None);
    assert!(p.suspended);
    assert_eq!(
        vmm.state(),
        RunState::Waiting {
            resume_pc: 0x9000_8004,
            x0: None
        }
    );
    assert_eq!(p.wakeup, None);
    // A notification for a disabled vIRQ does not wake it.
    vmm.notified(&mut p, VIRT_TX);
    assert!(p.suspended);
    // virt_rx notifies: rx_irq goes into a list register and the guest resumes after the WFI.
    vmm.notified(&mut p, VIRT_RX);
    assert!(!p.suspended);
    assert_eq!(p.resumes.last(), Some(&0x9000_8004));
    assert_eq!(p.loads, [(RX_IRQ, 0, 0)]);
    assert_eq!(vmm.state(), RunState::Running);
    // WFI while that IRQ is still in a list register returns at once.
    assert_eq!(wfi(&mut vmm, &mut p, 0x9000_9000), Reply::Resume);
    assert_eq!(p.regs.pc(), 0x9000_9004);
    assert_eq!(vmm.counters().wfi_blocks, 1);
    assert_eq!(vmm.counters().wfx_traps, 2);
    // WFE never blocks.
    p.regs.set_pc(0x9000_a000);
    let wfe = Fault::decode(label::VCPU_FAULT, |_| (0x01 << 26) | (1 << 25) | 1);
    assert_eq!(vmm.handle_fault(&mut p, &wfe), Reply::Resume);
    assert_eq!(p.regs.pc(), 0x9000_a004);
}

#[test]
fn wfi_with_the_guest_timer_armed_sleeps_until_its_deadline() {
    let (mut vmm, mut p) = started(true);
    p.vtimer = Vtimer {
        ctl: 1,
        cval: 5_000,
        offset: 100,
    };
    p.now = 1_000;
    assert_eq!(wfi(&mut vmm, &mut p, 0x9000_8000), Reply::None);
    assert_eq!(p.wakeup, Some(5_100), "physical deadline = cval + CNTVOFF");
    p.now = 5_200;
    assert!(vmm.notified(&mut p, WAKEUP_CH));
    assert_eq!(p.irq_acks, [WAKEUP_CH]);
    assert_eq!(p.wakeup, None);
    assert!(!p.suspended);
    assert_eq!(p.resumes.last(), Some(&0x9000_8004));
    // Deadline already passed: no blocking.
    assert_eq!(wfi(&mut vmm, &mut p, 0x9000_9000), Reply::Resume);
    // Masked timer: not a wake-up source.
    p.vtimer.ctl = 3;
    assert_eq!(wfi(&mut vmm, &mut p, 0x9000_a000), Reply::None);
    assert_eq!(p.wakeup, None);
}

#[test]
fn without_a_wakeup_timer_an_armed_vtimer_makes_wfi_return() {
    let (mut vmm, mut p) = started(false);
    p.vtimer = Vtimer {
        ctl: 1,
        cval: 5_000,
        offset: 0,
    };
    assert_eq!(wfi(&mut vmm, &mut p, 0x9000_8000), Reply::Resume);
    assert_eq!(p.regs.pc(), 0x9000_8004);
    assert!(!p.suspended);
}

#[test]
fn cpu_suspend_waits_and_returns_success() {
    let (mut vmm, mut p) = started(true);
    linux_gic_init(&mut vmm, &mut p);
    enable_irq(&mut vmm, &mut p, TX_IRQ);
    assert_eq!(
        smc(&mut vmm, &mut p, 0x9030_0000, [0xc400_0001, 0, 0, 0]),
        Reply::None
    );
    p.regs.set_x(0, 0xc400_0001);
    vmm.notified(&mut p, VIRT_TX);
    assert_eq!((p.regs.x(0), p.regs.pc()), (0, 0x9030_0004));
}
