//! Reading a [`NetSystemSpec`] off sdfgen's region naming convention, and MAC address lists.
//!
//! The roles follow from the queue regions `{dev}/net/queue/{server}/{client}/free`:
//!
//! * virt_rx is the one PD that maps `{dev}/net/rx/virt_metadata`;
//! * the driver is the server of the one queue pair whose client is virt_rx;
//! * virt_tx is the driver's other queue client;
//! * the clients are virt_tx's queue clients, **in the document order of their
//!   `{dev}/net/queue/{virt_tx}/{client}/free` regions** (sdfgen writes them in the order the
//!   clients were added);
//! * a client's copier is the virt_rx queue client that serves a queue pair to it; a virt_rx queue
//!   client that serves none is a client without copier.
//!
//! Capacities get sdfgen's defaults; a caller that wants others changes the returned spec.

use std::collections::HashMap;

use sddf::config::MacAddr;

use super::{NetClientSpec, NetError, NetSystemSpec};
use crate::model::{MemoryRegion, SystemDescription};

/// Parses `aa:bb:cc:dd:ee:ff` (hex digits, either case).
pub fn parse_mac(text: &str) -> Result<MacAddr, NetError> {
    let bad = || NetError::BadMac {
        text: text.to_owned(),
    };
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    match parts.next() {
        Some(_) => Err(bad()),
        None => Ok(mac),
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &MacAddr) -> String {
    let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(":")
}

/// Parses a MAC list: `client=aa:bb:cc:dd:ee:ff` entries separated by commas or whitespace
/// (so a command-line value `client0=…,client1=…` and a file with one entry per line both work).
/// `#` starts a comment that runs to the end of the line.
pub fn parse_mac_list(text: &str) -> Result<Vec<(String, MacAddr)>, NetError> {
    let mut out: Vec<(String, MacAddr)> = Vec::new();
    let entries = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|entry| !entry.is_empty());
    for entry in entries {
        let (name, mac) = entry
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| NetError::BadMacEntry {
                text: entry.to_owned(),
            })?;
        if out.iter().any(|(seen, _)| seen == name) {
            return Err(NetError::MacGivenTwice {
                client: name.to_owned(),
            });
        }
        out.push((name.to_owned(), parse_mac(mac)?));
    }
    Ok(out)
}

/// The PDs of a net system as the naming convention shows them.
pub(crate) struct Roles {
    /// The `{dev}` prefix.
    pub(crate) device: String,
    /// Driver PD.
    pub(crate) driver: String,
    /// virt_rx PD.
    pub(crate) virt_rx: String,
    /// virt_tx PD.
    pub(crate) virt_tx: String,
    /// (client, copier) in client order.
    pub(crate) clients: Vec<(String, Option<String>)>,
}

/// A `{dev}/net/queue/{server}/{client}/free` region.
struct QueuePair<'a> {
    device: &'a str,
    server: &'a str,
    client: &'a str,
}

fn queue_pair(mr: &MemoryRegion) -> Option<QueuePair<'_>> {
    let (device, rest) = mr.name.split_once("/net/queue/")?;
    let (server, rest) = rest.split_once('/')?;
    let (client, end) = rest.split_once('/')?;
    (end == "free").then_some(QueuePair {
        device,
        server,
        client,
    })
}

/// The one element of `found`, or an error naming the candidates.
fn one<'a>(
    sys: &SystemDescription,
    found: Vec<&'a str>,
    what: impl FnOnce() -> String,
) -> Result<&'a str, NetError> {
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(NetError::Infer {
            at: sys.pos.clone(),
            reason: format!("no {}", what()),
        }),
        several => Err(NetError::Infer {
            at: sys.pos.clone(),
            reason: format!("several {}: {}", what(), several.join(", ")),
        }),
    }
}

