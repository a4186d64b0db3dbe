//! Configuration-only networks (Docker's `network create --config-only`)
//! and the networks made from them (`--config-from`).
//!
//! A configuration network holds settings, not a bridge domain: the
//! addressing (subnets, gateways, ranges, auxiliary addresses, address
//! families), the MTU and VNI, driver options and labels. Nothing attaches
//! to it and it takes no subnet; a network created `--config-from` it takes
//! those settings as if they had been given on its own command line, names
//! its own driver, and may add only what Docker lets it add (`--internal`,
//! `--attachable`). So the same settings can be kept once and used where
//! they fit, as Docker users keep a macvlan network's `parent` and subnet.
//!
//! They live beside the networks ([`Model::config_networks`]), not among
//! them: nothing that walks the networks (the datapath, DNS, IPAM's overlap
//! checks, the cluster) has to skip them.

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::ids;
use super::networks::fold_docker_options;
use super::state::{Model, Resolved};
use super::types::{CreateNetwork, DOCKER_VNI_OPTION};
use super::validate;

/// A configuration-only network: a name and the settings it hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigNetwork {
    /// Its id, unique among networks and configuration networks.
    pub id: String,
    /// Its name, unique among networks and configuration networks.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The settings a network created from it takes: the request it was
    /// created with, its name and driver cleared (options as given: each
    /// network's driver reads them).
    pub settings: CreateNetwork,
}

/// The settings a `--config-from` request may not give itself, each with
/// the name it is refused by.
fn given_settings(req: &CreateNetwork) -> Option<&'static str> {
    [
        ("--subnet", req.subnet.is_some() || req.subnet6.is_some()),
        ("--gateway", req.gateway.is_some() || req.gateway6.is_some()),
        ("--ip-range", req.ip_range.is_some() || req.ip_range6.is_some()),
        ("--aux-address", !req.aux_addresses.is_empty()),
        ("--ipv4=false", !req.enable_ipv4),
        ("--ipv6", req.enable_ipv6),
        ("--mtu", req.mtu.is_some()),
        ("--vni", req.vni.is_some()),
        ("a driver option (-o)", !req.options.is_empty()),
        ("--label", !req.labels.is_empty()),
    ]
    .into_iter()
    .find_map(|(what, given)| given.then_some(what))
}

impl Model {
    /// The configuration-only networks, ordered by name.
    pub fn config_networks(&self) -> Vec<&ConfigNetwork> {
        let mut v: Vec<&ConfigNetwork> = self.config_networks.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Looks a configuration-only network up as [`Model::network`] looks a
    /// network up (the same name space): refused when `name_or_id` names a
    /// network.
    pub fn config_network(&self, name_or_id: &str) -> Result<&ConfigNetwork, ModelError> {
        match self.resolve(name_or_id) {
            Ok(Resolved::Config(c)) => Ok(c),
            Ok(Resolved::Network(n)) => Err(ModelError::NotAConfigNetwork(n.name.clone())),
            Err(ModelError::NoSuchNetwork(_)) => Err(ModelError::NoSuchConfigNetwork(name_or_id.to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Whether a network or a configuration network has this name.
    pub(crate) fn network_name_taken(&self, name: &str) -> bool {
        self.networks.values().any(|n| n.name == name) || self.config_networks.values().any(|c| c.name == name)
    }

    /// Creates a configuration-only network (`network create
    /// --config-only`) from `req` and returns it.
    ///
    /// Its addressing is checked as a network's would be (a subnet's host
    /// bits, a gateway or range outside its subnet, an address family
    /// turned off) but takes nothing: two configuration networks, or one
    /// and a network, may name the same subnet; the network created from it
    /// is the one checked for overlaps. Its driver options are checked by
    /// the driver of each network created from it. Refused with `internal`
    /// or `attachable`, as in Docker: those belong to the networks made
    /// from it.
    pub fn create_config_network(&mut self, mut req: CreateNetwork) -> Result<ConfigNetwork, ModelError> {
        validate::object_name("network", &req.name)?;
        if self.network_name_taken(&req.name) {
            return Err(ModelError::NetworkExists(req.name));
        }
        if req.config_from.is_some() {
            return Err(ModelError::ConfigOnlyField("--config-from"));
        }
        if req.internal {
            return Err(ModelError::ConfigOnlyField("--internal"));
        }
        if req.attachable {
            return Err(ModelError::ConfigOnlyField("--attachable"));
        }
        // The addressing and MTU as a bridge network's, on a model holding
        // nothing else: what could never make a network is refused now, and
        // no subnet of another network stands in the way. Options (a VNI
        // among them) are left to the driver of each network made from it.
        let mut probe = CreateNetwork { config_only: false, driver: ctl::proto::Driver::Bridge, ..req.clone() };
        probe.options.remove(DOCKER_VNI_OPTION);
        fold_docker_options(&mut probe)?;
        let probe = CreateNetwork { options: Default::default(), vni: None, ..probe };
        let mut scratch = Model::new();
        scratch.networks.clear();
        scratch.create_network(probe)?;
        let id = self.fresh_network_id();
        let name = std::mem::take(&mut req.name);
        let settings = CreateNetwork { driver: Default::default(), config_only: false, name: String::new(), ..req };
        let config = ConfigNetwork { id, name, created: ids::now_rfc3339(), settings };
        self.config_networks.insert(config.id.clone(), config.clone());
        Ok(config)
    }

    /// Fills `req` (a `network create --config-from NAME`) with the
    /// settings of configuration network NAME, as if they had been given on
    /// its command line, and records NAME in it (by name, as Docker keeps
    /// it). Refused when the request gives a setting of its own, when NAME
    /// is not a configuration network, and for a configuration-only
    /// request. A request without `config_from` is left as it is.
    pub fn apply_config_from(&self, req: &mut CreateNetwork) -> Result<(), ModelError> {
        let Some(from) = req.config_from.as_deref() else { return Ok(()) };
        if req.config_only {
            return Err(ModelError::ConfigOnlyField("--config-from"));
        }
        if let Some(given) = given_settings(req) {
            return Err(ModelError::ConfigFromField(given));
        }
        let config = self.config_network(from)?;
        let s = &config.settings;
        *req = CreateNetwork {
            name: std::mem::take(&mut req.name),
            driver: req.driver,
            internal: req.internal,
            attachable: req.attachable,
            config_only: false,
            config_from: Some(config.name.clone()),
            ..s.clone()
        };
        Ok(())
    }

    /// Removes configuration network `name_or_id` and returns it; refused
    /// while a network created from it exists.
    pub fn remove_config_network(&mut self, name_or_id: &str) -> Result<ConfigNetwork, ModelError> {
        let config = self.config_network(name_or_id)?;
        let users: Vec<&str> = self
            .networks()
            .into_iter()
            .filter(|n| n.config_from.as_deref() == Some(config.name.as_str()))
            .map(|n| n.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(ModelError::ConfigNetworkInUse { network: config.name.clone(), users: users.join(", ") });
        }
        let id = config.id.clone();
        self.config_networks.remove(&id).ok_or(ModelError::NoSuchConfigNetwork(id))
    }
}
