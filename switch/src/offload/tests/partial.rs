//! Partial checksums carried across an authenticated tunnel: segments cut
//! with their checksums left partial become exactly the complete segments
//! once completed, the receiver finds the checksum again by parsing, and GRO
//! hands a partial segment on with a `NEEDS_CSUM` header even alone.

use super::*;
use crate::offload::{
    ChecksumState, Coalescer, OffloadError, SegmentBuf, complete_checksum, is_standard_partial, partial_checksum_hdr,
    segment_to_mtu, segment_to_mtu_partial,
};

/// The GSO type of a spec.
fn gso_type(spec: &Spec) -> u8 {
    match (&spec.l4, spec.v6) {
        (L4Spec::Udp, _) => VirtioNetHdr::GSO_UDP_L4,
        (_, false) => VirtioNetHdr::GSO_TCPV4,
        (_, true) => VirtioNetHdr::GSO_TCPV6,
    }
}

#[test]
fn completed_partial_segments_equal_complete_ones() {
    for spec in [Spec::tcp4(9_000), Spec::tcp6(9_000), Spec::udp4(5_000), Spec::udp6(5_000)] {
        let b = build(&spec);
        let hdr = b.vnet(gso_type(&spec), 1400);
        let (mut complete, mut partial) = (SegmentBuf::new(), SegmentBuf::new());
        let n = segment_to_mtu(&b.frame, &hdr, 1418, &mut complete).unwrap();
        assert_eq!(segment_to_mtu_partial(&b.frame, &hdr, 1418, &mut partial), Ok(n));
        assert!(n > 3);
        for i in 0..n {
            let (want, seg) = (complete.get(i).unwrap(), partial.get_mut(i).unwrap());
            let field = b.l4_off + b.csum_offset;
            assert_ne!(seg[field..field + 2], want[field..field + 2], "segment {i}: left partial");
            assert_eq!(seg[..field], want[..field], "segment {i}: all else equal");
            assert_eq!(seg[field + 2..], want[field + 2..], "segment {i}: all else equal");
            // The receiver finds the checksum by parsing and completes it.
            let found = partial_checksum_hdr(seg).expect("a TCP/UDP segment");
            assert_eq!((found.csum_start, found.csum_offset), (hdr.csum_start, hdr.csum_offset));
            assert!(found.needs_csum() && !found.is_gso());
            complete_checksum(seg, &found).unwrap();
            assert_eq!(seg, want, "segment {i} completed");
        }
    }
}

#[test]
fn partial_segmentation_refuses_checksums_it_cannot_find_again() {
    let b = build(&Spec::tcp4(3_000));
    let mut out = SegmentBuf::new();
    let good = b.vnet(VirtioNetHdr::GSO_TCPV4, 1400);
    assert!(is_standard_partial(&b.frame, &good));
    for hdr in [
        VirtioNetHdr { flags: 0, ..good },
        VirtioNetHdr { csum_start: good.csum_start + 2, ..good },
        VirtioNetHdr { csum_offset: 6, ..good },
    ] {
        assert!(!is_standard_partial(&b.frame, &hdr));
        let refused = segment_to_mtu_partial(&b.frame, &hdr, 1418, &mut out);
        assert!(matches!(refused, Err(OffloadError::Unsupported { .. })), "{hdr:?}: {refused:?}");
        assert!(out.is_empty());
    }
}

#[test]
fn only_tcp_and_udp_have_a_partial_checksum_place() {
    let tcp = build(&Spec::tcp4(10));
    let hdr = partial_checksum_hdr(&tcp.frame).unwrap();
    assert_eq!((hdr.csum_start, hdr.csum_offset), (34, 16));
    let udp = build(&Spec::udp6(10));
    let hdr = partial_checksum_hdr(&udp.frame).unwrap();
    assert_eq!((hdr.csum_start, hdr.csum_offset), (54, 6));
    let mut icmp = tcp.frame.clone();
    icmp[tcp.l3_off + 9] = 1;
    assert_eq!(partial_checksum_hdr(&icmp), None, "ICMP");
    let mut fragment = tcp.frame.clone();
    fragment[tcp.l3_off + 6] |= 0x20; // more fragments
    assert_eq!(partial_checksum_hdr(&fragment), None, "an IP fragment");
    assert_eq!(partial_checksum_hdr(&tcp.frame[..20]), None, "truncated");
    let mut arp = tcp.frame.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(partial_checksum_hdr(&arp), None, "not IP");
}

