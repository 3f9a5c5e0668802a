//! The host tool for the driver VM and the seL4 image. It builds the guest from Debian packages
//! and our Rust code only: Debian's arm64 kernel and modules, `uio_pdrv_genirq.ko` cross-built
//! from Debian's kernel source against Debian's headers, the `guest-init` `/init` and the
//! uio-driver in a Rust-written initramfs, and a device tree written with `vm-fdt` (reference:
//! guest-linux.md, vmm-guest-boot.md §4.2). For the seL4 image it writes what
//! `system_plan::plan` derives from `system.xml`: the driver VM's device tree ([`fdt`]) and
//! every PD's ELF with its config sections patched in ([`sel4::patch_pds`]).
//!
//! Entry points: [`build`] with [`BuildOptions`] and a [`GuestLayout`]; [`fdt::build_dtb`] for
//! a device tree alone; [`sel4`] for the seL4 image's files.
#![deny(unsafe_code)]

mod build;
pub mod debian;
mod error;
pub mod fdt;
pub mod initramfs;
pub mod kmod;
pub mod modinfo;
mod process;
pub mod sel4;
mod stamp;

pub use build::{
    build, default_cache_dir, BuildOptions, GuestImage, Refresh, DEFAULT_FLAVOUR,
    DEFAULT_LISTS_MAX_AGE, GUEST_TARGET,
};
pub use error::GuestError;
/// What the guest's device tree describes (the layout is part of the plan).
pub use system_plan::layout;
pub use system_plan::GuestLayout;
