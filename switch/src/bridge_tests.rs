//! Unit tests for the forwarding rules of [`Bridge`].

use super::*;

const NET_A: NetworkId = NetworkId(0);
const NET_B: NetworkId = NetworkId(1);
const T0: Timestamp = Timestamp(0);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// Network A with ports 1, 2, 3; network B with ports 10, 11.
fn bridge() -> Bridge {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig::default()).unwrap();
    b.add_network(NET_B, NetworkConfig::default()).unwrap();
    for p in [1, 2, 3] {
        b.add_port(PortId(p), PortConfig::access(NET_A)).unwrap();
    }
    for p in [10, 11] {
        b.add_port(PortId(p), PortConfig::access(NET_B)).unwrap();
    }
    b
}

/// Forwards one frame and returns the egress ports.
fn send(b: &mut Bridge, now: Timestamp, port: u32, bytes: &[u8]) -> Vec<u32> {
    let mut plan = TxPlan::default();
    b.forward_batch(now, [RxFrame { port: PortId(port), bytes, gso: false }], &mut plan);
    plan.sends().iter().map(|t| t.port.0).collect()
}

fn drops(b: &Bridge, port: u32, reason: DropReason) -> u64 {
    b.port_counters(PortId(port)).unwrap().drops.get(reason)
}

#[test]
fn floods_unknown_then_forwards_known_unicast() {
    let mut b = bridge();
    assert_eq!(send(&mut b, T0, 1, &frame(mac(2), mac(1), 64)), vec![2, 3], "unknown unicast floods");
    assert_eq!(send(&mut b, T0, 2, &frame(mac(1), mac(2), 64)), vec![1], "reply goes to the learned port only");
    assert_eq!(send(&mut b, T0, 1, &frame(mac(2), mac(1), 64)), vec![2]);
    let c1 = b.port_counters(PortId(1)).unwrap();
    assert_eq!((c1.rx_packets, c1.rx_bytes, c1.tx_packets, c1.rx_flooded), (2, 128, 1, 1));
    assert_eq!(b.port_counters(PortId(3)).unwrap().tx_packets, 1);
    assert_eq!(b.learning_counters(NET_A).unwrap().learned, 2);
}

#[test]
fn broadcast_and_multicast_flood_within_the_network_only() {
    let mut b = bridge();
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![2, 3]);
    assert_eq!(send(&mut b, T0, 10, &frame(MacAddr([1, 0, 0x5e, 0, 0, 1]), mac(9), 60)), vec![11]);
    // mac(1) is known on network A, but not on B: B floods within B.
    assert_eq!(send(&mut b, T0, 11, &frame(mac(1), mac(8), 60)), vec![10]);
}

#[test]
fn filters_frames_for_the_ingress_segment() {
    let mut b = bridge();
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60));
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(5), 60));
    assert!(send(&mut b, T0, 1, &frame(mac(5), mac(1), 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::SameSegment), 1);
}

#[test]
fn drops_malformed_and_invalid_frames_with_reasons() {
    let mut b = bridge();
    assert!(send(&mut b, T0, 1, &[0u8; 13]).is_empty());
    assert_eq!(drops(&b, 1, DropReason::Truncated), 1);
    assert!(send(&mut b, T0, 1, &frame(mac(2), mac(1), 14 + 1501)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::Oversize), 1);
    assert_eq!(send(&mut b, T0, 1, &frame(mac(2), mac(1), 14 + 1500)), vec![2, 3], "exactly MTU passes");
    let mut plan = TxPlan::default();
    let big = frame(mac(2), mac(1), 65_000);
    b.forward_batch(T0, [RxFrame { port: PortId(1), bytes: &big, gso: true }], &mut plan);
    assert_eq!(plan.len(), 2, "GSO super-frames are not MTU-limited");
    assert!(send(&mut b, T0, 1, &frame(mac(2), MacAddr::BROADCAST, 60)).is_empty());
    assert!(send(&mut b, T0, 1, &frame(mac(2), MacAddr([1, 0, 0x5e, 0, 0, 1]), 60)).is_empty());
    assert!(send(&mut b, T0, 1, &frame(mac(2), MacAddr::ZERO, 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::InvalidSourceMac), 3);
    assert_eq!(b.fdb_len(NET_A).unwrap(), 1, "only mac(1) was learned");
    // A tagged frame whose tag is cut off is truncated too.
    let mut tagged = frame(mac(2), mac(1), 16);
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    assert!(send(&mut b, T0, 1, &tagged).is_empty());
    assert_eq!(drops(&b, 1, DropReason::Truncated), 2);
}

#[test]
fn never_forwards_reserved_group_addresses() {
    let mut b = bridge();
    for last in [0x00, 0x02, 0x03, 0x0e, 0x0f] {
        assert!(send(&mut b, T0, 1, &frame(MacAddr([1, 0x80, 0xc2, 0, 0, last]), mac(1), 60)).is_empty());
    }
    assert_eq!(drops(&b, 1, DropReason::ReservedGroup), 5);
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr([1, 0x80, 0xc2, 0, 0, 0x10]), mac(1), 60)), vec![2, 3]);
}

