//! Node messaging over the in-memory LAN: joins, every message size, loss, duplicates,
//! reordering, leaving.

mod common;

use std::net::SocketAddrV4;

use common::{host, pattern, Lan};
use netvm_api::lan::client_ip;
use node_msg::{Config, Event, LossReason, Refusal, SendError, State, MAX_MESSAGE, PORT};

/// Sends `data` from node `a` to node `b` (indices) and runs until the outcome is known.
fn send_and_wait(lan: &mut Lan, a: usize, b: usize, data: &[u8]) -> Event {
    let dest = b as u8 + 1; // `Lan::new` puts node index i at id i + 1
    let now = lan.now;
    lan.nodes[a].send(now, dest, data).unwrap();
    let before = lan.events[a].len();
    assert!(lan.run_until(60_000, |l| l.events[a].len() > before));
    lan.events[a][before]
}

#[test]
fn ids_follow_addresses_and_strangers_get_the_lowest_free_id() {
    let lan = Lan::new(3, 1, Config::default());
    let ids: Vec<_> = lan.nodes.iter().map(|n| n.id()).collect();
    assert_eq!(ids, [Some(1), Some(2), Some(3)]);
    let addrs = vec![
        host(1),
        host(2),
        SocketAddrV4::new(client_ip(0, 0).unwrap(), PORT),
    ];
    let lan = Lan::with_addrs(addrs, 2, Config::default(), 254);
    let mut ids: Vec<_> = lan.nodes.iter().map(|n| n.id().unwrap()).collect();
    ids.sort();
    // Node 0's address claims id 0; the strangers get 1 and 2, whoever asked first.
    assert_eq!(ids, [0, 1, 2]);
}

#[test]
fn a_full_table_refuses_with_a_reason() {
    let lan = Lan::with_addrs(vec![host(1), host(2), host(3)], 3, Config::default(), 2);
    let states: Vec<_> = lan.nodes.iter().map(|n| n.state()).collect();
    let refused = states
        .iter()
        .filter(|s| **s == State::Refused(Refusal::Full))
        .count();
    assert_eq!(refused, 1, "{states:?}");
    assert_eq!(lan.master.counters().refused, 1);
    assert_eq!(lan.master.members().count(), 2);
}

#[test]
fn a_repeated_join_from_the_same_address_gets_the_same_id() {
    let mut lan = Lan::new(2, 4, Config::default());
    // The node restarts (a new incarnation) at the same address.
    let mac = netvm_api::lan::client_mac(2, 0).unwrap();
    *lan.nodes[1] = node_msg::Node::new(common::MASTER_ADDR, mac, 999, Config::default());
    assert!(lan.run_until(1000, |l| l.nodes[1].id().is_some()));
    assert_eq!(lan.nodes[1].id(), Some(2));
    assert_eq!(lan.master.counters().rejoins, 1);
    // Its fresh session is not mistaken for the old one's duplicates.
    let msg = pattern(2, 1, 0, 10);
    assert!(matches!(
        send_and_wait(&mut lan, 1, 0, &msg),
        Event::Delivered(_)
    ));
    assert_eq!(lan.drain(0), [(2, msg)]);
}

#[test]
fn every_size_up_to_the_max_round_trips() {
    let mut lan = Lan::new(2, 5, Config::default());
    for (n, len) in (1..=MAX_MESSAGE).enumerate() {
        let msg = pattern(1, 2, n as u32, len);
        assert!(
            matches!(send_and_wait(&mut lan, 0, 1, &msg), Event::Delivered(_)),
            "{len}"
        );
        assert_eq!(lan.drain(1), [(1, msg)], "size {len}");
    }
    let c = lan.nodes[0].counters();
    assert_eq!((c.tx_retransmits, c.tx_lost), (0, 0));
    assert_eq!(
        lan.nodes[0].send(lan.now, 2, &[0; MAX_MESSAGE + 1]),
        Err(SendError::Length(MAX_MESSAGE + 1))
    );
    assert_eq!(
        lan.nodes[0].send(lan.now, 1, b"me"),
        Err(SendError::BadDest(1))
    );
}

