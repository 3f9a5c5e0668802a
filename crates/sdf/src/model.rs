//! The typed, validated system description.
//!
//! Every value here has passed the checks described in the crate docs; defaults the SDF leaves
//! implicit (`priority` 0, `budget` 1000 µs, `perms` `rw`, ...) are filled in, so consumers never
//! re-apply Microkit's defaults. Every element carries the [`SourcePos`] it came from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where an element or attribute starts in its SDF file (1-based line and column, columns
/// counted in characters). Displays as `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourcePos {
    /// The SDF file, as named by the caller of `parse`/`parse_str`.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// A whole `<system>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDescription {
    /// Position of the `<system>` element.
    pub pos: SourcePos,
    /// Top-level protection domains in document order; child PDs are nested in
    /// [`ProtectionDomain::children`].
    pub protection_domains: Vec<ProtectionDomain>,
    /// Memory regions in document order.
    pub memory_regions: Vec<MemoryRegion>,
    /// Channels in document order.
    pub channels: Vec<Channel>,
}

/// A `<protection_domain>`, top-level or child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionDomain {
    /// Unique name across the system.
    pub name: String,
    /// Child PDs only: the id under which the parent sees this child (0..=61).
    pub id: Option<u8>,
    /// Child PDs only: parent symbol patched with [`ProtectionDomain::id`].
    pub setvar_id: Option<String>,
    /// Scheduling priority, 0..=254 (255 is the monitor).
    pub priority: u8,
    /// Scheduling-context budget in µs (default 1000).
    pub budget: u64,
    /// Scheduling-context period in µs (default = budget); `budget <= period`.
    pub period: u64,
    /// Whether the PD gives its scheduling context back after `init`.
    pub passive: bool,
    /// Stack size in bytes, page-aligned, 0x1000..=16 MiB (default 0x2000).
    pub stack_size: u64,
    /// CPU core the PD runs on (default 0).
    pub cpu: u8,
    /// Whether the PD gets the ARM SMC capability.
    pub smc: bool,
    /// Whether FP/SIMD is enabled (default true).
    pub fpu: bool,
    /// The ELF to load.
    pub program_image: ProgramImage,
    /// `<map>`s into this PD's address space, document order.
    pub maps: Vec<Map>,
    /// `<irq>`s delivered to this PD, document order.
    pub irqs: Vec<Irq>,
    /// Every symbol patched in this PD's image, in the order Microkit collects them: the PD's
    /// own elements in document order (maps, irqs, `<setvar>`, child PDs, vCPUs), then channel
    /// ends in channel order.
    pub setvars: Vec<SetVar>,
    /// Child PDs, document order.
    pub children: Vec<ProtectionDomain>,
    /// The virtual machine this PD manages, if any (at most one).
    pub virtual_machine: Option<VirtualMachine>,
    /// Position of the `<protection_domain>` element.
    pub pos: SourcePos,
}

/// `<program_image>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramImage {
    /// ELF that is loaded (resolved by the caller against its search path).
    pub path: PathBuf,
    /// ELF to read symbols from instead of `path`, if given.
    pub path_for_symbols: Option<PathBuf>,
    /// Position of the element.
    pub pos: SourcePos,
}

/// Access rights of a mapping. Never write-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perms {
    /// `r`
    pub read: bool,
    /// `w`
    pub write: bool,
    /// `x`
    pub execute: bool,
}

impl Perms {
    /// The default when `perms` is absent.
    pub const READ_WRITE: Perms = Perms {
        read: true,
        write: true,
        execute: false,
    };
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, c) in [(self.read, 'r'), (self.write, 'w'), (self.execute, 'x')] {
            if set {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A `<map>` of a memory region into a PD or VM address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// Name of the mapped [`MemoryRegion`] (checked to exist).
    pub mr: String,
    /// Virtual (PD) or guest-physical (VM) address; aligned to the region's page size.
    pub vaddr: u64,
    /// Access rights (default `rw`).
    pub perms: Perms,
    /// Cacheable mapping (default true).
    pub cached: bool,
    /// PD maps only: symbol patched with `vaddr`.
    pub setvar_vaddr: Option<String>,
    /// PD maps only: symbol patched with the region size.
    pub setvar_size: Option<String>,
    /// PD maps only: symbol patched with the size of the region's prefill file.
    pub setvar_prefill_size: Option<String>,
    /// Position of the element.
    pub pos: SourcePos,
}

/// IRQ trigger mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Level triggered (the default).
    Level,
    /// Edge triggered.
    Edge,
}

