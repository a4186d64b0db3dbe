//! Published ports: TCP connections and UDP flows from clients to
//! backends in sandboxes, with round robin and failover.

use std::net::{Ipv4Addr, SocketAddr};

use super::harness::*;
use crate::nat::{Backend, Counters, Direction, FlowId, ListenerId, Proto};
use crate::wire::MacAddr;

const L: ListenerId = ListenerId(3);
const LU: ListenerId = ListenerId(4);

fn backend(i: u8) -> Backend {
    Backend {
        network: NET,
        ipv4: Some(Ipv4Addr::new(10, 0, 0, 10 + i)),
        ipv6: None,
        mac: MacAddr([2, 0, 0, 0, 9, i]),
        port: 80,
        via_mesh: false,
    }
}

fn client(i: u8) -> SocketAddr {
    sa([198, 51, 100, i], 40_000 + u16::from(i))
}

fn published(n: u8) -> Bench {
    let mut b = Bench::new();
    let backends = (0..n).map(backend).collect();
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), backends);
    let backends = (0..n).map(|i| Backend { port: 53, ..backend(i) }).collect();
    b.tr.set_listener(LU, Proto::Udp, sa([0, 0, 0, 0], 5353), backends);
    b
}

impl Bench {
    fn accept(&mut self, client: SocketAddr) -> Option<FlowId> {
        let id = self.tr.accept(L, client, self.now, &mut self.out)?;
        // The daemon's accepted socket: a fresh model socket.
        self.host.closed.remove(&id);
        self.host.recv.remove(&id);
        self.host.written.remove(&id);
        Some(id)
    }
}

/// The SYN a published connection sends; checks it goes to `to`.
fn expect_syn(b: &mut Bench, from: SocketAddr, to: Backend) -> Seg {
    let syn = b.one_seg();
    assert!(syn.syn && !syn.ack_flag && !syn.rst, "{syn:?}");
    assert_eq!(syn.src, from);
    assert_eq!(syn.dst, sock(to.ipv4.unwrap(), to.port));
    assert_eq!(syn.dst_mac, to.mac.0, "addressed to the backend's MAC");
    assert_eq!(syn.src_mac, GW_MAC);
    assert_eq!(syn.mss, Some(OUR_MSS));
    assert_eq!(syn.wscale, Some(7));
    syn
}

/// The backend answers the SYN.
fn syn_ack(b: &mut Bench, syn: &Seg, to: Backend, isn: u32, shift: Option<u8>) {
    let f = tcp_frame_from(
        to.mac.0,
        syn.dst,
        syn.src,
        isn,
        syn.seq.wrapping_add(1),
        SYN_ACK,
        29200,
        &syn_options(1400, shift),
        &[],
    );
    b.send(&f);
}

#[test]
fn accept_sends_a_syn_from_the_client_to_the_backend() {
    let mut b = published(3);
    let id = b.accept(client(1)).expect("accepted");
    let syn = expect_syn(&mut b, client(1), backend(0));
    assert_eq!(syn.window, u16::MAX);
    let flows = b.tr.flows(b.now);
    let f = &flows[0].1;
    assert_eq!((f.direction, f.proto, f.state), (Direction::Inbound, Proto::Tcp, "syn-sent"));
    assert_eq!(f.sandbox, sock(backend(0).ipv4.unwrap(), 80));
    assert_eq!(f.remote, client(1));
    assert_eq!(f.outer_remote, client(1));
    assert_eq!(b.counters(NET), Counters { flows_opened: 1, active: 1, ..Counters::default() });
    assert!(b.host.calls.is_empty(), "the accepted socket is the host side");

    // The backend answers: the switch ACKs, the connection is up.
    syn_ack(&mut b, &syn, backend(0), 5000, Some(7));
    let ack = b.flush().remove(0).tcp();
    assert!(ack.ack_flag && !ack.syn);
    assert_eq!(ack.seq, syn.seq.wrapping_add(1));
    assert_eq!(ack.ack, 5001);
    assert_eq!(ack.dst_mac, backend(0).mac.0);
    assert_eq!(b.tr.flows(b.now)[0].1.state, "established");

    // Client data goes to the backend cut at the backend's MSS.
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    b.host.deliver(id, &data);
    b.tr.readable(id);
    let segs = b.pump(1400);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.seq, syn.seq.wrapping_add(1));
    assert_eq!(segs[0].1.payload, data);
    assert_eq!(segs[0].1.dst_mac, backend(0).mac.0);
    // The backend's reply goes to the client's socket.
    let reply = tcp_frame_from(
        backend(0).mac.0,
        syn.dst,
        syn.src,
        5001,
        syn.seq.wrapping_add(3001),
        PSH_ACK,
        500,
        &[],
        b"HTTP/1.1 200 OK",
    );
    b.send(&reply);
    assert_eq!(b.host.written(id), b"HTTP/1.1 200 OK");
    assert!(b.host.calls.contains(&Call::Discard(id, 3000)));
}

