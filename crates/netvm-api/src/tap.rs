//! Frame taps (netvm's; sDDF has none): a component shows each frame it passes on to a [`Tap`].
//! Taps only read the frame; they never change what the component does.
//!
//! What crosses a boundary is the contract between the runner, the PDs and the user: the
//! environment variable [`PCAP_ENV`] by which `netvm run --pcap DIR` asks the PDs for capture,
//! and the file names ([`TapPoint::write_stem`]) they write. The pcap writer itself is runtime
//! (files, clocks) and lives in `pd-support` (`PcapTap`).
use sddf::shm::Region;

/// The environment variable naming the pcap directory of host-mode PDs.
pub const PCAP_ENV: &str = "NETVM_PCAP_DIR";

/// Where a frame was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TapPoint {
    /// Received from the driver (virt_rx).
    DriverRx,
    /// Handed to the driver for transmission (virt_tx).
    DriverTx,
    /// Delivered towards client `i` (virt_rx; `i` is the client's index in its config).
    ClientRx(u8),
    /// Taken from client `i` for transmission (virt_tx).
    ClientTx(u8),
}

impl TapPoint {
    /// The file stem host mode uses: `driver-rx`, `driver-tx`, `client<i>-rx`, `client<i>-tx`.
    pub fn write_stem(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        match self {
            TapPoint::DriverRx => out.write_str("driver-rx"),
            TapPoint::DriverTx => out.write_str("driver-tx"),
            TapPoint::ClientRx(i) => write!(out, "client{i}-rx"),
            TapPoint::ClientTx(i) => write!(out, "client{i}-tx"),
        }
    }
}

/// Receives the frames a component passes on.
pub trait Tap {
    /// `len` bytes at `offset` of `data` passed `point`.
    fn frame(&mut self, point: TapPoint, data: &Region<'_>, offset: usize, len: usize);
    /// The component finished a batch (a good moment to write buffered frames out).
    fn flush(&mut self);
}
