//! sDDF 0.7 configuration blobs, as sdfgen (>= 0.31; sDDF 0.7 pins 0.35) serialises them into the
//! `.net_*_config` and `.device_resources` ELF sections.
//!
//! Every struct here has the exact C layout (LP64, little-endian), asserted at compile time, and is
//! read in place with zerocopy. [`parse`] checks what the C components only `assert`: the length,
//! the magic, and that every count fits its array and every queue capacity is a power of two.
//! sdfgen <= 0.30 wrote a different layout under the same magic; the exact-size check rejects it.
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Most clients (and MAC addresses, regions, ...) any net config array holds.
pub const MAX_CLIENTS: usize = 64;
/// Magic of every net config: `sDDF` then class 5.
pub const NET_MAGIC: [u8; 5] = *b"sDDF\x05";
/// Magic of `device_resources`: `sDDF` then class 1.
pub const DEVICE_MAGIC: [u8; 5] = *b"sDDF\x01";

/// `region_resource_t`: a region as mapped in this PD.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct RegionResource {
    /// Virtual address in this PD (0 when absent).
    pub vaddr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// `device_region_resource_t`: a region plus the address devices see it at.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct DeviceRegionResource {
    /// The mapping in this PD.
    pub region: RegionResource,
    /// IO (DMA / physical) address of its first byte.
    pub io_addr: u64,
}

/// `net_connection_resource_t`: one free/active queue pair and the channel to its peer.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ConnectionResource {
    /// The free queue.
    pub free_queue: RegionResource,
    /// The active queue.
    pub active_queue: RegionResource,
    /// Capacity of both queues (a power of two).
    pub num_buffers: u16,
    /// Microkit channel id of the peer.
    pub id: u8,
    _pad: [u8; 5],
}

impl ConnectionResource {
    /// A connection (used by tests and generators).
    pub fn new(free: RegionResource, active: RegionResource, num_buffers: u16, id: u8) -> Self {
        ConnectionResource {
            free_queue: free,
            active_queue: active,
            num_buffers,
            id,
            _pad: [0; 5],
        }
    }

    /// Finds both queues in `mem`, each `num_buffers` entries.
    ///
    /// This is the one place a component turns a connection into queues, so every component
    /// reports a bad connection the same way; it adds only which connection it was (driver,
    /// client `i`, ...). Errors: `num_buffers` is not a queue capacity, a queue's region is not
    /// mapped here, or a queue's region is too small (or misaligned) for `num_buffers` entries.
    #[cfg(not(loom))]
    pub fn queues<'a>(
        &self,
        mem: &impl crate::shm::AddressSpace<'a>,
    ) -> Result<QueuePair<'a>, QueuePairError> {
        use crate::queue::{Capacity, Queue};
        let capacity =
            Capacity::new(u32::from(self.num_buffers)).map_err(QueuePairError::Capacity)?;
        let queue = |queue: QueueKind, r: &RegionResource| {
            let region = mem
                .region(r.vaddr, r.size)
                .ok_or(QueuePairError::Unmapped {
                    queue,
                    vaddr: r.vaddr,
                })?;
            let q = Queue::new(region, capacity).map_err(|_| QueuePairError::TooSmall {
                queue,
                vaddr: r.vaddr,
                size: r.size,
                capacity: capacity.get(),
            })?;
            Ok((q, region))
        };
        let (free, free_region) = queue(QueueKind::Free, &self.free_queue)?;
        let (active, _) = queue(QueueKind::Active, &self.active_queue)?;
        Ok(QueuePair {
            free,
            active,
            free_region,
            capacity,
        })
    }
}

/// A connection's two queues, not yet given a role, as [`ConnectionResource::queues`] found
/// them.
#[cfg(not(loom))]
pub struct QueuePair<'a> {
    /// The free queue.
    pub free: crate::queue::Queue<'a>,
    /// The active queue.
    pub active: crate::queue::Queue<'a>,
    /// The whole free queue region, spare bytes after the descriptor array included (where
    /// netvm keeps its reconnect words, `netvm_api::reconnect`).
    pub free_region: crate::shm::Region<'a>,
    /// The capacity of both queues.
    pub capacity: crate::queue::Capacity,
}

