//! Benchmark (root): frames/s moved veth <-> sDDF queues by the driver core with a reflector on the
//! queue side, against a plain TPACKET_V3 reflector on the same veth in the same run, plus the
//! median RTT at low load (100 Mb/s of 1514-byte frames = 1472-byte UDP payloads on the wire).
//!
//! `cargo run -p uio-driver --release --example veth_bench [-- <seconds per point>]`
//!
//! Both reflectors use the same `PacketNic` code (TPACKET_V3 ring, `sendmmsg`) and set byte 6
//! (first source-MAC byte) to 0xee; the load generator lives in the peer namespace and counts
//! only marked echoes of its own EtherType. Each is run with per-frame wake-ups (the driver's
//! default), with block-retire wake-ups only (TPACKET_V3's stock behaviour) and with the
//! TPACKET_V2 slot ring (the driver VM's choice).
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{enter_ns, is_test_frame, test_frame, RawSocket, VethPair};
use sddf::queue::{queue_bytes, Capacity, DrainSide, FillSide, Queue};
use sddf::shm::{OwnedRegion, Region};
use sddf::NET_BUFFER_SIZE;
use uio_driver::driver::{Driver, DriverQueues, Nic, RxVerdict};
use uio_driver::host::eventfd_platform;
use uio_driver::packet::{PacketConfig, PacketNic, RxWakeup};

const CAP: usize = 512;
const MARK: u8 = 0xee;

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Driver,
    Plain,
}