/// Over a link that loses `drop_pct`%, every message gets an outcome; every delivered one
/// arrived exactly once with its content; nothing arrives twice.
fn lossy(drop_pct: u64, dup_pct: u64, reorder: bool, seed: u64) {
    let mut lan = Lan::new(3, seed, Config::default());
    (lan.drop_pct, lan.dup_pct, lan.reorder) = (drop_pct, dup_pct, reorder);
    lan.auto_drain = true;
    let mut sent = Vec::new();
    for n in 0..60u32 {
        let (a, b) = ((n % 3) as usize, ((n + 1 + n / 3 % 2) % 3) as usize);
        let (src, dest) = (a as u8 + 1, b as u8 + 1);
        let msg = pattern(src, dest, n, 1 + (n as usize * 997) % MAX_MESSAGE);
        lan.run_until(60_000, |l| l.nodes[a].can_send());
        let id = lan.nodes[a].send(lan.now, dest, &msg).unwrap();
        sent.push((a, b, id, msg));
    }
    assert!(lan.run_until(60_000, |l| l.quiet()));
    lan.step(); // collects the last outcomes and messages
    let received = lan.received.clone();
    for (a, b, id, msg) in &sent {
        let outcome = lan.events[*a]
            .iter()
            .find(|e| matches!(e, Event::Delivered(m) | Event::Lost(m, _) if m == id));
        let copies = received[*b]
            .iter()
            .filter(|(s, m)| *s as usize == a + 1 && m == msg)
            .count();
        match outcome {
            Some(Event::Delivered(_)) => assert_eq!(copies, 1, "{id:?}"),
            Some(Event::Lost(..)) => assert!(copies <= 1, "{id:?}"),
            None => panic!("no outcome for {id:?}"),
        }
    }
    let total: usize = received.iter().map(Vec::len).sum();
    assert!(total <= sent.len());
    let retransmits: u64 = lan.nodes.iter().map(|n| n.counters().tx_retransmits).sum();
    assert_eq!(
        retransmits > 0,
        drop_pct > 0,
        "the link really lost datagrams"
    );
    let lost = sent.len()
        - lan
            .nodes
            .iter()
            .map(|n| n.counters().tx_delivered as usize)
            .sum::<usize>();
    if drop_pct == 0 {
        assert_eq!(lost, 0, "only a lossy link loses messages");
    }
}

#[test]
fn a_lossy_link_loses_nothing_silently() {
    for seed in 1..4 {
        lossy(20, 0, false, seed);
    }
}

#[test]
fn duplicated_and_reordered_datagrams_deliver_each_message_once() {
    lossy(0, 30, true, 7);
    let mut lan = Lan::new(2, 8, Config::default());
    (lan.dup_pct, lan.reorder) = (50, true);
    for n in 0..20 {
        let msg = pattern(1, 2, n, 5000);
        let ev = send_and_wait(&mut lan, 0, 1, &msg);
        assert!(matches!(ev, Event::Delivered(_)), "{n}: {ev:?}");
        assert_eq!(lan.drain(1), [(1, msg)]);
    }
    // Late duplicates of the last message change nothing.
    lan.run_until(1000, |_| false);
    assert!(lan.drain(1).is_empty());
    let c = lan.nodes[1].counters();
    assert!(c.rx_dup_fragments + c.rx_dup_messages > 0, "{c:?}");
}

