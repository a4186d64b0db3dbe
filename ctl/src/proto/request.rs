//! The request verbs ([`Request`]) and the network driver enum.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::addr::{Ipv4Net, Ipv6Net, MacAddr};
use crate::impair::Impairment;
use crate::publish::PortMapping;

/// Network driver, as in `docker network create --driver`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// A learning bridge whose ports are TAP devices (the default).
    #[default]
    Bridge,
    /// Endpoints share the host's network stack; no switching.
    Host,
    /// Endpoints get a loopback-only namespace; no switching.
    None,
    /// A bridge domain stretched across hosts with VXLAN tunnels.
    Overlay,
    /// Docker's name for a network that shares a host interface's L2
    /// segment: a bridge domain whose uplink is the interface named by the
    /// `parent` option (`-o parent=IFACE`).
    Macvlan,
}

/// How an endpoint or uplink port is backed (`--port-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortType {
    /// A TAP device (endpoints only; the default).
    #[default]
    Tap,
    /// A veth pair (endpoints) or a host interface (uplinks) under an XDP
    /// program, switched through an AF_XDP socket.
    Afxdp,
    /// A host interface through an `AF_PACKET` socket (uplinks only).
    Raw,
}

impl PortType {
    /// The wire and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tap => "tap",
            Self::Afxdp => "afxdp",
            Self::Raw => "raw",
        }
    }

    /// True for the default, [`PortType::Tap`] (not serialized).
    pub fn is_tap(&self) -> bool {
        *self == Self::Tap
    }
}

/// How a service's published ports are served (`service publish --mode`),
/// as Docker swarm's `--publish mode=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    /// The routing mesh (cluster mode, overlay networks): every node
    /// listens on the ports and balances over every replica in the cluster.
    Ingress,
    /// This node only listens, and balances over its own replicas (the
    /// behaviour without a cluster store).
    #[default]
    Host,
}

impl ServiceMode {
    /// The wire and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Ingress => "ingress",
            ServiceMode::Host => "host",
        }
    }
}

impl std::fmt::Display for ServiceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceMode {
    type Err = String;

    fn from_str(s: &str) -> Result<ServiceMode, String> {
        match s {
            "ingress" => Ok(ServiceMode::Ingress),
            "host" => Ok(ServiceMode::Host),
            other => Err(format!("unknown service mode {other:?} (expected ingress or host)")),
        }
    }
}

impl std::fmt::Display for PortType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Driver {
    /// All drivers, in documentation order.
    pub const ALL: [Driver; 5] = [Driver::Bridge, Driver::Host, Driver::None, Driver::Overlay, Driver::Macvlan];

    /// The wire and CLI name, e.g. `"bridge"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::None => "none",
            Self::Overlay => "overlay",
            Self::Macvlan => "macvlan",
        }
    }

    /// Whether networks of this driver are bridge domains with a subnet and endpoints
    /// (bridge, overlay and macvlan; `host` and `none` are singletons without switching).
    pub fn is_switched(self) -> bool {
        matches!(self, Self::Bridge | Self::Overlay | Self::Macvlan)
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An unknown driver name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown driver {0:?}: expected one of bridge, host, none, overlay, macvlan")]
pub struct UnknownDriver(pub String);

impl FromStr for Driver {
    type Err = UnknownDriver;

    /// Accepts the names of [`Driver::ALL`] and Docker's alias `null` for `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "null" {
            return Ok(Self::None);
        }
        Self::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| UnknownDriver(s.to_owned()))
    }
}

