//! A node whose master was silent starts over in place ([`Node::rejoin`]) and joins once the
//! master is there; what it held before is gone, its counters carry on.
use core::net::{Ipv4Addr, SocketAddrV4};

use node_msg::{Config, Master, Node, State, PORT};

#[test]
fn a_node_rejoins_in_place_after_a_silent_master() {
    let master_at = SocketAddrV4::new(Ipv4Addr::new(10, 0, 255, 1), PORT);
    let me = SocketAddrV4::new(Ipv4Addr::new(10, 0, 3, 10), PORT);
    let mut node = Box::new(Node::new(master_at, [0; 6], 1, Config::default()));
    let mut buf = [0u8; 1472];
    // Nobody answers: after max_tries the join is given up.
    let mut now = 0;
    let mut asked = 0;
    while node.state() == State::Joining && now < 10_000 {
        while node.poll_transmit(now, &mut buf).is_some() {
            asked += 1;
        }
        now += 50;
        node.handle_timeout(now);
    }
    assert_eq!((node.state(), asked), (State::MasterSilent, 8));
    node.rejoin(2);
    assert_eq!(node.state(), State::Joining);
    let mut master = Box::new(Master::new(254));
    for _ in 0..3 {
        while let Some((to, n)) = node.poll_transmit(now, &mut buf) {
            assert_eq!(to, master_at);
            master.handle_datagram(me, &buf[..n]);
        }
        while let Some((to, n)) = master.poll_transmit(&mut buf) {
            assert_eq!(to, me);
            node.handle_datagram(now, master_at, &buf[..n]);
        }
    }
    assert_eq!(node.id(), Some(3), "the id its address names");
    assert_eq!(node.in_flight(), 0);
    assert!(node.can_send());
}
