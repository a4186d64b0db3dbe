//! Batched tunnel sends: consecutive frames for one (peer, socket) leave as
//! one GSO train, a flood is segmented and encapsulated once for all its
//! peers, and an encrypted flood is sealed per peer, each copy with a
//! nonce of its own.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::super::handle::NetworkSpec;
use super::super::testing::frames::{
    BROADCAST, Tcp, frame, ip, mac, pattern, tcp4_checksums_ok, tso_hdr, udp, vtep, vxlan, with_partial_tcp4_checksum,
};
use super::super::testing::memory::Fault;
use super::super::testing::{Harness, Setup, overlay_network};
use crate::counters::DropReason;
use crate::port::{NetworkId, PortId};

const VNI: u32 = 4242;

/// UDP from station 2 to station 7 (behind host 2) with `len` payload
/// bytes tagged `tag`: one flow, so one sending socket.
fn to_seven(len: usize, tag: u8) -> Vec<u8> {
    udp((mac(2), ip(2), 5000), (mac(7), ip(7), 6000), &vec![tag; len])
}

/// A host-1 harness with an overlay, peers at hosts 2, 3 and 4 (their
/// ports, in that order) and one endpoint: a flood leaves three times.
fn overlay_with_three_peers() -> (Harness, Vec<PortId>, PortId) {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let peers = (2..=4).map(|n| h.peer(net, vtep(n))).collect();
    let a = h.endpoint(net);
    (h, peers, a)
}

/// A host-1 harness with an overlay, peers at hosts 2 and 3, one endpoint,
/// and station 7 learned behind host 2.
fn overlay_with_station_behind_two() -> (Harness, NetworkId, PortId, PortId) {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let p2 = h.peer(net, vtep(2));
    h.peer(net, vtep(3));
    let a = h.endpoint(net);
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 0)));
    h.run_until_idle();
    h.sent(a);
    assert_eq!(h.lookup(net, mac(7)), Some(p2));
    (h, net, a, p2)
}

#[test]
fn consecutive_frames_to_one_peer_leave_in_one_send_call() {
    let (mut h, _, a, _) = overlay_with_station_behind_two();
    let before = h.vtep_counters();
    let frames: Vec<Vec<u8>> = (1..=6).map(|tag| to_seven(100, tag)).collect();
    for f in &frames {
        h.inject(a, f);
    }
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 6);
    let send = sent[0].send;
    for (d, f) in sent.iter().zip(&frames) {
        assert_eq!((d.to, d.send, d.sender), (vtep(2), send, sent[0].sender), "one GSO train");
        assert_eq!(d.bytes, vxlan(VNI, f), "in order, each its own datagram");
    }
    let after = h.vtep_counters();
    assert_eq!(after.tx_sends - before.tx_sends, 1, "six frames, one send call");
    assert_eq!(after.tx_packets - before.tx_packets, 6);

    // Segments of a train are equal but the last: a shorter frame closes
    // it, a longer one starts the next.
    let sizes = [100, 100, 100, 60, 100, 100, 140];
    for (k, len) in sizes.iter().enumerate() {
        h.inject(a, &to_seven(*len, k as u8));
    }
    h.run_until_idle();
    let sends: Vec<usize> = h.sent_datagrams().iter().map(|d| d.send - send).collect();
    assert_eq!(sends, vec![1, 1, 1, 1, 2, 2, 3]);

    // Without GSO every datagram is its own send.
    h.underlay().set_gso_segments(1);
    for tag in 0..3 {
        h.inject(a, &to_seven(100, tag));
    }
    h.run_until_idle();
    let sends: Vec<usize> = h.sent_datagrams().iter().map(|d| d.send - send).collect();
    assert_eq!(sends, vec![4, 5, 6]);
}

