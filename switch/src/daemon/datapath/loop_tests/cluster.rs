//! Cluster views of an overlay network: tunnel ports shared with static
//! peers, remote MACs pinned to their node's tunnel, and ARP requests and
//! neighbour solicitations for remote addresses answered by the switch.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use etherparse::Icmpv6Type;

use super::super::RemoteEndpoint;
use super::super::handle::{Command, DatapathError};
use super::super::testing::frames::{
    BROADCAST, arp_request, ethernet, frame, icmpv6, ip, ip6, mac, neighbor_solicit, parse_icmp6, vtep, vxlan,
};
use super::super::testing::{Harness, Setup, gateway_network, overlay_network};
use crate::port::{NetworkId, PortId};
use crate::proxy::ProxyCounters;

const VNI: u32 = 4242;

/// Remote station `n` (MAC, 10.0.0.n, fd00::n) on the host of `vtep`.
fn remote(n: u8, vtep: SocketAddr) -> RemoteEndpoint {
    RemoteEndpoint { mac: mac(n), ipv4: Some(ip(n)), ipv6: Some(ip6(n)), vtep }
}

/// The remote VTEPs of `network`'s tunnel ports, and which the cluster holds.
fn tunnels(h: &mut Harness, network: NetworkId) -> Vec<(SocketAddr, bool)> {
    let mut t: Vec<_> =
        h.snapshot().tunnels.into_iter().filter(|t| t.network == network).map(|t| (t.remote, t.cluster)).collect();
    t.sort();
    t
}

/// The tunnel port toward `remote`.
fn tunnel_port(h: &mut Harness, remote: SocketAddr) -> PortId {
    h.snapshot().tunnels.iter().find(|t| t.remote == remote).map(|t| t.port).expect("a tunnel port")
}

/// Where the datagrams sent since the last call went.
fn sent_to(h: &mut Harness) -> BTreeSet<SocketAddr> {
    h.sent_datagrams().into_iter().map(|d| d.to).collect()
}

fn proxy_counters(h: &mut Harness, network: NetworkId) -> ProxyCounters {
    h.snapshot().proxy.into_iter().find(|(n, _)| *n == network).map(|(_, c)| c).unwrap_or_default()
}

/// Host 1 with overlay 0 (VNI 4242), local endpoints a (station 2) and b,
/// and a view: peers 2 and 3, station 7 on host 2.
fn host_with_view() -> (Harness, NetworkId, PortId, PortId) {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.cluster_view(net, vec![vtep(2), vtep(3)], vec![remote(7, vtep(2))]).expect("the view applies");
    (h, net, a, b)
}

#[test]
fn an_arp_request_for_a_remote_address_is_answered_back_out_of_its_port_and_not_flooded() {
    let (mut h, net, a, b) = host_with_view();
    h.inject(a, &arp_request(mac(2), ip(2), ip(7)));
    h.run_until_idle();
    // The reply, byte for byte: from station 7's MAC to the asker.
    let mut reply = vec![0, 1, 0x08, 0x00, 6, 4, 0, 2];
    reply.extend_from_slice(&mac(7).0);
    reply.extend_from_slice(&ip(7).octets());
    reply.extend_from_slice(&mac(2).0);
    reply.extend_from_slice(&ip(2).octets());
    assert_eq!(h.sent_frames(a), vec![ethernet(mac(2), mac(7), 0x0806, &reply)]);
    assert!(h.sent_frames(b).is_empty(), "not flooded to local ports");
    assert!(h.sent_datagrams().is_empty(), "not flooded to the tunnels");
    assert_eq!(proxy_counters(&mut h, net), ProxyCounters { arp_replies: 1, nd_replies: 0 });
    assert_eq!(h.counters(a).rx_packets, 1, "the request counts as received");
    assert_eq!(h.counters(a).rx_flooded, 0);

    // An ARP request from a remote host (through its tunnel) is not the
    // proxy's: it reaches the local ports as before.
    let asked = arp_request(mac(8), ip(8), ip(7));
    h.inject_datagram(vtep(3), &vxlan(VNI, &asked));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![asked.clone()]);
    assert_eq!(h.sent_frames(b), vec![asked]);
    assert_eq!(proxy_counters(&mut h, net).arp_replies, 1);
}

