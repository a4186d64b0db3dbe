//! Overlay keys through the cluster store: encrypted cluster overlays need no
//! `--secret-file`.
//!
//! Each node has an X25519 keypair (`STATE_DIR/node.key`, mode 0600, made on
//! first start) whose public key is in its node record. An encrypted cluster
//! overlay's datapath network takes its keys from the store
//! (`NetworkSpec::store_keys`), and on every reconcile (each change the store
//! reports, and every [`super::RESYNC_INTERVAL`] at the latest) this node
//! runs the key coordinator ([`cluster::keys::plan`]) for every such network
//! with local endpoints and carries out its actions in order, stopping at
//! the first that fails (the next reconcile retries: the protocol is
//! level-triggered):
//! - `Install` / `SwitchSend`: the datapath's `install_key` / `set_key_epoch`;
//! - `Ack`, `Publish` (create-if-absent), `SetCurrent` (compare-and-set),
//!   `Retire`: the store ([`cluster::Cluster::ack_key`] and friends);
//! - `Unopenable`: logged once per epoch.
//!
//! Rotation: `-o key-rotation=SECONDS` is honoured in cluster mode as the
//! coordinator's rotation period (the publisher publishes a new epoch once
//! the period has passed since the current one was published, checked at
//! every reconcile, so within a few seconds of it); the datapath does not
//! derive epochs from the clock for such networks. `network key rotate NET`
//! publishes the next epoch at once, sealed to the network's current
//! members; the members install it, acknowledge it, and all switch to it
//! once everyone has it, so no packet is lost.
//!
//! Keys are never logged: only epochs, node names and reasons are.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::Cluster;
use cluster::keys::{Exclusion, KeyAction, KeyInputs, PublishReason, members, plan};
use cluster::keys_store::{RotateRefused, rotation_record};
use crypto::sealed::NodeKeypair;
use ctl::proto::{self, CtlError, ErrorKind};

use super::cluster::cluster_error;
use super::{Control, Reply, network_id, ok};
use crate::model::Network;

/// This node's part in distributing overlay keys through the store.
pub(super) struct StoreKeys {
    /// The store's client (a clone of the cluster link's).
    handle: Cluster,
    /// This node's keypair: keys are sealed to its public key.
    keypair: NodeKeypair,
    /// Epochs whose sealed key did not open, already logged: (network id, epoch).
    unopenable: HashSet<(String, u32)>,
    /// The last failure per network, already logged (logged again when it changes).
    failures: HashMap<String, String>,
    /// The nodes left out of each network's members, as last logged.
    exclusions: ExclusionLog,
}

/// The nodes left out of each keyed network's members ([`Exclusion`]), as
/// last logged: the coordinator computes the members on every reconcile,
/// and a node without a usable public key is logged when it is first left
/// out (or for another reason), and once more when it no longer is.
#[derive(Debug, Default)]
struct ExclusionLog {
    /// Network id -> node name -> why it is left out.
    logged: HashMap<String, BTreeMap<String, Exclusion>>,
}

/// A change in the nodes left out of a network's members.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExclusionChange {
    /// The node is left out now, for this reason (first time, or a new reason).
    LeftOut(String, Exclusion),
    /// The node was left out and no longer is (it has a usable key now, or
    /// it has no endpoints on the network any more).
    Cleared(String),
}

impl ExclusionLog {
    /// Records `excluded` as network `network_id`'s exclusions now and
    /// returns what changed since the last call for it.
    fn update(&mut self, network_id: &str, excluded: &BTreeMap<String, Exclusion>) -> Vec<ExclusionChange> {
        let before = self.logged.remove(network_id).unwrap_or_default();
        let mut changes: Vec<ExclusionChange> = excluded
            .iter()
            .filter(|&(node, why)| before.get(node) != Some(why))
            .map(|(node, why)| ExclusionChange::LeftOut(node.clone(), why.clone()))
            .collect();
        changes.extend(before.into_keys().filter(|node| !excluded.contains_key(node)).map(ExclusionChange::Cleared));
        if !excluded.is_empty() {
            self.logged.insert(network_id.to_owned(), excluded.clone());
        }
        changes
    }

