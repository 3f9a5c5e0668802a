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
//! - checks that the driver VM is silent on the link: tcpdump captures every frame leaving the
//!   NIC (the tap's inbound direction) for the whole run; after probing the guest with ARP for
//!   an unused address, an IPv6 neighbour solicitation and ping6 to the NIC's link-local address
//!   (all unanswered), every captured frame must come from a client MAC of system.macs, none
//!   from the NIC's own MAC and none be IPv6.
//!
//! Prints the boot time to the ready line, the bench lines (throughput, RTT, utilisation) and
//! the SYN-ACK retransmission delay; never asserts on timing.
//!
//! `MICROKIT_CONFIG` (debug, release or benchmark; default debug) picks the kernel config. Only
//! debug kernels print, so the console lines of the VMM and the echo clients are waited for in
//! debug only; the network checks run in every config.
//!
//! Needs `MICROKIT_SDK` (Microkit 2.3.0), root (network namespaces, tap), `qemu-system-aarch64`,
//! `ip`, `ping`, `tcpdump`, `python3` (the raw-socket peer), `make` and what `make` needs (the guest's
//! Debian packages: see guest-image/); otherwise it says what is missing (`testkit::skip`: a failure
//! where skipping is forbidden, as in CI). `#[ignore]`d: `scripts/test.sh`'s seL4 stage runs it.
//! `NETVM_GUEST_FLAGS` is handed to the guest build (e.g. `--offline`).
//! `SEL4_SYSTEM_CONSOLE=<file>` saves the console.
#![cfg(target_os = "linux")]

mod sel4;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sel4::{bench, find, run, Netns, Qemu, BOOT_TIMEOUT, ECHO};

