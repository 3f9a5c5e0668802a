//! Reads a kernel module's `.modinfo` section (what `modinfo` prints) from the ELF file itself,
//! so the build needs no `kmod` on the host: `vermagic` must equal the kernel's, and
//! `depends` gives the load order (Debian ships no `modules.dep`).
//!
//! The file comes from a downloaded package or our own build; every offset is bounds-checked
//! and a malformed file is an error, never a panic.

/// `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

/// `key=value` pairs of `.modinfo`, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo(pub Vec<(String, String)>);

impl ModInfo {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Module names from `depends=` (comma separated, may be empty).
    pub fn depends(&self) -> Vec<String> {
        self.get("depends")
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Parses `.modinfo` out of a little-endian ELF64 AArch64 relocatable object.
pub fn parse(elf: &[u8]) -> Result<ModInfo, String> {
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF magic".into());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian 64-bit ELF".into());
    }
    if u16_at(elf, 18) != Some(EM_AARCH64) {
        return Err("not built for AArch64".into());
    }
    let bad = || "truncated or inconsistent ELF section headers".to_string();
    let shoff = usize::try_from(u64_at(elf, 0x28).ok_or_else(bad)?).map_err(|_| bad())?;
    let shentsize = usize::from(u16_at(elf, 0x3a).ok_or_else(bad)?);
    let shnum = usize::from(u16_at(elf, 0x3c).ok_or_else(bad)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e).ok_or_else(bad)?);
    if shentsize < 64 {
        return Err(bad());
    }
    let section = |i: usize| -> Option<(u32, &[u8])> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(elf, h)?;
        let off = usize::try_from(u64_at(elf, h + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(elf, h + 0x20)?).ok()?;
        Some((name, elf.get(off..off.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx).ok_or_else(bad)?;
    for i in 0..shnum {
        let (name_off, data) = section(i).ok_or_else(bad)?;
        let name = names
            .get(name_off as usize..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .ok_or_else(bad)?;
        if name == b".modinfo" {
            let pairs = data
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .filter_map(|s| {
                    let s = String::from_utf8_lossy(s);
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            return Ok(ModInfo(pairs));
        }
    }
    Err("no .modinfo section".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 AArch64 object with one `.modinfo` section holding `info`.
    pub(crate) fn tiny_module(info: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for kv in info {
            modinfo.extend_from_slice(kv.as_bytes());
            modinfo.push(0);
        }
        let shstr = b"\0.modinfo\0.shstrtab\0".to_vec();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[16..18].copy_from_slice(&1u16.to_le_bytes());
        elf[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        let modinfo_off = elf.len();
        elf.extend_from_slice(&modinfo);
        let shstr_off = elf.len();
        elf.extend_from_slice(&shstr);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let shoff = elf.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(1, modinfo_off, modinfo.len());
        sh(10, shstr_off, shstr.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_vermagic_and_depends() {
        let elf = tiny_module(&[
            "license=GPL",
            "depends=uio,virtio",
            "vermagic=6.1.0-1-x SMP",
        ]);
        let info = parse(&elf).unwrap();
        assert_eq!(info.get("vermagic"), Some("6.1.0-1-x SMP"));
        assert_eq!(info.depends(), vec!["uio", "virtio"]);
        let none = parse(&tiny_module(&["depends="])).unwrap();
        assert!(none.depends().is_empty());
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        let elf = tiny_module(&["vermagic=v"]);
        for len in 0..elf.len() {
            let _ = parse(&elf[..len]);
        }
        let mut x86 = elf.clone();
        x86[18] = 62;
        assert!(parse(&x86).unwrap_err().contains("AArch64"));
        let mut garbage = elf.clone();
        garbage[0x28] = 0xff;
        assert!(parse(&garbage).is_err());
    }
}
