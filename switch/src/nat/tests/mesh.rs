//! Ingress services across a cluster: a replica on another node is reached
//! from this node's mesh address and MAC (source NAT), its answers come
//! back to that address, and the mesh address is never a destination of
//! egress.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::harness::Out;
use super::harness::*;
use crate::nat::{Backend, ListenerId, Mesh, Proto};
use crate::wire::MacAddr;

const L: ListenerId = ListenerId(1);
const MESH_MAC: [u8; 6] = [0x02, 0x77, 1, 2, 3, 4];
const MESH_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 250);

fn local() -> Backend {
    Backend {
        network: NET,
        ipv4: Some(Ipv4Addr::new(10, 0, 0, 10)),
        ipv6: None,
        mac: MacAddr([2, 0, 0, 0, 9, 0]),
        port: 80,
        via_mesh: false,
    }
}

fn remote() -> Backend {
    Backend { ipv4: Some(Ipv4Addr::new(10, 0, 0, 20)), mac: MacAddr([2, 0, 0, 0, 9, 1]), via_mesh: true, ..local() }
}

fn mesh() -> Mesh {
    Mesh { mac: MacAddr(MESH_MAC), ipv4: Some(MESH_IP), ipv6: None }
}

fn client(i: u8) -> SocketAddr {
    sa([198, 51, 100, i], 40_000 + u16::from(i))
}

fn accept(b: &mut Bench, client: SocketAddr) -> Option<crate::nat::FlowId> {
    let id = b.tr.accept(L, client, b.now, &mut b.out)?;
    b.host.closed.remove(&id);
    b.host.recv.remove(&id);
    b.host.written.remove(&id);
    Some(id)
}

#[test]
fn remote_replicas_are_reached_from_the_mesh_address_and_answer_back() {
    let mut b = Bench::new();
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), vec![local(), remote()]);

    // No mesh station yet: the remote replica is passed over.
    for i in 1..=2 {
        accept(&mut b, client(i)).expect("accepted");
        let syn = b.one_seg();
        assert_eq!((syn.dst, syn.src), (sock(local().ipv4.unwrap(), 80), client(i)));
    }

    b.tr.set_mesh(NET, Some(mesh()));
    assert_eq!(b.tr.mesh(NET), Some(mesh()));
    // Rotation: the local replica sees the client itself, the remote one
    // the mesh address, from the mesh MAC. (Each new connection takes the
    // next place, whether or not its backend was passed over: the third
    // goes to the local replica, the fourth to the remote one.)
    accept(&mut b, client(3)).expect("accepted");
    let local_syn = b.one_seg();
    let id = accept(&mut b, client(4)).expect("accepted");
    let syn = b.one_seg();
    assert_eq!((local_syn.dst, local_syn.src, local_syn.src_mac), (sock(local().ipv4.unwrap(), 80), client(3), GW_MAC));
    assert_eq!(syn.dst, sock(remote().ipv4.unwrap(), 80));
    assert_eq!(syn.src, sock(MESH_IP, client(4).port()), "source NAT to the mesh address, the client's port kept");
    assert_eq!(syn.src_mac, MESH_MAC, "from the mesh MAC: the replica's node tunnels answers to this node");
    assert_eq!(syn.dst_mac, remote().mac.0);
    let flow = b.tr.flows(b.now).into_iter().find(|(f, _)| *f == id).unwrap().1;
    assert_eq!((flow.remote, flow.outer_remote), (syn.src, client(4)));

    // The replica's answer, to the mesh address, belongs to the flow.
    let syn_ack = tcp_frame_from(
        remote().mac.0,
        syn.dst,
        syn.src,
        7000,
        syn.seq.wrapping_add(1),
        SYN_ACK,
        29200,
        &syn_options(1400, Some(7)),
        &[],
    );
    assert!(b.tr.owns(NET, &syn_ack), "the datapath hands frames to the mesh address over");
    b.send(&syn_ack);
    let ack = b.flush().remove(0).tcp();
    assert!(ack.ack_flag && !ack.syn);
    assert_eq!((ack.src, ack.src_mac, ack.ack), (syn.src, MESH_MAC, 7001));
    let reply =
        tcp_frame_from(remote().mac.0, syn.dst, syn.src, 7001, syn.seq.wrapping_add(1), PSH_ACK, 500, &[], b"node-1");
    b.send(&reply);
    assert_eq!(b.host.written(id), b"node-1", "the replica's bytes reach the client's socket");

    // A second client on the same port reaches the replica from another
    // mesh port: flows never share a 4-tuple.
    let other = sa([198, 51, 100, 99], client(4).port());
    accept(&mut b, other).expect("local");
    b.one_seg();
    accept(&mut b, other).expect("remote");
    let syn2 = b.one_seg();
    assert_eq!(syn2.src.ip(), IpAddr::V4(MESH_IP));
    assert_ne!(syn2.src, syn.src);

    // The mesh address is the switch's own: a sandbox's SYN to it opens no
    // egress flow (it is reset), nor does a datagram.
    b.host.take_calls();
    let stray = tcp_frame_from(SB_MAC, sandbox(5555), sock(MESH_IP, 80), 1, 0, SYN, 1000, &[], &[]);
    assert!(!b.tr.owns(NET, &stray));
    b.send(&stray);
    let rst = b.one_seg();
    assert!(rst.rst);
    b.send(&udp_frame(sandbox(5556), sock(MESH_IP, 53), b"q"));
    b.no_frames();
    assert!(!b.host.calls.iter().any(|c| matches!(c, Call::Open(..))), "{:?}", b.host.calls);

    // The mesh station goes: new flows skip the remote replica again.
    b.tr.set_mesh(NET, None);
    for i in 10..=12 {
        accept(&mut b, client(i)).expect("accepted");
        assert_eq!(b.one_seg().dst, sock(local().ipv4.unwrap(), 80));
    }
}

