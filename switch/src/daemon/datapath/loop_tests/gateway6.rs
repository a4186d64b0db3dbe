//! The gateway's IPv6 side: neighbour discovery, router advertisements on
//! the loop's virtual clock, echo, ICMPv6 errors, malformed ICMPv6, and
//! DNS over IPv6.

use std::net::Ipv6Addr;
use std::time::Duration;

use etherparse::icmpv6::{DestUnreachableCode, NdpOptionSlice, NeighborAdvertisementHeader};
use etherparse::{IcmpEchoHeader, Icmpv6Type};

use super::super::handle::{Command, Gateway6Spec, NetworkSpec};
use super::super::testing::frames::{
    Icmp6, arp_request, dad_probe, gw_mac, icmpv6, ip, ip6, ll, mac, multicast_mac, neighbor_solicit, parse_icmp6,
    parse_udp, parse_udp6, ping, ping6, router_solicit, solicited_node, udp, udp6,
};
use super::super::testing::{Harness, dual_network, gateway_network, ipv6_network};
use crate::counters::DropReason;
use crate::daemon::dns_forward::Done;
use crate::gateway::{gateway_mac6, link_local};
use crate::port::{NetworkId, PortId};
use crate::wire::MacAddr;

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The gateway's link-local address on a dual-stack test network.
fn gw_ll() -> Ipv6Addr {
    link_local(gw_mac())
}

/// A network of `spec` with two endpoints (stations 2 and 3), after the
/// gateway's first router advertisement (sent when the network is made)
/// has gone out and been taken.
fn network(spec: NetworkSpec) -> (Harness, NetworkId, PortId, PortId) {
    let mut h = Harness::new();
    let net = h.network(spec);
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.run_until_idle();
    let first = router_adverts(&h.sent_frames(a));
    if spec.gateway6.is_some() {
        assert_eq!(first.len(), 1, "the first advertisement at once");
    } else {
        assert!(first.is_empty(), "no IPv6 without gateway6");
    }
    h.sent(b);
    (h, net, a, b)
}

/// The router advertisements among `frames`.
fn router_adverts(frames: &[Vec<u8>]) -> Vec<Icmp6> {
    frames
        .iter()
        .filter_map(|f| parse_icmp6(f))
        .filter(|m| matches!(m.kind, Icmpv6Type::RouterAdvertisement(_)))
        .collect()
}

/// What an advertisement says: router lifetime, M/O flags, source
/// link-layer address, MTU, (prefix, length, on-link, autonomous).
#[derive(Debug, PartialEq, Eq)]
struct Advert {
    router_lifetime: u16,
    managed_or_other: bool,
    hop_limit: u8,
    source_mac: Option<MacAddr>,
    mtu: Option<u32>,
    prefix: Option<(Ipv6Addr, u8, bool, bool)>,
}

fn advert(m: &Icmp6) -> Advert {
    let Icmpv6Type::RouterAdvertisement(header) = m.kind else { panic!("not an RA: {m:?}") };
    // reachable time and retrans timer (8 bytes), then the options.
    let mut options = &m.payload[8..];
    let (mut source_mac, mut mtu, mut prefix) = (None, None, None);
    while options.len() >= 8 {
        let len = usize::from(options[1]) * 8;
        assert!(len > 0 && len <= options.len(), "option length");
        match etherparse::icmpv6::NdpOptionsIterator::from_slice(&options[..len]).next() {
            Some(Ok(NdpOptionSlice::SourceLinkLayerAddress(o))) => {
                source_mac = Some(MacAddr(o.link_layer_address().try_into().expect("an Ethernet address")));
            }
            Some(Ok(NdpOptionSlice::Mtu(o))) => mtu = Some(o.mtu()),
            Some(Ok(NdpOptionSlice::PrefixInformation(o))) => {
                prefix = Some((
                    Ipv6Addr::from(o.prefix()),
                    o.prefix_length(),
                    o.on_link(),
                    o.autonomous_address_configuration(),
                ));
            }
            other => panic!("unexpected option {other:?}"),
        }
        options = &options[len..];
    }
    assert!(options.is_empty());
    Advert {
        router_lifetime: header.router_lifetime,
        managed_or_other: header.managed_address_config || header.other_config,
        hop_limit: header.cur_hop_limit,
        source_mac,
        mtu,
        prefix,
    }
}

/// The advertisement of the dual-stack test network 0.
fn expected_advert(router_lifetime: u16) -> Advert {
    Advert {
        router_lifetime,
        managed_or_other: false,
        hop_limit: 64,
        source_mac: Some(gw_mac()),
        mtu: Some(1500),
        prefix: Some((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 64, true, false)),
    }
}

