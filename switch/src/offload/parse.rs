//! Just enough header parsing for the offloads: Ethernet with up to two
//! 802.1Q/802.1ad tags, IPv4 (with options) or IPv6 (fixed header), and the
//! TCP or UDP header. Every offset returned is checked against the frame, so
//! callers may index with it.

use super::OffloadError;

/// Ethernet II header length without tags.
pub(crate) const ETH_LEN: usize = 14;
/// IPv4 header length without options.
pub(crate) const IPV4_MIN_LEN: usize = 20;
/// IPv6 fixed header length.
pub(crate) const IPV6_LEN: usize = 40;
/// UDP header length.
pub(crate) const UDP_LEN: usize = 8;
/// TCP header length without options.
pub(crate) const TCP_MIN_LEN: usize = 20;

pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Most VLAN tags we walk over (QinQ).
const MAX_TAGS: usize = 2;

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;

/// Offset of the TCP flags byte inside the TCP header.
pub(crate) const TCP_FLAGS: usize = 13;
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_CWR: u8 = 0x80;
/// Offset of the checksum inside the TCP header.
pub(crate) const TCP_CHECKSUM: usize = 16;
/// Offset of the checksum inside the UDP header.
pub(crate) const UDP_CHECKSUM: usize = 6;

/// Reads a big-endian u16 at `at`; callers have bounds-checked `at + 2`.
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Writes a big-endian u16 at `at`; callers have bounds-checked `at + 2`.
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// IP version of a parsed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V4,
    V6,
}

/// Where the IP packet sits in the frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ip {
    pub(crate) version: Version,
    /// Offset of the IP header in the frame (after Ethernet and tags).
    pub(crate) off: usize,
    /// IP header length (IPv4 with options; 40 for IPv6).
    pub(crate) hdr_len: usize,
    /// One past the last byte of the IP packet, per its length field
    /// (`<= frame.len()`; Ethernet padding lies beyond).
    pub(crate) end: usize,
    /// IPv4 protocol or IPv6 next header.
    pub(crate) proto: u8,
    /// IPv4 "don't fragment"; always true for IPv6 (routers never fragment).
    pub(crate) df: bool,
    /// IPv4 fragment offset is not zero (a non-first fragment).
    pub(crate) later_fragment: bool,
    /// IPv4 "more fragments" is set or the offset is not zero.
    pub(crate) fragment: bool,
}

impl Ip {
    /// Length of the whole IP packet.
    pub(crate) fn len(&self) -> usize {
        self.end - self.off
    }

    /// Offset of the payload (L4 header) in the frame.
    pub(crate) fn payload_off(&self) -> usize {
        self.off + self.hdr_len
    }

    /// Source and destination address ranges in the frame.
    pub(crate) fn addrs<'a>(&self, frame: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        match self.version {
            Version::V4 => (&frame[self.off + 12..self.off + 16], &frame[self.off + 16..self.off + 20]),
            Version::V6 => (&frame[self.off + 8..self.off + 24], &frame[self.off + 24..self.off + 40]),
        }
    }
}

/// Walks the Ethernet header and VLAN tags: `(ethertype, offset of the L3 header)`.
pub(crate) fn l2(frame: &[u8]) -> Result<(u16, usize), OffloadError> {
    let truncated = OffloadError::Truncated { what: "Ethernet header" };
    if frame.len() < ETH_LEN {
        return Err(truncated);
    }
    let mut off = 12;
    for _ in 0..=MAX_TAGS {
        let ethertype = be16(frame, off);
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            return Ok((ethertype, off + 2));
        }
        off += 4;
        if frame.len() < off + 2 {
            return Err(truncated);
        }
    }
    Err(OffloadError::Unsupported { what: "more than two VLAN tags" })
}

/// Parses the IP header; `Ok(None)` when the frame is not IP.
pub(crate) fn ip(frame: &[u8]) -> Result<Option<Ip>, OffloadError> {
    let (ethertype, off) = l2(frame)?;
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, off).map(Some),
        ETHERTYPE_IPV6 => ipv6(frame, off).map(Some),
        _ => Ok(None),
    }
}

