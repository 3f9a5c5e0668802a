//! Node addressing on a netvm LAN (`netvm lan`): several systems on one virtual switch, each a
//! *node* with an id. A node's MACs and IPv4 addresses follow from its id alone, so every tool
//! and PD derives the same ones and nothing needs to be looked up:
//!
//! | what | node `n`, client `c` |
//! |---|---|
//! | client MAC | `52:54:01:00:n:(0x10 + c)` |
//! | client IPv4 | `10.0.n.(10 + c)/16` |
//!
//! Node 0 is exactly today's single system (`system.macs`: `52:54:01:00:00:10` and `..:11`,
//! echo addresses 10.0.0.10 and 10.0.0.11), so a lone system is node 0 of a LAN of one.
//! Addresses `10.0.255.0/24` are left to the host side of a LAN (the master, captures, load
//! generators).

use core::net::Ipv4Addr;

/// Highest node id: ids are one byte and `10.0.255.x` belongs to the host side.
pub const MAX_NODE: u8 = 254;
/// Highest client index per node (the last octet stays below the host range of a /24 view).
pub const MAX_CLIENT: u8 = 0x6f;
/// The LAN's prefix length (`10.0.0.0/16`).
pub const PREFIX_LEN: u8 = 16;
/// The address the host side of a LAN uses (master, capture): `10.0.255.1`.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 1);

/// What is wrong with a node or client number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// The node id is above [`MAX_NODE`].
    Node(u8),
    /// The client index is above [`MAX_CLIENT`].
    Client(u8),
}

impl core::fmt::Display for AddrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddrError::Node(n) => write!(f, "node id {n} is above {MAX_NODE}"),
            AddrError::Client(c) => write!(f, "client index {c} is above {MAX_CLIENT}"),
        }
    }
}

fn check(node: u8, client: u8) -> Result<(), AddrError> {
    if node > MAX_NODE {
        Err(AddrError::Node(node))
    } else if client > MAX_CLIENT {
        Err(AddrError::Client(client))
    } else {
        Ok(())
    }
}

/// The MAC of client `client` on node `node`.
pub fn client_mac(node: u8, client: u8) -> Result<[u8; 6], AddrError> {
    check(node, client)?;
    Ok([0x52, 0x54, 0x01, 0x00, node, 0x10 + client])
}

/// The IPv4 address of client `client` on node `node` (prefix [`PREFIX_LEN`]).
pub fn client_ip(node: u8, client: u8) -> Result<Ipv4Addr, AddrError> {
    check(node, client)?;
    Ok(Ipv4Addr::new(10, 0, node, 10 + client))
}

/// The node and client an address of [`client_ip`]'s shape belongs to, if it is one.
pub fn node_of_ip(ip: Ipv4Addr) -> Option<(u8, u8)> {
    let [a, b, node, last] = ip.octets();
    let client = last.checked_sub(10)?;
    (a == 10 && b == 0 && check(node, client).is_ok()).then_some((node, client))
}

/// The node and client a MAC of [`client_mac`]'s shape belongs to, if it is one.
pub fn node_of_mac(mac: [u8; 6]) -> Option<(u8, u8)> {
    let [0x52, 0x54, 0x01, 0x00, node, last] = mac else {
        return None;
    };
    let client = last.checked_sub(0x10)?;
    check(node, client).is_ok().then_some((node, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_zero_is_the_single_system() {
        assert_eq!(client_mac(0, 0), Ok([0x52, 0x54, 1, 0, 0, 0x10]));
        assert_eq!(client_mac(0, 1), Ok([0x52, 0x54, 1, 0, 0, 0x11]));
        assert_eq!(client_ip(0, 0), Ok(Ipv4Addr::new(10, 0, 0, 10)));
        assert_eq!(client_ip(0, 1), Ok(Ipv4Addr::new(10, 0, 0, 11)));
    }

    #[test]
    fn every_address_maps_back_to_its_node_and_client() {
        for node in 0..=MAX_NODE {
            for client in 0..=MAX_CLIENT {
                let ip = client_ip(node, client).unwrap();
                let mac = client_mac(node, client).unwrap();
                assert_eq!(node_of_ip(ip), Some((node, client)));
                assert_eq!(node_of_mac(mac), Some((node, client)));
            }
        }
    }

    #[test]
    fn out_of_range_numbers_and_foreign_addresses_are_refused() {
        assert_eq!(client_ip(255, 0), Err(AddrError::Node(255)));
        assert_eq!(client_mac(1, 0x70), Err(AddrError::Client(0x70)));
        assert_eq!(node_of_ip(HOST_IP), None);
        assert_eq!(node_of_ip(Ipv4Addr::new(10, 1, 0, 10)), None);
        assert_eq!(node_of_ip(Ipv4Addr::new(10, 0, 3, 9)), None);
        assert_eq!(node_of_mac([0x52, 0x54, 0, 0, 0, 0x10]), None);
        assert_eq!(node_of_mac([0x52, 0x54, 1, 0, 2, 0x0f]), None);
    }
}
