//! How a netvm test says it cannot run here; [`console`], the console of a child process
//! (QEMU) that the seL4 tests wait on and type into; and, with feature `net`, the data-path
//! rigs (`rig`: virt_rx and virt_tx alone; `pipeline`: the whole pipeline), with feature `uio`
//! the uio-driver core's scripted NIC (`nic`), with feature `microkit` the hello system's
//! host manifests (`hello`); on Linux, a LAN of network namespaces on a bridge (`bridge`): what
//! tests and fuzz targets share.
//!
//! A test that lacks something it needs (root, the Microkit SDK, a tool) calls [`skip`] and
//! returns. That prints a `SKIPPED <test>: <why>` line, appends the same line to the file named
//! by `NETVM_SKIP_LOG` (the test command prints the collected list at the end of every run, since
//! cargo hides the output of tests that pass), and, when `NETVM_NO_SKIP` is set, fails the test
//! instead: in CI a test that cannot run is a failure, not a pass. `scripts/test.sh` sets both;
//! `scripts/test.sh --allow-skip` unsets `NETVM_NO_SKIP` for a user who knowingly runs without
//! some prerequisite, and the run then lists loudly what was not tested.
//!
//! ```no_run
//! if !have_root() {
//!     testkit::skip("host_e2e", "cannot create network namespaces (needs root)");
//!     return;
//! }
//! # fn have_root() -> bool { true }
//! ```

#[cfg(target_os = "linux")]
pub mod bridge;
#[cfg(unix)]
pub mod console;
#[cfg(all(feature = "microkit", target_os = "linux"))]
pub mod hello;
pub mod lan_output;
#[cfg(feature = "uio")]
pub mod nic;
#[cfg(feature = "net")]
pub mod pipeline;
#[cfg(feature = "net")]
pub mod rig;
pub mod system;

use std::fmt::Display;
use std::io::Write;

/// xorshift64*: reproducible pseudo-random test data (and a hostile client's garbage) without
/// a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 pseudo-random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Names the file skipped tests are appended to, one `<test>: <why>` line each.
pub const SKIP_LOG_VAR: &str = "NETVM_SKIP_LOG";
/// When set (to anything but empty or `0`), [`skip`] fails the test.
pub const NO_SKIP_VAR: &str = "NETVM_NO_SKIP";

/// Whether skipping is forbidden in this run.
pub fn skipping_forbidden() -> bool {
    std::env::var_os(NO_SKIP_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Records that `test` cannot run, and why; panics (fails the test) when skipping is
/// forbidden. The caller returns right after.
///
/// # Panics
/// When `NETVM_NO_SKIP` is set: a test that cannot run must not pass.
pub fn skip(test: &str, why: impl Display) {
    let line = format!("{test}: {why}");
    eprintln!("SKIPPED {line}");
    println!("SKIPPED {line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        // Appends are atomic for lines this short, so tests running in parallel (and in
        // several test binaries) do not interleave inside a line.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "testkit: cannot append to {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
    if skipping_forbidden() {
        panic!(
            "{line}; a test that cannot run fails here ({NO_SKIP_VAR} is set: \
             `scripts/test.sh --allow-skip` lets it pass and lists it as not tested)"
        );
    }
}

/// The Microkit SDK (`MICROKIT_SDK`) for seL4 test `test`, or `None` after [`skip`]ping it
/// (unset or empty: `scripts/sdk.sh` finds the SDK and `scripts/test.sh` sets it).
pub fn microkit_sdk(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("MICROKIT_SDK").filter(|s| !s.is_empty()) {
        Some(sdk) => Some(sdk.into()),
        None => {
            skip(test, "MICROKIT_SDK not set (scripts/sdk.sh finds the SDK)");
            None
        }
    }
}

/// Whether every one of `tools` (program, an argument it accepts, e.g. `--version`) can be
/// run; [`skip`]s test `test` naming the first that cannot.
pub fn have_tools(test: &str, tools: &[(&str, &str)]) -> bool {
    use std::process::{Command, Stdio};
    for (tool, arg) in tools {
        let runs = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !runs {
            skip(test, format_args!("{tool} not found"));
            return false;
        }
    }
    true
}

/// Runs `cmd` to its end and panics, naming `what` and showing its output, unless it
/// succeeds; returns its stdout and stderr.
pub fn run_ok(cmd: &mut std::process::Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Whether this process runs with effective uid 0 (network namespaces, taps).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
