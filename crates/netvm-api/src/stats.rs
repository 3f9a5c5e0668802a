//! Counters in shared memory (netvm's; sDDF has none): each component publishes its counters
//! into a small region of its own (the `.netvm_stats` section names it), where a reader — `netvm stats` in host mode, a
//! debugger, a monitoring PD — finds them by name without knowing the component.
//!
//! # Layout (all little-endian, in 64-bit words)
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `netvmst1` (written last at start-up: until then the region is not valid) |
//! | 8..16 | `seq`: odd while the writer updates the values, even when they are consistent |
//! | 16..20 | `count`: number of entries |
//! | 20..24 | `entry_bytes`: 48 |
//! | 24..56 | component name, NUL padded |
//! | 56..64 | zero |
//! | 64 + 48 i .. | entry `i`: name (40 bytes, NUL padded, `group.field`), value (u64) |
//!
//! Names are written once, at start-up; [`StatsWriter::publish`] rewrites only the values, inside
//! a sequence lock, so a reader that sees the same even `seq` before and after copying has a
//! consistent snapshot. The writer never reads the region back, so a reader scribbling on it
//! (a hostile peer, if the region were shared) changes only what readers see.
use core::fmt::Write as _;
use core::sync::atomic::{fence, Ordering};

use sddf::config::RegionResource;
use sddf::shm::{AddressSpace, Region};

/// ELF section naming a component's stats region: a [`RegionResource`] (16 bytes); size 0 or an
/// all-zero section means "no stats".
pub const SECTION: &str = ".netvm_stats";
/// Magic at the start of a valid stats region.
pub const MAGIC: [u8; 8] = *b"netvmst1";
/// Bytes before the first entry.
pub const HEADER_BYTES: usize = 64;
/// Bytes of an entry's name field.
pub const NAME_BYTES: usize = 40;
/// Bytes of an entry.
pub const ENTRY_BYTES: usize = NAME_BYTES + 8;
/// Bytes of the component-name field.
pub const COMPONENT_BYTES: usize = 32;
/// The field name of an entry that holds an IPv4 address as a number (`peer0.addr` = 0x0a00010a
/// for 10.0.1.10): readers may show it as an address.
pub const ADDR_FIELD: &str = "addr";

const SEQ_OFFSET: usize = 8;

/// A set of `u64` counters with field names, as made by [`counters!`](crate::counters).
pub trait Counters {
    /// The field names, in declaration order.
    const NAMES: &'static [&'static str];
    /// The values, in the order of [`Counters::NAMES`].
    fn values(&self) -> impl Iterator<Item = u64>;
}

/// Declares a struct of `u64` counters that also implements [`Counters`] (field names become
/// the entry names in a stats region).
///
/// ```
/// netvm_api::counters! {
///     /// Example counters.
///     pub struct Example {
///         /// Frames seen.
///         pub frames: u64,
///         /// Frames dropped.
///         pub drops: u64,
///     }
/// }
/// use netvm_api::stats::Counters;
/// assert_eq!(Example::NAMES, ["frames", "drops"]);
/// ```
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$fmeta:meta])* $fvis:vis $field:ident : u64),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: u64,)*
        }

        impl $crate::stats::Counters for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            fn values(&self) -> impl Iterator<Item = u64> {
                [$(self.$field),*].into_iter()
            }
        }
    };
}

/// Why a stats region cannot be used or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsError {
    /// The `.netvm_stats` section is not 16 bytes.
    Section {
        /// Its length.
        len: usize,
    },
    /// The section names a region that is not mapped here.
    Unmapped {
        /// Its vaddr.
        vaddr: u64,
    },
    /// The region cannot hold the header and this many entries.
    TooSmall {
        /// Entries needed.
        entries: usize,
        /// Region size.
        len: usize,
    },
    /// The region is not 8-aligned.
    Misaligned,
    /// No `netvmst1` magic (the component has not started, or it is not a stats region).
    NoMagic,
    /// The header's count or entry size is impossible for the region.
    BadHeader,
    /// The writer kept updating while we read.
    Busy,
}

impl core::fmt::Display for StatsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StatsError::Section { len } => {
                write!(f, "{SECTION}: {len} bytes, expected 16")
            }
            StatsError::Unmapped { vaddr } => {
                write!(f, "stats region at {vaddr:#x} is not mapped")
            }
            StatsError::TooSmall { entries, len } => write!(
                f,
                "stats region of {len:#x} bytes cannot hold {entries} entries ({} bytes each after a {HEADER_BYTES}-byte header)",
                ENTRY_BYTES
            ),
            StatsError::Misaligned => write!(f, "stats region is not 8-byte aligned"),
            StatsError::NoMagic => write!(f, "no stats published yet (magic missing)"),
            StatsError::BadHeader => write!(f, "stats header has an impossible count or entry size"),
            StatsError::Busy => write!(f, "stats writer kept updating during the read"),
        }
    }
}

