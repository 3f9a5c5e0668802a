//! The echo server itself: UDP (recvmmsg/sendmmsg), TCP
//! (epoll, many connections, TCP_NODELAY, echo as soon as data arrives), and optionally the
//! ipbench utilisation daemon, whose idle/total come from `/proc/stat` (USER_HZ ticks summed over
//! all CPUs; see [`crate::util_proto::proc_stat_utilisation`]), not from cycle counters.
//!
//! Every thread waits with a short timeout and checks a stop flag, so [`EchoServer::stop`]
//! returns promptly.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{setsockopt, sockopt};

use crate::batch::Batch;
use crate::util_proto;

/// Datagrams per `recvmmsg`.
const UDP_BATCH: usize = 64;
/// Largest datagram echoed.
const UDP_MAX: usize = 65_536;
/// Socket buffer requested for the UDP socket.
const UDP_SOCKET_BUFFER: usize = 4 << 20;
/// Times a partly sent batch is retried before the rest is dropped (UDP may drop; the
/// benchmark counts it as loss).
const UDP_SEND_RETRIES: usize = 64;
/// `recvmmsg` batches per readiness event, so a flood cannot keep the thread from seeing stop.
const UDP_ROUNDS: usize = 64;
/// Connections accepted per readiness event of the listener.
const ACCEPT_BURST: usize = 256;
/// Bytes read per TCP read.
const TCP_CHUNK: usize = 64 << 10;
/// Most TCP connections served at once; more are closed on accept.
const MAX_TCP_CONNECTIONS: usize = 4096;
/// How often waiting threads check the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// epoll token of the TCP listener.
const LISTENER: u64 = u64::MAX;

/// Where to listen.
#[derive(Clone, Copy, Debug)]
pub struct EchoConfig {
    /// Address to bind.
    pub bind: IpAddr,
    /// UDP echo port (0 picks a free one).
    pub udp_port: u16,
    /// TCP echo port (0 picks a free one).
    pub tcp_port: u16,
    /// Utilisation daemon port (0 picks a free one), or `None` for no daemon.
    pub util_port: Option<u16>,
}

/// Errors starting or running the echo server.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// kernel echo: {what} {addr}: {source}
    #[error("kernel echo: {what} {addr}: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// Local address.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// kernel echo: the {0} thread panicked
    #[error("kernel echo: the {0} thread panicked")]
    Panicked(&'static str),
}

/// Counters of what the server echoed.
#[derive(Debug, Default)]
pub struct EchoStats {
    /// UDP datagrams echoed.
    pub udp_datagrams: AtomicU64,
    /// UDP datagrams not echoed: the socket stayed full, or sending to that peer failed.
    pub udp_dropped: AtomicU64,
    /// TCP bytes echoed.
    pub tcp_bytes: AtomicU64,
    /// TCP connections accepted.
    pub tcp_connections: AtomicU64,
    /// Utilisation sessions answered with data.
    pub util_sessions: AtomicU64,
}

