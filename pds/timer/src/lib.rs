//! The timer PD's logic: sDDF's timer protocol over one hardware alarm, free of seL4 calls so
//! that it runs in host tests.
//!
//! # Protocol (sDDF `include/sddf/timer/protocol.h`)
//!
//! A client makes a protected procedure call on its channel to this (passive, highest-priority)
//! PD:
//! - label [`GET_TIME`]: the reply carries the time since an arbitrary fixed point (boot) in
//!   nanoseconds in MR0;
//! - label [`SET_TIMEOUT`]: MR0 is a timeout in nanoseconds relative to now; when it has passed,
//!   this PD notifies the client's channel once. Each client has one timeout: a new one replaces
//!   the pending one (sDDF's drivers do the same). A notification may still arrive for a
//!   timeout that was replaced after it fired, so clients treat it as "check your deadlines".
//!
//! Any other label is answered with an empty reply, as sDDF's drivers do, and counted.
//!
//! [`Timer`] keeps one deadline per channel and tells its [`Alarm`] (the hardware) when the
//! earliest one is due; [`Timer::expire`] hands back the channels to notify.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub use sddf::timer::{ns_to_ticks, ticks_to_ns, GET_TIME, SET_TIMEOUT};

/// Channel ids a Microkit PD can have (0..=61).
pub const CHANNELS: usize = 62;

/// The hardware: a monotonic nanosecond clock and one alarm.
pub trait Alarm {
    /// Nanoseconds since an arbitrary fixed point; never decreases.
    fn now_ns(&mut self) -> u64;
    /// Raises the timer IRQ at (or soon after) `deadline_ns`, or never (`None`), replacing any
    /// earlier setting.
    fn set(&mut self, deadline_ns: Option<u64>);
}

/// Why a request was not served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestError {
    /// The label is neither [`GET_TIME`] nor [`SET_TIMEOUT`].
    UnknownLabel(u64),
    /// A timeout on a channel this PD cannot notify (or an id beyond 61).
    NoNotifyChannel(u8),
}

/// Per-channel timeouts over one [`Alarm`].
#[derive(Debug)]
pub struct Timer {
    deadlines: [Option<u64>; CHANNELS],
    /// Requests refused (unknown label, channel without notification).
    pub refused: u64,
}

impl Default for Timer {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer {
    /// No timeouts pending.
    pub const fn new() -> Self {
        Timer {
            deadlines: [None; CHANNELS],
            refused: 0,
        }
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.iter().flatten().copied().min()
    }

    /// Serves a PPC from `channel` with `label` and `mr0`; returns the reply's MR0 if it has
    /// one. `can_notify` says whether this PD may notify `channel`.
    pub fn request(
        &mut self,
        alarm: &mut impl Alarm,
        channel: u8,
        can_notify: bool,
        label: u64,
        mr0: u64,
    ) -> Result<Option<u64>, RequestError> {
        match label {
            GET_TIME => Ok(Some(alarm.now_ns())),
            SET_TIMEOUT => {
                let Some(slot) = self
                    .deadlines
                    .get_mut(usize::from(channel))
                    .filter(|_| can_notify)
                else {
                    self.refused += 1;
                    return Err(RequestError::NoNotifyChannel(channel));
                };
                *slot = Some(alarm.now_ns().saturating_add(mr0));
                let next = self.next_deadline();
                alarm.set(next);
                Ok(None)
            }
            other => {
                self.refused += 1;
                Err(RequestError::UnknownLabel(other))
            }
        }
    }

