//! The Microkit protection domain: reads its configs, connects, and runs the echo core on every
//! notification. `src/main.rs` is just `microkit::protection_domain!(echo_server::pd::EchoPd)`.
//!
//! What the system must give this PD:
//! * `.net_client_config` (128 bytes, sDDF `net_client_config_t`, written by sdfgen or the host
//!   runner) with the six regions mapped rw at their vaddrs;
//! * `.echo_config` (16 bytes, [`crate::config`]): static address or DHCP;
//! * optionally `.echo_peers` (96 bytes, [`echo_api::peers`]): the peers this PD also sends
//!   echo requests to ([`crate::origin`]); all zero (not written) leaves the role off. With it,
//!   the stats page holds the role's counters after the device's, and each round prints a
//!   line per peer;
//! * channels `rx.id` (copier) and `tx.id` (virt_tx) from the client config;
//! * a stack of at least 64 KiB (the smoltcp interface and the device's two 2 KiB frame buffers
//!   live in the PD state); the socket buffers are statics (the aarch64 ELF has about 1.8 MiB of
//!   `.bss`, 300 KiB of it the originating role's and 60 KiB the messaging role's, and 160 KiB
//!   of `.data`, 130 KiB of it the messaging role's node, built at compile time so that it is
//!   never on the stack).
//!
//! On seL4 also:
//! * `.timer_client_config` (6 bytes, sDDF `timer_client_config_t`,
//!   [`crate::timer_clock::TimerClientConfig`]): the `pp` channel to the timer PD, which
//!   notifies this PD on the same channel when the timeout it armed for smoltcp's next deadline
//!   has passed ([`crate::timer_clock::TimerClock`]), so TCP retransmits, closed connections
//!   time out and DHCP retries. The time itself is read from the generic timer's counter
//!   (`CNTPCT_EL0`, readable at EL0), which is what the timer PD answers `GET_TIME` from: a
//!   protected call per reading cost two address-space switches each time the server woke;
//! * optionally a read-only `<map>` of the idle PD's counters region (`pds/idle`) with
//!   `setvar_vaddr="idle_counters"`: the utilisation daemon then reports idle ticks from there
//!   and total ticks from the generic timer's counter (`CNTPCT_EL0`), both in counter ticks.
//!   Without the map it reports 0, 0, as sDDF's client1 does.
//!
//! On the host, time is `CLOCK_MONOTONIC` (`host::MonotonicClock`, without wake-ups)
//! and utilisation comes from `/proc/stat`; the timer section is not used there.
use microkit::{Channel, ChannelSet, Handler};
use net_client::{NetDevice, Regions, Signal};
use netvm_api::stats::StatsWriter;
use sddf::config::NetClientConfig;

use crate::config::EchoConfig;
use crate::{Buffers, EchoServer, Sockets, TakeOnce};

microkit::config_section!(".net_client_config", NET_CLIENT_CONFIG: [u8; 128]);
microkit::config_section!(".echo_config", ECHO_CONFIG: [u8; 16]);
microkit::config_section!(".echo_peers", ECHO_PEERS: [u8; echo_api::peers::SECTION_BYTES]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);
microkit::config_section!(".timer_client_config", TIMER_CLIENT_CONFIG: [u8; 6]);
microkit::setvar!(
    /// Where the idle PD's counters region is mapped, 0 if it is not (seL4). Host mode patches
    /// it too when the system maps the region, but takes utilisation from `/proc/stat`.
    idle_counters
);

static SOCKETS: TakeOnce<Sockets<'static>> = TakeOnce::new(Sockets::new());
static BUFFERS: TakeOnce<Buffers> = TakeOnce::new(Buffers::new());
/// The messaging role's node (about 130 KiB), built at compile time so that no stack ever holds
/// one; started over to join the configured master when the role is on.
static NODE: TakeOnce<node_msg::Node> = TakeOnce::new(node_msg::Node::new(
    core::net::SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0),
    [0; 6],
    0,
    node_msg::Config::DEFAULT,
));

#[cfg(target_os = "linux")]
type PdCycles = crate::host::ProcStat;
#[cfg(target_os = "linux")]
type PdClock = crate::timer_clock::TimerClock<HostTimer>;
#[cfg(not(target_os = "linux"))]
use sel4::{IdleCycles as PdCycles, PdClock};

