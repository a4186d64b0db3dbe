//! Port and network identities and their configuration.

use std::fmt;

/// Identifies a port of the bridge (a TAP endpoint, the internal gateway
/// port, or a tunnel). Chosen by the caller; dense small integers work best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl PortId {
    /// The id as a vector index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// Identifies a network (bridge domain). Frames never cross between networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub u32);

impl NetworkId {
    /// The id as a vector index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net{}", self.0)
    }
}

/// What sits behind a port; decides flooding rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A local endpoint: a TAP into a sandbox, or the switch's internal port.
    Access,
    /// A tunnel to other hosts. Split horizon: a frame that arrived on a
    /// tunnel port is never flooded to another tunnel port.
    Tunnel,
    /// The switch's own gateway for the network on this host. Every host of
    /// an overlay has one, with the same address and MAC (an anycast
    /// gateway, as each host's sandboxes expect the same default route), so
    /// no frame passes between a gateway port and a tunnel port: a sandbox
    /// always talks to its own host's gateway, and one host's gateway is
    /// never learned behind a tunnel by another.
    Gateway,
}

impl PortKind {
    /// Whether this is a tunnel port.
    pub fn is_tunnel(self) -> bool {
        self == PortKind::Tunnel
    }

    /// Whether one of the two is a tunnel and the other the gateway: no
    /// frame passes between them (anycast gateway).
    pub fn crosses_gateway_and_tunnel(self, other: PortKind) -> bool {
        matches!((self, other), (PortKind::Tunnel, PortKind::Gateway) | (PortKind::Gateway, PortKind::Tunnel))
    }

    /// Whether a frame from a port of kind `self` is flooded to one of kind
    /// `egress`: not between tunnels (split horizon), and not between a
    /// tunnel and the gateway.
    pub fn floods_to(self, egress: PortKind) -> bool {
        let between_tunnels = self.is_tunnel() && egress.is_tunnel();
        !between_tunnels && !self.crosses_gateway_and_tunnel(egress)
    }
}

/// Default MTU of a port: the Ethernet payload size it accepts.
pub const DEFAULT_MTU: u32 = 1500;
/// Default per-port limit on learned MACs for access ports. A container that
/// forges random source MACs fills at most this much of its network's table.
pub const DEFAULT_PORT_LEARN_LIMIT: usize = 1024;

/// Configuration of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// The network the port belongs to.
    pub network: NetworkId,
    /// Access or tunnel.
    pub kind: PortKind,
    /// Largest Ethernet payload accepted from the port (GSO frames excepted).
    pub mtu: u32,
    /// Most MACs that may be learned on this port.
    pub learn_limit: usize,
    /// Most frames a second this port may flood (storm control), or no
    /// limit.
    pub flood_limit: Option<FloodLimit>,
    /// An isolated port exchanges frames with the network's non-isolated
    /// ports only (its gateway, uplinks and tunnels), never with another
    /// isolated one, as a kernel bridge's `isolated` ports: the endpoints
    /// of a network with inter-container communication off.
    pub isolated: bool,
}

/// Storm control: how many frames a second one port may have flooded
/// (broadcast, multicast and unknown unicast, each sent to every other port
/// of its network), with a burst of one second's worth. Beyond it the
/// bridge drops the port's floods (`flood_limited`) and still forwards its
/// known unicast, so one sandbox flooding cannot take the datapath's time
/// from every other port's traffic. Set per network (`-o flood-limit=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimit {
    per_second: u32,
}

impl FloodLimit {
    /// A limit of `per_second` flooded frames a second (burst: as many), or
    /// `None` for zero, which would flood nothing at all: not a limit but a
    /// broken network (ARP needs broadcasts).
    pub fn new(per_second: u32) -> Option<FloodLimit> {
        (per_second > 0).then_some(FloodLimit { per_second })
    }

    /// Flooded frames a second.
    pub fn per_second(self) -> u32 {
        self.per_second
    }
}

/// A port's token bucket for [`FloodLimit`], in thousandths of a frame so
/// that whole milliseconds of a slow rate still earn their share.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FloodBucket {
    /// Credit left, in thousandths of a frame; `None` until the port's
    /// first flood, which finds the bucket full.
    credit: Option<u64>,
    /// When credit was last added.
    refilled: crate::time::Timestamp,
}

impl FloodBucket {
    /// Takes one frame's credit under `limit` at `now`; false when the port
    /// has flooded its share, and the frame must be dropped.
    #[inline]
    pub(crate) fn take(&mut self, limit: FloodLimit, now: crate::time::Timestamp) -> bool {
        const FRAME: u64 = 1000;
        // A full bucket: one second's worth of frames.
        let full = u64::from(limit.per_second) * FRAME;
        let credit = match self.credit {
            None => full,
            Some(credit) => {
                // One thousandth of a frame per frame-per-second per millisecond.
                let earned = now.millis_since(self.refilled).saturating_mul(u64::from(limit.per_second));
                credit.saturating_add(earned).min(full)
            }
        };
        self.refilled = now;
        let (credit, allowed) = if credit >= FRAME { (credit - FRAME, true) } else { (credit, false) };
        self.credit = Some(credit);
        allowed
    }
}

impl PortConfig {
    /// An access port on `network` with default MTU and learning limit.
    pub fn access(network: NetworkId) -> PortConfig {
        PortConfig {
            network,
            kind: PortKind::Access,
            mtu: DEFAULT_MTU,
            learn_limit: DEFAULT_PORT_LEARN_LIMIT,
            flood_limit: None,
            isolated: false,
        }
    }

    /// A tunnel port on `network`; it may learn as many MACs as the network holds.
    pub fn tunnel(network: NetworkId) -> PortConfig {
        PortConfig { learn_limit: usize::MAX, kind: PortKind::Tunnel, ..PortConfig::access(network) }
    }

    /// The gateway port of `network` (see [`PortKind::Gateway`]).
    pub fn gateway(network: NetworkId) -> PortConfig {
        PortConfig { kind: PortKind::Gateway, ..PortConfig::access(network) }
    }
}
