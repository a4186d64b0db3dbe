//! Event recording by the bridge: learning, moves, flapping, aging, full
//! tables, learning limits, drop bursts, and the bounds that keep a flood
//! from becoming an event flood. Virtual clock, no sleeps.

use std::time::Duration;

use super::*;
use crate::bridge::{Bridge, NetworkConfig, RxFrame, TxPlan};
use crate::port::PortConfig;

const NET: NetworkId = NetworkId(0);
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);

fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0, b[0], b[1], b[2], b[3]])
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// One network, ports 1, 2, 3, table of `fdb_limit` entries.
fn bridge(fdb_limit: usize) -> Bridge {
    let mut b = Bridge::new();
    b.add_network(NET, NetworkConfig { fdb_limit }).unwrap();
    for p in [P1, P2, P3] {
        b.add_port(p, PortConfig::access(NET)).unwrap();
    }
    b
}

fn send(b: &mut Bridge, now: u64, port: PortId, bytes: &[u8]) {
    let mut plan = TxPlan::default();
    b.forward_batch(Timestamp(now), [RxFrame { port, bytes, gso: false }], &mut plan);
}

/// Drains the bridge's events: (events, overflow).
fn drain(b: &mut Bridge) -> (Vec<Event>, u64) {
    let mut out = Vec::with_capacity(EVENT_BUFFER);
    let overflow = b.events_mut().drain_into(&mut out);
    (out, overflow)
}

fn kinds(b: &mut Bridge) -> Vec<EventKind> {
    drain(b).0.into_iter().map(|e| e.kind).collect()
}

#[test]
fn learning_a_new_mac_is_an_event_refreshing_it_is_not() {
    let mut b = bridge(64);
    send(&mut b, 5, P1, &frame(MacAddr::BROADCAST, mac(1)));
    send(&mut b, 6, P1, &frame(MacAddr::BROADCAST, mac(1)));
    let (events, overflow) = drain(&mut b);
    assert_eq!(overflow, 0);
    assert_eq!(
        events,
        vec![Event { at: Timestamp(5), kind: EventKind::MacLearned { network: NET, mac: mac(1), port: P1 } }]
    );
    assert!(b.events().is_empty(), "draining empties the buffer");
}

#[test]
fn a_single_move_is_reported_with_both_ports() {
    let mut b = bridge(64);
    send(&mut b, 0, P1, &frame(MacAddr::BROADCAST, mac(1)));
    send(&mut b, 10, P2, &frame(MacAddr::BROADCAST, mac(1)));
    b.end_interval(Timestamp(1000));
    let moved = EventKind::MacMoved { network: NET, mac: mac(1), from: P1, to: P2 };
    assert_eq!(kinds(&mut b)[1..], [moved]);
}

#[test]
fn a_flapping_mac_is_reported_once_per_interval_naming_both_ports() {
    let mut b = bridge(64);
    send(&mut b, 0, P1, &frame(MacAddr::BROADCAST, mac(1)));
    drain(&mut b);
    // Seven moves within the first interval: P1 -> P2 -> P1 -> ... -> P2.
    for i in 1..=7u64 {
        let port = if i % 2 == 1 { P2 } else { P1 };
        send(&mut b, i * 10, port, &frame(MacAddr::BROADCAST, mac(1)));
    }
    let during = kinds(&mut b);
    assert_eq!(during, [EventKind::MacMoved { network: NET, mac: mac(1), from: P1, to: P2 }], "only the first move");
    b.end_interval(Timestamp(1000));
    let flapping = EventKind::MacFlapping {
        network: NET,
        mac: mac(1),
        ports: [P1, P2],
        moves: 7,
        suppressed: 6,
        interval_ms: 1000,
    };
    assert_eq!(kinds(&mut b), [flapping]);
    assert_eq!(b.learning_counters(NET).unwrap().station_moves, 7);

    // It goes on in the next interval: no move is reported on its own, one
    // flapping event at the end.
    for i in 0..4u64 {
        let port = if i % 2 == 0 { P1 } else { P2 };
        send(&mut b, 1100 + i * 10, port, &frame(MacAddr::BROADCAST, mac(1)));
    }
    assert!(kinds(&mut b).is_empty());
    b.end_interval(Timestamp(2000));
    let [EventKind::MacFlapping { ports, moves: 4, suppressed: 4, .. }] = kinds(&mut b)[..] else {
        panic!("expected one flapping event")
    };
    assert_eq!(ports, [P1, P2]);

    // A quiet interval ends it: the next move is an ordinary one again.
    b.end_interval(Timestamp(3000));
    assert!(kinds(&mut b).is_empty());
    send(&mut b, 3100, P3, &frame(MacAddr::BROADCAST, mac(1)));
    assert_eq!(kinds(&mut b), [EventKind::MacMoved { network: NET, mac: mac(1), from: P2, to: P3 }]);
}

