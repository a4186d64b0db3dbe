//! Egress UDP flows and ICMP echo.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{IcmpEchoHeader, Icmpv4Type};

use super::harness::*;
use super::tcp_egress::icmp_type_code;
use crate::nat::{Counters, Direction, Family, FlowId, Host, ListenerId, Proto};
use crate::wire::{MacAddr, VirtioNetHdr};

fn dns() -> SocketAddr {
    sa([8, 8, 8, 8], 53)
}

fn open_udp(b: &mut Bench, local: SocketAddr, to: SocketAddr, payload: &[u8]) -> FlowId {
    let before = b.host.calls.len();
    b.send(&udp_frame(local, to, payload));
    match &b.host.calls[before..] {
        [Call::Open(id, Proto::Udp, dst), Call::Send(id2, data)] => {
            assert_eq!(*dst, to);
            assert_eq!(id, id2);
            assert_eq!(data, payload);
            *id
        }
        other => panic!("expected open and send, got {other:?}"),
    }
}

#[test]
fn first_datagram_opens_later_ones_reuse_the_flow() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"query 1");
    b.host.take_calls();
    b.send(&udp_frame(sandbox(5000), dns(), b"query 2"));
    assert_eq!(b.host.take_calls(), vec![Call::Send(id, b"query 2".to_vec())]);
    b.no_frames();
    // Another source port is another flow.
    let id2 = open_udp(&mut b, sandbox(5001), dns(), b"q");
    assert_ne!(id, id2);
    // Another destination too.
    let id3 = open_udp(&mut b, sandbox(5000), sa([1, 1, 1, 1], 53), b"q");
    assert_ne!(id3, id);
    assert_eq!(b.tr.len(), 3);
    let flows = b.tr.flows(b.now);
    let f = &flows.iter().find(|(i, _)| *i == id).unwrap().1;
    assert_eq!((f.proto, f.direction, f.state), (Proto::Udp, Direction::Egress, "active"));
    assert_eq!(f.bytes_from_sandbox, 14);
    assert_eq!(b.counters(NET), Counters { flows_opened: 3, active: 3, ..Counters::default() });
}

#[test]
fn empty_datagrams_are_carried() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"");
    let (_, out) = b.datagram_in(id, b"").unwrap();
    assert!(matches!(out, Out::Udp { payload, .. } if payload.is_empty()));
}

#[test]
fn datagram_in_builds_a_reply_with_swapped_addresses() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"query");
    let (df, out) = b.datagram_in(id, b"the answer").expect("a frame");
    assert_eq!(df.port, GW_PORT);
    let Out::Udp { src_mac, dst_mac, src, dst, payload } = out else { panic!("not UDP") };
    assert_eq!((src, dst), (dns(), sandbox(5000)));
    assert_eq!((src_mac, dst_mac), (GW_MAC, SB_MAC));
    assert_eq!(payload, b"the answer");
    let f = &b.tr.flows(b.now)[0].1;
    assert_eq!(f.bytes_to_sandbox, 10);
    // A datagram over the MTU: IP fragments, as a router would pass it on.
    let big = vec![0xa5u8; 8000];
    let (fragments, payload) = b.datagram_in_fragmented(id, &big);
    assert_eq!((fragments, payload), (6, big), "8,008 bytes of UDP in 1,480-byte pieces");
    // The largest that fits the MTU is one frame.
    let (df, _) = b.datagram_in(id, &vec![1u8; 1500 - 28]).expect("one frame");
    assert_eq!(df.len, 14 + 1500);
    // Odd lengths complete their checksum too.
    for n in [1usize, 3, 1471] {
        let p: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5a).collect();
        let (_, out) = b.datagram_in(id, &p).unwrap();
        assert!(matches!(out, Out::Udp { payload, .. } if payload == p));
    }
}

#[test]
fn unanswered_flow_times_out_after_30s() {
    let mut b = Bench::new();
    let t0 = b.now;
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.host.take_calls();
    assert_eq!(b.tr.next_deadline(), Some(t0 + 30_000));
    b.poll(t0 + 29_999);
    assert_eq!(b.tr.len(), 1);
    b.poll(t0 + 30_000);
    assert_eq!(b.host.take_calls(), vec![Call::Close(id, false)]);
    assert!(b.tr.is_empty());
    let c = b.counters(NET);
    assert_eq!((c.flows_timed_out, c.active), (1, 0));
    b.no_frames();
}

