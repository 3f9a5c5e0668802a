//! Boots the Debian driver-VM guest under the Rust vmm PD on seL4 in QEMU
//! (examples/vmm-boot/system.xml: the vmm, its VM and the timer PD, no net PDs) and waits for
//! its console, in order: the VMM's start line,
//! the Linux banner, `Run /init`, the first `/init` line and `uio-driver: ready`. Then it asks
//! `/init` to power off (a `netvm.poweroff` console line) and expects the VMM to report the
//! guest stopped by PSCI SYSTEM_OFF, with WFI having blocked at least once and no unexpected
//! fault. Prints the time from QEMU's start to each line.
//!
//! The image is built the way the top-level Makefile builds system.xml's: the guest's device
//! tree by `guest-image sel4-dtb`, the vmm with it embedded, and the PD images with their config
//! sections (the vmm's `.vmm_config`) by `guest-image sel4-pds`, all from the system description.
//!
//! Needs `MICROKIT_SDK` (Microkit 2.3.0), `qemu-system-aarch64`, and the guest outputs
//! (`Image`, `initrd.cpio.gz`) in `$NETVM_GUEST_DIR` or `<workspace>/build/guest`
//! (`cargo run -p guest-image --release -- build --out build/guest`); otherwise it says what is
//! missing and passes. `VMM_BOOT_CONSOLE=<file>` saves the whole console.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::console::Console;

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
    let sdk = testkit::microkit_sdk("sel4_boot")?;
    if !testkit::have_tools("sel4_boot", &[(QEMU, "--version")]) {
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
    Some((sdk, guest))
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

/// Builds the `guest-image` tool, the guest DTB, the timer and vmm ELFs (the vmm with the images
/// embedded), patches the PD images' config sections and builds the Microkit image; returns
/// loader.img.
fn build_image(sdk: &Path, guest: &Path, dir: &Path) -> PathBuf {
    let system = workspace().join(SYSTEM);
    let initrd = guest.join("initrd.cpio.gz");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sel4-boot");
    testkit::run_ok(
        &mut cargo(
            &target_dir,
            &[
                "build",
                "--release",
                "-p",
                "guest-image",
                "--bin",
                "guest-image",
            ],
        ),
        "cargo build -p guest-image",
    );
    let tool = target_dir.join("release/guest-image");
    let dtb = dir.join("guest.dtb");
    testkit::run_ok(
        Command::new(&tool)
            .arg("sel4-dtb")
            .arg("--system")
            .arg(&system)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--out")
            .arg(&dtb),
        "guest-image sel4-dtb",
    );
    testkit::run_ok(
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
    testkit::run_ok(
        Command::new(&tool)
            .arg("sel4-pds")
            .arg("--system")
            .arg(&system)
            .args(["--macs", "", "--echo-ips", ""])
            .arg("--elf-dir")
            .arg(target_dir.join("aarch64-unknown-none/release"))
            .arg("--out")
            .arg(&pds),
        "guest-image sel4-pds",
    );
    let image = dir.join("loader.img");
    testkit::run_ok(
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

/// Boots `image` on QEMU; killed when dropped.
fn boot(image: &Path) -> Console {
    let mut cmd = Command::new(QEMU);
    cmd.args([
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
    ));
    Console::spawn(cmd, QEMU, false)
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

    let mut qemu = boot(&image);
    let deadline = qemu.started + BOOT_TIMEOUT;
    let mut pos = 0;
    let mut timings = Vec::new();
    for (needle, label) in MARKERS {
        match qemu.wait_for_from(needle, pos, deadline) {
            Some((t, end)) => {
                pos = end;
                timings.push((label, t));
            }
            None => panic!(
                "no '{needle}' on the console within {BOOT_TIMEOUT:?}; console:\n{}",
                qemu.text()
            ),
        }
    }
    println!("boot timings (from QEMU start):");
    for (label, t) in &timings {
        println!("  {:>7.2} s  {label}", t.as_secs_f64());
    }

    // Power off through /init -> reboot(POWER_OFF) -> PSCI SYSTEM_OFF (an hvc here).
    qemu.write(b"netvm.poweroff\n");
    let stopped = "vmm: guest stopped (SystemOff)";
    let Some((t, end)) = qemu.wait_for_from(stopped, pos, Instant::now() + POWEROFF_TIMEOUT) else {
        panic!(
            "no '{stopped}' after netvm.poweroff; console:\n{}",
            qemu.text()
        );
    };
    println!(
        "  {:>7.2} s  guest stopped by PSCI SYSTEM_OFF",
        t.as_secs_f64()
    );
    // The rest of that line: the counters.
    qemu.wait_for_from("\n", end, Instant::now() + POWEROFF_TIMEOUT);
    let console = qemu.text();
    if let Some(path) = std::env::var_os("VMM_BOOT_CONSOLE") {
        std::fs::write(&path, &console)
            .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&path).display()));
    }
    let rest = qemu.text_since(end);
    let line = rest.lines().next().unwrap_or_default();
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
