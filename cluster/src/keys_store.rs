//! The store side of overlay keys: the few operations the key coordinator's
//! actions ([`crate::keys::KeyAction`]) need, the key state of a [`Mirror`],
//! and a rotation asked for by hand (`network key rotate`).
//!
//! Kept apart from the client's own files so that the coordinator's store
//! writes live in one place:
//! - [`Cluster::publish_key`]: a key record, **create-if-absent**;
//! - [`Cluster::set_key_current`]: `keycurrent`, **compare-and-set**;
//! - [`Cluster::ack_key`]: this node's acknowledgement, under its lease;
//! - [`Cluster::retire_key`]: an old epoch's record and acknowledgements;
//! - [`Cluster::forget_network_keys`]: every key entry of a removed network.
//!
//! None of them ever sees a key in clear: records hold keys sealed to the
//! members' public keys.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto::sealed::{self, NodePublicKey};
use crypto::{NetworkKey, Vni};
use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp};

use crate::client::{Cluster, Ctx, store_error};
use crate::error::ClusterError;
use crate::keys::{
    ACKS_DIR, CURRENT_DIR, KEYS_DIR, KeyMirror, KeyRecord, NetworkKeys, ack_key, acks_prefix, current_key, record_key,
};
use crate::layout::prefix_range_end;
use crate::mirror::{KvEvent, Mirror};

/// A network id usable in a key: non-empty, without `/`.
fn check_network_id(network_id: &str) -> Result<(), ClusterError> {
    if network_id.is_empty() || network_id.contains('/') {
        return Err(ClusterError::Conflict(format!("bad network id {network_id:?}")));
    }
    Ok(())
}

impl Mirror {
    /// The overlay key state the mirror holds (key records, acknowledgements,
    /// current epochs), which it keeps uninterpreted in [`Mirror::other`].
    pub fn keys(&self) -> KeyMirror {
        let mut keys = KeyMirror::default();
        for (rest, value) in &self.other {
            let interesting = [KEYS_DIR, ACKS_DIR, CURRENT_DIR]
                .iter()
                .any(|dir| rest.strip_prefix(dir).is_some_and(|r| r.starts_with('/')));
            if interesting {
                // `other` is keyed relative to the prefix: an empty prefix
                // makes the key whole again for the key mirror's parser.
                let event = KvEvent::Put { key: format!("/{rest}"), value: value.clone(), mod_revision: 0 };
                keys.apply("", &event);
            }
        }
        keys
    }
}

