//! The VMM's event counters.

netvm_api::counters! {
/// Event counts, published in the VMM PD's stats region (`netvm stats`) and printed when the
/// guest stops. Doorbells and vIRQ routes are split by their names (the device-tree node names
/// `rx_fault`, `tx_fault`, `rx_irq`, `tx_irq`, `virtio-net`, `uart`); anything else lands in
/// the `other_*` counters.
pub struct Counters {
    /// Faults of the vCPU (every kind, handled or not).
    pub faults: u64,
    /// Notifications handled (one per channel of a batch; unknown channels included).
    pub notifications: u64,
    /// Stores to the `rx_fault` doorbell (the driver tells virt_rx: RX queues moved).
    pub rx_fault_doorbells: u64,
    /// Stores to the `tx_fault` doorbell (the driver tells virt_tx: TX queues moved).
    pub tx_fault_doorbells: u64,
    /// Stores to any other doorbell page.
    pub other_doorbells: u64,
    /// `rx_irq` vIRQs raised by virt_rx's notifications.
    pub rx_irq_injections: u64,
    /// ... of which were already pending (merged with the previous edge).
    pub rx_irq_coalesced: u64,
    /// `tx_irq` vIRQs raised by virt_tx's notifications.
    pub tx_irq_injections: u64,
    /// ... of which were already pending.
    pub tx_irq_coalesced: u64,
    /// Passed-through virtio-net IRQs.
    pub virtio_net_injections: u64,
    /// ... of which were already pending.
    pub virtio_net_coalesced: u64,
    /// Passed-through PL011 IRQs.
    pub uart_injections: u64,
    /// ... of which were already pending.
    pub uart_coalesced: u64,
    /// vIRQs of any other route.
    pub other_injections: u64,
    /// ... of which were already pending.
    pub other_coalesced: u64,
    /// Physical IRQs acknowledged at the kernel because the guest EOI'd their vIRQ.
    pub passthrough_acks: u64,
    /// ... of which waited for a later activation of the VMM (see the module docs).
    pub passthrough_acks_deferred: u64,
    /// VGIC maintenance faults (the guest EOI'd a list register).
    pub maintenance_faults: u64,
    /// VPPI events (the guest's virtual timer fired).
    pub vppi_events: u64,
    /// WFI/WFE traps.
    pub wfx_traps: u64,
    /// WFIs (and CPU_SUSPENDs) that suspended the vCPU.
    pub wfi_blocks: u64,
    /// Wake-up timer notifications (a waiting guest's virtual timer deadline passed).
    pub wakeups: u64,
    /// Distributor reads.
    pub gicd_reads: u64,
    /// Distributor writes.
    pub gicd_writes: u64,
    /// PSCI calls (SMC and HVC).
    pub psci_calls: u64,
    /// Faults the VMM could not handle (each stops the guest).
    pub unexpected_faults: u64,
    /// Notifications on channels that are not the VMM's.
    pub unknown_notifications: u64,
    /// Times the guest was booted again (after a crash or a reset it asked for).
    pub guest_restarts: u64,
    /// EOI actions a reset guest still owed, run at the restart (IRQs it never EOI'd).
    pub restart_acks: u64,
    /// Guests the watchdog stopped (they had stopped taking interrupts).
    pub watchdog_expiries: u64,
}
}

impl Counters {
    /// The (injections, coalesced) pair of the vIRQ route named `name`.
    pub(super) fn route(&mut self, name: &str) -> (&mut u64, &mut u64) {
        match name {
            "rx_irq" => (&mut self.rx_irq_injections, &mut self.rx_irq_coalesced),
            "tx_irq" => (&mut self.tx_irq_injections, &mut self.tx_irq_coalesced),
            "virtio-net" => (
                &mut self.virtio_net_injections,
                &mut self.virtio_net_coalesced,
            ),
            "uart" => (&mut self.uart_injections, &mut self.uart_coalesced),
            _ => (&mut self.other_injections, &mut self.other_coalesced),
        }
    }

    /// The doorbell counter of the doorbell named `name`.
    pub(super) fn doorbell(&mut self, name: &str) -> &mut u64 {
        match name {
            "rx_fault" => &mut self.rx_fault_doorbells,
            "tx_fault" => &mut self.tx_fault_doorbells,
            _ => &mut self.other_doorbells,
        }
    }
}
