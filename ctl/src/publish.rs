//! Published ports: Docker's `-p [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]`
//! syntax ([`parse_publish`]; an IPv6 `HOST_IP` in brackets, `[::1]:8080:80`), the
//! [`PortMapping`] it expands to (one per port, as the protocol and the daemon's state carry it),
//! and the lines `docker port` prints ([`docker_port_lines`], [`docker_port_lookup`]).

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    /// TCP (the default, as in Docker).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl PortProto {
    /// The lowercase name, `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for PortProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PortProto {
    type Err = PortSpecError;

    /// `tcp` or `udp`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            _ => Err(PortSpecError::BadProto { proto: s.to_owned(), spec: s.to_owned() }),
        }
    }
}

/// One published port: the host address and port the daemon listens on, and the port inside
/// the sandbox (or, for a service, the replicas' target port) that traffic goes to.
///
/// On the wire and in the state file:
/// `{"host_ip":"0.0.0.0","host_port":8080,"container_port":80,"proto":"tcp"}`.
/// It displays as `0.0.0.0:8080:80/tcp` (`[::1]:8080:80/tcp`), which [`FromStr`] reads back
/// (as a request that names its address: [`PortMapping::host_ip_named`]).
///
/// `0.0.0.0`, the default, is every address of both families, as Docker's default is: the
/// daemon listens on `0.0.0.0` and on `[::]` (an IPv6-only socket), and leaves the latter out
/// when the host has no IPv6. `[::]` is every IPv6 address; any other address is that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to listen on; `0.0.0.0` (the default) for every address, `::` for
    /// every IPv6 address.
    #[serde(default = "unspecified")]
    pub host_ip: IpAddr,
    /// The host port, 1 to 65535. In a request, 0 asks the daemon for a free port of its
    /// choosing (Docker's `-p 80`); the daemon answers and keeps the port it chose.
    pub host_port: u16,
    /// The port inside the sandbox, 1 to 65535.
    pub container_port: u16,
    /// TCP or UDP.
    #[serde(default)]
    pub proto: PortProto,
    /// In a request only, above `host_port`: any free host port from
    /// `host_port` to this one, the lowest first (Docker's
    /// `-p 8000-8010:80`); the daemon answers and keeps the one it chose,
    /// with 0 here. 0 (and absent on the wire) otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
    /// In a request only: the spec named the host address (`-p 0.0.0.0:8080:80`), so a
    /// bridge network's `host_binding_ipv4` does not replace an unspecified one: Docker binds
    /// every address for an explicit `0.0.0.0` and the network's address for a `-p` that
    /// names none. The daemon keeps the address it publishes, with `false` here. `false`
    /// (and absent on the wire) otherwise; a client older than this field never sends it, so
    /// its `0.0.0.0` counts as naming no address.
    #[serde(default, skip_serializing_if = "is_false")]
    pub host_ip_named: bool,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn unspecified() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

impl PortMapping {
    /// A TCP mapping of `host_port` on every host address to `container_port`.
    pub fn tcp(host_port: u16, container_port: u16) -> Self {
        Self {
            host_ip: unspecified(),
            host_port,
            container_port,
            proto: PortProto::Tcp,
            host_port_end: 0,
            host_ip_named: false,
        }
    }

