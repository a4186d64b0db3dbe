//! Cluster mode (`vswitchd --cluster-store`): overlay networks, their
//! addresses and endpoints live in the cluster store (the `cluster` crate).
//!
//! - Requests: `network create -d overlay` and `network rm` go through the
//!   store; `network connect` on a cluster network claims its addresses in
//!   the store before anything is made locally and publishes the endpoint's
//!   record; `disconnect` withdraws and releases. Every failure undoes the
//!   earlier steps, and when the store cannot be reached such requests are
//!   refused (`unavailable`) before anything changes.
//! - Reconcile (the cluster sync thread, under the control lock, after every
//!   change the store reports and every few seconds): networks other nodes
//!   created are made locally and removed when their record goes; this
//!   node's endpoints are (re)published and its stale records and claims
//!   released (a node restarted after `kill -9` finds its claims and
//!   publishes its endpoints again); each cluster overlay with local
//!   endpoints gets the datapath's cluster view (tunnel peers, remote MACs,
//!   proxy ARP/ND) and the embedded DNS the remote endpoints' names.
//!
//! The diffing is pure ([`plan_store`], [`desired_views`]): model + mirror in,
//! actions out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use cluster::{AddressClaim, Cluster, ClusterError, EndpointRecord, Mirror, NetworkRecord};
use ctl::proto::{self, CtlError, ErrorKind, NodeInfo, NodeList, NodeRmResult, NodeStatus, StoreState};
use ctl::{IpNet, MacAddr};

use super::{Control, Reply, datapath_error, model_error, network_id, ok};
use crate::daemon::datapath::DatapathError;
use crate::model::{Connect, CreateNetwork, Endpoint, Model, Network};

/// How often the sync thread reconciles when the store reports nothing (a
/// safety net: local changes such as `sandbox rm` reconcile at once).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

/// How many addresses `network connect` tries when others keep winning the
/// race for the lowest free one.
const CLAIM_ATTEMPTS: usize = 32;

/// The daemon's link to its cluster store.
pub(super) struct ClusterLink {
    /// The store's client.
    pub(super) handle: Cluster,
    /// The store's endpoints, for `show` and `node ls`.
    endpoints: Vec<String>,
    /// The view last given to the datapath, by network index.
    applied: HashMap<u32, View>,
    /// The remote endpoints' names the embedded DNS has.
    pub(super) names: Vec<RemoteName>,
    /// Records that could not be made locally, already logged (by id).
    refused: HashSet<String>,
    /// The ingress routing mesh's state (services, mesh stations).
    pub(super) ingress: super::ingress::IngressState,
    /// Every local endpoint was published since the start.
    republished: bool,
}

/// What the datapath is told about one overlay network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct View {
    /// The VTEPs of the other nodes with endpoints on it.
    pub(super) peers: Vec<SocketAddr>,
    /// The endpoints of those nodes.
    pub(super) endpoints: Vec<RemoteView>,
}

/// One remote endpoint of a [`View`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RemoteView {
    pub(super) mac: MacAddr,
    pub(super) ipv4: Option<Ipv4Addr>,
    pub(super) ipv6: Option<Ipv6Addr>,
    pub(super) vtep: SocketAddr,
}

/// The DNS names of a remote endpoint on a local network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RemoteName {
    /// The local network's index (the DNS directory's key).
    pub(super) network_index: u32,
    /// The remote sandbox's name.
    pub(super) name: String,
    /// Its aliases on the network.
    pub(super) aliases: Vec<String>,
    /// Its IPv4 address (an A record).
    pub(super) ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address (an AAAA record).
    pub(super) ipv6: Option<Ipv6Addr>,
}

/// What the store should get from this node, and which networks to make or
/// remove locally.
#[derive(Debug, Default, PartialEq)]
pub(super) struct StorePlan {
    /// Networks of the store this node does not have yet.
    pub(super) adopt: Vec<Network>,
    /// Records that cannot become a local network: (record id, why).
    pub(super) invalid: Vec<(String, String)>,
    /// Cluster networks of this node whose record is gone and that have no
    /// local endpoints (names).
    pub(super) drop: Vec<String>,
    /// Local endpoints whose record is missing or differs.
    pub(super) publish: Vec<EndpointRecord>,
    /// Addresses of local endpoints that nobody has claimed.
    pub(super) claim: Vec<(String, IpAddr, AddressClaim)>,
    /// This node's records of endpoints it no longer has: (network id, endpoint id).
    pub(super) withdraw: Vec<(String, String)>,
    /// This node's claims for endpoints it no longer has: (network id, address, endpoint id).
    pub(super) release: Vec<(String, IpAddr, String)>,
    /// Addresses of local endpoints that another endpoint holds in the store.
    pub(super) conflicts: Vec<String>,
}

/// The network a store record describes: the model's network from its
/// `spec`, with the id, name, VNI and subnets the store holds.
pub(super) fn network_from_record(record: &NetworkRecord) -> Result<Network, String> {
    let mut network: Network =
        serde_json::from_value(record.spec.clone()).map_err(|e| format!("its spec is not a network: {e}"))?;
    if network.driver != proto::Driver::Overlay {
        return Err(format!("it is a {} network, not an overlay", network.driver));
    }
    network.id = record.id.clone();
    network.name = record.name.clone();
    network.vni = Some(record.vni);
    for subnet in &record.subnets {
        match subnet {
            IpNet::V4(s) => network.subnet = Some(*s),
            IpNet::V6(s) => network.subnet6 = Some(*s),
        }
    }
    network.cluster = true;
    Ok(network)
}

/// The store record of a network this node creates; `vni` 0 lets the store
/// choose.
pub(super) fn record_of(network: &Network, vni: u32, node: &str) -> Result<NetworkRecord, CtlError> {
    // The configuration network it was made from is this node's alone.
    let network = &Network { config_from: None, ..network.clone() };
    let spec = serde_json::to_value(network).map_err(|e| CtlError::internal(format!("cannot encode network: {e}")))?;
    let subnets = network.subnet.map(IpNet::V4).into_iter().chain(network.subnet6.map(IpNet::V6)).collect();
    Ok(NetworkRecord {
        id: network.id.clone(),
        name: network.name.clone(),
        vni,
        subnets,
        created_by: node.to_owned(),
        spec,
    })
}