#[test]
fn station_moves_update_the_entry_and_are_counted() {
    let mut b = bridge();
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(7), 60));
    send(&mut b, T0, 2, &frame(MacAddr::BROADCAST, mac(7), 60));
    assert_eq!(b.lookup(NET_A, mac(7), T0), Some(PortId(2)));
    assert_eq!(b.learning_counters(NET_A).unwrap().station_moves, 1);
    assert_eq!(b.port_learned(PortId(1)).unwrap(), 0);
    assert_eq!(b.port_learned(PortId(2)).unwrap(), 1);
    assert_eq!(send(&mut b, T0, 3, &frame(mac(7), mac(3), 60)), vec![2]);
}

#[test]
fn aging_removes_old_entries_and_lookups_ignore_them() {
    let mut b = bridge();
    b.set_aging_time(Duration::from_secs(10)).unwrap();
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60));
    send(&mut b, Timestamp(5_000), 2, &frame(MacAddr::BROADCAST, mac(2), 60));
    assert_eq!(send(&mut b, Timestamp(9_999), 3, &frame(mac(1), mac(3), 60)), vec![1]);
    assert_eq!(send(&mut b, Timestamp(10_000), 3, &frame(mac(1), mac(3), 60)), vec![1, 2], "expired: flooded");
    assert_eq!(b.age(Timestamp(10_000)), 1);
    assert_eq!(b.lookup(NET_A, mac(2), Timestamp(10_000)), Some(PortId(2)));
    assert_eq!(b.port_learned(PortId(1)).unwrap(), 0);
    assert_eq!(b.learning_counters(NET_A).unwrap().aged_out, 1);
    assert!(b.set_aging_time(Duration::from_secs(9)).is_err());
    assert!(b.set_aging_time(Duration::from_secs(1_000_001)).is_err());
    assert_eq!(b.aging_time(), Duration::from_secs(10), "a rejected change changes nothing");
}

#[test]
fn static_entries_stay_and_win_over_learning() {
    let mut b = bridge();
    b.add_static(NET_A, mac(9), PortId(3), T0).unwrap();
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(9), 60));
    assert_eq!(b.lookup(NET_A, mac(9), T0), Some(PortId(3)));
    assert_eq!(b.learning_counters(NET_A).unwrap().static_conflicts, 1);
    b.age(Timestamp(10_000_000_000));
    b.flush_network(NET_A).unwrap();
    assert_eq!(send(&mut b, Timestamp(10_000_000_000), 2, &frame(mac(9), mac(2), 60)), vec![3]);
    assert_eq!(
        b.add_static(NET_B, mac(9), PortId(3), T0),
        Err(BridgeError::PortNotOnNetwork { port: PortId(3), network: NET_B })
    );
}

#[test]
fn table_and_port_limits_bound_learning_but_frames_still_flood() {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig { fdb_limit: 4 }).unwrap();
    b.add_port(PortId(0), PortConfig { learn_limit: 2, ..PortConfig::access(NET_A) }).unwrap();
    b.add_port(PortId(1), PortConfig::access(NET_A)).unwrap();
    for n in 1..=5 {
        assert_eq!(send(&mut b, T0, 0, &frame(mac(200), mac(n), 60)), vec![1]);
    }
    assert_eq!(b.port_learned(PortId(0)).unwrap(), 2);
    assert_eq!(b.learning_counters(NET_A).unwrap().port_limit, 3);
    for n in 10..=15 {
        send(&mut b, T0, 1, &frame(mac(200), mac(n), 60));
    }
    assert_eq!(b.fdb_len(NET_A).unwrap(), 4);
    assert_eq!(b.learning_counters(NET_A).unwrap().table_full, 4);
}

