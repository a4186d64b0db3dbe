//! The embedded DNS in the datapath: queries to a gateway's port 53 are
//! answered from the [`Directory`] (on the datapath thread: a local answer
//! is one parse and one encode), or handed to the forwarding thread without
//! waiting; forwarded answers come back through a channel and leave from the
//! gateway like any answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use dns::{
    Action, Counters, Directory, Forwarder, MAX_UPSTREAMS, Outcome, Resolver, Source, Transport, UPSTREAM_TIMEOUT_MS,
};

use super::super::dns_forward::{Done, ForwardThread, Job, MAX_IN_FLIGHT};
use super::{Datapath, PortIo};
use crate::counters::DropReason;
use crate::gateway::dns::{
    DnsFrame, TcpAnswer, TcpConn, TcpQuery, UPSTREAM_PORT, UdpQuery, classify, udp_answer_frame, udp_frame,
};
use crate::port::{NetworkId, PortId};
use crate::time::Timestamp;
use crate::wire::MacAddr;

/// IPv4 and UDP headers: what a UDP answer adds to the DNS message.
const IPV4_UDP_HEADERS: usize = 28;
/// IPv6 and UDP headers, likewise over IPv6.
const IPV6_UDP_HEADERS: usize = 48;

/// The IP and UDP headers of an answer to `client`.
fn udp_headers(client: IpAddr) -> usize {
    if client.is_ipv4() { IPV4_UDP_HEADERS } else { IPV6_UDP_HEADERS }
}
/// Queries in flight to on-network upstreams at most.
const MAX_LOCAL_IN_FLIGHT: usize = 256;

/// Where a forwarded query's answer goes.
#[derive(Debug)]
enum ReplyPath {
    /// A UDP client, answered with a frame from the gateway.
    Udp { gateway: PortId, query: UdpQuery },
    /// A TCP connection of the gateway's DNS server.
    Tcp { gateway: PortId, conn: TcpConn },
}

impl ReplyPath {
    fn gateway(&self) -> PortId {
        match self {
            ReplyPath::Udp { gateway, .. } | ReplyPath::Tcp { gateway, .. } => *gateway,
        }
    }
}

/// A gateway's subnets: its IPv4 and IPv6 addresses with their prefix
/// lengths (either is `None` on a network without that family). An
/// upstream inside one of them is asked from the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Subnets {
    /// The IPv4 address and prefix length.
    pub(super) v4: Option<(Ipv4Addr, u8)>,
    /// The IPv6 address and prefix length.
    pub(super) v6: Option<(Ipv6Addr, u8)>,
}

impl Subnets {
    /// The subnets of gateway `gw`.
    pub(super) fn of(gw: &crate::gateway::Gateway) -> Subnets {
        Subnets { v4: gw.subnet(), v6: gw.subnet6() }
    }

    /// Whether `ip` lies in the subnet of its family.
    fn on_link(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.is_some_and(|(address, prefix_len)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len.min(32))).unwrap_or(0);
                u32::from(ip) & mask == u32::from(address) & mask
            }),
            IpAddr::V6(ip) => self.v6.is_some_and(|(address, prefix_len)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len.min(128))).unwrap_or(0);
                u128::from(ip) & mask == u128::from(address) & mask
            }),
        }
    }
}

/// The datapath's DNS state.
pub(super) struct DnsService {
    pub(super) directory: Directory,
    resolver: Resolver,
    forward: ForwardThread,
    results: Receiver<Done>,
    pending: HashMap<u64, ReplyPath>,
    next_token: u64,
    /// Queries to upstreams on the asker's own network (a `--dns` server
    /// in another sandbox), asked from the gateway through the bridge: the
    /// forwarding thread's sockets live in the daemon's namespace, which
    /// has no route into the networks.
    local: Forwarder,
    /// The gateway and network each on-network query (by upstream ID) is
    /// asked through.
    local_route: HashMap<u16, (PortId, NetworkId)>,
    /// On-network queries to send: from which gateway, to whom, what.
    local_sends: Vec<(PortId, UdpQuery, Vec<u8>)>,
    /// On-network queries that are done.
    local_done: Vec<Done>,
    /// What each on-network query (by token) falls back to when none of
    /// its on-network upstreams answered: the rest of its list.
    local_fallback: HashMap<u64, Fallback>,
}

/// The upstreams off the network that a query's list also names, asked
/// through the forwarding thread once its on-network ones have failed.
#[derive(Debug)]
struct Fallback {
    query: Vec<u8>,
    upstreams: Arc<[SocketAddr]>,
    tcp: bool,
}

