//! Rules that span elements: unique names, the per-PD id spaces, channels, IRQ numbers, maps
//! and physical ranges. Runs after `parse` and completes the model (channel-end setvars are
//! added to their PDs here, after the PD's own setvars, as the tool does).

use std::collections::HashMap;

use crate::config::Config;
use crate::error::SdfError;
use crate::model::{
    End, Map, MemoryRegion, ProtectionDomain, SetVarKind, SourcePos, SystemDescription,
};
use crate::parse::add_setvar;

type Result<T> = std::result::Result<T, SdfError>;

/// Checks `sys` and attaches channel-end setvars to their PDs.
pub(crate) fn validate(sys: &mut SystemDescription, config: &Config) -> Result<()> {
    if sys.protection_domains.is_empty() {
        return Err(SdfError::NoProtectionDomains {
            at: sys.pos.clone(),
        });
    }
    check_names(sys)?;
    check_channels(sys)?;
    attach_channel_setvars(sys)?;
    check_irqs(sys)?;
    check_channel_ids(sys)?;
    check_maps(sys, config)?;
    if !config.allow_mixed_cacheability {
        check_cacheability(sys)?;
    }
    check_setvar_regions(sys)?;
    check_phys_overlap(&sys.memory_regions)?;
    Ok(())
}

fn check_names(sys: &SystemDescription) -> Result<()> {
    let mut pds: HashMap<&str, &SourcePos> = HashMap::new();
    let mut vms: HashMap<&str, &SourcePos> = HashMap::new();
    for (pd, _) in sys.pds() {
        if pd.name == "monitor" {
            return Err(SdfError::ReservedPdName { at: pd.pos.clone() });
        }
        if let Some(first) = pds.insert(&pd.name, &pd.pos) {
            return Err(SdfError::DuplicatePdName {
                at: pd.pos.clone(),
                name: pd.name.clone(),
                first: first.clone(),
            });
        }
        if let Some(vm) = &pd.virtual_machine {
            if let Some(first) = vms.insert(&vm.name, &vm.pos) {
                return Err(SdfError::DuplicateVmName {
                    at: vm.pos.clone(),
                    name: vm.name.clone(),
                    first: first.clone(),
                });
            }
        }
    }
    let mut mrs: HashMap<&str, &SourcePos> = HashMap::new();
    for mr in &sys.memory_regions {
        if let Some(first) = mrs.insert(&mr.name, &mr.pos) {
            return Err(SdfError::DuplicateMrName {
                at: mr.pos.clone(),
                name: mr.name.clone(),
                first: first.clone(),
            });
        }
    }
    Ok(())
}

/// Both ends exist, are distinct PDs, and a PPC goes to a strictly higher priority.
fn check_channels(sys: &SystemDescription) -> Result<()> {
    for channel in &sys.channels {
        let a = end_pd(sys, &channel.ends[0])?;
        let b = end_pd(sys, &channel.ends[1])?;
        // netvm rule (the tool accepts it): a channel to oneself has no peer to notify or call,
        // and both ends would share the PD's one id space.
        if a.name == b.name {
            return Err(SdfError::ChannelSamePd {
                at: channel.pos.clone(),
                pd: a.name.clone(),
            });
        }
        for (end, from, to) in [(&channel.ends[0], a, b), (&channel.ends[1], b, a)] {
            if end.pp && from.priority >= to.priority {
                return Err(SdfError::PpPriority {
                    at: end.pos.clone(),
                    from: from.name.clone(),
                    from_priority: from.priority,
                    to: to.name.clone(),
                    to_priority: to.priority,
                });
            }
        }
    }
    Ok(())
}

fn end_pd<'a>(sys: &'a SystemDescription, end: &End) -> Result<&'a ProtectionDomain> {
    sys.pd(&end.pd).ok_or_else(|| unknown_end_pd(end))
}

fn unknown_end_pd(end: &End) -> SdfError {
    SdfError::ChannelUnknownPd {
        at: end.pos.clone(),
        pd: end.pd.clone(),
    }
}

fn attach_channel_setvars(sys: &mut SystemDescription) -> Result<()> {
    for channel in &sys.channels {
        for end in &channel.ends {
            let Some(symbol) = &end.setvar_id else {
                continue;
            };
            let pd = find_pd_mut(&mut sys.protection_domains, &end.pd)
                .ok_or_else(|| unknown_end_pd(end))?;
            add_setvar(
                &mut pd.setvars,
                &end.pd,
                symbol,
                SetVarKind::Id(end.id),
                end.pos.clone(),
            )?;
        }
    }
    Ok(())
}

