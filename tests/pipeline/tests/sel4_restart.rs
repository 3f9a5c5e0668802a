//! The driver VM dies and comes back, under traffic, on seL4 under QEMU.
//!
//! Builds the debug image (only a debug image's guest honours the `netvm.crash` console
//! command: the image build puts `netvm.debug` on its kernel command line), boots it in a
//! network namespace of its own, and runs `scripts/echo_soak.py` against client0: UDP probes
//! every 20 ms and one long TCP echo connection, every echoed byte checked. Then, three times
//! in a row, it crashes the guest's kernel (`netvm.crash` on the serial console: a kernel panic,
//! which with `panic=-1` ends in PSCI SYSTEM_RESET), and then hangs it once (`netvm.hang`: a
//! panic with the panic timeout set to 0, so the kernel spins with interrupts masked and never
//! asks for anything: only the VMM's watchdog can notice), and checks each time that
//! - the VMM boots the guest again (its console says so), the new guest's driver reconnects
//!   (virt_rx and virt_tx rebuild its queues), and UDP echoes come back;
//!
//! and afterwards that
//! - the TCP connection completed its whole transfer with verified data (it resumed by
//!   retransmission after every outage), no UDP echo was bad or duplicated;
//! - the VMM counted the four restarts (one by its watchdog) and virt_rx / virt_tx the four
//!   driver resets (`netvm stats --qmp`);
//! - every sDDF buffer is back in a queue (`netvm stats --qmp --report --system --pools`, which
//!   reads the queues from QEMU's memory with the machine paused);
//! - both clients still answer ping, and nothing else went wrong on the console.
//!
//! Prints the time from each crash to the first UDP echo again and the longest TCP stall; never
//! asserts on timing. Needs what sel4_system needs, and `python3`. `#[ignore]`d:
//! `scripts/test.sh`'s seL4 stage runs it. `SEL4_SYSTEM_CONSOLE=<file>` saves the console.
#![cfg(target_os = "linux")]

mod sel4;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use sel4::{run, Netns, Qemu, BOOT_TIMEOUT, ECHO};

/// The console command, what the console says once it took effect, and the name of the event.
const EVENTS: [(&str, &str, &str); 4] = [
    (
        "netvm.crash",
        "vmm: restarting the guest (SystemReset)",
        "crash1",
    ),
    (
        "netvm.crash",
        "vmm: restarting the guest (SystemReset)",
        "crash2",
    ),
    (
        "netvm.crash",
        "vmm: restarting the guest (SystemReset)",
        "crash3",
    ),
    ("netvm.hang", "vmm: restarting the guest (Watchdog)", "hang"),
];
/// From a crash to UDP echoes again (a reboot takes 5–20 s under TCG).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(180);

/// `echo_soak.py` in the namespace: its stdin and the lines it prints.
struct Soak {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    said: Vec<String>,
}

impl Soak {
    fn start(ns: &Netns, target: &str) -> Soak {
        let mut child = ns
            .exec("python3")
            .arg(sel4::workspace().join("scripts/echo_soak.py"))
            .arg(target)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start echo_soak.py");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Soak {
            stdin: child.stdin.take(),
            child,
            lines,
            said: Vec::new(),
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("soak's stdin");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("writing to echo_soak.py");
    }

    /// The first line starting with `prefix` from now on.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.said.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "echo_soak.py did not say '{prefix}…' within {timeout:?}; it said:\n{}",
                    self.said.join("\n")
                ),
            }
        }
    }
}

