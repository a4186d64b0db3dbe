//! The ingress mesh in the loop: a published port whose backend is a
//! replica on another node is carried from this node's mesh station (its
//! address and MAC) through the cluster view's tunnel; the replica's
//! answers, tunnelled back to the mesh MAC, reach the translator and the
//! client's real loopback socket. Frames to the mesh MAC outside any flow
//! are dropped as `mesh_stray`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};

use super::super::RemoteEndpoint;
use super::super::handle::{Command, DatapathError};
use super::super::testing::frames::{ip, mac, vtep, vxlan};
use super::super::testing::{Harness, Setup, overlay_network};
use crate::counters::DropReason;
use crate::nat::{Backend, Mesh, Proto, Publication};
use crate::port::NetworkId;
use crate::wire::MacAddr;

const VNI: u32 = 4343;
const PATIENCE: Duration = Duration::from_secs(10);
const MESH_MAC: MacAddr = MacAddr([0x02, 0x77, 0, 0, 0, 1]);

fn mesh_ip() -> Ipv4Addr {
    ip(250)
}

/// A TCP segment seen inside a VXLAN datagram toward `vtep(2)`.
#[derive(Debug)]
struct Seg {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    tcp: etherparse::TcpHeader,
    payload: Vec<u8>,
}

fn parse_tunnelled(bytes: &[u8]) -> Option<Seg> {
    let inner = bytes.get(8..)?;
    let h = PacketHeaders::from_ethernet_slice(inner).ok()?;
    let Some(etherparse::LinkHeader::Ethernet2(eth)) = h.link else { return None };
    let Some(NetHeaders::Ipv4(ip4, _)) = h.net else { return None };
    let Some(TransportHeader::Tcp(tcp)) = h.transport else { return None };
    Some(Seg {
        src_mac: eth.source,
        dst_mac: eth.destination,
        src: SocketAddr::from((ip4.source, tcp.source_port)),
        dst: SocketAddr::from((ip4.destination, tcp.destination_port)),
        tcp,
        payload: h.payload.slice().to_vec(),
    })
}

