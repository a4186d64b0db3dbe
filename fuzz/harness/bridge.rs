//! The `bridge` fuzz target's interpreter, shared with its seed check
//! (`switch/tests/fuzz_corpus.rs`, which includes this file by path): it
//! reads bytes as a program of frames arriving on ports, time passing and
//! configuration changes, drives a [`Bridge`] with it, and checks after every
//! step what must hold whatever the input:
//!
//! - the wire parsers: `EthernetFrame::new_checked` accepts exactly the
//!   buffers that hold a whole header (the 802.1Q tag included), and its
//!   accessors agree with the raw bytes; MAC addresses survive `to_u64` and
//!   their text form;
//! - every transmission names a frame of the batch, a live port that is up,
//!   on the ingress port's network, never the ingress port itself, never
//!   tunnel to tunnel nor between a tunnel and the gateway nor between two
//!   isolated ports, at most once per (frame, port), in frame order;
//! - frames from unknown or down ports, truncated, oversize, with a group or
//!   zero source, or to a reserved group address go nowhere;
//! - a broadcast or multicast frame goes to exactly the network's other
//!   eligible ports, in membership order; a unicast frame to a static entry
//!   goes to that port only, and does when it is eligible (up, not the
//!   ingress port, no tunnel to tunnel, no tunnel to or from the gateway,
//!   not both isolated);
//! - counters: per port, received packets and bytes grow by what arrived,
//!   transmitted packets and bytes by what the plan sends there, and every
//!   frame received is either sent somewhere or counted as one drop; frames
//!   on unknown ports are counted as such;
//! - tables: no network's FDB exceeds its limit; every entry is a valid
//!   station on a live member port of that network; a port's learned count
//!   equals its learned entries and stays within its limit; lookups agree
//!   with the entries' ages; aging removes exactly the expired entries and
//!   counts them; a refused configuration call changes nothing.
//!
//! Input: records `[op, len, bytes...]` (`len` clipped to what is left).
//! Ops (`op % 16`): 0-2 a raw frame (`bytes[0]` picks the port from
//! [`PORTS`], bit 7 marks it GSO; the rest is the frame); 3-5 a built frame
//! (`bytes[0]` as above, `bytes[1]` the destination and `bytes[2]` the
//! source via [`mac`], `bytes[3]` an 802.1Q tag when odd, the rest the
//! payload); 6 forward the pending batch (also done at 32 frames and at the
//! end); 7 advance the clock by `bytes[0] << (bytes[1] % 24)` ms; 8 age;
//! 9 set a port up or down; 10 add a static entry; 11 remove an entry;
//! 12 flush a network; 13 unplug a port, or plug it into a network;
//! 14 set the aging time; 15 add or remove a network.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use switch::bridge::{DEFAULT_AGING_TIME, FdbRecord};
use switch::counters::PortCounters;
use switch::wire::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, VLAN_TAG_LEN};
use switch::{
    Bridge, DropReason, MacAddr, NetworkConfig, NetworkId, PortConfig, PortId, PortKind, RxFrame, Timestamp, TxPlan,
};

/// Port ids the selector byte picks from: the initial ports (see
/// [`initial_ports`]), a sparse id, and ids the bridge never has (the last
/// beyond its id range).
pub(crate) const PORTS: [u32; 12] = [1, 2, 3, 4, 5, 6, 7, 300, 8, 9, 4095, 70_000];
/// Network ids the configuration ops pick from; 9 starts absent.
pub(crate) const NETWORKS: [u32; 4] = [0, 1, 7, 9];
/// The largest batch before it is forwarded anyway (the datapath reads 32).
pub(crate) const BATCH: usize = 32;

/// What a run did, for the seed check to assert on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[allow(dead_code)] // read by the seed check only
pub(crate) struct Outcome {
    /// Batches forwarded.
    pub(crate) batches: u64,
    /// Frames handed to the bridge.
    pub(crate) frames: u64,
    /// Transmissions planned.
    pub(crate) sends: u64,
    /// Frames sent to exactly one port as known unicast.
    pub(crate) unicast: u64,
    /// Frames flooded (the ingress port's `rx_flooded`).
    pub(crate) flooded: u64,
    /// Drops counted during forwarding, by reason.
    pub(crate) drops: BTreeMap<&'static str, u64>,
    /// Frames on ports the bridge does not have.
    pub(crate) unknown_port: u64,
    /// Entries learned, over all networks.
    pub(crate) learned: u64,
    /// Station moves, over all networks.
    pub(crate) moves: u64,
    /// New MACs refused because a table was full.
    pub(crate) table_full: u64,
    /// New MACs or moves refused by a port's limit.
    pub(crate) port_limit: u64,
    /// Entries removed by aging.
    pub(crate) aged: u64,
    /// Configuration calls the bridge refused.
    pub(crate) refused: u64,
    /// The largest FDB size seen, per network.
    pub(crate) max_fdb: BTreeMap<u32, usize>,
}

