//! What a frame costs on a wire: a GSO super-frame stands for all the
//! segments it will be cut into, each with its own copy of the headers.

use super::parse;
use crate::wire::VirtioNetHdr;

/// The bytes `frame` takes on the wire once segmented: for a GSO frame,
/// the payload after its headers cut into `gso_size` pieces, each behind a
/// copy of the headers; for any other frame, its length. Ethernet bytes
/// (header included, no preamble or FCS), as netem counts. A GSO frame whose
/// headers do not parse costs its length.
pub fn wire_len(frame: &[u8], hdr: &VirtioNetHdr) -> usize {
    if !hdr.is_gso() || hdr.gso_size == 0 {
        return frame.len();
    }
    let Some(headers) =
        parse::ip(frame).ok().flatten().and_then(|ip| parse::l4(frame, &ip).ok()).map(|l4| l4.payload_off())
    else {
        return frame.len();
    };
    let payload = frame.len().saturating_sub(headers);
    let segments = payload.div_ceil(usize::from(hdr.gso_size)).max(1);
    frame.len() + (segments - 1) * headers
}
