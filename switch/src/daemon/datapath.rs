//! The datapath thread: one event loop (mio/epoll, blocking waits, never
//! busy-polling) that reads frames from every port in batches, asks the
//! [`Bridge`] where they go, and writes them out.
//!
//! TAP frames keep their 12-byte virtio-net header end to end: a TSO super-
//! frame read from one sandbox is written, header and all, to another, so a
//! TCP stream crosses the switch as 64 KiB GSO frames rather than 1500-byte
//! packets. Frames for a network's gateway go to its userspace stack
//! ([`Gateway`]) and its answers re-enter the bridge from the gateway port.
//!
//! The control plane talks to this thread only through [`DatapathHandle`]:
//! commands on a channel plus a mio waker. The packet path never waits on
//! control work; control waits (bounded) on the packet path's reply.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::bridge::{Bridge, BridgeError, FdbRecord, NetworkConfig, RxFrame, TxPlan};
use crate::counters::{DropReason, LearningCounters, PortCounters};
use crate::gateway::Gateway;
use crate::port::{NetworkId, PortConfig, PortId};
use crate::sys::tap::{Tap, VirtioNetHdr};
use crate::time::{MonotonicClock, Timestamp};
use crate::wire::MacAddr;

/// Frames read per batch before the forwarding decision runs.
const BATCH: usize = 32;
/// Batches processed before the loop looks at commands and timers again.
const MAX_BATCHES_PER_WAKEUP: usize = 64;
/// The waker's token; port tokens are their `PortId`s.
const WAKER: Token = Token(usize::MAX);
/// How often aging and gateway timers run when there is no traffic.
const TICK: Duration = Duration::from_secs(1);
/// How long a control request waits for the datapath before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of the virtio-net header in front of every TAP frame.
const HDR: usize = VirtioNetHdr::LEN;

/// The datapath's port id of endpoint number `port_index`.
pub fn endpoint_port(port_index: u32) -> PortId {
    PortId(port_index * 2)
}

/// The datapath's port id of network number `network_index`'s gateway.
pub fn gateway_port(network_index: u32) -> PortId {
    PortId(network_index * 2 + 1)
}

/// The gateway of a network, as the datapath needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The gateway's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The network's MTU.
    pub mtu: u32,
    /// The gateway's port id (see [`gateway_port`]).
    pub port: PortId,
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
    /// The datapath thread did not answer in time or is gone.
    #[error("the datapath thread is not responding")]
    Unresponsive,
}

/// A reply channel for one command.
type Reply<T> = Sender<T>;

