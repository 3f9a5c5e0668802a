//! Why a guest build failed. Every message names the package, file, module or region involved
//! and, where there is one, what to do about it.

use std::path::PathBuf;

/// A guest build error.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// {path}: {source}
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// could not run `{program}` ({source}); it comes from the Debian package {package}: run scripts/setup-guest.sh
    #[error("could not run `{program}` ({source}); it comes from the Debian package {package}: run scripts/setup-guest.sh")]
    MissingTool {
        /// The program.
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// `{command}` failed ({status}):\n{output}
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// Debian package '{package}' ({arch}) not found in the private apt lists under {lists}: {hint}
    #[error("Debian package '{package}' ({arch}) not found in the private apt lists under {lists}: {hint}")]
    MissingPackage {
        /// The package (with version if one was asked for).
        package: String,
        /// The architecture asked for.
        arch: String,
        /// The private apt lists directory.
        lists: PathBuf,
        /// What to do.
        hint: String,
    },
    /// package {package} {version} does not match kernel {kernel_package} {kernel_version}: the archive moved on between downloads; run the build again with --refresh to fetch a consistent set
    #[error("package {package} {version} does not match kernel {kernel_package} {kernel_version}: the archive moved on between downloads; run the build again with --refresh to fetch a consistent set")]
    VersionMismatch {
        /// The headers/kbuild/source package.
        package: String,
        /// Its version.
        version: String,
        /// The kernel image package.
        kernel_package: String,
        /// Its version.
        kernel_version: String,
    },
    /// module {module}: vermagic '{found}' does not match the kernel's '{kernel}'; it would not load. Rebuild it against linux-headers-{abi} (delete {module} and run the build again)
    #[error("module {module}: vermagic '{found}' does not match the kernel's '{kernel}'; it would not load. Rebuild it against linux-headers-{abi} (delete {module} and run the build again)")]
    VermagicMismatch {
        /// The module file.
        module: PathBuf,
        /// Its vermagic.
        found: String,
        /// The kernel's (from Debian's own modules).
        kernel: String,
        /// The kernel ABI, e.g. `6.1.0-56-cloud-arm64`.
        abi: String,
    },
    /// kernel module '{module}' not found under {dir} (needed by {needed_by}): the Debian kernel flavour lacks it; pick a flavour that builds it
    #[error("kernel module '{module}' not found under {dir} (needed by {needed_by}): the Debian kernel flavour lacks it; pick a flavour that builds it")]
    ModuleNotFound {
        /// Module name.
        module: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The module that depends on it, or "the guest".
        needed_by: String,
    },
    /// {path}: not a loadable aarch64 kernel module: {reason}
    #[error("{path}: not a loadable aarch64 kernel module: {reason}")]
    BadModule {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The guest's layout (the plan's part of it) is incomplete or inconsistent.
    #[error(transparent)]
    Plan(#[from] system_plan::PlanError),
    /// writing the device tree failed: {reason}
    #[error("writing the device tree failed: {reason}")]
    Fdt {
        /// vm-fdt's message.
        reason: String,
    },
    /// {path}: {reason}
    #[error("{path}: {reason}")]
    BadInput {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl GuestError {
    /// An [`GuestError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> GuestError {
        let path = path.into();
        move |source| GuestError::Io { path, source }
    }
}
