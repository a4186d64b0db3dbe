//! The [`Model`] itself: what it holds, how it is looked up, the invariants
//! it keeps, and its versioned serialized form.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use ctl::MacAddr;
use ctl::proto::Driver;

use super::addr::{Subnet6Ext, SubnetExt};
use super::config_networks::ConfigNetwork;
use super::error::ModelError;
use super::ids;
use super::types::{Config, DEFAULT_IFACE_PREFIX, Endpoint, Network, Peer, Sandbox, Service, StaticFdbEntry, Uplink};

/// Names of the networks every model has and that cannot be removed.
pub(crate) const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// A network or a configuration-only network, as [`Model::resolve`]
/// finds them by name or id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resolved<'a> {
    /// A network.
    Network(&'a Network),
    /// A configuration-only network.
    Config(&'a ConfigNetwork),
}

impl Resolved<'_> {
    fn id(&self) -> &str {
        match self {
            Self::Network(n) => &n.id,
            Self::Config(c) => &c.id,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Network(n) => &n.name,
            Self::Config(c) => &c.name,
        }
    }
}

/// Version of the serialized form written by this code.
pub const STATE_VERSION: u32 = 1;

/// The whole container network model: networks, sandboxes, endpoints,
/// static FDB entries and bridge config.
///
/// Every mutating method validates the request completely before changing
/// anything, so an `Err` leaves the model exactly as it was. The daemon's
/// pattern is: clone, apply, perform side effects, persist the clone
/// ([`super::store::Store::save`]), then replace the live model with it
/// ([`super::store::Store::apply`] does the clone/apply/save/swap part).
///
/// Serializes as the versioned state file (`{"version":1,...}`);
/// deserializing checks every invariant, so a hand-edited inconsistent file
/// is refused rather than loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StateFile", try_from = "StateFile")]
pub struct Model {
    /// Networks by id.
    pub(crate) networks: BTreeMap<String, Network>,
    /// Sandboxes by name.
    pub(crate) sandboxes: BTreeMap<String, Sandbox>,
    /// Endpoints by id.
    pub(crate) endpoints: BTreeMap<String, Endpoint>,
    /// Static FDB entries by (network id, MAC).
    pub(crate) static_fdb: BTreeMap<(String, MacAddr), StaticFdbEntry>,
    /// Bridge config.
    pub(crate) config: Config,
    /// Static VXLAN peers by address.
    pub(crate) peers: BTreeMap<std::net::SocketAddr, Peer>,
    /// Services by name.
    pub(crate) services: BTreeMap<String, Service>,
    /// Uplinks by interface name.
    pub(crate) uplinks: BTreeMap<String, Uplink>,
    /// Impairments of the tunnels toward VTEPs, by the VTEP's address.
    pub(crate) tunnel_impairments: BTreeMap<std::net::SocketAddr, ctl::Impairment>,
    /// Configuration-only networks by id (see [`super::config_networks`]).
    pub(crate) config_networks: BTreeMap<String, ConfigNetwork>,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// A fresh model holding only the predefined networks: `bridge`
    /// (172.17.0.0/16, gateway 172.17.0.1), `host` and `none`.
    pub fn new() -> Self {
        let mut m = Model {
            networks: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            static_fdb: BTreeMap::new(),
            config: Config::default(),
            peers: BTreeMap::new(),
            services: BTreeMap::new(),
            uplinks: BTreeMap::new(),
            tunnel_impairments: BTreeMap::new(),
            config_networks: BTreeMap::new(),
        };
        let predefined = [
            (Driver::Bridge, Some(("172.17.0.0/16", Ipv4Addr::new(172, 17, 0, 1)))),
            (Driver::Host, None),
            (Driver::None, None),
        ];
        for (driver, ip) in predefined {
            let (subnet, gateway) = match ip {
                Some((s, g)) => (s.parse().ok(), Some(g)),
                None => (None, None),
            };
            let net = Network {
                id: m.fresh_network_id(),
                name: driver.as_str().to_owned(),
                driver,
                subnet,
                gateway,
                ip_range: None,
                enable_ipv4: true,
                enable_ipv6: false,
                subnet6: None,
                gateway6: None,
                ip_range6: None,
                aux_addresses: Default::default(),
                internal: false,
                attachable: false,
                mtu: 1500,
                vni: None,
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                created: ids::now_rfc3339(),
                network_index: m.free_network_index(),
                key_epoch: 0,
                cluster: false,
                iface_prefix: None,
                config_from: None,
            };
            m.networks.insert(net.id.clone(), net);
        }
        m
    }