impl Drop for Soak {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter(stats: &[(String, u64)], name: &str) -> u64 {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .map(|&(_, v)| v)
        .unwrap_or_else(|| panic!("no counter '{name}' in netvm stats: {stats:?}"))
}

#[test]
#[ignore = "seL4 stage: boots QEMU for minutes; scripts/test.sh runs it (--ignored)"]
fn the_driver_vm_crashes_three_times_and_hangs_once_under_traffic_and_the_network_comes_back() {
    let Some(sdk) =
        sel4::prerequisites("sel4_restart", &[("ping", "-V"), ("python3", "--version")])
    else {
        return;
    };
    let netvm = sel4::build(&sdk, "debug");
    let ns = Netns::create("s4r");
    let mut qemu = Qemu::boot(&ns);
    let deadline = qemu.console.started + BOOT_TIMEOUT;
    // Not "echo server up": the two clients print it at once on the debug console, char by
    // char, so neither copy may come out whole. The soak's "ready" (a TCP connection and a UDP
    // echo) is what shows the echo server is up.
    if qemu.wait_for("uio-driver: ready", deadline).is_none() {
        panic!(
            "no 'uio-driver: ready' within {BOOT_TIMEOUT:?}; console:\n{}",
            qemu.console()
        );
    }
    let before = sel4::stats(&netvm, &qemu);
    let (_, target) = ECHO[0];
    let mut soak = Soak::start(&ns, target);
    soak.wait_for("ready", Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3));

    let mut recoveries = Vec::new();
    for (command, restarted, name) in EVENTS {
        let from = qemu.console_len();
        soak.say(&format!("mark {name}"));
        qemu.type_line(command);
        let until = Instant::now() + RECOVERY_TIMEOUT;
        let mut at = from;
        for needle in [
            "Kernel panic - not syncing: sysrq triggered crash",
            restarted,
            "uio-driver: reconnected",
            "uio-driver: ready",
        ] {
            match qemu.console.wait_for_from(needle, at, until) {
                Some((_, end)) => at = end,
                None => panic!(
                    "{name}: no '{needle}' within {RECOVERY_TIMEOUT:?}; console since {command}:\n{}",
                    qemu.console_since(from)
                ),
            }
        }
        let line = soak.wait_for(&format!("recovered {name}"), RECOVERY_TIMEOUT);
        println!("{line}");
        recoveries.push(line);
        // Some traffic on the new driver before the next crash.
        std::thread::sleep(Duration::from_secs(3));
    }
    soak.say("stop");
    let summary = soak.wait_for("soak:", Duration::from_secs(330));
    println!("{summary}");
    let status = soak.child.wait().expect("echo_soak.py");
    assert!(
        status.success(),
        "the echo traffic did not survive the restarts: {summary}\n{}",
        soak.said.join("\n")
    );

    let after = sel4::stats(&netvm, &qemu);
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    let events = EVENTS.len() as u64;
    assert_eq!(
        delta("vmm vmm.guest_restarts"),
        events,
        "the VMM's restart count"
    );
    assert_eq!(
        delta("vmm vmm.watchdog_expiries"),
        1,
        "the hang was the watchdog's"
    );
    for pd in ["net_virt_rx", "net_virt_tx"] {
        assert_eq!(
            delta(&format!("{pd} driver.resets")),
            events,
            "{pd}: one driver reset per restart"
        );
    }
    println!(
        "restart: {} passed-through IRQ / timer acks owed by the dead guests; virt_tx dropped {} client frames held by the dead drivers",
        delta("vmm vmm.restart_acks"),
        delta("net_virt_tx client0.driver_reset_dropped")
    );
    // Quiet now: every buffer must be in a queue.
    std::thread::sleep(Duration::from_secs(2));
    let root = sel4::workspace();
    let pools = Command::new(&netvm)
        .args(["stats", "--pools", "--qmp"])
        .arg(&qemu.qmp)
        .args(["--ram-size", "2G", "--report"])
        .arg(root.join("build/sel4/debug/report.txt"))
        .arg("--system")
        .arg(root.join("system.xml"))
        .output()
        .expect("netvm stats --pools");
    let text = String::from_utf8_lossy(&pools.stdout);
    println!("{text}");
    assert!(
        pools.status.success(),
        "not every sDDF buffer is accounted for after the restarts:\n{text}{}",
        String::from_utf8_lossy(&pools.stderr)
    );
    for (client, ip) in ECHO {
        run(
            ns.exec("ping").args(["-c", "3", "-w", "30", "-W", "5", ip]),
            &format!("ping {client} ({ip}) after the restarts"),
        );
    }
    qemu.assert_console_clean(&[
        "unexpected guest fault",
        "Attempted to kill init",
        "Oops",
        "Unable to handle kernel",
        "MON|ERROR",
        "refused request",
        "restarts are spent",
        "not reset",
    ]);
    println!("PASS sel4_restart: {}", recoveries.join("; "));
}
