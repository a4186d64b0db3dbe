//! The ingress routing mesh (cluster mode), as Docker swarm's: a service
//! published in `ingress` mode on a cluster overlay network is a record of
//! the store (`P/services/NAME`), so every node with the network listens on
//! its ports, and each node balances new connections over every replica in
//! the cluster.
//!
//! - A replica on this node is reached as today: its own address, the
//!   client's address preserved.
//! - A replica on another node (an endpoint record naming the service) is
//!   reached from this node's *mesh station* on the network: an address this
//!   node claims in the store (endpoint id `mesh-NODE`) and publishes as an
//!   endpoint record with a per-node MAC ([`mesh_mac`]) and no DNS name. The
//!   translator uses it as the source of such flows (source NAT: the replica
//!   sees the mesh address, not the client, as with Docker's ingress
//!   network); the replica's node answers its ARP with the mesh MAC (proxy
//!   ARP, the mesh record being a remote endpoint there) and tunnels the
//!   answers back here, where the datapath hands them to the translator.
//! - A node's mesh station exists while it has an ingress service on the
//!   network; it is withdrawn and its address released afterwards.
//!
//! Reconcile (under the control lock, after each change of the store):
//! services are adopted, changed and removed as the store has them, mesh
//! stations claimed and applied, and each ingress service's backends
//! recomputed (a node that dies takes its replicas out within its lease's
//! TTL).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use cluster::{AddressClaim, ClusterError, EndpointRecord, Mirror, ServiceRecord};
use ctl::proto::{CtlError, ServiceMode};
use ctl::{MacAddr, PortMapping};

use super::cluster::cluster_error;
use super::publish::{keys, publications, service_publications};
use super::{Control, Reply, model_error, network_id, ok};
use crate::model::{Model, Network, Service};
use crate::nat::{Backend, Mesh, Publication};

/// How many addresses a mesh claim tries when others keep taking them.
const MESH_CLAIM_ATTEMPTS: usize = 16;

/// The endpoint id of `node`'s mesh station (on every network).
pub(super) fn mesh_id(node: &str) -> String {
    format!("mesh-{node}")
}

/// The MAC of `node`'s mesh stations: `02:6d` (`m`) and a 32-bit FNV-1a
/// hash of the node's name (locally administered, unicast, the same on
/// every network, never an endpoint's `02:42:…` nor a gateway's `02:76:…`
/// or `02:77:…`; another node's collides with odds of 1 in 2^32 per pair).
pub(super) fn mesh_mac(node: &str) -> MacAddr {
    let hash = node.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let [a, b, c, d] = hash.to_be_bytes();
    MacAddr([0x02, 0x6d, a, b, c, d])
}

/// Whether this node wants a mesh station on `network_id`: it has an
/// ingress service there.
pub(super) fn wants_mesh(model: &Model, network_id: &str) -> bool {
    model.services().any(|s| s.mode == ServiceMode::Ingress && s.network_id == network_id)
}

/// The store record of an ingress service.
pub(super) fn service_record(service: &Service, created_by: &str) -> Result<ServiceRecord, CtlError> {
    let ports = serde_json::to_value(&service.publish)
        .map_err(|e| CtlError::internal(format!("cannot encode the service's ports: {e}")))?;
    Ok(ServiceRecord {
        name: service.name.clone(),
        network_id: service.network_id.clone(),
        ports,
        mode: ServiceMode::Ingress.as_str().to_owned(),
        created_by: created_by.to_owned(),
    })
}

/// The service a store record describes (`created` is the caller's).
pub(super) fn service_from_record(record: &ServiceRecord, created: String) -> Result<Service, String> {
    if record.mode != ServiceMode::Ingress.as_str() {
        return Err(format!("mode {:?} is not ingress", record.mode));
    }
    let publish: Vec<PortMapping> =
        serde_json::from_value(record.ports.clone()).map_err(|e| format!("its ports do not parse: {e}"))?;
    Ok(Service {
        name: record.name.clone(),
        network_id: record.network_id.clone(),
        publish,
        created,
        mode: ServiceMode::Ingress,
    })
}

/// Whether two services publish the same thing (their creation times aside).
fn same_service(a: &Service, b: &Service) -> bool {
    (&a.network_id, &a.publish, a.mode) == (&b.network_id, &b.publish, b.mode)
}

