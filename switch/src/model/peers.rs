//! Static VXLAN peers (remote VTEPs) and the overlay networks they serve.

use std::net::SocketAddr;

use ctl::proto::Driver;

use super::error::ModelError;
use super::state::Model;
use super::types::{Network, Peer};

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

    /// Removes a static peer and returns it.
    pub fn remove_peer(&mut self, addr: SocketAddr) -> Result<Peer, ModelError> {
        self.peers.remove(&addr).ok_or(ModelError::NoSuchPeer(addr))
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
    fn peers_survive_a_save_and_load() {
        let mut m = model();
        m.add_peer(addr("[2001:db8::1]:4790"), &["ov2".to_owned()]).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        let back: Model = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
    }
}
