//! Reply payloads: the value of a successful response's `ok` field, one type per verb.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::request::Driver;
use crate::addr::{IpNet, Ipv4Net, Ipv6Net, MacAddr};
use crate::impair::{ImpairCounters, Impairment};
use crate::publish::PortMapping;

/// Empty success payload, serialized as `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// Reply to `network_inspect` and `network_create`, shaped like one element of
/// `docker network inspect` (Docker's capitalised keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    /// Network name.
    pub name: String,
    /// Full network ID (64 hex digits in Docker; any unique string here).
    pub id: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// `"local"`, or `"swarm"`/`"global"` for overlays spanning hosts.
    pub scope: String,
    /// Network driver.
    pub driver: Driver,
    /// Endpoints get IPv4 addresses: `false` only for IPv6-only networks
    /// (`--ipv4=false`). Docker's key since API 1.48; `true` when absent.
    #[serde(rename = "EnableIPv4", default = "yes")]
    pub enable_ipv4: bool,
    /// Endpoints get IPv6 addresses (`--ipv6`).
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// Address management.
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    /// No route out of the network.
    pub internal: bool,
    /// Manual attachment allowed.
    pub attachable: bool,
    /// Endpoints, keyed by endpoint ID.
    pub containers: BTreeMap<String, EndpointResource>,
    /// Driver options (including `-o` options, MTU and VNI as the daemon reports them).
    pub options: BTreeMap<String, String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// The configuration-only network this one took its settings from
    /// (`--config-from`); its name is empty when none, as in Docker.
    #[serde(default)]
    pub config_from: ConfigReference,
    /// A configuration-only network (`--config-only`): settings for the
    /// networks created from it; nothing attaches to it.
    #[serde(default)]
    pub config_only: bool,
}

/// The `ConfigFrom` object of [`NetworkInfo`] (Docker's `ConfigReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    /// The configuration-only network's name, or `""`.
    pub network: String,
}

/// The `IPAM` object of [`NetworkInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    /// IPAM driver name, `"default"`.
    pub driver: String,
    /// IPAM driver options.
    pub options: BTreeMap<String, String>,
    /// Address pools, one per address family the network has (IPv4
    /// first); empty for drivers without addressing (`host`, `none`).
    pub config: Vec<IpamConfig>,
}

/// One address pool of [`Ipam`]: an IPv4 or an IPv6 one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    /// The subnet, e.g. `10.0.0.0/24` or `fd00:1::/64`.
    pub subnet: IpNet,
    /// The gateway address; omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The part of the subnet automatic addresses come from (`--ip-range`);
    /// omitted when none.
    #[serde(rename = "IPRange", default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
    /// Addresses of the subnet IPAM never gives out, by name
    /// (`--aux-address`); omitted when none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auxiliary_addresses: BTreeMap<String, IpAddr>,
}

/// One entry of [`NetworkInfo::containers`] (Docker's `EndpointResource`).
/// Absent addresses are empty strings, as in Docker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointResource {
    /// Sandbox name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Endpoint ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    /// IPv4 address with prefix, `a.b.c.d/nn`, or `""`.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// IPv6 address with prefix, `fd00:1::2/64`, or `""`.
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// One row of `network_ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// Network name.
    pub name: String,
    /// The whole ID (`network ls` prints its first 12 characters, as
    /// `docker network ls` does).
    pub id: String,
    /// Network driver.
    pub driver: Driver,
    /// `"local"` etc., as in [`NetworkInfo::scope`].
    pub scope: String,
    /// IPv4 subnet, if the network has one.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// Endpoints get IPv4 addresses (`false` only for IPv6-only networks);
    /// omitted when `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enable_ipv4: bool,
    /// Endpoints get IPv6 addresses (`--ipv6`); omitted when `false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    /// IPv6 subnet, if the network has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// How many endpoints (sandboxes) the network has on this node.
    #[serde(default)]
    pub endpoints: usize,
    /// One of the networks every daemon has (`bridge`, `host`, `none`):
    /// Docker's `type=builtin`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub predefined: bool,
    /// Nothing uses it: a local custom network without endpoints, services
    /// or uplinks (but a macvlan network's parent), which `network prune`
    /// removes (Docker's `dangling=true`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dangling: bool,
    /// The network's user labels (`--label`); omitted when it has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// No route out of the network (`--internal`); omitted when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Creation time, RFC 3339, as in [`NetworkInfo::created`]; empty from
    /// daemons older than the field.
    #[serde(default)]
    pub created: String,
    /// A configuration-only network (`--config-only`, listed with driver
    /// `none`, Docker's `null`); omitted when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub config_only: bool,
    /// The configuration-only network it took its settings from
    /// (`--config-from`); omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<String>,
}

