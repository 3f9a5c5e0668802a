//! What an observer of a running network system needs from its description: where each
//! component publishes its counters (`.netvm_stats`, see `netvm_api::stats`) and which queues each
//! pool of sDDF buffers circulates through (to account for every buffer).

use sddf::config::RegionResource;
use zerocopy::IntoBytes;

use super::{Names, NetError, NetSystemSpec};
use crate::model::SystemDescription;
use crate::Section;

/// Prefix of a stats region's name: `netvm/stats/<pd>` holds the counters of PD `<pd>`.
pub const STATS_PREFIX: &str = "netvm/stats/";

/// The `.netvm_stats` section of every PD that maps its own stats region (`netvm/stats/<pd>`,
/// read-write): the region's vaddr in that PD and its size. PDs without one get no section and
/// publish nothing.
pub fn stats_sections(sys: &SystemDescription) -> Vec<Section> {
    sys.pds()
        .map(|(pd, _)| pd)
        .filter_map(|pd| {
            let name = format!("{STATS_PREFIX}{}", pd.name);
            let map = pd.maps.iter().find(|m| m.mr == name && m.perms.write)?;
            let mr = sys.memory_region(&name)?;
            let resource = RegionResource {
                vaddr: map.vaddr,
                size: mr.size,
            };
            Some(Section::new(
                pd.name.clone(),
                netvm_api::stats::SECTION,
                resource.as_bytes().to_vec(),
            ))
        })
        .collect()
}

/// netvm's `.netvm_net_options` (`netvm_api::options`) for virt_rx and virt_tx: netvm's behaviours
/// beyond sDDF (multicast to every client, fair TX, lazy completions) switched on explicitly,
/// since an all-zero section means sDDF 0.7's semantics; driver-VM offset mode exactly when the
/// driver PD runs a virtual machine (its guest must never need physical addresses).
pub fn options_sections(sys: &SystemDescription, spec: &NetSystemSpec) -> Vec<Section> {
    let driver_vm = sys
        .pd(&spec.driver)
        .is_some_and(|pd| pd.virtual_machine.is_some());
    let flags = netvm_api::options::NETVM_BEHAVIOURS
        | if driver_vm {
            netvm_api::options::DRIVER_OFFSETS
        } else {
            0
        };
    let options = netvm_api::options::NetOptions::new(flags, 0);
    [&spec.virt_rx, &spec.virt_tx]
        .into_iter()
        .map(|pd| {
            Section::new(
                pd.clone(),
                netvm_api::options::SECTION,
                options.as_bytes().to_vec(),
            )
        })
        .collect()
}

/// The `.netvm_net_options` for a system whose net configs are sdfgen's own blobs: sdfgen writes
/// no options section, and an all-zero one means sDDF 0.7's virtualisers, which exchange IO
/// addresses with the driver. A driver VM's uio-driver speaks data offsets only (its guest never
/// sees a physical address), so when the driver PD runs a virtual machine, virt_rx and virt_tx get
/// driver-VM offset mode and none of netvm's other behaviours (such a system asked for sDDF's).
/// No sections when the driver is a native PD.
pub fn sdfgen_options_sections(sys: &SystemDescription) -> Result<Vec<Section>, NetError> {
    let roles = super::infer::roles(sys)?;
    let driver_vm = sys
        .pd(&roles.driver)
        .is_some_and(|pd| pd.virtual_machine.is_some());
    if !driver_vm {
        return Ok(Vec::new());
    }
    let options = netvm_api::options::NetOptions::new(netvm_api::options::DRIVER_OFFSETS, 0);
    Ok([roles.virt_rx, roles.virt_tx]
        .into_iter()
        .map(|pd| Section::new(pd, netvm_api::options::SECTION, options.as_bytes().to_vec()))
        .collect())
}

/// One sDDF queue as an observer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    /// The memory region holding it.
    pub region: String,
    /// Its capacity (from the spec, never from shared memory).
    pub capacity: u32,
    /// `<producer> -> <consumer> <free|active>`.
    pub label: String,
}

/// A pool of buffers and every queue its buffers travel through: when the system is idle, the
/// queues together hold every buffer of the pool, each exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferPool {
    /// `rx` (the driver's RX DMA buffers), `<client> rx` (a copier's client's RX buffers) or
    /// `tx` (all clients' TX buffers, which share the driver's TX queues).
    pub name: String,
    /// Buffers in the pool.
    pub buffers: u64,
    /// Queues the pool's buffers pass through.
    pub queues: Vec<QueueRef>,
}

/// The buffer pools of a network system and their queues (names per sdfgen's convention).
pub fn buffer_pools(spec: &NetSystemSpec) -> Result<Vec<BufferPool>, NetError> {
    let caps = spec.check()?;
    let names = Names { dev: &spec.device };
    let pair = |server: &str, client: &str, capacity: u16, out: &mut Vec<QueueRef>| {
        for end in ["free", "active"] {
            out.push(QueueRef {
                region: names.queue(server, client, end),
                capacity: u32::from(capacity),
                label: format!("{server}/{client} {end}"),
            });
        }
    };
    let (drv, vrx, vtx) = (&spec.driver, &spec.virt_rx, &spec.virt_tx);
    let mut rx = Vec::new();
    pair(drv, vrx, caps.rx.get(), &mut rx);
    let mut pools = Vec::new();
    let mut tx = Vec::new();
    for (client, cap) in spec.clients.iter().zip(&caps.clients) {
        match &client.copier {
            Some(copier) => {
                pair(vrx, copier, caps.rx.get(), &mut rx);
                let mut queues = Vec::new();
                pair(copier, &client.name, cap.rx.get(), &mut queues);
                pools.push(BufferPool {
                    name: format!("{} rx", client.name),
                    buffers: cap.rx.get().into(),
                    queues,
                });
            }
            None => pair(vrx, &client.name, caps.rx.get(), &mut rx),
        }
        pair(vtx, &client.name, cap.tx.get(), &mut tx);
    }
    pair(drv, vtx, caps.driver_tx.get(), &mut tx);
    let tx_buffers = spec.clients.iter().map(|c| u64::from(c.tx_buffers)).sum();
    pools.insert(
        0,
        BufferPool {
            name: "rx".into(),
            buffers: caps.rx.get().into(),
            queues: rx,
        },
    );
    pools.push(BufferPool {
        name: "tx".into(),
        buffers: tx_buffers,
        queues: tx,
    });
    Ok(pools)
}

/// [`buffer_pools`] of a system with sdfgen's default capacities, read off its region names
/// alone (MAC addresses play no part in where buffers travel, so none are needed).
pub fn buffer_pools_of(sys: &SystemDescription) -> Result<Vec<BufferPool>, NetError> {
    let roles = super::infer::roles(sys)?;
    let mut spec = NetSystemSpec::new(&roles.device, &roles.driver, &roles.virt_rx, &roles.virt_tx);
    for (i, (client, copier)) in roles.clients.iter().enumerate() {
        // Distinct locally administered placeholders, only to satisfy the spec's checks.
        let mac = [0x02, 0, 0, 0, (i >> 8) as u8, i as u8];
        spec.clients
            .push(super::NetClientSpec::new(client, copier.as_deref(), mac));
    }
    buffer_pools(&spec)
}
