//! The originating role's ABI: the `.echo_peers` section, which makes an echo-server PD also
//! *send* echo requests to other echo servers (peers) and check what comes back, and the
//! `client1=node1+10.0.2.10/udp=32x256@1000/tcp=16384/period=1000/msg=10.0.255.1` list that
//! writes it. With `msg=<master>` the PD also takes part in node messaging (crate `node-msg`):
//! it joins the master at that address and each round sends a message to every peer that is a
//! node (an address of `netvm_api::lan`'s shape).
//!
//! The section is 96 bytes (version 2), integers little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `EPRS` |
//! | 4 | version, 2 |
//! | 5 | peer count, 1..=[`MAX_PEERS`] |
//! | 6..8 | UDP payload bytes per request, [`MIN_UDP_SIZE`]..=[`MAX_UDP_SIZE`] |
//! | 8..12 | UDP requests per peer per round, 0..=[`MAX_UDP_PER_ROUND`] |
//! | 12..16 | UDP requests per second per peer (the pacing), 1.. |
//! | 16..20 | TCP bytes per peer per round, 0..=[`MAX_TCP_BYTES`] |
//! | 20..24 | round period in milliseconds, [`MIN_PERIOD_MS`]..=[`MAX_PERIOD_MS`] |
//! | 24..88 | the peers' IPv4 addresses, network order, [`MAX_PEERS`] slots; unused slots zero |
//! | 88..92 | node messaging's master, IPv4, network order; zero: no messaging |
//! | 92..96 | reserved, zero |
//!
//! Version 1 sections (88 bytes, without the last two fields: no messaging) are still read.
//!
//! Unlike `.echo_config`, an all-zero section (nothing written) is valid and means "no peers":
//! the role is off unless configured, and a system built without it is the plain echo server.
use core::net::Ipv4Addr;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The section name.
pub const SECTION: &str = ".echo_peers";
/// The magic.
pub const MAGIC: [u8; 4] = *b"EPRS";
/// The layout version.
pub const VERSION: u8 = 2;
/// The section's size.
pub const SECTION_BYTES: usize = 96;
/// The size of a version-1 section (no messaging).
pub const V1_BYTES: usize = 88;
/// Most peers one PD originates traffic to.
pub const MAX_PEERS: usize = 16;
/// Smallest UDP payload: the request header (round, sequence number, send time).
pub const MIN_UDP_SIZE: u16 = 16;
/// Largest UDP payload that fits one 1500-byte IPv4 frame.
pub const MAX_UDP_SIZE: u16 = 1472;
/// Most UDP requests per peer per round (the PD keeps one bit per request to find duplicates).
pub const MAX_UDP_PER_ROUND: u32 = 1024;
/// Most TCP bytes per peer per round.
pub const MAX_TCP_BYTES: u32 = 16 << 20;
/// Shortest round period.
pub const MIN_PERIOD_MS: u32 = 10;
/// Longest round period (one hour).
pub const MAX_PERIOD_MS: u32 = 3_600_000;

/// The section's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct EchoPeersSection {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`VERSION`].
    pub version: u8,
    /// Peers in use.
    pub count: u8,
    /// UDP payload bytes.
    pub udp_size: [u8; 2],
    /// UDP requests per peer per round.
    pub udp_count: [u8; 4],
    /// UDP requests per second per peer.
    pub udp_rate: [u8; 4],
    /// TCP bytes per peer per round.
    pub tcp_bytes: [u8; 4],
    /// Round period, milliseconds.
    pub period_ms: [u8; 4],
    /// Peer addresses.
    pub peers: [[u8; 4]; MAX_PEERS],
    /// Node messaging's master (zero: no messaging).
    pub msg_master: [u8; 4],
    /// Zero.
    pub reserved: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<EchoPeersSection>() == SECTION_BYTES);

/// What each round offers each peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// UDP payload bytes per request.
    pub udp_size: u16,
    /// UDP requests per peer per round.
    pub udp_count: u32,
    /// UDP requests per second per peer.
    pub udp_rate: u32,
    /// TCP bytes per peer per round (0: no TCP).
    pub tcp_bytes: u32,
    /// Round period, milliseconds.
    pub period_ms: u32,
}