#[test]
fn every_move_is_accounted_for_once() {
    // Moves of many MACs, some flapping, across intervals: moves reported
    // on their own plus moves folded into flapping events equal the
    // bridge's station-move counter.
    let mut b = bridge(1024);
    let mut moved = 0u64;
    let mut folded = 0u64;
    let mut now = 0;
    for round in 0..6u32 {
        for m in 0..20u32 {
            // MAC m moves (m % 4) + 1 times this round.
            for k in 0..=(m % 4) {
                let port = [P1, P2, P3][((round + k + m) % 3) as usize];
                now += 1;
                send(&mut b, now, port, &frame(MacAddr::BROADCAST, mac(m)));
            }
        }
        now = (u64::from(round) + 1) * 1000;
        b.end_interval(Timestamp(now));
        for e in drain(&mut b).0 {
            match e.kind {
                EventKind::MacMoved { .. } => moved += 1,
                EventKind::MacFlapping { suppressed, .. } => folded += u64::from(suppressed),
                _ => {}
            }
        }
    }
    assert_eq!(moved + folded, b.learning_counters(NET).unwrap().station_moves);
    assert!(folded > 0 && moved > 0, "moved {moved}, folded {folded}");
}

#[test]
fn a_mac_flood_is_bounded_per_interval_and_the_rest_counted() {
    let mut b = bridge(8192);
    // Within the port's learning limit (1024), so every MAC is learned.
    for m in 0..1000 {
        send(&mut b, 1, P1, &frame(MacAddr::BROADCAST, mac(m)));
    }
    b.end_interval(Timestamp(1000));
    let events = kinds(&mut b);
    let learned = events.iter().filter(|k| matches!(k, EventKind::MacLearned { .. })).count();
    assert_eq!(learned, NET_EVENTS_PER_INTERVAL as usize);
    let suppressed = EventKind::Suppressed { network: NET, learned: 1000 - NET_EVENTS_PER_INTERVAL, moved: 0, aged: 0 };
    assert_eq!(events.last(), Some(&suppressed));
    // The next interval has a fresh budget.
    send(&mut b, 1500, P2, &frame(MacAddr::BROADCAST, mac(99_999)));
    assert_eq!(kinds(&mut b), [EventKind::MacLearned { network: NET, mac: mac(99_999), port: P2 }]);
}

#[test]
fn a_full_table_is_reported_once_per_interval_with_the_refusals() {
    let mut b = bridge(4);
    for m in 0..4 {
        send(&mut b, 1, P1, &frame(MacAddr::BROADCAST, mac(m)));
    }
    drain(&mut b);
    for m in 4..1004 {
        send(&mut b, 2, P1, &frame(MacAddr::BROADCAST, mac(m)));
    }
    assert!(kinds(&mut b).is_empty(), "no event per refused frame");
    b.end_interval(Timestamp(1000));
    assert_eq!(kinds(&mut b), [EventKind::TableFull { network: NET, refused: 1000, limit: 4 }]);
    b.end_interval(Timestamp(2000));
    assert!(kinds(&mut b).is_empty(), "nothing refused since");
    send(&mut b, 2100, P2, &frame(MacAddr::BROADCAST, mac(5000)));
    b.end_interval(Timestamp(3000));
    assert_eq!(kinds(&mut b), [EventKind::TableFull { network: NET, refused: 1, limit: 4 }]);
}

#[test]
fn a_port_at_its_learning_limit_is_reported_once_per_interval() {
    let mut b = Bridge::new();
    b.add_network(NET, NetworkConfig::default()).unwrap();
    b.add_port(P1, PortConfig { learn_limit: 2, ..PortConfig::access(NET) }).unwrap();
    for m in 0..10 {
        send(&mut b, 1, P1, &frame(MacAddr::BROADCAST, mac(m)));
    }
    b.end_interval(Timestamp(1000));
    let events = kinds(&mut b);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2], EventKind::LearnLimit { network: NET, port: P1, refused: 8 });
}

#[test]
fn aging_reports_each_removed_mac() {
    let mut b = bridge(64);
    send(&mut b, 0, P1, &frame(MacAddr::BROADCAST, mac(1)));
    send(&mut b, 5_000, P2, &frame(MacAddr::BROADCAST, mac(2)));
    drain(&mut b);
    b.set_aging_time(Duration::from_secs(10)).unwrap();
    assert_eq!(b.age(Timestamp(10_000)), 1);
    assert_eq!(
        drain(&mut b).0,
        [Event { at: Timestamp(10_000), kind: EventKind::MacAged { network: NET, mac: mac(1), port: P1 } }]
    );
}

