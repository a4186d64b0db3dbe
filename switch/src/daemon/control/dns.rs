//! The control plane's side of the embedded DNS: the directory of names
//! built from the model (and pushed to the datapath after every change),
//! each sandbox's resolv.conf, and the `dns ls` / `sandbox inspect` views.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ctl::proto::{DnsRecord, ResolverInfo};
use dns::{Asker, Directory};

use super::super::datapath::endpoint_port;
use super::super::plumbing::{self, ResolvConf};
use super::cluster::RemoteName;
use super::{Control, Reply, model_error, ok};
use crate::model::{Endpoint, Model, Network, Sandbox};

/// The `options` line of a resolv.conf naming the embedded DNS (as Docker
/// writes it): every name is tried as given first, so `web` asks for `web`
/// before any search domain is appended.
const EMBEDDED_DNS_OPTIONS: &str = "ndots:0";

/// Whether a network's gateway serves DNS: every bridge and overlay network
/// (an IPv6-only one at its IPv6 gateway).
fn serves_dns(network: &Network) -> bool {
    network.driver.is_switched()
        && ((network.gateway.is_some() && network.subnet.is_some())
            || (network.gateway6.is_some() && network.subnet6.is_some()))
}

/// A sandbox's `--dns` servers as upstreams (port 53).
fn own_upstreams(sandbox: &Sandbox) -> Vec<SocketAddr> {
    sandbox.dns.iter().map(|ip| SocketAddr::new(*ip, 53)).collect()
}

/// The sandbox's endpoints on networks with the embedded DNS, the one
/// carrying its default route first, then by interface.
fn dns_endpoints<'m>(model: &'m Model, sandbox: &str) -> Vec<(&'m Endpoint, &'m Network)> {
    let mut endpoints: Vec<(&Endpoint, &Network)> = model
        .endpoints_in_sandbox(sandbox)
        .into_iter()
        .filter_map(|e| Some((e, model.network_by_id(&e.network_id)?)))
        .filter(|(_, n)| serves_dns(n))
        .collect();
    // Stable: interface order is kept among the others.
    endpoints.sort_by_key(|(e, _)| !e.is_default_gateway_network);
    endpoints
}

/// Builds the embedded DNS's directory from the model: the names of every
/// endpoint on networks with the embedded DNS (A records for their IPv4
/// addresses, AAAA for their IPv6 ones), and every endpoint as an asker
/// with its sandbox's scope, known by either of its addresses, and with
/// every address its sandbox holds (the translator takes any of them from
/// any of its endpoints, see `Directory::is_foreign_to_sandbox`). `remote`:
/// the endpoints of other cluster nodes on this node's cluster networks
/// (their A and AAAA records; they ask their own node).
pub(super) fn directory(model: &Model, remote: &[RemoteName]) -> Directory {
    let mut directory = Directory::new();
    for network in model.networks().into_iter().filter(|n| serves_dns(n)) {
        if let (Some(subnet), Some(_)) = (network.subnet, network.gateway) {
            directory.add_network(network.network_index, &network.name, subnet.trunc());
        }
        if let (Some(subnet6), Some(_)) = (network.subnet6, network.gateway6) {
            directory.add_network6(network.network_index, &network.name, subnet6.trunc());
        }
    }
    for endpoint in model.endpoints() {
        let Some(network) = model.network_by_id(&endpoint.network_id) else { continue };
        // A `--dns` server in a sandbox is asked through the gateway, on
        // behalf of its peers: not where they are isolated from one another
        // (`enable_icc=false`), as Docker's iptables would drop the query.
        let reachable = network.inter_container();
        if let Some(ipv4) = endpoint.ipv4 {
            directory.add_endpoint(network.network_index, &endpoint.sandbox, &endpoint.aliases, ipv4);
            if reachable {
                directory.add_mac(network.network_index, ipv4, endpoint.mac.0);
            }
        }
        if let Some(ipv6) = endpoint.ipv6 {
            directory.add_endpoint(network.network_index, &endpoint.sandbox, &endpoint.aliases, ipv6);
            if reachable {
                directory.add_mac(network.network_index, ipv6, endpoint.mac.0);
            }
        }
    }
    for r in remote {
        if let Some(ipv4) = r.ipv4 {
            directory.add_endpoint(r.network_index, &r.name, &r.aliases, ipv4);
        }
        if let Some(ipv6) = r.ipv6 {
            directory.add_endpoint(r.network_index, &r.name, &r.aliases, ipv6);
        }
    }
    for sandbox in model.sandboxes() {
        let endpoints = dns_endpoints(model, &sandbox.name);
        let forwarding = endpoints.iter().any(|(_, n)| !n.internal);
        let upstreams: Arc<[SocketAddr]> = own_upstreams(sandbox).into();
        // On every network, the switch's own or not: the sandbox may route
        // from any of them through any of its gateways (weak host model).
        let addresses: Arc<[IpAddr]> = model
            .endpoints_in_sandbox(&sandbox.name)
            .into_iter()
            .flat_map(|e| e.ipv4.map(IpAddr::V4).into_iter().chain(e.ipv6.map(IpAddr::V6)))
            .collect();
        for (endpoint, network) in &endpoints {
            if endpoint.ipv4.is_none() && endpoint.ipv6.is_none() {
                continue;
            }
            let mut scope = vec![network.network_index];
            scope.extend(endpoints.iter().map(|(_, n)| n.network_index).filter(|n| *n != network.network_index));
            let asker = Asker {
                address: endpoint.ipv4,
                address6: endpoint.ipv6,
                network: network.network_index,
                scope,
                forwarding,
                upstreams: upstreams.clone(),
            };
            directory.add_asker(endpoint_port(endpoint.port_index).0, asker);
            directory.set_sandbox_addresses(endpoint_port(endpoint.port_index).0, addresses.clone());
        }
    }
    directory
}

