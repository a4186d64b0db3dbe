//! The records the model keeps, the requests that create them and the
//! outcomes that tell the daemon which side effects to perform.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use ctl::proto::{Driver, PortType};
use ctl::{Ipv4Net, Ipv6Net, MacAddr, PortMapping};

/// A network: one bridge domain (or the special `host`/`none`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 lowercase hex digits, random.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The driver.
    pub driver: Driver,
    /// The IPv4 subnet (set for bridge and overlay networks with IPv4, that
    /// is all but IPv6-only ones).
    pub subnet: Option<Ipv4Net>,
    /// The gateway address inside `subnet` (set exactly when `subnet` is).
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`: the part of `subnet` that automatic addresses come from
    /// (addresses given with `--ip` may lie anywhere in the subnet). Hosts
    /// sharing an overlay give each their own range so their automatic
    /// addresses never collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// Endpoints get IPv4 addresses (`--ipv4`, on by default). False only
    /// for IPv6-only networks (`--ipv6 --ipv4=false`), which have no
    /// `subnet` or `gateway`. Absent from state files that predate IPv6,
    /// and from those of IPv4 networks, so their state stays as it was.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enable_ipv4: bool,
    /// Endpoints get IPv6 addresses (`--ipv6`); then `subnet6` and
    /// `gateway6` are set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    /// The IPv6 subnet: the one given, or a ULA /64 derived from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// The IPv6 gateway address inside `subnet6` (`::1` unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// The IPv6 `--ip-range`: the part of `subnet6` that automatic IPv6
    /// addresses come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<Ipv6Net>,
    /// Addresses IPAM never gives an endpoint, by name (`--aux-address`),
    /// each inside `subnet` or `subnet6`. Absent from state files without any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// No route out of the network: endpoints get no default route through it.
    pub internal: bool,
    /// Standalone sandboxes may connect (meaningful for overlay networks).
    pub attachable: bool,
    /// MTU of the endpoints' interfaces.
    pub mtu: u32,
    /// VXLAN network identifier (overlay networks only).
    pub vni: Option<u32>,
    /// Free-form driver options (`-o key=value`).
    pub options: BTreeMap<String, String>,
    /// User labels (`--label key=value`), kept for the user: nothing in
    /// the switch reads them. Absent from state files without any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Small dense integer, unique among networks and stable for the network's
    /// life: the datapath's bridge-domain id. Reused after the network is removed.
    pub network_index: u32,
    /// Epoch of the encryption key of an encrypted overlay (`-o encrypted`):
    /// `network key rotate` moves it forward; keys derive from (cluster
    /// secret, VNI, epoch).
    #[serde(default)]
    pub key_epoch: u32,
    /// A cluster-wide network: its record lives in the cluster store
    /// (`vswitchd --cluster-store`), which decides its id, VNI and subnets;
    /// this node holds a copy. Absent from state files of local networks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster: bool,
    /// The prefix of the network's interface names in sandboxes, as
    /// `network create` (or the adoption of a cluster network) took it from
    /// [`IFACE_PREFIX_OPTION`]: `None` is `eth`. A field of its own, not read
    /// from the option, because older daemons kept the option without
    /// carrying it out and named such networks' interfaces `eth0`, `eth1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface_prefix: Option<String>,
    /// The name of the configuration-only network this network took its
    /// settings from (`--config-from`); it cannot be removed while this
    /// network exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<String>,
}

/// The option that encrypts an overlay network's data plane.
pub const ENCRYPTED_OPTION: &str = "encrypted";
/// The option that picks an encrypted overlay's cipher (`-o
/// cipher=aes-256-gcm`; `chacha20-poly1305` is the default). Every host of
/// the network must give the same.
pub const CIPHER_OPTION: &str = "cipher";
/// The option that clamps the TCP MSS of SYNs crossing an overlay.
pub const MSS_CLAMP_OPTION: &str = "mss-clamp";
/// The option that rotates an encrypted overlay's key every N seconds
/// (`-o key-rotation=43200` is Docker's 12 hours).
pub const KEY_ROTATION_OPTION: &str = "key-rotation";
/// The shortest automatic key rotation period accepted.
pub const MIN_KEY_ROTATION_SECS: u64 = 60;
/// The option that turns a network's egress off (`-o egress=false`) or,
/// redundantly, on (`-o egress=true`).
pub const EGRESS_OPTION: &str = "egress";
/// The option that spreads a bridge network's traffic over every datapath
/// worker (`-o spread`, or `-o spread=true`; `=false` is the default).
pub const SPREAD_OPTION: &str = "spread";
/// The option that limits how many frames a second each endpoint or uplink
/// port of the network may flood (`-o flood-limit=1000`; storm control).
pub const FLOOD_LIMIT_OPTION: &str = "flood-limit";

