//! The host-mode runner behind `netvm run`: a Microkit system in host mode, every PD a Linux
//! process.
//!
//! # What the runner does (ARCHITECTURE.md §5; the PD side is `microkit::host`)
//!
//! 1. Parses and validates the SDF with the `sdf` crate (errors are `file:line:col: ...`).
//! 2. Plans the system ([`Plan`]): PDs in Microkit's depth-first order (= control-region index
//!    and monitor badge - 1), the host executable of each (`program_image path="foo.elf"` →
//!    `<bin-dir>/foo`), one backing file per memory region, and each PD's manifest: its maps
//!    with SDF vaddr and perms (a PD is told only about regions it maps), channel ends,
//!    irqs, children/parent, setvar values computed as the Microkit tool computes them, and
//!    config sections from [`SectionProvider`]s.
//! 3. Creates everything before any PD runs: a private run directory (`/dev/shm/netvm-run.*`,
//!    mode 0700), the control region, region files sized to the regions (prefilled where the
//!    SDF says so) and the manifests. Then starts the PDs, highest priority first (the order
//!    in which seL4 would run their `init`s on one core). A notification or PPC sent to a PD
//!    that has not reached its event loop waits in its control record, as it would wait in
//!    its seL4 notification or endpoint.
//! 4. Supervises: forwards PD output to the console ([`console`]), prints
//!    `MON|INFO: PD '<name>' is now passive!` when a passive PD first blocks in its event loop
//!    (i.e. its `init` returned), and reports a PD that faults (top-level PDs: `MON|ERROR: PD
//!    '<name>' faulted: ...` from its control record) or exits or dies. Child faults go to the
//!    parent's `fault` handler inside the PD runtime; the runner is not involved.
//!    With [`OnFault::Stop`] the first such event tears the system down; with
//!    [`OnFault::Restart`] the PD is started again (`MON|INFO: PD '<name>' restarted (<k> of
//!    <n>)`), up to a limit.
//! 5. Tears down on [`System::stop`], a failure, or the timeout: SIGKILL to every PD's process
//!    group (each PD is a group leader, so anything it forked goes too), reap, remove the run
//!    directory. PDs also get `PR_SET_PDEATHSIG`, so they die if the runner is killed outright.
//!
//! The runner never trusts the control region: pids come from its own `fork`s, and a record
//! scribbled over by a hostile PD can only change the details printed for that PD's fault.
//!
//! Host-mode limits, by necessity: every PD runs as the same user, so a PD could open another
//! region's file in the run directory (it is told only its own paths); there are no physical
//! addresses (regions without `phys_addr` get bookkeeping addresses from 0x4000_0000 upward,
//! which `<setvar region_paddr>` sees); virtual machines are not run.

#![deny(unsafe_code)]

pub mod console;
mod plan;
mod rundir;
pub mod sections;
mod supervisor;
mod sys;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use microkit::host::control::ControlError;
use microkit::host::manifest::ManifestError;
use nix::sys::signal::Signal;

pub use console::{ConsoleLine, OutputMode, Stream, WaitError};
pub use plan::{DriverVmHost, PdPlan, Plan, RegionPlan, DRIVER_HOST_SECTION};
pub use sections::{
    PlannedSections, SdfgenDir, Section, SectionDir, SectionError, SectionProvider, StaticSections,
};
pub use supervisor::{FailureKind, Outcome, PdFailure, StopReason};

/// What to do when a PD faults, exits or dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnFault {
    /// Report it and tear the whole system down.
    #[default]
    Stop,
    /// Report it and keep the other PDs running (the run ends when none is left).
    Continue,
    /// Report it and start the PD again: its image re-executes from the start with the same
    /// manifest, finding its memory regions as they were (so a client of the net system
    /// reconnects through `netvm_api::reconnect`), its channels and its control record, pending
    /// notifications included, as a restarted seL4 thread finds its notification object. A PD
    /// that fails again after `max_restarts` restarts tears the system down as with
    /// [`OnFault::Stop`]. Restarted failures are reported on the console but do not make the
    /// run [`Outcome::Failed`].
    Restart {
        /// Restarts allowed per PD over the run.
        max_restarts: u32,
    },
}