impl Cluster {
    /// Writes `record` at `P/keys/NETWORK_ID/EPOCH` if nothing is there
    /// (no lease: an epoch's key outlives its publisher). `Ok(false)` when
    /// the key exists: another node published this epoch first, and its
    /// record is the one everybody installs.
    pub fn publish_key(&self, network_id: &str, record: KeyRecord) -> Result<bool, ClusterError> {
        check_network_id(network_id)?;
        let network_id = network_id.to_owned();
        self.call("publish key", move |ctx: Ctx| async move {
            let key = record_key(ctx.prefix(), &network_id, record.epoch);
            let txn = Txn::new()
                .when(vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put(key.as_str(), record.to_json(), None)]);
            let done = ctx.kv().txn(txn).await.map_err(|e| store_error("publish key", e))?;
            Ok(done.succeeded())
        })
    }

    /// Sets `P/keycurrent/NETWORK_ID` to `epoch` only if it still holds
    /// `previous` (is absent for `None`): a publisher that lost its role
    /// meanwhile never moves the epoch back. `Ok(false)` when the compare
    /// failed (nothing written).
    pub fn set_key_current(&self, network_id: &str, epoch: u32, previous: Option<u32>) -> Result<bool, ClusterError> {
        check_network_id(network_id)?;
        let network_id = network_id.to_owned();
        self.call("set current key epoch", move |ctx: Ctx| async move {
            let key = current_key(ctx.prefix(), &network_id);
            let compare = match previous {
                Some(p) => Compare::value(key.as_str(), CompareOp::Equal, p.to_string()),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when(vec![compare]).and_then(vec![TxnOp::put(key.as_str(), epoch.to_string(), None)]);
            let done = ctx.kv().txn(txn).await.map_err(|e| store_error("set current key epoch", e))?;
            Ok(done.succeeded())
        })
    }

    /// Writes this node's acknowledgement of `epoch`
    /// (`P/keyacks/NETWORK_ID/EPOCH/NODE`, empty) under the node's lease: it
    /// vanishes with the node. Unavailable while the node is not registered
    /// (the coordinator acknowledges again on its next run, also after a
    /// lost lease took the acknowledgement away).
    pub fn ack_key(&self, network_id: &str, epoch: u32) -> Result<(), ClusterError> {
        check_network_id(network_id)?;
        let network_id = network_id.to_owned();
        self.call("acknowledge key", move |ctx: Ctx| async move {
            // Held while writing, as for endpoint records: never under a
            // lease that is being replaced.
            let session = ctx.session.lock().await;
            let Some(lease) = session.lease() else {
                return Err(ClusterError::Unavailable("this node is not registered with the cluster store".into()));
            };
            let key = ack_key(ctx.prefix(), &network_id, epoch, &ctx.config.node);
            match ctx.kv().put(key, Vec::new(), Some(PutOptions::new().with_lease(lease))).await {
                Ok(_) => Ok(()),
                Err(e) if crate::client::is_lease_not_found(&e) => {
                    Err(ClusterError::Unavailable("this node's lease was lost; registering again".into()))
                }
                Err(e) => Err(store_error("acknowledge key", e)),
            }
        })
    }

    /// Deletes the record and every acknowledgement of `epoch` (one txn; Ok
    /// if already gone).
    pub fn retire_key(&self, network_id: &str, epoch: u32) -> Result<(), ClusterError> {
        check_network_id(network_id)?;
        let network_id = network_id.to_owned();
        self.call("retire key", move |ctx: Ctx| async move {
            let p = ctx.prefix();
            let acks = acks_prefix(p, &network_id, epoch);
            let txn = Txn::new().and_then(vec![
                TxnOp::delete(record_key(p, &network_id, epoch), None),
                TxnOp::delete(acks.as_str(), Some(DeleteOptions::new().with_range(prefix_range_end(&acks)))),
            ]);
            ctx.kv().txn(txn).await.map_err(|e| store_error("retire key", e))?;
            Ok(())
        })
    }

    /// Deletes every key entry of a network (records, acknowledgements,
    /// current epoch): for a network whose record is gone from the store.
    pub fn forget_network_keys(&self, network_id: &str) -> Result<(), ClusterError> {
        check_network_id(network_id)?;
        let network_id = network_id.to_owned();
        self.call("forget network keys", move |ctx: Ctx| async move {
            let p = ctx.prefix().trim_end_matches('/');
            let mut ops = vec![TxnOp::delete(current_key(p, &network_id), None)];
            for dir in [KEYS_DIR, ACKS_DIR] {
                let range = format!("{p}/{dir}/{network_id}/");
                ops.push(TxnOp::delete(
                    range.as_str(),
                    Some(DeleteOptions::new().with_range(prefix_range_end(&range))),
                ));
            }
            ctx.kv().txn(Txn::new().and_then(ops)).await.map_err(|e| store_error("forget network keys", e))?;
            Ok(())
        })
    }
}

/// Why a rotation asked for by hand cannot be published now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotateRefused {
    /// No live node has endpoints on the network: there is no key to rotate
    /// (the first endpoint gets one).
    #[error("no node has endpoints on the network: it has no key yet (its first endpoint gets one)")]
    NoMembers,
    /// An epoch is still being distributed.
    #[error("key epoch {0} is still being distributed to the network's nodes; try again in a moment")]
    Pending(u32),
    /// A fresh key could not be drawn or sealed.
    #[error("cannot make a new key: {0}")]
    Crypto(String),
}

