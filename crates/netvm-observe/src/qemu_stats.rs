//! `netvm stats --qmp`: the counters of a netvm system running on seL4 in QEMU, read from the
//! guest's physical memory through QEMU's monitor (QMP).
//!
//! The Microkit tool's report gives each memory region's physical address, but the frames the
//! running system uses are not reliably those, so the stats regions are found by content: every
//! 4 KiB page of RAM that starts with the `netvmst1` magic (`netvm_api::stats`) is a candidate. Once
//! found, a page is read alone, twice, and its first copy accepted only if the writer's sequence
//! number was even and the same in both copies — the stats region's sequence lock, applied across
//! two reads (the vCPUs keep running while QEMU copies memory). A page is never trusted: one that
//! merely starts with the magic is reported with what is wrong with it, and two pages claiming
//! the same component are both reported as duplicates.
//!
//! Memory is read with QMP's `pmemsave` into a file in a private directory ([`PhysMem`] is the
//! seam that tests fill with synthetic RAM images). QEMU writes that file, so `netvm` must run on
//! the same machine as QEMU. A stats region is assumed to be one page (what `system.xml` gives
//! every `netvm/stats/<pd>`): entries beyond it would read as a bad header.

use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netvm_api::stats::{Snapshot, MAGIC};
use sddf::shm::OwnedRegion;
use serde_json::{json, Value};

use crate::host::ComponentStats;

/// Where RAM starts on QEMU's `virt` machine.
pub const VIRT_RAM_BASE: u64 = 0x4000_0000;
/// QEMU's RAM size in `make qemu` (`-m size=2G`).
pub const DEFAULT_RAM_SIZE: u64 = 2 << 30;
/// Page size: stats regions are page-aligned pages.
pub const PAGE: usize = 4096;
/// Bytes asked of QEMU per `pmemsave` while scanning.
pub const SCAN_CHUNK: u64 = 32 << 20;
/// How often a page is re-read while its writer keeps it busy.
const CONSISTENT_TRIES: usize = 20;
/// Byte offset of the sequence word in a stats region (`netvm_api::stats` layout).
const SEQ_OFFSET: usize = 8;

/// Why QEMU's memory cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The monitor socket cannot be connected to.
    #[error("cannot connect to QEMU's QMP socket {}: {source} (start QEMU with -qmp unix:{},server,nowait; `make qemu` does)", path.display(), path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Talking to the monitor failed.
    #[error("QMP socket {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The peer does not speak QMP (or closed the connection).
    #[error("QMP socket {}: {reason}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// QEMU refused a command.
    #[error("QMP command {command} failed: {desc} ({class})")]
    Command {
        /// The command.
        command: &'static str,
        /// QEMU's error class (e.g. `GenericError`, `DeviceNotFound`).
        class: String,
        /// QEMU's description of the error.
        desc: String,
    },
    /// The dump file cannot be made or read.
    #[error("{}: {source}", path.display())]
    Dump {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The requested range is not inside 64-bit physical memory or is not page-aligned.
    #[error("RAM range {base:#x}+{size:#x} is not page-aligned or wraps")]
    Range {
        /// Start.
        base: u64,
        /// Size.
        size: u64,
    },
}

/// Guest-physical memory, readable in pieces.
pub trait PhysMem {
    /// Copies `buf.len()` bytes from guest-physical `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), QmpError>;
}

/// A stats page found in RAM and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPage {
    /// Its guest-physical address.
    pub addr: u64,
    /// Its counters, or why they cannot be believed.
    pub snapshot: Result<Snapshot, String>,
}

/// Guest-physical addresses of the pages in `base..base+size` that start with the stats magic,
/// reading `chunk` bytes at a time.
pub fn find_stats_pages(
    mem: &mut impl PhysMem,
    base: u64,
    size: u64,
    chunk: u64,
) -> Result<Vec<u64>, QmpError> {
    let page = PAGE as u64;
    let end = base.checked_add(size);
    if !base.is_multiple_of(page) || !size.is_multiple_of(page) || end.is_none() {
        return Err(QmpError::Range { base, size });
    }
    let chunk = chunk.max(page) / page * page;
    let mut found = Vec::new();
    let mut buf = Vec::new();
    let mut addr = base;
    while addr < base + size {
        let n = chunk.min(base + size - addr);
        buf.resize(n as usize, 0);
        mem.read(addr, &mut buf)?;
        found.extend(
            buf.chunks_exact(PAGE)
                .enumerate()
                .filter(|(_, p)| p[..MAGIC.len()] == MAGIC)
                .map(|(i, _)| addr + (i * PAGE) as u64),
        );
        addr += n;
    }
    Ok(found)
}

