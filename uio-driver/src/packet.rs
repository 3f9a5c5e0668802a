//! The NIC side in Linux: a promiscuous `AF_PACKET` socket with a TPACKET_V3 receive ring and
//! batched `sendmmsg` transmit.
//!
//! # The block-retire latency problem, and what this module does about it
//!
//! TPACKET_V3 hands frames to user space in blocks: a block becomes readable (and `poll` wakes)
//! only when it is full or its retire timer (>= 1 ms) fires. Under low load a frame therefore
//! waits up to the timeout, which made a plain V3 reflector's median RTT 567 us at 100 Mb/s
//! (anchors.md §F). This driver instead:
//!
//! 1. **drains partially filled blocks**: it walks the block the kernel is still filling and
//!    takes every packet whose header is complete. The kernel ORs `TP_STATUS_USER` into a
//!    packet's `tp_status` after copying its data and before filling `tp_mac`/`tp_snaplen`;
//!    because the driver zeroes every block's used bytes before handing it back, a header
//!    with `TP_STATUS_USER`, a non-zero `tp_mac` and a non-zero `tp_snaplen` is a finished packet
//!    (stale bytes from an earlier round cannot look like one). Retired blocks are then finished
//!    from where the walk stopped and returned.
//! 2. **wakes per frame** ([`RxWakeup::PerFrame`], the default): a second packet socket with a
//!    BPF filter that keeps 1 byte of each frame and a tiny receive buffer exists only to make
//!    `poll` wake when a frame arrives; it is bound *before* the ring socket, so the kernel (which
//!    delivers to the most recently bound socket first) has written the ring before the wake-up.
//!    Under load its queue overflows cheaply and the ring carries the data.
//!
//! [`RxWakeup::BlockRetire`] keeps only the retire timer, for comparison (see
//! `examples/veth_bench.rs`).
//!
//! [`RxWakeup::FrameRing`] (the driver VM's choice, on its kernel command line) uses a
//! TPACKET_V2 ring instead: a 2048-byte slot per frame, each handed to user space on its own
//! with `poll` woken per frame, so neither the notifier nor the partial-block walk is needed;
//! each slot goes back to the kernel as soon as its frame is taken. The kernel writes a slot's
//! status after its data with a barrier between, so the caveat below does not apply to it.
//!
//! Caveat: on a weakly ordered SMP machine the kernel's header stores are not ordered against its
//! data stores by a barrier; the netvm guest has one vCPU and host mode runs on x86 (TSO), where
//! the check above is exact.
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};

use sddf::NET_BUFFER_SIZE;

use crate::driver::{Nic, NicPoll, RxFrame, RxVerdict, TxReport, BATCH};
use crate::sys::{self, Mapping};

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: i32 = 263;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_RX_RING: i32 = 5;
const PACKET_STATISTICS: i32 = 6;
const PACKET_VERSION: i32 = 10;
const PACKET_QDISC_BYPASS: i32 = 20;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const TPACKET_V2: i32 = 1;
const TPACKET_V3: i32 = 2;
const PACKET_MR_PROMISC: u16 = 1;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
mod block {
    pub const STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const BLK_LEN: usize = 20;
    /// `BLK_PLUS_PRIV(0)`: where the first packet starts with no private area.
    pub const FIRST_PKT: usize = 48;
}

/// `struct tpacket3_hdr`.
mod pkt {
    pub const NEXT_OFFSET: usize = 0;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const STATUS: usize = 20;
    pub const MAC: usize = 24;
    pub const VLAN_TCI: usize = 32;
    pub const VLAN_TPID: usize = 36;
    pub const SIZE: usize = 48;
}

/// `struct tpacket2_hdr`, at the start of every TPACKET_V2 slot.
mod v2 {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    pub const VLAN_TCI: usize = 24;
    pub const VLAN_TPID: usize = 26;
}

/// Bytes per TPACKET_V2 slot: header, padding and a frame of up to a buffer's size less the
/// header (~1980 bytes; the kernel truncates a longer frame, which the driver then drops and
/// counts as truncated).
const V2_SLOT: usize = NET_BUFFER_SIZE;

