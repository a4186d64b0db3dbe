//! The hub itself: the shared history and subscriber list, the thread that
//! turns datapath batches into named events, and the control plane's handle.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Sender, TrySendError};
use ctl::proto::{self, EventKind as Wire, LostScope, PortChange};

use super::names::{Names, tunnel_port_name};
use super::stream::EventStream;
use super::{DatapathEventsRx, EventBatch, HISTORY, Item, SUBSCRIBER_QUEUE};
use crate::events::{Event, EventKind};
use crate::model::rfc3339_millis;
use crate::port::PortId;

/// One subscriber's queue, seen from the hub.
struct Subscriber {
    queue: Sender<Item>,
    /// Events lost since the last `events_lost` item was queued.
    pending_lost: u64,
    /// The last of them.
    pending_seq: u64,
    pending_time: String,
    /// Every event this subscriber lost (its summary); its stream holds
    /// the other reference.
    lost: Arc<AtomicU64>,
}

impl Subscriber {
    /// Whether its stream still exists (a client is reading it).
    fn is_open(&self) -> bool {
        Arc::strong_count(&self.lost) > 1
    }

    /// Queues `event` if there is room (after an `events_lost` item for
    /// what was lost before it); counts it as lost otherwise. Returns
    /// false once the subscriber is gone.
    fn offer(&mut self, event: &Arc<proto::Event>) -> bool {
        let capacity = self.queue.capacity().unwrap_or(usize::MAX);
        if self.pending_lost > 0 {
            // Only the hub sends, so the room seen here cannot shrink.
            if self.queue.len() + 2 > capacity {
                return self.lose(event);
            }
            let lost = Item::Lost {
                lost: self.pending_lost,
                seq: self.pending_seq,
                time: std::mem::take(&mut self.pending_time),
            };
            if self.queue.try_send(lost).is_err() {
                return false;
            }
            self.pending_lost = 0;
        }
        match self.queue.try_send(Item::Event(Arc::clone(event))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => self.lose(event),
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn lose(&mut self, event: &proto::Event) -> bool {
        self.pending_lost += 1;
        self.pending_seq = event.seq;
        self.pending_time.clone_from(&event.time);
        self.lost.fetch_add(1, Ordering::Relaxed);
        // Gone or not, the next offer that finds room says so.
        true
    }
}

/// What the hub keeps: the history, the subscribers, the counters.
struct HubState {
    history: VecDeque<Arc<proto::Event>>,
    subscribers: Vec<Subscriber>,
    next_seq: u64,
    by_kind: BTreeMap<&'static str, u64>,
    lost_daemon: u64,
    /// Events lost by subscribers that are gone.
    lost_streams_closed: u64,
}

impl HubState {
    /// Numbers and stores one event and offers it to every subscriber.
    fn publish(&mut self, time: SystemTime, kind: Wire) {
        let seq = self.next_seq;
        self.next_seq += 1;
        *self.by_kind.entry(kind.name()).or_default() += 1;
        if let Wire::EventsLost { lost, scope: LostScope::Daemon } = kind {
            self.lost_daemon += lost;
        }
        let event = Arc::new(proto::Event { seq, time: rfc3339_millis(time), kind });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Arc::clone(&event));
        let mut closed = 0;
        self.subscribers.retain_mut(|s| {
            let alive = s.is_open() && s.offer(&event);
            if !alive {
                closed += s.lost.load(Ordering::Relaxed);
            }
            alive
        });
        self.lost_streams_closed += closed;
    }
}

/// The state shared by the hub thread, the control plane and streams.
struct Shared {
    state: Mutex<HubState>,
    names: RwLock<Names>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters of the hub, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCounters {
    /// Events reported, by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Events lost inside the daemon before they were numbered.
    pub lost_daemon: u64,
    /// Events subscribers lost because they read too slowly.
    pub lost_streams: u64,
    /// Subscribers now.
    pub subscribers: u64,
}

/// The control plane's handle on the hub.
pub struct EventHub {
    shared: Arc<Shared>,
}

impl EventHub {
    /// A hub with no datapath attached (the control plane's events only).
    pub fn new() -> EventHub {
        let state = HubState {
            history: VecDeque::with_capacity(HISTORY),
            subscribers: Vec::new(),
            next_seq: 1,
            by_kind: BTreeMap::new(),
            lost_daemon: 0,
            lost_streams_closed: 0,
        };
        EventHub { shared: Arc::new(Shared { state: Mutex::new(state), names: RwLock::new(Names::default()) }) }
    }

