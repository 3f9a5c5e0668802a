//! virt_rx against a scripted driver and scripted clients over real shared memory.
use netvm_api::options::{NetOptions, DRIVER_OFFSETS, MULTICAST_TO_ALL};
use sddf::queue::{DrainSide, FillSide, QueueError};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::rig::RxRig as Rig;
use virt_rx::{Holder, VirtRx};

const MAC0: [u8; 6] = [0x52, 0x54, 1, 0, 0, 0x10];
const MAC1: [u8; 6] = [0x52, 0x54, 1, 0, 0, 0x11];
const IO: u64 = 0x5fef_0000;
const CAP: u16 = 8;
const DRIVER_CH: u8 = 0;

fn rig(num_clients: usize) -> Rig {
    Rig::new(&[MAC0, MAC1][..num_clients], CAP, IO)
}

fn frame(dest: [u8; 6], tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![tag; len];
    f[..6].copy_from_slice(&dest);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f
}

/// The scripted driver: takes a free buffer, writes the frame there (as DMA would), hands it on.
fn driver_rx(rig: &Rig, drv: &mut FillSide<'_>, base: u64, f: &[u8]) -> u64 {
    let d = drv.free.dequeue().expect("driver has a free buffer");
    let off = d.io_or_offset - base;
    rig.layout
        .view(&rig.cfg.data.region)
        .write(off as usize, f)
        .unwrap();
    drv.active
        .enqueue(BuffDesc::new(d.io_or_offset, f.len() as u16, 0))
        .unwrap();
    off
}

fn read_frame(rig: &Rig, d: &BuffDesc) -> Vec<u8> {
    let mut buf = vec![0; d.len as usize];
    rig.layout
        .view(&rig.cfg.data.region)
        .read(d.io_or_offset as usize, &mut buf)
        .unwrap();
    buf
}

fn drain(q: &mut DrainSide<'_>) -> Vec<BuffDesc> {
    std::iter::from_fn(|| q.active.dequeue().ok()).collect()
}

#[test]
fn init_gives_every_buffer_to_the_driver_as_io_addresses_and_notifies_deferred() {
    let r = rig(2);
    let mut n = RecordingNotifier::default();
    let _v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    assert_eq!(n.take(), vec![(DRIVER_CH, true)]);
    let mut drv = r.driver_side();
    let got: Vec<u64> = std::iter::from_fn(|| drv.free.dequeue().ok())
        .map(|d| d.io_or_offset)
        .collect();
    assert_eq!(
        got,
        (0..CAP as u64).map(|i| IO + i * 2048).collect::<Vec<_>>()
    );
}

#[test]
fn offset_mode_gives_the_driver_offsets_only() {
    let r = rig(1);
    let mut n = RecordingNotifier::default();
    let opts = NetOptions::new(DRIVER_OFFSETS, 0);
    let mut v = VirtRx::new(&r.cfg, &opts, &&r.layout.space, &mut n).unwrap();
    let mut drv = r.driver_side();
    let first = drv.free.dequeue().unwrap();
    assert_eq!(first.io_or_offset, 0);
    rig_frame_roundtrip(&r, &mut v, &mut drv, 0);
}

fn rig_frame_roundtrip(r: &Rig, v: &mut VirtRx<'_>, drv: &mut FillSide<'_>, base: u64) {
    let mut n = RecordingNotifier::default();
    let f = frame(MAC0, 7, 100);
    driver_rx(r, drv, base, &f);
    v.notified(&mut n);
    let (cf, ca) = r.layout.queues(&r.clients[0]);
    let mut c0 = DrainSide::new(cf, ca);
    let got = drain(&mut c0);
    assert_eq!(got.len(), 1);
    assert_eq!(read_frame(r, &got[0]), f);
}

#[test]
fn unicast_reaches_only_its_client_and_broadcast_reaches_both() {
    let r = rig(2);
    let mut n = RecordingNotifier::default();
    let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    n.take();
    let mut drv = r.driver_side();
    let mut c = r.client_sides();

    let uni = frame(MAC1, 1, 60);
    let bcast = frame([0xff; 6], 2, 60);
    let off_uni = driver_rx(&r, &mut drv, IO, &uni);
    let off_b = driver_rx(&r, &mut drv, IO, &bcast);
    v.notified(&mut n);
    // Both clients asked (zeroed flag), so both are notified immediately.
    let mut ev = n.take();
    ev.sort();
    assert_eq!(ev, vec![(1, false), (2, false)]);
    let got0 = drain(&mut c[0]);
    let got1 = drain(&mut c[1]);
    assert_eq!(
        got0.iter().map(|d| read_frame(&r, d)).collect::<Vec<_>>(),
        vec![bcast.clone()]
    );
    assert_eq!(
        got1.iter().map(|d| read_frame(&r, d)).collect::<Vec<_>>(),
        vec![uni, bcast]
    );
    assert_eq!(
        v.holder((off_b / 2048) as usize),
        Some(Holder::Clients(0b11))
    );
    assert_eq!(
        v.holder((off_uni / 2048) as usize),
        Some(Holder::Clients(0b10))
    );
    assert_eq!(v.client_counters(0).unwrap().frames, 1);
    assert_eq!(v.client_counters(1).unwrap().frames, 2);

    // The broadcast buffer goes back to the driver only when both clients returned it.
    c[0].free.enqueue(got0[0]).unwrap();
    v.notified(&mut n);
    assert_eq!(
        v.holder((off_b / 2048) as usize),
        Some(Holder::Clients(0b10))
    );
    let before = drv.free.len().unwrap();
    c[1].free.enqueue(got1[1]).unwrap();
    c[1].free.enqueue(got1[0]).unwrap();
    v.notified(&mut n);
    assert_eq!(drv.free.len().unwrap(), before + 2);
    assert_eq!(v.holder((off_b / 2048) as usize), Some(Holder::Driver));
    assert_eq!(v.driver_counters.broadcast, 1);
}

