//! Sandboxes and endpoints: create/remove sandboxes, connect/disconnect
//! them to networks, with IPAM (lowest free host address), MAC choice,
//! interface-name slots and default-gateway selection.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ctl::proto::Driver;
use ctl::{IpNet, Ipv4Net, Ipv6Net, MacAddr};

use super::addr::{Subnet6Ext, SubnetExt, mac_for_ipv4, mac_for_ipv6};
use super::error::ModelError;
use super::ids;
use super::state::Model;
use super::types::{Connect, CreateSandbox, Disconnected, Endpoint, Network, RemovedSandbox, Sandbox};
use super::validate;

/// Linux's longest interface name (`IFNAMSIZ` less the NUL).
const MAX_IFNAME_LEN: usize = 15;

/// Where vswitch creates the namespaces it owns.
pub const NETNS_DIR: &str = "/run/netns";

impl Model {
    /// Records a sandbox. With `netns_path` the sandbox is attached to that
    /// existing namespace (vswitch does not own it); otherwise vswitch owns
    /// `/run/netns/<name>`, which the daemon then creates.
    pub fn create_sandbox(&mut self, req: CreateSandbox) -> Result<Sandbox, ModelError> {
        validate::object_name("sandbox", &req.name)?;
        if self.sandboxes.contains_key(&req.name) {
            return Err(ModelError::SandboxExists(req.name));
        }
        for d in &req.dns_search {
            validate::dns_name("dns search domain", d)?;
        }
        validate::dns_options(&req.dns_options)?;
        let extra_hosts = validate::extra_hosts(&req.extra_hosts)?;
        let owns_netns = req.netns_path.is_none();
        let netns_path = req.netns_path.unwrap_or_else(|| PathBuf::from(NETNS_DIR).join(&req.name));
        if !netns_path.is_absolute() {
            return Err(ModelError::NetnsPathNotAbsolute(netns_path));
        }
        if let Some(s) = self.sandboxes.values().find(|s| s.netns_path == netns_path) {
            return Err(ModelError::NetnsPathInUse { path: netns_path, sandbox: s.name.clone() });
        }
        let sb = Sandbox {
            name: req.name,
            netns_path,
            owns_netns,
            dns: req.dns,
            dns_search: req.dns_search,
            dns_options: req.dns_options,
            extra_hosts,
            created: ids::now_rfc3339(),
        };
        self.sandboxes.insert(sb.name.clone(), sb.clone());
        Ok(sb)
    }

    /// Removes a sandbox together with its endpoints (as Docker removes a
    /// container's endpoints with it). The daemon tears down the returned
    /// endpoints' TAPs and, if `owns_netns`, deletes the namespace.
    pub fn remove_sandbox(&mut self, name: &str) -> Result<RemovedSandbox, ModelError> {
        self.sandbox(name)?;
        let ids: Vec<String> = self.endpoints_in_sandbox(name).iter().map(|e| e.id.clone()).collect();
        let mut endpoints = Vec::with_capacity(ids.len());
        let mut removed_fdb = Vec::new();
        for id in ids {
            if let Some(e) = self.endpoints.remove(&id) {
                removed_fdb.extend(self.drop_fdb_for(&e));
                endpoints.push(e);
            }
        }
        let sandbox = self.sandboxes.remove(name).ok_or_else(|| ModelError::NoSuchSandbox(name.to_owned()))?;
        Ok(RemovedSandbox { sandbox, endpoints, removed_fdb })
    }

