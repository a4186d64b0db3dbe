//! Published ports, services and the translator's flows in the control
//! plane: what the model holds becomes [`Publication`]s for the datapath.
//!
//! Every change is all or nothing: the datapath opens a request's listeners
//! together or none of them, and the model is saved only after it did (a
//! failed save closes them again). A service's publications are re-sent
//! (same host key: the datapath only swaps the backends) whenever one of its
//! replicas connects or disconnects; that update is logged when it fails,
//! never the reason a connect or disconnect fails.
//!
//! A mapping on every address (`0.0.0.0`, Docker's default) is two
//! listeners, `0.0.0.0` and `[::]` (IPv6 only), the second left out when
//! the host has no IPv6. Each backend is an endpoint with its IPv4 and IPv6
//! addresses: clients reach the one of their own family (see
//! [`nat::Backend`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};

use ctl::proto::{Ack, CtlError, ErrorKind, NatFlow, NatStats, ServiceInfo, ServiceReplica};
use ctl::{PortMapping, PortProto};

use super::{Control, Reply, datapath_error, model_error, network_id, ok};
use crate::daemon::datapath::DatapathError;
use crate::model::{Endpoint, Model, Service};
use crate::nat::{self, Backend, Publication};

/// The translator's protocol for a mapping's.
fn proto(p: PortProto) -> nat::Proto {
    match p {
        PortProto::Tcp => nat::Proto::Tcp,
        PortProto::Udp => nat::Proto::Udp,
    }
}

/// The datapath's keys of a published port: protocol and host address,
/// one per listener (see [`PortMapping::listen_addresses`]), with whether
/// the listener is optional.
fn listeners(m: &PortMapping) -> impl Iterator<Item = ((nat::Proto, SocketAddr), bool)> + '_ {
    m.listen_addresses().map(|(ip, optional)| ((proto(m.proto), SocketAddr::new(ip, m.host_port)), optional))
}

/// The keys of `mappings`' listeners.
pub(super) fn keys<'a>(mappings: impl IntoIterator<Item = &'a PortMapping>) -> Vec<(nat::Proto, SocketAddr)> {
    mappings.into_iter().flat_map(|m| listeners(m).map(|(key, _)| key)).collect()
}

/// Where traffic for `endpoint`'s `port` goes: its addresses of both
/// families (`None` for an endpoint with neither).
fn backend(model: &Model, endpoint: &Endpoint, port: u16) -> Option<Backend> {
    let network = model.network_by_id(&endpoint.network_id)?;
    if endpoint.ipv4.is_none() && endpoint.ipv6.is_none() {
        return None;
    }
    Some(Backend {
        network: network_id(network),
        ipv4: endpoint.ipv4,
        ipv6: endpoint.ipv6,
        mac: endpoint.mac,
        port,
        via_mesh: false,
    })
}

/// The publications of `mappings`, one per listener, each going to `backends`.
pub(super) fn publications(
    mappings: &[PortMapping],
    backends: impl Fn(&PortMapping) -> Vec<Backend>,
) -> Vec<Publication> {
    mappings
        .iter()
        .flat_map(|m| {
            let backends = backends(m);
            listeners(m).map(move |((proto, host), optional)| Publication {
                proto,
                host,
                backends: backends.clone(),
                optional,
            })
        })
        .collect()
}

/// The publications of `mappings` (some of `endpoint`'s), each with the
/// endpoint as its single backend.
pub(super) fn endpoint_publications(model: &Model, endpoint: &Endpoint, mappings: &[PortMapping]) -> Vec<Publication> {
    publications(mappings, |m| backend(model, endpoint, m.container_port).into_iter().collect())
}

/// One publication per port of `service`, whose backends are its replicas
/// in creation order (none: the datapath keeps listening and refuses the
/// connections). This node's replicas only: an ingress service's remote
/// ones are added by [`super::ingress::mesh_publications`].
pub(super) fn service_publications(model: &Model, service: &Service) -> Vec<Publication> {
    let replicas = model.service_replicas(service);
    publications(&service.publish, |m| replicas.iter().filter_map(|e| backend(model, e, m.container_port)).collect())
}

