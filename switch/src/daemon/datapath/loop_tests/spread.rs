//! One network spread over two workers: the owner decides what the replica
//! hands it, the replica forwards known unicast itself once the owner's
//! table reached it, and neither ever sends a frame twice.

use super::super::handle::Command;
use std::time::Duration;

use super::super::testing::frames::{Tcp, arp_request, frame, gw_mac, ip, mac, udp};
use super::super::testing::{Harness, gateway_network};
use crate::port::{NetworkId, PortConfig, PortId};

/// Worker 0 owns network 0 (with its gateway); worker 1 holds a replica.
/// Both have a queue of endpoints `a` and `b`.
fn spread_pair() -> (Harness, Harness, NetworkId, PortId, PortId) {
    let (mut owner, mut replica) = (Harness::new(), Harness::new());
    Harness::link(&mut [&mut owner, &mut replica]);
    let net = owner.network(super::super::NetworkSpec { spread: true, ..gateway_network(0) });
    let fdb = crate::fdb::Fdb::new(crate::fdb::DEFAULT_FDB_LIMIT);
    replica
        .call(|reply| Command::AddReplica { id: net, fdb, owner: 0, overlay: None, reply })
        .map_err(|(_, e)| e)
        .expect("the replica is taken");
    let (a, b) = (owner.endpoint(net), owner.endpoint(net));
    let config = PortConfig { mtu: 1500, ..PortConfig::access(net) };
    assert_eq!((replica.endpoint_with(config), replica.endpoint_with(config)), (a, b), "the same port ids");
    (owner, replica, net, a, b)
}

/// Runs both workers until neither has anything left, the replica first.
pub(super) fn settle(owner: &mut Harness, replica: &mut Harness) {
    for _ in 0..10 {
        replica.run_until_idle();
        owner.run_until_idle();
        if replica.is_idle() && owner.is_idle() {
            return;
        }
    }
    panic!("two workers still pass work to each other after 10 rounds");
}

#[test]
fn a_replica_hands_unknown_frames_to_the_owner_then_forwards_known_unicast_itself() {
    let (mut owner, mut replica, net, a, b) = spread_pair();

    // Nothing known yet: the replica hands the frame to the owner, which
    // floods it (to b and the gateway) and learns mac 1 on a.
    replica.inject(a, &frame(mac(2), mac(1), 1));
    settle(&mut owner, &mut replica);
    assert!(replica.sent(b).is_empty(), "the replica decides nothing it does not know");
    assert_eq!(owner.sent_frames(b), vec![frame(mac(2), mac(1), 1)]);
    assert_eq!(owner.lookup(net, mac(1)), Some(a));
    assert_eq!(owner.counters(a).rx_packets, 1, "the owner counts what it decided");
    assert_eq!(replica.counters(a).rx_packets, 0, "and the replica does not count it again");

    // The answer arrives on the owner's queue of b: mac 2 is learned there.
    owner.inject(b, &frame(mac(1), mac(2), 2));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(mac(1), mac(2), 2)]);

    // Both stations are known: the replica forwards between its own queues.
    replica.inject(a, &frame(mac(2), mac(1), 3));
    replica.inject(b, &frame(mac(1), mac(2), 4));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![frame(mac(2), mac(1), 3)]);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(2), 4)]);
    assert!(owner.sent(a).is_empty() && owner.sent(b).is_empty(), "the owner never sees them");
    let (ra, rb) = (replica.counters(a), replica.counters(b));
    assert_eq!((ra.rx_packets, ra.tx_packets, rb.rx_packets, rb.tx_packets), (1, 1, 1, 1));

    // A broadcast (an ARP request for the gateway) is the owner's: it
    // floods to b once and its gateway answers through its own queue of a.
    let ask = arp_request(mac(1), ip(11), ip(1));
    replica.inject(a, &ask);
    settle(&mut owner, &mut replica);
    assert!(replica.sent(b).is_empty());
    assert_eq!(owner.sent_frames(b), vec![ask]);
    let answers = owner.sent_frames(a);
    assert_eq!(answers.len(), 1);
    assert_eq!(&answers[0][6..12], &gw_mac().0, "the gateway's ARP reply");

    // The replica's table follows the owner's: after a flush there, the
    // replica hands everything over again until the owner relearns.
    owner.call(|reply| Command::Flush { network: Some(net), reply });
    settle(&mut owner, &mut replica);
    replica.inject(a, &frame(mac(2), mac(1), 5));
    settle(&mut owner, &mut replica);
    assert!(replica.sent(b).is_empty());
    assert_eq!(owner.sent_frames(b), vec![frame(mac(2), mac(1), 5)], "flooded by the owner, once");

    // The snapshots: the replica lists no table of its own, and says what
    // it forwarded and handed over; the owner what it took.
    let (mine, theirs) = (replica.snapshot(), owner.snapshot());
    assert!(mine.fdb.is_empty() && mine.learning.is_empty());
    assert_eq!((mine.spread.replica_rx, mine.spread.punted), (2, 3));
    assert_eq!(theirs.spread.taken, 3);
    assert!(theirs.fdb.iter().any(|r| r.mac == mac(1) && r.port == a));
}

