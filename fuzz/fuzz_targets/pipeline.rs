//! virt_rx, virt_tx and the two copiers stepped in any order by the fuzzer, between a scripted
//! driver, a well-behaved client 0 and a hostile client 1 that writes garbage descriptors and
//! raw indices into every queue it shares. The system is the rig the conservation test uses
//! (`testkit::pipeline::build`); the fuzzer also picks the options (offset or IO-address mode,
//! multicast, strict TX order, budget) and, in IO mode, the IO addresses of the regions.
//!
//! In "chaos" inputs (first byte odd) any party may scribble on any queue, including the
//! driver's and the copiers'; then only the absence of panics and virt_rx's owner masks are
//! checked. Otherwise, after every step:
//! * every RX DMA buffer has exactly one holder: virt_rx says "driver" and it is pending exactly
//!   once in the driver's queues, or virt_rx says "clients {mask}" and it is pending exactly once
//!   in the queues between virt_rx and each copier in the mask and nowhere else;
//! * no TX buffer is pending twice in the driver's queues, and their number is virt_tx's
//!   in-flight count; each of client 0's TX buffers is in exactly one of its queues or the
//!   driver's; each of its RX buffers is in exactly one of its copier queues;
//! * what client 0 receives and transmits is byte-identical and in order.
//!
//! At the end the system is run to quiescence: every RX DMA buffer is back with the driver and
//! all of client 0's buffers are back in its free queues.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netvm_api::options::{NetOptions, DRIVER_OFFSETS, FAIR_TX, LAZY_COMPLETIONS, MULTICAST_TO_ALL};
use netvm_fuzz::{pending, Input};
use sddf::config::*;
use sddf::queue::{Capacity, DrainSide, FillSide};
use sddf::testing::RecordingNotifier;
use sddf::BuffDesc;
use testkit::pipeline::{build, frame, System, CAP, MACS, REGION};

const MULTICAST: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 1];

fn cap(n: u16) -> Capacity {
    Capacity::new(n.into()).unwrap()
}

