//! [`PcapTap`]: host mode's frame capture (`netvm run --pcap DIR`), one pcap file per
//! [`TapPoint`] in the directory the runner names in [`netvm_api::tap::PCAP_ENV`].
use netvm_api::tap::{Tap, TapPoint};
use sddf::shm::Region;

/// A [`Tap`] writing one pcap file per tap point into a directory (Ethernet link type, microsecond
/// timestamps; read by tcpdump, tshark and Wireshark). Every file is flushed after each batch, so
/// a component killed outright leaves complete records behind.
pub struct PcapTap {
    files: std::vec::Vec<(
        TapPoint,
        pcap_file::pcap::PcapWriter<SharedFile>,
        SharedFile,
    )>,
    buf: std::vec::Vec<u8>,
}

/// A buffered file that the pcap writer and the tap (to flush it) both hold.
#[derive(Clone)]
struct SharedFile(std::rc::Rc<core::cell::RefCell<std::io::BufWriter<std::fs::File>>>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl PcapTap {
    /// Creates (truncates) `<dir>/<stem>.pcap` for each point (see [`TapPoint::write_stem`]).
    pub fn create(dir: &std::path::Path, points: &[TapPoint]) -> std::io::Result<PcapTap> {
        use std::string::String;
        let mut files = std::vec::Vec::new();
        for &point in points {
            let mut stem = String::new();
            let _ = point.write_stem(&mut stem);
            let path = dir.join(stem + ".pcap");
            let file = std::fs::File::create(&path).map_err(|e| {
                std::io::Error::new(e.kind(), std::format!("{}: {e}", path.display()))
            })?;
            let header = pcap_file::pcap::PcapHeader {
                datalink: pcap_file::DataLink::ETHERNET,
                snaplen: sddf::NET_BUFFER_SIZE as u32,
                ..Default::default()
            };
            let shared = SharedFile(std::rc::Rc::new(core::cell::RefCell::new(
                std::io::BufWriter::new(file),
            )));
            let writer = pcap_file::pcap::PcapWriter::with_header(shared.clone(), header)
                .map_err(|e| std::io::Error::other(std::format!("{}: {e}", path.display())))?;
            files.push((point, writer, shared.clone()));
            // The header now, so that a point that never sees a frame still has a valid file.
            std::io::Write::flush(&mut { shared })?;
        }
        Ok(PcapTap {
            files,
            buf: std::vec![0; sddf::NET_BUFFER_SIZE],
        })
    }
}

impl Tap for PcapTap {
    fn frame(&mut self, point: TapPoint, data: &Region<'_>, offset: usize, len: usize) {
        let len = len.min(self.buf.len());
        if data.read(offset, &mut self.buf[..len]).is_err() {
            return;
        }
        let Some((_, writer, _)) = self.files.iter_mut().find(|(p, _, _)| *p == point) else {
            return;
        };
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let packet = pcap_file::pcap::PcapPacket::new(ts, len as u32, &self.buf[..len]);
        // A full disk loses capture, never traffic.
        let _ = writer.write_packet(&packet);
    }

    fn flush(&mut self) {
        use std::io::Write;
        for (_, _, file) in &mut self.files {
            let _ = file.flush();
        }
    }
}
