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
    /// The switch [default: vde where vde_switch is installed, else bridge].
    #[arg(long, value_enum)]
    switch: Option<SwitchArg>,
    /// Where the pcap, logs and per-node builds go.
    #[arg(long, default_value = "build/lan")]
    out: PathBuf,
    /// Sampling time of each host -> node measurement.
    #[arg(long, value_parser = netvm::bench::parse_duration, default_value = "2s")]
    duration: Duration,
    /// Requested UDP rate of each host -> node measurement [default: 100M, 10M with --sel4].
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
}

/// `netvm lan`: runs the LAN, prints the table and the capture's frame counts.
pub(crate) fn run_lan(a: LanArgs) -> ExitCode {
    let rate = a
        .rate
        .clone()
        .unwrap_or_else(|| if a.sel4 { "10M" } else { "100M" }.into());
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
    let opts = LanOptions {
        nodes: a.nodes,
        sel4: a.sel4,
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
    };
    if let Err(e) = netvm::lan::check_options(&opts) {
        tracing::error!("netvm lan: {e}");
        return ExitCode::from(2);
    }
    match netvm::lan::run(&opts) {
        Ok(report) => {
            println!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("netvm lan: {e}");
            ExitCode::FAILURE
        }
    }
}
