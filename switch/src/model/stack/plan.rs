//! [`Model::plan_stack`]: the desired state applied to a copy of the model,
//! with every check the model makes, before anything is done on the host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ctl::proto::Driver;
use ctl::stack::{Stack, StackAttachment, StackIssue, StackNetwork, StackObject, StackSandbox, StackStatus};
use ctl::{IpNet, PortMapping};

use crate::model::error::ModelError;
use crate::model::state::Model;
use crate::model::types::{
    Connect, CreateNetwork, CreateSandbox, ENCRYPTED_OPTION, Endpoint, Network, Sandbox, Service, Uplink,
};
use crate::model::validate;

/// What the daemon, not the model, decides for new networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackDefaults {
    /// The MTU of a new overlay network without one (from the underlay).
    pub overlay_mtu: u32,
    /// The MTU of a new encrypted overlay network without one.
    pub encrypted_overlay_mtu: u32,
    /// Whether a cluster secret is loaded (`encrypted` is possible).
    pub has_secret: bool,
}

/// Why a stack cannot be applied: every issue found, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRefusal {
    /// The problems.
    pub issues: Vec<StackIssue>,
    /// The model's refusal behind the first issue, if there was one (it
    /// says which kind of error the request gets); boxed, as it is large
    /// and refusals travel through every planning step.
    pub cause: Option<Box<ModelError>>,
    /// An object exists with settings that cannot change in place.
    pub conflict: bool,
}

impl StackRefusal {
    fn issues(issues: Vec<StackIssue>) -> Self {
        Self { issues, cause: None, conflict: false }
    }

    fn model(key: impl Into<String>, e: ModelError) -> Self {
        Self { issues: vec![StackIssue::new(key, e.to_string())], cause: Some(Box::new(e)), conflict: false }
    }

    fn conflict(key: impl Into<String>, message: String) -> Self {
        Self { issues: vec![StackIssue::new(key, message)], cause: None, conflict: true }
    }
}

/// Published ports of an endpoint that exists before and after the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortChange {
    /// The endpoint's id.
    pub endpoint_id: String,
    /// Mappings to open.
    pub added: Vec<PortMapping>,
    /// Mappings to close.
    pub removed: Vec<PortMapping>,
}

/// A service created or recreated by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChange {
    /// The service as it was (its ports to close), if it existed.
    pub before: Option<Service>,
    /// The service as it will be.
    pub after: Service,
}

/// The outcome of planning: the model to commit and what must happen on
/// the host for it, in the order the daemon performs it (removals first,
/// so addresses, interface names, port indexes and host ports they free
/// can be taken by what is created).
#[derive(Debug, Clone)]
pub struct StackPlan {
    /// The model with the stack applied (not yet saved).
    pub next: Model,
    /// Every object of the file and what happens to it.
    pub objects: Vec<StackObject>,
    /// Endpoints that go (as they are now): disconnected, or recreated.
    pub removed: Vec<Endpoint>,
    /// Networks to create (as in `next`).
    pub networks: Vec<Network>,
    /// Uplinks to attach: the parents of new macvlan networks (as in
    /// `next`).
    pub uplinks: Vec<Uplink>,
    /// Sandboxes to create (as in `next`).
    pub sandboxes: Vec<Sandbox>,
    /// Endpoints to create (as in `next`, with their published ports).
    pub endpoints: Vec<Endpoint>,
    /// Published ports of kept endpoints.
    pub ports: Vec<PortChange>,
    /// Services created or recreated.
    pub services: Vec<ServiceChange>,
    /// Kept endpoints that take over their sandbox's default route.
    pub new_default_routes: Vec<Endpoint>,
    /// Sandboxes whose resolver configuration may have changed.
    pub touched_sandboxes: BTreeSet<String>,
}

impl StackPlan {
    /// Whether the plan changes anything.
    pub fn changes_anything(&self) -> bool {
        self.objects.iter().any(|o| o.status != StackStatus::Unchanged)
    }
}

