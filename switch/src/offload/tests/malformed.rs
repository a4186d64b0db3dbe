//! Malformed input: errors, never panics.

use proptest::prelude::*;

use super::*;
use crate::offload::{
    OffloadError, SegmentBuf, clamp_mss, complete_checksum, exceeds_mtu, icmp_frag_needed, icmpv6_packet_too_big,
    segment, segment_to_mtu,
};

#[test]
fn gso_size_zero_is_an_error() {
    let b = build(&Spec::tcp4(3000));
    let mut out = SegmentBuf::new();
    assert_eq!(segment(&b.frame, &b.vnet(VirtioNetHdr::GSO_TCPV4, 0), &mut out), Err(OffloadError::ZeroGsoSize));
}

#[test]
fn truncated_frames_are_errors() {
    for spec in [Spec::tcp4(3000), Spec::tcp6(3000), Spec::udp4(3000)] {
        let b = build(&spec);
        let ty = match (&spec.l4, spec.v6) {
            (L4Spec::Udp, _) => VirtioNetHdr::GSO_UDP_L4,
            (_, false) => VirtioNetHdr::GSO_TCPV4,
            (_, true) => VirtioNetHdr::GSO_TCPV6,
        };
        let hdr = b.vnet(ty, 1000);
        let mut out = SegmentBuf::new();
        for cut in [0, 5, 13, 14, b.l3_off + 10, b.l4_off + 3, b.payload_off - 1, b.payload_off, b.frame.len() - 1] {
            let r = segment(&b.frame[..cut], &hdr, &mut out);
            assert!(matches!(r, Err(OffloadError::Truncated { .. })), "cut at {cut}: {r:?}");
            assert!(out.is_empty());
        }
    }
}

#[test]
fn inconsistent_headers_are_errors() {
    let mut out = SegmentBuf::new();
    let b = build(&Spec::tcp4(3000));
    // GSO type that does not match the packet.
    for ty in [VirtioNetHdr::GSO_TCPV6, VirtioNetHdr::GSO_UDP_L4] {
        assert!(matches!(segment(&b.frame, &b.vnet(ty, 1000), &mut out), Err(OffloadError::Malformed { .. })));
    }
    for ty in [VirtioNetHdr::GSO_UDP, 2, 0x7f] {
        assert!(matches!(segment(&b.frame, &b.vnet(ty, 1000), &mut out), Err(OffloadError::Unsupported { .. })));
    }
    let hdr = b.vnet(VirtioNetHdr::GSO_TCPV4, 1000);
    // IHL below 5, total length below the header, TCP data offset below 5.
    for (at, value) in [(b.l3_off, 0x44u8), (b.l3_off + 3, 0), (b.l3_off + 3, 19), (b.l4_off + 12, 0x40)] {
        let mut f = b.frame.clone();
        f[at] = value;
        if at == b.l3_off + 3 {
            f[b.l3_off + 2] = 0;
        }
        let r = segment(&f, &hdr, &mut out);
        assert!(matches!(r, Err(OffloadError::Malformed { .. })), "byte {at} = {value}: {r:?}");
    }
    // A fragment cannot be segmented.
    let mut f = b.frame.clone();
    f[b.l3_off + 6] = 0x20;
    assert!(matches!(segment(&f, &hdr, &mut out), Err(OffloadError::Unsupported { .. })));
    // IPv6 with an extension header.
    let mut b6 = build(&Spec::tcp6(3000));
    b6.frame[b6.l3_off + 6] = 0;
    let r = segment(&b6.frame, &b6.vnet(VirtioNetHdr::GSO_TCPV6, 1000), &mut out);
    assert!(matches!(r, Err(OffloadError::Malformed { .. }) | Err(OffloadError::Unsupported { .. })));
    // Non-IP GSO frame.
    let mut arp = b.frame.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(matches!(segment(&arp, &hdr, &mut out), Err(OffloadError::Unsupported { .. })));
    // Non-GSO with bad checksum offsets.
    let mut bad = b.vnet(VirtioNetHdr::GSO_NONE, 0);
    bad.csum_start = 60_000;
    assert!(matches!(segment(&b.frame, &bad, &mut out), Err(OffloadError::BadChecksumOffsets { .. })));
    assert!(out.is_empty());
}

fn any_hdr() -> impl Strategy<Value = VirtioNetHdr> {
    let gso = prop_oneof![Just(0u8), Just(1), Just(3), Just(4), Just(5), Just(0x81), any::<u8>()];
    (any::<u8>(), gso, any::<u16>(), prop_oneof![Just(0u16), 1u16..4, any::<u16>()], 0u16..200, 0u16..40).prop_map(
        |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VirtioNetHdr {
            flags,
            gso_type,
            hdr_len,
            gso_size,
            csum_start,
            csum_offset,
            num_buffers: 0,
        },
    )
}

/// Well-formed frames with a random mutation: exercises deep paths.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let base = prop_oneof![
        (0usize..3000).prop_map(|n| build(&Spec::tcp4(n)).frame),
        (0usize..3000).prop_map(|n| build(&Spec::tcp6(n)).frame),
        (0usize..3000).prop_map(|n| build(&Spec::udp4(n)).frame),
        (0usize..3000).prop_map(|n| build(&Spec { vlan: Some(3), ..Spec::udp6(n) }).frame),
    ];
    (base, proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4), any::<prop::sample::Index>())
        .prop_map(|(mut f, edits, cut)| {
            for (i, v) in edits {
                let at = i.index(f.len().min(100));
                f[at] = v;
            }
            let keep = f.len() - cut.index(f.len() / 4 + 1);
            f.truncate(keep);
            f
        })
}

fn exercise(frame: &[u8], hdr: &VirtioNetHdr, mtu: u16) {
    let mut out = SegmentBuf::new();
    if let Ok(n) = segment(frame, hdr, &mut out) {
        assert_eq!(n, out.len());
        assert!(n >= 1);
    } else {
        assert!(out.is_empty());
    }
    let _ = segment_to_mtu(frame, hdr, mtu, &mut out);
    let mut copy = frame.to_vec();
    let _ = complete_checksum(&mut copy, hdr);
    let mut copy = frame.to_vec();
    let changed = clamp_mss(&mut copy, hdr, mtu);
    assert_eq!(changed, copy != frame);
    let _ = exceeds_mtu(frame, hdr, mtu);
    let mut v = Vec::new();
    let _ = icmp_frag_needed(frame, mtu, [2; 6], std::net::Ipv4Addr::new(10, 0, 0, 1), &mut v);
    let _ = icmpv6_packet_too_big(frame, mtu, [2; 6], std::net::Ipv6Addr::LOCALHOST, &mut v);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..300), hdr in any_hdr(), mtu in any::<u16>()) {
        exercise(&frame, &hdr, mtu);
    }

    #[test]
    fn mutated_frames_never_panic(frame in mutated_frame(), hdr in any_hdr(), mtu in prop_oneof![Just(1500u16), 0u16..200, any::<u16>()]) {
        exercise(&frame, &hdr, mtu);
    }
}
