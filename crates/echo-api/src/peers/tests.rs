extern crate std;
use super::*;
use proptest::prelude::*;
use std::string::ToString;
use std::vec::Vec;

fn parsed(text: &str) -> Result<Vec<(&str, PeerPlan)>, PeerListError<'_>> {
    parse_peer_list(text).collect()
}

#[test]
fn a_plan_round_trips_through_the_section() {
    let (pd, plan) = parsed("client1=node1+10.0.2.10/udp=8x64@100/tcp=4096/period=500")
        .unwrap()
        .remove(0);
    assert_eq!(pd, "client1");
    assert_eq!(
        plan.peers(),
        [Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10)]
    );
    let load = Load {
        udp_size: 64,
        udp_count: 8,
        udp_rate: 100,
        tcp_bytes: 4096,
        period_ms: 500,
    };
    assert_eq!(plan.load, load);
    let section = EchoPeersSection::new(&plan);
    let bytes = section.as_bytes();
    assert_eq!(&bytes[..8], &[b'E', b'P', b'R', b'S', 2, 2, 64, 0]);
    assert_eq!(&bytes[24..32], &[10, 0, 1, 10, 10, 0, 2, 10]);
    assert!(bytes[32..].iter().all(|b| *b == 0));
    assert_eq!(EchoPeersSection::parse(bytes), Ok(Some(plan)));
}

#[test]
fn an_unwritten_section_means_no_peers() {
    assert_eq!(EchoPeersSection::parse(&[0; 96]), Ok(None));
    assert_eq!(EchoPeersSection::parse(&[0; 88]), Ok(None));
    assert_eq!(EchoPeersSection::parse(&[0; 87]), Err(PeersError::Size(87)));
}

#[test]
fn messaging_round_trips_and_version_1_is_still_read() {
    let (_, plan) = parsed("client1=node2/msg=10.0.255.1").unwrap().remove(0);
    assert_eq!(plan.msg_master, Some(Ipv4Addr::new(10, 0, 255, 1)));
    let section = EchoPeersSection::new(&plan);
    assert_eq!(&section.as_bytes()[88..], &[10, 0, 255, 1, 0, 0, 0, 0]);
    assert_eq!(EchoPeersSection::parse(section.as_bytes()), Ok(Some(plan)));
    // What an older tool wrote: 88 bytes, version 1, no messaging.
    let mut old = EchoPeersSection::new(&parsed("client1=node2").unwrap()[0].1);
    old.version = 1;
    let v1 = EchoPeersSection::parse(&old.as_bytes()[..88])
        .unwrap()
        .unwrap();
    assert_eq!((v1.peers(), v1.msg_master), (plan.peers(), None));
    // Version 2 in 88 bytes, version 1 in 96, or reserved bytes set: refused, by name.
    let e = EchoPeersSection::parse(&section.as_bytes()[..88]).unwrap_err();
    assert_eq!(e, PeersError::Version(2));
    assert!(
        e.to_string().contains("expected 2 in 96 bytes or 1 in 88"),
        "{e}"
    );
    assert_eq!(
        EchoPeersSection::parse(old.as_bytes()),
        Err(PeersError::Version(1))
    );
    let mut s = section;
    s.reserved[3] = 1;
    assert_eq!(
        EchoPeersSection::parse(s.as_bytes()),
        Err(PeersError::Reserved)
    );
    let mut s = section;
    s.msg_master = [224, 0, 0, 1];
    assert_eq!(
        EchoPeersSection::parse(s.as_bytes()),
        Err(PeersError::Addr(Ipv4Addr::new(224, 0, 0, 1)))
    );
    let reason = |text| parsed(text).unwrap_err().reason;
    assert_eq!(reason("c=node1/msg=x"), PeerListErrorKind::BadOption);
    assert_eq!(reason("c=node1/msg=0.0.0.0"), PeerListErrorKind::BadOption);
}