#[test]
fn traffic_from_the_sandbox_keeps_an_unanswered_flow() {
    let mut b = Bench::new();
    let t0 = b.now;
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.now = t0 + 20_000;
    b.send(&udp_frame(sandbox(5000), dns(), b"q again"));
    b.poll(t0 + 30_000);
    assert_eq!(b.tr.len(), 1);
    b.poll(t0 + 49_999);
    assert_eq!(b.tr.len(), 1);
    b.poll(t0 + 50_000);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.contains(&Call::Close(id, false)));
}

#[test]
fn a_one_shot_exchange_times_out_after_30s_a_stream_after_120s() {
    let mut b = Bench::new();
    let t0 = b.now;
    // A query and its answer, nothing more (a DNS lookup): 30 s, as an
    // unanswered flow, so one-shot lookups do not hold sockets for 2 min.
    let once = open_udp(&mut b, sandbox(5001), dns(), b"q");
    b.now = t0 + 10;
    b.datagram_in(once, b"a").unwrap();
    b.poll(t0 + 10 + 29_999);
    assert_eq!(b.tr.len(), 1);
    b.poll(t0 + 10 + 30_000);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.contains(&Call::Close(once, false)));
    // Answered and still active 2 s after it opened: a stream, 120 s.
    let t0 = b.now;
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.now = t0 + 10;
    b.datagram_in(id, b"a").unwrap();
    b.now = t0 + 2_500;
    b.send(&udp_frame(sandbox(5000), dns(), b"more"));
    b.poll(t0 + 2_500 + 30_000);
    assert_eq!(b.tr.len(), 1, "a stream: the long timeout");
    b.poll(t0 + 2_500 + 119_999);
    assert_eq!(b.tr.len(), 1);
    b.poll(t0 + 2_500 + 120_000);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.contains(&Call::Close(id, false)));
    assert_eq!(b.counters(NET).flows_timed_out, 2);
    // A datagram for a flow that is gone is dropped.
    assert!(b.datagram_in(id, b"late").is_none());
}

#[test]
fn send_refused_answers_port_unreachable_quoting_the_datagram() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.host.send_errors.insert(id, libc::ECONNREFUSED);
    let frame = udp_frame(sandbox(5000), dns(), b"second");
    b.send(&frame);
    let mut f = b.frames();
    assert_eq!(f.len(), 1);
    let Out::Icmp { src, dst, icmp_type, payload } = f.remove(0) else { panic!("not ICMP") };
    assert_eq!((src, dst), (v4(dns().ip()), SB_IP));
    assert_eq!(icmp_type_code(&icmp_type), (3, 3));
    assert_eq!(payload, &frame[14..14 + 28], "the datagram's IP header and 8 bytes");
    assert_eq!(b.tr.len(), 1, "the flow stays");
    // WouldBlock is not an error worth telling.
    b.host.capacity.insert(id, 0);
    b.send(&udp_frame(sandbox(5000), dns(), b"third"));
    b.no_frames();
}

#[test]
fn a_udp_gso_train_leaves_as_one_train_and_a_refusal_is_answered_once() {
    let mut b = Bench::new();
    let train: Vec<u8> = (0..3500u32).map(|i| (i / 1000) as u8).collect();
    let frame = udp_frame(sandbox(5000), dns(), &train);
    b.send_train(&frame, 1000).expect("a train is supported");
    let id = match b.host.calls.as_slice() {
        [Call::Open(id, Proto::Udp, to), Call::SendTrain(id2, data, 1000)] if to == &dns() && id == id2 => {
            assert_eq!(data, &train, "the datagrams back to back, as the sandbox sent them");
            *id
        }
        other => panic!("expected open and one train, got {other:?}"),
    };
    let f = b.tr.flows(b.now).into_iter().find(|(i, _)| *i == id).unwrap().1;
    assert_eq!(f.bytes_from_sandbox, 3500);
    // A "train" of one datagram (its payload no longer than a segment) is
    // a datagram.
    b.host.calls.clear();
    b.send_train(&udp_frame(sandbox(5000), dns(), &[7; 1000]), 1000).unwrap();
    assert_eq!(b.host.calls, vec![Call::Send(id, vec![7; 1000])]);
    // The peer refuses: one port unreachable for the train, quoting its
    // headers.
    b.host.calls.clear();
    b.host.send_errors.insert(id, libc::ECONNREFUSED);
    b.send_train(&frame, 1000).unwrap();
    let mut f = b.frames();
    assert_eq!(f.len(), 1);
    let Out::Icmp { icmp_type, payload, .. } = f.remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 3));
    assert_eq!(payload, &frame[14..14 + 28]);
    // A segment size of 0 is no train at all.
    assert_eq!(b.send_train(&frame, 0), Err(crate::nat::Unsupported::Malformed));
    // An echo request's GSO size means nothing: it is one message.
    b.host.calls.clear();
    b.send_train(&echo_frame(SB_IP, remote_ip(), 9, 1, &[1; 300]), 100).unwrap();
    assert!(matches!(b.host.calls.as_slice(), [Call::Open(_, Proto::Icmp, _), Call::Send(_, m)] if m.len() == 308));
}

