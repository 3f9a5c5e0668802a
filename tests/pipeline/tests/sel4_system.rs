//! The whole seL4 system (system.xml) on QEMU: builds the image with the top-level Makefile,
//! boots it with `make qemu` (QEMU `virt,virtualization=on`, cortex-a53, 2 GiB; the NIC's backend
//! a tap in a network namespace this test creates), waits for the guest's `uio-driver: ready`
//! and both echo clients, then from that namespace pings both clients and checks UDP (1472-byte
//! payloads) and TCP echo with `netvm bench`. Prints the boot time to the ready line and the
//! bench lines (throughput, RTT); never asserts on timing.
//!
//! Needs `MICROKIT_SDK` (Microkit 2.3.0), root (network namespaces, tap), `qemu-system-aarch64`,
//! `ip`, `ping`, `make` and what `make` needs (the guest's Debian packages: see guest/);
//! otherwise it says what is missing and passes. `NETVM_GUEST_FLAGS` is handed to the guest
//! build (e.g. `--offline`). `SEL4_SYSTEM_CONSOLE=<file>` saves the console.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const ECHO: [(&str, &str); 2] = [("client0", "10.0.0.10"), ("client1", "10.0.0.11")];
const HOST_IP: &str = "10.0.0.1/24";
/// From QEMU's start to `uio-driver: ready` (10–20 s on a loaded 2-core host under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The SDK, or None after saying why the test is skipped.
fn prerequisites() -> Option<PathBuf> {
    let Some(sdk) = std::env::var_os("MICROKIT_SDK") else {
        println!("SKIPPED sel4_system: MICROKIT_SDK not set");
        return None;
    };
    // Root: the effective uid, the second field of /proc/self/status's Uid line.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        println!("SKIPPED sel4_system: needs root for the network namespace and tap");
        return None;
    }
    for (tool, arg) in [
        ("qemu-system-aarch64", "--version"),
        ("ip", "-V"),
        ("ping", "-V"),
        ("make", "--version"),
    ] {
        if !have(tool, arg) {
            println!("SKIPPED sel4_system: {tool} not found");
            return None;
        }
    }
    Some(PathBuf::from(sdk))
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The test's network namespace; deleted (with its tap) when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `make qemu` in its own process group, killed as a group when dropped.
struct Qemu {
    child: Child,
    output: Receiver<Vec<u8>>,
    console: Vec<u8>,
    started: Instant,
}

impl Qemu {
    fn wait_for(&mut self, needle: &str, deadline: Instant) -> Option<Duration> {
        loop {
            if find(&self.console, needle.as_bytes()) {
                return Some(self.started.elapsed());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.console.extend_from_slice(&bytes),
                Err(_) => return None,
            }
        }
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", self.child.id())])
            .status();
        // Reap make; never hang the test on a child that outlived the signal.
        let until = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(path) = std::env::var_os("SEL4_SYSTEM_CONSOLE") {
            let _ = std::fs::write(path, &self.console);
        }
    }
}

/// `netvm bench` from the namespace; returns its summary lines after checking that echoes came
/// back (samples > 0) without bad packets.
fn bench(netvm: &Path, ns: &str, target: &str, args: &[&str]) -> Vec<String> {
    let out = run(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(netvm)
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

#[test]
fn the_sel4_system_echoes_through_the_driver_vm() {
    let Some(sdk) = prerequisites() else {
        return;
    };
    let root = workspace();
    let sdk_arg = format!("MICROKIT_SDK={}", sdk.display());
    let guest_flags = format!(
        "GUEST_FLAGS={}",
        std::env::var("NETVM_GUEST_FLAGS").unwrap_or_default()
    );
    let t0 = Instant::now();
    run(
        Command::new("make")
            .arg("-C")
            .arg(&root)
            .args([sdk_arg.as_str(), guest_flags.as_str()]),
        "make (the seL4 image)",
    );
    println!("image built in {:.1} s", t0.elapsed().as_secs_f64());
    run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "netvm", "--manifest-path"])
            .arg(root.join("Cargo.toml")),
        "cargo build -p netvm",
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let netvm = target_dir.join("release/netvm");

    let ns = Netns(format!("netvm-s4t-{}", std::process::id()));
    let ns_arg = format!("NETNS={}", ns.0);
    let host_arg = format!("HOST_IP={HOST_IP}");
    let mut child = Command::new("make");
    child
        .arg("-s")
        .arg("-C")
        .arg(&root)
        .args(["qemu", ns_arg.as_str(), host_arg.as_str(), "TAP=tap0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = child.spawn().expect("start make qemu");
    let started = Instant::now();
    let (tx, output) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
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
    let mut qemu = Qemu {
        child,
        output,
        console: Vec::new(),
        started,
    };
    let deadline = started + BOOT_TIMEOUT;
    let mut timings = Vec::new();
    for needle in [
        "vmm: starting guest",
        "Run /init as init process",
        "uio-driver: ready",
        // The clients print concurrently, so their lines may interleave: one whole
        // "echo server up" is all that can be relied on; the pings below check both.
        "echo server up",
    ] {
        let Some(t) = qemu.wait_for(needle, deadline) else {
            panic!(
                "no '{needle}' within {BOOT_TIMEOUT:?}; console:\n{}",
                qemu.console()
            );
        };
        timings.push((needle, t));
    }
    println!("boot (from `make qemu`):");
    for (needle, t) in &timings {
        println!("  {:>7.2} s  {needle}", t.as_secs_f64());
    }

    for (client, ip) in ECHO {
        let out = run(
            Command::new("ip").args(["netns", "exec", &ns.0, "ping", "-c", "3", "-W", "5", ip]),
            &format!("ping {client} ({ip})"),
        );
        println!(
            "{client}: {}",
            out.lines().last().unwrap_or_default().trim()
        );
        for line in bench(
            &netvm,
            &ns.0,
            ip,
            &["--proto", "udp", "--rates", "1M", "--samples", "200"],
        ) {
            println!("{client} UDP 1472 B: {line}");
        }
        for line in bench(
            &netvm,
            &ns.0,
            ip,
            &[
                "--proto",
                "tcp",
                "--flows",
                "1",
                "--rates",
                "1M",
                "--samples",
                "200",
            ],
        ) {
            println!("{client} TCP: {line}");
        }
    }
    let console = qemu.console();
    for bad in [
        "Kernel panic",
        "unexpected guest fault",
        "MON|ERROR",
        "refused request",
    ] {
        if let Some(line) = console.lines().find(|l| l.contains(bad)) {
            panic!("'{bad}' on the console: {line}");
        }
    }
    println!("PASS sel4_system");
}