    /// Connects a sandbox to a network (`docker network connect`) and returns
    /// the new endpoint for the daemon to plumb.
    ///
    /// `host` is refused (it is the host's stack, not a switched network) and
    /// so is `none` (a sandbox with no endpoints already has only loopback,
    /// which is all `none` means). The endpoint carries the sandbox's default
    /// route when the network is not internal and no other endpoint of the
    /// sandbox carries it.
    pub fn connect(&mut self, req: Connect) -> Result<Endpoint, ModelError> {
        let net = self.network(&req.network)?;
        match net.driver {
            Driver::Host => return Err(ModelError::HostNotConnectable),
            Driver::None => return Err(ModelError::NoneNotConnectable),
            _ => {}
        }
        // Switched networks have the subnet and gateway of each family they
        // enable (a model invariant).
        let v4 = net.subnet.zip(net.gateway).filter(|_| net.enable_ipv4);
        let v6 = net.subnet6.zip(net.gateway6).filter(|_| net.enable_ipv6);
        if v4.is_none() && v6.is_none() {
            return Err(ModelError::NoSuchNetwork(req.network));
        }
        self.sandbox(&req.sandbox)?;
        if net.driver == Driver::Overlay && !net.attachable && !req.exempt_from_attachable {
            return Err(ModelError::NotAttachable(net.name.clone()));
        }
        let on_net = self.endpoints_on_network(&net.id);
        if on_net.iter().any(|e| e.sandbox == req.sandbox) {
            return Err(ModelError::AlreadyConnected { sandbox: req.sandbox, network: net.name.clone() });
        }
        for a in &req.aliases {
            validate::dns_name("alias", a)?;
        }
        if let Some(name) = &req.ifname {
            validate::interface_name(name)?;
        }
        if let Some(service) = &req.service {
            validate::object_name("service", service)?;
        }
        match req.port_type {
            ctl::proto::PortType::Tap => {}
            ctl::proto::PortType::Afxdp => {}
            other => return Err(ModelError::BadPortType(other)),
        }
        if net.internal && !req.publish.is_empty() {
            return Err(ModelError::PublishOnInternal(net.name.clone()));
        }
        // On the network's host binding where a mapping names no address.
        let publish = super::types::bound(Some(net), &req.publish);
        self.check_new_host_ports(&publish)?;
        let in_use = |ip: IpAddr, holder: Option<&&Endpoint>| match holder {
            Some(e) => Err(ModelError::AddressInUse {
                ip,
                network: net.name.clone(),
                sandbox: e.sandbox.clone(),
                endpoint: e.id.chars().take(12).collect(),
            }),
            None => Ok(()),
        };
        let ipv4 = match (v4, req.ipv4) {
            (None, Some(_)) => return Err(ModelError::NoIpv4OnNetwork(net.name.clone())),
            (None, None) => None,
            (Some((subnet, gateway)), Some(ip)) => {
                check_address(net, subnet.into(), gateway.into(), ip.into())?;
                in_use(ip.into(), on_net.iter().find(|e| e.ipv4 == Some(ip)))?;
                Some(ip)
            }
            (Some((subnet, gateway)), None) => {
                let excluded = req.exclude.iter().filter_map(|ip| match ip {
                    IpAddr::V4(ip) => Some(*ip),
                    IpAddr::V6(_) => None,
                });
                let used = on_net.iter().filter_map(|e| e.ipv4).chain(excluded).chain(net.aux_addresses4());
                Some(match net.ip_range {
                    None => lowest_free_host(subnet, gateway, used).ok_or_else(|| ModelError::AddressesExhausted {
                        subnet: subnet.into(),
                        network: net.name.clone(),
                    })?,
                    Some(range) => lowest_free_host_in(range, subnet, gateway, used).ok_or_else(|| {
                        ModelError::IpRangeExhausted { range: range.into(), network: net.name.clone() }
                    })?,
                })
            }
        };
        let ipv6 = match (v6, req.ipv6) {
            (None, Some(_)) => return Err(ModelError::NoIpv6OnNetwork(net.name.clone())),
            (None, None) => None,
            (Some((subnet, gateway)), Some(ip)) => {
                check_address(net, subnet.into(), gateway.into(), ip.into())?;
                in_use(ip.into(), on_net.iter().find(|e| e.ipv6 == Some(ip)))?;
                Some(ip)
            }
            (Some((subnet, gateway)), None) => {
                let excluded = req.exclude.iter().filter_map(|ip| match ip {
                    IpAddr::V6(ip) => Some(*ip),
                    IpAddr::V4(_) => None,
                });
                let used = on_net.iter().filter_map(|e| e.ipv6).chain(excluded).chain(net.aux_addresses6());
                let range = net.ip_range6.unwrap_or(subnet);
                Some(lowest_free_host6_in(range, subnet, gateway, used).ok_or_else(|| match net.ip_range6 {
                    None => ModelError::AddressesExhausted { subnet: subnet.into(), network: net.name.clone() },
                    Some(range) => ModelError::IpRangeExhausted { range: range.into(), network: net.name.clone() },
                })?)
            }
        };
        let mac = match (req.mac, ipv4, ipv6) {
            (Some(mac), ..) => mac,
            (None, Some(ip), _) => mac_for_ipv4(ip),
            (None, None, Some(ip)) => {
                let derived = mac_for_ipv6(ip);
                // Static addresses may share their last four bytes: such an
                // endpoint gets a random MAC rather than a refusal.
                if on_net.iter().any(|e| e.mac == derived) { random_mac() } else { derived }
            }
            // A network enables at least one family (checked above).
            (None, None, None) => return Err(ModelError::NoSuchNetwork(req.network)),
        };
        if mac.is_zero() {
            return Err(ModelError::InvalidMac { mac, reason: "the all-zero address is not valid" });
        }
        if mac.is_group() {
            return Err(ModelError::InvalidMac {
                mac,
                reason: "it is a multicast address (low bit of the first octet set)",
            });
        }
        if let Some(e) = on_net.iter().find(|e| e.mac == mac) {
            return Err(ModelError::MacInUse { mac, network: net.name.clone(), sandbox: e.sandbox.clone() });
        }
        let in_sandbox = self.endpoints_in_sandbox(&req.sandbox);
        let taken: Vec<&str> = in_sandbox.iter().map(|e| e.ifname_in_sandbox.as_str()).collect();
        let ifname_in_sandbox = interface_name_for(net, &req, &taken)?;
        // The sandbox's default route moves to a network of higher gateway
        // priority (Docker's `--gw-priority`); ties stay with the earlier.
        let current_default =
            in_sandbox.iter().find(|e| e.is_default_gateway_network).map(|e| (e.id.clone(), e.gw_priority));
        let is_default_gateway_network =
            !net.internal && current_default.as_ref().is_none_or(|(_, priority)| req.gw_priority > *priority);
        let unflag = current_default.filter(|_| is_default_gateway_network).map(|(old, _)| old);
        let (id, host_tap_name) = self.fresh_endpoint_id();
        let ep = Endpoint {
            id,
            network_id: net.id.clone(),
            sandbox: req.sandbox,
            ifname_in_sandbox,
            host_tap_name,
            mac,
            ipv4,
            prefix_len: v4.map_or(0, |(subnet, _)| subnet.prefix_len()),
            ipv6,
            prefix_len6: v6.map_or(64, |(subnet, _)| subnet.prefix_len()),
            aliases: req.aliases,
            is_default_gateway_network,
            gw_priority: req.gw_priority,
            port_index: self.free_port_index(),
            publish,
            service: req.service,
            serial: self.next_endpoint_serial(),
            impair: None,
            port_type: req.port_type,
        };
        if let Some(e) = unflag.and_then(|old| self.endpoints.get_mut(&old)) {
            e.is_default_gateway_network = false;
        }
        self.endpoints.insert(ep.id.clone(), ep.clone());
        Ok(ep)
    }

