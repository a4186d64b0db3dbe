//! Reading the IPv4 and IPv6 frames sandboxes send through their gateway,
//! and writing the frames the translator sends them back.
//!
//! Both IP versions go through the same code: a [`Family`] says how long
//! the IP header is and which numbers its ICMP uses, and [`Head`] writes
//! the one or the other header. IPv6 has no header checksum; its TCP, UDP
//! and ICMPv6 checksums cover the IPv6 pseudo-header (RFC 8200 §8.1).
//!
//! Frames toward sandboxes are written in place into caller buffers: data
//! frames leave room for their headers at fixed offsets per family
//! ([`Family::tcp_payload`], [`Family::udp_payload`],
//! [`Family::icmp_message`]; [`TCP_PAYLOAD`], [`UDP_PAYLOAD`] and
//! [`ICMP_MESSAGE`] are IPv4's) so a host socket can be read straight into
//! the frame. Data frames carry a partial TCP/UDP checksum and a virtio-net
//! header asking for its completion (and, for TCP runs longer than the
//! sandbox's MSS, for segmentation): the sandbox's kernel or the switch's
//! offload code finishes them, as it does for frames between sandboxes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::offload::csum;
use crate::wire::VirtioNetHdr;

/// Ethernet header length.
pub(crate) const ETH: usize = 14;
/// IPv4 header length of the frames the translator writes (no options).
pub(crate) const IP: usize = 20;
/// IPv6 header length (the translator writes no extension header).
pub(crate) const IP6: usize = 40;
/// Where a TCP payload starts in an IPv4 frame the translator writes (no TCP options).
pub const TCP_PAYLOAD: usize = Family::V4.tcp_payload();
/// Where a UDP payload starts in an IPv4 frame the translator writes.
pub const UDP_PAYLOAD: usize = Family::V4.udp_payload();
/// Where an ICMP message starts in an IPv4 frame the translator writes.
pub const ICMP_MESSAGE: usize = Family::V4.icmp_message();
/// The largest TCP payload of one frame (the IPv4 total length is 16 bits;
/// IPv6 frames keep to the same bound).
pub const MAX_TCP_PAYLOAD: usize = 65_535 - IP - 20;
/// The largest UDP payload of one datagram.
pub const MAX_UDP_PAYLOAD: usize = 65_535 - IP - 8;
/// The bytes an ICMPv6 error quotes at most (the quoted packet's headers
/// first): the error must fit the IPv6 minimum MTU (RFC 4443 §2.4), 1280
/// bytes with its own IPv6 and ICMPv6 headers.
const MAX_QUOTE6: usize = 1280 - IP6 - 8;
/// IPv6 extension headers walked at most before a packet is given up on.
const MAX_EXTENSIONS: usize = 8;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

/// TCP flags.
pub(crate) mod flags {
    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const SYN: u8 = 0x02;
    pub(crate) const RST: u8 = 0x04;
    pub(crate) const PSH: u8 = 0x08;
    pub(crate) const ACK: u8 = 0x10;
}

/// An IP version, and what frames of it look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The IP header length of frames the translator writes.
    pub const fn ip_len(self) -> usize {
        match self {
            Family::V4 => IP,
            Family::V6 => IP6,
        }
    }

    /// Where a TCP payload starts in a frame the translator writes.
    pub const fn tcp_payload(self) -> usize {
        ETH + self.ip_len() + 20
    }

    /// Where a UDP payload starts in a frame the translator writes.
    pub const fn udp_payload(self) -> usize {
        ETH + self.ip_len() + 8
    }

    /// The largest UDP payload one datagram (or UDP GSO train) of this
    /// family carries: IPv4's total length and IPv6's payload length are
    /// 16 bits.
    pub const fn max_udp_payload(self) -> usize {
        match self {
            Family::V4 => 65_535 - IP - 8,
            Family::V6 => 65_535 - 8,
        }
    }

    /// Where an ICMP (ICMPv6) message starts in a frame the translator writes.
    pub const fn icmp_message(self) -> usize {
        ETH + self.ip_len()
    }

    /// The IP protocol number of its ICMP.
    const fn icmp_proto(self) -> u8 {
        match self {
            Family::V4 => PROTO_ICMP,
            Family::V6 => PROTO_ICMPV6,
        }
    }

    /// ICMP echo request and reply types.
    const fn echo_types(self) -> (u8, u8) {
        match self {
            Family::V4 => (8, 0),
            Family::V6 => (128, 129),
        }
    }
}

