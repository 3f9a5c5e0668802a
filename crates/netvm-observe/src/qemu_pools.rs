//! `netvm stats --qmp SOCKET --report report.txt --system system.xml`: the buffer pools of a
//! seL4 system in QEMU, read from the guest's physical memory through QMP.
//!
//! The pools and their queues come from the system description (`sdf::net::buffer_pools_of`),
//! as in host mode. The queue regions have no fixed physical address there: the Microkit tool
//! places them, and its report ([`crate::microkit_report`]) says where each of their pages is.
//! Each queue region is read page by page into a private copy, then accounted for by the same
//! code as host mode ([`crate::host::read_pools`]).
//!
//! The report's addresses of the regions the tool places are not where the running system has
//! them: on QEMU `virt` they come out shifted, all by the same amount (seen: 0x1e9d000 lower),
//! as the boot's free memory differs from the tool's model of it. So the shift is measured
//! ([`PoolLayout::shift`]): on the stats pages, which the RAM scan finds by content, against
//! the report's page of each `netvm/stats/<pd>` region. Every stats page must give the same
//! shift, else the queues are not read. Regions with a `phys_addr` in `system.xml` are where it
//! says and are not shifted. The virtual machine is paused (QMP
//! `stop`) while the queues are read, so that they are one consistent snapshot, and always
//! resumed (`cont`) afterwards, also when a read fails. (A VM paused before is resumed too.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sddf::shm::{OwnedRegion, Region};
use sdf::net::BufferPool;

use crate::host::{read_pools, PoolReport, RegionReader};
use crate::microkit_report::{Report, ReportError};
use crate::qemu_stats::{FoundPage, PhysMem, QmpError, QmpMem};

/// How far the running system's placed regions are from the report's addresses: add this
/// (wrapping) to a report address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// The difference, two's complement.
    pub delta: u64,
    /// Stats pages it was measured on.
    pub anchors: usize,
}

impl std::fmt::Display for Shift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (delta, anchors) = (signed(self.delta), self.anchors);
        write!(f, "{delta} (measured on {anchors} stats pages)")
    }
}

/// A virtual machine that can be paused while it is read.
pub trait Pause {
    /// Stops the vCPUs.
    fn pause(&mut self) -> Result<(), QmpError>;
    /// Lets them run again.
    fn resume(&mut self) -> Result<(), QmpError>;
}

impl Pause for QmpMem {
    fn pause(&mut self) -> Result<(), QmpError> {
        self.qmp().pause()
    }

    fn resume(&mut self) -> Result<(), QmpError> {
        self.qmp().resume()
    }
}

/// Why the pools cannot be located.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The report is unusable.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The system description is invalid.
    #[error(transparent)]
    Sdf(#[from] sdf::SdfError),
    /// The system is not a network system netvm understands.
    #[error("{}: {source}", path.display())]
    Net {
        /// The system description.
        path: PathBuf,
        /// What is wrong.
        source: sdf::net::NetError,
    },
}

/// Where a seL4 system's buffer pools are: its pools, the sizes of its regions and the report
/// that places them.
#[derive(Debug, Clone)]
pub struct PoolLayout {
    pools: Vec<BufferPool>,
    /// Region → (size, whether system.xml fixes its physical address).
    sizes: HashMap<String, (u64, bool)>,
    report: Report,
    report_path: PathBuf,
    system_path: PathBuf,
}

impl PoolLayout {
    /// Reads the Microkit report at `report_path` and the system description at `system_path`
    /// (the one the image was built from).
    pub fn load(report_path: &Path, system_path: &Path) -> Result<PoolLayout, LayoutError> {
        let report = Report::read(report_path)?;
        let system = sdf::parse(system_path, sdf::Arch::Aarch64)?;
        let pools = sdf::net::buffer_pools_of(&system).map_err(|source| LayoutError::Net {
            path: system_path.to_owned(),
            source,
        })?;
        let sizes = system
            .memory_regions
            .iter()
            .map(|mr| (mr.name.clone(), (mr.size, mr.phys_addr.is_some())))
            .collect();
        Ok(PoolLayout {
            pools,
            sizes,
            report,
            report_path: report_path.to_owned(),
            system_path: system_path.to_owned(),
        })
    }