#[test]
fn a_capture_of_a_spread_network_sees_every_frame_once() {
    use crate::daemon::capture::{CaptureRing, Popped, Scope, Session};
    use ctl::proto::Direction;
    use std::sync::Arc;

    let (mut owner, mut replica, net, a, b) = spread_pair();
    // One capture, one ring, a session on each worker (as the handle starts it).
    let ring = Arc::new(CaptureRing::new(64, 65_536, None));
    for h in [&mut owner, &mut replica] {
        let session = Box::new(Session::new(ring.clone(), Scope::Network(net), None));
        h.call(|reply| Command::Capture { session, reply });
    }
    // The owner decides the first frame (flooded), learns both stations,
    // and the replica forwards the third itself.
    replica.inject(a, &frame(mac(2), mac(1), 1));
    settle(&mut owner, &mut replica);
    owner.inject(b, &frame(mac(1), mac(2), 2));
    settle(&mut owner, &mut replica);
    replica.inject(a, &frame(mac(2), mac(1), 3));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![frame(mac(2), mac(1), 3)], "forwarded by the replica");

    let mut seen = Vec::new();
    while let Popped::Record(r) = ring.pop(std::time::Duration::ZERO) {
        seen.push((r.port, r.direction, r.data.clone()));
        ring.recycle(r);
    }
    let count = |port: PortId, direction: Direction, expected: &[u8]| {
        seen.iter().filter(|(p, d, data)| *p == port && *d == direction && data.as_slice() == expected).count()
    };
    for tag in [1, 3] {
        let f = frame(mac(2), mac(1), tag);
        assert_eq!(count(a, Direction::Rx, &f), 1, "frame {tag} received on a, once: {seen:?}");
        assert_eq!(count(b, Direction::Tx, &f), 1, "frame {tag} sent to b, once: {seen:?}");
    }
    let back = frame(mac(1), mac(2), 2);
    assert_eq!((count(b, Direction::Rx, &back), count(a, Direction::Tx, &back)), (1, 1));
}

#[test]
fn a_vanished_tap_of_a_spread_network_is_reported_once_by_its_owner() {
    let (mut owner, mut replica, _net, a, _b) = spread_pair();
    // The sandbox's namespace ends: every queue of its TAP fails.
    replica.unplug(a);
    owner.unplug(a);
    replica.inject(a, &frame(mac(2), mac(1), 1));
    owner.inject(a, &frame(mac(2), mac(1), 2));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.gone_ports(), Vec::<PortId>::new(), "a replica's queue does not report it");
    assert_eq!(owner.gone_ports(), vec![a]);
}