/// Reply to `network_prune`: what was removed, as `docker network prune`
/// reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Names of the networks removed, in the order they were.
    pub networks_deleted: Vec<String>,
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

/// One endpoint: a sandbox's attachment to a network. Reply to `network_connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Network name.
    pub network: String,
    /// Sandbox name.
    pub sandbox: String,
    /// Endpoint ID.
    pub endpoint_id: String,
    /// Switch port name (the TAP device on the daemon side).
    pub port: String,
    /// Interface name inside the sandbox, e.g. `eth0`.
    pub ifname: String,
    /// The interface's MAC address.
    pub mac: MacAddr,
    /// The interface's IPv4 address with prefix, if any.
    #[serde(default)]
    pub ipv4: Option<Ipv4Net>,
    /// The interface's IPv6 address with prefix, on networks with IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Net>,
    /// DNS aliases.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Ports published to this endpoint, one entry per port.
    #[serde(default)]
    pub publish: Vec<PortMapping>,
    /// The service this endpoint is a replica of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its gateway priority (`--gw-priority`; 0 when absent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gw_priority: i64,
    /// Whether it carries the sandbox's default route (the highest gateway
    /// priority; a family it lacks goes through the next network that has it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_gateway: bool,
}

/// Whether a number is zero, its default (left out of the JSON).
pub(super) fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A sandbox. Reply to `sandbox_create`; `sandbox_ls` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Sandbox name.
    pub name: String,
    /// Path of its network namespace (e.g. `/run/netns/NAME`).
    pub netns: PathBuf,
    /// Its upstream DNS servers, as given to `sandbox_create` (see
    /// [`ResolverInfo`] for what its `resolv.conf` says).
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// DNS search domains.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// Its resolv.conf options (`--dns-option`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// Its hosts file entries (`--add-host`), each `NAME:IP`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// The sandbox's endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointInfo>,
    /// The resolver configuration the switch wrote for the sandbox (set by
    /// `sandbox_inspect`; absent from `sandbox_ls` and `sandbox_create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<ResolverInfo>,
    /// Ports published on every address (`0.0.0.0`) are listened on `[::]`
    /// too: the daemon's host has IPv6 (set by `sandbox_inspect`; absent,
    /// false, from older daemons and hosts without IPv6).
    #[serde(default, skip_serializing_if = "is_false")]
    pub listens_ipv6: bool,
}

/// A sandbox's effective resolver configuration: what its `resolv.conf`
/// says and where the switch sends the names it does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverInfo {
    /// The file the switch writes (`/etc/netns/NAME/resolv.conf`, which
    /// `ip netns exec` mounts as `/etc/resolv.conf`; a container runtime
    /// bind-mounts it into an adopted namespace), if it wrote one.
    pub resolv_conf: Option<PathBuf>,
    /// Its `nameserver` lines: the gateway of the sandbox's first network
    /// that has the embedded DNS, else the sandbox's own `--dns` servers.
    pub nameservers: Vec<IpAddr>,
    /// Its `search` domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// Its `options` (e.g. `ndots:0`).
    #[serde(default)]
    pub options: Vec<String>,
    /// Where the embedded DNS forwards names it does not own for this
    /// sandbox: its `--dns` servers, else the daemon's upstreams.
    #[serde(default)]
    pub upstreams: Vec<SocketAddr>,
    /// False when every network of the sandbox is `--internal`: names the
    /// switch does not own are then answered NXDOMAIN, never forwarded.
    pub forwarding: bool,
}

/// One record served by the embedded DNS. `dns_ls` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The network whose sandboxes (and only those) see the record.
    pub network: String,
    /// The owner name, lowercase, without the trailing dot (`web`,
    /// `web.app`, or `2.0.10.10.in-addr.arpa` for PTR).
    pub name: String,
    /// `A` or `PTR`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The address (A) or the name pointed to (PTR).
    pub value: String,
    /// The sandbox whose endpoint the record belongs to.
    pub sandbox: String,
    /// Time to live in seconds.
    pub ttl: u32,
}

/// Reply to `metrics`: the exposition text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsText {
    /// Prometheus text exposition (`text/plain; version=0.0.4`).
    pub text: String,
}

