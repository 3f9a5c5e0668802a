//! Giving the driver the CPU before the kernel's receive processing (`--driver-first`).
//!
//! On the driver VM's one vCPU, the kernel's receive path (the NIC's NAPI poll, run in softirq
//! context) outranks every task. Offered more than the driver can move, the kernel keeps taking
//! frames off the NIC, pays its whole receive path for each, and the packet ring then drops
//! them: the work for a dropped frame is spent before the drop. Moving NAPI into a kernel
//! thread (`/sys/class/net/<iface>/threaded`) and running the driver `SCHED_FIFO` above it
//! reverses that: the kernel receives only while the driver sleeps, i.e. has taken everything
//! already received, and what neither can take stays in the NIC's ring until the device drops it
//! (on QEMU: before the guest sees it).
//!
//! It does not mix with busy polling (`--busy-poll-us`): a `SCHED_FIFO` driver that polls keeps
//! the NAPI thread, the only source of its frames, from running until its poll time is up, so
//! the driver refuses the combination.

/// `SCHED_FIFO` priority the driver runs at (the lowest real-time one: above every normal task,
/// including the NAPI thread, below the kernel's own real-time threads).
pub const DRIVER_FIFO_PRIORITY: i32 = 1;

/// Moves `iface`'s NAPI into a kernel thread and makes the calling thread `SCHED_FIFO`.
///
/// Fails, saying why, when the interface has no NAPI of its own to move (a veth without GRO,
/// whose frames are received in the sender's context): there the option cannot do what it says.
pub fn driver_first(iface: &str) -> Result<(), String> {
    let path = format!("/sys/class/net/{iface}/threaded");
    std::fs::write(&path, "1").map_err(|e| {
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            format!(
                "--driver-first: {iface} has no NAPI instance to move into a thread (writing 1 \
                 to {path}: {e}); the option is for NIC drivers with NAPI, such as virtio_net"
            )
        } else {
            format!("--driver-first: writing 1 to {path}: {e}")
        }
    })?;
    crate::sys::set_fifo(DRIVER_FIFO_PRIORITY)
        .map_err(|e| format!("--driver-first: SCHED_FIFO priority {DRIVER_FIFO_PRIORITY}: {e}"))
}
