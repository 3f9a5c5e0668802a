//! Buffer conservation across the whole RX and TX pipeline, under any interleaving of the
//! driver, virt_rx, the copiers, the clients and virt_tx — including a hostile client that writes
//! garbage descriptors and indices into every queue it shares.
//!
//! After every run, the system is driven to quiescence and every sDDF buffer must be in exactly
//! one place: RX DMA buffers all back with the driver, the good client's RX and TX buffers all
//! back in its free queues, nothing left in flight; and the good client must have received every
//! frame addressed to it (unless its copier counted it as dropped for lack of a free buffer),
//! byte-identical.
//!
//! The good client may also restart at any point (its queues rebuilt by its copier and virt_tx
//! through `netvm_api::reconnect`; frames waiting for the dead instance are lost, counted), and the
//! hostile one scribbles its reconnect words too, which must not cost the good client anything.
//!
//! The driver may restart at any point too, holding RX buffers it took for the hardware and TX
//! frames it took and not yet completed: virt_rx and virt_tx rebuild its queues through the same
//! words, every buffer comes back once, what the dead driver completed is delivered, and the
//! good client's TX frames it held are counted as dropped (never lost buffers).
//!
//! Local delivery is on (`netvm_api::vswitch`): the good client also sends frames to client 1's
//! MAC (delivered only through client 1's copier) and broadcasts (the driver and that copier), so
//! its TX buffers are held by a copier too, across every reset above; each comes back once.
use netvm_api::options::{NetOptions, DRIVER_OFFSETS};
use netvm_api::reconnect::{words_offset, ControlWords};
use proptest::prelude::*;
use sddf::config::*;
use sddf::queue::{Capacity, DrainSide, FillSide};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::pipeline::{frame, System, CAP, MACS};

#[derive(Debug, Clone)]
enum Step {
    /// The NIC receives a frame for client 0, client 1, broadcast, or nobody.
    Receive {
        to: u8,
        len: u16,
    },
    VirtRx,
    Copier(usize),
    VirtTx,
    /// The good client drains its RX queue (and returns buffers) and maybe sends a frame of
    /// `len` to (kind) nobody (0, 1: the wire), client 1 (2: local only) or broadcast (3).
    GoodClient {
        send: Option<(u16, u8)>,
    },
    /// The hostile client writes garbage: descriptors into its queues, and/or raw indices.
    Hostile {
        desc: (u64, u16, u8),
        scribble: Option<(u8, u16)>,
    },
    /// The hostile client behaves for a moment: drains RX and returns what it got.
    HostileDrain,
    /// The driver transmits and completes everything queued.
    DriverTx,
    /// The good client dies and a new instance asks its peers for a reset.
    GoodRestart,
    /// The hostile client writes these reconnect epochs (RX, TX).
    HostileEpochs(u32, u32),
    /// The driver takes up to this many free RX buffers for the hardware (no frame yet).
    DriverHoldRx(u8),
    /// The driver takes what is queued for transmission without completing it yet.
    DriverTakeTx,
    /// The driver dies with what it held and a new instance asks for a reset.
    DriverRestart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..4, 14u16..1515).prop_map(|(to, len)| Step::Receive { to, len }),
        2 => Just(Step::VirtRx),
        2 => (0usize..2).prop_map(Step::Copier),
        2 => Just(Step::VirtTx),
        2 => proptest::option::of((14u16..1515, 0u8..4))
            .prop_map(|send| Step::GoodClient { send }),
        3 => (hostile_desc(), proptest::option::of((0u8..4, prop_oneof![0u16..40, any::<u16>()])))
            .prop_map(|(desc, scribble)| Step::Hostile { desc, scribble }),
        1 => Just(Step::HostileDrain),
        1 => Just(Step::DriverTx),
        1 => Just(Step::GoodRestart),
        1 => (any::<u32>(), prop_oneof![any::<u32>(), 0u32..4])
            .prop_map(|(rx, tx)| Step::HostileEpochs(rx, tx)),
        1 => (1u8..4).prop_map(Step::DriverHoldRx),
        1 => Just(Step::DriverTakeTx),
        1 => Just(Step::DriverRestart),
    ]
}

/// The good client's new instance, waiting for its peers (RX and TX words, epochs).
type Waiting<'a> = (ControlWords<'a>, u32, ControlWords<'a>, u32);

