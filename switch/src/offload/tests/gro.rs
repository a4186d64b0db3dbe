//! Software GRO: segments of a TSO frame merge back into one GSO frame that
//! segments again into exactly the same segments; anything that breaks the
//! flow (a gap, another flow, a bad checksum, SYN/FIN) does not merge.

use super::*;
use crate::offload::{ChecksumState, Coalescer, SegmentBuf, segment};

/// Segments a TSO frame built from `spec` and returns the segments.
fn segments_of(spec: &Spec, gso_type: u8, mss: u16) -> Vec<Vec<u8>> {
    let b = build(spec);
    let mut out = SegmentBuf::new();
    segment(&b.frame, &b.vnet(gso_type, mss), &mut out).unwrap();
    out.iter().map(<[u8]>::to_vec).collect()
}

/// The bytes of `gro`'s merge, gathered from `segments` (named by index).
pub(super) fn take_bytes(gro: &mut Coalescer, segments: &[Vec<u8>]) -> Option<Vec<u8>> {
    let merged = gro.take()?;
    let mut out = Vec::new();
    merged.write_to(&mut out, |at| segments[at as usize].as_slice());
    assert_eq!(out.len(), merged.len());
    Some(out)
}

fn merged(segments: &[Vec<u8>]) -> (VirtioNetHdr, Vec<u8>) {
    let mut gro = Coalescer::new();
    for (i, s) in segments.iter().enumerate() {
        assert!(gro.push(s, i as u32, ChecksumState::Unverified), "segment {i} joins");
    }
    let out = take_bytes(&mut gro, segments).unwrap();
    assert!(gro.is_empty());
    (VirtioNetHdr::parse(&out).unwrap(), out[VirtioNetHdr::LEN..].to_vec())
}

#[test]
fn tcp4_segments_merge_back_and_resegment_identically() {
    for spec in [Spec::tcp4(20_000), Spec::tcp6(20_000), Spec { vlan: Some(7), ..Spec::tcp4(9_000) }] {
        let segs = segments_of(&spec, if spec.v6 { VirtioNetHdr::GSO_TCPV6 } else { VirtioNetHdr::GSO_TCPV4 }, 1400);
        assert!(segs.len() > 5);
        let (hdr, frame) = merged(&segs);
        assert_eq!(hdr.gso_size, 1400);
        assert!(hdr.needs_csum() && hdr.is_gso());
        let b = build(&spec);
        assert_eq!(frame.len(), b.frame.len(), "same length as the original super-frame");
        assert_eq!(frame[b.payload_off..], b.frame[b.payload_off..], "payload intact");
        assert_eq!(frame[b.l4_off + 4..b.l4_off + 8], b.frame[b.l4_off + 4..b.l4_off + 8], "first sequence number");
        let mut again = SegmentBuf::new();
        segment(&frame, &hdr, &mut again).unwrap();
        let again: Vec<Vec<u8>> = again.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(again.len(), segs.len());
        for (i, (a, s)) in again.iter().zip(&segs).enumerate() {
            // The IPv4 ID restarts from the first segment's; everything else is identical.
            assert_eq!(a, s, "segment {i} differs after merge + resegment");
        }
    }
}

#[test]
fn a_lone_segment_is_returned_unchanged() {
    let segs = segments_of(&Spec::tcp4(1000), VirtioNetHdr::GSO_TCPV4, 1400);
    let mut gro = Coalescer::new();
    assert!(gro.push(&segs[0], 0, ChecksumState::Unverified));
    let out = take_bytes(&mut gro, &segs).unwrap();
    assert_eq!(VirtioNetHdr::parse(&out).unwrap(), VirtioNetHdr::default());
    assert_eq!(&out[VirtioNetHdr::LEN..], &segs[0][..]);
}