/// Whether the TX region of client `c` contains IO address `io` (IO-address mode).
fn in_tx_region(io: u64, base: u64) -> Option<u64> {
    io.checked_sub(base).filter(|off| *off < REGION)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let chaos = mode & 1 != 0;
    let mut flags = 0;
    if mode & 2 == 0 {
        flags |= DRIVER_OFFSETS;
    }
    if mode & 4 != 0 {
        flags |= MULTICAST_TO_ALL;
    }
    if mode & 8 != 0 {
        flags |= FAIR_TX;
    }
    if mode & 16 != 0 {
        flags |= LAZY_COMPLETIONS;
    }
    let budget = u16::from(input.u8() % 5);
    let offsets = flags & DRIVER_OFFSETS != 0;
    let (rx_io, mut tx_io) = if offsets {
        (0, [0, 0])
    } else {
        (input.u64(), [input.u64(), input.u64()])
    };
    // The two clients' TX regions must not overlap in IO space (an sdfgen system never has
    // that); a fuzzer choice that overlaps is moved.
    let overlap = |a: u64, b: u64| {
        let (a, b) = (u128::from(a), u128::from(b));
        a < b + u128::from(REGION) && b < a + u128::from(REGION)
    };
    if overlap(tx_io[0], tx_io[1]) {
        tx_io[1] = tx_io[0] ^ (1 << 63);
    }
    let sys = build(rx_io, tx_io);
    let l = &sys.layout;
    let space = &l.space;
    let opts = NetOptions::new(flags, budget);
    let mut n = RecordingNotifier::default();
    let vrx = virt_rx::VirtRx::new(&sys.rx, &opts, &space, &mut n);
    let vtx = virt_tx::VirtTx::new(&sys.tx, &opts, &space, &mut n);
    let (Ok(mut vrx), Ok(mut vtx)) = (vrx, vtx) else {
        // Only IO addresses whose buffers do not fit below 2^64 may be refused.
        assert!(!offsets, "a valid offset-mode system was refused");
        let fits = |io: u64| io.checked_add(REGION).is_some();
        assert!(
            !(fits(rx_io) && fits(tx_io[0]) && fits(tx_io[1])),
            "a valid system was refused"
        );
        return;
    };
    let mut copiers: Vec<copier::Copier<'_>> = sys
        .copy
        .iter()
        .map(|c| copier::Copier::new(c, &space).unwrap())
        .collect();
    let (mut drv_rx, mut drv_tx) = sys.driver_sides();
    let dma = l.view(&sys.rx.data.region);
    let (mut cli_rx, mut cli_tx) = sys.client_sides();
    let mut seq = 0u32;
    let mut expected: Vec<Vec<u8>> = vec![];
    let mut received: Vec<Vec<u8>> = vec![];
    let mut sent: Vec<Vec<u8>> = vec![];
    let mut transmitted: Vec<Vec<u8>> = vec![];
    // Every queue region, for the chaos scribbler: driver RX, driver TX, then per client the
    // virt_rx-copier, copier-client and client-virt_tx pairs.
    let mut all_queues = vec![
        (sys.rx.driver.free_queue, CAP),
        (sys.rx.driver.active_queue, CAP),
        (sys.tx.driver.free_queue, 2 * CAP),
        (sys.tx.driver.active_queue, 2 * CAP),
    ];
    for i in 0..2 {
        for conn in [
            &sys.rx.clients[i].conn,
            &sys.client[i].rx,
            &sys.client[i].tx,
        ] {
            all_queues.push((conn.free_queue, CAP));
            all_queues.push((conn.active_queue, CAP));
        }
    }

    // Client 0 drains its RX queue and returns every buffer.
    let good_rx = |cli_rx: &mut Vec<DrainSide<'_>>, received: &mut Vec<Vec<u8>>| {
        let view = l.view(&sys.client[0].rx_data);
        while let Ok(d) = cli_rx[0].active.dequeue() {
            let mut buf = vec![0; d.len as usize];
            match view.read(d.io_or_offset as usize, &mut buf) {
                Ok(()) => received.push(buf),
                // In chaos the scribbler may have written this descriptor straight into client
                // 0's queue: no copier made it.
                Err(_) if chaos => {}
                Err(e) => panic!("copier gave client 0 a buffer outside its region: {e:?}"),
            }
            // In chaos the free queue may have been filled by a scribbler.
            let returned = cli_rx[0].free.enqueue(d.with_len(0));
            if !chaos {
                returned.unwrap();
            }
        }
    };
    // Which client region (and offset in it) a driver TX descriptor names.
    let tx_target = |d: &BuffDesc| -> Option<(usize, u64)> {
        if offsets {
            let c = usize::from(d.oid());
            (c < 2).then_some((c, d.io_or_offset))
        } else {
            (0..2).find_map(|c| in_tx_region(d.io_or_offset, tx_io[c]).map(|off| (c, off)))
        }
    };
    let driver_tx = |drv_tx: &mut DrainSide<'_>, transmitted: &mut Vec<Vec<u8>>| {
        while let Ok(d) = drv_tx.active.dequeue() {
            if let Some((0, off)) = tx_target(&d) {
                let mut buf = vec![0; d.len as usize];
                let read = l.view(&sys.client[0].tx_data).read(off as usize, &mut buf);
                // In chaos the scribbler may have written this descriptor straight into the
                // driver's queue, so virt_tx never saw it: only without chaos must it fit.
                if read.is_ok() || !chaos {
                    read.expect("virt_tx passed on a client 0 buffer outside its region");
                    transmitted.push(buf);
                }
            }
            // In chaos the free queue may have been filled by a scribbler.
            let _ = drv_tx.free.enqueue(d.with_len(0));
        }
    };

    let mut steps = 0;
    while !input.is_empty() && steps < 2000 {
        steps += 1;
        match input.u8() % 12 {
            0 | 1 => {
                // The NIC receives a frame for client 0, client 1, broadcast, multicast or nobody.
                let to = input.u8() % 5;
                let len = 14 + input.u16() % 1501;
                let Ok(d) = drv_rx.free.dequeue() else {
                    continue;
                };
                let Some(off) = d
                    .io_or_offset
                    .checked_sub(rx_io)
                    .filter(|o| o % 2048 == 0 && *o < REGION)
                else {
                    assert!(chaos, "virt_rx gave the driver a bad buffer {d:?}");
                    continue;
                };
                let dest = match to {
                    0 | 1 => MACS[usize::from(to)],
                    2 => [0xff; 6],
                    3 => MULTICAST,
                    _ => [2, 9, 9, 9, 9, 9],
                };
                seq += 1;
                let f = frame(dest, seq, len);
                dma.write(off as usize, &f).unwrap();
                if drv_rx
                    .active
                    .enqueue(BuffDesc::new(d.io_or_offset, len, 0))
                    .is_err()
                {
                    assert!(chaos, "driver RX active queue overflowed");
                    continue;
                }
                if to == 0 || to == 2 || (to == 3 && flags & MULTICAST_TO_ALL != 0) {
                    expected.push(f);
                }
            }
            2 => vrx.notified(&mut n),
            3 => copiers[usize::from(input.u8() & 1)].notified(&mut n),
            4 => vtx.notified(&mut n),
            5 => {
                good_rx(&mut cli_rx, &mut received);
                if input.bool() {
                    let len = 14 + input.u16() % 1501;
                    if let Ok(d) = cli_tx[0].free.dequeue() {
                        seq += 1;
                        let f = frame([2, 0, 0, 0, 0, 1], seq, len);
                        let written = l
                            .view(&sys.client[0].tx_data)
                            .write(d.io_or_offset as usize, &f);
                        // In chaos the scribbler may have written this descriptor straight into
                        // client 0's free queue, so virt_tx never returned it.
                        if written.is_err() && chaos {
                            continue;
                        }
                        written.expect("virt_tx returned a bad buffer to client 0");
                        if cli_tx[0]
                            .active
                            .enqueue(BuffDesc::new(d.io_or_offset, len, 0))
                            .is_err()
                        {
                            // Only chaos mode scribbles on the good client's own queues.
                            assert!(chaos, "client 0's TX active queue refused a frame");
                            continue;
                        }
                        sent.push(f);
                    }
                }
            }
            6 | 7 => {
                // Client 1 writes garbage into the queues it produces, and maybe raw indices.
                let d = input.desc();
                let _ = cli_rx[1].free.enqueue(d);
                let _ = cli_tx[1].active.enqueue(d);
                if input.bool() {
                    let c = &sys.client[1];
                    let q = [
                        c.rx.free_queue,
                        c.rx.active_queue,
                        c.tx.free_queue,
                        c.tx.active_queue,
                    ][usize::from(input.u8() % 4)];
                    let at = usize::from(input.u8() % 8);
                    let value = input.u16().to_le_bytes();
                    l.view(&q).write(at.min(6), &value).unwrap();
                }
            }
            8 => {
                // Client 1 behaves for a moment: drains RX and returns what it got.
                while let Ok(d) = cli_rx[1].active.dequeue() {
                    let _ = cli_rx[1].free.enqueue(d);
                }
                while let Ok(d) = cli_tx[1].free.dequeue() {
                    let _ = cli_tx[1].active.enqueue(d.with_len(60));
                }
            }
            9 => driver_tx(&mut drv_tx, &mut transmitted),
            10 if chaos => {
                // Anyone scribbles anywhere in any queue, or the driver sends garbage.
                if input.bool() {
                    let (q, qcap) = all_queues[usize::from(input.u8()) % all_queues.len()];
                    let at = usize::from(input.u16()) % (8 + 16 * usize::from(qcap));
                    let bytes = input.chunk(16 + 1);
                    let end = bytes.len().min(8 + 16 * usize::from(qcap) - at);
                    l.view(&q).write(at, &bytes[..end]).unwrap();
                } else {
                    let _ = drv_rx.active.enqueue(input.desc());
                    let _ = drv_tx.free.enqueue(input.desc());
                }
            }
            _ => {}
        }
        check(&sys, &vrx, &vtx, chaos, tx_target);
    }
    if chaos {
        // Whatever the scribbling, the components keep running without panicking.
        for _ in 0..4 {
            vrx.notified(&mut n);
            for c in copiers.iter_mut() {
                c.notified(&mut n);
            }
            vtx.notified(&mut n);
        }
        check(&sys, &vrx, &vtx, chaos, tx_target);
        return;
    }

    for _ in 0..64 {
        vrx.notified(&mut n);
        for c in copiers.iter_mut() {
            c.notified(&mut n);
        }
        good_rx(&mut cli_rx, &mut received);
        vtx.notified(&mut n);
        driver_tx(&mut drv_tx, &mut transmitted);
    }
    assert_eq!(drv_rx.free.len().unwrap(), CAP, "RX DMA buffers lost");
    for i in 0..usize::from(CAP) {
        assert_eq!(vrx.holder(i), Some(virt_rx::Holder::Driver));
    }
    assert_eq!(
        cli_rx[0].free.len().unwrap(),
        CAP,
        "client 0 RX buffers lost"
    );
    let dropped = copiers[0].counters.dropped_no_buffer as usize;
    assert_eq!(
        received.len() + dropped,
        expected.len(),
        "frames for client 0 lost"
    );
    let mut it = expected.iter();
    for r in &received {
        assert!(it.any(|e| e == r), "frame corrupted or reordered");
    }
    assert_eq!(copiers[0].counters.bad_client_buffers, 0);
    assert_eq!(
        transmitted, sent,
        "client 0's frames not sent intact and in order"
    );
    assert_eq!(
        cli_tx[0].free.len().unwrap(),
        CAP,
        "client 0 TX buffers lost"
    );
    assert_eq!(vtx.in_flight(), 0);
    let good = vtx.client_counters(0).unwrap();
    assert_eq!(
        good.bad_length + good.bad_oid + good.bad_offset + good.duplicates,
        0
    );
});