#[test]
fn stations_the_replica_forwards_for_do_not_age_out_at_the_owner() {
    let (mut owner, mut replica, net, a, b) = spread_pair();
    for h in [&mut owner, &mut replica] {
        h.set_aging(std::time::Duration::from_secs(10));
    }
    replica.inject(a, &frame(mac(2), mac(1), 1));
    settle(&mut owner, &mut replica);
    owner.inject(b, &frame(mac(1), mac(2), 2));
    settle(&mut owner, &mut replica);
    assert_eq!((owner.sent(a).len(), owner.sent(b).len()), (1, 1), "learned by the owner");
    // 18 s of traffic the owner never sees, in both directions: the replica
    // tells it every second which stations it forwarded for.
    for round in 0..6 {
        for h in [&mut owner, &mut replica] {
            h.advance(std::time::Duration::from_secs(3));
        }
        replica.inject(a, &frame(mac(2), mac(1), 10 + round));
        replica.inject(b, &frame(mac(1), mac(2), 20 + round));
        settle(&mut owner, &mut replica);
        assert_eq!(replica.sent_frames(b).len(), 1, "round {round}: forwarded by the replica");
        assert_eq!(replica.sent_frames(a).len(), 1);
    }
    assert!(owner.sent(a).is_empty() && owner.sent(b).is_empty());
    assert_eq!((owner.lookup(net, mac(1)), owner.lookup(net, mac(2))), (Some(a), Some(b)), "refreshed, not aged");
    // A station that stops sending ages out at the owner, and so on the
    // replica (its last frames may be reported once more, in the next
    // second: a second's grace, once).
    for _ in 0..2 {
        for h in [&mut owner, &mut replica] {
            h.advance(std::time::Duration::from_secs(11));
        }
        settle(&mut owner, &mut replica);
        owner.step();
        settle(&mut owner, &mut replica);
    }
    assert_eq!(owner.lookup(net, mac(1)), None);
    replica.inject(a, &frame(mac(2), mac(1), 99));
    settle(&mut owner, &mut replica);
    assert!(replica.sent(b).is_empty(), "the replica forgot it too and handed the frame over");
    assert_eq!(owner.sent_frames(b), vec![frame(mac(2), mac(1), 99)]);
}

#[test]
fn an_owner_that_falls_behind_gets_a_bounded_number_of_frames() {
    use crate::counters::DropReason;
    use crate::replica::MAX_HANDED_OVER;
    let (mut owner, mut replica, _net, a, b) = spread_pair();
    // A flood of broadcasts on the replica's queue while the owner does not run.
    let extra = 40;
    for n in 0..MAX_HANDED_OVER + extra {
        replica.inject(a, &frame(crate::wire::MacAddr::BROADCAST, mac(1), n as u8));
    }
    replica.run_until_idle();
    assert_eq!(replica.drops(a, DropReason::OwnerBusy), extra as u64, "the rest are dropped, by name");
    assert_eq!(replica.snapshot().spread.punted, MAX_HANDED_OVER as u64);
    // The owner catches up: everything handed over is delivered, and the
    // replica may hand over again.
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b).len(), MAX_HANDED_OVER);
    replica.inject(a, &frame(crate::wire::MacAddr::BROADCAST, mac(1), 0));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b).len(), 1);
    assert_eq!(replica.drops(a, DropReason::OwnerBusy), extra as u64);
}

#[test]
fn the_buffers_of_handed_over_frames_go_back_to_the_worker_that_filled_them() {
    use super::super::spread::MAX_SPARE_BUFFERS;
    let (mut owner, mut replica, _net, a, b) = spread_pair();
    let broadcast = |n: u8| frame(crate::wire::MacAddr::BROADCAST, mac(1), n);
    // Frames of different lengths: a buffer that held a long one carries a
    // short one exactly.
    let long = |n: u8| {
        let mut f = broadcast(n);
        f.extend_from_slice(&[n; 1000]);
        f
    };
    for round in 1..=4 {
        let sent = if round % 2 == 1 { long(round) } else { broadcast(round) };
        replica.inject(a, &sent);
        replica.run_until_idle();
        assert_eq!(replica.dp.spread.spares(), 0, "round {round}: its one buffer is with the owner");
        settle(&mut owner, &mut replica);
        assert_eq!(owner.sent_frames(b), vec![sent]);
        // Had each hand-over taken a new buffer, the replica would keep
        // one more each round.
        assert_eq!(replica.dp.spread.spares(), 1, "round {round}: given back once read, and used again");
        assert_eq!(owner.dp.spread.spares(), 0, "the owner keeps none of them");
    }
    // A burst: the replica keeps a bounded number of buffers afterwards.
    for n in 0..MAX_SPARE_BUFFERS + 8 {
        replica.inject(a, &broadcast(n as u8));
    }
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b).len(), MAX_SPARE_BUFFERS + 8, "every frame delivered");
    assert_eq!(replica.dp.spread.spares(), MAX_SPARE_BUFFERS);
}

#[test]
fn frames_forgotten_with_their_removed_port_give_their_buffers_back() {
    let (mut owner, mut replica, _net, a, b) = spread_pair();
    // Three broadcasts handed over, and the port they came from removed
    // before the owner read them.
    for n in 0..3 {
        replica.inject(a, &frame(crate::wire::MacAddr::BROADCAST, mac(1), n));
    }
    replica.run_until_idle();
    assert_eq!(replica.dp.spread.spares(), 0, "its buffers are with the owner");
    owner.dp.handle_commands();
    owner.remove_port(a);
    owner.run_until_idle();
    assert!(owner.sent_frames(b).is_empty(), "frames of a removed port are not delivered");
    assert_eq!(replica.dp.spread.spares(), 3, "each forgotten frame's buffer went back to the replica");
}

