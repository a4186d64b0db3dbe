//! Sandboxes and endpoints: create/remove sandboxes, connect/disconnect
//! them to networks, with IPAM (lowest free host address), MAC choice,
//! interface-name slots and default-gateway selection.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ctl::Ipv4Net;
use ctl::proto::Driver;

use super::addr::{SubnetExt, mac_for_ipv4};
use super::error::ModelError;
use super::ids;
use super::state::{Model, ifname_index, lowest_free};
use super::types::{Connect, CreateSandbox, Disconnected, Endpoint, Network, RemovedSandbox, Sandbox};
use super::validate;

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
        let (subnet, gateway) = match (net.driver, net.subnet, net.gateway) {
            (Driver::Host, ..) => return Err(ModelError::HostNotConnectable),
            (Driver::None, ..) => return Err(ModelError::NoneNotConnectable),
            (_, Some(s), Some(g)) => (s, g),
            // Switched networks always have both (a model invariant).
            _ => return Err(ModelError::NoSuchNetwork(req.network)),
        };
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
        if let Some(service) = &req.service {
            validate::object_name("service", service)?;
        }
        match req.port_type {
            ctl::proto::PortType::Tap => {}
            ctl::proto::PortType::Afxdp if net.mtu > super::types::MAX_AFXDP_MTU => {
                return Err(ModelError::AfxdpMtu {
                    network: net.name.clone(),
                    mtu: net.mtu,
                    max: super::types::MAX_AFXDP_MTU,
                });
            }
            ctl::proto::PortType::Afxdp => {}
            other => return Err(ModelError::BadPortType(other)),
        }
        if net.internal && !req.publish.is_empty() {
            return Err(ModelError::PublishOnInternal(net.name.clone()));
        }
        self.check_new_host_ports(&req.publish)?;
        let ipv4 = match req.ipv4 {
            Some(ip) => {
                check_address(net, subnet, gateway, ip)?;
                if let Some(e) = on_net.iter().find(|e| e.ipv4 == ip) {
                    return Err(ModelError::AddressInUse {
                        ip,
                        network: net.name.clone(),
                        sandbox: e.sandbox.clone(),
                        endpoint: e.id.chars().take(12).collect(),
                    });
                }
                ip
            }
            None => {
                let used = on_net.iter().map(|e| e.ipv4);
                match net.ip_range {
                    None => lowest_free_host(subnet, gateway, used)
                        .ok_or_else(|| ModelError::AddressesExhausted { subnet, network: net.name.clone() })?,
                    Some(range) => lowest_free_host_in(range, subnet, gateway, used)
                        .ok_or_else(|| ModelError::IpRangeExhausted { range, network: net.name.clone() })?,
                }
            }
        };
        let mac = req.mac.unwrap_or_else(|| mac_for_ipv4(ipv4));
        if mac.is_zero() {
            return Err(ModelError::InvalidMac { mac, reason: "the all-zero address is not valid" });
        }
        if mac.is_multicast() {
            return Err(ModelError::InvalidMac {
                mac,
                reason: "it is a multicast address (low bit of the first octet set)",
            });
        }
        if let Some(e) = on_net.iter().find(|e| e.mac == mac) {
            return Err(ModelError::MacInUse { mac, network: net.name.clone(), sandbox: e.sandbox.clone() });
        }
        let in_sandbox = self.endpoints_in_sandbox(&req.sandbox);
        let slot = lowest_free(in_sandbox.iter().filter_map(|e| ifname_index(&e.ifname_in_sandbox)));
        let is_default_gateway_network = !net.internal && !in_sandbox.iter().any(|e| e.is_default_gateway_network);
        let (id, host_tap_name) = self.fresh_endpoint_id();
        let ep = Endpoint {
            id,
            network_id: net.id.clone(),
            sandbox: req.sandbox,
            ifname_in_sandbox: format!("eth{slot}"),
            host_tap_name,
            mac,
            ipv4,
            prefix_len: subnet.prefix_len(),
            aliases: req.aliases,
            is_default_gateway_network,
            port_index: self.free_port_index(),
            publish: req.publish,
            service: req.service,
            serial: self.next_endpoint_serial(),
            impair: None,
            port_type: req.port_type,
        };
        self.endpoints.insert(ep.id.clone(), ep.clone());
        Ok(ep)
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
            let next = self
                .endpoints_in_sandbox(sandbox)
                .into_iter()
                .find(|e| self.networks.get(&e.network_id).is_some_and(|n| !n.internal))
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

/// Refuses addresses outside the subnet and the reserved ones.
fn check_address(net: &Network, subnet: Ipv4Net, gateway: Ipv4Addr, ip: Ipv4Addr) -> Result<(), ModelError> {
    if !subnet.contains(&ip) {
        return Err(ModelError::AddressOutsideSubnet { ip, subnet, network: net.name.clone() });
    }
    let what = if ip == gateway {
        "gateway"
    } else if ip == subnet.network() {
        "network address"
    } else if ip == subnet.broadcast() {
        "broadcast address"
    } else {
        return Ok(());
    };
    Err(ModelError::AddressReserved { ip, what, network: net.name.clone() })
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
