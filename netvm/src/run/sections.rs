//! Config sections: bytes a runner copies into a named ELF section of a PD before `init`, as the
//! seL4 build does with `objcopy --update-section` (sDDF configs, device resources...).
//!
//! Where the bytes come from is pluggable ([`SectionProvider`]): files in a directory
//! ([`SectionDir`]), sdfgen's output directory ([`SdfgenDir`]), or a caller's own code
//! ([`StaticSections`], or any type implementing the trait — e.g. a derivation of sDDF configs
//! from the system description).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sdf::SystemDescription;

/// Bytes for one ELF section of one PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The PD's SDF name.
    pub pd: String,
    /// The ELF section's name, with its leading dot (e.g. `.net_client_config`).
    pub name: String,
    /// The bytes copied to the start of the section.
    pub bytes: Vec<u8>,
}

/// Errors of a section provider.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    /// A file or directory cannot be read.
    #[error("config sections: cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file's name does not say which PD and section it is for.
    #[error("config sections: {path}: {reason}")]
    Unrecognised {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A provider written by a caller failed.
    #[error("config sections from {origin}: {message}")]
    Provider {
        /// The provider ([`SectionProvider::origin`]).
        origin: String,
        /// What went wrong.
        message: String,
    },
}

/// A source of config sections for a system.
pub trait SectionProvider: Send {
    /// Where the sections come from, for messages (e.g. a directory).
    fn origin(&self) -> String;

    /// The sections for `system`. PD names must exist in `system`; the runner checks that, and
    /// that no two providers fill the same section of the same PD.
    fn sections(&self, system: &SystemDescription) -> Result<Vec<Section>, SectionError>;
}

/// Sections given directly by the caller (e.g. derived from the system description in code).
#[derive(Clone, Debug, Default)]
pub struct StaticSections {
    /// Name used in messages.
    pub origin: String,
    /// The sections.
    pub sections: Vec<Section>,
}

impl SectionProvider for StaticSections {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn sections(&self, _system: &SystemDescription) -> Result<Vec<Section>, SectionError> {
        Ok(self.sections.clone())
    }
}

/// `DIR/<pd>/<section>.bin`: one sub-directory per PD, one file per section. The section name
/// is the file name without `.bin`, with a leading dot added if it has none (so both
/// `net_client_config.bin` and `.net_client_config.bin` fill `.net_client_config`).
#[derive(Clone, Debug)]
pub struct SectionDir(pub PathBuf);

impl SectionProvider for SectionDir {
    fn origin(&self) -> String {
        self.0.display().to_string()
    }

    fn sections(&self, _system: &SystemDescription) -> Result<Vec<Section>, SectionError> {
        let mut out = Vec::new();
        for pd_dir in sorted_entries(&self.0)? {
            if !pd_dir.is_dir() {
                return Err(SectionError::Unrecognised {
                    path: pd_dir,
                    reason: "expected a directory named after a PD".into(),
                });
            }
            let pd = file_name(&pd_dir)?;
            for file in sorted_entries(&pd_dir)? {
                let name = file_name(&file)?;
                let Some(stem) = name.strip_suffix(".bin").filter(|s| !s.is_empty()) else {
                    return Err(SectionError::Unrecognised {
                        path: file,
                        reason: "expected <section>.bin".into(),
                    });
                };
                let name = if stem.starts_with('.') {
                    stem.to_string()
                } else {
                    format!(".{stem}")
                };
                out.push(Section {
                    pd: pd.clone(),
                    name,
                    bytes: read(&file)?,
                });
            }
        }
        Ok(out)
    }
}

/// The `.data` files sdfgen's `serialise_config` writes, named by component rather than by PD:
///
/// | file | PD | section |
/// |---|---|---|
/// | `net_virt_rx.data` | the virt_rx PD (`net_virt_rx`) | `.net_virt_rx_config` |
/// | `net_virt_tx.data` | the virt_tx PD (`net_virt_tx`) | `.net_virt_tx_config` |
/// | `net_vswitch.data` | the vswitch PD (`net_vswitch`) | `.net_vswitch_config` |
/// | `net_driver.data` | the driver PD (see below) | `.net_driver_config` |
/// | `<pd>_device_resources.data` | `<pd>` | `.device_resources` |
/// | `net_copy_<pd>.data` | `<pd>` | `.net_copy_config` |
/// | `net_client_<pd>.data` | `<pd>` | `.net_client_config` |
/// | `lib_sddf_lwip_config_<pd>.data` | `<pd>` | `.lib_sddf_lwip_config` |
/// | `timer_client_<pd>.data` | `<pd>` | `.timer_client_config` |
/// | `serial_client_<pd>.data` | `<pd>` | `.serial_client_config` |
///
/// The driver PD is [`SdfgenDir::driver`] if set, else the one PD with channels to both the
/// virt_rx and the virt_tx PD. Other files (`.json`, the `.system` file) are ignored; a `.data`
/// file matching no rule is an error rather than a config silently left out.
#[derive(Clone, Debug)]
pub struct SdfgenDir {
    /// sdfgen's output directory.
    pub dir: PathBuf,
    /// Name of the virt_rx PD.
    pub virt_rx: String,
    /// Name of the virt_tx PD.
    pub virt_tx: String,
    /// Name of the vswitch PD.
    pub vswitch: String,
    /// Name of the net driver PD; found from the channels when `None`.
    pub driver: Option<String>,
}

