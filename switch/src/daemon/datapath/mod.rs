//! The datapath thread: one event loop (mio/epoll, blocking waits, never
//! busy-polling) that reads frames from every port in batches, asks the
//! [`Bridge`] where they go, and writes them out.
//!
//! TAP frames keep their 12-byte virtio-net header end to end: a TSO super-
//! frame read from one sandbox is written, header and all, to another, so a
//! TCP stream crosses the switch as 64 KiB GSO frames rather than 1500-byte
//! packets. Frames for a network's gateway go to its userspace stack
//! ([`Gateway`]) and its answers re-enter the bridge from the gateway port.
//! Overlay networks reach other hosts through tunnel ports, one per (network,
//! peer), over the [`Tunnel`] underlay sockets. With a cluster store, each
//! overlay also has a cluster view (`cluster`): tunnel ports to the nodes
//! that serve it, their endpoints' MACs, and a proxy that answers local ARP
//! and neighbour solicitations for remote addresses ([`crate::proxy`]).
//!
//! The control plane talks to this thread only through [`DatapathHandle`]:
//! commands on a channel plus a mio waker. The packet path never waits on
//! control work; control waits (bounded) on the packet path's reply.
//!
//! Frame ports are [`PortDevice`]s, the underlay is an
//! [`Underlay`](super::tunnel::Underlay) and `now` comes from a [`Clock`]:
//! the kernel's TAPs, sockets and clocks in the daemon, in-memory queues
//! and a virtual clock in the deterministic tests (`testing` is their
//! harness, `loop_tests` the tests), which drive the same loop one wake-up
//! at a time.

mod capture;
mod cluster;
mod config;
mod device;
mod dns;
mod handle;
mod impair;
#[cfg(test)]
mod loop_tests;
mod nat;
mod overlay_rx;
mod rebalance;
mod spread;
#[cfg(test)]
mod testing;
mod unreachable;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crossbeam_channel::Receiver;
use crypto::{ClusterSecret, NetworkCrypto};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vxlan::{PeerTable, PeerTableConfig, Vni};

use handle::Command;
pub use handle::{
    DatapathError, DatapathHandle, Gateway6Spec, GatewaySpec, ImpairSnapshot, KeyState, NetworkSpec, PortRole,
    RemoteEndpoint, Snapshot, TunnelPortInfo, endpoint_port, gateway_port,
};

use super::batch::{BUFFERS, HDR, RxBatch, RxEntry};
use super::capture::Captures;
use super::events::DatapathEvents;
use super::placement::IdlePoll;
use super::tunnel::{Tunnel, TunnelTx, TxOutcome};
use crate::bridge::{Bridge, TxPlan};
use crate::counters::{DropCounters, DropReason};
use crate::events::EventKind;
use crate::gateway::Gateway;
use crate::offload::{self, TooBig};
use crate::port::{NetworkId, PortId};
use crate::time::{Clock, MonotonicClock, Timestamp};
use crate::wire::VirtioNetHdr;
pub(crate) use device::{PacketDevice, PortDevice, XskDevice};

/// Batches processed before the loop looks at commands and timers again.
const MAX_BATCHES_PER_WAKEUP: usize = 64;
/// The waker's token; port tokens are their `PortId`s.
const WAKER: Token = Token(usize::MAX);
/// The underlay receive socket's token.
const TUNNEL: Token = Token(usize::MAX - 1);
/// Frames read from one AF_XDP port in a row before the next ready port's turn.
const PACKED_BURST: usize = 256;
/// How often aging and gateway timers run when there is no traffic.
const TICK: Duration = Duration::from_secs(1);

/// What sits behind a port.
enum PortIo {
    Tap(Box<dyn PortDevice>),
    Gateway(Box<Gateway>),
    Tunnel {
        vni: Vni,
        remote: SocketAddr,
        owners: TunnelOwners,
    },
    /// On a worker holding a replica of a spread network, at the id of the
    /// network's gateway: the owner worker (by index), where every frame
    /// the replica does not forward itself goes (see `spread`).
    Owner(usize),
}

/// Who keeps a tunnel port: it stays while anyone does. A port no one
/// configured was learned from traffic (`--learn-peers`) and ages out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TunnelOwners {
    /// A static peer (`peer add`).
    peer: bool,
    /// The cluster view (`set_cluster_view`).
    cluster: bool,
}

impl TunnelOwners {
    /// A learned port: no owner.
    const LEARNED: TunnelOwners = TunnelOwners { peer: false, cluster: false };

    /// Whether the port was learned and no one configured it since.
    fn learned(self) -> bool {
        !self.peer && !self.cluster
    }
}

/// Which tunnel slots a worker allocates: `first`, `first + step`, ...
/// (worker `first` of `step` workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TunnelSlots {
    first: u32,
    step: u32,
}

/// What the datapath keeps per network beyond the bridge.
struct NetInfo {
    vni: Option<Vni>,
    /// Keys of an encrypted overlay.
    crypto: Option<Box<NetworkCrypto>>,
    /// The operator's key epoch (`network key rotate`), before automatic rotation.
    key_base: u32,
    /// Automatic key rotation period.
    key_rotation: Option<std::num::NonZeroU64>,
    mtu: u32,
    /// Sandboxes may reach the outside through the gateway.
    egress: bool,
    gateway: Option<PortId>,
    mss_clamp: bool,
    /// The gateway's DNS server's counters.
    dns: ::dns::Counters,
    /// What the cluster view installed (tunnel ports, FDB entries, the
    /// proxy ARP/ND table).
    cluster: cluster::ClusterView,
    /// Proxy ARP/ND answers sent.
    proxy: crate::proxy::ProxyCounters,
    /// On a replica of a spread overlay, the worker owning it: datagrams
    /// from a VTEP the replica has no tunnel port for go there.
    owner: Option<usize>,
}

