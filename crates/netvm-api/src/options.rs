//! netvm's extension to the sDDF net configs (not in sDDF 0.7): options for the virtualisers,
//! in their own small ELF section `.netvm_net_options` (32 bytes), so that sDDF's config structs
//! stay untouched.
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..8 | `magic` | `netvmop2`; an all-zero section (never patched) means defaults |
//! | 8..12 | `flags` | [`DRIVER_OFFSETS`], [`MULTICAST_TO_ALL`], [`FAIR_TX`], [`LAZY_COMPLETIONS`] |
//! | 12..14 | `tx_budget` | with [`FAIR_TX`]: descriptors virt_tx takes from one client per round (0 = 32) |
//! | 14..16 | padding | zero |
//! | 16..32 | reserved | zero (counters have their own section, [`crate::stats::SECTION`]) |
//!
//! Defaults (an all-zero section, which is what sdfgen and `objcopy` leave): exactly sDDF 0.7's
//! virtualisers. IO addresses towards the driver; multicast dropped (only a client's own MAC
//! and broadcast are delivered); TX drained client by client in index order, each completely;
//! the driver asked for a signal after every drain of its TX free queue. netvm's own behaviours
//! are switched on by a flag each, which netvm's tools set (`sdf::net::options_sections`).
//! (`netvmop1` sections had the opposite defaults; they are refused rather than misread.)
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ELF section the virtualisers read their options from.
pub const SECTION: &str = ".netvm_net_options";
/// Magic of the options section.
pub const MAGIC: [u8; 8] = *b"netvmop2";
/// Exchange offset + `oid` with the driver instead of IO addresses (driver-VM mode).
pub const DRIVER_OFFSETS: u32 = 1 << 0;
/// Deliver multicast frames to every client (sDDF 0.7 drops them, which breaks IPv6 neighbour
/// discovery in the clients).
pub const MULTICAST_TO_ALL: u32 = 1 << 1;
/// Serve TX clients round robin, at most `tx_budget` descriptors each per round (sDDF drains
/// client 0 completely before client 1).
pub const FAIR_TX: u32 = 1 << 2;
/// Ask the driver to signal TX completions only while some client runs low on buffers (sDDF
/// asks after every drain: from a driver VM each such signal is a VM exit).
pub const LAZY_COMPLETIONS: u32 = 1 << 3;
/// netvm's behaviours beyond sDDF, all of which its tools switch on.
pub const NETVM_BEHAVIOURS: u32 = MULTICAST_TO_ALL | FAIR_TX | LAZY_COMPLETIONS;
/// Every flag this version knows.
pub const KNOWN_FLAGS: u32 = DRIVER_OFFSETS | NETVM_BEHAVIOURS;
/// TX budget used when the section says 0 (and [`FAIR_TX`] is on).
pub const DEFAULT_TX_BUDGET: u16 = 32;

/// The options section, exactly as in the ELF.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetOptions {
    /// [`MAGIC`], or zero for defaults.
    pub magic: [u8; 8],
    /// Option bits.
    pub flags: u32,
    /// Per-client TX budget per round.
    pub tx_budget: u16,
    _pad: u16,
    _reserved: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<NetOptions>() == 32);

/// What is wrong with an options section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsError {
    /// The section is not 32 bytes.
    Size(usize),
    /// Neither all zero nor starting with `netvmop2`.
    Magic([u8; 8]),
    /// Flags this version does not know (a newer generator?).
    UnknownFlags(u32),
}

impl core::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OptionsError::Size(n) => write!(f, "netvm_net_options: {n} bytes, expected 32"),
            OptionsError::Magic(m) => {
                write!(
                    f,
                    "netvm_net_options: magic {m:02x?} is neither zero nor \"netvmop2\""
                )
            }
            OptionsError::UnknownFlags(x) => {
                write!(f, "netvm_net_options: unknown flag bits {x:#x}")
            }
        }
    }
}

impl NetOptions {
    /// Options with the given flags.
    pub fn new(flags: u32, tx_budget: u16) -> Self {
        NetOptions {
            magic: MAGIC,
            flags,
            tx_budget,
            _pad: 0,
            _reserved: [0; 16],
        }
    }

    /// Parses a section; all zero means defaults.
    pub fn parse(bytes: &[u8]) -> Result<NetOptions, OptionsError> {
        let o = NetOptions::read_from_bytes(bytes).map_err(|_| OptionsError::Size(bytes.len()))?;
        if o == NetOptions::default() {
            return Ok(o);
        }
        if o.magic != MAGIC {
            return Err(OptionsError::Magic(o.magic));
        }
        if o.flags & !KNOWN_FLAGS != 0 {
            return Err(OptionsError::UnknownFlags(o.flags & !KNOWN_FLAGS));
        }
        Ok(o)
    }

    /// Whether the driver side uses offsets + oid.
    pub fn driver_offsets(&self) -> bool {
        self.flags & DRIVER_OFFSETS != 0
    }

    /// Whether multicast frames go to every client (else they are dropped, as in sDDF).
    pub fn deliver_multicast(&self) -> bool {
        self.flags & MULTICAST_TO_ALL != 0
    }

    /// Whether TX serves clients round robin (else in strict order, as in sDDF).
    pub fn fair_tx(&self) -> bool {
        self.flags & FAIR_TX != 0
    }

    /// Whether the driver signals TX completions only when a client runs low (else after
    /// every drain, as in sDDF).
    pub fn lazy_completions(&self) -> bool {
        self.flags & LAZY_COMPLETIONS != 0
    }

    /// Per-client TX budget per round.
    pub fn tx_budget(&self) -> u16 {
        if self.tx_budget == 0 {
            DEFAULT_TX_BUDGET
        } else {
            self.tx_budget
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_section_means_sddf_semantics() {
        let o = NetOptions::parse(&[0; 32]).unwrap();
        assert!(!o.driver_offsets());
        assert!(!o.deliver_multicast());
        assert!(!o.fair_tx());
        assert!(!o.lazy_completions());
    }

    #[test]
    fn netvm_behaviours_are_each_a_flag() {
        let o = NetOptions::parse(NetOptions::new(NETVM_BEHAVIOURS, 0).as_bytes()).unwrap();
        assert!(o.deliver_multicast() && o.fair_tx() && o.lazy_completions());
        assert!(!o.driver_offsets());
        assert_eq!(o.tx_budget(), DEFAULT_TX_BUDGET);
    }

    #[test]
    fn sections_with_the_old_defaults_are_refused() {
        let mut old = NetOptions::new(0, 0);
        old.magic = *b"netvmop1";
        assert!(matches!(
            NetOptions::parse(old.as_bytes()),
            Err(OptionsError::Magic(_))
        ));
    }

    #[test]
    fn flags_round_trip_and_garbage_is_refused() {
        let o = NetOptions::new(DRIVER_OFFSETS | FAIR_TX, 8);
        let p = NetOptions::parse(o.as_bytes()).unwrap();
        assert!(p.driver_offsets() && p.fair_tx() && !p.deliver_multicast());
        assert_eq!(p.tx_budget(), 8);
        let mut bad = o;
        bad.magic[0] = b'x';
        assert!(matches!(
            NetOptions::parse(bad.as_bytes()),
            Err(OptionsError::Magic(_))
        ));
        let mut unknown = o;
        unknown.flags |= 1 << 9;
        assert_eq!(
            NetOptions::parse(unknown.as_bytes()),
            Err(OptionsError::UnknownFlags(1 << 9))
        );
        assert_eq!(NetOptions::parse(&[0; 31]), Err(OptionsError::Size(31)));
    }
}
