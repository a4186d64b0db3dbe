//! Frames as sandboxes and peers send them, built with etherparse (an
//! implementation independent of the switch's own parsers), and the
//! addresses the tests use.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{Icmpv6Type, PacketBuilder, TcpOptionElement};

use crate::gateway::{gateway_mac, link_local};
use crate::wire::{MacAddr, VirtioNetHdr};

/// The broadcast MAC.
pub(crate) const BROADCAST: MacAddr = MacAddr([0xff; 6]);

/// The MAC of test station `n`: locally administered, unicast.
pub(crate) const fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0, 0, 0, n])
}

/// Address `n` of the test subnet 10.0.0.0/24 (the gateway is `ip(1)`).
pub(crate) const fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// The gateway's MAC on the test subnet.
pub(crate) fn gw_mac() -> MacAddr {
    gateway_mac(ip(1))
}

/// Address `n` of the IPv6 test subnet fd00::/64 (the gateway is `ip6(1)`).
pub(crate) const fn ip6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n as u16)
}

/// The EUI-64 link-local address of test station `n` (of [`mac`]`(n)`).
pub(crate) fn ll(n: u8) -> Ipv6Addr {
    link_local(mac(n))
}

/// The MAC an IPv6 multicast group `group` is sent to (RFC 2464 §7).
pub(crate) fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The solicited-node multicast group of `address`.
pub(crate) fn solicited_node(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// An ICMPv6 message of type `kind` with `payload` after its 8-byte
/// header, with a valid checksum; the Ethernet destination is `dst.0`
/// (the group's MAC for a multicast `dst.1`).
pub(crate) fn icmpv6(
    src: (MacAddr, Ipv6Addr),
    dst: (MacAddr, Ipv6Addr),
    hop_limit: u8,
    kind: Icmpv6Type,
    payload: &[u8],
) -> Vec<u8> {
    let builder =
        PacketBuilder::ethernet2(src.0.0, dst.0.0).ipv6(src.1.octets(), dst.1.octets(), hop_limit).icmpv6(kind);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).expect("an ICMPv6 message builds");
    frame
}

/// A neighbour solicitation from station (`src`, `sender`) for `target`,
/// to `target`'s solicited-node group, with a source link-layer option.
pub(crate) fn neighbor_solicit(src: MacAddr, sender: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut payload = target.octets().to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&src.0);
    let group = solicited_node(target);
    icmpv6((src, sender), (multicast_mac(group), group), 255, Icmpv6Type::NeighborSolicitation, &payload)
}

/// A duplicate address detection probe from station `src`: a neighbour
/// solicitation for `target` from the unspecified address to the target's
/// solicited-node group, without a link-layer option (RFC 4862 §5.4.2).
pub(crate) fn dad_probe(src: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let payload = target.octets();
    icmpv6((src, Ipv6Addr::UNSPECIFIED), (multicast_mac(group), group), 255, Icmpv6Type::NeighborSolicitation, &payload)
}

/// A router solicitation from station (`src`, `sender`) to all-routers,
/// with a source link-layer option.
pub(crate) fn router_solicit(src: MacAddr, sender: Ipv6Addr) -> Vec<u8> {
    let mut payload = vec![1, 1];
    payload.extend_from_slice(&src.0);
    let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    icmpv6((src, sender), (multicast_mac(all_routers), all_routers), 255, Icmpv6Type::RouterSolicitation, &payload)
}

/// An ICMPv6 echo request.
pub(crate) fn ping6(src: (MacAddr, Ipv6Addr), dst: (MacAddr, Ipv6Addr), id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src.0.0, dst.0.0)
        .ipv6(src.1.octets(), dst.1.octets(), 64)
        .icmpv6_echo_request(id, seq);
    let mut frame = Vec::with_capacity(builder.size(data.len()));
    builder.write(&mut frame, data).expect("an ICMPv6 echo request builds");
    frame
}

/// A UDP/IPv6 datagram with a valid checksum.
pub(crate) fn udp6(src: (MacAddr, Ipv6Addr, u16), dst: (MacAddr, Ipv6Addr, u16), payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src.0.0, dst.0.0).ipv6(src.1.octets(), dst.1.octets(), 64).udp(src.2, dst.2);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).expect("a UDP/IPv6 datagram builds");
    frame
}

/// An ICMPv6 message: from, to, hop limit, its type, and what follows its
/// 8-byte header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Icmp6 {
    /// The Ethernet source.
    pub(crate) src_mac: MacAddr,
    /// The Ethernet destination.
    pub(crate) dst_mac: MacAddr,
    /// The IPv6 source.
    pub(crate) src: Ipv6Addr,
    /// The IPv6 destination.
    pub(crate) dst: Ipv6Addr,
    /// The IPv6 hop limit.
    pub(crate) hop_limit: u8,
    /// Type, code and their fields.
    pub(crate) kind: Icmpv6Type,
    /// What follows the ICMPv6 header.
    pub(crate) payload: Vec<u8>,
}