#[test]
fn window_scale_is_dropped_when_the_backend_does_not_offer_it() {
    let mut b = published(1);
    let id = b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    syn_ack(&mut b, &syn, backend(0), 5000, None);
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.window, u16::MAX, "unscaled: 512 KiB does not fit, the most that does");
    // The backend's window is taken unscaled too.
    b.host.deliver(id, &[7u8; 40_000]);
    b.tr.readable(id);
    let segs = b.pump(1400);
    assert_eq!(segs.iter().map(|(_, s)| s.payload.len()).sum::<usize>(), 29200);
}

#[test]
fn loopback_clients_are_shown_as_the_gateway() {
    let mut b = published(1);
    let lo = sa([127, 0, 0, 1], 33_333);
    let id = b.accept(lo).unwrap();
    let syn = expect_syn(&mut b, sock(GW_IP, 33_333), backend(0));
    let f = &b.tr.flows(b.now)[0].1;
    assert_eq!(f.remote, sock(GW_IP, 33_333));
    assert_eq!(f.outer_remote, lo);
    // The backend's reply, addressed to the gateway, belongs to the flow.
    let reply =
        tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 5000, syn.seq.wrapping_add(1), SYN_ACK, 1000, &[], &[]);
    assert!(b.tr.owns(NET, &reply));
    b.send(&reply);
    assert_eq!(b.flush().len(), 1);
    let data =
        tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 5001, syn.seq.wrapping_add(1), PSH_ACK, 1000, &[], b"hi");
    b.send(&data);
    assert_eq!(b.host.written(id), b"hi");
    // Something else to the gateway is not a flow's.
    let other = tcp_frame(sandbox(1), sock(GW_IP, 22), 1, 0, SYN, 1000, &[], &[]);
    assert!(!b.tr.owns(NET, &other));
}