/// How to run a system.
pub struct RunOptions {
    /// The SDF.
    pub system: PathBuf,
    /// Where the PD executables are.
    pub bin_dir: PathBuf,
    /// Where the run directory is created (a tmpfs: region files are shared memory).
    pub shm_dir: PathBuf,
    /// Config-section sources, applied in order.
    pub sections: Vec<Box<dyn SectionProvider>>,
    /// How PD output is printed.
    pub output: OutputMode,
    /// Reaction to a PD failure.
    pub on_fault: OnFault,
    /// Stop the system (cleanly) after this long.
    pub timeout: Option<Duration>,
    /// Stand in for a driver VM with a host process on a network interface.
    pub driver_vm: Option<DriverVmHost>,
    /// Directory for the virtualisers' pcap files (`netvm_api::tap::PCAP_ENV` in every PD's
    /// environment): `driver-rx`/`-tx` and `client<i>-rx`/`-tx`.
    pub pcap: Option<PathBuf>,
}

impl RunOptions {
    /// Defaults for `system`: executables next to the running program ([`default_bin_dir`]),
    /// run directory in `/dev/shm`, no sections, prefixed output, stop on fault, no timeout.
    pub fn new(system: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            system: system.into(),
            bin_dir: default_bin_dir(),
            shm_dir: PathBuf::from("/dev/shm"),
            sections: Vec::new(),
            output: OutputMode::Prefixed,
            on_fault: OnFault::Stop,
            timeout: None,
            driver_vm: None,
            pcap: None,
        }
    }
}

/// The directory of the running executable (for `netvm`, `target/<profile>/`, where cargo also
/// puts the PD executables of the workspace).
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Why a system could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The system description is invalid (`file:line:col: ...`).
    #[error("{0}")]
    Sdf(#[from] sdf::SdfError),
    /// A PD's executable is missing.
    #[error(
        "{at}: PD '{pd}': executable {} for program_image '{}': {why} \
         (build the host PDs, or pass --bin-dir)",
        path.display(), image.display()
    )]
    MissingExecutable {
        /// Position of the `program_image`.
        at: String,
        /// The PD.
        pd: String,
        /// The SDF's image path.
        image: PathBuf,
        /// The path tried.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The driver VM cannot be stood in for in host mode.
    #[error("driver VM of PD '{pd}': {why}")]
    DriverVm {
        /// The VMM PD.
        pd: String,
        /// What is missing.
        why: String,
    },
    /// A region's prefill file cannot be used.
    #[error("memory region '{mr}': prefill file {}: {why}", path.display())]
    Prefill {
        /// The region.
        mr: String,
        /// The prefill path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A section provider failed.
    #[error(transparent)]
    Sections(#[from] SectionError),
    /// A provider gave a section for a PD the system does not have.
    #[error("config sections from {origin}: section '{section}' for PD '{pd}', which is not in the system")]
    SectionUnknownPd {
        /// The PD name given.
        pd: String,
        /// The section.
        section: String,
        /// The provider.
        origin: String,
    },
    /// Two providers (or one, twice) gave the same section of a PD.
    #[error("config sections from {origin}: section '{section}' of PD '{pd}' given twice")]
    DuplicateSection {
        /// The PD.
        pd: String,
        /// The section.
        section: String,
        /// The provider that gave it the second time.
        origin: String,
    },
    /// PDs declare config sections that no option gives.
    #[error(
        "no config for {}: derive the sDDF net configs with --net-macs @system.macs (and the \
         echo servers' addresses with --echo-ips, e.g. client0=10.0.0.10/24,client1=dhcp), or \
         take sdfgen's with --sdfgen-dir DIR, or give every section with --sections DIR",
        missing.join(", ")
    )]
    MissingConfig {
        /// `PD 'x' section '.y'`, one per missing section.
        missing: Vec<String>,
    },
    /// A manifest would be rejected by the PD.
    #[error("PD '{pd}': {source}")]
    Manifest {
        /// The PD.
        pd: String,
        /// The manifest problem.
        source: ManifestError,
    },
    /// The run directory or a file in it cannot be created.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The control region cannot be created.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A PD process cannot be started.
    #[error("PD '{pd}': cannot start {}: {source}", path.display())]
    Spawn {
        /// The PD.
        pd: String,
        /// Its executable.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The supervisor thread cannot be started.
    #[error("cannot start the supervisor thread: {0}")]
    Thread(std::io::Error),
    /// No PD of that name.
    #[error("no PD '{0}' in the system")]
    UnknownPd(String),
    /// The PD has no `<irq>` with that channel id.
    #[error("PD '{pd}' has no irq with id {id}")]
    UnknownIrq {
        /// The PD.
        pd: String,
        /// The id asked for.
        id: u8,
    },
    /// The PD's process is no longer running.
    #[error("PD '{0}' is not running")]
    NotRunning(String),
    /// A signal cannot be sent.
    #[error("PD '{pd}': cannot send {signal}: {errno}")]
    Signal {
        /// The PD.
        pd: String,
        /// The signal.
        signal: Signal,
        /// Why.
        errno: nix::errno::Errno,
    },
}

impl RunError {
    /// The exit status `netvm run` uses for this error: 2 (a configuration or start-up
    /// problem) for everything that can happen before the PDs run, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::UnknownPd(_)
            | RunError::UnknownIrq { .. }
            | RunError::NotRunning(_)
            | RunError::Signal { .. } => 1,
            _ => 2,
        }
    }
}