#[test]
fn datagrams_of_one_flow_in_one_batch_leave_as_trains_in_order() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    let d = |n: usize, v: u8| udp_frame(sandbox(5000), dns(), &vec![v; n]);
    // Five of 1,000 bytes and a short one: one train.
    b.host.calls.clear();
    b.send_batch(&[d(1000, 1), d(1000, 2), d(1000, 3), d(1000, 4), d(1000, 5), d(300, 6)]);
    let want: Vec<u8> = [(1000, 1), (1000, 2), (1000, 3), (1000, 4), (1000, 5), (300, 6)]
        .iter()
        .flat_map(|&(n, v)| vec![v; n])
        .collect();
    assert_eq!(b.host.calls, vec![Call::SendTrain(id, want, 1000)]);
    // A short datagram ends a train; a larger one starts the next.
    b.host.calls.clear();
    b.send_batch(&[d(1000, 1), d(500, 2), d(1000, 3), d(1200, 4), d(1200, 5)]);
    let bytes = |parts: &[(usize, u8)]| parts.iter().flat_map(|&(n, v)| vec![v; n]).collect::<Vec<u8>>();
    assert_eq!(
        b.host.calls,
        vec![
            Call::SendTrain(id, bytes(&[(1000, 1), (500, 2)]), 1000),
            Call::Send(id, vec![3; 1000]),
            Call::SendTrain(id, bytes(&[(1200, 4), (1200, 5)]), 1200),
        ]
    );
    // At most 64 datagrams a train.
    b.host.calls.clear();
    b.send_batch(&vec![d(100, 7); 65]);
    assert_eq!(b.host.calls, vec![Call::SendTrain(id, vec![7; 6400], 100), Call::Send(id, vec![7; 100])]);
    // Two flows interleaved: each datagram leaves alone, in order.
    let other = open_udp(&mut b, sandbox(5001), dns(), b"q");
    b.host.calls.clear();
    let e = |v: u8| udp_frame(sandbox(5001), dns(), &[v; 10]);
    b.send_batch(&[d(10, 1), e(2), d(10, 3)]);
    assert_eq!(
        b.host.calls,
        vec![Call::Send(id, vec![1; 10]), Call::Send(other, vec![2; 10]), Call::Send(id, vec![3; 10])]
    );
    let f = b.tr.flows(b.now).into_iter().find(|(i, _)| *i == id).unwrap().1;
    assert_eq!(f.bytes_from_sandbox, 1 + 5300 + 4900 + 6500 + 20, "every datagram counted as it came");
}

#[test]
fn datagrams_are_not_held_when_holding_is_off() {
    let mut b = Bench::new();
    b.tr.set_hold_datagrams(false);
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.host.calls.clear();
    let d = |v: u8| udp_frame(sandbox(5000), dns(), &[v; 100]);
    b.send_batch(&[d(1), d(2)]);
    assert_eq!(b.host.calls, vec![Call::Send(id, vec![1; 100]), Call::Send(id, vec![2; 100])]);
}

#[test]
fn a_refused_train_is_answered_once_quoting_its_first_datagram() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.host.send_errors.insert(id, libc::ECONNREFUSED);
    let first = udp_frame(sandbox(5000), dns(), &[1; 100]);
    b.host.calls.clear();
    b.send_batch(&[first.clone(), udp_frame(sandbox(5000), dns(), &[2; 100])]);
    let train: Vec<u8> = [[1u8; 100], [2; 100]].concat();
    assert_eq!(b.host.calls, vec![Call::SendTrain(id, train, 100)], "one train");
    let mut f = b.frames();
    assert_eq!(f.len(), 1, "one error for the train");
    let Out::Icmp { icmp_type, payload, .. } = f.remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 3));
    assert_eq!(payload, &first[14..14 + 28]);
}