#[test]
fn a_flood_limit_drops_a_ports_floods_beyond_its_rate_but_not_its_known_unicast() {
    let mut b = bridge();
    let limited = PortConfig { flood_limit: crate::port::FloodLimit::new(4), ..PortConfig::access(NET_A) };
    b.add_port(PortId(4), limited).unwrap();
    // Port 2's station is known; port 4 has a burst of 4 floods (one second's worth).
    send(&mut b, T0, 2, &frame(MacAddr::BROADCAST, mac(2), 60));
    for n in 0..4 {
        assert_eq!(send(&mut b, T0, 4, &frame(mac(50 + n), mac(4), 60)), vec![1, 2, 3], "flood {n} within the burst");
    }
    assert!(send(&mut b, T0, 4, &frame(MacAddr::BROADCAST, mac(4), 60)).is_empty(), "broadcast beyond the burst");
    assert!(send(&mut b, T0, 4, &frame(MacAddr([1, 0, 0x5e, 0, 0, 1]), mac(4), 60)).is_empty(), "multicast too");
    assert_eq!(drops(&b, 4, DropReason::FloodLimited), 2);
    assert_eq!(send(&mut b, T0, 4, &frame(mac(2), mac(4), 60)), vec![2], "known unicast is never limited");
    // Other ports are not limited by port 4's share.
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![2, 3, 4]);
    // 4 frames a second earn one frame each 250 ms: nothing at 249 ms, one at 250.
    let at = |ms| Timestamp(ms);
    assert!(send(&mut b, at(249), 4, &frame(MacAddr::BROADCAST, mac(4), 60)).is_empty());
    assert_eq!(send(&mut b, at(250), 4, &frame(MacAddr::BROADCAST, mac(4), 60)), vec![1, 2, 3]);
    assert!(send(&mut b, at(250), 4, &frame(MacAddr::BROADCAST, mac(4), 60)).is_empty());
    // A long pause refills the burst, and no more than it.
    for _ in 0..4 {
        assert_eq!(send(&mut b, at(60_000), 4, &frame(MacAddr::BROADCAST, mac(4), 60)).len(), 3);
    }
    assert!(send(&mut b, at(60_000), 4, &frame(MacAddr::BROADCAST, mac(4), 60)).is_empty());
    let c = b.port_counters(PortId(4)).unwrap();
    assert_eq!((c.rx_flooded, c.drops.get(DropReason::FloodLimited)), (9, 5));
    assert_eq!(drops(&b, 1, DropReason::FloodLimited), 0);
}

/// Isolated ports (the endpoints of a network with inter-container
/// communication off) reach the non-isolated ones (gateway, uplink) and are
/// reached by them, but never each other: not by flooding, not by unicast,
/// whatever the table knows.
#[test]
fn isolated_ports_reach_the_others_but_not_each_other() {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig::default()).unwrap();
    for p in [1, 2, 3] {
        b.add_port(PortId(p), PortConfig { isolated: true, ..PortConfig::access(NET_A) }).unwrap();
    }
    b.add_port(PortId(4), PortConfig::gateway(NET_A)).unwrap();
    b.add_port(PortId(5), PortConfig::access(NET_A)).unwrap();
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![4, 5], "not to 2 or 3");
    assert_eq!(send(&mut b, T0, 2, &frame(mac(9), mac(2), 60)), vec![4, 5], "unknown unicast likewise");
    assert_eq!(send(&mut b, T0, 4, &frame(MacAddr::BROADCAST, mac(4), 60)), vec![1, 2, 3, 5]);
    assert_eq!(send(&mut b, T0, 5, &frame(MacAddr::BROADCAST, mac(5), 60)), vec![1, 2, 3, 4]);
    // Known unicast: between isolated ports dropped and counted, else forwarded.
    assert!(send(&mut b, T0, 1, &frame(mac(2), mac(1), 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::Isolated), 1);
    assert_eq!(send(&mut b, T0, 1, &frame(mac(4), mac(1), 60)), vec![4]);
    assert_eq!(send(&mut b, T0, 1, &frame(mac(5), mac(1), 60)), vec![5]);
    assert_eq!(send(&mut b, T0, 5, &frame(mac(2), mac(5), 60)), vec![2]);
    assert_eq!(send(&mut b, T0, 4, &frame(mac(1), mac(4), 60)), vec![1]);
    // Floods that reached someone are no drop of either kind.
    let c = b.port_counters(PortId(2)).unwrap();
    assert_eq!((c.drops.get(DropReason::Isolated), c.drops.get(DropReason::NoEgress)), (0, 0));
    // Non-isolated ports of the same kind still talk to each other.
    let mut open = bridge();
    send(&mut open, T0, 2, &frame(MacAddr::BROADCAST, mac(2), 60));
    assert_eq!(send(&mut open, T0, 1, &frame(mac(2), mac(1), 60)), vec![2]);
}

#[test]
fn a_slow_flood_limit_still_earns_its_frames_between_milliseconds() {
    // One frame a second, asked every 100 ms: exactly one per second passes.
    let mut b = bridge();
    let limited = PortConfig { flood_limit: crate::port::FloodLimit::new(1), ..PortConfig::access(NET_A) };
    b.add_port(PortId(4), limited).unwrap();
    let passed = (0..50u64)
        .filter(|n| !send(&mut b, Timestamp(n * 100), 4, &frame(MacAddr::BROADCAST, mac(4), 60)).is_empty())
        .count();
    assert_eq!(passed, 5, "the burst at 0 ms, then one at each whole second up to 4.9 s");
    assert!(crate::port::FloodLimit::new(0).is_none(), "a limit of nothing is refused");
}

