//! Checks a PD's seL4 ELF against what the Microkit 2.3.0 tool needs (microkit-abi.md §4.3–4.5):
//! a static non-PIE little-endian executable entered at `_start` = 0x200000, PT_LOAD segments
//! that never share a 4 KiB page, the six `microkit_*` symbols with their sizes, word-sized
//! setvars, and each config section of the expected size inside the file image of a writable
//! segment (so the tool's patched bytes are loaded). Host tool code, for tests and CI.
use std::format;
use std::path::Path;
use std::string::String;
use std::vec::Vec;

use object::elf::{ET_EXEC, PF_W, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

const PAGE: u64 = 0x1000;
/// Where Microkit PD images start.
pub const IMAGE_BASE: u64 = 0x20_0000;

/// The symbols the tool patches into every PD, with their sizes.
pub const PATCHED_SYMBOLS: [(&str, u64); 6] = [
    ("microkit_name", 64),
    ("microkit_passive", 1),
    ("microkit_irqs", 8),
    ("microkit_notifications", 8),
    ("microkit_pps", 8),
    ("microkit_ioports", 8),
];

/// Checks the ELF at `path`; the error names the file and the first rule it breaks.
pub fn check_pd_image(
    path: &Path,
    setvars: &[&str],
    sections: &[(&str, u64)],
) -> Result<(), String> {
    let name = path.display();
    let data = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let elf = ElfFile64::<Endianness>::parse(&*data)
        .map_err(|e| format!("{name}: not a 64-bit ELF: {e}"))?;
    let endian = elf.endian();
    if elf.elf_header().e_type(endian) != ET_EXEC {
        return Err(format!(
            "{name}: must be a static non-PIE executable (ET_EXEC)"
        ));
    }
    if !elf.is_little_endian() {
        return Err(format!("{name}: must be little-endian"));
    }
    let symbol = |sym: &str| {
        elf.symbols()
            .find(|s| s.name() == Ok(sym))
            .ok_or_else(|| format!("{name}: no symbol {sym}"))
    };
    if elf.entry() != IMAGE_BASE || symbol("_start")?.address() != elf.entry() {
        return Err(format!(
            "{name}: entry {:#x} must be _start at {IMAGE_BASE:#x}",
            elf.entry()
        ));
    }
    for (sym, size) in PATCHED_SYMBOLS {
        let found = symbol(sym)?.size();
        if found != size {
            return Err(format!(
                "{name}: {sym} is {found} bytes, the tool writes {size}"
            ));
        }
    }
    for sym in setvars {
        if symbol(sym)?.size() != 8 {
            return Err(format!("{name}: setvar {sym} must be word-sized (8 bytes)"));
        }
    }
    let mut pages: Vec<(u64, u64)> = elf
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| {
            let start = ph.p_vaddr(endian);
            (start / PAGE, (start + ph.p_memsz(endian)).div_ceil(PAGE))
        })
        .collect();
    pages.sort();
    if pages.first().map(|p| p.0 * PAGE) != Some(IMAGE_BASE) {
        return Err(format!("{name}: image must start at {IMAGE_BASE:#x}"));
    }
    if let Some(pair) = pages.windows(2).find(|p| p[0].1 > p[1].0) {
        return Err(format!("{name}: PT_LOAD segments share a page: {pair:x?}"));
    }
    for (section_name, size) in sections {
        let section = elf
            .section_by_name(section_name)
            .ok_or_else(|| format!("{name}: no section {section_name}"))?;
        if section.size() != *size {
            return Err(format!(
                "{name}: {section_name} is {} bytes, expected {size}",
                section.size()
            ));
        }
        let (start, end) = (section.address(), section.address() + size);
        let loaded = elf.elf_program_headers().iter().any(|ph| {
            let seg = ph.p_vaddr(endian);
            ph.p_type(endian) == PT_LOAD
                && ph.p_flags(endian) & PF_W != 0
                && seg <= start
                && end <= seg + ph.p_filesz(endian)
        });
        if !loaded {
            return Err(format!(
                "{name}: {section_name} is not in the file image of a RW segment"
            ));
        }
    }
    Ok(())
}
