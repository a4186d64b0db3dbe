//! Packet capture in the loop: which frames a capture gets (both
//! directions of its port, GSO super-frames whole, the inner frames of a
//! tunnel port, GRO merges as written, the underlay's datagrams with their
//! IP and UDP header, frames toward an impaired port as they leave), that
//! a full ring drops without holding up forwarding, and that a capture ends
//! with its port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ctl::Impairment;
use ctl::proto::{Direction, LINKTYPE_ETHERNET};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::super::handle::Command;
use super::super::testing::frames::{BROADCAST, Tcp, frame, mac, pattern, vtep, vxlan};
use super::super::testing::{Harness, Setup, overlay_network, plain_network};
use crate::daemon::capture::{CaptureRing, Filter, Popped, Scope, Session};
use crate::impair::ImpairSettings;
use crate::port::{NetworkId, PortId};
use crate::wire::VirtioNetHdr;

const VNI: u32 = 4242;

/// Starts a capture of `scope` keeping `snaplen` bytes, in a ring of
/// `records`.
fn capture(h: &mut Harness, scope: Scope, records: usize, snaplen: usize, filter: Option<&str>) -> Arc<CaptureRing> {
    let ring = Arc::new(CaptureRing::new(records, snaplen, None));
    let filter = filter.map(|f| Filter::compile(f, LINKTYPE_ETHERNET).expect("a valid filter"));
    let session = Box::new(Session::new(ring.clone(), scope, filter));
    h.call(|reply| Command::Capture { session, reply });
    ring
}

/// What the capture holds: (port, direction, whole length, bytes, remote).
type Taken = (PortId, Direction, u32, Vec<u8>, Option<SocketAddr>);

fn take(ring: &CaptureRing) -> Vec<Taken> {
    let mut out = Vec::new();
    while let Popped::Record(r) = ring.pop(Duration::ZERO) {
        out.push((r.port, r.direction, r.orig_len, r.data.clone(), r.remote));
        ring.recycle(r);
    }
    out
}

#[test]
fn a_port_capture_sees_both_directions_of_its_port_only() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b, c) = (h.endpoint(net), h.endpoint(net), h.endpoint(net));
    let ring = capture(&mut h, Scope::Ports(vec![a]), 16, 65_536, None);

    let (f1, f2, f3, f4) =
        (frame(mac(2), mac(1), 1), frame(mac(1), mac(2), 2), frame(BROADCAST, mac(3), 3), frame(mac(3), mac(2), 4));
    h.inject(a, &f1); // from a: flooded
    h.inject(b, &f2); // to a
    h.inject(c, &f3); // a broadcast reaching a
    h.run_until_idle();
    h.inject(b, &f4); // b to c: not a's
    h.run_until_idle();
    let len = |f: &[u8]| f.len() as u32;
    assert_eq!(
        take(&ring),
        vec![
            (a, Direction::Rx, len(&f1), f1.clone(), None),
            (a, Direction::Tx, len(&f2), f2.clone(), None),
            (a, Direction::Tx, len(&f3), f3.clone(), None),
        ]
    );
    assert_eq!(h.sent_frames(c), vec![f1, f4], "forwarding as without a capture");
    assert_eq!((ring.dropped(), ring.filtered()), (0, 0));
}

#[test]
fn a_full_ring_drops_and_counts_while_every_frame_is_forwarded() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    let ring = capture(&mut h, Scope::Network(net), 3, 20, Some("ether src 02:42:00:00:00:01"));
    for tag in 0..10 {
        h.inject(a, &frame(BROADCAST, mac(1), tag));
        h.inject(b, &frame(BROADCAST, mac(2), tag));
    }
    h.run_until_idle();
    assert_eq!(h.sent_frames(b).len(), 10, "b got all of a's frames");
    assert_eq!(h.sent_frames(a).len(), 10, "and a all of b's");
    // a's 10 frames entering on a and leaving on b pass the filter; b's
    // 20 crossings do not. Three fit; the client has read none.
    let taken = take(&ring);
    assert_eq!(taken.len(), 3);
    assert!(taken.iter().all(|t| t.3.len() == 20 && t.2 == 60), "cut to the snapshot length: {taken:?}");
    assert_eq!((ring.queued(), ring.dropped(), ring.filtered()), (3, 17, 20));
}

#[test]
fn a_gso_super_frame_is_captured_whole_without_its_virtio_header() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    let ring = capture(&mut h, Scope::Ports(vec![b]), 4, 65_536, None);
    let tso = Tcp::between(1, 2).frame(&pattern(20_000, 1));
    let hdr = VirtioNetHdr {
        flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    h.inject_with_hdr(a, hdr, &tso);
    h.run_until_idle();
    assert_eq!(take(&ring), vec![(b, Direction::Tx, tso.len() as u32, tso.clone(), None)]);
    assert_eq!(h.sent(b)[0].frame, tso);
}

