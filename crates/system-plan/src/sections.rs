//! Every PD's config sections, derived from the system description and the per-client inputs.
//!
//! Both writers get them from here: the seL4 image tool patches them into each PD's ELF, host
//! mode (`netvm run`) writes them into each PD's manifest. Where the writers differ, it is
//! because the driver PD differs ([`Writer`]): on seL4 it is the VMM, on the host the driver
//! stand-in.

use std::path::Path;

use echo_api::peers::PeerPlan;
use echo_api::IpConfig;
use sdf::SystemDescription;
use zerocopy::IntoBytes;

use crate::{Clients, DriverVm, EchoInputs, PlanError, Section, Subject, Writer};

fn net_error(path: &Path, source: sdf::net::NetError) -> PlanError {
    PlanError::Net {
        path: path.to_path_buf(),
        source,
    }
}

/// The sDDF net configs `sdf::net::derive` makes (byte-identical to sdfgen's), netvm's
/// virtualiser options, every `.netvm_stats` and the local queues' `.netvm_vswitch`, for the net system whose roles are read off
/// the region names and whose clients have the MACs and buffer counts of `clients`. For [`Writer::Sel4Image`] the
/// driver PD (the VMM) gets only the two it reads: `.net_driver_config` (its watchdog watches
/// the driver's TX queue) and its `.netvm_stats`; its guest finds the rest through UIO.
pub fn net_sections(
    sys: &SystemDescription,
    path: &Path,
    clients: &Clients<'_>,
    writer: Writer,
) -> Result<Vec<Section>, PlanError> {
    let spec = clients.spec(sys).map_err(|e| net_error(path, e))?;
    let derived = sdf::net::derive(sys, &spec).map_err(|e| net_error(path, e))?;
    let options = sdf::net::options_sections(sys, &spec);
    let vmm = writer == Writer::Sel4Image;
    let derived = derived
        .into_iter()
        .filter(|s| !vmm || s.pd != spec.driver || s.name == sdf::net::DRIVER_SECTION);
    let options = options.into_iter().filter(|s| !vmm || s.pd != spec.driver);
    // Every PD that maps its stats region gets it: on seL4 the VMM PD publishes its own
    // counters there, in host mode the driver stand-in does.
    let stats = sdf::net::stats_sections(sys);
    // Local delivery between clients, when the system has the local queues (none otherwise).
    let local = sdf::net::vswitch_sections(sys, &spec).map_err(|e| net_error(path, e))?;
    Ok(derived.chain(options).chain(stats).chain(local).collect())
}

/// Each echo client's `.echo_config` (its address, static or DHCP), where the system gives
/// it a timer, its `.timer_client_config`, and for those that originate traffic their
/// `.echo_peers` ([`peer_sections`]). For [`Writer::Sel4Image`] every client of the net
/// system `clients` describes must have an address and a timer, and nothing else may be given one.
pub fn echo_sections(
    sys: &SystemDescription,
    path: &Path,
    clients: &Clients<'_>,
    (echo, peers): EchoInputs<'_>,
    writer: Writer,
) -> Result<Vec<Section>, PlanError> {
    let mut out = address_sections(sys, path, clients, echo, writer)?;
    out.extend(peer_sections(path, echo, peers)?);
    Ok(out)
}

/// The `.echo_peers` of each PD in `peers`: each must be an echo server given an address in
/// `echo` (it originates from that address), and be named once. PDs not named get no section,
/// which leaves the role off.
pub fn peer_sections(
    path: &Path,
    echo: &[(String, IpConfig)],
    peers: &[(String, PeerPlan)],
) -> Result<Vec<Section>, PlanError> {
    let fail = |pd: &str, reason: String| PlanError::System {
        path: path.to_path_buf(),
        subject: Subject::Pd(pd.to_owned()),
        reason,
    };
    let mut out: Vec<Section> = Vec::new();
    for (pd, plan) in peers {
        if !echo.iter().any(|(e, _)| e == pd) {
            return Err(fail(
                pd,
                format!("--echo-peers names '{pd}', which is given no address (--echo-ips)"),
            ));
        }
        if out.iter().any(|s| s.pd == *pd) {
            return Err(fail(pd, format!("--echo-peers names '{pd}' twice")));
        }
        out.push(Section {
            pd: pd.clone(),
            name: echo_api::peers::SECTION.into(),
            bytes: echo_api::peers::EchoPeersSection::new(plan)
                .as_bytes()
                .to_vec(),
        });
    }
    Ok(out)
}