#[test]
fn round_robin_over_accepts() {
    let mut b = published(3);
    let mut order = Vec::new();
    for i in 1..=7 {
        b.accept(client(i)).unwrap();
        let syn = b.one_seg();
        order.push(v4(syn.dst.ip()).octets()[3] - 10);
    }
    assert_eq!(order, vec![0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn rst_fails_over_to_the_next_backend_and_rotation_goes_on() {
    let mut b = published(3);
    let id = b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    // Backend 0 refuses.
    let rst = tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 0, syn.seq.wrapping_add(1), RST_ACK, 0, &[], &[]);
    b.send(&rst);
    let syn2 = expect_syn(&mut b, client(1), backend(1));
    assert_eq!(b.tr.len(), 1);
    assert_eq!(b.tr.flows(b.now)[0].0, id, "the flow keeps its id (the daemon's socket)");
    assert_eq!(b.counters(NET), Counters { flows_opened: 1, active: 1, ..Counters::default() });
    // Backend 1 accepts.
    syn_ack(&mut b, &syn2, backend(1), 9000, Some(7));
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.dst_mac, backend(1).mac.0);
    assert_eq!(ack.ack, 9001);
    assert!(b.host.calls.is_empty());
    // The next clients take the next places in the rotation: a failover
    // does not move it.
    b.accept(client(2)).unwrap();
    expect_syn(&mut b, client(2), backend(1));
    b.accept(client(3)).unwrap();
    expect_syn(&mut b, client(3), backend(2));
}

#[test]
fn a_removed_network_takes_its_flows_with_it_handshakes_included() {
    let mut b = published(1);
    // A published connection whose SYN is out, and an egress one that is
    // established, both on NET.
    let id = b.accept(client(1)).unwrap();
    expect_syn(&mut b, client(1), backend(0));
    let c = b.connect(sandbox(40_000), 1_000, None);
    b.host.take_calls();
    let ended = b.tr.forget_network(NET, &mut b.host);
    assert_eq!(ended, 2);
    let calls = b.host.take_calls();
    assert!(calls.contains(&Call::Close(id, true)) && calls.contains(&Call::Close(c.id, true)), "{calls:?}");
    assert!(b.tr.is_empty(), "no flow left waiting for a network that is gone");
    // Its SYN is not sent again, nor anything else.
    b.poll(b.now + 60_000);
    b.no_frames();
    assert!(b.host.take_calls().is_empty());
}

#[test]
fn a_failover_asks_each_backend_once_whatever_other_clients_were_given() {
    let mut b = published(2);
    b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    // Meanwhile another client takes backend 1's place in the rotation.
    b.accept(client(2)).unwrap();
    expect_syn(&mut b, client(2), backend(1));
    // Backend 0 refuses the first client: it goes on to backend 1, not
    // back to backend 0 (the rotation's next place).
    let rst = tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 0, syn.seq.wrapping_add(1), RST_ACK, 0, &[], &[]);
    b.send(&rst);
    expect_syn(&mut b, client(1), backend(1));
    assert_eq!(b.tr.len(), 2, "both clients still connecting");
}

#[test]
fn syn_timeouts_fail_over_to_the_next_backend() {
    let mut b = published(2);
    let t0 = b.now;
    let id = b.accept(client(1)).unwrap();
    let first = expect_syn(&mut b, client(1), backend(0));
    b.poll(t0 + 999);
    b.no_frames();
    b.poll(t0 + 1_000);
    let again = expect_syn(&mut b, client(1), backend(0));
    assert_eq!(again.seq, first.seq, "a retransmission");
    b.poll(t0 + 3_000);
    expect_syn(&mut b, client(1), backend(0));
    b.poll(t0 + 6_999);
    b.no_frames();
    b.poll(t0 + 7_000);
    let other = expect_syn(&mut b, client(1), backend(1));
    assert_eq!(b.counters(NET).flows_timed_out, 1);
    assert_eq!(b.tr.flows(b.now)[0].0, id);
    // The second backend never answers either: the client is reset.
    b.poll(t0 + 8_000);
    expect_syn(&mut b, client(1), backend(1));
    b.poll(t0 + 10_000);
    expect_syn(&mut b, client(1), backend(1));
    b.poll(t0 + 14_000);
    b.no_frames();
    assert!(b.tr.is_empty());
    assert_eq!(b.host.take_calls(), vec![Call::Close(id, true)]);
    let c = b.counters(NET);
    assert_eq!((c.flows_refused, c.active), (1, 0));
    let _ = other;
}

#[test]
fn all_backends_refusing_closes_the_client_with_reset() {
    let mut b = published(3);
    let id = b.accept(client(1)).unwrap();
    for i in 0..3 {
        let syn = expect_syn(&mut b, client(1), backend(i));
        let rst = tcp_frame_from(backend(i).mac.0, syn.dst, syn.src, 0, syn.seq.wrapping_add(1), RST_ACK, 0, &[], &[]);
        b.send(&rst);
    }
    b.no_frames();
    assert_eq!(b.host.take_calls(), vec![Call::Close(id, true)]);
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET), Counters { flows_opened: 1, flows_refused: 1, ..Counters::default() });
}

