//! Decoding of the faults seL4 delivers for a vCPU, from the fault label and message registers
//! exactly as Microkit hands them to `fault()` (microkit-abi.md §4.6, libvmm-driver-vm.md §6.3).
//!
//! Two facts shape this module (vmm-guest-boot.md §4.3–4.5):
//! - a guest `hvc` does **not** arrive as a VCPUFault with EC 0x16: seL4 routes it down its
//!   syscall path, so the VMM sees an `UnknownSyscall` fault whose MRs hold x0–x7 and whose
//!   reply can write them back; a guest `smc` arrives as a VCPUFault with EC 0x17;
//! - the VMFault `FSR` is the guest's ESR_EL2 (the syndrome), and `Addr` is the exact faulting
//!   guest-physical address.

use core::fmt;

/// seL4 fault labels (`seL4_FaultType`, MCS numbering), as the runtime defines them.
pub use microkit::fault_label as label;

/// Number of message registers of an aarch64 `UnknownSyscall` fault: x0–x7, FaultIP, SP, LR,
/// SPSR, Syscall.
pub const UNKNOWN_SYSCALL_MRS: usize = 13;
/// Index of FaultIP among the `UnknownSyscall` MRs; a reply of `FAULT_IP_MR + 1` registers
/// writes x0–x7 and the pc back.
pub const FAULT_IP_MR: usize = 8;

/// Exception classes (ESR_EL2.EC) the VMM looks at.
pub mod ec {
    /// WFI or WFE trapped (HCR_EL2.TWI/TWE).
    pub const WFX: u32 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u32 = 0x16;
    /// SMC from AArch64 (trapped by HCR_EL2.TSC).
    pub const SMC64: u32 = 0x17;
    /// MSR, MRS or system instruction trapped.
    pub const SYSREG64: u32 = 0x18;
    /// Instruction abort from a lower EL (stage-2 fault on an instruction fetch).
    pub const IABT_LOWER: u32 = 0x20;
    /// Data abort from a lower EL (stage-2 fault on a load or store).
    pub const DABT_LOWER: u32 = 0x24;
}

/// An exception syndrome (ESR_EL2 / seL4's "HSR" and the VMFault "FSR").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Esr(pub u32);

impl Esr {
    /// Exception class, bits 31:26.
    pub const fn ec(self) -> u32 {
        self.0 >> 26
    }

    /// Instruction length bit (1 = 32-bit instruction), bit 25.
    pub const fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// Instruction-specific syndrome, bits 24:0.
    pub const fn iss(self) -> u32 {
        self.0 & 0x01ff_ffff
    }

    /// A short name of the exception class.
    pub fn ec_name(self) -> &'static str {
        match self.ec() {
            0x00 => "unknown reason",
            ec::WFX => "WFI/WFE",
            0x07 => "SVE/SIMD/FP access",
            0x15 => "SVC64",
            ec::HVC64 => "HVC64",
            ec::SMC64 => "SMC64",
            ec::SYSREG64 => "MSR/MRS/system instruction",
            ec::IABT_LOWER => "instruction abort from lower EL",
            0x22 => "PC alignment",
            ec::DABT_LOWER => "data abort from lower EL",
            0x26 => "SP alignment",
            0x2f => "SError",
            _ => "other",
        }
    }

    /// The data-abort view of the syndrome, if this is a data abort from the guest.
    pub fn data_abort(self) -> Option<DataAbort> {
        (self.ec() == ec::DABT_LOWER).then_some(DataAbort(self.0))
    }

    /// The trapped system-register access, if this is EC 0x18.
    pub fn sysreg(self) -> Option<SysRegAccess> {
        (self.ec() == ec::SYSREG64).then_some(SysRegAccess(self.iss()))
    }

    /// For EC 0x01: whether the trapped instruction was WFE (else WFI).
    pub const fn is_wfe(self) -> bool {
        self.iss() & 1 != 0
    }
}

/// The ISS of a data abort (ESR_EL2.EC = 0x24), field by field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DataAbort(u32);

impl DataAbort {
    /// ISV, bit 24: SAS, SSE, SRT, SF and AR are valid (a single load or store to a general
    /// register; pairs, writebacks and SIMD accesses leave it clear).
    pub const fn isv(self) -> bool {
        self.0 & (1 << 24) != 0
    }