/// Legacy ethtool "set" commands (linux/ethtool.h), in the order they are applied: TSO before TX
/// checksumming, which it depends on.
const OFFLOADS: [(&str, u32); 5] = [
    ("gro", 0x2c),
    ("gso", 0x24),
    ("tso", 0x1f),
    ("tx-checksum", 0x17),
    ("rx-checksum", 0x15),
];

/// How the receive side learns that frames arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RxWakeup {
    /// A 1-byte-per-frame notifier socket wakes the loop for every frame (low latency).
    PerFrame,
    /// Only TPACKET_V3's block retire (full block or retire timer).
    BlockRetire,
    /// A TPACKET_V2 ring instead: a slot per frame, each marked ready on its own, and `poll`
    /// wakes per frame without a second socket; no block is zeroed or retired.
    FrameRing,
}

/// Ring and socket parameters.
#[derive(Debug, Clone, Copy)]
pub struct PacketConfig {
    /// Bytes per ring block (a multiple of the page size).
    pub block_size: usize,
    /// Number of ring blocks.
    pub block_count: usize,
    /// Block retire timeout in milliseconds (the kernel's minimum is 1).
    pub retire_ms: u32,
    /// Wake-up mode.
    pub wakeup: RxWakeup,
    /// Transmit with `PACKET_QDISC_BYPASS`: frames go straight to the device driver's queue
    /// (`packet_direct_xmit`), skipping the interface's qdisc. A frame the device queue cannot
    /// take is then refused (`ENOBUFS`, counted as a send error) instead of queued in the qdisc.
    pub qdisc_bypass: bool,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            block_size: 1 << 16,
            block_count: 32,
            retire_ms: 1,
            wakeup: RxWakeup::PerFrame,
            qdisc_bypass: false,
        }
    }
}

/// `struct tpacket_req3`.
#[derive(Clone, Copy)]
#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// `struct tpacket_req` (TPACKET_V2).
#[derive(Clone, Copy)]
#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// `struct packet_mreq`.
#[derive(Clone, Copy)]
#[repr(C)]
struct PacketMreq {
    ifindex: i32,
    kind: u16,
    alen: u16,
    address: [u8; 8],
}

/// `struct tpacket_stats_v3`.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// Setting up the packet socket failed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// interface {iface}: {what}: {source}
    #[error("interface {iface}: {what}: {source}")]
    Setup {
        /// The interface.
        iface: String,
        /// The step that failed.
        what: &'static str,
        /// The system error.
        source: io::Error,
    },
    /// interface {iface}: ring of {blocks} x {block_size} bytes is invalid (block size must be a multiple of the page size and hold a 2048-byte frame)
    #[error("interface {iface}: ring of {blocks} x {block_size} bytes is invalid (block size must be a multiple of the page size and hold a 2048-byte frame)")]
    BadRing {
        /// The interface.
        iface: String,
        /// Requested blocks.
        blocks: usize,
        /// Requested block size.
        block_size: usize,
    },
}

/// A promiscuous packet socket on one interface, as a [`Nic`].
pub struct PacketNic {
    sock: OwnedFd,
    notifier: Option<OwnedFd>,
    ring: Mapping,
    cfg: PacketConfig,
    /// Oldest block not yet handed back to the kernel.
    block: usize,
    /// Offset in that block of the next packet to read (0 = its first).
    pos: usize,
    /// Packets of that block already consumed.
    seen: u32,
    /// Frame rebuilt with its VLAN tag, when the kernel stripped it into the header.
    vlan_frame: Box<[u8]>,
    addr: libc::sockaddr_ll,
    tx_slots: Box<[u8]>,
    tx_lens: Vec<usize>,
    tx_head: usize,
    tx_count: usize,
    /// Human-readable notes from setup (offloads that could not be switched off).
    pub warnings: Vec<String>,
}

fn setup<T>(iface: &str, what: &'static str, r: io::Result<T>) -> Result<T, PacketError> {
    r.map_err(|source| PacketError::Setup {
        iface: iface.to_string(),
        what,
        source,
    })
}

