//! Patching setvars and config sections into the running PD's own image.
//!
//! The Microkit tool writes setvars into a PD's ELF by symbol name and sDDF's tooling writes
//! config structs into named sections. On the host the PD does the same to itself before `init`:
//! it reads its executable's `.symtab` and section headers from `/proc/self/exe`, relocates the
//! link-time addresses by the load bias of the (position-independent) executable, and writes.

use std::string::{String, ToString};
use std::vec::Vec;

use object::elf::{SHF_ALLOC, SHF_WRITE};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionIndex};

use super::manifest::{SectionData, SetVarValue};
use super::sys;

/// Errors patching the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The executable cannot be read or parsed.
    #[error("cannot read own executable /proc/self/exe: {0}")]
    Read(String),
    /// The setvar symbol is absent (stripped binary, or the PD has no such `setvar!`).
    #[error("could not patch symbol '{0}': no such symbol in the executable")]
    NoSymbol(String),
    /// The setvar symbol is not a writable 8-byte object.
    #[error("could not patch symbol '{0}': it must be a writable 8-byte static (use setvar!)")]
    BadSymbol(String),
    /// The config section is absent.
    #[error("could not patch section '{0}': no such section in the executable")]
    NoSection(String),
    /// The config section is too small or not writable.
    #[error("could not patch section '{name}': {len} bytes do not fit its {size} writable bytes")]
    BadSection {
        /// Section name.
        name: String,
        /// Bytes to write.
        len: usize,
        /// Section size (0 if not writable).
        size: u64,
    },
}

fn writable(flags: SectionFlags) -> bool {
    matches!(flags, SectionFlags::Elf { sh_flags }
        if sh_flags & u64::from(SHF_ALLOC | SHF_WRITE) == u64::from(SHF_ALLOC | SHF_WRITE))
}

/// Writes every setvar and section into this process's image.
pub(crate) fn patch(setvars: &[SetVarValue], sections: &[SectionData]) -> Result<(), ImageError> {
    if setvars.is_empty() && sections.is_empty() {
        return Ok(());
    }
    let data = std::fs::read("/proc/self/exe").map_err(|e| ImageError::Read(e.to_string()))?;
    let file = object::File::parse(&*data).map_err(|e| ImageError::Read(e.to_string()))?;
    let symbol_address = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| (s.address(), s.size(), s.section_index()))
    };
    let (anchor, _, _) = symbol_address("__microkit_host_anchor")
        .ok_or_else(|| ImageError::Read("no symbol __microkit_host_anchor (stripped?)".into()))?;
    let bias = sys::anchor_address().wrapping_sub(anchor);
    let section_writable = |index: Option<SectionIndex>| {
        index
            .and_then(|i| file.section_by_index(i).ok())
            .is_some_and(|s| writable(s.flags()))
    };

    let mut writes: Vec<(u64, &[u8])> = Vec::new();
    let values: Vec<[u8; 8]> = setvars.iter().map(|s| s.value.to_ne_bytes()).collect();
    for (setvar, value) in setvars.iter().zip(&values) {
        let (addr, size, section) = symbol_address(&setvar.symbol)
            .ok_or_else(|| ImageError::NoSymbol(setvar.symbol.clone()))?;
        if size != 8 || !section_writable(section) {
            return Err(ImageError::BadSymbol(setvar.symbol.clone()));
        }
        writes.push((addr.wrapping_add(bias), value));
    }
    for data in sections {
        let section = file
            .section_by_name(&data.name)
            .ok_or_else(|| ImageError::NoSection(data.name.clone()))?;
        let size = if writable(section.flags()) {
            section.size()
        } else {
            0
        };
        if data.bytes.len() as u64 > size {
            return Err(ImageError::BadSection {
                name: data.name.clone(),
                len: data.bytes.len(),
                size,
            });
        }
        writes.push((section.address().wrapping_add(bias), &data.bytes));
    }
    for (addr, bytes) in writes {
        write(addr, bytes);
    }
    Ok(())
}

#[allow(unsafe_code)]
fn write(addr: u64, bytes: &[u8]) {
    // SAFETY: `addr` is the relocated address of a symbol of exactly 8 bytes or of a section at
    // least `bytes.len()` long, both in an allocated, writable section of this executable (checked
    // in `patch`), so the range lies in the loaded RW image. Such symbols/sections hold `SetVar` /
    // `ConfigSection` statics (interior-mutable, only read volatilely), and `patch` runs in
    // `host::run` before the handler exists, on the only thread of the PD.
    unsafe { sys::write_image(addr, bytes) }
}
