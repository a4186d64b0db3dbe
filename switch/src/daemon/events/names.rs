//! Names of datapath ports and networks as `show`, `fdb` and `stats` print
//! them, for events: the control plane keeps a [`Names`] map current from
//! its model; the hub learns tunnel ports from the datapath's own events.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::daemon::datapath::PortRole;
use crate::model::Model;
use crate::port::{NetworkId, PortId};

/// The name of a tunnel port toward `remote` (`vx:ADDR:PORT`).
pub fn tunnel_port_name(remote: SocketAddr) -> String {
    crate::model::tunnel_port_name(remote)
}

/// The name of network `network`'s gateway port (`gw:NAME`).
pub fn gateway_port_name(network: &str) -> String {
    format!("gw:{network}")
}

/// Network names by network index and endpoint port names by port index.
/// Entries of removed objects stay until their index is reused, so an
/// event that was on its way when they went is still named.
#[derive(Debug, Default, Clone)]
pub struct Names {
    networks: HashMap<u32, String>,
    /// Port name and sandbox.
    endpoints: HashMap<u32, (String, String)>,
}

impl Names {
    /// Adds (or renames) every network and endpoint of `model`.
    pub fn update(&mut self, model: &Model) {
        for network in model.networks() {
            if self.networks.get(&network.network_index) != Some(&network.name) {
                self.networks.insert(network.network_index, network.name.clone());
            }
        }
        for endpoint in model.endpoints() {
            let known = self.endpoints.get(&endpoint.port_index);
            if known.is_none_or(|(port, sandbox)| *port != endpoint.host_tap_name || *sandbox != endpoint.sandbox) {
                let names = (endpoint.host_tap_name.clone(), endpoint.sandbox.clone());
                self.endpoints.insert(endpoint.port_index, names);
            }
        }
    }

    /// Names network index `index`.
    pub fn set_network(&mut self, index: u32, name: &str) {
        self.networks.insert(index, name.to_owned());
    }

    /// Names endpoint port index `index`, the port of `sandbox`.
    pub fn set_endpoint(&mut self, index: u32, name: &str, sandbox: &str) {
        self.endpoints.insert(index, (name.to_owned(), sandbox.to_owned()));
    }

    /// The sandbox behind port `id`, if it is an endpoint's.
    pub fn sandbox(&self, id: PortId) -> Option<String> {
        let PortRole::Endpoint(i) = PortRole::of(id) else { return None };
        self.endpoints.get(&i).map(|(_, sandbox)| sandbox.clone())
    }

    /// The name of network `id` (`net7` if unknown).
    pub fn network(&self, id: NetworkId) -> String {
        self.networks.get(&id.0).cloned().unwrap_or_else(|| id.to_string())
    }

    /// The name of port `id`; tunnel ports are named from `tunnels`
    /// (`port7` if unknown).
    pub fn port(&self, id: PortId, tunnels: &HashMap<PortId, SocketAddr>) -> String {
        let name = match PortRole::of(id) {
            PortRole::Endpoint(i) => self.endpoints.get(&i).map(|(port, _)| port.clone()),
            PortRole::Gateway(i) => self.networks.get(&i).map(|n| gateway_port_name(n)),
            PortRole::Tunnel(_) => tunnels.get(&id).map(|r| tunnel_port_name(*r)),
        };
        name.unwrap_or_else(|| id.to_string())
    }
}
