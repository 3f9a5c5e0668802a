//! Overwriting the contents of a named section in an ELF64 little-endian file, in place — what
//! `objcopy --update-section` does for config sections, restricted to the safe case: the
//! section exists, has file contents, and the new bytes are exactly its size (so no segment,
//! symbol or offset moves), or that size less the padding to 8 bytes that a Rust PD's 8-byte
//! aligned config section has after a C struct of another size (sDDF's 6-byte
//! `timer_client_config_t`); the padding is zeroed.

/// ELF64 header fields (offsets).
const E_SHOFF: usize = 0x28;
const E_SHENTSIZE: usize = 0x3a;
const E_SHNUM: usize = 0x3c;
const E_SHSTRNDX: usize = 0x3e;
/// Section header fields.
const SH_NAME: usize = 0x00;
const SH_TYPE: usize = 0x04;
const SH_OFFSET: usize = 0x18;
const SH_SIZE: usize = 0x20;
const SHDR_SIZE: usize = 0x40;
/// `SHT_NOBITS`: no file contents.
const SHT_NOBITS: u32 = 8;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One section header: name offset, type, file offset, size.
fn section(elf: &[u8], index: usize) -> Option<(u32, u32, usize, usize)> {
    let shoff = usize::try_from(u64_at(elf, E_SHOFF)?).ok()?;
    if usize::from(u16_at(elf, E_SHENTSIZE)?) != SHDR_SIZE {
        return None;
    }
    let at = shoff.checked_add(index.checked_mul(SHDR_SIZE)?)?;
    Some((
        u32_at(elf, at + SH_NAME)?,
        u32_at(elf, at + SH_TYPE)?,
        usize::try_from(u64_at(elf, at + SH_OFFSET)?).ok()?,
        usize::try_from(u64_at(elf, at + SH_SIZE)?).ok()?,
    ))
}

/// Writes `bytes` over section `name`; the message says what is wrong otherwise.
pub fn patch_section(elf: &mut [u8], name: &str, bytes: &[u8]) -> Result<(), String> {
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err("not a little-endian ELF64 file".into());
    }
    let malformed = || "malformed section headers".to_string();
    let count = usize::from(u16_at(elf, E_SHNUM).ok_or_else(malformed)?);
    let strndx = usize::from(u16_at(elf, E_SHSTRNDX).ok_or_else(malformed)?);
    let (_, _, str_off, str_size) = section(elf, strndx).ok_or_else(malformed)?;
    let strtab = elf
        .get(str_off..str_off.saturating_add(str_size))
        .ok_or_else(malformed)?
        .to_vec();
    for i in 0..count {
        let (name_off, kind, off, size) = section(elf, i).ok_or_else(malformed)?;
        let this = strtab
            .get(name_off as usize..)
            .and_then(|s| s.split(|b| *b == 0).next())
            .ok_or_else(malformed)?;
        if this != name.as_bytes() {
            continue;
        }
        if kind == SHT_NOBITS {
            return Err(format!("section {name} has no file contents (NOBITS)"));
        }
        if size != bytes.len() && size != bytes.len().next_multiple_of(8) {
            return Err(format!(
                "section {name} is {size} bytes, the config is {} bytes",
                bytes.len()
            ));
        }
        let dst = elf
            .get_mut(off..off.saturating_add(size))
            .ok_or_else(malformed)?;
        let (config, padding) = dst.split_at_mut(bytes.len());
        config.copy_from_slice(bytes);
        padding.fill(0);
        return Ok(());
    }
    Err(format!(
        "no section {name} (does this PD read that config?)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        e[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
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
            .contains("4 bytes"));
        assert!(patch_section(&mut e, ".cfg", &[0; 5])
            .unwrap_err()
            .contains("4 bytes"));
        assert!(patch_section(&mut e, ".bss", &[0; 16])
            .unwrap_err()
            .contains("NOBITS"));
        assert!(patch_section(&mut e, ".nope", &[])
            .unwrap_err()
            .contains("no section .nope"));
        assert!(patch_section(&mut [0u8; 10], ".cfg", &[]).is_err());
        let mut truncated = elf();
        truncated.truncate(0x60);
        assert!(patch_section(&mut truncated, ".cfg", &[0; 4]).is_err());
    }
}
