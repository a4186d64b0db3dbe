//! Overlays over an IPv6 underlay (VTEPs [2001:db8::n]:4789): replication
//! to and learning of IPv6 peers, one address family per underlay, the
//! 70-byte overhead in every MTU the switch derives (ICMP too-big for IPv4
//! and IPv6 inner packets, MSS clamping, encrypted overlays 32 bytes less),
//! encryption between two IPv6 hosts, and captures of the underlay with an
//! IPv6 header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ctl::proto::{Direction, LINKTYPE_RAW};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::super::handle::{Command, DatapathError, NetworkSpec};
use super::super::testing::frames::{
    BROADCAST, Tcp, frame, gw_mac, icmp, ip, mac, tcp_mss, tcp4_checksums_ok, udp, vtep, vtep6, vxlan,
};
use super::super::testing::{Harness, Setup, overlay_network};
use crate::counters::DropReason;
use crate::daemon::capture::{CaptureRing, Filter, Popped, Scope, Session};
use crate::events::EventKind;

const VNI: u32 = 4600;

/// A UDP/IPv6 frame of `len` bytes of IP (40-byte header, 8 of UDP,
/// payload) from station 2 to station 7, with link-local-free ULA addresses.
fn udp6(len: usize) -> Vec<u8> {
    let src = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let dst = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    let builder = PacketBuilder::ethernet2(mac(2).0, mac(7).0).ipv6(src, dst, 64).udp(5000, 6000);
    let payload = vec![0x66; len - 48];
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).expect("a UDP/IPv6 datagram builds");
    out
}

/// The MTU an ICMPv4 "fragmentation needed" or ICMPv6 "packet too big"
/// frame announces, and that it came from the gateway's MAC to station 2.
fn announced_mtu(answer: &[u8]) -> u32 {
    let packet = SlicedPacket::from_ethernet(answer).expect("an Ethernet frame");
    assert_eq!(answer[..12], [mac(2).0, gw_mac().0].concat(), "from the gateway to the sender");
    match packet.transport {
        Some(TransportSlice::Icmpv6(icmp)) => match icmp.icmp_type() {
            Icmpv6Type::PacketTooBig { mtu } => mtu,
            other => panic!("not a packet too big: {other:?}"),
        },
        _ => match icmp(answer).expect("ICMP").kind {
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu }) => {
                u32::from(next_hop_mtu)
            }
            other => panic!("not fragmentation needed: {other:?}"),
        },
    }
}

/// Sends `big` and then `fits` from `a` (whose network carries more than
/// the tunnel): `big` is answered with the MTU returned, `fits` leaves.
fn too_big_then_fits(h: &mut Harness, a: crate::port::PortId, big: &[u8], fits: &[u8]) -> u32 {
    h.inject(a, big);
    h.run_until_idle();
    assert!(h.sent_datagrams().is_empty(), "never fragmented");
    let answers = h.sent_frames(a);
    assert_eq!(answers.len(), 1, "one answer");
    let mtu = announced_mtu(&answers[0]);
    h.inject(a, fits);
    h.run_until_idle();
    assert_eq!(h.sent_datagrams().len(), 1, "a packet of the announced size leaves");
    assert!(h.sent(a).is_empty());
    mtu
}

#[test]
fn ipv6_peers_get_floods_and_known_unicast_and_their_stations_are_learned() {
    let mut h = Harness::with(Setup::host6(1));
    let net = h.network(overlay_network(0, VNI));
    let (p2, p3) = (h.peer(net, vtep6(2)), h.peer(net, vtep6(3)));
    let a = h.endpoint(net);

    h.inject(a, &frame(BROADCAST, mac(2), 1));
    h.run_until_idle();
    let mut sent = h.sent_datagrams();
    sent.sort_by_key(|d| d.to);
    assert_eq!(sent.iter().map(|d| d.to).collect::<Vec<_>>(), [vtep6(2), vtep6(3)], "head-end replication");
    assert!(sent.iter().all(|d| d.bytes == vxlan(VNI, &frame(BROADCAST, mac(2), 1))));

    // From host 2's send pool (an ephemeral source port): its station is
    // learned behind the tunnel port of its VTEP.
    h.inject_datagram(SocketAddr::new(vtep6(2).ip(), 51_000), &vxlan(VNI, &frame(BROADCAST, mac(7), 2)));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![frame(BROADCAST, mac(7), 2)]);
    assert_eq!(h.lookup(net, mac(7)), Some(p2));
    h.inject(a, &frame(mac(7), mac(2), 3));
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.iter().map(|d| d.to).collect::<Vec<_>>(), [vtep6(2)], "known unicast to one VTEP");
    assert_eq!((h.counters(p2).rx_packets, h.counters(p3).rx_packets), (1, 0));
    let tunnels = h.snapshot().tunnels;
    let mut remotes: Vec<SocketAddr> = tunnels.iter().map(|t| t.remote).collect();
    remotes.sort();
    assert_eq!(remotes, [vtep6(2), vtep6(3)]);
}

