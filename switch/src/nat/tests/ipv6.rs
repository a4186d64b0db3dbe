//! IPv6: egress TCP, UDP and ICMPv6 echo, ICMPv6 errors, extension
//! headers, and published ports reached by IPv6 clients (their own
//! address kept, loopback and link-local ones shown as the gateway, a
//! family the backend lacks carried to its other address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{Icmpv6Type, icmpv6::DestUnreachableCode};

use super::harness::*;
use crate::nat::{Backend, Counters, Direction, FlowId, ListenerId, Proto, Unsupported};
use crate::port::NetworkId;
use crate::wire::MacAddr;
use crate::wire::VirtioNetHdr;

const ISN: u32 = 7_000_000;
const L6: ListenerId = ListenerId(5);
const L4: ListenerId = ListenerId(6);
const LU6: ListenerId = ListenerId(7);
/// A network whose gateway has IPv6 only.
const NET6: NetworkId = NetworkId(2);
const GW6_PORT: crate::port::PortId = crate::port::PortId(11);

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(37).wrapping_add(salt)).collect()
}

fn icmp6(out: Out) -> (Ipv6Addr, Ipv6Addr, Icmpv6Type, Vec<u8>) {
    match out {
        Out::Icmp6 { src, dst, icmp_type, payload } => (src, dst, icmp_type, payload),
        other => panic!("expected ICMPv6, got {other:?}"),
    }
}

/// The quote of an ICMPv6 error: the IPv6 header and 8 bytes of the
/// packet from `src` to `dst`.
#[track_caller]
fn check_quote6(quote: &[u8], next_header: u8, src: SocketAddr, dst: SocketAddr) {
    assert_eq!(quote.len(), 48, "IPv6 header and 8 bytes: {quote:?}");
    assert_eq!(quote[0] >> 4, 6);
    assert_eq!(quote[6], next_header);
    assert_eq!(&quote[8..24], &v6(src.ip()).octets());
    assert_eq!(&quote[24..40], &v6(dst.ip()).octets());
    if next_header != 58 {
        assert_eq!(u16::from_be_bytes([quote[40], quote[41]]), src.port());
        assert_eq!(u16::from_be_bytes([quote[42], quote[43]]), dst.port());
    }
}

// ------------------------------------------------------------------ egress TCP

#[test]
fn an_ipv6_connection_opens_an_ipv6_socket_and_handshakes_with_ipv6_frames() {
    let mut b = Bench::new();
    let id = b.syn(sandbox6(40_000), remote6(), ISN, Some(7));
    assert_eq!(b.host.take_calls(), vec![Call::Open(id, Proto::Tcp, remote6())]);
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let sa = b.one_seg();
    assert!(sa.syn && sa.ack_flag);
    assert_eq!((sa.src, sa.dst, sa.src_mac, sa.dst_mac), (remote6(), sandbox6(40_000), GW_MAC, SB_MAC));
    assert_eq!(sa.ack, ISN + 1);
    assert_eq!(sa.mss, Some(OUR_MSS6), "1500 less the IPv6 and TCP headers");
    assert_eq!(sa.wscale, Some(7));
    let f = &b.tr.flows(b.now)[0].1;
    assert_eq!((f.sandbox, f.remote, f.outer_remote), (sandbox6(40_000), remote6(), remote6()));
    assert_eq!((f.direction, f.state), (Direction::Egress, "syn-received"));
    assert_eq!(b.tr.payload_offset(id), Some(74), "14 + 40 + 20");
}

#[test]
fn ipv6_mss_follows_the_mtu_and_never_goes_below_1220() {
    for (mtu, want) in [(1500, 1440), (9000, 8940), (1280, 1220), (1000, 1220)] {
        let mut b = Bench::new();
        b.tr.set_network(NET, Some(crate::nat::NetView { mtu, ..view() }));
        let id = b.syn(sandbox6(40_000), remote6(), ISN, None);
        b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
        assert_eq!(b.one_seg().mss, Some(want), "MTU {mtu}");
    }
}

