//! The hub without a daemon: naming and timing of datapath batches, the
//! bounded history, fan-out to a slow and a fast subscriber, and the
//! datapath's end of the channel when the hub does not keep up.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use ctl::proto::{EventKind as Wire, EventsSummary, LostScope, PortChange};
use serde_json::Value;

use super::*;
use crate::daemon::control::{StreamNext, StreamSource};
use crate::daemon::datapath::{endpoint_port, gateway_port};
use crate::events::EventKind;
use crate::port::{NetworkId, PortId};
use crate::wire::MacAddr;

const NET: NetworkId = NetworkId(0);
const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// 2023-11-14T22:13:20Z.
const WALL_SECS: u64 = 1_700_000_000;

fn hub() -> EventHub {
    let hub = EventHub::new();
    hub.with_names(|n| {
        n.set_network(0, "app");
        n.set_endpoint(0, "vsA", "web");
        n.set_endpoint(1, "vsB", "db");
    });
    hub
}

/// A batch sent at monotonic 10 s, wall [`WALL_SECS`].
fn batch(events: &[(u64, EventKind)], lost: u64) -> EventBatch {
    EventBatch {
        events: events.iter().map(|&(at, kind)| Event { at: Timestamp(at), kind }).collect(),
        lost,
        mono: Timestamp(10_000),
        wall: UNIX_EPOCH + Duration::from_secs(WALL_SECS),
    }
}

fn kinds(hub: &EventHub) -> Vec<Wire> {
    hub.history().into_iter().map(|e| e.kind).collect()
}

/// Reads everything queued for `stream` now (items as JSON).
fn read_all(stream: &mut EventStream) -> Vec<Value> {
    let mut items = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match stream.next(Duration::ZERO, &mut buf) {
            StreamNext::Item => items.push(serde_json::from_slice(&buf).unwrap()),
            _ => return items,
        }
    }
}

fn learned(i: u32) -> EventKind {
    let b = i.to_be_bytes();
    EventKind::MacLearned { network: NET, mac: MacAddr([2, 0, b[0], b[1], b[2], b[3]]), port: endpoint_port(0) }
}

#[test]
fn datapath_events_are_named_timed_and_numbered() {
    let hub = hub();
    let moved = EventKind::MacMoved { network: NET, mac: MAC, from: endpoint_port(0), to: endpoint_port(1) };
    let burst = EventKind::DropBurst {
        network: Some(NET),
        port: Some(gateway_port(0)),
        reason: crate::counters::DropReason::NoRoute,
        drops: 500,
        interval_ms: 1000,
    };
    let vtep_burst = EventKind::DropBurst {
        network: None,
        port: None,
        reason: crate::counters::DropReason::AuthFailed,
        drops: 200,
        interval_ms: 1000,
    };
    let mut t = hub.translator();
    t.batch(&batch(&[(9_000, learned(1)), (9_750, moved), (10_000, burst), (10_000, vtep_burst)], 0));
    let history = hub.history();
    assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(history[0].time, "2023-11-14T22:13:19.000Z", "one second before the batch");
    assert_eq!(history[1].time, "2023-11-14T22:13:19.750Z");
    assert_eq!(history[2].time, "2023-11-14T22:13:20.000Z");
    assert_eq!(
        history[1].kind,
        Wire::MacMoved { network: "app".into(), mac: MAC, from: "vsA".into(), to: "vsB".into() }
    );
    let Wire::DropBurst { network, port, reason, drops: 500, .. } = &history[2].kind else { panic!("{history:?}") };
    assert_eq!((network.as_deref(), port.as_str(), reason.as_str()), (Some("app"), "gw:app", "no_route"));
    let Wire::DropBurst { network: None, port, .. } = &history[3].kind else { panic!("{history:?}") };
    assert_eq!(port, "vtep");
    // Unknown ids still name something.
    t.batch(&batch(&[(10_000, EventKind::MacAged { network: NetworkId(9), mac: MAC, port: endpoint_port(7) })], 0));
    assert_eq!(kinds(&hub)[4], Wire::MacAged { network: "net9".into(), mac: MAC, port: "port21".into() });
}

