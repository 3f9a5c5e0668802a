//! Read-only questions the host runner and image builders ask of a validated system.

use crate::model::{MemoryRegion, ProtectionDomain, SetVar, SystemDescription};

/// Depth-first, pre-order walk over every PD with its parent (see [`SystemDescription::pds`]).
#[derive(Debug, Clone)]
pub struct Pds<'a> {
    /// PDs still to visit, next on top; children are pushed in reverse so that they come out in
    /// document order.
    stack: Vec<(&'a ProtectionDomain, Option<&'a ProtectionDomain>)>,
}

impl<'a> Iterator for Pds<'a> {
    type Item = (&'a ProtectionDomain, Option<&'a ProtectionDomain>);

    fn next(&mut self) -> Option<Self::Item> {
        let (pd, parent) = self.stack.pop()?;
        self.stack
            .extend(pd.children.iter().rev().map(|child| (child, Some(pd))));
        Some((pd, parent))
    }
}

/// One channel as seen from one of its PDs (see [`SystemDescription::channels_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdChannel<'a> {
    /// This PD's id for the channel.
    pub local_id: u8,
    /// The PD at the other end.
    pub peer_pd: &'a str,
    /// The peer's id for the channel.
    pub peer_id: u8,
    /// This PD may PPC the peer.
    pub pp: bool,
    /// This PD may notify the peer.
    pub notify: bool,
    /// The peer may PPC this PD (so this PD serves `protected` on `local_id`).
    pub peer_pp: bool,
    /// The peer may notify this PD.
    pub peer_notify: bool,
}

/// The values Microkit patches into a PD's `microkit_irqs`, `microkit_notifications` and
/// `microkit_pps` symbols (see [`SystemDescription::entry_masks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryMasks {
    /// Bit `id` set for every `<irq id>` of the PD.
    pub irqs: u64,
    /// Bit `local_id` set for every channel end of the PD with `notify="true"`.
    pub notifications: u64,
    /// Bit `local_id` set for every channel end of the PD with `pp="true"`.
    pub pps: u64,
}

impl SystemDescription {
    /// Every PD with its parent, depth-first in document order (a parent before its children,
    /// children before the next sibling). This is the order of Microkit's flattened PD list,
    /// so `pds().enumerate()` yields the index the monitor uses (its fault badge is index + 1).
    pub fn pds(&self) -> Pds<'_> {
        Pds {
            stack: self
                .protection_domains
                .iter()
                .rev()
                .map(|pd| (pd, None))
                .collect(),
        }
    }

    /// The PD called `name`, at any depth.
    pub fn pd(&self, name: &str) -> Option<&ProtectionDomain> {
        self.pds().map(|(pd, _)| pd).find(|pd| pd.name == name)
    }

    /// The parent of the PD called `name`: `None` if it is top-level or does not exist.
    pub fn parent_of(&self, name: &str) -> Option<&ProtectionDomain> {
        self.pds().find(|(pd, _)| pd.name == name)?.1
    }

    /// The memory region called `name`.
    pub fn memory_region(&self, name: &str) -> Option<&MemoryRegion> {
        self.memory_regions.iter().find(|mr| mr.name == name)
    }

    /// The channels of PD `pd` in document order, from its point of view. Empty if the PD has
    /// none or does not exist.
    pub fn channels_of(&self, pd: &str) -> Vec<PdChannel<'_>> {
        self.channels
            .iter()
            .filter_map(|channel| {
                let [a, b] = &channel.ends;
                let (local, peer) = if a.pd == pd {
                    (a, b)
                } else if b.pd == pd {
                    (b, a)
                } else {
                    return None;
                };
                Some(PdChannel {
                    local_id: local.id,
                    peer_pd: &peer.pd,
                    peer_id: peer.id,
                    pp: local.pp,
                    notify: local.notify,
                    peer_pp: peer.pp,
                    peer_notify: peer.notify,
                })
            })
            .collect()
    }

    /// PD `pd`'s end of its one channel on which it may call the peer (`pp`) and the peer
    /// notifies it: how an sDDF timer client reaches its timer (`timer_client_config_t`'s
    /// `driver_id`). `None` when it has no such channel, or several.
    pub fn timer_channel_of(&self, pd: &str) -> Option<u8> {
        let channels = self.channels_of(pd);
        let mut pps = channels.iter().filter(|c| c.pp);
        match (pps.next(), pps.next()) {
            (Some(c), None) if c.peer_notify => Some(c.local_id),
            _ => None,
        }
    }

    /// Every symbol patched into PD `pd`'s image, as (symbol, value kind) with position:
    /// `setvar_vaddr`/`setvar_size`/`setvar_prefill_size` of its maps, `setvar_id` of its irqs,
    /// child PDs, vCPUs and channel ends, and its `<setvar region_paddr>` elements.
    pub fn setvars_of(&self, pd: &str) -> Option<&[SetVar]> {
        self.pd(pd).map(|pd| pd.setvars.as_slice())
    }

    /// The `microkit_irqs` / `microkit_notifications` / `microkit_pps` masks of PD `pd`.
    pub fn entry_masks(&self, pd: &str) -> Option<EntryMasks> {
        let found = self.pd(pd)?;
        let mut masks = EntryMasks {
            irqs: found.irqs.iter().fold(0, |m, irq| m | 1 << irq.id),
            ..EntryMasks::default()
        };
        for channel in self.channels_of(pd) {
            if channel.notify {
                masks.notifications |= 1 << channel.local_id;
            }
            if channel.pp {
                masks.pps |= 1 << channel.local_id;
            }
        }
        Some(masks)
    }

    /// Whether PD `pd`'s input cap is an endpoint rather than a notification (Microkit
    /// `needs_ep`): it has children, a virtual machine, or a channel peer that may PPC it.
    pub fn needs_endpoint(&self, pd: &str) -> Option<bool> {
        let found = self.pd(pd)?;
        Some(
            !found.children.is_empty()
                || found.virtual_machine.is_some()
                || self.channels_of(pd).iter().any(|c| c.peer_pp),
        )
    }
}
