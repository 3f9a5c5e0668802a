//! Builds the PDs for `aarch64-unknown-none` and checks each ELF against what the Microkit 2.3.0
//! tool needs (shared/reference/microkit-abi.md §4.3-4.5): a static non-PIE executable entered at
//! `_start` = 0x200000, PT_LOAD segments that never share a 4 KiB page, the six `microkit_*`
//! symbols with their sizes, 8-byte setvars, and the config section inside a writable segment.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf::{ET_EXEC, PF_W, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

const PAGE: u64 = 0x1000;

/// Builds the bins for aarch64-unknown-none into a private target dir; None if the target's
/// standard library is not installed.
fn build_sel4_pds() -> Option<PathBuf> {
    let cargo = env!("CARGO");
    let sysroot_has_target = Command::new("rustc")
        .args([
            "--print",
            "target-libdir",
            "--target",
            "aarch64-unknown-none",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.exists());
    if !sysroot_has_target {
        return None;
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sel4");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--bins",
            "--target",
            "aarch64-unknown-none",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build --target aarch64-unknown-none failed"
    );
    Some(target_dir.join("aarch64-unknown-none/release"))
}

fn check_pd(path: &Path, setvars: &[&str], section: Option<(&str, u64)>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = ElfFile64::<Endianness>::parse(&*data).expect("64-bit ELF");
    let name = path.display();
    let endian = elf.endian();
    let header = elf.elf_header();
    assert_eq!(
        header.e_type(endian),
        ET_EXEC,
        "{name}: must be a static non-PIE executable"
    );
    assert!(elf.is_little_endian(), "{name}: must be little-endian");

    let symbol = |sym: &str| {
        elf.symbols()
            .find(|s| s.name() == Ok(sym))
            .unwrap_or_else(|| panic!("{name}: no symbol {sym}"))
    };
    assert_eq!(elf.entry(), 0x20_0000, "{name}: entry");
    assert_eq!(
        symbol("_start").address(),
        elf.entry(),
        "{name}: entry is not _start"
    );

    for (sym, size) in [
        ("microkit_name", 64),
        ("microkit_passive", 1),
        ("microkit_irqs", 8),
        ("microkit_notifications", 8),
        ("microkit_pps", 8),
        ("microkit_ioports", 8),
    ] {
        assert_eq!(symbol(sym).size(), size, "{name}: size of {sym}");
    }
    for sym in setvars {
        assert_eq!(
            symbol(sym).size(),
            8,
            "{name}: setvar {sym} must be word-sized"
        );
    }

    // PT_LOAD segments: the tool maps each page of each segment once, so no two segments may
    // touch the same 4 KiB page.
    let mut pages: Vec<(u64, u64, bool)> = elf
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| {
            let start = ph.p_vaddr(endian);
            let end = start + ph.p_memsz(endian);
            (
                start / PAGE,
                end.div_ceil(PAGE),
                ph.p_flags(endian) & PF_W != 0,
            )
        })
        .collect();
    pages.sort();
    assert!(
        pages.len() >= 2,
        "{name}: expected separate text and data segments"
    );
    assert_eq!(
        pages[0].0 * PAGE,
        0x20_0000,
        "{name}: image must start at 0x200000"
    );
    for pair in pages.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{name}: PT_LOAD segments share a page: {pages:x?}"
        );
    }

    if let Some((section_name, size)) = section {
        let section = elf
            .section_by_name(section_name)
            .unwrap_or_else(|| panic!("{name}: no section {section_name}"));
        assert_eq!(section.size(), size, "{name}: size of {section_name}");
        let (start, end) = (section.address(), section.address() + size);
        let in_rw_segment = elf.elf_program_headers().iter().any(|ph| {
            let seg = ph.p_vaddr(endian);
            ph.p_type(endian) == PT_LOAD
                && ph.p_flags(endian) & PF_W != 0
                && seg <= start
                && end <= seg + ph.p_filesz(endian)
        });
        assert!(
            in_rw_segment,
            "{name}: {section_name} is not in the file image of a RW segment"
        );
    }
}

#[test]
fn sel4_images_meet_the_microkit_tool_constraints() {
    let Some(dir) = build_sel4_pds() else {
        println!("SKIPPED: the aarch64-unknown-none target is not installed");
        return;
    };
    check_pd(&dir.join("client"), &["shared_vaddr"], None);
    check_pd(
        &dir.join("server"),
        &["shared_vaddr"],
        Some((".hello_config", 16)),
    );
    check_pd(&dir.join("crasher"), &["crash_count_vaddr"], None);
}
