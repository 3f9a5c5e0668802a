//! seL4 backend: the libmicrokit ABI of Microkit 2.3.0 on aarch64 (MCS kernel), with raw `svc #0`.
//!
//! Facts used (shared/reference/microkit-abi.md): CSpace slots §4.1, badges §4.2, patched symbols
//! §4.3, entry and event loop §4.4, IPC buffer §4.5/§4.7, syscall numbers and registers §4.6.
//! This is the crate's raw-ABI module: it opts back into `unsafe` for inline assembly, the
//! patched statics and the IPC buffer.
#![allow(unsafe_code)]

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

use crate::{
    deferred, dispatch, Channel, ChannelSet, Child, DeferredAction, Event, Handler,
    InvocationError, MessageInfo,
};

mod invocations {
    include!(concat!(env!("OUT_DIR"), "/invocations.rs"));
}
use invocations::*;

// CSpace slots (libmicrokit `main.c` / `microkit.h`).
const INPUT_CAP: u64 = 1;
const REPLY_CAP: u64 = 4;
const MONITOR_EP: u64 = 5;
const BASE_OUTPUT_NOTIFICATION_CAP: u64 = 10;
const BASE_ENDPOINT_CAP: u64 = 74;
const BASE_IRQ_CAP: u64 = 138;
const BASE_TCB_CAP: u64 = 202;
const BASE_VM_TCB_CAP: u64 = 266;
const BASE_VCPU_CAP: u64 = 330;

// Badge bits of what `Recv` returns.
const BADGE_FAULT_BIT: u32 = 62;
const BADGE_ENDPOINT_BIT: u32 = 63;
const PD_MASK: u64 = 0xff;
const CHANNEL_MASK: u64 = 0x3f;

// MCS syscall numbers (x7), from the SDK's generated `sel4/syscall.h`.
const SYS_CALL: i64 = -1;
const SYS_REPLY_RECV: i64 = -2;
const SYS_NB_SEND_RECV: i64 = -3;
const SYS_SEND: i64 = -5;
const SYS_RECV: i64 = -7;
#[cfg(microkit_printing)]
const SYS_DEBUG_PUT_CHAR: i64 = -12;

/// A value the Microkit tool writes into the ELF image.
#[repr(transparent)]
struct Patched<T>(UnsafeCell<T>);

// SAFETY: the PD never writes these statics; the tool patches them before the PD starts.
unsafe impl<T> Sync for Patched<T> {}

impl<T: Copy> Patched<T> {
    fn get(&self) -> T {
        // SAFETY: aligned pointer to a live static that nothing writes at run time; volatile so
        // the zero initialiser is never constant-folded.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
}

// The six symbols the Microkit tool patches in every PD (microkit-abi.md §4.3). All are mandatory,
// even `microkit_ioports` on ARM; the linker script's EXTERN keeps them in the image.
#[no_mangle]
#[used]
static microkit_name: Patched<[u8; 64]> = Patched(UnsafeCell::new([0; 64]));
#[no_mangle]
#[used]
static microkit_passive: Patched<u8> = Patched(UnsafeCell::new(0));
#[no_mangle]
#[used]
static microkit_irqs: Patched<u64> = Patched(UnsafeCell::new(0));
#[no_mangle]
#[used]
static microkit_notifications: Patched<u64> = Patched(UnsafeCell::new(0));
#[no_mangle]
#[used]
static microkit_pps: Patched<u64> = Patched(UnsafeCell::new(0));
#[no_mangle]
#[used]
static microkit_ioports: Patched<u64> = Patched(UnsafeCell::new(0));

/// The PD name, copied once out of `microkit_name` (which the tool does not NUL-terminate when
/// the name is 64 bytes long) so that `pd_name` can hand out a `&'static str`.
struct NameCopy(UnsafeCell<([u8; 64], usize)>);
// SAFETY: written once by `run` before any handler code runs, on the PD's only thread.
unsafe impl Sync for NameCopy {}
static NAME: NameCopy = NameCopy(UnsafeCell::new(([0; 64], 0)));

// The PD starts here with the stack the CapDL initialiser set up (sp = STACK_TOP, with a guard
// page below the IPC buffer; microkit-abi.md §4.4). Unlike a bare-metal `_start` this does not
// switch to a `.bss` stack: the initialiser's stack honours the SDF `stack_size` and faults on
// overflow. It does set sp to STACK_TOP again, though: a parent restarts a child by writing only
// its pc (`Child::restart`, libmicrokit's `microkit_pd_restart`), so without this every restart
// would continue on the stack pointer of the dead incarnation and leak the frames above it, until
// the stack runs into its guard page after enough restarts. Frame pointer and link register are
// zeroed to terminate backtraces. `__microkit_main` is defined by `protection_domain!`.
global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    ".type _start, %function",
    "_start:",
    "    ldr x9, ={stack_top}",
    "    mov sp, x9",
    "    mov x29, xzr",
    "    mov x30, xzr",
    "    b __microkit_main",
    "    .ltorg",
    ".size _start, . - _start",
    stack_top = const STACK_TOP,
);