/// Why a frame routed through the gateway cannot be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// Neither IPv4 nor IPv6, or cut short, or its headers are inconsistent.
    Malformed,
    /// An IPv4 fragment, or an IPv6 packet whose fixed header is followed
    /// by a fragment header: for [`crate::nat::reassembly`] first.
    Fragment,
    /// An IPv6 extension header the translator does not handle: a fragment
    /// header, a routing header with segments left, an option that must
    /// not be skipped, AH, mobility and the like (hop-by-hop and
    /// destination options it may skip, and a routing header with no
    /// segment left, are walked over).
    Extension,
    /// A protocol the translator does not carry (anything but TCP, UDP and
    /// ICMP or ICMPv6 echo requests).
    Protocol,
}

/// The transport part of a frame from a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// An echo request: the whole ICMP (ICMPv6) message.
    Echo {
        id: u16,
        message: &'a [u8],
    },
}

/// A TCP segment's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSegment<'a> {
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    pub(crate) window: u16,
    pub(crate) options: &'a [u8],
    pub(crate) payload: &'a [u8],
}

impl TcpSegment<'_> {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The MSS and window-scale options of a SYN.
    pub(crate) fn syn_options(&self) -> (Option<u16>, Option<u8>) {
        let (mut mss, mut wscale) = (None, None);
        let mut o = self.options;
        while let [kind, rest @ ..] = o {
            match *kind {
                0 => break,
                1 => o = rest,
                _ => {
                    let Some(&len) = rest.first() else { break };
                    let len = usize::from(len);
                    if len < 2 || len > o.len() {
                        break;
                    }
                    match (*kind, len) {
                        (2, 4) => mss = Some(u16::from_be_bytes([o[2], o[3]])),
                        (3, 3) => wscale = Some(o[2].min(14)),
                        _ => {}
                    }
                    o = &o[len..];
                }
            }
        }
        (mss, wscale)
    }
}

/// A frame from a sandbox, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packet<'a> {
    pub(crate) src_mac: [u8; 6],
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// The IP header (IPv6: with its extension headers) and the first 8
    /// bytes after it (what an ICMP error quotes).
    pub(crate) quote: &'a [u8],
    pub(crate) transport: Transport<'a>,
}

/// Reads an Ethernet + IPv4 or IPv6 frame. The IP length field bounds the
/// payload (Ethernet padding is ignored); TSO frames are accepted whole.
pub(crate) fn parse(frame: &[u8]) -> Result<Packet<'_>, Unsupported> {
    if frame.len() < ETH {
        return Err(Unsupported::Malformed);
    }
    let (src, dst, proto, ip, l4_start, end) = match frame[12..14] {
        [0x08, 0x00] => parse_ipv4(&frame[ETH..])?,
        [0x86, 0xdd] => parse_ipv6(&frame[ETH..])?,
        _ => return Err(Unsupported::Malformed),
    };
    let l4 = &ip[l4_start..end];
    let quote_end = match src {
        IpAddr::V4(_) => l4_start + 8,
        IpAddr::V6(_) => (l4_start + 8).min(MAX_QUOTE6),
    };
    let quote = &ip[..quote_end.min(end)];
    let family = Family::of(src);
    let transport = match proto {
        PROTO_TCP => {
            if l4.len() < 20 {
                return Err(Unsupported::Malformed);
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return Err(Unsupported::Malformed);
            }
            Transport::Tcp(TcpSegment {
                src_port: u16::from_be_bytes([l4[0], l4[1]]),
                dst_port: u16::from_be_bytes([l4[2], l4[3]]),
                seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                flags: l4[13],
                window: u16::from_be_bytes([l4[14], l4[15]]),
                options: &l4[20..doff],
                payload: &l4[doff..],
            })
        }
        PROTO_UDP => {
            if l4.len() < 8 {
                return Err(Unsupported::Malformed);
            }
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if len < 8 || len > l4.len() {
                return Err(Unsupported::Malformed);
            }
            Transport::Udp {
                src_port: u16::from_be_bytes([l4[0], l4[1]]),
                dst_port: u16::from_be_bytes([l4[2], l4[3]]),
                payload: &l4[8..len],
            }
        }
        p if p == family.icmp_proto() && l4.len() >= 8 && l4[0] == family.echo_types().0 && l4[1] == 0 => {
            Transport::Echo { id: u16::from_be_bytes([l4[4], l4[5]]), message: l4 }
        }
        _ => return Err(Unsupported::Protocol),
    };
    Ok(Packet { src_mac: frame[6..12].try_into().unwrap_or_default(), src, dst, quote, transport })
}

