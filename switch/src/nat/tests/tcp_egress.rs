//! Egress TCP: a sandbox's connection mapped onto a host socket.

use super::harness::*;
use crate::nat::flow::FlowKey;
use crate::nat::{Counters, Direction, FlowId, Limits, Proto};
use crate::wire::MacAddr;

const ISN: u32 = 1_000_000;

fn established(shift: Option<u8>) -> (Bench, Conn) {
    let mut b = Bench::new();
    let c = b.connect(sandbox(40_000), ISN, shift);
    b.host.take_calls();
    // Established flows start readable: the daemon peeks and finds nothing.
    assert!(b.pump(c.mss).is_empty());
    (b, c)
}

fn state_of(b: &Bench, id: FlowId) -> &'static str {
    b.tr.flows(b.now).into_iter().find(|(i, _)| *i == id).map(|(_, f)| f.state).expect("flow listed")
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

// ------------------------------------------------------------------ handshake

/// The switch's receive window.
const W: u32 = crate::nat::tcp::WINDOW;

#[test]
fn syn_opens_a_socket_to_the_destination() {
    let mut b = Bench::new();
    let id = b.syn(sandbox(40_000), remote(), ISN, Some(7));
    assert_eq!(b.host.take_calls(), vec![Call::Open(id, Proto::Tcp, remote())]);
    b.no_frames();
    let flows = b.tr.flows(b.now);
    assert_eq!(flows.len(), 1);
    let (fid, f) = &flows[0];
    assert_eq!(*fid, id);
    assert_eq!(f.proto, Proto::Tcp);
    assert_eq!(f.direction, Direction::Egress);
    assert_eq!(f.sandbox, sandbox(40_000));
    assert_eq!(f.remote, remote());
    assert_eq!(f.outer_remote, remote());
    assert_eq!(f.state, "syn-sent");
    assert_eq!(b.counters(NET), Counters { flows_opened: 1, active: 1, ..Counters::default() });
    // A SYN retransmitted while the socket connects opens nothing more.
    let f = tcp_frame(sandbox(40_000), remote(), ISN, 0, SYN, 64240, &syn_options(1460, Some(7)), &[]);
    b.send(&f);
    assert!(b.host.take_calls().is_empty());
    b.no_frames();
}

#[test]
fn syn_ack_carries_mss_of_the_network_and_window_scale_when_offered() {
    let mut b = Bench::new();
    let id = b.syn(sandbox(40_000), remote(), ISN, Some(9));
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let sa = b.one_seg();
    assert!(sa.syn && sa.ack_flag && !sa.fin && !sa.rst);
    assert_eq!(sa.ack, ISN + 1);
    assert_eq!(sa.mss, Some(OUR_MSS));
    assert_eq!(sa.wscale, Some(7), "the switch's own shift, offered since the sandbox offered one");
    assert_eq!(sa.window, u16::MAX, "a SYN's window is never scaled");
    assert_eq!((sa.src, sa.dst), (remote(), sandbox(40_000)));
    assert_eq!((sa.src_mac, sa.dst_mac), (GW_MAC, SB_MAC));
    assert_eq!(state_of(&b, id), "syn-received");

    // No window scale offered: none answered.
    let id = b.syn(sandbox(40_001), remote(), ISN, None);
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let sa = b.one_seg();
    assert_eq!(sa.wscale, None);
    assert_eq!(sa.mss, Some(OUR_MSS));
}

#[test]
fn syn_ack_mss_follows_the_mtu() {
    let mut b = Bench::new();
    let local = SB2;
    let f = tcp_frame(local, remote(), ISN, 0, SYN, 64240, &syn_options(8960, None), &[]);
    b.send_on(NET2, &f);
    let Some(Call::Open(id, ..)) = b.host.take_calls().pop() else { panic!("no open") };
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let sa = b.frames_on(GW2_PORT).remove(0).tcp();
    assert_eq!(sa.mss, Some(9000 - 40));
    assert_eq!(sa.src_mac, GW2_MAC);
}

const SB2: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 1, 0, 5), 5555));

#[test]
fn retransmitted_syn_gets_the_syn_ack_again_then_ack_establishes() {
    let mut b = Bench::new();
    let id = b.syn(sandbox(40_000), remote(), ISN, None);
    b.host.take_calls();
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let first = b.one_seg();
    let f = tcp_frame(sandbox(40_000), remote(), ISN, 0, SYN, 64240, &syn_options(1460, None), &[]);
    b.send(&f);
    let again = b.one_seg();
    assert_eq!(first, again, "the same SYN-ACK");
    assert!(b.host.take_calls().iter().all(|c| !matches!(c, Call::Open(..))), "no second socket");
    // An ACK of something else does not establish.
    let wrong = tcp_frame(sandbox(40_000), remote(), ISN + 1, first.seq.wrapping_add(5), ACK, 1000, &[], &[]);
    b.send(&wrong);
    assert_eq!(state_of(&b, id), "syn-received");
    let ack = tcp_frame(sandbox(40_000), remote(), ISN + 1, first.seq.wrapping_add(1), ACK, 1000, &[], &[]);
    b.send(&ack);
    assert_eq!(state_of(&b, id), "established");
    assert!(b.flush().is_empty());
}

#[test]
fn handshake_ack_may_carry_data() {
    let mut b = Bench::new();
    let id = b.syn(sandbox(40_000), remote(), ISN, None);
    b.tr.connected(id, Ok(()), b.now, &mut b.host, &mut b.out);
    let sa = b.one_seg();
    let f = tcp_frame(sandbox(40_000), remote(), ISN + 1, sa.seq.wrapping_add(1), PSH_ACK, 1000, &[], b"GET /");
    b.send(&f);
    assert_eq!(b.host.written(id), b"GET /");
    let acks = b.flush();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].clone().tcp().ack, ISN + 1 + 5);
}