#[test]
fn a_replica_goes_with_its_owner_queues_and_all() {
    let (mut owner, mut replica, net, a, _b) = spread_pair();
    let refused = owner.call(|reply| Command::RemoveNetwork { id: net, reply });
    assert!(refused.is_err(), "the owner refuses while endpoints remain");
    // The owner agreed (its endpoints gone): a queue left on a replica does
    // not keep the network, nor its id, there.
    let removed = replica.call(|reply| Command::RemoveNetwork { id: net, reply });
    assert!(removed.is_ok(), "{:?}", removed.err());
    assert!(replica.dp.bridge.port_config(a).is_err(), "its queues closed");
    let fdb = crate::fdb::Fdb::new(crate::fdb::DEFAULT_FDB_LIMIT);
    let again = replica.call(|reply| Command::AddReplica { id: net, fdb, owner: 0, overlay: None, reply });
    assert!(again.is_ok(), "the id can be used again");
}

/// Both stations learned by the owner and its table on the replica.
fn learned_pair() -> (Harness, Harness, PortId, PortId) {
    let (mut owner, mut replica, _net, a, b) = spread_pair();
    owner.inject(a, &frame(mac(2), mac(1), 1));
    owner.inject(b, &frame(mac(1), mac(2), 2));
    settle(&mut owner, &mut replica);
    owner.sent(a);
    owner.sent(b);
    (owner, replica, a, b)
}

/// The opening of a connection from station 1 to station 2, from source
/// port `port`.
fn syn(port: u16) -> Vec<u8> {
    let tcp = Tcp::between(1, 2);
    Tcp { src: (tcp.src.0, tcp.src.1, port), syn_mss: Some(1460), ..tcp }.frame(&[])
}

/// A segment of [`syn`]`(port)`'s connection from station 1: an ACK.
fn ack(port: u16) -> Vec<u8> {
    let tcp = Tcp::between(1, 2);
    Tcp { src: (tcp.src.0, tcp.src.1, port), ..tcp }.frame(&[])
}

/// Station 2's answer to [`syn`]`(port)`, a SYN-ACK.
fn syn_ack(port: u16) -> Vec<u8> {
    let tcp = Tcp::between(2, 1);
    let mut frame =
        Tcp { src: (tcp.src.0, tcp.src.1, 5201), dst: (tcp.dst.0, tcp.dst.1, port), syn_mss: Some(1460), ..tcp }
            .frame(&[]);
    frame[14 + 20 + 13] |= 0x10; // ACK too (the checksum does not matter here)
    frame
}

