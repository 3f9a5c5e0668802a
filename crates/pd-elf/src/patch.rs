//! Overwriting the contents of a named section in an ELF64 little-endian file, in place — what
//! `objcopy --update-section` does for config sections, restricted to the safe case: the
//! section exists, has file contents, and the new bytes are exactly its size (so no segment,
//! symbol or offset moves), or that size less the padding to 8 bytes that a Rust PD's 8-byte
//! aligned config section has after a C struct of another size (sDDF's 6-byte
//! `timer_client_config_t`); the padding is zeroed. The section headers are read with `object`;
//! the write is the one slice copy below.

use object::elf::SHT_NOBITS;
use object::read::elf::{ElfFile64, SectionHeader};
use object::{Endianness, Object, ObjectSection};

/// Why a section cannot be patched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The file is no ELF64 file `object` can read.
    #[error("not a readable ELF64 file: {0}")]
    Malformed(String),
    /// No section of that name.
    #[error("no section {0} (does this PD read that config?)")]
    NoSection(String),
    /// The section occupies no bytes of the file.
    #[error("section {0} has no file contents (NOBITS)")]
    NoBits(String),
    /// The config is not the section's size (nor that size less its padding to 8 bytes).
    #[error("section {name} is {size} bytes, the config is {len} bytes")]
    Size {
        /// The section.
        name: String,
        /// Its size.
        size: u64,
        /// The config's size.
        len: usize,
    },
}

/// Writes `bytes` over section `name` of the ELF file `elf`.
pub fn patch_section(elf: &mut [u8], name: &str, bytes: &[u8]) -> Result<(), PatchError> {
    let malformed = |e: object::Error| PatchError::Malformed(e.to_string());
    let (offset, size) = {
        let file = ElfFile64::<Endianness>::parse(&*elf).map_err(malformed)?;
        let section = file
            .section_by_name(name)
            .ok_or_else(|| PatchError::NoSection(name.to_owned()))?;
        if section.elf_section_header().sh_type(file.endian()) == SHT_NOBITS {
            return Err(PatchError::NoBits(name.to_owned()));
        }
        let size = section.size();
        let (offset, _) = section
            .file_range()
            .ok_or_else(|| PatchError::NoBits(name.to_owned()))?;
        (offset, size)
    };
    let len = bytes.len() as u64;
    if size != len && size != len.next_multiple_of(8) {
        return Err(PatchError::Size {
            name: name.to_owned(),
            size,
            len: bytes.len(),
        });
    }
    let dst = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(start, size)| elf.get_mut(start..start.checked_add(size)?))
        .ok_or_else(|| PatchError::Malformed(format!("section {name} lies beyond the file")))?;
    let (config, padding) = dst.split_at_mut(bytes.len());
    config.copy_from_slice(bytes);
    padding.fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ELF64 header and section header fields (offsets), to write a minimal file.
    const E_SHOFF: usize = 0x28;
    const E_EHSIZE: usize = 0x34;
    const E_SHENTSIZE: usize = 0x3a;
    const E_SHNUM: usize = 0x3c;
    const E_SHSTRNDX: usize = 0x3e;
    const SH_OFFSET: usize = 0x18;
    const SH_SIZE: usize = 0x20;
    const SHDR_SIZE: usize = 0x40;

    /// A minimal ELF64: header, one data section `.cfg` (4 bytes), `.bss` (NOBITS), shstrtab.
    fn elf() -> Vec<u8> {
        elf_sized(4)
    }

    /// The same with `.cfg` of `cfg_size` bytes (at least 4; the first 4 are 1, 2, 3, 4).
    fn elf_sized(cfg_size: usize) -> Vec<u8> {
        let strtab = b"\0.cfg\0.bss\0.shstrtab\0";
        let data_off = 0x40;
        let str_off = data_off + cfg_size;
        let shoff = (str_off + strtab.len()).next_multiple_of(8);
        let mut e = vec![0u8; shoff + 4 * SHDR_SIZE];
        e[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        e[E_EHSIZE..E_EHSIZE + 2].copy_from_slice(&0x40u16.to_le_bytes());
        e[E_SHOFF..E_SHOFF + 8].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[E_SHENTSIZE..E_SHENTSIZE + 2].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        e[E_SHNUM..E_SHNUM + 2].copy_from_slice(&4u16.to_le_bytes());
        e[E_SHSTRNDX..E_SHSTRNDX + 2].copy_from_slice(&3u16.to_le_bytes());
        e[data_off..data_off + 4].copy_from_slice(&[1, 2, 3, 4]);
        e[str_off..str_off + strtab.len()].copy_from_slice(strtab);
        let mut shdr = |i: usize, name: u32, kind: u32, off: usize, size: usize| {
            let at = shoff + i * SHDR_SIZE;
            e[at..at + 4].copy_from_slice(&name.to_le_bytes());
            e[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
            e[at + SH_OFFSET..at + SH_OFFSET + 8].copy_from_slice(&(off as u64).to_le_bytes());
            e[at + SH_SIZE..at + SH_SIZE + 8].copy_from_slice(&(size as u64).to_le_bytes());
        };
        shdr(1, 1, 1, data_off, cfg_size);
        shdr(2, 6, SHT_NOBITS, 0, 16);
        shdr(3, 11, 3, str_off, strtab.len());
        e
    }

    #[test]
    fn patches_exactly_the_named_section() {
        let mut e = elf();
        let before = e.clone();
        patch_section(&mut e, ".cfg", &[9, 9, 9, 9]).unwrap();
        assert_eq!(&e[0x40..0x44], &[9, 9, 9, 9]);
        assert_eq!(e[..0x40], before[..0x40]);
        assert_eq!(e[0x44..], before[0x44..]);
    }

    #[test]
    fn a_shorter_config_fills_the_alignment_padding_with_zeros() {
        let mut e = elf_sized(8);
        e[0x40..0x48].fill(0xee);
        patch_section(&mut e, ".cfg", &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(&e[0x40..0x48], &[1, 2, 3, 4, 5, 6, 0, 0]);
        assert!(patch_section(&mut e, ".cfg", &[0; 9]).is_err());
        // 3 bytes round up to 8, not to the 4 of this section.
        assert!(patch_section(&mut elf(), ".cfg", &[1, 2, 3]).is_err());
    }

    #[test]
    fn refuses_what_would_not_fit_or_does_not_exist() {
        let mut e = elf();
        assert!(patch_section(&mut e, ".cfg", &[1, 2])
            .unwrap_err()
            .to_string()
            .contains("4 bytes"));
        assert!(patch_section(&mut e, ".cfg", &[0; 5])
            .unwrap_err()
            .to_string()
            .contains("4 bytes"));
        assert!(patch_section(&mut e, ".bss", &[0; 16])
            .unwrap_err()
            .to_string()
            .contains("NOBITS"));
        assert!(patch_section(&mut e, ".nope", &[])
            .unwrap_err()
            .to_string()
            .contains("no section .nope"));
        assert!(patch_section(&mut [0u8; 10], ".cfg", &[]).is_err());
        let mut truncated = elf();
        truncated.truncate(0x60);
        assert!(patch_section(&mut truncated, ".cfg", &[0; 4]).is_err());
    }
}