/// The per-step invariants (see the module docs).
fn check(
    sys: &System,
    vrx: &virt_rx::VirtRx<'_>,
    vtx: &virt_tx::VirtTx<'_>,
    chaos: bool,
    tx_target: impl Fn(&BuffDesc) -> Option<(usize, u64)>,
) {
    let l = &sys.layout;
    for i in 0..usize::from(CAP) {
        match vrx.holder(i) {
            Some(virt_rx::Holder::Clients(mask)) => assert_eq!(mask & !0b11, 0),
            Some(virt_rx::Holder::Driver) => {}
            None => panic!("buffer {i} has no holder"),
        }
    }
    assert!(vtx.in_flight() <= 2 * usize::from(CAP));
    if chaos {
        return;
    }
    let q = |r: &RegionResource, c: u16| pending(l.view(r), cap(c)).expect("honest queue");
    let rx_io = sys.rx.data.io_addr;
    let drv: Vec<u64> = [&sys.rx.driver.free_queue, &sys.rx.driver.active_queue]
        .into_iter()
        .flat_map(|r| q(r, CAP))
        .map(|d| d.io_or_offset.wrapping_sub(rx_io))
        .collect();
    let at_copier: Vec<Vec<u64>> = (0..2)
        .map(|c| {
            let conn = &sys.rx.clients[c].conn;
            [&conn.free_queue, &conn.active_queue]
                .into_iter()
                .flat_map(|r| q(r, CAP))
                .map(|d| d.io_or_offset)
                .collect()
        })
        .collect();
    for i in 0..u64::from(CAP) {
        let off = i * 2048;
        let count = |v: &Vec<u64>| v.iter().filter(|&&o| o == off).count();
        let (in_drv, in_c0, in_c1) = (count(&drv), count(&at_copier[0]), count(&at_copier[1]));
        match vrx.holder(i as usize).unwrap() {
            virt_rx::Holder::Driver => assert_eq!(
                (in_drv, in_c0, in_c1),
                (1, 0, 0),
                "RX buffer {i} held by the driver"
            ),
            virt_rx::Holder::Clients(mask) => assert_eq!(
                (in_drv, in_c0, in_c1),
                (0, (mask & 1) as usize, (mask >> 1) as usize),
                "RX buffer {i} held by clients {mask:#b}"
            ),
        }
    }
    // TX: what the driver holds is distinct and is virt_tx's in-flight set.
    let with_driver: Vec<(usize, u64)> = [&sys.tx.driver.free_queue, &sys.tx.driver.active_queue]
        .into_iter()
        .flat_map(|r| q(r, 2 * CAP))
        .map(|d| tx_target(&d).expect("driver holds a buffer of no client"))
        .collect();
    for (k, b) in with_driver.iter().enumerate() {
        assert!(
            !with_driver[..k].contains(b),
            "TX buffer {b:?} with the driver twice"
        );
    }
    assert_eq!(with_driver.len(), vtx.in_flight());
    // Client 0's TX buffers: each in exactly one of its queues or with the driver.
    let tx0: Vec<u64> = [&sys.client[0].tx.free_queue, &sys.client[0].tx.active_queue]
        .into_iter()
        .flat_map(|r| q(r, CAP))
        .map(|d| d.io_or_offset)
        .chain(
            with_driver
                .iter()
                .filter(|(c, _)| *c == 0)
                .map(|(_, off)| *off),
        )
        .collect();
    let rx0: Vec<u64> = [&sys.client[0].rx.free_queue, &sys.client[0].rx.active_queue]
        .into_iter()
        .flat_map(|r| q(r, CAP))
        .map(|d| d.io_or_offset)
        .collect();
    for i in 0..u64::from(CAP) {
        let off = i * 2048;
        assert_eq!(
            tx0.iter().filter(|&&o| o == off).count(),
            1,
            "client 0 TX buffer {i}"
        );
        assert_eq!(
            rx0.iter().filter(|&&o| o == off).count(),
            1,
            "client 0 RX buffer {i}"
        );
    }
    assert_eq!(tx0.len(), usize::from(CAP));
    assert_eq!(rx0.len(), usize::from(CAP));
}
