//! Command-line syntax of `vswitchctl` (clap derive) and argument parsers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ctl::client::{CTL_SOCKET_ENV, DEFAULT_CTL_SOCKET};
use ctl::proto::Driver;
use ctl::{IpNet, Ipv4Net, Ipv6Net, MacAddr, PortMapping};

/// Control the vswitchd userspace virtual switch.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Path of vswitchd's control socket.
    #[arg(long, global = true, value_name = "PATH", env = CTL_SOCKET_ENV, default_value = DEFAULT_CTL_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Print the daemon's reply as pretty JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Give up waiting for the daemon's answer after SECS seconds (0, the
    /// default: wait as long as it takes, as ovs-vsctl does). A request
    /// given up on may still be applied: requests wait in line.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 0)]
    pub(crate) timeout: u64,
    /// The verb.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage sandboxes (network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Manage networks (docker network style).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Show networks, ports and endpoints as a tree.
    Show,
    /// Inspect and edit MAC learning tables.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Show port counters and drops by reason, and the embedded DNS's and
    /// the L4 translator's counters of each network's gateway port.
    Stats {
        /// Only this port.
        port: Option<String>,
        /// Print every counter in the Prometheus/OpenMetrics text format
        /// instead (what `vswitchd --metrics-listen` serves).
        #[arg(long, conflicts_with = "port")]
        prometheus: bool,
        /// Print each port's counters through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Port .Network .RxPackets .RxBytes .TxPackets .TxBytes .Floods .Drops
        /// .DropReasons (a map) .TapQueueDropped (0 without a TAP queue).
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list, conflicts_with = "prometheus")]
        format: Option<String>,
    },
    /// Show switch events: MACs learned, moved, flapping and aged, full
    /// tables, ports up and down, gone sandboxes, peers learned and silent,
    /// key rotations, drop bursts.
    ///
    /// Without --follow: the recent history (the daemon keeps the last
    /// 1024 events), oldest first. One line per event; with --json one JSON
    /// object per line.
    Events {
        /// Print events as they happen, until Ctrl-C (then a summary on
        /// stderr: events shown, and events lost because this client read
        /// too slowly).
        #[arg(short, long)]
        follow: bool,
        /// Print each event through a Go template over its JSON object, as Docker's `events
        /// --format` (`{{.seq}} {{.time}} {{.kind}}`), or `json`: one line of JSON each (as
        /// `--json`).
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_stream)]
        format: Option<String>,
    },
    /// Show the names the embedded DNS serves at each network's gateway.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// List a sandbox's published ports, or the host side of one, as `docker port` does
    /// (`port SANDBOX [PORT[/PROTO]]`); or impair a switch port (`port impair PORT ...`).
    Port(PortArgs),
    /// Publish ports balanced over a service's replicas.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Show the L4 translator's live flows (egress and published ports).
    #[command(subcommand)]
    Nat(NatCmd),
    /// Change runtime settings.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage VXLAN peers (remote VTEPs) of overlay networks.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// The nodes of the cluster store (vswitchd --cluster-store).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Cluster secrets for encrypted overlays (no daemon needed).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Capture the frames crossing a port, every port of a network, or the
    /// underlay, as pcap (like tcpdump).
    ///
    /// Writes pcap (pcapng with --pcapng) to FILE, or to stdout when it is
    /// not a terminal (`vswitchctl capture web0 | tshark -r -`); on a
    /// terminal, one line per frame. Ctrl-C stops; the summary (frames
    /// captured, dropped because the reader was too slow, filtered out)
    /// goes to stderr.
    Capture {
        /// A port as `show`/`stats` name it (vsw…, gw:NET, vx:ADDR, vtep),
        /// or a network: all of its ports.
        #[arg(value_name = "PORT|NET")]
        target: String,
        /// Write to FILE (`-`: stdout) instead.
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        write: Option<PathBuf>,
        /// Stop after N frames.
        #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Keep at most N bytes of each frame (default and most: 262144).
        #[arg(short = 's', long, value_name = "N")]
        snaplen: Option<u32>,
        /// Only frames matching this tcpdump expression (pcap-filter(7)),
        /// e.g. "icmp or arp", "tcp port 80 and host 10.0.0.2".
        #[arg(short = 'f', long, value_name = "EXPR")]
        filter: Option<String>,
        /// Capture the underlay's datagrams (target `vtep`) as raw IP.
        #[arg(long)]
        outer: bool,
        /// Write pcapng: one interface per port, each frame's direction.
        #[arg(long)]
        pcapng: bool,
    },
    /// Make the switch look like a stack file (compose-style YAML), as one
    /// transaction: everything is checked first, then all of it is applied
    /// or none. Prints what was created, changed or left unchanged.
    Apply(crate::stack::ApplyArgs),
    /// Print the networks, sandboxes and services as a stack file that
    /// `apply` reproduces.
    Export,
    /// Show client and daemon versions.
    Version,
    /// Check that vswitchd answers.
    Ping,
    /// Print a shell completion script (no daemon needed).
    Completions {
        /// Target shell.
        shell: clap_complete::Shell,
    },
}

