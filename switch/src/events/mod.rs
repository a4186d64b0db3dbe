//! Switch events as the datapath sees them: MACs learned, moved, flapping
//! and aged, tables full, drop bursts, tunnels up and down, key rotations.
//!
//! Sans-IO like the bridge: events are small `Copy` values stamped with the
//! caller's [`Timestamp`] and recorded into an [`EventBuffer`] allocated
//! once, which the daemon drains once per loop iteration. Nothing here
//! allocates per frame, and a flood cannot become an event flood:
//!
//! - learning, moves and aging record at most [`NET_EVENTS_PER_INTERVAL`]
//!   events per network per interval; the rest are counted and reported in
//!   one [`EventKind::Suppressed`] at the interval's end;
//! - a MAC that moves [`FLAP_MOVES`] times within one interval is flapping
//!   ([`FlapTracker`]): its first move is reported, later ones are folded
//!   into one [`EventKind::MacFlapping`] per interval naming both ports;
//! - a full table or a port at its learning limit is reported once per
//!   interval with the number of MACs refused, from the learning counters;
//! - drops are compared per (port, reason) once per interval
//!   ([`drop_bursts`]): an increase of at least [`DROP_BURST`] is one event;
//! - when the buffer itself is full, further events are counted
//!   ([`EventBuffer::overflow`]), never stored.
//!
//! Names (ports, networks) are the control plane's business: events carry
//! the datapath's ids.

mod flap;

use std::net::SocketAddr;
use std::time::Duration;

pub use flap::FlapTracker;

use crate::counters::{DropCounters, DropReason};
use crate::port::{NetworkId, PortId};
use crate::time::Timestamp;
use crate::wire::MacAddr;

/// Length of the interval the coalescing limits and drop bursts refer to;
/// the daemon ends one every second (its tick).
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Most MAC events (learned, moved, aged) one network records per interval.
pub const NET_EVENTS_PER_INTERVAL: u32 = 64;
/// Moves within one interval that make a MAC flapping.
pub const FLAP_MOVES: u32 = 2;
/// MACs whose moves are tracked at once for flapping.
pub const FLAP_TRACKED: usize = 256;
/// Drops of one reason on one port within one interval that make a burst.
pub const DROP_BURST: u64 = 100;
/// Events an [`EventBuffer`] holds between two drains by default.
pub const EVENT_BUFFER: usize = 1024;

/// One thing that happened in the datapath, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When it happened (the datapath's monotonic clock).
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new MAC was learned on a port.
    MacLearned {
        /// Its network.
        network: NetworkId,
        /// The station address.
        mac: MacAddr,
        /// Where it was learned.
        port: PortId,
    },
    /// A learned MAC showed up on another port.
    MacMoved {
        /// Its network.
        network: NetworkId,
        /// The station address.
        mac: MacAddr,
        /// The port it was on.
        from: PortId,
        /// The port it is on now.
        to: PortId,
    },
    /// A MAC kept moving between two ports within one interval (reported
    /// once per interval while it goes on).
    MacFlapping {
        /// Its network.
        network: NetworkId,
        /// The station address.
        mac: MacAddr,
        /// The two ports of its last move: from, then to (where it is now).
        ports: [PortId; 2],
        /// Moves within the interval.
        moves: u32,
        /// Of those, moves not reported as [`EventKind::MacMoved`].
        suppressed: u32,
        /// Length of the interval in milliseconds.
        interval_ms: u32,
    },
    /// A learned MAC was not seen for the aging time and was removed.
    MacAged {
        /// Its network.
        network: NetworkId,
        /// The station address.
        mac: MacAddr,
        /// The port it was learned on.
        port: PortId,
    },
    /// New MACs were refused within the interval: the network's table is full.
    TableFull {
        /// The network.
        network: NetworkId,
        /// MACs (frames with a new source) refused.
        refused: u64,
        /// The table's size limit.
        limit: u32,
    },
    /// New MACs (or moves) were refused within the interval: a port's
    /// learning limit was reached.
    LearnLimit {
        /// The network.
        network: NetworkId,
        /// The last port refused.
        port: PortId,
        /// MACs refused on the network's ports.
        refused: u64,
    },
    /// MAC events beyond [`NET_EVENTS_PER_INTERVAL`] of one interval that
    /// were counted instead of recorded.
    Suppressed {
        /// The network.
        network: NetworkId,
        /// `MacLearned` events not recorded.
        learned: u32,
        /// `MacMoved` events not recorded.
        moved: u32,
        /// `MacAged` events not recorded.
        aged: u32,
    },
    /// Drops of one reason on one port passed [`DROP_BURST`] in an interval.
    DropBurst {
        /// The port's network (`None`: the underlay endpoint).
        network: Option<NetworkId>,
        /// The port (`None`: the underlay endpoint).
        port: Option<PortId>,
        /// Why the frames were dropped.
        reason: DropReason,
        /// Drops within the interval.
        drops: u64,
        /// Length of the interval in milliseconds.
        interval_ms: u32,
    },
    /// A tunnel port toward a remote VTEP appeared.
    TunnelUp {
        /// Its overlay network.
        network: NetworkId,
        /// The tunnel port.
        port: PortId,
        /// The remote VTEP.
        remote: SocketAddr,
        /// Learned from traffic (`--learn-peers`) rather than configured.
        learned: bool,
    },
    /// A tunnel port went away.
    TunnelDown {
        /// Its overlay network.
        network: NetworkId,
        /// The tunnel port.
        port: PortId,
        /// The remote VTEP.
        remote: SocketAddr,
        /// A learned peer that fell silent for the peer aging time (else
        /// removed by the operator or with its network).
        silent: bool,
    },
    /// The sandbox's side of a TAP port went down (writes to it fail) or
    /// came back (a frame crossed it again).
    PortLink {
        /// The port's network.
        network: NetworkId,
        /// The TAP port.
        port: PortId,
        /// Up again, or down.
        up: bool,
    },
    /// An encrypted overlay moved to another key epoch.
    KeyRotated {
        /// The network.
        network: NetworkId,
        /// The epoch it seals with now.
        epoch: u32,
        /// By automatic rotation (`-o key-rotation`), not the operator.
        automatic: bool,
    },
}

