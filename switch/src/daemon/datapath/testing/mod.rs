//! The deterministic datapath harness: a real [`Datapath`] (bridge,
//! gateways, tunnel encapsulation and encryption, offloads, counters) whose
//! TAPs are [`MemoryPort`]s, whose underlay is a [`MemoryUnderlay`] and
//! whose clock is a [`VirtualClock`]. Tests configure it with the same
//! commands the control plane sends, inject frames and datagrams, run the
//! loop one wake-up at a time, move time by hand, and read what every port
//! transmitted and every counter. No root, no thread, no sleep.
//!
//! ```ignore
//! let mut h = Harness::new();
//! let net = h.network(plain_network(0));
//! let (a, b) = (h.endpoint(net), h.endpoint(net));
//! h.inject(a, &frame(BROADCAST, mac(1), 0));
//! h.run_until_idle();
//! assert_eq!(h.sent_frames(b), vec![frame(BROADCAST, mac(1), 0)]);
//! ```

pub(crate) mod frames;
pub(crate) mod memory;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use crypto::ClusterSecret;
use mio::Poll;
use vxlan::Vni;

use super::handle::{Command, DatapathError, Gateway6Spec, GatewaySpec, NetworkSpec, Reply, Snapshot, endpoint_port};
use super::{Datapath, PortIo, dns};
use crate::bridge::{FdbRecord, NetworkConfig};
use crate::counters::{DropReason, LearningCounters, PortCounters};
use crate::daemon::dns_forward::{Done, ForwardThread, Job};
use crate::daemon::events::DatapathEventsRx;
use crate::daemon::tunnel::{Tunnel, TunnelCounters, VtepConfig};
use crate::events::Event;
use crate::port::{NetworkId, PortConfig, PortId};
use crate::time::{Clock, Timestamp};
use crate::wire::MacAddr;
use crate::wire::VirtioNetHdr;
use memory::{Datagram, Fault, MemoryPort, MemoryUnderlay, VirtualClock};

/// Wake-ups [`Harness::run_until_idle`] allows before it calls the
/// datapath stuck.
const MAX_STEPS: usize = 1_000;
/// The Unix time the virtual wall clock starts at (2023-11-14).
pub(crate) const UNIX_ORIGIN: u64 = 1_700_000_000;
/// The first UDP source port of a harness's send pool, as another host
/// sees its datagrams arrive.
const SOURCE_PORTS: u16 = 49_152;

/// A frame a port transmitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Its virtio-net header.
    pub(crate) hdr: VirtioNetHdr,
    /// The Ethernet frame.
    pub(crate) frame: Vec<u8>,
}

/// What a harness is built with.
#[derive(Debug, Default)]
pub(crate) struct Setup {
    /// The VTEP; an in-memory underlay stands in for its sockets. None: no
    /// overlay traffic (`peer add` is refused).
    pub(crate) vtep: Option<VtepConfig>,
    /// The cluster secret of encrypted overlays.
    pub(crate) secret: Option<ClusterSecret>,
}

impl Setup {
    /// Test host `n`: VTEP 192.0.2.n:4789 on a 1500-byte underlay, static
    /// peers only, and the test cluster secret.
    pub(crate) fn host(n: u8) -> Setup {
        Setup {
            vtep: Some(VtepConfig { local: frames::vtep(n), learn_peers: false, underlay_mtu: 1500 }),
            secret: Some(test_secret()),
        }
    }

    /// Test host `n` on an IPv6 underlay: VTEP [2001:db8::n]:4789
    /// ([`frames::vtep6`]) on a 1500-byte underlay, otherwise as [`Setup::host`].
    pub(crate) fn host6(n: u8) -> Setup {
        Setup {
            vtep: Some(VtepConfig { local: frames::vtep6(n), learn_peers: false, underlay_mtu: 1500 }),
            secret: Some(test_secret()),
        }
    }

    /// The same host, learning peers from their traffic (`--learn-peers`).
    pub(crate) fn learning(mut self) -> Setup {
        if let Some(vtep) = &mut self.vtep {
            vtep.learn_peers = true;
        }
        self
    }
}