#[test]
fn neighbour_solicitations_for_both_gateway_addresses_are_answered_as_a_router() {
    let (mut h, net, a, b) = network(dual_network(0));
    for (sender, target) in [(ip6(2), ip6(1)), (ll(2), gw_ll())] {
        let solicit = neighbor_solicit(mac(2), sender, target);
        h.inject(a, &solicit);
        h.run_until_idle();
        assert_eq!(h.sent_frames(b), vec![solicit], "multicast is flooded like any group frame");
        let answers = h.sent_frames(a);
        assert_eq!(answers.len(), 1, "one answer to {target}");
        let na = parse_icmp6(&answers[0]).expect("an ICMPv6 message");
        assert_eq!((na.src_mac, na.dst_mac, na.src, na.dst, na.hop_limit), (gw_mac(), mac(2), target, sender, 255));
        let flags = NeighborAdvertisementHeader { router: true, solicited: true, r#override: true };
        assert_eq!(na.kind, Icmpv6Type::NeighborAdvertisement(flags), "R, S and O set");
        assert_eq!(na.payload[..16], target.octets(), "the target");
        assert_eq!(na.payload[16..18], [2, 1], "a target link-layer address option");
        assert_eq!(na.payload[18..24], gw_mac().0);
    }
    assert_eq!(h.lookup(net, gw_mac()), Some(h.gateway(net)), "the gateway is learned on its port");

    // Another station's address is not the gateway's to answer.
    h.inject(a, &neighbor_solicit(mac(2), ip6(2), ip6(3)));
    h.run_until_idle();
    assert!(h.sent(a).is_empty());
    assert_eq!(h.counters(a).drops.total(), 0);
}

#[test]
fn the_gateway_defends_both_its_addresses_against_duplicate_address_detection() {
    let (mut h, _, a, b) = network(dual_network(0));
    for target in [ip6(1), gw_ll()] {
        let probe = dad_probe(mac(2), target);
        h.inject(a, &probe);
        h.run_until_idle();
        // The probe is flooded; the defence goes to all nodes, so both
        // stations hear it (the prober among them).
        let (to_a, to_b) = (h.sent_frames(a), h.sent_frames(b));
        assert_eq!(to_b.first(), Some(&probe));
        for (port, frames) in [(a, to_a), (b, to_b)] {
            let na = frames.iter().filter_map(|f| parse_icmp6(f)).find(|m| m.src == target);
            let na = na.unwrap_or_else(|| panic!("no defence of {target} on {port:?}: {frames:?}"));
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            assert_eq!((na.src_mac, na.dst, na.hop_limit), (gw_mac(), all_nodes, 255));
            let flags = NeighborAdvertisementHeader { router: true, solicited: false, r#override: true };
            assert_eq!(na.kind, Icmpv6Type::NeighborAdvertisement(flags), "R and O, not S");
            assert_eq!(na.payload[..16], target.octets());
            assert_eq!(na.payload[18..24], gw_mac().0, "the gateway's link-layer address");
        }
    }
    // Another station's probe gets no answer from the gateway.
    h.inject(a, &dad_probe(mac(2), ip6(3)));
    h.run_until_idle();
    assert!(h.sent(a).is_empty());
    assert_eq!(h.counters(a).drops.total(), 0);
}

#[test]
fn the_gateway_answers_echo_on_its_address_and_its_link_local_address() {
    let (mut h, _, a, b) = network(dual_network(0));
    for (sender, target) in [(ip6(2), ip6(1)), (ll(2), gw_ll())] {
        // As a host does: resolve first, which teaches the gateway our MAC.
        h.inject(a, &neighbor_solicit(mac(2), sender, target));
        h.run_until_idle();
        h.sent(a);
        h.inject(a, &ping6((mac(2), sender), (gw_mac(), target), 7, 3, b"harness6"));
        h.run_until_idle();
        let replies = h.sent_frames(a);
        assert_eq!(replies.len(), 1, "one reply from {target}");
        let reply = parse_icmp6(&replies[0]).expect("an ICMPv6 message");
        assert_eq!((reply.src_mac, reply.dst_mac, reply.src, reply.dst), (gw_mac(), mac(2), target, sender));
        assert_eq!(reply.kind, Icmpv6Type::EchoReply(IcmpEchoHeader { id: 7, seq: 3 }));
        assert_eq!(reply.payload, b"harness6");
    }
    assert!(h.sent(b).iter().all(|s| s.frame[0] & 1 == 1), "only the flooded solicitations reach b");
}

#[test]
fn a_host_that_never_solicited_the_gateway_is_answered_at_once() {
    // A host that learned the gateway's MAC from a router advertisement
    // sends straight away: the gateway answers its first packet, without
    // resolving the host first.
    let (mut h, _, a, _) = network(dual_network(0));
    for (n, (sender, target)) in [(ip6(2), ip6(1)), (ll(2), gw_ll())].into_iter().enumerate() {
        h.inject(a, &ping6((mac(2), sender), (gw_mac(), target), 8, n as u16, b"first"));
        h.run_until_idle();
        let replies: Vec<Icmp6> = h.sent_frames(a).iter().filter_map(|f| parse_icmp6(f)).collect();
        assert_eq!(replies.len(), 1, "exactly the reply, no solicitation first: {replies:?}");
        assert_eq!((replies[0].src, replies[0].dst, replies[0].dst_mac), (target, sender, mac(2)));
        assert!(matches!(replies[0].kind, Icmpv6Type::EchoReply(_)));
    }
    // The host moves to another MAC (a replaced container): answered there.
    h.inject(a, &ping6((mac(7), ip6(2)), (gw_mac(), ip6(1)), 8, 9, b"moved"));
    h.run_until_idle();
    let reply = parse_icmp6(&h.sent_frames(a)[0]).expect("an ICMPv6 message");
    assert_eq!(reply.dst_mac, mac(7));
}

#[test]
fn a_router_solicitation_is_answered_within_the_rfc_4861_delays() {
    let (mut h, _, a, b) = network(dual_network(0));
    // The first advertisement went out at 0: the answer to a solicitation
    // from `::` (which names no sender) waits until 3 s after it
    // (MIN_DELAY_BETWEEN_RAS), plus up to 500 ms, and goes to all nodes.
    h.advance(Duration::from_millis(100));
    h.inject(a, &router_solicit_unspecified(mac(2)));
    h.run_until_idle();
    h.advance(Duration::from_millis(2_899));
    h.step();
    assert!(router_adverts(&h.sent_frames(a)).is_empty(), "not within 3 s of the last one");
    h.advance(Duration::from_millis(501));
    h.step();
    let adverts = router_adverts(&h.sent_frames(a));
    assert_eq!(adverts.len(), 1, "by 3.5 s");
    assert_eq!(router_adverts(&h.sent_frames(b)).len(), 1, "to all nodes");
    let ra = &adverts[0];
    assert_eq!((ra.src_mac, ra.dst_mac), (gw_mac(), multicast_mac(ALL_NODES)));
    assert_eq!((ra.src, ra.dst, ra.hop_limit), (gw_ll(), ALL_NODES, 255), "from the link-local address");
    assert_eq!(advert(ra), expected_advert(1800));

    // Long after the last one: within MAX_RA_DELAY_TIME (500 ms).
    h.advance(Duration::from_secs(10));
    h.step();
    h.sent(a);
    h.inject(a, &router_solicit_unspecified(mac(2)));
    h.run_until_idle();
    let mut waited = 0;
    while router_adverts(&h.sent_frames(a)).is_empty() {
        assert!(waited < 500, "no answer within 500 ms");
        h.advance(Duration::from_millis(10));
        h.step();
        waited += 10;
    }
    assert_eq!(h.counters(a).drops.total(), 0);
}

#[test]
fn a_solicitation_that_names_its_sender_is_answered_at_once_unicast() {
    let (mut h, _, a, b) = network(dual_network(0));
    h.sent(a);
    h.sent(b);
    // Right after the first advertisement, where a multicast answer would
    // wait 3 s (RFC 7772 §5.1: a unicast answer needs no such delay).
    h.advance(Duration::from_millis(100));
    h.inject(a, &router_solicit(mac(2), ll(2)));
    h.run_until_idle();
    let adverts = router_adverts(&h.sent_frames(a));
    assert_eq!(adverts.len(), 1, "answered at once");
    let ra = &adverts[0];
    assert_eq!((ra.src_mac, ra.dst_mac), (gw_mac(), mac(2)));
    assert_eq!((ra.src, ra.dst, ra.hop_limit), (gw_ll(), ll(2), 255));
    assert_eq!(advert(ra), expected_advert(1800));
    assert!(router_adverts(&h.sent_frames(b)).is_empty(), "to the solicitor alone");
    // Another within a second is not answered at once: it waits for the
    // multicast schedule (3 s after the last multicast one).
    h.advance(Duration::from_millis(500));
    h.inject(a, &router_solicit(mac(2), ll(2)));
    h.run_until_idle();
    assert!(router_adverts(&h.sent_frames(a)).is_empty(), "one unicast answer a second");
    h.advance(Duration::from_millis(3_000));
    h.step();
    let later = router_adverts(&h.sent_frames(a));
    assert_eq!(later.len(), 1, "the multicast one");
    assert_eq!(later[0].dst, ALL_NODES);
    assert_eq!(h.counters(a).drops.total(), 0);
}

/// A router solicitation from the unspecified address (no link-layer option).
fn router_solicit_unspecified(src: MacAddr) -> Vec<u8> {
    let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    let dst = (multicast_mac(all_routers), all_routers);
    icmpv6((src, Ipv6Addr::UNSPECIFIED), dst, 255, Icmpv6Type::RouterSolicitation, &[])
}

#[test]
fn unsolicited_advertisements_follow_the_rfc_4861_intervals_in_virtual_time() {
    let (mut h, _, a, _) = network(dual_network(0));
    let mut sent_at = vec![0u64];
    // A quarter of an hour, a second at a time.
    for second in 1..=900u64 {
        h.advance(Duration::from_secs(1));
        h.step();
        for ra in router_adverts(&h.sent_frames(a)) {
            assert_eq!(advert(&ra), expected_advert(1800));
            sent_at.push(second);
        }
    }
    let gaps: Vec<u64> = sent_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 3, "{sent_at:?}");
    assert_eq!(gaps[..2], [16, 16], "the first ones MAX_INITIAL_RTR_ADVERT_INTERVAL apart: {sent_at:?}");
    for gap in &gaps[2..] {
        assert!((198..=600).contains(gap), "MinRtrAdvInterval..MaxRtrAdvInterval: {sent_at:?}");
    }
    // The loop asks to be woken for the next one.
    let next = h.dp.gateway_timer.0;
    assert!(next > h.now().0 && next <= h.now().0 + 600_000);
}

#[test]
fn an_internal_network_advertises_its_prefix_without_a_default_route() {
    let internal = Gateway6Spec { address: ip6(1), prefix_len: 64, default_route: false };
    let (mut h, _, a, _) = network(NetworkSpec { gateway6: Some(internal), ..dual_network(0) });
    h.advance(Duration::from_secs(16));
    h.step();
    let adverts = router_adverts(&h.sent_frames(a));
    assert_eq!(adverts.len(), 1);
    assert_eq!(advert(&adverts[0]), expected_advert(0), "router lifetime 0, prefix and MTU still there");
}

#[test]
fn ipv6_routed_out_of_the_network_is_answered_no_route_within_the_budget() {
    let (mut h, _, a, _) = network(dual_network(0));
    let outside = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    for seq in 0..60 {
        h.inject(a, &ping6((mac(2), ip6(2)), (gw_mac(), outside), 9, seq, b"out"));
    }
    h.run_until_idle();
    assert_eq!(h.drops(a, DropReason::NoRoute), 60);
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 50, "the burst IPv4 gets, shared with it");
    let first = parse_icmp6(&answers[0]).expect("an ICMPv6 message");
    assert_eq!((first.src_mac, first.dst_mac, first.src, first.dst), (gw_mac(), mac(2), ip6(1), ip6(2)));
    assert_eq!(first.kind, Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute));
    assert_eq!(first.payload[..40], ping6((mac(2), ip6(2)), (gw_mac(), outside), 9, 0, b"out")[14..54], "the quote");

    // The budget refills at one per millisecond; IPv4 draws on it too.
    h.advance(Duration::from_millis(4));
    h.inject(a, &ping((mac(2), ip(2)), (gw_mac(), std::net::Ipv4Addr::new(192, 0, 2, 1)), 1, 1, b"v4"));
    for seq in 0..10 {
        h.inject(a, &ping6((mac(2), ll(2)), (gw_mac(), outside), 9, 100 + seq, b"out"));
    }
    h.run_until_idle();
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 4);
    let from_ll = parse_icmp6(&answers[1]).expect("an ICMPv6 message");
    assert_eq!(from_ll.src, gw_ll(), "a link-local sender hears from the link-local address");

    // Link-local and multicast destinations are never routed.
    h.advance(Duration::from_secs(1));
    h.inject(a, &ping6((mac(2), ll(2)), (gw_mac(), ll(9)), 9, 1, b"ll"));
    h.run_until_idle();
    assert!(h.sent(a).is_empty());
    assert_eq!(h.drops(a, DropReason::NoRoute), 71, "60 + 1 IPv4 + 10");
}

