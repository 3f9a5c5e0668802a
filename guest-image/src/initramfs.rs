//! The initramfs: a gzip'd cpio (newc) archive written in Rust, deterministic (every mtime 0,
//! inode numbers in entry order) so that its hash only changes when its contents do.
//!
//! Layout: `/init` (our static PID 1), `/bin/uio-driver`, `/lib/modules/<name>.ko`,
//! `/lib/modules/order` (module names in load order, one per line), the mount points, and a
//! `/dev/console` node so the kernel can give `/init` its console before devtmpfs is mounted.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Where `/init` reads the module load order.
pub const MODULE_ORDER: &str = "lib/modules/order";
/// Where the uio-driver binary goes.
pub const UIO_DRIVER: &str = "bin/uio-driver";
/// Where the reference mode's kernel echo binary goes.
pub const KERNEL_ECHO: &str = "bin/kernel-echo";

/// One archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir(String),
    /// A regular file with its permission bits.
    File {
        /// Path without leading `/`.
        path: String,
        /// Permission bits (0o755, 0o644).
        mode: u32,
        /// Contents.
        data: Vec<u8>,
    },
    /// A character device.
    CharDev {
        /// Path without leading `/`.
        path: String,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// The standard entries around the given files: directories and `/dev/console`.
pub fn skeleton() -> Vec<Entry> {
    let mut v: Vec<Entry> = [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "bin",
        "lib",
        "lib/modules",
    ]
    .into_iter()
    .map(|d| Entry::Dir(d.into()))
    .collect();
    v.push(Entry::CharDev {
        path: "dev/console".into(),
        major: 5,
        minor: 1,
    });
    v
}

/// Writes `entries` as a gzip'd newc archive.
pub fn write(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut w = GzEncoder::new(Vec::new(), Compression::best());
    for (i, e) in entries.iter().enumerate() {
        let ino = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let b = |name: &str| {
            cpio::newc::Builder::new(name)
                .ino(ino)
                .uid(0)
                .gid(0)
                .mtime(0)
        };
        match e {
            Entry::Dir(path) => {
                b(path)
                    .mode(S_IFDIR | 0o755)
                    .nlink(2)
                    .write(&mut w, 0)
                    .finish()?;
            }
            Entry::File { path, mode, data } => {
                let size = u32::try_from(data.len()).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{path} is over 4 GiB"),
                    )
                })?;
                let mut f = b(path).mode(S_IFREG | mode).nlink(1).write(&mut w, size);
                f.write_all(data)?;
                f.finish()?;
            }
            Entry::CharDev { path, major, minor } => {
                b(path)
                    .mode(S_IFCHR | 0o600)
                    .nlink(1)
                    .rdev_major(*major)
                    .rdev_minor(*minor)
                    .write(&mut w, 0)
                    .finish()?;
            }
        }
    }
    cpio::newc::trailer(&mut w)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn archive_round_trips_and_is_deterministic() {
        let mut entries = skeleton();
        entries.push(Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: b"\x7fELF...".to_vec(),
        });
        let a = write(&entries).unwrap();
        assert_eq!(a, write(&entries).unwrap());
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut raw)
            .unwrap();
        let mut rest = &raw[..];
        let mut seen = Vec::new();
        loop {
            let r = cpio::newc::Reader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            seen.push((
                e.name().to_string(),
                e.mode(),
                e.rdev_major(),
                e.file_size(),
            ));
            rest = r.finish().unwrap();
        }
        assert!(seen.contains(&("dev/console".into(), S_IFCHR | 0o600, 5, 0)));
        assert!(seen.contains(&("init".into(), S_IFREG | 0o755, 0, 7)));
        assert_eq!(seen.len(), entries.len());
    }
}
