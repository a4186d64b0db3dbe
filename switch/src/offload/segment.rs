//! Software GSO: cutting TSO/USO super-frames into wire-sized segments.

use std::ops::Range;

use super::parse::{self, Ip, L4, Version};
use super::{OffloadError, complete_checksum, csum, is_standard_partial};
use crate::wire::VirtioNetHdr;

/// The most segments one frame may be cut into. A 64 KiB super-frame at the
/// smallest MSS Linux sends by default (48 bytes) needs ~1366; anything above
/// this bound is an abuse, refused with [`OffloadError::TooManySegments`].
pub const MAX_SEGMENTS: usize = 2048;

/// A reusable, caller-owned arena of output segments: one byte buffer and the
/// range of each segment in it. [`segment`] clears it on every call and only
/// grows it, so after warm-up segmenting allocates nothing.
///
/// The arena can leave room around every segment ([`SegmentBuf::set_room`]):
/// `head` bytes before and `tail` bytes after each, so a caller can write an
/// encapsulation header (and an AEAD tag) in place and hand the whole buffer
/// ([`SegmentBuf::datagrams`]) to one UDP GSO send without another copy.
#[derive(Debug, Default, Clone)]
pub struct SegmentBuf {
    pub(super) data: Vec<u8>,
    pub(super) segs: Vec<Range<usize>>,
    head: usize,
    tail: usize,
}

impl SegmentBuf {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }

    /// An arena with room for `bytes` of frames and `segments` segments.
    pub fn with_capacity(bytes: usize, segments: usize) -> Self {
        Self { data: Vec::with_capacity(bytes), segs: Vec::with_capacity(segments), head: 0, tail: 0 }
    }

    /// Leaves `head` bytes before and `tail` bytes after every segment from
    /// the next segmentation on (zero-filled).
    pub fn set_room(&mut self, head: usize, tail: usize) {
        self.head = head;
        self.tail = tail;
    }

    /// Segment `i` with its room: `head` bytes, the frame, `tail` bytes.
    pub fn get_with_room_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let r = self.segs.get(i)?.clone();
        Some(&mut self.data[r.start - self.head..r.end + self.tail])
    }

    /// Every segment with its room, back to back: with equal-sized segments
    /// (all but the last), one UDP GSO payload.
    pub fn datagrams(&self) -> &[u8] {
        &self.data
    }

    /// Forgets all segments, keeping the memory.
    pub fn clear(&mut self) {
        self.data.clear();
        self.segs.clear();
    }

    /// Number of segments held.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// True when no segment is held.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Segment `i` as a complete Ethernet frame.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.segs.get(i).map(|r| &self.data[r.clone()])
    }

    /// Segment `i`, mutably (e.g. to rewrite addresses before sending).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.segs.get(i).map(|r| &mut self.data[r.clone()])
    }

    /// The segments in order, each a complete Ethernet frame.
    pub fn iter(&self) -> Segments<'_> {
        Segments { buf: self, next: 0 }
    }

    /// Total bytes of all segments (their room not included).
    pub fn total_len(&self) -> usize {
        self.segs.iter().map(|r| r.len()).sum()
    }

    fn push(&mut self, parts: [&[u8]; 2]) -> &mut [u8] {
        self.data.resize(self.data.len() + self.head, 0);
        let start = self.data.len();
        for p in parts {
            self.data.extend_from_slice(p);
        }
        let end = self.data.len();
        self.data.resize(end + self.tail, 0);
        self.segs.push(start..end);
        &mut self.data[start..end]
    }
}

impl<'a> IntoIterator for &'a SegmentBuf {
    type Item = &'a [u8];
    type IntoIter = Segments<'a>;

    fn into_iter(self) -> Segments<'a> {
        self.iter()
    }
}

