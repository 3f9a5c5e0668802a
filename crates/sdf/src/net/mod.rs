//! The sDDF 0.7 network config blobs of a system, derived from its system description alone.
//!
//! sdfgen writes a network system's `.system` file *and* one `.data` blob per PD config section;
//! the Microkit build patches the blobs into the ELFs. netvm derives the same blobs from the
//! system description, so a hand-written or extended `system.xml` works and sdfgen is not needed
//! at build time. The sdfgen-generated system is the reference: [`derive()`] gives byte-identical
//! blobs for it (`tests/net.rs`).
//!
//! # What goes in
//!
//! A validated [`SystemDescription`] plus a [`NetSystemSpec`]: which PDs are the driver, virt_rx
//! and virt_tx, the clients in order (the index they get in virt_rx's and virt_tx's client
//! arrays, and so the `oid`/MAC-match order) with their optional copier and MAC address, and the
//! queue capacities. Capacities are trusted configuration and come only from the spec — the
//! region sizes are merely *checked* to hold them. Defaults are sdfgen's: 512 RX DMA buffers,
//! 512 RX and TX buffers per client, and a driver TX queue of the clients' TX buffers summed and
//! rounded up to a power of two. [`NetSystemSpec::infer`] builds the spec from the region naming
//! convention below plus a MAC list ([`parse_mac_list`]: `client0=52:54:01:00:00:10,client1=…`,
//! the format of a command-line option or a file with one entry per line); MAC addresses live
//! nowhere in a system description, and sdfgen's own random ones only in its blobs.
//!
//! # Where each field comes from
//!
//! Everything is sdfgen's naming convention (`sdfgen` 0.35, `src/sddf/net.zig`), with `{dev}` the
//! device name ([`NetSystemSpec::device`]: the DT node name, or `generic` without one):
//!
//! | region | holds |
//! |---|---|
//! | `{dev}/net/queue/{server}/{client}/free`, `…/active` | the queue pair between two PDs |
//! | `{dev}/net/rx/data/device` | the RX DMA buffers (needs `phys_addr`: virt_rx's `io_addr`) |
//! | `{dev}/net/rx/virt_metadata` | virt_rx's per-buffer reference counts (1 byte each) |
//! | `{dev}/net/rx/data/client/{client}` | a copier's client's private RX buffers |
//! | `{dev}/net/tx/data/client/{client}` | a client's TX buffers (needs `phys_addr`) |
//!
//! The queue pairs are driver→virt_rx, driver→virt_tx, virt_rx→copier (or virt_rx→client without
//! a copier), copier→client and virt_tx→client (server first). Every region in a config is
//! `{vaddr of the PD's own <map>, size of the region}`; a connection's `id` is the PD's end of
//! the one `<channel>` between the two PDs; `io_addr` is the region's `phys_addr`. Only a PD's
//! own `<map>`s count (not those of a virtual machine it manages), and a region mapped twice into
//! one PD, or a second channel between the same two PDs, is an error because the config could
//! only hold one of them.
//!
//! `.device_resources` of the driver lists [`NetSystemSpec::device_regions`] (each: the driver's
//! map of the region, the region's size and `phys_addr`) and [`NetSystemSpec::device_irqs`] (each
//! the channel id of the driver's `<irq>` with that number). Both are empty for the generic
//! driver sdfgen makes without a device node — the driver-VM case, where the VMM is the driver.
//!
//! # Not covered
//!
//! sDDF's vswitch (netvm's own local delivery between clients is [`vswitch_sections`]), RX-only
//! or TX-only clients, and clients with more than one MAC address or TX region: sdfgen's Python
//! binding cannot make the last two, and netvm's system uses none.

mod buffers;
mod error;
mod infer;
mod observe;
mod sdfgen;
mod vswitch;

use std::collections::HashMap;

