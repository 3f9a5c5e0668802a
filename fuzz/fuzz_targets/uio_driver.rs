//! The uio-driver core (`uio_driver::driver::Driver`) between a scripted NIC and fuzzer-driven
//! virt_rx and virt_tx sides over shared memory, as in `uio-driver/tests/core.rs` (the NIC and
//! doorbells are `testkit::nic`'s).
//!
//! virt_tx submits arbitrary descriptors (garbage lengths, oids and offsets among them) but never
//! more than it has buffers; virt_rx provides its buffers and, sometimes, garbage offsets; the
//! NIC offers frames of any length, some truncated, and may run out of room. In "chaos" inputs
//! (first byte odd) anyone may also scribble on the four queues.
//!
//! Checks: no panic; unless in chaos, every TX descriptor comes back on tx_free in order with
//! length 0 and nothing else changed, and the NIC sent exactly the valid ones, byte-identical;
//! every frame that fits a buffer reaches virt_rx byte-identical and in order, in a buffer that
//! virt_rx provided and does not already hold; oversize and truncated frames are dropped and
//! counted; no buffer is lost.
#![no_main]
use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use netvm_fuzz::Input;
use sddf::queue::{queue_bytes, Capacity, DrainSide, FillSide, Queue};
use sddf::shm::OwnedRegion;
use sddf::{BuffDesc, NET_BUFFER_SIZE};
use testkit::nic::{Bells, ScriptedNic};
use uio_driver::driver::{Driver, DriverQueues, Events};