/// The fields of a `network_create` request: what `vswitchctl network create` sends and
/// what the daemon's model creates from (one type, so the two can never disagree about a
/// field). Unset fields take Docker's defaults ([`CreateNetwork::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateNetwork {
    /// Unique network name.
    pub name: String,
    /// Optional: driver, default `bridge`.
    #[serde(default)]
    pub driver: Driver,
    /// Optional: IPv4 subnet; the daemon allocates one when absent.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// Optional: gateway address inside `subnet`; default is the first host address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Optional: a prefix inside `subnet` that automatic addresses come
    /// from (Docker's `--ip-range`); requires `subnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// Optional: give endpoints IPv4 addresses (default `true`); `false`
    /// together with `enable_ipv6` makes an IPv6-only network, which
    /// takes no `subnet`, `gateway` or `ip_range`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enable_ipv4: bool,
    /// Optional: give endpoints IPv6 addresses too (`--ipv6`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    /// Optional: IPv6 subnet (needs `enable_ipv6`); the daemon derives a
    /// unique local /64 (`fdXX:XXXX:XXXX::/64`) from the network's id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// Optional: IPv6 gateway address inside `subnet6`; default `::1` of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Optional: a prefix inside `subnet6` that automatic IPv6 addresses
    /// come from; requires `subnet6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<Ipv6Net>,
    /// Optional: addresses IPAM never gives an endpoint, by name (Docker's
    /// `--aux-address NAME=IP`): a router, printer or host already on the
    /// segment, as on a macvlan network. Each lies in `subnet` or `subnet6`,
    /// which must be given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// Optional: no route out of the network.
    #[serde(default)]
    pub internal: bool,
    /// Optional: MTU of the network's ports.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Optional: allow manual attachment (kept for Docker parity).
    #[serde(default)]
    pub attachable: bool,
    /// Optional: VXLAN network identifier (overlay driver).
    #[serde(default)]
    pub vni: Option<u32>,
    /// Optional: driver options from `-o key[=value]` (a bare key maps to `""`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Optional: user labels from `--label key[=value]` (Docker's network
    /// labels: kept, shown by `network inspect`, matched by `network ls -f
    /// label=...`; nothing in the switch reads them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Optional: make a configuration-only network (Docker's
    /// `--config-only`): its addressing (subnets, gateways, ranges,
    /// auxiliary addresses, address families), MTU, VNI, driver options and
    /// labels are kept for the networks created `config_from` it. Nothing
    /// attaches to it and it takes no subnet; the driver is not kept (a
    /// network created from it names its own); `internal` and `attachable`
    /// are refused (they belong to the networks made from it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub config_only: bool,
    /// Optional: the configuration-only network (name or ID) whose settings
    /// this network takes (Docker's `--config-from`). Refused together with
    /// any setting the configuration holds: subnets, gateways, ranges,
    /// auxiliary addresses, `enable_ipv6`, `enable_ipv4: false`, MTU, VNI,
    /// options or labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<String>,
}

impl Default for CreateNetwork {
    fn default() -> Self {
        Self {
            name: String::new(),
            driver: Driver::default(),
            subnet: None,
            gateway: None,
            ip_range: None,
            enable_ipv4: true,
            enable_ipv6: false,
            subnet6: None,
            gateway6: None,
            ip_range6: None,
            aux_addresses: BTreeMap::new(),
            internal: false,
            mtu: None,
            attachable: false,
            vni: None,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            config_only: false,
            config_from: None,
        }
    }
}

impl CreateNetwork {
    /// A request with the given name and driver and every other field defaulted.
    pub fn new(name: impl Into<String>, driver: Driver) -> Self {
        Self { name: name.into(), driver, ..Self::default() }
    }
}

