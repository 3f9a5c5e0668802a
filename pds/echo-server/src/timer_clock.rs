//! Time from the sDDF timer PD (seL4): a [`Clock`] that asks the timer by protected procedure
//! call and arms its timeout for smoltcp's next deadline.
//!
//! Protocol (sDDF `include/sddf/timer/protocol.h`, served by `pds/timer`): label
//! [`sddf::timer::GET_TIME`] returns the time in nanoseconds in MR0; label [`sddf::timer::SET_TIMEOUT`]
//! with MR0 = nanoseconds from now makes the timer notify this PD's channel once, replacing any
//! timeout still pending for it. The channel id comes from the `.timer_client_config` section
//! ([`TimerClientConfig`], sDDF `timer_client_config_t`).
//!
//! [`TimerClock`] keeps the call traffic down: one `GET_TIME` per [`Clock::now_us`], and a
//! `SET_TIMEOUT` only when no pending timeout would wake the PD at or before the new deadline
//! (a wake-up that comes early is harmless: the server polls, finds nothing due, and asks again).
use crate::Clock;
pub use sddf::timer::{TimerClientConfig, TimerConfigError, MAGIC, SECTION};

/// The shortest timeout armed, in microseconds: smoltcp asks for "now" (a zero delay) while a
/// socket has data but the device has no TX buffer, and the device's own TX-free notification
/// is what ends that wait; a zero timeout would only make the PD and the timer ping-pong.
pub const MIN_TIMEOUT_US: u64 = 1_000;

/// The call to the timer: the PD's `pp_call` on its timer channel, or a script in tests.
pub trait TimerCall {
    /// Calls with `label` and one message register `mr0`; returns the reply's MR0, or `None`
    /// if the reply carries no message register.
    fn call(&mut self, label: u64, mr0: u64) -> Option<u64>;
}

/// What the clock did (for diagnostics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// `GET_TIME` calls.
    pub time_calls: u64,
    /// `SET_TIMEOUT` calls.
    pub timeouts_set: u64,
    /// Wake-ups not asked for because a pending timeout comes first.
    pub timeouts_kept: u64,
    /// `GET_TIME` replies without a time, or with a time before the previous one.
    pub bad_replies: u64,
}

/// A [`Clock`] served by the timer PD.
#[derive(Debug)]
pub struct TimerClock<T: TimerCall> {
    call: T,
    /// The latest time read, in nanoseconds.
    now_ns: u64,
    /// When the pending timeout fires, if one may be pending (nanoseconds).
    armed_ns: Option<u64>,
    stats: TimerStats,
}

impl<T: TimerCall> TimerClock<T> {
    /// A clock that calls the timer through `call`.
    pub fn new(call: T) -> Self {
        TimerClock {
            call,
            now_ns: 0,
            armed_ns: None,
            stats: TimerStats::default(),
        }
    }

    /// What the clock did so far.
    pub fn stats(&self) -> TimerStats {
        self.stats
    }

    /// The time in nanoseconds; never less than a time returned before, even if the timer
    /// answers wrongly (smoltcp's timers assume time does not run backwards).
    pub fn now_ns(&mut self) -> u64 {
        self.stats.time_calls += 1;
        match self.call.call(sddf::timer::GET_TIME, 0) {
            Some(t) if t >= self.now_ns => self.now_ns = t,
            _ => self.stats.bad_replies += 1,
        }
        self.now_ns
    }
}

impl<T: TimerCall> Clock for TimerClock<T> {
    fn now_us(&mut self) -> u64 {
        self.now_ns() / 1_000
    }