/// One queue of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// The free queue.
    Free,
    /// The active queue.
    Active,
}

impl core::fmt::Display for QueueKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            QueueKind::Free => "free queue",
            QueueKind::Active => "active queue",
        })
    }
}

/// Why [`ConnectionResource::queues`] cannot find a connection's queues. The messages do not
/// name the connection: the caller knows which one it was and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePairError {
    /// `num_buffers` is not a power of two in 1..=32768.
    Capacity(crate::queue::BadCapacity),
    /// A queue's region is not mapped here.
    Unmapped {
        /// Which queue.
        queue: QueueKind,
        /// The region's vaddr.
        vaddr: u64,
    },
    /// A queue's region cannot hold `capacity` entries, or is not 8-aligned.
    TooSmall {
        /// Which queue.
        queue: QueueKind,
        /// The region's vaddr.
        vaddr: u64,
        /// The region's size in bytes.
        size: u64,
        /// The connection's capacity.
        capacity: u16,
    },
}

impl core::fmt::Display for QueuePairError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            QueuePairError::Capacity(e) => write!(f, "{e}"),
            QueuePairError::Unmapped { queue, vaddr } => {
                write!(f, "{queue} at {vaddr:#x} is not mapped")
            }
            QueuePairError::TooSmall {
                queue,
                vaddr,
                size,
                capacity,
            } => write!(
                f,
                "{queue} at {vaddr:#x} ({size:#x} bytes) cannot hold {capacity} entries ({:#x} \
                 bytes, 8-aligned)",
                crate::queue::queue_bytes(usize::from(capacity))
            ),
        }
    }
}

/// `mac_addr_t`.
pub type MacAddr = [u8; 6];

/// `net_driver_config_t` (`.net_driver_config`, 88 bytes).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetDriverConfig {
    /// [`NET_MAGIC`].
    pub magic: [u8; 5],
    _pad: [u8; 3],
    /// Queues to virt_rx.
    pub virt_rx: ConnectionResource,
    /// Queues to virt_tx.
    pub virt_tx: ConnectionResource,
}

/// `net_virt_tx_data_region_t`: one client TX data region.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VirtTxDataRegion {
    /// The region as virt_tx maps it, with its IO address.
    pub data: DeviceRegionResource,
    /// Buffers in it.
    pub num_buffers: u32,
    _pad: [u8; 4],
}

/// `net_virt_tx_client_config_t`.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VirtTxClientConfig {
    /// Queues to the client.
    pub conn: ConnectionResource,
    /// Data regions the client may transmit from, indexed by `oid`.
    pub regions: [VirtTxDataRegion; MAX_CLIENTS],
    /// Used entries of `regions`.
    pub num_regions: u8,
    _pad: [u8; 7],
}

/// `net_virt_tx_config_t` (`.net_virt_tx_config`, 134200 bytes).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetVirtTxConfig {
    /// [`NET_MAGIC`].
    pub magic: [u8; 5],
    _pad: [u8; 3],
    /// Queues to the driver.
    pub driver: ConnectionResource,
    /// Clients, in priority order.
    pub clients: [VirtTxClientConfig; MAX_CLIENTS],
    /// Used entries of `clients`.
    pub num_clients: u8,
    _pad2: [u8; 7],
}

/// `net_virt_rx_client_config_t`.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VirtRxClientConfig {
    /// Queues to the client (or its copier).
    pub conn: ConnectionResource,
    /// Unicast MAC addresses delivered to this client.
    pub mac_addrs: [MacAddr; MAX_CLIENTS],
    /// Used entries of `mac_addrs`.
    pub num_macs: u8,
    _pad: [u8; 7],
}

/// `net_virt_rx_config_t` (`.net_virt_rx_config`, 27744 bytes).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetVirtRxConfig {
    /// [`NET_MAGIC`].
    pub magic: [u8; 5],
    _pad: [u8; 3],
    /// Queues to the driver.
    pub driver: ConnectionResource,
    /// The RX DMA region.
    pub data: DeviceRegionResource,
    /// One reference count byte per DMA buffer.
    pub buffer_metadata: RegionResource,
    /// Clients, in MAC-match order.
    pub clients: [VirtRxClientConfig; MAX_CLIENTS],
    /// Used entries of `clients`.
    pub num_clients: u8,
    _pad2: [u8; 7],
}