/// Counters of one network's embedded DNS server (its gateway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStats {
    /// Queries received (UDP and TCP).
    pub queries: u64,
    /// Queries answered from the switch's own records (incl. NXDOMAIN and NODATA it decided).
    pub answered_locally: u64,
    /// Answers NXDOMAIN decided locally (no forwarding for the asker, or an unassigned address of its subnets).
    pub nxdomain: u64,
    /// Known names asked for a type they lack (NOERROR, no answers).
    pub nodata: u64,
    /// Queries forwarded to an upstream.
    pub forwarded: u64,
    /// Forwarded queries no upstream answered (SERVFAIL sent).
    pub upstream_failures: u64,
    /// Malformed messages (dropped or answered FORMERR).
    pub malformed: u64,
    /// Queries refused: unknown or spoofed source, or not a query.
    pub refused: u64,
    /// Queries refused because the forwarding bound was reached.
    pub refused_over_limit: u64,
    /// UDP answers too large for the asker, sent truncated (TC).
    pub truncated: u64,
    /// TCP connections cut: idle, too slow, or evicted for a new one.
    pub tcp_closed_idle: u64,
}

/// Reply to `show`: the whole switch as a tree (networks → ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowTree {
    /// Daemon version string.
    pub version: String,
    /// Networks, in name order.
    pub networks: Vec<ShowNetwork>,
    /// The cluster store, when the daemon has one (`--cluster-store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<StoreState>,
}

/// One network of [`ShowTree`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowNetwork {
    /// Network name.
    pub name: String,
    /// Short network ID.
    pub id: String,
    /// Network driver.
    pub driver: Driver,
    /// IPv4 subnet, if any.
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// Gateway address, if any.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// IPv6 gateway address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Port MTU, if set.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// VXLAN network identifier (overlay only).
    #[serde(default)]
    pub vni: Option<u32>,
    /// The datapath worker (thread `vsw-dp-K`) that owns the network and
    /// all its ports; omitted for networks the datapath does not switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// How many workers serve the network when it is spread over them
    /// (`-o spread`; `worker` is then its owner); omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_over: Option<u32>,
    /// The network's switch ports.
    pub ports: Vec<ShowPort>,
}

/// Kind of a switch port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// A TAP device whose peer end sits in a sandbox.
    Tap,
    /// The switch's own port (gateway / host side).
    Internal,
    /// A VXLAN tunnel to a remote host.
    Tunnel,
    /// A host interface attached to the network (`port add`, a macvlan network's parent).
    Uplink,
}

impl PortKind {
    /// Wire name, e.g. `"tap"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tap => "tap",
            Self::Internal => "internal",
            Self::Tunnel => "tunnel",
            Self::Uplink => "uplink",
        }
    }
}

/// One port of [`ShowNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowPort {
    /// Port name.
    pub name: String,
    /// Port kind.
    pub kind: PortKind,
    /// Sandbox behind a `tap` port.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// Interface name inside the sandbox.
    #[serde(default)]
    pub ifname: Option<String>,
    /// MAC address of the interface.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// IPv4 address of the interface, with prefix.
    #[serde(default)]
    pub ip: Option<Ipv4Net>,
    /// IPv6 address of the interface, with prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Net>,
    /// Remote VTEP of a `tunnel` port.
    #[serde(default)]
    pub remote: Option<SocketAddr>,
    /// The port's link impairment (`port_impair`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<Impairment>,
    /// How an endpoint or uplink port is backed (absent: a TAP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_type: Option<super::PortType>,
    /// How an `afxdp` port runs: `zero-copy` or `copy`, and whether its XDP
    /// program runs in the driver (`native`) or at the `generic` hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    /// The port is down (an uplink whose interface is gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
    /// On a TAP port: its transmit queue length (`txqueuelen`), the frames
    /// each of its queues holds for the switch, as the kernel reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txqueuelen: Option<u32>,
}

/// How an FDB entry got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdbKind {
    /// Learned from a frame's source address; ages out.
    Learned,
    /// Added by `fdb_add` or at endpoint creation; never ages.
    Static,
    /// A remote endpoint's MAC, installed from the cluster store toward
    /// the tunnel port of its node; never ages, never relearned, gone when
    /// the endpoint leaves the store.
    Cluster,
}

impl FdbKind {
    /// Wire name, e.g. `"learned"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learned => "learned",
            Self::Static => "static",
            Self::Cluster => "cluster",
        }
    }
}

