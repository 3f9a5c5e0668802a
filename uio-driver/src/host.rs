//! A [`Platform`] over eventfds: the driver core in an ordinary Linux process whose virtualiser
//! side is another thread or process holding the other ends (tests, benchmarks, and the shape
//! host-mode glue can take when Microkit notifications are bridged to file descriptors).
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::driver::{Events, NicPoll, Platform};
use crate::sys;
use crate::uio::poll_with;

/// The driver's side: rings doorbells, waits for notifications.
pub struct EventFdPlatform {
    rx_doorbell: File,
    tx_doorbell: File,
    rx_notify: File,
    tx_notify: File,
}

/// The virtualisers' side of an [`EventFdPlatform`].
pub struct EventFdPeer {
    rx_doorbell: File,
    tx_doorbell: File,
    rx_notify: File,
    tx_notify: File,
}

/// Which doorbells rang.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Doorbells {
    /// The driver rang virt_rx's doorbell.
    pub rx: bool,
    /// The driver rang virt_tx's doorbell.
    pub tx: bool,
}

/// Creates the four eventfds and hands out both sides.
pub fn eventfd_platform() -> io::Result<(EventFdPlatform, EventFdPeer)> {
    let (a, b, c, d) = (
        sys::eventfd()?,
        sys::eventfd()?,
        sys::eventfd()?,
        sys::eventfd()?,
    );
    let peer = EventFdPeer {
        rx_doorbell: a.try_clone()?,
        tx_doorbell: b.try_clone()?,
        rx_notify: c.try_clone()?,
        tx_notify: d.try_clone()?,
    };
    Ok((
        EventFdPlatform {
            rx_doorbell: a,
            tx_doorbell: b,
            rx_notify: c,
            tx_notify: d,
        },
        peer,
    ))
}

fn signal(f: &mut File) -> io::Result<()> {
    f.write_all(&1u64.to_ne_bytes())
}

/// Reads an eventfd's count (resetting it); an empty one is fine.
fn drain(f: &mut File, _name: &str) -> io::Result<()> {
    let mut b = [0u8; 8];
    match f.read(&mut b) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

impl Platform for EventFdPlatform {
    fn doorbell_rx(&mut self) -> io::Result<()> {
        signal(&mut self.rx_doorbell)
    }

    fn doorbell_tx(&mut self) -> io::Result<()> {
        signal(&mut self.tx_doorbell)
    }

    fn wait(&mut self, nic: &[NicPoll], timeout: Option<Duration>) -> io::Result<Events> {
        poll_with(
            [
                (&mut self.rx_notify, "rx_notify"),
                (&mut self.tx_notify, "tx_notify"),
            ],
            nic,
            timeout,
            drain,
        )
    }
}

impl EventFdPeer {
    /// virt_rx notifies the driver.
    pub fn notify_rx(&mut self) -> io::Result<()> {
        signal(&mut self.rx_notify)
    }

    /// virt_tx notifies the driver.
    pub fn notify_tx(&mut self) -> io::Result<()> {
        signal(&mut self.tx_notify)
    }

    /// Waits up to `timeout` for either doorbell and consumes what rang.
    pub fn wait_doorbells(&mut self, timeout: Duration) -> io::Result<Doorbells> {
        let mut fds = [
            libc::pollfd {
                fd: self.rx_doorbell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.tx_doorbell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut d = Doorbells::default();
        if sys::poll(&mut fds, ms)?.is_none() {
            return Ok(d);
        }
        if fds[0].revents != 0 {
            drain(&mut self.rx_doorbell, "rx_doorbell")?;
            d.rx = true;
        }
        if fds[1].revents != 0 {
            drain(&mut self.tx_doorbell, "tx_doorbell")?;
            d.tx = true;
        }
        Ok(d)
    }
}

/// Which virtualiser a doorbell is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doorbell {
    /// virt_rx.
    Rx,
    /// virt_tx.
    Tx,
}

/// A [`Platform`] whose doorbells are a callback (in host mode: Microkit notifications) and whose
/// notifications arrive on eventfds that another thread (the PD's event loop) signals through a
/// [`NotifyHandle`].
pub struct CallbackPlatform {
    doorbell: Box<dyn FnMut(Doorbell) + Send>,
    rx_notify: File,
    tx_notify: File,
}

/// The side of a [`CallbackPlatform`] that delivers notifications to the driver thread.
pub struct NotifyHandle {
    rx_notify: File,
    tx_notify: File,
}

/// Creates a callback platform and the handle that notifies it.
pub fn callback_platform(
    doorbell: Box<dyn FnMut(Doorbell) + Send>,
) -> io::Result<(CallbackPlatform, NotifyHandle)> {
    let (rx, tx) = (sys::eventfd()?, sys::eventfd()?);
    let handle = NotifyHandle {
        rx_notify: rx.try_clone()?,
        tx_notify: tx.try_clone()?,
    };
    Ok((
        CallbackPlatform {
            doorbell,
            rx_notify: rx,
            tx_notify: tx,
        },
        handle,
    ))
}

impl NotifyHandle {
    /// virt_rx notified the driver.
    pub fn notify_rx(&mut self) -> io::Result<()> {
        signal(&mut self.rx_notify)
    }

    /// virt_tx notified the driver.
    pub fn notify_tx(&mut self) -> io::Result<()> {
        signal(&mut self.tx_notify)
    }
}

impl Platform for CallbackPlatform {
    fn doorbell_rx(&mut self) -> io::Result<()> {
        (self.doorbell)(Doorbell::Rx);
        Ok(())
    }

    fn doorbell_tx(&mut self) -> io::Result<()> {
        (self.doorbell)(Doorbell::Tx);
        Ok(())
    }

    fn wait(&mut self, nic: &[NicPoll], timeout: Option<Duration>) -> io::Result<Events> {
        poll_with(
            [
                (&mut self.rx_notify, "rx_notify"),
                (&mut self.tx_notify, "tx_notify"),
            ],
            nic,
            timeout,
            drain,
        )
    }
}
