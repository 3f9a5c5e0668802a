//! The copier against a scripted virt_rx and a scripted client over real shared memory.
use copier::Copier;
use sddf::config::{NetCopyConfig, RegionResource, NET_MAGIC};
use sddf::queue::{DrainSide, FillSide};
use sddf::testing::{Layout, RecordingNotifier};
use sddf::BuffDesc;
use zerocopy::FromZeros;

const CAP: u16 = 4;

fn rig() -> (Layout, Box<NetCopyConfig>, RegionResource) {
    let mut l = Layout::new();
    let mut c = NetCopyConfig::new_box_zeroed().unwrap();
    c.magic = NET_MAGIC;
    c.rx = l.connection(CAP, 0);
    let dma = l.region(8 * 2048);
    c.rx_data[0] = dma;
    c.client = l.connection(CAP, 1);
    c.client_data = l.region(CAP as u64 * 2048);
    (l, c, dma)
}

#[test]
fn frames_are_copied_byte_identical_and_dma_buffers_return_at_once() {
    let (l, cfg, dma) = rig();
    let mut cp = Copier::new(&cfg, &&l.space).unwrap();
    let (f, a) = l.queues(&cfg.rx);
    let mut virt = FillSide::new(f, a);
    let (f, a) = l.queues(&cfg.client);
    let mut client = DrainSide::new(f, a);
    let frame: Vec<u8> = (0..1514u32).map(|i| (i * 7) as u8).collect();
    l.view(&dma).write(3 * 2048, &frame).unwrap();
    virt.active
        .enqueue(BuffDesc::new(3 * 2048, 1514, 0))
        .unwrap();
    let mut n = RecordingNotifier::default();
    cp.notified(&mut n);
    assert_eq!(
        n.take(),
        vec![(1, false), (0, true)],
        "client now, virt_rx deferred"
    );
    let d = client.active.dequeue().unwrap();
    let mut got = vec![0; d.len as usize];
    l.view(&cfg.client_data)
        .read(d.io_or_offset as usize, &mut got)
        .unwrap();
    assert_eq!(got, frame);
    assert_eq!(
        virt.free.dequeue().unwrap(),
        BuffDesc::new(3 * 2048, 1514, 0)
    );
    assert_eq!(cp.counters.frames, 1);
}

#[test]
fn a_client_without_free_buffers_loses_frames_not_dma_buffers() {
    let (l, cfg, _) = rig();
    let mut cp = Copier::new(&cfg, &&l.space).unwrap();
    let (f, a) = l.queues(&cfg.rx);
    let mut virt = FillSide::new(f, a);
    let mut n = RecordingNotifier::default();
    for round in 0..2 {
        for i in 0..CAP as u64 {
            virt.active.enqueue(BuffDesc::new(i * 2048, 60, 0)).unwrap();
        }
        cp.notified(&mut n);
        for _ in 0..CAP {
            virt.free.dequeue().unwrap();
        }
        let dropped = if round == 0 { 0 } else { CAP as u64 };
        assert_eq!(cp.counters.dropped_no_buffer, dropped);
    }
    assert_eq!(cp.counters.frames, CAP as u64);
}

#[test]
fn bad_descriptors_are_refused_on_both_sides() {
    let (l, cfg, _) = rig();
    let mut cp = Copier::new(&cfg, &&l.space).unwrap();
    let (f, a) = l.queues(&cfg.rx);
    let mut virt = FillSide::new(f, a);
    let (f, a) = l.queues(&cfg.client);
    let mut client = DrainSide::new(f, a);
    let mut n = RecordingNotifier::default();
    // From virt_rx: an unknown region, a frame running past its region, a zero length.
    for d in [
        BuffDesc::new(0, 60, 5),
        BuffDesc::new(7 * 2048 + 100, 2000, 0),
        BuffDesc::new(0, 0, 0),
    ] {
        virt.active.enqueue(d).unwrap();
    }
    cp.notified(&mut n);
    assert_eq!(cp.counters.bad_frames, 3);
    assert_eq!(client.active.len().unwrap(), 0);
    assert_eq!(virt.free.len().unwrap(), 3, "returned uncopied");
    // From the client: it is given all its buffers, keeps them, and returns garbage instead.
    for _ in 0..CAP {
        virt.free.dequeue().ok();
    }
    for i in 0..CAP as u64 {
        virt.active.enqueue(BuffDesc::new(i * 2048, 60, 0)).unwrap();
    }
    cp.notified(&mut n);
    while client.active.dequeue().is_ok() {}
    for off in [5u64, 2048 * 9] {
        client.free.enqueue(BuffDesc::new(off, 0, 0)).unwrap();
    }
    virt.active.enqueue(BuffDesc::new(0, 60, 0)).unwrap();
    cp.notified(&mut n);
    assert_eq!(cp.counters.bad_client_buffers, 2);
    assert_eq!(cp.counters.dropped_no_buffer, 1);
}

#[test]
fn counters_are_published_after_each_batch() {
    use netvm_api::stats::{Counters as _, Snapshot, StatsWriter};
    let (l, cfg, _) = rig();
    let mut cp = Copier::new(&cfg, &&l.space).unwrap();
    let stats_mem = sddf::shm::OwnedRegion::new(4096);
    cp.attach_stats(StatsWriter::new(stats_mem.region(), "client0_net_copier").unwrap())
        .unwrap();
    let s = Snapshot::read(&stats_mem.region()).unwrap();
    assert_eq!(s.entries.len(), copier::Counters::NAMES.len());
    assert!(s
        .entries
        .iter()
        .all(|(name, v)| name.starts_with("copier.") && *v == 0));
    let (f, a) = l.queues(&cfg.rx);
    let mut virt = FillSide::new(f, a);
    let mut n = RecordingNotifier::default();
    virt.active.enqueue(BuffDesc::new(0, 60, 0)).unwrap();
    virt.active.enqueue(BuffDesc::new(0, 60, 9)).unwrap();
    cp.notified(&mut n);
    let s = Snapshot::read(&stats_mem.region()).unwrap();
    let published: Vec<u64> = s.entries.iter().map(|e| e.1).collect();
    assert_eq!(published, cp.counters.values().collect::<Vec<_>>());
    assert_eq!(s.get("copier.frames"), Some(1));
    assert_eq!(s.get("copier.bad_frames"), Some(1));
}

/// A client that scribbled on its free queue before the copier started (host mode starts every
/// PD at once) costs itself its buffers, not the copier its life: the copier starts, counts it,
/// and keeps taking frames from virt_rx (dropping that client's, returning every DMA buffer).
#[test]
fn a_client_that_corrupted_its_free_queue_before_start_does_not_stop_the_copier() {
    let (l, cfg, dma) = rig();
    // The free queue's head (bytes 2..4 of sDDF's net_queue) far beyond its tail: impossible.
    l.view(&cfg.client.free_queue)
        .write(2, &[0xff, 0x7f])
        .unwrap();
    let mut cp = Copier::new(&cfg, &&l.space).expect("the copier starts");
    assert_eq!(cp.counters.client_misbehaviour, 1);
    let (f, a) = l.queues(&cfg.rx);
    let mut virt = FillSide::new(f, a);
    l.view(&dma).write(0, &[0xab; 60]).unwrap();
    virt.active.enqueue(BuffDesc::new(0, 60, 0)).unwrap();
    let mut n = RecordingNotifier::default();
    cp.notified(&mut n);
    assert_eq!(virt.free.dequeue().unwrap(), BuffDesc::new(0, 60, 0));
    assert_eq!(cp.counters.frames, 0);
}
