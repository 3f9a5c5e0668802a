//! Creating the planned system, starting its PD processes, watching them and tearing down.
//!
//! One supervisor thread per system does every `fork`, `wait` and kill-on-tear-down, so a PD's
//! pid is never signalled after it was reaped (no pid-reuse race: other threads signal a PD
//! only while holding the lock under which it is reaped), and `PR_SET_PDEATHSIG`, which fires
//! when the *thread* that forked a process exits, holds for the life of the system.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use microkit::fault_label;
use microkit::host::control::{ControlRegion, PdRecord};
use microkit::host::manifest::MANIFEST_ENV;
use microkit::host::EXIT_STARTUP_FAILED;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::console::{Console, Stream};
use super::plan::{Plan, RegionPlan};
use super::rundir::RunDir;
use super::{OnFault, RunError, RunOptions};

/// How often the supervisor looks at its PDs.
const POLL: Duration = Duration::from_millis(10);
/// How long tear-down waits for the last PD output to be read.
const DRAIN: Duration = Duration::from_secs(2);

/// Why a system stopped without any PD failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// [`super::System::stop`] (e.g. on SIGINT/SIGTERM in `netvm run`).
    Requested,
    /// The run's timeout passed.
    Timeout,
}

/// How a PD failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A top-level PD faulted: its control record holds the seL4-style fault message, and it
    /// exited with `128 + signal` for the signal the fault implies (SIGSEGV/SIGBUS for a
    /// VMFault, the recorded number for a UserException).
    Faulted {
        /// seL4 fault label (6 VMFault, 3 UserException...).
        label: u64,
        /// The first fault message registers (VMFault: ip, address; UserException: ip, sp).
        mrs: [u64; 5],
        /// Exit status.
        status: i32,
    },
    /// The PD runtime could not start (bad manifest, region, setvar or section; status 2).
    StartupFailed,
    /// The process exited with this status.
    Exited(i32),
    /// The process was killed by this signal.
    Killed(i32),
}

/// A PD that faulted, exited or died.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdFailure {
    /// The PD's name.
    pub pd: String,
    /// What happened.
    pub kind: FailureKind,
}

impl fmt::Display for PdFailure {
    /// The monitor's report, e.g. `MON|ERROR: PD 'client' faulted: VMFault ip=0x... fault_addr=0x...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pd = &self.pd;
        match self.kind {
            FailureKind::Faulted { label, mrs, status } => {
                write!(f, "MON|ERROR: PD '{pd}' faulted: ")?;
                match label {
                    fault_label::VM_FAULT => write!(
                        f,
                        "VMFault ip={:#x} fault_addr={:#x} prefetch={}",
                        mrs[0], mrs[1], mrs[2]
                    )?,
                    fault_label::USER_EXCEPTION => write!(
                        f,
                        "UserException ip={:#x} sp={:#x} number={} code={}",
                        mrs[0], mrs[1], mrs[3], mrs[4]
                    )?,
                    other => write!(
                        f,
                        "fault label {other} mr0={:#x} mr1={:#x}",
                        mrs[0], mrs[1]
                    )?,
                }
                write!(f, " (exit status {status})")
            }
            FailureKind::StartupFailed => write!(
                f,
                "MON|ERROR: PD '{pd}' failed to start (exit status {EXIT_STARTUP_FAILED}; its message is above)"
            ),
            FailureKind::Exited(code) => {
                write!(f, "MON|ERROR: PD '{pd}' exited unexpectedly with status {code}")
            }
            FailureKind::Killed(sig) => {
                let name = Signal::try_from(sig).map_or("?", Signal::as_str);
                write!(f, "MON|ERROR: PD '{pd}' was killed by signal {sig} ({name})")
            }
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped with every PD healthy.
    Stopped(StopReason),
    /// These PDs failed (in the order they did).
    Failed(Vec<PdFailure>),
}

impl Outcome {
    /// `netvm run`'s exit status: 0 for a clean stop, 1 when a PD failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Stopped(_) => 0,
            Outcome::Failed(_) => 1,
        }
    }
}

