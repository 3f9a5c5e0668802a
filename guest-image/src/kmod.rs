//! Kernel modules: Debian's own (copied unstripped: stripping would drop their signature) and
//! our out-of-tree build of `uio_pdrv_genirq`, which Debian does not build
//! (`CONFIG_UIO_PDRV_GENIRQ` is not set in any Debian kernel, guest-linux.md §2).
//!
//! The module is compiled from the one file it needs out of Debian's `linux-source-<series>`,
//! against Debian's arm64 headers, with `aarch64-linux-gnu-gcc-12`; its vermagic is checked
//! against the kernel's before it goes into the initramfs.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::GuestError;
use crate::modinfo::{self, ModInfo};
use crate::process;

/// The module we build ourselves.
pub const UIO_PDRV_GENIRQ: &str = "uio_pdrv_genirq";
/// The modules the guest needs; their dependencies come along.
pub const WANTED: [&str; 3] = [UIO_PDRV_GENIRQ, "virtio_mmio", "virtio_net"];
/// Its path inside the kernel source tree.
const SOURCE_FILE: &str = "drivers/uio/uio_pdrv_genirq.c";
/// Cross-compiler prefix; Debian's headers call `$(CROSS_COMPILE)gcc-12`.
pub const CROSS_COMPILE: &str = "aarch64-linux-gnu-";
/// The Debian package that provides the cross toolchain.
pub const CROSS_PACKAGE: &str = "gcc-aarch64-linux-gnu";

/// Module name of a `.ko` file name (`net_failover.ko` -> `net_failover`, `-` read as `_`).
pub fn module_name(file: &Path) -> Option<String> {
    let stem = file.file_name()?.to_str()?.strip_suffix(".ko")?;
    Some(stem.replace('-', "_"))
}

/// A module ready to go into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
}

/// Reads a module's `.modinfo`.
pub fn read_modinfo(path: &Path) -> Result<ModInfo, GuestError> {
    let bytes = fs::read(path).map_err(GuestError::io(path))?;
    modinfo::parse(&bytes).map_err(|reason| GuestError::BadModule {
        path: path.into(),
        reason,
    })
}

/// Fails unless `path`'s vermagic is exactly `kernel`.
pub fn check_vermagic(path: &Path, kernel: &str, abi: &str) -> Result<(), GuestError> {
    let info = read_modinfo(path)?;
    let found = info.get("vermagic").ok_or_else(|| GuestError::BadModule {
        path: path.into(),
        reason: "no vermagic in .modinfo".into(),
    })?;
    if found != kernel {
        return Err(GuestError::VermagicMismatch {
            module: path.into(),
            found: found.into(),
            kernel: kernel.into(),
            abi: abi.into(),
        });
    }
    Ok(())
}

/// Every `.ko` under `dir`, by module name.
pub fn index(dir: &Path) -> Result<HashMap<String, PathBuf>, GuestError> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(GuestError::io(&d))? {
            let p = e.map_err(GuestError::io(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = module_name(&p) {
                out.insert(name, p);
            }
        }
    }
    Ok(out)
}

/// `wanted` and everything they depend on, dependencies first; every module's vermagic
/// must equal `vermagic`. `available` maps names to files (Debian's plus ours).
pub fn load_order(
    wanted: &[&str],
    available: &HashMap<String, PathBuf>,
    modules_dir: &Path,
    vermagic: &str,
    abi: &str,
) -> Result<Vec<Module>, GuestError> {
    let mut walk = Walk {
        available,
        modules_dir,
        vermagic,
        abi,
        state: BTreeMap::new(),
        order: Vec::new(),
    };
    for w in wanted {
        walk.visit(w, "the guest")?;
    }
    Ok(walk.order)
}