/// The addresses, transport protocol, IP packet, and where its transport
/// part starts and the packet ends.
type IpParts<'a> = (IpAddr, IpAddr, u8, &'a [u8], usize, usize);

fn parse_ipv4(ip: &[u8]) -> Result<IpParts<'_>, Unsupported> {
    use Unsupported::*;
    if ip.len() < IP {
        return Err(Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IP || ip.len() < ihl {
        return Err(Malformed);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // A TSO frame may leave the total length at 0 and let the length of
    // the frame speak; otherwise the total bounds the packet.
    let end = if total == 0 { ip.len() } else { total };
    if end < ihl || end > ip.len() {
        return Err(Malformed);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return Err(Fragment);
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Ok((src.into(), dst.into(), ip[9], ip, ihl, end))
}

fn parse_ipv6(ip: &[u8]) -> Result<IpParts<'_>, Unsupported> {
    use Unsupported::*;
    if ip.len() < IP6 || ip[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    // As for IPv4, a TSO frame may leave the length at 0.
    let end = if payload == 0 { ip.len() } else { IP6 + payload };
    if end > ip.len() {
        return Err(Malformed);
    }
    // A fragment header right after the fixed header, as senders place it
    // (one after other extension headers stays unsupported).
    if ip[6] == 44 {
        return Err(Fragment);
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).map_err(|_| Malformed)?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).map_err(|_| Malformed)?);
    let (proto, l4_start) = skip_extensions(&ip[..end], ip[6])?;
    Ok((src.into(), dst.into(), proto, ip, l4_start, end))
}

/// Walks the IPv6 extension headers after the fixed header (next header
/// `next`) to the transport header: returns its protocol and offset.
/// Hop-by-hop and destination options are skipped when every option in
/// them may be (padding, or an option type whose two high bits are 00,
/// RFC 8200 §4.2); a routing header with no segment left is skipped
/// (§4.4). Anything else that is an extension header is [`Unsupported::Extension`].
fn skip_extensions(packet: &[u8], mut next: u8) -> Result<(u8, usize), Unsupported> {
    use Unsupported::*;
    let mut at = IP6;
    for _ in 0..=MAX_EXTENSIONS {
        match next {
            // Hop-by-hop (only first), destination options, routing.
            0 | 43 | 60 => {
                if next == 0 && at != IP6 {
                    return Err(Extension);
                }
                let header = packet.get(at..at + 8).ok_or(Malformed)?;
                let len = (usize::from(header[1]) + 1) * 8;
                let body = packet.get(at..at + len).ok_or(Malformed)?;
                let skippable = match next {
                    43 => body[3] == 0,
                    _ => options_skippable(&body[2..]),
                };
                if !skippable {
                    return Err(Extension);
                }
                next = body[0];
                at += len;
            }
            // Fragment, ESP's companion AH, mobility, HIP, shim6, experiments.
            44 | 51 | 135 | 139 | 140 | 253 | 254 => return Err(Extension),
            _ => return Ok((next, at)),
        }
    }
    Err(Extension)
}

/// Whether every option of a hop-by-hop or destination options header may
/// be skipped by a node that does not know it.
fn options_skippable(mut options: &[u8]) -> bool {
    while let [kind, rest @ ..] = options {
        if *kind == 0 {
            options = rest;
            continue;
        }
        let Some(&len) = rest.first() else { return false };
        let len = 2 + usize::from(len);
        if len > options.len() || (*kind != 1 && kind >> 6 != 0) {
            return false;
        }
        options = &options[len..];
    }
    true
}

/// The IPv4 form of `ip` (an IPv6 address that maps one, or `0.0.0.0`).
fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// The IPv6 form of `ip` (an IPv4 address mapped).
fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The addresses of frames toward one sandbox: from the gateway's MAC and
/// the flow's remote end, to the sandbox. Both ends are of one family (the
/// sandbox's decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) gateway_mac: [u8; 6],
    pub(crate) sandbox_mac: [u8; 6],
    pub(crate) remote: SocketAddr,
    pub(crate) sandbox: SocketAddr,
}