/// Runs the loop until a TCP segment `pick` takes leaves through the tunnel to `vtep(2)`.
fn wait_tunnelled(h: &mut Harness, mut pick: impl FnMut(&Seg) -> bool) -> Seg {
    let deadline = Instant::now() + PATIENCE;
    loop {
        h.poll_sockets();
        h.run_until_idle();
        let found = h.sent_datagrams().into_iter().filter(|d| d.to == vtep(2)).find_map(|d| {
            let seg = parse_tunnelled(&d.bytes)?;
            pick(&seg).then_some(seg)
        });
        if let Some(seg) = found {
            return seg;
        }
        assert!(Instant::now() < deadline, "no such segment through the tunnel within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP segment from the replica (station 7) to `to`, tunnelled from `vtep(2)`.
fn from_replica(
    to_mac: MacAddr,
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    syn: bool,
    data: &[u8],
) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (from.ip(), to.ip()) else { panic!("IPv4") };
    let mut b = PacketBuilder::ethernet2(mac(7).0, to_mac.0).ipv4(s.octets(), d.octets(), 64).tcp(
        from.port(),
        to.port(),
        seq,
        65_535,
    );
    b = b.ack(ack);
    b = if syn { b.syn() } else { b.psh() };
    let mut v = Vec::new();
    b.write(&mut v, data).unwrap();
    vxlan(VNI, &v)
}

fn host() -> (Harness, NetworkId) {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let replica = RemoteEndpoint { mac: mac(7), ipv4: Some(ip(7)), ipv6: None, vtep: vtep(2) };
    h.cluster_view(net, vec![vtep(2)], vec![replica]).expect("the view applies");
    (h, net)
}

fn set_mesh(h: &mut Harness, net: NetworkId, mesh: Option<Mesh>) -> Result<(), DatapathError> {
    h.call(|reply| Command::SetMesh { network: net, mesh, reply })
}

#[test]
fn a_remote_replica_is_reached_from_the_mesh_station_and_answers_back_through_the_tunnel() {
    let (mut h, net) = host();
    set_mesh(&mut h, net, Some(Mesh { mac: MESH_MAC, ipv4: Some(mesh_ip()), ipv6: None })).unwrap();
    assert_eq!(h.lookup(net, MESH_MAC), Some(h.gateway(net)), "frames to the mesh MAC go to the gateway port");
    let backend = Backend { network: net, ipv4: Some(ip(7)), ipv6: None, mac: mac(7), port: 80, via_mesh: true };
    let host: SocketAddr = "127.0.0.1:0".parse().unwrap();
    h.publish(vec![Publication { proto: Proto::Tcp, host, backends: vec![backend], optional: false }]).unwrap();
    let addr = h.published_addrs()[0];

    let mut client = TcpStream::connect(addr).expect("the kernel accepts for the listener");
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"GET").unwrap();
    let syn = wait_tunnelled(&mut h, |s| s.tcp.syn);
    assert_eq!((syn.src_mac, syn.dst_mac), (MESH_MAC.0, mac(7).0), "from the mesh MAC to the replica's");
    assert_eq!(syn.src.ip(), std::net::IpAddr::V4(mesh_ip()), "source NAT to the mesh address");
    assert_eq!(syn.dst, SocketAddr::from((ip(7), 80)));
    let seq = syn.tcp.sequence_number;

    // The replica answers to the mesh MAC through the tunnel: the handshake
    // completes and the client's bytes follow, through the tunnel again.
    h.inject_datagram(vtep(2), &from_replica(MESH_MAC, syn.dst, syn.src, 9_000, seq + 1, true, &[]));
    let data = wait_tunnelled(&mut h, |s| !s.payload.is_empty());
    assert_eq!((data.payload.as_slice(), data.src, data.dst_mac), (&b"GET"[..], syn.src, mac(7).0));
    h.inject_datagram(vtep(2), &from_replica(MESH_MAC, syn.dst, syn.src, 9_001, seq + 4, false, b"node-2"));
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    client.set_nonblocking(true).unwrap();
    while got.len() < 6 {
        h.poll_sockets();
        h.run_until_idle();
        let mut buf = [0u8; 64];
        match client.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("client read: {e}"),
        }
        assert!(Instant::now() < deadline, "the replica's answer did not reach the client: {got:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, b"node-2");

    // A frame to the mesh MAC that belongs to no flow is dropped and counted.
    let tunnel = h.snapshot().tunnels.iter().find(|t| t.remote == vtep(2)).map(|t| t.port).unwrap();
    let stray = SocketAddr::from((mesh_ip(), 9));
    h.inject_datagram(vtep(2), &from_replica(MESH_MAC, syn.dst, stray, 1, 0, true, &[]));
    h.run_until_idle();
    assert_eq!(h.drops(tunnel, DropReason::MeshStray), 1);

    // A local endpoint passing for the replica (its address and port) to
    // the mesh MAC feeds no flow: dropped as spoofed on its own port.
    let local = h.endpoint(net);
    h.set_own_addresses(net, local, Some(ip(2)), None);
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (syn.dst.ip(), syn.src.ip()) else { panic!("IPv4") };
    let mut forged = Vec::new();
    PacketBuilder::ethernet2(mac(2).0, MESH_MAC.0)
        .ipv4(s.octets(), d.octets(), 64)
        .tcp(syn.dst.port(), syn.src.port(), 9_007, 65_535)
        .ack(seq + 4)
        .write(&mut forged, b"forged")
        .unwrap();
    h.inject(local, &forged);
    h.run_until_idle();
    assert_eq!(h.drops(local, DropReason::NatSpoofedSource), 1);
    assert_eq!(h.drops(local, DropReason::MeshStray), 0);

    // The mesh station goes: its entry too, and new clients have no backend.
    set_mesh(&mut h, net, None).unwrap();
    assert_eq!(h.lookup(net, MESH_MAC), None);
}

#[test]
fn a_mesh_station_needs_a_gateway_and_a_unicast_mac() {
    let (mut h, net) = host();
    let bad = Mesh { mac: MacAddr::BROADCAST, ipv4: Some(mesh_ip()), ipv6: None };
    assert!(matches!(set_mesh(&mut h, net, Some(bad)), Err(DatapathError::BadMeshMac(_))));
    let plain = h.network(super::super::testing::plain_network(1));
    let mesh = Mesh { mac: MESH_MAC, ipv4: Some(mesh_ip()), ipv6: None };
    assert!(matches!(set_mesh(&mut h, plain, Some(mesh)), Err(DatapathError::NoGateway(_))));
}
