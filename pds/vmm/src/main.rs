//! The `vmm` protection domain on seL4: boots the embedded Linux guest on vCPU 0 of its
//! virtual machine and serves its faults with the [`vmm`] core.
//!
//! Build (images embedded at build time, see `build.rs`):
//! `VMM_GUEST_KERNEL=… VMM_GUEST_INITRD=… VMM_GUEST_DTB=… cargo build -p vmm --release
//! --target aarch64-unknown-none` with `MICROKIT_SDK`/`MICROKIT_CONFIG` set; the system is
//! `examples/vmm-boot/system.xml`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
mod sel4_pd;

#[cfg(target_os = "none")]
microkit::protection_domain!(sel4_pd::VmmPd);

/// The VMM needs a hypervisor kernel; on the host there is no VM to run.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vmm: this PD runs a virtual machine and exists only on seL4 (aarch64-unknown-none)");
    std::process::exit(2);
}