#[test]
fn an_arp_request_for_an_unknown_address_is_flooded_as_before() {
    let (mut h, net, a, b) = host_with_view();
    let asked = arp_request(mac(2), ip(2), ip(9));
    h.inject(a, &asked);
    h.run_until_idle();
    assert!(h.sent_frames(a).is_empty());
    assert_eq!(h.sent_frames(b), vec![asked.clone()]);
    let sent = h.sent_datagrams();
    assert_eq!(sent.iter().map(|d| d.to).collect::<BTreeSet<_>>(), BTreeSet::from([vtep(2), vtep(3)]));
    assert!(sent.iter().all(|d| d.bytes == vxlan(VNI, &asked)));
    // A malformed request for a known address is not answered either.
    let mut bad = arp_request(mac(2), ip(2), ip(7));
    bad[18] = 5; // hardware address length
    h.inject(a, &bad);
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![bad]);
    assert_eq!(sent_to(&mut h).len(), 2);
    assert_eq!(proxy_counters(&mut h, net), ProxyCounters::default());
}

#[test]
fn neighbour_solicitations_multicast_and_unicast_get_valid_advertisements() {
    let (mut h, net, a, b) = host_with_view();
    let multicast = neighbor_solicit(mac(2), ip6(2), ip6(7));
    let mut payload = ip6(7).octets().to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&mac(2).0);
    let unicast = icmpv6((mac(2), ip6(2)), (mac(7), ip6(7)), 255, Icmpv6Type::NeighborSolicitation, &payload);
    for ns in [multicast, unicast] {
        h.inject(a, &ns);
        h.run_until_idle();
        let sent = h.sent_frames(a);
        assert_eq!(sent.len(), 1, "one answer");
        // parse_icmp6 checks the checksum.
        let na = parse_icmp6(&sent[0]).expect("an ICMPv6 frame with a valid checksum");
        assert_eq!((na.src_mac, na.dst_mac, na.src, na.dst, na.hop_limit), (mac(7), mac(2), ip6(7), ip6(2), 255));
        let Icmpv6Type::NeighborAdvertisement(flags) = na.kind else { panic!("not an NA: {:?}", na.kind) };
        assert!(flags.solicited && flags.r#override && !flags.router, "{flags:?}");
        let mut expected = ip6(7).octets().to_vec();
        expected.extend_from_slice(&[2, 1]);
        expected.extend_from_slice(&mac(7).0);
        assert_eq!(na.payload, expected, "target and its link-layer address option");
        assert!(h.sent_frames(b).is_empty());
        assert!(h.sent_datagrams().is_empty());
    }
    assert_eq!(proxy_counters(&mut h, net), ProxyCounters { arp_replies: 0, nd_replies: 2 });

    // An unknown target is flooded as before.
    let ns = neighbor_solicit(mac(2), ip6(2), ip6(9));
    h.inject(a, &ns);
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![ns]);
    assert_eq!(sent_to(&mut h), BTreeSet::from([vtep(2), vtep(3)]));
    assert_eq!(proxy_counters(&mut h, net).nd_replies, 2);
}

#[test]
fn a_frame_to_a_remote_mac_goes_to_its_node_only_at_once_and_learning_cannot_move_it() {
    let (mut h, net, a, b) = host_with_view();
    let p2 = tunnel_port(&mut h, vtep(2));
    let f = frame(mac(7), mac(2), 1);
    h.inject(a, &f);
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 1, "no flood: {sent:?}");
    assert_eq!((sent[0].to, &sent[0].bytes), (vtep(2), &vxlan(VNI, &f)));
    assert!(h.sent_frames(b).is_empty());
    assert_eq!(h.counters(a).rx_flooded, 0);

    let entry = h.snapshot().fdb.into_iter().find(|r| r.mac == mac(7)).expect("station 7's entry");
    assert_eq!((entry.port, entry.is_static, entry.cluster), (p2, true, true));

    // Station 7's MAC arriving from host 3 is not learned there.
    h.inject_datagram(vtep(3), &vxlan(VNI, &frame(BROADCAST, mac(7), 2)));
    h.run_until_idle();
    assert_eq!(h.lookup(net, mac(7)), Some(p2));
    assert_eq!(h.learning(net).static_conflicts, 1);
}

