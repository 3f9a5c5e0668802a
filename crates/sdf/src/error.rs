//! The one error type of this crate.
//!
//! Every variant carries the [`SourcePos`] of the offending element or attribute and displays as
//! `file:line:col: <what is wrong>`. The doc comment of each variant is its message. Errors that
//! concern a whole file (it cannot be read, it is not XML) point at `file:1:1` or at the
//! position the XML parser reports.

use crate::model::SourcePos;

/// Why a system description was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdfError {
    /// cannot read system description: {source}
    #[error("{at}: cannot read system description: {source}")]
    Io {
        /// The file, at 1:1.
        at: SourcePos,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// malformed XML: {message}
    #[error("{at}: malformed XML: {message}")]
    Xml {
        /// Where the XML parser stopped.
        at: SourcePos,
        /// The XML parser's message.
        message: String,
    },
    /// root element must be 'system', found '{found}'
    #[error("{at}: root element must be 'system', found '{found}'")]
    NotASystem {
        /// The root element.
        at: SourcePos,
        /// Its name.
        found: String,
    },
    /// unexpected text in element '{element}'
    #[error("{at}: unexpected text in element '{element}'")]
    UnexpectedText {
        /// The text.
        at: SourcePos,
        /// The element containing it.
        element: String,
    },
    /// invalid element '{element}' in '{parent}'
    #[error("{at}: invalid element '{element}' in '{parent}'")]
    UnknownElement {
        /// The element.
        at: SourcePos,
        /// Its name.
        element: String,
        /// Its parent's name.
        parent: String,
    },
    /// {what} is not supported by netvm: {reason}
    #[error("{at}: {what} is not supported by netvm: {reason}")]
    NotSupported {
        /// The element or attribute.
        at: SourcePos,
        /// What it is.
        what: String,
        /// Why netvm does not take it.
        reason: &'static str,
    },
    /// {what} is not available on {arch}
    #[error("{at}: {what} is not available on {arch}")]
    WrongArch {
        /// The element or attribute.
        at: SourcePos,
        /// What it is.
        what: String,
        /// The target architecture.
        arch: &'static str,
    },
    /// invalid attribute '{attribute}' on element '{element}'
    #[error("{at}: invalid attribute '{attribute}' on element '{element}'")]
    UnknownAttribute {
        /// The attribute.
        at: SourcePos,
        /// Element name.
        element: String,
        /// Attribute name.
        attribute: String,
    },
    /// '{attribute}' is not allowed on a virtual_machine map: a VM has no program image to patch
    #[error(
        "{at}: '{attribute}' is not allowed on a virtual_machine map: a VM has no program image to patch"
    )]
    SetvarOnVmMap {
        /// The attribute.
        at: SourcePos,
        /// Attribute name.
        attribute: String,
    },
    /// missing required attribute '{attribute}' on element '{element}'
    #[error("{at}: missing required attribute '{attribute}' on element '{element}'")]
    MissingAttribute {
        /// The element.
        at: SourcePos,
        /// Element name.
        element: String,
        /// Attribute name.
        attribute: &'static str,
    },
    /// failed to parse integer '{value}' in attribute '{attribute}' on element '{element}'
    #[error(
        "{at}: failed to parse integer '{value}' in attribute '{attribute}' on element '{element}'"
    )]
    BadInteger {
        /// The attribute.
        at: SourcePos,
        /// Element name.
        element: String,
        /// Attribute name.
        attribute: &'static str,
        /// The text that is not a number.
        value: String,
    },
    /// {attribute} must be 'true' or 'false', found '{value}' on element '{element}'
    #[error("{at}: {attribute} must be 'true' or 'false', found '{value}' on element '{element}'")]
    BadBool {
        /// The attribute.
        at: SourcePos,
        /// Element name.
        element: String,
        /// Attribute name.
        attribute: &'static str,
        /// The text that is not a boolean.
        value: String,
    },
    /// perms '{value}' must only be a combination of 'r', 'w', and 'x'
    #[error("{at}: perms '{value}' must only be a combination of 'r', 'w', and 'x'")]
    BadPerms {
        /// The attribute.
        at: SourcePos,
        /// Its value.
        value: String,
    },
    /// perms must not be 'w', write-only mappings are not allowed
    #[error("{at}: perms must not be 'w', write-only mappings are not allowed")]
    WriteOnly {
        /// The attribute.
        at: SourcePos,
    },
    /// trigger must be either 'level' or 'edge', found '{value}'
    #[error("{at}: trigger must be either 'level' or 'edge', found '{value}'")]
    BadTrigger {
        /// The attribute.
        at: SourcePos,
        /// Its value.
        value: String,
    },
    /// {what} id {id} out of range 0..61
    #[error("{at}: {what} id {id} out of range 0..61")]
    IdOutOfRange {
        /// The attribute.
        at: SourcePos,
        /// "channel end", "irq", "child protection_domain" or "vcpu".
        what: &'static str,
        /// The id given.
        id: u64,
    },
    /// priority {priority} of {element} '{name}' out of range 0..254
    #[error("{at}: priority {priority} of {element} '{name}' out of range 0..254")]
    PriorityOutOfRange {
        /// The attribute.
        at: SourcePos,
        /// "protection_domain" or "virtual_machine".
        element: &'static str,
        /// Its name.
        name: String,
        /// The priority given.
        priority: u64,
    },
    /// budget ({budget}) of {element} '{name}' must be less than, or equal to, period ({period})
    #[error(
        "{at}: budget ({budget}) of {element} '{name}' must be less than, or equal to, period ({period})"
    )]
    BudgetExceedsPeriod {
        /// The element.
        at: SourcePos,
        /// "protection_domain" or "virtual_machine".
        element: &'static str,
        /// Its name.
        name: String,
        /// Budget in µs.
        budget: u64,
        /// Period in µs.
        period: u64,
    },
    /// stack_size {stack_size:#x} of protection domain '{pd}' out of range 0x1000..0x1000000
    #[error(
        "{at}: stack_size {stack_size:#x} of protection domain '{pd}' out of range 0x1000..0x1000000"
    )]
    StackSizeOutOfRange {
        /// The attribute.
        at: SourcePos,
        /// PD name.
        pd: String,
        /// The size given.
        stack_size: u64,
    },
    /// stack_size {stack_size:#x} of protection domain '{pd}' is not a multiple of the page size {page_size:#x}
    #[error(
        "{at}: stack_size {stack_size:#x} of protection domain '{pd}' is not a multiple of the page size {page_size:#x}"
    )]
    StackSizeUnaligned {
        /// The attribute.
        at: SourcePos,
        /// PD name.
        pd: String,
        /// The size given.
        stack_size: u64,
        /// Smallest page size.
        page_size: u64,
    },
    /// cpu {cpu} out of range: the target has {num_cores} cores
    #[error("{at}: cpu {cpu} out of range: the target has {num_cores} cores")]
    CpuOutOfRange {
        /// The attribute.
        at: SourcePos,
        /// The core given.
        cpu: u64,
        /// Cores of the target.
        num_cores: u8,
    },
    /// irq {irq} out of range 0..{max}
    #[error("{at}: irq {irq} out of range 0..{max}")]
    IrqOutOfRange {
        /// The attribute.
        at: SourcePos,
        /// The IRQ number given.
        irq: u64,
        /// The platform's highest IRQ.
        max: u64,
    },
    /// missing 'program_image' element on protection_domain '{pd}'
    #[error("{at}: missing 'program_image' element on protection_domain '{pd}'")]
    MissingProgramImage {
        /// The PD element.
        at: SourcePos,
        /// PD name.
        pd: String,
    },
    /// program_image must only be specified once in protection_domain '{pd}'
    #[error("{at}: program_image must only be specified once in protection_domain '{pd}'")]
    DuplicateProgramImage {
        /// The second program_image.
        at: SourcePos,
        /// PD name.
        pd: String,
    },
    /// virtual_machine must only be specified once in protection_domain '{pd}'
    #[error("{at}: virtual_machine must only be specified once in protection_domain '{pd}'")]
    DuplicateVirtualMachine {
        /// The second virtual_machine.
        at: SourcePos,
        /// PD name.
        pd: String,
    },
    /// virtual_machine must be a child of a protection_domain
    #[error("{at}: virtual_machine must be a child of a protection_domain")]
    VirtualMachineAtTopLevel {
        /// The element.
        at: SourcePos,
    },
    /// missing 'vcpu' element on virtual_machine '{vm}'
    #[error("{at}: missing 'vcpu' element on virtual_machine '{vm}'")]
    MissingVcpu {
        /// The VM element.
        at: SourcePos,
        /// VM name.
        vm: String,
    },
    /// duplicate vcpu id {id} in virtual_machine '{vm}'
    #[error("{at}: duplicate vcpu id {id} in virtual_machine '{vm}'")]
    DuplicateVcpu {
        /// The second vcpu.
        at: SourcePos,
        /// VM name.
        vm: String,
        /// The id.
        id: u8,
    },
    /// setvar on symbol '{symbol}' already exists in protection domain '{pd}' (first at {first})
    #[error("{at}: setvar on symbol '{symbol}' already exists in protection domain '{pd}' (first at {first})")]
    DuplicateSetvar {
        /// The second setvar.
        at: SourcePos,
        /// PD name.
        pd: String,
        /// The symbol.
        symbol: String,
        /// The first setvar of that symbol.
        first: SourcePos,
    },
    /// at least one protection domain must be defined
    #[error("{at}: at least one protection domain must be defined")]
    NoProtectionDomains {
        /// The system element.
        at: SourcePos,
    },
    /// too many protection domains: at most {max} are allowed
    #[error("{at}: too many protection domains: at most {max} are allowed")]
    TooManyPds {
        /// The first PD over the limit.
        at: SourcePos,
        /// The limit.
        max: usize,
    },
    /// duplicate protection domain name '{name}' (first at {first})
    #[error("{at}: duplicate protection domain name '{name}' (first at {first})")]
    DuplicatePdName {
        /// The second PD.
        at: SourcePos,
        /// The name.
        name: String,
        /// The first PD.
        first: SourcePos,
    },
    /// the PD name 'monitor' is reserved for the Microkit monitor
    #[error("{at}: the PD name 'monitor' is reserved for the Microkit monitor")]
    ReservedPdName {
        /// The PD.
        at: SourcePos,
    },
    /// duplicate memory region name '{name}' (first at {first})
    #[error("{at}: duplicate memory region name '{name}' (first at {first})")]
    DuplicateMrName {
        /// The second region.
        at: SourcePos,
        /// The name.
        name: String,
        /// The first region.
        first: SourcePos,
    },
    /// duplicate virtual machine name '{name}' (first at {first})
    #[error("{at}: duplicate virtual machine name '{name}' (first at {first})")]
    DuplicateVmName {
        /// The second VM.
        at: SourcePos,
        /// The name.
        name: String,
        /// The first VM.
        first: SourcePos,
    },
    /// page size {page_size:#x} of memory region '{mr}' not supported on {arch}
    #[error("{at}: page size {page_size:#x} of memory region '{mr}' not supported on {arch}")]
    UnsupportedPageSize {
        /// The attribute.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// The size given.
        page_size: u64,
        /// Target architecture.
        arch: &'static str,
    },
    /// size {size:#x} of memory region '{mr}' is not a multiple of the page size {page_size:#x}
    #[error(
        "{at}: size {size:#x} of memory region '{mr}' is not a multiple of the page size {page_size:#x}"
    )]
    MrSizeNotMultiple {
        /// The attribute.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// The size given.
        size: u64,
        /// The region's page size.
        page_size: u64,
    },
    /// size of memory region '{mr}' must not be zero
    #[error("{at}: size of memory region '{mr}' must not be zero")]
    MrSizeZero {
        /// The attribute.
        at: SourcePos,
        /// Region name.
        mr: String,
    },
    /// phys_addr {phys_addr:#x} of memory region '{mr}' is not aligned to the page size {page_size:#x}
    #[error(
        "{at}: phys_addr {phys_addr:#x} of memory region '{mr}' is not aligned to the page size {page_size:#x}"
    )]
    PhysAddrUnaligned {
        /// The attribute.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// The address given.
        phys_addr: u64,
        /// The region's page size.
        page_size: u64,
    },
    /// physical address range of memory region '{mr}' wraps around the end of the address space
    #[error(
        "{at}: physical address range of memory region '{mr}' wraps around the end of the address space"
    )]
    PhysRangeOverflow {
        /// The region.
        at: SourcePos,
        /// Region name.
        mr: String,
    },
    /// memory region '{mr}' physical address range [{start:#x}..{end:#x}) overlaps with memory region '{other}' [{other_start:#x}..{other_end:#x})
    #[error(
        "{at}: memory region '{mr}' physical address range [{start:#x}..{end:#x}) overlaps with memory region '{other}' [{other_start:#x}..{other_end:#x})"
    )]
    PhysOverlap {
        /// The later region.
        at: SourcePos,
        /// Its name.
        mr: String,
        /// Its start.
        start: u64,
        /// Its end (exclusive).
        end: u64,
        /// The earlier region.
        other: String,
        /// Its start.
        other_start: u64,
        /// Its end (exclusive).
        other_end: u64,
    },
    /// invalid memory region name '{mr}' on '{element}'
    #[error("{at}: invalid memory region name '{mr}' on '{element}'")]
    UnknownMr {
        /// The attribute naming it.
        at: SourcePos,
        /// The name.
        mr: String,
        /// "map" or "setvar".
        element: &'static str,
    },
    /// 'setvar_prefill_size' used for memory region '{mr}' which has no prefill_path
    #[error("{at}: 'setvar_prefill_size' used for memory region '{mr}' which has no prefill_path")]
    PrefillSizeWithoutPrefill {
        /// The attribute.
        at: SourcePos,
        /// Region name.
        mr: String,
    },
    /// '{mr}' is mapped {pd_attr} by protection domain '{pd}' but not by virtual machine '{vm}': mismatched memory attributes lose coherence on Arm (one side's stores sit in a cache the other side bypasses); map it the same way everywhere (or set Config::allow_mixed_cacheability)
    #[error(
        "{at}: '{mr}' is mapped {pd_attr} by protection domain '{pd}' but {} by virtual machine '{vm}': mismatched memory attributes lose coherence on Arm (one side's stores sit in a cache the other side bypasses); map it the same way everywhere (or set Config::allow_mixed_cacheability)",
        if *pd_attr == "cached" { "uncached" } else { "cached" }
    )]
    MixedCacheability {
        /// The PD's map.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// The PD.
        pd: String,
        /// `cached` or `uncached`, as the PD maps it (the VM maps it the other way).
        pd_attr: &'static str,
        /// The virtual machine.
        vm: String,
    },
    /// vaddr {vaddr:#x} of map of '{mr}' is not aligned to the region's page size {page_size:#x}
    #[error(
        "{at}: vaddr {vaddr:#x} of map of '{mr}' is not aligned to the region's page size {page_size:#x}"
    )]
    MapUnaligned {
        /// The attribute.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// The address given.
        vaddr: u64,
        /// The region's page size.
        page_size: u64,
    },
    /// map of '{mr}' at {vaddr:#x} (size {size:#x}) exceeds the valid address space [0x0..{limit:#x}) of {space}
    #[error(
        "{at}: map of '{mr}' at {vaddr:#x} (size {size:#x}) exceeds the valid address space [0x0..{limit:#x}) of {space}"
    )]
    MapBeyondTop {
        /// The map.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// Start address.
        vaddr: u64,
        /// Region size.
        size: u64,
        /// First invalid address.
        limit: u64,
        /// "protection domain 'x'" or "virtual machine 'y'" (boxed to keep the error small).
        space: Box<str>,
    },
    /// map of '{mr}' [{start:#x}..{end:#x}) overlaps the stack, guard page and IPC buffer of protection domain '{pd}' at [{reserved_start:#x}..{reserved_end:#x})
    #[error(
        "{at}: map of '{mr}' [{start:#x}..{end:#x}) overlaps the stack, guard page and IPC buffer of protection domain '{pd}' at [{reserved_start:#x}..{reserved_end:#x})"
    )]
    MapOverlapsStack {
        /// The map.
        at: SourcePos,
        /// Region name.
        mr: String,
        /// Map start.
        start: u64,
        /// Map end (exclusive).
        end: u64,
        /// PD name.
        pd: String,
        /// Stack bottom.
        reserved_start: u64,
        /// End of the IPC buffer page.
        reserved_end: u64,
    },
    /// map of '{mr}' [{start:#x}..{end:#x}) overlaps with map of '{other}' [{other_start:#x}..{other_end:#x}) in {space}
    #[error(
        "{at}: map of '{mr}' [{start:#x}..{end:#x}) overlaps with map of '{other}' [{other_start:#x}..{other_end:#x}) in {space}"
    )]
    MapOverlap {
        /// The later map.
        at: SourcePos,
        /// Its region.
        mr: String,
        /// Its start.
        start: u64,
        /// Its end (exclusive).
        end: u64,
        /// The earlier map's region.
        other: String,
        /// Its start.
        other_start: u64,
        /// Its end (exclusive).
        other_end: u64,
        /// "protection domain 'x'" or "virtual machine 'y'" (boxed to keep the error small).
        space: Box<str>,
    },
    /// exactly two end elements must be specified, found {count}
    #[error("{at}: exactly two end elements must be specified, found {count}")]
    ChannelEndCount {
        /// The channel.
        at: SourcePos,
        /// Ends found.
        count: usize,
    },
    /// invalid PD name '{pd}' in channel end
    #[error("{at}: invalid PD name '{pd}' in channel end")]
    ChannelUnknownPd {
        /// The end's `pd` attribute.
        at: SourcePos,
        /// The name.
        pd: String,
    },
    /// both ends of the channel are protection domain '{pd}'
    #[error("{at}: both ends of the channel are protection domain '{pd}'")]
    ChannelSamePd {
        /// The channel.
        at: SourcePos,
        /// PD name.
        pd: String,
    },
    /// cannot ppc bidirectionally: at most one end may have pp="true"
    #[error("{at}: cannot ppc bidirectionally: at most one end may have pp=\"true\"")]
    PpBothEnds {
        /// The channel.
        at: SourcePos,
    },
    /// PPCs must be to protection domains of strictly higher priorities; channel with PPC from pd {from} (priority: {from_priority}) to pd {to} (priority: {to_priority})
    #[error(
        "{at}: PPCs must be to protection domains of strictly higher priorities; channel with PPC from pd {from} (priority: {from_priority}) to pd {to} (priority: {to_priority})"
    )]
    PpPriority {
        /// The calling end.
        at: SourcePos,
        /// Caller.
        from: String,
        /// Caller priority.
        from_priority: u8,
        /// Callee.
        to: String,
        /// Callee priority.
        to_priority: u8,
    },
    /// duplicate channel id {id} in protection domain '{pd}' (irqs and channel ends share ids; first used at {first})
    #[error(
        "{at}: duplicate channel id {id} in protection domain '{pd}' (irqs and channel ends share ids; first used at {first})"
    )]
    DuplicateChannelId {
        /// The second use.
        at: SourcePos,
        /// PD name.
        pd: String,
        /// The id.
        id: u8,
        /// The first use.
        first: SourcePos,
    },
    /// duplicate child id {id} in protection domain '{pd}' (child protection domains and vcpus share ids; first used at {first})
    #[error(
        "{at}: duplicate child id {id} in protection domain '{pd}' (child protection domains and vcpus share ids; first used at {first})"
    )]
    DuplicateChildId {
        /// The second use.
        at: SourcePos,
        /// PD name.
        pd: String,
        /// The id.
        id: u8,
        /// The first use.
        first: SourcePos,
    },
    /// duplicate irq {irq} in protection domain '{pd}' (already delivered to protection domain '{first_pd}' at {first})
    #[error(
        "{at}: duplicate irq {irq} in protection domain '{pd}' (already delivered to protection domain '{first_pd}' at {first})"
    )]
    DuplicateIrq {
        /// The second irq.
        at: SourcePos,
        /// IRQ number.
        irq: u64,
        /// Its PD.
        pd: String,
        /// PD of the first.
        first_pd: String,
        /// The first irq.
        first: SourcePos,
    },
}