/// Parses an ICMPv6 frame (no extension headers), checking its checksum.
pub(crate) fn parse_icmp6(frame: &[u8]) -> Option<Icmp6> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sliced.link else { return None };
    let (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Icmpv6(icmp))) =
        (&sliced.net, &sliced.transport)
    else {
        return None;
    };
    let header = ip.header();
    let (src, dst) = (header.source_addr(), header.destination_addr());
    assert!(icmp.is_checksum_valid(src.octets(), dst.octets()), "ICMPv6 checksum");
    Some(Icmp6 {
        src_mac: MacAddr(eth.source()),
        dst_mac: MacAddr(eth.destination()),
        src,
        dst,
        hop_limit: header.hop_limit(),
        kind: icmp.icmp_type(),
        payload: icmp.payload().to_vec(),
    })
}

/// A UDP/IPv6 datagram: from and to (MAC, address, port), and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Udp6 {
    /// The source station and port.
    pub(crate) src: (MacAddr, Ipv6Addr, u16),
    /// The destination station and port.
    pub(crate) dst: (MacAddr, Ipv6Addr, u16),
    /// The UDP payload.
    pub(crate) payload: Vec<u8>,
}

/// Parses a UDP/IPv6 frame, checking its UDP checksum.
pub(crate) fn parse_udp6(frame: &[u8]) -> Option<Udp6> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sliced.link else { return None };
    let (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Udp(udp))) =
        (&sliced.net, &sliced.transport)
    else {
        return None;
    };
    let header = ip.header().to_header();
    let expected = udp.to_header().calc_checksum_ipv6(&header, udp.payload()).expect("a UDP length that fits");
    assert_eq!(udp.checksum(), expected, "UDP checksum");
    Some(Udp6 {
        src: (MacAddr(eth.source()), header.source_addr(), udp.source_port()),
        dst: (MacAddr(eth.destination()), header.destination_addr(), udp.destination_port()),
        payload: udp.payload().to_vec(),
    })
}

/// The VTEP address of test host `n` (192.0.2.n:4789).
pub(crate) fn vtep(n: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, n), 4789))
}

/// The VTEP address of test host `n` on an IPv6 underlay
/// ([2001:db8::n]:4789).
pub(crate) fn vtep6(n: u8) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)), 4789))
}

/// An Ethernet frame with any EtherType and payload.
pub(crate) fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst.0);
    frame.extend_from_slice(&src.0);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A minimal frame from `src` to `dst` (an unknown EtherType, 46 bytes
/// of payload marked with `tag`), for bridging tests.
pub(crate) fn frame(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    ethernet(dst, src, 0x88b5, &[tag; 46])
}

/// An ARP request from (`src`, `sender`) for `target`, broadcast.
pub(crate) fn arp_request(src: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&src.0);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet(BROADCAST, src, 0x0806, &arp)
}

/// An ICMP echo request.
pub(crate) fn ping(src: (MacAddr, Ipv4Addr), dst: (MacAddr, Ipv4Addr), id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src.0.0, dst.0.0)
        .ipv4(src.1.octets(), dst.1.octets(), 64)
        .icmpv4_echo_request(id, seq);
    let mut frame = Vec::with_capacity(builder.size(data.len()));
    builder.write(&mut frame, data).expect("an ICMP echo request builds");
    frame
}

/// A TCP segment with valid checksums. `syn_mss`: a SYN carrying this MSS
/// option; otherwise an ACK (with PSH if `psh`).
#[derive(Debug, Clone)]
pub(crate) struct Tcp {
    /// Source station.
    pub(crate) src: (MacAddr, Ipv4Addr, u16),
    /// Destination station.
    pub(crate) dst: (MacAddr, Ipv4Addr, u16),
    /// Sequence number.
    pub(crate) seq: u32,
    /// A SYN with this MSS option.
    pub(crate) syn_mss: Option<u16>,
    /// Set PSH.
    pub(crate) psh: bool,
}

impl Tcp {
    /// A segment from station `a` port 40000 to station `b` port 5201.
    pub(crate) fn between(a: u8, b: u8) -> Tcp {
        Tcp { src: (mac(a), ip(a), 40_000), dst: (mac(b), ip(b), 5201), seq: 1_000, syn_mss: None, psh: false }
    }

    /// The frame carrying `payload`.
    pub(crate) fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let ip =
            PacketBuilder::ethernet2(self.src.0.0, self.dst.0.0).ipv4(self.src.1.octets(), self.dst.1.octets(), 64);
        let tcp = ip.tcp(self.src.2, self.dst.2, self.seq, 64_000);
        let tcp = match self.syn_mss {
            Some(mss) => tcp.syn().options(&[TcpOptionElement::MaximumSegmentSize(mss)]).expect("the option fits"),
            None if self.psh => tcp.ack(7).psh(),
            None => tcp.ack(7),
        };
        let mut frame = Vec::with_capacity(tcp.size(payload.len()));
        tcp.write(&mut frame, payload).expect("a TCP segment builds");
        frame
    }
}

/// A UDP datagram with a valid checksum.
pub(crate) fn udp(src: (MacAddr, Ipv4Addr, u16), dst: (MacAddr, Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src.0.0, dst.0.0).ipv4(src.1.octets(), dst.1.octets(), 64).udp(src.2, dst.2);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).expect("a UDP datagram builds");
    frame
}

