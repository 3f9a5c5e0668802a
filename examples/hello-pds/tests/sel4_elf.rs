//! Builds the PDs for `aarch64-unknown-none` and checks each ELF against what the Microkit 2.3.0
//! tool needs (`pd_elf::check_pd_image`).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

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
