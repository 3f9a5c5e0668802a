//! NetDevice against a scripted copier and virt_tx over heap memory (the sddf queue API on the
//! other side of every queue).
use core::net::Ipv4Addr;

use net_client::filter::{self, Malformed};
use net_client::mock::{frames, CountingSignal, MockMemory};
use net_client::{Error, NetDevice, RegionName, Regions, TxError};
use sddf::BuffDesc;
use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::time::Instant;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn udp(payload: &[u8]) -> Vec<u8> {
    frames::udp(PEER_MAC, MAC, PEER_IP, IP, 5000, 1235, payload)
}

#[test]
fn connect_reports_mac_and_mtu_and_provides_tx_buffers() {
    let mem = MockMemory::new(8, 4, MAC);
    let (dev, mut peer) = mem.connect().unwrap();
    assert_eq!(dev.info().mac, MAC);
    assert_eq!(dev.info().mtu, 1500);
    assert_eq!(peer.virt_tx.free.len(), Ok(4));
    peer.audit(&dev).unwrap();
}

#[test]
fn received_frame_is_lent_then_its_buffer_returned_with_one_notification() {
    let mem = MockMemory::new(8, 4, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    let frame: Vec<u8> = (0..100u8).collect();
    assert!(peer.inject(&frame));
    assert!(peer.inject(&frame[..60]));
    let got = dev.receive(|f| {
        let mut v = vec![0; f.len()];
        f.region().read(0, &mut v).unwrap();
        v
    });
    assert_eq!(got.as_deref(), Some(&frame[..]));
    let mut buf = [0; 2048];
    assert_eq!(dev.receive_into(&mut buf), Some(60));
    assert_eq!(&buf[..60], &frame[..60]);
    assert_eq!(dev.receive(|_| ()), None);
    let mut sig = CountingSignal::default();
    dev.notify(&mut sig);
    assert_eq!(sig, CountingSignal { rx: 1, tx: 0 });
    // The copier (sDDF 0.7) never re-arms rx_free: later returns notify nobody.
    assert!(peer.inject(&frame));
    dev.receive(|_| ()).unwrap();
    dev.notify(&mut sig);
    assert_eq!(sig.rx, 1);
    assert_eq!(dev.counters().rx_frames, 3);
    assert_eq!(dev.counters().rx_bytes, 260);
    peer.audit(&dev).unwrap();
}

#[test]
fn rearm_rx_requests_a_signal_and_double_checks() {
    let mem = MockMemory::new(8, 4, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    // Zeroed flag: the copier's first batch notifies; consume that request as the copier would.
    assert!(peer.inject(&[1; 20]));
    assert!(peer.copier.active.take_signal_request());
    assert!(dev.rx_pending());
    assert!(dev.rearm_rx(), "a frame is waiting: drain again");
    dev.receive(|_| ()).unwrap();
    assert!(!dev.rearm_rx(), "empty: safe to sleep");
    assert!(peer.inject(&[2; 20]));
    assert!(
        peer.copier.active.take_signal_request(),
        "copier must notify"
    );
}

#[test]
fn transmit_copies_queues_and_notifies_virt_tx_when_asked() {
    let mem = MockMemory::new(4, 4, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    let mut sig = CountingSignal::default();
    for i in 0..3u8 {
        dev.write_into(64 + usize::from(i), |b| b.fill(i)).unwrap();
    }
    dev.notify(&mut sig);
    assert_eq!(
        sig,
        CountingSignal { rx: 0, tx: 1 },
        "one notification per batch"
    );
    for i in 0..3u8 {
        assert_eq!(peer.take_frame().unwrap(), vec![i; 64 + usize::from(i)]);
    }
    dev.write_into(70, |b| b.fill(9)).unwrap();
    dev.notify(&mut sig);
    assert_eq!(sig.tx, 1, "virt_tx did not re-arm");
    peer.virt_tx.active.request_signal();
    dev.write_into(70, |b| b.fill(9)).unwrap();
    dev.notify(&mut sig);
    assert_eq!(sig.tx, 2);
    assert_eq!(
        dev.write_into(0, |_| unreachable!()),
        Err(TxError::Length(0))
    );
    assert_eq!(
        dev.write_into(2049, |_| unreachable!()),
        Err(TxError::Length(2049))
    );
    while peer.take_frame().is_some() {}
    peer.audit(&dev).unwrap();
}

#[test]
fn running_out_of_tx_buffers_asks_virt_tx_for_a_signal() {
    let mem = MockMemory::new(4, 2, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    // Consume the zeroed flag of tx_free so the test sees the client's own request.
    assert!(peer.virt_tx.free.take_signal_request());
    dev.write_into(60, |b| b.fill(1)).unwrap();
    dev.write_into(60, |b| b.fill(2)).unwrap();
    assert_eq!(
        dev.write_into(60, |_| panic!("must not build a frame it cannot send")),
        Err(TxError::NoBuffer)
    );
    assert!(!dev.can_transmit());
    assert_eq!(dev.counters().tx_no_buffer, 1);
    assert_eq!(peer.take_frame().unwrap(), vec![1; 60]);
    assert!(
        peer.virt_tx.free.take_signal_request(),
        "client asked to be woken when a TX buffer returns"
    );
    dev.write_into(60, |b| b.fill(3)).unwrap();
    assert_eq!(peer.take_frame().unwrap(), vec![2; 60]);
    assert_eq!(peer.take_frame().unwrap(), vec![3; 60]);
    peer.audit(&dev).unwrap();
}

#[test]
fn bad_rx_descriptors_are_counted_dropped_and_real_buffers_kept() {
    let mem = MockMemory::new(8, 4, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    // Offsets that name no buffer: never dereferenced, nothing to give back.
    peer.enqueue_rx(BuffDesc::new(100, 60, 0)).unwrap();
    peer.enqueue_rx(BuffDesc::new(8 * 2048, 60, 0)).unwrap();
    peer.enqueue_rx(BuffDesc::new(u64::MAX - 2047, 60, 0))
        .unwrap();
    // Real buffers with lying lengths: returned unread.
    let b = peer.take_rx_buffer().unwrap();
    peer.enqueue_rx(b.with_len(0)).unwrap();
    let b = peer.take_rx_buffer().unwrap();
    peer.enqueue_rx(b.with_len(2049)).unwrap();
    let b = peer.take_rx_buffer().unwrap();
    peer.enqueue_rx(b.with_len(u16::MAX)).unwrap();
    assert!(peer.inject(b"good frame after the bad ones"));
    let got = dev.receive(|f| f.len());
    assert_eq!(got, Some(29));
    assert_eq!(dev.counters().rx_bad_desc, 6);
    assert_eq!(dev.counters().rx_frames, 1);
    peer.audit(&dev).unwrap();
}

#[test]
fn bad_tx_free_descriptors_from_virt_tx_are_dropped() {
    let mem = MockMemory::new(4, 2, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    dev.write_into(60, |b| b.fill(1)).unwrap();
    dev.write_into(60, |b| b.fill(2)).unwrap();
    // virt_tx answers with garbage instead of the buffers.
    let d = peer.virt_tx.active.dequeue().unwrap();
    peer.virt_tx.free.enqueue(BuffDesc::new(3, 0, 0)).unwrap();
    peer.virt_tx
        .free
        .enqueue(BuffDesc::new(4096, 0, 0))
        .unwrap();
    assert_eq!(dev.write_into(60, |_| ()), Err(TxError::NoBuffer));
    assert_eq!(dev.counters().tx_bad_desc, 2);
    peer.virt_tx.free.enqueue(d.with_len(0)).unwrap();
    dev.write_into(60, |b| b.fill(7)).unwrap();
    assert_eq!(peer.take_frame().unwrap(), vec![2; 60]);
    assert_eq!(peer.take_frame().unwrap(), vec![7; 60]);
    peer.audit(&dev).unwrap();
}

#[test]
fn corrupt_queue_indices_are_counted_not_trusted() {
    let mem = MockMemory::new(8, 4, MAC);
    let (mut dev, _peer) = mem.connect().unwrap();
    let regions = mem.regions().unwrap();
    // The copier claims 1000 frames in an 8-entry queue.
    regions.rx_active.write(0, &1000u16.to_le_bytes()).unwrap();
    assert_eq!(dev.receive(|_| ()), None);
    assert!(!dev.rx_pending());
    assert!(dev.counters().rx_queue_errors >= 2);
    // virt_tx claims to have consumed more than we produced.
    regions.tx_active.write(2, &77u16.to_le_bytes()).unwrap();
    assert!(matches!(dev.write_into(60, |_| ()), Err(TxError::Queue(_))));
    assert!(dev.holds_tx_buffer(), "the buffer is kept, not lost");
}

#[test]
fn regions_are_checked_against_the_config() {
    let mem = MockMemory::new(8, 4, MAC);
    let mut cfg = mem.config().clone();
    cfg.tx_data.vaddr = 0;
    let all = mem.regions().unwrap();
    let err = Regions::from_config(&cfg, |name, _, _| {
        Some(match name {
            RegionName::RxFree => all.rx_free,
            RegionName::RxActive => all.rx_active,
            RegionName::RxData => all.rx_data,
            RegionName::TxFree => all.tx_free,
            RegionName::TxActive => all.tx_active,
            RegionName::TxData => panic!("vaddr 0 must not reach the mapper"),
        })
    })
    .unwrap_err();
    assert_eq!(
        err,
        Error::Unmapped {
            region: RegionName::TxData,
            vaddr: 0
        }
    );
    assert!(err.to_string().contains("tx_data"));
    let regions = mem.regions().unwrap();
    let small = Regions::from_config(mem.config(), |name, _, _| {
        Some(match name {
            RegionName::RxData => regions.rx_data.slice(0, 4096).unwrap(),
            _ => regions.rx_free,
        })
    });
    assert!(matches!(
        small,
        Err(Error::RegionTooSmall {
            region: RegionName::RxData,
            ..
        })
    ));
    // A config whose capacity exceeds its regions is refused by connect.
    let mut big = mem.config().clone();
    // (512 entries: the mock's queue regions are page-rounded, as Microkit's are.)
    big.rx.num_buffers = 512;
    let e = NetDevice::connect(&big, mem.regions().unwrap())
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            Error::RegionTooSmall {
                region: RegionName::RxFree,
                ..
            }
        ),
        "{e}"
    );
    big.rx.num_buffers = 6;
    let e = NetDevice::connect(&big, mem.regions().unwrap())
        .err()
        .unwrap();
    assert_eq!(
        e,
        Error::BadCapacity {
            queue: "rx",
            value: 6
        }
    );
}

#[test]
fn filter_accepts_good_frames_and_names_what_is_wrong_with_bad_ones() {
    let good = udp(b"hello");
    assert_eq!(filter::check(&good), Ok(()));
    assert_eq!(
        filter::check(&frames::arp_request(PEER_MAC, PEER_IP, IP)),
        Ok(())
    );
    assert_eq!(
        filter::check(&frames::icmp_echo_request(
            PEER_MAC, MAC, PEER_IP, IP, 1, 1, b"x"
        )),
        Ok(())
    );
    // Ethernet padding after the IP packet is fine.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 20]);
    assert_eq!(filter::check(&padded), Ok(()));
    assert_eq!(filter::check(&good[..13]), Err(Malformed::Runt));
    assert_eq!(filter::check(&good[..14 + 19]), Err(Malformed::BadHeader));
    assert_eq!(
        filter::check(&good[..14 + 20 + 7]),
        Err(Malformed::BadHeader)
    );
    let mut bad_ip = good.clone();
    bad_ip[14 + 8] ^= 1; // TTL, covered by the header checksum
    assert_eq!(filter::check(&bad_ip), Err(Malformed::BadChecksum));
    let mut bad_udp = good.clone();
    *bad_udp.last_mut().unwrap() ^= 0x40;
    assert_eq!(filter::check(&bad_udp), Err(Malformed::BadChecksum));
    let mut no_udp_sum = bad_udp.clone();
    no_udp_sum[14 + 20 + 6..14 + 20 + 8].fill(0);
    assert_eq!(
        filter::check(&no_udp_sum),
        Ok(()),
        "zero UDP checksum means none"
    );
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    assert_eq!(filter::check(&bad_version), Err(Malformed::BadHeader));
    let arp = frames::arp_request(PEER_MAC, PEER_IP, IP);
    assert_eq!(filter::check(&arp[..20]), Err(Malformed::BadHeader));
}

#[test]
fn smoltcp_device_filters_counts_and_batches() {
    let mem = MockMemory::new(16, 4, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    let good = udp(b"payload");
    assert!(peer.inject(&good[..10]));
    let mut bad = good.clone();
    bad[14 + 10] ^= 0xff;
    assert!(peer.inject(&bad));
    for _ in 0..3 {
        assert!(peer.inject(&good));
    }
    let now = Instant::from_millis(0);
    // The budget counts every frame taken, dropped ones too: runt, bad, good, good.
    dev.start_rx_batch(4);
    let (rx, _tx) = Device::receive(&mut dev, now).unwrap();
    assert_eq!(rx.consume(|f| f.to_vec()), good);
    assert!(!dev.rx_batch_exhausted());
    let (rx, tx) = Device::receive(&mut dev, now).unwrap();
    rx.consume(|_| ());
    tx.consume(42, |b| b.fill(0xab));
    assert!(
        Device::receive(&mut dev, now).is_none(),
        "budget of 4 frames used up"
    );
    assert!(dev.rx_batch_exhausted());
    dev.start_rx_batch(8);
    let (rx, _) = Device::receive(&mut dev, now).unwrap();
    rx.consume(|_| ());
    assert!(Device::receive(&mut dev, now).is_none());
    let c = dev.counters();
    assert_eq!((c.rx_runts, c.rx_bad_checksums, c.rx_frames), (1, 1, 5));
    assert_eq!(peer.take_frame().unwrap(), vec![0xab; 42]);
    // A token smoltcp drops unused loses no buffer.
    assert!(dev.transmit(now).is_some());
    peer.audit(&dev).unwrap();
}