#[test]
fn malformed_icmpv6_for_the_gateway_is_dropped_and_counted() {
    let (mut h, _, a, _) = network(dual_network(0));
    let good = neighbor_solicit(mac(2), ip6(2), ip6(1));
    let mut bad_checksum = good.clone();
    bad_checksum[14 + 40 + 2] ^= 0x55;
    // The hop limit is not in the checksum's pseudo-header: the checksum
    // stays valid.
    let mut hop_limit = good.clone();
    hop_limit[14 + 7] = 64;
    let truncated = {
        let mut f = good[..14 + 40 + 3].to_vec();
        f[14 + 4..14 + 6].copy_from_slice(&3u16.to_be_bytes());
        f
    };
    let zero_option = {
        let mut payload = ip6(1).octets().to_vec();
        payload.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let group = solicited_node(ip6(1));
        icmpv6((mac(2), ip6(2)), (multicast_mac(group), group), 255, Icmpv6Type::NeighborSolicitation, &payload)
    };
    let rs_hop_limit = {
        let mut f = router_solicit(mac(2), ll(2));
        f[14 + 7] = 1;
        f
    };
    let bad_echo = {
        let mut f = ping6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 1, 1, b"x");
        let last = f.len() - 1;
        f[last] ^= 1;
        f
    };
    let frames = [bad_checksum, hop_limit, truncated, zero_option, rs_hop_limit, bad_echo];
    for (n, frame) in frames.iter().enumerate() {
        h.inject(a, frame);
        h.run_until_idle();
        assert!(h.sent(a).is_empty(), "frame {n} answered");
        assert_eq!(h.drops(a, DropReason::Icmpv6Malformed), n as u64 + 1, "frame {n}");
    }
    // No advertisement was scheduled by the bad solicitation.
    h.advance(Duration::from_secs(15));
    h.step();
    assert!(router_adverts(&h.sent_frames(a)).is_empty());
    // And the good one still works.
    h.inject(a, &good);
    h.run_until_idle();
    assert_eq!(h.sent_frames(a).len(), 1);
}