/// A MAC from a small alphabet, so that collisions, moves and full tables
/// happen: 0 broadcast, 1 IPv4 multicast, 2 an 802.1D reserved group
/// address, 3 all-zero, anything else the station `02:00:00:00:00:b`.
pub(crate) fn mac(b: u8) -> MacAddr {
    match b {
        0 => MacAddr::BROADCAST,
        1 => MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        2 => MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]),
        3 => MacAddr::ZERO,
        b => MacAddr([0x02, 0, 0, 0, 0, b]),
    }
}

/// The initial networks and their FDB limits: small, so tables fill.
pub(crate) fn initial_networks() -> [(u32, usize); 3] {
    [(0, 8), (1, 4), (7, 16)]
}

/// The initial ports: network 0 has two access ports (learning limit 3;
/// one with MTU 100), the gateway and two tunnels; network 1 two isolated
/// access ports (as with inter-container communication off) and a tunnel
/// with a sparse id; network 7 a lone access port. Ports plugged in later
/// are isolated access ports when their learning-limit byte's top bit is set.
pub(crate) fn initial_ports() -> [(u32, PortConfig); 9] {
    let access = |net: u32, mtu: u32, learn_limit: usize| PortConfig {
        network: NetworkId(net),
        kind: PortKind::Access,
        mtu,
        learn_limit,
        // The model below does not predict storm control (unit-tested in the bridge).
        flood_limit: None,
        isolated: false,
    };
    // Network 1's endpoints have inter-container communication off.
    let isolated = |learn_limit: usize| PortConfig { isolated: true, ..access(1, 1500, learn_limit) };
    [
        (1, access(0, 1500, 3)),
        (2, access(0, 100, 3)),
        (3, PortConfig::gateway(NetworkId(0))),
        (4, PortConfig::tunnel(NetworkId(0))),
        (5, PortConfig::tunnel(NetworkId(0))),
        (6, isolated(1024)),
        (7, isolated(2)),
        (300, PortConfig::tunnel(NetworkId(1))),
        (8, access(7, 9000, 4)),
    ]
}

/// What the harness expects the bridge to hold.
#[derive(Debug, Default)]
struct Model {
    /// Network id → FDB limit.
    networks: BTreeMap<u32, usize>,
    /// Network id → member ports, in the order they were added.
    members: BTreeMap<u32, Vec<u32>>,
    /// Port id → (configuration, up).
    ports: BTreeMap<u32, (PortConfig, bool)>,
    aging: Duration,
}

/// Per network: its entries (MAC, port, static) sorted, and its ports' learned counts.
type Snapshot = Vec<(u32, Vec<(MacAddr, u32, bool)>, Vec<(u32, usize)>)>;

struct Run {
    bridge: Bridge,
    model: Model,
    now: Timestamp,
    plan: TxPlan,
    batch: Vec<(u32, Vec<u8>, bool)>,
    out: Outcome,
}

/// Runs the program `data`, checking every invariant as it goes (a
/// violated one panics). Returns what the run did.
pub(crate) fn run(data: &[u8]) -> Outcome {
    let mut run = Run::new();
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        run.step(*op, bytes);
    }
    run.forward();
    run.out
}