/// Everything the control plane can ask of the datapath.
enum Command {
    AddNetwork {
        id: NetworkId,
        config: NetworkConfig,
        gateway: Option<GatewaySpec>,
        reply: Reply<Result<(), DatapathError>>,
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
    RemovePort {
        id: PortId,
        reply: Reply<Option<Tap>>,
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
    Snapshot {
        reply: Reply<Snapshot>,
    },
    Shutdown,
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
}

/// The control plane's end of the datapath.
#[derive(Debug)]
pub struct DatapathHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl DatapathHandle {
    /// Starts the datapath thread.
    pub fn spawn() -> io::Result<DatapathHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, inbox) = crossbeam_channel::unbounded();
        let thread =
            std::thread::Builder::new().name("datapath".into()).spawn(move || Datapath::new(poll, inbox).run())?;
        Ok(DatapathHandle { commands, waker, thread: Some(thread) })
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
    pub fn add_network(
        &self,
        id: NetworkId,
        config: NetworkConfig,
        gateway: Option<GatewaySpec>,
    ) -> Result<(), DatapathError> {
        self.call(|reply| Command::AddNetwork { id, config, gateway, reply })?
    }

    /// Removes a network and its gateway; refused while other ports remain.
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

    /// Removes a port (and its FDB entries); returns its TAP, if it had one.
    pub fn remove_port(&self, id: PortId) -> Result<Option<Tap>, DatapathError> {
        self.call(|reply| Command::RemovePort { id, reply })
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

/// What sits behind a port.
enum PortIo {
    Tap(Tap),
    Gateway(Box<Gateway>),
}

/// Receive buffers for one batch; each holds a virtio-net header and a frame.
struct RxBatch {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    ports: [PortId; BATCH],
    gso: [bool; BATCH],
    count: usize,
}

impl RxBatch {
    fn new() -> RxBatch {
        RxBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; Tap::RECV_BUF_LEN].into_boxed_slice()).collect(),
            lens: [0; BATCH],
            ports: [PortId(0); BATCH],
            gso: [false; BATCH],
            count: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// The frames of the batch, as the bridge sees them (header stripped).
    fn frames(&self) -> impl Iterator<Item = RxFrame<'_>> {
        (0..self.count).map(|i| RxFrame {
            port: self.ports[i],
            bytes: &self.bufs[i][HDR..self.lens[i]],
            gso: self.gso[i],
        })
    }

    /// Appends a frame produced inside the switch (no offload metadata).
    fn push_local(&mut self, port: PortId, frame: &[u8]) -> bool {
        if self.is_full() || HDR + frame.len() > Tap::RECV_BUF_LEN {
            return false;
        }
        let buf = &mut self.bufs[self.count];
        buf[..HDR].fill(0);
        buf[HDR..HDR + frame.len()].copy_from_slice(frame);
        self.lens[self.count] = HDR + frame.len();
        self.ports[self.count] = port;
        self.gso[self.count] = false;
        self.count += 1;
        true
    }
}

struct Datapath {
    poll: Poll,
    inbox: Receiver<Command>,
    bridge: Bridge,
    ports: Vec<Option<PortIo>>,
    /// Ports that may have more frames queued (edge-triggered epoll).
    ready: VecDeque<PortId>,
    queued: Vec<bool>,
    clock: MonotonicClock,
    batch: RxBatch,
    plan: TxPlan,
    /// Gateways that were handed frames in this round.
    busy_gateways: Vec<PortId>,
    gateway_out: Vec<Vec<u8>>,
    last_tick: Timestamp,
    running: bool,
}

impl Datapath {
    fn new(poll: Poll, inbox: Receiver<Command>) -> Datapath {
        Datapath {
            poll,
            inbox,
            bridge: Bridge::new(),
            ports: Vec::new(),
            ready: VecDeque::new(),
            queued: Vec::new(),
            clock: MonotonicClock::new(),
            batch: RxBatch::new(),
            plan: TxPlan::with_capacity(BATCH * 8),
            busy_gateways: Vec::new(),
            gateway_out: Vec::new(),
            last_tick: Timestamp(0),
            running: true,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while self.running {
            let timeout = if self.ready.is_empty() { Some(TICK) } else { Some(Duration::ZERO) };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "epoll wait failed");
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(port) => self.mark_ready(PortId(port as u32)),
                }
            }
            self.handle_commands();
            // Bounded, so commands and timers get their turn under load.
            for _ in 0..MAX_BATCHES_PER_WAKEUP {
                if self.ready.is_empty() {
                    break;
                }
                self.read_batch();
                self.forward();
            }
            let now = self.clock.now();
            if now.millis_since(self.last_tick) >= TICK.as_millis() as u64 {
                self.last_tick = now;
                self.bridge.age(now);
                self.poll_all_gateways(now);
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

    /// Reads round-robin, one frame per ready port per pass, until the batch
    /// is full or every port is drained.
    fn read_batch(&mut self) {
        self.batch.count = 0;
        while !self.batch.is_full() {
            let Some(port) = self.ready.pop_front() else { break };
            let Some(Some(PortIo::Tap(tap))) = self.ports.get(port.index()) else {
                self.queued[port.index()] = false;
                continue;
            };
            let slot = self.batch.count;
            match tap.recv(&mut self.batch.bufs[slot]) {
                Ok(len) if len >= HDR => {
                    let hdr = VirtioNetHdr::parse(&self.batch.bufs[slot]).unwrap_or_default();
                    self.batch.lens[slot] = len;
                    self.batch.ports[slot] = port;
                    self.batch.gso[slot] = hdr.is_gso();
                    self.batch.count += 1;
                    self.ready.push_back(port);
                }
                Ok(_) => {
                    // A read shorter than the header: count it as truncated.
                    self.bridge.count_drop(port, DropReason::Truncated);
                    self.ready.push_back(port);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queued[port.index()] = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.ready.push_back(port),
                Err(e) => {
                    tracing::warn!(%port, error = %e, "read from TAP failed; waiting for the next event");
                    self.queued[port.index()] = false;
                }
            }
        }
    }

    /// Decides and transmits the current batch, then runs gateways that got
    /// frames and forwards what they answered.
    fn forward(&mut self) {
        let now = self.clock.now();
        for _round in 0..4 {
            if self.batch.count == 0 {
                break;
            }
            self.bridge.forward_batch(now, self.batch.frames(), &mut self.plan);
            self.transmit();
            if self.busy_gateways.is_empty() {
                break;
            }
            self.batch.count = 0;
            self.run_busy_gateways(now);
        }
    }

    fn transmit(&mut self) {
        for send in self.plan.sends() {
            let i = send.frame as usize;
            let buf = &self.batch.bufs[i][..self.batch.lens[i]];
            match self.ports.get_mut(send.port.index()) {
                Some(Some(PortIo::Tap(tap))) => {
                    if let Err(e) = tap.send(buf) {
                        let reason = if e.kind() == io::ErrorKind::WouldBlock {
                            DropReason::TxQueueFull
                        } else {
                            DropReason::TxError
                        };
                        self.bridge.count_drop(send.port, reason);
                    }
                }
                Some(Some(PortIo::Gateway(gw))) => {
                    if self.batch.gso[i] {
                        self.bridge.count_drop(send.port, DropReason::Oversize);
                        continue;
                    }
                    gw.deliver(&buf[HDR..]);
                    if !self.busy_gateways.contains(&send.port) {
                        self.busy_gateways.push(send.port);
                    }
                }
                _ => {}
            }
        }
    }

    /// Polls the gateways that were handed frames and queues their answers
    /// as a new batch from their ports.
    fn run_busy_gateways(&mut self, now: Timestamp) {
        let busy = std::mem::take(&mut self.busy_gateways);
        for &port in &busy {
            self.poll_gateway(port, now);
        }
        self.busy_gateways = busy;
        self.busy_gateways.clear();
    }

    fn poll_all_gateways(&mut self, now: Timestamp) {
        self.batch.count = 0;
        for index in 0..self.ports.len() {
            if matches!(self.ports[index], Some(PortIo::Gateway(_))) {
                self.poll_gateway(PortId(index as u32), now);
            }
        }
        if self.batch.count > 0 {
            self.forward();
        }
    }

    fn poll_gateway(&mut self, port: PortId, now: Timestamp) {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get_mut(port.index()) else { return };
        gw.poll(now, &mut self.gateway_out);
        for frame in self.gateway_out.drain(..) {
            if !self.batch.push_local(port, &frame) {
                self.bridge.count_drop(port, DropReason::TxQueueFull);
            }
        }
    }

    fn handle_commands(&mut self) {
        while let Ok(command) = self.inbox.try_recv() {
            self.handle(command);
        }
    }

    fn slot(&mut self, id: PortId) -> &mut Option<PortIo> {
        let i = id.index();
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
            self.queued.resize(i + 1, false);
        }
        &mut self.ports[i]
    }

    fn handle(&mut self, command: Command) {
        // A dropped reply sender means the control side gave up; ignore.
        match command {
            Command::AddNetwork { id, config, gateway, reply } => {
                let _ = reply.send(self.add_network(id, config, gateway));
            }
            Command::RemoveNetwork { id, reply } => {
                let _ = reply.send(self.remove_network(id));
            }
            Command::AddTap { id, tap, config, reply } => {
                let _ = reply.send(self.add_tap(id, tap, config));
            }
            Command::RemovePort { id, reply } => {
                let _ = reply.send(self.remove_port(id));
            }
            Command::AddStatic { network, mac, port, reply } => {
                let now = self.clock.now();
                let _ = reply.send(self.bridge.add_static(network, mac, port, now).map_err(Into::into));
            }
            Command::RemoveEntry { network, mac, reply } => {
                let _ = reply.send(self.bridge.remove_entry(network, mac).map_err(Into::into));
            }
            Command::Flush { network, reply } => {
                let networks: Vec<NetworkId> = match network {
                    Some(n) => vec![n],
                    None => self.network_ids(),
                };
                let flushed = networks.into_iter().filter_map(|n| self.bridge.flush_network(n).ok()).sum();
                let _ = reply.send(flushed);
            }
            Command::SetAging { aging, reply } => {
                let _ = reply.send(self.bridge.set_aging_time(aging).map_err(Into::into));
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
            Command::Shutdown => self.running = false,
        }
    }

    fn network_ids(&self) -> Vec<NetworkId> {
        self.bridge.network_ids().collect()
    }

    fn add_network(
        &mut self,
        id: NetworkId,
        config: NetworkConfig,
        gateway: Option<GatewaySpec>,
    ) -> Result<(), DatapathError> {
        self.bridge.add_network(id, config)?;
        if let Some(spec) = gateway {
            let port_config = PortConfig { mtu: spec.mtu, ..PortConfig::access(id) };
            if let Err(e) = self.bridge.add_port(spec.port, port_config) {
                let _ = self.bridge.remove_network(id);
                return Err(e.into());
            }
            let gw = Gateway::new(spec.address, spec.prefix_len, spec.mtu, self.clock.now());
            *self.slot(spec.port) = Some(PortIo::Gateway(Box::new(gw)));
        }
        Ok(())
    }

    fn remove_network(&mut self, id: NetworkId) -> Result<(), DatapathError> {
        let gateways: Vec<PortId> = self
            .bridge
            .network_ports(id)?
            .iter()
            .copied()
            .filter(|p| matches!(self.ports.get(p.index()), Some(Some(PortIo::Gateway(_)))))
            .collect();
        let others = self.bridge.network_ports(id)?.len() - gateways.len();
        if others > 0 {
            return Err(BridgeError::NetworkInUse(id, others).into());
        }
        for port in gateways {
            self.remove_port(port);
        }
        self.bridge.remove_network(id)?;
        Ok(())
    }

    fn add_tap(&mut self, id: PortId, tap: Tap, config: PortConfig) -> Result<(), (Tap, DatapathError)> {
        if let Err(e) = self.bridge.add_port(id, config) {
            return Err((tap, e.into()));
        }
        let fd = tap.as_raw_fd();
        if let Err(source) = self.poll.registry().register(&mut SourceFd(&fd), Token(id.index()), Interest::READABLE) {
            let _ = self.bridge.remove_port(id);
            return Err((tap, DatapathError::Register { port: id, source }));
        }
        *self.slot(id) = Some(PortIo::Tap(tap));
        // Frames may already be queued: edge-triggered epoll would not say so.
        self.mark_ready(id);
        Ok(())
    }

    fn remove_port(&mut self, id: PortId) -> Option<Tap> {
        let _ = self.bridge.remove_port(id);
        let io = self.ports.get_mut(id.index()).and_then(Option::take)?;
        self.ready.retain(|&p| p != id);
        if let Some(q) = self.queued.get_mut(id.index()) {
            *q = false;
        }
        match io {
            PortIo::Tap(tap) => {
                let fd = tap.as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                Some(tap)
            }
            PortIo::Gateway(_) => None,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let mut snapshot = Snapshot::default();
        for network in self.network_ids() {
            if let Ok(records) = self.bridge.fdb_records(network, now) {
                snapshot.fdb.extend(records);
            }
            if let Ok(learning) = self.bridge.learning_counters(network) {
                snapshot.learning.push((network, learning));
            }
        }
        for index in 0..self.ports.len() {
            let id = PortId(index as u32);
            if let (Ok(config), Ok(counters)) = (self.bridge.port_config(id), self.bridge.port_counters(id)) {
                snapshot.ports.push((id, config.network, counters));
            }
        }
        snapshot
    }
}