/// The other nodes' replicas of an ingress service, as backends reached
/// through this node's mesh station (none for a `host` service).
pub(super) fn remote_backends(
    model: &Model,
    mirror: &Mirror,
    node: &str,
    service: &Service,
    port: u16,
) -> Vec<Backend> {
    if service.mode != ServiceMode::Ingress {
        return Vec::new();
    }
    let Some(network) = model.network_by_id(&service.network_id) else { return Vec::new() };
    let mut records: Vec<&EndpointRecord> = mirror.remote_replicas(&service.network_id, &service.name, node).collect();
    records.sort_by(|a, b| (&a.node, &a.endpoint_id).cmp(&(&b.node, &b.endpoint_id)));
    records
        .into_iter()
        .filter(|r| r.ipv4.is_some() || r.ipv6.is_some())
        .filter_map(|r| {
            let mac: MacAddr = r.mac.parse().ok()?;
            Some(Backend { network: network_id(network), ipv4: r.ipv4, ipv6: r.ipv6, mac, port, via_mesh: true })
        })
        .collect()
}

/// The publications of `service` with every replica it has: this node's
/// and, for an ingress service, the other nodes' in `mirror`.
pub(super) fn mesh_publications(model: &Model, mirror: Option<(&Mirror, &str)>, service: &Service) -> Vec<Publication> {
    let mut pubs = service_publications(model, service);
    if let Some((mirror, node)) = mirror
        && service.mode == ServiceMode::Ingress
    {
        let remote = |m: &PortMapping| remote_backends(model, mirror, node, service, m.container_port);
        for (publication, extra) in pubs.iter_mut().zip(publications(&service.publish, remote)) {
            publication.backends.extend(extra.backends);
        }
    }
    pubs
}

/// The ingress mesh's state in the control plane (cluster mode only).
#[derive(Debug, Default)]
pub(super) struct IngressState {
    /// The mesh stations given to the datapath, by network index.
    meshes: HashMap<u32, Mesh>,
    /// The publications last given to the datapath, by service.
    applied: HashMap<String, Vec<Publication>>,
    /// Failures already logged (by what failed), to log each once.
    refused: HashSet<String>,
    /// Services this node just wrote (`Some`) or removed (`None`) in the
    /// store, with when: until the mirror shows that (or [`PENDING_FOR`]
    /// passed), reconcile leaves them alone instead of undoing the request
    /// from a mirror that has not seen it yet.
    pending: HashMap<String, (Option<ServiceRecord>, Instant)>,
    /// Networks whose mesh record this incarnation published (once after a
    /// start it is published even if the mirror holds the same record: it
    /// may be under a killed incarnation's lease).
    published: HashSet<String>,
}

/// How long a service this node wrote waits for the mirror to show it.
const PENDING_FOR: Duration = Duration::from_secs(10);

impl IngressState {
    /// Notes that this node wrote (or removed) service `name` in the store.
    fn wrote(&mut self, name: &str, record: Option<ServiceRecord>) {
        self.pending.insert(name.to_owned(), (record, Instant::now()));
    }

    /// Whether service `name` waits for the mirror to show this node's
    /// write; forgets the write once it shows (or is too old).
    fn waits(&mut self, name: &str, mirror: &Mirror) -> bool {
        let Some((record, at)) = self.pending.get(name) else { return false };
        if mirror.services.get(name) == record.as_ref() || at.elapsed() > PENDING_FOR {
            self.pending.remove(name);
            return false;
        }
        true
    }
}

/// This node's mesh addresses on `network` in `mirror` (one per family).
fn mesh_claims(mirror: &Mirror, network: &Network, node: &str) -> Vec<IpAddr> {
    let id = mesh_id(node);
    let mut claims: Vec<IpAddr> = mirror
        .claims_of_node(node)
        .filter(|(net, _, claim)| *net == network.id && claim.endpoint_id == id)
        .map(|(_, ip, _)| ip)
        .collect();
    claims.sort();
    claims
}

/// Addresses of `network` someone holds: claimed in the store, local
/// endpoints', the gateways', and the auxiliary ones (`--aux-address`,
/// held by hosts outside the switch).
fn taken(model: &Model, mirror: &Mirror, network: &Network) -> BTreeSet<IpAddr> {
    let mut taken = mirror.taken_addresses(&network.id);
    for e in model.endpoints_on_network(&network.id) {
        taken.extend(e.ipv4.map(IpAddr::V4).into_iter().chain(e.ipv6.map(IpAddr::V6)));
    }
    taken.extend(network.gateway.map(IpAddr::V4).into_iter().chain(network.gateway6.map(IpAddr::V6)));
    taken.extend(network.aux_addresses.values().copied());
    taken
}

/// Free IPv4 addresses of `network` for a mesh station, highest first (the
/// automatic addresses of endpoints are taken from the bottom).
fn mesh_candidates(model: &Model, mirror: &Mirror, network: &Network) -> Vec<Ipv4Addr> {
    let Some(subnet) = network.subnet else { return Vec::new() };
    let taken = taken(model, mirror, network);
    let mut free: Vec<Ipv4Addr> = subnet.hosts().filter(|ip| !taken.contains(&IpAddr::V4(*ip))).collect();
    free.reverse();
    free.truncate(MESH_CLAIM_ATTEMPTS);
    free
}

