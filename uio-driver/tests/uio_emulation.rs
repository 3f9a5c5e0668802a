//! UIO discovery, map offsets, error messages, doorbells and IRQs against an emulated tree.
mod common;

use std::process::Command;
use std::time::Duration;

use common::{FileMap, UioTree, PAGE};
use uio_driver::config::DriverConfig;
use uio_driver::driver::Platform;
use uio_driver::uio::{UioDevices, UioError};

/// A configuration with queues of `rx` / `tx` entries.
fn config(rx: u32, tx: u32) -> DriverConfig {
    DriverConfig::parse(&common::driver_config(rx, tx), "the test's config").unwrap()
}

fn open(t: &UioTree, config: &DriverConfig) -> Result<UioDevices, UioError> {
    UioDevices::open(&t.sysfs, &t.dev, config)
}

#[test]
fn finds_devices_by_name_in_any_order_and_honours_map_offsets() {
    let mut t = UioTree::new();
    // Deliberately not in the usual order, and rx_free starts 0x100 into its page.
    t.add_irq("tx_irq");
    let tx1 = t.add_map("tx_data1", 0x8000, 0);
    t.add_map("tx_active", 0x2000, 0);
    let rx_free = t.add_map("rx_free", 0x2000, 0x100);
    t.add_map("rx_fault", PAGE, 0);
    t.add_map("tx_data0", 0x4000, 0);
    t.add_map("rx_active", 0x3000, 0);
    t.add_map("rx_data", 0x10_0000, 0);
    t.add_irq("rx_irq");
    t.add_map("tx_free", 0x2000, 0);
    t.add_map("tx_fault", PAGE, 0);
    // rx_free holds 0x2000 - 0x100 bytes: 8 + 16 * 256 fits.
    let uio = open(&t, &config(256, 256)).unwrap();
    assert_eq!(uio.memory.rx_capacity.get(), 256);
    assert_eq!(uio.memory.tx_capacity.get(), 256);
    assert_eq!(uio.memory.tx_data.len(), 2);
    assert_eq!(uio.memory.tx_data[1].len(), 0x8000);
    // A write through the driver's view of rx_free lands 0x100 bytes into the file.
    uio.memory.rx_free.region().write(0, &[0xab; 8]).unwrap();
    let file = FileMap::open(&rx_free);
    let mut b = [0u8; 8];
    file.region().read(0x100, &mut b).unwrap();
    assert_eq!(b, [0xab; 8]);
    file.region().read(0, &mut b).unwrap();
    assert_eq!(b, [0; 8]);
    // tx_data1 is the second TX region.
    FileMap::open(&tx1).region().write(0x800, b"oid1").unwrap();
    let mut got = [0u8; 4];
    uio.memory.tx_data[1]
        .region()
        .read(0x800, &mut got)
        .unwrap();
    assert_eq!(&got, b"oid1");
}

#[test]
fn a_missing_device_is_named_and_everything_found_is_listed() {
    let (t, _) = UioTree::standard(512, 512, 2, 512);
    let fake = UioTree::new();
    // The same tree with tx_irq renamed away.
    let tx_irq_dir = t.sysfs.join("class/uio/uio10/name");
    std::fs::write(&tx_irq_dir, "something_else\n").unwrap();
    let e = open(&t, &config(512, 512)).err().unwrap().to_string();
    assert!(e.contains("no UIO device named `tx_irq`"), "{e}");
    for name in [
        "rx_free",
        "rx_active",
        "rx_data",
        "tx_free",
        "tx_active",
        "rx_fault",
        "tx_fault",
        "tx_data0",
        "tx_data1",
        "rx_irq",
        "something_else",
    ] {
        assert!(e.contains(&format!("`{name}`")), "{name} missing from: {e}");
    }
    assert!(
        e.contains("uio0 `rx_free` map0 addr=0x40000000 size=0x3000 offset=0x0"),
        "{e}"
    );
    assert!(e.contains("(no maps)"), "{e}");
    let e = open(&fake, &config(512, 512)).err().unwrap().to_string();
    assert!(e.contains("no UIO devices at all"), "{e}");
}

#[test]
fn wrong_sized_maps_are_refused_with_the_sizes() {
    let mut t = UioTree::new();
    for (n, s) in [
        ("rx_free", PAGE),
        ("rx_active", PAGE),
        ("tx_free", PAGE),
        ("tx_active", PAGE),
        ("rx_fault", PAGE),
        ("tx_fault", PAGE),
        ("tx_data0", PAGE),
    ] {
        t.add_map(n, s, 0);
    }
    t.add_map("rx_data", 0x400, 0); // smaller than one buffer
    t.add_irq("rx_irq");
    t.add_irq("tx_irq");
    let e = open(&t, &config(64, 64)).err().unwrap().to_string();
    assert!(
        e.contains("UIO device `rx_data`: map0 holds 0x400 bytes after its offset, 0x800 needed"),
        "{e}"
    );
    // A configured capacity the queue maps cannot hold: both sizes and the config are named.
    let (t, _) = UioTree::standard(256, 512, 1, 512);
    let e = open(&t, &config(512, 256)).err().unwrap().to_string();
    assert!(e.contains("`rx_free`: map0 holds 0x2000 bytes after its offset, 0x2008 needed (a queue of capacity 512 as configured by the test's config)"), "{e}");
}