/// Iterator over the segments of a [`SegmentBuf`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    buf: &'a SegmentBuf,
    next: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let seg = self.buf.get(self.next)?;
        self.next += 1;
        Some(seg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.buf.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Segments<'_> {}

/// Turns `frame` into complete wire frames in `out` and returns how many.
///
/// - GSO frames (`GSO_TCPV4`, `GSO_TCPV6`, `GSO_UDP_L4`) are cut into
///   segments of `hdr.gso_size` payload bytes, the last one shorter. Each is
///   a full Ethernet frame with copied headers, its own IPv4 total length,
///   an IPv4 ID incremented per segment (as Linux does), a recomputed IPv4
///   header checksum or the IPv6 payload length, and a complete TCP/UDP
///   checksum. TCP sequence numbers advance by the payload offset; FIN and
///   PSH stay only on the last segment, CWR only on the first. USO segments
///   are independent UDP datagrams with their own length.
/// - Any other frame is copied as the single segment, its checksum completed
///   when it carries `NEEDS_CSUM`, so callers have one path.
///
/// Headers are parsed from the frame (Ethernet with up to two VLAN tags,
/// IPv4 with options, IPv6 without extension headers, TCP with options);
/// `hdr.hdr_len` is only a hint and is ignored. Ethernet padding after the IP
/// packet is dropped from the segments. On error `out` is left empty.
pub fn segment(frame: &[u8], hdr: &VirtioNetHdr, out: &mut SegmentBuf) -> Result<usize, OffloadError> {
    segment_inner(frame, hdr, None, L4Checksum::Complete, out)
}

/// Like [`segment`], but TCP segments are made small enough that each IP
/// packet is at most `mtu` bytes: the MSS is
/// `min(gso_size, mtu − IP header − TCP header)`, for when the overlay MTU is
/// below what the sender assumed.
///
/// UDP datagrams (USO segments, non-GSO frames) cannot be resized: they are
/// produced as [`segment`] would, even if larger than `mtu`. Ask
/// [`exceeds_mtu`](super::exceeds_mtu) first to answer those with an ICMP
/// error instead.
pub fn segment_to_mtu(frame: &[u8], hdr: &VirtioNetHdr, mtu: u16, out: &mut SegmentBuf) -> Result<usize, OffloadError> {
    segment_inner(frame, hdr, Some(mtu), L4Checksum::Complete, out)
}

/// Like [`segment_to_mtu`], but every TCP/UDP checksum is left partial: each
/// segment's checksum field holds that segment's pseudo-header sum, which
/// [`partial_checksum_hdr`](super::partial_checksum_hdr) describes. Saves a
/// pass over every segment when the receiver will hand the segments on as
/// partial anyway (an authenticated tunnel: see
/// [`crypto::InnerChecksum::Partial`]). Only for frames that
/// [`is_standard_partial`](super::is_standard_partial) accepts; others are
/// refused as [`OffloadError::Unsupported`].
pub fn segment_to_mtu_partial(
    frame: &[u8],
    hdr: &VirtioNetHdr,
    mtu: u16,
    out: &mut SegmentBuf,
) -> Result<usize, OffloadError> {
    // GSO frames are checked where segmentation has parsed their headers.
    if !hdr.is_gso() && !is_standard_partial(frame, hdr) {
        out.clear();
        return Err(NON_STANDARD_PARTIAL);
    }
    segment_inner(frame, hdr, Some(mtu), L4Checksum::Partial, out)
}

/// A partial checksum [`partial_checksum_hdr`](super::partial_checksum_hdr)
/// would not find again.
const NON_STANDARD_PARTIAL: OffloadError =
    OffloadError::Unsupported { what: "partial checksum at a non-standard place" };

/// What segmentation does with TCP/UDP checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4Checksum {
    /// Completes them.
    Complete,
    /// Leaves the pseudo-header sum of each segment.
    Partial,
}

fn segment_inner(
    frame: &[u8],
    hdr: &VirtioNetHdr,
    mtu: Option<u16>,
    checksum: L4Checksum,
    out: &mut SegmentBuf,
) -> Result<usize, OffloadError> {
    out.clear();
    if !hdr.is_gso() {
        let seg = out.push([frame, &[]]);
        // A partial checksum already holds the pseudo-header sum.
        if checksum == L4Checksum::Complete
            && let Err(e) = complete_checksum(seg, hdr)
        {
            out.clear();
            return Err(e);
        }
        return Ok(1);
    }
    let (version, proto) = match hdr.gso_kind() {
        VirtioNetHdr::GSO_TCPV4 => (Some(Version::V4), parse::PROTO_TCP),
        VirtioNetHdr::GSO_TCPV6 => (Some(Version::V6), parse::PROTO_TCP),
        VirtioNetHdr::GSO_UDP_L4 => (None, parse::PROTO_UDP),
        VirtioNetHdr::GSO_UDP => {
            return Err(OffloadError::Unsupported { what: "UDP fragmentation offload (GSO_UDP)" });
        }
        _ => return Err(OffloadError::Unsupported { what: "unknown GSO type" }),
    };
    if hdr.gso_size == 0 {
        return Err(OffloadError::ZeroGsoSize);
    }
    let ip = parse::ip(frame)?.ok_or(OffloadError::Unsupported { what: "GSO frame that is not IP" })?;
    if version.is_some_and(|v| v != ip.version) {
        return Err(OffloadError::Malformed { what: "IP version for the GSO type" });
    }
    if ip.proto != proto {
        return Err(OffloadError::Malformed { what: "L4 protocol for the GSO type" });
    }
    let l4 = parse::l4(frame, &ip)?;
    if checksum == L4Checksum::Partial {
        // Where `is_standard_partial` looks, from the headers parsed here.
        let field = if proto == parse::PROTO_TCP { parse::TCP_CHECKSUM } else { parse::UDP_CHECKSUM };
        let standard = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset)) == (l4.off, field);
        if !hdr.needs_csum() || ip.fragment || !standard {
            return Err(NON_STANDARD_PARTIAL);
        }
    }

    let mut mss = usize::from(hdr.gso_size);
    if let (Some(mtu), parse::PROTO_TCP) = (mtu, proto) {
        let headers = ip.hdr_len + l4.hdr_len;
        match usize::from(mtu).checked_sub(headers) {
            Some(room) if room > 0 => mss = mss.min(room),
            _ => return Err(OffloadError::MtuTooSmall { mtu, headers }),
        }
    }
    let headers = &frame[..l4.payload_off()];
    let payload = &frame[l4.payload_off()..ip.end];
    let segments = payload.len().div_ceil(mss).max(1);
    if segments > MAX_SEGMENTS {
        return Err(OffloadError::TooManySegments { segments, max: MAX_SEGMENTS });
    }
    out.data.reserve(segments * (out.head + headers.len() + out.tail) + payload.len());
    out.segs.reserve(segments);

    let fix = Fixup::new(frame, &ip, &l4, checksum);
    let mut chunks = payload.chunks(mss);
    for i in 0..segments {
        let chunk = chunks.next().unwrap_or(&[]);
        let seg = out.push([headers, chunk]);
        fix.apply(seg, i, segments, i * mss);
    }
    Ok(segments)
}