#[test]
fn the_default_host_sends_a_train_one_datagram_at_a_time_each_whatever_the_others_met() {
    struct Counting(Vec<usize>, Option<usize>);
    impl Host for Counting {
        fn open(&mut self, _: FlowId, _: Proto, _: SocketAddr) -> std::io::Result<()> {
            Ok(())
        }
        fn send(&mut self, _: FlowId, data: &[u8]) -> std::io::Result<usize> {
            if self.1 == Some(self.0.len()) {
                self.1 = None;
                return Err(errno(libc::EMSGSIZE));
            }
            self.0.push(data.len());
            Ok(data.len())
        }
        fn send_to(&mut self, _: ListenerId, _: SocketAddr, data: &[u8]) -> std::io::Result<()> {
            self.0.push(data.len());
            Ok(())
        }
        fn shutdown_write(&mut self, _: FlowId) {}
        fn discard(&mut self, _: FlowId, _: usize) {}
        fn rewind(&mut self, _: FlowId) {}
        fn close(&mut self, _: FlowId, _: bool) {}
        fn path_mtu(&mut self, _: FlowId) -> Option<u32> {
            None
        }
    }
    let mut h = Counting(Vec::new(), None);
    h.send_train(FlowId(0), &[0; 2500], 1000).unwrap();
    h.send_train_to(ListenerId(0), dns(), &[0; 300], 100).unwrap();
    assert_eq!(h.0, [1000, 1000, 500, 100, 100, 100]);
    let mut h = Counting(Vec::new(), Some(1));
    assert_eq!(h.send_train(FlowId(0), &[0; 2500], 1000).unwrap_err().raw_os_error(), Some(libc::EMSGSIZE));
    assert_eq!(h.0, [1000, 500], "the datagram after the failed one still sent");
}

#[test]
fn a_train_from_the_host_reaches_the_sandbox_as_one_uso_frame_that_cuts_into_its_datagrams() {
    for (local, remote) in
        [(sandbox(5000), dns()), (sandbox6(5000), sock(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53), 53))]
    {
        let mut b = Bench::new();
        let id = open_udp(&mut b, local, remote, b"q");
        let train: Vec<u8> = (0..3300u32).map(|i| (i / 1000) as u8 + 1).collect();
        let (made, queued) = b.train_in(id, &train, 1000);
        assert!(queued.is_empty(), "nothing but the one frame");
        let (df, frame) = made.expect("one frame");
        let at = Family::of(local.ip()).udp_payload();
        assert_eq!(
            (df.hdr.gso_type, df.hdr.gso_size, usize::from(df.hdr.hdr_len)),
            (VirtioNetHdr::GSO_UDP_L4, 1000, at)
        );
        assert_eq!(df.len, at + 3300);
        // Cut as the sandbox's kernel (or an AF_XDP port) cuts it: four
        // datagrams from the remote, each with a valid checksum.
        let mut segments = crate::offload::SegmentBuf::new();
        let n = crate::offload::segment(&frame, &df.hdr, &mut segments).expect("a valid USO frame");
        let got: Vec<Out> = (0..n).map(|i| parse_out(segments.get(i).unwrap(), true)).collect();
        let want: Vec<Vec<u8>> = train.chunks(1000).map(<[u8]>::to_vec).collect();
        let payloads: Vec<Vec<u8>> = got
            .into_iter()
            .map(|o| match o {
                Out::Udp { src, dst, payload, .. } => {
                    assert_eq!((src, dst), (remote, local));
                    payload
                }
                other => panic!("not UDP: {other:?}"),
            })
            .collect();
        assert_eq!(payloads, want);
        let f = b.tr.flows(b.now).into_iter().find(|(i, _)| *i == id).unwrap().1;
        assert_eq!(f.bytes_to_sandbox, 3300);
        // A "train" of one datagram is a datagram.
        let (made, _) = b.train_in(id, &[3; 700], 1000);
        assert_eq!(made.expect("a frame").0.hdr.gso_type, VirtioNetHdr::GSO_NONE);
    }
}

