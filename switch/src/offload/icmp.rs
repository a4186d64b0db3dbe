//! Answering packets too big for the overlay: ICMP "fragmentation needed"
//! (RFC 792 / RFC 1191) and ICMPv6 "packet too big" (RFC 4443 §3.2).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::csum;
use super::parse::{self, Ip, Version};
use crate::wire::VirtioNetHdr;

/// Largest ICMPv4 error datagram (RFC 1812 §4.3.2.3; Linux quotes up to it).
const ICMPV4_MAX_LEN: usize = 576;
/// Largest ICMPv6 error packet: the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
const ICMPV6_MAX_LEN: usize = 1280;
/// ICMP header: type, code, checksum, 4 bytes of type-specific data.
const ICMP_HDR_LEN: usize = 8;
/// TTL / hop limit of the answers.
const TTL: u8 = 64;

/// Which answer a frame that does not fit the MTU calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooBig {
    /// An IPv4 packet (or USO segment) with DF set: answer with
    /// [`icmp_frag_needed`].
    Ipv4,
    /// An IPv6 packet (or USO segment): answer with [`icmpv6_packet_too_big`].
    Ipv6,
}

impl TooBig {
    /// The answer for `ip`, or `None` for IPv4 without DF.
    fn for_ip(ip: &Ip) -> Option<Self> {
        match ip.version {
            Version::V4 => ip.df.then_some(TooBig::Ipv4),
            Version::V6 => Some(TooBig::Ipv6),
        }
    }
}

/// Tells whether `frame` must not be forwarded over a link whose largest IP
/// packet is `mtu` bytes, and which ICMP answer is due.
///
/// - Non-GSO frames: an IPv4 packet with DF, or any IPv6 packet, longer than
///   `mtu`.
/// - TCP and UDP GSO frames: when one segment the sender asked for (IP + L4
///   header + `gso_size`, or less if the payload is shorter) exceeds `mtu`,
///   as Linux's `skb_gso_validate_network_len` decides for bridged tunnels:
///   the sender learns the path MTU instead of the switch quietly cutting
///   smaller segments. For IPv4 only with DF.
///
/// IPv4 packets without DF give `None`: they may be forwarded and left to
/// the underlay to fragment. `Some` means "do not forward"; the answering
/// function may still decline (e.g. never answer an ICMP error), then drop.
/// Frames that are not IP or are malformed give `None`.
pub fn exceeds_mtu(frame: &[u8], hdr: &VirtioNetHdr, mtu: u16) -> Option<TooBig> {
    let ip = parse::ip(frame).ok()??;
    let mtu = usize::from(mtu);
    match hdr.gso_kind() {
        VirtioNetHdr::GSO_NONE => (ip.len() > mtu).then(|| TooBig::for_ip(&ip))?,
        VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_TCPV6 | VirtioNetHdr::GSO_UDP_L4 => {
            let l4 = parse::l4(frame, &ip).ok()?;
            let payload = ip.end - l4.payload_off();
            let largest = ip.hdr_len + l4.hdr_len + payload.min(usize::from(hdr.gso_size));
            (largest > mtu).then(|| TooBig::for_ip(&ip))?
        }
        _ => None,
    }
}

/// Builds an ICMP "destination unreachable, fragmentation needed" (type 3,
/// code 4) answer to `frame` into `out` and returns its length.
///
/// The answer is an Ethernet frame from the network's gateway
/// (`from_mac`/`from_ip`) to the sender's MAC and IP, with the same VLAN
/// tags, TTL 64, the next-hop MTU `mtu`, and as much of the original IP
/// packet quoted as fits in a 576-byte datagram.
///
/// `None` (and `out` untouched) unless `frame` is an IPv4 packet with DF set
/// that is longer than `mtu`, from a unicast sender (MAC and IP) to a
/// non-broadcast, non-multicast address; never for ICMP errors (RFC 1122
/// §3.2.2) or for fragments other than the first.
pub fn icmp_frag_needed(
    frame: &[u8],
    mtu: u16,
    from_mac: [u8; 6],
    from_ip: Ipv4Addr,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let ip = parse::ip(frame).ok()??;
    if ip.version != Version::V4 || !ip.df || ip.len() <= usize::from(mtu) {
        return None;
    }
    icmp_unreachable(frame, 4, mtu, from_mac, from_ip, out)
}

