//! A PD's seL4 ELF as the image build handles it, read with `object`: [`patch_section`] writes a
//! config section (the one ELF patcher of the tree: the seL4 image tool and the on-target tests
//! use it), [`check_pd_image`] checks an image against what the Microkit tool needs.
#![deny(unsafe_code)]

mod check;
mod patch;

pub use check::{check_pd_image, IMAGE_BASE, PATCHED_SYMBOLS};
pub use patch::{patch_section, PatchError};
