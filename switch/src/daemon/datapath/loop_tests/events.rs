//! Events through the real loop: handed over in the wake-up that recorded
//! them; flapping, drop bursts and aging at the tick; a TAP whose sandbox
//! side goes down and up; tunnel ports of configured and learned peers, a
//! learned peer falling silent; manual and automatic key rotation.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::handle::{Command, NetworkSpec};
use super::super::testing::frames::{BROADCAST, frame, mac, vtep};
use super::super::testing::memory::Fault;
use super::super::testing::{Harness, Setup, overlay_network, plain_network};
use crate::counters::DropReason;
use crate::events::{DROP_BURST, EventKind};

fn kinds(h: &Harness) -> Vec<EventKind> {
    let (events, lost) = h.events();
    assert_eq!(lost, 0, "no event lost");
    events.into_iter().map(|e| e.kind).collect()
}

#[test]
fn events_are_handed_over_in_the_wake_up_that_recorded_them() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject(a, &frame(BROADCAST, mac(1), 1));
    h.step();
    assert_eq!(kinds(&h), [EventKind::MacLearned { network: net, mac: mac(1), port: a }]);
    h.inject(b, &frame(BROADCAST, mac(1), 2));
    h.step();
    assert_eq!(kinds(&h), [EventKind::MacMoved { network: net, mac: mac(1), from: a, to: b }]);
    // Back and forth within the second: nothing more until the tick.
    for tag in 3..8 {
        h.inject(if tag % 2 == 1 { a } else { b }, &frame(BROADCAST, mac(1), tag));
        h.run_until_idle();
    }
    assert!(kinds(&h).is_empty());
    h.advance(Duration::from_secs(1));
    h.step();
    let [EventKind::MacFlapping { ports, moves: 6, suppressed: 5, .. }] = kinds(&h)[..] else {
        panic!("one flapping event expected")
    };
    assert_eq!(ports, [b, a], "the last move: b -> a");
    h.step();
    assert!(kinds(&h).is_empty(), "a wake-up that records nothing hands nothing over");
}

#[test]
fn a_sandbox_whose_link_is_down_is_reported_once_and_up_again_when_a_frame_crosses() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let (a, b) = (h.endpoint(net), h.endpoint(net));
    h.inject(a, &frame(BROADCAST, mac(1), 0));
    h.run_until_idle();
    h.sent(b);
    h.events();
    // Its side is down: three writes fail with EIO; one event.
    h.fail_writes(b, Fault::Os(libc::EIO), 3);
    for tag in 1..=3 {
        h.inject(a, &frame(BROADCAST, mac(1), tag));
    }
    h.run_until_idle();
    assert_eq!(kinds(&h), [EventKind::PortLink { network: net, port: b, up: false }]);
    assert_eq!(h.drops(b, DropReason::TxError), 3);
    // A full queue is no link change.
    h.fail_writes(b, Fault::WouldBlock, 1);
    h.inject(a, &frame(BROADCAST, mac(1), 4));
    h.run_until_idle();
    assert!(kinds(&h).is_empty());
    // The next frame crosses: up again, once.
    h.inject(a, &frame(BROADCAST, mac(1), 5));
    h.inject(a, &frame(BROADCAST, mac(1), 6));
    h.run_until_idle();
    assert_eq!(kinds(&h), [EventKind::PortLink { network: net, port: b, up: true }]);
    assert_eq!(h.sent_frames(b), vec![frame(BROADCAST, mac(1), 5), frame(BROADCAST, mac(1), 6)]);
    // A frame from the sandbox says so too.
    h.fail_writes(b, Fault::Os(libc::EIO), 1);
    h.inject(a, &frame(BROADCAST, mac(1), 7));
    h.run_until_idle();
    h.inject(b, &frame(BROADCAST, mac(2), 8));
    h.run_until_idle();
    let link = |up| EventKind::PortLink { network: net, port: b, up };
    assert_eq!(kinds(&h), [link(false), link(true), EventKind::MacLearned { network: net, mac: mac(2), port: b }]);
}

