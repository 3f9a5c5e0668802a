//! The whole seL4 system (system.xml) on QEMU: builds the image with the top-level Makefile,
//! boots it with `make qemu` (QEMU `virt,virtualization=on`, cortex-a53, 2 GiB; the NIC's backend
//! a tap in a network namespace this test creates), waits for the guest's `uio-driver: ready`
//! and both echo clients, then from that namespace, for each client:
//! - pings it and checks UDP (1472-byte payloads) and TCP echo with `netvm bench`;
//! - checks that its clock runs and wakes it: a raw-socket peer (an address the namespace's
//!   kernel does not own, so nothing else answers) sends one SYN to the TCP echo port and then
//!   stays silent; the SYN-ACK must come a second time, which only the echo server's own
//!   retransmission timer (the timer PD's timeout) can cause;
//! - checks the utilisation daemon: a `netvm bench` point with `cpu_target_lukem` must report
//!   idle ticks (from the idle PD) above 0 and below the total ticks.
//!
//! Prints the boot time to the ready line, the bench lines (throughput, RTT, utilisation) and
//! the SYN-ACK retransmission delay; never asserts on timing.
//!
//! `MICROKIT_CONFIG` (debug, release or benchmark; default debug) picks the kernel config. Only
//! debug kernels print, so the console lines of the VMM and the echo clients are waited for in
//! debug only; the network checks run in every config.
//!
//! Needs `MICROKIT_SDK` (Microkit 2.3.0), root (network namespaces, tap), `qemu-system-aarch64`,
//! `ip`, `ping`, `python3` (the raw-socket peer), `make` and what `make` needs (the guest's
//! Debian packages: see guest/); otherwise it says what is missing (`testkit::skip`: a failure
//! where skipping is forbidden, as in CI). `#[ignore]`d: `scripts/test.sh`'s seL4 stage runs it.
//! `NETVM_GUEST_FLAGS` is handed to the guest build (e.g. `--offline`).
//! `SEL4_SYSTEM_CONSOLE=<file>` saves the console.
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
        testkit::skip(
            "sel4_system",
            "MICROKIT_SDK not set (scripts/sdk.sh finds the SDK)",
        );
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
        testkit::skip(
            "sel4_system",
            "needs root for the network namespace and tap",
        );
        return None;
    }
    for (tool, arg) in [
        ("qemu-system-aarch64", "--version"),
        ("ip", "-V"),
        ("ping", "-V"),
        ("python3", "--version"),
        ("make", "--version"),
    ] {
        if !have(tool, arg) {
            testkit::skip("sel4_system", format_args!("{tool} not found"));
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
        // `kill -KILL -<pgid>` would read the group as an option and kill nothing (procps
        // kill): the group needs `--` before it.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
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

/// Runs `scripts/synack_probe.py` against `ip` from the namespace; returns its report line.
fn synack_retransmission(ns: &str, ip: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/synack_probe.py"))
        .args(["tap0", ip, "1236", "30"])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{ip}: the echo server never retransmitted its SYN-ACK, i.e. its clock or its timeout does not work: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().to_string()
}

/// One short UDP point against `ip` with the utilisation daemon; returns (idle, total) ticks
/// from the CSV row.
fn utilisation(netvm: &Path, ns: &str, ip: &str) -> (u64, u64) {
    let out = run(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(netvm)
            .args(["bench", "--target", ip, "--proto", "udp", "--rates", "1M"])
            .args(["--samples", "200", "--warmup", "1s", "--cooldown", "0s"]),
        &format!("netvm bench --target {ip} (with utilisation)"),
    );
    let mut lines = out.lines();
    let header = lines
        .find(|l| l.starts_with("Requested_Throughput,"))
        .unwrap_or_else(|| panic!("no CSV header:\n{out}"));
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no CSV row:\n{out}"))
        .split(',')
        .collect();
    let column = |name: &str| -> u64 {
        let i = header
            .split(',')
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column: {header}"));
        row.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} value in {row:?}"))
    };
    (column("Idle_Cycles"), column("Total_Cycles"))
}

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn the_sel4_system_echoes_through_the_driver_vm() {
    let Some(sdk) = prerequisites() else {
        return;
    };
    let root = workspace();
    let config = std::env::var("MICROKIT_CONFIG").unwrap_or_else(|_| "debug".into());
    // Only debug kernels print (seL4_DebugPutChar): the monitor's and the PDs' lines.
    let kernel_prints = config == "debug";
    let sdk_arg = format!("MICROKIT_SDK={}", sdk.display());
    let config_arg = format!("MICROKIT_CONFIG={config}");
    let guest_flags = format!(
        "GUEST_FLAGS={}",
        std::env::var("NETVM_GUEST_FLAGS").unwrap_or_default()
    );
    let t0 = Instant::now();
    run(
        Command::new("make").arg("-C").arg(&root).args([
            sdk_arg.as_str(),
            config_arg.as_str(),
            guest_flags.as_str(),
        ]),
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
    let mut needles = vec!["Run /init as init process", "uio-driver: ready"];
    if kernel_prints {
        needles.insert(0, "vmm: starting guest");
        // The clients print concurrently, so their lines may interleave: one whole
        // "echo server up" is all that can be relied on; the pings below check both.
        needles.push("echo server up");
    }
    for needle in needles {
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
        // Without the debug console there is no "echo server up" to wait for: the clients come
        // up while the guest boots, so the pings may wait a while for their 3 replies.
        let out = run(
            Command::new("ip").args([
                "netns", "exec", &ns.0, "ping", "-c", "3", "-w", "30", "-W", "5", ip,
            ]),
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
        println!("{client}: {}", synack_retransmission(&ns.0, ip));
        let (idle, total) = utilisation(&netvm, &ns.0, ip);
        println!(
            "{client} utilisation at UDP 1 Mb/s: idle {idle} of {total} ticks ({:.1}% busy)",
            100.0 * (1.0 - idle as f64 / total.max(1) as f64)
        );
        assert!(
            idle > 0 && idle < total,
            "{client}: the utilisation daemon reports idle {idle}, total {total}"
        );
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
