//! A plain overlay spread over two workers: the owner's tunnel ports are
//! mirrored on the replica, which then receives a flow's packets from the
//! underlay and sends its frames into the tunnel itself, hands anything
//! else to the owner, and never forwards from one tunnel port to another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::super::handle::{Command, NetworkSpec};
use super::super::spread::{ReplicaKeys, ReplicaOverlay};
use super::super::testing::frames::{BROADCAST, frame, icmp, ip, mac, udp, vtep, vxlan};
use super::super::testing::{Harness, Setup, overlay_network};
use super::spread::settle;
use crate::counters::DropReason;
use crate::events::EventKind;
use crate::port::{NetworkId, PortConfig, PortId};

const VNI: u32 = 4242;

/// Worker 0 owns overlay `VNI` on host 1 with endpoint `a` and peers at
/// hosts 2 and 3; worker 1 holds a replica with its queue of `a`.
fn spread_overlay() -> (Harness, Harness, NetworkId, PortId, [PortId; 2]) {
    spread_overlay_of(overlay_network(0, VNI))
}

/// [`spread_overlay`] of network `spec` (spread).
fn spread_overlay_of(spec: NetworkSpec) -> (Harness, Harness, NetworkId, PortId, [PortId; 2]) {
    spread_overlay_on(Setup::host, spec)
}

/// [`spread_overlay`] of network `spec` (spread), both workers on host 1
/// as `setup` makes it.
fn spread_overlay_on(setup: fn(u8) -> Setup, spec: NetworkSpec) -> (Harness, Harness, NetworkId, PortId, [PortId; 2]) {
    let (mut owner, mut replica) = (Harness::with(setup(1)), Harness::with(setup(1)));
    Harness::link(&mut [&mut owner, &mut replica]);
    let spec = NetworkSpec { spread: true, ..spec };
    let net = owner.network(spec);
    let fdb = crate::fdb::Fdb::new(crate::fdb::DEFAULT_FDB_LIMIT);
    // An encrypted overlay's workers seal in lanes of one set of sessions,
    // the owner's set first (as the handle does).
    let keys = spec.key_epoch.map(|key_base| {
        let lane = crypto::SessionLane::random(2).unwrap();
        let host = Arc::new(crypto::HostSessions::new(2));
        let shared = host.clone();
        owner.call(|reply| Command::SpreadKeys { network: net, lane, host: shared, reply }).expect("keys in lanes");
        ReplicaKeys {
            key_base,
            cipher: spec.cipher,
            key_rotation: spec.key_rotation,
            store_keys: spec.store_keys,
            lane,
            host,
        }
    });
    let vni = vxlan::Vni::new(VNI).unwrap();
    let overlay = Some(ReplicaOverlay { vni, mtu: spec.mtu, mss_clamp: spec.mss_clamp, keys });
    replica
        .call(|reply| Command::AddReplica { id: net, fdb, owner: 0, overlay, reply })
        .map_err(|(_, e)| e)
        .expect("the replica is taken");
    let a = owner.endpoint(net);
    let config = PortConfig { mtu: spec.mtu, ..PortConfig::access(net) };
    assert_eq!(replica.endpoint_with(config), a, "the same port id");
    let peers = [owner.peer(net, vtep(2)), owner.peer(net, vtep(3))];
    settle(&mut owner, &mut replica);
    (owner, replica, net, a, peers)
}

/// A datagram from host `n`'s VTEP (any source port: the kernel's hash
/// picked the receiving worker by it).
fn from_host(n: u8) -> SocketAddr {
    SocketAddr::new(vtep(n).ip(), 50_000 + u16::from(n))
}

#[test]
fn a_replica_of_a_spread_overlay_carries_known_flows_both_ways_itself() {
    let (mut owner, mut replica, net, a, [p2, _p3]) = spread_overlay();
    // Unknown yet: station 7 behind host 2 broadcasts into the replica's
    // socket; the replica hands it to the owner, which learns it and
    // delivers it (on its own queue of `a`).
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(7), 1)]);
    assert!(replica.sent_frames(a).is_empty());
    assert_eq!(owner.lookup(net, mac(7)), Some(p2));
    // Station 1 behind `a` answers through the owner's queue.
    owner.inject(a, &frame(mac(7), mac(1), 2));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_datagrams().len(), 1);

    // Both known: the replica forwards from the tunnel to `a` and from `a`
    // into the tunnel itself, the owner sees nothing.
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(mac(1), mac(7), 3)));
    replica.inject(a, &frame(mac(7), mac(1), 4));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(7), 3)]);
    let sent = replica.sent_datagrams();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].to, &sent[0].bytes), (vtep(2), &vxlan(VNI, &frame(mac(7), mac(1), 4))));
    assert!(owner.sent_frames(a).is_empty() && owner.sent_datagrams().is_empty(), "the owner did nothing");
    assert_eq!(replica.counters(p2).rx_packets, 1, "the replica counts its tunnel port's frames");
    assert!(replica.events().0.is_empty(), "a mirrored port raises no event");
    let tunnels = replica.snapshot().tunnels;
    assert!(tunnels.is_empty(), "the replica lists no tunnel port: the owner does ({tunnels:?})");
    assert_eq!(owner.snapshot().tunnels.len(), 2);
}