#[test]
fn a_network_takes_a_table_made_elsewhere_with_its_limit() {
    let mut b = Bridge::new();
    b.add_network_with(NET_A, Fdb::new(3)).unwrap();
    let (refused, e) = b.add_network_with(NET_A, Fdb::new(5000)).expect_err("the id is taken");
    assert_eq!(e, BridgeError::NetworkExists(NET_A));
    assert_eq!(refused.limit(), 5000, "a refused table is handed back to be freed by the caller");
    b.add_port(PortId(0), PortConfig::access(NET_A)).unwrap();
    b.add_port(PortId(1), PortConfig::access(NET_A)).unwrap();
    for n in 1..=5 {
        assert_eq!(send(&mut b, T0, 0, &frame(mac(200), mac(n), 60)), vec![1]);
    }
    assert_eq!(b.fdb_len(NET_A).unwrap(), 3);
    assert_eq!(b.learning_counters(NET_A).unwrap().table_full, 2);
    b.remove_port(PortId(0)).unwrap();
    b.remove_port(PortId(1)).unwrap();
    let table = b.remove_network(NET_A).expect("an empty network is removed");
    assert_eq!(table.limit(), 3, "the removed network's own table comes back to the caller");
    assert_eq!(b.fdb_len(NET_A), Err(BridgeError::NoSuchNetwork(NET_A)));
}

#[test]
fn a_network_and_its_gateway_port_are_added_together_or_not_at_all() {
    let mut b = bridge();
    // Port 1 is taken (network A's): neither the network nor the port is added.
    let gateway = PortConfig::gateway(NetworkId(7));
    let (refused, e) =
        b.add_network_with_port(NetworkId(7), Fdb::new(9), Some((PortId(1), gateway))).expect_err("taken");
    assert_eq!(e, BridgeError::PortExists(PortId(1)));
    assert_eq!(refused.limit(), 9, "the table comes back");
    assert_eq!(b.fdb_len(NetworkId(7)), Err(BridgeError::NoSuchNetwork(NetworkId(7))));
    assert_eq!(b.port_config(PortId(1)).unwrap().network, NET_A, "the taken port is untouched");

    b.add_network_with_port(NetworkId(7), Fdb::new(9), Some((PortId(70), gateway))).unwrap();
    assert_eq!(b.network_ports(NetworkId(7)).unwrap(), &[PortId(70)]);
    assert_eq!(b.port_config(PortId(70)).unwrap().network, NetworkId(7));
    b.add_network_with_port(NetworkId(8), Fdb::new(9), None).unwrap();
    assert_eq!(b.network_ports(NetworkId(8)).unwrap(), &[] as &[PortId]);
}

#[test]
fn split_horizon_between_tunnel_ports() {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig::default()).unwrap();
    b.add_port(PortId(0), PortConfig::access(NET_A)).unwrap();
    b.add_port(PortId(1), PortConfig::tunnel(NET_A)).unwrap();
    b.add_port(PortId(2), PortConfig::tunnel(NET_A)).unwrap();
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![0]);
    assert_eq!(send(&mut b, T0, 0, &frame(MacAddr::BROADCAST, mac(2), 60)), vec![1, 2]);
}

/// Found by the `bridge` fuzz target: a unicast frame from one tunnel to a
/// MAC learned behind another tunnel was forwarded, so two hosts with stale
/// tables could bounce it between their VTEPs. Split horizon holds for
/// known unicast too: it is dropped and counted.
#[test]
fn split_horizon_holds_for_known_unicast() {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig::default()).unwrap();
    b.add_port(PortId(0), PortConfig::access(NET_A)).unwrap();
    b.add_port(PortId(1), PortConfig::tunnel(NET_A)).unwrap();
    b.add_port(PortId(2), PortConfig::tunnel(NET_A)).unwrap();
    let (local, behind_1, behind_2) = (mac(1), mac(2), mac(3));
    send(&mut b, T0, 0, &frame(MacAddr::BROADCAST, local, 60));
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, behind_1, 60));
    assert_eq!(b.lookup(NET_A, behind_1, T0), Some(PortId(1)));
    assert_eq!(send(&mut b, T0, 2, &frame(behind_1, behind_2, 60)), Vec::<u32>::new(), "tunnel to tunnel");
    assert_eq!(drops(&b, 2, DropReason::SplitHorizon), 1);
    assert_eq!(send(&mut b, T0, 2, &frame(local, behind_2, 60)), vec![0], "tunnel to a local port");
    assert_eq!(send(&mut b, T0, 0, &frame(behind_1, local, 60)), vec![1], "a local port to a tunnel");
}