#[test]
fn only_remote_replicas_and_no_mesh_refuses() {
    let mut b = Bench::new();
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), vec![remote()]);
    assert!(accept(&mut b, client(1)).is_none(), "no mesh station: no backend");
    b.tr.set_mesh(NET, Some(mesh()));
    accept(&mut b, client(1)).expect("accepted");
    assert_eq!(b.one_seg().src_mac, MESH_MAC);
}

#[test]
fn udp_flows_to_a_remote_replica_come_from_the_mesh_and_its_answers_go_back_to_the_client() {
    const LU: ListenerId = ListenerId(2);
    let mut b = Bench::new();
    b.tr.set_mesh(NET, Some(mesh()));
    b.tr.set_listener(LU, Proto::Udp, sa([0, 0, 0, 0], 5353), vec![Backend { port: 53, ..remote() }]);
    let (df, out) = b.udp_inbound(LU, client(1), b"query").expect("a frame");
    assert_eq!(df.port, GW_PORT);
    let Out::Udp { src, dst, src_mac, dst_mac, payload } = out else { panic!("not UDP") };
    assert_eq!((src.ip(), src_mac), (IpAddr::V4(MESH_IP), MESH_MAC), "from the mesh station");
    assert_eq!((dst, dst_mac, payload.as_slice()), (sock(remote().ipv4.unwrap(), 53), remote().mac.0, &b"query"[..]));
    // The same client stays on its flow; the answer leaves by the listener.
    let (_, again) = b.udp_inbound(LU, client(1), b"again").unwrap();
    assert!(matches!(again, Out::Udp { src: s, .. } if s == src));
    let reply = udp_frame_from(remote().mac.0, dst, src, b"answer");
    assert!(b.tr.owns(NET, &reply));
    b.send(&reply);
    assert_eq!(b.host.take_calls(), vec![Call::SendTo(LU, client(1), b"answer".to_vec())]);
}

#[test]
fn ipv6_clients_reach_a_remote_replica_from_the_mesh_ipv6_address() {
    use std::net::Ipv6Addr;
    let mesh6 = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0x77, 1);
    let mut b = Bench::new();
    b.tr.set_mesh(NET, Some(Mesh { ipv6: Some(mesh6), ..mesh() }));
    let dual = Backend { ipv6: Some(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x20)), ..remote() };
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), vec![dual]);
    let client6 = sa6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 5], 50_005);
    accept(&mut b, client6).expect("accepted");
    let syn = b.one_seg();
    assert_eq!(syn.src, sock(mesh6, 50_005), "the mesh address of the client's family");
    assert_eq!((syn.dst, syn.src_mac), (sock(dual.ipv6.unwrap(), 80), MESH_MAC));
    // An IPv4 client of the same replica comes from the IPv4 mesh address.
    accept(&mut b, client(1)).expect("accepted");
    assert_eq!(b.one_seg().src, sock(MESH_IP, client(1).port()));
    assert!(b.tr.mesh(NET).unwrap().has(IpAddr::V6(mesh6)));
}
