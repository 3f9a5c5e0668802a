//! Boots the Debian driver-VM guest under the Rust vmm PD on seL4 in QEMU
//! (examples/vmm-boot/system.xml: the vmm, its VM and the timer PD, no net PDs) and waits for
//! its console, in order: the VMM's start line,
//! the Linux banner, `Run /init`, the first `/init` line and `uio-driver: ready`. Then it asks
//! `/init` to power off (a `netvm.poweroff` console line) and expects the VMM to report the
//! guest stopped by PSCI SYSTEM_OFF, with WFI having blocked at least once and no unexpected
//! fault. Prints the time from QEMU's start to each line.
//!
//! The image is built the way the top-level Makefile builds system.xml's: the guest's device
//! tree by `guest sel4-dtb`, the vmm with it embedded, and the PD images with their config
//! sections (the vmm's `.vmm_config`) by `guest sel4-pds`, all from the system description.
//!
//! Needs `MICROKIT_SDK` (Microkit 2.3.0), `qemu-system-aarch64`, and the guest outputs
//! (`Image`, `initrd.cpio.gz`) in `$NETVM_GUEST_DIR` or `<workspace>/build/guest`
//! (`cargo run -p guest --release -- build --out build/guest`); otherwise it says what is
//! missing and passes. `VMM_BOOT_CONSOLE=<file>` saves the whole console.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BOARD: &str = "qemu_virt_aarch64";
const CONFIG: &str = "debug";
const QEMU: &str = "qemu-system-aarch64";
const SYSTEM: &str = "examples/vmm-boot/system.xml";
/// From QEMU's start to `uio-driver: ready` (about 4 s on an idle 2-core host under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

