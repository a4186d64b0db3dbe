//! The rotation coordinator, decision by decision, then as a whole: nodes
//! carrying out its actions against a simulated store (create-if-absent
//! publishes, stale views, random order) with real installed-key crypto,
//! checking after every single action that established members lose no
//! packet.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crypto::NetworkCrypto;

use super::*;
use crate::schema::{EndpointRecord, NodeRecord};

const NET: &str = "7f3c9a0e5b1d24c68e0f7a3b9c1d5e2f7f3c9a0e5b1d24c68e0f7a3b9c1d5e2f";
const PREFIX: &str = "/vswitch/v1";
const T0: u64 = 1_800_000_000;

fn vni() -> Vni {
    Vni::new(4096).unwrap()
}

/// A node's keypair, the same for a name every time.
fn keypair(name: &str) -> NodeKeypair {
    let mut bytes = [0u8; 32];
    for (b, c) in bytes.iter_mut().zip(name.bytes().cycle()) {
        *b = c;
    }
    bytes[31] = name.len() as u8;
    NodeKeypair::from_secret_bytes(bytes)
}

fn members_of(names: &[&str]) -> BTreeMap<String, NodePublicKey> {
    names.iter().map(|n| (n.to_string(), keypair(n).public())).collect()
}

/// A record of `epoch` published by `publisher`, sealed to `to`, with its key.
fn record(epoch: u32, publisher: &str, to: &[&str]) -> (KeyRecord, NetworkKey) {
    let key = NetworkKey::generate(vni(), epoch).unwrap();
    let sealed = to
        .iter()
        .map(|n| (n.to_string(), BASE64.encode(sealed::seal(&key, NET, &keypair(n).public()).unwrap())))
        .collect();
    (KeyRecord { epoch, publisher: publisher.into(), published_unix: T0, sealed }, key)
}

/// The plan of `local` with the given view.
struct View<'a> {
    local: &'a str,
    members: BTreeMap<String, NodePublicKey>,
    store: NetworkKeys,
    installed: BTreeSet<u32>,
    send_epoch: Option<u32>,
    now: u64,
    period: Option<Duration>,
}

impl<'a> View<'a> {
    fn new(local: &'a str, names: &[&str], store: NetworkKeys) -> View<'a> {
        View {
            local,
            members: members_of(names),
            store,
            installed: BTreeSet::new(),
            send_epoch: None,
            now: T0,
            period: None,
        }
    }

    fn plan(&self) -> Vec<KeyAction> {
        let keypair = keypair(self.local);
        plan(&KeyInputs {
            network_id: NET,
            vni: vni(),
            local: self.local,
            keypair: &keypair,
            members: &self.members,
            store: &self.store,
            installed: &self.installed,
            send_epoch: self.send_epoch,
            now_unix: self.now,
            rotation_period: self.period,
        })
    }
}

/// A compact form of actions for comparisons.
fn kinds(actions: &[KeyAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            KeyAction::Install { epoch, .. } => format!("install {epoch}"),
            KeyAction::SwitchSend { epoch } => format!("switch {epoch}"),
            KeyAction::Ack { epoch } => format!("ack {epoch}"),
            KeyAction::SetCurrent { epoch, .. } => format!("current {epoch}"),
            KeyAction::Publish { record, .. } => format!("publish {}", record.epoch),
            KeyAction::Retire { epoch } => format!("retire {epoch}"),
            KeyAction::Unopenable { epoch, .. } => format!("unopenable {epoch}"),
        })
        .collect()
}

fn published(actions: &[KeyAction]) -> (&KeyRecord, &PublishReason) {
    actions
        .iter()
        .find_map(|a| match a {
            KeyAction::Publish { record, reason } => Some((record, reason)),
            _ => None,
        })
        .expect("a publish")
}

fn store_with(records: Vec<KeyRecord>, current: Option<u32>, acks: &[(u32, &[&str])]) -> NetworkKeys {
    NetworkKeys {
        records: records.into_iter().map(|r| (r.epoch, r)).collect(),
        acks: acks.iter().map(|(e, n)| (*e, n.iter().map(|s| s.to_string()).collect())).collect(),
        current,
    }
}

