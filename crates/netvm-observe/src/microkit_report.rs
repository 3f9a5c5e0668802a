//! The Microkit tool's report (`microkit ... -r report.txt`): where the pages of each memory
//! region are in physical memory.
//!
//! Only the section `# Kernel Objects Details: ID, Type, Name, Physical Address` is read. Its
//! lines are `\t<id> - <type>: '<name>' @ 0x<address>`; the pages of memory region `R` are the
//! `Page(4 KiB)` (or `Page(2 MiB)`, ...) objects named `frame_mr_R_<page index>`. A region's
//! pages need not be contiguous. Every line of the section must have that form (other object
//! types and other pages are checked and skipped), and every region must list pages `0..n`
//! exactly once, all of one size: a report that says anything else is refused, with the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The heading of the section read.
pub const SECTION: &str = "# Kernel Objects Details";
/// The name prefix of a memory region's page objects.
const FRAME_PREFIX: &str = "frame_mr_";

/// One page of a memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Its physical address (a multiple of its size).
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// Why a report cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The report.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not what a Microkit report has.
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        /// The report.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The section is missing.
    #[error("{}: no \"{SECTION}\" section (not a Microkit report? `microkit ... -r report.txt` writes one)", path.display())]
    NoSection {
        /// The report.
        path: PathBuf,
    },
}

/// A parsed report: memory region name → its pages in page-index order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    regions: BTreeMap<String, Vec<Page>>,
}

impl Report {
    /// Reads and parses the report at `path`.
    pub fn read(path: &Path) -> Result<Report, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_owned(),
            source,
        })?;
        Report::parse(&text, path)
    }

    /// Parses report `text`; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Report, ReportError> {
        let err = |line: usize, reason: String| ReportError::Parse {
            path: path.to_owned(),
            line,
            reason,
        };
        // Region → (page index, page, line).
        let mut found: BTreeMap<String, Vec<(u64, Page, usize)>> = BTreeMap::new();
        let mut seen_section = false;
        let mut in_section = false;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.starts_with('#') {
                in_section = line.starts_with(SECTION);
                if in_section && seen_section {
                    return Err(err(n, format!("a second \"{SECTION}\" section")));
                }
                seen_section |= in_section;
                continue;
            }
            if !in_section || line.trim().is_empty() {
                continue;
            }
            let object = parse_object(line).map_err(|reason| err(n, reason))?;
            let Some(size) = object.page_size else {
                continue;
            };
            let Some(frame) = object.name.strip_prefix(FRAME_PREFIX) else {
                continue;
            };
            let (region, index) = frame
                .rsplit_once('_')
                .filter(|(r, i)| !r.is_empty() && !i.is_empty())
                .ok_or_else(|| {
                    err(
                        n,
                        format!("page '{}' has no _<page index> suffix", object.name),
                    )
                })?;
            let index: u64 = index
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| index.parse().ok())
                .flatten()
                .ok_or_else(|| {
                    err(
                        n,
                        format!("page '{}': '{index}' is not a page index", object.name),
                    )
                })?;
            if !object.addr.is_multiple_of(size) {
                return Err(err(
                    n,
                    format!(
                        "page '{}' at {:#x} is not aligned to its size {size:#x}",
                        object.name, object.addr
                    ),
                ));
            }
            let page = Page {
                addr: object.addr,
                size,
            };
            found
                .entry(region.to_owned())
                .or_default()
                .push((index, page, n));
        }
        if !seen_section {
            return Err(ReportError::NoSection {
                path: path.to_owned(),
            });
        }
        let mut regions = BTreeMap::new();
        for (region, mut pages) in found {
            pages.sort_by_key(|&(index, _, line)| (index, line));
            let first_size = pages[0].1.size;
            for (expected, &(index, page, line)) in pages.iter().enumerate() {
                if index != expected as u64 {
                    let reason = if index < expected as u64 {
                        format!("region '{region}': page {index} listed twice")
                    } else {
                        format!("region '{region}': page {expected} is missing")
                    };
                    return Err(err(line, reason));
                }
                if page.size != first_size {
                    return Err(err(
                        line,
                        format!(
                            "region '{region}': page {index} is {:#x} bytes, page 0 {first_size:#x}",
                            page.size
                        ),
                    ));
                }
            }
            regions.insert(region, pages.into_iter().map(|(_, p, _)| p).collect());
        }
        Ok(Report { regions })
    }

    /// The pages of memory region `region`, in order; `None` when the report has none.
    pub fn pages(&self, region: &str) -> Option<&[Page]> {
        self.regions.get(region).map(Vec::as_slice)
    }

    /// The regions with pages, in name order.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }
}

/// One line of the section.
struct Object<'a> {
    /// Its size when it is a page.
    page_size: Option<u64>,
    name: &'a str,
    addr: u64,
}

