//! `netvm lan` end to end in host mode: N systems of the real system.xml, each `netvm run` in a
//! namespace of its own, on a real VDE switch (and on the Linux bridge fallback). Checks that
//! every node came up (ping and UDP echo from the host side), that the N×N table was printed
//! with a measured host row and every node-to-node cell measured by the nodes' own originating
//! clients (good echoes, none wrong, a round trip), that every pair of nodes exchanged node
//! messages both ways with verified content (the messages table), and reads the switch's pcap back: frames to and from every node. Bad input is refused before anything
//! starts.
//!
//! The LAN runs are ignored by default (about 30 s each; the `lan` stage of scripts/test.sh runs
//! them with `--ignored`); they need root and vde2, tcpdump, ping and ethtool, otherwise they
//! say they were skipped.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::system::{exclusive, system_bins};
use testkit::lan_output::{check_messages, pair_counts};

fn netvm_lan(args: &[&str]) -> Output {
    netvm_lan_pid(args).0
}

/// Runs `netvm lan` with `args`; returns its output and its pid (its namespaces are
/// `nvl<pid>-*`).
fn netvm_lan_pid(args: &[&str]) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .current_dir(common::workspace())
        .arg("lan")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("netvm lan");
    let pid = child.id();
    (child.wait_with_output().expect("netvm lan"), pid)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (source MAC, destination MAC) of every frame in the pcap, read with `pcap-file` (raw
/// packets: the capture keeps each frame's first 256 bytes, which pcap-file 2.0's checked
/// packets refuse).
fn pcap_macs(path: &Path) -> Vec<([u8; 6], [u8; 6])> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader =
        pcap_file::pcap::PcapReader::new(std::io::BufReader::new(file)).expect("a pcap file");
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut out = Vec::new();
    while let Some(packet) = reader.next_raw_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let d = &packet.data;
        if d.len() >= 12 {
            out.push((d[6..12].try_into().unwrap(), d[0..6].try_into().unwrap()));
        }
    }
    out
}