#[test]
fn a_dead_link_reports_the_message_lost() {
    let mut lan = Lan::new(2, 9, Config::default());
    assert!(matches!(
        send_and_wait(&mut lan, 0, 1, b"hi"),
        Event::Delivered(_)
    ));
    lan.drop_pct = 100;
    let ev = send_and_wait(&mut lan, 0, 1, b"hello");
    assert!(matches!(ev, Event::Lost(_, LossReason::NoAck)), "{ev:?}");
    assert_eq!(
        lan.nodes[0].counters().tx_retransmits,
        u64::from(Config::default().max_tries) - 1
    );
}

#[test]
fn a_missing_fragment_expires_the_partial_message() {
    let mut lan = Lan::new(2, 10, Config::default());
    // Fragment 1 of every data datagram is lost for good.
    lan.drop_if = Some(|d| d[3] == 9 && d[12] == 1);
    let ev = send_and_wait(&mut lan, 0, 1, &[7; 3000]);
    assert!(matches!(ev, Event::Lost(_, LossReason::NoAck)));
    lan.run_until(5000, |_| false);
    assert!(lan.drain(1).is_empty());
    assert!(lan.nodes[1].counters().rx_expired >= 1);
}

#[test]
fn a_node_that_left_is_reported_lost_and_unknown_ids_too() {
    let mut lan = Lan::new(3, 11, Config::default());
    assert!(matches!(
        send_and_wait(&mut lan, 0, 1, b"hi"),
        Event::Delivered(_)
    ));
    lan.nodes[1].leave();
    assert!(lan.run_until(5000, |l| l.nodes[1].state() == State::Left));
    lan.gone[1] = true;
    // Node 1 knew node 2's address: no ack comes back.
    let ev = send_and_wait(&mut lan, 0, 1, b"still there?");
    assert!(matches!(ev, Event::Lost(_, LossReason::NoAck)), "{ev:?}");
    // Node 3 never heard of node 2: the master says it is unknown.
    let ev = send_and_wait(&mut lan, 2, 1, b"anyone?");
    assert!(
        matches!(ev, Event::Lost(_, LossReason::UnknownId)),
        "{ev:?}"
    );
    assert_eq!(
        lan.nodes[1].send(lan.now, 1, b"x"),
        Err(SendError::NotJoined)
    );
}

#[test]
fn a_receiver_that_does_not_receive_pushes_back_and_the_sender_hears_of_it() {
    let mut lan = Lan::new(2, 12, Config::default());
    let outcomes: Vec<_> = (0..node_msg::RX_SLOTS as u32 + 1)
        .map(|n| send_and_wait(&mut lan, 0, 1, &pattern(1, 2, n, 100)))
        .collect();
    assert!(outcomes[..node_msg::RX_SLOTS]
        .iter()
        .all(|e| matches!(e, Event::Delivered(_))));
    assert!(matches!(
        outcomes[node_msg::RX_SLOTS],
        Event::Lost(_, LossReason::NoAck)
    ));
    assert!(lan.nodes[1].counters().rx_no_slot > 0);
    assert_eq!(lan.drain(1).len(), node_msg::RX_SLOTS);
}

#[test]
fn a_silent_master_is_reported() {
    // Every request to the master is lost.
    let mut lan = Lan::with_addrs(vec![host(1)], 13, Config::default(), 254);
    lan.drop_if = Some(|d| d[3] == 1);
    *lan.nodes[0] = node_msg::Node::new(common::MASTER_ADDR, [0; 6], 5, Config::default());
    assert!(lan.run_until(10_000, |l| l.nodes[0].state() == State::MasterSilent));
    assert_eq!(lan.nodes[0].poll_timeout(), None, "nothing left to do");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any mix of loss, duplication and reordering: every message gets an outcome, a delivered
    /// one arrived exactly once and intact, nothing arrives twice.
    #[test]
    fn any_lossy_link_loses_nothing_silently(
        drop_pct in 0u64..40,
        dup_pct in 0u64..40,
        reorder in proptest::bool::ANY,
        seed in 1u64..u64::MAX,
    ) {
        lossy(drop_pct, dup_pct, reorder, seed);
    }
}