/// Reads the stats page at `addr` consistently (see the module documentation).
pub fn read_page(mem: &mut impl PhysMem, addr: u64) -> Result<FoundPage, QmpError> {
    let mut first = vec![0u8; PAGE];
    let mut second = vec![0u8; PAGE];
    let seq = |p: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&p[SEQ_OFFSET..SEQ_OFFSET + 8]);
        u64::from_le_bytes(w)
    };
    for _ in 0..CONSISTENT_TRIES {
        mem.read(addr, &mut first)?;
        mem.read(addr, &mut second)?;
        if seq(&first) == seq(&second) && seq(&first) & 1 == 0 {
            let region = OwnedRegion::new(PAGE);
            let snapshot = region
                .region()
                .copy_from_slice(0, &first)
                .map_err(|e| format!("{e:?}"))
                .and_then(|()| Snapshot::read(&region.region()).map_err(|e| e.to_string()));
            return Ok(FoundPage { addr, snapshot });
        }
    }
    Ok(FoundPage {
        addr,
        snapshot: Err(format!(
            "the writer kept updating during {CONSISTENT_TRIES} pairs of reads"
        )),
    })
}

/// The found pages as components, in name order (unreadable pages last, by address). Each is
/// named by the component its page names; a name two pages claim is marked on both.
pub fn components(pages: &[FoundPage]) -> Vec<ComponentStats> {
    let mut named: Vec<(&str, &FoundPage)> = pages
        .iter()
        .filter_map(|p| p.snapshot.as_ref().ok().map(|s| (s.component.as_str(), p)))
        .collect();
    named.sort_by_key(|&(name, p)| (name, p.addr));
    let mut out: Vec<ComponentStats> = named
        .iter()
        .map(|&(name, p)| {
            let copies = named.iter().filter(|(n, _)| *n == name).count();
            let pd = if copies > 1 {
                format!(
                    "{name} (page {:#x}; DUPLICATE: {copies} pages claim this name)",
                    p.addr
                )
            } else {
                name.to_owned()
            };
            ComponentStats {
                pd,
                snapshot: p.snapshot.clone(),
            }
        })
        .collect();
    out.extend(pages.iter().filter_map(|p| {
        let e = p.snapshot.as_ref().err()?;
        Some(ComponentStats {
            pd: format!("stats page at {:#x}", p.addr),
            snapshot: Err(e.clone()),
        })
    }));
    out
}

/// Finds every stats page in `base..base+size` and reads it.
pub fn scan(mem: &mut impl PhysMem, base: u64, size: u64) -> Result<Vec<FoundPage>, QmpError> {
    find_stats_pages(mem, base, size, SCAN_CHUNK)?
        .into_iter()
        .map(|addr| read_page(mem, addr))
        .collect()
}

/// Re-reads the pages found before (cheap, for `--watch`); `None` when one no longer starts with
/// the magic (the system restarted: scan again).
pub fn reread(
    mem: &mut impl PhysMem,
    pages: &[FoundPage],
) -> Result<Option<Vec<FoundPage>>, QmpError> {
    let mut out = Vec::with_capacity(pages.len());
    for p in pages {
        let mut head = [0u8; 8];
        mem.read(p.addr, &mut head)?;
        if head != MAGIC {
            return Ok(None);
        }
        out.push(read_page(mem, p.addr)?);
    }
    Ok(Some(out))
}

