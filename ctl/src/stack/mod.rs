//! Stack files: the desired state of networks, sandboxes and services that
//! `vswitchctl apply -f FILE.yaml` sends to the daemon in one request, and
//! that `vswitchctl export` writes back.
//!
//! - [`Stack`] and its parts are the typed desired state, as the
//!   `stack_apply` request carries it (JSON) and `stack_export` returns it.
//! - [`SourceMap`] tells where each part came from in the file, so errors
//!   found by the client or the daemon name the file's line and key
//!   ([`StackIssue::render`]).
//! - [`validate`] checks what needs no daemon state (references between
//!   the parts); the daemon runs it again before planning.
//! - [`yaml`] (feature `yaml`) reads and writes the compose-style YAML form.
//! - [`StackReport`] is the daemon's answer: what was (or, with `dry_run`,
//!   would be) created, changed or left unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::addr::{Ipv4Net, Ipv6Net, MacAddr};
use crate::proto::Driver;
use crate::publish::PortMapping;

#[cfg(feature = "yaml")]
pub mod yaml;

/// The compose driver option that sets a network's MTU.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The Docker overlay driver option that sets a network's VXLAN id.
pub const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// Docker's endpoint option that names a sandbox's interface (compose's
/// `interface_name` of a service's network).
pub const IFNAME_OPTION: &str = "com.docker.network.endpoint.ifname";
/// Networks every daemon has; a stack file uses them without declaring
/// them, or declares them `external: true`.
pub const PREDEFINED_NETWORKS: [&str; 3] = ["bridge", "host", "none"];

/// The desired state a stack file describes. Objects keep the file's order
/// (a sandbox's networks are connected in that order: `eth0` first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// Networks, created when missing.
    #[serde(default)]
    pub networks: Vec<StackNetwork>,
    /// Sandboxes, created when missing; each one's connections are exactly
    /// those listed.
    #[serde(default)]
    pub sandboxes: Vec<StackSandbox>,
    /// Services (ports balanced over replicas), created when missing.
    #[serde(default)]
    pub services: Vec<StackService>,
}

/// One network of a stack. Unset optional fields match whatever the daemon
/// chose (a subnet from the pools or an IPv6 ULA /64, the first host as
/// gateway, the default MTU, a free VNI); set ones must match exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackNetwork {
    /// The network's name.
    pub name: String,
    /// The network exists already and is not managed by the file
    /// (compose's `external: true`); no other field may be set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    /// The driver (bridge, overlay, or macvlan with a `parent` option).
    #[serde(default)]
    pub driver: Driver,
    /// Endpoints get IPv4 addresses (compose's `enable_ipv4`, on unless
    /// false: an IPv6-only network, which needs `enable_ipv6`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enable_ipv4: bool,
    /// Endpoints get IPv6 addresses too (compose's `enable_ipv6`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    /// The IPv4 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    /// The gateway address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Where automatic addresses come from (inside `subnet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    /// The IPv6 subnet (needs `enable_ipv6`); unset: a ULA /64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// The IPv6 gateway address (inside `subnet6`; unset: its `::1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Where automatic IPv6 addresses come from (inside `subnet6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<Ipv6Net>,
    /// Addresses never given to an endpoint, by name (compose's
    /// `aux_addresses`, `--aux-address`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// No route out of the network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Standalone sandboxes may join (overlay).
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    /// The endpoints' MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The VXLAN id (overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Driver options (`-o`: `encrypted`, `cipher`, `mss-clamp`, `egress`, `key-rotation`, `spread`,
    /// `flood-limit`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// User labels (`--label`; compose's `labels:` map).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for StackNetwork {
    /// A bridge network with no name and every key unset: IPv4 only, as
    /// `network create` without options.
    fn default() -> Self {
        Self {
            name: String::new(),
            external: false,
            driver: Driver::default(),
            enable_ipv4: true,
            enable_ipv6: false,
            subnet: None,
            gateway: None,
            ip_range: None,
            subnet6: None,
            gateway6: None,
            ip_range6: None,
            aux_addresses: BTreeMap::new(),
            internal: false,
            attachable: false,
            mtu: None,
            vni: None,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// One sandbox of a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSandbox {
    /// The sandbox's name.
    pub name: String,
    /// Adopt this existing namespace instead of creating `/run/netns/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// Upstream DNS servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// resolv.conf options (`--dns-option`; compose's `dns_opt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// Hosts file entries, `NAME:IP` (`--add-host`; compose's `extra_hosts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Its connections, in interface order.
    #[serde(default)]
    pub networks: Vec<StackAttachment>,
    /// Ports published to the endpoint that carries its default route (or
    /// its only endpoint), as `sandbox publish` without `--network` does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
}

/// One connection of a sandbox to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackAttachment {
    /// The network's name.
    pub network: String,
    /// A fixed address; unset: any (the lowest free one when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<Ipv4Addr>,
    /// A fixed IPv6 address (on a network with IPv6); unset: any (the
    /// lowest free one from `::2` when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Ipv6Addr>,
    /// A fixed MAC; unset: any (`02:42:` + the address when created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<MacAddr>,
    /// Extra DNS names on the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Ports published to this endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// The service this endpoint is a replica of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its gateway priority (compose's `gw_priority`, `network connect
    /// --gw-priority`; default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gw_priority: i64,
    /// The interface's name in the sandbox (compose's `interface_name`,
    /// Docker's `com.docker.network.endpoint.ifname`); unset: the network's
    /// prefix and the lowest free number when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
}