/// A bounded buffer of events between two drains, allocated once.
#[derive(Debug)]
pub struct EventBuffer {
    events: Vec<Event>,
    capacity: usize,
    overflow: u64,
}

impl Default for EventBuffer {
    fn default() -> Self {
        EventBuffer::new(EVENT_BUFFER)
    }
}

impl EventBuffer {
    /// An empty buffer with room for `capacity` events.
    pub fn new(capacity: usize) -> EventBuffer {
        EventBuffer { events: Vec::with_capacity(capacity), capacity, overflow: 0 }
    }

    /// Records `kind` at `at`; counts it in [`Self::overflow`] instead when
    /// the buffer is full.
    #[inline]
    pub fn push(&mut self, at: Timestamp, kind: EventKind) {
        if self.events.len() < self.capacity {
            self.events.push(Event { at, kind });
        } else {
            self.overflow += 1;
        }
    }

    /// The events recorded since the last drain.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// True when nothing was recorded (or lost) since the last drain.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.overflow == 0
    }

    /// Events not recorded since the last drain because the buffer was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// Hands the recorded events over by swapping them with `spare` (which
    /// is cleared first, and should have room for the buffer's capacity so
    /// recording never allocates); returns the overflow count, reset.
    pub fn drain_into(&mut self, spare: &mut Vec<Event>) -> u64 {
        spare.clear();
        std::mem::swap(&mut self.events, spare);
        std::mem::take(&mut self.overflow)
    }
}

/// One network's event budget and the learning counters last reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetEventBudget {
    recorded: u32,
    suppressed_learned: u32,
    suppressed_moved: u32,
    suppressed_aged: u32,
    reported_table_full: u64,
    reported_port_limit: u64,
    /// The last port whose learning limit refused a MAC.
    limit_port: Option<PortId>,
}

/// Which MAC event a budget is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacEvent {
    /// `MacLearned`.
    Learned,
    /// `MacMoved`.
    Moved,
    /// `MacAged`.
    Aged,
}

impl NetEventBudget {
    /// Whether one more MAC event of this interval may be recorded; if not,
    /// it is counted as suppressed.
    #[inline]
    pub fn admit(&mut self, event: MacEvent) -> bool {
        if self.recorded < NET_EVENTS_PER_INTERVAL {
            self.recorded += 1;
            return true;
        }
        let counter = match event {
            MacEvent::Learned => &mut self.suppressed_learned,
            MacEvent::Moved => &mut self.suppressed_moved,
            MacEvent::Aged => &mut self.suppressed_aged,
        };
        *counter = counter.saturating_add(1);
        false
    }

    /// Remembers the port whose learning limit refused a MAC.
    #[inline]
    pub fn limited(&mut self, port: PortId) {
        self.limit_port = Some(port);
    }

    /// Ends the interval for network `network`: records what was
    /// suppressed and, from the network's cumulative learning counters
    /// `table_full` and `port_limit`, the MACs refused since the last
    /// report; then starts a fresh budget.
    pub fn end_interval(
        &mut self,
        network: NetworkId,
        table_full: u64,
        port_limit: u64,
        limit: usize,
        now: Timestamp,
        out: &mut EventBuffer,
    ) {
        let (learned, moved, aged) = (self.suppressed_learned, self.suppressed_moved, self.suppressed_aged);
        if learned + moved + aged > 0 {
            out.push(now, EventKind::Suppressed { network, learned, moved, aged });
        }
        let refused = table_full.saturating_sub(self.reported_table_full);
        if refused > 0 {
            let limit = u32::try_from(limit).unwrap_or(u32::MAX);
            out.push(now, EventKind::TableFull { network, refused, limit });
        }
        let refused = port_limit.saturating_sub(self.reported_port_limit);
        if refused > 0
            && let Some(port) = self.limit_port
        {
            out.push(now, EventKind::LearnLimit { network, port, refused });
        }
        *self = NetEventBudget {
            reported_table_full: table_full,
            reported_port_limit: port_limit,
            limit_port: self.limit_port,
            ..NetEventBudget::default()
        };
    }
}

/// Compares a port's drop counters with those of the last interval and
/// records a [`EventKind::DropBurst`] for every reason that rose by at least
/// [`DROP_BURST`]; `reported` becomes `current`.
pub fn drop_bursts(
    network: Option<NetworkId>,
    port: Option<PortId>,
    current: &DropCounters,
    reported: &mut DropCounters,
    interval_ms: u32,
    now: Timestamp,
    out: &mut EventBuffer,
) {
    if current.total().saturating_sub(reported.total()) >= DROP_BURST {
        for reason in DropReason::ALL {
            let drops = current.get(reason).saturating_sub(reported.get(reason));
            if drops >= DROP_BURST {
                out.push(now, EventKind::DropBurst { network, port, reason, drops, interval_ms });
            }
        }
    }
    *reported = *current;
}

#[cfg(test)]
mod tests;
