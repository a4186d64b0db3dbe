//! Static VXLAN peers (remote VTEPs) and the overlay networks they serve.

use std::net::{IpAddr, SocketAddr};

use ctl::proto::Driver;

use super::error::ModelError;
use super::state::Model;
use super::types::{Network, Peer};

/// The name of the tunnel port toward `remote`, as `show`, `fdb show` and
/// `stats` print it: `vx:ADDR:PORT`, `vx:[V6]:PORT` for IPv6.
pub fn tunnel_port_name(remote: SocketAddr) -> String {
    format!("vx:{remote}")
}

/// The peer a tunnel port name names (`vx:ADDR:PORT`, `vx:[V6]:PORT`, or
/// `vx:ADDR` for port 4789); `None` for any other name.
pub fn tunnel_port_peer(name: &str) -> Option<SocketAddr> {
    let addr = name.strip_prefix("vx:")?;
    addr.parse::<SocketAddr>().ok().or_else(|| {
        let ip = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        Some(SocketAddr::new(ip.parse::<IpAddr>().ok()?, vxlan::UDP_PORT))
    })
}

impl Model {
    /// Adds a static peer serving `networks` (names or ids of overlay
    /// networks; empty: every overlay network).
    pub fn add_peer(&mut self, addr: SocketAddr, networks: &[String]) -> Result<Peer, ModelError> {
        let invalid = |reason| ModelError::InvalidPeer { addr, reason };
        if addr.ip().is_unspecified() {
            return Err(invalid("the unspecified address cannot be a peer"));
        }
        if addr.ip().is_multicast() {
            return Err(invalid("multicast underlays are not supported; list every peer"));
        }
        if addr.port() == 0 {
            return Err(invalid("UDP port 0 is not a valid destination"));
        }
        if self.peers.contains_key(&addr) {
            return Err(ModelError::PeerExists(addr));
        }
        let mut network_ids = Vec::with_capacity(networks.len());
        for name in networks {
            let net = self.network(name)?;
            if net.driver != Driver::Overlay {
                return Err(ModelError::NotOverlay(net.name.clone()));
            }
            if !network_ids.contains(&net.id) {
                network_ids.push(net.id.clone());
            }
        }
        let peer = Peer { addr, network_ids };
        self.peers.insert(addr, peer.clone());
        Ok(peer)
    }

    /// Removes a static peer, and the static FDB entries that point at its
    /// tunnel ports, and returns it.
    pub fn remove_peer(&mut self, addr: SocketAddr) -> Result<Peer, ModelError> {
        let peer = self.peers.remove(&addr).ok_or(ModelError::NoSuchPeer(addr))?;
        self.static_fdb.retain(|_, f| tunnel_port_peer(&f.port_name) != Some(addr));
        Ok(peer)
    }

    /// Whether `addr` is a static peer serving the overlay network
    /// `network_id`.
    pub fn peer_serves(&self, addr: SocketAddr, network_id: &str) -> bool {
        let Some(peer) = self.peers.get(&addr) else { return false };
        let overlay = self.networks.get(network_id).is_some_and(|n| n.driver == Driver::Overlay);
        overlay && (peer.network_ids.is_empty() || peer.network_ids.iter().any(|n| n == network_id))
    }

    /// Every static peer, ordered by address.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// The overlay networks `peer` serves.
    pub fn peer_networks(&self, peer: &Peer) -> Vec<&Network> {
        self.networks
            .values()
            .filter(|n| n.driver == Driver::Overlay)
            .filter(|n| peer.network_ids.is_empty() || peer.network_ids.contains(&n.id))
            .collect()
    }