#[test]
fn only_the_lowest_named_member_publishes_the_first_key_sealed_to_every_member() {
    let names = ["node-b", "node-a", "node-c"];
    let view = View::new("node-a", &names, NetworkKeys::default());
    let actions = view.plan();
    assert_eq!(kinds(&actions), ["publish 1"]);
    let (record, reason) = published(&actions);
    assert_eq!(*reason, PublishReason::First);
    assert_eq!((record.epoch, record.publisher.as_str(), record.published_unix), (1, "node-a", T0));
    assert_eq!(record.sealed.keys().collect::<Vec<_>>(), ["node-a", "node-b", "node-c"]);
    // Each member opens its own entry, all to the same key; none opens another's.
    let keys: Vec<NetworkKey> = names
        .iter()
        .map(|n| {
            let blob = record.sealed_for(n).unwrap();
            assert!(
                sealed::open(&blob, NET, vni(), 1, &keypair(if *n == "node-a" { "node-b" } else { "node-a" })).is_err()
            );
            sealed::open(&blob, NET, vni(), 1, &keypair(n)).unwrap()
        })
        .collect();
    let mut a = NetworkCrypto::with_installed_keys(vni(), 1);
    let mut b = NetworkCrypto::with_installed_keys(vni(), 1);
    a.install(keys[0].clone()).unwrap();
    b.install(keys[2].clone()).unwrap();
    let mut packet = Vec::new();
    a.seal(0, b"x", &mut packet).unwrap();
    b.open(&mut packet).expect("the same key");

    assert!(View::new("node-b", &names, NetworkKeys::default()).plan().is_empty(), "not the publisher");
    assert!(View::new("node-z", &names, NetworkKeys::default()).plan().is_empty(), "not a member");
    // The record as stored: { epoch, publisher, published_unix, sealed }.
    let json: serde_json::Value = serde_json::from_slice(&record.to_json()).unwrap();
    assert_eq!(json["epoch"], 1);
    assert!(json["sealed"]["node-b"].as_str().unwrap().len() > 100);
}

#[test]
fn members_install_and_acknowledge_what_was_sealed_to_them_once() {
    let (r1, _) = record(1, "a", &["a", "b"]);
    let mut view = View::new("b", &["a", "b"], store_with(vec![r1.clone()], None, &[]));
    let actions = view.plan();
    assert_eq!(kinds(&actions), ["install 1", "ack 1"]);
    let KeyAction::Install { key, .. } = &actions[0] else { unreachable!() };
    assert_eq!((key.vni(), key.epoch()), (vni(), 1));
    // Installed: only the acknowledgement is left; acknowledged: nothing.
    view.installed.insert(1);
    assert_eq!(kinds(&view.plan()), ["ack 1"]);
    view.store.acks.insert(1, ["b".to_owned()].into());
    assert!(view.plan().is_empty());
    // A record not sealed to us is not ours to install.
    let mut view = View::new("c", &["a", "b", "c"], store_with(vec![r1.clone()], None, &[]));
    view.members.remove("a");
    assert!(!kinds(&view.plan()).iter().any(|k| k.starts_with("install")));
    // Garbage under our name is reported, not installed.
    let mut bad = r1;
    bad.sealed.insert("b".into(), "not base64!".into());
    let view = View::new("b", &["a", "b"], store_with(vec![bad.clone()], None, &[]));
    assert!(matches!(view.plan()[..], [KeyAction::Unopenable { epoch: 1, error: UnopenableKey::NotBase64 }]));
    bad.sealed.insert("b".into(), bad.sealed["a"].clone());
    let view = View::new("b", &["a", "b"], store_with(vec![bad], None, &[]));
    let plan = view.plan();
    assert!(
        matches!(
            plan[..],
            [KeyAction::Unopenable { error: UnopenableKey::Sealed(SealedKeyError::WrongRecipient), .. }]
        ),
        "{plan:?}"
    );
}

