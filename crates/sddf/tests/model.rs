//! Property tests: the queue behaves like a bounded VecDeque across many index wrap-arounds, and
//! never panics or leaves its region whatever a hostile peer writes into shared memory.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use sddf::queue::{queue_bytes, Capacity, Queue, QueueError};
use sddf::shm::OwnedRegion;
use sddf::BuffDesc;

#[derive(Debug, Clone)]
enum Op {
    Enqueue(u64, u16, u8),
    Dequeue,
    Burst(u16),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u64>(), any::<u16>(), 0u8..64).prop_map(|(a, l, o)| Op::Enqueue(a, l, o)),
        4 => Just(Op::Dequeue),
        1 => (1u16..600).prop_map(Op::Burst),
        1 => Just(Op::Drain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Each case runs thousands of operations; the bursts push the u16 indices through several
    /// wrap-arounds (the test asserts more than 65536 enqueues happened in total per case).
    #[test]
    fn queue_matches_vecdeque_across_wraparound(
        cap_log in 0u32..10,
        ops in proptest::collection::vec(op(), 300..600),
    ) {
        let cap = Capacity::new(1 << cap_log).unwrap();
        let mem = OwnedRegion::new(queue_bytes(cap.entries()));
        let mut p = Queue::new(mem.region(), cap).unwrap().into_producer();
        let mut c = Queue::new(mem.region(), cap).unwrap().into_consumer();
        let mut model = VecDeque::new();
        let mut enqueued = 0u64;
        let mut seq = 0u64;
        // Keep cycling the script until the indices have wrapped at least once.
        // Under miri (slow) one pass of the script is enough to check memory safety.
        let target = if cfg!(miri) { 0 } else { 70_000 };
        while enqueued <= target {
            for op in &ops {
                match *op {
                    Op::Enqueue(a, l, o) => {
                        let d = BuffDesc::new(a ^ seq, l, o);
                        seq += 1;
                        let r = p.enqueue(d);
                        if model.len() == cap.entries() {
                            prop_assert_eq!(r, Err(QueueError::Full));
                        } else {
                            prop_assert_eq!(r, Ok(()));
                            model.push_back(d);
                            enqueued += 1;
                        }
                    }
                    Op::Dequeue => {
                        prop_assert_eq!(c.dequeue().ok(), model.pop_front());
                    }
                    Op::Burst(n) => {
                        for _ in 0..n {
                            let d = BuffDesc::new(seq, 1, 0);
                            seq += 1;
                            if p.enqueue(d).is_err() {
                                prop_assert_eq!(model.len(), cap.entries());
                                break;
                            }
                            model.push_back(d);
                            enqueued += 1;
                            if model.len() > cap.entries() / 2 {
                                prop_assert_eq!(c.dequeue().ok(), model.pop_front());
                            }
                        }
                    }
                    Op::Drain => {
                        while let Some(m) = model.pop_front() {
                            prop_assert_eq!(c.dequeue(), Ok(m));
                        }
                        prop_assert_eq!(c.dequeue(), Err(QueueError::Empty));
                    }
                }
                prop_assert_eq!(p.len().unwrap() as usize, model.len());
                prop_assert_eq!(c.len().unwrap() as usize, model.len());
            }
            // Guarantees progress even for a script that never dequeues.
            prop_assert_eq!(c.dequeue().ok(), model.pop_front());
            let d = BuffDesc::new(seq, 2, 0);
            seq += 1;
            p.enqueue(d).unwrap();
            model.push_back(d);
            enqueued += 1;
        }
        prop_assert!(cfg!(miri) || enqueued > 65_536);
    }

    /// A consumer over arbitrary header and descriptor bytes never panics, never reads outside
    /// its region (the region is exactly the queue's size), and either yields descriptors,
    /// reports empty, or reports PeerMisbehaviour when the indices are impossible.
    #[test]
    fn consumer_survives_hostile_memory(
        cap_log in 0u32..8,
        bytes in proptest::collection::vec(any::<u8>(), 8 + 16 * 128),
        scribbles in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..40),
    ) {
        let cap = Capacity::new(1 << cap_log).unwrap();
        let size = queue_bytes(cap.entries());
        let mem = OwnedRegion::new(size);
        mem.region().write(0, &bytes[..size]).unwrap();
        let head0 = u16::from_le_bytes([bytes[2], bytes[3]]);
        let tail0 = u16::from_le_bytes([bytes[0], bytes[1]]);
        let mut c = Queue::new(mem.region(), cap).unwrap().into_consumer();
        let impossible = tail0.wrapping_sub(head0) > cap.get();
        match c.dequeue() {
            Err(QueueError::PeerMisbehaviour { ours, theirs }) => {
                prop_assert!(impossible);
                prop_assert_eq!((ours, theirs), (head0, tail0));
            }
            Err(QueueError::Empty) => prop_assert_eq!(tail0, head0),
            Err(QueueError::Full) => prop_assert!(false, "a consumer never reports Full"),
            Ok(_) => prop_assert!(!impossible),
        }
        // Keep scribbling tail (and our head) while dequeueing: never a panic, and the
        // consumer's own head only moves by its own dequeues.
        for (tail, head) in scribbles {
            mem.region().write(0, &tail.to_le_bytes()).unwrap();
            mem.region().write(2, &head.to_le_bytes()).unwrap();
            for _ in 0..4 {
                match c.dequeue() {
                    Ok(_) | Err(QueueError::Empty) | Err(QueueError::PeerMisbehaviour { .. }) => {}
                    Err(QueueError::Full) => prop_assert!(false),
                }
            }
            let _ = c.rearm();
        }
    }

    /// The same for a producer facing a hostile consumer.
    #[test]
    fn producer_survives_hostile_memory(
        cap_log in 0u32..8,
        heads in proptest::collection::vec(any::<u16>(), 1..40),
    ) {
        let cap = Capacity::new(1 << cap_log).unwrap();
        let mem = OwnedRegion::new(queue_bytes(cap.entries()));
        let mut p = Queue::new(mem.region(), cap).unwrap().into_producer();
        let mut tail = 0u16;
        for head in heads {
            mem.region().write(2, &head.to_le_bytes()).unwrap();
            let r = p.enqueue(BuffDesc::new(1, 1, 1));
            let dist = tail.wrapping_sub(head);
            match r {
                Ok(()) => { prop_assert!(dist < cap.get()); tail = tail.wrapping_add(1); }
                Err(QueueError::Full) => prop_assert_eq!(dist, cap.get()),
                Err(QueueError::PeerMisbehaviour { ours, theirs }) => {
                    prop_assert!(dist > cap.get());
                    prop_assert_eq!((ours, theirs), (tail, head));
                }
                Err(QueueError::Empty) => prop_assert!(false),
            }
        }
    }
}
