//! Variants of the repository's `system.xml` for tests.

/// The 64-entry-queue variant of `system_xml` (the text of a system description): every
/// sDDF net queue region (`…/net/queue/…`) shrunk to one 4 KiB page, which holds a 64-entry
/// queue (8 + 16 × 64 bytes) but would hold 255 if anyone inferred capacities from sizes. The
/// buffer counts that go with it are [`QUEUES_64_BUFFERS`]. Panics unless it shrank at least
/// the 8 queue regions of a one-client system.
pub fn with_64_entry_queue_regions(system_xml: &str) -> String {
    let mut shrunk = 0;
    let lines: Vec<String> = system_xml
        .lines()
        .map(|l| match l.split_once(" size=\"") {
            Some((head, tail)) if l.contains("<memory_region") && l.contains("/net/queue/") => {
                let (_, rest) = tail.split_once('"').expect("size attribute ends");
                shrunk += 1;
                format!("{head} size=\"0x1000\"{rest}")
            }
            _ => l.to_owned(),
        })
        .collect();
    assert!(shrunk >= 8, "only {shrunk} queue regions in the system");
    lines.join("\n")
}

/// The buffer counts of the 64-entry system (`sdf::net::BufferCounts` syntax): 64 RX DMA
/// buffers, 64 RX and 32 TX buffers per client, so two clients make a 64-entry driver TX queue.
pub const QUEUES_64_BUFFERS: &str = "rx=64,client_rx=64,client_tx=32";
