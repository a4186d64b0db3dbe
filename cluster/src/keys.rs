//! Overlay keys distributed and rotated through the store, so that cluster
//! mode needs no copied secret file.
//!
//! # Records
//!
//! | Key                               | Value                     | Lease  | Written by |
//! |-----------------------------------|---------------------------|--------|------------|
//! | `P/keys/NETWORK_ID/EPOCH`         | [`KeyRecord`] (JSON)      | none   | the publisher, **create-if-absent** |
//! | `P/keyacks/NETWORK_ID/EPOCH/NODE` | empty                     | node's | each member, once it installed the key |
//! | `P/keycurrent/NETWORK_ID`         | epoch, decimal            | none   | the publisher |
//!
//! A [`KeyRecord`] holds one epoch's random network key sealed to every
//! member's X25519 public key ([`crypto::sealed`]): the store and its
//! operators never see a key, and a node that was not a member when the
//! epoch was published cannot read it.
//!
//! # Rotation
//!
//! The members of a network are the live nodes with endpoints on it (and a
//! usable public key in their node record). [`plan`] is the whole protocol,
//! level-triggered and sans-IO: every node runs it on each change of the
//! store (and on a timer for rotation) and carries out the [`KeyAction`]s it
//! returns, in order, stopping at the first that fails (the next run retries).
//!
//! 1. The lowest-named member is the publisher. When no epoch is pending it
//!    publishes epoch E+1 (E = `keycurrent`; 1 at first) sealed to every
//!    member if there is no key yet, the rotation period has passed since E
//!    was published, a member lacks E's key (it joined, or its public key
//!    changed), or E's key was sealed to a node that is no longer a member (it
//!    left: from E+1 on it gets no key).
//! 2. Every member opens what was sealed to it and installs it in its
//!    datapath ([`KeyAction::Install`]): receive-capable at once, as the next
//!    epoch. Then it acknowledges ([`KeyAction::Ack`]).
//! 3. When every member the pending epoch was sealed to has acknowledged, the
//!    publisher sets `keycurrent` to it ([`KeyAction::SetCurrent`], a
//!    compare-and-set from the epoch before).
//! 4. Every member switches its send epoch on seeing `keycurrent`
//!    ([`KeyAction::SwitchSend`]), in any order: the others already accept
//!    it as their next epoch, and it still accepts theirs as its previous, so
//!    no packet is lost.
//!
//! Epochs advance one at a time (receivers accept only the previous, current
//! and next epoch), so at most one epoch is pending. A member switches to the
//! current epoch before it acknowledges a newer one, so when all have
//! acknowledged E+1 all send with E (or cannot send yet), and the switch to
//! E+1 loses nothing.
//!
//! A node that joins while epoch E+1 is pending without it gets E+2 after
//! E+1 becomes current: it cannot exchange traffic until then (it holds no
//! key). One that leaves while E+1 is pending with it keeps E+1, which
//! becomes current and is replaced by E+2 at once.
//!
//! # Races
//!
//! Two nodes may both think they are the publisher (their views of the
//! members differ for a moment). Both then publish the same epoch number
//! with different keys: **the client must write a record with
//! create-if-absent** (an etcd txn comparing the key's `create_revision` to
//! 0), so only the first wins; the loser's publish fails and its next run
//! sees the winner's record and installs that key like everyone else. A
//! publisher never installs the key it generated except through the record
//! the store accepted. Writing `keycurrent` twice with the same epoch is
//! harmless; moving it back is prevented by the compare of
//! [`KeyAction::SetCurrent`].