#[test]
fn a_replica_never_forwards_from_one_tunnel_port_into_another() {
    let (mut owner, mut replica, net, _a, [p2, p3]) = spread_overlay();
    // Station 7 behind host 2 and station 8 behind host 3, both learned.
    owner.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    owner.inject_datagram(from_host(3), &vxlan(VNI, &frame(BROADCAST, mac(8), 2)));
    settle(&mut owner, &mut replica);
    assert_eq!((owner.lookup(net, mac(7)), owner.lookup(net, mac(8))), (Some(p2), Some(p3)));
    // 7 → 8 reaches the replica: known unicast between two ports it has,
    // which it drops as the owner would (split horizon), and nothing leaves.
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(mac(8), mac(7), 3)));
    settle(&mut owner, &mut replica);
    assert!(replica.sent_datagrams().is_empty(), "the replica sent it into a tunnel");
    assert!(owner.sent_datagrams().is_empty(), "the owner sent it into a tunnel");
    assert_eq!(replica.drops(p2, DropReason::SplitHorizon), 1, "dropped where it arrived");
}

#[test]
fn a_peer_the_owner_removes_is_gone_from_the_replica_too() {
    let (mut owner, mut replica, net, a, _) = spread_overlay();
    assert!(owner.remove_peer(net, vtep(2)));
    settle(&mut owner, &mut replica);
    // The replica drops the stranger's datagram itself (the VTEP does not
    // learn peers): nothing goes to the owner.
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.vtep_counters().drops.get(DropReason::UnknownPeer), 1);
    assert_eq!(owner.vtep_counters().drops.get(DropReason::UnknownPeer), 0);
    assert!(owner.sent_frames(a).is_empty() && replica.sent_frames(a).is_empty());
    // Host 3 is still a peer there.
    replica.inject_datagram(from_host(3), &vxlan(VNI, &frame(BROADCAST, mac(8), 2)));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(8), 2)]);
}

#[test]
fn a_frame_too_big_for_the_tunnel_on_a_replica_is_answered_by_the_owners_gateway() {
    // A network MTU above what the tunnel carries (1450).
    let (mut owner, mut replica, net, a, [p2, _]) =
        spread_overlay_of(NetworkSpec { mtu: 1500, ..overlay_network(0, VNI) });
    owner.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 0)));
    owner.inject(a, &frame(mac(7), mac(2), 1));
    settle(&mut owner, &mut replica);
    owner.sent(a);
    owner.sent_datagrams();
    assert_eq!(owner.lookup(net, mac(2)), Some(a));

    // 1500 bytes of IP with DF from station 2 to station 7, on the
    // replica's queue: it has no gateway, the owner answers.
    let big = udp((mac(2), ip(2), 5000), (mac(7), ip(7), 6000), &[0x33; 1472]);
    replica.inject(a, &big);
    settle(&mut owner, &mut replica);
    assert!(replica.sent_datagrams().is_empty() && owner.sent_datagrams().is_empty(), "never fragmented");
    assert_eq!(owner.drops(p2, DropReason::TooBigForTunnel), 1, "counted once, by the owner");
    assert_eq!(replica.drops(p2, DropReason::TooBigForTunnel), 0);
    let answers = owner.sent_frames(a);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let answer = icmp(&answers[0]).expect("an ICMP message");
    assert_eq!((answer.src, answer.dst), (ip(1), ip(2)), "from the network's gateway");
}

/// The VTEP on host 1, learning peers (`--learn-peers`).
fn learning_host(n: u8) -> Setup {
    Setup::host(n).learning()
}

#[test]
fn a_replica_hands_an_unknown_vteps_datagrams_to_the_owner_which_learns_it_for_both() {
    let (mut owner, mut replica, net, a, _) = spread_overlay_on(learning_host, overlay_network(0, VNI));
    // Host 4 is no peer: its first datagram reaches the replica's socket,
    // which hands it over; the owner learns host 4, delivers the frame and
    // mirrors the new tunnel port on the replica.
    replica.inject_datagram(from_host(4), &vxlan(VNI, &frame(BROADCAST, mac(9), 1)));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(9), 1)]);
    assert!(replica.sent_frames(a).is_empty());
    let p4 = owner.lookup(net, mac(9)).expect("station 9 learned behind host 4");
    let tunnels = owner.snapshot().tunnels;
    assert!(tunnels.iter().any(|t| t.port == p4 && t.learned), "{tunnels:?}");
    assert_eq!(replica.vtep_counters().drops.get(DropReason::UnknownPeer), 0);
    assert_eq!(owner.vtep_counters().drops.get(DropReason::UnknownPeer), 0);

    // Station 1 behind `a` answers (through the owner's queue), and host 4's
    // next datagram on the replica is the replica's own to deliver.
    owner.inject(a, &frame(mac(9), mac(1), 2));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_datagrams().len(), 1, "the answer went to host 4");
    replica.inject_datagram(from_host(4), &vxlan(VNI, &frame(mac(1), mac(9), 3)));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(9), 3)]);
    assert!(owner.sent_frames(a).is_empty(), "the owner did nothing");
    assert_eq!(replica.counters(p4).rx_packets, 1);
}

