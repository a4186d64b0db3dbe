//! Configuration commands applied inside the datapath thread: networks,
//! ports, peers, static entries, and snapshots for the control plane.

use std::net::SocketAddr;

use crypto::NetworkCrypto;
use mio::Interest;
use mio::Token;
use mio::unix::SourceFd;
use vxlan::Vni;

use super::cluster::Owner;
use super::device::PortDevice;
use super::handle::{Command, DatapathError, KeyState, NetworkSpec, Snapshot, TunnelPortInfo, tunnel_port};
use super::{Datapath, NetInfo, PortIo, TunnelOwners};
use crate::bridge::{Bridge, BridgeError};
use crate::events::EventKind;
use crate::fdb::Fdb;
use crate::gateway::{Gateway, Ipv6Config};
use crate::port::{NetworkId, PortConfig, PortId};
use crate::sys::tap::Tap;

/// Grows `ports` so `id` has a slot.
pub(super) fn slot(ports: &mut Vec<Option<PortIo>>, id: PortId) -> &mut Option<PortIo> {
    if ports.len() <= id.index() {
        ports.resize_with(id.index() + 1, || None);
    }
    &mut ports[id.index()]
}

/// Adds a tunnel port toward `remote` on `network` in the lowest free
/// tunnel slot among this worker's (`slots`: worker `k` of `n` takes the
/// slots `s` with `s % n == k`, so tunnel port ids never collide between
/// workers and the handle finds a tunnel port's worker from its id).
#[allow(clippy::too_many_arguments)]
pub(super) fn add_tunnel_port(
    bridge: &mut Bridge,
    ports: &mut Vec<Option<PortIo>>,
    slots: super::TunnelSlots,
    network: NetworkId,
    mtu: u32,
    vni: Vni,
    remote: SocketAddr,
    owners: TunnelOwners,
) -> Result<PortId, BridgeError> {
    let id = (0u32..)
        .map(|k| slots.first + k * slots.step)
        .map(tunnel_port)
        .find(|id| ports.get(id.index()).is_none_or(Option::is_none))
        .ok_or(BridgeError::IdOutOfRange(u32::MAX))?;
    bridge.add_port(id, PortConfig { mtu, ..PortConfig::tunnel(network) })?;
    *slot(ports, id) = Some(PortIo::Tunnel { vni, remote, owners });
    Ok(id)
}