/// A running echo server.
pub struct EchoServer {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    util_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    util_conn: Arc<Mutex<Option<TcpStream>>>,
    stats: Arc<EchoStats>,
    threads: Vec<(&'static str, JoinHandle<Result<(), EchoError>>)>,
}

impl EchoServer {
    /// Binds every socket (so the ports are known and in use on return) and starts serving.
    pub fn start(cfg: EchoConfig) -> Result<EchoServer, EchoError> {
        let fail = |what, addr, source| EchoError::Socket { what, addr, source };
        let udp_bind = SocketAddr::new(cfg.bind, cfg.udp_port);
        let udp = UdpSocket::bind(udp_bind).map_err(|e| fail("binding UDP", udp_bind, e))?;
        udp.set_nonblocking(true)
            .map_err(|e| fail("setting O_NONBLOCK on", udp_bind, e))?;
        // Best effort: the kernel caps these at rmem_max/wmem_max.
        let _ = setsockopt(&udp, sockopt::RcvBuf, &UDP_SOCKET_BUFFER);
        let _ = setsockopt(&udp, sockopt::SndBuf, &UDP_SOCKET_BUFFER);
        let udp_addr = udp
            .local_addr()
            .map_err(|e| fail("reading the address of", udp_bind, e))?;

        let tcp_bind = SocketAddr::new(cfg.bind, cfg.tcp_port);
        let tcp = TcpListener::bind(tcp_bind).map_err(|e| fail("binding TCP", tcp_bind, e))?;
        tcp.set_nonblocking(true)
            .map_err(|e| fail("setting O_NONBLOCK on", tcp_bind, e))?;
        let tcp_addr = tcp
            .local_addr()
            .map_err(|e| fail("reading the address of", tcp_bind, e))?;

        let util = match cfg.util_port {
            Some(port) => {
                let bind = SocketAddr::new(cfg.bind, port);
                let l = TcpListener::bind(bind)
                    .map_err(|e| fail("binding the utilisation daemon on", bind, e))?;
                l.set_nonblocking(true)
                    .map_err(|e| fail("setting O_NONBLOCK on", bind, e))?;
                Some(l)
            }
            None => None,
        };
        let util_addr = match &util {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| fail("reading the address of", tcp_bind, e))?,
            ),
            None => None,
        };

        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EchoStats::default());
        let util_conn = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        let spawn = |name: &'static str, f: Box<dyn FnOnce() -> Result<(), EchoError> + Send>| {
            std::thread::Builder::new()
                .name(format!("echo-{name}"))
                .spawn(f)
                .map(|h| (name, h))
                .map_err(|e| fail("spawning a thread for", udp_addr, e))
        };
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(spawn(
                "udp",
                Box::new(move || serve_udp(udp, udp_addr, &stop, &stats)),
            )?);
        }
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(spawn(
                "tcp",
                Box::new(move || serve_tcp(tcp, tcp_addr, &stop, &stats)),
            )?);
        }
        if let (Some(l), Some(addr)) = (util, util_addr) {
            let (stop, stats, conn) = (stop.clone(), stats.clone(), util_conn.clone());
            threads.push(spawn(
                "util",
                Box::new(move || serve_util(l, addr, &stop, &stats, &conn)),
            )?);
        }
        Ok(EchoServer {
            udp_addr,
            tcp_addr,
            util_addr,
            stop,
            util_conn,
            stats,
            threads,
        })
    }

    /// The bound UDP echo address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP echo address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound utilisation daemon address, if any.
    pub fn util_addr(&self) -> Option<SocketAddr> {
        self.util_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> &EchoStats {
        &self.stats
    }

    /// Stops every thread and reports the first error any of them hit.
    pub fn stop(self) -> Result<(), EchoError> {
        self.stop.store(true, Ordering::Release);
        if let Ok(mut guard) = self.util_conn.lock() {
            if let Some(c) = guard.take() {
                // Unblocks a session waiting for the client's next command.
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        let mut first = Ok(());
        for (name, h) in self.threads {
            let r = h.join().unwrap_or(Err(EchoError::Panicked(name)));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

fn epoll_timeout() -> EpollTimeout {
    EpollTimeout::try_from(STOP_POLL).unwrap_or(EpollTimeout::ZERO)
}

/// A new epoll instance watching `fd` for input, reported as `token`; `fail` names the step
/// that failed.
fn epoll_watching(
    fd: impl AsFd,
    token: u64,
    fail: impl Fn(&'static str, io::Error) -> EchoError,
) -> Result<Epoll, EchoError> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| fail("creating epoll for", e.into()))?;
    epoll
        .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
        .map_err(|e| fail("registering with epoll", e.into()))?;
    Ok(epoll)
}

fn serve_udp(
    sock: UdpSocket,
    addr: SocketAddr,
    stop: &AtomicBool,
    stats: &EchoStats,
) -> Result<(), EchoError> {
    let fail = |what, source| EchoError::Socket { what, addr, source };
    let epoll = epoll_watching(&sock, 0, fail)?;
    let mut batch = Batch::new(UDP_BATCH, UDP_MAX);
    let mut events = [EpollEvent::empty()];
    while !stop.load(Ordering::Acquire) {
        match epoll.wait(&mut events, epoll_timeout()) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(fail("waiting in epoll on", e.into())),
        }
        for _ in 0..UDP_ROUNDS {
            let got = batch
                .recv(sock.as_fd())
                .map_err(|e| fail("receiving on", e))?;
            if got == 0 {
                break;
            }
            let (mut done, mut failed) = (0, 0);
            for _ in 0..UDP_SEND_RETRIES {
                match batch.send(sock.as_fd(), done, got, true) {
                    Ok(n) => done += n,
                    // A send error concerns the datagram at `done` (e.g. an unroutable peer),
                    // not the server: drop that one and carry on with the rest.
                    Err(_) => {
                        done += 1;
                        failed += 1;
                    }
                }
                if done >= got {
                    break;
                }
                std::thread::yield_now();
            }
            stats
                .udp_datagrams
                .fetch_add((done - failed) as u64, Ordering::Relaxed);
            stats
                .udp_dropped
                .fetch_add((got - done + failed) as u64, Ordering::Relaxed);
            if got < batch.count() {
                break;
            }
        }
    }
    Ok(())
}

/// One echoed TCP connection: bytes read but not yet written back wait in `pending`, and
/// while they do the connection is not read (backpressure reaches the client through TCP).
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    /// Whether epoll currently watches this connection for writability instead of input.
    awaiting_output: bool,
}

fn serve_tcp(
    listener: TcpListener,
    addr: SocketAddr,
    stop: &AtomicBool,
    stats: &EchoStats,
) -> Result<(), EchoError> {
    let fail = |what, source| EchoError::Socket { what, addr, source };
    let epoll = epoll_watching(&listener, LISTENER, fail)?;
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_token = 0u64;
    let mut buf = vec![0u8; TCP_CHUNK];
    let mut events = vec![EpollEvent::empty(); 256];
    while !stop.load(Ordering::Acquire) {
        let ready = match epoll.wait(&mut events, epoll_timeout()) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail("waiting in epoll on", e.into())),
        };
        for ev in &events[..ready] {
            let token = ev.data();
            if token == LISTENER {
                accept_all(&listener, &epoll, &mut conns, &mut next_token, stats);
                continue;
            }
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            let keep = if ev.events().contains(EpollFlags::EPOLLOUT) {
                flush(conn, &epoll, token, stats)
            } else {
                echo_readable(conn, &epoll, token, &mut buf, stats)
            };
            if !keep {
                if let Some(c) = conns.remove(&token) {
                    let _ = epoll.delete(&c.stream);
                }
            }
        }
    }
    Ok(())
}

