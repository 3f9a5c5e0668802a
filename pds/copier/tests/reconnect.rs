//! A client restarting at a random point of random traffic: the copier rebuilds its RX queues so
//! that every client buffer is in exactly one place, and a client scribbling the reconnect
//! words is counted and disturbs nothing.
use copier::Copier;
use netvm_api::reconnect::{words_offset, ControlWords};
use proptest::prelude::*;
use sddf::config::{NetCopyConfig, NET_MAGIC};
use sddf::queue::{Capacity, DrainSide, FillSide, QueueError};
use sddf::testing::{Layout, RecordingNotifier};
use sddf::BuffDesc;
use zerocopy::FromZeros;

const VIRT_CAP: u16 = 16;
const CLIENT_CAP: u16 = 8;
const CLIENT_CHANNEL: u8 = 1;

fn rig() -> (Layout, Box<NetCopyConfig>) {
    let mut l = Layout::new();
    let mut c = NetCopyConfig::new_box_zeroed().unwrap();
    c.magic = NET_MAGIC;
    c.rx = l.connection(VIRT_CAP, 0);
    c.rx_data[0] = l.region(u64::from(VIRT_CAP) * 2048);
    c.client = l.connection(CLIENT_CAP, CLIENT_CHANNEL);
    c.client_data = l.region(u64::from(CLIENT_CAP) * 2048);
    (l, c)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// virt_rx delivers up to n frames.
    Deliver(usize),
    /// The copier runs.
    Notify,
    /// The client takes up to n frames and keeps their buffers.
    Take(usize),
    /// The client returns up to n of the buffers it keeps.
    Return(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..6).prop_map(Op::Deliver),
        Just(Op::Notify),
        (1usize..6).prop_map(Op::Take),
        (1usize..6).prop_map(Op::Return),
    ]
}

/// The scripted world around the copier.
struct World<'l> {
    virt: FillSide<'l>,
    /// DMA buffers virt_rx holds (offsets).
    virt_held: Vec<u64>,
    client: DrainSide<'l>,
    /// Client buffers the client holds (offsets).
    client_held: Vec<u64>,
}

impl<'l> World<'l> {
    fn run(&mut self, cp: &mut Copier<'_>, op: Op, n: &mut RecordingNotifier) {
        match op {
            Op::Deliver(k) => {
                for _ in 0..k {
                    let Some(off) = self.virt_held.pop() else {
                        break;
                    };
                    self.virt.active.enqueue(BuffDesc::new(off, 60, 0)).unwrap();
                }
            }
            Op::Notify => {
                cp.notified(n);
                while let Ok(d) = self.virt.free.dequeue() {
                    self.virt_held.push(d.io_or_offset);
                }
            }
            Op::Take(k) => {
                for _ in 0..k {
                    match self.client.active.dequeue() {
                        Ok(d) => self.client_held.push(d.io_or_offset),
                        Err(_) => break,
                    }
                }
            }
            Op::Return(k) => {
                for _ in 0..k {
                    let Some(off) = self.client_held.pop() else {
                        break;
                    };
                    self.client.free.enqueue(BuffDesc::new(off, 0, 0)).unwrap();
                }
            }
        }
    }

    /// Every client buffer is in exactly one of: the client's free queue, its active queue,
    /// the client's hands (read without disturbing the protocol: through fresh handles).
    fn assert_client_buffers_once(&self, l: &Layout, cfg: &NetCopyConfig) {
        let (f, a) = l.queues(&cfg.client);
        let mut seen = vec![0u32; usize::from(CLIENT_CAP)];
        let mut count = |off: u64| seen[(off / 2048) as usize] += 1;
        // The copier consumes `free` from its published head; the client consumes `active`.
        let (free_len, active_len) = (f.observed_len().unwrap(), a.observed_len().unwrap());
        let mut free = f.into_consumer();
        for _ in 0..free_len {
            count(free.dequeue().unwrap().io_or_offset);
        }
        let mut active = a.into_consumer();
        for _ in 0..active_len {
            count(active.dequeue().unwrap().io_or_offset);
        }
        for &off in &self.client_held {
            count(off);
        }
        assert!(
            seen.iter().all(|&c| c == 1),
            "client buffers by index: {seen:?}"
        );
    }
}

/// Peeks by dequeuing through throw-away handles, then puts the indices back as they were, so
/// that the checks above leave the queues untouched.
fn with_snapshot<R>(l: &Layout, cfg: &NetCopyConfig, f: impl FnOnce() -> R) -> R {
    let regions = [cfg.client.free_queue, cfg.client.active_queue];
    let saved: Vec<Vec<u8>> = regions
        .iter()
        .map(|r| {
            let mut b = vec![0; 8];
            l.view(r).read(0, &mut b).unwrap();
            b
        })
        .collect();
    let out = f();
    for (r, b) in regions.iter().zip(saved) {
        l.view(r).write(0, &b).unwrap();
    }
    out
}

fn client_words<'l>(l: &'l Layout, cfg: &NetCopyConfig) -> ControlWords<'l> {
    let cap = Capacity::new(CLIENT_CAP.into()).unwrap();
    ControlWords::new(l.view(&cfg.client.free_queue), cap).unwrap()
}