/// The record this node publishes for one of its endpoints.
pub(super) fn endpoint_record(endpoint: &Endpoint, node: &str) -> EndpointRecord {
    EndpointRecord {
        network_id: endpoint.network_id.clone(),
        endpoint_id: endpoint.id.clone(),
        node: node.to_owned(),
        name: endpoint.sandbox.clone(),
        aliases: endpoint.aliases.clone(),
        mac: endpoint.mac.to_string(),
        ipv4: endpoint.ipv4,
        ipv6: endpoint.ipv6,
        service: endpoint.service.clone(),
    }
}

/// The addresses of an endpoint.
fn addresses_of(endpoint: &Endpoint) -> impl Iterator<Item = IpAddr> {
    endpoint.ipv4.map(IpAddr::V4).into_iter().chain(endpoint.ipv6.map(IpAddr::V6))
}

/// What to change so that the store and this node agree. `loaded`: the
/// mirror reflects the store (connected, read at least once); without it
/// nothing is removed or written, only networks are adopted. `republish`:
/// publish every local endpoint even if its record looks right (the first
/// time after a start: records a previous incarnation left live under its
/// old lease, which expires; publishing moves them under this one's).
pub(super) fn plan_store(model: &Model, mirror: &Mirror, node: &str, loaded: bool, republish: bool) -> StorePlan {
    let mut plan = StorePlan::default();
    for record in mirror.networks.values() {
        if model.network_by_id(&record.id).is_some() {
            continue;
        }
        match network_from_record(record) {
            Ok(network) => plan.adopt.push(network),
            Err(e) => plan.invalid.push((record.id.clone(), e)),
        }
    }
    if !loaded {
        return plan;
    }
    let cluster_networks: Vec<&Network> = model.networks().into_iter().filter(|n| n.cluster).collect();
    for network in &cluster_networks {
        let endpoints = model.endpoints_on_network(&network.id);
        if mirror.network_by_id(&network.id).is_none() {
            if endpoints.is_empty() {
                plan.drop.push(network.name.clone());
            }
            continue;
        }
        for endpoint in endpoints {
            let record = endpoint_record(endpoint, node);
            if republish || mirror.endpoints.get(&(network.id.clone(), endpoint.id.clone())) != Some(&record) {
                plan.publish.push(record);
            }
            for ip in addresses_of(endpoint) {
                match mirror.claim(&network.id, ip) {
                    None => plan.claim.push((
                        network.id.clone(),
                        ip,
                        AddressClaim { node: node.to_owned(), endpoint_id: endpoint.id.clone() },
                    )),
                    Some(c) if c.node == node && c.endpoint_id == endpoint.id => {}
                    Some(c) => plan.conflicts.push(format!(
                        "address {ip} of sandbox {} on network {} is claimed by endpoint {} of node {}",
                        endpoint.sandbox, network.name, c.endpoint_id, c.node
                    )),
                }
            }
        }
    }
    let local =
        |network_id: &str, endpoint_id: &str| model.endpoint(endpoint_id).is_some_and(|e| e.network_id == network_id);
    // This node's mesh stations stay while it has ingress services there.
    let mesh = super::ingress::mesh_id(node);
    let station =
        |network_id: &str, endpoint_id: &str| endpoint_id == mesh && super::ingress::wants_mesh(model, network_id);
    for record in mirror.endpoints_of_node(node) {
        if !local(&record.network_id, &record.endpoint_id) && !station(&record.network_id, &record.endpoint_id) {
            plan.withdraw.push((record.network_id.clone(), record.endpoint_id.clone()));
        }
    }
    for (network_id, ip, claim) in mirror.claims_of_node(node) {
        let held = model
            .endpoint(&claim.endpoint_id)
            .is_some_and(|e| e.network_id == network_id && addresses_of(e).any(|a| a == ip));
        if !held && !station(network_id, &claim.endpoint_id) {
            plan.release.push((network_id.to_owned(), ip, claim.endpoint_id.clone()));
        }
    }
    plan
}

/// The cluster view of every cluster overlay of this node (empty for those
/// without local endpoints: lazy extension) and the remote endpoints' DNS
/// names, from the model and the mirror.
pub(super) fn desired_views(model: &Model, mirror: &Mirror, node: &str) -> (BTreeMap<u32, View>, Vec<RemoteName>) {
    let mut views = BTreeMap::new();
    let mut names = Vec::new();
    for network in model.networks().into_iter().filter(|n| n.cluster && n.driver == proto::Driver::Overlay) {
        let mut view = View::default();
        // A mesh station counts as a local endpoint: ingress flows to other
        // nodes' replicas need the tunnels and their MACs.
        let active =
            !model.endpoints_on_network(&network.id).is_empty() || super::ingress::wants_mesh(model, &network.id);
        if active {
            view.peers = mirror.peers(&network.id, node);
            for record in mirror.remote_endpoints(&network.id, node) {
                let Some(vtep) = mirror.nodes.get(&record.node).map(|n| n.vtep) else { continue };
                let Ok(mac) = record.mac.parse::<MacAddr>() else {
                    tracing::warn!(endpoint = %record.endpoint_id, mac = %record.mac, "cluster: skipping an endpoint record with a bad MAC");
                    continue;
                };
                view.endpoints.push(RemoteView { mac, ipv4: record.ipv4, ipv6: record.ipv6, vtep });
            }
            view.endpoints.sort();
        }
        // Names resolve on every node that has the network, endpoints or not.
        // Mesh stations have no name.
        for record in mirror.remote_endpoints(&network.id, node).filter(|r| !r.name.is_empty()) {
            names.push(RemoteName {
                network_index: network.network_index,
                name: record.name.clone(),
                aliases: record.aliases.clone(),
                ipv4: record.ipv4,
                ipv6: record.ipv6,
            });
        }
        views.insert(network.network_index, view);
    }
    names.sort();
    (views, names)
}