/// The MAC `make qemu` gives the NIC (Makefile `NIC_MAC`), and its IPv6 link-local address.
const NIC_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const NIC_LINK_LOCAL: &str = "fe80::5054:ff:fe12:3456";
/// An address in the namespace's subnet that no one owns.
const UNUSED_IP: &str = "10.0.0.99";
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// tcpdump on the namespace's tap, writing every frame QEMU's NIC sends (inbound on the tap) to
/// a pcap file; stopped (SIGINT, so it flushes) by [`Capture::finish`], killed if dropped.
struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    fn start(ns: &str, tap: &str) -> Capture {
        let path = std::env::temp_dir().join(format!("netvm-sel4-{}.pcap", std::process::id()));
        // -Z root: keep writing where root may (tcpdump may otherwise drop to its own user);
        // -s 96: the headers are all the checks read.
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "tcpdump", "-i", tap, "-Q", "in", "-U", "-n",
            ])
            .args(["-s", "96", "-Z", "root", "-w"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        // tcpdump says "listening on <tap>" once it captures.
        let mut stderr = child.stderr.take().expect("piped");
        let mut said = Vec::new();
        let mut buf = [0; 256];
        while !find(&said, b"listening on") {
            match stderr.read(&mut buf) {
                Ok(n @ 1..) => said.extend_from_slice(&buf[..n]),
                _ => panic!(
                    "tcpdump on {tap} did not start: {}",
                    String::from_utf8_lossy(&said)
                ),
            }
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Capture { child, path }
    }

    /// Stops the capture and returns the frames.
    fn finish(mut self) -> Vec<Vec<u8>> {
        let _ = Command::new("kill")
            .args(["-s", "INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let bytes =
            std::fs::read(&self.path).unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        pcap_frames(&bytes).unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The frames of a classic pcap file with Ethernet link type.
fn pcap_frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let u32_at = |at: usize, le: bool| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let magic = u32_at(0, true).ok_or("no pcap header")?;
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => return Err(format!("not a pcap file (magic {m:#x})")),
    };
    let link = u32_at(20, le).ok_or("short pcap header")?;
    if link != 1 {
        return Err(format!("link type {link}, expected Ethernet (1)"));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let len = u32_at(at + 8, le).ok_or("truncated record header")? as usize;
        let frame = bytes
            .get(at + 16..at + 16 + len)
            .ok_or("truncated record")?;
        frames.push(frame.to_vec());
        at += 16 + len;
    }
    Ok(frames)
}

/// The client MACs of system.macs (`client=aa:bb:cc:dd:ee:ff` lines).
fn client_macs(root: &Path) -> Vec<(String, [u8; 6])> {
    let path = root.join("system.macs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (client, mac) = l.split_once('=').expect("client=mac");
            let bytes: Vec<u8> = mac
                .trim()
                .split(':')
                .map(|b| u8::from_str_radix(b, 16).expect("hex MAC byte"))
                .collect();
            (client.to_string(), bytes.try_into().expect("6-byte MAC"))
        })
        .collect()
}

fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Asks the driver VM for its own presence on the link, all of which must go unanswered: ARP
/// for an unused address, a neighbour solicitation for the NIC's link-local address (ping6
/// without a neighbour entry) and ping6 to it straight at the NIC's MAC.
fn probe_the_guest(ns: &str) {
    let quiet = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .success()
    };
    // ping to an address no one has: the namespace ARPs for it (3 requests).
    assert!(
        !quiet(&["ping", "-c", "1", "-w", "3", UNUSED_IP]),
        "something answered for {UNUSED_IP}, which no one owns"
    );
    // IPv6 on the tap, with an address usable at once (no DAD).
    assert!(quiet(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.tap0.disable_ipv6=0"
    ]));
    assert!(quiet(&[
        "ip",
        "addr",
        "add",
        "fe80::1/64",
        "dev",
        "tap0",
        "nodad"
    ]));
    let target = format!("{NIC_LINK_LOCAL}%tap0");
    assert!(
        !quiet(&["ping", "-6", "-c", "2", "-w", "4", &target]),
        "the driver VM answered neighbour solicitation and ping6 at {NIC_LINK_LOCAL}"
    );
    let nic_mac = mac_string(&NIC_MAC);
    assert!(quiet(&[
        "ip",
        "neigh",
        "replace",
        NIC_LINK_LOCAL,
        "lladdr",
        &nic_mac,
        "dev",
        "tap0",
        "nud",
        "permanent",
    ]));
    assert!(
        !quiet(&["ping", "-6", "-c", "2", "-w", "4", &target]),
        "the driver VM answered ping6 at {NIC_LINK_LOCAL} ({nic_mac})"
    );
}