impl Default for Load {
    /// 32 requests of 256 bytes at 1000/s, 16 KiB over TCP, a round a second.
    fn default() -> Self {
        Load {
            udp_size: 256,
            udp_count: 32,
            udp_rate: 1000,
            tcp_bytes: 16 * 1024,
            period_ms: 1000,
        }
    }
}

/// The peers and the load: what the section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPlan {
    addrs: [Ipv4Addr; MAX_PEERS],
    count: usize,
    /// The load offered to every peer.
    pub load: Load,
    /// Node messaging's master, if the PD takes part in node messaging.
    pub msg_master: Option<Ipv4Addr>,
}

impl PeerPlan {
    /// No peers yet, `load` for those added.
    pub fn new(load: Load) -> Self {
        PeerPlan {
            addrs: [Ipv4Addr::UNSPECIFIED; MAX_PEERS],
            count: 0,
            load,
            msg_master: None,
        }
    }

    /// Adds a peer; `false` (and nothing added) when [`MAX_PEERS`] are there already.
    pub fn push(&mut self, addr: Ipv4Addr) -> bool {
        let Some(slot) = self.addrs.get_mut(self.count) else {
            return false;
        };
        *slot = addr;
        self.count += 1;
        true
    }

    /// The peers, in the order given.
    pub fn peers(&self) -> &[Ipv4Addr] {
        &self.addrs[..self.count]
    }
}

/// What is wrong with an `.echo_peers` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeersError {
    /// The section is neither 96 bytes (version 2) nor 88 (version 1).
    Size(usize),
    /// The magic is not `EPRS` (and the section is not all zero).
    Magic([u8; 4]),
    /// Unknown layout version.
    Version(u8),
    /// No peers, or more than [`MAX_PEERS`].
    Count(u8),
    /// A peer address that is unspecified, multicast or broadcast.
    Addr(Ipv4Addr),
    /// A load field out of its range (the name says which).
    Load(&'static str, u32),
    /// A peer slot past the count is not zero.
    Unused(usize),
    /// The reserved bytes are not zero.
    Reserved,
}

impl core::fmt::Display for PeersError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PeersError::Size(n) => write!(
                f,
                "{SECTION}: {n} bytes, expected {SECTION_BYTES} (or {V1_BYTES}, version 1)"
            ),
            PeersError::Magic(m) => write!(f, "{SECTION}: magic {m:02x?}, expected \"EPRS\""),
            PeersError::Version(v) => write!(
                f,
                "{SECTION}: version {v}, expected {VERSION} in {SECTION_BYTES} bytes or 1 in {V1_BYTES}"
            ),
            PeersError::Count(n) => write!(f, "{SECTION}: {n} peers, expected 1..={MAX_PEERS}"),
            PeersError::Addr(a) => write!(f, "{SECTION}: peer {a} is not a unicast address"),
            PeersError::Load(field, v) => write!(f, "{SECTION}: {field} {v} is out of range"),
            PeersError::Unused(i) => {
                write!(f, "{SECTION}: peer slot {i} is past the count but not zero")
            }
            PeersError::Reserved => write!(f, "{SECTION}: reserved bytes 92..96 are not zero"),
        }
    }
}

fn check_load(load: &Load) -> Result<(), PeersError> {
    let bad = |name, v: u32, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(PeersError::Load(name, v))
        }
    };
    let size = load.udp_size;
    bad(
        "udp size",
        size.into(),
        (MIN_UDP_SIZE..=MAX_UDP_SIZE).contains(&size),
    )?;
    bad(
        "udp count",
        load.udp_count,
        load.udp_count <= MAX_UDP_PER_ROUND,
    )?;
    bad("udp rate", load.udp_rate, load.udp_rate >= 1)?;
    bad("tcp bytes", load.tcp_bytes, load.tcp_bytes <= MAX_TCP_BYTES)?;
    bad(
        "period ms",
        load.period_ms,
        (MIN_PERIOD_MS..=MAX_PERIOD_MS).contains(&load.period_ms),
    )
}

fn check_addr(addr: Ipv4Addr) -> Result<Ipv4Addr, PeersError> {
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
        return Err(PeersError::Addr(addr));
    }
    Ok(addr)
}

