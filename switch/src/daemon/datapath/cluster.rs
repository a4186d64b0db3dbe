//! The cluster view of an overlay network inside the datapath: tunnel ports
//! toward the nodes that serve it, static FDB entries for the remote
//! endpoints' MACs toward their nodes' tunnel ports, and the proxy ARP/ND
//! table that answers local sandboxes asking for remote addresses.
//!
//! The control plane sends the whole view of a network each time
//! ([`DatapathHandle::set_cluster_view`](super::DatapathHandle::set_cluster_view));
//! the datapath diffs it against what the previous view installed, so a
//! missed or repeated view is harmless. Tunnel ports are shared: a static
//! peer (`peer add`), the cluster view and learning may each want the same
//! (network, VTEP) port, which stays while any of them does
//! ([`TunnelOwners`]). An FDB entry is the view's only while the bridge
//! still has it where the view put it: a static entry the operator added
//! for the same MAC elsewhere is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::handle::{DatapathError, RemoteEndpoint};
use super::{Datapath, PortIo, TunnelOwners, capture};
use crate::bridge::BridgeError;
use crate::daemon::batch::HDR;
use crate::port::{NetworkId, PortId};
use crate::proxy::ProxyTable;
use crate::wire::MacAddr;

/// Who holds a tunnel port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// A static peer (`peer add`).
    Peer,
    /// The cluster view.
    Cluster,
}

impl Owner {
    /// Marks this owner in `owners`.
    pub(super) fn hold(self, owners: &mut TunnelOwners) {
        match self {
            Owner::Peer => owners.peer = true,
            Owner::Cluster => owners.cluster = true,
        }
    }
}

/// What the last cluster view installed on one network.
#[derive(Debug, Default)]
pub(super) struct ClusterView {
    /// The VTEPs whose tunnel ports the view holds.
    tunnels: BTreeSet<SocketAddr>,
    /// The static FDB entries it installed: MAC → tunnel port.
    fdb: BTreeMap<MacAddr, PortId>,
    /// Remote addresses answered by the switch.
    pub(super) proxy: ProxyTable,
}

impl ClusterView {
    /// Whether the view installed the entry `mac` → `port`.
    pub(super) fn installed(&self, mac: MacAddr, port: PortId) -> bool {
        self.fdb.get(&mac) == Some(&port)
    }
}