//!
//! # Wiring (the daemon's cluster sync)
//!
//! ```ignore
//! // Once at start: the node's keypair, its public key in the node record.
//! let (keypair, _) = NodeKeypair::load_or_generate(state_dir.join("node.key"))?;
//! config.public_key = Some(keypair.public().to_hex());
//! // Feed every watch event of the prefix to a KeyMirror (next to the Mirror).
//! key_mirror.apply(prefix, &event);
//! // On every change tick, and every few seconds (rotation by time), per
//! // encrypted overlay with local endpoints (created with
//! // `NetworkSpec { key_epoch: Some(store.current.unwrap_or(0)), store_keys: true, key_rotation: None, .. }`):
//! let state = datapath.key_state(net)?;            // send_epoch, installed
//! let members = members(&network_id, mirror.nodes.values(), mirror.endpoints.values());
//! // (log members.excluded when it changes)
//! let store = key_mirror.network(&network_id);
//! for action in plan(&KeyInputs { network_id, vni, local, keypair: &keypair, members: &members.keys,
//!     store: &store, installed: &state.installed.iter().copied().collect(),
//!     send_epoch: state.send_epoch, now_unix, rotation_period }) {
//!     let done = match action {
//!         KeyAction::Install { epoch, key } => datapath.install_key(net, epoch, key),
//!         KeyAction::SwitchSend { epoch } => datapath.set_key_epoch(net, epoch),
//!         KeyAction::Ack { epoch } => put under the lease: ack_key(prefix, id, epoch, local) = "",
//!         KeyAction::SetCurrent { epoch, previous } => txn: if value(current_key(..)) == previous
//!             (or create_revision == 0 for None) then put epoch.to_string(),
//!         KeyAction::Publish { record, .. } => txn: if create_revision(record_key(..)) == 0
//!             then put record.to_json() (no lease),
//!         KeyAction::Retire { epoch } => delete record_key(..) and prefix acks_prefix(..),
//!         KeyAction::Unopenable { epoch, error } => log (rate-limited) and go on,
//!     };
//!     if done.is_err() { break; } // the next run retries, level-triggered
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto::sealed::{self, NodeKeypair, NodePublicKey};
use crypto::{NetworkKey, SealedKeyError, Vni};
use serde::{Deserialize, Serialize};

use crate::mirror::KvEvent;
use crate::schema::{EndpointRecord, NodeRecord};

/// The directory of key records under the prefix.
pub const KEYS_DIR: &str = "keys";
/// The directory of key acknowledgements under the prefix.
pub const ACKS_DIR: &str = "keyacks";
/// The directory of current epochs under the prefix.
pub const CURRENT_DIR: &str = "keycurrent";

/// `P/keys/NETWORK_ID/EPOCH`: the record of one epoch.
pub fn record_key(prefix: &str, network_id: &str, epoch: u32) -> String {
    format!("{prefix}/{KEYS_DIR}/{network_id}/{epoch}")
}

/// `P/keyacks/NETWORK_ID/EPOCH/NODE`: `node` installed `epoch`.
pub fn ack_key(prefix: &str, network_id: &str, epoch: u32, node: &str) -> String {
    format!("{prefix}/{ACKS_DIR}/{network_id}/{epoch}/{node}")
}

/// `P/keyacks/NETWORK_ID/EPOCH/`: every acknowledgement of one epoch (a
/// prefix to delete when the epoch is retired).
pub fn acks_prefix(prefix: &str, network_id: &str, epoch: u32) -> String {
    format!("{prefix}/{ACKS_DIR}/{network_id}/{epoch}/")
}

/// `P/keycurrent/NETWORK_ID`: the epoch members send with.
pub fn current_key(prefix: &str, network_id: &str) -> String {
    format!("{prefix}/{CURRENT_DIR}/{network_id}")
}

/// One epoch's key, sealed to each member: the value at
/// `P/keys/NETWORK_ID/EPOCH`. Never holds a key in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The epoch (the same as in the record's key).
    pub epoch: u32,
    /// The node that published it.
    pub publisher: String,
    /// When it was published, Unix seconds (by the publisher's clock): the
    /// rotation period counts from here.
    #[serde(default)]
    pub published_unix: u64,
    /// Member node name → the epoch key sealed to its public key
    /// ([`crypto::sealed::seal`]), base64 (standard alphabet, padded).
    pub sealed: BTreeMap<String, String>,
}

