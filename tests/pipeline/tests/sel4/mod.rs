//! What the seL4 tests share: prerequisites, building the image with the top-level Makefile,
//! the test's network namespace and `make qemu` in it with its console collected (and its
//! serial input writable), and `netvm bench` from the namespace.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::console::Console;

/// The echo clients of system.xml and their addresses (Makefile `ECHO_IPS`).
pub const ECHO: [(&str, &str); 2] = [("client0", "10.0.0.10"), ("client1", "10.0.0.11")];
/// The namespace's address on the tap (Makefile `HOST_IP`).
pub const HOST_IP: &str = "10.0.0.1/24";
/// From QEMU's start to `uio-driver: ready` (10–20 s on a loaded 2-core host under TCG).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The SDK, or None after saying why test `name` is skipped (`testkit::skip`: a failure where
/// skipping is forbidden, as in CI). Needs root and `tools` (name, version argument) besides
/// QEMU, `ip` and `make`.
pub fn prerequisites(name: &str, tools: &[(&str, &str)]) -> Option<PathBuf> {
    let sdk = testkit::microkit_sdk(name)?;
    if !testkit::is_root() {
        testkit::skip(name, "needs root for the network namespace and tap");
        return None;
    }
    let base = [
        ("qemu-system-aarch64", "--version"),
        ("ip", "-V"),
        ("make", "--version"),
    ];
    let all: Vec<(&str, &str)> = base.iter().chain(tools).copied().collect();
    testkit::have_tools(name, &all).then_some(sdk)
}

/// Runs `cmd`, panics with its output unless it succeeds; returns stdout and stderr.
pub use testkit::run_ok as run;

/// Builds the image of `config` with the Makefile (`NETVM_GUEST_FLAGS` goes to the guest
/// build, e.g. `--offline`) and `netvm`; returns the `netvm` binary.
pub fn build(sdk: &Path, config: &str) -> PathBuf {
    build_with(sdk, config, &[])
}

/// [`build`] with more Makefile variables (`SYSTEM=…`, `IMAGE=…`, ...).
pub fn build_with(sdk: &Path, config: &str, make_vars: &[String]) -> PathBuf {
    let root = workspace();
    let t0 = Instant::now();
    run(
        Command::new("make")
            .arg("-C")
            .arg(&root)
            .args([
                format!("MICROKIT_SDK={}", sdk.display()),
                format!("MICROKIT_CONFIG={config}"),
                format!(
                    "GUEST_FLAGS={}",
                    std::env::var("NETVM_GUEST_FLAGS").unwrap_or_default()
                ),
            ])
            .args(make_vars),
        "make (the seL4 image)",
    );
    println!(
        "image ({config}) built in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "netvm", "--manifest-path"])
            .arg(root.join("Cargo.toml")),
        "cargo build -p netvm",
    );
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release/netvm")
}

/// The test's network namespace with `tap0` at [`HOST_IP`] (`make netns`); deleted (with its
/// tap) when dropped.
pub struct Netns(pub String);

impl Netns {
    /// `netvm-<tag>-<pid>`.
    pub fn create(tag: &str) -> Netns {
        let ns = Netns(format!("netvm-{tag}-{}", std::process::id()));
        run(
            Command::new("make")
                .arg("-s")
                .arg("-C")
                .arg(workspace())
                .args(ns.make_args())
                .arg("netns"),
            "make netns",
        );
        ns
    }

    /// What `make netns` / `make qemu` need to use this namespace.
    pub fn make_args(&self) -> [String; 3] {
        [
            format!("NETNS={}", self.0),
            format!("HOST_IP={HOST_IP}"),
            "TAP=tap0".into(),
        ]
    }

    /// `ip netns exec <ns> <program>`.
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `make qemu` in its own process group, killed as a group when dropped; its console (stdout
/// and stderr) collected, its stdin the guest's serial input. `SEL4_SYSTEM_CONSOLE=<file>`
/// saves the console when it is dropped.
pub struct Qemu {
    /// The console.
    pub console: Console,
    /// Its QMP socket.
    pub qmp: PathBuf,
}

impl Qemu {
    /// Boots the image the Makefile built last (`build/loader.img`) in `ns`, with the QMP
    /// socket in the temporary directory.
    pub fn boot(ns: &Netns) -> Qemu {
        Qemu::boot_with(ns, &[])
    }

    /// [`Qemu::boot`] with more Makefile variables (`BOOT_IMAGE=…`).
    pub fn boot_with(ns: &Netns, make_vars: &[String]) -> Qemu {
        let qmp = std::env::temp_dir().join(format!("netvm-qmp-{}.sock", std::process::id()));
        let mut cmd = Command::new("make");
        cmd.arg("-s")
            .arg("-C")
            .arg(workspace())
            .arg("qemu")
            .args(ns.make_args())
            .arg(format!("QMP={}", qmp.display()))
            .args(make_vars);
        let console = Console::spawn(cmd, "make qemu", true);
        Qemu { console, qmp }
    }

    /// Waits for `needle` anywhere on the console.
    pub fn wait_for(&mut self, needle: &str, deadline: Instant) -> Option<Duration> {
        self.console
            .wait_for_from(needle, 0, deadline)
            .map(|(t, _)| t)
    }

    /// Bytes of console so far.
    pub fn console_len(&mut self) -> usize {
        self.console.len()
    }

    /// The console so far, as text.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// The console from byte `from` on, as text.
    pub fn console_since(&self, from: usize) -> String {
        self.console.text_since(from)
    }

    /// Types `line` on the serial console (the guest's, once it runs).
    pub fn type_line(&mut self, line: &str) {
        self.console.write(format!("{line}\n").as_bytes());
    }

    /// Panics if any of `bad` is on the console, naming the line.
    pub fn assert_console_clean(&self, bad: &[&str]) {
        self.console.assert_clean(bad);
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.qmp);
    }
}

/// Whether `needle` is in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> bool {
    testkit::console::position(haystack, needle).is_some()
}

/// `netvm bench` from the namespace; returns its summary lines after checking that echoes came
/// back (samples > 0) without bad packets.
pub fn bench(netvm: &Path, ns: &Netns, target: &str, args: &[&str]) -> Vec<String> {
    let out = run(
        ns.exec(netvm)
            .args(["bench", "--target", target, "--no-util", "--quiet"])
            .args(["--warmup", "1s", "--cooldown", "0s"])
            .args(args),
        &format!("netvm bench --target {target} {}", args.join(" ")),
    );
    let lines: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("netvm bench: requested"))
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "no bench summary:\n{out}");
    for line in &lines {
        let samples: u64 = line
            .split(", ")
            .find_map(|f| f.strip_suffix(" samples"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(samples > 0, "no echo came back: {line}");
        assert!(line.contains("bad 0 "), "bad echoes: {line}");
    }
    lines
}

/// `netvm stats --qmp` of the running system: `(entry, value)` for every counter of every
/// component, entries named `<pd> <counter>` (e.g. `vmm vmm.guest_restarts`).
pub fn stats(netvm: &Path, qemu: &Qemu) -> Vec<(String, u64)> {
    let out = run(
        Command::new(netvm)
            .args(["stats", "--qmp"])
            .arg(&qemu.qmp)
            .args(["--ram-size", "2G"]),
        "netvm stats --qmp",
    );
    let mut pd = String::new();
    let mut entries = Vec::new();
    for line in out.lines() {
        if let Some(name) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            pd = name.to_string();
        } else if let Some((name, value)) = line.trim().rsplit_once(' ') {
            if let Ok(v) = value.parse() {
                entries.push((format!("{pd} {}", name.trim()), v));
            }
        }
    }
    entries
}
