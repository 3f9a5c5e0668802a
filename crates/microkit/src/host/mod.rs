//! Host backend: every PD is a Linux process started by a host runner.
//!
//! The runner/PD contract is [`manifest`] (what each PD is told) and [`control`] (the shared
//! region through which PDs notify, call and report faults). Semantics kept from Microkit:
//! regions at their SDF vaddrs with their permissions; setvars and config sections patched by
//! name before `init`; notifications coalesce into a badge; a PPC runs the callee's `protected`
//! while the caller blocks; a child's fault goes to its parent's `fault`, which may resume
//! (reply) or restart it.
//!
//! Differences, by necessity: a restart re-executes the child's image from its start (the
//! `entry_ip` argument has no meaning in another process's address space), so its private
//! memory is fresh while shared regions keep their contents; `stop`/`resume` are `SIGSTOP` /
//! `SIGCONT`; `irq_ack` does nothing (a runner simulates IRQs with [`control::PdRecord::post_notify`]);
//! vCPU operations fail with `IllegalOperation`; `passive` has no effect on scheduling; a Rust
//! panic is reported as a UserException fault with number 6 (`SIGABRT`).

pub mod control;
mod image;
pub mod manifest;
mod sys;

use core::fmt::Write as _;
use std::string::String;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use control::{
    ControlRegion, PdRecord, CALL_IDLE, CALL_REPLY, CALL_REQUEST, FAULT_FAULTED, FAULT_MRS,
    FAULT_RESTART, FAULT_RESUME, FAULT_RUNNING,
};
use manifest::{ChannelEnd, Manifest};

use crate::{
    deferred, dispatch, fault_label, Channel, ChannelSet, Child, DeferredAction, Event, Handler,
    InvocationError, MessageInfo, MAX_MESSAGE_REGISTERS,
};

pub use image::ImageError;

/// Number of channel / child ids (0..=61).
const IDS: usize = crate::MAX_CHANNEL_ID as usize + 1;

/// Exit status of a PD that could not start (bad manifest, region, setvar...).
pub const EXIT_STARTUP_FAILED: i32 = 2;