fn poll_nic(nic: &dyn Nic, ms: i32) {
    let mut fds: Vec<libc::pollfd> = nic
        .poll_set(true, false)
        .iter()
        .map(|p| libc::pollfd {
            fd: p.fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: a valid, exclusively borrowed pollfd array.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

/// The plain reflector: ring -> mark -> sendmmsg, until `stop`.
fn plain_reflector(iface: &str, wakeup: RxWakeup, stop: &AtomicBool) {
    let mut nic = PacketNic::open(
        iface,
        PacketConfig {
            wakeup,
            ..Default::default()
        },
    )
    .unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        poll_nic(&nic, 50);
        loop {
            frames.clear();
            let more = nic
                .receive(64, &mut |f| {
                    frames.push(f.data.to_vec());
                    RxVerdict::Consumed
                })
                .unwrap();
            for f in &frames {
                if let Some(b) = nic.tx_buffer() {
                    b[..f.len()].copy_from_slice(f);
                    b[6] = MARK;
                    nic.tx_commit(f.len());
                }
            }
            nic.tx_flush().unwrap();
            if !more {
                break;
            }
        }
    }
}

fn queue(r: Region<'_>, cap: Capacity) -> Queue<'_> {
    Queue::new(r, cap).unwrap()
}

/// The driver core on `iface` plus a reflector on the queue side, until `stop`.
fn driver_reflector(ns: &str, iface: &str, wakeup: RxWakeup, stop: &AtomicBool) {
    let cap = Capacity::new(CAP as u32).unwrap();
    let q = || OwnedRegion::new(queue_bytes(CAP));
    let (rx_free, rx_active, tx_free, tx_active) = (q(), q(), q(), q());
    let rx_data = OwnedRegion::new(CAP * NET_BUFFER_SIZE);
    let tx_data = OwnedRegion::new(CAP * NET_BUFFER_SIZE);
    let (mut platform, mut peer) = eventfd_platform().unwrap();
    // Regions (not the OwnedRegions behind them) may cross threads.
    let shared = [
        rx_free.region(),
        rx_active.region(),
        rx_data.region(),
        tx_free.region(),
        tx_active.region(),
        tx_data.region(),
    ];
    let [rf, ra, _, tf, ta, _] = shared;
    let mut virt_rx = DrainSide::new(queue(rf, cap), queue(ra, cap));
    virt_rx.provide_all_buffers(0, CAP as u16).unwrap();
    let mut virt_tx =
        FillSide::new_self_provided(queue(tf, cap), queue(ta, cap), CAP as u16).unwrap();
    std::thread::scope(|s| {
        let driver = s.spawn(move || {
            enter_ns(ns);
            let [rf, ra, rd, tf, ta, td] = shared;
            let q = |r| queue(r, cap);
            let mut nic = PacketNic::open(
                iface,
                PacketConfig {
                    wakeup,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut d = Driver::new(DriverQueues {
                rx: FillSide::new(q(rf), q(ra)),
                rx_data: rd,
                tx: DrainSide::new(q(tf), q(ta)),
                tx_data: vec![td],
            });
            d.run(&mut nic, &mut platform, &mut |_, _| {
                !stop.load(Ordering::Relaxed)
            })
            .unwrap();
            *d.counters()
        });
        virt_tx.free.cancel_signal();
        let (rxd, txd) = (rx_data.region(), tx_data.region());
        let mut buf = vec![0u8; NET_BUFFER_SIZE];
        while !stop.load(Ordering::Relaxed) {
            let (mut echoed, mut returned) = (false, false);
            while let Ok(d) = virt_rx.active.dequeue() {
                let len = usize::from(d.len);
                rxd.copy_to_slice(d.io_or_offset as usize, &mut buf[..len])
                    .unwrap();
                virt_rx.free.enqueue(d.with_len(0)).unwrap();
                returned = true;
                if let Ok(t) = virt_tx.free.dequeue() {
                    buf[6] = MARK;
                    txd.copy_from_slice(t.io_or_offset as usize, &buf[..len])
                        .unwrap();
                    virt_tx.active.enqueue(t.with_len(len as u16)).unwrap();
                    echoed = true;
                }
            }
            if echoed && virt_tx.active.take_signal_request() {
                peer.notify_tx().unwrap();
            }
            if returned && virt_rx.free.take_signal_request() {
                peer.notify_rx().unwrap();
            }
            // Double-check before sleeping. TX buffers are reclaimed lazily (a frame that finds
            // none is dropped, as a client would), so tx_free signals are never requested.
            if virt_rx.active.rearm().unwrap() {
                continue;
            }
            peer.wait_doorbells(Duration::from_millis(50)).unwrap();
        }
        // Wake the driver so it sees `stop`.
        peer.notify_rx().unwrap();
        let c = driver.join().unwrap();
        eprintln!("    driver counters: {c}");
    });
}

/// Sends `frame(seq)` at `pps` (0 = as fast as possible) for `secs`; counts marked echoes and
/// collects RTTs from the timestamp in bytes 18..26.
fn generate(v: &VethPair, len: usize, pps: u64, secs: f64) -> (u64, u64, Vec<u64>) {
    let ns = v.ns_peer.clone();
    let iface = v.if_peer.clone();
    let done = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let rx = {
        let (ns, iface, done, echoes) = (ns.clone(), iface.clone(), done.clone(), echoes.clone());
        std::thread::spawn(move || {
            enter_ns(&ns);
            let mut nic = PacketNic::open(&iface, PacketConfig::default()).unwrap();
            let mut rtts = Vec::new();
            while !done.load(Ordering::Relaxed) {
                poll_nic(&nic, 20);
                let now = t0.elapsed().as_nanos() as u64;
                nic.receive(usize::MAX, &mut |f| {
                    if is_test_frame(f.data) && f.data[6] == MARK && f.data.len() >= 26 {
                        echoes.fetch_add(1, Ordering::Relaxed);
                        let ts = u64::from_be_bytes(f.data[18..26].try_into().unwrap());
                        rtts.push(now.saturating_sub(ts));
                    }
                    RxVerdict::Consumed
                })
                .unwrap();
            }
            rtts
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let sock = VethPair::in_ns(&ns, move || RawSocket::open(&iface, 0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let mut f = test_frame(0, len);
    while Instant::now() < end {
        if let Some(ns) = (sent * 1_000_000_000).checked_div(pps) {
            let due = start + Duration::from_nanos(ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        f[14..18].copy_from_slice(&(sent as u32).to_be_bytes());
        f[18..26].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
        sock.send(&f);
        sent += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let mut rtts = rx.join().unwrap();
    rtts.sort_unstable();
    (sent, echoes.load(Ordering::Relaxed), rtts)
}

fn run_point(v: &VethPair, path: Path, wakeup: RxWakeup, secs: f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let reflector = {
        let (ns, iface, stop) = (v.ns_driver.clone(), v.if_driver.clone(), stop.clone());
        std::thread::spawn(move || {
            enter_ns(&ns);
            match path {
                Path::Driver => driver_reflector(&ns, &iface, wakeup, &stop),
                Path::Plain => plain_reflector(&iface, wakeup, &stop),
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let name = match path {
        Path::Driver => "driver core + queue reflector",
        Path::Plain => "plain packet-ring reflector  ",
    };
    for len in [60usize, 1514] {
        let (sent, echoed, _) = generate(v, len, 0, secs);
        println!(
            "{name} {wakeup:?}: {len:>4} B max rate: offered {:.1} kpps, echoed {:.1} kpps ({:.2} Gb/s), {:.1}% echoed",
            sent as f64 / secs / 1e3,
            echoed as f64 / secs / 1e3,
            echoed as f64 * len as f64 * 8.0 / secs / 1e9,
            100.0 * echoed as f64 / sent.max(1) as f64
        );
    }
    // 100 Mb/s of 1472-byte UDP payloads: 100e6 / 8 / 1472 = 8492 frames/s.
    let (sent, echoed, rtts) = generate(v, 1514, 8492, secs);
    let pct = |p: usize| {
        rtts.get(rtts.len() * p / 100)
            .map_or(0.0, |n| *n as f64 / 1e3)
    };
    println!(
        "{name} {wakeup:?}: 1514 B at 100 Mb/s: echoed {echoed}/{sent}, RTT median {:.1} us, p90 {:.1} us, p99 {:.1} us",
        pct(50),
        pct(90),
        pct(99)
    );
    stop.store(true, Ordering::Relaxed);
    reflector.join().unwrap();
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let v = match VethPair::new("bench") {
        Ok(v) => v,
        Err(e) => {
            eprintln!("veth_bench needs root and iproute2: {e}");
            std::process::exit(2);
        }
    };
    for wakeup in [
        RxWakeup::PerFrame,
        RxWakeup::BlockRetire,
        RxWakeup::FrameRing,
    ] {
        for path in [Path::Plain, Path::Driver] {
            run_point(&v, path, wakeup, secs);
        }
    }
}