use sddf::config::{
    ConnectionResource, DeviceRegionResource, DeviceResources, MacAddr, NetClientConfig,
    NetCopyConfig, NetDriverConfig, NetVirtRxConfig, NetVirtTxConfig, RegionResource,
    VirtTxDataRegion, DEVICE_MAGIC, MAX_CLIENTS, NET_MAGIC,
};
use sddf::queue::{queue_bytes, Capacity};
use sddf::NET_BUFFER_SIZE;
use zerocopy::{FromZeros, IntoBytes};

use crate::model::{Map, MemoryRegion, ProtectionDomain, SystemDescription};
use crate::Section;

pub use buffers::BufferCounts;
pub use error::NetError;
pub use infer::{driver_vm_regions, format_mac, parse_mac, parse_mac_list};
pub use observe::{
    buffer_pools, buffer_pools_of, options_sections, sdfgen_options_sections, stats_sections,
    BufferPool, QueueRef, STATS_PREFIX,
};
pub use sdfgen::sdfgen_blob_sections;
pub use vswitch::vswitch_sections;

/// sdfgen's fixed `rx_buffers` / `tx_buffers` (its Python binding does not expose them).
pub const DEFAULT_BUFFERS: u16 = 512;

/// ELF section of the driver's config.
pub const DRIVER_SECTION: &str = ".net_driver_config";
/// ELF section of the driver's device resources.
pub const DEVICE_RESOURCES_SECTION: &str = ".device_resources";
/// ELF section of virt_rx's config.
pub const VIRT_RX_SECTION: &str = ".net_virt_rx_config";
/// ELF section of virt_tx's config.
pub const VIRT_TX_SECTION: &str = ".net_virt_tx_config";
/// ELF section of a copier's config.
pub const COPY_SECTION: &str = ".net_copy_config";
/// ELF section of a client's config.
pub const CLIENT_SECTION: &str = ".net_client_config";

/// Which PDs form a network system, and the capacities of its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSystemSpec {
    /// The `{dev}` prefix of every region name: the DT node name, or `generic`.
    pub device: String,
    /// The driver PD (the VMM PD for a driver VM).
    pub driver: String,
    /// The RX virtualiser PD.
    pub virt_rx: String,
    /// The TX virtualiser PD.
    pub virt_tx: String,
    /// RX DMA buffers: the capacity of the driver↔virt_rx and virt_rx↔copier queues.
    pub rx_buffers: u16,
    /// Clients in virt_rx / virt_tx index order.
    pub clients: Vec<NetClientSpec>,
    /// Regions of the driver's device (registers, rings), in `.device_resources` order.
    pub device_regions: Vec<String>,
    /// Hardware IRQ numbers of the driver's device, in `.device_resources` order.
    pub device_irqs: Vec<u64>,
}

/// One client of a [`NetSystemSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetClientSpec {
    /// The client PD.
    pub name: String,
    /// Its RX copier PD; `None` for a trusted client that reads the DMA region directly.
    pub copier: Option<String>,
    /// Its MAC address (virt_rx delivers unicast frames to it by this address).
    pub mac: MacAddr,
    /// Capacity of the copier→client RX queues. Without a copier the client uses virt_rx's
    /// queue, whose capacity is [`NetSystemSpec::rx_buffers`], and this must equal it.
    pub rx_buffers: u16,
    /// Capacity of the virt_tx→client TX queues and buffers in its TX data region.
    pub tx_buffers: u16,
}

impl NetClientSpec {
    /// A client with sdfgen's default capacities.
    pub fn new(name: &str, copier: Option<&str>, mac: MacAddr) -> NetClientSpec {
        NetClientSpec {
            name: name.to_owned(),
            copier: copier.map(str::to_owned),
            mac,
            rx_buffers: DEFAULT_BUFFERS,
            tx_buffers: DEFAULT_BUFFERS,
        }
    }
}

