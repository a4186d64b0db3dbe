//! MSS clamping, verified with etherparse's option parser and smoltcp's
//! checksum verification.

use etherparse::{SlicedPacket, TcpOptionElement, TransportSlice};
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket};

use super::*;
use crate::offload::{clamp_mss, clamp_mss_to_mtu, complete_checksum};

/// A frame with a valid, complete TCP checksum (no NEEDS_CSUM).
fn complete(spec: &Spec) -> (Built, VirtioNetHdr) {
    let mut b = build(spec);
    let hdr = b.vnet(VirtioNetHdr::GSO_NONE, 0);
    complete_checksum(&mut b.frame, &hdr).unwrap();
    (b, plain())
}

fn syn(options: Vec<u8>, flags: u8, v6: bool) -> Spec {
    Spec { l4: L4Spec::Tcp { options, flags, seq: 1 }, v6, ..Spec::tcp4(0) }
}

/// MSS 1460, SACK permitted, timestamps, NOP, window scale: Linux's SYN.
fn linux_syn_options() -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2];
    o.extend_from_slice(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 0]);
    o.extend_from_slice(&[1, 3, 3, 7]);
    o
}

fn mss_of(frame: &[u8]) -> Option<u16> {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("TCP") };
    t.options_iterator().find_map(|o| match o.unwrap() {
        TcpOptionElement::MaximumSegmentSize(m) => Some(m),
        _ => None,
    })
}

fn tcp_checksum_ok(frame: &[u8], b: &Built, v6: bool) -> bool {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("TCP") };
    let etherparse_ok = match p.net.unwrap() {
        etherparse::NetSlice::Ipv4(ip) => {
            let want = t.calc_checksum_ipv4(ip.header().source(), ip.header().destination()).unwrap();
            want == t.checksum() || (want == 0 && t.checksum() == 0xffff)
        }
        etherparse::NetSlice::Ipv6(ip) => {
            let want = t.calc_checksum_ipv6(ip.header().source(), ip.header().destination()).unwrap();
            want == t.checksum() || (want == 0 && t.checksum() == 0xffff)
        }
        etherparse::NetSlice::Arp(_) => false,
    };
    if !v6 {
        let ip = Ipv4Packet::new_checked(&frame[b.l3_off..]).unwrap();
        let (s, d) = (IpAddress::Ipv4(Ipv4Address::from(SRC4)), IpAddress::Ipv4(Ipv4Address::from(DST4)));
        assert_eq!(TcpPacket::new_checked(ip.payload()).unwrap().verify_checksum(&s, &d), etherparse_ok);
    }
    etherparse_ok
}

#[test]
fn syn_mss_1460_is_clamped_to_1410_with_valid_checksum() {
    for v6 in [false, true] {
        for flags in [SYN, SYN | ACK] {
            let (b, hdr) = complete(&syn(linux_syn_options(), flags, v6));
            assert!(tcp_checksum_ok(&b.frame, &b, v6));
            let mut frame = b.frame.clone();
            assert!(clamp_mss(&mut frame, &hdr, 1410));
            assert_eq!(mss_of(&frame), Some(1410));
            assert!(tcp_checksum_ok(&frame, &b, v6), "checksum after clamping (v6 {v6})");
            assert_eq!(frame.len(), b.frame.len());
            // Clamping again changes nothing.
            assert!(!clamp_mss(&mut frame, &hdr, 1410));
            assert!(!clamp_mss(&mut frame, &hdr, 1460));
        }
    }
}

#[test]
fn clamping_to_an_mtu_takes_the_ip_version_from_the_frame_vlan_tags_and_all() {
    for vlan in [None, Some(7)] {
        for (v6, want) in [(false, 1418 - 40), (true, 1418 - 60)] {
            let (b, hdr) = complete(&Spec { vlan, ..syn(linux_syn_options(), SYN, v6) });
            let mut frame = b.frame.clone();
            assert!(clamp_mss_to_mtu(&mut frame, &hdr, 1418), "vlan {vlan:?} v6 {v6}");
            assert_eq!(mss_of(&frame), Some(want), "vlan {vlan:?} v6 {v6}");
            assert!(tcp_checksum_ok(&frame, &b, v6));
        }
    }
    // An MTU too small for the headers clamps nothing.
    let (b, hdr) = complete(&syn(linux_syn_options(), SYN, true));
    assert!(!clamp_mss_to_mtu(&mut b.frame.clone(), &hdr, 59));
}

