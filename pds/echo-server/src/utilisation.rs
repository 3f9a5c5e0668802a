//! The ipbench utilisation daemon's protocol (`cpu_target_lukem`, sddf-net.md §4.8), independent
//! of any socket.
//!
//! On accept the server sends [`GREETING`]. Then, per line received:
//!
//! | line | reply |
//! |---|---|
//! | `HELLO` | `200 OK (Ready to go)\n` |
//! | `LOAD cpu_target_lukem` | `200 OK\n` |
//! | `SETUP args::""` | `200 OK\n` |
//! | `START` | none; samples the counters |
//! | `STOP` | `220 VALID DATA (Data to follow)\nContent-length: N\n,<idle>,<total>\0`, then the server half-closes |
//! | `QUIT` | none |
//! | anything else | `400 ERROR\n` |
//!
//! `idle` and `total` are the counter deltas since START (since zero if no START came, as in
//! sDDF), idle first; `N` counts the two numbers, the two commas and the NUL, which is sent.
//!
//! sDDF's daemon matches each *TCP segment* against the command (prefix match, one command per
//! segment). A byte stream has no segments, so this one splits at `\n` and matches whole lines:
//! the same replies for ipbench's one-command-per-segment traffic, and still right when commands
//! are coalesced or split across segments. A line longer than [`MAX_LINE`] is answered with
//! `400 ERROR\n` once and skipped.
use core::fmt::Write as _;

use crate::CycleSource;

/// Sent on accept.
pub const GREETING: &[u8] = b"100 IPBENCH V1.0\n";
/// Reply to HELLO.
pub const OK_READY: &[u8] = b"200 OK (Ready to go)\n";
/// Reply to LOAD and SETUP.
pub const OK: &[u8] = b"200 OK\n";
/// Reply to anything unknown.
pub const ERROR: &[u8] = b"400 ERROR\n";
/// Longest command line kept.
pub const MAX_LINE: usize = 128;
/// Longest STOP reply: the fixed text, a 2-digit length and two 20-digit numbers.
pub const MAX_REPLY: usize = 128;

/// What the connection should do after a batch of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep reading.
    Continue,
    /// The result was sent: close our sending side (sDDF `tcp_shutdown(pcb, 0, 1)`).
    Close,
}

/// One daemon connection.
#[derive(Debug, Clone)]
pub struct Session {
    line: [u8; MAX_LINE],
    len: usize,
    /// The current line overflowed `line`; skip to its end.
    skipping: bool,
    start: (u64, u64),
    done: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A fresh connection (send [`GREETING`] first).
    pub const fn new() -> Self {
        Session {
            line: [0; MAX_LINE],
            len: 0,
            skipping: false,
            start: (0, 0),
            done: false,
        }
    }

    /// Consumes received bytes; replies go to `out` in order.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        cycles: &mut impl CycleSource,
        out: &mut impl FnMut(&[u8]),
    ) -> Next {
        for &b in bytes {
            if self.done {
                break;
            }
            if b == b'\n' {
                if core::mem::take(&mut self.skipping) {
                    continue;
                }
                let len = core::mem::take(&mut self.len);
                let line = self.line;
                self.command(&line[..len], cycles, out);
            } else if self.skipping {
            } else if self.len == MAX_LINE {
                self.len = 0;
                self.skipping = true;
                out(ERROR);
            } else {
                self.line[self.len] = b;
                self.len += 1;
            }
        }
        if self.done {
            Next::Close
        } else {
            Next::Continue
        }
    }

    fn command(&mut self, line: &[u8], cycles: &mut impl CycleSource, out: &mut impl FnMut(&[u8])) {
        match line {
            b"HELLO" => out(OK_READY),
            b"LOAD cpu_target_lukem" | b"SETUP args::\"\"" => out(OK),
            b"START" => {
                self.start = cycles.sample();
                cycles.measurement_started();
            }
            b"STOP" => {
                let (idle, total) = cycles.sample();
                let idle = idle.wrapping_sub(self.start.0);
                let total = total.wrapping_sub(self.start.1);
                let mut reply = Reply::default();
                stop_reply(&mut reply, idle, total);
                out(reply.as_bytes());
                cycles.measurement_stopped();
                self.done = true;
            }
            b"QUIT" => {}
            _ => out(ERROR),
        }
    }
}