/// `port`: `docker port`'s listing, or a verb on a switch port.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct PortArgs {
    /// A verb on a switch port.
    #[command(subcommand)]
    pub(crate) command: Option<PortCmd>,
    /// Sandbox name.
    #[arg(required = true)]
    pub(crate) sandbox: Option<String>,
    /// Only this container port: PORT or PORT/PROTO (tcp by default).
    #[arg(value_name = "PORT[/PROTO]")]
    pub(crate) port: Option<String>,
}

/// `port` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum PortCmd {
    /// Attach a host interface (in vswitchd's namespace) to a network as an uplink port: the
    /// network's sandboxes share the interface's L2 segment. Refused for the interface that
    /// carries the VTEP address or a default route unless --force. Kept across restarts.
    Add {
        /// Network name.
        network: String,
        /// Host interface.
        interface: String,
        /// How the interface is switched: raw (an AF_PACKET socket, GSO frames kept) or
        /// afxdp (an XDP program and an AF_XDP socket).
        #[arg(long, value_enum, default_value = "raw")]
        port_type: UplinkTypeArg,
        /// Attach it even if it carries the VTEP address or a default route.
        #[arg(long)]
        force: bool,
    },
    /// Detach an uplink and give its interface back to the host.
    #[command(alias = "remove")]
    Rm {
        /// Host interface.
        interface: String,
    },
    /// Impair a port's egress (the frames toward its sandbox, or through a tunnel toward a
    /// VTEP) as netem would: delay with jitter, loss, duplication, reordering, a rate; or clear
    /// it. A new setting replaces the old one. Kept across daemon restarts; shown by `show` and
    /// `stats`.
    Impair(ImpairArgs),
}

/// `port impair` settings.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("settings").required(true).multiple(true)
        .args(["delay", "jitter", "loss", "duplicate", "reorder", "rate", "limit", "clear"])),
    override_usage = "vswitchctl port impair PORT [--delay TIME] [--jitter TIME] [--loss PERCENT] \
        [--duplicate PERCENT] [--reorder PERCENT] [--rate RATE] [--limit FRAMES]\n       \
        vswitchctl port impair PORT --clear"
)]
pub(crate) struct ImpairArgs {
    /// The port: its name as `show` lists it (vsw…), NETWORK:SANDBOX, a sandbox with one
    /// endpoint, or vx:ADDR[:PORT] for every tunnel toward that VTEP.
    pub(crate) port: String,
    /// Delay every frame, e.g. 10ms (us, ms, s).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) delay: Option<u64>,
    /// Draw each frame's delay uniformly from delay ± jitter, e.g. 2ms (frames may then leave
    /// out of order, as with netem).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub(crate) jitter: Option<u64>,
    /// Drop frames at random with this probability, e.g. 1%.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub(crate) loss: Option<u32>,
    /// Send a second copy of frames with this probability, e.g. 0.1%.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub(crate) duplicate: Option<u32>,
    /// Send frames at once, ahead of delayed ones, with this probability (needs --delay).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub(crate) reorder: Option<u32>,
    /// Limit the port's rate, e.g. 100mbit (bit, kbit, mbit, gbit; bps, kbps, mbps, gbps are
    /// bytes per second).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub(crate) rate: Option<u64>,
    /// Frames queued at most (default 1000, as netem); more are dropped.
    #[arg(long, value_name = "FRAMES")]
    pub(crate) limit: Option<u32>,
    /// Remove the port's impairment.
    #[arg(long, conflicts_with_all = ["delay", "jitter", "loss", "duplicate", "reorder", "rate", "limit"])]
    pub(crate) clear: bool,
}

impl ImpairArgs {
    /// The settings to send: `None` for `--clear`.
    pub(crate) fn impairment(&self) -> Option<ctl::Impairment> {
        (!self.clear).then(|| ctl::Impairment {
            delay_us: self.delay.unwrap_or(0),
            jitter_us: self.jitter.unwrap_or(0),
            loss_ppm: self.loss.unwrap_or(0),
            duplicate_ppm: self.duplicate.unwrap_or(0),
            reorder_ppm: self.reorder.unwrap_or(0),
            rate_bps: self.rate,
            limit: self.limit,
        })
    }
}

/// Parses a duration such as `10ms` into microseconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    ctl::impair::parse_duration_us(s).map_err(|e| e.to_string())
}

/// Parses a percentage such as `1%` into parts per million.
fn parse_percent(s: &str) -> Result<u32, String> {
    ctl::impair::parse_percent_ppm(s).map_err(|e| e.to_string())
}

/// Parses a rate such as `100mbit` into bits per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    ctl::impair::parse_rate_bps(s).map_err(|e| e.to_string())
}