// ------------------------------------------------------------------ sandbox → host

#[test]
fn data_is_written_in_order_and_acked_once_per_batch() {
    let (mut b, mut c) = established(Some(7));
    let (a, d, e) = (pattern(1000, 1), pattern(1460, 2), pattern(17, 3));
    for p in [&a, &d, &e] {
        let f = c.data(p);
        b.send(&f);
    }
    b.no_frames();
    assert_eq!(
        b.host.take_calls(),
        vec![Call::Send(c.id, a.clone()), Call::Send(c.id, d.clone()), Call::Send(c.id, e.clone())]
    );
    let acks = b.flush();
    assert_eq!(acks.len(), 1, "one ACK for the batch");
    let ack = acks[0].clone().tcp();
    assert!(ack.ack_flag && !ack.syn && !ack.fin && !ack.psh);
    assert_eq!(ack.ack, c.snd);
    assert_eq!(ack.seq, c.rcv);
    assert_eq!(ack.window, ((W) >> 7) as u16, "the full window, scaled by 7");
    assert!(b.flush().is_empty(), "nothing more owed");
    let f = &b.tr.flows(b.now)[0].1;
    assert_eq!(f.bytes_from_sandbox, 2477);
}

#[test]
fn window_is_unscaled_without_window_scale() {
    let (mut b, mut c) = established(None);
    let f = c.data(b"x");
    b.send(&f);
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.window, u16::MAX);
}

#[test]
fn partial_write_parks_bytes_shrinks_the_window_and_writable_flushes() {
    let (mut b, mut c) = established(Some(7));
    let data = pattern(1000, 5);
    b.host.capacity.insert(c.id, 100);
    let f = c.data(&data);
    b.send(&f);
    assert_eq!(b.host.written(c.id), &data[..100]);
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, c.snd, "parked bytes are accepted");
    assert_eq!(ack.window, ((W - 900) >> 7) as u16);

    // More data goes behind the parked bytes without touching the socket.
    let more = pattern(500, 6);
    let f = c.data(&more);
    b.host.take_calls();
    b.send(&f);
    assert!(b.host.take_calls().is_empty(), "the socket is not asked while bytes are parked");
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, c.snd);
    assert_eq!(ack.window, ((W - 1400) >> 7) as u16);

    // Still full: nothing moves, but the sandbox is told the window again.
    b.tr.writable(c.id, &mut b.host, &mut b.out);
    assert_eq!(b.host.written(c.id).len(), 100);

    b.host.capacity.insert(c.id, 400);
    b.tr.writable(c.id, &mut b.host, &mut b.out);
    assert_eq!(b.host.written(c.id).len(), 500);
    b.host.capacity.remove(&c.id);
    b.tr.writable(c.id, &mut b.host, &mut b.out);
    let mut all = data.clone();
    all.extend_from_slice(&more);
    assert_eq!(b.host.written(c.id), &all[..], "every byte once, in order");
    let acks = b.flush();
    assert_eq!(acks.len(), 1, "one window update");
    let upd = acks[0].clone().tcp();
    assert_eq!(upd.window, ((W) >> 7) as u16, "window fully open again");
    assert_eq!(upd.ack, c.snd);
    // Nothing parked: writable is a no-op.
    b.host.take_calls();
    b.tr.writable(c.id, &mut b.host, &mut b.out);
    assert!(b.host.take_calls().is_empty());
    assert!(b.flush().is_empty());
}

#[test]
fn parked_bytes_are_bounded_by_the_window() {
    let (mut b, mut c) = established(Some(7));
    b.host.capacity.insert(c.id, 0);
    let chunk = pattern(60_000, 9);
    let start = c.snd;
    let chunks = W as usize / 60_000 + 2;
    for _ in 0..chunks {
        let f = c.data(&chunk);
        b.send(&f);
    }
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, start.wrapping_add(W), "the switch accepts exactly its window");
    assert_eq!(ack.window, 0);
    // The rest is retransmitted by the sandbox once the socket drains.
    b.host.capacity.remove(&c.id);
    b.tr.writable(c.id, &mut b.host, &mut b.out);
    assert_eq!(b.host.written(c.id).len(), W as usize);
    let upd = b.flush().remove(0).tcp();
    assert_eq!(upd.window, (W >> 7) as u16);
    let mut c2 = c;
    c2.snd = start.wrapping_add(W);
    let rest_len = chunks * 60_000 - W as usize;
    let rest = (0..chunks * 60_000).map(|i| chunk[i % 60_000]).skip(W as usize).collect::<Vec<_>>();
    for part in rest.chunks(60_000) {
        let f = c2.data(part);
        b.send(&f);
    }
    assert_eq!(b.host.written(c.id).len(), W as usize + rest_len);
    let expect: Vec<u8> = (0..chunks * 60_000).map(|i| chunk[i % 60_000]).collect();
    assert_eq!(b.host.written(c.id), &expect[..]);
}

#[test]
fn overlapping_retransmission_is_not_written_twice() {
    let (mut b, c) = established(None);
    let data = pattern(1500, 7);
    let s = c.snd;
    b.send(&c.seg(s, PSH_ACK, 65535, &data[..1000]));
    // Overlaps [500, 1000) already written, brings [1000, 1500).
    b.send(&c.seg(s.wrapping_add(500), PSH_ACK, 65535, &data[500..1500]));
    assert_eq!(b.host.written(c.id), &data[..]);
    b.host.take_calls();
    // A pure duplicate writes nothing but is answered.
    b.send(&c.seg(s, PSH_ACK, 65535, &data[..1000]));
    assert!(b.host.take_calls().iter().all(|c| !matches!(c, Call::Send(..))));
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, s.wrapping_add(1500));
}