/// The per-frame notifier: a second packet socket on `addr` that keeps one byte of each frame
/// and a one-byte receive buffer, so that `poll` wakes on every frame (module docs).
fn open_notifier(iface: &str, addr: &libc::sockaddr_ll) -> Result<OwnedFd, PacketError> {
    let n = setup(iface, "notifier socket", sys::packet_socket(0))?;
    let fd = n.as_raw_fd();
    setup(
        iface,
        "notifier filter",
        sys::attach_truncating_filter(fd, 1),
    )?;
    setup(
        iface,
        "notifier receive buffer",
        sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &1i32),
    )?;
    setup(
        iface,
        "notifier: ignore outgoing",
        sys::setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32),
    )?;
    setup(iface, "binding the notifier", sys::bind(fd, addr))?;
    Ok(n)
}

/// The socket options that make `fd`'s receive ring as `cfg` asks (version, ring geometry) and
/// how it sends (no copies of its own frames back, `PACKET_QDISC_BYPASS`).
fn request_ring(
    iface: &str,
    fd: std::os::fd::RawFd,
    cfg: &PacketConfig,
) -> Result<(), PacketError> {
    let frame_ring = cfg.wakeup == RxWakeup::FrameRing;
    setup(
        iface,
        "PACKET_VERSION",
        sys::setsockopt(
            fd,
            SOL_PACKET,
            PACKET_VERSION,
            if frame_ring { &TPACKET_V2 } else { &TPACKET_V3 },
        ),
    )?;
    setup(
        iface,
        "PACKET_IGNORE_OUTGOING",
        sys::setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32),
    )?;
    if cfg.qdisc_bypass {
        setup(
            iface,
            "PACKET_QDISC_BYPASS",
            sys::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &1i32),
        )?;
    }
    let frame_size = NET_BUFFER_SIZE as u32;
    let req = TpacketReq3 {
        block_size: cfg.block_size as u32,
        block_nr: cfg.block_count as u32,
        frame_size,
        frame_nr: (cfg.block_size * cfg.block_count) as u32 / frame_size,
        retire_blk_tov: cfg.retire_ms,
        sizeof_priv: 0,
        feature_req_word: 0,
    };
    let ring_set = if frame_ring {
        let slots = TpacketReq {
            block_size: req.block_size,
            block_nr: req.block_nr,
            frame_size: V2_SLOT as u32,
            frame_nr: (cfg.block_size * cfg.block_count / V2_SLOT) as u32,
        };
        sys::setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &slots)
    } else {
        sys::setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req)
    };
    setup(iface, "PACKET_RX_RING", ring_set)?;
    Ok(())
}

