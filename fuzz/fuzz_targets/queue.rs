//! `sddf::queue` over arbitrary shared memory: a producer and a consumer on one queue whose
//! header starts arbitrary and whose bytes a hostile peer may overwrite between operations.
//!
//! Checks: no panic; `Queue::new` accepts exactly the regions that fit and are 8-aligned; while
//! the header is untouched by the scribbler, the queue behaves exactly like a bounded FIFO model
//! (Full/Empty/rearm/signal flag included), and a slot overwritten by the scribbler changes only
//! that entry; whatever happens, no length above the capacity is ever reported.
#![no_main]
use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use netvm_fuzz::Input;
use sddf::queue::{queue_bytes, Capacity, Queue, QueueError};
use sddf::shm::OwnedRegion;
use sddf::BuffDesc;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let capacity = Capacity::new(1 << (input.u8() % 16)).unwrap();
    let cap = capacity.get();
    let needed = queue_bytes(capacity.entries());
    let size = match input.u8() % 8 {
        0 => needed.saturating_sub(1 + usize::from(input.u8())),
        _ => needed + usize::from(input.u8() % 64),
    };
    let misalign = if input.u8() % 8 == 0 {
        usize::from(input.u8() % 8)
    } else {
        0
    };
    let mem = OwnedRegion::new(size + misalign);
    let region = mem.region().slice(misalign, size).unwrap();
    let header = input.bytes(8);
    region.write(0, &header[..header.len().min(size)]).unwrap();
    let q = match Queue::new(region, capacity) {
        Ok(q) => q,
        Err(_) => {
            assert!(
                size < needed || misalign != 0,
                "a fitting aligned region was refused"
            );
            return;
        }
    };
    assert!(
        size >= needed && misalign == 0,
        "a region that does not fit was accepted"
    );
    let mut producer = q.into_producer();
    let mut consumer = q.into_consumer();

    let mut raw = [0u8; 8];
    region.read(0, &mut raw).unwrap();
    let tail0 = u16::from_le_bytes([raw[0], raw[1]]);
    let mut head = u16::from_le_bytes([raw[2], raw[3]]);
    let mut flag = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    // The model: None = header corrupted (initially or by the scribbler): anything but a panic
    // or an impossible length goes. Entries are None while their content is unknown.
    let initial = tail0.wrapping_sub(head);
    let mut model: Option<VecDeque<Option<BuffDesc>>> =
        (initial <= cap).then(|| (0..initial).map(|_| None).collect());

    while !input.is_empty() {
        match input.u8() % 10 {
            0..=2 => {
                let d = input.desc();
                let r = producer.enqueue(d);
                if let Some(m) = model.as_mut() {
                    if m.len() == usize::from(cap) {
                        assert_eq!(r, Err(QueueError::Full));
                    } else {
                        assert_eq!(r, Ok(()));
                        m.push_back(Some(d));
                    }
                }
            }
            3..=5 => {
                let r = consumer.dequeue();
                if let Some(m) = model.as_mut() {
                    match m.pop_front() {
                        None => assert_eq!(r, Err(QueueError::Empty)),
                        Some(expected) => {
                            let got = r.expect("model has an entry");
                            if let Some(e) = expected {
                                assert_eq!(got, e, "FIFO order");
                            }
                            head = head.wrapping_add(1);
                        }
                    }
                }
            }
            6 => {
                let r = consumer.rearm();
                if let Some(m) = model.as_ref() {
                    assert_eq!(r, Ok(!m.is_empty()));
                    flag = u32::from(!m.is_empty());
                }
            }
            7 => {
                let r = producer.take_signal_request();
                if model.is_some() {
                    assert_eq!(r, flag == 0);
                    flag = 1;
                }
            }
            8 => match input.u8() % 3 {
                0 => {
                    consumer.request_signal();
                    flag = 0;
                }
                1 => {
                    consumer.cancel_signal();
                    flag = 1;
                }
                _ => {
                    let lens = (producer.len(), consumer.len());
                    if let Some(m) = model.as_ref() {
                        assert_eq!(lens, (Ok(m.len() as u16), Ok(m.len() as u16)));
                    }
                }
            },
            _ => {
                // The peer scribbles: a few bytes anywhere in the region.
                let at = usize::from(input.u16()) % size; // size >= needed >= 24 here
                let bytes = input.chunk(16 + 1);
                let bytes = &bytes[..bytes.len().min(size - at)];
                region.write(at, bytes).unwrap();
                if at < 8 {
                    model = None;
                } else if let Some(m) = model.as_mut() {
                    // Slots overwritten: those entries' contents are now unknown.
                    for (k, e) in m.iter_mut().enumerate() {
                        let slot = 8 + 16 * usize::from(head.wrapping_add(k as u16) & (cap - 1));
                        if at < slot + 16 && slot < at + bytes.len() {
                            *e = None;
                        }
                    }
                }
            }
        }
        for len in [producer.len(), consumer.len()].into_iter().flatten() {
            assert!(len <= cap, "length {len} above capacity {cap}");
        }
    }
});
