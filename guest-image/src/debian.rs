//! Debian's arm64 kernel packages through a private apt state.
//!
//! The host's dpkg architecture setup is never touched: apt runs with its own sources file,
//! lists, cache and status file under the cache directory (`-o Dir::State=… -o Dir::Cache=…
//! -o APT::Architecture=arm64`), so `apt-get update` there and `apt-get download` need nothing
//! from the host but apt itself, its keyrings and the mirror the host already uses.
//!
//! The kernel ABI (`6.1.0-56`) is read from the flavour's meta-package at build time, because
//! the archive keeps only a few ABIs and drops old ones; every other package is then asked for
//! at exactly the kernel image's version, so headers, kbuild and source always match it.
//! Kbuild's host tools (`fixdep`, `modpost`) are executables: they are taken from the *host's*
//! architecture build of `linux-kbuild-<series>` (Multi-Arch: foreign), because the arm64 one
//! would not run on an x86_64 build machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::GuestError;
use crate::process;

/// The architecture of the guest's packages.
pub const GUEST_ARCH: &str = "arm64";

/// A private apt state under one directory.
#[derive(Debug, Clone)]
pub struct Apt {
    root: PathBuf,
    host_arch: String,
}

/// The packages of one kernel build, all at [`KernelSet::version`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelSet {
    /// Kernel ABI with flavour, e.g. `6.1.0-56-cloud-arm64` (= `uname -r`, the modules dir).
    pub abi: String,
    /// Debian version of every package in the set, e.g. `6.1.192-2`.
    pub version: String,
    /// `linux-image-<abi>` (arm64).
    pub image: String,
    /// `linux-headers-<abi>` (arm64).
    pub headers: String,
    /// `linux-headers-<abi without flavour>-common` (all).
    pub headers_common: String,
    /// `linux-kbuild-<series>` (host architecture: its tools run on the build machine).
    pub kbuild: String,
    /// `linux-source-<series>` (all), for the one driver file Debian does not build.
    pub source: String,
}

impl KernelSet {
    const FIELDS: [&'static str; 7] = [
        "abi",
        "version",
        "image",
        "headers",
        "headers_common",
        "kbuild",
        "source",
    ];

    fn fields(&self) -> [&String; 7] {
        [
            &self.abi,
            &self.version,
            &self.image,
            &self.headers,
            &self.headers_common,
            &self.kbuild,
            &self.source,
        ]
    }

    /// `key=value` lines.
    pub fn to_text(&self) -> String {
        Self::FIELDS
            .iter()
            .zip(self.fields())
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Parses [`KernelSet::to_text`]'s output; `None` if a field is missing.
    pub fn from_text(text: &str) -> Option<KernelSet> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(String::from)
        };
        Some(KernelSet {
            abi: get("abi")?,
            version: get("version")?,
            image: get("image")?,
            headers: get("headers")?,
            headers_common: get("headers_common")?,
            kbuild: get("kbuild")?,
            source: get("source")?,
        })
    }
}

/// A downloaded package.
#[derive(Debug, Clone)]
pub struct Deb {
    /// Package name.
    pub package: String,
    /// The `.deb` file.
    pub path: PathBuf,
}