#[test]
fn a_learned_peer_heard_only_by_a_replica_does_not_age_out_on_its_owner() {
    let (mut owner, mut replica, net, a, _) = spread_overlay_on(learning_host, overlay_network(0, VNI));
    replica.inject_datagram(from_host(4), &vxlan(VNI, &frame(BROADCAST, mac(9), 1)));
    settle(&mut owner, &mut replica);
    owner.sent_frames(a);
    let p4 = owner.lookup(net, mac(9)).expect("host 4 learned");
    // Station 1 behind `a` is known everywhere.
    owner.inject(a, &frame(mac(9), mac(1), 0));
    settle(&mut owner, &mut replica);
    owner.sent_datagrams();
    let learned = |h: &mut Harness| h.snapshot().tunnels.iter().any(|t| t.port == p4);
    // For 10 minutes (learned peers age after 5 without packets) only the
    // replica hears host 4 (and station 1), every 100 s; the owner keeps
    // the port.
    for _ in 0..6 {
        for h in [&mut owner, &mut replica] {
            h.advance(Duration::from_secs(100));
        }
        replica.inject_datagram(from_host(4), &vxlan(VNI, &frame(mac(1), mac(9), 2)));
        replica.inject(a, &frame(mac(9), mac(1), 3));
        settle(&mut owner, &mut replica);
        assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(9), 2)], "delivered by the replica");
        assert_eq!(replica.sent_datagrams().len(), 1, "sent by the replica");
        assert!(learned(&mut owner), "host 4 aged out on its owner while the replica heard it");
    }
    assert!(owner.sent_frames(a).is_empty() && owner.vtep_counters().rx_packets == 0, "the owner heard nothing");
    assert_eq!(owner.vtep_counters().drops.get(DropReason::UnknownPeer), 0);
    // Silent for 5 minutes more: aged out on the owner, unmirrored on the
    // replica, whose next datagram from host 4 is handed over (and learned
    // again).
    for h in [&mut owner, &mut replica] {
        h.advance(Duration::from_secs(301));
    }
    settle(&mut owner, &mut replica);
    owner.step();
    settle(&mut owner, &mut replica);
    assert!(!learned(&mut owner), "host 4 stayed without packets");
    replica.inject_datagram(from_host(4), &vxlan(VNI, &frame(BROADCAST, mac(9), 3)));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(9), 3)], "learned again, by the owner");
}

#[test]
fn on_a_learning_vtep_a_peers_packets_reaching_a_replica_before_its_mirror_are_delivered_by_the_owner() {
    let (mut owner, mut replica, _net, a, [p2, _]) = spread_overlay_on(learning_host, overlay_network(0, VNI));
    // As if the owner had just made host 2's port and its mirror were still
    // on the way: the replica has no port for host 2.
    replica.dp.unmirror_tunnel(p2);
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(7), 1)], "delivered by the owner");
    assert_eq!(owner.counters(p2).rx_packets, 1, "from host 2's port");
    assert!(replica.sent_frames(a).is_empty());
    for h in [&owner, &replica] {
        assert_eq!(h.vtep_counters().drops.get(DropReason::UnknownPeer), 0);
    }
}

#[test]
fn frames_a_replica_handed_over_for_a_removed_peer_are_not_delivered_as_the_next_peers() {
    let (mut owner, mut replica, net, a, [p2, _]) = spread_overlay();
    // The owner removes host 2 and at once makes host 4's port, which takes
    // host 2's id; the replica has not read either change yet.
    assert!(owner.remove_peer(net, vtep(2)));
    assert_eq!(owner.peer(net, vtep(4)), p2, "the freed id is reused");
    // Meanwhile the replica read a broadcast from host 2 through the port
    // it still mirrors, and handed it over (its commands not read yet).
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    replica.dp.tunnel_ready = true;
    replica.dp.read_batch();
    replica.dp.forward();
    settle(&mut owner, &mut replica);
    assert!(owner.sent_frames(a).is_empty(), "delivered as host 4's");
    assert_eq!(owner.lookup(net, mac(7)), None, "station 7 learned behind host 4");
    assert!(owner.sent_datagrams().is_empty());
}

