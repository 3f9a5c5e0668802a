//! netvm command line: a thin clap front end over the `netvm` library.
#![deny(unsafe_code)]

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix::sys::signal::{SigSet, Signal};

use netvm::bench::{self, csv, svg, BenchConfig, Phase, Progress, Proto, SampleStop};
use netvm::kernel_echo::EchoConfig;
use netvm::run::{
    DerivedNetConfigs, DriverVmHost, EchoAddresses, OnFault, Outcome, OutputMode, RunError,
    RunOptions, SdfgenDir, SectionDir, StopReason, System,
};

#[derive(Parser)]
#[command(
    name = "netvm",
    version,
    about = "netvm: host-mode runner, benchmark, stats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// ipbench latency-check compatible benchmark against an echo server; prints the sDDF CSV.
    Bench(BenchArgs),
    /// Linux kernel-socket UDP/TCP echo server (the reference), with an optional utilisation
    /// daemon; runs until SIGINT or SIGTERM.
    KernelEcho(EchoArgs),
    /// Run a Microkit system in host mode: every PD a Linux process, regions in /dev/shm.
    /// Exit status: 0 stopped cleanly (signal or --timeout), 1 a PD faulted or died,
    /// 2 configuration error.
    Run(RunArgs),
    /// Live counters of a running host-mode system: every component's stats region and the
    /// occupancy of every sDDF queue, with the accounting of each buffer pool. With --qmp, the
    /// counters of the seL4 system in a running QEMU (`make qemu`), found in its RAM; with
    /// --report and --system too, its buffer pools, read with the VM paused.
    /// Exit status: 0 printed, 1 (--report) a pool not all in queues or a queue unreadable,
    /// 2 no running system (or its run directory is unreadable, or the QMP socket cannot be
    /// used, or --report/--system cannot be read).
    Stats(StatsArgs),
    /// The main job: the echo system of system.xml in host mode on a private virtual LAN,
    /// benchmarked against a Linux kernel echo on the same kind of link in the same run.
    Demo(DemoArgs),
    /// The main job on seL4: builds the release image (make), boots it on QEMU with its NIC on
    /// a tap in a private network namespace, and measures it with UDP and TCP echo sweeps
    /// against the same guest kernel booted alone (kernel echo) and any --peer-image, points
    /// interleaved; prints one table. Needs root (or an unprivileged user namespace).
    Sel4Demo(Sel4DemoArgs),
}