/// A protected call on the timer channel.
pub struct PpcTimer(pub Channel);

impl crate::timer_clock::TimerCall for PpcTimer {
    fn call(&mut self, label: u64, mr0: u64) -> Option<u64> {
        microkit::mr_set(0, mr0);
        let reply = self.0.pp_call(microkit::MessageInfo::new(label, 1));
        (reply.count() >= 1).then(|| microkit::mr_get(0))
    }
}

/// Host mode's timer: the time from `CLOCK_MONOTONIC` in this process (a protected call per
/// reading would cost a futex round trip in host mode; the timer PD reads the same clock), the
/// timeouts from the timer PD when the system gives the client one (`.timer_client_config`).
#[cfg(target_os = "linux")]
pub struct HostTimer {
    start: std::time::Instant,
    timer: Option<PpcTimer>,
}

#[cfg(target_os = "linux")]
impl crate::timer_clock::TimerCall for HostTimer {
    fn call(&mut self, label: u64, mr0: u64) -> Option<u64> {
        if label == sddf::timer::GET_TIME {
            return u64::try_from(self.start.elapsed().as_nanos()).ok();
        }
        self.timer.as_mut()?.call(label, mr0)
    }
}

/// Host: utilisation from `/proc/stat`; timeouts from the timer PD if there is one.
#[cfg(target_os = "linux")]
fn clock_and_cycles() -> (PdClock, PdCycles) {
    let timer = crate::timer_clock::TimerClientConfig::parse(&TIMER_CLIENT_CONFIG.bytes())
        .ok()
        .map(Channel::new)
        .filter(|c| c.can_pp_call());
    if timer.is_none() {
        microkit::debug_println!(
            "{}: no timer channel ({}): the server runs only when frames arrive",
            microkit::pd_name(),
            crate::timer_clock::SECTION
        );
    }
    let clock = HostTimer {
        start: std::time::Instant::now(),
        timer: timer.map(PpcTimer),
    };
    (
        crate::timer_clock::TimerClock::new(clock),
        PdCycles::default(),
    )
}

/// seL4: the timer channel from `.timer_client_config`, the idle counters from the setvar.
#[cfg(not(target_os = "linux"))]
fn clock_and_cycles() -> (PdClock, PdCycles) {
    let name = microkit::pd_name();
    let timer = crate::timer_clock::TimerClientConfig::parse(&TIMER_CLIENT_CONFIG.bytes())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let timer = Channel::new(timer);
    if !timer.can_pp_call() {
        panic!(
            "{name}: {}: channel {} to the timer has no pp on this side",
            crate::timer_clock::SECTION,
            timer.id()
        );
    }
    let cycles = sel4::idle_cycles(idle_counters.get());
    (
        crate::timer_clock::TimerClock::new(sel4::CounterTimer::new(PpcTimer(timer))),
        cycles,
    )
}

/// The seL4 sides of the clock and the cycle source.
#[cfg(not(target_os = "linux"))]
mod sel4 {
    use netvm_api::idle::IdleCounters;

    use super::PpcTimer;
    use crate::timer_clock::TimerClock;
    use crate::CycleSource;

    /// The clock: the counter for the time, the timer PD for timeouts.
    pub type PdClock = TimerClock<CounterTimer>;

    /// `GET_TIME` answered here, from the counter the timer PD reads (`CNTPCT_EL0`, converted
    /// as it converts it), every other call passed to the timer PD.
    pub struct CounterTimer {
        timer: PpcTimer,
        freq: u64,
    }

    impl CounterTimer {
        /// Reads the counter frequency once.
        pub fn new(timer: PpcTimer) -> Self {
            CounterTimer {
                timer,
                freq: pd_support::counter::frequency(),
            }
        }
    }

    impl crate::timer_clock::TimerCall for CounterTimer {
        fn call(&mut self, label: u64, mr0: u64) -> Option<u64> {
            if label == sddf::timer::GET_TIME && self.freq != 0 {
                return Some(sddf::timer::ticks_to_ns(
                    pd_support::counter::now(),
                    self.freq,
                ));
            }
            self.timer.call(label, mr0)
        }
    }