#[test]
fn a_new_view_replaces_the_old_ports_entries_and_answers() {
    let (mut h, net, a, _b) = host_with_view();
    h.cluster_view(net, vec![vtep(3), vtep(4)], vec![remote(8, vtep(3)), remote(9, vtep(5))]).expect("applies");
    assert_eq!(
        tunnels(&mut h, net),
        vec![(vtep(3), true), (vtep(4), true), (vtep(5), true)],
        "host 2's port is gone; host 5 serves an endpoint, so it has one"
    );
    let fdb: Vec<_> = h.snapshot().fdb.into_iter().filter(|r| r.is_static).map(|r| (r.mac, r.port)).collect();
    let (p3, p5) = (tunnel_port(&mut h, vtep(3)), tunnel_port(&mut h, vtep(5)));
    let mut expected = vec![(mac(8), p3), (mac(9), p5)];
    let mut fdb = fdb;
    fdb.sort();
    expected.sort();
    assert_eq!(fdb, expected, "station 7's entry went with the view");

    h.inject(a, &arp_request(mac(2), ip(2), ip(7)));
    h.run_until_idle();
    assert!(h.sent_frames(a).is_empty(), "station 7 is no longer answered");
    assert_eq!(sent_to(&mut h), BTreeSet::from([vtep(3), vtep(4), vtep(5)]));
    h.inject(a, &arp_request(mac(2), ip(2), ip(8)));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a).len(), 1, "station 8 is");
    assert!(h.sent_datagrams().is_empty());
    // The same view again changes nothing.
    h.cluster_view(net, vec![vtep(3), vtep(4)], vec![remote(8, vtep(3)), remote(9, vtep(5))]).expect("applies");
    assert_eq!(tunnel_port(&mut h, vtep(3)), p3);
    assert_eq!(h.lookup(net, mac(8)), Some(p3));
}

#[test]
fn static_peers_and_the_cluster_share_a_port_that_stays_while_either_wants_it() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let a = h.endpoint(net);
    let p2 = h.peer(net, vtep(2));
    h.cluster_view(net, vec![vtep(2), vtep(3)], vec![remote(7, vtep(2))]).expect("applies");
    assert_eq!(tunnel_port(&mut h, vtep(2)), p2, "one port for both");
    assert_eq!(tunnels(&mut h, net), vec![(vtep(2), true), (vtep(3), true)]);

    // Clearing the view keeps the static peer's port (without station 7).
    h.cluster_view(net, vec![], vec![]).expect("applies");
    assert_eq!(tunnels(&mut h, net), vec![(vtep(2), false)]);
    assert_eq!(h.lookup(net, mac(7)), None);
    h.inject(a, &frame(BROADCAST, mac(2), 1));
    h.run_until_idle();
    assert_eq!(sent_to(&mut h), BTreeSet::from([vtep(2)]));

    // `peer rm` keeps the port the view holds, without the operator's
    // static entries toward it.
    h.cluster_view(net, vec![vtep(2)], vec![remote(7, vtep(2))]).expect("applies");
    h.call(|reply| Command::AddStatic { network: net, mac: mac(9), port: p2, reply }).expect("a static entry");
    assert_eq!(h.dp.bridge.static_port(net, mac(9)), Some(p2));
    assert!(h.remove_peer(net, vtep(2)), "it was a static peer");
    assert_eq!(tunnels(&mut h, net), vec![(vtep(2), true)]);
    assert_eq!(h.lookup(net, mac(9)), None, "the operator's entry went with the peer");
    assert_eq!(h.lookup(net, mac(7)), Some(p2), "the cluster's stays");
    h.inject(a, &frame(BROADCAST, mac(2), 2));
    h.run_until_idle();
    assert_eq!(sent_to(&mut h), BTreeSet::from([vtep(2)]));
    assert!(!h.remove_peer(net, vtep(2)), "no longer a static peer");
    assert_eq!(tunnels(&mut h, net), vec![(vtep(2), true)]);

    // Now the view alone holds it: clearing the view removes it.
    h.cluster_view(net, vec![], vec![]).expect("applies");
    assert!(tunnels(&mut h, net).is_empty());
    h.inject(a, &frame(BROADCAST, mac(2), 3));
    h.run_until_idle();
    assert!(h.sent_datagrams().is_empty());
}

