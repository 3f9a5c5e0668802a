//! The driver restarting at random points of random RX traffic: virt_rx rebuilds the driver's
//! queues so that every RX buffer is in exactly one place again (with the driver once, or with
//! the clients its owner record names), frames the dead driver completed are delivered or
//! counted, and a driver scribbling its reconnect words cannot lose or duplicate a buffer.
use netvm_api::options::NetOptions;
use netvm_api::reconnect::words_offset;
use proptest::prelude::*;
use sddf::config::QueueKind::{Active, Free};
use sddf::queue::{DrainSide, FillSide};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::rig::RxRig as Rig;
use virt_rx::{Holder, VirtRx};

const MACS: [[u8; 6]; 2] = [[0x52, 0x54, 1, 0, 0, 0x10], [0x52, 0x54, 1, 0, 0, 0x11]];
const DESTS: [[u8; 6]; 4] = [MACS[0], MACS[1], [0xff; 6], [2, 0, 0, 0, 0, 9]];
const IO: u64 = 0x5fef_0000;
const CAP: u16 = 16;
const DRIVER_CH: u8 = 0;

fn rig() -> Rig {
    Rig::new(&MACS, CAP, IO)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// The driver receives up to n frames to destination `DESTS[d]`.
    Receive(usize, usize),
    /// The driver takes up to n free buffers into its hands (hardware filling them).
    Take(usize),
    /// The driver completes what is in its hands, to destination `DESTS[d]`.
    Complete(usize),
    /// Client c takes up to n frames and keeps them.
    ClientTake(usize, usize),
    /// Client c returns up to n buffers it holds.
    ClientReturn(usize, usize),
    /// virt_rx runs.
    Notify,
    /// The driver dies with what it held and its next instance asks for a reset.
    RestartDriver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 1usize..6).prop_map(|(d, n)| Op::Receive(d, n)),
        (1usize..4).prop_map(Op::Take),
        (0usize..4).prop_map(Op::Complete),
        (0usize..2, 1usize..6).prop_map(|(c, n)| Op::ClientTake(c, n)),
        (0usize..2, 1usize..6).prop_map(|(c, n)| Op::ClientReturn(c, n)),
        Just(Op::Notify),
        Just(Op::Notify),
        Just(Op::RestartDriver),
    ]
}

struct World<'l> {
    driver: FillSide<'l>,
    /// IO addresses the driver holds outside its queues.
    driver_held: Vec<u64>,
    clients: Vec<DrainSide<'l>>,
    /// Offsets each client holds outside its queues.
    client_held: Vec<Vec<u64>>,
    restarts: u64,
}

impl<'l> World<'l> {
    fn new(r: &'l Rig) -> Self {
        assert_eq!(r.driver_words().client_announce(), None, "first driver");
        let (f, a) = r.layout.queues(&r.driver);
        let clients = r
            .clients
            .iter()
            .map(|c| {
                let (f, a) = r.layout.queues(c);
                DrainSide::new(f, a)
            })
            .collect();
        World {
            driver: FillSide::new(f, a),
            driver_held: vec![],
            clients,
            client_held: vec![vec![], vec![]],
            restarts: 0,
        }
    }

    fn deliver(&mut self, r: &Rig, io: u64, d: usize) {
        let mut f = vec![0x5a; 60];
        f[..6].copy_from_slice(&DESTS[d]);
        r.layout
            .view(&r.cfg.data.region)
            .write((io - IO) as usize, &f)
            .unwrap();
        self.driver
            .active
            .enqueue(BuffDesc::new(io, 60, 0))
            .unwrap();
    }