/// `sandbox` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum SandboxCmd {
    /// Create a sandbox.
    Create {
        /// Sandbox name.
        name: String,
        /// Upstream DNS server of the sandbox (repeatable).
        ///
        /// The embedded DNS at the gateway of the sandbox's networks forwards
        /// the names it does not own to these servers (without any: to
        /// vswitchd's own upstreams). The sandbox's resolv.conf names the
        /// gateway of its first network with the embedded DNS; it lists these
        /// servers instead only while the sandbox is on no such network.
        #[arg(long, value_name = "IP")]
        dns: Vec<IpAddr>,
        /// DNS search domain (repeatable).
        #[arg(long, value_name = "DOMAIN")]
        dns_search: Vec<String>,
        /// resolv.conf option, as `docker run --dns-option` (repeatable):
        /// ndots:2, timeout:3, rotate, edns0, … With the embedded DNS,
        /// ndots:0 is added unless an ndots option is given.
        #[arg(long = "dns-option", visible_alias = "dns-opt", value_name = "OPTION")]
        dns_options: Vec<String>,
        /// A line for the sandbox's hosts file, as `docker run --add-host`
        /// (repeatable): NAME:IP or NAME=IP (db:10.0.0.5, db:2001:db8::1).
        #[arg(long = "add-host", value_name = "NAME:IP")]
        extra_hosts: Vec<String>,
        /// Adopt an existing network namespace instead of creating one.
        #[arg(long, value_name = "PATH")]
        netns: Option<PathBuf>,
    },
    /// List sandboxes.
    #[command(alias = "list")]
    Ls {
        /// Print each sandbox through a Go template, as Docker's --format: `{{.Name}}`,
        /// `table {{.Name}}\t{{.Endpoints}}` (a header row and aligned columns), or `json` (one
        /// line each). Fields: .Name .Netns .Endpoints .DNS.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
    /// Show details of sandboxes, with the resolver configuration the switch
    /// wrote for them, as a JSON array (like `network inspect`).
    Inspect {
        /// Sandbox names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print a human-readable block per sandbox instead of JSON (not
        /// with --json).
        #[arg(long)]
        pretty: bool,
        /// Print each sandbox through a Go template over its JSON, as Docker's -f/--format
        /// (`{{range .endpoints}}{{.ipv4}} {{end}}`), or `json` (one compact array).
        #[arg(short, long, value_name = "FORMAT", value_parser = crate::format::check_inspect, conflicts_with = "pretty")]
        format: Option<String>,
    },
    /// Remove sandboxes and their endpoints.
    #[command(alias = "remove")]
    Rm {
        /// Sandbox names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Publish ports to a connected sandbox (all or none are opened).
    Publish {
        /// Sandbox name.
        sandbox: String,
        /// The network whose endpoint receives the traffic (default: the sandbox's only
        /// network, else the one carrying its default route).
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp] (repeatable; no host port or 0: a free one).
        #[arg(short = 'p', long = "publish", value_name = "SPEC", required = true, value_parser = parse_spec)]
        publish: Vec<PublishSpec>,
    },
    /// Close published ports of a sandbox.
    Unpublish {
        /// Sandbox name.
        sandbox: String,
        /// Only this network's endpoint.
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// The ports, as they were published (repeatable; no host port or 0: the one the daemon chose).
        #[arg(short = 'p', long = "publish", value_name = "SPEC", required = true, value_parser = parse_spec)]
        publish: Vec<PublishSpec>,
    },
}

/// One `-p` spec, expanded to a mapping per port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishSpec(pub(crate) Vec<PortMapping>);

/// Flattens repeated `-p` specs into one list of mappings.
pub(crate) fn mappings(specs: Vec<PublishSpec>) -> Vec<PortMapping> {
    specs.into_iter().flat_map(|s| s.0).collect()
}

/// Parses a `-p` spec.
fn parse_mode(s: &str) -> Result<ctl::proto::ServiceMode, String> {
    s.parse()
}

fn parse_spec(s: &str) -> Result<PublishSpec, String> {
    ctl::parse_publish(s).map(PublishSpec).map_err(|e| e.to_string())
}