#[test]
fn a_gap_is_not_written_and_gets_a_duplicate_ack() {
    let (mut b, c) = established(None);
    let data = pattern(2000, 8);
    let s = c.snd;
    b.send(&c.seg(s.wrapping_add(1000), PSH_ACK, 65535, &data[1000..]));
    assert!(b.host.written(c.id).is_empty());
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, s, "duplicate ACK for the missing bytes");
    b.send(&c.seg(s, PSH_ACK, 65535, &data[..1000]));
    assert_eq!(b.host.written(c.id), &data[..1000], "out-of-order data is not kept");
    b.send(&c.seg(s.wrapping_add(1000), PSH_ACK, 65535, &data[1000..]));
    assert_eq!(b.host.written(c.id), &data[..]);
    let acks = b.flush();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].clone().tcp().ack, s.wrapping_add(2000));
}

#[test]
fn fin_shuts_the_socket_down_after_parked_bytes() {
    let (mut b, mut c) = established(None);
    b.host.capacity.insert(c.id, 10);
    let data = pattern(100, 4);
    let f = c.data(&data);
    b.send(&f);
    let f = c.fin();
    b.send(&f);
    assert!(!b.host.calls.contains(&Call::ShutdownWrite(c.id)), "parked bytes first");
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, c.snd, "FIN acknowledged");
    assert_eq!(state_of(&b, c.id), "closing");
    b.host.take_calls();
    b.host.capacity.remove(&c.id);
    b.tr.writable(c.id, &mut b.host, &mut b.out);
    assert_eq!(b.host.take_calls(), vec![Call::Send(c.id, data[10..].to_vec()), Call::ShutdownWrite(c.id)]);
    assert_eq!(b.host.written(c.id), &data[..]);
    // Data after the FIN is ignored, the FIN again re-acked.
    let late = c.seg(c.snd.wrapping_sub(1), FIN_ACK, 65535, &[]);
    b.send(&late);
    assert!(b.host.take_calls().is_empty());
    b.flush();
}

#[test]
fn fin_with_data_in_one_segment() {
    let (mut b, c) = established(None);
    let f = c.seg(c.snd, FIN_ACK, 65535, b"bye");
    b.send(&f);
    assert_eq!(b.host.take_calls(), vec![Call::Send(c.id, b"bye".to_vec()), Call::ShutdownWrite(c.id)]);
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, c.snd.wrapping_add(4));
}

#[test]
fn a_write_error_resets_both_sides() {
    let (mut b, mut c) = established(None);
    b.host.send_errors.insert(c.id, libc::EPIPE);
    let f = c.data(b"hello");
    b.send(&f);
    let rst = b.one_seg();
    assert!(rst.rst);
    assert_eq!(rst.seq, c.rcv);
    assert!(b.host.calls.contains(&Call::Close(c.id, true)));
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET).active, 0);
}

// ------------------------------------------------------------------ host → sandbox

#[test]
fn host_data_is_sent_within_the_sandbox_window() {
    let (mut b, c) = established(None);
    // The sandbox advertises 2000 bytes.
    b.send(&c.ack(2000));
    let data = pattern(5000, 11);
    b.host.deliver(c.id, &data);
    b.tr.readable(c.id);
    let (id, room) = b.tr.next_sendable().expect("flow sendable");
    assert_eq!((id, room), (c.id, 2000));
    // Peek like the daemon would.
    let chunk = b.host.peek(id, room);
    let mut buf = vec![0u8; crate::nat::TCP_PAYLOAD + chunk.len()];
    buf[crate::nat::TCP_PAYLOAD..].copy_from_slice(&chunk);
    let df = b.tr.tcp_peeked(id, &mut buf, chunk.len(), b.now).unwrap();
    assert_eq!(df.port, GW_PORT);
    let seg = complete_data(&mut buf[..df.len], &df.hdr, Some(1460)).tcp();
    assert_eq!(df.hdr.gso_type, crate::wire::VirtioNetHdr::GSO_TCPV4);
    assert_eq!(df.hdr.gso_size, 1460);
    assert_eq!(seg.seq, c.rcv);
    assert_eq!(seg.ack, c.snd);
    assert!(seg.ack_flag && seg.psh);
    assert_eq!(seg.payload, &data[..2000]);
    assert_eq!((seg.src, seg.dst, seg.src_mac, seg.dst_mac), (remote(), sandbox(40_000), GW_MAC, SB_MAC));
    assert!(b.tr.next_sendable().is_none(), "window full");

    // The sandbox acks 1000: exactly those are discarded, 1000 more may go.
    let ack = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(1000), ACK, 2000, &[], &[]);
    b.host.take_calls();
    b.send(&ack);
    assert_eq!(b.host.take_calls(), vec![Call::Discard(c.id, 1000)]);
    assert_eq!(b.host.queued(c.id), 4000);
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.seq, c.rcv.wrapping_add(2000));
    assert_eq!(segs[0].1.payload, &data[2000..3000]);
    assert_eq!(b.tr.flows(b.now)[0].1.bytes_to_sandbox, 3000);
}

#[test]
fn small_frames_are_not_gso() {
    let (mut b, c) = established(Some(7));
    b.host.deliver(c.id, b"hello world");
    b.tr.readable(c.id);
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.payload, b"hello world");
}