#[test]
fn a_train_ends_where_the_peer_changes_and_its_failure_drops_each_frame() {
    let (mut h, net, a, p2) = overlay_with_station_behind_two();
    // Station 8 behind host 3.
    let p3 = h.dp.peers.lookup(vxlan::Vni::new(VNI).expect("a VNI"), vtep(3)).map(PortId).expect("peer 3");
    h.inject_datagram(vtep(3), &vxlan(VNI, &frame(BROADCAST, mac(8), 0)));
    h.run_until_idle();
    h.sent(a);
    assert_eq!(h.lookup(net, mac(8)), Some(p3));
    let to_eight = udp((mac(2), ip(2), 5000), (mac(8), ip(8), 6000), &[1; 100]);
    let calls = h.underlay().calls().len();
    for f in [to_seven(100, 1), to_seven(100, 2), to_eight.clone(), to_seven(100, 3)] {
        h.inject(a, &f);
    }
    h.run_until_idle();
    // Three messages: the train to host 2 ends at the frame for host 3.
    // They leave grouped by sending socket (the frame to host 3 is
    // another flow, so maybe another socket), each flow in order.
    let sent = h.sent_datagrams();
    let to_two: Vec<&Vec<u8>> = sent.iter().filter(|d| d.to == vtep(2)).map(|d| &d.bytes).collect();
    assert_eq!(
        to_two,
        [to_seven(100, 1), to_seven(100, 2), to_seven(100, 3)].map(|f| vxlan(VNI, &f)).iter().collect::<Vec<_>>()
    );
    let trains: Vec<(SocketAddr, usize)> = {
        let mut t: Vec<(SocketAddr, usize)> = sent.iter().map(|d| (d.to, d.send)).collect();
        t.dedup();
        t
    };
    assert_eq!(trains.len(), 3, "{trains:?}");
    assert_eq!(trains.iter().filter(|(to, _)| *to == vtep(2)).count(), 2);
    let sockets: HashSet<usize> = sent.iter().map(|d| d.sender).collect();
    assert_eq!(calls_since(&h, calls).len(), sockets.len(), "one sendmmsg per socket");

    // A full socket buffer drops every frame of the train, on its port:
    // one failed send took all three (sent one by one, two would pass).
    h.underlay().fail_sends(Fault::WouldBlock, 1);
    for tag in 0..3 {
        h.inject(a, &to_seven(100, tag));
    }
    h.run_until_idle();
    assert!(h.sent_datagrams().is_empty(), "one failed send, no other");
    assert_eq!(h.drops(p2, DropReason::TxQueueFull), 3);
    assert_eq!(h.drops(p3, DropReason::TxQueueFull), 0);
}

#[test]
fn a_flood_to_three_peers_is_encapsulated_once() {
    let (mut h, _, a) = overlay_with_three_peers();
    let broadcast = frame(BROADCAST, mac(2), 1);
    h.inject(a, &broadcast);
    h.run_until_idle();
    let mut sent = h.sent_datagrams();
    sent.sort_by_key(|d| d.to);
    assert_eq!(sent.iter().map(|d| d.to).collect::<Vec<_>>(), vec![vtep(2), vtep(3), vtep(4)]);
    assert!(sent.iter().all(|d| d.bytes == vxlan(VNI, &broadcast)));
    let c = h.vtep_counters();
    assert_eq!((c.tx_encapsulated, c.tx_sends, c.tx_packets), (1, 3, 3), "one encapsulation, a send per peer");

    // A TSO frame to an unknown station is cut into its four segments
    // once; every peer gets the same four datagrams in one GSO send.
    let payload = pattern(4 * 1410, 5);
    let tso = with_partial_tcp4_checksum(Tcp::between(2, 9).frame(&payload));
    h.inject_with_hdr(a, tso_hdr(1410), &tso);
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 12);
    for n in 2..=4 {
        let to: Vec<_> = sent.iter().filter(|d| d.to == vtep(n)).collect();
        assert_eq!(to.len(), 4);
        assert!(to.iter().all(|d| d.send == to[0].send), "one send per peer");
        let bytes: Vec<&Vec<u8>> = to.iter().map(|d| &d.bytes).collect();
        let first: Vec<&Vec<u8>> = sent[..4].iter().map(|d| &d.bytes).collect();
        assert_eq!(bytes, first, "the same datagrams for every peer");
    }
    let c = h.vtep_counters();
    assert_eq!((c.tx_encapsulated, c.tx_sends, c.tx_packets), (2, 6, 15));
}

