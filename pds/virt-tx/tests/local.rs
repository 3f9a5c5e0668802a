//! Local delivery ([`netvm_api::vswitch`]): frames between clients of one system go to the
//! destination's copier through its local queues, never back to the sender, and the sender's
//! buffer comes back exactly once, when the driver and every local destination are done.
use netvm_api::options::{NetOptions, MULTICAST_TO_ALL};
use netvm_api::vswitch::{LocalPort, VirtTxLocalConfig};
use sddf::config::ConnectionResource;
use sddf::queue::{DrainSide, FillSide};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::rig::TxRig as Rig;
use virt_tx::{Error, VirtTx};

const CAP: u16 = 8;
const IO: [u64; 3] = [0x5fe0_0000, 0x5fd0_0000, 0x5fc0_0000];
/// Client `i`'s MAC: six bytes of `MAC_TAG[i]`, what `Rig::send` writes with that tag.
const MAC_TAG: [u8; 3] = [0x02, 0x04, 0x06];
const BROADCAST: u8 = 0xff;
const MULTICAST: u8 = 0x01;
/// The local queues' capacity: every TX buffer of the system.
const LOCAL_CAP: u16 = 32;

/// A rig of three clients, each with a port (a copier reached on channel 10 + i).
fn rig() -> (Rig, Vec<ConnectionResource>) {
    let mut r = Rig::new(32, CAP, &IO);
    let ports = (0..IO.len())
        .map(|i| r.layout.connection(LOCAL_CAP, 10 + i as u8))
        .collect();
    (r, ports)
}

fn config(ports: &[ConnectionResource]) -> VirtTxLocalConfig {
    let ports: Vec<LocalPort> = ports
        .iter()
        .zip(MAC_TAG)
        .map(|(conn, tag)| LocalPort::new(*conn, [tag; 6]))
        .collect();
    VirtTxLocalConfig::new(&ports)
}

/// Each copier's side of its local queues.
fn copiers<'l>(r: &'l Rig, ports: &[ConnectionResource]) -> Vec<DrainSide<'l>> {
    ports
        .iter()
        .map(|conn| {
            let (f, a) = r.layout.queues(conn);
            DrainSide::new(f, a)
        })
        .collect()
}

fn drain(q: &mut DrainSide<'_>) -> Vec<BuffDesc> {
    std::iter::from_fn(|| q.active.dequeue().ok()).collect()
}

fn start<'l>(r: &'l Rig, ports: &[ConnectionResource], flags: u32) -> VirtTx<'l> {
    let mut n = RecordingNotifier::default();
    let opts = NetOptions::new(flags, 0);
    let mut v = VirtTx::new(&r.cfg, &opts, &&r.layout.space, &mut n).unwrap();
    v.attach_local(&config(ports), &&r.layout.space).unwrap();
    assert!(v.local_delivery());
    v
}

#[test]
fn unicast_to_another_client_stays_inside_and_returns_once_the_copier_is_done() {
    let (r, ports) = rig();
    let mut v = start(&r, &ports, 0);
    let mut n = RecordingNotifier::default();
    let mut c0 = r.client(0);
    let mut drv = r.driver();
    let mut cp = copiers(&r, &ports);
    let sent = r.send(&mut c0, 0, MAC_TAG[1], 100);
    v.notified(&mut n);
    assert_eq!(
        n.take(),
        vec![(11, false)],
        "client1's copier notified at once"
    );
    assert!(drv.active.is_empty().unwrap(), "nothing went to the driver");
    let got = drain(&mut cp[1]);
    assert_eq!(got, vec![BuffDesc::new(sent.io_or_offset, 100, 0)]);
    assert!(drain(&mut cp[0]).is_empty() && drain(&mut cp[2]).is_empty());
    assert_eq!(
        c0.free.len().unwrap(),
        CAP - 1,
        "held while the copier reads it"
    );
    // virt_tx asked to hear of the return: nothing else would run it once traffic stops.
    assert!(
        cp[1].free.take_signal_request(),
        "the return will be signalled"
    );
    // The same buffer submitted again while a copier holds it is a duplicate.
    c0.active.enqueue(sent).unwrap();
    v.notified(&mut n);
    assert_eq!(v.client_counters(0).unwrap().duplicates, 1);
    cp[1].free.enqueue(got[0]).unwrap();
    v.notified(&mut n);
    assert_eq!(c0.free.len().unwrap(), CAP);
    let cc = v.client_counters(0).unwrap();
    assert_eq!((cc.local_delivered, cc.returned, cc.frames), (1, 1, 0));
    assert_eq!(v.driver_counters.frames, 0);
}

