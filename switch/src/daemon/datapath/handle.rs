//! The control plane's end of the datapath: commands, replies, snapshots and
//! how datapath port ids are formed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use crypto::ClusterSecret;
use mio::{Poll, Waker};
use vxlan::Vni;

use super::super::dns_forward::ForwardThread;
use super::super::events::{DatapathEventsRx, datapath_channel};
use super::super::tunnel::{TunnelCounters, VtepConfig};
use super::{Datapath, WAKER};
use crate::bridge::{BridgeError, FdbRecord, NetworkConfig};
use crate::counters::{LearningCounters, PortCounters};
use crate::impair::{ImpairCounters, ImpairSettings};
use crate::nat;
use crate::port::{NetworkId, PortConfig, PortId};
use crate::sys::tap::Tap;
use crate::wire::MacAddr;

/// How long a control request waits for the datapath before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a datapath port id stands for. Ids interleave three kinds so each
/// kind's numbers stay dense: endpoint `i` is `3i`, network `i`'s gateway is
/// `3i + 1`, tunnel port `i` is `3i + 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// A TAP endpoint, by the model's port index.
    Endpoint(u32),
    /// A network's gateway, by network index.
    Gateway(u32),
    /// A tunnel to one peer on one network, by tunnel slot.
    Tunnel(u32),
}

impl PortRole {
    /// The role of `port`.
    pub fn of(port: PortId) -> PortRole {
        let index = port.0 / 3;
        match port.0 % 3 {
            0 => PortRole::Endpoint(index),
            1 => PortRole::Gateway(index),
            _ => PortRole::Tunnel(index),
        }
    }
}

/// The datapath's port id of endpoint number `port_index`.
pub fn endpoint_port(port_index: u32) -> PortId {
    PortId(port_index * 3)
}

/// The datapath's port id of network number `network_index`'s gateway.
pub fn gateway_port(network_index: u32) -> PortId {
    PortId(network_index * 3 + 1)
}

/// The datapath's port id of tunnel slot `slot`.
pub(super) fn tunnel_port(slot: u32) -> PortId {
    PortId(slot * 3 + 2)
}

/// The gateway of a network, as the datapath needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The gateway's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
}

/// The IPv6 gateway of a network, as the datapath needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway6Spec {
    /// The gateway's IPv6 address.
    pub address: Ipv6Addr,
    /// The IPv6 subnet's prefix length.
    pub prefix_len: u8,
    /// The network routes out (not `--internal`): router advertisements
    /// carry a router lifetime above zero only then.
    pub default_route: bool,
}

/// A network as the datapath needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Its id (the model's network index).
    pub id: NetworkId,
    /// Bridge settings.
    pub config: NetworkConfig,
    /// Endpoint MTU.
    pub mtu: u32,
    /// The userspace gateway's IPv4 side, if the network has IPv4 (`None`
    /// on IPv6-only networks).
    pub gateway: Option<GatewaySpec>,
    /// The gateway's IPv6 side, if the network has IPv6.
    pub gateway6: Option<Gateway6Spec>,
    /// The VNI of an overlay network.
    pub vni: Option<Vni>,
    /// Clamp the MSS of TCP SYNs to fit the tunnel (`-o mss-clamp`).
    pub mss_clamp: bool,
    /// The key epoch of an encrypted overlay (`-o encrypted`).
    pub key_epoch: Option<u32>,
    /// The encrypted overlay's keys come from the cluster store
    /// ([`DatapathHandle::install_key`]) instead of the cluster secret: it
    /// needs no secret, sends nothing until the key of its send epoch is
    /// installed, and accepts only epochs whose keys are installed.
    /// `key_epoch` is its initial send epoch; `key_rotation` must be `None`
    /// (the store's rotation coordinator moves the epoch, through
    /// [`DatapathHandle::set_key_epoch`]).
    pub store_keys: bool,
    /// Sandboxes may reach addresses outside the switch's networks through
    /// the gateway (egress through the daemon's own sockets); when false
    /// the gateway answers ICMP network unreachable.
    pub egress: bool,
    /// Automatic key rotation period of an encrypted overlay
    /// (`-o key-rotation=SECONDS`): the epoch in use is `key_epoch` plus the
    /// number of whole periods since the Unix epoch, so hosts with
    /// synchronised clocks move together without talking to each other.
    pub key_rotation: Option<std::num::NonZeroU64>,
}