/// Runs `netvm lan --nodes <nodes>` with `extra` and checks everything a run must show.
fn lan_run(test: &str, nodes: u8, extra: &[&str]) {
    let Some(_one) = exclusive(test) else {
        return;
    };
    let mut tools = vec![
        ("tcpdump", "--version"),
        ("ping", "-V"),
        ("ethtool", "--version"),
    ];
    if !extra.contains(&"bridge") {
        tools.push(("vde_switch", "--version"));
    }
    if !testkit::have_tools(test, &tools) {
        return;
    }
    system_bins();
    let out_dir = common::temp_dir(test);
    let pcap = out_dir.join("lan.pcap");
    let n = nodes.to_string();
    let mut args = vec!["--nodes", &n, "--duration", "1s", "--rate", "20M"];
    args.extend(extra);
    let out_arg = out_dir.display().to_string();
    let pcap_arg = pcap.display().to_string();
    args.extend(["--out", &out_arg, "--pcap", &pcap_arg]);
    let in_system = extra.contains(&"--in-system");
    let (run, pid) = netvm_lan_pid(&args);
    let (stdout, stderr) = text(&run);
    println!("{stderr}{stdout}");
    assert!(run.status.success(), "netvm lan failed");
    let switch = if extra.contains(&"bridge") {
        "switch: Linux bridge"
    } else {
        "switch: VDE switch"
    };
    assert!(stdout.contains(switch), "{stdout}");

    // Every node came up, answering ping and UDP echo from the host side on both clients.
    for node in 0..nodes {
        assert!(
            stderr.contains(&format!("node {node}: up in",))
                && stderr.contains(&format!(
                    "10.0.{node}.10, 10.0.{node}.11 answer ping and UDP echo"
                )),
            "node {node} not reported up:\n{stderr}"
        );
    }
    // The table: a header with every node, the host row measured for every node, one row per
    // node with `-` where nothing was measured, and the reasons.
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("from \\ to"))
        .unwrap_or_else(|| panic!("no table:\n{stdout}"));
    for node in 0..nodes {
        assert!(lines[header].contains(&format!("node {node}")), "{stdout}");
    }
    let host = lines[header + 1];
    assert!(host.starts_with("host"), "{stdout}");
    assert_eq!(
        host.matches(" Mb/s").count(),
        usize::from(nodes),
        "host row: {host}"
    );
    assert!(!host.contains(" 0.0 Mb/s"), "a node echoed nothing: {host}");
    // Every node measured every other node itself: its client1 originated UDP and TCP echo
    // requests to the other nodes' client0, every off-diagonal cell filled, and each pair's
    // counters printed: good echoes, none wrong, a round trip.
    for from in 0..nodes {
        let row = lines[header + 2 + usize::from(from)];
        assert!(row.starts_with(&format!("node {from}")), "{stdout}");
        assert_eq!(
            row.matches(" Mb/s").count(),
            usize::from(nodes) - usize::from(!in_system),
            "node {from}'s row: {row}"
        );
        for to in (0..nodes).filter(|to| in_system || *to != from) {
            let (echoed, bad, rtt) = pair_counts(&stdout, from, to);
            assert!(
                echoed > 0 && bad == 0 && rtt > 0,
                "node {from} -> node {to}: {echoed} echoed, {bad} bad, RTT {rtt} us:\n{stdout}"
            );
        }
    }
    assert!(!stdout.contains("NOT REACHED"), "{stdout}");
    check_messages(&stdout, nodes);
    assert_eq!(
        stdout.contains("node n -> node n: not a path on the LAN"),
        !in_system,
        "the diagonal's reason:\n{stdout}"
    );

    // The switch's pcap, read back here: frames from the host side to every node's clients
    // and back (the switch is a hub, so the host side's port sees them all).
    let frames = pcap_macs(&pcap);
    assert!(!frames.is_empty(), "empty capture");
    for node in 0..nodes {
        for client in 0..2 {
            let mac = netvm_api::lan::client_mac(node, client).unwrap();
            let to = frames.iter().filter(|(_, d)| *d == mac).count();
            let from = frames.iter().filter(|(s, _)| *s == mac).count();
            assert!(
                to > 0 && from > 0,
                "node {node} client {client}: {to} frames to it, {from} from it"
            );
        }
    }
    // Inside one node, client1's echo requests to client0 never left the system: no unicast
    // frame between the two on the switch (local delivery), though they were echoed (above).
    if in_system {
        for node in 0..nodes {
            let c0 = netvm_api::lan::client_mac(node, 0).unwrap();
            let c1 = netvm_api::lan::client_mac(node, 1).unwrap();
            let leaked = frames
                .iter()
                .filter(|f| **f == (c1, c0) || **f == (c0, c1))
                .count();
            assert_eq!(
                leaked, 0,
                "node {node}: client1 <-> client0 frames on the switch"
            );
        }
    }
    // The run's own count of the same file.
    assert!(
        stdout.contains(&format!("switch capture {}", pcap.display())),
        "{stdout}"
    );
    // Nothing left behind: no namespace of this run.
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let pid_prefix = format!("nvl{pid}-");
    let left: Vec<String> = String::from_utf8_lossy(&namespaces.stdout)
        .lines()
        .filter(|l| l.starts_with(&pid_prefix))
        .map(str::to_string)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
#[ignore = "lan stage: three host-mode systems on a VDE switch, each also echoing between its own clients, ~30 s; scripts/test.sh runs it (--ignored)"]
fn three_host_nodes_on_a_vde_switch() {
    lan_run("lan_vde", 3, &["--in-system"]);
}

#[test]
#[ignore = "lan stage: two host-mode systems on a Linux bridge, ~20 s; scripts/test.sh runs it (--ignored)"]
fn two_host_nodes_on_the_bridge_fallback() {
    lan_run("lan_bridge", 2, &["--switch", "bridge"]);
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// The run directories in /dev/shm of runner `pid`.
fn shm_run_dirs(pid: u32) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("netvm-run.{pid}.")))
        .collect()
}

