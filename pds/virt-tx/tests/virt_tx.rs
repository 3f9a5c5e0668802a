//! virt_tx against a scripted driver and scripted clients over real shared memory.
use netvm_api::options::{NetOptions, DRIVER_OFFSETS, FAIR_TX, LAZY_COMPLETIONS};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::rig::TxRig as Rig;
use virt_tx::VirtTx;

const CAP: u16 = 8;
const IO: [u64; 2] = [0x5fe0_0000, 0x5fd0_0000];

fn rig(driver_cap: u16) -> Rig {
    Rig::new(driver_cap, CAP, &IO)
}

#[test]
fn frames_reach_the_driver_as_io_addresses_and_complete_back_to_their_owner() {
    let r = rig(16);
    let mut n = RecordingNotifier::default();
    let mut v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let (mut c0, mut c1) = (r.client(0), r.client(1));
    let mut drv = r.driver();
    let a = r.send(&mut c0, 0, 0xa, 100);
    let b = r.send(&mut c1, 1, 0xb, 200);
    v.notified(&mut n);
    assert_eq!(n.take(), vec![(0, true)], "driver notified, deferred");
    let got: Vec<BuffDesc> = std::iter::from_fn(|| drv.active.dequeue().ok()).collect();
    let mut seen: Vec<(u64, u16)> = got.iter().map(|d| (d.io_or_offset, d.len)).collect();
    seen.sort();
    let mut want = vec![(IO[0] + a.io_or_offset, 100), (IO[1] + b.io_or_offset, 200)];
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(v.in_flight(), 2);
    // Complete them in reverse order; each goes back to its owner, as an offset.
    for d in got.iter().rev() {
        drv.free.enqueue(d.with_len(0)).unwrap();
    }
    v.notified(&mut n);
    let mut ev = n.take();
    ev.sort();
    assert_eq!(ev, vec![(1, false), (2, false)]);
    assert_eq!(v.in_flight(), 0);
    assert_eq!(c0.free.len().unwrap(), CAP);
    assert_eq!(c1.free.len().unwrap(), CAP);
}

#[test]
fn offset_mode_gives_the_driver_offset_and_global_region_oid() {
    let r = rig(16);
    let mut n = RecordingNotifier::default();
    let opts = NetOptions::new(DRIVER_OFFSETS, 0);
    let mut v = VirtTx::new(&r.cfg, &opts, &&r.layout.space, &mut n).unwrap();
    let (mut c0, mut c1) = (r.client(0), r.client(1));
    let mut drv = r.driver();
    r.send(&mut c1, 1, 1, 64);
    r.send(&mut c0, 0, 2, 64);
    v.notified(&mut n);
    let got: Vec<BuffDesc> = std::iter::from_fn(|| drv.active.dequeue().ok()).collect();
    let mut seen: Vec<(u64, u8)> = got.iter().map(|d| (d.io_or_offset, d.oid())).collect();
    seen.sort();
    assert_eq!(seen, vec![(0, 0), (0, 1)]);
    for d in got {
        drv.free.enqueue(d).unwrap();
    }
    v.notified(&mut n);
    assert_eq!((c0.free.len().unwrap(), c1.free.len().unwrap()), (CAP, CAP));
}

#[test]
fn bad_descriptors_bounce_to_their_client_and_are_counted() {
    let r = rig(16);
    let mut n = RecordingNotifier::default();
    let mut v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let mut c0 = r.client(0);
    let mut drv = r.driver();
    // The client takes five buffers and sends garbage descriptors in their place.
    for _ in 0..5 {
        c0.free.dequeue().unwrap();
    }
    for d in [
        BuffDesc::new(0, 0, 0),         // empty
        BuffDesc::new(0, 2049, 0),      // too long
        BuffDesc::new(0, 60, 1),        // no region 1
        BuffDesc::new(100, 60, 0),      // misaligned
        BuffDesc::new(2048 * 8, 60, 0), // past the region
    ] {
        c0.active.enqueue(d).unwrap();
    }
    let good = r.send(&mut c0, 0, 7, 60);
    c0.active.enqueue(good).unwrap(); // the same buffer again while in flight
    v.notified(&mut n);
    let cc = v.client_counters(0).unwrap();
    assert_eq!(
        (cc.bad_length, cc.bad_oid, cc.bad_offset, cc.duplicates),
        (2, 1, 2, 1)
    );
    assert_eq!(cc.frames, 1);
    assert_eq!(drv.active.len().unwrap(), 1);
    // The five bad ones came back; the duplicate did not (its buffer is with the driver).
    assert_eq!(c0.free.len().unwrap(), CAP - 6 + 5);
    // A completion for a buffer that is not in flight is refused.
    drv.free.enqueue(BuffDesc::new(IO[1], 0, 0)).unwrap();
    drv.free.enqueue(BuffDesc::new(0x1234, 0, 0)).unwrap();
    v.notified(&mut n);
    assert_eq!(v.driver_counters.bad_completions, 2);
}