impl Apt {
    /// Sets up (or reuses) the private apt state in `root`. Its sources are the host's own
    /// Debian mirror entries for the host's release (`<codename>`, `-updates`, `-security`),
    /// restricted to `main` and to the guest and host architectures.
    pub fn new(root: &Path) -> Result<Apt, GuestError> {
        let host_arch = process::run(Command::new("dpkg").arg("--print-architecture"), "dpkg")?
            .trim()
            .to_string();
        let apt = Apt {
            root: root.to_path_buf(),
            host_arch,
        };
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/sources.list.d",
            "etc/preferences.d",
            "debs",
        ] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(GuestError::io(&p))?;
        }
        let status = root.join("state/status");
        if !status.exists() {
            fs::write(&status, b"").map_err(GuestError::io(&status))?;
        }
        let sources = host_sources(&apt.host_arch)?;
        let path = root.join("etc/sources.list.d/debian.sources");
        if fs::read_to_string(&path).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&path, sources).map_err(GuestError::io(&path))?;
        }
        Ok(apt)
    }

    /// The architecture of the build machine (`dpkg --print-architecture`).
    pub fn host_arch(&self) -> &str {
        &self.host_arch
    }

    /// The private lists directory.
    pub fn lists_dir(&self) -> PathBuf {
        self.root.join("state/lists")
    }

    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        vec![
            format!("-oDir::State={r}/state"),
            format!("-oDir::State::status={r}/state/status"),
            format!("-oDir::Cache={r}/cache"),
            "-oDir::Etc::SourceList=/dev/null".into(),
            format!("-oDir::Etc::SourceParts={r}/etc/sources.list.d"),
            "-oDir::Etc::Preferences=/dev/null".into(),
            format!("-oDir::Etc::PreferencesParts={r}/etc/preferences.d"),
            format!("-oAPT::Architecture={GUEST_ARCH}"),
            format!("-oAPT::Architectures::={GUEST_ARCH}"),
            format!("-oAPT::Architectures::={}", self.host_arch),
            "-oAcquire::Languages=none".into(),
            // Downloads land in directories only we own; apt's _apt sandbox user could not write them.
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.args(self.options()).env("LC_ALL", "C");
        c
    }

    /// When `update` last changed the lists, `None` if it never fetched any.
    pub fn lists_mtime(&self) -> Option<std::time::SystemTime> {
        fs::read_dir(self.lists_dir())
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max()
    }

    /// How long ago `update` last fetched the lists, `None` if it never did.
    pub fn lists_age(&self) -> Option<std::time::Duration> {
        fs::read_dir(self.lists_dir())
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("_InRelease"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max()
            .map(|t| t.elapsed().unwrap_or_default())
    }

    /// `apt-get update` of the private lists.
    pub fn update(&self) -> Result<(), GuestError> {
        process::run(self.command("apt-get").args(["-q", "update"]), "apt")?;
        Ok(())
    }

    fn missing(&self, package: &str, arch: &str) -> GuestError {
        GuestError::MissingPackage {
            package: package.to_string(),
            arch: arch.to_string(),
            lists: self.lists_dir(),
            hint: "check the name and the kernel flavour; if it was there before, the archive has \
                   dropped that version: build again with --refresh to update the lists"
                .into(),
        }
    }

    /// The candidate version of `package:arch`.
    pub fn version(&self, package: &str, arch: &str) -> Result<String, GuestError> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions", &format!("{package}:{arch}")]);
        let out = process::output(&mut cmd, "apt")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find_map(|l| l.strip_prefix("Version: ")) {
            Some(v) if out.status.success() => Ok(v.trim().to_string()),
            _ => Err(self.missing(package, arch)),
        }
    }

    /// The packages `package:arch` depends on (first alternative of each), in order.
    pub fn depends(&self, package: &str, arch: &str) -> Result<Vec<String>, GuestError> {
        let mut cmd = self.command("apt-cache");
        cmd.args([
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            &format!("{package}:{arch}"),
        ]);
        let out = process::output(&mut cmd, "apt")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.trim().is_empty() {
            return Err(self.missing(package, arch));
        }
        Ok(text
            .lines()
            .filter_map(|l| {
                l.trim_start()
                    .trim_start_matches('|')
                    .strip_prefix("Depends: ")
            })
            .map(|d| d.trim().trim_matches(|c| c == '<' || c == '>').to_string())
            .collect())
    }

    /// Resolves the current kernel of `flavour` (e.g. `cloud-arm64`) through its meta-package
    /// `linux-image-<flavour>` and names the matching headers, kbuild and source packages.
    pub fn resolve_kernel(&self, flavour: &str) -> Result<KernelSet, GuestError> {
        let meta = format!("linux-image-{flavour}");
        let image = self
            .depends(&meta, GUEST_ARCH)?
            .into_iter()
            .find(|d| d.starts_with("linux-image-") && d.ends_with(flavour))
            .ok_or_else(|| GuestError::MissingPackage {
                package: format!("linux-image-<abi>-{flavour} (a dependency of {meta})"),
                arch: GUEST_ARCH.into(),
                lists: self.lists_dir(),
                hint: format!(
                    "{meta} names no kernel image; is '{flavour}' a Debian kernel flavour?"
                ),
            })?;
        let abi = image["linux-image-".len()..].to_string();
        let abi_base = abi
            .strip_suffix(&format!("-{flavour}"))
            .unwrap_or(&abi)
            .to_string();
        // "6.1.0-56" -> series "6.1" (the version in linux-kbuild-6.1 and linux-source-6.1).
        let series: String = abi_base.split('.').take(2).collect::<Vec<_>>().join(".");
        let version = self.version(&image, GUEST_ARCH)?;
        let set = KernelSet {
            headers: format!("linux-headers-{abi}"),
            headers_common: format!("linux-headers-{abi_base}-common"),
            kbuild: format!("linux-kbuild-{series}"),
            source: format!("linux-source-{series}"),
            abi,
            version,
            image,
        };
        for (pkg, arch) in [
            (&set.headers, GUEST_ARCH),
            (&set.headers_common, GUEST_ARCH),
            (&set.kbuild, self.host_arch.as_str()),
            (&set.source, GUEST_ARCH),
        ] {
            let v = self.version(pkg, arch)?;
            // Older builds of a series stay in the archive, so ask for the exact version; only
            // a candidate older than the kernel means the set cannot be complete.
            if v != set.version && !self.has_version(pkg, arch, &set.version)? {
                return Err(GuestError::VersionMismatch {
                    package: pkg.clone(),
                    version: v,
                    kernel_package: set.image.clone(),
                    kernel_version: set.version.clone(),
                });
            }
        }
        Ok(set)
    }

    fn has_version(&self, package: &str, arch: &str, version: &str) -> Result<bool, GuestError> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["madison", &format!("{package}:{arch}")]);
        let out = process::run(&mut cmd, "apt")?;
        Ok(out
            .lines()
            .any(|l| l.split('|').nth(1).map(str::trim) == Some(version)))
    }

    /// Downloads `package:arch` at `version` into the private `debs/` directory, unless it is
    /// already there.
    pub fn download(&self, package: &str, arch: &str, version: &str) -> Result<Deb, GuestError> {
        let dir = self.root.join("debs");
        // apt names files <package>_<version, ':' escaped>_<arch or all>.deb.
        let prefix = format!("{package}_{}_", version.replace(':', "%3a"));
        let find = || -> Option<PathBuf> {
            fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                })
        };
        if let Some(path) = find() {
            return Ok(Deb {
                package: package.into(),
                path,
            });
        }
        let mut cmd = self.command("apt-get");
        cmd.current_dir(&dir)
            .args(["-q", "download", &format!("{package}:{arch}={version}")]);
        let out = process::output(&mut cmd, "apt")?;
        if !out.status.success() {
            let text = process::tail(&out);
            if text.contains("Unable to locate package")
                || text.contains("Can't select")
                || text.contains("not found")
            {
                return Err(self.missing(&format!("{package}={version}"), arch));
            }
            return Err(GuestError::CommandFailed {
                command: process::describe(&cmd),
                status: out.status.to_string(),
                output: text,
            });
        }
        find()
            .map(|path| Deb {
                package: package.into(),
                path,
            })
            .ok_or_else(|| self.missing(&format!("{package}={version}"), arch))
    }

    /// Downloads the whole set: image, headers, headers-common, kbuild (host arch), source.
    pub fn download_kernel(&self, set: &KernelSet) -> Result<KernelDebs, GuestError> {
        let v = &set.version;
        Ok(KernelDebs {
            image: self.download(&set.image, GUEST_ARCH, v)?,
            headers: self.download(&set.headers, GUEST_ARCH, v)?,
            headers_common: self.download(&set.headers_common, GUEST_ARCH, v)?,
            kbuild: self.download(&set.kbuild, &self.host_arch, v)?,
            source: self.download(&set.source, GUEST_ARCH, v)?,
        })
    }
}