#[test]
fn data_frames_advance_and_cover_the_stream() {
    let (mut b, c) = established(Some(7));
    // Window 65535 << 7: frames are limited by the largest IPv4 packet.
    let data = pattern(200_000, 12);
    b.host.deliver(c.id, &data);
    b.tr.readable(c.id);
    let segs = b.pump(1460);
    let mut expect_seq = c.rcv;
    let mut got = Vec::new();
    for (_, s) in &segs {
        assert_eq!(s.seq, expect_seq);
        assert!(s.payload.len() <= crate::nat::MAX_TCP_PAYLOAD);
        expect_seq = expect_seq.wrapping_add(s.payload.len() as u32);
        got.extend_from_slice(&s.payload);
    }
    assert_eq!(got, data);
    // One ACK for all of it discards all of it.
    b.host.take_calls();
    let ack = tcp_frame(c.local, c.remote, c.snd, expect_seq, ACK, 65535, &[], &[]);
    b.send(&ack);
    assert_eq!(b.host.take_calls(), vec![Call::Discard(c.id, 200_000)]);
    assert_eq!(b.host.queued(c.id), 0);
}

#[test]
fn data_frames_piggyback_the_ack_owed() {
    let (mut b, mut c) = established(None);
    let f = c.data(b"request");
    b.send(&f);
    b.host.deliver(c.id, b"response");
    b.tr.readable(c.id);
    let segs = b.pump(1460);
    assert_eq!(segs[0].1.ack, c.snd, "the data frame acks the request");
    assert!(b.flush().is_empty(), "no separate ACK");
}

#[test]
fn three_duplicate_acks_rewind() {
    let (mut b, c) = established(None);
    let data = pattern(3000, 13);
    b.host.deliver(c.id, &data);
    b.tr.readable(c.id);
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    b.host.take_calls();
    let dup = c.ack(65535);
    b.send(&dup);
    b.send(&dup);
    assert!(b.host.take_calls().is_empty());
    assert!(b.tr.next_sendable().is_none());
    b.send(&dup);
    assert_eq!(b.host.take_calls(), vec![Call::Rewind(c.id)]);
    let again = b.pump(1460);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.seq, c.rcv, "retransmitted from the oldest unacked byte");
    assert_eq!(again[0].1.payload, data);
    // A window update is not a duplicate ACK.
    b.send(&c.ack(60000));
    b.send(&c.ack(60001));
    b.send(&c.ack(60002));
    assert!(!b.host.take_calls().contains(&Call::Rewind(c.id)));
}

#[test]
fn rto_rewinds_with_backoff_and_gives_up() {
    let (mut b, c) = established(None);
    b.host.deliver(c.id, b"0123456789");
    b.tr.readable(c.id);
    let t0 = b.now;
    assert_eq!(b.pump(1460).len(), 1);
    assert_eq!(b.tr.next_deadline(), Some(t0 + 200));
    b.host.take_calls();
    b.poll(t0 + 199);
    assert!(b.host.take_calls().is_empty());
    b.poll(t0 + 200);
    assert_eq!(b.host.take_calls(), vec![Call::Rewind(c.id)]);
    let again = b.pump(1460);
    assert_eq!(again[0].1.seq, c.rcv);
    assert_eq!(again[0].1.payload, b"0123456789");
    // Backoff: 400 ms next.
    b.poll(t0 + 200 + 399);
    assert!(b.host.take_calls().is_empty());
    b.poll(t0 + 600);
    assert_eq!(b.host.take_calls(), vec![Call::Rewind(c.id)]);
    b.pump(1460);
    // Keep losing: the connection is reset after the retries.
    let mut rewinds = 2;
    let mut calls = Vec::new();
    for _ in 0..40 {
        let Some(at) = b.tr.next_deadline() else { break };
        b.poll(at);
        b.pump(1460);
        let now = b.host.take_calls();
        rewinds += now.iter().filter(|call| **call == Call::Rewind(c.id)).count();
        calls.extend(now);
        if b.tr.is_empty() {
            break;
        }
    }
    assert_eq!(rewinds, 8, "MAX_RETRIES retransmissions");
    assert!(calls.contains(&Call::Close(c.id, true)));
    let rst = b.frames().pop().unwrap().tcp();
    assert!(rst.rst);
    assert_eq!(b.counters(NET).flows_timed_out, 1);
    assert_eq!(b.counters(NET).active, 0);
}

#[test]
fn an_ack_stops_the_retransmission_timer() {
    let (mut b, c) = established(None);
    b.host.deliver(c.id, b"abc");
    b.tr.readable(c.id);
    b.pump(1460);
    let ack = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(3), ACK, 65535, &[], &[]);
    b.send(&ack);
    b.host.take_calls();
    b.poll(b.now + 10_000);
    assert!(b.host.take_calls().is_empty(), "nothing to retransmit");
    assert_eq!(b.tr.len(), 1);
}

#[test]
fn a_flow_that_goes_idle_and_busy_again_and_again_keeps_the_timer_heap_bounded() {
    let (mut b, mut c) = established(None);
    // Each burst arms a retransmission timer ahead of the idle one, which
    // stays in the heap, stale; the next idle timer is armed when it fires.
    for round in 0..3_000u32 {
        b.host.deliver(c.id, b"abc");
        b.tr.readable(c.id);
        assert_eq!(b.pump(1460).len(), 1, "round {round}");
        c.rcv = c.rcv.wrapping_add(3);
        let ack = tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 65535, &[], &[]);
        b.send(&ack);
        b.poll(b.now + 1_000);
    }
    assert_eq!(b.tr.len(), 1, "the flow lives on");
    let entries = b.tr.timer_entries();
    assert!(entries <= 2 + 1024 + 1, "{entries} timer entries for one flow");
}

