//! ICMP "fragmentation needed" / ICMPv6 "packet too big" answers and the
//! `exceeds_mtu` predicate, parsed back with etherparse and smoltcp.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use smoltcp::wire::{Icmpv4Packet, Ipv4Packet};

use super::*;
use crate::offload::{TooBig, Unreachable6, exceeds_mtu, icmp_frag_needed, icmpv6_packet_too_big, icmpv6_unreachable};

const GW_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0, 1];
const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x42, 0xacff, 0xfe11, 1);

/// A 1500-byte ping (IPv4 total length 1500) with DF set.
fn ping(df: bool) -> Spec {
    let mut payload = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    payload.extend(pattern(1500 - 20 - 8));
    Spec { df, l4: L4Spec::Raw(1), payload, ..Spec::tcp4(0) }
}

#[test]
fn df_ping_over_mtu_gets_frag_needed() {
    for vlan in [None, Some(100)] {
        let spec = Spec { vlan, ..ping(true) };
        let b = build(&spec);
        assert_eq!(b.frame.len() - b.l3_off, 1500);
        assert_eq!(exceeds_mtu(&b.frame, &plain(), 1450), Some(TooBig::Ipv4));
        assert_eq!(exceeds_mtu(&b.frame, &plain(), 1500), None);

        let mut out = Vec::new();
        let n = icmp_frag_needed(&b.frame, 1450, GW_MAC, GW4, &mut out).expect("answer");
        assert_eq!(n, out.len());
        assert_eq!(&out[0..6], &SRC_MAC, "to the sender");
        assert_eq!(&out[6..12], &GW_MAC, "from the gateway");
        assert_eq!(out[12..b.l3_off], b.frame[12..b.l3_off], "same VLAN tag and ethertype");

        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("IPv4") };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination()), (GW4, SRC4));
        assert_eq!(h.ttl(), 64);
        assert_eq!(h.total_len(), 576, "quote fills the 576-byte datagram");
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("ICMP") };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1450 })
        );
        assert_eq!(icmp.checksum(), icmp.icmp_type().calc_checksum(icmp.payload()));
        assert_eq!(icmp.payload(), &b.frame[b.l3_off..b.l3_off + 548], "quotes the original header + data");

        let ip = Ipv4Packet::new_checked(&out[b.l3_off..]).unwrap();
        assert!(ip.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((u8::from(icmp.msg_type()), icmp.msg_code()), (3, 4));
    }
}

#[test]
fn short_packets_are_quoted_whole() {
    let mut spec = Spec::udp4(200);
    spec.df = true;
    let b = build(&spec);
    let mut out = vec![0xaa; 3];
    icmp_frag_needed(&b.frame, 100, GW_MAC, GW4, &mut out).unwrap();
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("ICMP") };
    assert_eq!(icmp.payload(), &b.frame[b.l3_off..]);
    assert_eq!(out.len(), 14 + 20 + 8 + 20 + 8 + 200);
}

#[test]
fn no_answer_when_not_due() {
    let mut out = Vec::new();
    let none = |spec: &Spec, out: &mut Vec<u8>| {
        let b = build(spec);
        icmp_frag_needed(&b.frame, 1000, GW_MAC, GW4, out)
    };
    assert_eq!(none(&ping(false), &mut out), None, "DF clear");
    assert_eq!(exceeds_mtu(&build(&ping(false)).frame, &plain(), 1000), None, "DF clear: left to the underlay");
    assert_eq!(none(&Spec::tcp4(500), &mut out), None, "fits");
    assert_eq!(none(&Spec::tcp6(2000), &mut out), None, "not IPv4");
    for error_type in [3u8, 4, 5, 11, 12, 200] {
        let mut spec = ping(true);
        spec.payload[0] = error_type;
        assert_eq!(none(&spec, &mut out), None, "ICMP error type {error_type}");
    }
    let mut spec = ping(true);
    spec.payload[0] = 13; // timestamp request: informational, answered
    assert!(none(&spec, &mut out).is_some());
    out.clear();

    // Source not unicast, destination broadcast / multicast, group source MAC.
    for (src, dst) in
        [([0, 0, 0, 0], DST4), ([255; 4], DST4), ([224, 0, 0, 1], DST4), (SRC4, [255; 4]), (SRC4, [239, 1, 1, 1])]
    {
        let mut b = build(&ping(true));
        b.frame[b.l3_off + 12..b.l3_off + 16].copy_from_slice(&src);
        b.frame[b.l3_off + 16..b.l3_off + 20].copy_from_slice(&dst);
        assert_eq!(icmp_frag_needed(&b.frame, 1000, GW_MAC, GW4, &mut out), None, "{src:?} -> {dst:?}");
    }
    let mut b = build(&ping(true));
    b.frame[6] |= 1;
    assert_eq!(icmp_frag_needed(&b.frame, 1000, GW_MAC, GW4, &mut out), None, "group source MAC");

    // Fragments: a non-first one is not answered, the first one is.
    let mut b = build(&ping(true));
    b.frame[b.l3_off + 6..b.l3_off + 8].copy_from_slice(&0x4010u16.to_be_bytes());
    assert_eq!(icmp_frag_needed(&b.frame, 1000, GW_MAC, GW4, &mut out), None, "later fragment");
    b.frame[b.l3_off + 6..b.l3_off + 8].copy_from_slice(&0x6000u16.to_be_bytes());
    assert!(icmp_frag_needed(&b.frame, 1000, GW_MAC, GW4, &mut out).is_some(), "first fragment");
    assert!(!out.is_empty());

    // Not IP at all.
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    out.clear();
    assert_eq!(icmp_frag_needed(&arp, 10, GW_MAC, GW4, &mut out), None);
    assert_eq!(icmpv6_packet_too_big(&arp, 10, GW_MAC, GW6, &mut out), None);
    assert_eq!(exceeds_mtu(&arp, &plain(), 10), None);
    assert!(out.is_empty(), "out untouched when no answer");
}

