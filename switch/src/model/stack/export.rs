//! [`Model::export_stack`]: the model as a stack that reproduces it.

use ctl::stack::{Stack, StackAttachment, StackNetwork, StackSandbox, StackService};

use crate::model::addr::{Subnet6Ext, SubnetExt, mac_for_ipv4, mac_for_ipv6};
use crate::model::networks::DEFAULT_MTU;
use crate::model::state::Model;
use crate::model::types::{Endpoint, Network, unbound};

fn network(n: &Network) -> StackNetwork {
    let first_host = n.subnet.and_then(|s| s.first_host());
    let first_host6 = n.subnet6.and_then(|s| s.first_host());
    StackNetwork {
        name: n.name.clone(),
        external: false,
        driver: n.driver,
        enable_ipv4: n.enable_ipv4,
        enable_ipv6: n.enable_ipv6,
        subnet: n.subnet,
        // Defaults are left out: they come back the same from the subnet.
        gateway: n.gateway.filter(|g| Some(*g) != first_host),
        ip_range: n.ip_range,
        // The IPv6 subnet is always written: a default one is random.
        subnet6: n.subnet6,
        gateway6: n.gateway6.filter(|g| Some(*g) != first_host6),
        ip_range6: n.ip_range6,
        aux_addresses: n.aux_addresses.clone(),
        internal: n.internal,
        attachable: n.attachable,
        // An overlay's default depends on the underlay: always written.
        mtu: (n.driver == ctl::proto::Driver::Overlay || n.mtu != DEFAULT_MTU).then_some(n.mtu),
        vni: n.vni,
        options: n.options.clone(),
        labels: n.labels.clone(),
    }
}

/// Whether `e`'s MAC is the one `connect` derives from its addresses
/// (`02:42:` + the IPv4 address, or on an IPv6-only network the IPv6
/// address's last four bytes), so an export may leave it out.
fn has_derived_mac(e: &Endpoint) -> bool {
    let derived = match (e.ipv4, e.ipv6) {
        (Some(ip), _) => Some(mac_for_ipv4(ip)),
        (None, Some(ip)) => Some(mac_for_ipv6(ip)),
        (None, None) => None,
    };
    derived == Some(e.mac)
}

impl Model {
    /// The networks (except the predefined ones), sandboxes with their
    /// connections, and services, sorted by name: a stack that, applied to
    /// a daemon without them, recreates them with the same addresses (IPv4
    /// and IPv6), MACs, aliases and published ports. Peers, static FDB entries,
    /// impairments and the aging time are host settings, not part of it.
    pub fn export_stack(&self) -> Stack {
        let networks = self.networks().into_iter().filter(|n| !n.is_predefined()).map(network).collect();
        let mut sandboxes = Vec::new();
        for s in self.sandboxes.values() {
            let endpoints = self.endpoints_in_sandbox(&s.name);
            let single = endpoints.len() == 1;
            let mut out = StackSandbox {
                name: s.name.clone(),
                netns: (!s.owns_netns).then(|| s.netns_path.clone()),
                dns: s.dns.clone(),
                dns_search: s.dns_search.clone(),
                dns_options: s.dns_options.clone(),
                extra_hosts: s.extra_hosts.clone(),
                networks: Vec::new(),
                ports: Vec::new(),
            };
            for e in endpoints {
                let net = self.networks.get(&e.network_id);
                let network = net.map(|n| n.name.clone()).unwrap_or_default();
                let publish = unbound(net, &e.publish);
                // With one endpoint its ports are the sandbox's (compose's
                // place for them); with several they stay with their
                // endpoint, whichever carries the default route.
                let ports = if single {
                    out.ports = publish;
                    Vec::new()
                } else {
                    publish
                };
                out.networks.push(StackAttachment {
                    network,
                    ipv4_address: e.ipv4,
                    ipv6_address: e.ipv6,
                    mac_address: (!has_derived_mac(e)).then_some(e.mac),
                    aliases: e.aliases.clone(),
                    ports,
                    service: e.service.clone(),
                    gw_priority: e.gw_priority,
                    // A name of the network's own form (`eth3`) is any name:
                    // only one asked for is kept.
                    interface_name: net
                        .filter(|n| super::super::state::ifname_index(&e.ifname_in_sandbox, n.iface_prefix()).is_none())
                        .map(|_| e.ifname_in_sandbox.clone()),
                });
            }
            sandboxes.push(out);
        }
        let services = self
            .services
            .values()
            .map(|v| StackService {
                name: v.name.clone(),
                network: self.networks.get(&v.network_id).map(|n| n.name.clone()).unwrap_or_default(),
                ports: unbound(self.networks.get(&v.network_id), &v.publish),
            })
            .collect();
        Stack { networks, sandboxes, services }
    }
}