/// A network's differences from the file that cannot change in place:
/// (key suffix, what it is, what the file says).
fn network_differences(have: &Network, want: &StackNetwork) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut differ = |key: &str, have: String, want: String| {
        if have != want {
            out.push((key.to_owned(), have, want));
        }
    };
    differ("driver", have.driver.to_string(), want.driver.to_string());
    let show = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
    if want.subnet.is_some() {
        differ("subnet", show(have.subnet.map(|s| s.to_string())), show(want.subnet.map(|s| s.to_string())));
    }
    if want.gateway.is_some() {
        differ("gateway", show(have.gateway.map(|s| s.to_string())), show(want.gateway.map(|s| s.to_string())));
    }
    differ("ip_range", show(have.ip_range.map(|s| s.to_string())), show(want.ip_range.map(|s| s.to_string())));
    differ("enable_ipv4", have.enable_ipv4.to_string(), want.enable_ipv4.to_string());
    differ("enable_ipv6", have.enable_ipv6.to_string(), want.enable_ipv6.to_string());
    if want.subnet6.is_some() {
        differ("subnet6", show(have.subnet6.map(|s| s.to_string())), show(want.subnet6.map(|s| s.to_string())));
    }
    if want.gateway6.is_some() {
        differ("gateway6", show(have.gateway6.map(|s| s.to_string())), show(want.gateway6.map(|s| s.to_string())));
    }
    differ("ip_range6", show(have.ip_range6.map(|s| s.to_string())), show(want.ip_range6.map(|s| s.to_string())));
    let aux = |m: &BTreeMap<String, IpAddr>| {
        let all: Vec<String> = m.iter().map(|(name, ip)| format!("{name}={ip}")).collect();
        if all.is_empty() { "none".to_owned() } else { all.join(",") }
    };
    differ("aux_addresses", aux(&have.aux_addresses), aux(&want.aux_addresses));
    differ("internal", have.internal.to_string(), want.internal.to_string());
    differ("attachable", have.attachable.to_string(), want.attachable.to_string());
    if let Some(mtu) = want.mtu {
        differ("mtu", have.mtu.to_string(), mtu.to_string());
    }
    if want.vni.is_some() {
        differ("vni", show(have.vni.map(|v| v.to_string())), show(want.vni.map(|v| v.to_string())));
    }
    let text = |v: Option<&String>| v.map_or_else(|| "unset".to_owned(), |v| format!("{v:?}"));
    let keys: BTreeSet<&String> = have.options.keys().chain(want.options.keys()).collect();
    for k in keys {
        differ(&format!("options.{k}"), text(have.options.get(k)), text(want.options.get(k)));
    }
    // Labels the file gives must match; others (say, added with `network
    // create --label`) are the user's and do not make the network differ.
    for (k, v) in &want.labels {
        differ(&format!("labels.{k}"), text(have.labels.get(k)), text(Some(v)));
    }
    out
}

/// `6` for the IPv6 one of a pair of keys (`subnet6`, `ipv6_address`'s
/// family), nothing for the IPv4 one.
fn family(v6: bool) -> &'static str {
    if v6 { "6" } else { "" }
}

/// The key of a network field a [`ModelError`] of `create_network` is about
/// (`subnet` or `subnet6` as the subnet's family says).
fn network_error_key(key: &str, e: &ModelError) -> String {
    use ModelError as M;
    let net6 = |n: &IpNet| matches!(n, IpNet::V6(_));
    let option = |option: &str| if option == "ip-range" { "ip_range".to_owned() } else { option.to_owned() };
    let field = match e {
        M::SubnetHostBitsSet { subnet, .. }
        | M::SubnetTooSmall { subnet, .. }
        | M::SubnetReserved { subnet, .. }
        | M::SubnetOverlap { subnet, .. } => format!("subnet{}", family(net6(subnet))),
        M::PoolsExhausted => "subnet".to_owned(),
        M::Ipv6PoolExhausted => "subnet6".to_owned(),
        M::GatewayWithoutSubnet => "gateway".to_owned(),
        M::Gateway6WithoutSubnet6 => "gateway6".to_owned(),
        M::GatewayOutsideSubnet { gateway, .. } | M::GatewayReserved { gateway, .. } => {
            format!("gateway{}", family(gateway.is_ipv6()))
        }
        M::IpRangeWithoutSubnet => "ip_range".to_owned(),
        M::IpRange6WithoutSubnet6 => "ip_range6".to_owned(),
        M::IpRangeHostBitsSet { range, .. } | M::IpRangeEmpty { range, .. } | M::IpRangeOutsideSubnet { range, .. } => {
            format!("ip_range{}", family(net6(range)))
        }
        M::NoAddressFamily => "enable_ipv4".to_owned(),
        M::Ipv4Disabled(o) => option(o),
        M::Ipv6NotEnabled(o) => format!("{}6", option(o)),
        M::MtuOutOfRange(_) => "mtu".to_owned(),
        M::VniOutOfRange(_) | M::VniInUse { .. } | M::VnisExhausted => "vni".to_owned(),
        M::OptionNotSupported { option, .. }
        | M::InvalidOption { option, .. }
        | M::UnsupportedOption { option, .. } => format!("options.{option}"),
        M::SingletonDriver(_) => "driver".to_owned(),
        M::BadAuxAddress { name, .. } => format!("aux_addresses.{name}"),
        _ => return key.to_owned(),
    };
    format!("{key}.{field}")
}

