//! UIO in the guest: finding the devices by name, mapping them, and the [`UioPlatform`].
//!
//! Devices are found through `<sysfs>/class/uio/uioN/name` and
//! `<sysfs>/class/uio/uioN/maps/mapM/{name,addr,size,offset}` and opened as `<dev>/uioN`, so
//! tests can point both roots at an emulated tree. Map `M` of a device is mapped at file offset
//! `M * page_size` (the UIO rule). Linux maps whole pages: `addr` is the page and the region
//! starts `offset` bytes into it; `uio_pdrv_genirq` reports `size` page-rounded *including*
//! `offset`, so the usable region is `offset..size`.
//!
//! Doorbells are single aligned 32-bit stores to `rx_fault` / `tx_fault` (the value written is a
//! running count, which the VMM ignores and tests can read back). Interrupts: each IRQ device is
//! opened nonblocking; when it polls readable the driver reads the 4-byte event count until
//! `EAGAIN` (an unread count keeps it readable forever) and re-enables the IRQ by writing `1u32`.
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sddf::queue::{queue_bytes, Capacity, DrainSide, FillSide, Queue};
use sddf::shm::Region;
use sddf::NET_BUFFER_SIZE;

use crate::config::DriverConfig;
use crate::driver::{DriverQueues, Events, NicPoll, Platform};
use crate::names;
use crate::sys::{self, Mapping};

/// One map of a UIO device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// `M` of `mapM`.
    pub index: usize,
    /// `maps/mapM/name` (often empty).
    pub name: String,
    /// Physical page address.
    pub addr: u64,
    /// Bytes from `addr` (page-rounded, including `offset`).
    pub size: u64,
    /// Where the region starts within its first page.
    pub offset: u64,
}

/// One UIO device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioDevice {
    /// `N` of `uioN`.
    pub number: u32,
    /// `name`: the device-tree node name.
    pub name: String,
    /// Its maps, by index.
    pub maps: Vec<MapInfo>,
}

/// Finding or mapping the UIO devices failed.
#[derive(Debug, thiserror::Error)]
pub enum UioError {
    /// reading {path}: {source}
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// {path}: `{text}` is not a number
    #[error("{path}: `{text}` is not a number")]
    Parse {
        /// The sysfs file.
        path: PathBuf,
        /// Its contents.
        text: String,
    },
    /// no UIO device named `{name}`; found: {found}
    #[error("no UIO device named `{name}`; found: {found}")]
    Missing {
        /// The name looked for.
        name: String,
        /// Every device and map found.
        found: String,
    },
    /// two UIO devices are named `{name}`; found: {found}
    #[error("two UIO devices are named `{name}`; found: {found}")]
    Duplicate {
        /// The name.
        name: String,
        /// Every device and map found.
        found: String,
    },
    /// UIO device `{name}` has no map0; found: {found}
    #[error("UIO device `{name}` has no map0; found: {found}")]
    NoMap {
        /// The device name.
        name: String,
        /// Every device and map found.
        found: String,
    },
    /// UIO device `{name}`: map0 holds {usable:#x} bytes after its offset, {need:#x} needed ({why}); found: {found}
    #[error("UIO device `{name}`: map0 holds {usable:#x} bytes after its offset, {need:#x} needed ({why}); found: {found}")]
    MapTooSmall {
        /// The device name.
        name: String,
        /// Usable bytes (`size - offset`).
        usable: u64,
        /// Bytes needed.
        need: u64,
        /// What needs them.
        why: String,
        /// Every device and map found.
        found: String,
    },
    /// TX data regions must be numbered `tx_data0`..`tx_data<N-1>` without gaps, but `{name}` is beyond tx_data{count}; found: {found}
    #[error("TX data regions must be numbered tx_data0..tx_data<N-1> without gaps, but `{name}` is beyond tx_data{count}; found: {found}")]
    TxDataGap {
        /// The stray device.
        name: String,
        /// How many consecutive ones were found.
        count: usize,
        /// Every device and map found.
        found: String,
    },
    /// {count} TX data regions, but an oid has only 6 bits (at most 64)
    #[error("{count} TX data regions, but an oid has only 6 bits (at most 64)")]
    TooManyTxRegions {
        /// How many were found.
        count: usize,
    },
    /// opening {path} (UIO device `{name}`): {source}
    #[error("opening {path} (UIO device `{name}`): {source}")]
    Open {
        /// The device file.
        path: PathBuf,
        /// The device name.
        name: String,
        /// The system error.
        source: io::Error,
    },
    /// mapping {path} (UIO device `{name}`, {len:#x} bytes): {source}
    #[error("mapping {path} (UIO device `{name}`, {len:#x} bytes): {source}")]
    Map {
        /// The device file.
        path: PathBuf,
        /// The device name.
        name: String,
        /// The length asked for.
        len: usize,
        /// The system error.
        source: io::Error,
    },
}