#[test]
fn an_encrypted_flood_seals_every_copy_with_a_nonce_of_its_own() {
    let (mut one, mut two) = (Harness::with(Setup::host(1)), Harness::with(Setup::host(2)));
    let spec = NetworkSpec { key_epoch: Some(1), mtu: 1418, ..overlay_network(0, 4300) };
    let net = one.network(spec);
    two.network(spec);
    for n in 2..=4 {
        one.peer(net, vtep(n));
    }
    two.peer(net, vtep(1));
    let (a, b) = (one.endpoint(net), two.endpoint(net));

    // Two broadcasts, back to back, flooded to three peers.
    let floods = [frame(BROADCAST, mac(2), 1), frame(BROADCAST, mac(2), 2)];
    for f in &floods {
        one.inject(a, f);
    }
    one.run_until_idle();
    let sent = one.sent_datagrams();
    assert_eq!(sent.len(), 6);
    assert_eq!(one.vtep_counters().tx_encapsulated, 2, "each frame segmented once");
    let sessions: HashSet<&[u8]> = sent.iter().map(|d| &d.bytes[8..16]).collect();
    let counters: HashSet<&[u8]> = sent.iter().map(|d| &d.bytes[16..24]).collect();
    assert_eq!((sessions.len(), counters.len()), (1, 6), "one session, never a nonce twice");
    let bodies: HashSet<&[u8]> = sent.iter().map(|d| &d.bytes[24..]).collect();
    assert_eq!(bodies.len(), 6, "every copy sealed on its own");

    // Any host of the network opens every copy, and only once.
    let from = SocketAddr::new(vtep(1).ip(), 49_152);
    for d in &sent {
        two.inject_datagram(from, &d.bytes);
    }
    two.run_until_idle();
    let got = two.sent_frames(b);
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|f| floods.contains(f)));
    two.inject_datagram(from, &sent[4].bytes);
    two.run_until_idle();
    assert!(two.sent(b).is_empty());
    assert_eq!(two.vtep_counters().drops.get(DropReason::Replayed), 1);

    // Known unicast, sealed: consecutive frames to one peer, one send.
    two.inject(b, &udp((mac(3), ip(3), 6000), (mac(2), ip(2), 5000), b"learn me"));
    two.run_until_idle();
    for d in two.sent_datagrams() {
        one.inject_datagram(SocketAddr::new(vtep(2).ip(), 40_000), &d.bytes);
    }
    one.run_until_idle();
    one.sent(a);
    let sends = one.underlay().sends();
    for tag in 0..4u8 {
        one.inject(a, &udp((mac(2), ip(2), 5000), (mac(3), ip(3), 6000), &[tag; 200]));
    }
    one.run_until_idle();
    let sent = one.sent_datagrams();
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|d| d.to == vtep(2) && d.send == sent[0].send));
    assert_eq!(one.underlay().sends() - sends, 1);
    for d in &sent {
        two.inject_datagram(from, &d.bytes);
    }
    two.run_until_idle();
    assert_eq!(two.sent_frames(b).len(), 4, "all four open");
}

#[test]
fn an_underlay_capture_sees_every_datagram_of_batched_and_sealed_trains() {
    use std::sync::Arc;
    use std::time::Duration;

    use ctl::proto::Direction;
    use etherparse::{SlicedPacket, TransportSlice};

    use super::super::handle::Command;
    use crate::daemon::capture::{CaptureRing, Popped, Scope, Session};

    let mut h = Harness::with(Setup::host(1));
    let net = h.network(NetworkSpec { key_epoch: Some(1), mtu: 1418, ..overlay_network(0, 4300) });
    for n in 2..=3 {
        h.peer(net, vtep(n));
    }
    let a = h.endpoint(net);
    let ring = Arc::new(CaptureRing::new(64, 65_536, None));
    let session = Box::new(Session::new(ring.clone(), Scope::Underlay, None));
    h.call(|reply| Command::Capture { session, reply });

    // Three broadcasts, each sealed once per peer (the plan alternates
    // peers, so each copy is its own send).
    for tag in 1..=3 {
        h.inject(a, &frame(BROADCAST, mac(2), tag));
    }
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 6);
    assert_eq!(h.vtep_counters().tx_sends, 6, "the peers alternate: no train");
    let mut captured = Vec::new();
    while let Popped::Record(r) = ring.pop(Duration::ZERO) {
        assert_eq!(r.direction, Direction::Tx);
        let payload = {
            let packet = SlicedPacket::from_ip(&r.data).expect("an IP packet");
            let Some(TransportSlice::Udp(udp)) = &packet.transport else { panic!("not UDP") };
            udp.payload().to_vec()
        };
        captured.push(payload);
        ring.recycle(r);
    }
    let mut sent: Vec<Vec<u8>> = sent.into_iter().map(|d| d.bytes).collect();
    sent.sort();
    captured.sort();
    assert_eq!(captured, sent, "the capture shows what the trains carried, sealed");
}