    // ---- queries -------------------------------------------------------

    /// All networks, ordered by name.
    pub fn networks(&self) -> Vec<&Network> {
        let mut v: Vec<&Network> = self.networks.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Looks a network up like Docker: exact id, then exact name, then a
    /// unique id prefix, among networks and configuration networks alike
    /// (one name space, as in Docker); a configuration network found is
    /// refused by what it is ([`ModelError::ConfigOnly`]).
    pub fn network(&self, name_or_id: &str) -> Result<&Network, ModelError> {
        match self.resolve(name_or_id)? {
            Resolved::Network(n) => Ok(n),
            Resolved::Config(c) => Err(ModelError::ConfigOnly(c.name.clone())),
        }
    }

    /// What `name_or_id` names among the networks and configuration
    /// networks: the one of exactly that id, else of exactly that name,
    /// else the only one whose id starts with it.
    pub(crate) fn resolve(&self, name_or_id: &str) -> Result<Resolved<'_>, ModelError> {
        let networks = self.networks.values().map(Resolved::Network);
        let all = networks.chain(self.config_networks.values().map(Resolved::Config));
        if let Some(r) = all.clone().find(|r| r.id() == name_or_id) {
            return Ok(r);
        }
        if let Some(r) = all.clone().find(|r| r.name() == name_or_id) {
            return Ok(r);
        }
        let mut matches: Vec<Resolved<'_>> =
            if name_or_id.is_empty() { Vec::new() } else { all.filter(|r| r.id().starts_with(name_or_id)).collect() };
        matches.sort_by(|a, b| a.name().cmp(b.name()));
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(ModelError::NoSuchNetwork(name_or_id.to_owned())),
            many => Err(ModelError::AmbiguousNetwork {
                prefix: name_or_id.to_owned(),
                matches: many.iter().map(|r| r.name()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The network with exactly this id.
    pub fn network_by_id(&self, id: &str) -> Option<&Network> {
        self.networks.get(id)
    }

    /// The network with this datapath bridge-domain index.
    pub fn network_by_index(&self, index: u32) -> Option<&Network> {
        self.networks.values().find(|n| n.network_index == index)
    }

    /// All sandboxes, ordered by name.
    pub fn sandboxes(&self) -> impl Iterator<Item = &Sandbox> {
        self.sandboxes.values()
    }

    /// The sandbox with this name.
    pub fn sandbox(&self, name: &str) -> Result<&Sandbox, ModelError> {
        self.sandboxes.get(name).ok_or_else(|| ModelError::NoSuchSandbox(name.to_owned()))
    }

    /// All endpoints, ordered by id.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// The endpoint with exactly this id.
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id)
    }

    /// The endpoint whose TAP has this name.
    pub fn endpoint_by_tap(&self, tap: &str) -> Option<&Endpoint> {
        self.endpoints.values().find(|e| e.host_tap_name == tap)
    }

    /// The endpoint with this datapath port index.
    pub fn endpoint_by_port_index(&self, index: u32) -> Option<&Endpoint> {
        self.endpoints.values().find(|e| e.port_index == index)
    }

    /// The endpoints on a network (by id), ordered by address.
    pub fn endpoints_on_network(&self, network_id: &str) -> Vec<&Endpoint> {
        let mut v: Vec<&Endpoint> = self.endpoints.values().filter(|e| e.network_id == network_id).collect();
        v.sort_by_key(|e| (e.ipv4, e.ipv6));
        v
    }

    /// The endpoints in a sandbox, ordered by interface number (eth0,
    /// eth1, …; with networks of other prefixes, `data0` after `eth0`),
    /// then the interfaces named as asked (`lan0` on an `eth` network), by
    /// name.
    pub fn endpoints_in_sandbox(&self, sandbox: &str) -> Vec<&Endpoint> {
        let mut v: Vec<&Endpoint> = self.endpoints.values().filter(|e| e.sandbox == sandbox).collect();
        let prefix =
            |e: &Endpoint| self.networks.get(&e.network_id).map_or(DEFAULT_IFACE_PREFIX, Network::iface_prefix);
        v.sort_by_cached_key(|e| {
            let index = ifname_index(&e.ifname_in_sandbox, prefix(e));
            (index.is_none(), index, e.ifname_in_sandbox.clone())
        });
        v
    }

    /// The endpoint connecting `sandbox` to the network named/identified by `network`.
    pub fn endpoint_for(&self, network: &str, sandbox: &str) -> Result<&Endpoint, ModelError> {
        let net = self.network(network)?;
        self.sandbox(sandbox)?;
        self.endpoints
            .values()
            .find(|e| e.network_id == net.id && e.sandbox == sandbox)
            .ok_or_else(|| ModelError::NotConnected { sandbox: sandbox.to_owned(), network: net.name.clone() })
    }

    /// All static FDB entries, ordered by network id then MAC.
    pub fn static_fdb(&self) -> impl Iterator<Item = &StaticFdbEntry> {
        self.static_fdb.values()
    }

    /// The bridge config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- allocation helpers shared by the operations ----------------------

    /// A random id not used by any network.
    pub(crate) fn fresh_network_id(&self) -> String {
        loop {
            let id = ids::random_id();
            if !self.networks.contains_key(&id) && !self.config_networks.contains_key(&id) {
                return id;
            }
        }
    }

    /// The lowest network index not in use.
    pub(crate) fn free_network_index(&self) -> u32 {
        lowest_free(self.networks.values().map(|n| n.network_index))
    }

    /// The lowest port index not in use.
    pub(crate) fn free_port_index(&self) -> u32 {
        lowest_free(self.endpoints.values().map(|e| e.port_index).chain(self.uplinks.values().map(|u| u.port_index)))
    }

    // ---- invariants ----------------------------------------------------

    /// Checks every structural invariant; `Err` describes the first violation.
    /// Holds after every successful operation; checked when loading state.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (addr, p) in &self.peers {
            if *addr != p.addr {
                return Err(format!("peer {addr} is filed under the wrong address"));
            }
            for id in &p.network_ids {
                if self.networks.get(id).is_none_or(|n| n.driver != Driver::Overlay) {
                    return Err(format!("peer {addr} serves {id}, which is not an overlay network"));
                }
            }
        }
        for e in self.endpoints.values() {
            if let Some(impair) = &e.impair
                && let Err(err) = crate::impair::ImpairSettings::new(impair)
            {
                return Err(format!("endpoint {} has an impairment out of range: {err}", e.host_tap_name));
            }
        }
        let mut names = BTreeSet::new();
        let mut indexes = BTreeSet::new();
        let mut vnis = BTreeSet::new();
        for (id, n) in &self.networks {
            if id != &n.id || n.id.len() != 64 || !n.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("network {} has a bad id {:?}", n.name, n.id));
            }
            if !names.insert(n.name.as_str()) {
                return Err(format!("network name {} is used twice", n.name));
            }
            if !indexes.insert(n.network_index) {
                return Err(format!("network index {} is used twice", n.network_index));
            }
            let vni_ok = match n.vni {
                Some(v) => n.driver == Driver::Overlay && vnis.insert(v),
                None => n.driver != Driver::Overlay,
            };
            if !vni_ok {
                return Err(format!("network {} has a bad, missing or duplicate vni", n.name));
            }
            if let Some(Err(reason)) = n.iface_prefix.as_deref().map(super::networks::check_iface_prefix) {
                return Err(format!("network {} has a bad interface name prefix: {reason}", n.name));
            }
            if n.driver.is_switched() {
                if !n.enable_ipv4 && !n.enable_ipv6 {
                    return Err(format!("network {} has neither IPv4 nor IPv6", n.name));
                }
                if n.enable_ipv4 {
                    self.check_subnet4(n)?;
                } else if n.subnet.is_some() || n.gateway.is_some() || n.ip_range.is_some() {
                    return Err(format!("IPv6-only network {} has an IPv4 subnet", n.name));
                }
                if n.enable_ipv6 {
                    self.check_subnet6(n)?;
                } else if n.subnet6.is_some() || n.gateway6.is_some() || n.ip_range6.is_some() {
                    return Err(format!("network {} has an IPv6 subnet without IPv6", n.name));
                }
                super::networks::check_aux_addresses(n).map_err(|e| format!("network {}: {e}", n.name))?;
            } else if n.subnet.is_some() || n.gateway.is_some() || n.subnet6.is_some() || n.gateway6.is_some() {
                return Err(format!("network {} ({}) has a subnet", n.name, n.driver));
            }
        }
        for (id, c) in &self.config_networks {
            if id != &c.id || c.id.len() != 64 || !c.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("configuration network {} has a bad id {:?}", c.name, c.id));
            }
            if self.networks.contains_key(id) {
                return Err(format!("configuration network {} has the id of a network", c.name));
            }
            super::validate::object_name("network", &c.name).map_err(|e| e.to_string())?;
            if !names.insert(c.name.as_str()) {
                return Err(format!("network name {} is used twice", c.name));
            }
        }
        for n in self.networks.values() {
            if let Some(from) = &n.config_from
                && !self.config_networks.values().any(|c| &c.name == from)
            {
                return Err(format!("network {} names configuration network {from}, which does not exist", n.name));
            }
        }
        for p in PREDEFINED {
            if !self.networks.values().any(|n| n.name == p && n.driver.as_str() == p) {
                return Err(format!("predefined network {p} is missing"));
            }
        }
        let mut paths = BTreeSet::new();
        for (name, s) in &self.sandboxes {
            if name != &s.name || !paths.insert(&s.netns_path) {
                return Err(format!("sandbox {name} has a bad name or duplicate netns path"));
            }
        }
        let mut taps = BTreeSet::new();
        let mut ports = BTreeSet::new();
        let mut per_net = BTreeSet::new();
        let mut ips = BTreeSet::new();
        let mut ips6 = BTreeSet::new();
        let mut macs = BTreeSet::new();
        let mut ifnames = BTreeSet::new();
        let mut default_gw = BTreeSet::new();
        // Each sandbox's highest gateway priority among its endpoints on
        // non-internal networks.
        let mut top_priority: BTreeMap<&str, i64> = BTreeMap::new();
        for e in self.endpoints.values() {
            if self.networks.get(&e.network_id).is_some_and(|n| !n.internal) {
                let top = top_priority.entry(e.sandbox.as_str()).or_insert(e.gw_priority);
                *top = (*top).max(e.gw_priority);
            }
        }
        for (id, e) in &self.endpoints {
            let bad = |what: &str| Err(format!("endpoint {id}: {what}"));
            if id != &e.id || e.id.len() != 64 {
                return bad("bad id");
            }
            let Some(n) = self.networks.get(&e.network_id) else {
                return bad("unknown network");
            };
            if !n.driver.is_switched() {
                return bad("network has no subnet");
            }
            if !self.sandboxes.contains_key(&e.sandbox) {
                return bad("unknown sandbox");
            }
            match (n.subnet.zip(n.gateway).filter(|_| n.enable_ipv4), e.ipv4) {
                (None, None) => {}
                (Some((s, g)), Some(ip)) => {
                    if !s.contains(&ip) || ip == g || ip == s.network() || ip == s.broadcast() {
                        return bad("address outside subnet or reserved");
                    }
                    if e.prefix_len != s.prefix_len() {
                        return bad("prefix length differs from subnet");
                    }
                }
                _ => return bad("IPv4 address present without IPv4 on the network, or missing"),
            }
            match (n.subnet6.zip(n.gateway6).filter(|_| n.enable_ipv6), e.ipv6) {
                (None, None) => {}
                (Some((s, g)), Some(ip)) => {
                    if !s.contains(&ip) || ip == g || ip == s.network() {
                        return bad("IPv6 address outside subnet or reserved");
                    }
                    if e.prefix_len6 != s.prefix_len() {
                        return bad("IPv6 prefix length differs from subnet");
                    }
                }
                _ => return bad("IPv6 address present without IPv6 on the network, or missing"),
            }
            let is_aux = |ip: IpAddr| n.aux_addresses.values().any(|&aux| aux == ip);
            if e.ipv4.is_some_and(|ip| is_aux(ip.into())) || e.ipv6.is_some_and(|ip| is_aux(ip.into())) {
                return bad("address reserved as an auxiliary address");
            }
            if e.mac.is_group() || e.mac.is_zero() {
                return bad("bad MAC");
            }
            if super::validate::interface_name(&e.ifname_in_sandbox).is_err() || e.host_tap_name.len() > 15 {
                return bad("bad interface name");
            }
            let net = e.network_id.as_str();
            let sb = e.sandbox.as_str();
            if !taps.insert(e.host_tap_name.as_str())
                || !ports.insert(e.port_index)
                || !per_net.insert((net, sb))
                || e.ipv4.is_some_and(|ip| !ips.insert((net, ip)))
                || e.ipv6.is_some_and(|ip| !ips6.insert((net, ip)))
                || !macs.insert((net, e.mac))
                || !ifnames.insert((sb, e.ifname_in_sandbox.as_str()))
            {
                return bad("duplicate tap, port index, connection, address, MAC or ifname");
            }
            if e.is_default_gateway_network && (n.internal || !default_gw.insert(sb)) {
                return bad("bad default gateway flag");
            }
            // The flag is on a highest gateway priority of the sandbox.
            if e.is_default_gateway_network && top_priority.get(sb).is_some_and(|&top| top > e.gw_priority) {
                return bad("the default gateway flag is not on the highest gateway priority");
            }
        }
        for ((net, mac), f) in &self.static_fdb {
            if net != &f.network_id || mac != &f.mac {
                return Err(format!("static FDB entry {mac} has a bad key"));
            }
            if !self.static_fdb_port_exists(f) {
                return Err(format!("static FDB entry {mac} points at unknown port {}", f.port_name));
            }
        }
        for (name, svc) in &self.services {
            if name != &svc.name || self.networks.get(&svc.network_id).is_none_or(|n| !n.driver.is_switched()) {
                return Err(format!("service {name} has a bad name or network"));
            }
        }
        for (name, u) in &self.uplinks {
            if name != &u.interface
                || self.networks.get(&u.network_id).is_none_or(|n| !n.driver.is_switched())
                || u.port_type == ctl::proto::PortType::Tap
                || !ports.insert(u.port_index)
            {
                return Err(format!("uplink {name} has a bad name, network, port type or port index"));
            }
        }
        self.check_published_ports()?;
        if !(10..=1_000_000).contains(&self.config.aging_time_secs) {
            return Err(format!("aging time {} out of range", self.config.aging_time_secs));
        }
        Ok(())
    }
}