#[test]
#[ignore = "lan stage: two host-mode systems on a VDE switch stopped by SIGTERM, ~15 s; scripts/test.sh runs it (--ignored)"]
fn sigterm_tears_the_whole_lan_down() {
    use std::io::BufRead;
    let test = "lan_sigterm";
    let Some(_one) = exclusive(test) else {
        return;
    };
    let tools = [
        ("tcpdump", "--version"),
        ("ping", "-V"),
        ("ethtool", "--version"),
        ("vde_switch", "--version"),
    ];
    if !testkit::have_tools(test, &tools) {
        return;
    }
    system_bins();
    let out_dir = common::temp_dir(test);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .current_dir(common::workspace())
        .args([
            "lan",
            "--nodes",
            "2",
            "--duration",
            "60s",
            "--rate",
            "5M",
            "--out",
        ])
        .arg(&out_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("netvm lan");
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Kept reading to the end, so the run never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("node 1: up in") {
            break;
        }
    }
    assert!(
        seen.contains("node 1: up in"),
        "the LAN did not come up:\n{seen}"
    );
    // Both nodes are up and the first measurement (60 s) is running: stop it.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let during = processes_mentioning(&out_dir.display().to_string());
    assert!(
        during.len() >= 3,
        "no switch, plugs or capture running: {during:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "a stopped run must not report success");
    let left = processes_mentioning(&out_dir.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("nvl{pid}-");
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&prefix),
        "namespaces left behind"
    );
    // The runners (`node <n>: netvm run (pid <pid>) ...`) left no run directory behind.
    seen.extend(rx.try_iter().map(|l| l + "\n"));
    let runners: Vec<u32> = seen
        .lines()
        .filter_map(|l| {
            l.split("netvm run (pid ")
                .nth(1)?
                .split(')')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(runners.len(), 2, "runner pids not reported:\n{seen}");
    for runner in runners {
        let left = shm_run_dirs(runner);
        assert!(
            left.is_empty(),
            "run directories left in /dev/shm: {left:?}\n{seen}"
        );
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn a_lan_of_no_nodes_or_of_too_many_is_refused() {
    for (nodes, says) in [("0", "at least one node"), ("300", "at most 255")] {
        let run = netvm_lan(&["--nodes", nodes]);
        let (_, stderr) = text(&run);
        assert_eq!(run.status.code(), Some(2), "--nodes {nodes}: {stderr}");
        assert!(stderr.contains(says), "--nodes {nodes}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn more_sel4_nodes_than_nodes_is_refused() {
    let run = netvm_lan(&["--nodes", "2", "--sel4-nodes", "3"]);
    let (_, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--sel4-nodes 3: more than the 2 nodes"),
        "{stderr}"
    );
}

#[test]
fn sel4_without_the_sdk_is_refused() {
    let run = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .current_dir(common::workspace())
        .args(["lan", "--nodes", "2", "--sel4"])
        .env_remove("MICROKIT_SDK")
        .output()
        .expect("netvm lan");
    let (_, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--sel4 needs the Microkit SDK: MICROKIT_SDK is not set"),
        "{stderr}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .current_dir(common::workspace())
        .args(["lan", "--nodes", "2", "--sel4"])
        .env("MICROKIT_SDK", "/nonexistent/sdk")
        .output()
        .expect("netvm lan");
    let (_, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no bin/microkit"), "{stderr}");
}

#[test]
fn asking_for_vde_where_it_is_missing_is_refused() {
    // A PATH without vde_switch (and without anything else: the refusal comes first).
    let empty = common::temp_dir("lan-no-vde");
    let run = Command::new(env!("CARGO_BIN_EXE_netvm"))
        .current_dir(common::workspace())
        .args(["lan", "--nodes", "1", "--switch", "vde"])
        .env("PATH", &empty)
        .output()
        .expect("netvm lan");
    let (_, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--switch vde: vde_switch / vde_plug2tap not found (Debian package vde2"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&empty);
}
