//! Software offloads for frames that leave toward a device without them.
//!
//! Frames read from a TAP may be GSO super-frames (up to 64 KiB) or carry a
//! partial L4 checksum, as described by their [`VirtioNetHdr`]. That is fine
//! between two TAPs, but a frame sent onto a tunnel must be a real wire frame.
//! This module turns one into the other, and answers MTU problems itself:
//!
//! - [`complete_checksum`] finishes a `NEEDS_CSUM` checksum in place
//!   (virtio-net / `skb_checksum_help` semantics), and
//!   [`partial_checksum_hdr`] finds where one lies in a TCP/UDP frame;
//! - [`segment`] and [`segment_to_mtu`] cut TSO/USO super-frames into
//!   complete segments in a reusable [`SegmentBuf`] (no allocation per frame
//!   once warm); [`segment_to_mtu_partial`] leaves their checksums partial
//!   for an authenticated tunnel;
//! - [`exceeds_mtu`] tells whether a frame must be answered with
//!   [`icmp_frag_needed`] / [`icmpv6_packet_too_big`] instead of forwarded;
//! - [`clamp_mss`] and [`clamp_mss_to_mtu`] lower the MSS option of TCP SYNs;
//! - [`wire_len`] is what a frame costs on a wire once segmented (link
//!   impairment's rate);
//! - [`Coalescer`] merges consecutive TCP segments back into one GSO frame
//!   (software GRO) for the write into a TAP.
//!
//! Everything here is a pure function over frame bytes: no I/O, no clock, and
//! no panic on any input (malformed frames give an [`OffloadError`], `None` or
//! `false`).
//!
//! [`VirtioNetHdr`]: crate::wire::VirtioNetHdr

mod checksum;
pub(crate) mod csum;
mod gro;
mod icmp;
mod mss;
mod parse;
mod segment;
mod wire_len;

#[cfg(test)]
mod tests;

pub use checksum::{
    ChecksumState, checksum_to_complete, complete_checksum, is_standard_partial, make_partial, partial_checksum_hdr,
};
pub use gro::{Coalescer, MAX_MERGED, Merged};
pub use icmp::{
    TooBig, Unreachable6, exceeds_mtu, icmp_frag_needed, icmp_net_unreachable, icmpv6_packet_too_big,
    icmpv6_unreachable,
};
pub use mss::{ConnectionKey, Handshake, clamp_mss, clamp_mss_to_mtu, flow_key, flow_key_and_way, tcp_handshake};
pub use segment::{MAX_SEGMENTS, SegmentBuf, Segments, segment, segment_to_mtu, segment_to_mtu_partial};
pub use wire_len::wire_len;

/// Why a frame could not be checksummed or segmented in software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The frame ends inside one of its headers.
    #[error("frame truncated inside the {what}")]
    Truncated {
        /// The header that is cut short.
        what: &'static str,
    },
    /// A header field contradicts the frame (a length below the minimum or
    /// beyond the frame, an L4 protocol that does not match the GSO type).
    #[error("malformed {what}")]
    Malformed {
        /// The field or header at fault.
        what: &'static str,
    },
    /// `csum_start` / `csum_offset` do not point at a 2-byte field inside
    /// the frame.
    #[error("checksum offsets (start {start}, offset {offset}) fall outside the {len}-byte frame")]
    BadChecksumOffsets {
        /// `csum_start` from the virtio-net header.
        start: u16,
        /// `csum_offset` from the virtio-net header.
        offset: u16,
        /// Length of the frame.
        len: usize,
    },
    /// The frame is of a kind software offload does not handle (UFO, IPv6
    /// extension headers, IP fragments, non-IP GSO, unknown GSO types).
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was found.
        what: &'static str,
    },
    /// A GSO frame announces a segment size of 0.
    #[error("GSO frame with gso_size 0")]
    ZeroGsoSize,
    /// The MTU leaves no room for TCP payload after the IP and TCP headers.
    #[error("MTU {mtu} leaves no room for payload after {headers} bytes of IP and TCP headers")]
    MtuTooSmall {
        /// The maximum IP packet length asked for.
        mtu: u16,
        /// IP plus TCP header bytes of the frame.
        headers: usize,
    },
    /// Segmenting would produce more segments than [`MAX_SEGMENTS`].
    #[error("frame would be cut into {segments} segments, more than the limit of {max}")]
    TooManySegments {
        /// Segments the frame would need.
        segments: usize,
        /// The limit ([`MAX_SEGMENTS`]).
        max: usize,
    },
}