proptest! {
    #[test]
    fn a_restarted_client_gets_every_rx_buffer_exactly_once(
        before in proptest::collection::vec(op(), 0..60),
        after in proptest::collection::vec(op(), 0..60),
    ) {
        let (l, cfg) = rig();
        let mut n = RecordingNotifier::default();
        let mut cp = Copier::new(&cfg, &&l.space).unwrap();
        let words = client_words(&l, &cfg);
        prop_assert_eq!(words.client_announce(), None, "first instance starts fresh");
        let (f, a) = l.queues(&cfg.rx);
        let virt = FillSide::new(f, a);
        let virt_held: Vec<u64> = (0..u64::from(VIRT_CAP)).map(|i| i * 2048).collect();
        let (f, a) = l.queues(&cfg.client);
        let mut w = World { virt, virt_held, client: DrainSide::new(f, a), client_held: vec![] };
        for &o in &before {
            w.run(&mut cp, o, &mut n);
        }
        with_snapshot(&l, &cfg, || w.assert_client_buffers_once(&l, &cfg));
        let waiting = u64::from(l.queues(&cfg.client).1.observed_len().unwrap());

        // The client dies (its handles and what it held are gone) and a new instance asks.
        w.client_held.clear();
        let epoch = words.client_announce().expect("a restart");
        n.take();
        cp.notified(&mut n);
        prop_assert!(words.reset_done(epoch));
        prop_assert!(n.take().contains(&(CLIENT_CHANNEL, false)), "client notified");
        prop_assert_eq!(cp.counters.resets, 1);
        prop_assert_eq!(cp.counters.reset_dropped, waiting);
        prop_assert_eq!(cp.counters.client_misbehaviour, 0);
        let (f, a) = l.queues(&cfg.client);
        w.client = DrainSide::new(f, a);
        with_snapshot(&l, &cfg, || w.assert_client_buffers_once(&l, &cfg));

        // Life goes on; no second reset without a new instance.
        for &o in &after {
            w.run(&mut cp, o, &mut n);
        }
        w.run(&mut cp, Op::Notify, &mut n);
        prop_assert_eq!(cp.counters.resets, 1);
        with_snapshot(&l, &cfg, || w.assert_client_buffers_once(&l, &cfg));
        // virt_rx's buffers always came straight back.
        prop_assert_eq!(w.virt_held.len() + w.virt.active.len().unwrap() as usize, usize::from(VIRT_CAP));
    }

    #[test]
    fn a_scribbled_backwards_epoch_is_counted_and_changes_nothing(
        ops in proptest::collection::vec(op(), 0..40),
        bad in prop_oneof![Just(1u32), 0x8000_0002u32..=u32::MAX],
    ) {
        let (l, cfg) = rig();
        let mut n = RecordingNotifier::default();
        let mut cp = Copier::new(&cfg, &&l.space).unwrap();
        let words = client_words(&l, &cfg);
        words.client_announce();
        // One honest restart first, so that the epoch served is 2.
        words.client_announce();
        cp.notified(&mut n);
        let (f, a) = l.queues(&cfg.rx);
        let virt_held: Vec<u64> = (0..u64::from(VIRT_CAP)).map(|i| i * 2048).collect();
        let (cf, ca) = l.queues(&cfg.client);
        let mut w = World {
            virt: FillSide::new(f, a),
            virt_held,
            client: DrainSide::new(cf, ca),
            client_held: vec![],
        };
        for &o in &ops {
            w.run(&mut cp, o, &mut n);
        }
        w.run(&mut cp, Op::Notify, &mut n);
        let lens = |l: &Layout| {
            let (f, a) = l.queues(&cfg.client);
            (f.observed_len().unwrap(), a.observed_len().unwrap())
        };
        let before = (lens(&l), cp.counters);
        l.view(&cfg.client.free_queue)
            .write(words_offset(CLIENT_CAP.into()), &bad.to_le_bytes())
            .unwrap();
        cp.notified(&mut n);
        cp.notified(&mut n);
        prop_assert_eq!(cp.counters.bad_reset_requests, 1, "counted once");
        prop_assert_eq!(cp.counters.resets, 1);
        prop_assert_eq!(lens(&l), before.0, "queues untouched");
        prop_assert_eq!(cp.counters.reset_dropped, before.1.reset_dropped);
        with_snapshot(&l, &cfg, || w.assert_client_buffers_once(&l, &cfg));
    }
}

#[test]
fn a_connection_without_room_for_the_words_never_resets() {
    let mut l = Layout::new();
    let mut cfg = NetCopyConfig::new_box_zeroed().unwrap();
    cfg.magic = NET_MAGIC;
    cfg.rx = l.connection(VIRT_CAP, 0);
    cfg.rx_data[0] = l.region(u64::from(VIRT_CAP) * 2048);
    // Client queue regions exactly as large as the queues.
    let exact = sddf::queue::queue_bytes(CLIENT_CAP.into()) as u64;
    let (free, active) = (l.region(exact), l.region(exact));
    cfg.client = sddf::config::ConnectionResource::new(free, active, CLIENT_CAP, CLIENT_CHANNEL);
    cfg.client_data = l.region(u64::from(CLIENT_CAP) * 2048);
    let mut cp = Copier::new(&cfg, &&l.space).unwrap();
    let mut n = RecordingNotifier::default();
    cp.notified(&mut n);
    assert_eq!(cp.counters.resets, 0);
    let (f, _) = l.queues(&cfg.client);
    assert_eq!(f.observed_len(), Ok(CLIENT_CAP));
    let mut fill = FillSide::new(f, l.queues(&cfg.client).1);
    for _ in 0..CLIENT_CAP {
        fill.free.dequeue().unwrap();
    }
    assert_eq!(fill.free.dequeue(), Err(QueueError::Empty));
}
