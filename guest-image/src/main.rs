//! `guest-image build --out DIR`: builds the driver VM's kernel, initramfs and device tree.
//! `guest-image sel4-dtb` / `guest-image sel4-pds`: the two seL4 writers of the plan
//! `system_plan::plan` makes from `system.xml` (the guest device tree of that system; every
//! PD's ELF with its config sections patched in).
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use guest_image::{build, BuildOptions, GuestLayout, Refresh};
use system_plan::{ImagePlan, Inputs, Writer};

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
        #[arg(long, default_value = guest_image::DEFAULT_FLAVOUR)]
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
    /// Write the driver VM's device tree for an seL4 system: UIO regions, RAM and passed-through
    /// devices as the system description maps them, the initrd where the VMM loads it.
    Sel4Dtb {
        /// The system description.
        #[arg(long, default_value = "system.xml")]
        system: PathBuf,
        /// The initrd the VMM will load (its size goes into /chosen).
        #[arg(long)]
        initrd: PathBuf,
        /// The kernel command line.
        #[arg(long, default_value_t = default_sel4_bootargs())]
        bootargs: String,
        /// A debug image: adds `netvm.debug` to the command line, so that the guest's `/init`
        /// honours test-only console commands (`netvm.crash`). The Makefile passes it for
        /// `MICROKIT_CONFIG=debug` only.
        #[arg(long)]
        debug: bool,
        /// Words added to the command line (the Makefile's GUEST_APPEND), e.g.
        /// `uio_driver.busy_poll_us=300` for a uio-driver option, or `netvm.mode=reflect
        /// netvm.ip=10.0.0.10/24` to run the driver VM's reflector instead of the driver.
        #[arg(long, default_value = "")]
        append: String,
        /// Client MACs, `client0=52:54:01:00:00:10,...`, or `@FILE` (e.g. `@system.macs`):
        /// the net spec whose driver config goes into /chosen. Not needed for a standalone VM.
        #[arg(long, default_value = "")]
        macs: String,
        /// Buffer counts other than sdfgen's, `rx=64,client_rx=64,client_tx=32`
        /// (`sdf::net::BufferCounts`): give the same to `sel4-pds`.
        #[arg(long, default_value = "")]
        buffers: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy every PD's ELF to OUT/<program image path> with its config sections filled: sDDF
    /// net configs derived from the system description, virtualiser options, echo addresses,
    /// the VMM's .vmm_config.
    Sel4Pds {
        /// The system description.
        #[arg(long, default_value = "system.xml")]
        system: PathBuf,
        /// Client MACs, `client0=52:54:01:00:00:10,...`, or `@FILE` (e.g. `@system.macs`).
        #[arg(long, default_value = "@system.macs")]
        macs: String,
        /// Buffer counts other than sdfgen's, `rx=64,client_rx=64,client_tx=32`
        /// (`sdf::net::BufferCounts`): give the same to `sel4-dtb`.
        #[arg(long, default_value = "")]
        buffers: String,
        /// Echo clients' addresses, `client0=10.0.0.10/24,client1=dhcp,...`
        /// (`echo_api::parse_address_list`).
        #[arg(long)]
        echo_ips: String,
        /// Echo clients that also originate echo traffic, and to whom:
        /// `client1=node1+10.0.2.10/udp=32x256@1000/tcp=16384/period=1000,...`
        /// (`echo_api::peers::parse_peer_list`; `/msg=<master>` adds node messaging); empty:
        /// none does.
        #[arg(long, default_value = "")]
        echo_peers: String,
        /// Where cargo put the aarch64-unknown-none PD binaries.
        #[arg(long)]
        elf_dir: PathBuf,
        /// Output directory (the Microkit tool's --search-path).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Kernel command line of the seL4 system's guest: the PL011 is passed through, then the
/// driver VM's kernel tuning ([`system_plan::GUEST_KERNEL_TUNING`], which says why
/// each flag is there).
fn default_sel4_bootargs() -> String {
    format!(
        "earlycon=pl011,0x9000000 console=ttyAMA0 panic=-1 {}",
        system_plan::GUEST_KERNEL_TUNING
    )
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Sel4Dtb {
            system,
            initrd,
            bootargs,
            debug,
            append,
            macs,
            buffers,
            out,
        } => {
            let bootargs = compose_bootargs(bootargs, debug, &append);
            sel4_dtb(&system, &initrd, &bootargs, (&macs, &buffers), &out)
        }
        Cmd::Sel4Pds {
            system,
            macs,
            buffers,
            echo_ips,
            echo_peers,
            elf_dir,
            out,
        } => sel4_pds(
            &system,
            (&macs, &buffers),
            (&echo_ips, &echo_peers),
            &elf_dir,
            &out,
        ),
        build @ Cmd::Build { .. } => return guest_build(build),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest-image: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_system(path: &Path) -> Result<sdf::SystemDescription, String> {
    sdf::parse(path, sdf::Arch::Aarch64).map_err(|e| e.to_string())
}

/// `(client PD, MAC)` pairs.
type Macs = Vec<(String, [u8; 6])>;

/// `--macs` and `--buffers`, as both seL4 commands take them.
fn parse_net((macs, buffers): (&str, &str)) -> Result<(Macs, sdf::net::BufferCounts), String> {
    let macs = system_plan::parse_macs(macs)?;
    let buffers = sdf::net::BufferCounts::parse(buffers).map_err(|e| e.to_string())?;
    Ok((macs, buffers))
}

/// The seL4 image's plan of `system` (parsed from it).
fn sel4_plan(
    system: &Path,
    sys: &sdf::SystemDescription,
    bootargs: &str,
    net: (&str, &str),
    (echo, echo_peers): system_plan::EchoInputs<'_>,
) -> Result<ImagePlan, String> {
    let (macs, buffers) = parse_net(net)?;
    let inputs = Inputs {
        macs: Some(&macs),
        buffers,
        echo,
        echo_peers,
        bootargs,
        writer: Writer::Sel4Image,
    };
    system_plan::plan(sys, system, &inputs).map_err(|e| e.to_string())
}

/// The guest's command line: `base`, then `netvm.debug` for a debug image, then `append`'s
/// words (the Makefile's GUEST_APPEND).
fn compose_bootargs(mut base: String, debug: bool, append: &str) -> String {
    if debug {
        base.push_str(" netvm.debug");
    }
    for word in append.split_whitespace() {
        base.push(' ');
        base.push_str(word);
    }
    base
}

fn sel4_dtb(
    system: &Path,
    initrd: &Path,
    bootargs: &str,
    net: (&str, &str),
    out: &Path,
) -> Result<(), String> {
    let sys = parse_system(system)?;
    let (macs, buffers) = parse_net(net)?;
    let clients = system_plan::Clients {
        macs: &macs,
        buffers,
    };
    let vm = system_plan::driver_vm(&sys, system, bootargs, &clients).map_err(|e| e.to_string())?;
    let len = std::fs::metadata(initrd)
        .map_err(|e| format!("{}: {e}", initrd.display()))?
        .len();
    let dtb = guest_image::fdt::build_dtb(&vm.layout, len).map_err(|e| e.to_string())?;
    std::fs::write(out, &dtb).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{} ({} bytes)", out.display(), dtb.len());
    Ok(())
}

fn sel4_pds(
    system: &Path,
    net: (&str, &str),
    (echo_ips, echo_peers): (&str, &str),
    elf_dir: &Path,
    out: &Path,
) -> Result<(), String> {
    let sys = parse_system(system)?;
    let echo = parse_echo_ips(echo_ips)?;
    let peers =
        system_plan::parse_echo_peers(echo_peers).map_err(|e| format!("--echo-peers {e}"))?;
    let plan = sel4_plan(system, &sys, &default_sel4_bootargs(), net, (&echo, &peers))?;
    let written = guest_image::sel4::patch_pds(&sys, &plan.sections, elf_dir, out)
        .map_err(|e| e.to_string())?;
    for s in &plan.sections {
        println!("{}: {} ({} bytes)", s.pd, s.name, s.bytes.len());
    }
    println!("{} PD images in {}", written.len(), out.display());
    Ok(())
}

/// The `--echo-ips` list, read by the parser `netvm run --echo-ips` uses too.
fn parse_echo_ips(text: &str) -> Result<Vec<(String, echo_api::IpConfig)>, String> {
    system_plan::parse_echo_ips(text).map_err(|e| format!("--echo-ips {e}"))
}

fn guest_build(cmd: Cmd) -> ExitCode {
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
    } = cmd
    else {
        unreachable!("guest_build is called with Cmd::Build")
    };
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
            eprintln!("guest-image: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{compose_bootargs, default_sel4_bootargs};

    /// GUEST_APPEND's words come after the tuning (and after `netvm.debug`), so that `/init`
    /// reads them and a later word overrides an earlier kernel option.
    #[test]
    fn appended_words_follow_the_default_command_line() {
        let line = compose_bootargs(
            default_sel4_bootargs(),
            true,
            "  netvm.mode=reflect   netvm.ip=10.0.0.10/24 ",
        );
        assert!(line.starts_with(&default_sel4_bootargs()), "{line}");
        assert!(
            line.ends_with(" netvm.debug netvm.mode=reflect netvm.ip=10.0.0.10/24"),
            "{line}"
        );
        assert_eq!(compose_bootargs("a b".into(), false, ""), "a b");
    }

    /// The per-frame savings of issue #18 are on the default command line, each once (a flag
    /// dropped here puts its cost back on every frame; BENCHMARKS.md has what each bought).
    #[test]
    fn the_default_command_line_carries_the_guest_kernel_tuning() {
        let line = default_sel4_bootargs();
        let args: Vec<&str> = line.split_whitespace().collect();
        for flag in [
            "virtio_net.napi_tx=0",
            "randomize_kstack_offset=off",
            "init_on_alloc=0",
            "hardened_usercopy=off",
            "audit=0",
            "lsm=capability",
            "rodata=on",
            "psi=0",
            "nowatchdog",
            "mitigations=off",
            "ipv6.disable=1",
            "uio_driver.rx_wakeup=frame-ring",
            "uio_driver.qdisc_bypass=1",
            "uio_driver.driver_first=1",
        ] {
            assert_eq!(
                args.iter().filter(|a| **a == flag).count(),
                1,
                "{flag} in {line}"
            );
        }
    }
}
