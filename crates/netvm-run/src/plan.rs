//! From a validated system description to what the runner creates and what each PD is told:
//! the PD list in Microkit's order, one backing file per memory region, and one manifest per PD.
//! Nothing here touches the running system; [`Plan::new`] only reads files (executables,
//! prefill files, config sections).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use microkit::host::manifest::{
    ChannelEnd, ChildPd, Manifest, ParentLink, Perms, Region, SectionData, SetVarValue,
};
use sdf::{ProtectionDomain, SetVarKind, SystemDescription};

use super::sections::SectionProvider;
use super::RunError;

/// Where regions without an SDF `phys_addr` get their (bookkeeping-only) physical address:
/// the RAM base of `qemu_virt_aarch64`. Host mode has no physical memory; the address is only
/// what `<setvar region_paddr>` and config derivation see.
const HOST_PHYS_BASE: u64 = 0x4000_0000;

/// Longest interface name plus its NUL (Linux `IFNAMSIZ`).
const IFNAMSIZ: usize = 16;

/// The section of the host driver process that names its network interface (NUL-padded,
/// 16 bytes).
pub const DRIVER_HOST_SECTION: &str = ".netvm_driver_host";

/// How host mode stands in for a driver VM (see `Plan::stand_in_for_driver_vm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverVmHost {
    /// The host driver executable, in the bin dir (the uio-driver's host PD, `uio_driver_host`).
    pub executable: String,
    /// The network interface it bridges to the sDDF queues.
    pub iface: String,
}

/// One memory region of the running system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionPlan {
    /// SDF name.
    pub name: String,
    /// Size in bytes (the backing file's length).
    pub size: u64,
    /// Physical address: the SDF `phys_addr`, or one allocated for bookkeeping (see
    /// [`RegionPlan::phys_fixed`]).
    pub phys_addr: u64,
    /// Whether `phys_addr` came from the SDF.
    pub phys_fixed: bool,
    /// File whose bytes pre-fill the region, resolved.
    pub prefill: Option<PathBuf>,
    /// The backing file.
    pub file: PathBuf,
}

/// One PD of the running system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdPlan {
    /// Index in the control region (Microkit's depth-first PD order).
    pub index: usize,
    /// The host executable.
    pub executable: PathBuf,
    /// SDF priority (the start order: higher first, as seL4 would run their `init`s).
    pub priority: u8,
    /// `(channel id, hardware irq)` of every `<irq>`.
    pub irqs: Vec<(u8, u64)>,
    /// The manifest passed to the process.
    pub manifest: Manifest,
    /// Where the manifest is written.
    pub manifest_path: PathBuf,
}

impl PdPlan {
    /// The PD's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }
}

/// Everything the runner creates for one system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The run directory every file below lives in.
    pub run_dir: PathBuf,
    /// The control-region file.
    pub control: PathBuf,
    /// PDs in control-region order.
    pub pds: Vec<PdPlan>,
    /// Memory regions in SDF order.
    pub regions: Vec<RegionPlan>,
    /// Things the host cannot reproduce (printed at start, not fatal).
    pub warnings: Vec<String>,
}

