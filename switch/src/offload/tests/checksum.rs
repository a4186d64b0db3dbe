//! `complete_checksum` against checksums computed by etherparse.

use etherparse::{SlicedPacket, TransportSlice};

use super::*;
use crate::offload::{OffloadError, complete_checksum};

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
        let want = independent_checksum(&b.frame, spec.v6);
        let want = if want == 0 { 0xffff } else { want };
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
