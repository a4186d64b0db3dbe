//! Link impairment on the loop (`port impair`), on the virtual clock:
//! frames toward an impaired port wait for their departure and leave from
//! the loop's wake-up, header and all; the loop's timeout names the next
//! departure; loss and a full queue are counted under their reasons; a GSO
//! frame is paced by its wire size; clearing sends what was queued.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::handle::{Command, DatapathError};
use super::super::testing::frames::{BROADCAST, Tcp, frame, mac, pattern, tso_hdr, vtep, vxlan};
use super::super::testing::{Harness, Setup, gateway_network, overlay_network, plain_network};
use crate::counters::DropReason;
use crate::impair::ImpairSettings;
use crate::port::PortId;
use ctl::Impairment;

fn impair(h: &mut Harness, port: PortId, spec: Option<Impairment>) -> Result<(), DatapathError> {
    let settings = spec.map(|s| ImpairSettings::new(&s).expect("valid settings"));
    h.call(|reply| Command::SetImpair { id: port, settings, reply })
}

fn delay_ms(ms: u64) -> Impairment {
    Impairment { delay_us: ms * 1000, ..Impairment::default() }
}

/// Two endpoints that learned each other: a → b is known unicast.
fn pair() -> (Harness, PortId, PortId) {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject(a, &frame(mac(2), mac(1), 0));
    h.inject(b, &frame(mac(1), mac(2), 0));
    h.run_until_idle();
    h.sent(a);
    h.sent(b);
    (h, a, b)
}

#[test]
fn a_delayed_frame_leaves_from_the_wake_up_at_its_departure() {
    let (mut h, a, b) = pair();
    impair(&mut h, b, Some(delay_ms(10))).unwrap();
    assert_eq!(h.dp.impair_timeout(), None, "nothing queued, nothing to wake up for");
    h.inject(a, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    assert!(h.sent(b).is_empty(), "held for 10 ms");
    assert_eq!(h.dp.impair_timeout(), Some(Duration::from_millis(10)), "the loop wakes up for it");
    h.advance(Duration::from_millis(9));
    h.step();
    assert!(h.sent(b).is_empty(), "never early");
    assert_eq!(h.dp.impair_timeout(), Some(Duration::from_millis(1)));
    h.advance(Duration::from_millis(1));
    h.step();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 1)], "then sent as it came");
    assert_eq!(h.dp.impair_timeout(), None);
    // The other direction is not impaired.
    h.inject(b, &frame(mac(1), mac(2), 2));
    h.run_until_idle();
    assert_eq!(h.sent_frames(a), vec![frame(mac(1), mac(2), 2)]);
    let snapshot = h.snapshot();
    let stats = snapshot.impair.iter().find(|i| i.port == b).expect("b's impairment in the snapshot");
    assert_eq!((stats.settings, stats.counters.delayed, stats.counters.queued), (Some(delay_ms(10)), 1, 0));
}

#[test]
fn loss_and_a_full_queue_are_counted_under_their_reasons() {
    let (mut h, a, b) = pair();
    impair(&mut h, b, Some(Impairment { loss_ppm: 1_000_000, ..Impairment::default() })).unwrap();
    for tag in 0..3 {
        h.inject(a, &frame(mac(2), mac(1), tag));
    }
    h.run_until_idle();
    assert!(h.sent(b).is_empty());
    let drops = |h: &mut Harness| {
        let s = h.snapshot();
        s.ports.iter().find(|(p, _, _)| *p == b).map(|(_, _, c)| c.drops).expect("b's counters")
    };
    assert_eq!(drops(&mut h).get(DropReason::ImpairLoss), 3);

    impair(&mut h, b, Some(Impairment { limit: Some(2), ..delay_ms(5) })).unwrap();
    for tag in 10..14 {
        h.inject(a, &frame(mac(2), mac(1), tag));
    }
    h.run_until_idle();
    h.advance(Duration::from_millis(5));
    h.step();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 10), frame(mac(2), mac(1), 11)]);
    let d = drops(&mut h);
    assert_eq!((d.get(DropReason::ImpairLoss), d.get(DropReason::ImpairQueueFull)), (3, 2), "earlier losses stay");
    let s = h.snapshot();
    let c = s.impair.iter().find(|i| i.port == b).expect("b").counters;
    assert_eq!((c.lost, c.queue_full, c.delayed), (3, 2, 2));
}

#[test]
fn a_gso_frame_keeps_its_header_and_is_paced_by_its_wire_size() {
    let (mut h, a, b) = pair();
    // 12.112 Mbit/s: one 1514-byte frame per millisecond.
    impair(&mut h, b, Some(Impairment { rate_bps: Some(12_112_000), ..Impairment::default() })).unwrap();
    let tcp = Tcp::between(1, 2);
    let tso = tso_hdr(1460);
    // 10 segments of 1460 bytes: 10 × 1514 bytes on the wire, 10 ms.
    let big = tcp.frame(&pattern(14_600, 3));
    h.inject_with_hdr(a, tso, &big);
    h.inject(a, &frame(mac(2), mac(1), 1));
    h.run_until_idle();
    h.advance(Duration::from_millis(9));
    h.step();
    assert!(h.sent(b).is_empty(), "the GSO frame takes 10 ms");
    h.advance(Duration::from_millis(1));
    h.step();
    let sent = h.sent(b);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].hdr, &sent[0].frame), (tso, &big), "sent whole, header and all");
    // The 60-byte frame after it: 0.04 ms later, at the next tick.
    h.advance(Duration::from_millis(1));
    h.step();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 1)]);
}