/// Reads the stats pages in `pages` again, or, the first time and after the system restarted
/// (a page no longer starts with the magic), finds them anew in `base..base+size`.
pub fn refresh(
    mem: &mut impl PhysMem,
    pages: &mut Vec<FoundPage>,
    base: u64,
    size: u64,
) -> Result<(), QmpError> {
    *pages = match reread(mem, pages)? {
        Some(again) if !again.is_empty() => again,
        _ => scan(mem, base, size)?,
    };
    Ok(())
}

/// A QMP connection.
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the QMP socket at `path` and leaves capabilities negotiation.
    pub fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let io = |source| QmpError::Io {
            path: path.to_owned(),
            source,
        };
        // pmemsave of a scan chunk takes well under a second; a silent peer is not QEMU.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.line()?;
        let is_greeting = matches!(
            serde_json::from_str::<Value>(&greeting),
            Ok(Value::Object(obj)) if obj.contains_key("QMP")
        );
        if !is_greeting {
            return Err(qmp.protocol(format!(
                "expected QEMU's QMP greeting, got {:?}",
                cut(&greeting)
            )));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn protocol(&self, reason: String) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            reason,
        }
    }

    fn line(&mut self) -> Result<String, QmpError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(self.protocol("QEMU closed the connection".into()));
        }
        Ok(line)
    }

    /// Sends `command` (with its `arguments`, if any) and waits for its reply, skipping
    /// asynchronous events.
    fn execute(&mut self, command: &'static str, arguments: Option<Value>) -> Result<(), QmpError> {
        let request = match arguments {
            Some(arguments) => json!({ "execute": command, "arguments": arguments }),
            None => json!({ "execute": command }),
        };
        tracing::debug!(%request, "QMP request");
        writeln!(self.writer, "{request}").map_err(|source| QmpError::Io {
            path: self.path.clone(),
            source,
        })?;
        loop {
            let line = self.line()?;
            tracing::trace!(reply = cut(&line), "QMP reply");
            match reply_kind(&line) {
                Reply::Return => return Ok(()),
                Reply::Error { class, desc } => {
                    return Err(QmpError::Command {
                        command,
                        class,
                        desc,
                    })
                }
                Reply::Event => continue,
                Reply::Other => {
                    return Err(
                        self.protocol(format!("unexpected reply to {command}: {:?}", cut(&line)))
                    )
                }
            }
        }
    }

    /// `stop`: pauses the virtual machine (its vCPUs and virtual clock); it costs no host CPU
    /// until [`Qmp::resume`].
    pub fn pause(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None)
    }

    /// `cont`: resumes a paused virtual machine.
    pub fn resume(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None)
    }

    /// `pmemsave`: QEMU writes guest-physical `addr..addr+size` to `file`.
    pub fn pmemsave(&mut self, addr: u64, size: u64, file: &Path) -> Result<(), QmpError> {
        let arguments = json!({ "val": addr, "size": size, "filename": file.to_string_lossy() });
        self.execute("pmemsave", Some(arguments))
    }
}

/// [`PhysMem`] over QMP `pmemsave` into a private directory (removed on drop).
pub struct QmpMem {
    qmp: Qmp,
    dir: PathBuf,
    file: PathBuf,
}

impl QmpMem {
    /// Connects to `socket` and makes the dump directory.
    pub fn connect(socket: &Path) -> Result<QmpMem, QmpError> {
        let qmp = Qmp::connect(socket)?;
        static DUMPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = DUMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("netvm-qmp.{}.{n}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // A directory of our own: QEMU is told to write a file there.
        let _ = std::fs::remove_dir_all(&dir);
        builder.create(&dir).map_err(|source| QmpError::Dump {
            path: dir.clone(),
            source,
        })?;
        let file = dir.join("ram");
        Ok(QmpMem { qmp, dir, file })
    }

    /// The connection, for commands other than reads (`stop`, `cont`).
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }
}

impl Drop for QmpMem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PhysMem for QmpMem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), QmpError> {
        self.qmp.pmemsave(addr, buf.len() as u64, &self.file)?;
        let dump = |source| QmpError::Dump {
            path: self.file.clone(),
            source,
        };
        let read = std::fs::File::open(&self.file)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, buf))
            .map_err(dump);
        // Gone at once: a reader stopped by a signal (Ctrl-C in --watch) skips Drop and would
        // otherwise leave up to a scan chunk of guest RAM behind.
        let _ = std::fs::remove_file(&self.file);
        read
    }
}