    /// The endpoint of `sandbox` that carries its default route of one
    /// family (IPv6 when `ipv6`), with its network: of the endpoints on
    /// non-internal networks that have an address and a gateway of that
    /// family, the one of the highest gateway priority; among equals the
    /// endpoint flagged as the default gateway's, else the earliest by
    /// interface; none if no endpoint has. So a sandbox whose default network is IPv4-only still
    /// routes IPv6 through another of its networks, as Docker chooses a
    /// gateway per family.
    pub fn default_route_endpoint(&self, sandbox: &str, ipv6: bool) -> Option<(&Endpoint, &Network)> {
        let routes = |(e, n): &(&Endpoint, &Network)| {
            !n.internal
                && if ipv6 { e.ipv6.is_some() && n.gateway6.is_some() } else { e.ipv4.is_some() && n.gateway.is_some() }
        };
        let candidates: Vec<(&Endpoint, &Network)> = self
            .endpoints_in_sandbox(sandbox)
            .into_iter()
            .filter_map(|e| Some((e, self.networks.get(&e.network_id)?)))
            .filter(routes)
            .collect();
        // The highest priority; ties: the flagged endpoint, then the
        // earlier interface (`max_by_key` keeps the last maximum).
        candidates.iter().rev().max_by_key(|(e, _)| (e.gw_priority, e.is_default_gateway_network)).copied()
    }

