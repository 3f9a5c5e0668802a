//! `netvm demo`: its arguments and handler.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{demo_prologue, PointArgs};

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// The system description.
    #[arg(long, default_value = "system.xml")]
    system: PathBuf,
    /// The client MAC list.
    #[arg(long, default_value = "system.macs")]
    macs: PathBuf,
    /// Where CSV and SVG files go.
    #[arg(long, default_value = "build/demo")]
    out: PathBuf,
    /// UDP (1472 B) requested rates.
    #[arg(long, default_value = "100M,500M,1G,1500M")]
    udp_rates: String,
    /// TCP (1460 B) requested rates; empty for none.
    #[arg(long, default_value = "500M,2G")]
    tcp_rates: String,
    #[command(flatten)]
    points: PointArgs,
    /// Where the echo side and the load generator run: `split` gives the system (and the kernel
    /// echo, in its turn) half of the CPUs and the load generator the other half, as ipbench's
    /// load generators run on machines of their own; `shared` lets them compete.
    #[arg(long, value_enum, default_value_t = netvm::demo::CpuPlacement::Split)]
    cpus: netvm::demo::CpuPlacement,
    /// Capture every frame the virtualisers pass into DIR (see `netvm run --pcap`).
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
}

/// `netvm demo`: runs the demo and prints its counters and table.
pub(crate) fn run_demo(a: DemoArgs) -> ExitCode {
    let sweep = match demo_prologue("demo", &a.out, (&a.udp_rates, &a.tcp_rates), &a.points) {
        Ok(sweep) => sweep,
        Err(code) => return code,
    };
    let opts = netvm::demo::DemoOptions {
        system: a.system,
        macs: a.macs,
        out_dir: a.out,
        sweep,
        pcap: a.pcap,
        cpus: a.cpus,
    };
    match netvm::demo::run(&opts) {
        Ok(summary) => {
            println!("\ncounters after the last point:\n{}", summary.counters);
            println!("{}", summary.cpus);
            println!("{}", summary.table());
            println!("CSV and SVG files: {}", opts.out_dir.display());
            if let Some(dir) = &opts.pcap {
                println!("pcap files: {}", dir.display());
            }
            if summary.buffers_accounted {
                ExitCode::SUCCESS
            } else {
                tracing::error!("netvm demo: sDDF buffers missing from every queue after the run (see the pools above)");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            tracing::error!("netvm demo: {e}");
            ExitCode::FAILURE
        }
    }
}
