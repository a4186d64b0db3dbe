//! Property tests for the learning bridge's invariants: whatever frames
//! arrive, in whatever order, a frame is never sent back out of its ingress
//! port, never leaves its network, a learned unicast goes to exactly one port,
//! tables never exceed their limits, aging removes exactly the old entries,
//! and the events the bridge records account for its learning counters.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use switch::events::EventKind;
use switch::{Bridge, MacAddr, NetworkConfig, NetworkId, PortConfig, PortId, RxFrame, Timestamp, TxPlan};

/// Ports 0..4 on network 0, ports 4..7 on network 1; port 3 and 6 are tunnels.
const PORTS: u32 = 7;
const FDB_LIMIT: usize = 12;
const PORT_LIMIT: usize = 5;

fn network_of(port: u32) -> NetworkId {
    NetworkId(u32::from(port >= 4))
}

fn is_tunnel(port: u32) -> bool {
    port == 3 || port == 6
}

fn build() -> Bridge {
    let mut b = Bridge::new();
    b.set_aging_time(Duration::from_secs(10)).unwrap();
    for n in 0..2 {
        b.add_network(NetworkId(n), NetworkConfig { fdb_limit: FDB_LIMIT }).unwrap();
    }
    for p in 0..PORTS {
        let base = if is_tunnel(p) { PortConfig::tunnel(network_of(p)) } else { PortConfig::access(network_of(p)) };
        b.add_port(PortId(p), PortConfig { learn_limit: PORT_LIMIT, ..base }).unwrap();
    }
    b
}

