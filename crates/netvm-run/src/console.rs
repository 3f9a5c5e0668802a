//! The system console: every line a PD writes (stdout or stderr) and every monitor message,
//! forwarded to the runner's own stdout/stderr and kept for [`Console::wait_line`].
//!
//! PD output is read in chunks, so a PD can never block on a full pipe while the runner is
//! busy, and a line is recorded as soon as its newline arrives. Write errors on the runner's
//! side (e.g. `netvm run | head`) are ignored: the PDs keep running and their output keeps
//! being drained and recorded.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Lines kept for [`Console::wait_line`]; older ones are dropped (indices stay absolute).
const HISTORY: usize = 100_000;
/// A "line" longer than this without a newline is recorded in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// The source name of lines the runner itself prints as the Microkit monitor would.
pub const MONITOR: &str = "monitor";

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (where Microkit host PDs print `debug_println!`).
    Stderr,
}

/// How PD output reaches the runner's own stdout/stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// Each line prefixed with `[<pd>] `.
    #[default]
    Prefixed,
    /// Bytes unchanged, as they arrive.
    Raw,
    /// Nothing printed (still recorded).
    Quiet,
}

/// One line of console output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLine {
    /// Position in the whole run's output (0 = first line).
    pub index: usize,
    /// The PD's name, or [`MONITOR`].
    pub source: String,
    /// Where it was written.
    pub stream: Stream,
    /// The text, without the newline (invalid UTF-8 replaced).
    pub text: String,
}

/// Why [`Console::wait_line`] returned without a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// no matching console line within the timeout
    #[error("no matching console line within the timeout")]
    Timeout,
    /// the system stopped without printing a matching line
    #[error("the system stopped without printing a matching line")]
    Finished,
}

struct State {
    lines: VecDeque<ConsoleLine>,
    /// Index of `lines[0]`.
    first: usize,
    /// Readers still attached to a PD pipe.
    readers: usize,
    /// No more PD output will come (the system was torn down).
    finished: bool,
}

/// The console of one running system.
pub struct Console {
    mode: OutputMode,
    state: Mutex<State>,
    changed: Condvar,
}

impl Console {
    /// An empty console printing in `mode`.
    pub fn new(mode: OutputMode) -> Console {
        Console {
            mode,
            state: Mutex::new(State {
                lines: VecDeque::new(),
                first: 0,
                readers: 0,
                finished: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking reader cannot leave the history inconsistent (pushes are single calls).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, source: &str, stream: Stream, bytes: &[u8]) {
        let mut state = self.lock();
        let index = state.first + state.lines.len();
        state.lines.push_back(ConsoleLine {
            index,
            source: source.to_string(),
            stream,
            text: String::from_utf8_lossy(bytes).into_owned(),
        });
        if state.lines.len() > HISTORY {
            state.lines.pop_front();
            state.first += 1;
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Prints a monitor message on stderr (unless quiet) and records it.
    pub fn monitor(&self, text: &str) {
        if self.mode != OutputMode::Quiet {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
        self.record(MONITOR, Stream::Stderr, text.as_bytes());
    }

    /// Registers a reader about to be started with [`Console::forward`].
    pub fn attach_reader(&self) {
        self.lock().readers += 1;
    }

    /// Copies `pipe` (a PD's stdout or stderr) to the console until end of file. Runs on its
    /// own thread; [`Console::attach_reader`] must have been called for it.
    pub fn forward(&self, pd: &str, stream: Stream, mut pipe: impl Read) {
        let mut chunk = [0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if self.mode == OutputMode::Raw {
                let _ = write_stream(stream, &chunk[..n]);
            }
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                self.line(pd, stream, &line[..end]);
            }
            while pending.len() >= MAX_LINE {
                let piece: Vec<u8> = pending.drain(..MAX_LINE).collect();
                self.line(pd, stream, &piece);
            }
        }
        if !pending.is_empty() {
            self.line(pd, stream, &pending);
        }
        let mut state = self.lock();
        state.readers -= 1;
        drop(state);
        self.changed.notify_all();
    }

    fn line(&self, pd: &str, stream: Stream, bytes: &[u8]) {
        if self.mode == OutputMode::Prefixed {
            let mut out = Vec::with_capacity(bytes.len() + pd.len() + 4);
            out.extend_from_slice(format!("[{pd}] ").as_bytes());
            out.extend_from_slice(bytes);
            out.push(b'\n');
            let _ = write_stream(stream, &out);
        }
        self.record(pd, stream, bytes);
    }

    /// Waits up to `timeout` for every reader to reach end of file (after the PDs are gone,
    /// so their last lines are recorded), then marks the console finished.
    pub fn finish(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.readers > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // A PD's descendant that escaped tear-down still holds a pipe; do not wait
                // for it (its reader thread ends whenever it does).
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.finished = true;
        drop(state);
        self.changed.notify_all();
    }

    /// Every recorded line (at most the last 100 000).
    pub fn lines(&self) -> Vec<ConsoleLine> {
        self.lock().lines.iter().cloned().collect()
    }

    /// The first line with index ≥ `from` for which `pred` holds, waiting up to `timeout`.
    pub fn wait_line(
        &self,
        from: usize,
        mut pred: impl FnMut(&ConsoleLine) -> bool,
        timeout: Duration,
    ) -> Result<ConsoleLine, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut next = from;
        let mut state = self.lock();
        loop {
            let start = next.saturating_sub(state.first);
            if let Some(line) = state.lines.iter().skip(start).find(|l| pred(l)) {
                return Ok(line.clone());
            }
            next = state.first + state.lines.len();
            if state.finished {
                return Err(WaitError::Finished);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn write_stream(stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
    match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_waits_for_them() {
        let console = Console::new(OutputMode::Quiet);
        console.attach_reader();
        console.forward("pd", Stream::Stderr, &b"one\ntwo\n\xffthree"[..]);
        let texts: Vec<String> = console.lines().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["one", "two", "\u{fffd}three"]);
        let two = console
            .wait_line(0, |l| l.text == "two", Duration::from_millis(10))
            .expect("found");
        assert_eq!((two.index, two.source.as_str()), (1, "pd"));
        // Searching after a line skips it.
        assert_eq!(
            console.wait_line(2, |l| l.text == "two", Duration::from_millis(10)),
            Err(WaitError::Timeout)
        );
        console.finish(Duration::from_secs(1));
        assert_eq!(
            console.wait_line(0, |l| l.text == "four", Duration::from_secs(10)),
            Err(WaitError::Finished)
        );
    }

    #[test]
    fn wakes_a_waiter_and_bounds_long_lines() {
        let console = std::sync::Arc::new(Console::new(OutputMode::Quiet));
        console.attach_reader();
        let writer = {
            let console = console.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let long = vec![b'x'; MAX_LINE + 3];
                console.forward("pd", Stream::Stdout, &long[..]);
            })
        };
        let line = console
            .wait_line(0, |l| l.text == "xxx", Duration::from_secs(10))
            .expect("second piece");
        assert_eq!(line.index, 1);
        writer.join().expect("writer");
    }
}