fn accept_all(
    listener: &TcpListener,
    epoll: &Epoll,
    conns: &mut HashMap<u64, Conn>,
    next_token: &mut u64,
    stats: &EchoStats,
) {
    for _ in 0..ACCEPT_BURST {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            // WouldBlock ends the accept burst; other accept errors (e.g. ECONNABORTED, EMFILE)
            // concern one connection attempt, not the server.
            Err(_) => return,
        };
        if conns.len() >= MAX_TCP_CONNECTIONS
            || stream.set_nonblocking(true).is_err()
            || stream.set_nodelay(true).is_err()
        {
            continue;
        }
        let token = *next_token;
        *next_token += 1;
        if epoll
            .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .is_ok()
        {
            stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
            conns.insert(
                token,
                Conn {
                    stream,
                    pending: Vec::new(),
                    awaiting_output: false,
                },
            );
        }
    }
}

/// Reads what is there and writes it straight back. Returns false when the connection is done.
fn echo_readable(
    conn: &mut Conn,
    epoll: &Epoll,
    token: u64,
    buf: &mut [u8],
    stats: &EchoStats,
) -> bool {
    let n = match conn.stream.read(buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return true
        }
        Err(_) => return false,
    };
    conn.pending.extend_from_slice(&buf[..n]);
    flush(conn, epoll, token, stats)
}

/// Writes pending bytes; switches the connection's interest to writable while some remain and
/// back to readable once they are gone. Returns false when the connection is done.
fn flush(conn: &mut Conn, epoll: &Epoll, token: u64, stats: &EchoStats) -> bool {
    let mut done = 0;
    while done < conn.pending.len() {
        match conn.stream.write(&conn.pending[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    stats.tcp_bytes.fetch_add(done as u64, Ordering::Relaxed);
    conn.pending.drain(..done);
    let need_output = !conn.pending.is_empty();
    if need_output != conn.awaiting_output {
        let want = if need_output {
            EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        if epoll
            .modify(&conn.stream, &mut EpollEvent::new(want, token))
            .is_err()
        {
            return false;
        }
        conn.awaiting_output = need_output;
    }
    true
}

fn serve_util(
    listener: TcpListener,
    addr: SocketAddr,
    stop: &AtomicBool,
    stats: &EchoStats,
    current: &Mutex<Option<TcpStream>>,
) -> Result<(), EchoError> {
    while !stop.load(Ordering::Acquire) {
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(STOP_POLL);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(EchoError::Socket {
                    what: "accepting on",
                    addr,
                    source: e,
                })
            }
        };
        // Sessions are served one at a time, like the sDDF daemon (backlog 1). The session
        // blocks on the client's next command; `EchoServer::stop` shuts the socket to end it.
        if conn.set_nonblocking(false).is_err() || conn.set_nodelay(true).is_err() {
            continue;
        }
        if let (Ok(mut guard), Ok(clone)) = (current.lock(), conn.try_clone()) {
            *guard = Some(clone);
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        match util_proto::serve_session(&mut conn, util_proto::proc_stat_utilisation) {
            Ok(true) => {
                stats.util_sessions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => eprintln!("kernel echo: utilisation session on {addr} ended: {e}"),
        }
        if let Ok(mut guard) = current.lock() {
            *guard = None;
        }
    }
    Ok(())
}