/// What a sandbox's resolv.conf says: the gateway of its first network with
/// the embedded DNS (its IPv4 gateway, or on an IPv6-only network its IPv6
/// one; its `--dns` servers are then its upstreams), or, on no such network,
/// its own `--dns` servers.
pub(super) fn resolv_conf(model: &Model, sandbox: &Sandbox) -> ResolvConf {
    let endpoints = dns_endpoints(model, &sandbox.name);
    let gateway = endpoints.first().and_then(|(_, n)| n.gateway.map(IpAddr::V4).or(n.gateway6.map(IpAddr::V6)));
    match gateway {
        Some(gateway) => {
            // The sandbox's own options, and Docker's ndots:0 unless it gave
            // an ndots (names without a dot are the network's own).
            let mut options = sandbox.dns_options.clone();
            if !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push(EMBEDDED_DNS_OPTIONS.to_owned());
            }
            ResolvConf { nameservers: vec![gateway], search: sandbox.dns_search.clone(), options }
        }
        None => ResolvConf::standalone(sandbox),
    }
}

impl Control {
    /// The names of other cluster nodes' endpoints (none outside cluster mode).
    fn remote_names(&self) -> &[RemoteName] {
        self.cluster.as_ref().map_or(&[], |c| &c.names)
    }

    /// Gives the datapath the directory of the current model.
    pub(super) fn sync_dns(&self) {
        if let Err(e) = self.datapath.set_dns(directory(&self.model, self.remote_names())) {
            tracing::error!(error = %e, "cannot update the embedded DNS");
        }
    }

    /// Writes sandbox `name`'s resolv.conf for its current networks, and
    /// its hosts file (`--add-host`).
    pub(super) fn write_sandbox_files(&self, name: &str) {
        let Ok(sandbox) = self.model.sandbox(name) else { return };
        if let Err(e) = plumbing::write_resolv_conf(&sandbox.name, &resolv_conf(&self.model, sandbox)) {
            tracing::warn!(sandbox = name, error = %e, "cannot write the sandbox's resolv.conf");
        }
        // A namespace vswitchd made shares its hostname; an adopted one's
        // hostname is its runtime's business.
        let own = sandbox
            .owns_netns
            .then(plumbing::hostname)
            .flatten()
            .map(|hostname| plumbing::OwnHost { hostname, addresses: self.model.own_addresses(name) })
            .filter(|own| !own.addresses.is_empty());
        if let Err(e) = plumbing::write_hosts(&sandbox.name, &sandbox.extra_hosts, own.as_ref()) {
            tracing::warn!(sandbox = name, error = %e, "cannot write the sandbox's hosts file");
        }
    }