/// Docker's `-o` name for a network's MTU (`--mtu`).
pub const DOCKER_MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// Docker's `-o` name for an overlay's VNI (one per network here).
pub const DOCKER_VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// Docker's bridge option for inter-container communication: `false`
/// isolates the network's endpoints from one another (each still reaches
/// its gateway, the outside world and the network's uplinks), as a kernel
/// bridge's `isolated` ports.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// Docker's bridge option for masquerading egress; only `true` can be
/// honoured (the switch reaches the outside through its translator alone).
pub const MASQUERADE_OPTION: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// Docker's bridge option for the host address that the network's published
/// ports are bound to when their `-p` names none (`127.0.0.1` keeps them
/// off every other address).
pub const HOST_BINDING_OPTION: &str = "com.docker.network.bridge.host_binding_ipv4";

/// Docker's option for the name of the network's interfaces in sandboxes:
/// `PREFIX` then a number (`eth` by default: `eth0`, `eth1`, …).
pub(crate) const IFACE_PREFIX_OPTION: &str = "com.docker.network.container_iface_prefix";

/// The interface name prefix of a network without [`IFACE_PREFIX_OPTION`].
pub(crate) const DEFAULT_IFACE_PREFIX: &str = "eth";

/// The longest [`IFACE_PREFIX_OPTION`]: with three digits after it, a name
/// still fits Linux's 15 characters.
pub(crate) const MAX_IFACE_PREFIX_LEN: usize = 12;

/// Docker bridge options whose meaning the switch does not carry out, each
/// with what to do instead: refused rather than stored and ignored, so that
/// nobody believes they took effect.
pub(crate) const UNSUPPORTED_DOCKER_OPTIONS: [(&str, &str); 2] = [
    ("com.docker.network.bridge.inhibit_ipv4", "the gateway's address is the switch's own: leave --gateway to it"),
    ("com.docker.network.bridge.trusted_host_interfaces", "hosts reach sandboxes through published ports only"),
];

/// Docker's gateway modes (`com.docker.network.bridge.gateway_mode_ipv4`,
/// `…_ipv6`): only translation can be carried out (`nat`; `nat-unprotected`
/// is the same here, the switch having no route into a network).
pub(crate) const GATEWAY_MODE_OPTIONS: [&str; 2] =
    ["com.docker.network.bridge.gateway_mode_ipv4", "com.docker.network.bridge.gateway_mode_ipv6"];

/// `mappings` as they are published on `network` (see [`bound_one`]).
pub fn bound(network: Option<&Network>, mappings: &[PortMapping]) -> Vec<PortMapping> {
    mappings.iter().map(|m| bound_one(network, *m)).collect()
}

/// `mapping` as it is published on `network` (see [`Network::bind`]); as
/// given, a request still, when the network is unknown (the request then
/// fails on it, or the model binds it where it decides).
pub fn bound_one(network: Option<&Network>, mapping: PortMapping) -> PortMapping {
    network.map_or(mapping, |n| n.bind(mapping))
}

/// `mappings` as requests that name the address they will be published on
/// (see [`bound`] and [`Network::unbind`]), for a caller that chooses host
/// ports where they will listen before the model publishes them: binding
/// them again changes nothing.
pub fn pinned(network: Option<&Network>, mappings: &[PortMapping]) -> Vec<PortMapping> {
    unbound(network, &bound(network, mappings))
}

/// The requests that publish `published` (as published on `network`)
/// again (see [`Network::unbind`]); as given when the network is unknown.
pub(crate) fn unbound(network: Option<&Network>, published: &[PortMapping]) -> Vec<PortMapping> {
    published.iter().map(|m| network.map_or(*m, |n| n.unbind(*m))).collect()
}