/// One control request. On the wire it is the envelope's `req` object, tagged by `verb`
/// (`{"verb":"network_rm","name":"blue"}`). Fields marked optional below may be omitted
/// (they default to `null`, `false`, `[]` or `{}`); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Request {
    /// Create a sandbox (a network namespace). Reply: [`SandboxInfo`](super::SandboxInfo).
    SandboxCreate {
        /// Unique sandbox name.
        name: String,
        /// Optional: the sandbox's upstream DNS servers. The embedded DNS at
        /// its networks' gateways forwards the names it does not own to them;
        /// its `resolv.conf` lists them only while it is on no network with
        /// the embedded DNS.
        #[serde(default)]
        dns: Vec<IpAddr>,
        /// Optional: search domains for `resolv.conf`.
        #[serde(default)]
        dns_search: Vec<String>,
        /// Optional: `options` for `resolv.conf` (`ndots:2`, `rotate`, …;
        /// with the embedded DNS `ndots:0` is added unless an ndots option
        /// is given).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dns_options: Vec<String>,
        /// Optional: hosts file entries, `NAME:IP` or `NAME=IP` (Docker's
        /// `--add-host`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        extra_hosts: Vec<String>,
        /// Optional: adopt this existing netns (e.g. `/proc/1234/ns/net`) instead of creating one.
        #[serde(default)]
        netns: Option<PathBuf>,
    },
    /// List sandboxes. Reply: `[SandboxInfo]`.
    SandboxLs,
    /// Describe one sandbox, with the resolver configuration the switch
    /// wrote for it. Reply: [`SandboxInfo`](super::SandboxInfo) with
    /// `resolver` set.
    SandboxInspect {
        /// Sandbox name.
        name: String,
    },
    /// Remove a sandbox and all its endpoints. Reply: [`Ack`](super::Ack).
    SandboxRm {
        /// Sandbox name.
        name: String,
    },
    /// Publish more ports to a connected sandbox, all or nothing. Reply:
    /// [`SandboxInfo`](super::SandboxInfo).
    SandboxPublish {
        /// Sandbox name.
        sandbox: String,
        /// Optional: the network (name or ID prefix) whose endpoint receives the traffic;
        /// default: the sandbox's only endpoint, else the one carrying its default route.
        #[serde(default)]
        network: Option<String>,
        /// The ports, one entry per port.
        publish: Vec<PortMapping>,
    },
    /// Close published ports of a sandbox, all or nothing. Reply:
    /// [`SandboxInfo`](super::SandboxInfo).
    SandboxUnpublish {
        /// Sandbox name.
        sandbox: String,
        /// Optional: only this network's endpoint; default: whichever endpoint has each mapping.
        #[serde(default)]
        network: Option<String>,
        /// The ports, exactly as published.
        publish: Vec<PortMapping>,
    },
    /// Create a network. Reply: [`NetworkInfo`](super::NetworkInfo).
    NetworkCreate(CreateNetwork),
    /// List networks. Reply: `[NetworkSummary]`.
    NetworkLs,
    /// Describe one network (by name or ID prefix). Reply: [`NetworkInfo`](super::NetworkInfo).
    NetworkInspect {
        /// Network name or ID prefix.
        name: String,
    },
    /// Remove a network. Reply: [`Ack`](super::Ack).
    NetworkRm {
        /// Network name or ID prefix.
        name: String,
    },
    /// Remove every local custom network that nothing uses: no endpoint, no
    /// uplink (`docker network prune`). Reply: [`Pruned`](super::Pruned).
    NetworkPrune,
    /// Create an endpoint connecting `sandbox` to `network`. Reply: [`EndpointInfo`](super::EndpointInfo).
    NetworkConnect {
        /// Network name or ID prefix.
        network: String,
        /// Sandbox name.
        sandbox: String,
        /// Optional: static IPv4 address; allocated from the subnet when absent.
        #[serde(default)]
        ip: Option<Ipv4Addr>,
        /// Optional: static IPv6 address (networks with IPv6 only); allocated
        /// from the IPv6 subnet (`::2` up) when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip6: Option<Ipv6Addr>,
        /// Optional: extra DNS names for the endpoint.
        #[serde(default)]
        aliases: Vec<String>,
        /// Optional: MAC address; generated when absent.
        #[serde(default)]
        mac: Option<MacAddr>,
        /// Optional: ports to publish to the endpoint (`-p`, one entry per port; the client
        /// expands ranges). All are opened or none: the request is refused, and nothing is
        /// connected, when one cannot be.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        publish: Vec<PortMapping>,
        /// Optional: make the endpoint a replica of this service on the network (`--service`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// Optional: `tap` (default) or `afxdp` (a veth pair switched through an AF_XDP
        /// socket; the network's MTU must fit one UMEM chunk).
        #[serde(default, skip_serializing_if = "PortType::is_tap")]
        port_type: PortType,
        /// Optional: the endpoint's gateway priority (Docker's `--gw-priority`, default 0):
        /// each address family's default route goes through the sandbox's endpoint of the
        /// highest priority that has that family (ties: the one that has it, else the lower interface, eth0 first).
        #[serde(default, skip_serializing_if = "super::payload::is_zero")]
        gw_priority: i64,
        /// Optional: the interface's name in the sandbox (Docker's
        /// `com.docker.network.endpoint.ifname` driver option); the network's prefix and the
        /// lowest free number (`eth0`, `eth1`, …) when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ifname: Option<String>,
    },
    /// Attach a host interface (in the daemon's namespace) to a network as an uplink port.
    /// Reply: [`Ack`](super::Ack).
    PortAdd {
        /// Network name or ID prefix.
        network: String,
        /// The host interface.
        interface: String,
        /// Optional: `raw` (default: an `AF_PACKET` socket) or `afxdp`.
        #[serde(default)]
        port_type: Option<PortType>,
        /// Optional: attach the interface even if it carries the VTEP address or a
        /// default route.
        #[serde(default)]
        force: bool,
    },
    /// Detach an uplink and give its interface back to the host. Reply: [`Ack`](super::Ack).
    PortRm {
        /// The host interface.
        interface: String,
    },
    /// Remove the endpoint between `sandbox` and `network`. Reply: [`Ack`](super::Ack).
    NetworkDisconnect {
        /// Network name or ID prefix.
        network: String,
        /// Sandbox name.
        sandbox: String,
    },
    /// Whole-switch overview. Reply: [`ShowTree`](super::ShowTree).
    Show,
    /// Dump MAC learning tables. Reply: `[FdbEntry]`.
    FdbShow {
        /// Optional: only this network.
        #[serde(default)]
        network: Option<String>,
    },
    /// Add a static MAC entry. Reply: [`Ack`](super::Ack).
    FdbAdd {
        /// Network name or ID prefix.
        network: String,
        /// Unicast MAC address.
        mac: MacAddr,
        /// Port name the MAC lives behind.
        port: String,
    },
    /// Remove learned (dynamic) entries. Reply: [`FlushResult`](super::FlushResult).
    FdbFlush {
        /// Optional: only this network.
        #[serde(default)]
        network: Option<String>,
    },
    /// Port counters. Reply: `[PortStats]`.
    Stats {
        /// Optional: only this port.
        #[serde(default)]
        port: Option<String>,
    },
    /// Every counter in the Prometheus/OpenMetrics text exposition (what
    /// `vswitchd --metrics-listen` serves). Reply:
    /// [`MetricsText`](super::MetricsText).
    Metrics,
    /// Switch events (MACs learned, moved, flapping, aged; ports up and
    /// down; peers; key rotations; drop bursts). Without `follow` the
    /// reply is the recent history, `[Event]`, oldest first; with `follow`
    /// it is a stream ([`Request::is_stream`]): the reply is
    /// [`EventsFollow`](super::EventsFollow), then one `Event` item per
    /// event until the client stops it, then an
    /// [`EventsSummary`](super::EventsSummary).
    Events {
        /// Optional: stream events as they happen instead of returning the history.
        #[serde(default)]
        follow: bool,
    },
    /// The names the switch's embedded DNS serves. Reply: `[DnsRecord]`.
    DnsLs {
        /// Optional: only this network.
        #[serde(default)]
        network: Option<String>,
    },
    /// The runtime settings `config_set` changes. Reply:
    /// [`ConfigInfo`](super::ConfigInfo).
    ConfigShow,
    /// Change a runtime setting, e.g. `aging-time` = `300`. Reply: [`Ack`](super::Ack).
    ConfigSet {
        /// Setting name.
        key: String,
        /// New value, as text; the daemon parses it per key.
        value: String,
    },
    /// Move an encrypted overlay to its next key epoch. Reply: [`KeyEpoch`](super::KeyEpoch).
    NetworkKeyRotate {
        /// Network name or ID prefix.
        network: String,
    },
    /// The L4 translator's live flows (egress and published ports). Reply: `[NatFlow]`.
    NatLs {
        /// Optional: only this network.
        #[serde(default)]
        network: Option<String>,
    },
    /// Publish ports of a service: new connections and UDP flows are balanced over its
    /// replicas (endpoints connected with `service`) on its network. Creates the service on
    /// first use, adds ports afterwards. Reply: [`ServiceInfo`](super::ServiceInfo).
    ServicePublish {
        /// Service name.
        name: String,
        /// The service's network (name or ID prefix); optional once the service exists, or
        /// when all its replicas are on one network.
        #[serde(default)]
        network: Option<String>,
        /// Published port → the replicas' target port, one entry per port.
        publish: Vec<PortMapping>,
        /// `ingress` (the default on a cluster overlay network of a node with a cluster
        /// store: every node serves the ports, over every replica) or `host` (this node
        /// only, over its own replicas; the only mode elsewhere).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<ServiceMode>,
    },
    /// List services. Reply: `[ServiceInfo]`.
    ServiceLs,
    /// Describe one service. Reply: [`ServiceInfo`](super::ServiceInfo).
    ServiceInspect {
        /// Service name.
        name: String,
    },
    /// Remove a service and close its ports (its replicas stay connected). Reply:
    /// [`Ack`](super::Ack).
    ServiceRm {
        /// Service name.
        name: String,
    },
    /// Add a static VXLAN peer (remote VTEP). Reply: [`PeerInfo`](super::PeerInfo).
    PeerAdd {
        /// The peer's underlay address and UDP port (4789 if the client was given none).
        addr: std::net::SocketAddr,
        /// Overlay networks it serves (names or ID prefixes); empty: all of them.
        #[serde(default)]
        networks: Vec<String>,
    },
    /// List peers, static and learned. Reply: `[PeerInfo]`.
    PeerLs,
    /// Remove a static peer. Reply: [`Ack`](super::Ack).
    PeerRm {
        /// The peer's underlay address and UDP port.
        addr: std::net::SocketAddr,
    },
    /// The nodes of the cluster store and the store's state (daemons
    /// started with `--cluster-store`; `not_supported` otherwise). Reply:
    /// [`NodeList`](super::NodeList).
    NodeLs,
    /// Release every address claim and record of a node that is down
    /// (`in_use` while it is alive, `unavailable` when the store cannot be
    /// reached). Reply: [`NodeRmResult`](super::NodeRmResult).
    NodeRm {
        /// The node's name (`--node-name`).
        name: String,
    },
    /// Copies of the frames crossing a port, every port of a network, or
    /// the underlay (stream). Reply: [`CaptureInfo`](super::CaptureInfo);
    /// items: [`CapturedFrame`](super::CapturedFrame); end:
    /// [`CaptureSummary`](super::CaptureSummary).
    Capture {
        /// A port as `show`/`stats` name it (`vsw…`, `gw:NET`, `vx:ADDR`,
        /// `vtep`), or a network (name or ID prefix): all of its ports.
        target: String,
        /// Optional: the underlay datagrams (only with target `vtep`, which
        /// implies it).
        #[serde(default)]
        outer: bool,
        /// Optional: end the stream after this many frames.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Optional: bytes kept of each frame (1 to 262144; 0 or absent: 262144).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
        /// Optional: a tcpdump filter expression (pcap-filter(7)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// Impair an endpoint port's egress (the frames toward its sandbox), or that of every
    /// tunnel port toward a VTEP, as netem would: delay with jitter, loss, duplication,
    /// reordering, a rate and a queue bound; or clear it. The setting is kept with the
    /// endpoint (it survives a restart, and goes when the endpoint goes), a VTEP's until it is
    /// cleared. A new setting replaces the old one: frames queued under it are sent at once.
    /// Reply: [`PortImpairInfo`](super::PortImpairInfo).
    PortImpair {
        /// The port: its name as `show` lists it (`vsw…`), `NETWORK:SANDBOX`, a sandbox
        /// with one endpoint, or `vx:ADDR:PORT` (every tunnel port toward that VTEP).
        port: String,
        /// Optional: the settings; absent or `null` clears the port's impairment.
        #[serde(default)]
        impair: Option<Impairment>,
    },
    /// Make the switch look like a stack file, as one transaction: every
    /// object is checked and planned first, then everything is applied or
    /// nothing is (see "Stack files" in PROTOCOL.md). Reply:
    /// [`StackReport`](crate::stack::StackReport).
    StackApply {
        /// The desired state.
        stack: crate::stack::Stack,
        /// Optional: only plan; change nothing.
        #[serde(default)]
        dry_run: bool,
        /// Optional: where the stack's keys are in its file, so errors name
        /// the file's line and key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<crate::stack::SourceMap>,
    },
    /// The networks, sandboxes and services as a stack, sorted by name:
    /// applying it to an empty daemon reproduces them. Reply:
    /// [`Stack`](crate::stack::Stack).
    StackExport,
    /// Daemon version. Reply: [`VersionInfo`](super::VersionInfo).
    Version,
    /// Liveness check. Reply: [`Ack`](super::Ack).
    Ping,
}