/// The ctl error for a store failure.
pub(super) fn cluster_error(e: ClusterError) -> CtlError {
    let kind = match &e {
        ClusterError::Unavailable(_) => {
            return CtlError::new(ErrorKind::Unavailable, format!("{e}; nothing changed"));
        }
        ClusterError::Conflict(_) | ClusterError::Taken { .. } => ErrorKind::Conflict,
        ClusterError::InUse(_) => ErrorKind::InUse,
        ClusterError::NotFound(_) => ErrorKind::NotFound,
        ClusterError::Config(_) => ErrorKind::InvalidArgument,
        ClusterError::Internal(_) => ErrorKind::Internal,
    };
    CtlError::new(kind, e.to_string())
}

/// The refusal of a request that needs the store while it is unreachable.
fn unreachable_error(status: &cluster::StoreStatus) -> CtlError {
    let why = status.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    CtlError::new(ErrorKind::Unavailable, format!("cluster store unreachable{why}: nothing changed; try again later"))
}

/// Hands one network's cluster view to the datapath.
fn apply_view(
    datapath: &crate::daemon::datapath::DatapathHandle,
    network: crate::port::NetworkId,
    view: &View,
) -> Result<(), DatapathError> {
    let endpoints = view
        .endpoints
        .iter()
        .map(|e| crate::daemon::datapath::RemoteEndpoint { mac: e.mac, ipv4: e.ipv4, ipv6: e.ipv6, vtep: e.vtep })
        .collect();
    datapath.set_cluster_view(network, view.peers.clone(), endpoints)
}

impl ClusterLink {
    /// A link to `handle`, whose store is at `endpoints`.
    pub(super) fn new(handle: Cluster, endpoints: Vec<String>) -> ClusterLink {
        ClusterLink {
            handle,
            endpoints,
            applied: HashMap::new(),
            names: Vec::new(),
            refused: HashSet::new(),
            ingress: Default::default(),
            republished: false,
        }
    }

    /// The datapath network `index` was removed: it has no view any more.
    pub(super) fn forget_view(&mut self, index: u32) {
        self.applied.remove(&index);
    }
}

impl Control {
    /// Makes this daemon a node of the cluster `handle` (whose store is at
    /// `endpoints`) and reconciles once with what the mirror already holds.
    pub fn attach_cluster(&mut self, handle: Cluster, endpoints: Vec<String>) {
        self.cluster = Some(ClusterLink::new(handle, endpoints));
        self.reconcile_cluster();
    }

    /// Ticks after each change of the cluster store (`None` without one).
    pub fn cluster_changes(&self) -> Option<crossbeam_channel::Receiver<()>> {
        self.cluster.as_ref().map(|c| c.handle.changes())
    }

    /// The store's client, when the daemon is a cluster node and the store
    /// is reachable; `unavailable` when it is not.
    pub(super) fn reachable_store(&self) -> Result<Option<Cluster>, CtlError> {
        let Some(link) = &self.cluster else { return Ok(None) };
        let status = link.handle.status();
        if !status.connected {
            return Err(unreachable_error(&status));
        }
        Ok(Some(link.handle.clone()))
    }

    /// The store's state for `show` and `node ls`.
    pub(super) fn store_state(&self) -> Option<StoreState> {
        let link = self.cluster.as_ref()?;
        let status = link.handle.status();
        Some(StoreState {
            endpoints: link.endpoints.clone(),
            node: link.handle.node().to_owned(),
            connected: status.connected,
            revision: status.revision,
            last_error: status.last_error,
        })
    }

    /// Whether `network_create` of `req` goes to the cluster store.
    pub(super) fn creates_in_cluster(&self, req: &CreateNetwork) -> bool {
        self.cluster.is_some() && req.driver == proto::Driver::Overlay
    }

    /// The cluster network `name` (name or id) of this node, if it is one
    /// and the daemon is a cluster node.
    fn cluster_network(&self, name: &str) -> Option<Network> {
        self.cluster.as_ref()?;
        self.model.network(name).ok().filter(|n| n.cluster).cloned()
    }

    /// `network create -d overlay` in cluster mode: checked and shaped by
    /// the model, created in the store (which may choose the VNI and refuses
    /// a taken name, VNI or subnet), then made locally; removed from the
    /// store again if that fails.
    pub(super) fn cluster_network_create(&mut self, req: CreateNetwork) -> Reply {
        let vni = req.vni.unwrap_or(0);
        let mut draft = self.model.clone();
        let network = draft.create_network(req).map_err(model_error)?;
        let Some(store) = self.reachable_store()? else { return Err(CtlError::internal("no cluster store")) };
        let record = record_of(&network, vni, store.node())?;
        let created = store.create_network(record).map_err(cluster_error)?;
        let undo = |e: CtlError| {
            if let Err(undo) = store.remove_network(&created.name) {
                tracing::error!(network = %created.name, error = %undo, "cannot remove the network from the cluster store again");
            }
            e
        };
        let mut from_store = network_from_record(&created).map_err(|e| undo(CtlError::internal(e)))?;
        // Made from a configuration network here: it stays in use.
        from_store.config_from = network.config_from;
        let network = self.add_cluster_network(from_store).map_err(undo)?;
        tracing::info!(network = %network.name, vni = ?network.vni, "cluster network created");
        ok(self.network_info(&network))
    }

    /// Makes a network of the store locally: model, datapath, saved state.
    fn add_cluster_network(&mut self, network: Network) -> Result<Network, CtlError> {
        let mut next = self.model.clone();
        let network = next.adopt_network(network).map_err(model_error)?;
        self.events.update_names(&next);
        self.add_network_to_datapath(&network).map_err(datapath_error)?;
        if let Err(e) = self.commit(next) {
            let _ = self.datapath.remove_network(network_id(&network));
            return Err(e);
        }
        Ok(network)
    }