/// `service` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCmd {
    /// Publish ports of a service: connections are balanced over the endpoints connected with
    /// `network connect --service NAME` on its network (created on first use).
    Publish {
        /// Service name.
        name: String,
        /// The service's network (needed when the service is new and its replicas are not
        /// all on one network).
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// [HOST_IP:][PUBLISHED[-END]:]TARGET[-END][/tcp|/udp] (repeatable; no published port or 0: a free one,
        /// host mode only).
        #[arg(short = 'p', long = "publish", value_name = "SPEC", required = true, value_parser = parse_spec)]
        publish: Vec<PublishSpec>,
        /// `ingress`: every cluster node serves the ports over every replica (the default on
        /// a cluster overlay network); `host`: this node only, over its own replicas.
        #[arg(long, value_name = "MODE", value_parser = parse_mode)]
        mode: Option<ctl::proto::ServiceMode>,
    },
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Print each service through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Name .Network .Replicas .Ports .Mode .CreatedAt.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
    /// Show details of services as a JSON array.
    Inspect {
        /// Service names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print each service through a Go template over its JSON, as Docker's -f/--format,
        /// or `json` (one compact array).
        #[arg(short, long, value_name = "FORMAT", value_parser = crate::format::check_inspect)]
        format: Option<String>,
    },
    /// Remove services and close their ports (replicas stay connected).
    #[command(alias = "remove")]
    Rm {
        /// Service names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `nat` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum NatCmd {
    /// List live flows: protocol, direction, sandbox, inner and outer addresses, bytes, age, state.
    #[command(alias = "list")]
    Ls {
        /// Only this network.
        network: Option<String>,
        /// Print each flow through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Proto .Direction .Network .Sandbox .Inner .Remote .OuterLocal .OuterRemote
        /// .FromSandbox .ToSandbox .Age .State .AgeMs.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
}

/// Checks one `--filter KEY=VALUE` of `network ls` on its own.
fn parse_filter(s: &str) -> Result<String, String> {
    ctl::filter::NetworkFilter::parse(&[s.to_owned()]).map(|_| s.to_owned()).map_err(|e| e.to_string())
}

/// Network driver names for the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DriverArg {
    /// Learning bridge over TAP ports.
    Bridge,
    /// Share the host's network stack.
    Host,
    /// No networking.
    None,
    /// VXLAN overlay across hosts.
    Overlay,
    /// A bridge network whose uplink is a host interface (-o parent=IFACE).
    Macvlan,
}

impl From<DriverArg> for Driver {
    fn from(d: DriverArg) -> Self {
        match d {
            DriverArg::Bridge => Driver::Bridge,
            DriverArg::Host => Driver::Host,
            DriverArg::None => Driver::None,
            DriverArg::Overlay => Driver::Overlay,
            DriverArg::Macvlan => Driver::Macvlan,
        }
    }
}

/// `--port-type` of an uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum UplinkTypeArg {
    /// An AF_PACKET socket on the interface.
    Raw,
    /// An XDP program and an AF_XDP socket on the interface.
    Afxdp,
}

impl From<UplinkTypeArg> for ctl::proto::PortType {
    fn from(t: UplinkTypeArg) -> Self {
        match t {
            UplinkTypeArg::Raw => ctl::proto::PortType::Raw,
            UplinkTypeArg::Afxdp => ctl::proto::PortType::Afxdp,
        }
    }
}

/// `--port-type` of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EndpointTypeArg {
    /// A TAP device.
    Tap,
    /// A veth pair switched through an AF_XDP socket.
    Afxdp,
}

impl From<EndpointTypeArg> for ctl::proto::PortType {
    fn from(t: EndpointTypeArg) -> Self {
        match t {
            EndpointTypeArg::Tap => ctl::proto::PortType::Tap,
            EndpointTypeArg::Afxdp => ctl::proto::PortType::Afxdp,
        }
    }
}