/// `\t<id> - <type>: '<name>' @ 0x<address>`.
fn parse_object(line: &str) -> Result<Object<'_>, String> {
    let shape = || {
        format!(
            "expected \"<id> - <type>: '<name>' @ 0x<address>\", got {:?}",
            cut(line)
        )
    };
    let (id, rest) = line.trim().split_once(" - ").ok_or_else(shape)?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("object id {id:?} is not a number"));
    }
    let (kind, rest) = rest.split_once(": '").ok_or_else(shape)?;
    let (name, addr) = rest.rsplit_once("' @ ").ok_or_else(shape)?;
    if name.is_empty() {
        return Err("an object without a name".into());
    }
    let addr = addr
        .strip_prefix("0x")
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("{addr:?} is not a 0x<hex> physical address"))?;
    let page_size = match kind.strip_prefix("Page(") {
        Some(size) => Some(parse_page_size(size.strip_suffix(')').unwrap_or(""))?),
        None => None,
    };
    Ok(Object {
        page_size,
        name,
        addr,
    })
}

/// `4 KiB`, `2 MiB`, `1 GiB`: a power of two.
fn parse_page_size(text: &str) -> Result<u64, String> {
    let bad = || format!("page size {text:?} is not <n> KiB/MiB/GiB");
    let (n, unit) = text.split_once(' ').ok_or_else(bad)?;
    let shift = match unit {
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(bad()),
    };
    let n: u64 = n
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())
        .flatten()
        .ok_or_else(bad)?;
    n.checked_mul(1 << shift)
        .filter(|s| s.is_power_of_two())
        .ok_or_else(bad)
}

