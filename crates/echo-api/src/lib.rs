//! The echo-server PD's ABI, for the PD and for the tools that configure it (`guest-image sel4-pds`,
//! `netvm run`), so that those need not compile the PD: its `.echo_config` section, the
//! `client=addr/prefix,...` list that writes it, and sDDF's echo ports.
//!
//! The PD's IP configuration is the 16-byte `.echo_config` section:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `ECHO` |
//! | 4 | version, 1 |
//! | 5 | flags: bit 0 = use DHCP (the address fields are then ignored) |
//! | 6 | prefix length (0..=32) |
//! | 7 | zero |
//! | 8..12 | IPv4 address, network order |
//! | 12..16 | default gateway, network order; 0.0.0.0 = none |
//!
//! The system build (or the host runner) writes it like the sDDF config sections; an all-zero
//! section (nothing written) is refused rather than guessed at.
//!
//! The originating role's `.echo_peers` section and its list syntax are in [`peers`].

#![no_std]

pub mod peers;

/// UDP echo port (sDDF `UDP_ECHO_PORT`).
pub const UDP_ECHO_PORT: u16 = 1235;
/// TCP echo port (sDDF `TCP_ECHO_PORT`).
pub const TCP_ECHO_PORT: u16 = 1236;
/// ipbench utilisation daemon port (sDDF `UTILIZATION_PORT`).
pub const UTILISATION_PORT: u16 = 1237;

use core::net::Ipv4Addr;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The section name.
pub const SECTION: &str = ".echo_config";
/// The magic.
pub const MAGIC: [u8; 4] = *b"ECHO";
/// The layout version.
pub const VERSION: u8 = 1;
/// Flag bit: configure by DHCP.
pub const FLAG_DHCP: u8 = 1;

/// The section's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct EchoConfig {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`VERSION`].
    pub version: u8,
    /// [`FLAG_DHCP`] or 0.
    pub flags: u8,
    /// Prefix length of the static address.
    pub prefix_len: u8,
    /// Zero.
    pub reserved: u8,
    /// Static address.
    pub addr: [u8; 4],
    /// Default gateway, or zeros.
    pub gateway: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<EchoConfig>() == 16);

/// How the PD gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// A fixed address.
    Static {
        /// The address.
        addr: Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
        /// The default gateway, if any.
        gateway: Option<Ipv4Addr>,
    },
    /// DHCP (as sDDF's echo server does when given no address).
    Dhcp,
}

/// What is wrong with an `.echo_config` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The section is not 16 bytes.
    Size(usize),
    /// The magic is not `ECHO` (the section was not written).
    Magic([u8; 4]),
    /// Unknown layout version.
    Version(u8),
    /// Prefix length above 32.
    Prefix(u8),
    /// A static address that is unspecified, multicast or broadcast.
    Addr(Ipv4Addr),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Size(n) => write!(f, "{SECTION}: {n} bytes, expected 16"),
            ConfigError::Magic(m) => {
                write!(
                    f,
                    "{SECTION}: magic {m:02x?}, expected \"ECHO\" (section not written?)"
                )
            }
            ConfigError::Version(v) => write!(f, "{SECTION}: version {v}, expected {VERSION}"),
            ConfigError::Prefix(p) => write!(f, "{SECTION}: prefix length {p} is above 32"),
            ConfigError::Addr(a) => write!(f, "{SECTION}: {a} is not a unicast address"),
        }
    }
}

impl EchoConfig {
    /// The section for `ip`.
    pub fn new(ip: IpConfig) -> Self {
        let mut c = EchoConfig {
            magic: MAGIC,
            version: VERSION,
            flags: 0,
            prefix_len: 0,
            reserved: 0,
            addr: [0; 4],
            gateway: [0; 4],
        };
        match ip {
            IpConfig::Dhcp => c.flags = FLAG_DHCP,
            IpConfig::Static {
                addr,
                prefix_len,
                gateway,
            } => {
                c.prefix_len = prefix_len;
                c.addr = addr.octets();
                c.gateway = gateway.unwrap_or(Ipv4Addr::UNSPECIFIED).octets();
            }
        }
        c
    }

