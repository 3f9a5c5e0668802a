//! The ipbench `cpu_target_lukem` utilisation protocol (sDDF `utilization_socket.c`, TCP port
//! 1237), both sides.
//!
//! Transcript (every line ends in `\n`):
//!
//! ```text
//! server: 100 IPBENCH V1.0
//! client: HELLO                      server: 200 OK (Ready to go)
//! client: LOAD cpu_target_lukem      server: 200 OK
//! client: SETUP args::""             server: 200 OK
//! client: START                      (no reply; measurement runs)
//! client: STOP                       server: 220 VALID DATA (Data to follow)
//!                                    server: Content-length: <L>
//!                                    server: ,<idle>,<total>\0   (L bytes, counting the NUL)
//! ```
//!
//! The sDDF server handles one command per TCP segment, so the client sends each command alone
//! and waits for its reply before the next. Every read is bounded in length and time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// The server's greeting.
pub const GREETING: &[u8] = b"100 IPBENCH V1.0\n";
/// Client hello.
pub const HELLO: &[u8] = b"HELLO\n";
/// Reply to HELLO.
pub const HELLO_OK: &[u8] = b"200 OK (Ready to go)\n";
/// Client selects the target test.
pub const LOAD: &[u8] = b"LOAD cpu_target_lukem\n";
/// Client passes (empty) test arguments.
pub const SETUP: &[u8] = b"SETUP args::\"\"\n";
/// Reply to LOAD and SETUP.
pub const OK: &[u8] = b"200 OK\n";
/// Client starts the measurement (no reply).
pub const START: &[u8] = b"START\n";
/// Client stops the measurement.
pub const STOP: &[u8] = b"STOP\n";
/// First line of the reply to STOP.
pub const VALID_DATA: &[u8] = b"220 VALID DATA (Data to follow)\n";
/// Prefix of the second line of the reply to STOP.
pub const CONTENT_LENGTH: &[u8] = b"Content-length: ";
/// Reply to an unknown command.
pub const ERROR: &[u8] = b"400 ERROR\n";

/// Longest protocol line accepted.
const MAX_LINE: usize = 256;
/// Largest data payload accepted: two 20-digit numbers, two commas and a NUL fit easily.
const MAX_DATA: usize = 64;

/// Idle and total units between START and STOP, as reported by the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utilisation {
    /// Idle units.
    pub idle: u64,
    /// Total units.
    pub total: u64,
}

