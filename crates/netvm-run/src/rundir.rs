//! The private directory (normally under `/dev/shm`) holding one run's control region, region
//! files and manifests; removed when the run ends.
//!
//! Names are `netvm-run.<runner pid>.<n>`, so a directory left behind by a runner that was
//! killed outright (SIGKILL leaves no chance to clean up) is recognisable: the next run removes
//! every such directory whose runner no longer exists.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

const PREFIX: &str = "netvm-run.";

/// Runs started by this process, to make names unique within it.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// The name the next run directory under `base` will have (for `--dry-run`, which creates
/// nothing).
pub fn next_path(base: &Path) -> PathBuf {
    base.join(format!(
        "{PREFIX}{}.{}",
        std::process::id(),
        SEQUENCE.load(Ordering::SeqCst)
    ))
}

/// A run directory; removed with everything in it on [`RunDir::remove`] or drop.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    removed: bool,
}

impl RunDir {
    /// Creates a fresh directory under `base`, mode 0700, after removing stale ones.
    pub fn create(base: &Path) -> io::Result<RunDir> {
        remove_stale(base);
        loop {
            let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
            let path = base.join(format!("{PREFIX}{}.{n}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(RunDir {
                        path,
                        removed: false,
                    })
                }
                // Left by an earlier process with our pid whose runner is gone: take the next.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and its contents.
    pub fn remove(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Removes run directories under `base` whose runner process no longer exists.
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() as i32 && !process_exists(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn process_exists(pid: i32) -> bool {
    use nix::errno::Errno;
    // Signal 0 checks existence only; EPERM means it exists but belongs to someone else.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_private_and_removed() {
        let base = std::env::temp_dir().join(format!("netvm-rundir-{}", std::process::id()));
        fs::create_dir_all(&base).expect("base");
        // A directory of a runner that cannot exist (pid above the kernel's maximum).
        let stale = base.join(format!("{PREFIX}2147483647.0"));
        fs::create_dir_all(&stale).expect("stale");
        let mut a = RunDir::create(&base).expect("a");
        let b = RunDir::create(&base).expect("b");
        assert!(!stale.exists(), "stale run directory not removed");
        assert_ne!(a.path(), b.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(a.path()).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::write(a.path().join("f"), b"x").expect("write");
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        a.remove().expect("remove");
        drop(b);
        assert!(!pa.exists() && !pb.exists());
        let _ = fs::remove_dir_all(&base);
    }
}