/// Free IPv6 addresses of `network` for `node`'s mesh station: interface
/// ids `0:6d:H:H` (H: the node's [`mesh_mac`] hash) and the next ones,
/// inside the subnet (none for a subnet of fewer than 256 addresses).
fn mesh_candidates6(model: &Model, mirror: &Mirror, network: &Network, node: &str) -> Vec<std::net::Ipv6Addr> {
    let Some(subnet) = network.subnet6 else { return Vec::new() };
    if subnet.prefix_len() > 120 {
        return Vec::new();
    }
    let taken = taken(model, mirror, network);
    let host_mask = u128::MAX >> subnet.prefix_len();
    let [_, _, a, b, c, d] = mesh_mac(node).0;
    let id = 0x6d_u128 << 32 | u128::from(u32::from_be_bytes([a, b, c, d]));
    let base = u128::from(subnet.network());
    (0..MESH_CLAIM_ATTEMPTS as u128)
        .map(|i| std::net::Ipv6Addr::from(base | ((id + i) & host_mask)))
        .filter(|ip| u128::from(*ip) & host_mask > 1 && !taken.contains(&IpAddr::V6(*ip)))
        .collect()
}

impl Control {
    /// The publications of `service` with every replica it has (see
    /// [`mesh_publications`]).
    pub(super) fn service_pubs(&self, service: &Service) -> Vec<Publication> {
        match &self.cluster {
            Some(link) => {
                let mirror = link.handle.mirror();
                mesh_publications(&self.model, Some((&mirror, link.handle.node())), service)
            }
            None => mesh_publications(&self.model, None, service),
        }
    }

    /// `service_publish` with its mode: `host` as before; `ingress` (the
    /// default on a cluster overlay of a cluster node) through the store.
    pub(super) fn service_publish_mode(
        &mut self,
        name: &str,
        network: Option<&str>,
        mappings: Vec<PortMapping>,
        mode: Option<ServiceMode>,
    ) -> Reply {
        let existing = self.model.service(name).ok().cloned();
        let random = mappings.iter().any(PortMapping::is_chosen_by_daemon);
        // Chosen where they will listen: on the network's host binding.
        let requested = network.and_then(|n| self.model.network(n).ok());
        let net = self.model.service_network_id(name, requested).ok().and_then(|id| self.model.network_by_id(&id));
        let mappings = crate::model::pinned(net, &mappings);
        let resolved = self.choose_host_ports(mappings)?;
        let mappings = &resolved[..];
        let mut next = self.model.clone();
        let service = next.publish_service(name, network, mappings).map_err(model_error)?;
        let cluster_network =
            self.cluster.is_some() && next.network_by_id(&service.network_id).is_some_and(|n| n.cluster);
        let mode = match (mode, &existing) {
            (Some(m), Some(e)) if m != e.mode => {
                return Err(CtlError::conflict(format!("service {name} is published in {} mode", e.mode)));
            }
            (Some(m), _) => m,
            (None, Some(e)) => e.mode,
            (None, None) if cluster_network => ServiceMode::Ingress,
            (None, None) => ServiceMode::Host,
        };
        if mode == ServiceMode::Host {
            return self.service_publish(name, network, mappings);
        }
        if random {
            // Every node listens on an ingress service's ports: a port free
            // here may be taken on another node, so the operator gives them
            // (as swarm's published ports).
            return Err(CtlError::invalid_argument(
                "an ingress service's ports are served by every node: give each host port (PUBLISHED:TARGET), or \
                 publish with --mode host",
            ));
        }
        if !cluster_network {
            return Err(CtlError::invalid_argument(
                "ingress mode needs a cluster overlay network (vswitchd --cluster-store, network create -d overlay)",
            ));
        }
        next.set_service_mode(name, ServiceMode::Ingress).map_err(model_error)?;
        let service = next.service(name).map_err(model_error)?.clone();
        let store = self.reachable_store()?.ok_or_else(|| CtlError::internal("no cluster store"))?;
        let mirror = store.mirror();
        let expected = mirror.services.get(name).cloned();
        if expected.is_some() && existing.is_none() {
            // Adding ports to it here would drop the others from the store.
            return Err(CtlError::conflict(format!(
                "service {name} exists in the cluster but could not be served on this node (see its log); publish \
                 more ports from another node"
            )));
        }
        let created_by = expected.as_ref().map_or(store.node(), |r| r.created_by.as_str()).to_owned();
        let record = service_record(&service, &created_by)?;
        // As published: the service's last ports.
        let added =
            Service { publish: service.publish[service.publish.len() - mappings.len()..].to_vec(), ..service.clone() };
        self.publish_all(mesh_publications(&next, Some((&mirror, store.node())), &added))?;
        if let Err(e) = store.put_service(record.clone(), expected.clone()) {
            self.unpublish_logged(keys(mappings));
            return Err(cluster_error(e));
        }
        if let Some(link) = self.cluster.as_mut() {
            link.ingress.wrote(name, Some(record.clone()));
        }
        if let Err(e) = self.commit(next) {
            self.unpublish_logged(keys(mappings));
            let undone = match expected {
                Some(old) => store.put_service(old, Some(record)),
                None => store.remove_service(name),
            };
            if let Err(undo) = undone {
                tracing::error!(service = name, error = %undo, "cannot undo the service in the cluster store");
            }
            if let Some(link) = self.cluster.as_mut() {
                link.ingress.pending.remove(name);
            }
            return Err(e);
        }
        tracing::info!(service = name, "ingress service published");
        // The store's watch brings the record back: the reconcile it
        // triggers claims the mesh station and adds remote replicas.
        let service = self.model.service(name).map_err(model_error)?;
        ok(self.service_info(service))
    }