    /// The shift of the placed regions, measured on the stats pages `found` by the RAM scan
    /// (see the module documentation); `Err` says why it cannot be told.
    pub fn shift(&self, found: &[FoundPage]) -> Result<Shift, String> {
        let report = self.report_path.display();
        let mut shift: Option<(u64, String)> = None;
        let mut anchors = 0;
        for page in found {
            let Ok(snapshot) = &page.snapshot else {
                continue;
            };
            let region = format!("{}{}", sdf::net::STATS_PREFIX, snapshot.component);
            let Some(&[placed]) = self.report.pages(&region) else {
                return Err(format!(
                    "{report} has no one-page region '{region}' for the stats page found at {:#x} (the report of another system?)",
                    page.addr
                ));
            };
            let delta = page.addr.wrapping_sub(placed.addr);
            match &shift {
                Some((d, first)) if *d != delta => {
                    return Err(format!(
                        "the stats pages are not all shifted alike from {report}: '{first}' by {}, '{region}' by {}",
                        signed(*d),
                        signed(delta)
                    ))
                }
                Some(_) => {}
                None => shift = Some((delta, region)),
            }
            anchors += 1;
        }
        let (delta, _) = shift.ok_or_else(|| {
            "no stats page found in RAM to place the queues by (has the system booted?)".to_owned()
        })?;
        Ok(Shift { delta, anchors })
    }

    /// Every pool with the occupancy of its queues, read from `mem` while the VM is paused;
    /// the regions the report places are read `shift` from there (an `Err` shift makes their
    /// queues unreadable, with its reason). A queue that cannot be located is reported in its
    /// pool; `Err` only when QEMU cannot be read (the VM is resumed then too).
    pub fn read(
        &self,
        mem: &mut (impl PhysMem + Pause),
        shift: &Result<Shift, String>,
    ) -> Result<Vec<PoolReport>, QmpError> {
        mem.pause()?;
        let mut regions = PhysRegions {
            mem,
            layout: self,
            shift,
            failed: None,
        };
        let pools = read_pools(&self.pools, &mut regions);
        let failed = regions.failed.take();
        let resumed = mem.resume();
        if let Some(e) = failed {
            return Err(e);
        }
        resumed.map(|()| pools)
    }
}

/// The layout's regions, copied out of guest-physical memory.
struct PhysRegions<'a, M> {
    mem: &'a mut M,
    layout: &'a PoolLayout,
    shift: &'a Result<Shift, String>,
    /// The first QMP failure: reading stops there.
    failed: Option<QmpError>,
}

impl<M: PhysMem> PhysRegions<'_, M> {
    fn copy(&mut self, name: &str) -> Result<OwnedRegion, String> {
        if self.failed.is_some() {
            return Err("not read: QEMU failed before".into());
        }
        let layout = self.layout;
        let (size, fixed) = *layout.sizes.get(name).ok_or_else(|| {
            format!(
                "{}: no memory region '{name}'",
                layout.system_path.display()
            )
        })?;
        let pages = layout.report.pages(name).ok_or_else(|| {
            format!(
                "{}: no pages of region '{name}' (the report of another system?)",
                layout.report_path.display()
            )
        })?;
        let total: u64 = pages.iter().map(|p| p.size).sum();
        if total != size {
            return Err(format!(
                "{}: region '{name}' is {} pages, {total:#x} bytes, but {} makes it {size:#x} bytes (the report of another system?)",
                layout.report_path.display(),
                pages.len(),
                layout.system_path.display()
            ));
        }
        let delta = match self.shift {
            _ if fixed => 0,
            Ok(shift) => shift.delta,
            Err(why) => return Err(format!("cannot be placed: {why}")),
        };
        let mut bytes = vec![0u8; total as usize];
        let mut at = 0;
        for page in pages {
            let end = at + page.size as usize;
            if let Err(e) = self
                .mem
                .read(page.addr.wrapping_add(delta), &mut bytes[at..end])
            {
                let why = e.to_string();
                self.failed = Some(e);
                return Err(why);
            }
            at = end;
        }
        let region = OwnedRegion::new(bytes.len());
        region
            .region()
            .copy_from_slice(0, &bytes)
            .map_err(|e| format!("{e:?}"))?;
        Ok(region)
    }
}

impl<M: PhysMem> RegionReader for PhysRegions<'_, M> {
    fn with_region<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(Region<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        f(self.copy(name)?.region())
    }
}

