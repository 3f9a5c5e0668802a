//! End-to-end on loopback: the kernel echo server on random free ports, the benchmark library
//! in-process against it, and deliberately broken echo servers that the benchmark must catch.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netvm::bench::{self, payload, BenchConfig, PointResult, Proto, SampleStop};
use netvm::kernel_echo::{EchoConfig, EchoServer};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn echo_server() -> EchoServer {
    EchoServer::start(EchoConfig {
        bind: LOCALHOST,
        udp_port: 0,
        tcp_port: 0,
        util_port: Some(0),
    })
    .expect("start kernel echo")
}

/// A short point: 200 ms warm-up, 1 s sampling, 200 ms cool-down, at `pps` packets/s in total.
fn short_config(proto: Proto, size: usize, pps: u64, flows: u32) -> (BenchConfig, u64) {
    let rate = pps * 8 * size as u64;
    let mut cfg = BenchConfig::new(LOCALHOST, proto, vec![rate]);
    cfg.size = size;
    cfg.flows = flows;
    cfg.util_port = None;
    cfg.warmup = Duration::from_millis(200);
    cfg.stop = SampleStop::Duration(Duration::from_secs(1));
    cfg.cooldown = Duration::from_millis(200);
    (cfg, rate)
}

fn run(cfg: &BenchConfig, rate: u64) -> PointResult {
    let r = bench::run_point(cfg, rate, &mut |_| {}).expect("benchmark point");
    eprintln!("{}", r.summary());
    r
}

fn assert_clean(r: &PointResult) {
    assert_eq!(
        r.row.bad_packets, 0,
        "bad packets against a correct echo: {:?}",
        r.bad
    );
    assert!(r.rtt.count > 100, "too few samples: {}", r.rtt.count);
    let row = &r.row;
    assert!(
        row.min_rtt_us <= row.median_rtt_us && row.median_rtt_us <= row.max_rtt_us,
        "{row:?}"
    );
    assert!(
        row.min_rtt_us <= row.avg_rtt_us && row.avg_rtt_us <= row.max_rtt_us,
        "{row:?}"
    );
    assert!(
        row.median_rtt_us > 0,
        "a loopback RTT of 0 us is implausible: {row:?}"
    );
    assert!(row.max_rtt_us < 5_000_000, "RTT over 5 s: {row:?}");
    assert!(row.receive_bps > 0 && row.send_bps > 0, "{row:?}");
    assert_eq!(r.late, 0);
}

#[test]
fn udp_sizes_1_18_1472_verified_without_bad_packets() {
    let server = echo_server();
    for size in [1usize, 18, 1472] {
        let (mut cfg, rate) = short_config(Proto::Udp, size, 4_000, 4);
        cfg.udp_port = server.udp_addr().port();
        let r = run(&cfg, rate);
        assert_eq!(r.row.packet_size, size as u64);
        assert_clean(&r);
    }
    assert!(server.stats().udp_datagrams.load(Ordering::Relaxed) > 0);
    server.stop().expect("stop");
}

#[test]
fn tcp_1460_four_flows_verified_without_bad_packets() {
    let server = echo_server();
    let (mut cfg, rate) = short_config(Proto::Tcp, 1460, 8_000, 4);
    cfg.tcp_port = server.tcp_addr().port();
    let r = run(&cfg, rate);
    assert_clean(&r);
    assert_eq!(r.loss_percent(), 0.0, "TCP lost messages");
    assert_eq!(server.stats().tcp_connections.load(Ordering::Relaxed), 4);
    server.stop().expect("stop");
}

