//! The driver core against scripted virtualiser sides over shared memory (OwnedRegions) and a
//! scripted NIC.
use sddf::queue::{queue_bytes, Capacity, DrainSide, FillSide, Queue};
use sddf::shm::OwnedRegion;
use sddf::{BuffDesc, QueueError, NET_BUFFER_SIZE};
use testkit::nic::{Bells, ScriptedNic};
use uio_driver::driver::{Driver, DriverQueues, Events};

const CAP: u32 = 16;
const BUFS: usize = 16;

/// Shared memory of one driver: four queues, RX data, `tx_regions` TX data regions.
struct Memory {
    rx_free: OwnedRegion,
    rx_active: OwnedRegion,
    rx_data: OwnedRegion,
    tx_free: OwnedRegion,
    tx_active: OwnedRegion,
    tx_data: Vec<OwnedRegion>,
}

fn cap() -> Capacity {
    Capacity::new(CAP).unwrap()
}

impl Memory {
    fn new(tx_regions: usize) -> Memory {
        let q = || OwnedRegion::new(queue_bytes(CAP as usize));
        Memory {
            rx_free: q(),
            rx_active: q(),
            rx_data: OwnedRegion::new(BUFS * NET_BUFFER_SIZE),
            tx_free: q(),
            tx_active: q(),
            tx_data: (0..tx_regions)
                .map(|_| OwnedRegion::new(BUFS * NET_BUFFER_SIZE))
                .collect(),
        }
    }
    fn queue<'a>(&self, r: &'a OwnedRegion) -> Queue<'a> {
        Queue::new(r.region(), cap()).unwrap()
    }
    fn driver(&self) -> Driver<'_> {
        Driver::new(DriverQueues {
            rx: FillSide::new(self.queue(&self.rx_free), self.queue(&self.rx_active)),
            rx_data: self.rx_data.region(),
            tx: DrainSide::new(self.queue(&self.tx_free), self.queue(&self.tx_active)),
            tx_data: self.tx_data.iter().map(|r| r.region()).collect(),
        })
    }
    /// virt_rx's side: drains rx_active, provides rx_free.
    fn virt_rx(&self) -> DrainSide<'_> {
        DrainSide::new(self.queue(&self.rx_free), self.queue(&self.rx_active))
    }
    /// virt_tx's side: fills tx_active, takes tx_free.
    fn virt_tx(&self) -> FillSide<'_> {
        FillSide::new(self.queue(&self.tx_free), self.queue(&self.tx_active))
    }
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 7 + i * 13) as u8).collect()
}

#[test]
fn rx_frames_land_byte_identical_with_one_doorbell_per_batch() {
    let mem = Memory::new(1);
    let mut virt = mem.virt_rx();
    virt.provide_all_buffers(0, BUFS as u16).unwrap();
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    let mut bells = Bells::default();
    let frames: Vec<Vec<u8>> = [60, 61, 1514, 2048, 7, 333]
        .iter()
        .enumerate()
        .map(|(i, &l)| frame(i, l))
        .collect();
    nic.offer_all(frames.iter().cloned());
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(
        bells.rx, 1,
        "one doorbell for the batch (zeroed flag = signal wanted)"
    );
    for (i, f) in frames.iter().enumerate() {
        let desc = virt.active.dequeue().unwrap();
        assert_eq!(desc.io_or_offset, (i * NET_BUFFER_SIZE) as u64);
        assert_eq!(usize::from(desc.len), f.len());
        let mut got = vec![0; f.len()];
        mem.rx_data
            .region()
            .read(desc.io_or_offset as usize, &mut got)
            .unwrap();
        assert_eq!(&got, f);
    }
    // virt_rx did not re-arm: more frames, no more doorbells.
    nic.offer(frame(9, 100));
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(bells.rx, 1);
    // It re-arms: the next batch rings again.
    while virt.active.dequeue().is_ok() {}
    assert_eq!(virt.active.rearm(), Ok(false));
    nic.offer(frame(10, 100));
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(bells.rx, 2);
    assert_eq!(d.counters().rx_frames, 8);
}

#[test]
fn rx_oversize_frames_are_dropped_and_counted() {
    let mem = Memory::new(1);
    let mut virt = mem.virt_rx();
    virt.provide_all_buffers(0, 4).unwrap();
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    nic.offer_all([frame(0, 2049), frame(1, 9000), frame(2, 100)]);
    d.rx_process(&mut nic, &mut Bells::default()).unwrap();
    assert_eq!(d.counters().rx_drop_oversize, 2);
    assert_eq!(virt.active.dequeue().unwrap().len, 100);
    assert_eq!(virt.active.dequeue(), Err(QueueError::Empty));
}