#[test]
fn a_shut_window_is_probed_until_it_opens_and_never_reset() {
    let (mut b, mut c) = established(None);
    b.host.deliver(c.id, b"abc");
    b.tr.readable(c.id);
    assert_eq!(b.pump(1460).len(), 1);
    // The sandbox takes the bytes and shuts its window (its application
    // stopped reading); the host has more.
    c.rcv = c.rcv.wrapping_add(3);
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 0, &[], &[]));
    b.host.deliver(c.id, b"defgh");
    b.tr.readable(c.id);
    assert!(b.pump(1460).is_empty(), "nothing fits a shut window");
    // Its window update is lost: probes (the last byte acknowledged
    // again) go out, backing off, and the flow is never reset.
    let t0 = b.now;
    let mut probes = Vec::new();
    for step in 1..=40u64 {
        b.poll(t0 + step * 1_000);
        probes.extend(b.frames().into_iter().map(|f| f.tcp()));
    }
    assert!(probes.len() >= 5, "{} probes in 40 s", probes.len());
    for p in &probes {
        assert!(p.ack_flag && !p.rst && p.payload.is_empty(), "{p:?}");
        assert_eq!(p.seq, c.rcv.wrapping_sub(1), "the last byte acknowledged, again");
        assert_eq!(p.ack, c.snd);
    }
    assert!(b.host.take_calls().iter().all(|call| !matches!(call, Call::Close(..))), "never reset");
    // The sandbox answers a probe with its open window: the bytes go.
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 65535, &[], &[]));
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.payload, b"defgh");
}

#[test]
fn a_retransmission_that_meets_a_shut_window_probes_instead_of_resetting() {
    let (mut b, c) = established(None);
    b.host.deliver(c.id, b"abc");
    b.tr.readable(c.id);
    assert_eq!(b.pump(1460).len(), 1);
    // The sandbox shrinks its window to nothing before acknowledging.
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 0, &[], &[]));
    let t0 = b.now;
    for step in 1..=20u64 {
        b.poll(t0 + step * 500);
        assert!(b.pump(1460).is_empty(), "nothing may go into a shut window");
        b.flush();
    }
    assert!(b.host.take_calls().iter().all(|call| !matches!(call, Call::Close(..))), "never reset");
    assert_eq!(b.tr.len(), 1);
    // Its window opens: the bytes go again.
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 65535, &[], &[]));
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.payload, b"abc");
}

#[test]
fn a_persist_timer_that_outlives_the_shut_window_does_not_reset_the_flow() {
    let (mut b, mut c) = established(None);
    b.host.deliver(c.id, b"abc");
    b.tr.readable(c.id);
    assert_eq!(b.pump(1460).len(), 1);
    // The window shuts with "abc" in flight; its retransmission meets the
    // shut window, then a probe goes.
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 0, &[], &[]));
    let t0 = b.now;
    b.poll(t0 + 200);
    b.poll(t0 + 700);
    assert!(b.frames().into_iter().any(|f| f.tcp().seq == c.rcv.wrapping_sub(1)), "a probe");
    // The answer takes "abc" with the window still shut (persist armed
    // again), then the window opens with nothing more to send.
    c.rcv = c.rcv.wrapping_add(3);
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 0, &[], &[]));
    b.send(&tcp_frame(c.local, c.remote, c.snd, c.rcv, ACK, 65535, &[], &[]));
    assert!(b.pump(1460).is_empty(), "the host has nothing more");
    b.host.take_calls();
    // The persist deadline left behind passes: the flow lives on.
    for step in 1..=10u64 {
        b.poll(t0 + 700 + step * 1_000);
    }
    assert!(b.host.take_calls().iter().all(|call| !matches!(call, Call::Close(..))), "not reset");
    assert_eq!(b.tr.len(), 1);
    assert_eq!(b.counters(NET).flows_timed_out, 0);
}

#[test]
fn an_ack_beyond_what_was_sent_is_ignored() {
    let (mut b, c) = established(None);
    b.host.deliver(c.id, b"abc");
    b.tr.readable(c.id);
    b.pump(1460);
    b.host.take_calls();
    let ack = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(100), ACK, 65535, &[], &[]);
    b.send(&ack);
    assert!(b.host.take_calls().is_empty(), "nothing discarded");
}

// ------------------------------------------------------------------ closing

#[test]
fn host_eof_sends_fin_and_flow_goes_when_both_fins_are_acked() {
    let (mut b, mut c) = established(None);
    b.host.deliver(c.id, b"last words");
    b.host.deliver_eof(c.id);
    b.tr.readable(c.id);
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    let fin = b.one_seg();
    assert!(fin.fin && fin.ack_flag);
    assert_eq!(fin.seq, c.rcv.wrapping_add(10));
    assert_eq!(b.tr.flows(b.now)[0].1.state, "closing");
    // The sandbox acks data and FIN: only the data is discarded.
    b.host.take_calls();
    c.rcv = c.rcv.wrapping_add(11);
    b.send(&c.ack(65535));
    assert_eq!(b.host.take_calls(), vec![Call::Discard(c.id, 10)]);
    assert_eq!(b.tr.len(), 1, "the sandbox's side is still open");
    // The sandbox sends more, then its own FIN.
    let f = c.data(b"ok");
    b.send(&f);
    let f = c.fin();
    b.send(&f);
    assert_eq!(
        b.host.take_calls(),
        vec![Call::Send(c.id, b"ok".to_vec()), Call::ShutdownWrite(c.id), Call::Close(c.id, false)]
    );
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET).active, 0);
    // The sandbox's FIN is acknowledged even though the flow is gone.
    let mut acks = b.frames();
    acks.extend(b.flush());
    assert_eq!(acks.len(), 1, "the final ACK: {acks:?}");
    let last = acks[0].clone().tcp();
    assert!(last.ack_flag && !last.rst && !last.fin);
    assert_eq!(last.ack, c.snd);
    assert_eq!(last.seq, c.rcv);
}