#[test]
fn mss_at_an_odd_offset_keeps_the_checksum_valid() {
    // One NOP before the MSS option puts its value at an odd offset.
    let options = vec![1, 2, 4, 0x23, 0x28, 1, 1, 1];
    for v6 in [false, true] {
        let (b, hdr) = complete(&syn(options.clone(), SYN, v6));
        let mut frame = b.frame.clone();
        assert!(clamp_mss(&mut frame, &hdr, 1200));
        assert_eq!(mss_of(&frame), Some(1200));
        assert!(tcp_checksum_ok(&frame, &b, v6));
    }
}

#[test]
fn needs_csum_frames_leave_the_partial_checksum_alone() {
    let b = build(&syn(linux_syn_options(), SYN, false));
    let hdr = b.vnet(VirtioNetHdr::GSO_NONE, 0);
    let mut frame = b.frame.clone();
    assert!(clamp_mss(&mut frame, &hdr, 1410));
    let at = b.l4_off + 16;
    assert_eq!(frame[at..at + 2], b.frame[at..at + 2], "pseudo-header sum untouched");
    complete_checksum(&mut frame, &hdr).unwrap();
    assert!(tcp_checksum_ok(&frame, &b, false));
    assert_eq!(mss_of(&frame), Some(1410));
}

#[test]
fn other_segments_are_untouched() {
    let cases = [
        syn(linux_syn_options(), ACK, false),                // not a SYN
        syn(linux_syn_options(), ACK | PSH, true),           // not a SYN
        syn(vec![1, 1, 1, 1], SYN, false),                   // no MSS option: never grown
        syn(vec![2, 4, 0x05, 0x00], SYN, false),             // MSS 1280 already below
        syn(vec![0, 0, 2, 4, 0x05, 0xb4, 0, 0], SYN, false), // MSS after end-of-options
        syn(vec![2, 3, 0x05, 0xb4], SYN, false),             // bad option length
    ];
    for spec in cases {
        let (b, hdr) = complete(&spec);
        let mut frame = b.frame.clone();
        assert!(!clamp_mss(&mut frame, &hdr, 1410), "{spec:?}");
        assert_eq!(frame, b.frame);
    }
    let (b, hdr) = complete(&Spec::udp4(40));
    let mut frame = b.frame.clone();
    assert!(!clamp_mss(&mut frame, &hdr, 100));
    assert_eq!(frame, b.frame);
}

/// `b` turned around: addresses and ports swapped.
fn reversed(b: &Built, v6: bool) -> Vec<u8> {
    let mut f = b.frame.clone();
    let (src, len) = if v6 { (b.l3_off + 8, 16) } else { (b.l3_off + 12, 4) };
    let addr: Vec<u8> = f[src..src + len].to_vec();
    f.copy_within(src + len..src + 2 * len, src);
    f[src + len..src + 2 * len].copy_from_slice(&addr);
    let ports: Vec<u8> = f[b.l4_off..b.l4_off + 4].to_vec();
    f[b.l4_off..b.l4_off + 2].copy_from_slice(&ports[2..]);
    f[b.l4_off + 2..b.l4_off + 4].copy_from_slice(&ports[..2]);
    f
}