fn read_text(path: &Path) -> Result<String, UioError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| UioError::Read {
            path: path.to_path_buf(),
            source,
        })
}

fn read_number(path: &Path) -> Result<u64, UioError> {
    let text = read_text(path)?;
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| UioError::Parse {
        path: path.to_path_buf(),
        text,
    })
}

fn numbered(dir: &Path, prefix: &str) -> Result<Vec<(u32, PathBuf)>, UioError> {
    let rd = std::fs::read_dir(dir).map_err(|source| UioError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| UioError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = e.file_name();
        let Some(n) = name.to_str().and_then(|s| s.strip_prefix(prefix)) else {
            continue;
        };
        if let Ok(n) = n.parse::<u32>() {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Lists every UIO device under `<sysfs_root>/class/uio`, in device-number order.
pub fn scan(sysfs_root: &Path) -> Result<Vec<UioDevice>, UioError> {
    let class = sysfs_root.join("class/uio");
    let mut devices = Vec::new();
    for (number, dir) in numbered(&class, "uio")? {
        let name = read_text(&dir.join("name"))?;
        let maps_dir = dir.join("maps");
        let mut maps = Vec::new();
        if maps_dir.is_dir() {
            for (index, m) in numbered(&maps_dir, "map")? {
                maps.push(MapInfo {
                    index: index as usize,
                    name: read_text(&m.join("name")).unwrap_or_default(),
                    addr: read_number(&m.join("addr"))?,
                    size: read_number(&m.join("size"))?,
                    offset: read_number(&m.join("offset")).unwrap_or(0),
                });
            }
        }
        devices.push(UioDevice { number, name, maps });
    }
    Ok(devices)
}

/// A one-line listing of `devices` for error messages.
pub fn listing(devices: &[UioDevice]) -> String {
    if devices.is_empty() {
        return "no UIO devices at all".to_string();
    }
    let mut s = String::new();
    for (i, d) in devices.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        let _ = write!(s, "uio{} `{}`", d.number, d.name);
        if d.maps.is_empty() {
            s.push_str(" (no maps)");
        }
        for m in &d.maps {
            let _ = write!(
                s,
                " map{} addr={:#x} size={:#x} offset={:#x}",
                m.index, m.addr, m.size, m.offset
            );
        }
    }
    s
}

/// Map0 of one UIO device, mapped.
pub struct UioMap {
    /// The device name.
    pub name: String,
    mapping: Mapping,
    offset: usize,
    len: usize,
}

impl UioMap {
    /// The device's region (`offset..size` of the mapping).
    pub fn region(&self) -> Region<'_> {
        match self.mapping.region().slice(self.offset, self.len) {
            Ok(r) => r,
            // `Finder::map` maps page_round(size) bytes and sets offset + len = size.
            Err(_) => unreachable!("UIO map `{}` was range-checked when opened", self.name),
        }
    }

    /// Usable bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The driver's shared memory: four queues and the data regions.
pub struct UioMemory {
    /// rx_free.
    pub rx_free: UioMap,
    /// rx_active.
    pub rx_active: UioMap,
    /// rx_data.
    pub rx_data: UioMap,
    /// tx_free.
    pub tx_free: UioMap,
    /// tx_active.
    pub tx_active: UioMap,
    /// tx_data0.. in oid order.
    pub tx_data: Vec<UioMap>,
    /// RX queue capacity.
    pub rx_capacity: Capacity,
    /// TX queue capacity.
    pub tx_capacity: Capacity,
}

fn queue(m: &UioMap, c: Capacity) -> Result<Queue<'_>, sddf::shm::OutOfBounds> {
    Queue::new(m.region(), c)
}

impl UioMemory {
    /// The driver's view of the queues.
    pub fn queues(&self) -> DriverQueues<'_> {
        // The maps were checked at open to hold queue_bytes(capacity), so Queue::new cannot
        // fail; an empty region would make it fail, which `open` rules out.
        let (rf, ra, tf, ta) = match (
            queue(&self.rx_free, self.rx_capacity),
            queue(&self.rx_active, self.rx_capacity),
            queue(&self.tx_free, self.tx_capacity),
            queue(&self.tx_active, self.tx_capacity),
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            _ => unreachable!("queue maps were size-checked when opened"),
        };
        DriverQueues {
            rx: FillSide::new(rf, ra),
            rx_data: self.rx_data.region(),
            tx: DrainSide::new(tf, ta),
            tx_data: self.tx_data.iter().map(UioMap::region).collect(),
        }
    }
}