    /// Idle ticks from the idle PD, total ticks from the counter itself (so that the total
    /// advances even while the idle PD never runs).
    pub struct IdleCycles(Option<&'static IdleCounters>);

    impl CycleSource for IdleCycles {
        fn sample(&mut self) -> (u64, u64) {
            match self.0 {
                Some(c) => (c.idle_ticks(), pd_support::counter::now()),
                None => (0, 0),
            }
        }
    }

    /// The cycle source for the counters region at `vaddr` (0: none mapped).
    #[allow(unsafe_code)]
    pub fn idle_cycles(vaddr: u64) -> IdleCycles {
        if vaddr == 0 || !vaddr.is_multiple_of(8) {
            microkit::debug_println!(
                "{}: no idle counters region (setvar idle_counters = {vaddr:#x}): utilisation reads 0,0",
                microkit::pd_name()
            );
            return IdleCycles(None);
        }
        // SAFETY: the system maps the idle PD's counters region (at least 24 bytes, see
        // `netvm_api::idle::REGION_SIZE`) at this 8-byte aligned address for the PD's whole life; it holds
        // only atomics, for which any bit pattern is valid, and this PD only loads them.
        IdleCycles(Some(unsafe { &*(vaddr as *const IdleCounters) }))
    }
}

/// lib_sddf_lwip's rule for its two notifications: the first goes with the PD's next receive
/// (deferred, saving a syscall), a different one is sent at once since the deferred slot holds
/// only one, and a repeat of the pending one is already on its way.
struct PdSignal {
    rx: Channel,
    tx: Channel,
    deferred: Option<Channel>,
}

impl PdSignal {
    fn notify(&mut self, ch: Channel) {
        match self.deferred {
            None => {
                ch.deferred_notify();
                self.deferred = Some(ch);
            }
            Some(pending) if pending == ch => {}
            Some(_) => ch.notify(),
        }
    }
}

impl Signal for PdSignal {
    fn notify_rx(&mut self) {
        self.notify(self.rx);
    }
    fn notify_tx(&mut self) {
        self.notify(self.tx);
    }
}

/// The echo-server PD.
pub struct EchoPd {
    server: EchoServer<'static, PdCycles, PdClock>,
    rx: Channel,
    tx: Channel,
    /// The address last reported (DHCP changes it).
    reported: Option<core::net::Ipv4Addr>,
}

/// The config blob, 8-byte aligned as `sddf::config::parse` requires.
#[repr(C, align(8))]
struct Aligned([u8; 128]);

impl Handler for EchoPd {
    fn init() -> Self {
        let blob = Aligned(NET_CLIENT_CONFIG.bytes());
        let cfg: &NetClientConfig =
            sddf::config::parse(&blob.0).unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        let ip = EchoConfig::parse(&ECHO_CONFIG.bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        let regions = regions(cfg).unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        let peers = echo_api::peers::EchoPeersSection::parse(&ECHO_PEERS.bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        let (mut dev, _) = NetDevice::connect(cfg, regions)
            .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        let stats = stats_writer();
        let sockets = SOCKETS.take().expect("init runs once");
        let buffers = BUFFERS.take().expect("init runs once");
        let (clock, cycles) = clock_and_cycles();
        let server = match peers {
            None => {
                if let Some((writer, _)) = stats {
                    dev.attach_stats(writer)
                        .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
                }
                EchoServer::new(dev, ip, sockets, buffers, cycles, clock)
            }
            Some(plan) => {
                let mut server = EchoServer::new(dev, ip, sockets, buffers, cycles, clock);
                server.originate(&plan, origin_stats(stats, &plan), log_round);
                if let Some(master) = plan.msg_master {
                    let node = NODE.take().expect("init runs once");
                    server.message(node, master, &plan, log_msg);
                }
                server
            }
        };
        let mut pd = EchoPd {
            server,
            rx: Channel::new(cfg.rx.id),
            tx: Channel::new(cfg.tx.id),
            reported: None,
        };
        // The counters address is printed on both targets: on the host nothing else reads the
        // setvar, and an unread static is dropped from the executable, whose symbol the runner
        // must patch.
        let restarted = if pd.server.net_counters().reconnect_waiting != 0 {
            ", restarted: waiting for the copier and virt_tx to reset its queues"
        } else {
            ""
        };
        microkit::debug_println!(
            "{}: echo server up ({ip:?}, idle counters at {:#x}{restarted})",
            microkit::pd_name(),
            idle_counters.get()
        );
        // Hand the copier our RX-free request and send DHCP's first message.
        pd.run();
        pd
    }

    fn notified(&mut self, _channels: ChannelSet) {
        // Like every sDDF component, do all the work whichever channel it was.
        self.run();
    }
}

impl EchoPd {
    fn run(&mut self) {
        let mut signal = PdSignal {
            rx: self.rx,
            tx: self.tx,
            deferred: None,
        };
        let waiting = self.server.net_counters().reconnect_waiting;
        self.server.process(&mut signal);
        if waiting != 0 && self.server.net_counters().reconnect_waiting == 0 {
            microkit::debug_println!("{}: reconnected", microkit::pd_name());
        }
        let addr = self.server.ipv4_addr();
        if addr != self.reported {
            self.reported = addr;
            match addr {
                Some(a) => microkit::debug_println!("{}: address {a}", microkit::pd_name()),
                None => microkit::debug_println!("{}: no address", microkit::pd_name()),
            }
        }
    }
}

/// The stats page `.netvm_stats` names, if it names one, and its size.
fn stats_writer() -> Option<(StatsWriter<'static>, usize)> {
    use zerocopy::FromBytes;
    #[allow(unsafe_code)]
    // SAFETY: the system description maps the stats region `.netvm_stats` names rw at that
    // vaddr, with that size, for the PD's whole life (`sdf::net::stats_sections` derives the
    // section from that very map), and this PD touches it only through `Region`s.
    let mem = unsafe { sddf::shm::IdentityMapped::new() };
    let section = STATS.bytes();
    let writer = StatsWriter::from_section(&section, &mem, microkit::pd_name())
        .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()))?;
    // `from_section` read the same bytes as a RegionResource.
    let len =
        sddf::config::RegionResource::read_from_bytes(&section).map_or(0, |r| r.size as usize);
    Some((writer, len))
}

/// The stats page laid out for the originating role (the device's counters, then the role's).
fn origin_stats(
    stats: Option<(StatsWriter<'static>, usize)>,
    plan: &echo_api::peers::PeerPlan,
) -> Option<(StatsWriter<'static>, usize)> {
    let peers = plan.peers().len();
    let load = plan.load;
    let page = stats.map(|(mut writer, len)| {
        let msg = plan.msg_master.is_some();
        let fit = crate::origin_io::lay_out_stats(&mut writer, len, peers, msg)
            .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        (writer, fit)
    });
    microkit::debug_println!(
        "{}: originating to {peers} peers (udp {}x{} B at {}/s, tcp {} B, every {} ms); {} in the stats page",
        microkit::pd_name(),
        load.udp_count,
        load.udp_size,
        load.udp_rate,
        load.tcp_bytes,
        load.period_ms,
        page.as_ref().map_or(0, |p| p.1)
    );
    if let Some(master) = plan.msg_master {
        microkit::debug_println!(
            "{}: node messaging through the master at {master}",
            microkit::pd_name()
        );
    }
    page
}

/// A line of the messaging role on the console.
fn log_msg(line: &crate::msg::MsgLine<'_>) {
    microkit::debug_println!("{}: {line}", microkit::pd_name());
}

/// A round's line on the console.
fn log_round(line: &crate::origin::RoundLine) {
    microkit::debug_println!("{}: {line}", microkit::pd_name());
}

#[allow(unsafe_code)]
fn regions(cfg: &NetClientConfig) -> Result<Regions<'static>, net_client::Error> {
    // SAFETY: the system description maps each of the client's six regions rw at the vaddr its
    // `.net_client_config` names, with that size, for the PD's whole life (seL4: Microkit maps;
    // host: the runner maps every region at its SDF vaddr), and this PD touches them only through
    // these Region views.
    unsafe { Regions::at_config_vaddrs(cfg) }
}
