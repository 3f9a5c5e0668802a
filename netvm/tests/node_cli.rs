//! `netvm node` as users run it: a master and three nodes, each a process in its own network
//! namespace on a bridge; `exchange` sends a message to every other node and checks every byte
//! of what it receives.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Stdio;

use testkit::bridge::BridgeLan;

const NETVM: &str = env!("CARGO_BIN_EXE_netvm");

#[test]
fn node_exchange_between_every_pair_of_three_namespaces() {
    let test = "node_exchange_between_every_pair_of_three_namespaces";
    let lan = match BridgeLan::create("msgc", &[1, 2, 3]) {
        Ok(lan) => lan,
        Err(e) => {
            return testkit::skip(
                test,
                format!("cannot build the namespaces (needs root): {e}"),
            )
        }
    };
    let mut master = BridgeLan::exec(&lan.host(), Path::new(NETVM))
        .args(["node", "master", "--timeout", "30s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // All three at once: each waits for the others' messages.
    let children: Vec<_> = [1u8, 2, 3]
        .iter()
        .map(|n| {
            BridgeLan::exec(&lan.node(*n), Path::new(NETVM))
                .args([
                    "node",
                    "exchange",
                    "--peers",
                    "1,2,3",
                    "--size",
                    "12000",
                    "--timeout",
                    "20s",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let me = i + 1;
        assert!(out.status.success(), "node {me}:\n{text}");
        for other in (1..=3).filter(|o| *o != me) {
            assert!(
                text.contains(&format!("{other} -> {me}: 12000 bytes verified")),
                "node {me}:\n{text}"
            );
            assert!(
                text.contains(&format!("{me} -> {other}: 12000 bytes delivered")),
                "node {me}:\n{text}"
            );
        }
    }
    let _ = master.kill();
    let out = master.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for n in 1..=3 {
        assert!(
            text.contains(&format!("joined: node {n} at 10.0.{n}.10:1240")),
            "{text}"
        );
    }
}