#[test]
fn ipv6_too_big_gets_packet_too_big() {
    let spec = Spec::udp6(1800);
    let b = build(&spec);
    assert_eq!(exceeds_mtu(&b.frame, &plain(), 1450), Some(TooBig::Ipv6));
    let mut out = Vec::new();
    let n = icmpv6_packet_too_big(&b.frame, 1450, GW_MAC, GW6, &mut out).expect("answer");
    assert_eq!(n, out.len());
    assert_eq!(out.len(), 14 + 1280, "quote fills 1280 bytes");
    assert_eq!((&out[0..6], &out[6..12]), (&SRC_MAC[..], &GW_MAC[..]));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("IPv6") };
    let h = ip.header();
    assert_eq!((h.source_addr(), h.destination()), (GW6, SRC6));
    assert_eq!(h.hop_limit(), 64);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("ICMPv6") };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1450 });
    assert!(icmp.is_checksum_valid(GW6.octets(), SRC6));
    assert_eq!(icmp.payload(), &b.frame[b.l3_off..b.l3_off + 1232]);
}

#[test]
fn ipv6_no_answer_cases() {
    let mut out = Vec::new();
    // Fits.
    let b = build(&Spec::udp6(100));
    assert_eq!(icmpv6_packet_too_big(&b.frame, 1280, GW_MAC, GW6, &mut out), None);
    // ICMPv6 error (destination unreachable), and an informational one.
    let mut spec = Spec { l4: L4Spec::Raw(58), ..Spec::udp6(0) };
    spec.payload = vec![1, 0, 0, 0, 0, 0, 0, 0];
    spec.payload.extend(pattern(1500));
    let b = build(&spec);
    assert_eq!(icmpv6_packet_too_big(&b.frame, 1280, GW_MAC, GW6, &mut out), None);
    spec.payload[0] = 128;
    let b = build(&spec);
    assert!(icmpv6_packet_too_big(&b.frame, 1280, GW_MAC, GW6, &mut out).is_some());
    // ICMPv6 error behind a hop-by-hop header.
    let mut hbh = spec.clone();
    hbh.l4 = L4Spec::Raw(0);
    hbh.payload = vec![58, 0, 1, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    hbh.payload.extend(pattern(1500));
    let b = build(&hbh);
    assert_eq!(icmpv6_packet_too_big(&b.frame, 1280, GW_MAC, GW6, &mut out), None);
    // Unspecified / multicast source.
    for src in [Ipv6Addr::UNSPECIFIED, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)] {
        let mut b = build(&Spec::udp6(1500));
        b.frame[b.l3_off + 8..b.l3_off + 24].copy_from_slice(&src.octets());
        assert_eq!(icmpv6_packet_too_big(&b.frame, 1280, GW_MAC, GW6, &mut out), None);
    }
    // A multicast destination is answered (RFC 4443 2.4 e.2).
    let mut b = build(&Spec::udp6(1500));
    b.frame[b.l3_off + 24..b.l3_off + 40].copy_from_slice(&Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, 9).octets());
    assert!(icmpv6_packet_too_big(&b.frame, 1280, GW_MAC, GW6, &mut out).is_some());
    // IPv4 is not answered here.
    assert_eq!(icmpv6_packet_too_big(&build(&ping(true)).frame, 1000, GW_MAC, GW6, &mut out), None);
}