impl NetSystemSpec {
    /// A spec without clients or device resources, with sdfgen's default capacities.
    pub fn new(device: &str, driver: &str, virt_rx: &str, virt_tx: &str) -> NetSystemSpec {
        NetSystemSpec {
            device: device.to_owned(),
            driver: driver.to_owned(),
            virt_rx: virt_rx.to_owned(),
            virt_tx: virt_tx.to_owned(),
            rx_buffers: DEFAULT_BUFFERS,
            clients: Vec::new(),
            device_regions: Vec::new(),
            device_irqs: Vec::new(),
        }
    }

    /// Capacity of the driver↔virt_tx queues: every client's TX buffers can be in flight at
    /// once, so the sum, rounded up to a power of two as queues need (as sdfgen does).
    pub fn driver_tx_buffers(&self) -> Result<Capacity, NetError> {
        let sum: u64 = self.clients.iter().map(|c| u64::from(c.tx_buffers)).sum();
        capacity(
            || "driver <-> virt_tx (the clients' TX buffers, summed)".to_owned(),
            sum.next_power_of_two(),
        )
    }

    /// Checks what needs no system description (counts, distinct roles, MACs) and returns the
    /// checked capacities.
    fn check(&self) -> Result<Capacities, NetError> {
        if self.clients.is_empty() || self.clients.len() > MAX_CLIENTS {
            return Err(NetError::ClientCount {
                count: self.clients.len(),
            });
        }
        for (count, what) in [
            (self.device_regions.len(), "device regions"),
            (self.device_irqs.len(), "device irqs"),
        ] {
            if count > MAX_CLIENTS {
                return Err(NetError::DeviceCount { count, what });
            }
        }
        let mut roles: Vec<(&str, String)> = vec![
            (&self.driver, "driver".to_owned()),
            (&self.virt_rx, "virt_rx".to_owned()),
            (&self.virt_tx, "virt_tx".to_owned()),
        ];
        for client in &self.clients {
            roles.push((&client.name, format!("client '{}'", client.name)));
            if let Some(copier) = &client.copier {
                roles.push((copier, format!("copier of client '{}'", client.name)));
            }
        }
        for (i, (pd, role)) in roles.iter().enumerate() {
            if let Some((_, first)) = roles[..i].iter().find(|(seen, _)| seen == pd) {
                return Err(NetError::RoleClash {
                    pd: (*pd).to_owned(),
                    first: first.clone(),
                    second: role.clone(),
                });
            }
        }
        let mut macs: HashMap<MacAddr, &str> = HashMap::new();
        let rx = capacity(|| "driver <-> virt_rx".to_owned(), self.rx_buffers.into())?;
        let mut clients = Vec::with_capacity(self.clients.len());
        for client in &self.clients {
            if client.mac[0] & 1 != 0 {
                return Err(NetError::MulticastMac {
                    client: client.name.clone(),
                    mac: format_mac(&client.mac),
                });
            }
            if let Some(first) = macs.insert(client.mac, &client.name) {
                return Err(NetError::DuplicateMac {
                    first: first.to_owned(),
                    second: client.name.clone(),
                    mac: format_mac(&client.mac),
                });
            }
            if client.copier.is_none() && client.rx_buffers != self.rx_buffers {
                return Err(NetError::RxBuffersWithoutCopier {
                    client: client.name.clone(),
                    system: self.rx_buffers,
                    client_rx: client.rx_buffers,
                });
            }
            clients.push(ClientCapacities {
                rx: capacity(
                    || format!("client '{}' RX", client.name),
                    client.rx_buffers.into(),
                )?,
                tx: capacity(
                    || format!("client '{}' TX", client.name),
                    client.tx_buffers.into(),
                )?,
            });
        }
        Ok(Capacities {
            rx,
            driver_tx: self.driver_tx_buffers()?,
            clients,
        })
    }
}

/// The capacities of a [`NetSystemSpec`], checked to be queue capacities.
struct Capacities {
    /// RX DMA buffers.
    rx: Capacity,
    /// The driver's TX queues.
    driver_tx: Capacity,
    /// Per client, in spec order.
    clients: Vec<ClientCapacities>,
}