impl EchoPeersSection {
    /// The section for `plan`.
    pub fn new(plan: &PeerPlan) -> Self {
        let mut peers = [[0; 4]; MAX_PEERS];
        for (slot, addr) in peers.iter_mut().zip(plan.peers()) {
            *slot = addr.octets();
        }
        let load = plan.load;
        EchoPeersSection {
            magic: MAGIC,
            version: VERSION,
            count: plan.count as u8,
            udp_size: load.udp_size.to_le_bytes(),
            udp_count: load.udp_count.to_le_bytes(),
            udp_rate: load.udp_rate.to_le_bytes(),
            tcp_bytes: load.tcp_bytes.to_le_bytes(),
            period_ms: load.period_ms.to_le_bytes(),
            peers,
            msg_master: plan.msg_master.map_or([0; 4], |a| a.octets()),
            reserved: [0; 4],
        }
    }

    /// Checks and decodes a section: `Ok(None)` for an all-zero one (the role is off).
    /// Version 1 (88 bytes) reads as version 2 without messaging.
    pub fn parse(bytes: &[u8]) -> Result<Option<PeerPlan>, PeersError> {
        let mut full = [0u8; SECTION_BYTES];
        let version = match bytes.len() {
            SECTION_BYTES => VERSION,
            V1_BYTES => 1,
            n => return Err(PeersError::Size(n)),
        };
        full[..bytes.len()].copy_from_slice(bytes);
        let s = EchoPeersSection::read_from_bytes(&full[..])
            .map_err(|_| PeersError::Size(bytes.len()))?;
        if bytes.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        if s.magic != MAGIC {
            return Err(PeersError::Magic(s.magic));
        }
        if s.version != version {
            return Err(PeersError::Version(s.version));
        }
        let count = usize::from(s.count);
        if count == 0 || count > MAX_PEERS {
            return Err(PeersError::Count(s.count));
        }
        let load = Load {
            udp_size: u16::from_le_bytes(s.udp_size),
            udp_count: u32::from_le_bytes(s.udp_count),
            udp_rate: u32::from_le_bytes(s.udp_rate),
            tcp_bytes: u32::from_le_bytes(s.tcp_bytes),
            period_ms: u32::from_le_bytes(s.period_ms),
        };
        check_load(&load)?;
        let mut plan = PeerPlan::new(load);
        for octets in &s.peers[..count] {
            plan.push(check_addr(Ipv4Addr::from(*octets))?);
        }
        if let Some(i) = (count..MAX_PEERS).find(|i| s.peers[*i] != [0; 4]) {
            return Err(PeersError::Unused(i));
        }
        if s.reserved != [0; 4] {
            return Err(PeersError::Reserved);
        }
        plan.msg_master = match Ipv4Addr::from(s.msg_master) {
            a if a.is_unspecified() => None,
            a => Some(check_addr(a)?),
        };
        Ok(Some(plan))
    }
}

/// One entry of a peer list that [`parse_peer_list`] could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerListError<'a> {
    /// The entry, as given.
    pub entry: &'a str,
    /// The part of it that is wrong.
    pub part: &'a str,
    /// What is wrong with it.
    pub reason: PeerListErrorKind,
}

/// What is wrong with a peer-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerListErrorKind {
    /// No `=` between the PD name and its peers (or no PD name).
    NoEquals,
    /// A peer that is neither an IPv4 unicast address nor `node<n>` / `node<n>.<client>`.
    BadPeer,
    /// More than [`MAX_PEERS`] peers.
    TooMany,
    /// No peers.
    NoPeers,
    /// An option that is not `udp=<count>x<size>@<rate>`, `tcp=<bytes>`, `period=<ms>` or
    /// `msg=<master IPv4>`, or a value out of its range.
    BadOption,
}

