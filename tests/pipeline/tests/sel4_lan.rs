//! `netvm lan --nodes 2 --sel4`: two seL4 images (each built for its node id by `make` with
//! its own MACs and addresses, each with its own driver VM) booted on QEMU with their NICs on
//! one VDE switch. Checks that both nodes came up (every client answers ping and UDP echo from
//! the host side), that the table has the host row measured for both, and reads the switch's
//! pcap back with tcpdump: frames to and from every client of both nodes.
//!
//! Needs what `sel4_system` needs (`MICROKIT_SDK`, root, QEMU, `make`) and vde2 and tcpdump;
//! otherwise it says what is missing (`testkit::skip`). `#[ignore]`d: `scripts/test.sh`'s seL4
//! stage runs it (two QEMUs at once, a few minutes).
#![cfg(target_os = "linux")]

mod sel4;

use std::path::PathBuf;
use std::process::Command;

/// Builds `netvm` (release) and returns it.
fn netvm() -> PathBuf {
    let root = sel4::workspace();
    sel4::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "--bins", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .args(["-p", "netvm"]),
        "cargo build -p netvm",
    );
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release/netvm")
}

#[test]
#[ignore = "seL4 on QEMU (two machines): scripts/test.sh's seL4 stage"]
fn two_sel4_nodes_on_one_vde_switch() {
    let tools = [
        ("ping", "-V"),
        ("vde_switch", "--version"),
        ("tcpdump", "--version"),
    ];
    if sel4::prerequisites("sel4_lan", &tools).is_none() {
        return;
    }
    let netvm = netvm();
    let root = sel4::workspace();
    let out = root.join(format!("build/lan-sel4-{}", std::process::id()));
    let pcap = out.join("switch.pcap");
    let run = Command::new(&netvm)
        .current_dir(&root)
        .args(["lan", "--nodes", "2", "--sel4", "--switch", "vde"])
        .args(["--duration", "2s", "--rate", "5M", "--out"])
        .arg(&out)
        .output()
        .expect("netvm lan");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stderr}{stdout}");
    assert!(run.status.success(), "netvm lan --sel4 failed");
    for node in 0..2 {
        assert!(
            stderr.contains(&format!("node {node}: up in"))
                && stderr.contains(&format!(
                    "10.0.{node}.10, 10.0.{node}.11 answer ping and UDP echo"
                )),
            "node {node} not reported up"
        );
    }
    let host = stdout
        .lines()
        .find(|l| l.starts_with("host "))
        .unwrap_or_else(|| panic!("no host row:\n{stdout}"));
    assert_eq!(host.matches(" Mb/s").count(), 2, "host row: {host}");
    assert!(!host.contains(" 0.0 Mb/s"), "a node echoed nothing: {host}");

    // The capture, read by tcpdump: frames to and from each client of both nodes.
    for node in 0..2u8 {
        for client in 0..2u8 {
            let mac = netvm_api::lan::client_mac(node, client).unwrap();
            let mac = mac.map(|b| format!("{b:02x}")).join(":");
            for dir in ["src", "dst"] {
                let read = Command::new("tcpdump")
                    .args(["-n", "-r"])
                    .arg(&pcap)
                    .args(["ether", dir, &mac])
                    .output()
                    .expect("tcpdump -r");
                let frames = String::from_utf8_lossy(&read.stdout).lines().count();
                assert!(
                    read.status.success() && frames > 0,
                    "no frame with ether {dir} {mac}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
