//! `netvm run`: its arguments and handler.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use nix::sys::signal::{SigSet, Signal};

use netvm::bench;
use netvm::run::{
    DriverVmHost, OnFault, Outcome, OutputMode, PlannedSections, RunError, RunOptions, SdfgenDir,
    SectionDir, StopReason, System,
};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutputArg {
    /// Each PD line prefixed with `[<pd>] `.
    Prefixed,
    /// PD output unchanged.
    Raw,
    /// No PD output (monitor messages still go to stderr).
    Quiet,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OnFaultArg {
    /// Tear the whole system down.
    Stop,
    /// Keep the other PDs running.
    Continue,
    /// Start the failed PD again (its regions keep their contents; net clients reconnect), at
    /// most --max-restarts times per PD, then stop.
    Restart,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The system description (Microkit 2.3.0 SDF).
    system: PathBuf,
    /// Directory of the PD executables (program_image foo.elf runs <bin-dir>/foo)
    /// [default: the directory of this netvm executable].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Config sections from DIR/<pd>/<section>.bin.
    #[arg(long, value_name = "DIR")]
    sections: Option<PathBuf>,
    /// sDDF net configs from sdfgen's .data files in DIR (net_client_<pd>.data, ...).
    #[arg(long, value_name = "DIR", conflicts_with = "net_macs")]
    sdfgen_dir: Option<PathBuf>,
    /// Derive the sDDF net configs from the system description, with these client MACs
    /// (e.g. client0=52:54:01:00:00:10,client1=52:54:01:00:00:11).
    /// A file is read with `@FILE` (e.g. `@system.macs`).
    #[arg(long, value_name = "LIST", value_parser = parse_macs)]
    net_macs: Option<MacList>,
    /// With derived net configs: buffer counts other than sdfgen's
    /// (e.g. rx=64,client_rx=64,client_tx=32; the same as the seL4 image's `BUFFERS`).
    #[arg(long, value_name = "LIST", value_parser = parse_buffers)]
    buffers: Option<BufferArg>,
    /// Addresses of echo-server PDs (`.echo_config`), static or from DHCP, e.g.
    /// client0=10.0.0.10/24,client1=dhcp.
    #[arg(long, value_name = "LIST", value_parser = parse_echo_ips)]
    echo_ips: Option<EchoList>,
    /// Echo-server PDs that also originate echo traffic (`.echo_peers`), each to its peers:
    /// client1=node1+10.0.2.10/udp=32x256@1000/tcp=16384/period=1000 (peers by address or LAN
    /// node id, node<n>[.<client>]; options default to udp=32x256@1000/tcp=16384/period=1000).
    /// With /msg=<master IPv4> the PD also joins node messaging's master there and messages its
    /// peers that are LAN nodes every round. Each PD needs an address from --echo-ips.
    #[arg(long, value_name = "LIST", value_parser = parse_echo_peers, requires = "echo_ips")]
    echo_peers: Option<PeerList>,
    /// Stand in for the driver VM with the host driver process on this network interface
    /// (the PD running the virtual machine becomes `uio_driver_host`).
    #[arg(long, value_name = "IFACE")]
    driver_vm_iface: Option<String>,
    /// How PD output is printed.
    #[arg(long, value_enum, default_value = "prefixed")]
    output: OutputArg,
    /// What a PD fault, exit or death does to the rest of the system.
    #[arg(long, value_enum, default_value = "stop")]
    on_fault: OnFaultArg,
    /// With --on-fault restart: restarts allowed per PD.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_restarts: u32,
    /// Stop cleanly after this long (e.g. 30s, 2m).
    #[arg(long, value_parser = bench::parse_duration)]
    timeout: Option<Duration>,
    /// Where the run directory (region files, control region, manifests) is created.
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Validate, plan and print every PD's manifest; start nothing.
    #[arg(long)]
    dry_run: bool,
    /// Capture every frame the virtualisers pass into DIR: driver-rx.pcap, driver-tx.pcap and
    /// client<i>-rx.pcap / client<i>-tx.pcap (i = the client's index in virt_rx / virt_tx).
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
}

/// `--net-macs`: client PD name and MAC address pairs.
#[derive(Clone)]
pub(crate) struct MacList(Vec<(String, [u8; 6])>);

fn parse_macs(text: &str) -> Result<MacList, String> {
    system_plan::parse_macs(text).map(MacList)
}

/// `--buffers`: buffer counts.
#[derive(Clone, Debug)]
struct BufferArg(sdf::net::BufferCounts);

fn parse_buffers(text: &str) -> Result<BufferArg, String> {
    sdf::net::BufferCounts::parse(text)
        .map(BufferArg)
        .map_err(|e| e.to_string())
}

/// `--echo-ips`: echo-server PD and address pairs.
#[derive(Clone, Debug)]
struct EchoList(Vec<(String, echo_api::IpConfig)>);

fn parse_echo_ips(text: &str) -> Result<EchoList, String> {
    system_plan::parse_echo_ips(text).map(EchoList)
}

/// `--echo-peers`: originating echo-server PDs and their peers.
#[derive(Clone, Debug)]
struct PeerList(Vec<(String, echo_api::peers::PeerPlan)>);

fn parse_echo_peers(text: &str) -> Result<PeerList, String> {
    system_plan::parse_echo_peers(text).map(PeerList)
}

pub(crate) fn run_system(mut a: RunArgs) -> ExitCode {
    // With no config option at all, the MAC list beside the system description (as the
    // repository keeps system.macs beside system.xml) derives the net configs.
    if a.sections.is_none() && a.sdfgen_dir.is_none() && a.net_macs.is_none() {
        let beside = a
            .system
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("system.macs");
        if beside.is_file() {
            match parse_macs(&format!("@{}", beside.display())) {
                Ok(macs) => {
                    tracing::info!(
                        "netvm run: sDDF net configs derived with the client MACs of {} \
                         (--net-macs)",
                        beside.display()
                    );
                    a.net_macs = Some(macs);
                }
                Err(e) => {
                    tracing::error!("netvm run: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let mut opts = RunOptions::new(&a.system);
    if let Some(dir) = a.bin_dir {
        opts.bin_dir = dir;
    }
    opts.shm_dir = a.shm_dir;
    if let Some(dir) = a.sections {
        opts.sections.push(Box::new(SectionDir(dir)));
    }
    if let Some(dir) = a.sdfgen_dir {
        opts.sections.push(Box::new(SdfgenDir(dir)));
    }
    if a.net_macs.is_some() || a.echo_ips.is_some() {
        opts.sections.push(Box::new(PlannedSections {
            system_path: a.system.clone(),
            macs: a.net_macs.map(|MacList(macs)| macs),
            buffers: a.buffers.map(|BufferArg(b)| b).unwrap_or_default(),
            echo: a.echo_ips.map(|EchoList(echo)| echo).unwrap_or_default(),
            echo_peers: a.echo_peers.map(|PeerList(p)| p).unwrap_or_default(),
        }));
    }
    opts.driver_vm = a.driver_vm_iface.map(|iface| DriverVmHost {
        executable: "uio_driver_host".into(),
        iface,
    });
    opts.output = match a.output {
        OutputArg::Prefixed => OutputMode::Prefixed,
        OutputArg::Raw => OutputMode::Raw,
        OutputArg::Quiet => OutputMode::Quiet,
    };
    opts.on_fault = match a.on_fault {
        OnFaultArg::Stop => OnFault::Stop,
        OnFaultArg::Continue => OnFault::Continue,
        OnFaultArg::Restart => OnFault::Restart {
            max_restarts: a.max_restarts,
        },
    };
    opts.timeout = a.timeout;
    if let Some(dir) = a.pcap {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!("netvm run: --pcap {}: {e}", dir.display());
            return ExitCode::from(2);
        }
        opts.pcap = Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    if a.dry_run {
        return match netvm::run::plan(&opts) {
            Ok(plan) => {
                print!("{}", plan.manifests_text());
                ExitCode::SUCCESS
            }
            Err(e) => report(e),
        };
    }

    start_and_wait(opts)
}

/// Prints a run error (an SDF error as `file:line:col: ...`, so editors can jump there) and
/// returns its exit status.
fn report(e: RunError) -> ExitCode {
    match &e {
        // file:line:col first, as compilers print it, so editors can jump there.
        RunError::Sdf(_) | RunError::MissingExecutable { .. } => tracing::error!("{e}"),
        _ => tracing::error!("netvm run: {e}"),
    }
    ExitCode::from(e.exit_code())
}

/// Starts the system of `opts` and waits until it stops (SIGINT, SIGTERM, `--timeout` or a PD
/// failure); returns the exit status.
fn start_and_wait(opts: RunOptions) -> ExitCode {
    // Block the stop signals before any thread starts (threads inherit the mask; PD processes
    // get an empty one), then wait for one on a thread of its own.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        tracing::error!("netvm run: cannot block SIGINT/SIGTERM: {e}");
        return ExitCode::from(2);
    }
    let system = match System::start(opts) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => return report(e),
    };
    let stopper = system.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            tracing::info!("netvm run: {}, stopping", sig.as_str());
            stopper.stop();
        }
    });
    let outcome = system.wait(None).unwrap_or_else(|| system.stop());
    match &outcome {
        Outcome::Stopped(StopReason::Timeout) => tracing::info!("netvm run: timeout, stopped"),
        Outcome::Stopped(StopReason::Requested) => tracing::info!("netvm run: stopped"),
        Outcome::Failed(failures) => {
            let names: Vec<&str> = failures.iter().map(|f| f.pd.as_str()).collect();
            tracing::error!("netvm run: stopped after PD failure: {}", names.join(", "));
        }
    }
    ExitCode::from(outcome.exit_code())
}