#[test]
fn sandbox_fin_first_then_host_eof() {
    let (mut b, mut c) = established(None);
    let f = c.fin();
    b.send(&f);
    assert_eq!(b.host.take_calls(), vec![Call::ShutdownWrite(c.id)]);
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, c.snd);
    b.host.deliver(c.id, b"reply");
    b.host.deliver_eof(c.id);
    b.tr.readable(c.id);
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.ack, c.snd);
    let fin = b.one_seg();
    assert!(fin.fin);
    // Data acked but not the FIN: still there.
    let a = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(5), ACK, 65535, &[], &[]);
    b.send(&a);
    assert_eq!(b.tr.len(), 1);
    let a = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(6), ACK, 65535, &[], &[]);
    b.send(&a);
    assert!(b.tr.is_empty());
    let calls = b.host.take_calls();
    assert_eq!(calls, vec![Call::Discard(c.id, 5), Call::Close(c.id, false)]);
    assert!(b.flush().is_empty());
}

#[test]
fn lost_fin_is_retransmitted_on_rto() {
    let (mut b, c) = established(None);
    b.host.deliver_eof(c.id);
    b.tr.readable(c.id);
    assert!(b.pump(1460).is_empty());
    let fin = b.one_seg();
    assert!(fin.fin);
    let at = b.tr.next_deadline().expect("FIN timer");
    b.poll(at);
    b.pump(1460);
    let again = b.one_seg();
    assert!(again.fin);
    assert_eq!(again.seq, fin.seq);
}

#[test]
fn a_reset_counts_only_at_the_sequence_number_expected() {
    let (mut b, c) = established(None);
    // Another sandbox guessing the ports, not the sequence number: out of
    // the window it is ignored; in it, the flow answers with a challenge
    // ACK (RFC 5961) saying where it stands, and lives on.
    b.send(&c.seg(c.snd.wrapping_add(1 << 30), RST, 0, &[]));
    assert!(b.flush().is_empty(), "out of the window: nothing");
    b.send(&c.seg(c.snd.wrapping_add(1000), RST, 0, &[]));
    let challenge = b.flush().remove(0).tcp();
    assert!(challenge.ack_flag && !challenge.rst, "{challenge:?}");
    assert_eq!(challenge.ack, c.snd, "the sequence number a real reset would carry");
    assert!(b.host.take_calls().is_empty(), "the host socket is not touched");
    assert_eq!(b.tr.len(), 1);
    // The sandbox's own reset, at that number, ends it.
    b.send(&c.seg(c.snd, RST, 0, &[]));
    assert_eq!(b.host.take_calls(), vec![Call::Close(c.id, true)]);
    assert!(b.tr.is_empty());
}

#[test]
fn sandbox_rst_closes_with_reset() {
    let (mut b, c) = established(None);
    b.send(&c.seg(c.snd, RST, 0, &[]));
    assert_eq!(b.host.take_calls(), vec![Call::Close(c.id, true)]);
    b.no_frames();
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET).active, 0);
    // Later segments of the connection are strays.
    b.send(&c.ack(100));
    let rst = b.one_seg();
    assert!(rst.rst);
}

#[test]
fn host_failure_resets_the_sandbox() {
    let (mut b, mut c) = established(None);
    let f = c.data(b"abc");
    b.send(&f);
    b.flush();
    b.tr.host_failed(c.id, &mut b.host, &mut b.out);
    let rst = b.one_seg();
    assert!(rst.rst && rst.ack_flag);
    assert_eq!(rst.seq, c.rcv);
    assert_eq!(rst.ack, c.snd);
    assert!(b.host.take_calls().contains(&Call::Close(c.id, true)));
    assert!(b.tr.is_empty());
}

// ------------------------------------------------------------------ failures and limits

#[test]
fn connect_refused_resets_the_sandbox() {
    let mut b = Bench::new();
    let id = b.syn(sandbox(40_000), remote(), ISN, None);
    b.tr.connected(id, Err(errno(libc::ECONNREFUSED)), b.now, &mut b.host, &mut b.out);
    let rst = b.one_seg();
    assert!(rst.rst && rst.ack_flag);
    assert_eq!(rst.ack, ISN + 1);
    assert_eq!((rst.src, rst.dst), (remote(), sandbox(40_000)));
    assert_eq!(b.host.take_calls(), vec![Call::Open(id, Proto::Tcp, remote()), Call::Close(id, false)]);
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET), Counters { flows_opened: 1, flows_refused: 1, ..Counters::default() });
}

#[test]
fn open_failing_at_once_is_a_refusal_too() {
    let mut b = Bench::new();
    b.host.open_errors.insert(remote(), libc::ECONNREFUSED);
    let id = b.syn(sandbox(40_000), remote(), ISN, None);
    let rst = b.one_seg();
    assert!(rst.rst);
    assert!(b.host.calls.contains(&Call::Close(id, false)));
    assert_eq!(b.counters(NET).flows_refused, 1);
}

/// The quoted header of an ICMP error: the sandbox's kernel matches it to
/// its socket by addresses, ports and (TCP) a sequence number in window.
fn check_quote(quote: &[u8], proto: u8, src: std::net::SocketAddr, dst: std::net::SocketAddr) {
    assert!(quote.len() >= 28, "IPv4 header and 8 bytes: {quote:?}");
    assert_eq!(quote[0] >> 4, 4);
    assert_eq!(quote[9], proto);
    assert_eq!(&quote[12..16], &v4(src.ip()).octets());
    assert_eq!(&quote[16..20], &v4(dst.ip()).octets());
    assert_eq!(u16::from_be_bytes([quote[20], quote[21]]), src.port());
    assert_eq!(u16::from_be_bytes([quote[22], quote[23]]), dst.port());
}