/// Doorbells and interrupts over UIO.
pub struct UioPlatform {
    rx_fault: UioMap,
    tx_fault: UioMap,
    rx_irq: File,
    tx_irq: File,
    rings: u32,
}

/// Everything the driver needs from UIO.
pub struct UioDevices {
    /// Queues and data.
    pub memory: UioMemory,
    /// Doorbells and interrupts.
    pub platform: UioPlatform,
    /// The page for the driver's counters ([`names::STATS`]), if the system gives one.
    pub stats: Option<UioMap>,
    /// What was found (for the log).
    pub listing: String,
}

/// Bytes of the [`names::STATS`] page.
const STATS_PAGE: u64 = 4096;

struct Finder<'a> {
    devices: &'a [UioDevice],
    found: String,
    dev_root: &'a Path,
}

impl Finder<'_> {
    fn find(&self, name: &str) -> Result<Option<&UioDevice>, UioError> {
        let mut it = self.devices.iter().filter(|d| d.name == name);
        let first = it.next();
        if it.next().is_some() {
            return Err(UioError::Duplicate {
                name: name.to_string(),
                found: self.found.clone(),
            });
        }
        Ok(first)
    }

    fn require(&self, name: &str) -> Result<&UioDevice, UioError> {
        self.find(name)?.ok_or_else(|| UioError::Missing {
            name: name.to_string(),
            found: self.found.clone(),
        })
    }

    fn path(&self, d: &UioDevice) -> PathBuf {
        self.dev_root.join(format!("uio{}", d.number))
    }

    fn open_file(&self, d: &UioDevice, nonblock: bool) -> Result<File, UioError> {
        let path = self.path(d);
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        if nonblock {
            o.custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC);
        }
        o.open(&path).map_err(|source| UioError::Open {
            path,
            name: d.name.clone(),
            source,
        })
    }

    /// Map0 of `name`, which must hold `need` bytes after its offset, read-write.
    fn map(&self, name: &str, need: u64, why: &str) -> Result<UioMap, UioError> {
        self.map_with(name, need, why, true)
    }

    /// Map0 of `name` read-only: a region the driver only reads (the clients' TX data), so
    /// that not even a bug in it can write there (the system description maps them
    /// read-only into the guest too).
    fn map_read_only(&self, name: &str, need: u64, why: &str) -> Result<UioMap, UioError> {
        self.map_with(name, need, why, false)
    }

    fn map_with(
        &self,
        name: &str,
        need: u64,
        why: &str,
        writable: bool,
    ) -> Result<UioMap, UioError> {
        let d = self.require(name)?;
        let m = d
            .maps
            .iter()
            .find(|m| m.index == 0)
            .ok_or_else(|| UioError::NoMap {
                name: name.to_string(),
                found: self.found.clone(),
            })?;
        let usable = m.size.saturating_sub(m.offset);
        if usable < need {
            return Err(UioError::MapTooSmall {
                name: name.to_string(),
                usable,
                need,
                why: why.to_string(),
                found: self.found.clone(),
            });
        }
        let file = self.open_file(d, false)?;
        let page = sys::page_size() as u64;
        let len = m.size.next_multiple_of(page) as usize;
        let mapping =
            Mapping::map(file.as_raw_fd(), len, 0, writable).map_err(|source| UioError::Map {
                path: self.path(d),
                name: name.to_string(),
                len,
                source,
            })?;
        Ok(UioMap {
            name: name.to_string(),
            mapping,
            offset: m.offset as usize,
            len: usable as usize,
        })
    }
}

impl UioDevices {
    /// Finds, checks and maps every device the driver needs. The queue capacities are
    /// `config`'s; a queue map too small for its configured capacity is an error naming both
    /// sizes (a larger one is fine: regions are page-rounded).
    pub fn open(
        sysfs_root: &Path,
        dev_root: &Path,
        config: &DriverConfig,
    ) -> Result<Self, UioError> {
        let devices = scan(sysfs_root)?;
        let f = Finder {
            devices: &devices,
            found: listing(&devices),
            dev_root,
        };
        let (rx_capacity, tx_capacity) = (config.rx_capacity, config.tx_capacity);
        let rx_q = queue_bytes(rx_capacity.entries()) as u64;
        let tx_q = queue_bytes(tx_capacity.entries()) as u64;
        let why = |c: Capacity| {
            format!(
                "a queue of capacity {} as configured by {}",
                c.get(),
                config.origin
            )
        };
        let (rx_why, tx_why) = (why(rx_capacity), why(tx_capacity));
        let buf = NET_BUFFER_SIZE as u64;

        let mut tx_data = Vec::new();
        while f.find(&names::tx_data(tx_data.len()))?.is_some() {
            if tx_data.len() == names::MAX_TX_REGIONS {
                return Err(UioError::TooManyTxRegions {
                    count: tx_data.len() + 1,
                });
            }
            tx_data.push(f.map_read_only(
                &names::tx_data(tx_data.len()),
                buf,
                "one 2048-byte buffer",
            )?);
        }
        if tx_data.is_empty() {
            f.require(&names::tx_data(0))?;
        }
        if let Some(stray) = devices.iter().find(|d| {
            d.name
                .strip_prefix(names::TX_DATA_PREFIX)
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= tx_data.len())
        }) {
            return Err(UioError::TxDataGap {
                name: stray.name.clone(),
                count: tx_data.len(),
                found: f.found.clone(),
            });
        }