/// An `<irq>` (ARM form: `irq`, `id`, `trigger`, `setvar_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    /// Hardware interrupt number (GIC INTID), unique in the system.
    pub irq: u64,
    /// Channel id the IRQ is delivered on (0..=61; shares the PD's channel-id space).
    pub id: u8,
    /// Trigger mode.
    pub trigger: Trigger,
    /// Symbol patched with `id`.
    pub setvar_id: Option<String>,
    /// Position of the element.
    pub pos: SourcePos,
}

/// What a patched symbol receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetVarKind {
    /// `setvar_vaddr`: the address a region is mapped at.
    Vaddr(u64),
    /// `setvar_size`: the size of the named region.
    Size {
        /// Region name.
        mr: String,
    },
    /// `setvar_prefill_size`: the size of the named region's prefill file.
    PrefillSize {
        /// Region name.
        mr: String,
    },
    /// `<setvar region_paddr>`: the physical address of the named region (allocated by the
    /// tool when the region has no `phys_addr`).
    RegionPaddr {
        /// Region name.
        mr: String,
    },
    /// `setvar_id` on an irq, channel end, child PD or vCPU: that id.
    Id(u8),
}

/// One symbol patched into a PD's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVar {
    /// Symbol name (unique per PD).
    pub symbol: String,
    /// Value it receives.
    pub kind: SetVarKind,
    /// Position of the element that asked for it.
    pub pos: SourcePos,
}

/// A `<virtual_machine>` managed by a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMachine {
    /// Unique name across the system's VMs.
    pub name: String,
    /// vCPU scheduling priority, 0..=254.
    pub priority: u8,
    /// vCPU budget in µs (default 1000).
    pub budget: u64,
    /// vCPU period in µs (default = budget).
    pub period: u64,
    /// At least one vCPU; ids unique and distinct from the parent's child-PD ids.
    pub vcpus: Vec<Vcpu>,
    /// Guest-physical maps.
    pub maps: Vec<Map>,
    /// Position of the element.
    pub pos: SourcePos,
}

/// A `<vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcpu {
    /// vCPU id, 0..=61.
    pub id: u8,
    /// CPU core, if given.
    pub cpu: Option<u8>,
    /// Symbol in the managing PD patched with `id`.
    pub setvar_id: Option<String>,
    /// Position of the element.
    pub pos: SourcePos,
}

/// A `<memory_region>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Unique name.
    pub name: String,
    /// Size in bytes: non-zero, a multiple of `page_size`.
    pub size: u64,
    /// Page size (one of [`crate::Arch::page_sizes`]); the smallest unless given. Microkit
    /// silently upgrades an unspecified page size when every mapping is aligned for a larger
    /// one; that changes no validity decision and is left to whoever builds the image.
    pub page_size: u64,
    /// Physical address, aligned to `page_size`, if fixed by the SDF.
    pub phys_addr: Option<u64>,
    /// File whose bytes pre-fill the region, if any (unresolved path).
    pub prefill_path: Option<PathBuf>,
    /// Position of the element.
    pub pos: SourcePos,
}

/// A `<channel>` between two distinct PDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The two `<end>`s in document order.
    pub ends: [End; 2],
    /// Position of the element.
    pub pos: SourcePos,
}

/// One `<end>` of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Name of the PD at this end (checked to exist).
    pub pd: String,
    /// This PD's local id for the channel (0..=61).
    pub id: u8,
    /// This end may PPC into the other (which has strictly higher priority).
    pub pp: bool,
    /// This end may notify the other (default true).
    pub notify: bool,
    /// Symbol in this PD patched with `id`.
    pub setvar_id: Option<String>,
    /// Position of the element.
    pub pos: SourcePos,
}