fn ipv4(frame: &[u8], off: usize) -> Result<Ip, OffloadError> {
    let h = frame.get(off..off + IPV4_MIN_LEN).ok_or(OffloadError::Truncated { what: "IPv4 header" })?;
    if h[0] >> 4 != 4 {
        return Err(OffloadError::Malformed { what: "IPv4 version" });
    }
    let hdr_len = usize::from(h[0] & 0x0f) * 4;
    if hdr_len < IPV4_MIN_LEN {
        return Err(OffloadError::Malformed { what: "IPv4 header length" });
    }
    let total = usize::from(be16(h, 2));
    let flags_frag = be16(h, 6);
    if frame.len() < off + hdr_len {
        return Err(OffloadError::Truncated { what: "IPv4 header" });
    }
    if total < hdr_len {
        return Err(OffloadError::Malformed { what: "IPv4 total length" });
    }
    if frame.len() < off + total {
        return Err(OffloadError::Truncated { what: "IPv4 packet" });
    }
    Ok(Ip {
        version: Version::V4,
        off,
        hdr_len,
        end: off + total,
        proto: h[9],
        df: flags_frag & 0x4000 != 0,
        later_fragment: flags_frag & 0x1fff != 0,
        fragment: flags_frag & 0x3fff != 0,
    })
}

fn ipv6(frame: &[u8], off: usize) -> Result<Ip, OffloadError> {
    let h = frame.get(off..off + IPV6_LEN).ok_or(OffloadError::Truncated { what: "IPv6 header" })?;
    if h[0] >> 4 != 6 {
        return Err(OffloadError::Malformed { what: "IPv6 version" });
    }
    let payload = usize::from(be16(h, 4));
    if frame.len() < off + IPV6_LEN + payload {
        return Err(OffloadError::Truncated { what: "IPv6 packet" });
    }
    Ok(Ip {
        version: Version::V6,
        off,
        hdr_len: IPV6_LEN,
        end: off + IPV6_LEN + payload,
        proto: h[6],
        df: true,
        later_fragment: false,
        fragment: false,
    })
}

/// The transport header of a packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L4 {
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub(crate) proto: u8,
    /// Offset of the L4 header in the frame.
    pub(crate) off: usize,
    /// L4 header length (TCP with options; 8 for UDP).
    pub(crate) hdr_len: usize,
}

impl L4 {
    /// Offset of the L4 payload in the frame.
    pub(crate) fn payload_off(&self) -> usize {
        self.off + self.hdr_len
    }
}

/// Parses the TCP or UDP header of `ip`, which must fit inside the IP packet.
pub(crate) fn l4(frame: &[u8], ip: &Ip) -> Result<L4, OffloadError> {
    if ip.fragment {
        return Err(OffloadError::Unsupported { what: "IPv4 fragment" });
    }
    let off = ip.payload_off();
    let packet = &frame[..ip.end];
    match ip.proto {
        PROTO_TCP => {
            let h = packet.get(off..off + TCP_MIN_LEN).ok_or(OffloadError::Truncated { what: "TCP header" })?;
            let hdr_len = usize::from(h[12] >> 4) * 4;
            if hdr_len < TCP_MIN_LEN {
                return Err(OffloadError::Malformed { what: "TCP data offset" });
            }
            if packet.len() < off + hdr_len {
                return Err(OffloadError::Truncated { what: "TCP options" });
            }
            Ok(L4 { proto: PROTO_TCP, off, hdr_len })
        }
        PROTO_UDP => {
            if packet.len() < off + UDP_LEN {
                return Err(OffloadError::Truncated { what: "UDP header" });
            }
            Ok(L4 { proto: PROTO_UDP, off, hdr_len: UDP_LEN })
        }
        _ => Err(OffloadError::Unsupported {
            what: match ip.version {
                Version::V4 => "IPv4 protocol other than TCP or UDP",
                Version::V6 => "IPv6 next header other than TCP or UDP (extension headers)",
            },
        }),
    }
}