/// The ctl error for a failed `publish`: a host port in use or privileged
/// is the caller's problem, named as such.
fn publish_error(e: DatapathError) -> CtlError {
    let DatapathError::Listen { proto, addr, source } = e else { return datapath_error(e) };
    let port = if addr.ip() == IpAddr::from([0, 0, 0, 0]) {
        format!("{}/{proto}", addr.port())
    } else {
        format!("{addr}/{proto}")
    };
    match source.kind() {
        io::ErrorKind::AddrInUse => CtlError::conflict(format!("host port {port} is already in use")),
        io::ErrorKind::PermissionDenied => CtlError::new(
            ErrorKind::PermissionDenied,
            format!(
                "binding port {} needs CAP_NET_BIND_SERVICE (ports below net.ipv4.ip_unprivileged_port_start are \
                 privileged)",
                addr.port()
            ),
        ),
        io::ErrorKind::AddrNotAvailable => CtlError::invalid_argument(format!(
            "cannot publish host port {port}: {} is not an address of this host",
            addr.ip()
        )),
        _ => CtlError::internal(format!("cannot listen on {port}: {source}")),
    }
}

/// Tries per random host port before giving up: each finds a port the
/// kernel offers that is free on every address of the mapping and not
/// published already (a mapping kept in the state whose listener could not
/// be re-opened holds no socket).
const PORT_TRIES: usize = 64;

impl Control {
    /// Gives every mapping left to the daemon (`-p 80`, host port 0) a free
    /// host port, as Docker does: one the kernel offers from
    /// `net.ipv4.ip_local_port_range`, free on each of the mapping's
    /// listening addresses and published by nobody. Other mappings are
    /// returned as they are. The ports are held until all are chosen, so a
    /// request's mappings never share one; another program could still
    /// take one before the datapath binds it, and the request then fails as
    /// "already in use", changing nothing.
    pub(super) fn choose_host_ports(&self, mut mappings: Vec<PortMapping>) -> Result<Vec<PortMapping>, CtlError> {
        use crate::sys::ports::{Probe, hold_port};
        let listen_error = |m: &PortMapping, e: crate::sys::ports::HoldError| {
            publish_error(DatapathError::Listen { proto: proto(m.proto), addr: e.addr, source: e.source })
        };
        let mut held = Vec::new();
        for i in 0..mappings.len() {
            let m = mappings[i];
            // A range must start at 1 or above and end above its start; an
            // end equal to the start is that one port.
            if m.host_port_end != 0 && (m.host_port == 0 || m.host_port_end <= m.host_port) {
                if m.host_port_end == m.host_port {
                    mappings[i].host_port_end = 0;
                    continue;
                }
                return Err(CtlError::invalid_argument(format!(
                    "invalid host port range {}-{} for {}: START must be from 1 and at most END",
                    m.host_port,
                    m.host_port_end,
                    m.container_display()
                )));
            }
            if !m.is_chosen_by_daemon() {
                continue;
            }
            let addresses: Vec<(IpAddr, bool)> = m.listen_addresses().collect();
            // A range is tried port by port, the lowest first; a random port
            // is the kernel's offer, asked again while it is unusable.
            let candidates: Vec<u16> = if m.is_random() { vec![0; PORT_TRIES] } else { m.host_ports().collect() };
            let mut chosen = None;
            // A range's port that cannot be bound (say, a privileged one) is
            // passed over; the last such error is the answer if none can be.
            let mut refused = None;
            for port in candidates {
                let hold = match hold_port(m.proto == PortProto::Tcp, &addresses, port) {
                    Ok(Probe::Free(hold)) => hold,
                    // A kernel's offer stays held, so it is not offered again.
                    Ok(Probe::Taken(hold)) if m.is_random() => {
                        held.push(hold);
                        continue;
                    }
                    Ok(Probe::Taken(_)) => continue,
                    Err(e) if m.is_host_range() => {
                        refused = Some(e);
                        continue;
                    }
                    Err(e) => return Err(listen_error(&m, e)),
                };
                let candidate = PortMapping { host_port: hold.port(), host_port_end: 0, ..m };
                let published = self.model.published_ports().any(|(p, _)| p.host_overlaps(&candidate))
                    || mappings.iter().any(|p| !p.is_chosen_by_daemon() && p.host_overlaps(&candidate));
                if !published {
                    held.push(hold);
                    chosen = Some(candidate);
                    break;
                }
                if m.is_random() {
                    held.push(hold);
                }
            }
            match (chosen, refused) {
                (Some(candidate), _) => mappings[i] = candidate,
                (None, Some(e)) => return Err(listen_error(&m, e)),
                (None, None) => {
                    let wanted = if m.is_random() {
                        format!("after {PORT_TRIES} tries")
                    } else {
                        format!("in {}-{}", m.host_port, m.host_port_end)
                    };
                    return Err(CtlError::conflict(format!(
                        "no free host port {wanted} for {}",
                        m.container_display()
                    )));
                }
            }
        }
        Ok(mappings)
    }

