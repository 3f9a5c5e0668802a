//! The whole guest build: Debian kernel and modules, our `uio_pdrv_genirq.ko`, the Rust `/init`,
//! uio-driver and kernel-echo (the reference mode's echo server), the initramfs and the device
//! tree. Each step is skipped when the hash of its inputs matches the stamp next to its output.
//!
//! Where things live:
//! * the cache (default `$XDG_CACHE_HOME/netvm/guest`, else `~/.cache/netvm/guest`): the private
//!   apt state and downloaded debs (`apt/`), the extracted kernel (`kernel/<abi>_<version>/`),
//!   headers (`headers/…`), driver source (`source/…`) and the built module (`module/…`);
//! * the output directory: `Image` (uncompressed arm64 kernel, as a VMM loads it),
//!   `initrd.cpio.gz`, `guest.dtb`, `guest.manifest` (what went in) and `work/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::debian::{Apt, KernelDebs, KernelSet};
use crate::error::GuestError;
use crate::initramfs::{self, Entry};
use crate::kmod::{self, Module};
use crate::stamp::{self, InputHash};
use crate::{fdt, process};
use system_plan::GuestLayout;

/// The Rust target of everything that runs in the guest.
pub const GUEST_TARGET: &str = "aarch64-unknown-linux-musl";
/// The Debian kernel flavour: smaller than generic `arm64` and has everything the guest needs
/// (virtio-mmio as a module, PL011, GICv2, PACKET) (guest-linux.md §8).
pub const DEFAULT_FLAVOUR: &str = "cloud-arm64";

/// Lists younger than this are used as they are: the kernel ABI is still resolved from the
/// meta-package, and a dropped package version is detected at download time.
pub const DEFAULT_LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// When `apt-get update` runs on the private apt state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Every build.
    Always,
    /// When the lists are missing or older than this.
    IfOlderThan(Duration),
    /// Only when there are no lists at all (offline builds from the cache).
    Never,
}

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory.
    pub out: PathBuf,
    /// Cache directory for apt state, debs, extracted packages and the built module.
    pub cache: PathBuf,
    /// Debian kernel flavour (`cloud-arm64` or `arm64`).
    pub flavour: String,
    /// When to refresh the private apt lists.
    pub refresh: Refresh,
    /// The guest's device tree contents.
    pub layout: GuestLayout,
    /// The workspace whose `guest-init` (for `/init`) and `uio-driver` packages are cross-built.
    pub workspace: PathBuf,
    /// Cargo's target directory for those builds.
    pub target_dir: PathBuf,
    /// An aarch64 uio-driver binary to use instead of cross-building the workspace's.
    pub uio_driver: Option<PathBuf>,
    /// Print progress to stderr.
    pub verbose: bool,
}

impl BuildOptions {
    /// Defaults: the [`default_cache_dir`], the cloud flavour, this workspace and its target
    /// directory (`CARGO_TARGET_DIR` if set).
    pub fn new(out: impl Into<PathBuf>, layout: GuestLayout) -> BuildOptions {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        BuildOptions {
            out: out.into(),
            cache: default_cache_dir(),
            flavour: DEFAULT_FLAVOUR.into(),
            refresh: Refresh::IfOlderThan(DEFAULT_LISTS_MAX_AGE),
            layout,
            workspace,
            target_dir,
            uio_driver: None,
            verbose: true,
        }
    }
}

/// `$XDG_CACHE_HOME/netvm/guest`, else `$HOME/.cache/netvm/guest`, else `build/cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("netvm/guest");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/netvm/guest"),
        None => PathBuf::from("build/cache"),
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// The uncompressed arm64 kernel `Image`.
    pub kernel: PathBuf,
    /// The gzip'd cpio initramfs.
    pub initrd: PathBuf,
    /// The flattened device tree.
    pub dtb: PathBuf,
    /// The kernel packages used.
    pub kernel_set: KernelSet,
    /// Modules in the initramfs, in load order.
    pub modules: Vec<String>,
}

struct Step<'a> {
    verbose: bool,
    t0: &'a Instant,
}

impl Step<'_> {
    fn log(&self, msg: impl AsRef<str>) {
        if self.verbose {
            eprintln!(
                "guest [{:6.1}s] {}",
                self.t0.elapsed().as_secs_f64(),
                msg.as_ref()
            );
        }
    }
}