/// One MAC table entry. `fdb_show` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// Network the entry belongs to.
    pub network: String,
    /// Port the MAC lives behind.
    pub port: String,
    /// The MAC address.
    pub mac: MacAddr,
    /// Seconds since the entry was last refreshed.
    pub age_secs: u64,
    /// Learned or static.
    pub kind: FdbKind,
    /// For MACs behind a tunnel port: the remote VTEP they were learned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
}

/// A VXLAN peer (remote VTEP). `peer_ls` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Underlay address and UDP port.
    pub addr: SocketAddr,
    /// Names of the overlay networks it serves.
    pub networks: Vec<String>,
    /// True when it serves every overlay network (none were named).
    pub all_networks: bool,
    /// True for a peer learned from traffic (`vswitchd --learn-peers`), false for a static one.
    pub learned: bool,
}

/// The daemon's view of its cluster store (`show`, `node_ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreState {
    /// The store's endpoints (`--cluster-store`), as URLs.
    pub endpoints: Vec<String>,
    /// This node's name (`--node-name`).
    pub node: String,
    /// Whether the daemon is connected to the store now.
    pub connected: bool,
    /// The last store revision the daemon has seen (0 before the first read).
    pub revision: i64,
    /// Why the last attempt to reach the store failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Whether a node of the cluster is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Its record is in the store: its lease is kept alive.
    Ready,
    /// It holds address claims but has no live record (dead or cut off).
    Down,
}

impl NodeStatus {
    /// The wire and table name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Down => "down",
        }
    }
}

/// One node of the cluster (`node_ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its advertised VTEP (`null` for a node that is down).
    pub vtep: Option<SocketAddr>,
    /// `ready` or `down`.
    pub status: NodeStatus,
    /// True for the node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// How many endpoints it has published (a down node's count its address claims).
    pub endpoints: u64,
    /// The networks it has endpoints on (names), sorted.
    pub networks: Vec<String>,
}

/// Reply to `node_ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// The store as this daemon sees it.
    pub store: StoreState,
    /// The nodes, by name.
    pub nodes: Vec<NodeInfo>,
}

/// Reply to `node_rm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRmResult {
    /// How many keys (claims and records) of the node were deleted.
    pub released: u64,
}

/// Reply to `config_show`: the runtime settings, under the names
/// `config_set` takes (with `-` as `_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// `aging-time`: seconds a learned FDB entry lives without traffic.
    pub aging_time: u64,
}

/// Reply to `fdb_flush`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushResult {
    /// Number of entries removed.
    pub flushed: u64,
}

/// Counters of one port. `stats` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// Port name.
    pub port: String,
    /// Network the port belongs to.
    pub network: String,
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_packets: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Frames received on this port that had to be flooded.
    pub floods: u64,
    /// Dropped frames by reason (e.g. `"runt"`, `"queue_full"`).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// On a gateway port (`gw:NET`): the network's embedded DNS counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStats>,
    /// On a gateway port (`gw:NET`): the network's L4 translator counters (egress and
    /// published ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatStats>,
    /// On a port that is or was impaired (`port_impair`): its settings and counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairStats>,
    /// On a TAP port: frames its sandbox sent that the kernel dropped
    /// because the TAP's queue to the switch was full (the interface's
    /// `tx_dropped`, read from the kernel when asked). They never reached
    /// the switch, so they are not in `rx_packets` nor in `drops`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_queue_dropped: Option<u64>,
    /// On a datapath worker's row (port `vsw-dp-K`, network `(worker)`):
    /// its busy time and wake-ups; the row's packet and byte counters and
    /// drops are those of the worker's underlay socket (zero without a VTEP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerLoad>,
    /// On the underlay endpoint's row (`vtep`): software GRO of tunnel TCP
    /// segments into the sandboxes' TAPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gro: Option<GroStats>,
}

/// Software GRO in `stats` (see [`PortStats::gro`]): TCP segments that came
/// off the tunnel and entered a TAP merged, one write per merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroStats {
    /// GSO frames merged from several segments and written into a TAP.
    pub frames: u64,
    /// Segments those frames carried.
    pub segments: u64,
}

