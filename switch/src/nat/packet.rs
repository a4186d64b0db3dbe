//! Reading the IPv4 frames sandboxes send through their gateway, and
//! writing the frames the translator sends them back.
//!
//! Frames toward sandboxes are written in place into caller buffers: data
//! frames leave room for their headers at fixed offsets ([`TCP_PAYLOAD`],
//! [`UDP_PAYLOAD`], [`ICMP_MESSAGE`]) so a host socket can be read straight
//! into the frame. Data frames carry a partial TCP/UDP checksum and a
//! virtio-net header asking for its completion (and, for TCP runs longer
//! than the sandbox's MSS, for segmentation): the sandbox's kernel or the
//! switch's offload code finishes them, as it does for frames between
//! sandboxes.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::offload::csum;
use crate::sys::tap::VirtioNetHdr;

/// Ethernet header length.
pub(crate) const ETH: usize = 14;
/// IPv4 header length of the frames the translator writes (no options).
pub(crate) const IP: usize = 20;
/// Where a TCP payload starts in a frame the translator writes (no TCP options).
pub const TCP_PAYLOAD: usize = ETH + IP + 20;
/// Where a UDP payload starts in a frame the translator writes.
pub const UDP_PAYLOAD: usize = ETH + IP + 8;
/// Where an ICMP message starts in a frame the translator writes.
pub const ICMP_MESSAGE: usize = ETH + IP;
/// The largest TCP payload of one frame (the IPv4 total length is 16 bits).
pub const MAX_TCP_PAYLOAD: usize = 65_535 - IP - 20;
/// The largest UDP payload of one datagram.
pub const MAX_UDP_PAYLOAD: usize = 65_535 - IP - 8;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// TCP flags.
pub(crate) mod flags {
    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const SYN: u8 = 0x02;
    pub(crate) const RST: u8 = 0x04;
    pub(crate) const PSH: u8 = 0x08;
    pub(crate) const ACK: u8 = 0x10;
}

/// Why a frame routed through the gateway cannot be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// Not IPv4, or cut short, or its headers are inconsistent.
    Malformed,
    /// An IPv4 fragment (the translator does not reassemble).
    Fragment,
    /// A protocol the translator does not carry (anything but TCP, UDP and
    /// ICMP echo requests).
    Protocol,
}

/// The transport part of a frame from a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp { src_port: u16, dst_port: u16, payload: &'a [u8] },
    /// An echo request: the whole ICMP message.
    Echo { id: u16, message: &'a [u8] },
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
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    /// The IPv4 header and the first 8 bytes after it (what an ICMP error
    /// quotes).
    pub(crate) quote: &'a [u8],
    pub(crate) transport: Transport<'a>,
}

/// Reads an Ethernet + IPv4 frame. The IPv4 total length bounds the
/// payload (Ethernet padding is ignored); TSO frames are accepted whole.
pub(crate) fn parse(frame: &[u8]) -> Result<Packet<'_>, Unsupported> {
    use Unsupported::*;
    if frame.len() < ETH + IP || frame[12..14] != [0x08, 0x00] {
        return Err(Malformed);
    }
    let ip = &frame[ETH..];
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
    let l4 = &ip[ihl..end];
    let quote = &ip[..(ihl + 8).min(end)];
    let transport = match ip[9] {
        PROTO_TCP => {
            if l4.len() < 20 {
                return Err(Malformed);
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return Err(Malformed);
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
                return Err(Malformed);
            }
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if len < 8 || len > l4.len() {
                return Err(Malformed);
            }
            Transport::Udp {
                src_port: u16::from_be_bytes([l4[0], l4[1]]),
                dst_port: u16::from_be_bytes([l4[2], l4[3]]),
                payload: &l4[8..len],
            }
        }
        PROTO_ICMP if l4.len() >= 8 && l4[0] == 8 && l4[1] == 0 => {
            Transport::Echo { id: u16::from_be_bytes([l4[4], l4[5]]), message: l4 }
        }
        _ => return Err(Protocol),
    };
    Ok(Packet { src_mac: frame[6..12].try_into().unwrap_or_default(), src, dst, quote, transport })
}

/// The addresses of frames toward one sandbox: from the gateway's MAC and
/// the flow's remote end, to the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) gateway_mac: [u8; 6],
    pub(crate) sandbox_mac: [u8; 6],
    pub(crate) remote: SocketAddrV4,
    pub(crate) sandbox: SocketAddrV4,
}

impl Head {
    /// Writes the Ethernet and IPv4 headers for an L4 part of `l4_len`
    /// bytes (IP checksum included, DF set).
    fn write_l3(&self, buf: &mut [u8], proto: u8, l4_len: usize) {
        buf[..6].copy_from_slice(&self.sandbox_mac);
        buf[6..12].copy_from_slice(&self.gateway_mac);
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
        ip[12..16].copy_from_slice(&self.remote.ip().octets());
        ip[16..20].copy_from_slice(&self.sandbox.ip().octets());
        let check = csum::finish(csum::add(0, ip));
        ip[10..12].copy_from_slice(&check.to_be_bytes());
    }