#[test]
fn round_robin_shares_the_driver_queue_fairly_and_strict_order_does_not() {
    // Fair TX is netvm's; without the flag, sDDF's strict order.
    for (flags, expect_c1) in [(FAIR_TX, 4usize), (0, 0)] {
        let r = rig(8);
        let mut n = RecordingNotifier::default();
        let opts = NetOptions::new(flags, 2);
        let mut v = VirtTx::new(&r.cfg, &opts, &&r.layout.space, &mut n).unwrap();
        let (mut c0, mut c1) = (r.client(0), r.client(1));
        let mut drv = r.driver();
        for _ in 0..8 {
            r.send(&mut c0, 0, 0, 60);
            r.send(&mut c1, 1, 1, 60);
        }
        v.notified(&mut n);
        let got: Vec<BuffDesc> = std::iter::from_fn(|| drv.active.dequeue().ok()).collect();
        assert_eq!(got.len(), 8, "driver queue filled");
        let from_c1 = got
            .iter()
            .filter(|d| d.io_or_offset >= IO[1] && d.io_or_offset < IO[1] + 0x100000)
            .count();
        assert_eq!(from_c1, expect_c1, "flags {flags:#x}");
        // The rest follows once the driver completes.
        for d in got {
            drv.free.enqueue(d.with_len(0)).unwrap();
        }
        v.notified(&mut n);
        assert_eq!(drv.active.len().unwrap(), 8);
    }
}

#[test]
fn region_whose_io_addresses_wrap_is_refused_not_a_panic() {
    // Found by fuzzing (fuzz/fuzz_targets/pipeline.rs): in IO-address mode a frame went to the
    // driver as `io_addr + offset`, which overflowed (a panic with overflow checks, a wrapped
    // address the completion could never be matched to without).
    let mut r = rig(16);
    let mut n = RecordingNotifier::default();
    r.cfg.clients[1].regions[0].data.io_addr = u64::MAX - 2048;
    let e = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n)
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with("virt_tx: client 1 data regions"),
        "{e}"
    );
    assert!(e.to_string().contains("pass 2^64"), "{e}");
    // A region ending just below 2^64 is fine, and offset mode never uses the address.
    r.cfg.clients[1].regions[0].data.io_addr = u64::MAX - u64::from(CAP) * 2048;
    assert!(VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).is_ok());
    r.cfg.clients[1].regions[0].data.io_addr = u64::MAX;
    let offsets = NetOptions::new(DRIVER_OFFSETS, 0);
    assert!(VirtTx::new(&r.cfg, &offsets, &&r.layout.space, &mut n).is_ok());
}