/// Every host of an overlay has a gateway with the same MAC: frames never
/// pass between the gateway and a tunnel, flooded or unicast, so a sandbox
/// always reaches its own host's gateway.
#[test]
fn no_frame_passes_between_the_gateway_and_a_tunnel() {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig::default()).unwrap();
    b.add_port(PortId(0), PortConfig::access(NET_A)).unwrap();
    b.add_port(PortId(1), PortConfig::gateway(NET_A)).unwrap();
    b.add_port(PortId(2), PortConfig::tunnel(NET_A)).unwrap();
    let (sandbox, gateway, remote) = (mac(1), mac(2), mac(3));
    // A local sandbox's ARP broadcast reaches the gateway and the tunnel.
    assert_eq!(send(&mut b, T0, 0, &frame(MacAddr::BROADCAST, sandbox, 60)), vec![1, 2]);
    // The gateway's broadcast stays on this host.
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, gateway, 60)), vec![0]);
    // A remote broadcast (another host's sandbox asking for the gateway)
    // reaches local sandboxes only: its own host's gateway answers it.
    assert_eq!(send(&mut b, T0, 2, &frame(MacAddr::BROADCAST, remote, 60)), vec![0]);
    // Unicast between the two is refused and counted, both ways.
    assert!(send(&mut b, T0, 2, &frame(gateway, remote, 60)).is_empty());
    assert_eq!(drops(&b, 2, DropReason::GatewayAcrossTunnel), 1);
    assert!(send(&mut b, T0, 1, &frame(remote, gateway, 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::GatewayAcrossTunnel), 1);
    // Local traffic to and from the gateway flows.
    assert_eq!(send(&mut b, T0, 0, &frame(gateway, sandbox, 60)), vec![1]);
    assert_eq!(send(&mut b, T0, 1, &frame(sandbox, gateway, 60)), vec![0]);
}

/// The mesh station (an ingress flow's source toward another node's
/// replica) is this node's own: unicast between it and a tunnel passes,
/// both ways; the anycast gateway's stays refused.
#[test]
fn the_mesh_station_crosses_between_the_gateway_port_and_tunnels() {
    let mut b = Bridge::new();
    b.add_network(NET_A, NetworkConfig::default()).unwrap();
    b.add_port(PortId(0), PortConfig::access(NET_A)).unwrap();
    b.add_port(PortId(1), PortConfig::gateway(NET_A)).unwrap();
    b.add_port(PortId(2), PortConfig::tunnel(NET_A)).unwrap();
    let (gateway, mesh, replica) = (mac(2), mac(7), mac(3));
    b.add_static(NET_A, mesh, PortId(1), T0).unwrap();
    b.add_static(NET_A, replica, PortId(2), T0).unwrap();
    // Not a mesh station yet: refused like the gateway.
    assert!(send(&mut b, T0, 1, &frame(replica, mesh, 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::GatewayAcrossTunnel), 1);
    b.set_mesh_station(NET_A, Some(mesh)).unwrap();
    assert_eq!(send(&mut b, T0, 1, &frame(replica, mesh, 60)), vec![2], "to the remote replica");
    assert_eq!(send(&mut b, T0, 2, &frame(mesh, replica, 60)), vec![1], "its answer, to the translator");
    // The anycast gateway stays on its host.
    assert!(send(&mut b, T0, 1, &frame(replica, gateway, 60)).is_empty());
    assert!(send(&mut b, T0, 2, &frame(gateway, replica, 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::GatewayAcrossTunnel), 2);
    assert_eq!(drops(&b, 2, DropReason::GatewayAcrossTunnel), 1);
    // Floods still never cross.
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mesh, 60)), vec![0]);
    b.set_mesh_station(NET_A, None).unwrap();
    assert!(send(&mut b, T0, 2, &frame(mesh, replica, 60)).is_empty());
}

#[test]
fn port_down_and_removal_flush_entries() {
    let mut b = bridge();
    send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60));
    b.add_static(NET_A, mac(50), PortId(1), T0).unwrap();
    b.set_port_up(PortId(1), false).unwrap();
    assert_eq!(b.lookup(NET_A, mac(1), T0), None);
    assert_eq!(b.lookup(NET_A, mac(50), T0), Some(PortId(1)), "static entries survive link down");
    assert!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)).is_empty());
    assert_eq!(drops(&b, 1, DropReason::PortDown), 1);
    assert_eq!(send(&mut b, T0, 2, &frame(MacAddr::BROADCAST, mac(2), 60)), vec![3], "down ports get no floods");
    assert!(send(&mut b, T0, 2, &frame(mac(50), mac(2), 60)).is_empty());
    assert_eq!(drops(&b, 2, DropReason::PortDown), 1);
    b.remove_port(PortId(1)).unwrap();
    assert_eq!(b.lookup(NET_A, mac(50), T0), None, "removal drops static entries too");
    assert_eq!(b.network_ports(NET_A).unwrap(), &[PortId(2), PortId(3)]);
    assert_eq!(send(&mut b, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)), Vec::<u32>::new());
    assert_eq!(b.unknown_port_frames(), 1);
}

