//! The L4 translator over IPv6 in the loop: published ports on `[::1]`
//! carried to a sandbox (a memory TAP played by the test) over IPv6 and
//! back through real loopback sockets, and IPv6 frames it refuses counted
//! under their drop reason. IPv4 on the same network goes on beside it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};

use super::super::handle::NetworkSpec;
use super::super::testing::frames::{gw_mac, ip, ip6, mac};
use super::super::testing::{Harness, Sent, dual_network};
use crate::counters::DropReason;
use crate::nat::{Backend, Proto, Publication};
use crate::port::{NetworkId, PortId};
use crate::sys::testutil::recv_within;
use crate::wire::VirtioNetHdr;

/// How long real loopback sockets may take (they are quick; the machine may be loaded).
const PATIENCE: Duration = Duration::from_secs(10);

fn backend(network: NetworkId, port: u16) -> Backend {
    Backend { network, ipv4: Some(ip(2)), ipv6: Some(ip6(2)), mac: mac(2), port, via_mesh: false }
}

/// Publishes `proto` on `host` (port 0: the kernel picks) to the sandbox
/// at `ip(2)`/`ip6(2)`, port 80; returns the bound address.
fn publish(h: &mut Harness, net: NetworkId, proto: Proto, host: &str) -> SocketAddr {
    let host: SocketAddr = host.parse().unwrap();
    h.publish(vec![Publication { proto, host, backends: vec![backend(net, 80)], optional: false }]).unwrap();
    h.published_addrs().into_iter().find(|a| a.ip() == host.ip()).expect("the listener is bound")
}

/// One frame toward the sandbox, parsed.
#[derive(Debug)]
struct Seen {
    hdr: VirtioNetHdr,
    src: SocketAddr,
    dst: SocketAddr,
    dst_mac: [u8; 6],
    tcp: Option<etherparse::TcpHeader>,
    payload: Vec<u8>,
}

/// A TCP or UDP frame toward the sandbox, parsed; `None` for others (the
/// gateway's router advertisements).
fn parse(sent: &Sent) -> Option<Seen> {
    let h = PacketHeaders::from_ethernet_slice(&sent.frame).expect("a frame that parses");
    let Some(etherparse::LinkHeader::Ethernet2(eth)) = h.link else { panic!("not Ethernet") };
    let (src, dst): (IpAddr, IpAddr) = match h.net {
        Some(NetHeaders::Ipv6(ip, _)) => (Ipv6Addr::from(ip.source).into(), Ipv6Addr::from(ip.destination).into()),
        Some(NetHeaders::Ipv4(ip, _)) => (ip.source.into(), ip.destination.into()),
        other => panic!("not IP: {other:?}"),
    };
    let payload = h.payload.slice().to_vec();
    match h.transport {
        Some(TransportHeader::Tcp(t)) => Some(Seen {
            hdr: sent.hdr,
            src: SocketAddr::new(src, t.source_port),
            dst: SocketAddr::new(dst, t.destination_port),
            dst_mac: eth.destination,
            tcp: Some(t),
            payload,
        }),
        Some(TransportHeader::Udp(u)) => Some(Seen {
            hdr: sent.hdr,
            src: SocketAddr::new(src, u.source_port),
            dst: SocketAddr::new(dst, u.destination_port),
            dst_mac: eth.destination,
            tcp: None,
            payload,
        }),
        _ => None,
    }
}