#[test]
fn a_learned_peer_the_view_takes_over_stops_aging_and_goes_with_the_view() {
    let mut h = Harness::with(Setup::host(1).learning());
    let net = h.network(overlay_network(0, VNI));
    let _a = h.endpoint(net);
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 1)));
    h.run_until_idle();
    let learned = h.snapshot().tunnels;
    assert_eq!(learned.iter().map(|t| (t.remote, t.learned)).collect::<Vec<_>>(), vec![(vtep(2), true)]);
    h.cluster_view(net, vec![vtep(2)], vec![]).expect("applies");
    let t = h.snapshot().tunnels;
    assert_eq!(
        t.iter().map(|t| (t.port, t.learned, t.cluster)).collect::<Vec<_>>(),
        vec![(learned[0].port, false, true)]
    );
    // Long past the learned peers' lifetime, it is still there.
    h.advance(std::time::Duration::from_secs(600));
    h.run_until_idle();
    assert_eq!(tunnels(&mut h, net), vec![(vtep(2), true)]);
    h.cluster_view(net, vec![], vec![]).expect("applies");
    assert!(tunnels(&mut h, net).is_empty());
}

#[test]
fn an_empty_view_leaves_the_network_as_it_was_before_any_view() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.peer(net, vtep(2));
    h.inject(a, &frame(BROADCAST, mac(2), 1));
    h.inject(b, &frame(BROADCAST, mac(3), 1));
    h.run_until_idle();
    h.sent_datagrams();
    h.sent_frames(a);
    h.sent_frames(b);
    let state = |h: &mut Harness| {
        let s = h.snapshot();
        let mut fdb: Vec<_> = s.fdb.iter().map(|r| (r.network, r.mac, r.port, r.is_static, r.cluster)).collect();
        fdb.sort();
        let tunnels: Vec<_> = s.tunnels.iter().map(|t| (t.port, t.remote, t.learned, t.cluster)).collect();
        (fdb, tunnels)
    };
    let before = state(&mut h);
    h.cluster_view(net, vec![vtep(2), vtep(3)], vec![remote(7, vtep(2)), remote(8, vtep(4))]).expect("applies");
    assert_ne!(state(&mut h), before);
    h.cluster_view(net, vec![], vec![]).expect("applies");
    assert_eq!(state(&mut h), before);
    assert_eq!(h.dp.proxying, 0, "no frame is looked at any more");
    let asked = arp_request(mac(2), ip(2), ip(7));
    h.inject(a, &asked);
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![asked]);
    assert_eq!(sent_to(&mut h), BTreeSet::from([vtep(2)]));
}

#[test]
fn views_are_refused_where_they_cannot_apply_and_unusable_members_are_left_out() {
    let mut h = Harness::with(Setup::host(1));
    let plain = h.network(gateway_network(0));
    let err = h.cluster_view(plain, vec![vtep(2)], vec![]).expect_err("not an overlay");
    assert!(matches!(err, DatapathError::NotOverlay(n) if n == plain), "{err}");
    let err = h.cluster_view(NetworkId(9), vec![], vec![]).expect_err("no such network");
    assert!(matches!(err, DatapathError::Bridge(_)), "{err}");

    let net = h.network(overlay_network(1, VNI));
    let v6: SocketAddr = "[2001:db8::2]:4789".parse().unwrap();
    let group = RemoteEndpoint { mac: BROADCAST, ..remote(9, vtep(3)) };
    h.cluster_view(net, vec![vtep(1), v6, vtep(2)], vec![remote(7, v6), remote(8, vtep(2)), group]).expect("applies");
    assert_eq!(tunnels(&mut h, net), vec![(vtep(2), true), (vtep(3), true)], "own VTEP and IPv6 left out");
    assert_eq!(h.lookup(net, mac(7)), None);
    assert!(h.lookup(net, mac(8)).is_some());

    // Without a VTEP only an empty view applies.
    let mut h = Harness::new();
    let net = h.network(overlay_network(0, VNI));
    assert!(matches!(h.cluster_view(net, vec![vtep(2)], vec![]), Err(DatapathError::NoVtep)));
    h.cluster_view(net, vec![], vec![]).expect("an empty view needs no VTEP");
}