fn ipc_word(index: usize) -> *mut u64 {
    (IPC_BUFFER + 8 * index) as *mut u64
}

pub(crate) fn mr_get(index: usize) -> u64 {
    // SAFETY: the tool maps the IPC buffer (one page, RW) at IPC_BUFFER in every PD; `index` is
    // below 120 (checked by the caller), so the word lies in `msg[]` at offset 8.
    unsafe { core::ptr::read_volatile(ipc_word(1 + index)) }
}

pub(crate) fn mr_set(index: usize, value: u64) {
    // SAFETY: as in `mr_get`; the IPC buffer is only touched by this thread and the kernel.
    unsafe { core::ptr::write_volatile(ipc_word(1 + index), value) }
}

fn load_mrs() -> [u64; 4] {
    [mr_get(0), mr_get(1), mr_get(2), mr_get(3)]
}

fn store_mrs(mrs: [u64; 4]) {
    for (i, mr) in mrs.into_iter().enumerate() {
        mr_set(i, mr);
    }
}

/// `seL4_Call`: x0 dest, x1 msginfo, x2..x5 MR0..3; returns the reply msginfo.
fn sys_call(dest: u64, info: u64) -> u64 {
    let [mut m0, mut m1, mut m2, mut m3] = load_mrs();
    let out: u64;
    // SAFETY: seL4 syscall ABI (§4.6): the kernel reads and writes only x0..x5 for Call and
    // restores every other register; the IPC buffer may change, hence no `nomem`.
    unsafe {
        asm!("svc #0",
            inout("x0") dest => _, inout("x1") info => out,
            inout("x2") m0, inout("x3") m1, inout("x4") m2, inout("x5") m3,
            in("x6") 0u64, in("x7") SYS_CALL, options(nostack));
    }
    store_mrs([m0, m1, m2, m3]);
    out
}

/// `seL4_Send` (a signal for a notification cap, an invocation without reply otherwise).
fn sys_send(dest: u64, info: u64) {
    let [m0, m1, m2, m3] = load_mrs();
    // SAFETY: seL4 syscall ABI (§4.6); Send returns nothing, x0..x5 are treated as clobbered.
    unsafe {
        asm!("svc #0",
            inout("x0") dest => _, inout("x1") info => _,
            inout("x2") m0 => _, inout("x3") m1 => _, inout("x4") m2 => _, inout("x5") m3 => _,
            in("x7") SYS_SEND, options(nostack));
    }
}

/// `seL4_Recv` on `src` with the MCS reply object; returns (badge, msginfo).
fn sys_recv(src: u64, reply: u64) -> (u64, u64) {
    let (badge, info, m0, m1, m2, m3): (u64, u64, u64, u64, u64, u64);
    // SAFETY: seL4 syscall ABI (§4.6): x0 src / badge, x1 msginfo, x2..x5 MRs out, x6 reply.
    unsafe {
        asm!("svc #0",
            inout("x0") src => badge, out("x1") info,
            out("x2") m0, out("x3") m1, out("x4") m2, out("x5") m3,
            in("x6") reply, in("x7") SYS_RECV, options(nostack));
    }
    store_mrs([m0, m1, m2, m3]);
    (badge, info)
}

/// `seL4_ReplyRecv`: reply with `info` and MR0..3, then receive on `src`.
fn sys_reply_recv(src: u64, info: u64, reply: u64) -> (u64, u64) {
    let [mut m0, mut m1, mut m2, mut m3] = load_mrs();
    let (badge, out): (u64, u64);
    // SAFETY: seL4 syscall ABI (§4.6): as Recv, with the reply msginfo in x1 and MRs in x2..x5.
    unsafe {
        asm!("svc #0",
            inout("x0") src => badge, inout("x1") info => out,
            inout("x2") m0, inout("x3") m1, inout("x4") m2, inout("x5") m3,
            in("x6") reply, in("x7") SYS_REPLY_RECV, options(nostack));
    }
    store_mrs([m0, m1, m2, m3]);
    (badge, out)
}