/// `net_copy_config_t` (`.net_copy_config`, 1128 bytes).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetCopyConfig {
    /// [`NET_MAGIC`].
    pub magic: [u8; 5],
    _pad: [u8; 3],
    /// Queues to virt_rx (or a vswitch).
    pub rx: ConnectionResource,
    /// Source data regions by `oid` (without a vswitch only entry 0, the RX DMA region).
    pub rx_data: [RegionResource; MAX_CLIENTS],
    /// Queues to the client.
    pub client: ConnectionResource,
    /// The client's private RX data region.
    pub client_data: RegionResource,
}

/// `net_client_config_t` (`.net_client_config`, 128 bytes).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NetClientConfig {
    /// [`NET_MAGIC`].
    pub magic: [u8; 5],
    _pad: [u8; 3],
    /// RX queues (from the copier or virt_rx).
    pub rx: ConnectionResource,
    /// RX data region.
    pub rx_data: RegionResource,
    /// TX queues (to virt_tx).
    pub tx: ConnectionResource,
    /// TX data region.
    pub tx_data: RegionResource,
    /// This client's MAC address.
    pub mac_addr: MacAddr,
    _pad2: [u8; 2],
}

/// `device_irq_resource_t`.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DeviceIrqResource {
    /// Microkit channel id of the IRQ.
    pub id: u8,
}

/// `device_resources_t` (`.device_resources`, 1608 bytes).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DeviceResources {
    /// [`DEVICE_MAGIC`].
    pub magic: [u8; 5],
    /// Used entries of `regions`.
    pub num_regions: u8,
    /// Used entries of `irqs`.
    pub num_irqs: u8,
    _pad: u8,
    /// Device register and memory regions.
    pub regions: [DeviceRegionResource; MAX_CLIENTS],
    /// IRQs.
    pub irqs: [DeviceIrqResource; MAX_CLIENTS],
}

macro_rules! layout {
    ($t:ty, $size:expr, $($field:ident @ $off:expr),* $(,)?) => {
        const _: () = {
            assert!(core::mem::size_of::<$t>() == $size);
            $(assert!(core::mem::offset_of!($t, $field) == $off);)*
        };
    };
}
layout!(RegionResource, 16, vaddr @ 0, size @ 8);
layout!(DeviceRegionResource, 24, region @ 0, io_addr @ 16);
layout!(ConnectionResource, 40, free_queue @ 0, active_queue @ 16, num_buffers @ 32, id @ 34);
layout!(NetDriverConfig, 88, magic @ 0, virt_rx @ 8, virt_tx @ 48);
layout!(VirtTxDataRegion, 32, data @ 0, num_buffers @ 24);
layout!(VirtTxClientConfig, 2096, conn @ 0, regions @ 40, num_regions @ 2088);
layout!(NetVirtTxConfig, 134200, magic @ 0, driver @ 8, clients @ 48, num_clients @ 134192);
layout!(VirtRxClientConfig, 432, conn @ 0, mac_addrs @ 40, num_macs @ 424);
layout!(NetVirtRxConfig, 27744, magic @ 0, driver @ 8, data @ 48, buffer_metadata @ 72,
    clients @ 88, num_clients @ 27736);
layout!(NetCopyConfig, 1128, magic @ 0, rx @ 8, rx_data @ 48, client @ 1072, client_data @ 1112);
layout!(NetClientConfig, 128, magic @ 0, rx @ 8, rx_data @ 48, tx @ 64, tx_data @ 104,
    mac_addr @ 120);
layout!(DeviceResources, 1608, magic @ 0, num_regions @ 5, num_irqs @ 6, regions @ 8,
    irqs @ 1544);