#[test]
fn counters_are_published_and_taps_see_each_frame_sent() {
    use netvm_api::stats::{Snapshot, StatsWriter};
    use netvm_api::tap::TapPoint;
    let r = rig(16);
    let mut n = RecordingNotifier::default();
    let stats_mem = sddf::shm::OwnedRegion::new(4096);
    let mut tap = netvm_api::testing::RecordingTap::default();
    let mut v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    v.attach_stats(StatsWriter::new(stats_mem.region(), "net_virt_tx").unwrap())
        .unwrap();
    v.attach_tap(&mut tap);
    let (mut c0, mut c1) = (r.client(0), r.client(1));
    r.send(&mut c0, 0, 0xa, 100);
    r.send(&mut c1, 1, 0xb, 200);
    // A bad one: longer than a buffer.
    let d = c1.free.dequeue().unwrap();
    c1.active.enqueue(d.with_len(4000)).unwrap();
    v.notified(&mut n);
    let s = Snapshot::read(&stats_mem.region()).unwrap();
    assert_eq!(s.get("driver.frames"), Some(2));
    assert_eq!(s.get("driver.in_flight"), Some(2));
    assert_eq!(s.get("client0.bytes"), Some(100));
    assert_eq!(s.get("client1.bytes"), Some(200));
    assert_eq!(s.get("client1.bad_length"), Some(1));
    let mut drv = r.driver();
    for d in std::iter::from_fn(|| drv.active.dequeue().ok()).collect::<Vec<_>>() {
        drv.free.enqueue(d.with_len(0)).unwrap();
    }
    v.notified(&mut n);
    let s = Snapshot::read(&stats_mem.region()).unwrap();
    assert_eq!(s.get("driver.in_flight"), Some(0));
    assert_eq!(s.get("driver.completions"), Some(2));
    // Ends the virtualiser's borrow of the tap.
    #[allow(clippy::drop_non_drop)]
    drop(v);
    let mut seen = tap.frames;
    seen.sort();
    let mut want = vec![
        (TapPoint::ClientTx(0), vec![0xa; 100]),
        (TapPoint::DriverTx, vec![0xa; 100]),
        (TapPoint::ClientTx(1), vec![0xb; 200]),
        (TapPoint::DriverTx, vec![0xb; 200]),
    ];
    want.sort();
    assert_eq!(seen, want);
}

/// Completions are collected lazily: while each client has plenty of free buffers the driver is
/// not asked to signal them (a VM exit per batch from a driver VM); once a client with buffers
/// at the driver runs low, it is, so a client waiting for buffers always gets them back.
#[test]
fn the_driver_is_asked_for_completions_only_when_a_client_runs_low() {
    let r = rig(16);
    let mut n = RecordingNotifier::default();
    let opts = NetOptions::new(LAZY_COMPLETIONS, 0);
    let mut v = VirtTx::new(&r.cfg, &opts, &&r.layout.space, &mut n).unwrap();
    let mut c0 = r.client(0);
    let mut drv = r.driver();
    // Client 0 sends 2 of its 8: 6 stay free, above a quarter.
    let sent: Vec<BuffDesc> = (0..2).map(|i| r.send(&mut c0, 0, i, 60)).collect();
    v.notified(&mut n);
    let got: Vec<BuffDesc> = std::iter::from_fn(|| drv.active.dequeue().ok()).collect();
    assert_eq!(got.len(), sent.len());
    for d in &got {
        drv.free.enqueue(d.with_len(0)).unwrap();
    }
    assert!(
        !drv.free.take_signal_request(),
        "the driver would signal completions nobody waits for"
    );
    // The next client notification collects them.
    v.notified(&mut n);
    assert_eq!(v.in_flight(), 0);
    assert_eq!(c0.free.len().unwrap(), CAP);
    // Now it sends 7 of 8: one left free, under a quarter, so completions are wanted.
    for i in 0..7 {
        r.send(&mut c0, 0, i, 60);
    }
    v.notified(&mut n);
    let got: Vec<BuffDesc> = std::iter::from_fn(|| drv.active.dequeue().ok()).collect();
    assert_eq!(got.len(), 7);
    drv.free.enqueue(got[0].with_len(0)).unwrap();
    assert!(
        drv.free.take_signal_request(),
        "a client running low must get its buffers back without sending again"
    );
    n.take();
    v.notified(&mut n);
    assert_eq!(c0.free.len().unwrap(), 2);
}

/// Without lazy completions (an all-zero options section) virt_tx behaves as sDDF's: it asks the
/// driver to signal after every drain of the driver's free queue.
#[test]
fn by_default_the_driver_is_asked_to_signal_every_completion() {
    let r = rig(16);
    let mut n = RecordingNotifier::default();
    let mut v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let mut c0 = r.client(0);
    let mut drv = r.driver();
    // Two of eight sent: plenty left free, which lazy completions would not signal for.
    for i in 0..2 {
        r.send(&mut c0, 0, i, 60);
    }
    v.notified(&mut n);
    let got: Vec<BuffDesc> = std::iter::from_fn(|| drv.active.dequeue().ok()).collect();
    assert_eq!(got.len(), 2);
    for d in &got {
        drv.free.enqueue(d.with_len(0)).unwrap();
    }
    assert!(
        drv.free.take_signal_request(),
        "sDDF's virt_tx wants every completion signalled"
    );
}