#[test]
fn broadcast_reaches_the_driver_and_every_other_client_and_waits_for_all() {
    for driver_first in [true, false] {
        let (r, ports) = rig();
        let mut v = start(&r, &ports, 0);
        let mut n = RecordingNotifier::default();
        let mut c1 = r.client(1);
        let mut drv = r.driver();
        let mut cp = copiers(&r, &ports);
        r.send(&mut c1, 1, BROADCAST, 60);
        v.notified(&mut n);
        let to_driver = drain_driver(&mut drv);
        assert_eq!(to_driver.len(), 1);
        assert!(drain(&mut cp[1]).is_empty(), "never back to the sender");
        let (a, b) = (drain(&mut cp[0]), drain(&mut cp[2]));
        assert_eq!((a.len(), b.len(), a[0].oid()), (1, 1, 1));
        if driver_first {
            drv.free.enqueue(to_driver[0]).unwrap();
            v.notified(&mut n);
        }
        cp[0].free.enqueue(a[0]).unwrap();
        v.notified(&mut n);
        assert_eq!(
            c1.free.len().unwrap(),
            CAP - 1,
            "client2's copier still reads it"
        );
        cp[2].free.enqueue(b[0]).unwrap();
        v.notified(&mut n);
        assert_eq!(c1.free.len().unwrap(), CAP - u16::from(!driver_first));
        if !driver_first {
            drv.free.enqueue(to_driver[0]).unwrap();
            v.notified(&mut n);
            assert_eq!(c1.free.len().unwrap(), CAP);
        }
        assert_eq!(v.client_counters(1).unwrap().local_delivered, 2);
    }
}

fn drain_driver(drv: &mut DrainSide<'_>) -> Vec<BuffDesc> {
    drain(drv)
}

#[test]
fn multicast_goes_to_the_clients_only_when_the_options_deliver_it() {
    for (flags, locals) in [(MULTICAST_TO_ALL, 2), (0, 0)] {
        let (r, ports) = rig();
        let mut v = start(&r, &ports, flags);
        let mut n = RecordingNotifier::default();
        let mut c0 = r.client(0);
        let mut drv = r.driver();
        let mut cp = copiers(&r, &ports);
        r.send(&mut c0, 0, MULTICAST, 60);
        // A unicast frame to a MAC no client has goes to the wire as before.
        r.send(&mut c0, 0, 0x08, 60);
        v.notified(&mut n);
        assert_eq!(drain_driver(&mut drv).len(), 2);
        let got: usize = cp.iter_mut().map(|q| drain(q).len()).sum();
        assert_eq!(got, locals);
    }
}

#[test]
fn without_the_section_frames_between_clients_go_to_the_driver() {
    let (r, _) = rig();
    let mut n = RecordingNotifier::default();
    let mut v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    assert!(!v.local_delivery());
    let mut c0 = r.client(0);
    r.send(&mut c0, 0, MAC_TAG[1], 60);
    v.notified(&mut n);
    assert_eq!(drain_driver(&mut r.driver()).len(), 1);
    // A section whose ports do not match the clients is refused.
    let (r2, ports) = rig();
    let mut v = VirtTx::new(&r2.cfg, &NetOptions::default(), &&r2.layout.space, &mut n).unwrap();
    let short = config(&ports[..2]);
    assert!(matches!(
        v.attach_local(&short, &&r2.layout.space),
        Err(Error::LocalPorts { ports: 2 })
    ));
}

#[test]
fn a_hostile_copier_cannot_make_a_buffer_come_back_twice_or_free_anothers() {
    let (r, ports) = rig();
    let mut v = start(&r, &ports, 0);
    let mut n = RecordingNotifier::default();
    let (mut c0, mut c2) = (r.client(0), r.client(2));
    let mut cp = copiers(&r, &ports);
    let mut drv = r.driver();
    r.send(&mut c0, 0, MAC_TAG[1], 60);
    // Client 2's frame is with the driver: copier 1 must not be able to free it.
    let other = r.send(&mut c2, 2, 0x08, 60);
    v.notified(&mut n);
    let got = drain(&mut cp[1]);
    for d in [
        got[0],
        got[0],                                       // twice
        BuffDesc::new(other.io_or_offset, 0, 2),      // held by the driver, not by copier 1
        BuffDesc::new(got[0].io_or_offset, 0, 9),     // no such region
        BuffDesc::new(got[0].io_or_offset + 1, 0, 0), // misaligned
        BuffDesc::new(2048 * u64::from(CAP), 0, 0),   // past the region
    ] {
        cp[1].free.enqueue(d).unwrap();
    }
    v.notified(&mut n);
    assert_eq!(v.client_counters(1).unwrap().local_misbehaviour, 5);
    assert_eq!(c0.free.len().unwrap(), CAP, "returned exactly once");
    assert_eq!(c2.free.len().unwrap(), CAP - 1, "still with the driver");
    assert_eq!(drain_driver(&mut drv).len(), 1);
}