/// A datapath worker thread's load in `stats` (see [`PortStats::worker`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerLoad {
    /// The worker's index (thread `vsw-dp-K`).
    pub index: u32,
    /// Milliseconds its thread spent working (between waking up and waiting again).
    pub busy_ms: u64,
    /// Times its thread woke up.
    pub wakeups: u64,
    /// The CPU its thread is bound to (vswitchd `--cpu-affinity`), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Frames of spread networks (`-o spread`) it forwarded itself, as a
    /// replica of a network another worker owns.
    #[serde(default)]
    pub replica_frames: u64,
    /// Frames of spread networks it handed to their owner worker (a flow's
    /// first frames, broadcasts, frames for the gateway).
    #[serde(default)]
    pub to_owner: u64,
    /// Frames replicas handed to it, as the owner of spread networks.
    #[serde(default)]
    pub from_replicas: u64,
    /// TCP connections of spread networks it placed on another worker, less
    /// busy (their opening handed over to be written there).
    #[serde(default)]
    pub placed_out: u64,
    /// TCP connections of spread networks other workers placed on it.
    #[serde(default)]
    pub placed_in: u64,
}

/// A port's link impairment in `stats`: the settings in force and the counters since it
/// was first impaired (they stay after a clear, like every counter of the port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpairStats {
    /// The settings in force; absent once cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Impairment>,
    /// Its counters (on the wire, fields of this object).
    #[serde(flatten)]
    pub counters: ImpairCounters,
}

/// Reply to `port_impair`: the port and its impairment now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortImpairInfo {
    /// The port's name, as `show` lists it.
    pub port: String,
    /// Its network.
    pub network: String,
    /// Its sandbox.
    pub sandbox: String,
    /// The settings in force; absent after a clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<Impairment>,
}

impl PortStats {
    /// Sum of all drop reasons (saturating).
    pub fn total_drops(&self) -> u64 {
        self.drops.values().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// Reply to `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Daemon version, e.g. `"0.1.0"`.
    pub version: String,
    /// Protocol version the daemon speaks.
    pub protocol: u32,
}

/// Reply to `network_key_rotate`: the network's key epoch now in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEpoch {
    /// The network.
    pub network: String,
    /// Its new key epoch.
    pub epoch: u32,
}

/// Counters of one network's L4 translator (egress and published ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatStats {
    /// Flows opened (egress and inbound).
    pub flows_opened: u64,
    /// Flows refused: the destination refused or was unreachable, or every backend of a
    /// published port refused.
    pub flows_refused: u64,
    /// Flows closed because they were idle (UDP, ICMP) or a handshake never completed (TCP).
    pub flows_timed_out: u64,
    /// New flows refused because the flow table was full.
    pub table_full: u64,
    /// Flows open now.
    pub active: u64,
}

/// One live flow of the L4 translator. `nat_ls` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatFlow {
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// `egress` (a sandbox reached out) or `inbound` (a client reached a published port).
    pub direction: String,
    /// The sandbox's network.
    pub network: String,
    /// The sandbox, when its address belongs to a known endpoint.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// The sandbox's side of the inner flow (address and port, or echo id for ICMP; IPv4
    /// or IPv6, `[fd00::2]:80`).
    pub sandbox_addr: SocketAddr,
    /// The other side of the inner flow, as the sandbox sees it.
    pub remote_addr: SocketAddr,
    /// The host socket's local address (egress: the one the kernel picked; inbound: the
    /// published address), when known.
    #[serde(default)]
    pub outer_local: Option<SocketAddr>,
    /// The host socket's peer (egress: the destination; inbound: the client).
    pub outer_remote: SocketAddr,
    /// Payload bytes from the sandbox.
    pub bytes_from_sandbox: u64,
    /// Payload bytes to the sandbox.
    pub bytes_to_sandbox: u64,
    /// Milliseconds since the flow was opened.
    pub age_ms: u64,
    /// `syn-sent`, `established`, `fin-wait`, `closing`, or `active` (UDP, ICMP).
    pub state: String,
}

/// A service: published ports balanced over its replicas. Reply to `service_publish` and
/// `service_inspect`; `service_ls` returns a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Service name.
    pub name: String,
    /// The network its replicas are reached on.
    pub network: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Published port → the replicas' target port, one entry per port.
    pub publish: Vec<PortMapping>,
    /// `ingress` (the cluster's routing mesh) or `host` (this node only).
    #[serde(default)]
    pub mode: super::ServiceMode,
    /// Its replicas, in the order new connections rotate over them (by connection time). An
    /// empty list keeps the ports open; their connections are refused.
    pub replicas: Vec<ServiceReplica>,
}

/// One replica of a [`ServiceInfo`]: an endpoint connected with `service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReplica {
    /// The sandbox.
    pub sandbox: String,
    /// The endpoint's ID.
    pub endpoint_id: String,
    /// The endpoint's address on the service's network.
    pub address: Ipv4Addr,
    /// The cluster node the replica lives on, for another node's replica of
    /// an ingress service (reached through this node's mesh address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}
