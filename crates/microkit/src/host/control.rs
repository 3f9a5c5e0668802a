//! The control region: one shared file through which host PDs notify, call and report faults.
//!
//! # Layout (version 1)
//!
//! A file of `RECORD_SIZE * (1 + pd_count)` bytes, mapped `MAP_SHARED` by the runner and by every
//! PD (at any address). Slot 0 is the header `{ magic: u64 = MAGIC, pd_count: u64 }`; slot `1 + i`
//! is the [`PdRecord`] of PD index `i`. Every field is an atomic, native-endian. The runner only
//! has to create the file ([`ControlRegion::create`]); PDs maintain the records.
//!
//! # Protocols
//!
//! - **Event wake-up** (everything a PD's event loop waits for): a poster makes its change with a
//!   SeqCst RMW/store, then, if `sleeping` is 1, increments `event_seq` and `FUTEX_WAKE`s it. The
//!   PD reads `event_seq`, stores `sleeping = 1` (SeqCst), re-checks its sources and only then
//!   `FUTEX_WAIT`s on `event_seq`. Either the PD sees the change or the poster sees `sleeping`.
//!   Before that, a PD may poll its sources for a few microseconds with `sleeping` still 0 (an
//!   adaptive spin, see the event loop); posters then make no syscall at all, and a spin that
//!   ends without an event falls through to the protocol above, so no wake-up can be lost.
//! - **Notification**: `notify_bits.fetch_or(1 << receiver's channel id)` + wake-up. The PD takes
//!   the whole word with `swap(0)`: signals coalesce into one badge, as with seL4 notifications.
//! - **PPC** to PD *p* (record of *p*): the caller takes `call_lock` (a three-state futex mutex:
//!   0 free, 1 taken, 2 taken with waiters), writes `call_badge` (the callee's channel id),
//!   `call_tag` (msginfo word) and `call_mrs[..count]`, stores `call_state = CALL_REQUEST`, wakes
//!   *p*, and `FUTEX_WAIT`s on `call_state` until `CALL_REPLY`. *p* runs `protected`, writes the
//!   reply into `call_tag`/`call_mrs`, stores `CALL_REPLY` and wakes `call_state`. The caller copies
//!   the reply, stores `CALL_IDLE` and releases the lock. The callee serves the call synchronously
//!   while the caller blocks, which is the Microkit PPC model.
//! - **Fault** of PD *c* (child `k` of parent *p*): *c* writes `fault_tag`/`fault_mrs` in its own
//!   record, moves `fault_state` from `FAULT_RUNNING` to `FAULT_FAULTED`, sets bit `k` of *p*'s
//!   `fault_bits` and wakes *p*, then waits on its `fault_state`. *p*'s loop clears the bit and
//!   calls `fault(k, ...)`; a reply stores `FAULT_RESUME` (the child returns from its signal
//!   handler), a restart stores `FAULT_RESTART` (the child re-executes its image; a running child
//!   is also sent `SIGUSR1`). A top-level PD's fault is left in its record with `FAULT_FAULTED`
//!   for the runner to read ([`PdRecord::fault`]).

use std::io;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::sys;
use crate::{MessageInfo, MAX_MESSAGE_REGISTERS};

/// Magic number in the header: "NVMCTL01" as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NVMCTL01");
/// Bytes per slot (header or record).
pub const RECORD_SIZE: usize = 2048;

/// `call_state`: no call in progress.
pub const CALL_IDLE: u32 = 0;
/// `call_state`: a request waits for the callee.
pub const CALL_REQUEST: u32 = 1;
/// `call_state`: the reply waits for the caller.
pub const CALL_REPLY: u32 = 2;

/// `fault_state`: running normally.
pub const FAULT_RUNNING: u32 = 0;
/// `fault_state`: faulted, details in `fault_tag`/`fault_mrs`, blocked until resumed/restarted.
pub const FAULT_FAULTED: u32 = 1;
/// `fault_state`: the parent replied; resume.
pub const FAULT_RESUME: u32 = 2;
/// `fault_state`: the parent asked for a restart.
pub const FAULT_RESTART: u32 = 3;

/// Fault detail registers kept per PD (seL4 fault messages have at most a handful).
pub const FAULT_MRS: usize = 8;

/// The header slot.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    pd_count: AtomicU64,
}

/// The shared state of one PD. All fields are atomics, so any bit pattern (including the zeroes
/// of a fresh file) is a valid record.
#[repr(C, align(2048))]
pub struct PdRecord {
    /// Futex word of the event wake-up protocol.
    pub event_seq: AtomicU32,
    /// 1 while the PD is (about to be) blocked on `event_seq`.
    pub sleeping: AtomicU32,
    /// Pending notification badge.
    pub notify_bits: AtomicU64,
    /// Children with a pending fault (bit = child id).
    pub fault_bits: AtomicU64,
    /// Process id of the PD (0 until it started).
    pub pid: AtomicU32,
    /// Futex mutex serialising callers of this PD.
    pub call_lock: AtomicU32,
    /// `CALL_*` state of this PD's PPC slot (futex word).
    pub call_state: AtomicU32,
    /// `FAULT_*` state of this PD (futex word).
    pub fault_state: AtomicU32,
    /// The callee's channel id of the call in progress.
    pub call_badge: AtomicU64,
    /// Message-info word of the request, then of the reply.
    pub call_tag: AtomicU64,
    /// Message-info word of this PD's last fault (label = seL4 fault type).
    pub fault_tag: AtomicU64,
    /// Fault details in seL4 fault-message order.
    pub fault_mrs: [AtomicU64; FAULT_MRS],
    /// Message registers of the request, then of the reply.
    pub call_mrs: [AtomicU64; MAX_MESSAGE_REGISTERS],
}