impl SdfgenDir {
    /// sdfgen's directory with the PD names of sDDF's examples (`net_virt_rx`, `net_virt_tx`,
    /// `net_vswitch`) and the driver found from the channels.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            virt_rx: "net_virt_rx".into(),
            virt_tx: "net_virt_tx".into(),
            vswitch: "net_vswitch".into(),
            driver: None,
        }
    }

    /// The driver PD: the configured one, or the unique PD connected to both virtualisers.
    fn driver(&self, system: &SystemDescription, file: &Path) -> Result<String, SectionError> {
        if let Some(driver) = &self.driver {
            return Ok(driver.clone());
        }
        let candidates: Vec<&str> = system
            .pds()
            .map(|(pd, _)| pd.name.as_str())
            .filter(|&name| name != self.virt_rx && name != self.virt_tx)
            .filter(|&name| {
                let peers = system.channels_of(name);
                peers.iter().any(|c| c.peer_pd == self.virt_rx)
                    && peers.iter().any(|c| c.peer_pd == self.virt_tx)
            })
            .collect();
        match candidates.as_slice() {
            [one] => Ok(one.to_string()),
            _ => Err(SectionError::Unrecognised {
                path: file.to_path_buf(),
                reason: format!(
                    "cannot tell the net driver PD: PDs with channels to both '{}' and '{}': {:?}",
                    self.virt_rx, self.virt_tx, candidates
                ),
            }),
        }
    }

    /// Which PD and section an sdfgen file name is for.
    fn classify(
        &self,
        system: &SystemDescription,
        file: &Path,
        stem: &str,
    ) -> Result<(String, &'static str), SectionError> {
        let fixed = [
            ("net_virt_rx", &self.virt_rx, ".net_virt_rx_config"),
            ("net_virt_tx", &self.virt_tx, ".net_virt_tx_config"),
            ("net_vswitch", &self.vswitch, ".net_vswitch_config"),
        ];
        if let Some((_, pd, section)) = fixed.iter().find(|(s, _, _)| *s == stem) {
            return Ok((pd.to_string(), section));
        }
        if stem == "net_driver" {
            return Ok((self.driver(system, file)?, ".net_driver_config"));
        }
        let prefixed = [
            ("net_copy_", ".net_copy_config"),
            ("net_client_", ".net_client_config"),
            ("lib_sddf_lwip_config_", ".lib_sddf_lwip_config"),
            ("timer_client_", ".timer_client_config"),
            ("serial_client_", ".serial_client_config"),
        ];
        for (prefix, section) in prefixed {
            if let Some(pd) = stem.strip_prefix(prefix).filter(|pd| !pd.is_empty()) {
                return Ok((pd.to_string(), section));
            }
        }
        if let Some(pd) = stem
            .strip_suffix("_device_resources")
            .filter(|pd| !pd.is_empty())
        {
            return Ok((pd.to_string(), ".device_resources"));
        }
        Err(SectionError::Unrecognised {
            path: file.to_path_buf(),
            reason: "not a config file name sdfgen writes".into(),
        })
    }
}

impl SectionProvider for SdfgenDir {
    fn origin(&self) -> String {
        self.dir.display().to_string()
    }

