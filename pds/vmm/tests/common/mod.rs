//! A recording platform for the VMM core (a vCPU and kernel as far as the VMM can see them),
//! the system it runs (doorbells, vIRQ routes, channels) and the guest's side of MMIO.
#![allow(dead_code)] // each test binary uses a different subset

use std::fmt;

use vmm::fault::{label, Esr, Fault};
use vmm::regs::UserContext;
use vmm::vgic::{reg, ListRegisters, LoadError, GICD_BASE};
use vmm::vmm::{KernelError, Vtimer};
use vmm::{Config, Doorbell, Platform, Reply, RunState, VirqRoute, Vmm};

/// A vCPU and kernel as far as the VMM can see them.
#[derive(Default)]
pub struct Mock {
    pub regs: UserContext,
    /// Whether the vCPU thread is suspended.
    pub suspended: bool,
    /// Resumes with their pc.
    pub resumes: Vec<u64>,
    pub loads: Vec<(u16, u8, u8)>,
    pub notified: Vec<u8>,
    pub irq_acks: Vec<u8>,
    pub vppi_acks: Vec<u16>,
    pub vtimer: Vtimer,
    pub now: u64,
    pub has_wakeup: bool,
    pub wakeup: Option<u64>,
    pub log: String,
    /// Words transferred by the last read.
    pub last_read: usize,
    /// `reset_vcpu` calls.
    pub vcpu_resets: u32,
    /// What `driver_backlog` says.
    pub backlog: Option<(u16, u16)>,
}

impl ListRegisters for Mock {
    fn load(&mut self, irq: u16, priority: u8, index: u8) -> Result<(), LoadError> {
        self.loads.push((irq, priority, index));
        Ok(())
    }
}

impl Platform for Mock {
    fn read_regs(&mut self, count: usize) -> Result<UserContext, KernelError> {
        // Only the prefix is transferred: the rest reads as garbage the VMM must not use.
        let mut ctx = UserContext([0xdead_beef; 36]);
        ctx.0[..count].copy_from_slice(&self.regs.0[..count]);
        self.last_read = count;
        Ok(ctx)
    }
    fn write_regs(&mut self, ctx: &UserContext, count: usize) -> Result<(), KernelError> {
        self.regs.0[..count].copy_from_slice(&ctx.0[..count]);
        Ok(())
    }
    fn stop_vcpu(&mut self) -> Result<(), KernelError> {
        self.suspended = true;
        Ok(())
    }
    fn resume_vcpu(&mut self, pc: u64) -> Result<(), KernelError> {
        self.suspended = false;
        self.regs.set_pc(pc);
        self.resumes.push(pc);
        Ok(())
    }
    fn ack_vppi(&mut self, irq: u16) -> Result<(), KernelError> {
        self.vppi_acks.push(irq);
        Ok(())
    }
    fn irq_ack(&mut self, channel: u8) {
        self.irq_acks.push(channel);
    }
    fn notify(&mut self, channel: u8) {
        self.notified.push(channel);
    }
    fn vtimer(&mut self) -> Result<Vtimer, KernelError> {
        Ok(self.vtimer)
    }
    fn now(&mut self) -> u64 {
        self.now
    }
    fn set_wakeup(&mut self, deadline: Option<u64>) -> bool {
        if self.has_wakeup {
            self.wakeup = deadline;
        }
        self.has_wakeup
    }
    fn log(&mut self, args: fmt::Arguments<'_>) {
        self.log.push_str(&args.to_string());
    }
    fn driver_backlog(&mut self) -> Option<(u16, u16)> {
        self.backlog
    }
    fn reset_vcpu(&mut self) -> Result<(), KernelError> {
        self.vcpu_resets += 1;
        Ok(())
    }
}

pub const RX_FAULT: u64 = 0x3020_8000;
pub const TX_FAULT: u64 = 0x3020_9000;
pub const VIRT_RX: u8 = 1;
pub const VIRT_TX: u8 = 2;
pub const UART_IRQ_CH: u8 = 3;
pub const WAKEUP_CH: u8 = 4;
pub const RX_IRQ: u16 = 112;
pub const TX_IRQ: u16 = 113;
pub const UART_IRQ: u16 = 33;

pub const DOORBELLS: [Doorbell; 2] = [
    Doorbell {
        name: "rx_fault",
        gpa: RX_FAULT,
        channel: Some(VIRT_RX),
    },
    Doorbell {
        name: "tx_fault",
        gpa: TX_FAULT,
        channel: Some(VIRT_TX),
    },
];
pub const VIRQS: [VirqRoute; 3] = [
    VirqRoute {
        name: "rx_irq",
        channel: VIRT_RX,
        irq: RX_IRQ,
        passthrough: false,
    },
    VirqRoute {
        name: "tx_irq",
        channel: VIRT_TX,
        irq: TX_IRQ,
        passthrough: false,
    },
    VirqRoute {
        name: "uart",
        channel: UART_IRQ_CH,
        irq: UART_IRQ,
        passthrough: true,
    },
];

