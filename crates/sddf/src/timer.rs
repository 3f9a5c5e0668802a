//! sDDF's timer subsystem ABI: the protocol (include/sddf/timer/protocol.h: a protected
//! procedure call with label [`GET_TIME`] or [`SET_TIMEOUT`], times in nanoseconds) and the
//! client's `timer_client_config_t` (`.timer_client_config`, include/sddf/timer/config.h: which
//! channel reaches the timer driver, as sdfgen writes it); plus the tick/nanosecond
//! conversions a client of a counter-based clock needs to speak it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// PPC label: read the time (reply MR0 = nanoseconds).
pub const GET_TIME: u64 = 0;
/// PPC label: set a timeout of MR0 nanoseconds from now.
pub const SET_TIMEOUT: u64 = 1;

/// `ticks` of a counter running at `freq` Hz, in nanoseconds (128-bit intermediate, saturating).
pub fn ticks_to_ns(ticks: u64, freq: u64) -> u64 {
    if freq == 0 {
        return 0;
    }
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(freq)).unwrap_or(u64::MAX)
}

/// The first tick at or after `ns` nanoseconds of a counter running at `freq` Hz (rounded up so
/// that an alarm never fires early).
pub fn ns_to_ticks(ns: u64, freq: u64) -> u64 {
    u64::try_from((u128::from(ns) * u128::from(freq)).div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// The section name (sDDF's).
pub const SECTION: &str = ".timer_client_config";
/// `SDDF_TIMER_MAGIC`: "sDDF" and the timer subsystem's number, 6.
pub const MAGIC: [u8; 5] = *b"sDDF\x06";
/// sDDF `timer_client_config_t` (6 bytes, byte-aligned), as sdfgen writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TimerClientConfig {
    /// [`MAGIC`].
    pub magic: [u8; 5],
    /// This PD's channel id to the timer (sDDF calls it `driver_id`).
    pub driver_id: u8,
}

const _: () = assert!(core::mem::size_of::<TimerClientConfig>() == 6);

/// What is wrong with a `.timer_client_config` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerConfigError {
    /// The section is not 6 bytes.
    Size(usize),
    /// The magic is not sDDF's timer magic (the section was not written).
    Magic([u8; 5]),
    /// The channel id is above Microkit's 61.
    Channel(u8),
}

impl core::fmt::Display for TimerConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TimerConfigError::Size(n) => write!(f, "{SECTION}: {n} bytes, expected 6"),
            TimerConfigError::Magic(m) => write!(
                f,
                "{SECTION}: magic {m:02x?}, expected \"sDDF\\x06\" (section not written?)"
            ),
            TimerConfigError::Channel(c) => write!(f, "{SECTION}: channel id {c} is above 61"),
        }
    }
}

impl TimerClientConfig {
    /// The section for a client whose channel to the timer is `channel`.
    pub fn new(channel: u8) -> Self {
        TimerClientConfig {
            magic: MAGIC,
            driver_id: channel,
        }
    }

    /// Checks a section and returns the channel id.
    pub fn parse(bytes: &[u8]) -> Result<u8, TimerConfigError> {
        let c = TimerClientConfig::read_from_bytes(bytes)
            .map_err(|_| TimerConfigError::Size(bytes.len()))?;
        if c.magic != MAGIC {
            return Err(TimerConfigError::Magic(c.magic));
        }
        if c.driver_id > 61 {
            return Err(TimerConfigError::Channel(c.driver_id));
        }
        Ok(c.driver_id)
    }
}