/// Writes the STOP reply for `idle` and `total` (see the module table).
pub fn stop_reply(reply: &mut Reply, idle: u64, total: u64) {
    let digits = |mut n: u64| {
        let mut d = 1;
        while n >= 10 {
            n /= 10;
            d += 1;
        }
        d
    };
    let content_len = digits(idle) + digits(total) + 3;
    // Cannot fail: at most 32 + 16 + 2 + 1 + 42 + 1 bytes fit MAX_REPLY.
    let _ = write!(
        reply,
        "220 VALID DATA (Data to follow)\nContent-length: {content_len}\n,{idle},{total}\0"
    );
}

/// A fixed buffer for the STOP reply.
#[derive(Debug, Clone)]
pub struct Reply {
    buf: [u8; MAX_REPLY],
    len: usize,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            buf: [0; MAX_REPLY],
            len: 0,
        }
    }
}

impl Reply {
    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Reply {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    extern crate std;

    /// Counters that advance by a fixed step per sample; records the start/stop hooks.
    struct Steps {
        now: (u64, u64),
        step: (u64, u64),
        events: Vec<&'static str>,
    }

    impl CycleSource for Steps {
        fn sample(&mut self) -> (u64, u64) {
            let s = self.now;
            self.now = (self.now.0 + self.step.0, self.now.1 + self.step.1);
            s
        }
        fn measurement_started(&mut self) {
            self.events.push("start");
        }
        fn measurement_stopped(&mut self) {
            self.events.push("stop");
        }
    }

    fn run(session: &mut Session, cycles: &mut Steps, input: &[u8]) -> (Vec<u8>, Next) {
        let mut out = Vec::new();
        let next = session.receive(input, cycles, &mut |b: &[u8]| out.extend_from_slice(b));
        (out, next)
    }

    #[test]
    fn stop_reply_counts_the_nul_and_puts_idle_first() {
        let mut r = Reply::default();
        stop_reply(&mut r, 12, 3456);
        assert_eq!(
            r.as_bytes(),
            b"220 VALID DATA (Data to follow)\nContent-length: 9\n,12,3456\0"
        );
        let mut r = Reply::default();
        stop_reply(&mut r, u64::MAX, u64::MAX);
        assert!(r
            .as_bytes()
            .ends_with(b"Content-length: 43\n,18446744073709551615,18446744073709551615\0"));
    }

    #[test]
    fn transcript_split_and_coalesced_the_same() {
        let script: &[u8] = b"HELLO\nLOAD cpu_target_lukem\nSETUP args::\"\"\nSTART\nSTOP\n";
        let expected: &[u8] = b"200 OK (Ready to go)\n200 OK\n200 OK\n\
            220 VALID DATA (Data to follow)\nContent-length: 9\n,70,1000\0";
        for chunk in [1, 3, 7, script.len()] {
            let mut cycles = Steps {
                now: (5, 100),
                step: (70, 1000),
                events: Vec::new(),
            };
            let mut s = Session::new();
            let mut out = Vec::new();
            let mut last = Next::Continue;
            for piece in script.chunks(chunk) {
                let (o, n) = run(&mut s, &mut cycles, piece);
                out.extend(o);
                last = n;
            }
            assert_eq!(out, expected, "chunk {chunk}");
            assert_eq!(last, Next::Close);
            assert_eq!(cycles.events, ["start", "stop"]);
        }
    }

    #[test]
    fn unknown_quit_and_overlong_lines() {
        let mut cycles = Steps {
            now: (0, 0),
            step: (0, 0),
            events: Vec::new(),
        };
        let mut s = Session::new();
        let (out, next) = run(
            &mut s,
            &mut cycles,
            b"BOGUS\nQUIT\nHELLO extra\nSETUP args::x\n",
        );
        assert_eq!(out, [ERROR, ERROR, ERROR].concat());
        assert_eq!(next, Next::Continue);
        let long = [b'A'; 300];
        let (out, _) = run(&mut s, &mut cycles, &long);
        assert_eq!(out, ERROR, "one error for an overlong line");
        let (out, _) = run(&mut s, &mut cycles, b"AAAA\nHELLO\n");
        assert_eq!(out, OK_READY, "the rest of the long line is skipped");
        // STOP without START reports counters since zero, as sDDF does.
        let (out, next) = run(&mut s, &mut cycles, b"STOP\nHELLO\n");
        assert_eq!(
            out,
            b"220 VALID DATA (Data to follow)\nContent-length: 5\n,0,0\0"
        );
        assert_eq!(next, Next::Close);
    }
}
