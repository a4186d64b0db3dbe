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
        if let Some(reply) = self.cluster_key_rotate(network) {
            return reply;
        }
        let mut next = self.model.clone();
        let epoch = next.rotate_key(network).map_err(model_error)?;
        let net = next.network(network).map_err(model_error)?.clone();
        if let Err(e) = self.datapath.set_key_epoch(network_id(&net), epoch) {
            // A replica that did not follow fails the call after the owner
            // switched: back to the old epoch everywhere, so a refused
            // rotation changes nothing.
            let _ = self.datapath.set_key_epoch(network_id(&net), epoch.wrapping_sub(1));
            return Err(datapath_error(e));
        }
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

#[cfg(test)]
mod tests {
    use ctl::MacAddr;
    use ctl::proto::{Driver, FdbEntry, NetworkInfo, PeerInfo, Request};

    use super::super::scratch::Scratch;
    use super::*;
    use crate::daemon::tunnel::VtepConfig;

    /// A VTEP on the IPv6 loopback (an ephemeral port: no traffic flows).
    fn vtep6() -> VtepConfig {
        VtepConfig { local: "[::1]:0".parse().unwrap(), learn_peers: false, underlay_mtu: 1500 }
    }

    fn overlay(name: &str, subnet: &str) -> Request {
        super::super::scratch::network_create(name, Driver::Overlay, subnet, true, &[])
    }

    fn fdb(s: &mut Scratch, network: &str) -> Vec<FdbEntry> {
        serde_json::from_value(s.c().handle(Request::FdbShow { network: Some(network.into()) }).unwrap()).unwrap()
    }

    #[test]
    fn an_ipv6_vtep_takes_ipv6_peers_and_static_entries_toward_them_across_a_restart() {
        let mut s = match Scratch::with_vtep("vxlan6", Some(vtep6())) {
            Ok(s) => s,
            Err(e) => return eprintln!("SKIPPED: no IPv6 loopback here ({e})"),
        };
        let info: NetworkInfo = serde_json::from_value(s.c().handle(overlay("ov", "10.20.0.0/24")).unwrap()).unwrap();
        let mtu = info.options.get("com.docker.network.driver.mtu").map(String::as_str);
        assert_eq!(mtu, Some("1430"), "1500 - 70 on an IPv6 underlay: {info:?}");
        let before = s.state();

        // The other family, in disguise or not, is refused and changes nothing.
        for (addr, needle) in [
            ("192.0.2.1:4789", "peer 192.0.2.1:4789 is IPv4 but this host's VTEP [::1]:0 is IPv6"),
            ("[::ffff:192.0.2.1]:4789", "IPv4-mapped"),
            ("[fe80::1]:4789", "link-local"),
        ] {
            let e = s.c().handle(Request::PeerAdd { addr: addr.parse().unwrap(), networks: vec![] }).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{addr}: {}", e.message);
            assert!(e.message.contains(needle), "{addr}: {:?} lacks {needle:?}", e.message);
            assert_eq!(s.state(), before, "{addr} changed the state");
        }

        let peer: SocketAddr = "[2001:db8::2]:4789".parse().unwrap();
        s.c().handle(Request::PeerAdd { addr: peer, networks: vec!["ov".into()] }).unwrap();
        let peers: Vec<PeerInfo> = serde_json::from_value(s.c().handle(Request::PeerLs).unwrap()).unwrap();
        assert_eq!(peers.iter().map(|p| (p.addr, p.learned)).collect::<Vec<_>>(), [(peer, false)]);
        let mac = MacAddr([0x02, 0x42, 0, 0, 0, 0x77]);
        let add = |port: &str| Request::FdbAdd { network: "ov".into(), mac, port: port.into() };
        let e = s.c().handle(add("vx:[2001:db8::3]:4789")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.message);
        s.c().handle(add("vx:2001:db8::2")).unwrap();
        let static_entry =
            |entries: &[FdbEntry]| entries.iter().find(|f| f.mac == mac).map(|f| (f.port.clone(), f.kind, f.remote));
        let expected = Some(("vx:[2001:db8::2]:4789".to_owned(), ctl::proto::FdbKind::Static, Some(peer)));
        assert_eq!(static_entry(&fdb(&mut s, "ov")), expected);

        // A restarted daemon has the peer's tunnel port and the entry again.
        s.restart(Some(vtep6())).unwrap();
        assert_eq!(static_entry(&fdb(&mut s, "ov")), expected, "after a restart");
        // A daemon restarted on an IPv4 VTEP keeps the saved peer but
        // cannot add it to the datapath (logged), nor the entry.
        s.restart(Some(VtepConfig { local: "127.0.0.1:0".parse().unwrap(), ..vtep6() })).unwrap();
        assert_eq!(static_entry(&fdb(&mut s, "ov")), None, "no IPv6 tunnel from an IPv4 VTEP");
        s.restart(Some(vtep6())).unwrap();

        // Removing the peer removes the entry with its tunnel port.
        s.c().handle(Request::PeerRm { addr: peer }).unwrap();
        assert_eq!(static_entry(&fdb(&mut s, "ov")), None);
        assert_eq!(s.c().model.static_fdb().count(), 0);
    }
}