    /// `sandbox inspect`: the sandbox with its resolver configuration.
    pub(super) fn sandbox_inspect(&self, name: &str) -> Reply {
        let sandbox = self.model.sandbox(name).map_err(model_error)?;
        let conf = resolv_conf(&self.model, sandbox);
        let own = own_upstreams(sandbox);
        let forwarding = dns_endpoints(&self.model, name).iter().any(|(_, n)| !n.internal);
        let upstreams = match (forwarding, own.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => self.dns_upstreams.clone(),
            (true, false) => own,
        };
        let resolver = ResolverInfo {
            resolv_conf: Some(PathBuf::from(plumbing::resolv_conf_path(&sandbox.name))).filter(|p| p.exists()),
            nameservers: conf.nameservers,
            search: conf.search,
            options: conf.options,
            upstreams,
            forwarding,
        };
        let mut info = self.sandbox_info(name);
        info.resolver = Some(resolver);
        // For `port`: a port published on every address listens on [::] too.
        info.listens_ipv6 = crate::sys::ports::host_has_ipv6();
        ok(info)
    }

    /// `dns ls [NET]`: the records served.
    pub(super) fn dns_ls(&self, network: Option<&str>) -> Reply {
        let only = network.map(|n| self.model.network(n).map(|n| n.network_index)).transpose().map_err(model_error)?;
        let records: Vec<DnsRecord> = directory(&self.model, self.remote_names())
            .list(only)
            .into_iter()
            .map(|r| DnsRecord {
                network: self.model.network_by_index(r.network).map(|n| n.name.clone()).unwrap_or_default(),
                name: r.name,
                record_type: r.record_type.to_owned(),
                value: r.value,
                sandbox: r.sandbox,
                ttl: dns::TTL,
            })
            .collect();
        ok(records)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ctl::proto::Driver;
    use dns::{Advance, Found};

    use super::*;
    use crate::model::{Connect, CreateNetwork, CreateSandbox};

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// Sandboxes web (dual-stack network app) and six (app and the
    /// IPv6-only network v6only), and solo (v6only alone).
    fn model() -> Model {
        let mut m = Model::new();
        for s in ["web", "six", "solo"] {
            m.create_sandbox(CreateSandbox::new(s)).unwrap();
        }
        let app = CreateNetwork {
            subnet: Some("10.61.0.0/24".parse().unwrap()),
            enable_ipv6: true,
            subnet6: Some("fd00:61::/64".parse().unwrap()),
            ..CreateNetwork::new("app", Driver::Bridge)
        };
        m.create_network(app).unwrap();
        let only6 = CreateNetwork {
            enable_ipv4: false,
            enable_ipv6: true,
            subnet6: Some("fd00:62::/64".parse().unwrap()),
            ..CreateNetwork::new("v6only", Driver::Bridge)
        };
        m.create_network(only6).unwrap();
        m.connect(Connect::new("app", "web")).unwrap();
        m.connect(Connect::new("app", "six")).unwrap();
        m.connect(Connect::new("v6only", "six")).unwrap();
        m.connect(Connect::new("v6only", "solo")).unwrap();
        m
    }

    #[test]
    fn the_directory_has_aaaa_records_and_ipv6_askers() {
        let m = model();
        let d = directory(&m, &[]);
        let app = m.network("app").unwrap().network_index;
        let only6 = m.network("v6only").unwrap().network_index;
        let web = Found::Addresses { v4: vec![Ipv4Addr::new(10, 61, 0, 2)], v6: vec![v6("fd00:61::2")] };
        assert_eq!(d.lookup(&[app], "web", Advance::None), Some(web));
        let solo = Found::Addresses { v4: Vec::new(), v6: vec![v6("fd00:62::3")] };
        assert_eq!(d.lookup(&[only6], "solo.v6only", Advance::None), Some(solo));
        assert_eq!(
            d.lookup(&[app], &dns::reverse_name(v6("fd00:61::2")), Advance::None),
            Some(Found::Pointer("web.app".into()))
        );
        assert_eq!(
            d.lookup(&[only6], &dns::reverse_name(v6("fd00:62::99")), Advance::None),
            Some(Found::NoSuchAddress)
        );

        // solo asks over IPv6 alone; six from either network, by either family.
        let solo_port = endpoint_port(m.endpoints_in_sandbox("solo")[0].port_index).0;
        let asker = d.asker(solo_port).expect("an IPv6-only endpoint asks too");
        assert_eq!((asker.address, asker.address6, &asker.scope[..]), (None, Some(v6("fd00:62::3")), &[only6][..]));
        assert!(d.owns_address(solo_port, v6("fd00:62::3")));
        for e in m.endpoints_in_sandbox("six") {
            let port = endpoint_port(e.port_index).0;
            let asker = d.asker(port).unwrap();
            assert_eq!((asker.address, asker.address6), (e.ipv4, e.ipv6));
            assert_eq!(asker.scope.len(), 2, "both networks in scope");
            assert_eq!(d.asker_by_address(asker.network, e.ipv6.unwrap()).map(|a| a.network), Some(asker.network));
        }
        let listed: Vec<(String, &str)> =
            d.list(Some(only6)).into_iter().map(|r| (r.name, r.record_type)).filter(|(n, _)| n == "solo").collect();
        assert_eq!(listed, [("solo".to_owned(), "AAAA")]);
    }

    /// Endpoints' MACs are what lets the gateway ask a `--dns` server in a
    /// sandbox for its peers: of both families, and none where the peers
    /// are isolated from one another (`enable_icc=false`).
    #[test]
    fn endpoint_macs_are_known_except_where_sandboxes_are_isolated() {
        let mut m = model();
        let mut closed = CreateNetwork {
            subnet: Some("10.63.0.0/24".parse().unwrap()),
            ..CreateNetwork::new("closed", Driver::Bridge)
        };
        closed.options.insert(crate::model::ICC_OPTION.into(), "false".into());
        m.create_network(closed).unwrap();
        m.connect(Connect::new("closed", "solo")).unwrap();
        let d = directory(&m, &[]);
        let app = m.network("app").unwrap().network_index;
        let web = &m.endpoints_in_sandbox("web")[0];
        assert_eq!(d.mac_of(app, web.ipv4.unwrap()), Some(web.mac.0));
        assert_eq!(d.mac_of(app, web.ipv6.unwrap()), Some(web.mac.0));
        let closed = m.network("closed").unwrap();
        let solo = m.endpoints_in_sandbox("solo").into_iter().find(|e| e.network_id == closed.id).unwrap();
        assert_eq!(d.mac_of(closed.network_index, solo.ipv4.unwrap()), None);
        assert_eq!(
            d.lookup(&[closed.network_index], "solo", Advance::None),
            Some(Found::Addresses { v4: vec![solo.ipv4.unwrap()], v6: Vec::new() }),
            "names still resolve"
        );
    }

    /// A sandbox's `--dns-option`s are its resolv.conf's options; with the
    /// embedded DNS, Docker's ndots:0 joins them unless they give an ndots.
    #[test]
    fn dns_options_join_the_embedded_dns_ndots_unless_they_set_one() {
        let mut m = model();
        for (name, options) in [("o1", vec!["rotate", "timeout:2"]), ("o2", vec!["ndots:5", "edns0"])] {
            let options = options.into_iter().map(str::to_owned).collect();
            m.create_sandbox(CreateSandbox { dns_options: options, ..CreateSandbox::new(name) }).unwrap();
        }
        let alone = resolv_conf(&m, m.sandbox("o1").unwrap());
        assert_eq!(alone.options, ["rotate", "timeout:2"], "on no network: as given");
        m.connect(Connect::new("app", "o1")).unwrap();
        m.connect(Connect::new("app", "o2")).unwrap();
        assert_eq!(resolv_conf(&m, m.sandbox("o1").unwrap()).options, ["rotate", "timeout:2", "ndots:0"]);
        assert_eq!(resolv_conf(&m, m.sandbox("o2").unwrap()).options, ["ndots:5", "edns0"]);
        assert_eq!(resolv_conf(&m, m.sandbox("web").unwrap()).options, ["ndots:0"]);
    }

    #[test]
    fn an_ipv6_only_sandbox_asks_its_ipv6_gateway() {
        let m = model();
        let conf = resolv_conf(&m, m.sandbox("solo").unwrap());
        assert_eq!(conf.nameservers, [IpAddr::V6(v6("fd00:62::1"))]);
        let conf = resolv_conf(&m, m.sandbox("web").unwrap());
        assert_eq!(conf.nameservers, [IpAddr::V4(Ipv4Addr::new(10, 61, 0, 1))], "dual-stack: the IPv4 gateway");
    }
}