/// The send calls made since `before` calls: (messages, datagrams) each.
fn calls_since(h: &Harness, before: usize) -> Vec<(usize, usize)> {
    h.underlay().calls()[before..].iter().map(|c| (c.messages, c.datagrams)).collect()
}

#[test]
fn messages_that_cannot_form_a_train_share_one_sendmmsg() {
    let (mut h, _, a, _) = overlay_with_station_behind_two();
    // Mixed sizes to one peer: three GSO trains (a shorter frame closes
    // one, a longer one starts the next), one system call.
    let before = h.underlay().calls().len();
    for (k, len) in [100, 100, 100, 60, 100, 100, 140].iter().enumerate() {
        h.inject(a, &to_seven(*len, k as u8));
    }
    h.run_until_idle();
    let sent = h.sent_datagrams();
    let trains: HashSet<usize> = sent.iter().map(|d| d.send).collect();
    assert_eq!((sent.len(), trains.len()), (7, 3));
    assert_eq!(calls_since(&h, before), vec![(3, 7)], "three trains, one sendmmsg");
    let c = h.vtep_counters();
    assert_eq!(c.tx_calls, h.underlay().calls().len() as u64);

    // A flood to both peers: each copy is a message of its own, and the
    // two leave in one call (a frame's copies share its sending socket).
    let before = h.underlay().calls().len();
    h.inject(a, &frame(BROADCAST, mac(2), 9));
    h.run_until_idle();
    let sent = h.sent_datagrams();
    let mut to: Vec<SocketAddr> = sent.iter().map(|d| d.to).collect();
    to.sort();
    assert_eq!(to, vec![vtep(2), vtep(3)]);
    assert_ne!(sent[0].send, sent[1].send, "a message per peer");
    assert_eq!(calls_since(&h, before), vec![(2, 2)], "one call for the whole flood");

    // Three broadcasts flooded back to back: six messages in one call per
    // sending socket the frames hash to.
    let before = h.underlay().calls().len();
    for tag in 10..13 {
        h.inject(a, &frame(BROADCAST, mac(2), tag));
    }
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 6);
    let sockets: HashSet<usize> = sent.iter().map(|d| d.sender).collect();
    let calls = calls_since(&h, before);
    assert_eq!(calls.len(), sockets.len(), "one call per sending socket: {calls:?}");
    assert_eq!(calls.iter().map(|c| c.0).sum::<usize>(), 6);
    let c = h.vtep_counters();
    assert_eq!((c.tx_calls, c.tx_sends), (h.underlay().calls().len() as u64, h.underlay().sends() as u64));
}

#[test]
fn a_flood_of_a_tso_frame_to_three_peers_is_one_call_of_three_trains() {
    let (mut h, _, a) = overlay_with_three_peers();
    let payload = pattern(4 * 1410, 5);
    let tso = with_partial_tcp4_checksum(Tcp::between(2, 9).frame(&payload));
    let before = h.underlay().calls().len();
    h.inject_with_hdr(a, tso_hdr(1410), &tso);
    h.run_until_idle();
    assert_eq!(h.sent_datagrams().len(), 12);
    assert_eq!(calls_since(&h, before), vec![(3, 12)], "three GSO trains of four in one sendmmsg");
    assert_eq!(h.vtep_counters().tx_encapsulated, 1);
}