/// A boolean option's value as Docker reads it (Go's `strconv.ParseBool`):
/// `1`, `t`, `T`, `TRUE`, `true`, `True` and their `false` counterparts.
pub(crate) fn docker_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl Network {
    /// The host address the network's published ports are bound to when
    /// their `-p` names none ([`HOST_BINDING_OPTION`]), if set.
    /// A bridge network's only (a network another node or an older daemon
    /// recorded with it on another driver ignores it, as `network create`
    /// refuses it there).
    pub fn host_binding(&self) -> Option<IpAddr> {
        if self.driver != Driver::Bridge {
            return None;
        }
        self.options.get(HOST_BINDING_OPTION)?.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }

    /// `mapping` as it is published on this network: bound to the
    /// network's [`Network::host_binding`] when it names no host address
    /// (`0.0.0.0`, every address, the default, unless the request named it:
    /// [`PortMapping::host_ip_named`]), as given otherwise. The result names
    /// nothing more: the request's flag is cleared.
    pub fn bind(&self, mapping: PortMapping) -> PortMapping {
        let published = PortMapping { host_ip_named: false, ..mapping };
        match self.host_binding() {
            Some(host_ip) if !mapping.host_ip_named && mapping.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => {
                PortMapping { host_ip, ..published }
            }
            _ => published,
        }
    }

    /// The request that publishes `mapping` (as published here) again:
    /// [`Network::bind`] gives the mapping back. Only a `0.0.0.0` on a
    /// network with a host binding is named
    /// ([`PortMapping::host_ip_named`]); any other address is kept anyway.
    pub fn unbind(&self, mapping: PortMapping) -> PortMapping {
        let unspecified = mapping.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        PortMapping { host_ip_named: unspecified && self.host_binding().is_some(), ..mapping }
    }

    /// Whether the network's endpoints may talk to one another (Docker's
    /// `enable_icc`, on unless `-o com.docker.network.bridge.enable_icc=false`;
    /// a bridge network's option only, as for [`Network::host_binding`]).
    pub fn inter_container(&self) -> bool {
        self.driver != Driver::Bridge || self.options.get(ICC_OPTION).and_then(|v| docker_bool(v)) != Some(false)
    }

    /// Options this network holds that `network create` now refuses (a
    /// network an older daemon recorded): they have no effect, which the
    /// daemon says at start.
    pub fn ignored_options(&self) -> Vec<&str> {
        let mut ignored: Vec<&str> = UNSUPPORTED_DOCKER_OPTIONS
            .iter()
            .map(|(option, _)| *option)
            .filter(|option| self.options.contains_key(*option))
            .collect();
        ignored.extend(
            GATEWAY_MODE_OPTIONS
                .into_iter()
                .filter(|o| self.options.get(*o).is_some_and(|v| !matches!(v.as_str(), "nat" | "nat-unprotected"))),
        );
        if self.options.get(MASQUERADE_OPTION).is_some_and(|v| docker_bool(v) != Some(true)) {
            ignored.push(MASQUERADE_OPTION);
        }
        // An older daemon's network: it kept the option and named the
        // interfaces `eth…`, as this one still does for it.
        if self.iface_prefix.is_none() && self.options.contains_key(IFACE_PREFIX_OPTION) {
            ignored.push(IFACE_PREFIX_OPTION);
        }
        if self.options.contains_key(HOST_BINDING_OPTION) && self.host_binding().is_none() {
            ignored.push(HOST_BINDING_OPTION);
        }
        ignored
    }

    /// Whether sandboxes on this network may reach addresses outside the
    /// switch's networks through its gateway (the daemon's own sockets): on
    /// for bridge and overlay networks, off for `--internal` ones and with
    /// `-o egress=false`.
    pub fn egress(&self) -> bool {
        self.driver.is_switched() && !self.internal && self.options.get(EGRESS_OPTION).is_none_or(|v| v != "false")
    }

    /// Whether the network's traffic is spread over every datapath worker
    /// (`-o spread`): bridge networks and overlays, plain or encrypted.
    pub fn spread(&self) -> bool {
        matches!(self.driver, Driver::Bridge | Driver::Overlay)
            && self.options.get(SPREAD_OPTION).is_some_and(|v| v != "false")
    }

    /// The prefix of this network's interface names in sandboxes (Docker's
    /// `-o com.docker.network.container_iface_prefix=PREFIX`; `eth`).
    pub fn iface_prefix(&self) -> &str {
        self.iface_prefix.as_deref().unwrap_or(DEFAULT_IFACE_PREFIX)
    }

    /// Storm control (`-o flood-limit=N`): the broadcast, multicast and
    /// unknown-unicast frames a second each endpoint or uplink port may
    /// flood, or `None` for no limit (the default, as a kernel bridge).
    pub fn flood_limit(&self) -> Option<u32> {
        self.options.get(FLOOD_LIMIT_OPTION)?.parse().ok().filter(|&n| n > 0)
    }

    /// The automatic key rotation period of an encrypted overlay.
    pub fn key_rotation(&self) -> Option<std::num::NonZeroU64> {
        let secs = self.options.get(KEY_ROTATION_OPTION)?.parse().ok()?;
        self.is_encrypted().then(|| std::num::NonZeroU64::new(secs)).flatten()
    }

    /// The cipher of an encrypted overlay (`-o cipher`, checked when the
    /// network was created): ChaCha20-Poly1305 unless given.
    pub fn cipher(&self) -> crypto::Cipher {
        self.options.get(CIPHER_OPTION).and_then(|c| c.parse().ok()).unwrap_or_default()
    }

    /// True for an overlay created with `-o encrypted`.
    pub fn is_encrypted(&self) -> bool {
        self.driver == Driver::Overlay && self.options.contains_key(ENCRYPTED_OPTION)
    }

    /// The IPv6 gateway with the prefix length of `subnet6`, for networks
    /// with IPv6.
    pub fn gateway6_net(&self) -> Option<Ipv6Net> {
        Ipv6Net::new(self.gateway6?, self.subnet6?.prefix_len()).ok()
    }

    /// The IPv4 auxiliary addresses (`--aux-address`).
    pub fn aux_addresses4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.aux_addresses.values().filter_map(|ip| match ip {
            IpAddr::V4(ip) => Some(*ip),
            IpAddr::V6(_) => None,
        })
    }

    /// The IPv6 auxiliary addresses (`--aux-address`).
    pub fn aux_addresses6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.aux_addresses.values().filter_map(|ip| match ip {
            IpAddr::V6(ip) => Some(*ip),
            IpAddr::V4(_) => None,
        })
    }

    /// Whether this is one of the predefined `bridge`, `host`, `none` networks.
    pub fn is_predefined(&self) -> bool {
        super::state::PREDEFINED.contains(&self.name.as_str())
    }
}