/// Where an encrypted overlay's keys stand in the datapath: what the
/// cluster key coordinator (`cluster::keys::plan`) needs of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// Keys come from the store (`store_keys`), not the cluster secret.
    pub store_keys: bool,
    /// The epoch sent with, if the network can send (with store keys: once
    /// its send epoch's key is installed).
    pub send_epoch: Option<u32>,
    /// The epochs whose keys are installed, lowest first (empty with keys
    /// derived from the secret). Keys older than the previous epoch are
    /// forgotten as the send epoch moves on.
    pub installed: Vec<u32>,
}

/// Errors the control plane sees from the datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The bridge refused the change.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// Registering a port's descriptor with epoll failed.
    #[error("cannot register port {port} with the event loop: {source}")]
    Register {
        /// The port.
        port: PortId,
        /// The OS error.
        source: io::Error,
    },
    /// Overlay traffic needs a VTEP.
    #[error("overlay peers need a VTEP: start vswitchd with --vtep ADDR[:PORT]")]
    NoVtep,
    /// The VNI is already served by another network.
    #[error("VNI {0} is already used by another network")]
    VniInUse(u32),
    /// The peer table refused the peer.
    #[error("cannot add peer: {0}")]
    Peer(#[from] vxlan::PeerError),
    /// The peer cannot be reached over this VTEP's underlay (another address
    /// family, a link-local address).
    #[error("cannot add peer: {0}")]
    Underlay(#[from] vxlan::UnderlayError),
    /// Encrypted overlays need the cluster secret.
    #[error("encrypted overlays need a cluster secret: start vswitchd with --secret-file PATH")]
    NoSecret,
    /// The network is not an encrypted overlay.
    #[error("network {0} is not encrypted")]
    NotEncrypted(NetworkId),
    /// Keys can be installed only in a network created with `store_keys`.
    #[error("network {0} derives its keys from the cluster secret; keys from the store cannot be installed in it")]
    KeysDerived(NetworkId),
    /// A network whose keys come from the store rotates through the store,
    /// not by the clock.
    #[error("a network whose keys come from the cluster store cannot have a key rotation period")]
    StoreKeysRotation,
    /// The key given is not for this network or epoch.
    #[error("the key is for VNI {key_vni} epoch {key_epoch}, not network {network}'s VNI at epoch {epoch}")]
    KeyMismatch {
        /// The network.
        network: NetworkId,
        /// The epoch asked for.
        epoch: u32,
        /// The key's VNI.
        key_vni: u32,
        /// The key's epoch.
        key_epoch: u32,
    },
    /// The epoch to send with has no installed key.
    #[error("network {network} has no key installed for epoch {epoch}: install it first")]
    NoKey {
        /// The network.
        network: NetworkId,
        /// The epoch asked for.
        epoch: u32,
    },
    /// Key setup failed.
    #[error("key setup failed: {0}")]
    Crypto(crypto::SealError),
    /// A published port's listening socket could not be opened.
    #[error("cannot listen on {proto} {addr}: {source}")]
    Listen {
        /// TCP or UDP.
        proto: nat::Proto,
        /// The host address and port.
        addr: SocketAddr,
        /// The OS error (address in use, permission denied for a
        /// privileged port, address not available).
        source: io::Error,
    },
    /// The network is not an overlay (it has no VNI): no cluster view.
    #[error("network {0} is not an overlay")]
    NotOverlay(NetworkId),
    /// The network has no gateway (no translator): no mesh station.
    #[error("network {0} has no gateway")]
    NoGateway(NetworkId),
    /// A mesh station's MAC must be a unicast station address.
    #[error("mesh MAC {0} is not a unicast station address")]
    BadMeshMac(MacAddr),
    /// Only TAP ports (endpoints) can be impaired.
    #[error("port {0} cannot be impaired: only endpoint (TAP) ports can")]
    NotImpairable(PortId),
    /// The datapath thread did not answer in time or is gone.
    #[error("the datapath thread is not responding")]
    Unresponsive,
}

/// A reply channel for one command.
pub(super) type Reply<T> = Sender<T>;

/// Everything the control plane can ask of the datapath.
pub(super) enum Command {
    AddNetwork {
        spec: NetworkSpec,
        reply: Reply<Result<(), DatapathError>>,
    },
    InstallKey {
        network: NetworkId,
        epoch: u32,
        key: crypto::NetworkKey,
        reply: Reply<Result<(), DatapathError>>,
    },
    KeyState {
        network: NetworkId,
        reply: Reply<Result<KeyState, DatapathError>>,
    },
    RemoveNetwork {
        id: NetworkId,
        reply: Reply<Result<(), DatapathError>>,
    },
    AddTap {
        id: PortId,
        tap: Tap,
        config: PortConfig,
        reply: Reply<Result<(), (Tap, DatapathError)>>,
    },
    AddDevice {
        id: PortId,
        device: Box<dyn super::PortDevice>,
        config: PortConfig,
        reply: Reply<Result<(), DatapathError>>,
    },
    RemovePort {
        id: PortId,
        reply: Reply<Option<Tap>>,
    },
    AddPeer {
        network: NetworkId,
        remote: SocketAddr,
        reply: Reply<Result<PortId, DatapathError>>,
    },
    RemovePeer {
        network: NetworkId,
        remote: SocketAddr,
        reply: Reply<bool>,
    },
    SetMesh {
        network: NetworkId,
        mesh: Option<nat::Mesh>,
        reply: Reply<Result<(), DatapathError>>,
    },
    SetClusterView {
        network: NetworkId,
        peers: Vec<SocketAddr>,
        endpoints: Vec<RemoteEndpoint>,
        reply: Reply<Result<(), DatapathError>>,
    },
    AddStatic {
        network: NetworkId,
        mac: MacAddr,
        port: PortId,
        reply: Reply<Result<(), DatapathError>>,
    },
    RemoveEntry {
        network: NetworkId,
        mac: MacAddr,
        reply: Reply<Result<bool, DatapathError>>,
    },
    Flush {
        network: Option<NetworkId>,
        reply: Reply<usize>,
    },
    SetAging {
        aging: Duration,
        reply: Reply<Result<(), DatapathError>>,
    },
    SetKeyEpoch {
        network: NetworkId,
        epoch: u32,
        reply: Reply<Result<(), DatapathError>>,
    },
    SetDns {
        directory: Box<dns::Directory>,
        reply: Reply<()>,
    },
    Publish {
        publications: Vec<nat::Publication>,
        reply: Reply<Result<(), DatapathError>>,
    },
    Unpublish {
        keys: Vec<(nat::Proto, SocketAddr)>,
        reply: Reply<()>,
    },
    NatFlows {
        reply: Reply<Vec<nat::FlowInfo>>,
    },
    NatForget {
        network: NetworkId,
        address: IpAddr,
        reply: Reply<usize>,
    },
    SetImpair {
        id: PortId,
        settings: Option<ImpairSettings>,
        reply: Reply<Result<(), DatapathError>>,
    },
    Snapshot {
        reply: Reply<Snapshot>,
    },
    Capture {
        session: Box<crate::daemon::capture::Session>,
        reply: Reply<()>,
    },
    Shutdown,
}

/// A tunnel port as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelPortInfo {
    /// Its port id.
    pub port: PortId,
    /// Its network.
    pub network: NetworkId,
    /// The remote VTEP.
    pub remote: SocketAddr,
    /// Learned from traffic (`--learn-peers`) rather than configured.
    pub learned: bool,
    /// The cluster view wants it (a peer of the network in the cluster
    /// store, or the VTEP of a remote endpoint); a static peer of the same
    /// address may want it too.
    pub cluster: bool,
}