#[test]
fn no_backend_means_no_accept() {
    let mut b = Bench::new();
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), Vec::new());
    assert!(b.accept(client(1)).is_none());
    assert!(b.tr.accept(ListenerId(99), client(1), b.now, &mut b.out).is_none(), "unknown listener");
    b.no_frames();
    assert!(b.tr.is_empty());
    assert_eq!(b.tr.listener(L), Some((Proto::Tcp, sa([0, 0, 0, 0], 8080))));
    b.tr.remove_listener(L, &mut b.host);
    assert_eq!(b.tr.listener(L), None);
    assert!(b.accept(client(1)).is_none());
}

#[test]
fn new_backends_apply_to_new_connections() {
    let mut b = published(2);
    b.accept(client(1)).unwrap();
    expect_syn(&mut b, client(1), backend(0));
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), vec![backend(5), backend(6)]);
    b.accept(client(2)).unwrap();
    expect_syn(&mut b, client(2), backend(6));
}

#[test]
fn a_published_connection_closes_cleanly() {
    let mut b = published(1);
    let id = b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    syn_ack(&mut b, &syn, backend(0), 5000, Some(7));
    b.flush();
    let seg = |seq: u32, ack: u32, flags: Flags| {
        tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, seq, ack, flags, 1000, &[], &[])
    };
    // The client closes: FIN to the backend.
    b.host.deliver_eof(id);
    b.tr.readable(id);
    b.pump(1400);
    let fin = b.one_seg();
    assert!(fin.fin);
    b.send(&seg(5001, fin.seq.wrapping_add(1), ACK));
    b.send(&seg(5001, fin.seq.wrapping_add(1), FIN_ACK));
    assert!(b.tr.is_empty());
    assert!(b.host.calls.contains(&Call::ShutdownWrite(id)));
    assert!(b.host.calls.contains(&Call::Close(id, false)));
    assert_eq!(b.counters(NET).active, 0);
}

#[test]
fn client_data_that_arrived_during_failover_is_sent() {
    // The client sends its request at once; the daemon's event loop
    // reports the accepted socket readable while the first backend is
    // still being asked. That backend refuses; the next one answers.
    let mut b = published(2);
    let id = b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    b.host.deliver(id, b"GET / HTTP/1.0\r\n\r\n");
    b.tr.readable(id);
    assert!(b.pump(1400).is_empty(), "nothing before the handshake");
    let rst = tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 0, syn.seq.wrapping_add(1), RST_ACK, 0, &[], &[]);
    b.send(&rst);
    let syn2 = expect_syn(&mut b, client(1), backend(1));
    syn_ack(&mut b, &syn2, backend(1), 1, Some(7));
    let segs = b.pump(1400);
    assert_eq!(segs.len(), 1, "the request goes to the backend without a new readiness event");
    assert_eq!(segs[0].1.payload, b"GET / HTTP/1.0\r\n\r\n");
}

#[test]
fn failover_keeps_the_flow_id_after_the_table_shrank() {
    // The flow table gives its memory back when it empties after a peak of
    // more than 1024 slots. A published connection failing over must keep
    // its id (the daemon's socket is filed under it) even when it is the
    // last flow left.
    let mut b = published(2);
    let t0 = b.now;
    for i in 0..1100u16 {
        b.send(&udp_frame(sandbox(10_000 + i), sa([8, 8, 8, 8], 53), b"q"));
    }
    // Shortly before they time out (no SYN retransmission meanwhile).
    b.now = t0 + 29_500;
    let id = b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    assert!(id.0 >= 1100);
    b.poll(t0 + 30_000);
    assert_eq!(b.tr.len(), 1, "the UDP flows timed out");
    let rst = tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 0, syn.seq.wrapping_add(1), RST_ACK, 0, &[], &[]);
    b.send(&rst);
    expect_syn(&mut b, client(1), backend(1));
    assert_eq!(b.tr.flows(b.now)[0].0, id);
}

