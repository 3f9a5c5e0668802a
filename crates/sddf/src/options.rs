//! netvm's extension to the sDDF net configs: options for the virtualisers, in their own small
//! ELF section `.netvm_net_options` (32 bytes), so that sDDF's config structs stay untouched.
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | 0..8 | `magic` | `netvmop1`; an all-zero section (never patched) means defaults |
//! | 8..12 | `flags` | [`DRIVER_OFFSETS`], [`NO_MULTICAST`], [`STRICT_TX_ORDER`] |
//! | 12..14 | `tx_budget` | descriptors virt_tx takes from one client per round (0 = 32) |
//! | 14..16 | padding | zero |
//! | 16..32 | reserved | zero (counters have their own section, [`crate::stats::SECTION`]) |
//!
//! Defaults (all-zero section): IO addresses towards the driver (sDDF behaviour), multicast
//! delivered to every client, round-robin TX with a budget of 32.
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ELF section the virtualisers read their options from.
pub const SECTION: &str = ".netvm_net_options";
/// Magic of the options section.
pub const MAGIC: [u8; 8] = *b"netvmop1";
/// Exchange offset + `oid` with the driver instead of IO addresses (driver-VM mode).
pub const DRIVER_OFFSETS: u32 = 1 << 0;
/// Drop multicast frames as sDDF 0.7 does (default: deliver them to every client).
pub const NO_MULTICAST: u32 = 1 << 1;
/// Drain TX clients in strict index order as sDDF does (default: round robin with a budget).
pub const STRICT_TX_ORDER: u32 = 1 << 2;
/// Every flag this version knows.
pub const KNOWN_FLAGS: u32 = DRIVER_OFFSETS | NO_MULTICAST | STRICT_TX_ORDER;
/// TX budget used when the section says 0.
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
    /// Neither all zero nor starting with `netvmop1`.
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
                    "netvm_net_options: magic {m:02x?} is neither zero nor \"netvmop1\""
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

    /// Whether multicast frames go to every client.
    pub fn deliver_multicast(&self) -> bool {
        self.flags & NO_MULTICAST == 0
    }

    /// Whether TX drains clients in strict order.
    pub fn strict_tx_order(&self) -> bool {
        self.flags & STRICT_TX_ORDER != 0
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
    fn zero_section_means_sddf_compatible_defaults() {
        let o = NetOptions::parse(&[0; 32]).unwrap();
        assert!(!o.driver_offsets());
        assert!(o.deliver_multicast());
        assert!(!o.strict_tx_order());
        assert_eq!(o.tx_budget(), 32);
    }

    #[test]
    fn flags_round_trip_and_garbage_is_refused() {
        let o = NetOptions::new(DRIVER_OFFSETS | STRICT_TX_ORDER, 8);
        let p = NetOptions::parse(o.as_bytes()).unwrap();
        assert!(p.driver_offsets() && p.strict_tx_order() && p.deliver_multicast());
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
