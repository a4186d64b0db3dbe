//! Published ports and services: which endpoint (or service) holds which
//! host port, and the rule that a host (address, port, protocol) is
//! published once across the whole daemon (`0.0.0.0:8080/tcp` and
//! `10.0.0.1:8080/tcp` cannot both be bound).

use ctl::PortMapping;

use super::error::ModelError;
use super::ids;
use super::state::Model;
use super::types::{Endpoint, Network, Service};
use super::validate;

/// Who holds a published host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOwner<'a> {
    /// An endpoint's own `--publish`.
    Endpoint(&'a Endpoint),
    /// A service's `service publish`.
    Service(&'a Service),
}

impl Model {
    /// Every published port with its owner: endpoints' first (by id), then
    /// services' (by name).
    pub fn published_ports(&self) -> impl Iterator<Item = (&PortMapping, PortOwner<'_>)> {
        let endpoints =
            self.endpoints.values().flat_map(|e| e.publish.iter().map(move |m| (m, PortOwner::Endpoint(e))));
        let services = self.services.values().flat_map(|s| s.publish.iter().map(move |m| (m, PortOwner::Service(s))));
        endpoints.chain(services)
    }

    /// How an error names `owner`: `sandbox web (network app)` or `service api`.
    fn owner_name(&self, owner: PortOwner<'_>) -> String {
        match owner {
            PortOwner::Endpoint(e) => {
                let network = self.networks.get(&e.network_id).map_or(e.network_id.as_str(), |n| n.name.as_str());
                format!("sandbox {} (network {network})", e.sandbox)
            }
            PortOwner::Service(s) => format!("service {}", s.name),
        }
    }

    /// Refuses `new` mappings whose host side is already published (by
    /// anyone) or appears twice among them; also refuses zero ports.
    pub(crate) fn check_new_host_ports(&self, new: &[PortMapping]) -> Result<(), ModelError> {
        for (i, m) in new.iter().enumerate() {
            // The daemon chooses a random or range port before the model sees it.
            if m.host_port == 0 || m.container_port == 0 || m.host_port_end != 0 {
                return Err(ModelError::InvalidPortMapping(m.to_string()));
            }
            if let Some(first) = new[..i].iter().find(|o| o.host_overlaps(m)) {
                return Err(ModelError::PortGivenTwice {
                    port: m.host_key_display(),
                    first: first.to_string(),
                    second: m.to_string(),
                });
            }
            if let Some((_, owner)) = self.published_ports().find(|(o, _)| o.host_overlaps(m)) {
                return Err(ModelError::PortPublished { port: m.host_key_display(), owner: self.owner_name(owner) });
            }
        }
        Ok(())
    }

    /// The invariant behind [`Model::check_new_host_ports`], over the whole model.
    pub(crate) fn check_published_ports(&self) -> Result<(), String> {
        let all: Vec<(&PortMapping, PortOwner<'_>)> = self.published_ports().collect();
        for (i, (m, owner)) in all.iter().enumerate() {
            if m.host_port == 0 || m.container_port == 0 || m.host_port_end != 0 {
                return Err(format!("{} publishes port 0 or a range ({m})", self.owner_name(*owner)));
            }
            if let Some((other, other_owner)) = all[..i].iter().find(|(o, _)| o.host_overlaps(m)) {
                return Err(format!(
                    "host port {} is published twice ({m} by {}, {other} by {})",
                    m.host_key_display(),
                    self.owner_name(*owner),
                    self.owner_name(*other_owner)
                ));
            }
        }
        Ok(())
    }

    /// The next endpoint serial: larger than every existing one.
    pub(crate) fn next_endpoint_serial(&self) -> u64 {
        self.endpoints.values().map(|e| e.serial).max().unwrap_or(0) + 1
    }

    /// The endpoint of `sandbox` that receives published traffic: the one on
    /// `network` when given, else its only endpoint, else the one carrying
    /// its default route.
    pub fn publish_target(&self, sandbox: &str, network: Option<&str>) -> Result<&Endpoint, ModelError> {
        if let Some(network) = network {
            return self.endpoint_for(network, sandbox);
        }
        self.sandbox(sandbox)?;
        let endpoints = self.endpoints_in_sandbox(sandbox);
        match endpoints.as_slice() {
            [] => Err(ModelError::NoEndpointToPublish(sandbox.to_owned())),
            [one] => Ok(one),
            many => many.iter().copied().find(|e| e.is_default_gateway_network).ok_or_else(|| {
                let networks: Vec<&str> = many
                    .iter()
                    .map(|e| self.networks.get(&e.network_id).map_or(e.network_id.as_str(), |n| n.name.as_str()))
                    .collect();
                ModelError::AmbiguousEndpoint { sandbox: sandbox.to_owned(), networks: networks.join(", ") }
            }),
        }
    }

    /// Publishes more ports to a connected sandbox's endpoint (see
    /// [`Model::publish_target`]) and returns the endpoint as it is now:
    /// the mappings as published (see [`Network::bind`]) are the last
    /// `mappings.len()` of its ports.
    pub fn publish(
        &mut self,
        sandbox: &str,
        network: Option<&str>,
        mappings: &[PortMapping],
    ) -> Result<Endpoint, ModelError> {
        if mappings.is_empty() {
            return Err(ModelError::NoPorts);
        }
        let target = self.publish_target(sandbox, network)?;
        if let Some(net) = self.networks.get(&target.network_id).filter(|n| n.internal) {
            return Err(ModelError::PublishOnInternal(net.name.clone()));
        }
        let id = target.id.clone();
        // On the network's host binding where a mapping names no address.
        let mappings = super::types::bound(self.networks.get(&target.network_id), mappings);
        self.check_new_host_ports(&mappings)?;
        let endpoint = self.endpoints.get_mut(&id).ok_or_else(|| ModelError::NoSuchSandbox(sandbox.to_owned()))?;
        endpoint.publish.extend_from_slice(&mappings);
        Ok(endpoint.clone())
    }

    /// Closes published ports of a sandbox (on `network`'s endpoint only,
    /// when given). Each mapping must be published as given, but for a
    /// random host port (0), which stands for the first mapping of its
    /// host address, container port and protocol.
    /// Returns the endpoints that changed, as they were before.
    pub fn unpublish(
        &mut self,
        sandbox: &str,
        network: Option<&str>,
        mappings: &[PortMapping],
    ) -> Result<Vec<Endpoint>, ModelError> {
        if mappings.is_empty() {
            return Err(ModelError::NoPorts);
        }
        let candidates: Vec<String> = match network {
            Some(network) => vec![self.endpoint_for(network, sandbox)?.id.clone()],
            None => {
                self.sandbox(sandbox)?;
                self.endpoints_in_sandbox(sandbox).into_iter().map(|e| e.id.clone()).collect()
            }
        };
        let mut owners: Vec<(&String, PortMapping)> = Vec::with_capacity(mappings.len());
        // Exact mappings first: a random one (`-p 80`) or a range (`-p
        // 8000-8010:80`) then takes what is left.
        let (random, exact): (Vec<&PortMapping>, Vec<&PortMapping>) =
            mappings.iter().partition(|m| m.is_chosen_by_daemon());
        for m in exact.into_iter().chain(random) {
            // As it was published: on the network's host binding when it
            // names no address (so `-p 8080:80` there is not an explicit
            // `0.0.0.0:8080:80`, nor one an older daemon that ignored the
            // binding published: `port` shows those as 0.0.0.0).
            let bound_on = |id: &String| {
                let network = self.endpoints.get(id).and_then(|e| self.networks.get(&e.network_id));
                super::types::bound_one(network, *m)
            };
            let mut owner = None;
            for id in &candidates {
                let Some(endpoint) = self.endpoints.get(id) else { continue };
                let bound = bound_on(id);
                owner = endpoint
                    .publish
                    .iter()
                    .find(|p| p.answers(&bound) && !owners.contains(&(id, **p)))
                    .map(|p| (id, *p));
                if owner.is_some() {
                    break;
                }
            }
            match owner {
                Some(owner) => owners.push(owner),
                // The same published mapping named twice (`-p 8080:80 -p
                // 127.0.0.1:8080:80` on a network bound to 127.0.0.1) is
                // closed once.
                None if !m.is_chosen_by_daemon() && owners.iter().any(|(id, p)| p.answers(&bound_on(id))) => {}
                None => {
                    // Named as it would be published (on the first endpoint's network).
                    let mapping = candidates.first().map_or(*m, bound_on).to_string();
                    return Err(ModelError::NotPublished { mapping, sandbox: sandbox.to_owned() });
                }
            }
        }
        let mut before: Vec<Endpoint> = Vec::new();
        for (id, m) in owners {
            let Some(endpoint) = self.endpoints.get_mut(id) else { continue };
            if !before.iter().any(|b| b.id == endpoint.id) {
                before.push(endpoint.clone());
            }
            endpoint.publish.retain(|p| *p != m);
        }
        Ok(before)
    }

    /// All services, ordered by name.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Result<&Service, ModelError> {
        self.services.get(name).ok_or_else(|| ModelError::NoSuchService(name.to_owned()))
    }

    /// The replicas of `service`: the endpoints on its network connected
    /// with `--service NAME`, in creation order (the order the balancer
    /// rotates over).
    pub fn service_replicas(&self, service: &Service) -> Vec<&Endpoint> {
        let mut v: Vec<&Endpoint> = self
            .endpoints
            .values()
            .filter(|e| e.network_id == service.network_id && e.service.as_deref() == Some(service.name.as_str()))
            .collect();
        v.sort_by(|a, b| (a.serial, &a.id).cmp(&(b.serial, &b.id)));
        v
    }

    /// The service `endpoint` is a replica of, if that service is published.
    pub fn service_of(&self, endpoint: &Endpoint) -> Option<&Service> {
        let service = self.services.get(endpoint.service.as_deref()?)?;
        (service.network_id == endpoint.network_id).then_some(service)
    }

    /// Publishes ports of service `name`, creating it on first use. Its
    /// network is `network` (name or id), else the existing service's, else
    /// the one network all endpoints connected with `--service NAME` are on.
    /// Returns the service as it is now.
    pub fn publish_service(
        &mut self,
        name: &str,
        network: Option<&str>,
        mappings: &[PortMapping],
    ) -> Result<Service, ModelError> {
        validate::object_name("service", name)?;
        if mappings.is_empty() {
            return Err(ModelError::NoPorts);
        }
        let requested = network.map(|n| self.network(n)).transpose()?;
        if let Some(net) = requested.filter(|n| n.internal) {
            return Err(ModelError::PublishOnInternal(net.name.clone()));
        }
        if let Some(net) = requested
            && !net.driver.is_switched()
        {
            return Err(if net.driver == ctl::proto::Driver::Host {
                ModelError::HostNotConnectable
            } else {
                ModelError::NoneNotConnectable
            });
        }
        let network_id = self.service_network_id(name, requested)?;
        if let Some(net) = self.networks.get(&network_id).filter(|n| n.internal) {
            return Err(ModelError::PublishOnInternal(net.name.clone()));
        }
        // On the network's host binding where a mapping names no address.
        let mappings = super::types::bound(self.networks.get(&network_id), mappings);
        self.check_new_host_ports(&mappings)?;
        let service = self.services.entry(name.to_owned()).or_insert_with(|| Service {
            name: name.to_owned(),
            network_id,
            publish: Vec::new(),
            created: ids::now_rfc3339(),
            mode: ctl::proto::ServiceMode::Host,
        });
        service.publish.extend_from_slice(&mappings);
        Ok(service.clone())
    }

    /// The network (id) service `name` is published on: `requested` (a
    /// network name or id), else the existing service's, else the one
    /// network all endpoints connected with `--service NAME` are on.
    pub fn service_network_id(&self, name: &str, requested: Option<&Network>) -> Result<String, ModelError> {
        match (self.services.get(name), requested) {
            (Some(existing), Some(net)) if existing.network_id != net.id => Err(ModelError::ServiceOnOtherNetwork {
                service: name.to_owned(),
                network: self.networks.get(&existing.network_id).map_or(String::new(), |n| n.name.clone()),
                requested: net.name.clone(),
            }),
            (Some(existing), _) => Ok(existing.network_id.clone()),
            (None, Some(net)) => Ok(net.id.clone()),
            (None, None) => {
                let mut networks: Vec<&str> = self
                    .endpoints
                    .values()
                    .filter(|e| e.service.as_deref() == Some(name))
                    .map(|e| e.network_id.as_str())
                    .collect();
                networks.sort_unstable();
                networks.dedup();
                match networks.as_slice() {
                    [one] => Ok((*one).to_owned()),
                    _ => Err(ModelError::ServiceNeedsNetwork(name.to_owned())),
                }
            }
        }
    }

    /// Sets the mode of service `name` (the control plane decides it).
    pub fn set_service_mode(&mut self, name: &str, mode: ctl::proto::ServiceMode) -> Result<(), ModelError> {
        let service = self.services.get_mut(name).ok_or_else(|| ModelError::NoSuchService(name.to_owned()))?;
        service.mode = mode;
        Ok(())
    }

    /// Makes `service` (an ingress service of the cluster store) this
    /// node's, adding or replacing the one of its name: its network must
    /// exist here and its host ports be free of every other owner's.
    pub fn adopt_service(&mut self, service: Service) -> Result<Service, ModelError> {
        validate::object_name("service", &service.name)?;
        let network = self
            .networks
            .get(&service.network_id)
            .ok_or_else(|| ModelError::NoSuchNetwork(service.network_id.clone()))?;
        if network.internal {
            return Err(ModelError::PublishOnInternal(network.name.clone()));
        }
        let old = self.services.remove(&service.name);
        if let Err(e) = self.check_new_host_ports(&service.publish) {
            if let Some(old) = old {
                self.services.insert(old.name.clone(), old);
            }
            return Err(e);
        }
        self.services.insert(service.name.clone(), service.clone());
        Ok(service)
    }

    /// Removes a service and returns it (its replicas stay connected).
    pub fn remove_service(&mut self, name: &str) -> Result<Service, ModelError> {
        self.services.remove(name).ok_or_else(|| ModelError::NoSuchService(name.to_owned()))
    }
}