fn byte(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

fn pick<T: Copy>(from: &[T], b: u8) -> T {
    from[usize::from(b) % from.len()]
}

impl Run {
    fn new() -> Run {
        let mut bridge = Bridge::new();
        let mut model = Model { aging: DEFAULT_AGING_TIME, ..Model::default() };
        for (id, limit) in initial_networks() {
            bridge.add_network(NetworkId(id), NetworkConfig { fdb_limit: limit }).expect("a new network");
            model.networks.insert(id, limit);
            model.members.insert(id, Vec::new());
        }
        for (id, config) in initial_ports() {
            bridge.add_port(PortId(id), config).expect("a new port");
            model.ports.insert(id, (config, true));
            model.members.get_mut(&config.network.0).expect("network").push(id);
        }
        Run {
            bridge,
            model,
            now: Timestamp(1_000),
            plan: TxPlan::default(),
            batch: Vec::new(),
            out: Outcome::default(),
        }
    }

    fn step(&mut self, op: u8, bytes: &[u8]) {
        match op % 16 {
            0..=2 => {
                let sel = byte(bytes, 0);
                let frame = bytes.get(1..).unwrap_or_default();
                check_wire(frame);
                self.push(pick(&PORTS, sel & 0x7f), frame.to_vec(), sel & 0x80 != 0);
            }
            3..=5 => {
                let sel = byte(bytes, 0);
                let mut frame = Vec::with_capacity(bytes.len() + 14);
                frame.extend_from_slice(&mac(byte(bytes, 1)).0);
                frame.extend_from_slice(&mac(byte(bytes, 2)).0);
                if byte(bytes, 3) % 2 == 1 {
                    frame.extend_from_slice(&[0x81, 0x00, byte(bytes, 3) >> 4, byte(bytes, 3)]);
                }
                frame.extend_from_slice(&[0x08, 0x00]);
                frame.extend_from_slice(bytes.get(4..).unwrap_or_default());
                check_wire(&frame);
                self.push(pick(&PORTS, sel & 0x7f), frame, sel & 0x80 != 0);
            }
            6 => self.forward(),
            7 => self.now = Timestamp(self.now.0 + (u64::from(byte(bytes, 0)) << (byte(bytes, 1) % 24))),
            8 => self.age(),
            _ => {
                // Configuration happens between batches, as in the datapath.
                self.forward();
                self.configure(op % 16, bytes);
                self.check_tables();
            }
        }
    }

    fn push(&mut self, port: u32, frame: Vec<u8>, gso: bool) {
        self.batch.push((port, frame, gso));
        if self.batch.len() >= BATCH {
            self.forward();
        }
    }

    /// Forwards the pending batch and checks the plan and every counter
    /// against what arrived.
    fn forward(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let before = self.counters();
        let unknown_before = self.bridge.unknown_port_frames();
        let statics = self.statics();
        let learning_before = self.learning();
        let frames = self.batch.iter().map(|(port, bytes, gso)| RxFrame { port: PortId(*port), bytes, gso: *gso });
        self.bridge.forward_batch(self.now, frames, &mut self.plan);
        self.out.batches += 1;
        self.out.frames += self.batch.len() as u64;

        // Transmissions per frame, checked one by one.
        let mut per_frame: Vec<Vec<u32>> = vec![Vec::new(); self.batch.len()];
        let mut last_frame = 0;
        for t in self.plan.sends() {
            let index = t.frame as usize;
            assert!(index < self.batch.len(), "transmission of frame {index} beyond the batch");
            assert!(index >= last_frame, "transmissions out of frame order");
            last_frame = index;
            assert!(!per_frame[index].contains(&t.port.0), "frame {index} sent twice to {}", t.port);
            per_frame[index].push(t.port.0);
        }
        self.out.sends += self.plan.len() as u64;
        for (index, ((port, bytes, gso), sends)) in self.batch.iter().zip(&per_frame).enumerate() {
            self.check_frame(index, *port, bytes, *gso, sends, &statics);
        }

        // Counters: what arrived and what the plan sends, port by port.
        let after = self.counters();
        let mut unknown = 0;
        // rx, rx bytes, tx, tx bytes, frames sent anywhere, frames sent to several ports
        let mut expect: BTreeMap<u32, (u64, u64, u64, u64, u64, u64)> = BTreeMap::new();
        for ((port, bytes, _), sends) in self.batch.iter().zip(&per_frame) {
            if !self.model.ports.contains_key(port) {
                unknown += 1;
                continue;
            }
            let len = bytes.len() as u64;
            let e = expect.entry(*port).or_default();
            e.0 += 1;
            e.1 += len;
            e.4 += u64::from(!sends.is_empty());
            e.5 += u64::from(sends.len() > 1);
            for egress in sends {
                let e = expect.entry(*egress).or_default();
                e.2 += 1;
                e.3 += len;
            }
        }
        assert_eq!(self.bridge.unknown_port_frames() - unknown_before, unknown, "frames on unknown ports");
        self.out.unknown_port += unknown;
        for (port, now) in &after {
            let was = before.get(port).copied().unwrap_or_default();
            let (rx, rx_bytes, tx, tx_bytes, sent, several) = expect.get(port).copied().unwrap_or_default();
            assert_eq!(now.rx_packets - was.rx_packets, rx, "rx_packets of port {port}");
            assert_eq!(now.rx_bytes - was.rx_bytes, rx_bytes, "rx_bytes of port {port}");
            assert_eq!(now.tx_packets - was.tx_packets, tx, "tx_packets of port {port}");
            assert_eq!(now.tx_bytes - was.tx_bytes, tx_bytes, "tx_bytes of port {port}");
            let drops = now.drops.total() - was.drops.total();
            assert_eq!(rx, sent + drops, "port {port}: every frame received is sent or dropped once");
            let no_egress = now.drops.get(DropReason::NoEgress) - was.drops.get(DropReason::NoEgress);
            let flooded = now.rx_flooded - was.rx_flooded;
            assert!(no_egress <= flooded, "port {port}: a no_egress drop is a flood that found no port");
            // Frames sent somewhere were flooded (and found a port) or were known unicast.
            let delivered_floods = flooded - no_egress;
            assert!(delivered_floods <= sent, "port {port}: {delivered_floods} floods delivered, {sent} frames sent");
            assert!(several <= delivered_floods, "port {port}: a frame sent to several ports was not flooded");
            self.out.unicast += sent - delivered_floods;
            self.out.flooded += flooded;
            for (reason, n) in now.drops.iter() {
                let n = n - was.drops.get(reason);
                if n > 0 {
                    *self.out.drops.entry(reason.name()).or_default() += n;
                }
            }
        }
        let learning_after = self.learning();
        for (net, (learned, moves, full, limit)) in &learning_after {
            let (l0, m0, f0, p0) = learning_before.get(net).copied().unwrap_or_default();
            self.out.learned += learned - l0;
            self.out.moves += moves - m0;
            self.out.table_full += full - f0;
            self.out.port_limit += limit - p0;
        }
        self.batch.clear();
        self.check_tables();
    }

    /// The per-frame rules: where frame `index`, from `port`, may have gone.
    fn check_frame(
        &self,
        index: usize,
        port: u32,
        bytes: &[u8],
        gso: bool,
        sends: &[u32],
        statics: &BTreeMap<(u32, MacAddr), u32>,
    ) {
        let Some(&(config, up)) = self.model.ports.get(&port) else {
            assert!(sends.is_empty(), "frame {index} from unknown port {port} was sent");
            return;
        };
        let net = config.network.0;
        for egress in sends {
            assert_ne!(*egress, port, "frame {index} sent back out of its ingress port {port}");
            let (out, out_up) =
                self.model.ports.get(egress).copied().expect("transmission to a port that is not there");
            assert_eq!(out.network.0, net, "frame {index} crossed from network {net} to {}", out.network);
            assert!(out_up, "frame {index} sent to port {egress}, which is down");
            assert!(
                !(config.kind == PortKind::Tunnel && out.kind == PortKind::Tunnel),
                "frame {index} sent from tunnel {port} to tunnel {egress}"
            );
            assert!(
                !config.kind.crosses_gateway_and_tunnel(out.kind),
                "frame {index} passed between gateway and tunnel ({port} to {egress})"
            );
            assert!(
                !(config.isolated && out.isolated),
                "frame {index} passed between isolated ports {port} and {egress}"
            );
        }
        let Ok(frame) = EthernetFrame::new_checked(bytes) else {
            assert!(sends.is_empty(), "truncated frame {index} was sent");
            return;
        };
        let dropped = !up
            || (!gso && bytes.len() > config.mtu as usize + frame.header_len())
            || !frame.source().is_valid_station()
            || frame.destination().is_reserved_group();
        if dropped {
            assert!(sends.is_empty(), "frame {index} (down port, oversize, bad source or reserved group) was sent");
            return;
        }
        let dst = frame.destination();
        if dst.is_group() {
            let eligible: Vec<u32> = self.model.members[&net]
                .iter()
                .copied()
                .filter(|&p| p != port)
                .filter(|p| {
                    let (out, out_up) = self.model.ports[p];
                    out_up && config.kind.floods_to(out.kind) && !(config.isolated && out.isolated)
                })
                .collect();
            assert_eq!(
                sends, eligible,
                "group frame {index} from port {port} is flooded to exactly the eligible ports"
            );
        } else if let Some(&target) = statics.get(&(net, dst)) {
            assert!(sends.iter().all(|&p| p == target), "frame {index} to a static entry went elsewhere: {sends:?}");
            let (out, out_up) = self.model.ports[&target];
            if target != port && out_up && config.kind.floods_to(out.kind) && !(config.isolated && out.isolated) {
                assert_eq!(sends, [target], "frame {index} to a static entry on port {target}");
            }
        }
    }

    fn age(&mut self) {
        self.forward();
        let aged_before: u64 = self.model.networks.keys().map(|&n| self.aged_out(n)).sum();
        let len_before: usize = self.model.networks.keys().map(|&n| self.fdb_len(n)).sum();
        let removed = self.bridge.age(self.now);
        let aged_after: u64 = self.model.networks.keys().map(|&n| self.aged_out(n)).sum();
        let len_after: usize = self.model.networks.keys().map(|&n| self.fdb_len(n)).sum();
        assert_eq!(aged_after - aged_before, removed as u64, "aged_out counts what age() removed");
        assert_eq!(len_before - len_after, removed, "age() removed what it says");
        self.out.aged += removed as u64;
        for &net in self.model.networks.keys() {
            for r in self.records(net) {
                assert!(r.is_static || r.age < self.model.aging, "an expired entry survived aging: {r:?}");
            }
        }
        self.check_tables();
    }

    fn configure(&mut self, op: u8, bytes: &[u8]) {
        let port = pick(&PORTS, byte(bytes, 0));
        let net = pick(&NETWORKS, byte(bytes, 1));
        let before = self.snapshot();
        let refused = match op {
            9 => {
                let up = byte(bytes, 1).is_multiple_of(2);
                let ok = self.bridge.set_port_up(PortId(port), up).is_ok();
                assert_eq!(ok, self.model.ports.contains_key(&port), "set_port_up on port {port}");
                if let Some(p) = self.model.ports.get_mut(&port) {
                    p.1 = up;
                }
                !ok
            }
            10 => {
                let mac = mac(byte(bytes, 2));
                let result = self.bridge.add_static(NetworkId(net), mac, PortId(port), self.now);
                let fits = match self.model.ports.get(&port) {
                    Some((config, _)) => config.network.0 == net,
                    None => false,
                };
                if !fits || !mac.is_valid_station() {
                    assert!(result.is_err(), "add_static({net}, {mac}, {port}) accepted");
                }
                result.is_err()
            }
            11 => {
                let result = self.bridge.remove_entry(NetworkId(net), mac(byte(bytes, 2)));
                assert_eq!(result.is_ok(), self.model.networks.contains_key(&net), "remove_entry on network {net}");
                result.is_err()
            }
            12 => {
                let statics = self.records(net).iter().filter(|r| r.is_static).count();
                let learned = self.records(net).len() - statics;
                let result = self.bridge.flush_network(NetworkId(net));
                match result {
                    Ok(n) => {
                        assert_eq!(n, learned, "flush_network removed every learned entry");
                        assert_eq!(self.fdb_len(net), statics, "flush_network kept the static entries");
                    }
                    Err(_) => assert!(!self.model.networks.contains_key(&net), "flush_network on network {net}"),
                }
                result.is_err()
            }
            13 => self.replug(port, net, bytes),
            14 => {
                let aging = Duration::from_millis(u64::from(u32::from_be_bytes([
                    byte(bytes, 1),
                    byte(bytes, 2),
                    byte(bytes, 3),
                    byte(bytes, 4),
                ])));
                let result = self.bridge.set_aging_time(aging);
                let valid = (Duration::from_secs(10)..=Duration::from_secs(1_000_000)).contains(&aging);
                assert_eq!(result.is_ok(), valid, "set_aging_time({aging:?})");
                if valid {
                    self.model.aging = aging;
                }
                assert_eq!(self.bridge.aging_time(), self.model.aging);
                !valid
            }
            _ => {
                let result = if self.model.networks.contains_key(&net) {
                    let result = self.bridge.remove_network(NetworkId(net));
                    assert_eq!(result.is_ok(), self.model.members[&net].is_empty(), "remove_network({net})");
                    if let Ok(table) = &result {
                        assert_eq!(table.limit(), self.model.networks[&net], "remove_network({net}) returns its table");
                        self.model.networks.remove(&net);
                        self.model.members.remove(&net);
                    }
                    result.map(drop)
                } else {
                    let limit = usize::from(byte(bytes, 2) % 8);
                    let result = self.bridge.add_network(NetworkId(net), NetworkConfig { fdb_limit: limit });
                    assert!(result.is_ok(), "add_network({net}) of an absent network");
                    self.model.networks.insert(net, limit);
                    self.model.members.insert(net, Vec::new());
                    result
                };
                result.is_err()
            }
        };
        if refused {
            self.out.refused += 1;
            assert_eq!(self.snapshot(), before, "a refused configuration call (op {op}) changed the tables");
        }
    }

    /// Unplugs `port` if it is there (its entries go with it), else plugs it
    /// into `net` with a kind, MTU and learning limit from `bytes`.
    fn replug(&mut self, port: u32, net: u32, bytes: &[u8]) -> bool {
        if let Some((config, _)) = self.model.ports.remove(&port) {
            self.bridge.remove_port(PortId(port)).expect("removing a port that is there");
            self.model.members.get_mut(&config.network.0).expect("its network").retain(|&p| p != port);
            assert!(
                self.records(config.network.0).iter().all(|r| r.port.0 != port),
                "entries of removed port {port} remain"
            );
            assert!(self.bridge.port_counters(PortId(port)).is_err(), "removed port {port} still has counters");
            return false;
        }
        let kind = pick(&[PortKind::Access, PortKind::Tunnel, PortKind::Gateway], byte(bytes, 2));
        let config = PortConfig {
            network: NetworkId(net),
            kind,
            mtu: u32::from(byte(bytes, 3)) * 8,
            learn_limit: usize::from(byte(bytes, 4) % 5),
            flood_limit: None,
            isolated: kind == PortKind::Access && byte(bytes, 4) & 0x80 != 0,
        };
        let result = self.bridge.add_port(PortId(port), config);
        let possible = self.model.networks.contains_key(&net) && port < switch::bridge::MAX_IDS;
        assert_eq!(result.is_ok(), possible, "add_port({port}) on network {net}");
        if possible {
            self.model.ports.insert(port, (config, true));
            self.model.members.get_mut(&net).expect("network").push(port);
            assert_eq!(self.bridge.port_learned(PortId(port)), Ok(0), "a new port starts with nothing learned");
        }
        !possible
    }

    /// Tables, membership and learned counts against the model.
    fn check_tables(&mut self) {
        let nets: Vec<u32> = self.bridge.network_ids().map(|n| n.0).collect();
        assert_eq!(nets, self.model.networks.keys().copied().collect::<Vec<_>>(), "networks");
        let mut learned: BTreeMap<u32, usize> = BTreeMap::new();
        for (&net, &limit) in &self.model.networks {
            let members = self.bridge.network_ports(NetworkId(net)).expect("network").to_vec();
            let members: Vec<u32> = members.iter().map(|p| p.0).collect();
            assert_eq!(members, self.model.members[&net], "members of network {net}");
            let records = self.records(net);
            assert!(records.len() <= limit, "network {net} holds {} entries, limit {limit}", records.len());
            let max = self.out.max_fdb.entry(net).or_default();
            *max = (*max).max(records.len());
            let mut macs = BTreeSet::new();
            for r in &records {
                assert!(macs.insert(r.mac), "{} twice in network {net}", r.mac);
                assert!(r.mac.is_valid_station(), "{} is not a station", r.mac);
                assert!(self.model.members[&net].contains(&r.port.0), "entry {r:?} on a port not in network {net}");
                let fresh = r.is_static || r.age < self.model.aging;
                let found = self.bridge.lookup(NetworkId(net), r.mac, self.now);
                assert_eq!(found, fresh.then_some(r.port), "lookup of {r:?} (aging {:?})", self.model.aging);
                if !r.is_static {
                    *learned.entry(r.port.0).or_default() += 1;
                }
            }
        }
        for (&port, &(config, _)) in &self.model.ports {
            let count = self.bridge.port_learned(PortId(port)).expect("port");
            assert_eq!(count, learned.get(&port).copied().unwrap_or(0), "learned count of port {port}");
            assert!(count <= config.learn_limit, "port {port} learned {count}, limit {}", config.learn_limit);
        }
    }

    fn records(&self, net: u32) -> Vec<FdbRecord> {
        self.bridge.fdb_records(NetworkId(net), self.now).unwrap_or_default()
    }

    fn fdb_len(&self, net: u32) -> usize {
        self.bridge.fdb_len(NetworkId(net)).unwrap_or(0)
    }

    fn aged_out(&self, net: u32) -> u64 {
        self.bridge.learning_counters(NetworkId(net)).map(|c| c.aged_out).unwrap_or(0)
    }

    fn counters(&self) -> BTreeMap<u32, PortCounters> {
        self.model.ports.keys().map(|&p| (p, self.bridge.port_counters(PortId(p)).expect("port"))).collect()
    }

    fn learning(&self) -> BTreeMap<u32, (u64, u64, u64, u64)> {
        self.model
            .networks
            .keys()
            .map(|&n| {
                let c = self.bridge.learning_counters(NetworkId(n)).expect("network");
                (n, (c.learned, c.station_moves, c.table_full, c.port_limit))
            })
            .collect()
    }

    /// (network, MAC) → port of every static entry.
    fn statics(&self) -> BTreeMap<(u32, MacAddr), u32> {
        let mut out = BTreeMap::new();
        for &net in self.model.networks.keys() {
            for r in self.records(net).into_iter().filter(|r| r.is_static) {
                out.insert((net, r.mac), r.port.0);
            }
        }
        out
    }

    /// Everything a refused call must leave as it was.
    fn snapshot(&self) -> Snapshot {
        self.model
            .networks
            .keys()
            .map(|&net| {
                let mut entries: Vec<_> = self.records(net).iter().map(|r| (r.mac, r.port.0, r.is_static)).collect();
                entries.sort();
                let learned = self.model.members[&net]
                    .iter()
                    .map(|&p| (p, self.bridge.port_learned(PortId(p)).expect("port")))
                    .collect();
                (net, entries, learned)
            })
            .collect()
    }
}

/// The Ethernet view and MAC helpers on arbitrary bytes.
fn check_wire(bytes: &[u8]) {
    let tagged = bytes.len() >= ETHERNET_HEADER_LEN && bytes[12..14] == [0x81, 0x00];
    let needed = if tagged { ETHERNET_HEADER_LEN + VLAN_TAG_LEN } else { ETHERNET_HEADER_LEN };
    let Ok(frame) = EthernetFrame::new_checked(bytes) else {
        assert!(bytes.len() < needed, "a {}-byte frame (tagged: {tagged}) was refused", bytes.len());
        return;
    };
    assert!(bytes.len() >= needed, "a {}-byte frame (tagged: {tagged}) was accepted", bytes.len());
    assert_eq!(frame.header_len(), needed);
    assert_eq!(frame.payload(), &bytes[needed..]);
    assert_eq!(frame.is_tagged(), tagged);
    assert_eq!(frame.vlan().is_some(), tagged);
    if let Some(tag) = frame.vlan() {
        let tci = u16::from_be_bytes([bytes[14], bytes[15]]);
        assert_eq!(((tag.pcp as u16) << 13) | (u16::from(tag.dei) << 12) | tag.vid, tci);
        assert_eq!(frame.ethertype(), EtherType(u16::from_be_bytes([bytes[16], bytes[17]])));
    } else {
        assert_eq!(frame.ethertype(), frame.outer_ethertype());
    }
    assert_eq!(frame.destination().0, bytes[0..6]);
    assert_eq!(Some(frame.source()), MacAddr::from_bytes(&bytes[6..]));
    for mac in [frame.destination(), frame.source()] {
        assert_eq!(MacAddr::from_u64(mac.to_u64()), mac);
        assert_eq!(MacAddr::from_str(&mac.to_string()), Ok(mac));
        assert_eq!(mac.is_valid_station(), !mac.is_group() && !mac.is_zero());
        assert!(!mac.is_reserved_group() || mac.is_group());
    }
    // The text parser on the payload, as text.
    if let Ok(text) = std::str::from_utf8(frame.payload())
        && let Ok(mac) = MacAddr::from_str(text)
    {
        assert_eq!(MacAddr::from_str(&mac.to_string()), Ok(mac), "{text:?}");
    }
}
