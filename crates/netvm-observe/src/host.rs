//! A running host-mode system seen from outside (`netvm stats`, the demo's final report, the
//! end-to-end tests): the counters each component publishes in its stats region
//! (`netvm_api::stats`), the occupancy of every sDDF queue, and the accounting of every buffer pool.
//!
//! The runner leaves a copy of the system description ([`SYSTEM_COPY`]) and an index of region
//! files ([`INDEX`]) in its run directory; everything else is read from the regions themselves,
//! which are never written and never trusted (a corrupt header or queue is reported, not
//! believed).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use netvm_api::stats::Snapshot;
use sddf::queue::{Capacity, Queue};
use sddf::shm::Region;
use sdf::net::{BufferPool, QueueRef};

use crate::mapped::MappedFile;

/// Name of the region index in a run directory.
pub const INDEX: &str = "regions";
/// Name of the system description's copy in a run directory.
pub const SYSTEM_COPY: &str = "system.xml";

/// Why a run cannot be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// No running system was found.
    #[error("no running netvm system under {} (start one with `netvm run` or `netvm demo`)", .0.display())]
    NoRun(PathBuf),
    /// A file of the run directory cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line of the region index is malformed.
    #[error("{}:{line}: malformed region index line", path.display())]
    Index {
        /// The index.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// The system description's copy is invalid.
    #[error(transparent)]
    Sdf(#[from] sdf::SdfError),
    /// The system is not a network system netvm understands.
    #[error(transparent)]
    Net(#[from] sdf::net::NetError),
}

/// One component's published counters.
#[derive(Debug, Clone)]
pub struct ComponentStats {
    /// The PD.
    pub pd: String,
    /// Its counters, or why they cannot be read.
    pub snapshot: Result<Snapshot, String>,
}

/// One queue's occupancy.
#[derive(Debug, Clone)]
pub struct QueueReport {
    /// Which queue.
    pub queue: QueueRef,
    /// Descriptors in it, or why that cannot be told.
    pub len: Result<u16, String>,
}

/// A buffer pool and where its buffers are.
#[derive(Debug, Clone)]
pub struct PoolReport {
    /// Pool name.
    pub name: String,
    /// Buffers in the pool.
    pub buffers: u64,
    /// Its queues.
    pub queues: Vec<QueueReport>,
}

impl PoolReport {
    /// Descriptors in all of the pool's queues (unreadable queues count 0).
    pub fn queued(&self) -> u64 {
        self.queues
            .iter()
            .filter_map(|q| q.len.as_ref().ok())
            .map(|&n| u64::from(n))
            .sum()
    }

    /// Whether every buffer is in exactly one queue (only meaningful when the system is idle:
    /// buffers being processed are in none, broadcast frames in several).
    pub fn balanced(&self) -> bool {
        self.queues.iter().all(|q| q.len.is_ok()) && self.queued() == self.buffers
    }
}

/// A run directory, opened.
pub struct RunView {
    dir: PathBuf,
    system: sdf::SystemDescription,
    files: HashMap<String, PathBuf>,
}

impl RunView {
    /// Run directories under `shm_dir` whose runner is still alive, newest first.
    pub fn running(shm_dir: &Path) -> Vec<PathBuf> {
        let mut runs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(shm_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid: i32 = name
                    .strip_prefix("netvm-run.")?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()?;
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
                let path = e.path();
                (alive && path.join(INDEX).exists()).then_some(())?;
                Some((e.metadata().ok()?.modified().ok()?, path))
            })
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.0));
        runs.into_iter().map(|(_, p)| p).collect()
    }

    /// The newest running system under `shm_dir`.
    pub fn newest(shm_dir: &Path) -> Result<RunView, ObserveError> {
        let dir = Self::running(shm_dir)
            .into_iter()
            .next()
            .ok_or_else(|| ObserveError::NoRun(shm_dir.to_owned()))?;
        RunView::open(&dir)
    }

    /// The run of the runner process `pid` under `shm_dir` (its first, if it started several).
    pub fn of_runner(shm_dir: &Path, pid: u32) -> Result<RunView, ObserveError> {
        let prefix = format!("netvm-run.{pid}.");
        let dir = Self::running(shm_dir)
            .into_iter()
            .rev()
            .find(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .ok_or_else(|| ObserveError::NoRun(shm_dir.to_owned()))?;
        RunView::open(&dir)
    }

    /// Waits up to `limit` for the system to settle with every buffer of every pool in a queue
    /// (buffers being processed or broadcast frames in flight make a pool look unbalanced for
    /// a moment; a lost buffer does for ever). `Ok` with the balanced pools, or `Err` with the
    /// last, unbalanced, view.
    pub fn wait_balanced(
        &self,
        limit: std::time::Duration,
    ) -> Result<Result<Vec<PoolReport>, Vec<PoolReport>>, ObserveError> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let pools = self.pools()?;
            if pools.iter().all(PoolReport::balanced) {
                return Ok(Ok(pools));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(Err(pools));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Opens the run directory `dir`.
    pub fn open(dir: &Path) -> Result<RunView, ObserveError> {
        let index_path = dir.join(INDEX);
        let index = std::fs::read_to_string(&index_path).map_err(|source| ObserveError::Read {
            path: index_path.clone(),
            source,
        })?;
        let mut files = HashMap::new();
        for (i, line) in index.lines().enumerate() {
            let mut parts = line.splitn(3, '\t');
            let (Some(file), Some(_size), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(ObserveError::Index {
                    path: index_path,
                    line: i + 1,
                });
            };
            if file.contains('/') {
                return Err(ObserveError::Index {
                    path: index_path,
                    line: i + 1,
                });
            }
            files.insert(name.to_owned(), dir.join(file));
        }
        let system = sdf::parse(dir.join(SYSTEM_COPY), sdf::Arch::Aarch64)?;
        Ok(RunView {
            dir: dir.to_owned(),
            system,
            files,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn map(&self, region: &str) -> Result<MappedFile, String> {
        let path = self
            .files
            .get(region)
            .ok_or_else(|| format!("region '{region}' is not in the run's index"))?;
        MappedFile::open(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The counters of every PD with a stats region, in system order. A stats region only a
    /// virtual machine maps (the driver VM's, `netvm_api::uio::STATS`) is left out: host mode
    /// runs no virtual machine, and its stand-in publishes in its PD's own region.
    pub fn stats(&self) -> Vec<ComponentStats> {
        self.system
            .memory_regions
            .iter()
            .filter_map(|mr| {
                let pd = mr.name.strip_prefix(sdf::net::STATS_PREFIX)?;
                let mapped_by_a_pd =
                    |(p, _): (&sdf::ProtectionDomain, _)| p.maps.iter().any(|m| m.mr == mr.name);
                if !self.system.pds().any(mapped_by_a_pd) {
                    return None;
                }
                let snapshot = self
                    .map(&mr.name)
                    .and_then(|m| Snapshot::read(&m.region()).map_err(|e| e.to_string()));
                Some(ComponentStats {
                    pd: pd.to_owned(),
                    snapshot,
                })
            })
            .collect()
    }

    /// Every buffer pool with the occupancy of its queues.
    pub fn pools(&self) -> Result<Vec<PoolReport>, ObserveError> {
        let pools = sdf::net::buffer_pools_of(&self.system)?;
        Ok(read_pools(&pools, &mut MappedRegions(self)))
    }
}

/// The memory regions of a system, read by name: the seam between where a system's regions
/// are (host mode: files in the run directory; seL4 in QEMU: guest-physical pages) and the pool
/// accounting, which is the same for both.
pub trait RegionReader {
    /// Calls `f` with the bytes of region `name` (mapped, or a copy), or says why they cannot
    /// be had.
    fn with_region<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(Region<'_>) -> Result<T, String>,
    ) -> Result<T, String>;
}

/// A run directory's regions, mapped from their files.
struct MappedRegions<'a>(&'a RunView);

impl RegionReader for MappedRegions<'_> {
    fn with_region<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(Region<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        f(self.0.map(name)?.region())
    }
}

/// Every pool of `pools` with the occupancy of its queues, read from `regions`.
pub fn read_pools(pools: &[BufferPool], regions: &mut impl RegionReader) -> Vec<PoolReport> {
    pools
        .iter()
        .map(|pool| PoolReport {
            name: pool.name.clone(),
            buffers: pool.buffers,
            queues: pool
                .queues
                .iter()
                .map(|queue| QueueReport {
                    queue: queue.clone(),
                    len: regions.with_region(&queue.region, |r| queue_len(r, queue.capacity)),
                })
                .collect(),
        })
        .collect()
}

/// Descriptors in the queue of `capacity` in `region`, as a third party sees them.
fn queue_len(region: Region<'_>, capacity: u32) -> Result<u16, String> {
    let capacity = Capacity::new(capacity).map_err(|e| format!("{e:?}"))?;
    let q = Queue::new(region, capacity).map_err(|e| e.to_string())?;
    q.observed_len().map_err(|e| format!("{e:?}"))
}

/// The counters as a table: one block per component, `name value` lines; an entry named
/// `<group>.addr` (`netvm_api::stats::ADDR_FIELD`, an IPv4 address as a number) also shows the
/// address.
pub fn render_stats(stats: &[ComponentStats]) -> String {
    let mut out = String::new();
    for c in stats {
        match &c.snapshot {
            Ok(s) => {
                let _ = writeln!(out, "{}:", c.pd);
                for (name, value) in &s.entries {
                    let _ = write!(out, "  {name:<40} {value}");
                    let addr = name
                        .rsplit_once('.')
                        .filter(|(_, field)| *field == netvm_api::stats::ADDR_FIELD)
                        .and_then(|_| u32::try_from(*value).ok());
                    if let Some(addr) = addr {
                        let _ = write!(out, " ({})", std::net::Ipv4Addr::from(addr));
                    }
                    let _ = writeln!(out);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "{}: {e}", c.pd);
            }
        }
    }
    out
}

/// The pools as a table: each queue's occupancy and the pool's balance.
pub fn render_pools(pools: &[PoolReport]) -> String {
    let mut out = String::new();
    for p in pools {
        let verdict = if p.balanced() {
            "all accounted for"
        } else {
            "NOT all in queues (in flight, or lost)"
        };
        let _ = writeln!(
            out,
            "pool {}: {} buffers, {} in queues: {verdict}",
            p.name,
            p.buffers,
            p.queued()
        );
        for q in &p.queues {
            match &q.len {
                Ok(n) => {
                    let _ = writeln!(out, "  {:<48} {n:>5}/{}", q.queue.label, q.queue.capacity);
                }
                Err(e) => {
                    let _ = writeln!(out, "  {:<48} unreadable: {e}", q.queue.label);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_entries_also_show_the_address() {
        let stats = [ComponentStats {
            pd: "client1".into(),
            snapshot: Ok(Snapshot {
                component: "client1".into(),
                entries: vec![
                    ("peer0.addr".into(), 0x0a00_010a),
                    ("peer0.udp_sent".into(), 7),
                ],
            }),
        }];
        let text = render_stats(&stats);
        assert!(
            text.contains("peer0.addr") && text.contains(" 167772426 (10.0.1.10)\n"),
            "{text}"
        );
        assert!(
            text.contains(" 7\n") && !text.contains("(0.0.0.7)"),
            "{text}"
        );
    }
}
