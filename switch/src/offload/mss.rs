//! TCP MSS clamping: lowering the MSS option of SYN segments so that peers
//! never send segments too big for the overlay.

use super::csum;
use super::parse;
use crate::wire::VirtioNetHdr;

/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_MSS_LEN: u8 = 4;

/// The first two segments of a TCP handshake, as a spread network places
/// connections on workers (see `daemon::datapath::spread`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// A SYN-ACK (the answer); else a SYN without ACK (the opening).
    pub answer: bool,
    /// The connection, the same for both directions (see
    /// [`ConnectionKey`]).
    pub key: ConnectionKey,
}

/// A TCP connection or UDP flow, the same for both directions: its
/// protocol and both endpoints (address, port), the lower first (IPv4
/// addresses as IPv4-mapped IPv6 ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionKey(u8, [([u8; 16], u16); 2]);

impl ConnectionKey {
    /// Whether this is a TCP connection (else a UDP flow).
    pub fn is_tcp(&self) -> bool {
        self.0 == parse::PROTO_TCP
    }
}

/// `Some` when `frame` is a SYN (without ACK) or a SYN-ACK over IPv4 or
/// IPv6 (no extension headers), tagged or not. Frames that are not TCP are
/// told apart by two bytes and TCP segments without SYN (nearly all of
/// them) by one more, so this is cheap enough to ask of every frame a
/// worker of a spread network writes.
pub fn tcp_handshake(frame: &[u8]) -> Option<Handshake> {
    let ipv4_tcp = frame.get(12..14) == Some(&[0x08, 0x00]) && frame.get(23) == Some(&parse::PROTO_TCP);
    let ipv6_tcp = frame.get(12..14) == Some(&[0x86, 0xdd]) && frame.get(20) == Some(&parse::PROTO_TCP);
    let tagged = matches!(frame.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]));
    if !(ipv4_tcp || ipv6_tcp || tagged) {
        return None;
    }
    // Where the header has no options (IPv4) or extensions (IPv6), one
    // byte tells a segment without SYN.
    let flags_at_guess = if ipv6_tcp { 14 + 40 + 13 } else { 14 + 20 + 13 };
    let plain = ipv6_tcp || frame.get(14) == Some(&0x45);
    if plain && frame.get(flags_at_guess).is_some_and(|f| f & parse::TCP_SYN == 0) {
        return None;
    }
    let (flags, key) = tcp_segment(frame)?;
    (flags & parse::TCP_SYN != 0).then_some(Handshake { answer: flags & TCP_ACK != 0, key })
}

/// The flow a TCP segment or UDP datagram over IPv4 or IPv6 belongs to
/// (not a fragment: only the first carries the ports), `None` for anything
/// else: a whole parse, for the frames a worker of a spread network checks
/// against the connections it just placed, samples, or moved.
pub fn flow_key(frame: &[u8]) -> Option<ConnectionKey> {
    flow(frame).map(|(_, key, _)| key)
}

/// [`flow_key`], and whether the frame goes from the key's first endpoint
/// to its second (`true`) or back: a worker moves a UDP flow only once it
/// saw it both ways, as tun steers a flow's frames from a sandbox only
/// after frames of it were written into that sandbox's TAP.
pub fn flow_key_and_way(frame: &[u8]) -> Option<(ConnectionKey, bool)> {
    flow(frame).map(|(_, key, forth)| (key, forth))
}

/// The flags and connection of a TCP segment over IPv4 or IPv6.
fn tcp_segment(frame: &[u8]) -> Option<(u8, ConnectionKey)> {
    flow(frame).filter(|(_, key, _)| key.is_tcp()).map(|(flags, key, _)| (flags, key))
}