/// Depth-first post-order walk over `depends=`.
struct Walk<'a> {
    available: &'a HashMap<String, PathBuf>,
    modules_dir: &'a Path,
    vermagic: &'a str,
    abi: &'a str,
    /// false = in progress (seeing it again is a cycle), true = done.
    state: BTreeMap<String, bool>,
    order: Vec<Module>,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str, needed_by: &str) -> Result<(), GuestError> {
        match self.state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(GuestError::BadModule {
                    path: self.available.get(name).cloned().unwrap_or_default(),
                    reason: format!("dependency cycle through '{name}'"),
                })
            }
            None => {}
        }
        let path = self
            .available
            .get(name)
            .ok_or_else(|| GuestError::ModuleNotFound {
                module: name.into(),
                dir: self.modules_dir.into(),
                needed_by: needed_by.into(),
            })?
            .clone();
        self.state.insert(name.into(), false);
        check_vermagic(&path, self.vermagic, self.abi)?;
        for dep in read_modinfo(&path)?.depends() {
            self.visit(&dep, name)?;
        }
        self.state.insert(name.into(), true);
        self.order.push(Module {
            name: name.into(),
            path,
        });
        Ok(())
    }
}

/// Extracts `deb` into `dir` with `dpkg-deb -x`.
pub fn extract_deb(deb: &Path, dir: &Path) -> Result<(), GuestError> {
    fs::create_dir_all(dir).map_err(GuestError::io(dir))?;
    process::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir), "dpkg")?;
    Ok(())
}