/// Garbage, and garbage that looks plausible (aligned offsets near the real range, lengths
/// around the limits, small oids), which is what finds confused-deputy bugs.
fn hostile_desc() -> impl Strategy<Value = (u64, u16, u8)> {
    prop_oneof![
        (any::<u64>(), any::<u16>(), any::<u8>()),
        (
            (0u64..12).prop_map(|k| k * 2048),
            prop_oneof![0u16..3, 14u16..1515, 2046u16..2100],
            0u8..3
        ),
    ]
}

/// The scripted driver: RX fill side and TX drain side, what it holds outside its queues, and
/// (after a restart) its new instance's wait for virt_rx and virt_tx.
struct Driver<'a> {
    rx: FillSide<'a>,
    tx: DrainSide<'a>,
    /// Offsets of free RX buffers taken for the hardware.
    rx_held: Vec<u64>,
    /// TX descriptors taken and not completed.
    tx_held: Vec<BuffDesc>,
    waiting: Option<Waiting<'a>>,
}

impl<'a> Driver<'a> {
    /// Whether the driver may touch its queues: a restarted instance only once virt_rx and
    /// virt_tx both answered (then its handles are rebuilt from the reset queues).
    fn live(&mut self, sys: &'a System) -> bool {
        let Some((rxw, rxe, txw, txe)) = self.waiting else {
            return true;
        };
        if !(rxw.reset_done(rxe) && txw.reset_done(txe)) {
            return false;
        }
        let (f, a) = sys.layout.queues(&sys.rx.driver);
        self.rx = FillSide::new(f, a);
        let (f, a) = sys.layout.queues(&sys.tx.driver);
        self.tx = DrainSide::new(f, a);
        self.waiting = None;
        true
    }
}

