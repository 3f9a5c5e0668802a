//! Building PDs for seL4 from a test or tool: the one `cargo build --target aarch64-unknown-none`
//! invocation the ELF checks and on-target tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target seL4 PDs are built for.
pub const SEL4_TARGET: &str = "aarch64-unknown-none";

/// `cargo build --release --target aarch64-unknown-none ARGS` (e.g. `--bins`, or `-p` and a
/// package per PD) of the workspace of `manifest` into `target_dir`, with the extra environment
/// `env` (e.g. `MICROKIT_SDK`, `MICROKIT_BOARD`, `MICROKIT_CONFIG`); `cargo` is the cargo to run
/// (a test passes `env!("CARGO")`). Returns the directory holding the ELFs, or what failed
/// with cargo's error output.
pub fn cargo_build_sel4(
    cargo: &str,
    manifest: &Path,
    args: &[&str],
    target_dir: &Path,
    env: &[(&str, &str)],
) -> Result<PathBuf, String> {
    let out = Command::new(cargo)
        .args(["build", "--release", "--target", SEL4_TARGET])
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --target {SEL4_TARGET} {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir.join(SEL4_TARGET).join("release"))
}

/// Whether the toolchain has the standard library for [`SEL4_TARGET`] (tests skip otherwise).
pub fn sel4_target_installed() -> bool {
    Command::new("rustc")
        .args(["--print", "target-libdir", "--target", SEL4_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.exists())
}