#[test]
fn a_handshake_is_a_syn_then_a_syn_ack_of_one_connection_over_either_family_tagged_or_not() {
    use crate::offload::tcp_handshake;
    for v6 in [false, true] {
        let opening = tcp_handshake(&build(&syn(linux_syn_options(), 0x02, v6)).frame).expect("a SYN");
        assert!(!opening.answer, "v6 {v6}");
        let answer = tcp_handshake(&reversed(&build(&syn(linux_syn_options(), 0x12, v6)), v6)).expect("a SYN-ACK");
        assert!(answer.answer, "v6 {v6}");
        assert_eq!(answer.key, opening.key, "one connection, either direction, v6 {v6}");
        let mut other = build(&syn(linux_syn_options(), 0x02, v6));
        other.frame[other.l4_off + 1] ^= 1;
        assert_ne!(tcp_handshake(&other.frame).map(|h| h.key), Some(opening.key), "another port, v6 {v6}");
        assert!(tcp_handshake(&build(&syn(vec![], 0x10, v6)).frame).is_none(), "ACK, v6 {v6}");
        assert!(tcp_handshake(&build(&Spec { v6, ..Spec::udp4(8) }).frame).is_none(), "UDP, v6 {v6}");
    }
    let tagged = build(&Spec { vlan: Some(7), ..syn(linux_syn_options(), 0x02, false) });
    assert!(tcp_handshake(&tagged.frame).is_some(), "a tagged SYN");
    let syn4 = build(&syn(linux_syn_options(), 0x02, false)).frame;
    for cut in [0, 13, 23, 40, 47] {
        assert!(tcp_handshake(&syn4[..cut]).is_none(), "cut at {cut}: not a whole TCP header");
    }
}

#[test]
fn a_flow_is_a_tcp_connection_or_a_udp_flow_either_way_round_and_its_protocol_tells_them_apart() {
    use crate::offload::flow_key;
    for v6 in [false, true] {
        let tcp = build(&Spec { v6, ..Spec::tcp4(8) });
        let mut udp = build(&Spec { v6, ..Spec::udp4(8) });
        // The same endpoints, ports included.
        udp.frame[udp.l4_off..udp.l4_off + 4].copy_from_slice(&tcp.frame[tcp.l4_off..tcp.l4_off + 4]);
        let (t, u) = (flow_key(&tcp.frame).expect("a TCP segment"), flow_key(&udp.frame).expect("a UDP datagram"));
        assert_eq!(flow_key(&reversed(&tcp, v6)), Some(t), "either direction, v6 {v6}");
        assert_eq!(flow_key(&reversed(&udp, v6)), Some(u), "either direction, v6 {v6}");
        // Which way a frame goes flips with its direction.
        let way = |frame: &[u8]| crate::offload::flow_key_and_way(frame).map(|(_, forth)| forth);
        assert_eq!(way(&reversed(&udp, v6)).map(|w| !w), way(&udp.frame), "v6 {v6}");
        assert!(way(&udp.frame).is_some(), "v6 {v6}");
        assert_ne!(t, u, "the same endpoints over another protocol, v6 {v6}");
        let mut other = udp.frame.clone();
        other[udp.l4_off + 1] ^= 1;
        assert_ne!(flow_key(&other), Some(u), "another port, v6 {v6}");
    }
    // Only the first fragment carries the ports, so no fragment is keyed
    // (a later one's payload would be read as ports).
    for (flags_and_offset, what) in [([0x20, 0x00], "a first fragment"), ([0x00, 0x10], "a last fragment at 128")] {
        let mut fragment = build(&Spec::udp4(8));
        fragment.frame[fragment.l3_off + 6..fragment.l3_off + 8].copy_from_slice(&flags_and_offset);
        assert_eq!(flow_key(&fragment.frame), None, "{what}");
    }
    // A VLAN tag is not part of the flow (tun's hash ignores it too).
    let tagged = build(&Spec { vlan: Some(7), ..Spec::udp4(8) });
    let untagged = flow_key(&build(&Spec::udp4(8)).frame).expect("a UDP datagram");
    assert_eq!(flow_key(&tagged.frame), Some(untagged), "tagged or not");
    let arp = [vec![0xff; 6], vec![2; 6], vec![0x08, 0x06], vec![0; 28]].concat();
    assert_eq!(flow_key(&arp), None);
}
