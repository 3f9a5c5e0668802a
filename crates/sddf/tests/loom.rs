//! Model checking of the queue and its signalling protocol with loom.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p sddf --release --test loom`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use sddf::queue::{LoomQueueMemory, Queue};
use sddf::BuffDesc;

fn leak(mem: LoomQueueMemory) -> &'static LoomQueueMemory {
    Box::leak(Box::new(mem))
}

/// Descriptors cross intact and in order: loom checks that every slot read happens after the
/// write it observes (Release on `tail`, Acquire in the consumer) and that a slot is not rewritten
/// before it was read (Release on `head`, Acquire in the producer).
#[test]
fn spsc_transfers_in_order_without_races() {
    loom::model(|| {
        let mem = leak(LoomQueueMemory::new(2));
        let mut p = Queue::new_loom(mem).into_producer();
        let mut c = Queue::new_loom(mem).into_consumer();
        let producer = thread::spawn(move || {
            let mut i = 0;
            while i < 3 {
                if p.enqueue(BuffDesc::new(i, i as u16, 0)).is_ok() {
                    i += 1;
                } else {
                    thread::yield_now();
                }
            }
        });
        let mut got = 0;
        while got < 3 {
            match c.dequeue() {
                Ok(d) => {
                    assert_eq!(d, BuffDesc::new(got, got as u16, 0));
                    got += 1;
                }
                Err(_) => thread::yield_now(),
            }
        }
        producer.join().unwrap();
    });
}

/// No lost wake-up: the producer enqueues and notifies if asked; the consumer drains and, once
/// the double-check says it may, goes to sleep. If it sleeps with work queued, a notification
/// must be owed to it.
#[test]
fn no_lost_wakeup() {
    loom::model(|| {
        let mem = leak(LoomQueueMemory::new(4));
        let mut p = Queue::new_loom(mem).into_producer();
        let mut c = Queue::new_loom(mem).into_consumer();
        // The consumer has drained once already and cancelled, as after a previous batch.
        c.cancel_signal();
        let notified = Arc::new(AtomicBool::new(false));
        let n2 = notified.clone();
        let producer = thread::spawn(move || {
            p.enqueue(BuffDesc::new(1, 1, 0)).unwrap();
            if p.take_signal_request() {
                n2.store(true, Ordering::SeqCst);
            }
        });
        loop {
            while c.dequeue().is_ok() {}
            if !c.rearm().unwrap() {
                break;
            }
        }
        producer.join().unwrap();
        let queued = !c.is_empty().unwrap();
        assert!(
            !queued || notified.load(Ordering::SeqCst),
            "consumer sleeps with work queued and no signal owed"
        );
    });
}

/// The checker is able to see the bug the fences prevent: the same protocol written without
/// the SeqCst fences (release/acquire only, as sDDF's SMP build) loses a wake-up in some
/// interleaving, which loom must find.
#[test]
#[should_panic(expected = "lost wake-up")]
fn without_fences_a_wakeup_is_lost() {
    loom::model(|| {
        let tail = Arc::new(AtomicU32::new(0));
        let flag = Arc::new(AtomicU32::new(1));
        let notified = Arc::new(AtomicBool::new(false));
        let (t2, f2, n2) = (tail.clone(), flag.clone(), notified.clone());
        let producer = thread::spawn(move || {
            t2.store(1, Ordering::Release);
            if f2.load(Ordering::Acquire) == 0 {
                f2.store(1, Ordering::Release);
                n2.store(true, Ordering::SeqCst);
            }
        });
        // Consumer: found nothing, requests a signal, re-checks (no fence in between).
        flag.store(0, Ordering::Release);
        let sleeps = tail.load(Ordering::Acquire) == 0;
        producer.join().unwrap();
        if sleeps && tail.load(Ordering::Acquire) == 1 && !notified.load(Ordering::SeqCst) {
            panic!("lost wake-up");
        }
    });
}