#[test]
fn the_configured_capacity_is_used_even_where_the_maps_hold_more() {
    // 64-entry queues in page-sized maps (as sdf::net derives for a 64-buffer system): the
    // maps have room for 255 entries; guessing the largest power of two gave 128.
    let (t, _) = UioTree::standard(64, 64, 1, 64);
    let uio = open(&t, &config(64, 64)).unwrap();
    assert_eq!(uio.memory.rx_free.len(), 0x1000);
    assert!(sddf::queue::queue_bytes(128) <= 0x1000);
    assert_eq!(
        (uio.memory.rx_capacity.get(), uio.memory.tx_capacity.get()),
        (64, 64)
    );
    let uio = open(&t, &config(32, 64)).unwrap();
    assert_eq!(uio.memory.rx_capacity.get(), 32, "smaller is fine too");
}

#[test]
fn the_stats_page_is_optional_and_must_hold_a_page() {
    let (mut t, _) = UioTree::standard(64, 64, 1, 64);
    assert!(open(&t, &config(64, 64)).unwrap().stats.is_none());
    let page = t.add_map("stats", PAGE, 0);
    let uio = open(&t, &config(64, 64)).unwrap();
    let stats = uio.stats.as_ref().expect("the stats device is mapped");
    assert_eq!(stats.len(), PAGE as usize);
    // Writable, and where the file is.
    stats.region().write(0, b"netvmst1").unwrap();
    let mut b = [0u8; 8];
    FileMap::open(&page).region().read(0, &mut b).unwrap();
    assert_eq!(&b, b"netvmst1");
    let (mut t, _) = UioTree::standard(64, 64, 1, 64);
    t.add_map("stats", PAGE, 0x800);
    let e = open(&t, &config(64, 64)).err().unwrap().to_string();
    assert!(
        e.contains("`stats`: map0 holds 0x800 bytes after its offset, 0x1000 needed (one page of counters)"),
        "{e}"
    );
}

#[test]
fn tx_data_regions_must_be_numbered_without_gaps() {
    let (mut t, _) = UioTree::standard(256, 512, 2, 512);
    t.add_map("tx_data3", 0x1000, 0);
    let e = open(&t, &config(256, 256)).err().unwrap().to_string();
    assert!(e.contains("`tx_data3` is beyond tx_data2"), "{e}");
}

#[test]
fn doorbells_store_one_word_and_irqs_are_drained_then_rearmed() {
    let (mut t, files) = UioTree::standard(256, 512, 1, 512);
    let mut uio = open(&t, &config(256, 256)).unwrap();
    let path = |n: &str| files.iter().find(|(f, _)| f == n).unwrap().1.clone();
    let rx_fault = FileMap::open(&path("rx_fault"));
    let tx_fault = FileMap::open(&path("tx_fault"));
    let word = |m: &FileMap| {
        let mut b = [0u8; 4];
        m.region().read(0, &mut b).unwrap();
        u32::from_ne_bytes(b)
    };
    uio.platform.doorbell_rx().unwrap();
    uio.platform.doorbell_tx().unwrap();
    uio.platform.doorbell_rx().unwrap();
    assert_eq!(
        (word(&rx_fault), word(&tx_fault)),
        (3, 2),
        "running count of rings"
    );

    // Nothing pending: the wait times out.
    let ev = uio
        .platform
        .wait(&[], Some(Duration::from_millis(20)))
        .unwrap();
    assert!(!ev.rx_notified && !ev.tx_notified);
    // Three interrupts before the driver looks: one wake-up, all counts read, one re-arm.
    for _ in 0..3 {
        t.irq("tx_irq").fire();
    }
    let ev = uio
        .platform
        .wait(&[], Some(Duration::from_secs(5)))
        .unwrap();
    assert!(ev.tx_notified && !ev.rx_notified);
    assert_eq!(t.irq("tx_irq").read_rearm(1000), Some(1));
    assert_eq!(t.irq("tx_irq").read_rearm(50), None, "exactly one re-arm");
    let ev = uio
        .platform
        .wait(&[], Some(Duration::from_millis(20)))
        .unwrap();
    assert!(!ev.tx_notified, "drained counts do not wake again");
    t.irq("rx_irq").fire();
    let ev = uio
        .platform
        .wait(&[], Some(Duration::from_secs(5)))
        .unwrap();
    assert!(ev.rx_notified);
    assert_eq!(t.irq("rx_irq").read_rearm(1000), Some(1));
}

/// The uio-driver binary on `lo` with `config`, its UIO devices those of `t`.
fn run_binary(t: &UioTree, config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uio-driver"))
        .args(["--iface", "lo", "--config"])
        .arg(config)
        .arg("--sysfs-root")
        .arg(&t.sysfs)
        .arg("--dev-root")
        .arg(&t.dev)
        .output()
        .unwrap()
}

#[test]
fn the_binary_reports_a_missing_device_and_exits_nonzero() {
    let (t, _) = UioTree::standard(256, 512, 1, 512);
    std::fs::remove_dir_all(t.sysfs.join("class/uio/uio2")).unwrap(); // rx_data
    let config = t.dir.0.join("net_driver_config");
    std::fs::write(&config, common::driver_config(256, 256)).unwrap();
    let out = run_binary(&t, &config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uio-driver: error: no UIO device named `rx_data`"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no ready line"
    );
}

#[test]
fn the_binary_without_a_config_names_where_it_looked() {
    let (t, _) = UioTree::standard(256, 512, 1, 512);
    let missing = t.dir.0.join("no-such-config");
    let out = run_binary(&t, &missing);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no driver configuration") && err.contains(&missing.display().to_string()),
        "{err}"
    );
}
