//! `netvm sel4-demo`: its arguments and handler.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{demo_prologue, PointArgs};

#[derive(clap::Args)]
pub(crate) struct Sel4DemoArgs {
    /// The netvm checkout whose Makefile builds and boots the image.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Where CSV, SVG, console logs and the summary go.
    #[arg(long, default_value = "build/sel4-demo")]
    out: PathBuf,
    /// UDP (1472 B) requested rates; empty for none.
    #[arg(long, default_value = "10M,25M,50M,75M,100M")]
    udp_rates: String,
    /// TCP (1460 B) requested rates; empty for none.
    #[arg(long, default_value = "10M,25M,50M")]
    tcp_rates: String,
    #[command(flatten)]
    points: PointArgs,
    /// Boot what is built instead of running make first.
    #[arg(long)]
    no_build: bool,
    /// Do not measure the reference (the guest kernel alone).
    #[arg(long, conflicts_with = "reference")]
    no_reference: bool,
    /// What the reference runs: `echo` (Linux alone: the kernel echo) or `reflect` (the
    /// driver's packet path alone in Linux: the uio-driver's reflector with the driver VM's
    /// kernel tuning; UDP only, so with `--tcp-rates ''`).
    #[arg(long, value_enum, default_value = "echo")]
    reference: netvm::sel4_demo::ReferenceMode,
    /// Another Microkit echo image (plain or .gz) to measure in the same run, its addresses by
    /// DHCP; may be repeated.
    #[arg(long, value_name = "FILE")]
    peer_image: Vec<PathBuf>,
}

pub(crate) fn run_sel4_demo(a: Sel4DemoArgs) -> ExitCode {
    // QEMU's NIC is a tap: a normal user (even as root of a user namespace) needs to open
    // /dev/net/tun itself, which some machines allow (mode 0666) and some do not (0600).
    if !netvm::demo::is_root() {
        use nix::unistd::{access, AccessFlags};
        if let Err(e) = access("/dev/net/tun", AccessFlags::R_OK | AccessFlags::W_OK) {
            tracing::error!(
                "netvm sel4-demo: QEMU's tap needs /dev/net/tun, which this user cannot open \
                 ({e}); run it as root (or make /dev/net/tun mode 0666, as Debian does by default)"
            );
            return ExitCode::from(2);
        }
    }
    let sweep = match demo_prologue("sel4-demo", &a.out, (&a.udp_rates, &a.tcp_rates), &a.points) {
        Ok(sweep) => sweep,
        Err(code) => return code,
    };
    let opts = netvm::sel4_demo::Sel4DemoOptions {
        workspace: std::path::absolute(&a.workspace).unwrap_or(a.workspace),
        out_dir: a.out,
        sweep,
        build: !a.no_build,
        reference: (!a.no_reference).then_some(a.reference),
        peer_images: a.peer_image,
    };
    match netvm::sel4_demo::run(&opts) {
        Ok(summary) => {
            println!("\n{}", summary.table());
            println!("CSV, SVG and console files: {}", opts.out_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("netvm sel4-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
