//! Property tests: arbitrary frames never panic the translator, and random
//! interleavings of events on a connection keep its byte streams intact.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::harness::*;
use super::udp_icmp::with_ip_options;
use crate::nat::{Backend, FlowId, ListenerId, Proto, TCP_PAYLOAD};
use crate::wire::MacAddr;

/// Valid frames of every kind the translator reads.
fn seeds() -> Vec<Vec<u8>> {
    let r = remote();
    let opts = syn_options(1460, Some(7));
    vec![
        tcp_frame(sandbox(1000), r, 1, 0, SYN, 64240, &opts, &[]),
        tcp_frame(sandbox(1000), r, 2, 5, PSH_ACK, 1000, &[], b"some data here"),
        tcp_frame(sandbox(1000), r, 2, 5, FIN_ACK, 1000, &[], &[]),
        tcp_frame(sandbox(1000), r, 2, 5, RST, 0, &[], &[]),
        udp_frame(sandbox(2000), sa([8, 8, 8, 8], 53), b"query"),
        with_ip_options(&udp_frame(sandbox(2001), sa([8, 8, 8, 8], 53), b"query"), 40),
        with_ip_options(&tcp_frame(sandbox(1001), r, 1, 0, SYN, 64240, &opts, &[]), 40),
        echo_frame(SB_IP, std::net::Ipv4Addr::new(1, 1, 1, 1), 7, 1, b"ping"),
        with_ip_options(&echo_frame(SB_IP, std::net::Ipv4Addr::new(1, 1, 1, 1), 8, 1, b"ping"), 20),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    SetByte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Extend),
        // Header fields most likely to matter: lengths, IHL, protocol, flags.
        (prop::sample::select(vec![14usize, 16, 17, 20, 21, 23, 46, 47, 38, 39, 34, 35]), any::<u8>())
            .prop_map(|(i, x)| Mutation::SetByte(i, x)),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, x) if !frame.is_empty() => {
            let n = frame.len();
            frame[i % n] ^= x;
        }
        Mutation::Truncate(n) => frame.truncate(n % (frame.len() + 1)),
        Mutation::Extend(bytes) => frame.extend_from_slice(bytes),
        Mutation::SetByte(i, x) if *i < frame.len() => frame[*i] = *x,
        _ => {}
    }
}

/// A bench with an established connection and open UDP/ICMP flows, so that
/// mutated frames meet existing flows too; the host fails as configured.
fn busy_bench(fail_open: Option<i32>, fail_send: Option<i32>) -> (Bench, Vec<FlowId>) {
    let mut b = Bench::new();
    let c = b.connect(sandbox(1000), 1, Some(7));
    b.send(&udp_frame(sandbox(2000), sa([8, 8, 8, 8], 53), b"q"));
    b.send(&echo_frame(SB_IP, std::net::Ipv4Addr::new(1, 1, 1, 1), 7, 1, b"ping"));
    let ids = b.tr.flows(b.now).into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    if let Some(e) = fail_open {
        for port in 0..4000 {
            b.host.open_errors.insert(sock(remote().ip(), port), e);
        }
        b.host.open_errors.insert(sa([8, 8, 8, 8], 53), e);
        b.host.open_errors.insert(sa([1, 1, 1, 1], 0), e);
    }
    if let Some(e) = fail_send {
        for id in &ids {
            b.host.send_errors.insert(*id, e);
        }
    }
    b.host.take_calls();
    let _ = c;
    (b, ids)
}

/// Every frame the translator emitted is sound.
fn check_emitted(b: &mut Bench) {
    for (_, f) in b.out.frames() {
        parse_out(f, true);
    }
    b.out.clear();
    b.tr.flush_acks(&mut b.out);
    for (_, f) in b.out.frames() {
        parse_out(f, true);
    }
    b.out.clear();
}

