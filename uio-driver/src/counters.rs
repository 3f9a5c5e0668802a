//! Per-driver counters, printed on SIGUSR1 and at exit.
use std::fmt;

use netvm_api::stats::{StatsError, StatsWriter};

netvm_api::counters! {
    /// What the NIC itself counts (published as the `nic` group beside the driver's).
    pub struct NicCounters {
        /// Frames the kernel dropped because the packet ring was full (the driver fell behind).
        pub rx_ring_drops: u64,
    }
}

impl NicCounters {
    /// Adds the drops `nic` counted since the last call (a system call for a packet socket).
    pub fn take_drops(&mut self, nic: &mut dyn crate::driver::Nic) {
        self.rx_ring_drops += nic.take_dropped().unwrap_or(0);
    }
}

/// The driver's stats page, the same in host mode's vmm page and in the driver VM's own
/// (`netvm_api::uio::STATS`): group `driver` ([`Counters`]), then group `nic` ([`NicCounters`]).
pub fn lay_out(w: &mut StatsWriter<'_>) -> Result<(), StatsError> {
    w.group::<Counters>(format_args!("driver"))?;
    w.group::<NicCounters>(format_args!("nic"))?;
    w.finish();
    Ok(())
}

/// Publishes `driver` and `nic` on a page laid out by [`lay_out`].
pub fn publish(w: &mut StatsWriter<'_>, driver: &Counters, nic: &NicCounters) {
    use netvm_api::stats::Counters as _;
    w.publish(driver.values().chain(nic.values()));
}

/// How many descriptors or frames one processing pass moved: count, total and largest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Passes that moved at least one item.
    pub batches: u64,
    /// Items moved over all passes.
    pub items: u64,
    /// Largest single pass.
    pub max: u64,
}

impl BatchStats {
    /// Records one pass of `n` items (empty passes are not batches).
    pub fn record(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.batches += 1;
        self.items += n;
        self.max = self.max.max(n);
    }
}

/// Everything the driver counts. Drops are split by reason so that a misbehaving peer and a
/// congested NIC can be told apart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames copied from the NIC into RX buffers and passed to virt_rx.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames from the NIC longer than an sDDF buffer (2048 bytes; GRO would make these).
    pub rx_drop_oversize: u64,
    /// Frames from the NIC that were truncated by the packet ring (snaplen < len).
    pub rx_drop_truncated: u64,
    /// Free RX descriptors from virt_rx whose offset is unaligned or outside `rx_data`
    /// (dropped: the driver cannot hand them back on the free queue it consumes).
    pub rx_bad_free_desc: u64,
    /// Times the RX queues showed impossible indices.
    pub rx_queue_misbehaviour: u64,
    /// Frames taken from virt_tx and handed to the NIC.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// TX descriptors with a length outside 1..=2048 (returned untouched).
    pub tx_bad_len: u64,
    /// TX descriptors naming a TX region that does not exist (returned untouched).
    pub tx_bad_oid: u64,
    /// TX descriptors with an unaligned or out-of-range offset (returned untouched).
    pub tx_bad_offset: u64,
    /// Frames the NIC refused (send errors other than "try again").
    pub tx_send_errors: u64,
    /// Times the TX queues showed impossible indices.
    pub tx_queue_misbehaviour: u64,
    /// Doorbells rung towards virt_rx.
    pub doorbells_rx: u64,
    /// Doorbells rung towards virt_tx.
    pub doorbells_tx: u64,
    /// Notifications received from virt_rx.
    pub irqs_rx: u64,
    /// Notifications received from virt_tx.
    pub irqs_tx: u64,
    /// RX frames per processing pass.
    pub rx_batch: BatchStats,
    /// TX frames per processing pass.
    pub tx_batch: BatchStats,
    /// Busy polls ([`crate::driver::Driver::set_busy_poll`]) that found work before their time
    /// was up (each one a sleep, and in the driver VM a WFI exit and a wake-up, saved).
    pub busy_poll_hits: u64,
    /// Busy polls that found nothing and went to sleep.
    pub busy_poll_misses: u64,
}

impl netvm_api::stats::Counters for Counters {
    const NAMES: &'static [&'static str] = &[
        "rx_frames",
        "rx_bytes",
        "rx_drop_oversize",
        "rx_drop_truncated",
        "rx_bad_free_desc",
        "rx_queue_misbehaviour",
        "tx_frames",
        "tx_bytes",
        "tx_bad_len",
        "tx_bad_oid",
        "tx_bad_offset",
        "tx_send_errors",
        "tx_queue_misbehaviour",
        "doorbells_rx",
        "doorbells_tx",
        "irqs_rx",
        "irqs_tx",
        "rx_batches",
        "rx_batch_max",
        "tx_batches",
        "tx_batch_max",
        "busy_poll_hits",
        "busy_poll_misses",
    ];

    fn values(&self) -> impl Iterator<Item = u64> {
        let c = self;
        [
            c.rx_frames,
            c.rx_bytes,
            c.rx_drop_oversize,
            c.rx_drop_truncated,
            c.rx_bad_free_desc,
            c.rx_queue_misbehaviour,
            c.tx_frames,
            c.tx_bytes,
            c.tx_bad_len,
            c.tx_bad_oid,
            c.tx_bad_offset,
            c.tx_send_errors,
            c.tx_queue_misbehaviour,
            c.doorbells_rx,
            c.doorbells_tx,
            c.irqs_rx,
            c.irqs_tx,
            c.rx_batch.batches,
            c.rx_batch.max,
            c.tx_batch.batches,
            c.tx_batch.max,
            c.busy_poll_hits,
            c.busy_poll_misses,
        ]
        .into_iter()
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use netvm_api::stats::Counters as _;
        for (i, (name, value)) in Self::NAMES.iter().zip(self.values()).enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}