/// The flow of a TCP segment or UDP datagram, with the segment's flags
/// (0 for UDP) and whether it goes from the key's first endpoint.
fn flow(frame: &[u8]) -> Option<(u8, ConnectionKey, bool)> {
    let ip = parse::ip(frame).ok().flatten()?;
    // Only TCP and UDP get this far.
    let l4 = parse::l4(frame, &ip).ok()?;
    let (src, dst) = ip.addrs(frame);
    let endpoint = |addr: &[u8], port_at: usize| {
        let mut a = [0u8; 16];
        if addr.len() == 4 {
            a[10..12].copy_from_slice(&[0xff, 0xff]);
            a[12..].copy_from_slice(addr);
        } else {
            a.copy_from_slice(addr);
        }
        (a, parse::be16(frame, port_at))
    };
    let (s, d) = (endpoint(src, l4.off), endpoint(dst, l4.off + 2));
    let flags = if l4.proto == parse::PROTO_TCP { frame[l4.off + parse::TCP_FLAGS] } else { 0 };
    Some((flags, ConnectionKey(l4.proto, if s <= d { [s, d] } else { [d, s] }), s <= d))
}

/// The TCP ACK flag.
const TCP_ACK: u8 = 0x10;

/// Lowers the MSS option of a TCP SYN or SYN-ACK (IPv4 or IPv6) to `max_mss`
/// when it is larger, and returns whether the frame changed.
///
/// The TCP checksum is updated incrementally (RFC 1624), unless the frame
/// carries `NEEDS_CSUM`: then the checksum field holds only the pseudo-header
/// sum and the options are summed when the checksum is completed later.
/// Segments without an MSS option are left alone (the packet never grows),
/// as are non-SYN segments, non-TCP and malformed frames.
pub fn clamp_mss(frame: &mut [u8], hdr: &VirtioNetHdr, max_mss: u16) -> bool {
    let Some(ip) = parse::ip(frame).ok().flatten() else { return false };
    // IPv6 extension headers are not walked: `l4` refuses them.
    let Ok(l4) = parse::l4(frame, &ip) else { return false };
    if l4.proto != parse::PROTO_TCP || frame[l4.off + parse::TCP_FLAGS] & parse::TCP_SYN == 0 {
        return false;
    }
    let Some(at) = find_mss(&frame[l4.off + parse::TCP_MIN_LEN..l4.payload_off()]) else { return false };
    let at = l4.off + parse::TCP_MIN_LEN + at;
    let old = parse::be16(frame, at);
    if old <= max_mss {
        return false;
    }
    parse::put16(frame, at, max_mss);
    if !hdr.needs_csum() {
        // A 16-bit field at an odd offset from the TCP header straddles two
        // checksum words: its bytes land swapped, so update with swapped values.
        let (old, new) =
            if (at - l4.off).is_multiple_of(2) { (old, max_mss) } else { (old.swap_bytes(), max_mss.swap_bytes()) };
        let check_at = l4.off + parse::TCP_CHECKSUM;
        let check = csum::update(parse::be16(frame, check_at), old, new);
        parse::put16(frame, check_at, check);
    }
    true
}

/// [`clamp_mss`] to the largest MSS whose segments fit an `ip_mtu`-byte IP
/// packet: `ip_mtu` minus the minimal IP header (20 bytes for IPv4, 40 for
/// IPv6, told from the frame itself, VLAN tags and all) and the 20-byte TCP
/// header, as iptables' `TCPMSS --clamp-mss-to-pmtu` does.
pub fn clamp_mss_to_mtu(frame: &mut [u8], hdr: &VirtioNetHdr, ip_mtu: u16) -> bool {
    let Some(ip) = parse::ip(frame).ok().flatten() else { return false };
    let ip_header = match ip.version {
        parse::Version::V4 => parse::IPV4_MIN_LEN,
        parse::Version::V6 => parse::IPV6_LEN,
    };
    match usize::from(ip_mtu).checked_sub(ip_header + parse::TCP_MIN_LEN) {
        Some(mss) => clamp_mss(frame, hdr, mss as u16),
        None => false,
    }
}

/// Offset of the MSS value (after kind and length) within the TCP options.
fn find_mss(options: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            OPT_END => return None,
            OPT_NOP => i += 1,
            _ => {
                let len = *options.get(i + 1)?;
                if kind == OPT_MSS {
                    return (len == OPT_MSS_LEN && i + 4 <= options.len()).then_some(i + 2);
                }
                if len < 2 {
                    return None;
                }
                i += usize::from(len);
            }
        }
    }
    None
}