impl NetInfo {
    /// What a replica of spread overlay `vni` keeps: the VNI and MTU its
    /// tunnel ports send with, whether it clamps SYNs' MSS, and the worker
    /// `owner` owning it (it has no gateway or cluster view; the owner has;
    /// an encrypted overlay's replica gets its own keys afterwards).
    fn replica_overlay(vni: Vni, mtu: u32, mss_clamp: bool, owner: usize) -> NetInfo {
        NetInfo {
            vni: Some(vni),
            crypto: None,
            key_base: 0,
            key_rotation: None,
            mtu,
            egress: false,
            gateway: None,
            mss_clamp,
            dns: ::dns::Counters::default(),
            cluster: Default::default(),
            proxy: Default::default(),
            owner: Some(owner),
        }
    }
}

/// Where the datapath reports to the control plane on its own.
struct Reports {
    /// TAP ports whose device vanished.
    gone: crossbeam_channel::Sender<PortId>,
    /// Events, in batches.
    events: DatapathEvents,
}

struct Datapath {
    poll: Poll,
    inbox: Receiver<Command>,
    bridge: Bridge,
    ports: Vec<Option<PortIo>>,
    nets: Vec<Option<NetInfo>>,
    /// Ports that may have more frames queued (edge-triggered epoll).
    ready: VecDeque<PortId>,
    queued: Vec<bool>,
    tunnel: Option<Tunnel>,
    tunnel_ready: bool,
    /// The cluster secret encrypted overlays derive their keys from.
    secret: Option<ClusterSecret>,
    /// VNI → overlay network.
    vnis: HashMap<u32, NetworkId>,
    /// (VNI, remote VTEP) → tunnel port.
    peers: PeerTable,
    /// The UDP port each peer IP listens on (packets arrive from any port).
    peer_ports: HashMap<IpAddr, u16>,
    clock: Box<dyn Clock>,
    batch: RxBatch,
    plan: TxPlan,
    /// What to do with each datagram of an underlay read.
    rx_plan: Vec<overlay_rx::RxInstruction>,
    /// The headers of the tunnel's received batch, read once.
    rx_parsed: Vec<overlay_rx::Parsed>,
    /// Where the datagrams replicas handed over lie in the batch.
    rx_handed: Vec<crate::daemon::tunnel::Received>,
    /// Counts `transmit` calls: with a frame's index, it names the frame
    /// to the tunnel, which encapsulates a flooded frame once.
    tx_generation: u64,
    /// Gateways that were handed frames in this round.
    busy_gateways: Vec<PortId>,
    /// No gateway's own timer (its next router advertisement) is due
    /// before this; `u64::MAX` when none has one.
    gateway_timer: Timestamp,
    /// Frames made inside the switch, to enter the bridge from a port.
    injected: Vec<(PortId, Vec<u8>)>,
    /// Software GRO of tunnel traffic into TAPs, and the TAP it is for.
    gro: offload::Coalescer,
    gro_port: Option<PortId>,
    /// A GRO merge gathered into one buffer, for port captures only.
    gro_scratch: Vec<u8>,
    last_tick: Timestamp,
    running: bool,
    /// The embedded DNS: records, resolver, forwarded queries.
    dns: dns::DnsService,
    /// The L4 translator and its host sockets (egress, published ports).
    nat: nat::NatIo,
    /// Bounds the ICMP errors the gateways send.
    icmp_budget: unreachable::IcmpBudget,
    /// Where TAP ports whose device vanished are reported.
    gone: crossbeam_channel::Sender<PortId>,
    /// The ports reported there and not removed since (a report is stale
    /// once its port was removed: its id may be another port's by the time
    /// the control plane reads it).
    reported_gone: Vec<PortId>,
    /// Time spent working, and wake-ups (for the busy-time metric).
    busy: Duration,
    wakeups: u64,
    /// How long the loop keeps polling without sleeping after a wake-up
    /// that found work (`--busy-poll-us`); zero: it sleeps at once.
    busy_poll: Duration,
    /// When the last wake-up found work.
    last_work: std::time::Instant,
    /// Time spent in polls that found nothing, read by CPU placement.
    idle_poll: IdlePoll,
    /// Running packet captures (`vswitchctl capture`).
    captures: Captures,
    /// Link impairment of egress ports (`port impair`).
    impair: impair::ImpairIo,
    /// Where the bridge's events (and the datapath's own) go, once per
    /// loop iteration.
    events: DatapathEvents,
    /// TAP ports whose sandbox side is down (writes fail with EIO), by
    /// port index: each change is reported once.
    link_down: Vec<bool>,
    /// Ports whose device queues written frames until it is flushed
    /// (AF_XDP, raw uplinks), flushed after every batch.
    flushed: Vec<PortId>,
    /// The kernel drop total and the device's own drop totals (too long,
    /// broken, transmit queue full, transmit refused) each such port
    /// reported at the last tick.
    kernel_drops: Vec<[u64; 5]>,
    /// The underlay endpoint's drop counters at the last tick (its drop
    /// bursts), and when that was.
    vtep_drops: DropCounters,
    last_interval: Timestamp,
    /// Networks whose proxy ARP/ND table is not empty: without any, no
    /// frame is looked at for it.
    proxying: usize,
    /// The proxy's answer behind a zero virtio-net header.
    proxy_buf: [u8; HDR + crate::proxy::MAX_ANSWER_LEN],
    /// Frames of the batch the proxy answered (not forwarded).
    answered: Vec<usize>,
    /// The tunnel slots this worker allocates.
    tunnel_slots: TunnelSlots,
    /// Networks spread over workers: links to the other workers, frames
    /// to and from owners.
    spread: spread::Spread,
}