#[test]
fn network_unreachable_answers_icmp_quoting_the_syn() {
    for (err, code) in [(libc::ENETUNREACH, 0u8), (libc::EHOSTUNREACH, 1), (libc::ETIMEDOUT, 1)] {
        let mut b = Bench::new();
        let id = b.syn(sandbox(40_000), remote(), ISN, None);
        b.tr.connected(id, Err(errno(err)), b.now, &mut b.host, &mut b.out);
        let mut f = b.frames();
        assert_eq!(f.len(), 1);
        let Out::Icmp { src, dst, icmp_type, payload } = f.remove(0) else { panic!("not ICMP") };
        assert_eq!((src, dst), (v4(remote().ip()), SB_IP));
        let (t, c) = icmp_type_code(&icmp_type);
        assert_eq!((t, c), (3, code));
        check_quote(&payload, 6, sandbox(40_000), remote());
        // Linux drops ICMP errors for a SYN_SENT socket unless the quoted
        // sequence number is within [snd_una, snd_nxt] = [ISN, ISN + 1].
        let seq = u32::from_be_bytes(payload[24..28].try_into().unwrap());
        assert!(seq == ISN || seq == ISN + 1, "quoted seq {seq} is the SYN's");
        assert!(b.tr.is_empty());
        assert_eq!(b.counters(NET).flows_refused, 1);
        assert!(b.host.calls.contains(&Call::Close(id, false)));
    }
}

pub(super) fn icmp_type_code(t: &etherparse::Icmpv4Type) -> (u8, u8) {
    let h = etherparse::Icmpv4Header::new(t.clone());
    let bytes = h.to_bytes();
    (bytes[0], bytes[1])
}

#[test]
fn flow_table_bound_refuses_and_counts() {
    let mut b = Bench::with(Limits { max_flows: 2 }, 7);
    b.syn(sandbox(1), remote(), ISN, None);
    b.syn(sandbox(2), remote(), ISN, None);
    b.host.take_calls();
    let f = tcp_frame(sandbox(3), remote(), ISN, 0, SYN, 64240, &syn_options(1460, None), &[]);
    b.send(&f);
    assert!(b.host.take_calls().is_empty(), "no socket for a flow beyond the bound");
    let rst = b.one_seg();
    assert!(rst.rst && rst.ack_flag);
    assert_eq!(rst.ack, ISN + 1);
    // UDP too.
    b.send(&udp_frame(sandbox(4), sa([8, 8, 8, 8], 53), b"q"));
    assert!(b.host.take_calls().is_empty());
    assert_eq!(b.tr.len(), 2);
    let c = b.counters(NET);
    assert_eq!(c.table_full, 2);
    assert_eq!(c.flows_opened, 2);
    assert_eq!(c.active, 2);
}

#[test]
fn counters_follow_flows() {
    let mut b = Bench::new();
    let c1 = b.connect(sandbox(1), ISN, None);
    let c2 = b.connect(sandbox(2), ISN, None);
    let id3 = b.syn(sandbox(3), remote(), ISN, None);
    b.tr.connected(id3, Err(errno(libc::ECONNREFUSED)), b.now, &mut b.host, &mut b.out);
    assert_eq!(b.counters(NET), Counters { flows_opened: 3, flows_refused: 1, active: 2, ..Counters::default() });
    b.send(&c1.seg(c1.snd, RST, 0, &[]));
    assert_eq!(b.counters(NET).active, 1);
    b.tr.host_failed(c2.id, &mut b.host, &mut b.out);
    assert_eq!(b.counters(NET), Counters { flows_opened: 3, flows_refused: 1, active: 0, ..Counters::default() });
    assert_eq!(b.counters(NET2), Counters::default());
}

#[test]
fn stray_segments_get_resets() {
    let mut b = Bench::new();
    // An ACK: RST with its ack as seq.
    b.send(&tcp_frame(sandbox(1), remote(), 500, 777, ACK, 100, &[], &[]));
    let r = b.one_seg();
    assert!(r.rst && !r.ack_flag);
    assert_eq!(r.seq, 777);
    assert_eq!((r.src, r.dst), (remote(), sandbox(1)));
    // No ACK flag: RST|ACK acking the segment.
    b.send(&tcp_frame(sandbox(1), remote(), 500, 0, Flags { psh: true, ..Flags::default() }, 100, &[], b"abcd"));
    let r = b.one_seg();
    assert!(r.rst && r.ack_flag);
    assert_eq!((r.seq, r.ack), (0, 504));
    // A FIN without ACK counts one more.
    b.send(&tcp_frame(sandbox(1), remote(), 500, 0, Flags { fin: true, ..Flags::default() }, 100, &[], b"ab"));
    assert_eq!(b.one_seg().ack, 503);
    // A RST is never answered.
    b.send(&tcp_frame(sandbox(1), remote(), 500, 0, RST, 0, &[], &[]));
    b.send(&tcp_frame(sandbox(1), remote(), 500, 9, RST_ACK, 0, &[], &[]));
    b.no_frames();
    // A SYN-ACK with no flow: reset.
    b.send(&tcp_frame(sandbox(1), remote(), 500, 9, SYN_ACK, 0, &[], &[]));
    assert!(b.one_seg().rst);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.is_empty());
}