/// `network` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCmd {
    /// Create a network.
    Create {
        /// Network name.
        name: String,
        /// Driver.
        #[arg(short, long, value_enum, default_value = "bridge")]
        driver: DriverArg,
        /// Subnet in CIDR form, e.g. 10.10.0.0/24 or (with --ipv6)
        /// fd00:1::/64; one per address family.
        #[arg(long, value_name = "CIDR", value_parser = parse_subnet)]
        subnet: Vec<IpNet>,
        /// Gateway address inside the subnet of its family; one per family.
        #[arg(long, value_name = "IP")]
        gateway: Vec<IpAddr>,
        /// Allocate container addresses from this sub-range of the subnet
        /// of its family (give each host of an overlay its own); one per family.
        #[arg(long, value_name = "CIDR", value_parser = parse_ip_range)]
        ip_range: Vec<IpNet>,
        /// An address of the subnet never given to an endpoint, by name
        /// (a router or host already on the segment; repeatable).
        #[arg(long = "aux-address", value_name = "NAME=IP", value_parser = parse_aux_address)]
        aux_addresses: Vec<(String, IpAddr)>,
        /// Give endpoints IPv4 addresses (default true); --ipv4=false with
        /// --ipv6 makes an IPv6-only network.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value_t = true,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        ipv4: bool,
        /// Give endpoints IPv6 addresses too, from the IPv6 --subnet or,
        /// without one, from a unique local /64 (fdXX:XXXX:XXXX::/64).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_value_t = false,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        ipv6: bool,
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// MTU of the network's ports.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
        mtu: Option<u32>,
        /// Allow manual attachment.
        #[arg(long)]
        attachable: bool,
        /// VXLAN network identifier (overlay driver).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=0xff_ffff))]
        vni: Option<u32>,
        /// Driver option (repeatable).
        #[arg(short = 'o', long = "opt", value_name = "KEY[=VALUE]", value_parser = parse_opt)]
        opts: Vec<(String, String)>,
        /// A user label, kept and shown by `network inspect` (repeatable).
        #[arg(long = "label", value_name = "KEY[=VALUE]", value_parser = parse_opt)]
        labels: Vec<(String, String)>,
        /// Create a configuration-only network, as Docker's: its subnets, gateways, ranges,
        /// auxiliary addresses, address families, MTU, options and labels are kept for the
        /// networks created --config-from it; nothing attaches to it and it takes no subnet.
        #[arg(long, conflicts_with_all = ["config_from", "internal", "attachable"])]
        config_only: bool,
        /// Take the settings of this configuration-only network (then give only the
        /// driver, --internal and --attachable: the rest comes from it).
        #[arg(long, value_name = "NETWORK")]
        config_from: Option<String>,
        /// The IPAM driver, as Docker's flag: only `default` (the switch's own) exists.
        #[arg(long, value_name = "DRIVER", default_value = "default", value_parser = parse_ipam_driver)]
        ipam_driver: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only the IDs, one per line.
        #[arg(short, long)]
        quiet: bool,
        /// Only networks that match: driver=, id= and name= (the whole, or a regular expression found
        /// in it), scope=, type=custom|builtin,
        /// dangling=true|false, label=KEY or label=KEY=VALUE (repeatable; one key's values are
        /// alternatives, but every label= must hold).
        #[arg(short, long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
        filter: Vec<String>,
        /// Whole network IDs.
        #[arg(long)]
        no_trunc: bool,
        /// Print each network through a Go template, as Docker's --format: `{{.Name}}`, `table
        /// {{.ID}}\t{{.Name}}` (a header row and aligned columns), or `json` (one line each). Fields:
        /// .ID .Name .Driver .Scope .IPv4 .IPv6 .Internal .Labels .CreatedAt .Subnet .Subnet6
        /// .Endpoints. With -q, `table` is the IDs; any other format wins over -q, as in Docker.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
    /// Remove every custom network that nothing uses (no endpoint, no uplink); asks first.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Show details of networks as a JSON array.
    Inspect {
        /// Network names or ID prefixes.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print each network through a Go template, as Docker's -f/--format
        /// (`{{range .IPAM.Config}}{{.Subnet}}{{end}}`), or `json` (one compact array).
        #[arg(short, long, value_name = "FORMAT", value_parser = crate::format::check_inspect)]
        format: Option<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Network names or ID prefixes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a sandbox to a network.
    Connect {
        /// Network name.
        network: String,
        /// Sandbox name.
        sandbox: String,
        /// Static IPv4 address.
        #[arg(long, value_name = "IP")]
        ip: Option<Ipv4Addr>,
        /// Static IPv6 address (networks created with --ipv6).
        #[arg(long, value_name = "IPV6")]
        ip6: Option<Ipv6Addr>,
        /// DNS alias (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// MAC address, e.g. 02:42:ac:11:00:02.
        #[arg(long, value_name = "MAC", value_parser = parse_unicast_mac)]
        mac: Option<MacAddr>,
        /// Publish a port: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp] (repeatable; no host port
        /// or 0: a free one the daemon chooses).
        #[arg(short = 'p', long = "publish", value_name = "SPEC", value_parser = parse_spec)]
        publish: Vec<PublishSpec>,
        /// Make the endpoint a replica of this service (see `service publish`).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// How the endpoint is backed: a TAP device, or a veth pair switched through an
        /// AF_XDP socket.
        #[arg(long, value_enum, default_value = "tap")]
        port_type: EndpointTypeArg,
        /// Gateway priority, as Docker's: each address family's default route goes through
        /// the sandbox's network of the highest priority that has that family (ties: the one
        /// that has it, else the lower interface, eth0 first).
        #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
        gw_priority: i64,
        /// The interface's name in the sandbox (default: the network's prefix and the lowest
        /// free number, eth0, eth1, …).
        #[arg(long, value_name = "NAME")]
        ifname: Option<String>,
        /// An endpoint option, as Docker's --driver-opt: only
        /// com.docker.network.endpoint.ifname=NAME (the same as --ifname).
        #[arg(long = "driver-opt", value_name = "KEY=VALUE", value_parser = parse_endpoint_opt)]
        driver_opts: Vec<String>,
    },
    /// Disconnect a sandbox from a network.
    Disconnect {
        /// Network name.
        network: String,
        /// Sandbox name.
        sandbox: String,
    },
    /// Manage the encryption key of an encrypted overlay (`-o encrypted`).
    #[command(subcommand)]
    Key(KeyCmd),
}

/// `network key` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCmd {
    /// Move the network to its next key epoch. Run it on every host, in any
    /// order, seconds apart: receivers accept the previous, current and next
    /// epoch, so no packet is lost.
    Rotate {
        /// Network name.
        network: String,
    },
}