impl Plan {
    /// Plans `system` (read from `sdf_path`) with executables from `bin_dir` and every file
    /// under `run_dir`.
    pub fn new(
        system: &SystemDescription,
        sdf_path: &Path,
        bin_dir: &Path,
        run_dir: &Path,
        providers: &[Box<dyn SectionProvider>],
        driver_vm: Option<&DriverVmHost>,
    ) -> Result<Plan, RunError> {
        let control = run_dir.join("control");
        let regions = plan_regions(system, sdf_path, bin_dir, run_dir)?;
        let by_name: BTreeMap<&str, &RegionPlan> =
            regions.iter().map(|r| (r.name.as_str(), r)).collect();
        let index_of: BTreeMap<&str, usize> = system
            .pds()
            .enumerate()
            .map(|(i, (pd, _))| (pd.name.as_str(), i))
            .collect();

        let mut warnings = Vec::new();
        let mut pds = Vec::new();
        for (index, (pd, parent)) in system.pds().enumerate() {
            let executable = match (&pd.virtual_machine, driver_vm) {
                // The VMM PD and its guest are stood in for (see `stand_in_for_driver_vm`).
                (Some(_), Some(host)) => bin_dir.join(&host.executable),
                _ => find_executable(bin_dir, &pd.name, &pd.program_image)?,
            };
            let manifest = pd_manifest(system, pd, parent, index, &control, &by_name, &index_of)?;
            if let Some(vm) = &pd.virtual_machine {
                warnings.push(format!(
                    "PD '{}' manages virtual machine '{}': host mode does not run VMs \
                     (its vCPU calls fail with IllegalOperation, and nothing drives the NIC); \
                     --driver-vm-iface IFACE stands the host driver in for it on IFACE",
                    pd.name, vm.name
                ));
            }
            pds.push(PdPlan {
                index,
                executable,
                priority: pd.priority,
                irqs: pd.irqs.iter().map(|irq| (irq.id, irq.irq)).collect(),
                manifest_path: run_dir.join(format!("{index}.manifest")),
                manifest,
            });
        }
        add_sections(system, &mut pds, providers)?;
        // A manifest the PD would reject is a configuration error, found before anything runs.
        for pd in &pds {
            Manifest::parse(
                &pd.manifest.to_text(),
                &pd.manifest_path.display().to_string(),
            )
            .map_err(|source| RunError::Manifest {
                pd: pd.manifest.name.clone(),
                source,
            })?;
        }
        let mut plan = Plan {
            run_dir: run_dir.to_path_buf(),
            control,
            pds,
            regions,
            warnings,
        };
        if let Some(host) = driver_vm {
            plan.stand_in_for_driver_vm(system, host, bin_dir)?;
        }
        plan.check_config_sections()?;
        Ok(plan)
    }