    /// The static peers serving overlay network `network_id`.
    pub fn peers_of(&self, network_id: &str) -> Vec<&Peer> {
        self.peers
            .values()
            .filter(|p| p.network_ids.is_empty() || p.network_ids.iter().any(|n| n == network_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CreateNetwork;

    fn model() -> Model {
        let mut m = Model::new();
        m.create_network(CreateNetwork::new("ov1", Driver::Overlay)).unwrap();
        m.create_network(CreateNetwork::new("ov2", Driver::Overlay)).unwrap();
        m
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peers_serve_named_or_all_overlays() {
        let mut m = model();
        m.add_peer(addr("192.0.2.1:4789"), &[]).unwrap();
        m.add_peer(addr("192.0.2.2:4789"), &["ov1".to_owned()]).unwrap();
        let ov1 = m.network("ov1").unwrap().id.clone();
        let ov2 = m.network("ov2").unwrap().id.clone();
        assert_eq!(m.peers_of(&ov1).len(), 2);
        assert_eq!(m.peers_of(&ov2).len(), 1);
        let all = m.peers().next().unwrap().clone();
        assert_eq!(m.peer_networks(&all).len(), 2);
    }

    #[test]
    fn refuses_bad_peers_and_changes_nothing() {
        let mut m = model();
        m.add_peer(addr("192.0.2.1:4789"), &[]).unwrap();
        let before = serde_json::to_string(&m).unwrap();
        let cases = [
            (m.clone().add_peer(addr("192.0.2.1:4789"), &[]), "already exists"),
            (m.clone().add_peer(addr("0.0.0.0:4789"), &[]), "unspecified"),
            (m.clone().add_peer(addr("239.1.1.1:4789"), &[]), "multicast"),
            (m.clone().add_peer(addr("192.0.2.9:0"), &[]), "port 0"),
            (m.clone().add_peer(addr("192.0.2.9:4789"), &["bridge".to_owned()]), "not an overlay"),
            (m.clone().add_peer(addr("192.0.2.9:4789"), &["nope".to_owned()]), "not found"),
        ];
        for (result, needle) in cases {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        assert!(m.add_peer(addr("192.0.2.9:4789"), &["nope".to_owned()]).is_err());
        assert_eq!(serde_json::to_string(&m).unwrap(), before);
        assert!(m.remove_peer(addr("192.0.2.7:4789")).unwrap_err().to_string().contains("not found"));
    }

    #[test]
    fn removing_a_network_drops_peers_that_served_only_it() {
        let mut m = model();
        m.add_peer(addr("192.0.2.1:4789"), &["ov1".to_owned()]).unwrap();
        m.add_peer(addr("192.0.2.2:4789"), &["ov1".to_owned(), "ov2".to_owned()]).unwrap();
        m.add_peer(addr("192.0.2.3:4789"), &[]).unwrap();
        m.remove_network("ov1").unwrap();
        let left: Vec<SocketAddr> = m.peers().map(|p| p.addr).collect();
        assert_eq!(left, vec![addr("192.0.2.2:4789"), addr("192.0.2.3:4789")]);
        assert_eq!(m.peers().next().unwrap().network_ids.len(), 1);
    }

    #[test]
    fn tunnel_port_names_of_either_family() {
        assert_eq!(tunnel_port_name(addr("192.0.2.1:4789")), "vx:192.0.2.1:4789");
        assert_eq!(tunnel_port_name(addr("[2001:db8::1]:4790")), "vx:[2001:db8::1]:4790");
        for (name, peer) in [
            ("vx:192.0.2.1:4789", "192.0.2.1:4789"),
            ("vx:192.0.2.1", "192.0.2.1:4789"),
            ("vx:[2001:db8::1]:4790", "[2001:db8::1]:4790"),
            ("vx:[2001:db8::1]", "[2001:db8::1]:4789"),
            ("vx:2001:db8::1", "[2001:db8::1]:4789"),
        ] {
            assert_eq!(tunnel_port_peer(name), Some(addr(peer)), "{name}");
        }
        for name in ["vsw0a0b0c0d", "gw:ov1", "vx:", "vx:host.example", "vx:[2001:db8::1", "192.0.2.1:4789"] {
            assert_eq!(tunnel_port_peer(name), None, "{name}");
        }
    }

    #[test]
    fn static_fdb_entries_toward_the_tunnel_port_of_a_peer() {
        let mut m = model();
        let v6 = addr("[2001:db8::2]:4789");
        m.add_peer(v6, &["ov1".to_owned()]).unwrap();
        m.add_peer(addr("192.0.2.3:4789"), &[]).unwrap();
        let mac = |last: u8| ctl::MacAddr([0x02, 0, 0, 0, 0, last]);
        // As `show` names the port, or without the default port.
        let e = m.add_static_fdb("ov1", mac(1), "vx:[2001:db8::2]:4789").unwrap();
        assert_eq!(e.port_name, "vx:[2001:db8::2]:4789");
        let e = m.add_static_fdb("ov1", mac(2), "vx:2001:db8::2").unwrap();
        assert_eq!(e.port_name, "vx:[2001:db8::2]:4789", "stored under the name `show` prints");
        m.add_static_fdb("ov2", mac(3), "vx:192.0.2.3").unwrap();
        m.check_invariants().unwrap();
        let before = serde_json::to_string(&m).unwrap();
        for (network, port, needle) in [
            ("ov2", "vx:[2001:db8::2]:4789", "is not a tunnel port of network ov2"),
            ("ov1", "vx:[2001:db8::9]:4789", "is not a tunnel port of network ov1"),
            ("ov1", "vx:[2001:db8::2]:4790", "is not a tunnel port of network ov1"),
            ("bridge", "vx:192.0.2.3:4789", "is not a tunnel port of network bridge"),
            ("ov1", "vx:nonsense", "not an endpoint of network ov1"),
            ("ov1", "vx:[2001:db8::2]:4789", "already exists"),
        ] {
            let message = m.clone().add_static_fdb(network, mac(1), port).unwrap_err().to_string();
            assert!(message.contains(needle), "{network} {port}: {message:?} lacks {needle:?}");
        }
        assert_eq!(serde_json::to_string(&m).unwrap(), before, "refusals change nothing");

        // The entries survive a save and load, and go with their peer.
        let text = serde_json::to_string(&m).unwrap();
        let back: Model = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        m.remove_peer(v6).unwrap();
        let left: Vec<String> = m.static_fdb().map(|f| f.port_name.clone()).collect();
        assert_eq!(left, vec!["vx:192.0.2.3:4789".to_owned()]);
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_state_file_whose_entry_names_a_missing_peer_is_refused() {
        let mut m = model();
        m.add_peer(addr("[2001:db8::2]:4789"), &[]).unwrap();
        m.add_static_fdb("ov1", ctl::MacAddr([2, 0, 0, 0, 0, 1]), "vx:[2001:db8::2]:4789").unwrap();
        let mut file: serde_json::Value = serde_json::to_value(&m).unwrap();
        file["peers"] = serde_json::json!([]);
        let message = serde_json::from_value::<Model>(file).unwrap_err().to_string();
        assert!(message.contains("points at unknown port vx:[2001:db8::2]:4789"), "{message}");
    }

    #[test]
    fn peers_survive_a_save_and_load() {
        let mut m = model();
        m.add_peer(addr("[2001:db8::1]:4790"), &["ov2".to_owned()]).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        let back: Model = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
    }
}
