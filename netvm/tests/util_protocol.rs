//! The utilisation client against a scripted `cpu_target_lukem` server: byte-exact transcript,
//! and clear errors for malformed replies. Also the kernel echo's own daemon end to end.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use netvm::kernel_echo::{EchoConfig, EchoServer};
use netvm::util_proto::{UtilClient, UtilError, Utilisation};

const TIMEOUT: Duration = Duration::from_secs(5);

/// One scripted step: read exactly `expect` from the client (if any), then send `reply`.
struct Step {
    expect: &'static [u8],
    reply: &'static [u8],
}

/// Serves one connection following `script`; returns every byte the client sent.
fn scripted(script: Vec<Step>) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        c.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut got = Vec::new();
        for step in script {
            let mut buf = vec![0u8; step.expect.len()];
            if c.read_exact(&mut buf).is_err() {
                break;
            }
            got.extend_from_slice(&buf);
            if c.write_all(step.reply).is_err() {
                break;
            }
        }
        // Half-close like the sDDF daemon after its data, then collect anything else the client
        // sends until it closes.
        let _ = c.shutdown(Shutdown::Write);
        let _ = c.read_to_end(&mut got);
        got
    });
    (addr, h)
}

fn good_script(stop_reply: &'static [u8]) -> Vec<Step> {
    vec![
        Step {
            expect: b"",
            reply: b"100 IPBENCH V1.0\n",
        },
        Step {
            expect: b"HELLO\n",
            reply: b"200 OK (Ready to go)\n",
        },
        Step {
            expect: b"LOAD cpu_target_lukem\n",
            reply: b"200 OK\n",
        },
        Step {
            expect: b"SETUP args::\"\"\n",
            reply: b"200 OK\n",
        },
        Step {
            expect: b"START\n",
            reply: b"",
        },
        Step {
            expect: b"STOP\n",
            reply: stop_reply,
        },
    ]
}

#[test]
fn transcript_is_byte_exact_and_data_parsed() {
    // Content-length 12 counts ",1234,56789" (11 bytes) plus the trailing NUL.
    let (addr, server) = scripted(good_script(
        b"220 VALID DATA (Data to follow)\nContent-length: 12\n,1234,56789\0",
    ));
    let mut c = UtilClient::connect(addr, TIMEOUT).expect("connect");
    c.start().expect("start");
    let u = c.stop().expect("stop");
    assert_eq!(
        u,
        Utilisation {
            idle: 1234,
            total: 56789
        }
    );
    let sent = server.join().expect("server");
    assert_eq!(
        sent,
        b"HELLO\nLOAD cpu_target_lukem\nSETUP args::\"\"\nSTART\nSTOP\n".to_vec()
    );
}

fn stop_error(stop_reply: &'static [u8]) -> String {
    let (addr, server) = scripted(good_script(stop_reply));
    let mut c = UtilClient::connect(addr, TIMEOUT).expect("connect");
    c.start().expect("start");
    let e = c.stop().expect_err("malformed reply accepted");
    let _ = server.join();
    e.to_string()
}

#[test]
fn malformed_stop_replies_are_rejected_with_step_and_bytes() {
    let e = stop_error(b"400 ERROR\n");
    assert!(e.contains("step STOP") && e.contains("400 ERROR\\n"), "{e}");
    // Missing NUL: Content-length 11 covers only ",1234,56789".
    let e = stop_error(b"220 VALID DATA (Data to follow)\nContent-length: 11\n,1234,56789");
    assert!(e.contains("step data") && e.contains(",1234,56789"), "{e}");
    // Content-length larger than what arrives before the server closes.
    let e = stop_error(b"220 VALID DATA (Data to follow)\nContent-length: 20\n,1,2\0");
    assert!(e.contains("step data") && e.contains("20 bytes"), "{e}");
    let e = stop_error(b"220 VALID DATA (Data to follow)\nContent-Length: 5\n,1,2\0");
    assert!(
        e.contains("step Content-length") && e.contains("Content-Length: 5"),
        "{e}"
    );
    let e = stop_error(b"220 VALID DATA (Data to follow)\nContent-length: 6\n,1;2x\0");
    assert!(e.contains("step data"), "{e}");
}

#[test]
fn malformed_greeting_and_handshake_are_rejected() {
    let (addr, _server) = scripted(vec![Step {
        expect: b"",
        reply: b"100 IPBENCH V2.0\n",
    }]);
    let e = UtilClient::connect(addr, TIMEOUT)
        .err()
        .expect("bad greeting accepted");
    assert!(
        matches!(
            e,
            UtilError::Unexpected {
                step: "greeting",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("100 IPBENCH V2.0\\n"), "{e}");

    // The good greeting and HELLO, then an error for LOAD.
    let mut script = good_script(b"");
    script.truncate(3);
    assert_eq!(script[2].expect, b"LOAD cpu_target_lukem\n");
    script[2].reply = b"400 ERROR\n";
    let (addr, _server) = scripted(script);
    let e = UtilClient::connect(addr, TIMEOUT)
        .err()
        .expect("bad LOAD reply accepted");
    assert!(
        e.to_string().contains("step LOAD") && e.to_string().contains("400 ERROR"),
        "{e}"
    );
}

#[test]
fn kernel_echo_daemon_reports_proc_stat_ticks() {
    let server = EchoServer::start(EchoConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp_port: 0,
        tcp_port: 0,
        util_port: Some(0),
    })
    .expect("start");
    let addr = server.util_addr().expect("util addr");
    let mut c = UtilClient::connect(addr, TIMEOUT).expect("connect");
    c.start().expect("start");
    // /proc/stat advances in USER_HZ ticks (10 ms); wait long enough for several.
    std::thread::sleep(Duration::from_millis(300));
    let u = c.stop().expect("stop");
    assert!(u.total > 0 && u.idle <= u.total, "{u:?}");
    // Sessions are served one after another.
    let c2 = UtilClient::connect(addr, TIMEOUT).expect("second session");
    drop(c2);
    server.stop().expect("stop");
}