impl Datapath {
    /// Applies a network's cluster view (see the module docs): holds the
    /// tunnel ports it wants, installs and removes its FDB entries,
    /// replaces its proxy table, then releases the ports it no longer
    /// wants. Refused (nothing changes) for a network that does not exist
    /// or is no overlay, and for a non-empty view without a VTEP; a peer
    /// or endpoint that cannot be used is left out and logged.
    pub(super) fn set_cluster_view(
        &mut self,
        network: NetworkId,
        peers: Vec<SocketAddr>,
        endpoints: Vec<RemoteEndpoint>,
    ) -> Result<(), DatapathError> {
        let info =
            self.nets.get(network.index()).and_then(Option::as_ref).ok_or(BridgeError::NoSuchNetwork(network))?;
        let vni = info.vni.ok_or(DatapathError::NotOverlay(network))?;
        let wanted: BTreeSet<SocketAddr> = peers.iter().copied().chain(endpoints.iter().map(|e| e.vtep)).collect();
        if !wanted.is_empty() && self.tunnel.is_none() {
            return Err(DatapathError::NoVtep);
        }
        let local = self.tunnel.as_ref().map(|t| t.config().local);

        // Tunnel ports first: the entries point at them.
        let mut held: BTreeMap<SocketAddr, PortId> = BTreeMap::new();
        for remote in wanted {
            if Some(remote) == local {
                tracing::warn!(%remote, %network, "cluster view names this host's own VTEP; left out");
                continue;
            }
            match self.hold_tunnel(network, remote, Owner::Cluster) {
                Ok(port) => {
                    held.insert(remote, port);
                }
                Err(error) => tracing::warn!(%remote, %network, %error, "cluster peer left out"),
            }
        }

        let mut desired: BTreeMap<MacAddr, PortId> = BTreeMap::new();
        let mut proxy = ProxyTable::new();
        for e in &endpoints {
            if !e.mac.is_valid_station() {
                tracing::warn!(mac = %e.mac, %network, "remote endpoint with a group or zero MAC left out");
                continue;
            }
            let Some(&port) = held.get(&e.vtep) else { continue };
            desired.insert(e.mac, port);
            if let Some(ipv4) = e.ipv4 {
                proxy.insert_ipv4(ipv4, e.mac);
            }
            if let Some(ipv6) = e.ipv6 {
                proxy.insert_ipv6(ipv6, e.mac);
            }
        }

        let now = self.clock.now();
        let Some(net) = self.nets.get_mut(network.index()).and_then(Option::as_mut) else {
            return Err(BridgeError::NoSuchNetwork(network).into());
        };
        let old = std::mem::take(&mut net.cluster.fdb);
        let old_tunnels = std::mem::replace(&mut net.cluster.tunnels, held.keys().copied().collect());
        net.cluster.proxy = proxy;
        // Entries the view drops (or moves), where the bridge still has
        // them as the view put them.
        for (&mac, &port) in &old {
            if desired.get(&mac) != Some(&port) && self.bridge.static_port(network, mac) == Some(port) {
                let _ = self.bridge.remove_entry(network, mac);
            }
        }
        let mut installed = BTreeMap::new();
        for (mac, port) in desired {
            // An operator's static entry elsewhere wins.
            if let Some(other) = self.bridge.static_port(network, mac)
                && other != port
                && old.get(&mac) != Some(&other)
            {
                tracing::warn!(%mac, %network, "a static entry of the operator's keeps this remote MAC");
                continue;
            }
            match self.bridge.add_static(network, mac, port, now) {
                Ok(()) => {
                    installed.insert(mac, port);
                }
                Err(error) => tracing::warn!(%mac, %network, %error, "remote MAC not installed"),
            }
        }
        if let Some(net) = self.nets.get_mut(network.index()).and_then(Option::as_mut) {
            net.cluster.fdb = installed;
        }
        for remote in old_tunnels {
            if !held.contains_key(&remote) {
                self.release_cluster_tunnel(vni, remote);
            }
        }
        self.count_proxying();
        Ok(())
    }

    /// Recounts the networks whose proxy table answers anything.
    pub(super) fn count_proxying(&mut self) {
        self.proxying = self.nets.iter().flatten().filter(|n| !n.cluster.proxy.is_empty()).count();
    }

    /// Removes the static FDB entries on tunnel port `port` of `network`
    /// that the cluster view did not install (the operator's, toward a
    /// static peer that is gone while the view keeps its port).
    pub(super) fn forget_operator_entries(&mut self, network: NetworkId, port: PortId) {
        let now = self.clock.now();
        let Ok(records) = self.bridge.fdb_records(network, now) else { return };
        let Some(net) = self.nets.get(network.index()).and_then(Option::as_ref) else { return };
        let stale: Vec<MacAddr> = records
            .iter()
            .filter(|r| r.is_static && r.port == port && !net.cluster.installed(r.mac, port))
            .map(|r| r.mac)
            .collect();
        for mac in stale {
            let _ = self.bridge.remove_entry(network, mac);
        }
    }

