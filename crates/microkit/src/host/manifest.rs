//! The PD manifest: what a host runner tells one PD process about itself.
//!
//! # Contract between a host runner and a PD process
//!
//! 1. The runner creates the **control region** ([`crate::host::control`]) for all PDs of the
//!    system (PD index = position in the runner's PD list, the same numbering for every PD), and
//!    one file per memory region (e.g. under `/dev/shm`), sized to the region.
//! 2. For every PD it writes a manifest file (this format) and starts the PD executable with the
//!    environment variable [`MANIFEST_ENV`] (`NETVM_PD_MANIFEST`) set to the manifest's path.
//!    Arguments and the rest of the environment are the runner's choice; a restarted PD re-executes
//!    itself with the same ones.
//! 3. Before `Handler::init` the PD maps every region at its SDF `vaddr` with
//!    `MAP_SHARED | MAP_FIXED_NOREPLACE` and the SDF permissions, writes each `setvar` value into
//!    the word-sized symbol of that name in its own executable (found through the executable's
//!    `.symtab`, as the Microkit tool does), and copies each `section`'s bytes into the ELF section
//!    of that name (which must be writable and at least that long). Any failure is printed as
//!    `microkit: PD '<name>': <error>` and the process exits with status 2.
//! 4. The PD then runs its event loop on the control region (notifications, PPC, faults).
//!    A fault of a PD with a `parent` goes to the parent's `fault` handler. A fault of a top-level
//!    PD is printed as `MON|ERROR: PD '<name>' faulted: ...`, recorded in its control record
//!    ([`crate::host::control::PdRecord::fault`]) and the process exits with status
//!    `128 + signal` (134 for a Rust panic).
//!
//! # Format (version 1)
//!
//! UTF-8 text, one entry per line, fields separated by single spaces; empty lines and lines
//! starting with `#` are ignored. Numbers are decimal or `0x` hexadecimal. The first line is the
//! header `netvm-pd-manifest 1`. Then, in any order:
//!
//! | line | meaning |
//! |---|---|
//! | `name <pd-name>` | PD name (no whitespace, at most 64 bytes); exactly once |
//! | `index <n>` | this PD's index in the control region; exactly once |
//! | `control <path>` | path of the control region file (rest of the line); exactly once |
//! | `passive <0\|1>` | the SDF `passive` attribute; default 0 |
//! | `region <name> <vaddr> <size> <perms> <path>` | map `size` bytes of file `path` (rest of the line) at `vaddr`; `perms` is a non-empty combination of `r`, `w`, `x` in that order |
//! | `channel <id> <peer-index> <peer-id> <notify 0\|1> <pp 0\|1>` | channel end `id` of this PD; the other end is channel `peer-id` of PD `peer-index`; `notify`/`pp`: whether *this* end may notify / PP-call |
//! | `irq <id>` | IRQ with channel id `id` (host: `irq_ack` is a no-op; a runner simulates the IRQ by posting bit `id` to the PD's notification word) |
//! | `child <id> <pd-index>` | child PD `id` of this PD is PD `pd-index` |
//! | `parent <pd-index> <child-id>` | this PD is child `child-id` of PD `pd-index` |
//! | `setvar <symbol> <value>` | write the u64 `value` into symbol `symbol` |
//! | `section <name> <hex-bytes>` | copy the bytes (lower-case hex, two digits per byte, no separators; may be empty) into ELF section `name` |
//!
//! Ids (channels, IRQs, children) are 0..=61 and unique per kind; channel and IRQ ids share one
//! namespace, as in Microkit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;
use std::{env, fs, io};

use crate::MAX_CHANNEL_ID;

/// Environment variable holding the manifest's path.
pub const MANIFEST_ENV: &str = "NETVM_PD_MANIFEST";

/// The header line of format version 1.
const HEADER: &str = "netvm-pd-manifest 1";

/// Longest PD name Microkit allows (`MICROKIT_PD_NAME_LENGTH`).
pub const MAX_NAME_LEN: usize = 64;

/// Mapping permissions of a region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl Perms {
    /// Parses `r`, `rw`, `rx`, `rwx`, ... (SDF `perms`, letters in the order r, w, x).
    pub fn parse(text: &str) -> Option<Self> {
        let perms = Self {
            read: text.contains('r'),
            write: text.contains('w'),
            execute: text.contains('x'),
        };
        (perms.to_string() == text && !text.is_empty()).then_some(perms)
    }
}