/// A MAC from a small space so collisions, moves and limits happen often.
fn mac_strategy() -> impl Strategy<Value = MacAddr> {
    prop_oneof![
        8 => (0u8..24).prop_map(|n| MacAddr([0x02, 0, 0, 0, 0, n])),
        1 => Just(MacAddr::BROADCAST),
        1 => (0u8..4).prop_map(|n| MacAddr([0x01, 0x00, 0x5e, 0, 0, n])),
        1 => (0u8..0x12).prop_map(|n| MacAddr([0x01, 0x80, 0xc2, 0, 0, n])),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    port: u32,
    dst: MacAddr,
    src: MacAddr,
    len: usize,
    advance_ms: u64,
}

fn input_strategy() -> impl Strategy<Value = Input> {
    (
        0..PORTS,
        mac_strategy(),
        mac_strategy(),
        prop_oneof![Just(0usize), 10usize..20, 60usize..100, 1510usize..1520],
        0u64..3_000,
    )
        .prop_map(|(port, dst, src, len, advance_ms)| Input { port, dst, src, len, advance_ms })
}

fn frame(input: &Input) -> Vec<u8> {
    let mut f = vec![0u8; input.len];
    let n = f.len().min(6);
    f[..n].copy_from_slice(&input.dst.0[..n]);
    if f.len() > 6 {
        let n = (f.len() - 6).min(6);
        f[6..6 + n].copy_from_slice(&input.src.0[..n]);
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn forwarding_invariants_hold(inputs in proptest::collection::vec(input_strategy(), 1..200)) {
        let mut b = build();
        let mut plan = TxPlan::default();
        let mut now = Timestamp(0);
        // Shadow model of when each (network, mac) was last seen on which port.
        for input in &inputs {
            now = Timestamp(now.0 + input.advance_ms);
            let bytes = frame(input);
            b.forward_batch(now, [RxFrame { port: PortId(input.port), bytes: &bytes, gso: false }], &mut plan);
            let net = network_of(input.port);
            let egress: Vec<u32> = plan.sends().iter().map(|t| t.port.0).collect();
            for &p in &egress {
                prop_assert_ne!(p, input.port, "never back out of the ingress port");
                prop_assert_eq!(network_of(p), net, "never into another network");
                prop_assert!(!(is_tunnel(input.port) && is_tunnel(p)), "split horizon");
            }
            let mut dedup = egress.clone();
            dedup.dedup();
            prop_assert_eq!(dedup.len(), egress.len(), "each port at most once");
            if input.dst.is_reserved_group() || input.len < 14 || input.len > 1514 || !input.src.is_valid_station() {
                prop_assert!(egress.is_empty());
            }
            if let Some(known) = b.lookup(net, input.dst, now)
                && !input.dst.is_group() && input.len >= 14 && input.len <= 1514 && input.src.is_valid_station()
            {
                if known.0 == input.port {
                    prop_assert!(egress.is_empty(), "filtered on the ingress segment");
                } else {
                    prop_assert_eq!(egress, vec![known.0], "known unicast goes to exactly one port");
                }
            }
            for n in 0..2 {
                prop_assert!(b.fdb_len(NetworkId(n)).unwrap() <= FDB_LIMIT);
            }
            for p in 0..PORTS {
                prop_assert!(b.port_learned(PortId(p)).unwrap() <= PORT_LIMIT);
            }
        }
        // Per-port learned counts agree with the tables.
        let mut per_port: HashMap<u32, usize> = HashMap::new();
        for n in 0..2 {
            for r in b.fdb_records(NetworkId(n), now).unwrap() {
                *per_port.entry(r.port.0).or_default() += 1;
            }
        }
        for p in 0..PORTS {
            prop_assert_eq!(b.port_learned(PortId(p)).unwrap(), per_port.get(&p).copied().unwrap_or(0));
        }
    }

    #[test]
    fn events_account_for_every_learning_counter(inputs in proptest::collection::vec(input_strategy(), 1..300)) {
        let mut b = build();
        let mut plan = TxPlan::default();
        let mut now = Timestamp(0);
        let mut last_tick = Timestamp(0);
        let mut events = Vec::new();
        let mut spare = Vec::with_capacity(1024);
        let mut drain = |b: &mut Bridge, events: &mut Vec<EventKind>| -> Result<(), TestCaseError> {
            prop_assert_eq!(b.events_mut().drain_into(&mut spare), 0, "no overflow");
            events.extend(spare.iter().map(|e| e.kind));
            Ok(())
        };
        for input in &inputs {
            now = Timestamp(now.0 + input.advance_ms);
            // The daemon's tick: aging, then the end of the interval.
            while now.millis_since(last_tick) >= 1000 {
                last_tick = Timestamp(last_tick.0 + 1000);
                b.age(last_tick);
                b.end_interval(last_tick);
            }
            let bytes = frame(input);
            b.forward_batch(now, [RxFrame { port: PortId(input.port), bytes: &bytes, gso: false }], &mut plan);
            drain(&mut b, &mut events)?;
        }
        b.end_interval(Timestamp(now.0 + 1000));
        drain(&mut b, &mut events)?;
        for n in 0..2 {
            let net = NetworkId(n);
            let c = b.learning_counters(net).unwrap();
            let (mut learned, mut moved, mut aged, mut full, mut limited) = (0u64, 0u64, 0u64, 0u64, 0u64);
            for kind in &events {
                match *kind {
                    EventKind::MacLearned { network, .. } if network == net => learned += 1,
                    EventKind::MacMoved { network, from, to, .. } if network == net => {
                        prop_assert_ne!(from, to);
                        prop_assert_eq!((network_of(from.0), network_of(to.0)), (net, net));
                        moved += 1;
                    }
                    EventKind::MacFlapping { network, ports, moves, suppressed, .. } if network == net => {
                        prop_assert!(suppressed <= moves && moves >= 1);
                        prop_assert_ne!(ports[0], ports[1]);
                        moved += u64::from(suppressed);
                    }
                    EventKind::MacAged { network, .. } if network == net => aged += 1,
                    EventKind::Suppressed { network, learned: l, moved: m, aged: a } if network == net => {
                        learned += u64::from(l);
                        moved += u64::from(m);
                        aged += u64::from(a);
                    }
                    EventKind::TableFull { network, refused, .. } if network == net => full += refused,
                    EventKind::LearnLimit { network, refused, .. } if network == net => limited += refused,
                    _ => {}
                }
            }
            prop_assert_eq!(learned, c.learned, "learned");
            prop_assert_eq!(moved, c.station_moves, "moves");
            prop_assert_eq!(aged, c.aged_out, "aged");
            prop_assert_eq!(full, c.table_full, "table full");
            prop_assert_eq!(limited, c.port_limit, "learning limit");
        }
    }

    #[test]
    fn aging_removes_exactly_the_entries_older_than_the_aging_time(
        ages_ms in proptest::collection::vec(0u64..30_000, 1..40),
        aging_s in 10u64..20,
    ) {
        let mut b = Bridge::new();
        b.set_aging_time(Duration::from_secs(aging_s)).unwrap();
        b.add_network(NetworkId(0), NetworkConfig::default()).unwrap();
        b.add_port(PortId(0), PortConfig::access(NetworkId(0))).unwrap();
        b.add_port(PortId(1), PortConfig::access(NetworkId(0))).unwrap();
        let now = Timestamp(100_000);
        let mut plan = TxPlan::default();
        let mut expected_kept = 0;
        for (i, age) in ages_ms.iter().enumerate() {
            let mut f = vec![0xffu8; 60];
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, (i >> 8) as u8, i as u8]);
            b.forward_batch(Timestamp(now.0 - age), [RxFrame { port: PortId(0), bytes: &f, gso: false }], &mut plan);
            if *age < aging_s * 1000 {
                expected_kept += 1;
            }
        }
        let removed = b.age(now);
        prop_assert_eq!(removed, ages_ms.len() - expected_kept);
        prop_assert_eq!(b.fdb_len(NetworkId(0)).unwrap(), expected_kept);
        for r in b.fdb_records(NetworkId(0), now).unwrap() {
            prop_assert!(r.age < Duration::from_secs(aging_s));
        }
    }
}