fn find_pd_mut<'a>(
    pds: &'a mut [ProtectionDomain],
    name: &str,
) -> Option<&'a mut ProtectionDomain> {
    for pd in pds {
        if pd.name == name {
            return Some(pd);
        }
        // Nesting is at most 63 deep (MAX_PDS is enforced while parsing).
        if let Some(found) = find_pd_mut(&mut pd.children, name) {
            return Some(found);
        }
    }
    None
}

/// An IRQ number can be delivered to one PD only.
fn check_irqs(sys: &SystemDescription) -> Result<()> {
    let mut seen: HashMap<u64, (&str, &SourcePos)> = HashMap::new();
    for (pd, _) in sys.pds() {
        for irq in &pd.irqs {
            if let Some((first_pd, first)) = seen.insert(irq.irq, (&pd.name, &irq.pos)) {
                return Err(SdfError::DuplicateIrq {
                    at: irq.pos.clone(),
                    irq: irq.irq,
                    pd: pd.name.clone(),
                    first_pd: first_pd.to_string(),
                    first: first.clone(),
                });
            }
        }
    }
    Ok(())
}

/// IRQ ids and channel-end ids share one space per PD: both are bits of the notification badge.
/// (Child-PD and vCPU ids are a separate space, checked while parsing the PD.)
fn check_channel_ids(sys: &SystemDescription) -> Result<()> {
    let mut used: HashMap<(&str, u8), &SourcePos> = HashMap::new();
    for (pd, _) in sys.pds() {
        for irq in &pd.irqs {
            if let Some(first) = used.insert((&pd.name, irq.id), &irq.pos) {
                return Err(SdfError::DuplicateChannelId {
                    at: irq.pos.clone(),
                    pd: pd.name.clone(),
                    id: irq.id,
                    first: first.clone(),
                });
            }
        }
    }
    for channel in &sys.channels {
        for end in &channel.ends {
            if let Some(first) = used.insert((&end.pd, end.id), &end.pos) {
                return Err(SdfError::DuplicateChannelId {
                    at: end.pos.clone(),
                    pd: end.pd.clone(),
                    id: end.id,
                    first: first.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Which address space a list of maps lives in, and what bounds it.
struct Space<'a> {
    /// For messages: "protection domain 'x'" / "virtual machine 'y'".
    label: Box<str>,
    /// First address past the user address space.
    limit: u64,
    /// PDs only: name, stack bottom and the end of the IPC buffer page.
    reserved: Option<(&'a str, u64, u64)>,
}

fn check_maps(sys: &SystemDescription, config: &Config) -> Result<()> {
    let regions: HashMap<&str, &MemoryRegion> = sys
        .memory_regions
        .iter()
        .map(|mr| (mr.name.as_str(), mr))
        .collect();
    for (pd, _) in sys.pds() {
        let space = Space {
            label: format!("protection domain '{}'", pd.name).into(),
            limit: config.vm_map_limit(),
            reserved: Some((
                &pd.name,
                config.pd_stack_bottom(pd.stack_size),
                config.pd_ipc_buffer() + config.arch.small_page(),
            )),
        };
        check_space(&regions, &pd.maps, &space)?;
        if let Some(vm) = &pd.virtual_machine {
            let space = Space {
                label: format!("virtual machine '{}'", vm.name).into(),
                limit: config.vm_map_limit(),
                reserved: None,
            };
            check_space(&regions, &vm.maps, &space)?;
        }
    }
    Ok(())
}

/// A region a virtual machine and a PD share is mapped with the same cacheability by both.
/// Arm gives no coherence between a cacheable and a non-cacheable (or Device) view of the same
/// memory: the cached side reads stale lines and its stores may never reach the uncached side.
/// (Linux maps UIO regions as Device memory, which is why sdfgen maps the virtualisers' side of
/// a driver VM's queues uncached.)
fn check_cacheability(sys: &SystemDescription) -> Result<()> {
    let vm_maps: Vec<(&str, &Map)> = sys
        .pds()
        .filter_map(|(pd, _)| pd.virtual_machine.as_ref())
        .flat_map(|vm| vm.maps.iter().map(move |m| (vm.name.as_str(), m)))
        .collect();
    let attr = |cached: bool| if cached { "cached" } else { "uncached" };
    for (pd, _) in sys.pds() {
        for map in &pd.maps {
            let clash = vm_maps
                .iter()
                .find(|(_, vm_map)| vm_map.mr == map.mr && vm_map.cached != map.cached);
            if let Some((vm, _)) = clash {
                return Err(SdfError::MixedCacheability {
                    at: map.pos.clone(),
                    mr: map.mr.clone(),
                    pd: pd.name.clone(),
                    pd_attr: attr(map.cached),
                    vm: vm.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn check_space(regions: &HashMap<&str, &MemoryRegion>, maps: &[Map], space: &Space) -> Result<()> {
    let mut placed: Vec<(&str, u64, u64)> = Vec::with_capacity(maps.len());
    for map in maps {
        let Some(mr) = regions.get(map.mr.as_str()) else {
            return Err(SdfError::UnknownMr {
                at: map.pos.clone(),
                mr: map.mr.clone(),
                element: "map",
            });
        };
        if !map.vaddr.is_multiple_of(mr.page_size) {
            return Err(SdfError::MapUnaligned {
                at: map.pos.clone(),
                mr: map.mr.clone(),
                vaddr: map.vaddr,
                page_size: mr.page_size,
            });
        }
        let end = match map.vaddr.checked_add(mr.size) {
            Some(end) if end <= space.limit => end,
            _ => {
                return Err(SdfError::MapBeyondTop {
                    at: map.pos.clone(),
                    mr: map.mr.clone(),
                    vaddr: map.vaddr,
                    size: mr.size,
                    limit: space.limit,
                    space: space.label.clone(),
                })
            }
        };
        if let Some((pd, stack_bottom, reserved_end)) = space.reserved {
            if end > stack_bottom {
                return Err(SdfError::MapOverlapsStack {
                    at: map.pos.clone(),
                    mr: map.mr.clone(),
                    start: map.vaddr,
                    end,
                    pd: pd.to_string(),
                    reserved_start: stack_bottom,
                    reserved_end,
                });
            }
        }
        if let Some(&(other, other_start, other_end)) = placed
            .iter()
            .find(|(_, start, stop)| map.vaddr < *stop && *start < end)
        {
            return Err(SdfError::MapOverlap {
                at: map.pos.clone(),
                mr: map.mr.clone(),
                start: map.vaddr,
                end,
                other: other.to_string(),
                other_start,
                other_end,
                space: space.label.clone(),
            });
        }
        placed.push((&map.mr, map.vaddr, end));
    }
    Ok(())
}

/// `<setvar region_paddr>` names an existing region; `setvar_prefill_size` needs a prefill.
fn check_setvar_regions(sys: &SystemDescription) -> Result<()> {
    for (pd, _) in sys.pds() {
        for setvar in &pd.setvars {
            match &setvar.kind {
                SetVarKind::RegionPaddr { mr } if sys.memory_region(mr).is_none() => {
                    return Err(SdfError::UnknownMr {
                        at: setvar.pos.clone(),
                        mr: mr.clone(),
                        element: "setvar",
                    });
                }
                // The map naming `mr` was checked above, so the region exists.
                SetVarKind::PrefillSize { mr }
                    if sys
                        .memory_region(mr)
                        .is_some_and(|r| r.prefill_path.is_none()) =>
                {
                    return Err(SdfError::PrefillSizeWithoutPrefill {
                        at: setvar.pos.clone(),
                        mr: mr.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Regions with a fixed `phys_addr` must not overlap each other.
fn check_phys_overlap(regions: &[MemoryRegion]) -> Result<()> {
    let mut placed: Vec<(&str, u64, u64)> = Vec::new();
    for mr in regions {
        let Some(start) = mr.phys_addr else {
            continue;
        };
        // Cannot overflow: the parser rejects phys_addr + size > u64::MAX.
        let end = start + mr.size;
        if let Some(&(other, other_start, other_end)) =
            placed.iter().find(|(_, s, e)| start < *e && *s < end)
        {
            return Err(SdfError::PhysOverlap {
                at: mr.pos.clone(),
                mr: mr.name.clone(),
                start,
                end,
                other: other.to_string(),
                other_start,
                other_end,
            });
        }
        placed.push((&mr.name, start, end));
    }
    Ok(())
}
