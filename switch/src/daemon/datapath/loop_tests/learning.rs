//! Learning, forwarding, flooding, isolation between networks, aging.

use std::time::Duration;

use super::super::testing::frames::{BROADCAST, Tcp, frame, mac, pattern};
use super::super::testing::{Harness, plain_network};
use crate::wire::VirtioNetHdr;

#[test]
fn a_learned_station_gets_its_frames_and_no_one_else() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b, c) = (h.endpoint(net), h.endpoint(net), h.endpoint(net));

    // Station 1 on a talks to an unknown station 2: flooded, and 1 learned on a.
    h.inject(a, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 1)]);
    assert_eq!(h.sent_frames(c), vec![frame(mac(2), mac(1), 1)]);
    assert!(h.sent(a).is_empty(), "never back out of the ingress port");
    assert_eq!(h.lookup(net, mac(1)), Some(a));

    // Station 2 answers from b: only a gets it; 2 is learned on b.
    h.inject(b, &frame(mac(1), mac(2), 2));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![frame(mac(1), mac(2), 2)]);
    assert!(h.sent(c).is_empty(), "a known unicast reaches its port only");
    assert_eq!(h.lookup(net, mac(2)), Some(b));

    // And back: straight to b.
    h.inject(a, &frame(mac(2), mac(1), 3));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 3)]);
    assert!(h.sent(c).is_empty());

    let (ca, cb, cc) = (h.counters(a), h.counters(b), h.counters(c));
    assert_eq!((ca.rx_packets, ca.rx_flooded, ca.tx_packets), (2, 1, 1));
    assert_eq!((cb.rx_packets, cb.rx_flooded, cb.tx_packets), (1, 0, 2));
    assert_eq!((cc.rx_packets, cc.tx_packets), (0, 1));
    assert_eq!(ca.rx_bytes, 2 * 60);
    assert_eq!(h.learning(net).learned, 2);
    assert_eq!(ca.drops.total() + cb.drops.total() + cc.drops.total(), 0);
}

#[test]
fn floods_reach_every_other_port_of_their_network_and_no_other_network() {
    let mut h = Harness::new();
    let red = h.network(plain_network(0));
    let blue = h.network(plain_network(1));
    let (r1, r2, r3) = (h.endpoint(red), h.endpoint(red), h.endpoint(red));
    let (b1, b2) = (h.endpoint(blue), h.endpoint(blue));

    for (tag, dst) in [(1, BROADCAST), (2, mac(9))] {
        h.inject(r1, &frame(dst, mac(1), tag));
        h.run_until_idle();
        assert!(h.sent(r1).is_empty(), "not back to the ingress port");
        assert_eq!(h.sent_frames(r2), vec![frame(dst, mac(1), tag)]);
        assert_eq!(h.sent_frames(r3), vec![frame(dst, mac(1), tag)]);
        assert!(h.sent(b1).is_empty() && h.sent(b2).is_empty(), "isolation: nothing crosses into blue");
    }
    assert_eq!(h.counters(r1).rx_flooded, 2);

    // The same MAC on both networks is two stations: each network learns
    // its own, and a blue frame to it stays in blue.
    h.inject(b1, &frame(BROADCAST, mac(1), 3));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b2), vec![frame(BROADCAST, mac(1), 3)]);
    assert!(h.sent(r2).is_empty() && h.sent(r3).is_empty());
    assert_eq!((h.lookup(red, mac(1)), h.lookup(blue, mac(1))), (Some(r1), Some(b1)));
    h.inject(b2, &frame(mac(1), mac(2), 4));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b1), vec![frame(mac(1), mac(2), 4)]);
    assert!(h.sent(r1).is_empty(), "the red station of the same MAC gets nothing");
}

#[test]
fn an_aged_entry_floods_again() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b, c) = (h.endpoint(net), h.endpoint(net), h.endpoint(net));
    h.set_aging(Duration::from_secs(10));

    h.inject(b, &frame(BROADCAST, mac(2), 0));
    h.run_until_idle();
    h.sent(a);
    h.sent(c);

    // 9.9 s later (ticks ran meanwhile): still known.
    for _ in 0..99 {
        h.advance(Duration::from_millis(100));
        h.step();
    }
    h.inject(a, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 1)]);
    assert!(h.sent(c).is_empty());
    assert_eq!(h.learning(net).aged_out, 0);

    // 10 s after station 2 was last seen, the tick removes it...
    h.advance(Duration::from_millis(100));
    h.step();
    assert_eq!(h.learning(net).aged_out, 1);
    assert_eq!(h.lookup(net, mac(2)), None);
    assert_eq!(h.fdb(net).iter().map(|r| r.mac).collect::<Vec<_>>(), vec![mac(1)]);

    // ...and the next frame for it is flooded.
    h.inject(a, &frame(mac(2), mac(1), 2));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 2)]);
    assert_eq!(h.sent_frames(c), vec![frame(mac(2), mac(1), 2)]);
    assert_eq!(h.counters(a).rx_flooded, 1);
}

#[test]
fn a_station_that_moves_is_followed() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b, c) = (h.endpoint(net), h.endpoint(net), h.endpoint(net));
    h.inject(a, &frame(BROADCAST, mac(1), 0));
    h.run_until_idle();
    h.inject(b, &frame(BROADCAST, mac(1), 1));
    h.run_until_idle();
    assert_eq!(h.lookup(net, mac(1)), Some(b));
    assert_eq!(h.learning(net).station_moves, 1);
    h.sent(a);
    h.sent(b);
    h.sent(c);
    h.inject(c, &frame(mac(1), mac(3), 2));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(1), mac(3), 2)]);
    assert!(h.sent(a).is_empty());
}

#[test]
fn a_gso_frame_crosses_between_taps_with_its_header() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    // A 20,000-byte TSO frame with a partial checksum, as a sandbox's
    // kernel writes it.
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
    let sent = h.sent(b);
    assert_eq!(sent.len(), 1, "one write, not segments");
    assert_eq!(sent[0].hdr, hdr);
    assert_eq!(sent[0].frame, tso);
    assert_eq!(h.counters(a).drops.total(), 0, "GSO frames may exceed the MTU");
}