#[test]
fn rx_waits_for_buffers_and_asks_virt_rx_for_a_signal() {
    let mem = Memory::new(1);
    let mut virt = mem.virt_rx();
    virt.provide_all_buffers(0, 2).unwrap();
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    nic.offer_all((0..5).map(|i| frame(i, 64)));
    let mut bells = Bells::default();
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(
        nic.incoming.len(),
        3,
        "frames are kept, not dropped, while buffers are out"
    );
    // Buffers come back: virt_rx must be asked to signal.
    let a = virt.active.dequeue().unwrap();
    virt.free.enqueue(a.with_len(0)).unwrap();
    assert!(
        virt.free.take_signal_request(),
        "driver requested a free signal when starved"
    );
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(nic.incoming.len(), 2);
}

#[test]
fn rx_bad_free_descriptors_are_counted_and_skipped() {
    let mem = Memory::new(1);
    let mut virt = mem.virt_rx();
    for off in [1u64, (BUFS * NET_BUFFER_SIZE) as u64, u64::MAX - 10, 2048] {
        virt.free.enqueue(BuffDesc::new(off, 0, 0)).unwrap();
    }
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    nic.offer(frame(0, 64));
    d.rx_process(&mut nic, &mut Bells::default()).unwrap();
    assert_eq!(d.counters().rx_bad_free_desc, 3);
    assert_eq!(virt.active.dequeue().unwrap().io_or_offset, 2048);
}