        let memory = UioMemory {
            rx_free: f.map(names::RX_FREE, rx_q, &rx_why)?,
            rx_active: f.map(names::RX_ACTIVE, rx_q, &rx_why)?,
            rx_data: f.map(names::RX_DATA, buf, "one 2048-byte buffer")?,
            tx_free: f.map(names::TX_FREE, tx_q, &tx_why)?,
            tx_active: f.map(names::TX_ACTIVE, tx_q, &tx_why)?,
            tx_data,
            rx_capacity,
            tx_capacity,
        };
        let platform = UioPlatform {
            rx_fault: f.map(names::RX_FAULT, 4, "a 32-bit doorbell")?,
            tx_fault: f.map(names::TX_FAULT, 4, "a 32-bit doorbell")?,
            rx_irq: f.open_file(f.require(names::RX_IRQ)?, true)?,
            tx_irq: f.open_file(f.require(names::TX_IRQ)?, true)?,
            rings: 0,
        };
        let stats = match f.find(names::STATS)? {
            Some(_) => Some(f.map(names::STATS, STATS_PAGE, "one page of counters")?),
            None => None,
        };
        Ok(UioDevices {
            memory,
            platform,
            stats,
            listing: f.found,
        })
    }
}

impl UioPlatform {
    fn ring(&mut self, which: bool) -> io::Result<()> {
        self.rings = self.rings.wrapping_add(1);
        let m = if which {
            &self.rx_fault
        } else {
            &self.tx_fault
        };
        if m.mapping.store_u32(m.offset, self.rings) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("doorbell `{}` is not 4-byte aligned", m.name),
            ))
        }
    }

    /// Enables both IRQs (uio_pdrv_genirq starts them enabled, but a previous driver instance
    /// may have left one masked).
    pub fn enable_irqs(&mut self) -> io::Result<()> {
        self.rx_irq.write_all(&1u32.to_ne_bytes())?;
        self.tx_irq.write_all(&1u32.to_ne_bytes())
    }
}

/// Reads the event count until none is left, then re-enables the IRQ.
fn drain_and_rearm(irq: &mut File, name: &str) -> io::Result<()> {
    let mut count = [0u8; 4];
    loop {
        match irq.read(&mut count) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("UIO device `{name}` was closed"),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    irq.write_all(&1u32.to_ne_bytes())
}

impl Platform for UioPlatform {
    fn doorbell_rx(&mut self) -> io::Result<()> {
        self.ring(true)
    }

    fn doorbell_tx(&mut self) -> io::Result<()> {
        self.ring(false)
    }

    fn wait(&mut self, nic: &[NicPoll], timeout: Option<Duration>) -> io::Result<Events> {
        poll_with(
            [
                (&mut self.rx_irq, names::RX_IRQ),
                (&mut self.tx_irq, names::TX_IRQ),
            ],
            nic,
            timeout,
            drain_and_rearm,
        )
    }
}

/// Polls two notification files and the NIC; drains the notifications that fired with `drain`.
/// Shared by the UIO and eventfd platforms.
pub(crate) fn poll_with(
    notes: [(&mut File, &str); 2],
    nic: &[NicPoll],
    timeout: Option<Duration>,
    drain: fn(&mut File, &str) -> io::Result<()>,
) -> io::Result<Events> {
    let mut fds: Vec<libc::pollfd> = notes
        .iter()
        .map(|(f, _)| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    fds.extend(nic.iter().map(NicPoll::pollfd));
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    let mut ev = Events::default();
    if sys::poll(&mut fds, ms)?.is_none() {
        ev.interrupted = true;
        return Ok(ev);
    }
    let [(rx, rx_name), (tx, tx_name)] = notes;
    if fds[0].revents != 0 {
        drain(rx, rx_name)?;
        ev.rx_notified = true;
    }
    if fds[1].revents != 0 {
        drain(tx, tx_name)?;
        ev.tx_notified = true;
    }
    for p in &fds[2..] {
        ev.nic_readable |= p.revents & (libc::POLLIN | libc::POLLERR) != 0;
        ev.nic_writable |= p.revents & libc::POLLOUT != 0;
    }
    Ok(ev)
}
