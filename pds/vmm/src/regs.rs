//! The vCPU thread's registers in `seL4_UserContext` order, as `TCB_ReadRegisters` returns them
//! and `TCB_WriteRegisters` takes them (microkit-abi.md §4.6).
//!
//! Both invocations transfer a *prefix* of this order, so the VMM reads and writes only as far as
//! the register it needs ([`UserContext::prefix_for`]): a fault on `str w8` needs 12 words, one
//! that only advances the pc needs 1.

use core::fmt;

/// Number of words in `seL4_UserContext` on aarch64.
pub const USER_CONTEXT_WORDS: usize = 36;

/// Index of the pc.
pub const PC: usize = 0;
/// Index of sp (the guest's SP_EL0; its SP_EL1 lives in the VCPU object).
pub const SP: usize = 1;
/// Index of spsr (the guest PSTATE).
pub const SPSR: usize = 2;

/// PSTATE for entering Linux: EL1h (M = 0b0101) with D, A, I and F masked, as the arm64 boot
/// protocol requires ("all forms of interrupts must be masked in PSTATE.DAIF").
pub const SPSR_EL1H_DAIF_MASKED: u64 = 0x3c5;

/// Registers of the vCPU thread in `seL4_UserContext` order:
/// pc, sp, spsr, x0–x8, x16, x17, x18, x29, x30, x9–x15, x19–x28, tpidr_el0, tpidrro_el0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UserContext(pub [u64; USER_CONTEXT_WORDS]);

impl Default for UserContext {
    fn default() -> Self {
        Self([0; USER_CONTEXT_WORDS])
    }
}

impl UserContext {
    /// The `seL4_UserContext` index of general register `n` (0..=30); `None` for 31 (xzr).
    pub const fn slot(n: u32) -> Option<usize> {
        match n {
            0..=8 => Some(3 + n as usize),
            16..=18 => Some(12 + (n as usize - 16)),
            29 => Some(15),
            30 => Some(16),
            9..=15 => Some(17 + (n as usize - 9)),
            19..=28 => Some(24 + (n as usize - 19)),
            _ => None,
        }
    }

    /// How many leading words a read or write must transfer to include general register `n`
    /// (and the pc): 1 for xzr.
    pub const fn prefix_for(n: u32) -> usize {
        match Self::slot(n) {
            Some(slot) => slot + 1,
            None => 1,
        }
    }

    /// General register `n`; xzr (31) reads as zero.
    pub fn x(&self, n: u32) -> u64 {
        Self::slot(n).map_or(0, |s| self.0[s])
    }

    /// Sets general register `n`; a write to xzr (31) is discarded, as the hardware does.
    pub fn set_x(&mut self, n: u32, value: u64) {
        if let Some(s) = Self::slot(n) {
            self.0[s] = value;
        }
    }

    /// The pc.
    pub fn pc(&self) -> u64 {
        self.0[PC]
    }

    /// Sets the pc.
    pub fn set_pc(&mut self, pc: u64) {
        self.0[PC] = pc;
    }
}

impl fmt::Display for UserContext {
    /// A register dump, four registers a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pc   {:#018x}  sp   {:#018x}  spsr {:#018x}",
            self.0[PC], self.0[SP], self.0[SPSR]
        )?;
        for n in 0..31u32 {
            write!(f, "x{n:<3} {:#018x}", self.x(n))?;
            if n % 4 == 3 || n == 30 {
                writeln!(f)?;
            } else {
                write!(f, "  ")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_sel4_user_context_order() {
        // Every slot 3..34 belongs to exactly one general register.
        let mut seen = [false; USER_CONTEXT_WORDS];
        for n in 0..31 {
            let s = UserContext::slot(n).unwrap();
            assert!(!seen[s], "slot {s} used twice");
            seen[s] = true;
        }
        assert!(seen[3..34].iter().all(|&b| b));
        assert_eq!(UserContext::slot(8), Some(11));
        assert_eq!(UserContext::slot(16), Some(12));
        assert_eq!(UserContext::slot(30), Some(16));
        assert_eq!(UserContext::slot(9), Some(17));
        assert_eq!(UserContext::slot(28), Some(33));
        assert_eq!(UserContext::slot(31), None);
        assert_eq!(UserContext::prefix_for(8), 12);
        assert_eq!(UserContext::prefix_for(31), 1);
    }

    #[test]
    fn xzr_reads_zero_and_ignores_writes() {
        let mut ctx = UserContext([7; USER_CONTEXT_WORDS]);
        ctx.set_x(31, 5);
        assert_eq!(ctx.x(31), 0);
        assert_eq!(ctx.0, [7; USER_CONTEXT_WORDS]);
        ctx.set_x(19, 0xabc);
        assert_eq!(ctx.0[24], 0xabc);
    }
}
