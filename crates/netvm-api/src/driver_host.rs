//! `.netvm_driver_host` (netvm's, host mode only): the section by which `netvm run
//! --driver-vm-iface IFACE` tells `uio_driver_host`, the stand-in for a driver VM, which network
//! interface to drive.
//!
//! | bytes | field |
//! |---|---|
//! | 0..16 | the interface name, NUL padded (Linux `IFNAMSIZ`: at most 15 bytes and a NUL) |

/// The section name.
pub const SECTION: &str = ".netvm_driver_host";
/// Bytes of the section (Linux `IFNAMSIZ`).
pub const BYTES: usize = 16;

/// The section naming `iface`, or `None` when the name is empty, too long or holds a NUL.
pub fn encode(iface: &str) -> Option<[u8; BYTES]> {
    if iface.is_empty() || iface.len() >= BYTES || iface.as_bytes().contains(&0) {
        return None;
    }
    let mut section = [0u8; BYTES];
    section[..iface.len()].copy_from_slice(iface.as_bytes());
    Some(section)
}

/// The interface a section names, or `None` when it names none (all zero, or not UTF-8).
pub fn interface(section: &[u8; BYTES]) -> Option<&str> {
    let end = section.iter().position(|b| *b == 0).unwrap_or(BYTES);
    core::str::from_utf8(&section[..end])
        .ok()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        let s = encode("sys0").unwrap();
        assert_eq!(&s[..5], b"sys0\0");
        assert_eq!(interface(&s), Some("sys0"));
        assert_eq!(
            interface(&encode("fifteen-bytes-x").unwrap()),
            Some("fifteen-bytes-x")
        );
        assert_eq!(encode("sixteen-bytes-xx"), None);
        assert_eq!(encode(""), None);
        assert_eq!(encode("a\0b"), None);
        assert_eq!(interface(&[0; BYTES]), None);
        assert_eq!(interface(&[0xff; BYTES]), None);
    }
}