#[test]
fn unmatched_frames_go_straight_back_and_multicast_follows_the_option() {
    // Delivering multicast is netvm's; without the flag, sDDF drops it.
    for (flags, delivered) in [(MULTICAST_TO_ALL, true), (0, false)] {
        let r = rig(2);
        let mut n = RecordingNotifier::default();
        let opts = NetOptions::new(flags, 0);
        let mut v = VirtRx::new(&r.cfg, &opts, &&r.layout.space, &mut n).unwrap();
        let (free, active) = r.layout.queues(&r.driver);
        let mut drv = FillSide::new(free, active);
        let mut c0 = {
            let (f, a) = r.layout.queues(&r.clients[0]);
            DrainSide::new(f, a)
        };
        driver_rx(&r, &mut drv, IO, &frame([0x52, 0x54, 9, 9, 9, 9], 3, 64));
        // IPv6 neighbour discovery goes to 33:33:ff:xx:xx:xx.
        driver_rx(&r, &mut drv, IO, &frame([0x33, 0x33, 0xff, 0, 0, 1], 4, 86));
        v.notified(&mut n);
        assert_eq!(v.driver_counters.unmatched, if delivered { 1 } else { 2 });
        assert_eq!(v.driver_counters.multicast, 1);
        assert_eq!(drain(&mut c0).len(), usize::from(delivered));
        // Two buffers taken; the unmatched one came back, and the multicast one too unless delivered.
        assert_eq!(
            drv.free.len().unwrap(),
            CAP - 2 + if delivered { 1 } else { 2 }
        );
    }
}

#[test]
fn hostile_client_returns_are_counted_and_harm_no_one() {
    let r = rig(2);
    let mut n = RecordingNotifier::default();
    let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let mut drv = r.driver_side();
    let mut c = r.client_sides();
    let off1 = driver_rx(&r, &mut drv, IO, &frame(MAC1, 1, 60));
    v.notified(&mut n);
    let good = drain(&mut c[1]);
    // Client 0 "returns" client 1's buffer, a misaligned one, an out-of-range one, and a driver one.
    for bad in [off1, 100, 2048 * 64, 2048 * 5] {
        c[0].free.enqueue(BuffDesc::new(bad, 0, 0)).unwrap();
    }
    v.notified(&mut n);
    assert_eq!(v.client_counters(0).unwrap().bad_returns, 4);
    assert_eq!(
        v.holder((off1 / 2048) as usize),
        Some(Holder::Clients(0b10))
    );
    // Client 1 is unaffected: returns its buffer; returning it twice is a counted duplicate.
    c[1].free.enqueue(good[0]).unwrap();
    c[1].free.enqueue(good[0]).unwrap();
    v.notified(&mut n);
    assert_eq!(v.client_counters(1).unwrap().returned, 1);
    assert_eq!(v.client_counters(1).unwrap().bad_returns, 1);
    assert_eq!(drv.free.len().unwrap(), CAP);
    // Impossible indices from client 0 are counted as misbehaviour, not data.
    let r0 = r.layout.view(&r.clients[0].free_queue);
    r0.write(0, &500u16.to_le_bytes()).unwrap();
    v.notified(&mut n);
    assert!(v.client_counters(0).unwrap().peer_misbehaviour >= 1);
    driver_rx(&r, &mut drv, IO, &frame(MAC1, 9, 70));
    v.notified(&mut n);
    assert_eq!(drain(&mut c[1]).len(), 1, "client 1 still served");
}

#[test]
fn hostile_driver_descriptors_are_counted_never_read() {
    let r = rig(1);
    let mut n = RecordingNotifier::default();
    let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let mut drv = r.driver_side();
    let mut c0 = {
        let (f, a) = r.layout.queues(&r.clients[0]);
        DrainSide::new(f, a)
    };
    for d in [
        BuffDesc::new(0, 60, 0),             // below the IO base
        BuffDesc::new(IO + 3, 60, 0),        // misaligned
        BuffDesc::new(IO + 2048 * 8, 60, 0), // past the region
        BuffDesc::new(IO, 0, 0),             // empty
        BuffDesc::new(IO, 4000, 0),          // longer than a buffer
    ] {
        drv.active.enqueue(d).unwrap();
    }
    v.notified(&mut n);
    assert_eq!(v.driver_counters.bad_descriptors, 5);
    assert_eq!(drain(&mut c0).len(), 0);
    // A buffer delivered to a client and then "received" again by the driver is refused.
    let off = driver_rx(&r, &mut drv, IO, &frame(MAC0, 1, 60));
    v.notified(&mut n);
    drv.active.enqueue(BuffDesc::new(IO + off, 60, 0)).unwrap();
    v.notified(&mut n);
    assert_eq!(v.driver_counters.bad_descriptors, 6);
    assert_eq!(drain(&mut c0).len(), 1);
}