    /// Whether this mapping and `other` need the same host socket: the same protocol and port,
    /// and addresses that meet. `0.0.0.0` (both families) meets every address, `::` every IPv6
    /// one (`0.0.0.0:8080/tcp` and `10.0.0.1:8080/tcp` cannot both be bound, nor `[::]:8080/tcp`
    /// and `[::1]:8080/tcp`; `127.0.0.1:8080/tcp` and `[::1]:8080/tcp` can).
    pub fn host_overlaps(&self, other: &PortMapping) -> bool {
        let covers = |a: IpAddr, b: IpAddr| match a {
            IpAddr::V4(a) => a.is_unspecified(),
            IpAddr::V6(a) => a.is_unspecified() && b.is_ipv6(),
        };
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip
                || covers(self.host_ip, other.host_ip)
                || covers(other.host_ip, self.host_ip))
    }

    /// The host addresses the daemon listens on for this mapping: `host_ip`, and for
    /// `0.0.0.0` also `::` (IPv6 only), the second of which is optional (the host may have no
    /// IPv6).
    pub fn listen_addresses(&self) -> impl Iterator<Item = (IpAddr, bool)> {
        let companion = (self.host_ip == unspecified()).then_some((IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), true));
        std::iter::once((self.host_ip, false)).chain(companion)
    }

    /// Whether the host port is left to the daemon to choose (`-p 80`, `-p 0:80`).
    pub fn is_random(&self) -> bool {
        self.host_port == 0
    }

    /// Whether the daemon chooses the host port from a range
    /// (`-p 8000-8010:80`).
    pub fn is_host_range(&self) -> bool {
        self.host_port_end > self.host_port
    }

    /// Whether the daemon chooses the host port: at random or from a range.
    pub fn is_chosen_by_daemon(&self) -> bool {
        self.is_random() || self.is_host_range()
    }

    /// The host ports this mapping may take: its one port, or its range.
    pub fn host_ports(&self) -> std::ops::RangeInclusive<u16> {
        self.host_port..=self.host_port_end.max(self.host_port)
    }

    /// Whether this published mapping is the one `asked` names: the same, or,
    /// when `asked` leaves the host port to the daemon, the same but for it
    /// (`sandbox unpublish -p 80` closes what `-p 80` opened). Whether `asked`
    /// named its address ([`PortMapping::host_ip_named`]) does not matter
    /// here: the address does.
    pub fn answers(&self, asked: &PortMapping) -> bool {
        let asked = &PortMapping { host_ip_named: self.host_ip_named, ..*asked };
        let same_but_port = PortMapping { host_port: 0, host_port_end: 0, ..*self }
            == PortMapping { host_port: 0, host_port_end: 0, ..*asked };
        self == asked
            || (same_but_port
                && (asked.is_random() || (asked.is_host_range() && asked.host_ports().contains(&self.host_port))))
    }

    /// The host side as `docker port` prints it: `0.0.0.0:8080`, `[::1]:8080`.
    pub fn host_display(&self) -> String {
        std::net::SocketAddr::new(self.host_ip, self.host_port).to_string()
    }

    /// The host side with its protocol, as errors name it: `8080/tcp` on every address,
    /// `127.0.0.1:8080/tcp` or `[::]:8080/tcp` otherwise.
    pub fn host_key_display(&self) -> String {
        if self.host_ip == unspecified() {
            format!("{}/{}", self.host_port, self.proto)
        } else {
            format!("{}/{}", self.host_display(), self.proto)
        }
    }

    /// Whether this mapping is one `docker port SANDBOX PORT[/PROTO]`
    /// (`query`) prints: of that container port and protocol.
    pub fn answers_port_query(&self, query: &str) -> bool {
        let (number, proto) = port_query(query);
        number.parse() == Ok(self.container_port) && proto.parse() == Ok(self.proto)
    }

    /// The container side as `docker port` prints it: `80/tcp`.
    pub fn container_display(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host_range() {
            let ip = std::net::SocketAddr::new(self.host_ip, 0).to_string();
            let ip = ip.strip_suffix(":0").unwrap_or(&ip);
            return write!(f, "{ip}:{}-{}:{}/{}", self.host_port, self.host_port_end, self.container_port, self.proto);
        }
        write!(f, "{}:{}/{}", self.host_display(), self.container_port, self.proto)
    }
}

impl FromStr for PortMapping {
    type Err = PortSpecError;

    /// Parses a spec that names exactly one port (see [`parse_publish`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_publish(s)?.as_slice() {
            [one] => Ok(*one),
            many => Err(PortSpecError::NotOnePort { spec: s.to_owned(), ports: many.len() }),
        }
    }
}

/// Why a `-p` spec was refused. Each message quotes the spec and names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// The spec is empty.
    #[error("empty port spec: expected [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]")]
    Empty,
    /// The protocol after `/` is neither `tcp` nor `udp`.
    #[error("invalid protocol {proto:?} in {spec:?}: expected tcp or udp")]
    BadProto {
        /// The protocol given.
        proto: String,
        /// The whole spec.
        spec: String,
    },
    /// The host address is neither an IPv4 address nor an IPv6 address in brackets.
    #[error("invalid host IP {ip:?} in {spec:?}: expected an IPv4 address or an IPv6 address in brackets ([::1])")]
    BadHostIp {
        /// The address given.
        ip: String,
        /// The whole spec.
        spec: String,
    },
    /// The spec has more `:`-separated parts than `HOST_IP:HOST_PORT:CONTAINER_PORT`.
    #[error("invalid port spec {0:?}: expected [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]")]
    TooManyParts(String),
    /// A host port range that starts at 0 (a random host port is written `0`, or left out).
    #[error("host port range in {0:?} starts at 0: give 1 to 65535, or leave the host port out (or 0) for random ones")]
    HostPortZero(String),
    /// A port or range is not a number from 1 to 65535 (or `START-END`).
    #[error("invalid {what} {value:?} in {spec:?}: expected a number from 1 to 65535 or a range START-END")]
    BadPort {
        /// `host port` or `container port`.
        what: &'static str,
        /// The part given.
        value: String,
        /// The whole spec.
        spec: String,
    },
    /// A range whose end is below its start.
    #[error("invalid {what} range {value:?} in {spec:?}: END is smaller than START")]
    ReversedRange {
        /// `host port` or `container port`.
        what: &'static str,
        /// The range given.
        value: String,
        /// The whole spec.
        spec: String,
    },
    /// The host and container ranges hold different numbers of ports.
    #[error(
        "host ports {host:?} ({host_len}) and container ports {container:?} ({container_len}) in {spec:?} differ \
         in length: ranges map port by port"
    )]
    RangeLengths {
        /// The host range given.
        host: String,
        /// Its number of ports.
        host_len: u32,
        /// The container range given.
        container: String,
        /// Its number of ports.
        container_len: u32,
        /// The whole spec.
        spec: String,
    },
    /// A single mapping was expected but the spec is a range.
    #[error("port spec {spec:?} names {ports} ports where one is expected")]
    NotOnePort {
        /// The whole spec.
        spec: String,
        /// How many ports it names.
        ports: usize,
    },
}

