//! Link impairment settings (`port impair`): which endpoint a PORT
//! argument names, and the setting kept with it (persisted with the
//! endpoint, gone with it); and those of the tunnels toward VTEPs
//! (`vx:ADDR:PORT`), kept until cleared.

use std::net::SocketAddr;

use ctl::Impairment;

use super::error::ModelError;
use super::state::Model;
use super::types::Endpoint;
use crate::impair::ImpairSettings;

impl Model {
    /// The endpoint `port` names, in the first form that matches:
    ///
    /// - its switch port name as `show` and `stats` list it (`vsw…`, the
    ///   host-side TAP name);
    /// - `NETWORK:SANDBOX` (network name or id prefix);
    /// - `SANDBOX`, when the sandbox has exactly one endpoint.
    ///
    /// Gateway (`gw:NET`) and tunnel (`vx:ADDR`) ports are refused as not
    /// endpoints (tunnels are impaired by VTEP, see
    /// [`Model::set_tunnel_impairment`]).
    pub fn endpoint_for_port(&self, port: &str) -> Result<&Endpoint, ModelError> {
        if let Some(e) = self.endpoint_by_tap(port) {
            return Ok(e);
        }
        if port.starts_with("gw:") || port.starts_with("vx:") {
            return Err(ModelError::NotImpairable(port.to_owned()));
        }
        if let Some((network, sandbox)) = port.split_once(':')
            && self.sandbox(sandbox).is_ok()
        {
            return self.endpoint_for(network, sandbox);
        }
        if self.sandbox(port).is_ok() {
            return match self.endpoints_in_sandbox(port).as_slice() {
                [one] => Ok(one),
                [] => Err(ModelError::NoSuchEndpointPort(port.to_owned())),
                many => {
                    let ports: Vec<String> = many
                        .iter()
                        .map(|e| {
                            let network = self.network_by_id(&e.network_id).map_or("?", |n| n.name.as_str());
                            format!("{network}:{}", e.host_tap_name)
                        })
                        .collect();
                    Err(ModelError::AmbiguousSandboxPort { sandbox: port.to_owned(), ports: ports.join(", ") })
                }
            };
        }
        Err(ModelError::NoSuchEndpointPort(port.to_owned()))
    }

    /// Sets (or with `None` clears) the impairment of the endpoint `port`
    /// names (see [`Model::endpoint_for_port`]) after checking its ranges;
    /// returns the endpoint as it is now and the checked settings.
    pub fn set_impairment(
        &mut self,
        port: &str,
        impair: Option<Impairment>,
    ) -> Result<(Endpoint, Option<ImpairSettings>), ModelError> {
        let settings = impair.as_ref().map(ImpairSettings::new).transpose()?;
        let id = self.endpoint_for_port(port)?.id.clone();
        let endpoint = self.endpoints.get_mut(&id).ok_or_else(|| ModelError::NoSuchEndpointPort(port.to_owned()))?;
        endpoint.impair = impair;
        Ok((endpoint.clone(), settings))
    }

    /// Sets (or with `None` clears) the impairment of every tunnel port
    /// toward VTEP `remote`, on every overlay network, present or future,
    /// after checking its ranges; returns the checked settings. The VTEP
    /// need not be a static peer (a cluster node's or a learned one's
    /// tunnels are impaired too) and keeps the setting until it is cleared.
    pub fn set_tunnel_impairment(
        &mut self,
        remote: SocketAddr,
        impair: Option<Impairment>,
    ) -> Result<Option<ImpairSettings>, ModelError> {
        let invalid = |reason| ModelError::InvalidPeer { addr: remote, reason };
        if remote.ip().is_unspecified() || remote.ip().is_multicast() {
            return Err(invalid("a VTEP has a unicast address"));
        }
        if remote.port() == 0 {
            return Err(invalid("UDP port 0 is not a valid destination"));
        }
        let settings = impair.as_ref().map(ImpairSettings::new).transpose()?;
        match impair {
            Some(impair) => self.tunnel_impairments.insert(remote, impair),
            None => self.tunnel_impairments.remove(&remote),
        };
        Ok(settings)
    }

    /// The impairment of the tunnels toward `remote`, if it has one.
    pub fn tunnel_impairment(&self, remote: SocketAddr) -> Option<&Impairment> {
        self.tunnel_impairments.get(&remote)
    }

    /// Every impaired VTEP with its setting, ordered by address.
    pub fn tunnel_impairments(&self) -> impl Iterator<Item = (SocketAddr, &Impairment)> {
        self.tunnel_impairments.iter().map(|(remote, impair)| (*remote, impair))
    }
}
