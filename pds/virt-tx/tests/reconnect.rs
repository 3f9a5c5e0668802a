//! A client restarting at a random point of random TX traffic: virt_tx rebuilds its TX queues so
//! that every buffer of that client is in exactly one place (its free queue, or in flight at the
//! driver), the other client is not disturbed, and scribbled reconnect words are counted.
//!
//! The driver restarting the same way: every buffer the dead driver held goes back to its client
//! once, counted as a dropped frame, and a scribbled epoch from the driver changes nothing.
use netvm_api::options::NetOptions;
use netvm_api::reconnect::words_offset;
use proptest::prelude::*;
use sddf::config::QueueKind::{Active, Free};
use sddf::queue::{DrainSide, FillSide};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::rig::TxRig as Rig;
use virt_tx::VirtTx;

const CAP: u16 = 8;
const DRIVER_CAP: u16 = 16;
const IO: [u64; 2] = [0x5fe0_0000, 0x5fd0_0000];

fn rig() -> Rig {
    Rig::new(DRIVER_CAP, CAP, &IO)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Client c sends up to n frames.
    Send(usize, usize),
    /// Client c takes up to n free buffers and keeps them (a frame being built).
    Reserve(usize, usize),
    /// virt_tx runs.
    Notify,
    /// The driver takes what is queued for it.
    Take,
    /// The driver completes up to n of the frames it took.
    Complete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..2, 1usize..5).prop_map(|(c, n)| Op::Send(c, n)),
        (0usize..2, 1usize..3).prop_map(|(c, n)| Op::Reserve(c, n)),
        Just(Op::Notify),
        Just(Op::Take),
        (1usize..6).prop_map(Op::Complete),
    ]
}

struct World<'l> {
    clients: Vec<FillSide<'l>>,
    /// Offsets each client holds outside every queue.
    held: Vec<Vec<u64>>,
    driver: DrainSide<'l>,
    /// Descriptors the driver took and has not completed.
    driver_held: Vec<BuffDesc>,
}

impl World<'_> {
    fn run(&mut self, v: &mut VirtTx<'_>, op: Op, n: &mut RecordingNotifier) {
        match op {
            Op::Send(c, k) => {
                for _ in 0..k {
                    let off = match self.held[c].pop() {
                        Some(off) => off,
                        None => match self.clients[c].free.dequeue() {
                            Ok(d) => d.io_or_offset,
                            Err(_) => break,
                        },
                    };
                    self.clients[c]
                        .active
                        .enqueue(BuffDesc::new(off, 60, 0))
                        .unwrap();
                }
            }
            Op::Reserve(c, k) => {
                for _ in 0..k {
                    match self.clients[c].free.dequeue() {
                        Ok(d) => self.held[c].push(d.io_or_offset),
                        Err(_) => break,
                    }
                }
            }
            Op::Notify => v.notified(n),
            Op::Take => {
                while let Ok(d) = self.driver.active.dequeue() {
                    self.driver_held.push(d);
                }
            }
            Op::Complete(k) => {
                for _ in 0..k.min(self.driver_held.len()) {
                    let d = self.driver_held.remove(0);
                    self.driver.free.enqueue(d.with_len(0)).unwrap();
                }
            }
        }
    }

    /// Every buffer of every client in exactly one place: its queues, its hands, or the
    /// driver's queues and hands.
    fn assert_conserved(&self, r: &Rig) {
        let mut seen = [[0u32; CAP as usize]; 2];
        for (c, seen) in seen.iter_mut().enumerate() {
            for queue in [Free, Active] {
                for d in r.layout.peek(&r.clients[c], queue) {
                    seen[(d.io_or_offset / 2048) as usize] += 1;
                }
            }
            for &off in &self.held[c] {
                seen[(off / 2048) as usize] += 1;
            }
        }
        let driver_side = r
            .layout
            .peek(&r.driver, Free)
            .into_iter()
            .chain(r.layout.peek(&r.driver, Active))
            .chain(self.driver_held.iter().copied());
        for d in driver_side {
            let c = IO
                .iter()
                .position(|&io| d.io_or_offset >= io && d.io_or_offset < io + 0x10_0000);
            let c = c.expect("an IO address of a client region");
            seen[c][((d.io_or_offset - IO[c]) / 2048) as usize] += 1;
        }
        assert_eq!(seen, [[1; CAP as usize]; 2], "buffers by client and index");
    }
}

