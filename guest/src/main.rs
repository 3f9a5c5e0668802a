//! `guest build --out DIR`: builds the driver VM's kernel, initramfs and device tree.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use guest::{build, BuildOptions, GuestLayout, Refresh};

/// Builds the netvm driver VM's guest from Debian packages and this workspace's Rust code.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build Image, initrd.cpio.gz and guest.dtb into --out (only what changed).
    Build {
        /// Output directory.
        #[arg(long, default_value = "build/guest")]
        out: PathBuf,
        /// Cache for apt state, debs and the built module (default ~/.cache/netvm/guest).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Debian kernel flavour.
        #[arg(long, default_value = guest::DEFAULT_FLAVOUR)]
        flavour: String,
        /// Never refresh the private apt lists (use what the cache holds).
        #[arg(long, conflicts_with = "refresh")]
        offline: bool,
        /// Refresh the private apt lists even if they are less than a day old.
        #[arg(long)]
        refresh: bool,
        /// Guest RAM in MiB (QEMU virt layout).
        #[arg(long, default_value_t = 512)]
        ram_mib: u64,
        /// Number of client TX data regions (tx_data0..tx_data<N-1>).
        #[arg(long, default_value_t = 2)]
        tx_clients: usize,
        /// Use this aarch64 uio-driver binary instead of cross-building the workspace's.
        #[arg(long)]
        uio_driver: Option<PathBuf>,
        /// Extra kernel command-line arguments.
        #[arg(long, default_value = "")]
        append: String,
    },
}

fn main() -> ExitCode {
    let Cmd::Build {
        out,
        cache,
        flavour,
        offline,
        refresh,
        ram_mib,
        tx_clients,
        uio_driver,
        append,
    } = Cli::parse().command;
    let mut layout = GuestLayout::qemu_virt(ram_mib << 20, tx_clients, 0x4000, 0x10_0000);
    if !append.is_empty() {
        layout.bootargs = format!("{} {append}", layout.bootargs);
    }
    let mut opts = BuildOptions::new(out, layout);
    if let Some(c) = cache {
        opts.cache = c;
    }
    opts.flavour = flavour;
    opts.uio_driver = uio_driver;
    opts.refresh = if offline {
        Refresh::Never
    } else if refresh {
        Refresh::Always
    } else {
        opts.refresh
    };
    match build(&opts) {
        Ok(img) => {
            for p in [&img.kernel, &img.initrd, &img.dtb] {
                let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                println!("{} ({size} bytes)", p.display());
            }
            println!(
                "kernel {} {}; modules {}",
                img.kernel_set.abi,
                img.kernel_set.version,
                img.modules.join(",")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guest: {e}");
            ExitCode::FAILURE
        }
    }
}