    /// `network rm` of a cluster network: refused unless the model would
    /// remove it locally, then removed from the store (refused there while
    /// any node holds addresses of it), then locally.
    pub(super) fn cluster_network_rm(&mut self, name: &str) -> Option<Reply> {
        let network = self.cluster_network(name)?;
        Some((|| {
            self.model.clone().remove_network(&network.id).map_err(model_error)?;
            let store = self.reachable_store()?.ok_or_else(|| CtlError::internal("no cluster store"))?;
            match store.remove_network(&network.name) {
                Ok(()) | Err(ClusterError::NotFound(_)) => {}
                Err(e) => return Err(cluster_error(e)),
            }
            // Gone from the cluster now: if it cannot be saved as gone
            // here, the reconciler removes it at its next pass.
            self.remove_network_locally(&network.id).map_err(|e| CtlError {
                message: format!(
                    "{} was removed from the cluster store, but not yet here ({}); it will be at the next reconcile",
                    network.name, e.message
                ),
                ..e
            })
        })())
    }

    /// `network connect` to a cluster network: the lowest address free
    /// both here and in the store is claimed (the next one is tried when
    /// another node wins it), then the endpoint is made locally and its
    /// record published. Any failure releases the claims.
    pub(super) fn cluster_connect(&mut self, req: &Connect) -> Option<Reply> {
        let network = self.cluster_network(&req.network)?;
        Some(self.cluster_connect_to(&network, req))
    }

    fn cluster_connect_to(&mut self, network: &Network, req: &Connect) -> Reply {
        let mut exclude: BTreeSet<IpAddr> = match &self.cluster {
            Some(link) => link.handle.mirror().taken_addresses(&network.id),
            None => BTreeSet::new(),
        };
        for _ in 0..CLAIM_ATTEMPTS {
            let mut next = self.model.clone();
            let endpoint = next.connect(Connect { exclude: exclude.clone(), ..req.clone() }).map_err(model_error)?;
            let store = self.reachable_store()?.ok_or_else(|| CtlError::internal("no cluster store"))?;
            let claim = AddressClaim { node: store.node().to_owned(), endpoint_id: endpoint.id.clone() };
            let mut claimed = Vec::new();
            let mut failed = None;
            for ip in addresses_of(&endpoint) {
                match store.claim_address(&network.id, ip, claim.clone()) {
                    Ok(()) => claimed.push(ip),
                    Err(e) => {
                        failed = Some((ip, e));
                        break;
                    }
                }
            }
            let endpoint_id = endpoint.id.clone();
            let release = |claimed: &[IpAddr]| {
                for ip in claimed {
                    if let Err(e) = store.release_address(&network.id, *ip, &endpoint_id) {
                        tracing::warn!(%ip, error = %e, "cannot release a claim; the next reconcile will");
                    }
                }
            };
            match failed {
                None => {}
                Some((ip, ClusterError::Taken { .. }))
                    if (ip.is_ipv4() && req.ipv4.is_none()) || (ip.is_ipv6() && req.ipv6.is_none()) =>
                {
                    // Another node took it since the mirror was read.
                    release(&claimed);
                    exclude.insert(ip);
                    continue;
                }
                Some((_, e)) => {
                    release(&claimed);
                    return Err(cluster_error(e));
                }
            }
            let record = endpoint_record(&endpoint, store.node());
            let result = self.connect_endpoint(next, endpoint, Some((&store, record)));
            if result.is_err() {
                release(&claimed);
            }
            return result;
        }
        Err(CtlError::new(
            ErrorKind::Conflict,
            format!("no free address on network {}: other nodes took every one tried", network.name),
        ))
    }

    /// `network disconnect` from a cluster network: the record is withdrawn
    /// first (refused if the store is unreachable), then the endpoint goes
    /// locally, then its addresses are released.
    pub(super) fn cluster_disconnect(&mut self, network: &str, sandbox: &str) -> Option<Reply> {
        let net = self.cluster_network(network)?;
        Some((|| {
            let endpoint = self.model.endpoint_for(network, sandbox).map_err(model_error)?.clone();
            let store = self.reachable_store()?.ok_or_else(|| CtlError::internal("no cluster store"))?;
            store.withdraw_endpoint(&net.id, &endpoint.id).map_err(cluster_error)?;
            let reply = self.disconnect_as(network, sandbox, proto::PortChange::Disconnected);
            match &reply {
                Ok(_) => {
                    for ip in addresses_of(&endpoint) {
                        if let Err(e) = store.release_address(&net.id, ip, &endpoint.id) {
                            tracing::warn!(%ip, error = %e, "cannot release a claim; the next reconcile will");
                        }
                    }
                }
                Err(_) => {
                    if let Err(e) = store.publish_endpoint(endpoint_record(&endpoint, store.node())) {
                        tracing::warn!(error = %e, "cannot publish the endpoint again; the next reconcile will");
                    }
                }
            }
            reply
        })())
    }

    /// `node ls`.
    pub(super) fn node_ls(&self) -> Reply {
        let (Some(link), Some(store)) = (&self.cluster, self.store_state()) else {
            return Err(no_cluster());
        };
        let mirror = link.handle.mirror();
        let network_name = |id: &str| mirror.network_by_id(id).map_or_else(|| id.to_owned(), |n| n.name.clone());
        let nodes = mirror
            .known_nodes()
            .into_iter()
            .map(|name| {
                let record = mirror.nodes.get(name);
                let (endpoints, networks): (u64, BTreeSet<String>) = if record.is_some() {
                    let records: Vec<&EndpointRecord> = mirror.endpoints_of_node(name).collect();
                    (records.len() as u64, records.iter().map(|r| network_name(&r.network_id)).collect())
                } else {
                    let claims: Vec<(&str, IpAddr, &AddressClaim)> = mirror.claims_of_node(name).collect();
                    let ids: BTreeSet<&str> = claims.iter().map(|(_, _, c)| c.endpoint_id.as_str()).collect();
                    (ids.len() as u64, claims.iter().map(|(n, ..)| network_name(n)).collect())
                };
                NodeInfo {
                    name: name.to_owned(),
                    vtep: record.map(|r| r.vtep),
                    status: if record.is_some() { NodeStatus::Ready } else { NodeStatus::Down },
                    is_self: name == link.handle.node(),
                    endpoints,
                    networks: networks.into_iter().collect(),
                }
            })
            .collect();
        ok(NodeList { store, nodes })
    }