fn start<'l>(r: &'l Rig, n: &mut RecordingNotifier) -> (VirtTx<'l>, World<'l>) {
    let v = VirtTx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, n).unwrap();
    let clients = (0..2)
        .map(|c| {
            assert_eq!(
                r.client_words(c).client_announce(),
                None,
                "first start is fresh"
            );
            let (f, a) = r.layout.queues(&r.clients[c]);
            FillSide::new_self_provided(f, a, CAP).unwrap()
        })
        .collect();
    let (f, a) = r.layout.queues(&r.driver);
    let w = World {
        clients,
        held: vec![vec![], vec![]],
        driver: DrainSide::new(f, a),
        driver_held: vec![],
    };
    (v, w)
}

proptest! {
    #[test]
    fn a_restarted_client_gets_every_tx_buffer_not_in_flight_exactly_once(
        before in proptest::collection::vec(op(), 0..80),
        after in proptest::collection::vec(op(), 0..80),
    ) {
        let r = rig();
        let mut n = RecordingNotifier::default();
        let (mut v, mut w) = start(&r, &mut n);
        for &o in &before {
            w.run(&mut v, o, &mut n);
        }
        w.assert_conserved(&r);
        let waiting = r.layout.peek(&r.clients[1], Active).len() as u64;
        let c0_before = *v.client_counters(0).unwrap();

        // Client 1 dies with what it held; its next instance asks for a reset.
        w.held[1].clear();
        let epoch = r.client_words(1).client_announce().expect("a restart");
        n.take();
        v.notified(&mut n);
        prop_assert!(r.client_words(1).reset_done(epoch));
        prop_assert!(n.take().contains(&(2, false)), "client 1 notified");
        let c1 = *v.client_counters(1).unwrap();
        prop_assert_eq!(c1.resets, 1);
        prop_assert_eq!(c1.reset_dropped, waiting);
        prop_assert_eq!(c1.peer_misbehaviour, 0);
        prop_assert!(r.layout.peek(&r.clients[1], Active).is_empty());
        let (f, a) = r.layout.queues(&r.clients[1]);
        w.clients[1] = FillSide::new(f, a);
        w.assert_conserved(&r);
        // Client 0 saw no reset, and its frames still went out.
        let c0 = *v.client_counters(0).unwrap();
        prop_assert_eq!(c0.resets, 0);
        prop_assert!(c0.frames >= c0_before.frames);
        prop_assert_eq!(
            (c0.bad_length, c0.bad_oid, c0.bad_offset, c0.duplicates, c0.peer_misbehaviour),
            (0, 0, 0, 0, 0)
        );

        for &o in &after {
            w.run(&mut v, o, &mut n);
        }
        // Drain everything: every buffer ends in its owner's free queue or hands.
        for _ in 0..4 {
            for o in [Op::Notify, Op::Take, Op::Complete(usize::MAX), Op::Notify] {
                w.run(&mut v, o, &mut n);
            }
        }
        w.assert_conserved(&r);
        prop_assert_eq!(v.in_flight(), 0);
        prop_assert_eq!(v.client_counters(1).unwrap().resets, 1);
        prop_assert_eq!(v.driver_counters.bad_completions, 0);
    }

    #[test]
    fn a_scribbled_backwards_epoch_is_counted_and_changes_nothing(
        ops in proptest::collection::vec(op(), 0..40),
        bad in prop_oneof![Just(1u32), 0x8000_0002u32..=u32::MAX],
    ) {
        let r = rig();
        let mut n = RecordingNotifier::default();
        let (mut v, mut w) = start(&r, &mut n);
        // One honest restart of client 1 with nothing in flight, so that epoch 2 is served.
        r.client_words(1).client_announce();
        v.notified(&mut n);
        for &o in &ops {
            w.run(&mut v, o, &mut n);
        }
        w.run(&mut v, Op::Notify, &mut n);
        let queues = |r: &Rig| {
            (0..2)
                .flat_map(|c| [r.layout.peek(&r.clients[c], Free), r.layout.peek(&r.clients[c], Active)])
                .collect::<Vec<_>>()
        };
        let before = queues(&r);
        let counters = (*v.client_counters(0).unwrap(), *v.client_counters(1).unwrap());
        r.layout
            .view(&r.clients[1].free_queue)
            .write(words_offset(CAP.into()), &bad.to_le_bytes())
            .unwrap();
        v.notified(&mut n);
        v.notified(&mut n);
        let c1 = *v.client_counters(1).unwrap();
        prop_assert_eq!(c1.bad_reset_requests, 1, "counted once");
        prop_assert_eq!(c1.resets, 1);
        prop_assert_eq!(c1.reset_dropped, counters.1.reset_dropped);
        prop_assert_eq!(*v.client_counters(0).unwrap(), counters.0, "client 0 untouched");
        prop_assert_eq!(queues(&r), before, "queues untouched");
        w.assert_conserved(&r);
    }
}