impl KeyRecord {
    /// The record as stored (JSON).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a key record serializes")
    }

    /// The sealed key of `node`, decoded; `None` if it has none or it is not
    /// base64.
    fn sealed_for(&self, node: &str) -> Option<Vec<u8>> {
        self.sealed.get(node).and_then(|text| BASE64.decode(text).ok())
    }

    /// Whether `node`'s entry was sealed to `public`.
    fn sealed_to(&self, node: &str, public: &NodePublicKey) -> bool {
        self.sealed_for(node).and_then(|s| sealed::recipient(&s)).is_some_and(|r| r == *public)
    }
}

/// What the store says about one network's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkKeys {
    /// Published records by epoch.
    pub records: BTreeMap<u32, KeyRecord>,
    /// Acknowledgements: epoch → nodes that installed it.
    pub acks: BTreeMap<u32, BTreeSet<String>>,
    /// `keycurrent`: the epoch members send with (none before the first).
    pub current: Option<u32>,
}

/// The key records of every network, fed by the store's watch events
/// ([`KeyMirror::apply`]); sans-IO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMirror {
    networks: BTreeMap<String, NetworkKeys>,
}

/// What a store key under the prefix is, as far as keys go.
enum KeyPath<'a> {
    Record { network: &'a str, epoch: u32 },
    Ack { network: &'a str, epoch: u32, node: &'a str },
    Current { network: &'a str },
}

/// Parses `key` (a full store key) if it is a key record, ack or current
/// epoch under `prefix`.
fn parse_path<'a>(prefix: &str, key: &'a str) -> Option<KeyPath<'a>> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let dir = parts.next()?;
    let network = parts.next().filter(|n| !n.is_empty())?;
    let path = match dir {
        KEYS_DIR => KeyPath::Record { network, epoch: parts.next()?.parse().ok()? },
        ACKS_DIR => {
            let epoch = parts.next()?.parse().ok()?;
            KeyPath::Ack { network, epoch, node: parts.next().filter(|n| !n.is_empty())? }
        }
        CURRENT_DIR => KeyPath::Current { network },
        _ => return None,
    };
    parts.next().is_none().then_some(path)
}

impl KeyMirror {
    /// Applies one watch event. Returns whether `event`'s key was a key
    /// record, acknowledgement or current epoch (handled here, even when
    /// its value was bad: bad values are logged and skipped, never a
    /// panic).
    pub fn apply(&mut self, prefix: &str, event: &KvEvent) -> bool {
        let (key, value) = match event {
            KvEvent::Put { key, value, .. } => (key.as_str(), Some(value.as_slice())),
            KvEvent::Delete { key, .. } => (key.as_str(), None),
        };
        let Some(path) = parse_path(prefix, key) else { return false };
        match (path, value) {
            (KeyPath::Record { network, epoch }, Some(value)) => match serde_json::from_slice::<KeyRecord>(value) {
                Ok(record) if record.epoch == epoch => {
                    self.entry(network).records.insert(epoch, record);
                }
                Ok(record) => tracing::warn!(key, epoch = record.epoch, "key record of another epoch skipped"),
                Err(error) => tracing::warn!(key, %error, "bad key record skipped"),
            },
            (KeyPath::Record { network, epoch }, None) => {
                self.entry(network).records.remove(&epoch);
            }
            (KeyPath::Ack { network, epoch, node }, Some(_)) => {
                self.entry(network).acks.entry(epoch).or_default().insert(node.to_owned());
            }
            (KeyPath::Ack { network, epoch, node }, None) => {
                let keys = self.entry(network);
                if let Some(nodes) = keys.acks.get_mut(&epoch) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        keys.acks.remove(&epoch);
                    }
                }
            }
            (KeyPath::Current { network }, Some(value)) => {
                match std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()) {
                    Some(epoch) => self.entry(network).current = Some(epoch),
                    None => tracing::warn!(key, "bad current key epoch skipped"),
                }
            }
            (KeyPath::Current { network }, None) => self.entry(network).current = None,
        }
        self.prune();
        true
    }

    /// The key state of `network_id` (empty if the store has none).
    pub fn network(&self, network_id: &str) -> NetworkKeys {
        self.networks.get(network_id).cloned().unwrap_or_default()
    }

    /// The networks that have key state.
    pub fn network_ids(&self) -> impl Iterator<Item = &str> {
        self.networks.keys().map(String::as_str)
    }

    fn entry(&mut self, network: &str) -> &mut NetworkKeys {
        self.networks.entry(network.to_owned()).or_default()
    }

    fn prune(&mut self) {
        self.networks.retain(|_, k| *k != NetworkKeys::default());
    }
}

