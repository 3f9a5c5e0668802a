//! The blobs sdfgen wrote, by PD and section: what `netvm --sdfgen-dir` loads and what the
//! derivation is tested against.
//!
//! sdfgen's `Net.serialise_config(dir)` names its files by role, not always by PD:
//!
//! | file | PD | section |
//! |---|---|---|
//! | `net_driver.data` | the driver | `.net_driver_config` |
//! | `<driver>_device_resources.data` | the driver | `.device_resources` |
//! | `net_virt_rx.data` | virt_rx | `.net_virt_rx_config` |
//! | `net_virt_tx.data` | virt_tx | `.net_virt_tx_config` |
//! | `net_copy_<copier>.data` | each copier | `.net_copy_config` |
//! | `net_client_<client>.data` | each client | `.net_client_config` |
//!
//! so the roles are read off the system description sdfgen wrote alongside (see the `infer`
//! module docs). Every blob is checked for size and magic — a blob from sdfgen <= 0.30 has the
//! same magic and another size — and any other `.data` file in the directory is an error rather
//! than silently left out of the system.

use std::path::Path;

use sddf::config::{
    parse_owned, Config, ConfigError, DeviceResources, NetClientConfig, NetCopyConfig,
    NetDriverConfig, NetVirtRxConfig, NetVirtTxConfig,
};

use super::{
    infer, NetError, CLIENT_SECTION, COPY_SECTION, DEVICE_RESOURCES_SECTION, DRIVER_SECTION,
    VIRT_RX_SECTION, VIRT_TX_SECTION,
};
use crate::model::SystemDescription;
use crate::Section;

/// Checks a blob's size, magic and counts as config `C`.
type Check = fn(&[u8]) -> Result<(), ConfigError>;

fn check<C: Config>(bytes: &[u8]) -> Result<(), ConfigError> {
    parse_owned::<C>(bytes).map(|_| ())
}

/// The net config blobs sdfgen wrote into `dir` for the network system `sys` (the `.system` file
/// sdfgen wrote with them), as (PD, section, bytes) in [`derive`](super::derive)'s order.
pub fn sdfgen_blob_sections(dir: &Path, sys: &SystemDescription) -> Result<Vec<Section>, NetError> {
    let roles = infer::roles(sys)?;
    let mut expected: Vec<(String, &String, &'static str, Check)> = vec![
        (
            "net_driver.data".to_owned(),
            &roles.driver,
            DRIVER_SECTION,
            check::<NetDriverConfig>,
        ),
        (
            format!("{}_device_resources.data", roles.driver),
            &roles.driver,
            DEVICE_RESOURCES_SECTION,
            check::<DeviceResources>,
        ),
        (
            "net_virt_rx.data".to_owned(),
            &roles.virt_rx,
            VIRT_RX_SECTION,
            check::<NetVirtRxConfig>,
        ),
        (
            "net_virt_tx.data".to_owned(),
            &roles.virt_tx,
            VIRT_TX_SECTION,
            check::<NetVirtTxConfig>,
        ),
    ];
    for copier in roles
        .clients
        .iter()
        .filter_map(|(_, copier)| copier.as_ref())
    {
        expected.push((
            format!("net_copy_{copier}.data"),
            copier,
            COPY_SECTION,
            check::<NetCopyConfig>,
        ));
    }
    for (client, _) in &roles.clients {
        expected.push((
            format!("net_client_{client}.data"),
            client,
            CLIENT_SECTION,
            check::<NetClientConfig>,
        ));
    }

    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| NetError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".data") && !expected.iter().any(|(file, ..)| file == name) {
            return Err(NetError::UnknownBlob { path });
        }
    }
    expected
        .into_iter()
        .map(|(file, pd, section, check)| {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    NetError::MissingBlob {
                        path: path.clone(),
                        pd: pd.clone(),
                    }
                } else {
                    NetError::Io {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
            check(&bytes).map_err(|error| NetError::BadBlob { path, error })?;
            Ok(Section::new(pd.clone(), section, bytes))
        })
        .collect()
}