fn errors() -> impl Strategy<Value = Option<i32>> {
    prop::sample::select(vec![None, Some(libc::ENETUNREACH), Some(libc::ECONNREFUSED), Some(libc::EPIPE)])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), fail in errors()) {
        let (mut b, _) = busy_bench(fail, fail);
        let _ = b.tr.from_sandbox(NET, &bytes, None, b.now, &mut b.host, &mut b.out);
        // As an IPv4 frame, with the Ethernet header right.
        let mut framed = vec![0u8; 12];
        framed.extend_from_slice(&[0x08, 0x00]);
        framed.extend_from_slice(&bytes);
        let _ = b.tr.from_sandbox(NET, &framed, None, b.now, &mut b.host, &mut b.out);
        b.tr.flush_datagrams(&mut b.host, &mut b.out);
        let _ = b.tr.owns(NET, &framed);
        check_emitted(&mut b);
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in 0..9usize,
        mutations in proptest::collection::vec(mutation(), 1..6),
        fail_open in errors(),
        fail_send in errors(),
    ) {
        let (mut b, _) = busy_bench(fail_open, fail_send);
        let mut frame = seeds()[seed].clone();
        for m in &mutations {
            apply(&mut frame, m);
        }
        let _ = b.tr.owns(NET, &frame);
        let _ = b.tr.from_sandbox(NET, &frame, None, b.now, &mut b.host, &mut b.out);
        b.tr.flush_datagrams(&mut b.host, &mut b.out);
        check_emitted(&mut b);
        b.poll(b.now + 200_000);
        check_emitted(&mut b);
        prop_assert_eq!(b.counters(NET).active as usize, b.tr.len());
    }
}

// ------------------------------------------------------------------ interleavings

/// The byte at stream position `i` of the sandbox's stream and the host's.
fn sb_byte(i: u32) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 8)) as u8
}

fn host_byte(i: u32) -> u8 {
    (i.wrapping_mul(13) ^ (i >> 9) ^ 0x5a) as u8
}

#[derive(Debug, Clone)]
enum Ev {
    /// The sandbox sends bytes at `off` from its next new byte (negative:
    /// a retransmission, positive: a gap), maybe with FIN.
    Data {
        off: i16,
        len: u16,
        fin: bool,
    },
    /// The sandbox acks what it got, minus `back`, with a window.
    Ack {
        back: u16,
        window: u16,
    },
    /// A segment with arbitrary flags and numbers near the right ones.
    Raw {
        flags: u8,
        seq_off: i16,
        ack_off: i16,
        window: u16,
        len: u16,
    },
    /// The remote end sends bytes / closes.
    HostData(u16),
    HostEof,
    Readable,
    /// The daemon peeks what it may.
    Pump,
    /// The host socket takes at most this much from now on.
    Capacity(Option<u16>),
    Writable,
    Flush,
    Advance(u32),
    HostFailed,
    /// A SYN retransmission.
    Syn,
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        // Mostly new bytes; some retransmissions (negative), some gaps.
        4 => (-3000i16..3000, 0u16..4000, prop::bool::weighted(0.05)).prop_map(|(off, len, fin)| {
            let off = if off < 0 { off } else if off > 2000 { off - 2000 } else { 0 };
            Ev::Data { off, len, fin }
        }),
        4 => (0u16..3000, any::<u16>()).prop_map(|(back, window)| Ev::Ack { back, window }),
        1 => (any::<u8>(), -100i16..100, -100i16..100, any::<u16>(), 0u16..100)
            .prop_map(|(flags, seq_off, ack_off, window, len)| Ev::Raw { flags, seq_off, ack_off, window, len }),
        3 => (1u16..20_000).prop_map(Ev::HostData),
        1 => Just(Ev::HostEof),
        2 => Just(Ev::Readable),
        4 => Just(Ev::Pump),
        1 => prop::option::of(0u16..5000).prop_map(Ev::Capacity),
        2 => Just(Ev::Writable),
        2 => Just(Ev::Flush),
        2 => (0u32..5000).prop_map(Ev::Advance),
        1 => (0u32..4).prop_map(|k| if k == 0 { Ev::HostFailed } else { Ev::Syn }),
    ]
}

/// A sandbox-side model of one connection: what it sent and got.
struct Peer {
    local: SocketAddr,
    remote: SocketAddr,
    mac: [u8; 6],
    /// The sandbox's ISN and the switch's.
    isn: u32,
    iss: u32,
    /// Stream bytes the sandbox has sent (new ones start here).
    sent: u32,
    fin_sent: bool,
    /// Contiguous host stream bytes the sandbox received.
    got: u32,
    fin_got: bool,
    host_len: u32,
    host_eof: bool,
}

impl Peer {
    fn frame(&self, seq: u32, ack: u32, flags: Flags, window: u16, payload: &[u8]) -> Vec<u8> {
        tcp_frame_from(self.mac, self.local, self.remote, seq, ack, flags, window, &[], payload)
    }

    fn payload(&self, from: u32, len: u32) -> Vec<u8> {
        (from..from.saturating_add(len)).map(sb_byte).collect()
    }