#[test]
fn the_current_epoch_is_set_only_after_every_member_acknowledged() {
    let (r1, _) = record(1, "a", &["a", "b", "c"]);
    let names = ["a", "b", "c"];
    let view = View::new("a", &names, store_with(vec![r1.clone()], None, &[(1, &["a", "b"])]));
    let mut view = view;
    view.installed.insert(1);
    assert!(view.plan().is_empty(), "c has not acknowledged: {:?}", kinds(&view.plan()));
    view.store.acks.insert(1, ["a", "b", "c"].map(String::from).into());
    assert_eq!(kinds(&view.plan()), ["current 1"]);
    // A member that is gone (its acknowledgement went with its lease) is not waited for.
    view.store.acks.insert(1, ["a", "b"].map(String::from).into());
    view.members.remove("c");
    assert_eq!(kinds(&view.plan()), ["current 1"]);
    // A member the epoch was not sealed to (it joined later) is not waited
    // for either: it gets the next epoch.
    let mut view = View::new("a", &["a", "b", "c", "d"], store_with(vec![r1], None, &[(1, &["a", "b", "c"])]));
    view.installed.insert(1);
    assert_eq!(kinds(&view.plan()), ["current 1"]);
    // Non-publishers never set it.
    let mut b = View::new("b", &names, view.store.clone());
    b.installed.insert(1);
    assert!(b.plan().is_empty());
}

#[test]
fn members_switch_on_keycurrent_before_acknowledging_the_next_epoch() {
    let (r1, _) = record(1, "a", &["a", "b"]);
    let (r2, _) = record(2, "a", &["a", "b"]);
    let mut view = View::new("b", &["a", "b"], store_with(vec![r1, r2], Some(1), &[(1, &["a", "b"])]));
    assert_eq!(kinds(&view.plan()), ["install 1", "install 2", "switch 1", "ack 2"]);
    view.installed = [1, 2].into();
    view.send_epoch = Some(1);
    assert_eq!(kinds(&view.plan()), ["ack 2"]);
    view.store.acks.insert(2, ["a", "b"].map(String::from).into());
    view.store.current = Some(2);
    assert_eq!(kinds(&view.plan()), ["switch 2"]);
    view.send_epoch = Some(2);
    assert!(view.plan().is_empty());
    // Without the current epoch's key there is nothing to switch to.
    let mut view = View::new("b", &["a", "b"], store_with(vec![record(3, "a", &["a"]).0], Some(3), &[]));
    view.send_epoch = Some(2);
    assert!(view.plan().is_empty());
}