    /// The timer IRQ (or any wake-up): returns the bitmask of channels whose timeout has passed,
    /// clears them and re-arms the alarm for the next one.
    pub fn expire(&mut self, alarm: &mut impl Alarm) -> u64 {
        let now = alarm.now_ns();
        let mut due = 0u64;
        for (ch, slot) in self.deadlines.iter_mut().enumerate() {
            if slot.is_some_and(|d| d <= now) {
                *slot = None;
                due |= 1 << ch;
            }
        }
        alarm.set(self.next_deadline());
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeAlarm {
        now: u64,
        armed: Option<u64>,
        sets: usize,
    }

    impl Alarm for FakeAlarm {
        fn now_ns(&mut self) -> u64 {
            self.now
        }
        fn set(&mut self, deadline_ns: Option<u64>) {
            self.armed = deadline_ns;
            self.sets += 1;
        }
    }

    #[test]
    fn get_time_replies_with_now() {
        let mut t = Timer::new();
        let mut a = FakeAlarm {
            now: 1234,
            ..Default::default()
        };
        assert_eq!(t.request(&mut a, 3, true, GET_TIME, 0), Ok(Some(1234)));
        assert_eq!(a.sets, 0, "reading the time arms nothing");
    }

    #[test]
    fn earliest_timeout_arms_the_alarm_and_expiry_notifies_only_the_due() {
        let mut t = Timer::new();
        let mut a = FakeAlarm {
            now: 1000,
            ..Default::default()
        };
        t.request(&mut a, 1, true, SET_TIMEOUT, 500).unwrap();
        assert_eq!(a.armed, Some(1500));
        t.request(&mut a, 2, true, SET_TIMEOUT, 100).unwrap();
        assert_eq!(a.armed, Some(1100));
        a.now = 1100;
        assert_eq!(t.expire(&mut a), 1 << 2);
        assert_eq!(a.armed, Some(1500));
        a.now = 1499;
        assert_eq!(t.expire(&mut a), 0, "not yet");
        a.now = 2000;
        assert_eq!(t.expire(&mut a), 1 << 1);
        assert_eq!(a.armed, None);
        assert_eq!(t.expire(&mut a), 0, "each timeout fires once");
    }

    #[test]
    fn a_new_timeout_replaces_the_channels_pending_one() {
        let mut t = Timer::new();
        let mut a = FakeAlarm::default();
        t.request(&mut a, 5, true, SET_TIMEOUT, 100).unwrap();
        t.request(&mut a, 5, true, SET_TIMEOUT, 1_000).unwrap();
        assert_eq!(a.armed, Some(1_000));
        a.now = 500;
        assert_eq!(t.expire(&mut a), 0);
        a.now = 1_000;
        assert_eq!(t.expire(&mut a), 1 << 5);
    }

    #[test]
    fn bad_requests_are_refused_and_counted() {
        let mut t = Timer::new();
        let mut a = FakeAlarm::default();
        assert_eq!(
            t.request(&mut a, 1, true, 7, 0),
            Err(RequestError::UnknownLabel(7))
        );
        assert_eq!(
            t.request(&mut a, 1, false, SET_TIMEOUT, 10),
            Err(RequestError::NoNotifyChannel(1))
        );
        assert_eq!(
            t.request(&mut a, 62, true, SET_TIMEOUT, 10),
            Err(RequestError::NoNotifyChannel(62))
        );
        assert_eq!(t.refused, 3);
        assert_eq!(a.armed, None);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn huge_timeouts_saturate_instead_of_wrapping() {
        let mut t = Timer::new();
        let mut a = FakeAlarm {
            now: 10,
            ..Default::default()
        };
        t.request(&mut a, 0, true, SET_TIMEOUT, u64::MAX).unwrap();
        assert_eq!(a.armed, Some(u64::MAX));
        a.now = u64::MAX - 1;
        assert_eq!(t.expire(&mut a), 0);
    }

    #[test]
    fn tick_conversions_round_trip_at_qemu_and_odd_frequencies() {
        // QEMU virt's counter: 62.5 MHz = 16 ns per tick.
        assert_eq!(ticks_to_ns(62_500_000, 62_500_000), 1_000_000_000);
        assert_eq!(ns_to_ticks(16, 62_500_000), 1);
        assert_eq!(ns_to_ticks(17, 62_500_000), 2, "rounded up: never early");
        for freq in [1, 24_000_000, 62_500_000, 1_000_000_000, 3_000_000_007] {
            for ns in [0, 1, 999, 1_000_000_007, 1 << 50] {
                let ticks = ns_to_ticks(ns, freq);
                assert!(ticks_to_ns(ticks, freq) >= ns, "{ns} ns at {freq} Hz");
            }
        }
        assert_eq!(ticks_to_ns(5, 0), 0);
        assert_eq!(ns_to_ticks(u64::MAX, u64::MAX), u64::MAX);
    }
}