    /// Opens (or updates) `publications` in the datapath, all or nothing;
    /// nothing to do when there are none.
    pub(super) fn publish_all(&self, publications: Vec<Publication>) -> Result<(), CtlError> {
        if publications.is_empty() {
            return Ok(());
        }
        self.datapath.publish(publications).map_err(publish_error)
    }

    /// Closes published ports, logging a failure (used where the model has
    /// already moved on).
    pub(super) fn unpublish_logged(&self, keys: Vec<(nat::Proto, SocketAddr)>) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.datapath.unpublish(keys) {
            tracing::error!(error = %e, "cannot close published ports");
        }
    }

    /// Closes `endpoint`'s own published ports (after a failed save of its
    /// connect), logging a failure.
    pub(super) fn unpublish_endpoint(&self, endpoint: &Endpoint) {
        self.unpublish_logged(keys(&endpoint.publish));
    }

    /// Re-sends the publications of `services` (by name) with their replicas
    /// as the live model has them, logging failures.
    pub(super) fn republish_services(&self, services: &BTreeSet<String>) {
        for name in services {
            let Ok(service) = self.model.service(name) else { continue };
            if let Err(e) = self.publish_all(self.service_pubs(service)) {
                tracing::error!(service = %name, error = %e.message, "cannot update the service's backends");
            }
        }
    }

    /// After a new endpoint was saved: adds it to the backends of the
    /// service it is a replica of, if that service is published. A failure
    /// is logged, not the connect's: the endpoint's own ports are what the
    /// connect promises.
    pub(super) fn join_service(&self, endpoint: &Endpoint) {
        if let Some(service) = self.model.service_of(endpoint) {
            self.republish_services(&BTreeSet::from([service.name.clone()]));
        }
    }

    /// After `endpoints` left the (already saved) model: closes their ports
    /// and takes them out of their services' backends.
    pub(super) fn release_publications(&self, endpoints: &[Endpoint]) {
        self.unpublish_logged(keys(endpoints.iter().flat_map(|e| &e.publish)));
        let services: BTreeSet<String> = endpoints
            .iter()
            .filter_map(|e| {
                let name = e.service.as_ref()?;
                let service = self.model.service(name).ok()?;
                (service.network_id == e.network_id).then(|| name.clone())
            })
            .collect();
        self.republish_services(&services);
    }

    /// Re-opens every published port after a restart: each on its own, so
    /// one port now taken elsewhere does not keep the others closed; a
    /// failure is logged and the model keeps the mapping. Endpoints not in
    /// `restored` (their TAP could not be brought back) get no traffic.
    pub(super) fn restore_publications(&self, restored: &HashSet<String>) {
        let alive: HashSet<(crate::wire::MacAddr, u32)> = self
            .model
            .endpoints()
            .filter(|e| restored.contains(&e.id))
            .filter_map(|e| Some((e.mac, self.model.network_by_id(&e.network_id)?.network_index)))
            .collect();
        let mut publications = Vec::new();
        for endpoint in self.model.endpoints().filter(|e| restored.contains(&e.id)) {
            publications.extend(endpoint_publications(&self.model, endpoint, &endpoint.publish));
        }
        for service in self.model.services() {
            publications.extend(self.service_pubs(service).into_iter().map(|mut p| {
                p.backends.retain(|b| b.via_mesh || alive.contains(&(b.mac, b.network.0)));
                p
            }));
        }
        let (mut opened, total) = (0usize, publications.len());
        for publication in publications {
            let (proto, host) = (publication.proto, publication.host);
            match self.publish_all(vec![publication]) {
                Ok(()) => opened += 1,
                Err(e) => tracing::error!(%proto, %host, error = %e.message, "cannot re-open published port"),
            }
        }
        if total > 0 {
            tracing::info!(opened, total, "published ports restored");
        }
    }

    /// `sandbox_publish`.
    pub(super) fn sandbox_publish(&mut self, sandbox: &str, network: Option<&str>, mappings: &[PortMapping]) -> Reply {
        let mut next = self.model.clone();
        let endpoint = next.publish(sandbox, network, mappings).map_err(model_error)?;
        // As published (on the network's host binding where they name no
        // address): the endpoint's last ports.
        let added = &endpoint.publish[endpoint.publish.len() - mappings.len()..];
        self.publish_all(endpoint_publications(&next, &endpoint, added))?;
        if let Err(e) = self.commit(next) {
            self.unpublish_logged(keys(added));
            return Err(e);
        }
        ok(self.sandbox_info(sandbox))
    }

    /// `sandbox_unpublish`.
    pub(super) fn sandbox_unpublish(
        &mut self,
        sandbox: &str,
        network: Option<&str>,
        mappings: &[PortMapping],
    ) -> Reply {
        let mut next = self.model.clone();
        let before = next.unpublish(sandbox, network, mappings).map_err(model_error)?;
        // What closes, each endpoint's: the mappings as published (a random
        // host port asked as `-p 80` is the port it was given).
        let closed: Vec<(&Endpoint, Vec<PortMapping>)> = before
            .iter()
            .map(|endpoint| {
                let kept = next.endpoint(&endpoint.id).map_or(&[][..], |e| &e.publish[..]);
                (endpoint, endpoint.publish.iter().filter(|m| !kept.contains(m)).copied().collect())
            })
            .collect();
        self.datapath.unpublish(keys(closed.iter().flat_map(|(_, m)| m))).map_err(datapath_error)?;
        if let Err(e) = self.commit(next) {
            for (endpoint, back) in &closed {
                if let Err(e) = self.publish_all(endpoint_publications(&self.model, endpoint, back)) {
                    tracing::error!(sandbox, error = %e.message, "cannot re-open published ports");
                }
            }
            return Err(e);
        }
        ok(self.sandbox_info(sandbox))
    }

    /// `service_publish`.
    pub(super) fn service_publish(&mut self, name: &str, network: Option<&str>, mappings: &[PortMapping]) -> Reply {
        let mut next = self.model.clone();
        let service = next.publish_service(name, network, mappings).map_err(model_error)?;
        // As published (on the network's host binding where they name no
        // address): the service's last ports.
        let added =
            Service { publish: service.publish[service.publish.len() - mappings.len()..].to_vec(), ..service.clone() };
        self.publish_all(service_publications(&next, &added))?;
        if let Err(e) = self.commit(next) {
            self.unpublish_logged(keys(&added.publish));
            return Err(e);
        }
        ok(self.service_info(&service))
    }

    /// `service_rm`.
    pub(super) fn service_rm(&mut self, name: &str) -> Reply {
        let mut next = self.model.clone();
        let service = next.remove_service(name).map_err(model_error)?;
        self.datapath.unpublish(keys(&service.publish)).map_err(datapath_error)?;
        if let Err(e) = self.commit(next) {
            if let Err(e) = self.publish_all(service_publications(&self.model, &service)) {
                tracing::error!(service = name, error = %e.message, "cannot re-open the service's ports");
            }
            return Err(e);
        }
        ok(Ack {})
    }

    /// Other nodes' replicas of an ingress service (none otherwise), by node.
    fn remote_replicas(&self, service: &Service) -> Vec<ServiceReplica> {
        let Some(link) = self.cluster.as_ref().filter(|_| service.mode == ctl::proto::ServiceMode::Ingress) else {
            return Vec::new();
        };
        let mirror = link.handle.mirror();
        let mut replicas: Vec<ServiceReplica> = mirror
            .remote_replicas(&service.network_id, &service.name, link.handle.node())
            .filter_map(|r| {
                Some(ServiceReplica {
                    sandbox: r.name.clone(),
                    endpoint_id: r.endpoint_id.clone(),
                    address: r.ipv4?,
                    node: Some(r.node.clone()),
                })
            })
            .collect();
        replicas.sort_by(|a, b| (&a.node, &a.endpoint_id).cmp(&(&b.node, &b.endpoint_id)));
        replicas
    }

    /// The wire form of a service.
    pub(super) fn service_info(&self, service: &Service) -> ServiceInfo {
        ServiceInfo {
            name: service.name.clone(),
            network: self.model.network_by_id(&service.network_id).map(|n| n.name.clone()).unwrap_or_default(),
            created: service.created.clone(),
            publish: service.publish.clone(),
            mode: service.mode,
            replicas: self
                .model
                .service_replicas(service)
                .into_iter()
                .filter_map(|e| {
                    Some(ServiceReplica {
                        sandbox: e.sandbox.clone(),
                        endpoint_id: e.id.clone(),
                        address: e.ipv4?,
                        node: None,
                    })
                })
                .chain(self.remote_replicas(service))
                .collect(),
        }
    }

    /// `nat_ls`: the translator's live flows, with network and sandbox names.
    pub(super) fn nat_ls(&self, network: Option<&str>) -> Reply {
        let filter = network.map(|n| self.model.network(n).map(network_id)).transpose().map_err(model_error)?;
        let flows = self.datapath.nat_flows().map_err(datapath_error)?;
        let sandboxes: HashMap<(u32, IpAddr), &str> = self
            .model
            .endpoints()
            .filter_map(|e| Some((self.model.network_by_id(&e.network_id)?.network_index, e)))
            .flat_map(|(network, e)| {
                let addresses = e.ipv4.map(IpAddr::V4).into_iter().chain(e.ipv6.map(IpAddr::V6));
                addresses.map(move |address| ((network, address), e.sandbox.as_str()))
            })
            .collect();
        let mut out: Vec<NatFlow> = flows
            .into_iter()
            .filter(|f| filter.is_none_or(|n| n == f.network))
            .map(|f| NatFlow {
                proto: f.proto.name().to_owned(),
                direction: match f.direction {
                    nat::Direction::Egress => "egress",
                    nat::Direction::Inbound => "inbound",
                }
                .to_owned(),
                network: self.network_name(f.network),
                sandbox: sandboxes.get(&(f.network.0, f.sandbox.ip())).map(|s| (*s).to_owned()),
                sandbox_addr: f.sandbox,
                remote_addr: f.remote,
                outer_local: f.outer_local,
                outer_remote: f.outer_remote,
                bytes_from_sandbox: f.bytes_from_sandbox,
                bytes_to_sandbox: f.bytes_to_sandbox,
                age_ms: f.age_ms,
                state: f.state.to_owned(),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.network, a.sandbox_addr, a.remote_addr, &a.proto).cmp(&(
                &b.network,
                b.sandbox_addr,
                b.remote_addr,
                &b.proto,
            ))
        });
        ok(out)
    }
}

