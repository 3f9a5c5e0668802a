//! The system's one derivation: from a parsed system description (and the file it came from),
//! the per-client inputs (MACs, echo addresses, static or DHCP), the kernel command line and the
//! board facts of QEMU `virt` ([`layout::qemu_virt`]) to an [`ImagePlan`]: every PD's config
//! sections as one [`Section`] type, and the driver VM (its guest device tree's contents and the
//! VMM's `.vmm_config`) if the system runs one.
//!
//! The plan has two writers, which only write it: the seL4 image tool (`guest-image sel4-pds`
//! patches each PD's ELF, `guest-image sel4-dtb` writes the device tree) and `netvm run` (each
//! PD's manifest in host mode). What they write differs only where the driver PD does
//! ([`Writer`]).
//!
//! Errors ([`PlanError`]) name the file and the PD, region or channel involved.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

use echo_api::peers::PeerPlan;
use echo_api::IpConfig;
use sdf::net::{BufferCounts, NetError, NetSystemSpec};
use sdf::SystemDescription;

mod driver_vm;
mod inputs;
pub mod layout;
mod sections;

pub use driver_vm::{
    derived_driver_config, driver_vm, DriverVm, GUEST_KERNEL_TUNING, INITRD_OFFSET, RX_FAULT_GPA,
    TX_FAULT_GPA,
};
pub use inputs::{parse_echo_ips, parse_echo_peers, parse_macs};
pub use layout::GuestLayout;
pub use sections::{echo_sections, net_sections, peer_sections, sections, timer_client_sections};

/// Bytes for one ELF section of one PD: the one section type of the tree (defined by `sdf`,
/// whose `sdf::net` makes most of them).
pub use sdf::Section;

/// Why no plan can be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The system description (or an input given with it) does not describe a system the plan
    /// can be made for; the reason names the PD, region, map or channel involved.
    #[error("{path}: {reason}")]
    System {
        /// The system description.
        path: PathBuf,
        /// What in it the error is about.
        subject: Subject,
        /// What is wrong, naming the PD, region or channel.
        reason: String,
    },
    /// The sDDF net configs cannot be derived (the message names the PD or region).
    #[error("{path}: {source}")]
    Net {
        /// The system description.
        path: PathBuf,
        /// What `sdf::net` found.
        source: sdf::net::NetError,
    },
    /// The guest device tree has no UIO region `name`, which the uio-driver needs.
    #[error("the guest device tree has no UIO region '{name}', which the uio-driver needs: add it to the layout (or to the virtual_machine's maps in system.xml)")]
    MissingRegion {
        /// The UIO region.
        name: String,
    },
    /// The guest's layout is inconsistent (the reason names the region or device).
    #[error("invalid guest layout: {reason}")]
    Layout {
        /// What is wrong.
        reason: String,
    },
}

/// What in the system description a [`PlanError::System`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The system as a whole (e.g. it has no driver VM, or its net part cannot be inferred).
    System,
    /// A protection domain.
    Pd(String),
    /// A memory region, or a map of it.
    Region(String),
    /// A virtual machine.
    Vm(String),
    /// The channel between `pd` and `peer` (absent or not as the plan needs it).
    Channel {
        /// The PD whose end is missing.
        pd: String,
        /// The PD at the other end.
        peer: String,
    },
}

/// Which writer the plan is for. Only the driver PD differs: on seL4 it is the VMM, which reads
/// `.vmm_config` and of the sDDF configs only `.net_driver_config` (its guest finds the rest
/// through UIO), and every net client must be given an address; in host mode it is the driver
/// stand-in, which reads the driver's sDDF configs itself, runs no VM, and addresses are given
/// to whichever PDs the caller names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The seL4 image: patched ELFs and the guest's device tree.
    Sel4Image,
    /// `netvm run`: per-PD manifests.
    Host,
}

/// The net clients as the user gives them: their MACs (which live nowhere in a system
/// description) and buffer counts other than sdfgen's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clients<'a> {
    /// `(client PD, MAC)` of every net client.
    pub macs: &'a [(String, [u8; 6])],
    /// Buffer counts to apply to the spec read off the system.
    pub buffers: BufferCounts,
}

impl Clients<'_> {
    /// The net spec of `sys`: roles from its region names ([`NetSystemSpec::infer`]), these
    /// MACs, these buffer counts.
    pub fn spec(&self, sys: &SystemDescription) -> Result<NetSystemSpec, NetError> {
        let mut spec = NetSystemSpec::infer(sys, self.macs)?;
        self.buffers.apply(&mut spec);
        Ok(spec)
    }
}

/// The echo servers' inputs: `(PD, address)` ([`Inputs::echo`]) and `(PD, peers)`
/// ([`Inputs::echo_peers`]).
pub type EchoInputs<'a> = (&'a [(String, IpConfig)], &'a [(String, PeerPlan)]);

/// What the plan is made from, besides the system description.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `(client PD, MAC)` of every net client (they live nowhere in a system description).
    /// `None`: derive no net configs (host mode given them as files instead).
    pub macs: Option<&'a [(String, [u8; 6])]>,
    /// Buffer counts other than sdfgen's defaults (`sdf::net::BufferCounts`, e.g. from
    /// `--buffers rx=64,client_rx=64,client_tx=32`), for every PD's config and the guest's
    /// device tree alike.
    pub buffers: BufferCounts,
    /// `(echo-server PD, static address or DHCP)`, e.g. from `echo_api::parse_address_list`.
    pub echo: &'a [(String, IpConfig)],
    /// `(echo-server PD, its peers and load)` for the PDs that also originate echo traffic
    /// (`.echo_peers`), e.g. from `echo_api::peers::parse_peer_list`; each needs an address in
    /// [`Inputs::echo`]. Empty: no PD originates, every system is as before.
    pub echo_peers: &'a [(String, PeerPlan)],
    /// The guest kernel's command line (seL4 image only).
    pub bootargs: &'a str,
    /// Which writer the plan is for.
    pub writer: Writer,
}

/// What a system needs besides its PDs' programs: every config section, and the driver VM.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// Every PD's config sections, at most one per (PD, section name).
    pub sections: Vec<Section>,
    /// The driver VM (device tree contents, `.vmm_config`); `None` in host mode, which stands
    /// the host driver in for it.
    pub driver_vm: Option<DriverVm>,
}

/// Makes the plan of `sys` (parsed from `path`) for `inputs.writer`.
pub fn plan(
    sys: &SystemDescription,
    path: &Path,
    inputs: &Inputs<'_>,
) -> Result<ImagePlan, PlanError> {
    let no_macs: &[(String, [u8; 6])] = &[];
    match inputs.writer {
        Writer::Sel4Image => {
            let clients = Clients {
                macs: inputs.macs.unwrap_or(no_macs),
                buffers: inputs.buffers,
            };
            let vm = driver_vm(sys, path, inputs.bootargs, &clients)?;
            let sections = sections(sys, path, &vm, &clients, (inputs.echo, inputs.echo_peers))?;
            Ok(ImagePlan {
                sections,
                driver_vm: Some(vm),
            })
        }
        Writer::Host => {
            let mut sections = match inputs.macs {
                Some(macs) => net_sections(
                    sys,
                    path,
                    &Clients {
                        macs,
                        buffers: inputs.buffers,
                    },
                    Writer::Host,
                )?,
                None => Vec::new(),
            };
            sections.extend(echo_sections(
                sys,
                path,
                &Clients::default(),
                (inputs.echo, inputs.echo_peers),
                Writer::Host,
            )?);
            Ok(ImagePlan {
                sections,
                driver_vm: None,
            })
        }
    }
}