/// The cluster secret every test host shares.
pub(crate) fn test_secret() -> ClusterSecret {
    ClusterSecret::from_bytes([0x5a; crypto::SECRET_LEN])
}

/// Network `index` without gateway or VNI: 1500-byte MTU.
pub(crate) fn plain_network(index: u32) -> NetworkSpec {
    NetworkSpec {
        id: NetworkId(index),
        config: NetworkConfig::default(),
        mtu: 1500,
        gateway: None,
        gateway6: None,
        vni: None,
        mss_clamp: false,
        key_epoch: None,
        cipher: crypto::Cipher::default(),
        store_keys: false,
        egress: false,
        spread: false,
        key_rotation: None,
    }
}

/// Network `index` with its gateway at 10.0.`index`.1/24 (10.0.0.1 for
/// network 0, [`frames::ip`]`(1)`), egress off.
pub(crate) fn gateway_network(index: u32) -> NetworkSpec {
    let gateway = GatewaySpec { address: Ipv4Addr::new(10, 0, index as u8, 1), prefix_len: 24 };
    NetworkSpec { gateway: Some(gateway), ..plain_network(index) }
}

/// Network `index` with a dual-stack gateway: [`gateway_network`]'s and
/// fd`index`::1/64 (fd00::1 for network 0, [`frames::ip6`]`(1)`), the
/// default router.
pub(crate) fn dual_network(index: u32) -> NetworkSpec {
    let address = std::net::Ipv6Addr::new(0xfd00 + index as u16, 0, 0, 0, 0, 0, 0, 1);
    let gateway6 = Gateway6Spec { address, prefix_len: 64, default_route: true };
    NetworkSpec { gateway6: Some(gateway6), ..gateway_network(index) }
}

/// Network `index` with an IPv6-only gateway (as [`dual_network`]'s, no
/// IPv4).
pub(crate) fn ipv6_network(index: u32) -> NetworkSpec {
    NetworkSpec { gateway: None, ..dual_network(index) }
}

/// Overlay network `index` on `vni`: a gateway as [`gateway_network`]'s,
/// the MTU of a 1500-byte underlay (1450).
pub(crate) fn overlay_network(index: u32, vni: u32) -> NetworkSpec {
    NetworkSpec { vni: Some(Vni::new(vni).expect("a 24-bit VNI")), mtu: 1450, ..gateway_network(index) }
}

/// One datapath with in-memory devices (see the module docs).
pub(crate) struct Harness {
    /// The datapath under test; tests may reach into it.
    pub(crate) dp: Datapath,
    clock: VirtualClock,
    ports: BTreeMap<PortId, MemoryPort>,
    underlay: Option<MemoryUnderlay>,
    vtep: Option<VtepConfig>,
    gone: Receiver<PortId>,
    events: DatapathEventsRx,
    dns_jobs: Receiver<Job>,
    dns_done: Sender<Done>,
    next_endpoint: u32,
    /// The sending end of the datapath's command inbox (another harness's
    /// datapath reaches this one through it, see [`Harness::link`]).
    commands: Sender<Command>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A datapath without a VTEP or secret.
    pub(crate) fn new() -> Harness {
        Harness::with(Setup::default())
    }

    /// A datapath as `setup` says; time starts at zero (Unix time
    /// [`UNIX_ORIGIN`]).
    pub(crate) fn with(setup: Setup) -> Harness {
        let poll = Poll::new().expect("an epoll instance (no privilege needed)");
        let (commands, inbox) = crossbeam_channel::unbounded();
        let (jobs, dns_jobs) = crossbeam_channel::unbounded();
        let (dns_done, results) = crossbeam_channel::unbounded();
        let service = dns::DnsService::new(Vec::new(), ForwardThread::detached(jobs), results);
        let (gone_tx, gone) = crossbeam_channel::unbounded();
        let (events_tx, events) = crate::daemon::events::datapath_channel();
        let reports = super::Reports { gone: gone_tx, events: events_tx };
        let mut dp = Datapath::new(poll, inbox, None, setup.secret, service, reports, crate::nat::Limits::default())
            .expect("a datapath without sockets");
        let clock = VirtualClock::new(UNIX_ORIGIN);
        dp.clock = Box::new(clock.clone());
        let underlay = setup.vtep.map(|vtep| {
            let underlay = MemoryUnderlay::default();
            let tunnel = Tunnel::with_underlay(vtep, Box::new(underlay.clone()));
            dp.attach_tunnel(tunnel).expect("an in-memory underlay needs no registration");
            underlay
        });
        Harness {
            dp,
            clock,
            ports: BTreeMap::new(),
            underlay,
            vtep: setup.vtep,
            gone,
            events,
            dns_jobs,
            dns_done,
            next_endpoint: 0,
            commands,
        }
    }