/// Errors speaking the utilisation protocol.
#[derive(Debug, thiserror::Error)]
pub enum UtilError {
    /// cannot connect to the utilisation daemon at {addr}: {source}
    #[error("cannot connect to the utilisation daemon at {addr}: {source}")]
    Connect {
        /// Daemon address.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// I/O error talking to the utilisation daemon at {addr} during {step}: {source}
    #[error("I/O error talking to the utilisation daemon at {addr} during {step}: {source}")]
    Io {
        /// Daemon address.
        addr: SocketAddr,
        /// Protocol step.
        step: &'static str,
        /// Underlying error.
        source: io::Error,
    },
    /// utilisation daemon at {addr}, step {step}: expected {expected}, received "{received}"
    #[error(
        "utilisation daemon at {addr}, step {step}: expected {expected}, received \"{received}\""
    )]
    Unexpected {
        /// Daemon address.
        addr: SocketAddr,
        /// Protocol step.
        step: &'static str,
        /// What the protocol requires there.
        expected: String,
        /// The bytes received, escaped.
        received: String,
    },
}

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Reads one `\n`-terminated line (including the `\n`), at most [`MAX_LINE`] bytes. Reads a
/// byte at a time so nothing after the line is consumed. Returns what arrived if the peer closed
/// or the line grew too long (the caller reports it as unexpected).
fn read_line(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_LINE {
        match r.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(line)
}

/// The client side, as ipbench's controller drives `cpu_target_lukem`.
pub struct UtilClient {
    stream: TcpStream,
    addr: SocketAddr,
}

impl UtilClient {
    /// Connects and completes greeting, HELLO, LOAD and SETUP. Every read and write gives up
    /// after `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<UtilClient, UtilError> {
        // A daemon with one listening socket (sDDF's has a backlog of 1, netvm's echo server one
        // socket) refuses connections until the previous session has fully closed, which can be
        // a moment after the last point's STOP: retry refusals until `timeout`.
        let deadline = std::time::Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => return Err(UtilError::Connect { addr, source }),
            }
        };
        let io_err = |step, source| UtilError::Io { addr, step, source };
        stream.set_nodelay(true).map_err(|e| io_err("connect", e))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| io_err("connect", e))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| io_err("connect", e))?;
        let mut c = UtilClient { stream, addr };
        c.expect_line("greeting", GREETING)?;
        c.command("HELLO", HELLO, Some(HELLO_OK))?;
        c.command("LOAD", LOAD, Some(OK))?;
        c.command("SETUP", SETUP, Some(OK))?;
        Ok(c)
    }

    /// Sends START (the measurement window opens).
    pub fn start(&mut self) -> Result<(), UtilError> {
        self.command("START", START, None)
    }

    /// Sends STOP and reads the measured idle and total units.
    pub fn stop(mut self) -> Result<Utilisation, UtilError> {
        self.command("STOP", STOP, Some(VALID_DATA))?;
        let line = self.read("Content-length")?;
        let len = line
            .strip_prefix(CONTENT_LENGTH)
            .and_then(|rest| rest.strip_suffix(b"\n"))
            .and_then(parse_decimal)
            .filter(|&n| (1..=MAX_DATA as u64).contains(&n))
            .ok_or_else(|| {
                self.unexpected("Content-length", "\"Content-length: <1..64>\\n\"", &line)
            })?;
        let mut data = vec![0u8; len as usize];
        let mut got = 0;
        while got < data.len() {
            match self.stream.read(&mut data[got..]) {
                Ok(0) => {
                    return Err(self.unexpected("data", &format!("{len} bytes"), &data[..got]));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(UtilError::Io {
                        addr: self.addr,
                        step: "data",
                        source: e,
                    })
                }
            }
        }
        // The daemon half-closes after the data; QUIT is ignored by it, so just close.
        let _ = self.stream.shutdown(Shutdown::Both);
        parse_data(&data).ok_or_else(|| self.unexpected("data", "\",<idle>,<total>\\0\"", &data))
    }

    fn read(&mut self, step: &'static str) -> Result<Vec<u8>, UtilError> {
        read_line(&mut self.stream).map_err(|source| UtilError::Io {
            addr: self.addr,
            step,
            source,
        })
    }

    fn expect_line(&mut self, step: &'static str, want: &[u8]) -> Result<(), UtilError> {
        let line = self.read(step)?;
        if line != want {
            return Err(self.unexpected(step, &format!("\"{}\"", escaped(want)), &line));
        }
        Ok(())
    }

    fn command(
        &mut self,
        step: &'static str,
        cmd: &[u8],
        reply: Option<&[u8]>,
    ) -> Result<(), UtilError> {
        self.stream.write_all(cmd).map_err(|source| UtilError::Io {
            addr: self.addr,
            step,
            source,
        })?;
        match reply {
            Some(want) => self.expect_line(step, want),
            None => Ok(()),
        }
    }

    fn unexpected(&self, step: &'static str, expected: &str, got: &[u8]) -> UtilError {
        UtilError::Unexpected {
            addr: self.addr,
            step,
            expected: expected.to_string(),
            received: escaped(got),
        }
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses `,<idle>,<total>\0`.
pub fn parse_data(data: &[u8]) -> Option<Utilisation> {
    let body = data.strip_suffix(b"\0")?.strip_prefix(b",")?;
    let comma = body.iter().position(|&b| b == b',')?;
    Some(Utilisation {
        idle: parse_decimal(&body[..comma])?,
        total: parse_decimal(&body[comma + 1..])?,
    })
}

/// The STOP reply for `u`: status line, Content-length counting the trailing NUL, and the data.
pub fn encode_stop_reply(u: Utilisation) -> Vec<u8> {
    let data = format!(",{},{}\0", u.idle, u.total);
    let mut out = VALID_DATA.to_vec();
    out.extend_from_slice(format!("Content-length: {}\n", data.len()).as_bytes());
    out.extend_from_slice(data.as_bytes());
    out
}

/// Serves one utilisation session on `conn`: greeting, then commands until STOP, QUIT or EOF.
/// `sample` reads the machine's cumulative (idle, total) counters; the difference between
/// START and STOP is reported. Returns whether a STOP was answered.
pub fn serve_session(
    conn: &mut TcpStream,
    sample: impl Fn() -> io::Result<Utilisation>,
) -> io::Result<bool> {
    conn.write_all(GREETING)?;
    let mut started: Option<Utilisation> = None;
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            return Ok(false);
        }
        if line.starts_with(b"HELLO") {
            conn.write_all(HELLO_OK)?;
        } else if line.starts_with(b"LOAD cpu_target_lukem") || line.starts_with(b"SETUP") {
            conn.write_all(OK)?;
        } else if line.starts_with(b"START") {
            started = Some(sample()?);
        } else if line.starts_with(b"STOP") {
            let now = sample()?;
            let from = started.unwrap_or(now);
            let u = Utilisation {
                idle: now.idle.saturating_sub(from.idle),
                total: now.total.saturating_sub(from.total),
            };
            conn.write_all(&encode_stop_reply(u))?;
            conn.shutdown(Shutdown::Write)?;
            return Ok(true);
        } else if line.starts_with(b"QUIT") {
            return Ok(false);
        } else {
            conn.write_all(ERROR)?;
        }
    }
}

/// Cumulative idle and total CPU time of the whole machine from `/proc/stat`, in USER_HZ ticks
/// (normally 10 ms) summed over all CPUs: idle = idle + iowait; total = user + nice + system +
/// idle + iowait + irq + softirq + steal (guest time is already inside user and nice).
pub fn proc_stat_utilisation() -> io::Result<Utilisation> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_proc_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/stat: no parsable aggregate \"cpu\" line",
        )
    })
}

fn parse_proc_stat(text: &str) -> Option<Utilisation> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    Some(Utilisation {
        idle,
        total: v[..8].iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reply_counts_the_nul() {
        let r = encode_stop_reply(Utilisation {
            idle: 12,
            total: 3456,
        });
        assert_eq!(
            r,
            b"220 VALID DATA (Data to follow)\nContent-length: 9\n,12,3456\0".to_vec()
        );
    }

    #[test]
    fn data_parsing_is_strict() {
        assert_eq!(
            parse_data(b",0,0\0"),
            Some(Utilisation { idle: 0, total: 0 })
        );
        assert_eq!(parse_data(b",1,2"), None);
        assert_eq!(parse_data(b"1,2\0"), None);
        assert_eq!(parse_data(b",1,-2\0"), None);
        assert_eq!(parse_data(b",1,2,3\0"), None);
    }

    #[test]
    fn proc_stat_line() {
        let u = parse_proc_stat("cpu  10 1 5 100 4 1 2 3 7 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n");
        assert_eq!(
            u,
            Some(Utilisation {
                idle: 104,
                total: 126
            })
        );
        assert!(proc_stat_utilisation().is_ok());
    }
}