#[test]
fn a_train_of_datagrams_wider_than_the_network_reaches_the_sandbox_datagram_by_datagram_in_fragments() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    // Three 2,000-byte datagrams and a 300-byte one on a 1,500-byte network.
    let train: Vec<u8> = (0..6300u32).map(|i| (i / 2000) as u8 + 1).collect();
    let (made, queued) = b.train_in(id, &train, 2000);
    assert!(made.is_none(), "no frame over the MTU");
    assert!(queued.iter().all(|f| f.len() - 14 <= MTU as usize), "every frame fits the MTU");
    use crate::nat::reassembly::{Outcome, Reassembler, is_fragment};
    let mut reassembly = Reassembler::new();
    let mut payloads = Vec::new();
    for f in &queued {
        if !is_fragment(f) {
            let Out::Udp { payload, .. } = parse_out(f, true) else { panic!("not UDP") };
            payloads.push(payload);
        } else if let Outcome::Complete(whole) = reassembly.add(f, 0, 0) {
            use crate::offload::csum;
            let pseudo = csum::pseudo_v4(&whole[26..30], &whole[30..34], 17, whole.len() - 34);
            assert_eq!(csum::finish(csum::add(pseudo, &whole[34..])), 0, "the UDP checksum is complete and right");
            payloads.push(whole[42..].to_vec());
        }
    }
    let want: Vec<Vec<u8>> = train.chunks(2000).map(<[u8]>::to_vec).collect();
    assert_eq!(payloads, want, "each datagram whole, in order, its checksum complete");
    assert_eq!(queued.len(), 3 * 2 + 1, "two fragments each, the short one whole");
}

#[test]
fn open_unreachable_answers_icmp_and_refuses() {
    for (err, code) in [(libc::ENETUNREACH, 0u8), (libc::EHOSTUNREACH, 1), (libc::EACCES, 1)] {
        let mut b = Bench::new();
        b.host.open_errors.insert(dns(), err);
        let frame = udp_frame(sandbox(5000), dns(), b"q");
        b.send(&frame);
        let mut f = b.frames();
        let Out::Icmp { icmp_type, payload, .. } = f.remove(0) else { panic!("not ICMP") };
        assert_eq!(icmp_type_code(&icmp_type), (3, code));
        assert_eq!(payload, &frame[14..14 + 28]);
        assert!(b.tr.is_empty());
        let c = b.counters(NET);
        assert_eq!((c.flows_opened, c.flows_refused, c.active), (1, 1, 0));
        assert!(matches!(b.host.calls.last(), Some(Call::Close(_, false))));
    }
}

#[test]
fn an_icmp_error_quotes_a_header_with_options_whole() {
    // A datagram whose IPv4 header carries 40 bytes of options (NOPs, and
    // an end of list): the quote is the 60-byte header and 8 bytes more.
    let mut b = Bench::new();
    b.host.open_errors.insert(dns(), libc::ENETUNREACH);
    let frame = with_ip_options(&udp_frame(sandbox(5000), dns(), b"query"), 40);
    b.send(&frame);
    let Out::Icmp { icmp_type, payload, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 0));
    assert_eq!(payload, &frame[14..14 + 68]);

    // The same on a send error of an open flow.
    let id = open_udp(&mut b, sandbox(5001), dns(), b"q");
    b.host.send_errors.insert(id, libc::ECONNREFUSED);
    let frame = with_ip_options(&udp_frame(sandbox(5001), dns(), b"query"), 40);
    b.send(&frame);
    let Out::Icmp { icmp_type, payload, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 3));
    assert_eq!(payload, &frame[14..14 + 68]);
}

/// Inserts `n` bytes (a multiple of 4) of IPv4 options into a frame.
pub(super) fn with_ip_options(frame: &[u8], n: usize) -> Vec<u8> {
    assert!(n.is_multiple_of(4) && n <= 40);
    let mut v = frame[..34].to_vec();
    v.extend(std::iter::repeat_n(1u8, n - 1));
    v.push(0);
    v.extend_from_slice(&frame[34..]);
    let ip = &mut v[14..14 + 20 + n];
    ip[0] = 0x40 | ((20 + n) / 4) as u8;
    let total = u16::from_be_bytes([ip[2], ip[3]]) + n as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[10..12].fill(0);
    let check = !(ones_sum(0, ip) as u16);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    v
}

