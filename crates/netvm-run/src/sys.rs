//! The one module that opts back into `unsafe`: the pre-exec set-up of PD processes (`prctl`,
//! `sigprocmask` between fork and exec), through `nix`. `CommandExt::pre_exec` itself is the
//! unsafe part. The benchmark's clock is `netvm_bench::clock`, the mappings of region files
//! `netvm_observe::MappedFile`, and batched datagram I/O (`recvmmsg`/`sendmmsg`) lives with the
//! kernel echo, in `kernel_echo::batch`.
#![allow(unsafe_code)]

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::{getppid, Pid};

/// Prepares `cmd` (a PD process) to die with the runner and to start with no blocked signals.
///
/// `PR_SET_PDEATHSIG` makes the kernel SIGKILL the PD when the thread that forked it exits
/// (the runner's supervisor thread lives as long as the system), so a runner killed outright
/// leaves no PDs behind; it survives the PD's own re-exec on restart. The signal mask is
/// cleared because a runner that blocks SIGINT/SIGTERM to `sigwait` for them would otherwise
/// pass that mask on through `exec`.
pub fn die_with_runner(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let runner = Pid::this();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: nix's prctl, getppid, sigemptyset and sigprocmask wrappers are thin
    // calls of those (no allocation, no locks); it captures only a copied integer.
    unsafe {
        cmd.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL)?;
            // The runner may have died between fork and prctl: then nobody would kill us.
            if getppid() != runner {
                return Err(std::io::Error::other("the runner exited during start-up"));
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            Ok(())
        })
    };
}