impl core::fmt::Display for PeerListError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (entry, part) = (self.entry, self.part);
        match self.reason {
            PeerListErrorKind::NoEquals => write!(
                f,
                "'{entry}': expected <pd>=<peer>+<peer>...[/udp=<count>x<size>@<rate>][/tcp=<bytes>][/period=<ms>][/msg=<master>]"
            ),
            PeerListErrorKind::BadPeer => write!(
                f,
                "'{entry}': peer '{part}' is no IPv4 unicast address, node<n> or node<n>.<client>"
            ),
            PeerListErrorKind::TooMany => write!(f, "'{entry}': more than {MAX_PEERS} peers"),
            PeerListErrorKind::NoPeers => write!(f, "'{entry}': no peers"),
            PeerListErrorKind::BadOption => write!(
                f,
                "'{entry}': option '{part}': expected udp=<count>x<size>@<rate> (count 0..={MAX_UDP_PER_ROUND}, size {MIN_UDP_SIZE}..={MAX_UDP_SIZE}, rate >= 1), tcp=<bytes> (<= {MAX_TCP_BYTES}), period=<ms> ({MIN_PERIOD_MS}..={MAX_PERIOD_MS}) or msg=<master IPv4>"
            ),
        }
    }
}

/// Parses the originating PDs' peer list (entries separated by commas or white space):
/// `client1=node1+10.0.2.10/udp=32x256@1000/tcp=16384/period=1000/msg=10.0.255.1`. Each entry
/// is a PD name, `+`-separated peers and optional `/`-separated load options ([`Load::default`]
/// for those not given) and `msg=<master>` (node messaging, off if not given). A peer is an IPv4 address, `node<n>` (client 0 of node `n` on a netvm LAN,
/// `netvm_api::lan::client_ip`) or `node<n>.<c>` (its client `c`). The one parser behind
/// `guest-image sel4-pds --echo-peers` and `netvm run --echo-peers`; allocates nothing.
pub fn parse_peer_list(
    text: &str,
) -> impl Iterator<Item = Result<(&str, PeerPlan), PeerListError<'_>>> {
    text.split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_peer_entry)
}

fn parse_peer_entry(entry: &str) -> Result<(&str, PeerPlan), PeerListError<'_>> {
    let fail = |part, reason| PeerListError {
        entry,
        part,
        reason,
    };
    let (pd, rest) = entry
        .split_once('=')
        .filter(|(pd, _)| !pd.is_empty())
        .ok_or(fail(entry, PeerListErrorKind::NoEquals))?;
    let mut parts = rest.split('/');
    let peers = parts.next().unwrap_or_default();
    let mut load = Load::default();
    let mut msg_master = None;
    for option in parts {
        if let Some(master) = option.strip_prefix("msg=") {
            let addr = master.parse().ok().and_then(|a| check_addr(a).ok());
            msg_master = Some(addr.ok_or(fail(option, PeerListErrorKind::BadOption))?);
            continue;
        }
        parse_option(option, &mut load)
            .filter(|()| check_load(&load).is_ok())
            .ok_or(fail(option, PeerListErrorKind::BadOption))?;
    }
    let mut plan = PeerPlan::new(load);
    plan.msg_master = msg_master;
    for peer in peers.split('+').filter(|p| !p.is_empty()) {
        let addr = parse_peer(peer).ok_or(fail(peer, PeerListErrorKind::BadPeer))?;
        if !plan.push(addr) {
            return Err(fail(peer, PeerListErrorKind::TooMany));
        }
    }
    if plan.peers().is_empty() {
        return Err(fail(rest, PeerListErrorKind::NoPeers));
    }
    Ok((pd, plan))
}

fn parse_peer(peer: &str) -> Option<Ipv4Addr> {
    let addr = match peer.strip_prefix("node") {
        Some(id) => {
            let (node, client) = id.split_once('.').unwrap_or((id, "0"));
            netvm_api::lan::client_ip(node.parse().ok()?, client.parse().ok()?).ok()?
        }
        None => peer.parse().ok()?,
    };
    check_addr(addr).ok()
}

fn parse_option(option: &str, load: &mut Load) -> Option<()> {
    let (key, value) = option.split_once('=')?;
    match key {
        "udp" => {
            let (count, rest) = value.split_once('x')?;
            let (size, rate) = rest.split_once('@')?;
            load.udp_count = count.parse().ok()?;
            load.udp_size = size.parse().ok()?;
            load.udp_rate = rate.parse().ok()?;
        }
        "tcp" => load.tcp_bytes = value.parse().ok()?,
        "period" => load.period_ms = value.parse().ok()?,
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests;