#[test]
fn samples_mode_stops_at_the_sample_count_and_reports_utilisation() {
    let server = echo_server();
    let (mut cfg, rate) = short_config(Proto::Udp, 200, 5_000, 2);
    cfg.udp_port = server.udp_addr().port();
    cfg.util_port = server.util_addr().map(|a| a.port());
    cfg.stop = SampleStop::Samples(2_000);
    let r = run(&cfg, rate);
    assert!(!r.timed_out);
    assert_eq!(r.rtt.count, 2_000);
    assert!(
        r.row.total_cycles > 0 && r.row.idle_cycles <= r.row.total_cycles,
        "{:?}",
        r.row
    );
    server.stop().expect("stop");
}

#[test]
fn every_udp_payload_size_comes_back_byte_identical() {
    let server = echo_server();
    let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    sock.connect(server.udp_addr()).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut back = vec![0u8; 2048];
    for size in 1..=1472usize {
        let mut p = vec![0u8; size];
        payload::encode(&mut p, 7, size as u64, 1_000 + size as u64);
        sock.send(&p).expect("send");
        let n = sock
            .recv(&mut back)
            .unwrap_or_else(|e| panic!("no echo for size {size}: {e}"));
        assert_eq!(&back[..n], &p[..], "size {size} came back different");
    }
    server.stop().expect("stop");
}

/// How a deliberately broken echo server mangles traffic.
#[derive(Clone, Copy)]
enum Breakage {
    /// Flip one byte of every 10th datagram or TCP chunk.
    FlipByte,
    /// Send every 7th datagram back twice.
    Duplicate,
    /// Echo every 5th datagram one byte short.
    Truncate,
    /// Echo everything, each datagram this long after it arrived.
    Delay(Duration),
    /// Echo everything this long after it arrived, and every 10th datagram a second time,
    /// byte-flipped, twice as late.
    DelayThenCorruptRepeat(Duration),
}