/// Reads the roles off the region names (see the module docs).
pub(crate) fn roles(sys: &SystemDescription) -> Result<Roles, NetError> {
    let pairs: Vec<QueuePair<'_>> = sys.memory_regions.iter().filter_map(queue_pair).collect();
    let mut devices: Vec<&str> = pairs.iter().map(|p| p.device).collect();
    devices.sort_unstable();
    devices.dedup();
    let device = one(sys, devices, || {
        "net device (regions named <dev>/net/queue/<server>/<client>/free)".to_owned()
    })?;
    let pairs: Vec<&QueuePair<'_>> = pairs.iter().filter(|p| p.device == device).collect();
    let servers_of = |client: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|p| p.client == client)
            .map(|p| p.server)
            .collect()
    };
    let clients_of = |server: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|p| p.server == server)
            .map(|p| p.client)
            .collect()
    };

    let metadata = format!("{device}/net/rx/virt_metadata");
    let virt_rx = one(
        sys,
        sys.pds()
            .filter(|(pd, _)| pd.maps.iter().any(|m| m.mr == metadata))
            .map(|(pd, _)| pd.name.as_str())
            .collect(),
        || format!("PD mapping '{metadata}' (virt_rx)"),
    )?;
    let driver = one(sys, servers_of(virt_rx), || {
        format!("server of a queue pair to virt_rx '{virt_rx}' (the driver)")
    })?;
    let virt_tx = one(
        sys,
        clients_of(driver)
            .into_iter()
            .filter(|c| *c != virt_rx)
            .collect(),
        || format!("queue client of driver '{driver}' besides virt_rx (virt_tx)"),
    )?;

    // virt_rx's queue clients are copiers (serving their client) or copier-less clients.
    let mut rx_paths: HashMap<&str, Option<&str>> = HashMap::new();
    for next_hop in clients_of(virt_rx) {
        let (client, copier) = match clients_of(next_hop).as_slice() {
            [] => (next_hop, None),
            [client] => (*client, Some(next_hop)),
            several => {
                return Err(NetError::Infer {
                    at: sys.pos.clone(),
                    reason: format!(
                        "'{next_hop}' gets RX queues from virt_rx and serves several PDs ({}); \
                         a copier serves one client",
                        several.join(", ")
                    ),
                })
            }
        };
        if rx_paths.insert(client, copier).is_some() {
            return Err(NetError::Infer {
                at: sys.pos.clone(),
                reason: format!("client '{client}' has more than one RX path from virt_rx"),
            });
        }
    }
    let mut clients = Vec::new();
    for client in clients_of(virt_tx) {
        let copier = rx_paths.remove(client).ok_or_else(|| NetError::Infer {
            at: sys.pos.clone(),
            reason: format!("client '{client}' has TX queues from virt_tx but no RX path"),
        })?;
        clients.push((client.to_owned(), copier.map(str::to_owned)));
    }
    if let Some(client) = rx_paths.keys().min() {
        return Err(NetError::Infer {
            at: sys.pos.clone(),
            reason: format!("client '{client}' has an RX path from virt_rx but no TX queues"),
        });
    }
    Ok(Roles {
        device: device.to_owned(),
        driver: driver.to_owned(),
        virt_rx: virt_rx.to_owned(),
        virt_tx: virt_tx.to_owned(),
        clients,
    })
}

impl NetSystemSpec {
    /// Reads the spec off the region names of `sys` (see the module docs), with the clients' MAC
    /// addresses from `macs` (e.g. from [`parse_mac_list`]) and sdfgen's
    /// default capacities. Every client needs a MAC and every MAC a client. The driver gets no
    /// device resources: that is the generic driver sdfgen makes for a driver VM.
    pub fn infer(
        sys: &SystemDescription,
        macs: &[(String, MacAddr)],
    ) -> Result<NetSystemSpec, NetError> {
        let roles = roles(sys)?;
        if let Some((name, _)) = macs
            .iter()
            .find(|(name, _)| !roles.clients.iter().any(|(client, _)| client == name))
        {
            return Err(NetError::MacForNonClient { name: name.clone() });
        }
        let mut spec =
            NetSystemSpec::new(&roles.device, &roles.driver, &roles.virt_rx, &roles.virt_tx);
        for (client, copier) in &roles.clients {
            let (_, mac) = macs
                .iter()
                .find(|(name, _)| name == client)
                .ok_or_else(|| NetError::MissingMac {
                    client: client.clone(),
                })?;
            spec.clients
                .push(NetClientSpec::new(client, copier.as_deref(), *mac));
        }
        Ok(spec)
    }
}

/// The driver side of a network system as a driver VM's guest sees it: each region the
/// uio-driver needs, by the name it looks for (`rx_free`, `rx_active`, `tx_free`, `tx_active`,
/// `rx_data`, `tx_data<i>` for client `i`), with the memory region behind it. Also returns the
/// driver PD's name. The names are uio-driver's (`uio_driver::names`); the guest's device tree
/// and host mode both use this list.
pub fn driver_vm_regions(
    sys: &SystemDescription,
) -> Result<(String, Vec<(String, String)>), NetError> {
    let r = roles(sys)?;
    let q = |peer: &str, which: &str| format!("{}/net/queue/{}/{peer}/{which}", r.device, r.driver);
    let mut out = vec![
        ("rx_free".to_owned(), q(&r.virt_rx, "free")),
        ("rx_active".to_owned(), q(&r.virt_rx, "active")),
        ("tx_free".to_owned(), q(&r.virt_tx, "free")),
        ("tx_active".to_owned(), q(&r.virt_tx, "active")),
        (
            "rx_data".to_owned(),
            format!("{}/net/rx/data/device", r.device),
        ),
    ];
    for (i, (client, _)) in r.clients.iter().enumerate() {
        out.push((
            format!("tx_data{i}"),
            format!("{}/net/tx/data/client/{client}", r.device),
        ));
    }
    Ok((r.driver, out))
}
