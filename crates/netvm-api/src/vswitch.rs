//! Local delivery between the clients of one system (netvm's answer to sDDF 0.7's `vswitch`):
//! the `.netvm_vswitch` sections of virt_tx and of each copier.
//!
//! A frame client A transmits to client B's MAC (or broadcast, or multicast when the
//! virtualisers deliver it) is handed by virt_tx to B's copier instead of (or, for broadcast, as
//! well as) the driver. Each copier gets one more sDDF queue pair from virt_tx, its "local"
//! queues (`active`: virt_tx → copier, `free`: back), a channel to virt_tx, and a read-only map
//! of every other client's TX data region. A local descriptor is `{offset, len, oid}` with `oid`
//! the **driver-side region index** of the source buffer (client-major over virt_tx's config;
//! with one TX region per client, as netvm's systems have, the source client's index). The
//! copier copies into a free buffer of its client (or drops the frame when there is none) and
//! returns the descriptor unchanged on the local free queue; virt_tx gives A its buffer back
//! once the driver (if it got the frame) and every local destination are done with it.
//!
//! The section holds up to [`MAX_PORTS`] ports; netvm's virt_tx serves ports of its first 16
//! clients (its holder masks are 16 bits) and refuses a section with more.
//!
//! Both sections are all zero when never patched (sdfgen's systems, sDDF's own, or an older
//! `system.xml` without local queues): local delivery is then off, and everything behaves as
//! before. sDDF's config structs are untouched, so a C sDDF copier or client that knows nothing
//! of this still works (its client simply gets no local frames: virt_tx sends them to the driver).
//!
//! virt_tx's section ([`VirtTxLocalConfig`], 3088 bytes):
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..8 | `magic` | [`MAGIC`]; all zero: local delivery off |
//! | 8 | `num_clients` | entries in `ports`, equal to the clients of `.net_virt_tx_config` |
//! | 16.. | `ports[i]` | client `i`: its copier's local queues as virt_tx maps them, virt_tx's channel to that copier, the client's MAC, and whether it has a port at all |
//!
//! A copier's section ([`CopyLocalConfig`], 1080 bytes):
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..8 | `magic` | [`MAGIC`]; all zero: no local queues |
//! | 8..48 | `conn` | its local queues as the copier maps them, the copier's channel to virt_tx |
//! | 48 | `num_sources` | entries in `sources` |
//! | 56.. | `sources[oid]` | the copier's read-only map of TX data region `oid` (vaddr 0: not mapped, e.g. its own client's) |
use sddf::config::{ConnectionResource, MacAddr, RegionResource};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ELF section of both configs.
pub const SECTION: &str = ".netvm_vswitch";
/// Magic of both configs.
pub const MAGIC: [u8; 8] = *b"netvmvs1";
/// Most clients (sDDF's `MAX_CLIENTS`); also the most TX regions a copier reads.
pub const MAX_PORTS: usize = sddf::config::MAX_CLIENTS;
/// Name of the local queue region `end` (`free` or `active`) between virt_tx and `copier`, for
/// the net device `dev` (`generic` for a driver VM): `{dev}/net/vswitch/{copier}/{end}`. Not
/// under `{dev}/net/queue/`, so the region-name role inference of sdfgen systems never sees it.
pub fn queue_region<'a>(
    dev: &'a str,
    copier: &'a str,
    end: &'a str,
) -> impl core::fmt::Display + 'a {
    LocalQueueName { dev, copier, end }
}

struct LocalQueueName<'a> {
    dev: &'a str,
    copier: &'a str,
    end: &'a str,
}

impl core::fmt::Display for LocalQueueName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/net/vswitch/{}/{}", self.dev, self.copier, self.end)
    }
}

/// One client's local port, as virt_tx sees it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct LocalPort {
    /// The copier's local queues (virt_tx's maps) and virt_tx's channel id to the copier.
    pub conn: ConnectionResource,
    /// The client's MAC: unicast frames to it are delivered locally.
    pub mac: MacAddr,
    /// 1 if the client has a port (a copier with local queues), 0 if not.
    pub enabled: u8,
    _pad: u8,
}

impl LocalPort {
    /// A port for a client with MAC `mac` whose copier virt_tx reaches through `conn`.
    pub fn new(conn: ConnectionResource, mac: MacAddr) -> Self {
        LocalPort {
            conn,
            mac,
            enabled: 1,
            _pad: 0,
        }
    }
}

/// virt_tx's `.netvm_vswitch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VirtTxLocalConfig {
    /// [`MAGIC`], or zero: local delivery off.
    pub magic: [u8; 8],
    /// Entries of `ports` in use.
    pub num_clients: u8,
    _pad: [u8; 7],
    /// Per client, in virt_tx's client order.
    pub ports: [LocalPort; MAX_PORTS],
}

const _: () = assert!(core::mem::size_of::<VirtTxLocalConfig>() == 3088);

/// A copier's `.netvm_vswitch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct CopyLocalConfig {
    /// [`MAGIC`], or zero: no local queues.
    pub magic: [u8; 8],
    /// The local queues (the copier's maps) and the copier's channel id to virt_tx.
    pub conn: ConnectionResource,
    /// Entries of `sources` in use.
    pub num_sources: u8,
    _pad: [u8; 7],
    /// The copier's read-only maps of the TX data regions, by driver-side region index.
    pub sources: [RegionResource; MAX_PORTS],
}

const _: () = assert!(core::mem::size_of::<CopyLocalConfig>() == 1080);