/// Builds an ICMP "destination unreachable, network unreachable" (type 3,
/// code 0) answer to `frame` into `out` and returns its length: what a
/// router says of a packet it has no route for, so the sender fails at once
/// ("Destination Net Unreachable", `ENETUNREACH`) instead of timing out.
///
/// Addressed and quoted as [`icmp_frag_needed`]; `None` (and `out`
/// untouched) unless `frame` is an IPv4 packet from a unicast sender (MAC
/// and IP) to a non-broadcast, non-multicast address; never for ICMP errors
/// or for fragments other than the first.
pub fn icmp_net_unreachable(frame: &[u8], from_mac: [u8; 6], from_ip: Ipv4Addr, out: &mut Vec<u8>) -> Option<usize> {
    icmp_unreachable(frame, 0, 0, from_mac, from_ip, out)
}

/// Builds ICMP "destination unreachable" with `code` (and, for code 4, the
/// next-hop MTU `mtu`) answering `frame`; see [`icmp_frag_needed`].
fn icmp_unreachable(
    frame: &[u8],
    code: u8,
    mtu: u16,
    from_mac: [u8; 6],
    from_ip: Ipv4Addr,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let ip = parse::ip(frame).ok()??;
    if ip.version != Version::V4 || ip.later_fragment {
        return None;
    }
    let (src, dst) = ip.addrs(frame);
    let (src, dst) = (Ipv4Addr::from(<[u8; 4]>::try_from(src).ok()?), Ipv4Addr::from(<[u8; 4]>::try_from(dst).ok()?));
    if !unicast_v4(src) || dst.is_multicast() || dst.is_broadcast() || frame[6] & 1 != 0 {
        return None;
    }
    if ip.proto == parse::PROTO_ICMP {
        // An ICMP error, or a type we do not know, is never answered
        // (as Linux's `icmp_send`).
        let icmp_type = *frame.get(ip.payload_off()).filter(|_| ip.payload_off() < ip.end)?;
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) || icmp_type > 18 {
            return None;
        }
    }

    let quote = &frame[ip.off..ip.end.min(ip.off + ICMPV4_MAX_LEN - parse::IPV4_MIN_LEN - ICMP_HDR_LEN)];
    let ip_len = parse::IPV4_MIN_LEN + ICMP_HDR_LEN + quote.len();
    out.clear();
    push_l2(out, frame, ip.off, from_mac, parse::ETHERTYPE_IPV4);
    let h = out.len();
    out.extend_from_slice(&[0x45, 0xc0]); // version 4, IHL 5; precedence "internetwork control"
    out.extend_from_slice(&(ip_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, TTL, parse::PROTO_ICMP, 0, 0]); // ID 0, no flags, checksum later
    out.extend_from_slice(&from_ip.octets());
    out.extend_from_slice(&src.octets());
    let check = csum::finish(csum::add(0, &out[h..]));
    parse::put16(out, h + 10, check);

    let icmp = out.len();
    out.extend_from_slice(&[3, code, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quote);
    let check = csum::finish(csum::add(0, &out[icmp..]));
    parse::put16(out, icmp + 2, check);
    Some(out.len())
}

/// Builds an ICMPv6 "packet too big" (type 2, code 0) answer to `frame` into
/// `out` and returns its length.
///
/// The answer goes from the gateway (`from_mac`, `from_ip`, normally its
/// EUI-64 link-local address) to the sender's MAC and IP with the same VLAN
/// tags, hop limit 64, the MTU field `mtu`, and as much of the original
/// packet quoted as fits in 1280 bytes.
///
/// `None` (and `out` untouched) unless `frame` is an IPv6 packet longer than
/// `mtu` from a unicast sender (MAC and IP); never for ICMPv6 errors. A
/// multicast destination is answered (RFC 4443 §2.4 (e.2)).
pub fn icmpv6_packet_too_big(
    frame: &[u8],
    mtu: u16,
    from_mac: [u8; 6],
    from_ip: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let ip = parse::ip(frame).ok()??;
    if ip.version != Version::V6 || ip.len() <= usize::from(mtu) {
        return None;
    }
    icmpv6_error(frame, &ip, 2, 0, u32::from(mtu), from_mac, from_ip, out)
}

/// ICMPv6 "destination unreachable" codes (RFC 4443 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Unreachable6 {
    /// No route to destination (code 0): what a router says of a packet
    /// it has no route for.
    NoRoute = 0,
    /// Communication with the destination administratively prohibited
    /// (code 1).
    Prohibited = 1,
    /// Address unreachable (code 3).
    Address = 3,
    /// Port unreachable (code 4).
    Port = 4,
}