/// Whether a number is zero, its default (left out).
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One service of a stack: host ports balanced over its replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackService {
    /// The service's name.
    pub name: String,
    /// The network its replicas are reached on.
    pub network: String,
    /// Published port → the replicas' target port.
    pub ports: Vec<PortMapping>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

/// Where the parts of a [`Stack`] came from: the file's name and, for each
/// logical key (see [`StackIssue::key`]), the key as written in the file
/// and its line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMap {
    /// The file as the user named it (`stack.yaml`, `-` for stdin).
    pub file: String,
    /// Logical key → where it is in the file.
    #[serde(default)]
    pub keys: BTreeMap<String, SourceKey>,
}

/// Where one key is in a stack file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceKey {
    /// The key's path as written: `networks.back.ipam.config[0].subnet`.
    pub path: String,
    /// Its line, from 1.
    pub line: u32,
}

impl SourceMap {
    /// A map for `file` with no keys yet.
    pub fn new(file: impl Into<String>) -> Self {
        Self { file: file.into(), keys: BTreeMap::new() }
    }

    /// Records that logical `key` is written as `path` on `line`.
    pub fn insert(&mut self, key: impl Into<String>, path: impl Into<String>, line: u32) {
        self.keys.insert(key.into(), SourceKey { path: path.into(), line });
    }

    /// Where `key` is, or else the nearest enclosing key that is known
    /// (`networks.a.subnet` → `networks.a`), with the key found.
    pub fn find<'a>(&'a self, key: &'a str) -> Option<(&'a str, &'a SourceKey)> {
        let mut key = key;
        loop {
            if let Some(found) = self.keys.get(key) {
                return Some((key, found));
            }
            key = &key[..key.rfind('.')?];
        }
    }
}

/// One problem found in a stack: the logical key it is about and what is
/// wrong. Logical keys follow the [`Stack`]'s shape with names as
/// segments: `networks.NAME.subnet`, `networks.NAME.subnet6` (the IPv6
/// subnet; likewise `gateway6`, `ip_range6`), `networks.NAME.options.KEY`,
/// `sandboxes.NAME.networks.NET.ipv4_address`, `sandboxes.NAME.ports`,
/// `services.NAME.network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackIssue {
    /// The logical key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl StackIssue {
    /// An issue with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }

    /// `FILE:LINE: PATH: MESSAGE` when `source` knows the key (or an
    /// enclosing one: its line, and its path followed by the rest of the
    /// key), else `KEY: MESSAGE`.
    pub fn render(&self, source: Option<&SourceMap>) -> String {
        match source.and_then(|s| Some((s, s.find(&self.key)?))) {
            Some((source, (found, at))) => {
                let rest = &self.key[found.len()..];
                format!("{}:{}: {}{rest}: {}", source.file, at.line, at.path, self.message)
            }
            None => format!("{}: {}", self.key, self.message),
        }
    }
}