#[test]
fn configuration_errors_change_nothing() {
    let mut b = bridge();
    assert_eq!(b.add_network(NET_A, NetworkConfig::default()), Err(BridgeError::NetworkExists(NET_A)));
    assert_eq!(b.add_port(PortId(1), PortConfig::access(NET_B)), Err(BridgeError::PortExists(PortId(1))));
    assert_eq!(b.add_port(PortId(5), PortConfig::access(NetworkId(9))), Err(BridgeError::NoSuchNetwork(NetworkId(9))));
    assert_eq!(b.add_port(PortId(MAX_IDS), PortConfig::access(NET_A)), Err(BridgeError::IdOutOfRange(MAX_IDS)));
    assert_eq!(b.remove_network(NET_B).err(), Some(BridgeError::NetworkInUse(NET_B, 2)));
    assert_eq!(b.network_ports(NET_B).unwrap(), &[PortId(10), PortId(11)]);
    assert_eq!(b.port_config(PortId(1)).unwrap().network, NET_A);
}

#[test]
fn a_batch_keeps_frame_indices() {
    let mut b = bridge();
    let f1 = frame(MacAddr::BROADCAST, mac(1), 60);
    let f2 = frame(mac(1), mac(2), 60);
    let bad = [0u8; 3];
    let mut plan = TxPlan::with_capacity(8);
    let batch = [
        RxFrame { port: PortId(1), bytes: &f1, gso: false },
        RxFrame { port: PortId(2), bytes: &bad, gso: false },
        RxFrame { port: PortId(2), bytes: &f2, gso: false },
    ];
    b.forward_batch(T0, batch, &mut plan);
    let got: Vec<(u32, u32)> = plan.sends().iter().map(|t| (t.frame, t.port.0)).collect();
    assert_eq!(got, vec![(0, 2), (0, 3), (2, 1)]);
}

#[test]
fn a_batch_longer_than_the_prefetch_chunk_decides_as_frame_by_frame() {
    // Frames across both networks, stations learned mid-batch and used later
    // in it (across chunk boundaries), moves, short and unknown-port frames.
    let mut frames: Vec<(u32, Vec<u8>)> = vec![];
    for i in 0..(3 * PREFETCH_CHUNK as u32 + 5) {
        let n = (i % 9) as u8 + 1;
        let (port, bytes) = match i % 7 {
            0 => (10 + i % 2, frame(mac(n + 100), mac(n + 50), 64)),
            1 => (1, vec![0u8; 10]),
            2 => (99, frame(mac(1), mac(2), 64)),
            _ => (1 + i % 3, frame(mac(n), mac((n % 9) + 1), 64)),
        };
        frames.push((port, bytes));
    }
    let mut batched = bridge();
    let mut plan = TxPlan::default();
    let rx = frames.iter().map(|(p, f)| RxFrame { port: PortId(*p), bytes: f, gso: false });
    batched.forward_batch(T0, rx, &mut plan);
    let got: Vec<(u32, u32)> = plan.sends().iter().map(|t| (t.frame, t.port.0)).collect();

    let mut single = bridge();
    let mut want = vec![];
    for (i, (p, f)) in frames.iter().enumerate() {
        want.extend(send(&mut single, T0, *p, f).into_iter().map(|port| (i as u32, port)));
    }
    assert!(got.iter().any(|&(_, p)| p == 10 || p == 11), "network B forwards too");
    assert!(got.iter().filter(|&&(i, _)| i >= PREFETCH_CHUNK as u32).count() > 10);
    assert_eq!(got, want);
    for p in [1, 2, 3, 10, 11] {
        assert_eq!(batched.port_counters(PortId(p)).unwrap(), single.port_counters(PortId(p)).unwrap(), "port {p}");
    }
    assert_eq!(batched.learning_counters(NET_A).unwrap(), single.learning_counters(NET_A).unwrap());
    assert_eq!(batched.unknown_port_frames(), single.unknown_port_frames());
    assert!(batched.unknown_port_frames() > 0);
}

/// The port a replica hands frames to its owner through, in the tests.
const PUNT: u32 = 99;

/// An owner of network A ([`bridge`], replicating it) and a replica of A
/// holding its own queues of ports 1 and 2.
fn owner_and_replica() -> (Bridge, Bridge) {
    let mut owner = bridge();
    owner.replicate(NET_A).unwrap();
    let mut replica = Bridge::new();
    replica.add_replica_network(NET_A, Fdb::new(DEFAULT_FDB_LIMIT), PortId(PUNT)).unwrap();
    for p in [1, 2] {
        replica.add_port(PortId(p), PortConfig::access(NET_A)).unwrap();
    }
    (owner, replica)
}

/// Brings `replica`'s copy of network A level with `owner`'s.
fn sync(owner: &mut Bridge, replica: &mut Bridge) {
    if let Some(changes) = owner.take_changes(NET_A) {
        replica.apply_changes(NET_A, changes).unwrap();
    }
}

