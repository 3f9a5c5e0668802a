//! TCP transport: one non-blocking TCP_NODELAY connection per flow. Each message is one
//! `size`-byte payload; the receiver reassembles the byte stream into messages and checks each
//! one like a datagram. The sender keeps at most half the send log's window in flight, so a
//! message's send record is still there when its echo arrives.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::engine::poll_flows;
use super::{payload, BenchError, RecvState, Shared, Transmit, CONNECT_TIMEOUT};
use crate::clock::monotonic_ns;

/// Largest chunk written or read per call.
const CHUNK: usize = 64 << 10;
/// Reads per connection per readiness event.
const RECV_ROUNDS: usize = 16;

/// Opens `flows` connections to `addr`.
pub(super) fn connect(addr: SocketAddr, flows: u32) -> Result<Vec<TcpStream>, BenchError> {
    let fail = |what, source| BenchError::Socket { what, addr, source };
    (0..flows)
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .map_err(|e| fail("connecting a TCP flow", e))?;
            s.set_nodelay(true)
                .map_err(|e| fail("setting TCP_NODELAY", e))?;
            s.set_nonblocking(true)
                .map_err(|e| fail("setting O_NONBLOCK", e))?;
            Ok(s)
        })
        .collect()
}

/// Writes paced messages; bytes the socket did not take wait in `pending` and go first next
/// time (no new messages are built until they have gone).
pub(super) struct Sender<'a> {
    streams: &'a [TcpStream],
    size: usize,
    pending: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

impl<'a> Sender<'a> {
    pub(super) fn new(streams: &'a [TcpStream], size: usize) -> Sender<'a> {
        Sender {
            streams,
            size,
            pending: vec![Vec::new(); streams.len()],
            scratch: Vec::new(),
        }
    }

    /// Writes as much of `buf` as the socket takes; returns the bytes written.
    fn write_some(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match stream.write(&buf[done..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "TCP flow closed")),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

impl Transmit for Sender<'_> {
    fn send(
        &mut self,
        shared: &Shared,
        flow: usize,
        first_seq: u64,
        count: u64,
    ) -> io::Result<u64> {
        let stream = &self.streams[flow];
        if !self.pending[flow].is_empty() {
            let done = Self::write_some(stream, &self.pending[flow])?;
            self.pending[flow].drain(..done);
            if !self.pending[flow].is_empty() {
                return Ok(0);
            }
        }
        let log = &shared.logs[flow];
        let in_flight = first_seq.saturating_sub(log.answered());
        let room = (log.window() / 2).saturating_sub(in_flight);
        let per_chunk = (CHUNK / self.size).max(1) as u64;
        let n = count.min(room).min(per_chunk);
        if n == 0 {
            return Ok(0);
        }
        let now = monotonic_ns();
        self.scratch.resize(n as usize * self.size, 0);
        for (i, msg) in self.scratch.chunks_mut(self.size).enumerate() {
            let seq = first_seq + i as u64;
            log.record(seq, now);
            payload::encode(msg, log.flow(), seq, now);
        }
        log.publish_attempted(first_seq + n);
        let done = Self::write_some(stream, &self.scratch)?;
        self.pending[flow].extend_from_slice(&self.scratch[done..]);
        // Every message built is committed to the stream: TCP delivers the pending rest.
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<bool> {
        let mut empty = true;
        for (stream, pending) in self.streams.iter().zip(self.pending.iter_mut()) {
            let done = Self::write_some(stream, pending)?;
            pending.drain(..done);
            empty &= pending.is_empty();
        }
        Ok(empty)
    }
}

/// Reassembles and classifies echoed messages on all flows until the phase clock reaches
/// `Done`.
pub(super) fn receive(
    streams: &[TcpStream],
    addr: SocketAddr,
    st: &mut RecvState<'_>,
) -> Result<(), BenchError> {
    let shared = st.shared;
    let size = shared.size;
    let fail = |what, source| BenchError::Socket { what, addr, source };
    let mut matchers: Vec<_> = shared
        .logs
        .iter()
        .map(|l| super::track::Matcher::new(l, size))
        .collect();
    let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; CHUNK + size]; streams.len()];
    let mut fill = vec![0usize; streams.len()];
    poll_flows(
        streams,
        "registering a TCP flow with epoll",
        &fail,
        st,
        |flow, st| {
            let buf = &mut bufs[flow];
            for _ in 0..RECV_ROUNDS {
                let n = match (&streams[flow]).read(&mut buf[fill[flow]..]) {
                    Ok(0) => {
                        return Err(BenchError::PeerClosed {
                            addr,
                            flow: flow as u32,
                        })
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(fail("receiving", e)),
                };
                fill[flow] += n;
                let now = monotonic_ns();
                let whole = fill[flow] / size * size;
                for msg in buf[..whole].chunks_exact(size) {
                    let verdict = matchers[flow].check(&shared.logs[flow], msg);
                    st.account(verdict, now);
                }
                buf.copy_within(whole..fill[flow], 0);
                fill[flow] -= whole;
            }
            Ok(())
        },
    )
}