#[test]
fn config_errors_name_what_is_wrong() {
    let mut r = rig(1);
    let mut n = RecordingNotifier::default();
    r.cfg.clients[0].conn.active_queue.vaddr = 0x7000_0000;
    let e = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "virt_rx: client 0 active queue at 0x70000000 is not mapped"
    );
    let mut r = rig(1);
    r.cfg.driver.free_queue.size = 8;
    let e = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n)
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with("virt_rx: driver free queue at ")
            && e.to_string().contains("(0x8 bytes) cannot hold"),
        "{e}"
    );
    let mut r = rig(1);
    r.cfg.driver.num_buffers = 6;
    let e = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n)
        .err()
        .unwrap();
    assert!(e.to_string().contains("num_buffers 6"), "{e}");
    let _ = QueueError::Empty;
}

#[test]
fn dma_region_whose_io_addresses_wrap_is_refused_not_a_panic() {
    // Found by fuzzing (fuzz/fuzz_targets/pipeline.rs): handing the driver `io_addr + i * 2048`
    // overflowed (a panic with overflow checks, wrapped addresses and lost buffers without).
    let mut r = rig(1);
    let mut n = RecordingNotifier::default();
    r.cfg.data.io_addr = u64::MAX - 0x1000;
    let e = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "virt_rx: RX DMA region at IO address 0xffffffffffffefff ends beyond 2^64"
    );
    // A region ending just below 2^64 is fine, and offset mode never uses the address.
    r.cfg.data.io_addr = u64::MAX - u64::from(CAP) * 2048;
    assert!(VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).is_ok());
    let mut r = rig(1);
    r.cfg.data.io_addr = u64::MAX;
    let offsets = NetOptions::new(DRIVER_OFFSETS, 0);
    assert!(VirtRx::new(&r.cfg, &offsets, &&r.layout.space, &mut n).is_ok());
}

#[test]
fn counters_are_published_and_taps_see_what_each_client_gets() {
    use netvm_api::stats::{Snapshot, StatsWriter};
    use netvm_api::tap::TapPoint;
    let r = rig(2);
    let mut n = RecordingNotifier::default();
    let stats_mem = sddf::shm::OwnedRegion::new(4096);
    let mut tap = netvm_api::testing::RecordingTap::default();
    let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    v.attach_stats(StatsWriter::new(stats_mem.region(), "net_virt_rx").unwrap())
        .unwrap();
    v.attach_tap(&mut tap);
    let mut drv = r.driver_side();
    let (uni, bcast) = (frame(MAC0, 1, 60), frame([0xff; 6], 2, 61));
    driver_rx(&r, &mut drv, IO, &uni);
    driver_rx(&r, &mut drv, IO, &bcast);
    v.notified(&mut n);

    let s = Snapshot::read(&stats_mem.region()).unwrap();
    assert_eq!(s.component, "net_virt_rx");
    assert_eq!(s.get("driver.frames"), Some(2));
    assert_eq!(s.get("driver.bytes"), Some(121));
    assert_eq!(s.get("driver.broadcast"), Some(1));
    assert_eq!(s.get("client0.frames"), Some(2));
    assert_eq!(s.get("client1.frames"), Some(1));
    // Two buffers out with clients: the gauge says so, and says 0 once they are back.
    assert_eq!(s.get("driver.buffers_at_clients"), Some(2));
    for conn in &r.clients {
        let (f, a) = r.layout.queues(conn);
        let mut c = DrainSide::new(f, a);
        for d in drain(&mut c) {
            c.free.enqueue(d).unwrap();
        }
    }
    v.notified(&mut n);
    let s = Snapshot::read(&stats_mem.region()).unwrap();
    assert_eq!(s.get("driver.buffers_at_clients"), Some(0));
    assert_eq!(s.get("client0.returned"), Some(2));
    assert_eq!(s.get("client1.returned"), Some(1));
    // Ends the virtualiser's borrow of the tap.
    #[allow(clippy::drop_non_drop)]
    drop(v);

    assert_eq!(
        tap.frames,
        vec![
            (TapPoint::DriverRx, uni.clone()),
            (TapPoint::ClientRx(0), uni),
            (TapPoint::DriverRx, bcast.clone()),
            (TapPoint::ClientRx(0), bcast.clone()),
            (TapPoint::ClientRx(1), bcast),
        ]
    );
    assert_eq!(tap.flushes, 2);
}