#[test]
fn a_replica_forwards_known_unicast_between_its_ports_and_hands_the_rest_to_the_owner() {
    // The owner has ports 1, 2, 3; the replica has its own queues of 1 and 2.
    let (mut owner, mut replica) = owner_and_replica();
    assert!(replica.is_replica(NET_A) && !owner.is_replica(NET_A));
    assert!(replica.on_replica(PortId(1)) && !owner.on_replica(PortId(1)));
    let one_to_two = frame(mac(2), mac(1), 64);
    // Nothing known: the owner decides (floods), and nothing is counted here.
    assert_eq!(send(&mut replica, T0, 1, &one_to_two), vec![PUNT]);
    assert_eq!(replica.port_counters(PortId(1)).unwrap().rx_packets, 0);
    assert_eq!(send(&mut owner, T0, 1, &one_to_two), vec![2, 3]);
    assert_eq!(owner.take_changes(NET_A), Some(FdbChanges::Reset(vec![(mac(1), PortId(1))])));
    replica.apply_changes(NET_A, FdbChanges::Reset(vec![(mac(1), PortId(1))])).unwrap();
    // The source is known but not the destination: still the owner's.
    assert_eq!(send(&mut replica, T0, 1, &one_to_two), vec![PUNT]);
    assert_eq!(send(&mut owner, T0, 2, &frame(mac(1), mac(2), 64)), vec![1]);
    assert_eq!(owner.take_changes(NET_A), Some(FdbChanges::Changes(vec![FdbChange::Set(mac(2), PortId(2))])));
    owner.replicate(NET_A).unwrap();
    sync(&mut owner, &mut replica);
    assert_eq!(owner.take_changes(NET_A), None, "nothing changed since");
    // Both known, both here: the replica forwards and counts it itself.
    assert_eq!(send(&mut replica, T0, 1, &one_to_two), vec![2]);
    let (rx, tx) = (replica.port_counters(PortId(1)).unwrap(), replica.port_counters(PortId(2)).unwrap());
    assert_eq!((rx.rx_packets, tx.tx_packets), (1, 1));
    // Broadcasts, and unicast to a port only the owner has, are the owner's.
    assert_eq!(send(&mut replica, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![PUNT]);
    send(&mut owner, T0, 3, &frame(MacAddr::BROADCAST, mac(3), 60));
    sync(&mut owner, &mut replica);
    assert_eq!(send(&mut replica, T0, 1, &frame(mac(3), mac(1), 60)), vec![PUNT]);
    // A source the owner knows elsewhere (a move, spoofing) is the owner's
    // to learn; once it moved there, the replica follows.
    assert_eq!(send(&mut replica, T0, 2, &frame(mac(2), mac(1), 60)), vec![PUNT]);
    send(&mut owner, T0, 3, &frame(MacAddr::BROADCAST, mac(2), 60));
    sync(&mut owner, &mut replica);
    assert_eq!(send(&mut replica, T0, 1, &one_to_two), vec![PUNT], "mac 2 moved to the owner's port 3");
    // The replica never ages on its own; the owner's aging reaches it.
    let later = Timestamp(DEFAULT_AGING_TIME.as_millis() as u64 + 1_000);
    assert_eq!(replica.age(later), 0);
    assert_eq!(owner.age(later), 3);
    let Some(FdbChanges::Changes(removed)) = owner.take_changes(NET_A) else { panic!("aging lists its removals") };
    assert_eq!(removed.len(), 3);
    replica.apply_changes(NET_A, FdbChanges::Changes(removed)).unwrap();
    assert_eq!(replica.fdb_len(NET_A).unwrap(), 0);
    // A flush, or a port removed, sends the whole table again.
    owner.add_static(NET_A, mac(7), PortId(2), later).unwrap();
    owner.flush_network(NET_A).unwrap();
    assert_eq!(owner.take_changes(NET_A), Some(FdbChanges::Reset(vec![(mac(7), PortId(2))])));
    assert_eq!(owner.apply_changes(NET_A, FdbChanges::Reset(Vec::new())), Err(BridgeError::NotReplica(NET_A)));
    // Removing a replica network leaves a bridge that checks no frame for one.
    replica.remove_port(PortId(1)).unwrap();
    replica.remove_port(PortId(2)).unwrap();
    replica.remove_network(NET_A).unwrap();
    assert_eq!(replica.replicas, 0);
}

#[test]
fn a_replica_hands_the_owner_no_more_floods_of_a_limited_port_than_the_limit() {
    let (mut owner, mut replica) = owner_and_replica();
    let limited = PortConfig { flood_limit: crate::port::FloodLimit::new(2), ..PortConfig::access(NET_A) };
    replica.remove_port(PortId(1)).unwrap();
    replica.add_port(PortId(1), limited).unwrap();
    // Learned on the owner and replicated: 1 and 2 are known here.
    send(&mut owner, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60));
    send(&mut owner, T0, 2, &frame(MacAddr::BROADCAST, mac(2), 60));
    sync(&mut owner, &mut replica);
    for n in 0..2 {
        assert_eq!(send(&mut replica, T0, 1, &frame(mac(40 + n), mac(1), 60)), vec![PUNT], "flood {n}: the owner's");
    }
    assert!(send(&mut replica, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 60)).is_empty(), "beyond the share");
    assert!(send(&mut replica, T0, 1, &frame(mac(41), mac(1), 60)).is_empty(), "unknown unicast too");
    assert_eq!(drops(&replica, 1, DropReason::FloodLimited), 2);
    assert_eq!(replica.port_counters(PortId(1)).unwrap().rx_packets, 0, "a replica's rx is what it forwarded");
    // Frames the owner drops for another reason are handed over, uncharged.
    let reserved = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]);
    assert_eq!(send(&mut replica, T0, 1, &frame(reserved, mac(1), 60)), vec![PUNT]);
    assert_eq!(send(&mut replica, T0, 1, &frame(MacAddr::BROADCAST, MacAddr::BROADCAST, 60)), vec![PUNT]);
    assert_eq!(send(&mut replica, T0, 1, &frame(MacAddr::BROADCAST, mac(1), 1600)), vec![PUNT], "oversize");
    assert_eq!(drops(&replica, 1, DropReason::FloodLimited), 2);
    // Known unicast between the replica's ports, and to the owner's, still goes.
    assert_eq!(send(&mut replica, T0, 1, &frame(mac(2), mac(1), 60)), vec![2]);
    send(&mut owner, T0, 3, &frame(MacAddr::BROADCAST, mac(3), 60));
    sync(&mut owner, &mut replica);
    assert_eq!(send(&mut replica, T0, 1, &frame(mac(3), mac(1), 60)), vec![PUNT], "known, behind the owner");
    // An unlimited port hands every flood over.
    for _ in 0..5 {
        assert_eq!(send(&mut replica, T0, 2, &frame(MacAddr::BROADCAST, mac(2), 60)), vec![PUNT]);
    }
    assert_eq!(send(&mut replica, Timestamp(500), 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![PUNT], "earned");
    // A port that is down: the owner's to drop, the share untouched.
    replica.set_port_up(PortId(1), false).unwrap();
    assert_eq!(send(&mut replica, Timestamp(500), 1, &frame(MacAddr::BROADCAST, mac(1), 60)), vec![PUNT], "down");
    assert_eq!(drops(&replica, 1, DropReason::FloodLimited), 2);
}