// ------------------------------------------------------------------ UDP

fn udp_backend(i: u8) -> SocketAddr {
    sock(backend(i).ipv4.unwrap(), 53)
}

#[test]
fn udp_clients_are_pinned_and_rotate() {
    let mut b = published(3);
    let mut seen = Vec::new();
    for i in 1..=4 {
        let (df, out) = b.udp_inbound(LU, client(i), b"query").expect("a frame");
        assert_eq!(df.port, GW_PORT);
        let Out::Udp { src, dst, dst_mac, src_mac, payload } = out else { panic!("not UDP") };
        assert_eq!(src, client(i), "the sandbox sees the client's address");
        assert_eq!(src_mac, GW_MAC);
        assert_eq!(payload, b"query");
        let k = v4(dst.ip()).octets()[3] - 10;
        assert_eq!(dst_mac, backend(k).mac.0);
        assert_eq!(dst.port(), 53);
        seen.push(k);
    }
    assert_eq!(seen, vec![0, 1, 2, 0]);
    // Client 2 again: the same backend as before.
    for _ in 0..3 {
        let (_, out) = b.udp_inbound(LU, client(2), b"again").unwrap();
        assert!(matches!(out, Out::Udp { dst, .. } if dst == udp_backend(1)));
    }
    assert_eq!(b.tr.len(), 4);
    let flows = b.tr.flows(b.now);
    assert!(flows.iter().all(|(_, f)| f.direction == Direction::Inbound && f.proto == Proto::Udp));
    assert!(
        flows.iter().all(|(_, f)| f.outer_local == Some(sa([0, 0, 0, 0], 5353))),
        "their host side is the published UDP port's socket"
    );
    assert_eq!(b.counters(NET).flows_opened, 4);
    assert!(b.host.calls.is_empty(), "no socket is opened for inbound UDP");
}

#[test]
fn a_udp_client_follows_its_backend_going_and_its_port_being_unpublished() {
    let mut b = published(2);
    let (_, out) = b.udp_inbound(LU, client(1), b"query").unwrap();
    assert!(matches!(out, Out::Udp { dst, .. } if dst == udp_backend(0)));
    // Backend 0 leaves: the client's next datagram goes to one still there.
    let left = vec![Backend { port: 53, ..backend(1) }];
    b.tr.set_listener(LU, Proto::Udp, sa([0, 0, 0, 0], 5353), left);
    assert!(b.tr.is_empty(), "the flow pinned to the backend that left ended");
    let (_, out) = b.udp_inbound(LU, client(1), b"again").unwrap();
    assert!(matches!(out, Out::Udp { dst, .. } if dst == udp_backend(1)), "{out:?}");
    // A new backend beside it changes nothing for the pinned client.
    let both = vec![Backend { port: 53, ..backend(1) }, Backend { port: 53, ..backend(2) }];
    b.tr.set_listener(LU, Proto::Udp, sa([0, 0, 0, 0], 5353), both);
    assert_eq!(b.tr.len(), 1);
    // The port goes: its UDP flows with it; so does a TCP connection still
    // looking for a backend (reset), not an established one.
    b.accept(client(3)).unwrap();
    let syn = expect_syn(&mut b, client(3), backend(0));
    syn_ack(&mut b, &syn, backend(0), 5000, Some(7));
    b.flush();
    let early = b.accept(client(2)).unwrap();
    expect_syn(&mut b, client(2), backend(1));
    b.host.take_calls();
    b.tr.remove_listener(LU, &mut b.host);
    b.tr.remove_listener(L, &mut b.host);
    assert_eq!(b.host.take_calls(), vec![Call::Close(early, true)]);
    assert_eq!(b.tr.len(), 1, "the established connection goes on");
}