#[test]
fn a_member_that_joins_gets_the_next_epoch() {
    let (r1, _) = record(1, "a", &["a", "b"]);
    let mut view = View::new("a", &["a", "b", "c"], store_with(vec![r1], Some(1), &[]));
    view.installed.insert(1);
    view.send_epoch = Some(1);
    let actions = view.plan();
    assert_eq!(kinds(&actions), ["publish 2"]);
    let (record, reason) = published(&actions);
    assert_eq!(*reason, PublishReason::Joined(vec!["c".into()]));
    assert_eq!(record.sealed.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    let c = View::new(
        "c",
        &["a", "b", "c"],
        store_with(vec![view.store.records[&1].clone(), record.clone()], Some(1), &[]),
    );
    assert_eq!(kinds(&c.plan()), ["install 2", "ack 2"]);
    // While an epoch is pending nothing more is published.
    view.store.records.insert(2, record.clone());
    view.members.insert("d".into(), keypair("d").public());
    view.installed.insert(2);
    assert_eq!(kinds(&view.plan()), ["ack 2"]);
}

#[test]
fn a_member_whose_public_key_changed_is_resealed_to() {
    let (r1, _) = record(1, "a", &["a", "b"]);
    let mut view = View::new("a", &["a", "b"], store_with(vec![r1], Some(1), &[]));
    view.installed.insert(1);
    view.send_epoch = Some(1);
    assert!(view.plan().is_empty(), "stable");
    let fresh = NodeKeypair::generate().unwrap();
    view.members.insert("b".into(), fresh.public());
    let actions = view.plan();
    assert_eq!(*published(&actions).1, PublishReason::Joined(vec!["b".into()]));
    let blob = published(&actions).0.sealed_for("b").unwrap();
    assert!(sealed::open(&blob, NET, vni(), 2, &fresh).is_ok());
    // A member whose key cannot be sealed to does not make every run publish.
    view.members.insert("b".into(), NodePublicKey::from_bytes([0; 32]));
    assert!(view.plan().is_empty(), "{:?}", kinds(&view.plan()));
}

#[test]
fn a_member_that_left_gets_no_newer_key() {
    let (r1, _) = record(1, "a", &["a", "b", "c"]);
    let mut view = View::new("a", &["a", "b"], store_with(vec![r1], Some(1), &[]));
    view.installed.insert(1);
    view.send_epoch = Some(1);
    let actions = view.plan();
    assert_eq!(kinds(&actions), ["publish 2"]);
    let (record, reason) = published(&actions);
    assert_eq!(*reason, PublishReason::Left(vec!["c".into()]));
    assert!(!record.sealed.contains_key("c"), "{:?}", record.sealed.keys());
    // c (no longer a member) does nothing, and nothing in the record opens for it.
    let mut store = view.store.clone();
    store.records.insert(2, record.clone());
    assert!(View::new("c", &["a", "b"], store).plan().is_empty());
    for blob in record.sealed.keys().map(|n| record.sealed_for(n).unwrap()) {
        assert!(sealed::open(&blob, NET, vni(), 2, &keypair("c")).is_err());
    }
}

#[test]
fn the_publisher_rotates_when_the_period_has_passed_and_retires_old_epochs() {
    let names = ["a", "b"];
    let (r1, _) = record(1, "a", &names);
    let (r2, _) = record(2, "a", &names);
    let (r3, _) = record(3, "a", &names);
    let store = store_with(vec![r1, r2, r3], Some(3), &[(1, &["a"]), (2, &["a", "b"]), (3, &["a", "b"])]);
    let mut view = View::new("a", &names, store);
    view.installed = [2, 3].into();
    view.send_epoch = Some(3);
    view.period = Some(Duration::from_secs(3600));
    view.now = T0 + 3599;
    assert_eq!(kinds(&view.plan()), ["retire 1"]);
    view.now = T0 + 3600;
    let actions = view.plan();
    assert_eq!(kinds(&actions), ["publish 4", "retire 1"]);
    assert_eq!(*published(&actions).1, PublishReason::RotationDue);
    assert_eq!(published(&actions).0.published_unix, T0 + 3600);
    // No period: no rotation by time.
    view.period = None;
    assert_eq!(kinds(&view.plan()), ["retire 1"]);
    // A lost current record is replaced.
    view.store.records.remove(&3);
    assert_eq!(*published(&view.plan()).1, PublishReason::Missing);
}

#[test]
fn the_key_mirror_follows_watch_events_and_skips_bad_values() {
    let mut m = KeyMirror::default();
    let (r1, _) = record(1, "a", &["a", "b"]);
    let put = |key: String, value: Vec<u8>| KvEvent::Put { key, value, mod_revision: 1 };
    let del = |key: String| KvEvent::Delete { key, mod_revision: 2 };
    assert!(m.apply(PREFIX, &put(record_key(PREFIX, NET, 1), r1.to_json())));
    assert!(m.apply(PREFIX, &put(ack_key(PREFIX, NET, 1, "b"), Vec::new())));
    assert!(m.apply(PREFIX, &put(current_key(PREFIX, NET), b"1".to_vec())));
    let keys = m.network(NET);
    assert_eq!(keys.records[&1], r1);
    assert_eq!(keys.acks[&1], ["b".to_owned()].into());
    assert_eq!(keys.current, Some(1));
    assert_eq!(m.network_ids().collect::<Vec<_>>(), [NET]);
    // Bad values are skipped; keys elsewhere are not ours.
    assert!(m.apply(PREFIX, &put(record_key(PREFIX, NET, 2), b"{".to_vec())));
    assert!(m.apply(PREFIX, &put(record_key(PREFIX, NET, 3), r1.to_json())), "epoch 1's record under 3");
    assert!(m.apply(PREFIX, &put(current_key(PREFIX, NET), b"two".to_vec())));
    assert_eq!(m.network(NET), keys);
    for other in [
        format!("{PREFIX}/nodes/a"),
        format!("{PREFIX}/keys/{NET}"),
        format!("{PREFIX}/keys/{NET}/x"),
        format!("{PREFIX}/keys/{NET}/1/extra"),
        format!("{PREFIX}/keyacks/{NET}/1/"),
        format!("/other{PREFIX}/keys/{NET}/1"),
    ] {
        assert!(!m.apply(PREFIX, &put(other.clone(), r1.to_json())), "{other}");
    }
    // Deletions (a lease expired, an epoch retired).
    assert!(m.apply(PREFIX, &del(ack_key(PREFIX, NET, 1, "b"))));
    assert!(m.network(NET).acks.is_empty());
    m.apply(PREFIX, &del(record_key(PREFIX, NET, 1)));
    m.apply(PREFIX, &del(current_key(PREFIX, NET)));
    assert_eq!(m.network(NET), NetworkKeys::default());
    assert_eq!(m.network_ids().count(), 0, "nothing left behind");
    assert!(acks_prefix(PREFIX, NET, 1).ends_with(&format!("/keyacks/{NET}/1/")));
}

#[test]
fn members_are_live_nodes_with_endpoints_on_the_network_and_a_usable_key() {
    let node = |name: &str, key: Option<String>| NodeRecord {
        name: name.into(),
        vtep: "192.0.2.1:4789".parse().unwrap(),
        version: "0".into(),
        started_unix: T0,
        public_key: key,
    };
    let endpoint = |node: &str, network: &str, id: &str| EndpointRecord {
        network_id: network.into(),
        endpoint_id: id.into(),
        node: node.into(),
        name: id.into(),
        aliases: Vec::new(),
        mac: "02:42:0a:00:00:02".into(),
        ipv4: None,
        ipv6: None,
        service: None,
    };
    let hex = |n: &str| Some(keypair(n).public().to_hex());
    let nodes = [
        node("a", hex("a")),
        node("b", hex("b")),
        node("c", hex("c")),
        node("d", None),
        node("e", Some("zz".into())),
        node("f", Some("00".repeat(32))),
    ];
    let endpoints = [
        endpoint("a", NET, "1"),
        endpoint("a", NET, "2"),
        endpoint("b", NET, "3"),
        endpoint("c", "other", "4"),
        endpoint("d", NET, "5"),
        endpoint("e", NET, "6"),
        endpoint("f", NET, "7"),
        endpoint("gone", NET, "8"),
    ];
    let got = members(NET, &nodes, &endpoints);
    assert_eq!(got.keys, members_of(&["a", "b"]));
    // Left out, each with why; c (another network's) and gone (no node record) are no one's business.
    let why: Vec<(&str, &Exclusion)> = got.excluded.iter().map(|(n, e)| (n.as_str(), e)).collect();
    assert!(
        matches!(
            why[..],
            [("d", Exclusion::NoPublicKey), ("e", Exclusion::BadPublicKey(_)), ("f", Exclusion::LowOrderKey)]
        ),
        "{why:?}"
    );
}

// ------------------------------------------------------------ simulation

/// One node: its datapath's keys for the network (real crypto).
struct Node {
    name: String,
    keypair: NodeKeypair,
    crypto: NetworkCrypto,
    /// Every epoch this node ever installed.
    ever: BTreeSet<u32>,
    /// Actions planned and not yet carried out (a slow node), with the view
    /// of the store they were planned from.
    queue: std::collections::VecDeque<(KeyAction, NetworkKeys)>,
}

/// The store, with create-if-absent publishes.
#[derive(Default)]
struct Store {
    keys: NetworkKeys,
    publishes_refused: usize,
}

impl Store {
    /// Carries out one store action of `node`; false if refused.
    fn apply(&mut self, node: &str, action: &KeyAction) -> bool {
        match action {
            KeyAction::Publish { record, .. } => {
                if self.keys.records.contains_key(&record.epoch) {
                    self.publishes_refused += 1;
                    return false;
                }
                self.keys.records.insert(record.epoch, record.clone());
            }
            KeyAction::Ack { epoch } => {
                self.keys.acks.entry(*epoch).or_default().insert(node.to_owned());
            }
            KeyAction::SetCurrent { epoch, previous } => {
                if self.keys.current != *previous {
                    return false;
                }
                self.keys.current = Some(*epoch);
            }
            KeyAction::Retire { epoch } => {
                self.keys.records.remove(epoch);
                self.keys.acks.remove(epoch);
            }
            _ => unreachable!("not a store action"),
        }
        true
    }
}

struct Sim {
    nodes: Vec<Node>,
    store: Store,
    /// Member names as each node sees them (normally all the same).
    views: BTreeMap<String, BTreeSet<String>>,
    /// Members that must never lose a packet between themselves.
    stable: BTreeSet<String>,
    now: u64,
    period: Option<Duration>,
    rng: u64,
    packets: u64,
}

impl Sim {
    fn new(names: &[&str], seed: u64) -> Sim {
        let mut sim = Sim {
            nodes: Vec::new(),
            store: Store::default(),
            views: BTreeMap::new(),
            stable: BTreeSet::new(),
            now: T0,
            period: None,
            rng: seed | 1,
            packets: 0,
        };
        for n in names {
            sim.add_node(n);
        }
        sim.set_members(names);
        sim
    }

    fn add_node(&mut self, name: &str) {
        self.nodes.push(Node {
            name: name.into(),
            keypair: NodeKeypair::generate().unwrap(),
            crypto: NetworkCrypto::with_installed_keys(vni(), 0),
            ever: BTreeSet::new(),
            queue: Default::default(),
        });
    }

    /// Every node sees `names` as the members.
    fn set_members(&mut self, names: &[&str]) {
        let set: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        for node in &self.nodes {
            self.views.insert(node.name.clone(), set.clone());
        }
    }

    fn random(&mut self, below: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % below as u64) as usize
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// One round: every node whose queue is empty plans, from a view of
    /// the store that is sometimes stale (taken at the start of the round);
    /// then, in random order, every node carries out some of its queued
    /// actions (all, some or none: nodes are slow at random), dropping the
    /// rest of its queue when one is refused. Returns how many actions were
    /// carried out.
    fn round(&mut self) -> usize {
        let snapshot = self.store.keys.clone();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        for i in (1..order.len()).rev() {
            let j = self.random(i + 1);
            order.swap(i, j);
        }
        let mut done = 0;
        for i in order {
            if self.nodes[i].queue.is_empty() {
                let stale = self.random(2) == 0;
                let store_view = if stale { snapshot.clone() } else { self.store.keys.clone() };
                let node = &self.nodes[i];
                let members: BTreeMap<String, NodePublicKey> = self.views[&node.name]
                    .iter()
                    .map(|m| (m.clone(), self.nodes.iter().find(|n| &n.name == m).unwrap().keypair.public()))
                    .collect();
                let installed: BTreeSet<u32> = node.crypto.installed_epochs().into_iter().collect();
                let actions = plan(&KeyInputs {
                    network_id: NET,
                    vni: vni(),
                    local: &node.name,
                    keypair: &node.keypair,
                    members: &members,
                    store: &store_view,
                    installed: &installed,
                    send_epoch: node.crypto.send_epoch(),
                    now_unix: self.now,
                    rotation_period: self.period,
                });
                self.nodes[i].queue.extend(actions.into_iter().map(|a| (a, store_view.clone())));
            }
            let n = self.nodes[i].queue.len();
            let take = if self.random(3) == 0 { self.random(n + 1) } else { n };
            for _ in 0..take {
                let (action, store_view) = self.nodes[i].queue.pop_front().expect("queued");
                if self.execute(i, &action, &store_view) {
                    done += 1;
                    self.check_no_loss();
                } else {
                    self.nodes[i].queue.clear();
                    break;
                }
            }
        }
        done
    }

    /// Carries out one action of node `i`, planned from `store_view`.
    fn execute(&mut self, i: usize, action: &KeyAction, store_view: &NetworkKeys) -> bool {
        let name = self.nodes[i].name.clone();
        let node = &mut self.nodes[i];
        match action {
            KeyAction::Install { epoch, key } => {
                node.ever.insert(*epoch);
                node.crypto.install(key.clone()).is_ok()
            }
            KeyAction::SwitchSend { epoch } => {
                // Only on keycurrent: the store said so.
                assert_eq!(store_view.current, Some(*epoch));
                node.crypto.set_epoch(*epoch).is_ok()
            }
            KeyAction::Unopenable { epoch, error } => panic!("{name}: epoch {epoch}: {error}"),
            KeyAction::SetCurrent { epoch, previous } => {
                if self.store.keys.current == *previous {
                    // Only once every member it was sealed to holds it.
                    let record = &self.store.keys.records[epoch];
                    for n in &self.nodes {
                        if self.views[&name].contains(&n.name) && record.sealed.contains_key(&n.name) {
                            assert!(n.crypto.installed_epochs().contains(epoch), "{} lacks {epoch}", n.name);
                        }
                    }
                }
                self.store.apply(&name, action)
            }
            store_action => self.store.apply(&name, store_action),
        }
    }

    /// Every stable member that can send reaches every other.
    fn check_no_loss(&mut self) {
        let stable: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.stable.contains(&self.nodes[i].name)).collect();
        for &from in &stable {
            if !self.nodes[from].crypto.can_send() {
                continue;
            }
            let mut packet = Vec::new();
            self.nodes[from].crypto.seal(0, &self.packets.to_be_bytes(), &mut packet).unwrap();
            self.packets += 1;
            for &to in &stable {
                if to != from {
                    let opened = self.nodes[to].crypto.open(&mut packet.clone());
                    assert!(
                        opened.is_ok(),
                        "{} (epoch {:?}) -> {} (epoch {:?}, keys {:?}): {opened:?}",
                        self.nodes[from].name,
                        self.nodes[from].crypto.send_epoch(),
                        self.nodes[to].name,
                        self.nodes[to].crypto.send_epoch(),
                        self.nodes[to].crypto.installed_epochs()
                    );
                }
            }
        }
    }

    /// Rounds until nothing more happens.
    fn settle(&mut self) {
        for _ in 0..500 {
            if self.round() == 0 && self.nodes.iter().all(|n| n.queue.is_empty()) && self.round() == 0 {
                return;
            }
        }
        panic!("no steady state after 500 rounds: {:?}", self.store.keys);
    }

    /// Every member sends with the current epoch, and all reach each other.
    fn assert_converged(&mut self, members: &[&str]) -> u32 {
        let current = self.store.keys.current.expect("a current epoch");
        for m in members {
            assert_eq!(self.node(m).crypto.send_epoch(), Some(current), "{m}");
        }
        let saved = std::mem::replace(&mut self.stable, members.iter().map(|s| s.to_string()).collect());
        self.check_no_loss();
        self.stable = saved;
        current
    }
}