/// What a QMP line is.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// `{"return": …}`.
    Return,
    /// `{"error": {"class": …, "desc": …}}`.
    Error {
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// `{"event": …, "timestamp": …}`.
    Event,
    /// Anything else (including a line that is not a JSON object).
    Other,
}

/// Classifies one line from QEMU by the keys of its top-level object, whatever their order
/// (QEMU does not promise one).
fn reply_kind(line: &str) -> Reply {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return Reply::Other;
    };
    if obj.contains_key("return") {
        Reply::Return
    } else if let Some(error) = obj.get("error") {
        let field = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
        Reply::Error {
            class: field("class").unwrap_or_else(|| "no error class".to_owned()),
            desc: field("desc").unwrap_or_else(|| cut(line).to_owned()),
        }
    } else if obj.contains_key("event") {
        Reply::Event
    } else {
        Reply::Other
    }
}

/// At most 200 bytes of a QMP line, trailing whitespace dropped, for error messages.
fn cut(line: &str) -> &str {
    prefix(line.trim_end(), 200)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary (an
/// excerpt of untrusted input for an error message).
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use netvm_api::stats::StatsWriter;

    netvm_api::counters! {
        /// Test counters.
        pub struct Frames {
            /// Frames.
            pub frames: u64,
            /// Drops.
            pub drops: u64,
        }
    }

    /// A RAM image at `base`, with a read log.
    struct Ram {
        base: u64,
        bytes: Vec<u8>,
        reads: usize,
        /// Bumps the sequence word of this page on every read of it (a busy writer).
        busy_page: Option<u64>,
    }

    impl Ram {
        fn new(base: u64, pages: usize) -> Ram {
            Ram {
                base,
                bytes: vec![0; pages * PAGE],
                reads: 0,
                busy_page: None,
            }
        }

        /// Lays out a stats page for `component` at `addr` with `frames`, `drops`.
        fn stats(&mut self, addr: u64, component: &str, values: [u64; 2]) {
            let region = OwnedRegion::new(PAGE);
            let mut w = StatsWriter::new(region.region(), component).unwrap();
            w.group::<Frames>(format_args!("driver")).unwrap();
            w.finish();
            w.publish(values);
            let off = (addr - self.base) as usize;
            region
                .region()
                .copy_to_slice(0, &mut self.bytes[off..off + PAGE])
                .unwrap();
        }
    }

    impl PhysMem for Ram {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), QmpError> {
            self.reads += 1;
            let off = (addr - self.base) as usize;
            if self.busy_page == Some(addr) {
                let seq = off + SEQ_OFFSET;
                let v = u64::from_le_bytes(self.bytes[seq..seq + 8].try_into().unwrap()) + 1;
                self.bytes[seq..seq + 8].copy_from_slice(&v.to_le_bytes());
            }
            buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
            Ok(())
        }
    }

    const BASE: u64 = VIRT_RAM_BASE;

    #[test]
    fn stats_pages_are_found_anywhere_in_ram_and_read() {
        let mut ram = Ram::new(BASE, 64);
        ram.stats(BASE + 5 * 4096, "net_virt_rx", [10, 1]);
        ram.stats(BASE + 63 * 4096, "vmm", [3, 0]);
        // Chunks that do not divide RAM evenly still cover every page.
        let found = find_stats_pages(&mut ram, BASE, 64 * 4096, 3 * 4096).unwrap();
        assert_eq!(found, [BASE + 5 * 4096, BASE + 63 * 4096]);
        let pages = scan(&mut ram, BASE, 64 * 4096).unwrap();
        let stats = components(&pages);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats[0].pd, "net_virt_rx");
        let s = stats[0].snapshot.as_ref().unwrap();
        assert_eq!(s.get("driver.frames"), Some(10));
        assert_eq!(stats[1].pd, "vmm");
        let text = crate::host::render_stats(&stats);
        assert!(text.contains("vmm:\n  driver.frames"), "{text}");
    }

    #[test]
    fn a_page_with_only_the_magic_is_reported_not_believed() {
        let mut ram = Ram::new(BASE, 8);
        ram.stats(BASE, "copier", [1, 2]);
        // The magic and garbage after it: an impossible count.
        let off = 3 * PAGE;
        ram.bytes[off..off + 8].copy_from_slice(&MAGIC);
        ram.bytes[off + 16..off + PAGE].fill(0xff);
        // The magic with an odd (mid-update) sequence that never settles.
        let off = 6 * PAGE;
        ram.bytes[off..off + 8].copy_from_slice(&MAGIC);
        ram.bytes[off + 8] = 1;
        let pages = scan(&mut ram, BASE, 8 * 4096).unwrap();
        let stats = components(&pages);
        assert_eq!(stats.len(), 3);
        assert_eq!(stats[0].pd, "copier");
        assert_eq!(stats[1].pd, format!("stats page at {:#x}", BASE + 3 * 4096));
        assert!(stats[1]
            .snapshot
            .as_ref()
            .unwrap_err()
            .contains("impossible"));
        assert_eq!(stats[2].pd, format!("stats page at {:#x}", BASE + 6 * 4096));
        assert!(stats[2]
            .snapshot
            .as_ref()
            .unwrap_err()
            .contains("kept updating"));
    }

    #[test]
    fn duplicate_components_are_reported_on_both_pages() {
        let mut ram = Ram::new(BASE, 4);
        ram.stats(BASE + 4096, "vmm", [1, 0]);
        ram.stats(BASE + 3 * 4096, "vmm", [2, 0]);
        let stats = components(&scan(&mut ram, BASE, 4 * 4096).unwrap());
        assert_eq!(stats.len(), 2);
        for (s, page) in stats.iter().zip([1, 3]) {
            assert!(s.pd.starts_with("vmm (page "), "{}", s.pd);
            assert!(s.pd.contains(&format!("{:#x}", BASE + page * 4096)));
            assert!(s.pd.contains("DUPLICATE"));
        }
    }

    #[test]
    fn a_writer_moving_between_two_reads_is_read_again() {
        let mut ram = Ram::new(BASE, 2);
        ram.stats(BASE, "net_virt_tx", [5, 0]);
        ram.busy_page = Some(BASE);
        // Every read bumps seq: the two copies never agree.
        let page = read_page(&mut ram, BASE).unwrap();
        assert!(page.snapshot.is_err());
        assert_eq!(ram.reads, 2 * CONSISTENT_TRIES);
        ram.busy_page = None;
        // Now stable (seq was bumped an even number of times).
        let page = read_page(&mut ram, BASE).unwrap();
        assert_eq!(page.snapshot.unwrap().get("driver.frames"), Some(5));
    }

    #[test]
    fn watch_rereads_known_pages_and_notices_a_restart() {
        let mut ram = Ram::new(BASE, 16);
        ram.stats(BASE + 2 * 4096, "client0", [1, 0]);
        let pages = scan(&mut ram, BASE, 16 * 4096).unwrap();
        ram.stats(BASE + 2 * 4096, "client0", [7, 0]);
        let again = reread(&mut ram, &pages).unwrap().unwrap();
        assert_eq!(
            again[0].snapshot.as_ref().unwrap().get("driver.frames"),
            Some(7)
        );
        ram.bytes[2 * PAGE..2 * PAGE + 8].fill(0);
        assert_eq!(reread(&mut ram, &pages).unwrap(), None);
    }

    #[test]
    fn bad_ranges_are_refused() {
        let mut ram = Ram::new(BASE, 1);
        assert!(matches!(
            find_stats_pages(&mut ram, BASE + 1, 4096, SCAN_CHUNK),
            Err(QmpError::Range { .. })
        ));
        assert!(matches!(
            find_stats_pages(&mut ram, u64::MAX - 4095, 8192, SCAN_CHUNK),
            Err(QmpError::Range { .. })
        ));
    }

    #[test]
    fn qmp_replies_are_classified_whatever_their_key_order() {
        assert_eq!(reply_kind("{\"return\": {}}\r\n"), Reply::Return);
        assert_eq!(reply_kind("{\"id\": \"x\", \"return\": {}}"), Reply::Return);
        assert_eq!(
            reply_kind(
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Could not open '/x': \\\"no\\\"\"}}"
            ),
            Reply::Error {
                class: "GenericError".into(),
                desc: "Could not open '/x': \"no\"".into()
            }
        );
        // An error without its fields still says what QEMU sent.
        assert_eq!(
            reply_kind("{\"error\": 7}"),
            Reply::Error {
                class: "no error class".into(),
                desc: "{\"error\": 7}".into()
            }
        );
        assert_eq!(
            reply_kind("{\"timestamp\": {\"seconds\": 1}, \"event\": \"STOP\"}"),
            Reply::Event
        );
        // A key-like string nested deeper, or inside a value, is no top-level key.
        assert_eq!(reply_kind("{\"data\": {\"return\": 1}}"), Reply::Other);
        assert_eq!(reply_kind("{\"x\": \"return\"}"), Reply::Other);
        assert_eq!(reply_kind("garbage \"unterminated"), Reply::Other);
        assert_eq!(reply_kind(""), Reply::Other);
        assert_eq!(reply_kind("[\"return\"]"), Reply::Other);
    }

    #[test]
    fn a_fake_qmp_server_is_driven_through_pmemsave() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("netvm-qmp-test.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream).lines();
            writeln!(
                out,
                "{{\"QMP\": {{\"version\": {{}}, \"capabilities\": [\"oob\"]}}}}"
            )
            .unwrap();
            let mut commands = Vec::new();
            while let Some(Ok(line)) = lines.next() {
                let request: Value = serde_json::from_str(&line).unwrap();
                if request["execute"] == "pmemsave" {
                    // Write a page with a stats region where the client asked.
                    let file = request["arguments"]["filename"].as_str().unwrap();
                    let region = OwnedRegion::new(PAGE);
                    let mut w = StatsWriter::new(region.region(), "vmm").unwrap();
                    w.group::<Frames>(format_args!("vmm")).unwrap();
                    w.finish();
                    w.publish([42, 0]);
                    let mut page = vec![0u8; PAGE];
                    region.region().copy_to_slice(0, &mut page).unwrap();
                    std::fs::write(file, page).unwrap();
                    writeln!(out, "{{\"timestamp\": {{}}, \"event\": \"RTC_CHANGE\"}}").unwrap();
                }
                if request["arguments"]["val"] == 4096 {
                    writeln!(
                        out,
                        "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Invalid addr\"}}}}"
                    )
                    .unwrap();
                } else {
                    writeln!(out, "{{\"return\": {{}}}}").unwrap();
                }
                commands.push(request);
            }
            commands
        });
        let mut mem = QmpMem::connect(&sock).unwrap();
        let page = read_page(&mut mem, BASE).unwrap();
        assert_eq!(page.snapshot.unwrap().get("vmm.frames"), Some(42));
        let err = mem.read(4096, &mut [0; 8]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "QMP command pmemsave failed: Invalid addr (GenericError)"
        );
        let dump_dir = mem.dir.clone();
        drop(mem);
        assert!(!dump_dir.exists(), "the dump directory is removed");
        let commands = server.join().unwrap();
        assert_eq!(commands[0], json!({ "execute": "qmp_capabilities" }));
        assert_eq!(commands[1]["execute"], "pmemsave");
        assert_eq!(commands[1]["arguments"]["val"], BASE);
        assert_eq!(commands[1]["arguments"]["size"], 4096);
        let file = commands[1]["arguments"]["filename"].as_str().unwrap();
        assert!(file.starts_with(&std::env::temp_dir().to_string_lossy().into_owned()));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_socket_that_is_not_qmp_is_a_protocol_error() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("netvm-qmp-test2.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("not-qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            writeln!(stream, "SSH-2.0-OpenSSH").unwrap();
        });
        let err = Qmp::connect(&sock).err().unwrap();
        assert!(
            err.to_string().contains("expected QEMU's QMP greeting"),
            "{err}"
        );
        server.join().unwrap();
        let err = Qmp::connect(&dir.join("missing.sock")).err().unwrap();
        assert!(matches!(err, QmpError::Connect { .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