impl Datapath {
    fn new(
        poll: Poll,
        inbox: Receiver<Command>,
        tunnel: Option<Tunnel>,
        secret: Option<ClusterSecret>,
        dns: dns::DnsService,
        reports: Reports,
        nat_limits: crate::nat::Limits,
    ) -> io::Result<Datapath> {
        let Reports { gone, events } = reports;
        let mut datapath = Datapath {
            poll,
            inbox,
            bridge: Bridge::new(),
            ports: Vec::new(),
            nets: Vec::new(),
            ready: VecDeque::new(),
            queued: Vec::new(),
            tunnel_ready: false,
            secret,
            tunnel: None,
            vnis: HashMap::new(),
            peers: PeerTable::new(PeerTableConfig::default()),
            peer_ports: HashMap::new(),
            clock: Box::new(MonotonicClock::new()),
            batch: RxBatch::new(),
            plan: TxPlan::with_capacity(BUFFERS * 8),
            rx_plan: Vec::with_capacity(super::batch::MAX_FRAMES),
            rx_parsed: Vec::with_capacity(super::batch::MAX_FRAMES),
            rx_handed: Vec::new(),
            tx_generation: 0,
            busy_gateways: Vec::new(),
            gateway_timer: Timestamp(u64::MAX),
            injected: Vec::new(),
            gro: offload::Coalescer::new(),
            gro_port: None,
            gro_scratch: Vec::new(),
            last_tick: Timestamp(0),
            running: true,
            dns,
            nat: nat::NatIo::new(nat_limits, super::dns_forward::seed()),
            icmp_budget: unreachable::IcmpBudget::new(),
            gone,
            reported_gone: Vec::new(),
            busy: Duration::ZERO,
            wakeups: 0,
            busy_poll: Duration::ZERO,
            last_work: std::time::Instant::now(),
            idle_poll: IdlePoll::default(),
            captures: Captures::default(),
            impair: impair::ImpairIo::new(),
            events,
            link_down: Vec::new(),
            flushed: Vec::new(),
            kernel_drops: Vec::new(),
            vtep_drops: DropCounters::default(),
            last_interval: Timestamp(0),
            proxying: 0,
            proxy_buf: [0; HDR + crate::proxy::MAX_ANSWER_LEN],
            answered: Vec::with_capacity(super::batch::MAX_FRAMES),
            tunnel_slots: TunnelSlots { first: 0, step: 1 },
            spread: spread::Spread::default(),
        };
        if let Some(tunnel) = tunnel {
            datapath.attach_tunnel(tunnel)?;
        }
        Ok(datapath)
    }

