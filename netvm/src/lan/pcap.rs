//! Reading the switch's capture back: frames counted by which node sent them and which node
//! they were for, by the client MACs of [`netvm_api::lan`].

use std::collections::BTreeMap;
use std::path::Path;

/// One end of a frame: a node (by its client MAC), broadcast / multicast, or something else
/// on the LAN (the host side's port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// A client MAC of this node.
    Node(u8),
    /// Broadcast or multicast.
    Group,
    /// Any other MAC (the host side).
    Other,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Node(n) => write!(f, "node {n}"),
            End::Group => f.write_str("broadcast"),
            End::Other => f.write_str("host"),
        }
    }
}

fn end_of(mac: [u8; 6]) -> End {
    if let Some((node, _)) = netvm_api::lan::node_of_mac(mac) {
        End::Node(node)
    } else if mac[0] & 1 == 1 {
        End::Group
    } else {
        End::Other
    }
}

/// Frames per (source, destination) of one capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// (from, to) → frames.
    pub pairs: BTreeMap<(End, End), u64>,
    /// Every frame in the file.
    pub total: u64,
}

impl FrameCounts {
    /// Counts the Ethernet frames of `frames` (shorter ones count only in `total`).
    pub fn of_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> FrameCounts {
        let mut counts = FrameCounts::default();
        frames.into_iter().for_each(|f| counts.add(f));
        counts
    }

    /// Counts one frame (captured, possibly truncated).
    pub fn add(&mut self, frame: &[u8]) {
        self.total += 1;
        if let (Ok(dst), Ok(src)) = (
            <[u8; 6]>::try_from(frame.get(0..6).unwrap_or_default()),
            <[u8; 6]>::try_from(frame.get(6..12).unwrap_or_default()),
        ) {
            *self.pairs.entry((end_of(src), end_of(dst))).or_default() += 1;
        }
    }

    /// Reads a pcap file (Ethernet link type) and counts its frames.
    pub fn read(path: &Path) -> Result<FrameCounts, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(file))
            .map_err(|e| format!("{}: not a pcap file: {e}", path.display()))?;
        if reader.header().datalink != pcap_file::DataLink::ETHERNET {
            return Err(format!(
                "{}: link type {:?}, not Ethernet",
                path.display(),
                reader.header().datalink
            ));
        }
        let mut counts = FrameCounts::default();
        // Raw packets: pcap-file 2.0's checked ones refuse a frame longer than the snap length,
        // which is every large frame of a capture that keeps only each frame's start.
        while let Some(packet) = reader.next_raw_packet() {
            let packet = packet.map_err(|e| format!("{}: {e}", path.display()))?;
            counts.add(&packet.data);
        }
        Ok(counts)
    }

    /// Frames that node `n` sent or that were sent to it.
    pub fn of_node(&self, n: u8) -> u64 {
        self.pairs
            .iter()
            .filter(|((a, b), _)| *a == End::Node(n) || *b == End::Node(n))
            .map(|(_, c)| c)
            .sum()
    }

    /// Frames from `a` to `b`.
    pub fn between(&self, a: End, b: End) -> u64 {
        self.pairs.get(&(a, b)).copied().unwrap_or(0)
    }

    /// One line per (from, to) pair.
    pub fn render(&self) -> String {
        let mut out = format!("{} frames\n", self.total);
        for ((a, b), c) in &self.pairs {
            out.push_str(&format!("  {a:>10} -> {b:<10} {c:>8}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_by_node_pair() {
        let node = |n: u8| netvm_api::lan::client_mac(n, 1).unwrap();
        let host = [0x02, 0, 0, 0, 0, 1];
        let frame = |dst: [u8; 6], src: [u8; 6]| [&dst[..], &src[..], &[0x08, 0x00]].concat();
        let frames = [
            frame(node(1), host),
            frame(host, node(1)),
            frame(node(2), node(0)),
            frame([0xff; 6], node(2)),
            vec![1, 2, 3],
        ];
        let c = FrameCounts::of_frames(frames.iter().map(Vec::as_slice));
        assert_eq!(c.total, 5);
        assert_eq!(c.between(End::Other, End::Node(1)), 1);
        assert_eq!(c.between(End::Node(1), End::Other), 1);
        assert_eq!(c.between(End::Node(0), End::Node(2)), 1);
        assert_eq!(c.between(End::Node(2), End::Group), 1);
        assert_eq!(c.of_node(2), 2);
        assert_eq!(c.of_node(3), 0);
        assert!(c.render().contains("node 0 -> node 2"), "{}", c.render());
    }

    #[test]
    fn a_file_that_is_not_a_pcap_is_an_error() {
        let path = std::env::temp_dir().join(format!("netvm-lan-notpcap-{}", std::process::id()));
        std::fs::write(&path, b"not a capture").unwrap();
        assert!(FrameCounts::read(&path).unwrap_err().contains("not a pcap"));
        let _ = std::fs::remove_file(&path);
        assert!(FrameCounts::read(&path).is_err());
    }
}
