//! netvm command line: a thin clap front end over the `netvm` library.
#![deny(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::bench::{run_bench, BenchArgs};
use cli::demo::{run_demo, DemoArgs};
use cli::echo::{run_echo, EchoArgs};
use cli::lan::{run_lan, LanArgs};
use cli::node::{run_node, NodeArgs};
use cli::run::{run_system, RunArgs};
use cli::sel4_demo::{run_sel4_demo, Sel4DemoArgs};
use cli::stats::{show_stats, StatsArgs};

#[derive(Parser)]
#[command(
    name = "netvm",
    version,
    about = "netvm: host-mode runner, benchmark, stats"
)]
struct Cli {
    /// More detail on stderr: -v debug, -vv trace (NETVM_LOG, an env-filter directive list
    /// such as `debug` or `netvm_observe=trace`, overrides it). Results stay on stdout.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
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
    /// Several netvm systems (nodes) on one virtual switch (VDE, or a Linux bridge), host mode
    /// or seL4 images on QEMU (--sel4): each node's addresses follow from its id; the host side
    /// checks every node, measures it, and captures the switch into a pcap. Needs root.
    Lan(LanArgs),
    /// Node messaging by id (node-msg): `master` gives out ids; `send`, `recv` and `exchange`
    /// join it and talk to other nodes by id. Exit status 1 when a message is lost or wrong.
    Node(NodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::log::init(cli.verbose);
    match cli.command {
        Command::Sel4Demo(a) => run_sel4_demo(a),
        Command::Bench(a) => run_bench(a),
        Command::KernelEcho(a) => run_echo(a),
        Command::Run(a) => run_system(a),
        Command::Demo(a) => run_demo(a),
        Command::Stats(a) => show_stats(a),
        Command::Lan(a) => run_lan(a),
        Command::Node(a) => run_node(a),
    }
}