/// One PD process.
struct Proc {
    /// `None` once reaped.
    child: Option<Child>,
    pid: u32,
    passive_reported: bool,
}

#[derive(Default)]
struct RunState {
    stop_requested: bool,
    outcome: Option<Outcome>,
}

/// The shared state of a running system.
pub(crate) struct Inner {
    pub(crate) plan: Plan,
    pub(crate) console: Arc<Console>,
    control: ControlRegion,
    on_fault: OnFault,
    deadline: Option<Instant>,
    pcap: Option<std::path::PathBuf>,
    /// Indexed like `plan.pds` once the supervisor starts the PDs.
    procs: Mutex<Vec<Proc>>,
    state: Mutex<RunState>,
    changed: Condvar,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic (single assignments), so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Leaves what an observer (`netvm stats`) needs in the run directory: a copy of the system
/// description and [`netvm_observe::host::INDEX`], one line per region: file name, size, region name.
fn write_index(plan: &Plan, sdf: &std::path::Path) -> Result<(), RunError> {
    let create = |path: std::path::PathBuf, source| RunError::Create { path, source };
    let copy = plan.run_dir.join(netvm_observe::host::SYSTEM_COPY);
    std::fs::copy(sdf, &copy).map_err(|e| create(copy.clone(), e))?;
    let mut index = String::new();
    for r in &plan.regions {
        let file = r.file.file_name().unwrap_or_default().to_string_lossy();
        index.push_str(&format!("{file}\t{:#x}\t{}\n", r.size, r.name));
    }
    let path = plan.run_dir.join(netvm_observe::host::INDEX);
    std::fs::write(&path, index).map_err(|e| create(path.clone(), e))
}

/// Creates the control region, region files and manifests of `plan`, then starts the
/// supervisor, which starts the PDs.
pub(crate) fn start(
    plan: Plan,
    run_dir: RunDir,
    opts: &RunOptions,
) -> Result<Arc<Inner>, RunError> {
    let control = ControlRegion::create(&plan.control, plan.pds.len())?;
    for region in &plan.regions {
        create_region(region)?;
    }
    write_index(&plan, &opts.system)?;
    for pd in &plan.pds {
        pd.manifest
            .write(&pd.manifest_path)
            .map_err(|source| RunError::Manifest {
                pd: pd.name().to_string(),
                source,
            })?;
    }
    let console = Arc::new(Console::new(opts.output));
    for warning in &plan.warnings {
        console.monitor(&format!("netvm run: warning: {warning}"));
    }
    let inner = Arc::new(Inner {
        plan,
        console,
        control,
        on_fault: opts.on_fault,
        deadline: opts.timeout.map(|t| Instant::now() + t),
        pcap: opts.pcap.clone(),
        procs: Mutex::new(Vec::new()),
        state: Mutex::new(RunState::default()),
        changed: Condvar::new(),
        supervisor: Mutex::new(None),
    });
    let (started_tx, started_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("netvm-supervisor".into())
        .spawn({
            let inner = inner.clone();
            move || supervise(&inner, run_dir, started_tx)
        })
        .map_err(RunError::Thread)?;
    *relock(&inner.supervisor) = Some(handle);
    match started_rx.recv() {
        Ok(Ok(())) => Ok(inner),
        Ok(Err(e)) => {
            inner.stop();
            Err(e)
        }
        // The supervisor cannot end without answering, except by panicking.
        Err(_) => {
            inner.stop();
            Err(RunError::Thread(io::Error::other(
                "supervisor thread panicked",
            )))
        }
    }
}

fn create_region(region: &RegionPlan) -> Result<(), RunError> {
    let err = |source| RunError::Create {
        path: region.file.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&region.file)
        .map_err(err)?;
    if let Some(prefill) = &region.prefill {
        let mut src = fs::File::open(prefill).map_err(|e| RunError::Prefill {
            mr: region.name.clone(),
            path: prefill.clone(),
            why: e.to_string(),
        })?;
        io::copy(&mut src, &mut file).map_err(err)?;
    }
    // After the copy, so a prefill file that grew since planning still cannot enlarge the region.
    file.set_len(region.size).map_err(err)
}

/// The supervisor thread: starts the PDs, then watches them until the end of the run.
fn supervise(inner: &Inner, mut run_dir: RunDir, started: mpsc::Sender<Result<(), RunError>>) {
    if let Err(e) = spawn_all(inner) {
        tear_down(inner, &mut run_dir, Outcome::Stopped(StopReason::Requested));
        let _ = started.send(Err(e));
        return;
    }
    let _ = started.send(Ok(()));
    let mut failures = Vec::new();
    let mut restarts = vec![0u32; inner.plan.pds.len()];
    let end = loop {
        {
            let state = relock(&inner.state);
            let state = inner
                .changed
                .wait_timeout_while(state, POLL, |s| !s.stop_requested)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if state.stop_requested {
                break StopReason::Requested;
            }
        }
        if inner.deadline.is_some_and(|d| Instant::now() >= d) {
            break StopReason::Timeout;
        }
        let (new_failures, mut running) = poll(inner);
        for (index, failure) in new_failures {
            inner.console.monitor(&failure.to_string());
            if let OnFault::Restart { max_restarts } = inner.on_fault {
                if restart(inner, index, &mut restarts[index], max_restarts) {
                    running += 1;
                    continue;
                }
            }
            failures.push(failure);
        }
        if !failures.is_empty() && (inner.on_fault != OnFault::Continue || running == 0) {
            break StopReason::Requested;
        }
    };
    let outcome = if failures.is_empty() {
        Outcome::Stopped(end)
    } else {
        Outcome::Failed(failures)
    };
    tear_down(inner, &mut run_dir, outcome);
}

/// Starts every PD, highest priority first, into `inner.procs` (so that tear-down finds every
/// one that did start if a later one fails).
fn spawn_all(inner: &Inner) -> Result<(), RunError> {
    let pds = &inner.plan.pds;
    *relock(&inner.procs) = (0..pds.len())
        .map(|_| Proc {
            child: None,
            pid: 0,
            passive_reported: false,
        })
        .collect();
    let mut order: Vec<usize> = (0..pds.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pds[i].priority));
    for i in order {
        let proc = spawn_pd(inner, i)?;
        relock(&inner.procs)[i] = proc;
    }
    Ok(())
}

fn spawn_pd(inner: &Inner, index: usize) -> Result<Proc, RunError> {
    let pd = &inner.plan.pds[index];
    let mut cmd = Command::new(&pd.executable);
    if let Some(dir) = &inner.pcap {
        cmd.env(netvm_api::tap::PCAP_ENV, dir);
    }
    cmd.env(MANIFEST_ENV, &pd.manifest_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: Ctrl-C in a terminal reaches the runner only (which then
        // tears down in order), and tear-down can kill whatever the PD forked.
        .process_group(0);
    crate::sys::die_with_runner(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        pd: pd.name().to_string(),
        path: pd.executable.clone(),
        source,
    })?;
    let pid = child.id();
    let pipes = [
        child
            .stdout
            .take()
            .map(|p| (Stream::Stdout, Box::new(p) as Box<dyn io::Read + Send>)),
        child
            .stderr
            .take()
            .map(|p| (Stream::Stderr, Box::new(p) as Box<dyn io::Read + Send>)),
    ];
    let proc = Proc {
        child: Some(child),
        pid,
        passive_reported: false,
    };
    for (stream, pipe) in pipes.into_iter().flatten() {
        let console = inner.console.clone();
        let name = pd.name().to_string();
        console.attach_reader();
        let spawned = std::thread::Builder::new()
            .name(format!("pd-output-{name}"))
            .spawn(move || console.forward(&name, stream, pipe));
        if let Err(e) = spawned {
            // Tear-down of the returned set will not include this PD: end it here.
            kill_proc(&proc);
            if let Some(mut child) = proc.child {
                let _ = child.wait();
            }
            return Err(RunError::Thread(e));
        }
    }
    Ok(proc)
}

/// Starts PD `index` again after it failed, if it has restarts left (`done` so far of `max`);
/// `false` when the failure stands.
fn restart(inner: &Inner, index: usize, done: &mut u32, max: u32) -> bool {
    let name = inner.plan.pds[index].name();
    if *done >= max {
        inner.console.monitor(&format!(
            "MON|ERROR: PD '{name}' failed after {max} restarts: not restarted again"
        ));
        return false;
    }
    match spawn_pd(inner, index) {
        Ok(proc) => {
            *done += 1;
            relock(&inner.procs)[index] = proc;
            inner.console.monitor(&format!(
                "MON|INFO: PD '{name}' restarted ({} of {max})",
                *done
            ));
            true
        }
        Err(e) => {
            inner
                .console
                .monitor(&format!("MON|ERROR: PD '{name}' cannot be restarted: {e}"));
            false
        }
    }
}

/// Reaps exited PDs and reports passive hand-offs. Returns the new failures (with the PD's
/// index) and how many PDs still run.
fn poll(inner: &Inner) -> (Vec<(usize, PdFailure)>, usize) {
    let mut failures = Vec::new();
    let mut running = 0;
    let mut procs = relock(&inner.procs);
    for (i, proc) in procs.iter_mut().enumerate() {
        let pd = &inner.plan.pds[i];
        let record = inner.control.record(i);
        let Some(child) = proc.child.as_mut() else {
            continue;
        };
        if exited(proc.pid) {
            // Its process group goes with it (whatever it forked), killed while the PD is a
            // zombie so that the group's id cannot have been reused.
            kill_group(proc.pid);
        }
        match child.try_wait() {
            Ok(None) => {
                running += 1;
                // `sleeping` is first set when the PD's event loop blocks, i.e. after `init`.
                if pd.manifest.passive
                    && !proc.passive_reported
                    && record.is_some_and(|r| r.sleeping.load(Ordering::SeqCst) != 0)
                {
                    proc.passive_reported = true;
                    inner
                        .console
                        .monitor(&format!("MON|INFO: PD '{}' is now passive!", pd.name()));
                }
            }
            Ok(Some(status)) => {
                proc.child = None;
                failures.push((
                    i,
                    PdFailure {
                        pd: pd.name().to_string(),
                        kind: classify(status, record),
                    },
                ));
            }
            // ECHILD cannot happen for our own unreaped child; count it as running and let
            // tear-down kill it.
            Err(_) => running += 1,
        }
    }
    (failures, running)
}

/// What an exit status (and the PD's control record, for faults) says happened.
fn classify(status: ExitStatus, record: Option<&PdRecord>) -> FailureKind {
    if let Some(signal) = status.signal() {
        return FailureKind::Killed(signal);
    }
    let code = status.code().unwrap_or(-1);
    // The runtime records a top-level fault, then exits with 128 + the signal behind it. The
    // record is the PD's own memory: believe it only when it agrees with the exit status.
    if let Some(fault) = record.and_then(PdRecord::fault) {
        let signal_of_fault = match fault.label {
            fault_label::VM_FAULT => [libc::SIGSEGV, libc::SIGBUS]
                .into_iter()
                .find(|&s| code == 128 + s),
            fault_label::USER_EXCEPTION => i32::try_from(fault.mrs[3]).ok(),
            _ => None,
        };
        if signal_of_fault.is_some_and(|s| code == 128 + s) {
            let mut mrs = [0; 5];
            mrs.copy_from_slice(&fault.mrs[..5]);
            return FailureKind::Faulted {
                label: fault.label,
                mrs,
                status: code,
            };
        }
    }
    if code == EXIT_STARTUP_FAILED {
        FailureKind::StartupFailed
    } else {
        FailureKind::Exited(code)
    }
}

/// Whether our unreaped child `pid` has exited, without reaping it.
fn exited(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(
        waitid(Id::Pid(Pid::from_raw(pid)), flags),
        Ok(WaitStatus::StillAlive) | Err(_)
    )
}

/// SIGKILLs the process group led by PD `pid` (the PD and anything it forked). The caller
/// has not reaped the PD yet, so the group id is still the PD's. Errors mean nothing is left.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn kill_proc(proc: &Proc) {
    kill_group(proc.pid);
    // The PD itself too, in case it moved to another group.
    if let Ok(pid) = i32::try_from(proc.pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills and reaps every PD, removes the run directory and publishes the outcome.
fn tear_down(inner: &Inner, run_dir: &mut RunDir, outcome: Outcome) {
    {
        let mut procs = relock(&inner.procs);
        for proc in procs.iter_mut() {
            if let Some(mut child) = proc.child.take() {
                kill_proc(proc);
                let _ = child.wait();
            }
        }
    }
    inner.console.finish(DRAIN);
    if let Err(e) = run_dir.remove() {
        inner.console.monitor(&format!(
            "netvm run: cannot remove {}: {e}",
            run_dir.path().display()
        ));
    }
    relock(&inner.state).outcome = Some(outcome);
    inner.changed.notify_all();
}

impl Inner {
    fn index(&self, name: &str) -> Result<usize, RunError> {
        self.plan
            .pd(name)
            .map(|pd| pd.index)
            .ok_or_else(|| RunError::UnknownPd(name.to_string()))
    }

    pub(crate) fn pid(&self, name: &str) -> Option<u32> {
        let index = self.index(name).ok()?;
        let procs = relock(&self.procs);
        let proc = procs.get(index)?;
        proc.child.as_ref().map(|_| proc.pid)
    }

    pub(crate) fn kill(&self, name: &str, signal: Signal) -> Result<(), RunError> {
        let index = self.index(name)?;
        // Held while signalling: the supervisor reaps under this lock, so the pid is still
        // this PD's (at worst a zombie).
        let procs = relock(&self.procs);
        let proc = procs
            .get(index)
            .filter(|p| p.child.is_some())
            .ok_or_else(|| RunError::NotRunning(name.to_string()))?;
        let pid = i32::try_from(proc.pid).map_err(|_| RunError::NotRunning(name.to_string()))?;
        kill(Pid::from_raw(pid), signal).map_err(|errno| RunError::Signal {
            pd: name.to_string(),
            signal,
            errno,
        })
    }

    pub(crate) fn post_irq(&self, name: &str, id: u8) -> Result<(), RunError> {
        let index = self.index(name)?;
        if !self.plan.pds[index]
            .irqs
            .iter()
            .any(|&(irq_id, _)| irq_id == id)
        {
            return Err(RunError::UnknownIrq {
                pd: name.to_string(),
                id,
            });
        }
        if self.pid(name).is_none() {
            return Err(RunError::NotRunning(name.to_string()));
        }
        let record = self
            .control
            .record(index)
            .ok_or_else(|| RunError::UnknownPd(name.to_string()))?;
        record.post_notify(1 << id);
        Ok(())
    }

    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        let state = relock(&self.state);
        let state = match timeout {
            None => self
                .changed
                .wait_while(state, |s| s.outcome.is_none())
                .unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.changed
                    .wait_timeout_while(state, t, |s| s.outcome.is_none())
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        state.outcome.clone()
    }

    pub(crate) fn stop(&self) -> Outcome {
        relock(&self.state).stop_requested = true;
        self.changed.notify_all();
        let handle = relock(&self.supervisor).take();
        let outcome = match handle {
            // The supervisor publishes the outcome before it ends (unless it panicked).
            Some(handle) => {
                let _ = handle.join();
                self.wait(Some(Duration::ZERO))
            }
            // Another caller is joining it: wait for the outcome.
            None => self.wait(None),
        };
        outcome.unwrap_or(Outcome::Stopped(StopReason::Requested))
    }
}
