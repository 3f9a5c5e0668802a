//! `uio-driver --loopback`: the real binary over the UIO emulation, with this test as virt_rx,
//! the echo client and virt_tx. The seeded datagrams arrive on rx_active addressed to the
//! client's echo port; echoed back on tx_active they come in again, round after round, until the
//! driver has moved a few hundred; every one stays byte-identical. No network namespace needed.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{FileMap, UioTree};
use sddf::queue::{Capacity, DrainSide, FillSide, Queue};

const CAP: u32 = 64;
const SEEDS: usize = 8;

/// The client's echo of `f` (a UDP datagram in an Ethernet frame): addresses and ports swapped.
fn echo_in_place(f: &mut [u8]) {
    let swap = |f: &mut [u8], a: usize, b: usize, n: usize| {
        for i in 0..n {
            f.swap(a + i, b + i);
        }
    };
    swap(f, 0, 6, 6);
    swap(f, 26, 30, 4);
    swap(f, 34, 36, 2);
}

#[test]
fn seeded_datagrams_circle_between_the_driver_and_an_echoing_client() {
    let (mut tree, files) = UioTree::standard(u64::from(CAP), 64, 1, 64);
    let map = |n: &str| FileMap::open(&files.iter().find(|(m, _)| m == n).unwrap().1);
    let config = tree.dir.0.join("net_driver_config");
    std::fs::write(&config, common::driver_config(CAP, CAP)).unwrap();
    let m: Vec<FileMap> = [
        "rx_free",
        "rx_active",
        "rx_data",
        "tx_free",
        "tx_active",
        "tx_data0",
    ]
    .iter()
    .map(|n| map(n))
    .collect();
    let q = |i: usize| Queue::new(m[i].region(), Capacity::new(CAP).unwrap()).unwrap();
    let mut virt_rx = DrainSide::new(q(0), q(1));
    virt_rx.provide_all_buffers(0, 64).unwrap();
    let virt_tx = FillSide::new_self_provided(q(3), q(4), 64).unwrap();
    let (rx_data, tx_data) = (m[2].region(), m[5].region());

    let mut child = Command::new(env!("CARGO_BIN_EXE_uio-driver"))
        .args([
            "--loopback",
            &format!("10.0.0.1,10.0.0.10,52:54:01:00:00:10,{SEEDS}"),
        ])
        .arg("--config")
        .arg(&config)
        .arg("--sysfs-root")
        .arg(&tree.sysfs)
        .arg("--dev-root")
        .arg(&tree.dev)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = common::stdout_lines(&mut child);
    let first = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        first,
        format!("uio-driver: loopback: {SEEDS} datagrams from 10.0.0.1 to 10.0.0.10 circle through the reflector")
    );

    let mut echo = common::QueueEcho::new(virt_rx, virt_tx, rx_data, tx_data);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut echoed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while echoed < 400 && Instant::now() < deadline {
        let taken = echo.round(&mut tree, &mut |f| {
            // Every round the same datagrams: from the peer to the client's echo port.
            assert_eq!(f.len(), 1514);
            assert_eq!(
                &f[0..6],
                &[0x52, 0x54, 1, 0, 0, 0x10],
                "to the client's MAC"
            );
            assert_eq!(&f[36..38], &1235u16.to_be_bytes(), "to the echo port");
            if seen.len() < SEEDS {
                seen.push(f.to_vec());
            } else {
                assert!(seen.iter().any(|s| s == f), "a datagram changed");
            }
            echo_in_place(f);
            echoed += 1;
            true
        });
        if taken == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(echoed >= 400, "only {echoed} datagrams circled");
    assert_eq!(seen.len(), SEEDS);
}