impl std::fmt::Display for Perms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.execute, 'x')] {
            if on {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// A memory region mapped into the PD.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Region {
    /// The memory region's SDF name (for error messages).
    pub name: String,
    /// Virtual address to map it at (SDF `<map vaddr>`), page-aligned.
    pub vaddr: u64,
    /// Bytes to map, a multiple of the page size.
    pub size: u64,
    /// Permissions (SDF `<map perms>`).
    pub perms: Perms,
    /// The file backing the region, shared by every PD that maps it.
    pub path: PathBuf,
}

/// One channel end of this PD.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChannelEnd {
    /// This end's id.
    pub id: u8,
    /// Control-region index of the PD at the other end.
    pub peer: usize,
    /// The other end's id (the bit set in the peer's badge, the channel its `protected` sees).
    pub peer_id: u8,
    /// Whether this end may notify.
    pub notify: bool,
    /// Whether this end may make protected calls to the other end.
    pub pp: bool,
}

/// A child PD of this PD.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChildPd {
    /// The child's `id` attribute.
    pub id: u8,
    /// Its control-region index.
    pub index: usize,
}

/// This PD's parent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ParentLink {
    /// The parent's control-region index.
    pub index: usize,
    /// This PD's child id at the parent.
    pub child_id: u8,
}

/// A setvar value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SetVarValue {
    /// Symbol name.
    pub symbol: String,
    /// Value written into the symbol.
    pub value: u64,
}

/// Contents for a config section.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SectionData {
    /// ELF section name, e.g. `.net_client_config`.
    pub name: String,
    /// The bytes to copy to the start of the section.
    pub bytes: Vec<u8>,
}

/// Everything one PD process is told by the runner. Build it with [`Manifest::new`] and the
/// public fields, write it with [`Manifest::to_text`] / [`Manifest::write`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Manifest {
    /// PD name.
    pub name: String,
    /// Index in the control region.
    pub index: usize,
    /// Path of the control region file.
    pub control: PathBuf,
    /// SDF `passive`.
    pub passive: bool,
    /// Regions to map.
    pub regions: Vec<Region>,
    /// Channel ends.
    pub channels: Vec<ChannelEnd>,
    /// IRQ ids.
    pub irqs: Vec<u8>,
    /// Child PDs.
    pub children: Vec<ChildPd>,
    /// Parent, for a child PD.
    pub parent: Option<ParentLink>,
    /// Setvar values.
    pub setvars: Vec<SetVarValue>,
    /// Config section contents.
    pub sections: Vec<SectionData>,
}