fn address_sections(
    sys: &SystemDescription,
    path: &Path,
    clients: &Clients<'_>,
    echo: &[(String, IpConfig)],
    writer: Writer,
) -> Result<Vec<Section>, PlanError> {
    let echo_config = |pd: &str, ip: &IpConfig| Section {
        pd: pd.to_owned(),
        name: echo_api::SECTION.into(),
        bytes: echo_api::EchoConfig::new(*ip).as_bytes().to_vec(),
    };
    if writer == Writer::Host {
        let mut out = Vec::new();
        for (pd, ip) in echo {
            out.push(echo_config(pd, ip));
            // Its timer, if the system gives it one: retransmissions and DHCP retries then
            // happen without traffic to wake the client.
            if let Some(id) = sys.timer_channel_of(pd) {
                out.push(timer_client_section(pd, id));
            }
        }
        return Ok(out);
    }
    let spec = clients.spec(sys).map_err(|e| net_error(path, e))?;
    let mut out = Vec::new();
    for client in &spec.clients {
        let Some((_, ip)) = echo.iter().find(|(pd, _)| *pd == client.name) else {
            return Err(PlanError::System {
                path: path.to_path_buf(),
                subject: Subject::Pd(client.name.clone()),
                reason: format!(
                    "no address for echo client '{}' (give --echo-ips {}=<addr>/<prefix> or {}=dhcp,...)",
                    client.name, client.name, client.name
                ),
            });
        };
        out.push(echo_config(&client.name, ip));
    }
    let clients: Vec<&str> = spec.clients.iter().map(|c| c.name.as_str()).collect();
    out.extend(timer_client_sections(sys, path, &clients)?);
    if let Some((pd, _)) = echo
        .iter()
        .find(|(pd, _)| !spec.clients.iter().any(|c| c.name == *pd))
    {
        return Err(PlanError::System {
            path: path.to_path_buf(),
            subject: Subject::Pd(pd.clone()),
            reason: format!("--echo-ips names '{pd}', which is no net client"),
        });
    }
    Ok(out)
}

fn timer_client_section(pd: &str, channel: u8) -> Section {
    Section {
        pd: pd.to_owned(),
        name: sddf::timer::SECTION.into(),
        bytes: sddf::timer::TimerClientConfig::new(channel)
            .as_bytes()
            .to_vec(),
    }
}

/// The sDDF `.timer_client_config` of each of `clients` (sdfgen's `timer_client_<pd>.data`):
/// the client's id of its one `pp` channel, which must lead to a PD that notifies back on it
/// (what sdfgen's `Sddf.Timer.add_client` makes: client end `pp="true" notify="false"`).
pub fn timer_client_sections(
    sys: &SystemDescription,
    path: &Path,
    clients: &[&str],
) -> Result<Vec<Section>, PlanError> {
    clients
        .iter()
        .map(|&client| match sys.timer_channel_of(client) {
            Some(id) => Ok(timer_client_section(client, id)),
            None => Err(PlanError::System {
                path: path.to_path_buf(),
                subject: Subject::Pd(client.to_string()),
                reason: format!(
                    "timer client '{client}' needs exactly one pp channel, to the timer PD, which notifies it on that channel"
                ),
            }),
        })
        .collect()
}

/// Every config section of the seL4 image: the net configs ([`net_sections`]), the echo
/// clients' addresses and timer channels ([`echo_sections`]) and the VMM's `.vmm_config`. A
/// standalone driver VM (no net clients) gets only its `.vmm_config`.
pub fn sections(
    sys: &SystemDescription,
    path: &Path,
    vm: &DriverVm,
    clients: &Clients<'_>,
    echo: EchoInputs<'_>,
) -> Result<Vec<Section>, PlanError> {
    let vmm_config = Section {
        pd: vm.driver.clone(),
        name: vmm_api::SECTION.into(),
        bytes: vm.vmm_config.to_bytes().to_vec(),
    };
    if vm.standalone {
        if let Some(pd) = clients
            .macs
            .iter()
            .map(|m| &m.0)
            .chain(echo.0.iter().map(|e| &e.0))
            .chain(echo.1.iter().map(|e| &e.0))
            .next()
        {
            return Err(PlanError::System {
                path: path.to_path_buf(),
                subject: Subject::Pd(pd.clone()),
                reason: format!(
                    "'{pd}' is given a MAC or an address, but the system has no net clients"
                ),
            });
        }
        return Ok(vec![vmm_config]);
    }
    let mut out = net_sections(sys, path, clients, Writer::Sel4Image)?;
    out.extend(echo_sections(sys, path, clients, echo, Writer::Sel4Image)?);
    out.push(vmm_config);
    Ok(out)
}