/// What is wrong with a config blob. Every message names the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The blob has the wrong size (a different sDDF / sdfgen version writes other layouts).
    Size {
        /// Config name.
        config: &'static str,
        /// Size expected.
        expected: usize,
        /// Size found.
        found: usize,
    },
    /// The blob is not 8-byte aligned in memory.
    Misaligned {
        /// Config name.
        config: &'static str,
    },
    /// The first five bytes are not the expected magic.
    Magic {
        /// Config name.
        config: &'static str,
        /// The magic expected.
        expected: [u8; 5],
        /// The bytes found.
        found: [u8; 5],
    },
    /// A count exceeds its array.
    Count {
        /// Config name.
        config: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The most allowed.
        max: usize,
    },
    /// A queue capacity is not a power of two in 1..=32768.
    Capacity {
        /// Config name.
        config: &'static str,
        /// Which connection.
        connection: &'static str,
        /// The index of the client, if the connection is a client's.
        client: Option<u8>,
        /// The capacity found.
        value: u16,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ConfigError::Size { config, expected, found } => write!(
                f,
                "{config}: blob is {found} bytes, expected {expected} (sDDF 0.7 / sdfgen >= 0.31 layout; \
                 sdfgen <= 0.30 writes an older layout under the same magic)"
            ),
            ConfigError::Misaligned { config } => {
                write!(f, "{config}: blob is not 8-byte aligned in memory")
            }
            ConfigError::Magic { config, expected, found } => write!(
                f,
                "{config}: magic is {found:02x?}, expected {expected:02x?}"
            ),
            ConfigError::Count { config, field, value, max } => {
                write!(f, "{config}: {field} is {value}, at most {max} allowed")
            }
            ConfigError::Capacity { config, connection, client, value } => {
                match client {
                    Some(c) => write!(f, "{config}: client {c} {connection} ")?,
                    None => write!(f, "{config}: {connection} ")?,
                }
                write!(f, "num_buffers {value} is not a power of two in 1..=32768")
            }
        }
    }
}

/// A config type that can be checked after its bytes are accepted.
pub trait Config: FromBytes + IntoBytes + KnownLayout + Immutable + Sized {
    /// The ELF section / sdfgen name, for messages.
    const NAME: &'static str;
    /// The magic it starts with.
    const MAGIC: [u8; 5];
    /// Checks counts and capacities.
    fn validate(&self) -> Result<(), ConfigError>;
    /// The magic bytes as found.
    fn magic(&self) -> [u8; 5];
}

fn count(config: &'static str, field: &'static str, value: u8) -> Result<usize, ConfigError> {
    let value = usize::from(value);
    if value > MAX_CLIENTS {
        return Err(ConfigError::Count {
            config,
            field,
            value,
            max: MAX_CLIENTS,
        });
    }
    Ok(value)
}

fn capacity(
    config: &'static str,
    connection: &'static str,
    client: Option<u8>,
    conn: &ConnectionResource,
) -> Result<(), ConfigError> {
    crate::queue::Capacity::new(u32::from(conn.num_buffers))
        .map(|_| ())
        .map_err(|_| ConfigError::Capacity {
            config,
            connection,
            client,
            value: conn.num_buffers,
        })
}

/// `impl Config` for a config struct with a `magic` field: its name, its magic, and the body of
/// `validate` with `$c` bound to `self`.
macro_rules! config {
    ($ty:ty, $name:literal, $magic:expr, |$c:ident| $validate:expr) => {
        impl Config for $ty {
            const NAME: &'static str = $name;
            const MAGIC: [u8; 5] = $magic;
            fn magic(&self) -> [u8; 5] {
                self.magic
            }
            fn validate(&self) -> Result<(), ConfigError> {
                let $c = self;
                $validate
            }
        }
    };
}

