//! The Solo5 shape of the device API: what a client PD (or a unikernel ported from Solo5 or
//! MirageOS) calls to use its network device. Solo5's `net` calls map to this crate as follows:
//!
//! | Solo5 | net-client |
//! |---|---|
//! | `solo5_net_acquire(name, &handle, &info)` | [`Devices::acquire`]`(name)` → `(&mut NetDevice, NetInfo)` |
//! | `struct solo5_net_info { mac_address, mtu }` | [`NetInfo`] `{ mac, mtu }`: the MAC from the PD's `.net_client_config`, MTU [`MTU`] = 1500 |
//! | `solo5_net_read(h, buf, size, &read_size)` | [`NetDevice::read`]`(buf)` → `Ok(read_size)` |
//! | `solo5_net_write(h, buf, size)` | [`NetDevice::write`]`(frame)` |
//! | (MirageOS `Netif.write ~size fillf`) | [`NetDevice::write_into`]`(len, fill)`: fill the frame in place, no caller buffer |
//! | `SOLO5_R_AGAIN` / `SOLO5_R_EINVAL` / `SOLO5_R_EUNSPEC` | [`NetError::Again`] / [`NetError::Invalid`] / [`NetError::Unspecified`] |
//! | `solo5_yield` until a handle is ready | wait for the copier's notification, then [`NetDevice::rearm_rx`] |
//!
//! **Names.** sDDF's `.net_client_config` carries no device name, so a device is named by the
//! client it belongs to: the PD's name in the system description (`echo0`, `client1`), which the
//! PD knows. A PD lists the devices it was given in a [`Devices`] table (one, today) and acquires
//! them by that name, each at most once, as Solo5 allows.
//!
//! **Sizes.** A frame is at most [`ETHERNET_FRAME_MAX`] = 1514 bytes (MTU plus the Ethernet
//! header, no FCS); each sDDF buffer is 2048 bytes ([`sddf::NET_BUFFER_SIZE`]), so a frame always
//! fits one buffer. As in Solo5, `read` wants a buffer of at least 1514 bytes and `write` takes
//! 1..=1514 bytes.
//!
//! ```
//! use net_client::mock::MockMemory;
//! use net_client::solo5::{Devices, NamedDevice, NetError};
//!
//! let mem = MockMemory::new(8, 8, [0x52, 0x54, 1, 0, 0, 0x10]);
//! let (dev, mut peer) = mem.connect().unwrap();
//! let mut slots = [NamedDevice::new("echo0", dev)];
//! let mut devices = Devices::new(&mut slots);
//! let (net, info) = devices.acquire("echo0").unwrap();
//! assert_eq!((info.mac, info.mtu), ([0x52, 0x54, 1, 0, 0, 0x10], 1500));
//! let mut buf = [0u8; 1514];
//! assert_eq!(net.read(&mut buf), Err(NetError::Again));   // nothing arrived yet
//! assert!(peer.inject(&[0xab; 60]));                       // the copier delivers a frame
//! assert_eq!(net.read(&mut buf), Ok(60));
//! net.write(&buf[..60]).unwrap();                          // and it goes back out
//! assert_eq!(peer.take_frame().unwrap(), [0xab; 60]);
//! ```

#[cfg(doc)]
use crate::MTU;
use crate::{NetDevice, NetInfo, TxError, ETHERNET_FRAME_MAX};

/// Why a read or write did nothing (Solo5's result codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// Nothing to read, or no TX buffer free: try again after the next notification.
    Again,
    /// The buffer or frame size is outside what the device takes (a read buffer below 1514 bytes,
    /// a frame of 0 or more than 1514 bytes), or a received frame did not fit `buf`.
    Invalid,
    /// A queue refused the operation (its indices are corrupt, or it is full).
    Unspecified,
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NetError::Again => "net: try again",
            NetError::Invalid => "net: size outside 1..=1514 bytes",
            NetError::Unspecified => "net: a queue refused the operation",
        })
    }
}

impl From<TxError> for NetError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::NoBuffer => NetError::Again,
            TxError::Length(_) => NetError::Invalid,
            TxError::Queue(_) => NetError::Unspecified,
        }
    }
}

impl NetDevice<'_> {
    /// Copies the next received frame into `buf` and returns its length (`solo5_net_read`).
    /// [`NetError::Again`] when none is waiting; [`NetError::Invalid`] when `buf` is shorter
    /// than [`ETHERNET_FRAME_MAX`] (nothing is taken), or when the frame is longer than `buf`
    /// (only a misbehaving peer sends one: it is dropped).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.len() < ETHERNET_FRAME_MAX {
            return Err(NetError::Invalid);
        }
        match self.receive(|frame| frame.copy_to(buf)) {
            None => Err(NetError::Again),
            Some(None) => Err(NetError::Invalid),
            Some(Some(len)) => Ok(len),
        }
    }

    /// Queues a copy of `frame` for transmission (`solo5_net_write`); it is published to
    /// virt_tx by the next [`NetDevice::notify`]. [`NetError::Invalid`] for 0 or more than
    /// [`ETHERNET_FRAME_MAX`] bytes, [`NetError::Again`] when no TX buffer is free (virt_tx
    /// has been asked to signal when one comes back).
    pub fn write(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.is_empty() || frame.len() > ETHERNET_FRAME_MAX {
            return Err(NetError::Invalid);
        }
        self.write_into(frame.len(), |dst| dst.copy_from_slice(frame))?;
        Ok(())
    }
}

/// One device a PD was given, and the name it is acquired by.
pub struct NamedDevice<'a> {
    name: &'a str,
    dev: NetDevice<'a>,
    acquired: bool,
}

impl<'a> NamedDevice<'a> {
    /// Names `dev` (by its client PD's name).
    pub fn new(name: &'a str, dev: NetDevice<'a>) -> Self {
        NamedDevice {
            name,
            dev,
            acquired: false,
        }
    }

    /// The name.
    pub fn name(&self) -> &'a str {
        self.name
    }
}

/// Why [`Devices::acquire`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError<'n> {
    /// No device has this name.
    NotFound(&'n str),
    /// The device was acquired already.
    InUse(&'n str),
}

impl core::fmt::Display for AcquireError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcquireError::NotFound(n) => write!(f, "net device {n:?}: no such device in this PD"),
            AcquireError::InUse(n) => write!(f, "net device {n:?}: already acquired"),
        }
    }
}

/// The devices of a PD, acquired by name (`solo5_net_acquire`).
pub struct Devices<'s, 'a> {
    slots: &'s mut [NamedDevice<'a>],
}

impl<'s, 'a> Devices<'s, 'a> {
    /// The table over `slots`.
    pub fn new(slots: &'s mut [NamedDevice<'a>]) -> Self {
        Devices { slots }
    }

    /// The device named `name` and its config, once.
    pub fn acquire<'n>(
        &mut self,
        name: &'n str,
    ) -> Result<(&mut NetDevice<'a>, NetInfo), AcquireError<'n>> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or(AcquireError::NotFound(name))?;
        if slot.acquired {
            return Err(AcquireError::InUse(name));
        }
        slot.acquired = true;
        let info = slot.dev.info();
        Ok((&mut slot.dev, info))
    }
}