/// What is wrong with a `.netvm_vswitch` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalConfigError {
    /// The section has the wrong size.
    Size(usize),
    /// Neither all zero nor starting with [`MAGIC`].
    Magic([u8; 8]),
    /// A count above [`MAX_PORTS`].
    Count(u8),
}

impl core::fmt::Display for LocalConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LocalConfigError::Size(n) => write!(f, "netvm_vswitch: {n} bytes, wrong size"),
            LocalConfigError::Magic(m) => {
                write!(
                    f,
                    "netvm_vswitch: magic {m:02x?} is neither zero nor \"netvmvs1\""
                )
            }
            LocalConfigError::Count(n) => {
                write!(f, "netvm_vswitch: {n} entries, at most {MAX_PORTS}")
            }
        }
    }
}

fn check(magic: &[u8; 8], bytes: &[u8], count: u8) -> Result<bool, LocalConfigError> {
    if bytes.iter().all(|&b| b == 0) {
        return Ok(false);
    }
    if *magic != MAGIC {
        return Err(LocalConfigError::Magic(*magic));
    }
    if usize::from(count) > MAX_PORTS {
        return Err(LocalConfigError::Count(count));
    }
    Ok(true)
}

impl VirtTxLocalConfig {
    /// A config with `ports` (at most [`MAX_PORTS`]; more are left out).
    pub fn new(ports: &[LocalPort]) -> Self {
        let mut c = VirtTxLocalConfig {
            magic: MAGIC,
            num_clients: ports.len().min(MAX_PORTS) as u8,
            _pad: [0; 7],
            ports: [LocalPort::default(); MAX_PORTS],
        };
        for (to, from) in c.ports.iter_mut().zip(ports) {
            *to = *from;
        }
        c
    }

    /// Parses a section (a copy, so any alignment does): `None` when it is all zero (local delivery off).
    pub fn parse(bytes: &[u8]) -> Result<Option<VirtTxLocalConfig>, LocalConfigError> {
        let c = VirtTxLocalConfig::read_from_bytes(bytes)
            .map_err(|_| LocalConfigError::Size(bytes.len()))?;
        Ok(check(&c.magic, bytes, c.num_clients)?.then_some(c))
    }

    /// The ports in use.
    pub fn ports(&self) -> &[LocalPort] {
        &self.ports[..usize::from(self.num_clients).min(MAX_PORTS)]
    }
}

impl CopyLocalConfig {
    /// A config for local queues `conn` and source regions `sources` (by region index; at most
    /// [`MAX_PORTS`]).
    pub fn new(conn: ConnectionResource, sources: &[RegionResource]) -> Self {
        let mut c = CopyLocalConfig {
            magic: MAGIC,
            conn,
            num_sources: sources.len().min(MAX_PORTS) as u8,
            _pad: [0; 7],
            sources: [RegionResource::default(); MAX_PORTS],
        };
        for (to, from) in c.sources.iter_mut().zip(sources) {
            *to = *from;
        }
        c
    }

    /// Parses a section (a copy, so any alignment does): `None` when it is all zero (no local queues).
    pub fn parse(bytes: &[u8]) -> Result<Option<CopyLocalConfig>, LocalConfigError> {
        let c = CopyLocalConfig::read_from_bytes(bytes)
            .map_err(|_| LocalConfigError::Size(bytes.len()))?;
        Ok(check(&c.magic, bytes, c.num_sources)?.then_some(c))
    }

    /// The source regions in use.
    pub fn sources(&self) -> &[RegionResource] {
        &self.sources[..usize::from(self.num_sources).min(MAX_PORTS)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn region(vaddr: u64) -> RegionResource {
        RegionResource {
            vaddr,
            size: 0x1000,
        }
    }

    #[test]
    fn zero_sections_mean_off() {
        assert_eq!(VirtTxLocalConfig::parse(&[0; 3088]), Ok(None));
        assert_eq!(CopyLocalConfig::parse(&[0; 1080]), Ok(None));
    }

    #[test]
    fn sections_round_trip() {
        let conn = ConnectionResource::new(region(0x1000), region(0x2000), 512, 3);
        let tx = VirtTxLocalConfig::new(&[LocalPort::new(conn, [2, 0, 0, 0, 0, 1])]);
        let parsed = VirtTxLocalConfig::parse(tx.as_bytes()).unwrap().unwrap();
        assert_eq!(parsed.ports().len(), 1);
        assert_eq!(parsed.ports()[0].enabled, 1);
        assert_eq!(parsed.ports()[0].conn.id, 3);
        let copy = CopyLocalConfig::new(conn, &[region(0), region(0x5000)]);
        let parsed = CopyLocalConfig::parse(copy.as_bytes()).unwrap().unwrap();
        assert_eq!(parsed.sources()[1].vaddr, 0x5000);
    }

    #[test]
    fn garbage_is_refused() {
        let conn = ConnectionResource::default();
        let mut copy = CopyLocalConfig::new(conn, &[]);
        copy.magic[0] = b'x';
        assert!(matches!(
            CopyLocalConfig::parse(copy.as_bytes()),
            Err(LocalConfigError::Magic(_))
        ));
        let mut tx = VirtTxLocalConfig::new(&[]);
        tx.num_clients = 65;
        assert_eq!(
            VirtTxLocalConfig::parse(tx.as_bytes()),
            Err(LocalConfigError::Count(65))
        );
        assert_eq!(
            VirtTxLocalConfig::parse(&[0; 12]),
            Err(LocalConfigError::Size(12))
        );
        assert_eq!(
            queue_region("generic", "client0_net_copier", "free").to_string(),
            "generic/net/vswitch/client0_net_copier/free"
        );
    }
}
