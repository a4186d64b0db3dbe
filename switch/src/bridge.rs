//! The learning bridge: ports grouped into networks, one [`Fdb`] per network,
//! and the batch forwarding decision.
//!
//! [`Bridge::forward_batch`] takes received frames and fills a caller-owned
//! [`TxPlan`] with `(frame, egress port)` pairs; it touches no file
//! descriptor, allocates nothing once the plan has grown to its working size,
//! and takes no lock (the bridge is owned by one datapath thread).
//!
//! It also records what happens to its tables (MACs learned, moved,
//! flapping, aged; tables full; drop bursts) into a bounded
//! [`EventBuffer`], coalesced per interval as [`crate::events`] describes;
//! the caller ends each interval with [`Bridge::end_interval`] and drains
//! the buffer.

use std::time::Duration;

use crate::counters::{DropCounters, DropReason, LearningCounters, PortCounters};
use crate::events::{self, EventBuffer, EventKind, FlapTracker, MacEvent, NetEventBudget};
use crate::fdb::{DEFAULT_FDB_LIMIT, Fdb, FdbEntry, FdbError, Learned, MacHash};
use crate::port::{FloodBucket, NetworkId, PortConfig, PortId};
use crate::replica::{ChangeLog, FdbChange, FdbChanges};
use crate::time::Timestamp;
use crate::wire::{EthernetFrame, MacAddr};

/// Default FDB aging time, as 802.1D recommends.
pub const DEFAULT_AGING_TIME: Duration = Duration::from_secs(300);
/// Shortest aging time 802.1D allows.
pub const MIN_AGING_TIME: Duration = Duration::from_secs(10);
/// Longest aging time 802.1D allows.
pub const MAX_AGING_TIME: Duration = Duration::from_secs(1_000_000);
/// Ports and networks are numbered below this bound.
pub const MAX_IDS: u32 = 1 << 16;
/// Frames whose FDB buckets [`Bridge::forward_batch`] prefetches before it
/// decides the first of them: enough misses in flight to hide most of the
/// memory latency, few enough that the first lines are back (and the last
/// not yet evicted) when their frames are decided. 16 frames are 32
/// prefetches, about what a core's outstanding-miss buffers track; with 32
/// frames (64 lines) the prefetch instructions themselves stalled (`perf
/// annotate` of the 100,000-MAC benchmark, AMD EPYC).
const PREFETCH_CHUNK: usize = 16;

/// The aging time of a replica's table: its entries never expire (they
/// leave when the owner's do).
const NEVER: Duration = Duration::from_millis(u64::MAX);

/// Errors from configuring the bridge. A failed call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The id is beyond [`MAX_IDS`].
    #[error("id {0} is out of range (max {MAX_IDS})")]
    IdOutOfRange(u32),
    /// A network with that id exists already.
    #[error("network {0} already exists")]
    NetworkExists(NetworkId),
    /// No network with that id.
    #[error("network {0} does not exist")]
    NoSuchNetwork(NetworkId),
    /// The network still has ports.
    #[error("network {0} still has {1} port(s)")]
    NetworkInUse(NetworkId, usize),
    /// Table changes were sent to a network that is not a replica.
    #[error("network {0} is not a replica of another worker's")]
    NotReplica(NetworkId),
    /// A port with that id exists already.
    #[error("port {0} already exists")]
    PortExists(PortId),
    /// No port with that id.
    #[error("port {0} does not exist")]
    NoSuchPort(PortId),
    /// The port belongs to another network than the one named.
    #[error("port {port} is not on network {network}")]
    PortNotOnNetwork {
        /// The port.
        port: PortId,
        /// The network named.
        network: NetworkId,
    },
    /// Aging time outside 802.1D's range.
    #[error("aging time {0:?} is outside 10..=1000000 seconds")]
    InvalidAgingTime(Duration),
    /// The FDB refused the entry.
    #[error(transparent)]
    Fdb(#[from] FdbError),
}

/// Configuration of one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Most FDB entries the network may hold.
    pub fdb_limit: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { fdb_limit: DEFAULT_FDB_LIMIT }
    }
}

/// One received frame handed to the bridge.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// The port it arrived on.
    pub port: PortId,
    /// The Ethernet frame, starting at the destination MAC.
    pub bytes: &'a [u8],
    /// True for a GSO super-frame (virtio-net header says it will be
    /// segmented later), which may exceed the MTU.
    pub gso: bool,
}

/// "Send frame number `frame` of the batch out of `port`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Index of the frame in the batch given to [`Bridge::forward_batch`].
    pub frame: u32,
    /// The egress port.
    pub port: PortId,
}

/// The output of a batch decision: what to send where. Reuse one plan across
/// batches so its buffer is allocated only while it grows.
#[derive(Debug, Default, Clone)]
pub struct TxPlan {
    sends: Vec<Transmit>,
}

impl TxPlan {
    /// A plan with room for `capacity` transmissions.
    pub fn with_capacity(capacity: usize) -> TxPlan {
        TxPlan { sends: Vec::with_capacity(capacity) }
    }

    /// The transmissions, in the order decided (frame order; a flooded frame's
    /// copies are adjacent).
    pub fn sends(&self) -> &[Transmit] {
        &self.sends
    }

    /// Number of transmissions.
    pub fn len(&self) -> usize {
        self.sends.len()
    }

    /// True when nothing is to be sent.
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }

    fn clear(&mut self) {
        self.sends.clear();
    }

    #[inline]
    fn push(&mut self, frame: u32, port: PortId) {
        self.sends.push(Transmit { frame, port });
    }
}