impl Model {
    /// The IPv4 invariants of a switched network with IPv4.
    fn check_subnet4(&self, n: &Network) -> Result<(), String> {
        let (Some(s), Some(g)) = (n.subnet, n.gateway) else {
            return Err(format!("network {} lacks a subnet or gateway", n.name));
        };
        if !s.is_network_address() || s.prefix_len() > 30 || !s.contains(&g) {
            return Err(format!("network {} has a bad subnet/gateway {s}/{g}", n.name));
        }
        if g == s.network() || g == s.broadcast() {
            return Err(format!("network {} has a bad gateway {g}", n.name));
        }
        for o in self.networks.values() {
            if o.id != n.id && o.subnet.is_some_and(|os| os.overlaps(&s)) {
                return Err(format!("networks {} and {} overlap", n.name, o.name));
            }
        }
        Ok(())
    }

    /// The IPv6 invariants of a switched network with IPv6.
    fn check_subnet6(&self, n: &Network) -> Result<(), String> {
        let (Some(s), Some(g)) = (n.subnet6, n.gateway6) else {
            return Err(format!("network {} lacks an IPv6 subnet or gateway", n.name));
        };
        if !s.is_network_address() || s.prefix_len() > 126 || !s.contains(&g) || g == s.network() {
            return Err(format!("network {} has a bad IPv6 subnet/gateway {s}/{g}", n.name));
        }
        if n.ip_range6.is_some_and(|r| r.trunc() != r || r.prefix_len() < s.prefix_len() || !s.contains(&r.network())) {
            return Err(format!("network {} has an IPv6 ip range outside its subnet", n.name));
        }
        for o in self.networks.values() {
            if o.id != n.id && o.subnet6.is_some_and(|os| os.overlaps(&s)) {
                return Err(format!("networks {} and {} overlap (IPv6)", n.name, o.name));
            }
        }
        Ok(())
    }
}