#[test]
fn a_connection_opens_on_the_less_busy_worker_which_writes_it_and_counts_it_once() {
    let (mut owner, mut replica, a, b) = learned_pair();
    let (oa, ob) = (owner.counters(a), owner.counters(b));
    // The owner was busy 900 ms of the last second, the replica not at all.
    owner.advance(Duration::from_secs(1));
    let now = owner.now();
    owner.dp.spread.publish_busy(Duration::from_millis(900), now);

    owner.inject(a, &syn(40_001));
    settle(&mut owner, &mut replica);
    assert!(owner.sent(b).is_empty(), "the owner does not write it");
    assert_eq!(replica.sent_frames(b), vec![syn(40_001)], "the replica does, into its queue of b");
    assert_eq!((owner.dp.spread.placed_out, replica.dp.spread.placed_out), (1, 0), "placed once, not again");
    let (na, nb) = (owner.counters(a), owner.counters(b));
    assert_eq!((na.rx_packets, nb.tx_packets), (oa.rx_packets, ob.tx_packets), "not counted by the owner");
    let (ra, rb) = (replica.counters(a), replica.counters(b));
    assert_eq!((ra.rx_packets, rb.tx_packets), (1, 1), "counted once, by the worker that wrote it");

    // The answer comes back by the hash, which is the SYN's: to the owner's
    // queue of b. The owner placed the connection and hands the answer on;
    // the replica writes it into its queue of a.
    owner.inject(b, &syn_ack(40_001));
    settle(&mut owner, &mut replica);
    assert!(owner.sent(a).is_empty(), "the owner does not write the answer");
    assert_eq!(replica.sent_frames(a), vec![syn_ack(40_001)]);
    assert_eq!((owner.dp.spread.placed_out, replica.dp.spread.placed_in), (1, 1), "one connection placed");
    let (ra, rb) = (replica.counters(a), replica.counters(b));
    assert_eq!((rb.rx_packets, ra.tx_packets), (1, 1), "the answer is counted once, by the replica");

    // A retransmitted answer goes the same way.
    owner.inject(b, &syn_ack(40_001));
    settle(&mut owner, &mut replica);
    assert!(owner.sent(a).is_empty());
    assert_eq!(replica.sent_frames(a), vec![syn_ack(40_001)], "a retransmitted answer too");

    // The client's third segment, made while the answer was delivered,
    // still goes by the hash too: handed on as well, once.
    let third = ack(40_001);
    owner.inject(a, &third);
    owner.inject(a, &third);
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![third.clone()], "the third segment is written by the replica");
    assert_eq!(owner.sent_frames(b), vec![third], "then the connection is forgotten here");

    // An answer the owner did not place (or placed long ago) is written by
    // whoever reads it.
    owner.inject(b, &syn_ack(40_001));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![syn_ack(40_001)], "forgotten after the third segment");
    owner.inject(a, &syn(40_002));
    owner.run_until_idle();
    owner.advance(Duration::from_secs(4));
    owner.inject(b, &syn_ack(40_002));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![syn(40_002)], "placed on the replica");
    assert_eq!(owner.sent_frames(a), vec![syn_ack(40_002)], "answered too late to be remembered");

    // Other frames follow the kernel's steering, as before.
    let data = Tcp::between(1, 2).frame(&[7; 100]);
    owner.inject(a, &data);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![data]);
    assert_eq!(owner.dp.spread.placed_out, 2);
}

#[test]
fn connections_stay_where_the_hash_put_them_unless_a_worker_is_markedly_busier() {
    let (mut owner, mut replica, a, b) = learned_pair();
    // Idle workers: a SYN says nothing of the traffic to come, so each
    // connection stays with the worker whose queue the kernel chose.
    for port in 40_001..40_005 {
        replica.inject(a, &syn(port));
    }
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), (40_001..40_005).map(syn).collect::<Vec<_>>());
    assert!(owner.sent(b).is_empty());

    // The owner was busy 300 ms of the last second: the first connections
    // it reads move to the replica, each counting a tenth of a core there,
    // until the difference is below the margin (a fifth of a core).
    owner.advance(Duration::from_secs(1));
    let now = owner.now();
    owner.dp.spread.publish_busy(Duration::from_millis(300), now);
    for port in 41_001..41_005 {
        owner.inject(a, &syn(port));
    }
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![syn(41_001), syn(41_002)], "moved");
    assert_eq!(owner.sent_frames(b), vec![syn(41_003), syn(41_004)], "then kept");
    assert_eq!((owner.dp.spread.placed_out, replica.dp.spread.placed_in), (2, 2));
    assert_eq!(replica.counters(a).rx_packets + owner.counters(a).rx_packets - 1, 8, "each counted once");

    // Not for frames of other kinds: UDP stays with the worker that read it.
    let datagram = udp((mac(1), ip(1), 5000), (mac(2), ip(2), 53), b"q");
    owner.inject(a, &datagram);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![datagram]);
}

#[test]
fn a_flooded_opening_is_not_placed_and_one_for_a_port_the_target_lacks_comes_back() {
    let (mut owner, mut replica, a, b) = learned_pair();
    owner.advance(Duration::from_secs(1));
    let now = owner.now();
    owner.dp.spread.publish_busy(Duration::from_millis(900), now);

    // A SYN to a station nobody knows is flooded by the owner, once to each
    // port, however busy the owner is.
    let tcp = Tcp::between(1, 9);
    let unknown = Tcp { syn_mss: Some(1460), ..tcp }.frame(&[]);
    owner.inject(a, &unknown);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![unknown], "flooded once");
    assert!(replica.sent(b).is_empty());
    assert_eq!(owner.dp.spread.placed_out, 0);

    // A port whose queue on the replica is gone (one that failed to open):
    // the SYN placed there comes back and the owner writes it.
    let c = owner.endpoint(NetworkId(0));
    owner.inject(c, &frame(mac(2), mac(3), 1));
    settle(&mut owner, &mut replica);
    owner.sent(b);
    let opening = Tcp { syn_mss: Some(1460), ..Tcp::between(3, 2) }.frame(&[]);
    owner.inject(c, &opening);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.dp.spread.placed_out, 1, "placed on the replica");
    assert!(replica.sent(b).is_empty(), "which has no queue of c");
    assert_eq!(owner.sent_frames(b), vec![opening], "and handed it back");
}

