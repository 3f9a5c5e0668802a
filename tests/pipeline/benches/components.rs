//! Micro-benchmark: nanoseconds per frame spent inside virt_rx, virt_tx and the copier, in one
//! process over shared memory, batches of 32. Only the component's own `notified` calls are
//! timed; the scripted driver and clients around them are not. Each component publishes its
//! counters into a stats region after every batch, as in a running system.
//!
//! `cargo bench -p pipeline-tests --bench components [-- ROUNDS]`
use std::time::{Duration, Instant};

use netvm_api::options::{NetOptions, DRIVER_OFFSETS};
use netvm_api::stats::StatsWriter;
use sddf::config::*;
use sddf::queue::{DrainSide, FillSide};
use sddf::shm::OwnedRegion;
use sddf::testing::{Layout, RecordingNotifier};
use sddf::BuffDesc;
use zerocopy::FromZeros;

const CAP: u16 = 512;
const BATCH: usize = 32;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

fn report(name: &str, spent: Duration, frames: u64) {
    println!(
        "{name:8} {:7.1} ns/frame  ({frames} frames, batch {BATCH})",
        spent.as_nanos() as f64 / frames as f64
    );
}

fn virt_rx_and_copier(rounds: u64) {
    let mut l = Layout::new();
    let mut rx = NetVirtRxConfig::new_box_zeroed().unwrap();
    rx.magic = NET_MAGIC;
    rx.driver = l.connection(CAP, 0);
    rx.data = DeviceRegionResource {
        region: l.region(CAP as u64 * 2048),
        io_addr: 0,
    };
    let virt_copier = l.connection(CAP, 1);
    rx.clients[0].conn = virt_copier;
    rx.clients[0].mac_addrs[0] = MAC;
    rx.clients[0].num_macs = 1;
    rx.num_clients = 1;
    let mut cp = NetCopyConfig::new_box_zeroed().unwrap();
    cp.magic = NET_MAGIC;
    cp.rx = virt_copier;
    cp.rx_data[0] = rx.data.region;
    cp.client = l.connection(CAP, 1);
    cp.client_data = l.region(CAP as u64 * 2048);
    let opts = NetOptions::new(DRIVER_OFFSETS, 0);
    let mut n = RecordingNotifier::default();
    let space = &l.space;
    let mut vrx = virt_rx::VirtRx::new(&rx, &opts, &space, &mut n).unwrap();
    let mut copier = copier::Copier::new(&cp, &space).unwrap();
    let stats = [OwnedRegion::new(4096), OwnedRegion::new(4096)];
    vrx.attach_stats(StatsWriter::new(stats[0].region(), "virt_rx").unwrap())
        .unwrap();
    copier
        .attach_stats(StatsWriter::new(stats[1].region(), "copier").unwrap())
        .unwrap();
    let (f, a) = l.queues(&rx.driver);
    let mut drv = FillSide::new(f, a);
    let (f, a) = l.queues(&cp.client);
    let mut client = DrainSide::new(f, a);
    let dma = l.view(&rx.data.region);
    let mut frame = vec![0u8; 1514];
    frame[..6].copy_from_slice(&MAC);
    let (mut t_rx, mut t_cp) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        for _ in 0..BATCH {
            let d = drv.free.dequeue().unwrap();
            dma.write(d.io_or_offset as usize, &frame[..14]).unwrap();
            drv.active
                .enqueue(BuffDesc::new(d.io_or_offset, 1514, 0))
                .unwrap();
        }
        let t = Instant::now();
        vrx.notified(&mut n);
        t_rx += t.elapsed();
        let t = Instant::now();
        copier.notified(&mut n);
        t_cp += t.elapsed();
        while let Ok(d) = client.active.dequeue() {
            client.free.enqueue(d).unwrap();
        }
        // virt_rx takes the DMA buffers back from the copier.
        let t = Instant::now();
        vrx.notified(&mut n);
        t_rx += t.elapsed();
        n.events.clear();
    }
    let frames = rounds * BATCH as u64;
    assert_eq!(copier.counters.frames, frames);
    report("virt_rx", t_rx, frames);
    report("copier", t_cp, frames);
    // The copier's time is dominated by the 1514-byte copy; measure the copy alone to subtract.
    let src = l.view(&rx.data.region);
    let dst = l.view(&cp.client_data);
    let t = Instant::now();
    for i in 0..frames as usize {
        let off = (i % CAP as usize) * 2048;
        dst.copy_from_region(off, &src, off, 1514).unwrap();
    }
    report("  (copy)", t.elapsed(), frames);
}

fn virt_tx(rounds: u64) {
    let mut l = Layout::new();
    let mut tx = NetVirtTxConfig::new_box_zeroed().unwrap();
    tx.magic = NET_MAGIC;
    tx.driver = l.connection(CAP, 0);
    let conn = l.connection(CAP, 1);
    tx.clients[0].conn = conn;
    tx.clients[0].regions[0].data = DeviceRegionResource {
        region: l.region(CAP as u64 * 2048),
        io_addr: 0,
    };
    tx.clients[0].regions[0].num_buffers = CAP as u32;
    tx.clients[0].num_regions = 1;
    tx.num_clients = 1;
    let opts = NetOptions::new(DRIVER_OFFSETS, 0);
    let mut n = RecordingNotifier::default();
    let space = &l.space;
    let mut v = virt_tx::VirtTx::new(&tx, &opts, &space, &mut n).unwrap();
    let stats = OwnedRegion::new(4096);
    v.attach_stats(StatsWriter::new(stats.region(), "virt_tx").unwrap())
        .unwrap();
    let (f, a) = l.queues(&conn);
    let mut client = FillSide::new_self_provided(f, a, CAP).unwrap();
    let (f, a) = l.queues(&tx.driver);
    let mut drv = DrainSide::new(f, a);
    let mut spent = Duration::ZERO;
    for _ in 0..rounds {
        for _ in 0..BATCH {
            let d = client.free.dequeue().unwrap();
            client
                .active
                .enqueue(BuffDesc::new(d.io_or_offset, 1514, 0))
                .unwrap();
        }
        let t = Instant::now();
        v.notified(&mut n);
        spent += t.elapsed();
        while let Ok(d) = drv.active.dequeue() {
            drv.free.enqueue(d).unwrap();
        }
        let t = Instant::now();
        v.notified(&mut n);
        spent += t.elapsed();
        n.events.clear();
    }
    let frames = rounds * BATCH as u64;
    assert_eq!(v.client_counters(0).unwrap().frames, frames);
    report("virt_tx", spent, frames);
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000u64);
    // A short warm-up run, then the measured one.
    virt_rx_and_copier(rounds / 10);
    virt_tx(rounds / 10);
    println!("--- measured");
    virt_rx_and_copier(rounds);
    virt_tx(rounds);
}