#[test]
fn clearing_sends_the_queue_at_once_and_only_taps_are_impaired() {
    let mut h = Harness::new();
    let net = h.network(gateway_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject(b, &frame(mac(1), mac(2), 0));
    h.run_until_idle();
    impair(&mut h, b, Some(delay_ms(100))).unwrap();
    for tag in 1..=3 {
        h.inject(a, &frame(mac(2), mac(1), tag));
    }
    h.run_until_idle();
    assert!(h.sent(b).is_empty());
    impair(&mut h, b, None).unwrap();
    assert_eq!(h.sent_frames(b).len(), 3, "sent when the impairment is cleared, without waiting");
    assert_eq!(h.dp.impair_timeout(), None);
    h.inject(a, &frame(mac(2), mac(1), 4));
    h.run_until_idle();
    assert_eq!(h.sent_frames(b), vec![frame(mac(2), mac(1), 4)], "unimpaired again");

    let gw = h.gateway(net);
    assert!(matches!(impair(&mut h, gw, Some(delay_ms(1))), Err(DatapathError::NotImpairable(p)) if p == gw));

    // A removed port takes its queue with it.
    impair(&mut h, b, Some(delay_ms(50))).unwrap();
    h.inject(a, &frame(mac(2), mac(1), 5));
    h.run_until_idle();
    h.remove_port(b);
    assert_eq!(h.dp.impair_timeout(), None);
    h.advance(Duration::from_millis(60));
    h.run_until_idle();
    assert!(h.snapshot().impair.is_empty());
}

fn impair_vtep(h: &mut Harness, remote: SocketAddr, spec: Option<Impairment>) -> usize {
    let settings = spec.map(|s| ImpairSettings::new(&s).expect("valid settings"));
    h.call(|reply| Command::SetTunnelImpair { remote, settings, reply })
}

/// A VTEP's impairment delays what leaves through every tunnel port toward
/// it, one added later too, encapsulated when it leaves; other VTEPs'
/// traffic goes at once, and clearing sends the queue.
#[test]
fn a_vtep_is_impaired_on_every_tunnel_port_toward_it() {
    let mut h = Harness::with(Setup::host(1));
    let one = h.network(overlay_network(0, 4242));
    let two = h.network(overlay_network(1, 4343));
    let slow = h.peer(one, vtep(2));
    let fast = h.peer(one, vtep(3));
    let (a, b) = (h.endpoint(one), h.endpoint(two));
    assert_eq!(impair_vtep(&mut h, vtep(2), Some(delay_ms(10))), 1, "one tunnel port toward it so far");
    let later = h.peer(two, vtep(2));

    h.inject(a, &frame(BROADCAST, mac(1), 1));
    h.inject(b, &frame(BROADCAST, mac(2), 2));
    h.run_until_idle();
    let sent = h.sent_datagrams();
    assert_eq!(sent.iter().map(|d| d.to).collect::<Vec<_>>(), vec![vtep(3)], "only the other VTEP's at once");
    assert_eq!(h.dp.impair_timeout(), Some(Duration::from_millis(10)));
    h.advance(Duration::from_millis(10));
    h.step();
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = h.sent_datagrams().into_iter().map(|d| (d.to, d.bytes)).collect();
    sent.sort();
    let expected = vec![
        (vtep(2), vxlan(4242, &frame(BROADCAST, mac(1), 1))),
        (vtep(2), vxlan(4343, &frame(BROADCAST, mac(2), 2))),
    ];
    assert_eq!(sent, expected, "both networks' frames, each in its own VNI, after the delay");
    let snapshot = h.snapshot();
    for port in [slow, later] {
        let stats = snapshot.impair.iter().find(|i| i.port == port).expect("the tunnel port's impairment");
        assert_eq!((stats.counters.delayed, stats.counters.queued), (1, 0), "{port:?}");
    }
    assert!(snapshot.impair.iter().all(|i| i.port != fast));

    // Cleared: what waits leaves at once, and nothing waits after.
    h.inject(a, &frame(BROADCAST, mac(1), 3));
    h.run_until_idle();
    assert_eq!(h.sent_datagrams().len(), 1, "the fast VTEP's");
    assert_eq!(impair_vtep(&mut h, vtep(2), None), 2);
    assert_eq!(h.sent_datagrams().iter().map(|d| d.to).collect::<Vec<_>>(), vec![vtep(2)]);
    h.inject(a, &frame(BROADCAST, mac(1), 4));
    h.run_until_idle();
    assert_eq!(h.sent_datagrams().len(), 2, "both VTEPs at once again");
    assert_eq!(h.dp.impair_timeout(), None);
}