#[test]
fn a_capture_of_a_spread_overlays_tunnel_port_sees_what_the_replica_forwards() {
    use std::sync::Arc;

    use crate::daemon::capture::{CaptureRing, Popped, Scope, Session};

    let (mut owner, mut replica, net, a, [p2, _]) = spread_overlay();
    owner.inject_datagram(from_host(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    owner.inject(a, &frame(mac(7), mac(1), 2));
    settle(&mut owner, &mut replica);
    owner.sent_frames(a);
    owner.sent_datagrams();
    assert_eq!(replica.lookup(net, mac(1)), Some(a));

    // One capture of host 2's tunnel port and of a port the replica does
    // not hold (the gateway stand-in is the owner's): asked of both workers,
    // as the handle does while an overlay is spread.
    let ring = Arc::new(CaptureRing::new(16, 65_536, None));
    let scope = Scope::Ports(vec![p2, PortId(9_999)]);
    for h in [&mut owner, &mut replica] {
        let session = Box::new(Session::new(ring.clone(), scope.clone(), None));
        h.call(|reply| Command::Capture { session, reply });
    }
    let stray = Box::new(Session::new(ring.clone(), Scope::Ports(vec![PortId(9_999)]), None));
    replica.call(|reply| Command::Capture { session: stray, reply });

    // Both directions of a flow the replica alone carries.
    replica.inject_datagram(from_host(2), &vxlan(VNI, &frame(mac(1), mac(7), 3)));
    replica.inject(a, &frame(mac(7), mac(1), 4));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a).len(), 1);
    assert_eq!(replica.sent_datagrams().len(), 1);
    let mut captured = Vec::new();
    while let Popped::Record(r) = ring.pop(std::time::Duration::ZERO) {
        captured.push((r.port, r.direction, r.data.clone()));
        ring.recycle(r);
    }
    use ctl::proto::Direction::{Rx, Tx};
    captured.sort_by_key(|(_, direction, _)| *direction == Tx);
    assert_eq!(captured, vec![(p2, Rx, frame(mac(1), mac(7), 3)), (p2, Tx, frame(mac(7), mac(1), 4))]);
    // The session of a port the replica lacks was not kept: removing host
    // 2's port on both workers ends the capture.
    assert!(owner.remove_peer(net, vtep(2)));
    settle(&mut owner, &mut replica);
    for h in [&mut owner, &mut replica] {
        h.step();
    }
    assert!(matches!(ring.pop(std::time::Duration::ZERO), Popped::Ended), "the capture outlived its port");
}

#[test]
fn an_aes_256_gcm_spread_overlays_replica_seals_and_opens_with_the_networks_cipher() {
    let cipher = crypto::Cipher::Aes256Gcm;
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, cipher, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, _net, a, _) = spread_overlay_of(spec);
    let (mut far, b) = far_host(2, spec);
    let hello = sealed_on(&mut far, b, &frame(BROADCAST, mac(7), 1), 0);
    assert_eq!(hello[0], 0xE5, "host 2 seals with AES-256-GCM");
    owner.inject_datagram(from_host(2), &hello);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(7), 1)], "the owner opened it");
    owner.inject(a, &frame(mac(7), mac(1), 2));
    settle(&mut owner, &mut replica);
    let from_owner = owner.sent_datagrams();
    // The replica seals a frame of its own queue with the network's cipher.
    replica.inject(a, &frame(mac(7), mac(1), 3));
    settle(&mut owner, &mut replica);
    let from_replica = replica.sent_datagrams();
    assert_eq!(from_replica.len(), 1, "the replica sent it");
    assert_eq!(crypto::Header::parse(&from_replica[0].bytes).map(|h| h.cipher), Ok(cipher));
    for d in from_owner.iter().chain(&from_replica) {
        far.inject_datagram(SocketAddr::new(vtep(1).ip(), 49_152), &d.bytes);
    }
    far.run_until_idle();
    assert_eq!(far.sent_frames(b), vec![frame(mac(7), mac(1), 2), frame(mac(7), mac(1), 3)]);
    // And opens host 2's packets of a session steered to it.
    let answer = sealed_on(&mut far, b, &frame(mac(1), mac(7), 4), 1);
    owner.inject_datagram(from_host(2), &answer);
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(7), 4)], "opened and delivered by the replica");
    for h in [&owner, &replica] {
        assert_eq!(h.vtep_counters().drops.total(), 0);
    }
}