#[test]
fn garbage_ipv6_to_the_gateway_never_panics() {
    let (mut h, _, a, _) = network(dual_network(0));
    let mut rng = fastrand::Rng::with_seed(0x1cb6);
    let templates = [
        neighbor_solicit(mac(2), ip6(2), ip6(1)),
        router_solicit(mac(2), ll(2)),
        ping6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 1, 1, b"0123456789"),
        udp6((mac(2), ip6(2), 5353), (gw_mac(), ip6(1), 53), b"\x12\x34\x01\x00\x00\x01"),
    ];
    for round in 0..2_000 {
        let mut frame = templates[round % templates.len()].clone();
        let len = rng.usize(14..=frame.len());
        frame.truncate(len);
        for _ in 0..rng.usize(1..4) {
            if frame.len() > 14 {
                let at = rng.usize(14..frame.len());
                frame[at] = rng.u8(..);
            }
        }
        h.inject(a, &frame);
        if round % 64 == 0 {
            h.run_until_idle();
        }
    }
    h.run_until_idle();
    // Still answering.
    h.sent(a);
    h.advance(Duration::from_secs(60));
    h.inject(a, &neighbor_solicit(mac(2), ip6(2), ip6(1)));
    h.run_until_idle();
    assert!(
        h.sent_frames(a)
            .iter()
            .any(|f| parse_icmp6(f).is_some_and(|m| matches!(m.kind, Icmpv6Type::NeighborAdvertisement(_))))
    );
}