#[test]
fn a_restart_while_frames_are_in_flight_waits_for_their_completions() {
    let r = rig();
    let mut n = RecordingNotifier::default();
    let (mut v, mut w) = start(&r, &mut n);
    w.run(&mut v, Op::Send(1, 3), &mut n);
    w.run(&mut v, Op::Notify, &mut n);
    w.run(&mut v, Op::Take, &mut n);
    w.run(&mut v, Op::Send(1, 2), &mut n);
    assert_eq!(v.in_flight(), 3);
    r.client_words(1).client_announce().unwrap();
    v.notified(&mut n);
    assert_eq!(v.client_counters(1).unwrap().reset_dropped, 2);
    assert_eq!(
        r.layout.peek(&r.clients[1], Free).len(),
        usize::from(CAP) - 3
    );
    w.run(&mut v, Op::Complete(3), &mut n);
    w.run(&mut v, Op::Notify, &mut n);
    assert_eq!(r.layout.peek(&r.clients[1], Free).len(), usize::from(CAP));
    let (f, a) = r.layout.queues(&r.clients[1]);
    w.clients[1] = FillSide::new(f, a);
    w.assert_conserved(&r);
}

fn dropped_by_driver_resets(v: &VirtTx<'_>) -> u64 {
    (0..2)
        .map(|c| v.client_counters(c).unwrap().driver_reset_dropped)
        .sum()
}

/// The driver dies with what it held; its next instance asks for a reset and gets fresh queues.
fn restart_driver<'l>(
    r: &'l Rig,
    v: &mut VirtTx<'_>,
    w: &mut World<'l>,
    n: &mut RecordingNotifier,
) {
    w.driver_held.clear();
    let epoch = r.driver_words().client_announce().expect("a restart");
    n.take();
    v.notified(n);
    assert!(r.driver_words().reset_done(epoch), "reset served");
    assert!(n.take().contains(&(0, true)), "the driver is told");
    let (f, a) = r.layout.queues(&r.driver);
    w.driver = DrainSide::new(f, a);
}