/// A forwarding entry as the control plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbRecord {
    /// The network.
    pub network: NetworkId,
    /// The station address.
    pub mac: MacAddr,
    /// Where it lives.
    pub port: PortId,
    /// Time since last seen (zero-based for static entries: since added).
    pub age: Duration,
    /// Static or learned.
    pub is_static: bool,
    /// A static entry the daemon's cluster view installed (the datapath
    /// sets it in its snapshots; the bridge does not know and says false).
    pub cluster: bool,
}

#[derive(Debug)]
struct PortState {
    config: PortConfig,
    up: bool,
    learned: usize,
    counters: PortCounters,
    /// Drop counters at the end of the last interval (drop bursts).
    reported_drops: DropCounters,
    /// What is left of the port's [`PortConfig::flood_limit`].
    flood: FloodBucket,
}

impl PortState {
    /// A new port: up, nothing learned or counted yet.
    fn new(config: PortConfig) -> PortState {
        PortState {
            config,
            up: true,
            learned: 0,
            counters: PortCounters::default(),
            reported_drops: DropCounters::default(),
            flood: FloodBucket::default(),
        }
    }
}

#[derive(Debug)]
struct NetworkState {
    fdb: Fdb,
    members: Vec<PortId>,
    learning: LearningCounters,
    /// MAC events recorded this interval, and refusals last reported.
    budget: NetEventBudget,
    /// This node's mesh station on the network (see
    /// [`Bridge::set_mesh_station`]): unicast to or from it crosses between
    /// the gateway port and tunnels.
    mesh: Option<MacAddr>,
    /// Whether the table is kept in step with other workers' bridges.
    replication: Replication,
    /// The aging time its lookups use: the bridge's, or [`NEVER`] for a
    /// replica (kept here so the forwarding decision reads it with the
    /// table, without a branch on the network's kind).
    aging: Duration,
}

/// A network's part in spreading it over workers (see [`crate::replica`]).
#[derive(Debug)]
enum Replication {
    /// Not spread: this bridge alone switches it.
    Alone,
    /// This bridge owns the network and records its table's changes for
    /// the replicas.
    Owner(ChangeLog),
    /// The network is owned elsewhere: this bridge forwards only known
    /// unicast between its own ports, and hands every other frame to `punt`
    /// (the port toward the owner), undecided and uncounted.
    Replica { punt: PortId },
}

impl NetworkState {
    /// Records a change of the table for the replicas, if there are any.
    #[inline]
    fn record(&mut self, change: FdbChange) {
        if let Replication::Owner(log) = &mut self.replication {
            log.record(change);
        }
    }

    /// Whether the network is a replica of another worker's.
    #[inline]
    fn is_replica(&self) -> bool {
        matches!(self.replication, Replication::Replica { .. })
    }

    /// Records a change of the table not listed change by change.
    fn record_reset(&mut self) {
        if let Replication::Owner(log) = &mut self.replication {
            log.reset();
        }
    }
}

/// An IEEE 802.1D learning bridge over many isolated networks.
#[derive(Debug)]
pub struct Bridge {
    ports: Vec<Option<PortState>>,
    networks: Vec<Option<NetworkState>>,
    aging: Duration,
    unknown_port: u64,
    /// What happened since the caller last drained it.
    events: EventBuffer,
    /// MACs moving between ports.
    flaps: FlapTracker,
    /// When the current event interval began.
    interval_start: Timestamp,
    /// Networks this bridge holds as replicas: without any, no frame is
    /// checked for one.
    replicas: usize,
}

impl Default for Bridge {
    fn default() -> Self {
        Self::new()
    }
}

fn check_id(id: u32) -> Result<usize, BridgeError> {
    if id < MAX_IDS { Ok(id as usize) } else { Err(BridgeError::IdOutOfRange(id)) }
}

fn slot<T>(v: &mut Vec<Option<T>>, index: usize) -> &mut Option<T> {
    if v.len() <= index {
        v.resize_with(index + 1, || None);
    }
    &mut v[index]
}

impl Bridge {
    /// A bridge with no networks and the default aging time.
    pub fn new() -> Bridge {
        Bridge {
            ports: Vec::new(),
            networks: Vec::new(),
            aging: DEFAULT_AGING_TIME,
            unknown_port: 0,
            events: EventBuffer::default(),
            flaps: FlapTracker::default(),
            interval_start: Timestamp(0),
            replicas: 0,
        }
    }

    /// The FDB aging time.
    pub fn aging_time(&self) -> Duration {
        self.aging
    }

    /// Sets the FDB aging time (802.1D range: 10 s to 1,000,000 s).
    pub fn set_aging_time(&mut self, aging: Duration) -> Result<(), BridgeError> {
        if !(MIN_AGING_TIME..=MAX_AGING_TIME).contains(&aging) {
            return Err(BridgeError::InvalidAgingTime(aging));
        }
        self.aging = aging;
        for net in self.networks.iter_mut().flatten() {
            if !net.is_replica() {
                net.aging = aging;
            }
        }
        Ok(())
    }

    /// Creates network `id`.
    pub fn add_network(&mut self, id: NetworkId, config: NetworkConfig) -> Result<(), BridgeError> {
        self.add_network_with(id, Fdb::new(config.fdb_limit)).map_err(|(_, e)| e)
    }