/// The key of an attachment field a [`ModelError`] of `connect` is about
/// (`ipv4_address` or `ipv6_address` as the address's family says).
fn connect_error_key(key: &str, e: &ModelError) -> String {
    use ModelError as M;
    let address = |v6: bool| if v6 { "ipv6_address" } else { "ipv4_address" };
    let field = match e {
        M::AddressOutsideSubnet { ip, .. }
        | M::AddressReserved { ip, .. }
        | M::AuxAddressTaken { ip, .. }
        | M::AddressInUse { ip, .. } => address(ip.is_ipv6()),
        M::AddressesExhausted { subnet: n, .. } | M::IpRangeExhausted { range: n, .. } => {
            address(matches!(n, IpNet::V6(_)))
        }
        M::NoIpv4OnNetwork(_) => "ipv4_address",
        M::NoIpv6OnNetwork(_) => "ipv6_address",
        M::WrongFamily { option, .. } => address(*option == "ip6"),
        M::InvalidMac { .. } | M::MacInUse { .. } => "mac_address",
        M::InvalidDnsName { .. } => "aliases",
        M::InvalidName { kind: "service", .. } => "service",
        M::InvalidName { kind: "interface", .. } | M::InterfaceNameInUse { .. } => "interface_name",
        _ => return key.to_owned(),
    };
    format!("{key}.{field}")
}

/// The file's ports as a set, for comparison.
fn port_set(ports: &[PortMapping]) -> BTreeSet<PortMapping> {
    ports.iter().copied().collect()
}

/// Why an existing endpoint cannot stay as it is, if it cannot.
fn recreate_reason(ep: &Endpoint, want: &StackAttachment) -> Option<String> {
    if let Some(ip) = want.ipv4_address.filter(|ip| Some(*ip) != ep.ipv4) {
        let had = ep.ipv4.map_or_else(|| "none".to_owned(), |a| a.to_string());
        return Some(format!("ipv4_address {had} → {ip}"));
    }
    if let Some(ip) = want.ipv6_address.filter(|ip| Some(*ip) != ep.ipv6) {
        let had = ep.ipv6.map_or_else(|| "none".to_owned(), |a| a.to_string());
        return Some(format!("ipv6_address {had} → {ip}"));
    }
    if let Some(mac) = want.mac_address.filter(|m| *m != ep.mac) {
        return Some(format!("mac_address {} → {mac}", ep.mac));
    }
    if want.service != ep.service {
        let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".to_owned());
        return Some(format!("service {} → {}", show(&ep.service), show(&want.service)));
    }
    if want.gw_priority != ep.gw_priority {
        return Some(format!("gw_priority {} → {}", ep.gw_priority, want.gw_priority));
    }
    if let Some(name) = want.interface_name.as_ref().filter(|name| **name != ep.ifname_in_sandbox) {
        return Some(format!("interface_name {} → {name}", ep.ifname_in_sandbox));
    }
    None
}