/// Why a node with endpoints on a network is left out of its members: it
/// gets no overlay keys (and its peers send it nothing encrypted) until its
/// node record carries a usable public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exclusion {
    /// The node record has no public key.
    #[error("node has no public key")]
    NoPublicKey,
    /// The public key is not 32 bytes of hex.
    #[error("bad node public key: {0}")]
    BadPublicKey(String),
    /// The public key is a low-order point: nothing can be sealed to it.
    #[error("node public key is a low-order point")]
    LowOrderKey,
}

/// The members of a network ([`members`]) and the nodes left out of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// The members, by node name, with their public keys: what
    /// [`KeyInputs::members`] takes.
    pub keys: BTreeMap<String, NodePublicKey>,
    /// Nodes with endpoints on the network that are left out, and why. The
    /// caller logs them (once, when they change: this is computed on every
    /// reconcile).
    pub excluded: BTreeMap<String, Exclusion>,
}

/// The members of network `network_id` for [`KeyInputs::members`]: the live
/// nodes (`nodes`: the node records present) with at least one endpoint
/// record on it, with their public keys. Nodes without a public key, or with
/// one that is not hex or cannot be sealed to, are left out and listed in
/// [`Members::excluded`]: they get no keys.
pub fn members<'a>(
    network_id: &str,
    nodes: impl IntoIterator<Item = &'a NodeRecord>,
    endpoints: impl IntoIterator<Item = &'a EndpointRecord>,
) -> Members {
    let with_endpoints: BTreeSet<&str> =
        endpoints.into_iter().filter(|e| e.network_id == network_id).map(|e| e.node.as_str()).collect();
    let mut members = Members::default();
    for node in nodes {
        if !with_endpoints.contains(node.name.as_str()) {
            continue;
        }
        let exclusion = match node.public_key.as_deref().map(NodePublicKey::from_hex) {
            Some(Ok(public)) if public.is_usable() => {
                members.keys.insert(node.name.clone(), public);
                continue;
            }
            Some(Ok(_)) => Exclusion::LowOrderKey,
            Some(Err(error)) => Exclusion::BadPublicKey(error.to_string()),
            None => Exclusion::NoPublicKey,
        };
        members.excluded.insert(node.name.clone(), exclusion);
    }
    members
}

/// Why an epoch is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishReason {
    /// The network has no key yet.
    First,
    /// The rotation period passed since the current epoch was published.
    RotationDue,
    /// These members lack the current key (they joined, or their public key
    /// changed).
    Joined(Vec<String>),
    /// The current key was sealed to these nodes, no longer members.
    Left(Vec<String>),
    /// The current epoch's record is gone from the store.
    Missing,
}

/// A member's sealed key that did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnopenableKey {
    /// The record's entry is not base64.
    #[error("the sealed key is not base64")]
    NotBase64,
    /// Opening failed.
    #[error(transparent)]
    Sealed(#[from] SealedKeyError),
}

