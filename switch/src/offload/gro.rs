//! Software GRO: merges consecutive TCP segments of one flow into one GSO
//! super-frame with a virtio-net header, as the kernel's `tcp_gro_receive`
//! does. A stream arriving from a tunnel then enters a sandbox as 64 KiB
//! frames (one TAP write, one pass through the sandbox's TCP stack) instead
//! of one per 1,450 bytes.
//!
//! Segments merge when they continue the same flow exactly: identical
//! Ethernet, IP and TCP headers except the IP length, ID and checksum and
//! the TCP sequence number and checksum; contiguous sequence numbers; equal
//! payload sizes (only the last may be shorter); flags ACK, with PSH allowed
//! on the last. Each segment's TCP checksum is verified before it is merged
//! (unless an authenticated tunnel vouches for it), since the merged frame is
//! handed over with a partial checksum the receiver will not check again.
//!
//! Only headers are copied: the payloads stay where the caller received
//! them, and a merge ([`Merged`]) is the new headers plus where each payload
//! lies, for one gathered write (`writev`) into the TAP. The copy of every
//! byte into a merge buffer, which the kernel's copy then read again, is
//! gone.

use std::ops::Range;

use super::parse::{self, Ip, L4, PROTO_TCP, TCP_CHECKSUM, TCP_FLAGS, TCP_PSH, Version, put16};
use super::{ChecksumState, csum};
use crate::wire::VirtioNetHdr;

/// TCP flags a merged segment may carry (ACK, and PSH on the last).
const TCP_ACK: u8 = 0x10;
/// Largest IP packet (IPv4 total length / IPv6 payload) a merge may build.
const MAX_IP_LEN: usize = 65_535;
/// Most segments one merge takes: the payload pieces of one gathered
/// write (64 KiB of 1,448-byte segments is 46).
pub const MAX_MERGED: usize = 64;

/// The segment being extended.
#[derive(Debug, Clone, Copy)]
struct Merge {
    ip: Ip,
    tcp: L4,
    /// Payload bytes of the first segment: the GSO size.
    mss: usize,
    next_seq: u32,
    segments: usize,
    /// A segment shorter than `mss` (or with PSH) was merged: nothing may follow.
    closed: bool,
    /// The first segment's checksum is partial: even alone it leaves with a
    /// `NEEDS_CSUM` header.
    partial: bool,
}

/// Merges TCP segments into one virtio-net GSO frame; reuse it across
/// batches (its buffers are allocated once).
#[derive(Debug)]
pub struct Coalescer {
    /// The virtio-net header followed by the first segment's headers.
    buf: Vec<u8>,
    /// Where each merged segment's payload lies: the caller's name for the
    /// segment and the payload's range in it.
    payloads: Vec<(u32, Range<usize>)>,
    /// Length of the merged frame.
    len: usize,
    merge: Option<Merge>,
}

/// A finished merge: a virtio-net header and the frame's headers, then the
/// payloads, each in a segment the caller pushed (named as it named it).
/// The frame is `head` without its first [`VirtioNetHdr::LEN`] bytes,
/// followed by every payload in order.
#[derive(Debug, Clone, Copy)]
pub struct Merged<'a> {
    /// The virtio-net header followed by the merged frame's headers.
    pub head: &'a [u8],
    /// Each payload: the segment's name, its byte range in that segment.
    pub payloads: &'a [(u32, Range<usize>)],
}

impl Merged<'_> {
    /// Length of the virtio-net header and the frame.
    pub fn len(&self) -> usize {
        self.head.len() + self.payloads.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    /// Always false: a merge has at least its headers.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// Appends the virtio-net header and the frame, gathered, to `out`
    /// (for a capture, or a device that takes one buffer); `segment` gives
    /// the bytes of the segment of each name.
    pub fn write_to<'s>(&self, out: &mut Vec<u8>, segment: impl Fn(u32) -> &'s [u8]) {
        out.extend_from_slice(self.head);
        for (at, range) in self.payloads {
            out.extend_from_slice(&segment(*at)[range.clone()]);
        }
    }
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

/// A TCP segment that may take part in a merge.
struct Segment {
    ip: Ip,
    tcp: L4,
    payload: usize,
    seq: u32,
    flags: u8,
}