/// `fdb` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum FdbCmd {
    /// List MAC table entries.
    Show {
        /// Only this network.
        network: Option<String>,
        /// Print each entry through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Port .Network .MAC .Age (seconds) .Type .Remote.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
    /// Add a static MAC entry.
    Add {
        /// Network name.
        network: String,
        /// Unicast MAC address.
        #[arg(value_parser = parse_unicast_mac)]
        mac: MacAddr,
        /// Port name, as `show` prints it: an endpoint's `vsw…` TAP, or the
        /// tunnel port of a static peer of an overlay (`vx:ADDR:PORT`,
        /// `vx:[V6]:PORT`).
        port: String,
    },
    /// Remove learned entries.
    Flush {
        /// Only this network.
        network: Option<String>,
    },
}

/// `dns` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum DnsCmd {
    /// List the records (A and PTR) the embedded DNS serves, per network.
    #[command(alias = "list")]
    Ls {
        /// Only this network.
        network: Option<String>,
        /// Print each record through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Network .Name .Type .Value .Sandbox .TTL.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
}

/// `secret` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCmd {
    /// Print a new random cluster secret (64 hex characters) to stdout. Save
    /// it with mode 0600 on every host and start vswitchd with
    /// `--secret-file PATH`: `vswitchctl secret generate > /etc/vswitch/secret && chmod 600 /etc/vswitch/secret`.
    Generate,
}

/// `peer` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum PeerCmd {
    /// Add a static peer: overlay broadcasts, multicast and unknown unicast are replicated to it.
    Add {
        /// The peer's underlay address, ADDR, ADDR:PORT or [V6]:PORT (port
        /// 4789 by default), of the same family as this host's --vtep.
        #[arg(value_parser = parse_peer_addr)]
        addr: SocketAddr,
        /// An overlay network it serves (repeatable); none: every overlay network.
        #[arg(long = "network", value_name = "NET")]
        networks: Vec<String>,
    },
    /// List peers, static and learned.
    Ls {
        /// Print each peer through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Peer .Networks .Type.
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
    /// Remove a static peer.
    Rm {
        /// The peer's underlay address, ADDR, ADDR:PORT or [V6]:PORT (port 4789 by default).
        #[arg(value_parser = parse_peer_addr)]
        addr: SocketAddr,
    },
}

/// `node` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCmd {
    /// List the cluster's nodes (this one marked `*`) and the store's state.
    #[command(alias = "list")]
    Ls {
        /// Print each node (not the store's state) through a Go template, as `network ls --format`: `table TEMPLATE`,
        /// `json`, or a template. Fields: .Name .VTEP .Status .Endpoints .Networks .Self (true for
        /// this node).
        #[arg(long, value_name = "FORMAT", value_parser = crate::format::check_list)]
        format: Option<String>,
    },
    /// Release every address claim and record of a node that is down (one
    /// that died and will not come back); refused while it is alive.
    Rm {
        /// The node's name.
        name: String,
    },
}

/// The IANA-assigned VXLAN UDP port.
pub(crate) const VXLAN_PORT: u16 = 4789;

/// Parses `ADDR`, `ADDR:PORT` or `[V6]:PORT`, defaulting the port to 4789.
fn parse_peer_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // A bracketed address must be closed: `[V6` is a typo, not `V6`.
    let ip = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']'),
        None => Some(s),
    };
    ip.and_then(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, VXLAN_PORT))
        .ok_or_else(|| format!("{s:?} is not ADDR, ADDR:PORT or [IPV6]:PORT"))
}

/// `config` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCmd {
    /// Show the runtime settings (`KEY VALUE` lines).
    Show,
    /// Set a runtime setting, e.g. `config set aging-time 300`.
    Set {
        /// Setting name.
        key: String,
        /// New value.
        value: String,
    },
}

/// Parses `--ipam-driver`: `default`, the one IPAM driver (as a stack
/// file's `ipam.driver`).
fn parse_ipam_driver(s: &str) -> Result<String, String> {
    match s {
        "default" => Ok(s.to_owned()),
        _ => Err(format!("IPAM driver {s:?} does not exist here: only the default IPAM driver exists")),
    }
}