#[test]
fn an_ipv6_only_network_has_a_derived_gateway_mac_and_no_ipv4() {
    let (mut h, net, a, _) = network(ipv6_network(0));
    let mac6 = gateway_mac6(ip6(1));
    assert_eq!(mac6.0[..2], [0x02, 0x77], "locally administered, apart from endpoints (02:42) and IPv4 gateways");
    assert_ne!(mac6, gateway_mac6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1)), "per network");
    h.inject(a, &neighbor_solicit(mac(2), ip6(2), ip6(1)));
    h.run_until_idle();
    let na = parse_icmp6(&h.sent_frames(a)[0]).expect("an ICMPv6 message");
    assert_eq!((na.src_mac, na.src), (mac6, ip6(1)));
    assert_eq!(na.payload[18..24], mac6.0, "the derived MAC in the target option");
    assert_eq!(h.lookup(net, mac6), Some(h.gateway(net)));
    // Its link-local address follows from that MAC.
    h.inject(a, &neighbor_solicit(mac(2), ll(2), link_local(mac6)));
    h.run_until_idle();
    assert_eq!(parse_icmp6(&h.sent_frames(a)[0]).expect("an NA").src, link_local(mac6));
    // No IPv4 at all: ARP for what would be its IPv4 address is not answered.
    h.inject(a, &arp_request(mac(2), ip(2), ip(1)));
    h.run_until_idle();
    assert!(h.sent(a).is_empty());
}

#[test]
fn an_ipv4_only_gateway_ignores_ipv6() {
    let (mut h, _, a, _) = network(gateway_network(0));
    h.inject(a, &router_solicit(mac(2), ll(2)));
    h.inject(a, &neighbor_solicit(mac(2), ll(2), gw_ll()));
    h.inject(a, &ping6((mac(2), ll(2)), (multicast_mac(ALL_NODES), ALL_NODES), 1, 1, b"all"));
    h.run_until_idle();
    h.advance(Duration::from_secs(700));
    h.step();
    assert!(h.sent(a).is_empty(), "no NDP, no echo, no advertisement");
    assert_eq!(h.counters(a).drops.total(), 0);
    assert_eq!(h.dp.gateway_timer.0, u64::MAX, "no timer to wake for");
}

/// A DNS query for `name` of type `qtype` (recursion desired) with ID `id`.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&[0, 1]);
    query
}