    fn pseudo(&self, proto: u8, l4_len: usize) -> u64 {
        csum::pseudo_v4(&self.remote.ip().octets(), &self.sandbox.ip().octets(), proto, l4_len)
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

/// Writes a TCP segment without payload (a SYN carries MSS and, when
/// `wscale` is given, window-scale options) into `buf` with its checksum
/// complete; returns the frame length.
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
    head.write_l3(buf, PROTO_TCP, l4_len);
    let tcp = &mut buf[ETH + IP..ETH + IP + l4_len];
    write_tcp_header(tcp, head, fields, l4_len);
    tcp[20..].copy_from_slice(&options[..options_len]);
    let check = csum::finish(csum::add(head.pseudo(PROTO_TCP, l4_len), tcp));
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    ETH + IP + l4_len
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
/// sit at [`TCP_PAYLOAD`]; returns the frame length and its virtio-net
/// header (partial checksum; GSO when the payload exceeds `mss`).
pub(crate) fn write_tcp_data(
    buf: &mut [u8],
    head: &Head,
    fields: TcpFields,
    payload_len: usize,
    mss: u16,
) -> (usize, VirtioNetHdr) {
    let l4_len = 20 + payload_len;
    head.write_l3(buf, PROTO_TCP, l4_len);
    let tcp = &mut buf[ETH + IP..ETH + IP + 20];
    write_tcp_header(tcp, head, fields, 20);
    let partial = csum::fold(head.pseudo(PROTO_TCP, l4_len));
    tcp[16..18].copy_from_slice(&partial.to_be_bytes());
    let gso = payload_len > usize::from(mss);
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        gso_type: if gso { VirtioNetHdr::GSO_TCPV4 } else { VirtioNetHdr::GSO_NONE },
        hdr_len: if gso { TCP_PAYLOAD as u16 } else { 0 },
        gso_size: if gso { mss } else { 0 },
        csum_start: (ETH + IP) as u16,
        csum_offset: 16,
        num_buffers: 0,
    };
    (ETH + IP + l4_len, hdr)
}

/// Writes the headers of a UDP datagram whose `payload_len` bytes already
/// sit at [`UDP_PAYLOAD`]; returns the frame length and its virtio-net
/// header (partial checksum).
pub(crate) fn write_udp(buf: &mut [u8], head: &Head, payload_len: usize) -> (usize, VirtioNetHdr) {
    let l4_len = 8 + payload_len;
    head.write_l3(buf, PROTO_UDP, l4_len);
    let udp = &mut buf[ETH + IP..ETH + IP + 8];
    udp[0..2].copy_from_slice(&head.remote.port().to_be_bytes());
    udp[2..4].copy_from_slice(&head.sandbox.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    let partial = csum::fold(head.pseudo(PROTO_UDP, l4_len));
    udp[6..8].copy_from_slice(&partial.to_be_bytes());
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        csum_start: (ETH + IP) as u16,
        csum_offset: 6,
        ..VirtioNetHdr::default()
    };
    (ETH + IP + l4_len, hdr)
}

/// Finishes an ICMP echo reply whose message (`len` bytes, as a ping socket
/// returns it) sits at [`ICMP_MESSAGE`]: gives it the sandbox's echo `id`
/// back and a fresh checksum. Returns the frame length, or `None` when the
/// message is not an echo reply.
pub(crate) fn write_echo_reply(buf: &mut [u8], head: &Head, id: u16, len: usize) -> Option<usize> {
    let message = buf.get_mut(ICMP_MESSAGE..ICMP_MESSAGE + len)?;
    if len < 8 || message[0] != 0 || message[1] != 0 {
        return None;
    }
    message[4..6].copy_from_slice(&id.to_be_bytes());
    message[2..4].fill(0);
    let check = csum::finish(csum::add(0, message));
    message[2..4].copy_from_slice(&check.to_be_bytes());
    head.write_l3(buf, PROTO_ICMP, len);
    Some(ETH + IP + len)
}

/// ICMP destination-unreachable codes the translator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    Net = 0,
    Host = 1,
    Port = 3,
}

/// Writes an ICMP destination unreachable from `head.remote`'s address
/// about the packet whose first bytes are `quote` (its IPv4 header and 8
/// bytes more); returns the frame length.
pub(crate) fn write_unreachable(buf: &mut [u8], head: &Head, code: Unreachable, quote: &[u8]) -> usize {
    let len = 8 + quote.len();
    head.write_l3(buf, PROTO_ICMP, len);
    let icmp = &mut buf[ICMP_MESSAGE..ICMP_MESSAGE + len];
    icmp[..8].copy_from_slice(&[3, code as u8, 0, 0, 0, 0, 0, 0]);
    icmp[8..].copy_from_slice(quote);
    let check = csum::finish(csum::add(0, icmp));
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    ETH + IP + len
}

/// The IPv4 header plus 8 bytes of transport header of a packet the
/// sandbox sent (what an ICMP error quotes), rebuilt from the flow for
/// errors that arrive after the packet itself is gone.
pub(crate) fn rebuild_quote(sandbox: SocketAddrV4, remote: SocketAddrV4, proto: crate::nat::Proto) -> [u8; 28] {
    let mut q = [0u8; 28];
    q[0] = 0x45;
    q[2..4].copy_from_slice(&28u16.to_be_bytes());
    q[8] = 64;
    q[9] = match proto {
        crate::nat::Proto::Tcp => PROTO_TCP,
        crate::nat::Proto::Udp => PROTO_UDP,
        crate::nat::Proto::Icmp => PROTO_ICMP,
    };
    q[12..16].copy_from_slice(&sandbox.ip().octets());
    q[16..20].copy_from_slice(&remote.ip().octets());
    let check = csum::finish(csum::add(0, &q[..20]));
    q[10..12].copy_from_slice(&check.to_be_bytes());
    q[20..22].copy_from_slice(&sandbox.port().to_be_bytes());
    q[22..24].copy_from_slice(&remote.port().to_be_bytes());
    q
}
