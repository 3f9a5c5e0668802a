//! Arbitrary and corrupted datagrams: counted and dropped, never a panic, never a delivery.

mod common;

use common::{Lan, MASTER_ADDR};
use node_msg::wire::{Header, Kind, MAX_DATAGRAM};
use node_msg::Config;
use proptest::prelude::*;

fn datagram(h: Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = [0; MAX_DATAGRAM];
    let n = h.emit(payload, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// A valid fragment from node 1 to node 2.
fn fragment() -> Vec<u8> {
    let h = Header {
        kind: Kind::Data,
        src: 1,
        dst: 2,
        session: 3,
        seq: 4,
        frag: 0,
        count: 2,
        total: 2000,
    };
    datagram(h, &[9; 1448])
}

fn counted(lan: &Lan) -> u64 {
    let c = lan.nodes[1].counters();
    c.rx_malformed
        + c.rx_foreign
        + c.rx_inconsistent
        + c.rx_fragments
        + c.rx_stale
        + c.rx_dup_fragments
        + c.rx_dup_messages
        + c.rx_no_slot
        + c.rx_stale_acks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_are_counted_and_dropped(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut lan = Lan::new(2, 1, Config::default());
        let from = lan.addrs[0];
        let before = counted(&lan);
        lan.nodes[1].handle_datagram(lan.now, from, &bytes);
        lan.master.handle_datagram(from, &bytes);
        prop_assert_eq!(counted(&lan), before + 1);
        prop_assert!(lan.drain(1).is_empty());
        let m = lan.master.counters();
        prop_assert_eq!(m.malformed + m.foreign, 1);
    }

    #[test]
    fn corrupted_fragments_never_deliver(pos in 0usize..1472, val in any::<u8>(), cut in 0usize..1472) {
        let mut lan = Lan::new(2, 2, Config::default());
        let from = lan.addrs[0];
        let mut d = fragment();
        d[pos] ^= val.max(1);
        d.truncate(cut.max(1));
        lan.nodes[1].handle_datagram(lan.now, from, &d);
        prop_assert_eq!(lan.nodes[1].counters().rx_fragments, 0);
        prop_assert!(lan.drain(1).is_empty());
    }
}

#[test]
fn answers_not_from_the_master_and_fragments_for_others_are_foreign() {
    let mut lan = Lan::new(3, 3, Config::default());
    let stranger = common::host(9);
    let join_ok = datagram(Header::control(Kind::JoinOk, 255, 7, 1), &[]);
    lan.nodes[1].handle_datagram(lan.now, stranger, &join_ok);
    lan.nodes[1].handle_datagram(lan.now, MASTER_ADDR, &join_ok); // no such request
    let mut for_node_3 = fragment();
    for_node_3[5] = 3;
    let d = datagram(Header::parse(&fragment()).unwrap().0, &[9; 1448]);
    assert_eq!(d, fragment());
    let h = Header {
        dst: 3,
        ..Header::parse(&fragment()).unwrap().0
    };
    lan.nodes[1].handle_datagram(lan.now, lan.addrs[0], &datagram(h, &[9; 1448]));
    let c = lan.nodes[1].counters();
    assert_eq!((c.rx_foreign, c.rx_fragments), (3, 0));
    assert_eq!(lan.nodes[1].id(), Some(2));
    // A leave or lookup in someone else's name is refused by the master.
    let leave = datagram(Header::control(Kind::Leave, 2, 255, 5), &[]);
    lan.master.handle_datagram(stranger, &leave);
    assert_eq!(lan.master.counters().foreign, 1);
    assert_eq!(lan.master.members().count(), 3);
}

#[test]
fn a_fragment_that_disagrees_with_its_message_is_counted() {
    let mut lan = Lan::new(2, 4, Config::default());
    let from = lan.addrs[0];
    lan.nodes[1].handle_datagram(lan.now, from, &fragment());
    let h = Header {
        frag: 1,
        count: 3,
        total: 3000,
        ..Header::parse(&fragment()).unwrap().0
    };
    lan.nodes[1].handle_datagram(lan.now, from, &datagram(h, &[1; 1448]));
    lan.nodes[1].handle_datagram(lan.now, from, &fragment());
    let c = lan.nodes[1].counters();
    assert_eq!(
        (c.rx_fragments, c.rx_inconsistent, c.rx_dup_fragments),
        (1, 1, 1)
    );
}