    fn run(&mut self, r: &'l Rig, v: &mut VirtRx<'_>, op: Op, n: &mut RecordingNotifier) {
        match op {
            Op::Receive(d, k) => {
                for _ in 0..k {
                    let Ok(b) = self.driver.free.dequeue() else {
                        break;
                    };
                    self.deliver(r, b.io_or_offset, d);
                }
            }
            Op::Take(k) => {
                for _ in 0..k {
                    let Ok(b) = self.driver.free.dequeue() else {
                        break;
                    };
                    self.driver_held.push(b.io_or_offset);
                }
            }
            Op::Complete(d) => {
                for io in std::mem::take(&mut self.driver_held) {
                    self.deliver(r, io, d);
                }
            }
            Op::ClientTake(c, k) => {
                for _ in 0..k {
                    let Ok(b) = self.clients[c].active.dequeue() else {
                        break;
                    };
                    self.client_held[c].push(b.io_or_offset);
                }
            }
            Op::ClientReturn(c, k) => {
                for _ in 0..k.min(self.client_held[c].len()) {
                    let off = self.client_held[c].remove(0);
                    self.clients[c]
                        .free
                        .enqueue(BuffDesc::new(off, 0, 0))
                        .unwrap();
                }
            }
            Op::Notify => v.notified(n),
            Op::RestartDriver => {
                self.driver_held.clear();
                let epoch = r.driver_words().client_announce().expect("a restart");
                n.take();
                v.notified(n);
                assert!(r.driver_words().reset_done(epoch), "reset served");
                assert!(n.take().contains(&(DRIVER_CH, true)), "the driver is told");
                self.restarts += 1;
                let (f, a) = r.layout.queues(&r.driver);
                self.driver = FillSide::new(f, a);
            }
        }
    }