/// Parses Docker's `-p` syntax, `[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]`, and
/// expands ranges into one mapping per port, in order.
///
/// The host address is IPv4, or IPv6 in brackets (`[::1]:8080:80`, `[::]:8080:80`); absent, it is
/// `0.0.0.0`, every address of both families. An IPv4-mapped IPv6 address stands for the IPv4
/// address it maps. Ranges on both sides must have the same length, but for a host range with
/// one container port (`8000-8010:80`), one mapping whose host port the daemon chooses from the
/// range; the protocol defaults to TCP.
/// A missing or zero host port (`80`, `0:80`, `127.0.0.1::80`, `80-82`) gives mappings with host
/// port 0, each of which the daemon gives a free port of its choosing, as Docker does.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, PortSpecError> {
    if spec.is_empty() {
        return Err(PortSpecError::Empty);
    }
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((ports, proto)) => {
            let proto = proto
                .parse::<PortProto>()
                .map_err(|_| PortSpecError::BadProto { proto: proto.to_owned(), spec: spec.to_owned() })?;
            (ports, proto)
        }
        None => (spec, PortProto::Tcp),
    };
    // `[IPV6]:` first: its colons are not separators.
    let (bracketed, ports) = match ports.strip_prefix('[') {
        Some(rest) => match rest.split_once("]:") {
            Some((ip, rest)) => (Some(ip), rest),
            None => {
                let ip = rest.split_once(']').map_or(rest, |(ip, _)| ip);
                return Err(PortSpecError::BadHostIp { ip: ip.to_owned(), spec: spec.to_owned() });
            }
        },
        None => (None, ports),
    };
    let bad_ip = |ip: &str| PortSpecError::BadHostIp { ip: ip.to_owned(), spec: spec.to_owned() };
    let parts: Vec<&str> = ports.split(':').collect();
    let host_ip_named = bracketed.is_some() || parts.len() == 3;
    let (host_ip, host, container) = match (bracketed, parts.as_slice()) {
        (Some(ip), [host, container]) => {
            let host_ip = ip.parse::<IpAddr>().map_err(|_| bad_ip(ip))?.to_canonical();
            (host_ip, *host, *container)
        }
        (Some(_), _) => return Err(PortSpecError::TooManyParts(spec.to_owned())),
        (None, [container]) => (unspecified(), "", *container),
        (None, [host, container]) => (unspecified(), *host, *container),
        (None, [ip, host, container]) => {
            (IpAddr::V4(ip.parse::<Ipv4Addr>().map_err(|_| bad_ip(ip))?), *host, *container)
        }
        // An IPv6 address without brackets.
        _ if ports.contains("::") || parts.len() > 4 => return Err(bad_ip(&parts[..parts.len() - 2].join(":"))),
        _ => return Err(PortSpecError::TooManyParts(spec.to_owned())),
    };
    let (container_start, container_end) = parse_range("container port", container, spec)?;
    if host.is_empty() || host == "0" {
        // A random host port for each container port.
        return Ok((container_start..=container_end)
            .map(|container_port| PortMapping {
                host_ip,
                host_port: 0,
                container_port,
                proto,
                host_port_end: 0,
                host_ip_named,
            })
            .collect());
    }
    let (host_start, host_end) = parse_range("host port", host, spec)?;
    if host_start == 0 {
        return Err(PortSpecError::HostPortZero(spec.to_owned()));
    }
    let host_len = u32::from(host_end - host_start) + 1;
    let container_len = u32::from(container_end - container_start) + 1;
    if container_len == 1 && host_len > 1 {
        // Any free port of the range, the daemon's choice.
        let container_port = container_start;
        return Ok(vec![PortMapping {
            host_ip,
            host_port: host_start,
            container_port,
            proto,
            host_port_end: host_end,
            host_ip_named,
        }]);
    }
    if host_len != container_len {
        return Err(PortSpecError::RangeLengths {
            host: host.to_owned(),
            host_len,
            container: container.to_owned(),
            container_len,
            spec: spec.to_owned(),
        });
    }
    Ok((host_start..=host_end)
        .zip(container_start..=container_end)
        .map(|(host_port, container_port)| PortMapping {
            host_ip,
            host_port,
            container_port,
            proto,
            host_port_end: 0,
            host_ip_named,
        })
        .collect())
}

