//! Overlay-specific requests: VXLAN peers, the overlay MTU, and the key
//! epochs of encrypted overlays.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ctl::proto::{self, Ack, CtlError, ErrorKind};

use super::{Control, Reply, datapath_error, endpoint_port, model_error, network_id, ok};
use crate::daemon::datapath::DatapathError;
use crate::port::{NetworkId, PortId};

impl Control {
    pub(super) fn key_rotate(&mut self, network: &str) -> Reply {
        let mut next = self.model.clone();
        let epoch = next.rotate_key(network).map_err(model_error)?;
        let net = next.network(network).map_err(model_error)?.clone();
        self.datapath.set_key_epoch(network_id(&net), epoch).map_err(datapath_error)?;
        if let Err(e) = self.commit(next) {
            let _ = self.datapath.set_key_epoch(network_id(&net), epoch.wrapping_sub(1));
            return Err(e);
        }
        tracing::info!(network = %net.name, epoch, "key rotated");
        ok(proto::KeyEpoch { network: net.name, epoch })
    }

    /// The default MTU of an overlay network: what a tunnel carries over the
    /// underlay without fragmenting (1450 over a 1500-byte IPv4 underlay,
    /// 1430 over IPv6).
    pub(super) fn overlay_mtu(&self) -> u32 {
        let (mtu, version) = match self.vtep {
            Some(v) => (v.underlay_mtu, vxlan::IpVersion::of(v.local.ip())),
            None => (1500, vxlan::IpVersion::V4),
        };
        vxlan::inner_mtu(mtu, version).unwrap_or(vxlan::MIN_INNER_MTU)
    }

    pub(super) fn peer_add(&mut self, addr: SocketAddr, networks: Vec<String>) -> Reply {
        let Some(vtep) = self.vtep else {
            return Err(CtlError::new(ErrorKind::NotSupported, DatapathError::NoVtep.to_string()));
        };
        // One address family per underlay: refused before anything changes.
        vxlan::check_peer(vtep.local, addr).map_err(|e| CtlError::invalid_argument(e.to_string()))?;
        let mut next = self.model.clone();
        let peer = next.add_peer(addr, &networks).map_err(model_error)?;
        let served: Vec<NetworkId> = next.peer_networks(&peer).into_iter().map(network_id).collect();
        for (done, &id) in served.iter().enumerate() {
            if let Err(e) = self.datapath.add_peer(id, addr) {
                for &undo in &served[..done] {
                    let _ = self.datapath.remove_peer(undo, addr);
                }
                return Err(datapath_error(e));
            }
        }
        if let Err(e) = self.commit(next) {
            for &id in &served {
                let _ = self.datapath.remove_peer(id, addr);
            }
            return Err(e);
        }
        ok(self.peer_info(&peer))
    }

    pub(super) fn peer_rm(&mut self, addr: SocketAddr) -> Reply {
        let mut next = self.model.clone();
        let peer = next.remove_peer(addr).map_err(model_error)?;
        let served: Vec<NetworkId> = self.model.peer_networks(&peer).into_iter().map(network_id).collect();
        self.commit(next)?;
        for id in served {
            let _ = self.datapath.remove_peer(id, addr);
        }
        ok(Ack {})
    }

    pub(super) fn peer_ls(&self) -> Reply {
        let mut peers: Vec<proto::PeerInfo> = self.model.peers().map(|p| self.peer_info(p)).collect();
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        let mut learned: BTreeMap<SocketAddr, Vec<String>> = BTreeMap::new();
        for t in snapshot.tunnels.iter().filter(|t| t.learned) {
            learned.entry(t.remote).or_default().push(self.network_name(t.network));
        }
        peers.extend(learned.into_iter().map(|(addr, networks)| proto::PeerInfo {
            addr,
            networks,
            all_networks: false,
            learned: true,
        }));
        ok(peers)
    }

    pub(super) fn peer_info(&self, peer: &crate::model::Peer) -> proto::PeerInfo {
        proto::PeerInfo {
            addr: peer.addr,
            networks: self.model.peer_networks(peer).into_iter().map(|n| n.name.clone()).collect(),
            all_networks: peer.network_ids.is_empty(),
            learned: false,
        }
    }

    /// The datapath network and port a static FDB entry of `model` points
    /// at: an endpoint's TAP, or the tunnel port to a static peer of an
    /// overlay (which the datapath made when the peer was added).
    pub(super) fn static_fdb_port(
        &self,
        model: &crate::model::Model,
        entry: &crate::model::StaticFdbEntry,
    ) -> Result<(NetworkId, PortId), CtlError> {
        let net = model.network_by_id(&entry.network_id).ok_or_else(|| CtlError::internal("entry without network"))?;
        let network = network_id(net);
        if let Some(endpoint) = model.endpoint_by_tap(&entry.port_name) {
            return Ok((network, endpoint_port(endpoint.port_index)));
        }
        let remote = crate::model::tunnel_port_peer(&entry.port_name)
            .ok_or_else(|| CtlError::internal(format!("entry without port {}", entry.port_name)))?;
        let snapshot = self.datapath.snapshot().map_err(datapath_error)?;
        snapshot
            .tunnels
            .iter()
            .find(|t| t.network == network && t.remote == remote)
            .map(|t| (network, t.port))
            .ok_or_else(|| {
                CtlError::new(
                    ErrorKind::NotFound,
                    format!("no tunnel port {} on network {} in the datapath", entry.port_name, net.name),
                )
            })
    }
}