fn mkdir(p: &Path) -> Result<(), GuestError> {
    fs::create_dir_all(p).map_err(GuestError::io(p))
}

fn read(p: &Path) -> Result<Vec<u8>, GuestError> {
    fs::read(p).map_err(GuestError::io(p))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Extracts `debs` into `dir` unless a stamp says it already holds exactly those packages.
fn extract_once(debs: &[&Path], dir: &Path, log: &Step) -> Result<bool, GuestError> {
    let mut h = InputHash::default();
    for d in debs {
        h.add("deb", file_name(d).as_bytes());
    }
    let hash = h.hex();
    if stamp::fresh(dir, &hash) {
        return Ok(false);
    }
    log.log(format!(
        "extracting {} into {}",
        debs.iter()
            .map(|d| file_name(d))
            .collect::<Vec<_>>()
            .join(" "),
        dir.display()
    ));
    let _ = fs::remove_dir_all(dir);
    for d in debs {
        kmod::extract_deb(d, dir)?;
    }
    stamp::record(dir, &hash)?;
    Ok(true)
}

/// Builds the guest (see the module docs); fails with a message naming the package, module
/// or region at fault.
pub fn build(opts: &BuildOptions) -> Result<GuestImage, GuestError> {
    let t0 = Instant::now();
    let log = Step {
        verbose: opts.verbose,
        t0: &t0,
    };
    opts.layout.validate()?;
    // Kbuild's M= and the relocated headers' include line need absolute paths.
    let mut opts = opts.clone();
    for dir in [&mut opts.out, &mut opts.cache] {
        mkdir(dir)?;
        *dir = fs::canonicalize(&*dir).map_err(GuestError::io(&*dir))?;
    }
    let opts = &opts;
    let work = opts.out.join("work");
    mkdir(&work)?;

    // 1. Which kernel, and its packages.
    let apt = Apt::new(&opts.cache.join("apt"))?;
    let stale = match (opts.refresh, apt.lists_age()) {
        (_, None) | (Refresh::Always, _) => true,
        (Refresh::IfOlderThan(max), Some(age)) => age > max,
        (Refresh::Never, Some(_)) => false,
    };
    if stale {
        log.log("apt-get update (private arm64 state)");
        apt.update()?;
    }
    let set = resolve_cached(&apt, &opts.flavour, &opts.cache)?;
    log.log(format!("kernel {} {}", set.image, set.version));
    let debs = apt.download_kernel(&set)?;
    let tag = format!("{}_{}", set.abi, set.version);

    // 2. Kernel image and Debian's modules.
    let kdir = opts.cache.join("kernel").join(&tag);
    extract_once(&[&debs.image.path], &kdir, &log)?;
    let image_src = kdir.join(format!("boot/vmlinuz-{}", set.abi));
    let modules_dir = kdir.join(format!("lib/modules/{}", set.abi));
    let kernel = opts.out.join("Image");
    let image_hash = InputHash::default().add("image", tag.as_bytes()).hex();
    if !stamp::fresh(&kernel, &image_hash) {
        fs::copy(&image_src, &kernel).map_err(GuestError::io(&image_src))?;
        stamp::record(&kernel, &image_hash)?;
    }
    let mut available = kmod::index(&modules_dir)?;
    // The kernel's vermagic, as its own modules carry it (uio is in every Debian flavour).
    let uio = available
        .get("uio")
        .cloned()
        .ok_or_else(|| GuestError::ModuleNotFound {
            module: "uio".into(),
            dir: modules_dir.clone(),
            needed_by: kmod::UIO_PDRV_GENIRQ.into(),
        })?;
    let vermagic = kmod::read_modinfo(&uio)?
        .get("vermagic")
        .map(String::from)
        .ok_or_else(|| GuestError::BadModule {
            path: uio.clone(),
            reason: "no vermagic".into(),
        })?;

    // 3. uio_pdrv_genirq.ko against the matching headers.
    let ko = build_uio_module(opts, &set, &debs, &tag, &vermagic, &work, &log)?;
    available.insert(kmod::UIO_PDRV_GENIRQ.into(), ko);
    let modules = kmod::load_order(&kmod::WANTED, &available, &modules_dir, &vermagic, &set.abi)?;

    // 4. and 5. The Rust parts, cross-built, in the initramfs.
    let initrd = write_initramfs(opts, &work, &modules, &log)?;

    // 6. Device tree.
    let initrd_size = fs::metadata(&initrd)
        .map_err(GuestError::io(&initrd))?
        .len();
    let dtb = opts.out.join("guest.dtb");
    stamp::write_if_changed(&dtb, &fdt::build_dtb(&opts.layout, initrd_size)?)?;

    let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    let manifest = format!(
        "kernel_package={}\nkernel_version={}\nabi={}\nvermagic={vermagic}\nmodules={}\nbootargs={}\n",
        set.image,
        set.version,
        set.abi,
        names.join(","),
        opts.layout.full_bootargs()
    );
    stamp::write_if_changed(&opts.out.join("guest.manifest"), manifest.as_bytes())?;
    log.log("done");
    Ok(GuestImage {
        kernel,
        initrd,
        dtb,
        kernel_set: set,
        modules: names,
    })
}

/// Step 3 of [`build`]: `uio_pdrv_genirq.ko` built from Debian's source against the kernel's
/// own headers (both extracted once into the cache), unless the cached module is fresh.
fn build_uio_module(
    opts: &BuildOptions,
    set: &KernelSet,
    debs: &KernelDebs,
    tag: &str,
    vermagic: &str,
    work: &Path,
    log: &Step<'_>,
) -> Result<PathBuf, GuestError> {
    let hdir = opts.cache.join("headers").join(tag);
    if extract_once(
        &[
            &debs.headers.path,
            &debs.headers_common.path,
            &debs.kbuild.path,
        ],
        &hdir,
        log,
    )? {
        kmod::relocate_headers(&hdir, &set.abi)?;
    }
    let kbuild_tree = hdir.join(format!("usr/src/linux-headers-{}", set.abi));
    let series = set.source.trim_start_matches("linux-source-").to_string();
    let src = opts
        .cache
        .join("source")
        .join(&set.version)
        .join("uio_pdrv_genirq.c");
    let src_hash = InputHash::default()
        .add("deb", file_name(&debs.source.path).as_bytes())
        .hex();
    if !stamp::fresh(&src, &src_hash) {
        log.log(format!(
            "extracting {} from {}",
            src.display(),
            file_name(&debs.source.path)
        ));
        mkdir(src.parent().unwrap_or(Path::new(".")))?;
        kmod::extract_driver_source(&debs.source.path, &series, &src)?;
        stamp::record(&src, &src_hash)?;
    }
    let ko = opts
        .cache
        .join("module")
        .join(tag)
        .join(format!("{}.ko", kmod::UIO_PDRV_GENIRQ));
    let gcc = process::run(
        Command::new(format!("{}gcc-12", kmod::CROSS_COMPILE)).arg("--version"),
        kmod::CROSS_PACKAGE,
    )?;
    let ko_hash = InputHash::default()
        .add("source", &read(&src)?)
        .add("headers", tag.as_bytes())
        .add("gcc", gcc.as_bytes())
        .hex();
    if !stamp::fresh(&ko, &ko_hash) {
        log.log(format!("building {}", ko.display()));
        mkdir(ko.parent().unwrap_or(Path::new(".")))?;
        kmod::build_uio_pdrv_genirq(
            &src,
            &kbuild_tree,
            &work.join("module"),
            &ko,
            vermagic,
            &set.abi,
        )?;
        stamp::record(&ko, &ko_hash)?;
    }
    Ok(ko)
}

/// Steps 4 and 5 of [`build`]: `/init` (guest-init), the uio-driver and the kernel echo
/// cross-built and stripped, written with `modules` into `initrd.cpio.gz` (when its inputs
/// changed).
fn write_initramfs(
    opts: &BuildOptions,
    work: &Path,
    modules: &[Module],
    log: &Step<'_>,
) -> Result<PathBuf, GuestError> {
    log.log(format!(
        "cargo build --target {GUEST_TARGET} (init, uio-driver, kernel-echo)"
    ));
    let init = cross_build(opts, "guest-init", "init", &[])?;
    let driver = match &opts.uio_driver {
        Some(bin) => bin.clone(),
        None => cross_build(opts, "uio-driver", "uio-driver", &[])?,
    };
    // The reference mode's echo server (`netvm.mode=echo`, see the init's cmdline module).
    let echo = cross_build(opts, "kernel-echo", "kernel-echo", &[])?;
    let init = strip(&init, &work.join("init"))?;
    let driver = strip(&driver, &work.join("uio-driver"))?;
    let echo = strip(&echo, &work.join("kernel-echo"))?;

    // The initramfs.
    let initrd = opts.out.join("initrd.cpio.gz");
    let entries = initramfs_entries(&init, &driver, &echo, modules)?;
    let mut h = InputHash::default();
    for e in &entries {
        h.add("entry", format!("{e:?}").as_bytes());
    }
    let initrd_hash = h.hex();
    if !stamp::fresh(&initrd, &initrd_hash) {
        log.log(format!("writing {}", initrd.display()));
        let bytes = initramfs::write(&entries).map_err(GuestError::io(&initrd))?;
        stamp::write_if_changed(&initrd, &bytes)?;
        stamp::record(&initrd, &initrd_hash)?;
    }
    Ok(initrd)
}

/// [`Apt::resolve_kernel`], remembered per flavour until the lists change (each apt-cache call
/// parses all lists: about a second).
fn resolve_cached(apt: &Apt, flavour: &str, cache: &Path) -> Result<KernelSet, GuestError> {
    let file = cache.join(format!("apt/resolved-{flavour}"));
    let hash = InputHash::default()
        .add("flavour", flavour.as_bytes())
        .add("lists-age", format!("{:?}", apt.lists_mtime()).as_bytes())
        .hex();
    if stamp::fresh(&file, &hash) {
        if let Some(set) = fs::read_to_string(&file)
            .ok()
            .and_then(|t| KernelSet::from_text(&t))
        {
            return Ok(set);
        }
    }
    let set = apt.resolve_kernel(flavour)?;
    stamp::write_if_changed(&file, set.to_text().as_bytes())?;
    stamp::record(&file, &hash)?;
    Ok(set)
}

fn initramfs_entries(
    init: &[u8],
    driver: &[u8],
    echo: &[u8],
    modules: &[Module],
) -> Result<Vec<Entry>, GuestError> {
    let mut entries = initramfs::skeleton();
    entries.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: init.to_vec(),
    });
    entries.push(Entry::File {
        path: initramfs::UIO_DRIVER.into(),
        mode: 0o755,
        data: driver.to_vec(),
    });
    entries.push(Entry::File {
        path: initramfs::KERNEL_ECHO.into(),
        mode: 0o755,
        data: echo.to_vec(),
    });
    let mut order = String::new();
    for m in modules {
        entries.push(Entry::File {
            path: format!("lib/modules/{}.ko", m.name),
            mode: 0o644,
            data: read(&m.path)?,
        });
        order.push_str(&m.name);
        order.push('\n');
    }
    entries.push(Entry::File {
        path: initramfs::MODULE_ORDER.into(),
        mode: 0o644,
        data: order.into_bytes(),
    });
    Ok(entries)
}

/// `cargo build --release --target aarch64-unknown-linux-musl -p <package> --bin <bin>`, linked
/// with rust-lld (the musl target ships its own crt objects, so no C toolchain is involved).
fn cross_build(
    opts: &BuildOptions,
    package: &str,
    bin: &str,
    extra: &[&str],
) -> Result<PathBuf, GuestError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&opts.workspace)
        .args([
            "build",
            "--release",
            "--target",
            GUEST_TARGET,
            "-p",
            package,
            "--bin",
            bin,
        ])
        .args(extra)
        .arg("--target-dir")
        .arg(&opts.target_dir)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld");
    process::run(&mut cmd, "rustup (Rust toolchain)")?;
    Ok(opts.target_dir.join(GUEST_TARGET).join("release").join(bin))
}

/// A debug-stripped copy of `bin` at `dest`, returned as bytes.
fn strip(bin: &Path, dest: &Path) -> Result<Vec<u8>, GuestError> {
    process::run(
        Command::new(format!("{}strip", kmod::CROSS_COMPILE))
            .arg("--strip-debug")
            .arg("-o")
            .arg(dest)
            .arg(bin),
        kmod::CROSS_PACKAGE,
    )?;
    read(dest)
}