#[test]
fn gro_hands_partial_segments_on_as_partial() {
    let spec = Spec::tcp4(6_000);
    let b = build(&spec);
    let mut segs = SegmentBuf::new();
    segment_to_mtu_partial(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 1400), 1500, &mut segs).unwrap();
    let segs: Vec<Vec<u8>> = segs.iter().map(<[u8]>::to_vec).collect();

    // Unverified, a partial checksum is a bad checksum: no merge.
    assert!(!Coalescer::new().push(&segs[0], 0, ChecksumState::Unverified));

    // A lone partial segment leaves with a NEEDS_CSUM header and no GSO.
    let mut gro = Coalescer::new();
    assert!(gro.push(&segs[0], 0, ChecksumState::Partial));
    let out = super::gro::take_bytes(&mut gro, &segs).unwrap();
    let hdr = VirtioNetHdr::parse(&out).unwrap();
    assert!(hdr.needs_csum() && !hdr.is_gso(), "{hdr:?}");
    let mut frame = out[VirtioNetHdr::LEN..].to_vec();
    assert_eq!(frame, segs[0], "the segment itself is unchanged");
    complete_checksum(&mut frame, &hdr).unwrap();
    let mut complete = SegmentBuf::new();
    segment_to_mtu(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 1400), 1500, &mut complete).unwrap();
    assert_eq!(frame, complete.get(0).unwrap(), "completed, it is the complete segment");

    // Merged, they form the original super-frame with a partial checksum.
    for (i, seg) in segs.iter().enumerate() {
        assert!(gro.push(seg, i as u32, ChecksumState::Partial), "segment {i} joins");
    }
    let out = super::gro::take_bytes(&mut gro, &segs).unwrap();
    let hdr = VirtioNetHdr::parse(&out).unwrap();
    assert!(hdr.needs_csum() && hdr.is_gso());
    assert_eq!(out[VirtioNetHdr::LEN..], b.frame[..], "the original frame, pseudo-header sum and all");
}

#[test]
fn complete_checksums_made_partial_complete_back_to_the_same_frame() {
    for spec in [Spec::tcp4(3_000), Spec::tcp6(3_000), Spec::udp4(3_000), Spec::udp6(3_000)] {
        let b = build(&spec);
        let hdr = b.vnet(gso_type(&spec), 1400);
        let mut complete = SegmentBuf::new();
        let n = segment_to_mtu(&b.frame, &hdr, 1418, &mut complete).unwrap();
        for i in 0..n {
            let want = complete.get(i).unwrap().to_vec();
            let mut seg = want.clone();
            let made = crate::offload::make_partial(&mut seg).expect("a TCP/UDP frame");
            assert_eq!(partial_checksum_hdr(&seg), Some(made), "the place a receiver finds");
            let field = b.l4_off + b.csum_offset;
            assert_eq!(seg[..field], want[..field]);
            assert_eq!(seg[field + 2..], want[field + 2..]);
            complete_checksum(&mut seg, &made).unwrap();
            assert_eq!(seg, want, "segment {i}");
        }
        // Ethernet padding after the packet: left alone.
        let mut padded = complete.get(0).unwrap().to_vec();
        padded.push(0);
        let before = padded.clone();
        assert_eq!(crate::offload::make_partial(&mut padded), None);
        assert_eq!(padded, before);
    }
    // Not TCP/UDP, or cut short: left alone.
    let mut arp = vec![0xff; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(crate::offload::make_partial(&mut arp), None);
    let b = build(&Spec::tcp4(100));
    let mut short = b.frame[..b.l4_off + 10].to_vec();
    assert_eq!(crate::offload::make_partial(&mut short), None);
}