#[test]
fn ipv6_unreachable_answers_unicast_and_quotes() {
    let b = build(&Spec::udp6(200));
    let mut out = Vec::new();
    let n = icmpv6_unreachable(&b.frame, Unreachable6::NoRoute, GW_MAC, GW6, &mut out).expect("answer");
    assert_eq!(n, out.len());
    assert_eq!((&out[0..6], &out[6..12]), (&SRC_MAC[..], &GW_MAC[..]));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("IPv6") };
    assert_eq!((ip.header().source_addr(), ip.header().destination()), (GW6, SRC6));
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("ICMPv6") };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::NoRoute));
    assert!(icmp.is_checksum_valid(GW6.octets(), SRC6));
    assert_eq!(icmp.payload(), &b.frame[b.l3_off..], "the whole packet quoted");

    // Never for a multicast destination, an ICMPv6 error, or IPv4.
    let mut out = Vec::new();
    let mut multicast = build(&Spec::udp6(200));
    let l3 = multicast.l3_off;
    multicast.frame[l3 + 24..l3 + 40].copy_from_slice(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets());
    assert_eq!(icmpv6_unreachable(&multicast.frame, Unreachable6::NoRoute, GW_MAC, GW6, &mut out), None);
    let mut spec = Spec { l4: L4Spec::Raw(58), ..Spec::udp6(0) };
    spec.payload = vec![1, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(icmpv6_unreachable(&build(&spec).frame, Unreachable6::NoRoute, GW_MAC, GW6, &mut out), None);
    assert_eq!(icmpv6_unreachable(&build(&ping(true)).frame, Unreachable6::NoRoute, GW_MAC, GW6, &mut out), None);
}

#[test]
fn exceeds_mtu_for_gso_frames() {
    // TCP GSO, as Linux's skb_gso_validate_network_len: the segments the
    // sender asked for (IP + TCP headers + gso_size) must fit, or the sender
    // is told the MTU (so path MTU discovery is deterministic).
    let b = build(&Spec::tcp4(30_000));
    // 20 + 32 + 1448 = 1500 bytes per segment.
    assert_eq!(exceeds_mtu(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 1448), 1499), Some(TooBig::Ipv4));
    assert_eq!(exceeds_mtu(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 1448), 1500), None);
    let b6 = build(&Spec::tcp6(30_000));
    assert_eq!(exceeds_mtu(&b6.frame, &b6.vnet(VirtioNetHdr::GSO_TCPV6, 1428), 1280), Some(TooBig::Ipv6));
    assert_eq!(exceeds_mtu(&b6.frame, &b6.vnet(VirtioNetHdr::GSO_TCPV6, 1208), 1280), None);
    let nodf = build(&Spec { df: false, ..Spec::tcp4(30_000) });
    assert_eq!(exceeds_mtu(&nodf.frame, &nodf.vnet(VirtioNetHdr::GSO_TCPV4, 1448), 1400), None, "DF clear");

    // USO: a segment of 20 + 8 + 1400 = 1428 bytes.
    let u4 = build(&Spec::udp4(10_000));
    let hdr = u4.vnet(VirtioNetHdr::GSO_UDP_L4, 1400);
    assert_eq!(exceeds_mtu(&u4.frame, &hdr, 1427), Some(TooBig::Ipv4));
    assert_eq!(exceeds_mtu(&u4.frame, &hdr, 1428), None);
    let u4_nodf = build(&Spec { df: false, ..Spec::udp4(10_000) });
    assert_eq!(exceeds_mtu(&u4_nodf.frame, &hdr, 1000), None, "DF clear: the underlay fragments");
    let u6 = build(&Spec::udp6(10_000));
    let hdr6 = u6.vnet(VirtioNetHdr::GSO_UDP_L4, 1400);
    assert_eq!(exceeds_mtu(&u6.frame, &hdr6, 1447), Some(TooBig::Ipv6));
    assert_eq!(exceeds_mtu(&u6.frame, &hdr6, 1448), None);
    // A USO frame whose only segment is short fits.
    let small = build(&Spec::udp6(100));
    assert_eq!(exceeds_mtu(&small.frame, &small.vnet(VirtioNetHdr::GSO_UDP_L4, 1400), 1280), None);
}