/// A client's queue capacities.
struct ClientCapacities {
    /// Copier→client (or virt_rx→client) RX queues.
    rx: Capacity,
    /// virt_tx→client TX queues.
    tx: Capacity,
}

fn capacity(what: impl FnOnce() -> String, value: u64) -> Result<Capacity, NetError> {
    u32::try_from(value)
        .ok()
        .and_then(|n| Capacity::new(n).ok())
        .ok_or_else(|| NetError::BadCapacity {
            what: what(),
            value,
        })
}

/// A zeroed config on the heap (virt_tx's is 134 KB), aborting on allocation failure as
/// `Box::new` does.
fn zeroed<T: FromZeros>() -> Box<T> {
    T::new_box_zeroed()
        .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<T>()))
}

/// Bytes of `n` sDDF network buffers.
fn buffers_bytes(n: Capacity) -> u64 {
    (n.entries() * NET_BUFFER_SIZE) as u64
}

/// The region names of one device, per sdfgen's convention (see the module docs).
struct Names<'a> {
    dev: &'a str,
}

impl Names<'_> {
    fn queue(&self, server: &str, client: &str, end: &str) -> String {
        format!("{}/net/queue/{server}/{client}/{end}", self.dev)
    }
    fn rx_dma(&self) -> String {
        format!("{}/net/rx/data/device", self.dev)
    }
    fn rx_metadata(&self) -> String {
        format!("{}/net/rx/virt_metadata", self.dev)
    }
    fn client_rx_data(&self, client: &str) -> String {
        format!("{}/net/rx/data/client/{client}", self.dev)
    }
    fn client_tx_data(&self, client: &str) -> String {
        format!("{}/net/tx/data/client/{client}", self.dev)
    }
}

/// Lookups in the system that turn a missing or ambiguous element into a [`NetError`].
struct Lookup<'a> {
    sys: &'a SystemDescription,
    names: Names<'a>,
}