#[test]
fn socket_errors_are_reported_as_icmp() {
    let mut b = Bench::new();
    let id = open_udp(&mut b, sandbox(5000), dns(), b"q");
    b.tr.datagram_error(id, &errno(libc::ECONNREFUSED), &mut b.host, &mut b.out);
    let Out::Icmp { icmp_type, payload, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 3));
    assert_eq!(&payload[12..16], &SB_IP.octets());
    assert_eq!(&payload[16..20], &v4(dns().ip()).octets());
    assert_eq!(u16::from_be_bytes([payload[20], payload[21]]), 5000);
    assert_eq!(u16::from_be_bytes([payload[22], payload[23]]), 53);
    assert_eq!(payload[9], 17);
    b.tr.host_failed(id, &mut b.host, &mut b.out);
    assert_eq!(b.frames().len(), 1);
    b.tr.datagram_error(id, &errno(libc::ENETUNREACH), &mut b.host, &mut b.out);
    let Out::Icmp { icmp_type, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 0));
    assert_eq!(b.tr.len(), 1, "errors do not end a UDP flow");
}

#[test]
fn datagrams_to_the_gateway_are_not_translated() {
    let mut b = Bench::new();
    b.send(&udp_frame(sandbox(5000), sock(GW_IP, 53), b"q"));
    b.send(&echo_frame(SB_IP, GW_IP, 1, 1, b"ping"));
    assert!(b.host.calls.is_empty());
    assert!(b.tr.is_empty());
    b.no_frames();
}

#[test]
fn unknown_network_is_refused() {
    let mut b = Bench::new();
    let r = b.tr.from_sandbox(
        crate::port::NetworkId(5),
        &udp_frame(sandbox(1), dns(), b"x"),
        None,
        b.now,
        &mut b.host,
        &mut b.out,
    );
    assert!(r.is_err());
    assert!(b.host.calls.is_empty());
}

// ------------------------------------------------------------------ ICMP echo

fn remote_ip() -> Ipv4Addr {
    Ipv4Addr::new(1, 1, 1, 1)
}

#[test]
fn echo_request_opens_a_ping_flow_and_sends_the_message() {
    let mut b = Bench::new();
    let frame = echo_frame(SB_IP, remote_ip(), 0x1234, 1, b"abcdefgh");
    b.send(&frame);
    let calls = b.host.take_calls();
    let [Call::Open(id, Proto::Icmp, to), Call::Send(id2, msg)] = &calls[..] else { panic!("{calls:?}") };
    assert_eq!(*to, sock(remote_ip(), 0));
    assert_eq!(id, id2);
    assert_eq!(msg, &frame[34..], "the whole ICMP message");
    // The next request of the same id reuses it.
    b.send(&echo_frame(SB_IP, remote_ip(), 0x1234, 2, b"abcdefgh"));
    assert!(matches!(&b.host.take_calls()[..], [Call::Send(i, _)] if i == id));
    // Another id is another flow.
    b.send(&echo_frame(SB_IP, remote_ip(), 0x1235, 1, b"x"));
    assert!(matches!(&b.host.take_calls()[..], [Call::Open(i, Proto::Icmp, _), Call::Send(..)] if i != id));
    let f = b.tr.flows(b.now);
    assert!(f.iter().any(|(_, f)| f.proto == Proto::Icmp && f.sandbox == sock(SB_IP, 0x1234)));
}

#[test]
fn echo_reply_gets_the_sandbox_id_back_with_a_valid_checksum() {
    let mut b = Bench::new();
    b.send(&echo_frame(SB_IP, remote_ip(), 0x1234, 7, b"payload!"));
    let Some(Call::Open(id, ..)) = b.host.take_calls().first().cloned() else { panic!() };
    // The ping socket's reply carries the kernel's id (and its checksum).
    let mut reply = Vec::new();
    etherparse::Icmpv4Header::with_checksum(Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x9999, seq: 7 }), b"payload!")
        .write(&mut reply)
        .unwrap();
    reply.extend_from_slice(b"payload!");
    let (df, out) = b.echo_in(id, &reply).expect("a frame");
    assert_eq!(df.port, GW_PORT);
    assert_eq!(df.hdr, crate::wire::VirtioNetHdr::default(), "complete checksums, no offload");
    let Out::Icmp { src, dst, icmp_type, payload } = out else { panic!("not ICMP") };
    assert_eq!((src, dst), (remote_ip(), SB_IP));
    assert_eq!(icmp_type, Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x1234, seq: 7 }));
    assert_eq!(payload, b"payload!");
    // Odd length.
    let mut odd = reply.clone();
    odd.push(0x77);
    let (_, out) = b.echo_in(id, &odd).unwrap();
    assert!(matches!(out, Out::Icmp { payload, .. } if payload == b"payload!\x77"));
}