/// A segment of connection `port` with `len` payload bytes, from station
/// `from` (1 or 2) to the other.
fn data(port: u16, from: u8, len: usize) -> Vec<u8> {
    let tcp = Tcp::between(1, 2);
    let tcp = Tcp { src: (tcp.src.0, tcp.src.1, port), ..tcp };
    let tcp = if from == 1 { tcp } else { Tcp { src: tcp.dst, dst: tcp.src, ..tcp } };
    tcp.frame(&vec![7; len])
}

/// The owner is busy (900 ms of a second), the replica idle: the owner
/// samples the connections it writes for a window, two of them, one
/// (40 001) carrying three times the other's (40 002) bytes. At the
/// window's end, still as busy, moving either leaves 675 and 225
/// thousandths of a core; the lighter one is chosen to move (fewer of its
/// frames are in flight).
fn owner_decides_to_move_40_002(owner: &mut Harness, replica: &mut Harness, a: PortId, b: PortId) {
    owner.advance(Duration::from_secs(1));
    owner.dp.busy = Duration::from_millis(900);
    owner.dp.publish_load();
    for _ in 0..3 {
        owner.inject(a, &data(40_001, 1, 1000));
    }
    owner.inject(a, &data(40_002, 1, 1000));
    settle(owner, replica);
    assert_eq!(owner.sent(b).len(), 4, "written by the owner while it samples");
    owner.advance(Duration::from_millis(100));
    owner.dp.busy = Duration::from_millis(990);
    owner.dp.publish_load();
}

#[test]
fn a_busy_worker_moves_one_of_its_bulk_connections_to_an_idle_worker_with_the_frames_that_follow() {
    let (mut owner, mut replica, a, b) = learned_pair();
    owner_decides_to_move_40_002(&mut owner, &mut replica, a, b);
    assert_eq!(owner.dp.spread.placed_out, 0, "counted when its first frame is handed over");

    // Its frames the owner still reads, either way, go to the replica,
    // which writes them into its own queues (so tun steers the
    // connection's next frames there) and counts the connection once.
    let (forth, back) = (data(40_002, 1, 500), data(40_002, 2, 0));
    owner.inject(a, &forth);
    owner.inject(b, &back);
    owner.inject(a, &data(40_001, 1, 1000));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![forth]);
    assert_eq!(replica.sent_frames(a), vec![back]);
    assert_eq!(owner.sent_frames(b), vec![data(40_001, 1, 1000)], "the other connection stays");
    assert_eq!((owner.dp.spread.placed_out, replica.dp.spread.placed_in), (1, 1), "one connection moved");
    assert_eq!((replica.counters(a).rx_packets, replica.counters(b).rx_packets), (1, 1), "counted by the writer");

    // Once none of its frames reached the owner for a second, it is
    // forgotten there: a frame the kernel still steers to the owner is the
    // owner's to write.
    owner.advance(Duration::from_millis(1_100));
    owner.dp.publish_load();
    owner.inject(a, &data(40_002, 1, 10));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![data(40_002, 1, 10)]);
    assert!(replica.sent(b).is_empty());
}

/// A datagram of UDP flow `port` with `len` payload bytes, from station
/// `from` (1 or 2) to the other.
fn datagram(port: u16, from: u8, len: usize) -> Vec<u8> {
    let (one, two) = ((mac(1), ip(1), port), (mac(2), ip(2), 5201));
    if from == 1 { udp(one, two, &vec![7; len]) } else { udp(two, one, &vec![7; len]) }
}