impl Datapath {
    pub(super) fn handle(&mut self, command: Command) {
        // A dropped reply sender means the control side gave up; ignore.
        match command {
            Command::AddNetwork { spec, fdb, reply } => {
                let _ = reply.send(self.add_network(spec, fdb));
            }
            Command::RemoveNetwork { id, reply } => {
                let _ = reply.send(self.remove_network(id));
            }
            Command::AddTap { id, tap, config, reply } => {
                let _ = reply.send(self.add_tap(id, tap, config));
            }
            Command::AddDevice { id, device, config, reply } => {
                let added = self.add_device(id, &*device, config).map(|()| self.install_device(id, device));
                let _ = reply.send(added);
            }
            Command::RemovePort { id, reply } => {
                let _ = reply.send(self.remove_port(id));
            }
            Command::PortReportedGone { id, reply } => {
                let _ = reply.send(self.reported_gone.contains(&id));
            }
            Command::AddPeer { network, remote, reply } => {
                let _ = reply.send(self.add_peer(network, remote));
            }
            Command::RemovePeer { network, remote, reply } => {
                let _ = reply.send(self.remove_peer(network, remote));
            }
            Command::SetMesh { network, mesh, reply } => {
                let _ = reply.send(self.set_mesh(network, mesh));
            }
            Command::SetClusterView { network, peers, endpoints, reply } => {
                let _ = reply.send(self.set_cluster_view(network, peers, endpoints));
            }
            Command::AddStatic { network, mac, port, reply } => {
                let now = self.clock.now();
                let _ = reply.send(self.bridge.add_static(network, mac, port, now).map_err(Into::into));
            }
            Command::RemoveEntry { network, mac, reply } => {
                let _ = reply.send(self.bridge.remove_entry(network, mac).map_err(Into::into));
            }
            Command::Flush { network, reply } => {
                let flushed = match network {
                    Some(n) => self.bridge.flush_network(n).unwrap_or(0),
                    None => self.bridge.flush_all(),
                };
                let _ = reply.send(flushed);
            }
            Command::SetAging { aging, reply } => {
                let _ = reply.send(self.bridge.set_aging_time(aging).map_err(Into::into));
            }
            Command::SetKeyEpoch { network, epoch, reply } => {
                let _ = reply.send(self.set_key_epoch(network, epoch));
            }
            Command::InstallKey { network, epoch, key, reply } => {
                let _ = reply.send(self.install_key(network, epoch, key));
            }
            Command::KeyState { network, reply } => {
                let net = self.nets.get(network.index()).and_then(Option::as_ref);
                let keys = net.and_then(|n| n.crypto.as_deref()).ok_or(DatapathError::NotEncrypted(network));
                let _ = reply.send(keys.map(|k| KeyState {
                    store_keys: k.has_installed_keys(),
                    send_epoch: k.send_epoch(),
                    installed: k.installed_epochs(),
                }));
            }
            Command::SetDns { directory, reply } => {
                self.dns.directory = *directory;
                let _ = reply.send(());
            }
            Command::Publish { publications, reply } => {
                let _ = reply.send(self.publish(publications));
            }
            Command::Unpublish { keys, reply } => {
                self.unpublish(&keys);
                let _ = reply.send(());
            }
            Command::NatForget { network, mac, addresses, reply } => {
                let _ = reply.send(self.nat_forget(network, mac, &addresses));
            }
            Command::NatFlows { reply } => {
                let _ = reply.send(self.nat_flows());
            }
            Command::Capture { mut session, reply } => {
                // Of a port list, only the ports this worker holds (a
                // tunnel port asked of every worker is mirrored on some);
                // none: no session here.
                if session.retain_ports(|p| self.bridge.port_config(p).is_ok()) {
                    self.captures.add(*session);
                }
                let _ = reply.send(());
            }
            Command::SetImpair { id, settings, reply } => {
                let _ = reply.send(self.set_impairment(id, settings));
            }
            Command::SetTunnelImpair { remote, settings, reply } => {
                let _ = reply.send(self.set_tunnel_impairment(remote, settings));
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::AddReplica { id, fdb, owner, overlay, reply } => {
                let _ = reply.send(self.add_replica(id, fdb, owner, overlay));
            }
            Command::Barrier { reply } => {
                let _ = reply.send(());
            }
            Command::MirrorExisting { network, reply } => {
                self.mirror_existing(network);
                let _ = reply.send(());
            }
            Command::SpreadKeys { network, lane, host, reply } => {
                let _ = reply.send(self.spread_keys(network, lane, host));
            }
            Command::MirrorTunnel { network, port, remote } => self.mirror_tunnel(network, port, remote),
            Command::UnmirrorTunnel { port } => self.unmirror_tunnel(port),
            Command::Punted { frames, datagrams } => self.spread.receive(frames, datagrams),
            Command::FdbChanges { network, changes } => self.apply_fdb_changes(network, changes),
            Command::FdbSeen { network, seen } => {
                let now = self.clock.now();
                self.bridge.refresh(network, &seen, now);
            }
            Command::PeersSeen { peers } => {
                let now = self.clock.now();
                for (vni, remote) in peers {
                    self.peers.on_packet(vni, remote, now.0);
                }
            }
            Command::Shutdown => self.running = false,
        }
    }

    /// Adds a network with the table the control side made for it; a
    /// refused table goes back in the error, so that it is freed off the
    /// packet path too.
    #[expect(
        clippy::result_large_err,
        reason = "a control command, once per network; the table is moved back, not boxed"
    )]
    fn add_network(&mut self, spec: NetworkSpec, fdb: Fdb) -> Result<(), (Fdb, DatapathError)> {
        // The table was made from the spec (`NetworkSpec::new_fdb`); the
        // worker reads the limit from the table, never from the spec.
        debug_assert_eq!(fdb.limit(), spec.config.fdb_limit, "a network's table is made from its spec");
        let crypto = match self.network_crypto(&spec) {
            Ok(crypto) => crypto,
            Err(e) => return Err((fdb, e)),
        };
        let has_gateway = spec.gateway.is_some() || spec.gateway6.is_some();
        let gateway_port = has_gateway
            .then(|| (super::gateway_port(spec.id.0), PortConfig { mtu: spec.mtu, ..PortConfig::gateway(spec.id) }));
        self.bridge.add_network_with_port(spec.id, fdb, gateway_port).map_err(|(fdb, e)| (fdb, e.into()))?;
        let mut gateway = None;
        if let Some((port, _)) = gateway_port {
            let ipv4 = spec.gateway.map(|gw| (gw.address, gw.prefix_len));
            let ipv6 = spec.gateway6.map(|gw| Ipv6Config {
                address: gw.address,
                prefix_len: gw.prefix_len,
                default_route: gw.default_route,
            });
            let stack = Gateway::dual(ipv4, ipv6, spec.mtu, self.clock.now());
            if let Some(at) = stack.next_timer() {
                self.gateway_timer = self.gateway_timer.min(at);
            }
            *slot(&mut self.ports, port) = Some(PortIo::Gateway(Box::new(stack)));
            gateway = Some(port);
        }
        if let Some(vni) = spec.vni {
            self.vnis.insert(vni.get(), spec.id);
        }
        if self.nets.len() <= spec.id.index() {
            self.nets.resize_with(spec.id.index() + 1, || None);
        }
        self.nets[spec.id.index()] = Some(NetInfo {
            vni: spec.vni,
            crypto,
            key_base: spec.key_epoch.unwrap_or(0),
            key_rotation: spec.key_rotation,
            mtu: spec.mtu,
            egress: spec.egress,
            gateway,
            mss_clamp: spec.mss_clamp,
            dns: dns::Counters::default(),
            cluster: Default::default(),
            proxy: Default::default(),
            owner: None,
        });
        self.nat_network(spec.id, gateway);
        if spec.spread && self.spread.can_spread() {
            // Just added: it exists.
            let _ = self.bridge.replicate(spec.id);
            self.spread.own(spec.id);
        }
        Ok(())
    }

    /// Refuses a VNI already in use and makes an encrypted overlay's keys.
    fn network_crypto(&self, spec: &NetworkSpec) -> Result<Option<Box<NetworkCrypto>>, DatapathError> {
        if let Some(vni) = spec.vni
            && self.vnis.contains_key(&vni.get())
        {
            return Err(DatapathError::VniInUse(vni.get()));
        }
        let unix = self.clock.unix_secs();
        let crypto = match (spec.key_epoch, spec.vni) {
            (Some(_), Some(_)) if spec.store_keys && spec.key_rotation.is_some() => {
                return Err(DatapathError::StoreKeysRotation);
            }
            (Some(epoch), Some(vni)) if spec.store_keys => NetworkCrypto::with_installed_keys(vni, epoch),
            (Some(base), Some(vni)) => {
                let epoch = super::effective_epoch(base, spec.key_rotation, unix);
                let secret = self.secret.as_ref().ok_or(DatapathError::NoSecret)?;
                NetworkCrypto::new(secret, vni, epoch).map_err(DatapathError::Crypto)?
            }
            (Some(_), None) => return Err(DatapathError::NoSecret),
            (None, _) => return Ok(None),
        };
        Ok(Some(Box::new(crypto.with_cipher(spec.cipher).map_err(DatapathError::Crypto)?)))
    }

    fn set_key_epoch(&mut self, network: NetworkId, base: u32) -> Result<(), DatapathError> {
        let net = self.nets.get_mut(network.index()).and_then(Option::as_mut);
        let net = net.filter(|n| n.crypto.is_some()).ok_or(DatapathError::NotEncrypted(network))?;
        let unix = self.clock.unix_secs();
        let epoch = super::effective_epoch(base, net.key_rotation, unix);
        let keys = net.crypto.as_mut().ok_or(DatapathError::NotEncrypted(network))?;
        // The same epoch again (the handle repairing a replica that missed
        // it, or the cluster's key reconciler asking twice) is no rotation.
        let rotates = keys.send_epoch() != Some(epoch);
        keys.set_epoch(epoch).map_err(|e| match e {
            crypto::SealError::NoKey { epoch } => DatapathError::NoKey { network, epoch },
            e => DatapathError::Crypto(e),
        })?;
        net.key_base = base;
        if rotates && net.owner.is_none() {
            // A replica of a spread overlay is told after its owner, which
            // raised the event.
            let now = self.clock.now();
            self.bridge.events_mut().push(now, EventKind::KeyRotated { network, epoch, automatic: false });
        }
        Ok(())
    }

    fn install_key(&mut self, network: NetworkId, epoch: u32, key: crypto::NetworkKey) -> Result<(), DatapathError> {
        let net = self.nets.get_mut(network.index()).and_then(Option::as_mut);
        let keys = net.and_then(|n| n.crypto.as_deref_mut()).ok_or(DatapathError::NotEncrypted(network))?;
        if !keys.has_installed_keys() {
            return Err(DatapathError::KeysDerived(network));
        }
        if key.vni() != keys.vni() || key.epoch() != epoch {
            let (key_vni, key_epoch) = (key.vni().get(), key.epoch());
            return Err(DatapathError::KeyMismatch { network, epoch, key_vni, key_epoch });
        }
        keys.install(key).map_err(|e| match e {
            crypto::KeyError::Random => DatapathError::Crypto(crypto::SealError::Random),
            crypto::KeyError::Derived => DatapathError::KeysDerived(network),
            crypto::KeyError::VniMismatch { found, .. } => {
                DatapathError::KeyMismatch { network, epoch, key_vni: found.get(), key_epoch: epoch }
            }
        })?;
        Ok(())
    }

    /// Removes an endpoint-free network with its gateway and tunnel ports;
    /// its table goes back to the control side to be freed there.
    fn remove_network(&mut self, id: NetworkId) -> Result<Fdb, DatapathError> {
        let members: Vec<PortId> = self.bridge.network_ports(id)?.to_vec();
        let endpoints = members.iter().filter(|p| matches!(self.port_io(**p), Some(PortIo::Tap(_)))).count();
        // A replica goes when its owner did, queues and all: the owner
        // decided (a queue left here would keep the id from being reused).
        if endpoints > 0 && !self.bridge.is_replica(id) {
            return Err(BridgeError::NetworkInUse(id, endpoints).into());
        }
        for port in members {
            self.remove_port(port);
        }
        if self.bridge.is_replica(id) {
            // The port standing for the owner is no bridge port.
            self.ports.get_mut(super::gateway_port(id.0).index()).map(Option::take);
        }
        self.spread.disown(id);
        self.dns.forget_gateway(super::gateway_port(id.0));
        self.nat_forget_network(id);
        self.nat.translator.set_mesh(id, None);
        let table = self.bridge.remove_network(id)?;
        self.captures.network_removed(id);
        if let Some(info) = self.nets.get_mut(id.index()).and_then(Option::take)
            && let Some(vni) = info.vni
        {
            self.vnis.remove(&vni.get());
        }
        self.count_proxying();
        Ok(table)
    }

    fn port_io(&self, id: PortId) -> Option<&PortIo> {
        self.ports.get(id.index()).and_then(Option::as_ref)
    }

    fn add_tap(&mut self, id: PortId, tap: Tap, config: PortConfig) -> Result<(), (Tap, DatapathError)> {
        match self.add_device(id, &tap, config) {
            Ok(()) => {
                self.install_device(id, Box::new(tap));
                Ok(())
            }
            Err(e) => Err((tap, e)),
        }
    }

    /// Adds the port of a frame device to the bridge and, if it has a
    /// descriptor, to the event loop; [`Datapath::install_device`] then
    /// puts the device in place.
    pub(super) fn add_device(
        &mut self,
        id: PortId,
        device: &dyn PortDevice,
        config: PortConfig,
    ) -> Result<(), DatapathError> {
        self.bridge.add_port(id, config)?;
        if let Some(fd) = device.event_fd()
            && let Err(source) =
                self.poll.registry().register(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE)
        {
            let _ = self.bridge.remove_port(id);
            return Err(DatapathError::Register { port: id, source });
        }
        Ok(())
    }

    /// Puts the device of a port [`Datapath::add_device`] added in place.
    pub(super) fn install_device(&mut self, id: PortId, device: Box<dyn PortDevice>) {
        if device.wants_flush() && !self.flushed.contains(&id) {
            self.flushed.push(id);
        }
        // A new socket's kernel counters start at zero.
        if let Some(last) = self.kernel_drops.get_mut(id.index()) {
            *last = [0; 5];
        }
        *slot(&mut self.ports, id) = Some(PortIo::Tap(device));
        if self.queued.len() <= id.index() {
            self.queued.resize(id.index() + 1, false);
        }
        if self.link_down.len() <= id.index() {
            self.link_down.resize(id.index() + 1, false);
        }
        self.link_down[id.index()] = false;
        // Frames may already be queued: edge-triggered epoll would not say so.
        self.mark_ready(id);
    }

    pub(super) fn remove_port(&mut self, id: PortId) -> Option<Tap> {
        self.remove_port_as(id, false)
    }

    /// Removes port `id`; a tunnel port's removal is an event, `silent`
    /// when its learned peer aged out.
    pub(super) fn remove_port_as(&mut self, id: PortId, silent: bool) -> Option<Tap> {
        let network = self.bridge.port_config(id).map(|c| c.network);
        let _ = self.bridge.remove_port(id);
        self.forget_punted(id);
        if !self.captures.is_empty() {
            self.captures.port_removed(id);
        }
        self.impair.remove(id);
        // Its id may be reused before the control plane's next directory.
        self.dns.directory.forget_port(id.0);
        self.nat.forget_fragments_of(id);
        self.reported_gone.retain(|&p| p != id);
        let io = self.ports.get_mut(id.index()).and_then(Option::take)?;
        self.ready.retain(|&p| p != id);
        self.flushed.retain(|&p| p != id);
        if let Some(q) = self.queued.get_mut(id.index()) {
            *q = false;
        }
        match io {
            PortIo::Tap(device) => {
                if let Some(fd) = device.event_fd() {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                device.into_tap()
            }
            PortIo::Tunnel { remote, .. } => {
                self.peers.remove_handle(id.0);
                // A replica's port mirrored its owner's, which raised the event.
                if let Some(network) = network.ok().filter(|&n| !self.bridge.is_replica(n)) {
                    let now = self.clock.now();
                    let down = EventKind::TunnelDown { network, port: id, remote, silent };
                    self.bridge.events_mut().push(now, down);
                    self.mirror_to_replicas(network, id, None);
                }
                None
            }
            PortIo::Gateway(_) | PortIo::Owner(_) => None,
        }
    }

    fn add_peer(&mut self, network: NetworkId, remote: SocketAddr) -> Result<PortId, DatapathError> {
        self.hold_tunnel(network, remote, Owner::Peer)
    }

    /// Makes `owner` hold the tunnel port toward `remote` on overlay
    /// `network`: the existing one (a learned peer becomes static: it
    /// keeps its port and entries, and no longer ages), or a new one.
    pub(super) fn hold_tunnel(
        &mut self,
        network: NetworkId,
        remote: SocketAddr,
        owner: Owner,
    ) -> Result<PortId, DatapathError> {
        let Some(tunnel) = &self.tunnel else { return Err(DatapathError::NoVtep) };
        vxlan::check_peer(tunnel.config().local, remote)?;
        let info =
            self.nets.get(network.index()).and_then(Option::as_ref).ok_or(BridgeError::NoSuchNetwork(network))?;
        let (vni, mtu) = (info.vni.ok_or(BridgeError::NoSuchNetwork(network))?, info.mtu);
        if let Some(existing) = self.peers.lookup(vni, remote) {
            let Some(Some(PortIo::Tunnel { owners, .. })) = self.ports.get_mut(existing as usize) else {
                return Err(BridgeError::NoSuchPort(PortId(existing)).into());
            };
            if owners.learned() {
                self.peers.remove(vni, remote);
                self.peers.add_static(vni, remote, existing)?;
            }
            owner.hold(owners);
            self.peer_ports.insert(remote.ip(), remote.port());
            return Ok(PortId(existing));
        }
        let mut owners = TunnelOwners::LEARNED;
        owner.hold(&mut owners);
        let port =
            add_tunnel_port(&mut self.bridge, &mut self.ports, self.tunnel_slots, network, mtu, vni, remote, owners)?;
        if let Err(e) = self.peers.add_static(vni, remote, port.0) {
            let _ = self.bridge.remove_port(port);
            self.ports[port.index()] = None;
            return Err(e.into());
        }
        self.impair_new_tunnel_port(port, remote);
        let now = self.clock.now();
        self.bridge.events_mut().push(now, EventKind::TunnelUp { network, port, remote, learned: false });
        self.peer_ports.insert(remote.ip(), remote.port());
        self.mirror_to_replicas(network, port, Some(remote));
        Ok(port)
    }

    /// Removes a static (or learned) peer; returns whether it was there. A
    /// port the cluster view holds too stays, without the static FDB
    /// entries the operator pointed at it; one that only the cluster view
    /// holds is no static peer.
    fn remove_peer(&mut self, network: NetworkId, remote: SocketAddr) -> bool {
        let Some(vni) = self.nets.get(network.index()).and_then(Option::as_ref).and_then(|n| n.vni) else {
            return false;
        };
        let Some(handle) = self.peers.lookup(vni, remote) else { return false };
        let port = PortId(handle);
        let Some(Some(PortIo::Tunnel { owners, .. })) = self.ports.get_mut(port.index()) else { return false };
        if owners.cluster {
            if !owners.peer {
                return false;
            }
            owners.peer = false;
            self.forget_operator_entries(network, port);
            return true;
        }
        self.remove_port(port);
        true
    }

    /// Releases the cluster view's hold of the tunnel port toward `remote`
    /// on the network of `vni`: the port goes unless a static peer holds
    /// it too.
    pub(super) fn release_cluster_tunnel(&mut self, vni: vxlan::Vni, remote: SocketAddr) {
        let Some(handle) = self.peers.lookup(vni, remote) else { return };
        let port = PortId(handle);
        let Some(Some(PortIo::Tunnel { owners, .. })) = self.ports.get_mut(port.index()) else { return };
        owners.cluster = false;
        if owners.learned() {
            self.remove_port(port);
        }
    }

    fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let mut snapshot = Snapshot::default();
        for network in self.bridge.network_ids() {
            // A replica's table and learning are its owner's, listed there.
            if self.bridge.is_replica(network) {
                continue;
            }
            if let Ok(mut records) = self.bridge.fdb_records(network, now) {
                if let Some(net) = self.nets.get(network.index()).and_then(Option::as_ref) {
                    for r in records.iter_mut().filter(|r| r.is_static) {
                        r.cluster = net.cluster.installed(r.mac, r.port);
                    }
                    snapshot.proxy.push((network, net.proxy));
                }
                snapshot.fdb.extend(records);
            }
            if let Ok(learning) = self.bridge.learning_counters(network) {
                snapshot.learning.push((network, learning));
            }
        }
        for (index, io) in self.ports.iter().enumerate() {
            let id = PortId(index as u32);
            let Ok(config) = self.bridge.port_config(id) else { continue };
            if let Ok(counters) = self.bridge.port_counters(id) {
                snapshot.ports.push((id, config.network, counters));
            }
            // A replica's tunnel ports mirror its owner's, listed there.
            if let Some(PortIo::Tunnel { remote, owners, .. }) = io
                && !self.bridge.is_replica(config.network)
            {
                snapshot.tunnels.push(TunnelPortInfo {
                    port: id,
                    network: config.network,
                    remote: *remote,
                    learned: owners.learned(),
                    cluster: owners.cluster,
                });
            }
        }
        snapshot.vtep = self.tunnel.as_ref().map(|t| t.counters());
        snapshot.nat = self.nat.translator.counters();
        self.impair_snapshot(&mut snapshot);
        snapshot.busy = self.busy;
        snapshot.wakeups = self.wakeups;
        snapshot.spread = super::handle::SpreadCounters {
            replica_rx: self.replica_rx(),
            punted: self.spread.punted,
            taken: self.spread.taken,
            placed_out: self.spread.placed_out,
            placed_in: self.spread.placed_in,
        };
        for (index, net) in self.nets.iter().enumerate() {
            let Some(net) = net else { continue };
            let Some(Some(PortIo::Gateway(gw))) = net.gateway.and_then(|g| self.ports.get(g.index())) else { continue };
            let mut counters = net.dns;
            let (closed_idle, oversize) = gw.dns_tcp_counters();
            counters.tcp_closed_idle += closed_idle;
            counters.malformed += oversize;
            snapshot.dns.push((NetworkId(index as u32), counters));
        }
        snapshot
    }
}
