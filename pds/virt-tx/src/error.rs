//! Why virt_tx cannot start.

use sddf::config::QueuePairError;

use crate::{MAX_BUFFERS, MAX_REGIONS};

/// Why the virtualiser cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The config section is invalid.
    Config(sddf::config::ConfigError),
    /// A client's TX data region named in the config is not mapped.
    Unmapped {
        /// Client index.
        client: usize,
        /// Its vaddr.
        vaddr: u64,
    },
    /// A connection's queues cannot be found.
    Queues {
        /// Client index, or `None` for the driver's connection.
        client: Option<usize>,
        /// What is wrong with them.
        error: QueuePairError,
    },
    /// Too many regions or buffers, a region smaller than its buffers, or a region whose IO
    /// addresses pass 2^64 (in IO-address mode).
    Regions {
        /// Client index.
        client: usize,
    },
    /// The `.netvm_vswitch` section has another number of ports than there are clients.
    LocalPorts {
        /// Ports in the section.
        ports: usize,
    },
    /// A client with a local port has an index of [`crate::MAX_LOCAL_PORTS`] or more.
    LocalPortLimit {
        /// Client index.
        client: usize,
    },
    /// A client's local queues (to its copier) cannot be found.
    LocalQueues {
        /// Client index.
        client: usize,
        /// What is wrong with them.
        error: QueuePairError,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Config(e) => write!(f, "virt_tx: {e}"),
            Error::Unmapped { client, vaddr } => write!(
                f,
                "virt_tx: client {client} TX data region at {vaddr:#x} is not mapped"
            ),
            Error::Queues {
                client: Some(c),
                error,
            } => write!(f, "virt_tx: client {c} {error}"),
            Error::Queues {
                client: None,
                error,
            } => write!(f, "virt_tx: driver {error}"),
            Error::Regions { client } => write!(
                f,
                "virt_tx: client {client} data regions: more than {MAX_REGIONS} regions or \
                 {MAX_BUFFERS} buffers in all, a region smaller than its buffers, or one whose IO \
                 addresses pass 2^64"
            ),
            Error::LocalPorts { ports } => {
                write!(
                    f,
                    "virt_tx: netvm_vswitch has {ports} ports, not one per client"
                )
            }
            Error::LocalPortLimit { client } => write!(
                f,
                "virt_tx: client {client} has a local port; at most {} clients may",
                crate::MAX_LOCAL_PORTS
            ),
            Error::LocalQueues { client, error } => {
                write!(
                    f,
                    "virt_tx: client {client} local queues (netvm_vswitch): {error}"
                )
            }
        }
    }
}
