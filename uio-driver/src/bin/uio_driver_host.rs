//! `uio_driver_host`: host mode's stand-in for the driver VM (see `netvm run --driver-vm-iface`).
//!
//! The runner starts it as the PD that owns the virtual machine. It keeps that PD's channels and
//! maps (the driver-side queues, described by the `.net_driver_config` sDDF derived for the
//! VMM, read by the guest driver's own [`DriverConfig`] reader) and additionally maps, at the guest addresses, the data regions the guest would reach
//! through UIO, named as the uio-driver looks them up (`rx_data`, `tx_data<i>`). The interface
//! comes in `.netvm_driver_host`. The same driver core as in the guest then bridges the
//! interface to the queues on a thread of its own; doorbells are Microkit notifications and the
//! PD's event loop turns notifications from virt_rx / virt_tx into the driver's wake-ups.
//!
//! Restarted by `netvm run --on-fault restart`, it finds the queues as the dead instance left
//! them and asks virt_rx and virt_tx for a reset ([`uio_driver::driver::connect`]) on the driver
//! thread, before building its queue handles: the answers arrive as notifications, which only
//! the PD's event loop (after `init`) can take.
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use microkit::host::manifest::Manifest;
use microkit::{Channel, ChannelSet, Handler};
use netvm_api::reconnect::ControlWords;
use sddf::config::NetDriverConfig;
use sddf::queue::{Capacity, DrainSide, FillSide, Queue};
use sddf::shm::{AddressSpace, IdentityMapped, Region};
use uio_driver::config::DriverConfig;
use uio_driver::counters::NicCounters;
use uio_driver::driver::{connect, Driver, DriverQueues, DriverWords};
use uio_driver::host::{callback_platform, Doorbell, NotifyHandle};
use uio_driver::names;
use uio_driver::packet::{PacketConfig, PacketNic};

microkit::config_section!(".net_driver_config", CONFIG: [u8; core::mem::size_of::<NetDriverConfig>()]);
microkit::config_section!(".netvm_driver_host", HOST: [u8; netvm_api::driver_host::BYTES]);
microkit::config_section!(".netvm_stats", STATS: [u8; 16]);

static STOP: AtomicBool = AtomicBool::new(false);

/// How often the packet socket's drop count is read (published with the driver's counters).
const RING_POLL: Duration = Duration::from_millis(20);

struct Pd {
    notify: NotifyHandle,
    rx_channel: u8,
    tx_channel: u8,
}

fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("uio_driver_host: {what}");
    std::process::exit(2);
}

fn region(mem: &IdentityMapped, manifest: &Manifest, name: &str) -> Option<Region<'static>> {
    let r = manifest.regions.iter().find(|r| r.name == name)?;
    mem.region(r.vaddr, r.size)
}

fn queues(
    mem: &IdentityMapped,
    conn: &sddf::config::ConnectionResource,
    cap: Capacity,
    what: &str,
) -> (Queue<'static>, Queue<'static>) {
    let q = |r: &sddf::config::RegionResource| {
        let region = mem
            .region(r.vaddr, r.size)
            .unwrap_or_else(|| fail(format!("{what} queue at {:#x} is not mapped", r.vaddr)));
        Queue::new(region, cap).unwrap_or_else(|e| fail(format!("{what} queue: {e}")))
    };
    (q(&conn.free_queue), q(&conn.active_queue))
}

/// The reconnect words in the free queue region of `conn` (`None` if it has no room for them).
fn words(
    mem: &IdentityMapped,
    conn: &sddf::config::ConnectionResource,
) -> Option<ControlWords<'static>> {
    let cap = Capacity::new(conn.num_buffers.into()).ok()?;
    ControlWords::new(
        mem.region(conn.free_queue.vaddr, conn.free_queue.size)?,
        cap,
    )
}

/// The driver's counters go to the VMM PD's stats region when the system gives it one (host
/// mode; a driver VM's guest publishes the same groups in its own page, `netvm_api::uio::STATS`).
fn stats_writer(mem: &IdentityMapped) -> Option<netvm_api::stats::StatsWriter<'static>> {
    let mut w =
        netvm_api::stats::StatsWriter::from_section(STATS.as_bytes(), mem, microkit::pd_name())
            .unwrap_or_else(|e| fail(e))?;
    uio_driver::counters::lay_out(&mut w).unwrap_or_else(|e| fail(e));
    Some(w)
}