#[test]
fn tx_frames_go_out_and_buffers_come_back_with_their_oid() {
    let mem = Memory::new(3);
    let mut virt = mem.virt_tx();
    let mut expected = Vec::new();
    for (i, (oid, slot, len)) in [
        (0u8, 0usize, 60usize),
        (2, 5, 1514),
        (1, 15, 2048),
        (2, 0, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let f = frame(i, len);
        mem.tx_data[usize::from(oid)]
            .region()
            .write(slot * NET_BUFFER_SIZE, &f)
            .unwrap();
        virt.active
            .enqueue(BuffDesc::new(
                (slot * NET_BUFFER_SIZE) as u64,
                len as u16,
                oid,
            ))
            .unwrap();
        expected.push((f, oid, slot));
    }
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    let mut bells = Bells::default();
    d.tx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(
        nic.sent,
        expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(bells.tx, 1);
    for (_, oid, slot) in &expected {
        assert_eq!(
            virt.free.dequeue().unwrap(),
            BuffDesc::new((slot * NET_BUFFER_SIZE) as u64, 0, *oid)
        );
    }
    assert_eq!(d.counters().tx_frames, 4);
    // Awake, the driver asks for no signal: it looks at tx_active on every pass.
    d.woke();
    virt.active.enqueue(BuffDesc::new(0, 60, 0)).unwrap();
    assert!(
        !virt.active.take_signal_request(),
        "virt_tx would interrupt a driver that is awake"
    );
    // About to sleep, it arms tx_active and double-checks: the frame just queued is found.
    assert!(d.arm_for_sleep(), "work found by the double-check");
    d.tx_process(&mut nic, &mut bells).unwrap();
    assert_eq!(d.counters().tx_frames, 5);
    // Drained and about to sleep: armed, so virt_tx owes it a signal on the next enqueue.
    assert!(!d.arm_for_sleep());
    virt.active.enqueue(BuffDesc::new(0, 60, 0)).unwrap();
    assert!(virt.active.take_signal_request());
}

/// A canary region whose bytes must survive every hostile descriptor.
#[test]
fn hostile_tx_descriptors_are_returned_counted_and_never_touched() {
    let mem = Memory::new(2);
    for r in &mem.tx_data {
        r.region()
            .write(0, &vec![0xa5; BUFS * NET_BUFFER_SIZE])
            .unwrap();
    }
    let mut virt = mem.virt_tx();
    let region_len = (BUFS * NET_BUFFER_SIZE) as u64;
    let hostile = [
        BuffDesc::new(0, 0, 0),           // len 0
        BuffDesc::new(0, 2049, 0),        // len > 2048
        BuffDesc::new(0, u16::MAX, 1),    // len huge
        BuffDesc::new(0, 60, 2),          // oid == N
        BuffDesc::new(0, 60, 63),         // oid way out
        BuffDesc::new(8, 60, 0),          // unaligned
        BuffDesc::new(2047, 60, 1),       // unaligned
        BuffDesc::new(region_len, 60, 0), // one past the end
        BuffDesc::new(!2047, 60, 0),      // overflows
    ];
    for h in hostile {
        virt.active.enqueue(h).unwrap();
    }
    virt.active.enqueue(BuffDesc::new(2048, 64, 1)).unwrap();
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    d.tx_process(&mut nic, &mut Bells::default()).unwrap();
    let c = d.counters();
    assert_eq!((c.tx_bad_len, c.tx_bad_oid, c.tx_bad_offset), (3, 2, 4));
    assert_eq!(
        nic.sent,
        vec![vec![0xa5; 64]],
        "only the good frame went out"
    );
    for h in hostile {
        assert_eq!(
            virt.free.dequeue().unwrap(),
            h.with_len(0),
            "returned unchanged"
        );
    }
    assert_eq!(virt.free.dequeue().unwrap(), BuffDesc::new(2048, 0, 1));
    for r in &mem.tx_data {
        let mut all = vec![0; BUFS * NET_BUFFER_SIZE];
        r.region().read(0, &mut all).unwrap();
        assert!(
            all.iter().all(|b| *b == 0xa5),
            "the driver wrote into a TX region"
        );
    }
}

#[test]
fn impossible_queue_indices_are_counted_not_followed() {
    let mem = Memory::new(1);
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    let mut bells = Bells::default();
    // virt_tx claims 40 descriptors in a queue of 16.
    mem.tx_active
        .region()
        .write(0, &40u16.to_le_bytes())
        .unwrap();
    d.tx_process(&mut nic, &mut bells).unwrap();
    assert!(nic.sent.is_empty());
    assert!(d.counters().tx_queue_misbehaviour >= 1);
    // virt_rx claims 17 free buffers in a queue of 16.
    mem.rx_free.region().write(0, &17u16.to_le_bytes()).unwrap();
    nic.offer(frame(0, 64));
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert!(d.counters().rx_queue_misbehaviour >= 1);
    assert_eq!(nic.incoming.len(), 1, "no frame was written anywhere");
    let mut data = vec![0; BUFS * NET_BUFFER_SIZE];
    mem.rx_data.region().read(0, &mut data).unwrap();
    assert!(data.iter().all(|b| *b == 0));
    // virt_rx moves rx_active's head past our tail.
    let mem = Memory::new(1);
    let mut virt = mem.virt_rx();
    virt.provide_all_buffers(0, 4).unwrap();
    let mut d = mem.driver();
    mem.rx_active
        .region()
        .write(2, &9u16.to_le_bytes())
        .unwrap();
    nic.offer(frame(1, 64));
    d.rx_process(&mut nic, &mut bells).unwrap();
    assert!(d.counters().rx_queue_misbehaviour >= 1);
    assert_eq!(d.counters().rx_frames, 0);
}

#[test]
fn a_full_nic_stops_dequeuing_until_there_is_room() {
    let mem = Memory::new(1);
    let mut virt = mem.virt_tx();
    for i in 0..6u64 {
        virt.active.enqueue(BuffDesc::new(i * 2048, 60, 0)).unwrap();
    }
    let mut d = mem.driver();
    let mut nic = ScriptedNic::new();
    nic.room = 0;
    d.tx_process(&mut nic, &mut Bells::default()).unwrap();
    assert!(nic.sent.is_empty());
    assert_eq!(
        virt.free.dequeue(),
        Err(QueueError::Empty),
        "nothing taken while full"
    );
    nic.room = usize::MAX;
    d.handle(
        Events {
            nic_writable: true,
            ..Default::default()
        },
        &mut nic,
        &mut Bells::default(),
    )
    .unwrap();
    assert_eq!(nic.sent.len(), 6);
}

/// Busy polling (the driver VM's default): work that arrives while the driver looks is taken
/// without going to sleep; the time it looks is bounded; with no busy-poll time it sleeps at once.
#[test]
fn busy_polling_takes_work_awake_and_sleeps_only_when_its_time_is_up() {
    use std::time::{Duration, Instant};
    let mem = Memory::new(1);
    let mut virt = mem.virt_tx();
    let mut d = mem.driver();
    d.set_busy_poll(Duration::from_secs(30));
    let mut nic = ScriptedNic::new();
    let mut bells = Bells::default();
    // Each time the loop comes round, virt_tx queues one more frame; the third time it stops.
    let mut rounds = 0;
    d.run(&mut nic, &mut bells, &mut |_, _| {
        rounds += 1;
        if rounds < 3 {
            let f = frame(rounds, 100);
            mem.tx_data[0].region().write(0, &f).unwrap();
            virt.active.enqueue(BuffDesc::new(0, 100, 0)).unwrap();
        }
        rounds < 3
    })
    .unwrap();
    assert_eq!(nic.sent, vec![frame(1, 100), frame(2, 100)]);
    assert_eq!(bells.waits, 0, "the driver slept although work was there");
    assert_eq!(d.counters().busy_poll_hits, 2);
    assert_eq!(d.counters().busy_poll_misses, 0);

    // Nothing arrives: it looks for the busy-poll time, then sleeps.
    let mut d = mem.driver();
    d.set_busy_poll(Duration::from_millis(30));
    let mut nic = ScriptedNic::new();
    let mut bells = Bells::default();
    let mut rounds = 0;
    let start = Instant::now();
    d.run(&mut nic, &mut bells, &mut |_, _| {
        rounds += 1;
        rounds < 2
    })
    .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!((bells.waits, d.counters().busy_poll_misses), (1, 1));

    // A frame that reaches the NIC while the driver looks ends the poll too.
    let mut d = mem.driver();
    d.set_busy_poll(Duration::from_secs(30));
    let mut virt_rx = mem.virt_rx();
    virt_rx.provide_all_buffers(0, BUFS as u16).unwrap();
    let feed = std::cell::RefCell::new(Vec::new());
    let mut late = LateNic {
        inner: ScriptedNic::new(),
        feed: &feed,
    };
    let mut bells = Bells::default();
    let mut rounds = 0;
    d.run(&mut late, &mut bells, &mut |_, _| {
        rounds += 1;
        if rounds == 1 {
            feed.borrow_mut().push(frame(7, 300));
        }
        rounds < 2
    })
    .unwrap();
    assert_eq!(d.counters().rx_frames, 1);
    assert_eq!((bells.waits, d.counters().busy_poll_hits), (0, 1));
    let got = virt_rx.active.dequeue().unwrap();
    assert_eq!(got.len, 300);

    // Without a busy-poll time the driver sleeps at once.
    let mut d = mem.driver();
    let mut bells = Bells::default();
    let mut rounds = 0;
    d.run(&mut nic, &mut bells, &mut |_, _| {
        rounds += 1;
        rounds < 2
    })
    .unwrap();
    assert_eq!(bells.waits, 1);
    assert_eq!(
        (d.counters().busy_poll_hits, d.counters().busy_poll_misses),
        (0, 0)
    );
}

/// A scripted NIC whose frames arrive later: `feed` is moved onto the wire when the driver
/// looks.
struct LateNic<'a> {
    inner: ScriptedNic,
    feed: &'a std::cell::RefCell<Vec<Vec<u8>>>,
}

impl LateNic<'_> {
    fn arrive(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.feed.borrow_mut())
    }
}

impl uio_driver::driver::Nic for LateNic<'_> {
    fn poll_set(&self, rx: bool, tx: bool) -> Vec<uio_driver::driver::NicPoll> {
        self.inner.poll_set(rx, tx)
    }
    fn receive(
        &mut self,
        budget: usize,
        deliver: &mut dyn FnMut(uio_driver::driver::RxFrame<'_>) -> uio_driver::driver::RxVerdict,
    ) -> std::io::Result<bool> {
        let frames = self.arrive();
        self.inner.offer_all(frames);
        self.inner.receive(budget, deliver)
    }
    fn tx_buffer(&mut self) -> Option<&mut [u8]> {
        self.inner.tx_buffer()
    }
    fn tx_commit(&mut self, len: usize) {
        self.inner.tx_commit(len)
    }
    fn tx_flush(&mut self) -> std::io::Result<uio_driver::driver::TxReport> {
        self.inner.tx_flush()
    }
    fn tx_pending(&self) -> bool {
        self.inner.tx_pending()
    }
    fn take_dropped(&mut self) -> std::io::Result<u64> {
        self.inner.take_dropped()
    }
    fn rx_ready(&self) -> bool {
        !self.feed.borrow().is_empty() || self.inner.rx_ready()
    }
}