#[test]
fn a_peer_of_the_other_family_is_refused_and_never_learned() {
    let mut h = Harness::with(Setup::host6(1).learning());
    let net = h.network(overlay_network(0, VNI));
    let refused = h.call(|reply| Command::AddPeer { network: net, remote: vtep(2), reply });
    let message = refused.expect_err("an IPv4 peer on an IPv6 VTEP").to_string();
    assert!(
        message.contains("peer 192.0.2.2:4789 is IPv4 but this host's VTEP [2001:db8::1]:4789 is IPv6"),
        "{message}"
    );
    let mapped = h.call(|reply| Command::AddPeer {
        network: net,
        remote: "[::ffff:192.0.2.2]:4789".parse().expect("an address"),
        reply,
    });
    assert!(matches!(mapped, Err(DatapathError::Underlay(vxlan::UnderlayError::Ipv4Mapped(_)))), "{mapped:?}");
    assert!(h.snapshot().tunnels.is_empty(), "nothing was added");

    let mut v4 = Harness::with(Setup::host(1));
    let net4 = v4.network(overlay_network(0, VNI));
    let refused = v4.call(|reply| Command::AddPeer { network: net4, remote: vtep6(2), reply });
    assert!(matches!(refused, Err(DatapathError::Underlay(vxlan::UnderlayError::MixedFamilies { .. }))));

    // A learning IPv6 VTEP learns an IPv6 sender, never an IPv4 one.
    let a = h.endpoint(net);
    h.inject_datagram(vtep(2), &vxlan(VNI, &frame(BROADCAST, mac(8), 1)));
    h.inject_datagram(vtep6(3), &vxlan(VNI, &frame(BROADCAST, mac(9), 2)));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![frame(BROADCAST, mac(9), 2)]);
    assert_eq!(h.vtep_counters().drops.get(DropReason::UnknownPeer), 1);
    let tunnels = h.snapshot().tunnels;
    assert_eq!(tunnels.iter().map(|t| (t.remote, t.learned)).collect::<Vec<_>>(), [(vtep6(3), true)]);
    let (events, _) = h.events();
    let up: Vec<SocketAddr> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::TunnelUp { remote, learned: true, .. } => Some(remote),
            _ => None,
        })
        .collect();
    assert_eq!(up, [vtep6(3)]);
}

#[test]
fn the_ipv6_underlay_carries_70_bytes_less_and_the_gateway_says_so() {
    let mut h = Harness::with(Setup::host6(1));
    let net = h.network(NetworkSpec { mtu: 1500, ..overlay_network(0, VNI) });
    let p2 = h.peer(net, vtep6(2));
    let a = h.endpoint(net);
    h.inject_datagram(vtep6(2), &vxlan(VNI, &frame(BROADCAST, mac(7), 0)));
    h.run_until_idle();
    h.sent(a);

    // IPv4 with DF: 1431 bytes of IP is one too many.
    let v4 = |len: usize| udp((mac(2), ip(2), 5000), (mac(7), ip(7), 6000), &vec![0x33; len - 28]);
    assert_eq!(too_big_then_fits(&mut h, a, &v4(1431), &v4(1430)), 1430, "1500 - 70");
    // IPv6 never fragments on the way: packet too big, same MTU.
    assert_eq!(too_big_then_fits(&mut h, a, &udp6(1431), &udp6(1430)), 1430);
    assert_eq!(h.drops(p2, DropReason::TooBigForTunnel), 2);
}

#[test]
fn encrypted_overlays_announce_the_encryption_overhead_too_over_either_family() {
    for (setup, expected) in [(Setup::host(1), 1450 - 32), (Setup::host6(1), 1430 - 32)] {
        let mut h = Harness::with(setup);
        let peer = if expected == 1418 { vtep(2) } else { vtep6(2) };
        let net = h.network(NetworkSpec { mtu: 1500, key_epoch: Some(1), ..overlay_network(0, VNI) });
        h.peer(net, peer);
        let a = h.endpoint(net);
        let v4 = |len: usize| udp((mac(2), ip(2), 5000), (mac(7), ip(7), 6000), &vec![0x33; len - 28]);
        let mtu = too_big_then_fits(&mut h, a, &v4(expected as usize + 1), &v4(expected as usize));
        assert_eq!(mtu, expected, "encrypted, from {peer}");
        let mtu = too_big_then_fits(&mut h, a, &udp6(expected as usize + 1), &udp6(expected as usize));
        assert_eq!(mtu, expected, "encrypted, IPv6 inside, from {peer}");
    }
}