#[test]
fn ipv6_bytes_flow_both_ways_with_gso_of_the_sandboxs_mss() {
    let mut b = Bench::new();
    let mut c = b.connect_to(sandbox6(40_000), remote6(), ISN, Some(7));
    b.host.take_calls();
    assert!(b.pump(c.mss).is_empty());
    // Sandbox → host: written at once, acked once.
    let up = pattern(3000, 1);
    let f = c.data(&up);
    b.send(&f);
    assert_eq!(b.host.written(c.id), &up[..]);
    let acks = b.flush();
    assert_eq!(acks.len(), 1);
    let ack = acks[0].clone().tcp();
    assert_eq!((ack.ack, ack.src, ack.dst), (c.snd, remote6(), sandbox6(40_000)));
    // Host → sandbox: frames up to 64 KiB, GSO over IPv6.
    let down = pattern(150_000, 2);
    b.host.deliver(c.id, &down);
    b.tr.readable(c.id);
    let segs = b.pump(c.mss);
    assert!(segs.len() >= 3);
    let mut got = Vec::new();
    let mut seq = c.rcv;
    for (_, s) in &segs {
        assert_eq!(s.seq, seq);
        assert_eq!((s.src, s.dst), (remote6(), sandbox6(40_000)));
        seq = seq.wrapping_add(s.payload.len() as u32);
        got.extend_from_slice(&s.payload);
    }
    assert_eq!(got, down);
    // The sandbox acks all of it: discarded from the socket.
    b.host.take_calls();
    let ack = tcp_frame(c.local, c.remote, c.snd, seq, ACK, 65535, &[], &[]);
    b.send(&ack);
    assert_eq!(b.host.take_calls(), vec![Call::Discard(c.id, 150_000)]);
}

#[test]
fn a_data_frame_toward_the_sandbox_is_an_ipv6_tso_frame() {
    let mut b = Bench::new();
    let c = b.connect_to(sandbox6(40_000), remote6(), ISN, None);
    assert!(b.pump(c.mss).is_empty());
    let data = pattern(5000, 3);
    b.host.deliver(c.id, &data);
    b.tr.readable(c.id);
    let (id, room) = b.tr.next_sendable().unwrap();
    let chunk = b.host.peek(id, room);
    let mut buf = vec![0u8; 74 + chunk.len()];
    buf[74..].copy_from_slice(&chunk);
    let df = b.tr.tcp_peeked(id, &mut buf, chunk.len(), b.now).unwrap();
    assert_eq!(df.len, buf.len());
    assert_eq!(df.hdr.gso_type, VirtioNetHdr::GSO_TCPV6);
    assert_eq!((df.hdr.gso_size, df.hdr.hdr_len, df.hdr.csum_start, df.hdr.csum_offset), (1460, 74, 54, 16));
    let seg = complete_data(&mut buf, &df.hdr, Some(1460)).tcp();
    assert_eq!(seg.payload, chunk);
}

#[test]
fn ipv6_retransmits_on_duplicate_acks_and_timeout() {
    let mut b = Bench::new();
    let c = b.connect_to(sandbox6(40_000), remote6(), ISN, None);
    assert!(b.pump(c.mss).is_empty());
    b.host.deliver(c.id, b"0123456789");
    b.tr.readable(c.id);
    let t0 = b.now;
    assert_eq!(b.pump(c.mss).len(), 1);
    b.host.take_calls();
    let dup = c.ack(65535);
    for _ in 0..3 {
        b.send(&dup);
    }
    assert_eq!(b.host.take_calls(), vec![Call::Rewind(c.id)]);
    let again = b.pump(c.mss);
    assert_eq!((again[0].1.seq, &again[0].1.payload[..]), (c.rcv, &b"0123456789"[..]));
    b.poll(t0 + 200);
    assert_eq!(b.host.take_calls(), vec![Call::Rewind(c.id)], "the RTO fires too");
}

#[test]
fn an_ipv6_sandbox_without_mss_option_gets_segments_of_1220() {
    let mut b = Bench::new();
    let f = tcp_frame(sandbox6(40_001), remote6(), ISN, 0, SYN, 64240, &[], &[]);
    b.send(&f);
    let Some(Call::Open(id, ..)) = b.host.take_calls().pop() else { panic!("no socket opened") };
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let sa = b.one_seg();
    b.send(&tcp_frame(sandbox6(40_001), remote6(), ISN + 1, sa.seq + 1, ACK, 65535, &[], &[]));
    b.host.deliver(id, &pattern(4000, 4));
    b.tr.readable(id);
    let segs = b.pump(1220);
    assert_eq!(segs.iter().map(|(_, s)| s.payload.len()).sum::<usize>(), 4000);
}