    /// `service_rm` of an ingress service: removed from the store (every
    /// node closes its ports), then here. `None` for a `host` service.
    pub(super) fn ingress_rm(&mut self, name: &str) -> Option<Reply> {
        let service = self.model.service(name).ok().filter(|s| s.mode == ServiceMode::Ingress)?.clone();
        Some((|| {
            let store = self.reachable_store()?.ok_or_else(|| CtlError::internal("no cluster store"))?;
            match store.remove_service(&service.name) {
                Ok(()) | Err(ClusterError::NotFound(_)) => {}
                Err(e) => return Err(cluster_error(e)),
            }
            if let Some(link) = self.cluster.as_mut() {
                link.ingress.wrote(name, None);
            }
            self.service_rm(name)
        })())
    }

    /// The ingress part of the cluster reconcile (see the module docs).
    /// `loaded`: the mirror reflects the store; without it only backends
    /// are recomputed.
    pub(super) fn reconcile_ingress(&mut self, mirror: &Mirror, node: &str, loaded: bool) {
        if loaded {
            self.adopt_services(mirror);
            self.sync_meshes(mirror, node);
        }
        self.sync_backends(mirror, node);
    }

    /// Logs `what` once (until it succeeds again).
    fn refuse_once(&mut self, key: String, what: impl FnOnce()) {
        if let Some(link) = self.cluster.as_mut()
            && link.ingress.refused.insert(key)
        {
            what();
        }
    }

    /// Whether service `name` waits for the mirror to show this node's
    /// own write (see [`IngressState::waits`]).
    fn waits(&mut self, name: &str, mirror: &Mirror) -> bool {
        self.cluster.as_mut().is_some_and(|link| link.ingress.waits(name, mirror))
    }

    fn forget_refusal(&mut self, key: &str) {
        if let Some(link) = self.cluster.as_mut() {
            link.ingress.refused.remove(key);
        }
    }

    /// Makes the store's ingress services this node's: new and changed
    /// ones adopted (their ports opened), those gone from the store closed.
    fn adopt_services(&mut self, mirror: &Mirror) {
        for record in mirror.services.values() {
            if self.model.network_by_id(&record.network_id).is_none() || self.waits(&record.name, mirror) {
                continue;
            }
            let existing = self.model.service(&record.name).ok().cloned();
            let created = existing.as_ref().map_or_else(crate::model::now_rfc3339, |s| s.created.clone());
            let key = format!("service {}", record.name);
            let service = match service_from_record(record, created) {
                Ok(s) => s,
                Err(e) => {
                    self.refuse_once(
                        key,
                        || tracing::error!(service = %record.name, error = %e, "skipping a service record"),
                    );
                    continue;
                }
            };
            if existing.as_ref().is_some_and(|e| same_service(e, &service)) {
                continue;
            }
            if let Some(e) = existing.as_ref().filter(|e| e.mode != ServiceMode::Ingress) {
                self.refuse_once(key, || {
                    tracing::error!(service = %e.name, "a host-mode service of this node has the name of a cluster ingress service; not adopted")
                });
                continue;
            }
            match self.adopt_service(existing.as_ref(), service) {
                Ok(()) => {
                    self.forget_refusal(&key);
                    tracing::info!(service = %record.name, "ingress service adopted from the cluster");
                }
                Err(e) => self.refuse_once(key, || {
                    tracing::error!(service = %record.name, error = %e.message, "cannot serve a cluster ingress service here")
                }),
            }
        }
        let gone: Vec<Service> = self
            .model
            .services()
            .filter(|s| s.mode == ServiceMode::Ingress && !mirror.services.contains_key(&s.name))
            .cloned()
            .collect();
        for service in gone {
            if self.waits(&service.name, mirror) {
                continue;
            }
            let mut next = self.model.clone();
            if next.remove_service(&service.name).is_err() {
                continue;
            }
            self.unpublish_logged(keys(&service.publish));
            match self.commit(next) {
                Ok(()) => tracing::info!(service = %service.name, "ingress service removed from the cluster"),
                Err(e) => {
                    tracing::error!(service = %service.name, error = %e.message, "cannot remove an ingress service")
                }
            }
            if let Some(link) = self.cluster.as_mut() {
                link.ingress.applied.remove(&service.name);
            }
        }
    }

