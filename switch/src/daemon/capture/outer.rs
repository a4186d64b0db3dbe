//! Underlay datagrams as captured packets: the switch sees only a
//! datagram's UDP payload (VXLAN, or the encrypted overlay's framing) and
//! its addresses, so a capture of the underlay puts an IPv4 (or IPv6) and
//! UDP header in front, with real addresses, ports, lengths and checksums,
//! and writes it as raw IP (pcap link type 101): tshark then decodes VXLAN
//! on port 4789 as on a real interface.

use std::net::{IpAddr, SocketAddr};

use crate::offload::csum;

/// Length of the IPv4 header written.
const IPV4_HEADER: usize = 20;
/// Length of the IPv6 header written.
const IPV6_HEADER: usize = 40;
/// Length of the UDP header.
const UDP_HEADER: usize = 8;
/// IP protocol number of UDP.
const UDP: u8 = 17;
/// TTL / hop limit written.
const TTL: u8 = 64;

/// Writes the IP packet that carried `payload` from `src` to `dst` into
/// `out` (cleared first). IPv4 when both addresses are IPv4, IPv6
/// otherwise (an IPv4 address then as IPv4-mapped). Returns `false`, and
/// writes nothing, for a payload too long for one UDP datagram.
pub(crate) fn ip_udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let udp_len = UDP_HEADER + payload.len();
    let Ok(udp_len16) = u16::try_from(udp_len) else { return false };
    let mut udp = [0u8; UDP_HEADER];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len16.to_be_bytes());
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let Ok(total) = u16::try_from(IPV4_HEADER + udp_len) else { return false };
            let mut ip = [0u8; IPV4_HEADER];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            // Don't fragment, as the underlay sockets send.
            ip[6] = 0x40;
            ip[8] = TTL;
            ip[9] = UDP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let check = csum::finish(csum::add(0, &ip));
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            let sum = csum::add(csum::add(csum::pseudo_v4(&s.octets(), &d.octets(), UDP, udp_len), &udp), payload);
            udp[6..8].copy_from_slice(&udp_checksum(sum).to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (s, d) => {
            let (s, d) = (v6(s).octets(), v6(d).octets());
            let mut ip = [0u8; IPV6_HEADER];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&udp_len16.to_be_bytes());
            ip[6] = UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s);
            ip[24..40].copy_from_slice(&d);
            let sum = csum::add(csum::add(csum::pseudo_v6(&s, &d, UDP, udp_len), &udp), payload);
            udp[6..8].copy_from_slice(&udp_checksum(sum).to_be_bytes());
            out.extend_from_slice(&ip);
        }
    }
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
    true
}

/// A UDP checksum field: a computed zero is sent as all ones (RFC 768).
fn udp_checksum(sum: u64) -> u16 {
    csum::udp_field(csum::finish(sum))
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    #[test]
    fn ipv4_datagrams_get_a_valid_ip_and_udp_header() {
        let src: SocketAddr = "10.9.0.1:40000".parse().unwrap();
        let dst: SocketAddr = "10.9.0.2:4789".parse().unwrap();
        let payload: Vec<u8> = (0..101).collect();
        let mut out = Vec::new();
        assert!(ip_udp_packet(src, dst, &payload, &mut out));
        assert_eq!(out.len(), 20 + 8 + 101);
        let p = SlicedPacket::from_ip(&out).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4") };
        assert_eq!(
            (ip.header().source_addr(), ip.header().destination_addr()),
            ("10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap())
        );
        assert_eq!(ip.header().to_header().calc_header_checksum(), ip.header().header_checksum());
        let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("not UDP") };
        assert_eq!((udp.source_port(), udp.destination_port(), udp.payload()), (40000, 4789, &payload[..]));
        let expected = udp.to_header().calc_checksum_ipv4(&ip.header().to_header(), &payload).unwrap();
        assert_eq!(udp.checksum(), expected);
    }

    #[test]
    fn ipv6_datagrams_get_a_valid_ip_and_udp_header() {
        let src: SocketAddr = "[fd00::1]:40000".parse().unwrap();
        let dst: SocketAddr = "[fd00::2]:4789".parse().unwrap();
        let mut out = Vec::new();
        assert!(ip_udp_packet(src, dst, b"vxlan!", &mut out));
        let p = SlicedPacket::from_ip(&out).unwrap();
        let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("not IPv6") };
        let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("not UDP") };
        let expected = udp.to_header().calc_checksum_ipv6(&ip.header().to_header(), b"vxlan!").unwrap();
        assert_eq!((udp.checksum(), udp.payload()), (expected, &b"vxlan!"[..]));
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let a: SocketAddr = "10.9.0.1:1".parse().unwrap();
        let mut out = vec![1];
        assert!(!ip_udp_packet(a, a, &vec![0; 65_536], &mut out));
        assert!(out.is_empty());
    }
}