impl PacketNic {
    /// Opens `iface`: switches its offloads off (warnings, not errors, if that fails), sets it
    /// promiscuous, and maps the receive ring.
    pub fn open(iface: &str, cfg: PacketConfig) -> Result<PacketNic, PacketError> {
        let page = sys::page_size();
        if cfg.block_count == 0
            || cfg.block_size < 2 * NET_BUFFER_SIZE
            || !cfg.block_size.is_multiple_of(page)
            || u32::try_from(cfg.block_size * cfg.block_count).is_err()
        {
            return Err(PacketError::BadRing {
                iface: iface.to_string(),
                blocks: cfg.block_count,
                block_size: cfg.block_size,
            });
        }
        let ifindex = setup(iface, "looking up the interface", sys::if_index(iface))?;
        let addr = sys::sockaddr_ll(ifindex, ETH_P_ALL);

        // The notifier is bound first: the kernel delivers to the newest binding first, so the
        // ring has the frame before the notifier wakes anyone.
        let notifier = match cfg.wakeup {
            RxWakeup::BlockRetire | RxWakeup::FrameRing => None,
            RxWakeup::PerFrame => Some(open_notifier(iface, &addr)?),
        };

        let sock = setup(iface, "packet socket", sys::packet_socket(0))?;
        let fd = sock.as_raw_fd();
        let mut warnings = Vec::new();
        for (name, cmd) in OFFLOADS {
            if let Err(e) = sys::ethtool_set(fd, iface, cmd, 0) {
                warnings.push(format!("could not switch {name} off on {iface}: {e}"));
            }
        }
        request_ring(iface, fd, &cfg)?;
        let ring = setup(
            iface,
            "mapping the ring",
            Mapping::map(fd, cfg.block_size * cfg.block_count, 0, true),
        )?;
        // Larger send buffer so a full batch fits; SO_SNDBUFFORCE needs CAP_NET_ADMIN.
        let sndbuf = 4i32 << 20;
        if sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &sndbuf).is_err() {
            let _ = sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf);
        }
        setup(iface, "binding the socket", sys::bind(fd, &addr))?;
        let mreq = PacketMreq {
            ifindex: ifindex as i32,
            kind: PACKET_MR_PROMISC,
            alen: 0,
            address: [0; 8],
        };
        setup(
            iface,
            "promiscuous mode",
            sys::setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq),
        )?;
        Ok(PacketNic {
            sock,
            notifier,
            ring,
            cfg,
            block: 0,
            pos: 0,
            seen: 0,
            vlan_frame: vec![0; NET_BUFFER_SIZE + 4].into_boxed_slice(),
            addr,
            tx_slots: vec![0; BATCH * NET_BUFFER_SIZE].into_boxed_slice(),
            tx_lens: vec![0; BATCH],
            tx_head: 0,
            tx_count: 0,
            warnings,
        })
    }

    /// Hands the current block back to the kernel and moves to the next.
    fn release_block(&mut self) {
        let base = self.block * self.cfg.block_size;
        let used = self
            .ring
            .load_u32(base + block::BLK_LEN)
            .map_or(self.cfg.block_size, |l| l as usize)
            .clamp(block::FIRST_PKT, self.cfg.block_size);
        // Zero what was used so the partial-block walk never mistakes stale bytes for a header.
        self.ring
            .zero(base + block::FIRST_PKT, used - block::FIRST_PKT);
        fence(Ordering::Release);
        self.ring.store_u32(base + block::STATUS, TP_STATUS_KERNEL);
        self.block = (self.block + 1) % self.cfg.block_count;
        self.pos = 0;
        self.seen = 0;
    }
}

/// One complete packet found in the ring.
struct Found {
    mac: usize,
    snaplen: usize,
    wire_len: usize,
    next: usize,
    vlan: Option<(u16, u16)>,
}

impl PacketNic {
    /// Whether the kernel has retired the block at `base` (handed it to user space); what the
    /// kernel wrote into it before is visible after this (acquire).
    fn block_retired(&self, base: usize) -> bool {
        let retired = self.ring.load_u32(base + block::STATUS).unwrap_or(0) & TP_STATUS_USER != 0;
        fence(Ordering::Acquire);
        retired
    }

    /// The packet at `self.pos` of the current block if it is complete.
    fn peek(&self, base: usize) -> Option<Found> {
        let pos = if self.pos == 0 {
            block::FIRST_PKT
        } else {
            self.pos
        };
        if pos + pkt::SIZE > self.cfg.block_size {
            return None;
        }
        let h = base + pos;
        let status = self.ring.load_u32(h + pkt::STATUS)?;
        let mac = usize::from(self.ring.load_u16(h + pkt::MAC)?);
        let snaplen = self.ring.load_u32(h + pkt::SNAPLEN)? as usize;
        if status & TP_STATUS_USER == 0 || mac == 0 || snaplen == 0 {
            return None;
        }
        fence(Ordering::Acquire);
        if pos + mac + snaplen > self.cfg.block_size {
            return None;
        }
        let next = match self.ring.load_u32(h + pkt::NEXT_OFFSET)? as usize {
            0 => (mac + snaplen).next_multiple_of(8),
            n => n,
        };
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
            let tci = self.ring.load_u32(h + pkt::VLAN_TCI).unwrap_or(0) as u16;
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                self.ring.load_u16(h + pkt::VLAN_TPID).unwrap_or(0x8100)
            } else {
                0x8100
            };
            (tpid, tci)
        });
        Some(Found {
            mac: pos + mac,
            snaplen,
            wire_len: self.ring.load_u32(h + pkt::LEN)? as usize,
            next: pos + next,
            vlan,
        })
    }
}