/// A sandbox: one network namespace that endpoints are placed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Unique name.
    pub name: String,
    /// Path of the namespace handle (`/run/netns/<name>` unless attached to an existing one).
    pub netns_path: PathBuf,
    /// Whether vswitch created the namespace (and so deletes it on removal).
    pub owns_netns: bool,
    /// Name servers for the sandbox's resolv.conf.
    pub dns: Vec<IpAddr>,
    /// Search domains for the sandbox's resolv.conf.
    pub dns_search: Vec<String>,
    /// Options for the sandbox's resolv.conf (`--dns-option`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// Extra lines for the sandbox's hosts file (`--add-host`), each
    /// `NAME:IP` (see [`validate::extra_host`](super::validate)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
}

/// An endpoint: the attachment of one sandbox to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 lowercase hex digits, random.
    pub id: String,
    /// The network's id.
    pub network_id: String,
    /// The sandbox's name.
    pub sandbox: String,
    /// Interface name inside the sandbox: `eth<n>`, lowest free `n` in that sandbox.
    pub ifname_in_sandbox: String,
    /// Name of the persistent TAP device: `vsw` + the first 8 hex digits of `id`.
    pub host_tap_name: String,
    /// The interface's MAC address.
    pub mac: MacAddr,
    /// The interface's IPv4 address; `None` on an IPv6-only network (state
    /// files from before IPv6 always hold one).
    pub ipv4: Option<Ipv4Addr>,
    /// Prefix length of the network's IPv4 subnet (0 without `ipv4`).
    pub prefix_len: u8,
    /// The interface's IPv6 address, on networks with IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Prefix length of the network's IPv6 subnet (64, the usual one, when
    /// absent from the state file).
    #[serde(default = "default_prefix_len6", skip_serializing_if = "is_default_prefix_len6")]
    pub prefix_len6: u8,
    /// Extra DNS names for this endpoint on the network.
    pub aliases: Vec<String>,
    /// The sandbox's default route goes via this network's gateway: the
    /// sandbox's non-internal endpoint of the highest `gw_priority` (ties:
    /// the one that had it, else the earlier interface).
    pub is_default_gateway_network: bool,
    /// Docker's gateway priority (`--gw-priority`, default 0): of the
    /// sandbox's endpoints that route a family, the highest carries its
    /// default route.
    #[serde(default, skip_serializing_if = "is_zero_priority")]
    pub gw_priority: i64,
    /// Small dense integer, unique among endpoints: the datapath's port id.
    /// Reused after the endpoint is removed.
    pub port_index: u32,
    /// Ports published to this endpoint (`--publish`), one entry per port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PortMapping>,
    /// The service this endpoint is a replica of on its network (`--service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Creation order: larger than every endpoint's created before it (0 in
    /// state files that predate it). A service's replicas are taken in this
    /// order.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub serial: u64,
    /// Link impairment of the endpoint's egress (`port impair`): what frames
    /// toward the sandbox go through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ctl::Impairment>,
    /// How the endpoint is backed: a TAP (the default), or a veth pair whose
    /// host end (`host_tap_name`) is switched through an AF_XDP socket.
    #[serde(default, skip_serializing_if = "PortType::is_tap")]
    pub port_type: PortType,
}