#[test]
fn tunnel_ports_and_link_changes_are_named() {
    let hub = hub();
    let remote: SocketAddr = "192.0.2.7:4789".parse().unwrap();
    let tunnel = PortId(2);
    let static_remote: SocketAddr = "192.0.2.8:4789".parse().unwrap();
    let mut t = hub.translator();
    t.batch(&batch(
        &[
            (1, EventKind::TunnelUp { network: NET, port: tunnel, remote, learned: true }),
            (2, EventKind::MacLearned { network: NET, mac: MAC, port: tunnel }),
            (3, EventKind::TunnelUp { network: NET, port: PortId(5), remote: static_remote, learned: false }),
            (4, EventKind::TunnelDown { network: NET, port: tunnel, remote, silent: true }),
            (5, EventKind::TunnelDown { network: NET, port: PortId(5), remote: static_remote, silent: false }),
            (6, EventKind::KeyRotated { network: NET, epoch: 3, automatic: true }),
            (7, EventKind::PortLink { network: NET, port: endpoint_port(1), up: false }),
            (8, EventKind::PortLink { network: NET, port: endpoint_port(1), up: true }),
        ],
        0,
    ));
    let port = "vx:192.0.2.7:4789".to_owned();
    let other = "vx:192.0.2.8:4789".to_owned();
    let app = || "app".to_owned();
    assert_eq!(
        kinds(&hub),
        [
            Wire::PeerLearned { network: app(), peer: remote, port: port.clone() },
            Wire::MacLearned { network: app(), mac: MAC, port: port.clone() },
            Wire::PortUp { network: app(), port: other.clone(), sandbox: None, reason: PortChange::PeerAdded },
            Wire::PeerSilent { network: app(), peer: remote, port },
            Wire::PortDown { network: app(), port: other, sandbox: None, reason: PortChange::PeerRemoved },
            Wire::KeyRotated { network: app(), epoch: 3, automatic: true },
            Wire::PortDown {
                network: app(),
                port: "vsB".into(),
                sandbox: Some("db".into()),
                reason: PortChange::LinkDown,
            },
            Wire::PortUp { network: app(), port: "vsB".into(), sandbox: Some("db".into()), reason: PortChange::LinkUp },
        ]
    );
}

#[test]
fn the_history_keeps_the_last_events_only() {
    let hub = hub();
    let mut t = hub.translator();
    for chunk in 0..3u32 {
        let events: Vec<(u64, EventKind)> =
            (0..HISTORY as u32 / 2 + 1).map(|i| (1, learned(chunk * 10_000 + i))).collect();
        t.batch(&batch(&events, 0));
    }
    let history = hub.history();
    assert_eq!(history.len(), HISTORY);
    let total = 3 * (HISTORY as u64 / 2 + 1);
    assert_eq!(history.last().unwrap().seq, total);
    assert_eq!(history[0].seq, total - HISTORY as u64 + 1);
    assert_eq!(hub.counters().by_kind.get("mac_learned"), Some(&total));
}