    /// Makes `harnesses` workers 0, 1, ... of one daemon: each datapath
    /// reaches the others' inboxes (spread networks), and handles what
    /// they sent at its next step.
    pub(crate) fn link(harnesses: &mut [&mut Harness]) {
        let links: Vec<super::spread::WorkerLink> = harnesses
            .iter()
            .map(|h| {
                let waker = mio::Waker::new(h.dp.poll.registry(), super::WAKER).expect("a waker (no privilege needed)");
                super::spread::WorkerLink::new(h.commands.clone(), std::sync::Arc::new(waker))
            })
            .collect();
        for (k, h) in harnesses.iter_mut().enumerate() {
            h.dp.spread.connect(k, links.clone());
        }
    }

    // ------------------------------------------------------------ configuration

    /// Gives the datapath a DNS directory in which endpoint `port` of
    /// `network` owns exactly these addresses (what the translator's
    /// anti-spoofing check reads).
    pub(crate) fn set_own_addresses(
        &mut self,
        network: NetworkId,
        port: PortId,
        address: Option<Ipv4Addr>,
        address6: Option<std::net::Ipv6Addr>,
    ) {
        let mut directory = ::dns::Directory::new();
        let scope = vec![network.0];
        let upstreams = std::sync::Arc::from([]);
        directory.add_asker(
            port.0,
            ::dns::Asker { address, address6, network: network.0, scope, forwarding: false, upstreams },
        );
        self.call(|reply| Command::SetDns { directory: Box::new(directory), reply });
    }

    /// Sends a command as the control plane does and returns the reply
    /// (the datapath handles it at once).
    pub(crate) fn call<T>(&mut self, make: impl FnOnce(Reply<T>) -> Command) -> T {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.dp.handle(make(reply));
        answer.try_recv().expect("the datapath replies to every command")
    }

    /// Adds a network; panics if the datapath refuses it.
    pub(crate) fn network(&mut self, spec: NetworkSpec) -> NetworkId {
        self.try_network(spec).expect("the datapath takes the network")
    }

    /// Adds a network, or says why not.
    pub(crate) fn try_network(&mut self, spec: NetworkSpec) -> Result<NetworkId, DatapathError> {
        let id = spec.id;
        let fdb = spec.new_fdb();
        self.call(|reply| Command::AddNetwork { spec, fdb, reply }).map(|()| id).map_err(|(_table, e)| e)
    }

    /// Adds an endpoint (a TAP port) on `network` with the network's MTU,
    /// as `network connect` does.
    pub(crate) fn endpoint(&mut self, network: NetworkId) -> PortId {
        let mtu = self.dp.nets.get(network.index()).and_then(Option::as_ref).expect("the network exists").mtu;
        self.endpoint_with(PortConfig { mtu, ..PortConfig::access(network) })
    }

    /// Adds an endpoint with its own port configuration.
    pub(crate) fn endpoint_with(&mut self, config: PortConfig) -> PortId {
        self.endpoint_device(config, MemoryPort::default())
    }

