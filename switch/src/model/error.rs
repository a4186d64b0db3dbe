//! Why the model refused a request. Each message names the rule that failed
//! and the object that broke it; it is shown to the user as is.

use std::net::IpAddr;
use std::path::PathBuf;

use ctl::proto::Driver;
use ctl::{IpNet, MacAddr};

/// A refused model change. A refused request leaves the model unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// invalid {kind} name {name:?}: {reason}
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "network" or "sandbox".
        kind: &'static str,
        /// The offending name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// network with name {0} already exists
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// network {0} not found
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// network id prefix {prefix} is ambiguous: matches {matches}
    #[error("network id prefix {prefix} is ambiguous: matches {matches}")]
    AmbiguousNetwork {
        /// The prefix given.
        prefix: String,
        /// Names of the networks it matches, comma separated.
        matches: String,
    },
    /// only one instance of "{0}" network is allowed
    #[error("only one instance of \"{0}\" network is allowed")]
    SingletonDriver(Driver),
    /// subnet {subnet} is not a network address (host bits are set): did you mean {suggestion}?
    #[error("subnet {subnet} is not a network address (host bits are set): did you mean {suggestion}?")]
    SubnetHostBitsSet {
        /// The subnet given.
        subnet: IpNet,
        /// The same prefix with host bits cleared.
        suggestion: IpNet,
    },
    /// subnet {subnet} is too small: the prefix length must be at most {max} to leave room for a gateway and hosts
    #[error(
        "subnet {subnet} is too small: the prefix length must be at most {max} to leave room for a gateway and hosts"
    )]
    SubnetTooSmall {
        /// The subnet given.
        subnet: IpNet,
        /// The longest prefix accepted for its family (30 for IPv4, 126 for IPv6).
        max: u8,
    },
    /// subnet {subnet} overlaps the reserved range {reserved} ({what})
    #[error("subnet {subnet} overlaps the reserved range {reserved} ({what})")]
    SubnetReserved {
        /// The subnet given.
        subnet: IpNet,
        /// The reserved range it touches.
        reserved: IpNet,
        /// What the range is for.
        what: &'static str,
    },
    /// subnet {subnet} overlaps network {other} ({other_subnet})
    #[error("subnet {subnet} overlaps network {other} ({other_subnet})")]
    SubnetOverlap {
        /// The subnet given.
        subnet: IpNet,
        /// Name of the network already using an overlapping subnet.
        other: String,
        /// That network's subnet.
        other_subnet: IpNet,
    },
    /// all predefined address pools have been fully subnetted: pass --subnet
    #[error("all predefined address pools have been fully subnetted: pass --subnet")]
    PoolsExhausted,
    /// --{option} is not supported by the {driver} driver
    #[error("--{option} is not supported by the {driver} driver")]
    OptionNotSupported {
        /// The option given.
        option: &'static str,
        /// The network's driver.
        driver: Driver,
    },
    /// no free IPv6 unique local /64 found: pass an IPv6 --subnet
    #[error("no free IPv6 unique local /64 found: pass an IPv6 --subnet")]
    Ipv6PoolExhausted,
    /// --gateway requires --subnet
    #[error("--gateway requires --subnet")]
    GatewayWithoutSubnet,
    /// --ip-range requires --subnet
    #[error("--ip-range requires --subnet")]
    IpRangeWithoutSubnet,
    /// an IPv6 --gateway requires an IPv6 --subnet
    #[error("an IPv6 --gateway requires an IPv6 --subnet")]
    Gateway6WithoutSubnet6,
    /// an IPv6 --ip-range requires an IPv6 --subnet
    #[error("an IPv6 --ip-range requires an IPv6 --subnet")]
    IpRange6WithoutSubnet6,
    /// a network needs an address family: --ipv4=false requires --ipv6
    #[error("a network needs an address family: --ipv4=false requires --ipv6")]
    NoAddressFamily,
    /// an IPv6 --{0} requires --ipv6
    #[error("an IPv6 --{0} requires --ipv6")]
    Ipv6NotEnabled(&'static str),
    /// an IPv4 --{0} cannot be used with --ipv4=false
    #[error("an IPv4 --{0} cannot be used with --ipv4=false")]
    Ipv4Disabled(&'static str),
    /// network {0} has no IPv6 (it was not created with --ipv6): --ip6 cannot be used
    #[error("network {0} has no IPv6 (it was not created with --ipv6): --ip6 cannot be used")]
    NoIpv6OnNetwork(String),
    /// network {0} is IPv6-only: --ip cannot be used
    #[error("network {0} is IPv6-only: --ip cannot be used")]
    NoIpv4OnNetwork(String),
    /// --{option} {value} is not an {family} address
    #[error("--{option} {value} is not an {family} address")]
    WrongFamily {
        /// The option (`ip`, `ip6`).
        option: &'static str,
        /// The value given.
        value: IpAddr,
        /// The family it must be: "IPv4" or "IPv6".
        family: &'static str,
    },
    /// ip range {range} has host bits set; did you mean {suggestion}?
    #[error("ip range {range} has host bits set; did you mean {suggestion}?")]
    IpRangeHostBitsSet {
        /// The range given.
        range: IpNet,
        /// The same prefix with the host bits cleared.
        suggestion: IpNet,
    },
    /// ip range {range} holds no address to give out in subnet {subnet} (only the gateway {gateway} or the subnet's network or broadcast address)
    #[error(
        "ip range {range} holds no address to give out in subnet {subnet} (only the gateway {gateway} or the \
         subnet's network or broadcast address)"
    )]
    IpRangeEmpty {
        /// The range given.
        range: IpNet,
        /// The network's subnet.
        subnet: IpNet,
        /// The network's gateway.
        gateway: IpAddr,
    },
    /// ip range {range} is not inside subnet {subnet}
    #[error("ip range {range} is not inside subnet {subnet}")]
    IpRangeOutsideSubnet {
        /// The range given.
        range: IpNet,
        /// The network's subnet.
        subnet: IpNet,
    },
    /// gateway {gateway} is not inside subnet {subnet}
    #[error("gateway {gateway} is not inside subnet {subnet}")]
    GatewayOutsideSubnet {
        /// The gateway given.
        gateway: IpAddr,
        /// The network's subnet.
        subnet: IpNet,
    },
    /// gateway {gateway} is the {what} of subnet {subnet}
    #[error("gateway {gateway} is the {what} of subnet {subnet}")]
    GatewayReserved {
        /// The gateway given.
        gateway: IpAddr,
        /// "network address", "broadcast address" or (IPv6) "subnet-router anycast address".
        what: &'static str,
        /// The network's subnet.
        subnet: IpNet,
    },
    /// mtu {0} is out of range: must be 68..=65535
    #[error("mtu {0} is out of range: must be 68..=65535")]
    MtuOutOfRange(u32),
    /// vni {0} is out of range: must be 1..=16777215
    #[error("vni {0} is out of range: must be 1..=16777215")]
    VniOutOfRange(u32),
    /// vni {vni} is already used by network {network}
    #[error("vni {vni} is already used by network {network}")]
    VniInUse {
        /// The VNI given.
        vni: u32,
        /// The network using it.
        network: String,
    },
    /// no free vni left in 4096..=16777215
    #[error("no free vni left in 4096..=16777215")]
    VnisExhausted,
    /// {0} is a pre-defined network and cannot be removed
    #[error("{0} is a pre-defined network and cannot be removed")]
    PredefinedNetwork(String),
    /// network {network} has active endpoints ({endpoints}): disconnect them first
    #[error("network {network} has active endpoints ({endpoints}): disconnect them first")]
    NetworkInUse {
        /// The network's name.
        network: String,
        /// The attached endpoints, as `sandbox/ifname ip`, comma separated.
        endpoints: String,
    },
    /// sandbox {0} already exists
    #[error("sandbox {0} already exists")]
    SandboxExists(String),
    /// sandbox {0} not found
    #[error("sandbox {0} not found")]
    NoSuchSandbox(String),
    /// netns path {0} must be absolute
    #[error("netns path {} must be absolute", .0.display())]
    NetnsPathNotAbsolute(PathBuf),
    /// netns path {path} is already used by sandbox {sandbox}
    #[error("netns path {} is already used by sandbox {sandbox}", path.display())]
    NetnsPathInUse {
        /// The path.
        path: PathBuf,
        /// The sandbox using it.
        sandbox: String,
    },
    /// invalid {what} {value:?}: must be a DNS name (letters, digits, '-' and '.', labels of 1..=63 characters, at most 253 in all)
    #[error(
        "invalid {what} {value:?}: must be a DNS name (letters, digits, '-' and '.', labels of 1..=63 characters, at most 253 in all)"
    )]
    InvalidDnsName {
        /// "dns search domain" or "alias".
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// invalid dns option {0:?}: must be a resolv.conf option such as ndots:2, timeout:3, rotate or edns0 (letters, digits, '-', '_', '.' and one ':', at most 64 characters)
    #[error(
        "invalid dns option {0:?}: must be a resolv.conf option such as ndots:2, timeout:3, rotate or edns0 (letters, digits, '-', '_', '.' and one ':', at most 64 characters)"
    )]
    InvalidDnsOption(String),
    /// invalid extra host {value:?}: {reason}
    #[error("invalid extra host {value:?}: {reason}")]
    InvalidExtraHost {
        /// The entry given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// option {option}={value:?} is not supported: {instead}
    #[error("option {option}={value:?} is not supported: {instead}")]
    UnsupportedOption {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What to do instead.
        instead: &'static str,
    },
    /// dns options too long: {len} bytes on the options line, at most {max} (resolvers ignore longer lines)
    #[error("dns options too long: {len} bytes on the options line, at most {max} (resolvers ignore longer lines)")]
    DnsOptionsTooLong {
        /// The line's length the options would make.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// container cannot be connected to network host: it is the host's own network stack, not a switched network; run the workload in the host network namespace instead
    #[error(
        "container cannot be connected to network host: it is the host's own network stack, not a switched network; run the workload in the host network namespace instead"
    )]
    HostNotConnectable,
    /// container cannot be connected to network none: a sandbox on none has only loopback, which is what a sandbox with no connections already has
    #[error(
        "container cannot be connected to network none: a sandbox on none has only loopback, which is what a sandbox with no connections already has"
    )]
    NoneNotConnectable,
    /// network {0} is a configuration-only network: nothing attaches to it; create a network with --config-from {0} and use that
    #[error(
        "network {0} is a configuration-only network: nothing attaches to it; create a network with --config-from {0} and use that"
    )]
    ConfigOnly(String),
    /// configuration network {network} is in use by {users}
    #[error("configuration network {network} is in use by {users}: remove them first")]
    ConfigNetworkInUse {
        /// The configuration-only network.
        network: String,
        /// The networks created from it, comma separated.
        users: String,
    },
    /// network {0} is not a configuration-only network (create one with --config-only)
    #[error("network {0} is not a configuration-only network (create one with --config-only)")]
    NotAConfigNetwork(String),
    /// configuration network {0} not found
    #[error("configuration network {0} not found")]
    NoSuchConfigNetwork(String),
    /// a configuration network takes no {0}: that belongs to the networks created from it
    #[error("a configuration network takes no {0}: that belongs to the networks created from it")]
    ConfigOnlyField(&'static str),
    /// {0} cannot be given with --config-from: the configuration network holds it
    #[error("{0} cannot be given with --config-from: the configuration network holds it")]
    ConfigFromField(&'static str),
    /// network {0} is not attachable: create it with --attachable
    #[error("network {0} is not attachable: create it with --attachable")]
    NotAttachable(String),
    /// sandbox {sandbox} is already connected to network {network}
    #[error("sandbox {sandbox} is already connected to network {network}")]
    AlreadyConnected {
        /// The sandbox.
        sandbox: String,
        /// The network.
        network: String,
    },
    /// sandbox {sandbox} is not connected to network {network}
    #[error("sandbox {sandbox} is not connected to network {network}")]
    NotConnected {
        /// The sandbox.
        sandbox: String,
        /// The network.
        network: String,
    },
    /// address {ip} is not inside subnet {subnet} of network {network}
    #[error("address {ip} is not inside subnet {subnet} of network {network}")]
    AddressOutsideSubnet {
        /// The address given.
        ip: IpAddr,
        /// The network's subnet.
        subnet: IpNet,
        /// The network.
        network: String,
    },
    /// address {ip} is the {what} of network {network}
    #[error("address {ip} is the {what} of network {network}")]
    AddressReserved {
        /// The address given.
        ip: IpAddr,
        /// "gateway", "network address", "broadcast address" or (IPv6)
        /// "subnet-router anycast address".
        what: &'static str,
        /// The network.
        network: String,
    },
    /// address {ip} is reserved as auxiliary address {name} of network {network}
    #[error("address {ip} is reserved as auxiliary address {name:?} of network {network} (--aux-address)")]
    AuxAddressTaken {
        /// The address given.
        ip: IpAddr,
        /// The auxiliary address's name.
        name: String,
        /// The network.
        network: String,
    },
    /// --aux-address {name}={ip} is not usable: {reason}
    #[error("--aux-address {name}={ip}: {reason}")]
    BadAuxAddress {
        /// The name given.
        name: String,
        /// The address given.
        ip: IpAddr,
        /// Why it is refused.
        reason: String,
    },
    /// address {ip} is already in use on network {network} by sandbox {sandbox} (endpoint {endpoint})
    #[error("address {ip} is already in use on network {network} by sandbox {sandbox} (endpoint {endpoint})")]
    AddressInUse {
        /// The address.
        ip: IpAddr,
        /// The network.
        network: String,
        /// The sandbox holding it.
        sandbox: String,
        /// Short id of the endpoint holding it.
        endpoint: String,
    },
    /// no free address left in subnet {subnet} of network {network}
    #[error("no free address left in subnet {subnet} of network {network}")]
    AddressesExhausted {
        /// The network's subnet.
        subnet: IpNet,
        /// The network.
        network: String,
    },
    /// interface name {name} is already used in sandbox {sandbox}
    #[error("interface name {name} is already used in sandbox {sandbox}")]
    InterfaceNameInUse {
        /// The name asked for.
        name: String,
        /// The sandbox.
        sandbox: String,
    },
    /// no interface name left in sandbox {sandbox} for prefix {prefix}
    #[error(
        "no interface name left in sandbox {sandbox} after prefix {prefix:?}: the names would be longer than \
         Linux's 15 characters"
    )]
    InterfaceNamesExhausted {
        /// The sandbox.
        sandbox: String,
        /// The network's interface name prefix.
        prefix: String,
    },
    /// no free address left in ip range {range} of network {network}
    #[error("no free address left in ip range {range} of network {network}")]
    IpRangeExhausted {
        /// The network's `--ip-range`.
        range: IpNet,
        /// The network.
        network: String,
    },
    /// invalid MAC address {mac}: {reason}
    #[error("invalid MAC address {mac}: {reason}")]
    InvalidMac {
        /// The address given.
        mac: MacAddr,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// invalid -o {option}={value}: {reason}
    #[error("invalid -o {option}={value}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// network {0} is not an encrypted overlay: create it with -d overlay -o encrypted
    #[error("network {0} is not an encrypted overlay: create it with -d overlay -o encrypted")]
    NotEncrypted(String),
    /// peer {0} already exists
    #[error("peer {0} already exists")]
    PeerExists(std::net::SocketAddr),
    /// peer {0} not found
    #[error("peer {0} not found")]
    NoSuchPeer(std::net::SocketAddr),
    /// invalid peer address {addr}: {reason}
    #[error("invalid peer address {addr}: {reason}")]
    InvalidPeer {
        /// The address given.
        addr: std::net::SocketAddr,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// network {0} is not an overlay network: peers carry overlay networks only
    #[error("network {0} is not an overlay network: peers carry overlay networks only")]
    NotOverlay(String),
    /// MAC address {mac} is already in use on network {network} by sandbox {sandbox}
    #[error("MAC address {mac} is already in use on network {network} by sandbox {sandbox}")]
    MacInUse {
        /// The address.
        mac: MacAddr,
        /// The network.
        network: String,
        /// The sandbox holding it.
        sandbox: String,
    },
    /// port {port} is not an endpoint of network {network}
    #[error("port {port} is not an endpoint of network {network}")]
    NoSuchPort {
        /// The port (TAP) name given.
        port: String,
        /// The network.
        network: String,
    },
    /// {port} is not a tunnel port of network {network}: its peer must be a static peer serving the network
    #[error(
        "{port} is not a tunnel port of network {network}: its peer must be a static peer serving the network \
         (vswitchctl peer add ADDR[:PORT] [--network NET])"
    )]
    NoSuchTunnel {
        /// The port name given.
        port: String,
        /// The network.
        network: String,
    },
    /// static FDB entry for {mac} on network {network} already exists (port {port})
    #[error("static FDB entry for {mac} on network {network} already exists (port {port})")]
    FdbEntryExists {
        /// The MAC.
        mac: MacAddr,
        /// The network.
        network: String,
        /// The port of the existing entry.
        port: String,
    },
    /// no static FDB entry for {mac} on network {network}
    #[error("no static FDB entry for {mac} on network {network}")]
    NoSuchFdbEntry {
        /// The MAC.
        mac: MacAddr,
        /// The network.
        network: String,
    },
    /// unknown config key {0:?}: the only key is aging-time
    #[error("unknown config key {0:?}: the only key is aging-time")]
    UnknownConfigKey(String),
    /// invalid value {value:?} for {key}: {reason}
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidConfigValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// invalid port mapping {0}: ports must be from 1 to 65535
    #[error("invalid port mapping {0}: ports must be from 1 to 65535")]
    InvalidPortMapping(String),
    /// network {0} is --internal: it has no route to the host, so nothing can be published on it
    #[error("network {0} is --internal: it has no route to the host, so nothing can be published on it")]
    PublishOnInternal(String),
    /// no ports given: publish at least one
    #[error("no ports given: publish at least one")]
    NoPorts,
    /// host port {port} is already published by {owner}
    #[error("host port {port} is already published by {owner}")]
    PortPublished {
        /// The host side, e.g. `8080/tcp` or `127.0.0.1:8080/tcp`.
        port: String,
        /// Who holds it, e.g. `sandbox web (network app)` or `service api`.
        owner: String,
    },
    /// host port {port} is given twice ({first} and {second})
    #[error("host port {port} is given twice ({first} and {second})")]
    PortGivenTwice {
        /// The host side.
        port: String,
        /// The first mapping that uses it.
        first: String,
        /// The second.
        second: String,
    },
    /// port {mapping} is not published by sandbox {sandbox}
    #[error("port {mapping} is not published by sandbox {sandbox}")]
    NotPublished {
        /// The mapping given, `HOST_IP:HOST_PORT:CONTAINER_PORT/PROTO`.
        mapping: String,
        /// The sandbox.
        sandbox: String,
    },
    /// sandbox {0} is not connected to any network: connect it with --publish, or connect it first
    #[error("sandbox {0} is not connected to any network: connect it with --publish, or connect it first")]
    NoEndpointToPublish(String),
    /// sandbox {sandbox} is on several networks ({networks}) and none carries its default route: give --network
    #[error("sandbox {sandbox} is on several networks ({networks}) and none carries its default route: give --network")]
    AmbiguousEndpoint {
        /// The sandbox.
        sandbox: String,
        /// Its networks, comma separated.
        networks: String,
    },
    /// service {0} not found
    #[error("service {0} not found")]
    NoSuchService(String),
    /// service {0} does not exist yet and its replicas are not all on one network: give --network
    #[error("service {0} does not exist yet and its replicas are not all on one network: give --network")]
    ServiceNeedsNetwork(String),
    /// service {service} is published on network {network}, not {requested}
    #[error("service {service} is published on network {network}, not {requested}")]
    ServiceOnOtherNetwork {
        /// The service.
        service: String,
        /// Its network.
        network: String,
        /// The network asked for.
        requested: String,
    },
    /// network {network} has published services ({services}): remove them first
    #[error("network {network} has published services ({services}): remove them first")]
    NetworkHasServices {
        /// The network's name.
        network: String,
        /// The services, comma separated.
        services: String,
    },
    /// port {0} not found: give an endpoint's port as `show` lists it (vsw…), a sandbox with one endpoint, or NETWORK:SANDBOX
    #[error(
        "port {0} not found: give an endpoint's port as `show` lists it (vsw…), a sandbox with one endpoint, or \
         NETWORK:SANDBOX"
    )]
    NoSuchEndpointPort(String),
    /// sandbox {sandbox} has several endpoints ({ports}): name one port, or NETWORK:SANDBOX
    #[error("sandbox {sandbox} has several endpoints ({ports}): name one port, or NETWORK:SANDBOX")]
    AmbiguousSandboxPort {
        /// The sandbox.
        sandbox: String,
        /// Its endpoints' ports, as NETWORK:PORT, comma separated.
        ports: String,
    },
    /// port {0} cannot be impaired: only endpoint (TAP) ports can, not gateway or tunnel ports
    #[error("port {0} cannot be impaired: only endpoint (TAP) ports can, not gateway or tunnel ports")]
    NotImpairable(String),
    /// The impairment's settings are out of range.
    #[error(transparent)]
    Impair(#[from] crate::impair::ImpairError),
    /// port type {0} is not valid here
    #[error("port type {0} is not valid here: endpoints are tap or afxdp, uplinks raw or afxdp")]
    BadPortType(ctl::proto::PortType),
    /// interface {interface} is already an uplink of network {network}
    #[error("interface {interface} is already an uplink of network {network}")]
    UplinkExists {
        /// The interface.
        interface: String,
        /// The network it is attached to.
        network: String,
    },
    /// no uplink on interface {0}
    #[error("no uplink on interface {0}")]
    NoSuchUplink(String),
    /// the macvlan driver needs -o parent=IFACE
    #[error("the macvlan driver needs -o parent=IFACE: the host interface the network shares")]
    MacvlanNeedsParent,
    /// invalid interface name {0:?}
    #[error("invalid interface name {0:?}")]
    InvalidInterface(String),
}