const _: () = assert!(core::mem::size_of::<PdRecord>() == RECORD_SIZE);
const _: () = assert!(core::mem::size_of::<Header>() <= RECORD_SIZE);

/// A fault recorded in a PD's record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FaultReport {
    /// seL4 fault label (e.g. 6 = VMFault, 3 = UserException).
    pub label: u64,
    /// Fault message registers (VMFault: ip, address, prefetch, fsr; UserException: ip, sp,
    /// spsr, number = signal, code = `si_code`).
    pub mrs: [u64; FAULT_MRS],
}

impl PdRecord {
    /// Wakes the PD if it sleeps (second half of every post).
    pub(crate) fn wake(&self) {
        if self.sleeping.load(Ordering::SeqCst) != 0 {
            self.event_seq.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&self.event_seq, 1);
        }
    }

    /// Whether an event source of this PD looks non-empty: a cheap read-only check for polling
    /// (the event loop then takes the event with the real, SeqCst operations).
    pub(crate) fn has_event(&self) -> bool {
        self.notify_bits.load(Ordering::Relaxed) != 0
            || self.call_state.load(Ordering::Relaxed) == CALL_REQUEST
            || self.fault_bits.load(Ordering::Relaxed) != 0
    }

    /// Posts notification bits to this PD (a runner uses this to simulate an IRQ).
    pub fn post_notify(&self, bits: u64) {
        self.notify_bits.fetch_or(bits, Ordering::SeqCst);
        self.wake();
    }

    /// The PD's process id, once it started.
    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The PD's recorded fault, if it is currently faulted.
    pub fn fault(&self) -> Option<FaultReport> {
        if self.fault_state.load(Ordering::SeqCst) != FAULT_FAULTED {
            return None;
        }
        Some(FaultReport {
            label: MessageInfo::from_word(self.fault_tag.load(Ordering::SeqCst)).label(),
            mrs: core::array::from_fn(|i| self.fault_mrs[i].load(Ordering::SeqCst)),
        })
    }
}

/// Errors opening a control region.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The file cannot be opened, sized or mapped.
    #[error("control region {path}: {source}")]
    Io {
        /// The control file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a control region of this version.
    #[error("control region {path}: bad magic or size (not created by a netvm runner?)")]
    Format {
        /// The control file.
        path: String,
    },
}

/// A mapped control region.
pub struct ControlRegion {
    map: sys::SharedMap,
    pd_count: usize,
    path: PathBuf,
}

impl ControlRegion {
    /// Creates (or truncates) the control region file for `pd_count` PDs and maps it (runner).
    pub fn create(path: &Path, pd_count: usize) -> Result<Self, ControlError> {
        let io_err = |source| ControlError::Io {
            path: path.display().to_string(),
            source,
        };
        let len = RECORD_SIZE * (1 + pd_count);
        let map = sys::SharedMap::create(path, len).map_err(io_err)?;
        let region = Self {
            map,
            pd_count,
            path: path.to_path_buf(),
        };
        let header = region.header();
        header.pd_count.store(pd_count as u64, Ordering::SeqCst);
        header.magic.store(MAGIC, Ordering::SeqCst);
        Ok(region)
    }

    /// Maps an existing control region (PD).
    pub fn open(path: &Path) -> Result<Self, ControlError> {
        let shown = path.display().to_string();
        let map = sys::SharedMap::open(path).map_err(|source| ControlError::Io {
            path: shown.clone(),
            source,
        })?;
        if map.len() < RECORD_SIZE {
            return Err(ControlError::Format { path: shown });
        }
        let mut region = Self {
            map,
            pd_count: 0,
            path: path.to_path_buf(),
        };
        let header = region.header();
        let pd_count = header.pd_count.load(Ordering::SeqCst) as usize;
        if header.magic.load(Ordering::SeqCst) != MAGIC
            || pd_count
                .checked_add(1)
                .and_then(|n| n.checked_mul(RECORD_SIZE))
                != Some(region.map.len())
        {
            return Err(ControlError::Format { path: shown });
        }
        region.pd_count = pd_count;
        Ok(region)
    }

    fn header(&self) -> &Header {
        self.map
            .slot::<Header>(0)
            .expect("mapping holds the header slot")
    }

    /// Number of PD records.
    pub fn pd_count(&self) -> usize {
        self.pd_count
    }

    /// The path the region was created or opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of PD `index`.
    pub fn record(&self, index: usize) -> Option<&PdRecord> {
        if index >= self.pd_count {
            return None;
        }
        self.map.slot::<PdRecord>(1 + index)
    }
}