#[test]
fn drop_bursts_are_reported_per_port_and_reason_when_they_pass_the_threshold() {
    let mut b = bridge(64);
    b.end_interval(Timestamp(1000));
    // Below the threshold: nothing.
    for _ in 0..DROP_BURST - 1 {
        send(&mut b, 1100, P1, &frame(MacAddr::BROADCAST, MacAddr::BROADCAST));
    }
    b.end_interval(Timestamp(2000));
    assert!(kinds(&mut b).is_empty());
    // A burst of invalid sources on P1 and truncated frames on P2.
    for _ in 0..DROP_BURST {
        send(&mut b, 2100, P1, &frame(MacAddr::BROADCAST, MacAddr::BROADCAST));
        send(&mut b, 2100, P2, &[0u8; 10]);
    }
    b.set_port_up(P3, false).unwrap();
    for _ in 0..DROP_BURST * 3 {
        send(&mut b, 2200, P3, &frame(MacAddr::BROADCAST, mac(3)));
    }
    b.end_interval(Timestamp(2500));
    let burst = |port, reason, drops| EventKind::DropBurst {
        network: Some(NET),
        port: Some(port),
        reason,
        drops,
        interval_ms: 500,
    };
    assert_eq!(
        kinds(&mut b),
        [
            burst(P1, DropReason::InvalidSourceMac, DROP_BURST),
            burst(P2, DropReason::Truncated, DROP_BURST),
            burst(P3, DropReason::PortDown, DROP_BURST * 3),
        ]
    );
    b.end_interval(Timestamp(3500));
    assert!(kinds(&mut b).is_empty(), "a burst is reported for its own interval only");
}

#[test]
fn the_underlay_endpoint_has_drop_bursts_too() {
    let mut current = DropCounters::default();
    let mut reported = DropCounters::default();
    for _ in 0..DROP_BURST + 5 {
        current.count(DropReason::AuthFailed);
    }
    let mut out = EventBuffer::new(8);
    drop_bursts(None, None, &current, &mut reported, 1000, Timestamp(7), &mut out);
    let burst = EventKind::DropBurst {
        network: None,
        port: None,
        reason: DropReason::AuthFailed,
        drops: DROP_BURST + 5,
        interval_ms: 1000,
    };
    assert_eq!(out.events(), [Event { at: Timestamp(7), kind: burst }]);
    assert_eq!(reported, current);
}

#[test]
fn a_full_buffer_counts_what_it_cannot_hold() {
    let mut buffer = EventBuffer::new(2);
    let kind = EventKind::KeyRotated { network: NET, epoch: 1, automatic: false };
    for i in 0..5 {
        buffer.push(Timestamp(i), kind);
    }
    assert_eq!((buffer.events().len(), buffer.overflow()), (2, 3));
    let mut spare = Vec::with_capacity(2);
    assert_eq!(buffer.drain_into(&mut spare), 3);
    assert_eq!(spare.len(), 2);
    assert!(buffer.is_empty());
    assert_eq!(buffer.drain_into(&mut spare), 0);
    assert!(spare.is_empty());
}

#[test]
fn when_every_slot_is_flapping_moves_are_reported_on_their_own() {
    let mut t = FlapTracker::new(2);
    let mut out = EventBuffer::new(16);
    for m in 0..2 {
        assert!(t.on_move(NET, mac(m), P1, P2, Timestamp(1)));
        assert!(!t.on_move(NET, mac(m), P2, P1, Timestamp(2)));
        assert!(t.is_flapping(NET, mac(m)));
    }
    assert!(t.on_move(NET, mac(7), P1, P2, Timestamp(3)), "no slot: reported on its own");
    assert!(t.on_move(NET, mac(7), P2, P1, Timestamp(4)), "still untracked");
    assert_eq!(t.untracked(), 2);
    t.end_interval(Timestamp(1000), &mut out);
    assert_eq!(out.events().len(), 2);
    // A non-flapping mover gives way to a new one when the table is full.
    let mut t = FlapTracker::new(1);
    assert!(t.on_move(NET, mac(1), P1, P2, Timestamp(1)));
    assert!(t.on_move(NET, mac(2), P1, P2, Timestamp(2)));
    assert!(!t.on_move(NET, mac(2), P2, P1, Timestamp(3)));
    assert_eq!(t.untracked(), 0);
}