    /// `node rm NAME`.
    pub(super) fn node_rm(&mut self, name: &str) -> Reply {
        let store = self.node_rm_store(name)?;
        remove_node(&store, name)
    }

    /// The store `node rm NAME` releases the node's keys in, once the
    /// request passed the checks that need the control state (a cluster,
    /// not this node, the store reachable). The server then releases them
    /// with the control lock released ([`remove_node`]).
    pub fn node_rm_store(&self, name: &str) -> Result<Cluster, CtlError> {
        let Some(link) = &self.cluster else { return Err(no_cluster()) };
        if name == link.handle.node() {
            return Err(CtlError::new(ErrorKind::InUse, format!("node {name} is this node")));
        }
        self.reachable_store()?.ok_or_else(no_cluster)
    }

    /// Brings this node in line with the cluster store (see the module's
    /// documentation). Never fails: what cannot be done is logged and
    /// retried at the next reconcile.
    pub fn reconcile_cluster(&mut self) {
        let Some(link) = &self.cluster else { return };
        let handle = link.handle.clone();
        let status = handle.status();
        let mirror = handle.mirror();
        let node = handle.node().to_owned();
        let loaded = status.connected && mirror.revision > 0;
        let republish = loaded && !link.republished;
        let plan = plan_store(&self.model, &mirror, &node, loaded, republish);
        for network in plan.adopt {
            let (id, name) = (network.id.clone(), network.name.clone());
            match self.add_cluster_network(network) {
                Ok(network) => tracing::info!(network = %network.name, vni = ?network.vni, "cluster network added"),
                Err(e) => {
                    if self.cluster.as_mut().is_some_and(|l| l.refused.insert(id)) {
                        tracing::error!(network = %name, error = %e.message, "cannot add a cluster network here");
                    }
                }
            }
        }
        for (id, why) in plan.invalid {
            if self.cluster.as_mut().is_some_and(|l| l.refused.insert(id.clone())) {
                tracing::error!(network = %id, error = %why, "skipping a cluster network record");
            }
        }
        for name in plan.drop {
            match self.model.network(&name).map(|n| n.id.clone()) {
                Ok(id) => match self.remove_network_locally(&id) {
                    Ok(_) => tracing::info!(network = %name, "cluster network removed"),
                    Err(e) => tracing::error!(network = %name, error = %e.message, "cannot remove a cluster network"),
                },
                Err(e) => tracing::error!(network = %name, error = %e, "cannot remove a cluster network"),
            }
        }
        for conflict in plan.conflicts {
            tracing::error!("cluster: {conflict}");
        }
        for (network, ip, claim) in plan.claim {
            match handle.claim_address(&network, ip, claim) {
                Ok(()) => tracing::info!(%ip, %network, "cluster: claimed a local endpoint's address again"),
                Err(e) => {
                    tracing::error!(%ip, %network, error = %e, "cluster: cannot claim a local endpoint's address")
                }
            }
        }
        let mut published = true;
        for record in plan.publish {
            let endpoint = record.endpoint_id.clone();
            if let Err(e) = handle.publish_endpoint(record) {
                published = false;
                tracing::warn!(%endpoint, error = %e, "cluster: cannot publish an endpoint");
            }
        }
        if republish
            && published
            && let Some(link) = self.cluster.as_mut()
        {
            link.republished = true;
        }
        for (network, endpoint) in plan.withdraw {
            if let Err(e) = handle.withdraw_endpoint(&network, &endpoint) {
                tracing::warn!(%endpoint, error = %e, "cluster: cannot withdraw a stale endpoint record");
            }
        }
        for (network, ip, endpoint) in plan.release {
            match handle.release_address(&network, ip, &endpoint) {
                Ok(()) => tracing::info!(%ip, %network, "cluster: released a stale claim"),
                Err(e) => tracing::warn!(%ip, error = %e, "cluster: cannot release a stale claim"),
            }
        }
        self.reconcile_ingress(&mirror, &node, loaded);
        self.apply_views(&mirror, &node);
        self.reconcile_keys();
    }

    /// Gives the datapath the views that changed and the embedded DNS the
    /// remote names, if they changed.
    fn apply_views(&mut self, mirror: &Mirror, node: &str) {
        let (views, names) = desired_views(&self.model, mirror, node);
        let Some(link) = self.cluster.as_mut() else { return };
        link.applied.retain(|index, _| views.contains_key(index));
        let empty = View::default();
        for (index, view) in views {
            if link.applied.get(&index).unwrap_or(&empty) == &view {
                continue;
            }
            let network = crate::port::NetworkId(index);
            match apply_view(&self.datapath, network, &view) {
                Ok(()) => {
                    tracing::debug!(
                        network = index,
                        peers = view.peers.len(),
                        endpoints = view.endpoints.len(),
                        "cluster view applied"
                    );
                    link.applied.insert(index, view);
                }
                Err(e) => tracing::error!(network = index, error = %e, "cannot apply the cluster view"),
            }
        }
        if link.names != names {
            link.names = names;
            self.sync_dns();
        }
    }
}

/// Releases a dead node's keys in `store`: as many store requests as it
/// holds keys (pages, txn chunks), each bounded by the request timeout but
/// not the whole, so the control server runs it without the control lock.
pub fn remove_node(store: &Cluster, name: &str) -> Reply {
    let released = store.remove_node(name).map_err(cluster_error)?;
    ok(NodeRmResult { released: released as u64 })
}

