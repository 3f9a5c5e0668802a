use super::*;
use echo_api::peers::PeerPlan;
use std::vec::Vec;

fn plan(text: &str) -> PeerPlan {
    echo_api::peers::parse_peer_list(text)
        .next()
        .unwrap()
        .unwrap()
        .1
}

/// Runs `o` to `now`, collecting the lines of rounds that end.
fn tick(o: &mut Origin, now: u64, lines: &mut Vec<RoundLine>) -> bool {
    o.tick(now, &mut |l| lines.push(*l))
}

/// A well-behaved peer: echoes every request at once.
fn send_due(o: &mut Origin, now: u64) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..o.peer_count() {
        while o.udp_due(i, now) {
            let mut buf = [0u8; 2048];
            let n = o.udp_fill(i, now, &mut buf);
            out.push((i, buf[..n].to_vec()));
        }
    }
    out
}

#[test]
fn requests_are_paced_and_good_echoes_give_rtt() {
    let mut o = Origin::new(&plan("c=node1+node2/udp=4x64@1000/tcp=0/period=100"));
    let mut lines = Vec::new();
    assert!(tick(&mut o, 1_000, &mut lines));
    // At the round's start request 0 of each peer is due, request 1 a millisecond later.
    let first = send_due(&mut o, 1_000);
    assert_eq!(first.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(first[0].1.len(), 64);
    assert_eq!(o.next_wake_us(1_000, &[]), 1_000);
    assert!(send_due(&mut o, 1_500).is_empty());
    for (i, data) in &first {
        assert_eq!(o.udp_echo(*i, true, 1_250, data), Verdict::Echoed(250));
    }
    // The same echo again is a duplicate; one from another port is bad.
    assert_eq!(o.udp_echo(0, true, 1_300, &first[0].1), Verdict::Duplicate);
    assert_eq!(o.udp_echo(0, false, 1_300, &first[0].1), Verdict::Bad);
    let rest = send_due(&mut o, 10_000);
    assert_eq!(rest.len(), 6, "the other three requests of each peer");
    assert_eq!(
        o.next_wake_us(10_000, &[]),
        91_000,
        "only the round's end is due"
    );
    // Peer 0 answers everything, peer 1 nothing more.
    for (i, data) in rest.iter().filter(|r| r.0 == 0) {
        assert_eq!(o.udp_echo(*i, true, 10_100, data), Verdict::Echoed(100));
    }
    assert!(!tick(&mut o, 100_999, &mut lines));
    assert!(tick(&mut o, 101_000, &mut lines));
    assert_eq!(lines.len(), 2);
    let (p0, p1) = (&lines[0], &lines[1]);
    assert_eq!(
        (p0.delta.udp_sent, p0.delta.udp_echoed, p0.delta.udp_lost),
        (4, 4, 0)
    );
    assert_eq!((p0.delta.udp_dup, p0.delta.udp_bad), (1, 1));
    assert_eq!(p0.rtt.min_avg_max(), (100, 137, 250));
    assert_eq!(
        (p1.delta.udp_sent, p1.delta.udp_echoed, p1.delta.udp_lost),
        (4, 1, 3)
    );
    let text = std::format!("{p1}");
    assert!(
        text.starts_with("peer 10.0.2.10 round 1: udp 4 sent 1 echoed 0 bad 0 dup 0 late 3 lost"),
        "{text}"
    );
    // An echo of round 1 arriving in round 2 is late, not good.
    let of_peer1 = rest.iter().find(|r| r.0 == 1).unwrap();
    assert_eq!(o.udp_echo(1, true, 101_100, &of_peer1.1), Verdict::Late);
    let c = o.peer_counters(1);
    assert_eq!((c.udp_late, c.udp_lost, c.addr), (1, 3, 0x0a00_020a));
    assert_eq!(o.counters().rounds, 2);
}

#[test]
fn any_changed_byte_makes_an_echo_bad() {
    let mut o = Origin::new(&plan("c=10.0.0.11/udp=1x32@1000/tcp=0"));
    o.tick(0, &mut |_| {});
    let (_, data) = send_due(&mut o, 5).remove(0);
    for at in 0..data.len() {
        let mut bad = data.clone();
        bad[at] ^= 0x01;
        assert_eq!(o.udp_echo(0, true, 10, &bad), Verdict::Bad, "byte {at}");
    }
    assert_eq!(o.udp_echo(0, true, 10, &data[..31]), Verdict::Bad);
    assert_eq!(o.udp_echo(0, true, 10, &data), Verdict::Echoed(5));
    assert_eq!(o.peer_counters(0).udp_bad, 33);
}

#[test]
fn bad_echoes_are_answers_not_losses_and_skipped_rounds_are_neither() {
    let mut o = Origin::new(&plan("c=node1+node2/udp=3x32@1000/tcp=100"));
    let mut lines = Vec::new();
    tick(&mut o, 0, &mut lines);
    o.skip(1);
    let sent = send_due(&mut o, 10_000);
    assert_eq!(sent.len(), 3, "nothing for the skipped peer");
    let mut bad = sent[0].1.clone();
    bad[20] ^= 4;
    o.udp_echo(0, true, 10_100, &bad);
    tick(&mut o, 1_000_000, &mut lines);
    let (p0, p1) = (&lines[0], &lines[1]);
    assert_eq!((p0.delta.udp_bad, p0.delta.udp_lost), (1, 2));
    assert!(p1.skipped && p1.delta.unresolved == 1 && p1.delta.tcp_failed == 0);
    assert!(std::format!("{p1}").contains("skipped, its address does not resolve"));
    assert_eq!(
        o.next_wake_us(1_000_000, &[]),
        0,
        "round 2's first requests are due"
    );
}

#[test]
fn streams_run_in_their_slot_and_are_checked_byte_for_byte() {
    let mut o = Origin::new(&plan("c=node1+node2/udp=0x64@1/tcp=3000/period=1000"));
    let mut lines = Vec::new();
    tick(&mut o, 0, &mut lines);
    assert_eq!(o.tcp_slot(0), Some(0));
    assert_eq!(o.tcp_slot(499_999), Some(0));
    assert_eq!(o.tcp_slot(500_000), Some(1));
    o.stream_start(0, 100);
    let mut buf = [0u8; 2000];
    let n = o.stream_fill(0, &mut buf);
    assert_eq!(n, 2000);
    o.stream_sent(0, 1500);
    let mut rest = [0u8; 4000];
    let m = o.stream_fill(0, &mut rest);
    assert_eq!(m, 1500, "continues after what the socket took");
    assert_eq!(buf[1500..2000], rest[..500]);
    o.stream_sent(0, m);
    assert!(!o.stream_check(0, 200, &buf[..1500]));
    let mut echoed = rest[..1500].to_vec();
    echoed[7] ^= 0xff;
    assert!(o.stream_check(0, 3_100, &echoed));
    assert_eq!(o.stream(0), Stream::Done);
    let c = o.peer_counters(0);
    assert_eq!((c.tcp_bytes_echoed, c.tcp_bad), (2999, 1));
    assert_eq!(c.throughput_kbps, 3000 * 8 * 1000 / 3000);
    // Peer 1's slot: connected, never answered.
    o.stream_start(1, 500_000);
    assert_eq!(o.next_wake_us(600_000, &[]), 400_000);
    tick(&mut o, 1_000_000, &mut lines);
    assert_eq!(lines[0].tcp_ok, Some(true));
    assert_eq!(lines[1].tcp_ok, Some(false));
    assert!(std::format!("{}", lines[1]).ends_with("FAILED, 0 kbit/s"));
    assert_eq!(o.peer_counters(1).tcp_failed, 1);
    // A failure reported before the round's end is counted once.
    o.stream_start(0, 1_000_100);
    o.stream_failed(0);
    tick(&mut o, 2_000_000, &mut lines);
    assert_eq!(o.peer_counters(0).tcp_failed, 1);
}

#[test]
fn the_address_entry_has_the_name_readers_show_as_an_address() {
    use netvm_api::stats::Counters as _;
    assert_eq!(PeerCounters::NAMES[0], netvm_api::stats::ADDR_FIELD);
}
