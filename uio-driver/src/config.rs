//! The driver's configuration: the sDDF `.net_driver_config` blob (`net_driver_config_t`, 88
//! bytes) that `sdf::net::derive` writes for the driver PD.
//!
//! The queue capacities are configuration, never inferred from region sizes: a queue region is
//! page-rounded, so a 64-entry queue sits in a 4 KiB region that would hold 255 entries, and a
//! driver that guessed would index the ring differently from virt_rx / virt_tx. Host mode's
//! stand-in reads the blob from its own `.net_driver_config` section; in a driver VM the guest
//! build puts the same bytes into the device tree as the `/chosen` property
//! [`DT_PROPERTY`], which Linux shows as a file ([`DT_PATHS`]). [`DriverConfig`] reads both.
use std::path::{Path, PathBuf};

use sddf::config::{ConfigError, ConnectionResource, NetDriverConfig, RegionResource, NET_MAGIC};
use sddf::queue::Capacity;
use zerocopy::{FromZeros, IntoBytes};

/// The `/chosen` property holding the blob in a driver VM's device tree (netvm's ABI).
pub use netvm_api::uio::DT_PROPERTY;

/// Where Linux shows [`DT_PROPERTY`], in the order they are tried.
pub const DT_PATHS: [&str; 2] = [
    "/proc/device-tree/chosen/netvm,net-driver-config",
    "/sys/firmware/devicetree/base/chosen/netvm,net-driver-config",
];

/// Reading the driver's configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverConfigError {
    /// no driver configuration: none of {tried} exists
    #[error("no driver configuration (the `{DT_PROPERTY}` device-tree property): none of {tried} exists")]
    Missing {
        /// Every path looked at.
        tried: String,
    },
    /// reading {path}: {source}
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// {origin}: {reason}
    #[error("{origin}: {reason}")]
    Invalid {
        /// Where the blob came from.
        origin: String,
        /// What sddf::config found wrong with it.
        reason: ConfigError,
    },
}

/// A checked `.net_driver_config`: the driver's queue capacities and channels.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    blob: NetDriverConfig,
    /// Capacity of rx_free / rx_active (queues shared with virt_rx).
    pub rx_capacity: Capacity,
    /// Capacity of tx_free / tx_active (queues shared with virt_tx).
    pub tx_capacity: Capacity,
    /// Where it was read from (for messages).
    pub origin: String,
}

impl DriverConfig {
    /// Checks `bytes` with `sddf::config` (size, magic, power-of-two capacities); `origin` names
    /// where they came from in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<DriverConfig, DriverConfigError> {
        let invalid = |reason| DriverConfigError::Invalid {
            origin: origin.to_owned(),
            reason,
        };
        let blob = *sddf::config::parse_owned::<NetDriverConfig>(bytes).map_err(invalid)?;
        // parse_owned checked both capacities; these cannot fail.
        let capacity = |n: u16| Capacity::new(n.into()).ok();
        match (
            capacity(blob.virt_rx.num_buffers),
            capacity(blob.virt_tx.num_buffers),
        ) {
            (Some(rx_capacity), Some(tx_capacity)) => Ok(DriverConfig {
                blob,
                rx_capacity,
                tx_capacity,
                origin: origin.to_owned(),
            }),
            _ => unreachable!("sddf::config::parse checks every queue capacity"),
        }
    }

    /// Reads and checks the first of `paths` that exists (normally [`DT_PATHS`]); an error names
    /// every path tried when none does.
    pub fn read(paths: &[&Path]) -> Result<DriverConfig, DriverConfigError> {
        for path in paths {
            match std::fs::read(path) {
                Ok(bytes) => return DriverConfig::parse(&bytes, &path.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(DriverConfigError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        let tried: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Err(DriverConfigError::Missing {
            tried: tried.join(", "),
        })
    }

    /// A configuration for a driver without virtualisers (a standalone driver VM, a guest booted
    /// in plain QEMU, tests): `rx` / `tx` entries, each queue at `{vaddr, size}` as given (the
    /// guest ignores both), channel ids 0 and 1.
    pub fn standalone(
        rx: Capacity,
        tx: Capacity,
        rx_queues: [RegionResource; 2],
        tx_queues: [RegionResource; 2],
    ) -> DriverConfig {
        let mut blob = NetDriverConfig::new_zeroed();
        blob.magic = NET_MAGIC;
        blob.virt_rx = ConnectionResource::new(rx_queues[0], rx_queues[1], rx.get(), 0);
        blob.virt_tx = ConnectionResource::new(tx_queues[0], tx_queues[1], tx.get(), 1);
        DriverConfig {
            blob,
            rx_capacity: rx,
            tx_capacity: tx,
            origin: "a standalone driver configuration".to_owned(),
        }
    }

    /// The blob itself (the sDDF structure).
    pub fn blob(&self) -> &NetDriverConfig {
        &self.blob
    }

    /// The blob's bytes, as they go into a section or the device tree.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blob.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: u32) -> Capacity {
        Capacity::new(n).unwrap()
    }

    fn region(vaddr: u64) -> RegionResource {
        RegionResource {
            vaddr,
            size: 0x1000,
        }
    }

    fn blob(rx: u32, tx: u32) -> Vec<u8> {
        DriverConfig::standalone(
            cap(rx),
            cap(tx),
            [region(0x1000), region(0x2000)],
            [region(0x3000), region(0x4000)],
        )
        .to_bytes()
    }

    #[test]
    fn a_good_blob_gives_its_capacities() {
        let bytes = blob(64, 128);
        assert_eq!(bytes.len(), 88);
        let c = DriverConfig::parse(&bytes, "test").unwrap();
        assert_eq!((c.rx_capacity.get(), c.tx_capacity.get()), (64, 128));
        assert_eq!(c.blob().virt_tx.free_queue.vaddr, 0x3000);
        assert_eq!(c.to_bytes(), bytes, "round trip");
    }

    #[test]
    fn a_wrong_magic_size_or_capacity_is_refused_naming_the_origin() {
        let mut bytes = blob(64, 64);
        bytes[4] = 1;
        let e = DriverConfig::parse(&bytes, "/proc/x")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/proc/x: "), "{e}");
        assert!(e.contains("magic"), "{e}");
        let e = DriverConfig::parse(&bytes[..80], "dt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("80"), "{e}");
        let mut bytes = blob(64, 64);
        // virt_rx.num_buffers (offset 8 + 32) = 96: no power of two.
        bytes[40..42].copy_from_slice(&96u16.to_le_bytes());
        let e = DriverConfig::parse(&bytes, "dt").unwrap_err().to_string();
        assert!(e.contains("96"), "{e}");
    }

    #[test]
    fn read_takes_the_first_path_that_exists_and_names_all_when_none_does() {
        let dir = std::env::temp_dir().join(format!("uio-driver-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (absent, present) = (dir.join("absent"), dir.join("present"));
        std::fs::write(&present, blob(32, 256)).unwrap();
        let c = DriverConfig::read(&[&absent, &present]).unwrap();
        assert_eq!((c.rx_capacity.get(), c.tx_capacity.get()), (32, 256));
        assert_eq!(c.origin, present.display().to_string());
        let e = DriverConfig::read(&[&absent, &dir.join("also-absent")])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&absent.display().to_string()), "{e}");
        assert!(e.contains("also-absent"), "{e}");
        assert!(e.contains(DT_PROPERTY), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