const A: u16 = 1;
const PTR: u16 = 12;
const AAAA: u16 = 28;

/// The answer count and rcode of DNS message `m`.
fn counts(m: &[u8]) -> (u16, u8) {
    (u16::from_be_bytes([m[6], m[7]]), m[3] & 0x0f)
}

/// Web (station 2) at 10.0.0.2 and fd00::2 and v6 (station 3) at fd00::3
/// only, on the dual-stack network; both ask.
fn dns_network() -> (Harness, PortId, PortId, std::net::SocketAddr) {
    dns_network_asking(std::net::SocketAddr::from(([192, 0, 2, 53], 53)))
}

/// [`dns_network`] with `upstream` as both sandboxes' upstream.
fn dns_network_asking(upstream: std::net::SocketAddr) -> (Harness, PortId, PortId, std::net::SocketAddr) {
    let (mut h, net, a, b) = network(dual_network(0));
    let mut directory = dns::Directory::new();
    directory.add_network(net.0, "app", "10.0.0.0/24".parse::<ctl::Ipv4Net>().expect("a subnet"));
    directory.add_network6(net.0, "app", "fd00::/64".parse().expect("a subnet"));
    directory.add_endpoint(net.0, "web", &[], ip(2));
    directory.add_endpoint(net.0, "web", &[], ip6(2));
    directory.add_endpoint(net.0, "v6", &[], ip6(3));
    directory.add_mac(net.0, ip6(2), mac(2).0);
    directory.add_mac(net.0, ip(2), mac(2).0);
    directory.add_mac(net.0, ip6(3), mac(3).0);
    let upstreams = std::sync::Arc::from([upstream]);
    let web = dns::Asker {
        address: Some(ip(2)),
        address6: Some(ip6(2)),
        network: net.0,
        scope: vec![net.0],
        forwarding: true,
        upstreams: std::sync::Arc::clone(&upstreams),
    };
    directory.add_asker(a.0, web);
    let v6 = dns::Asker {
        address: None,
        address6: Some(ip6(3)),
        network: net.0,
        scope: vec![net.0],
        forwarding: true,
        upstreams,
    };
    directory.add_asker(b.0, v6);
    h.call(|reply| Command::SetDns { directory: Box::new(directory), reply });
    (h, a, b, upstream)
}

#[test]
fn dns_over_ipv6_answers_aaaa_and_ip6_arpa_from_the_gateway() {
    let (mut h, a, b, _) = dns_network();
    // AAAA of another sandbox at [gateway6]:53, from an IPv6-only sandbox.
    let query = dns_query(0x6666, "web", AAAA);
    h.inject(b, &udp6((mac(3), ip6(3), 40_000), (gw_mac(), ip6(1), 53), &query));
    h.run_until_idle();
    let answers = h.sent_frames(b);
    assert_eq!(answers.len(), 1);
    let answer = parse_udp6(&answers[0]).expect("a UDP/IPv6 frame");
    assert_eq!((answer.src, answer.dst), ((gw_mac(), ip6(1), 53), (mac(3), ip6(3), 40_000)));
    let message = &answer.payload;
    assert_eq!((&message[..2], counts(message)), (&[0x66, 0x66][..], (1, 0)));
    assert_eq!(message[message.len() - 16..], ip6(2).octets(), "web is fd00::2");

    // A of a name with IPv6 only: NODATA.
    h.inject(b, &udp6((mac(3), ip6(3), 40_001), (gw_mac(), ip6(1), 53), &dns_query(2, "v6", A)));
    h.run_until_idle();
    let answer = parse_udp6(&h.sent_frames(b)[0]).expect("a UDP/IPv6 frame");
    assert_eq!(counts(&answer.payload), (0, 0), "no records, no error");

    // The same AAAA asked at the IPv4 gateway.
    h.inject(a, &udp((mac(2), ip(2), 40_002), (gw_mac(), ip(1), 53), &dns_query(3, "v6.app", AAAA)));
    h.run_until_idle();
    let answer = parse_udp(&h.sent_frames(a)[0]).expect("a UDP/IPv4 frame");
    assert_eq!(answer.src, (gw_mac(), ip(1), 53));
    assert_eq!(counts(&answer.payload), (1, 0));
    assert_eq!(answer.payload[answer.payload.len() - 16..], ip6(3).octets());

    // The pointer of fd00::3.
    let name = dns::reverse_name(ip6(3));
    h.inject(a, &udp6((mac(2), ip6(2), 40_003), (gw_mac(), ip6(1), 53), &dns_query(4, &name, PTR)));
    h.run_until_idle();
    let answer = parse_udp6(&h.sent_frames(a)[0]).expect("a UDP/IPv6 frame");
    assert_eq!(counts(&answer.payload), (1, 0));
    assert!(answer.payload.ends_with(b"\x02v6\x03app\x00"), "v6.app.: {:02x?}", answer.payload);

    // A sandbox asking from an address that is not its own is refused.
    h.inject(b, &udp6((mac(3), ip6(2), 40_004), (gw_mac(), ip6(1), 53), &dns_query(5, "web", AAAA)));
    h.run_until_idle();
    let answer = parse_udp6(&h.sent_frames(b)[0]).expect("a UDP/IPv6 frame");
    assert_eq!(counts(&answer.payload), (0, 5), "REFUSED");
}

