//! Segmentation checked segment by segment with etherparse (and smoltcp for
//! IPv4): checksums, lengths, IDs, sequence numbers, flags, and that the
//! payloads concatenate to the original.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket};

use super::*;
use crate::offload::{MAX_SEGMENTS, OffloadError, SegmentBuf, segment, segment_to_mtu};

/// What one segment looked like.
struct Seg {
    seq: Option<u32>,
    flags: u8,
    ip_id: Option<u16>,
    payload: Vec<u8>,
    header_len: usize,
}

/// Parses and fully checks one output segment against the original frame.
fn check_one(seg: &[u8], b: &Built, spec: &Spec) -> Seg {
    let p = SlicedPacket::from_ethernet(seg).expect("segment parses");
    // Headers before L3 are copied unchanged.
    assert_eq!(seg[..b.l3_off], b.frame[..b.l3_off]);
    let (src4, dst4, src6, dst6, ip_id);
    match p.net.as_ref().expect("IP") {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            assert_eq!(usize::from(h.total_len()), seg.len() - b.l3_off, "IPv4 total length");
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum(), "IPv4 header checksum");
            assert!(Ipv4Packet::new_checked(&seg[b.l3_off..]).unwrap().verify_checksum());
            assert_eq!(h.dont_fragment(), spec.df);
            assert_eq!(h.options(), &spec.ip_options[..]);
            (src4, dst4, src6, dst6) = (h.source(), h.destination(), [0; 16], [0; 16]);
            ip_id = Some(h.identification());
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            assert_eq!(usize::from(h.payload_length()), seg.len() - b.l3_off - 40, "IPv6 payload length");
            assert_eq!(h.flow_label().value(), 0xabcde);
            (src4, dst4, src6, dst6) = ([0; 4], [0; 4], h.source(), h.destination());
            ip_id = None;
        }
        NetSlice::Arp(_) => panic!("not IP"),
    }
    let v4 = !spec.v6;
    let (sa, da) = (IpAddress::Ipv4(Ipv4Address::from(src4)), IpAddress::Ipv4(Ipv4Address::from(dst4)));
    match p.transport.expect("transport") {
        TransportSlice::Tcp(tcp) => {
            let want = if v4 { tcp.calc_checksum_ipv4(src4, dst4) } else { tcp.calc_checksum_ipv6(src6, dst6) };
            let want = want.unwrap();
            // Exactly etherparse's value: a zero result stays 0, as Linux writes it.
            assert_eq!(tcp.checksum(), want, "TCP checksum");
            if v4 {
                let ip = Ipv4Packet::new_checked(&seg[b.l3_off..]).unwrap();
                assert!(TcpPacket::new_checked(ip.payload()).unwrap().verify_checksum(&sa, &da));
            }
            let L4Spec::Tcp { options, .. } = &spec.l4 else { panic!("TCP expected") };
            assert_eq!(tcp.options(), &options[..]);
            assert_eq!((tcp.source_port(), tcp.destination_port()), (40000, 5201));
            assert_eq!((tcp.acknowledgment_number(), tcp.window_size()), (0x0102_0304, 502));
            Seg {
                seq: Some(tcp.sequence_number()),
                flags: tcp.header_slice()[13],
                ip_id,
                payload: tcp.payload().to_vec(),
                header_len: b.payload_off,
            }
        }
        TransportSlice::Udp(udp) => {
            let hdr = udp.to_header();
            assert_eq!(usize::from(hdr.length), 8 + udp.payload().len(), "UDP length");
            assert_eq!(usize::from(hdr.length), seg.len() - b.l4_off, "UDP length vs frame");
            let want = if v4 {
                hdr.calc_checksum_ipv4_raw(src4, dst4, udp.payload())
            } else {
                hdr.calc_checksum_ipv6_raw(src6, dst6, udp.payload())
            };
            assert_ne!(hdr.checksum, 0, "UDP checksum must be present");
            assert_eq!(hdr.checksum, want.unwrap(), "UDP checksum");
            if v4 {
                let ip = Ipv4Packet::new_checked(&seg[b.l3_off..]).unwrap();
                assert!(UdpPacket::new_checked(ip.payload()).unwrap().verify_checksum(&sa, &da));
            }
            Seg { seq: None, flags: 0, ip_id, payload: udp.payload().to_vec(), header_len: b.payload_off }
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

/// Checks all segments: sizes, IDs, sequence numbers, flags, payload.
fn check_all(out: &SegmentBuf, b: &Built, spec: &Spec, mss: usize) {
    let n = out.len();
    assert_eq!(n, spec.payload.len().div_ceil(mss).max(1));
    assert_eq!(out.iter().len(), n);
    let mut payload = Vec::new();
    for (i, seg) in out.iter().enumerate() {
        let s = check_one(seg, b, spec);
        assert_eq!(seg.len(), s.header_len + s.payload.len());
        if i + 1 < n {
            assert_eq!(s.payload.len(), mss, "segment {i} is full-sized");
        } else {
            assert!(s.payload.len() <= mss);
        }
        if !spec.v6 {
            assert_eq!(s.ip_id, Some(spec.ip_id.wrapping_add(i as u16)), "IPv4 ID of segment {i}");
        }
        if let L4Spec::Tcp { flags, seq, .. } = spec.l4 {
            assert_eq!(s.seq, Some(seq.wrapping_add(payload.len() as u32)), "contiguous seq");
            let mut want = flags;
            if i + 1 < n {
                want &= !(FIN | PSH);
            }
            if i > 0 {
                want &= !CWR;
            }
            assert_eq!(s.flags, want, "flags of segment {i}/{n}");
        }
        payload.extend_from_slice(&s.payload);
    }
    assert_eq!(payload, spec.payload, "payloads concatenate to the original");
}

fn run(spec: &Spec, gso_type: u8, gso_size: u16) -> (Built, SegmentBuf, usize) {
    let b = build(spec);
    let mut out = SegmentBuf::new();
    let n = segment(&b.frame, &b.vnet(gso_type, gso_size), &mut out).expect("segments");
    assert_eq!(n, out.len());
    check_all(&out, &b, spec, usize::from(gso_size));
    (b, out, n)
}

#[test]
fn tcpv4_with_timestamps_last_segment_shorter() {
    let spec = Spec::tcp4(10_000);
    let (_, out, n) = run(&spec, VirtioNetHdr::GSO_TCPV4, 1448);
    assert_eq!(n, 7);
    // 6 full segments of 1448 and one of 10000 - 6*1448 = 1312.
    assert_eq!(out.get(6).unwrap().len(), 14 + 20 + 32 + 1312);
    assert!(out.get(7).is_none());
}

#[test]
fn tcpv4_near_64k_with_ip_options_seq_and_id_wrap() {
    let mut spec = Spec::tcp4(65_535 - 24 - 32);
    spec.ip_options = vec![0x94, 0x04, 0, 0]; // router alert
    spec.l4 = L4Spec::Tcp { options: timestamps(), flags: ACK | PSH | FIN | CWR | ECE, seq: u32::MAX - 3000 };
    run(&spec, VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_ECN, 1448);
}

#[test]
fn tcpv6_segments() {
    let mut spec = Spec::tcp6(20_000);
    spec.l4 = L4Spec::Tcp { options: timestamps(), flags: ACK | PSH | FIN, seq: 7 };
    let (_, _, n) = run(&spec, VirtioNetHdr::GSO_TCPV6, 1428);
    assert_eq!(n, 15);
}

#[test]
fn uso_v4_and_v6_make_independent_datagrams() {
    let (_, out, n) = run(&Spec::udp4(5000), VirtioNetHdr::GSO_UDP_L4, 1200);
    assert_eq!(n, 5);
    assert_eq!(out.get(4).unwrap().len(), 14 + 20 + 8 + 200);
    let (_, _, n) = run(&Spec::udp6(3600), VirtioNetHdr::GSO_UDP_L4, 1200);
    assert_eq!(n, 3, "exact multiple: no empty trailing datagram");
}

#[test]
fn vlan_tagged_frames() {
    let mut spec = Spec::tcp4(4000);
    spec.vlan = Some(42);
    run(&spec, VirtioNetHdr::GSO_TCPV4, 1000);
    let mut spec = Spec::udp6(2500);
    spec.vlan = Some(4094);
    run(&spec, VirtioNetHdr::GSO_UDP_L4, 1000);
}

#[test]
fn single_segment_gso_frame_gets_full_checksum() {
    let spec = Spec::tcp4(100);
    let (_, out, n) = run(&spec, VirtioNetHdr::GSO_TCPV4, 1448);
    assert_eq!(n, 1);
    assert_eq!(out.total_len(), 14 + 20 + 32 + 100);
}

#[test]
fn mtu_smaller_than_gso_size_shrinks_tcp_segments() {
    for (spec, ty) in [(Spec::tcp4(9000), VirtioNetHdr::GSO_TCPV4), (Spec::tcp6(9000), VirtioNetHdr::GSO_TCPV6)] {
        let b = build(&spec);
        let mut out = SegmentBuf::new();
        let mtu = 1400u16;
        let ip_hdr = if spec.v6 { 40 } else { 20 };
        let mss = usize::from(mtu) - ip_hdr - 32;
        let n = segment_to_mtu(&b.frame, &b.vnet(ty, 1448), mtu, &mut out).unwrap();
        assert_eq!(n, 9000usize.div_ceil(mss));
        check_all(&out, &b, &spec, mss);
        for seg in &out {
            assert!(seg.len() - b.l3_off <= usize::from(mtu));
        }
        assert_eq!(out.get(0).unwrap().len() - b.l3_off, usize::from(mtu), "full segments fill the MTU");
        // A larger MTU than the sender's gso_size keeps gso_size.
        segment_to_mtu(&b.frame, &b.vnet(ty, 1000), 9000, &mut out).unwrap();
        check_all(&out, &b, &spec, 1000);
    }
}

#[test]
fn mtu_too_small_for_headers_is_an_error() {
    let b = build(&Spec::tcp4(3000));
    let mut out = SegmentBuf::new();
    let r = segment_to_mtu(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 1448), 52, &mut out);
    assert_eq!(r, Err(OffloadError::MtuTooSmall { mtu: 52, headers: 52 }));
    assert!(out.is_empty());
}

#[test]
fn uso_is_not_resized_by_mtu() {
    let spec = Spec::udp4(3000);
    let b = build(&spec);
    let mut out = SegmentBuf::new();
    segment_to_mtu(&b.frame, &b.vnet(VirtioNetHdr::GSO_UDP_L4, 1400), 1000, &mut out).unwrap();
    check_all(&out, &b, &spec, 1400);
}

#[test]
fn non_gso_frames_pass_through_with_checksum_completed() {
    for spec in [Spec::tcp4(700), Spec::udp6(33), Spec::tcp6(0)] {
        let b = build(&spec);
        let mut out = SegmentBuf::new();
        let n = segment(&b.frame, &b.vnet(VirtioNetHdr::GSO_NONE, 0), &mut out).unwrap();
        assert_eq!(n, 1);
        check_all(&out, &b, &spec, spec.payload.len().max(1));
        // Without NEEDS_CSUM the frame is copied verbatim.
        segment(&b.frame, &plain(), &mut out).unwrap();
        assert_eq!(out.get(0).unwrap(), &b.frame[..]);
    }
    let arp = [0xffu8; 60];
    let mut out = SegmentBuf::new();
    assert_eq!(segment(&arp, &plain(), &mut out), Ok(1));
    assert_eq!(out.get(0).unwrap(), &arp[..]);
}

#[test]
fn hdr_len_is_only_a_hint() {
    let spec = Spec::tcp4(5000);
    let b = build(&spec);
    let mut want = SegmentBuf::new();
    segment(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 1448), &mut want).unwrap();
    for lie in [0u16, 1, 40, 200, u16::MAX] {
        let mut hdr = b.vnet(VirtioNetHdr::GSO_TCPV4, 1448);
        hdr.hdr_len = lie;
        let mut out = SegmentBuf::new();
        segment(&b.frame, &hdr, &mut out).unwrap();
        assert!(out.iter().eq(want.iter()), "hdr_len {lie} changed the output");
    }
}