#[test]
fn non_reply_messages_are_not_forwarded() {
    let mut b = Bench::new();
    b.send(&echo_frame(SB_IP, remote_ip(), 0x1234, 7, b""));
    let Some(Call::Open(id, ..)) = b.host.take_calls().first().cloned() else { panic!() };
    assert!(b.echo_in(id, &[3, 1, 0, 0, 0, 0, 0, 0]).is_none());
    assert!(b.echo_in(id, &[0, 0, 0]).is_none(), "too short");
}

#[test]
fn echo_flows_time_out_like_udp() {
    let mut b = Bench::new();
    let t0 = b.now;
    b.send(&echo_frame(SB_IP, remote_ip(), 0x1234, 7, b""));
    let Some(Call::Open(id, ..)) = b.host.take_calls().first().cloned() else { panic!() };
    b.poll(t0 + 30_000);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.contains(&Call::Close(id, false)));
}

#[test]
fn echo_unreachable_answers_icmp() {
    let mut b = Bench::new();
    b.host.open_errors.insert(sock(remote_ip(), 0), libc::ENETUNREACH);
    let frame = echo_frame(SB_IP, remote_ip(), 0x1234, 7, b"abc");
    b.send(&frame);
    let Out::Icmp { icmp_type, payload, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(icmp_type_code(&icmp_type), (3, 0));
    assert_eq!(payload, &frame[14..14 + 28]);
}

#[test]
fn echo_error_later_quotes_the_echo_id() {
    // An error reported on the ping socket later (a rebuilt quote): the
    // sandbox's kernel finds its ping socket by the quoted echo id, which
    // sits at offset 4 of the quoted ICMP header, after type 8 and code 0.
    let mut b = Bench::new();
    b.send(&echo_frame(SB_IP, remote_ip(), 0x1234, 7, b""));
    let Some(Call::Open(id, ..)) = b.host.take_calls().first().cloned() else { panic!() };
    b.tr.datagram_error(id, &errno(libc::EHOSTUNREACH), &mut b.host, &mut b.out);
    let Out::Icmp { payload, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(payload[9], 1);
    assert_eq!((payload[20], payload[21]), (8, 0), "an echo request is quoted");
    assert_eq!(u16::from_be_bytes([payload[24], payload[25]]), 0x1234);
}

/// A sandbox on `NET` and `NET2` whose socket is bound to its `NET` address
/// routes through `NET2`'s gateway (Linux's weak host model): the flow runs
/// on `NET2`, its answers go to the endpoint there, for the bound address,
/// and it ends with either endpoint.
#[test]
fn a_flow_from_the_sandboxs_address_on_another_network_ends_with_either_endpoint() {
    let sb2_mac = [0x02, 0, 0, 0, 1, 0x02];
    let sb2_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2));
    for gone in ["the endpoint it runs through", "the endpoint whose address it has"] {
        let mut b = Bench::new();
        b.send_on(NET2, &udp_frame_from(sb2_mac, sandbox(5000), dns(), b"weak host"));
        let id = match b.host.take_calls().as_slice() {
            [Call::Open(id, Proto::Udp, to), Call::Send(_, data)] if *to == dns() && data == b"weak host" => *id,
            other => panic!("expected open and send, got {other:?}"),
        };
        let (df, out) = b.datagram_in(id, b"answer").expect("an answer frame");
        assert_eq!(df.port, GW2_PORT, "the answer enters at the gateway it went out through");
        assert_eq!(
            out,
            Out::Udp {
                src_mac: GW2_MAC,
                dst_mac: sb2_mac,
                src: dns(),
                dst: sandbox(5000),
                payload: b"answer".to_vec()
            }
        );
        let ended = match gone {
            "the endpoint it runs through" => b.tr.forget_endpoint(NET2, MacAddr(sb2_mac), &[sb2_ip], &mut b.host),
            _ => b.tr.forget_endpoint(NET, MacAddr(SB_MAC), &[SB_IP.into()], &mut b.host),
        };
        assert_eq!(ended, 1, "{gone}");
        assert!(b.tr.is_empty(), "{gone}");
        assert_eq!(b.host.take_calls(), vec![Call::Close(id, false)], "{gone}");
    }
}