    /// Adds or replaces one ingress service here: model, listeners, state.
    fn adopt_service(&mut self, old: Option<&Service>, service: Service) -> Result<(), CtlError> {
        let mut next = self.model.clone();
        let service = next.adopt_service(service).map_err(model_error)?;
        let gone: Vec<PortMapping> = old
            .map(|o| o.publish.iter().filter(|m| !service.publish.contains(m)).copied().collect())
            .unwrap_or_default();
        let new: Vec<PortMapping> =
            service.publish.iter().filter(|m| old.is_none_or(|o| !o.publish.contains(m))).copied().collect();
        self.unpublish_logged(keys(&gone));
        let opened = Service { publish: new.clone(), ..service.clone() };
        self.publish_all(service_publications(&next, &opened))?;
        if let Err(e) = self.commit(next) {
            self.unpublish_logged(keys(&new));
            return Err(e);
        }
        if let Some(link) = self.cluster.as_mut() {
            link.ingress.applied.remove(&service.name);
        }
        Ok(())
    }

    /// Claims, publishes and applies this node's mesh stations where it
    /// has ingress services; withdraws and releases the others.
    fn sync_meshes(&mut self, mirror: &Mirror, node: &str) {
        let Some(link) = &self.cluster else { return };
        let handle = link.handle.clone();
        let id = mesh_id(node);
        let mac = mesh_mac(node);
        let networks: Vec<Network> = self.model.networks().into_iter().filter(|n| n.cluster).cloned().collect();
        let mut wanted: HashMap<u32, Mesh> = HashMap::new();
        for network in &networks {
            if !wants_mesh(&self.model, &network.id) {
                // No ingress service here (any more): the station goes.
                if mirror.endpoints.contains_key(&(network.id.clone(), id.clone()))
                    && let Err(e) = handle.withdraw_endpoint(&network.id, &id)
                {
                    tracing::warn!(network = %network.name, error = %e, "cannot withdraw a mesh station");
                }
                for ip in mesh_claims(mirror, network, node) {
                    if let Err(e) = handle.release_address(&network.id, ip, &id) {
                        tracing::warn!(network = %network.name, error = %e, "cannot release a mesh address");
                    }
                }
                continue;
            }
            let held = mesh_claims(mirror, network, node);
            let mut ipv4 = held.iter().find_map(|ip| match ip {
                IpAddr::V4(ip) => Some(*ip),
                IpAddr::V6(_) => None,
            });
            let mut ipv6 = held.iter().find_map(|ip| match ip {
                IpAddr::V6(ip) => Some(*ip),
                IpAddr::V4(_) => None,
            });
            if ipv4.is_none() && network.subnet.is_some() {
                let candidates = mesh_candidates(&self.model, mirror, network).into_iter().map(IpAddr::V4).collect();
                ipv4 = self.claim_mesh(network, node, candidates).and_then(|ip| match ip {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                });
            }
            if ipv6.is_none() && network.subnet6.is_some() {
                let candidates =
                    mesh_candidates6(&self.model, mirror, network, node).into_iter().map(IpAddr::V6).collect();
                ipv6 = self.claim_mesh(network, node, candidates).and_then(|ip| match ip {
                    IpAddr::V6(ip) => Some(ip),
                    IpAddr::V4(_) => None,
                });
            }
            if ipv4.is_none() && ipv6.is_none() {
                continue;
            }
            let record = EndpointRecord {
                network_id: network.id.clone(),
                endpoint_id: id.clone(),
                node: node.to_owned(),
                name: String::new(),
                aliases: Vec::new(),
                mac: mac.to_string(),
                ipv4,
                ipv6,
                service: None,
            };
            let current = mirror.endpoints.get(&(network.id.clone(), id.clone())) == Some(&record)
                && self.cluster.as_ref().is_some_and(|l| l.ingress.published.contains(&network.id));
            if !current {
                match handle.publish_endpoint(record) {
                    Ok(()) => {
                        if let Some(link) = self.cluster.as_mut() {
                            link.ingress.published.insert(network.id.clone());
                        }
                    }
                    Err(e) => tracing::warn!(network = %network.name, error = %e, "cannot publish a mesh station"),
                }
            }
            wanted.insert(network.network_index, Mesh { mac, ipv4, ipv6 });
        }
        let Some(link) = self.cluster.as_mut() else { return };
        let applied = std::mem::take(&mut link.ingress.meshes);
        let mut now = HashMap::new();
        for (&index, &mesh) in &wanted {
            if applied.get(&index) == Some(&mesh) {
                now.insert(index, mesh);
                continue;
            }
            match self.datapath.set_mesh(crate::port::NetworkId(index), Some(mesh)) {
                Ok(()) => {
                    tracing::info!(network = index, ipv4 = ?mesh.ipv4, ipv6 = ?mesh.ipv6, "mesh station applied");
                    now.insert(index, mesh);
                }
                Err(e) => tracing::error!(network = index, error = %e, "cannot apply the mesh station"),
            }
        }
        let exists = |index: u32| networks.iter().any(|n| n.network_index == index);
        for (&index, &mesh) in &applied {
            // A network removed here took its station with it.
            if wanted.contains_key(&index) || !exists(index) {
                continue;
            }
            if let Err(e) = self.datapath.set_mesh(crate::port::NetworkId(index), None) {
                tracing::warn!(network = index, error = %e, "cannot remove the mesh station");
                now.insert(index, mesh);
            }
        }
        if let Some(link) = self.cluster.as_mut() {
            link.ingress.meshes = now;
        }
    }