#[test]
fn simulated_nodes_agree_rotate_and_lose_nothing() {
    for seed in 1..=20 {
        let mut sim = Sim::new(&["n1", "n2", "n3"], seed);
        sim.settle();
        assert_eq!(sim.assert_converged(&["n1", "n2", "n3"]), 1, "seed {seed}");

        // Periodic rotation, twice, with established members checked after
        // every action.
        sim.stable = ["n1", "n2", "n3"].map(String::from).into();
        sim.period = Some(Duration::from_secs(600));
        for expected in [2, 3] {
            sim.now += 600;
            sim.settle();
            assert_eq!(sim.assert_converged(&["n1", "n2", "n3"]), expected, "seed {seed}");
        }
        assert!(
            sim.store.keys.records.keys().all(|&e| e >= 2),
            "old epochs retired: {:?}",
            sim.store.keys.records.keys()
        );
    }
}

#[test]
fn simulated_join_and_leave_keep_the_others_whole_and_the_leaver_out() {
    for seed in 1..=20 {
        let mut sim = Sim::new(&["n2", "n3", "n4"], seed);
        sim.settle();
        sim.stable = ["n2", "n3", "n4"].map(String::from).into();

        // n1 joins, and is the new publisher (lowest name).
        sim.add_node("n1");
        sim.set_members(&["n1", "n2", "n3", "n4"]);
        sim.settle();
        let joined = sim.assert_converged(&["n1", "n2", "n3", "n4"]);
        assert_eq!(joined, 2, "seed {seed}");

        // n3 leaves: the next epoch is not sealed to it, and it never
        // installs anything newer than it held.
        let held = sim.node("n3").ever.iter().max().copied().unwrap();
        sim.set_members(&["n1", "n2", "n4"]);
        sim.stable = ["n1", "n2", "n4"].map(String::from).into();
        sim.settle();
        let after = sim.assert_converged(&["n1", "n2", "n4"]);
        assert!(after > held, "seed {seed}: rotated past what n3 holds");
        assert_eq!(sim.node("n3").ever.iter().max().copied(), Some(held), "seed {seed}");
        for (epoch, record) in &sim.store.keys.records {
            if *epoch > held {
                assert!(!record.sealed.contains_key("n3"), "seed {seed}: epoch {epoch}");
            }
        }
        // n3 cannot read the current epoch.
        let mut packet = Vec::new();
        sim.nodes.iter_mut().find(|n| n.name == "n1").unwrap().crypto.seal(0, b"secret", &mut packet).unwrap();
        let n3 = sim.nodes.iter_mut().find(|n| n.name == "n3").unwrap();
        assert!(n3.crypto.open(&mut packet).is_err(), "seed {seed}");

        // The publisher leaves: the next lowest takes over and rotates it out.
        let n1_held = sim.node("n1").ever.iter().max().copied().unwrap();
        sim.set_members(&["n2", "n4"]);
        sim.stable = ["n2", "n4"].map(String::from).into();
        sim.settle();
        let last = sim.assert_converged(&["n2", "n4"]);
        assert!(last > n1_held, "seed {seed}");
        assert_eq!(sim.store.keys.records[&last].publisher, "n2");
    }
}