    /// Adds an endpoint behaving like an AF_XDP port (see
    /// [`MemoryPort::small_frames`]) on `network`.
    pub(crate) fn xsk_endpoint(&mut self, network: NetworkId, max_frame: usize) -> PortId {
        let mtu = self.dp.nets.get(network.index()).and_then(Option::as_ref).expect("the network exists").mtu;
        self.endpoint_device(PortConfig { mtu, ..PortConfig::access(network) }, MemoryPort::small_frames(max_frame))
    }

    /// Adds an endpoint whose device reads many frames per call, as a raw
    /// uplink's does (see [`MemoryPort::batch_reads`]), on `network`.
    pub(crate) fn batch_endpoint(&mut self, network: NetworkId) -> PortId {
        let mtu = self.dp.nets.get(network.index()).and_then(Option::as_ref).expect("the network exists").mtu;
        self.endpoint_device(PortConfig { mtu, ..PortConfig::access(network) }, MemoryPort::batch_reads())
    }

    fn endpoint_device(&mut self, config: PortConfig, device: MemoryPort) -> PortId {
        let id = endpoint_port(self.next_endpoint);
        self.next_endpoint += 1;
        self.dp.add_device(id, &device, config).expect("the bridge takes the port");
        self.dp.install_device(id, Box::new(device.clone()));
        self.ports.insert(id, device);
        id
    }

    /// Removes a port (an endpoint, or a tunnel port) and its FDB entries.
    pub(crate) fn remove_port(&mut self, port: PortId) {
        self.ports.remove(&port);
        self.call(|reply| Command::RemovePort { id: port, reply });
    }

    /// Adds static peer `remote` to overlay `network`; returns its tunnel port.
    pub(crate) fn peer(&mut self, network: NetworkId, remote: SocketAddr) -> PortId {
        self.call(|reply| Command::AddPeer { network, remote, reply }).expect("the datapath takes the peer")
    }

    /// Removes static peer `remote` from `network` as `peer rm` does;
    /// returns whether it was a peer there.
    pub(crate) fn remove_peer(&mut self, network: NetworkId, remote: SocketAddr) -> bool {
        self.call(|reply| Command::RemovePeer { network, remote, reply })
    }

    /// Sets `network`'s cluster view as the daemon's cluster sync does.
    pub(crate) fn cluster_view(
        &mut self,
        network: NetworkId,
        peers: Vec<SocketAddr>,
        endpoints: Vec<super::RemoteEndpoint>,
    ) -> Result<(), DatapathError> {
        self.call(|reply| Command::SetClusterView { network, peers, endpoints, reply })
    }

    /// Sets the FDB aging time.
    pub(crate) fn set_aging(&mut self, aging: Duration) {
        self.call(|reply| Command::SetAging { aging, reply }).expect("an aging time 802.1D allows");
    }

    // ------------------------------------------------------------ input

    /// The in-memory device of endpoint `port`.
    pub(crate) fn port(&self, port: PortId) -> &MemoryPort {
        self.ports.get(&port).unwrap_or_else(|| panic!("{port} is not an endpoint of this harness"))
    }

    /// Queues `frame` on `port` behind a plain (all-zero) virtio-net header.
    pub(crate) fn inject(&mut self, port: PortId, frame: &[u8]) {
        self.inject_with_hdr(port, VirtioNetHdr::default(), frame);
    }

    /// Queues `frame` on `port` behind `hdr` (GSO, partial checksums).
    pub(crate) fn inject_with_hdr(&mut self, port: PortId, hdr: VirtioNetHdr, frame: &[u8]) {
        let mut bytes = hdr.to_bytes().to_vec();
        bytes.extend_from_slice(frame);
        self.port(port).push_rx(bytes);
    }

    /// Queues exactly what one read of `port` returns.
    pub(crate) fn inject_raw(&mut self, port: PortId, bytes: &[u8]) {
        self.port(port).push_rx(bytes.to_vec());
    }

    /// Makes the read of `port` after the frames queued fail with `fault`.
    pub(crate) fn inject_fault(&mut self, port: PortId, fault: Fault) {
        self.port(port).push_rx_fault(fault);
    }

    /// Makes the next `count` writes to `port` fail with `fault`.
    pub(crate) fn fail_writes(&mut self, port: PortId, fault: Fault, count: usize) {
        self.port(port).fail_writes(fault, count);
    }