    fn sections(&self, system: &SystemDescription) -> Result<Vec<Section>, SectionError> {
        let mut out = Vec::new();
        for file in sorted_entries(&self.dir)? {
            let name = file_name(&file)?;
            let Some(stem) = name.strip_suffix(".data") else {
                continue;
            };
            let (pd, section) = self.classify(system, &file, stem)?;
            out.push(Section {
                pd,
                name: section.to_string(),
                bytes: read(&file)?,
            });
        }
        Ok(out)
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, SectionError> {
    let io_err = |source| SectionError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = fs::read_dir(dir)
        .map_err(io_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err)?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> Result<String, SectionError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| SectionError::Unrecognised {
            path: path.to_path_buf(),
            reason: "file name is not UTF-8".into(),
        })
}

fn read(path: &Path) -> Result<Vec<u8>, SectionError> {
    fs::read(path).map_err(|source| SectionError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = r#"<system>
        <protection_domain name="eth" priority="101"><program_image path="eth.elf"/></protection_domain>
        <protection_domain name="net_virt_rx" priority="99"><program_image path="rx.elf"/></protection_domain>
        <protection_domain name="net_virt_tx" priority="100"><program_image path="tx.elf"/></protection_domain>
        <protection_domain name="echo0" priority="97"><program_image path="echo.elf"/></protection_domain>
        <channel><end pd="eth" id="1"/><end pd="net_virt_rx" id="0"/></channel>
        <channel><end pd="eth" id="2"/><end pd="net_virt_tx" id="0"/></channel>
        <channel><end pd="echo0" id="1"/><end pd="net_virt_tx" id="1"/></channel>
    </system>"#;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netvm-sections-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn sdfgen_names_map_to_pds_and_sections() {
        let system = sdf::parse_str(SYSTEM, "t.xml", sdf::Arch::Aarch64).expect("valid");
        let dir = temp_dir("sdfgen");
        for (file, byte) in [
            ("net_virt_rx.data", 1u8),
            ("net_virt_tx.data", 2),
            ("net_driver.data", 3),
            ("net_copy_copier0.data", 4),
            ("net_client_echo0.data", 5),
            ("eth_device_resources.data", 6),
            ("timer_client_echo0.data", 7),
            ("echo_server.system", 8),
            ("net_client_echo0.json", 9),
        ] {
            fs::write(dir.join(file), [byte]).expect("write");
        }
        let mut got = SdfgenDir::new(&dir).sections(&system).expect("sections");
        got.sort_by_key(|s| s.bytes[0]);
        let got: Vec<(&str, &str, u8)> = got
            .iter()
            .map(|s| (s.pd.as_str(), s.name.as_str(), s.bytes[0]))
            .collect();
        assert_eq!(
            got,
            [
                ("net_virt_rx", ".net_virt_rx_config", 1),
                ("net_virt_tx", ".net_virt_tx_config", 2),
                ("eth", ".net_driver_config", 3),
                ("copier0", ".net_copy_config", 4),
                ("echo0", ".net_client_config", 5),
                ("eth", ".device_resources", 6),
                ("echo0", ".timer_client_config", 7),
            ]
        );

        fs::write(dir.join("blk_virt.data"), [0]).expect("write");
        let err = SdfgenDir::new(&dir).sections(&system).unwrap_err();
        assert!(err.to_string().contains("blk_virt.data"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn driver_must_be_unambiguous() {
        let text = SYSTEM.replace(
            "</system>",
            r#"<protection_domain name="eth2" priority="101"><program_image path="e.elf"/></protection_domain>
            <channel><end pd="eth2" id="1"/><end pd="net_virt_rx" id="1"/></channel>
            <channel><end pd="eth2" id="2"/><end pd="net_virt_tx" id="2"/></channel></system>"#,
        );
        let system = sdf::parse_str(&text, "t.xml", sdf::Arch::Aarch64).expect("valid");
        let dir = temp_dir("driver");
        fs::write(dir.join("net_driver.data"), [0]).expect("write");
        let err = SdfgenDir::new(&dir).sections(&system).unwrap_err();
        assert!(err.to_string().contains("cannot tell the net driver PD"));
        let mut named = SdfgenDir::new(&dir);
        named.driver = Some("eth2".into());
        assert_eq!(named.sections(&system).expect("named")[0].pd, "eth2");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn section_dir_adds_the_leading_dot() {
        let system = sdf::parse_str(SYSTEM, "t.xml", sdf::Arch::Aarch64).expect("valid");
        let dir = temp_dir("dir");
        fs::create_dir_all(dir.join("echo0")).expect("mkdir");
        fs::write(dir.join("echo0/net_client_config.bin"), [1, 2]).expect("write");
        fs::write(dir.join("echo0/.timer_client_config.bin"), [3]).expect("write");
        let got = SectionDir(dir.clone()).sections(&system).expect("sections");
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .any(|s| s.name == ".net_client_config" && s.bytes == [1, 2] && s.pd == "echo0"));
        assert!(got.iter().any(|s| s.name == ".timer_client_config"));
        fs::write(dir.join("stray.bin"), [0]).expect("write");
        assert!(SectionDir(dir.clone()).sections(&system).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