#[test]
fn a_refused_ipv6_connection_is_reset_and_an_unreachable_one_answered_with_icmpv6() {
    let mut b = Bench::new();
    let id = b.syn(sandbox6(40_000), remote6(), ISN, None);
    b.tr.connected(id, Err(errno(libc::ECONNREFUSED)), b.now, &mut b.host, &mut b.out);
    let rst = b.one_seg();
    assert!(rst.rst && rst.ack_flag);
    assert_eq!((rst.src, rst.dst, rst.ack), (remote6(), sandbox6(40_000), ISN + 1));
    for (err, code) in
        [(libc::ENETUNREACH, DestUnreachableCode::NoRoute), (libc::EHOSTUNREACH, DestUnreachableCode::Address)]
    {
        let id = b.syn(sandbox6(40_010), remote6(), ISN, None);
        b.tr.connected(id, Err(errno(err)), b.now, &mut b.host, &mut b.out);
        let mut f = b.frames();
        assert_eq!(f.len(), 1);
        let (src, dst, icmp_type, payload) = icmp6(f.remove(0));
        assert_eq!((IpAddr::V6(src), IpAddr::V6(dst)), (remote6().ip(), sandbox6(0).ip()));
        assert_eq!(icmp_type, Icmpv6Type::DestinationUnreachable(code));
        check_quote6(&payload, 6, sandbox6(40_010), remote6());
        assert_eq!(u32::from_be_bytes(payload[44..48].try_into().unwrap()), ISN, "the SYN's sequence number");
    }
    assert_eq!(b.counters(NET).flows_refused, 3);
}

#[test]
fn an_ipv6_syn_to_the_gateway_itself_is_not_translated() {
    let mut b = Bench::new();
    let f = tcp_frame(sandbox6(40_000), sock(GW6_IP, 53), ISN, 0, SYN, 64240, &[], &[]);
    b.send(&f);
    assert!(b.host.take_calls().is_empty());
    assert!(b.frames()[0].clone().tcp().rst, "a stray SYN to the gateway is reset");
}

// ------------------------------------------------------------------ egress UDP and ICMPv6

fn dns6() -> SocketAddr {
    sa6([0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888], 53)
}

fn open_udp6(b: &mut Bench, local: SocketAddr, to: SocketAddr) -> FlowId {
    b.send(&udp_frame(local, to, b"query"));
    match &b.host.take_calls()[..] {
        [Call::Open(id, Proto::Udp, dst), Call::Send(id2, data)] if id == id2 && *dst == to => {
            assert_eq!(data, b"query");
            *id
        }
        other => panic!("expected open and send, got {other:?}"),
    }
}

#[test]
fn ipv6_udp_flows_carry_datagrams_both_ways() {
    let mut b = Bench::new();
    let id = open_udp6(&mut b, sandbox6(5000), dns6());
    b.send(&udp_frame(sandbox6(5000), dns6(), b"again"));
    assert_eq!(b.host.take_calls(), vec![Call::Send(id, b"again".to_vec())]);
    assert_eq!(b.tr.payload_offset(id), Some(62));
    let (fragments, got) = b.datagram_in_fragmented(id, &pattern(8001, 5));
    assert_eq!((fragments, got), (6, pattern(8001, 5)), "over the MTU: 8,009 bytes in 1,448-byte pieces");
    for payload in [&b""[..], b"x", b"the answer", &pattern(1500 - 48, 5)] {
        let (df, out) = b.datagram_in(id, payload).expect("a frame");
        assert_eq!(df.len, 62 + payload.len());
        let Out::Udp { src, dst, payload: got, src_mac, dst_mac } = out else { panic!("not UDP") };
        assert_eq!((src, dst, src_mac, dst_mac), (dns6(), sandbox6(5000), GW_MAC, SB_MAC));
        assert_eq!(got, payload);
    }
    let f = &b.tr.flows(b.now)[0].1;
    assert_eq!((f.proto, f.sandbox, f.remote), (Proto::Udp, sandbox6(5000), dns6()));
    assert_eq!(b.counters(NET), Counters { flows_opened: 1, active: 1, ..Counters::default() });
}

#[test]
fn ipv6_socket_errors_become_icmpv6_errors() {
    let mut b = Bench::new();
    let id = open_udp6(&mut b, sandbox6(5000), dns6());
    let cases = [
        (libc::ECONNREFUSED, Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port)),
        (libc::ENETUNREACH, Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute)),
        (libc::EHOSTUNREACH, Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Address)),
    ];
    for (err, want) in cases {
        b.tr.datagram_error(id, &errno(err), &mut b.host, &mut b.out);
        let (src, dst, icmp_type, payload) = icmp6(b.frames().remove(0));
        assert_eq!((IpAddr::V6(src), IpAddr::V6(dst)), (dns6().ip(), sandbox6(0).ip()));
        assert_eq!(icmp_type, want, "errno {err}");
        check_quote6(&payload, 17, sandbox6(5000), dns6());
    }
    // Packet too big: the MTU the host learnt, at least IPv6's minimum.
    for (known, mtu) in [(Some(1400), 1400), (None, 1280), (Some(1000), 1280)] {
        b.host.path_mtu = known;
        b.tr.datagram_error(id, &errno(libc::EMSGSIZE), &mut b.host, &mut b.out);
        let (_, _, icmp_type, payload) = icmp6(b.frames().remove(0));
        assert_eq!(icmp_type, Icmpv6Type::PacketTooBig { mtu }, "path MTU {known:?}");
        check_quote6(&payload, 17, sandbox6(5000), dns6());
    }
    // A send that fails with it is answered the same way, quoting the datagram.
    b.host.path_mtu = Some(1300);
    b.host.send_errors.insert(id, libc::EMSGSIZE);
    b.send(&udp_frame(sandbox6(5000), dns6(), &pattern(1400, 6)));
    let (_, _, icmp_type, payload) = icmp6(b.frames().remove(0));
    assert_eq!(icmp_type, Icmpv6Type::PacketTooBig { mtu: 1300 });
    check_quote6(&payload, 17, sandbox6(5000), dns6());
}