    /// Every buffer in exactly the places its owner record says: once with the driver (its
    /// queues or hands), or once with each client of its mask (that client's queues or hands).
    fn assert_conserved(&self, r: &Rig, v: &VirtRx<'_>) {
        let mut at_driver = [0u32; CAP as usize];
        let driver_side = r
            .layout
            .peek(&r.driver, Free)
            .into_iter()
            .chain(r.layout.peek(&r.driver, Active))
            .map(|d| d.io_or_offset)
            .chain(self.driver_held.iter().copied());
        for io in driver_side {
            at_driver[((io - IO) / 2048) as usize] += 1;
        }
        let mut at_client = [[0u32; CAP as usize]; 2];
        for (c, seen) in at_client.iter_mut().enumerate() {
            let queued = r
                .layout
                .peek(&r.clients[c], Free)
                .into_iter()
                .chain(r.layout.peek(&r.clients[c], Active))
                .map(|d| d.io_or_offset);
            for off in queued.chain(self.client_held[c].iter().copied()) {
                seen[(off / 2048) as usize] += 1;
            }
        }
        for i in 0..usize::from(CAP) {
            let mask = match v.holder(i).unwrap() {
                Holder::Driver => 0,
                Holder::Clients(m) => m,
            };
            let want_driver = u32::from(mask == 0);
            assert_eq!(at_driver[i], want_driver, "buffer {i} at the driver");
            for (c, seen) in at_client.iter().enumerate() {
                assert_eq!(
                    seen[i],
                    ((mask >> c) & 1) as u32,
                    "buffer {i} at client {c}"
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn a_restarted_driver_gets_every_buffer_it_held_back_exactly_once(
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        let r = rig();
        let mut n = RecordingNotifier::default();
        let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
        let mut w = World::new(&r);
        for &o in &ops {
            w.run(&r, &mut v, o, &mut n);
            w.assert_conserved(&r, &v);
        }
        prop_assert_eq!(v.driver_counters.resets, w.restarts);
        // Every frame the driver completed was delivered, dropped as unmatched or dropped by a
        // reset (there is none left in rx_active after a reset was served).
        w.run(&r, &mut v, Op::Notify, &mut n);
        let c = v.driver_counters;
        prop_assert_eq!((c.bad_descriptors, c.peer_misbehaviour, c.bad_reset_requests), (0, 0, 0));
        prop_assert_eq!(c.reset_dropped, 0, "rx_return ran before every reset");
        // Everything returned: every buffer is with the driver again, once.
        for cl in 0..2 {
            w.run(&r, &mut v, Op::ClientTake(cl, usize::MAX), &mut n);
            w.run(&r, &mut v, Op::ClientReturn(cl, usize::MAX), &mut n);
        }
        w.run(&r, &mut v, Op::Notify, &mut n);
        w.assert_conserved(&r, &v);
        prop_assert!((0..usize::from(CAP)).all(|i| v.holder(i) == Some(Holder::Driver)));
    }

    #[test]
    fn a_driver_scribbling_its_words_cannot_lose_or_duplicate_a_buffer(
        ops in proptest::collection::vec(op(), 0..60),
        bad in prop_oneof![Just(0u32), Just(1u32), 0x8000_0002u32..=u32::MAX],
        fake_done in any::<u32>(),
    ) {
        let r = rig();
        let mut n = RecordingNotifier::default();
        let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
        let mut w = World::new(&r);
        // One honest restart, so that epoch 2 is served.
        w.run(&r, &mut v, Op::RestartDriver, &mut n);
        for &o in &ops {
            w.run(&r, &mut v, o, &mut n);
        }
        let resets = v.driver_counters.resets;
        let at = words_offset(CAP.into());
        let view = r.layout.view(&r.driver.free_queue);
        view.write(at, &bad.to_le_bytes()).unwrap();
        view.write(at + 4, &fake_done.to_le_bytes()).unwrap();
        let before = (r.layout.peek(&r.driver, Free), r.layout.peek(&r.driver, Active));
        v.notified(&mut n);
        v.notified(&mut n);
        prop_assert_eq!(v.driver_counters.resets, resets, "no reset from a stale epoch");
        let bad_counted = v.driver_counters.bad_reset_requests;
        prop_assert!(bad_counted <= 1, "counted at most once");
        prop_assert_eq!(bad_counted == 1, bad != 0 && bad != words_served(resets));
        prop_assert_eq!(r.layout.peek(&r.driver, Active), vec![], "frames still taken");
        prop_assert!(r.layout.peek(&r.driver, Free).len() >= before.0.len());
        w.assert_conserved(&r, &v);
    }
}

/// The epoch virt_rx served after `resets` resets of a driver that restarted one at a time.
fn words_served(resets: u64) -> u32 {
    1 + resets as u32
}

#[test]
fn frames_a_dead_driver_completed_are_delivered_and_its_buffers_come_back() {
    let r = rig();
    let mut n = RecordingNotifier::default();
    let mut v = VirtRx::new(&r.cfg, &NetOptions::default(), &&r.layout.space, &mut n).unwrap();
    let mut w = World::new(&r);
    // Three frames for client 0 completed but not yet seen by virt_rx, two buffers in the
    // dead driver's hands, the rest in rx_free.
    w.run(&r, &mut v, Op::Receive(0, 3), &mut n);
    w.run(&r, &mut v, Op::Take(2), &mut n);
    w.run(&r, &mut v, Op::RestartDriver, &mut n);
    let c = v.driver_counters;
    assert_eq!((c.resets, c.frames, c.reset_dropped), (1, 3, 0));
    assert_eq!(v.client_counters(0).unwrap().frames, 3);
    assert_eq!(r.layout.peek(&r.clients[0], Active).len(), 3);
    assert_eq!(
        r.layout.peek(&r.driver, Free).len(),
        usize::from(CAP) - 3,
        "every buffer not at a client, once"
    );
    w.assert_conserved(&r, &v);
    // The new driver receives into its fresh queues.
    w.run(&r, &mut v, Op::Receive(1, 2), &mut n);
    w.run(&r, &mut v, Op::Notify, &mut n);
    assert_eq!(v.client_counters(1).unwrap().frames, 2);
    w.assert_conserved(&r, &v);
}
