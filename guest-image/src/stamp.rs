//! Rebuild-only-on-change: each artifact has a stamp file holding the SHA-256 of its inputs.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::GuestError;

/// Hashes named inputs; the names keep `("a", "bc")` and `("ab", "c")` apart.
#[derive(Default)]
pub struct InputHash(Sha256);

impl InputHash {
    /// Adds one named input.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        for part in [name.as_bytes(), bytes] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
        self
    }

    /// The hex digest.
    pub fn hex(&self) -> String {
        self.0
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn stamp_path(artifact: &Path) -> PathBuf {
    let mut s = artifact.as_os_str().to_owned();
    s.push(".inputs");
    PathBuf::from(s)
}

/// Whether `artifact` exists and was made from inputs hashing to `hash`.
pub fn fresh(artifact: &Path, hash: &str) -> bool {
    artifact.exists() && fs::read_to_string(stamp_path(artifact)).is_ok_and(|s| s.trim() == hash)
}

/// Records that `artifact` was made from inputs hashing to `hash`.
pub fn record(artifact: &Path, hash: &str) -> Result<(), GuestError> {
    let p = stamp_path(artifact);
    fs::write(&p, format!("{hash}\n")).map_err(GuestError::io(p))
}

/// Writes `bytes` to `path` unless it already holds exactly them (keeps mtimes of unchanged
/// outputs, so whatever consumes them does not rebuild either).
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, GuestError> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(GuestError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(GuestError::io(path))?;
    Ok(true)
}
