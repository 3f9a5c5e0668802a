//! Fault injection in host mode against the driver, on the real system.xml with real veths and
//! kernel peers (needs root; otherwise says it was skipped):
//!
//! * malformed frames from the peer at a high rate (runts, giants, bad IPv4/UDP/TCP checksums,
//!   truncated headers, random bytes), sent with a real AF_PACKET socket, while UDP echo runs:
//!   nothing crashes, every frame is counted where it is dropped, good traffic is still echoed;
//! * the driver killed: the runner reports it by PD name and stops (never hangs);
//! * the driver stand-in killed (SIGKILL) three times in a row under UDP probes and one long TCP
//!   echo connection, restarted by the runner: it reconnects through virt_rx and virt_tx
//!   (`uio_driver::driver::connect`), the network answers again, the TCP transfer completes with
//!   verified data, every buffer is accounted for and the resets are counted.
//!
//! Faults of the clients (a hostile client, a killed client) are in `fault_clients.rs`. Each
//! test checks buffer conservation of the pools the good parts of the system own.
mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::frames::{client_macs, ip, malformed_frames, send_raw};
use common::system::{
    assert_buffers_accounted, counters, delta, echo_check, echo_check_at, exclusive, pd_pid, ping,
    Running, ALL_UP, BOTH_CLIENTS,
};
use netvm::demo::lan;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn malformed_frames_are_dropped_and_counted_while_good_traffic_is_echoed() {
    let Some(_one) = exclusive("malformed-frame flood") else {
        return;
    };
    let sys = Running::echo_system(
        "nvf",
        &[
            "--echo-ips".as_ref(),
            BOTH_CLIENTS.as_ref(),
            "--on-fault".as_ref(),
            "continue".as_ref(),
        ],
        &ALL_UP,
    );
    let peer = sys.peer();
    // Let giants through the veth pair so that the driver is the one to drop them.
    ip(&["-n", &sys.lan.sys, "link", "set", "sys0", "mtu", "9000"]);
    ip(&["-n", &peer, "link", "set", "peer0", "mtu", "9000"]);
    assert!(ping(&peer, lan::CLIENTS[0]));
    let view = sys.view();
    let pds = ["vmm", "net_virt_rx", "client0_net_copier", "client0"];
    let before: Vec<_> = pds.iter().map(|pd| counters(&view, pd)).collect();

    let flood = malformed_frames(client_macs()[0], 2000);
    let sender = {
        let (peer, frames) = (peer.clone(), flood.frames.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            send_raw(&peer, "peer0", &frames);
            start.elapsed()
        })
    };
    let (received, bad) = echo_check_at(&peer, lan::CLIENTS[0], "udp", "100M", "3s");
    let took = sender.join().expect("sender");
    eprintln!(
        "{} malformed frames in {took:?} ({:.0}/s) during UDP echo at 100 Mb/s: received {received} b/s",
        flood.frames.len(),
        flood.frames.len() as f64 / took.as_secs_f64()
    );
    assert_eq!(bad, 0, "corrupted or unexpected echoes");
    assert!(received > 95_000_000, "good traffic: {received} b/s");
    let (tcp, tcp_bad) = echo_check(&peer, lan::CLIENTS[0], "tcp");
    assert!(
        tcp > 10_000_000 && tcp_bad == 0,
        "TCP after the flood: {tcp} b/s, {tcp_bad} bad"
    );

    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<_> = pds.iter().map(|pd| counters(&view, pd)).collect();
    let d = |i: usize, name: &str| delta(&before[i], &after[i], name);
    // The kernel drops frames when the driver's packet ring is full; the driver publishes
    // that count too, so every frame below is accounted for.
    let ring = d(0, "nic.rx_ring_drops");
    // A giant is dropped by the driver as oversize, or as truncated when the packet ring's
    // frame could not even hold it.
    let giants = d(0, "driver.rx_drop_oversize") + d(0, "driver.rx_drop_truncated");
    assert!(
        giants <= flood.oversize && giants + ring >= flood.oversize,
        "{} giants sent, {giants} dropped by the driver, {ring} by the packet ring",
        flood.oversize
    );
    let unmatched = d(1, "driver.unmatched");
    assert!(
        unmatched <= flood.unmatched && unmatched + ring >= flood.unmatched,
        "{} frames to nobody's MAC sent, {unmatched} returned by virt_rx, {ring} dropped by the ring",
        flood.unmatched
    );
    // Along client 0's path nothing disappears uncounted: what virt_rx delivered, the copier
    // copied, refused or dropped (counted) when the flood outran the client's free buffers...
    assert_eq!(d(1, "client0.dropped_full"), 0);
    let dropped = d(2, "copier.dropped_no_buffer");
    assert_eq!(
        d(2, "copier.frames") + dropped + d(2, "copier.bad_frames"),
        d(1, "client0.frames"),
        "copier conservation"
    );
    assert_eq!(
        d(3, "net.rx_frames"),
        d(2, "copier.frames"),
        "client0 took every copied frame"
    );
    // ...and each malformed frame for client 0 was counted as malformed by it, or among the
    // drops before it.
    let malformed = d(3, "net.rx_bad_headers") + d(3, "net.rx_bad_checksums");
    let sent = flood.bad_headers + flood.bad_checksums;
    eprintln!(
        "client0 counted {} bad headers, {} bad checksums; dropped before it: {dropped} by the copier, {ring} by the packet ring",
        d(3, "net.rx_bad_headers"),
        d(3, "net.rx_bad_checksums")
    );
    assert!(
        malformed <= sent && malformed + dropped + ring >= sent,
        "{sent} malformed frames sent, {malformed} counted by client0, {dropped} + {ring} dropped before it"
    );
    sys.assert_console_free_of(&["MON|ERROR", "panicked"]);
    sys.assert_alive(&["vmm", "net_virt_rx", "net_virt_tx", "client0", "client1"]);
    assert_buffers_accounted(&view, "after the flood", &[]);
}

