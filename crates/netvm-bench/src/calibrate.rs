//! Calibration: the load generator's own ceiling, measured against a local kernel echo.

use std::net::IpAddr;
use std::time::Duration;

use super::{run_point, BenchConfig, BenchError, SampleStop};

/// Rate requested while calibrating: far above anything the bench can send, so the sender never
/// waits and the achieved rate is its ceiling.
const CALIBRATION_RATE: u64 = 1_000_000_000_000;

/// The load generator's ceiling as [`calibrate`] measured it.
#[derive(Clone, Copy, Debug)]
pub struct Ceiling {
    /// Payload bit/s the sender put out while requesting as much as it can.
    pub send_bps: u64,
    /// Payload bit/s echoed back by the local echo over the same time.
    pub receive_bps: u64,
    /// Median RTT through the local echo at that load, µs.
    pub median_rtt_us: u64,
}

/// Measures the load generator's own ceiling for `cfg`'s protocol, packet size and flow count:
/// one short point against an in-process kernel echo on 127.0.0.1, requesting 1 Tbit/s.
/// The echo shares the machine's cores with the bench, so this is a lower bound of what the
/// bench alone can do; requested rates above it may measure the bench, not the system.
pub fn calibrate(cfg: &BenchConfig, sampling: Duration) -> Result<Ceiling, BenchError> {
    let localhost = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let server = kernel_echo::EchoServer::start(kernel_echo::EchoConfig {
        bind: localhost,
        udp_port: 0,
        tcp_port: 0,
        util_port: None,
    })
    .map_err(|e| BenchError::Config(format!("cannot start the calibration echo: {e}")))?;
    let mut cal = cfg.clone();
    cal.target = localhost;
    cal.udp_port = server.udp_addr().port();
    cal.tcp_port = server.tcp_addr().port();
    cal.util_port = None;
    cal.rates = vec![CALIBRATION_RATE];
    cal.warmup = Duration::from_millis(200);
    cal.stop = SampleStop::Duration(sampling);
    cal.cooldown = Duration::ZERO;
    cal.ceiling_bps = None;
    let r = run_point(&cal, CALIBRATION_RATE, &mut |_| {});
    let _ = server.stop();
    let r = r?;
    Ok(Ceiling {
        send_bps: r.row.send_bps,
        receive_bps: r.row.receive_bps,
        median_rtt_us: r.row.median_rtt_us,
    })
}
