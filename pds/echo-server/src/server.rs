//! The echo core: smoltcp over a [`NetDevice`], the echo sockets and the utilisation daemon.
use core::net::Ipv4Addr;

use net_client::{Counters, NetDevice, Signal, DEFAULT_RX_BUDGET};
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::msg::{Messaging, MsgLog};
use crate::origin_io::{OriginIo, Parts, RoundLog};
use crate::storage::{Buffers, Sockets};
use crate::utilisation::{Next, Session, GREETING};
use crate::{
    Clock, CycleSource, IpConfig, TCP_ECHO_CONNS, TCP_ECHO_PORT, UDP_ECHO_PORT, UTILISATION_PORT,
};

/// What the echo server did (the device's own counters are in [`EchoServer::net_counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// UDP datagrams echoed.
    pub udp_echoed: u64,
    /// UDP datagrams received but not echoed (no room to send).
    pub udp_dropped: u64,
    /// TCP echo connections accepted.
    pub tcp_connections: u64,
    /// Bytes echoed over TCP.
    pub tcp_echoed_bytes: u64,
    /// Utilisation daemon connections accepted.
    pub util_sessions: u64,
}

/// The echo server of one client PD.
pub struct EchoServer<'a, C: CycleSource, K: Clock> {
    dev: NetDevice<'a>,
    iface: Interface,
    sockets: SocketSet<'a>,
    udp: SocketHandle,
    tcp: [SocketHandle; TCP_ECHO_CONNS],
    /// Whether each TCP echo socket has a connection (to count accepts).
    tcp_connected: [bool; TCP_ECHO_CONNS],
    util: SocketHandle,
    /// The daemon's state while a connection is established.
    session: Option<Session>,
    dhcp: Option<SocketHandle>,
    cycles: C,
    clock: K,
    /// Where echoed bytes pass between a socket's receive and send buffers.
    scratch: [u8; 4096],
    stats: EchoStats,
    /// The originating role's sockets until [`EchoServer::originate`] takes them.
    origin_parts: Option<Parts<'a>>,
    /// The originating role, if configured.
    origin: Option<OriginIo<'a>>,
    /// The messaging role's socket and message buffer until [`EchoServer::message`] takes them.
    msg_parts: Option<(udp::Socket<'a>, &'a mut [u8; node_msg::MAX_MESSAGE])>,
    /// The messaging role, if configured.
    msg: Option<Messaging<'a>>,
}

fn instant(us: u64) -> Instant {
    Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
}

fn echo_socket<'a>(rx: &'a mut [u8], tx: &'a mut [u8]) -> tcp::Socket<'a> {
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    // Echo answers every segment at once, so Nagle would only add latency; the echo carries the
    // ACK, so delaying ACKs saves nothing, and an immediate ACK needs no timer (see `pd`).
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s.set_congestion_control(tcp::CongestionControl::Reno);
    s
}

