//! The `.netvm_vswitch` sections (`netvm_api::vswitch`): local delivery between the clients of
//! one system, derived from the description like every other net config.
//!
//! A copier has local queues when the system has the regions
//! `{dev}/net/vswitch/{copier}/free` and `…/active` (`netvm_api::vswitch::queue_region`; sdfgen
//! does not make them, `scripts/gen_system.py` adds them). Then virt_tx and that copier must
//! each map both, have one channel between them, and the copier must map the TX data region of
//! every other client (read-only is enough); the queues hold every TX buffer of the system (the
//! driver TX capacity). A system with none of these regions (sdfgen's, sDDF's, an older
//! `system.xml`) gets no sections: local delivery is off. One with them for some copiers but not
//! others is refused, naming the first region missing, rather than half switched.

use netvm_api::vswitch::{queue_region, CopyLocalConfig, LocalPort, VirtTxLocalConfig};
use sddf::config::RegionResource;
use sddf::queue::queue_bytes;
use zerocopy::IntoBytes;

use super::{Lookup, Names, NetError, NetSystemSpec};
use crate::model::SystemDescription;
use crate::Section;

/// virt_tx's and each copier's `.netvm_vswitch`, or none when the system has no local queues.
pub fn vswitch_sections(
    sys: &SystemDescription,
    spec: &NetSystemSpec,
) -> Result<Vec<Section>, NetError> {
    let caps = spec.check()?;
    let dev = spec.device.as_str();
    let at = Lookup {
        sys,
        names: Names { dev },
    };
    let copiers: Vec<(usize, &str)> = spec
        .clients
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.copier.as_deref()?)))
        .collect();
    let present = |copier: &str| {
        let free = queue_region(dev, copier, "free").to_string();
        sys.memory_region(&free).is_some()
    };
    if !copiers.iter().any(|(_, copier)| present(copier)) {
        return Ok(Vec::new());
    }
    let cap = caps.driver_tx;
    let need = queue_bytes(cap.entries()) as u64;
    let what = format!("a local queue of {} descriptors", cap.get());
    let virt_tx = at.pd(&spec.virt_tx, "virt_tx")?;
    let mut ports = vec![LocalPort::default(); spec.clients.len()];
    let mut out = Vec::new();
    for &(i, copier) in &copiers {
        let copier_pd = at.pd(copier, "copier")?;
        let free = queue_region(dev, copier, "free").to_string();
        let active = queue_region(dev, copier, "active").to_string();
        let conn = |pd, peer: &str| -> Result<_, NetError> {
            Ok(sddf::config::ConnectionResource::new(
                at.region(pd, &free, need, &what)?,
                at.region(pd, &active, need, &what)?,
                cap.get(),
                at.channel(pd, peer)?,
            ))
        };
        ports[i] = LocalPort::new(conn(virt_tx, copier)?, spec.clients[i].mac);
        let mut sources = vec![RegionResource::default(); spec.clients.len()];
        for (j, other) in spec.clients.iter().enumerate() {
            if j == i {
                continue;
            }
            let bytes = u64::from(other.tx_buffers) * sddf::NET_BUFFER_SIZE as u64;
            let name = at.names.client_tx_data(&other.name);
            sources[j] = at.region(copier_pd, &name, bytes, "a client's TX buffers")?;
        }
        let config = CopyLocalConfig::new(conn(copier_pd, &spec.virt_tx)?, &sources);
        out.push(Section::new(
            copier.to_owned(),
            netvm_api::vswitch::SECTION,
            config.as_bytes().to_vec(),
        ));
    }
    let config = VirtTxLocalConfig::new(&ports);
    out.insert(
        0,
        Section::new(
            spec.virt_tx.clone(),
            netvm_api::vswitch::SECTION,
            config.as_bytes().to_vec(),
        ),
    );
    Ok(out)
}
