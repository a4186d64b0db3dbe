//! The translator: the flow table, the published ports' backends, timers,
//! and what happens to each frame and socket event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use hashbrown::HashMap;

use super::flow::{Flow, FlowId, FlowKey, FlowState, FlowTable, HostSide, ListenerId};
use super::packet::{self, CONTROL_MAX, Family, Head, IcmpError, TcpFields, TcpSegment, Transport, Unsupported, flags};
use super::tcp::{self, Phase, SendQueue, TcpFlow, Tried};
use super::{Backend, Counters, Direction, FlowInfo, Mesh, Proto};
use crate::port::{NetworkId, PortId};
use crate::wire::MacAddr;
use crate::wire::VirtioNetHdr;

/// Stale timer entries the heap may hold beyond twice the number of flows
/// before [`Translator::arm`] rebuilds it.
const STALE_TIMERS_KEPT: usize = 1024;

/// A UDP flow or ICMP echo flow is closed after this long without traffic,
/// unless it is a stream: answered, and still active `STREAM_AFTER_MS`
/// after it opened; then after `DATAGRAM_IDLE_MS` (Linux conntrack's
/// `udp_timeout` and `udp_timeout_stream`, and its two-second rule: a
/// one-shot DNS query holds its flow and socket 30 s, not 120).
const DATAGRAM_UNANSWERED_MS: u64 = 30_000;
const DATAGRAM_IDLE_MS: u64 = 120_000;
const STREAM_AFTER_MS: u64 = 2_000;
/// Bytes all flows together may park for sockets that are full.
const PENDING_BUDGET: usize = 64 * 1024 * 1024;
/// Datagrams one held train carries at most (the kernel's `UDP_SEGMENT`
/// limit before Linux 6.x raised it to 128).
const TRAIN_MAX: usize = 64;

/// The sockets the translator works through. The daemon implements it with
/// kernel sockets it registers with its event loop; tests with a model.
pub trait Host {
    /// Opens the host side of a new egress flow toward `to` (a socket of
    /// `to`'s family): TCP starts a non-blocking connect (completion is
    /// reported with [`Translator::connected`]); UDP and ICMP echo get a
    /// connected socket.
    fn open(&mut self, flow: FlowId, proto: Proto, to: SocketAddr) -> io::Result<()>;
    /// Writes stream bytes (TCP) or sends one datagram (UDP, ICMP echo
    /// message) on the flow's own socket; returns how many bytes it took.
    fn send(&mut self, flow: FlowId, data: &[u8]) -> io::Result<usize>;
    /// Sends one datagram from a published UDP port's socket to a client.
    fn send_to(&mut self, listener: ListenerId, to: SocketAddr, data: &[u8]) -> io::Result<()>;
    /// Sends `data` on UDP flow `flow`'s own socket as a train of datagrams
    /// of `segment` bytes each (the last may be shorter): a sandbox's UDP
    /// GSO frame, or its datagrams of one flow that came back to back. The
    /// daemon sends it as one GSO train where the kernel takes it; by
    /// default, and where it does not, one datagram at a time
    /// ([`each_datagram`]).
    fn send_train(&mut self, flow: FlowId, data: &[u8], segment: usize) -> io::Result<()> {
        each_datagram(data, segment, |d| self.send(flow, d).map(drop))
    }
    /// As [`Host::send_train`], from a published UDP port's socket to a
    /// client.
    fn send_train_to(&mut self, listener: ListenerId, to: SocketAddr, data: &[u8], segment: usize) -> io::Result<()> {
        each_datagram(data, segment, |d| self.send_to(listener, to, d))
    }
    /// Shuts the flow's TCP socket down for writing (the sandbox sent FIN).
    fn shutdown_write(&mut self, flow: FlowId);
    /// Drops `len` bytes the sandbox acknowledged from the front of the
    /// flow's TCP receive queue.
    fn discard(&mut self, flow: FlowId, len: usize);
    /// Makes the next peek start again at the front of the receive queue
    /// (the oldest byte the sandbox has not acknowledged).
    fn rewind(&mut self, flow: FlowId);
    /// Closes the flow's socket; `reset` aborts a TCP connection (RST).
    fn close(&mut self, flow: FlowId, reset: bool);
    /// The path MTU the flow's connected datagram socket knows toward its
    /// destination (`IPV6_MTU`), after it reported `EMSGSIZE` (an ICMPv6
    /// packet too big arrived).
    fn path_mtu(&mut self, flow: FlowId) -> Option<u32>;
}

/// Sends a train's datagrams (`segment` bytes each, the last maybe
/// shorter) one at a time with `send`, every one whatever happened to the
/// others; returns the first error.
pub fn each_datagram(data: &[u8], segment: usize, mut send: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut first = Ok(());
    for datagram in data.chunks(segment.max(1)) {
        if let Err(e) = send(datagram)
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

/// What the translator knows of a network with a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetView {
    /// The gateway's port: frames toward sandboxes enter the bridge there.
    pub gateway: PortId,
    /// The gateway's MAC.
    pub mac: MacAddr,
    /// The gateway's IPv4 address (none on an IPv6-only network).
    pub address: Option<Ipv4Addr>,
    /// The gateway's IPv6 address (none unless the network has IPv6).
    pub address6: Option<Ipv6Addr>,
    /// The network's MTU (the MSS the switch offers is derived from it).
    pub mtu: u32,
}

impl NetView {
    /// The gateway's address of `ip`'s family.
    pub fn gateway_like(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.address.map(IpAddr::V4),
            IpAddr::V6(_) => self.address6.map(IpAddr::V6),
        }
    }

    /// Whether `ip` is one of the gateway's addresses.
    pub fn is_gateway(&self, ip: IpAddr) -> bool {
        self.gateway_like(ip) == Some(ip)
    }
}

/// Control frames (handshakes, ACKs, resets, ICMP errors) the translator
/// made for sandboxes, complete with checksums, in one reused arena.
#[derive(Debug, Default)]
pub struct Emit {
    bytes: Vec<u8>,
    frames: Vec<(PortId, Range<usize>)>,
}

impl Emit {
    /// Appends a frame of at most `max` bytes written by `write`.
    fn push(&mut self, port: PortId, max: usize, write: impl FnOnce(&mut [u8]) -> usize) {
        let start = self.bytes.len();
        self.bytes.resize(start + max, 0);
        let len = write(&mut self.bytes[start..]);
        self.bytes.truncate(start + len);
        self.frames.push((port, start..start + len));
    }

    /// The frames, each with the gateway port it enters the bridge from.
    pub fn frames(&self) -> impl Iterator<Item = (PortId, &[u8])> {
        self.frames.iter().map(|(port, range)| (*port, &self.bytes[range.clone()]))
    }

    /// True when no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Hands the frames, in order, to `take` until it refuses one (no room
    /// left); keeps that one and the rest for later.
    pub fn drain_while(&mut self, mut take: impl FnMut(PortId, &[u8]) -> bool) {
        let taken = self.frames.iter().take_while(|(port, range)| take(*port, &self.bytes[range.clone()])).count();
        if taken == self.frames.len() {
            self.clear();
            return;
        }
        let cut = self.frames[taken].1.start;
        self.bytes.drain(..cut);
        self.frames.drain(..taken);
        for (_, range) in &mut self.frames {
            *range = range.start - cut..range.end - cut;
        }
    }

    /// Forgets the frames, keeping the memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }
}

/// A data frame the daemon filled: where it enters the bridge, its length
/// and its virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame {
    /// The gateway port.
    pub port: PortId,
    /// Bytes of the frame (from the start of the buffer).
    pub len: usize,
    /// Offloads the frame needs (checksum, segmentation).
    pub hdr: VirtioNetHdr,
}

/// Limits of the translator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Flows (TCP, UDP, ICMP together); a new flow beyond it is refused
    /// and counted.
    pub max_flows: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_flows: 131_072 }
    }
}

/// A published port's backends and where the rotation stands.
#[derive(Debug, Clone, Default)]
struct Listener {
    proto: Option<Proto>,
    host: Option<SocketAddr>,
    backends: Vec<Backend>,
    next: usize,
}

/// How a new published flow reaches its backend: the backend's network,
/// the flow's key and the addresses of its frames.
struct Route {
    view: NetView,
    key: FlowKey,
    head: Head,
}

/// The L4 translator.
#[derive(Debug)]
pub struct Translator {
    table: FlowTable,
    /// Published UDP flows by (listener, client).
    by_client: HashMap<(ListenerId, SocketAddr), FlowId, foldhash::fast::RandomState>,
    nets: Vec<Option<NetView>>,
    /// This node's mesh station per network (ingress services' remote
    /// replicas are reached from it), by network index.
    meshes: Vec<Option<Mesh>>,
    listeners: Vec<Option<Listener>>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// The time of the latest call that brought one (milliseconds of the
    /// switch's clock): calls without one (a socket turning readable) arm
    /// their timers from it.
    latest_now: u64,
    /// The earliest heap entry of each flow (by slot), to keep one per flow.
    sendable: SendQueue,
    acks: Vec<FlowId>,
    counters: Vec<Counters>,
    limits: Limits,
    pending_total: usize,
    /// The secret the initial sequence numbers are keyed with.
    iss_key: foldhash::fast::FixedState,
    /// The identification of the next datagram fragmented toward a
    /// sandbox.
    fragment_id: u32,
    /// Where a datagram of a train too wide for its network is written
    /// before it is fragmented (reused).
    scratch: Vec<u8>,
    /// A sandbox's datagrams of one UDP flow, held to leave together.
    held: Held,
    /// Whether datagrams are held for trains at all (the daemon turns it
    /// off where the kernel has no UDP GSO, or on request).
    hold_datagrams: bool,
}

