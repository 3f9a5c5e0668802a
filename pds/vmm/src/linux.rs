//! Booting an arm64 Linux `Image` (Documentation/arch/arm64/booting.rst): header parsing,
//! placement of kernel, device tree and initrd in guest RAM, and the initial vCPU state.
//!
//! Guest RAM is 1:1 (guest-physical = physical) so that a passed-through DMA device sees the
//! guest's addresses (vmm-guest-boot.md §3); every address here is guest-physical, and the VMM
//! maps guest RAM at the same virtual address to fill it.
//!
//! The device tree is the single source of truth for where the initrd goes: its `/chosen`
//! `linux,initrd-start` / `linux,initrd-end` must describe exactly the initrd being loaded
//! (Linux frees and unpacks that range, so a stale size would hand it garbage or cut the archive).

use core::fmt;

use crate::regs::{UserContext, SPSR, SPSR_EL1H_DAIF_MASKED};

/// `"ARM\x64"`, little-endian, at offset 0x38 of the Image header.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Size of the Image header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// Flattened device-tree magic (big-endian at offset 0).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Largest device tree the boot protocol allows.
pub const MAX_DTB_SIZE: u64 = 2 << 20;
/// The kernel's base must be 2 MiB aligned (booting.rst: "2MB aligned base").
pub const KERNEL_BASE_ALIGN: u64 = 2 << 20;

/// Why a guest cannot be booted. Every variant names the image or region involved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootError {
    /// The kernel image is shorter than its 64-byte header.
    ImageTooShort {
        /// Bytes given.
        len: usize,
    },
    /// The kernel image has no `ARM\x64` magic at 0x38: not an arm64 `Image` (a compressed
    /// `vmlinuz` or an ELF `vmlinux`?).
    BadImageMagic {
        /// What was found.
        found: u32,
    },
    /// The kernel image is big-endian (header flags bit 0).
    BigEndianImage,
    /// The kernel image's header has `image_size` 0 (a kernel older than 3.17), so its memory
    /// footprint is unknown.
    UnknownImageSize,
    /// The kernel image is larger than the `image_size` its header declares.
    ImageLargerThanDeclared {
        /// File bytes.
        len: usize,
        /// `image_size`.
        image_size: u64,
    },
    /// Guest RAM does not start on a 2 MiB boundary.
    RamMisaligned {
        /// Guest RAM base.
        base: u64,
    },
    /// The device tree is not a flattened device tree (bad magic or header).
    BadDtb,
    /// The device tree is larger than the boot protocol's 2 MiB.
    DtbTooLarge {
        /// Its `totalsize`.
        size: u64,
    },
    /// The device tree's `/chosen` has no `linux,initrd-start`/`-end` but an initrd was given.
    DtbLacksInitrd,
    /// The device tree names an initrd but none was given.
    InitrdMissing,
    /// The device tree's initrd range does not match the initrd given.
    InitrdSizeMismatch {
        /// `linux,initrd-end - linux,initrd-start`.
        dtb_size: u64,
        /// Bytes of the initrd given.
        len: u64,
    },
    /// An image does not fit inside guest RAM.
    OutsideRam {
        /// `kernel`, `initrd` or `device tree`.
        what: &'static str,
        /// Its first guest-physical byte.
        start: u64,
        /// One past its last byte.
        end: u64,
    },
    /// Two images would overlap in guest RAM.
    Overlap {
        /// One image.
        a: &'static str,
        /// The other.
        b: &'static str,
    },
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootError::ImageTooShort { len } => {
                write!(f, "kernel image: {len} bytes, shorter than the 64-byte arm64 Image header")
            }
            BootError::BadImageMagic { found } => write!(
                f,
                "kernel image: no arm64 Image magic \"ARM\\x64\" at 0x38 (found {found:#010x}); \
                 an uncompressed Image is needed, not vmlinuz or vmlinux"
            ),
            BootError::BigEndianImage => write!(f, "kernel image: big-endian kernel"),
            BootError::UnknownImageSize => write!(
                f,
                "kernel image: header image_size is 0 (kernel older than 3.17), footprint unknown"
            ),
            BootError::ImageLargerThanDeclared { len, image_size } => write!(
                f,
                "kernel image: {len} bytes, larger than its header's image_size {image_size:#x}"
            ),
            BootError::RamMisaligned { base } => {
                write!(f, "guest RAM base {base:#x} is not 2 MiB aligned")
            }
            BootError::BadDtb => write!(f, "device tree: not a flattened device tree"),
            BootError::DtbTooLarge { size } => {
                write!(f, "device tree: {size} bytes, more than the 2 MiB the boot protocol allows")
            }
            BootError::DtbLacksInitrd => write!(
                f,
                "device tree: /chosen has no linux,initrd-start/linux,initrd-end, but an initrd is embedded"
            ),
            BootError::InitrdMissing => {
                write!(f, "device tree: /chosen names an initrd, but none is embedded")
            }
            BootError::InitrdSizeMismatch { dtb_size, len } => write!(
                f,
                "initrd: {len} bytes, but the device tree's linux,initrd-start/end span {dtb_size}"
            ),
            BootError::OutsideRam { what, start, end } => {
                write!(f, "{what} at {start:#x}..{end:#x} does not fit in guest RAM")
            }
            BootError::Overlap { a, b } => write!(f, "{a} and {b} overlap in guest RAM"),
        }
    }
}