#[test]
fn tunnel_ports_show_inner_frames_the_tap_its_gro_merge_and_the_underlay_its_datagrams() {
    let mut h = Harness::with(Setup::host(1));
    let net = h.network(overlay_network(0, VNI));
    let p2 = h.peer(net, vtep(2));
    let a = h.endpoint(net);
    let tunnel = capture(&mut h, Scope::Ports(vec![p2]), 16, 65_536, None);
    let tap = capture(&mut h, Scope::Ports(vec![a]), 16, 65_536, None);
    let underlay = capture(&mut h, Scope::Underlay, 16, 65_536, None);

    let hello = frame(BROADCAST, mac(3), 0);
    h.inject(a, &hello);
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.len(), 1);
    // Four segments from station 7 behind host 2, merged into one TAP write.
    let mut tcp = Tcp::between(7, 3);
    let payload = pattern(4 * 1400, 9);
    let from = SocketAddr::new(vtep(2).ip(), 51_000);
    let mut segments = Vec::new();
    for (k, chunk) in payload.chunks(1400).enumerate() {
        tcp.seq = 1_000 + (k * 1400) as u32;
        tcp.psh = k == 3;
        segments.push(tcp.frame(chunk));
        h.inject_datagram(from, &vxlan(VNI, segments.last().expect("just pushed")));
    }
    h.run_until_idle();
    let merged = h.sent(a);
    assert_eq!(merged.len(), 1, "one GRO write");

    let inner: Vec<Taken> = take(&tunnel);
    let mut expected = vec![(p2, Direction::Tx, hello.len() as u32, hello.clone(), Some(vtep(2)))];
    expected.extend(segments.iter().map(|s| (p2, Direction::Rx, s.len() as u32, s.clone(), Some(vtep(2)))));
    assert_eq!(inner, expected, "the tunnel port: inner frames, no VXLAN header");

    let at_tap = take(&tap);
    assert_eq!(at_tap.len(), 2);
    assert_eq!((at_tap[0].1, &at_tap[0].3), (Direction::Rx, &hello));
    assert_eq!((at_tap[1].1, &at_tap[1].3), (Direction::Tx, &merged[0].frame), "the merged frame, as written");

    let datagrams = take(&underlay);
    assert_eq!(datagrams.len(), 5, "one sent, four received");
    let (source_port, sent_payload) = (40_000 + sent[0].sender as u16, &sent[0].bytes);
    let check = |t: &Taken, dir: Direction, src: SocketAddr, dst: SocketAddr, payload: &[u8]| {
        assert_eq!(t.1, dir);
        let packet = SlicedPacket::from_ip(&t.3).expect("an IP packet");
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) = (&packet.net, &packet.transport) else {
            panic!("not UDP/IPv4: {t:?}")
        };
        let header = ip.header();
        assert_eq!(SocketAddr::new(header.source_addr().into(), udp.source_port()), src);
        assert_eq!(SocketAddr::new(header.destination_addr().into(), udp.destination_port()), dst);
        assert_eq!(udp.payload(), payload);
        assert_eq!(t.2 as usize, 28 + payload.len());
    };
    let local = vtep(1);
    check(&datagrams[0], Direction::Tx, SocketAddr::new(local.ip(), source_port), vtep(2), sent_payload);
    for (t, s) in datagrams[1..].iter().zip(&segments) {
        check(t, Direction::Rx, from, local, &vxlan(VNI, s));
    }
}

#[test]
fn a_capture_ends_with_its_port_and_a_network_capture_with_its_network() {
    let mut h = Harness::new();
    let (n0, n1) = (h.network(plain_network(0)), h.network(plain_network(1)));
    let (a, b) = (h.endpoint(n0), h.endpoint(n1));
    let port = capture(&mut h, Scope::Ports(vec![a]), 4, 64, None);
    let whole = capture(&mut h, Scope::Network(NetworkId(1)), 4, 64, None);
    h.inject(a, &frame(BROADCAST, mac(1), 1));
    h.run_until_idle();
    h.remove_port(a);
    assert!(port.is_ended(), "its only port is gone");
    assert!(matches!(port.pop(Duration::ZERO), Popped::Record(_)), "what it queued is still delivered");
    assert!(matches!(port.pop(Duration::ZERO), Popped::Ended));
    assert!(!whole.is_ended());
    h.remove_port(b);
    h.call(|reply| Command::RemoveNetwork { id: n1, reply }).expect("an empty network is removed");
    assert!(whole.is_ended());
    assert!(h.dp.captures.is_empty(), "the datapath forgot both");
}

#[test]
fn a_frame_toward_an_impaired_port_is_captured_as_it_leaves_after_its_delay() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    let settings = ImpairSettings::new(&Impairment { delay_us: 10_000, ..Impairment::default() }).expect("valid");
    h.call(|reply| Command::SetImpair { id: b, settings: Some(settings), reply }).expect("b is a TAP port");
    let ring = capture(&mut h, Scope::Ports(vec![b]), 4, 65_536, None);
    let f = frame(BROADCAST, mac(1), 1);
    h.inject(a, &f);
    h.run_until_idle();
    assert!(take(&ring).is_empty(), "still held by the impairment");
    h.advance(Duration::from_millis(10));
    h.step();
    assert_eq!(h.sent_frames(b), vec![f.clone()]);
    assert_eq!(take(&ring), vec![(b, Direction::Tx, f.len() as u32, f, None)], "captured when it left");
}