#[test]
fn an_encrypted_spread_overlays_workers_each_seal_in_their_own_session_and_refuse_each_others() {
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, net, a, [p2, _]) = spread_overlay_of(spec);
    // Host 2, one worker, with station 7 behind endpoint `b`.
    let (mut far, b) = far_host(2, spec);
    let session = |packet: &[u8]| crypto::Header::parse(packet).expect("an encrypted packet").session_id;

    // Station 7 announces itself; station 1 behind `a` answers.
    let hello = sealed_on(&mut far, b, &frame(BROADCAST, mac(7), 1), 0);
    owner.inject_datagram(from_host(2), &hello);
    settle(&mut owner, &mut replica);
    owner.inject(a, &frame(mac(7), mac(1), 2));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(7), 1)]);
    let from_owner = owner.sent_datagrams();
    assert_eq!(from_owner.len(), 1);
    // The replica seals a frame of its own queue of `a` itself, in another
    // session, which a receiver with two workers steers to its other one
    // (whatever the flow: each sending worker lands on its own).
    replica.inject(a, &frame(mac(7), mac(1), 3));
    settle(&mut owner, &mut replica);
    let from_replica = replica.sent_datagrams();
    assert_eq!(from_replica.len(), 1, "the replica sent it");
    let (s_owner, s_replica) = (session(&from_owner[0].bytes), session(&from_replica[0].bytes));
    assert_ne!(s_owner, s_replica);
    assert_ne!(crypto::lanes::receiving_thread(s_owner, 2), crypto::lanes::receiving_thread(s_replica, 2));
    // Host 2 opens both.
    for d in from_owner.iter().chain(&from_replica) {
        far.inject_datagram(SocketAddr::new(vtep(1).ip(), 49_152), &d.bytes);
    }
    far.run_until_idle();
    assert_eq!(far.sent_frames(b), vec![frame(mac(7), mac(1), 2), frame(mac(7), mac(1), 3)]);

    // Each worker refuses the other's packet sent back to it.
    owner.inject_datagram(from_host(2), &from_replica[0].bytes);
    replica.inject_datagram(from_host(2), &from_owner[0].bytes);
    settle(&mut owner, &mut replica);
    for h in [&owner, &replica] {
        assert_eq!(h.vtep_counters().drops.get(DropReason::Reflected), 1);
    }
    // The replica opens host 2's packets of a session steered to it, and
    // delivers them itself. The owner, reading one from its own socket (as
    // UDP GRO can make happen), hands it to the replica unopened: only the
    // replica's window judges the session, so the same packet again, by
    // either socket, is a replay there.
    let answer = sealed_on(&mut far, b, &frame(mac(1), mac(7), 4), 1);
    owner.inject_datagram(from_host(2), &answer);
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(7), 4)], "opened and delivered by the replica");
    assert!(owner.sent_frames(a).is_empty());
    assert_eq!(replica.counters(p2).rx_packets, 1);
    replica.inject_datagram(from_host(2), &answer);
    settle(&mut owner, &mut replica);
    owner.inject_datagram(from_host(2), &answer);
    settle(&mut owner, &mut replica);
    assert!(replica.sent_frames(a).is_empty() && owner.sent_frames(a).is_empty());
    assert_eq!(replica.vtep_counters().drops.get(DropReason::Replayed), 2);
    assert_eq!(owner.vtep_counters().drops.get(DropReason::Replayed), 0, "the owner judged none");
    assert_eq!(owner.vtep_counters().drops.get(DropReason::Misdirected), 0);

    // A new epoch reaches both (the handle tells each); only the owner
    // raises the event.
    for h in [&mut owner, &mut replica] {
        h.call(|reply| Command::SetKeyEpoch { network: net, epoch: 4, reply }).expect("epoch 4");
    }
    replica.inject(a, &frame(mac(7), mac(1), 5));
    settle(&mut owner, &mut replica);
    let rotated = replica.sent_datagrams();
    assert_eq!(rotated[0].bytes[4..8], 4u32.to_be_bytes(), "the replica seals with epoch 4");
    let events = |h: &Harness| h.events().0.iter().filter(|e| matches!(e.kind, EventKind::KeyRotated { .. })).count();
    assert_eq!((events(&owner), events(&replica)), (1, 0));
}

#[test]
fn a_one_worker_hosts_flows_reach_every_worker_of_a_spread_receiver_in_sessions_of_their_own() {
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, _net, a, [p2, _]) = spread_overlay_of(spec);
    // Host 2 seals on one worker, unspread: its own lane, no steering.
    let (mut far, b) = far_host(2, spec);
    // Station 1 behind `a` is known (a flood would go by the owner).
    owner.inject(a, &frame(BROADCAST, mac(1), 0));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_datagrams().len(), 2, "flooded to hosts 2 and 3");
    let flows = 16u8;
    let mut session_of_port = std::collections::HashMap::new();
    // Twice: the first round's new stations are learned by the owner (a
    // replica hands it a frame from an unknown source), the second round's
    // frames are each delivered by the worker that opened them.
    for round in 0..2 {
        for station in 10..10 + flows {
            far.inject(b, &frame(mac(1), mac(station), station));
        }
        far.run_until_idle();
        let sent = far.sent_datagrams();
        assert_eq!(sent.len(), usize::from(flows));
        let mut steered = [0usize; 2];
        for d in &sent {
            let session = crypto::Header::parse(&d.bytes).expect("an encrypted packet").session_id;
            // One outer source port carries one session (a receiver's GRO
            // merges by 4-tuple).
            assert_eq!(*session_of_port.entry(d.sender).or_insert(session), session, "sender {}", d.sender);
            // Delivered where host 1's steering program would put it.
            let worker = crypto::lanes::receiving_thread(session, 2) as usize;
            steered[worker] += 1;
            let h = if worker == 0 { &mut owner } else { &mut replica };
            h.inject_datagram(from_host(2), &d.bytes);
        }
        assert!(steered.iter().all(|&n| n > 0), "both workers get a share: {steered:?}");
        settle(&mut owner, &mut replica);
        let delivered = [owner.sent_frames(a).len(), replica.sent_frames(a).len()];
        if round == 0 {
            assert_eq!(delivered[0] + delivered[1], usize::from(flows));
        } else {
            assert_eq!(delivered, steered, "each worker delivers what it opened");
        }
    }
    let sessions: std::collections::HashSet<u64> = session_of_port.values().copied().collect();
    assert_eq!(sessions.len(), crypto::FLOW_SESSIONS as usize, "{flows} flows over every session");
    assert_eq!(owner.counters(p2).rx_packets + replica.counters(p2).rx_packets, 2 * u64::from(flows));
    for h in [&owner, &replica] {
        let drops = h.vtep_counters().drops;
        for reason in [DropReason::Misdirected, DropReason::UnknownPeer, DropReason::Replayed, DropReason::AuthFailed] {
            assert_eq!(drops.get(reason), 0, "{reason:?}");
        }
    }
}