fn tcp_segment(frame: &[u8]) -> Option<Segment> {
    let ip = parse::ip(frame).ok()??;
    if ip.proto != PROTO_TCP || ip.fragment || ip.end != frame.len() {
        return None;
    }
    let tcp = parse::l4(frame, &ip).ok()?;
    let payload = ip.end - tcp.payload_off();
    let flags = frame[tcp.off + TCP_FLAGS];
    if payload == 0 || flags & !TCP_PSH != TCP_ACK {
        return None;
    }
    let seq = u32::from_be_bytes(frame[tcp.off + 4..tcp.off + 8].try_into().ok()?);
    Some(Segment { ip, tcp, payload, seq, flags })
}

/// The TCP checksum of a segment verifies.
fn checksum_ok(frame: &[u8], ip: &Ip, tcp: &L4) -> bool {
    let (src, dst) = ip.addrs(frame);
    let len = ip.end - tcp.off;
    let pseudo = match ip.version {
        Version::V4 => csum::pseudo_v4(src, dst, PROTO_TCP, len),
        Version::V6 => csum::pseudo_v6(src, dst, PROTO_TCP, len),
    };
    csum::fold(csum::add(pseudo, &frame[tcp.off..ip.end])) == 0xffff
}

/// Header bytes that must be equal for two segments to merge, as ranges
/// of the frame (everything but IP length/ID/checksum and TCP seq/checksum).
fn same_headers(a: &[u8], b: &[u8], ip: &Ip, tcp: &L4) -> bool {
    let tcp_end = tcp.payload_off();
    if b.len() < tcp_end {
        return false;
    }
    let ip_same = match ip.version {
        // version/IHL/TOS; flags+fragment, TTL, protocol; addresses and options.
        Version::V4 => {
            let o = ip.off;
            a[o..o + 2] == b[o..o + 2]
                && a[o + 6..o + 10] == b[o + 6..o + 10]
                && a[o + 12..tcp.off] == b[o + 12..tcp.off]
        }
        // version/class/flow label; next header, hop limit, addresses.
        Version::V6 => {
            let o = ip.off;
            a[o..o + 4] == b[o..o + 4] && a[o + 6..tcp.off] == b[o + 6..tcp.off]
        }
    };
    let t = tcp.off;
    // L2, ports, ack, data offset/flags(except PSH), window, urgent, options.
    a[..ip.off] == b[..ip.off]
        && ip_same
        && a[t..t + 4] == b[t..t + 4]
        && a[t + 8..t + 13] == b[t + 8..t + 13]
        && (a[t + 13] & !TCP_PSH) == (b[t + 13] & !TCP_PSH)
        && a[t + 14..t + 16] == b[t + 14..t + 16]
        && a[t + 18..tcp_end] == b[t + 18..tcp_end]
}

impl Coalescer {
    /// An empty coalescer with room for a 64 KiB frame.
    pub fn new() -> Coalescer {
        Coalescer {
            buf: Vec::with_capacity(VirtioNetHdr::LEN + 256),
            payloads: Vec::with_capacity(MAX_MERGED),
            len: 0,
            merge: None,
        }
    }

    /// True when no segment is held.
    pub fn is_empty(&self) -> bool {
        self.merge.is_none()
    }

