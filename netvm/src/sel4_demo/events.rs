//! The seL4 image's per-frame event counts beside each of its points (issue #18): the VMM's and
//! the guest driver's counters, read over QMP from their stats pages before and after the point
//! (the machine paused both times), as counts per 1000 frames the driver received.

use std::fmt;

use crate::observe::ComponentStats;

/// The VMM PD's stats component (its PD name in `system.xml`) and the guest driver's.
const VMM: &str = "vmm";
const DRIVER: &str = netvm_api::uio::STATS_COMPONENT;

/// The events counted, each the sum of the VMM counters named, in table order.
const EVENTS: [(&str, &[&str]); 6] = [
    ("VM faults", &["vmm.faults"]),
    (
        "doorbells",
        &["vmm.rx_fault_doorbells", "vmm.tx_fault_doorbells"],
    ),
    ("NIC vIRQs", &["vmm.virtio_net_injections"]),
    ("maintenance", &["vmm.maintenance_faults"]),
    ("vPPI", &["vmm.vppi_events"]),
    ("WFI blocks", &["vmm.wfi_blocks"]),
];
/// The frames the guest driver took from the NIC.
const FRAMES: &str = "driver.rx_frames";

/// One reading of the counters (or, from [`Events::since`], the difference of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    /// Frames the guest driver received.
    pub frames: u64,
    /// The events in table order: VM faults, doorbells (RX and TX), NIC vIRQs, VGIC
    /// maintenance faults, vPPIs (guest timer), WFI blocks.
    pub counts: [u64; EVENTS.len()],
}

impl Events {
    /// The counters of `components` (as `netvm stats --qmp` reads them); `None` when the VMM's
    /// or the driver's page is missing or unreadable, or lacks a counter.
    pub fn read(components: &[ComponentStats]) -> Option<Events> {
        let snapshot = |name: &str| {
            components
                .iter()
                .find(|c| c.pd == name)
                .and_then(|c| c.snapshot.as_ref().ok())
        };
        let (vmm, driver) = (snapshot(VMM)?, snapshot(DRIVER)?);
        let mut counts = [0; EVENTS.len()];
        for (count, (_, names)) in counts.iter_mut().zip(EVENTS) {
            for name in names {
                *count += vmm.get(name)?;
            }
        }
        Some(Events {
            frames: driver.get(FRAMES)?,
            counts,
        })
    }

    /// What happened between `before` and `self`; `None` if a counter went back (the guest or
    /// the VMM restarted in between).
    pub fn since(&self, before: &Events) -> Option<Events> {
        let mut counts = [0; EVENTS.len()];
        for ((d, now), then) in counts.iter_mut().zip(self.counts).zip(before.counts) {
            *d = now.checked_sub(then)?;
        }
        Some(Events {
            frames: self.frames.checked_sub(before.frames)?,
            counts,
        })
    }

    /// `(name, count per 1000 frames)` of each event; `None` without frames.
    pub fn per_1000_frames(&self) -> Option<Vec<(&'static str, f64)>> {
        (self.frames > 0).then(|| {
            EVENTS
                .iter()
                .zip(self.counts)
                .map(|((name, _), n)| (*name, n as f64 * 1000.0 / self.frames as f64))
                .collect()
        })
    }

    /// The CSV header fields of [`Events::csv_fields`].
    pub fn csv_header() -> String {
        EVENTS
            .iter()
            .map(|(name, _)| format!("{}_Per_1000_Frames", name.replace(' ', "_")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The per-1000-frame counts as CSV fields (empty without frames).
    pub fn csv_fields(events: Option<&Events>) -> String {
        let per = events.and_then(Events::per_1000_frames);
        (0..EVENTS.len())
            .map(|i| {
                per.as_ref()
                    .map(|p| format!("{:.1}", p[i].1))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Events {
    /// `per 1000 frames: VM faults 1432, doorbells 249, ... (6796 frames)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(per) = self.per_1000_frames() else {
            return write!(f, "no frames received, no per-frame counts");
        };
        f.write_str("per 1000 frames:")?;
        for (i, (name, n)) in per.iter().enumerate() {
            write!(f, "{} {name} {n:.0}", if i == 0 { "" } else { "," })?;
        }
        write!(f, " ({} frames)", self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netvm_api::stats::Snapshot;

    fn component(pd: &str, entries: &[(&str, u64)]) -> ComponentStats {
        ComponentStats {
            pd: pd.to_string(),
            snapshot: Ok(Snapshot {
                component: pd.to_string(),
                entries: entries.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            }),
        }
    }

    fn reading(faults: u64, bells: u64, frames: u64) -> Vec<ComponentStats> {
        vec![
            component(
                "vmm",
                &[
                    ("vmm.faults", faults),
                    ("vmm.rx_fault_doorbells", bells),
                    ("vmm.tx_fault_doorbells", 1),
                    ("vmm.virtio_net_injections", 7),
                    ("vmm.maintenance_faults", 9),
                    ("vmm.vppi_events", 2),
                    ("vmm.wfi_blocks", 3),
                ],
            ),
            component(DRIVER, &[("driver.rx_frames", frames)]),
        ]
    }

    #[test]
    fn counts_per_1000_frames_come_from_the_difference_of_two_readings() {
        let before = Events::read(&reading(100, 10, 1000)).unwrap();
        let after = Events::read(&reading(1532, 259, 7796)).unwrap();
        let d = after.since(&before).unwrap();
        assert_eq!(d.frames, 6796);
        assert_eq!(d.counts[..2], [1432, 249]);
        assert_eq!(
            d.to_string(),
            "per 1000 frames: VM faults 211, doorbells 37, NIC vIRQs 0, maintenance 0, vPPI 0, \
             WFI blocks 0 (6796 frames)"
        );
        assert_eq!(
            Events::csv_header(),
            "VM_faults_Per_1000_Frames,doorbells_Per_1000_Frames,NIC_vIRQs_Per_1000_Frames,\
             maintenance_Per_1000_Frames,vPPI_Per_1000_Frames,WFI_blocks_Per_1000_Frames"
        );
        assert_eq!(Events::csv_fields(Some(&d)), "210.7,36.6,0.0,0.0,0.0,0.0");
        assert_eq!(Events::csv_fields(None), ",,,,,");
    }

    #[test]
    fn a_restart_a_missing_page_or_counter_and_no_frames_give_no_counts() {
        let before = Events::read(&reading(100, 10, 1000)).unwrap();
        // The VMM restarted: its counters went back.
        let after = Events::read(&reading(50, 10, 2000)).unwrap();
        assert_eq!(after.since(&before), None);
        // No driver page (the guest not up), or a counter renamed.
        assert_eq!(Events::read(&reading(1, 1, 1)[..1]), None);
        let mut renamed = reading(1, 1, 1);
        renamed[1] = component(DRIVER, &[("driver.frames_in", 5)]);
        assert_eq!(Events::read(&renamed), None);
        let unreadable = vec![
            ComponentStats {
                pd: "vmm".into(),
                snapshot: Err("torn".into()),
            },
            reading(1, 1, 1).remove(1),
        ];
        assert_eq!(Events::read(&unreadable), None);
        // No frames between the readings: nothing per frame.
        let idle = before.since(&before).unwrap();
        assert_eq!(idle.per_1000_frames(), None);
        assert_eq!(idle.to_string(), "no frames received, no per-frame counts");
    }
}
