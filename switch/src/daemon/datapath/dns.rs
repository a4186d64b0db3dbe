//! The embedded DNS in the datapath: queries to a gateway's port 53 are
//! answered from the [`Directory`] (on the datapath thread: a local answer
//! is one parse and one encode), or handed to the forwarding thread without
//! waiting; forwarded answers come back through a channel and leave from the
//! gateway like any answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use dns::{Counters, Directory, Outcome, Resolver, Source, Transport};

use super::super::dns_forward::{Done, ForwardThread, Job, MAX_IN_FLIGHT};
use super::{Datapath, PortIo};
use crate::counters::DropReason;
use crate::gateway::dns::{DnsFrame, TcpAnswer, TcpConn, TcpQuery, UdpQuery, classify, udp_answer_frame};
use crate::port::{NetworkId, PortId};

/// IPv4 and UDP headers: what a UDP answer adds to the DNS message.
const IPV4_UDP_HEADERS: usize = 28;

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

/// The datapath's DNS state.
pub(super) struct DnsService {
    pub(super) directory: Directory,
    resolver: Resolver,
    forward: ForwardThread,
    results: Receiver<Done>,
    pending: HashMap<u64, ReplyPath>,
    next_token: u64,
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
        }
    }

    fn has_room(&self) -> bool {
        self.pending.len() < MAX_IN_FLIGHT
    }

    /// Hands a query to the forwarding thread; false if it is gone.
    fn forward(&mut self, path: ReplyPath, query: &[u8], upstreams: Arc<[SocketAddr]>, tcp: bool) -> bool {
        let token = self.next_token;
        self.next_token += 1;
        if !self.forward.submit(Job { token, query: query.to_vec(), upstreams, tcp }) {
            return false;
        }
        self.pending.insert(token, path);
        true
    }

    /// Answers (or forwards) a query read from a TCP client of `gateway`'s
    /// DNS server on `network`.
    pub(super) fn tcp_query(
        &mut self,
        gateway: PortId,
        network: NetworkId,
        counters: &mut Counters,
        query: TcpQuery,
    ) -> TcpAnswer {
        let source = Source::Network { network: network.0, address: query.client };
        let room = self.has_room();
        match self.resolver.resolve(&mut self.directory, source, &query.message, Transport::Tcp, room, counters) {
            Outcome::Answer(bytes) => TcpAnswer::Now(bytes),
            Outcome::Forward(upstreams) => {
                let path = ReplyPath::Tcp { gateway, conn: query.conn };
                if self.forward(path, &query.message, upstreams, true) {
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
        match classify(self.batch.frame(i), gw.address()) {
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
            DnsFrame::Tcp { .. } | DnsFrame::Other => false,
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
        let path_limit = (info.mtu as usize).saturating_sub(IPV4_UDP_HEADERS);
        let source = Source::Port { port: ingress.0, address: query.address };
        let room = dns.has_room();
        let outcome = dns.resolver.resolve(
            &mut dns.directory,
            source,
            payload,
            Transport::Udp { path_limit },
            room,
            &mut info.dns,
        );
        match outcome {
            Outcome::Answer(bytes) => self.send_udp_answer(gateway, &query, &bytes),
            Outcome::Forward(upstreams) => {
                let payload = batch.frame(i)[query.payload.clone()].to_vec();
                if !dns.forward(ReplyPath::Udp { gateway, query }, &payload, upstreams, false) {
                    info.dns.upstream_failures += 1;
                }
            }
            Outcome::Drop => {}
        }
    }

    /// Queues a UDP answer frame from `gateway` to the sender of `query`.
    fn send_udp_answer(&mut self, gateway: PortId, query: &UdpQuery, answer: &[u8]) {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return };
        let mut frame = Vec::new();
        udp_answer_frame(gw.mac(), gw.address(), query, answer, &mut frame);
        self.injected.push((gateway, frame));
    }

    /// Takes the forwarding thread's answers and sends them on, through the
    /// bridge, to their clients.
    pub(super) fn dns_results(&mut self) {
        let mut any = false;
        while let Ok(done) = self.dns.results.try_recv() {
            let Some(path) = self.dns.pending.remove(&done.token) else { continue };
            let gateway = path.gateway();
            if done.failed
                && let Some(counters) = self.dns_counters(gateway)
            {
                counters.upstream_failures += 1;
            }
            match path {
                ReplyPath::Udp { gateway, query } => {
                    let mtu = self.bridge.port_config(gateway).map_or(0, |c| c.mtu as usize);
                    let answer = dns::fit_udp(&done.answer, mtu.saturating_sub(IPV4_UDP_HEADERS));
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
            any = true;
        }
        if any {
            self.run_local(self.clock.now());
        }
    }
}