/// Checks the capacity of each `(name, connection)` of a config.
fn connections(
    config: &'static str,
    conns: [(&'static str, &ConnectionResource); 2],
) -> Result<(), ConfigError> {
    conns
        .iter()
        .try_for_each(|(name, conn)| capacity(config, name, None, conn))
}

/// Checks a virtualiser config: the driver connection, the client count, and each client's
/// connection and its one count (`field`, as `each` gives it).
fn virt_clients<C>(
    config: &'static str,
    driver: &ConnectionResource,
    num_clients: u8,
    clients: &[C],
    field: &'static str,
    each: impl Fn(&C) -> (&ConnectionResource, u8),
) -> Result<(), ConfigError> {
    capacity(config, "driver", None, driver)?;
    let n = count(config, "num_clients", num_clients)?;
    for (i, c) in clients[..n].iter().enumerate() {
        let (conn, value) = each(c);
        capacity(config, "conn", Some(i as u8), conn)?;
        count(config, field, value)?;
    }
    Ok(())
}

config!(NetDriverConfig, "net_driver_config", NET_MAGIC, |c| {
    connections(
        Self::NAME,
        [("virt_rx", &c.virt_rx), ("virt_tx", &c.virt_tx)],
    )
});

config!(NetVirtRxConfig, "net_virt_rx_config", NET_MAGIC, |c| {
    virt_clients(
        Self::NAME,
        &c.driver,
        c.num_clients,
        &c.clients,
        "num_macs",
        |c| (&c.conn, c.num_macs),
    )
});

config!(NetVirtTxConfig, "net_virt_tx_config", NET_MAGIC, |c| {
    virt_clients(
        Self::NAME,
        &c.driver,
        c.num_clients,
        &c.clients,
        "num_regions",
        |c| (&c.conn, c.num_regions),
    )
});

config!(NetCopyConfig, "net_copy_config", NET_MAGIC, |c| {
    connections(Self::NAME, [("rx", &c.rx), ("client", &c.client)])
});

config!(NetClientConfig, "net_client_config", NET_MAGIC, |c| {
    connections(Self::NAME, [("rx", &c.rx), ("tx", &c.tx)])
});

config!(DeviceResources, "device_resources", DEVICE_MAGIC, |c| {
    count(Self::NAME, "num_regions", c.num_regions)?;
    count(Self::NAME, "num_irqs", c.num_irqs)?;
    Ok(())
});

/// The first `n` entries of `array`, at most [`MAX_CLIENTS`] (an untrusted count never indexes
/// past the array).
fn in_use<T>(array: &[T], n: u8) -> &[T] {
    &array[..usize::from(n).min(MAX_CLIENTS).min(array.len())]
}

impl NetVirtRxConfig {
    /// The clients in use.
    pub fn clients(&self) -> &[VirtRxClientConfig] {
        in_use(&self.clients, self.num_clients)
    }
}

impl VirtRxClientConfig {
    /// The MAC addresses in use.
    pub fn macs(&self) -> &[MacAddr] {
        in_use(&self.mac_addrs, self.num_macs)
    }
}

impl NetVirtTxConfig {
    /// The clients in use.
    pub fn clients(&self) -> &[VirtTxClientConfig] {
        in_use(&self.clients, self.num_clients)
    }
}

impl VirtTxClientConfig {
    /// The data regions in use.
    pub fn regions(&self) -> &[VirtTxDataRegion] {
        in_use(&self.regions, self.num_regions)
    }
}

/// Checks and borrows a config blob in place (as in a PD's config section).
pub fn parse<C: Config>(bytes: &[u8]) -> Result<&C, ConfigError> {
    let expected = core::mem::size_of::<C>();
    if bytes.len() != expected {
        return Err(ConfigError::Size {
            config: C::NAME,
            expected,
            found: bytes.len(),
        });
    }
    let cfg = C::ref_from_bytes(bytes).map_err(|_| ConfigError::Misaligned { config: C::NAME })?;
    if cfg.magic() != C::MAGIC {
        return Err(ConfigError::Magic {
            config: C::NAME,
            expected: C::MAGIC,
            found: cfg.magic(),
        });
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Checks and copies a config blob from unaligned bytes (a `.data` file read by a host tool).
#[cfg(any(test, feature = "std"))]
pub fn parse_owned<C: Config>(bytes: &[u8]) -> Result<std::boxed::Box<C>, ConfigError> {
    let expected = core::mem::size_of::<C>();
    if bytes.len() != expected {
        return Err(ConfigError::Size {
            config: C::NAME,
            expected,
            found: bytes.len(),
        });
    }
    let mut boxed: std::boxed::Box<C> =
        C::new_box_zeroed().map_err(|_| ConfigError::Misaligned { config: C::NAME })?;
    boxed.as_mut_bytes().copy_from_slice(bytes);
    parse::<C>(boxed.as_bytes())?;
    Ok(boxed)
}
