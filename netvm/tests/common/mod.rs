//! Helpers shared by the `run_*` tests: the hello-pds executables, PD executables written as
//! shell scripts, and checks that a run left no process and no shared-memory file behind.
#![allow(dead_code)] // each test binary uses a different subset

pub mod frames;
pub mod system;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netvm sits in the workspace")
        .to_path_buf()
}

/// The target directory this test runs from (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// Builds the hello-pds executables (`cargo build -p hello-pds --release`, in this test's
/// target directory) once per test binary and returns the directory holding them. Binaries of
/// another package are not available to tests through `CARGO_BIN_EXE_*`.
pub fn hello_bins() -> PathBuf {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| {
        let target = target_dir();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "hello-pds",
                "--release",
                "--bins",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(workspace())
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build -p hello-pds failed");
        target.join("release")
    })
    .clone()
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    // A sequence number too: tests of one binary run in parallel, and two calls with the same
    // tag (two tests sharing a helper) must not get, and wipe, the same directory.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("netvm-{tag}-{}.{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes an executable shell script `dir/name` (a stand-in PD: the runner only needs an
/// executable; the script sees the manifest path in `$NETVM_PD_MANIFEST`).
pub fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A system of top-level PDs named after scripts, with one 4 KiB region mapped into each.
pub fn script_system(dir: &Path, pds: &[&str]) -> PathBuf {
    let mut xml = String::from("<system>\n  <memory_region name=\"r\" size=\"0x1000\"/>\n");
    for pd in pds {
        xml.push_str(&format!(
            "  <protection_domain name=\"{pd}\">\n    <program_image path=\"{pd}.elf\"/>\n    \
             <map mr=\"r\" vaddr=\"0x4000000\"/>\n  </protection_domain>\n"
        ));
    }
    xml.push_str("</system>\n");
    let path = dir.join("system.xml");
    fs::write(&path, xml).expect("write system");
    path
}

/// Whether a process with this pid exists and is not a zombie (a zombie runs no code; one
/// whose parent died waits for init, which in a container may never reap it).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Waits up to 5 s for a process to be gone (killed processes take a moment to exit).
pub fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Waits up to 5 s for a file to appear and returns its trimmed contents.
pub fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run directories in /dev/shm belonging to the runner process `pid`.
pub fn shm_dirs_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("netvm-run.{pid}.");
    fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Child processes of `pid` (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // Field 4 (ppid) follows the parenthesised command name.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}