/// At most 120 bytes of a line, for error messages.
fn cut(line: &str) -> &str {
    crate::qemu_stats::prefix(line, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the Microkit tool writes them (excerpt of a netvm report, hand-shortened).
    const EXCERPT: &str = "\
# Initial Task (CapDL Initialiser) Details
\tfoo: 1
# CNode Details
\t- CNode: 'cnode_vmm_root'
\t\t* Slot: 0
\t\t\t-> Object: 'cnode_vmm'


# Architecture Specific Details

# Kernel Objects Details: ID, Type, Name, Physical Address
\t0 - Page(4 KiB): 'frame_mr_gic_vcpu_000000000' @ 0x000008040000
\t3 - Page(4 KiB): 'frame_mr_generic/net/tx/data/client/client1_000000000' @ 0x00008fd00000
\t4 - Page(4 KiB): 'frame_mr_generic/net/tx/data/client/client1_000000001' @ 0x00008fd01000
\t771 - Page(2 MiB): 'frame_mr_guest_ram_000000000' @ 0x000090000000
\t772 - Page(2 MiB): 'frame_mr_guest_ram_000000001' @ 0x000090200000
\t1000 - Page(4 KiB): 'frame_client0_stack_000000003' @ 0x000064100000
\t8933 - Page(4 KiB): 'frame_mr_generic/net/queue/client0_net_copier/client0/active_000000001' @ 0x0000641d5000
\t8932 - Page(4 KiB): 'frame_mr_generic/net/queue/client0_net_copier/client0/active_000000000' @ 0x0000641d4000
\t8934 - Page(4 KiB): 'frame_mr_generic/net/queue/client0_net_copier/client0/active_000000002' @ 0x0000641a0000
\t9791 - Reply: 'reply_timer' @ 0x000064509e40
\t9793 - Endpoint: 'ep_fault_monitor' @ 0x000064509e80
";

    fn parse(text: &str) -> Result<Report, ReportError> {
        Report::parse(text, Path::new("build/report.txt"))
    }

    fn parse_err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn regions_pages_are_listed_in_page_order_wherever_they_are() {
        let r = parse(EXCERPT).unwrap();
        assert_eq!(
            r.pages("generic/net/tx/data/client/client1").unwrap(),
            [
                Page {
                    addr: 0x8fd0_0000,
                    size: 4096
                },
                Page {
                    addr: 0x8fd0_1000,
                    size: 4096
                }
            ]
        );
        // Out of order in the file, and not contiguous.
        let active: Vec<u64> = r
            .pages("generic/net/queue/client0_net_copier/client0/active")
            .unwrap()
            .iter()
            .map(|p| p.addr)
            .collect();
        assert_eq!(active, [0x641d_4000, 0x641d_5000, 0x641a_0000]);
        let ram = r.pages("guest_ram").unwrap();
        assert_eq!(ram.len(), 2);
        assert_eq!(
            ram[1],
            Page {
                addr: 0x9020_0000,
                size: 2 << 20
            }
        );
        // Stacks and other objects are no memory regions.
        assert_eq!(
            r.regions().collect::<Vec<_>>(),
            [
                "generic/net/queue/client0_net_copier/client0/active",
                "generic/net/tx/data/client/client1",
                "gic_vcpu",
                "guest_ram"
            ]
        );
        assert_eq!(r.pages("client0_stack"), None);
        assert_eq!(r.pages("netvm/stats/vmm"), None);
    }

    #[test]
    fn objects_outside_the_section_are_not_read() {
        let text = "# TCB Details\n\t0 - Page(4 KiB): 'frame_mr_x_000000000' @ 0x1000\n\
                    # Kernel Objects Details: ID, Type, Name, Physical Address\n\
                    \t1 - Page(4 KiB): 'frame_mr_y_000000000' @ 0x2000\n\
                    # Later Section\n\tanything: goes\n";
        let r = parse(text).unwrap();
        assert_eq!(r.regions().collect::<Vec<_>>(), ["y"]);
    }

    #[test]
    fn bad_reports_are_refused_with_the_line() {
        let head = "# Kernel Objects Details: ID, Type, Name, Physical Address\n";
        let cases = [
            ("\tgarbage\n", ":2: expected \"<id> - <type>"),
            ("\tx - Page(4 KiB): 'frame_mr_a_0' @ 0x1000\n", ":2: object id \"x\""),
            ("\t1 - Page(4 KiB): 'frame_mr_a_0' @ 4096\n", ":2: \"4096\" is not a 0x<hex>"),
            ("\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x\n", ":2: \"0x\" is not"),
            (
                "\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x1ffffffffffffffff\n",
                ":2: \"0x1ffffffffffffffff\"",
            ),
            ("\t1 - Page(3 KiB): 'frame_mr_a_0' @ 0x1000\n", ":2: page size \"3 KiB\""),
            ("\t1 - Page(4 kB): 'frame_mr_a_0' @ 0x1000\n", ":2: page size \"4 kB\""),
            ("\t1 - Page(4 KiB: 'frame_mr_a_0' @ 0x1000\n", ":2: page size \"\""),
            ("\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x1800\n", ":2: page 'frame_mr_a_0' at 0x1800 is not aligned"),
            ("\t1 - Page(4 KiB): 'frame_mr_a_x1' @ 0x1000\n", ":2: page 'frame_mr_a_x1': 'x1' is not a page index"),
            ("\t1 - Page(4 KiB): 'frame_mr_nounderscore' @ 0x1000\n", "has no _<page index>"),
            ("\t1 - Page(4 KiB): 'frame_mr__0' @ 0x1000\n", ":2: page 'frame_mr__0' has no _<page index>"),
            ("\t1 - Page(4 KiB): 'frame_mr_a_+1' @ 0x1000\n", "'+1' is not a page index"),
            ("\t1 - Page(4 KiB): '' @ 0x1000\n", ":2: an object without a name"),
            (
                "\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x1000\n\t2 - Page(4 KiB): 'frame_mr_a_0' @ 0x2000\n",
                ":3: region 'a': page 0 listed twice",
            ),
            (
                "\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x1000\n\t2 - Page(4 KiB): 'frame_mr_a_2' @ 0x2000\n",
                ":3: region 'a': page 1 is missing",
            ),
            ("\t2 - Page(4 KiB): 'frame_mr_a_1' @ 0x2000\n", ":2: region 'a': page 0 is missing"),
            (
                "\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x1000\n\t2 - Page(2 MiB): 'frame_mr_a_1' @ 0x200000\n",
                ":3: region 'a': page 1 is 0x200000 bytes, page 0 0x1000",
            ),
            (
                "\t1 - Page(4 KiB): 'frame_mr_a_0' @ 0x1000\n# Kernel Objects Details: again\n",
                ":3: a second",
            ),
        ];
        for (body, want) in cases {
            let got = parse_err(&format!("{head}{body}"));
            assert!(got.starts_with("build/report.txt:"), "{got}");
            assert!(got.contains(want), "{body:?}: {got}");
        }
        let got = parse_err("# TCB Details\n\t- TCB: 'tcb_vmm'\n");
        assert!(
            got.contains("no \"# Kernel Objects Details\" section"),
            "{got}"
        );
        assert!(parse_err("").contains("build/report.txt: no"));
        // Neither binary junk nor multi-byte text makes it panic.
        let junk = format!("{head}\t1 - é: '\u{0}' @ 0xé\n");
        assert!(parse_err(&junk).contains(":2:"));
        let long = format!("{head}{}\n", "é".repeat(200));
        assert!(parse_err(&long).contains(":2: expected"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Report::read(Path::new("/nonexistent/netvm/report.txt")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/netvm/report.txt: "),
            "{err}"
        );
    }
}
