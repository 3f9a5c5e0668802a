//! smoltcp's [`Device`] over a [`NetDevice`].
//!
//! Receiving copies the frame into the device's private RX buffer, returns the sDDF buffer to the
//! copier at once, runs the [`filter`], and lends the copy to smoltcp; the paired
//! TX token (for ARP replies, ICMP echo replies, TCP ACKs) takes a TX buffer only when smoltcp
//! really sends. [`Device::transmit`] offers a token only while a TX buffer is free, so smoltcp
//! keeps unsent data in its sockets instead of losing it; a reply token used when no buffer is free
//! drops its frame (counted as `tx_no_buffer`), as lib_sddf_lwip does.
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::device::Tx;
use crate::{filter, NetDevice, MTU};

/// Largest Ethernet frame (without FCS) smoltcp may build: MTU plus the 14-byte header.
pub const ETHERNET_FRAME_MAX: usize = MTU as usize + 14;

/// A good number of frames to take per batch before letting the stack answer (see
/// [`NetDevice::start_rx_batch`]): large enough to amortise a poll, small enough that replies go
/// out before the TX and socket buffers fill.
pub const DEFAULT_RX_BUDGET: usize = 64;

/// A received frame, already copied out of shared memory and checked.
pub struct RxToken<'r> {
    frame: &'r [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// The right to send one frame.
pub struct TxToken<'r, 'a> {
    tx: &'r mut Tx<'a>,
}

impl phy::TxToken for TxToken<'_, '_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never builds a frame beyond the MTU we advertise (it drops over-MTU IPv4
        // packets before asking for a buffer), and that fits a 2048-byte buffer.
        assert!(
            len <= ETHERNET_FRAME_MAX,
            "smoltcp asked for a {len}-byte frame, beyond the advertised MTU"
        );
        let r = f(&mut self.tx.scratch[..len]);
        if len == 0 {
            return r;
        }
        if self.tx.reserve() {
            // A queue error is counted by `send_scratch`; the frame is lost like any dropped frame.
            let _ = self.tx.send_scratch(len);
        } else {
            self.tx.c.tx_no_buffer += 1;
        }
        r
    }
}

impl<'a> Device for NetDevice<'a> {
    type RxToken<'r>
        = RxToken<'r>
    where
        Self: 'r;
    type TxToken<'r>
        = TxToken<'r, 'a>
    where
        Self: 'r;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let len = loop {
            if self.rx_left == 0 {
                return None;
            }
            let len = self.rx.take_into_scratch()?;
            self.rx_left -= 1;
            match filter::check(&self.rx.scratch[..len]) {
                Ok(()) => break len,
                Err(m) => self.rx.count(m),
            }
        };
        Some((
            RxToken {
                frame: &self.rx.scratch[..len],
            },
            TxToken { tx: &mut self.tx },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.reserve() {
            Some(TxToken { tx: &mut self.tx })
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut checksum = ChecksumCapabilities::default();
        // Verified by the filter on receive; computed here on transmit (QEMU's virtio-net and
        // veth offer no offload to sDDF).
        checksum.ipv4 = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Both;
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETHERNET_FRAME_MAX;
        caps.checksum = checksum;
        caps
    }
}