impl<'a> Lookup<'a> {
    fn pd(&self, name: &str, role: &str) -> Result<&'a ProtectionDomain, NetError> {
        self.sys.pd(name).ok_or_else(|| NetError::MissingPd {
            at: self.sys.pos.clone(),
            pd: name.to_owned(),
            role: role.to_owned(),
        })
    }

    fn mr(&self, name: &str, need: u64, what: &str) -> Result<&'a MemoryRegion, NetError> {
        let mr = self
            .sys
            .memory_region(name)
            .ok_or_else(|| NetError::MissingMr {
                at: self.sys.pos.clone(),
                mr: name.to_owned(),
                what: what.to_owned(),
            })?;
        if mr.size < need {
            return Err(NetError::MrTooSmall {
                at: mr.pos.clone(),
                mr: name.to_owned(),
                size: mr.size,
                needed: need,
                what: what.to_owned(),
            });
        }
        Ok(mr)
    }

    fn map(&self, pd: &'a ProtectionDomain, mr: &str) -> Result<&'a Map, NetError> {
        let mut maps = pd.maps.iter().filter(|m| m.mr == mr);
        let map = maps.next().ok_or_else(|| NetError::MissingMap {
            at: pd.pos.clone(),
            pd: pd.name.clone(),
            mr: mr.to_owned(),
        })?;
        if let Some(second) = maps.next() {
            return Err(NetError::DuplicateMap {
                at: second.pos.clone(),
                pd: pd.name.clone(),
                mr: mr.to_owned(),
            });
        }
        Ok(map)
    }

    /// Region `name` as `pd` maps it, checked to hold `need` bytes (`what`).
    fn region(
        &self,
        pd: &'a ProtectionDomain,
        name: &str,
        need: u64,
        what: &str,
    ) -> Result<RegionResource, NetError> {
        let mr = self.mr(name, need, what)?;
        Ok(RegionResource {
            vaddr: self.map(pd, name)?.vaddr,
            size: mr.size,
        })
    }

    /// [`Lookup::region`] plus the region's physical address, which devices use.
    fn device_region(
        &self,
        pd: &'a ProtectionDomain,
        name: &str,
        need: u64,
        what: &str,
    ) -> Result<DeviceRegionResource, NetError> {
        let region = self.region(pd, name, need, what)?;
        let mr = self.mr(name, need, what)?;
        let io_addr = mr.phys_addr.ok_or_else(|| NetError::NoPhysAddr {
            at: mr.pos.clone(),
            mr: name.to_owned(),
            pd: pd.name.clone(),
        })?;
        Ok(DeviceRegionResource { region, io_addr })
    }

    /// `pd`'s id of its one channel to `peer`.
    fn channel(&self, pd: &ProtectionDomain, peer: &str) -> Result<u8, NetError> {
        let mut found = None;
        for channel in &self.sys.channels {
            let [a, b] = &channel.ends;
            let local = if a.pd == pd.name && b.pd == peer {
                a
            } else if b.pd == pd.name && a.pd == peer {
                b
            } else {
                continue;
            };
            if found.is_some() {
                return Err(NetError::DuplicateChannel {
                    at: channel.pos.clone(),
                    pd: pd.name.clone(),
                    peer: peer.to_owned(),
                });
            }
            found = Some(local.id);
        }
        found.ok_or_else(|| NetError::MissingChannel {
            at: pd.pos.clone(),
            pd: pd.name.clone(),
            peer: peer.to_owned(),
        })
    }

    /// The queue pair `server`→`client` of capacity `n`, as `pd` (one of the two) sees it.
    fn conn(
        &self,
        pd: &'a ProtectionDomain,
        server: &str,
        client: &str,
        n: Capacity,
    ) -> Result<ConnectionResource, NetError> {
        let peer = if pd.name == server { client } else { server };
        let need = queue_bytes(n.entries()) as u64;
        let what = format!("a queue of {} descriptors", n.get());
        let free = self.region(pd, &self.names.queue(server, client, "free"), need, &what)?;
        let active = self.region(pd, &self.names.queue(server, client, "active"), need, &what)?;
        Ok(ConnectionResource::new(
            free,
            active,
            n.get(),
            self.channel(pd, peer)?,
        ))
    }
}

/// Every sDDF net config blob of the system `spec` describes: `.net_driver_config` and
/// `.device_resources` of the driver, `.net_virt_rx_config`, `.net_virt_tx_config`, then
/// `.net_copy_config` of each copier and `.net_client_config` of each client, in client order.
pub fn derive(sys: &SystemDescription, spec: &NetSystemSpec) -> Result<Vec<Section>, NetError> {
    let caps = spec.check()?;
    let at = Lookup {
        sys,
        names: Names { dev: &spec.device },
    };
    // Every PD first, so that a misspelt name is reported as such rather than as a missing region.
    let driver = at.pd(&spec.driver, "driver")?;
    let virt_rx = at.pd(&spec.virt_rx, "virt_rx")?;
    let virt_tx = at.pd(&spec.virt_tx, "virt_tx")?;
    let mut client_pds = Vec::with_capacity(spec.clients.len());
    for client in &spec.clients {
        let name = &client.name;
        let copier = match &client.copier {
            Some(copier) => Some((
                at.pd(copier, &format!("copier of client '{name}'"))?,
                copier,
            )),
            None => None,
        };
        client_pds.push((at.pd(name, &format!("client '{name}'"))?, copier));
    }
    let mut out = driver_sections(&at, spec, &caps, driver)?;
    out.push(virt_rx_section(&at, spec, &caps, virt_rx)?);
    out.push(virt_tx_section(&at, spec, &caps, virt_tx)?);
    let mut client_blobs = Vec::new();
    for ((client, caps_of), (pd, copier)) in spec.clients.iter().zip(&caps.clients).zip(client_pds)
    {
        let (copy, cfg) = client_sections(&at, spec, &caps, client, caps_of, pd, copier)?;
        out.extend(copy);
        client_blobs.push(cfg);
    }
    out.extend(client_blobs);
    Ok(out)
}

