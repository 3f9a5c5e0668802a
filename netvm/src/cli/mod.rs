//! The subcommands: each one's clap arguments and handler, and what the demos share.

pub(crate) mod bench;
pub(crate) mod demo;
pub(crate) mod echo;
pub(crate) mod lan;
pub(crate) mod log;
pub(crate) mod node;
pub(crate) mod run;
pub(crate) mod sel4_demo;
pub(crate) mod stats;

use std::process::ExitCode;
use std::time::Duration;

/// How each point of a demo is measured (`netvm demo` and `netvm sel4-demo` alike).
#[derive(clap::Args)]
pub(crate) struct PointArgs {
    /// Warm-up per point.
    #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "1s")]
    pub(crate) warmup: Duration,
    /// Sampling per point.
    #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "4s")]
    pub(crate) duration: Duration,
    /// Cool-down per point.
    #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "1s")]
    pub(crate) cooldown: Duration,
    /// Parallel flows.
    #[arg(long, default_value_t = 4)]
    pub(crate) flows: u32,
}

/// Comma-separated rates, or none for an empty string.
fn parse_rate_list(s: &str) -> Result<Vec<u64>, String> {
    if s.is_empty() {
        Ok(Vec::new())
    } else {
        netvm::bench::parse_rates(s)
    }
}

/// The start both demos share: the output folder checked before anything runs (a folder left
/// by an earlier root run is not writable by a normal user), a re-run in an unprivileged user
/// namespace when not root (`Err` carries the exit status of that run), and the sweep: the rate
/// lists with `points`.
pub(crate) fn demo_prologue(
    what: &str,
    out: &std::path::Path,
    (udp, tcp): (&str, &str),
    points: &PointArgs,
) -> Result<netvm::demo::Sweep, ExitCode> {
    if let Err(e) = netvm::demo::check_writable(out) {
        tracing::error!("netvm {what}: {e}");
        return Err(ExitCode::from(2));
    }
    if !netvm::demo::is_root() {
        if let Some(status) = netvm::demo::run_in_user_namespace() {
            return Err(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ));
        }
    }
    match (parse_rate_list(udp), parse_rate_list(tcp)) {
        (Ok(udp_rates), Ok(tcp_rates)) => Ok(netvm::demo::Sweep {
            udp_rates,
            tcp_rates,
            warmup: points.warmup,
            duration: points.duration,
            cooldown: points.cooldown,
            flows: points.flows,
        }),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("netvm {what}: {e}");
            Err(ExitCode::from(2))
        }
    }
}