/// Parses `PORT` or `START-END` (ports 1 to 65535; a host port of 0 is caught by the caller).
fn parse_range(what: &'static str, value: &str, spec: &str) -> Result<(u16, u16), PortSpecError> {
    let bad = || PortSpecError::BadPort { what, value: value.to_owned(), spec: spec.to_owned() };
    let port = |s: &str| -> Result<u16, PortSpecError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u16>().map_err(|_| bad())
    };
    let (start, end) = match value.split_once('-') {
        Some((start, end)) => (port(start)?, port(end)?),
        None => {
            let p = port(value)?;
            (p, p)
        }
    };
    if start == 0 && what != "host port" {
        return Err(bad());
    }
    if end == 0 && start != 0 {
        return Err(bad());
    }
    if end < start {
        return Err(PortSpecError::ReversedRange { what, value: value.to_owned(), spec: spec.to_owned() });
    }
    Ok((start, end))
}

/// The host addresses a mapping is listened on, as `docker port` shows them: its own, and for a
/// mapping on every address also `[::]:PORT` when the daemon's host has IPv6 (`ipv6`, the
/// daemon's [`crate::proto::SandboxInfo::listens_ipv6`]), as Docker lists both.
fn shown_hosts(m: &PortMapping, ipv6: bool) -> impl Iterator<Item = String> + '_ {
    let listened = m.listen_addresses().filter(move |&(_, optional)| ipv6 || !optional);
    listened.map(|(ip, _)| std::net::SocketAddr::new(ip, m.host_port).to_string())
}

/// What `docker port SANDBOX` prints, one line per mapping and address (`80/tcp -> 0.0.0.0:8080`,
/// and `80/tcp -> [::]:8080` with `ipv6`, see [`shown_hosts`]), sorted as Docker sorts them
/// (natural order of the whole line).
pub fn docker_port_lines<'a>(mappings: impl IntoIterator<Item = &'a PortMapping>, ipv6: bool) -> Vec<String> {
    let mut lines: Vec<String> = mappings
        .into_iter()
        .flat_map(|m| shown_hosts(m, ipv6).map(move |host| format!("{} -> {host}", m.container_display())))
        .collect();
    lines.sort_by(|a, b| natural_cmp(a, b));
    lines
}

/// Why [`docker_port_lookup`] has nothing to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortLookupError {
    /// The PORT argument is not a port number.
    #[error("invalid port ({0})")]
    InvalidPort(String),
    /// The PROTO part is neither `tcp` nor `udp`, or the port is not published.
    #[error("No public port '{port}' published for {sandbox}")]
    NotPublished {
        /// The port asked for, as `PORT/PROTO`.
        port: String,
        /// The sandbox.
        sandbox: String,
    },
}

/// What `docker port SANDBOX PORT[/PROTO]` prints: the host side of every mapping of that
/// container port (`0.0.0.0:8080`, and `[::]:8080` with `ipv6`, see [`shown_hosts`]), sorted as
/// Docker sorts them. The protocol defaults to TCP.
pub fn docker_port_lookup<'a>(
    sandbox: &str,
    port: &str,
    mappings: impl IntoIterator<Item = &'a PortMapping>,
    ipv6: bool,
) -> Result<Vec<String>, PortLookupError> {
    let (number, proto) = port_query(port);
    let container_port: u16 = number.parse().map_err(|_| PortLookupError::InvalidPort(number.to_owned()))?;
    let not_published =
        || PortLookupError::NotPublished { port: format!("{number}/{proto}"), sandbox: sandbox.to_owned() };
    let proto: PortProto = proto.parse().map_err(|_| not_published())?;
    let mut lines: Vec<String> = mappings
        .into_iter()
        .filter(|m| (m.container_port, m.proto) == (container_port, proto))
        .flat_map(|m| shown_hosts(m, ipv6))
        .collect();
    if lines.is_empty() {
        return Err(not_published());
    }
    lines.sort_by(|a, b| natural_cmp(a, b));
    Ok(lines)
}