/// The downloaded packages of a [`KernelSet`].
#[derive(Debug, Clone)]
pub struct KernelDebs {
    /// Kernel image and modules.
    pub image: Deb,
    /// Flavour headers.
    pub headers: Deb,
    /// Common headers.
    pub headers_common: Deb,
    /// Kbuild host tools.
    pub kbuild: Deb,
    /// Kernel source tarball.
    pub source: Deb,
}

/// One `deb` source of the host: mirror URI and keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    signed_by: Option<String>,
}

/// The private sources file: the host's Debian entries for its own release, its `-updates` and
/// `-security` suites, `main` only, for the guest and host architectures.
fn host_sources(host_arch: &str) -> Result<String, GuestError> {
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .unwrap_or_else(|| "bookworm".into());
    let wanted = [
        codename.clone(),
        format!("{codename}-updates"),
        format!("{codename}-security"),
    ];
    let mut found = Vec::new();
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        if f.extension().is_some_and(|e| e == "sources") {
            found.extend(parse_deb822(&fs::read_to_string(&f).unwrap_or_default()));
        } else if f.extension().is_some_and(|e| e == "list") {
            found.extend(parse_one_line(&fs::read_to_string(&f).unwrap_or_default()));
        }
    }
    found.extend(parse_one_line(
        &fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
    ));
    let mut out = String::new();
    for s in found {
        let suites: Vec<&String> = s.suites.iter().filter(|x| wanted.contains(x)).collect();
        if suites.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "Types: deb\nURIs: {}\nSuites: {}\nComponents: main\nArchitectures: {GUEST_ARCH} {host_arch}\n",
            s.uri,
            suites.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        ));
        if let Some(k) = &s.signed_by {
            out.push_str(&format!("Signed-By: {k}\n"));
        }
        out.push('\n');
    }
    if out.is_empty() {
        return Err(GuestError::BadInput {
            path: PathBuf::from("/etc/apt/sources.list.d"),
            reason: format!(
                "no Debian source for '{codename}' found among the host's apt sources; the guest \
                 kernel is downloaded from the host's own Debian mirror"
            ),
        });
    }
    Ok(out)
}

fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = false;
        let mut uri = None;
        let mut suites = Vec::new();
        let mut signed_by = None;
        let mut components_main = false;
        for line in stanza.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "Types" => types = v.split_whitespace().any(|t| t == "deb"),
                "URIs" => uri = v.split_whitespace().next().map(String::from),
                "Suites" => suites = v.split_whitespace().map(String::from).collect(),
                "Components" => components_main = v.split_whitespace().any(|c| c == "main"),
                "Signed-By" if !v.is_empty() => signed_by = Some(v.to_string()),
                _ => {}
            }
        }
        if let (true, true, Some(uri)) = (types, components_main, uri) {
            out.push(Source {
                uri,
                suites,
                signed_by,
            });
        }
    }
    out
}

fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut signed_by = None;
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(opts) => {
                let Some((opts, rest)) = opts.split_once(']') else {
                    continue;
                };
                signed_by = opts
                    .split_whitespace()
                    .find_map(|o| o.strip_prefix("signed-by="))
                    .map(String::from);
                rest
            }
            None => rest,
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() >= 3 && words[2..].contains(&"main") {
            out.push(Source {
                uri: words[0].into(),
                suites: vec![words[1].into()],
                signed_by,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_stanzas_with_main_are_kept() {
        let text =
            "Types: deb\n# comment\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: https://other\n\
                    Suites: nodistro\nComponents: contrib\n";
        assert_eq!(
            parse_deb822(text),
            vec![Source {
                uri: "http://m/debian".into(),
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
                signed_by: Some("/k.gpg".into()),
            }]
        );
    }

    #[test]
    fn one_line_sources_with_options_are_parsed() {
        let text = "deb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main contrib\n\
                    deb-src http://m/debian bookworm main\n# deb http://x bookworm main\n\
                    deb https://cloud cloud-sdk main\n";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://m/debian");
        assert_eq!(s[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(s[1].suites, vec!["cloud-sdk".to_string()]);
    }
}