/// Like [`owner_decides_to_move_40_002`], with three flows sampled while
/// the owner is busy: a TCP connection (40 001) with 40% of the bytes, a
/// UDP flow (40 002) with 50%, answered once if `answered`, another
/// connection (40 003) with 10%. Moving the UDP flow would even the load
/// best; the window ends, and the owner decides.
fn owner_samples_a_udp_flow_and_two_connections(
    owner: &mut Harness,
    replica: &mut Harness,
    a: PortId,
    b: PortId,
    answered: bool,
) {
    owner.advance(Duration::from_secs(1));
    owner.dp.busy = Duration::from_millis(900);
    owner.dp.publish_load();
    for _ in 0..4 {
        owner.inject(a, &data(40_001, 1, 1000));
    }
    for _ in 0..5 {
        owner.inject(a, &datagram(40_002, 1, 1000));
    }
    owner.inject(a, &data(40_003, 1, 1000));
    if answered {
        owner.inject(b, &datagram(40_002, 2, 0));
    }
    settle(owner, replica);
    assert_eq!(owner.sent(b).len(), 10, "written by the owner while it samples");
    assert_eq!(owner.sent(a).len(), usize::from(answered));
    owner.advance(Duration::from_millis(100));
    owner.dp.busy = Duration::from_millis(990);
    owner.dp.publish_load();
}

#[test]
fn a_busy_worker_moves_a_bulk_udp_flow_as_it_moves_a_connection() {
    let (mut owner, mut replica, a, b) = learned_pair();
    owner_samples_a_udp_flow_and_two_connections(&mut owner, &mut replica, a, b, true);

    // The UDP flow's datagrams, either way, go to the replica to write; a
    // TCP connection between the same two ports is another flow and stays.
    let (forth, back) = (datagram(40_002, 1, 500), datagram(40_002, 2, 0));
    owner.inject(a, &forth);
    owner.inject(b, &back);
    owner.inject(a, &data(40_001, 1, 1000));
    owner.inject(a, &data(40_002, 1, 100));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![forth]);
    assert_eq!(replica.sent_frames(a), vec![back]);
    assert_eq!(owner.sent_frames(b), vec![data(40_001, 1, 1000), data(40_002, 1, 100)]);
    assert_eq!((owner.dp.spread.placed_out, replica.dp.spread.placed_in), (1, 1), "one flow moved");
}

#[test]
fn a_one_way_udp_stream_is_not_moved_even_when_moving_it_would_even_the_load_best() {
    let (mut owner, mut replica, a, b) = learned_pair();
    // Never answered: tun would keep steering the stream's datagrams to the
    // owner's queue, so the connection with 40% of the bytes moves instead.
    owner_samples_a_udp_flow_and_two_connections(&mut owner, &mut replica, a, b, false);
    let (stream, moved) = (datagram(40_002, 1, 500), data(40_001, 1, 500));
    owner.inject(a, &stream);
    owner.inject(a, &moved);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![stream], "the stream stays");
    assert_eq!(replica.sent_frames(b), vec![moved], "the connection moved");
}

#[test]
fn a_connection_moved_back_is_written_by_the_worker_that_moved_it_first_and_never_bounces() {
    let (mut owner, mut replica, a, b) = learned_pair();
    owner_decides_to_move_40_002(&mut owner, &mut replica, a, b);
    owner.inject(a, &data(40_002, 1, 10));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(b), vec![data(40_002, 1, 10)], "moved to the replica");

    // Then the owner idles and the replica is busy with 40 002 and a
    // heavier connection: it moves 40 002 back.
    owner.advance(Duration::from_millis(100));
    owner.dp.publish_load();
    replica.advance(Duration::from_secs(1));
    replica.dp.busy = Duration::from_millis(900);
    replica.dp.publish_load();
    replica.inject(a, &data(40_002, 1, 1000));
    for _ in 0..3 {
        replica.inject(a, &data(40_003, 1, 1000));
    }
    settle(&mut owner, &mut replica);
    replica.sent(b);
    replica.advance(Duration::from_millis(100));
    replica.dp.busy = Duration::from_millis(990);
    replica.dp.publish_load();
    let back = data(40_002, 1, 20);
    replica.inject(a, &back);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![back], "handed back to the owner, which writes it");
    assert!(replica.sent(b).is_empty());

    // The owner forgot its own move: a frame of the connection it reads
    // now is its own to write, not handed to the replica again.
    let next = data(40_002, 1, 30);
    owner.inject(a, &next);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(b), vec![next], "no ping-pong");
    assert!(replica.sent(b).is_empty());
    assert_eq!(
        (
            owner.dp.spread.placed_out,
            owner.dp.spread.placed_in,
            replica.dp.spread.placed_out,
            replica.dp.spread.placed_in
        ),
        (1, 1, 1, 1),
        "moved once each way, counted once each way"
    );
}