/// The record of the epoch after `store`'s current one, with a fresh key
/// sealed to every member: what `network key rotate` publishes (with
/// [`Cluster::publish_key`]; any node may, since members only need the
/// record, and the publisher of [`crate::keys::plan`] promotes it once all
/// acknowledged). Refused while an epoch is pending: epochs advance one at
/// a time.
pub fn rotation_record(
    network_id: &str,
    vni: Vni,
    local: &str,
    members: &BTreeMap<String, NodePublicKey>,
    store: &NetworkKeys,
    now_unix: u64,
) -> Result<KeyRecord, RotateRefused> {
    if members.is_empty() {
        return Err(RotateRefused::NoMembers);
    }
    let pending = match store.current {
        Some(c) => store.records.keys().copied().find(|&e| e > c),
        None => store.records.keys().next_back().copied(),
    };
    if let Some(p) = pending {
        return Err(RotateRefused::Pending(p));
    }
    let epoch = store.current.map_or(1, |c| c.wrapping_add(1));
    let key = NetworkKey::generate(vni, epoch).map_err(|e| RotateRefused::Crypto(e.to_string()))?;
    let mut sealed_map = BTreeMap::new();
    for (name, public) in members {
        let bytes = sealed::seal(&key, network_id, public).map_err(|e| RotateRefused::Crypto(e.to_string()))?;
        sealed_map.insert(name.clone(), BASE64.encode(bytes));
    }
    Ok(KeyRecord { epoch, publisher: local.to_owned(), published_unix: now_unix, sealed: sealed_map })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crypto::sealed::NodeKeypair;

    use super::*;
    use crate::keys::{KeyAction, KeyInputs, plan};

    const NET: &str = "n1";

    fn vni() -> Vni {
        Vni::new(4100).unwrap()
    }

    fn put(mirror: &mut Mirror, rest: &str, value: &[u8]) {
        let event = KvEvent::Put { key: format!("/vswitch/v1/{rest}"), value: value.to_vec(), mod_revision: 1 };
        mirror.apply("/vswitch/v1", event);
    }

    #[test]
    fn the_mirror_yields_the_key_state_it_holds() {
        let a = NodeKeypair::generate().unwrap();
        let members = BTreeMap::from([("a".to_owned(), a.public())]);
        let record = rotation_record(NET, vni(), "a", &members, &NetworkKeys::default(), 7).unwrap();
        let mut mirror = Mirror::default();
        put(&mut mirror, &format!("keys/{NET}/1"), &record.to_json());
        put(&mut mirror, &format!("keyacks/{NET}/1/a"), b"");
        put(&mut mirror, &format!("keycurrent/{NET}"), b"1");
        // Not key state: ignored (and never a panic).
        put(&mut mirror, "keysmith/x", b"?");
        put(&mut mirror, &format!("keys/{NET}/2"), b"not json");
        let keys = mirror.keys().network(NET);
        assert_eq!(keys.records.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(keys.records[&1], record);
        assert_eq!(keys.acks[&1], BTreeSet::from(["a".to_owned()]));
        assert_eq!(keys.current, Some(1));
        assert_eq!(mirror.keys().network_ids().collect::<Vec<_>>(), [NET]);
    }

    #[test]
    fn a_rotation_by_hand_is_the_next_epoch_sealed_to_every_member_and_opens() {
        let (a, b) = (NodeKeypair::generate().unwrap(), NodeKeypair::generate().unwrap());
        let members = BTreeMap::from([("a".to_owned(), a.public()), ("b".to_owned(), b.public())]);
        assert_eq!(
            rotation_record(NET, vni(), "b", &BTreeMap::new(), &NetworkKeys::default(), 0),
            Err(RotateRefused::NoMembers)
        );
        let first = rotation_record(NET, vni(), "b", &members, &NetworkKeys::default(), 5).unwrap();
        assert_eq!((first.epoch, first.publisher.as_str(), first.published_unix), (1, "b", 5));
        let mut store = NetworkKeys::default();
        store.records.insert(1, first);
        assert_eq!(rotation_record(NET, vni(), "b", &members, &store, 6), Err(RotateRefused::Pending(1)));
        store.current = Some(1);
        let next = rotation_record(NET, vni(), "b", &members, &store, 6).unwrap();
        assert_eq!(next.epoch, 2);
        assert_eq!(next.sealed.keys().collect::<Vec<_>>(), ["a", "b"]);
        store.records.insert(2, next);
        assert_eq!(rotation_record(NET, vni(), "b", &members, &store, 7), Err(RotateRefused::Pending(2)));

        // "a" (the publisher by name) installs and acknowledges what "b" published.
        let installed = BTreeSet::from([1]);
        let inputs = KeyInputs {
            network_id: NET,
            vni: vni(),
            local: "a",
            keypair: &a,
            members: &members,
            store: &store,
            installed: &installed,
            send_epoch: Some(1),
            now_unix: 7,
            rotation_period: None,
        };
        let actions = plan(&inputs);
        assert!(
            matches!(&actions[..], [KeyAction::Install { epoch: 2, key }, KeyAction::Ack { epoch: 2 }] if key.epoch() == 2),
            "{actions:?}"
        );
    }
}