    /// Claims a mesh address on `network`: the first of `candidates` no
    /// other node wins.
    fn claim_mesh(&mut self, network: &Network, node: &str, candidates: Vec<IpAddr>) -> Option<IpAddr> {
        let handle = self.cluster.as_ref()?.handle.clone();
        let claim = AddressClaim { node: node.to_owned(), endpoint_id: mesh_id(node) };
        let family = if candidates.first().is_some_and(IpAddr::is_ipv6) { "IPv6" } else { "IPv4" };
        for ip in candidates {
            match handle.claim_address(&network.id, ip, claim.clone()) {
                Ok(()) => {
                    tracing::info!(network = %network.name, %ip, "mesh address claimed");
                    return Some(ip);
                }
                Err(ClusterError::Taken { .. }) => continue,
                Err(e) => {
                    tracing::warn!(network = %network.name, error = %e, "cannot claim a mesh address");
                    return None;
                }
            }
        }
        let key = format!("mesh {} {family}", network.id);
        self.refuse_once(
            key,
            || tracing::error!(network = %network.name, family, "no free address for the mesh station"),
        );
        None
    }

    /// Gives the datapath every ingress service's backends that changed.
    fn sync_backends(&mut self, mirror: &Mirror, node: &str) {
        let services: Vec<Service> =
            self.model.services().filter(|s| s.mode == ServiceMode::Ingress).cloned().collect();
        let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        if let Some(link) = self.cluster.as_mut() {
            link.ingress.applied.retain(|name, _| names.contains(name.as_str()));
        }
        for service in &services {
            let pubs = mesh_publications(&self.model, Some((mirror, node)), service);
            let same = self.cluster.as_ref().is_some_and(|l| l.ingress.applied.get(&service.name) == Some(&pubs));
            if same {
                continue;
            }
            match self.publish_all(pubs.clone()) {
                Ok(()) => {
                    let backends = pubs.first().map_or(0, |p| p.backends.len());
                    tracing::info!(service = %service.name, backends, "ingress service backends updated");
                    if let Some(link) = self.cluster.as_mut() {
                        link.ingress.applied.insert(service.name.clone(), pubs);
                    }
                }
                Err(e) => {
                    tracing::error!(service = %service.name, error = %e.message, "cannot update the service's backends")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ctl::proto::Driver;

    use super::super::cluster::tests::{delete, node, put};
    use super::super::cluster::{desired_views, network_from_record, plan_store, record_of};
    use super::*;
    use crate::model::{Connect, CreateNetwork, CreateSandbox};

    /// Node `a` with the cluster overlay `ov` (10.60.0.0/24) and no local
    /// endpoint; nodes a and b live; b has replica r1 of `api` and its mesh
    /// station, and an endpoint of no service.
    fn setup() -> (Model, Mirror, String) {
        let mut origin = Model::new();
        let req = CreateNetwork {
            subnet: Some("10.60.0.0/24".parse().unwrap()),
            attachable: true,
            ..CreateNetwork::new("ov", Driver::Overlay)
        };
        let network = origin.create_network(req).unwrap();
        let record = record_of(&network, 4200, "b").unwrap();
        let mut mirror = Mirror::default();
        put(&mut mirror, "networks/ov", &record);
        node(&mut mirror, "a", "192.0.2.1:4789");
        node(&mut mirror, "b", "192.0.2.2:4789");
        let mut model = Model::new();
        model.adopt_network(network_from_record(&record).unwrap()).unwrap();
        model.create_sandbox(CreateSandbox::new("web")).unwrap();
        let id = record.id.clone();
        let endpoint = |endpoint_id: &str, name: &str, ip: &str, service: Option<&str>, mac: &str| EndpointRecord {
            network_id: id.clone(),
            endpoint_id: endpoint_id.into(),
            node: "b".into(),
            name: name.into(),
            aliases: Vec::new(),
            mac: mac.into(),
            ipv4: Some(ip.parse().unwrap()),
            ipv6: None,
            service: service.map(str::to_owned),
        };
        put(
            &mut mirror,
            &format!("endpoints/{id}/r1"),
            endpoint("r1", "r1", "10.60.0.2", Some("api"), "02:42:0a:3c:00:02"),
        );
        put(&mut mirror, &format!("endpoints/{id}/x"), endpoint("x", "x", "10.60.0.3", None, "02:42:0a:3c:00:03"));
        let b_mesh = mesh_mac("b").to_string();
        put(&mut mirror, &format!("endpoints/{id}/mesh-b"), endpoint("mesh-b", "", "10.60.0.254", None, &b_mesh));
        (model, mirror, id)
    }

    fn ingress(network_id: &str) -> Service {
        Service {
            name: "api".into(),
            network_id: network_id.into(),
            publish: ctl::parse_publish("8080:80").unwrap(),
            created: "t".into(),
            mode: ServiceMode::Ingress,
        }
    }

    #[test]
    fn remote_replicas_become_mesh_backends_after_the_local_ones() {
        let (mut model, mut mirror, id) = setup();
        let local = model.connect(Connect { service: Some("api".into()), ..Connect::new("ov", "web") }).unwrap();
        model.adopt_service(ingress(&id)).unwrap();
        let service = model.service("api").unwrap().clone();
        let pubs = mesh_publications(&model, Some((&mirror, "a")), &service);
        assert_eq!(pubs.len(), 2, "0.0.0.0 and [::]");
        let backends: Vec<(Option<Ipv4Addr>, bool, u16)> =
            pubs[0].backends.iter().map(|b| (b.ipv4, b.via_mesh, b.port)).collect();
        assert_eq!(
            backends,
            [(local.ipv4, false, 80), (Some("10.60.0.2".parse().unwrap()), true, 80)],
            "the local replica as before, b's through the mesh; no endpoint of no service, no mesh station"
        );
        assert_eq!(pubs[0].backends[1].mac, crate::wire::MacAddr([2, 0x42, 10, 60, 0, 2]));
        // On b, r1 is local (the model's to add), a has none: nothing remote.
        assert!(remote_backends(&model, &mirror, "b", &service, 80).is_empty());
        // A host-mode service never reaches other nodes.
        let host = Service { mode: ServiceMode::Host, ..service.clone() };
        assert!(remote_backends(&model, &mirror, "a", &host, 80).is_empty());
        // b dies: its replica leaves.
        delete(&mut mirror, "nodes/b");
        let pubs = mesh_publications(&model, Some((&mirror, "a")), &service);
        assert_eq!(pubs[0].backends.len(), 1);
    }

    #[test]
    fn a_mesh_station_is_kept_extends_the_view_and_has_no_name() {
        let (mut model, mut mirror, id) = setup();
        // a's mesh station, as a previous reconcile left it.
        let claim = AddressClaim { node: "a".into(), endpoint_id: mesh_id("a") };
        put(&mut mirror, &format!("addresses/{id}/10.60.0.253"), &claim);
        let station = EndpointRecord {
            network_id: id.clone(),
            endpoint_id: mesh_id("a"),
            node: "a".into(),
            name: String::new(),
            aliases: Vec::new(),
            mac: mesh_mac("a").to_string(),
            ipv4: Some("10.60.0.253".parse().unwrap()),
            ipv6: None,
            service: None,
        };
        put(&mut mirror, &format!("endpoints/{id}/{}", mesh_id("a")), &station);
        let network = model.network("ov").unwrap().clone();
        assert_eq!(mesh_claims(&mirror, &network, "a"), ["10.60.0.253".parse::<IpAddr>().unwrap()]);

        // No ingress service: the station is stale, withdrawn and released;
        // no local endpoint: no tunnels (lazy extension).
        let plan = plan_store(&model, &mirror, "a", true, false);
        assert_eq!(plan.withdraw, [(id.clone(), mesh_id("a"))]);
        assert_eq!(plan.release, [(id.clone(), "10.60.0.253".parse().unwrap(), mesh_id("a"))]);
        let (views, names) = desired_views(&model, &mirror, "a");
        assert!(views[&network.network_index].peers.is_empty());
        let names: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["r1", "x"], "mesh stations have no DNS name");

        // An ingress service here: the station stays and the view extends to
        // b (its replica and its mesh station are reachable).
        model.adopt_service(ingress(&id)).unwrap();
        assert!(wants_mesh(&model, &id));
        let plan = plan_store(&model, &mirror, "a", true, false);
        assert!(plan.withdraw.is_empty() && plan.release.is_empty(), "{plan:?}");
        let (views, _) = desired_views(&model, &mirror, "a");
        let view = &views[&network.network_index];
        assert_eq!(view.peers, ["192.0.2.2:4789".parse().unwrap()]);
        assert_eq!(view.endpoints.len(), 3, "r1, x and b's mesh station: {view:?}");
    }

    #[test]
    fn a_service_this_node_wrote_waits_for_the_mirror_to_show_it() {
        let (_, mut mirror, id) = setup();
        let mut state = IngressState::default();
        let record = service_record(&ingress(&id), "a").unwrap();
        state.wrote("api", Some(record.clone()));
        assert!(state.waits("api", &mirror), "not in the mirror yet: reconcile must not remove it");
        put(&mut mirror, "services/api", &record);
        assert!(!state.waits("api", &mirror));
        assert!(state.pending.is_empty());
        state.wrote("api", None);
        assert!(state.waits("api", &mirror), "still in the mirror: reconcile must not adopt it again");
        delete(&mut mirror, "services/api");
        assert!(!state.waits("api", &mirror));
        assert!(!state.waits("other", &mirror));
        // A write the mirror never shows (another node changed it since) holds nothing back for long.
        let old = Instant::now().checked_sub(PENDING_FOR + Duration::from_secs(1)).unwrap();
        state.pending.insert("api".into(), (Some(record), old));
        assert!(!state.waits("api", &mirror));
    }

    #[test]
    fn mesh_addresses_are_taken_from_the_top_of_what_is_free() {
        let (mut model, mirror, _) = setup();
        let network = model.network("ov").unwrap().clone();
        let free = mesh_candidates(&model, &mirror, &network);
        // .254 is b's station; .255 the broadcast address.
        assert_eq!(free[0], "10.60.0.253".parse::<Ipv4Addr>().unwrap());
        assert_eq!(free.len(), MESH_CLAIM_ATTEMPTS);
        model.connect(Connect { ipv4: Some("10.60.0.253".parse().unwrap()), ..Connect::new("ov", "web") }).unwrap();
        assert_eq!(mesh_candidates(&model, &mirror, &network)[0], "10.60.0.252".parse::<Ipv4Addr>().unwrap());
        assert!(mesh_candidates6(&model, &mirror, &network, "a").is_empty(), "an IPv4-only network");
        // Auxiliary addresses (a router at the top of the subnet) are taken too.
        let mut with_router = network.clone();
        with_router.aux_addresses.insert("router".into(), "10.60.0.252".parse().unwrap());
        assert_eq!(mesh_candidates(&model, &mirror, &with_router)[0], "10.60.0.251".parse::<Ipv4Addr>().unwrap());

        // IPv6: an interface id of the node's own, inside the subnet.
        let mut dual = network.clone();
        dual.subnet6 = Some("fd60::/64".parse().unwrap());
        let [_, _, a, b, c, d] = mesh_mac("a").0;
        let first = mesh_candidates6(&model, &mirror, &dual, "a");
        let want =
            std::net::Ipv6Addr::new(0xfd60, 0, 0, 0, 0, 0x6d, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        assert_eq!(first[0], want);
        assert!(first.iter().all(|ip| dual.subnet6.unwrap().contains(ip)));
        assert_ne!(first[0], mesh_candidates6(&model, &mirror, &dual, "b")[0], "per node");
        let mut tiny = dual.clone();
        tiny.subnet6 = Some("fd60::/124".parse().unwrap());
        assert!(mesh_candidates6(&model, &mirror, &tiny, "a").is_empty());
        tiny.subnet6 = Some("fd60::/120".parse().unwrap());
        assert!(mesh_candidates6(&model, &mirror, &tiny, "a").iter().all(|ip| tiny.subnet6.unwrap().contains(ip)));
    }

    #[test]
    fn mesh_macs_are_unicast_local_and_per_node() {
        let a = mesh_mac("node-1");
        assert_eq!(a, mesh_mac("node-1"), "stable");
        assert_ne!(a, mesh_mac("node-2"));
        assert_eq!(&a.0[..2], &[0x02, 0x6d]);
        assert!(a.is_valid_station());
        assert_eq!(mesh_id("node-1"), "mesh-node-1");
    }

    #[test]
    fn a_service_record_round_trips() {
        let service = Service {
            name: "api".into(),
            network_id: "n1".into(),
            publish: ctl::parse_publish("8080:80").unwrap(),
            created: "t".into(),
            mode: ServiceMode::Ingress,
        };
        let record = service_record(&service, "a").unwrap();
        assert_eq!((record.mode.as_str(), record.created_by.as_str()), ("ingress", "a"));
        let back = service_from_record(&record, "t".into()).unwrap();
        assert_eq!(back, service);
        let mut host = record.clone();
        host.mode = "host".into();
        assert!(service_from_record(&host, "t".into()).is_err());
        let mut bad = record;
        bad.ports = serde_json::json!({"x": 1});
        assert!(service_from_record(&bad, "t".into()).is_err());
    }
}