#[test]
fn a_slow_subscriber_loses_events_counted_and_a_fast_one_loses_none() {
    let hub = hub();
    let (follow_slow, mut slow) = hub.subscribe();
    let (follow_fast, mut fast) = hub.subscribe();
    assert_eq!((follow_slow.next_seq, follow_fast.next_seq), (1, 1));
    let mut t = hub.translator();
    let total = SUBSCRIBER_QUEUE as u32 + 300;
    let mut fast_items = Vec::new();
    for i in 0..total {
        t.batch(&batch(&[(1, learned(i))], 0));
        fast_items.extend(read_all(&mut fast));
    }
    assert_eq!(fast_items.len(), total as usize);
    assert!(fast_items.iter().all(|i| i["kind"] == "mac_learned"));
    assert_eq!(fast.summary_now(), EventsSummary { delivered: u64::from(total), lost: 0 });
    assert_eq!(hub.counters().lost_streams, 300);

    // The slow one got the first SUBSCRIBER_QUEUE events and lost the rest.
    let items = read_all(&mut slow);
    assert_eq!(items.len(), SUBSCRIBER_QUEUE);
    assert_eq!(items.last().unwrap()["seq"], SUBSCRIBER_QUEUE as u64);
    assert_eq!(slow.summary_now(), EventsSummary { delivered: SUBSCRIBER_QUEUE as u64, lost: 300 });
    // Once it has caught up, the next event comes after an events_lost item.
    t.batch(&batch(&[(1, learned(99_999))], 0));
    let items = read_all(&mut slow);
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0]["kind"], "events_lost");
    assert_eq!(items[0]["lost"], 300);
    assert_eq!(items[0]["scope"], "stream");
    assert_eq!(items[0]["seq"], u64::from(total), "the last event it lost");
    assert_eq!(items[1]["seq"], u64::from(total) + 1);
    assert_eq!(read_all(&mut fast).len(), 1);

    // A subscriber that goes away is forgotten; its losses stay counted.
    drop(slow);
    assert_eq!(hub.counters().subscribers, 1, "gone at once");
    t.batch(&batch(&[(1, learned(100_000))], 0));
    let counters = hub.counters();
    assert_eq!((counters.subscribers, counters.lost_streams), (1, 300));
}

#[test]
fn control_events_are_published_directly_and_daemon_losses_reported() {
    let hub = hub();
    let (_, mut stream) = hub.subscribe();
    hub.port_up("app", "vsA", Some("web"), PortChange::Connected);
    hub.translator().batch(&batch(&[], 42));
    hub.emit(Wire::SandboxGone { sandbox: "c1".into(), netns: "/proc/1/ns/net".into() });
    let items = read_all(&mut stream);
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["kind"], "port_up");
    assert_eq!(items[0]["sandbox"], "web");
    assert_eq!(items[0]["reason"], "connected");
    assert_eq!(items[1]["kind"], "events_lost");
    assert_eq!(items[1]["scope"], "daemon");
    assert_eq!(items[2]["kind"], "sandbox_gone");
    assert_eq!(hub.counters().lost_daemon, 42);
    assert_eq!(kinds(&hub)[1], Wire::EventsLost { lost: 42, scope: LostScope::Daemon });
}

#[test]
fn the_datapath_never_waits_for_the_hub_and_reports_what_it_lost() {
    let (mut tx, rx) = datapath_channel();
    let mut buffer = EventBuffer::new(4);
    // Nothing recorded: nothing sent.
    tx.flush(&mut buffer, Timestamp(1));
    assert!(rx.batches.is_empty());
    // Fill the channel, then one more batch: it is counted, not sent.
    for i in 0..=BATCHES as u64 {
        buffer.push(Timestamp(i), learned(i as u32));
        buffer.push(Timestamp(i), learned(i as u32 + 1));
        tx.flush(&mut buffer, Timestamp(i));
    }
    assert_eq!(rx.batches.len(), BATCHES);
    assert_eq!(tx.pending_lost(), 2);
    // The hub catches up (handing buffers back); the next batch reports the loss.
    let hub = hub();
    let mut t = hub.translator();
    for batch in rx.batches.try_iter() {
        t.batch(&batch);
        let _ = rx.spares.try_send(batch.events);
    }
    buffer.push(Timestamp(100), learned(7));
    tx.flush(&mut buffer, Timestamp(100));
    let last = rx.batches.try_recv().expect("a batch");
    assert_eq!((last.lost, last.events.len()), (2, 1));
    assert_eq!(tx.pending_lost(), 0);
    assert!(last.events.capacity() >= 2, "a spare buffer came back");
}
