//! `uio-driver`: the guest network driver (see the library docs for the build command).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use netvm_api::stats::StatsWriter;
use uio_driver::config::{DriverConfig, DT_PATHS};
use uio_driver::counters::{self, Counters, NicCounters};
use uio_driver::driver::{connect, Driver, DriverWords, Nic};
use uio_driver::loopback::{LoopbackNic, LoopbackSpec};
use uio_driver::packet::{PacketConfig, PacketNic, RxWakeup};
use uio_driver::reflect::{self, Reflector};
use uio_driver::signals;
use uio_driver::uio::UioDevices;

/// Bridges a network interface to sDDF queues mapped through UIO.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The network interface to drive.
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// The driver's `.net_driver_config` blob (its queue capacities). Default: the device
    /// tree's `/chosen/netvm,net-driver-config`, under /proc/device-tree or
    /// /sys/firmware/devicetree/base.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Root of sysfs (UIO devices are looked up under <root>/class/uio).
    #[arg(long, default_value = "/sys")]
    sysfs_root: PathBuf,
    /// Directory holding the uioN device files.
    #[arg(long, default_value = "/dev")]
    dev_root: PathBuf,
    /// How received frames wake the driver.
    #[arg(long, value_enum, default_value = "per-frame")]
    rx_wakeup: RxWakeup,
    /// Bytes per TPACKET_V3 ring block.
    #[arg(long, default_value_t = 1 << 16)]
    block_size: usize,
    /// Number of ring blocks.
    #[arg(long, default_value_t = 32)]
    blocks: usize,
    /// Block retire timeout in milliseconds. With per-frame wake-ups the driver drains partly
    /// filled blocks itself and needs no retire timer; but the kernel re-arms it for as long as
    /// the ring exists, and in the driver VM each expiry is a timer interrupt (a VM exit, a
    /// maintenance fault and, when idle, a trapped WFI: 440 exits a second at 1 ms). Use 1 with
    /// `--rx-wakeup block-retire`.
    #[arg(long, default_value_t = 100)]
    retire_ms: u32,
    /// Before sleeping, look for frames and TX descriptors for up to this many microseconds (0:
    /// sleep at once). It saves the trapped WFI and the injected wake-up (VM exits per 1000
    /// frames at 100 Mb/s UDP: 275 without, 148 with 1000 us), but under QEMU the polling
    /// guest cost more echo throughput than the exits did (BENCHMARKS.md, issue #18), so it
    /// is off by default. Not with `--driver-first` (`uio_driver::sched` says why).
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u64,
    /// Transmit around the interface's qdisc (`PACKET_QDISC_BYPASS`), e.g.
    /// `uio_driver.qdisc_bypass=1` on the guest command line.
    #[arg(long, default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    qdisc_bypass: bool,
    /// Run above the kernel's receive processing (`uio_driver::sched`): the interface's NAPI in
    /// a kernel thread, this process `SCHED_FIFO`; e.g. `uio_driver.driver_first=1`.
    #[arg(long, default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    driver_first: bool,
    /// Also print the counters line every this many seconds (checked whenever the driver
    /// wakes; 0: only on SIGUSR1 and at exit). In the driver VM the console is the only place
    /// they show, e.g. `uio_driver.report_every=2` on the guest command line to watch the
    /// packet ring's drops under load.
    #[arg(long, default_value_t = 0)]
    report_every: u64,
    /// Instead of bridging to sDDF, answer ARP, ping and UDP (echo) as a host at this IPv4
    /// address, on the same packet path (`uio_driver::reflect`): the guest's
    /// `netvm.mode=reflect`, which measures what that path carries in Linux alone. Needs no UIO
    /// devices or driver config.
    #[arg(long, value_name = "IPV4", conflicts_with = "loopback")]
    reflect: Option<std::net::Ipv4Addr>,
    /// Instead of the packet socket, a NIC with no wire whose peer is the reflector at PEER
    /// (`uio_driver::loopback`): COUNT UDP datagrams to the client at CLIENT_IP/CLIENT_MAC's echo
    /// port circle between the driver and the echo client for as long as it runs, to measure
    /// the sDDF side alone (the driver's counters give the rate).
    #[arg(long, value_name = "PEER,CLIENT_IP,CLIENT_MAC,COUNT")]
    loopback: Option<LoopbackSpec>,
}

/// The packet ring and transmit socket on `args.iface`, as the options ask.
fn open_nic(args: &Args) -> Result<PacketNic, String> {
    if args.driver_first && args.busy_poll_us > 0 {
        return Err(format!(
            "--driver-first with --busy-poll-us {}: a SCHED_FIFO driver that polls keeps the \
             NAPI thread, which brings its frames, from running; use one or the other",
            args.busy_poll_us
        ));
    }
    let nic = PacketNic::open(
        &args.iface,
        PacketConfig {
            block_size: args.block_size,
            block_count: args.blocks,
            retire_ms: args.retire_ms,
            wakeup: args.rx_wakeup,
            qdisc_bypass: args.qdisc_bypass,
        },
    )
    .map_err(|e| e.to_string())?;
    for w in &nic.warnings {
        eprintln!("uio-driver: warning: {w}");
    }
    if args.driver_first {
        uio_driver::sched::driver_first(&args.iface)?;
        println!(
            "uio-driver: driver first: {}'s NAPI in a kernel thread, the driver SCHED_FIFO {}",
            args.iface,
            uio_driver::sched::DRIVER_FIFO_PRIORITY
        );
    }
    Ok(nic)
}

