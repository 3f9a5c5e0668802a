//! The `netvm` binary: `kernel-echo` as a subprocess stopped by SIGTERM, `bench` printing the
//! CSV and writing the CSV and SVG files, and `stats` without a system (or QEMU) to look at.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const NETVM: &str = env!("CARGO_BIN_EXE_netvm");

/// Ports free at the time of asking (the kernel echo binds them right after).
fn free_ports() -> (u16, u16, u16) {
    let u = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp");
    let t = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("tcp");
    let x = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("util");
    (
        u.local_addr().expect("a").port(),
        t.local_addr().expect("a").port(),
        x.local_addr().expect("a").port(),
    )
}

fn wait_for_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "kernel-echo did not come up on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `netvm kernel-echo` on 127.0.0.1 at these ports (no utilisation daemon without `util`),
/// once it accepts TCP.
fn kernel_echo(udp: u16, tcp: u16, util: Option<u16>) -> std::process::Child {
    let mut cmd = Command::new(NETVM);
    cmd.args(["kernel-echo", "--bind", "127.0.0.1"]).args([
        "--udp-port",
        &udp.to_string(),
        "--tcp-port",
        &tcp.to_string(),
    ]);
    if let Some(util) = util {
        cmd.args(["--util-port", &util.to_string()]);
    }
    let echo = cmd
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kernel-echo");
    wait_for_tcp(tcp);
    echo
}