#[test]
fn ethernet_padding_is_not_payload() {
    // A short frame (58 bytes) padded to the Ethernet minimum.
    let spec = Spec { l4: L4Spec::Tcp { options: Vec::new(), flags: ACK, seq: 9 }, ..Spec::tcp4(4) };
    let mut b = build(&spec);
    assert_eq!(b.frame.len(), 58);
    b.frame.resize(60, 0);
    let mut out = SegmentBuf::new();
    segment(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 2), &mut out).unwrap();
    check_all(&out, &b, &spec, 2);
}

#[test]
fn buffer_is_reused_without_growing() {
    let spec = Spec::tcp4(30_000);
    let b = build(&spec);
    let hdr = b.vnet(VirtioNetHdr::GSO_TCPV4, 1448);
    let mut out = SegmentBuf::new();
    segment(&b.frame, &hdr, &mut out).unwrap();
    let (data_cap, seg_cap) = (out.data.capacity(), out.segs.capacity());
    for _ in 0..10 {
        segment(&b.frame, &hdr, &mut out).unwrap();
        check_all(&out, &b, &spec, 1448);
    }
    assert_eq!((out.data.capacity(), out.segs.capacity()), (data_cap, seg_cap));
}

#[test]
fn too_many_segments_is_refused() {
    let b = build(&Spec::udp4(MAX_SEGMENTS + 1));
    let mut out = SegmentBuf::new();
    let r = segment(&b.frame, &b.vnet(VirtioNetHdr::GSO_UDP_L4, 1), &mut out);
    assert_eq!(r, Err(OffloadError::TooManySegments { segments: MAX_SEGMENTS + 1, max: MAX_SEGMENTS }));
    let b = build(&Spec::udp4(MAX_SEGMENTS));
    assert_eq!(segment(&b.frame, &b.vnet(VirtioNetHdr::GSO_UDP_L4, 1), &mut out), Ok(MAX_SEGMENTS));
}

