//! The UIO device names the guest driver looks for: the one place they are spelled (netvm's;
//! sDDF has no driver VM).
//!
//! Linux's `uio_pdrv_genirq` names each UIO device after its device-tree node (without the unit
//! address), so these are also the node names the guest image builder must give the UIO nodes.
//! Every device with memory has exactly one map, `map0`; the IRQ-only devices have none.
//!
//! | name | map | meaning |
//! |---|---|---|
//! | [`RX_FREE`] | sDDF queue | empty RX buffers, virt_rx -> driver |
//! | [`RX_ACTIVE`] | sDDF queue | received frames, driver -> virt_rx |
//! | [`RX_DATA`] | data region | the RX buffers (`offset` = byte offset in it) |
//! | [`TX_FREE`] | sDDF queue | sent buffers, driver -> virt_tx |
//! | [`TX_ACTIVE`] | sDDF queue | frames to send, virt_tx -> driver |
//! | `tx_data0` .. `tx_data<N-1>` (`tx_data`, feature `std`) | data region | client TX regions, `oid` = index |
//! | [`RX_FAULT`], [`TX_FAULT`] | doorbell page | unmapped in the VM: a 32-bit store there faults into the VMM, which notifies virt_rx / virt_tx |
//! | [`RX_IRQ`], [`TX_IRQ`] | none | readable when virt_rx / virt_tx notified the driver |
//! | [`STATS`] (optional) | one page | the driver's counters (`crate::stats` layout, component [`STATS_COMPONENT`]), for `netvm stats` |

/// Queue of free RX buffers (virt_rx -> driver).
pub const RX_FREE: &str = "rx_free";
/// Queue of received frames (driver -> virt_rx).
pub const RX_ACTIVE: &str = "rx_active";
/// The RX data region.
pub const RX_DATA: &str = "rx_data";
/// Queue of buffers the driver has sent (driver -> virt_tx).
pub const TX_FREE: &str = "tx_free";
/// Queue of frames to send (virt_tx -> driver).
pub const TX_ACTIVE: &str = "tx_active";
/// Prefix of the client TX data regions: `tx_data0`, `tx_data1`, ...
pub const TX_DATA_PREFIX: &str = "tx_data";
/// Doorbell page towards virt_rx.
pub const RX_FAULT: &str = "rx_fault";
/// Doorbell page towards virt_tx.
pub const TX_FAULT: &str = "tx_fault";
/// IRQ-only device raised when virt_rx notifies the driver.
pub const RX_IRQ: &str = "rx_irq";
/// IRQ-only device raised when virt_tx notifies the driver.
pub const TX_IRQ: &str = "tx_irq";

/// Optional: the page where the guest's driver publishes its counters (the `crate::stats`
/// layout), present when the VM maps the memory region `netvm/stats/<STATS_COMPONENT>`. On seL4
/// the guest's console is otherwise the only place they show; this page is found by `netvm
/// stats --qmp` like every PD's. Written by the untrusted guest: read as a claim.
pub const STATS: &str = "stats";
/// The component name on the [`STATS`] page, and so the `<pd>` part of its memory region's name
/// (`netvm/stats/driver_vm`).
pub const STATS_COMPONENT: &str = "driver_vm";

/// Largest number of client TX regions: `oid` is a 6-bit field.
pub const MAX_TX_REGIONS: usize = sddf::desc::MAX_OID as usize + 1;

/// The name of client TX data region `index` (its `oid`).
#[cfg(any(test, feature = "std"))]
pub fn tx_data(index: usize) -> std::string::String {
    std::format!("{TX_DATA_PREFIX}{index}")
}

/// Every fixed name (the `tx_data<i>` regions come on top), in the order the driver looks them up.
pub const FIXED: [&str; 9] = [
    RX_FREE, RX_ACTIVE, RX_DATA, TX_FREE, TX_ACTIVE, RX_FAULT, TX_FAULT, RX_IRQ, TX_IRQ,
];

/// The `/chosen` property of a driver VM's device tree that holds the driver's
/// `.net_driver_config` blob (written by the image tool, read by the guest's driver).
pub const DT_PROPERTY: &str = "netvm,net-driver-config";

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    #[test]
    fn tx_data_names_are_numbered_from_zero() {
        assert_eq!(tx_data(0), "tx_data0");
        assert_eq!(tx_data(63), "tx_data63");
    }

    #[test]
    fn names_fit_linux_and_sdfgen_limits() {
        // sdfgen: UIO names shorter than 32 characters and unique.
        let mut all: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
        all.extend((0..MAX_TX_REGIONS).map(tx_data));
        for n in &all {
            assert!(n.len() < 32, "{n}");
        }
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
    }
}
