//! Link impairment settings of endpoints (`port impair`): which endpoint a
//! PORT argument names, and the setting kept with it (persisted with the
//! endpoint, gone with it).

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
    /// impairable.
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
}