#[test]
fn sequence_numbers_wrap() {
    // Pick the clock so that the flow's ISS (4 µs ticks plus a keyed hash
    // of its 4-tuple) lands just below 2^32.
    let mut b = Bench::new();
    let key = FlowKey { network: NET, proto: Proto::Tcp, sandbox: sandbox(40_000), remote: remote() };
    let hash = b.tr.iss_for(&key, 0);
    let target = u32::MAX - 100;
    b.now = u64::from(target.wrapping_sub(hash) / 250);
    let isn = u32::MAX - 50;
    let mut c = b.connect(sandbox(40_000), isn, None);
    let iss = c.rcv.wrapping_sub(1);
    assert!(iss <= target && iss > target - 250, "ISS {iss:#x} just below the wrap");
    b.host.take_calls();
    b.pump(1460);
    // Sandbox → host across the wrap, with an overlapping retransmission.
    let data = pattern(3000, 21);
    let s = c.snd;
    b.send(&c.seg(s, PSH_ACK, 65535, &data[..1000]));
    b.send(&c.seg(s.wrapping_add(900), PSH_ACK, 65535, &data[900..3000]));
    c.snd = s.wrapping_add(3000);
    assert_eq!(b.host.written(c.id), &data[..]);
    let ack = b.flush().remove(0).tcp();
    assert_eq!(ack.ack, isn.wrapping_add(1).wrapping_add(3000));
    // Host → sandbox across the wrap.
    let back = pattern(4000, 22);
    b.host.deliver(c.id, &back);
    b.tr.readable(c.id);
    b.send(&c.ack(1500));
    let segs = b.pump(1460);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].1.seq, c.rcv);
    assert_eq!(segs[0].1.payload.len(), 1500);
    b.host.take_calls();
    let a = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(1500), ACK, 4000, &[], &[]);
    b.send(&a);
    assert_eq!(b.host.take_calls(), vec![Call::Discard(c.id, 1500)]);
    let segs = b.pump(1460);
    assert_eq!(segs[0].1.seq, c.rcv.wrapping_add(1500));
    assert_eq!(segs[0].1.payload, &back[1500..]);
    // A gap across the wrap is still a gap.
    b.send(&c.seg(c.snd.wrapping_add(10), PSH_ACK, 65535, b"late"));
    assert_eq!(b.host.written(c.id).len(), 3000);
    // And the close across the wrap.
    b.host.deliver_eof(c.id);
    b.tr.readable(c.id);
    b.pump(1460);
    let fin = b.frames().into_iter().map(Out::tcp).find(|s| s.fin).expect("FIN");
    assert_eq!(fin.seq, c.rcv.wrapping_add(4000));
    c.rcv = fin.seq.wrapping_add(1);
    let f = c.fin();
    b.send(&f);
    assert!(b.tr.is_empty());
    assert!(b.host.calls.contains(&Call::Close(c.id, false)));
}

#[test]
fn syn_to_the_gateway_itself_is_not_translated() {
    let mut b = Bench::new();
    let gw = sock(GW_IP, 80);
    b.send(&tcp_frame(sandbox(1), gw, ISN, 0, SYN, 1000, &[], &[]));
    assert!(b.host.calls.is_empty());
    assert!(b.tr.is_empty());
}

#[test]
fn isns_differ_between_flows() {
    let mut b = Bench::new();
    let c1 = b.connect(sandbox(1), ISN, None);
    let c2 = b.connect(sandbox(2), ISN, None);
    assert_ne!(c1.rcv, c2.rcv);
    assert_ne!(c1.id, c2.id);
}

#[test]
fn forgetting_a_sandbox_resets_its_connections_and_empties_the_table() {
    let (mut b, c) = established(Some(7));
    let other = b.connect(sandbox(40_001), ISN, None);
    b.host.take_calls();
    assert_eq!(b.counters(NET).active, 2);
    let ended = b.tr.forget_endpoint(NET, MacAddr(SB_MAC), &[sandbox(0).ip()], &mut b.host);
    assert_eq!(ended, 2);
    let calls = b.host.take_calls();
    assert!(calls.contains(&Call::Close(c.id, true)), "{calls:?}");
    assert!(calls.contains(&Call::Close(other.id, true)), "{calls:?}");
    assert!(b.tr.is_empty());
    assert_eq!(b.counters(NET).active, 0);
    assert_eq!(b.tr.forget_endpoint(NET, MacAddr(SB_MAC), &[sandbox(0).ip()], &mut b.host), 0, "nothing left");
}

#[test]
fn a_reused_four_tuple_gets_a_later_iss_and_other_tuples_differ() {
    // A sandbox that closed first keeps the 4-tuple in TIME-WAIT and takes a
    // new SYN on it only beyond the old sequence numbers (RFC 6528's clock).
    let b = Bench::new();
    let key = FlowKey { network: NET, proto: Proto::Tcp, sandbox: sandbox(8000), remote: remote() };
    let first = b.tr.iss_for(&key, 10_000);
    let later = b.tr.iss_for(&key, 10_001);
    assert_eq!(later.wrapping_sub(first), 250, "4 µs ticks");
    let other = FlowKey { remote: sock(remote().ip(), remote().port() + 1), ..key };
    assert_ne!(b.tr.iss_for(&other, 10_000), first, "the keyed hash separates tuples");
}

#[test]
fn a_late_ack_after_a_rewind_is_taken_and_nothing_is_sent_twice() {
    let (mut b, c) = established(None);
    b.host.deliver(c.id, b"0123456789");
    b.host.deliver_eof(c.id);
    b.tr.readable(c.id);
    let t0 = b.now;
    let sent = b.pump(1460);
    assert_eq!(sent[0].1.payload, b"0123456789");
    assert!(b.frames().into_iter().map(Out::tcp).any(|s| s.fin), "FIN after the data");
    // The sandbox's ACK is late: the timer rewinds first.
    b.poll(t0 + 200);
    assert_eq!(b.host.take_calls(), vec![Call::Rewind(c.id)]);
    // Then the ACK of everything, FIN included, arrives.
    let late = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(11), ACK, 4000, &[], &[]);
    b.send(&late);
    assert_eq!(b.host.take_calls(), vec![Call::Discard(c.id, 10)], "the data is released, not sent again");
    assert!(b.pump(1460).is_empty(), "nothing to resend");
    assert_eq!(state_of(&b, c.id), "closing", "our FIN counts as acknowledged");
    // An ACK beyond anything ever sent is still ignored.
    let bogus = tcp_frame(c.local, c.remote, c.snd, c.rcv.wrapping_add(100), ACK, 4000, &[], &[]);
    b.send(&bogus);
    assert!(b.host.take_calls().is_empty());
}
