//! The six shared regions a client uses, and how they are found from its config.

use sddf::config::{NetClientConfig, RegionResource};
use sddf::shm::Region;

use crate::Error;

/// One of a client's shared regions (for messages and for the mapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionName {
    /// RX free queue (client → copier).
    RxFree,
    /// RX active queue (copier → client).
    RxActive,
    /// RX data (the copier writes frames here).
    RxData,
    /// TX free queue (virt_tx → client).
    TxFree,
    /// TX active queue (client → virt_tx).
    TxActive,
    /// TX data (the client writes frames here; virt_tx reads them).
    TxData,
}

impl RegionName {
    /// The name as in the config (`rx_free`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            RegionName::RxFree => "rx_free",
            RegionName::RxActive => "rx_active",
            RegionName::RxData => "rx_data",
            RegionName::TxFree => "tx_free",
            RegionName::TxActive => "tx_active",
            RegionName::TxData => "tx_data",
        }
    }

    /// The region's entry in a client config.
    fn resource(self, cfg: &NetClientConfig) -> RegionResource {
        match self {
            RegionName::RxFree => cfg.rx.free_queue,
            RegionName::RxActive => cfg.rx.active_queue,
            RegionName::RxData => cfg.rx_data,
            RegionName::TxFree => cfg.tx.free_queue,
            RegionName::TxActive => cfg.tx.active_queue,
            RegionName::TxData => cfg.tx_data,
        }
    }
}

/// Views of a client's six shared regions.
#[derive(Debug, Clone, Copy)]
pub struct Regions<'a> {
    /// RX free queue.
    pub rx_free: Region<'a>,
    /// RX active queue.
    pub rx_active: Region<'a>,
    /// RX data region.
    pub rx_data: Region<'a>,
    /// TX free queue.
    pub tx_free: Region<'a>,
    /// TX active queue.
    pub tx_active: Region<'a>,
    /// TX data region.
    pub tx_data: Region<'a>,
}

impl<'a> Regions<'a> {
    /// Builds the regions from the config's `(vaddr, size)` pairs with `map`, which returns the
    /// region mapped at `vaddr` (tests: an `OwnedRegion` registered under that vaddr), or `None`.
    /// A vaddr of 0 means "absent" and is refused without asking `map`.
    pub fn from_config(
        cfg: &NetClientConfig,
        mut map: impl FnMut(RegionName, u64, u64) -> Option<Region<'a>>,
    ) -> Result<Self, Error> {
        let mut get = |name: RegionName| {
            let r = name.resource(cfg);
            let unmapped = Error::Unmapped {
                region: name,
                vaddr: r.vaddr,
            };
            if r.vaddr == 0 {
                return Err(unmapped);
            }
            let region = map(name, r.vaddr, r.size).ok_or(unmapped)?;
            // The mapper may hand out more than the config names, never less.
            let size = usize::try_from(r.size).unwrap_or(usize::MAX);
            if region.len() < size {
                return Err(Error::RegionTooSmall {
                    region: name,
                    size: region.len(),
                    needed: size,
                });
            }
            Ok(region)
        };
        Ok(Regions {
            rx_free: get(RegionName::RxFree)?,
            rx_active: get(RegionName::RxActive)?,
            rx_data: get(RegionName::RxData)?,
            tx_free: get(RegionName::TxFree)?,
            tx_active: get(RegionName::TxActive)?,
            tx_data: get(RegionName::TxData)?,
        })
    }
}

/// The one place this crate turns addresses into memory.
#[allow(unsafe_code)]
mod mapped {
    use core::ptr::NonNull;

    use sddf::config::NetClientConfig;
    use sddf::shm::Region;

    use super::Regions;
    use crate::Error;

    impl Regions<'static> {
        /// The regions at the vaddrs the config gives, as a Microkit PD (seL4 or host mode, where every
        /// region is mapped at its SDF vaddr) sees them.
        ///
        /// # Safety
        ///
        /// Each of the six regions must be mapped readable and writable at its configured vaddr, with
        /// its configured size, for the rest of the program, and nothing in this process may hold Rust
        /// references to plain data in them. (The system description guarantees the first; the second
        /// holds if the regions are only ever accessed through these views.)
        pub unsafe fn at_config_vaddrs(cfg: &NetClientConfig) -> Result<Regions<'static>, Error> {
            Regions::from_config(cfg, |_, vaddr, size| {
                // SAFETY: forwarded to the caller: the region is mapped at `vaddr` for `size` bytes,
                // rw, forever, and only accessed through Region views.
                unsafe { region_at(vaddr, size) }
            })
        }
    }

    /// # Safety
    ///
    /// See [`super::Regions::at_config_vaddrs`].
    unsafe fn region_at(vaddr: u64, size: u64) -> Option<Region<'static>> {
        let base = NonNull::new(usize::try_from(vaddr).ok()? as *mut u8)?;
        let len = usize::try_from(size).ok()?;
        // SAFETY: the caller guarantees `vaddr..vaddr+size` is mapped rw for 'static and only
        // accessed through Region views, which is `Region::new`'s contract.
        Some(unsafe { Region::new(base, len) })
    }
}