/// Runs the loop (sockets included) until the sandbox's port got a frame
/// `pick` takes; panics after [`PATIENCE`].
fn wait_frame(h: &mut Harness, port: PortId, mut pick: impl FnMut(&Seen) -> bool) -> Seen {
    let deadline = Instant::now() + PATIENCE;
    loop {
        h.poll_sockets();
        h.run_until_idle();
        if let Some(seen) = h.sent(port).iter().filter_map(parse).find(|s| pick(s)) {
            return seen;
        }
        assert!(Instant::now() < deadline, "no such frame toward the sandbox within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP segment from the sandbox (`ip6(2)`, `mac(2)`) to `to`.
fn from_sandbox(from: SocketAddr, to: SocketAddr, seq: u32, ack: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (from.ip(), to.ip()) else { panic!("IPv6 only") };
    let mut b = PacketBuilder::ethernet2(mac(2).0, gw_mac().0).ipv6(s.octets(), d.octets(), 64).tcp(
        from.port(),
        to.port(),
        seq,
        65_535,
    );
    b = b.ack(ack);
    if syn {
        b = b.syn().options(&[TcpOptionElement::MaximumSegmentSize(1440)]).unwrap();
    } else {
        b = b.psh();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn a_tcp_client_of_an_ipv6_published_port_reaches_the_sandbox_over_ipv6_and_back() {
    let mut h = Harness::new();
    let net = h.network(NetworkSpec { egress: true, ..dual_network(0) });
    let sb = h.endpoint(net);
    let addr = publish(&mut h, net, Proto::Tcp, "[::1]:0");
    let mut client = TcpStream::connect(addr).expect("the kernel accepts for the listener");
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"hello over six").unwrap();

    // The accepted client becomes a SYN to the sandbox's IPv6 address,
    // from the gateway's (a loopback client) with the client's port.
    let syn = wait_frame(&mut h, sb, |s| s.tcp.as_ref().is_some_and(|t| t.syn));
    let client_port = client.local_addr().unwrap().port();
    assert_eq!(syn.src, SocketAddr::from((ip6(1), client_port)));
    assert_eq!(syn.dst, SocketAddr::from((ip6(2), 80)));
    assert_eq!(syn.dst_mac, mac(2).0);
    let seq = syn.tcp.as_ref().unwrap().sequence_number;

    // The sandbox answers; the client's bytes follow as an IPv6 data frame
    // with a partial checksum.
    h.inject(sb, &from_sandbox(syn.dst, syn.src, 9_000, seq + 1, true, &[]));
    let data = wait_frame(&mut h, sb, |s| !s.payload.is_empty());
    assert_eq!(data.payload, b"hello over six");
    assert_eq!((data.hdr.flags, data.hdr.csum_start, data.hdr.csum_offset), (VirtioNetHdr::FLAG_NEEDS_CSUM, 54, 16));
    assert_eq!(data.tcp.as_ref().unwrap().acknowledgment_number, 9_001);

    // The sandbox's answer reaches the client.
    let answer = from_sandbox(syn.dst, syn.src, 9_001, seq + 1 + 14, false, b"world");
    h.inject(sb, &answer);
    h.run_until_idle();
    let mut got = [0u8; 5];
    client.read_exact(&mut got).expect("the sandbox's bytes reach the client");
    assert_eq!(&got, b"world");

    // `nat ls` shows the flow with both sides' IPv6 addresses.
    let flows = h.dp.nat_flows();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0].sandbox, SocketAddr::from((ip6(2), 80)));
    assert_eq!(flows[0].outer_remote, client.local_addr().unwrap());
    assert_eq!(flows[0].outer_local, Some(addr));
}

#[test]
fn a_udp_client_of_an_ipv6_published_port_gets_the_sandboxs_answer() {
    let mut h = Harness::new();
    let net = h.network(NetworkSpec { egress: true, ..dual_network(0) });
    let sb = h.endpoint(net);
    let addr = publish(&mut h, net, Proto::Udp, "[::1]:0");
    let client = UdpSocket::bind("[::1]:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"query", addr).unwrap();
    // No epoll edge is missed: the listener was marked ready when published.
    let q = wait_frame(&mut h, sb, |s| s.tcp.is_none());
    assert_eq!(q.payload, b"query");
    assert_eq!(
        (q.src, q.dst),
        (SocketAddr::from((ip6(1), client.local_addr().unwrap().port())), SocketAddr::from((ip6(2), 80)))
    );
    assert_eq!((q.hdr.csum_start, q.hdr.csum_offset), (54, 6));
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(mac(2).0, gw_mac().0)
        .ipv6(ip6(2).octets(), ip6(1).octets(), 64)
        .udp(80, q.src.port())
        .write(&mut reply, b"answer")
        .unwrap();
    h.inject(sb, &reply);
    h.run_until_idle();
    let mut buf = [0u8; 64];
    let (n, from) = recv_within(PATIENCE, |t| client.set_read_timeout(t), || client.recv_from(&mut buf))
        .expect("the answer reaches the client");
    assert_eq!((&buf[..n], from), (&b"answer"[..], addr), "from the published address");
}

/// `payload` (a UDP header and data) from the sandbox at `ip6(2)` to
/// `to`, in IPv6 fragments of `size` bytes with the fragment header right
/// after the fixed header, as Linux sends them.
fn fragments6(payload: &[u8], to: Ipv6Addr, id: u32, size: usize) -> Vec<Vec<u8>> {
    payload
        .chunks(size)
        .enumerate()
        .map(|(k, chunk)| {
            let more = (k + 1) * size < payload.len();
            let mut f = Vec::new();
            PacketBuilder::ethernet2(mac(2).0, gw_mac().0)
                .ipv6(ip6(2).octets(), to.octets(), 64)
                .udp(1, 1)
                .write(&mut f, &[])
                .unwrap();
            f.truncate(54);
            f[18..20].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
            f[20] = 44;
            let field = ((k * size / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&[17, 0]);
            f.extend_from_slice(&field.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

#[test]
fn a_fragmented_udp_answer_reaches_the_client_whole_and_bad_fragments_are_counted() {
    let mut h = Harness::new();
    let net = h.network(NetworkSpec { egress: true, ..dual_network(0) });
    let sb = h.endpoint(net);
    let addr = publish(&mut h, net, Proto::Udp, "[::1]:0");
    let client = UdpSocket::bind("[::1]:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"query", addr).unwrap();
    let q = wait_frame(&mut h, sb, |s| s.tcp.is_none());
    // A 4,000-byte answer in three fragments, the last one first.
    let data: Vec<u8> = (0..4000u32).map(|i| (i * 13 + 5) as u8).collect();
    let mut udp = Vec::new();
    PacketBuilder::ipv6(ip6(2).octets(), ip6(1).octets(), 64).udp(80, q.src.port()).write(&mut udp, &data).unwrap();
    let payload = &udp[40..];
    let mut parts = fragments6(payload, ip6(1), 0x0bad_cafe, 1448);
    parts.rotate_right(1);
    for part in &parts {
        h.inject(sb, part);
        h.run_until_idle();
    }
    let mut buf = vec![0u8; 8192];
    let (n, from) = recv_within(PATIENCE, |t| client.set_read_timeout(t), || client.recv_from(&mut buf))
        .expect("the whole answer reaches the client");
    assert_eq!((n, from), (4000, addr));
    assert_eq!(&buf[..n], &data[..], "the datagram arrives whole and intact");
    assert_eq!(h.drops(sb, DropReason::NatFragments), 0);

    // An overlapping fragment gives its datagram up, counted; nothing is sent.
    let again = fragments6(payload, ip6(1), 7, 1448);
    h.inject(sb, &again[0]);
    let mut overlapping = again[1].clone();
    overlapping[56..58].copy_from_slice(&(((1440 / 8) as u16) << 3 | 1).to_be_bytes());
    h.inject(sb, &overlapping);
    h.inject(sb, &again[2]);
    h.run_until_idle();
    assert_eq!(h.drops(sb, DropReason::NatFragments), 1);
    client.set_nonblocking(true).unwrap();
    assert!(client.recv_from(&mut buf).is_err(), "nothing reached the client");
    // Routed out, a fragment header after another extension header stays
    // refused by name.
    let outside = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let mut late = fragments6(payload, outside, 8, 1440).remove(0);
    late[20] = 60;
    let mut with_options = late[..54].to_vec();
    with_options.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    with_options.extend_from_slice(&late[54..]);
    let len = (with_options.len() - 54) as u16;
    with_options[18..20].copy_from_slice(&len.to_be_bytes());
    h.inject(sb, &with_options);
    h.run_until_idle();
    assert_eq!(h.drops(sb, DropReason::NatIpv6Extension), 1, "{:?}", h.counters(sb).drops);
}

#[test]
fn a_sandbox_that_claims_another_address_opens_no_flow() {
    let mut h = Harness::new();
    let net = h.network(NetworkSpec { egress: true, ..dual_network(0) });
    let sb = h.endpoint(net);
    h.set_own_addresses(net, sb, Some(ip(2)), Some(ip6(2)));
    // The documentation prefix: the frame is dropped before any socket opens.
    let outside = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    for claimed in [ip6(3), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x99)] {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(mac(2).0, gw_mac().0)
            .ipv6(claimed.octets(), outside.octets(), 64)
            .udp(5000, 53)
            .write(&mut frame, b"not mine")
            .unwrap();
        h.inject(sb, &frame);
        h.inject(
            sb,
            &from_sandbox(
                SocketAddr::new(claimed.into(), 40_000),
                SocketAddr::new(outside.into(), 80),
                1,
                0,
                true,
                b"",
            ),
        );
    }
    h.run_until_idle();
    assert_eq!(h.drops(sb, DropReason::NatSpoofedSource), 4);
    assert!(h.dp.nat_flows().is_empty(), "a flow opened for another address: {:?}", h.dp.nat_flows());
}