/// Reads, validates and plans the system of `opts` without creating anything (the run
/// directory is the name the next run would use): for `--dry-run` and for callers that want
/// the manifests.
pub fn plan(opts: &RunOptions) -> Result<Plan, RunError> {
    let system = sdf::parse(&opts.system, sdf::Arch::Aarch64)?;
    Plan::new(
        &system,
        &opts.system,
        &opts.bin_dir,
        &rundir::next_path(&opts.shm_dir),
        &opts.sections,
        opts.driver_vm.as_ref(),
    )
}

/// A running system. Dropping it stops it.
pub struct System {
    inner: Arc<supervisor::Inner>,
}

impl System {
    /// Validates, plans and creates the system of `opts` and starts every PD.
    pub fn start(opts: RunOptions) -> Result<System, RunError> {
        let system = sdf::parse(&opts.system, sdf::Arch::Aarch64)?;
        let run_dir = rundir::RunDir::create(&opts.shm_dir).map_err(|source| RunError::Create {
            path: opts.shm_dir.clone(),
            source,
        })?;
        let plan = Plan::new(
            &system,
            &opts.system,
            &opts.bin_dir,
            run_dir.path(),
            &opts.sections,
            opts.driver_vm.as_ref(),
        )?;
        let inner = supervisor::start(plan, run_dir, &opts)?;
        Ok(System { inner })
    }

    /// The plan the system runs (PDs, regions, manifests).
    pub fn plan(&self) -> &Plan {
        &self.inner.plan
    }

    /// The run directory (control region, region files, manifests); gone after the stop.
    pub fn run_dir(&self) -> &Path {
        &self.inner.plan.run_dir
    }

    /// The process id of PD `name` while its process runs (a restarted child PD keeps its pid:
    /// it re-executes itself).
    pub fn pd_pid(&self, name: &str) -> Option<u32> {
        self.inner.pid(name)
    }

    /// Sends `signal` to PD `name` (fault injection). The runner then sees what the PD does
    /// with it, like any other death or fault.
    pub fn kill(&self, name: &str, signal: Signal) -> Result<(), RunError> {
        self.inner.kill(name, signal)
    }

    /// Posts the notification of PD `pd`'s `<irq id=...>` (host mode has no interrupts: this
    /// is how a device stand-in raises one).
    pub fn post_irq(&self, pd: &str, id: u8) -> Result<(), RunError> {
        self.inner.post_irq(pd, id)
    }

    /// The first console line (from the start of the run) for which `pred` holds, waiting up
    /// to `timeout`; fails early once the system has stopped.
    pub fn wait_line(
        &self,
        pred: impl FnMut(&ConsoleLine) -> bool,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        self.inner.console.wait_line(0, pred, timeout)
    }

    /// As [`System::wait_line`], for lines with an index ≥ `from` (e.g. the line after one
    /// already seen).
    pub fn wait_line_from(
        &self,
        from: usize,
        pred: impl FnMut(&ConsoleLine) -> bool,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        self.inner.console.wait_line(from, pred, timeout)
    }

    /// Every console line so far.
    pub fn console_lines(&self) -> Vec<ConsoleLine> {
        self.inner.console.lines()
    }

    /// Waits up to `timeout` (forever if `None`) for the system to end by itself (a PD failure,
    /// or the run's own timeout); `None` if it is still running.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Outcome> {
        self.inner.wait(timeout)
    }

    /// Stops the system (if it has not ended already) and returns how it ended. Idempotent.
    pub fn stop(&self) -> Outcome {
        self.inner.stop()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.inner.stop();
    }
}
