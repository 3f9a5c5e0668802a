//! The VMM PD's ABI, `.vmm_config`: what the VMM PD learns from the system build instead of
//! hard-coding it. In a crate of its own so that the image build need not compile the VMM.
//!
//! The Microkit tool cannot tell a PD which of its channel ids leads where, and the guest's
//! doorbell pages and UIO vIRQs live in the guest device tree, not in the SDF. The image build
//! (`guest system`, from `system.xml`) derives all of it once and writes this 40-byte section,
//! the same way sDDF configs reach the other PDs; the VMM then checks the embedded device tree
//! against it before booting.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `VMMC` |
//! | 4 | version, 1 |
//! | 5 | PL011 IRQ channel id, or [`NONE`] |
//! | 6 | NIC (virtio-mmio) IRQ channel id, or [`NONE`] |
//! | 7 | channel to the RX virtualiser, or [`NONE`] |
//! | 8 | channel to the TX virtualiser, or [`NONE`] |
//! | 9 | channel to the timer PD (pp on this side), or [`NONE`] |
//! | 10..12 | PL011 INTID (little-endian) |
//! | 12..14 | NIC INTID |
//! | 14..16 | `rx_irq` INTID (the UIO vIRQ raised by RX virtualiser notifications) |
//! | 16..18 | `tx_irq` INTID |
//! | 18..24 | zero |
//! | 24..32 | `rx_fault` doorbell page, guest-physical |
//! | 32..40 | `tx_fault` doorbell page, guest-physical |

#![no_std]

use core::fmt;

/// The section name.
pub const SECTION: &str = ".vmm_config";
/// The magic.
pub const MAGIC: [u8; 4] = *b"VMMC";
/// The layout version.
pub const VERSION: u8 = 1;
/// Size of the section.
pub const SIZE: usize = 40;
/// A channel the system does not have.
pub const NONE: u8 = 0xff;

/// A passed-through device IRQ: the VMM's `<irq>` id and the INTID (the same number in the
/// guest as in the hardware).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceIrq {
    /// The `<irq id>` of the VMM PD.
    pub channel: u8,
    /// The GIC INTID.
    pub intid: u16,
}

/// The decoded section.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VmmConfig {
    /// The PL011's IRQ.
    pub uart: Option<DeviceIrq>,
    /// The NIC's IRQ.
    pub nic: Option<DeviceIrq>,
    /// Channel to the RX virtualiser.
    pub virt_rx: Option<u8>,
    /// Channel to the TX virtualiser.
    pub virt_tx: Option<u8>,
    /// Channel to the timer PD (a PPC channel that it also notifies on).
    pub timer: Option<u8>,
    /// INTID of `rx_irq`.
    pub rx_irq: u16,
    /// INTID of `tx_irq`.
    pub tx_irq: u16,
    /// Guest-physical page of `rx_fault`.
    pub rx_fault: u64,
    /// Guest-physical page of `tx_fault`.
    pub tx_fault: u64,
}

/// What is wrong with a `.vmm_config` section.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigError {
    /// The magic is not `VMMC`: the image build did not fill the section.
    Magic([u8; 4]),
    /// Unknown layout version.
    Version(u8),
    /// A channel id above Microkit's 61 (other than [`NONE`]).
    Channel(u8),
    /// Two roles share one channel id.
    SharedChannel(u8),
    /// A doorbell page is not 4 KiB aligned, or both doorbells are the same page.
    Doorbell(u64),
    /// An INTID outside the SPI range 32..1020, or two vIRQs on one INTID.
    Intid(u16),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::Magic(m) => write!(
                f,
                "{SECTION}: magic {m:02x?} is not \"VMMC\" (the image build did not fill the section)"
            ),
            ConfigError::Version(v) => write!(f, "{SECTION}: unknown version {v}"),
            ConfigError::Channel(c) => write!(f, "{SECTION}: channel id {c} is above 61"),
            ConfigError::SharedChannel(c) => {
                write!(f, "{SECTION}: channel id {c} is given two roles")
            }
            ConfigError::Doorbell(a) => write!(
                f,
                "{SECTION}: doorbell page {a:#x} is not 4 KiB aligned or is used twice"
            ),
            ConfigError::Intid(i) => write!(
                f,
                "{SECTION}: INTID {i} is not an SPI (32..1020) or is used twice"
            ),
        }
    }
}

fn channel(c: u8) -> Result<Option<u8>, ConfigError> {
    match c {
        NONE => Ok(None),
        0..=61 => Ok(Some(c)),
        _ => Err(ConfigError::Channel(c)),
    }
}

