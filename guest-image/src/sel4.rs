//! The seL4 image's files, written from `system_plan`'s plan: each PD's ELF with its config
//! sections patched in (what sDDF's Makefiles do with sdfgen's `.data` files and
//! `objcopy --update-section`). The device tree is [`crate::fdt::build_dtb`] of the plan's
//! driver VM layout.

use std::path::{Path, PathBuf};

use sdf::SystemDescription;
use system_plan::Section;

use crate::error::GuestError;

/// Copies each PD's ELF from `elf_dir` (cargo's name: the program image's file name without
/// `.elf`) to `out/<program image path>` and patches its sections there. Returns the files
/// written. A section the ELF lacks, or of another size, is an error naming PD and section.
pub fn patch_pds(
    sys: &SystemDescription,
    sections: &[Section],
    elf_dir: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>, GuestError> {
    let mut written = Vec::new();
    for (pd, _) in sys.pds() {
        let image = &pd.program_image;
        let file = image.path.file_name().map(Path::new).unwrap_or(&image.path);
        let src = elf_dir.join(file.with_extension(""));
        let dst = out.join(&image.path);
        let mut elf = std::fs::read(&src).map_err(GuestError::io(&src))?;
        for s in sections.iter().filter(|s| s.pd == pd.name) {
            pd_elf::patch_section(&mut elf, &s.name, &s.bytes).map_err(|reason| {
                GuestError::BadInput {
                    path: src.clone(),
                    reason: format!("PD '{}': {reason}", pd.name),
                }
            })?;
        }
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(GuestError::io(dir))?;
        }
        std::fs::write(&dst, &elf).map_err(GuestError::io(&dst))?;
        written.push(dst);
    }
    Ok(written)
}