/// `seL4_NBSendRecv`: non-blocking send of `info` to `dest` (x8), then receive on `src`.
fn sys_nb_send_recv(dest: u64, info: u64, src: u64, reply: u64) -> (u64, u64) {
    let [mut m0, mut m1, mut m2, mut m3] = load_mrs();
    let (badge, out): (u64, u64);
    // SAFETY: seL4 syscall ABI (§4.6): destination in x8, otherwise as ReplyRecv.
    unsafe {
        asm!("svc #0",
            inout("x0") src => badge, inout("x1") info => out,
            inout("x2") m0, inout("x3") m1, inout("x4") m2, inout("x5") m3,
            in("x6") reply, in("x7") SYS_NB_SEND_RECV, in("x8") dest, options(nostack));
    }
    store_mrs([m0, m1, m2, m3]);
    (badge, out)
}

pub(crate) fn debug_puts(s: &str) {
    #[cfg(microkit_printing)]
    for byte in s.bytes() {
        // SAFETY: seL4_DebugPutChar (debug kernels only, hence the cfg): x0 = char, nothing else.
        unsafe {
            asm!("svc #0", inout("x0") u64::from(byte) => _, in("x7") SYS_DEBUG_PUT_CHAR,
                options(nostack));
        }
    }
    #[cfg(not(microkit_printing))]
    let _ = s;
}

