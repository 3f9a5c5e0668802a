//! The Solo5-shaped API over the mock copier and virt_tx: every result code.

use net_client::mock::MockMemory;
use net_client::solo5::{AcquireError, Devices, NamedDevice, NetError};
use net_client::ETHERNET_FRAME_MAX;

const MAC: [u8; 6] = [0x52, 0x54, 1, 0, 3, 0x11];

#[test]
fn acquire_by_name_once_and_only_known_names() {
    let mem = MockMemory::new(8, 8, MAC);
    let (dev, _peer) = mem.connect().unwrap();
    let mut slots = [NamedDevice::new("client1", dev)];
    let mut devices = Devices::new(&mut slots);
    assert_eq!(
        devices.acquire("eth0").err(),
        Some(AcquireError::NotFound("eth0"))
    );
    let (_, info) = devices.acquire("client1").unwrap();
    assert_eq!((info.mac, info.mtu), (MAC, 1500));
    assert_eq!(
        devices.acquire("client1").err(),
        Some(AcquireError::InUse("client1"))
    );
    assert_eq!(
        AcquireError::NotFound("eth0").to_string(),
        "net device \"eth0\": no such device in this PD"
    );
}

#[test]
fn read_reports_again_invalid_and_copies_frames() {
    let mem = MockMemory::new(8, 8, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    let mut buf = [0u8; 2048];
    assert_eq!(dev.read(&mut buf), Err(NetError::Again));
    let frame: Vec<u8> = (0..1514).map(|i| i as u8).collect();
    assert!(peer.inject(&frame));
    // Too small a buffer is refused up front; the frame stays for a proper read.
    assert_eq!(
        dev.read(&mut buf[..ETHERNET_FRAME_MAX - 1]),
        Err(NetError::Invalid)
    );
    assert_eq!(dev.read(&mut buf[..ETHERNET_FRAME_MAX]), Ok(1514));
    assert_eq!(&buf[..1514], &frame[..]);
    // A peer that delivers more than a buffer of 1514 can take: dropped, its buffer returned.
    assert!(peer.inject(&[7; 2048]));
    assert_eq!(
        dev.read(&mut buf[..ETHERNET_FRAME_MAX]),
        Err(NetError::Invalid)
    );
    assert_eq!(dev.read(&mut buf), Err(NetError::Again));
    peer.audit(&dev).unwrap();
}

#[test]
fn write_and_write_into_report_invalid_and_again() {
    let mem = MockMemory::new(8, 2, MAC);
    let (mut dev, mut peer) = mem.connect().unwrap();
    assert_eq!(dev.write(&[]), Err(NetError::Invalid));
    assert_eq!(
        dev.write(&[0; ETHERNET_FRAME_MAX + 1]),
        Err(NetError::Invalid)
    );
    dev.write(&[1; 60]).unwrap();
    dev.write_into(100, |b| b.fill(2)).unwrap();
    // Two TX buffers, both in flight.
    assert_eq!(dev.write(&[3; 60]), Err(NetError::Again));
    assert_eq!(peer.take_frame().unwrap(), [1; 60]);
    assert_eq!(peer.take_frame().unwrap(), [2; 100]);
    dev.write(&[3; 60]).unwrap();
    assert_eq!(peer.take_frame().unwrap(), [3; 60]);
    peer.audit(&dev).unwrap();
}