/// The console lines to wait for, in order, with a label for the timing table.
const MARKERS: [(&str, &str); 5] = [
    ("vmm: starting guest", "VMM starts the guest"),
    ("Linux version 6.", "Linux banner"),
    ("Run /init as init process", "Run /init"),
    ("init [", "first /init line"),
    ("uio-driver: ready", "uio-driver: ready"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The SDK and guest directory, or None after saying why the test is skipped.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let Some(sdk) = std::env::var_os("MICROKIT_SDK") else {
        testkit::skip(
            "sel4_boot",
            "MICROKIT_SDK not set (scripts/sdk.sh finds the SDK)",
        );
        return None;
    };
    if Command::new(QEMU).arg("--version").output().is_err() {
        testkit::skip("sel4_boot", format_args!("{QEMU} not found"));
        return None;
    }
    let guest = std::env::var_os("NETVM_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("build/guest"));
    for file in ["Image", "initrd.cpio.gz"] {
        if !guest.join(file).is_file() {
            testkit::skip(
                "sel4_boot",
                format_args!(
                    "no {} (build the guest: make guest)",
                    guest.join(file).display()
                ),
            );
            return None;
        }
    }
    Some((PathBuf::from(sdk), guest))
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cargo` on this workspace with `args`, into `target_dir`.
fn cargo(target_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(args)
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    cmd
}

/// Builds the `guest` tool, the guest DTB, the timer and vmm ELFs (the vmm with the images
/// embedded), patches the PD images' config sections and builds the Microkit image; returns
/// loader.img.
fn build_image(sdk: &Path, guest: &Path, dir: &Path) -> PathBuf {
    let system = workspace().join(SYSTEM);
    let initrd = guest.join("initrd.cpio.gz");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sel4-boot");
    run(
        &mut cargo(
            &target_dir,
            &["build", "--release", "-p", "guest", "--bin", "guest"],
        ),
        "cargo build -p guest",
    );
    let tool = target_dir.join("release/guest");
    let dtb = dir.join("guest.dtb");
    run(
        Command::new(&tool)
            .arg("sel4-dtb")
            .arg("--system")
            .arg(&system)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--out")
            .arg(&dtb),
        "guest sel4-dtb",
    );
    run(
        cargo(
            &target_dir,
            &[
                "build",
                "--release",
                "-p",
                "vmm",
                "-p",
                "timer",
                "--bins",
                "--target",
                "aarch64-unknown-none",
            ],
        )
        .env("MICROKIT_SDK", sdk)
        .env("MICROKIT_BOARD", BOARD)
        .env("MICROKIT_CONFIG", CONFIG)
        .env("VMM_GUEST_KERNEL", guest.join("Image"))
        .env("VMM_GUEST_INITRD", &initrd)
        .env("VMM_GUEST_DTB", &dtb),
        "cargo build -p vmm -p timer --target aarch64-unknown-none",
    );
    let pds = dir.join("pds");
    run(
        Command::new(&tool)
            .arg("sel4-pds")
            .arg("--system")
            .arg(&system)
            .args(["--macs", "", "--echo-ips", ""])
            .arg("--elf-dir")
            .arg(target_dir.join("aarch64-unknown-none/release"))
            .arg("--out")
            .arg(&pds),
        "guest sel4-pds",
    );
    let image = dir.join("loader.img");
    run(
        Command::new(sdk.join("bin/microkit"))
            .arg(&system)
            .arg("--search-path")
            .arg(&pds)
            .args(["--board", BOARD, "--config", CONFIG, "-o"])
            .arg(&image)
            .arg("-r")
            .arg(dir.join("report.txt")),
        "microkit tool",
    );
    image
}

/// A running QEMU, killed when dropped.
struct Qemu {
    child: Child,
    stdin: ChildStdin,
    output: Receiver<Vec<u8>>,
    console: Vec<u8>,
    started: Instant,
}

impl Qemu {
    fn boot(image: &Path) -> Self {
        let mut child = Command::new(QEMU)
            .args([
                "-machine",
                "virt,virtualization=on",
                "-cpu",
                "cortex-a53",
                "-m",
                "size=2G",
            ])
            .args(["-nographic", "-serial", "mon:stdio", "-nic", "none"])
            // The NIC the guest drives: QEMU's first virtio-mmio transport, passed through;
            // no backend (no slirp), the test only needs eth0 to exist.
            .args(["-global", "virtio-mmio.force-legacy=false"])
            .args(["-device", "virtio-net-device,mac=52:54:00:12:34:56"])
            .arg("-device")
            .arg(format!(
                "loader,file={},addr=0x70000000,cpu-num=0",
                image.display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {QEMU}: {e}"));
        let started = Instant::now();
        let stdin = child.stdin.take().unwrap();
        let (tx, output) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            stdin,
            output,
            console: Vec::new(),
            started,
        }
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }

    /// Waits until `needle` appears after byte `from`; returns (its end offset, time since start).
    fn wait_for(
        &mut self,
        needle: &str,
        from: usize,
        deadline: Instant,
    ) -> Option<(usize, Duration)> {
        loop {
            if let Some(pos) = self
                .console
                .get(from..)
                .and_then(|c| find(c, needle.as_bytes()))
            {
                return Some((from + pos + needle.len(), self.started.elapsed()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.console.extend_from_slice(&bytes),
                Err(_) => return None,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn debian_guest_boots_under_the_rust_vmm() {
    let Some((sdk, guest)) = prerequisites() else {
        return;
    };
    let dir = TempDir(std::env::temp_dir().join(format!("vmm-sel4-boot-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let image = build_image(&sdk, &guest, &dir.0);

    let mut qemu = Qemu::boot(&image);
    let deadline = qemu.started + BOOT_TIMEOUT;
    let mut pos = 0;
    let mut timings = Vec::new();
    for (needle, label) in MARKERS {
        match qemu.wait_for(needle, pos, deadline) {
            Some((end, t)) => {
                pos = end;
                timings.push((label, t));
            }
            None => panic!(
                "no '{needle}' on the console within {BOOT_TIMEOUT:?}; console:\n{}",
                qemu.console()
            ),
        }
    }
    println!("boot timings (from QEMU start):");
    for (label, t) in &timings {
        println!("  {:>7.2} s  {label}", t.as_secs_f64());
    }

    // Power off through /init -> reboot(POWER_OFF) -> PSCI SYSTEM_OFF (an hvc here).
    qemu.stdin.write_all(b"netvm.poweroff\n").unwrap();
    qemu.stdin.flush().unwrap();
    let stopped = "vmm: guest stopped (SystemOff)";
    let Some((end, t)) = qemu.wait_for(stopped, pos, Instant::now() + POWEROFF_TIMEOUT) else {
        panic!(
            "no '{stopped}' after netvm.poweroff; console:\n{}",
            qemu.console()
        );
    };
    println!(
        "  {:>7.2} s  guest stopped by PSCI SYSTEM_OFF",
        t.as_secs_f64()
    );
    // The rest of that line: the counters.
    qemu.wait_for("\n", end, Instant::now() + POWEROFF_TIMEOUT);
    let console = qemu.console();
    if let Some(path) = std::env::var_os("VMM_BOOT_CONSOLE") {
        std::fs::write(&path, &console)
            .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&path).display()));
    }
    let line = console[end..].lines().next().unwrap_or_default();
    println!("vmm counters:{line}");
    let blocked: u64 = line
        .split("(blocked ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no WFI count in '{line}'"));
    assert!(blocked > 0, "the idle guest never blocked in WFI: {line}");
    assert!(
        !console.contains("unexpected guest fault"),
        "console:\n{console}"
    );
    assert!(!console.contains("Kernel panic"), "console:\n{console}");
}