#[test]
fn outside_aaaa_asked_over_ipv6_is_forwarded_and_answered_over_ipv6() {
    let (mut h, _, b, upstream) = dns_network();
    let query = dns_query(0x7777, "example.org", AAAA);
    h.inject(b, &udp6((mac(3), ip6(3), 41_000), (gw_mac(), ip6(1), 53), &query));
    h.run_until_idle();
    assert!(h.sent(b).is_empty(), "nothing until the upstream answers");
    let jobs = h.dns_jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!((&jobs[0].query, &jobs[0].upstreams[..]), (&query, &[upstream][..]));
    let mut from_upstream = query.clone();
    from_upstream[2] |= 0x80;
    h.answer_dns(Done { token: jobs[0].token, answer: from_upstream.clone(), failed: false });
    h.step();
    let answers = h.sent_frames(b);
    assert_eq!(answers.len(), 1);
    let answer = parse_udp6(&answers[0]).expect("a UDP/IPv6 frame");
    assert_eq!((answer.src, answer.dst), ((gw_mac(), ip6(1), 53), (mac(3), ip6(3), 41_000)));
    assert_eq!(answer.payload, from_upstream);
}

/// A `--dns` server inside the network at an IPv6 address (web's, fd00::2)
/// is asked from the gateway's IPv6 address and its UDP port 53053, through
/// the bridge; its answer, from its own port only, goes back to the asker,
/// and an ICMPv6 "port unreachable" from it fails the query at once.
#[test]
fn an_on_network_upstream_is_asked_over_ipv6_from_the_gateway() {
    let upstream = std::net::SocketAddr::from((ip6(2), 53));
    let (mut h, a, b, _) = dns_network_asking(upstream);
    // The bridge learns web's MAC (from its ping of the gateway), so the
    // query goes to web alone.
    h.inject(a, &ping6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 1, 1, b"hi"));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a).len(), 1, "the echo reply");
    let query = dns_query(0x7777, "inner.example", AAAA);
    h.inject(b, &udp6((mac(3), ip6(3), 41_000), (gw_mac(), ip6(1), 53), &query));
    h.run_until_idle();
    assert!(h.dns_jobs().is_empty(), "not for the forwarding thread");
    let asked = h.sent_frames(a);
    assert_eq!(asked.len(), 1, "the upstream is asked");
    assert!(h.sent(b).is_empty(), "the query is not flooded");
    let asked = parse_udp6(&asked[0]).expect("a UDP/IPv6 frame");
    assert_eq!((asked.src, asked.dst), ((gw_mac(), ip6(1), 53_053), (mac(2), ip6(2), 53)));
    assert_eq!(asked.payload[2..], query[2..], "the question, under the forwarder's own ID");

    // Its answer from another port is spoofed: dropped, nothing delivered.
    let mut answer = asked.payload.clone();
    answer[2] |= 0x80;
    h.inject(b, &udp6((mac(3), ip6(2), 53), (gw_mac(), ip6(1), 53_053), &answer));
    h.run_until_idle();
    let sent = h.sent_frames(b);
    assert!(sent.is_empty(), "a spoofed answer is not delivered: {sent:02x?}");
    assert_eq!(h.counters(b).drops.get(DropReason::DnsSpoofed), 1);
    // From the upstream's own port, it reaches the asker under its ID.
    h.inject(a, &udp6((mac(2), ip6(2), 53), (gw_mac(), ip6(1), 53_053), &answer));
    h.run_until_idle();
    let delivered = h.sent_frames(b);
    assert_eq!(delivered.len(), 1);
    let delivered = parse_udp6(&delivered[0]).expect("a UDP/IPv6 frame");
    assert_eq!((delivered.src, delivered.dst), ((gw_mac(), ip6(1), 53), (mac(3), ip6(3), 41_000)));
    assert_eq!(delivered.payload[..2], [0x77, 0x77]);
    assert_eq!(delivered.payload[2..], answer[2..]);

    // No server listening: the sandbox's kernel says so, the asker gets
    // SERVFAIL at once.
    h.inject(b, &udp6((mac(3), ip6(3), 41_001), (gw_mac(), ip6(1), 53), &dns_query(8, "gone.example", AAAA)));
    h.run_until_idle();
    let asked = h.sent_frames(a);
    assert_eq!(asked.len(), 1);
    let unreachable = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port);
    h.inject(a, &icmpv6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 64, unreachable, &asked[0][14..]));
    h.run_until_idle();
    let failed = parse_udp6(&h.sent_frames(b)[0]).expect("a UDP/IPv6 frame");
    assert_eq!((&failed.payload[..2], counts(&failed.payload)), (&[0, 8][..], (0, 2)), "SERVFAIL");
}

