//! A restarted client instance (`NetDevice::connect` on queues an earlier instance used): it
//! asks both peers for a reset once, touches no queue until they answer, then works, and every
//! buffer is where it belongs.
use net_client::mock::{frames, CountingSignal, MockMemory};
use net_client::{NetDevice, TxError};
use proptest::prelude::*;
use sddf::queue::queue_bytes;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const RX: u16 = 8;
const TX: u16 = 4;

fn udp(payload: &[u8]) -> Vec<u8> {
    frames::udp(
        [0x02, 0, 0, 0, 0, 0x02],
        MAC,
        [10, 0, 0, 1].into(),
        [10, 0, 0, 2].into(),
        5000,
        1235,
        payload,
    )
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// The copier delivers a frame (if the client has a free buffer).
    Inject,
    /// The client receives up to n frames.
    Receive(usize),
    /// The client sends a frame.
    Send,
    /// The client takes a TX buffer for its next frame and keeps it.
    Reserve,
    /// virt_tx collects up to n frames.
    Collect(usize),
    /// The client's notification phase.
    Notify,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Inject),
        (1usize..4).prop_map(Op::Receive),
        Just(Op::Send),
        Just(Op::Reserve),
        (1usize..4).prop_map(Op::Collect),
        Just(Op::Notify),
    ]
}

fn run(dev: &mut NetDevice<'_>, peer: &mut net_client::mock::MockPeer<'_>, op: Op) {
    let mut sig = CountingSignal::default();
    match op {
        Op::Inject => {
            peer.inject(&udp(b"to the client"));
        }
        Op::Receive(n) => {
            let mut buf = [0; 2048];
            for _ in 0..n {
                dev.receive_into(&mut buf);
            }
        }
        Op::Send => {
            let _ = dev.write_into(60, |b| b.fill(7));
        }
        Op::Reserve => {
            dev.can_transmit();
        }
        Op::Collect(n) => {
            for _ in 0..n {
                peer.take_frame();
            }
        }
        Op::Notify => dev.notify(&mut sig),
    }
}

/// The bytes of the four queue regions up to the end of the reconnect words.
fn queue_bytes_of(mem: &MockMemory) -> Vec<Vec<u8>> {
    let regions = mem.regions().unwrap();
    [
        (regions.rx_free, RX),
        (regions.rx_active, RX),
        (regions.tx_free, TX),
        (regions.tx_active, TX),
    ]
    .iter()
    .map(|(r, n)| {
        let mut b = vec![0; netvm_api::reconnect::words_offset(usize::from(*n)) + 8];
        assert!(b.len() > queue_bytes(usize::from(*n)));
        r.read(0, &mut b).unwrap();
        b
    })
    .collect()
}

proptest! {
    #[test]
    fn a_restarted_device_waits_for_its_peers_then_every_buffer_is_accounted_for(
        before in proptest::collection::vec(op(), 0..50),
        after in proptest::collection::vec(op(), 0..50),
    ) {
        let mem = MockMemory::new(RX, TX, MAC);
        let (mut dev, mut peer) = mem.connect().unwrap();
        prop_assert!(!dev.reconnecting(), "a first instance is live at once");
        for &o in &before {
            run(&mut dev, &mut peer, o);
        }
        // The instance dies: `dev` is not used again.
        let _ = dev;

        let mut dev = mem.restart().unwrap();
        prop_assert!(dev.reconnecting());
        prop_assert_eq!(dev.counters().reconnect_waiting, 2);
        // Until the peers answer, nothing the client does touches a queue (or its flags)...
        let frozen = queue_bytes_of(&mem);
        let mut buf = [0; 2048];
        prop_assert_eq!(dev.receive_into(&mut buf), None);
        prop_assert!(!dev.rx_pending());
        prop_assert!(!dev.rearm_rx());
        prop_assert!(!dev.can_transmit());
        prop_assert_eq!(dev.write_into(60, |_| ()), Err(TxError::NoBuffer));
        // ...except asking each peer once, in the notification phase.
        let mut sig = CountingSignal::default();
        dev.notify(&mut sig);
        dev.notify(&mut sig);
        prop_assert_eq!(sig, CountingSignal { rx: 1, tx: 1 });
        prop_assert_eq!(queue_bytes_of(&mem), frozen, "a queue was touched");

        prop_assert_eq!(peer.serve_reconnect(), 2);
        prop_assert!(!dev.reconnecting());
        prop_assert_eq!(peer.serve_reconnect(), 0, "one reset per instance");
        peer.audit(&dev).map_err(TestCaseError::fail)?;
        // It works: a frame in, a frame out.
        prop_assert!(peer.inject(&udp(b"after the restart")));
        prop_assert!(dev.receive_into(&mut buf).is_some());
        prop_assert!(dev.write_into(60, |b| b.fill(9)).is_ok());
        dev.notify(&mut sig);
        prop_assert_eq!(peer.take_frame(), Some(vec![9; 60]));
        for &o in &after {
            run(&mut dev, &mut peer, o);
        }
        peer.audit(&dev).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn a_restart_without_room_for_the_words_starts_fresh() {
    // Exactly-sized queue regions (possible only in tests): no restart support, sDDF behaviour.
    let mem = MockMemory::new(RX, TX, MAC);
    let cfg = {
        let mut c = mem.config().clone();
        c.rx.free_queue.size = queue_bytes(usize::from(RX)) as u64;
        c.tx.free_queue.size = queue_bytes(usize::from(TX)) as u64;
        c
    };
    let regions = mem.regions().unwrap();
    let regions = net_client::Regions {
        rx_free: regions
            .rx_free
            .slice(0, queue_bytes(usize::from(RX)))
            .unwrap(),
        tx_free: regions
            .tx_free
            .slice(0, queue_bytes(usize::from(TX)))
            .unwrap(),
        ..regions
    };
    let (mut dev, _) = NetDevice::connect(&cfg, regions).unwrap();
    assert!(!dev.reconnecting());
    assert!(dev.can_transmit());
}
