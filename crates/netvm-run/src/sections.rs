//! Config sections: bytes a runner copies into a named ELF section of a PD before `init`, as the
//! seL4 build does with `objcopy --update-section` (sDDF configs, device resources...).
//!
//! Where the bytes come from is pluggable ([`SectionProvider`]): files in a directory
//! ([`SectionDir`]), sdfgen's output directory ([`SdfgenDir`]), the plan `system_plan` derives
//! from the system description ([`PlannedSections`]), or a caller's own code
//! ([`StaticSections`], or any type implementing the trait).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sdf::SystemDescription;

/// Bytes for one ELF section of one PD: the one section type of the tree, which the seL4
/// image tool patches into ELFs and host mode writes into manifests.
pub use system_plan::Section;

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
    /// The sDDF net configs cannot be read (the message names the PD, region or file).
    #[error("sDDF net configs: {0}")]
    Net(#[from] sdf::net::NetError),
    /// The plan cannot be made (the message names the file and the PD, region or channel).
    #[error("{0}")]
    Plan(#[from] system_plan::PlanError),
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

/// The sDDF net config blobs sdfgen wrote into a directory (`net_driver.data`,
/// `net_client_<pd>.data`, ...), mapped to PDs and sections by `sdf::net::sdfgen_blob_sections`
/// from the roles the system description's region names show. Each blob is checked for size and
/// magic; a `.data` file that fits no role is an error, not a config silently left out.
#[derive(Clone, Debug)]
pub struct SdfgenDir(pub PathBuf);

impl SectionProvider for SdfgenDir {
    fn origin(&self) -> String {
        self.0.display().to_string()
    }

    fn sections(&self, system: &SystemDescription) -> Result<Vec<Section>, SectionError> {
        let mut sections = sdf::net::sdfgen_blob_sections(&self.0, system)?;
        // Without it a driver VM's uio-driver (offsets) and sDDF-default virtualisers (IO
        // addresses) never agreed: every frame was refused and nothing answered, silently.
        sections.extend(sdf::net::sdfgen_options_sections(system)?);
        Ok(sections)
    }
}

/// The sections `system_plan::plan` derives for host mode ([`system_plan::Writer::Host`]): the
/// sDDF net configs (`sdf::net::derive`, byte-identical to sdfgen's) with netvm's options and
/// stats sections, if the clients' MAC addresses are given (they live nowhere in a system
/// description), and each echo-server PD's address (static or DHCP) with its timer channel. The
/// seL4 image tool writes the same plan into ELFs.
#[derive(Clone, Debug)]
pub struct PlannedSections {
    /// The system description's file (errors name it).
    pub system_path: PathBuf,
    /// `(client PD, MAC)` for every client, e.g. from `sdf::net::parse_mac_list`; `None`: the
    /// net configs come from elsewhere (`--sections-dir`, `--sdfgen-dir`).
    pub macs: Option<Vec<(String, [u8; 6])>>,
    /// Buffer counts other than sdfgen's (`--buffers`).
    pub buffers: sdf::net::BufferCounts,
    /// `(echo-server PD, address)`, e.g. from `system_plan::parse_echo_ips`.
    pub echo: Vec<(String, echo_api::IpConfig)>,
    /// `(echo-server PD, peers and load)` for the PDs that also originate echo traffic, e.g.
    /// from `system_plan::parse_echo_peers`.
    pub echo_peers: Vec<(String, echo_api::peers::PeerPlan)>,
}

impl SectionProvider for PlannedSections {
    fn origin(&self) -> String {
        "the plan derived from the system description (--net-macs, --echo-ips, --echo-peers)".into()
    }

    fn sections(&self, system: &SystemDescription) -> Result<Vec<Section>, SectionError> {
        let inputs = system_plan::Inputs {
            macs: self.macs.as_deref(),
            buffers: self.buffers,
            echo: &self.echo,
            echo_peers: &self.echo_peers,
            bootargs: "",
            writer: system_plan::Writer::Host,
        };
        Ok(system_plan::plan(system, &self.system_path, &inputs)?.sections)
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

    /// sdf's net fixture: the output of scripts/sdfgen_net_system.py (two clients).
    fn net_fixture() -> SystemDescription {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdf/tests/net/two_clients.system");
        sdf::parse(&path, sdf::Arch::Aarch64).expect("fixture parses")
    }

    #[test]
    fn derived_net_configs_round_trip_through_an_sdfgen_directory() {
        let system = net_fixture();
        let macs = sdf::net::parse_mac_list("client0=52:54:01:00:00:10,client1=52:54:01:00:00:11")
            .expect("macs");
        let planned = |macs| PlannedSections {
            buffers: Default::default(),
            system_path: "two_clients.system".into(),
            macs: Some(macs),
            echo: Vec::new(),
            echo_peers: Vec::new(),
        };
        let derived = planned(macs).sections(&system).expect("derive");
        let names: Vec<(&str, &str)> = derived
            .iter()
            .map(|s| (s.pd.as_str(), s.name.as_str()))
            .collect();
        for expected in [
            ("driver_vm", ".net_driver_config"),
            ("net_virt_rx", ".net_virt_rx_config"),
            ("net_virt_tx", ".net_virt_tx_config"),
            ("client0_net_copier", ".net_copy_config"),
            ("client1", ".net_client_config"),
        ] {
            assert!(names.contains(&expected), "{expected:?} in {names:?}");
        }
        // netvm's own options go to both virtualisers (this driver runs no VM: defaults).
        let (options, derived): (Vec<Section>, Vec<Section>) = derived
            .into_iter()
            .partition(|s| s.name == netvm_api::options::SECTION);
        let pds: Vec<&str> = options.iter().map(|s| s.pd.as_str()).collect();
        assert_eq!(pds, ["net_virt_rx", "net_virt_tx"]);
        assert!(
            options.iter().all(|s| s.bytes.iter().any(|b| *b != 0)),
            "options carry a magic"
        );
        // Written under sdfgen's file names, the same blobs come back for the same PDs.
        let dir = temp_dir("sdfgen");
        for s in &derived {
            let file = match s.name.as_str() {
                ".net_driver_config" => "net_driver.data".to_string(),
                ".device_resources" => format!("{}_device_resources.data", s.pd),
                ".net_virt_rx_config" => "net_virt_rx.data".to_string(),
                ".net_virt_tx_config" => "net_virt_tx.data".to_string(),
                ".net_copy_config" => format!("net_copy_{}.data", s.pd),
                ".net_client_config" => format!("net_client_{}.data", s.pd),
                other => panic!("unexpected section {other}"),
            };
            fs::write(dir.join(file), &s.bytes).expect("write");
        }
        let mut read = SdfgenDir(dir.clone()).sections(&system).expect("read");
        let mut derived = derived;
        read.sort_by(|a, b| (&a.pd, &a.name).cmp(&(&b.pd, &b.name)));
        derived.sort_by(|a, b| (&a.pd, &a.name).cmp(&(&b.pd, &b.name)));
        assert_eq!(read, derived);

        // A MAC for a PD that is no client is the caller's mistake, named.
        let err = planned(vec![("nobody".into(), [2, 0, 0, 0, 0, 1])])
            .sections(&system)
            .unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");
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