    /// SAS, bits 23:22: log2 of the access size.
    pub const fn sas(self) -> u32 {
        (self.0 >> 22) & 3
    }

    /// The access width in bytes (1, 2, 4 or 8).
    pub const fn width(self) -> u32 {
        1 << self.sas()
    }

    /// SSE, bit 21: a load sign-extends.
    pub const fn sse(self) -> bool {
        self.0 & (1 << 21) != 0
    }

    /// SRT, bits 20:16: the transfer register (31 = xzr / wzr).
    pub const fn srt(self) -> u32 {
        (self.0 >> 16) & 0x1f
    }

    /// SF, bit 15: the register is 64-bit (else 32-bit).
    pub const fn sf(self) -> bool {
        self.0 & (1 << 15) != 0
    }

    /// WnR, bit 6: the access was a write.
    pub const fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// S1PTW, bit 7: the fault happened on a stage-1 page-table walk.
    pub const fn s1ptw(self) -> bool {
        self.0 & (1 << 7) != 0
    }

    /// DFSC, bits 5:0: the fault status code.
    pub const fn dfsc(self) -> u32 {
        self.0 & 0x3f
    }

    /// A short name of the fault status code.
    pub fn dfsc_name(self) -> &'static str {
        match self.dfsc() {
            0x04..=0x07 => "translation fault",
            0x08..=0x0b => "access flag fault",
            0x0c..=0x0f => "permission fault",
            0x10 => "synchronous external abort",
            0x21 => "alignment fault",
            _ => "other fault",
        }
    }

    /// Extends `raw` (the low `width` bytes of a loaded value) as the load instruction does:
    /// sign extension when SSE is set, truncation to 32 bits for a W register.
    pub fn extend_load(self, raw: u64) -> u64 {
        let bits = 8 * self.width();
        let raw = if bits == 64 {
            raw
        } else {
            raw & ((1 << bits) - 1)
        };
        let value = if self.sse() && bits < 64 && raw & (1 << (bits - 1)) != 0 {
            raw | !((1u64 << bits) - 1)
        } else {
            raw
        };
        if self.sf() {
            value
        } else {
            value & 0xffff_ffff
        }
    }
}

/// The ISS of a trapped MSR/MRS (EC 0x18).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegAccess(u32);

impl SysRegAccess {
    /// Direction, bit 0: 1 = read (MRS), 0 = write (MSR).
    pub const fn is_read(self) -> bool {
        self.0 & 1 != 0
    }

    /// Rt, bits 9:5.
    pub const fn rt(self) -> u32 {
        (self.0 >> 5) & 0x1f
    }

    /// (Op0, Op1, CRn, CRm, Op2) of the register.
    pub const fn encoding(self) -> (u32, u32, u32, u32, u32) {
        (
            (self.0 >> 20) & 3,
            (self.0 >> 14) & 7,
            (self.0 >> 10) & 0xf,
            (self.0 >> 1) & 0xf,
            (self.0 >> 17) & 7,
        )
    }
}

/// A stage-2 fault of the guest (`seL4_Fault_VMFault`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VmFault {
    /// The guest pc of the faulting instruction.
    pub ip: u64,
    /// The faulting guest-physical address, page offset included.
    pub addr: u64,
    /// Whether the fault was on an instruction fetch.
    pub prefetch: bool,
    /// The syndrome.
    pub fsr: Esr,
}

/// A guest `hvc` (or another trap down seL4's syscall path): `seL4_Fault_UnknownSyscall`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnknownSyscall {
    /// x0–x7 at the trap.
    pub x: [u64; 8],
    /// The pc of the trapping instruction (seL4 sets FaultIP to the `hvc` itself).
    pub fault_ip: u64,
    /// sp.
    pub sp: u64,
    /// x30.
    pub lr: u64,
    /// The guest PSTATE.
    pub spsr: u64,
    /// The syscall number seL4 saw (x7).
    pub syscall: u64,
}