/// `frame` in a plain VXLAN datagram for `vni`.
pub(crate) fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0x08, 0, 0, 0];
    datagram.extend_from_slice(&(vni << 8).to_be_bytes());
    datagram.extend_from_slice(frame);
    datagram
}

/// A deterministic payload of `len` bytes.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The MSS option of a TCP segment, if it has one.
pub(crate) fn tcp_mss(frame: &[u8]) -> Option<u16> {
    let headers = etherparse::PacketHeaders::from_ethernet_slice(frame).ok()?;
    let Some(etherparse::TransportHeader::Tcp(tcp)) = headers.transport else { return None };
    tcp.options_iterator().find_map(|option| match option {
        Ok(TcpOptionElement::MaximumSegmentSize(mss)) => Some(mss),
        _ => None,
    })
}

/// Whether a TCP/IPv4 frame's IP and TCP checksums verify.
pub(crate) fn tcp4_checksums_ok(frame: &[u8]) -> bool {
    let Ok(sliced) = etherparse::SlicedPacket::from_ethernet(frame) else { return false };
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Tcp(tcp))) =
        (&sliced.net, &sliced.transport)
    else {
        return false;
    };
    let header = ip.header().to_header();
    let ip_ok = header.calc_header_checksum() == header.header_checksum;
    let tcp_ok = tcp.to_header().calc_checksum_ipv4(&header, tcp.payload()).is_ok_and(|c| c == tcp.checksum());
    ip_ok && tcp_ok
}

/// An ICMPv4 message: from, to, its type, and the bytes it quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Icmp {
    /// The Ethernet source.
    pub(crate) src_mac: MacAddr,
    /// The Ethernet destination.
    pub(crate) dst_mac: MacAddr,
    /// The IP source.
    pub(crate) src: Ipv4Addr,
    /// The IP destination.
    pub(crate) dst: Ipv4Addr,
    /// Type, code and their fields.
    pub(crate) kind: etherparse::Icmpv4Type,
    /// What follows the ICMP header.
    pub(crate) payload: Vec<u8>,
}

/// Parses an ICMPv4 frame, checking its IP and ICMP checksums.
pub(crate) fn icmp(frame: &[u8]) -> Option<Icmp> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sliced.link else { return None };
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Icmpv4(icmp))) =
        (&sliced.net, &sliced.transport)
    else {
        return None;
    };
    let header = ip.header().to_header();
    assert_eq!(header.calc_header_checksum(), header.header_checksum, "IPv4 header checksum");
    let icmp_header = icmp.header();
    assert_eq!(icmp_header.checksum, icmp_header.icmp_type.calc_checksum(icmp.payload()), "ICMP checksum");
    Some(Icmp {
        src_mac: MacAddr(eth.source()),
        dst_mac: MacAddr(eth.destination()),
        src: ip.header().source_addr(),
        dst: ip.header().destination_addr(),
        kind: icmp_header.icmp_type,
        payload: icmp.payload().to_vec(),
    })
}

/// A UDP/IPv4 datagram: from and to (MAC, address, port), and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Udp {
    /// The source station and port.
    pub(crate) src: (MacAddr, Ipv4Addr, u16),
    /// The destination station and port.
    pub(crate) dst: (MacAddr, Ipv4Addr, u16),
    /// The UDP payload.
    pub(crate) payload: Vec<u8>,
}

/// Parses a UDP/IPv4 frame, checking its IP and UDP checksums.
pub(crate) fn parse_udp(frame: &[u8]) -> Option<Udp> {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sliced.link else { return None };
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(udp))) =
        (&sliced.net, &sliced.transport)
    else {
        return None;
    };
    let header = ip.header().to_header();
    assert_eq!(header.calc_header_checksum(), header.header_checksum, "IPv4 header checksum");
    let expected = udp.to_header().calc_checksum_ipv4(&header, udp.payload()).expect("a UDP length that fits");
    assert_eq!(udp.checksum(), expected, "UDP checksum");
    Some(Udp {
        src: (MacAddr(eth.source()), header.source.into(), udp.source_port()),
        dst: (MacAddr(eth.destination()), header.destination.into(), udp.destination_port()),
        payload: udp.payload().to_vec(),
    })
}

/// The virtio-net header of a TSO frame of [`Tcp::between`] segments of
/// `mss` bytes (Ethernet, IPv4 and TCP headers without options: 54 bytes),
/// with its checksum left to the receiver as a TCP sender offloading it
/// writes it.
pub(crate) fn tso_hdr(mss: u16) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    }
}

/// A TCP/IPv4 frame as a sender using checksum offload leaves it: the TCP
/// checksum field holds the folded pseudo-header sum (virtio-net
/// `NEEDS_CSUM`), computed here independently of the switch's code.
pub(crate) fn with_partial_tcp4_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let tcp_len = frame.len() - 14 - ihl;
    let mut sum: u32 = 6 + tcp_len as u32;
    for pair in frame[26..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let at = 14 + ihl + 16;
    frame[at..at + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    frame
}
