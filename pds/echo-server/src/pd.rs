//! The Microkit protection domain: reads its configs, connects, and runs the echo core on every
//! notification. `src/main.rs` is just `microkit::protection_domain!(echo_server::pd::EchoPd)`.
//!
//! What the system must give this PD:
//! * `.net_client_config` (128 bytes, sDDF `net_client_config_t`, written by sdfgen or the host
//!   runner) with the six regions mapped rw at their vaddrs;
//! * `.echo_config` (16 bytes, [`crate::config`]): static address or DHCP;
//! * channels `rx.id` (copier) and `tx.id` (virt_tx) from the client config;
//! * a stack of at least 64 KiB (the smoltcp interface and the device's two 2 KiB frame buffers
//!   live in the PD state); the socket buffers are statics (about 900 KiB of `.bss`, 15 KiB of
//!   `.data`).
//!
//! Not yet here: the seL4 idle-cycle source (the utilisation daemon reports 0, 0 on seL4, as
//! sDDF's client1 does) and the timer PD. Until the timer exists, time stands still on seL4
//! ([`StoppedClock`]): ARP, ICMP, UDP and TCP echo work because every reply is caused by a frame
//! (ACKs are immediate), but TCP retransmissions of our own and DHCP retries never happen.
use microkit::{Channel, ChannelSet, Handler};
use net_client::{NetDevice, Regions, Signal};
use sddf::config::NetClientConfig;

use crate::config::EchoConfig;
use crate::{Buffers, Clock, EchoServer, Sockets, TakeOnce};

microkit::config_section!(".net_client_config", NET_CLIENT_CONFIG: [u8; 128]);
microkit::config_section!(".echo_config", ECHO_CONFIG: [u8; 16]);

static SOCKETS: TakeOnce<Sockets<'static>> = TakeOnce::new(Sockets::new());
static BUFFERS: TakeOnce<Buffers> = TakeOnce::new(Buffers::new());

/// A [`Clock`] that stands still, until the timer PD exists (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct StoppedClock;

impl Clock for StoppedClock {
    fn now_us(&mut self) -> u64 {
        0
    }
}

#[cfg(target_os = "linux")]
type PdCycles = crate::host::ProcStat;
#[cfg(not(target_os = "linux"))]
type PdCycles = crate::NoCycles;
#[cfg(target_os = "linux")]
type PdClock = crate::host::MonotonicClock;
#[cfg(not(target_os = "linux"))]
type PdClock = StoppedClock;

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
        let (dev, _) = NetDevice::connect(cfg, regions)
            .unwrap_or_else(|e| panic!("{}: {e}", microkit::pd_name()));
        let sockets = SOCKETS.take().expect("init runs once");
        let buffers = BUFFERS.take().expect("init runs once");
        let server = EchoServer::new(
            dev,
            ip,
            sockets,
            buffers,
            PdCycles::default(),
            PdClock::default(),
        );
        let mut pd = EchoPd {
            server,
            rx: Channel::new(cfg.rx.id),
            tx: Channel::new(cfg.tx.id),
        };
        microkit::debug_println!("{}: echo server up ({ip:?})", microkit::pd_name());
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
        self.server.process(&mut signal);
    }
}

#[allow(unsafe_code)]
fn regions(cfg: &NetClientConfig) -> Result<Regions<'static>, net_client::Error> {
    // SAFETY: the system description maps each of the client's six regions rw at the vaddr its
    // `.net_client_config` names, with that size, for the PD's whole life (seL4: Microkit maps;
    // host: the runner maps every region at its SDF vaddr), and this PD touches them only through
    // these Region views.
    unsafe { Regions::at_config_vaddrs(cfg) }
}