/// Parses `KEY[=VALUE]`; a bare key gets the empty value.
fn parse_opt(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').unwrap_or((s, ""));
    if key.is_empty() {
        return Err(format!("invalid option {s:?}: expected KEY[=VALUE] with a non-empty KEY"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses a `network connect --driver-opt KEY=VALUE`: the interface name
/// of `com.docker.network.endpoint.ifname`, the one endpoint option taken.
fn parse_endpoint_opt(s: &str) -> Result<String, String> {
    let ifname = ctl::stack::IFNAME_OPTION;
    match s.split_once('=') {
        Some((key, name)) if key == ifname && !name.is_empty() => Ok(name.to_owned()),
        Some((key, _)) if key == ifname => Err(format!("{ifname} needs a name")),
        _ => Err(format!("invalid --driver-opt {s:?}: only {ifname}=NAME is supported")),
    }
}

/// Parses an `--aux-address NAME=IP`.
fn parse_aux_address(s: &str) -> Result<(String, IpAddr), String> {
    let bad = || format!("invalid --aux-address {s:?}: expected NAME=IP, e.g. router=192.168.1.5");
    let (name, ip) = s.split_once('=').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), ip.parse().map_err(|_| bad())?))
}

/// Parses a subnet (IPv4 or IPv6) and insists that its host bits are clear.
fn parse_subnet(s: &str) -> Result<IpNet, String> {
    parse_prefix("subnet", s)
}

/// Parses an `--ip-range` (a prefix; the daemon checks it lies in the subnet).
fn parse_ip_range(s: &str) -> Result<IpNet, String> {
    parse_prefix("ip range", s)
}

/// Parses an IPv4 or IPv6 CIDR prefix without host bits; errors name it as `what`.
fn parse_prefix(what: &str, s: &str) -> Result<IpNet, String> {
    let net = if s.contains(':') {
        let net: Ipv6Net = s.parse().map_err(|_| {
            format!("invalid CIDR {s:?}: expected ADDRESS/PREFIX, e.g. fd00:1::/64 (prefix length 0 to 128)")
        })?;
        IpNet::V6(net)
    } else {
        IpNet::V4(ctl::parse_ipv4_net(s).map_err(|e| e.to_string())?)
    };
    if net != net.trunc() {
        return Err(format!("{what} {net} has host bits set; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

/// The IPv4 and the IPv6 value of a repeatable option (`--subnet`, `--gateway`, `--ip-range`):
/// at most one of each family, as Docker takes them.
pub(crate) fn per_family<V4, V6>(
    option: &str,
    values: Vec<impl Into<Family<V4, V6>>>,
) -> Result<(Option<V4>, Option<V6>), String> {
    let (mut v4, mut v6) = (None, None);
    for value in values {
        let clash = match value.into() {
            Family::V4(a) => v4.replace(a).is_some().then_some("IPv4"),
            Family::V6(a) => v6.replace(a).is_some().then_some("IPv6"),
        };
        if let Some(family) = clash {
            return Err(format!("--{option} is given twice for {family}: give at most one per address family"));
        }
    }
    Ok((v4, v6))
}

/// A value of one address family or the other.
pub(crate) enum Family<V4, V6> {
    /// An IPv4 value.
    V4(V4),
    /// An IPv6 value.
    V6(V6),
}

impl From<IpNet> for Family<Ipv4Net, Ipv6Net> {
    fn from(n: IpNet) -> Self {
        match n {
            IpNet::V4(n) => Family::V4(n),
            IpNet::V6(n) => Family::V6(n),
        }
    }
}

impl From<IpAddr> for Family<Ipv4Addr, Ipv6Addr> {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Family::V4(a),
            IpAddr::V6(a) => Family::V6(a),
        }
    }
}

/// Parses a MAC address that may be assigned to an interface (not multicast/broadcast).
fn parse_unicast_mac(s: &str) -> Result<MacAddr, String> {
    let mac: MacAddr = s.parse().map_err(|e: ctl::MacParseError| e.to_string())?;
    if mac.is_group() {
        return Err(format!("{mac} is a multicast/broadcast address; a unicast MAC is required"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn peer_addresses_default_to_the_vxlan_port() {
        assert_eq!(parse_peer_addr("192.0.2.1").unwrap(), "192.0.2.1:4789".parse().unwrap());
        assert_eq!(parse_peer_addr("192.0.2.1:8472").unwrap(), "192.0.2.1:8472".parse().unwrap());
        assert_eq!(parse_peer_addr("2001:db8::1").unwrap(), "[2001:db8::1]:4789".parse().unwrap());
        assert_eq!(parse_peer_addr("[2001:db8::1]").unwrap(), "[2001:db8::1]:4789".parse().unwrap());
        assert_eq!(parse_peer_addr("[2001:db8::1]:8472").unwrap(), "[2001:db8::1]:8472".parse().unwrap());
        for bad in ["host.example", "[2001:db8::1", "2001:db8::1]", "2001:db8::1]:4789", "[192.0.2.1", "[]"] {
            assert!(parse_peer_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeatable_options_take_one_value_per_family() {
        let nets = |v: &[&str]| v.iter().map(|s| parse_subnet(s).unwrap()).collect::<Vec<_>>();
        let (v4, v6) = per_family("subnet", nets(&["fd00:1::/64", "10.1.0.0/24"])).unwrap();
        assert_eq!(v4.unwrap().to_string(), "10.1.0.0/24");
        assert_eq!(v6.unwrap().to_string(), "fd00:1::/64");
        let (v4, v6) = per_family::<Ipv4Net, Ipv6Net>("subnet", Vec::<IpNet>::new()).unwrap();
        assert!(v4.is_none() && v6.is_none());
        let err = per_family("subnet", nets(&["fd00:1::/64", "fd00:2::/64"])).unwrap_err();
        assert_eq!(err, "--subnet is given twice for IPv6: give at most one per address family");
        let err = per_family("subnet", nets(&["10.1.0.0/24", "10.2.0.0/24"])).unwrap_err();
        assert!(err.contains("twice for IPv4"), "{err}");
        let gws: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()];
        assert!(per_family("gateway", gws).unwrap_err().starts_with("--gateway is given twice for IPv4"));
        let cli = Cli::try_parse_from(["vswitchctl", "network", "create", "n", "--ipv6", "--ipv4=false"]).unwrap();
        let Command::Network(NetworkCmd::Create { ipv4, ipv6, .. }) = cli.command else { panic!() };
        assert_eq!((ipv4, ipv6), (false, true));
        let cli = Cli::try_parse_from(["vswitchctl", "network", "create", "n"]).unwrap();
        let Command::Network(NetworkCmd::Create { ipv4, ipv6, .. }) = cli.command else { panic!() };
        assert_eq!((ipv4, ipv6), (true, false));
        assert!(Cli::try_parse_from(["vswitchctl", "network", "create", "n", "--ipv4=maybe"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn port_lists_published_ports_or_impairs() {
        let cli = Cli::try_parse_from(["vswitchctl", "port", "web", "80/tcp"]).unwrap();
        let Command::Port(p) = cli.command else { panic!() };
        assert_eq!((p.sandbox.as_deref(), p.port.as_deref(), p.command.is_none()), (Some("web"), Some("80/tcp"), true));
        let cli = Cli::try_parse_from([
            "vswitchctl",
            "port",
            "impair",
            "app:web",
            "--delay",
            "10ms",
            "--jitter",
            "2ms",
            "--loss",
            "1%",
            "--duplicate",
            "0.1%",
            "--reorder",
            "1%",
            "--rate",
            "100mbit",
            "--limit",
            "500",
        ])
        .unwrap();
        let Command::Port(PortArgs { command: Some(PortCmd::Impair(i)), .. }) = cli.command else { panic!() };
        assert_eq!(i.port, "app:web");
        let spec = i.impairment().unwrap();
        assert_eq!(spec.to_string(), "delay 10ms jitter 2ms loss 1% duplicate 0.1% reorder 1% rate 100mbit limit 500");
        let cli = Cli::try_parse_from(["vswitchctl", "port", "impair", "web", "--clear"]).unwrap();
        let Command::Port(PortArgs { command: Some(PortCmd::Impair(i)), .. }) = cli.command else { panic!() };
        assert_eq!(i.impairment(), None);
        for bad in [
            &["vswitchctl", "port", "impair", "web"][..],
            &["vswitchctl", "port", "impair", "web", "--clear", "--delay", "1ms"],
            &["vswitchctl", "port", "impair", "web", "--loss", "101%"],
            &["vswitchctl", "port", "impair", "web", "--rate", "100"],
            &["vswitchctl", "port"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn argument_parsers() {
        assert_eq!(parse_opt("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_opt("flag").unwrap(), ("flag".into(), String::new()));
        assert!(parse_opt("=x").is_err());
        assert!(parse_subnet("10.0.0.0/8").is_ok());
        assert!(parse_subnet("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert_eq!(parse_subnet("fd00:1::/64").unwrap().to_string(), "fd00:1::/64");
        let err = parse_subnet("fd00:1::5/64").unwrap_err();
        assert!(err.starts_with("subnet fd00:1::5/64 has host bits set") && err.contains("fd00:1::/64"), "{err}");
        assert!(parse_subnet("fd00:1::/129").unwrap_err().contains("0 to 128"));
        assert!(parse_subnet("fd00:1::").is_err());
        let err = parse_ip_range("10.0.0.130/25").unwrap_err();
        assert!(err.starts_with("ip range 10.0.0.130/25 has host bits set") && err.contains("10.0.0.128/25"), "{err}");
        assert_eq!(parse_aux_address("router=192.168.1.5").unwrap(), ("router".into(), "192.168.1.5".parse().unwrap()));
        assert_eq!(parse_aux_address("h=fd00::5").unwrap().1, "fd00::5".parse::<IpAddr>().unwrap());
        for bad in ["192.168.1.5", "=192.168.1.5", "router=", "router=192.168.1.300"] {
            assert!(parse_aux_address(bad).unwrap_err().contains("NAME=IP"), "{bad}");
        }
        assert!(parse_unicast_mac("ff:ff:ff:ff:ff:ff").is_err());
        assert!(parse_unicast_mac("02:00:00:00:00:01").is_ok());
        assert_eq!(parse_spec("8000-8001:80-81").unwrap().0.len(), 2);
        assert_eq!(parse_spec("80").unwrap().0, [ctl::PortMapping::tcp(0, 80)], "a random host port");
        assert!(parse_spec("0-1:80-81").unwrap_err().contains("starts at 0"));
        let specs = vec![parse_spec("1:2").unwrap(), parse_spec("3-4:5-6/udp").unwrap()];
        let all: Vec<String> = mappings(specs).iter().map(ToString::to_string).collect();
        assert_eq!(all, ["0.0.0.0:1:2/tcp", "0.0.0.0:3:5/udp", "0.0.0.0:4:6/udp"]);
    }
}
