//! Sandboxes whose container is gone. A container runtime that crashes
//! never calls `sandbox rm`: when an adopted namespace (`--netns
//! /proc/PID/ns/net`) ends with its last process, its TAP devices are
//! unregistered, the datapath notices (the TAP's reads fail with `EBADFD`)
//! and the control plane releases the endpoint and its address, and the
//! sandbox itself once its namespace cannot be opened any more. After a
//! restart, adopted sandboxes whose namespace is gone are released the same
//! way. Each release is an event: `endpoint_gone` (with the port's
//! `port_down`, reason `gone`) and `sandbox_gone`.

use ctl::proto::{EventKind, PortChange};

use super::Control;
use crate::daemon::datapath::PortRole;
use crate::port::PortId;
use crate::sys::netns::NetNs;

impl Control {
    /// TAP port `port` vanished: disconnects its endpoint as `network
    /// disconnect` would, then removes its sandbox if that was adopted and
    /// its namespace is gone. Returns the sandbox's name if it was removed.
    pub fn reap_port(&mut self, port: PortId) -> Option<String> {
        let PortRole::Endpoint(index) = PortRole::of(port) else { return None };
        // Read after the requests before it: the port it names may have been
        // removed meanwhile and its index given to another endpoint (or
        // uplink), whose device is fine.
        match self.datapath.port_reported_gone(port) {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(%port, "a gone port's report came after the port was removed: ignored");
                return None;
            }
            Err(e) => {
                tracing::error!(%port, error = %e, "cannot check a gone port's report");
                return None;
            }
        }
        if self.reap_uplink(index) {
            return None;
        }
        let endpoint = self.model.endpoint_by_port_index(index)?.clone();
        let network = self.model.network_by_id(&endpoint.network_id)?.name.clone();
        match self.disconnect_as(&network, &endpoint.sandbox, PortChange::Gone) {
            Ok(_) => {
                tracing::warn!(
                    sandbox = %endpoint.sandbox,
                    %network,
                    address = %endpoint.addresses(),
                    "endpoint's interface is gone: endpoint released"
                );
                self.events.emit(EventKind::EndpointGone {
                    network,
                    sandbox: endpoint.sandbox.clone(),
                    port: endpoint.host_tap_name.clone(),
                    address: endpoint.primary_address(),
                });
            }
            Err(e) => {
                tracing::error!(sandbox = %endpoint.sandbox, error = %e.message, "cannot release a gone endpoint")
            }
        }
        self.reap_sandbox_if_gone(&endpoint.sandbox).then_some(endpoint.sandbox)
    }

    /// Removes sandbox `name` if it was adopted and its namespace can no
    /// longer be opened (its last process exited). Returns whether it did.
    pub(super) fn reap_sandbox_if_gone(&mut self, name: &str) -> bool {
        let Ok(sandbox) = self.model.sandbox(name) else { return false };
        if sandbox.owns_netns || NetNs::open_path(&sandbox.netns_path).is_ok() {
            return false;
        }
        let path = sandbox.netns_path.clone();
        match self.sandbox_rm(name) {
            Ok(_) => {
                tracing::warn!(sandbox = name, netns = %path.display(), "sandbox's namespace is gone: sandbox removed");
                let netns = path.display().to_string();
                self.events.emit(EventKind::SandboxGone { sandbox: name.to_owned(), netns });
                true
            }
            Err(e) => {
                tracing::error!(sandbox = name, error = %e.message, "cannot remove a sandbox whose namespace is gone");
                false
            }
        }
    }
}