impl DnsService {
    /// A service forwarding to `upstreams` through `forward`, whose answers
    /// arrive on `results`.
    pub(super) fn new(upstreams: Vec<SocketAddr>, forward: ForwardThread, results: Receiver<Done>) -> DnsService {
        DnsService {
            directory: Directory::new(),
            resolver: Resolver::new(upstreams),
            forward,
            results,
            pending: HashMap::new(),
            next_token: 0,
            local: Forwarder::new(MAX_LOCAL_IN_FLIGHT, UPSTREAM_TIMEOUT_MS, super::super::dns_forward::seed()),
            local_route: HashMap::new(),
            local_sends: Vec::new(),
            local_done: Vec::new(),
            local_fallback: HashMap::new(),
        }
    }

    /// Forgets the queries in flight of a gateway that is going away: its
    /// port id (and its TCP server's connection ids) may soon belong to
    /// another network's gateway, which must not get their answers.
    pub(super) fn forget_gateway(&mut self, gateway: PortId) {
        self.pending.retain(|_, path| path.gateway() != gateway);
        let asked_through: Vec<u16> =
            self.local_route.iter().filter(|(_, (g, _))| *g == gateway).map(|(id, _)| *id).collect();
        for id in asked_through {
            self.local.cancel(id);
            self.local_route.remove(&id);
        }
        self.local_sends.retain(|(g, ..)| *g != gateway);
        let pending = &self.pending;
        self.local_fallback.retain(|token, _| pending.contains_key(token));
    }

    fn has_room(&self) -> bool {
        self.pending.len() < MAX_IN_FLIGHT
    }

    /// Allocates a token for a query with `path` as its way back.
    fn token(&mut self, path: ReplyPath) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, path);
        token
    }

    /// Hands a query to the forwarding thread; false if it is gone.
    fn forward(&mut self, path: ReplyPath, query: &[u8], upstreams: Arc<[SocketAddr]>, tcp: bool) -> bool {
        let token = self.token(path);
        if !self.forward.submit(Job { token, query: query.to_vec(), upstreams, tcp }) {
            self.pending.remove(&token);
            return false;
        }
        true
    }

    /// Forwards a query to the first [`MAX_UPSTREAMS`] of its list: those
    /// on the network's own subnets first, from the gateway (over UDP even
    /// for TCP clients), then, if they all fail, the others through the
    /// forwarding thread; with none on the network, all through the
    /// thread. False if it cannot.
    #[allow(clippy::too_many_arguments)]
    fn forward_any(
        &mut self,
        path: ReplyPath,
        network: NetworkId,
        subnets: Subnets,
        query: &[u8],
        upstreams: Arc<[SocketAddr]>,
        tcp: bool,
        now: Timestamp,
    ) -> bool {
        let mut listed: Vec<SocketAddr> = Vec::with_capacity(MAX_UPSTREAMS);
        for u in upstreams.iter() {
            if !listed.contains(u) && listed.len() < MAX_UPSTREAMS {
                listed.push(*u);
            }
        }
        let (local, others): (Vec<SocketAddr>, Vec<SocketAddr>) =
            listed.into_iter().partition(|u| subnets.on_link(u.ip()));
        if local.is_empty() {
            return self.forward(path, query, upstreams, tcp);
        }
        let gateway = path.gateway();
        let token = self.token(path);
        match self.local.start(token, query, &local, false, now.0) {
            Ok(action) => {
                if let Action::Send { id, .. } = &action {
                    self.local_route.insert(*id, (gateway, network));
                }
                if !others.is_empty() {
                    let fallback = Fallback { query: query.to_vec(), upstreams: others.into(), tcp };
                    self.local_fallback.insert(token, fallback);
                }
                self.local_action(action, now);
                true
            }
            Err(_) => {
                self.pending.remove(&token);
                false
            }
        }
    }

    /// Carries out what the on-network forwarder says: a query to send from
    /// the gateway (to the MAC the directory knows for the upstream), or a
    /// client's answer.
    fn local_action(&mut self, action: Action, now: Timestamp) {
        let mut next = Some(action);
        while let Some(action) = next.take() {
            match action {
                Action::Send { id, upstream, query, .. } => {
                    let address = upstream.ip();
                    let to = self.local_route.get(&id).and_then(|&(gateway, network)| {
                        self.directory.mac_of(network.0, address).map(|mac| (gateway, mac))
                    });
                    match to {
                        Some((gateway, mac)) => {
                            let to = UdpQuery { mac: MacAddr(mac), address, port: upstream.port(), payload: 0..0 };
                            self.local_sends.push((gateway, to, query));
                        }
                        // Not an endpoint of this host: cannot be reached.
                        None => next = self.local.on_failure(id, now.0),
                    }
                }
                Action::Done { token, answer, failed } => self.local_done.push(Done { token, answer, failed }),
            }
        }
        let local = &self.local;
        self.local_route.retain(|id, _| local.is_in_flight(*id));
    }

    /// When the next on-network query's upstream has had its time (ms).
    pub(super) fn next_local_deadline(&self) -> Option<u64> {
        self.local.next_deadline()
    }

    /// Moves on-network queries whose upstream has had its time on.
    pub(super) fn expire_local(&mut self, now: Timestamp) {
        let mut actions = Vec::new();
        self.local.expire(now.0, &mut actions);
        for action in actions {
            self.local_action(action, now);
        }
    }

    /// Answers (or forwards) a query read from a TCP client of `gateway`'s
    /// DNS server on `network` (whose gateway's subnets are `subnets`).
    pub(super) fn tcp_query(
        &mut self,
        gateway: PortId,
        network: NetworkId,
        subnets: Subnets,
        counters: &mut Counters,
        query: TcpQuery,
        now: Timestamp,
    ) -> TcpAnswer {
        let source = Source::Network { network: network.0, address: query.client };
        let room = self.has_room();
        match self.resolver.resolve(&self.directory, source, &query.message, Transport::Tcp, room, counters) {
            Outcome::Answer(bytes) => TcpAnswer::Now(bytes),
            Outcome::Forward(upstreams) => {
                let path = ReplyPath::Tcp { gateway, conn: query.conn };
                if self.forward_any(path, network, subnets, &query.message, upstreams, true, now) {
                    TcpAnswer::Later
                } else {
                    counters.upstream_failures += 1;
                    TcpAnswer::Close
                }
            }

            Outcome::Drop => TcpAnswer::Close,
        }
    }
}