/// Datagrams of one UDP flow that a sandbox sent back to back, held so
/// that they leave as one train (one system call, one skb) when the daemon
/// calls [`Translator::flush_datagrams`] after the batch, or as soon as
/// another flow's datagram or a different size comes. Its buffers are
/// reused.
#[derive(Debug, Default)]
struct Held {
    flow: Option<FlowId>,
    /// The size of every datagram but a shorter last one.
    segment: usize,
    count: usize,
    /// A shorter datagram ended the train.
    closed: bool,
    bytes: Vec<u8>,
    /// What an ICMP error about the train quotes: its first datagram's
    /// headers, as for a datagram sent alone.
    quote: Vec<u8>,
}

impl Held {
    /// Whether a datagram of `len` bytes of flow `id` can join the train,
    /// which may carry `max` bytes in all.
    fn joins(&self, id: FlowId, len: usize, max: usize) -> bool {
        self.flow == Some(id)
            && !self.closed
            && len <= self.segment
            && self.count < TRAIN_MAX
            && self.bytes.len() + len <= max
    }

    /// Adds a datagram that [`Held::joins`].
    fn push(&mut self, payload: &[u8]) {
        self.closed = payload.len() < self.segment;
        self.count += 1;
        self.bytes.extend_from_slice(payload);
    }

    /// Starts a train of flow `id` with `payload` (the held one is gone).
    fn start(&mut self, id: FlowId, payload: &[u8], quote: &[u8]) {
        self.flow = Some(id);
        self.segment = payload.len();
        self.count = 1;
        self.closed = false;
        self.bytes.clear();
        self.bytes.extend_from_slice(payload);
        self.quote.clear();
        self.quote.extend_from_slice(quote);
    }
}

impl Translator {
    /// An empty translator; `seed` varies the initial sequence numbers.
    pub fn new(limits: Limits, seed: u64) -> Translator {
        Translator {
            table: FlowTable::default(),
            by_client: HashMap::default(),
            nets: Vec::new(),
            meshes: Vec::new(),
            listeners: Vec::new(),
            timers: BinaryHeap::new(),
            latest_now: 0,
            sendable: SendQueue::default(),
            acks: Vec::new(),
            counters: Vec::new(),
            limits,
            pending_total: 0,
            iss_key: foldhash::fast::FixedState::with_seed(seed),
            // Not the seed itself: a fragment's id is seen by sandboxes,
            // and the seed keys the initial sequence numbers.
            fragment_id: {
                use std::hash::BuildHasher;
                foldhash::fast::FixedState::with_seed(seed).hash_one("fragment id") as u32
            },
            scratch: Vec::new(),
            held: Held::default(),
            hold_datagrams: true,
        }
    }

    /// Sets (or, with `None`, forgets) what the translator knows of a
    /// network's gateway.
    pub fn set_network(&mut self, network: NetworkId, view: Option<NetView>) {
        let i = network.index();
        if self.nets.len() <= i {
            self.nets.resize(i + 1, None);
            self.counters.resize(i + 1, Counters::default());
        }
        self.nets[i] = view;
    }

    /// Sets (or, with `None`, forgets) this node's mesh station on a
    /// network: new flows to backends [`Backend::via_mesh`] on it carry its
    /// address and MAC as their source; without one such backends are
    /// passed over. Flows in progress keep their addresses.
    pub fn set_mesh(&mut self, network: NetworkId, mesh: Option<Mesh>) {
        let i = network.index();
        if self.meshes.len() <= i {
            self.meshes.resize(i + 1, None);
        }
        self.meshes[i] = mesh;
    }

    /// This node's mesh station on `network`, if it has one.
    pub fn mesh(&self, network: NetworkId) -> Option<Mesh> {
        self.meshes.get(network.index()).copied().flatten()
    }

    /// Whether `ip` is one of the switch's own addresses on `network` (its
    /// gateway's or its mesh station's): never a destination of egress.
    fn is_own(&self, network: NetworkId, view: &NetView, ip: IpAddr) -> bool {
        view.is_gateway(ip) || self.mesh(network).is_some_and(|m| m.has(ip))
    }

    /// Sets a published port's backends (a new listener, or new backends
    /// for an open one; TCP connections in progress keep theirs). A UDP
    /// client pinned to a backend no longer listed is pinned again by its
    /// next datagram: its flow ends here (it would otherwise live on as long
    /// as the client keeps sending).
    pub fn set_listener(&mut self, id: ListenerId, proto: Proto, host: SocketAddr, backends: Vec<Backend>) {
        let i = id.0 as usize;
        if self.listeners.len() <= i {
            self.listeners.resize(i + 1, None);
        }
        let next = self.listeners[i].as_ref().map_or(0, |l| l.next);
        let dropped: Vec<FlowId> = self
            .table
            .iter()
            .filter(|(_, f)| f.host == HostSide::Listener(id) && !backends.iter().any(|b| serves(b, &f.key)))
            .map(|(flow, _)| flow)
            .collect();
        for flow in dropped {
            self.drop_flow(flow);
        }
        self.listeners[i] = Some(Listener { proto: Some(proto), host: Some(host), backends, next });
    }

    /// Forgets a listener (its socket is closed). Its UDP flows end with
    /// it (their answers left from its socket), and so do its TCP
    /// connections still looking for a backend (reset: a failover would
    /// otherwise read the backends of whatever takes the listener's slot
    /// next); established connections go on until they end.
    pub fn remove_listener(&mut self, id: ListenerId, host: &mut impl Host) {
        if let Some(slot) = self.listeners.get_mut(id.0 as usize) {
            *slot = None;
        }
        self.end_flows(host, |f| {
            f.host == HostSide::Listener(id)
                || matches!(&f.state, FlowState::Tcp(t) if t.phase == Phase::SynSent
                    && t.listener.is_some_and(|(l, _)| l == id))
        });
    }