/// The writing side, owned by the component.
pub struct StatsWriter<'a> {
    region: Region<'a>,
    entries: usize,
    seq: u64,
}

impl<'a> StatsWriter<'a> {
    /// The region a `.netvm_stats` section (its 16 bytes, a [`RegionResource`]) names, or
    /// `None` when it names none.
    pub fn from_section(
        section: &[u8],
        mem: &impl AddressSpace<'a>,
        component: &str,
    ) -> Result<Option<StatsWriter<'a>>, StatsError> {
        use zerocopy::FromBytes;
        let section = RegionResource::read_from_bytes(section)
            .map_err(|_| StatsError::Section { len: section.len() })?;
        if section.size == 0 {
            return Ok(None);
        }
        let region = mem
            .region(section.vaddr, section.size)
            .ok_or(StatsError::Unmapped {
                vaddr: section.vaddr,
            })?;
        StatsWriter::new(region, component).map(Some)
    }

    /// Starts laying out `region` for `component` (add entries with [`StatsWriter::group`],
    /// then [`StatsWriter::finish`]).
    pub fn new(region: Region<'a>, component: &str) -> Result<StatsWriter<'a>, StatsError> {
        if region.len() < HEADER_BYTES {
            return Err(StatsError::TooSmall {
                entries: 0,
                len: region.len(),
            });
        }
        if !region.base_addr().is_multiple_of(8) {
            return Err(StatsError::Misaligned);
        }
        // Invalidate first: a reader must not pair old names with new values.
        region
            .write_words(0, &[0; HEADER_BYTES])
            .map_err(|_| StatsError::Misaligned)?;
        let mut name = [0u8; COMPONENT_BYTES];
        let n = component.len().min(COMPONENT_BYTES);
        name[..n].copy_from_slice(&component.as_bytes()[..n]);
        region
            .write_words(24, &name)
            .map_err(|_| StatsError::Misaligned)?;
        Ok(StatsWriter {
            region,
            entries: 0,
            seq: 0,
        })
    }

    /// Adds one entry per field of `C`, named `<group>.<field>` (cut to 40 bytes).
    pub fn group<C: Counters>(
        &mut self,
        group: core::fmt::Arguments<'_>,
    ) -> Result<(), StatsError> {
        for field in C::NAMES {
            let mut name = NameBuf::default();
            // NameBuf never fails; it cuts what does not fit.
            let _ = write!(name, "{group}.{field}");
            let offset = HEADER_BYTES + self.entries * ENTRY_BYTES;
            let mut entry = [0u8; ENTRY_BYTES];
            entry[..NAME_BYTES].copy_from_slice(&name.bytes);
            self.region
                .write_words(offset, &entry)
                .map_err(|_| StatsError::TooSmall {
                    entries: self.entries + 1,
                    len: self.region.len(),
                })?;
            self.entries += 1;
        }
        Ok(())
    }

    /// The layout of a virtualiser: group `driver` of `D`, then `client<i>` of `C` for each of
    /// `clients`, published; see [`StatsWriter::publish_driver_and_clients`].
    pub fn lay_out_driver_and_clients<D: Counters, C: Counters>(
        &mut self,
        clients: usize,
    ) -> Result<(), StatsError> {
        self.group::<D>(format_args!("driver"))?;
        for i in 0..clients {
            self.group::<C>(format_args!("client{i}"))?;
        }
        self.finish();
        Ok(())
    }

    /// Publishes the driver's counters, then each client's, in the layout of
    /// [`StatsWriter::lay_out_driver_and_clients`].
    pub fn publish_driver_and_clients<'c, C: Counters + 'c>(
        &mut self,
        driver: &impl Counters,
        clients: impl Iterator<Item = &'c C>,
    ) {
        self.publish(driver.values().chain(clients.flat_map(|c| c.values())));
    }

    /// Publishes the header: from now on readers see the entries.
    pub fn finish(&mut self) {
        let mut counts = [0u8; 8];
        counts[..4].copy_from_slice(&(self.entries as u32).to_le_bytes());
        counts[4..].copy_from_slice(&(ENTRY_BYTES as u32).to_le_bytes());
        // In bounds and aligned: checked in `new`.
        let _ = self.region.write_words(16, &counts);
        fence(Ordering::Release);
        let _ = self.region.write_words(0, &MAGIC);
    }

    /// Number of entries laid out.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Writes the values, in entry order (extra values are ignored, missing ones left as they
    /// were), inside the sequence lock.
    pub fn publish(&mut self, values: impl IntoIterator<Item = u64>) {
        self.seq = self.seq.wrapping_add(1) | 1;
        let _ = self.region.write_words(SEQ_OFFSET, &self.seq.to_le_bytes());
        fence(Ordering::Release);
        for (i, v) in values.into_iter().take(self.entries).enumerate() {
            let offset = HEADER_BYTES + i * ENTRY_BYTES + NAME_BYTES;
            let _ = self.region.write_words(offset, &v.to_le_bytes());
        }
        fence(Ordering::Release);
        self.seq = self.seq.wrapping_add(1);
        let _ = self.region.write_words(SEQ_OFFSET, &self.seq.to_le_bytes());
    }
}

