//! The control plane's end of the datapath: commands, replies, snapshots and
//! how datapath port ids are formed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use crypto::ClusterSecret;
use mio::{Poll, Waker};
use vxlan::Vni;

use super::super::dns_forward::ForwardThread;
use super::super::events::{DatapathEventsRx, datapath_channel};
use super::super::placement::{self, Bindings, CpuAffinity, IdlePoll, PlacementError, PlacementThread};
use super::super::tunnel::{Tunnel, TunnelCounters, VtepConfig};
use super::{Datapath, WAKER};
use crate::bridge::{BridgeError, FdbRecord, NetworkConfig};
use crate::counters::{LearningCounters, PortCounters};
use crate::fdb::Fdb;
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
    /// The cipher of an encrypted overlay (`-o cipher`).
    pub cipher: crypto::Cipher,
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
    /// Spread the network over every worker (`-o spread`, see
    /// [`crate::replica`]): its endpoint TAPs get one queue per worker,
    /// and the workers other than its owner hold replicas of it (of an
    /// overlay with its tunnel ports, its packets spread over every
    /// worker's socket). Ignored with one worker, for encrypted overlays
    /// with keys from the store, or without a steering program (see
    /// `DatapathHandle::can_spread`).
    pub spread: bool,
}

impl NetworkSpec {
    /// A new, empty forwarding table of this network's limit. Made by the
    /// control side and sent with [`Command::AddNetwork`]: a large table is
    /// megabytes to map and fill, work the packet path should not wait on.
    pub(super) fn new_fdb(&self) -> Fdb {
        Fdb::new(self.config.fdb_limit)
    }
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
    /// A port of a network spread over workers is served by every worker,
    /// and an impairment's queue and rates belong to one.
    #[error("port {0} is on a network spread over workers (-o spread): it cannot be impaired")]
    SpreadImpair(PortId),
    /// A capture's filter could not be compiled again for another worker.
    #[error(transparent)]
    Filter(#[from] crate::daemon::capture::FilterError),
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
        /// Its forwarding table, made on the caller's thread (and handed back
        /// if refused, to be freed there).
        fdb: Fdb,
        reply: Reply<Result<(), (Fdb, DatapathError)>>,
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
        /// The removed network's table, freed by the caller.
        reply: Reply<Result<Fdb, DatapathError>>,
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
    /// Whether port `id` was reported gone and not removed since.
    PortReportedGone {
        id: PortId,
        reply: Reply<bool>,
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
        mac: MacAddr,
        addresses: Vec<IpAddr>,
        reply: Reply<usize>,
    },
    SetImpair {
        id: PortId,
        settings: Option<ImpairSettings>,
        reply: Reply<Result<(), DatapathError>>,
    },
    SetTunnelImpair {
        remote: SocketAddr,
        settings: Option<ImpairSettings>,
        reply: Reply<usize>,
    },
    Snapshot {
        reply: Reply<Snapshot>,
    },
    /// Hold network `id` as a replica of worker `owner`'s.
    AddReplica {
        id: NetworkId,
        fdb: Fdb,
        owner: usize,
        /// A spread overlay's VNI, MTU, MSS clamping and keys.
        overlay: Option<super::spread::ReplicaOverlay>,
        reply: Reply<Result<(), (Fdb, DatapathError)>>,
    },
    /// Replies once the commands sent to the worker before it are handled
    /// (from the control side).
    Barrier {
        reply: Reply<()>,
    },
    /// The owner of a spread overlay sends its existing tunnel ports to the
    /// replicas again (from the control side, once they are added).
    MirrorExisting {
        network: NetworkId,
        reply: Reply<()>,
    },
    /// The owner of an encrypted spread overlay seals in its lane (from the
    /// control side, before the replicas are added).
    SpreadKeys {
        network: NetworkId,
        lane: crypto::SessionLane,
        host: Arc<crypto::HostSessions>,
        reply: Reply<Result<(), DatapathError>>,
    },
    /// A tunnel port the owner of a spread overlay made (from the owner,
    /// no reply): the replica makes the same, under the same id.
    MirrorTunnel {
        network: NetworkId,
        port: PortId,
        remote: SocketAddr,
    },
    /// A tunnel port of a spread overlay the owner removed (from the
    /// owner, no reply).
    UnmirrorTunnel {
        port: PortId,
    },
    /// Frames a replica hands to the owner of their network, and
    /// datagrams of spread overlays from VTEPs it has no tunnel port for
    /// (from another worker, no reply).
    Punted {
        frames: Vec<super::spread::Punted>,
        datagrams: Vec<super::spread::HandedDatagram>,
    },
    /// Stations a replica forwarded for lately (to the owner, no reply).
    FdbSeen {
        network: NetworkId,
        seen: Vec<(MacAddr, PortId)>,
    },
    /// Peers of spread overlays a replica received packets from lately (to
    /// the owner, no reply): a learned peer whose packets the kernel hashes
    /// to the replicas must not age out on its owner.
    PeersSeen {
        peers: Vec<(vxlan::Vni, std::net::SocketAddr)>,
    },
    /// What changed in a spread network's table (from its owner, no reply).
    FdbChanges {
        network: NetworkId,
        changes: crate::replica::FdbChanges,
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
    /// Frames of spread networks this worker forwarded as a replica, handed
    /// to owners, and took from replicas.
    pub spread: SpreadCounters,
    /// Each worker's share (busy time, wake-ups, underlay totals, networks),
    /// in worker order; filled by the handle when it merges the workers'.
    pub workers: Vec<WorkerStats>,
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

/// A worker's part in spread networks (see [`crate::replica`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpreadCounters {
    /// Frames it forwarded itself as a replica (received on its queues of
    /// spread networks' ports and not handed on).
    pub replica_rx: u64,
    /// Frames it handed to their network's owner worker.
    pub punted: u64,
    /// Frames replicas handed to it, as an owner.
    pub taken: u64,
    /// Connections it placed on another worker (their opening handed over).
    pub placed_out: u64,
    /// Connections other workers placed on it.
    pub placed_in: u64,
}

/// One worker's share of a [`Snapshot`] (`stats --json` shows them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Time the worker's thread spent working.
    pub busy: Duration,
    /// Times it woke up.
    pub wakeups: u64,
    /// Its underlay socket's totals, with a VTEP.
    pub vtep: Option<TunnelCounters>,
    /// The networks it owns.
    pub networks: Vec<NetworkId>,
    /// The CPU its thread is bound to (`--cpu-affinity`), if it is.
    pub cpu: Option<u32>,
    /// Its part in spread networks.
    pub spread: SpreadCounters,
}

/// One datapath worker thread as the handle drives it.
#[derive(Debug)]
struct Worker {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    /// The thread's kernel ID, for CPU placement.
    tid: u32,
    /// Its time in empty busy polls, for CPU placement.
    idle_poll: IdlePoll,
}

/// Which worker owns what: filled as networks and ports are added, so each
/// command goes to the worker that owns its network or port.
#[derive(Debug, Default)]
struct Routes {
    workers: usize,
    /// Network → its worker.
    networks: HashMap<NetworkId, usize>,
    /// Endpoint (TAP, AF_XDP, uplink) port → its worker.
    endpoints: HashMap<PortId, usize>,
    /// Open published ports → the worker listening.
    published: HashMap<(nat::Proto, SocketAddr), usize>,
    /// Networks spread over every worker (see [`crate::replica`]).
    spread: std::collections::HashSet<NetworkId>,
    /// Ports of spread networks: every worker holds a queue of each.
    spread_ports: std::collections::HashSet<PortId>,
    /// Spread overlays → their VNIs, which the reuseport group hashes.
    hashed_vnis: std::collections::BTreeMap<NetworkId, u32>,
}

impl Routes {
    fn new(workers: usize) -> Routes {
        Routes { workers: workers.max(1), ..Routes::default() }
    }