/// The driver's `.net_driver_config` and `.device_resources`.
fn driver_sections(
    at: &Lookup<'_>,
    spec: &NetSystemSpec,
    caps: &Capacities,
    driver: &ProtectionDomain,
) -> Result<Vec<Section>, NetError> {
    let (drv, vrx, vtx) = (&spec.driver, &spec.virt_rx, &spec.virt_tx);
    let mut cfg = zeroed::<NetDriverConfig>();
    cfg.magic = NET_MAGIC;
    cfg.virt_rx = at.conn(driver, drv, vrx, caps.rx)?;
    cfg.virt_tx = at.conn(driver, drv, vtx, caps.driver_tx)?;
    let config = Section::new(drv.clone(), DRIVER_SECTION, cfg.as_bytes().to_vec());

    let mut res = zeroed::<DeviceResources>();
    res.magic = DEVICE_MAGIC;
    for (slot, mr) in res.regions.iter_mut().zip(&spec.device_regions) {
        *slot = at.device_region(driver, mr, 0, "a device region of the driver")?;
    }
    for (slot, &irq) in res.irqs.iter_mut().zip(&spec.device_irqs) {
        let found = driver.irqs.iter().find(|i| i.irq == irq);
        slot.id = found
            .ok_or_else(|| NetError::MissingIrq {
                at: driver.pos.clone(),
                pd: drv.clone(),
                irq,
            })?
            .id;
    }
    // Both counts are at most MAX_CLIENTS (64), checked by `spec.check`.
    res.num_regions = spec.device_regions.len() as u8;
    res.num_irqs = spec.device_irqs.len() as u8;
    let resources = Section::new(
        drv.clone(),
        DEVICE_RESOURCES_SECTION,
        res.as_bytes().to_vec(),
    );
    Ok(vec![config, resources])
}

/// virt_rx's `.net_virt_rx_config`.
fn virt_rx_section(
    at: &Lookup<'_>,
    spec: &NetSystemSpec,
    caps: &Capacities,
    virt_rx: &ProtectionDomain,
) -> Result<Section, NetError> {
    let (drv, vrx, rx_cap) = (&spec.driver, &spec.virt_rx, caps.rx);
    let mut cfg = zeroed::<NetVirtRxConfig>();
    cfg.magic = NET_MAGIC;
    cfg.driver = at.conn(virt_rx, drv, vrx, rx_cap)?;
    cfg.data = at.device_region(
        virt_rx,
        &at.names.rx_dma(),
        buffers_bytes(rx_cap),
        &format!("{} RX DMA buffers", rx_cap.get()),
    )?;
    cfg.buffer_metadata = at.region(
        virt_rx,
        &at.names.rx_metadata(),
        rx_cap.entries() as u64,
        &format!("{} RX buffer reference counts", rx_cap.get()),
    )?;
    for (slot, client) in cfg.clients.iter_mut().zip(&spec.clients) {
        let next_hop = client.copier.as_deref().unwrap_or(&client.name);
        slot.conn = at.conn(virt_rx, vrx, next_hop, rx_cap)?;
        slot.mac_addrs[0] = client.mac;
        slot.num_macs = 1;
    }
    cfg.num_clients = spec.clients.len() as u8;
    Ok(Section::new(
        vrx.clone(),
        VIRT_RX_SECTION,
        cfg.as_bytes().to_vec(),
    ))
}