/// A component's stats region, if one is attached: the part of publishing counters every
/// component shares. Until [`StatsSlot::attach`] (or
/// [`StatsSlot::attach_driver_and_clients`]) it holds nothing and publishing is a no-op, so the
/// data path calls `publish` unconditionally.
#[derive(Default)]
pub struct StatsSlot<'a>(Option<StatsWriter<'a>>);

impl<'a> StatsSlot<'a> {
    /// Lays out `stats` as one group `group` of `C`'s fields, publishes `now` into it and keeps
    /// it (replacing any region attached before). Errors: the region cannot hold `C`'s entries
    /// (nothing is attached then).
    pub fn attach<C: Counters>(
        &mut self,
        mut stats: StatsWriter<'a>,
        group: &str,
        now: &C,
    ) -> Result<(), StatsError> {
        stats.group::<C>(format_args!("{group}"))?;
        stats.finish();
        stats.publish(now.values());
        self.0 = Some(stats);
        Ok(())
    }

    /// Lays out `stats` as a virtualiser's ([`StatsWriter::lay_out_driver_and_clients`]) and
    /// keeps it; the caller then publishes with [`StatsSlot::publish_driver_and_clients`].
    /// Errors: the region cannot hold the entries (nothing is attached then).
    pub fn attach_driver_and_clients<D: Counters, C: Counters>(
        &mut self,
        mut stats: StatsWriter<'a>,
        clients: usize,
    ) -> Result<(), StatsError> {
        stats.lay_out_driver_and_clients::<D, C>(clients)?;
        self.0 = Some(stats);
        Ok(())
    }

    /// Whether a region is attached (to skip computing counters no one will see).
    pub fn is_attached(&self) -> bool {
        self.0.is_some()
    }

    /// Publishes `counters` into the attached region (laid out by [`StatsSlot::attach`] with the
    /// same type); nothing without one.
    pub fn publish(&mut self, counters: &impl Counters) {
        if let Some(stats) = self.0.as_mut() {
            stats.publish(counters.values());
        }
    }

    /// Publishes as [`StatsWriter::publish_driver_and_clients`] into the attached region;
    /// nothing without one.
    pub fn publish_driver_and_clients<'c, C: Counters + 'c>(
        &mut self,
        driver: &impl Counters,
        clients: impl Iterator<Item = &'c C>,
    ) {
        if let Some(stats) = self.0.as_mut() {
            stats.publish_driver_and_clients(driver, clients);
        }
    }
}

struct NameBuf {
    bytes: [u8; NAME_BYTES],
    len: usize,
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf {
            bytes: [0; NAME_BYTES],
            len: 0,
        }
    }
}

impl core::fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(NAME_BYTES - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A consistent copy of a stats region.
#[cfg(any(test, feature = "std"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The component's name.
    pub component: std::string::String,
    /// `(name, value)` in region order.
    pub entries: std::vec::Vec<(std::string::String, u64)>,
}