/// An endpoint on another node of the cluster, as the datapath needs it:
/// its MAC lives behind the tunnel to `vtep`, and the switch answers ARP
/// and neighbour solicitations for its addresses with that MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteEndpoint {
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its IPv4 address, if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address, if it has one.
    pub ipv6: Option<Ipv6Addr>,
    /// The VTEP of the node it lives on.
    pub vtep: SocketAddr,
}

/// Counters and tables copied out of the datapath for the control plane.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every FDB entry of every network.
    pub fdb: Vec<FdbRecord>,
    /// Every port with its network and counters.
    pub ports: Vec<(PortId, NetworkId, PortCounters)>,
    /// Learning counters per network.
    pub learning: Vec<(NetworkId, LearningCounters)>,
    /// Every tunnel port.
    pub tunnels: Vec<TunnelPortInfo>,
    /// The underlay endpoint's totals, when there is one.
    pub vtep: Option<TunnelCounters>,
    /// The DNS server counters of every network with a gateway.
    pub dns: Vec<(NetworkId, dns::Counters)>,
    /// The L4 translator's counters per network (egress and published ports).
    pub nat: Vec<(NetworkId, nat::Counters)>,
    /// Time the datapath thread spent working (between waking up and
    /// waiting again).
    pub busy: Duration,
    /// Times the datapath thread woke up.
    pub wakeups: u64,
    /// Every port that is or was impaired, with its settings and counters.
    pub impair: Vec<ImpairSnapshot>,
    /// The proxy ARP/ND answers of every overlay network.
    pub proxy: Vec<(NetworkId, crate::proxy::ProxyCounters)>,
}

