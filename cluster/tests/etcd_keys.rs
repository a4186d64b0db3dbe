//! The key coordinator's store operations against a real etcd: create-if-
//! absent key records, compare-and-set of `keycurrent`, acknowledgements
//! under the lease, retiring and forgetting; and two nodes running the
//! coordinator ([`cluster::keys::plan`]) through those operations until both
//! send with one epoch, then a node leaving and getting no newer key.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::keys::{KeyAction, KeyInputs, KeyRecord, members, plan};
use cluster::keys_store::rotation_record;
use cluster::{Cluster, EndpointRecord};
use common::{Etcd, require_etcd, wait_until};
use crypto::Vni;
use crypto::sealed::NodeKeypair;

const LONG: Duration = Duration::from_secs(20);
const NET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn vni() -> Vni {
    Vni::new(4200).unwrap()
}

/// A client for node `name` whose node record carries `keypair`'s public key.
fn node(etcd: &Etcd, name: &str, octet: u8, keypair: &NodeKeypair) -> Cluster {
    let mut config = etcd.config(name, octet);
    config.public_key = Some(keypair.public().to_hex());
    Cluster::start(config).unwrap()
}

fn endpoint(node: &str, id: &str) -> EndpointRecord {
    EndpointRecord {
        network_id: NET.into(),
        endpoint_id: id.into(),
        node: node.into(),
        name: id.into(),
        aliases: vec![],
        mac: "02:42:0a:00:00:02".into(),
        ipv4: None,
        ipv6: None,
        service: None,
    }
}

/// One simulated node: its client, keypair and datapath key state.
struct Node {
    client: Cluster,
    keypair: NodeKeypair,
    installed: BTreeSet<u32>,
    send: Option<u32>,
}

impl Node {
    /// One coordinator run, carrying out the actions through the store.
    fn step(&mut self) {
        let mirror = self.client.mirror();
        let members = members(NET, mirror.nodes.values(), mirror.endpoints.values()).keys;
        let store = mirror.keys().network(NET);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let inputs = KeyInputs {
            network_id: NET,
            vni: vni(),
            local: self.client.node(),
            keypair: &self.keypair,
            members: &members,
            store: &store,
            installed: &self.installed,
            send_epoch: self.send,
            now_unix: now,
            rotation_period: None,
        };
        for action in plan(&inputs) {
            let done = match action {
                KeyAction::Install { epoch, .. } => {
                    self.installed.insert(epoch);
                    Ok(true)
                }
                KeyAction::SwitchSend { epoch } => {
                    self.send = Some(epoch);
                    Ok(true)
                }
                KeyAction::Ack { epoch } => self.client.ack_key(NET, epoch).map(|()| true),
                KeyAction::SetCurrent { epoch, previous } => self.client.set_key_current(NET, epoch, previous),
                KeyAction::Publish { record, .. } => self.client.publish_key(NET, record),
                KeyAction::Retire { epoch } => self.client.retire_key(NET, epoch).map(|()| true),
                KeyAction::Unopenable { epoch, error } => panic!("epoch {epoch} does not open: {error}"),
            };
            if !matches!(done, Ok(true)) {
                break;
            }
        }
    }
}

