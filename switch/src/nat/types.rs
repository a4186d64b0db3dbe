//! The translator's vocabulary, shared with the control plane: protocols,
//! published listeners and their backends, flow records and counters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::port::NetworkId;
use crate::wire::MacAddr;

/// A transport protocol the translator carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP: connections are terminated on one side and re-originated on the
    /// other, sequence spaces mapped.
    Tcp,
    /// UDP: datagrams relayed per flow.
    Udp,
    /// ICMP and ICMPv6 echo (egress only), through ping sockets.
    Icmp,
}

impl Proto {
    /// The lowercase name (`tcp`, `udp`, `icmp`), as `docker port` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One place a published port's traffic may go: a sandbox's addresses and
/// port on a network. Several backends make a balanced service.
///
/// A client reaches the backend's address of its own family, with its own
/// address and port as the source. When the backend has no address of the
/// client's family (an IPv6 client, an IPv4-only sandbox), the client is
/// carried to the other address as Docker's proxy does: the sandbox sees
/// the gateway's address of that family as the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// The network the sandbox is reached on.
    pub network: NetworkId,
    /// The endpoint's IPv4 address, if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// The endpoint's IPv6 address, if it has one.
    pub ipv6: Option<Ipv6Addr>,
    /// The endpoint's MAC (frames toward it are addressed to it directly).
    pub mac: MacAddr,
    /// The port inside the sandbox.
    pub port: u16,
    /// The sandbox lives on another node of the cluster (an ingress
    /// service's remote replica): the flow is carried with the network's
    /// mesh address and MAC as its source ([`Mesh`]), so the replica's
    /// answers come back to this node; the client's address is not
    /// preserved, as with Docker swarm's ingress network.
    pub via_mesh: bool,
}

impl Backend {
    /// The backend's address of `ip`'s family, if it has one.
    pub fn address_like(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.ipv6.map(IpAddr::V6),
        }
    }
}

/// This node's mesh station on an overlay network: the address and MAC a
/// flow toward a remote replica of an ingress service carries as its source
/// (source NAT to a per-node address, as Docker's ingress does). The
/// address is claimed in the cluster store and published as an endpoint of
/// this node, so the replica's node answers ARP for it and tunnels the
/// replies here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mesh {
    /// The mesh MAC (per node, locally administered).
    pub mac: MacAddr,
    /// The mesh IPv4 address, if the network has IPv4.
    pub ipv4: Option<Ipv4Addr>,
    /// The mesh IPv6 address, if the network has IPv6.
    pub ipv6: Option<Ipv6Addr>,
}

impl Mesh {
    /// The mesh address of `ip`'s family, if there is one.
    pub fn address_like(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.ipv6.map(IpAddr::V6),
        }
    }

    /// Whether `ip` is one of the mesh addresses.
    pub fn has(&self, ip: IpAddr) -> bool {
        self.address_like(ip) == Some(ip)
    }
}

/// A published port as the datapath needs it: a host socket address it
/// listens on and the backends it carries connections and datagrams to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// TCP or UDP.
    pub proto: Proto,
    /// Where the daemon listens, in its own network namespace
    /// (`0.0.0.0` for every IPv4 address, `[::]` for every IPv6 one: an
    /// IPv6 socket takes IPv6 only, `IPV6_V6ONLY`).
    pub host: SocketAddr,
    /// Where connections go; new TCP connections rotate over them, UDP
    /// flows are pinned to one by their 5-tuple.
    pub backends: Vec<Backend>,
    /// The IPv6 wildcard companion of a mapping on every address (`-p
    /// 8080:80` listens on `0.0.0.0` and `[::]`): left out, with a log
    /// line, when the host has no IPv6 (the bind fails with
    /// `EAFNOSUPPORT` or `EADDRNOTAVAIL`) rather than failing the request.
    pub optional: bool,
}

/// Which side opened a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A sandbox reached out (egress).
    Egress,
    /// A client reached a published port.
    Inbound,
}

/// One live flow, as `nat ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInfo {
    /// Protocol.
    pub proto: Proto,
    /// Who opened it.
    pub direction: Direction,
    /// The sandbox's network.
    pub network: NetworkId,
    /// The sandbox's side of the inner flow (address, port or echo id).
    pub sandbox: SocketAddr,
    /// The other side of the inner flow as the sandbox sees it.
    pub remote: SocketAddr,
    /// The host socket's local address (egress: the address the kernel
    /// picked; inbound: the published address).
    pub outer_local: Option<SocketAddr>,
    /// The host socket's peer (egress: the destination; inbound: the client).
    pub outer_remote: SocketAddr,
    /// Payload bytes from the sandbox.
    pub bytes_from_sandbox: u64,
    /// Payload bytes to the sandbox.
    pub bytes_to_sandbox: u64,
    /// Milliseconds since the flow was opened.
    pub age_ms: u64,
    /// The flow's state (`syn-sent`, `established`, `fin-wait`, `closing`,
    /// or `active` for UDP and ICMP).
    pub state: &'static str,
}

/// What the translator counts, per network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Flows opened (egress and inbound).
    pub flows_opened: u64,
    /// Flows refused: the destination refused or was unreachable, or
    /// every backend of a published port refused.
    pub flows_refused: u64,
    /// Flows closed because they were idle (UDP, ICMP) or a handshake
    /// never completed (TCP).
    pub flows_timed_out: u64,
    /// New flows refused because the flow table was full.
    pub table_full: u64,
    /// Flows open now.
    pub active: u64,
}
