//! Uplinks: host interfaces attached to a network as bridge ports (`port
//! add`, and the parent of a macvlan network). The model records which
//! interface serves which network and its port index; whether the
//! interface may be taken (the VTEP's, the default route's) is the
//! daemon's check, as it needs the host's state.

use ctl::proto::{Driver, PortType};

use super::error::ModelError;
use super::ids;
use super::state::Model;
use super::types::{CreateNetwork, PARENT_OPTION, PORT_TYPE_OPTION, Uplink};

impl Model {
    /// Every uplink, by interface name.
    pub fn uplinks(&self) -> impl Iterator<Item = &Uplink> {
        self.uplinks.values()
    }

    /// The uplink on `interface`.
    pub fn uplink(&self, interface: &str) -> Result<&Uplink, ModelError> {
        self.uplinks.get(interface).ok_or_else(|| ModelError::NoSuchUplink(interface.to_owned()))
    }

    /// The uplink whose datapath port index is `index`.
    pub fn uplink_by_port_index(&self, index: u32) -> Option<&Uplink> {
        self.uplinks.values().find(|u| u.port_index == index)
    }

    /// The uplinks of network `network_id`.
    pub fn uplinks_of(&self, network_id: &str) -> Vec<&Uplink> {
        self.uplinks.values().filter(|u| u.network_id == network_id).collect()
    }

    /// Records `interface` as an uplink of `network` (`raw` or `afxdp`).
    pub fn add_uplink(
        &mut self,
        network: &str,
        interface: &str,
        port_type: PortType,
        force: bool,
    ) -> Result<Uplink, ModelError> {
        let net = self.network(network)?;
        if !net.driver.is_switched() {
            return Err(if net.driver == Driver::Host {
                ModelError::HostNotConnectable
            } else {
                ModelError::NoneNotConnectable
            });
        }
        check_interface(interface)?;
        match port_type {
            PortType::Raw => {}
            // Any MTU: frames longer than a UMEM chunk are descriptor chains.
            PortType::Afxdp => {}
            PortType::Tap => return Err(ModelError::BadPortType(port_type)),
        }
        if let Some(u) = self.uplinks.get(interface) {
            let network = self.network_by_id(&u.network_id).map(|n| n.name.clone()).unwrap_or_default();
            return Err(ModelError::UplinkExists { interface: interface.to_owned(), network });
        }
        let uplink = Uplink {
            interface: interface.to_owned(),
            network_id: net.id.clone(),
            port_type,
            port_index: self.free_port_index(),
            force,
            created: ids::now_rfc3339(),
        };
        self.uplinks.insert(uplink.interface.clone(), uplink.clone());
        Ok(uplink)
    }

    /// For a macvlan network: records its parent (`-o parent`) as its
    /// uplink, of the port type `-o port-type` names, forced with `-o
    /// force` (any value but `false`); `None` for other drivers. Shared by
    /// `network create` and stack files.
    pub fn add_macvlan_uplink(&mut self, network: &super::types::Network) -> Result<Option<Uplink>, ModelError> {
        if network.driver != Driver::Macvlan {
            return Ok(None);
        }
        let parent = network.options.get(PARENT_OPTION).ok_or(ModelError::MacvlanNeedsParent)?;
        let port_type = macvlan_port_type(network.options.get(PORT_TYPE_OPTION).map(String::as_str))?;
        let force = network.options.get("force").is_some_and(|v| v != "false");
        self.add_uplink(&network.id, parent, port_type, force).map(Some)
    }

    /// Removes the uplink on `interface` and returns it.
    pub fn remove_uplink(&mut self, interface: &str) -> Result<Uplink, ModelError> {
        self.uplinks.remove(interface).ok_or_else(|| ModelError::NoSuchUplink(interface.to_owned()))
    }
}

/// A Linux interface name: 1–15 bytes, no `/`, `:`, whitespace or NUL.
fn check_interface(name: &str) -> Result<(), ModelError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad { Err(ModelError::InvalidInterface(name.to_owned())) } else { Ok(()) }
}