impl Endpoint {
    /// The IPv4 address with the subnet's prefix length, if it has one.
    pub fn ipv4_net(&self) -> Option<Ipv4Net> {
        Ipv4Net::new(self.ipv4?, self.prefix_len).ok()
    }

    /// The IPv6 address with the subnet's prefix length, if it has one.
    pub fn ipv6_net(&self) -> Option<Ipv6Net> {
        Ipv6Net::new(self.ipv6?, self.prefix_len6).ok()
    }

    /// Its IPv4 address, or on an IPv6-only network its IPv6 one.
    pub fn primary_address(&self) -> IpAddr {
        match (self.ipv4, self.ipv6) {
            (Some(v4), _) => v4.into(),
            (None, Some(v6)) => v6.into(),
            // Not an endpoint the model accepts: every one has an address.
            (None, None) => Ipv4Addr::UNSPECIFIED.into(),
        }
    }

    /// Its addresses for messages: `10.0.0.2`, `fd00::2` or
    /// `10.0.0.2, fd00::2`.
    pub fn addresses(&self) -> String {
        let v4 = self.ipv4.map(IpAddr::V4);
        let v6 = self.ipv6.map(IpAddr::V6);
        v4.into_iter().chain(v6).map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// An uplink: a host interface (in the daemon's namespace) attached to a
/// network as a bridge port (`port add`, or a macvlan network's parent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uplink {
    /// The host interface.
    pub interface: String,
    /// The network's id.
    pub network_id: String,
    /// `raw` (an `AF_PACKET` socket) or `afxdp`.
    pub port_type: PortType,
    /// Small dense integer shared with the endpoints' port indexes: the
    /// datapath's port id.
    pub port_index: u32,
    /// Attached although it carries the VTEP address or a default route.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
}

/// The macvlan driver's option naming its uplink interface.
pub const PARENT_OPTION: &str = "parent";
/// The macvlan driver's option choosing its uplink's port type.
pub const PORT_TYPE_OPTION: &str = "port-type";

fn is_zero(n: &u64) -> bool {
    *n == 0
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

/// The prefix length of an IPv6 subnet when the state file does not say.
const DEFAULT_PREFIX_LEN6: u8 = 64;

fn default_prefix_len6() -> u8 {
    DEFAULT_PREFIX_LEN6
}

fn is_default_prefix_len6(n: &u8) -> bool {
    *n == DEFAULT_PREFIX_LEN6
}

/// A service: host ports whose connections are balanced over its replicas,
/// the endpoints on its network connected with `--service NAME`.
///
/// A `host` service balances over this node's replicas; an `ingress` one
/// (cluster mode, from the store's service record) over every replica in
/// the cluster, other nodes' ones through this node's mesh address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Unique name.
    pub name: String,
    /// The network its replicas are reached on.
    pub network_id: String,
    /// Published port → the replicas' target port, one entry per port.
    pub publish: Vec<PortMapping>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// `host` (this node's replicas) or `ingress` (the cluster's routing
    /// mesh; the store holds the service).
    #[serde(default)]
    pub mode: ctl::proto::ServiceMode,
}

/// A static (never-aging) forwarding entry: frames for `mac` on `network` go to `port_name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StaticFdbEntry {
    /// The network's id.
    pub network_id: String,
    /// The destination MAC (unicast).
    pub mac: MacAddr,
    /// The TAP name of an endpoint on that network, or the tunnel port
    /// (`vx:ADDR:PORT`) of a static peer serving it.
    pub port_name: String,
}

/// Bridge-wide tunables (`vswitchctl set <key> <value>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Seconds a learned FDB entry lives without traffic (802.1D ageing time).
    pub aging_time_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self { aging_time_secs: 300 }
    }
}