    /// The worker a new network goes to: an overlay's is `VNI % workers`
    /// (where the underlay's reuseport group steers its packets); any other
    /// goes to the worker owning the fewest networks, the lowest on ties.
    fn assign(&self, vni: Option<Vni>) -> usize {
        if let Some(vni) = vni {
            return vni.get() as usize % self.workers;
        }
        let mut owned = vec![0usize; self.workers];
        for &w in self.networks.values() {
            owned[w] += 1;
        }
        (0..self.workers).min_by_key(|&w| (owned[w], w)).unwrap_or(0)
    }

    /// The worker of `network`; worker 0 for a network no worker has, which
    /// answers as a single datapath did (an unknown network).
    fn of_network(&self, network: NetworkId) -> usize {
        self.networks.get(&network).copied().unwrap_or(0)
    }

    /// The worker of `network` and whether it is spread over every worker.
    fn owner_and_spread(&self, network: NetworkId) -> (usize, bool) {
        (self.of_network(network), self.spread.contains(&network))
    }

    /// The worker of `port`: an endpoint's is recorded when it is added, a
    /// gateway lives with its network, and tunnel slot `s` is worker
    /// `s % workers`'s (each worker allocates its own slots). Worker 0 for
    /// an unknown port (it answers as a single datapath did).
    fn of_port(&self, port: PortId) -> usize {
        match PortRole::of(port) {
            PortRole::Endpoint(_) => self.endpoints.get(&port).copied().unwrap_or(0),
            PortRole::Gateway(network) => self.of_network(NetworkId(network)),
            PortRole::Tunnel(slot) => slot as usize % self.workers,
        }
    }

    /// The worker a publication goes to: its first backend's network's.
    fn of_publication(&self, publication: &nat::Publication) -> usize {
        publication.backends.first().map_or(0, |b| self.of_network(b.network))
    }
}

/// Folds the workers' snapshots into one: lists concatenated (ports and
/// tunnel ports by id, per-network lists by network), counters summed, and
/// each worker's own share kept in `workers`.
fn merge(parts: Vec<Snapshot>, routes: &Routes) -> Snapshot {
    let mut all = Snapshot::default();
    for (k, part) in parts.into_iter().enumerate() {
        let mut networks: Vec<NetworkId> = routes.networks.iter().filter(|&(_, &w)| w == k).map(|(&n, _)| n).collect();
        networks.sort_unstable();
        all.workers.push(WorkerStats {
            busy: part.busy,
            wakeups: part.wakeups,
            vtep: part.vtep,
            networks,
            cpu: None,
            spread: part.spread,
        });
        all.fdb.extend(part.fdb);
        all.ports.extend(part.ports);
        all.learning.extend(part.learning);
        all.tunnels.extend(part.tunnels);
        all.vtep = match (all.vtep, part.vtep) {
            (Some(mut a), Some(b)) => {
                a.merge(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        all.dns.extend(part.dns);
        all.nat.extend(part.nat);
        all.busy += part.busy;
        all.wakeups += part.wakeups;
        all.impair.extend(part.impair);
        all.proxy.extend(part.proxy);
    }
    all.fdb.sort_by_key(|r| r.network);
    all.ports.sort_by_key(|p| p.0);
    // A port of a spread network has counters on every worker (each for
    // the frames it handled): one row, summed.
    all.ports.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.2.merge(&later.2);
        }
        same
    });
    all.learning.sort_by_key(|l| l.0);
    all.tunnels.sort_by_key(|t| t.port);
    all.dns.sort_by_key(|d| d.0);
    all.nat.sort_by_key(|n| n.0);
    all.impair.sort_by_key(|i| i.port);
    // A tunnel port of a spread overlay has an impairment queue on every
    // worker: one row, summed (what waits now included).
    all.impair.dedup_by(|later, first| {
        let same = later.port == first.port;
        if same {
            first.counters = first.counters.after(later.counters);
            first.counters.queued += later.counters.queued;
        }
        same
    });
    all.proxy.sort_by_key(|p| p.0);
    all
}

/// The control plane's end of the datapath: one handle over every worker
/// thread, routing each command to the worker that owns its network or
/// port and fanning out (and merging the replies of) the others.
#[derive(Debug)]
pub struct DatapathHandle {
    workers: Vec<Worker>,
    routes: Mutex<Routes>,
    gone: crossbeam_channel::Receiver<PortId>,
    events: DatapathEventsRx,
    /// Where each worker is bound, as placement left it.
    bindings: Bindings,
    /// The placement thread of `--cpu-affinity auto`, stopped on drop.
    placement: Option<PlacementThread>,
    /// The underlay's reuseport program, with more than one worker: spread
    /// overlays' VNIs are hashed over every worker's socket.
    steering: Option<crate::sys::reuseport::Steering>,
}

impl DatapathHandle {
    /// [`DatapathHandle::spawn_workers`] with one worker.
    pub fn spawn(
        vtep: Option<VtepConfig>,
        secret: Option<ClusterSecret>,
        dns_upstreams: Vec<SocketAddr>,
        nat_limits: nat::Limits,
    ) -> io::Result<DatapathHandle> {
        DatapathHandle::spawn_workers(1, vtep, secret, dns_upstreams, nat_limits, Duration::ZERO)
    }