/// The refusal of a cluster verb by a daemon without a store.
fn no_cluster() -> CtlError {
    CtlError::new(ErrorKind::NotSupported, "this vswitchd has no cluster store (start it with --cluster-store)")
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use cluster::{KvEvent, NodeRecord};
    use ctl::proto::Driver;

    use super::*;

    /// The store prefix of the mirrors these tests (and the ingress tests) build.
    pub(in crate::daemon::control) const PREFIX: &str = cluster::DEFAULT_PREFIX;

    /// Applies a put of `value` (as JSON) at `PREFIX/key` to `mirror`.
    pub(in crate::daemon::control) fn put(mirror: &mut Mirror, key: &str, value: impl serde::Serialize) {
        let revision = mirror.revision + 1;
        let event = KvEvent::Put {
            key: format!("{PREFIX}/{key}"),
            value: serde_json::to_vec(&value).unwrap(),
            mod_revision: revision,
        };
        mirror.apply(PREFIX, event);
    }

    /// Applies a delete of `PREFIX/key` to `mirror`.
    pub(in crate::daemon::control) fn delete(mirror: &mut Mirror, key: &str) {
        let revision = mirror.revision + 1;
        mirror.apply(PREFIX, KvEvent::Delete { key: format!("{PREFIX}/{key}"), mod_revision: revision });
    }

    /// Makes node `name` (VTEP `vtep`) live in `mirror`.
    pub(in crate::daemon::control) fn node(mirror: &mut Mirror, name: &str, vtep: &str) {
        let record = NodeRecord {
            name: name.into(),
            vtep: vtep.parse().unwrap(),
            version: "0".into(),
            started_unix: 0,
            public_key: None,
        };
        put(mirror, &format!("nodes/{name}"), record);
    }

    /// A model on node `a` with the cluster overlay `ov` (10.50.0.0/24,
    /// created by node `b`) and sandboxes web and db; the mirror holds `ov`
    /// and the live nodes a and b.
    fn setup() -> (Model, Mirror, NetworkRecord) {
        let mut origin = Model::new();
        let req = CreateNetwork {
            subnet: Some("10.50.0.0/24".parse().unwrap()),
            attachable: true,
            ..CreateNetwork::new("ov", Driver::Overlay)
        };
        let network = origin.create_network(req).unwrap();
        let record = record_of(&network, 4100, "b").unwrap();
        let mut mirror = Mirror::default();
        put(&mut mirror, "networks/ov", &record);
        node(&mut mirror, "a", "192.0.2.1:4789");
        node(&mut mirror, "b", "192.0.2.2:4789");
        let mut model = Model::new();
        for s in ["web", "db"] {
            model.create_sandbox(crate::model::CreateSandbox::new(s)).unwrap();
        }
        (model, mirror, record)
    }

    #[test]
    fn a_record_becomes_the_same_network_and_back() {
        let (mut model, mirror, record) = setup();
        let plan = plan_store(&model, &mirror, "a", true, false);
        assert_eq!(plan.adopt.len(), 1, "{plan:?}");
        let network = model.adopt_network(plan.adopt[0].clone()).unwrap();
        assert_eq!((network.id.as_str(), network.vni, network.cluster), (record.id.as_str(), Some(4100), true));
        assert_eq!(network.subnet, Some("10.50.0.0/24".parse().unwrap()));
        assert_eq!(network.gateway, Some("10.50.0.1".parse().unwrap()));
        assert!(network.attachable);
        let again = record_of(&network, 4100, "b").unwrap();
        assert_eq!(
            (again.id, again.name, again.subnets),
            (record.id.clone(), record.name.clone(), record.subnets.clone())
        );
        assert_eq!(plan_store(&model, &mirror, "a", true, false), StorePlan::default(), "nothing left to do");

        // A record that is not an overlay network is refused, not adopted.
        let mut bad = record.clone();
        bad.spec = serde_json::json!({"name": "x"});
        assert!(network_from_record(&bad).is_err());
        let mut bridge = record;
        bridge.spec["driver"] = serde_json::json!("bridge");
        assert!(network_from_record(&bridge).unwrap_err().contains("not an overlay"));
    }

    #[test]
    fn a_record_names_no_configuration_network_and_adoption_keeps_only_a_local_one() {
        let mut origin = Model::new();
        let cfg = CreateNetwork {
            config_only: true,
            subnet: Some("10.62.0.0/24".parse().unwrap()),
            ..CreateNetwork::new("cfg", Driver::Overlay)
        };
        origin.create_config_network(cfg).unwrap();
        let mut req = CreateNetwork { config_from: Some("cfg".into()), ..CreateNetwork::new("ov", Driver::Overlay) };
        origin.apply_config_from(&mut req).unwrap();
        let made = origin.create_network(req).unwrap();
        let record = record_of(&made, made.vni.unwrap(), "a").unwrap();
        assert!(record.spec.get("config_from").is_none(), "{}", record.spec);
        let from_store = network_from_record(&record).unwrap();
        assert_eq!(from_store.config_from, None);
        // Another node adopts it as is; a record naming a configuration
        // network this model lacks is refused, not linked to a stranger.
        let mut other = Model::new();
        let stray = Network { config_from: Some("cfg".into()), ..from_store.clone() };
        assert!(other.clone().adopt_network(stray).is_err());
        assert_eq!(other.adopt_network(from_store).unwrap().config_from, None);
    }

    #[test]
    fn automatic_addresses_skip_those_claimed_elsewhere() {
        let (mut model, mut mirror, record) = setup();
        model.adopt_network(network_from_record(&record).unwrap()).unwrap();
        let claim = AddressClaim { node: "b".into(), endpoint_id: "e1".into() };
        put(&mut mirror, &format!("addresses/{}/10.50.0.2", record.id), &claim);
        put(&mut mirror, &format!("addresses/{}/10.50.0.3", record.id), &claim);
        let exclude = mirror.taken_addresses(&record.id);
        let ep = model.connect(Connect { exclude, ..Connect::new("ov", "web") }).unwrap();
        assert_eq!(ep.ipv4, Some("10.50.0.4".parse().unwrap()));
        // A given address is the store's to refuse, not the model's.
        let exclude: BTreeSet<IpAddr> = ["10.50.0.9".parse().unwrap()].into();
        let given = Connect { ipv4: Some("10.50.0.9".parse().unwrap()), exclude, ..Connect::new("ov", "db") };
        assert_eq!(model.connect(given).unwrap().ipv4, Some("10.50.0.9".parse().unwrap()));
    }

    #[test]
    fn a_dual_stack_network_claims_both_families() {
        let mut origin = Model::new();
        let req = CreateNetwork {
            subnet: Some("10.53.0.0/24".parse().unwrap()),
            enable_ipv6: true,
            subnet6: Some("fd00:53::/64".parse().unwrap()),
            attachable: true,
            ..CreateNetwork::new("dual", Driver::Overlay)
        };
        let record = record_of(&origin.create_network(req).unwrap(), 0, "b").unwrap();
        assert_eq!(record.subnets.len(), 2, "{record:?}");
        let mut mirror = Mirror::default();
        put(&mut mirror, "networks/dual", &record);
        node(&mut mirror, "a", "192.0.2.1:4789");
        let claim = AddressClaim { node: "b".into(), endpoint_id: "e1".into() };
        put(&mut mirror, &format!("addresses/{}/fd00:53::2", record.id), &claim);
        let mut model = Model::new();
        model.create_sandbox(crate::model::CreateSandbox::new("web")).unwrap();
        let network = model.adopt_network(network_from_record(&record).unwrap()).unwrap();
        assert_eq!(network.subnet6, Some("fd00:53::/64".parse().unwrap()));
        let exclude = mirror.taken_addresses(&record.id);
        let ep = model.connect(Connect { exclude, ..Connect::new("dual", "web") }).unwrap();
        assert_eq!(ep.ipv4, Some("10.53.0.2".parse().unwrap()), "the IPv4 side is free");
        assert_eq!(ep.ipv6, Some("fd00:53::3".parse().unwrap()), "the IPv6 side skips b's claim");
        let plan = plan_store(&model, &mirror, "a", true, false);
        let claimed: Vec<IpAddr> = plan.claim.iter().map(|(_, ip, _)| *ip).collect();
        assert_eq!(claimed, ["10.53.0.2".parse::<IpAddr>().unwrap(), "fd00:53::3".parse().unwrap()]);
        assert_eq!(plan.publish[0].ipv6, ep.ipv6);
    }

    #[test]
    fn reconcile_publishes_claims_withdraws_and_releases() {
        let (mut model, mut mirror, record) = setup();
        model.adopt_network(network_from_record(&record).unwrap()).unwrap();
        let web = model.connect(Connect::new("ov", "web")).unwrap();
        let ip = IpAddr::V4(web.ipv4.unwrap());

        // Restarted after kill -9: the claim is there, the record is not.
        let claim = AddressClaim { node: "a".into(), endpoint_id: web.id.clone() };
        put(&mut mirror, &format!("addresses/{}/{ip}", record.id), &claim);
        let plan = plan_store(&model, &mirror, "a", true, false);
        assert_eq!(plan.publish, [endpoint_record(&web, "a")]);
        assert!(plan.claim.is_empty() && plan.withdraw.is_empty() && plan.release.is_empty(), "{plan:?}");
        assert!(
            plan_store(&model, &mirror, "a", false, false).publish.is_empty(),
            "nothing written before the store is read"
        );
        assert!(plan_store(&model, &mirror, "a", false, true).publish.is_empty(), "nor when asked to republish");

        // Published: nothing to do. A claim lost (node rm): claimed again.
        put(&mut mirror, &format!("endpoints/{}/{}", record.id, web.id), endpoint_record(&web, "a"));
        assert_eq!(plan_store(&model, &mirror, "a", true, false), StorePlan::default());
        // After a start, published again all the same (under the new lease).
        assert_eq!(plan_store(&model, &mirror, "a", true, true).publish, [endpoint_record(&web, "a")]);
        delete(&mut mirror, &format!("addresses/{}/{ip}", record.id));
        assert_eq!(plan_store(&model, &mirror, "a", true, false).claim, [(record.id.clone(), ip, claim.clone())]);
        // Taken by another node meanwhile: a conflict, reported.
        put(
            &mut mirror,
            &format!("addresses/{}/{ip}", record.id),
            AddressClaim { node: "b".into(), endpoint_id: "x".into() },
        );
        assert_eq!(plan_store(&model, &mirror, "a", true, false).conflicts.len(), 1);
        put(&mut mirror, &format!("addresses/{}/{ip}", record.id), &claim);

        // The sandbox went while the store was away: record and claim go.
        model.remove_sandbox("web").unwrap();
        let plan = plan_store(&model, &mirror, "a", true, false);
        assert_eq!(plan.withdraw, [(record.id.clone(), web.id.clone())]);
        assert_eq!(plan.release, [(record.id.clone(), ip, web.id.clone())]);
        // Another node's records are not this node's to touch.
        assert_eq!(plan_store(&model, &mirror, "b", true, false).withdraw, [], "b has no records");
    }

    #[test]
    fn a_network_whose_record_went_is_dropped_unless_it_has_local_endpoints() {
        let (mut model, mut mirror, record) = setup();
        model.adopt_network(network_from_record(&record).unwrap()).unwrap();
        delete(&mut mirror, "networks/ov");
        assert_eq!(plan_store(&model, &mirror, "a", true, false).drop, ["ov"]);
        assert!(plan_store(&model, &mirror, "a", false, false).drop.is_empty(), "an unread mirror removes nothing");
        model.connect(Connect::new("ov", "db")).unwrap();
        assert!(plan_store(&model, &mirror, "a", true, false).drop.is_empty(), "kept while it has endpoints here");
        // Local networks are never dropped.
        model.create_network(CreateNetwork::new("local", Driver::Bridge)).unwrap();
        assert!(!plan_store(&model, &mirror, "a", true, false).drop.contains(&"local".to_owned()));
    }

    #[test]
    fn with_the_store_unreachable_cluster_requests_are_refused_and_change_nothing() {
        use ctl::proto::Request;

        use super::super::scratch::{Scratch, network_create};

        let mut s = Scratch::new("cluster-down");
        // A cluster network this node already has (adopted earlier).
        let (_, _, record) = setup();
        s.c().add_cluster_network(network_from_record(&record).unwrap()).unwrap();
        // A sandbox to connect (its namespace is real: a unique name).
        let sandbox = format!("vswcl{}", std::process::id());
        let created = s.c().handle(Request::SandboxCreate {
            name: sandbox.clone(),
            dns: vec![],
            dns_search: vec![],
            dns_options: vec![],
            extra_hosts: vec![],
            netns: None,
        });
        if let Err(e) = created {
            return eprintln!("SKIPPED: cannot create a sandbox here ({})", e.message);
        }
        // Nothing listens on port 1 of the loopback: the store is unreachable.
        let config = cluster::ClusterConfig::new(
            vec!["http://127.0.0.1:1".into()],
            "a",
            "127.0.0.1:4789".parse().unwrap(),
            None,
        );
        let handle = Cluster::start(config).unwrap();
        s.c().attach_cluster(handle, vec!["http://127.0.0.1:1".into()]);
        let state = s.c().store_state().unwrap();
        assert!(!state.connected, "{state:?}");
        let before = s.state();

        let connect = Request::NetworkConnect {
            network: "ov".into(),
            sandbox: sandbox.clone(),
            ip: None,
            ip6: None,
            aliases: vec![],
            mac: None,
            publish: vec![],
            service: None,
            port_type: proto::PortType::Tap,
            gw_priority: 0,
            ifname: None,
        };
        for request in [
            network_create("ov2", proto::Driver::Overlay, "10.51.0.0/24", true, &[]),
            Request::NetworkRm { name: "ov".into() },
            connect,
            Request::NodeRm { name: "b".into() },
        ] {
            let e = s.c().handle(request.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unavailable, "{request:?}: {}", e.message);
            assert!(e.message.contains("cluster store unreachable"), "{}", e.message);
            assert_eq!(s.state(), before, "{request:?} changed the state");
        }
        // A stack with an overlay does not bypass the store either.
        let stack: ctl::stack::Stack =
            serde_json::from_value(serde_json::json!({"networks": [{"name": "ov3", "driver": "overlay"}]})).unwrap();
        let e = s.c().handle(Request::StackApply { stack, dry_run: false, source: None }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported, "{}", e.message);
        assert!(e.message.contains("network create"), "{}", e.message);
        assert_eq!(s.state(), before, "a refused stack changed the state");
        // Nor does a stack service on a cluster network (it would be host mode, not ingress).
        let stack: ctl::stack::Stack = serde_json::from_value(serde_json::json!({
            "networks": [{"name": "ov", "external": true}],
            "services": [{"name": "lb", "network": "ov", "ports": [{"host_port": 9090, "container_port": 90}]}]
        }))
        .unwrap();
        let e = s.c().handle(Request::StackApply { stack, dry_run: false, source: None }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported, "{}", e.message);
        assert!(e.message.contains("service lb") && e.message.contains("service publish"), "{}", e.message);
        assert_eq!(s.state(), before, "a refused stack changed the state");
        // Bridge networks stay local and work without the store.
        s.c().handle(network_create("br", proto::Driver::Bridge, "10.52.0.0/24", false, &[])).unwrap();
        let Ok(list) = serde_json::from_value::<NodeList>(s.c().handle(Request::NodeLs).unwrap()) else {
            panic!("node ls does not decode")
        };
        assert!(!list.store.connected && list.store.node == "a");
        s.c().handle(Request::SandboxRm { name: sandbox }).unwrap();
    }

    #[test]
    fn views_extend_lazily_and_names_resolve_everywhere() {
        let (mut model, mut mirror, record) = setup();
        let index = model.adopt_network(network_from_record(&record).unwrap()).unwrap().network_index;
        let remote = EndpointRecord {
            network_id: record.id.clone(),
            endpoint_id: "r1".into(),
            node: "b".into(),
            name: "api".into(),
            aliases: vec!["backend".into()],
            mac: "02:42:0a:32:00:07".into(),
            ipv4: Some("10.50.0.7".parse().unwrap()),
            ipv6: None,
            service: None,
        };
        put(&mut mirror, &format!("endpoints/{}/r1", record.id), &remote);
        let (views, names) = desired_views(&model, &mirror, "a");
        assert_eq!(views, BTreeMap::from([(index, View::default())]), "no local endpoints: no tunnels");
        assert_eq!(names.len(), 1);
        assert_eq!((names[0].name.as_str(), names[0].ipv4), ("api", remote.ipv4));

        model.connect(Connect::new("ov", "web")).unwrap();
        let (views, _) = desired_views(&model, &mirror, "a");
        let want = View {
            peers: vec!["192.0.2.2:4789".parse().unwrap()],
            endpoints: vec![RemoteView {
                mac: "02:42:0a:32:00:07".parse().unwrap(),
                ipv4: remote.ipv4,
                ipv6: None,
                vtep: "192.0.2.2:4789".parse().unwrap(),
            }],
        };
        assert_eq!(views[&index], want);
        // b dies (its lease and record go): its endpoints leave the view and DNS.
        delete(&mut mirror, "nodes/b");
        let (views, names) = desired_views(&model, &mirror, "a");
        assert_eq!((views[&index].clone(), names.len()), (View::default(), 0));
    }
}
