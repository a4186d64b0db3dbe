//! Switch events (`events`, `events --follow`): what happened to MAC
//! tables, ports, peers, keys and drops, as the daemon reports it. See
//! "Events" in PROTOCOL.md.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::addr::MacAddr;

/// One event: a sequence number, a wall-clock time, and what happened
/// (`kind` and its fields, side by side on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Numbers events in the order the daemon reported them, from 1 at its
    /// start; a gap in a stream means events were lost (an `events_lost`
    /// item says how many).
    pub seq: u64,
    /// When it happened, RFC 3339 in UTC with milliseconds
    /// (`2026-11-30T10:13:53.123Z`).
    pub time: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Why a port came up or went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortChange {
    /// `network connect`.
    Connected,
    /// Re-attached when the daemon started.
    Restored,
    /// `network disconnect`.
    Disconnected,
    /// `sandbox rm` (or the sandbox was released because it is gone).
    SandboxRemoved,
    /// Its interface vanished (the sandbox's namespace ended).
    Gone,
    /// A tunnel port of a configured peer (`peer add`, network created).
    PeerAdded,
    /// A tunnel port removed with its peer or its network.
    PeerRemoved,
    /// The sandbox's side of the link went down (`ip link set eth0 down`
    /// inside it): frames to it fail.
    LinkDown,
    /// The sandbox's side of the link is up again (a frame crossed it).
    LinkUp,
    /// An uplink whose interface had gone is attached again: an interface
    /// of its name appeared.
    Returned,
}

impl PortChange {
    /// The wire name, e.g. `"sandbox_removed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PortChange::Connected => "connected",
            PortChange::Restored => "restored",
            PortChange::Disconnected => "disconnected",
            PortChange::SandboxRemoved => "sandbox_removed",
            PortChange::Gone => "gone",
            PortChange::PeerAdded => "peer_added",
            PortChange::PeerRemoved => "peer_removed",
            PortChange::LinkDown => "link_down",
            PortChange::LinkUp => "link_up",
            PortChange::Returned => "returned",
        }
    }
}

/// Where events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LostScope {
    /// Inside the daemon, before they were numbered (the datapath produced
    /// them faster than they were collected): nobody sees them.
    Daemon,
    /// In this stream only: its client read too slowly.
    Stream,
}

/// What happened. Ports and networks are named as `show` and `stats` name
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A new MAC was learned on a port.
    MacLearned {
        /// The network.
        network: String,
        /// The station address.
        mac: MacAddr,
        /// Where it was learned.
        port: String,
    },
    /// A learned MAC showed up on another port.
    MacMoved {
        /// The network.
        network: String,
        /// The station address.
        mac: MacAddr,
        /// The port it was on.
        from: String,
        /// The port it is on now.
        to: String,
    },
    /// A MAC moved twice or more within one interval; reported once per
    /// interval while it goes on, instead of each move.
    MacFlapping {
        /// The network.
        network: String,
        /// The station address.
        mac: MacAddr,
        /// The two ports of its last move: from, then to (where it is now).
        ports: [String; 2],
        /// Moves within the interval.
        moves: u64,
        /// Of those, moves not reported as `mac_moved`.
        suppressed: u64,
        /// Length of the interval in milliseconds.
        interval_ms: u64,
    },
    /// A learned MAC was not seen for the aging time and was removed.
    MacAged {
        /// The network.
        network: String,
        /// The station address.
        mac: MacAddr,
        /// The port it had been learned on.
        port: String,
    },
    /// New MACs were refused within an interval: the network's table is full.
    TableFull {
        /// The network.
        network: String,
        /// Frames with a new source MAC that was not learned.
        refused: u64,
        /// The table's size limit.
        limit: u64,
    },
    /// New MACs were refused within an interval: a port reached its
    /// learning limit.
    LearnLimit {
        /// The network.
        network: String,
        /// The (last) port refused.
        port: String,
        /// MACs refused on the network's ports.
        refused: u64,
    },
    /// MAC events of one network beyond its per-interval budget, counted
    /// instead of reported (a MAC flood).
    EventsSuppressed {
        /// The network.
        network: String,
        /// `mac_learned` events not reported.
        learned: u64,
        /// `mac_moved` events not reported.
        moved: u64,
        /// `mac_aged` events not reported.
        aged: u64,
    },
    /// Drops of one reason on one port passed the burst threshold within
    /// an interval.
    DropBurst {
        /// The port's network (`null` for the underlay endpoint `vtep`).
        network: Option<String>,
        /// The port (`vtep`: the underlay endpoint).
        port: String,
        /// The drop reason, as `stats` names it.
        reason: String,
        /// Drops within the interval.
        drops: u64,
        /// Length of the interval in milliseconds.
        interval_ms: u64,
    },
    /// A port came up.
    PortUp {
        /// The network.
        network: String,
        /// The port.
        port: String,
        /// The sandbox behind it (TAP ports).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
        /// Why.
        reason: PortChange,
    },
    /// A port went down (was removed).
    PortDown {
        /// The network.
        network: String,
        /// The port.
        port: String,
        /// The sandbox behind it (TAP ports).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
        /// Why.
        reason: PortChange,
    },
    /// A VTEP that is not a configured peer sent valid traffic and became a
    /// learned peer (`--learn-peers`), with a tunnel port.
    PeerLearned {
        /// The overlay network.
        network: String,
        /// The remote VTEP.
        peer: SocketAddr,
        /// Its tunnel port.
        port: String,
    },
    /// A learned peer was silent for the peer aging time and was removed
    /// with its tunnel port.
    PeerSilent {
        /// The overlay network.
        network: String,
        /// The remote VTEP.
        peer: SocketAddr,
        /// Its tunnel port.
        port: String,
    },
    /// An encrypted overlay moved to another key epoch.
    KeyRotated {
        /// The network.
        network: String,
        /// The epoch it seals with now.
        epoch: u32,
        /// By automatic rotation (`-o key-rotation`) rather than `network
        /// key rotate`.
        automatic: bool,
    },
    /// A sandbox's interface vanished (its container, and with it its
    /// namespace, is gone): its endpoint and address were released.
    EndpointGone {
        /// The network.
        network: String,
        /// The sandbox.
        sandbox: String,
        /// The endpoint's port.
        port: String,
        /// The address released (its IPv4 address; on an IPv6-only network
        /// its IPv6 one).
        address: IpAddr,
    },
    /// An adopted sandbox's namespace is gone: the sandbox was removed.
    SandboxGone {
        /// The sandbox.
        sandbox: String,
        /// The namespace path it was adopted from.
        netns: String,
    },
    /// Events were lost.
    EventsLost {
        /// How many.
        lost: u64,
        /// Inside the daemon, or in this stream only.
        scope: LostScope,
    },
}

