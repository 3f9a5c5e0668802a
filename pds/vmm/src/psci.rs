//! PSCI 1.1 (Arm DEN 0022) for a guest with a single vCPU, over SMC or HVC (SMCCC calling
//! convention: function id in x0, arguments in x1–x3, result in x0).
//!
//! What the Debian kernel calls during boot and power-off (vmm-guest-boot.md §4.3): VERSION,
//! MIGRATE_INFO_TYPE, FEATURES (for SMCCC_VERSION, CPU_SUSPEND, SYSTEM_SUSPEND, SYSTEM_RESET2)
//! and SYSTEM_OFF. Answering FEATURES(SMCCC_VERSION) with NOT_SUPPORTED keeps the kernel on
//! SMCCC 1.0, so it makes no Spectre-workaround calls the VMM would have to answer.

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32).
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
/// `CPU_SUSPEND` (SMC64).
pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `CPU_ON` (SMC64).
pub const CPU_ON_64: u32 = 0xc400_0003;
/// `AFFINITY_INFO` (SMC32).
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// `AFFINITY_INFO` (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// `MIGRATE_INFO_TYPE`.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u32 = 0x8400_000a;

/// The version reported: PSCI 1.1 (major in bits 31:16, minor in 15:0).
pub const PSCI_VERSION_1_1: u64 = 0x0001_0001;

/// PSCI return codes (signed, in x0).
pub mod ret {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// The function is not implemented (also the SMCCC "unknown function" value).
    pub const NOT_SUPPORTED: i64 = -1;
    /// A bad argument, e.g. an MPIDR naming no CPU.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// The operation is refused.
    pub const DENIED: i64 = -3;
    /// CPU_ON for a CPU that is already on.
    pub const ALREADY_ON: i64 = -4;
}

/// `MIGRATE_INFO_TYPE`: no Trusted OS that would need migrating.
pub const MIGRATE_NONE: u64 = 2;

/// The MPIDR affinity bits of the only vCPU (Aff3..Aff0 = 0).
const BOOT_MPIDR: u64 = 0;
const AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// What the VMM must do for a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Write this value to x0 and resume after the call.
    Return(u64),
    /// CPU_SUSPEND: a standby state, i.e. wait like WFI, then return SUCCESS.
    Standby,
    /// CPU_OFF of the only vCPU: the guest stops running.
    CpuOff,
    /// SYSTEM_OFF: stop the guest.
    SystemOff,
    /// SYSTEM_RESET: boot the guest again.
    SystemReset,
}

fn ret(code: i64) -> Action {
    Action::Return(code as u64)
}

/// Whether `function` (a 32-bit SMCCC function id) is one [`handle`] implements.
pub fn implemented(function: u32) -> bool {
    matches!(
        function,
        VERSION
            | CPU_SUSPEND_32
            | CPU_SUSPEND_64
            | CPU_OFF
            | CPU_ON_32
            | CPU_ON_64
            | AFFINITY_INFO_32
            | AFFINITY_INFO_64
            | MIGRATE_INFO_TYPE
            | SYSTEM_OFF
            | SYSTEM_RESET
            | FEATURES
    )
}

