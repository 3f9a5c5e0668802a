//! What both demos share about processes: errors, Ctrl-C / SIGTERM handling, running commands,
//! waiting for children, root and the unprivileged user namespace.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT / SIGTERM; every wait checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A failed demo step (`netvm demo` and `netvm sel4-demo`; the caller prefixes its name).
#[derive(Debug)]
pub struct DemoError(pub String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, DemoError>;

pub(crate) fn err(what: impl std::fmt::Display) -> DemoError {
    DemoError(what.to_string())
}

pub(crate) fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err(err("interrupted"))
    } else {
        Ok(())
    }
}

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set [`INTERRUPTED`] instead of killing the process, so the
/// tear-down runs.
pub(crate) fn catch_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        #[allow(unsafe_code)]
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| err(format!("sigaction: {e}")))?;
    }
    Ok(())
}

pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().map_err(|e| err(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

pub(crate) fn ip(args: &[&str]) -> Result<()> {
    run_cmd(Command::new("ip").args(args))
}

pub(crate) fn wait_child(
    child: &mut Child,
    what: &str,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Err(e) = check_interrupt() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        if let Some(status) = child.try_wait().map_err(|e| err(format!("{what}: {e}")))? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(err(format!("{what} did not finish within {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates `dir` if needed and checks that files can be written in it, so a run does not fail
/// after its sweeps (for example on a folder an earlier root run left behind).
pub fn check_writable(dir: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create {}: {e} (pass --out DIR)", dir.display()))?;
    let probe = dir.join(format!(".netvm-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "cannot write to {}: {e} (an earlier run as another user? pass --out DIR)",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Whether this process is root (in its user namespace).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Set in the re-executed demo inside its user namespace (so it never re-executes twice).
pub const USERNS_ENV: &str = "NETVM_DEMO_USERNS";

/// For a user who is not root: runs this same command again inside a new unprivileged user
/// namespace (util-linux `unshare --user --map-root-user`) with its own mount and network
/// namespaces and a private `/run`, where it is root for everything the demo creates: network
/// namespaces, veth pairs, raw sockets. Returns `None` when that is not possible here (already
/// inside one, or the kernel or `unshare` refuses), so the caller reports the need for root.
pub fn run_in_user_namespace() -> Option<std::process::ExitStatus> {
    if std::env::var_os(USERNS_ENV).is_some() {
        return None;
    }
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    tracing::info!("netvm: not root: running in an unprivileged user namespace");
    Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--net",
            "--propagation",
            "slave",
            "sh",
            "-c",
            // `ip netns` keeps its namespaces under /run/netns: a private /run to write there.
            "mount -t tmpfs tmpfs /run && exec \"$0\" \"$@\"",
        ])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(USERNS_ENV, "1")
        .status()
        .ok()
}