pub(crate) fn pd_name() -> &'static str {
    // SAFETY: NAME is written only by `copy_name` before the handler runs; shared reads after.
    let (bytes, len) = unsafe { &*NAME.0.get() };
    let bytes = &bytes[..*len];
    match core::str::from_utf8(bytes) {
        Ok(name) => name,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

fn copy_name() {
    let name = microkit_name.get();
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // SAFETY: runs once at start-up before any reader, on the PD's only thread.
    unsafe { *NAME.0.get() = (name, len) };
}

pub(crate) fn pd_is_passive() -> bool {
    microkit_passive.get() != 0
}

pub(crate) fn notification_mask() -> u64 {
    microkit_notifications.get()
}

pub(crate) fn pp_mask() -> u64 {
    microkit_pps.get()
}

pub(crate) fn irq_mask() -> u64 {
    microkit_irqs.get()
}

pub(crate) fn notify(ch: u8) {
    sys_send(BASE_OUTPUT_NOTIFICATION_CAP + u64::from(ch), 0);
}

pub(crate) fn irq_ack(ch: u8) {
    // libmicrokit ignores the result of seL4_IRQHandler_Ack.
    sys_call(
        BASE_IRQ_CAP + u64::from(ch),
        MessageInfo::new(IRQ_ACK_IRQ, 0).to_word(),
    );
}

pub(crate) fn pp_call(ch: u8, msg: MessageInfo) -> MessageInfo {
    MessageInfo::from_word(sys_call(BASE_ENDPOINT_CAP + u64::from(ch), msg.to_word()))
}

/// `seL4_Call` on slot `cap` of this PD's CSpace with `msg`; MR0..3 go from and back to the IPC
/// buffer, as in every call here. For invocations the runtime has no wrapper for (the vmm's
/// reads and writes of its VM's TCB registers).
pub fn call_cap(cap: u64, msg: MessageInfo) -> MessageInfo {
    MessageInfo::from_word(sys_call(cap, msg.to_word()))
}

/// An invocation with `args` in MR0.., returning the error label of the reply.
fn invoke(cap: u64, label: u64, args: &[u64]) -> Result<(), InvocationError> {
    for (i, &arg) in args.iter().enumerate() {
        mr_set(i, arg);
    }
    let reply =
        MessageInfo::from_word(sys_call(cap, MessageInfo::new(label, args.len()).to_word()));
    InvocationError::check(reply.label())
}

/// `seL4_TCB_WriteRegisters(tcb, resume = true, arch_flags = 0, count = 1, {pc})`: MR0 flags,
/// MR1 count, MR2 the first `seL4_UserContext` word (pc).
fn restart_tcb(tcb: u64, entry_ip: usize) -> Result<(), InvocationError> {
    invoke(tcb, TCB_WRITE_REGISTERS, &[1, 1, entry_ip as u64])
}

pub(crate) fn child_restart(id: u8, entry_ip: usize) -> Result<(), InvocationError> {
    restart_tcb(BASE_TCB_CAP + u64::from(id), entry_ip)
}

pub(crate) fn child_stop(id: u8) -> Result<(), InvocationError> {
    invoke(BASE_TCB_CAP + u64::from(id), TCB_SUSPEND, &[])
}

pub(crate) fn child_resume(id: u8) -> Result<(), InvocationError> {
    invoke(BASE_TCB_CAP + u64::from(id), TCB_RESUME, &[])
}

pub(crate) fn vcpu_restart(id: u8, entry_ip: usize) -> Result<(), InvocationError> {
    restart_tcb(BASE_VM_TCB_CAP + u64::from(id), entry_ip)
}

pub(crate) fn vcpu_stop(id: u8) -> Result<(), InvocationError> {
    invoke(BASE_VM_TCB_CAP + u64::from(id), TCB_SUSPEND, &[])
}

pub(crate) fn vcpu_inject_irq(id: u8, mr0: u64) -> Result<(), InvocationError> {
    invoke(BASE_VCPU_CAP + u64::from(id), ARMVCPU_INJECT_IRQ, &[mr0])
}

pub(crate) fn vcpu_ack_vppi(id: u8, irq: u64) -> Result<(), InvocationError> {
    invoke(BASE_VCPU_CAP + u64::from(id), ARMVCPU_ACK_VPPI, &[irq])
}

pub(crate) fn vcpu_read_reg(id: u8, reg: u64) -> Result<u64, InvocationError> {
    invoke(BASE_VCPU_CAP + u64::from(id), ARMVCPU_READ_REG, &[reg])?;
    Ok(mr_get(0))
}

pub(crate) fn vcpu_write_reg(id: u8, reg: u64, value: u64) -> Result<(), InvocationError> {
    invoke(
        BASE_VCPU_CAP + u64::from(id),
        ARMVCPU_WRITE_REG,
        &[reg, value],
    )
}

/// The (cap, msginfo) a deferred action sends.
fn signal_of(action: DeferredAction) -> (u64, u64) {
    match action {
        DeferredAction::Notify(ch) => (BASE_OUTPUT_NOTIFICATION_CAP + u64::from(ch.id()), 0),
        DeferredAction::IrqAck(ch) => (
            BASE_IRQ_CAP + u64::from(ch.id()),
            MessageInfo::new(IRQ_ACK_IRQ, 0).to_word(),
        ),
    }
}

fn decode(badge: u64, info: u64) -> Event {
    let info = MessageInfo::from_word(info);
    // libmicrokit checks the fault bit first.
    if (badge >> BADGE_FAULT_BIT) & 1 != 0 {
        Event::Fault(Child::new((badge & PD_MASK) as u8), info)
    } else if (badge >> BADGE_ENDPOINT_BIT) != 0 {
        Event::Protected(Channel::new((badge & CHANNEL_MASK) as u8), info)
    } else {
        Event::Notified(ChannelSet::from_bits(badge))
    }
}

/// libmicrokit `main` + `handler_loop`.
pub(crate) fn run<H: Handler>() -> ! {
    copy_name();
    // A restarted child keeps the memory of its previous run (only its pc and sp are reset), so a
    // deferred action that run left pending must not leak into this one.
    let _stale = deferred::take();
    let mut handler = H::init();

    let mut signal = deferred::take().map(signal_of);
    if pd_is_passive() {
        // libmicrokit overwrites a deferred action made in `init` with the passive hand-off and so
        // loses it; send it first instead. The hand-off (label 0 on MONITOR_EP) is fused with the
        // first receive so the monitor only rebinds the SC once this PD waits on its endpoint.
        if let Some((cap, info)) = signal.take() {
            sys_send(cap, info);
        }
        signal = Some((MONITOR_EP, 0));
    }

    // Ack every IRQ once at start-up (libmicrokit's workaround for seL4 issue #1536).
    for ch in ChannelSet::from_bits(irq_mask()) {
        irq_ack(ch.id());
    }

    let mut reply: Option<MessageInfo> = None;
    loop {
        let pending = signal.take().or_else(|| deferred::take().map(signal_of));
        let (badge, info) = match (reply.take(), pending) {
            (Some(reply), pending) => {
                if let Some((cap, info)) = pending {
                    sys_send(cap, info);
                }
                sys_reply_recv(INPUT_CAP, reply.to_word(), REPLY_CAP)
            }
            (None, Some((cap, info))) => sys_nb_send_recv(cap, info, INPUT_CAP, REPLY_CAP),
            (None, None) => sys_recv(INPUT_CAP, REPLY_CAP),
        };
        reply = dispatch(&mut handler, decode(badge, info));
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::debug_print!("{}: {}\n", pd_name(), info);
    loop {
        // SAFETY: `udf` raises an undefined-instruction exception: the kernel turns it into a
        // UserException fault for the parent or monitor, which is how a PD reports a crash.
        unsafe { asm!("udf #0", options(nomem, nostack)) };
    }
}
