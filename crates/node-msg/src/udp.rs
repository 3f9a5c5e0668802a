//! The adapter over `std::net::UdpSocket`: a [`Node`] or [`Master`] driven by a blocking socket
//! with read timeouts, for host tools and tests. Time is milliseconds since the adapter started.

use std::boxed::Box;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};
use std::vec::Vec;

use crate::wire::MAX_DATAGRAM;
use crate::{
    Config, Event, LossReason, Master, MsgId, Node, RecvError, Refusal, SendError, State,
    MAX_MESSAGE,
};

/// What went wrong for a caller of the adapter.
#[derive(Debug)]
pub enum Error {
    /// The socket failed.
    Io(io::Error),
    /// The node refused the message.
    Send(SendError),
    /// The message was given up.
    Lost(MsgId, LossReason),
    /// The master refused the join.
    Refused(Refusal),
    /// The master did not answer the join.
    MasterSilent,
    /// Nothing happened within the time given.
    Timeout,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "node-msg socket: {e}"),
            Error::Send(e) => write!(f, "node-msg send refused: {e:?}"),
            Error::Lost(m, why) => write!(f, "message {} to node {} lost: {why:?}", m.seq, m.dest),
            Error::Refused(r) => write!(f, "the master refused the join: {r:?}"),
            Error::MasterSilent => f.write_str("the master did not answer the join"),
            Error::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A [`Node`] on a UDP socket.
pub struct UdpNode {
    sock: UdpSocket,
    node: Box<Node>,
    start: Instant,
    events: VecDeque<Event>,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl UdpNode {
    /// Joins the master at `master` from `sock` (bound to an IPv4 address), announcing `mac`;
    /// returns once the master has given an id, or fails when it refuses or stays silent.
    pub fn join(
        sock: UdpSocket,
        master: SocketAddrV4,
        mac: [u8; 6],
        cfg: Config,
    ) -> Result<UdpNode, Error> {
        let start = Instant::now();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
            ^ std::process::id().rotate_left(16);
        let mut n = UdpNode {
            sock,
            node: Box::new(Node::new(master, mac, seed, cfg)),
            start,
            events: VecDeque::new(),
            buf: Box::new([0; MAX_DATAGRAM]),
        };
        loop {
            match n.node.state() {
                State::Joined(_) => return Ok(n),
                State::Refused(r) => return Err(Error::Refused(r)),
                State::Joining => n.poll(Duration::from_millis(50))?,
                _ => return Err(Error::MasterSilent),
            }
        }
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// This node's id.
    pub fn id(&self) -> Option<u8> {
        self.node.id()
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// One round: handles timeouts, sends what is due, then waits up to `wait` (less if the
    /// node has a timeout sooner) for datagrams and handles every one that arrives.
    pub fn poll(&mut self, wait: Duration) -> io::Result<()> {
        let now = self.now();
        self.node.handle_timeout(now);
        while let Some((to, n)) = self.node.poll_transmit(now, &mut self.buf[..]) {
            self.sock.send_to(&self.buf[..n], to)?;
        }
        let until_timeout = self
            .node
            .poll_timeout()
            .map(|t| Duration::from_millis(t.saturating_sub(now)));
        let wait = until_timeout
            .map_or(wait, |t| t.min(wait))
            .max(Duration::from_millis(1));
        self.sock.set_read_timeout(Some(wait))?;
        loop {
            match self.sock.recv_from(&mut self.buf[..]) {
                Ok((n, SocketAddr::V4(from))) => {
                    let now = self.now();
                    self.node.handle_datagram(now, from, &self.buf[..n]);
                }
                Ok(_) => {} // IPv6: not ours
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
            // The rest of what has arrived, without waiting again.
            self.sock.set_nonblocking(true)?;
        }
        self.sock.set_nonblocking(false)?;
        while let Some(e) = self.node.poll_event() {
            self.events.push_back(e);
        }
        Ok(())
    }

    /// Non-blocking send: queues the message (its outcome comes from [`UdpNode::poll_event`]).
    pub fn try_send(&mut self, dest: u8, data: &[u8]) -> Result<MsgId, Error> {
        let id = self
            .node
            .send(self.now(), dest, data)
            .map_err(Error::Send)?;
        self.poll(Duration::ZERO)?;
        Ok(id)
    }

    /// Blocking send: waits for a free slot, sends, and waits for the outcome: `Ok` once the
    /// destination acknowledged the whole message, [`Error::Lost`] when it was given up.
    pub fn send(&mut self, dest: u8, data: &[u8]) -> Result<(), Error> {
        while !self.node.can_send() {
            self.poll(Duration::from_millis(10))?;
        }
        let id = self.try_send(dest, data)?;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| matches!(e, Event::Delivered(m) | Event::Lost(m, _) if *m == id))
            {
                return match self.events.remove(i) {
                    Some(Event::Lost(m, why)) => Err(Error::Lost(m, why)),
                    _ => Ok(()),
                };
            }
            self.poll(Duration::from_millis(50))?;
        }
    }

    /// The next outcome of a [`UdpNode::try_send`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Non-blocking receive.
    pub fn try_recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut buf = std::vec![0; MAX_MESSAGE];
        match self.node.try_recv(&mut buf) {
            Ok((src, len)) => {
                buf.truncate(len);
                Some((src, buf))
            }
            Err(RecvError::WouldBlock | RecvError::BufferTooSmall(_)) => None,
        }
    }

    /// Blocking receive: the next message, or [`Error::Timeout`] after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<(u8, Vec<u8>), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll(Duration::ZERO)?;
            if let Some(m) = self.try_recv() {
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            self.poll(left.min(Duration::from_millis(50)))?;
        }
    }

    /// Keeps the node running (answering, acknowledging) for `d`.
    pub fn serve_for(&mut self, d: Duration) -> io::Result<()> {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.poll(
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            )?;
        }
        Ok(())
    }

    /// Leaves the LAN and waits until the master has answered (or the request was given up).
    pub fn leave(mut self) -> io::Result<()> {
        self.node.leave();
        while matches!(self.node.state(), State::Leaving(_)) {
            self.poll(Duration::from_millis(50))?;
        }
        Ok(())
    }
}

/// A [`Master`] on a UDP socket.
pub struct UdpMaster {
    sock: UdpSocket,
    master: Box<Master>,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl UdpMaster {
    /// A master serving on `sock` with room for `capacity` nodes.
    pub fn new(sock: UdpSocket, capacity: usize) -> UdpMaster {
        UdpMaster {
            sock,
            master: Box::new(Master::new(capacity)),
            buf: Box::new([0; MAX_DATAGRAM]),
        }
    }

    /// The master.
    pub fn master(&self) -> &Master {
        &self.master
    }

    /// Waits up to `wait` for one request, answers it, and returns whether one came.
    pub fn serve_once(&mut self, wait: Duration) -> io::Result<bool> {
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let came = match self.sock.recv_from(&mut self.buf[..]) {
            Ok((n, SocketAddr::V4(from))) => {
                self.master.handle_datagram(from, &self.buf[..n]);
                true
            }
            Ok(_) => false,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) => return Err(e),
        };
        while let Some((to, n)) = self.master.poll_transmit(&mut self.buf[..]) {
            self.sock.send_to(&self.buf[..n], to)?;
        }
        Ok(came)
    }
}