#[test]
fn the_sandbox_reply_goes_out_of_the_listener() {
    let mut b = published(2);
    b.udp_inbound(LU, client(1), b"query").unwrap();
    b.udp_inbound(LU, client(2), b"query").unwrap();
    let reply = udp_frame_from(backend(1).mac.0, udp_backend(1), client(2), b"answer");
    b.send(&reply);
    assert_eq!(b.host.take_calls(), vec![Call::SendTo(LU, client(2), b"answer".to_vec())]);
    b.no_frames();
    let f = b.tr.flows(b.now).into_iter().find(|(_, f)| f.remote == client(2)).unwrap().1;
    assert_eq!((f.bytes_to_sandbox, f.bytes_from_sandbox), (5, 6));
}

#[test]
fn a_sandbox_reply_sent_as_a_udp_gso_train_leaves_the_listener_as_one() {
    let mut b = published(1);
    b.udp_inbound(LU, client(1), b"query").unwrap();
    let train = vec![5u8; 2400];
    let reply = udp_frame_from(backend(0).mac.0, udp_backend(0), client(1), &train);
    b.send_train(&reply, 1200).unwrap();
    assert_eq!(b.host.take_calls(), vec![Call::SendTrainTo(LU, client(1), train, 1200)]);
    b.no_frames();
}

#[test]
fn an_ipv6_clients_train_longer_than_ipv4_carries_keeps_the_datagrams_that_fit() {
    let mut b = published(1);
    let l6 = ListenerId(5);
    b.tr.set_listener(l6, Proto::Udp, sa6([0; 8], 5353), vec![Backend { port: 53, ..backend(0) }]);
    let client = sa6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 40_000);
    // 65,527 bytes: all an IPv6 datagram carries, 20 more than IPv4's.
    let df = b.udp_inbound_raw(l6, client, &[1; 65_527], Some(1000)).expect("a frame");
    assert_eq!(df.len, crate::nat::Family::V4.udp_payload() + 65_000, "65 whole datagrams of 1,000 bytes");
    assert_eq!((df.hdr.gso_type, df.hdr.gso_size), (crate::wire::VirtioNetHdr::GSO_UDP_L4, 1000));
    // One datagram that long has no IPv4 form at all.
    assert!(b.udp_inbound_raw(l6, client, &[1; 65_527], None).is_none());
    b.no_frames();
}

#[test]
fn a_sandboxs_answers_in_one_batch_leave_the_listener_as_one_train() {
    let mut b = published(1);
    b.udp_inbound(LU, client(1), b"query").unwrap();
    let reply = |v: u8| udp_frame_from(backend(0).mac.0, udp_backend(0), client(1), &[v; 700]);
    b.send_batch(&[reply(1), reply(2), reply(3)]);
    let want: Vec<u8> = [1u8, 2, 3].iter().flat_map(|&v| vec![v; 700]).collect();
    assert_eq!(b.host.take_calls(), vec![Call::SendTrainTo(LU, client(1), want, 700)]);
}

#[test]
fn udp_loopback_client_is_shown_as_the_gateway() {
    let mut b = published(1);
    let lo = sa([127, 0, 0, 1], 7777);
    let (_, out) = b.udp_inbound(LU, lo, b"q").unwrap();
    assert!(matches!(out, Out::Udp { src, .. } if src == sock(GW_IP, 7777)));
    let reply = udp_frame_from(backend(0).mac.0, udp_backend(0), sock(GW_IP, 7777), b"a");
    assert!(b.tr.owns(NET, &reply));
    b.send(&reply);
    assert_eq!(b.host.take_calls(), vec![Call::SendTo(LU, lo, b"a".to_vec())]);
}