/// The state of this PD process, set once at start-up.
struct Runtime {
    name: String,
    passive: bool,
    index: usize,
    control: ControlRegion,
    channels: [Option<ChannelEnd>; IDS],
    notify_mask: u64,
    pp_mask: u64,
    irq_mask: u64,
    children: [Option<usize>; IDS],
    parent: Option<manifest::ParentLink>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// This PD's message registers (its "IPC buffer"). Atomics only to avoid `static mut`: the PD is
/// single-threaded and every access is relaxed.
static IPC: [AtomicU64; MAX_MESSAGE_REGISTERS] =
    [const { AtomicU64::new(0) }; MAX_MESSAGE_REGISTERS];

/// Errors starting a PD process.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The control region cannot be used.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The manifest's index is outside the control region.
    #[error("PD index {index} is outside the control region ({count} PDs)")]
    Index {
        /// The manifest's index.
        index: usize,
        /// PDs in the control region.
        count: usize,
    },
    /// A region cannot be mapped at its vaddr.
    #[error("cannot map region '{region}' at {vaddr:#x}: {source}")]
    Map {
        /// The region's name.
        region: String,
        /// Its vaddr.
        vaddr: u64,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setvar or config section cannot be patched.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Signal handlers cannot be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

fn runtime() -> &'static Runtime {
    RUNTIME
        .get()
        .expect("microkit host runtime used before microkit::run")
}

fn own_record(rt: &Runtime) -> &PdRecord {
    rt.control
        .record(rt.index)
        .expect("index checked at start-up")
}

fn start(manifest: Manifest) -> Result<Runtime, StartError> {
    let control = ControlRegion::open(&manifest.control)?;
    if manifest.index >= control.pd_count() {
        return Err(StartError::Index {
            index: manifest.index,
            count: control.pd_count(),
        });
    }
    for region in &manifest.regions {
        sys::map_fixed(&region.path, region.vaddr, region.size, region.perms).map_err(
            |source| StartError::Map {
                region: region.name.clone(),
                vaddr: region.vaddr,
                source,
            },
        )?;
    }
    image::patch(&manifest.setvars, &manifest.sections)?;

    let mut channels = [None; IDS];
    let (mut notify_mask, mut pp_mask, mut irq_mask) = (0, 0, 0);
    for end in &manifest.channels {
        channels[usize::from(end.id)] = Some(*end);
        notify_mask |= u64::from(end.notify) << end.id;
        pp_mask |= u64::from(end.pp) << end.id;
    }
    for irq in &manifest.irqs {
        irq_mask |= 1 << irq;
    }
    let mut children = [None; IDS];
    for child in &manifest.children {
        children[usize::from(child.id)] = Some(child.index);
    }
    Ok(Runtime {
        name: manifest.name,
        passive: manifest.passive,
        index: manifest.index,
        control,
        channels,
        notify_mask,
        pp_mask,
        irq_mask,
        children,
        parent: manifest.parent,
    })
}

/// Starts the PD from the manifest in [`manifest::MANIFEST_ENV`] and runs its event loop.
pub(crate) fn run<H: Handler>() -> ! {
    let manifest = match Manifest::from_env() {
        Ok(m) => m,
        Err(e) => {
            std::eprintln!("microkit: {e}");
            std::process::exit(EXIT_STARTUP_FAILED);
        }
    };
    let name = manifest.name.clone();
    let rt = match start(manifest) {
        Ok(rt) => rt,
        Err(e) => {
            std::eprintln!("microkit: PD '{name}': {e}");
            std::process::exit(EXIT_STARTUP_FAILED);
        }
    };
    let rt = RUNTIME.get_or_init(|| rt);
    sys::prepare_exec();
    if let Err(e) = sys::install_signal_handlers() {
        std::eprintln!("microkit: PD '{name}': {}", StartError::Signals(e));
        std::process::exit(EXIT_STARTUP_FAILED);
    }
    std::panic::set_hook(std::boxed::Box::new(|info| {
        std::eprintln!("{}: {info}", crate::pd_name());
        // Like `udf` after a panic on seL4: the PD faults, and faults again if resumed.
        loop {
            let mut mrs = [0; FAULT_MRS];
            mrs[3] = libc::SIGABRT as u64;
            raise_fault(fault_label::USER_EXCEPTION, mrs, libc::SIGABRT);
        }
    }));
    let record = own_record(rt);
    record.fault_state.store(FAULT_RUNNING, Ordering::SeqCst);
    record.pid.store(sys::getpid(), Ordering::SeqCst);

    let mut handler = H::init();
    // A deferred action made in `init` goes out with the first receive, as libmicrokit (and the
    // seL4 backend) send it; dropping it would leave a peer waiting for a notification whose
    // signal flag says it was already sent.
    send_deferred();
    let mut spin = Spin::new();
    loop {
        let event = wait(rt, &mut spin);
        let reply = match &event {
            Event::Fault(child, _) => rt.children[usize::from(child.id())],
            _ => None,
        };
        let is_call = matches!(event, Event::Protected(..));
        let answer = dispatch(&mut handler, event);
        // As libmicrokit: the deferred action goes out before the reply.
        send_deferred();
        if is_call {
            reply_call(own_record(rt), answer.unwrap_or_default());
        } else if let (Some(child_index), Some(_)) = (reply, answer) {
            resume_child(rt, child_index);
        }
    }
}

/// Sends the pending deferred action, if any.
fn send_deferred() {
    if let Some(action) = deferred::take() {
        match action {
            DeferredAction::Notify(ch) => notify(ch.id()),
            DeferredAction::IrqAck(ch) => irq_ack(ch.id()),
        }
    }
}

/// How long a PD polls its record for the next event before it sleeps on its futex. A futex
/// wake-up of a process on another CPU costs the poster a syscall and the sleeper a cross-CPU
/// interrupt; in a VM that is tens of microseconds once the host is busy (a pinned two-CPU
/// ping-pong measured 60–150 µs per round trip sleeping, under 1 µs spinning). Polling for
/// this long catches a peer that answers within its own handler time, and the poster then
/// sees `sleeping == 0` and makes no syscall at all.
const SPIN_LIMIT: Duration = Duration::from_micros(20);
/// Polls between two clock reads (and yields) while spinning, about a microsecond.
const SPIN_POLLS_PER_ROUND: u32 = 16;
/// Upper bound of [`Spin::backoff`].
const SPIN_BACKOFF_MAX: u32 = 256;

/// Whether the next wait spins first. Adaptive, so that spinning costs little where it does
/// not pay (an idle or slowly fed PD, or a peer that shares this PD's CPU and so cannot answer
/// while this PD spins): after a spin that caught nothing, the PD sleeps at once for the next
/// `backoff` waits, and `backoff` doubles with every further miss up to [`SPIN_BACKOFF_MAX`];
/// a spin that catches its event halves it. Once spinning keeps failing, at most one
/// [`SPIN_LIMIT`] is wasted per `SPIN_BACKOFF_MAX` events. While it spins, the PD yields its
/// CPU about every microsecond, so another runnable process on that CPU (on a 2-core machine
/// there usually is one) is not held up by the spin.
struct Spin {
    backoff: u32,
    skip: u32,
}

impl Spin {
    fn new() -> Self {
        Self {
            backoff: 0,
            skip: 0,
        }
    }

