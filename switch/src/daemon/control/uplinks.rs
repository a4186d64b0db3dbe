//! Uplinks: `port add` / `port rm`, a macvlan network's parent, their
//! restoration after a restart, and an uplink whose interface vanished
//! (the port goes down, with an event; the uplink stays recorded).

use ctl::proto::{Ack, CtlError, ErrorKind, PortChange};

use super::{Control, Reply, datapath_error, host_port_error, model_error, network_id, ok};
use crate::daemon::datapath::endpoint_port;
use crate::daemon::hostports;
use crate::model::{Model, Network, PARENT_OPTION, PORT_TYPE_OPTION, Uplink};
use crate::port::PortConfig;

impl Control {
    pub(super) fn port_add(
        &mut self,
        network: &str,
        interface: &str,
        port_type: ctl::proto::PortType,
        force: bool,
    ) -> Reply {
        let mut next = self.model.clone();
        let uplink = next.add_uplink(network, interface, port_type, force).map_err(model_error)?;
        self.check_uplink(&uplink)?;
        self.events.update_names(&next);
        let net = next
            .network_by_id(&uplink.network_id)
            .cloned()
            .ok_or_else(|| CtlError::internal("uplink without network"))?;
        self.attach_uplink(&uplink, &net)?;
        if let Err(e) = self.commit(next) {
            self.detach_uplink(&uplink);
            return Err(e);
        }
        let network = self.model.network_by_id(&uplink.network_id).map(|n| n.name.clone()).unwrap_or_default();
        self.events.port_up(&network, interface, None, PortChange::Connected);
        ok(Ack {})
    }

    pub(super) fn port_rm(&mut self, interface: &str) -> Reply {
        let mut next = self.model.clone();
        let uplink = next.remove_uplink(interface).map_err(model_error)?;
        self.commit(next)?;
        self.detach_uplink(&uplink);
        let network = self.model.network_by_id(&uplink.network_id).map(|n| n.name.clone()).unwrap_or_default();
        self.events.port_down(&network, interface, None, PortChange::Disconnected);
        ok(Ack {})
    }

    /// Refuses the VTEP's interface and the default route's, unless forced.
    fn check_uplink(&self, uplink: &Uplink) -> Result<(), CtlError> {
        if uplink.force {
            return Ok(());
        }
        match hostports::uplink_refusal(&uplink.interface, self.vtep.map(|v| v.local.ip())) {
            Some(why) => Err(CtlError::new(ErrorKind::Conflict, why)),
            None => Ok(()),
        }
    }

    /// For a macvlan network: records its parent as its uplink in `next`
    /// (checked like `port add`).
    pub(super) fn macvlan_uplink(&self, next: &mut Model, network: &Network) -> Result<Option<Uplink>, CtlError> {
        if network.driver != ctl::proto::Driver::Macvlan {
            return Ok(None);
        }
        let parent = network.options.get(PARENT_OPTION).cloned().unwrap_or_default();
        let port_type = crate::model::macvlan_port_type(network.options.get(PORT_TYPE_OPTION).map(String::as_str))
            .map_err(model_error)?;
        let force = network.options.get("force").is_some_and(|v| v != "false");
        let uplink = next.add_uplink(&network.id, &parent, port_type, force).map_err(model_error)?;
        self.check_uplink(&uplink)?;
        Ok(Some(uplink))
    }

    /// Opens the uplink's device and adds its port to the datapath.
    pub(super) fn attach_uplink(&mut self, uplink: &Uplink, network: &Network) -> Result<(), CtlError> {
        let port = hostports::open_uplink(uplink).map_err(|e| {
            let kind =
                if matches!(e, hostports::HostPortError::Netlink(crate::sys::netlink::NetlinkError::NoSuchLink(_))) {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Internal
                };
            CtlError::new(kind, host_port_error(e).message)
        })?;
        let config = PortConfig { mtu: network.mtu, ..PortConfig::access(network_id(network)) };
        if let Err(e) = self.datapath.add_device(endpoint_port(uplink.port_index), port.device, config) {
            hostports::release_uplink(uplink);
            return Err(datapath_error(e));
        }
        match port.mode {
            Some(mode) => self.xdp_modes.borrow_mut().insert(uplink.port_index, mode),
            None => self.xdp_modes.borrow_mut().remove(&uplink.port_index),
        };
        self.uplinks_down.remove(&uplink.interface);
        tracing::info!(interface = %uplink.interface, network = %network.name, port_type = %uplink.port_type, "uplink attached");
        Ok(())
    }

    /// Removes the uplink's port and gives its interface back to the host.
    pub(super) fn detach_uplink(&mut self, uplink: &Uplink) {
        if let Err(e) = self.datapath.remove_port(endpoint_port(uplink.port_index)) {
            tracing::error!(interface = %uplink.interface, error = %e, "cannot remove the uplink's port");
        }
        hostports::release_uplink(uplink);
        self.xdp_modes.borrow_mut().remove(&uplink.port_index);
        self.uplinks_down.remove(&uplink.interface);
    }

    /// Re-attaches every recorded uplink after a restart; one that cannot
    /// be attached is logged and shown down.
    pub(super) fn restore_uplinks(&mut self) {
        let uplinks: Vec<Uplink> = self.model.uplinks().cloned().collect();
        for uplink in uplinks {
            let Some(network) = self.model.network_by_id(&uplink.network_id).cloned() else { continue };
            match self.attach_uplink(&uplink, &network) {
                Ok(()) => self.events.port_up(&network.name, &uplink.interface, None, PortChange::Restored),
                Err(e) => {
                    tracing::error!(interface = %uplink.interface, error = %e.message, "cannot restore uplink");
                    self.uplinks_down.insert(uplink.interface.clone());
                }
            }
        }
    }

    /// Uplink port `index` lost its device (its interface went away): the
    /// port goes down (reported as a `port_down` event, reason `gone`) and
    /// the uplink stays recorded, to be attached again by `port rm` + `port
    /// add` or at the next restart.
    pub(super) fn reap_uplink(&mut self, index: u32) -> bool {
        let Some(uplink) = self.model.uplink_by_port_index(index).cloned() else { return false };
        let _ = self.datapath.remove_port(endpoint_port(index));
        self.xdp_modes.borrow_mut().remove(&index);
        self.uplinks_down.insert(uplink.interface.clone());
        let network = self.model.network_by_id(&uplink.network_id).map(|n| n.name.clone()).unwrap_or_default();
        tracing::warn!(interface = %uplink.interface, %network, "uplink's interface is gone: port down");
        self.events.port_down(&network, &uplink.interface, None, PortChange::Gone);
        true
    }
}