/// Builds an ICMPv6 "destination unreachable" with `code` answering
/// `frame` into `out` and returns its length: the IPv6 counterpart of
/// [`icmp_net_unreachable`], so the sender fails at once ("Destination
/// unreachable: No route", `ENETUNREACH`) instead of timing out.
///
/// Addressed and quoted as [`icmpv6_packet_too_big`]; `None` (and `out`
/// untouched) unless `frame` is an IPv6 packet from a unicast sender (MAC
/// and IP) to a unicast destination (RFC 4443 §2.4 (e)); never for ICMPv6
/// errors.
pub fn icmpv6_unreachable(
    frame: &[u8],
    code: Unreachable6,
    from_mac: [u8; 6],
    from_ip: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let ip = parse::ip(frame).ok()??;
    if ip.version != Version::V6 {
        return None;
    }
    let (_, dst) = ip.addrs(frame);
    if dst.first() == Some(&0xff) || frame[0] & 1 != 0 {
        return None;
    }
    icmpv6_error(frame, &ip, 1, code as u8, 0, from_mac, from_ip, out)
}

/// Builds the ICMPv6 error `kind`/`code` (with `word` after the checksum)
/// answering the IPv6 packet `ip` of `frame`; see [`icmpv6_packet_too_big`].
#[allow(clippy::too_many_arguments)]
fn icmpv6_error(
    frame: &[u8],
    ip: &Ip,
    kind: u8,
    code: u8,
    word: u32,
    from_mac: [u8; 6],
    from_ip: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let (src, _) = ip.addrs(frame);
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(src).ok()?);
    if src.is_unspecified() || src.is_multicast() || src.is_loopback() || frame[6] & 1 != 0 {
        return None;
    }
    if is_icmpv6_error(frame, ip) {
        return None;
    }

    let quote = &frame[ip.off..ip.end.min(ip.off + ICMPV6_MAX_LEN - parse::IPV6_LEN - ICMP_HDR_LEN)];
    let icmp_len = ICMP_HDR_LEN + quote.len();
    out.clear();
    push_l2(out, frame, ip.off, from_mac, parse::ETHERTYPE_IPV6);
    out.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
    out.extend_from_slice(&(icmp_len as u16).to_be_bytes());
    out.extend_from_slice(&[parse::PROTO_ICMPV6, TTL]);
    out.extend_from_slice(&from_ip.octets());
    out.extend_from_slice(&src.octets());

    let icmp = out.len();
    out.extend_from_slice(&[kind, code, 0, 0]);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(quote);
    let pseudo = csum::pseudo_v6(&from_ip.octets(), &src.octets(), parse::PROTO_ICMPV6, icmp_len);
    let check = csum::finish(csum::add(pseudo, &out[icmp..]));
    parse::put16(out, icmp + 2, check);
    Some(out.len())
}

/// A unicast IPv4 source worth answering.
fn unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() || a.octets()[0] >= 240)
}

/// Ethernet header of an answer to `frame`: back to its source, same tags.
fn push_l2(out: &mut Vec<u8>, frame: &[u8], l3_off: usize, from_mac: [u8; 6], ethertype: u16) {
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&from_mac);
    out.extend_from_slice(&frame[12..l3_off - 2]); // VLAN tags, if any
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// True when the IPv6 packet carries an ICMPv6 error (type < 128), looking
/// through hop-by-hop, routing, destination-options and fragment headers.
/// A packet whose headers cannot be walked counts as an error (not answered).
fn is_icmpv6_error(frame: &[u8], ip: &Ip) -> bool {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DEST_OPTS: u8 = 60;
    let packet = &frame[..ip.end];
    let (mut next, mut off) = (ip.proto, ip.payload_off());
    // Each extension header is at least 8 bytes; bound the walk anyway.
    for _ in 0..8 {
        match next {
            parse::PROTO_ICMPV6 => return packet.get(off).is_none_or(|&t| t < 128),
            HOP_BY_HOP | ROUTING | DEST_OPTS | FRAGMENT => {
                let Some(h) = packet.get(off..off + 2) else { return true };
                if next == FRAGMENT {
                    // Only the first fragment holds the ICMPv6 header.
                    if packet.get(off + 2..off + 4).is_none_or(|f| parse::be16(f, 0) & 0xfff8 != 0) {
                        return true;
                    }
                    off += 8;
                } else {
                    off += (usize::from(h[1]) + 1) * 8;
                }
                next = h[0];
            }
            _ => return false,
        }
    }
    true
}