#[test]
fn a_spread_overlay_with_keys_from_the_store_is_sealed_and_opened_by_every_worker() {
    let spec = NetworkSpec { key_epoch: Some(3), store_keys: true, mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, net, a, [p2, _]) = spread_overlay_of(spec);
    let key = |epoch: u32| crypto::NetworkKey::from_bytes(vxlan::Vni::new(VNI).unwrap(), epoch, [epoch as u8; 32]);
    // Nothing is sealed without a key: the replica's own queue of `a`.
    replica.inject(a, &frame(BROADCAST, mac(1), 0));
    settle(&mut owner, &mut replica);
    assert!(owner.sent_datagrams().is_empty() && replica.sent_datagrams().is_empty());
    // The store's key reaches every worker (as `DatapathHandle::install_key`
    // hands it to each), and host 2.
    let (mut far, b) = far_host(2, spec);
    for h in [&mut owner, &mut replica, &mut far] {
        h.call(|reply| Command::InstallKey { network: net, epoch: 3, key: key(3), reply }).expect("epoch 3's key");
    }
    owner.inject(a, &frame(BROADCAST, mac(1), 0));
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_datagrams().len(), 2, "flooded to hosts 2 and 3");
    // Host 2's flows are opened and delivered by both workers (the second
    // round: the first one's stations are learned by the owner).
    for round in 0..2 {
        for station in 10..26 {
            far.inject(b, &frame(mac(1), mac(station), station));
        }
        far.run_until_idle();
        let mut steered = [0usize; 2];
        for d in far.sent_datagrams() {
            let session = crypto::Header::parse(&d.bytes).expect("an encrypted packet").session_id;
            let worker = crypto::lanes::receiving_thread(session, 2) as usize;
            steered[worker] += 1;
            let h = if worker == 0 { &mut owner } else { &mut replica };
            h.inject_datagram(from_host(2), &d.bytes);
        }
        settle(&mut owner, &mut replica);
        let delivered = [owner.sent_frames(a).len(), replica.sent_frames(a).len()];
        if round == 1 {
            assert!(steered.iter().all(|&n| n > 0), "{steered:?}");
            assert_eq!(delivered, steered, "each worker delivers what it opened");
        }
    }
    assert_eq!(owner.counters(p2).rx_packets + replica.counters(p2).rx_packets, 32);
    // The replica seals with the store's key, in a session of its own lane;
    // host 2 opens it. Then the next epoch, installed everywhere and
    // switched to on both workers.
    let replica_seals = |replica: &mut Harness, owner: &mut Harness, far: &mut Harness, tag: u8| {
        replica.inject(a, &frame(mac(10), mac(1), tag));
        settle(owner, replica);
        let sent = replica.sent_datagrams();
        assert_eq!(sent.len(), 1, "the replica sealed it itself");
        far.inject_datagram(SocketAddr::new(vtep(1).ip(), 49_152), &sent[0].bytes);
        far.run_until_idle();
        assert_eq!(far.sent_frames(b), vec![frame(mac(10), mac(1), tag)]);
        u32::from_be_bytes(sent[0].bytes[4..8].try_into().unwrap())
    };
    assert_eq!(replica_seals(&mut replica, &mut owner, &mut far, 1), 3);
    for h in [&mut owner, &mut replica, &mut far] {
        h.call(|reply| Command::InstallKey { network: net, epoch: 4, key: key(4), reply }).expect("epoch 4's key");
    }
    for h in [&mut owner, &mut replica] {
        h.call(|reply| Command::SetKeyEpoch { network: net, epoch: 4, reply }).expect("epoch 4");
    }
    assert_eq!(replica_seals(&mut replica, &mut owner, &mut far, 2), 4);
    for h in [&owner, &replica] {
        let drops = h.vtep_counters().drops;
        for reason in [DropReason::Misdirected, DropReason::Replayed, DropReason::AuthFailed, DropReason::UnknownEpoch]
        {
            assert_eq!(drops.get(reason), 0, "{reason:?}");
        }
    }
}