/// Takes `drivers/uio/uio_pdrv_genirq.c` out of `linux-source-<series>`'s deb (a tar.xz inside
/// the deb's data tar) into `dest`, reading the compressed stream only up to that file.
pub fn extract_driver_source(
    source_deb: &Path,
    series: &str,
    dest: &Path,
) -> Result<(), GuestError> {
    let tmp = dest.with_extension("extract");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(GuestError::io(&tmp))?;
    let inner = format!("./usr/src/linux-source-{series}.tar.xz");
    let member = format!("linux-source-{series}/{SOURCE_FILE}");
    let spawn = |c: &mut Command, package| {
        c.spawn().map_err(|source| GuestError::MissingTool {
            program: c.get_program().to_string_lossy().into_owned(),
            package,
            source,
        })
    };
    let mut deb = spawn(
        Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(source_deb)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "dpkg",
    )?;
    let mut outer = spawn(
        Command::new("tar")
            .args(["-xO", &inner])
            .stdin(deb.stdout.take().ok_or_else(|| GuestError::BadInput {
                path: source_deb.into(),
                reason: "no pipe from dpkg-deb".into(),
            })?)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "tar",
    )?;
    let mut cmd = Command::new("tar");
    cmd.args(["-xJ", "--occurrence=1", "-C"])
        .arg(&tmp)
        .arg(&member)
        .stdin(outer.stdout.take().ok_or_else(|| GuestError::BadInput {
            path: source_deb.into(),
            reason: "no pipe from tar".into(),
        })?);
    let out = cmd.output().map_err(|source| GuestError::MissingTool {
        program: "tar".into(),
        package: "xz-utils",
        source,
    })?;
    // The producers stop on a broken pipe once the last tar has found its file: expected.
    let _ = outer.kill();
    let _ = outer.wait();
    let _ = deb.kill();
    let _ = deb.wait();
    let got = tmp.join(&member);
    if !out.status.success() || !got.is_file() {
        return Err(GuestError::BadInput {
            path: source_deb.into(),
            reason: format!(
                "could not extract {member} from {inner} ({}): {}",
                out.status,
                process::tail(&out)
            ),
        });
    }
    fs::rename(&got, dest).map_err(GuestError::io(dest))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

/// Points the flavour headers' one absolute `include /usr/src/…` line into `root` (where the
/// header debs were extracted), so the kbuild tree works without installing the packages.
pub fn relocate_headers(root: &Path, abi: &str) -> Result<PathBuf, GuestError> {
    let dir = root.join(format!("usr/src/linux-headers-{abi}"));
    let makefile = dir.join("Makefile");
    let text = fs::read_to_string(&makefile).map_err(GuestError::io(&makefile))?;
    let prefix = format!("include {}/usr/src/", root.display());
    let fixed: String = text
        .lines()
        .map(|l| match l.strip_prefix("include /usr/src/") {
            Some(rest) => format!("{prefix}{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    if !fixed.contains(&prefix) {
        return Err(GuestError::BadInput {
            path: makefile,
            reason: "no 'include /usr/src/…' line to point at the extracted common headers".into(),
        });
    }
    fs::write(&makefile, fixed).map_err(GuestError::io(&makefile))?;
    Ok(dir)
}

/// Builds `uio_pdrv_genirq.ko` from `source` against the kbuild tree `headers` into `work`,
/// checks its vermagic, and writes a debug-stripped copy to `dest`.
pub fn build_uio_pdrv_genirq(
    source: &Path,
    headers: &Path,
    work: &Path,
    dest: &Path,
    vermagic: &str,
    abi: &str,
) -> Result<(), GuestError> {
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work).map_err(GuestError::io(work))?;
    let c = work.join(format!("{UIO_PDRV_GENIRQ}.c"));
    fs::copy(source, &c).map_err(GuestError::io(&c))?;
    let kbuild = work.join("Kbuild");
    fs::write(&kbuild, format!("obj-m := {UIO_PDRV_GENIRQ}.o\n"))
        .map_err(GuestError::io(&kbuild))?;
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(headers)
        .arg(format!("M={}", work.display()))
        .args([
            "ARCH=arm64",
            &format!("CROSS_COMPILE={CROSS_COMPILE}"),
            "modules",
        ])
        .env("LC_ALL", "C");
    let out = process::output(&mut make, "make")?;
    let ko = work.join(format!("{UIO_PDRV_GENIRQ}.ko"));
    if !out.status.success() || !ko.is_file() {
        let text = process::tail(&out);
        let hint = if text.contains(&format!("{CROSS_COMPILE}gcc")) {
            format!("\n(the cross compiler comes from {CROSS_PACKAGE}: run scripts/setup-guest.sh)")
        } else {
            String::new()
        };
        return Err(GuestError::CommandFailed {
            command: process::describe(&make),
            status: out.status.to_string(),
            output: format!("{text}{hint}"),
        });
    }
    check_vermagic(&ko, vermagic, abi)?;
    process::run(
        Command::new(format!("{CROSS_COMPILE}strip"))
            .arg("--strip-debug")
            .arg("-o")
            .arg(dest)
            .arg(&ko),
        CROSS_PACKAGE,
    )?;
    check_vermagic(dest, vermagic, abi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modinfo::tests::tiny_module;

    #[test]
    fn module_names_use_underscores() {
        assert_eq!(
            module_name(Path::new("a/net_failover.ko")).as_deref(),
            Some("net_failover")
        );
        assert_eq!(
            module_name(Path::new("snd-hda.ko")).as_deref(),
            Some("snd_hda")
        );
        assert_eq!(module_name(Path::new("x.ko.xz")), None);
    }

    #[test]
    fn load_order_puts_dependencies_first_and_checks_vermagic() {
        let dir = std::env::temp_dir().join(format!("guest-kmod-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut avail = HashMap::new();
        for (name, deps, magic) in [
            ("a", "b,c", "V"),
            ("b", "c", "V"),
            ("c", "", "V"),
            ("bad", "", "W"),
            ("orphan", "missing", "V"),
        ] {
            let p = dir.join(format!("{name}.ko"));
            fs::write(
                &p,
                tiny_module(&[&format!("depends={deps}"), &format!("vermagic={magic}")]),
            )
            .unwrap();
            avail.insert(name.to_string(), p);
        }
        let order = load_order(&["a"], &avail, &dir, "V", "abi").unwrap();
        let names: Vec<_> = order.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);

        let err = load_order(&["bad"], &avail, &dir, "V", "abi").unwrap_err();
        assert!(matches!(err, GuestError::VermagicMismatch { .. }), "{err}");
        assert!(err.to_string().contains("'W'") && err.to_string().contains("linux-headers-abi"));

        let err = load_order(&["orphan"], &avail, &dir, "V", "abi").unwrap_err();
        assert!(
            err.to_string().contains("'missing'") && err.to_string().contains("orphan"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