/// What to rewrite in each copied header, read once from the super-frame.
struct Fixup {
    ip: Ip,
    l4: L4,
    ip_id: u16,
    seq: u32,
    tcp_flags: u8,
    checksum: L4Checksum,
}

impl Fixup {
    fn new(frame: &[u8], ip: &Ip, l4: &L4, checksum: L4Checksum) -> Self {
        let (ip_id, seq, tcp_flags) = (
            if ip.version == Version::V4 { parse::be16(frame, ip.off + 4) } else { 0 },
            if l4.proto == parse::PROTO_TCP {
                let s = &frame[l4.off + 4..l4.off + 8];
                u32::from_be_bytes([s[0], s[1], s[2], s[3]])
            } else {
                0
            },
            if l4.proto == parse::PROTO_TCP { frame[l4.off + parse::TCP_FLAGS] } else { 0 },
        );
        Self { ip: *ip, l4: *l4, ip_id, seq, tcp_flags, checksum }
    }

    /// Rewrites segment `i` of `n`, whose payload starts at `offset` of the
    /// super-frame's payload. `seg` is headers + payload chunk.
    fn apply(&self, seg: &mut [u8], i: usize, n: usize, offset: usize) {
        let (ip, l4) = (&self.ip, &self.l4);
        let l4_len = seg.len() - l4.off;
        match ip.version {
            Version::V4 => {
                let h = ip.off;
                parse::put16(seg, h + 2, (ip.hdr_len + l4_len) as u16);
                parse::put16(seg, h + 4, self.ip_id.wrapping_add(i as u16));
                parse::put16(seg, h + 10, 0);
                let check = csum::finish(csum::add(0, &seg[h..h + ip.hdr_len]));
                parse::put16(seg, h + 10, check);
            }
            Version::V6 => parse::put16(seg, ip.off + 4, l4_len as u16),
        }
        let check_at = if l4.proto == parse::PROTO_TCP {
            let seq = self.seq.wrapping_add(offset as u32);
            seg[l4.off + 4..l4.off + 8].copy_from_slice(&seq.to_be_bytes());
            let mut flags = self.tcp_flags;
            if i + 1 < n {
                flags &= !(parse::TCP_FIN | parse::TCP_PSH);
            }
            if i > 0 {
                flags &= !parse::TCP_CWR;
            }
            seg[l4.off + parse::TCP_FLAGS] = flags;
            l4.off + parse::TCP_CHECKSUM
        } else {
            parse::put16(seg, l4.off + 4, l4_len as u16);
            l4.off + parse::UDP_CHECKSUM
        };
        parse::put16(seg, check_at, 0);
        let (src, dst) = ip.addrs(seg);
        let pseudo = match ip.version {
            Version::V4 => csum::pseudo_v4(src, dst, l4.proto, l4_len),
            Version::V6 => csum::pseudo_v6(src, dst, l4.proto, l4_len),
        };
        let check = match self.checksum {
            L4Checksum::Partial => csum::fold(pseudo),
            L4Checksum::Complete => {
                let check = csum::finish(csum::add(pseudo, &seg[l4.off..]));
                // TCP keeps a zero result as 0, as Linux's own segmentation
                // does (0xffff would be accepted, but Wireshark calls it bad).
                if l4.proto == parse::PROTO_UDP { csum::udp_field(check) } else { check }
            }
        };
        parse::put16(seg, check_at, check);
    }
}