#[test]
fn syns_are_clamped_to_the_ipv6_tunnel_and_less_when_encrypted() {
    let mut h = Harness::with(Setup::host6(1));
    let plain = h.network(NetworkSpec { mtu: 1500, mss_clamp: true, ..overlay_network(0, VNI) });
    let sealed =
        h.network(NetworkSpec { mtu: 1500, mss_clamp: true, key_epoch: Some(0), ..overlay_network(1, VNI + 1) });
    h.peer(plain, vtep6(2));
    h.peer(sealed, vtep6(2));
    let (a, b) = (h.endpoint(plain), h.endpoint(plain));
    let (c, d) = (h.endpoint(sealed), h.endpoint(sealed));
    let syn = Tcp { syn_mss: Some(1460), ..Tcp::between(2, 3) }.frame(&[]);
    h.inject(a, &syn);
    h.inject(c, &syn);
    h.run_until_idle();
    let (to_b, to_d) = (h.sent_frames(b), h.sent_frames(d));
    assert_eq!(tcp_mss(&to_b[0]), Some(1430 - 40), "IPv6 underlay: 1500 - 70, less IP and TCP headers");
    assert_eq!(tcp_mss(&to_d[0]), Some(1430 - 32 - 40), "encrypted: 32 bytes less");
    assert!(tcp4_checksums_ok(&to_b[0]) && tcp4_checksums_ok(&to_d[0]));
}

#[test]
fn an_encrypted_overlay_between_two_ipv6_hosts() {
    let (mut one, mut two) = (Harness::with(Setup::host6(1)), Harness::with(Setup::host6(2)));
    let spec = NetworkSpec { key_epoch: Some(5), mtu: 1398, ..overlay_network(0, 4700) };
    let net = one.network(spec);
    two.network(spec);
    one.peer(net, vtep6(2));
    let p1 = two.peer(net, vtep6(1));
    let (a, b) = (one.endpoint(net), two.endpoint(net));
    // The largest packet the network's MTU allows crosses sealed.
    let there = udp((mac(2), ip(2), 5000), (mac(3), ip(3), 6000), &vec![0x5c; 1398 - 28]);
    one.inject(a, &there);
    one.run_until_idle();
    assert!(one.sent(a).is_empty(), "no ICMP: it fits");
    assert!(one.carry(&mut two).is_empty(), "all of it to host 2");
    two.run_until_idle();
    assert_eq!(two.sent_frames(b), vec![there]);
    assert_eq!(two.lookup(net, mac(2)), Some(p1));
    assert_eq!(two.vtep_counters().drops.total(), 0);
    let back = udp((mac(3), ip(3), 6000), (mac(2), ip(2), 5000), b"back over IPv6");
    two.inject(b, &back);
    two.run_until_idle();
    assert!(two.carry(&mut one).is_empty());
    one.run_until_idle();
    assert_eq!(one.sent_frames(a), vec![back]);
}

#[test]
fn the_underlay_capture_puts_an_ipv6_header_in_front() {
    let mut h = Harness::with(Setup::host6(1));
    let net = h.network(overlay_network(0, VNI));
    h.peer(net, vtep6(2));
    let a = h.endpoint(net);
    let ring = Arc::new(CaptureRing::new(8, 65_536, None));
    let filter = Filter::compile("ip6 and udp port 4789", LINKTYPE_RAW).expect("a valid filter");
    let session = Box::new(Session::new(ring.clone(), Scope::Underlay, Some(filter)));
    h.call(|reply| Command::Capture { session, reply });

    let hello = frame(BROADCAST, mac(3), 0);
    h.inject(a, &hello);
    h.run_until_idle();
    let sent = h.sent_datagrams();
    let from = SocketAddr::new(vtep6(2).ip(), 51_000);
    let reply = frame(mac(3), mac(7), 1);
    h.inject_datagram(from, &vxlan(VNI, &reply));
    h.run_until_idle();

    let mut taken = Vec::new();
    while let Popped::Record(r) = ring.pop(Duration::ZERO) {
        taken.push((r.direction, r.orig_len, r.data.clone()));
        ring.recycle(r);
    }
    assert_eq!(taken.len(), 2, "one sent, one received, both through the IPv6 filter");
    let source = SocketAddr::new(vtep6(1).ip(), 40_000 + sent[0].sender as u16);
    for ((dir, len, data), (want_dir, src, dst, payload)) in taken.iter().zip([
        (Direction::Tx, source, vtep6(2), vxlan(VNI, &hello)),
        (Direction::Rx, from, vtep6(1), vxlan(VNI, &reply)),
    ]) {
        assert_eq!(*dir, want_dir);
        assert_eq!(*len as usize, 40 + 8 + payload.len());
        let packet = SlicedPacket::from_ip(data).expect("an IP packet");
        let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Udp(u))) = (&packet.net, &packet.transport) else {
            panic!("not UDP/IPv6: {packet:?}")
        };
        let header = ip6.header();
        assert_eq!(SocketAddr::new(header.source_addr().into(), u.source_port()), src);
        assert_eq!(SocketAddr::new(header.destination_addr().into(), u.destination_port()), dst);
        let checksum = u.to_header().calc_checksum_ipv6(&header.to_header(), u.payload()).expect("fits");
        assert_eq!((u.checksum(), u.payload()), (checksum, &payload[..]), "a valid, non-zero UDP checksum");
        assert_ne!(u.checksum(), 0);
    }
}