/// The fields of an arm64 `Image` header the loader needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageHeader {
    /// Offset of the image from the 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes of memory the kernel occupies from its load address, bss included.
    pub image_size: u64,
    /// Header flags (bit 0 big-endian, bits 2:1 page size, bit 3 placement anywhere).
    pub flags: u64,
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let w: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(w))
}

impl ImageHeader {
    /// Parses and checks the header at the start of `image`.
    pub fn parse(image: &[u8]) -> Result<Self, BootError> {
        if image.len() < IMAGE_HEADER_SIZE {
            return Err(BootError::ImageTooShort { len: image.len() });
        }
        let magic = u32::from_le_bytes([image[0x38], image[0x39], image[0x3a], image[0x3b]]);
        if magic != IMAGE_MAGIC {
            return Err(BootError::BadImageMagic { found: magic });
        }
        let header = ImageHeader {
            text_offset: le64(image, 0x08),
            image_size: le64(image, 0x10),
            flags: le64(image, 0x18),
        };
        if header.flags & 1 != 0 {
            return Err(BootError::BigEndianImage);
        }
        if header.image_size == 0 {
            return Err(BootError::UnknownImageSize);
        }
        if image.len() as u64 > header.image_size {
            return Err(BootError::ImageLargerThanDeclared {
                len: image.len(),
                image_size: header.image_size,
            });
        }
        Ok(header)
    }
}