#[test]
fn a_failed_message_drops_only_its_frames_and_a_full_buffer_the_rest() {
    let (mut h, ports, a) = overlay_with_three_peers();
    // The first message of the flood's call fails for its destination
    // alone (say, no route): the other two leave in a second call.
    h.underlay().fail_sends(Fault::Os(libc::ENETUNREACH), 1);
    let before = h.underlay().calls().len();
    h.inject(a, &frame(BROADCAST, mac(2), 1));
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 2);
    assert_eq!(calls_since(&h, before), vec![(2, 2)]);
    let tx_error: u64 = ports.iter().map(|&p| h.drops(p, DropReason::TxError)).sum();
    assert_eq!(tx_error, 1, "one copy failed");
    assert!(sent.iter().all(|d| d.bytes == vxlan(VNI, &frame(BROADCAST, mac(2), 1))));

    // A full socket buffer refuses the whole call: every copy is dropped,
    // and no further call is tried.
    h.underlay().fail_sends(Fault::WouldBlock, 1);
    let before = h.underlay().calls().len();
    h.inject(a, &frame(BROADCAST, mac(2), 2));
    h.run_until_idle();
    assert!(h.sent_datagrams().is_empty());
    assert!(calls_since(&h, before).is_empty());
    let full: u64 = ports.iter().map(|&p| h.drops(p, DropReason::TxQueueFull)).sum();
    assert_eq!(full, 3);
}

#[test]
fn a_train_the_underlay_refuses_leaves_as_single_datagrams_and_gso_stays_off() {
    // A driver without UDP GSO: the kernel refuses the first train with
    // EIO and the socket sends datagrams singly from then on.
    let (mut h, _, a, p2) = overlay_with_station_behind_two();
    h.underlay().refuse_gso(libc::EIO);
    let payload = pattern(4 * 1410, 9);
    let tso = with_partial_tcp4_checksum(Tcp::between(2, 7).frame(&payload));
    let hdr = tso_hdr(1410);
    let before = (h.vtep_counters(), h.underlay().calls().len(), h.underlay().sends());
    h.inject_with_hdr(a, hdr, &tso);
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 4, "the refused train's four segments still left");
    let mut payloads = Vec::new();
    for d in &sent {
        assert_eq!(d.to, vtep(2));
        let (_, inner) = vxlan::decapsulate(&d.bytes).expect("VXLAN");
        assert!(tcp4_checksums_ok(inner), "a complete segment");
        payloads.extend_from_slice(&inner[54..]);
    }
    assert_eq!(payloads, payload, "in order, nothing lost");
    let sends: HashSet<usize> = sent.iter().map(|d| d.send).collect();
    assert_eq!(sends.len(), 4, "each its own message");
    assert_eq!(h.drops(p2, DropReason::TxError), 0);
    let after = h.vtep_counters();
    assert_eq!(after.tx_packets - before.0.tx_packets, 4);
    assert_eq!(after.tx_sends - before.0.tx_sends, (h.underlay().sends() - before.2) as u64);
    // The refused call sent nothing; the retry is one more.
    assert_eq!(after.tx_calls - before.0.tx_calls, 1);
    assert_eq!(calls_since(&h, before.1), vec![(4, 4)]);

    // From then on no train is built: six small frames, six messages.
    let before = h.underlay().sends();
    for tag in 0..6 {
        h.inject(a, &to_seven(100, tag));
    }
    h.run_until_idle();
    assert_eq!(h.sent_datagrams().len(), 6);
    assert_eq!(h.underlay().sends() - before, 6);
}

#[test]
fn the_kernels_drops_at_the_vtep_socket_are_counted_once_a_second_as_deltas() {
    let (mut h, _, _) = overlay_with_three_peers();
    h.underlay().set_kernel_drops(40);
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.vtep_counters().drops.get(DropReason::TunnelRxDropped), 40);
    h.underlay().set_kernel_drops(45);
    h.advance(std::time::Duration::from_millis(500));
    h.step();
    assert_eq!(h.vtep_counters().drops.get(DropReason::TunnelRxDropped), 40, "read once a second");
    h.advance(std::time::Duration::from_millis(500));
    h.step();
    assert_eq!(h.vtep_counters().drops.get(DropReason::TunnelRxDropped), 45, "the delta, not the total again");
    assert_eq!(h.vtep_counters().drops.total(), 45, "no other drop");
    // The kernel's counter is 32 bits wide and wraps.
    h.underlay().set_kernel_drops(u32::MAX);
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    h.underlay().set_kernel_drops(4);
    h.advance(std::time::Duration::from_secs(1));
    h.step();
    assert_eq!(h.vtep_counters().drops.get(DropReason::TunnelRxDropped), u64::from(u32::MAX) + 5, "across the wrap");
}