#[test]
fn key_records_are_created_once_and_the_current_epoch_only_moves_from_what_it_was() {
    if !require_etcd("key_records_are_created_once_and_the_current_epoch_only_moves_from_what_it_was") {
        return;
    }
    let etcd = Etcd::start();
    let (ka, kb) = (NodeKeypair::generate().unwrap(), NodeKeypair::generate().unwrap());
    let a = node(&etcd, "a", 1, &ka);
    let b = node(&etcd, "b", 2, &kb);
    let members = BTreeMap::from([("a".to_owned(), ka.public()), ("b".to_owned(), kb.public())]);
    let record = |by: &str| rotation_record(NET, vni(), by, &members, &Default::default(), 1).unwrap();

    // Create-if-absent: the first record of an epoch wins, the second is refused.
    let first: KeyRecord = record("a");
    assert_eq!(a.publish_key(NET, first.clone()), Ok(true));
    assert_eq!(b.publish_key(NET, record("b")), Ok(false), "a second record of epoch 1");
    wait_until(LONG, "b to see a's record", || {
        (b.mirror().keys().network(NET).records.get(&1) == Some(&first)).then_some(())
    });
    assert!(a.publish_key("bad/id", first.clone()).is_err(), "a network id with '/'");

    // Compare-and-set: from absent, then only from the value it holds.
    assert_eq!(a.set_key_current(NET, 1, None), Ok(true));
    assert_eq!(b.set_key_current(NET, 1, None), Ok(false), "it is no longer absent");
    assert_eq!(b.set_key_current(NET, 2, Some(1)), Ok(true));
    assert_eq!(a.set_key_current(NET, 1, Some(1)), Ok(false), "moved back from a stale view");
    wait_until(LONG, "current epoch 2", || (a.mirror().keys().network(NET).current == Some(2)).then_some(()));

    // Acknowledgements live under the node's lease: gone when it leaves.
    wait_until(LONG, "b registered", || b.ack_key(NET, 1).ok());
    a.ack_key(NET, 1).unwrap();
    let both: BTreeSet<String> = ["a".into(), "b".into()].into();
    wait_until(LONG, "both acks", || (a.mirror().keys().network(NET).acks.get(&1) == Some(&both)).then_some(()));
    b.leave().unwrap();
    let only_a: BTreeSet<String> = ["a".into()].into();
    wait_until(LONG, "b's ack to go with its lease", || {
        (a.mirror().keys().network(NET).acks.get(&1) == Some(&only_a)).then_some(())
    });
    assert!(b.ack_key(NET, 1).is_err(), "a node that left acknowledges nothing");

    // Retire: the record and its acks go; forget: everything of the network goes.
    a.retire_key(NET, 1).unwrap();
    wait_until(LONG, "epoch 1 retired", || {
        let keys = a.mirror().keys().network(NET);
        (keys.records.is_empty() && keys.acks.is_empty() && keys.current == Some(2)).then_some(())
    });
    a.forget_network_keys(NET).unwrap();
    wait_until(LONG, "the network's keys forgotten", || (a.mirror().keys().network_ids().count() == 0).then_some(()));
}

#[test]
fn two_nodes_agree_on_an_epoch_through_the_store_and_a_leaver_gets_no_newer_key() {
    if !require_etcd("two_nodes_agree_on_an_epoch_through_the_store_and_a_leaver_gets_no_newer_key") {
        return;
    }
    let etcd = Etcd::start();
    let mut nodes: Vec<Node> = ["a", "b"]
        .iter()
        .zip([1u8, 2])
        .map(|(name, octet)| {
            let keypair = NodeKeypair::generate().unwrap();
            let client = node(&etcd, name, octet, &keypair);
            Node { client, keypair, installed: BTreeSet::new(), send: None }
        })
        .collect();
    for n in &nodes {
        let name = n.client.node().to_owned();
        wait_until(LONG, "registered", || n.client.publish_endpoint(endpoint(&name, &format!("e-{name}"))).ok());
    }
    // Both run the coordinator until they send with the same, current epoch.
    let agreed = wait_until(LONG, "both nodes to send with the current epoch", || {
        for n in nodes.iter_mut() {
            n.step();
        }
        let current = nodes[0].client.mirror().keys().network(NET).current?;
        nodes.iter().all(|n| n.send == Some(current)).then_some(current)
    });
    let keys = nodes[0].client.mirror().keys().network(NET);
    assert_eq!(keys.records[&agreed].sealed.keys().collect::<Vec<_>>(), ["a", "b"]);

    // b leaves: a publishes the next epoch, sealed to a alone, and moves to it.
    let b = nodes.pop().unwrap();
    b.client.leave().unwrap();
    let a = &mut nodes[0];
    let next = wait_until(LONG, "a new epoch without b", || {
        a.step();
        let keys = a.client.mirror().keys().network(NET);
        let current = keys.current.filter(|&c| c > agreed)?;
        (a.send == Some(current)).then_some(current)
    });
    let keys = a.client.mirror().keys().network(NET);
    assert_eq!(keys.records[&next].sealed.keys().collect::<Vec<_>>(), ["a"], "{keys:?}");
    assert!(!keys.records[&next].sealed.contains_key("b"));
}