    /// Whether this wait should spin first.
    fn should_spin(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// The spin caught its event.
    fn caught(&mut self) {
        self.backoff /= 2;
    }

    /// The spin ran out without an event.
    fn missed(&mut self) {
        self.backoff = (self.backoff * 2).clamp(1, SPIN_BACKOFF_MAX);
        self.skip = self.backoff;
    }
}

/// Blocks until the next event (notifications first, as seL4 delivers a bound notification
/// before endpoint messages; then a PPC; then child faults) and loads its message registers.
///
/// First spins (if [`Spin`] says so) with `sleeping` at 0, then follows the sleep protocol of
/// [`control`]: a post during the spin is either seen by the spin or by the re-check after
/// `sleeping = 1`, so ending the spin cannot lose a wake-up.
fn wait(rt: &Runtime, spin: &mut Spin) -> Event {
    let record = own_record(rt);
    if let Some(event) = poll(rt, record) {
        return event;
    }
    if spin.should_spin() {
        let start = Instant::now();
        loop {
            for _ in 0..SPIN_POLLS_PER_ROUND {
                if record.has_event() {
                    if let Some(event) = poll(rt, record) {
                        spin.caught();
                        return event;
                    }
                }
                core::hint::spin_loop();
            }
            if start.elapsed() >= SPIN_LIMIT {
                break;
            }
            sys::yield_now();
        }
        spin.missed();
    }
    loop {
        let seq = record.event_seq.load(Ordering::SeqCst);
        record.sleeping.store(1, Ordering::SeqCst);
        if let Some(event) = poll(rt, record) {
            record.sleeping.store(0, Ordering::SeqCst);
            return event;
        }
        sys::futex_wait(&record.event_seq, seq);
        record.sleeping.store(0, Ordering::SeqCst);
        if let Some(event) = poll(rt, record) {
            return event;
        }
    }
}

fn poll(rt: &Runtime, record: &PdRecord) -> Option<Event> {
    let bits = record.notify_bits.swap(0, Ordering::SeqCst);
    if bits != 0 {
        return Some(Event::Notified(ChannelSet::from_bits(bits)));
    }
    if record.call_state.load(Ordering::SeqCst) == CALL_REQUEST {
        let info = MessageInfo::from_word(record.call_tag.load(Ordering::SeqCst));
        copy_mrs_in(&record.call_mrs, info.count());
        let ch = record.call_badge.load(Ordering::SeqCst) as u8;
        return Some(Event::Protected(Channel::new(ch), info));
    }
    let faults = record.fault_bits.load(Ordering::SeqCst);
    if faults != 0 {
        let id = faults.trailing_zeros() as u8;
        record.fault_bits.fetch_and(!(1 << id), Ordering::SeqCst);
        let child = rt.children[usize::from(id)].and_then(|i| rt.control.record(i))?;
        let info = MessageInfo::from_word(child.fault_tag.load(Ordering::SeqCst));
        copy_mrs_in(&child.fault_mrs, info.count());
        return Some(Event::Fault(Child::new(id), info));
    }
    None
}

fn copy_mrs_in(src: &[AtomicU64], count: usize) {
    for (dst, src) in IPC.iter().zip(src).take(count) {
        dst.store(src.load(Ordering::SeqCst), Ordering::Relaxed);
    }
}

fn copy_mrs_out(dst: &[AtomicU64], count: usize) {
    for (dst, src) in dst.iter().zip(&IPC).take(count) {
        dst.store(src.load(Ordering::Relaxed), Ordering::SeqCst);
    }
}

fn reply_call(record: &PdRecord, info: MessageInfo) {
    record.call_tag.store(info.to_word(), Ordering::SeqCst);
    copy_mrs_out(&record.call_mrs, info.count());
    record.call_state.store(CALL_REPLY, Ordering::SeqCst);
    sys::futex_wake(&record.call_state, 1);
}

fn resume_child(rt: &Runtime, child_index: usize) {
    if let Some(child) = rt.control.record(child_index) {
        // Fails harmlessly if the handler restarted the child instead.
        if child
            .fault_state
            .compare_exchange(
                FAULT_FAULTED,
                FAULT_RESUME,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            sys::futex_wake(&child.fault_state, 1);
        }
    }
}

/// Records a fault of this PD and blocks like a faulted seL4 thread: returns when the parent
/// replied; re-executes the image when it restarts the PD. A top-level PD reports to the runner
/// and exits with `128 + signo`. Async-signal-safe (atomics, futex, write, execve, _exit).
fn raise_fault(label: u64, mrs: [u64; FAULT_MRS], signo: i32) {
    let Some(rt) = RUNTIME.get() else {
        sys::write_stderr(b"microkit: fault before the PD started\n");
        sys::exit_now(128 + signo);
    };
    let record = own_record(rt);
    record.fault_tag.store(
        MessageInfo::new(label, FAULT_MRS).to_word(),
        Ordering::SeqCst,
    );
    for (slot, value) in record.fault_mrs.iter().zip(mrs) {
        slot.store(value, Ordering::SeqCst);
    }
    if let Err(state) = record.fault_state.compare_exchange(
        FAULT_RUNNING,
        FAULT_FAULTED,
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        if state == FAULT_RESTART {
            sys::exec_self();
        }
        record.fault_state.store(FAULT_FAULTED, Ordering::SeqCst);
    }
    let parent = rt
        .parent
        .and_then(|p| Some((rt.control.record(p.index)?, p.child_id)));
    let Some((parent, child_id)) = parent else {
        let mut line = StackString::<256>::new();
        let _ = writeln!(
            line,
            "MON|ERROR: PD '{}' faulted: label={label} ip={:#x} {}={:#x} signal={signo}",
            rt.name,
            mrs[0],
            if label == fault_label::VM_FAULT {
                "addr"
            } else {
                "sp"
            },
            mrs[1],
        );
        sys::write_stderr(line.as_bytes());
        sys::exit_now(128 + signo);
    };
    parent.fault_bits.fetch_or(1 << child_id, Ordering::SeqCst);
    parent.wake();
    loop {
        match record.fault_state.load(Ordering::SeqCst) {
            FAULT_FAULTED => sys::futex_wait(&record.fault_state, FAULT_FAULTED),
            FAULT_RESTART => sys::exec_self(),
            _ => {
                record.fault_state.store(FAULT_RUNNING, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Called by the fault-signal handler.
fn on_fault_signal(sig: sys::FaultSignal) {
    let mut mrs = [0; FAULT_MRS];
    let label = if sig.signo == libc::SIGSEGV || sig.signo == libc::SIGBUS {
        mrs[..3].copy_from_slice(&[sig.ip, sig.addr, u64::from(sig.ip == sig.addr)]);
        fault_label::VM_FAULT
    } else {
        mrs[..5].copy_from_slice(&[sig.ip, sig.sp, 0, sig.signo as u64, sig.code as u64]);
        fault_label::USER_EXCEPTION
    };
    raise_fault(label, mrs, sig.signo);
}

/// Called by the restart-signal handler: a parent restarted this (running) PD.
fn on_restart_signal() {
    if let Some(rt) = RUNTIME.get() {
        if own_record(rt).fault_state.load(Ordering::SeqCst) == FAULT_RESTART {
            sys::exec_self();
        }
    }
}

/// A fixed-capacity string for formatting inside a signal handler.
struct StackString<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackString<N> {
    fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> core::fmt::Write for StackString<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.len().min(N - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Takes a futex mutex (0 free, 1 taken, 2 taken with waiters).
fn lock(word: &std::sync::atomic::AtomicU32) {
    if word
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        return;
    }
    while word.swap(2, Ordering::SeqCst) != 0 {
        sys::futex_wait(word, 2);
    }
}

fn unlock(word: &std::sync::atomic::AtomicU32) {
    if word.swap(0, Ordering::SeqCst) == 2 {
        sys::futex_wake(word, 1);
    }
}

fn peer(rt: &Runtime, ch: u8) -> Option<(&PdRecord, u8)> {
    let end = rt.channels[usize::from(ch)]?;
    Some((rt.control.record(end.peer)?, end.peer_id))
}

pub(crate) fn notify(ch: u8) {
    let rt = runtime();
    if let Some((record, peer_id)) = peer(rt, ch) {
        record.post_notify(1 << peer_id);
    }
}

pub(crate) fn irq_ack(_ch: u8) {}

pub(crate) fn pp_call(ch: u8, msg: MessageInfo) -> MessageInfo {
    let rt = runtime();
    let Some((callee, peer_id)) = peer(rt, ch) else {
        return MessageInfo::new(0, 0);
    };
    lock(&callee.call_lock);
    callee
        .call_badge
        .store(u64::from(peer_id), Ordering::SeqCst);
    callee.call_tag.store(msg.to_word(), Ordering::SeqCst);
    copy_mrs_out(&callee.call_mrs, msg.count());
    callee.call_state.store(CALL_REQUEST, Ordering::SeqCst);
    callee.wake();
    loop {
        let state = callee.call_state.load(Ordering::SeqCst);
        if state == CALL_REPLY {
            break;
        }
        sys::futex_wait(&callee.call_state, state);
    }
    let reply = MessageInfo::from_word(callee.call_tag.load(Ordering::SeqCst));
    copy_mrs_in(&callee.call_mrs, reply.count());
    callee.call_state.store(CALL_IDLE, Ordering::SeqCst);
    unlock(&callee.call_lock);
    reply
}

fn child_record(rt: &Runtime, id: u8) -> Result<&PdRecord, InvocationError> {
    // seL4 answers an invocation on an empty slot with InvalidCapability.
    rt.children[usize::from(id)]
        .and_then(|i| rt.control.record(i))
        .ok_or(InvocationError(2))
}

fn signal_child(record: &PdRecord, signal: i32) -> Result<(), InvocationError> {
    match record.pid() {
        Some(pid) => sys::kill(pid, signal).map_err(|_| InvocationError::ILLEGAL_OPERATION),
        // Not started yet: it will start from its entry anyway.
        None => Ok(()),
    }
}

/// The functions `crate` calls, with the same signatures as the seL4 backend's.
pub(crate) mod backend {
    use super::*;

    pub(crate) use super::run;

    pub(crate) fn pd_name() -> &'static str {
        RUNTIME.get().map_or("", |rt| rt.name.as_str())
    }

    pub(crate) fn pd_is_passive() -> bool {
        runtime().passive
    }

    pub(crate) fn debug_puts(s: &str) {
        sys::write_stderr(s.as_bytes());
    }

    pub(crate) fn mr_get(index: usize) -> u64 {
        IPC[index].load(Ordering::Relaxed)
    }

    pub(crate) fn mr_set(index: usize, value: u64) {
        IPC[index].store(value, Ordering::Relaxed);
    }

    pub(crate) fn notification_mask() -> u64 {
        runtime().notify_mask
    }

    pub(crate) fn pp_mask() -> u64 {
        runtime().pp_mask
    }

    pub(crate) fn irq_mask() -> u64 {
        runtime().irq_mask
    }

    pub(crate) use super::{irq_ack, notify, pp_call};

    pub(crate) fn child_restart(id: u8, _entry_ip: usize) -> Result<(), InvocationError> {
        let record = child_record(runtime(), id)?;
        if record.fault_state.swap(FAULT_RESTART, Ordering::SeqCst) == FAULT_FAULTED {
            sys::futex_wake(&record.fault_state, 1);
        } else {
            signal_child(record, sys::RESTART_SIGNAL)?;
        }
        // seL4's restart also resumes a suspended TCB.
        signal_child(record, libc::SIGCONT)
    }

    pub(crate) fn child_stop(id: u8) -> Result<(), InvocationError> {
        signal_child(child_record(runtime(), id)?, libc::SIGSTOP)
    }

    pub(crate) fn child_resume(id: u8) -> Result<(), InvocationError> {
        signal_child(child_record(runtime(), id)?, libc::SIGCONT)
    }

    pub(crate) fn vcpu_restart(_id: u8, _entry_ip: usize) -> Result<(), InvocationError> {
        Err(InvocationError::ILLEGAL_OPERATION)
    }

    pub(crate) fn vcpu_stop(_id: u8) -> Result<(), InvocationError> {
        Err(InvocationError::ILLEGAL_OPERATION)
    }

    pub(crate) fn vcpu_inject_irq(_id: u8, _mr0: u64) -> Result<(), InvocationError> {
        Err(InvocationError::ILLEGAL_OPERATION)
    }

    pub(crate) fn vcpu_ack_vppi(_id: u8, _irq: u64) -> Result<(), InvocationError> {
        Err(InvocationError::ILLEGAL_OPERATION)
    }

    pub(crate) fn vcpu_read_reg(_id: u8, _reg: u64) -> Result<u64, InvocationError> {
        Err(InvocationError::ILLEGAL_OPERATION)
    }

    pub(crate) fn vcpu_write_reg(_id: u8, _reg: u64, _value: u64) -> Result<(), InvocationError> {
        Err(InvocationError::ILLEGAL_OPERATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_backs_off_after_misses_and_recovers_after_catches() {
        let mut spin = Spin::new();
        assert!(spin.should_spin(), "a fresh PD spins");
        // Consecutive misses: the sleep-only stretch doubles each time, up to the bound.
        let mut stretches = std::vec::Vec::new();
        for _ in 0..12 {
            spin.missed();
            let mut skipped = 0;
            while !spin.should_spin() {
                skipped += 1;
            }
            stretches.push(skipped);
        }
        assert_eq!(
            stretches,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256, 256],
            "at most one wasted spin per SPIN_BACKOFF_MAX events"
        );
        // Catches halve the backoff: after enough of them a single miss costs one wait.
        for _ in 0..9 {
            spin.caught();
        }
        spin.missed();
        assert!(!spin.should_spin());
        assert!(spin.should_spin());
    }
}