/// virt_tx's `.net_virt_tx_config`.
fn virt_tx_section(
    at: &Lookup<'_>,
    spec: &NetSystemSpec,
    caps: &Capacities,
    virt_tx: &ProtectionDomain,
) -> Result<Section, NetError> {
    let (drv, vtx) = (&spec.driver, &spec.virt_tx);
    let mut cfg = zeroed::<NetVirtTxConfig>();
    cfg.magic = NET_MAGIC;
    cfg.driver = at.conn(virt_tx, drv, vtx, caps.driver_tx)?;
    for ((slot, client), caps) in cfg.clients.iter_mut().zip(&spec.clients).zip(&caps.clients) {
        let n = caps.tx;
        slot.conn = at.conn(virt_tx, vtx, &client.name, n)?;
        let mut region = VirtTxDataRegion::default();
        region.data = at.device_region(
            virt_tx,
            &at.names.client_tx_data(&client.name),
            buffers_bytes(n),
            &format!("{} TX buffers of client '{}'", n.get(), client.name),
        )?;
        region.num_buffers = n.get().into();
        slot.regions[0] = region;
        slot.num_regions = 1;
    }
    cfg.num_clients = spec.clients.len() as u8;
    Ok(Section::new(
        vtx.clone(),
        VIRT_TX_SECTION,
        cfg.as_bytes().to_vec(),
    ))
}

/// A client's copier's `.net_copy_config` (if it has a copier) and its `.net_client_config`.
fn client_sections(
    at: &Lookup<'_>,
    spec: &NetSystemSpec,
    caps: &Capacities,
    client: &NetClientSpec,
    client_caps: &ClientCapacities,
    pd: &ProtectionDomain,
    copier: Option<(&ProtectionDomain, &String)>,
) -> Result<(Option<Section>, Section), NetError> {
    let (vrx, vtx, rx_cap) = (&spec.virt_rx, &spec.virt_tx, caps.rx);
    let names = &at.names;
    let rx_dma_what = format!("{} RX DMA buffers", rx_cap.get());
    let name = &client.name;
    let (rx_n, tx_n) = (client_caps.rx, client_caps.tx);
    let rx_data_what = format!("{} RX buffers of client '{name}'", rx_n.get());
    let mut cfg = zeroed::<NetClientConfig>();
    cfg.magic = NET_MAGIC;
    let mut copy_section = None;
    if let Some((copier, copier_name)) = copier {
        let mut copy = zeroed::<NetCopyConfig>();
        copy.magic = NET_MAGIC;
        copy.rx = at.conn(copier, vrx, copier_name, rx_cap)?;
        // Without a vswitch there is one source region, oid 0: the RX DMA region.
        copy.rx_data[0] =
            at.region(copier, &names.rx_dma(), buffers_bytes(rx_cap), &rx_dma_what)?;
        copy.client = at.conn(copier, copier_name, name, rx_n)?;
        let private = names.client_rx_data(name);
        copy.client_data = at.region(copier, &private, buffers_bytes(rx_n), &rx_data_what)?;
        copy_section = Some(Section::new(
            copier_name.clone(),
            COPY_SECTION,
            copy.as_bytes().to_vec(),
        ));

        cfg.rx = at.conn(pd, copier_name, name, rx_n)?;
        cfg.rx_data = at.region(pd, &private, buffers_bytes(rx_n), &rx_data_what)?;
    } else {
        cfg.rx = at.conn(pd, vrx, name, rx_cap)?;
        cfg.rx_data = at.region(pd, &names.rx_dma(), buffers_bytes(rx_cap), &rx_dma_what)?;
    }
    cfg.tx = at.conn(pd, vtx, name, tx_n)?;
    cfg.tx_data = at.region(
        pd,
        &names.client_tx_data(name),
        buffers_bytes(tx_n),
        &format!("{} TX buffers of client '{name}'", tx_n.get()),
    )?;
    cfg.mac_addr = client.mac;
    Ok((
        copy_section,
        Section::new(name.clone(), CLIENT_SECTION, cfg.as_bytes().to_vec()),
    ))
}