struct BrokenEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl BrokenEcho {
    fn udp(breakage: Breakage) -> BrokenEcho {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        if matches!(
            breakage,
            Breakage::Delay(_) | Breakage::DelayThenCorruptRepeat(_)
        ) {
            sock.set_read_timeout(Some(Duration::from_millis(1)))
                .expect("timeout");
        }
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut count = 0u64;
            // (due, reply, peer), in arrival order per delay.
            let mut delayed = std::collections::VecDeque::new();
            let mut delayed_more = std::collections::VecDeque::new();
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                for queue in [&mut delayed, &mut delayed_more] {
                    while queue.front().is_some_and(|(due, _, _)| *due <= now) {
                        let (_, reply, peer): (Instant, Vec<u8>, SocketAddr) =
                            queue.pop_front().expect("front");
                        let _ = sock.send_to(&reply, peer);
                    }
                }
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                count += 1;
                let mut reply = buf[..n].to_vec();
                let mut copies = 1;
                match breakage {
                    Breakage::Delay(d) => {
                        delayed.push_back((Instant::now() + d, reply, peer));
                        continue;
                    }
                    Breakage::DelayThenCorruptRepeat(d) => {
                        if count.is_multiple_of(10) {
                            let mut bad = reply.clone();
                            bad[n / 2] ^= 0x5A;
                            delayed_more.push_back((Instant::now() + 2 * d, bad, peer));
                        }
                        delayed.push_back((Instant::now() + d, reply, peer));
                        continue;
                    }
                    Breakage::FlipByte if count.is_multiple_of(10) => reply[n / 2] ^= 0x5A,
                    Breakage::Duplicate if count.is_multiple_of(7) => copies = 2,
                    Breakage::Truncate if count.is_multiple_of(5) => {
                        reply.pop();
                    }
                    _ => {}
                }
                for _ in 0..copies {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        BrokenEcho { addr, stop, thread }
    }

    /// A TCP echo that flips a byte in every 10th chunk it reads.
    fn tcp_flipper() -> BrokenEcho {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let flag = flag.clone();
                workers.push(std::thread::spawn(move || {
                    conn.set_nonblocking(false).expect("blocking");
                    conn.set_read_timeout(Some(Duration::from_millis(20)))
                        .expect("timeout");
                    let mut buf = vec![0u8; 8192];
                    let mut count = 0u64;
                    while !flag.load(Ordering::Relaxed) {
                        let n = match conn.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => n,
                            Err(_) => continue,
                        };
                        count += 1;
                        if count.is_multiple_of(10) {
                            buf[n / 2] ^= 0x5A;
                        }
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        BrokenEcho { addr, stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("broken echo thread");
    }
}

fn run_against_broken(proto: Proto, size: usize, echo: &BrokenEcho) -> PointResult {
    let (mut cfg, rate) = short_config(proto, size, 2_000, 2);
    cfg.udp_port = echo.addr.port();
    cfg.tcp_port = echo.addr.port();
    run(&cfg, rate)
}

#[test]
fn byte_flipping_udp_echo_is_caught_at_every_size_class() {
    let echo = BrokenEcho::udp(Breakage::FlipByte);
    for size in [1usize, 18, 1472] {
        let r = run_against_broken(Proto::Udp, size, &echo);
        // A flipped byte in a 1-byte payload is a different sequence number: unknown or
        // duplicate rather than corrupt, but bad all the same.
        assert!(
            r.row.bad_packets > 0,
            "size {size}: flipped bytes not counted: {:?}",
            r.bad
        );
        if size >= 8 {
            assert!(r.bad.corrupt > 0, "size {size}: {:?}", r.bad);
        }
        assert!(r.rtt.count > 0);
    }
    echo.stop();
}

#[test]
fn duplicating_udp_echo_is_caught() {
    let echo = BrokenEcho::udp(Breakage::Duplicate);
    let r = run_against_broken(Proto::Udp, 64, &echo);
    assert!(r.bad.duplicate > 0, "{:?}", r.bad);
    assert_eq!(r.bad.corrupt + r.bad.length, 0, "{:?}", r.bad);
    echo.stop();
}

#[test]
fn truncating_udp_echo_is_caught() {
    let echo = BrokenEcho::udp(Breakage::Truncate);
    let r = run_against_broken(Proto::Udp, 100, &echo);
    assert!(r.bad.length > 0, "{:?}", r.bad);
    echo.stop();
}

#[test]
fn echoes_slower_than_the_old_fixed_drain_are_not_counted_lost() {
    // Every echo comes back 400 ms late: a fixed 200 ms drain would count the last ~200 ms of
    // packets as lost; the drain adapts to the observed RTT instead.
    let echo = BrokenEcho::udp(Breakage::Delay(Duration::from_millis(400)));
    let r = run_against_broken(Proto::Udp, 256, &echo);
    assert!(r.rtt.median_us >= 400_000, "{}", r.summary());
    assert_eq!(
        r.sent,
        r.echoed,
        "late echoes counted lost: {}",
        r.summary()
    );
    assert_eq!(r.row.bad_packets, 0, "{:?}", r.bad);
    assert!(
        r.drain >= Duration::from_millis(200) && r.drain < bench::DRAIN_LIMIT,
        "{:?}",
        r.drain
    );
    echo.stop();
}

#[test]
fn a_sparse_slow_echo_waits_for_twice_the_largest_rtt() {
    // Two packets, 500 ms apart, each echoed 500 ms late: the second echo comes 300 ms after
    // the sender stops and 500 ms after the first echo, later than any fixed 200 ms wait; the
    // drain waits 2 × the largest RTT (1 s) instead.
    let echo = BrokenEcho::udp(Breakage::Delay(Duration::from_millis(500)));
    let (mut cfg, rate) = short_config(Proto::Udp, 64, 2, 1);
    cfg.udp_port = echo.addr.port();
    cfg.warmup = Duration::from_millis(100);
    cfg.cooldown = Duration::from_millis(100);
    let r = run(&cfg, rate);
    assert_eq!(r.sent, 2, "{}", r.summary());
    assert_eq!(
        r.echoed,
        2,
        "the late echo was counted lost: {}",
        r.summary()
    );
    assert!(r.drain >= Duration::from_millis(900), "{:?}", r.drain);
    echo.stop();
}

#[test]
fn a_fast_echo_drains_for_the_minimum_quiet_period() {
    let server = echo_server();
    let (mut cfg, rate) = short_config(Proto::Udp, 64, 2_000, 2);
    cfg.udp_port = server.udp_addr().port();
    let r = run(&cfg, rate);
    assert_eq!(r.sent, r.echoed);
    assert!(
        r.drain >= bench::DRAIN_MIN_QUIET && r.drain < Duration::from_secs(1),
        "{:?}",
        r.drain
    );
    server.stop().expect("stop");
}

#[test]
fn corrupted_echoes_arriving_after_sampling_are_bad_not_echoed() {
    // Each 10th packet also comes back a second time, corrupted, 600 ms after it was sent:
    // after the end of sampling for the last ones, and after the on-time echo for all.
    let echo = BrokenEcho::udp(Breakage::DelayThenCorruptRepeat(Duration::from_millis(300)));
    let r = run_against_broken(Proto::Udp, 256, &echo);
    assert_eq!(r.sent, r.echoed, "{}", r.summary());
    let repeats = r.sent / 10;
    // The corrupted repeats of the last 600 ms of packets arrive during the drain; every one
    // that arrived is counted, and none counts as an echo.
    assert!(
        r.bad.corrupt + r.bad.duplicate >= repeats * 9 / 10,
        "{repeats} corrupted repeats, counted {:?}: {}",
        r.bad,
        r.summary()
    );
    echo.stop();
}

#[test]
fn a_point_above_the_calibrated_ceiling_is_marked() {
    let server = echo_server();
    let (mut cfg, rate) = short_config(Proto::Udp, 512, 2_000, 2);
    cfg.udp_port = server.udp_addr().port();
    let ceiling = bench::calibrate(&cfg, Duration::from_millis(300)).expect("calibrate");
    eprintln!("{ceiling:?}");
    // Loopback with its own kernel echo: at least some Mb/s even on a loaded machine.
    assert!(ceiling.send_bps > rate, "{ceiling:?}");
    cfg.ceiling_bps = Some(ceiling.send_bps);
    let r = run(&cfg, rate);
    assert_eq!(r.generator_limit, 0, "{}", r.summary());
    assert!(r.counts_line().ends_with(",0"), "{}", r.counts_line());
    // The same point against a (pretend) lower ceiling is marked, in the counts and the summary.
    cfg.ceiling_bps = Some(rate / 2);
    let r = run(&cfg, rate);
    assert_eq!(
        r.generator_limit & bench::LIMIT_ABOVE_CEILING,
        bench::LIMIT_ABOVE_CEILING
    );
    assert!(r.counts_line().ends_with(",2"), "{}", r.counts_line());
    assert!(r.summary().contains("GENERATOR-LIMITED"), "{}", r.summary());
    server.stop().expect("stop");
}

#[test]
fn utilisation_from_processes_counts_their_cpu_time() {
    // The bench's own process (this test) is busy sending and receiving: its share is above 0,
    // and the figures are in /proc/stat units over the sampling phase.
    let server = echo_server();
    let (mut cfg, rate) = short_config(Proto::Udp, 1472, 20_000, 2);
    cfg.udp_port = server.udp_addr().port();
    cfg.util_pids = vec![std::process::id()];
    let r = run(&cfg, rate);
    let (idle, total) = (r.row.idle_cycles, r.row.total_cycles);
    assert!(total > 0 && idle < total, "idle {idle} total {total}");
    cfg.util_port = Some(1);
    assert!(bench::run_point(&cfg, rate, &mut |_| {}).is_err());
    // A pid that is not there is an error, not 0% utilisation.
    cfg.util_port = None;
    cfg.util_pids = vec![u32::MAX - 1];
    assert!(bench::run_point(&cfg, rate, &mut |_| {}).is_err());
    server.stop().expect("stop");
}

/// How much of the RTT `netvm bench` reports is its own: the bench at 1000 packets/s (one flow)
/// against the kernel echo on loopback, beside a blocking one-at-a-time UDP ping-pong through the
/// same echo at the same pace (send, then `recv` in the same thread: the kernel's own round trip
/// plus two wake-ups). Not a check (timing on a shared machine): run with
/// `cargo test --release -p netvm --test loopback -- --ignored --nocapture rtt_overhead`.
#[test]
#[ignore = "measurement, not a check: run by hand with --nocapture"]
fn rtt_overhead_of_the_bench_vs_a_blocking_ping_pong() {
    let server = echo_server();
    for size in [64usize, 1472] {
        let (mut cfg, rate) = short_config(Proto::Udp, size, 1_000, 1);
        cfg.udp_port = server.udp_addr().port();
        cfg.stop = SampleStop::Duration(Duration::from_secs(3));
        let r = run(&cfg, rate);

        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        sock.connect(server.udp_addr()).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut p = vec![0u8; size];
        let mut back = vec![0u8; size + 1];
        let mut rtts = Vec::new();
        let start = Instant::now();
        for i in 0..3_000u64 {
            // Same pace as the bench: one packet per millisecond.
            let due = start + Duration::from_millis(i);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            payload::encode(&mut p, 0, i, 0);
            let t0 = Instant::now();
            sock.send(&p).expect("send");
            let n = sock.recv(&mut back).expect("echo");
            rtts.push(t0.elapsed().as_micros() as u64);
            assert_eq!(&back[..n], &p[..]);
        }
        let pp = bench::stats::RttStats::from_samples(&mut rtts);
        eprintln!(
            "size {size}: netvm bench median {} us p99 {} us min {} us; blocking ping-pong median {} us p99 {} us min {} us",
            r.rtt.median_us, r.rtt.p99_us, r.rtt.min_us, pp.median_us, pp.p99_us, pp.min_us
        );
    }
    server.stop().expect("stop");
}

#[test]
fn byte_flipping_tcp_echo_is_caught() {
    let echo = BrokenEcho::tcp_flipper();
    let r = run_against_broken(Proto::Tcp, 1460, &echo);
    assert!(r.bad.corrupt > 0, "{:?}", r.bad);
    echo.stop();
}

#[test]
fn unreachable_target_reports_total_loss_not_success() {
    // Nothing listens on this port: every datagram is lost, and no sample is invented.
    let free = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let (mut cfg, rate) = short_config(Proto::Udp, 64, 1_000, 1);
    cfg.udp_port = port;
    cfg.stop = SampleStop::Duration(Duration::from_millis(300));
    let r = run(&cfg, rate);
    assert_eq!(r.rtt.count, 0);
    assert_eq!(r.row.receive_bps, 0);
    assert!(r.sent > 0 && r.loss_percent() == 100.0);
}

#[test]
fn csv_header_is_exactly_the_sddf_one() {
    assert_eq!(
        bench::csv::HEADER,
        "Requested_Throughput,Receive_Throughput,Send_Throughput,Packet_Size,Minimum_RTT,Average_RTT,Maximum_RTT,Stdev_RTT,Median_RTT,Bad_Packets,Idle_Cycles,Total_Cycles"
    );
}

#[test]
fn rate_lists_parse_with_decimal_suffixes() {
    assert_eq!(
        bench::parse_rates("10M,100M,1G"),
        Ok(vec![10_000_000, 100_000_000, 1_000_000_000])
    );
    assert_eq!(
        bench::parse_rates("500K,2.5M"),
        Ok(vec![500_000, 2_500_000])
    );
    assert!(bench::parse_rates("10M,,1G").is_err());
    assert!(bench::parse_rates("fast").is_err());
}