/// `n` for an interface name `<prefix><n>` (`eth0`: 0), of at most Linux's
/// 15 characters.
pub(crate) fn ifname_index(name: &str, prefix: &str) -> Option<u32> {
    if name.len() > 15 {
        return None;
    }
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The smallest integer not yielded by `used`.
pub(crate) fn lowest_free(used: impl Iterator<Item = u32>) -> u32 {
    let used: BTreeSet<u32> = used.collect();
    let mut candidate = 0;
    for u in used {
        if u != candidate {
            break;
        }
        candidate += 1;
    }
    candidate
}

/// The state file's layout, version 1.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateFile {
    version: u32,
    networks: Vec<Network>,
    sandboxes: Vec<Sandbox>,
    endpoints: Vec<Endpoint>,
    static_fdb: Vec<StaticFdbEntry>,
    config: Config,
    #[serde(default)]
    peers: Vec<Peer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    uplinks: Vec<Uplink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tunnel_impairments: Vec<TunnelImpairment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    config_networks: Vec<ConfigNetwork>,
}

/// The impairment of the tunnel toward one VTEP, as the state file holds it.
#[derive(Serialize, Deserialize)]
struct TunnelImpairment {
    remote: std::net::SocketAddr,
    impair: ctl::Impairment,
}

impl From<Model> for StateFile {
    fn from(m: Model) -> Self {
        StateFile {
            version: STATE_VERSION,
            networks: m.networks.into_values().collect(),
            sandboxes: m.sandboxes.into_values().collect(),
            endpoints: m.endpoints.into_values().collect(),
            static_fdb: m.static_fdb.into_values().collect(),
            config: m.config,
            peers: m.peers.into_values().collect(),
            services: m.services.into_values().collect(),
            uplinks: m.uplinks.into_values().collect(),
            tunnel_impairments: m
                .tunnel_impairments
                .into_iter()
                .map(|(remote, impair)| TunnelImpairment { remote, impair })
                .collect(),
            config_networks: m.config_networks.into_values().collect(),
        }
    }
}