/// Calls `f(depth, node, property, value)` for every property of a flattened device tree
/// (`depth` 1 = the root node, `node` = the node's name with its unit address). Checks the
/// header and stays inside the blob on any input.
fn for_each_property(
    dtb: &[u8],
    mut f: impl FnMut(usize, &[u8], &[u8], &[u8]),
) -> Result<(), BootError> {
    const BEGIN_NODE: u32 = 1;
    const END_NODE: u32 = 2;
    const PROP: u32 = 3;
    const NOP: u32 = 4;
    const END: u32 = 9;
    /// Deeper nodes are not needed; their names are not tracked.
    const MAX_DEPTH: usize = 8;
    let field = |at| be32(dtb, at).ok_or(BootError::BadDtb);
    if field(0)? != FDT_MAGIC || (field(4)? as usize) > dtb.len() {
        return Err(BootError::BadDtb);
    }
    let structs = field(8)? as usize;
    let strings = field(12)? as usize;
    let mut names: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
    let mut depth = 0usize;
    let mut pos = structs;
    loop {
        match field(pos)? {
            BEGIN_NODE => {
                let name_start = pos + 4;
                let name_len = dtb
                    .get(name_start..)
                    .and_then(|s| s.iter().position(|&b| b == 0))
                    .ok_or(BootError::BadDtb)?;
                depth += 1;
                if let Some(slot) = names.get_mut(depth - 1) {
                    *slot = &dtb[name_start..name_start + name_len];
                }
                pos = (name_start + name_len + 1).next_multiple_of(4);
            }
            END_NODE => {
                depth = depth.checked_sub(1).ok_or(BootError::BadDtb)?;
                pos += 4;
            }
            PROP => {
                let len = field(pos + 4)? as usize;
                let name_off = field(pos + 8)? as usize;
                let value = dtb.get(pos + 12..pos + 12 + len).ok_or(BootError::BadDtb)?;
                let name = dtb
                    .get(strings + name_off..)
                    .and_then(|s| s.split(|&b| b == 0).next())
                    .ok_or(BootError::BadDtb)?;
                let node = depth
                    .checked_sub(1)
                    .and_then(|d| names.get(d))
                    .copied()
                    .unwrap_or(&[]);
                f(depth, node, name, value);
                pos = (pos + 12 + len).next_multiple_of(4);
            }
            NOP => pos += 4,
            END => return Ok(()),
            _ => return Err(BootError::BadDtb),
        }
    }
}

/// A big-endian number of one or two cells.
fn cells(value: &[u8]) -> Option<u64> {
    match value.len() {
        4 => be32(value, 0).map(u64::from),
        8 => Some(u64::from_be_bytes(value.try_into().ok()?)),
        _ => None,
    }
}

/// `/chosen`'s `linux,initrd-start` and `linux,initrd-end` of a flattened device tree, or
/// `None` when it has no initrd.
pub fn dtb_initrd(dtb: &[u8]) -> Result<Option<(u64, u64)>, BootError> {
    let (mut start, mut end) = (None, None);
    let mut bad = false;
    for_each_property(dtb, |depth, node, prop, value| {
        if depth == 2 && node == b"chosen" {
            match prop {
                b"linux,initrd-start" => {
                    start = cells(value).or_else(|| {
                        bad = true;
                        None
                    })
                }
                b"linux,initrd-end" => {
                    end = cells(value).or_else(|| {
                        bad = true;
                        None
                    })
                }
                _ => {}
            }
        }
    })?;
    Ok(match (start, end) {
        _ if bad => return Err(BootError::BadDtb),
        (Some(s), Some(e)) if e >= s => Some((s, e)),
        (None, None) => None,
        _ => return Err(BootError::BadDtb),
    })
}

/// What the device tree says about a top-level node the VMM emulates.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DtNode {
    /// The base of its first `reg` entry (2 address cells, as the root node declares).
    pub reg: Option<u64>,
    /// Its first interrupt as a GIC INTID, for an SPI (`<0 n flags>` -> 32 + n).
    pub intid: Option<u16>,
}

/// The top-level node called `name` (without unit address), if the device tree has one.
pub fn dtb_node(dtb: &[u8], name: &str) -> Result<Option<DtNode>, BootError> {
    let mut found: Option<DtNode> = None;
    for_each_property(dtb, |depth, node, prop, value| {
        let base = node.split(|&b| b == b'@').next().unwrap_or(node);
        if depth != 2 || base != name.as_bytes() {
            return;
        }
        let entry = found.get_or_insert_with(DtNode::default);
        match prop {
            b"reg" => entry.reg = value.get(..8).and_then(cells),
            b"interrupts" => {
                let kind = be32(value, 0);
                let number = be32(value, 4);
                if let (Some(0), Some(n)) = (kind, number) {
                    entry.intid = u16::try_from(n + 32).ok();
                }
            }
            _ => {}
        }
    })?;
    Ok(found)
}

