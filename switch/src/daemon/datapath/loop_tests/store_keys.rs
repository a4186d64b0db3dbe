//! Encrypted overlays whose keys come from the cluster store
//! (`NetworkSpec::store_keys`): no cluster secret, keys installed by epoch
//! (`install_key`), the send epoch switched only when told (`set_key_epoch`),
//! one host first, then the other, with no frame lost.

use crypto::NetworkKey;
use vxlan::Vni;

use super::super::handle::{Command, DatapathError, KeyState, NetworkSpec};
use super::super::testing::frames::{ip, mac, udp, vtep};
use super::super::testing::memory::Datagram;
use super::super::testing::{Harness, Setup, overlay_network};
use crate::counters::DropReason;
use crate::port::{NetworkId, PortId};

const VNI: u32 = 4600;

/// Test host `n` without a cluster secret.
fn host(n: u8) -> Harness {
    Harness::with(Setup { secret: None, ..Setup::host(n) })
}

/// An encrypted overlay keyed from the store, at send epoch 0.
fn spec() -> NetworkSpec {
    NetworkSpec { key_epoch: Some(0), store_keys: true, mtu: 1418, ..overlay_network(0, VNI) }
}

/// The key every member of the network got for `epoch` (as if opened from
/// the store's sealed record).
fn key(epoch: u32) -> NetworkKey {
    NetworkKey::from_bytes(Vni::new(VNI).unwrap(), epoch, [0x40 + epoch as u8; 32])
}

fn install(h: &mut Harness, net: NetworkId, epoch: u32, key: NetworkKey) -> Result<(), DatapathError> {
    h.call(|reply| Command::InstallKey { network: net, epoch, key, reply })
}

fn key_state(h: &mut Harness, net: NetworkId) -> KeyState {
    h.call(|reply| Command::KeyState { network: net, reply }).expect("an encrypted network")
}

fn switch_to(h: &mut Harness, net: NetworkId, epoch: u32) -> Result<(), DatapathError> {
    h.call(|reply| Command::SetKeyEpoch { network: net, epoch, reply })
}

/// A frame from host 1's endpoint to host 2's (`to_two`) or back.
fn frame(to_two: bool, n: u32) -> Vec<u8> {
    let payload = n.to_be_bytes();
    if to_two {
        udp((mac(2), ip(2), 5000), (mac(3), ip(3), 6000), &payload)
    } else {
        udp((mac(3), ip(3), 6000), (mac(2), ip(2), 5000), &payload)
    }
}

/// Sends `frame` from `port` and returns the datagram(s) the host sent,
/// held back (in flight) for the caller to deliver.
fn send(h: &mut Harness, port: PortId, frame: &[u8]) -> Vec<Datagram> {
    h.inject(port, frame);
    h.run_until_idle();
    h.sent_datagrams()
}

/// The key epoch in an encrypted datagram's header.
fn epoch_of(d: &Datagram) -> u32 {
    u32::from_be_bytes(d.bytes[4..8].try_into().unwrap())
}

/// Delivers datagrams host `from` sent into `to`'s underlay.
fn deliver(to: &mut Harness, from: u8, datagrams: &[Datagram]) {
    for d in datagrams {
        to.inject_datagram(std::net::SocketAddr::new(vtep(from).ip(), 49_152), &d.bytes);
    }
    to.run_until_idle();
}