/// Renders `issues` one per line (see [`StackIssue::render`]).
pub fn render_issues(issues: &[StackIssue], source: Option<&SourceMap>) -> String {
    issues.iter().map(|i| i.render(source)).collect::<Vec<_>>().join("\n")
}

/// Checks what needs no daemon state: that sandboxes and services name
/// networks the stack declares (or the predefined `bridge`), that a
/// sandbox lists each network once, that external networks set nothing
/// else, that predefined networks are not redeclared, and that address
/// families agree (a network has one; IPv6 keys need `enable_ipv6`, IPv4
/// ones `enable_ipv4`, on the network and on its attachments). The daemon
/// checks everything else (names, addresses, overlaps, ports) against its
/// model.
pub fn validate(stack: &Stack) -> Vec<StackIssue> {
    let mut issues = Vec::new();
    let mut declared = BTreeSet::new();
    for n in &stack.networks {
        let key = format!("networks.{}", n.name);
        if !declared.insert(n.name.as_str()) {
            issues.push(StackIssue::new(&key, format!("network {} is declared twice", n.name)));
        }
        if n.external {
            let bare = StackNetwork { name: n.name.clone(), external: true, ..StackNetwork::default() };
            if *n != bare {
                issues.push(StackIssue::new(
                    format!("{key}.external"),
                    "an external network is not managed by the file: it sets no other key",
                ));
            }
        } else if PREDEFINED_NETWORKS.contains(&n.name.as_str()) {
            issues.push(StackIssue::new(
                &key,
                format!("{} is a predefined network: leave it out, or declare it with external: true", n.name),
            ));
        } else {
            family_issues(&key, n, &mut issues);
            if n.driver == Driver::Macvlan && !n.options.contains_key("parent") {
                issues.push(StackIssue::new(
                    format!("{key}.driver"),
                    "the macvlan driver needs driver_opts.parent: the host interface the network shares",
                ));
            }
        }
    }
    // The address families of the networks the file manages.
    let families: BTreeMap<&str, (bool, bool)> = stack
        .networks
        .iter()
        .filter(|n| !n.external)
        .map(|n| (n.name.as_str(), (n.enable_ipv4, n.enable_ipv6)))
        .collect();
    let known = |name: &str| declared.contains(name) || name == "bridge";
    let mut sandboxes = BTreeSet::new();
    for s in &stack.sandboxes {
        let key = format!("sandboxes.{}", s.name);
        if !sandboxes.insert(s.name.as_str()) {
            issues.push(StackIssue::new(&key, format!("sandbox {} is declared twice", s.name)));
        }
        let mut seen = BTreeSet::new();
        for a in &s.networks {
            let akey = format!("{key}.networks.{}", a.network);
            if !known(&a.network) {
                issues.push(StackIssue::new(
                    &akey,
                    format!(
                        "network {} is not declared under networks: (declare it, or with external: true)",
                        a.network
                    ),
                ));
            }
            if !seen.insert(a.network.as_str()) {
                issues.push(StackIssue::new(&akey, format!("network {} is listed twice", a.network)));
            }
            let (ipv4, ipv6) = families.get(a.network.as_str()).copied().unwrap_or((true, true));
            if a.ipv4_address.is_some() && !ipv4 {
                issues.push(StackIssue::new(
                    format!("{akey}.ipv4_address"),
                    format!("network {} is IPv6-only (enable_ipv4: false): it gives no IPv4 addresses", a.network),
                ));
            }
            if a.ipv6_address.is_some() && !ipv6 {
                issues.push(StackIssue::new(
                    format!("{akey}.ipv6_address"),
                    format!("network {} has no IPv6: give it enable_ipv6: true, or leave ipv6_address out", a.network),
                ));
            }
        }
        if !s.ports.is_empty() && s.networks.is_empty() {
            issues.push(StackIssue::new(format!("{key}.ports"), "ports need a network to publish to"));
        }
    }
    let mut services = BTreeSet::new();
    for v in &stack.services {
        let key = format!("services.{}", v.name);
        if !services.insert(v.name.as_str()) {
            issues.push(StackIssue::new(&key, format!("service {} is declared twice", v.name)));
        }
        // No network at all is the parser's to report.
        if !v.network.is_empty() && !known(&v.network) {
            issues.push(StackIssue::new(
                format!("{key}.network"),
                format!("network {} is not declared under networks:", v.network),
            ));
        }
        if v.ports.is_empty() {
            issues.push(StackIssue::new(format!("{key}.ports"), "a service needs at least one port"));
        }
    }
    issues
}