    /// Unregisters `port`'s device, as when its sandbox's namespace ends.
    pub(crate) fn unplug(&mut self, port: PortId) {
        self.port(port).unplug();
    }

    /// The in-memory underlay; panics without a VTEP.
    pub(crate) fn underlay(&self) -> &MemoryUnderlay {
        self.underlay.as_ref().expect("the harness was set up with a VTEP")
    }

    /// Queues a datagram from `from` on the underlay.
    pub(crate) fn inject_datagram(&mut self, from: SocketAddr, payload: &[u8]) {
        self.underlay().push_rx(from, payload.to_vec());
    }

    // ------------------------------------------------------------ driving

    /// One wake-up of the loop: ports and the underlay that got input since
    /// the last step are marked ready (edge-triggered, as epoll reports
    /// them), then commands, timers, up to 64 batches and the tick (when a
    /// second has passed since the last) run.
    pub(crate) fn step(&mut self) {
        for (&id, port) in &self.ports {
            if port.take_edge() {
                self.dp.mark_ready(id);
            }
        }
        if self.underlay.as_ref().is_some_and(MemoryUnderlay::take_edge) {
            self.dp.tunnel_ready = true;
        }
        self.dp.wakeup();
    }

    /// Steps until every port and the underlay is drained and nothing is
    /// left to do; returns the number of wake-ups. Panics if the datapath
    /// is still busy after a thousand.
    pub(crate) fn run_until_idle(&mut self) -> usize {
        for steps in 1..=MAX_STEPS {
            self.step();
            if self.is_idle() {
                return steps;
            }
        }
        panic!("the datapath is still busy after {MAX_STEPS} wake-ups");
    }

    /// Nothing queued on any device, no port marked ready, no work left
    /// for the translator.
    pub(crate) fn is_idle(&self) -> bool {
        self.ports.values().all(|p| p.rx_pending() == 0)
            && self.dp.ready.is_empty()
            && !self.dp.spread.has_input()
            && self.dp.inbox.is_empty()
            && !self.dp.tunnel_ready
            && !self.dp.nat.has_work()
    }