const CAP: u32 = 16;
const BUFS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let chaos = input.u8() & 1 != 0;
    let tx_regions = usize::from(input.u8() % 4);
    let q = || OwnedRegion::new(queue_bytes(CAP as usize));
    let (rx_free, rx_active, tx_free, tx_active) = (q(), q(), q(), q());
    // The RX region may be smaller than the buffers virt_rx names (a misconfigured guest).
    let rx_size = BUFS * NET_BUFFER_SIZE - usize::from(input.u8() % 2) * 3000;
    let rx_data = OwnedRegion::new(rx_size);
    let tx_data: Vec<OwnedRegion> = (0..tx_regions)
        .map(|_| OwnedRegion::new(BUFS * NET_BUFFER_SIZE))
        .collect();
    fn queue(r: &OwnedRegion) -> Queue<'_> {
        Queue::new(r.region(), Capacity::new(CAP).unwrap()).unwrap()
    }
    let mut driver = Driver::new(DriverQueues {
        rx: FillSide::new(queue(&rx_free), queue(&rx_active)),
        rx_data: rx_data.region(),
        tx: DrainSide::new(queue(&tx_free), queue(&tx_active)),
        tx_data: tx_data.iter().map(|r| r.region()).collect(),
    });
    let mut virt_rx = DrainSide::new(queue(&rx_free), queue(&rx_active));
    let mut virt_tx = FillSide::new(queue(&tx_free), queue(&tx_active));
    let mut nic = ScriptedNic::new();
    let mut bells = Bells::default();

    // virt_rx's view: buffers it holds (not with the driver); frames expected, in order.
    let mut rx_held: Vec<bool> = vec![true; BUFS];
    let mut rx_expected: VecDeque<Vec<u8>> = VecDeque::new();
    let mut bad_frames = 0u64;
    // virt_tx's view: descriptors submitted and not yet back; frames the NIC must send.
    let mut tx_outstanding: VecDeque<BuffDesc> = VecDeque::new();
    let mut tx_expected: Vec<Vec<u8>> = Vec::new();
    let mut seq = 0u8;

    while !input.is_empty() {
        match input.u8() % 11 {
            0 | 1 => {
                // The NIC receives a frame; sometimes longer than a buffer or truncated.
                let len = match input.u8() % 4 {
                    0 => 2040 + usize::from(input.u8() % 16),
                    _ => usize::from(input.u16() % 1600),
                };
                let truncated = input.u8() % 8 == 0;
                seq = seq.wrapping_add(1);
                let f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seq).collect();
                let wire = len + usize::from(truncated);
                if len <= NET_BUFFER_SIZE && !truncated {
                    rx_expected.push_back(f.clone());
                } else {
                    bad_frames += 1;
                }
                nic.incoming.push_back((f, wire));
            }
            2 => driver.rx_process(&mut nic, &mut bells).unwrap(),
            3 => {
                if let Err(e) = driver.tx_process(&mut nic, &mut bells) {
                    assert!(e.to_string().contains("scripted"), "{e}");
                }
            }
            4 => {
                let b = input.u8();
                let ev = Events {
                    rx_notified: b & 1 != 0,
                    tx_notified: b & 2 != 0,
                    nic_readable: b & 4 != 0,
                    nic_writable: b & 8 != 0,
                    interrupted: b & 16 != 0,
                };
                if let Err(e) = driver.handle(ev, &mut nic, &mut bells) {
                    assert!(e.to_string().contains("scripted"), "{e}");
                }
            }
            5 => {
                // virt_rx provides a buffer it holds, or a garbage offset.
                if input.u8() % 4 == 0 {
                    let off = input.u64();
                    let at = usize::try_from(off).ok();
                    // An offset near usize::MAX must not overflow the harness's own check.
                    let valid = at.is_some_and(|o| {
                        o % NET_BUFFER_SIZE == 0
                            && o.checked_add(NET_BUFFER_SIZE)
                                .is_some_and(|end| end <= rx_size)
                    });
                    if !valid || chaos {
                        let _ = virt_rx.free.enqueue(BuffDesc::new(off, 0, 0));
                    }
                } else if let Some(i) = (0..BUFS).find(|&i| rx_held[i]) {
                    if virt_rx
                        .free
                        .enqueue(BuffDesc::new((i * NET_BUFFER_SIZE) as u64, 0, 0))
                        .is_ok()
                    {
                        rx_held[i] = false;
                    }
                }
            }
            6 => {
                // virt_rx drains what the driver passed on.
                while let Ok(d) = virt_rx.active.dequeue() {
                    if chaos {
                        continue;
                    }
                    let i = (d.io_or_offset / NET_BUFFER_SIZE as u64) as usize;
                    assert_eq!(d.io_or_offset % NET_BUFFER_SIZE as u64, 0, "{d:?}");
                    assert!(
                        i < BUFS && !rx_held[i],
                        "driver returned a buffer it lacks: {d:?}"
                    );
                    rx_held[i] = true;
                    let want = rx_expected.pop_front().expect("a frame nobody sent");
                    assert_eq!(usize::from(d.len), want.len());
                    let mut got = vec![0; want.len()];
                    rx_data
                        .region()
                        .read(d.io_or_offset as usize, &mut got)
                        .unwrap();
                    assert_eq!(got, want, "RX frame corrupted");
                }
            }
            7 => {
                // virt_tx submits a descriptor, if it has a buffer to spare.
                if tx_outstanding.len() < BUFS {
                    let d = input.desc();
                    let valid = (1..=NET_BUFFER_SIZE).contains(&usize::from(d.len))
                        && usize::from(d.oid()) < tx_regions
                        && d.io_or_offset % NET_BUFFER_SIZE as u64 == 0
                        && d.io_or_offset < (BUFS * NET_BUFFER_SIZE) as u64;
                    // virt_tx owns its buffers: it never submits one that is still out.
                    let out = tx_outstanding
                        .iter()
                        .any(|o| o.oid() == d.oid() && o.io_or_offset == d.io_or_offset);
                    if valid && out {
                        continue;
                    }
                    if valid {
                        let region = tx_data[usize::from(d.oid())].region();
                        let f: Vec<u8> = (0..d.len).map(|i| (i as u8) ^ seq).collect();
                        seq = seq.wrapping_add(1);
                        region.write(d.io_or_offset as usize, &f).unwrap();
                        tx_expected.push(f);
                    }
                    if virt_tx.active.enqueue(d).is_ok() {
                        tx_outstanding.push_back(d);
                    } else if valid {
                        tx_expected.pop();
                    }
                }
            }
            8 => {
                // virt_tx collects returned buffers.
                while let Ok(d) = virt_tx.free.dequeue() {
                    if chaos {
                        continue;
                    }
                    let want = tx_outstanding.pop_front().expect("a buffer nobody sent");
                    assert_eq!(d, want.with_len(0), "TX buffer changed on its way back");
                }
            }
            9 => match input.u8() % 3 {
                0 => nic.room = usize::from(input.u8() % 4),
                1 => nic.room = usize::MAX,
                _ => nic.fail_next_flush = chaos,
            },
            _ if chaos => {
                let r = [&rx_free, &rx_active, &tx_free, &tx_active][usize::from(input.u8() % 4)];
                let at = usize::from(input.u16()) % queue_bytes(CAP as usize);
                let bytes = input.chunk(8 + 1);
                let end = bytes.len().min(queue_bytes(CAP as usize) - at);
                r.region().write(at, &bytes[..end]).unwrap();
            }
            _ => {
                let b = input.u8();
                if b & 1 != 0 {
                    virt_rx.active.rearm().unwrap();
                }
                if b & 2 != 0 {
                    virt_tx.free.rearm().unwrap();
                }
            }
        }
    }
    if chaos {
        return;
    }
    // Drain: everything valid is sent and every buffer comes back.
    nic.room = usize::MAX;
    for _ in 0..8 {
        driver.tx_process(&mut nic, &mut bells).unwrap();
        while let Ok(d) = virt_tx.free.dequeue() {
            let want = tx_outstanding.pop_front().expect("a buffer nobody sent");
            assert_eq!(d, want.with_len(0), "TX buffer changed on its way back");
        }
    }
    assert!(
        tx_outstanding.is_empty(),
        "TX buffers lost: {tx_outstanding:?}"
    );
    assert_eq!(
        nic.sent, tx_expected,
        "NIC did not send exactly the valid frames"
    );
    let c = driver.counters();
    // Frames not yet delivered are still with the NIC or in rx_active, never lost.
    let queued = u64::from(virt_rx.active.len().unwrap());
    let with_nic_valid = nic
        .incoming
        .iter()
        .filter(|(f, w)| f.len() <= NET_BUFFER_SIZE && *w == f.len())
        .count();
    assert_eq!(
        rx_expected.len(),
        queued as usize + with_nic_valid,
        "RX frames lost"
    );
    let with_nic_bad = nic.incoming.len() - with_nic_valid;
    assert_eq!(
        c.rx_drop_oversize + c.rx_drop_truncated + with_nic_bad as u64,
        bad_frames,
        "bad frames not counted"
    );
});