/// The macvlan driver's options: `parent` is required (a valid interface
/// name), `port-type` is `raw` or `afxdp`; neither is valid elsewhere.
pub(crate) fn check_macvlan_options(req: &CreateNetwork) -> Result<(), ModelError> {
    if req.driver != Driver::Macvlan {
        for option in [PARENT_OPTION, PORT_TYPE_OPTION] {
            if req.options.contains_key(option) {
                return Err(ModelError::OptionNotSupported { option, driver: req.driver });
            }
        }
        return Ok(());
    }
    let parent = req.options.get(PARENT_OPTION).ok_or(ModelError::MacvlanNeedsParent)?;
    check_interface(parent)?;
    macvlan_port_type(req.options.get(PORT_TYPE_OPTION).map(String::as_str)).map(drop)
}

/// The port type a macvlan network's `-o port-type` names (default `raw`).
pub fn macvlan_port_type(value: Option<&str>) -> Result<PortType, ModelError> {
    match value {
        None | Some("raw") => Ok(PortType::Raw),
        Some("afxdp") => Ok(PortType::Afxdp),
        Some(_) => Err(ModelError::BadPortType(PortType::Tap)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CreateNetwork;

    #[test]
    fn uplinks_share_the_port_index_space_and_go_with_their_network() {
        let mut m = Model::new();
        let mut req = CreateNetwork::new("lan", Driver::Bridge);
        req.subnet = Some("10.9.0.0/24".parse().unwrap());
        m.create_network(req).unwrap();
        let mut c = crate::model::Connect::new("lan", "a");
        m.create_sandbox(crate::model::CreateSandbox::new("a")).unwrap();
        c.port_type = PortType::Afxdp;
        let ep = m.connect(c).unwrap();
        assert_eq!(ep.port_index, 0);
        let up = m.add_uplink("lan", "veth-lan", PortType::Raw, false).unwrap();
        assert_eq!(up.port_index, 1, "after the endpoint's");
        assert!(matches!(
            m.add_uplink("lan", "veth-lan", PortType::Afxdp, false),
            Err(ModelError::UplinkExists { .. })
        ));
        assert!(matches!(m.add_uplink("lan", "x", PortType::Tap, false), Err(ModelError::BadPortType(_))));
        assert!(matches!(m.add_uplink("lan", "a/b", PortType::Raw, false), Err(ModelError::InvalidInterface(_))));
        assert!(matches!(m.add_uplink("host", "eth9", PortType::Raw, false), Err(ModelError::HostNotConnectable)));
        // The state file round-trips it.
        let text = serde_json::to_string(&m).unwrap();
        let back: Model = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.uplink_by_port_index(1).unwrap().interface, "veth-lan");
        m.disconnect("lan", "a").unwrap();
        assert!(m.remove_network("lan").is_ok());
        assert_eq!(m.uplinks().count(), 0);
        assert!(matches!(m.remove_uplink("veth-lan"), Err(ModelError::NoSuchUplink(_))));
    }

    #[test]
    fn afxdp_takes_jumbo_mtus_and_macvlan_needs_a_parent() {
        let mut m = Model::new();
        let mut req = CreateNetwork::new("jumbo", Driver::Bridge);
        req.mtu = Some(9000);
        m.create_network(req).unwrap();
        m.create_sandbox(crate::model::CreateSandbox::new("a")).unwrap();
        let mut c = crate::model::Connect::new("jumbo", "a");
        c.port_type = PortType::Afxdp;
        // Multi-buffer descriptors carry frames longer than a chunk.
        assert!(m.connect(c).is_ok());
        assert!(m.add_uplink("jumbo", "eth9", PortType::Afxdp, false).is_ok());
        let req = CreateNetwork::new("mv", Driver::Macvlan);
        assert_eq!(m.create_network(req).unwrap_err(), ModelError::MacvlanNeedsParent);
        let mut req = CreateNetwork::new("mv", Driver::Bridge);
        req.options.insert("parent".into(), "eth0".into());
        assert!(matches!(m.create_network(req), Err(ModelError::OptionNotSupported { .. })));
        let mut req = CreateNetwork::new("mv", Driver::Macvlan);
        req.options.insert("parent".into(), "eth0".into());
        assert_eq!(m.create_network(req).unwrap().driver, Driver::Macvlan);
    }
}