/// Host `n`'s VTEP, one worker, on encrypted overlay `spec`, with an
/// endpoint: seals frames from it (as [`Harness::sent_datagrams`] shows,
/// see [`sealed_on`]).
fn far_host(n: u8, spec: NetworkSpec) -> (Harness, PortId) {
    let mut far = Harness::with(Setup::host(n));
    let net = far.network(spec);
    far.peer(net, vtep(1));
    let b = far.endpoint(net);
    (far, b)
}

/// Seals `f` on a [`far_host`] (from its endpoint `b`) in a new session
/// that a receiver of two workers steers to worker `to_worker`: the session
/// of `f`'s flow slot (its outer source port's, as the tunnel picks it)
/// gets the low bits `to_worker`.
fn sealed_on(far: &mut Harness, b: PortId, f: &[u8], to_worker: u32) -> Vec<u8> {
    let senders = crate::daemon::datapath::testing::memory::MEMORY_SENDERS;
    let slot = (vxlan::flow_hash(f) as usize % senders) as u32 % crypto::FLOW_SESSIONS;
    let lane = crypto::SessionLane { base: to_worker.wrapping_sub(slot), index: 0, step: 1 };
    let keys = far.dp.nets.iter_mut().flatten().find_map(|n| n.crypto.as_deref_mut()).expect("encrypted");
    keys.spread(lane, Arc::new(crypto::HostSessions::new(1))).expect("a new session");
    far.inject(b, f);
    far.run_until_idle();
    let sent = far.sent_datagrams();
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent[0].bytes.clone()
}

#[test]
fn on_a_learning_vtep_an_encrypted_packet_reaching_a_replica_before_its_peers_mirror_is_opened_there() {
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, _net, a, [p2, _]) = spread_overlay_on(learning_host, spec);
    let (mut far, b) = far_host(2, spec);
    // As if host 2's mirror were still on the way.
    replica.dp.unmirror_tunnel(p2);
    let hello = sealed_on(&mut far, b, &frame(BROADCAST, mac(7), 1), 1);
    replica.inject_datagram(from_host(2), &hello);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(7), 1)], "delivered by the owner");
    assert_eq!(owner.counters(p2).rx_packets, 1, "from host 2's port");
    for h in [&owner, &replica] {
        assert_eq!(h.vtep_counters().drops.get(DropReason::UnknownPeer), 0);
    }
    // Opened on the replica: the same packet again is a replay there.
    replica.inject_datagram(from_host(2), &hello);
    settle(&mut owner, &mut replica);
    assert!(owner.sent_frames(a).is_empty());
    assert_eq!(replica.vtep_counters().drops.get(DropReason::Replayed), 1);
}

#[test]
fn an_encrypted_spread_overlay_on_a_learning_vtep_learns_a_peer_a_replica_heard_first() {
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, net, a, _) = spread_overlay_on(learning_host, spec);
    // Host 4 is no peer of host 1.
    let (mut far, b) = far_host(4, spec);
    let hello = sealed_on(&mut far, b, &frame(BROADCAST, mac(9), 1), 1);
    replica.inject_datagram(from_host(4), &hello);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(9), 1)]);
    let p4 = owner.lookup(net, mac(9)).expect("station 9 learned behind host 4");
    assert!(owner.snapshot().tunnels.iter().any(|t| t.port == p4 && t.learned));
    // Mirrored: host 4's next packet is the replica's own to deliver.
    owner.inject(a, &frame(mac(9), mac(1), 2));
    settle(&mut owner, &mut replica);
    owner.sent_datagrams();
    let next = sealed_on(&mut far, b, &frame(mac(1), mac(9), 3), 1);
    replica.inject_datagram(from_host(4), &next);
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(9), 3)]);
    assert_eq!(replica.counters(p4).rx_packets, 1);
}