    /// Every config section of [`REQUIRED_SECTIONS`] a PD's executable declares must be given by
    /// some provider: a PD started with an all-zero config only says "bad magic", far from the
    /// missing option. (Other sections may be optional, or declared by every binary of a crate
    /// and used by one.) Executables that are not ELF files (test stand-ins) declare nothing.
    fn check_config_sections(&self) -> Result<(), RunError> {
        let mut missing = Vec::new();
        for pd in &self.pds {
            for name in declared_config_sections(&pd.executable) {
                if !pd.manifest.sections.iter().any(|s| s.name == name) {
                    missing.push(format!("PD '{}' section '{name}'", pd.manifest.name));
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RunError::MissingConfig { missing })
        }
    }

    /// Host mode's stand-in for a driver VM: the PD that runs the virtual machine becomes the
    /// host driver process ([`DriverVmHost::executable`]), which keeps the VMM PD's maps and
    /// channels and additionally maps the driver-side regions the guest would see through UIO,
    /// named as the uio-driver looks them up (`rx_free`, ..., `tx_data<i>`) at the guest
    /// addresses of the virtual machine's maps; it learns its interface from the
    /// [`DRIVER_HOST_SECTION`] section.
    fn stand_in_for_driver_vm(
        &mut self,
        system: &SystemDescription,
        host: &DriverVmHost,
        bin_dir: &Path,
    ) -> Result<(), RunError> {
        let (driver, uio) =
            sdf::net::driver_vm_regions(system).map_err(|e| RunError::DriverVm {
                pd: "?".into(),
                why: e.to_string(),
            })?;
        let fail = |why: String| RunError::DriverVm {
            pd: driver.clone(),
            why,
        };
        let vm = system
            .pd(&driver)
            .and_then(|pd| pd.virtual_machine.as_ref())
            .ok_or_else(|| fail("the network driver PD has no virtual_machine".into()))?;
        let executable = bin_dir.join(&host.executable);
        if !executable.is_file() {
            return Err(fail(format!(
                "no host driver executable at {}",
                executable.display()
            )));
        }
        if host.iface.is_empty() || host.iface.len() >= IFNAMSIZ {
            return Err(fail(format!(
                "interface name '{}' is empty or too long",
                host.iface
            )));
        }
        let mut regions = Vec::new();
        for (role, mr) in &uio {
            let map = vm.maps.iter().find(|m| &m.mr == mr).ok_or_else(|| {
                fail(format!(
                    "virtual machine '{}' does not map '{mr}' ({role})",
                    vm.name
                ))
            })?;
            let region = self
                .regions
                .iter()
                .find(|r| &r.name == mr)
                .ok_or_else(|| fail(format!("no memory region '{mr}'")))?;
            regions.push(Region {
                name: role.clone(),
                vaddr: map.vaddr,
                size: region.size,
                perms: Perms {
                    read: true,
                    write: true,
                    execute: false,
                },
                path: region.file.clone(),
            });
        }
        let pd = self
            .pds
            .iter_mut()
            .find(|p| p.manifest.name == driver)
            .ok_or_else(|| fail("not in the plan".into()))?;
        pd.executable = executable;
        pd.manifest.regions.extend(regions);
        // The VMM image's setvars and device resources mean nothing to the stand-in; it keeps
        // only the driver's sDDF queue config and its stats region (for the driver's counters).
        pd.manifest.setvars.clear();
        pd.manifest
            .sections
            .retain(|s| s.name == ".net_driver_config" || s.name == netvm_api::stats::SECTION);
        let mut iface = [0u8; IFNAMSIZ];
        iface[..host.iface.len()].copy_from_slice(host.iface.as_bytes());
        pd.manifest.sections.push(SectionData {
            name: DRIVER_HOST_SECTION.into(),
            bytes: iface.to_vec(),
        });
        let note = format!("PD '{driver}' manages virtual machine");
        self.warnings.retain(|w| !w.starts_with(&note));
        Manifest::parse(
            &pd.manifest.to_text(),
            &pd.manifest_path.display().to_string(),
        )
        .map_err(|source| RunError::Manifest {
            pd: driver.clone(),
            source,
        })?;
        Ok(())
    }

    /// The PD called `name`.
    pub fn pd(&self, name: &str) -> Option<&PdPlan> {
        self.pds.iter().find(|p| p.manifest.name == name)
    }

    /// Every manifest as text, each preceded by a comment naming the PD's executable.
    pub fn manifests_text(&self) -> String {
        let mut out = String::new();
        for pd in &self.pds {
            out.push_str(&format!(
                "# PD '{}' (index {}): {}\n# manifest {}\n",
                pd.name(),
                pd.index,
                pd.executable.display(),
                pd.manifest_path.display()
            ));
            out.push_str(&pd.manifest.to_text());
            out.push('\n');
        }
        out
    }
}

/// The manifest of `pd` (child of `parent`), at `index` in the control region: its maps,
/// channels, IRQs, children, parent and setvars (config sections come later, from the
/// providers).
fn pd_manifest(
    system: &SystemDescription,
    pd: &ProtectionDomain,
    parent: Option<&ProtectionDomain>,
    index: usize,
    control: &Path,
    by_name: &BTreeMap<&str, &RegionPlan>,
    index_of: &BTreeMap<&str, usize>,
) -> Result<Manifest, RunError> {
    let mut m = Manifest::new(pd.name.clone(), index, control);
    m.passive = pd.passive;
    for map in &pd.maps {
        let region = by_name[map.mr.as_str()];
        m.regions.push(Region {
            name: map.mr.clone(),
            vaddr: map.vaddr,
            size: region.size,
            perms: Perms {
                read: map.perms.read,
                write: map.perms.write,
                execute: map.perms.execute,
            },
            path: region.file.clone(),
        });
    }
    for ch in system.channels_of(&pd.name) {
        m.channels.push(ChannelEnd {
            id: ch.local_id,
            peer: index_of[ch.peer_pd],
            peer_id: ch.peer_id,
            notify: ch.notify,
            pp: ch.pp,
        });
    }
    m.irqs = pd.irqs.iter().map(|irq| irq.id).collect();
    for child in &pd.children {
        if let Some(id) = child.id {
            m.children.push(ChildPd {
                id,
                index: index_of[child.name.as_str()],
            });
        }
    }
    if let (Some(parent), Some(child_id)) = (parent, pd.id) {
        m.parent = Some(ParentLink {
            index: index_of[parent.name.as_str()],
            child_id,
        });
    }
    for sv in &pd.setvars {
        let value = match &sv.kind {
            SetVarKind::Vaddr(vaddr) => *vaddr,
            SetVarKind::Size { mr } => by_name[mr.as_str()].size,
            SetVarKind::PrefillSize { mr } => prefill_len(by_name[mr.as_str()])?,
            SetVarKind::RegionPaddr { mr } => by_name[mr.as_str()].phys_addr,
            SetVarKind::Id(id) => u64::from(*id),
        };
        m.setvars.push(SetVarValue {
            symbol: sv.symbol.clone(),
            value,
        });
    }
    Ok(m)
}

/// Every provider's sections, into the manifests of their PDs; a PD that does not exist or a
/// section given twice is an error naming the provider.
fn add_sections(
    system: &SystemDescription,
    pds: &mut [PdPlan],
    providers: &[Box<dyn SectionProvider>],
) -> Result<(), RunError> {
    for provider in providers {
        let origin = provider.origin();
        for section in provider.sections(system)? {
            let Some(pd) = pds.iter_mut().find(|p| p.manifest.name == section.pd) else {
                return Err(RunError::SectionUnknownPd {
                    pd: section.pd,
                    section: section.name,
                    origin,
                });
            };
            if pd.manifest.sections.iter().any(|s| s.name == section.name) {
                return Err(RunError::DuplicateSection {
                    pd: section.pd,
                    section: section.name,
                    origin,
                });
            }
            pd.manifest.sections.push(SectionData {
                name: section.name,
                bytes: section.bytes,
            });
        }
    }
    Ok(())
}

/// `program_image path="foo.elf"` runs `<bin-dir>/foo`: the host build of the same PD crate
/// (cargo names it after the binary, without `.elf`).
/// Config sections a PD cannot run without: the sDDF net configs and the echo server's address.
pub const REQUIRED_SECTIONS: [&str; 6] = [
    ".net_driver_config",
    ".net_virt_rx_config",
    ".net_virt_tx_config",
    ".net_copy_config",
    ".net_client_config",
    ".echo_config",
];

/// The [`REQUIRED_SECTIONS`] an executable declares; none if it is not an ELF file.
fn declared_config_sections(executable: &Path) -> Vec<String> {
    use object::{Object, ObjectSection};
    let Ok(data) = std::fs::read(executable) else {
        return Vec::new();
    };
    let Ok(file) = object::File::parse(&*data) else {
        return Vec::new();
    };
    file.sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .filter(|n| REQUIRED_SECTIONS.contains(&n.as_str()))
        .collect()
}

fn find_executable(
    bin_dir: &Path,
    pd: &str,
    image: &sdf::ProgramImage,
) -> Result<PathBuf, RunError> {
    let file_name = image.path.file_name().map(Path::new).unwrap_or(&image.path);
    let stem = match file_name.extension() {
        Some(ext) if ext == "elf" => file_name.with_extension(""),
        _ => file_name.to_path_buf(),
    };
    let path = bin_dir.join(stem);
    let missing = |why: &str| RunError::MissingExecutable {
        at: image.pos.to_string(),
        pd: pd.to_string(),
        image: image.path.clone(),
        path: path.clone(),
        why: why.to_string(),
    };
    let meta = fs::metadata(&path).map_err(|e| missing(&e.to_string()))?;
    if !meta.is_file() {
        return Err(missing("not a regular file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(missing("not executable"));
    }
    Ok(path)
}

/// Backing files, physical addresses and prefill files of every region.
fn plan_regions(
    system: &SystemDescription,
    sdf_path: &Path,
    bin_dir: &Path,
    run_dir: &Path,
) -> Result<Vec<RegionPlan>, RunError> {
    let fixed: Vec<(u64, u64)> = system
        .memory_regions
        .iter()
        .filter_map(|mr| Some((mr.phys_addr?, mr.size)))
        .collect();
    let mut next_phys = HOST_PHYS_BASE;
    let sdf_dir = sdf_path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, mr) in system.memory_regions.iter().enumerate() {
        let phys_addr = match mr.phys_addr {
            Some(p) => p,
            None => {
                // Allocate upward, stepping over fixed regions (validated not to overlap).
                let mut at = next_phys.next_multiple_of(mr.page_size);
                while let Some(&(start, size)) = fixed
                    .iter()
                    .find(|&&(start, size)| at < start.saturating_add(size) && start < at + mr.size)
                {
                    at = start.saturating_add(size).next_multiple_of(mr.page_size);
                }
                next_phys = at + mr.size;
                at
            }
        };
        let prefill = match &mr.prefill_path {
            None => None,
            Some(p) => {
                Some(
                    resolve_prefill(p, sdf_dir, bin_dir).ok_or_else(|| RunError::Prefill {
                        mr: mr.name.clone(),
                        path: p.clone(),
                        why: format!(
                            "not found (looked in {} and {})",
                            sdf_dir.display(),
                            bin_dir.display()
                        ),
                    })?,
                )
            }
        };
        let plan = RegionPlan {
            name: mr.name.clone(),
            size: mr.size,
            phys_addr,
            phys_fixed: mr.phys_addr.is_some(),
            prefill,
            // Region names may contain '/' (sdfgen's do): the file is named by position.
            file: run_dir.join(format!("mr{i}")),
        };
        if plan.prefill.is_some() && prefill_len(&plan)? > plan.size {
            return Err(RunError::Prefill {
                mr: mr.name.clone(),
                path: plan.prefill.clone().unwrap_or_default(),
                why: format!("larger than the region ({:#x} bytes)", plan.size),
            });
        }
        out.push(plan);
    }
    Ok(out)
}

/// A prefill path as given if absolute, else relative to the SDF's directory, then to the
/// executables' directory (the host stand-in for the tool's search path).
fn resolve_prefill(path: &Path, sdf_dir: &Path, bin_dir: &Path) -> Option<PathBuf> {
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    [sdf_dir, bin_dir]
        .iter()
        .map(|dir| dir.join(path))
        .find(|p| p.is_file())
}

fn prefill_len(region: &RegionPlan) -> Result<u64, RunError> {
    let Some(path) = &region.prefill else {
        return Ok(0);
    };
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| RunError::Prefill {
            mr: region.name.clone(),
            path: path.clone(),
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sections::{Section, StaticSections};

    /// A bin dir with an executable file per name.
    fn bin_dir(tag: &str, names: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netvm-plan-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        for name in names {
            let path = dir.join(name);
            fs::write(&path, "#!/bin/sh\n").expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        dir
    }

    const SYSTEM: &str = r#"<system>
        <memory_region name="fixed" size="0x1000" phys_addr="0x40001000"/>
        <memory_region name="a/b" size="0x2000"/>
        <memory_region name="big" size="0x200000" page_size="0x200000"/>
        <protection_domain name="parent" priority="10">
            <program_image path="parent.elf"/>
            <map mr="a/b" vaddr="0x2000000" perms="r" setvar_vaddr="ab_vaddr" setvar_size="ab_size"/>
            <setvar symbol="fixed_paddr" region_paddr="fixed"/>
            <setvar symbol="ab_paddr" region_paddr="a/b"/>
            <setvar symbol="big_paddr" region_paddr="big"/>
            <irq irq="33" id="5" setvar_id="irq_id"/>
            <protection_domain name="kid" id="3" setvar_id="kid_id" priority="5">
                <program_image path="kid"/>
            </protection_domain>
        </protection_domain>
        <protection_domain name="server" priority="20" passive="true">
            <program_image path="/elsewhere/server.elf"/>
            <map mr="a/b" vaddr="0x3000000" perms="rw"/>
        </protection_domain>
        <channel><end pd="parent" id="1" pp="true" setvar_id="srv_ch"/><end pd="server" id="7" notify="false"/></channel>
    </system>"#;

    #[test]
    fn manifests_follow_the_sdf() {
        let system = sdf::parse_str(SYSTEM, "s.xml", sdf::Arch::Aarch64).expect("valid");
        let bins = bin_dir("ok", &["parent", "kid", "server"]);
        let run = Path::new("/dev/shm/run");
        let providers: Vec<Box<dyn SectionProvider>> = vec![Box::new(StaticSections {
            origin: "test".into(),
            sections: vec![Section {
                pd: "server".into(),
                name: ".cfg".into(),
                bytes: vec![9],
            }],
        })];
        let plan =
            Plan::new(&system, Path::new("s.xml"), &bins, run, &providers, None).expect("plan");
        let names: Vec<&str> = plan.pds.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["parent", "kid", "server"]);
        assert_eq!(plan.pds[2].executable, bins.join("server"));

        let [fixed, ab, big] = &plan.regions[..] else {
            panic!("three regions")
        };
        assert_eq!((fixed.phys_addr, fixed.phys_fixed), (0x4000_1000, true));
        // Allocated from the RAM base, stepping over the fixed region.
        assert_eq!((ab.phys_addr, ab.phys_fixed), (0x4000_2000, false));
        assert_eq!(big.phys_addr, 0x4020_0000);
        assert_eq!(ab.file, run.join("mr1"));

        let parent = &plan.pds[0].manifest;
        assert_eq!(parent.regions.len(), 1);
        assert_eq!(
            (parent.regions[0].vaddr, parent.regions[0].size),
            (0x200_0000, 0x2000)
        );
        assert_eq!(parent.regions[0].perms.to_string(), "r");
        assert_eq!(
            parent.channels,
            [ChannelEnd {
                id: 1,
                peer: 2,
                peer_id: 7,
                notify: true,
                pp: true
            }]
        );
        assert_eq!(parent.irqs, [5]);
        assert_eq!(parent.children, [ChildPd { id: 3, index: 1 }]);
        let setvars: Vec<(&str, u64)> = parent
            .setvars
            .iter()
            .map(|s| (s.symbol.as_str(), s.value))
            .collect();
        for expected in [
            ("ab_vaddr", 0x200_0000),
            ("ab_size", 0x2000),
            ("fixed_paddr", 0x4000_1000),
            ("ab_paddr", 0x4000_2000),
            ("big_paddr", 0x4020_0000),
            ("irq_id", 5),
            ("kid_id", 3),
            ("srv_ch", 1),
        ] {
            assert!(setvars.contains(&expected), "{expected:?} in {setvars:?}");
        }
        let kid = &plan.pds[1].manifest;
        assert_eq!(
            kid.parent,
            Some(ParentLink {
                index: 0,
                child_id: 3
            })
        );
        let server = &plan.pds[2].manifest;
        assert!(server.passive);
        assert_eq!(
            (server.channels[0].notify, server.channels[0].pp),
            (false, false)
        );
        assert_eq!(server.sections[0].bytes, [9]);
        assert!(plan.manifests_text().contains("# PD 'kid' (index 1)"));
        let _ = fs::remove_dir_all(&bins);
    }

    #[test]
    fn missing_executable_names_pd_and_path() {
        let system = sdf::parse_str(SYSTEM, "s.xml", sdf::Arch::Aarch64).expect("valid");
        let bins = bin_dir("missing", &["parent", "server"]);
        let err = Plan::new(
            &system,
            Path::new("s.xml"),
            &bins,
            Path::new("/r"),
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PD 'kid'"), "{err}");
        assert!(
            err.contains(&bins.join("kid").display().to_string()),
            "{err}"
        );
        assert!(err.starts_with("s.xml:13:"), "{err}");
        let _ = fs::remove_dir_all(&bins);
    }

    #[test]
    fn sections_for_unknown_pds_or_twice_are_rejected() {
        let system = sdf::parse_str(SYSTEM, "s.xml", sdf::Arch::Aarch64).expect("valid");
        let bins = bin_dir("sections", &["parent", "kid", "server"]);
        let section = |pd: &str| Section {
            pd: pd.into(),
            name: ".x".into(),
            bytes: vec![],
        };
        let provider = |sections| -> Box<dyn SectionProvider> {
            Box::new(StaticSections {
                origin: "test".into(),
                sections,
            })
        };
        let err = Plan::new(
            &system,
            Path::new("s.xml"),
            &bins,
            Path::new("/r"),
            &[provider(vec![section("nobody")])],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("'nobody'"), "{err}");
        let err = Plan::new(
            &system,
            Path::new("s.xml"),
            &bins,
            Path::new("/r"),
            &[
                provider(vec![section("kid")]),
                provider(vec![section("kid")]),
            ],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let _ = fs::remove_dir_all(&bins);
    }
}