/// A `network create` request: the wire type itself, so that the ctl request and the
/// model's input are one list of fields.
pub use ctl::proto::CreateNetwork;

/// A sandbox create request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateSandbox {
    /// Name of the new sandbox.
    pub name: String,
    /// Name servers.
    pub dns: Vec<IpAddr>,
    /// Search domains.
    pub dns_search: Vec<String>,
    /// resolv.conf options (`ndots:2`, `rotate`, …).
    pub dns_options: Vec<String>,
    /// Hosts file entries, `NAME:IP` or `NAME=IP` (`--add-host`).
    pub extra_hosts: Vec<String>,
    /// An existing namespace to attach to; vswitch creates `/run/netns/<name>` when `None`.
    pub netns_path: Option<PathBuf>,
}

impl CreateSandbox {
    /// A request with the given name and every other field defaulted.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }
}

/// A `network connect` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connect {
    /// Network name, id or unique id prefix.
    pub network: String,
    /// Sandbox name.
    pub sandbox: String,
    /// `--ip`; the lowest free host address when `None`.
    pub ipv4: Option<Ipv4Addr>,
    /// `--ip6`; the lowest free IPv6 address (`::2` up) when `None`.
    pub ipv6: Option<Ipv6Addr>,
    /// `--alias` names.
    pub aliases: Vec<String>,
    /// `--mac-address`; `02:42` + the IPv4 bytes (on an IPv6-only network:
    /// the IPv6 address's last four bytes) when `None`.
    pub mac: Option<MacAddr>,
    /// Skip the `attachable` check on overlay networks (service replicas).
    pub exempt_from_attachable: bool,
    /// `--publish`: ports to publish to the new endpoint.
    pub publish: Vec<PortMapping>,
    /// `--service`: make the endpoint a replica of this service.
    pub service: Option<String>,
    /// `--port-type`: TAP (default) or AF_XDP.
    pub port_type: PortType,
    /// `--gw-priority`: the endpoint's gateway priority (see
    /// [`Endpoint::gw_priority`]).
    pub gw_priority: i64,
    /// The interface's name in the sandbox (Docker's
    /// `com.docker.network.endpoint.ifname` driver option, compose's
    /// `interface_name`); the network's prefix and the lowest free number
    /// when `None`.
    pub ifname: Option<String>,
    /// Names an automatic interface name must not be: those the sandbox's
    /// other attachments of a stack file ask for, connected after it.
    pub reserved_ifnames: Vec<String>,
    /// Addresses automatic addresses must not be: those other nodes of a
    /// cluster hold (and ones already found taken). Given addresses are not
    /// checked against it (the cluster store refuses them if taken).
    pub exclude: std::collections::BTreeSet<IpAddr>,
}

impl Connect {
    /// A request connecting `sandbox` to `network` with every other field defaulted.
    pub fn new(network: impl Into<String>, sandbox: impl Into<String>) -> Self {
        Self { network: network.into(), sandbox: sandbox.into(), ..Self::default() }
    }
}

/// What a successful `disconnect` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// The removed endpoint: tear down its TAP.
    pub endpoint: Endpoint,
    /// Static FDB entries that pointed at the endpoint's TAP and were removed with it.
    pub removed_fdb: Vec<StaticFdbEntry>,
    /// Another endpoint of the sandbox that now carries the default route
    /// (set when the removed endpoint carried it and another candidate exists).
    pub new_default_gateway: Option<Endpoint>,
}

/// What a successful `remove_sandbox` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedSandbox {
    /// The removed sandbox: delete its namespace if `owns_netns`.
    pub sandbox: Sandbox,
    /// Its endpoints, all removed: tear down their TAPs.
    pub endpoints: Vec<Endpoint>,
    /// Static FDB entries that pointed at those endpoints and were removed.
    pub removed_fdb: Vec<StaticFdbEntry>,
}

/// A static VXLAN peer: a remote VTEP that receives this switch's
/// broadcast, unknown-unicast and multicast frames for the overlay networks
/// it serves (head-end replication), like the kernel's
/// `bridge fdb append 00:00:00:00:00:00 dst ADDR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The remote VTEP's underlay address and UDP port.
    pub addr: std::net::SocketAddr,
    /// Ids of the overlay networks it serves; empty means every overlay
    /// network, present and future.
    pub network_ids: Vec<String>,
}

/// Whether a gateway priority is the default, 0 (left out of the state file).
fn is_zero_priority(priority: &i64) -> bool {
    *priority == 0
}
