//! Completing a partial (`NEEDS_CSUM`) L4 checksum.

use super::{OffloadError, csum};
use crate::sys::tap::VirtioNetHdr;

/// Completes the L4 checksum of a `NEEDS_CSUM` frame in place; frames without
/// the flag are left untouched.
///
/// With `NEEDS_CSUM` the sender stored the (uncomplemented) pseudo-header sum
/// at `csum_start + csum_offset`. The Internet checksum of
/// `frame[csum_start..]`, taken with that field as it is, is stored there,
/// exactly like Linux's `skb_checksum_help` (including writing `0xffff` for a
/// zero result, which is the same value in ones' complement and keeps a UDP
/// checksum from reading as "none"). `csum_start` counts from the start of the
/// Ethernet frame; the virtio-net header is not part of `frame`.
///
/// The sum runs to the end of `frame`, so `frame` must not carry trailing
/// padding beyond the packet (TAP reads never do).
pub fn complete_checksum(frame: &mut [u8], hdr: &VirtioNetHdr) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
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
    let check = match csum::finish(csum::add(0, &frame[start..])) {
        0 => 0xffff,
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&check.to_be_bytes());
    Ok(())
}