#[test]
fn bench_cli_against_kernel_echo_subprocess() {
    let (udp, tcp, util) = free_ports();
    let mut echo = kernel_echo(udp, tcp, Some(util));
    let dir = std::env::temp_dir().join(format!("netvm-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (csv_path, svg_path) = (dir.join("out.csv"), dir.join("out.svg"));
    let counts_path = dir.join("counts.csv");
    let out = Command::new(NETVM)
        .args([
            "bench",
            "--target",
            "127.0.0.1",
            "--udp-port",
            &udp.to_string(),
            "--util-port",
            &util.to_string(),
        ])
        .args([
            "--proto",
            "udp",
            "--size",
            "512",
            "--rates",
            "2M,8M",
            "--warmup",
            "200ms",
            "--duration",
            "500ms",
        ])
        .args(["--cooldown", "100ms", "--flows", "2", "--quiet"])
        .arg("--csv")
        .arg(&csv_path)
        .arg("--svg")
        .arg(&svg_path)
        .arg("--counts")
        .arg(&counts_path)
        .output()
        .expect("run bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], netvm::bench::csv::HEADER);
    for (line, rate) in lines[1..].iter().zip(["2000000", "8000000"]) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 12, "{line}");
        assert_eq!(cols[0], rate);
        assert_eq!(cols[3], "512");
        assert_eq!(cols[9], "0", "bad packets: {line}");
        assert!(
            cols[7]
                .split_once('.')
                .is_some_and(|(_, frac)| frac.len() == 2),
            "stdev not %.2f: {line}"
        );
        let total: u64 = cols[11].parse().expect("total");
        assert!(total > 0, "no utilisation ticks: {line}");
    }
    assert_eq!(std::fs::read_to_string(&csv_path).expect("csv"), stdout);
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("median and p99"));
    // The counts behind each row: every packet sent came back on loopback.
    let counts = std::fs::read_to_string(&counts_path).expect("counts");
    let rows: Vec<Vec<u64>> = counts
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().expect("number")).collect())
        .collect();
    assert_eq!(counts.lines().next(), Some(netvm::bench::COUNTS_HEADER));
    assert_eq!(rows.len(), 2, "{counts}");
    for (row, rate) in rows.iter().zip([2_000_000, 8_000_000]) {
        assert_eq!(row[0], rate);
        assert!(row[1] > 100, "sent packets: {counts}");
        assert_eq!((row[2], row[4]), (0, 0), "lost or bad: {counts}");
        assert_eq!(row.len(), 7, "{counts}");
        // 2 and 8 Mb/s are far below what the bench sends on loopback.
        assert_eq!(row[6], 0, "marked generator-limited: {counts}");
    }
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("generator ceiling: sends "), "{said}");
    assert!(said.contains("p99 RTT "), "{said}");

    kill(Pid::from_raw(echo.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = echo.try_wait().expect("wait") {
            assert!(status.success(), "kernel-echo exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "kernel-echo ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_cli_takes_utilisation_from_the_echo_process() {
    // --util-pids instead of the daemon: the kernel echo's own CPU time over sampling.
    let (udp, tcp, _) = free_ports();
    let mut echo = kernel_echo(udp, tcp, None);
    let out = Command::new(NETVM)
        .args([
            "bench",
            "--target",
            "127.0.0.1",
            "--udp-port",
            &udp.to_string(),
        ])
        .args(["--util-pids", &echo.id().to_string(), "--no-calibrate"])
        .args(["--size", "1472", "--rates", "100M", "--warmup", "200ms"])
        .args(["--duration", "1s", "--cooldown", "100ms", "--quiet"])
        .output()
        .expect("run bench");
    let _ = echo.kill();
    let _ = echo.wait();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("generator ceiling"), "{said}");
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let row = netvm::bench::csv::Row::parse(stdout.lines().nth(1).expect("row")).expect("row");
    // Total = 1 s × CPUs in USER_HZ ticks; the echo used some of it, not all.
    assert!(
        row.total_cycles >= 50 && row.idle_cycles < row.total_cycles,
        "{row:?}"
    );
    // --util-pids and --no-util contradict each other.
    let out = Command::new(NETVM)
        .args(["bench", "--target", "127.0.0.1", "--rates", "1M"])
        .args(["--util-pids", "1", "--no-util"])
        .output()
        .expect("run");
    assert!(!out.status.success());
}

#[test]
fn bench_cli_rejects_bad_arguments() {
    let out = Command::new(NETVM)
        .args(["bench", "--target", "127.0.0.1", "--rates", "10Q"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid rate"));
    let out = Command::new(NETVM)
        .args([
            "bench",
            "--target",
            "127.0.0.1",
            "--rates",
            "1M",
            "--samples",
            "5",
            "--duration",
            "1s",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success(), "--samples with --duration accepted");
}

/// `netvm stats <flag> <dir>`.
fn stats(flag: &str, dir: &std::path::Path) -> std::process::Output {
    Command::new(NETVM)
        .args(["stats", flag])
        .arg(dir)
        .output()
        .expect("run")
}

#[test]
fn stats_without_a_running_system_says_so() {
    let empty = std::env::temp_dir().join(format!("netvm-cli-stats-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = stats("--shm-dir", &empty);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running netvm system under"), "{err}");
    // A run directory without the runner's index is named, not a panic.
    let out = stats("--run-dir", &empty);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("regions"), "{err}");
    std::fs::remove_dir_all(&empty).ok();
}

#[test]
fn stats_from_a_missing_qmp_socket_is_a_clear_error() {
    let socket = std::env::temp_dir().join(format!("netvm-cli-no-qmp-{}.sock", std::process::id()));
    let out = Command::new(NETVM)
        .args(["stats", "--qmp"])
        .arg(&socket)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to QEMU's QMP socket")
            && err.contains(&*socket.to_string_lossy()),
        "{err}"
    );
    assert!(err.contains("-qmp unix:"), "says how to get one: {err}");
    // --ram-size is checked before anything is connected to.
    let out = Command::new(NETVM)
        .args(["stats", "--qmp"])
        .arg(&socket)
        .args(["--ram-size", "lots"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ram-size"));
}

/// `netvm demo` checks that it can write its CSV/SVG folder before it builds anything: a folder
/// that cannot be created (here under /proc, which not even root can write) is named at once.
#[test]
fn demo_checks_its_output_folder_up_front() {
    let started = Instant::now();
    let out = Command::new(NETVM)
        .args(["demo", "--out", "/proc/netvm-demo-out"])
        .output()
        .expect("netvm demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create /proc/netvm-demo-out") && stderr.contains("--out"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "it failed late");
}