impl Head {
    pub(crate) fn family(&self) -> Family {
        Family::of(self.sandbox.ip())
    }

    /// Writes the Ethernet and IP headers for an L4 part of `l4_len` bytes
    /// (IPv4: checksum included, DF set); returns where the L4 part starts.
    fn write_l3(&self, buf: &mut [u8], proto: u8, l4_len: usize) -> usize {
        buf[..6].copy_from_slice(&self.sandbox_mac);
        buf[6..12].copy_from_slice(&self.gateway_mac);
        match self.family() {
            Family::V4 => {
                buf[12..14].copy_from_slice(&[0x08, 0x00]);
                let ip = &mut buf[ETH..ETH + IP];
                ip[0] = 0x45;
                ip[1] = 0;
                ip[2..4].copy_from_slice(&((IP + l4_len) as u16).to_be_bytes());
                ip[4..6].fill(0);
                ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
                ip[8] = 64;
                ip[9] = proto;
                ip[10..12].fill(0);
                ip[12..16].copy_from_slice(&v4(self.remote.ip()).octets());
                ip[16..20].copy_from_slice(&v4(self.sandbox.ip()).octets());
                let check = csum::finish(csum::add(0, ip));
                ip[10..12].copy_from_slice(&check.to_be_bytes());
                ETH + IP
            }
            Family::V6 => {
                buf[12..14].copy_from_slice(&[0x86, 0xdd]);
                let ip = &mut buf[ETH..ETH + IP6];
                ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
                ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                ip[6] = proto;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&v6(self.remote.ip()).octets());
                ip[24..40].copy_from_slice(&v6(self.sandbox.ip()).octets());
                ETH + IP6
            }
        }
    }

    /// The sum of the pseudo-header for an L4 part of `l4_len` bytes.
    fn pseudo(&self, proto: u8, l4_len: usize) -> u64 {
        match self.family() {
            Family::V4 => {
                csum::pseudo_v4(&v4(self.remote.ip()).octets(), &v4(self.sandbox.ip()).octets(), proto, l4_len)
            }
            Family::V6 => {
                csum::pseudo_v6(&v6(self.remote.ip()).octets(), &v6(self.sandbox.ip()).octets(), proto, l4_len)
            }
        }
    }
}

/// What a TCP segment toward a sandbox carries besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpFields {
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    pub(crate) window: u16,
}

/// The largest control frame the translator writes (an IPv6 SYN with MSS
/// and window-scale options).
pub(crate) const CONTROL_MAX: usize = ETH + IP6 + 20 + 8;

/// Writes a TCP segment without payload (a SYN carries MSS and, when
/// `wscale` is given, window-scale options) into `buf` (at least
/// [`CONTROL_MAX`] bytes) with its checksum complete; returns the frame
/// length.
pub(crate) fn write_tcp_control(
    buf: &mut [u8],
    head: &Head,
    fields: TcpFields,
    syn: Option<(u16, Option<u8>)>,
) -> usize {
    let mut options = [0u8; 8];
    let options_len = match syn {
        Some((mss, wscale)) => {
            options[..2].copy_from_slice(&[2, 4]);
            options[2..4].copy_from_slice(&mss.to_be_bytes());
            match wscale {
                Some(shift) => {
                    options[4..8].copy_from_slice(&[1, 3, 3, shift]);
                    8
                }
                None => 4,
            }
        }
        None => 0,
    };
    let l4_len = 20 + options_len;
    let start = head.write_l3(buf, PROTO_TCP, l4_len);
    let tcp = &mut buf[start..start + l4_len];
    write_tcp_header(tcp, head, fields, l4_len);
    tcp[20..].copy_from_slice(&options[..options_len]);
    let check = csum::finish(csum::add(head.pseudo(PROTO_TCP, l4_len), tcp));
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    start + l4_len
}