/// One port's link impairment in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpairSnapshot {
    /// The port.
    pub port: PortId,
    /// The settings in force, `None` once cleared.
    pub settings: Option<ctl::Impairment>,
    /// Its counters since the port was first impaired.
    pub counters: ImpairCounters,
}

/// The control plane's end of the datapath.
#[derive(Debug)]
pub struct DatapathHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    gone: crossbeam_channel::Receiver<PortId>,
    events: DatapathEventsRx,
}

impl DatapathHandle {
    /// Opens the underlay sockets (if a VTEP is configured) and starts the
    /// datapath thread, which keeps the cluster secret (if any) for the keys
    /// of encrypted overlays, and its DNS forwarding thread, which asks
    /// `dns_upstreams` for names the switch does not own (unless a sandbox
    /// has upstreams of its own). `nat_limits` bound the L4 translator.
    pub fn spawn(
        vtep: Option<VtepConfig>,
        secret: Option<ClusterSecret>,
        dns_upstreams: Vec<SocketAddr>,
        nat_limits: nat::Limits,
    ) -> io::Result<DatapathHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, inbox) = crossbeam_channel::unbounded();
        let (done, results) = crossbeam_channel::unbounded();
        let forward = ForwardThread::spawn(done, waker.clone())?;
        let dns = super::dns::DnsService::new(dns_upstreams, forward, results);
        let (gone_tx, gone) = crossbeam_channel::unbounded();
        let (events_tx, events) = datapath_channel();
        let reports = super::Reports { gone: gone_tx, events: events_tx };
        let datapath = Datapath::new(poll, inbox, vtep, secret, dns, reports, nat_limits)?;
        let thread = std::thread::Builder::new().name("datapath".into()).spawn(move || datapath.run())?;
        Ok(DatapathHandle { commands, waker, thread: Some(thread), gone, events })
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DatapathError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands.send(make(reply)).map_err(|_| DatapathError::Unresponsive)?;
        self.waker.wake().map_err(|_| DatapathError::Unresponsive)?;
        answer.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => DatapathError::Unresponsive,
        })
    }

    /// Creates a network (bridge domain), with its userspace gateway if given.
    pub fn add_network(&self, spec: NetworkSpec) -> Result<(), DatapathError> {
        self.call(|reply| Command::AddNetwork { spec, reply })?
    }

    /// Removes a network with its gateway and tunnel ports; refused while
    /// endpoints remain.
    pub fn remove_network(&self, id: NetworkId) -> Result<(), DatapathError> {
        self.call(|reply| Command::RemoveNetwork { id, reply })?
    }

    /// Adds a TAP port. On failure the TAP is handed back.
    pub fn add_tap(&self, id: PortId, tap: Tap, config: PortConfig) -> Result<(), (Option<Tap>, DatapathError)> {
        match self.call(|reply| Command::AddTap { id, tap, config, reply }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err((tap, e))) => Err((Some(tap), e)),
            Err(e) => Err((None, e)),
        }
    }

    /// Adds a port backed by another frame device (an AF_XDP socket, a raw
    /// uplink socket); on error the device is dropped (closed).
    pub(crate) fn add_device(
        &self,
        id: PortId,
        device: Box<dyn super::PortDevice>,
        config: PortConfig,
    ) -> Result<(), DatapathError> {
        self.call(|reply| Command::AddDevice { id, device, config, reply })?
    }

    /// Removes a port (and its FDB entries); returns its TAP, if it had one.
    pub fn remove_port(&self, id: PortId) -> Result<Option<Tap>, DatapathError> {
        self.call(|reply| Command::RemovePort { id, reply })
    }

    /// Adds a static peer to an overlay network: a tunnel port toward it.
    pub fn add_peer(&self, network: NetworkId, remote: SocketAddr) -> Result<PortId, DatapathError> {
        self.call(|reply| Command::AddPeer { network, remote, reply })?
    }

    /// Removes a peer from an overlay network; returns whether it was there.
    pub fn remove_peer(&self, network: NetworkId, remote: SocketAddr) -> Result<bool, DatapathError> {
        self.call(|reply| Command::RemovePeer { network, remote, reply })
    }

    /// Replaces what the cluster wants on overlay `network` (level-triggered:
    /// the datapath diffs against the previous view): tunnel ports toward
    /// `peers` (the flood list), coexisting with static `peer add` peers
    /// and learned ones (a port stays while anyone wants it); a static FDB
    /// entry for every remote MAC toward the tunnel port of its VTEP (made
    /// if the VTEP is not among `peers`); and the proxy ARP/ND table (ARP
    /// requests and neighbour solicitations from local ports for a remote
    /// endpoint's address are answered by the switch, not flooded). An
    /// empty view removes all of it. Not persisted: the daemon re-derives it
    /// from the store. A peer or endpoint the VTEP cannot reach (another
    /// address family, the VTEP's own address) or an endpoint with a group
    /// MAC is left out and logged; the rest is applied.
    pub fn set_cluster_view(
        &self,
        network: NetworkId,
        peers: Vec<SocketAddr>,
        endpoints: Vec<RemoteEndpoint>,
    ) -> Result<(), DatapathError> {
        self.call(|reply| Command::SetClusterView { network, peers, endpoints, reply })?
    }

    /// Sets (or, with `None`, removes) this node's mesh station on an
    /// overlay network: the address and MAC ingress flows to other nodes'
    /// replicas come from, and that their answers come back to (see
    /// [`nat::Mesh`]). Not persisted: the daemon re-derives it from the
    /// cluster store.
    pub fn set_mesh(&self, network: NetworkId, mesh: Option<nat::Mesh>) -> Result<(), DatapathError> {
        self.call(|reply| Command::SetMesh { network, mesh, reply })?
    }

    /// Adds a static FDB entry.
    pub fn add_static(&self, network: NetworkId, mac: MacAddr, port: PortId) -> Result<(), DatapathError> {
        self.call(|reply| Command::AddStatic { network, mac, port, reply })?
    }

    /// Removes an FDB entry; returns whether it existed.
    pub fn remove_entry(&self, network: NetworkId, mac: MacAddr) -> Result<bool, DatapathError> {
        self.call(|reply| Command::RemoveEntry { network, mac, reply })?
    }

    /// Flushes learned entries of one network, or of all; returns how many.
    pub fn flush(&self, network: Option<NetworkId>) -> Result<usize, DatapathError> {
        self.call(|reply| Command::Flush { network, reply })
    }

    /// Sets the FDB aging time.
    pub fn set_aging(&self, aging: Duration) -> Result<(), DatapathError> {
        self.call(|reply| Command::SetAging { aging, reply })?
    }

    /// Moves an encrypted overlay to key epoch `epoch`: it seals with the new
    /// epoch at once and opens the epochs next to it. On a network whose keys
    /// come from the store (`store_keys`) this is the switch of the send
    /// epoch, refused ([`DatapathError::NoKey`], nothing changes) unless
    /// `epoch`'s key was installed ([`DatapathHandle::install_key`]).
    pub fn set_key_epoch(&self, network: NetworkId, epoch: u32) -> Result<(), DatapathError> {
        self.call(|reply| Command::SetKeyEpoch { network, epoch, reply })?
    }

    /// Where an encrypted overlay's keys stand: its send epoch and the
    /// epochs installed. [`DatapathError::NotEncrypted`] for other networks.
    pub fn key_state(&self, network: NetworkId) -> Result<KeyState, DatapathError> {
        self.call(|reply| Command::KeyState { network, reply })?
    }

    /// Installs the key of `epoch` in an encrypted overlay created with
    /// `store_keys`: from now on its packets of that epoch are accepted
    /// whenever it is the previous, current or next epoch. It is sent with
    /// only once the network's send epoch is `epoch`
    /// ([`DatapathHandle::set_key_epoch`]; at once if it already is).
    /// Installing the same key again changes nothing. Refused for other
    /// networks and for a key of another VNI or epoch. Keys older than the
    /// previous epoch are forgotten as the send epoch moves on. Not
    /// persisted: the daemon re-installs them from the store.
    pub fn install_key(&self, network: NetworkId, epoch: u32, key: crypto::NetworkKey) -> Result<(), DatapathError> {
        self.call(|reply| Command::InstallKey { network, epoch, key, reply })?
    }

    /// Replaces the embedded DNS's names and askers; queries after this
    /// returns are answered from `directory`.
    pub fn set_dns(&self, directory: dns::Directory) -> Result<(), DatapathError> {
        let directory = Box::new(directory);
        self.call(|reply| Command::SetDns { directory, reply })
    }

    /// Opens (or updates) published ports, all or nothing: a listener is
    /// bound for every publication not yet open, and one already open gets
    /// the new backends (connections in progress keep theirs). When one
    /// address cannot be bound, none of the new listeners stays open.
    pub fn publish(&self, publications: Vec<nat::Publication>) -> Result<(), DatapathError> {
        self.call(|reply| Command::Publish { publications, reply })?
    }

    /// Closes published ports; flows already carried through them go on
    /// until they end.
    pub fn unpublish(&self, keys: Vec<(nat::Proto, SocketAddr)>) -> Result<(), DatapathError> {
        self.call(|reply| Command::Unpublish { keys, reply })
    }

    /// Ends every translated flow of the sandbox at `address` on `network`
    /// (its endpoint is going): host connections are reset. Returns how
    /// many flows ended.
    pub fn nat_forget(&self, network: NetworkId, address: IpAddr) -> Result<usize, DatapathError> {
        self.call(|reply| Command::NatForget { network, address, reply })
    }

    /// The translator's live flows (`nat ls`).
    pub fn nat_flows(&self) -> Result<Vec<nat::FlowInfo>, DatapathError> {
        self.call(|reply| Command::NatFlows { reply })
    }

    /// TAP ports whose device vanished (the sandbox's namespace ended, or
    /// the interface was deleted), as the datapath notices them.
    pub fn gone_ports(&self) -> crossbeam_channel::Receiver<PortId> {
        self.gone.clone()
    }

    /// Starts a packet capture: matching frames go to its ring from the
    /// next batch on.
    pub fn capture(&self, session: crate::daemon::capture::Session) -> Result<(), DatapathError> {
        let session = Box::new(session);
        self.call(|reply| Command::Capture { session, reply })
    }

    /// Impairs the egress of TAP port `id` with `settings`, or clears it
    /// (`None`); frames queued under earlier settings are sent at once.
    pub fn set_impairment(&self, id: PortId, settings: Option<ImpairSettings>) -> Result<(), DatapathError> {
        self.call(|reply| Command::SetImpair { id, settings, reply })?
    }

    /// The datapath's events, in batches (for the event hub).
    pub fn events(&self) -> DatapathEventsRx {
        self.events.clone()
    }

    /// Copies the tables and counters out.
    pub fn snapshot(&self) -> Result<Snapshot, DatapathError> {
        self.call(|reply| Command::Snapshot { reply })
    }
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
