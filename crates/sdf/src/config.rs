//! The target facts validation depends on: architecture, page sizes, core count, address-space top.
//!
//! The Microkit tool reads these from the SDK (`platform_gen.json`, `address_space_constants.json`,
//! the kernel config). netvm targets one board, so [`Config::default`] is `qemu_virt_aarch64`
//! (hypervisor kernel, 4 cores); a caller that targets something else builds its own [`Config`].

/// Processor architecture of the target.
///
/// Only AArch64 exists today; it is still a parameter so that page sizes and the IRQ model
/// never get hard-coded in the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit Arm (GIC interrupts, 4 KiB and 2 MiB pages).
    Aarch64,
}

impl Arch {
    /// Page sizes a memory region may use, smallest first (Microkit `Config::page_sizes`).
    pub fn page_sizes(self) -> &'static [u64] {
        match self {
            Arch::Aarch64 => &[0x1000, 0x20_0000],
        }
    }

    /// The smallest page size: the default `page_size` and the stack-size granule.
    pub fn small_page(self) -> u64 {
        self.page_sizes()[0]
    }

    /// Lower-case name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// Everything about the target that SDF validation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Target architecture.
    pub arch: Arch,
    /// Number of CPU cores; `cpu` attributes must be below it.
    pub num_cores: u8,
    /// `seL4_UserVSpaceTop`, **inclusive** (as in the SDK's `address_space_constants.json`
    /// `vspace_user_top`). The IPC buffer is the page containing it, the stack sits below a
    /// guard page under that.
    pub vspace_user_top: u64,
    /// Highest hardware IRQ number the kernel accepts (`MAX_IRQ` of the seL4 platform).
    pub max_irq: u64,
    /// Accept a region that a virtual machine maps with one cacheability and a PD with the
    /// other (off by default: see [`crate::SdfError::MixedCacheability`]). For a platform whose
    /// guest mappings stay coherent with the PDs' anyway, or a deliberate experiment.
    pub allow_mixed_cacheability: bool,
}

impl Config {
    /// `qemu_virt_aarch64` as built by the Microkit 2.3.0 SDK: hypervisor kernel with a 40-bit
    /// stage-2 address space (user top `0xff_ffff_ffff`), 4 cores (the SDK's `smp_cores`),
    /// seL4 platform `MAX_IRQ` 159.
    pub fn qemu_virt_aarch64() -> Config {
        Config {
            arch: Arch::Aarch64,
            num_cores: 4,
            vspace_user_top: 0xff_ffff_ffff,
            max_irq: 159,
            allow_mixed_cacheability: false,
        }
    }

    /// The default configuration for `arch` (today: `qemu_virt_aarch64` for AArch64).
    pub fn for_arch(arch: Arch) -> Config {
        match arch {
            Arch::Aarch64 => Config::qemu_virt_aarch64(),
        }
    }

    /// Address of a PD's IPC buffer frame: the page holding `vspace_user_top`.
    pub fn pd_ipc_buffer(&self) -> u64 {
        self.vspace_user_top & !(self.arch.small_page() - 1)
    }

    /// Initial stack pointer of a PD: one guard page below the IPC buffer.
    pub fn pd_stack_top(&self) -> u64 {
        self.pd_ipc_buffer() - self.arch.small_page()
    }

    /// Lowest stack address of a PD whose stack is `stack_size` bytes; also the exclusive upper
    /// bound for the PD's `<map>` ranges (Microkit `pd_map_max_vaddr`).
    pub fn pd_stack_bottom(&self, stack_size: u64) -> u64 {
        self.pd_stack_top().saturating_sub(stack_size)
    }

    /// Exclusive upper bound of a virtual machine's guest-physical maps: VMs have no stack or
    /// IPC buffer, so the whole user address space is theirs.
    pub fn vm_map_limit(&self) -> u64 {
        self.vspace_user_top.saturating_add(1)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::qemu_virt_aarch64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_layout_matches_the_microkit_report() {
        // The tool's report on qemu_virt_aarch64 prints `SP: 0xffffffe000 IPC Buffer: 0xfffffff000`.
        let config = Config::default();
        assert_eq!(config.pd_ipc_buffer(), 0xff_ffff_f000);
        assert_eq!(config.pd_stack_top(), 0xff_ffff_e000);
        assert_eq!(config.pd_stack_bottom(0x2000), 0xff_ffff_c000);
        assert_eq!(config.vm_map_limit(), 0x100_0000_0000);
    }
}