impl<'a, C: CycleSource, K: Clock> EchoServer<'a, C, K> {
    /// Sets up the interface (MAC from the device, address from `ip`) and the sockets in
    /// `sockets` with their data in `buffers`, all listening.
    pub fn new(
        mut dev: NetDevice<'a>,
        ip: IpConfig,
        sockets: &'a mut Sockets<'a>,
        buffers: &'a mut Buffers,
        cycles: C,
        mut clock: K,
    ) -> Self {
        let mac = dev.info().mac;
        let now = instant(clock.now_us());
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        // Seeds TCP initial sequence numbers and ephemeral ports: distinct per MAC and per boot
        // time, which is as much entropy as a PD without an RNG has.
        let mut seed = [0u8; 8];
        seed[..6].copy_from_slice(&mac);
        config.random_seed = u64::from_le_bytes(seed) ^ now.total_micros() as u64;
        let mut iface = Interface::new(config, &mut dev, now);

        let Sockets {
            sockets,
            udp_rx_meta,
            udp_tx_meta,
            peer_rx_meta,
            peer_tx_meta,
            msg_rx_meta,
            msg_tx_meta,
        } = sockets;
        let Buffers {
            udp_rx,
            udp_tx,
            tcp_rx,
            tcp_tx,
            util_rx,
            util_tx,
            peer_rx,
            peer_tx,
            origin_tcp_rx,
            origin_tcp_tx,
            msg_rx,
            msg_tx,
            msg_buf,
        } = buffers;
        let msg_socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut msg_rx_meta[..], &mut msg_rx[..]),
            udp::PacketBuffer::new(&mut msg_tx_meta[..], &mut msg_tx[..]),
        );
        let origin_parts = Parts::new(
            (peer_rx_meta, peer_tx_meta),
            (peer_rx, peer_tx),
            (origin_tcp_rx, origin_tcp_tx),
        );
        let mut set = SocketSet::new(&mut sockets[..]);

        let mut udp_socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut udp_rx_meta[..], &mut udp_rx[..]),
            udp::PacketBuffer::new(&mut udp_tx_meta[..], &mut udp_tx[..]),
        );
        udp_socket
            .bind(UDP_ECHO_PORT)
            .expect("a fresh socket binds to a nonzero port");
        let udp = set.add(udp_socket);

        let mut tcp = [SocketHandle::default(); TCP_ECHO_CONNS];
        for ((rx, tx), handle) in tcp_rx.iter_mut().zip(tcp_tx.iter_mut()).zip(&mut tcp) {
            let mut s = echo_socket(rx, tx);
            s.listen(TCP_ECHO_PORT)
                .expect("a fresh socket listens on a nonzero port");
            *handle = set.add(s);
        }
        let mut util_socket = echo_socket(util_rx, util_tx);
        util_socket
            .listen(UTILISATION_PORT)
            .expect("a fresh socket listens on a nonzero port");
        let util = set.add(util_socket);

        let dhcp = match ip {
            IpConfig::Static {
                addr,
                prefix_len,
                gateway,
            } => {
                iface.update_ip_addrs(|addrs| {
                    // The list is empty and holds at least one address.
                    let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(addr), prefix_len));
                });
                if let Some(gw) = gateway {
                    // Fails only when the route table is full; it is empty here.
                    let _ = iface.routes_mut().add_default_ipv4_route(gw);
                }
                None
            }
            IpConfig::Dhcp => Some(set.add(dhcpv4::Socket::new())),
        };

        EchoServer {
            dev,
            iface,
            sockets: set,
            udp,
            tcp,
            tcp_connected: [false; TCP_ECHO_CONNS],
            util,
            session: None,
            dhcp,
            cycles,
            clock,
            scratch: [0; 4096],
            stats: EchoStats::default(),
            origin_parts: Some(origin_parts),
            origin: None,
            msg_parts: Some((msg_socket, msg_buf)),
            msg: None,
        }
    }

    /// Also takes part in node messaging (`crate::msg`) as `node` (started over) joining the master
    /// at `master`, messaging the peers of `plan` that are nodes every round of its period,
    /// printing with `log`. Once only; a later call changes nothing. With the originating role
    /// on, its stats page holds the role's counters ([`crate::origin_io::lay_out_stats`]).
    pub fn message(
        &mut self,
        node: &'a mut node_msg::Node,
        master: Ipv4Addr,
        plan: &echo_api::peers::PeerPlan,
        log: MsgLog,
    ) {
        let Some((socket, buf)) = self.msg_parts.take() else {
            return;
        };
        let mac = self.dev.info().mac;
        // Differs per MAC and per boot time, so a restarted PD is a new incarnation.
        let seed =
            u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ self.clock.now_us() as u32;
        self.msg = Some(Messaging::new(
            (node, buf),
            socket,
            &mut self.sockets,
            (master, mac, seed),
            plan.peers(),
            plan.load.period_ms,
            log,
        ));
    }

    /// The messaging role's counters and its peers' numbers (`None` if it is off).
    pub fn messaging(&self) -> Option<(crate::msg::MsgCounters, &[crate::msg::PeerMsgs])> {
        self.msg.as_ref().map(|m| (m.counters(), m.peers()))
    }

    /// Also originates echo traffic to `plan`'s peers (`crate::origin`), printing each round's
    /// lines with `log` and publishing the device's and the role's counters into `stats` (laid
    /// out by [`crate::origin_io::lay_out_stats`] for that many peers) instead of the device
    /// alone. Once only; a later call changes nothing.
    pub fn originate(
        &mut self,
        plan: &echo_api::peers::PeerPlan,
        stats: Option<(netvm_api::stats::StatsWriter<'a>, usize)>,
        log: RoundLog,
    ) {
        if let Some(parts) = self.origin_parts.take() {
            self.origin = Some(OriginIo::new(plan, parts, &mut self.sockets, stats, log));
        }
    }

    /// The originating role's peers and their counters so far (none if it is off).
    pub fn origin_peers(
        &self,
    ) -> impl Iterator<Item = (Ipv4Addr, crate::origin::PeerCounters)> + '_ {
        self.origin.iter().flat_map(|o| {
            o.peers()
                .enumerate()
                .map(|(i, addr)| (addr, o.peer_counters(i)))
        })
    }

    /// Handles whatever woke the PD (frames from the copier, TX buffers back from virt_tx, a
    /// timeout): takes a batch of frames, lets smoltcp and the sockets answer, sends, notifies
    /// the peers that asked, and repeats until `rx_active` is empty and re-armed. Then asks the
    /// clock for a wake-up when smoltcp next has work of its own (retransmission, DHCP).
    pub fn process(&mut self, signal: &mut impl Signal) {
        let now = loop {
            let now = instant(self.clock.now_us());
            self.dev.start_rx_batch(DEFAULT_RX_BUDGET);
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            // Echo what arrived, then send: one `poll_egress` sends at most one packet per
            // socket, so repeat it while it sends; sending frees socket space that more echoing
            // can use. Each round consumes received data or TX buffers, so this ends.
            loop {
                let moved = self.service(now);
                let mut sent = false;
                while self
                    .iface
                    .poll_egress(now, &mut self.dev, &mut self.sockets)
                    == PollResult::SocketStateChanged
                {
                    sent = true;
                }
                if !moved && !sent {
                    break;
                }
            }
            self.dev.notify(signal);
            if self.dev.rx_batch_exhausted() || self.dev.rearm_rx() {
                continue;
            }
            break now;
        };
        // Relative to the time the clock last read, which is `now`.
        let smoltcp = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| d.total_micros());
        let msg = self.msg.as_ref();
        let origin = self.origin.as_mut().map(|o| {
            o.publish(&self.dev.counters(), msg.map(Messaging::counters));
            o.next_wake_us(now.total_micros() as u64)
        });
        let msg = msg.and_then(|m| m.next_wake_us(now));
        let delay = [smoltcp, origin, msg].into_iter().flatten().min();
        if let Some(delay) = delay {
            self.clock.wake_in(delay);
        }
    }

    /// Microseconds until smoltcp next needs [`EchoServer::process`] without new frames (TCP
    /// retransmission, DHCP), or `None` if only frames can make work.
    pub fn poll_delay_us(&mut self) -> Option<u64> {
        let now = instant(self.clock.now_us());
        self.iface
            .poll_delay(now, &self.sockets)
            .map(|d| d.total_micros())
    }

    /// The interface's IPv4 address (`None` until DHCP has configured one).
    pub fn ipv4_addr(&self) -> Option<Ipv4Addr> {
        self.iface.ipv4_addr()
    }

    /// Echo statistics.
    pub fn stats(&self) -> EchoStats {
        self.stats
    }

    /// The device's counters (frames, drops by reason, notifications).
    pub fn net_counters(&self) -> Counters {
        self.dev.counters()
    }

    /// The device (for tests and diagnostics).
    pub fn device(&self) -> &NetDevice<'a> {
        &self.dev
    }

    /// Runs every socket's application side once; `true` if any data moved.
    fn service(&mut self, now: Instant) -> bool {
        if let Some(h) = self.dhcp {
            self.service_dhcp(h);
        }
        let udp = self.service_udp();
        let tcp = self.service_tcp();
        let util = self.service_util();
        let origin = match &mut self.origin {
            // Only with an address to originate from (DHCP may not have given one yet).
            Some(o) if self.iface.ipv4_addr().is_some() => o.service(
                now.total_micros() as u64,
                &mut self.iface,
                &mut self.sockets,
            ),
            _ => false,
        };
        let msg = match &mut self.msg {
            Some(m) if self.iface.ipv4_addr().is_some() => m.service(now, &mut self.sockets),
            _ => false,
        };
        udp | tcp | util | origin | msg
    }

    fn service_dhcp(&mut self, handle: SocketHandle) {
        match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => {}
            Some(dhcpv4::Event::Configured(c)) => {
                self.iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(c.address));
                });
                match c.router {
                    Some(r) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
            }
            Some(dhcpv4::Event::Deconfigured) => {
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }

    fn service_udp(&mut self) -> bool {
        let s = self.sockets.get_mut::<udp::Socket>(self.udp);
        let mut moved = false;
        while let Ok((data, _)) = s.peek() {
            let n = data.len();
            if !s.can_send() || s.payload_send_capacity() - s.send_queue() < n {
                break; // egress makes room
            }
            let Ok((n, meta)) = s.recv_slice(&mut self.scratch) else {
                break;
            };
            moved = true;
            // Reply from the address the socket is bound to, to whoever sent it.
            match s.send_slice(&self.scratch[..n], meta.endpoint) {
                Ok(()) => self.stats.udp_echoed += 1,
                Err(_) => self.stats.udp_dropped += 1,
            }
        }
        moved
    }

    fn service_tcp(&mut self) -> bool {
        let mut moved = false;
        for (i, &h) in self.tcp.iter().enumerate() {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            match s.state() {
                tcp::State::Closed => {
                    self.tcp_connected[i] = false;
                    s.listen(TCP_ECHO_PORT)
                        .expect("a closed socket listens on a nonzero port");
                    continue;
                }
                tcp::State::Listen => continue,
                _ if !self.tcp_connected[i] => {
                    self.tcp_connected[i] = true;
                    self.stats.tcp_connections += 1;
                }
                _ => {}
            }
            while s.can_recv() {
                let room = s.send_capacity() - s.send_queue();
                if room == 0 {
                    break;
                }
                let want = room.min(self.scratch.len());
                let Ok(n) = s.recv_slice(&mut self.scratch[..want]) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                // Cannot be short: `n <= room`.
                let sent = s.send_slice(&self.scratch[..n]).unwrap_or(0);
                self.stats.tcp_echoed_bytes += sent as u64;
                moved = true;
            }
            // The peer finished sending and everything it sent is queued back: finish too. Our
            // FIN follows the queued data.
            if !s.may_recv() && s.state() == tcp::State::CloseWait {
                s.close();
            }
        }
        moved
    }

    fn service_util(&mut self) -> bool {
        let s = self.sockets.get_mut::<tcp::Socket>(self.util);
        match s.state() {
            tcp::State::Closed => {
                self.session = None;
                s.listen(UTILISATION_PORT)
                    .expect("a closed socket listens on a nonzero port");
                return false;
            }
            // We closed first (after STOP) and the peer closed too: the connection is over. Skip
            // TIME-WAIT so the daemon is ready for the next run even while time stands still.
            tcp::State::TimeWait => {
                s.abort();
                self.session = None;
                return false;
            }
            tcp::State::Listen | tcp::State::SynReceived => return false,
            _ => {}
        }
        let mut moved = false;
        let session = match &mut self.session {
            Some(session) => session,
            None => {
                self.stats.util_sessions += 1;
                let _ = s.send_slice(GREETING);
                moved = true;
                self.session.insert(Session::new())
            }
        };
        while s.can_recv() {
            let Ok(n) = s.recv_slice(&mut self.scratch) else {
                break;
            };
            moved = true;
            let next = session.receive(&self.scratch[..n], &mut self.cycles, &mut |reply| {
                // Replies are short and the daemon's peer reads them; a full buffer means a
                // peer that does not, and losing its replies is its own problem.
                let _ = s.send_slice(reply);
            });
            if next == Next::Close {
                s.close();
            }
        }
        if !s.may_recv() && s.state() == tcp::State::CloseWait {
            s.close();
        }
        moved
    }
}