#[test]
fn installed_keys_carry_traffic_across_an_epoch_switch_one_side_first_with_no_loss() {
    let (mut one, mut two) = (host(1), host(2));
    let net = one.network(spec());
    two.network(spec());
    let to_two = one.peer(net, vtep(2));
    two.peer(net, vtep(1));
    let (a, b) = (one.endpoint(net), two.endpoint(net));

    // No key yet: nothing leaves, and the drop says why.
    assert!(send(&mut one, a, &frame(true, 0)).is_empty());
    assert_eq!(one.drops(to_two, DropReason::NoSendKey), 1);
    // The send epoch cannot move to an epoch without a key.
    assert!(matches!(switch_to(&mut one, net, 1), Err(DatapathError::NoKey { epoch: 1, .. })));

    // Epoch 1: both install, then both switch.
    for h in [&mut one, &mut two] {
        install(h, net, 1, key(1)).unwrap();
        assert_eq!(key_state(h, net), KeyState { store_keys: true, send_epoch: None, installed: vec![1] });
        switch_to(h, net, 1).unwrap();
        assert_eq!(key_state(h, net).send_epoch, Some(1));
    }
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    let mut expect =
        |to_two_: bool, n: u32| if to_two_ { to_b.push(frame(true, n)) } else { to_a.push(frame(false, n)) };
    let d = send(&mut one, a, &frame(true, 1));
    assert_eq!(d.iter().map(epoch_of).collect::<Vec<_>>(), [1]);
    deliver(&mut two, 1, &d);
    expect(true, 1);
    let d = send(&mut two, b, &frame(false, 2));
    deliver(&mut one, 2, &d);
    expect(false, 2);

    // Epoch 2's key reaches both (received at once, not yet sent with).
    install(&mut one, net, 2, key(2)).unwrap();
    install(&mut two, net, 2, key(2)).unwrap();
    install(&mut two, net, 2, key(2)).unwrap(); // again: changes nothing
    let in_flight_from_two = send(&mut two, b, &frame(false, 3));
    assert_eq!(epoch_of(&in_flight_from_two[0]), 1);
    expect(false, 3);

    // One switches first: it sends epoch 2, which two (still at 1) accepts
    // as its next; one still accepts two's epoch 1, also from before.
    switch_to(&mut one, net, 2).unwrap();
    assert_eq!(key_state(&mut one, net), KeyState { store_keys: true, send_epoch: Some(2), installed: vec![1, 2] });
    let in_flight_from_one = send(&mut one, a, &frame(true, 4));
    assert_eq!(epoch_of(&in_flight_from_one[0]), 2);
    expect(true, 4);
    deliver(&mut one, 2, &in_flight_from_two);
    let d = send(&mut two, b, &frame(false, 5));
    assert_eq!(epoch_of(&d[0]), 1);
    deliver(&mut one, 2, &d);
    expect(false, 5);
    let d = send(&mut one, a, &frame(true, 6));
    deliver(&mut two, 1, &d);
    expect(true, 6);

    // Then two: epoch 2 both ways; what one sent before arrives late.
    switch_to(&mut two, net, 2).unwrap();
    deliver(&mut two, 1, &in_flight_from_one);
    let d = send(&mut two, b, &frame(false, 7));
    assert_eq!(epoch_of(&d[0]), 2);
    deliver(&mut one, 2, &d);
    expect(false, 7);
    let d = send(&mut one, a, &frame(true, 8));
    deliver(&mut two, 1, &d);
    expect(true, 8);

    // Every frame arrived, in the order delivered; nothing dropped.
    let mut got_b = two.sent_frames(b);
    let mut got_a = one.sent_frames(a);
    let order = |frames: &mut Vec<Vec<u8>>| frames.sort_by_key(|f| f[f.len() - 4..].to_vec());
    order(&mut got_b);
    order(&mut got_a);
    order(&mut to_b);
    order(&mut to_a);
    assert_eq!(got_b, to_b, "every frame from one reached two");
    assert_eq!(got_a, to_a, "every frame from two reached one");
    assert_eq!(one.vtep_counters().drops.total(), 0);
    assert_eq!(two.vtep_counters().drops.total(), 0);
}

#[test]
fn a_host_without_an_epochs_key_drops_it_and_derived_networks_take_no_keys() {
    let (mut one, mut two) = (host(1), host(2));
    let net = one.network(spec());
    two.network(spec());
    one.peer(net, vtep(2));
    two.peer(net, vtep(1));
    let (a, b) = (one.endpoint(net), two.endpoint(net));
    install(&mut one, net, 1, key(1)).unwrap();
    switch_to(&mut one, net, 1).unwrap();

    // Two holds no key for epoch 1 (a node that left before it was
    // published): it cannot read it.
    let d = send(&mut one, a, &frame(true, 1));
    deliver(&mut two, 1, &d);
    assert!(two.sent_frames(b).is_empty());
    assert_eq!(two.vtep_counters().drops.get(DropReason::UnknownEpoch), 1);
    // Another key under the same epoch number fails authentication.
    install(&mut two, net, 1, NetworkKey::from_bytes(Vni::new(VNI).unwrap(), 1, [9; 32])).unwrap();
    deliver(&mut two, 1, &d);
    assert_eq!(two.vtep_counters().drops.get(DropReason::AuthFailed), 1);

    // Refusals change nothing.
    assert!(matches!(install(&mut one, net, 2, key(3)), Err(DatapathError::KeyMismatch { .. })));
    let other_vni = NetworkKey::from_bytes(Vni::new(VNI + 1).unwrap(), 2, [1; 32]);
    assert!(matches!(install(&mut one, net, 2, other_vni), Err(DatapathError::KeyMismatch { .. })));
    assert!(matches!(install(&mut one, NetworkId(7), 2, key(2)), Err(DatapathError::NotEncrypted(_))));
    let period = std::num::NonZeroU64::new(60);
    let rotating = NetworkSpec { key_rotation: period, ..spec() };
    let mut three = host(3);
    assert!(matches!(three.try_network(rotating), Err(DatapathError::StoreKeysRotation)));
    // A secret-derived network takes no installed keys; one keyed from the
    // store needs no secret (the hosts here have none).
    let mut derived = Harness::with(Setup::host(4));
    let dnet = derived.network(NetworkSpec { key_epoch: Some(1), mtu: 1418, ..overlay_network(0, VNI) });
    assert!(matches!(install(&mut derived, dnet, 1, key(1)), Err(DatapathError::KeysDerived(_))));
    let derived_state = derived.call(|reply| Command::KeyState { network: dnet, reply }).unwrap();
    assert_eq!(derived_state, KeyState { store_keys: false, send_epoch: Some(1), installed: vec![] });
    assert!(matches!(three.try_network(NetworkSpec { store_keys: false, ..spec() }), Err(DatapathError::NoSecret)));
    let d = send(&mut one, a, &frame(true, 2));
    assert_eq!(epoch_of(&d[0]), 1, "still sending with epoch 1");
}