impl Request {
    /// Every verb's wire name. A `req.verb` outside this list is answered with `unknown_verb`.
    pub const VERBS: &'static [&'static str] = &[
        "sandbox_create",
        "sandbox_ls",
        "sandbox_inspect",
        "sandbox_rm",
        "sandbox_publish",
        "sandbox_unpublish",
        "network_create",
        "network_ls",
        "network_inspect",
        "network_rm",
        "network_prune",
        "network_connect",
        "network_disconnect",
        "network_key_rotate",
        "show",
        "fdb_show",
        "fdb_add",
        "fdb_flush",
        "stats",
        "events",
        "dns_ls",
        "metrics",
        "config_show",
        "config_set",
        "nat_ls",
        "service_publish",
        "service_ls",
        "service_inspect",
        "service_rm",
        "peer_add",
        "peer_ls",
        "peer_rm",
        "node_ls",
        "node_rm",
        "capture",
        "port_impair",
        "port_add",
        "port_rm",
        "stack_apply",
        "stack_export",
        "version",
        "ping",
    ];

    /// Whether the request changes anything (as opposed to reading state):
    /// the daemon logs the changes it applies.
    pub fn changes_state(&self) -> bool {
        !matches!(
            self,
            Self::SandboxLs
                | Self::SandboxInspect { .. }
                | Self::NetworkLs
                | Self::NetworkInspect { .. }
                | Self::Show
                | Self::FdbShow { .. }
                | Self::Stats { .. }
                | Self::Events { .. }
                | Self::DnsLs { .. }
                | Self::Metrics
                | Self::ConfigShow
                | Self::PeerLs
                | Self::NodeLs
                | Self::NatLs { .. }
                | Self::ServiceLs
                | Self::ServiceInspect { .. }
                | Self::Capture { .. }
                | Self::StackExport
                | Self::StackApply { dry_run: true, .. }
                | Self::Version
                | Self::Ping
        )
    }

    /// Whether the request opens a stream: its `ok` reply is followed by
    /// `item` lines and an `end` line, and the connection carries nothing
    /// else afterwards (see "Streams" in PROTOCOL.md).
    pub fn is_stream(&self) -> bool {
        matches!(self, Self::Capture { .. } | Self::Events { follow: true })
    }

    /// This request's wire verb, e.g. `"network_create"`.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::SandboxCreate { .. } => "sandbox_create",
            Self::SandboxLs => "sandbox_ls",
            Self::SandboxInspect { .. } => "sandbox_inspect",
            Self::SandboxRm { .. } => "sandbox_rm",
            Self::SandboxPublish { .. } => "sandbox_publish",
            Self::SandboxUnpublish { .. } => "sandbox_unpublish",
            Self::NetworkCreate { .. } => "network_create",
            Self::NetworkLs => "network_ls",
            Self::NetworkInspect { .. } => "network_inspect",
            Self::NetworkRm { .. } => "network_rm",
            Self::NetworkPrune => "network_prune",
            Self::NetworkConnect { .. } => "network_connect",
            Self::NetworkDisconnect { .. } => "network_disconnect",
            Self::NetworkKeyRotate { .. } => "network_key_rotate",
            Self::Show => "show",
            Self::FdbShow { .. } => "fdb_show",
            Self::FdbAdd { .. } => "fdb_add",
            Self::FdbFlush { .. } => "fdb_flush",
            Self::Stats { .. } => "stats",
            Self::Events { .. } => "events",
            Self::DnsLs { .. } => "dns_ls",
            Self::Metrics => "metrics",
            Self::ConfigShow => "config_show",
            Self::ConfigSet { .. } => "config_set",
            Self::NatLs { .. } => "nat_ls",
            Self::ServicePublish { .. } => "service_publish",
            Self::ServiceLs => "service_ls",
            Self::ServiceInspect { .. } => "service_inspect",
            Self::ServiceRm { .. } => "service_rm",
            Self::PeerAdd { .. } => "peer_add",
            Self::PeerLs => "peer_ls",
            Self::PeerRm { .. } => "peer_rm",
            Self::NodeLs => "node_ls",
            Self::NodeRm { .. } => "node_rm",
            Self::Capture { .. } => "capture",
            Self::PortImpair { .. } => "port_impair",
            Self::PortAdd { .. } => "port_add",
            Self::PortRm { .. } => "port_rm",
            Self::StackApply { .. } => "stack_apply",
            Self::StackExport => "stack_export",
            Self::Version => "version",
            Self::Ping => "ping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_round_trip() {
        for d in Driver::ALL {
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<Driver>(&format!("\"{d}\"")).unwrap(), d);
            assert_eq!(d.as_str().parse::<Driver>().unwrap(), d);
        }
        assert_eq!("null".parse::<Driver>().unwrap(), Driver::None);
        assert!(serde_json::from_str::<Driver>("\"null\"").is_err(), "the alias is for the CLI, not the wire");
        let e = "ipvlan".parse::<Driver>().unwrap_err().to_string();
        assert!(e.contains("\"ipvlan\"") && e.contains("bridge, host, none, overlay, macvlan"), "{e}");
        let switched: Vec<Driver> = Driver::ALL.into_iter().filter(|d| d.is_switched()).collect();
        assert_eq!(switched, [Driver::Bridge, Driver::Overlay, Driver::Macvlan]);
        for t in [PortType::Tap, PortType::Afxdp, PortType::Raw] {
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
    }

    #[test]
    fn reads_do_not_change_state_and_changes_do() {
        assert!(!Request::Stats { port: None }.changes_state());
        assert!(!Request::DnsLs { network: None }.changes_state());
        assert!(!Request::SandboxInspect { name: "a".into() }.changes_state());
        assert!(!Request::NatLs { network: None }.changes_state());
        assert!(!Request::ServiceLs.changes_state());
        assert!(!Request::NodeLs.changes_state());
        assert!(Request::NodeRm { name: "n".into() }.changes_state());
        assert!(Request::ServiceRm { name: "s".into() }.changes_state());
        assert!(Request::SandboxPublish { sandbox: "a".into(), network: None, publish: vec![] }.changes_state());
        assert!(Request::SandboxRm { name: "a".into() }.changes_state());
        assert!(Request::FdbFlush { network: None }.changes_state());
        assert!(Request::PortImpair { port: "p".into(), impair: None }.changes_state());
        assert!(Request::NetworkDisconnect { network: "n".into(), sandbox: "a".into() }.changes_state());
    }

    #[test]
    fn only_following_events_is_a_stream() {
        assert!(Request::Events { follow: true }.is_stream());
        assert!(!Request::Events { follow: false }.is_stream());
        assert!(!Request::Events { follow: true }.changes_state());
        assert!(!Request::Stats { port: None }.is_stream());
    }
}
