//! Builds the PDs for `aarch64-unknown-none` and checks each ELF against what the Microkit 2.3.0
//! tool needs (`pd_elf::check_pd_image`).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};

/// Builds the bins for aarch64-unknown-none into a private target dir; None if the target's
/// standard library is not installed.
fn build_sel4_pds() -> Option<PathBuf> {
    if !pd_elf::sel4_target_installed() {
        return None;
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sel4");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let dir = pd_elf::cargo_build_sel4(env!("CARGO"), &manifest, &["--bins"], &target_dir, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    Some(dir)
}

fn check_pd(path: &Path, setvars: &[&str], section: Option<(&str, u64)>) {
    let sections: Vec<(&str, u64)> = section.into_iter().collect();
    if let Err(e) = pd_elf::check_pd_image(path, setvars, &sections) {
        panic!("{e}");
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
