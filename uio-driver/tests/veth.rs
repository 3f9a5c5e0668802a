//! The real binary on a veth pair in network namespaces made by the test, with the UIO emulation
//! standing in for the VMM: RX byte-identical, TX out on the peer, a queue-side reflector.
//! Needs root (`ip netns`); skips with a message otherwise.
mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    is_test_frame, test_frame, vlan_tagged, FileMap, RawSocket, UioTree, VethPair, TEST_ETHERTYPE,
};
use sddf::queue::{queue_bytes, Capacity, DrainSide, FillSide, Queue};
use sddf::{BuffDesc, NET_BUFFER_SIZE};

/// 64-entry queues in page-sized (4 KiB) maps, capacities given by a `.net_driver_config` file
/// (`--config`): the driver must use 64 although the maps would hold 255 entries (and the
/// largest power of two that fits, what the driver used to infer, is 128).
const CAP: u64 = 64;
const RX_BUFS: u64 = 64;
const TX_BUFS: u64 = 64;

/// The queue in map `m`, with the capacity the driver is configured for.
fn queue(m: &FileMap) -> Queue<'_> {
    Queue::new(m.region(), Capacity::new(CAP as u32).unwrap()).unwrap()
}

struct Running {
    tree: UioTree,
    files: Vec<(String, PathBuf)>,
    child: Child,
    lines: mpsc::Receiver<String>,
    veth: VethPair,
}

impl Running {
    fn map(&self, name: &str) -> FileMap {
        FileMap::open(&self.files.iter().find(|(n, _)| n == name).unwrap().1)
    }

    /// Stops the driver and returns its final counters line.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "driver exited with {status}");
        let mut last = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if l.contains("counters") {
                last = l;
            }
        }
        drop(self.veth);
        last
    }
}

/// Sets up namespaces, the UIO tree, hands all RX buffers to the driver, starts it and waits
/// for its ready line. `None` (after saying why) when the machine cannot do this.
fn start(tag: &str) -> Option<Running> {
    start_with(tag, &[])
}

/// [`start`] with more driver options.
fn start_with(tag: &str, extra: &[&str]) -> Option<Running> {
    let (veth, tree, files, config) = prepare(tag)?;
    let ready = format!(
        "uio-driver: ready iface={} rx_capacity={CAP} tx_capacity={CAP} tx_regions=1",
        veth.if_driver
    );
    let (child, lines) = common::spawn_until(
        driver_command(&veth, &tree, &config)
            // Long enough that frames sent right after a batch find the driver busy polling.
            .args(["--busy-poll-us", "300000"])
            .args(["--report-every", "1"])
            .args(extra),
        &ready,
    );
    Some(Running {
        tree,
        files,
        child,
        lines,
        veth,
    })
}

type Prepared = (VethPair, UioTree, Vec<(String, PathBuf)>, PathBuf);

/// The veth pair, the UIO tree with every RX buffer handed to the driver, and the driver's
/// config file; `None` (after saying why) when the machine cannot make them.
fn prepare(tag: &str) -> Option<Prepared> {
    let veth = match VethPair::new(tag) {
        Ok(v) => v,
        Err(e) => {
            testkit::skip(
                &format!("veth {tag}"),
                format_args!("cannot create network namespaces ({e}); run as root with iproute2"),
            );
            return None;
        }
    };
    let (tree, files) = UioTree::standard(CAP, RX_BUFS, 1, TX_BUFS);
    let queue_map = std::fs::metadata(&files.iter().find(|(n, _)| n == "rx_free").unwrap().1)
        .unwrap()
        .len();
    assert_eq!(queue_map, 0x1000, "page-sized queue maps");
    assert!(
        queue_bytes(128) as u64 <= queue_map && queue_bytes(256) as u64 > queue_map,
        "inferring from the map size would give 128 entries, not the configured {CAP}"
    );
    let config = tree.dir.0.join("net_driver_config");
    std::fs::write(&config, common::driver_config(CAP as u32, CAP as u32)).unwrap();
    {
        let free = FileMap::open(&files.iter().find(|(n, _)| n == "rx_free").unwrap().1);
        let active = FileMap::open(&files.iter().find(|(n, _)| n == "rx_active").unwrap().1);
        let mut virt_rx = DrainSide::new(queue(&free), queue(&active));
        virt_rx.provide_all_buffers(0, RX_BUFS as u16).unwrap();
    }
    Some((veth, tree, files, config))
}