/// A fault of a vCPU, decoded from its label and message registers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Stage-2 translation or permission fault: MMIO to an emulated or unmapped page.
    VmFault(VmFault),
    /// A trapped instruction (WFI/WFE, SMC, MSR/MRS): MR0 HSR.
    VcpuFault(Esr),
    /// A guest `hvc` (MR0–7 x0–x7, MR8 FaultIP, MR9 SP, MR10 LR, MR11 SPSR, MR12 syscall).
    UnknownSyscall(UnknownSyscall),
    /// The guest EOI'd the vIRQ in list register `index` (MR0; `None` when seL4 found none).
    VgicMaintenance {
        /// The list register, if seL4 identified one.
        index: Option<u8>,
    },
    /// A virtual PPI fired while the vCPU ran (the virtual timer, INTID 27); seL4 keeps it
    /// masked until the VMM acknowledges it.
    VppiEvent {
        /// The INTID.
        irq: u64,
    },
    /// An exception seL4 does not classify further (MR0 FaultIP .. MR4 Code).
    UserException {
        /// pc.
        ip: u64,
        /// sp.
        sp: u64,
        /// PSTATE.
        spsr: u64,
        /// Exception number.
        number: u64,
        /// Exception code.
        code: u64,
    },
    /// Any other label (cap fault, timeout): the raw label and the first four MRs.
    Other {
        /// The seL4 fault label.
        label: u64,
        /// MR0–MR3.
        mrs: [u64; 4],
    },
}

impl Fault {
    /// Decodes a fault from its label and message registers (`mr(i)` = MR i). Every label and
    /// every register value decodes to something: a malformed fault is reported, never a panic.
    pub fn decode(label: u64, mr: impl Fn(usize) -> u64) -> Fault {
        match label {
            label::VM_FAULT => Fault::VmFault(VmFault {
                ip: mr(0),
                addr: mr(1),
                prefetch: mr(2) != 0,
                fsr: Esr(mr(3) as u32),
            }),
            label::VCPU_FAULT => Fault::VcpuFault(Esr(mr(0) as u32)),
            label::UNKNOWN_SYSCALL => Fault::UnknownSyscall(UnknownSyscall {
                x: core::array::from_fn(&mr),
                fault_ip: mr(8),
                sp: mr(9),
                lr: mr(10),
                spsr: mr(11),
                syscall: mr(12),
            }),
            label::VGIC_MAINTENANCE => Fault::VgicMaintenance {
                index: u8::try_from(mr(0)).ok(),
            },
            label::VPPI_EVENT => Fault::VppiEvent { irq: mr(0) },
            label::USER_EXCEPTION => Fault::UserException {
                ip: mr(0),
                sp: mr(1),
                spsr: mr(2),
                number: mr(3),
                code: mr(4),
            },
            label => Fault::Other {
                label,
                mrs: [mr(0), mr(1), mr(2), mr(3)],
            },
        }
    }

    /// The number of message registers this fault's message has (what a handler must save
    /// before any invocation overwrites the IPC buffer).
    pub const fn message_len(label: u64) -> usize {
        match label {
            label::VM_FAULT => 4,
            label::UNKNOWN_SYSCALL => UNKNOWN_SYSCALL_MRS,
            label::USER_EXCEPTION => 5,
            label::VCPU_FAULT | label::VGIC_MAINTENANCE | label::VPPI_EVENT => 1,
            _ => 4,
        }
    }
}

impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR {:#010x}: EC {:#04x} ({})",
            self.0,
            self.ec(),
            self.ec_name()
        )?;
        if let Some(da) = self.data_abort() {
            write!(
                f,
                ", {} {}",
                da.dfsc_name(),
                if da.is_write() { "on write" } else { "on read" }
            )?;
            write!(f, " (DFSC {:#04x})", da.dfsc())?;
            if da.isv() {
                write!(
                    f,
                    ", ISV: {} bytes, {}{}{}",
                    da.width(),
                    if da.sf() { 'x' } else { 'w' },
                    da.srt(),
                    if da.sse() { ", sign-extended" } else { "" }
                )?;
            } else {
                write!(f, ", no valid syndrome (ISV=0)")?;
            }
            if da.s1ptw() {
                write!(f, ", on a stage-1 walk")?;
            }
        } else if let Some(sr) = self.sysreg() {
            let (op0, op1, crn, crm, op2) = sr.encoding();
            write!(
                f,
                ", {} S{op0}_{op1}_C{crn}_C{crm}_{op2} x{}",
                if sr.is_read() { "MRS" } else { "MSR" },
                sr.rt()
            )?;
        } else if self.ec() == ec::WFX {
            write!(f, ", {}", if self.is_wfe() { "WFE" } else { "WFI" })?;
        }
        Ok(())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::VmFault(v) => write!(
                f,
                "VMFault at guest-physical {:#x} (pc {:#x}{}): {}",
                v.addr,
                v.ip,
                if v.prefetch { ", instruction fetch" } else { "" },
                v.fsr
            ),
            Fault::VcpuFault(esr) => write!(f, "VCPUFault: {esr}"),
            Fault::UnknownSyscall(s) => {
                write!(
                    f,
                    "UnknownSyscall (guest hvc) at pc {:#x}: syscall {:#x}, sp {:#x}, lr {:#x}, spsr {:#x}",
                    s.fault_ip, s.syscall, s.sp, s.lr, s.spsr
                )?;
                for (i, x) in s.x.iter().enumerate() {
                    write!(f, ", x{i} {x:#x}")?;
                }
                Ok(())
            }
            Fault::VgicMaintenance { index: Some(i) } => {
                write!(f, "VGICMaintenance: list register {i}")
            }
            Fault::VgicMaintenance { index: None } => {
                write!(f, "VGICMaintenance: no list register identified")
            }
            Fault::VppiEvent { irq } => write!(f, "VPPIEvent: INTID {irq}"),
            Fault::UserException { ip, sp, spsr, number, code } => write!(
                f,
                "UserException at pc {ip:#x}: number {number:#x}, code {code:#x}, sp {sp:#x}, spsr {spsr:#x}"
            ),
            Fault::Other { label, mrs } => write!(
                f,
                "fault label {label} ({}): MR0 {:#x} MR1 {:#x} MR2 {:#x} MR3 {:#x}",
                match *label {
                    label::CAP_FAULT => "CapFault",
                    label::TIMEOUT => "Timeout",
                    _ => "unknown",
                },
                mrs[0],
                mrs[1],
                mrs[2],
                mrs[3]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    fn mrs(values: &[u64]) -> impl Fn(usize) -> u64 + '_ {
        move |i| values.get(i).copied().unwrap_or(0)
    }

    #[test]
    fn uio_doorbell_store_from_the_probe() {
        // vmm-guest-boot.md §2: `str w8` to 0x30001040, FSR 0x93880047.
        let f = Fault::decode(
            label::VM_FAULT,
            mrs(&[0x2240d4, 0x3000_1040, 0, 0x9388_0047]),
        );
        let Fault::VmFault(vm) = f else {
            panic!("{f:?}")
        };
        assert_eq!(
            (vm.ip, vm.addr, vm.prefetch),
            (0x2240d4, 0x3000_1040, false)
        );
        assert_eq!(vm.fsr.ec(), ec::DABT_LOWER);
        let da = vm.fsr.data_abort().unwrap();
        assert!(da.isv() && da.is_write() && !da.sse() && !da.sf());
        assert_eq!((da.sas(), da.width(), da.srt(), da.dfsc()), (2, 4, 8, 0x07));
        let text = format!("{f}");
        assert!(
            text.contains("0x30001040") && text.contains("w8") && text.contains("on write"),
            "{text}"
        );
        assert!(text.contains("translation fault"), "{text}");
    }

    #[test]
    fn sixty_four_bit_store_from_a_pd() {
        // microkit-abi.md §4.6: a PD's `str x9, [0xdead000]`, FSR 0x93c98046.
        let da = Esr(0x93c9_8046).data_abort().unwrap();
        assert!(da.isv() && da.is_write() && da.sf());
        assert_eq!((da.width(), da.srt(), da.dfsc()), (8, 9, 0x06));
    }

    #[test]
    fn loads_extend_like_the_instruction() {
        // ldrsb w1: SAS 0, SSE, 32-bit register.
        let ldrsb_w = DataAbort((0x24 << 26) | (1 << 24) | (1 << 21) | (1 << 16));
        assert_eq!(ldrsb_w.extend_load(0x80), 0xffff_ff80);
        // ldrsh x1: SAS 1, SSE, SF.
        let ldrsh_x = DataAbort((1 << 24) | (1 << 22) | (1 << 21) | (1 << 15));
        assert_eq!(ldrsh_x.extend_load(0x8001), 0xffff_ffff_ffff_8001);
        // ldr w1: no extension, upper bits of the raw value dropped.
        let ldr_w = DataAbort((1 << 24) | (2 << 22));
        assert_eq!(ldr_w.extend_load(0x1_2345_6789), 0x2345_6789);
        assert!(!ldr_w.is_write());
    }

    #[test]
    fn vcpu_fault_classes() {
        let wfi = Esr((ec::WFX << 26) | (1 << 25));
        let wfe = Esr((ec::WFX << 26) | (1 << 25) | 1);
        assert!(!wfi.is_wfe() && wfe.is_wfe());
        assert_eq!(
            format!("{}", Fault::decode(label::VCPU_FAULT, mrs(&[wfi.0.into()]))),
            "VCPUFault: ESR 0x06000000: EC 0x01 (WFI/WFE), WFI"
        );
        let smc = Fault::decode(label::VCPU_FAULT, mrs(&[0x5e00_0000]));
        assert_eq!(smc, Fault::VcpuFault(Esr(0x5e00_0000)));
        assert!(format!("{smc}").contains("SMC64"));
        // MRS x3, CNTPCT_EL0 (S3_3_C14_C0_1), read.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (3 << 5) | 1;
        let mrs_trap = Esr((ec::SYSREG64 << 26) | iss);
        let sr = mrs_trap.sysreg().unwrap();
        assert!(sr.is_read());
        assert_eq!((sr.rt(), sr.encoding()), (3, (3, 3, 14, 0, 1)));
        assert!(format!("{mrs_trap}").contains("MRS S3_3_C14_C0_1 x3"));
    }

    #[test]
    fn hvc_arrives_as_unknown_syscall() {
        let regs: std::vec::Vec<u64> = [
            0x8400_0000,
            1,
            2,
            3,
            4,
            5,
            6,
            0,
            0x4020_00a8,
            0x4fff_0000,
            0x30,
            0x3c5,
            0,
        ]
        .to_vec();
        let f = Fault::decode(label::UNKNOWN_SYSCALL, mrs(&regs));
        let Fault::UnknownSyscall(s) = f else {
            panic!("{f:?}")
        };
        assert_eq!(s.x, [0x8400_0000, 1, 2, 3, 4, 5, 6, 0]);
        assert_eq!(
            (s.fault_ip, s.sp, s.lr, s.spsr, s.syscall),
            (0x4020_00a8, 0x4fff_0000, 0x30, 0x3c5, 0)
        );
        assert!(format!("{f}").contains("hvc"));
    }

    #[test]
    fn gic_and_ppi_events_and_others() {
        assert_eq!(
            Fault::decode(label::VGIC_MAINTENANCE, mrs(&[2])),
            Fault::VgicMaintenance { index: Some(2) }
        );
        assert_eq!(
            Fault::decode(label::VGIC_MAINTENANCE, mrs(&[u64::MAX])),
            Fault::VgicMaintenance { index: None }
        );
        assert_eq!(
            Fault::decode(label::VPPI_EVENT, mrs(&[27])),
            Fault::VppiEvent { irq: 27 }
        );
        let cap = Fault::decode(label::CAP_FAULT, mrs(&[1, 2, 3, 4]));
        assert_eq!(
            cap,
            Fault::Other {
                label: 1,
                mrs: [1, 2, 3, 4]
            }
        );
        assert!(format!("{cap}").contains("CapFault"));
        let ue = Fault::decode(
            label::USER_EXCEPTION,
            mrs(&[0x1000, 0x2000, 0x3c5, 0, 0x2000000]),
        );
        assert!(format!("{ue}").contains("UserException at pc 0x1000"));
        assert_eq!(Fault::message_len(label::UNKNOWN_SYSCALL), 13);
    }
}