/// Every frame the NIC sent must be a client's: none from the NIC's own MAC, none IPv6.
fn check_only_clients_spoke(frames: &[Vec<u8>], macs: &[(String, [u8; 6])]) {
    let mut per_client = vec![0usize; macs.len()];
    let mut foreign = Vec::new();
    for frame in frames {
        let (Some(src), Some(ethertype)) = (frame.get(6..12), frame.get(12..14)) else {
            foreign.push(format!("runt frame of {} bytes", frame.len()));
            continue;
        };
        let ethertype = u16::from_be_bytes([ethertype[0], ethertype[1]]);
        match macs.iter().position(|(_, m)| m == src) {
            Some(i) if ethertype != ETHERTYPE_IPV6 => per_client[i] += 1,
            _ => foreign.push(format!(
                "from {}{} ethertype {ethertype:#06x}",
                mac_string(src),
                if src == NIC_MAC {
                    " (the NIC's own MAC)"
                } else {
                    ""
                }
            )),
        }
    }
    println!(
        "NIC sent {} frames: {}",
        frames.len(),
        macs.iter()
            .zip(&per_client)
            .map(|((c, _), n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        foreign.is_empty(),
        "{} frames left the NIC that are not a client's IPv4/ARP, e.g.:\n{}",
        foreign.len(),
        foreign
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The capture saw the clients' traffic, so an empty capture cannot pass.
    for ((client, _), n) in macs.iter().zip(&per_client) {
        assert!(*n > 0, "the capture holds no frame from {client}");
    }
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
    let Some(sdk) = sel4::prerequisites(
        "sel4_system",
        &[
            ("ping", "-V"),
            ("tcpdump", "--version"),
            ("python3", "--version"),
        ],
    ) else {
        return;
    };
    let root = sel4::workspace();
    let config = std::env::var("MICROKIT_CONFIG").unwrap_or_else(|_| "debug".into());
    // Only debug kernels print (seL4_DebugPutChar): the monitor's and the PDs' lines.
    let kernel_prints = config == "debug";
    let netvm = sel4::build(&sdk, &config);
    // The namespace and tap first, so the capture covers the guest's whole life.
    let ns = Netns::create("s4t");
    let capture = Capture::start(&ns.0, "tap0");
    let mut qemu = Qemu::boot(&ns);
    let started = qemu.console.started;
    let deadline = started + BOOT_TIMEOUT;
    let mut timings = Vec::new();
    let mut needles = vec!["Run /init as init process", "uio-driver: ready"];
    if kernel_prints {
        needles.insert(0, "vmm: starting guest");
        // Not "echo server up": the clients print it concurrently, char by char, so not even
        // one copy is sure to come out whole (CI saw "client1: echoclient0: echo server u…").
        // The pings below, which wait for their replies, show both clients are up.
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
    // The guest kernel runs with the image's tuned command line
    // (system_plan::GUEST_KERNEL_TUNING, issue #18), as the VMM passed it in the device tree.
    let console = qemu.console();
    let cmdline = console
        .lines()
        .find(|l| l.contains("Kernel command line:"))
        .unwrap_or_else(|| panic!("the guest printed no command line; console:\n{console}"));
    for flag in [
        "randomize_kstack_offset=off",
        "init_on_alloc=0",
        "ipv6.disable=1",
        "lsm=capability",
        "uio_driver.driver_first=1",
        "uio_driver.rx_wakeup=frame-ring",
    ] {
        assert!(cmdline.contains(flag), "{flag} missing: {cmdline}");
    }
    // ... and the driver took its place above the kernel's receive processing (virtio_net's
    // NAPI in a thread, the driver SCHED_FIFO), which a veth cannot show.
    assert!(
        console.contains("uio-driver: driver first: eth0's NAPI in a kernel thread"),
        "the uio-driver did not report --driver-first; console:\n{console}"
    );
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
            &ns,
            ip,
            &["--proto", "udp", "--rates", "1M", "--samples", "200"],
        ) {
            println!("{client} UDP 1472 B: {line}");
        }
        for line in bench(
            &netvm,
            &ns,
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
    // The guest driver's counters reach `netvm stats` through its stats page (issue #18: on
    // seL4 the guest's console was the only place they showed): the echoes above went through
    // the driver, and at 1 Mb/s its packet ring dropped nothing.
    let stats = sel4::stats(&netvm, &qemu);
    let get = |name: &str| {
        stats
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("`netvm stats --qmp` has no '{name}': {stats:?}"))
    };
    let (rx, tx) = (
        get("driver_vm driver.rx_frames"),
        get("driver_vm driver.tx_frames"),
    );
    assert!(
        rx >= 400 && tx >= 400,
        "the driver VM counted {rx} frames in, {tx} out"
    );
    assert_eq!(get("driver_vm nic.rx_ring_drops"), 0);
    probe_the_guest(&ns.0);
    // Let the last replies that might come arrive before the capture stops.
    std::thread::sleep(Duration::from_secs(1));
    check_only_clients_spoke(&capture.finish(), &client_macs(&root));
    qemu.assert_console_clean(&[
        "Kernel panic",
        "unexpected guest fault",
        "MON|ERROR",
        "refused request",
    ]);
    println!("PASS sel4_system");
}