    /// The initial sequence number of a connection on `key` (RFC 6528): a
    /// clock ticking every 4 µs plus a keyed hash of the 4-tuple. The clock
    /// matters: a sandbox that closed a connection first keeps its 4-tuple
    /// in TIME-WAIT and accepts a new SYN on it only with a sequence number
    /// beyond the old connection's, and clients reuse ports quickly. The
    /// hash keeps the numbers unpredictable across tuples.
    pub(crate) fn iss_for(&self, key: &FlowKey, now: u64) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.iss_key.hash_one(key) as u32;
        ((now.wrapping_mul(250)) as u32).wrapping_add(hash)
    }

    fn count(&mut self, network: NetworkId) -> &mut Counters {
        let i = network.index();
        if self.counters.len() <= i {
            self.counters.resize(i + 1, Counters::default());
        }
        &mut self.counters[i]
    }

    fn full(&mut self, network: NetworkId) -> bool {
        let full = self.table.len() >= self.limits.max_flows;
        if full {
            self.count(network).table_full += 1;
        }
        full
    }

    fn add_flow(&mut self, flow: Flow) -> FlowId {
        let network = flow.key.network;
        let c = self.count(network);
        c.flows_opened += 1;
        c.active += 1;
        self.table.insert(flow)
    }

    /// Removes a flow (its socket is the caller's business).
    fn drop_flow(&mut self, id: FlowId) {
        let Some(mut flow) = self.table.remove(id) else { return };
        if self.held.flow == Some(id) {
            // Its socket is closed: nothing held can leave.
            self.held.flow = None;
        }
        if let FlowState::Tcp(t) = &mut flow.state {
            self.pending_total -= t.pending.len();
        }
        if let HostSide::Listener(l) = flow.host {
            self.by_client.remove(&(l, flow.outer_remote));
        }
        let c = self.count(flow.key.network);
        c.active = c.active.saturating_sub(1);
    }

    /// Arms `id`'s timer for `at` (milliseconds of the switch's clock).
    ///
    /// An earlier wake-up leaves the flow's later entry in the heap, stale
    /// (skipped when it comes due): a flow that goes from idle (its timer
    /// two hours ahead) to active and back leaves one each time. So when
    /// stale entries outnumber the flows, the heap is rebuilt from the
    /// flows' own timers, which bounds it by the table, not by the traffic.
    fn arm(&mut self, id: FlowId, at: u64) {
        let Some(flow) = self.table.get_mut(id) else { return };
        if flow.timer.is_none_or(|t| at < t) {
            self.timers.push(Reverse((at, id.0)));
        }
        flow.timer = Some(flow.timer.map_or(at, |t| t.min(at)));
        if self.timers.len() > 2 * self.table.len() + STALE_TIMERS_KEPT {
            self.timers = self.table.iter().filter_map(|(id, f)| Some(Reverse((f.timer?, id.0)))).collect();
        }
    }

    /// Entries in the timer heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Is `frame` (to the gateway's own address) part of a flow? Replies to
    /// loopback clients of published ports are addressed to the gateway.
    pub fn owns(&self, network: NetworkId, frame: &[u8]) -> bool {
        packet::parse(frame)
            .ok()
            .and_then(|p| self.key_of(network, &p))
            .is_some_and(|k| self.table.lookup(&k).is_some())
    }

    fn key_of(&self, network: NetworkId, p: &packet::Packet<'_>) -> Option<FlowKey> {
        let (proto, sandbox_port, remote_port) = match p.transport {
            Transport::Tcp(s) => (Proto::Tcp, s.src_port, s.dst_port),
            Transport::Udp { src_port, dst_port, .. } => (Proto::Udp, src_port, dst_port),
            Transport::Echo { id, .. } => (Proto::Icmp, id, 0),
        };
        Some(FlowKey {
            network,
            proto,
            sandbox: SocketAddr::new(p.src, sandbox_port),
            remote: SocketAddr::new(p.dst, remote_port),
        })
    }

    /// Takes a frame a sandbox on `network` routed through its gateway to an
    /// address outside the switch's networks (or a reply within a flow).
    /// With `udp_segment` (the `gso_size` of a `GSO_UDP_L4` virtio-net
    /// header), a UDP frame's payload is a train of datagrams of that many
    /// bytes (the last may be shorter), sent on as such; TCP and ICMP
    /// frames ignore it.
    pub fn from_sandbox(
        &mut self,
        network: NetworkId,
        frame: &[u8],
        udp_segment: Option<u16>,
        now: u64,
        host: &mut impl Host,
        out: &mut Emit,
    ) -> Result<(), Unsupported> {
        self.latest_now = self.latest_now.max(now);
        let p = packet::parse(frame)?;
        let view = self.nets.get(network.index()).copied().flatten().ok_or(Unsupported::Malformed)?;
        // A family the network's gateway does not route.
        if view.gateway_like(p.src).is_none() {
            return Err(Unsupported::Protocol);
        }
        let key = self.key_of(network, &p).ok_or(Unsupported::Malformed)?;
        let head = Head { gateway_mac: view.mac.0, sandbox_mac: p.src_mac, remote: key.remote, sandbox: key.sandbox };
        let existing = self.table.lookup(&key);
        match p.transport {
            Transport::Tcp(seg) => match existing {
                Some(id) => self.tcp_segment(id, &seg, now, host, out),
                None if seg.has(flags::SYN)
                    && !seg.has(flags::ACK)
                    && !self.is_own(network, &view, key.remote.ip()) =>
                {
                    self.tcp_open(key, head, view, &seg, now, host, out)
                }
                None => reset_stray(&head, view.gateway, &seg, out),
            },
            Transport::Udp { payload, .. } | Transport::Echo { message: payload, .. } => {
                let segment = match (p.transport, udp_segment) {
                    (Transport::Udp { .. }, Some(0)) => return Err(Unsupported::Malformed),
                    (Transport::Udp { .. }, Some(size)) if payload.len() > usize::from(size) => Some(usize::from(size)),
                    _ => None,
                };
                let id = match existing {
                    Some(id) => id,
                    None if self.is_own(network, &view, key.remote.ip()) => return Ok(()),
                    None => match self.datagram_open(key, head, view, p.quote, now, host, out) {
                        Some(id) => id,
                        None => return Ok(()),
                    },
                };
                self.datagram_out(id, payload, segment, p.quote, now, host, out);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_open(
        &mut self,
        key: FlowKey,
        head: Head,
        view: NetView,
        seg: &TcpSegment<'_>,
        now: u64,
        host: &mut impl Host,
        out: &mut Emit,
    ) {
        if self.full(key.network) {
            reset_stray(&head, view.gateway, seg, out);
            return;
        }
        let (mss, shift) = seg.syn_options();
        let default_mss = tcp::default_mss(Family::of(key.sandbox.ip()));
        let tcp = TcpFlow::egress(self.iss_for(&key, now), seg.seq, mss.unwrap_or(default_mss), shift);
        let id =
            self.add_flow(new_flow(key, false, view.gateway, head, key.remote, HostSide::Own, tcp_state(tcp), now));
        if let Err(e) = host.open(id, Proto::Tcp, key.remote) {
            self.refuse(id, &e, host, out);
            return;
        }
        let at = now + tcp::HANDSHAKE_MS;
        if let Some(Flow { state: FlowState::Tcp(t), .. }) = self.table.get_mut(id) {
            t.deadline = Some(at);
        }
        self.arm(id, at);
    }

    /// The host socket of egress flow `id` connected (or failed to).
    pub fn connected(&mut self, id: FlowId, result: io::Result<()>, now: u64, host: &mut impl Host, out: &mut Emit) {
        if let Err(e) = result {
            self.refuse(id, &e, host, out);
            return;
        }
        let Some(flow) = self.table.get_mut(id) else { return };
        let FlowState::Tcp(t) = &mut flow.state else { return };
        if t.phase != Phase::Connecting {
            return;
        }
        t.phase = Phase::SynAckSent;
        t.snd_nxt = t.iss;
        t.advance(1);
        t.retries = 0;
        flow.last_seen = now;
        self.send_syn_ack(id, now, out);
    }

    /// Sends (or sends again) the SYN-ACK of egress flow `id` and sets its
    /// retransmission.
    fn send_syn_ack(&mut self, id: FlowId, now: u64, out: &mut Emit) {
        let Some(mss) = self.nets_mss(id) else { return };
        let Some(flow) = self.table.get_mut(id) else { return };
        let FlowState::Tcp(t) = &mut flow.state else { return };
        let fields = TcpFields { seq: t.iss, ack: t.rcv_nxt, flags: flags::SYN | flags::ACK, window: u16::MAX };
        let shift = (t.our_shift > 0).then_some(t.our_shift);
        let at = now + (u64::from(tcp::SYN_RTO_MS) << t.retries);
        t.deadline = Some(at);
        let head = flow.head;
        out.push(flow.gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, Some((mss, shift))));
        self.arm(id, at);
    }

    /// The MSS the switch offers on flow `id`'s network: its MTU less the
    /// IP and TCP headers (IPv4 at least 536 bytes, IPv6 at least 1220, as
    /// the minimum MTUs allow).
    fn nets_mss(&self, id: FlowId) -> Option<u16> {
        let flow = self.table.get(id)?;
        let view = self.nets.get(flow.key.network.index()).copied().flatten()?;
        let family = Family::of(flow.key.sandbox.ip());
        let headers = family.ip_len() as u32 + 20;
        let mss = view.mtu.saturating_sub(headers).clamp(u32::from(tcp::default_mss(family)), 65_535 - headers);
        Some(mss as u16)
    }

    /// An egress flow's destination refused or could not be reached: the
    /// sandbox gets a reset (refused) or an ICMP error (unreachable).
    fn refuse(&mut self, id: FlowId, e: &io::Error, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get(id) else { return };
        let head = flow.head;
        let gateway = flow.gateway;
        let network = flow.key.network;
        match (&flow.state, unreachable_code(e)) {
            (FlowState::Tcp(t), None) => {
                let fields = TcpFields { seq: 0, ack: t.rcv_nxt, flags: flags::RST | flags::ACK, window: 0 };
                out.push(gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, None));
            }
            (state, code) => {
                // A TCP flow is refused while connecting: its SYN is quoted.
                let seq = match state {
                    FlowState::Tcp(t) => t.rcv_nxt.wrapping_sub(1),
                    FlowState::Datagram { .. } => 0,
                };
                let quote = packet::rebuild_quote(head.sandbox, head.remote, flow.key.proto, seq);
                let quote = quote.as_slice();
                let code = code.unwrap_or(IcmpError::Port);
                out.push(gateway, packet::icmp_error_len(&head, quote), |buf| {
                    packet::write_icmp_error(buf, &head, code, quote)
                });
            }
        }
        host.close(id, false);
        self.drop_flow(id);
        self.count(network).flows_refused += 1;
    }

    fn tcp_segment(&mut self, id: FlowId, seg: &TcpSegment<'_>, now: u64, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get_mut(id) else { return };
        flow.last_seen = now;
        let FlowState::Tcp(t) = &mut flow.state else { return };
        if seg.has(flags::RST) {
            // RFC 5961: a reset counts only if it is exactly where the
            // connection stands (its sequence number the next one expected;
            // in SYN-SENT, acknowledging the SYN), so that another sandbox
            // cannot end a connection by guessing its ports alone. One
            // elsewhere in the window gets a challenge ACK, to which a peer
            // that really reset answers with an exact RST.
            let exact = match t.phase {
                Phase::SynSent => seg.has(flags::ACK) && seg.ack == t.iss.wrapping_add(1),
                _ => seg.seq == t.rcv_nxt,
            };
            if !exact {
                let in_window = seg.seq.wrapping_sub(t.rcv_nxt) < tcp::WINDOW;
                if in_window && t.phase != Phase::SynSent {
                    self.owe_ack(id);
                }
                return;
            }
            if t.phase == Phase::SynSent {
                self.next_backend(id, now, host, out);
            } else {
                host.close(id, true);
                self.drop_flow(id);
            }
            return;
        }
        if seg.has(flags::SYN) {
            match t.phase {
                // The sandbox answers the SYN of a published connection.
                Phase::SynSent if seg.has(flags::ACK) && seg.ack == t.iss.wrapping_add(1) => {
                    let (mss, shift) = seg.syn_options();
                    t.rcv_nxt = seg.seq.wrapping_add(1);
                    t.mss = mss.unwrap_or(tcp::default_mss(Family::of(flow.key.sandbox.ip()))).max(64);
                    match shift {
                        Some(s) => t.shift = s,
                        None => t.our_shift = 0,
                    }
                    t.snd_una = seg.ack;
                    t.snd_wnd = u32::from(seg.window);
                    t.phase = Phase::Established;
                    // The client may have sent already: its socket's
                    // readiness may have been reported (and consumed)
                    // before, possibly to a flow state a failover replaced.
                    // Peek once, as egress does when its handshake ends.
                    t.readable = true;
                    t.retries = 0;
                    t.rto_ms = tcp::RTO_MIN_MS;
                    t.deadline = None;
                    self.owe_ack(id);
                    self.queue_send(id);
                }
                // Our SYN-ACK was lost: the sandbox sent its SYN again.
                Phase::SynAckSent if seg.seq.wrapping_add(1) == t.rcv_nxt => self.send_syn_ack(id, now, out),
                Phase::Connecting => {}
                _ => self.owe_ack(id),
            }
            return;
        }
        if !seg.has(flags::ACK) {
            return;
        }
        match t.phase {
            Phase::Connecting | Phase::SynSent => return,
            Phase::SynAckSent if seg.ack == t.iss.wrapping_add(1) => {
                t.phase = Phase::Established;
                t.deadline = None;
                t.retries = 0;
                t.snd_una = seg.ack;
                t.readable = true;
            }
            Phase::SynAckSent => return,
            Phase::Established => {}
        }
        self.tcp_ack(id, seg, now, host);
        self.tcp_data_in(id, seg, host, out);
        self.close_if_finished(id, host, out);
    }

    /// Processes the acknowledgement and window of a segment.
    fn tcp_ack(&mut self, id: FlowId, seg: &TcpSegment<'_>, now: u64, host: &mut impl Host) {
        let Some(flow) = self.table.get_mut(id) else { return };
        let FlowState::Tcp(t) = &mut flow.state else { return };
        if tcp::seq_gt(seg.ack, t.snd_max) {
            return;
        }
        if tcp::seq_gt(seg.ack, t.snd_nxt) {
            // A retransmission rewound below what the sandbox (late) now
            // acknowledges: go on from its ACK instead of sending it again.
            t.snd_nxt = seg.ack;
            if t.fin_seq.is_some_and(|fin| seg.ack == fin.wrapping_add(1)) {
                t.fin_out = true;
            }
        }
        let window = u32::from(seg.window) << t.shift;
        let window_changed = window != t.snd_wnd;
        t.snd_wnd = window;
        let mut arm = None;
        if tcp::seq_gt(seg.ack, t.snd_una) {
            let mut acked = seg.ack.wrapping_sub(t.snd_una);
            if t.fin_out && seg.ack == t.snd_nxt {
                t.fin_acked = true;
                acked -= 1;
            }
            if acked > 0 {
                host.discard(id, acked as usize);
            }
            t.snd_una = seg.ack;
            t.dupacks = 0;
            t.retries = 0;
            t.rto_ms = tcp::RTO_MIN_MS;
            t.deadline = t.outstanding().then(|| now + u64::from(t.rto_ms));
            arm = t.deadline;
        } else if seg.ack == t.snd_una && seg.payload.is_empty() && t.outstanding() && !window_changed {
            t.dupacks += 1;
            if t.dupacks == 3 {
                rewind(id, t, host);
            }
        }
        if t.zero_window_stall() && t.deadline.is_none() {
            // The sandbox's window closed with bytes waiting for it: probe
            // it (persist timer, RFC 9293 3.8.6.1), or a lost window update
            // would stall the connection until the idle limit.
            t.deadline = Some(now + u64::from(t.rto_ms));
            arm = t.deadline;
        }
        if let Some(at) = arm {
            self.arm(id, at);
        }
        self.queue_send(id);
    }

    /// Accepts the segment's payload and FIN, in order, into the socket.
    fn tcp_data_in(&mut self, id: FlowId, seg: &TcpSegment<'_>, host: &mut impl Host, out: &mut Emit) {
        let fin = seg.has(flags::FIN);
        if seg.payload.is_empty() && !fin {
            return;
        }
        let budget_left = PENDING_BUDGET.saturating_sub(self.pending_total);
        let Some(flow) = self.table.get_mut(id) else { return };
        let FlowState::Tcp(t) = &mut flow.state else { return };
        if t.fin_in {
            self.owe_ack(id);
            return;
        }
        let offset = seg.seq.wrapping_sub(t.rcv_nxt) as i32;
        if offset > 0 {
            // A gap: something before this was lost. Ask again.
            self.owe_ack(id);
            return;
        }
        let skip = offset.unsigned_abs() as usize;
        let data = seg.payload.get(skip..).unwrap_or_default();
        let mut accepted = 0;
        if !data.is_empty() {
            if t.pending.is_empty() {
                match tcp::written(host.send(id, data)) {
                    Ok(n) => accepted = n,
                    Err(_) => {
                        self.reset_both(id, host, out);
                        return;
                    }
                }
            }
            let room = (tcp::WINDOW as usize).saturating_sub(t.pending.len()).min(budget_left);
            let park = (data.len() - accepted).min(room);
            if park > 0 {
                t.pending.extend_from_slice(&data[accepted..accepted + park]);
                self.pending_total += park;
                accepted += park;
            }
            t.rcv_nxt = t.rcv_nxt.wrapping_add(accepted as u32);
            flow.bytes_from_sandbox += accepted as u64;
        }
        if fin && skip <= seg.payload.len() && accepted == data.len() {
            t.rcv_nxt = t.rcv_nxt.wrapping_add(1);
            t.fin_in = true;
            if t.pending.is_empty() {
                host.shutdown_write(id);
                t.shut_wr = true;
            }
        }
        self.owe_ack(id);
    }

    /// The flow's socket can take bytes again: writes what was parked.
    pub fn writable(&mut self, id: FlowId, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get_mut(id) else { return };
        let FlowState::Tcp(t) = &mut flow.state else { return };
        if t.pending.is_empty() {
            return;
        }
        let n = match tcp::written(host.send(id, &t.pending)) {
            Ok(n) => n,
            Err(_) => {
                self.reset_both(id, host, out);
                return;
            }
        };
        t.pending.drain(..n);
        self.pending_total -= n;
        if t.pending.is_empty() {
            t.pending = Vec::new();
            if t.fin_in && !t.shut_wr {
                host.shutdown_write(id);
                t.shut_wr = true;
            }
        }
        // The window opened: tell the sandbox.
        self.owe_ack(id);
        self.close_if_finished(id, host, out);
    }

    /// Notes that the flow's socket has bytes (or EOF) to peek.
    pub fn readable(&mut self, id: FlowId) {
        let mut persist = None;
        if let Some(Flow { state: FlowState::Tcp(t), .. }) = self.table.get_mut(id) {
            t.readable = true;
            // Bytes for a sandbox whose window is shut: probe it.
            if t.zero_window_stall() && t.deadline.is_none() {
                t.deadline = Some(self.latest_now + u64::from(t.rto_ms));
                persist = t.deadline;
            }
        }
        if let Some(at) = persist {
            self.arm(id, at);
        }
        self.queue_send(id);
    }

    fn queue_send(&mut self, id: FlowId) {
        if let Some(Flow { state: FlowState::Tcp(t), .. }) = self.table.get_mut(id)
            && t.can_send()
        {
            self.sendable.push(id, t);
        }
    }

    /// Some flow may have bytes to peek for its sandbox.
    pub fn has_sendable(&self) -> bool {
        !self.sendable.is_empty()
    }

    /// The next flow whose socket should be peeked, with how many bytes
    /// the sandbox's window allows in one frame.
    pub fn next_sendable(&mut self) -> Option<(FlowId, usize)> {
        while let Some(id) = self.sendable.pop() {
            let Some(Flow { state: FlowState::Tcp(t), .. }) = self.table.get_mut(id) else { continue };
            t.queued = false;
            if t.can_send() {
                return Some((id, t.room().min(packet::MAX_TCP_PAYLOAD)));
            }
        }
        None
    }

    /// Bytes of flow `id` sent to the sandbox and not yet acknowledged: where
    /// the next peek starts in the socket's receive queue.
    pub fn unacked(&self, id: FlowId) -> usize {
        match self.table.get(id) {
            Some(Flow { state: FlowState::Tcp(t), .. }) => t.snd_nxt.wrapping_sub(t.snd_una) as usize,
            _ => 0,
        }
    }

    /// The daemon peeked `len` bytes of flow `id` into `buf` at
    /// [`packet::TCP_PAYLOAD`]: writes the frame's headers.
    pub fn tcp_peeked(&mut self, id: FlowId, buf: &mut [u8], len: usize, now: u64) -> Option<DataFrame> {
        let flow = self.table.get_mut(id)?;
        let FlowState::Tcp(t) = &mut flow.state else { return None };
        let fields =
            TcpFields { seq: t.snd_nxt, ack: t.rcv_nxt, flags: flags::ACK | flags::PSH, window: t.window_field() };
        let (frame_len, hdr) = packet::write_tcp_data(buf, &flow.head, fields, len, t.mss);
        let was_idle = !t.outstanding();
        t.advance(len as u32);
        t.ack_due = false;
        // A short peek does not mean the socket is drained: its end of
        // stream shows only to a peek after every byte was peeked, and
        // edge-triggered readiness will not report it again. Peeking goes
        // on until it would block or finds the end.
        flow.bytes_to_sandbox += len as u64;
        flow.last_seen = now;
        let port = flow.gateway;
        let rto = u64::from(t.rto_ms);
        if was_idle {
            t.deadline = Some(now + rto);
            self.arm(id, now + rto);
        }
        self.queue_send(id);
        Some(DataFrame { port, len: frame_len, hdr })
    }

    /// Flow `id`'s socket has nothing to peek right now.
    pub fn tcp_drained(&mut self, id: FlowId) {
        if let Some(Flow { state: FlowState::Tcp(t), .. }) = self.table.get_mut(id) {
            t.readable = false;
        }
    }

    /// Flow `id`'s socket reached end of stream after everything peeked:
    /// the sandbox gets FIN.
    pub fn tcp_eof(&mut self, id: FlowId, now: u64, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get_mut(id) else { return };
        let (head, gateway) = (flow.head, flow.gateway);
        let FlowState::Tcp(t) = &mut flow.state else { return };
        t.readable = false;
        if t.fin_out || t.phase != Phase::Established {
            return;
        }
        let fields =
            TcpFields { seq: t.snd_nxt, ack: t.rcv_nxt, flags: flags::FIN | flags::ACK, window: t.window_field() };
        let was_idle = !t.outstanding();
        t.fin_seq = Some(t.snd_nxt);
        t.advance(1);
        t.fin_out = true;
        t.ack_due = false;
        let rto = u64::from(t.rto_ms);
        out.push(gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, None));
        if was_idle {
            t.deadline = Some(now + rto);
            self.arm(id, now + rto);
        }
        self.close_if_finished(id, host, out);
    }

    /// Flow `id`'s socket failed (reset by its peer): the sandbox gets RST.
    pub fn host_failed(&mut self, id: FlowId, host: &mut impl Host, out: &mut Emit) {
        match self.table.get(id).map(|f| f.key.proto) {
            Some(Proto::Tcp) => self.reset_both(id, host, out),
            Some(_) => {
                let e = io::Error::from(io::ErrorKind::ConnectionRefused);
                self.datagram_error(id, &e, host, out);
            }
            None => {}
        }
    }

    fn reset_both(&mut self, id: FlowId, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get(id) else { return };
        if let FlowState::Tcp(t) = &flow.state {
            let fields = TcpFields { seq: t.snd_nxt, ack: t.rcv_nxt, flags: flags::RST | flags::ACK, window: 0 };
            let head = flow.head;
            out.push(flow.gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, None));
        }
        host.close(id, true);
        self.drop_flow(id);
    }

    fn close_if_finished(&mut self, id: FlowId, host: &mut impl Host, out: &mut Emit) {
        if let Some(flow @ Flow { state: FlowState::Tcp(t), .. }) = self.table.get(id)
            && t.finished()
        {
            // What finished the flow may be the sandbox's FIN, after the
            // switch's own FIN was acked: it is acknowledged now, since
            // `flush_acks` will not find the flow any more.
            if t.ack_due {
                let fields = TcpFields { seq: t.snd_nxt, ack: t.rcv_nxt, flags: flags::ACK, window: t.window_field() };
                let head = flow.head;
                out.push(flow.gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, None));
            }
            host.close(id, false);
            self.drop_flow(id);
        }
    }

    fn owe_ack(&mut self, id: FlowId) {
        if let Some(Flow { state: FlowState::Tcp(t), .. }) = self.table.get_mut(id)
            && !t.ack_due
        {
            t.ack_due = true;
            self.acks.push(id);
        }
    }

    /// Sends the ACKs owed (one per flow, however many segments it got).
    pub fn flush_acks(&mut self, out: &mut Emit) {
        // The list is reused: no allocation per flush.
        let mut acks = std::mem::take(&mut self.acks);
        for id in acks.drain(..) {
            let Some(flow) = self.table.get_mut(id) else { continue };
            let FlowState::Tcp(t) = &mut flow.state else { continue };
            if !t.ack_due {
                continue;
            }
            t.ack_due = false;
            let fields = TcpFields { seq: t.snd_nxt, ack: t.rcv_nxt, flags: flags::ACK, window: t.window_field() };
            let head = flow.head;
            out.push(flow.gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, None));
        }
        self.acks = acks;
    }

    /// A client connected to published TCP port `listener`: returns the
    /// flow its accepted socket belongs to, or `None` when it must be
    /// refused (no backend, table full).
    pub fn accept(&mut self, listener: ListenerId, client: SocketAddr, now: u64, out: &mut Emit) -> Option<FlowId> {
        let (backend, tried, route) = self.route(listener, client, Proto::Tcp, None)?;
        let Route { view, key, head } = route?;
        if self.full(backend.network) {
            return None;
        }
        let tcp = TcpFlow::inbound(self.iss_for(&key, now), listener, tried);
        let id = self.add_flow(new_flow(key, true, view.gateway, head, client, HostSide::Own, tcp_state(tcp), now));
        self.send_syn(id, now, out);
        Some(id)
    }

    /// The next backend to ask for a connection that `tried` some already
    /// (`None`: a new one, which takes the next place in the port's
    /// rotation); `None` when every backend was tried.
    fn pick_backend(&mut self, listener: ListenerId, tried: Option<Tried>) -> Option<(Backend, Tried)> {
        let l = self.listeners.get_mut(listener.0 as usize)?.as_mut()?;
        let tried = tried.unwrap_or_else(|| {
            let first = l.next;
            l.next = l.next.wrapping_add(1);
            Tried { first, count: 0 }
        });
        if tried.count >= l.backends.len() {
            return None;
        }
        let i = tried.first.wrapping_add(tried.count) % l.backends.len();
        Some((l.backends[i], Tried { count: tried.count + 1, ..tried }))
    }

    /// The next backend (from the `tried`-th on) for a new flow from
    /// `client`, with how many were tried and, unless its network is gone
    /// or the flow's 4-tuple is taken, the flow's key and frame addresses.
    /// Backends with no address the client can be carried to (no gateway
    /// of that family on their network) are passed over; `None` when every
    /// backend was tried.
    fn route(
        &mut self,
        listener: ListenerId,
        client: SocketAddr,
        proto: Proto,
        mut tried: Option<Tried>,
    ) -> Option<(Backend, Tried, Option<Route>)> {
        loop {
            let (backend, now_tried) = self.pick_backend(listener, tried)?;
            tried = Some(now_tried);
            let Some(view) = self.nets.get(backend.network.index()).copied().flatten() else {
                return Some((backend, now_tried, None));
            };
            let Some((key, head)) = self.inbound_key(backend, view, client, proto) else { continue };
            let route = self.table.lookup(&key).is_none().then_some(Route { view, key, head });
            return Some((backend, now_tried, route));
        }
    }

    /// The key and frame addresses of a published flow from `client` to
    /// `backend`, or `None` when the backend cannot be reached by it.
    ///
    /// The client reaches the backend's address of its own family as
    /// itself. A loopback client (and an IPv6 link-local one) is shown to
    /// the sandbox as its gateway, since the sandbox's own loopback (link)
    /// would answer otherwise; so is a client of a family the backend has
    /// no address of, carried to its other address (as Docker's proxy
    /// carries IPv6 clients to IPv4-only containers). Such a client keeps
    /// its port unless another flow already shows the gateway with it.
    /// A backend on another node ([`Backend::via_mesh`]) sees every client
    /// as this node's mesh address (and the frames come from the mesh
    /// MAC), so its answers come back here; the same port rule applies.
    fn inbound_key(
        &self,
        backend: Backend,
        view: NetView,
        client: SocketAddr,
        proto: Proto,
    ) -> Option<(FlowKey, Head)> {
        let client_ip = client.ip().to_canonical();
        let mut source_mac = view.mac;
        let (sandbox_ip, remote_ip) = if backend.via_mesh {
            // A replica on another node: from this node's mesh address of
            // the family the replica has (the client's when it can).
            let mesh = self.mesh(backend.network)?;
            source_mac = mesh.mac;
            let own = backend.address_like(client_ip).and_then(|ip| Some((ip, mesh.address_like(ip)?)));
            let other = || {
                let ip = backend.ipv4.map(IpAddr::V4).or(backend.ipv6.map(IpAddr::V6))?;
                Some((ip, mesh.address_like(ip)?))
            };
            own.or_else(other)?
        } else {
            match backend.address_like(client_ip) {
                Some(ip) if !stands_in(client_ip) => (ip, client_ip),
                Some(ip) => (ip, view.gateway_like(ip)?),
                None => {
                    let ip = backend.ipv4.map(IpAddr::V4).or(backend.ipv6.map(IpAddr::V6))?;
                    (ip, view.gateway_like(ip)?)
                }
            }
        };
        let sandbox = SocketAddr::new(sandbox_ip, backend.port);
        let key_with =
            |port: u16| FlowKey { network: backend.network, proto, sandbox, remote: SocketAddr::new(remote_ip, port) };
        let mut key = key_with(client.port());
        if remote_ip != client_ip && (is_gateways_own(client.port()) || self.table.lookup(&key).is_some()) {
            use std::hash::BuildHasher;
            let hash = self.iss_key.hash_one(client);
            let free = (0..MAPPED_PORT_TRIES)
                .map(|i| key_with(mapped_port(hash, i)))
                .find(|k| !is_gateways_own(k.remote.port()) && self.table.lookup(k).is_none());
            match free {
                Some(free) => key = free,
                // Never shown as the gateway's own port.
                None if is_gateways_own(key.remote.port()) => return None,
                None => {}
            }
        }
        Some((key, Head { gateway_mac: source_mac.0, sandbox_mac: backend.mac.0, remote: key.remote, sandbox }))
    }

    fn send_syn(&mut self, id: FlowId, now: u64, out: &mut Emit) {
        tracing::trace!(flow = id.0, now, "SYN to a published port's backend");
        let Some(mss) = self.nets_mss(id) else { return };
        let Some(flow) = self.table.get_mut(id) else { return };
        let FlowState::Tcp(t) = &mut flow.state else { return };
        t.our_shift = tcp::OUR_SHIFT;
        t.snd_nxt = t.iss;
        t.advance(1);
        let fields = TcpFields { seq: t.iss, ack: 0, flags: flags::SYN, window: u16::MAX };
        let head = flow.head;
        let delay = u64::from(tcp::SYN_RTO_MS) << t.retries;
        t.deadline = Some(now + delay);
        out.push(flow.gateway, CONTROL_MAX, |buf| {
            packet::write_tcp_control(buf, &head, fields, Some((mss, Some(tcp::OUR_SHIFT))))
        });
        self.arm(id, now + delay);
    }

    /// The backend refused (or never answered) a published connection: the
    /// next one is asked, or the client is reset when none is left.
    fn next_backend(&mut self, id: FlowId, now: u64, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get(id) else { return };
        let client = flow.outer_remote;
        let network = flow.key.network;
        let Some((listener, tried)) = (match &flow.state {
            FlowState::Tcp(t) => t.listener,
            FlowState::Datagram { .. } => None,
        }) else {
            return;
        };
        // No backend left; or one on a network that is gone, or a 4-tuple
        // in use: the client is reset rather than left waiting with no timer.
        let Some((_, tried, Some(Route { view, key, head }))) = self.route(listener, client, Proto::Tcp, Some(tried))
        else {
            self.count(network).flows_refused += 1;
            host.close(id, true);
            self.drop_flow(id);
            return;
        };
        // The flow keeps its slot, the id the daemon files the client's
        // socket under. (Removing and inserting it again did not always
        // give the same slot back: the table lets its memory go when it
        // empties after a peak.)
        let iss = self.iss_for(&key, now);
        let Some(flow) = self.table.get_mut(id) else { return };
        flow.head = head;
        flow.gateway = view.gateway;
        flow.state = tcp_state(TcpFlow::inbound(iss, listener, tried));
        self.table.rekey(id, key);
        let c = self.count(network);
        c.active = c.active.saturating_sub(1);
        let c = self.count(key.network);
        c.active += 1;
        self.send_syn(id, now, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn datagram_open(
        &mut self,
        key: FlowKey,
        head: Head,
        view: NetView,
        quote: &[u8],
        now: u64,
        host: &mut impl Host,
        out: &mut Emit,
    ) -> Option<FlowId> {
        if self.full(key.network) {
            return None;
        }
        let state = FlowState::Datagram { answered: false };
        let id = self.add_flow(new_flow(key, false, view.gateway, head, key.remote, HostSide::Own, state, now));
        if let Err(e) = host.open(id, key.proto, key.remote) {
            let code = unreachable_code(&e).unwrap_or(IcmpError::Host);
            out.push(view.gateway, packet::icmp_error_len(&head, quote), |buf| {
                packet::write_icmp_error(buf, &head, code, quote)
            });
            host.close(id, false);
            self.drop_flow(id);
            self.count(key.network).flows_refused += 1;
            return None;
        }
        self.arm(id, now + DATAGRAM_UNANSWERED_MS);
        Some(id)
    }

    /// Takes a sandbox's datagram (or, with `segment`, its UDP GSO train)
    /// on flow `id`. A UDP datagram is held to leave with the flow's next
    /// ones as one train (see [`Held`]); the rest leave at once.
    #[allow(clippy::too_many_arguments)]
    fn datagram_out(
        &mut self,
        id: FlowId,
        payload: &[u8],
        segment: Option<usize>,
        quote: &[u8],
        now: u64,
        host: &mut impl Host,
        out: &mut Emit,
    ) {
        let Some(flow) = self.table.get_mut(id) else { return };
        flow.last_seen = now;
        flow.bytes_from_sandbox += payload.len() as u64;
        // On a published port, the sandbox's datagram is the answer.
        if flow.inbound
            && let FlowState::Datagram { answered } = &mut flow.state
        {
            *answered = true;
        }
        let (udp, max) = (flow.key.proto == Proto::Udp, flow.head.family().max_udp_payload());
        if udp && segment.is_none() && !payload.is_empty() && self.hold_datagrams {
            if self.held.joins(id, payload.len(), max) {
                self.held.push(payload);
            } else {
                self.flush_datagrams(host, out);
                self.held.start(id, payload, quote);
            }
            return;
        }
        // What the flow holds leaves first: its order is kept.
        if self.held.flow == Some(id) {
            self.flush_datagrams(host, out);
        }
        self.send_datagrams(id, payload, segment, quote, host, out);
    }

    /// Whether a sandbox's datagrams of one flow that come back to back are
    /// held to leave as one train (on by default); off, each leaves alone.
    pub fn set_hold_datagrams(&mut self, on: bool) {
        self.hold_datagrams = on;
    }

    /// Sends the datagrams held back (see [`Held`]): one train, or the one
    /// datagram. The daemon calls it once its batch of frames is through.
    pub fn flush_datagrams(&mut self, host: &mut impl Host, out: &mut Emit) {
        let Some(id) = self.held.flow.take() else { return };
        let held = std::mem::take(&mut self.held);
        let segment = (held.count > 1).then_some(held.segment);
        self.send_datagrams(id, &held.bytes, segment, &held.quote, host, out);
        self.held = held;
    }

    /// Sends a datagram (or, with `segment`, a train) of flow `id`; an
    /// error the host reports becomes the ICMP error the sandbox's stack
    /// expects, quoting `quote`.
    fn send_datagrams(
        &mut self,
        id: FlowId,
        payload: &[u8],
        segment: Option<usize>,
        quote: &[u8],
        host: &mut impl Host,
        out: &mut Emit,
    ) {
        let Some(flow) = self.table.get(id) else { return };
        let sent = match (flow.host, segment) {
            (HostSide::Own, None) => host.send(id, payload).map(drop),
            (HostSide::Own, Some(size)) => host.send_train(id, payload, size),
            (HostSide::Listener(l), None) => host.send_to(l, flow.outer_remote, payload),
            (HostSide::Listener(l), Some(size)) => host.send_train_to(l, flow.outer_remote, payload, size),
        };
        if let Err(e) = sent
            && let Some(code) = datagram_icmp_error(&e, flow.head.family(), || host.path_mtu(id))
        {
            let head = flow.head;
            out.push(flow.gateway, packet::icmp_error_len(&head, quote), |buf| {
                packet::write_icmp_error(buf, &head, code, quote)
            });
        }
    }

    /// A datagram (UDP payload, or ICMP echo reply message) arrived on flow
    /// `id`'s own socket and sits in `buf` at [`Translator::payload_offset`]
    /// (its family's [`Family::udp_payload`] or [`Family::icmp_message`]):
    /// writes the frame around it. A datagram larger than the network's
    /// MTU goes out in IP fragments instead, through `out` (`None` here),
    /// as the sandbox's own stack would have received it from a router.
    ///
    /// With `segment` (UDP only), the `len` bytes are a train the host
    /// socket coalesced (`UDP_GRO`): datagrams of `segment` bytes, the last
    /// maybe shorter. They go to the sandbox as one `GSO_UDP_L4` frame
    /// that its kernel cuts, or, when one of them would not fit the
    /// network's MTU, each on its own (fragmented) through `out`.
    pub fn datagram_in(
        &mut self,
        id: FlowId,
        buf: &mut [u8],
        len: usize,
        segment: Option<u16>,
        now: u64,
        out: &mut Emit,
    ) -> Option<DataFrame> {
        let flow = self.table.get_mut(id)?;
        let FlowState::Datagram { answered } = &mut flow.state else { return None };
        *answered = true;
        flow.last_seen = now;
        flow.bytes_to_sandbox += len as u64;
        let head = flow.head;
        let (port, network) = (flow.gateway, flow.key.network);
        match flow.key.proto {
            Proto::Udp => self.udp_toward_sandbox(network, port, &head, buf, len, segment, out),
            Proto::Icmp => {
                let len = packet::write_echo_reply(buf, &head, flow.key.sandbox.port(), len)?;
                self.whole_or_fragments(network, DataFrame { port, len, hdr: VirtioNetHdr::default() }, buf, out)
            }
            Proto::Tcp => None,
        }
    }

    /// The frame of UDP payload bytes (`len` of them at the family's
    /// [`Family::udp_payload`] in `buf`; with `segment`, a train of
    /// datagrams of that size) toward a sandbox behind `port` on `network`,
    /// or `None` when what it became went to `out` (fragments, or a train's
    /// datagrams one by one).
    #[allow(clippy::too_many_arguments)]
    fn udp_toward_sandbox(
        &mut self,
        network: NetworkId,
        port: PortId,
        head: &Head,
        buf: &mut [u8],
        len: usize,
        segment: Option<u16>,
        out: &mut Emit,
    ) -> Option<DataFrame> {
        // A client of the other family may have sent more than this
        // family's datagrams carry (an IPv6 one over 65,507 bytes toward
        // an IPv4 backend): the train keeps the datagrams that fit; a
        // datagram that large has no way to the sandbox.
        let max = head.family().max_udp_payload();
        let len = match segment.map(usize::from) {
            _ if len <= max => len,
            Some(size) if size > 0 && size <= max => max / size * size,
            _ => return None,
        };
        let (frame_len, hdr) = packet::write_udp(buf, head, len);
        let made = DataFrame { port, len: frame_len, hdr };
        let Some(size) = segment.map(usize::from).filter(|&size| size > 0 && size < len) else {
            return self.whole_or_fragments(network, made, buf, out);
        };
        let mtu = self.mtu_of(network);
        let at = head.family().udp_payload();
        if at - packet::ETH + size <= mtu {
            let hdr =
                VirtioNetHdr { gso_type: VirtioNetHdr::GSO_UDP_L4, gso_size: size as u16, hdr_len: at as u16, ..hdr };
            return Some(DataFrame { hdr, ..made });
        }
        // Every datagram but a short last one is too wide for the network:
        // each becomes its own frame (fragments, where it does not fit).
        let mut scratch = std::mem::take(&mut self.scratch);
        for datagram in buf[at..at + len].chunks(size) {
            scratch.clear();
            scratch.resize(at, 0);
            scratch.extend_from_slice(datagram);
            let (frame_len, hdr) = packet::write_udp(&mut scratch, head, datagram.len());
            let one = DataFrame { port, len: frame_len, hdr };
            if let Some(whole) = self.whole_or_fragments(network, one, &mut scratch, out) {
                packet::complete_checksum(&mut scratch[..whole.len], whole.hdr);
                out.push(port, whole.len, |b| {
                    b[..whole.len].copy_from_slice(&scratch[..whole.len]);
                    whole.len
                });
            }
        }
        self.scratch = scratch;
        None
    }

    /// The MTU of `network` (unbounded for a network the translator does
    /// not know).
    fn mtu_of(&self, network: NetworkId) -> usize {
        self.nets.get(network.index()).copied().flatten().map_or(usize::MAX, |v| v.mtu as usize)
    }

    /// The frame `made` of a datagram toward a sandbox on `network`, written
    /// in `buf`, as it is when it fits the network's MTU; otherwise its IP
    /// fragments go to `out` and the frame is `None`.
    fn whole_or_fragments(
        &mut self,
        network: NetworkId,
        made: DataFrame,
        buf: &mut [u8],
        out: &mut Emit,
    ) -> Option<DataFrame> {
        let mtu = self.mtu_of(network);
        if made.len - packet::ETH <= mtu {
            return Some(made);
        }
        self.fragment_id = self.fragment_id.wrapping_add(1);
        let port = made.port;
        packet::fragment(&mut buf[..made.len], made.hdr, mtu, self.fragment_id, |max, write| {
            out.push(port, max, write)
        });
        None
    }

    /// Flow `id`'s datagram socket reported an error (an ICMP or ICMPv6
    /// error from the path): the sandbox gets the matching error (port,
    /// host or network unreachable; over IPv6 also packet too big, with
    /// the path MTU the host learnt).
    pub fn datagram_error(&mut self, id: FlowId, e: &io::Error, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get(id) else { return };
        let code = datagram_icmp_error(e, flow.head.family(), || host.path_mtu(id)).unwrap_or(IcmpError::Host);
        let quote = packet::rebuild_quote(flow.head.sandbox, flow.head.remote, flow.key.proto, 0);
        let quote = quote.as_slice();
        let head = flow.head;
        out.push(flow.gateway, packet::icmp_error_len(&head, quote), |buf| {
            packet::write_icmp_error(buf, &head, code, quote)
        });
    }

    /// Where the daemon puts what it reads from flow `id`'s socket for the
    /// sandbox: the TCP or UDP payload, or the ICMP message, of a frame of
    /// the flow's family.
    pub fn payload_offset(&self, id: FlowId) -> Option<usize> {
        let flow = self.table.get(id)?;
        let family = flow.head.family();
        Some(match flow.key.proto {
            Proto::Tcp => family.tcp_payload(),
            Proto::Udp => family.udp_payload(),
            Proto::Icmp => family.icmp_message(),
        })
    }

    /// The most bytes one read from flow `id`'s datagram socket may bring
    /// (a datagram or a UDP GRO train of the flow's family): reads cut
    /// shorter would lose the rest.
    pub fn datagram_room(&self, id: FlowId) -> Option<usize> {
        Some(self.table.get(id)?.head.family().max_udp_payload())
    }

    /// A datagram from `client` arrived on published UDP port `listener`
    /// and sits in `buf` at the client's family's
    /// [`Family::udp_payload`]: writes the frame toward the backend its
    /// flow is pinned to (a new flow picks the next one), or, larger than
    /// the network's MTU, its IP fragments through `out`.
    ///
    /// With `segment`, the bytes are a train, as for
    /// [`Translator::datagram_in`].
    #[allow(clippy::too_many_arguments)]
    pub fn udp_inbound(
        &mut self,
        listener: ListenerId,
        client: SocketAddr,
        buf: &mut [u8],
        len: usize,
        segment: Option<u16>,
        now: u64,
        out: &mut Emit,
    ) -> Option<DataFrame> {
        let id = match self.by_client.get(&(listener, client)) {
            Some(&id) => id,
            None => {
                let (backend, _, route) = self.route(listener, client, Proto::Udp, None)?;
                let Route { view, key, head } = route?;
                if self.full(backend.network) {
                    return None;
                }
                let state = FlowState::Datagram { answered: false };
                let id = self.add_flow(new_flow(
                    key,
                    true,
                    view.gateway,
                    head,
                    client,
                    HostSide::Listener(listener),
                    state,
                    now,
                ));
                self.by_client.insert((listener, client), id);
                self.arm(id, now + DATAGRAM_UNANSWERED_MS);
                id
            }
        };
        let flow = self.table.get_mut(id)?;
        // A client carried to the backend's other family: the payload
        // moves to where that family's frame has it.
        let (at, to) = (Family::of(client.ip()).udp_payload(), flow.head.family().udp_payload());
        if at != to {
            if buf.len() < at.max(to) + len {
                return None;
            }
            buf.copy_within(at..at + len, to);
        }
        flow.last_seen = now;
        flow.bytes_to_sandbox += len as u64;
        let head = flow.head;
        let (port, network) = (flow.gateway, flow.key.network);
        self.udp_toward_sandbox(network, port, &head, buf, len, segment, out)
    }

    /// Runs the timers due at `now`: retransmissions toward sandboxes, SYNs
    /// to backends, idle flows.
    pub fn poll_timers(&mut self, now: u64, host: &mut impl Host, out: &mut Emit) {
        self.latest_now = self.latest_now.max(now);
        while let Some(&Reverse((at, slot))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let id = FlowId(slot);
            let Some(flow) = self.table.get_mut(id) else { continue };
            // Only a flow's earliest wake-up counts; older entries are stale.
            if flow.timer != Some(at) {
                continue;
            }
            flow.timer = None;
            self.fire(id, now, host, out);
        }
    }

    fn fire(&mut self, id: FlowId, now: u64, host: &mut impl Host, out: &mut Emit) {
        let Some(flow) = self.table.get_mut(id) else { return };
        if let FlowState::Tcp(t) = &flow.state {
            tracing::trace!(flow = id.0, key = ?flow.key, now, deadline = ?t.deadline, phase = ?t.phase, retries = t.retries, last_seen = flow.last_seen, "flow timer");
        }
        let network = flow.key.network;
        let last_seen = flow.last_seen;
        match &mut flow.state {
            FlowState::Datagram { answered } => {
                let stream = *answered && last_seen >= flow.opened + STREAM_AFTER_MS;
                let idle = if stream { DATAGRAM_IDLE_MS } else { DATAGRAM_UNANSWERED_MS };
                if last_seen + idle > now {
                    self.arm(id, last_seen + idle);
                    return;
                }
                if flow.host == HostSide::Own {
                    host.close(id, false);
                }
                self.drop_flow(id);
                self.count(network).flows_timed_out += 1;
            }
            FlowState::Tcp(t) => {
                let due = t.deadline.unwrap_or(last_seen + tcp::IDLE_MS);
                if due > now {
                    self.arm(id, due);
                    return;
                }
                t.deadline = None;
                match t.phase {
                    Phase::Connecting => {
                        self.count(network).flows_timed_out += 1;
                        self.refuse(id, &io::Error::from_raw_os_error(libc::ETIMEDOUT), host, out);
                    }
                    Phase::SynAckSent => {
                        t.retries += 1;
                        if t.retries >= tcp::SYN_TRIES {
                            self.count(network).flows_timed_out += 1;
                            self.reset_both(id, host, out);
                        } else {
                            self.send_syn_ack(id, now, out);
                        }
                    }
                    Phase::SynSent => {
                        t.retries += 1;
                        if t.retries >= tcp::SYN_TRIES {
                            self.count(network).flows_timed_out += 1;
                            self.next_backend(id, now, host, out);
                        } else {
                            self.send_syn(id, now, out);
                        }
                    }
                    Phase::Established if t.outstanding() => {
                        t.retries += 1;
                        if t.retries > tcp::MAX_RETRIES {
                            self.count(network).flows_timed_out += 1;
                            self.reset_both(id, host, out);
                            return;
                        }
                        t.rto_ms = (t.rto_ms * 2).min(tcp::RTO_MAX_MS);
                        let at = now + u64::from(t.rto_ms);
                        t.deadline = Some(at);
                        rewind(id, t, host);
                        self.arm(id, at);
                        self.queue_send(id);
                    }
                    // Nothing in flight, bytes waiting, the window shut:
                    // a window probe (the last byte acknowledged again,
                    // which the sandbox answers with its window), backing
                    // off to 3 s. A sandbox that answers keeps its flow, as
                    // TCP's persist state does; one that does not reaches
                    // the idle limit.
                    Phase::Established if t.zero_window_stall() && now < last_seen + tcp::IDLE_MS => {
                        t.rto_ms = (t.rto_ms * 2).min(tcp::RTO_MAX_MS);
                        let at = now + u64::from(t.rto_ms);
                        t.deadline = Some(at);
                        let fields = TcpFields {
                            seq: t.snd_una.wrapping_sub(1),
                            ack: t.rcv_nxt,
                            flags: flags::ACK,
                            window: t.window_field(),
                        };
                        let head = flow.head;
                        out.push(flow.gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, &head, fields, None));
                        self.arm(id, at);
                    }
                    // A deadline that outlived its reason (a persist
                    // timer whose window opened meanwhile): only the idle
                    // limit ends a flow with nothing in flight.
                    Phase::Established if now < last_seen + tcp::IDLE_MS => {
                        t.rto_ms = tcp::RTO_MIN_MS;
                        self.arm(id, last_seen + tcp::IDLE_MS);
                    }
                    Phase::Established => {
                        self.count(network).flows_timed_out += 1;
                        self.reset_both(id, host, out);
                    }
                }
            }
        }
    }

    /// Ends every flow of the endpoint with `mac` and `addresses` on
    /// `network` (it is gone): those through it, whatever their source
    /// address, and those from its addresses on any network (a sandbox on
    /// several networks may send from its address on one through another's
    /// gateway, Linux's weak host model; addresses are unique across
    /// networks, whose subnets never overlap). Own sockets are closed, TCP
    /// ones with a reset. Returns how many flows ended.
    pub fn forget_endpoint(
        &mut self,
        network: NetworkId,
        mac: MacAddr,
        addresses: &[IpAddr],
        host: &mut impl Host,
    ) -> usize {
        self.end_flows(host, |f| {
            (f.key.network == network && f.head.sandbox_mac == mac.0) || addresses.contains(&f.key.sandbox.ip())
        })
    }

    /// Forgets `network` (removed) with every flow on it, as
    /// [`Translator::forget_endpoint`] ends an endpoint's: a flow left behind
    /// would never be sent to again, not even its SYN or SYN-ACK
    /// retransmission (they need the network's MTU), and hold its slot and
    /// socket for good. Returns how many flows ended.
    pub fn forget_network(&mut self, network: NetworkId, host: &mut impl Host) -> usize {
        self.set_network(network, None);
        self.end_flows(host, |f| f.key.network == network)
    }

    /// Ends the flows `which` selects: own sockets are closed, TCP ones
    /// with a reset. Returns how many.
    fn end_flows(&mut self, host: &mut impl Host, which: impl Fn(&Flow) -> bool) -> usize {
        let gone: Vec<(FlowId, bool, bool)> = self
            .table
            .iter()
            .filter(|(_, f)| which(f))
            .map(|(id, f)| (id, f.host == HostSide::Own, f.key.proto == Proto::Tcp))
            .collect();
        for &(id, own, tcp) in &gone {
            if own {
                host.close(id, tcp);
            }
            self.drop_flow(id);
        }
        gone.len()
    }

    /// When [`Translator::poll_timers`] next has work.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The live flows, for `nat ls` (the daemon fills in its own sockets'
    /// local addresses).
    pub fn flows(&self, now: u64) -> Vec<(FlowId, FlowInfo)> {
        self.table
            .iter()
            .map(|(id, f)| {
                let state = match &f.state {
                    FlowState::Tcp(t) => t.state_name(),
                    FlowState::Datagram { .. } => "active",
                };
                let info = FlowInfo {
                    proto: f.key.proto,
                    direction: if f.inbound { Direction::Inbound } else { Direction::Egress },
                    network: f.key.network,
                    sandbox: f.key.sandbox,
                    remote: f.key.remote,
                    // A published UDP flow shares its port's socket; own
                    // sockets' addresses are the daemon's to fill in.
                    outer_local: match f.host {
                        HostSide::Listener(l) => self.listener(l).map(|(_, addr)| addr),
                        HostSide::Own => None,
                    },
                    outer_remote: f.outer_remote,
                    bytes_from_sandbox: f.bytes_from_sandbox,
                    bytes_to_sandbox: f.bytes_to_sandbox,
                    age_ms: now.saturating_sub(f.opened),
                    state,
                };
                (id, info)
            })
            .collect()
    }

    /// The counters of every network that has had flows.
    pub fn counters(&self) -> Vec<(NetworkId, Counters)> {
        self.counters.iter().enumerate().map(|(i, c)| (NetworkId(i as u32), *c)).collect()
    }

    /// The proto and published address of a listener.
    pub fn listener(&self, id: ListenerId) -> Option<(Proto, SocketAddr)> {
        let l = self.listeners.get(id.0 as usize)?.as_ref()?;
        Some((l.proto?, l.host?))
    }

    /// True once after the flow table emptied following a peak of flows:
    /// the translator has let go of its per-flow memory (the stale timer
    /// entries too), and the daemon may return free memory to the system.
    pub fn take_emptied(&mut self) -> bool {
        if !self.table.take_emptied() || !self.is_empty() {
            return false;
        }
        self.timers = BinaryHeap::new();
        self.acks = Vec::new();
        self.by_client = HashMap::default();
        self.sendable = SendQueue::default();
        true
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no flow is open.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}

/// Whether `key`'s flow is one to `backend` (the flow's sandbox side is
/// the backend's address and port).
fn serves(backend: &Backend, key: &FlowKey) -> bool {
    key.network == backend.network
        && key.sandbox.port() == backend.port
        && backend.address_like(key.sandbox.ip()) == Some(key.sandbox.ip())
}

/// Makes the next peek start at the oldest unacknowledged byte.
fn rewind(id: FlowId, t: &mut TcpFlow, host: &mut impl Host) {
    t.snd_nxt = t.snd_una;
    t.fin_out = false;
    t.dupacks = 0;
    t.readable = true;
    host.rewind(id);
}

fn tcp_state(t: TcpFlow) -> FlowState {
    FlowState::Tcp(Box::new(t))
}

#[allow(clippy::too_many_arguments)]
fn new_flow(
    key: FlowKey,
    inbound: bool,
    gateway: PortId,
    head: Head,
    outer_remote: SocketAddr,
    host: HostSide,
    state: FlowState,
    now: u64,
) -> Flow {
    Flow {
        key,
        inbound,
        gateway,
        head,
        outer_remote,
        host,
        state,
        opened: now,
        last_seen: now,
        timer: None,
        bytes_from_sandbox: 0,
        bytes_to_sandbox: 0,
    }
}

/// Whether a published port's client must be shown to the sandbox as its
/// gateway: a loopback client (the sandbox's own loopback would answer),
/// an IPv6 link-local one (its address means another link to the sandbox).
fn stands_in(client: IpAddr) -> bool {
    match client {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Whether `port` is one the gateway uses itself: the embedded DNS asks
/// on-network upstreams from it, and their answers must reach the DNS, not
/// a flow of a client shown as the gateway.
fn is_gateways_own(port: u16) -> bool {
    port == crate::gateway::dns::UPSTREAM_PORT
}

/// Ports tried for a client shown as the gateway when its own port is
/// taken by another such client (or is one of the gateway's own).
const MAPPED_PORT_TRIES: u64 = 16;

/// The `i`-th port to try for a client shown as the gateway, spread over
/// the ephemeral range 32768–60999 by the client's `hash`.
fn mapped_port(hash: u64, i: u64) -> u16 {
    (32_768 + hash.wrapping_add(i.wrapping_mul(0x9e37_79b9)) % 28_232) as u16
}

/// Answers a TCP segment that belongs to no flow with a reset (RFC 9293
/// §3.10.7.1).
fn reset_stray(head: &Head, gateway: PortId, seg: &TcpSegment<'_>, out: &mut Emit) {
    if seg.has(flags::RST) {
        return;
    }
    let fields = if seg.has(flags::ACK) {
        TcpFields { seq: seg.ack, ack: 0, flags: flags::RST, window: 0 }
    } else {
        let len = seg.payload.len() as u32 + u32::from(seg.has(flags::SYN)) + u32::from(seg.has(flags::FIN));
        TcpFields { seq: 0, ack: seg.seq.wrapping_add(len), flags: flags::RST | flags::ACK, window: 0 }
    };
    out.push(gateway, CONTROL_MAX, |buf| packet::write_tcp_control(buf, head, fields, None));
}

/// The ICMP error for a socket error that means "unreachable"; `None` for
/// a refusal or anything else.
fn unreachable_code(e: &io::Error) -> Option<IcmpError> {
    match e.raw_os_error() {
        Some(libc::ENETUNREACH) => Some(IcmpError::Net),
        Some(libc::EHOSTUNREACH | libc::ETIMEDOUT | libc::EHOSTDOWN) => Some(IcmpError::Host),
        _ => None,
    }
}

/// The ICMP error for an error a flow's datagram socket reported: port
/// unreachable for a refusal, net or host unreachable, and over IPv6
/// packet too big for `EMSGSIZE` (an ICMPv6 packet too big reached the
/// host), with the path MTU `mtu` gives (at least IPv6's 1280). `None` for
/// anything else.
fn datagram_icmp_error(e: &io::Error, family: Family, mtu: impl FnOnce() -> Option<u32>) -> Option<IcmpError> {
    if family == Family::V6 && e.raw_os_error() == Some(libc::EMSGSIZE) {
        return Some(IcmpError::TooBig(mtu().unwrap_or(1280).max(1280)));
    }
    unreachable_code(e).or((e.kind() == io::ErrorKind::ConnectionRefused).then_some(IcmpError::Port))
}
