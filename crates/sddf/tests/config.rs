//! Config blob parsing: exact sizes, magic and counts, each error naming the config and field.
use sddf::config::*;
use zerocopy::{FromZeros, IntoBytes};

fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut v = vec![0u64; bytes.len().div_ceil(8)];
    v.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
    v
}

fn client_blob() -> Vec<u8> {
    let mut c = NetClientConfig::new_zeroed();
    c.magic = NET_MAGIC;
    c.rx = ConnectionResource::new(
        RegionResource {
            vaddr: 0x2001_2000,
            size: 0x3000,
        },
        RegionResource {
            vaddr: 0x2001_5000,
            size: 0x3000,
        },
        512,
        3,
    );
    c.tx = ConnectionResource::new(
        RegionResource {
            vaddr: 0x2011_8000,
            size: 0x3000,
        },
        RegionResource {
            vaddr: 0x2011_b000,
            size: 0x3000,
        },
        512,
        4,
    );
    c.mac_addr = [0x52, 0x54, 1, 0, 0, 0x10];
    c.as_bytes().to_vec()
}

#[test]
fn client_config_round_trips() {
    let blob = client_blob();
    assert_eq!(blob.len(), 128);
    let words = aligned(&blob);
    let c = parse::<NetClientConfig>(&words.as_bytes()[..128]).unwrap();
    assert_eq!(c.rx.id, 3);
    assert_eq!(c.tx.free_queue.vaddr, 0x2011_8000);
    assert_eq!(c.mac_addr, [0x52, 0x54, 1, 0, 0, 0x10]);
    let owned = parse_owned::<NetClientConfig>(&blob).unwrap();
    assert_eq!(owned.tx.num_buffers, 512);
}

#[test]
fn wrong_size_names_config_and_sizes() {
    let e = parse_owned::<NetVirtTxConfig>(&[0u8; 4152]).unwrap_err();
    assert_eq!(
        e,
        ConfigError::Size {
            config: "net_virt_tx_config",
            expected: 134200,
            found: 4152
        }
    );
    assert!(e.to_string().contains("sdfgen <= 0.30"), "{e}");
}

#[test]
fn wrong_magic_is_refused() {
    let mut blob = client_blob();
    blob[4] = 1;
    let e = parse_owned::<NetClientConfig>(&blob).unwrap_err();
    assert!(matches!(
        e,
        ConfigError::Magic {
            config: "net_client_config",
            ..
        }
    ));
    assert!(e.to_string().contains("magic"), "{e}");
}

#[test]
fn misaligned_blob_is_refused_not_misread() {
    let words = aligned(&[client_blob(), vec![0; 8]].concat());
    let e = parse::<NetClientConfig>(&words.as_bytes()[1..129]).unwrap_err();
    assert_eq!(
        e,
        ConfigError::Misaligned {
            config: "net_client_config"
        }
    );
}

#[test]
fn counts_beyond_arrays_are_refused() {
    let mut rx = NetVirtRxConfig::new_zeroed();
    rx.magic = NET_MAGIC;
    rx.driver.num_buffers = 512;
    rx.num_clients = 65;
    let e = parse_owned::<NetVirtRxConfig>(rx.as_bytes()).unwrap_err();
    assert_eq!(
        e,
        ConfigError::Count {
            config: "net_virt_rx_config",
            field: "num_clients",
            value: 65,
            max: 64
        }
    );
    rx.num_clients = 1;
    rx.clients[0].conn.num_buffers = 512;
    rx.clients[0].num_macs = 200;
    let e = parse_owned::<NetVirtRxConfig>(rx.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("num_macs is 200"), "{e}");
}

#[test]
fn non_power_of_two_capacity_is_refused() {
    let mut tx = NetVirtTxConfig::new_zeroed();
    tx.magic = NET_MAGIC;
    tx.driver.num_buffers = 1024;
    tx.num_clients = 2;
    tx.clients[0].conn.num_buffers = 512;
    tx.clients[1].conn.num_buffers = 500;
    let e = parse_owned::<NetVirtTxConfig>(tx.as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "net_virt_tx_config: client 1 conn num_buffers 500 is not a power of two in 1..=32768"
    );
}

#[test]
fn device_resources_magic_is_class_one() {
    let mut d = DeviceResources::new_zeroed();
    d.magic = NET_MAGIC;
    assert!(parse_owned::<DeviceResources>(d.as_bytes()).is_err());
    d.magic = DEVICE_MAGIC;
    d.num_regions = 2;
    assert_eq!(
        parse_owned::<DeviceResources>(d.as_bytes())
            .unwrap()
            .num_regions,
        2
    );
}

#[test]
fn connection_queues_are_found_or_the_queue_at_fault_is_named() {
    let mut space = sddf::shm::OwnedSpace::new();
    space.add(0x1000_0000, 0x1000).add(0x1000_1000, 0x1000);
    let region = |vaddr, size| RegionResource { vaddr, size };
    let conn = |free, active, n| ConnectionResource::new(free, active, n, 0);
    let ok = conn(
        region(0x1000_0000, 0x1000),
        region(0x1000_1000, 0x1000),
        128,
    );
    let pair = ok.queues(&&space).unwrap();
    // The whole region comes back, spare bytes after the array included.
    assert_eq!(pair.free_region.len(), 0x1000);
    assert_eq!(pair.capacity.get(), 128);
    let err = |c: ConnectionResource| c.queues(&&space).err().unwrap();
    let e = err(conn(
        region(0x1000_0000, 0x1000),
        region(0x2000_0000, 0x1000),
        128,
    ));
    assert_eq!(
        e,
        QueuePairError::Unmapped {
            queue: QueueKind::Active,
            vaddr: 0x2000_0000
        }
    );
    assert_eq!(e.to_string(), "active queue at 0x20000000 is not mapped");
    let e = err(conn(
        region(0x1000_0000, 0x100),
        region(0x1000_1000, 0x1000),
        128,
    ));
    assert_eq!(
        e.to_string(),
        "free queue at 0x10000000 (0x100 bytes) cannot hold 128 entries (0x808 bytes, 8-aligned)"
    );
    let e = err(conn(
        region(0x1000_0000, 0x1000),
        region(0x1000_1000, 0x1000),
        6,
    ));
    assert_eq!(
        e.to_string(),
        "queue capacity 6 is not a power of two in 1..=32768"
    );
}