#[test]
fn ipv4_keeps_its_answer_to_emsgsize() {
    let mut b = Bench::new();
    b.send(&udp_frame(sandbox(5000), sa([8, 8, 8, 8], 53), b"q"));
    let Some(Call::Open(id, ..)) = b.host.take_calls().into_iter().next() else { panic!("no socket") };
    b.host.path_mtu = Some(1400);
    b.tr.datagram_error(id, &errno(libc::EMSGSIZE), &mut b.host, &mut b.out);
    let Out::Icmp { icmp_type, .. } = b.frames().remove(0) else { panic!("not ICMP") };
    assert_eq!(super::tcp_egress::icmp_type_code(&icmp_type), (3, 1), "host unreachable, as before");
}

#[test]
fn icmpv6_echo_goes_through_a_ping_socket_and_the_reply_gets_the_sandboxs_id_back() {
    let mut b = Bench::new();
    let dst = v6(remote6().ip());
    b.send(&echo_frame(SB6_IP, dst, 0x1234, 1, b"ping payload"));
    let calls = b.host.take_calls();
    let [Call::Open(id, Proto::Icmp, to), Call::Send(_, message)] = &calls[..] else { panic!("{calls:?}") };
    assert_eq!(*to, sock(dst, 0));
    assert_eq!((message[0], message[1]), (128, 0), "the echo request as the sandbox sent it");
    assert_eq!(&message[8..], b"ping payload");
    // The ping socket's reply carries its own id; the sandbox gets its own.
    let mut reply = message.clone();
    reply[0] = 129;
    reply[4..6].copy_from_slice(&0x9999u16.to_be_bytes());
    let (df, out) = b.echo_in(*id, &reply).expect("a reply frame");
    assert_eq!(df.hdr, VirtioNetHdr::default(), "complete checksum, no offload");
    let (src, to_sandbox, icmp_type, payload) = icmp6(out);
    assert_eq!((src, to_sandbox), (dst, SB6_IP));
    assert_eq!(icmp_type, Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x1234, seq: 1 }));
    assert_eq!(payload, b"ping payload");
    // Anything else from the socket is not a reply.
    reply[0] = 128;
    assert!(b.echo_in(*id, &reply).is_none());
    // An error quotes an echo request with the sandbox's id.
    b.tr.datagram_error(*id, &errno(libc::EHOSTUNREACH), &mut b.host, &mut b.out);
    let (_, _, _, quote) = icmp6(b.frames().remove(0));
    check_quote6(&quote, 58, sock(SB6_IP, 0), sock(dst, 0));
    assert_eq!((quote[40], u16::from_be_bytes([quote[44], quote[45]])), (128, 0x1234));
}

// ------------------------------------------------------------------ extension headers

/// `frame` (IPv6) with `ext`, an extension header of type `kind`, put
/// before its transport header; `ext[0]` is set to the next header.
fn with_extension(frame: &[u8], kind: u8, ext: &[u8]) -> Vec<u8> {
    assert_eq!(ext.len() % 8, 0);
    let mut out = frame[..54].to_vec();
    let mut ext = ext.to_vec();
    ext[0] = out[20];
    out[20] = kind;
    let payload_len = u16::from_be_bytes([out[18], out[19]]) + ext.len() as u16;
    out[18..20].copy_from_slice(&payload_len.to_be_bytes());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&frame[54..]);
    out
}

fn from_sandbox(b: &mut Bench, frame: &[u8]) -> Result<(), Unsupported> {
    let r = b.tr.from_sandbox(NET, frame, None, b.now, &mut b.host, &mut b.out);
    b.tr.flush_datagrams(&mut b.host, &mut b.out);
    r
}