#[test]
fn concurrent_publishers_do_not_both_win() {
    for seed in 1..=10 {
        let mut sim = Sim::new(&["a", "b", "c"], seed);
        // b has not seen a yet: both think they are the publisher, and both
        // publish epoch 1 from the same (empty) view.
        sim.views.insert("b".into(), ["b", "c"].map(String::from).into());
        let keypair_of = |sim: &Sim, n: &str| sim.node(n).keypair.public();
        let mut publishes = Vec::new();
        for (local, view) in [("a", vec!["a", "b", "c"]), ("b", vec!["b", "c"])] {
            let members: BTreeMap<String, NodePublicKey> =
                view.iter().map(|m| (m.to_string(), keypair_of(&sim, m))).collect();
            let node = sim.node(local);
            let actions = plan(&KeyInputs {
                network_id: NET,
                vni: vni(),
                local,
                keypair: &node.keypair,
                members: &members,
                store: &NetworkKeys::default(),
                installed: &BTreeSet::new(),
                send_epoch: None,
                now_unix: T0,
                rotation_period: None,
            });
            assert_eq!(kinds(&actions), ["publish 1"], "{local}");
            publishes.push((local, actions.into_iter().next().unwrap()));
        }
        let (first, second) = if seed % 2 == 0 { (0, 1) } else { (1, 0) };
        assert!(sim.store.apply(publishes[first].0, &publishes[first].1));
        assert!(!sim.store.apply(publishes[second].0, &publishes[second].1), "the second create is refused");
        let winner = sim.store.keys.records[&1].publisher.clone();
        assert_eq!(winner, publishes[first].0);

        // b catches up; everyone installs the winner's key and converges.
        sim.set_members(&["a", "b", "c"]);
        sim.settle();
        let current = sim.assert_converged(&["a", "b", "c"]);
        assert!(current >= 1, "seed {seed}");
        assert_eq!(sim.store.publishes_refused, 1, "seed {seed}: no other race");
    }
}

#[test]
fn back_to_back_rotations_with_slow_members_lose_nothing() {
    for seed in 1..=12 {
        let mut sim = Sim::new(&["n1", "n2", "n3", "n4"], seed);
        sim.settle();
        // A new epoch is due as soon as one is current: members are often
        // still switching, installing or acknowledging when the next comes.
        sim.stable = ["n1", "n2", "n3", "n4"].map(String::from).into();
        sim.period = Some(Duration::from_secs(1));
        for _ in 0..150 {
            sim.now += 1;
            sim.round();
        }
        sim.period = None;
        sim.settle();
        let last = sim.assert_converged(&["n1", "n2", "n3", "n4"]);
        assert!(last > 10, "seed {seed}: only {last} epochs");
    }
}