#[derive(clap::Args)]
struct Sel4DemoArgs {
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
    /// Warm-up per point.
    #[arg(long, value_parser = bench::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Sampling per point.
    #[arg(long, value_parser = bench::parse_duration, default_value = "4s")]
    duration: Duration,
    /// Cool-down per point.
    #[arg(long, value_parser = bench::parse_duration, default_value = "1s")]
    cooldown: Duration,
    /// Parallel flows.
    #[arg(long, default_value_t = 4)]
    flows: u32,
    /// Boot what is built instead of running make first.
    #[arg(long)]
    no_build: bool,
    /// Do not measure the reference (the guest kernel alone with the kernel echo).
    #[arg(long)]
    no_reference: bool,
    /// Another Microkit echo image (plain or .gz) to measure in the same run, its addresses by
    /// DHCP; may be repeated.
    #[arg(long, value_name = "FILE")]
    peer_image: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct StatsArgs {
    /// The run directory (default: the newest running system's under --shm-dir).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Where run directories are looked for.
    #[arg(long, default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Print again every this many seconds until interrupted or the system stops.
    #[arg(long)]
    watch: Option<f64>,
    /// Read the counters of a seL4 system from the QEMU whose QMP socket this is
    /// (`-qmp unix:PATH,server,nowait`; `make qemu` makes build/qmp.sock).
    #[arg(long, alias = "qemu-monitor", value_name = "SOCKET", conflicts_with_all = ["run_dir"])]
    qmp: Option<PathBuf>,
    /// Guest RAM size to scan with --qmp (QEMU's -m; K, M, G suffixes).
    #[arg(long, value_parser = parse_size, default_value = "2G", requires = "qmp")]
    ram_size: u64,
    /// Guest-physical start of RAM with --qmp (QEMU virt: 0x40000000).
    #[arg(long, value_parser = parse_size, default_value = "0x40000000", requires = "qmp")]
    ram_base: u64,
    /// With --qmp: the Microkit tool's report of the image QEMU runs (`microkit ... -r`,
    /// build/sel4/<config>/report.txt), which places the buffer pools' queues in its RAM.
    #[arg(long, value_name = "FILE", requires_all = ["qmp", "system"])]
    report: Option<PathBuf>,
    /// With --report: the system description the image was built from.
    #[arg(long, value_name = "FILE", requires = "report")]
    system: Option<PathBuf>,
    /// With --report: the pools only, not the counters.
    #[arg(long, requires = "report")]
    pools: bool,
}

/// `2G`, `512M`, `64K`, `4096` or `0x40000000`.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    }
    .map_err(|e| format!("'{s}': {e}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[derive(clap::Args)]
struct DemoArgs {
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
    /// Warm-up per point.
    #[arg(long, value_parser = bench::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Sampling per point.
    #[arg(long, value_parser = bench::parse_duration, default_value = "4s")]
    duration: Duration,
    /// Cool-down per point.
    #[arg(long, value_parser = bench::parse_duration, default_value = "1s")]
    cooldown: Duration,
    /// Capture every frame the virtualisers pass into DIR (see `netvm run --pcap`).
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// Parallel flows.
    #[arg(long, default_value_t = 4)]
    flows: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtoArg {
    Udp,
    Tcp,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Echo server IP address.
    #[arg(long)]
    target: IpAddr,
    /// UDP echo port.
    #[arg(long, default_value_t = bench::UDP_ECHO_PORT)]
    udp_port: u16,
    /// TCP echo port.
    #[arg(long, default_value_t = bench::TCP_ECHO_PORT)]
    tcp_port: u16,
    /// ipbench utilisation daemon port (cpu_target_lukem).
    #[arg(long, default_value_t = bench::UTIL_PORT, conflicts_with = "no_util")]
    util_port: u16,
    /// Do not contact a utilisation daemon; Idle_Cycles and Total_Cycles are 0.
    #[arg(long)]
    no_util: bool,
    /// Instead of asking a utilisation daemon, measure the CPU time these processes and their
    /// descendants used over the sampling phase (/proc/<pid>/stat; comma-separated pids).
    /// Idle_Cycles = Total_Cycles - that, Total_Cycles = wall time x online CPUs, in clock ticks.
    #[arg(long, value_delimiter = ',', conflicts_with = "no_util")]
    util_pids: Vec<u32>,
    /// Transport.
    #[arg(long, value_enum, default_value = "udp")]
    proto: ProtoArg,
    /// Payload bytes per packet [default: 1472 for UDP, 1460 for TCP].
    #[arg(long)]
    size: Option<usize>,
    /// Requested rates in bit/s, comma-separated, suffixes K/M/G (decimal), e.g. 10M,100M,1G.
    #[arg(long, value_parser = bench::parse_rates)]
    rates: std::vec::Vec<u64>,
    /// Warm-up before sampling (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = bench::parse_duration)]
    warmup: Duration,
    /// End sampling after this many RTT samples (in total over all flows).
    #[arg(long, conflicts_with = "duration")]
    samples: Option<u64>,
    /// End sampling after this long [default: 5s].
    #[arg(long, value_parser = bench::parse_duration)]
    duration: Option<Duration>,
    /// With --samples: give up sampling after this long.
    #[arg(long, default_value = "60s", value_parser = bench::parse_duration)]
    sample_timeout: Duration,
    /// Cool-down after sampling.
    #[arg(long, default_value = "1s", value_parser = bench::parse_duration)]
    cooldown: Duration,
    /// Parallel flows (UDP sockets / TCP connections); the rate is split evenly.
    #[arg(long, default_value_t = 4)]
    flows: u32,
    /// Also write the CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Draw Receive_Throughput and median and p99 RTT against the requested rate into this SVG
    /// file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Also write the packet counts behind each row to this CSV file
    /// (Requested_Throughput,Sent_Packets,Lost_Packets,Late_Packets,Bad_Packets,P99_RTT,
    /// Generator_Limited; lost = sent and never echoed by the end of the drain; P99_RTT in µs;
    /// Generator_Limited 0 = no, bit 1 = UDP sent < 97% of requested, bit 2 = requested above
    /// the calibrated ceiling), which the ipbench columns do not carry.
    #[arg(long)]
    counts: Option<PathBuf>,
    /// No progress display (the per-point summary with loss % still goes to stderr).
    #[arg(long)]
    quiet: bool,
    /// Skip measuring the bench's own ceiling before the sweep (a 1 s run against an in-process
    /// kernel echo on 127.0.0.1); points are then marked generator-limited only by their
    /// achieved send rate.
    #[arg(long)]
    no_calibrate: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    /// Each PD line prefixed with `[<pd>] `.
    Prefixed,
    /// PD output unchanged.
    Raw,
    /// No PD output (monitor messages still go to stderr).
    Quiet,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnFaultArg {
    /// Tear the whole system down.
    Stop,
    /// Keep the other PDs running.
    Continue,
    /// Start the failed PD again (its regions keep their contents; net clients reconnect), at
    /// most --max-restarts times per PD, then stop.
    Restart,
}

#[derive(clap::Args)]
struct RunArgs {
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
    /// Addresses of echo-server PDs (`.echo_config`), static or from DHCP, e.g.
    /// client0=10.0.0.10/24,client1=dhcp.
    #[arg(long, value_name = "LIST", value_parser = parse_echo_ips)]
    echo_ips: Option<EchoAddresses>,
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

#[derive(clap::Args)]
struct EchoArgs {
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

/// Comma-separated rates, or none for an empty string.
fn parse_rate_list(s: &str) -> Result<Vec<u64>, String> {
    if s.is_empty() {
        Ok(Vec::new())
    } else {
        bench::parse_rates(s)
    }
}

/// The start both demos share: the output folder checked before anything runs (a folder left
/// by an earlier root run is not writable by a normal user), a re-run in an unprivileged user
/// namespace when not root (`Err` carries the exit status of that run), and the rate lists.
fn demo_prologue(
    what: &str,
    out: &std::path::Path,
    udp: &str,
    tcp: &str,
) -> Result<(Vec<u64>, Vec<u64>), ExitCode> {
    if let Err(e) = netvm::demo::check_writable(out) {
        eprintln!("netvm {what}: {e}");
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
        (Ok(u), Ok(t)) => Ok((u, t)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("netvm {what}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn run_sel4_demo(a: Sel4DemoArgs) -> ExitCode {
    // QEMU's NIC is a tap: a normal user (even as root of a user namespace) needs to open
    // /dev/net/tun itself, which some machines allow (mode 0666) and some do not (0600).
    if !netvm::demo::is_root() {
        use nix::unistd::{access, AccessFlags};
        if let Err(e) = access("/dev/net/tun", AccessFlags::R_OK | AccessFlags::W_OK) {
            eprintln!(
                "netvm sel4-demo: QEMU's tap needs /dev/net/tun, which this user cannot open \
                 ({e}); run it as root (or make /dev/net/tun mode 0666, as Debian does by default)"
            );
            return ExitCode::from(2);
        }
    }
    let (udp_rates, tcp_rates) =
        match demo_prologue("sel4-demo", &a.out, &a.udp_rates, &a.tcp_rates) {
            Ok(rates) => rates,
            Err(code) => return code,
        };
    let opts = netvm::sel4_demo::Sel4DemoOptions {
        workspace: std::path::absolute(&a.workspace).unwrap_or(a.workspace),
        out_dir: a.out,
        udp_rates,
        tcp_rates,
        warmup: a.warmup,
        duration: a.duration,
        cooldown: a.cooldown,
        flows: a.flows,
        build: !a.no_build,
        reference: !a.no_reference,
        peer_images: a.peer_image,
    };
    match netvm::sel4_demo::run(&opts) {
        Ok(summary) => {
            println!("\n{}", summary.table());
            println!("CSV, SVG and console files: {}", opts.out_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netvm sel4-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Sel4Demo(a) => run_sel4_demo(a),
        Command::Bench(a) => run_bench(a),
        Command::KernelEcho(a) => run_echo(a),
        Command::Run(a) => run_system(a),
        Command::Demo(a) => {
            let (udp_rates, tcp_rates) =
                match demo_prologue("demo", &a.out, &a.udp_rates, &a.tcp_rates) {
                    Ok(rates) => rates,
                    Err(code) => return code,
                };
            let opts = netvm::demo::DemoOptions {
                system: a.system,
                macs: a.macs,
                out_dir: a.out,
                udp_rates,
                tcp_rates,
                warmup: a.warmup,
                duration: a.duration,
                cooldown: a.cooldown,
                flows: a.flows,
                pcap: a.pcap,
            };
            match netvm::demo::run(&opts) {
                Ok(summary) => {
                    println!("\ncounters after the last point:\n{}", summary.counters);
                    println!("{}", summary.table());
                    println!("CSV and SVG files: {}", opts.out_dir.display());
                    if let Some(dir) = &opts.pcap {
                        println!("pcap files: {}", dir.display());
                    }
                    if summary.buffers_accounted {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("netvm demo: sDDF buffers missing from every queue after the run (see the pools above)");
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("netvm demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Stats(a) => show_stats(a),
    }
}

fn show_stats(a: StatsArgs) -> ExitCode {
    use netvm::observe::{render_pools, render_stats, RunView};
    if let Some(socket) = &a.qmp {
        return show_qemu_stats(&a, socket);
    }
    let open = || match &a.run_dir {
        Some(dir) => RunView::open(dir),
        None => RunView::newest(&a.shm_dir),
    };
    let view = match open() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("netvm stats: {e}");
            return ExitCode::from(2);
        }
    };
    loop {
        println!("system in {}", view.dir().display());
        print!("{}", render_stats(&view.stats()));
        match view.pools() {
            Ok(pools) => print!("{}", render_pools(&pools)),
            Err(e) => println!("buffer pools: {e}"),
        }
        let Some(secs) = a.watch.filter(|s| s.is_finite() && *s > 0.0) else {
            return ExitCode::SUCCESS;
        };
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        if !view.dir().exists() {
            println!("the system has stopped");
            return ExitCode::SUCCESS;
        }
        println!();
    }
}

fn show_qemu_stats(a: &StatsArgs, socket: &std::path::Path) -> ExitCode {
    use netvm::observe::{render_pools, render_stats, PoolReport};
    use netvm::qemu_pools::PoolLayout;
    use netvm::qemu_stats::{components, reread, scan, QmpMem};
    let layout = match (&a.report, &a.system) {
        (Some(report), Some(system)) => match PoolLayout::load(report, system) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("netvm stats: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let mut mem = match QmpMem::connect(socket) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("netvm stats: {e}");
            return ExitCode::from(2);
        }
    };
    let mut pages = Vec::new();
    loop {
        // The stats pages also place the queues (qemu_pools::PoolLayout::shift).
        {
            let read = match reread(&mut mem, &pages) {
                Ok(Some(again)) if !pages.is_empty() => Ok(again),
                // First time, or the system restarted: find the pages again.
                Ok(_) => scan(&mut mem, a.ram_base, a.ram_size),
                Err(e) => Err(e),
            };
            pages = match read {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("netvm stats: {e}");
                    return ExitCode::from(2);
                }
            };
        }
        if !a.pools {
            println!(
                "seL4 system in QEMU ({}): {} stats pages in RAM {:#x}+{:#x}",
                socket.display(),
                pages.len(),
                a.ram_base,
                a.ram_size
            );
            if pages.is_empty() {
                println!("  (none yet: has the system booted? is --ram-size QEMU's -m?)");
            }
            print!("{}", render_stats(&components(&pages)));
        }
        let mut status = ExitCode::SUCCESS;
        if let Some(layout) = &layout {
            let shift = layout.shift(&pages);
            let pools = match layout.read(&mut mem, &shift) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("netvm stats: {e}");
                    return ExitCode::from(2);
                }
            };
            if a.pools {
                println!("seL4 system in QEMU ({}):", socket.display());
            }
            if let Some(shift) = shift.as_ref().ok().filter(|s| s.delta != 0) {
                println!("queues placed by the report, shifted {shift}");
            }
            print!("{}", render_pools(&pools));
            if !pools.iter().all(PoolReport::balanced) {
                status = ExitCode::FAILURE;
            }
        }
        let Some(secs) = a.watch.filter(|s| s.is_finite() && *s > 0.0) else {
            return status;
        };
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        println!();
    }
}

fn run_bench(a: BenchArgs) -> ExitCode {
    let proto = match a.proto {
        ProtoArg::Udp => Proto::Udp,
        ProtoArg::Tcp => Proto::Tcp,
    };
    let mut cfg = BenchConfig::new(a.target, proto, a.rates);
    cfg.udp_port = a.udp_port;
    cfg.tcp_port = a.tcp_port;
    cfg.util_port = (!a.no_util && a.util_pids.is_empty()).then_some(a.util_port);
    cfg.util_pids = a.util_pids;
    if let Some(size) = a.size {
        cfg.size = size;
    }
    cfg.warmup = a.warmup;
    cfg.cooldown = a.cooldown;
    cfg.sample_timeout = a.sample_timeout;
    cfg.flows = a.flows;
    cfg.stop = match (a.samples, a.duration) {
        (Some(n), _) => SampleStop::Samples(n),
        (None, Some(d)) => SampleStop::Duration(d),
        (None, None) => SampleStop::Duration(Duration::from_secs(5)),
    };

    let show = !a.quiet && std::io::stderr().is_terminal();
    let bar = if show {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_draw_target(if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut on_progress = |p: &Progress| {
        let phase = match p.phase {
            Phase::Warmup => "warm-up",
            Phase::Sampling => "sampling",
            Phase::Cooldown => "cool-down",
            Phase::Drain | Phase::Done => "draining",
        };
        bar.set_message(format!(
            "{} b/s: {phase}, {} sent, {} samples",
            p.rate, p.sent, p.samples
        ));
        bar.tick();
    };

    if !a.no_calibrate {
        match bench::calibrate(&cfg, Duration::from_secs(1)) {
            Ok(c) => {
                eprintln!(
                    "netvm bench: generator ceiling: sends {} b/s ({} b/s echoed, median RTT {} us) \
                     against an in-process kernel echo on 127.0.0.1 at {} B, {} flows; \
                     higher requested rates are marked GENERATOR-LIMITED",
                    c.send_bps, c.receive_bps, c.median_rtt_us, cfg.size, cfg.flows
                );
                cfg.ceiling_bps = Some(c.send_bps);
            }
            Err(e) => eprintln!(
                "netvm bench: generator ceiling not measured ({e}); points are marked \
                 GENERATOR-LIMITED only by their achieved send rate"
            ),
        }
    }
    println!("{}", csv::HEADER);
    let mut rows = Vec::new();
    let mut p99s = Vec::new();
    let mut counts = String::from(bench::COUNTS_HEADER);
    counts.push('\n');
    for &rate in &cfg.rates {
        match bench::run_point(&cfg, rate, &mut on_progress) {
            Ok(r) => {
                bar.suspend(|| {
                    println!("{}", r.row.to_line());
                    eprintln!("netvm bench: {}", r.summary());
                });
                counts.push_str(&r.counts_line());
                counts.push('\n');
                rows.push(r.row);
                p99s.push(r.rtt.p99_us);
            }
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("netvm bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    bar.finish_and_clear();
    if let Some(path) = &a.csv {
        if let Err(e) = std::fs::write(path, csv::render(&rows)) {
            eprintln!("netvm bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &a.counts {
        if let Err(e) = std::fs::write(path, &counts) {
            eprintln!("netvm bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &a.svg {
        let proto_name = if proto == Proto::Udp { "UDP" } else { "TCP" };
        let title = format!(
            "{proto_name} echo, {} B payload, {} flows, target {}",
            cfg.size, cfg.flows, cfg.target
        );
        if let Err(e) = std::fs::write(path, svg::render_with_p99(&rows, &p99s, &title)) {
            eprintln!("netvm bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `--net-macs`: client PD name and MAC address pairs.
#[derive(Clone)]
struct MacList(Vec<(String, [u8; 6])>);

fn parse_macs(text: &str) -> Result<MacList, String> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => text.to_owned(),
    };
    sdf::net::parse_mac_list(&text)
        .map(MacList)
        .map_err(|e| e.to_string())
}

fn parse_echo_ips(text: &str) -> Result<EchoAddresses, String> {
    EchoAddresses::parse(text)
}

fn run_system(mut a: RunArgs) -> ExitCode {
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
                    eprintln!(
                        "netvm run: sDDF net configs derived with the client MACs of {} \
                         (--net-macs)",
                        beside.display()
                    );
                    a.net_macs = Some(macs);
                }
                Err(e) => {
                    eprintln!("netvm run: {e}");
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
    if let Some(MacList(macs)) = a.net_macs {
        opts.sections.push(Box::new(DerivedNetConfigs { macs }));
    }
    if let Some(ips) = a.echo_ips {
        opts.sections.push(Box::new(ips));
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
            eprintln!("netvm run: --pcap {}: {e}", dir.display());
            return ExitCode::from(2);
        }
        opts.pcap = Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    let report = |e: RunError| {
        match &e {
            // file:line:col first, as compilers print it, so editors can jump there.
            RunError::Sdf(_) | RunError::MissingExecutable { .. } => eprintln!("{e}"),
            _ => eprintln!("netvm run: {e}"),
        }
        ExitCode::from(e.exit_code())
    };
    if a.dry_run {
        return match netvm::run::plan(&opts) {
            Ok(plan) => {
                print!("{}", plan.manifests_text());
                ExitCode::SUCCESS
            }
            Err(e) => report(e),
        };
    }

    // Block the stop signals before any thread starts (threads inherit the mask; PD processes
    // get an empty one), then wait for one on a thread of its own.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("netvm run: cannot block SIGINT/SIGTERM: {e}");
        return ExitCode::from(2);
    }
    let system = match System::start(opts) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => return report(e),
    };
    let stopper = system.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            eprintln!("netvm run: {}, stopping", sig.as_str());
            stopper.stop();
        }
    });
    let outcome = system.wait(None).unwrap_or_else(|| system.stop());
    match &outcome {
        Outcome::Stopped(StopReason::Timeout) => eprintln!("netvm run: timeout, stopped"),
        Outcome::Stopped(StopReason::Requested) => eprintln!("netvm run: stopped"),
        Outcome::Failed(failures) => {
            let names: Vec<&str> = failures.iter().map(|f| f.pd.as_str()).collect();
            eprintln!("netvm run: stopped after PD failure: {}", names.join(", "));
        }
    }
    ExitCode::from(outcome.exit_code())
}

fn run_echo(a: EchoArgs) -> ExitCode {
    let cfg = EchoConfig {
        bind: a.bind,
        udp_port: a.udp_port,
        tcp_port: a.tcp_port,
        util_port: a.util_port,
    };
    match netvm::kernel_echo::serve_until_signalled(cfg, "netvm kernel-echo") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