#[test]
fn a_replica_never_forwards_into_another_network_and_reports_what_it_forwarded_for() {
    let (mut owner, mut replica) = owner_and_replica();
    replica.add_network(NET_B, NetworkConfig::default()).unwrap();
    // The owner's table names ports 1 and 2.
    for (p, m) in [(1, 1), (2, 2)] {
        send(&mut owner, T0, p, &frame(MacAddr::BROADCAST, mac(m), 60));
    }
    sync(&mut owner, &mut replica);
    assert_eq!(replica.replica_seen(NET_A, T0), Vec::new(), "copies are not traffic");
    let t1 = Timestamp(1_000);
    assert_eq!(send(&mut replica, t1, 1, &frame(mac(2), mac(1), 60)), vec![2]);
    assert_eq!(replica.replica_seen(NET_A, T0), vec![(mac(1), PortId(1))], "the station that sent");
    let t2 = Timestamp(2_000);
    assert_eq!(replica.replica_seen(NET_A, t2), Vec::new(), "nothing after the last report");
    // A change that leaves a copy where it was keeps what it saw; a Reset too.
    let again = FdbChanges::Changes(vec![FdbChange::Set(mac(1), PortId(1))]);
    replica.apply_changes(NET_A, again).unwrap();
    replica.apply_changes(NET_A, FdbChanges::Reset(vec![(mac(1), PortId(1)), (mac(2), PortId(2))])).unwrap();
    assert_eq!(replica.replica_seen(NET_A, T0), vec![(mac(1), PortId(1))], "forwarding not yet reported stays");
    // The owner ages on what it sees, refreshed by what the replica saw.
    let late = Timestamp(DEFAULT_AGING_TIME.as_millis() as u64 + 500);
    assert_eq!(owner.refresh(NET_A, &[(mac(1), PortId(1)), (mac(2), PortId(3))], late), 1, "same port only");
    owner.age(late);
    assert_eq!((owner.lookup(NET_A, mac(1), late), owner.lookup(NET_A, mac(2), late)), (Some(PortId(1)), None));
    // Port 2 is removed here and its id reused by network B before the
    // owner's change arrives: the stale entry must not lead across networks.
    replica.remove_port(PortId(2)).unwrap();
    replica.add_port(PortId(2), PortConfig::access(NET_B)).unwrap();
    let stale = FdbChanges::Changes(vec![FdbChange::Set(mac(2), PortId(2))]);
    replica.apply_changes(NET_A, stale).unwrap();
    assert_eq!(send(&mut replica, t1, 1, &frame(mac(2), mac(1), 60)), vec![PUNT]);
    assert_eq!(replica.port_counters(PortId(2)).unwrap().tx_packets, 0);
    // A flush of every network leaves a replica's copy to its owner.
    assert_eq!(replica.flush_all(), 0);
    assert_eq!(replica.fdb_len(NET_A).unwrap(), 2);
}
