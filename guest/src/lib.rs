//! Builds the driver VM's guest from Debian packages and our Rust code only: Debian's arm64
//! kernel and modules, `uio_pdrv_genirq.ko` cross-built from Debian's kernel source against
//! Debian's headers, a Rust `/init` and the uio-driver in a Rust-written initramfs, and a device
//! tree written with `vm-fdt` (reference: guest-linux.md, vmm-guest-boot.md §4.2).
//!
//! Entry points: [`build`] with [`BuildOptions`] and a [`GuestLayout`]; [`fdt::build_dtb`] for
//! a device tree alone; [`system`] for the seL4 image's pieces derived from `system.xml`
//! (the driver VM's device tree, the VMM's `.vmm_config`, every PD's patched ELF). The `init` binary of this package (built with `--no-default-features`
//! for `aarch64-unknown-linux-musl`) is the guest's PID 1.
//!
//! Without the default `builder` feature this library is empty: that is how `/init` is
//! cross-built without compiling the builder's dependencies for the guest.
#![deny(unsafe_code)]

#[cfg(feature = "builder")]
mod build;
#[cfg(feature = "builder")]
pub mod debian;
#[cfg(feature = "builder")]
mod elf;
#[cfg(feature = "builder")]
mod error;
#[cfg(feature = "builder")]
pub mod fdt;
#[cfg(feature = "builder")]
pub mod initramfs;
#[cfg(feature = "builder")]
pub mod kmod;
#[cfg(feature = "builder")]
pub mod layout;
#[cfg(feature = "builder")]
pub mod modinfo;
#[cfg(feature = "builder")]
mod process;
#[cfg(feature = "builder")]
mod stamp;
#[cfg(feature = "builder")]
pub mod system;

#[cfg(feature = "builder")]
pub use build::{
    build, default_cache_dir, BuildOptions, GuestImage, Refresh, DEFAULT_FLAVOUR,
    DEFAULT_LISTS_MAX_AGE, GUEST_TARGET,
};
#[cfg(feature = "builder")]
pub use error::GuestError;
#[cfg(feature = "builder")]
pub use layout::GuestLayout;