#[test]
fn a_full_local_queue_drops_the_frame_and_returns_the_buffer_at_once() {
    let mut r = Rig::new(32, CAP, &IO[..2]);
    // Client 1's copier's local queue holds only 2 and never takes anything.
    let ports = vec![
        r.layout.connection(LOCAL_CAP, 10),
        r.layout.connection(2, 11),
    ];
    let mut v = start(&r, &ports, 0);
    let mut n = RecordingNotifier::default();
    let mut c0 = r.client(0);
    for _ in 0..5 {
        r.send(&mut c0, 0, MAC_TAG[1], 60);
    }
    v.notified(&mut n);
    let cc = v.client_counters(0).unwrap();
    assert_eq!((cc.local_delivered, cc.local_dropped), (2, 3));
    assert_eq!(c0.free.len().unwrap(), CAP - 2);
}

#[test]
fn resets_never_return_a_buffer_a_copier_still_reads() {
    let (r, ports) = rig();
    let mut v = start(&r, &ports, 0);
    let mut n = RecordingNotifier::default();
    let (mut c0, mut c1) = (r.client(0), r.client(1));
    let mut cp = copiers(&r, &ports);
    let mut drv = r.driver();
    // The first instances of the driver and of client 1.
    assert_eq!(r.driver_words().client_announce(), None);
    assert_eq!(r.client_words(1).client_announce(), None);
    r.send(&mut c0, 0, BROADCAST, 60); // driver + copiers 1, 2
    r.send(&mut c1, 1, MAC_TAG[0], 60); // copier 0 only
    v.notified(&mut n);
    assert_eq!(drain_driver(&mut drv).len(), 1);
    // The driver restarts: client 0's broadcast is still read by two copiers.
    let epoch = r.driver_words().client_announce().unwrap();
    v.notified(&mut n);
    assert!(r.driver_words().reset_done(epoch));
    assert_eq!(v.driver_counters.resets, 1);
    assert_eq!(c0.free.len().unwrap(), CAP - 1);
    // Client 1 restarts: its frame is still with copier 0, so the reset leaves that buffer out.
    let epoch = r.client_words(1).client_announce().unwrap();
    v.notified(&mut n);
    assert!(r.client_words(1).reset_done(epoch));
    assert_eq!(v.client_counters(1).unwrap().resets, 1);
    let (f, a) = r.layout.queues(&r.clients[1]);
    c1 = FillSide::new(f, a);
    assert_eq!(c1.free.len().unwrap(), CAP - 1);
    for (q, n_expected) in [(0, 1), (1, 1), (2, 1)] {
        let got = drain(&mut cp[q]);
        assert_eq!(got.len(), n_expected, "copier {q}");
        for d in got {
            cp[q].free.enqueue(d).unwrap();
        }
    }
    v.notified(&mut n);
    assert_eq!(c0.free.len().unwrap(), CAP, "back once, after both copiers");
    assert_eq!(
        c1.free.len().unwrap(),
        CAP,
        "back once, to the new instance"
    );
    assert_eq!(v.in_flight(), 0);
}

#[test]
fn ports_beyond_the_holder_masks_are_refused() {
    let io: Vec<u64> = (0..17).map(|i| 0x4000_0000 + i * 0x10_0000).collect();
    let mut r = Rig::new(64, 4, &io);
    let ports: Vec<LocalPort> = (0..17)
        .map(|i| {
            LocalPort::new(
                r.layout.connection(64, 20 + i as u8),
                [2, 0, 0, 0, 0, i as u8],
            )
        })
        .collect();
    let mut n = RecordingNotifier::default();
    let mut v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let e = v.attach_local(&VirtTxLocalConfig::new(&ports), &&r.layout.space);
    assert!(
        matches!(e, Err(Error::LocalPortLimit { client: 16 })),
        "{e:?}"
    );
    assert_eq!(virt_tx::MAX_LOCAL_PORTS, 16);
}

/// virt_tx is built on its PD's stack (256 KiB in system.xml) and moved a few times before
/// Microkit's event loop owns it: at 93 KB (64-bit holder masks) the seL4 image never answered
/// a ping (most likely virt_tx overflowing its stack at init). Keep it well below.
#[test]
fn virt_tx_stays_small_enough_for_its_stack() {
    let size = std::mem::size_of::<VirtTx<'static>>();
    assert!(size <= 48 * 1024, "VirtTx is {size} bytes");
}