/// The driver on the driver side of `veth`, in its namespace, with the test's UIO tree.
fn driver_command(veth: &VethPair, tree: &UioTree, config: &std::path::Path) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &veth.ns_driver,
        env!("CARGO_BIN_EXE_uio-driver"),
        "--iface",
        &veth.if_driver,
        "--config",
    ])
    .arg(config)
    .arg("--sysfs-root")
    .arg(&tree.sysfs)
    .arg("--dev-root")
    .arg(&tree.dev);
    c
}

fn peer_socket(r: &Running) -> RawSocket {
    let iface = r.veth.if_peer.clone();
    VethPair::in_ns(&r.veth.ns_peer, move || {
        RawSocket::open(&iface, TEST_ETHERTYPE)
    })
}

fn sizes() -> impl Iterator<Item = (u32, usize)> {
    (0..40u32).map(|i| (i, [60usize, 61, 64, 127, 128, 1000, 1514][i as usize % 7]))
}

/// virt_rx's part: takes frames from rx_active (their data in `data`), each in a whole buffer,
/// and gives every buffer back, until `want` test frames arrived or 10 s passed; returns the
/// test frames in order.
fn receive_test_frames(virt_rx: &mut DrainSide<'_>, data: &FileMap, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < deadline {
        match virt_rx.active.dequeue() {
            Ok(d) => {
                assert_eq!(d.io_or_offset % NET_BUFFER_SIZE as u64, 0);
                let mut f = vec![0; usize::from(d.len)];
                data.region().read(d.io_or_offset as usize, &mut f).unwrap();
                if is_test_frame(&f) {
                    got.push(f);
                }
                virt_rx.free.enqueue(d.with_len(0)).unwrap();
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    got
}

#[test]
fn frames_from_the_peer_arrive_in_rx_active_byte_identical() {
    rx_byte_identical("rx", &[]);
}

/// The same with the TPACKET_V2 slot ring (`--rx-wakeup frame-ring`).
#[test]
fn frames_from_the_peer_arrive_byte_identical_through_the_slot_ring() {
    rx_byte_identical("rxv2", &["--rx-wakeup", "frame-ring"]);
}

/// More frames than the driver has RX buffers: the ones it cannot place wait in the packet
/// ring (the driver keeps them there, `RxVerdict::Keep`) until virt_rx gives buffers back,
/// then all arrive, in order: on the V3 block ring and on the V2 slot ring.
#[test]
fn frames_beyond_the_rx_buffers_wait_in_the_ring_and_arrive_in_order() {
    for (tag, extra) in [
        ("keep3", &[][..]),
        ("keep2", &["--rx-wakeup", "frame-ring"][..]),
    ] {
        let Some(mut r) = start_with(tag, extra) else {
            return;
        };
        let peer = peer_socket(&r);
        let (free_m, active_m, data_m) = (r.map("rx_free"), r.map("rx_active"), r.map("rx_data"));
        let mut virt_rx = DrainSide::new(queue(&free_m), queue(&active_m));
        let sent: Vec<Vec<u8>> = (0..(RX_BUFS as u32 * 5 / 2))
            .map(|i| test_frame(i, 1000))
            .collect();
        for f in &sent {
            peer.send(f);
        }
        // Let the driver fill every buffer and find no more before any comes back.
        std::thread::sleep(Duration::from_millis(300));
        // virt_rx's part, as the VMM does it: buffers go back, and the driver, which asked for
        // a signal when it ran out, gets its rx_irq.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < sent.len() && Instant::now() < deadline {
            match virt_rx.active.dequeue() {
                Ok(d) => {
                    let mut f = vec![0; usize::from(d.len)];
                    data_m
                        .region()
                        .read(d.io_or_offset as usize, &mut f)
                        .unwrap();
                    if is_test_frame(&f) {
                        got.push(f);
                    }
                    virt_rx.free.enqueue(d.with_len(0)).unwrap();
                    if virt_rx.free.take_signal_request() {
                        r.tree.irq("rx_irq").fire();
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(got.len(), sent.len(), "{tag}: frames missing");
        assert_eq!(got, sent, "{tag}: frames differ or are out of order");
        let counters = r.stop();
        assert!(counters.contains("rx_drop_oversize=0"), "{counters}");
    }
}

/// Test frames of every size (every third 802.1Q-tagged: the driver must put back the tag the
/// kernel took out) from the peer arrive in rx_active byte-identical and in order, half of them
/// found by busy polling; the doorbell rang.
fn rx_byte_identical(tag: &str, extra: &[&str]) {
    let Some(r) = start_with(tag, extra) else {
        return;
    };
    let peer = peer_socket(&r);
    let (free_m, active_m, data_m, fault_m) = (
        r.map("rx_free"),
        r.map("rx_active"),
        r.map("rx_data"),
        r.map("rx_fault"),
    );
    let mut virt_rx = DrainSide::new(queue(&free_m), queue(&active_m));
    let sent: Vec<Vec<u8>> = sizes()
        .map(|(i, l)| match i % 3 {
            0 => vlan_tagged(&test_frame(i, l), 5 + i as u16),
            _ => test_frame(i, l),
        })
        .collect();
    // In two halves: the second arrives while the driver is busy polling after the first, and
    // must be found there (PacketNic::rx_ready), not after a sleep.
    let (first, second) = sent.split_at(sent.len() / 2);
    let mut got = Vec::new();
    for half in [first, second] {
        for f in half {
            peer.send(f);
        }
        got.extend(receive_test_frames(&mut virt_rx, &data_m, half.len()));
    }
    assert_eq!(got, sent, "frames differ or are missing");
    let mut bell = [0u8; 4];
    fault_m.region().read(0, &mut bell).unwrap();
    assert!(u32::from_ne_bytes(bell) >= 1, "rx doorbell never rang");
    let counters = r.stop();
    assert!(counters.contains("rx_drop_oversize=0"), "{counters}");
    let hits: u64 = counters
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("busy_poll_hits="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no busy_poll_hits in {counters}"));
    assert!(
        hits >= 1,
        "the second half was not found by busy polling: {counters}"
    );
}

#[test]
fn frames_in_tx_active_come_out_on_the_peer() {
    let Some(mut r) = start("tx") else { return };
    let sent = tx_frames_come_out_on_the_peer(&mut r);
    let counters = r.stop();
    assert!(
        counters.contains(&format!("tx_frames={sent}")),
        "{counters}"
    );
}

/// With `--qdisc-bypass 1` the driver's frames reach the peer without passing the interface's
/// qdisc: a `pfifo` put on the driver's veth counts none of them, and counts every one of them
/// when the driver runs without the option.
#[test]
fn qdisc_bypass_sends_around_the_interfaces_qdisc() {
    for bypass in ["0", "1"] {
        let Some(mut r) = start_with(&format!("qdisc{bypass}"), &["--qdisc-bypass", bypass]) else {
            return;
        };
        let (ns, dev) = (r.veth.ns_driver.clone(), r.veth.if_driver.clone());
        let tc = |args: &[&str]| {
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "tc"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "tc {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        tc(&["qdisc", "add", "dev", &dev, "root", "pfifo"]);
        let sent = tx_frames_come_out_on_the_peer(&mut r);
        let stats = tc(&["-s", "qdisc", "show", "dev", &dev]);
        let through_qdisc: usize = stats
            .split_once(" bytes ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {stats}"));
        if bypass == "1" {
            assert_eq!(through_qdisc, 0, "bypass: the qdisc saw frames: {stats}");
        } else {
            assert!(through_qdisc >= sent, "{sent} frames, qdisc: {stats}");
        }
        r.stop();
    }
}

/// `--driver-first` on an interface with no NAPI of its own (a veth without GRO) cannot do what
/// it says, and with busy polling it would starve its own frames: in both cases the driver
/// stops at once with an error that says so, instead of running without it.
#[test]
fn driver_first_without_napi_or_with_busy_polling_fails_clearly() {
    let Some((veth, tree, _files, config)) = prepare("first") else {
        return;
    };
    for (extra, why) in [
        (
            &[][..],
            "--driver-first: vdrv has no NAPI instance to move into a thread",
        ),
        (
            &["--busy-poll-us", "100"][..],
            "--driver-first with --busy-poll-us 100: a SCHED_FIFO driver that polls",
        ),
    ] {
        let out = driver_command(&veth, &tree, &config)
            .args(["--driver-first", "1"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "driver ran: {out:?}");
        assert!(stderr.contains(why), "{stderr}");
    }
}

/// Puts test frames of every size into tx_active, fires tx_irq, and checks that the peer gets
/// them in order and that every TX buffer comes back with its offset; returns how many.
fn tx_frames_come_out_on_the_peer(r: &mut Running) -> usize {
    let peer = peer_socket(r);
    let (free_m, active_m, data_m) = (r.map("tx_free"), r.map("tx_active"), r.map("tx_data0"));
    let mut virt_tx = FillSide::new(queue(&free_m), queue(&active_m));
    let frames: Vec<Vec<u8>> = sizes().map(|(i, l)| test_frame(1000 + i, l)).collect();
    for (i, f) in frames.iter().enumerate() {
        let off = i * NET_BUFFER_SIZE;
        data_m.region().write(off, f).unwrap();
        virt_tx
            .active
            .enqueue(BuffDesc::new(off as u64, f.len() as u16, 0))
            .unwrap();
    }
    assert!(
        virt_tx.active.take_signal_request(),
        "the driver armed tx_active at start"
    );
    r.tree.irq("tx_irq").fire();
    let mut got = Vec::new();
    while got.len() < frames.len() {
        match peer.recv(5000) {
            Some(f) if is_test_frame(&f) => got.push(f),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(got, frames);
    // Every buffer comes back, with its offset and oid.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut back = Vec::new();
    while back.len() < frames.len() && Instant::now() < deadline {
        match virt_tx.free.dequeue() {
            Ok(d) => back.push(d),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let want: Vec<BuffDesc> = (0..frames.len())
        .map(|i| BuffDesc::new((i * NET_BUFFER_SIZE) as u64, 0, 0))
        .collect();
    assert_eq!(back, want);
    assert_eq!(
        r.tree.irq("tx_irq").read_rearm(1000),
        Some(1),
        "driver re-armed the IRQ"
    );
    frames.len()
}

#[test]
fn a_queue_side_reflector_echoes_every_frame() {
    let Some(mut r) = start("echo") else { return };
    let peer = peer_socket(&r);
    let m: Vec<FileMap> = [
        "rx_free",
        "rx_active",
        "rx_data",
        "tx_free",
        "tx_active",
        "tx_data0",
    ]
    .iter()
    .map(|n| r.map(n))
    .collect();
    let q = |i: usize| queue(&m[i]);
    let virt_rx = DrainSide::new(q(0), q(1));
    let virt_tx = FillSide::new_self_provided(q(3), q(4), TX_BUFS as u16).unwrap();
    let (rx_data, tx_data) = (m[2].region(), m[5].region());
    let n = 500u32;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let echoes = std::thread::scope(|s| {
        let stop2 = stop.clone();
        let receiver = s.spawn(move || {
            let mut seen = vec![false; n as usize];
            let mut count = 0;
            while count < n {
                let Some(f) = peer.recv(5000) else { break };
                if is_test_frame(&f) && f[6] == 0xee {
                    let seq = u32::from_be_bytes(f[14..18].try_into().unwrap());
                    assert_eq!(
                        &f[18..],
                        &test_frame(seq, f.len())[18..],
                        "echo payload differs"
                    );
                    if !std::mem::replace(&mut seen[seq as usize], true) {
                        count += 1;
                    }
                }
            }
            stop2.store(true, std::sync::atomic::Ordering::Relaxed);
            count
        });
        // The reflector: rx_active -> tx_data (src MAC marked) -> tx_active; rx buffer back.
        let sender = s.spawn({
            let iface = r.veth.if_peer.clone();
            let ns = r.veth.ns_peer.clone();
            move || {
                let tx = VethPair::in_ns(&ns, move || RawSocket::open(&iface, 0));
                for i in 0..n {
                    tx.send(&test_frame(i, 60 + (i as usize * 37) % 1455));
                    if i % 32 == 31 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        });
        let mut echo = common::QueueEcho::new(virt_rx, virt_tx, rx_data, tx_data);
        let mut not_test = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let taken = echo.round(&mut r.tree, &mut |f| {
                if !is_test_frame(f) {
                    not_test += 1;
                    return false;
                }
                f[6] = 0xee;
                true
            });
            if taken == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        sender.join().unwrap();
        eprintln!("reflector: {not_test} frames of other protocols");
        receiver.join().unwrap()
    });
    let counters = r.stop();
    assert_eq!(echoes, n, "some frames were not echoed; driver: {counters}");
    assert!(
        counters.contains("tx_bad_len=0 tx_bad_oid=0 tx_bad_offset=0"),
        "{counters}"
    );
}

#[test]
fn oversize_frames_are_dropped_and_counted_and_sigusr1_prints_counters() {
    let Some(r) = start("big") else { return };
    for (ns, iface) in [
        (&r.veth.ns_driver, &r.veth.if_driver),
        (&r.veth.ns_peer, &r.veth.if_peer),
    ] {
        let ok = Command::new("ip")
            .args(["-n", ns, "link", "set", "dev", iface, "mtu", "4000"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "setting the MTU of {iface}");
    }
    let peer = peer_socket(&r);
    let (free_m, active_m, data_m) = (r.map("rx_free"), r.map("rx_active"), r.map("rx_data"));
    let mut virt_rx = DrainSide::new(queue(&free_m), queue(&active_m));
    peer.send(&test_frame(1, 3000));
    peer.send(&test_frame(2, 2049));
    peer.send(&test_frame(3, 100));
    let got = receive_test_frames(&mut virt_rx, &data_m, 1);
    assert_eq!(
        got,
        vec![test_frame(3, 100)],
        "only the frame that fits a buffer"
    );
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(r.child.id() as i32, libc::SIGUSR1) };
    let line = r
        .lines
        .recv_timeout(Duration::from_secs(5))
        .expect("no counters after SIGUSR1");
    assert!(line.starts_with("uio-driver: counters "), "{line}");
    assert!(line.contains("rx_drop_oversize=2"), "{line}");
    let last = r.stop();
    assert!(last.contains("rx_drop_oversize=2"), "{last}");
}

/// `--report-every`: while frames keep arriving, the counters line comes once a second without
/// SIGUSR1 (the only way to see them from outside the driver VM).
#[test]
fn counters_are_reported_periodically_while_frames_flow() {
    let Some(r) = start("rep") else { return };
    let peer = peer_socket(&r);
    let (free_m, active_m, data_m) = (r.map("rx_free"), r.map("rx_active"), r.map("rx_data"));
    let mut virt_rx = DrainSide::new(queue(&free_m), queue(&active_m));
    let mut periodic = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        let f = test_frame(i, 100);
        peer.send(&f);
        assert_eq!(receive_test_frames(&mut virt_rx, &data_m, 1), vec![f]);
        i += 1;
        while let Ok(l) = r.lines.try_recv() {
            if l.contains("counters") {
                periodic.push(l);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        periodic.len() >= 2,
        "{} periodic counters lines in 3.5 s: {periodic:?}",
        periodic.len()
    );
    assert!(periodic.iter().all(|l| l.contains("rx_ring_drops=")));
    r.stop();
}