/// Whether the good client may touch its queues: a restarted instance only once both peers
/// have answered (then its handles are rebuilt from the reset queues).
fn good_live<'a>(
    sys: &'a System,
    waiting: &mut Option<Waiting<'a>>,
    cli_rx: &mut [DrainSide<'a>],
    cli_tx: &mut [FillSide<'a>],
) -> bool {
    let Some((rxw, rxe, txw, txe)) = *waiting else {
        return true;
    };
    if !(rxw.reset_done(rxe) && txw.reset_done(txe)) {
        return false;
    }
    let (f, a) = sys.layout.queues(&sys.client[0].rx);
    cli_rx[0] = DrainSide::new(f, a);
    let (f, a) = sys.layout.queues(&sys.client[0].tx);
    cli_tx[0] = FillSide::new(f, a);
    *waiting = None;
    true
}

/// Runs the steps, checks conservation, and returns the hostile client's counted misbehaviour
/// as (at its copier, at virt_tx), and the frames copied locally to client 1.
fn run(steps: Vec<Step>) -> Result<(u64, u64, u64), TestCaseError> {
    let mut sys = testkit::pipeline::build(0x5fef_0000, [0, 0]);
    let (local_tx, local_copy) = testkit::pipeline::local(&mut sys);
    let l = &sys.layout;
    let space = &l.space;
    let opts = NetOptions::new(DRIVER_OFFSETS, 2);
    let mut n = RecordingNotifier::default();
    let mut vrx = virt_rx::VirtRx::new(&sys.rx, &opts, &space, &mut n).unwrap();
    let mut vtx = virt_tx::VirtTx::new(&sys.tx, &opts, &space, &mut n).unwrap();
    let mut copiers: Vec<copier::Copier<'_>> = sys
        .copy
        .iter()
        .map(|c| copier::Copier::new(c, &space).unwrap())
        .collect();
    vtx.attach_local(&local_tx, &space).unwrap();
    for (c, local) in copiers.iter_mut().zip(&local_copy) {
        c.attach_local(local, &space).unwrap();
    }
    // Scripted driver: RX fill side, TX drain side.
    let (rx, tx) = sys.driver_sides();
    let mut drv = Driver {
        rx,
        tx,
        rx_held: vec![],
        tx_held: vec![],
        waiting: None,
    };
    let driver_words = |r: &RegionResource, cap: u16| {
        ControlWords::new(l.view(r), Capacity::new(cap.into()).unwrap()).unwrap()
    };
    let (drv_rxw, drv_txw) = (
        driver_words(&sys.rx.driver.free_queue, CAP),
        driver_words(&sys.tx.driver.free_queue, 2 * CAP),
    );
    // The first driver announces itself, as driver::connect does.
    assert_eq!(drv_rxw.client_announce(), None);
    assert_eq!(drv_txw.client_announce(), None);
    let dma = l.view(&sys.rx.data.region);
    // Clients: RX drain side, TX fill side (self-provided, as a client's init does).
    let (mut cli_rx, mut cli_tx) = sys.client_sides();
    let mut seq = 0u32;
    let mut expected: Vec<Vec<u8>> = vec![];
    let mut received: Vec<Vec<u8>> = vec![];
    // Frames the good client sent, and whether they are for the wire.
    let mut sent: Vec<(Vec<u8>, bool)> = vec![];
    let mut transmitted: Vec<Vec<u8>> = vec![];

    let words = |r: &RegionResource| {
        ControlWords::new(l.view(r), Capacity::new(CAP.into()).unwrap()).unwrap()
    };
    for c in &sys.client {
        // Every client's first instance announces itself, as NetDevice::connect does.
        assert_eq!(words(&c.rx.free_queue).client_announce(), None);
        assert_eq!(words(&c.tx.free_queue).client_announce(), None);
    }
    let mut waiting: Option<Waiting<'_>> = None;
    let mut tx_reset_lost = 0usize;
    let good_rx = |cli_rx: &mut Vec<DrainSide<'_>>, received: &mut Vec<Vec<u8>>| {
        let view = l.view(&sys.client[0].rx_data);
        while let Ok(d) = cli_rx[0].active.dequeue() {
            let mut buf = vec![0; d.len as usize];
            view.read(d.io_or_offset as usize, &mut buf).unwrap();
            received.push(buf);
            cli_rx[0].free.enqueue(d.with_len(0)).unwrap();
        }
    };
    // The driver completes what it held, then everything queued, in order.
    let driver_tx = |drv: &mut Driver<'_>, transmitted: &mut Vec<Vec<u8>>| {
        while let Ok(d) = drv.tx.active.dequeue() {
            drv.tx_held.push(d);
        }
        for d in std::mem::take(&mut drv.tx_held) {
            // Offset mode: oid is the global region index (client 0 has region 0).
            if d.oid() == 0 {
                let mut buf = vec![0; d.len as usize];
                l.view(&sys.client[0].tx_data)
                    .read(d.io_or_offset as usize, &mut buf)
                    .unwrap();
                transmitted.push(buf);
            }
            drv.tx.free.enqueue(d.with_len(0)).unwrap();
        }
    };
    // Frames into the RX buffers the hardware held, for nobody (they go straight back).
    let driver_flush_rx = |drv: &mut Driver<'_>| {
        for off in std::mem::take(&mut drv.rx_held) {
            dma.write(off as usize, &[2, 9, 9, 9, 9, 9]).unwrap();
            drv.rx.active.enqueue(BuffDesc::new(off, 60, 0)).unwrap();
        }
    };

    for s in steps {
        match s {
            Step::Receive { to, len } => {
                if !drv.live(&sys) {
                    continue;
                }
                let Ok(d) = drv.rx.free.dequeue() else {
                    continue;
                };
                let dest = match to {
                    0 | 1 => MACS[to as usize],
                    2 => [0xff; 6],
                    _ => [2, 9, 9, 9, 9, 9],
                };
                seq += 1;
                let f = frame(dest, seq, len);
                dma.write(d.io_or_offset as usize, &f).unwrap();
                drv.rx
                    .active
                    .enqueue(BuffDesc::new(d.io_or_offset, len, 0))
                    .unwrap();
                if to == 0 || to == 2 {
                    expected.push(f);
                }
            }
            Step::VirtRx => vrx.notified(&mut n),
            Step::Copier(i) => copiers[i].notified(&mut n),
            Step::VirtTx => vtx.notified(&mut n),
            Step::GoodClient { send } => {
                if !good_live(&sys, &mut waiting, &mut cli_rx, &mut cli_tx) {
                    continue;
                }
                good_rx(&mut cli_rx, &mut received);
                let Some((len, kind)) = send else { continue };
                if let Ok(d) = cli_tx[0].free.dequeue() {
                    seq += 1;
                    let dest =
                        [[2, 0, 0, 0, 0, 1], MACS[1], [0xff; 6]][kind.saturating_sub(1) as usize];
                    let f = frame(dest, seq, len);
                    l.view(&sys.client[0].tx_data)
                        .write(d.io_or_offset as usize, &f)
                        .unwrap();
                    cli_tx[0]
                        .active
                        .enqueue(BuffDesc::new(d.io_or_offset, len, 0))
                        .unwrap();
                    sent.push((f, kind != 2));
                }
            }
            Step::Hostile {
                desc: (off, len, oid),
                scribble,
            } => {
                let d = BuffDesc::new(off, len, oid);
                let _ = cli_rx[1].free.enqueue(d);
                let _ = cli_tx[1].active.enqueue(d);
                if let Some((which, value)) = scribble {
                    let c = &sys.client[1];
                    let q = [
                        c.rx.free_queue,
                        c.rx.active_queue,
                        c.tx.free_queue,
                        c.tx.active_queue,
                    ];
                    // Offset 0 = tail, 2 = head: the hostile side writes both.
                    let at = if value % 2 == 0 { 0 } else { 2 };
                    l.view(&q[which as usize])
                        .write(at, &value.to_le_bytes())
                        .unwrap();
                }
            }
            Step::HostileDrain => {
                while let Ok(d) = cli_rx[1].active.dequeue() {
                    let _ = cli_rx[1].free.enqueue(d);
                }
            }
            Step::DriverTx => {
                if drv.live(&sys) {
                    driver_tx(&mut drv, &mut transmitted);
                }
            }
            Step::DriverHoldRx(k) => {
                if !drv.live(&sys) {
                    continue;
                }
                for _ in 0..k {
                    let Ok(d) = drv.rx.free.dequeue() else {
                        break;
                    };
                    drv.rx_held.push(d.io_or_offset);
                }
            }
            Step::DriverTakeTx => {
                if drv.live(&sys) {
                    while let Ok(d) = drv.tx.active.dequeue() {
                        drv.tx_held.push(d);
                    }
                }
            }
            Step::DriverRestart => {
                drv.rx_held.clear();
                drv.tx_held.clear();
                let rxe = drv_rxw.client_announce().expect("a restart");
                let txe = drv_txw.client_announce().expect("a restart");
                drv.waiting = Some((drv_rxw, rxe, drv_txw, txe));
            }
            Step::GoodRestart => {
                // virt_tx serves the reset before it takes anything more from the client, so
                // what is in its TX active queue now is dropped: the newest frames sent.
                if waiting.is_none() {
                    let queued = l.queues(&sys.client[0].tx).1.observed_len().unwrap();
                    tx_reset_lost += usize::from(queued);
                    let keep = sent.len() - usize::from(queued);
                    sent.truncate(keep);
                }
                let c = &sys.client[0];
                let (rxw, txw) = (words(&c.rx.free_queue), words(&c.tx.free_queue));
                let rxe = rxw.client_announce().expect("a restart");
                let txe = txw.client_announce().expect("a restart");
                waiting = Some((rxw, rxe, txw, txe));
            }
            Step::HostileEpochs(rx, tx) => {
                let c = &sys.client[1];
                for (q, epoch) in [(c.rx.free_queue, rx), (c.tx.free_queue, tx)] {
                    l.view(&q)
                        .write(words_offset(CAP.into()), &epoch.to_le_bytes())
                        .unwrap();
                }
            }
        }
    }

    // Quiescence: keep every component and the honest parties running until nothing moves.
    for _ in 0..64 {
        vrx.notified(&mut n);
        for c in copiers.iter_mut() {
            c.notified(&mut n);
        }
        if good_live(&sys, &mut waiting, &mut cli_rx, &mut cli_tx) {
            good_rx(&mut cli_rx, &mut received);
        }
        vtx.notified(&mut n);
        if drv.live(&sys) {
            driver_tx(&mut drv, &mut transmitted);
            driver_flush_rx(&mut drv);
        }
    }
    prop_assert!(
        waiting.is_none(),
        "the restarted good client was never answered"
    );
    prop_assert!(
        drv.waiting.is_none(),
        "the restarted driver was never answered"
    );

    // RX: every DMA buffer is back with the driver.
    prop_assert_eq!(drv.rx.free.len().unwrap(), CAP, "RX DMA buffers lost");
    for i in 0..CAP as usize {
        prop_assert_eq!(vrx.holder(i), Some(virt_rx::Holder::Driver));
    }
    // The good client has all of its RX buffers back in its free queue, and nothing pending.
    prop_assert_eq!(cli_rx[0].free.len().unwrap(), CAP);
    // Every frame for it arrived intact, in order, except those its copier dropped for lack of
    // a free buffer (counted).
    let dropped = (copiers[0].counters.dropped_no_buffer
        + copiers[0].counters.reset_dropped
        + vrx.driver_counters.reset_dropped) as usize;
    prop_assert_eq!(received.len() + dropped, expected.len());
    let mut it = expected.iter();
    for r in &received {
        prop_assert!(it.any(|e| e == r), "frame corrupted or reordered");
    }
    prop_assert_eq!(copiers[0].counters.bad_client_buffers, 0);
    // TX: the good client's frames all went out intact and in order, but for those a dead
    // driver held (counted); its buffers are all back.
    let good = vtx.client_counters(0).unwrap();
    let sent: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|(_, wire)| *wire)
        .map(|(f, _)| f)
        .collect();
    prop_assert_eq!(
        transmitted.len() + good.driver_reset_dropped as usize,
        sent.len()
    );
    // Local delivery: nothing held by a copier any more, and every frame handed to client 1's
    // copier copied or dropped there exactly once; none ever went to client 0's.
    prop_assert_eq!(vtx.local_held(), 0);
    let c1 = copiers[1].counters;
    prop_assert_eq!(
        c1.local_frames + c1.local_dropped + c1.bad_local_frames,
        good.local_delivered
    );
    prop_assert_eq!(c1.bad_local_frames + c1.local_misbehaviour, 0);
    prop_assert_eq!(good.local_dropped, 0);
    prop_assert_eq!(good.peer_misbehaviour, 0);
    prop_assert_eq!(copiers[0].counters.local_frames, 0);
    prop_assert_eq!(vtx.client_counters(1).unwrap().local_misbehaviour, 0);
    let mut it = sent.iter();
    for t in &transmitted {
        prop_assert!(it.any(|s| *s == t), "frame corrupted or reordered");
    }
    prop_assert_eq!(vrx.driver_counters.bad_reset_requests, 0);
    prop_assert_eq!(vtx.driver_counters.bad_reset_requests, 0);
    prop_assert_eq!(vtx.driver_counters.bad_completions, 0);
    prop_assert_eq!(good.reset_dropped as usize, tx_reset_lost);
    prop_assert_eq!(cli_tx[0].free.len().unwrap(), CAP);
    // Each TX buffer exactly once (a buffer returned twice would fill the queue as well).
    let mut offsets: Vec<u64> = l
        .peek(&sys.client[0].tx, QueueKind::Free)
        .iter()
        .map(|d| d.io_or_offset)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    prop_assert_eq!(
        offsets.len(),
        usize::from(CAP),
        "a TX buffer returned twice"
    );
    prop_assert_eq!(vtx.in_flight(), 0);
    let good = vtx.client_counters(0).unwrap();
    prop_assert_eq!(
        good.bad_length + good.bad_oid + good.bad_offset + good.duplicates,
        0
    );
    let c1 = copiers[1].counters;
    let t1 = vtx.client_counters(1).unwrap();
    Ok((
        c1.bad_client_buffers + c1.client_misbehaviour,
        t1.bad_length + t1.bad_oid + t1.bad_offset + t1.duplicates + t1.peer_misbehaviour,
        c1.local_frames,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn every_buffer_is_accounted_for_and_the_good_client_is_served(
        steps in proptest::collection::vec(step(), 1..300)
    ) {
        run(steps)?;
    }
}

#[test]
fn hostile_client_misbehaviour_is_counted() {
    let mut steps = vec![];
    for i in 0..50u64 {
        steps.push(Step::Hostile {
            desc: (i * 977, (i * 131) as u16, i as u8),
            scribble: None,
        });
        steps.push(Step::VirtTx);
        steps.push(Step::Receive { to: 1, len: 60 });
        steps.push(Step::VirtRx);
        steps.push(Step::Copier(1));
    }
    let (at_copier, at_virt_tx, _) = run(steps).unwrap();
    assert!(at_copier > 0, "copier counted nothing");
    assert!(
        at_virt_tx >= 50,
        "virt_tx counted {at_virt_tx} of 50 garbage descriptors"
    );
}

#[test]
fn local_frames_reach_client_1_across_a_driver_restart() {
    let send = |kind| Step::GoodClient {
        send: Some((60, kind)),
    };
    let steps = vec![
        send(2),
        send(3),
        Step::VirtTx,
        Step::DriverTakeTx,
        Step::DriverRestart,
        Step::VirtTx,
        Step::Copier(1),
        send(2),
    ];
    let (_, _, local) = run(steps).unwrap();
    assert_eq!(
        local, 3,
        "two unicast and one broadcast frame copied to client 1"
    );
}