    /// Answers the ARP requests and neighbour solicitations of the batch
    /// that local (TAP) ports sent for a remote endpoint's address, back
    /// out of the port they came from, and takes them out of the batch so
    /// they are not flooded. Only frames [`crate::proxy::may_ask`] picks
    /// are parsed and looked up; the answer is built in a buffer of the
    /// datapath's own. An answer skips the port's impairment.
    pub(super) fn answer_neighbours(&mut self) {
        self.answered.clear();
        for i in 0..self.batch.len() {
            let answer = {
                let Datapath { batch, nets, bridge, ports, proxy_buf, .. } = self;
                let frame = batch.frame(i);
                if !crate::proxy::may_ask(frame) {
                    continue;
                }
                let port = batch.entry(i).port;
                let Some(Some(PortIo::Tap(_))) = ports.get(port.index()) else { continue };
                let Ok(config) = bridge.port_config(port) else { continue };
                let Some(net) = nets.get_mut(config.network.index()).and_then(Option::as_mut) else { continue };
                let Some((len, protocol)) = net.cluster.proxy.answer(frame, &mut proxy_buf[HDR..]) else { continue };
                if !bridge.receive_local(port, frame.len()) {
                    continue;
                }
                net.proxy.count(protocol);
                (port, len)
            };
            self.answered.push(i);
            let (port, len) = answer;
            let bytes = &self.proxy_buf[..HDR + len];
            if self.captures.ports {
                capture::offer_written(&mut self.captures, &self.bridge, port, bytes);
            }
            let Some(Some(PortIo::Tap(device))) = self.ports.get(port.index()) else { continue };
            let sent = device.send(bytes);
            match sent {
                Ok(_) => self.link_seen_up(port),
                Err(e) => self.tap_send_failed(port, &e),
            }
        }
        if !self.answered.is_empty() {
            self.batch.remove_frames(&self.answered);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The view through the control plane's handle: a real datapath thread
    //! and underlay sockets on the IPv4 loopback (no traffic flows).

    use super::super::DatapathHandle;
    use super::super::testing::frames::{ip, ip6, mac, vtep};
    use super::super::testing::overlay_network;
    use super::*;
    use crate::daemon::tunnel::VtepConfig;

    #[test]
    fn the_handle_applies_a_view_and_the_snapshot_shows_it() {
        let local = VtepConfig { local: "127.0.0.1:0".parse().unwrap(), learn_peers: false, underlay_mtu: 1500 };
        let dp = DatapathHandle::spawn(Some(local), None, Vec::new(), Default::default()).expect("a datapath");
        let net = NetworkId(0);
        dp.add_network(overlay_network(0, 4242)).expect("an overlay");
        let remote = RemoteEndpoint { mac: mac(7), ipv4: Some(ip(7)), ipv6: Some(ip6(7)), vtep: vtep(2) };
        dp.set_cluster_view(net, vec![vtep(2), vtep(3)], vec![remote]).expect("the view applies");
        let snapshot = dp.snapshot().expect("a snapshot");
        let mut tunnels: Vec<_> = snapshot.tunnels.iter().map(|t| (t.remote, t.learned, t.cluster)).collect();
        tunnels.sort();
        assert_eq!(tunnels, vec![(vtep(2), false, true), (vtep(3), false, true)]);
        let port = snapshot.tunnels.iter().find(|t| t.remote == vtep(2)).map(|t| t.port);
        let entry = snapshot.fdb.iter().find(|r| r.mac == mac(7)).expect("station 7's entry");
        assert_eq!((Some(entry.port), entry.is_static, entry.cluster), (port, true, true));
        assert_eq!(snapshot.proxy, vec![(net, crate::proxy::ProxyCounters::default())]);

        dp.set_cluster_view(net, vec![], vec![]).expect("the empty view applies");
        let snapshot = dp.snapshot().expect("a snapshot");
        assert!(snapshot.tunnels.is_empty() && snapshot.fdb.iter().all(|r| r.mac != mac(7)));
        let plain = crate::daemon::datapath::testing::gateway_network(1);
        dp.add_network(plain).expect("a bridge network");
        let e = dp.set_cluster_view(NetworkId(1), vec![vtep(2)], vec![]).expect_err("not an overlay");
        assert!(matches!(e, DatapathError::NotOverlay(NetworkId(1))), "{e}");
    }
}