#[cfg(any(test, feature = "std"))]
impl Snapshot {
    /// The value of entry `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Reads `region`, retrying while the writer is mid-update. Nothing in the region is
    /// trusted: counts are checked against its size, names decoded lossily.
    pub fn read(region: &Region<'_>) -> Result<Snapshot, StatsError> {
        use std::string::String;
        use std::vec;
        if region.len() < HEADER_BYTES {
            return Err(StatsError::TooSmall {
                entries: 0,
                len: region.len(),
            });
        }
        let mut header = [0u8; HEADER_BYTES];
        for _ in 0..1000 {
            region
                .read_words(0, &mut header)
                .map_err(|_| StatsError::Misaligned)?;
            fence(Ordering::Acquire);
            if header[..8] != MAGIC {
                return Err(StatsError::NoMagic);
            }
            let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
            let count = u32::from_le_bytes(header[16..20].try_into().unwrap_or_default()) as usize;
            let entry_bytes = u32::from_le_bytes(header[20..24].try_into().unwrap_or_default());
            if entry_bytes as usize != ENTRY_BYTES
                || count > (region.len() - HEADER_BYTES) / ENTRY_BYTES
            {
                return Err(StatsError::BadHeader);
            }
            if seq & 1 == 1 {
                std::thread::yield_now();
                continue;
            }
            let mut body = vec![0u8; count * ENTRY_BYTES];
            region
                .read_words(HEADER_BYTES, &mut body)
                .map_err(|_| StatsError::BadHeader)?;
            fence(Ordering::Acquire);
            let mut again = [0u8; 8];
            region
                .read_words(SEQ_OFFSET, &mut again)
                .map_err(|_| StatsError::Misaligned)?;
            if u64::from_le_bytes(again) != seq {
                continue;
            }
            let text = |b: &[u8]| {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).into_owned()
            };
            let entries = body
                .chunks_exact(ENTRY_BYTES)
                .map(|e| {
                    let value = u64::from_le_bytes(e[NAME_BYTES..].try_into().unwrap_or_default());
                    (text(&e[..NAME_BYTES]), value)
                })
                .collect();
            return Ok(Snapshot {
                component: text(&header[24..24 + COMPONENT_BYTES]),
                entries,
            });
        }
        Err(StatsError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sddf::shm::OwnedRegion;

    crate::counters! {
        /// Test counters.
        pub struct Two {
            /// A.
            pub frames: u64,
            /// B.
            pub notifications_suppressed: u64,
        }
    }

    #[test]
    fn names_and_values_round_trip() {
        let mem = OwnedRegion::new(4096);
        let r = mem.region();
        assert_eq!(Snapshot::read(&r), Err(StatsError::NoMagic));
        let mut w = StatsWriter::new(r, "net_virt_rx").unwrap();
        w.group::<Two>(format_args!("driver")).unwrap();
        for i in 0..2 {
            w.group::<Two>(format_args!("client{i}")).unwrap();
        }
        assert_eq!(Snapshot::read(&r), Err(StatsError::NoMagic));
        w.finish();
        let c = [
            Two {
                frames: 1,
                notifications_suppressed: 2,
            },
            Two {
                frames: 3,
                notifications_suppressed: 4,
            },
            Two {
                frames: 5,
                notifications_suppressed: u64::MAX,
            },
        ];
        w.publish(c.iter().flat_map(|c| c.values()));
        let s = Snapshot::read(&r).unwrap();
        assert_eq!(s.component, "net_virt_rx");
        assert_eq!(s.entries.len(), 6);
        assert_eq!(s.get("driver.frames"), Some(1));
        assert_eq!(s.get("client0.notifications_suppressed"), Some(4));
        assert_eq!(s.get("client1.notifications_suppressed"), Some(u64::MAX));
        assert_eq!(s.get("client2.frames"), None);
    }

    #[test]
    fn a_slot_publishes_only_once_attached_and_as_the_writer_would() {
        let mut slot = StatsSlot::default();
        let c = Two {
            frames: 1,
            notifications_suppressed: 2,
        };
        slot.publish(&c);
        assert!(!slot.is_attached());
        let via_slot = OwnedRegion::new(4096);
        slot.attach(
            StatsWriter::new(via_slot.region(), "copier").unwrap(),
            "copier",
            &c,
        )
        .unwrap();
        assert!(slot.is_attached());
        let by_hand = OwnedRegion::new(4096);
        let mut w = StatsWriter::new(by_hand.region(), "copier").unwrap();
        w.group::<Two>(format_args!("copier")).unwrap();
        w.finish();
        w.publish(c.values());
        let bytes = |r: &OwnedRegion| {
            let mut b = [0u8; 4096];
            r.region().read_words(0, &mut b).unwrap();
            b
        };
        assert_eq!(bytes(&via_slot), bytes(&by_hand));
        slot.publish(&Two {
            frames: 3,
            notifications_suppressed: 4,
        });
        assert_eq!(
            Snapshot::read(&via_slot.region())
                .unwrap()
                .get("copier.frames"),
            Some(3)
        );
        let small = OwnedRegion::new(HEADER_BYTES + ENTRY_BYTES);
        let mut slot = StatsSlot::default();
        let e = slot.attach_driver_and_clients::<Two, Two>(
            StatsWriter::new(small.region(), "v").unwrap(),
            1,
        );
        assert!(matches!(e, Err(StatsError::TooSmall { .. })));
        assert!(!slot.is_attached());
    }

    #[test]
    fn sections_name_a_region_or_none_and_bad_ones_are_errors() {
        use zerocopy::IntoBytes;
        let mut space = sddf::shm::OwnedSpace::new();
        space.add(0x7000_0000, 4096);
        let section = |vaddr: u64, size: u64| RegionResource { vaddr, size }.as_bytes().to_vec();
        let from =
            |bytes: &[u8]| StatsWriter::from_section(bytes, &&space, "c").map(|w| w.is_some());
        assert_eq!(from(&[0; 16]), Ok(false));
        assert_eq!(from(&section(0x7000_0000, 4096)), Ok(true));
        assert_eq!(from(&[0; 15]), Err(StatsError::Section { len: 15 }));
        assert_eq!(
            from(&section(0x6000_0000, 4096)),
            Err(StatsError::Unmapped { vaddr: 0x6000_0000 })
        );
    }

    #[test]
    fn long_names_are_cut_and_full_regions_refused() {
        let mem = OwnedRegion::new(HEADER_BYTES + ENTRY_BYTES * 3);
        let mut w =
            StatsWriter::new(mem.region(), "a-component-name-longer-than-32-bytes").unwrap();
        w.group::<Two>(format_args!("a-very-long-group-name-indeed"))
            .unwrap();
        assert_eq!(
            w.group::<Two>(format_args!("x")),
            Err(StatsError::TooSmall {
                entries: 4,
                len: HEADER_BYTES + ENTRY_BYTES * 3
            })
        );
        w.finish();
        w.publish([7, 8, 9, 10]);
        let s = Snapshot::read(&mem.region()).unwrap();
        assert_eq!(s.component.len(), COMPONENT_BYTES);
        assert_eq!(s.entries[1].0.len(), NAME_BYTES);
        assert!(s.entries[1]
            .0
            .starts_with("a-very-long-group-name-indeed.notif"));
        assert_eq!(
            s.entries.iter().map(|e| e.1).collect::<std::vec::Vec<_>>(),
            [7, 8, 9]
        );
    }

    #[test]
    fn a_scribbled_header_is_an_error_not_a_panic() {
        let mem = OwnedRegion::new(256);
        let r = mem.region();
        let mut w = StatsWriter::new(r, "c").unwrap();
        w.group::<Two>(format_args!("g")).unwrap();
        w.finish();
        // A count far beyond the region.
        r.write_words(16, &[0xff, 0xff, 0xff, 0x7f, 48, 0, 0, 0])
            .unwrap();
        assert_eq!(Snapshot::read(&r), Err(StatsError::BadHeader));
        // A wrong entry size.
        r.write_words(16, &[2, 0, 0, 0, 47, 0, 0, 0]).unwrap();
        assert_eq!(Snapshot::read(&r), Err(StatsError::BadHeader));
        // A writer stuck mid-update.
        r.write_words(16, &[2, 0, 0, 0, 48, 0, 0, 0]).unwrap();
        r.write_words(8, &1u64.to_le_bytes()).unwrap();
        assert_eq!(Snapshot::read(&r), Err(StatsError::Busy));
        // Non-UTF-8 names are decoded lossily.
        r.write_words(8, &2u64.to_le_bytes()).unwrap();
        r.write_words(64, &[0xff; 8]).unwrap();
        let s = Snapshot::read(&r).unwrap();
        assert!(s.entries[0].0.starts_with('\u{fffd}'));
    }

    #[test]
    // The sequence lock pairs plain volatile accesses, as every shared-memory peer does; Miri
    // rightly calls that a data race between threads of one process.
    #[cfg_attr(miri, ignore)]
    fn concurrent_reads_see_consistent_values() {
        let mem = OwnedRegion::new(4096);
        let r = mem.region();
        let mut w = StatsWriter::new(r, "c").unwrap();
        w.group::<Two>(format_args!("g")).unwrap();
        w.finish();
        w.publish([0, 0]);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=200_000u64 {
                    w.publish([i, i]);
                }
            });
            let mut last = 0;
            while last < 200_000 {
                match Snapshot::read(&r) {
                    Ok(snap) => {
                        let (a, b) = (snap.entries[0].1, snap.entries[1].1);
                        assert_eq!(a, b, "torn snapshot");
                        assert!(a >= last);
                        last = a;
                    }
                    Err(StatsError::Busy) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
}
