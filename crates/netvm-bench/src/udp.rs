//! UDP transport: one connected, non-blocking socket per flow; `sendmmsg` batches out,
//! `recvmmsg` batches in, epoll over all flows.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};

use super::engine::poll_flows;
use super::{payload, BenchError, RecvState, Shared, Transmit, SEND_BATCH};
use crate::clock::monotonic_ns;
use crate::track::{BadKind, Matcher, Verdict};
use kernel_echo::batch::Batch;

/// Socket buffer size requested per flow, so bursts at high rates are not dropped locally.
const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 64;
/// `recvmmsg` calls per socket per readiness event, so one busy flow cannot starve the clock.
const RECV_ROUNDS: usize = 16;

/// Opens `flows` sockets connected to `addr`.
pub(super) fn connect(addr: SocketAddr, flows: u32) -> Result<Vec<UdpSocket>, BenchError> {
    let fail = |what, source| BenchError::Socket { what, addr, source };
    let any: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|e| fail("binding", io::Error::other(e)))?;
    (0..flows)
        .map(|_| {
            let s = UdpSocket::bind(any).map_err(|e| fail("binding a UDP socket", e))?;
            s.connect(addr)
                .map_err(|e| fail("connecting a UDP socket", e))?;
            s.set_nonblocking(true)
                .map_err(|e| fail("setting O_NONBLOCK", e))?;
            // Best effort: the kernel caps these at rmem_max/wmem_max.
            let _ = setsockopt(&s, sockopt::RcvBuf, &SOCKET_BUFFER);
            let _ = setsockopt(&s, sockopt::SndBuf, &SOCKET_BUFFER);
            Ok(s)
        })
        .collect()
}

/// Builds and sends batches of benchmark datagrams.
pub(super) struct Sender<'a> {
    sockets: &'a [UdpSocket],
    size: usize,
    batch: Batch,
}

impl<'a> Sender<'a> {
    pub(super) fn new(sockets: &'a [UdpSocket], size: usize) -> Sender<'a> {
        Sender {
            sockets,
            size,
            batch: Batch::new(SEND_BATCH as usize, size),
        }
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
        let log = &shared.logs[flow];
        let n = count.min(self.batch.count() as u64);
        let now = monotonic_ns();
        for i in 0..n {
            let seq = first_seq + i;
            log.record(seq, now);
            payload::encode(
                &mut self.batch.buf_mut(i as usize)[..self.size],
                log.flow(),
                seq,
                now,
            );
            self.batch.set_len(i as usize, self.size);
        }
        // Publish before sending: an echo can arrive before sendmmsg even returns.
        log.publish_attempted(first_seq + n);
        let went = self
            .batch
            .send(self.sockets[flow].as_fd(), 0, n as usize, false)?;
        Ok(went as u64)
    }
}

/// Receives and classifies echoes on all flows until the phase clock reaches `Done`.
pub(super) fn receive(sockets: &[UdpSocket], st: &mut RecvState<'_>) -> Result<(), BenchError> {
    let shared = st.shared;
    let addr = sockets
        .first()
        .and_then(|s| s.peer_addr().ok())
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let fail = |what, source| BenchError::Socket { what, addr, source };
    let mut matchers: Vec<Matcher> = shared
        .logs
        .iter()
        .map(|l| Matcher::new(l, shared.size))
        .collect();
    // One spare byte per buffer so an over-long echo shows up as a length error.
    let mut batch = Batch::new(RECV_BATCH, shared.size + 1);
    poll_flows(
        sockets,
        "registering a socket with epoll",
        &fail,
        st,
        |flow, st| {
            for _ in 0..RECV_ROUNDS {
                let got = batch
                    .recv(sockets[flow].as_fd())
                    .map_err(|e| fail("receiving", e))?;
                let now = monotonic_ns();
                for i in 0..got {
                    let verdict = if batch.truncated(i) {
                        Verdict::Bad(BadKind::Length)
                    } else {
                        matchers[flow].check(&shared.logs[flow], batch.data(i))
                    };
                    st.account(verdict, now);
                }
                if got < batch.count() {
                    break;
                }
            }
            Ok(())
        },
    )
}