/// A managed network's address-family keys that contradict each other: no
/// family at all, IPv4 settings with `enable_ipv4: false`, IPv6 settings
/// without `enable_ipv6: true`.
fn family_issues(key: &str, n: &StackNetwork, issues: &mut Vec<StackIssue>) {
    if !n.enable_ipv4 && !n.enable_ipv6 {
        issues.push(StackIssue::new(
            format!("{key}.enable_ipv4"),
            "a network needs an address family: enable_ipv4: false needs enable_ipv6: true",
        ));
    }
    let v4 = [("subnet", n.subnet.is_some()), ("gateway", n.gateway.is_some()), ("ip_range", n.ip_range.is_some())];
    if !n.enable_ipv4 {
        for (field, _) in v4.iter().filter(|(_, set)| *set) {
            issues.push(StackIssue::new(
                format!("{key}.{field}"),
                format!("an IPv4 {field} cannot be configured with enable_ipv4: false"),
            ));
        }
    }
    let v6 = [("subnet", n.subnet6.is_some()), ("gateway", n.gateway6.is_some()), ("ip_range", n.ip_range6.is_some())];
    if !n.enable_ipv6 {
        for (field, _) in v6.iter().filter(|(_, set)| *set) {
            issues.push(StackIssue::new(
                format!("{key}.{field}6"),
                format!("an IPv6 {field} needs enable_ipv6: true on the network"),
            ));
        }
    }
}

/// What `stack_apply` did (or, with `dry_run`, would do) to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackStatus {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed in place (details in `changes`).
    Changed,
    /// It already matched the file.
    Unchanged,
}

impl StackStatus {
    /// The lowercase name, as `apply` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One object of a [`StackReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackObject {
    /// `network`, `sandbox` or `service`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// What happened to it.
    pub status: StackStatus,
    /// For a changed object: each change, e.g. `connected to back`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// For a created object: what it is created with, e.g. a network's
    /// `subnet 10.1.0.0/24 gateway 10.1.0.1` and `IPv6 subnet fd00:1::/64
    /// gateway fd00:1::1`, a sandbox's `eth0 on front: 10.1.0.2,
    /// fd00:1::2` (so a dry run shows the addresses it would take).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// The reply to `stack_apply`: every object of the file, in the file's
/// order (networks, sandboxes, services).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackReport {
    /// Nothing was applied: this is the plan.
    pub dry_run: bool,
    /// Whether anything was (or would be) created or changed.
    pub changed: bool,
    /// The objects.
    pub objects: Vec<StackObject>,
}

/// How a [`PortMapping`] is written in a stack file: compose's short
/// syntax, `8080:80`, `127.0.0.1:5353:53/udp`, an IPv6 host address in
/// brackets (`[::1]:8080:80`).
pub fn port_spec(m: &PortMapping) -> String {
    let proto = match m.proto {
        crate::publish::PortProto::Tcp => "",
        crate::publish::PortProto::Udp => "/udp",
    };
    // `0.0.0.0` (both families) is the short form; `::` (IPv6 only) is not,
    // nor a `0.0.0.0` that must stay one on a network with a host binding.
    if m.host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && !m.host_ip_named {
        format!("{}:{}{proto}", m.host_port, m.container_port)
    } else {
        format!("{}:{}{proto}", m.host_display(), m.container_port)
    }
}

#[cfg(test)]
mod tests;