    /// Moves the virtual clock forward (nothing runs until the next step).
    pub(crate) fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
    }

    /// The virtual time.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ------------------------------------------------------------ output

    /// Everything `port` transmitted since the last call.
    pub(crate) fn sent(&mut self, port: PortId) -> Vec<Sent> {
        self.port(port)
            .take_tx()
            .into_iter()
            .map(|bytes| {
                let hdr = VirtioNetHdr::parse(&bytes).expect("every TAP write starts with a virtio-net header");
                Sent { hdr, frame: bytes[VirtioNetHdr::LEN..].to_vec() }
            })
            .collect()
    }

    /// The frames `port` transmitted since the last call, checking that
    /// each went out with a plain header (no GSO, no partial checksum).
    pub(crate) fn sent_frames(&mut self, port: PortId) -> Vec<Vec<u8>> {
        self.sent(port)
            .into_iter()
            .map(|sent| {
                assert_eq!(sent.hdr, VirtioNetHdr::default(), "{port} got a frame with offloads");
                sent.frame
            })
            .collect()
    }

    /// Every datagram the underlay sent since the last call.
    pub(crate) fn sent_datagrams(&mut self) -> Vec<Datagram> {
        self.underlay().take_tx()
    }

    /// Delivers the datagrams this host sent to `to`'s VTEP into `to`'s
    /// underlay, from this host's address (and the send pool's source
    /// ports); returns the datagrams addressed elsewhere.
    pub(crate) fn carry(&mut self, to: &mut Harness) -> Vec<Datagram> {
        let from = self.vtep.expect("the sender has a VTEP").local.ip();
        let dest = to.vtep.expect("the receiver has a VTEP").local;
        let mut elsewhere = Vec::new();
        for datagram in self.sent_datagrams() {
            if datagram.to == dest {
                let source = SocketAddr::new(from, SOURCE_PORTS + datagram.sender as u16);
                to.inject_datagram(source, &datagram.bytes);
            } else {
                elsewhere.push(datagram);
            }
        }
        elsewhere
    }

    /// TAP ports whose device the datapath found gone (reported to the
    /// control plane) since the last call.
    pub(crate) fn gone_ports(&self) -> Vec<PortId> {
        self.gone.try_iter().collect()
    }

    /// The events the datapath handed over (one batch per wake-up that
    /// recorded any) since the last call, and the events it reported lost.
    pub(crate) fn events(&self) -> (Vec<Event>, u64) {
        let mut events = Vec::new();
        let mut lost = 0;
        for batch in self.events.try_batches() {
            lost += batch.lost;
            events.extend(batch.events);
        }
        (events, lost)
    }

    /// Queries handed to the DNS forwarding thread since the last call.
    pub(crate) fn dns_jobs(&self) -> Vec<Job> {
        self.dns_jobs.try_iter().collect()
    }

    /// Answers a forwarded DNS query, as the forwarding thread would (the
    /// datapath takes it at its next wake-up).
    pub(crate) fn answer_dns(&self, done: Done) {
        self.dns_done.send(done).expect("the datapath holds the results channel");
    }

    // ------------------------------------------------------------ state

    /// A port's counters.
    pub(crate) fn counters(&self, port: PortId) -> PortCounters {
        self.dp.bridge.port_counters(port).unwrap_or_else(|e| panic!("{port}: {e}"))
    }

    /// A port's drops for `reason`.
    pub(crate) fn drops(&self, port: PortId, reason: DropReason) -> u64 {
        self.counters(port).drops.get(reason)
    }

    /// The underlay endpoint's totals (drops before a tunnel port).
    pub(crate) fn vtep_counters(&self) -> TunnelCounters {
        self.dp.tunnel.as_ref().expect("the harness was set up with a VTEP").counters()
    }

    /// Where `mac` is learned on `network` now, if it is.
    pub(crate) fn lookup(&self, network: NetworkId, mac: MacAddr) -> Option<PortId> {
        self.dp.bridge.lookup(network, mac, self.now())
    }

    /// `network`'s FDB entries.
    pub(crate) fn fdb(&self, network: NetworkId) -> Vec<FdbRecord> {
        self.dp.bridge.fdb_records(network, self.now()).expect("the network exists")
    }

    /// `network`'s learning counters.
    pub(crate) fn learning(&self, network: NetworkId) -> LearningCounters {
        self.dp.bridge.learning_counters(network).expect("the network exists")
    }

    /// The snapshot the control plane would get.
    pub(crate) fn snapshot(&mut self) -> Snapshot {
        self.call(|reply| Command::Snapshot { reply })
    }

    /// Opens published ports as the control plane does.
    pub(crate) fn publish(&mut self, publications: Vec<crate::nat::Publication>) -> Result<(), DatapathError> {
        self.call(|reply| Command::Publish { publications, reply })
    }

    /// The addresses the published ports' sockets are bound to (a port
    /// published as 0 shows the one the kernel picked).
    pub(crate) fn published_addrs(&self) -> Vec<SocketAddr> {
        self.dp.nat.listener_addrs()
    }

    /// Hands the translator the readiness of its kernel sockets (flows and
    /// published ports) that epoll has now, as the daemon's loop does; the
    /// in-memory devices are not in epoll.
    pub(crate) fn poll_sockets(&mut self) {
        let mut events = mio::Events::with_capacity(256);
        self.dp.poll.poll(&mut events, Some(Duration::ZERO)).expect("epoll without waiting");
        for event in events.iter() {
            if event.token().0 >= super::nat::LISTENER_TOKENS {
                self.dp.nat_event(event.token().0, event);
            }
        }
    }

    /// The gateway port of `network`.
    pub(crate) fn gateway(&self, network: NetworkId) -> PortId {
        let port = super::gateway_port(network.0);
        assert!(matches!(self.dp.ports.get(port.index()), Some(Some(PortIo::Gateway(_)))), "{network} has no gateway");
        port
    }
}