fn write_tcp_header(tcp: &mut [u8], head: &Head, fields: TcpFields, header_len: usize) {
    tcp[0..2].copy_from_slice(&head.remote.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&head.sandbox.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&fields.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&fields.ack.to_be_bytes());
    tcp[12] = ((header_len / 4) as u8) << 4;
    tcp[13] = fields.flags;
    tcp[14..16].copy_from_slice(&fields.window.to_be_bytes());
    tcp[16..20].fill(0);
}

/// Writes the headers of a TCP data frame whose `payload_len` bytes already
/// sit at its family's [`Family::tcp_payload`]; returns the frame length
/// and its virtio-net header (partial checksum; GSO when the payload
/// exceeds `mss`).
pub(crate) fn write_tcp_data(
    buf: &mut [u8],
    head: &Head,
    fields: TcpFields,
    payload_len: usize,
    mss: u16,
) -> (usize, VirtioNetHdr) {
    let l4_len = 20 + payload_len;
    let start = head.write_l3(buf, PROTO_TCP, l4_len);
    let tcp = &mut buf[start..start + 20];
    write_tcp_header(tcp, head, fields, 20);
    let partial = csum::fold(head.pseudo(PROTO_TCP, l4_len));
    tcp[16..18].copy_from_slice(&partial.to_be_bytes());
    let gso = payload_len > usize::from(mss);
    let gso_type = match head.family() {
        Family::V4 => VirtioNetHdr::GSO_TCPV4,
        Family::V6 => VirtioNetHdr::GSO_TCPV6,
    };
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        gso_type: if gso { gso_type } else { VirtioNetHdr::GSO_NONE },
        hdr_len: if gso { (start + 20) as u16 } else { 0 },
        gso_size: if gso { mss } else { 0 },
        csum_start: start as u16,
        csum_offset: 16,
        num_buffers: 0,
    };
    (start + l4_len, hdr)
}