    /// A hub whose thread takes the datapath's batches from `datapath`
    /// until the datapath is gone.
    pub fn spawn(datapath: DatapathEventsRx) -> std::io::Result<EventHub> {
        let hub = EventHub::new();
        let mut translator = Translator { shared: Arc::clone(&hub.shared), tunnels: HashMap::new() };
        std::thread::Builder::new().name("events".into()).spawn(move || {
            for batch in datapath.batches.iter() {
                translator.batch(&batch);
                let _ = datapath.spares.try_send(batch.events);
            }
        })?;
        Ok(hub)
    }

    /// Makes the names of `model`'s networks and endpoints known.
    pub fn update_names(&self, model: &crate::model::Model) {
        self.shared.names.write().unwrap_or_else(|p| p.into_inner()).update(model);
    }

    /// Changes the names directly (tests, or one object at a time).
    pub fn with_names(&self, f: impl FnOnce(&mut Names)) {
        f(&mut self.shared.names.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// Publishes a control-plane event (already named) that happened now.
    pub fn emit(&self, kind: Wire) {
        self.shared.state().publish(SystemTime::now(), kind);
    }

    /// A port came up (`reason`).
    pub fn port_up(&self, network: &str, port: &str, sandbox: Option<&str>, reason: PortChange) {
        let (network, port, sandbox) = (network.to_owned(), port.to_owned(), sandbox.map(str::to_owned));
        self.emit(Wire::PortUp { network, port, sandbox, reason });
    }

    /// A port went down (`reason`).
    pub fn port_down(&self, network: &str, port: &str, sandbox: Option<&str>, reason: PortChange) {
        let (network, port, sandbox) = (network.to_owned(), port.to_owned(), sandbox.map(str::to_owned));
        self.emit(Wire::PortDown { network, port, sandbox, reason });
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<proto::Event> {
        self.shared.state().history.iter().map(|e| proto::Event::clone(e)).collect()
    }

    /// A new subscriber: the `ok` reply that opens its stream, and the
    /// stream, which starts with the next event.
    pub fn subscribe(&self) -> (proto::EventsFollow, EventStream) {
        let (queue, rx) = crossbeam_channel::bounded(SUBSCRIBER_QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        let mut state = self.shared.state();
        let subscriber =
            Subscriber { queue, pending_lost: 0, pending_seq: 0, pending_time: String::new(), lost: Arc::clone(&lost) };
        state.subscribers.push(subscriber);
        (proto::EventsFollow { next_seq: state.next_seq }, EventStream::new(rx, lost))
    }

    /// The hub's counters.
    pub fn counters(&self) -> EventCounters {
        let state = self.shared.state();
        let open: u64 = state.subscribers.iter().map(|s| s.lost.load(Ordering::Relaxed)).sum();
        EventCounters {
            by_kind: state.by_kind.clone(),
            lost_daemon: state.lost_daemon,
            lost_streams: state.lost_streams_closed + open,
            subscribers: state.subscribers.iter().filter(|s| s.is_open()).count() as u64,
        }
    }

    /// A translator like the hub thread's, to hand it batches
    /// synchronously (tests).
    #[cfg(test)]
    pub(super) fn translator(&self) -> Translator {
        Translator { shared: Arc::clone(&self.shared), tunnels: HashMap::new() }
    }
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new()
    }
}

/// Turns datapath events into named wire events; knows the tunnel ports
/// from the datapath's own `TunnelUp`/`TunnelDown` events.
pub(super) struct Translator {
    shared: Arc<Shared>,
    tunnels: HashMap<PortId, SocketAddr>,
}

impl Translator {
    /// Names, times and publishes one batch.
    pub(super) fn batch(&mut self, batch: &EventBatch) {
        let mut named = Vec::with_capacity(batch.events.len() + 1);
        if batch.lost > 0 {
            named.push((batch.wall, Wire::EventsLost { lost: batch.lost, scope: LostScope::Daemon }));
        }
        {
            let names = self.shared.names.read().unwrap_or_else(|p| p.into_inner());
            for event in &batch.events {
                let ago = Duration::from_millis(batch.mono.millis_since(event.at));
                let time = batch.wall.checked_sub(ago).unwrap_or(batch.wall);
                named.push((time, name(&names, &mut self.tunnels, event)));
            }
        }
        let mut state = self.shared.state();
        for (time, kind) in named {
            state.publish(time, kind);
        }
    }
}

/// The wire form of one datapath event; `tunnels` follows the tunnel ports.
fn name(names: &Names, tunnels: &mut HashMap<PortId, SocketAddr>, event: &Event) -> Wire {
    match event.kind {
        EventKind::MacLearned { network, mac, port } => {
            Wire::MacLearned { network: names.network(network), mac, port: names.port(port, tunnels) }
        }
        EventKind::MacMoved { network, mac, from, to } => Wire::MacMoved {
            network: names.network(network),
            mac,
            from: names.port(from, tunnels),
            to: names.port(to, tunnels),
        },
        EventKind::MacFlapping { network, mac, ports, moves, suppressed, interval_ms } => Wire::MacFlapping {
            network: names.network(network),
            mac,
            ports: ports.map(|p| names.port(p, tunnels)),
            moves: moves.into(),
            suppressed: suppressed.into(),
            interval_ms: interval_ms.into(),
        },
        EventKind::MacAged { network, mac, port } => {
            Wire::MacAged { network: names.network(network), mac, port: names.port(port, tunnels) }
        }
        EventKind::TableFull { network, refused, limit } => {
            Wire::TableFull { network: names.network(network), refused, limit: limit.into() }
        }
        EventKind::LearnLimit { network, port, refused } => {
            Wire::LearnLimit { network: names.network(network), port: names.port(port, tunnels), refused }
        }
        EventKind::Suppressed { network, learned, moved, aged } => Wire::EventsSuppressed {
            network: names.network(network),
            learned: learned.into(),
            moved: moved.into(),
            aged: aged.into(),
        },
        EventKind::DropBurst { network, port, reason, drops, interval_ms } => Wire::DropBurst {
            network: network.map(|n| names.network(n)),
            port: port.map_or_else(|| super::super::control::VTEP_PORT_NAME.to_owned(), |p| names.port(p, tunnels)),
            reason: reason.name().to_owned(),
            drops,
            interval_ms: interval_ms.into(),
        },
        EventKind::TunnelUp { network, port, remote, learned } => {
            tunnels.insert(port, remote);
            let (network, port) = (names.network(network), tunnel_port_name(remote));
            if learned {
                Wire::PeerLearned { network, peer: remote, port }
            } else {
                Wire::PortUp { network, port, sandbox: None, reason: PortChange::PeerAdded }
            }
        }
        EventKind::TunnelDown { network, port, remote, silent } => {
            tunnels.remove(&port);
            let (network, port) = (names.network(network), tunnel_port_name(remote));
            if silent {
                Wire::PeerSilent { network, peer: remote, port }
            } else {
                Wire::PortDown { network, port, sandbox: None, reason: PortChange::PeerRemoved }
            }
        }
        EventKind::PortLink { network, port, up } => {
            let (network, sandbox, port) = (names.network(network), names.sandbox(port), names.port(port, tunnels));
            if up {
                Wire::PortUp { network, port, sandbox, reason: PortChange::LinkUp }
            } else {
                Wire::PortDown { network, port, sandbox, reason: PortChange::LinkDown }
            }
        }
        EventKind::KeyRotated { network, epoch, automatic } => {
            Wire::KeyRotated { network: names.network(network), epoch, automatic }
        }
    }
}
