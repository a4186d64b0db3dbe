//! `complete_checksum` against checksums computed by etherparse.

use etherparse::{SlicedPacket, TransportSlice};

use super::*;
use crate::offload::{OffloadError, SegmentBuf, complete_checksum, segment_to_mtu};

/// The full L4 checksum etherparse computes for `frame` (field ignored).
fn independent_checksum(frame: &[u8], v6: bool) -> u16 {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (s4, d4, s6, d6) = match p.net.unwrap() {
        etherparse::NetSlice::Ipv4(ip) => (ip.header().source(), ip.header().destination(), [0; 16], [0; 16]),
        etherparse::NetSlice::Ipv6(ip) => ([0; 4], [0; 4], ip.header().source(), ip.header().destination()),
        etherparse::NetSlice::Arp(_) => unreachable!(),
    };
    match p.transport.unwrap() {
        TransportSlice::Tcp(t) => if v6 { t.calc_checksum_ipv6(s6, d6) } else { t.calc_checksum_ipv4(s4, d4) }.unwrap(),
        TransportSlice::Udp(u) => {
            let h = u.to_header();
            if v6 {
                h.calc_checksum_ipv6_raw(s6, d6, u.payload())
            } else {
                h.calc_checksum_ipv4_raw(s4, d4, u.payload())
            }
            .unwrap()
        }
        _ => unreachable!(),
    }
}

#[test]
fn completion_matches_an_independent_full_checksum() {
    let specs = [
        Spec::tcp4(0),
        Spec::tcp4(1),
        Spec::tcp4(1447),
        Spec::tcp6(999),
        Spec::udp4(0),
        Spec::udp4(513),
        Spec::udp6(1232),
        Spec { vlan: Some(7), ..Spec::tcp6(64) },
    ];
    for spec in specs {
        let b = build(&spec);
        let mut frame = b.frame.clone();
        let hdr = b.vnet(VirtioNetHdr::GSO_NONE, 0);
        complete_checksum(&mut frame, &hdr).unwrap();
        let at = b.l4_off + b.csum_offset;
        let got = u16::from_be_bytes([frame[at], frame[at + 1]]);
        // etherparse writes a zero UDP result as 0xffff, and a TCP one as 0.
        let want = independent_checksum(&b.frame, spec.v6);
        assert_eq!(got, want, "{spec:?}");
        // Only the checksum field changed.
        assert_eq!(frame[..at], b.frame[..at]);
        assert_eq!(frame[at + 2..], b.frame[at + 2..]);
    }
}

#[test]
fn frames_without_needs_csum_are_untouched() {
    let b = build(&Spec::tcp4(100));
    let mut frame = b.frame.clone();
    let mut hdr = b.vnet(VirtioNetHdr::GSO_NONE, 0);
    hdr.flags = VirtioNetHdr::FLAG_DATA_VALID;
    hdr.csum_start = u16::MAX;
    complete_checksum(&mut frame, &hdr).unwrap();
    assert_eq!(frame, b.frame);
}

#[test]
fn checksum_offsets_outside_the_frame_are_errors() {
    let b = build(&Spec::udp4(10));
    let len = b.frame.len();
    let cases =
        [(len as u16, 0u16), ((len - 1) as u16, 0), ((len - 2) as u16, 1), (0, (len - 1) as u16), (u16::MAX, u16::MAX)];
    for (start, offset) in cases {
        let mut frame = b.frame.clone();
        let mut hdr = b.vnet(VirtioNetHdr::GSO_NONE, 0);
        (hdr.csum_start, hdr.csum_offset) = (start, offset);
        assert_eq!(complete_checksum(&mut frame, &hdr), Err(OffloadError::BadChecksumOffsets { start, offset, len }));
        assert_eq!(frame, b.frame, "nothing written on error");
    }
    // The last two bytes are a valid (if odd) place.
    let mut frame = b.frame.clone();
    let mut hdr = b.vnet(VirtioNetHdr::GSO_NONE, 0);
    (hdr.csum_start, hdr.csum_offset) = ((len - 2) as u16, 0);
    complete_checksum(&mut frame, &hdr).unwrap();
}

/// A frame like `spec`'s whose L4 checksum comes out as zero: its first
/// payload word is changed so that the words sum to 0xffff.
fn zero_checksum_frame(spec: &Spec) -> Built {
    let mut b = build(spec);
    let c = independent_checksum(&b.frame, spec.v6);
    // etherparse's UDP checksum is already 0xffff for a zero result.
    let c = if c == 0xffff { 0 } else { c };
    let at = b.payload_off;
    let word = u16::from_be_bytes([b.frame[at], b.frame[at + 1]]);
    let word = fold16(u32::from(word) + u32::from(c));
    b.frame[at..at + 2].copy_from_slice(&word.to_be_bytes());
    b
}

/// Segmentation, finishing a `NEEDS_CSUM` frame and finishing a GSO frame's
/// segments write a zero result as Linux's TCP and UDP do (and Wireshark
/// checks): 0 in a TCP header (0xffff would be accepted but reported as a
/// bad checksum), 0xffff in a UDP one (0 would mean "no checksum").
#[test]
fn a_zero_checksum_is_zero_for_tcp_and_all_ones_for_udp() {
    for (spec, gso_type, want) in [
        (Spec::tcp4(300), VirtioNetHdr::GSO_TCPV4, 0),
        (Spec::tcp6(300), VirtioNetHdr::GSO_TCPV6, 0),
        (Spec::udp4(300), VirtioNetHdr::GSO_UDP_L4, 0xffff),
        (Spec::udp6(300), VirtioNetHdr::GSO_UDP_L4, 0xffff),
    ] {
        let b = zero_checksum_frame(&spec);
        let at = b.l4_off + b.csum_offset;
        let field = |f: &[u8]| u16::from_be_bytes([f[at], f[at + 1]]);

        let mut frame = b.frame.clone();
        complete_checksum(&mut frame, &b.vnet(VirtioNetHdr::GSO_NONE, 0)).unwrap();
        assert_eq!(field(&frame), want, "completed {spec:?}");
        assert_eq!(independent_checksum(&frame, spec.v6), want, "etherparse on {spec:?}");

        // One segment (the payload fits): the segment is the frame, finished.
        let mut out = SegmentBuf::with_capacity(4096, 4);
        assert_eq!(segment_to_mtu(&b.frame, &b.vnet(gso_type, 1000), 1500, &mut out).unwrap(), 1);
        let seg = out.iter().next().unwrap();
        assert_eq!(field(seg), want, "segmented {spec:?}");
    }
}
