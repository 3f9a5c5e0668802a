//! Microkit system-description (SDF) parsing and validation with `file:line:col` errors.
//!
//! # Contract
//!
//! [`parse`] / [`parse_str`] take a Microkit 2.3.0 system description and return either a
//! [`SystemDescription`] that satisfies every rule below, or the **first** violation as an
//! [`SdfError`] whose `Display` is always `file:line:col: <what is wrong>`, pointing at the
//! offending attribute where there is one, else at the element. No input — malformed XML,
//! arbitrary bytes, absurd numbers, deep nesting — makes these functions panic.
//!
//! The accepted language is the one `tool/microkit/src/sdf.rs` (Microkit 2.3.0) accepts for
//! the target [`Config`], with these deliberate differences:
//!
//! * **Rejected as not supported by netvm** (the host runner cannot reproduce them): `<domains>`
//!   and the `domain` attribute, `<cspace>`, `prefill_bootinfo`, and a prefilled region
//!   without `size` (the parser does not read prefill files).
//! * **Rejected as not available on the architecture**, as the tool does off x86:
//!   `<ioport>`, `<io_address_space>`, and x86 `<irq pin=…>` / `<irq pcidev=…>`.
//! * **Stricter**: a channel between a PD and itself; a zero-sized memory region; a
//!   `virtual_machine` priority above 254 (the tool truncates it); child-PD ids above 61 (the
//!   tool does not range-check them); IRQ numbers above the platform's `MAX_IRQ`; a
//!   physical range that wraps around 2^64.
//! * **More lenient**: every numeric attribute accepts the tool's number syntax (decimal,
//!   `0x` hex, `_` separators); the tool panics on non-decimal `id`/`irq` values.
//! * A `<vcpu setvar_id>` is read from the `<vcpu>` element (the tool reads the VM's).
//!
//! # Rules checked
//!
//! Structure: root `<system>`; only known elements and attributes; required attributes
//! present; no stray text; exactly one `<program_image>` per PD; at most one
//! `<virtual_machine>` per PD, none at top level, each with at least one `<vcpu>`; every
//! `<channel>` has exactly two `<end>`s.
//!
//! Values: integers as above; booleans exactly `true`/`false`; priority 0..=254 (PD and VM);
//! `budget <= period` (default budget 1000 µs, period = budget); `stack_size` in
//! 0x1000..=16 MiB and page-aligned; `cpu` below [`Config::num_cores`]; channel-end, irq,
//! child-PD and vCPU ids 0..=61; `irq` at most [`Config::max_irq`]; `trigger` `level`|`edge`;
//! `perms` a combination of `r`, `w`, `x` but never `w` alone (`wx`/`rwx` are accepted, as by
//! the tool); `page_size` one of [`Arch::page_sizes`]; region `size` a non-zero multiple of
//! its page size; `phys_addr` page-aligned.
//!
//! Cross-references: unique PD names (at any depth, `monitor` reserved), at most 63 PDs,
//! unique memory-region and VM names; at least one PD; per PD, irq ids and channel-end ids
//! share one id space and child-PD ids and vCPU ids share another (Microkit badges: channels
//! and IRQs are notification bits, children and vCPUs are fault badges, so a benchmark PD may
//! have child 0 *and* channel 0); an IRQ number goes to one PD only; channel ends name
//! existing, distinct PDs; `pp` on at most one end and only towards a strictly higher
//! priority; every map names an existing region, is aligned to that region's page size,
//! does not overlap another map in the same address space, and ends below the user address
//! top — for a PD also below its stack, guard page and IPC buffer (`Config::pd_stack_bottom`);
//! setvar symbols are unique per PD across all their sources; `setvar_vaddr`/`setvar_size`
//! /`setvar_prefill_size` are not allowed on VM maps; `<setvar region_paddr>` names an existing
//! region; `setvar_prefill_size` needs a prefilled region; regions with `phys_addr` do not
//! overlap.
//!
//! Coherence (a netvm rule, the tool has none): a region mapped by a virtual machine and by a
//! PD is mapped with the same `cached` by both, unless [`Config::allow_mixed_cacheability`].
//!
//! Not checked here, because it needs the ELF files: overlap of maps with the program image's
//! segments, and whether setvar symbols exist in the image.
//!
//! # sDDF network configs
//!
//! [`net`] derives the sDDF 0.7 `.net_*_config` / `.device_resources` blobs of a network system
//! from a validated description (byte-identical to sdfgen's), and maps sdfgen's own `.data`
//! files to their PDs and sections.

#![forbid(unsafe_code)]

mod config;
mod error;
mod model;
pub mod net;
mod parse;
mod query;
mod section;
mod validate;

use std::path::Path;
use std::sync::Arc;

pub use config::{Arch, Config};
pub use error::SdfError;
pub use model::{
    Channel, End, Irq, Map, MemoryRegion, Perms, ProgramImage, ProtectionDomain, SetVar,
    SetVarKind, SourcePos, SystemDescription, Trigger, Vcpu, VirtualMachine,
};
pub use parse::parse_number;
pub use query::{EntryMasks, PdChannel, Pds};
pub use section::Section;

/// Reads and validates the SDF at `path` for the default target of `arch`
/// ([`Config::for_arch`]). Errors name `path` as given.
pub fn parse(path: impl AsRef<Path>, arch: Arch) -> Result<SystemDescription, SdfError> {
    parse_with_config(path, &Config::for_arch(arch))
}

/// Reads and validates the SDF at `path` for `config`.
pub fn parse_with_config(
    path: impl AsRef<Path>,
    config: &Config,
) -> Result<SystemDescription, SdfError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| SdfError::Io {
        at: SourcePos {
            file: Arc::from(path),
            line: 1,
            col: 1,
        },
        source,
    })?;
    parse_str_with_config(&text, path, config)
}

/// Validates SDF `text`; `file_name` is only used in positions.
pub fn parse_str(
    text: &str,
    file_name: impl AsRef<Path>,
    arch: Arch,
) -> Result<SystemDescription, SdfError> {
    parse_str_with_config(text, file_name, &Config::for_arch(arch))
}

/// Validates SDF `text` for `config`; `file_name` is only used in positions.
pub fn parse_str_with_config(
    text: &str,
    file_name: impl AsRef<Path>,
    config: &Config,
) -> Result<SystemDescription, SdfError> {
    let file: Arc<Path> = Arc::from(file_name.as_ref());
    let mut sys = parse::parse_document(text, file, config)?;
    validate::validate(&mut sys, config)?;
    Ok(sys)
}