    /// Forgets the networks not in `keep` (no longer keyed here).
    fn retain(&mut self, keep: &HashSet<&str>) {
        self.logged.retain(|id, _| keep.contains(id.as_str()));
    }
}

impl Control {
    /// Lets this cluster node distribute the keys of encrypted cluster
    /// overlays through the store `handle` (whose node record carries
    /// `keypair`'s public key). Call before [`Control::attach_cluster`].
    pub fn attach_cluster_keys(&mut self, handle: Cluster, keypair: NodeKeypair) {
        self.cluster_keys = Some(StoreKeys {
            handle,
            keypair,
            unopenable: HashSet::new(),
            failures: HashMap::new(),
            exclusions: ExclusionLog::default(),
        });
    }

    /// The encrypted cluster overlays of this node with local endpoints.
    fn keyed_networks(&self) -> Vec<Network> {
        self.model
            .networks()
            .into_iter()
            .filter(|n| n.cluster && n.is_encrypted() && !self.model.endpoints_on_network(&n.id).is_empty())
            .cloned()
            .collect()
    }

    /// Runs the key coordinator for every encrypted cluster overlay with
    /// local endpoints (see the module's documentation). Never fails: what
    /// cannot be done is logged and retried at the next reconcile.
    pub(super) fn reconcile_keys(&mut self) {
        let Some(keys) = &self.cluster_keys else { return };
        let status = keys.handle.status();
        let mirror = keys.handle.mirror();
        // Act only on a mirror that reflects the store.
        if !status.connected || mirror.revision == 0 {
            return;
        }
        let key_mirror = mirror.keys();
        let local = keys.handle.node().to_owned();
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let keyed = self.keyed_networks();
        if let Some(keys) = self.cluster_keys.as_mut() {
            keys.exclusions.retain(&keyed.iter().map(|n| n.id.as_str()).collect());
        }
        for network in keyed {
            let Some(vni) = network.vni.and_then(vxlan::Vni::new) else { continue };
            let net = network_id(&network);
            let members = members(&network.id, mirror.nodes.values(), mirror.endpoints.values());
            if let Some(keys) = self.cluster_keys.as_mut() {
                log_exclusions(&network.name, keys.exclusions.update(&network.id, &members.excluded));
            }
            let planned = (|| {
                let keys = self.cluster_keys.as_ref().ok_or_else(|| "no store keys".to_owned())?;
                let state = self.datapath.key_state(net).map_err(|e| format!("datapath: {e}"))?;
                let store = key_mirror.network(&network.id);
                let installed: BTreeSet<u32> = state.installed.iter().copied().collect();
                let inputs = KeyInputs {
                    network_id: &network.id,
                    vni,
                    local: &local,
                    keypair: &keys.keypair,
                    members: &members.keys,
                    store: &store,
                    installed: &installed,
                    send_epoch: state.send_epoch,
                    now_unix,
                    rotation_period: network.key_rotation().map(|p| Duration::from_secs(p.get())),
                };
                Ok::<_, String>(plan(&inputs))
            })();
            let result = planned.and_then(|actions| self.carry_out(&network, actions));
            let Some(keys) = self.cluster_keys.as_mut() else { return };
            match result {
                Ok(()) => {
                    keys.failures.remove(&network.id);
                }
                Err(e) => {
                    if keys.failures.get(&network.id) != Some(&e) {
                        tracing::warn!(network = %network.name, error = %e, "cluster keys: cannot go on; retrying at the next reconcile");
                        keys.failures.insert(network.id.clone(), e);
                    }
                }
            }
        }
        self.forget_removed_networks_keys(&mirror, &key_mirror, &local);
    }