/// The frame of `snaplen` bytes at `mac` in the ring, with its VLAN tag put back in front of
/// the EtherType (in `vlan_frame`) when the kernel stripped it into the header.
fn frame_at<'a>(
    ring: &'a Mapping,
    vlan_frame: &'a mut [u8],
    mac: usize,
    snaplen: usize,
    wire_len: usize,
    vlan: Option<(u16, u16)>,
) -> RxFrame<'a> {
    let data = ring.bytes(mac, snaplen).unwrap_or(&[]);
    match vlan {
        Some((tpid, tci)) if data.len() >= 12 && data.len() + 4 <= NET_BUFFER_SIZE => {
            let b = vlan_frame;
            b[..12].copy_from_slice(&data[..12]);
            b[12..14].copy_from_slice(&tpid.to_be_bytes());
            b[14..16].copy_from_slice(&tci.to_be_bytes());
            b[16..data.len() + 4].copy_from_slice(&data[12..]);
            RxFrame {
                data: &b[..data.len() + 4],
                wire_len: wire_len + 4,
            }
        }
        _ => RxFrame { data, wire_len },
    }
}

/// The TPACKET_V2 ring ([`RxWakeup::FrameRing`]): `self.block` is the next slot to read.
impl PacketNic {
    /// Whether the slot at `base` holds a frame for user space; what the kernel wrote into it
    /// is visible after this (acquire).
    fn slot_ready(&self, base: usize) -> bool {
        let ready = self.ring.load_u32(base + v2::STATUS).unwrap_or(0) & TP_STATUS_USER != 0;
        fence(Ordering::Acquire);
        ready
    }

    /// [`Nic::receive`] on the slot ring: delivers ready slots in order and hands each back to
    /// the kernel as soon as its frame is taken. A slot whose header points outside it is
    /// handed back unread.
    fn receive_slots(
        &mut self,
        budget: usize,
        deliver: &mut dyn FnMut(RxFrame<'_>) -> RxVerdict,
    ) -> bool {
        let slots = self.cfg.block_size * self.cfg.block_count / V2_SLOT;
        for _ in 0..budget {
            let base = self.block * V2_SLOT;
            if !self.slot_ready(base) {
                return false;
            }
            let status = self.ring.load_u32(base + v2::STATUS).unwrap_or(0);
            let mac = usize::from(self.ring.load_u16(base + v2::MAC).unwrap_or(0));
            let snaplen = self.ring.load_u32(base + v2::SNAPLEN).unwrap_or(0) as usize;
            let wire_len = self.ring.load_u32(base + v2::LEN).unwrap_or(0) as usize;
            if mac != 0 && mac + snaplen <= V2_SLOT {
                let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
                    let tci = self.ring.load_u16(base + v2::VLAN_TCI).unwrap_or(0);
                    let tpid = match self.ring.load_u16(base + v2::VLAN_TPID) {
                        Some(t) if status & TP_STATUS_VLAN_TPID_VALID != 0 => t,
                        _ => 0x8100,
                    };
                    (tpid, tci)
                });
                let frame = frame_at(
                    &self.ring,
                    &mut self.vlan_frame,
                    base + mac,
                    snaplen,
                    wire_len,
                    vlan,
                );
                if deliver(frame) == RxVerdict::Keep {
                    return true;
                }
            }
            fence(Ordering::Release);
            self.ring.store_u32(base + v2::STATUS, TP_STATUS_KERNEL);
            self.block = (self.block + 1) % slots;
        }
        true
    }
}

impl Nic for PacketNic {
    fn poll_set(&self, want_rx: bool, want_tx: bool) -> Vec<NicPoll> {
        let mut v = vec![NicPoll {
            fd: self.sock.as_raw_fd(),
            readable: want_rx,
            writable: want_tx,
        }];
        if let (Some(n), true) = (&self.notifier, want_rx) {
            v.push(NicPoll {
                fd: n.as_raw_fd(),
                readable: true,
                writable: false,
            });
        }
        v
    }