impl TryFrom<StateFile> for Model {
    type Error = String;

    fn try_from(f: StateFile) -> Result<Self, String> {
        if f.version != STATE_VERSION {
            return Err(format!(
                "unsupported state version {} (this vswitchd reads version {STATE_VERSION})",
                f.version
            ));
        }
        let n_net = f.networks.len();
        let n_sb = f.sandboxes.len();
        let n_ep = f.endpoints.len();
        let n_fdb = f.static_fdb.len();
        let n_peers = f.peers.len();
        let n_services = f.services.len();
        let n_uplinks = f.uplinks.len();
        let n_configs = f.config_networks.len();
        // Docker's names for the MTU and VNI were kept as plain options, to
        // no effect, before `network create` read them (session 26): the
        // fields are what such a network has, so the options go.
        let networks = f.networks.into_iter().map(|mut n| {
            n.options.remove(super::types::DOCKER_MTU_OPTION);
            n.options.remove(super::types::DOCKER_VNI_OPTION);
            n
        });
        let m = Model {
            networks: networks.map(|n| (n.id.clone(), n)).collect(),
            sandboxes: f.sandboxes.into_iter().map(|s| (s.name.clone(), s)).collect(),
            endpoints: f.endpoints.into_iter().map(|e| (e.id.clone(), e)).collect(),
            static_fdb: f.static_fdb.into_iter().map(|e| ((e.network_id.clone(), e.mac), e)).collect(),
            config: f.config,
            peers: f.peers.into_iter().map(|p| (p.addr, p)).collect(),
            services: f.services.into_iter().map(|s| (s.name.clone(), s)).collect(),
            uplinks: f.uplinks.into_iter().map(|u| (u.interface.clone(), u)).collect(),
            tunnel_impairments: f.tunnel_impairments.into_iter().map(|t| (t.remote, t.impair)).collect(),
            config_networks: f.config_networks.into_iter().map(|c| (c.id.clone(), c)).collect(),
        };
        if m.config_networks.len() != n_configs {
            return Err("duplicate configuration network id".to_owned());
        }
        if m.uplinks.len() != n_uplinks {
            return Err("duplicate uplink".to_owned());
        }
        if (m.networks.len(), m.sandboxes.len(), m.endpoints.len(), m.static_fdb.len(), m.peers.len(), m.services.len())
            != (n_net, n_sb, n_ep, n_fdb, n_peers, n_services)
        {
            return Err("duplicate network id, sandbox name, endpoint id, FDB entry, peer or service".to_owned());
        }
        m.check_invariants()?;
        Ok(m)
    }
}