proptest! {
    #[test]
    fn a_restarted_driver_gives_every_buffer_it_held_back_to_its_client_once(
        segments in proptest::collection::vec(proptest::collection::vec(op(), 0..40), 1..4),
    ) {
        let r = rig();
        let mut n = RecordingNotifier::default();
        let (mut v, mut w) = start(&r, &mut n);
        prop_assert_eq!(r.driver_words().client_announce(), None, "first driver is fresh");
        for (k, ops) in segments.iter().enumerate() {
            for &o in ops {
                w.run(&mut v, o, &mut n);
            }
            w.assert_conserved(&r);
            // Completions waiting in tx_free come back as usual; the rest was in flight.
            let lost_with_driver =
                v.in_flight() as u64 - r.layout.peek(&r.driver, Free).len() as u64;
            let dropped = dropped_by_driver_resets(&v);
            restart_driver(&r, &mut v, &mut w, &mut n);
            prop_assert_eq!(v.driver_counters.resets, k as u64 + 1);
            prop_assert_eq!(dropped_by_driver_resets(&v) - dropped, lost_with_driver);
            w.assert_conserved(&r);
        }
        for _ in 0..4 {
            for o in [Op::Notify, Op::Take, Op::Complete(usize::MAX), Op::Notify] {
                w.run(&mut v, o, &mut n);
            }
        }
        w.assert_conserved(&r);
        prop_assert_eq!(v.in_flight(), 0);
        prop_assert_eq!(v.driver_counters.bad_completions, 0);
        prop_assert_eq!(v.driver_counters.peer_misbehaviour, 0);
        prop_assert_eq!(v.driver_counters.bad_reset_requests, 0);
        for c in 0..2 {
            let cc = v.client_counters(c).unwrap();
            prop_assert_eq!((cc.resets, cc.duplicates, cc.peer_misbehaviour), (0, 0, 0));
        }
    }

    #[test]
    fn a_driver_scribbling_its_words_cannot_lose_or_duplicate_a_buffer(
        ops in proptest::collection::vec(op(), 0..40),
        bad in prop_oneof![Just(0u32), Just(1u32), 0x8000_0002u32..=u32::MAX],
        fake_done in any::<u32>(),
    ) {
        let r = rig();
        let mut n = RecordingNotifier::default();
        let (mut v, mut w) = start(&r, &mut n);
        r.driver_words().client_announce();
        // One honest restart, so that epoch 2 is served.
        restart_driver(&r, &mut v, &mut w, &mut n);
        for &o in &ops {
            w.run(&mut v, o, &mut n);
        }
        let at = words_offset(DRIVER_CAP.into());
        let view = r.layout.view(&r.driver.free_queue);
        view.write(at, &bad.to_le_bytes()).unwrap();
        view.write(at + 4, &fake_done.to_le_bytes()).unwrap();
        v.notified(&mut n);
        v.notified(&mut n);
        prop_assert_eq!(v.driver_counters.resets, 1, "no reset from a stale epoch");
        prop_assert_eq!(
            v.driver_counters.bad_reset_requests,
            u64::from(bad != 0 && bad != 2),
            "a backwards epoch counted once"
        );
        w.assert_conserved(&r);
    }
}

#[test]
fn frames_at_a_dead_driver_are_returned_unsent_and_new_ones_flow_after_the_reset() {
    let r = rig();
    let mut n = RecordingNotifier::default();
    let (mut v, mut w) = start(&r, &mut n);
    r.driver_words().client_announce();
    w.run(&mut v, Op::Send(0, 3), &mut n);
    w.run(&mut v, Op::Send(1, 2), &mut n);
    w.run(&mut v, Op::Notify, &mut n);
    w.run(&mut v, Op::Take, &mut n);
    w.run(&mut v, Op::Complete(1), &mut n);
    assert_eq!(v.in_flight(), 5);
    restart_driver(&r, &mut v, &mut w, &mut n);
    assert_eq!(v.in_flight(), 0);
    assert_eq!(v.driver_counters.resets, 1);
    assert_eq!(v.client_counters(0).unwrap().driver_reset_dropped, 2);
    assert_eq!(v.client_counters(1).unwrap().driver_reset_dropped, 2);
    assert_eq!(v.client_counters(0).unwrap().returned, 1);
    w.assert_conserved(&r);
    for c in 0..2 {
        assert_eq!(r.layout.peek(&r.clients[c], Free).len(), usize::from(CAP));
    }
    // The new driver gets frames in its fresh queue.
    w.run(&mut v, Op::Send(1, 4), &mut n);
    w.run(&mut v, Op::Notify, &mut n);
    w.run(&mut v, Op::Take, &mut n);
    assert_eq!(w.driver_held.len(), 4);
    w.run(&mut v, Op::Complete(4), &mut n);
    w.run(&mut v, Op::Notify, &mut n);
    assert_eq!(v.in_flight(), 0);
    w.assert_conserved(&r);
}
