//! Partial (`NEEDS_CSUM`) L4 checksums: completing them, and finding where
//! one lies in a TCP/UDP frame.

use super::parse::{self, PROTO_TCP, PROTO_UDP, TCP_CHECKSUM, UDP_CHECKSUM};
use super::{OffloadError, csum};
use crate::wire::VirtioNetHdr;

/// Completes the L4 checksum of a `NEEDS_CSUM` frame in place; frames without
/// the flag are left untouched.
///
/// With `NEEDS_CSUM` the sender stored the (uncomplemented) pseudo-header sum
/// at `csum_start + csum_offset`. The Internet checksum of
/// `frame[csum_start..]`, taken with that field as it is, is stored there,
/// like Linux's `skb_checksum_help`. A zero result is written as `0xffff`
/// (the same value in ones' complement) only in a UDP checksum field
/// (`csum_offset` 6), where 0 would read as "no checksum"; elsewhere (TCP)
/// it stays 0, the value a full computation gives: `skb_checksum_help`
/// writes `0xffff` there too, which receivers accept but Wireshark reports
/// as a bad checksum. `csum_start` counts from the start of the Ethernet
/// frame; the virtio-net header is not part of `frame`.
///
/// The sum runs to the end of `frame`, so `frame` must not carry trailing
/// padding beyond the packet (TAP reads never do).
pub fn complete_checksum(frame: &mut [u8], hdr: &VirtioNetHdr) -> Result<(), OffloadError> {
    if let Some((field, check)) = checksum_to_complete(frame, hdr)? {
        frame[field..field + 2].copy_from_slice(&check.to_be_bytes());
    }
    Ok(())
}

/// Where [`complete_checksum`] would store the checksum of a `NEEDS_CSUM`
/// frame and what: `(offset of the field, checksum)`, without writing it
/// (for a frame copied elsewhere, e.g. into AF_XDP chunks); `None` for a
/// frame without the flag.
pub fn checksum_to_complete(frame: &[u8], hdr: &VirtioNetHdr) -> Result<Option<(usize, u16)>, OffloadError> {
    if !hdr.needs_csum() {
        return Ok(None);
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > frame.len() {
        return Err(OffloadError::BadChecksumOffsets {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
            len: frame.len(),
        });
    }
    let check = csum::finish(csum::add(0, &frame[start..]));
    let check = if usize::from(hdr.csum_offset) == UDP_CHECKSUM { csum::udp_field(check) } else { check };
    Ok(Some((field, check)))
}

/// Turns a TCP or UDP frame's complete checksum into a partial one: stores
/// its pseudo-header sum in the checksum field and returns the `NEEDS_CSUM`
/// header that describes it ([`partial_checksum_hdr`]'s), as a sandbox with
/// checksum offload would have sent it. `None` (the frame untouched) for
/// anything else: not TCP/UDP, an IP fragment, Ethernet padding after the
/// packet (a partial checksum runs to the frame's end), a malformed header.
///
/// For frames from a local sandbox's AF_XDP port (whose stack had to
/// complete the checksum because XDP cannot see the skb's checksum state):
/// the receiver then does not verify it again, as between two TAPs.
pub fn make_partial(frame: &mut [u8]) -> Option<VirtioNetHdr> {
    let ip = parse::ip(frame).ok()??;
    if ip.end != frame.len() {
        return None;
    }
    let hdr = partial_hdr(frame, &ip)?;
    let l4 = usize::from(hdr.csum_start);
    let (src, dst) = ip.addrs(frame);
    let pseudo = csum::fold(csum::pseudo_v4(src, dst, ip.proto, ip.end - l4));
    parse::put16(frame, l4 + usize::from(hdr.csum_offset), pseudo);
    Some(hdr)
}

/// The `NEEDS_CSUM` header of [`partial_checksum_hdr`] for a frame whose IP
/// header `ip` is already parsed; `None` for a fragment, a protocol other
/// than TCP/UDP or a malformed L4 header.
fn partial_hdr(frame: &[u8], ip: &parse::Ip) -> Option<VirtioNetHdr> {
    if ip.fragment {
        return None;
    }
    let field = match ip.proto {
        PROTO_TCP => TCP_CHECKSUM,
        PROTO_UDP => UDP_CHECKSUM,
        _ => return None,
    };
    let l4 = parse::l4(frame, ip).ok()?;
    Some(VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        csum_start: u16::try_from(l4.off).ok()?,
        csum_offset: field as u16,
        ..VirtioNetHdr::default()
    })
}

/// What is known of a received frame's TCP/UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumState {
    /// Nothing: verify it before vouching for the frame (it came from plain
    /// VXLAN, or a TAP without `NEEDS_CSUM`).
    #[default]
    Unverified,
    /// Trusted as it is: the frame came through an authenticated tunnel
    /// exactly as its sender's sandbox made it.
    AsSent,
    /// Trusted and partial: it came through an authenticated tunnel with its
    /// checksum field holding the pseudo-header sum
    /// ([`partial_checksum_hdr`] says where).
    Partial,
}

/// The `NEEDS_CSUM` virtio-net header of a TCP or UDP frame (over IPv4 or
/// IPv6, not a fragment) whose checksum field holds its pseudo-header sum:
/// `csum_start` at the TCP/UDP header, `csum_offset` at its checksum field,
/// no GSO. `None` for any other frame.
///
/// A frame that crossed an authenticated tunnel with its checksum partial
/// gets this header for its TAP write, so the receiving kernel treats the
/// checksum as it would one from a local sandbox.
pub fn partial_checksum_hdr(frame: &[u8]) -> Option<VirtioNetHdr> {
    partial_hdr(frame, &parse::ip(frame).ok()??)
}

/// Whether `hdr` asks for the checksum of `frame` exactly where
/// [`partial_checksum_hdr`] would put it: only such a partial checksum can
/// travel partial, since the receiver finds it again by parsing the frame.
pub fn is_standard_partial(frame: &[u8], hdr: &VirtioNetHdr) -> bool {
    hdr.needs_csum()
        && partial_checksum_hdr(frame)
            .is_some_and(|p| (p.csum_start, p.csum_offset) == (hdr.csum_start, hdr.csum_offset))
}