/// One step for the node to carry out, in the order [`plan`] returns them.
#[derive(Debug)]
pub enum KeyAction {
    /// Install this key in the datapath (`DatapathHandle::install_key`).
    Install {
        /// The epoch.
        epoch: u32,
        /// Its key, opened from the record.
        key: NetworkKey,
    },
    /// Switch the datapath's send epoch (`DatapathHandle::set_key_epoch`).
    SwitchSend {
        /// The epoch, `keycurrent`.
        epoch: u32,
    },
    /// Write this node's acknowledgement `P/keyacks/NET/EPOCH/NODE` (empty
    /// value, under the node's lease).
    Ack {
        /// The epoch installed.
        epoch: u32,
    },
    /// Publisher: write `P/keycurrent/NET` = `epoch`, **only if it still
    /// holds `previous`** (a txn comparing its value; absent for `None`): a
    /// publisher that lost its role while this action waited must not move
    /// the epoch back. If the compare fails, do nothing.
    SetCurrent {
        /// The epoch every member holds.
        epoch: u32,
        /// The current epoch this decision was made from.
        previous: Option<u32>,
    },
    /// Publisher: write `record` at `P/keys/NET/EPOCH` **create-if-absent**
    /// (no lease). If the key exists the publish lost a race: do nothing.
    Publish {
        /// The record, sealed to every member.
        record: KeyRecord,
        /// Why.
        reason: PublishReason,
    },
    /// Publisher: delete the record and acknowledgements of an epoch no
    /// longer accepted by anyone (`P/keys/NET/EPOCH`, prefix
    /// `P/keyacks/NET/EPOCH/`).
    Retire {
        /// The epoch.
        epoch: u32,
    },
    /// The key sealed to this node for `epoch` does not open (log it; the
    /// publisher reseals when this node's public key changed).
    Unopenable {
        /// The epoch.
        epoch: u32,
        /// Why.
        error: UnopenableKey,
    },
}

/// Everything [`plan`] decides from, for one network on one node.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The network's id (the store's, the same on every node).
    pub network_id: &'a str,
    /// Its VNI.
    pub vni: Vni,
    /// This node's name.
    pub local: &'a str,
    /// This node's keypair.
    pub keypair: &'a NodeKeypair,
    /// The members: live nodes with endpoints on the network, by name, with
    /// the public key of their node record (nodes without one are left out).
    /// This node acts only while it is one of them.
    pub members: &'a BTreeMap<String, NodePublicKey>,
    /// What the store holds of the network's keys.
    pub store: &'a NetworkKeys,
    /// The epochs installed in this node's datapath for the network (empty
    /// after a restart: they are installed again).
    pub installed: &'a BTreeSet<u32>,
    /// The epoch this node's datapath sends with, if it sends.
    pub send_epoch: Option<u32>,
    /// Now, Unix seconds.
    pub now_unix: u64,
    /// Rotate after this long (none: only on membership changes).
    pub rotation_period: Option<Duration>,
}

/// The key actions of one node for one network: see the module docs. Pure
/// but for the random keys and ephemeral keys it draws when publishing.
pub fn plan(inputs: &KeyInputs<'_>) -> Vec<KeyAction> {
    let mut actions = Vec::new();
    if !inputs.members.contains_key(inputs.local) {
        return actions;
    }
    member_actions(inputs, &mut actions);
    if inputs.members.keys().next().map(String::as_str) == Some(inputs.local) {
        publisher_actions(inputs, &mut actions);
    }
    actions
}

/// Install, switch, acknowledge.
fn member_actions(inputs: &KeyInputs<'_>, actions: &mut Vec<KeyAction>) {
    let store = inputs.store;
    let current = store.current;
    let floor = current.map_or(0, |c| c.saturating_sub(1));
    let mut installed = inputs.installed.clone();
    for (&epoch, record) in store.records.range(floor..) {
        if installed.contains(&epoch) {
            continue;
        }
        let Some(text) = record.sealed.get(inputs.local) else { continue };
        let opened = BASE64
            .decode(text)
            .map_err(|_| UnopenableKey::NotBase64)
            .and_then(|s| Ok(sealed::open(&s, inputs.network_id, inputs.vni, epoch, inputs.keypair)?));
        match opened {
            Ok(key) => {
                installed.insert(epoch);
                actions.push(KeyAction::Install { epoch, key });
            }
            Err(error) => actions.push(KeyAction::Unopenable { epoch, error }),
        }
    }
    // Switch before acknowledging anything newer: the publisher promotes an
    // epoch only once all acknowledged it, and by then all must send with
    // the current one, or a receiver could be two epochs behind a sender.
    if let Some(c) = current
        && installed.contains(&c)
        && inputs.send_epoch != Some(c)
    {
        actions.push(KeyAction::SwitchSend { epoch: c });
    }
    let pending = store.records.keys().filter(|&&e| current.is_none_or(|c| e > c));
    for &epoch in pending {
        let acked = store.acks.get(&epoch).is_some_and(|nodes| nodes.contains(inputs.local));
        if installed.contains(&epoch) && !acked {
            actions.push(KeyAction::Ack { epoch });
        }
    }
}