/// Errors reading or validating a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The environment variable naming the manifest is missing.
    #[error("{MANIFEST_ENV} is not set: a PD executable must be started by a netvm host runner")]
    NoEnv,
    /// The manifest file cannot be read or written.
    #[error("PD manifest {path}: {source}")]
    Io {
        /// The manifest file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A line is malformed or the manifest is inconsistent.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The manifest file (or `<memory>`).
        path: String,
        /// 1-based line (0 for whole-manifest problems).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Manifest {
    /// A manifest for PD `name` at control-region `index`, with nothing else.
    pub fn new(name: impl Into<String>, index: usize, control: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            index,
            control: control.into(),
            passive: false,
            regions: Vec::new(),
            channels: Vec::new(),
            irqs: Vec::new(),
            children: Vec::new(),
            parent: None,
            setvars: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// The manifest in format version 1.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{HEADER}");
        let _ = writeln!(out, "name {}", self.name);
        let _ = writeln!(out, "index {}", self.index);
        let _ = writeln!(out, "control {}", self.control.display());
        let _ = writeln!(out, "passive {}", u8::from(self.passive));
        for r in &self.regions {
            let _ = writeln!(
                out,
                "region {} {:#x} {:#x} {} {}",
                r.name,
                r.vaddr,
                r.size,
                r.perms,
                r.path.display()
            );
        }
        for c in &self.channels {
            let _ = writeln!(
                out,
                "channel {} {} {} {} {}",
                c.id,
                c.peer,
                c.peer_id,
                u8::from(c.notify),
                u8::from(c.pp)
            );
        }
        for irq in &self.irqs {
            let _ = writeln!(out, "irq {irq}");
        }
        for c in &self.children {
            let _ = writeln!(out, "child {} {}", c.id, c.index);
        }
        if let Some(p) = self.parent {
            let _ = writeln!(out, "parent {} {}", p.index, p.child_id);
        }
        for s in &self.setvars {
            let _ = writeln!(out, "setvar {} {:#x}", s.symbol, s.value);
        }
        for s in &self.sections {
            let _ = write!(out, "section {} ", s.name);
            for b in &s.bytes {
                let _ = write!(out, "{b:02x}");
            }
            out.push('\n');
        }
        out
    }

    /// Validates the manifest and writes it to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        let text = self.to_text();
        // Round-trip through the parser so a runner cannot write what a PD would reject.
        Self::parse(&text, &path.display().to_string())?;
        fs::write(path, text).map_err(|source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads the manifest named by [`MANIFEST_ENV`].
    pub fn from_env() -> Result<Self, ManifestError> {
        let path = env::var_os(MANIFEST_ENV).ok_or(ManifestError::NoEnv)?;
        Self::load(Path::new(&path))
    }

    /// Reads and parses the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses manifest text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ManifestError> {
        let err = |line: usize, message: String| ManifestError::Invalid {
            path: source.to_string(),
            line,
            message,
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(err(1, std::format!("expected header '{HEADER}'"))),
        }
        let mut name = None;
        let mut index = None;
        let mut control = None;
        let mut m = Manifest::new("", 0, "");
        for (no, line) in lines {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let mut f = Fields {
                rest,
                line: no,
                source,
            };
            match key {
                "name" => set_once(&mut name, f.last()?.to_string(), no, "name", source)?,
                "index" => set_once(&mut index, f.number("index")? as usize, no, "index", source)?,
                "control" => set_once(
                    &mut control,
                    PathBuf::from(f.last()?),
                    no,
                    "control",
                    source,
                )?,
                "passive" => m.passive = f.flag("passive")?,
                "region" => {
                    let name = f.word("region name")?.to_string();
                    let vaddr = f.number("vaddr")?;
                    let size = f.number("size")?;
                    let perms_text = f.word("perms")?;
                    let perms = Perms::parse(perms_text)
                        .ok_or_else(|| err(no, std::format!("bad perms '{perms_text}'")))?;
                    let path = PathBuf::from(f.last()?);
                    m.regions.push(Region {
                        name,
                        vaddr,
                        size,
                        perms,
                        path,
                    });
                }
                "channel" => {
                    let id = f.id("channel id")?;
                    let peer = f.number("peer index")? as usize;
                    let peer_id = f.id("peer channel id")?;
                    let notify = f.flag("notify")?;
                    let pp = f.flag("pp")?;
                    m.channels.push(ChannelEnd {
                        id,
                        peer,
                        peer_id,
                        notify,
                        pp,
                    });
                }
                "irq" => m.irqs.push(f.id("irq id")?),
                "child" => {
                    let id = f.id("child id")?;
                    let index = f.number("child index")? as usize;
                    m.children.push(ChildPd { id, index });
                }
                "parent" => {
                    let index = f.number("parent index")? as usize;
                    let child_id = f.id("child id")?;
                    if m.parent.replace(ParentLink { index, child_id }).is_some() {
                        return Err(err(no, "duplicate 'parent'".into()));
                    }
                }
                "setvar" => {
                    let symbol = f.word("symbol")?.to_string();
                    let value = f.number("value")?;
                    m.setvars.push(SetVarValue { symbol, value });
                }
                "section" => {
                    let name = f.word("section name")?.to_string();
                    let hex = core::mem::take(&mut f.rest);
                    let bytes = decode_hex(hex)
                        .ok_or_else(|| err(no, std::format!("bad hex bytes for section {name}")))?;
                    m.sections.push(SectionData { name, bytes });
                }
                other => return Err(err(no, std::format!("unknown entry '{other}'"))),
            }
            f.end()?;
        }
        m.name = name.ok_or_else(|| err(0, "missing 'name'".into()))?;
        m.index = index.ok_or_else(|| err(0, "missing 'index'".into()))?;
        m.control = control.ok_or_else(|| err(0, "missing 'control'".into()))?;
        m.validate().map_err(|message| err(0, message))?;
        Ok(m)
    }

    /// Whole-manifest consistency checks.
    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(std::format!("PD name '{}' must be 1..=64 bytes", self.name));
        }
        let mut used = 0u64;
        for id in self
            .channels
            .iter()
            .map(|c| c.id)
            .chain(self.irqs.iter().copied())
        {
            if used & (1 << id) != 0 {
                return Err(std::format!(
                    "PD {}: channel/irq id {id} used twice",
                    self.name
                ));
            }
            used |= 1 << id;
        }
        let mut children = 0u64;
        for c in &self.children {
            if children & (1 << c.id) != 0 {
                return Err(std::format!(
                    "PD {}: child id {} used twice",
                    self.name,
                    c.id
                ));
            }
            children |= 1 << c.id;
        }
        Ok(())
    }
}

