//! A PD's seL4 ELF as the image build handles it, read with `object`: [`patch_section`] writes a
//! config section (the one ELF patcher of the tree: the seL4 image tool and the on-target tests
//! use it), [`check_pd_image`] checks an image against what the Microkit tool needs, and
//! [`cargo_build_sel4`] builds PDs for seL4 for the tests that check or boot them.
#![deny(unsafe_code)]

mod build;
mod check;
mod patch;

pub use build::{cargo_build_sel4, sel4_target_installed, SEL4_TARGET};
pub use check::{check_pd_image, IMAGE_BASE, PATCHED_SYMBOLS};
pub use patch::{patch_section, PatchError};