pub fn config(wakeup: bool) -> Config<'static> {
    Config {
        gicd_base: GICD_BASE,
        doorbells: &DOORBELLS,
        virqs: &VIRQS,
        wakeup_channel: wakeup.then_some(WAKEUP_CH),
        restart_budget: 2,
        watchdog_ticks: None,
    }
}

/// A started guest at pc 0x9000_0000.
pub fn started(wakeup: bool) -> (Vmm<'static>, Mock) {
    let mut vmm = Vmm::new(config(wakeup));
    let mut p = Mock {
        has_wakeup: wakeup,
        ..Mock::default()
    };
    let mut ctx = UserContext::default();
    ctx.set_pc(0x9000_0000);
    ctx.set_x(0, 0x9fe0_0000);
    ctx.0[2] = 0x3c5;
    vmm.start(&mut p, &ctx).unwrap();
    assert_eq!(p.resumes, [0x9000_0000]);
    assert_eq!(p.regs.x(0), 0x9fe0_0000);
    assert_eq!(vmm.state(), RunState::Running);
    (vmm, p)
}

/// ESR of a data abort with a valid syndrome: `width` bytes, register `rt`.
pub fn dabt(write: bool, width: u32, rt: u32) -> u64 {
    let sas = width.trailing_zeros();
    u64::from(
        (0x24 << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | (rt << 16)
            | (u32::from(write) << 6)
            | 7,
    )
}

pub fn vm_fault(ip: u64, addr: u64, esr: u64) -> Fault {
    Fault::decode(label::VM_FAULT, |i| [ip, addr, 0, esr][i])
}

/// The guest executes `str w<rt>, [addr]` with `value` at `pc`.
pub fn guest_store(vmm: &mut Vmm, p: &mut Mock, pc: u64, addr: u64, rt: u32, value: u64) -> Reply {
    p.regs.set_pc(pc);
    p.regs.set_x(rt, value);
    vmm.handle_fault(p, &vm_fault(pc, addr, dabt(true, 4, rt)))
}

/// The guest executes `ldr w<rt>, [addr]` at `pc`; returns the loaded register.
pub fn guest_load(vmm: &mut Vmm, p: &mut Mock, pc: u64, addr: u64, width: u32, rt: u32) -> u64 {
    p.regs.set_pc(pc);
    p.regs.set_x(rt, 0x5555_5555_5555_5555);
    assert_eq!(
        vmm.handle_fault(p, &vm_fault(pc, addr, dabt(false, width, rt))),
        Reply::Resume
    );
    assert_eq!(p.regs.pc(), pc + 4, "pc advanced past the load");
    p.regs.x(rt)
}

pub fn enable_irq(vmm: &mut Vmm, p: &mut Mock, irq: u16) {
    let addr = GICD_BASE + reg::ISENABLER + 4 * u64::from(irq / 32);
    guest_store(vmm, p, 0x9000_1000, addr, 2, 1 << (irq % 32));
}

pub fn linux_gic_init(vmm: &mut Vmm, p: &mut Mock) {
    assert_eq!(
        guest_load(vmm, p, 0x9000_0100, GICD_BASE + reg::TYPER, 4, 1),
        7
    );
    assert_eq!(
        guest_load(vmm, p, 0x9000_0104, GICD_BASE + reg::ITARGETSR, 4, 20),
        0x0101_0101
    );
    guest_store(vmm, p, 0x9000_0108, GICD_BASE + reg::CTLR, 8, 1);
    assert!(vmm.vgic().distributor_enabled());
}

/// The guest executes `smc #0` at `pc` with `args` in x0..x3 (a PSCI call).
pub fn smc(vmm: &mut Vmm, p: &mut Mock, pc: u64, args: [u64; 4]) -> Reply {
    p.regs.set_pc(pc);
    for (i, a) in args.into_iter().enumerate() {
        p.regs.set_x(i as u32, a);
    }
    vmm.handle_fault(p, &Fault::VcpuFault(Esr((0x17 << 26) | (1 << 25))))
}

/// The guest executes `wfi` at `pc`.
pub fn wfi(vmm: &mut Vmm, p: &mut Mock, pc: u64) -> Reply {
    p.regs.set_pc(pc);
    vmm.handle_fault(
        p,
        &Fault::decode(label::VCPU_FAULT, |_| (0x01 << 26) | (1 << 25)),
    )
}
