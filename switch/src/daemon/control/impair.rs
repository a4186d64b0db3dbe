//! `port_impair`: link impairment of an endpoint's egress, or of the
//! tunnels toward a VTEP, recorded in the model (saved with the endpoint;
//! a VTEP's until cleared) and applied in the datapath.

use std::net::SocketAddr;

use ctl::Impairment;
use ctl::proto::PortImpairInfo;

use super::{Control, Reply, datapath_error, model_error, ok};
use crate::daemon::datapath::endpoint_port;
use crate::impair::ImpairSettings;
use crate::model::Endpoint;

impl Control {
    /// Impairs (or with `None` clears) the egress of the endpoint `port`
    /// names. Refused requests (unknown port, values out of range) change
    /// nothing; a failed save puts the datapath back as it was.
    pub(super) fn port_impair(&mut self, port: &str, impair: Option<Impairment>) -> Reply {
        if let Some(remote) = crate::model::tunnel_port_peer(port) {
            return self.tunnel_impair(remote, impair);
        }
        let mut next = self.model.clone();
        let (endpoint, settings) = next.set_impairment(port, impair).map_err(model_error)?;
        let previous = self.model.endpoint(&endpoint.id).and_then(|e| e.impair);
        let id = endpoint_port(endpoint.port_index);
        self.datapath.set_impairment(id, settings).map_err(datapath_error)?;
        if let Err(e) = self.commit(next) {
            let undo = previous.as_ref().and_then(|p| ImpairSettings::new(p).ok());
            if let Err(undo_error) = self.datapath.set_impairment(id, undo) {
                tracing::error!(port = %endpoint.host_tap_name, error = %undo_error, "cannot restore the impairment");
            }
            return Err(e);
        }
        ok(PortImpairInfo {
            port: endpoint.host_tap_name.clone(),
            network: self.model.network_by_id(&endpoint.network_id).map(|n| n.name.clone()).unwrap_or_default(),
            sandbox: endpoint.sandbox.clone(),
            impair: endpoint.impair,
        })
    }

    /// Impairs (or with `None` clears) the egress of every tunnel port
    /// toward VTEP `remote`, on every worker and overlay, those made later
    /// too. Refused requests change nothing; a failed save puts the
    /// datapath back as it was.
    fn tunnel_impair(&mut self, remote: SocketAddr, impair: Option<Impairment>) -> Reply {
        let mut next = self.model.clone();
        let settings = next.set_tunnel_impairment(remote, impair).map_err(model_error)?;
        let previous = self.model.tunnel_impairment(remote).and_then(|p| ImpairSettings::new(p).ok());
        let ports = self.datapath.set_tunnel_impairment(remote, settings).map_err(datapath_error)?;
        if let Err(e) = self.commit(next) {
            if let Err(undo_error) = self.datapath.set_tunnel_impairment(remote, previous) {
                tracing::error!(%remote, error = %undo_error, "cannot restore the tunnel's impairment");
            }
            return Err(e);
        }
        tracing::info!(%remote, ports, impaired = impair.is_some(), "tunnel impairment set");
        ok(PortImpairInfo {
            port: crate::model::tunnel_port_name(remote),
            network: String::new(),
            sandbox: String::new(),
            impair,
        })
    }

    /// Applies the saved impairments of the tunnels toward VTEPs (after a
    /// restart, before any tunnel port is made).
    pub(super) fn restore_tunnel_impairments(&self) {
        for (remote, impair) in self.model.tunnel_impairments() {
            let applied = ImpairSettings::new(impair)
                .map_err(|e| e.to_string())
                .and_then(|s| self.datapath.set_tunnel_impairment(remote, Some(s)).map_err(|e| e.to_string()));
            if let Err(error) = applied {
                tracing::error!(%remote, %error, "cannot restore the tunnel's impairment");
            }
        }
    }

    /// Applies a restored endpoint's saved impairment (after a restart).
    pub(super) fn restore_impairment(&self, endpoint: &Endpoint) {
        let Some(impair) = &endpoint.impair else { return };
        let applied = ImpairSettings::new(impair).map_err(|e| e.to_string()).and_then(|s| {
            self.datapath.set_impairment(endpoint_port(endpoint.port_index), Some(s)).map_err(|e| e.to_string())
        });
        if let Err(error) = applied {
            tracing::error!(port = %endpoint.host_tap_name, %error, "cannot restore the port's impairment");
        }
    }
}