/// The wire form of a network's translator counters.
pub(super) fn nat_stats(c: &nat::Counters) -> NatStats {
    NatStats {
        flows_opened: c.flows_opened,
        flows_refused: c.flows_refused,
        flows_timed_out: c.flows_timed_out,
        table_full: c.table_full,
        active: c.active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Connect, CreateNetwork, CreateSandbox};

    fn model() -> (Model, Endpoint, Endpoint) {
        let mut m = Model::new();
        let req = CreateNetwork {
            subnet: Some("10.1.0.0/24".parse().unwrap()),
            ..CreateNetwork::new("a", ctl::proto::Driver::Bridge)
        };
        m.create_network(req).unwrap();
        for s in ["s1", "s2", "s3"] {
            m.create_sandbox(CreateSandbox::new(s)).unwrap();
        }
        let publish = ctl::parse_publish("8080-8081:80-81").unwrap();
        let e1 = m.connect(Connect { publish, service: Some("api".into()), ..Connect::new("a", "s1") }).unwrap();
        let e2 = m.connect(Connect { service: Some("api".into()), ..Connect::new("a", "s2") }).unwrap();
        (m, e1, e2)
    }

    #[test]
    fn an_endpoint_is_the_backend_of_its_ports() {
        let (m, e1, _) = model();
        let pubs = endpoint_publications(&m, &e1, &e1.publish);
        // Every address: 0.0.0.0 and, optional, [::].
        let hosts: Vec<(String, bool)> = pubs.iter().map(|p| (p.host.to_string(), p.optional)).collect();
        let want = [("0.0.0.0:8080", false), ("[::]:8080", true), ("0.0.0.0:8081", false), ("[::]:8081", true)];
        assert_eq!(hosts, want.map(|(h, o)| (h.to_owned(), o)));
        let net = network_id(m.network("a").unwrap());
        let backend = Backend { network: net, ipv4: e1.ipv4, ipv6: e1.ipv6, mac: e1.mac, port: 81, via_mesh: false };
        assert!(backend.ipv4.is_some() && backend.ipv6.is_none(), "an IPv4-only network");
        assert!(pubs.iter().all(|p| p.proto == nat::Proto::Tcp));
        assert_eq!(pubs[2].backends, [backend]);
        assert_eq!(pubs[3].backends, [backend], "IPv6 clients reach the same endpoint");
        let one = endpoint_publications(&m, &e1, &ctl::parse_publish("[::1]:9000:90/udp").unwrap());
        assert_eq!(one.len(), 1, "one address: one listener");
        assert_eq!(
            (one[0].proto, one[0].host, one[0].optional),
            (nat::Proto::Udp, "[::1]:9000".parse().unwrap(), false)
        );
    }

    #[test]
    fn a_service_balances_over_its_replicas_in_creation_order() {
        let (mut m, e1, e2) = model();
        let udp = ctl::parse_publish("127.0.0.1:5353:53/udp").unwrap();
        let service = m.publish_service("api", Some("a"), &udp).unwrap();
        let pubs = service_publications(&m, &service);
        assert_eq!(pubs.len(), 1);
        assert_eq!((pubs[0].proto, pubs[0].host), (nat::Proto::Udp, "127.0.0.1:5353".parse().unwrap()));
        let order: Vec<_> = pubs[0].backends.iter().map(|b| b.ipv4).collect();
        assert_eq!(order, [e1.ipv4, e2.ipv4]);
        assert!(pubs[0].backends.iter().all(|b| b.port == 53));
        // The next replica comes last.
        let e3 = m.connect(Connect { service: Some("api".into()), ..Connect::new("a", "s3") }).unwrap();
        assert_eq!(m.service_of(&e3).map(|s| s.name.as_str()), Some("api"));
        let pubs = service_publications(&m, m.service("api").unwrap());
        let order: Vec<_> = pubs[0].backends.iter().map(|b| b.ipv4).collect();
        assert_eq!(order, [e1.ipv4, e2.ipv4, e3.ipv4]);
        // No replicas: still published, with no backends.
        for s in ["s1", "s2", "s3"] {
            m.disconnect("a", s).unwrap();
        }
        let pubs = service_publications(&m, m.service("api").unwrap());
        assert_eq!(pubs.len(), 1);
        assert!(pubs[0].backends.is_empty());
    }

    use super::super::scratch::Scratch;

    #[test]
    fn refused_requests_change_nothing() {
        use ctl::proto::Request;
        let mut s = Scratch::new("refused");
        let create = |name: &str, subnet: &str, options: &[(&str, &str)]| {
            super::super::scratch::network_create(name, ctl::proto::Driver::Bridge, subnet, false, options)
        };
        s.c().handle(create("a", "10.1.0.0/24", &[])).unwrap();
        let e = s.c().handle(create("b", "10.2.0.0/24", &[("egress", "maybe")])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
        s.c().handle(create("c", "10.3.0.0/24", &[("egress", "false")])).unwrap();
        let before = s.state();

        // The datapath refuses these (a port in use, an address not on this host): the service
        // is not created, the state file is untouched.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        for spec in [format!("127.0.0.1:{port}:80"), "192.0.2.1:8080:80".to_owned()] {
            let publish = ctl::parse_publish(&spec).unwrap();
            let req = Request::ServicePublish { name: "api".into(), network: Some("a".into()), publish, mode: None };
            assert!(s.c().handle(req).is_err(), "{spec} should be refused");
            assert_eq!(s.c().model.services().count(), 0);
            assert_eq!(s.state(), before);
        }

        let not_found = |s: &mut Scratch, req: Request| {
            let e = s.c().handle(req).unwrap_err();
            assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.message);
        };
        not_found(&mut s, Request::ServiceInspect { name: "api".into() });
        not_found(&mut s, Request::ServiceRm { name: "api".into() });
        not_found(&mut s, Request::NatLs { network: Some("nope".into()) });
        let publish = ctl::parse_publish("8080:80").unwrap();
        not_found(&mut s, Request::SandboxPublish { sandbox: "nope".into(), network: None, publish: publish.clone() });
        not_found(&mut s, Request::SandboxUnpublish { sandbox: "nope".into(), network: None, publish });
        assert_eq!(s.c().handle(Request::ServiceLs).unwrap(), serde_json::json!([]));
        assert_eq!(s.state(), before);
    }

    #[test]
    fn listen_errors_become_clear_ctl_errors() {
        let listen = |addr: &str, kind: io::ErrorKind| DatapathError::Listen {
            proto: nat::Proto::Tcp,
            addr: addr.parse().unwrap(),
            source: io::Error::from(kind),
        };
        let e = publish_error(listen("0.0.0.0:8080", io::ErrorKind::AddrInUse));
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Conflict, "host port 8080/tcp is already in use"));
        let e = publish_error(listen("127.0.0.1:8080", io::ErrorKind::AddrInUse));
        assert_eq!(e.message, "host port 127.0.0.1:8080/tcp is already in use");
        let e = publish_error(listen("0.0.0.0:80", io::ErrorKind::PermissionDenied));
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.message.starts_with("binding port 80 needs CAP_NET_BIND_SERVICE"), "{}", e.message);
        let e = publish_error(listen("192.0.2.7:8080", io::ErrorKind::AddrNotAvailable));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("192.0.2.7 is not an address of this host"), "{}", e.message);
        assert_eq!(publish_error(DatapathError::Unresponsive).kind, ErrorKind::Internal);
    }
}
