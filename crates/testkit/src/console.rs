//! A child process's console, as the seL4 tests read QEMU's: stdout and stderr collected in
//! the background, waited on for text, its stdin written to, the child (or its whole process
//! group) killed when dropped.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A running child and everything it has printed so far.
pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    text: Vec<u8>,
    /// The child runs in a process group of its own, killed as a whole when dropped (for
    /// `make qemu`, whose QEMU is a grandchild).
    group: bool,
    /// When the child was started.
    pub started: Instant,
    /// Where the console is saved when dropped (from `SEL4_SYSTEM_CONSOLE` if set).
    pub save_to: Option<std::path::PathBuf>,
}

impl Console {
    /// Starts `cmd` with piped stdin, stdout and stderr; with `group`, in a process group of its
    /// own. Panics (naming `what`) if it cannot start: a test prerequisite was checked before.
    pub fn spawn(mut cmd: Command, what: &str, group: bool) -> Console {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if group {
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        let started = Instant::now();
        let (tx, output) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Console {
            stdin: child.stdin.take(),
            child,
            output,
            text: Vec::new(),
            group,
            started,
            save_to: std::env::var_os("SEL4_SYSTEM_CONSOLE").map(Into::into),
        }
    }

    /// Waits until `needle` appears at or after byte `from`; returns the time since the start
    /// and the byte just past it. `None` at `deadline`.
    pub fn wait_for_from(
        &mut self,
        needle: &str,
        from: usize,
        deadline: Instant,
    ) -> Option<(Duration, usize)> {
        loop {
            if let Some(at) = position(self.text.get(from..).unwrap_or(&[]), needle.as_bytes()) {
                return Some((self.started.elapsed(), from + at + needle.len()));
            }
            if !self.receive(deadline) {
                return None;
            }
        }
    }

    /// Waits until `done` holds for the whole console so far; returns whether it did by
    /// `deadline`.
    pub fn wait_until(&mut self, deadline: Instant, done: impl Fn(&str) -> bool) -> bool {
        loop {
            if done(&self.text()) {
                return true;
            }
            if !self.receive(deadline) {
                return done(&self.text());
            }
        }
    }

    /// Takes one chunk of output, waiting until `deadline`; `false` if none came.
    fn receive(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.output.recv_timeout(left) {
            Ok(bytes) => {
                self.text.extend_from_slice(&bytes);
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes of console so far (taking what has arrived).
    pub fn len(&mut self) -> usize {
        while let Ok(bytes) = self.output.try_recv() {
            self.text.extend_from_slice(&bytes);
        }
        self.text.len()
    }

    /// Whether nothing has been printed yet.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The console so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }

    /// The console from byte `from` on, as text.
    pub fn text_since(&self, from: usize) -> String {
        String::from_utf8_lossy(self.text.get(from..).unwrap_or(&[])).into_owned()
    }

    /// Writes `bytes` to the child's stdin (QEMU's serial console with `-serial mon:stdio`).
    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .expect("writing to the child's stdin");
    }

    /// Panics if any of `bad` is on the console, naming the line.
    pub fn assert_clean(&self, bad: &[&str]) {
        let text = self.text();
        for bad in bad {
            if let Some(line) = text.lines().find(|l| l.contains(bad)) {
                panic!("'{bad}' on the console: {line}");
            }
        }
    }
}

/// Where `needle` starts in `haystack`.
pub fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Drop for Console {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.group {
            // `kill -KILL -<pgid>` would read the group as an option and kill nothing (procps
            // kill): the group needs `--` before it.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
                .status();
        } else {
            let _ = self.child.kill();
        }
        // Reap; never hang a test on a child that outlived the signal.
        let until = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(path) = &self.save_to {
            let _ = std::fs::write(path, &self.text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_waited_for_in_order_and_stdin_reaches_the_child() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two; read x; echo got $x; sleep 30"]);
        let mut c = Console::spawn(cmd, "sh", true);
        c.save_to = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (_, end) = c.wait_for_from("one", 0, deadline).expect("one");
        assert!(c.wait_for_from("two", end, deadline).is_some());
        assert!(c.wait_for_from("one", end, Instant::now()).is_none());
        c.write(b"hello\n");
        assert!(c.wait_until(deadline, |t| t.contains("got hello")));
        assert!(c.text_since(end).contains("two"));
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.assert_clean(&["got"])));
        assert!(result.is_err(), "a bad line is found");
    }
}