    fn wake_in(&mut self, delay_us: u64) {
        let now = self.now_ns;
        let delay_ns = delay_us.max(MIN_TIMEOUT_US).saturating_mul(1_000);
        let deadline = now.saturating_add(delay_ns);
        // A timeout still in the future and no later than this deadline wakes us in time. One
        // whose time has come has fired (or is about to): its notification may still be on its
        // way, so it proves nothing about the new deadline.
        if self.armed_ns.is_some_and(|a| a > now && a <= deadline) {
            self.stats.timeouts_kept += 1;
            return;
        }
        // The timeout counts from when the timer serves the call, a little after `now`, so it
        // fires at `deadline` or slightly later, never early.
        self.call.call(sddf::timer::SET_TIMEOUT, delay_ns);
        self.stats.timeouts_set += 1;
        self.armed_ns = Some(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;
    use zerocopy::IntoBytes;

    extern crate std;

    /// A timer PD stand-in: the real `timer::Timer` logic over a fake alarm, with the calls
    /// recorded.
    struct ScriptedTimer {
        time: u64,
        calls: Vec<(u64, u64)>,
    }

    impl TimerCall for &mut ScriptedTimer {
        fn call(&mut self, label: u64, mr0: u64) -> Option<u64> {
            self.calls.push((label, mr0));
            match label {
                sddf::timer::GET_TIME => Some(self.time),
                _ => None,
            }
        }
    }

    #[test]
    fn sdfgen_bytes() {
        // sdfgen 0.35 `Sddf.Timer(...).serialise_config()` for a client whose end of the timer
        // channel has id 2: `timer_client_<pd>.data` = 73 44 44 46 06 02.
        assert_eq!(
            TimerClientConfig::new(2).as_bytes(),
            &[0x73, 0x44, 0x44, 0x46, 0x06, 0x02]
        );
        assert_eq!(TimerClientConfig::parse(b"sDDF\x06\x02"), Ok(2));
        assert_eq!(
            TimerClientConfig::parse(&[0; 6]),
            Err(TimerConfigError::Magic([0; 5]))
        );
        assert_eq!(
            TimerClientConfig::parse(b"sDDF\x06"),
            Err(TimerConfigError::Size(5))
        );
        assert_eq!(
            TimerClientConfig::parse(b"sDDF\x06\x3e"),
            Err(TimerConfigError::Channel(62))
        );
        let e = std::format!("{}", TimerConfigError::Magic([0; 5]));
        assert!(e.starts_with(".timer_client_config: magic"), "{e}");
    }

    #[test]
    fn time_is_the_timers_in_microseconds_and_never_goes_back() {
        let mut t = ScriptedTimer {
            time: 5_000_999,
            calls: Vec::new(),
        };
        let mut clock = TimerClock::new(&mut t);
        assert_eq!(clock.now_us(), 5_000);
        clock.call.time = 4_000_000; // a confused timer
        assert_eq!(clock.now_us(), 5_000, "time does not run backwards");
        clock.call.time = 7_000_000;
        assert_eq!(clock.now_us(), 7_000);
        assert_eq!(clock.stats().bad_replies, 1);
        assert_eq!(clock.stats().time_calls, 3);
        assert_eq!(t.calls, [(sddf::timer::GET_TIME, 0); 3]);
    }

    #[test]
    fn a_timeout_is_armed_only_when_none_pending_comes_first() {
        let mut t = ScriptedTimer {
            time: 1_000_000,
            calls: Vec::new(),
        };
        let mut clock = TimerClock::new(&mut t);
        clock.now_us();
        // Retransmission due in 200 ms: armed.
        clock.wake_in(200_000);
        // Polled again 1 ms later, same deadline or a later one: nothing to do.
        clock.call.time = 2_000_000;
        clock.now_us();
        clock.wake_in(199_000);
        clock.wake_in(500_000);
        // An earlier deadline (a new segment's shorter RTO): armed again.
        clock.wake_in(50_000);
        // Zero delay (waiting for TX buffers): the minimum, not a ping-pong.
        clock.wake_in(0);
        // Once the pending timeout's time has come, a later deadline needs a new one.
        clock.call.time = 60_000_000;
        clock.now_us();
        clock.wake_in(100_000);
        let sets: Vec<u64> = t
            .calls
            .iter()
            .filter(|(l, _)| *l == sddf::timer::SET_TIMEOUT)
            .map(|(_, ns)| *ns)
            .collect();
        assert_eq!(sets, [200_000_000, 50_000_000, 1_000_000, 100_000_000]);
    }

    #[test]
    fn against_the_timer_pds_own_logic() {
        // The real timer PD core (pds/timer) behind the call: the timeouts this clock arms fire
        // when smoltcp's deadline has come, and only then.
        struct Alarm {
            now: u64,
            armed: Option<u64>,
        }
        impl timer::Alarm for Alarm {
            fn now_ns(&mut self) -> u64 {
                self.now
            }
            fn set(&mut self, d: Option<u64>) {
                self.armed = d;
            }
        }
        struct Pd {
            timer: timer::Timer,
            alarm: Alarm,
        }
        impl TimerCall for &mut Pd {
            fn call(&mut self, label: u64, mr0: u64) -> Option<u64> {
                self.timer
                    .request(&mut self.alarm, 2, true, label, mr0)
                    .expect("a valid request")
            }
        }
        let mut pd = Pd {
            timer: timer::Timer::new(),
            alarm: Alarm {
                now: 10_000_000,
                armed: None,
            },
        };
        let mut clock = TimerClock::new(&mut pd);
        let now = clock.now_us();
        clock.wake_in(3_000);
        clock.call.alarm.now += 2_999_999;
        assert_eq!(clock.call.timer.expire(&mut clock.call.alarm), 0);
        clock.call.alarm.now += 1;
        assert_eq!(clock.call.timer.expire(&mut clock.call.alarm), 1 << 2);
        assert_eq!(clock.now_us(), now + 3_000);
    }
}