    fn receive(
        &mut self,
        budget: usize,
        deliver: &mut dyn FnMut(RxFrame<'_>) -> RxVerdict,
    ) -> io::Result<bool> {
        if self.cfg.wakeup == RxWakeup::FrameRing {
            return Ok(self.receive_slots(budget, deliver));
        }
        // Drain wake-ups first: a frame that lands after this produces a new one.
        if let Some(n) = &self.notifier {
            while sys::recv_discard(n.as_raw_fd())? {}
        }
        let mut done = 0;
        // Each block is visited at most once per call, plus the one being filled.
        for _ in 0..=self.cfg.block_count {
            let base = self.block * self.cfg.block_size;
            loop {
                let retired = self.block_retired(base);
                if retired {
                    let num = self.ring.load_u32(base + block::NUM_PKTS).unwrap_or(0);
                    if self.seen >= num {
                        break;
                    }
                }
                if done == budget {
                    return Ok(true);
                }
                let Some(f) = self.peek(base) else {
                    if retired {
                        // A retired block whose packets cannot be read is corrupt: skip it.
                        break;
                    }
                    return Ok(false);
                };
                let frame = frame_at(
                    &self.ring,
                    &mut self.vlan_frame,
                    base + f.mac,
                    f.snaplen,
                    f.wire_len,
                    f.vlan,
                );
                if deliver(frame) == RxVerdict::Keep {
                    return Ok(true);
                }
                done += 1;
                self.seen += 1;
                self.pos = f.next;
            }
            self.release_block();
        }
        Ok(false)
    }

    fn tx_buffer(&mut self) -> Option<&mut [u8]> {
        if self.tx_count == BATCH {
            return None;
        }
        let i = (self.tx_head + self.tx_count) % BATCH;
        Some(&mut self.tx_slots[i * NET_BUFFER_SIZE..(i + 1) * NET_BUFFER_SIZE])
    }

    fn tx_commit(&mut self, len: usize) {
        if self.tx_count < BATCH {
            let i = (self.tx_head + self.tx_count) % BATCH;
            self.tx_lens[i] = len.min(NET_BUFFER_SIZE);
            self.tx_count += 1;
        }
    }

    fn tx_flush(&mut self) -> io::Result<TxReport> {
        let mut r = TxReport::default();
        while self.tx_count > 0 {
            let frames: Vec<&[u8]> = (0..self.tx_count)
                .map(|k| {
                    let i = (self.tx_head + k) % BATCH;
                    &self.tx_slots[i * NET_BUFFER_SIZE..i * NET_BUFFER_SIZE + self.tx_lens[i]]
                })
                .collect();
            let sent = match sys::sendmmsg(self.sock.as_raw_fd(), &frames, &self.addr) {
                Ok(n) => {
                    r.sent += n as u64;
                    r.sent_bytes += frames[..n].iter().map(|f| f.len() as u64).sum::<u64>();
                    n
                }
                // Device or socket buffer full: keep the frames, poll for writability.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(r),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                // Anything else (ENOBUFS from a congested device, EMSGSIZE, a downed link)
                // condemns only the first frame; the rest are tried again.
                Err(_) => {
                    r.failed += 1;
                    1
                }
            };
            self.tx_head = (self.tx_head + sent) % BATCH;
            self.tx_count -= sent;
        }
        Ok(r)
    }

    fn tx_pending(&self) -> bool {
        self.tx_count > 0
    }

    /// A frame is complete in the block being read, or that block is retired (then
    /// [`Nic::receive`] hands it back and moves on). Reads only the ring.
    fn rx_ready(&self) -> bool {
        if self.cfg.wakeup == RxWakeup::FrameRing {
            return self.slot_ready(self.block * V2_SLOT);
        }
        let base = self.block * self.cfg.block_size;
        self.block_retired(base) || self.peek(base).is_some()
    }

    /// Frames the kernel dropped because the ring was full (`PACKET_STATISTICS` resets on read).
    fn take_dropped(&mut self) -> io::Result<u64> {
        let s: TpacketStatsV3 =
            sys::getsockopt(self.sock.as_raw_fd(), SOL_PACKET, PACKET_STATISTICS)?;
        Ok(u64::from(s.drops))
    }
}
