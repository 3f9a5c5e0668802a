//! `netvm kernel-echo`: its arguments and handler.

use std::net::IpAddr;
use std::process::ExitCode;

use netvm::bench;
use netvm::kernel_echo::EchoConfig;

#[derive(clap::Args)]
pub(crate) struct EchoArgs {
    /// Address to bind.
    #[arg(long)]
    bind: IpAddr,
    /// UDP echo port.
    #[arg(long, default_value_t = bench::UDP_ECHO_PORT)]
    udp_port: u16,
    /// TCP echo port.
    #[arg(long, default_value_t = bench::TCP_ECHO_PORT)]
    tcp_port: u16,
    /// Also serve the ipbench utilisation daemon (idle/total from /proc/stat) on this port.
    #[arg(long)]
    util_port: Option<u16>,
}

pub(crate) fn run_echo(a: EchoArgs) -> ExitCode {
    let cfg = EchoConfig {
        bind: a.bind,
        udp_port: a.udp_port,
        tcp_port: a.tcp_port,
        util_port: a.util_port,
    };
    match netvm::kernel_echo::serve_until_signalled(cfg, "netvm kernel-echo") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