/// Handles an SMCCC call with x0–x3 = `args` (from SMC or HVC alike).
///
/// CPU_ON: the guest has one vCPU, so the boot CPU's MPIDR answers ALREADY_ON and any other
/// INVALID_PARAMETERS — the two codes the spec gives CPU_ON for these cases (DENIED is not a
/// CPU_ON return value). Every function id that is not PSCI, or not implemented, answers
/// NOT_SUPPORTED, which is also SMCCC's "unknown function" value.
pub fn handle(args: [u64; 4]) -> Action {
    // SMCCC: bits 63:32 of x0 are ignored for a function id.
    let function = args[0] as u32;
    let target_is_boot_cpu = args[1] & AFFINITY_MASK == BOOT_MPIDR;
    match function {
        VERSION => Action::Return(PSCI_VERSION_1_1),
        CPU_SUSPEND_32 | CPU_SUSPEND_64 => Action::Standby,
        CPU_OFF => Action::CpuOff,
        CPU_ON_32 | CPU_ON_64 if target_is_boot_cpu => ret(ret::ALREADY_ON),
        CPU_ON_32 | CPU_ON_64 => ret(ret::INVALID_PARAMETERS),
        // AFFINITY_INFO: x2 = lowest affinity level; 0 = ON.
        AFFINITY_INFO_32 | AFFINITY_INFO_64 if args[2] > 3 => ret(ret::INVALID_PARAMETERS),
        AFFINITY_INFO_32 | AFFINITY_INFO_64 if target_is_boot_cpu => ret(ret::SUCCESS),
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => ret(ret::INVALID_PARAMETERS),
        MIGRATE_INFO_TYPE => Action::Return(MIGRATE_NONE),
        SYSTEM_OFF => Action::SystemOff,
        SYSTEM_RESET => Action::SystemReset,
        // FEATURES: 0 = implemented (for CPU_SUSPEND: original power_state format, bit 1 = 0).
        FEATURES if implemented(args[1] as u32) && args[1] >> 32 == 0 => ret(ret::SUCCESS),
        _ => ret(ret::NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x0(action: Action) -> i64 {
        match action {
            Action::Return(v) => v as i64,
            other => panic!("expected a return value, got {other:?}"),
        }
    }

    #[test]
    fn debian_boot_sequence() {
        // The seven calls the Debian kernel made in the probe (vmm-guest-boot.md §4.3).
        assert_eq!(x0(handle([0x8400_0000, 0, 0, 0])), 0x10001);
        assert_eq!(x0(handle([0x8400_0006, 0, 0, 0])), 2);
        for feature in [0x8000_0000u64, 0xc400_0012] {
            assert_eq!(x0(handle([0x8400_000a, feature, 0, 0])), ret::NOT_SUPPORTED);
        }
        assert_eq!(x0(handle([0x8400_000a, 0xc400_0001, 0, 0])), ret::SUCCESS);
        assert_eq!(x0(handle([0x8400_000a, 0x8400_0008, 0, 0])), ret::SUCCESS);
        assert_eq!(handle([0x8400_0008, 0, 0, 0]), Action::SystemOff);
    }

    #[test]
    fn single_vcpu_answers() {
        assert_eq!(
            x0(handle([CPU_ON_64.into(), 0, 0x4000_0000, 0])),
            ret::ALREADY_ON
        );
        assert_eq!(
            x0(handle([CPU_ON_64.into(), 1, 0x4000_0000, 0])),
            ret::INVALID_PARAMETERS
        );
        assert_eq!(
            x0(handle([CPU_ON_32.into(), 0x100, 0, 0])),
            ret::INVALID_PARAMETERS
        );
        assert_eq!(x0(handle([AFFINITY_INFO_64.into(), 0, 0, 0])), 0);
        assert_eq!(
            x0(handle([AFFINITY_INFO_64.into(), 2, 0, 0])),
            ret::INVALID_PARAMETERS
        );
        assert_eq!(handle([CPU_OFF.into(), 0, 0, 0]), Action::CpuOff);
        assert_eq!(handle([SYSTEM_RESET.into(), 0, 0, 0]), Action::SystemReset);
        assert_eq!(handle([CPU_SUSPEND_64.into(), 0, 0, 0]), Action::Standby);
    }

    #[test]
    fn unknown_and_non_psci_ids_are_not_supported() {
        for id in [
            0x8400_0005u64,
            0x8400_0012,
            0xc400_0012,
            0x8000_0000,
            0x8200_0000,
            0,
        ] {
            assert_eq!(x0(handle([id, 0, 0, 0])), ret::NOT_SUPPORTED, "{id:#x}");
        }
        // The upper half of x0 is ignored (SMCCC).
        assert_eq!(x0(handle([0xffff_ffff_8400_0000, 0, 0, 0])), 0x10001);
    }
}