impl Datapath {
    /// Handles frame `i` of the batch, sent to gateway `gateway`, if it is
    /// for the DNS server. Returns false when the frame is for the
    /// gateway's stack.
    pub(super) fn dns_detour(&mut self, gateway: PortId, i: usize) -> bool {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return false };
        let ingress = self.batch.entry(i).port;
        match classify(self.batch.frame(i), gw.ipv4(), gw.ipv6()) {
            DnsFrame::Udp(query) => {
                self.dns_udp(gateway, ingress, i, query);
                true
            }
            // TCP clients are known to the DNS server by address alone, so
            // only a port's own address may reach it.
            DnsFrame::Tcp { source } if !self.dns.directory.owns_address(ingress.0, source) => {
                if let Some(counters) = self.dns_counters(gateway) {
                    counters.refused += 1;
                }
                self.bridge.count_drop(ingress, DropReason::DnsSpoofed);
                true
            }
            DnsFrame::UpstreamAnswer(from) => {
                // Only the port that owns the upstream's address may answer
                // for it.
                if self.dns.directory.owns_address(ingress.0, from.address) {
                    let now = self.clock.now();
                    let answer = &self.batch.frame(i)[from.payload.clone()];
                    let sender = SocketAddr::from((from.address, from.port));
                    if let Some(action) = self.dns.local.on_answer(sender, answer, now.0) {
                        self.dns.local_action(action, now);
                    }
                } else {
                    self.bridge.count_drop(ingress, DropReason::DnsSpoofed);
                }
                self.flush_local_dns();
                true
            }
            DnsFrame::UpstreamUnreachable { from, server } => {
                // Only the upstream itself says its port is closed (Linux
                // sends "port unreachable" from the address asked): another
                // sandbox must not make the gateway give up on a server.
                if from == server.ip() && self.dns.directory.owns_address(ingress.0, from) {
                    let now = self.clock.now();
                    for action in self.dns.local.on_unreachable(server, now.0) {
                        self.dns.local_action(action, now);
                    }
                    self.flush_local_dns();
                } else {
                    self.bridge.count_drop(ingress, DropReason::DnsSpoofed);
                }
                true
            }
            DnsFrame::Tcp { .. } | DnsFrame::Other => false,
        }
    }

    /// Moves on the on-network queries whose upstream has had its time, and
    /// sends what that leads to (the next upstream's query, or SERVFAIL).
    pub(super) fn expire_local_dns(&mut self) {
        let now = self.clock.now();
        self.dns.expire_local(now);
        self.flush_local_dns();
        if !self.injected.is_empty() || !self.busy_gateways.is_empty() {
            self.run_local(now);
        }
    }

    /// Sends the on-network queries the DNS queued and delivers the
    /// answers it has.
    pub(super) fn flush_local_dns(&mut self) {
        for (gateway, to, query) in std::mem::take(&mut self.dns.local_sends) {
            let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { continue };
            // From the gateway's address of the upstream's family (which the
            // gateway has: the upstream lies in its subnet of that family).
            let source = match to.address {
                IpAddr::V4(_) => gw.ipv4().map(IpAddr::V4),
                IpAddr::V6(_) => gw.ipv6().map(IpAddr::V6),
            };
            let Some(source) = source else { continue };
            let mut frame = Vec::new();
            if udp_frame(gw.mac(), source, UPSTREAM_PORT, &to, &query, &mut frame) {
                self.injected.push((gateway, frame));
            }
        }
        for done in std::mem::take(&mut self.dns.local_done) {
            self.deliver_dns_answer(done);
        }
    }

    fn dns_counters(&mut self, gateway: PortId) -> Option<&mut Counters> {
        let network = self.bridge.port_config(gateway).ok()?.network;
        Some(&mut self.nets.get_mut(network.index())?.as_mut()?.dns)
    }

    /// Answers or forwards a UDP query that arrived on `ingress`.
    fn dns_udp(&mut self, gateway: PortId, ingress: PortId, i: usize, query: UdpQuery) {
        let Ok(network) = self.bridge.port_config(gateway).map(|c| c.network) else { return };
        let Datapath { nets, dns, batch, .. } = self;
        let Some(info) = nets.get_mut(network.index()).and_then(Option::as_mut) else { return };
        let payload = &batch.frame(i)[query.payload.clone()];
        let path_limit = (info.mtu as usize).saturating_sub(udp_headers(query.address));
        let source = Source::Port { port: ingress.0, address: query.address };
        let room = dns.has_room();
        let outcome =
            dns.resolver.resolve(&dns.directory, source, payload, Transport::Udp { path_limit }, room, &mut info.dns);
        match outcome {
            Outcome::Answer(bytes) => self.send_udp_answer(gateway, &query, &bytes),
            Outcome::Forward(upstreams) => {
                let payload = batch.frame(i)[query.payload.clone()].to_vec();
                let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return };
                let subnets = Subnets::of(gw);
                let now = self.clock.now();
                let path = ReplyPath::Udp { gateway, query };
                if !dns.forward_any(path, network, subnets, &payload, upstreams, false, now) {
                    info.dns.upstream_failures += 1;
                }
                self.flush_local_dns();
            }
            Outcome::Drop => {}
        }
    }

    /// Queues a UDP answer frame from `gateway` to the sender of `query`.
    fn send_udp_answer(&mut self, gateway: PortId, query: &UdpQuery, answer: &[u8]) {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return };
        let source = match query.address {
            IpAddr::V4(_) => gw.ipv4().map(IpAddr::V4),
            IpAddr::V6(_) => gw.ipv6().map(IpAddr::V6),
        };
        let mut frame = Vec::new();
        if let Some(source) = source
            && udp_answer_frame(gw.mac(), source, query, answer, &mut frame)
        {
            self.injected.push((gateway, frame));
        }
    }

    /// Takes the forwarding thread's answers and sends them on, through the
    /// bridge, to their clients.
    pub(super) fn dns_results(&mut self) {
        let mut any = false;
        while let Ok(done) = self.dns.results.try_recv() {
            self.deliver_dns_answer(done);
            any = true;
        }
        if any {
            self.run_local(self.clock.now());
        }
    }

    /// Sends a forwarded query's answer to its client: a UDP frame from
    /// the gateway (cut to fit the network's MTU), or onto its TCP
    /// connection.
    fn deliver_dns_answer(&mut self, done: Done) {
        let fallback = self.dns.local_fallback.remove(&done.token);
        if done.failed
            && let Some(Fallback { query, upstreams, tcp }) = fallback
            && self.dns.pending.contains_key(&done.token)
            && self.dns.forward.submit(Job { token: done.token, query, upstreams, tcp })
        {
            // Its on-network upstreams failed; the others are asked now.
            return;
        }
        let Some(path) = self.dns.pending.remove(&done.token) else { return };
        let gateway = path.gateway();
        if done.failed
            && let Some(counters) = self.dns_counters(gateway)
        {
            counters.upstream_failures += 1;
        }
        match path {
            ReplyPath::Udp { gateway, query } => {
                let mtu = self.bridge.port_config(gateway).map_or(0, |c| c.mtu as usize);
                let answer = dns::fit_udp(&done.answer, mtu.saturating_sub(udp_headers(query.address)));
                if answer.len() < done.answer.len()
                    && let Some(counters) = self.dns_counters(gateway)
                {
                    counters.truncated += 1;
                }
                self.send_udp_answer(gateway, &query, &answer);
            }
            ReplyPath::Tcp { gateway, conn } => {
                if let Some(Some(PortIo::Gateway(gw))) = self.ports.get_mut(gateway.index()) {
                    gw.dns_tcp_answer(conn, &done.answer);
                    if !self.busy_gateways.contains(&gateway) {
                        self.busy_gateways.push(gateway);
                    }
                }
            }
        }
    }
}