    /// Sees a frame the switch sent: checks data against the host stream.
    fn see(&mut self, s: &Seg) {
        if s.rst || s.syn {
            return;
        }
        let off = s.seq.wrapping_sub(self.iss.wrapping_add(1));
        for (i, byte) in s.payload.iter().enumerate() {
            let pos = off.wrapping_add(i as u32);
            assert!(pos < self.host_len, "data beyond what the host sent: {pos} of {}", self.host_len);
            assert_eq!(*byte, host_byte(pos), "host byte {pos} corrupted");
        }
        if off <= self.got && off.wrapping_add(s.payload.len() as u32) > self.got {
            self.got = off + s.payload.len() as u32;
        }
        if s.fin {
            assert!(self.host_eof, "FIN before the host's EOF");
            let fin_at = off.wrapping_add(s.payload.len() as u32);
            assert_eq!(fin_at, self.host_len, "FIN after the last host byte");
            if fin_at == self.got {
                self.fin_got = true;
            }
        }
    }

    fn ack_no(&self) -> u32 {
        self.iss.wrapping_add(1).wrapping_add(self.got).wrapping_add(u32::from(self.fin_got))
    }
}

fn run_connection(events: &[Ev], inbound: bool, isn: u32, seed: u64) {
    let mut b = Bench::with(crate::nat::Limits::default(), seed);
    let backend =
        Backend { network: NET, ipv4: Some(SB_IP), ipv6: None, mac: MacAddr(SB_MAC), port: 80, via_mesh: false };
    let client = sa([198, 51, 100, 1], 4000);
    let (id, mut p) = if inbound {
        b.tr.set_listener(ListenerId(0), Proto::Tcp, sa([0, 0, 0, 0], 80), vec![backend]);
        let id = b.tr.accept(ListenerId(0), client, b.now, &mut b.out).unwrap();
        let syn = b.one_seg();
        let p = Peer {
            local: sandbox(80),
            remote: client,
            mac: SB_MAC,
            isn,
            iss: syn.seq,
            sent: 0,
            fin_sent: false,
            got: 0,
            fin_got: false,
            host_len: 0,
            host_eof: false,
        };
        let f = tcp_frame(
            sandbox(80),
            client,
            isn,
            syn.seq.wrapping_add(1),
            SYN_ACK,
            65535,
            &syn_options(1460, Some(7)),
            &[],
        );
        b.send(&f);
        (id, p)
    } else {
        let c = b.connect(sandbox(1000), isn, Some(7));
        let p = Peer {
            local: c.local,
            remote: c.remote,
            mac: SB_MAC,
            isn,
            iss: c.rcv.wrapping_sub(1),
            sent: 0,
            fin_sent: false,
            got: 0,
            fin_got: false,
            host_len: 0,
            host_eof: false,
        };
        (c.id, p)
    };
    b.flush();
    let mut closed = false;
    for e in events {
        if b.host.closed.contains_key(&id) {
            closed = true;
        }
        match e {
            Ev::Data { off, len, fin } => {
                let start = (i64::from(p.sent) + i64::from(*off)).max(0) as u32;
                let len = u32::from(*len);
                let payload = p.payload(start, len);
                let mut flags = PSH_ACK;
                let fin = *fin && !p.fin_sent && start.saturating_add(len) >= p.sent;
                flags.fin = fin;
                let seq = p.isn.wrapping_add(1).wrapping_add(start);
                let f = p.frame(seq, p.ack_no(), flags, 65535, &payload);
                b.send(&f);
                if start <= p.sent {
                    p.sent = p.sent.max(start + len);
                    if fin {
                        p.fin_sent = true;
                    }
                }
            }
            Ev::Ack { back, window } => {
                let ack = p.ack_no().wrapping_sub(u32::from(*back).min(p.got));
                let seq = p.isn.wrapping_add(1).wrapping_add(p.sent).wrapping_add(u32::from(p.fin_sent));
                let f = p.frame(seq, ack, ACK, *window, &[]);
                b.send(&f);
            }
            Ev::Raw { flags, seq_off, ack_off, window, len } => {
                let fl = Flags {
                    fin: flags & 1 != 0,
                    syn: flags & 2 != 0,
                    rst: flags & 4 != 0,
                    psh: flags & 8 != 0,
                    ack: flags & 16 != 0,
                };
                let seq = p.isn.wrapping_add(1).wrapping_add(p.sent).wrapping_add_signed(i32::from(*seq_off));
                let ack = p.ack_no().wrapping_add_signed(i32::from(*ack_off));
                // Bytes at a sequence number carry the stream's byte there,
                // so a raw segment cannot corrupt the stream by itself.
                let from = seq.wrapping_sub(p.isn.wrapping_add(1));
                let payload = if from < 1 << 30 { p.payload(from, u32::from(*len)) } else { Vec::new() };
                let f = p.frame(seq, ack, fl, *window, &payload);
                b.send(&f);
                if from <= p.sent {
                    p.sent = p.sent.max(from + payload.len() as u32);
                }
            }
            Ev::HostData(n) => {
                if !p.host_eof && !closed {
                    let data: Vec<u8> = (p.host_len..p.host_len + u32::from(*n)).map(host_byte).collect();
                    b.host.deliver(id, &data);
                    p.host_len += u32::from(*n);
                    b.tr.readable(id);
                }
            }
            Ev::HostEof => {
                if !closed {
                    b.host.deliver_eof(id);
                    p.host_eof = true;
                    b.tr.readable(id);
                }
            }
            Ev::Readable => b.tr.readable(id),
            Ev::Pump => {
                if !closed {
                    for (_, s) in b.pump(1460) {
                        p.see(&s);
                    }
                }
            }
            Ev::Capacity(c) => match c {
                Some(c) => {
                    b.host.capacity.insert(id, usize::from(*c));
                }
                None => {
                    b.host.capacity.remove(&id);
                }
            },
            Ev::Writable => b.tr.writable(id, &mut b.host, &mut b.out),
            Ev::Flush => b.tr.flush_acks(&mut b.out),
            Ev::Advance(ms) => b.poll(b.now + u64::from(*ms)),
            Ev::HostFailed => b.tr.host_failed(id, &mut b.host, &mut b.out),
            Ev::Syn => {
                let f = p.frame(p.isn, 0, SYN, 64240, &[]);
                b.send(&f);
            }
        }
        // Control frames (FIN, ACKs) are seen by the sandbox too.
        let frames: Vec<Out> = b.out.frames().map(|(_, f)| parse_out(f, true)).collect();
        b.out.clear();
        for f in frames {
            if let Out::Tcp(s) = f
                && s.dst == p.local
            {
                p.see(&s);
            }
        }
        // Whatever the host socket took is the sandbox's stream, in order,
        // each byte once.
        let w = b.host.written(id);
        assert!(w.len() as u32 <= p.sent, "wrote {} of {} bytes sent", w.len(), p.sent);
        for (i, byte) in w.iter().enumerate() {
            assert_eq!(*byte, sb_byte(i as u32), "sandbox byte {i} corrupted or out of order");
        }
        assert_eq!(b.counters(NET).active as usize, b.tr.len());
    }
    // Drain the timers: a flow never left with nothing to do forever
    // while it has bytes in flight.
    for _ in 0..64 {
        let Some(at) = b.tr.next_deadline() else { break };
        b.poll(at.max(b.now));
        b.pump(1460);
        b.out.clear();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn egress_interleavings_keep_streams_intact(
        events in proptest::collection::vec(ev(), 1..60),
        isn in prop::sample::select(vec![1u32, 0x7fff_fff0, u32::MAX - 3000, u32::MAX]),
        seed in any::<u64>(),
    ) {
        run_connection(&events, false, isn, seed);
    }

    #[test]
    fn inbound_interleavings_keep_streams_intact(
        events in proptest::collection::vec(ev(), 1..60),
        isn in prop::sample::select(vec![1u32, u32::MAX - 3000]),
        seed in any::<u64>(),
    ) {
        run_connection(&events, true, isn, seed);
    }
}

#[test]
fn data_frame_room_never_exceeds_a_frame() {
    // The largest frame the daemon may be asked to fill.
    let mut b = Bench::new();
    let c = b.connect(sandbox(1), 1, Some(14));
    b.host.take_calls();
    b.host.deliver(c.id, &vec![1u8; 300_000]);
    b.tr.readable(c.id);
    while let Some((id, room)) = b.tr.next_sendable() {
        assert!(TCP_PAYLOAD + room <= 14 + 65_535);
        let data = b.host.peek(id, room);
        if data.is_empty() {
            b.tr.tcp_drained(id);
            continue;
        }
        let mut buf = vec![0u8; TCP_PAYLOAD + data.len()];
        b.tr.tcp_peeked(id, &mut buf, data.len(), b.now).unwrap();
    }
}