    /// [`Bridge::add_network`] with its forwarding table made by the caller
    /// (its limit is the network's): a large table is megabytes to map and
    /// fill, which the daemon does on its control thread, not on the packet
    /// path that owns the bridge. A refused table is handed back, so that
    /// it too is freed where the caller chooses.
    pub fn add_network_with(&mut self, id: NetworkId, fdb: Fdb) -> Result<(), (Fdb, BridgeError)> {
        let index = match check_id(id.0) {
            Ok(index) => index,
            Err(e) => return Err((fdb, e)),
        };
        let slot = slot(&mut self.networks, index);
        if slot.is_some() {
            return Err((fdb, BridgeError::NetworkExists(id)));
        }
        *slot = Some(NetworkState {
            fdb,
            members: Vec::new(),
            learning: LearningCounters::default(),
            budget: NetEventBudget::default(),
            mesh: None,
            replication: Replication::Alone,
            aging: self.aging,
        });
        Ok(())
    }

    /// [`Bridge::add_network_with`] and, when given, the network's first
    /// port (its gateway), both or neither: the port's id is checked before
    /// the network is added, so nothing needs undoing.
    pub fn add_network_with_port(
        &mut self,
        id: NetworkId,
        fdb: Fdb,
        port: Option<(PortId, PortConfig)>,
    ) -> Result<(), (Fdb, BridgeError)> {
        let checked = match port {
            Some((port, config)) => match self.free_port_index(port) {
                Ok(index) => Some((index, port, PortConfig { network: id, ..config })),
                Err(e) => return Err((fdb, e)),
            },
            None => None,
        };
        self.add_network_with(id, fdb)?;
        if let Some((index, port, config)) = checked {
            *slot(&mut self.ports, index) = Some(PortState::new(config));
            if let Some(Some(net)) = self.networks.get_mut(id.index()) {
                net.members.push(port);
            }
        }
        Ok(())
    }

    /// The slot of port `id`, when `id` is valid and not taken.
    fn free_port_index(&self, id: PortId) -> Result<usize, BridgeError> {
        let index = check_id(id.0)?;
        if self.ports.get(index).is_some_and(Option::is_some) {
            return Err(BridgeError::PortExists(id));
        }
        Ok(index)
    }

    /// Adds network `id` as a replica of a network another worker's bridge
    /// owns (see [`crate::replica`]): its table follows the owner's
    /// ([`Bridge::apply_changes`]), it never learns or ages on its own,
    /// and every frame it cannot forward alone is planned to `punt`, the
    /// port toward the owner, without being counted here (the owner counts
    /// it when it decides it). `punt` needs no bridge port.
    pub fn add_replica_network(&mut self, id: NetworkId, fdb: Fdb, punt: PortId) -> Result<(), (Fdb, BridgeError)> {
        self.add_network_with(id, fdb)?;
        if let Ok(net) = self.network_mut(id) {
            net.replication = Replication::Replica { punt };
            net.aging = NEVER;
        }
        self.replicas += 1;
        Ok(())
    }

    /// Starts recording network `id`'s table changes for replicas on other
    /// workers; the first update ([`Bridge::take_changes`]) is the whole
    /// table.
    pub fn replicate(&mut self, id: NetworkId) -> Result<(), BridgeError> {
        let net = self.network_mut(id)?;
        if !matches!(net.replication, Replication::Replica { .. }) {
            net.replication = Replication::Owner(ChangeLog::starting_with_reset());
        }
        Ok(())
    }

    /// What changed in the table of `id`, a network this bridge owns and
    /// replicates, since the last call; `None` when nothing did (or it is
    /// not replicated).
    pub fn take_changes(&mut self, id: NetworkId) -> Option<FdbChanges> {
        let net = self.networks.get_mut(id.index())?.as_mut()?;
        match &mut net.replication {
            Replication::Owner(log) if !log.is_empty() => log.take(&net.fdb),
            _ => None,
        }
    }

    /// Flushes the learned entries of every network this bridge owns or
    /// switches alone (a replica's follow its owner's); returns how many.
    pub fn flush_all(&mut self) -> usize {
        let ids: Vec<NetworkId> = self.network_ids().filter(|&n| !self.is_replica(n)).collect();
        ids.into_iter().filter_map(|n| self.flush_network(n).ok()).sum()
    }