    /// Opens the underlay sockets (if a VTEP is configured: one receiving
    /// socket per worker, steered by VNI) and starts `workers` datapath
    /// threads (`vsw-dp-K`), each with its own event loop, bridge domains,
    /// ports, translator and DNS forwarding thread (which asks
    /// `dns_upstreams` for names the switch does not own, unless a sandbox
    /// has upstreams of its own). Each keeps the cluster secret (if any)
    /// for the keys of its encrypted overlays. `nat_limits` bound each
    /// worker's translator. After a wake-up that found work, a worker
    /// keeps polling for `busy_poll` before it sleeps (zero: never).
    pub fn spawn_workers(
        workers: usize,
        vtep: Option<VtepConfig>,
        secret: Option<ClusterSecret>,
        dns_upstreams: Vec<SocketAddr>,
        nat_limits: nat::Limits,
        busy_poll: Duration,
    ) -> io::Result<DatapathHandle> {
        let count = workers.max(1);
        let (mut tunnels, steering): (Vec<Option<Tunnel>>, _) = match vtep {
            Some(config) => {
                let (group, steering) = Tunnel::open_group(config, count)?;
                (group.into_iter().map(Some).collect(), steering)
            }
            None => ((0..count).map(|_| None).collect(), None),
        };
        let (gone_tx, gone) = crossbeam_channel::unbounded();
        let (events_tx, events) = datapath_channel();
        let mut handle = DatapathHandle {
            workers: Vec::with_capacity(count),
            routes: Mutex::new(Routes::new(count)),
            gone,
            events,
            bindings: Bindings::new(count),
            placement: None,
            steering,
        };
        // Every worker's loop exists before any starts: each gets a link to
        // every other (spread networks' frames and table changes).
        let mut loops = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (commands, inbox) = crossbeam_channel::unbounded();
            loops.push((poll, waker, commands, inbox));
        }
        let links: Vec<super::spread::WorkerLink> = loops
            .iter()
            .map(|(_, waker, commands, _)| super::spread::WorkerLink::new(commands.clone(), waker.clone()))
            .collect();
        for (k, ((poll, waker, commands, inbox), tunnel)) in loops.into_iter().zip(tunnels.drain(..)).enumerate() {
            let links = links.clone();
            let (done, results) = crossbeam_channel::unbounded();
            let forward = ForwardThread::spawn(done, waker.clone())?;
            let dns = super::dns::DnsService::new(dns_upstreams.clone(), forward, results);
            let reports = super::Reports { gone: gone_tx.clone(), events: events_tx.fork() };
            let (started_tx, started) = crossbeam_channel::bounded(1);
            let secret = secret.clone();
            // The worker builds its datapath itself, so that the buffers,
            // plan and counters it writes per frame come from its own
            // thread's allocator arena (and first touch): built here, two
            // workers' small allocations could sit side by side on one
            // cache line. (No throughput difference was measurable on a
            // 2-vCPU VM; it is hygiene, as DPDK and OVS threads allocate
            // their own per-thread state.)
            let thread = std::thread::Builder::new().name(format!("vsw-dp-{k}")).spawn(move || {
                let built = Datapath::new(poll, inbox, tunnel, secret, dns, reports, nat_limits);
                let mut datapath = match built {
                    Ok(datapath) => datapath,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                datapath.tunnel_slots = super::TunnelSlots { first: k as u32, step: count as u32 };
                datapath.spread.connect(k, links);
                datapath.busy_poll = busy_poll;
                let _ = started_tx.send(Ok((crate::sys::sched::gettid(), datapath.idle_poll.clone())));
                datapath.run()
            })?;
            let (tid, idle_poll) = match started.recv() {
                Ok(Ok(started)) => started,
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e);
                }
                // Gone before it said anything: 0 is never a thread.
                Err(_) => (0, IdlePoll::default()),
            };
            // Pushed at once: dropping the handle on a later error stops it.
            handle.workers.push(Worker { commands, waker, thread: Some(thread), tid, idle_poll });
        }
        Ok(handle)
    }

    /// Places the worker threads on CPUs as `affinity` says (see
    /// [`placement`]); `auto` starts the placement thread, which stops
    /// with the handle. Called once, after [`DatapathHandle::spawn_workers`].
    pub fn place_workers(&mut self, affinity: &CpuAffinity) -> Result<(), PlacementError> {
        let workers = self.workers.iter().map(|w| (w.tid, w.idle_poll.clone())).collect();
        self.placement = placement::start(affinity, workers, self.bindings.clone())?;
        Ok(())
    }

    /// How many worker threads there are.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker owning `network`, if it was added.
    pub fn network_worker(&self, network: NetworkId) -> Option<usize> {
        self.routes().networks.get(&network).copied()
    }

    /// Whether `network` is spread over every worker.
    pub fn network_spread(&self, network: NetworkId) -> bool {
        self.routes().spread.contains(&network)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // The map is only ever updated whole: a poisoned lock still holds a
        // consistent one.
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends one command to worker `k` and waits for its answer.
    fn call_on<T>(&self, k: usize, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DatapathError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let worker = self.workers.get(k).ok_or(DatapathError::Unresponsive)?;
        worker.commands.send(make(reply)).map_err(|_| DatapathError::Unresponsive)?;
        worker.waker.wake().map_err(|_| DatapathError::Unresponsive)?;
        answer.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => DatapathError::Unresponsive,
        })
    }

    /// Sends a command to every worker at once and collects the answers,
    /// in worker order.
    fn call_all<T>(&self, make: impl Fn(Reply<T>) -> Command) -> Result<Vec<T>, DatapathError> {
        let mut answers = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            let (reply, answer) = crossbeam_channel::bounded(1);
            worker.commands.send(make(reply)).map_err(|_| DatapathError::Unresponsive)?;
            worker.waker.wake().map_err(|_| DatapathError::Unresponsive)?;
            answers.push(answer);
        }
        answers
            .into_iter()
            .map(|answer| answer.recv_timeout(REPLY_TIMEOUT).map_err(|_| DatapathError::Unresponsive))
            .collect()
    }

    fn call_network<T>(&self, network: NetworkId, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DatapathError> {
        let k = self.routes().of_network(network);
        self.call_on(k, make)
    }

    fn call_port<T>(&self, port: PortId, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DatapathError> {
        let k = self.routes().of_port(port);
        self.call_on(k, make)
    }

    /// Whether a network of `spec` can be spread over the workers: there
    /// is more than one, and an overlay has a steering program with room to
    /// spread its packets over the workers. An encrypted overlay's replicas
    /// seal in sessions of their own, with keys derived from the cluster
    /// secret as the owner's are, or installed on every worker as the store
    /// hands them out ([`DatapathHandle::install_key`]). On a VTEP that
    /// learns peers only the owner learns them (a replica hands it an
    /// unknown VTEP's datagrams, opened if encrypted) and the replicas
    /// mirror the ports it makes.
    fn can_spread(&self, spec: &NetworkSpec) -> bool {
        // The steering program holds at most so many spread VNIs; one it
        // could not steer would leave an encrypted overlay's sessions to a
        // worker without their replay windows.
        let room = self.routes().hashed_vnis.len() < crate::sys::reuseport::MAX_HASHED_VNIS;
        self.workers.len() > 1 && (spec.vni.is_none() || (room && self.steering.is_some()))
    }

    /// Creates a network (bridge domain), with its userspace gateway if
    /// given, on the worker assigned to it (see `Routes::assign`). A spread
    /// network (`spec.spread` and [`DatapathHandle::can_spread`]) also
    /// becomes a replica on every other worker; a spread overlay's packets
    /// are then hashed over every worker's underlay socket.
    pub fn add_network(&self, spec: NetworkSpec) -> Result<(), DatapathError> {
        let spread = spec.spread && self.can_spread(&spec);
        if spec.spread && !spread && spec.vni.is_some() && self.workers.len() > 1 {
            tracing::warn!(network = %spec.id, "this overlay is not spread over workers (already 250 spread overlays, or no steering program)");
        }
        let spec = NetworkSpec { spread, ..spec };
        self.add_owned_network(spec)?;
        if !spread {
            return Ok(());
        }
        let owner = self.routes().of_network(spec.id);
        let keys = match self.spread_keys(&spec, owner) {
            Ok(keys) => keys,
            Err(e) => {
                let _ = self.remove_network(spec.id);
                return Err(e);
            }
        };
        let mut added = Vec::new();
        for k in (0..self.workers.len()).filter(|&k| k != owner) {
            let fdb = spec.new_fdb();
            let overlay = spec.vni.map(|vni| super::spread::ReplicaOverlay {
                vni,
                mtu: spec.mtu,
                mss_clamp: spec.mss_clamp,
                keys: keys.clone(),
            });
            let replica = self.call_on(k, |reply| Command::AddReplica { id: spec.id, fdb, owner, overlay, reply });
            match replica.and_then(|r| r.map_err(|(_table, e)| e)) {
                Ok(()) => added.push(k),
                Err(e) => {
                    // Nothing stays of a network not every worker took.
                    for k in added {
                        let _ = self.call_on(k, |reply| Command::RemoveNetwork { id: spec.id, reply });
                    }
                    let _ = self.remove_network(spec.id);
                    return Err(e);
                }
            }
        }
        self.routes().spread.insert(spec.id);
        if let Some(vni) = spec.vni {
            {
                let mut routes = self.routes();
                routes.hashed_vnis.insert(spec.id, vni.get());
                self.steer(&routes);
            }
            // Peers the owner learned before the replicas existed.
            let mirrored = self.call_on(owner, |reply| Command::MirrorExisting { network: spec.id, reply });
            if let Err(e) = mirrored.and_then(|()| self.sync_replicas(spec.id)) {
                tracing::error!(network = %spec.id, error = %e, "the replicas may lack tunnel ports their owner made");
            }
        }
        Ok(())
    }

    /// For an encrypted spread overlay: a lane of sender sessions over the
    /// workers and the set of their sessions, given to its owner `owner`
    /// here (before the replicas exist, so that no worker ever opens
    /// another's sessions sent back) and returned for the replicas. The
    /// network is new: no peer's packet reaches it before the replicas and
    /// the steering program are in place.
    fn spread_keys(
        &self,
        spec: &NetworkSpec,
        owner: usize,
    ) -> Result<Option<super::spread::ReplicaKeys>, DatapathError> {
        let Some(key_base) = spec.key_epoch else { return Ok(None) };
        let lane = crypto::SessionLane::random(self.workers.len() as u32).map_err(DatapathError::Crypto)?;
        let host = Arc::new(crypto::HostSessions::new(self.workers.len()));
        let network = spec.id;
        self.call_on(owner, |reply| Command::SpreadKeys { network, lane, host: host.clone(), reply })??;
        Ok(Some(super::spread::ReplicaKeys {
            key_base,
            cipher: spec.cipher,
            key_rotation: spec.key_rotation,
            store_keys: spec.store_keys,
            lane,
            host,
        }))
    }

    /// Loads the steering program for the spread overlays `routes` lists.
    /// On failure it falls back to the plain program (every VNI to its
    /// owner, `VNI % workers`): the owners of plain spread overlays then
    /// forward all of their packets (slower, not lost), those of encrypted
    /// ones hand the other workers' sessions to them unopened (a copy
    /// each; never judged by a second replay window), and no VNI stays hashed
    /// after its overlay went. (The program holds every VNI `can_spread`
    /// lets through; only the kernel refusing it makes this happen.)
    fn steer(&self, routes: &Routes) {
        let Some(steering) = &self.steering else { return };
        let hashed: Vec<u32> = routes.hashed_vnis.values().copied().collect();
        if let Err(e) = steering.hash(&hashed) {
            let fallback = steering.hash(&[]);
            tracing::error!(error = %e, spread_overlays = hashed.len(), fallback_loaded = fallback.is_ok(), "cannot steer spread overlays over the workers; their owners receive all their packets");
        }
    }

    /// [`DatapathHandle::add_network`] on the network's own worker.
    fn add_owned_network(&self, spec: NetworkSpec) -> Result<(), DatapathError> {
        let fdb = spec.new_fdb();
        let mut routes = self.routes();
        let existing = routes.networks.get(&spec.id).copied();
        let k = existing.unwrap_or_else(|| routes.assign(spec.vni));
        // Held across the call: two networks added at once are assigned in
        // turn. An id already taken is refused by its worker; a refused
        // table is freed here, on return, off the packet path.
        let added = self.call_on(k, |reply| Command::AddNetwork { spec, fdb, reply })?;
        if added.is_ok() && existing.is_none() {
            routes.networks.insert(spec.id, k);
        }
        added.map_err(|(_table, e)| e)
    }

    /// Removes a network with its gateway and tunnel ports; refused while
    /// endpoints remain. Its forwarding table is freed on this (control)
    /// thread, not on the worker.
    pub fn remove_network(&self, id: NetworkId) -> Result<(), DatapathError> {
        let (owner, spread) = self.routes().owner_and_spread(id);
        // The owner decides: it refuses while endpoints remain, and then
        // nothing changed anywhere.
        self.call_on(owner, |reply| Command::RemoveNetwork { id, reply })??;
        self.routes().networks.remove(&id);
        {
            let mut routes = self.routes();
            if routes.hashed_vnis.remove(&id).is_some() {
                // Its packets (dropped now: no network has the VNI) back
                // to `VNI % workers` before the replicas go.
                self.steer(&routes);
            }
        }
        if spread {
            // The replicas' ports went with the endpoints: nothing refuses.
            for k in (0..self.workers.len()).filter(|&k| k != owner) {
                match self.call_on(k, |reply| Command::RemoveNetwork { id, reply }) {
                    Ok(Ok(_table)) => {}
                    Ok(Err(e)) => tracing::error!(network = %id, worker = k, error = %e, "a replica refused removal"),
                    Err(e) => tracing::error!(network = %id, worker = k, error = %e, "a replica did not answer"),
                }
            }
            self.routes().spread.remove(&id);
        }
        Ok(())
    }

    /// Adds a TAP port on its network's worker. On failure the TAP is
    /// handed back.
    pub fn add_tap(&self, id: PortId, tap: Tap, config: PortConfig) -> Result<(), (Option<Tap>, DatapathError)> {
        self.add_tap_queues(id, tap, Vec::new(), config)
    }

    /// How many more queues than one a new TAP of `network` needs: one per
    /// other worker on a spread network, none otherwise.
    pub fn extra_queues(&self, network: NetworkId) -> usize {
        if self.routes().spread.contains(&network) { self.workers.len() - 1 } else { 0 }
    }

    /// How many workers serve `network`'s ports: every worker for a spread
    /// network, else one (how many parts an AF_XDP port or a raw uplink's
    /// sockets are split into).
    pub fn workers_serving(&self, network: NetworkId) -> usize {
        self.extra_queues(network) + 1
    }

    /// [`DatapathHandle::add_tap`] with the TAP's other queues
    /// ([`DatapathHandle::extra_queues`] of them, on a spread network): the
    /// owner reads `tap`, every other worker one of `extra`. A queue a
    /// worker could not take is closed (the kernel then steers no flow to
    /// it). On failure the first queue is handed back.
    pub fn add_tap_queues(
        &self,
        id: PortId,
        tap: Tap,
        extra: Vec<Tap>,
        config: PortConfig,
    ) -> Result<(), (Option<Tap>, DatapathError)> {
        let k = self.routes().of_network(config.network);
        match self.call_on(k, |reply| Command::AddTap { id, tap, config, reply }) {
            Ok(Ok(())) => {
                self.routes().endpoints.insert(id, k);
            }
            Ok(Err((tap, e))) => return Err((Some(tap), e)),
            Err(e) => return Err((None, e)),
        }
        self.add_replica_queues(
            id,
            k,
            extra,
            |tap, reply| Command::AddTap { id, tap, config, reply },
            |r| r.map_err(|(_queue, e)| e),
        );
        Ok(())
    }

    /// Gives the queues of spread port `id` other than its owner's (worker
    /// `owner`) to the other workers, one each in worker order (see
    /// [`DatapathHandle::add_tap_queues`]); a queue a worker could not
    /// take is closed: tun then steers no flow to a TAP's, a fanout group
    /// shrinks, but the frames of an AF_XDP receive queue without its
    /// socket go to the host end's stack and are lost (logged as an error).
    fn add_replica_queues<Q, R>(
        &self,
        id: PortId,
        owner: usize,
        queues: Vec<Q>,
        add: impl Fn(Q, Sender<R>) -> Command,
        result: impl Fn(R) -> Result<(), DatapathError>,
    ) {
        if queues.is_empty() {
            return;
        }
        self.routes().spread_ports.insert(id);
        let replicas = (0..self.workers.len()).filter(|&w| w != owner);
        for (w, queue) in replicas.zip(queues) {
            if let Err(e) = self.call_on(w, |reply| add(queue, reply)).and_then(&result) {
                tracing::error!(port = %id, worker = w, error = %e, "a worker cannot serve its queue of the port; it is closed (an AF_XDP queue's frames are lost)")
            }
        }
    }

    /// Adds a port backed by another frame device (an AF_XDP socket, a raw
    /// uplink socket) on its network's worker; on error the device is
    /// dropped (closed). On a spread network `extra` holds the device's
    /// other queues (an AF_XDP port split by receive queue,
    /// `XdpPort::split`, or a raw uplink's other sockets of its fanout
    /// group): the owner reads `device`, every other worker one of
    /// `extra`, as [`DatapathHandle::add_tap_queues`] does with a TAP's.
    pub(crate) fn add_device_queues(
        &self,
        id: PortId,
        device: Box<dyn super::PortDevice>,
        extra: Vec<Box<dyn super::PortDevice>>,
        config: PortConfig,
    ) -> Result<(), DatapathError> {
        let k = self.routes().of_network(config.network);
        self.call_on(k, |reply| Command::AddDevice { id, device, config, reply })??;
        self.routes().endpoints.insert(id, k);
        self.add_replica_queues(id, k, extra, |device, reply| Command::AddDevice { id, device, config, reply }, |r| r);
        Ok(())
    }

    /// Removes a port (and its FDB entries); returns its TAP, if it had one.
    pub fn remove_port(&self, id: PortId) -> Result<Option<Tap>, DatapathError> {
        let (owner, spread) = {
            let routes = self.routes();
            (routes.of_port(id), routes.spread_ports.contains(&id))
        };
        if spread {
            // The other workers' queues close first: the owner's, handed
            // back, may be the one that deletes the device.
            for k in (0..self.workers.len()).filter(|&k| k != owner) {
                drop(self.call_on(k, |reply| Command::RemovePort { id, reply })?);
            }
            self.routes().spread_ports.remove(&id);
        }
        let tap = self.call_port(id, |reply| Command::RemovePort { id, reply })?;
        self.routes().endpoints.remove(&id);
        Ok(tap)
    }

    /// Whether the device of port `id` is the one reported gone
    /// ([`DatapathHandle::gone_ports`]): the port was reported and has not
    /// been removed since. False for a stale report: its port was removed
    /// (a `network disconnect`, a `sandbox rm`) and its id may now be
    /// another endpoint's, which must not be released for it.
    pub fn port_reported_gone(&self, id: PortId) -> Result<bool, DatapathError> {
        self.call_port(id, |reply| Command::PortReportedGone { id, reply })
    }

    /// Adds a static peer to an overlay network: a tunnel port toward it.
    pub fn add_peer(&self, network: NetworkId, remote: SocketAddr) -> Result<PortId, DatapathError> {
        let added = self.call_network(network, |reply| Command::AddPeer { network, remote, reply })?;
        // The peer is added either way; a replica that does not answer in
        // time is the fault to report, not the peer.
        if let Err(e) = self.sync_replicas(network) {
            tracing::error!(%network, error = %e, "a replica did not confirm a new peer's tunnel port");
        }
        added
    }

    /// Returns once every replica of spread overlay `network` has read the
    /// commands its owner sent it so far: the owner mirrors a tunnel port it
    /// makes before it replies, so after a `peer add` or a cluster view no
    /// packet of the new peer reaches a replica that lacks the port (a
    /// replica drops what it has no port for, unless the VTEP learns peers).
    fn sync_replicas(&self, network: NetworkId) -> Result<(), DatapathError> {
        let (owner, spread) = self.routes().owner_and_spread(network);
        if spread {
            for k in (0..self.workers.len()).filter(|&k| k != owner) {
                self.call_on(k, |reply| Command::Barrier { reply })?;
            }
        }
        Ok(())
    }

    /// Removes a peer from an overlay network; returns whether it was there.
    pub fn remove_peer(&self, network: NetworkId, remote: SocketAddr) -> Result<bool, DatapathError> {
        self.call_network(network, |reply| Command::RemovePeer { network, remote, reply })
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
        let set = self.call_network(network, |reply| Command::SetClusterView { network, peers, endpoints, reply })?;
        if let Err(e) = self.sync_replicas(network) {
            tracing::error!(%network, error = %e, "a replica did not confirm the cluster view's tunnel ports");
        }
        set
    }

    /// Sets (or, with `None`, removes) this node's mesh station on an
    /// overlay network: the address and MAC ingress flows to other nodes'
    /// replicas come from, and that their answers come back to (see
    /// [`nat::Mesh`]). Not persisted: the daemon re-derives it from the
    /// cluster store.
    pub fn set_mesh(&self, network: NetworkId, mesh: Option<nat::Mesh>) -> Result<(), DatapathError> {
        self.call_network(network, |reply| Command::SetMesh { network, mesh, reply })?
    }

    /// Adds a static FDB entry.
    pub fn add_static(&self, network: NetworkId, mac: MacAddr, port: PortId) -> Result<(), DatapathError> {
        self.call_network(network, |reply| Command::AddStatic { network, mac, port, reply })?
    }

    /// Removes an FDB entry; returns whether it existed.
    pub fn remove_entry(&self, network: NetworkId, mac: MacAddr) -> Result<bool, DatapathError> {
        self.call_network(network, |reply| Command::RemoveEntry { network, mac, reply })?
    }

    /// Flushes learned entries of one network, or of all; returns how many.
    pub fn flush(&self, network: Option<NetworkId>) -> Result<usize, DatapathError> {
        match network {
            Some(n) => self.call_network(n, |reply| Command::Flush { network, reply }),
            None => Ok(self.call_all(|reply| Command::Flush { network: None, reply })?.into_iter().sum()),
        }
    }

    /// Sets the FDB aging time (of every worker).
    pub fn set_aging(&self, aging: Duration) -> Result<(), DatapathError> {
        self.call_all(|reply| Command::SetAging { aging, reply })?.into_iter().collect()
    }

    /// Moves an encrypted overlay to key epoch `epoch`: it seals with the new
    /// epoch at once and opens the epochs next to it. On a network whose keys
    /// come from the store (`store_keys`) this is the switch of the send
    /// epoch, refused ([`DatapathError::NoKey`], nothing changes) unless
    /// `epoch`'s key was installed ([`DatapathHandle::install_key`]).
    pub fn set_key_epoch(&self, network: NetworkId, epoch: u32) -> Result<(), DatapathError> {
        let (owner, spread) = self.routes().owner_and_spread(network);
        self.call_on(owner, |reply| Command::SetKeyEpoch { network, epoch, reply })??;
        // Every worker of a spread overlay seals and opens with the keys of
        // its own epoch: the replicas follow the owner (they were given
        // every key from the store the owner took, so this fails where the
        // owner succeeded only for a lost worker or a key a replica refused).
        if !spread {
            return Ok(());
        }
        self.on_replicas(network, owner, "a replica did not follow a key epoch", |k| {
            self.call_on(k, |reply| Command::SetKeyEpoch { network, epoch, reply })?
        })
    }

    /// Runs `command` for every replica of spread network `network` (each
    /// worker but `owner`), even past one that fails: each failure is
    /// logged as `what`, and the first is the result, so that the caller
    /// (a `network key rotate`, the cluster's key reconciler) does not take
    /// as done what a worker lacks.
    fn on_replicas(
        &self,
        network: NetworkId,
        owner: usize,
        what: &str,
        mut command: impl FnMut(usize) -> Result<(), DatapathError>,
    ) -> Result<(), DatapathError> {
        let mut first = Ok(());
        for k in (0..self.workers.len()).filter(|&k| k != owner) {
            if let Err(e) = command(k) {
                tracing::error!(%network, worker = k, error = %e, "{what}");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Where an encrypted overlay's keys stand: its send epoch and the
    /// epochs installed. [`DatapathError::NotEncrypted`] for other networks.
    ///
    /// A spread overlay's state is what every worker holds: the epochs
    /// installed on all of them, and the owner's send epoch only if every
    /// replica sends with it too. So a key or an epoch switch that did not
    /// reach a replica (logged by [`DatapathHandle::install_key`] and
    /// [`DatapathHandle::set_key_epoch`]) shows as missing, and whoever
    /// drives the keys from this state (the cluster's key reconciler) asks
    /// again, which the workers that hold it already take as a no-op.
    pub fn key_state(&self, network: NetworkId) -> Result<KeyState, DatapathError> {
        let (owner, spread) = self.routes().owner_and_spread(network);
        let mut state = self.call_on(owner, |reply| Command::KeyState { network, reply })??;
        if spread {
            for k in (0..self.workers.len()).filter(|&k| k != owner) {
                let replica = self.call_on(k, |reply| Command::KeyState { network, reply })??;
                state.installed.retain(|epoch| replica.installed.contains(epoch));
                if replica.send_epoch != state.send_epoch {
                    state.send_epoch = None;
                }
            }
        }
        Ok(state)
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
    ///
    /// On a spread overlay every worker gets the key, the owner first; a
    /// replica that refuses one the owner took (it cannot, but for a lost
    /// worker) is logged and makes the call fail once every replica was
    /// tried: that epoch's packets steered to it would be dropped, so the
    /// key is not done (and `key_state` shows it missing, so it is asked
    /// for again).
    pub fn install_key(&self, network: NetworkId, epoch: u32, key: crypto::NetworkKey) -> Result<(), DatapathError> {
        let (owner, spread) = self.routes().owner_and_spread(network);
        let replica_key = spread.then(|| key.clone());
        self.call_on(owner, |reply| Command::InstallKey { network, epoch, key, reply })??;
        let Some(key) = replica_key else { return Ok(()) };
        self.on_replicas(network, owner, "a replica did not take a key from the store", |k| {
            let key = key.clone();
            self.call_on(k, |reply| Command::InstallKey { network, epoch, key, reply })?
        })
    }

    /// Replaces the embedded DNS's names and askers (in every worker);
    /// queries after this returns are answered from `directory`.
    pub fn set_dns(&self, directory: dns::Directory) -> Result<(), DatapathError> {
        self.call_all(|reply| Command::SetDns { directory: Box::new(directory.clone()), reply })?;
        Ok(())
    }

    /// Opens (or updates) published ports, all or nothing: a listener is
    /// bound for every publication not yet open, and one already open gets
    /// the new backends (connections in progress keep theirs). When one
    /// address cannot be bound, none of the new listeners stays open. Each
    /// publication is served by the worker of its (first) backend's network;
    /// one whose backends moved to another worker is closed on the old one.
    pub fn publish(&self, publications: Vec<nat::Publication>) -> Result<(), DatapathError> {
        let mut routes = self.routes();
        let mut groups: Vec<Vec<nat::Publication>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        let mut moved: Vec<Vec<(nat::Proto, SocketAddr)>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for publication in publications {
            let k = routes.of_publication(&publication);
            let key = (publication.proto, publication.host);
            if let Some(&old) = routes.published.get(&key)
                && old != k
            {
                moved[old].push(key);
            }
            groups[k].push(publication);
        }
        let mut opened: Vec<(usize, Vec<(nat::Proto, SocketAddr)>)> = Vec::new();
        for (k, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let new: Vec<_> =
                group.iter().map(|p| (p.proto, p.host)).filter(|key| routes.published.get(key) != Some(&k)).collect();
            let result = self.call_on(k, |reply| Command::Publish { publications: group, reply }).and_then(|r| r);
            if let Err(e) = result {
                // All or nothing: what earlier workers opened closes again.
                for (k, keys) in opened {
                    let _ = self.call_on(k, |reply| Command::Unpublish { keys, reply });
                }
                return Err(e);
            }
            opened.push((k, new));
        }
        for (k, keys) in opened {
            for key in keys {
                routes.published.insert(key, k);
            }
        }
        for (old, keys) in moved.into_iter().enumerate() {
            if !keys.is_empty() {
                self.call_on(old, |reply| Command::Unpublish { keys, reply })?;
            }
        }
        Ok(())
    }

    /// Closes published ports; flows already carried through them go on
    /// until they end.
    pub fn unpublish(&self, keys: Vec<(nat::Proto, SocketAddr)>) -> Result<(), DatapathError> {
        let mut routes = self.routes();
        let mut groups: Vec<Vec<(nat::Proto, SocketAddr)>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for key in keys {
            let k = routes.published.remove(&key).unwrap_or(0);
            groups[k].push(key);
        }
        for (k, keys) in groups.into_iter().enumerate() {
            if !keys.is_empty() {
                self.call_on(k, |reply| Command::Unpublish { keys, reply })?;
            }
        }
        Ok(())
    }

    /// Ends every translated flow of the endpoint with `mac` and
    /// `addresses` on `network` (it is going): host connections are reset.
    /// Asks every worker: a spread network's flows are on several, and a
    /// flow from the endpoint's address may run through another network of
    /// its sandbox (weak host model). Returns how many flows ended.
    pub fn nat_forget(&self, network: NetworkId, mac: MacAddr, addresses: &[IpAddr]) -> Result<usize, DatapathError> {
        let ended = self.call_all(|reply| Command::NatForget { network, mac, addresses: addresses.to_vec(), reply })?;
        Ok(ended.into_iter().sum())
    }

    /// The translator's live flows (`nat ls`), of every worker.
    pub fn nat_flows(&self) -> Result<Vec<nat::FlowInfo>, DatapathError> {
        Ok(self.call_all(|reply| Command::NatFlows { reply })?.into_iter().flatten().collect())
    }

    /// TAP ports whose device vanished (the sandbox's namespace ended, or
    /// the interface was deleted), as the datapath notices them.
    pub fn gone_ports(&self) -> crossbeam_channel::Receiver<PortId> {
        self.gone.clone()
    }

    /// Starts a packet capture on every worker that owns something it
    /// captures: a network's worker (every worker for a spread network);
    /// each worker owning one of the ports (with those ports; every worker
    /// for ports of spread networks, and for tunnel ports while any overlay
    /// is spread, where a worker that does not hold them keeps no session);
    /// every worker for the underlay (each has its own underlay socket). All
    /// of them fill the session's one ring, from their next batch on.
    /// Returns how many workers were asked to capture.
    pub fn capture(&self, session: crate::daemon::capture::Session) -> Result<usize, DatapathError> {
        use crate::daemon::capture::{FilterError, Scope, Session};
        let sessions: Vec<(usize, Session)> = {
            let routes = self.routes();
            match session.scope().clone() {
                // Every worker holds a part of a spread network.
                Scope::Network(n) if routes.spread.contains(&n) => {
                    let sessions = (0..self.workers.len()).map(|k| Ok((k, session.with_scope(Scope::Network(n))?)));
                    sessions.collect::<Result<_, FilterError>>()?
                }
                Scope::Network(n) => vec![(routes.of_network(n), session)],
                Scope::Ports(ports) => {
                    let mut by_worker: Vec<(usize, Vec<PortId>)> = Vec::new();
                    for port in ports {
                        let owner = routes.of_port(port);
                        // A tunnel port may be a spread overlay's, mirrored
                        // on every worker: each keeps the session only if it
                        // holds the port.
                        let mirrored =
                            !routes.hashed_vnis.is_empty() && matches!(PortRole::of(port), PortRole::Tunnel(_));
                        let spread = routes.spread_ports.contains(&port) || mirrored;
                        for k in (0..self.workers.len()).filter(|&k| k == owner || spread) {
                            match by_worker.iter_mut().find(|(w, _)| *w == k) {
                                Some((_, mine)) => mine.push(port),
                                None => by_worker.push((k, vec![port])),
                            }
                        }
                    }
                    let sessions =
                        by_worker.into_iter().map(|(k, ports)| Ok((k, session.with_scope(Scope::Ports(ports))?)));
                    sessions.collect::<Result<_, FilterError>>()?
                }
                Scope::Underlay => {
                    let sessions = (0..self.workers.len()).map(|k| Ok((k, session.with_scope(Scope::Underlay)?)));
                    sessions.collect::<Result<_, FilterError>>()?
                }
            }
        };
        // Every session exists before any is handed over: the ring ends
        // only when the last of them is dropped.
        let workers = sessions.len();
        for (k, session) in sessions {
            let session = Box::new(session);
            self.call_on(k, |reply| Command::Capture { session, reply })?;
        }
        Ok(workers)
    }

    /// Impairs the egress of TAP port `id` with `settings`, or clears it
    /// (`None`); frames queued under earlier settings are sent at once.
    pub fn set_impairment(&self, id: PortId, settings: Option<ImpairSettings>) -> Result<(), DatapathError> {
        if self.routes().spread_ports.contains(&id) {
            return Err(DatapathError::SpreadImpair(id));
        }
        self.call_port(id, |reply| Command::SetImpair { id, settings, reply })?
    }

    /// Impairs the egress of every tunnel port toward VTEP `remote` on
    /// every worker, those made later too (each its own queue), with
    /// `settings`, or clears it (`None`). Returns how many tunnel ports
    /// there are toward it now.
    pub fn set_tunnel_impairment(
        &self,
        remote: SocketAddr,
        settings: Option<ImpairSettings>,
    ) -> Result<usize, DatapathError> {
        let applied = self.call_all(|reply| Command::SetTunnelImpair { remote, settings, reply })?;
        Ok(applied.into_iter().sum())
    }

    /// The datapath's events, in batches (for the event hub).
    pub fn events(&self) -> DatapathEventsRx {
        self.events.clone()
    }

    /// Copies the tables and counters out of every worker, merged.
    pub fn snapshot(&self) -> Result<Snapshot, DatapathError> {
        let parts = self.call_all(|reply| Command::Snapshot { reply })?;
        let mut all = merge(parts, &self.routes());
        for (k, worker) in all.workers.iter_mut().enumerate() {
            worker.cpu = self.bindings.cpu(k);
        }
        Ok(all)
    }
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        // No placement of threads that are about to exit.
        self.placement.take();
        for worker in &self.workers {
            let _ = worker.commands.send(Command::Shutdown);
            let _ = worker.waker.wake();
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(n: u32) -> Option<Vni> {
        Some(Vni::new(n).unwrap())
    }

    #[test]
    fn overlays_go_to_their_vni_worker_and_others_to_the_least_loaded() {
        let mut routes = Routes::new(2);
        assert_eq!(routes.assign(None), 0, "ties go to the lowest index");
        routes.networks.insert(NetworkId(0), 0);
        assert_eq!(routes.assign(None), 1, "the worker with fewer networks");
        routes.networks.insert(NetworkId(1), 1);
        assert_eq!(routes.assign(None), 0);
        assert_eq!(routes.assign(vni(100)), 0, "VNI 100 is even");
        assert_eq!(routes.assign(vni(101)), 1, "VNI 101 is odd");
        routes.networks.insert(NetworkId(2), 1);
        routes.networks.insert(NetworkId(3), 1);
        assert_eq!(routes.assign(None), 0, "worker 0 has one network, worker 1 three");
        assert_eq!(routes.assign(vni(7)), 1, "an overlay follows its VNI, not the load");
        let three = Routes::new(3);
        assert_eq!(three.assign(vni(5)), 2);
        assert_eq!(Routes::new(1).assign(vni(5)), 0, "one worker owns everything");
    }

    #[test]
    fn ports_route_to_their_owner() {
        let mut routes = Routes::new(2);
        routes.networks.insert(NetworkId(4), 1);
        routes.endpoints.insert(endpoint_port(9), 1);
        assert_eq!(routes.of_port(gateway_port(4)), 1, "a gateway lives with its network");
        assert_eq!(routes.of_port(gateway_port(5)), 0, "an unknown network answers from worker 0");
        assert_eq!(routes.of_port(endpoint_port(9)), 1);
        assert_eq!(routes.of_port(endpoint_port(8)), 0);
        assert_eq!(routes.of_port(tunnel_port(3)), 1, "tunnel slot 3 is worker 1's");
        assert_eq!(routes.of_port(tunnel_port(6)), 0);
        assert_eq!(routes.of_network(NetworkId(4)), 1);
    }

    /// Through the handle, two real workers on the IPv4 loopback: a spread
    /// overlay's store keys reach every worker, and its key state is what
    /// all of them hold, so a key or an epoch one missed is asked for again.
    #[test]
    fn a_spread_overlays_key_state_is_what_every_worker_holds() {
        let local = VtepConfig { local: "127.0.0.1:0".parse().unwrap(), learn_peers: false, underlay_mtu: 1500 };
        let dp = DatapathHandle::spawn_workers(2, Some(local), None, Vec::new(), Default::default(), Duration::ZERO)
            .expect("two workers");
        let spec = NetworkSpec {
            key_epoch: Some(3),
            store_keys: true,
            spread: true,
            mtu: 1418,
            ..super::super::testing::overlay_network(0, 4242)
        };
        dp.add_network(spec).expect("a spread overlay with store keys");
        let net = spec.id;
        let (owner, spread) = dp.routes().owner_and_spread(net);
        assert!(spread, "store keys no longer keep an overlay from spreading");
        let key = |epoch: u32| crypto::NetworkKey::from_bytes(Vni::new(4242).unwrap(), epoch, [epoch as u8; 32]);
        let state = |dp: &DatapathHandle| {
            let s = dp.key_state(net).expect("a key state");
            (s.send_epoch, s.installed)
        };
        assert_eq!(state(&dp), (None, vec![]));
        dp.install_key(net, 3, key(3)).expect("epoch 3's key");
        assert_eq!(state(&dp), (Some(3), vec![3]), "every worker holds it and sends with it");
        // Epoch 4's key reaching the owner alone is not installed...
        dp.call_on(owner, |reply| Command::InstallKey { network: net, epoch: 4, key: key(4), reply })
            .expect("the owner answers")
            .expect("the owner takes it");
        assert_eq!(state(&dp), (Some(3), vec![3]));
        // ... until it is installed again, a no-op on the owner.
        dp.install_key(net, 4, key(4)).expect("epoch 4's key");
        assert_eq!(state(&dp), (Some(3), vec![3, 4]));
        // An epoch switch the replica missed: no send epoch, until switched again.
        dp.call_on(owner, |reply| Command::SetKeyEpoch { network: net, epoch: 4, reply })
            .expect("the owner answers")
            .expect("the owner switches");
        assert_eq!(state(&dp), (None, vec![3, 4]));
        dp.set_key_epoch(net, 4).expect("epoch 4 everywhere");
        assert_eq!(state(&dp), (Some(4), vec![3, 4]));
        // A replica that cannot take a key (here: it lost the network) fails
        // the call, after the owner took it: nobody acknowledges a key or an
        // epoch a worker lacks.
        let replica = 1 - owner;
        dp.call_on(replica, |reply| Command::RemoveNetwork { id: net, reply })
            .expect("the replica answers")
            .expect("the replica drops its copy");
        assert!(dp.install_key(net, 5, key(5)).is_err(), "a replica lacks epoch 5's key");
        let owners = dp.call_on(owner, |reply| Command::KeyState { network: net, reply }).unwrap().unwrap();
        assert_eq!(owners.installed, vec![3, 4, 5], "the owner took it");
        assert!(dp.set_key_epoch(net, 5).is_err(), "a replica cannot follow");
    }

    #[test]
    fn snapshots_merge_lists_and_sum_counters() {
        let mut routes = Routes::new(2);
        routes.networks.insert(NetworkId(0), 1);
        routes.networks.insert(NetworkId(1), 0);
        let counters = |rx: u64| PortCounters { rx_packets: rx, ..PortCounters::default() };
        let vtep = |rx: u64| TunnelCounters { rx_packets: rx, tx_packets: 2 * rx, ..TunnelCounters::default() };
        let a = Snapshot {
            // Port 0 is on a spread network: this worker has a queue too.
            ports: vec![(PortId(0), NetworkId(0), counters(4)), (PortId(3), NetworkId(1), counters(5))],
            busy: Duration::from_millis(10),
            wakeups: 7,
            vtep: Some(vtep(1)),
            ..Snapshot::default()
        };
        let b = Snapshot {
            ports: vec![(PortId(0), NetworkId(0), counters(6)), (PortId(1), NetworkId(0), counters(0))],
            busy: Duration::from_millis(5),
            wakeups: 3,
            vtep: Some(vtep(10)),
            ..Snapshot::default()
        };
        let all = merge(vec![a, b], &routes);
        let ids: Vec<u32> = all.ports.iter().map(|p| p.0.0).collect();
        assert_eq!(ids, [0, 1, 3], "ports by id, one row each");
        assert_eq!(all.ports[0].2.rx_packets, 10, "a port served by two workers sums their counts");
        assert_eq!(all.busy, Duration::from_millis(15));
        assert_eq!(all.wakeups, 10);
        let v = all.vtep.unwrap();
        assert_eq!((v.rx_packets, v.tx_packets), (11, 22));
        assert_eq!(all.workers.len(), 2);
        assert_eq!(all.workers[0].wakeups, 7);
        assert_eq!(all.workers[0].networks, [NetworkId(1)]);
        assert_eq!(all.workers[1].networks, [NetworkId(0)]);
        assert_eq!(all.workers[1].vtep.unwrap().rx_packets, 10);
    }
}
