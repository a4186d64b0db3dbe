//! What a frame costs on the wire equals the bytes segmentation produces.

use super::*;
use crate::offload::{SegmentBuf, segment, wire_len};

#[test]
fn a_gso_frame_costs_what_its_segments_do() {
    let mut out = SegmentBuf::new();
    let cases = [
        (Spec::tcp4(65_000), VirtioNetHdr::GSO_TCPV4, 1448),
        (Spec::tcp4(2_896), VirtioNetHdr::GSO_TCPV4, 1448),
        (Spec::tcp6(10_001), VirtioNetHdr::GSO_TCPV6, 1428),
        (Spec { vlan: Some(5), ..Spec::tcp4(30_000) }, VirtioNetHdr::GSO_TCPV4, 1000),
        (Spec::udp4(8_000), VirtioNetHdr::GSO_UDP_L4, 1200),
    ];
    for (spec, gso_type, gso_size) in cases {
        let b = build(&spec);
        let hdr = b.vnet(gso_type, gso_size);
        let n = segment(&b.frame, &hdr, &mut out).unwrap();
        assert!(n > 1 || spec.payload.len() <= usize::from(gso_size));
        let segmented: usize = out.iter().map(<[u8]>::len).sum();
        assert_eq!(wire_len(&b.frame, &hdr), segmented, "{spec:?}");
    }
}

#[test]
fn other_frames_cost_their_length() {
    let b = build(&Spec::tcp4(1000));
    assert_eq!(wire_len(&b.frame, &VirtioNetHdr::default()), b.frame.len());
    // A GSO header on a frame whose headers do not parse: its length.
    let hdr = VirtioNetHdr { gso_type: VirtioNetHdr::GSO_TCPV4, gso_size: 100, ..VirtioNetHdr::default() };
    assert_eq!(wire_len(&[0u8; 40], &hdr), 40);
    let zero = VirtioNetHdr { gso_size: 0, ..hdr };
    assert_eq!(wire_len(&b.frame, &zero), b.frame.len());
}