/// Guest RAM: one contiguous guest-physical range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestRam {
    /// First byte (guest-physical = physical).
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

/// Where each image goes and how the vCPU starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BootPlan {
    /// Where the Image is copied; also its entry point.
    pub kernel: u64,
    /// The kernel's footprint (`image_size`).
    pub kernel_size: u64,
    /// Where the device tree is copied (the top 2 MiB of RAM).
    pub dtb: u64,
    /// Where the initrd is copied (from the device tree), if there is one.
    pub initrd: Option<u64>,
}

impl BootPlan {
    /// Places `kernel`, `dtb` and `initrd` in `ram`: the kernel at the 2 MiB-aligned RAM base
    /// plus `text_offset`, the device tree in the last 2 MiB of RAM, the initrd where the device
    /// tree says. Checks that everything fits and nothing overlaps.
    pub fn new(ram: GuestRam, kernel: &[u8], dtb: &[u8], initrd: &[u8]) -> Result<Self, BootError> {
        let header = ImageHeader::parse(kernel)?;
        if !ram.base.is_multiple_of(KERNEL_BASE_ALIGN) {
            return Err(BootError::RamMisaligned { base: ram.base });
        }
        let dtb_size = u64::from(be32(dtb, 4).ok_or(BootError::BadDtb)?);
        if dtb_size > MAX_DTB_SIZE {
            return Err(BootError::DtbTooLarge { size: dtb_size });
        }
        let initrd_range = match (dtb_initrd(dtb)?, initrd.is_empty()) {
            (Some((start, end)), false) => {
                if end - start != initrd.len() as u64 {
                    return Err(BootError::InitrdSizeMismatch {
                        dtb_size: end - start,
                        len: initrd.len() as u64,
                    });
                }
                Some((start, end))
            }
            (Some(_), true) => return Err(BootError::InitrdMissing),
            (None, false) => return Err(BootError::DtbLacksInitrd),
            (None, true) => None,
        };
        let ram_end = ram
            .base
            .checked_add(ram.size)
            .ok_or(BootError::OutsideRam {
                what: "guest RAM",
                start: ram.base,
                end: u64::MAX,
            })?;
        let kernel_at = ram.base + header.text_offset;
        let dtb_at = ram_end.saturating_sub(MAX_DTB_SIZE);
        let mut regions = [
            (
                "kernel",
                kernel_at,
                kernel_at.saturating_add(header.image_size),
            ),
            ("device tree", dtb_at, dtb_at + dtb_size),
            ("initrd", 0, 0),
        ];
        if let Some((s, e)) = initrd_range {
            regions[2] = ("initrd", s, e);
        }
        for &(what, start, end) in &regions {
            if start == end && what == "initrd" {
                continue;
            }
            if start < ram.base || end > ram_end || dtb_at < ram.base {
                return Err(BootError::OutsideRam { what, start, end });
            }
        }
        for i in 0..regions.len() {
            for j in i + 1..regions.len() {
                let (a, a0, a1) = regions[i];
                let (b, b0, b1) = regions[j];
                if a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1 {
                    return Err(BootError::Overlap { a, b });
                }
            }
        }
        Ok(BootPlan {
            kernel: kernel_at,
            kernel_size: header.image_size,
            dtb: dtb_at,
            initrd: initrd_range.map(|(s, _)| s),
        })
    }