/// Only the upstream itself may say its port is closed: an ICMPv6 "port
/// unreachable" about it from another sandbox (from that sandbox's own
/// address) changes nothing, and the query still gets the upstream's answer.
#[test]
fn another_sandbox_cannot_fail_an_on_network_upstream() {
    let (mut h, a, b, _) = dns_network_asking(std::net::SocketAddr::from((ip6(2), 53)));
    h.inject(a, &ping6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 1, 1, b"hi"));
    h.run_until_idle();
    h.sent_frames(a);
    h.inject(b, &udp6((mac(3), ip6(3), 41_000), (gw_mac(), ip6(1), 53), &dns_query(0x1111, "in.example", AAAA)));
    h.run_until_idle();
    let asked = h.sent_frames(a).remove(0);
    let unreachable = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port);
    h.inject(b, &icmpv6((mac(3), ip6(3)), (gw_mac(), ip6(1)), 64, unreachable, &asked[14..]));
    h.run_until_idle();
    assert!(h.sent(b).is_empty(), "no SERVFAIL: {:02x?}", h.sent_frames(b));
    let mut answer = parse_udp6(&asked).expect("a UDP/IPv6 frame").payload;
    answer[2] |= 0x80;
    h.inject(a, &udp6((mac(2), ip6(2), 53), (gw_mac(), ip6(1), 53_053), &answer));
    h.run_until_idle();
    let delivered = parse_udp6(&h.sent_frames(b)[0]).expect("a UDP/IPv6 frame");
    assert_eq!((&delivered.payload[..2], counts(&delivered.payload)), (&[0x11, 0x11][..], (0, 0)));
}

/// A list naming servers on and off the network asks those on it first,
/// from the gateway, then the others through the forwarding thread: one
/// that is down on the network does not hide one that works elsewhere.
#[test]
fn off_network_upstreams_are_asked_once_the_on_network_ones_fail() {
    let (mut h, net, a, b) = network(dual_network(0));
    let outside = std::net::SocketAddr::from(([192, 0, 2, 53], 53));
    let inside = std::net::SocketAddr::from((ip6(2), 53));
    let mut directory = dns::Directory::new();
    directory.add_network6(net.0, "app", "fd00::/64".parse().expect("a subnet"));
    directory.add_endpoint(net.0, "web", &[], ip6(2));
    directory.add_mac(net.0, ip6(2), mac(2).0);
    let asker = dns::Asker {
        address: None,
        address6: Some(ip6(3)),
        network: net.0,
        scope: vec![net.0],
        forwarding: true,
        // The outside server first: the one inside is still asked first.
        upstreams: std::sync::Arc::from([outside, inside]),
    };
    directory.add_asker(b.0, asker);
    // Web, where the server on the network runs, is an endpoint as well.
    let web = dns::Asker {
        address: None,
        address6: Some(ip6(2)),
        network: net.0,
        scope: vec![net.0],
        forwarding: true,
        upstreams: std::sync::Arc::from([]),
    };
    directory.add_asker(a.0, web);
    h.call(|reply| Command::SetDns { directory: Box::new(directory), reply });
    h.inject(a, &ping6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 1, 1, b"hi"));
    h.run_until_idle();
    h.sent_frames(a);

    let query = dns_query(0x2222, "out.example", AAAA);
    h.inject(b, &udp6((mac(3), ip6(3), 41_000), (gw_mac(), ip6(1), 53), &query));
    h.run_until_idle();
    assert!(h.dns_jobs().is_empty(), "the server on the network first");
    let asked = h.sent_frames(a).remove(0);
    let unreachable = Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port);
    h.inject(a, &icmpv6((mac(2), ip6(2)), (gw_mac(), ip6(1)), 64, unreachable, &asked[14..]));
    h.run_until_idle();
    assert!(h.sent(b).is_empty(), "no SERVFAIL while another server is left");
    let jobs = h.dns_jobs();
    assert_eq!(jobs.len(), 1, "the outside server, through the forwarding thread");
    assert_eq!((&jobs[0].query, &jobs[0].upstreams[..]), (&query, &[outside][..]));
    let mut from_outside = query.clone();
    from_outside[2] |= 0x80;
    h.answer_dns(Done { token: jobs[0].token, answer: from_outside.clone(), failed: false });
    h.step();
    let delivered = parse_udp6(&h.sent_frames(b)[0]).expect("a UDP/IPv6 frame");
    assert_eq!(delivered.payload, from_outside);
}