/// Splits the fields of one line.
struct Fields<'a> {
    rest: &'a str,
    line: usize,
    source: &'a str,
}

impl<'a> Fields<'a> {
    fn err(&self, message: String) -> ManifestError {
        ManifestError::Invalid {
            path: self.source.to_string(),
            line: self.line,
            message,
        }
    }

    fn word(&mut self, what: &str) -> Result<&'a str, ManifestError> {
        let (word, rest) = self.rest.split_once(' ').unwrap_or((self.rest, ""));
        if word.is_empty() {
            return Err(self.err(std::format!("missing {what}")));
        }
        self.rest = rest;
        Ok(word)
    }

    /// The rest of the line (paths may contain spaces).
    fn last(&mut self) -> Result<&'a str, ManifestError> {
        let rest = core::mem::take(&mut self.rest);
        if rest.is_empty() {
            return Err(self.err("missing value".into()));
        }
        Ok(rest)
    }

    fn number(&mut self, what: &str) -> Result<u64, ManifestError> {
        let word = self.word(what)?;
        parse_number(word).ok_or_else(|| self.err(std::format!("bad {what} '{word}'")))
    }

    fn id(&mut self, what: &str) -> Result<u8, ManifestError> {
        let n = self.number(what)?;
        if n > u64::from(MAX_CHANNEL_ID) {
            return Err(self.err(std::format!("{what} {n} is above {MAX_CHANNEL_ID}")));
        }
        Ok(n as u8)
    }

    fn flag(&mut self, what: &str) -> Result<bool, ManifestError> {
        match self.word(what)? {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(self.err(std::format!("{what} must be 0 or 1, not '{other}'"))),
        }
    }

    fn end(&self) -> Result<(), ManifestError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err(std::format!("unexpected '{}'", self.rest)))
        }
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    line: usize,
    key: &str,
    source: &str,
) -> Result<(), ManifestError> {
    if slot.replace(value).is_some() {
        return Err(ManifestError::Invalid {
            path: source.to_string(),
            line,
            message: std::format!("duplicate '{key}'"),
        });
    }
    Ok(())
}

fn parse_number(word: &str) -> Option<u64> {
    match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn sample() -> Manifest {
        let mut m = Manifest::new("client", 1, "/dev/shm/ctl file");
        m.passive = true;
        m.regions.push(Region {
            name: "shared".into(),
            vaddr: 0x400_0000,
            size: 0x1000,
            perms: Perms {
                read: true,
                write: true,
                execute: false,
            },
            path: "/dev/shm/a b".into(),
        });
        m.channels.push(ChannelEnd {
            id: 0,
            peer: 2,
            peer_id: 3,
            notify: true,
            pp: true,
        });
        m.irqs.push(5);
        m.children.push(ChildPd { id: 1, index: 3 });
        m.parent = Some(ParentLink {
            index: 0,
            child_id: 7,
        });
        m.setvars.push(SetVarValue {
            symbol: "shared_vaddr".into(),
            value: 0x400_0000,
        });
        m.sections.push(SectionData {
            name: ".net_client_config".into(),
            bytes: vec![0, 0xab, 7],
        });
        m.sections.push(SectionData {
            name: ".empty".into(),
            bytes: vec![],
        });
        m
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_text(), "t").unwrap(), m);
    }

    #[test]
    fn rejects_bad_input_with_location() {
        let text = sample().to_text();
        let cases = [
            (text.replace("netvm-pd-manifest 1", "other"), "t:1:"),
            (
                text.replace("channel 0 2 3 1 1", "channel 62 2 3 1 1"),
                "t:7: channel id 62",
            ),
            (
                text.replace("channel 0 2 3 1 1", "channel 0 2 3 1 2"),
                "t:7: pp must be",
            ),
            (text.replace("irq 5", "irq 0"), "used twice"),
            (text.replace(" rw ", " wr "), "t:6: bad perms 'wr'"),
            (text.replace("00ab07", "00ab0"), "bad hex bytes"),
            (text.replace("index 1\n", ""), "missing 'index'"),
            (text.replace("passive 1", "passive 1 1"), "unexpected '1'"),
            (std::format!("{text}bogus 1\n"), "unknown entry 'bogus'"),
        ];
        for (bad, expected) in cases {
            let e = Manifest::parse(&bad, "t").unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
        }
    }
}