/// `delta` as a signed hexadecimal number.
fn signed(delta: u64) -> String {
    let d = delta as i64;
    format!("{}{:#x}", if d < 0 { "-" } else { "+" }, d.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::render_pools;
    use sdf::net::{NetClientSpec, NetSystemSpec};
    use std::fmt::Write as _;

    const PAGE: u64 = 4096;

    /// Guest-physical memory of sparse pages, that checks it is only read while paused.
    #[derive(Default)]
    struct FakeVm {
        pages: HashMap<u64, Vec<u8>>,
        paused: bool,
        log: Vec<String>,
        /// Reads of this page fail.
        broken: Option<u64>,
    }

    impl PhysMem for FakeVm {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), QmpError> {
            assert!(self.paused, "read at {addr:#x} while the VM runs");
            self.log.push(format!("read {addr:#x}+{:#x}", buf.len()));
            if self.broken == Some(addr) {
                return Err(QmpError::Command {
                    command: "pmemsave",
                    class: "GenericError".into(),
                    desc: "Invalid addr".into(),
                });
            }
            for (i, chunk) in buf.chunks_mut(PAGE as usize).enumerate() {
                let page = &self.pages[&(addr + i as u64 * PAGE)];
                chunk.copy_from_slice(&page[..chunk.len()]);
            }
            Ok(())
        }
    }

    impl Pause for FakeVm {
        fn pause(&mut self) -> Result<(), QmpError> {
            self.log.push("stop".into());
            self.paused = true;
            Ok(())
        }

        fn resume(&mut self) -> Result<(), QmpError> {
            self.log.push("cont".into());
            self.paused = false;
            Ok(())
        }
    }

    /// Two clients with copiers, as sdfgen names a `generic` device's regions.
    fn pools() -> Vec<BufferPool> {
        let mut spec = NetSystemSpec::new("generic", "vmm", "net_virt_rx", "net_virt_tx");
        for (i, c) in ["client0", "client1"].iter().enumerate() {
            let copier = format!("{c}_net_copier");
            let mac = [2, 0, 0, 0, 0, i as u8];
            spec.clients.push(NetClientSpec::new(c, Some(&copier), mac));
        }
        sdf::net::buffer_pools(&spec).unwrap()
    }

    /// No shift.
    const EXACT: Result<Shift, String> = Ok(Shift {
        delta: 0,
        anchors: 1,
    });

    /// Lays every queue region out in `vm` at scattered, descending page addresses, with each
    /// pool's buffers spread over its queues, and returns the layout and the report text.
    fn system(vm: &mut FakeVm) -> (PoolLayout, String) {
        system_shifted(vm, 0)
    }

    /// [`system`] with every page `delta` (wrapping) from where the report says it is.
    fn system_shifted(vm: &mut FakeVm, delta: u64) -> (PoolLayout, String) {
        let pools = pools();
        let mut report =
            String::from("# Kernel Objects Details: ID, Type, Name, Physical Address\n");
        let mut sizes = HashMap::new();
        let mut next = 0x7000_0000u64;
        let mut id = 0;
        for pool in &pools {
            let mut left = pool.buffers;
            for q in &pool.queues {
                let bytes = sddf::queue::queue_bytes(q.capacity as usize) as u64;
                let size = bytes.div_ceil(PAGE) * PAGE;
                sizes.insert(q.region.clone(), (size, false));
                let len = left.min(u64::from(q.capacity)) as u16;
                left -= u64::from(len);
                // Indices near wrapping, as a long-running system has them.
                let head = 65_500u16;
                let tail = head.wrapping_add(len);
                for i in 0..size / PAGE {
                    next -= 3 * PAGE;
                    let mut page = vec![0u8; PAGE as usize];
                    if i == 0 {
                        page[0..2].copy_from_slice(&tail.to_le_bytes());
                        page[2..4].copy_from_slice(&head.to_le_bytes());
                    }
                    vm.pages.insert(next.wrapping_add(delta), page);
                    let _ = writeln!(
                        report,
                        "\t{id} - Page(4 KiB): 'frame_mr_{}_{i:09}' @ {next:#014x}",
                        q.region
                    );
                    id += 1;
                }
            }
            assert_eq!(left, 0, "every buffer placed");
        }
        for (i, pd) in ["vmm", "client0"].iter().enumerate() {
            let _ = writeln!(
                report,
                "\t{} - Page(4 KiB): 'frame_mr_netvm/stats/{pd}_000000000' @ {:#x}",
                id + i,
                0x7100_0000 + i as u64 * PAGE
            );
        }
        let report_path = PathBuf::from("build/sel4/release/report.txt");
        let layout = PoolLayout {
            pools,
            sizes,
            report: Report::parse(&report, &report_path).unwrap(),
            report_path,
            system_path: "system.xml".into(),
        };
        (layout, report)
    }

    /// The first page of `region` in `vm` (its queue header).
    fn header<'a>(vm: &'a mut FakeVm, layout: &PoolLayout, region: &str) -> &'a mut Vec<u8> {
        let addr = layout.report.pages(region).unwrap()[0].addr;
        vm.pages.get_mut(&addr).unwrap()
    }

    #[test]
    fn an_idle_system_is_balanced_and_read_while_paused() {
        let mut vm = FakeVm::default();
        let (layout, _) = system(&mut vm);
        let pools = layout.read(&mut vm, &EXACT).unwrap();
        assert_eq!(pools.len(), 4, "rx, two clients' rx, tx");
        assert!(pools.iter().all(PoolReport::balanced), "{pools:?}");
        let text = render_pools(&pools);
        assert!(
            text.contains("pool tx: 1024 buffers, 1024 in queues: all accounted for"),
            "{text}"
        );
        assert!(!text.contains("unreadable"), "{text}");
        assert_eq!(vm.log.first().map(String::as_str), Some("stop"));
        assert_eq!(vm.log.last().map(String::as_str), Some("cont"));
        // Page by page: a 3-page queue region is three reads of one page.
        assert!(vm
            .log
            .iter()
            .skip(1)
            .take(3)
            .all(|l| l.ends_with("+0x1000")));
        assert!(!vm.paused);
    }

    /// Stats pages found in RAM where the report places them, moved by `delta`.
    fn found(delta: u64) -> Vec<FoundPage> {
        ["vmm", "client0"]
            .iter()
            .enumerate()
            .map(|(i, pd)| FoundPage {
                addr: (0x7100_0000 + i as u64 * PAGE).wrapping_add(delta),
                snapshot: Ok(netvm_api::stats::Snapshot {
                    component: (*pd).to_owned(),
                    entries: Vec::new(),
                }),
            })
            .collect()
    }

    #[test]
    fn placed_regions_are_read_where_the_stats_pages_show_they_moved() {
        let delta = 0u64.wrapping_sub(0x1e9_d000);
        let mut vm = FakeVm::default();
        let (mut layout, _) = system_shifted(&mut vm, delta);
        let shift = layout.shift(&found(delta));
        assert_eq!(shift, Ok(Shift { delta, anchors: 2 }));
        assert_eq!(
            shift.as_ref().unwrap().to_string(),
            "-0x1e9d000 (measured on 2 stats pages)"
        );
        let pools = layout.read(&mut vm, &shift).unwrap();
        assert!(pools.iter().all(PoolReport::balanced), "{pools:?}");
        // A region system.xml fixes is read where the report says, whatever the shift.
        let fixed = layout.pools[0].queues[0].region.clone();
        layout.sizes.get_mut(&fixed).unwrap().1 = true;
        let pages = layout.report.pages(&fixed).unwrap().to_vec();
        for p in &pages {
            let page = vm.pages.remove(&p.addr.wrapping_add(delta)).unwrap();
            vm.pages.insert(p.addr, page);
        }
        let pools = layout.read(&mut vm, &shift).unwrap();
        assert!(pools.iter().all(PoolReport::balanced), "{pools:?}");
    }

    #[test]
    fn a_shift_is_not_guessed() {
        let mut vm = FakeVm::default();
        let (layout, _) = system(&mut vm);
        let none = layout.shift(&[]).unwrap_err();
        assert!(none.contains("no stats page found"), "{none}");
        let mut pages = found(0x1000);
        pages[1].addr += 0x1000;
        let split = layout.shift(&pages).unwrap_err();
        assert!(
            split.contains("'netvm/stats/vmm' by +0x1000, 'netvm/stats/client0' by +0x2000"),
            "{split}"
        );
        let mut pages = found(0);
        pages[0].snapshot = Err("bad header".into());
        pages[1].snapshot.as_mut().unwrap().component = "copier".into();
        let other = layout.shift(&pages).unwrap_err();
        assert!(
            other.starts_with(
                "build/sel4/release/report.txt has no one-page region 'netvm/stats/copier'"
            ),
            "{other}"
        );
        // Unplaceable queues are unreadable, with the reason, and their pools unbalanced.
        let pools = layout.read(&mut vm, &Err(none.clone())).unwrap();
        assert!(pools.iter().all(|p| !p.balanced()));
        assert_eq!(
            pools[0].queues[0].len.as_ref().unwrap_err(),
            &format!("cannot be placed: {none}")
        );
    }

    #[test]
    fn a_missing_buffer_or_a_corrupt_queue_unbalances_its_pool_only() {
        let mut vm = FakeVm::default();
        let (layout, _) = system(&mut vm);
        let rx = &layout.pools[0];
        assert_eq!(rx.name, "rx");
        // One buffer fewer in the driver's free queue: tail one back.
        let h = header(&mut vm, &layout, &rx.queues[0].region);
        let tail = u16::from_le_bytes([h[0], h[1]]).wrapping_sub(1);
        h[0..2].copy_from_slice(&tail.to_le_bytes());
        // A client's queue with more descriptors than it holds.
        let tx = layout.pools.iter().position(|p| p.name == "tx").unwrap();
        let bad = layout.pools[tx].queues.last().unwrap().region.clone();
        header(&mut vm, &layout, &bad)[0..4].copy_from_slice(&[0, 0x40, 0, 0]);
        let pools = layout.read(&mut vm, &EXACT).unwrap();
        assert!(!pools[0].balanced());
        assert_eq!(pools[0].queued(), pools[0].buffers - 1);
        assert!(!pools[tx].balanced());
        assert!(pools[tx].queues.last().unwrap().len.is_err());
        assert!(pools
            .iter()
            .enumerate()
            .all(|(i, p)| p.balanced() == (i != 0 && i != tx)));
        let text = render_pools(&pools);
        assert!(
            text.contains("pool rx: 512 buffers, 511 in queues: NOT all"),
            "{text}"
        );
        assert!(text.contains("unreadable: PeerMisbehaviour"), "{text}");
    }

    #[test]
    fn regions_the_report_does_not_place_or_sizes_that_differ_are_unreadable() {
        let mut vm = FakeVm::default();
        let (mut layout, report) = system(&mut vm);
        let gone = layout.pools[0].queues[1].region.clone();
        let shrunk = layout.pools[1].queues[0].region.clone();
        // The report of another build: one region missing, another a page short.
        let other: String = report
            .lines()
            .filter(|l| !l.contains(&format!("'frame_mr_{gone}_")))
            .filter(|l| !l.contains(&format!("'frame_mr_{shrunk}_000000002'")))
            .map(|l| format!("{l}\n"))
            .collect();
        layout.report = Report::parse(&other, &layout.report_path).unwrap();
        let pools = layout.read(&mut vm, &EXACT).unwrap();
        let gone_err = pools[0].queues[1].len.as_ref().unwrap_err();
        assert_eq!(
            gone_err,
            &format!("build/sel4/release/report.txt: no pages of region '{gone}' (the report of another system?)")
        );
        let shrunk_err = pools[1].queues[0].len.as_ref().unwrap_err();
        assert!(
            shrunk_err.starts_with(&format!(
                "build/sel4/release/report.txt: region '{shrunk}' is 2 pages, 0x2000 bytes, but system.xml makes it 0x3000 bytes"
            )),
            "{shrunk_err}"
        );
        assert!(!pools[0].balanced() && !pools[1].balanced());
        assert!(pools[2].balanced() && pools[3].balanced());
        layout.sizes.clear();
        let pools = layout.read(&mut vm, &EXACT).unwrap();
        assert_eq!(
            pools[2].queues[0].len.as_ref().unwrap_err(),
            &format!(
                "system.xml: no memory region '{}'",
                layout.pools[2].queues[0].region
            )
        );
    }

    #[test]
    fn a_qmp_failure_is_an_error_and_the_vm_is_resumed() {
        let mut vm = FakeVm::default();
        let (layout, _) = system(&mut vm);
        let third = &layout.pools[1].queues[0].region;
        vm.broken = Some(layout.report.pages(third).unwrap()[1].addr);
        let err = layout.read(&mut vm, &EXACT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "QMP command pmemsave failed: Invalid addr (GenericError)"
        );
        assert!(!vm.paused, "resumed after the failure");
        assert_eq!(vm.log.last().map(String::as_str), Some("cont"));
        // Nothing is read after the failure.
        let failed_at = vm.log.iter().position(|l| {
            l.contains("read") && {
                let addr = format!("{:#x}", vm.broken.unwrap());
                l.contains(&addr)
            }
        });
        assert_eq!(failed_at, Some(vm.log.len() - 2));
    }

    #[test]
    fn a_missing_report_or_system_is_named() {
        let dir = std::env::temp_dir().join(format!("netvm-pools-test.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = dir.join("report.txt");
        let err = PoolLayout::load(&report, &dir.join("system.xml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", report.display())),
            "{err}"
        );
        std::fs::write(
            &report,
            "# Kernel Objects Details: ID, Type, Name, Physical Address\n",
        )
        .unwrap();
        let err = PoolLayout::load(&report, &dir.join("system.xml")).unwrap_err();
        assert!(err.to_string().contains("system.xml"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
