//! `netvm lan`: its arguments and handler.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use netvm::lan::{LanOptions, SwitchKind};

/// `--switch`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SwitchArg {
    /// VDE's vde_switch (Debian vde2), as a hub.
    Vde,
    /// A Linux bridge in a private network namespace, as a hub.
    Bridge,
}

#[derive(clap::Args)]
pub(crate) struct LanArgs {
    /// How many nodes (ids 0..N; node n's clients are 10.0.n.10 and 10.0.n.11).
    #[arg(long)]
    nodes: u16,
    /// seL4 images on QEMU (one built per node with make) instead of host-mode systems.
    #[arg(long)]
    sel4: bool,
    /// Only the first K nodes are seL4 images on QEMU, the others host-mode systems (one LAN
    /// of both).
    #[arg(long, value_name = "K", conflicts_with = "sel4")]
    sel4_nodes: Option<u16>,
    /// The switch [default: vde where vde_switch is installed, else bridge].
    #[arg(long, value_enum)]
    switch: Option<SwitchArg>,
    /// Where the pcap, logs and per-node builds go.
    #[arg(long, default_value = "build/lan")]
    out: PathBuf,
    /// Sampling time of each host -> node measurement.
    #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "2s")]
    duration: Duration,
    /// Requested UDP rate of each host -> node measurement [default: 100M, 10M with seL4 nodes].
    #[arg(long)]
    rate: Option<String>,
    /// The switch's capture [default: <out>/switch.pcap].
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// The system description (host mode).
    #[arg(long, default_value = "system.xml")]
    system: PathBuf,
    /// The netvm checkout whose Makefile builds and boots the seL4 images.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// The seL4 images' MICROKIT_CONFIG.
    #[arg(long, default_value = "release")]
    microkit_config: String,
    /// Node to node: UDP echo requests each originating client sends each peer per round,
    /// <count>x<size>@<rate per second>.
    #[arg(long, value_name = "COUNTxSIZE@RATE", default_value = "32x256@1000")]
    peer_udp: String,
    /// Node to node: bytes of one TCP echo stream to each peer per round (0: no TCP).
    #[arg(long, value_name = "BYTES", default_value = "16384")]
    peer_tcp: String,
    /// Node to node: the round period, ms.
    #[arg(long, value_name = "MS", default_value = "1000")]
    peer_period: String,
    /// Also client1 -> client0 of its own node in every node: a client-to-client echo inside
    /// one system (local delivery, never on the LAN), the table's diagonal.
    #[arg(long)]
    in_system: bool,
    /// Node to node: rounds counted once every node is up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    peer_rounds: u32,
}

/// `netvm lan`: runs the LAN, prints the table and the capture's frame counts.
pub(crate) fn run_lan(a: LanArgs) -> ExitCode {
    let rate = a.rate.clone().unwrap_or_else(|| {
        if a.sel4 || a.sel4_nodes.is_some_and(|k| k > 0) {
            "10M"
        } else {
            "100M"
        }
        .into()
    });
    let rate = match netvm::bench::parse_rates(&rate).as_deref() {
        Ok([rate]) => *rate,
        Ok(_) => {
            tracing::error!("netvm lan: --rate takes one rate, not {rate:?}");
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::error!("netvm lan: --rate: {e}");
            return ExitCode::from(2);
        }
    };
    let peer_load = match netvm::lan::parse_load(&a.peer_udp, &a.peer_tcp, &a.peer_period) {
        Ok(load) => load,
        Err(e) => {
            tracing::error!("netvm lan: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = LanOptions {
        nodes: a.nodes,
        sel4_nodes: if a.sel4 {
            a.nodes
        } else {
            a.sel4_nodes.unwrap_or(0)
        },
        switch: a.switch.map(|s| match s {
            SwitchArg::Vde => SwitchKind::Vde,
            SwitchArg::Bridge => SwitchKind::Bridge,
        }),
        out_dir: a.out,
        pcap: a.pcap,
        duration: a.duration,
        rate,
        system: a.system,
        workspace: std::path::absolute(&a.workspace).unwrap_or(a.workspace),
        microkit_config: a.microkit_config,
        peer_load,
        peer_rounds: a.peer_rounds,
        in_system: a.in_system,
    };
    if let Err(e) = netvm::lan::check_options(&opts) {
        tracing::error!("netvm lan: {e}");
        return ExitCode::from(2);
    }
    match netvm::lan::run(&opts) {
        Ok(report) => {
            println!("{}", report.render());
            if report.unreached == 0 && report.msg_failures.is_empty() {
                return ExitCode::SUCCESS;
            }
            if report.unreached > 0 {
                tracing::error!(
                    "netvm lan: {} pairs of nodes did not reach each other (NOT REACHED above)",
                    report.unreached
                );
            }
            if !report.msg_failures.is_empty() {
                tracing::error!(
                    "netvm lan: node messages failed ({} problems, listed under the messages table)",
                    report.msg_failures.len()
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("netvm lan: {e}");
            ExitCode::FAILURE
        }
    }
}