#[test]
fn a_strangers_packet_the_owner_hands_to_its_sessions_replica_is_opened_there_and_learned_by_the_owner() {
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, net, a, _) = spread_overlay_on(learning_host, spec);
    // Host 4 is no peer of host 1; its session is the replica's, but the
    // owner's socket reads the packet (GRO merged it behind another, or
    // there is no steering program): handed to the replica unopened, opened
    // there, handed back opened for the owner to learn host 4.
    let (mut far, b) = far_host(4, spec);
    let hello = sealed_on(&mut far, b, &frame(BROADCAST, mac(9), 1), 1);
    owner.inject_datagram(from_host(4), &hello);
    settle(&mut owner, &mut replica);
    assert_eq!(owner.sent_frames(a), vec![frame(BROADCAST, mac(9), 1)], "delivered by the owner");
    let p4 = owner.lookup(net, mac(9)).expect("station 9 learned behind host 4");
    assert!(owner.snapshot().tunnels.iter().any(|t| t.port == p4 && t.learned));
    for h in [&owner, &replica] {
        let drops = &h.vtep_counters().drops;
        assert_eq!((drops.get(DropReason::UnknownPeer), drops.get(DropReason::Misdirected)), (0, 0));
    }
    // The replica judged it: the same packet again, by the owner's socket,
    // is a replay there.
    owner.inject_datagram(from_host(4), &hello);
    settle(&mut owner, &mut replica);
    assert!(owner.sent_frames(a).is_empty());
    assert_eq!(replica.vtep_counters().drops.get(DropReason::Replayed), 1);
}

#[test]
fn forged_packets_of_another_workers_session_take_at_most_half_of_its_hand_over_room() {
    use crate::replica::MAX_HANDED_OVER;
    let spec = NetworkSpec { key_epoch: Some(3), mtu: 1418, ..overlay_network(0, VNI) };
    let (mut owner, mut replica, _net, a, _) = spread_overlay_of(spec);
    let (mut far, b) = far_host(2, spec);
    // A packet of a session the owner opens, its tag broken: anyone on the
    // underlay can send such, from host 2's address. The replica's socket
    // reads them while the owner does not run.
    let mut forged = sealed_on(&mut far, b, &frame(BROADCAST, mac(7), 1), 0);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let sent = MAX_HANDED_OVER;
    for _ in 0..sent {
        replica.inject_datagram(from_host(2), &forged);
    }
    replica.run_until_idle();
    let half = MAX_HANDED_OVER / 2;
    assert_eq!(replica.vtep_counters().drops.get(DropReason::HandOverBusy), (sent - half) as u64);
    // The other half stays for frames that passed the replica's checks.
    let broadcasts = half - 1;
    for n in 0..broadcasts {
        replica.inject(a, &frame(BROADCAST, mac(1), n as u8));
    }
    replica.run_until_idle();
    assert_eq!(replica.drops(a, DropReason::OwnerBusy), 0, "no frame crowded out");
    // The owner catches up: the forged ones fail there, the frames go on.
    settle(&mut owner, &mut replica);
    assert_eq!(owner.vtep_counters().drops.get(DropReason::AuthFailed), half as u64);
    assert_eq!(owner.sent_datagrams().len(), 2 * broadcasts, "flooded to hosts 2 and 3");
}

#[test]
fn a_peer_the_owner_learned_before_its_replica_existed_is_mirrored_there_once_asked() {
    let (mut owner, mut replica) = (Harness::with(learning_host(1)), Harness::with(learning_host(1)));
    Harness::link(&mut [&mut owner, &mut replica]);
    let spec = NetworkSpec { spread: true, ..overlay_network(0, VNI) };
    let net = owner.network(spec);
    let a = owner.endpoint(net);
    // Until the replicas exist (and the steering program loads) the owner
    // gets every packet: it learns host 4.
    owner.inject_datagram(from_host(4), &vxlan(VNI, &frame(BROADCAST, mac(9), 1)));
    owner.run_until_idle();
    let p4 = owner.lookup(net, mac(9)).expect("host 4 learned");
    // The other worker reads the owner's mirror while it holds no replica
    // yet: nothing is made.
    replica.run_until_idle();
    // The replica comes (its mirror of host 4 was sent to nobody), then the
    // owner sends its ports again, as the handle asks it to.
    let fdb = crate::fdb::Fdb::new(crate::fdb::DEFAULT_FDB_LIMIT);
    let overlay =
        Some(ReplicaOverlay { vni: vxlan::Vni::new(VNI).unwrap(), mtu: spec.mtu, mss_clamp: false, keys: None });
    replica.call(|reply| Command::AddReplica { id: net, fdb, owner: 0, overlay, reply }).map_err(|(_, e)| e).unwrap();
    replica.endpoint_with(PortConfig { mtu: spec.mtu, ..PortConfig::access(net) });
    owner.call(|reply| Command::MirrorExisting { network: net, reply });
    // Twice: a replica keeps a port it has.
    owner.call(|reply| Command::MirrorExisting { network: net, reply });
    settle(&mut owner, &mut replica);
    owner.sent_frames(a);
    owner.inject(a, &frame(mac(9), mac(1), 2));
    settle(&mut owner, &mut replica);
    owner.sent_datagrams();
    replica.inject_datagram(from_host(4), &vxlan(VNI, &frame(mac(1), mac(9), 3)));
    settle(&mut owner, &mut replica);
    assert_eq!(replica.sent_frames(a), vec![frame(mac(1), mac(9), 3)], "the replica delivers it itself");
    assert_eq!(replica.counters(p4).rx_packets, 1);
    assert!(owner.sent_frames(a).is_empty());
}
