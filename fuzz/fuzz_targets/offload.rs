//! Fuzzes the software offloads on arbitrary frames with arbitrary
//! virtio-net headers, as a sandbox could write them to its TAP: nothing may
//! panic, and what succeeds must be consistent.
//!
//! Input: 12 bytes of virtio-net header, 2 bytes of MTU (big-endian), then
//! the Ethernet frame.
//!
//! Properties beyond "never panics":
//! - segments left partial (`segment_to_mtu_partial`) carry a checksum the
//!   receiver finds again by parsing, and completed they equal the complete
//!   segments (`segment_to_mtu`) byte for byte;
//! - what GRO merges, from complete or partial segments, carries a
//!   virtio-net header and, when it is a GSO frame, segments again.

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use switch::offload::{
    ChecksumState, Coalescer, SegmentBuf, clamp_mss, complete_checksum, exceeds_mtu, icmp_frag_needed,
    icmpv6_packet_too_big, partial_checksum_hdr, segment, segment_to_mtu, segment_to_mtu_partial,
};
use switch::wire::VirtioNetHdr;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

fuzz_target!(|data: &[u8]| {
    if data.len() < VirtioNetHdr::LEN + 2 {
        return;
    }
    let hdr = VirtioNetHdr::parse(data).expect("12 bytes");
    let mtu = u16::from_be_bytes([data[VirtioNetHdr::LEN], data[VirtioNetHdr::LEN + 1]]);
    let frame = &data[VirtioNetHdr::LEN + 2..];

    let _ = exceeds_mtu(frame, &hdr, mtu);
    let _ = partial_checksum_hdr(frame);
    let mut icmp = Vec::new();
    let _ = icmp_frag_needed(frame, mtu, MAC, Ipv4Addr::new(10, 0, 0, 1), &mut icmp);
    let _ = icmpv6_packet_too_big(frame, mtu, MAC, Ipv6Addr::LOCALHOST, &mut icmp);
    let mut copy = frame.to_vec();
    let _ = complete_checksum(&mut copy, &hdr);
    let mut copy = frame.to_vec();
    clamp_mss(&mut copy, &hdr, mtu);

    let mut plain = SegmentBuf::new();
    let _ = segment(frame, &hdr, &mut plain);

    let mut complete = SegmentBuf::new();
    let complete_n = segment_to_mtu(frame, &hdr, mtu, &mut complete);
    if complete_n.is_ok() {
        for state in [ChecksumState::Unverified, ChecksumState::AsSent] {
            gro_round_trip(complete.iter(), state);
        }
    }
    let mut partial = SegmentBuf::new();
    if let (Ok(n), Ok(m)) = (complete_n, segment_to_mtu_partial(frame, &hdr, mtu, &mut partial)) {
        assert_eq!(n, m, "partial and complete segmentation cut differently");
        gro_round_trip(partial.iter(), ChecksumState::Partial);
        for i in 0..n {
            let seg = partial.get_mut(i).expect("segment");
            let found = partial_checksum_hdr(seg).expect("a partial segment's checksum is findable");
            complete_checksum(seg, &found).expect("completes");
            assert_eq!(seg, complete.get(i).expect("segment"), "segment {i} differs once completed");
        }
    }
});

/// Merges `segments` with software GRO as the datapath does (flushing when
/// one does not join); every merge it hands out must carry a virtio-net
/// header, and a GSO merge must segment again.
fn gro_round_trip<'a>(segments: impl Iterator<Item = &'a [u8]>, state: ChecksumState) {
    let segments: Vec<&[u8]> = segments.collect();
    let mut gro = Coalescer::new();
    let check = |gro: &mut Coalescer| {
        if let Some(merged) = gro.take() {
            let mut out = Vec::new();
            merged.write_to(&mut out, |at| segments[at as usize]);
            let merged_hdr = VirtioNetHdr::parse(&out).expect("a merge starts with a virtio-net header");
            if merged_hdr.is_gso() {
                let mut again = SegmentBuf::new();
                segment(&out[VirtioNetHdr::LEN..], &merged_hdr, &mut again).expect("a merged frame segments");
            }
        }
    };
    for (i, seg) in segments.iter().enumerate() {
        if !gro.push(seg, i as u32, state) {
            check(&mut gro);
            let _ = gro.push(seg, i as u32, state);
        }
    }
    check(&mut gro);
}