    /// Takes `frame`, which the caller names `at`, into the current merge,
    /// or starts a merge with it when none is held. Returns false when it
    /// cannot join: the caller then [`take`](Self::take)s the merge and
    /// pushes again, or sends the frame as it is if it cannot start one
    /// either. Only the headers are copied: the caller keeps the frame,
    /// unchanged, until the merge is taken.
    ///
    /// Only [`ChecksumState::Unverified`] frames have their checksum
    /// verified: the others came through an authenticated encrypted tunnel,
    /// so nothing altered them since their sender made them.
    pub fn push(&mut self, frame: &[u8], at: u32, checksum: ChecksumState) -> bool {
        let Some(seg) = tcp_segment(frame) else { return false };
        let verified = |seg: &Segment| checksum != ChecksumState::Unverified || checksum_ok(frame, &seg.ip, &seg.tcp);
        let Some(merge) = self.merge else {
            if !verified(&seg) {
                return false;
            }
            let payload_off = seg.tcp.payload_off();
            self.buf.clear();
            self.buf.extend_from_slice(&[0; VirtioNetHdr::LEN]);
            self.buf.extend_from_slice(&frame[..payload_off]);
            self.payloads.clear();
            self.payloads.push((at, payload_off..frame.len()));
            self.len = frame.len();
            self.merge = Some(Merge {
                ip: seg.ip,
                tcp: seg.tcp,
                mss: seg.payload,
                next_seq: seg.seq.wrapping_add(seg.payload as u32),
                segments: 1,
                closed: seg.flags & TCP_PSH != 0,
                partial: checksum == ChecksumState::Partial,
            });
            return true;
        };
        let head = &self.buf[VirtioNetHdr::LEN..];
        let fits = self.len + seg.payload - merge.ip.off <= MAX_IP_LEN && self.payloads.len() < MAX_MERGED;
        let joins = !merge.closed
            && fits
            && seg.seq == merge.next_seq
            && seg.payload <= merge.mss
            && seg.ip.off == merge.ip.off
            && seg.tcp.off == merge.tcp.off
            && seg.tcp.hdr_len == merge.tcp.hdr_len
            && same_headers(head, frame, &merge.ip, &merge.tcp)
            && verified(&seg);
        if !joins {
            return false;
        }
        self.payloads.push((at, seg.tcp.payload_off()..frame.len()));
        self.len += seg.payload;
        let tcp_flags = VirtioNetHdr::LEN + merge.tcp.off + TCP_FLAGS;
        self.buf[tcp_flags] |= seg.flags & TCP_PSH;
        self.merge = Some(Merge {
            next_seq: merge.next_seq.wrapping_add(seg.payload as u32),
            segments: merge.segments + 1,
            closed: seg.payload < merge.mss || seg.flags & TCP_PSH != 0,
            ..merge
        });
        true
    }

    /// Finishes the merge and returns it: a virtio-net header and the
    /// frame's headers, then where its payloads are, ready for a gathered
    /// TAP write; `None` when nothing is held. A lone segment is returned
    /// unchanged (plain header) unless its checksum is partial (then it gets
    /// a `NEEDS_CSUM` header); a merge gets fixed IP lengths and checksum, a
    /// partial TCP checksum and a GSO header.
    pub fn take(&mut self) -> Option<Merged<'_>> {
        let merge = self.merge.take()?;
        if merge.segments == 1 && !merge.partial {
            return Some(Merged { head: &self.buf, payloads: &self.payloads });
        }
        let total = self.len;
        let frame = &mut self.buf[VirtioNetHdr::LEN..];
        let (ip, tcp) = (merge.ip, merge.tcp);
        let ip_len = total - ip.off;
        let gso_type = match ip.version {
            Version::V4 => {
                put16(frame, ip.off + 2, ip_len as u16);
                put16(frame, ip.off + 10, 0);
                let check = csum::finish(csum::add(0, &frame[ip.off..ip.off + ip.hdr_len]));
                put16(frame, ip.off + 10, check);
                VirtioNetHdr::GSO_TCPV4
            }
            Version::V6 => {
                put16(frame, ip.off + 4, (ip_len - ip.hdr_len) as u16);
                VirtioNetHdr::GSO_TCPV6
            }
        };
        // Partial checksum: the pseudo-header sum with the whole length,
        // as the kernel's TSO leaves it; the receiver treats it as valid.
        let tcp_len = total - tcp.off;
        let pseudo = {
            let (src, dst) = Ip { end: frame.len(), ..ip }.addrs(frame);
            match ip.version {
                Version::V4 => csum::pseudo_v4(src, dst, PROTO_TCP, tcp_len),
                Version::V6 => csum::pseudo_v6(src, dst, PROTO_TCP, tcp_len),
            }
        };
        put16(frame, tcp.off + TCP_CHECKSUM, csum::fold(pseudo));
        let gso = merge.segments > 1;
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
            gso_type: if gso { gso_type } else { VirtioNetHdr::GSO_NONE },
            hdr_len: if gso { tcp.payload_off() as u16 } else { 0 },
            gso_size: if gso { merge.mss as u16 } else { 0 },
            csum_start: tcp.off as u16,
            csum_offset: TCP_CHECKSUM as u16,
            num_buffers: 0,
        };
        self.buf[..VirtioNetHdr::LEN].copy_from_slice(&hdr.to_bytes());
        Some(Merged { head: &self.buf, payloads: &self.payloads })
    }
}