/// The number and protocol parts of `docker port`'s `PORT[/PROTO]`
/// (TCP when the protocol is left out).
fn port_query(port: &str) -> (&str, &str) {
    match port.split_once('/') {
        Some((number, proto)) if !proto.is_empty() => (number, proto),
        Some((number, _)) => (number, "tcp"),
        None => (port, "tcp"),
    }
}

/// Natural string order as Docker's CLI sorts `docker port` lines (`sortorder.NaturalLess`):
/// runs of digits compare as numbers (fewer leading zeros first on a tie), digits sort before
/// other bytes, other bytes compare bytewise, and a prefix sorts first.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return if da { Ordering::Less } else { Ordering::Greater };
        }
        if !da {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
            continue;
        }
        let zeros = |s: &[u8], mut k: usize| {
            while k < s.len() && s[k] == b'0' {
                k += 1;
            }
            k
        };
        let digits = |s: &[u8], mut k: usize| {
            while k < s.len() && s[k].is_ascii_digit() {
                k += 1;
            }
            k
        };
        let (nz_a, nz_b) = (zeros(a, i), zeros(b, j));
        let (end_a, end_b) = (digits(a, nz_a), digits(b, nz_b));
        let by_number = (end_a - nz_a).cmp(&(end_b - nz_b)).then_with(|| a[nz_a..end_a].cmp(&b[nz_b..end_b]));
        if by_number != Ordering::Equal {
            return by_number;
        }
        if nz_a != nz_b {
            return nz_a.cmp(&nz_b);
        }
        i = end_a;
        j = end_b;
    }
    (a.len() - i).cmp(&(b.len() - j))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapping as a spec gives it: one with an address other than
    /// `0.0.0.0` named it.
    fn m(ip: &str, host_port: u16, container_port: u16, proto: PortProto) -> PortMapping {
        let host_ip_named = ip != "0.0.0.0";
        PortMapping { host_ip: ip.parse().unwrap(), host_port, container_port, proto, host_port_end: 0, host_ip_named }
    }

    #[test]
    fn a_spec_that_names_its_address_says_so() {
        let named = |spec: &str| parse_publish(spec).unwrap().iter().map(|m| m.host_ip_named).collect::<Vec<_>>();
        for spec in ["0.0.0.0:8080:80", "0.0.0.0::80", "0.0.0.0:8000-8010:80", "[::]:8080:80", "127.0.0.1:1-2:1-2"] {
            assert!(named(spec).iter().all(|n| *n), "{spec}");
        }
        for spec in ["8080:80", "80", ":80", "8000-8010:80", "1-2:1-2/udp"] {
            assert!(named(spec).iter().all(|n| !n), "{spec}");
        }
        // On the wire only when set; a published mapping answers either way.
        let explicit = parse_publish("0.0.0.0:8080:80").unwrap()[0];
        let json = serde_json::to_value(explicit).unwrap();
        assert_eq!(json["host_ip_named"], true);
        assert_eq!(serde_json::from_value::<PortMapping>(json).unwrap(), explicit);
        assert!(serde_json::to_value(PortMapping::tcp(8080, 80)).unwrap().get("host_ip_named").is_none());
        assert_ne!(explicit, PortMapping::tcp(8080, 80));
        assert!(PortMapping::tcp(8080, 80).answers(&explicit));
        assert!(PortMapping::tcp(8080, 80).answers(&parse_publish("0.0.0.0::80").unwrap()[0]));
        assert_eq!(explicit.to_string().parse::<PortMapping>().unwrap(), explicit);
    }

    #[test]
    fn good_specs() {
        use PortProto::{Tcp, Udp};
        assert_eq!(parse_publish("8080:80").unwrap(), [m("0.0.0.0", 8080, 80, Tcp)]);
        assert_eq!(parse_publish("8080:80/tcp").unwrap(), [m("0.0.0.0", 8080, 80, Tcp)]);
        assert_eq!(parse_publish("53:53/udp").unwrap(), [m("0.0.0.0", 53, 53, Udp)]);
        assert_eq!(parse_publish("53:53/UDP").unwrap(), [m("0.0.0.0", 53, 53, Udp)]);
        assert_eq!(parse_publish("127.0.0.1:8080:80").unwrap(), [m("127.0.0.1", 8080, 80, Tcp)]);
        assert_eq!(parse_publish("65535:1").unwrap(), [m("0.0.0.0", 65535, 1, Tcp)]);
        assert_eq!(
            parse_publish("10.0.0.1:8000-8002:9000-9002/udp").unwrap(),
            [m("10.0.0.1", 8000, 9000, Udp), m("10.0.0.1", 8001, 9001, Udp), m("10.0.0.1", 8002, 9002, Udp)]
        );
        assert_eq!(parse_publish("7-7:8-8").unwrap(), [m("0.0.0.0", 7, 8, Tcp)]);
        assert_eq!(parse_publish("1-65535:1-65535").unwrap().len(), 65535);
        // IPv6 host addresses, in brackets.
        assert_eq!(parse_publish("[::1]:8080:80").unwrap(), [m("::1", 8080, 80, Tcp)]);
        assert_eq!(parse_publish("[::]:8080:80").unwrap(), [m("::", 8080, 80, Tcp)]);
        assert_eq!(
            parse_publish("[fd00:1::5]:53-54:53-54/udp").unwrap(),
            [m("fd00:1::5", 53, 53, Udp), m("fd00:1::5", 54, 54, Udp)]
        );
        assert_eq!(parse_publish("[::ffff:127.0.0.1]:1:2").unwrap(), [m("127.0.0.1", 1, 2, Tcp)], "mapped: IPv4");
        assert_eq!(parse_publish("[10.0.0.1]:1:2").unwrap(), [m("10.0.0.1", 1, 2, Tcp)]);
        // No host port, or 0: the daemon chooses one per container port.
        assert_eq!(parse_publish("80").unwrap(), [m("0.0.0.0", 0, 80, Tcp)]);
        assert_eq!(parse_publish(":80").unwrap(), [m("0.0.0.0", 0, 80, Tcp)]);
        assert_eq!(parse_publish("0:53/udp").unwrap(), [m("0.0.0.0", 0, 53, Udp)]);
        assert_eq!(parse_publish("127.0.0.1::80").unwrap(), [m("127.0.0.1", 0, 80, Tcp)]);
        assert_eq!(parse_publish("[::1]::80").unwrap(), [m("::1", 0, 80, Tcp)]);
        assert_eq!(parse_publish("[::1]:0:80").unwrap(), [m("::1", 0, 80, Tcp)]);
        assert_eq!(
            parse_publish("80-82").unwrap(),
            [m("0.0.0.0", 0, 80, Tcp), m("0.0.0.0", 0, 81, Tcp), m("0.0.0.0", 0, 82, Tcp)]
        );
        assert!(parse_publish("80").unwrap()[0].is_random());
        // A host range for one container port: any free port of it.
        let range = parse_publish("127.0.0.1:8000-8010:80").unwrap();
        assert_eq!(range, [PortMapping { host_port_end: 8010, ..m("127.0.0.1", 8000, 80, Tcp) }]);
        assert!(range[0].is_host_range() && range[0].is_chosen_by_daemon() && !range[0].is_random());
        assert_eq!(range[0].to_string(), "127.0.0.1:8000-8010:80/tcp");
        assert_eq!(range[0].to_string().parse::<PortMapping>().unwrap(), range[0]);
        let six = parse_publish("[::1]:53-54:53/udp").unwrap()[0];
        assert_eq!(six.to_string(), "[::1]:53-54:53/udp");
        assert_eq!(six.to_string().parse::<PortMapping>().unwrap(), six);
        assert_eq!(parse_publish("8000-8001:80-81").unwrap().len(), 2, "equal lengths map port by port");
    }

    #[test]
    fn a_published_mapping_answers_the_request_that_made_it() {
        let given = m("0.0.0.0", 8004, 80, PortProto::Tcp);
        let asked = |spec: &str| parse_publish(spec).unwrap()[0];
        for spec in ["8004:80", "80", "0:80", "8000-8010:80", "8004-8005:80"] {
            assert!(given.answers(&asked(spec)), "{spec}");
        }
        for spec in ["8005:80", "81", "80/udp", "127.0.0.1::80", "8005-8010:80", "8000-8003:80"] {
            assert!(!given.answers(&asked(spec)), "{spec}");
        }
    }

    #[test]
    fn bad_specs_name_the_bad_part() {
        let cases: &[(&str, &str)] = &[
            ("", "empty port spec"),
            ("0-3:80-83", "starts at 0"),
            ("0-0:80", "starts at 0"),
            ("8080:0", "invalid container port \"0\""),
            ("8080:80/sctp", "invalid protocol \"sctp\""),
            ("8080:80/", "invalid protocol \"\""),
            ("x:80", "invalid host port \"x\""),
            ("8080:x", "invalid container port \"x\""),
            ("65536:80", "invalid host port \"65536\""),
            ("+80:80", "invalid host port \"+80\""),
            ("8080:80-", "invalid container port \"80-\""),
            ("8080:80-81", "differ in length"),
            ("8080-8089:80-81", "(10)"),
            ("8090-8080:80-90", "invalid host port range \"8090-8080\""),
            ("8080-8090:90-80", "invalid container port range \"90-80\""),
            ("localhost:8080:80", "invalid host IP \"localhost\""),
            ("1.2.3:8080:80", "invalid host IP \"1.2.3\""),
            ("[::1:8080:80", "invalid host IP \"::1:8080:80\""),
            ("[::1]8080:80", "invalid host IP \"::1\""),
            ("[fe80::1%eth0]:8080:80", "invalid host IP \"fe80::1%eth0\""),
            ("[::1]:8080", "invalid port spec"),
            ("[::1]:1:2:3", "invalid port spec"),
            ("[::1]:0-1:80-81", "starts at 0"),
            ("x", "invalid container port \"x\""),
            ("::1:8080:80", "an IPv6 address in brackets"),
            ("1:2:3:4", "invalid port spec"),
        ];
        for (spec, needle) in cases {
            let e = parse_publish(spec).expect_err(spec).to_string();
            assert!(e.contains(needle), "{spec:?}: {e:?} lacks {needle:?}");
            if !spec.is_empty() {
                assert!(e.contains(&format!("{spec:?}")), "{spec:?}: {e:?} does not quote the spec");
            }
        }
    }

    #[test]
    fn display_parse_and_serde_round_trip() {
        let one = m("10.1.2.3", 8443, 443, PortProto::Udp);
        assert_eq!(one.to_string(), "10.1.2.3:8443:443/udp");
        assert_eq!(one.to_string().parse::<PortMapping>().unwrap(), one);
        assert!("8000-8001:80-81".parse::<PortMapping>().unwrap_err().to_string().contains("2 ports"));
        // As published (the request's flag cleared).
        let published = PortMapping { host_ip_named: false, ..one };
        let json = serde_json::to_value(published).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"host_ip": "10.1.2.3", "host_port": 8443, "container_port": 443, "proto": "udp"})
        );
        assert_eq!(serde_json::from_value::<PortMapping>(json).unwrap(), published);
        let short: PortMapping = serde_json::from_str(r#"{"host_port":8080,"container_port":80}"#).unwrap();
        assert_eq!(short, PortMapping::tcp(8080, 80));
        assert!(
            serde_json::from_str::<PortMapping>(r#"{"host_port":8080,"container_port":80,"proto":"sctp"}"#).is_err()
        );
        assert_eq!(one.host_key_display(), "10.1.2.3:8443/udp");
        assert_eq!(PortMapping::tcp(8080, 80).host_key_display(), "8080/tcp");
        let six = m("fd00::7", 8443, 443, PortProto::Tcp);
        assert_eq!(six.to_string(), "[fd00::7]:8443:443/tcp");
        assert_eq!(six.to_string().parse::<PortMapping>().unwrap(), six);
        assert_eq!(
            (six.host_display(), six.host_key_display()),
            ("[fd00::7]:8443".into(), "[fd00::7]:8443/tcp".into())
        );
        assert_eq!(m("::", 1, 2, PortProto::Udp).host_key_display(), "[::]:1/udp");
        let json = serde_json::to_value(six).unwrap();
        assert_eq!(json["host_ip"], "fd00::7");
        assert_eq!(serde_json::from_value::<PortMapping>(json).unwrap(), six);
    }

    #[test]
    fn every_address_means_both_families() {
        let all: Vec<(IpAddr, bool)> = PortMapping::tcp(8080, 80).listen_addresses().collect();
        assert_eq!(all, [("0.0.0.0".parse().unwrap(), false), ("::".parse().unwrap(), true)]);
        for ip in ["::", "::1", "127.0.0.1"] {
            let v: Vec<(IpAddr, bool)> = m(ip, 1, 1, PortProto::Tcp).listen_addresses().collect();
            assert_eq!(v, [(ip.parse().unwrap(), false)], "{ip} is that address only");
        }
    }

    #[test]
    fn host_overlap_rules() {
        let any = PortMapping::tcp(8080, 80);
        let one = m("10.0.0.1", 8080, 81, PortProto::Tcp);
        let other = m("10.0.0.2", 8080, 81, PortProto::Tcp);
        assert!(any.host_overlaps(&one) && one.host_overlaps(&any));
        assert!(!one.host_overlaps(&other));
        assert!(one.host_overlaps(&one));
        assert!(!any.host_overlaps(&m("0.0.0.0", 8080, 80, PortProto::Udp)));
        assert!(!any.host_overlaps(&PortMapping::tcp(8081, 80)));
        // IPv6: 0.0.0.0 listens on [::] too; [::] covers IPv6 addresses only.
        let (any6, lo6, lo4) = (
            m("::", 8080, 1, PortProto::Tcp),
            m("::1", 8080, 1, PortProto::Tcp),
            m("127.0.0.1", 8080, 1, PortProto::Tcp),
        );
        for (a, b, overlap) in [
            (any, any6, true),
            (any, lo6, true),
            (any6, lo6, true),
            (any6, lo4, false),
            (lo4, lo6, false),
            (lo6, lo6, true),
            (lo6, m("::2", 8080, 1, PortProto::Tcp), false),
            (any6, m("::", 8081, 1, PortProto::Tcp), false),
        ] {
            assert_eq!(a.host_overlaps(&b), overlap, "{a} vs {b}");
            assert_eq!(b.host_overlaps(&a), overlap, "{b} vs {a}");
        }
    }

    #[test]
    fn docker_port_output() {
        let maps = [
            PortMapping::tcp(8080, 80),
            m("127.0.0.1", 9000, 9000, PortProto::Udp),
            PortMapping::tcp(8443, 443),
            PortMapping::tcp(10080, 1000),
            m("127.0.0.1", 8081, 80, PortProto::Tcp),
            PortMapping::tcp(2222, 22),
            m("::1", 8082, 80, PortProto::Tcp),
        ];
        assert_eq!(
            docker_port_lines(&maps, false),
            [
                "22/tcp -> 0.0.0.0:2222",
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> 127.0.0.1:8081",
                "80/tcp -> [::1]:8082",
                "443/tcp -> 0.0.0.0:8443",
                "1000/tcp -> 0.0.0.0:10080",
                "9000/udp -> 127.0.0.1:9000",
            ]
        );
        assert_eq!(
            docker_port_lookup("web", "80", &maps, false).unwrap(),
            ["0.0.0.0:8080", "127.0.0.1:8081", "[::1]:8082"]
        );
        assert_eq!(
            docker_port_lookup("web", "80/tcp", &maps, false).unwrap(),
            ["0.0.0.0:8080", "127.0.0.1:8081", "[::1]:8082"]
        );
        assert_eq!(docker_port_lookup("web", "9000/udp", &maps, false).unwrap(), ["127.0.0.1:9000"]);
        assert_eq!(
            docker_port_lookup("web", "81", &maps, false).unwrap_err().to_string(),
            "No public port '81/tcp' published for web"
        );
        assert_eq!(
            docker_port_lookup("web", "9000", &maps, false).unwrap_err().to_string(),
            "No public port '9000/tcp' published for web"
        );
        assert_eq!(
            docker_port_lookup("web", "80/sctp", &maps, false).unwrap_err().to_string(),
            "No public port '80/sctp' published for web"
        );
        assert_eq!(docker_port_lookup("web", "http", &maps, false).unwrap_err().to_string(), "invalid port (http)");
        assert!(docker_port_lines(&[], false).is_empty());
        // A host with IPv6 listens on [::] too for mappings on every address, and Docker lists it.
        assert_eq!(
            docker_port_lines(&maps[..2], true),
            ["80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080", "9000/udp -> 127.0.0.1:9000"]
        );
        // The mappings `port web 80 --json` gives: of that port and protocol only.
        let chosen: Vec<&PortMapping> = maps.iter().filter(|m| m.answers_port_query("80")).collect();
        assert_eq!(chosen.len(), 3);
        assert!(maps.iter().filter(|m| m.answers_port_query("9000/udp")).all(|m| m.host_port == 9000));
        assert!(!maps.iter().any(|m| m.answers_port_query("9000/tcp") || m.answers_port_query("x")));
        assert_eq!(
            docker_port_lookup("web", "80", &maps, true).unwrap(),
            ["0.0.0.0:8080", "127.0.0.1:8081", "[::1]:8082", "[::]:8080"]
        );
    }

    #[test]
    fn natural_order_matches_sortorder() {
        use Ordering::{Equal, Greater, Less};
        for (a, b, want) in [
            ("2", "10", Less),
            ("a2", "a10", Less),
            ("a10", "a2", Greater),
            ("1", "a", Less),
            ("a", "1", Greater),
            ("01", "1", Greater),
            ("1", "01", Less),
            ("x", "xy", Less),
            ("abc", "abc", Equal),
            ("80/tcp -> 0.0.0.0:8080", "80/tcp -> 0.0.0.0:880", Greater),
        ] {
            assert_eq!(natural_cmp(a, b), want, "{a:?} vs {b:?}");
        }
    }
}
