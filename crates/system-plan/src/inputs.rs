//! The per-client inputs as the command lines take them, read once for both writers
//! (`guest-image sel4-pds --macs/--echo-ips`, `netvm run --net-macs/--echo-ips`).

use echo_api::peers::PeerPlan;
use echo_api::IpConfig;

/// `client0=52:54:01:00:00:10,...`, or `@FILE` for a file holding such a list (e.g.
/// `@system.macs`): `(client PD, MAC)` pairs (`sdf::net::parse_mac_list`).
pub fn parse_macs(arg: &str) -> Result<Vec<(String, [u8; 6])>, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => arg.to_owned(),
    };
    sdf::net::parse_mac_list(&text).map_err(|e| e.to_string())
}

/// `client0=10.0.0.10/24,client1=dhcp,...`: `(echo-server PD, static address or DHCP)` pairs
/// (`echo_api::parse_address_list`).
pub fn parse_echo_ips(text: &str) -> Result<Vec<(String, IpConfig)>, String> {
    echo_api::parse_address_list(text)
        .map(|entry| {
            entry
                .map(|(pd, ip)| (pd.to_owned(), ip))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `client1=node1+10.0.2.10/udp=32x256@1000,...`: `(echo-server PD, peers and load)` pairs
/// for the PDs that originate echo traffic (`echo_api::peers::parse_peer_list`).
pub fn parse_echo_peers(text: &str) -> Result<Vec<(String, PeerPlan)>, String> {
    echo_api::peers::parse_peer_list(text)
        .map(|entry| {
            entry
                .map(|(pd, plan)| (pd.to_owned(), plan))
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_come_inline_or_from_a_file() {
        let inline = parse_macs("client0=52:54:01:00:00:10").unwrap();
        assert_eq!(inline, [("client0".into(), [0x52, 0x54, 1, 0, 0, 0x10])]);
        let file = std::env::temp_dir().join(format!("system-plan-macs-{}", std::process::id()));
        std::fs::write(&file, "client0=52:54:01:00:00:10\n").unwrap();
        assert_eq!(parse_macs(&format!("@{}", file.display())).unwrap(), inline);
        std::fs::remove_file(&file).unwrap();
        let missing = parse_macs("@/nonexistent/system.macs").unwrap_err();
        assert!(missing.contains("/nonexistent/system.macs"), "{missing}");
    }

    #[test]
    fn echo_addresses_are_static_or_dhcp() {
        let list = parse_echo_ips("client0=10.0.0.10/24,client1=dhcp").unwrap();
        assert_eq!(list[1], ("client1".into(), IpConfig::Dhcp));
        assert!(matches!(list[0].1, IpConfig::Static { prefix_len: 24, .. }));
        assert!(parse_echo_ips("client0=10.0.0.300/24").is_err());
    }

    #[test]
    fn echo_peers_name_a_pd_and_its_peers() {
        let list = parse_echo_peers("client1=node1+10.0.2.10/tcp=0").unwrap();
        assert_eq!(list[0].0, "client1");
        assert_eq!(list[0].1.peers().len(), 2);
        assert_eq!(list[0].1.load.tcp_bytes, 0);
        let e = parse_echo_peers("client1=node1+node999").unwrap_err();
        assert!(e.contains("node999"), "{e}");
    }
}