    /// The entries of replica `id` whose station sent a frame this replica
    /// forwarded at or after `since` (a frame forwarded in the millisecond
    /// of the last report is reported again: harmless): for the owner,
    /// whose table would otherwise age them out while their traffic crosses
    /// the replica. Copies the replica never forwarded for are not listed.
    pub fn replica_seen(&self, id: NetworkId, since: Timestamp) -> Vec<(MacAddr, PortId)> {
        match self.network(id) {
            Ok(net) if matches!(net.replication, Replication::Replica { .. }) => {
                // Time zero: a copy never forwarded for (`apply_changes`).
                let forwarded = |e: &FdbEntry| e.last_seen >= since && e.last_seen != Timestamp(0);
                net.fdb.iter().filter(|(_, e)| forwarded(e)).map(|(mac, e)| (mac, e.port)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Marks the stations a replica of `id` forwarded for as seen at `now`
    /// (see [`Bridge::replica_seen`]), where they are still learned on the
    /// same port; returns how many were.
    pub fn refresh(&mut self, id: NetworkId, seen: &[(MacAddr, PortId)], now: Timestamp) -> usize {
        let Ok(net) = self.network_mut(id) else { return 0 };
        if net.is_replica() {
            return 0;
        }
        seen.iter().filter(|&&(mac, port)| net.fdb.refresh(mac, port, now)).count()
    }

    /// Whether network `id` is a replica of another worker's.
    pub fn is_replica(&self, id: NetworkId) -> bool {
        self.network(id).is_ok_and(NetworkState::is_replica)
    }

    /// Whether this bridge holds any replica network.
    pub fn has_replicas(&self) -> bool {
        self.replicas > 0
    }

    /// Whether `port` is a port of a replica network (another worker owns
    /// its network, and reports, captures and decides for it).
    pub fn on_replica(&self, port: PortId) -> bool {
        self.port(port).is_ok_and(|p| self.is_replica(p.config.network))
    }

    /// Brings the table of replica `id` level with its owner's.
    pub fn apply_changes(&mut self, id: NetworkId, changes: FdbChanges) -> Result<(), BridgeError> {
        let net = self.network_mut(id)?;
        if !matches!(net.replication, Replication::Replica { .. }) {
            return Err(BridgeError::NotReplica(id));
        }
        // Learned here, and never expiring: a replica's entries leave only
        // when the owner's do (aging there is a change like any other).
        // Their age says when the replica last forwarded for them
        // ([`Bridge::replica_seen`]): never, for a new or moved copy (time
        // zero), so that the owner's own entries are not refreshed by their
        // copies; an entry that stays where it was keeps its time, so that
        // forwarding not yet reported is not forgotten. The owner's table
        // has the same limit, so there is room.
        let set = |fdb: &mut Fdb, mac: MacAddr, port: PortId| {
            if fdb.get(mac).is_none_or(|e| e.port != port) {
                let _ = fdb.learn(mac, port, Timestamp(0), true);
            }
        };
        match changes {
            FdbChanges::Changes(changes) => {
                for change in changes {
                    match change {
                        FdbChange::Set(mac, port) => set(&mut net.fdb, mac, port),
                        FdbChange::Remove(mac) => {
                            net.fdb.remove(mac);
                        }
                    }
                }
            }
            FdbChanges::Reset(entries) => {
                let keep: std::collections::HashSet<MacAddr> = entries.iter().map(|&(mac, _)| mac).collect();
                let gone: Vec<MacAddr> = net.fdb.iter().map(|(mac, _)| mac).filter(|mac| !keep.contains(mac)).collect();
                for mac in gone {
                    net.fdb.remove(mac);
                }
                for (mac, port) in entries {
                    set(&mut net.fdb, mac, port);
                }
            }
        }
        Ok(())
    }

    /// Removes network `id`; refused while it has ports. Returns its
    /// forwarding table for the caller to free (a large one is an unmap of
    /// megabytes, which the daemon does off the packet path).
    pub fn remove_network(&mut self, id: NetworkId) -> Result<Fdb, BridgeError> {
        let net = self.network(id)?;
        if !net.members.is_empty() {
            return Err(BridgeError::NetworkInUse(id, net.members.len()));
        }
        let removed = self.networks[id.index()].take().ok_or(BridgeError::NoSuchNetwork(id))?;
        if matches!(removed.replication, Replication::Replica { .. }) {
            self.replicas -= 1;
        }
        Ok(removed.fdb)
    }

    /// Adds port `id` to its network, administratively up.
    pub fn add_port(&mut self, id: PortId, config: PortConfig) -> Result<(), BridgeError> {
        self.network(config.network)?;
        let index = self.free_port_index(id)?;
        *slot(&mut self.ports, index) = Some(PortState::new(config));
        self.network_mut(config.network)?.members.push(id);
        Ok(())
    }

    /// Every byte sent out of any port so far (a worker's share of the
    /// traffic, for weighing one connection against it).
    pub fn tx_bytes_total(&self) -> u64 {
        self.ports.iter().flatten().map(|p| p.counters.tx_bytes).sum()
    }

    /// Takes back the counts of a frame of `len` bytes forwarded from
    /// `ingress` to `egress` that another worker will write, and count, instead
    /// (a spread network's placed connection).
    pub fn uncount_forwarded(&mut self, ingress: PortId, egress: PortId, len: u64) {
        if let Some(Some(port)) = self.ports.get_mut(ingress.index()) {
            port.counters.rx_packets = port.counters.rx_packets.saturating_sub(1);
            port.counters.rx_bytes = port.counters.rx_bytes.saturating_sub(len);
        }
        if let Some(Some(port)) = self.ports.get_mut(egress.index()) {
            port.counters.tx_packets = port.counters.tx_packets.saturating_sub(1);
            port.counters.tx_bytes = port.counters.tx_bytes.saturating_sub(len);
        }
    }

    /// Removes port `id` and every FDB entry (static too) pointing at it.
    pub fn remove_port(&mut self, id: PortId) -> Result<PortCounters, BridgeError> {
        let network = self.port(id)?.config.network;
        let net = self.network_mut(network)?;
        net.fdb.flush_port(id, true, |_| {});
        net.record_reset();
        net.members.retain(|&p| p != id);
        let state = self.ports[id.index()].take().ok_or(BridgeError::NoSuchPort(id))?;
        Ok(state.counters)
    }

    /// Sets a port up or down. Going down flushes its learned entries, as a
    /// link-down does on Linux bridges; a down port neither sends nor receives.
    pub fn set_port_up(&mut self, id: PortId, up: bool) -> Result<(), BridgeError> {
        let network = self.port(id)?.config.network;
        if !up {
            let mut removed = 0;
            let net = self.network_mut(network)?;
            net.fdb.flush_port(id, false, |_| removed += 1);
            net.record_reset();
            let port = self.port_mut(id)?;
            port.learned = port.learned.saturating_sub(removed);
        }
        self.port_mut(id)?.up = up;
        Ok(())
    }

    /// The configuration of port `id`.
    pub fn port_config(&self, id: PortId) -> Result<PortConfig, BridgeError> {
        Ok(self.port(id)?.config)
    }

    /// The counters of port `id`.
    pub fn port_counters(&self, id: PortId) -> Result<PortCounters, BridgeError> {
        Ok(self.port(id)?.counters)
    }

    /// The number of MACs currently learned on port `id`.
    pub fn port_learned(&self, id: PortId) -> Result<usize, BridgeError> {
        Ok(self.port(id)?.learned)
    }

    /// The learning counters of network `id`.
    pub fn learning_counters(&self, id: NetworkId) -> Result<LearningCounters, BridgeError> {
        Ok(self.network(id)?.learning)
    }

    /// The ids of every network.
    pub fn network_ids(&self) -> impl Iterator<Item = NetworkId> + '_ {
        self.networks.iter().enumerate().filter(|(_, n)| n.is_some()).map(|(i, _)| NetworkId(i as u32))
    }

    /// The ports of network `id`, in the order they were added.
    pub fn network_ports(&self, id: NetworkId) -> Result<&[PortId], BridgeError> {
        Ok(&self.network(id)?.members)
    }

    /// Counts a drop that happened outside the forwarding decision (e.g. the
    /// egress device refused the frame). Unknown ports are ignored.
    pub fn count_drop(&mut self, id: PortId, reason: DropReason) {
        count_drop(&mut self.ports, id, reason);
    }

    /// Counts `n` drops of `reason` on port `id` at once (drops a device
    /// reports in bulk, such as an AF_XDP socket's kernel counters).
    pub fn count_drops(&mut self, id: PortId, reason: DropReason, n: u64) {
        if let Some(p) = self.ports.get_mut(id.index()).and_then(Option::as_mut) {
            p.counters.drops.add(reason, n);
        }
    }

    /// Frames that named a port the bridge does not have (a caller bug).
    pub fn unknown_port_frames(&self) -> u64 {
        self.unknown_port
    }

    /// Adds (or replaces) a static entry: `mac` lives on `port` of `network`,
    /// never ages and is never overwritten by learning.
    pub fn add_static(
        &mut self,
        network: NetworkId,
        mac: MacAddr,
        port: PortId,
        now: Timestamp,
    ) -> Result<(), BridgeError> {
        if self.port(port)?.config.network != network {
            return Err(BridgeError::PortNotOnNetwork { port, network });
        }
        let net = self.network_mut(network)?;
        let replaced = net.fdb.insert_static(mac, port, now)?;
        net.record(FdbChange::Set(mac, port));
        if let Some(old) = replaced {
            forget_learned(&mut self.ports, &old);
        }
        Ok(())
    }

    /// The port of the static entry for `mac` on `network`, if there is one.
    pub fn static_port(&self, network: NetworkId, mac: MacAddr) -> Option<PortId> {
        self.network(network).ok()?.fdb.get(mac).filter(|e| e.is_static).map(|e| e.port)
    }

    /// Counts a frame the switch took off `port` and answered itself (proxy
    /// ARP/ND) as received; `false` (nothing counted) when the port is
    /// unknown or down, where the frame is the bridge's to drop.
    pub fn receive_local(&mut self, port: PortId, len: usize) -> bool {
        match self.ports.get_mut(port.index()).and_then(Option::as_mut) {
            Some(p) if p.up => {
                p.counters.rx_packets += 1;
                p.counters.rx_bytes += len as u64;
                true
            }
            _ => false,
        }
    }

    /// Removes the entry for `mac` on `network`; returns whether one existed.
    pub fn remove_entry(&mut self, network: NetworkId, mac: MacAddr) -> Result<bool, BridgeError> {
        let net = self.network_mut(network)?;
        let removed = net.fdb.remove(mac);
        if let Some(old) = removed {
            net.record(FdbChange::Remove(mac));
            forget_learned(&mut self.ports, &old);
        }
        Ok(removed.is_some())
    }

    /// Flushes the learned entries of `network` (static ones stay).
    pub fn flush_network(&mut self, network: NetworkId) -> Result<usize, BridgeError> {
        let Bridge { ports, networks, .. } = self;
        let net =
            networks.get_mut(network.index()).and_then(Option::as_mut).ok_or(BridgeError::NoSuchNetwork(network))?;
        let mut removed = 0;
        net.fdb.flush(false, |e| {
            removed += 1;
            forget_learned(ports, e);
        });
        net.record_reset();
        Ok(removed)
    }

    /// Removes every learned entry older than the aging time; returns how many.
    /// Call it periodically (every second is plenty): lookups already ignore
    /// expired entries, this reclaims their room. Each removal is a
    /// [`EventKind::MacAged`] event (within the network's event budget).
    pub fn age(&mut self, now: Timestamp) -> usize {
        let Bridge { ports, networks, aging, events, .. } = self;
        let mut total = 0;
        for (index, net) in networks.iter_mut().enumerate() {
            let Some(NetworkState { fdb, learning, budget, replication, .. }) = net else { continue };
            // A replica's entries leave when the owner's do.
            let mut log = match replication {
                Replication::Replica { .. } => continue,
                Replication::Owner(log) => Some(log),
                Replication::Alone => None,
            };
            let network = NetworkId(index as u32);
            let mut removed = 0;
            fdb.age(now, *aging, |mac, e| {
                removed += 1;
                if let Some(log) = log.as_mut() {
                    log.record(FdbChange::Remove(mac));
                }
                forget_learned(ports, e);
                if budget.admit(MacEvent::Aged) {
                    events.push(now, EventKind::MacAged { network, mac, port: e.port });
                }
            });
            learning.aged_out += removed;
            total += removed as usize;
        }
        total
    }

    /// Ends the current event interval (call it once a second, after
    /// [`Bridge::age`]): records the flapping MACs, what the event budgets
    /// suppressed, tables that were full, learning limits reached, and drop
    /// bursts, each once for the interval.
    pub fn end_interval(&mut self, now: Timestamp) {
        let Bridge { ports, networks, events, flaps, interval_start, .. } = self;
        let interval_ms = u32::try_from(now.millis_since(*interval_start)).unwrap_or(u32::MAX);
        *interval_start = now;
        flaps.end_interval(now, events);
        for (index, net) in networks.iter_mut().enumerate() {
            let Some(net) = net else { continue };
            let (full, limited) = (net.learning.table_full, net.learning.port_limit);
            net.budget.end_interval(NetworkId(index as u32), full, limited, net.fdb.limit(), now, events);
        }
        for (index, port) in ports.iter_mut().enumerate() {
            let Some(port) = port else { continue };
            let (network, id) = (Some(port.config.network), Some(PortId(index as u32)));
            events::drop_bursts(network, id, &port.counters.drops, &mut port.reported_drops, interval_ms, now, events);
        }
    }

    /// The events recorded since the last drain.
    pub fn events(&self) -> &EventBuffer {
        &self.events
    }

    /// The event buffer, to drain it or to record the daemon's own
    /// datapath events (tunnels, keys) in order with the bridge's.
    pub fn events_mut(&mut self) -> &mut EventBuffer {
        &mut self.events
    }

    /// A snapshot of network `id`'s forwarding table.
    pub fn fdb_records(&self, id: NetworkId, now: Timestamp) -> Result<Vec<FdbRecord>, BridgeError> {
        let net = self.network(id)?;
        Ok(net
            .fdb
            .iter()
            .map(|(mac, e)| FdbRecord {
                network: id,
                mac,
                port: e.port,
                age: Duration::from_millis(now.millis_since(e.last_seen)),
                is_static: e.is_static,
                cluster: false,
            })
            .collect())
    }

    /// Number of entries in network `id`'s table.
    pub fn fdb_len(&self, id: NetworkId) -> Result<usize, BridgeError> {
        Ok(self.network(id)?.fdb.len())
    }

    /// Sets (or, with `None`, clears) this node's mesh station on
    /// `network`: the MAC the gateway port's translator uses for ingress
    /// flows to other nodes' replicas. Unlike the anycast gateway it is
    /// this node's alone, so known unicast from it to a tunnel, and from a
    /// tunnel to it, passes (every other frame between the gateway port and
    /// a tunnel stays dropped as `gateway_across_tunnel`).
    pub fn set_mesh_station(&mut self, network: NetworkId, mac: Option<MacAddr>) -> Result<(), BridgeError> {
        self.network_mut(network)?.mesh = mac;
        Ok(())
    }

    /// Where `mac` on `network` would be forwarded now, if known.
    pub fn lookup(&self, network: NetworkId, mac: MacAddr, now: Timestamp) -> Option<PortId> {
        let net = self.network(network).ok()?;
        net.fdb.lookup(mac, now, net.aging)
    }

    /// Decides where every frame of a batch goes, learning source addresses
    /// and counting as it goes. `plan` is cleared and then filled.
    ///
    /// Frames are taken [`PREFETCH_CHUNK`] at a time: their source and
    /// destination MACs are hashed and their FDB buckets prefetched first,
    /// then each is decided in order, so the table's cache misses overlap
    /// instead of each frame waiting for its own (VPP's and DPDK's batch
    /// lookup). The result is the same as deciding frame by frame: entries
    /// never move in the table, so a bucket prefetched before an earlier
    /// frame of the chunk learned is still the right one.
    pub fn forward_batch<'a, I>(&mut self, now: Timestamp, frames: I, plan: &mut TxPlan)
    where
        I: IntoIterator<Item = RxFrame<'a>>,
    {
        plan.clear();
        let mut frames = frames.into_iter();
        let mut chunk = [RxFrame { port: PortId(0), bytes: &[], gso: false }; PREFETCH_CHUNK];
        let mut hashes = [None; PREFETCH_CHUNK];
        let mut first = 0u32;
        loop {
            let mut n = 0;
            for rx in frames.by_ref().take(PREFETCH_CHUNK) {
                chunk[n] = rx;
                hashes[n] = self.prefetch(&rx);
                n += 1;
            }
            for (i, (&rx, &hashes)) in chunk[..n].iter().zip(&hashes[..n]).enumerate() {
                self.forward_one(now, first + i as u32, rx, hashes, plan);
            }
            if n < PREFETCH_CHUNK {
                return;
            }
            first += n as u32;
        }
    }

    /// Hashes `rx`'s source and destination MACs for its network's table and
    /// prefetches both buckets; `None` when the frame will not reach the
    /// table (unknown port, too short).
    #[inline]
    fn prefetch(&self, rx: &RxFrame<'_>) -> Option<(MacHash, MacHash)> {
        let port = self.ports.get(rx.port.index())?.as_ref()?;
        let fdb = &self.networks.get(port.config.network.index())?.as_ref()?.fdb;
        let dst = MacAddr(rx.bytes.get(0..6)?.try_into().ok()?);
        let src = MacAddr(rx.bytes.get(6..12)?.try_into().ok()?);
        let hashes = (fdb.hash(src), fdb.hash(dst));
        fdb.prefetch(hashes.0);
        fdb.prefetch(hashes.1);
        Some(hashes)
    }

    /// Decides one frame. `hashes` are its (source, destination) MAC hashes
    /// from [`Bridge::prefetch`], when it computed them. Inlined into the
    /// batch loop by force: as a call it saved and restored a dozen
    /// registers per frame (callgrind, 1,000 MACs: 410 → 380 instructions
    /// per decision).
    #[inline(always)]
    fn forward_one(
        &mut self,
        now: Timestamp,
        index: u32,
        rx: RxFrame<'_>,
        hashes: Option<(MacHash, MacHash)>,
        plan: &mut TxPlan,
    ) {
        if self.replicas > 0
            && let Some(punt) = self.replica_miss(now, &rx)
        {
            if !self.replica_flood_limited(now, &rx) {
                plan.push(index, punt);
            }
            return;
        }
        let Bridge { ports, networks, unknown_port, events, flaps, .. } = self;
        let Some(port) = ports.get_mut(rx.port.index()).and_then(Option::as_mut) else {
            *unknown_port += 1;
            return;
        };
        let len = rx.bytes.len() as u64;
        port.counters.rx_packets += 1;
        port.counters.rx_bytes += len;
        if !port.up {
            port.counters.drops.count(DropReason::PortDown);
            return;
        }
        let Ok(frame) = EthernetFrame::new_checked(rx.bytes) else {
            port.counters.drops.count(DropReason::Truncated);
            return;
        };
        if !rx.gso && rx.bytes.len() > port.config.mtu as usize + frame.header_len() {
            port.counters.drops.count(DropReason::Oversize);
            return;
        }
        let src = frame.source();
        if !src.is_valid_station() {
            port.counters.drops.count(DropReason::InvalidSourceMac);
            return;
        }
        let ingress_kind = port.config.kind;
        let ingress_isolated = port.config.isolated;
        let has_room = port.learned < port.config.learn_limit;
        let network = port.config.network;
        let Some(net) = networks.get_mut(network.index()).and_then(Option::as_mut) else {
            // Cannot happen: add_port requires the network and remove_network
            // requires it to be empty. Count rather than panic on the packet path.
            *unknown_port += 1;
            return;
        };

        let dst = frame.destination();
        let (src_hash, dst_hash) = hashes.unwrap_or_else(|| (net.fdb.hash(src), net.fdb.hash(dst)));
        match net.fdb.learn_hashed(src, src_hash, rx.port, now, has_room) {
            Learned::Refreshed => {}
            Learned::New => {
                net.record(FdbChange::Set(src, rx.port));
                port.learned += 1;
                net.learning.learned += 1;
                if net.budget.admit(MacEvent::Learned) {
                    events.push(now, EventKind::MacLearned { network, mac: src, port: rx.port });
                }
            }
            Learned::Moved { from } => {
                net.record(FdbChange::Set(src, rx.port));
                port.learned += 1;
                net.learning.station_moves += 1;
                decrement_learned(ports, from);
                if flaps.on_move(network, src, from, rx.port, now) && net.budget.admit(MacEvent::Moved) {
                    events.push(now, EventKind::MacMoved { network, mac: src, from, to: rx.port });
                }
            }
            Learned::MoveRefused { from } => {
                net.record(FdbChange::Remove(src));
                net.learning.port_limit += 1;
                net.budget.limited(rx.port);
                decrement_learned(ports, from);
            }
            Learned::StaticConflict => net.learning.static_conflicts += 1,
            Learned::TableFull => net.learning.table_full += 1,
            Learned::PortLimit => {
                net.learning.port_limit += 1;
                net.budget.limited(rx.port);
            }
        }

        let mesh = net.mesh.is_some_and(|m| m == src || m == dst);
        if dst.is_reserved_group() {
            count_drop(ports, rx.port, DropReason::ReservedGroup);
            return;
        }
        // A replica's entries never expire (see `replica_miss`).
        if !dst.is_group()
            && let Some(egress) = net.fdb.lookup_hashed(dst, dst_hash, now, net.aging)
        {
            let reason = if egress == rx.port {
                DropReason::SameSegment
            } else {
                match ports.get_mut(egress.index()).and_then(Option::as_mut) {
                    Some(out) if ingress_kind.crosses_gateway_and_tunnel(out.config.kind) && !mesh => {
                        DropReason::GatewayAcrossTunnel
                    }
                    Some(out) if ingress_kind.is_tunnel() && out.config.kind.is_tunnel() => DropReason::SplitHorizon,
                    Some(out) if ingress_isolated && out.config.isolated => DropReason::Isolated,
                    Some(out) if out.up => {
                        out.counters.tx_packets += 1;
                        out.counters.tx_bytes += len;
                        plan.push(index, egress);
                        return;
                    }
                    _ => DropReason::PortDown,
                }
            };
            count_drop(ports, rx.port, reason);
            return;
        }

        // Broadcast, multicast or unknown unicast: every other port of this
        // network, split horizon between tunnels, none between a tunnel and
        // the gateway, none between isolated ports; within the ingress
        // port's flood limit.
        if let Some(port) = ports.get_mut(rx.port.index()).and_then(Option::as_mut)
            && let Some(limit) = port.config.flood_limit
            && !port.flood.take(limit, now)
        {
            port.counters.drops.count(DropReason::FloodLimited);
            return;
        }
        let mut delivered = 0u32;
        for &member in &net.members {
            if member == rx.port {
                continue;
            }
            let Some(out) = ports.get_mut(member.index()).and_then(Option::as_mut) else { continue };
            if !out.up || !ingress_kind.floods_to(out.config.kind) || (ingress_isolated && out.config.isolated) {
                continue;
            }
            out.counters.tx_packets += 1;
            out.counters.tx_bytes += len;
            plan.push(index, member);
            delivered += 1;
        }
        if let Some(port) = ports.get_mut(rx.port.index()).and_then(Option::as_mut) {
            port.counters.rx_flooded += 1;
            if delivered == 0 {
                port.counters.drops.count(DropReason::NoEgress);
            }
        }
    }

    /// On a replica, before handing frame `rx` to the owner: true (and the
    /// frame dropped as `flood_limited`) when the owner would flood it (a
    /// group or unknown destination) and its port has flooded its share
    /// from this worker's queue. The owner's bucket is the exact limit (it
    /// sees the port's frames from every queue); this one keeps a flooding
    /// port from filling the owner's hand-over room, shared by every port,
    /// with frames the owner would drop.
    fn replica_flood_limited(&mut self, now: Timestamp, rx: &RxFrame<'_>) -> bool {
        let Some(port) = self.ports.get(rx.port.index()).and_then(Option::as_ref) else { return false };
        let Some(limit) = port.config.flood_limit else { return false };
        let Ok(frame) = EthernetFrame::new_checked(rx.bytes) else { return false };
        let (src, dst) = (frame.source(), frame.destination());
        // Frames the owner drops for another reason are its to count.
        let oversize = !rx.gso && rx.bytes.len() > port.config.mtu as usize + frame.header_len();
        if !port.up || oversize || !src.is_valid_station() || dst.is_reserved_group() {
            return false;
        }
        let net = self.networks.get(port.config.network.index()).and_then(Option::as_ref);
        if !dst.is_group() && net.is_some_and(|net| net.fdb.lookup(dst, now, net.aging).is_some()) {
            return false;
        }
        let Some(port) = self.ports.get_mut(rx.port.index()).and_then(Option::as_mut) else { return false };
        if port.flood.take(limit, now) {
            return false;
        }
        // A replica's rx counts what it forwarded itself (`replica_rx`), so
        // this frame is only a drop.
        port.counters.drops.count(DropReason::FloodLimited);
        true
    }

    /// For a frame from a port of a replica network: the port toward the
    /// owner, unless the owner would send it to exactly one of this
    /// bridge's ports — known unicast from a source the owner knows on the
    /// ingress port, to another port here that is up. `None` for every
    /// other frame, and for frames the bridge drops before any decision
    /// (an unknown port, a runt), as the owner would.
    fn replica_miss(&self, now: Timestamp, rx: &RxFrame<'_>) -> Option<PortId> {
        let port = self.ports.get(rx.port.index())?.as_ref()?;
        let net = self.networks.get(port.config.network.index())?.as_ref()?;
        let Replication::Replica { punt } = net.replication else { return None };
        let frame = EthernetFrame::new_checked(rx.bytes).ok()?;
        let (src, dst) = (frame.source(), frame.destination());
        // A port of this network (an id the owner's table still names may
        // have been removed here, and reused by another network).
        let network = port.config.network;
        let here_and_up = |p: PortId| {
            self.ports.get(p.index()).and_then(Option::as_ref).is_some_and(|s| s.up && s.config.network == network)
        };
        let alone = port.up
            && !dst.is_group()
            && net.fdb.lookup(src, now, net.aging) == Some(rx.port)
            && net.fdb.lookup(dst, now, net.aging).is_some_and(|out| out != rx.port && here_and_up(out));
        (!alone).then_some(punt)
    }

    fn port(&self, id: PortId) -> Result<&PortState, BridgeError> {
        self.ports.get(id.index()).and_then(Option::as_ref).ok_or(BridgeError::NoSuchPort(id))
    }

    fn port_mut(&mut self, id: PortId) -> Result<&mut PortState, BridgeError> {
        self.ports.get_mut(id.index()).and_then(Option::as_mut).ok_or(BridgeError::NoSuchPort(id))
    }

    fn network(&self, id: NetworkId) -> Result<&NetworkState, BridgeError> {
        self.networks.get(id.index()).and_then(Option::as_ref).ok_or(BridgeError::NoSuchNetwork(id))
    }

    fn network_mut(&mut self, id: NetworkId) -> Result<&mut NetworkState, BridgeError> {
        self.networks.get_mut(id.index()).and_then(Option::as_mut).ok_or(BridgeError::NoSuchNetwork(id))
    }
}

fn decrement_learned(ports: &mut [Option<PortState>], id: PortId) {
    if let Some(p) = ports.get_mut(id.index()).and_then(Option::as_mut) {
        p.learned = p.learned.saturating_sub(1);
    }
}

fn forget_learned(ports: &mut [Option<PortState>], entry: &FdbEntry) {
    if !entry.is_static {
        decrement_learned(ports, entry.port);
    }
}

fn count_drop(ports: &mut [Option<PortState>], id: PortId, reason: DropReason) {
    if let Some(p) = ports.get_mut(id.index()).and_then(Option::as_mut) {
        p.counters.drops.count(reason);
    }
}

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
