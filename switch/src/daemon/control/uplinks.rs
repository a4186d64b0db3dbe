//! Uplinks: `port add` / `port rm`, a macvlan network's parent, their
//! restoration after a restart, and an uplink whose interface vanished:
//! the port goes down, with an event, the uplink stays recorded, and it is
//! attached again, with a `port_up` event (reason `returned`), as soon as
//! an interface of its name is there (the server's link watcher calls
//! [`Control::uplink_returned`] on every link notification), as Open
//! vSwitch does for a port whose interface returns.
//!
//! Which interfaces come back on their own: a new one (an index the
//! uplink was not attached to: deleted and created again, or moved back
//! from another namespace), which is brought up as `port add` brings it
//! up; the same one only once it is up again (an operator's `ip link set
//! down` makes a raw socket fail as if the interface had gone, and the
//! switch does not undo it).

use ctl::proto::{Ack, CtlError, ErrorKind, PortChange};

use crate::sys::netlink::{LinkState, Netlink};

use super::{Control, Reply, access_port_config, datapath_error, host_port_error, model_error, network_id, ok};
use crate::daemon::datapath::endpoint_port;
use crate::daemon::hostports;
use crate::model::{Model, Network, Uplink};

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
        let brought_up = self.attach_uplink(&uplink, &net)?;
        if let Err(e) = self.commit(next) {
            self.detach_uplink(&uplink);
            if brought_up {
                hostports::set_uplink_down(&uplink);
            }
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
    pub(super) fn check_uplink(&self, uplink: &Uplink) -> Result<(), CtlError> {
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
        let uplink = next.add_macvlan_uplink(network).map_err(model_error)?;
        if let Some(uplink) = &uplink {
            self.check_uplink(uplink)?;
        }
        Ok(uplink)
    }

    /// Opens the uplink's device and adds its port to the datapath; whether
    /// that set its interface up ([`hostports::HostPort::brought_up`]). On
    /// failure the interface is as it was.
    pub(super) fn attach_uplink(&mut self, uplink: &Uplink, network: &Network) -> Result<bool, CtlError> {
        let workers = self.datapath.workers_serving(network_id(network));
        let port = hostports::open_uplink(uplink, workers).map_err(|e| {
            let kind =
                if matches!(e, hostports::HostPortError::Netlink(crate::sys::netlink::NetlinkError::NoSuchLink(_))) {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Internal
                };
            CtlError::new(kind, host_port_error(e).message)
        })?;
        let config = access_port_config(network);
        let brought_up = port.brought_up;
        if let Err(e) =
            self.datapath.add_device_queues(endpoint_port(uplink.port_index), port.device, port.extra, config)
        {
            hostports::release_uplink(uplink);
            if brought_up {
                hostports::set_uplink_down(uplink);
            }
            return Err(datapath_error(e));
        }
        match port.mode {
            Some(mode) => self.xdp_modes.borrow_mut().insert(uplink.port_index, mode),
            None => self.xdp_modes.borrow_mut().remove(&uplink.port_index),
        };
        if let Some(index) = port.ifindex {
            self.uplink_ifindex.insert(uplink.interface.clone(), index);
        }
        self.uplinks_down.remove(&uplink.interface);
        tracing::info!(interface = %uplink.interface, network = %network.name, port_type = %uplink.port_type, "uplink attached");
        Ok(brought_up)
    }

    /// Removes the uplink's port and gives its interface back to the host.
    pub(super) fn detach_uplink(&mut self, uplink: &Uplink) {
        if let Err(e) = self.datapath.remove_port(endpoint_port(uplink.port_index)) {
            tracing::error!(interface = %uplink.interface, error = %e, "cannot remove the uplink's port");
        }
        hostports::release_uplink(uplink);
        self.xdp_modes.borrow_mut().remove(&uplink.port_index);
        self.uplinks_down.remove(&uplink.interface);
        self.uplink_ifindex.remove(&uplink.interface);
    }

    /// Re-attaches every recorded uplink after a restart; one that cannot
    /// be attached is logged and shown down.
    pub(super) fn restore_uplinks(&mut self) {
        let uplinks: Vec<Uplink> = self.model.uplinks().cloned().collect();
        for uplink in uplinks {
            let Some(network) = self.model.network_by_id(&uplink.network_id).cloned() else { continue };
            match self.attach_uplink(&uplink, &network) {
                Ok(_) => self.events.port_up(&network.name, &uplink.interface, None, PortChange::Restored),
                Err(e) => {
                    tracing::error!(interface = %uplink.interface, error = %e.message, "cannot restore uplink");
                    self.uplinks_down.insert(uplink.interface.clone());
                }
            }
        }
    }

    /// Uplink port `index` lost its device (its interface went away): the
    /// port goes down (reported as a `port_down` event, reason `gone`) and
    /// the uplink stays recorded, to be attached again when its interface
    /// returns (at once if it already has: see [`Control::uplink_returned`]).
    pub(super) fn reap_uplink(&mut self, index: u32) -> bool {
        let Some(uplink) = self.model.uplink_by_port_index(index).cloned() else { return false };
        let _ = self.datapath.remove_port(endpoint_port(index));
        self.xdp_modes.borrow_mut().remove(&index);
        self.uplinks_down.insert(uplink.interface.clone());
        let network = self.model.network_by_id(&uplink.network_id).map(|n| n.name.clone()).unwrap_or_default();
        tracing::warn!(interface = %uplink.interface, %network, "uplink's interface is gone: port down, waiting for it");
        self.events.port_down(&network, &uplink.interface, None, PortChange::Gone);
        // Its notification may have come before the port went down.
        self.uplink_returned(&uplink.interface);
        true
    }

    /// A link notification named `interface`: if it is a down uplink's and
    /// the interface it names may be taken (see the module docs), the
    /// uplink is attached again, with a `port_up` event (reason
    /// `returned`). Returns whether it was.
    pub fn uplink_returned(&mut self, interface: &str) -> bool {
        if !self.uplinks_down.contains(interface) {
            return false;
        }
        let Ok(uplink) = self.model.uplink(interface).cloned() else {
            self.uplinks_down.remove(interface);
            return false;
        };
        let Some(network) = self.model.network_by_id(&uplink.network_id).cloned() else { return false };
        let link = match Netlink::open().and_then(|mut nl| nl.link(interface)) {
            Ok(Some(link)) => link,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(interface, error = %e, "cannot look at a down uplink's interface");
                return false;
            }
        };
        if !may_reattach(self.uplink_ifindex.get(interface).copied(), &link) {
            return false;
        }
        match self.attach_uplink(&uplink, &network) {
            Ok(_) => {
                tracing::info!(interface, network = %network.name, "uplink's interface returned: port up");
                self.events.port_up(&network.name, interface, None, PortChange::Returned);
                true
            }
            Err(e) => {
                tracing::warn!(interface, error = %e.message, "cannot attach the uplink to its returned interface");
                false
            }
        }
    }

    /// Tries [`Control::uplink_returned`] for every down uplink: when the
    /// link watcher starts, and when notifications were lost.
    pub fn retry_down_uplinks(&mut self) {
        let down: Vec<String> = self.uplinks_down.iter().cloned().collect();
        for interface in down {
            self.uplink_returned(&interface);
        }
    }
}

/// Whether a down uplink last attached to interface index `last` (`None`:
/// never, in this run) is attached to `link`, an interface of its name:
/// a new interface always (it is brought up), the same one once it is up.
fn may_reattach(last: Option<u32>, link: &LinkState) -> bool {
    link.up || last != Some(link.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_interface_returns_and_the_same_one_once_it_is_up() {
        let link = |index, up| LinkState {
            index,
            name: "up0".into(),
            mtu: None,
            mac: None,
            up,
            txqueuelen: None,
            tx_dropped: None,
            rx_queues: None,
        };
        // Deleted and created again (down, as a new veth is): a new index.
        assert!(may_reattach(Some(7), &link(9, false)));
        // Never attached in this run (absent at the start).
        assert!(may_reattach(None, &link(7, false)));
        // The same interface, set down by an operator: it waits.
        assert!(!may_reattach(Some(7), &link(7, false)));
        assert!(may_reattach(Some(7), &link(7, true)));
    }
}