impl EventKind {
    /// The wire name of the kind, e.g. `"mac_moved"`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MacLearned { .. } => "mac_learned",
            EventKind::MacMoved { .. } => "mac_moved",
            EventKind::MacFlapping { .. } => "mac_flapping",
            EventKind::MacAged { .. } => "mac_aged",
            EventKind::TableFull { .. } => "table_full",
            EventKind::LearnLimit { .. } => "learn_limit",
            EventKind::EventsSuppressed { .. } => "events_suppressed",
            EventKind::DropBurst { .. } => "drop_burst",
            EventKind::PortUp { .. } => "port_up",
            EventKind::PortDown { .. } => "port_down",
            EventKind::PeerLearned { .. } => "peer_learned",
            EventKind::PeerSilent { .. } => "peer_silent",
            EventKind::KeyRotated { .. } => "key_rotated",
            EventKind::EndpointGone { .. } => "endpoint_gone",
            EventKind::SandboxGone { .. } => "sandbox_gone",
            EventKind::EventsLost { .. } => "events_lost",
        }
    }

    /// The network it is about, if any.
    pub fn network(&self) -> Option<&str> {
        match self {
            EventKind::MacLearned { network, .. }
            | EventKind::MacMoved { network, .. }
            | EventKind::MacFlapping { network, .. }
            | EventKind::MacAged { network, .. }
            | EventKind::TableFull { network, .. }
            | EventKind::LearnLimit { network, .. }
            | EventKind::EventsSuppressed { network, .. }
            | EventKind::PortUp { network, .. }
            | EventKind::PortDown { network, .. }
            | EventKind::PeerLearned { network, .. }
            | EventKind::PeerSilent { network, .. }
            | EventKind::KeyRotated { network, .. }
            | EventKind::EndpointGone { network, .. } => Some(network),
            EventKind::DropBurst { network, .. } => network.as_deref(),
            EventKind::SandboxGone { .. } | EventKind::EventsLost { .. } => None,
        }
    }
}

/// The `ok` reply that opens `events --follow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsFollow {
    /// The `seq` the next event will have: events before it are in the
    /// history (`events` without `follow`), not in this stream.
    pub next_seq: u64,
}

/// The `end` summary of `events --follow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsSummary {
    /// Events written to this stream.
    pub delivered: u64,
    /// Events this stream lost because its client read too slowly.
    pub lost: u64,
}