    /// Makes `tunnel` the underlay, watched by the event loop.
    fn attach_tunnel(&mut self, tunnel: Tunnel) -> io::Result<()> {
        if let Some(fd) = tunnel.event_fd() {
            self.poll.registry().register(&mut SourceFd(&fd), TUNNEL, Interest::READABLE)?;
        }
        self.tunnel = Some(tunnel);
        self.tunnel_ready = true;
        Ok(())
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while self.running {
            let busy = self.has_input();
            // Traffic that just flowed is likely to flow on: polling a
            // little longer spares the sender the wake-up (an IPI, a VM
            // exit under a hypervisor) and the frame the sleep.
            let polling = !busy && !self.busy_poll.is_zero() && self.last_work.elapsed() < self.busy_poll;
            let timeout = if busy {
                Duration::ZERO
            } else if polling {
                // Whoever else wants this CPU (a container's server) goes
                // first: polling only takes time nobody needs.
                std::thread::yield_now();
                Duration::ZERO
            } else {
                // Queries to on-network DNS upstreams time out on their own
                // clock, not at the next tick; so do the translator's timers.
                let dns_deadline =
                    self.dns.next_local_deadline().map(|d| Duration::from_millis(d.saturating_sub(self.clock.now().0)));
                let nat_deadline = self.nat_deadline().map(Duration::from_millis);
                // Router advertisements are due on their own clock too.
                let gateway_deadline = (self.gateway_timer.0 != u64::MAX)
                    .then(|| Duration::from_millis(self.gateway_timer.0.saturating_sub(self.clock.now().0)));
                // Wake up for the next tick, not a whole tick after the
                // last wake-up: aging and event intervals stay ~1 s apart.
                let since_tick = self.clock.now().millis_since(self.last_tick);
                let until_tick = TICK.saturating_sub(Duration::from_millis(since_tick));
                [dns_deadline, nat_deadline, gateway_deadline, self.impair_timeout()]
                    .into_iter()
                    .flatten()
                    .fold(until_tick, Duration::min)
            };
            // Only a poll is timed: a sleep is not CPU time.
            let asked = polling.then(std::time::Instant::now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "epoll wait failed");
            }
            let woke = std::time::Instant::now();
            if let Some(asked) = asked
                && events.is_empty()
            {
                // A poll that found nothing: CPU time that was not needed,
                // which CPU placement must not mistake for load.
                self.idle_poll.add(woke - asked);
                continue;
            }
            if !events.is_empty() {
                self.last_work = woke;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    TUNNEL => self.tunnel_ready = true,
                    Token(token) if token >= nat::LISTENER_TOKENS => self.nat_event(token, event),
                    Token(port) => self.mark_ready(PortId(port as u32)),
                }
            }
            self.wakeup();
            self.busy += woke.elapsed();
            self.wakeups += 1;
            self.publish_load();
        }
    }

    /// What one wake-up does once the ready ports are marked: commands,
    /// DNS and translator timers, up to [`MAX_BATCHES_PER_WAKEUP`] batches,
    /// the tick when it is due, and handing the events over.
    fn wakeup(&mut self) {
        // Queries to on-network DNS upstreams time out on their own clock.
        let dns_deadline = self.dns.next_local_deadline();
        self.handle_commands();
        self.dns_results();
        if dns_deadline.is_some() {
            self.expire_local_dns();
        }
        self.nat_timers();
        if self.clock.now() >= self.gateway_timer {
            self.gateway_timers();
        }
        // Bounded, so commands and timers get their turn under load.
        for _ in 0..MAX_BATCHES_PER_WAKEUP {
            if !self.has_input() {
                break;
            }
            self.read_batch();
            self.forward();
        }
        self.release_impaired();
        self.flush_devices();
        let now = self.clock.now();
        if now.millis_since(self.last_tick) >= TICK.as_millis() as u64 {
            self.last_tick = now;
            self.tick(now);
        }
        if !self.bridge.events().is_empty() {
            let now = self.clock.now();
            self.events.flush(self.bridge.events_mut(), now);
        }
        self.send_fdb_changes();
    }

    /// After a wake-up, on a worker with spread networks: publishes its
    /// busy share (at most every 50 ms) and lets the rebalancer act on the
    /// loads as they are then.
    fn publish_load(&mut self) {
        let now = self.clock.now();
        if (self.spread.owns_any() || self.bridge.has_replicas()) && self.spread.publish_busy(self.busy, now) {
            self.spread.rebalance(now, || self.bridge.tx_bytes_total());
        }
    }

    /// Whether frames wait to be read: from ready ports, the underlay, the
    /// translator's sockets, or other workers.
    fn has_input(&self) -> bool {
        !self.ready.is_empty() || self.tunnel_ready || self.nat.has_work() || self.spread.has_input()
    }

    fn tick(&mut self, now: Timestamp) {
        self.check_devices();
        if let Some(tunnel) = &mut self.tunnel {
            tunnel.count_kernel_drops();
        }
        self.send_replica_seen(now);
        if self.spread.owns_any() || self.bridge.has_replicas() {
            self.spread.read_loads(now);
            self.spread.forget_placements(now);
        }
        self.bridge.age(now);
        let unix = self.clock.unix_secs();
        self.rotate_keys(now, unix);
        for aged in self.peers.age(now.0) {
            tracing::info!(peer = %aged.addr, vni = aged.vni.get(), "learned peer aged out");
            self.remove_port_as(PortId(aged.handle), true);
        }
        self.end_event_interval(now);
        // Every gateway runs its timers; on-network DNS queries time out.
        for index in 0..self.ports.len() {
            let port = PortId(index as u32);
            if matches!(self.ports[index], Some(PortIo::Gateway(_))) && !self.busy_gateways.contains(&port) {
                self.busy_gateways.push(port);
            }
        }
        self.dns.expire_local(now);
        self.flush_local_dns();
        self.nat.release_memory();
        if !self.captures.is_empty() {
            self.captures.prune();
        }
        self.run_local(now);
    }

    /// Runs the gateways whose own timer (a router advertisement) is due
    /// and sends what they make.
    fn gateway_timers(&mut self) {
        let now = self.clock.now();
        let mut next = Timestamp(u64::MAX);
        for index in 0..self.ports.len() {
            let Some(Some(PortIo::Gateway(gw))) = self.ports.get(index) else { continue };
            let Some(at) = gw.next_timer() else { continue };
            let port = PortId(index as u32);
            if at <= now {
                if !self.busy_gateways.contains(&port) {
                    self.busy_gateways.push(port);
                }
            } else {
                next = next.min(at);
            }
        }
        // Polling the due gateways lowers it to their next timers.
        self.gateway_timer = next;
        self.run_local(now);
    }

    /// Ends the bridge's event interval (flapping, suppressed events, full
    /// tables, drop bursts) and checks the underlay endpoint for drop bursts.
    fn end_event_interval(&mut self, now: Timestamp) {
        self.bridge.end_interval(now);
        let interval_ms = u32::try_from(now.millis_since(self.last_interval)).unwrap_or(u32::MAX);
        self.last_interval = now;
        if let Some(tunnel) = &self.tunnel {
            let current = tunnel.counters().drops;
            let out = self.bridge.events_mut();
            crate::events::drop_bursts(None, None, &current, &mut self.vtep_drops, interval_ms, now, out);
        }
    }

    /// Moves networks with automatic key rotation to the epoch the wall
    /// clock (`unix`, seconds, read once per tick by the caller) says they
    /// are in.
    fn rotate_keys(&mut self, now: Timestamp, unix: u64) {
        for (index, net) in self.nets.iter_mut().enumerate() {
            let Some(net) = net else { continue };
            let (Some(keys), Some(period)) = (net.crypto.as_mut(), net.key_rotation) else { continue };
            let epoch = effective_epoch(net.key_base, Some(period), unix);
            if epoch != keys.current_epoch() {
                match keys.set_epoch(epoch) {
                    // A replica of a spread overlay rotates too; its owner
                    // tells.
                    Ok(()) if net.owner.is_some() => {}
                    Ok(()) => {
                        tracing::info!(vni = keys.vni().get(), epoch, "key rotated automatically");
                        let network = NetworkId(index as u32);
                        let rotated = EventKind::KeyRotated { network, epoch, automatic: true };
                        self.bridge.events_mut().push(now, rotated);
                    }
                    Err(e) => tracing::error!(vni = keys.vni().get(), error = %e, "automatic key rotation failed"),
                }
            }
        }
    }

    fn mark_ready(&mut self, port: PortId) {
        let i = port.index();
        if i < self.queued.len() && !self.queued[i] {
            self.queued[i] = true;
            self.ready.push_back(port);
        }
    }

    /// Fills the batch: round-robin over ready TAPs, one frame per port per
    /// pass, then whatever the underlay socket holds, until the batch is full
    /// or everything is drained.
    fn read_batch(&mut self) {
        self.batch.clear();
        // Frames replicas handed over first, up to half the batch: they
        // waited already, and the owner's own ports must not starve them.
        if self.spread.has_input() {
            self.read_punted();
            if self.spread.has_datagrams() {
                self.read_handed_datagrams();
            }
        }
        while !self.batch.is_full() {
            let Some(port) = self.ready.pop_front() else { break };
            let Some(Some(PortIo::Tap(tap))) = self.ports.get(port.index()) else {
                self.queued[port.index()] = false;
                continue;
            };
            if tap.reads_batches() {
                // One system call for many frames (a raw uplink).
                if !self.read_port_batch(port) {
                    self.ready.push_front(port);
                    break;
                }
                continue;
            }
            if let Some(max_frame) = tap.max_frame() {
                // Small frames, no system call per read: a burst per port.
                let mut short = 0;
                let (read, stopped) =
                    self.batch.read_packed(port, max_frame, PACKED_BURST, &mut short, |b| tap.recv(b));
                if short > 0 {
                    for _ in 0..short {
                        self.bridge.count_drop(port, DropReason::Truncated);
                    }
                }
                if read > 0 {
                    self.link_seen_up(port);
                }
                match stopped {
                    // The next frame needs a fresh buffer (a multi-buffer
                    // chain longer than the rest of this one).
                    None => self.ready.push_back(port),
                    Some(e) if device::is_no_room(&e) => self.ready.push_back(port),
                    Some(e) if e.kind() == io::ErrorKind::WouldBlock => self.queued[port.index()] = false,
                    Some(e) if device_gone(&e) => self.port_gone(port),
                    Some(e) => {
                        tracing::warn!(%port, error = %e, "read from port failed; waiting for the next event");
                        self.queued[port.index()] = false;
                    }
                }
                continue;
            }
            let Some((buf, bytes)) = self.batch.take_buffer() else {
                self.ready.push_front(port);
                break;
            };
            match tap.recv(bytes) {
                Ok(len) if len >= HDR => {
                    // The one parse of this frame's header (see `RxEntry::hdr`).
                    let hdr = VirtioNetHdr::parse(bytes).unwrap_or_default();
                    self.link_seen_up(port);
                    self.batch.push(RxEntry::from_device(buf, port, len, hdr));
                    self.ready.push_back(port);
                }
                result => {
                    self.batch.return_buffer();
                    match result {
                        // A read shorter than the header: count it as truncated.
                        Ok(_) => {
                            self.bridge.count_drop(port, DropReason::Truncated);
                            self.ready.push_back(port);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queued[port.index()] = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => self.ready.push_back(port),
                        // The device was unregistered: its namespace died
                        // (a container that exited) or it was deleted.
                        Err(e) if device_gone(&e) => self.port_gone(port),
                        Err(e) => {
                            tracing::warn!(%port, error = %e, "read from TAP failed; waiting for the next event");
                            self.queued[port.index()] = false;
                        }
                    }
                }
            }
        }
        if self.tunnel_ready && !self.batch.is_full() {
            self.read_tunnel();
        }
        if !self.batch.is_full() {
            self.read_nat();
        }
    }

    /// Reads a burst from `port`, a device that reads many frames per
    /// system call, straight into the batch's free buffers (one frame
    /// each), and requeues or idles the port as the read says. Returns
    /// false when no buffer was free (nothing was read).
    fn read_port_batch(&mut self, port: PortId) -> bool {
        let Some(Some(PortIo::Tap(device))) = self.ports.get(port.index()) else { return true };
        let frames_left = self.batch.frames_left();
        let (first, bufs) = self.batch.free_buffers();
        let mut slots: [&mut [u8]; device::MAX_BATCH] = Default::default();
        let mut want = 0;
        for (slot, buf) in slots.iter_mut().zip(bufs.take(frames_left)) {
            *slot = buf;
            want += 1;
        }
        if want == 0 {
            return false;
        }
        let mut lens = [0; device::MAX_BATCH];
        let result =
            device.recv_batch(&mut slots[..want], &mut lens).unwrap_or_else(|| Err(io::ErrorKind::Unsupported.into()));
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                match e {
                    e if e.kind() == io::ErrorKind::WouldBlock => self.queued[port.index()] = false,
                    e if e.kind() == io::ErrorKind::Interrupted => self.ready.push_back(port),
                    // The interface was unregistered (deleted, or its
                    // namespace ended).
                    e if device_gone(&e) => self.port_gone(port),
                    e => {
                        tracing::warn!(%port, error = %e, "read from port failed; waiting for the next event");
                        self.queued[port.index()] = false;
                    }
                }
                return true;
            }
        };
        self.batch.use_buffers(n);
        for (k, &len) in lens[..n].iter().enumerate() {
            match len {
                // Dropped by the device itself (counted there).
                0 => {}
                len if len < HDR => self.bridge.count_drop(port, DropReason::Truncated),
                len => {
                    let buf = first + k;
                    let hdr = VirtioNetHdr::parse(self.batch.buffer_mut(buf, 0..HDR)).unwrap_or_default();
                    self.batch.push(RxEntry::from_device(buf, port, len, hdr));
                }
            }
        }
        if n > 0 {
            self.link_seen_up(port);
        }
        // Fewer than asked: the socket's queue is empty, and a frame that
        // arrives later raises a new edge.
        if n == want {
            self.ready.push_back(port);
        } else {
            self.queued[port.index()] = false;
        }
        true
    }

    /// Decides and transmits the current batch, then runs gateways that got
    /// frames and forwards what they (and the tunnel's ICMP answers) produced.
    fn forward(&mut self) {
        let now = self.clock.now();
        for _round in 0..4 {
            if self.batch.is_empty() {
                break;
            }
            if self.captures.ports {
                self.capture_batch();
            }
            if self.proxying > 0 {
                self.answer_neighbours();
            }
            self.clamp_mss();
            self.bridge.forward_batch(now, self.batch.frames(), &mut self.plan);
            self.transmit();
            self.flush_nat_datagrams();
            self.flush_devices();
            self.nat.translator.flush_acks(&mut self.nat.out);
            if self.busy_gateways.is_empty() && self.injected.is_empty() && self.nat.out.is_empty() {
                break;
            }
            self.batch.clear();
            self.push_nat_out();
            self.poll_busy_gateways(now);
            for (port, frame) in std::mem::take(&mut self.injected) {
                if !self.batch.push_local(port, &frame) {
                    self.bridge.count_drop(port, DropReason::TxQueueFull);
                }
            }
        }
        if self.captures.ports || self.captures.underlay {
            self.captures.wake();
        }
        self.send_punted();
    }

    /// Rewrites the MSS of TCP SYNs in networks with `-o mss-clamp` so the
    /// segments fit both the network's MTU and the tunnel (less the
    /// encryption overhead on encrypted overlays), whichever is smaller.
    fn clamp_mss(&mut self) {
        let Some(tunnel) = &self.tunnel else { return };
        if !self.nets.iter().flatten().any(|n| n.mss_clamp) {
            return;
        }
        for i in 0..self.batch.len() {
            let port = self.batch.entry(i).port;
            let mtu = self
                .bridge
                .port_config(port)
                .ok()
                .and_then(|c| self.nets.get(c.network.index())?.as_ref())
                .filter(|n| n.mss_clamp)
                .map(|n| n.mtu.min(tunnel.ip_mtu(n.crypto.is_some())).min(u32::from(u16::MAX)) as u16);
            if let Some(mtu) = mtu {
                let hdr = self.batch.vnet_hdr(i);
                offload::clamp_mss_to_mtu(self.batch.frame_mut(i), &hdr, mtu);
            }
        }
    }

    /// Sends every planned transmission. TCP segments that came off a
    /// tunnel (no virtio-net header) and go to the same TAP are merged into
    /// one GSO frame first (software GRO).
    fn transmit(&mut self) {
        self.tx_generation += 1;
        for k in 0..self.plan.len() {
            let send = self.plan.sends()[k];
            let i = send.frame as usize;
            if self.impair.is_impaired(send.port)
                && !self.too_big_for_tunnel(send.port, i)
                && self.impair_offer(send.port, i)
            {
                // Offered as sent when it leaves; as received now.
                if self.captures.ports {
                    self.capture_replica_rx(i);
                }
                continue;
            }
            let to_tap = matches!(self.ports.get(send.port.index()), Some(Some(PortIo::Tap(d))) if d.takes_gso());
            let entry = self.batch.entry(i);
            if to_tap && !entry.has_vnet_hdr {
                let checksum = entry.checksum;
                if self.gro_port == Some(send.port) && self.gro.push(self.batch.frame(i), i as u32, checksum) {
                    continue;
                }
                self.flush_gro();
                if self.gro.push(self.batch.frame(i), i as u32, checksum) {
                    self.gro_port = Some(send.port);
                    continue;
                }
            } else if self.gro_port == Some(send.port) {
                self.flush_gro();
            }
            self.send_one(send.port, i);
        }
        self.flush_gro();
        self.flush_tunnel();
    }

    /// Sends the tunnel's pending GSO train and counts the frames of any
    /// train that failed on their tunnel ports.
    fn flush_tunnel(&mut self) {
        let Some(tunnel) = self.tunnel.as_mut() else { return };
        tunnel.flush();
        for (port, reason) in tunnel.take_failures() {
            self.bridge.count_drop(port, reason);
        }
    }

    /// Writes the pending GRO merge to its TAP: its headers and the
    /// payloads where they were received, gathered in one `writev`.
    fn flush_gro(&mut self) {
        let Some(port) = self.gro_port.take() else { return };
        let Datapath { gro, ports, bridge, captures, batch, gro_scratch, .. } = self;
        let Some(merged) = gro.take() else { return };
        let Some(Some(PortIo::Tap(tap))) = ports.get(port.index()) else { return };
        let segments = merged.payloads.len();
        let mut slices = [io::IoSlice::new(&[]); offload::MAX_MERGED + 1];
        slices[0] = io::IoSlice::new(merged.head);
        for (slice, (at, range)) in slices[1..].iter_mut().zip(merged.payloads) {
            *slice = io::IoSlice::new(&batch.frame(*at as usize)[range.clone()]);
        }
        let sent = tap.send_vectored(&slices[..=merged.payloads.len()]);
        if captures.ports {
            gro_scratch.clear();
            merged.write_to(gro_scratch, |at| batch.frame(at as usize));
            capture::offer_written(captures, bridge, port, gro_scratch);
        }
        match sent {
            Ok(_) => {
                if segments > 1
                    && let Some(tunnel) = self.tunnel.as_mut()
                {
                    tunnel.count_gro(segments);
                }
                self.link_seen_up(port);
            }
            Err(e) => self.tap_send_failed(port, &e),
        }
    }

    /// A write to TAP `port` failed: counted; EIO means the sandbox's side
    /// of the link is down.
    fn tap_send_failed(&mut self, port: PortId, e: &io::Error) {
        self.bridge.count_drop(port, tx_drop_reason(e));
        if e.raw_os_error() == Some(libc::EIO) {
            self.link_changed(port, false);
        }
    }

    /// A frame crossed TAP `port`: if its link was down, it is up again.
    #[inline]
    fn link_seen_up(&mut self, port: PortId) {
        if self.link_down.get(port.index()) == Some(&true) {
            self.link_changed(port, true);
        }
    }

    /// Records a change of a TAP port's link, once (by the owner of a
    /// spread network's port: a replica's queue sees the same link).
    fn link_changed(&mut self, port: PortId, up: bool) {
        if self.bridge.on_replica(port) {
            return;
        }
        let Some(down) = self.link_down.get_mut(port.index()) else { return };
        if *down != up {
            return;
        }
        *down = !up;
        if let Ok(config) = self.bridge.port_config(port) {
            let now = self.clock.now();
            self.bridge.events_mut().push(now, EventKind::PortLink { network: config.network, port, up });
        }
    }

    /// Sends frame `i` of the batch out of `port`.
    fn send_one(&mut self, port: PortId, i: usize) {
        // Only a worker with spread networks places connections.
        if (self.spread.owns_any() || self.bridge.has_replicas()) && self.place_elsewhere(port, i) {
            return;
        }
        if self.captures.ports {
            self.capture_sent(port, i);
        }
        match self.ports.get_mut(port.index()) {
            Some(Some(PortIo::Tap(tap))) => {
                let hdr = self.batch.vnet_hdr(i);
                let sent = match self.batch.with_vnet_hdr(i) {
                    Some(bytes) => tap.send_parsed(&hdr, bytes, true),
                    None => tap.send_parsed(&hdr, self.batch.frame(i), false),
                };
                match sent {
                    Ok(_) => self.link_seen_up(port),
                    Err(e) => self.tap_send_failed(port, &e),
                }
            }
            Some(Some(PortIo::Gateway(_))) => {
                if self.nat_from_sandbox(port, i) {
                    return;
                }
                if self.batch.entry(i).gso() {
                    self.bridge.count_drop(port, DropReason::Oversize);
                    return;
                }
                if self.dns_detour(port, i) || self.no_route(port, i) {
                    return;
                }
                let now = self.clock.now();
                let Some(Some(PortIo::Gateway(gw))) = self.ports.get_mut(port.index()) else { return };
                let (ingress, frame) = (self.batch.entry(i).port, self.batch.frame(i));
                // An ARP request from the sandbox's address on another of
                // its networks (weak host model) is answered; anyone else's
                // from outside the subnet is ignored, as the stack does.
                let directory = &self.dns.directory;
                let weak_host_arp = gw.off_subnet_arp_sender(frame).is_some_and(|sender| {
                    directory.asker(ingress.0).is_some() && !directory.is_foreign_to_sandbox(ingress.0, sender)
                });
                // A partial TCP/UDP checksum needs nothing here: the gateway's
                // stack does not verify those (see `gateway`), as frames from
                // local TAPs carry partial checksums too.
                let taken = if weak_host_arp { gw.answer_off_subnet_arp(frame) } else { gw.deliver(frame, now) };
                if let Err(reason) = taken {
                    self.bridge.count_drop(ingress, reason);
                    return;
                }
                if !self.busy_gateways.contains(&port) {
                    self.busy_gateways.push(port);
                }
            }
            Some(Some(PortIo::Owner(owner))) => {
                let owner = *owner;
                self.punt(owner, i);
            }
            Some(Some(PortIo::Tunnel { vni, remote, .. })) => {
                let (vni, remote) = (*vni, *remote);
                let Some(tunnel) = self.tunnel.as_mut() else { return };
                let hdr = self.batch.vnet_hdr(i);
                let network = self.bridge.port_config(port).map(|c| c.network).ok();
                let keys = network.and_then(|n| self.nets.get_mut(n.index())?.as_mut()?.crypto.as_deref_mut());
                let frame_id = self.tx_generation << 32 | i as u64;
                let tx = TunnelTx { port, vni, dest: remote, frame_id, frame: self.batch.frame(i), hdr: &hdr };
                match tunnel.send(tx, keys) {
                    TxOutcome::Queued if self.captures.underlay => self.capture_underlay_sent(remote),
                    TxOutcome::Queued => {}
                    TxOutcome::Dropped(reason) => self.bridge.count_drop(port, reason),
                    TxOutcome::TooBig(kind) => {
                        // A replica of a spread overlay has no gateway to
                        // answer from: its owner decides the frame again,
                        // counts it and answers.
                        match network.and_then(|n| self.owner_of_replica(n)) {
                            Some(owner) => self.punt(owner, i),
                            None => {
                                self.bridge.count_drop(port, DropReason::TooBigForTunnel);
                                self.answer_too_big(port, i, kind);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Queues an ICMP "fragmentation needed" / "packet too big" for frame
    /// `i` from the gateway of the tunnel port's network, announcing what
    /// the tunnel carries: the underlay MTU less the encapsulation of the
    /// underlay's family, and less the encryption on an encrypted overlay.
    fn answer_too_big(&mut self, tunnel_port: PortId, i: usize, kind: TooBig) {
        let Some(tunnel) = &self.tunnel else { return };
        let Some(net) =
            self.bridge.port_config(tunnel_port).ok().and_then(|c| self.nets.get(c.network.index())?.as_ref())
        else {
            return;
        };
        let mtu = tunnel.ip_mtu(net.crypto.is_some()).min(u32::from(u16::MAX)) as u16;
        let Some(gateway) = net.gateway else { return };
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return };
        let mut answer = Vec::new();
        let frame = self.batch.frame(i);
        let built = match kind {
            TooBig::Ipv4 => {
                gw.ipv4().and_then(|from| offload::icmp_frag_needed(frame, mtu, gw.mac().0, from, &mut answer))
            }
            TooBig::Ipv6 => offload::icmpv6_packet_too_big(frame, mtu, gw.mac().0, gw.link_local(), &mut answer),
        };
        if built.is_some() {
            self.injected.push((gateway, answer));
        }
    }

    fn poll_gateway(&mut self, port: PortId, now: Timestamp) {
        let Datapath { ports, dns, nets, bridge, gateway_timer, .. } = self;
        let Some(Some(PortIo::Gateway(gw))) = ports.get_mut(port.index()) else { return };
        let Ok(network) = bridge.port_config(port).map(|c| c.network) else { return };
        let Some(info) = nets.get_mut(network.index()).and_then(Option::as_mut) else { return };
        let mut out = Vec::new();
        let subnets = dns::Subnets::of(gw);
        gw.poll(now, &mut out, &mut |query| dns.tcp_query(port, network, subnets, &mut info.dns, query, now));
        if let Some(at) = gw.next_timer() {
            *gateway_timer = (*gateway_timer).min(at);
        }
        for frame in out {
            if !self.batch.push_local(port, &frame) {
                self.bridge.count_drop(port, DropReason::TxQueueFull);
            }
        }
        // TCP queries asked of on-network upstreams.
        self.flush_local_dns();
    }

    /// Runs every gateway that was handed frames (or answers); gateways
    /// that become busy meanwhile (an answer delivered while polling) wait
    /// for the next round.
    fn poll_busy_gateways(&mut self, now: Timestamp) {
        let mut busy = std::mem::take(&mut self.busy_gateways);
        for &port in &busy {
            self.poll_gateway(port, now);
        }
        busy.clear();
        busy.append(&mut self.busy_gateways);
        self.busy_gateways = busy;
    }

    /// Sends what the switch itself made (gateway output, answers queued
    /// in `injected`) through the bridge, outside of a read batch, as many
    /// batches as it takes.
    fn run_local(&mut self, now: Timestamp) {
        self.batch.clear();
        self.poll_busy_gateways(now);
        let injected = std::mem::take(&mut self.injected);
        let mut next = injected.iter();
        loop {
            for (port, frame) in next.by_ref() {
                if !self.batch.push_local(*port, frame) {
                    self.bridge.count_drop(*port, DropReason::TxQueueFull);
                }
                if self.batch.is_full() {
                    break;
                }
            }
            if self.batch.is_empty() {
                break;
            }
            self.forward();
            self.batch.clear();
        }
    }

    /// A TAP whose device is gone: stop watching it and tell the control
    /// plane, which releases the endpoint (and the sandbox, if its
    /// namespace is gone too).
    fn port_gone(&mut self, port: PortId) {
        self.queued[port.index()] = false;
        if let Some(Some(PortIo::Tap(tap))) = self.ports.get(port.index()) {
            if let Some(fd) = tap.event_fd() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
            // A replica's queue goes with the device too; the owner's
            // queue reports it, once.
            if self.bridge.on_replica(port) {
                return;
            }
            tracing::info!(%port, "TAP device gone (its sandbox's namespace ended, or it was deleted)");
            if !self.reported_gone.contains(&port) {
                self.reported_gone.push(port);
            }
            let _ = self.gone.send(port);
        }
    }

    /// Hands the frames written to queueing devices (AF_XDP) to the kernel.
    fn flush_devices(&mut self) {
        for &port in &self.flushed {
            if let Some(Some(PortIo::Tap(device))) = self.ports.get(port.index())
                && let Err(e) = device.flush()
            {
                tracing::debug!(%port, error = %e, "flushing the port's transmit ring failed");
            }
        }
    }

    /// Looks for devices whose failure epoll does not report (an AF_XDP
    /// socket whose interface was unregistered): they are gone.
    fn check_devices(&mut self) {
        let mut gone = Vec::new();
        for (index, io) in self.ports.iter().enumerate() {
            if let Some(PortIo::Tap(device)) = io
                && let Err(e) = device.check()
            {
                tracing::info!(port = index, error = %e, "port device failed");
                gone.push(PortId(index as u32));
            }
        }
        // The kernel's own drops of queueing devices, as deltas.
        for &port in &self.flushed {
            let Some(Some(PortIo::Tap(device))) = self.ports.get(port.index()) else { continue };
            let own = device.device_drops();
            let totals = [device.kernel_drops(), own.too_long, own.broken, own.tx_queue_full, own.tx_error];
            if self.kernel_drops.len() <= port.index() {
                self.kernel_drops.resize(port.index() + 1, [0; 5]);
            }
            let last = std::mem::replace(&mut self.kernel_drops[port.index()], totals);
            let reasons = [
                device.kernel_drop_reason(),
                DropReason::Oversize,
                DropReason::XskBadDescriptor,
                DropReason::TxQueueFull,
                DropReason::TxError,
            ];
            for ((reason, total), last) in reasons.into_iter().zip(totals).zip(last) {
                if total > last {
                    self.bridge.count_drops(port, reason, total - last);
                }
            }
        }
        for port in gone {
            self.port_gone(port);
        }
    }

    fn handle_commands(&mut self) {
        while let Ok(command) = self.inbox.try_recv() {
            self.handle(command);
        }
    }
}

/// The key epoch in use: the operator's epoch plus, with automatic rotation,
/// the number of whole rotation periods since the Unix epoch.
fn effective_epoch(base: u32, rotation: Option<std::num::NonZeroU64>, unix_secs: u64) -> u32 {
    rotation.map_or(base, |period| base.wrapping_add((unix_secs / period.get()) as u32))
}

/// Whether a read error says the device behind a port is gone: `EBADFD` for
/// an unregistered TAP, `ENETDOWN`/`ENXIO`/`ENODEV` for a socket whose
/// interface was unregistered.
fn device_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBADFD | libc::ENETDOWN | libc::ENXIO | libc::ENODEV))
}

/// The drop reason for a failed TAP write.
fn tx_drop_reason(e: &io::Error) -> DropReason {
    if e.kind() == io::ErrorKind::WouldBlock {
        DropReason::TxQueueFull
    } else if e.raw_os_error() == Some(libc::EMSGSIZE) {
        // Longer than the device carries (more AF_XDP chunks than a frame
        // may span).
        DropReason::Oversize
    } else {
        DropReason::TxError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_rotation_follows_the_wall_clock() {
        let hour = std::num::NonZeroU64::new(3600);
        assert_eq!(effective_epoch(5, None, 1_000_000), 5);
        assert_eq!(effective_epoch(5, hour, 3599), 5);
        assert_eq!(effective_epoch(5, hour, 3600), 6);
        assert_eq!(effective_epoch(2, hour, 7 * 3600 + 1), 9);
        let mac = crate::wire::MacAddr([0x02, 0x76, 10, 0, 0, 1]);
        let expected = "fe80::76:aff:fe00:1".parse::<std::net::Ipv6Addr>().unwrap();
        assert_eq!(crate::gateway::link_local(mac), expected);
    }
}