    /// The sandbox's addresses its hosts file names it by (Docker's
    /// container lines, one per network and family): first, per family, the
    /// address of the endpoint that carries the default route, else of its
    /// first endpoint that has one (the line `getent hosts` finds); then
    /// every other endpoint's, in interface order.
    pub fn own_addresses(&self, sandbox: &str) -> Vec<IpAddr> {
        let mut addresses = self.first_addresses(sandbox);
        for e in self.endpoints_in_sandbox(sandbox) {
            for ip in e.ipv4.map(IpAddr::V4).into_iter().chain(e.ipv6.map(IpAddr::V6)) {
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
        addresses
    }

    /// Per family, the address of the sandbox's endpoint that carries the
    /// default route, else of its first endpoint that has one.
    fn first_addresses(&self, sandbox: &str) -> Vec<IpAddr> {
        let endpoints = self.endpoints_in_sandbox(sandbox);
        let v4 = self
            .default_route_endpoint(sandbox, false)
            .and_then(|(e, _)| e.ipv4)
            .or_else(|| endpoints.iter().find_map(|e| e.ipv4));
        let v6 = self
            .default_route_endpoint(sandbox, true)
            .and_then(|(e, _)| e.ipv6)
            .or_else(|| endpoints.iter().find_map(|e| e.ipv6));
        v4.map(IpAddr::V4).into_iter().chain(v6.map(IpAddr::V6)).collect()
    }

    /// Disconnects a sandbox from a network, releasing the endpoint's
    /// address, interface slot, port index and static FDB entries. When the
    /// endpoint carried the default route, the sandbox's lowest-numbered
    /// remaining non-internal endpoint takes it over (reported in the outcome).
    pub fn disconnect(&mut self, network: &str, sandbox: &str) -> Result<Disconnected, ModelError> {
        let id = self.endpoint_for(network, sandbox)?.id.clone();
        let endpoint = self
            .endpoints
            .remove(&id)
            .ok_or_else(|| ModelError::NotConnected { sandbox: sandbox.to_owned(), network: network.to_owned() })?;
        let removed_fdb = self.drop_fdb_for(&endpoint);
        let mut new_default_gateway = None;
        if endpoint.is_default_gateway_network {
            // The highest gateway priority left; ties: the earlier interface.
            let next = self
                .endpoints_in_sandbox(sandbox)
                .into_iter()
                .filter(|e| self.networks.get(&e.network_id).is_some_and(|n| !n.internal))
                .rev()
                .max_by_key(|e| e.gw_priority)
                .map(|e| e.id.clone());
            if let Some(e) = next.and_then(|id| self.endpoints.get_mut(&id)) {
                e.is_default_gateway_network = true;
                new_default_gateway = Some(e.clone());
            }
        }
        Ok(Disconnected { endpoint, removed_fdb, new_default_gateway })
    }

    /// A random endpoint id whose TAP name (`vsw` + 8 hex digits) is unused.
    fn fresh_endpoint_id(&self) -> (String, String) {
        loop {
            let id = ids::random_id();
            let tap = format!("vsw{}", &id[..8]);
            if !self.endpoints.contains_key(&id) && self.endpoint_by_tap(&tap).is_none() {
                return (id, tap);
            }
        }
    }
}

/// A random locally administered unicast MAC address.
fn random_mac() -> MacAddr {
    let id = ids::random_id();
    let byte = |i: usize| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap_or(0);
    MacAddr([0x02, byte(1), byte(2), byte(3), byte(4), byte(5)])
}

/// Refuses addresses outside the subnet and the reserved ones: the
/// gateway, the subnet's first address (IPv4's network address, IPv6's
/// subnet-router anycast address) and IPv4's broadcast address.
fn check_address(net: &Network, subnet: IpNet, gateway: IpAddr, ip: IpAddr) -> Result<(), ModelError> {
    if !subnet.contains(&ip) {
        return Err(ModelError::AddressOutsideSubnet { ip, subnet, network: net.name.clone() });
    }
    if let Some(what) = reserved_role(subnet, gateway, ip) {
        return Err(ModelError::AddressReserved { ip, what, network: net.name.clone() });
    }
    match net.aux_addresses.iter().find(|(_, aux)| **aux == ip) {
        Some((name, _)) => Err(ModelError::AuxAddressTaken { ip, name: name.clone(), network: net.name.clone() }),
        None => Ok(()),
    }
}

/// What `ip` (inside `subnet`) is when no endpoint may have it: the
/// gateway, the subnet's first address (IPv4's network address, IPv6's
/// subnet-router anycast address) or IPv4's broadcast address.
pub(super) fn reserved_role(subnet: IpNet, gateway: IpAddr, ip: IpAddr) -> Option<&'static str> {
    if ip == gateway {
        Some("gateway")
    } else if ip == subnet.network() {
        Some(if ip.is_ipv6() { "subnet-router anycast address" } else { "network address" })
    } else if ip.is_ipv4() && ip == subnet.broadcast() {
        Some("broadcast address")
    } else {
        None
    }
}

/// The interface name of a new endpoint of `net` in a sandbox whose
/// endpoints have the names `taken`: the one `req` asks for, refused when
/// taken; else the network's prefix and the lowest number that names no
/// interface of the sandbox, whatever its prefix (`eth1` + `0` is `eth` +
/// `10`), nor one the request reserves for a later attachment, within
/// Linux's 15 characters.
fn interface_name_for(net: &Network, req: &Connect, taken: &[&str]) -> Result<String, ModelError> {
    if let Some(name) = &req.ifname {
        if taken.contains(&name.as_str()) {
            return Err(ModelError::InterfaceNameInUse { name: name.clone(), sandbox: req.sandbox.clone() });
        }
        return Ok(name.clone());
    }
    (0..)
        .map(|n| format!("{}{n}", net.iface_prefix()))
        .take_while(|name| name.len() <= MAX_IFNAME_LEN)
        .find(|name| !taken.contains(&name.as_str()) && !req.reserved_ifnames.contains(name))
        .ok_or_else(|| ModelError::InterfaceNamesExhausted {
            sandbox: req.sandbox.clone(),
            prefix: net.iface_prefix().to_owned(),
        })
}

/// The lowest host address of `subnet` that is neither the gateway nor in `used`.
pub(crate) fn lowest_free_host(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    used: impl Iterator<Item = Ipv4Addr>,
) -> Option<Ipv4Addr> {
    lowest_free_host_in(subnet, subnet, gateway, used)
}

/// The lowest address of `range` (a prefix inside `subnet`) that is a host
/// address of `subnet` (not its network or broadcast address), not the
/// gateway and not in `used`.
pub(crate) fn lowest_free_host_in(
    range: Ipv4Net,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    used: impl Iterator<Item = Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let used: BTreeSet<u32> = used.map(u32::from).chain([u32::from(gateway)]).collect();
    let first = u32::from(range.network()).max(u32::from(subnet.first_host()?));
    let last = u32::from(range.broadcast()).min(u32::from(subnet.broadcast()).checked_sub(1)?);
    (first..=last).find(|a| !used.contains(a)).map(Ipv4Addr::from)
}

/// The lowest address of `range` (a prefix inside `subnet`) that is neither
/// the subnet's network (subnet-router anycast) address, nor the gateway,
/// nor in `used`: `::2` first in a subnet whose gateway is `::1`. Looks at
/// no more than `used.len() + 2` candidates, however large the subnet.
pub(crate) fn lowest_free_host6_in(
    range: Ipv6Net,
    subnet: Ipv6Net,
    gateway: Ipv6Addr,
    used: impl Iterator<Item = Ipv6Addr>,
) -> Option<Ipv6Addr> {
    let used: BTreeSet<u128> = used.map(u128::from).chain([u128::from(gateway)]).collect();
    let first = u128::from(range.network()).max(u128::from(subnet.first_host()?));
    let last = u128::from(range.broadcast()).min(u128::from(subnet.broadcast()));
    (first..=last).find(|a| !used.contains(a)).map(Ipv6Addr::from)
}
