//! `uio-driver --loopback`: the real binary over the UIO emulation, with this test as virt_rx,
//! the echo client and virt_tx. The seeded datagrams arrive on rx_active addressed to the
//! client's echo port; echoed back on tx_active they come in again, round after round, until the
//! driver has moved a few hundred; every one stays byte-identical. No network namespace needed.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{FileMap, UioTree};
use sddf::queue::{Capacity, DrainSide, FillSide, Queue};
use sddf::NET_BUFFER_SIZE;

const CAP: u32 = 64;
const SEEDS: usize = 8;

/// The client's echo of `f` (a UDP datagram in an Ethernet frame): addresses and ports swapped.
fn echo(f: &mut [u8]) {
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
    let mut virt_tx = FillSide::new_self_provided(q(3), q(4), 64).unwrap();
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

    let mut buf = vec![0u8; NET_BUFFER_SIZE];
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut echoed = 0usize;
    // A TX buffer is secured before a frame is taken, so no echo is lost for lack of one.
    let mut spare = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while echoed < 400 && Instant::now() < deadline {
        let mut idle = true;
        loop {
            if spare.is_none() {
                spare = virt_tx.free.dequeue().ok();
            }
            let Some(t) = spare else { break };
            let Ok(d) = virt_rx.active.dequeue() else {
                break;
            };
            idle = false;
            let len = usize::from(d.len);
            rx_data
                .read(d.io_or_offset as usize, &mut buf[..len])
                .unwrap();
            virt_rx.free.enqueue(d.with_len(0)).unwrap();
            // Every round the same datagrams: from the peer to the client's echo port.
            assert_eq!(len, 1514);
            assert_eq!(
                &buf[0..6],
                &[0x52, 0x54, 1, 0, 0, 0x10],
                "to the client's MAC"
            );
            assert_eq!(&buf[36..38], &1235u16.to_be_bytes(), "to the echo port");
            if seen.len() < SEEDS {
                seen.push(buf[..len].to_vec());
            } else {
                assert!(seen.contains(&buf[..len].to_vec()), "a datagram changed");
            }
            echo(&mut buf[..len]);
            tx_data.write(t.io_or_offset as usize, &buf[..len]).unwrap();
            virt_tx.active.enqueue(t.with_len(len as u16)).unwrap();
            spare = None;
            echoed += 1;
        }
        if virt_tx.active.take_signal_request() {
            tree.irq("tx_irq").fire();
        }
        if virt_rx.free.take_signal_request() {
            tree.irq("rx_irq").fire();
        }
        tree.irq("tx_irq").drain_rearms();
        tree.irq("rx_irq").drain_rearms();
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(echoed >= 400, "only {echoed} datagrams circled");
    assert_eq!(seen.len(), SEEDS);
}