#[test]
fn killing_the_driver_stops_the_system_loudly() {
    let Some(_one) = exclusive("driver kill") else {
        return;
    };
    let mut sys = Running::echo_system(
        "nvk",
        &["--echo-ips".as_ref(), BOTH_CLIENTS.as_ref()],
        &["uio-driver: ready", "client0: echo server up"],
    );
    let run_dir = sys.view().dir().to_owned();
    let driver = sys.pd_pid("vmm").expect("the driver's process");
    kill(Pid::from_raw(driver), Signal::SIGKILL).unwrap();
    sys.wait_line("a report naming the driver", Duration::from_secs(10), |l| {
        l.contains("vmm") && (l.contains("killed") || l.contains("MON|ERROR"))
    });
    // --on-fault stop (the default): the runner tears everything down and exits with 1.
    let deadline = Instant::now() + Duration::from_secs(15);
    while run_dir.exists() {
        assert!(Instant::now() < deadline, "the system did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    for pd in ["net_virt_rx", "client0", "client1"] {
        assert!(pd_pid(&run_dir, pd).is_none(), "{pd} outlived the stop");
    }
}

/// Runs `f` on a thread that has entered network namespace `ns` (sockets made there stay in it
/// and may be used from any thread).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        #[allow(unsafe_code)]
        // SAFETY: setns(2) with an open namespace file and CLONE_NEWNET moves only this thread
        // (which ends after `f`) into that network namespace; no memory is involved.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// The byte at `pos` of the TCP stream (251 is prime: a lost, doubled or reordered chunk shows).
fn pattern(pos: u64) -> u8 {
    (pos % 251) as u8
}

/// UDP datagrams sent every millisecond: when each was sent and when its echo came back.
#[derive(Default)]
struct Probes {
    sent: Vec<Instant>,
    answered: Vec<Option<Instant>>,
}

impl Probes {
    /// The first answer to a probe sent after `t`.
    fn first_answer_after(&self, t: Instant) -> Option<(usize, Instant)> {
        let from = self.sent.iter().position(|&s| s >= t)?;
        (from..self.sent.len()).find_map(|i| self.answered[i].map(|a| (i, a)))
    }
}

#[test]
fn a_killed_driver_is_restarted_and_the_network_answers_again_tcp_included() {
    let Some(_one) = exclusive("driver restart") else {
        return;
    };
    let mut sys = Running::restarting("nvdr");
    let peer = sys.peer();
    assert!(ping(&peer, lan::CLIENTS[0]));
    let view = sys.view();
    let pds = ["net_virt_rx", "net_virt_tx"];
    let start: Vec<_> = pds.iter().map(|pd| counters(&view, pd)).collect();
    let target = lan::CLIENTS[0];
    let (udp, tcp) = in_netns(&peer, move || {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.connect((target, netvm::bench::UDP_ECHO_PORT)).unwrap();
        let tcp = TcpStream::connect((target, netvm::bench::TCP_ECHO_PORT)).unwrap();
        (udp, tcp)
    });
    let paused = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let stop_listening = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let probes = Arc::new(Mutex::new(Probes::default()));

    // UDP: one probe per millisecond, each carrying its number.
    udp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let udp_rx = udp.try_clone().unwrap();
    let udp_sender = {
        let (paused, finished, probes) = (paused.clone(), finished.clone(), probes.clone());
        std::thread::spawn(move || {
            while !finished.load(Ordering::Relaxed) {
                if !paused.load(Ordering::Relaxed) {
                    let mut p = probes.lock().unwrap();
                    let seq = p.sent.len() as u64;
                    p.sent.push(Instant::now());
                    p.answered.push(None);
                    drop(p);
                    let mut msg = [0u8; 64];
                    msg[..8].copy_from_slice(&seq.to_le_bytes());
                    let _ = udp.send(&msg);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let udp_receiver = {
        let (stop, probes) = (stop_listening.clone(), probes.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = udp_rx.recv(&mut buf) {
                    let at = Instant::now();
                    if n == 64 {
                        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                        let mut p = probes.lock().unwrap();
                        if let Some(slot) = p.answered.get_mut(seq) {
                            slot.get_or_insert(at);
                        }
                    }
                }
            }
        })
    };
    // TCP: one connection for the whole test, 8 KiB every 2 ms, every echoed byte checked.
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut tcp_rx = tcp.try_clone().unwrap();
    let tcp_writer = {
        let (paused, finished, written) = (paused.clone(), finished.clone(), written.clone());
        let mut tcp = tcp;
        std::thread::spawn(move || {
            let mut pos = 0u64;
            while !finished.load(Ordering::Relaxed) {
                if !paused.load(Ordering::Relaxed) {
                    let chunk: Vec<u8> = (pos..pos + 8192).map(pattern).collect();
                    tcp.write_all(&chunk).expect("TCP write");
                    pos += 8192;
                    written.store(pos, Ordering::Release);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let read = Arc::new(AtomicU64::new(0));
    let tcp_reader = {
        let read = read.clone();
        std::thread::spawn(move || {
            let (mut pos, mut bad, mut reads) = (0u64, 0u64, Vec::new());
            let mut buf = vec![0u8; 65536];
            loop {
                match tcp_rx.read(&mut buf) {
                    Ok(0) => panic!("the echo server closed the TCP connection at byte {pos}"),
                    Ok(n) => {
                        for (k, b) in buf[..n].iter().enumerate() {
                            bad += u64::from(*b != pattern(pos + k as u64));
                        }
                        pos += n as u64;
                        reads.push(Instant::now());
                        read.store(pos, Ordering::Release);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => panic!("TCP read at byte {pos}: {e}"),
                }
                if read.load(Ordering::Relaxed) == u64::MAX {
                    return (pos, bad, reads);
                }
            }
        })
    };
    // Waits until every byte written has been echoed (the system is then idle but for probes).
    let echoed_all = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while read.load(Ordering::Acquire) < written.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "TCP echo stalled {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    let (mut recoveries, mut kills, mut pauses) = (Vec::new(), Vec::new(), Vec::new());
    for episode in 1..=3usize {
        let old = sys.pd_pid("vmm").expect("the driver stand-in runs");
        let killed = Instant::now();
        kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
        kills.push(killed);
        sys.wait_for(
            &format!("MON|INFO: PD 'vmm' restarted ({episode} of 3)"),
            Duration::from_secs(10),
        );
        sys.wait_count("uio-driver: reconnected", episode, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        let answered = loop {
            if let Some(a) = probes.lock().unwrap().first_answer_after(killed) {
                break a.1;
            }
            assert!(
                Instant::now() < deadline,
                "no UDP echo after restart {episode}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        recoveries.push(answered - killed);
        assert_ne!(sys.pd_pid("vmm"), Some(old), "a new driver process");
        echoed_all(&format!("after restart {episode}"));
        // Idle for the accounting: no probes, the TCP stream caught up.
        pauses.push(Instant::now());
        paused.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        echoed_all(&format!("after restart {episode}, paused"));
        assert_buffers_accounted(&view, &format!("after driver restart {episode}"), &[]);
        let now: Vec<_> = pds.iter().map(|pd| counters(&view, pd)).collect();
        let d = |i: usize, name: &str| delta(&start[i], &now[i], name);
        assert_eq!(
            d(0, "driver.resets"),
            episode as u64,
            "virt_rx driver resets"
        );
        assert_eq!(
            d(1, "driver.resets"),
            episode as u64,
            "virt_tx driver resets"
        );
        for (i, pd) in pds.iter().enumerate() {
            for c in ["bad_reset_requests", "peer_misbehaviour"] {
                assert_eq!(d(i, &format!("driver.{c}")), 0, "{pd} driver.{c}");
            }
        }
        assert_eq!(d(0, "driver.bad_descriptors"), 0, "virt_rx bad descriptors");
        assert_eq!(d(1, "driver.bad_completions"), 0, "virt_tx bad completions");
        eprintln!(
            "episode {episode}: driver killed, first UDP echo again after {:?}; so far \
             virt_rx reset_dropped {}, virt_tx driver_reset_dropped {} (client0) {} (client1)",
            recoveries[episode - 1],
            d(0, "driver.reset_dropped"),
            d(1, "client0.driver_reset_dropped"),
            d(1, "client1.driver_reset_dropped"),
        );
        paused.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
    }
    finished.store(true, Ordering::Relaxed);
    udp_sender.join().unwrap();
    // The last probes' echoes are on their way.
    std::thread::sleep(Duration::from_millis(200));
    stop_listening.store(true, Ordering::Relaxed);
    udp_receiver.join().unwrap();
    tcp_writer.join().unwrap();
    echoed_all("at the end");
    read.store(u64::MAX, Ordering::Release);
    let (total, bad, reads) = tcp_reader.join().unwrap();
    assert_eq!(bad, 0, "corrupted TCP bytes");
    assert_eq!(total, written.load(Ordering::Acquire), "TCP bytes echoed");
    assert_buffers_accounted(&view, "at the end", &[]);

    // What the client side saw: for each kill, the longest gap between TCP reads that ended
    // after it (and before the pause for the accounting), the UDP probes sent between the
    // kill and the first echo again that went unanswered, and those unanswered in the whole
    // episode (from 10 ms before the kill, for probes in flight, to the pause).
    let probes = probes.lock().unwrap();
    let mut report = Vec::new();
    let mut in_episodes = 0;
    for (k, (&t, &until)) in kills.iter().zip(&pauses).enumerate() {
        let from = probes.sent.iter().position(|&s| s >= t).unwrap();
        let (first, at) = probes.first_answer_after(t).unwrap();
        let lost = (from..first)
            .filter(|&i| probes.answered[i].is_none())
            .count();
        let window = t - Duration::from_millis(10)..until;
        let lost_episode = (0..probes.sent.len())
            .filter(|&i| window.contains(&probes.sent[i]) && probes.answered[i].is_none())
            .count();
        in_episodes += lost_episode;
        let stall = reads
            .windows(2)
            .filter(|w| w[1] > t && w[1] <= until)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        report.push((at - t, lost, stall));
        eprintln!(
            "kill {}: first UDP echo after {:?}, {lost} UDP probes (1 per ms) lost before it, \
             {lost_episode} in the episode; TCP stall {stall:?}",
            k + 1,
            at - t
        );
    }
    let lost_total: usize = probes.answered.iter().filter(|a| a.is_none()).count();
    recoveries.sort_unstable();
    let mut stalls: Vec<_> = report.iter().map(|r| r.2).collect();
    stalls.sort_unstable();
    eprintln!(
        "driver restart: kill to first echoed frame, median of 3: {:?}; TCP stall median {:?}, \
         max {:?}; {total} TCP bytes verified; UDP probes {} sent, {lost_total} unanswered \
         ({in_episodes} in the episodes)",
        recoveries[1],
        stalls[1],
        stalls[2],
        probes.sent.len()
    );
    sys.assert_console_free_of(&["panicked"]);
    sys.assert_alive(&["vmm", "net_virt_rx", "net_virt_tx", "client0", "client1"]);
}