    /// Carries out `actions` for `network` in order, stopping at the first
    /// that fails.
    fn carry_out(&mut self, network: &Network, actions: Vec<KeyAction>) -> Result<(), String> {
        let datapath = &self.datapath;
        let Some(keys) = self.cluster_keys.as_mut() else { return Ok(()) };
        let store = &keys.handle;
        let (id, name, net) = (&network.id, &network.name, network_id(network));
        for action in actions {
            match action {
                KeyAction::Install { epoch, key } => {
                    datapath.install_key(net, epoch, key).map_err(|e| format!("install epoch {epoch}: {e}"))?;
                    tracing::info!(network = %name, epoch, "cluster keys: key installed");
                }
                KeyAction::SwitchSend { epoch } => {
                    datapath.set_key_epoch(net, epoch).map_err(|e| format!("send with epoch {epoch}: {e}"))?;
                    tracing::info!(network = %name, epoch, "cluster keys: sending with the current epoch");
                }
                KeyAction::Ack { epoch } => {
                    store.ack_key(id, epoch).map_err(|e| format!("acknowledge epoch {epoch}: {e}"))?;
                }
                KeyAction::SetCurrent { epoch, previous } => {
                    let set = store
                        .set_key_current(id, epoch, previous)
                        .map_err(|e| format!("make epoch {epoch} current: {e}"))?;
                    if set {
                        tracing::info!(network = %name, epoch, "cluster keys: every member holds the epoch; it is current");
                    } else {
                        // Another node moved it meanwhile: the next run sees what it did.
                        return Ok(());
                    }
                }
                KeyAction::Publish { record, reason } => {
                    let epoch = record.epoch;
                    let members: Vec<String> = record.sealed.keys().cloned().collect();
                    let written = store.publish_key(id, record).map_err(|e| format!("publish epoch {epoch}: {e}"))?;
                    if written {
                        tracing::info!(network = %name, epoch, ?members, reason = %describe(&reason), "cluster keys: new epoch published");
                    } else {
                        tracing::debug!(network = %name, epoch, "cluster keys: another node published this epoch first");
                        return Ok(());
                    }
                }
                KeyAction::Retire { epoch } => {
                    store.retire_key(id, epoch).map_err(|e| format!("retire epoch {epoch}: {e}"))?;
                    tracing::debug!(network = %name, epoch, "cluster keys: old epoch retired");
                }
                KeyAction::Unopenable { epoch, error } => {
                    // Logged once per epoch (not an error of this run: go on).
                    if keys.unopenable.insert((id.clone(), epoch)) {
                        tracing::error!(network = %name, epoch, %error, "cluster keys: the key sealed to this node does not open (was this node's key file replaced?)");
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes the key entries of networks whose record is gone from the
    /// store. Only the lowest-named live node does it, so the nodes do not
    /// all race for it (it is harmless if they do).
    fn forget_removed_networks_keys(
        &mut self,
        mirror: &cluster::Mirror,
        key_mirror: &cluster::keys::KeyMirror,
        local: &str,
    ) {
        if mirror.nodes.keys().next().map(String::as_str) != Some(local) {
            return;
        }
        let Some(keys) = &self.cluster_keys else { return };
        let gone: Vec<&str> = key_mirror.network_ids().filter(|id| mirror.network_by_id(id).is_none()).collect();
        for id in gone {
            match keys.handle.forget_network_keys(id) {
                Ok(()) => tracing::info!(network = %id, "cluster keys: removed the key entries of a removed network"),
                Err(e) => {
                    tracing::warn!(network = %id, error = %e, "cluster keys: cannot remove the key entries of a removed network")
                }
            }
        }
    }

    /// `network key rotate` of an encrypted cluster overlay: publishes the
    /// next epoch now, sealed to the network's members (`None`: not such a
    /// network, the caller handles it). The reply names the new epoch; the
    /// nodes switch to it once all of them installed it.
    pub(super) fn cluster_key_rotate(&mut self, name: &str) -> Option<Reply> {
        self.cluster.as_ref()?;
        let network = self.model.network(name).ok().filter(|n| n.cluster && n.is_encrypted())?.clone();
        Some((|| {
            let keys = self.cluster_keys.as_ref().ok_or_else(|| {
                CtlError::new(ErrorKind::NotSupported, "this node has no keypair for the cluster's overlay keys")
            })?;
            let status = keys.handle.status();
            if !status.connected {
                let why = status.last_error.map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(CtlError::new(
                    ErrorKind::Unavailable,
                    format!("cluster store unreachable{why}: nothing changed; try again later"),
                ));
            }
            let vni =
                network.vni.and_then(vxlan::Vni::new).ok_or_else(|| CtlError::internal("overlay without a VNI"))?;
            let mirror = keys.handle.mirror();
            let members = members(&network.id, mirror.nodes.values(), mirror.endpoints.values()).keys;
            let store = mirror.keys().network(&network.id);
            let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let record =
                rotation_record(&network.id, vni, keys.handle.node(), &members, &store, now_unix).map_err(|e| {
                    let kind = match e {
                        RotateRefused::NoMembers => ErrorKind::NotFound,
                        RotateRefused::Pending(_) => ErrorKind::Conflict,
                        RotateRefused::Crypto(_) => ErrorKind::Internal,
                    };
                    CtlError::new(kind, format!("network {}: {e}", network.name))
                })?;
            let epoch = record.epoch;
            if !keys.handle.publish_key(&network.id, record).map_err(cluster_error)? {
                return Err(CtlError::new(
                    ErrorKind::Conflict,
                    format!("network {}: another node published key epoch {epoch} first; try again", network.name),
                ));
            }
            tracing::info!(network = %network.name, epoch, "cluster keys: rotation asked for: new epoch published");
            // Install and acknowledge here at once rather than at the next tick.
            self.reconcile_keys();
            ok(proto::KeyEpoch { network: network.name.clone(), epoch })
        })())
    }
}

/// Logs the changes [`ExclusionLog::update`] found for network `name`.
fn log_exclusions(name: &str, changes: Vec<ExclusionChange>) {
    for change in changes {
        match change {
            ExclusionChange::LeftOut(node, why) => {
                tracing::warn!(network = %name, %node, reason = %why, "cluster keys: node left out of the overlay's members: no overlay keys for it")
            }
            ExclusionChange::Cleared(node) => {
                tracing::info!(network = %name, %node, "cluster keys: node no longer left out of the overlay's members")
            }
        }
    }
}

/// A publish reason for the log.
fn describe(reason: &PublishReason) -> String {
    match reason {
        PublishReason::First => "first key".into(),
        PublishReason::RotationDue => "rotation period passed".into(),
        PublishReason::Joined(nodes) => format!("joined: {}", nodes.join(",")),
        PublishReason::Left(nodes) => format!("left: {}", nodes.join(",")),
        PublishReason::Missing => "current epoch's record missing".into(),
    }
}

#[cfg(test)]
mod tests {
    use ctl::proto::{Driver, Request};

    use super::super::network_spec;
    use super::super::scratch::Scratch;
    use crate::daemon::datapath::DatapathError;
    use crate::model::{CreateNetwork, ENCRYPTED_OPTION, KEY_ROTATION_OPTION, Model};

    fn encrypted(name: &str, vni: u32) -> CreateNetwork {
        let mut req = CreateNetwork {
            subnet: Some(format!("10.9.{}.0/24", vni % 200).parse().unwrap()),
            vni: Some(vni),
            ..CreateNetwork::new(name, Driver::Overlay)
        };
        req.options.insert(ENCRYPTED_OPTION.into(), String::new());
        req.options.insert(KEY_ROTATION_OPTION.into(), "3600".into());
        req
    }

    #[test]
    fn cluster_overlays_take_their_keys_from_the_store_and_need_no_secret() {
        let mut model = Model::new();
        let local = model.create_network(encrypted("local", 4101)).unwrap();
        let mut cluster = model.create_network(encrypted("shared", 4102)).unwrap();
        cluster.cluster = true;

        // A local encrypted overlay derives its keys from the secret and
        // rotates by the clock; a cluster one takes keys from the store,
        // which rotates them (the period is the coordinator's).
        let spec = network_spec(&local);
        assert_eq!((spec.store_keys, spec.key_rotation.map(|p| p.get())), (false, Some(3600)));
        let spec = network_spec(&cluster);
        assert_eq!((spec.store_keys, spec.key_rotation, spec.key_epoch), (true, None, Some(0)));
        assert_eq!(cluster.key_rotation().map(|p| p.get()), Some(3600), "still the coordinator's period");

        // A datapath without a secret takes the cluster overlay (it sends
        // nothing until a key is installed) but not the local one.
        let mut s = Scratch::new("store-keys");
        let c = s.c();
        assert!(matches!(c.add_network_to_datapath(&local), Err(DatapathError::NoSecret)));
        c.add_network_to_datapath(&cluster).expect("a cluster overlay needs no secret");
        let state = c.datapath.key_state(super::network_id(&cluster)).unwrap();
        assert_eq!((state.store_keys, state.send_epoch, state.installed), (true, None, vec![]));
    }

    #[test]
    fn a_node_left_out_of_the_members_is_logged_once_per_change() {
        use super::{Exclusion, ExclusionChange, ExclusionLog};
        use std::collections::{BTreeMap, HashSet};

        let left_out = |pairs: &[(&str, Exclusion)]| -> BTreeMap<String, Exclusion> {
            pairs.iter().map(|(n, e)| ((*n).to_owned(), e.clone())).collect()
        };
        let mut log = ExclusionLog::default();
        let now = left_out(&[("n2", Exclusion::NoPublicKey), ("n3", Exclusion::LowOrderKey)]);
        assert_eq!(
            log.update("net1", &now),
            vec![
                ExclusionChange::LeftOut("n2".into(), Exclusion::NoPublicKey),
                ExclusionChange::LeftOut("n3".into(), Exclusion::LowOrderKey)
            ]
        );
        // Every later reconcile sees the same: nothing to log.
        assert_eq!(log.update("net1", &now), vec![]);
        assert_eq!(log.update("net1", &now), vec![]);
        // Another network is logged on its own.
        assert_eq!(log.update("net2", &now).len(), 2);
        // A new reason is a change; a node with a usable key now is cleared.
        let now = left_out(&[("n2", Exclusion::BadPublicKey("not hex".into()))]);
        assert_eq!(
            log.update("net1", &now),
            vec![
                ExclusionChange::LeftOut("n2".into(), Exclusion::BadPublicKey("not hex".into())),
                ExclusionChange::Cleared("n3".into())
            ]
        );
        assert_eq!(log.update("net1", &BTreeMap::new()), vec![ExclusionChange::Cleared("n2".into())]);
        assert_eq!(log.update("net1", &BTreeMap::new()), vec![]);
        // A network no longer keyed is forgotten: if it comes back, its exclusions are news again.
        log.retain(&HashSet::from(["net1"]));
        assert_eq!(log.update("net2", &now).len(), 1);
    }

    #[test]
    fn without_a_store_encrypted_overlays_still_need_the_secret_and_rotate_locally() {
        let mut s = Scratch::new("no-store-keys");
        let req = serde_json::json!({"verb": "network_create", "name": "sec", "driver": "overlay",
            "subnet": "10.9.9.0/24", "vni": 4109, "options": {"encrypted": ""}});
        let e = s.c().handle(serde_json::from_value::<Request>(req).unwrap()).unwrap_err();
        assert_eq!(e.kind, ctl::proto::ErrorKind::NotSupported, "{}", e.message);
        assert!(e.message.contains("--secret-file"), "{}", e.message);
        // Not a cluster node: `network key rotate` is the model's (no such network here).
        assert!(s.c().cluster_key_rotate("sec").is_none());
    }
}
