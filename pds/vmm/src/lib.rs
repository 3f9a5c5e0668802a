//! The VMM protection domain's core: everything the Rust VMM decides, free of seL4 calls so it
//! runs in host tests.
//!
//! - [`config`]: the `.vmm_config` section (channel ids, INTIDs, doorbells from the build);
//! - [`fault`]: decoding of the faults seL4 delivers for a vCPU (VMFault syndromes, VCPUFault
//!   HSRs, a guest `hvc` arriving as UnknownSyscall, VGIC maintenance, VPPI events);
//! - [`virtio`]: resetting a passed-through virtio-mmio NIC before the guest boots again;
//! - [`vgic`]: a GICv2 distributor model with virtual IRQ state and list-register management;
//! - [`psci`]: PSCI 1.1 for one vCPU;
//! - [`linux`]: arm64 `Image` header parsing and placement of kernel, device tree and initrd;
//! - [`regs`]: the vCPU registers in `seL4_UserContext` order;
//! - [`vmm`]: the [`Vmm`] that ties them together behind the [`Platform`] trait (MMIO emulation,
//!   UIO doorbells and vIRQs, WFI blocking, stopping the guest on an unexpected fault).
//!
//! `src/main.rs` is the seL4 PD: a Microkit handler implementing [`Platform`] with seL4
//! invocations.
#![no_std]
#![deny(unsafe_code)]

/// The `.vmm_config` ABI, in its own crate ([`vmm_api`]) so that the image build need not
/// compile the VMM.
pub use vmm_api as config;
pub mod fault;
pub mod linux;
pub mod psci;
pub mod regs;
pub mod vgic;
pub mod virtio;
pub mod vmm;

pub use fault::Fault;
pub use vmm::{Config, Doorbell, Platform, Reply, RunState, StopReason, VirqRoute, Vmm};