/// Promote, publish, retire.
fn publisher_actions(inputs: &KeyInputs<'_>, actions: &mut Vec<KeyAction>) {
    let store = inputs.store;
    let members = inputs.members;
    let pending = match store.current {
        Some(c) => c.checked_add(1).filter(|p| store.records.contains_key(p)),
        None => store.records.keys().next_back().copied(),
    };
    if let Some(p) = pending {
        let record = &store.records[&p];
        let acks = store.acks.get(&p);
        // Members the epoch was sealed to (with their present key) must all
        // hold it; members it was not sealed to get the next one.
        let all_acked = members
            .iter()
            .filter(|(name, public)| record.sealed_to(name, public))
            .all(|(name, _)| acks.is_some_and(|a| a.contains(name)));
        if all_acked {
            actions.push(KeyAction::SetCurrent { epoch: p, previous: store.current });
        }
    } else if let Some(reason) = publish_reason(inputs) {
        let epoch = store.current.map_or(1, |c| c.wrapping_add(1));
        if let Some(record) = sealed_record(inputs, epoch) {
            actions.push(KeyAction::Publish { record, reason });
        }
    }
    if let Some(c) = store.current {
        let floor = c.saturating_sub(1);
        let old: BTreeSet<u32> =
            store.records.range(..floor).map(|(&e, _)| e).chain(store.acks.range(..floor).map(|(&e, _)| e)).collect();
        actions.extend(old.into_iter().map(|epoch| KeyAction::Retire { epoch }));
    }
}

/// Why a new epoch is due, if it is (no epoch pending).
fn publish_reason(inputs: &KeyInputs<'_>) -> Option<PublishReason> {
    let Some(c) = inputs.store.current else { return Some(PublishReason::First) };
    let Some(record) = inputs.store.records.get(&c) else { return Some(PublishReason::Missing) };
    let left: Vec<String> = record.sealed.keys().filter(|n| !inputs.members.contains_key(*n)).cloned().collect();
    if !left.is_empty() {
        return Some(PublishReason::Left(left));
    }
    // A member whose key cannot be sealed to would be "joined" forever.
    let joined: Vec<String> = inputs
        .members
        .iter()
        .filter(|(name, public)| !record.sealed_to(name, public) && public.is_usable())
        .map(|(name, _)| name.clone())
        .collect();
    if !joined.is_empty() {
        return Some(PublishReason::Joined(joined));
    }
    let due = inputs
        .rotation_period
        .is_some_and(|period| inputs.now_unix.saturating_sub(record.published_unix) >= period.as_secs());
    due.then_some(PublishReason::RotationDue)
}

/// A fresh key for `epoch` sealed to every member it can be sealed to.
fn sealed_record(inputs: &KeyInputs<'_>, epoch: u32) -> Option<KeyRecord> {
    let key = match NetworkKey::generate(inputs.vni, epoch) {
        Ok(key) => key,
        Err(error) => {
            tracing::error!(%error, "cannot draw a network key");
            return None;
        }
    };
    let mut sealed = BTreeMap::new();
    for (name, public) in inputs.members {
        match sealed::seal(&key, inputs.network_id, public) {
            Ok(bytes) => {
                sealed.insert(name.clone(), BASE64.encode(bytes));
            }
            Err(error) => tracing::warn!(node = %name, %error, "no key sealed to this member"),
        }
    }
    sealed.contains_key(inputs.local).then(|| KeyRecord {
        epoch,
        publisher: inputs.local.to_owned(),
        published_unix: inputs.now_unix,
        sealed,
    })
}

#[cfg(test)]
mod tests;