#[test]
fn get_mut_edits_one_segment() {
    let (_, mut out, _) = run(&Spec::tcp4(3000), VirtioNetHdr::GSO_TCPV4, 1448);
    out.get_mut(1).unwrap()[0] = 0xee;
    assert_eq!(out.get(1).unwrap()[0], 0xee);
    assert_eq!(out.get(0).unwrap()[0], DST_MAC[0]);
    assert!(out.get_mut(3).is_none());
    out.clear();
    assert!(out.is_empty() && out.total_len() == 0);
}

#[test]
fn room_around_segments_leaves_the_frames_intact_and_back_to_back() {
    let spec = Spec::tcp4(5000);
    let b = build(&spec);
    let hdr = b.vnet(VirtioNetHdr::GSO_TCPV4, 1000);
    let mut plain = SegmentBuf::new();
    segment(&b.frame, &hdr, &mut plain).unwrap();
    let mut roomy = SegmentBuf::new();
    roomy.set_room(24, 16);
    let n = segment(&b.frame, &hdr, &mut roomy).unwrap();
    assert_eq!(n, plain.len());
    let mut offset = 0;
    for i in 0..n {
        let frame = plain.get(i).unwrap().to_vec();
        assert_eq!(roomy.get(i).unwrap(), &frame[..], "segment {i} unchanged by the room");
        let with_room = roomy.get_with_room_mut(i).unwrap().to_vec();
        assert_eq!(with_room.len(), 24 + frame.len() + 16);
        assert!(with_room[..24].iter().chain(&with_room[24 + frame.len()..]).all(|&b| b == 0));
        assert_eq!(roomy.datagrams()[offset..offset + with_room.len()], with_room[..], "back to back");
        offset += with_room.len();
    }
    assert_eq!(offset, roomy.datagrams().len());
    assert_eq!(roomy.total_len(), plain.total_len());
}
