//! The copier's local queues ([`netvm_api::vswitch`]): frames from the other clients of the
//! system, read from their TX regions, copied to the client; every descriptor goes back to
//! virt_tx once, bad ones uncopied and counted.
use copier::Copier;
use netvm_api::vswitch::CopyLocalConfig;
use sddf::config::{ConnectionResource, NetCopyConfig, RegionResource, NET_MAGIC};
use sddf::queue::{DrainSide, FillSide};
use sddf::testing::{Layout, RecordingNotifier};
use sddf::BuffDesc;
use zerocopy::FromZeros;

const CAP: u16 = 4;

struct Rig {
    l: Layout,
    cfg: Box<NetCopyConfig>,
    local: ConnectionResource,
    /// TX regions 0 (another client's, mapped) and 1 (the copier's own client's, not mapped).
    tx: RegionResource,
}

fn rig() -> Rig {
    let mut l = Layout::new();
    let mut cfg = NetCopyConfig::new_box_zeroed().unwrap();
    cfg.magic = NET_MAGIC;
    cfg.rx = l.connection(CAP, 0);
    cfg.rx_data[0] = l.region(8 * 2048);
    cfg.client = l.connection(CAP, 1);
    cfg.client_data = l.region(u64::from(CAP) * 2048);
    let local = l.connection(16, 2);
    let tx = l.region(8 * 2048);
    Rig { l, cfg, local, tx }
}

fn copier(r: &Rig) -> Copier<'_> {
    let mut cp = Copier::new(&r.cfg, &&r.l.space).unwrap();
    let no_region = RegionResource::default();
    let local = CopyLocalConfig::new(r.local, &[r.tx, no_region]);
    cp.attach_local(&local, &&r.l.space).unwrap();
    cp
}

#[test]
fn local_frames_are_copied_and_returned_at_once() {
    let r = rig();
    let mut cp = copier(&r);
    let (f, a) = r.l.queues(&r.local);
    let mut virt_tx = FillSide::new(f, a);
    let (f, a) = r.l.queues(&r.cfg.client);
    let mut client = DrainSide::new(f, a);
    let frame: Vec<u8> = (0..600u32).map(|i| (i * 3) as u8).collect();
    r.l.view(&r.tx).write(5 * 2048, &frame).unwrap();
    let d = BuffDesc::new(5 * 2048, 600, 0);
    virt_tx.active.enqueue(d).unwrap();
    let mut n = RecordingNotifier::default();
    cp.notified(&mut n);
    assert_eq!(
        n.take(),
        vec![(2, true), (1, false)],
        "virt_tx deferred, client now"
    );
    let got = client.active.dequeue().unwrap();
    let mut bytes = vec![0; got.len as usize];
    r.l.view(&r.cfg.client_data)
        .read(got.io_or_offset as usize, &mut bytes)
        .unwrap();
    assert_eq!(bytes, frame);
    assert_eq!(virt_tx.free.dequeue().unwrap(), d, "returned unchanged");
    assert_eq!(
        (cp.counters.local_frames, cp.counters.local_bytes),
        (1, 600)
    );
}

#[test]
fn bad_local_descriptors_and_a_full_client_go_back_uncopied() {
    let r = rig();
    let mut cp = copier(&r);
    let (f, a) = r.l.queues(&r.local);
    let mut virt_tx = FillSide::new(f, a);
    let bad = [
        BuffDesc::new(0, 60, 1),              // its own client's region: not mapped
        BuffDesc::new(0, 60, 7),              // no region
        BuffDesc::new(7 * 2048 + 1, 2048, 0), // leaves the region
        BuffDesc::new(0, 0, 0),               // empty
    ];
    for d in bad {
        virt_tx.active.enqueue(d).unwrap();
    }
    // More good frames than the client has buffers.
    for i in 0..u64::from(CAP) + 2 {
        virt_tx
            .active
            .enqueue(BuffDesc::new(i * 2048, 60, 0))
            .unwrap();
    }
    let mut n = RecordingNotifier::default();
    cp.notified(&mut n);
    let back: Vec<BuffDesc> = std::iter::from_fn(|| virt_tx.free.dequeue().ok()).collect();
    assert_eq!(
        back.len(),
        bad.len() + usize::from(CAP) + 2,
        "every one back once"
    );
    assert_eq!(&back[..bad.len()], &bad);
    let c = &cp.counters;
    assert_eq!(
        (c.bad_local_frames, c.local_frames, c.local_dropped),
        (4, u64::from(CAP), 2)
    );
}
