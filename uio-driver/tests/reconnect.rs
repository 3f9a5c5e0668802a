//! A restarted driver asks virt_rx and virt_tx for a reset before it builds any queue handle
//! (`driver::connect`), against scripted virtualisers that answer through `netvm_api::reconnect`.
use std::io;
use std::time::Duration;

use netvm_api::reconnect::{PeerEnd, Poll};
use sddf::queue::{Capacity, DrainSide, FillSide, Queue};
use sddf::shm::OwnedRegion;
use uio_driver::driver::{connect, DriverWords, Events, NicPoll, Platform};

const CAP: u32 = 8;

fn cap() -> Capacity {
    Capacity::new(CAP).unwrap()
}

/// The four queue regions, page-sized as Microkit maps them (room for the words).
struct Memory {
    rx_free: OwnedRegion,
    rx_active: OwnedRegion,
    tx_free: OwnedRegion,
    tx_active: OwnedRegion,
}

impl Memory {
    fn new() -> Self {
        let page = || OwnedRegion::new(4096);
        Memory {
            rx_free: page(),
            rx_active: page(),
            tx_free: page(),
            tx_active: page(),
        }
    }
    fn words(&self) -> DriverWords<'_> {
        DriverWords::new(self.rx_free.region(), cap(), self.tx_free.region(), cap())
    }
    fn q<'a>(&self, r: &'a OwnedRegion) -> Queue<'a> {
        Queue::new(r.region(), cap()).unwrap()
    }
}

/// virt_rx and virt_tx as far as the reset goes: each serves a reset when rung, if `answer`.
struct Virtualisers<'a> {
    mem: &'a Memory,
    rx: PeerEnd<'a>,
    tx: PeerEnd<'a>,
    answer: bool,
    rings: (u32, u32),
    waits: u32,
}

impl<'a> Virtualisers<'a> {
    fn new(mem: &'a Memory) -> Self {
        let w = mem.words();
        Virtualisers {
            mem,
            rx: PeerEnd::new(w.rx),
            tx: PeerEnd::new(w.tx),
            answer: true,
            rings: (0, 0),
            waits: 0,
        }
    }
}

impl Platform for Virtualisers<'_> {
    fn doorbell_rx(&mut self) -> io::Result<()> {
        self.rings.0 += 1;
        if let (true, Poll::Reset(e)) = (self.answer, self.rx.poll()) {
            let m = self.mem;
            let mut side = DrainSide::new(m.q(&m.rx_free), m.q(&m.rx_active));
            side.reset().unwrap();
            side.provide_all_buffers(0, CAP as u16).unwrap();
            self.rx.served(e);
        }
        Ok(())
    }
    fn doorbell_tx(&mut self) -> io::Result<()> {
        self.rings.1 += 1;
        if let (true, Poll::Reset(e)) = (self.answer, self.tx.poll()) {
            let m = self.mem;
            let mut side = FillSide::new(m.q(&m.tx_free), m.q(&m.tx_active));
            side.reset_self_provided(0).unwrap();
            self.tx.served(e);
        }
        Ok(())
    }
    fn wait(&mut self, _: &[NicPoll], _: Option<Duration>) -> io::Result<Events> {
        self.waits += 1;
        Ok(Events::default())
    }
}

#[test]
fn the_first_driver_connects_at_once_a_restarted_one_waits_for_both_resets() {
    let mem = Memory::new();
    let mut v = Virtualisers::new(&mem);
    assert!(!connect(mem.words(), &mut v, &mut || true).unwrap());
    assert_eq!(
        (v.rings, v.waits),
        ((0, 0), 0),
        "a first start asks nothing"
    );
    // The first instance used the queues: a frame half-way in rx_active, a completion in
    // tx_free; it dies, and the next one must find them rebuilt.
    let mut drv_rx = FillSide::new(mem.q(&mem.rx_free), mem.q(&mem.rx_active));
    drv_rx
        .active
        .enqueue(sddf::BuffDesc::new(2048, 60, 0))
        .unwrap();
    assert!(connect(mem.words(), &mut v, &mut || true).unwrap());
    assert_eq!(v.rings, (1, 1), "each virtualiser rung once");
    let mut drv_rx = FillSide::new(mem.q(&mem.rx_free), mem.q(&mem.rx_active));
    assert_eq!(drv_rx.free.len().unwrap(), CAP as u16, "a full free queue");
    assert!(drv_rx.active.is_empty().unwrap());
}

#[test]
fn a_restarted_driver_rings_again_while_unanswered_and_can_be_stopped() {
    let mem = Memory::new();
    let mut v = Virtualisers::new(&mem);
    assert!(!connect(mem.words(), &mut v, &mut || true).unwrap());
    v.answer = false;
    let mut wakeups = 0;
    let err = connect(mem.words(), &mut v, &mut || {
        wakeups += 1;
        wakeups < 4
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    assert_eq!(v.waits, 3, "it slept between looks");
    assert!(v.rings.0 >= 1 && v.rings.1 >= 1);
    // The next instance asks for a later epoch, and is served.
    v.answer = true;
    assert!(connect(mem.words(), &mut v, &mut || true).unwrap());
}

#[test]
fn queue_regions_without_room_for_the_words_always_start_fresh() {
    let small = || OwnedRegion::new(sddf::queue::queue_bytes(CAP as usize));
    let (rx, tx) = (small(), small());
    let words = DriverWords::new(rx.region(), cap(), tx.region(), cap());
    assert!(words.rx.is_none() && words.tx.is_none());
    let mem = Memory::new();
    let mut v = Virtualisers::new(&mem);
    for _ in 0..2 {
        assert!(!connect(words, &mut v, &mut || true).unwrap());
    }
}