#[test]
fn gaps_other_flows_and_bad_checksums_do_not_merge() {
    let segs = segments_of(&Spec::tcp4(10_000), VirtioNetHdr::GSO_TCPV4, 1000);
    let mut gro = Coalescer::new();
    assert!(gro.push(&segs[0], 0, ChecksumState::Unverified));
    assert!(!gro.push(&segs[2], 2, ChecksumState::Unverified), "a sequence gap");
    let mut other = segs[1].clone();
    other[14 + 20 + 1] ^= 1; // another source port
    assert!(!gro.push(&other, 99, ChecksumState::Unverified), "another flow");
    let mut corrupt = segs[1].clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(!gro.push(&corrupt, 99, ChecksumState::Unverified), "a bad checksum");
    let mut trusting = Coalescer::new();
    assert!(trusting.push(&segs[0], 0, ChecksumState::AsSent));
    assert!(trusting.push(&corrupt, 99, ChecksumState::AsSent), "authenticated frames skip the checksum check");
    assert!(gro.push(&segs[1], 1, ChecksumState::Unverified));
    let (hdr, frame) = {
        let out = take_bytes(&mut gro, &segs).unwrap();
        (VirtioNetHdr::parse(&out).unwrap(), out[VirtioNetHdr::LEN..].to_vec())
    };
    assert!(hdr.is_gso());
    assert_eq!(frame.len(), segs[0].len() + segs[1].len() - (14 + 20 + 32));
    let mut fin = Spec::tcp4(500);
    fin.l4 = L4Spec::Tcp { options: timestamps(), flags: ACK | FIN, seq: 1 };
    let fin = segments_of(&fin, VirtioNetHdr::GSO_TCPV4, 1400);
    assert!(!gro.push(&fin[0], 0, ChecksumState::Unverified), "FIN never merges");
    let mut syn = Spec::tcp4(0);
    syn.l4 = L4Spec::Tcp { options: timestamps(), flags: SYN, seq: 1 };
    assert!(!gro.push(&build(&syn).frame, 0, ChecksumState::Unverified), "SYN never merges");
}

#[test]
fn a_short_segment_ends_the_merge() {
    let mut spec = Spec::tcp4(2500);
    spec.l4 = L4Spec::Tcp { options: timestamps(), flags: ACK, seq: 100 };
    let segs = segments_of(&spec, VirtioNetHdr::GSO_TCPV4, 1000);
    assert_eq!(segs.len(), 3);
    let next = segments_of(
        &Spec { l4: L4Spec::Tcp { options: timestamps(), flags: ACK, seq: 2600 }, ..spec.clone() },
        VirtioNetHdr::GSO_TCPV4,
        1000,
    );
    let mut gro = Coalescer::new();
    for (i, s) in segs.iter().enumerate() {
        assert!(gro.push(s, i as u32, ChecksumState::Unverified));
    }
    assert!(!gro.push(&next[0], 9, ChecksumState::Unverified), "nothing follows a short segment");
}

proptest::proptest! {
    /// Any TSO frame (IPv4 or IPv6, any length and MSS), segmented, then
    /// merged as the datapath merges (a merge is taken when a segment does
    /// not join, at the size or segment limit) and each merge segmented
    /// again, gives back exactly the original segments, in order.
    #[test]
    fn merges_resegment_into_the_input_segments(
        v6 in proptest::bool::ANY,
        payload in 1usize..65_000,
        mss in 200u16..9_000,
        trusted in proptest::bool::ANY,
    ) {
        let spec = if v6 { Spec::tcp6(payload) } else { Spec::tcp4(payload) };
        let segs = segments_of(&spec, if v6 { VirtioNetHdr::GSO_TCPV6 } else { VirtioNetHdr::GSO_TCPV4 }, mss);
        let state = if trusted { ChecksumState::AsSent } else { ChecksumState::Unverified };
        let mut gro = Coalescer::new();
        let mut again = Vec::new();
        let flush = |gro: &mut Coalescer, again: &mut Vec<Vec<u8>>| {
            let Some(out) = take_bytes(gro, &segs) else { return };
            let hdr = VirtioNetHdr::parse(&out).unwrap();
            if hdr.is_gso() {
                let mut cut = SegmentBuf::new();
                segment(&out[VirtioNetHdr::LEN..], &hdr, &mut cut).unwrap();
                again.extend(cut.iter().map(<[u8]>::to_vec));
            } else {
                again.push(out[VirtioNetHdr::LEN..].to_vec());
            }
        };
        for (i, seg) in segs.iter().enumerate() {
            if !gro.push(seg, i as u32, state) {
                flush(&mut gro, &mut again);
                proptest::prop_assert!(gro.push(seg, i as u32, state), "segment {} starts a merge", i);
            }
        }
        flush(&mut gro, &mut again);
        proptest::prop_assert_eq!(&again, &segs);
    }
}