    /// The vCPU registers at entry: pc = kernel entry, x0 = device tree, x1–x3 = 0, PSTATE EL1h
    /// with DAIF masked (booting.rst).
    pub fn initial_context(&self) -> UserContext {
        let mut ctx = UserContext::default();
        ctx.set_pc(self.kernel);
        ctx.set_x(0, self.dtb);
        ctx.0[SPSR] = SPSR_EL1H_DAIF_MASKED;
        ctx
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut img = std::vec![0u8; len];
        img[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        img[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        img[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        img
    }

    /// A minimal FDT: root { chosen { linux,initrd-start; linux,initrd-end; bootargs } }.
    fn dtb(initrd: Option<(u64, u64)>, cells: usize) -> Vec<u8> {
        let strings = b"linux,initrd-start\0linux,initrd-end\0bootargs\0";
        let mut st: Vec<u8> = Vec::new();
        let tok = |st: &mut Vec<u8>, t: u32| st.extend_from_slice(&t.to_be_bytes());
        let prop = |st: &mut Vec<u8>, off: u32, val: &[u8]| {
            st.extend_from_slice(&3u32.to_be_bytes());
            st.extend_from_slice(&(val.len() as u32).to_be_bytes());
            st.extend_from_slice(&off.to_be_bytes());
            st.extend_from_slice(val);
            while !st.len().is_multiple_of(4) {
                st.push(0);
            }
        };
        tok(&mut st, 1);
        st.extend_from_slice(&[0, 0, 0, 0]);
        tok(&mut st, 1);
        st.extend_from_slice(b"chosen\0\0");
        prop(&mut st, 36, b"console=ttyAMA0\0");
        if let Some((s, e)) = initrd {
            let enc = |v: u64| -> Vec<u8> {
                if cells == 1 {
                    (v as u32).to_be_bytes().to_vec()
                } else {
                    v.to_be_bytes().to_vec()
                }
            };
            prop(&mut st, 0, &enc(s));
            prop(&mut st, 19, &enc(e));
        }
        tok(&mut st, 2);
        tok(&mut st, 1);
        st.extend_from_slice(b"memory@90000000\0");
        prop(&mut st, 19, &0x1234u32.to_be_bytes()); // same name outside /chosen: ignored
        tok(&mut st, 2);
        tok(&mut st, 2);
        tok(&mut st, 9);
        let off_struct = 40 + 16;
        let off_strings = off_struct + st.len();
        let total = off_strings + strings.len();
        let mut out = Vec::new();
        for v in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            40,
            17,
            16,
            0,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(strings.len() as u32).to_be_bytes());
        out.extend_from_slice(&(st.len() as u32).to_be_bytes());
        out.extend_from_slice(&[0; 16]); // empty reservation map
        out.extend_from_slice(&st);
        out.extend_from_slice(strings);
        out
    }

    const RAM: GuestRam = GuestRam {
        base: 0x9000_0000,
        size: 0x1000_0000,
    };

    #[test]
    fn parses_the_debian_cloud_header() {
        let h = ImageHeader::parse(&image(0, 0x1ab_0000, 4096)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0,
                image_size: 0x1ab_0000,
                flags: 0xa
            }
        );
    }

    #[test]
    fn rejects_bad_images_with_clear_errors() {
        assert_eq!(
            ImageHeader::parse(&[0; 10]),
            Err(BootError::ImageTooShort { len: 10 })
        );
        let mut gz = image(0, 0x100_0000, 128);
        gz[0x38..0x3c].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        let err = ImageHeader::parse(&gz).unwrap_err();
        assert_eq!(err, BootError::BadImageMagic { found: 0x0008_8b1f });
        assert!(std::format!("{err}").contains("ARM\\x64"));
        let mut be = image(0, 0x100_0000, 128);
        be[0x18] = 1;
        assert_eq!(ImageHeader::parse(&be), Err(BootError::BigEndianImage));
        assert_eq!(
            ImageHeader::parse(&image(0, 0, 128)),
            Err(BootError::UnknownImageSize)
        );
        assert_eq!(
            ImageHeader::parse(&image(0, 100, 128)),
            Err(BootError::ImageLargerThanDeclared {
                len: 128,
                image_size: 100
            })
        );
    }

    #[test]
    fn reads_initrd_range_from_chosen_in_both_cell_sizes() {
        for cells in [1, 2] {
            let d = dtb(Some((0x9d00_0000, 0x9d12_3456)), cells);
            assert_eq!(dtb_initrd(&d), Ok(Some((0x9d00_0000, 0x9d12_3456))));
        }
        assert_eq!(dtb_initrd(&dtb(None, 2)), Ok(None));
        assert_eq!(dtb_initrd(b"not a dtb"), Err(BootError::BadDtb));
        // Every truncation of a valid blob is rejected, never read out of bounds.
        let d = dtb(Some((1, 2)), 2);
        for len in 0..d.len() {
            assert!(dtb_initrd(&d[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn finds_uio_nodes_by_name() {
        // The test blob has a node `memory@90000000` with a 4-byte property: not a `reg`.
        let d = dtb(None, 2);
        assert_eq!(dtb_node(&d, "memory"), Ok(Some(DtNode::default())));
        assert_eq!(dtb_node(&d, "rx_fault"), Ok(None));
        assert_eq!(dtb_node(&d, "chosen"), Ok(Some(DtNode::default())));
    }

    #[test]
    fn plans_1to1_layout_and_initial_registers() {
        let initrd = std::vec![0u8; 0x12_3456];
        let d = dtb(Some((0x9d00_0000, 0x9d12_3456)), 2);
        let plan = BootPlan::new(RAM, &image(0, 0x1ab_0000, 8192), &d, &initrd).unwrap();
        assert_eq!(plan.kernel, 0x9000_0000);
        assert_eq!(plan.dtb, 0x9fe0_0000);
        assert_eq!(plan.initrd, Some(0x9d00_0000));
        let ctx = plan.initial_context();
        assert_eq!(
            (ctx.pc(), ctx.x(0), ctx.x(1), ctx.0[SPSR]),
            (0x9000_0000, 0x9fe0_0000, 0, 0x3c5)
        );
    }

    #[test]
    fn rejects_inconsistent_layouts() {
        let img = image(0x8_0000, 0x1ab_0000, 8192);
        let initrd = std::vec![0u8; 0x1000];
        let d = dtb(Some((0x9d00_0000, 0x9d00_1000)), 2);
        assert!(BootPlan::new(RAM, &img, &d, &initrd).is_ok());
        assert_eq!(
            BootPlan::new(
                GuestRam {
                    base: 0x9010_0000,
                    ..RAM
                },
                &img,
                &d,
                &initrd
            ),
            Err(BootError::RamMisaligned { base: 0x9010_0000 })
        );
        assert_eq!(
            BootPlan::new(RAM, &img, &d, &initrd[..0x800]),
            Err(BootError::InitrdSizeMismatch {
                dtb_size: 0x1000,
                len: 0x800
            })
        );
        assert_eq!(
            BootPlan::new(RAM, &img, &d, &[]),
            Err(BootError::InitrdMissing)
        );
        assert_eq!(
            BootPlan::new(RAM, &img, &dtb(None, 2), &initrd),
            Err(BootError::DtbLacksInitrd)
        );
        let inside_kernel = dtb(Some((0x9010_0000, 0x9010_1000)), 2);
        assert_eq!(
            BootPlan::new(RAM, &img, &inside_kernel, &initrd),
            Err(BootError::Overlap {
                a: "kernel",
                b: "initrd"
            })
        );
        let beyond = dtb(Some((0xa000_0000, 0xa000_1000)), 2);
        assert!(matches!(
            BootPlan::new(RAM, &img, &beyond, &initrd),
            Err(BootError::OutsideRam { what: "initrd", .. })
        ));
        let small = GuestRam {
            base: 0x9000_0000,
            size: 0x100_0000,
        };
        assert!(matches!(
            BootPlan::new(small, &img, &dtb(None, 2), &[]),
            Err(BootError::OutsideRam { what: "kernel", .. })
        ));
    }
}