    /// Checks and decodes a section.
    pub fn parse(bytes: &[u8]) -> Result<IpConfig, ConfigError> {
        let c = EchoConfig::read_from_bytes(bytes).map_err(|_| ConfigError::Size(bytes.len()))?;
        if c.magic != MAGIC {
            return Err(ConfigError::Magic(c.magic));
        }
        if c.version != VERSION {
            return Err(ConfigError::Version(c.version));
        }
        if c.flags & FLAG_DHCP != 0 {
            return Ok(IpConfig::Dhcp);
        }
        if c.prefix_len > 32 {
            return Err(ConfigError::Prefix(c.prefix_len));
        }
        let addr = Ipv4Addr::from(c.addr);
        if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
            return Err(ConfigError::Addr(addr));
        }
        let gateway = Ipv4Addr::from(c.gateway);
        Ok(IpConfig::Static {
            addr,
            prefix_len: c.prefix_len,
            gateway: (!gateway.is_unspecified()).then_some(gateway),
        })
    }
}

/// One entry of an address list that [`parse_address_list`] could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressError<'a> {
    /// The entry, as given.
    pub entry: &'a str,
    /// What is wrong with it.
    pub reason: AddressErrorKind,
}

/// What is wrong with an address-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressErrorKind {
    /// No `=` between the PD name and its address (or no PD name).
    NoEquals,
    /// A static address without `/<prefix>`.
    NoPrefix,
    /// The address is no IPv4 address.
    BadAddress,
    /// The prefix is no number in 0..=32.
    BadPrefix,
}

impl core::fmt::Display for AddressError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let entry = self.entry;
        match self.reason {
            AddressErrorKind::NoEquals => write!(
                f,
                "'{entry}': expected <pd>=<address>/<prefix> or <pd>=dhcp"
            ),
            AddressErrorKind::NoPrefix => write!(f, "'{entry}': the address needs a /prefix"),
            AddressErrorKind::BadAddress => write!(f, "'{entry}': bad IPv4 address"),
            AddressErrorKind::BadPrefix => write!(f, "'{entry}': prefix must be 0..=32"),
        }
    }
}

/// Parses the echo clients' address list, `client0=10.0.0.10/24,client1=dhcp` (entries separated
/// by commas or white space): each entry is a PD name and either a static address with its
/// prefix length (no gateway) or `dhcp`. The one parser behind `guest-image sel4-pds --echo-ips` and
/// `netvm run --echo-ips`; it yields `(pd, address)` in the order given and allocates nothing.
pub fn parse_address_list(
    text: &str,
) -> impl Iterator<Item = Result<(&str, IpConfig), AddressError<'_>>> {
    text.split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_address_entry)
}