impl Handler for Pd {
    fn init() -> Self {
        // The same reader as the guest's driver, over this PD's own section.
        let config = DriverConfig::parse(CONFIG.as_bytes(), "section .net_driver_config")
            .unwrap_or_else(|e| fail(e));
        let conns = config.blob();
        let iface = netvm_api::driver_host::interface(HOST.as_bytes())
            .unwrap_or_else(|| fail(".netvm_driver_host names no interface"))
            .to_owned();
        let manifest = Manifest::from_env().unwrap_or_else(|e| fail(e));
        #[allow(unsafe_code)]
        // SAFETY: the runtime mapped every region of the manifest (and so every queue the config
        // names, which are this PD's own maps) at its vaddr before `init`, for the process's
        // life, and the driver touches them only through sddf::shm::Region.
        let mem = unsafe { IdentityMapped::new() };
        let (rx_free, rx_active) = queues(&mem, &conns.virt_rx, config.rx_capacity, "virt_rx");
        let (tx_free, tx_active) = queues(&mem, &conns.virt_tx, config.tx_capacity, "virt_tx");
        let rx_data = region(&mem, &manifest, names::RX_DATA)
            .unwrap_or_else(|| fail(format!("no '{}' region in the manifest", names::RX_DATA)));
        let tx_data: Vec<Region<'static>> = (0..names::MAX_TX_REGIONS)
            .map_while(|i| region(&mem, &manifest, &names::tx_data(i)))
            .collect();
        if tx_data.is_empty() {
            fail(format!("no '{}' region in the manifest", names::tx_data(0)));
        }
        let mut nic = PacketNic::open(&iface, PacketConfig::default()).unwrap_or_else(|e| fail(e));
        for w in &nic.warnings {
            eprintln!("uio_driver_host: warning: {w}");
        }
        let (rx_channel, tx_channel) = (conns.virt_rx.id, conns.virt_tx.id);
        let (mut platform, notify) = callback_platform(Box::new(move |bell| match bell {
            Doorbell::Rx => Channel::new(rx_channel).notify(),
            Doorbell::Tx => Channel::new(tx_channel).notify(),
        }))
        .unwrap_or_else(|e| fail(e));
        let driver_words = DriverWords {
            rx: words(&mem, &conns.virt_rx),
            tx: words(&mem, &conns.virt_tx),
        };
        let (rx_capacity, tx_capacity) = (config.rx_capacity.get(), config.tx_capacity.get());
        let mut stats = stats_writer(&mem);
        std::thread::Builder::new()
            .name("driver".into())
            .spawn(move || {
                let restarted = connect(driver_words, &mut platform, &mut || {
                    !STOP.load(Ordering::Relaxed)
                })
                .unwrap_or_else(|e| fail(format!("reconnecting: {e}")));
                if restarted {
                    println!("uio-driver: reconnected: virt_rx and virt_tx reset the queues");
                }
                let mut driver = Driver::new(DriverQueues {
                    rx: FillSide::new(rx_free, rx_active),
                    rx_data,
                    tx: DrainSide::new(tx_free, tx_active),
                    tx_data,
                });
                println!(
                    "uio-driver: ready iface={iface} rx_capacity={rx_capacity} \
                     tx_capacity={tx_capacity} tx_regions={} (host mode)",
                    driver.tx_regions()
                );
                let mut nic_counters = NicCounters::default();
                let mut last_poll = Instant::now();
                let result = driver.run(&mut nic, &mut platform, &mut |counters, nic| {
                    if let Some(stats) = stats.as_mut() {
                        // One getsockopt per RING_POLL, not per wake-up.
                        if last_poll.elapsed() >= RING_POLL {
                            nic_counters.take_drops(nic);
                            last_poll = Instant::now();
                        }
                        uio_driver::counters::publish(stats, counters, &nic_counters);
                    }
                    !STOP.load(Ordering::Relaxed)
                });
                println!("uio-driver: counters {}", driver.counters());
                if let Err(e) = result {
                    fail(format!("driver loop: {e}"));
                }
            })
            .unwrap_or_else(|e| fail(e));
        Pd {
            notify,
            rx_channel,
            tx_channel,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(Channel::new(self.rx_channel)) {
            self.notify.notify_rx().unwrap_or_else(|e| fail(e));
        }
        if channels.contains(Channel::new(self.tx_channel)) {
            self.notify.notify_tx().unwrap_or_else(|e| fail(e));
        }
    }
}

microkit::protection_domain!(Pd);