impl SdfError {
    /// Where the problem is.
    pub fn pos(&self) -> &SourcePos {
        match self {
            SdfError::Io { at, .. }
            | SdfError::Xml { at, .. }
            | SdfError::NotASystem { at, .. }
            | SdfError::UnexpectedText { at, .. }
            | SdfError::UnknownElement { at, .. }
            | SdfError::NotSupported { at, .. }
            | SdfError::WrongArch { at, .. }
            | SdfError::UnknownAttribute { at, .. }
            | SdfError::SetvarOnVmMap { at, .. }
            | SdfError::MissingAttribute { at, .. }
            | SdfError::BadInteger { at, .. }
            | SdfError::BadBool { at, .. }
            | SdfError::BadPerms { at, .. }
            | SdfError::WriteOnly { at }
            | SdfError::BadTrigger { at, .. }
            | SdfError::IdOutOfRange { at, .. }
            | SdfError::PriorityOutOfRange { at, .. }
            | SdfError::BudgetExceedsPeriod { at, .. }
            | SdfError::StackSizeOutOfRange { at, .. }
            | SdfError::StackSizeUnaligned { at, .. }
            | SdfError::CpuOutOfRange { at, .. }
            | SdfError::IrqOutOfRange { at, .. }
            | SdfError::MissingProgramImage { at, .. }
            | SdfError::DuplicateProgramImage { at, .. }
            | SdfError::DuplicateVirtualMachine { at, .. }
            | SdfError::VirtualMachineAtTopLevel { at }
            | SdfError::MissingVcpu { at, .. }
            | SdfError::DuplicateVcpu { at, .. }
            | SdfError::DuplicateSetvar { at, .. }
            | SdfError::NoProtectionDomains { at }
            | SdfError::TooManyPds { at, .. }
            | SdfError::DuplicatePdName { at, .. }
            | SdfError::ReservedPdName { at }
            | SdfError::DuplicateMrName { at, .. }
            | SdfError::DuplicateVmName { at, .. }
            | SdfError::UnsupportedPageSize { at, .. }
            | SdfError::MrSizeNotMultiple { at, .. }
            | SdfError::MrSizeZero { at, .. }
            | SdfError::PhysAddrUnaligned { at, .. }
            | SdfError::PhysRangeOverflow { at, .. }
            | SdfError::PhysOverlap { at, .. }
            | SdfError::UnknownMr { at, .. }
            | SdfError::PrefillSizeWithoutPrefill { at, .. }
            | SdfError::MapUnaligned { at, .. }
            | SdfError::MixedCacheability { at, .. }
            | SdfError::MapBeyondTop { at, .. }
            | SdfError::MapOverlapsStack { at, .. }
            | SdfError::MapOverlap { at, .. }
            | SdfError::ChannelEndCount { at, .. }
            | SdfError::ChannelUnknownPd { at, .. }
            | SdfError::ChannelSamePd { at, .. }
            | SdfError::PpBothEnds { at }
            | SdfError::PpPriority { at, .. }
            | SdfError::DuplicateChannelId { at, .. }
            | SdfError::DuplicateChildId { at, .. }
            | SdfError::DuplicateIrq { at, .. } => at,
        }
    }
}