fn parse_address_entry(entry: &str) -> Result<(&str, IpConfig), AddressError<'_>> {
    let fail = |reason| AddressError { entry, reason };
    let (pd, address) = entry
        .split_once('=')
        .filter(|(pd, _)| !pd.is_empty())
        .ok_or(fail(AddressErrorKind::NoEquals))?;
    if address == "dhcp" {
        return Ok((pd, IpConfig::Dhcp));
    }
    let (addr, prefix) = address
        .split_once('/')
        .ok_or(fail(AddressErrorKind::NoPrefix))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| fail(AddressErrorKind::BadAddress))?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or(fail(AddressErrorKind::BadPrefix))?;
    Ok((
        pd,
        IpConfig::Static {
            addr,
            prefix_len,
            gateway: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn static_and_dhcp_round_trip() {
        let ip = IpConfig::Static {
            addr: Ipv4Addr::new(10, 0, 2, 16),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
        };
        let bytes = EchoConfig::new(ip);
        assert_eq!(
            bytes.as_bytes(),
            &[b'E', b'C', b'H', b'O', 1, 0, 24, 0, 10, 0, 2, 16, 10, 0, 2, 2]
        );
        assert_eq!(EchoConfig::parse(bytes.as_bytes()), Ok(ip));
        let dhcp = EchoConfig::new(IpConfig::Dhcp);
        assert_eq!(EchoConfig::parse(dhcp.as_bytes()), Ok(IpConfig::Dhcp));
    }

    #[test]
    fn bad_sections_are_named() {
        assert_eq!(EchoConfig::parse(&[0; 16]), Err(ConfigError::Magic([0; 4])));
        assert_eq!(EchoConfig::parse(&[0; 15]), Err(ConfigError::Size(15)));
        let mut c = EchoConfig::new(IpConfig::Static {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 33,
            gateway: None,
        });
        assert_eq!(
            EchoConfig::parse(c.as_bytes()),
            Err(ConfigError::Prefix(33))
        );
        c.prefix_len = 8;
        c.addr = [224, 0, 0, 1];
        let e = EchoConfig::parse(c.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with(".echo_config: 224.0.0.1"), "{e}");
        c.version = 2;
        assert_eq!(
            EchoConfig::parse(c.as_bytes()),
            Err(ConfigError::Version(2))
        );
    }

    fn parsed(text: &str) -> Result<std::vec::Vec<(&str, IpConfig)>, AddressError<'_>> {
        parse_address_list(text).collect()
    }

    #[test]
    fn address_lists_give_static_and_dhcp_clients_in_order() {
        let ip = |a, b, c, d, prefix_len| IpConfig::Static {
            addr: Ipv4Addr::new(a, b, c, d),
            prefix_len,
            gateway: None,
        };
        assert_eq!(
            parsed("client0=10.0.0.10/24,client1=10.0.0.11/24"),
            Ok(std::vec![
                ("client0", ip(10, 0, 0, 10, 24)),
                ("client1", ip(10, 0, 0, 11, 24))
            ])
        );
        assert_eq!(
            parsed(" client0=dhcp\nclient1=192.168.1.2/32 ,, "),
            Ok(std::vec![
                ("client0", IpConfig::Dhcp),
                ("client1", ip(192, 168, 1, 2, 32))
            ])
        );
        assert_eq!(parsed(""), Ok(std::vec![]));
    }

    #[test]
    fn bad_address_entries_are_named_with_the_reason() {
        let e = parsed("client0=10.0.0.10/24,client1=10.0.0.11/33").unwrap_err();
        assert_eq!(
            (e.entry, e.reason),
            ("client1=10.0.0.11/33", AddressErrorKind::BadPrefix)
        );
        assert_eq!(
            e.to_string(),
            "'client1=10.0.0.11/33': prefix must be 0..=32"
        );
        let e = parsed("client0 10.0.0.10/24").unwrap_err();
        assert_eq!((e.entry, e.reason), ("client0", AddressErrorKind::NoEquals));
        assert!(
            e.to_string()
                .contains("expected <pd>=<address>/<prefix> or <pd>=dhcp"),
            "{e}"
        );
        assert_eq!(
            parsed("=dhcp").unwrap_err().reason,
            AddressErrorKind::NoEquals
        );
        assert_eq!(
            parsed("c=10.0.0.1").unwrap_err().reason,
            AddressErrorKind::NoPrefix
        );
        assert_eq!(
            parsed("c=10.0.0/8").unwrap_err().reason,
            AddressErrorKind::BadAddress
        );
        assert_eq!(
            parsed("c=10.0.0.1/x").unwrap_err().reason,
            AddressErrorKind::BadPrefix
        );
        assert_eq!(
            parsed("c=DHCP").unwrap_err().reason,
            AddressErrorKind::NoPrefix
        );
    }
}