/// The gateway's own UDP port 53053 (from which the embedded DNS asks
/// servers inside the network) is never a client's: their answers to it
/// must reach the DNS, so a loopback client on that port is shown from
/// another one.
#[test]
fn a_client_on_the_gateways_own_dns_port_is_shown_from_another_port() {
    let own = crate::gateway::dns::UPSTREAM_PORT;
    let mut b = published(1);
    let lo = sa([127, 0, 0, 1], own);
    let (_, out) = b.udp_inbound(LU, lo, b"q").unwrap();
    let Out::Udp { src, .. } = out else { panic!("a datagram to the backend: {out:?}") };
    assert_eq!(src.ip(), GW_IP, "shown as the gateway");
    assert_ne!(src.port(), own, "not from the gateway's own port");
    let answer_to_the_dns = udp_frame_from(backend(0).mac.0, udp_backend(0), sock(GW_IP, own), b"a");
    assert!(!b.tr.owns(NET, &answer_to_the_dns), "the DNS's, not the flow's");
    let reply = udp_frame_from(backend(0).mac.0, udp_backend(0), src, b"a");
    assert!(b.tr.owns(NET, &reply));
    b.send(&reply);
    assert_eq!(b.host.take_calls(), vec![Call::SendTo(LU, lo, b"a".to_vec())]);
    // Over TCP too.
    let tcp_client = sa([127, 0, 0, 1], own);
    b.accept(tcp_client).unwrap();
    let syn = b.one_seg();
    assert_eq!(syn.src.ip(), GW_IP);
    assert_ne!(syn.src.port(), own);
}

#[test]
fn inbound_udp_flows_time_out_without_closing_the_listener() {
    let mut b = published(2);
    let t0 = b.now;
    b.udp_inbound(LU, client(1), b"q").unwrap();
    b.poll(t0 + 30_000);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.is_empty(), "the listening socket stays open");
    assert_eq!(b.counters(NET).flows_timed_out, 1);
    // The client comes back: a new flow, on the next backend.
    let (_, out) = b.udp_inbound(LU, client(1), b"q").unwrap();
    assert!(matches!(out, Out::Udp { dst, .. } if dst == udp_backend(1)));
}

#[test]
fn an_answered_inbound_udp_flow_gets_the_long_timeout() {
    // Like egress flows (and conntrack), a flow that saw traffic both ways
    // and is still active 2 s after it opened lives 120 s without traffic,
    // not 30 s.
    let mut b = published(1);
    let t0 = b.now;
    b.udp_inbound(LU, client(1), b"q").unwrap();
    b.now = t0 + 5;
    b.send(&udp_frame_from(backend(0).mac.0, udp_backend(0), client(1), b"a"));
    b.now = t0 + 2_005;
    b.udp_inbound(LU, client(1), b"q2").unwrap();
    b.poll(t0 + 2_005 + 30_000);
    assert_eq!(b.tr.len(), 1, "answered flows live on");
    b.poll(t0 + 2_005 + 120_000);
    assert!(b.tr.is_empty());
}

#[test]
fn udp_with_no_backend_is_dropped() {
    let mut b = Bench::new();
    b.tr.set_listener(LU, Proto::Udp, sa([0, 0, 0, 0], 53), Vec::new());
    assert!(b.udp_inbound(LU, client(1), b"q").is_none());
    assert!(b.udp_inbound(ListenerId(77), client(1), b"q").is_none());
    assert!(b.tr.is_empty());
}

#[test]
fn failing_over_to_a_backend_whose_network_is_gone_resets_the_client() {
    let mut b = Bench::new();
    let gone = Backend { network: NET2, ..backend(1) };
    b.tr.set_listener(L, Proto::Tcp, sa([0, 0, 0, 0], 8080), vec![backend(0), gone]);
    b.tr.set_network(NET2, None);
    let id = b.accept(client(1)).unwrap();
    let syn = expect_syn(&mut b, client(1), backend(0));
    let rst = tcp_frame_from(backend(0).mac.0, syn.dst, syn.src, 0, syn.seq.wrapping_add(1), RST_ACK, 0, &[], &[]);
    b.send(&rst);
    b.no_frames();
    assert_eq!(b.host.take_calls(), vec![Call::Close(id, true)], "the client is not left waiting");
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET).flows_refused, 1);
}