#[test]
fn drop_bursts_and_aging_come_with_the_tick() {
    let mut h = Harness::new();
    let net = h.network(plain_network(0));
    let a = h.endpoint(net);
    h.set_aging(Duration::from_secs(10));
    h.inject(a, &frame(BROADCAST, mac(1), 0));
    for _ in 0..DROP_BURST + 20 {
        h.inject_raw(a, &[0u8; 6]);
    }
    h.run_until_idle();
    assert_eq!(kinds(&h), [EventKind::MacLearned { network: net, mac: mac(1), port: a }]);
    h.advance(Duration::from_secs(1));
    h.step();
    let burst = EventKind::DropBurst {
        network: Some(net),
        port: Some(a),
        reason: DropReason::Truncated,
        drops: DROP_BURST + 20,
        interval_ms: 1000,
    };
    assert_eq!(kinds(&h), [burst]);
    h.advance(Duration::from_secs(10));
    h.step();
    assert_eq!(kinds(&h), [EventKind::MacAged { network: net, mac: mac(1), port: a }]);
}

#[test]
fn peers_come_and_go_as_tunnel_events_and_keys_rotate() {
    const VNI: u32 = 4400;
    let mut learning = Setup::host(2);
    if let Some(vtep) = &mut learning.vtep {
        vtep.learn_peers = true;
    }
    let (mut one, mut two) = (Harness::with(Setup::host(1)), Harness::with(learning));
    let period = std::num::NonZeroU64::new(3600);
    let spec = NetworkSpec { key_epoch: Some(0), key_rotation: period, mtu: 1418, ..overlay_network(0, VNI) };
    let net = one.network(spec);
    two.network(spec);

    // A configured peer's tunnel port comes up (handed over at the end of
    // the wake-up that handled the command).
    let to_two = one.peer(net, vtep(2));
    one.step();
    assert_eq!(kinds(&one), [EventKind::TunnelUp { network: net, port: to_two, remote: vtep(2), learned: false }]);

    // Two learns one from its traffic.
    let a = one.endpoint(net);
    one.inject(a, &frame(BROADCAST, mac(1), 1));
    one.run_until_idle();
    assert_eq!(kinds(&one), [EventKind::MacLearned { network: net, mac: mac(1), port: a }]);
    assert!(one.carry(&mut two).is_empty());
    two.run_until_idle();
    let learned = kinds(&two);
    let from_one = SocketAddr::new(vtep(1).ip(), vtep(2).port());
    let [EventKind::TunnelUp { network, port, remote, learned: true }, EventKind::MacLearned { port: behind, .. }] =
        learned[..]
    else {
        panic!("a learned peer, then the MAC behind it: {learned:?}")
    };
    assert_eq!((network, remote, behind), (net, from_one, port));

    // Silent for the peer aging time (300 s): it goes, with its MAC.
    two.advance(Duration::from_secs(301));
    two.step();
    let silent = kinds(&two);
    assert!(
        silent.contains(&EventKind::TunnelDown { network: net, port, remote: from_one, silent: true }),
        "{silent:?}"
    );

    // The operator rotates one's key, then the clock does.
    let epoch_now = super::super::effective_epoch(0, period, super::super::testing::UNIX_ORIGIN);
    one.call(|reply| Command::SetKeyEpoch { network: net, epoch: 5, reply }).expect("an encrypted network");
    one.step();
    assert_eq!(kinds(&one), [EventKind::KeyRotated { network: net, epoch: epoch_now + 5, automatic: false }]);
    // The same epoch again (how the handle repairs a replica that missed a
    // switch) is not another rotation.
    one.call(|reply| Command::SetKeyEpoch { network: net, epoch: 5, reply }).expect("the same epoch");
    one.step();
    assert_eq!(kinds(&one), [], "no second event for the epoch in use");
    one.advance(Duration::from_secs(3600));
    one.step();
    let rotated = kinds(&one);
    assert!(
        rotated.contains(&EventKind::KeyRotated { network: net, epoch: epoch_now + 6, automatic: true }),
        "{rotated:?}"
    );

    // Removing the peer takes its tunnel port down.
    assert!(one.call(|reply| Command::RemovePeer { network: net, remote: vtep(2), reply }));
    one.step();
    assert_eq!(kinds(&one), [EventKind::TunnelDown { network: net, port: to_two, remote: vtep(2), silent: false }]);
}