/// `--reflect`: the packet path alone.
fn reflect(args: &Args, ip: std::net::Ipv4Addr) -> Result<(), String> {
    let mut nic = open_nic(args)?;
    signals::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    let reflector = Reflector::new(ip);
    let mac = reflector.mac().map(|b| format!("{b:02x}")).join(":");
    println!(
        "uio-driver: reflecting iface={} ip={ip} mac={mac}",
        args.iface
    );
    let mut every = Every::secs(args.report_every);
    let counts = reflect::run(&mut nic, &reflector, &mut |c| {
        if signals::take_usr1() || every.due() {
            println!("uio-driver: reflector counters {c}");
        }
        !signals::stop_requested()
    })
    .map_err(|e| format!("reflector loop: {e}"))?;
    let mut nic_counters = NicCounters::default();
    nic_counters.take_drops(&mut nic);
    println!(
        "uio-driver: reflector counters {counts} rx_ring_drops={}",
        nic_counters.rx_ring_drops
    );
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    if let Some(ip) = args.reflect {
        return reflect(&args, ip);
    }
    let config = match &args.config {
        Some(path) => DriverConfig::read(&[path]),
        None => DriverConfig::read(&DT_PATHS.map(Path::new)),
    }
    .map_err(|e| e.to_string())?;
    let mut uio =
        UioDevices::open(&args.sysfs_root, &args.dev_root, &config).map_err(|e| e.to_string())?;
    eprintln!("uio-driver: UIO devices: {}", uio.listing);
    let (mut packet, mut looped);
    let nic: &mut dyn Nic = match &args.loopback {
        Some(spec) => {
            looped = LoopbackNic::new(spec).map_err(|e| format!("the loopback NIC: {e}"))?;
            println!(
                "uio-driver: loopback: {} datagrams from {} to {} circle through the reflector",
                spec.count, spec.peer, spec.client_ip
            );
            &mut looped
        }
        None => {
            packet = open_nic(&args)?;
            &mut packet
        }
    };
    signals::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    uio.platform
        .enable_irqs()
        .map_err(|e| format!("enabling UIO interrupts: {e}"))?;
    // A restarted driver (the guest rebooted, or this process was restarted) must have virt_rx
    // and virt_tx rebuild its queues before it makes any queue handle.
    let m = &uio.memory;
    let words = DriverWords::new(
        m.rx_free.region(),
        m.rx_capacity,
        m.tx_free.region(),
        m.tx_capacity,
    );
    if connect(words, &mut uio.platform, &mut || !signals::stop_requested())
        .map_err(|e| format!("reconnecting: {e}"))?
    {
        println!("uio-driver: reconnected: virt_rx and virt_tx reset the queues");
    }
    let mut driver = Driver::new(uio.memory.queues());
    driver.set_busy_poll(std::time::Duration::from_micros(args.busy_poll_us));
    println!(
        "uio-driver: ready iface={} rx_capacity={} tx_capacity={} tx_regions={}",
        args.iface,
        uio.memory.rx_capacity.get(),
        uio.memory.tx_capacity.get(),
        driver.tx_regions()
    );
    let mut stats = match &uio.stats {
        Some(page) => Some(stats_writer(page.region())?),
        None => None,
    };
    let mut nic_counters = NicCounters::default();
    let mut wakeups = 0u32;
    let report = |c: &Counters, nic: &mut dyn Nic, nic_counters: &mut NicCounters| {
        nic_counters.take_drops(nic);
        println!(
            "uio-driver: counters {c} rx_ring_drops={}",
            nic_counters.rx_ring_drops
        );
    };
    let mut every = Every::secs(args.report_every);
    let result = driver.run(nic, &mut uio.platform, &mut |c, nic| {
        if signals::take_usr1() || every.due() {
            report(c, nic, &mut nic_counters);
        }
        if let Some(stats) = stats.as_mut() {
            // The ring's drop count costs a system call: every STATS_DROPS_EVERY wake-ups (under
            // load a wake-up is a batch of up to 64 frames).
            wakeups = wakeups.wrapping_add(1);
            if wakeups.is_multiple_of(STATS_DROPS_EVERY) {
                nic_counters.take_drops(nic);
            }
            counters::publish(stats, c, &nic_counters);
        }
        !signals::stop_requested()
    });
    report(driver.counters(), nic, &mut nic_counters);
    if let Some(stats) = stats.as_mut() {
        counters::publish(stats, driver.counters(), &nic_counters);
    }
    result.map_err(|e| format!("driver loop: {e}"))
}

/// `--report-every`: due once every so many seconds (never for 0), checked when the loop wakes.
struct Every {
    period: std::time::Duration,
    last: std::time::Instant,
}

impl Every {
    fn secs(secs: u64) -> Every {
        Every {
            period: std::time::Duration::from_secs(secs),
            last: std::time::Instant::now(),
        }
    }

    /// Whether a period has passed since it was last due (and if so, starts the next).
    fn due(&mut self) -> bool {
        let due = !self.period.is_zero() && self.last.elapsed() >= self.period;
        if due {
            self.last = std::time::Instant::now();
        }
        due
    }
}

/// Wake-ups between two reads of the packet ring's drop count for the stats page.
const STATS_DROPS_EVERY: u32 = 16;

/// The counters page ([`uio_driver::names::STATS`]) as component
/// [`uio_driver::names::STATS_COMPONENT`], laid out as host mode's stand-in lays out its page
/// ([`counters::lay_out`]).
fn stats_writer(page: sddf::shm::Region<'_>) -> Result<StatsWriter<'_>, String> {
    let mut w = StatsWriter::new(page, uio_driver::names::STATS_COMPONENT)
        .map_err(|e| format!("the stats page: {e}"))?;
    counters::lay_out(&mut w).map_err(|e| format!("the stats page: {e}"))?;
    Ok(w)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uio-driver: error: {e}");
            ExitCode::FAILURE
        }
    }
}