#[test]
fn bad_sections_are_named() {
    let mut plan = PeerPlan::new(Load::default());
    plan.push(Ipv4Addr::new(10, 0, 1, 10));
    let good = EchoPeersSection::new(&plan);
    let mut s = good;
    s.magic = *b"ECHO";
    assert_eq!(
        EchoPeersSection::parse(s.as_bytes()),
        Err(PeersError::Magic(*b"ECHO"))
    );
    let mut s = good;
    s.count = 17;
    assert_eq!(
        EchoPeersSection::parse(s.as_bytes()),
        Err(PeersError::Count(17))
    );
    let mut s = good;
    s.peers[0] = [255; 4];
    let e = EchoPeersSection::parse(s.as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        ".echo_peers: peer 255.255.255.255 is not a unicast address"
    );
    let mut s = good;
    s.period_ms = 5u32.to_le_bytes();
    assert_eq!(
        EchoPeersSection::parse(s.as_bytes()),
        Err(PeersError::Load("period ms", 5))
    );
    let mut s = good;
    s.version = 3;
    assert_eq!(
        EchoPeersSection::parse(s.as_bytes()),
        Err(PeersError::Version(3))
    );
}

#[test]
fn node_ids_resolve_on_the_lan() {
    let plan = parsed("c=node3.1+node0").unwrap().remove(0).1;
    assert_eq!(
        plan.peers(),
        [Ipv4Addr::new(10, 0, 3, 11), Ipv4Addr::new(10, 0, 0, 10)]
    );
    assert_eq!(plan.load, Load::default());
}

#[test]
fn bad_entries_are_named_with_the_reason() {
    let reason = |text| parsed(text).unwrap_err().reason;
    assert_eq!(reason("client1"), PeerListErrorKind::NoEquals);
    assert_eq!(reason("=node1"), PeerListErrorKind::NoEquals);
    assert_eq!(reason("c=node255"), PeerListErrorKind::BadPeer);
    assert_eq!(reason("c=224.0.0.1"), PeerListErrorKind::BadPeer);
    assert_eq!(reason("c="), PeerListErrorKind::NoPeers);
    assert_eq!(reason("c=node1/tcp=x"), PeerListErrorKind::BadOption);
    assert_eq!(reason("c=node1/udp=1x8@1"), PeerListErrorKind::BadOption);
    assert_eq!(reason("c=node1/period=1"), PeerListErrorKind::BadOption);
    assert_eq!(reason("c=node1/speed=1"), PeerListErrorKind::BadOption);
    let many: std::string::String = (1..=17).map(|n| std::format!("node{n}+")).collect();
    assert_eq!(
        reason(&std::format!("c={many}")),
        PeerListErrorKind::TooMany
    );
    let e = parsed("client1=node1+nodeX").unwrap_err();
    assert_eq!(e.part, "nodeX");
    assert!(e.to_string().contains("peer 'nodeX'"), "{e}");
}

proptest! {
    /// No bytes make the parser panic, and whatever it accepts it writes back unchanged.
    #[test]
    fn any_section_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(Some(plan)) = EchoPeersSection::parse(&bytes) {
            let mut written = EchoPeersSection::new(&plan);
            if bytes.len() == V1_BYTES {
                written.version = 1;
            }
            prop_assert_eq!(&written.as_bytes()[..bytes.len()], &bytes[..]);
        }
    }

    /// The same for a valid section with a few bytes changed (random bytes rarely get past the
    /// magic).
    #[test]
    fn damaged_sections_parse_without_panic(
        changes in proptest::collection::vec((0..96usize, any::<u8>()), 1..6),
    ) {
        let mut plan = PeerPlan::new(Load::default());
        plan.push(Ipv4Addr::new(10, 0, 1, 10));
        let mut bytes = EchoPeersSection::new(&plan).as_bytes().to_vec();
        for (at, value) in changes {
            bytes[at] = value;
        }
        if let Ok(Some(plan)) = EchoPeersSection::parse(&bytes) {
            let mut written = EchoPeersSection::new(&plan);
            if bytes.len() == V1_BYTES {
                written.version = 1;
            }
            prop_assert_eq!(&written.as_bytes()[..bytes.len()], &bytes[..]);
        }
    }

    /// Any text gives entries or a named error, never a panic.
    #[test]
    fn any_list_text_parses_without_panic(text in ".{0,80}") {
        for entry in parse_peer_list(&text) {
            if let Err(e) = entry {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