/// Writes the headers of a UDP datagram whose `payload_len` bytes already
/// sit at its family's [`Family::udp_payload`]; returns the frame length
/// and its virtio-net header (partial checksum).
pub(crate) fn write_udp(buf: &mut [u8], head: &Head, payload_len: usize) -> (usize, VirtioNetHdr) {
    let l4_len = 8 + payload_len;
    let start = head.write_l3(buf, PROTO_UDP, l4_len);
    let udp = &mut buf[start..start + 8];
    udp[0..2].copy_from_slice(&head.remote.port().to_be_bytes());
    udp[2..4].copy_from_slice(&head.sandbox.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    let partial = csum::fold(head.pseudo(PROTO_UDP, l4_len));
    udp[6..8].copy_from_slice(&partial.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        csum_start: start as u16,
        csum_offset: 6,
        ..VirtioNetHdr::default()
    };
    (start + l4_len, hdr)
}

/// Completes the partial UDP checksum `hdr` asks for in `frame` (a datagram
/// the translator wrote), for a frame that leaves without its virtio-net
/// header: an IP fragment's datagram, or a frame among the control frames.
pub(crate) fn complete_checksum(frame: &mut [u8], hdr: VirtioNetHdr) {
    if hdr.flags & VirtioNetHdr::FLAG_NEEDS_CSUM == 0 {
        return;
    }
    let (start, at) = (usize::from(hdr.csum_start), usize::from(hdr.csum_start) + usize::from(hdr.csum_offset));
    if let Some(l4) = frame.get(start..).filter(|l4| l4.len() >= at - start + 2) {
        let sum = csum::udp_field(csum::finish(csum::add(0, l4)));
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Cuts `frame`, a datagram the translator wrote toward a sandbox (IPv4 or
/// IPv6, its transport checksum partial as `hdr` says, or complete),
/// into IP fragments that fit `mtu`, each handed to `push` as (its length,
/// a writer that writes it and returns that length): IPv4 fragments of
/// the header with DF cleared and identification `id`, or IPv6 packets
/// with a fragment header of identification `id`. The checksum is
/// completed first: a sandbox cannot complete one across fragments.
pub(crate) fn fragment(
    frame: &mut [u8],
    hdr: VirtioNetHdr,
    mtu: usize,
    id: u32,
    mut push: impl FnMut(usize, &mut dyn FnMut(&mut [u8]) -> usize),
) {
    complete_checksum(frame, hdr);
    let v6 = frame[12..14] == [0x86, 0xdd];
    let head = if v6 { ETH + IP6 } else { ETH + usize::from(frame[ETH] & 0x0f) * 4 };
    let room = if v6 { mtu.saturating_sub(IP6 + 8) } else { mtu.saturating_sub(head - ETH) };
    let chunk = (room / 8 * 8).max(8);
    let (header, payload) = frame.split_at(head);
    let mut offset = 0;
    for piece in payload.chunks(chunk) {
        let more = offset + piece.len() < payload.len();
        let extra = if v6 { 8 } else { 0 };
        push(head + extra + piece.len(), &mut |b: &mut [u8]| {
            b[..head].copy_from_slice(header);
            if v6 {
                b[ETH + 4..ETH + 6].copy_from_slice(&((8 + piece.len()) as u16).to_be_bytes());
                let next = header[ETH + 6];
                b[ETH + 6] = 44;
                let field = ((offset / 8) as u16) << 3 | u16::from(more);
                b[head..head + 2].copy_from_slice(&[next, 0]);
                b[head + 2..head + 4].copy_from_slice(&field.to_be_bytes());
                b[head + 4..head + 8].copy_from_slice(&id.to_be_bytes());
            } else {
                let ip = &mut b[ETH..head];
                ip[2..4].copy_from_slice(&((head - ETH + piece.len()) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&(id as u16).to_be_bytes());
                let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
                ip[6..8].copy_from_slice(&field.to_be_bytes());
                ip[10..12].fill(0);
                let check = csum::finish(csum::add(0, ip));
                ip[10..12].copy_from_slice(&check.to_be_bytes());
            }
            b[head + extra..head + extra + piece.len()].copy_from_slice(piece);
            head + extra + piece.len()
        });
        offset += piece.len();
    }
}

/// Finishes an echo reply whose message (`len` bytes, as a ping socket
/// returns it) sits at its family's [`Family::icmp_message`]: gives it the
/// sandbox's echo `id` back and a fresh checksum (ICMPv6's covers the
/// pseudo-header). Returns the frame length, or `None` when the message is
/// not an echo reply.
pub(crate) fn write_echo_reply(buf: &mut [u8], head: &Head, id: u16, len: usize) -> Option<usize> {
    let family = head.family();
    let at = family.icmp_message();
    let message = buf.get_mut(at..at + len)?;
    if len < 8 || message[0] != family.echo_types().1 || message[1] != 0 {
        return None;
    }
    message[4..6].copy_from_slice(&id.to_be_bytes());
    message[2..4].fill(0);
    let start = head.write_l3(buf, family.icmp_proto(), len);
    finish_icmp(&mut buf[start..start + len], head);
    Some(start + len)
}

/// Fills in the checksum of the ICMP (ICMPv6) message `icmp` toward the sandbox.
fn finish_icmp(icmp: &mut [u8], head: &Head) {
    let family = head.family();
    let pseudo = match family {
        Family::V4 => 0,
        Family::V6 => head.pseudo(family.icmp_proto(), icmp.len()),
    };
    icmp[2..4].fill(0);
    let check = csum::finish(csum::add(pseudo, icmp));
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
}

/// The ICMP errors the translator sends a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpError {
    /// No route to the network (IPv4 net unreachable, IPv6 no route).
    Net,
    /// The host did not answer (IPv4 host unreachable, IPv6 address
    /// unreachable).
    Host,
    /// Nothing listens on the UDP port (port unreachable).
    Port,
    /// The path takes packets of at most this many bytes (IPv6 packet too
    /// big; IPv4 fragmentation needed).
    TooBig(u32),
}

impl IcmpError {
    /// The ICMP type, code and the 4 bytes after the checksum.
    fn header(self, family: Family) -> (u8, u8, [u8; 4]) {
        match (family, self) {
            (Family::V4, IcmpError::Net) => (3, 0, [0; 4]),
            (Family::V4, IcmpError::Host) => (3, 1, [0; 4]),
            (Family::V4, IcmpError::Port) => (3, 3, [0; 4]),
            (Family::V4, IcmpError::TooBig(mtu)) => {
                let [_, _, hi, lo] = mtu.min(0xffff).to_be_bytes();
                (3, 4, [0, 0, hi, lo])
            }
            (Family::V6, IcmpError::Net) => (1, 0, [0; 4]),
            (Family::V6, IcmpError::Host) => (1, 3, [0; 4]),
            (Family::V6, IcmpError::Port) => (1, 4, [0; 4]),
            (Family::V6, IcmpError::TooBig(mtu)) => (2, 0, mtu.to_be_bytes()),
        }
    }
}

/// The length of the ICMP error frame toward `head`'s sandbox quoting
/// `quote` (its IP header and 8 bytes more).
pub(crate) fn icmp_error_len(head: &Head, quote: &[u8]) -> usize {
    head.family().icmp_message() + 8 + quote.len()
}

/// Writes an ICMP (ICMPv6) error from `head.remote`'s address about the
/// packet whose first bytes are `quote`; returns the frame length.
pub(crate) fn write_icmp_error(buf: &mut [u8], head: &Head, error: IcmpError, quote: &[u8]) -> usize {
    let family = head.family();
    let len = 8 + quote.len();
    let start = head.write_l3(buf, family.icmp_proto(), len);
    let icmp = &mut buf[start..start + len];
    let (kind, code, rest) = error.header(family);
    icmp[..4].copy_from_slice(&[kind, code, 0, 0]);
    icmp[4..8].copy_from_slice(&rest);
    icmp[8..].copy_from_slice(quote);
    finish_icmp(icmp, head);
    start + len
}

/// The IP header plus 8 bytes of transport header of a packet the sandbox
/// sent (what an ICMP error quotes), rebuilt from the flow for errors that
/// arrive after the packet itself is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quote {
    bytes: [u8; IP6 + 8],
    len: usize,
}

impl Quote {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Rebuilds the quote of a packet from `sandbox` to `remote`.
///
/// The sandbox's kernel matches the quote to its socket: TCP by addresses,
/// ports and a sequence number within what it has in flight (Linux drops
/// the error otherwise), so a TCP quote carries `seq`; ICMP echo by the
/// echo id, which an echo request carries at offset 4 (`sandbox`'s port is
/// the id). `seq` is ignored for UDP and ICMP.
pub(crate) fn rebuild_quote(sandbox: SocketAddr, remote: SocketAddr, proto: crate::nat::Proto, seq: u32) -> Quote {
    let family = Family::of(sandbox.ip());
    let number = match proto {
        crate::nat::Proto::Tcp => PROTO_TCP,
        crate::nat::Proto::Udp => PROTO_UDP,
        crate::nat::Proto::Icmp => family.icmp_proto(),
    };
    let mut q = Quote { bytes: [0; IP6 + 8], len: family.ip_len() + 8 };
    let ip_len = family.ip_len();
    match family {
        Family::V4 => {
            let ip = &mut q.bytes[..IP];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&28u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = number;
            ip[12..16].copy_from_slice(&v4(sandbox.ip()).octets());
            ip[16..20].copy_from_slice(&v4(remote.ip()).octets());
            let check = csum::finish(csum::add(0, ip));
            ip[10..12].copy_from_slice(&check.to_be_bytes());
        }
        Family::V6 => {
            let ip = &mut q.bytes[..IP6];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&8u16.to_be_bytes());
            ip[6] = number;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&v6(sandbox.ip()).octets());
            ip[24..40].copy_from_slice(&v6(remote.ip()).octets());
        }
    }
    let l4 = &mut q.bytes[ip_len..ip_len + 8];
    match proto {
        crate::nat::Proto::Icmp => {
            l4[0] = family.echo_types().0;
            l4[4..6].copy_from_slice(&sandbox.port().to_be_bytes());
        }
        _ => {
            l4[0..2].copy_from_slice(&sandbox.port().to_be_bytes());
            l4[2..4].copy_from_slice(&remote.port().to_be_bytes());
            if proto == crate::nat::Proto::Tcp {
                l4[4..8].copy_from_slice(&seq.to_be_bytes());
            }
        }
    }
    q
}