#[test]
fn skippable_extension_headers_are_walked_over() {
    let udp = udp_frame(sandbox6(6000), dns6(), b"through options");
    let cases: [(&str, u8, Vec<u8>); 4] = [
        ("hop-by-hop padding", 0, vec![0, 0, 1, 4, 0, 0, 0, 0]),
        ("hop-by-hop router alert", 0, vec![0, 0, 5, 2, 0, 0, 1, 0]),
        ("destination option of an unknown skippable type", 60, vec![0, 0, 0x1e, 2, 9, 9, 0, 0]),
        (
            "routing header with no segment left",
            43,
            vec![0, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    ];
    for (what, kind, ext) in cases {
        let mut b = Bench::new();
        let frame = with_extension(&udp, kind, &ext);
        from_sandbox(&mut b, &frame).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let calls = b.host.take_calls();
        assert!(
            matches!(&calls[..], [Call::Open(_, Proto::Udp, to), Call::Send(_, p)] if *to == dns6() && p == b"through options"),
            "{what}: {calls:?}"
        );
    }
}

#[test]
fn extension_headers_the_translator_does_not_handle_are_refused_by_name() {
    let udp = udp_frame(sandbox6(6000), dns6(), b"x");
    let routing_left = {
        let mut r = vec![0u8; 24];
        r[1] = 2;
        r[3] = 1;
        r
    };
    // A fragment header right after the fixed header is for reassembly.
    let mut b = Bench::new();
    let fragment = with_extension(&udp, 44, &[0, 0, 0, 1, 0, 0, 0, 7]);
    assert_eq!(from_sandbox(&mut b, &fragment), Err(Unsupported::Fragment));
    assert!(b.host.take_calls().is_empty() && b.out.is_empty());
    let late_fragment = with_extension(&fragment, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!(from_sandbox(&mut b, &late_fragment), Err(Unsupported::Extension), "a fragment header second");
    let cases: [(&str, u8, Vec<u8>); 5] = [
        ("a routing header with a segment left", 43, routing_left),
        ("jumbo payload (must not be skipped)", 0, vec![0, 0, 0xc2, 4, 0, 1, 0, 0]),
        ("an option to discard with an ICMP error", 60, vec![0, 0, 0x80, 2, 0, 0, 1, 0]),
        ("authentication header", 51, vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
        ("mobility", 135, vec![0, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (what, kind, ext) in cases {
        let mut b = Bench::new();
        let frame = with_extension(&udp, kind, &ext);
        assert_eq!(from_sandbox(&mut b, &frame), Err(Unsupported::Extension), "{what}");
        assert!(b.host.take_calls().is_empty() && b.out.is_empty(), "{what}: nothing opened or sent");
    }
    // Hop-by-hop anywhere but first, and chains that never end.
    let mut b = Bench::new();
    let inner = with_extension(&udp, 0, &[0, 0, 1, 4, 0, 0, 0, 0]);
    let second = with_extension(&inner, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!((second[20], second[54], second[62]), (60, 0, 17), "destination options, then hop-by-hop");
    assert_eq!(from_sandbox(&mut b, &second), Err(Unsupported::Extension), "hop-by-hop second");
    let mut eight = udp.clone();
    for _ in 0..8 {
        eight = with_extension(&eight, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(from_sandbox(&mut b, &eight), Ok(()), "eight headers are walked");
    let mut chain = udp.clone();
    for _ in 0..9 {
        chain = with_extension(&chain, 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(from_sandbox(&mut b, &chain), Err(Unsupported::Extension), "too many headers");
    // A header cut short is malformed, not a panic.
    let mut cut = with_extension(&udp, 60, &[0, 3, 1, 4, 0, 0, 0, 0]);
    cut.truncate(70);
    cut[18..20].copy_from_slice(&16u16.to_be_bytes());
    assert_eq!(from_sandbox(&mut b, &cut), Err(Unsupported::Malformed));
    // Other protocols are the gateway's business, as over IPv4.
    let mut other = udp.clone();
    other[20] = 47;
    assert_eq!(from_sandbox(&mut b, &other), Err(Unsupported::Protocol));
}

#[test]
fn any_cut_or_corruption_of_an_ipv6_frame_is_an_error_never_a_panic() {
    let base = with_extension(&udp_frame(sandbox6(6000), dns6(), &pattern(40, 7)), 60, &[0, 0, 1, 4, 0, 0, 0, 0]);
    let tcp = tcp_frame(sandbox6(6001), remote6(), ISN, 0, SYN, 1000, &syn_options(1440, Some(7)), &[]);
    let echo = echo_frame(SB6_IP, v6(remote6().ip()), 1, 1, b"abc");
    let mut b = Bench::new();
    for frame in [&base, &tcp, &echo] {
        for len in 0..frame.len() {
            let _ = from_sandbox(&mut b, &frame[..len]);
        }
        for i in 14..frame.len() {
            for v in [0x00, 0xff, 0x2c, 0x3c] {
                let mut f = frame.clone();
                f[i] = v;
                let _ = from_sandbox(&mut b, &f);
                let _ = b.tr.owns(NET, &f);
            }
        }
    }
    // Whatever opened is a sane flow of the sandbox's family.
    for (_, f) in b.tr.flows(b.now) {
        assert_eq!(f.sandbox.is_ipv6(), f.remote.is_ipv6(), "{f:?}");
    }
}

#[test]
fn a_network_without_ipv6_does_not_translate_it() {
    let mut b = Bench::new();
    b.tr.set_network(NET, Some(crate::nat::NetView { address6: None, ..view() }));
    let f = udp_frame(sandbox6(5000), dns6(), b"q");
    assert_eq!(from_sandbox(&mut b, &f), Err(Unsupported::Protocol));
    assert!(b.host.take_calls().is_empty());
}

// ------------------------------------------------------------------ published ports

fn dual(i: u8) -> Backend {
    Backend {
        network: NET,
        ipv4: Some(Ipv4Addr::new(10, 0, 0, 10 + i)),
        ipv6: Some(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10 + u16::from(i))),
        mac: MacAddr([2, 0, 0, 0, 9, i]),
        port: 80,
        via_mesh: false,
    }
}

fn client6(i: u16) -> SocketAddr {
    sa6([0x2001, 0xdb8, 0xc, 0, 0, 0, 0, i], 50_000 + i)
}

fn bench_with(backends: Vec<Backend>) -> Bench {
    let mut b = Bench::new();
    b.tr.set_listener(L6, Proto::Tcp, sa6([0; 8], 8080), backends.clone());
    b.tr.set_listener(L4, Proto::Tcp, sa([0, 0, 0, 0], 8080), backends.clone());
    let udp = backends.into_iter().map(|b| Backend { port: 53, ..b }).collect();
    b.tr.set_listener(LU6, Proto::Udp, sa6([0; 8], 5353), udp);
    b
}

fn accept(b: &mut Bench, l: ListenerId, client: SocketAddr) -> Option<(FlowId, Seg)> {
    let id = b.tr.accept(l, client, b.now, &mut b.out)?;
    let syn = b.one_seg();
    assert!(syn.syn && !syn.ack_flag);
    Some((id, syn))
}

#[test]
fn an_ipv6_client_reaches_the_backends_ipv6_address_as_itself() {
    let mut b = bench_with(vec![dual(0)]);
    let (id, syn) = accept(&mut b, L6, client6(1)).unwrap();
    let backend6 = sock(dual(0).ipv6.unwrap(), 80);
    assert_eq!((syn.src, syn.dst), (client6(1), backend6), "moby #17666: the real client, over IPv6");
    assert_eq!((syn.src_mac, syn.dst_mac), (GW_MAC, dual(0).mac.0));
    assert_eq!((syn.mss, syn.wscale), (Some(OUR_MSS6), Some(7)));
    let f = &b.tr.flows(b.now)[0].1;
    assert_eq!(
        (f.direction, f.sandbox, f.remote, f.outer_remote),
        (Direction::Inbound, backend6, client6(1), client6(1))
    );
    assert_eq!(f.outer_local, None, "the daemon fills in its own socket's address");
    // The handshake completes and bytes flow.
    let ack = tcp_frame_from(
        dual(0).mac.0,
        backend6,
        client6(1),
        555,
        syn.seq + 1,
        SYN_ACK,
        29200,
        &syn_options(1440, Some(7)),
        &[],
    );
    b.send(&ack);
    assert_eq!(b.flush()[0].clone().tcp().ack, 556);
    b.host.deliver(id, b"GET / HTTP/1.0\r\n\r\n");
    b.tr.readable(id);
    let segs = b.pump(1440);
    assert_eq!((segs[0].1.src, &segs[0].1.payload[..]), (client6(1), &b"GET / HTTP/1.0\r\n\r\n"[..]));
    // And an IPv4 client of the same port reaches the IPv4 address.
    let (_, syn) = accept(&mut b, L4, sa([198, 51, 100, 7], 41_000)).unwrap();
    assert_eq!((syn.src, syn.dst), (sa([198, 51, 100, 7], 41_000), sock(dual(0).ipv4.unwrap(), 80)));
    assert_eq!(syn.mss, Some(OUR_MSS));
}

#[test]
fn loopback_and_link_local_ipv6_clients_are_shown_as_the_gateway() {
    let mut b = bench_with(vec![dual(0)]);
    for (client, port) in
        [(sa6([0, 0, 0, 0, 0, 0, 0, 1], 33_333), 33_333), (sa6([0xfe80, 0, 0, 0, 0, 0, 0, 9], 33_334), 33_334)]
    {
        let (id, syn) = accept(&mut b, L6, client).unwrap();
        assert_eq!(syn.src, sock(GW6_IP, port), "{client}");
        let f = b.tr.flows(b.now).into_iter().find(|(i, _)| *i == id).unwrap().1;
        assert_eq!(f.outer_remote, client, "the real client is kept for nat ls");
        // The backend's answer to the gateway belongs to the flow.
        let answer = tcp_frame_from(dual(0).mac.0, syn.dst, syn.src, 1, syn.seq + 1, SYN_ACK, 100, &[], &[]);
        assert!(b.tr.owns(NET, &answer));
    }
}

#[test]
fn a_client_of_a_family_the_backend_lacks_is_carried_to_its_other_address_as_the_gateway() {
    let v4_only = Backend { ipv6: None, ..dual(0) };
    let mut b = bench_with(vec![v4_only]);
    let (_, syn) = accept(&mut b, L6, client6(1)).unwrap();
    assert_eq!((syn.src, syn.dst), (sock(GW_IP, client6(1).port()), sock(v4_only.ipv4.unwrap(), 80)));
    assert_eq!(syn.mss, Some(OUR_MSS), "an IPv4 flow toward the sandbox");
    // Another IPv6 client with the same port gets another one.
    let same_port = sa6([0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 1], client6(1).port());
    let (_, syn2) = accept(&mut b, L6, same_port).unwrap();
    assert_eq!(syn2.src.ip(), IpAddr::V4(GW_IP));
    assert_ne!(syn2.src.port(), client6(1).port());
    assert!((32_768..61_000).contains(&syn2.src.port()), "{}", syn2.src);
    // And an IPv4 client of an IPv6-only backend appears as the IPv6 gateway.
    let v6_only = Backend { ipv4: None, ..dual(1) };
    let mut b = bench_with(vec![v6_only]);
    let (_, syn) = accept(&mut b, L4, sa([198, 51, 100, 1], 40_001)).unwrap();
    assert_eq!((syn.src, syn.dst), (sock(GW6_IP, 40_001), sock(v6_only.ipv6.unwrap(), 80)));
    // A backend on an IPv6-only network is reached by IPv6 clients as themselves.
    let mut b = bench_with(vec![Backend { network: NET6, ..v6_only }]);
    let view6 = crate::nat::NetView { gateway: GW6_PORT, address: None, ..view() };
    b.tr.set_network(NET6, Some(view6));
    let id = b.tr.accept(L6, client6(2), b.now, &mut b.out).unwrap();
    let syn = b.frames_on(GW6_PORT).remove(0).tcp();
    assert_eq!(syn.src, client6(2));
    assert_eq!(b.tr.flows(b.now).into_iter().find(|(i, _)| *i == id).unwrap().1.network, NET6);
    // ... and IPv4 ones as the gateway's IPv6 address.
    b.tr.accept(L4, sa([198, 51, 100, 2], 40_002), b.now, &mut b.out).unwrap();
    assert_eq!(b.frames_on(GW6_PORT).remove(0).tcp().src, sock(GW6_IP, 40_002));
}

#[test]
fn ipv6_clients_rotate_over_the_backends_and_fail_over_to_the_next() {
    let mut b = bench_with(vec![dual(0), dual(1), dual(2)]);
    let mut order = Vec::new();
    for i in 1..=4 {
        let (_, syn) = accept(&mut b, L6, client6(i)).unwrap();
        order.push(v6(syn.dst.ip()).segments()[7] - 0x10);
    }
    assert_eq!(order, [0, 1, 2, 0]);
    // A refusal moves the connection to the next backend, still over IPv6.
    let (id, syn) = accept(&mut b, L6, client6(9)).unwrap();
    assert_eq!(syn.dst.ip(), IpAddr::V6(dual(1).ipv6.unwrap()));
    let rst = tcp_frame_from(dual(1).mac.0, syn.dst, syn.src, 0, syn.seq + 1, RST_ACK, 0, &[], &[]);
    b.send(&rst);
    let again = b.one_seg();
    assert!(again.syn);
    assert_eq!((again.src, again.dst), (client6(9), sock(dual(2).ipv6.unwrap(), 80)));
    assert_eq!(b.tr.flows(b.now).into_iter().filter(|(i, _)| *i == id).count(), 1, "same flow id");
    // A backend no gateway can carry the client to is passed over.
    let stranded = Backend { network: NET6, ipv6: None, ..dual(3) };
    let mut b = bench_with(vec![stranded, dual(4)]);
    b.tr.set_network(NET6, Some(crate::nat::NetView { gateway: GW6_PORT, address: None, ..view() }));
    let (_, syn) = accept(&mut b, L6, client6(1)).unwrap();
    assert_eq!(syn.dst, sock(dual(4).ipv6.unwrap(), 80));
}

#[test]
fn ipv6_udp_clients_are_pinned_and_answered_from_the_listener() {
    let mut b = bench_with(vec![dual(0), dual(1)]);
    let (df, out) = b.udp_inbound(LU6, client6(1), b"query").unwrap();
    assert_eq!(df.len, 62 + 5);
    let Out::Udp { src, dst, payload, .. } = out else { panic!("not UDP") };
    assert_eq!((src, dst, &payload[..]), (client6(1), sock(dual(0).ipv6.unwrap(), 53), &b"query"[..]));
    // Pinned: the same client goes to the same backend.
    let (_, out) = b.udp_inbound(LU6, client6(1), b"again").unwrap();
    assert!(matches!(out, Out::Udp { dst: d, .. } if d == dst));
    // The sandbox's answer leaves from the published socket to the client.
    b.send(&udp_frame_from(dual(0).mac.0, dst, client6(1), b"answer"));
    assert_eq!(b.host.take_calls(), vec![Call::SendTo(LU6, client6(1), b"answer".to_vec())]);
    // Across families: an IPv4-only backend gets an IPv4 datagram from the
    // gateway, the payload moved to its place.
    let mut b = bench_with(vec![Backend { ipv6: None, ..dual(2) }]);
    let (df, out) = b.udp_inbound(LU6, client6(3), &pattern(700, 8)).unwrap();
    assert_eq!(df.len, 42 + 700);
    let Out::Udp { src, dst, payload, .. } = out else { panic!("not UDP") };
    assert_eq!((src, dst), (sock(GW_IP, client6(3).port()), sock(dual(2).ipv4.unwrap(), 53)));
    assert_eq!(payload, pattern(700, 8));
    b.send(&udp_frame_from(dual(2).mac.0, dst, src, b"back"));
    assert_eq!(b.host.take_calls(), vec![Call::SendTo(LU6, client6(3), b"back".to_vec())]);
}

#[test]
fn forgetting_an_ipv6_address_ends_only_its_flows() {
    let mut b = Bench::new();
    b.syn(sandbox6(40_000), remote6(), ISN, None);
    b.syn(sandbox(40_000), remote(), ISN, None);
    b.host.take_calls();
    open_udp6(&mut b, sandbox6(5000), dns6());
    // Matched by address alone: the frames' MAC is not the one forgotten.
    let other_mac = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    assert_eq!(b.tr.forget_endpoint(NET, other_mac, &[sandbox6(0).ip()], &mut b.host), 2);
    assert_eq!(b.tr.len(), 1);
    assert!(b.tr.flows(b.now)[0].1.sandbox.is_ipv4());
}

#[test]
fn an_icmpv6_error_about_a_packet_with_long_headers_fits_the_minimum_mtu() {
    let mut b = Bench::new();
    // Three destination options headers of 512 bytes of padding each.
    let mut ext = vec![0u8, 63];
    ext.extend_from_slice(&[1, 254]);
    ext.extend_from_slice(&[0; 254]);
    ext.extend_from_slice(&[1, 252]);
    ext.extend_from_slice(&[0; 252]);
    assert_eq!(ext.len(), 512);
    let mut frame = udp_frame(sandbox6(6000), dns6(), b"long");
    for _ in 0..3 {
        frame = with_extension(&frame, 60, &ext);
    }
    b.host.open_errors.insert(dns6(), libc::ENETUNREACH);
    from_sandbox(&mut b, &frame).unwrap();
    let frames: Vec<Vec<u8>> = b.out.frames().map(|(_, f)| f.to_vec()).collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), 14 + 1280, "as much of the packet as fits 1280 bytes");
    let (_, _, icmp_type, quote) = icmp6(parse_out(&frames[0], true));
    assert_eq!(icmp_type, Icmpv6Type::DestinationUnreachable(DestUnreachableCode::NoRoute));
    assert_eq!(&quote[..], &frame[14..14 + 1232], "the packet's first bytes");
}