fn le16(b: &[u8; SIZE], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le64(b: &[u8; SIZE], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl VmmConfig {
    /// Decodes and checks a section (untrusted bytes: every field is checked).
    pub fn parse(b: &[u8; SIZE]) -> Result<Self, ConfigError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(ConfigError::Magic(magic));
        }
        if b[4] != VERSION {
            return Err(ConfigError::Version(b[4]));
        }
        let device = |ch: u8, at: usize| -> Result<Option<DeviceIrq>, ConfigError> {
            Ok(channel(ch)?.map(|channel| DeviceIrq {
                channel,
                intid: le16(b, at),
            }))
        };
        let cfg = VmmConfig {
            uart: device(b[5], 10)?,
            nic: device(b[6], 12)?,
            virt_rx: channel(b[7])?,
            virt_tx: channel(b[8])?,
            timer: channel(b[9])?,
            rx_irq: le16(b, 14),
            tx_irq: le16(b, 16),
            rx_fault: le64(b, 24),
            tx_fault: le64(b, 32),
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let ids = [
            self.uart.map(|d| d.channel),
            self.nic.map(|d| d.channel),
            self.virt_rx,
            self.virt_tx,
            self.timer,
        ];
        for (i, id) in ids.iter().enumerate() {
            if let Some(c) = id.filter(|c| ids[..i].contains(&Some(*c))) {
                return Err(ConfigError::SharedChannel(c));
            }
        }
        let intids = [
            Some(self.rx_irq),
            Some(self.tx_irq),
            self.uart.map(|d| d.intid),
            self.nic.map(|d| d.intid),
        ];
        for (i, intid) in intids.iter().enumerate() {
            if let Some(n) =
                intid.filter(|n| !(32..1020).contains(n) || intids[..i].contains(&Some(*n)))
            {
                return Err(ConfigError::Intid(n));
            }
        }
        for page in [self.rx_fault, self.tx_fault] {
            if page % 0x1000 != 0 || self.rx_fault == self.tx_fault {
                return Err(ConfigError::Doorbell(page));
            }
        }
        Ok(())
    }

    /// Encodes the section (what the image build writes).
    pub fn to_bytes(&self) -> [u8; SIZE] {
        let mut b = [0; SIZE];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.uart.map_or(NONE, |d| d.channel);
        b[6] = self.nic.map_or(NONE, |d| d.channel);
        b[7] = self.virt_rx.unwrap_or(NONE);
        b[8] = self.virt_tx.unwrap_or(NONE);
        b[9] = self.timer.unwrap_or(NONE);
        b[10..12].copy_from_slice(&self.uart.map_or(0, |d| d.intid).to_le_bytes());
        b[12..14].copy_from_slice(&self.nic.map_or(0, |d| d.intid).to_le_bytes());
        b[14..16].copy_from_slice(&self.rx_irq.to_le_bytes());
        b[16..18].copy_from_slice(&self.tx_irq.to_le_bytes());
        b[24..32].copy_from_slice(&self.rx_fault.to_le_bytes());
        b[32..40].copy_from_slice(&self.tx_fault.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    fn sample() -> VmmConfig {
        VmmConfig {
            uart: Some(DeviceIrq {
                channel: 3,
                intid: 33,
            }),
            nic: Some(DeviceIrq {
                channel: 4,
                intid: 79,
            }),
            virt_rx: Some(0),
            virt_tx: Some(1),
            timer: Some(2),
            rx_irq: 112,
            tx_irq: 113,
            rx_fault: 0x3100_0000,
            tx_fault: 0x3100_1000,
        }
    }

    #[test]
    fn round_trips() {
        let c = sample();
        assert_eq!(VmmConfig::parse(&c.to_bytes()), Ok(c));
        let none = VmmConfig {
            uart: None,
            nic: None,
            virt_rx: None,
            virt_tx: None,
            timer: None,
            ..c
        };
        assert_eq!(VmmConfig::parse(&none.to_bytes()), Ok(none));
    }

    #[test]
    fn an_unfilled_section_is_refused() {
        assert_eq!(
            VmmConfig::parse(&[0; SIZE]),
            Err(ConfigError::Magic([0; 4]))
        );
        assert!(ConfigError::Magic([0; 4])
            .to_string()
            .contains("did not fill"));
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut b = sample().to_bytes();
        b[4] = 2;
        assert_eq!(VmmConfig::parse(&b), Err(ConfigError::Version(2)));
        let mut b = sample().to_bytes();
        b[7] = 62;
        assert_eq!(VmmConfig::parse(&b), Err(ConfigError::Channel(62)));
        let mut b = sample().to_bytes();
        b[8] = 0;
        assert_eq!(VmmConfig::parse(&b), Err(ConfigError::SharedChannel(0)));
        let mut c = sample();
        c.tx_irq = c.rx_irq;
        assert_eq!(
            VmmConfig::parse(&c.to_bytes()),
            Err(ConfigError::Intid(112))
        );
        let mut c = sample();
        c.rx_irq = 27;
        assert_eq!(VmmConfig::parse(&c.to_bytes()), Err(ConfigError::Intid(27)));
        let mut c = sample();
        c.tx_fault = c.rx_fault;
        assert!(matches!(
            VmmConfig::parse(&c.to_bytes()),
            Err(ConfigError::Doorbell(_))
        ));
        let mut c = sample();
        c.rx_fault += 8;
        assert!(matches!(
            VmmConfig::parse(&c.to_bytes()),
            Err(ConfigError::Doorbell(_))
        ));
    }
}