/// Change notes, creation flags and what created objects get, per object.
struct Report {
    created: BTreeSet<(&'static str, String)>,
    changes: BTreeMap<(&'static str, String), Vec<String>>,
    details: BTreeMap<(&'static str, String), Vec<String>>,
}

impl Report {
    fn change(&mut self, kind: &'static str, name: &str, what: String) {
        self.changes.entry((kind, name.to_owned())).or_default().push(what);
    }

    fn object(&self, kind: &'static str, name: &str) -> StackObject {
        let key = (kind, name.to_owned());
        let changes = self.changes.get(&key).cloned().unwrap_or_default();
        let status = if self.created.contains(&key) {
            StackStatus::Created
        } else if changes.is_empty() {
            StackStatus::Unchanged
        } else {
            StackStatus::Changed
        };
        let changes = if status == StackStatus::Changed { changes } else { Vec::new() };
        let details = match status {
            StackStatus::Created => self.details.get(&key).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        StackObject { kind: kind.to_owned(), name: name.to_owned(), status, changes, details }
    }
}

/// What a created network gets: each family's subnet, gateway and range.
fn network_details(n: &Network) -> Vec<String> {
    let range = |r: Option<String>| r.map(|r| format!(", ip_range {r}")).unwrap_or_default();
    let mut out = Vec::new();
    if let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) {
        out.push(format!("subnet {subnet}, gateway {gateway}{}", range(n.ip_range.map(|r| r.to_string()))));
    }
    if let (Some(subnet), Some(gateway)) = (n.subnet6, n.gateway6) {
        out.push(format!("IPv6 subnet {subnet}, gateway {gateway}{}", range(n.ip_range6.map(|r| r.to_string()))));
    }
    out
}

impl Model {
    /// The network named exactly `name` (not an id or prefix).
    fn network_named(&self, name: &str) -> Option<&Network> {
        self.networks.values().find(|n| n.name == name)
    }

    /// Applies `stack` to a copy of the model, checking everything, and
    /// returns the copy with the side effects it needs; the model itself is
    /// not changed. See the module documentation for what changes in place,
    /// what is recreated and what is refused.
    pub fn plan_stack(&self, stack: &Stack, defaults: &StackDefaults) -> Result<StackPlan, StackRefusal> {
        let issues = ctl::stack::validate(stack);
        if !issues.is_empty() {
            return Err(StackRefusal::issues(issues));
        }
        let mut next = self.clone();
        let mut report = Report { created: BTreeSet::new(), changes: BTreeMap::new(), details: BTreeMap::new() };
        let mut plan_networks = Vec::new();
        let mut plan_uplinks = Vec::new();
        for n in &stack.networks {
            if let Some(net) = next.plan_network(n, defaults)? {
                // A macvlan network's parent is its uplink.
                let key = format!("networks.{}.options.{}", n.name, crate::model::PARENT_OPTION);
                if let Some(uplink) = next.add_macvlan_uplink(&net).map_err(|e| StackRefusal::model(key, e))? {
                    plan_uplinks.push(uplink);
                }
                report.created.insert(("network", n.name.clone()));
                report.details.insert(("network", n.name.clone()), network_details(&net));
                plan_networks.push(net);
            }
        }
        let mut plan_sandboxes = Vec::new();
        let mut touched = BTreeSet::new();
        for s in &stack.sandboxes {
            touched.insert(s.name.clone());
            match next.sandboxes.get_mut(&s.name) {
                Some(existing) => {
                    let key = format!("sandboxes.{}", s.name);
                    let netns_differs = match &s.netns {
                        Some(path) => existing.owns_netns || existing.netns_path != *path,
                        None => !existing.owns_netns,
                    };
                    if netns_differs {
                        let have = existing.netns_path.display().to_string();
                        return Err(StackRefusal::conflict(
                            format!("{key}.netns"),
                            format!(
                                "sandbox {} exists in namespace {have}; a sandbox's namespace does not change in \
                                 place (remove it first: vswitchctl sandbox rm {})",
                                s.name, s.name
                            ),
                        ));
                    }
                    if existing.dns != s.dns
                        || existing.dns_search != s.dns_search
                        || existing.dns_options != s.dns_options
                    {
                        for d in &s.dns_search {
                            validate::dns_name("dns search domain", d)
                                .map_err(|e| StackRefusal::model(format!("{key}.dns_search"), e))?;
                        }
                        validate::dns_options(&s.dns_options)
                            .map_err(|e| StackRefusal::model(format!("{key}.dns_opt"), e))?;
                        existing.dns.clone_from(&s.dns);
                        existing.dns_search.clone_from(&s.dns_search);
                        existing.dns_options.clone_from(&s.dns_options);
                        report.change("sandbox", &s.name, "dns settings".to_owned());
                    }
                    let extra_hosts = validate::extra_hosts(&s.extra_hosts)
                        .map_err(|e| StackRefusal::model(format!("{key}.extra_hosts"), e))?;
                    if existing.extra_hosts != extra_hosts {
                        existing.extra_hosts = extra_hosts;
                        report.change("sandbox", &s.name, "extra hosts".to_owned());
                    }
                }
                None => {
                    let req = CreateSandbox {
                        name: s.name.clone(),
                        dns: s.dns.clone(),
                        dns_search: s.dns_search.clone(),
                        dns_options: s.dns_options.clone(),
                        extra_hosts: s.extra_hosts.clone(),
                        netns_path: s.netns.clone(),
                    };
                    let key = format!("sandboxes.{}", s.name);
                    let sandbox = next.create_sandbox(req).map_err(|e| {
                        let field = match e {
                            ModelError::NetnsPathNotAbsolute(_) | ModelError::NetnsPathInUse { .. } => ".netns",
                            ModelError::InvalidDnsName { .. } => ".dns_search",
                            ModelError::InvalidDnsOption(_) | ModelError::DnsOptionsTooLong { .. } => ".dns_opt",
                            ModelError::InvalidExtraHost { .. } => ".extra_hosts",
                            _ => "",
                        };
                        StackRefusal::model(format!("{key}{field}"), e)
                    })?;
                    report.created.insert(("sandbox", s.name.clone()));
                    plan_sandboxes.push(sandbox);
                }
            }
        }
        let defaults_before: BTreeSet<String> =
            self.endpoints.values().filter(|e| e.is_default_gateway_network).map(|e| e.id.clone()).collect();
        let (removed, recreated) = next.plan_removals(stack, &mut report)?;
        let mut created_ids = Vec::new();
        for s in &stack.sandboxes {
            for a in &s.networks {
                if next.endpoint_on(&s.name, &a.network).is_some() {
                    continue;
                }
                let key = format!("sandboxes.{}.networks.{}", s.name, a.network);
                let req = Connect {
                    network: a.network.clone(),
                    sandbox: s.name.clone(),
                    ipv4: a.ipv4_address,
                    ipv6: a.ipv6_address,
                    aliases: a.aliases.clone(),
                    mac: a.mac_address,
                    exempt_from_attachable: false,
                    publish: Vec::new(),
                    service: a.service.clone(),
                    port_type: ctl::proto::PortType::Tap,
                    gw_priority: a.gw_priority,
                    ifname: a.interface_name.clone(),
                    // An automatic name leaves those the sandbox's other
                    // attachments ask for (`eth0` on a network of another
                    // prefix) to them, whatever the order.
                    reserved_ifnames: s.networks.iter().filter_map(|b| b.interface_name.clone()).collect(),
                    exclude: Default::default(),
                };
                let ep = next.connect(req).map_err(|e| StackRefusal::model(connect_error_key(&key, &e), e))?;
                let noted = recreated.contains(&(s.name.clone(), a.network.clone()));
                if !noted && !report.created.contains(&("sandbox", s.name.clone())) {
                    report.change("sandbox", &s.name, format!("connected to {} ({})", a.network, ep.addresses()));
                }
                created_ids.push(ep.id);
            }
        }
        for s in stack.sandboxes.iter().filter(|s| report.created.contains(&("sandbox", s.name.clone()))) {
            let connections = s
                .networks
                .iter()
                .filter_map(|a| {
                    let ep = next.endpoint_on(&s.name, &a.network)?;
                    Some(format!("{} on {}: {}", ep.ifname_in_sandbox, a.network, ep.addresses()))
                })
                .collect();
            report.details.insert(("sandbox", s.name.clone()), connections);
        }
        let ports = next.plan_ports(stack, &created_ids, &mut report)?;
        let services = next.plan_services(stack, &mut report)?;
        let endpoints: Vec<Endpoint> = created_ids.iter().filter_map(|id| next.endpoints.get(id).cloned()).collect();
        let new_default_routes = next
            .endpoints
            .values()
            .filter(|e| e.is_default_gateway_network && !defaults_before.contains(&e.id))
            .filter(|e| self.endpoints.contains_key(&e.id))
            .cloned()
            .collect();
        next.check_invariants().map_err(|e| StackRefusal::issues(vec![StackIssue::new("", e)]))?;
        let mut objects = Vec::new();
        objects.extend(stack.networks.iter().map(|n| report.object("network", &n.name)));
        objects.extend(stack.sandboxes.iter().map(|s| report.object("sandbox", &s.name)));
        objects.extend(stack.services.iter().map(|v| report.object("service", &v.name)));
        Ok(StackPlan {
            next,
            objects,
            removed,
            networks: plan_networks,
            uplinks: plan_uplinks,
            sandboxes: plan_sandboxes,
            endpoints,
            ports,
            services,
            new_default_routes,
            touched_sandboxes: touched,
        })
    }

    /// Creates network `n` if it is missing (returning it); checks that it
    /// matches the file if it exists.
    fn plan_network(&mut self, n: &StackNetwork, defaults: &StackDefaults) -> Result<Option<Network>, StackRefusal> {
        let key = format!("networks.{}", n.name);
        // Docker's option names for the MTU and VNI, as `network create`
        // takes them (a file read by vswitchctl has them folded already).
        let mut folded = n.clone();
        super::super::networks::fold_options(folded.driver, &mut folded.mtu, &mut folded.vni, &mut folded.options)
            .map_err(|e| StackRefusal::model(network_error_key(&key, &e), e))?;
        let n = &folded;
        // A configuration network is no network to attach to, nor a name to take.
        if self.config_networks.values().any(|c| c.name == n.name) {
            let key = if n.external { format!("{key}.external") } else { key };
            return Err(StackRefusal::model(key, ModelError::ConfigOnly(n.name.clone())));
        }
        if n.external {
            return match self.network_named(&n.name) {
                Some(_) => Ok(None),
                None => Err(StackRefusal::model(format!("{key}.external"), ModelError::NoSuchNetwork(n.name.clone()))),
            };
        }
        if let Some(have) = self.network_named(&n.name) {
            return match network_differences(have, n).into_iter().next() {
                None => Ok(None),
                Some((field, have_value, want)) => Err(StackRefusal::conflict(
                    format!("{key}.{field}"),
                    format!(
                        "network {} exists with {field} {have_value}, the file says {want}: networks do not change \
                         in place (remove it first: vswitchctl network rm {})",
                        n.name, n.name
                    ),
                )),
            };
        }
        let encrypted = n.options.contains_key(ENCRYPTED_OPTION);
        if encrypted && n.driver == Driver::Overlay && !defaults.has_secret {
            return Err(StackRefusal::issues(vec![StackIssue::new(
                format!("{key}.options.{ENCRYPTED_OPTION}"),
                "an encrypted overlay needs a cluster secret: start vswitchd with --secret-file",
            )]));
        }
        let mtu = match (n.mtu, n.driver, encrypted) {
            (Some(mtu), ..) => Some(mtu),
            (None, Driver::Overlay, true) => Some(defaults.encrypted_overlay_mtu),
            (None, Driver::Overlay, false) => Some(defaults.overlay_mtu),
            (None, ..) => None,
        };
        let req = CreateNetwork {
            name: n.name.clone(),
            driver: n.driver,
            subnet: n.subnet,
            gateway: n.gateway,
            ip_range: n.ip_range,
            enable_ipv4: n.enable_ipv4,
            enable_ipv6: n.enable_ipv6,
            subnet6: n.subnet6,
            gateway6: n.gateway6,
            ip_range6: n.ip_range6,
            aux_addresses: n.aux_addresses.clone(),
            internal: n.internal,
            attachable: n.attachable,
            mtu,
            vni: n.vni,
            options: n.options.clone(),
            labels: n.labels.clone(),
            config_only: false,
            config_from: None,
        };
        self.create_network(req).map(Some).map_err(|e| StackRefusal::model(network_error_key(&key, &e), e))
    }

    /// The endpoint of `sandbox` on the network named `network`.
    fn endpoint_on(&self, sandbox: &str, network: &str) -> Option<&Endpoint> {
        let net = self.network_named(network)?;
        self.endpoints.values().find(|e| e.sandbox == sandbox && e.network_id == net.id)
    }

    /// Disconnects the endpoints of the file's sandboxes that the file does
    /// not list or that must be recreated, and changes aliases in place.
    /// Returns the endpoints removed, and the (sandbox, network) pairs to
    /// connect again.
    #[allow(clippy::type_complexity)]
    fn plan_removals(
        &mut self,
        stack: &Stack,
        report: &mut Report,
    ) -> Result<(Vec<Endpoint>, BTreeSet<(String, String)>), StackRefusal> {
        let mut removed = Vec::new();
        let mut recreated = BTreeSet::new();
        for s in &stack.sandboxes {
            let current: Vec<Endpoint> = self.endpoints_in_sandbox(&s.name).into_iter().cloned().collect();
            for ep in current {
                let network = self.networks.get(&ep.network_id).map(|n| n.name.clone()).unwrap_or_default();
                let want = s.networks.iter().find(|a| a.network == network);
                let why = match want {
                    None => Some(format!("disconnected from {network}")),
                    Some(a) => recreate_reason(&ep, a).map(|r| format!("reconnected to {network} ({r})")),
                };
                if let Some(why) = why {
                    let gone = self
                        .disconnect(&ep.network_id, &s.name)
                        .map_err(|e| StackRefusal::model(format!("sandboxes.{}.networks.{network}", s.name), e))?;
                    report.change("sandbox", &s.name, why);
                    if want.is_some() {
                        recreated.insert((s.name.clone(), network.clone()));
                    }
                    removed.push(gone.endpoint);
                    continue;
                }
                let Some(a) = want else { continue };
                let mut aliases = a.aliases.clone();
                let mut have = ep.aliases.clone();
                aliases.sort();
                have.sort();
                if aliases != have {
                    for alias in &a.aliases {
                        validate::dns_name("alias", alias).map_err(|e| {
                            StackRefusal::model(format!("sandboxes.{}.networks.{network}.aliases", s.name), e)
                        })?;
                    }
                    if let Some(e) = self.endpoints.get_mut(&ep.id) {
                        e.aliases.clone_from(&a.aliases);
                    }
                    report.change("sandbox", &s.name, format!("aliases on {network}"));
                }
            }
        }
        Ok((removed, recreated))
    }

    /// Makes every endpoint of the file's sandboxes publish exactly the
    /// file's ports: closes the extra ones everywhere first, then opens the
    /// missing ones (so a port may move between sandboxes in one apply).
    fn plan_ports(
        &mut self,
        stack: &Stack,
        created: &[String],
        report: &mut Report,
    ) -> Result<Vec<PortChange>, StackRefusal> {
        // (sandbox, endpoint id, network, ports key, wanted ports)
        let mut wanted: Vec<(&StackSandbox, String, String, String, BTreeSet<PortMapping>)> = Vec::new();
        for s in &stack.sandboxes {
            let target = if s.ports.is_empty() {
                None
            } else {
                let t = self
                    .publish_target(&s.name, None)
                    .map_err(|e| StackRefusal::model(format!("sandboxes.{}.ports", s.name), e))?;
                Some(t.id.clone())
            };
            for a in &s.networks {
                let Some(ep) = self.endpoint_on(&s.name, &a.network) else { continue };
                let mut ports = port_set(&a.ports);
                let mut key = format!("sandboxes.{}.networks.{}.ports", s.name, a.network);
                if target.as_deref() == Some(ep.id.as_str()) {
                    ports.extend(port_set(&s.ports));
                    if a.ports.is_empty() {
                        key = format!("sandboxes.{}.ports", s.name);
                    }
                }
                // As they are published: on the network's host binding
                // where they name no address (two that become one are the
                // same port given twice).
                if let Some(net) = self.networks.get(&ep.network_id) {
                    let mut bound = BTreeSet::new();
                    for m in ports {
                        let b = net.bind(m);
                        if !bound.insert(b) {
                            let e = ModelError::PortGivenTwice {
                                port: b.host_key_display(),
                                first: b.to_string(),
                                second: ctl::stack::port_spec(&m),
                            };
                            return Err(StackRefusal::model(key, e));
                        }
                    }
                    ports = bound;
                }
                wanted.push((s, ep.id.clone(), a.network.clone(), key, ports));
            }
        }
        let mut changes = Vec::new();
        for (s, id, network, key, ports) in &wanted {
            let have = port_set(&self.endpoints[id].publish);
            let extra: Vec<PortMapping> = have.difference(ports).copied().collect();
            if !extra.is_empty() {
                let net_id = id_network(self, id);
                let asked = self.requests_for(id, &extra);
                self.unpublish(&s.name, Some(&net_id), &asked).map_err(|e| StackRefusal::model(key.clone(), e))?;
                let shown: Vec<String> = asked.iter().map(ctl::stack::port_spec).collect();
                report.change("sandbox", &s.name, format!("unpublished {} on {network}", shown.join(", ")));
                changes.push(PortChange { endpoint_id: id.clone(), added: Vec::new(), removed: extra });
            }
        }
        for (s, id, network, key, ports) in &wanted {
            let have = port_set(&self.endpoints[id].publish);
            let missing: Vec<PortMapping> = ports.difference(&have).copied().collect();
            if missing.is_empty() {
                continue;
            }
            let net_id = id_network(self, id);
            let asked = self.requests_for(id, &missing);
            self.publish(&s.name, Some(&net_id), &asked).map_err(|e| StackRefusal::model(key.clone(), e))?;
            if created.contains(id) {
                continue;
            }
            let shown: Vec<String> = asked.iter().map(ctl::stack::port_spec).collect();
            report.change("sandbox", &s.name, format!("published {} on {network}", shown.join(", ")));
            match changes.iter_mut().find(|c| c.endpoint_id == *id) {
                Some(c) => c.added = missing,
                None => changes.push(PortChange { endpoint_id: id.clone(), added: missing, removed: Vec::new() }),
            }
        }
        Ok(changes)
    }

    /// The requests that name `mappings` (as published on endpoint `id`'s
    /// network) to [`Model::publish`] and [`Model::unpublish`], which bind
    /// what they are given (see [`Network::unbind`](crate::model::Network::unbind)).
    fn requests_for(&self, id: &str, mappings: &[PortMapping]) -> Vec<PortMapping> {
        let network = self.endpoints.get(id).and_then(|e| self.networks.get(&e.network_id));
        super::super::types::unbound(network, mappings)
    }

    /// Creates the file's services, and recreates those whose network or
    /// ports differ (all removals before all creations).
    fn plan_services(&mut self, stack: &Stack, report: &mut Report) -> Result<Vec<ServiceChange>, StackRefusal> {
        let mut todo = Vec::new();
        for v in &stack.services {
            let key = format!("services.{}", v.name);
            let net = self
                .network_named(&v.network)
                .ok_or_else(|| {
                    StackRefusal::model(format!("{key}.network"), ModelError::NoSuchNetwork(v.network.clone()))
                })?
                .id
                .clone();
            let before = self.services.get(&v.name).cloned();
            let bound = super::super::types::bound(self.networks.get(&net), &v.ports);
            if let Some(have) = &before {
                if have.network_id == net && port_set(&have.publish) == port_set(&bound) {
                    continue;
                }
                report.change("service", &v.name, "recreated with the file's network and ports".to_owned());
                self.remove_service(&v.name).map_err(|e| StackRefusal::model(key.clone(), e))?;
            } else {
                report.created.insert(("service", v.name.clone()));
            }
            todo.push((v, key, before));
        }
        let mut changes = Vec::new();
        for (v, key, before) in todo {
            let after = self.publish_service(&v.name, Some(&v.network), &v.ports).map_err(|e| {
                let field = if matches!(e, ModelError::PublishOnInternal(_)) { "network" } else { "ports" };
                StackRefusal::model(format!("{key}.{field}"), e)
            })?;
            changes.push(ServiceChange { before, after });
        }
        Ok(changes)
    }
}

/// The id of endpoint `id`'s network (which exists in a consistent model).
fn id_network(model: &Model, id: &str) -> String {
    model.endpoints.get(id).map_or_else(String::new, |e| e.network_id.clone())
}
