//! What the embedded DNS knows: per network, the names of its endpoints
//! (sandbox names and aliases) and their addresses, and per asking port,
//! which networks the asker may see names of.
//!
//! The control plane builds a fresh [`Directory`] from its model after every
//! change and hands it to the datapath, which owns it from then on (only the
//! round-robin positions change afterwards).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

/// The caller's id of a network (the datapath's network index).
pub type NetKey = u32;
/// The caller's id of the port a query arrived on (the datapath's port id).
pub type PortKey = u32;

/// One sandbox's view, as seen from one of its ports: who it is and which
/// names it may resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    /// The endpoint's IPv4 address on the port's network, if it has one: a
    /// query from this port with another source address is refused
    /// (spoofed).
    pub address: Option<Ipv4Addr>,
    /// The endpoint's IPv6 address on the port's network, if it has one
    /// (the same rule holds for queries over IPv6).
    pub address6: Option<Ipv6Addr>,
    /// The port's network.
    pub network: NetKey,
    /// The sandbox's networks, the port's own first: names are looked up in
    /// this order, the first network that has the name answers.
    pub scope: Vec<NetKey>,
    /// False when every network of the sandbox is internal: names the switch
    /// does not own are answered NXDOMAIN rather than forwarded.
    pub forwarding: bool,
    /// The sandbox's own upstream servers (`--dns`); empty means the
    /// daemon's.
    pub upstreams: Arc<[SocketAddr]>,
}

/// The addresses of one family one name stands for on one network.
#[derive(Debug, Clone)]
struct Rotation<A> {
    /// In endpoint order; answers rotate through them.
    addresses: Vec<A>,
    /// Where the next answer's rotation starts (a `Cell`: lookups move it
    /// through a shared reference, the directory being owned by one thread).
    next: Cell<usize>,
    /// The sandboxes the addresses belong to (for listings), parallel to
    /// `addresses`.
    sandboxes: Vec<String>,
}

impl<A> Default for Rotation<A> {
    fn default() -> Self {
        Rotation { addresses: Vec::new(), next: Cell::new(0), sandboxes: Vec::new() }
    }
}

impl<A: Copy + PartialEq> Rotation<A> {
    fn add(&mut self, address: A, sandbox: &str) {
        if !self.addresses.contains(&address) {
            self.addresses.push(address);
            self.sandboxes.push(sandbox.to_owned());
        }
    }

    /// The addresses, rotated for this answer; with `advance` the next
    /// answer starts one further.
    fn rotated(&self, advance: bool) -> Vec<A> {
        let n = self.addresses.len().max(1);
        let start = self.next.get() % n;
        if advance {
            self.next.set((start + 1) % n);
        }
        let mut rotated = self.addresses.clone();
        rotated.rotate_left(start);
        rotated
    }
}

/// The addresses one name stands for on one network, per family: a name
/// with only IPv4 addresses has no AAAA records and vice versa.
#[derive(Debug, Clone, Default)]
struct Entry {
    v4: Rotation<Ipv4Addr>,
    v6: Rotation<Ipv6Addr>,
}

/// One network's names.
#[derive(Debug, Clone)]
struct Zone {
    /// Lowercase network name: `NAME.NETWORK` resolves on this network.
    name: String,
    /// The IPv4 subnet: the switch answers reverse lookups of its
    /// addresses (`in-addr.arpa`).
    subnet: Option<Ipv4Net>,
    /// The IPv6 subnet, likewise (`ip6.arpa`).
    subnet6: Option<Ipv6Net>,
    /// Lowercase name → addresses.
    names: HashMap<String, Entry>,
    /// Address → (`sandbox.network` lowercase, for PTR; the sandbox's name
    /// as given, for listings).
    reverse: HashMap<IpAddr, (String, String)>,
}

impl Zone {
    /// Whether `address` lies in one of the zone's subnets.
    fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => self.subnet.is_some_and(|s| s.contains(&a)),
            IpAddr::V6(a) => self.subnet6.is_some_and(|s| s.contains(&a)),
        }
    }
}

/// Which families' rotations a lookup moves on: only answers that carry
/// the addresses should (a client asking for A and AAAA together must
/// still see the order of each change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Neither (a lookup that answers no addresses).
    None,
    /// The IPv4 addresses' (an A answer).
    V4,
    /// The IPv6 addresses' (an AAAA answer).
    V6,
    /// Both (an ANY answer).
    Both,
}

/// A name matched in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The name's addresses of each family, rotated for this answer (DNS
    /// round robin); either list may be empty.
    Addresses {
        /// IPv4 addresses (A records).
        v4: Vec<Ipv4Addr>,
        /// IPv6 addresses (AAAA records).
        v6: Vec<Ipv6Addr>,
    },
    /// A reverse name for an assigned address: the name it points to
    /// (`sandbox.network`, no trailing dot).
    Pointer(String),
    /// A reverse name inside one of the asker's subnets that no endpoint
    /// holds: the switch owns the zone, so the name does not exist.
    NoSuchAddress,
}

/// One record, for listings (`vswitchctl dns ls`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// The network it lives on.
    pub network: NetKey,
    /// Owner name, lowercase, no trailing dot.
    pub name: String,
    /// `"A"`, `"AAAA"` or `"PTR"`.
    pub record_type: &'static str,
    /// Address (A) or target name (PTR).
    pub value: String,
    /// The sandbox it belongs to.
    pub sandbox: String,
}

/// Names, addresses and askers of every network with the embedded DNS.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    zones: HashMap<NetKey, Zone>,
    askers: HashMap<PortKey, Asker>,
    by_address: HashMap<(NetKey, IpAddr), PortKey>,
    /// Hardware addresses of the endpoints, for asking a server that runs
    /// in a sandbox on the network.
    macs: HashMap<(NetKey, IpAddr), [u8; 6]>,
    /// Every address of an asker's sandbox, on all its networks, by the
    /// asker's port: under Linux's weak host model a sandbox may send from
    /// any of them through any of its interfaces (a socket bound to its
    /// address on one network, routed through another's gateway).
    sandbox_addresses: HashMap<PortKey, Arc<[IpAddr]>>,
}

/// DNS names compare case-insensitively; the directory keeps them lowercase.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Directory {
    /// An empty directory: every query is forwarded or refused.
    pub fn new() -> Directory {
        Directory::default()
    }

    fn zone(&mut self, network: NetKey, name: &str) -> &mut Zone {
        self.zones.entry(network).or_insert_with(|| Zone {
            name: key(name),
            subnet: None,
            subnet6: None,
            names: HashMap::new(),
            reverse: HashMap::new(),
        })
    }

    /// Adds a network whose gateway serves DNS, with its IPv4 subnet.
    pub fn add_network(&mut self, network: NetKey, name: &str, subnet: Ipv4Net) {
        self.zone(network, name).subnet = Some(subnet);
    }

    /// Adds a network whose gateway serves DNS over IPv6, with its IPv6
    /// subnet (a dual-stack network is added with both calls, an IPv6-only
    /// one with this one alone).
    pub fn add_network6(&mut self, network: NetKey, name: &str, subnet: Ipv6Net) {
        self.zone(network, name).subnet6 = Some(subnet);
    }

    /// Adds the endpoint of `sandbox` on `network` at `address` (IPv4 or
    /// IPv6; an endpoint with both is added once per address): its sandbox
    /// name and `aliases` resolve to `address` on that network (A or
    /// AAAA), and `address` resolves back to `sandbox.network`. Unknown
    /// networks are ignored.
    pub fn add_endpoint(&mut self, network: NetKey, sandbox: &str, aliases: &[String], address: impl Into<IpAddr>) {
        let address = address.into();
        let Some(zone) = self.zones.get_mut(&network) else { return };
        let mut names: Vec<String> =
            std::iter::once(sandbox).chain(aliases.iter().map(String::as_str)).map(key).collect();
        names.sort();
        names.dedup();
        for name in names {
            let entry = zone.names.entry(name).or_default();
            match address {
                IpAddr::V4(a) => entry.v4.add(a, sandbox),
                IpAddr::V6(a) => entry.v6.add(a, sandbox),
            }
        }
        zone.reverse.insert(address, (format!("{}.{}", key(sandbox), zone.name), sandbox.to_owned()));
    }

    /// Records that `address` (either family) on `network` is at hardware
    /// address `mac`.
    pub fn add_mac(&mut self, network: NetKey, address: impl Into<IpAddr>, mac: [u8; 6]) {
        self.macs.insert((network, address.into()), mac);
    }

    /// The hardware address of endpoint `address` (either family) on
    /// `network`, if known.
    pub fn mac_of(&self, network: NetKey, address: impl Into<IpAddr>) -> Option<[u8; 6]> {
        self.macs.get(&(network, address.into())).copied()
    }

    /// Registers the port a sandbox asks from.
    pub fn add_asker(&mut self, port: PortKey, asker: Asker) {
        if let Some(address) = asker.address {
            self.by_address.insert((asker.network, address.into()), port);
        }
        if let Some(address) = asker.address6 {
            self.by_address.insert((asker.network, address.into()), port);
        }
        self.askers.insert(port, asker);
    }

    /// Forgets the asker behind `port` (its port was removed): its id may
    /// be reused by another endpoint before the next directory arrives,
    /// and that endpoint is not the one that asked.
    pub fn forget_port(&mut self, port: PortKey) {
        if self.askers.remove(&port).is_some() {
            self.by_address.retain(|_, p| *p != port);
        }
        self.sandbox_addresses.remove(&port);
    }

    /// The asker behind `port`, if the port is an endpoint the switch knows.
    pub fn asker(&self, port: PortKey) -> Option<&Asker> {
        self.askers.get(&port)
    }

    /// The asker holding `address` on `network` (TCP clients are known by
    /// address; the datapath has checked that frames to the DNS port carry
    /// their port's own address).
    pub fn asker_by_address(&self, network: NetKey, address: impl Into<IpAddr>) -> Option<&Asker> {
        self.by_address.get(&(network, address.into())).and_then(|p| self.askers.get(p))
    }

    /// Whether `address` (either family) belongs to endpoint `port`: frames
    /// to the DNS server from a port with another source address are
    /// spoofed.
    pub fn owns_address(&self, port: PortKey, address: impl Into<IpAddr>) -> bool {
        let address = address.into();
        self.askers.get(&port).is_some_and(|a| a.owns(address))
    }

    /// Whether `port` is an endpoint the directory knows and `address`
    /// (either family) is not one of its own: a packet it sends from that
    /// address claims someone else's. A port the directory does not know
    /// (a host interface attached as an uplink, which stands for a whole
    /// LAN) claims nothing.
    pub fn is_foreign_to(&self, port: PortKey, address: impl Into<IpAddr>) -> bool {
        let address = address.into();
        self.askers.get(&port).is_some_and(|a| !a.owns(address))
    }

    /// Records every address of the sandbox behind asker `port`, on all
    /// its networks (see [`Directory::is_foreign_to_sandbox`]).
    pub fn set_sandbox_addresses(&mut self, port: PortKey, addresses: Arc<[IpAddr]>) {
        self.sandbox_addresses.insert(port, addresses);
    }

    /// Whether `port` is an endpoint the directory knows and `address` is
    /// none of its sandbox's addresses on any network: the weak host
    /// model's counterpart of [`Directory::is_foreign_to`], for traffic the
    /// switch routes (a sandbox on two networks may send from its address
    /// on one through the other's gateway, as Linux does when a socket is
    /// bound to that address), where the port's own address alone is
    /// required of traffic to the port's network's own services.
    pub fn is_foreign_to_sandbox(&self, port: PortKey, address: impl Into<IpAddr>) -> bool {
        let address = address.into();
        self.is_foreign_to(port, address) && !self.sandbox_addresses.get(&port).is_some_and(|a| a.contains(&address))
    }

    /// Looks `name` (any case, trailing dot or not) up in the networks of
    /// `scope`, in order: a plain name on any of them first, then
    /// `NAME.NETWORK` on a network of the scope. Reverse names
    /// (`in-addr.arpa`, `ip6.arpa`) of the scope's subnets are answered
    /// too. A hit on a name with several addresses moves the rotation of
    /// the families `advance` names on.
    pub fn lookup(&self, scope: &[NetKey], name: &str, advance: Advance) -> Option<Found> {
        let name = key(name);
        if let Some(address) = reverse_ipv4(&name) {
            return self.lookup_reverse(scope, address.into());
        }
        if let Some(address) = reverse_ipv6(&name) {
            return self.lookup_reverse(scope, address.into());
        }
        let hit = scope.iter().find(|n| self.zones.get(n).is_some_and(|z| z.names.contains_key(&name))).copied();
        let (network, base) = match hit {
            Some(network) => (network, name),
            None => scope.iter().find_map(|n| {
                let zone = self.zones.get(n)?;
                let base = name.strip_suffix(zone.name.as_str())?.strip_suffix('.')?;
                zone.names.contains_key(base).then(|| (*n, base.to_owned()))
            })?,
        };
        let entry = self.zones.get(&network)?.names.get(&base)?;
        let v4 = entry.v4.rotated(matches!(advance, Advance::V4 | Advance::Both));
        let v6 = entry.v6.rotated(matches!(advance, Advance::V6 | Advance::Both));
        Some(Found::Addresses { v4, v6 })
    }

    fn lookup_reverse(&self, scope: &[NetKey], address: IpAddr) -> Option<Found> {
        let mut inside = false;
        for zone in scope.iter().filter_map(|n| self.zones.get(n)) {
            if let Some((target, _)) = zone.reverse.get(&address) {
                return Some(Found::Pointer(target.clone()));
            }
            inside |= zone.contains(address);
        }
        inside.then_some(Found::NoSuchAddress)
    }

    /// Every record, sorted by network and name; only `network` if given.
    pub fn list(&self, network: Option<NetKey>) -> Vec<Listed> {
        let mut out = Vec::new();
        for (&net, zone) in self.zones.iter().filter(|(n, _)| network.is_none_or(|want| want == **n)) {
            for (name, entry) in &zone.names {
                let v4 = entry.v4.addresses.iter().map(|a| ("A", a.to_string())).zip(&entry.v4.sandboxes);
                let v6 = entry.v6.addresses.iter().map(|a| ("AAAA", a.to_string())).zip(&entry.v6.sandboxes);
                for ((record_type, value), sandbox) in v4.chain(v6) {
                    for owner in [name.clone(), format!("{name}.{}", zone.name)] {
                        out.push(Listed {
                            network: net,
                            name: owner,
                            record_type,
                            value: value.clone(),
                            sandbox: sandbox.clone(),
                        });
                    }
                }
            }
            for (address, (target, sandbox)) in &zone.reverse {
                out.push(Listed {
                    network: net,
                    name: reverse_name(*address),
                    record_type: "PTR",
                    value: target.clone(),
                    sandbox: sandbox.clone(),
                });
            }
        }
        out.sort();
        out
    }
}

/// `d.c.b.a.in-addr.arpa` → `a.b.c.d`; `None` for anything else (partial
/// reverse names included).
fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts = octets.split('.').map(|p| {
        // No leading zeros or signs: "010" is not a label of a reverse name.
        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) { None } else { p.parse::<u8>().ok() }
    });
    let (d, c, b, a) = (parts.next()??, parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then(|| Ipv4Addr::new(a, b, c, d))
}

/// `b.a.9.8. … .0.f.ip6.arpa` (32 nibbles, least significant first) →
/// the IPv6 address; `None` for anything else (partial names included).
fn reverse_ipv6(name: &str) -> Option<Ipv6Addr> {
    let nibbles = name.strip_suffix(".ip6.arpa")?;
    let mut bits: u128 = 0;
    let mut count = 0;
    for label in nibbles.split('.') {
        let [c] = label.as_bytes() else { return None };
        let nibble = char::from(*c).to_digit(16)?;
        if count == 32 {
            return None;
        }
        bits |= u128::from(nibble) << (4 * count);
        count += 1;
    }
    (count == 32).then(|| Ipv6Addr::from(bits))
}

impl Asker {
    /// Whether `address` is one of the asker's own.
    fn owns(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => self.address == Some(a),
            IpAddr::V6(a) => self.address6 == Some(a),
        }
    }
}

/// The reverse name of `address` (`in-addr.arpa` or `ip6.arpa`), without
/// the trailing dot.
pub fn reverse_name(address: impl Into<IpAddr>) -> String {
    match address.into() {
        IpAddr::V4(address) => {
            let [a, b, c, d] = address.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(address) => {
            let mut name = String::with_capacity(72);
            for byte in address.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    name.push('.');
                }
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    /// A name's addresses when it has IPv4 ones only.
    fn v4(v4: Vec<Ipv4Addr>) -> Found {
        Found::Addresses { v4, v6: Vec::new() }
    }

    fn two_networks() -> Directory {
        let mut d = Directory::new();
        d.add_network(1, "App", net("10.10.0.0/24"));
        d.add_network(2, "db", net("10.20.0.0/24"));
        d.add_endpoint(1, "Web", &["api".into(), "API".into()], Ipv4Addr::new(10, 10, 0, 2));
        d.add_endpoint(1, "worker", &["api".into()], Ipv4Addr::new(10, 10, 0, 3));
        d.add_endpoint(2, "pg", &[], Ipv4Addr::new(10, 20, 0, 2));
        d
    }

    #[test]
    fn names_resolve_case_insensitively_on_the_scope_only() {
        let d = two_networks();
        let web = Some(v4(vec![Ipv4Addr::new(10, 10, 0, 2)]));
        assert_eq!(d.lookup(&[1], "WEB.", Advance::V4), web);
        assert_eq!(d.lookup(&[1], "web.app", Advance::V4), web);
        assert_eq!(d.lookup(&[1], "web.APP.", Advance::V4), web);
        assert_eq!(d.lookup(&[1], "pg", Advance::V4), None, "pg lives on db only");
        assert_eq!(d.lookup(&[1], "pg.db", Advance::V4), None, "naming the network does not widen the scope");
        assert_eq!(d.lookup(&[1, 2], "pg", Advance::V4), Some(v4(vec![Ipv4Addr::new(10, 20, 0, 2)])));
        assert_eq!(d.lookup(&[1], "web.db", Advance::V4), None);
        assert_eq!(d.lookup(&[1], "app", Advance::V4), None);
    }

    #[test]
    fn shared_aliases_rotate() {
        let d = two_networks();
        let (a, b) = (Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 3));
        assert_eq!(d.lookup(&[1], "api", Advance::None), Some(v4(vec![a, b])), "AAAA and friends do not rotate");
        assert_eq!(d.lookup(&[1], "api", Advance::V4), Some(v4(vec![a, b])));
        assert_eq!(d.lookup(&[1], "api", Advance::V4), Some(v4(vec![b, a])));
        assert_eq!(d.lookup(&[1], "api.app", Advance::V4), Some(v4(vec![a, b])));
    }

    #[test]
    fn reverse_names_of_the_scope_subnets() {
        let d = two_networks();
        assert_eq!(d.lookup(&[1], "2.0.10.10.in-addr.arpa.", Advance::V4), Some(Found::Pointer("web.app".into())));
        assert_eq!(d.lookup(&[1], "9.0.10.10.in-addr.arpa", Advance::V4), Some(Found::NoSuchAddress));
        assert_eq!(
            d.lookup(&[1], "2.0.20.10.in-addr.arpa", Advance::V4),
            None,
            "another network's subnet is not ours to answer"
        );
        assert_eq!(d.lookup(&[1], "8.8.8.8.in-addr.arpa", Advance::V4), None);
        assert_eq!(d.lookup(&[1], "0.10.10.in-addr.arpa", Advance::V4), None, "partial reverse names are forwarded");
        assert_eq!(d.lookup(&[1], "02.0.10.10.in-addr.arpa", Advance::V4), None);
        assert_eq!(reverse_ipv4("1.2.3.4.5.in-addr.arpa"), None);
    }

    #[test]
    fn askers_by_port_and_address() {
        let mut d = two_networks();
        let asker = Asker {
            address: Some(Ipv4Addr::new(10, 10, 0, 2)),
            address6: None,
            network: 1,
            scope: vec![1],
            forwarding: true,
            upstreams: Arc::from(Vec::new()),
        };
        d.add_asker(30, asker.clone());
        assert_eq!(d.asker(30), Some(&asker));
        assert!(d.owns_address(30, Ipv4Addr::new(10, 10, 0, 2)));
        assert!(!d.owns_address(30, Ipv4Addr::new(10, 10, 0, 3)));
        assert!(!d.owns_address(31, Ipv4Addr::new(10, 10, 0, 2)));
        assert_eq!(d.asker_by_address(1, Ipv4Addr::new(10, 10, 0, 2)), Some(&asker));
        assert_eq!(d.asker_by_address(2, Ipv4Addr::new(10, 10, 0, 2)), None);
    }

    #[test]
    fn a_sandbox_may_route_from_any_of_its_addresses_but_no_one_elses() {
        let mut d = two_networks();
        let (own, other_net, stranger) =
            (Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 20, 0, 2), Ipv4Addr::new(10, 20, 0, 3));
        let asker = Asker {
            address: Some(own),
            address6: None,
            network: 1,
            scope: vec![1, 2],
            forwarding: true,
            upstreams: Arc::from(Vec::new()),
        };
        d.add_asker(30, asker);
        assert!(d.is_foreign_to_sandbox(30, other_net), "not told of the sandbox's other addresses yet");
        d.set_sandbox_addresses(30, Arc::from([IpAddr::V4(own), IpAddr::V4(other_net)]));
        assert!(!d.is_foreign_to_sandbox(30, own));
        assert!(!d.is_foreign_to_sandbox(30, other_net), "its address on its other network");
        assert!(d.is_foreign_to_sandbox(30, stranger));
        assert!(d.is_foreign_to(30, other_net), "the port's own services still want its own address");
        assert!(!d.is_foreign_to_sandbox(31, stranger), "an unknown port (an uplink) claims nothing");
        d.forget_port(30);
        assert!(!d.is_foreign_to_sandbox(30, stranger), "forgotten with its asker");
        d.add_asker(
            30,
            Asker {
                address: Some(own),
                address6: None,
                network: 1,
                scope: vec![1],
                forwarding: true,
                upstreams: Arc::from(Vec::new()),
            },
        );
        assert!(d.is_foreign_to_sandbox(30, other_net), "a reused port id inherits nothing");
    }

    #[test]
    fn listing() {
        let d = two_networks();
        let rows = d.list(Some(2));
        let names: Vec<(&str, &str, &str)> =
            rows.iter().map(|r| (r.name.as_str(), r.record_type, r.value.as_str())).collect();
        assert_eq!(
            names,
            [("2.0.20.10.in-addr.arpa", "PTR", "pg.db"), ("pg", "A", "10.20.0.2"), ("pg.db", "A", "10.20.0.2")]
        );
        assert_eq!(d.list(None).iter().filter(|r| r.name == "api").count(), 2);
        let mut owners: Vec<String> = d.list(None).into_iter().filter(|r| r.name == "api").map(|r| r.sandbox).collect();
        owners.sort();
        assert_eq!(owners, ["Web", "worker"]);
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// app is dual-stack (web has both families, worker IPv4 only, api on
    /// both), v6only has IPv6 alone (ns6, alias api).
    fn dual_stack() -> Directory {
        let mut d = two_networks();
        d.add_network6(1, "App", "fd00:1::/64".parse().unwrap());
        d.add_endpoint(1, "Web", &["api".into()], v6("fd00:1::2"));
        d.add_network6(3, "v6only", "fd00:3::/64".parse().unwrap());
        d.add_endpoint(3, "ns6", &["api".into()], v6("fd00:3::2"));
        d.add_endpoint(3, "other6", &["api".into()], v6("fd00:3::3"));
        d
    }

    #[test]
    fn names_carry_each_family_apart() {
        let d = dual_stack();
        let web = Found::Addresses { v4: vec![Ipv4Addr::new(10, 10, 0, 2)], v6: vec![v6("fd00:1::2")] };
        assert_eq!(d.lookup(&[1], "web", Advance::V6), Some(web));
        let worker = d.lookup(&[1], "worker.app", Advance::V6);
        assert_eq!(worker, Some(v4(vec![Ipv4Addr::new(10, 10, 0, 3)])), "IPv4 only: no AAAA");
        let ns6 = d.lookup(&[3], "ns6.v6only", Advance::V4);
        assert_eq!(ns6, Some(Found::Addresses { v4: Vec::new(), v6: vec![v6("fd00:3::2")] }), "IPv6 only: no A");
        assert_eq!(d.lookup(&[1], "ns6", Advance::Both), None, "network-scoped like A records");
        // The first network of the scope that has the name answers.
        let api = d.lookup(&[3, 1], "api", Advance::None);
        assert_eq!(api, Some(Found::Addresses { v4: Vec::new(), v6: vec![v6("fd00:3::2"), v6("fd00:3::3")] }));
    }

    #[test]
    fn each_family_rotates_on_its_own() {
        let d = dual_stack();
        let (a, b) = (v6("fd00:3::2"), v6("fd00:3::3"));
        let found = |v6: Vec<Ipv6Addr>| Some(Found::Addresses { v4: Vec::new(), v6 });
        assert_eq!(d.lookup(&[3], "api", Advance::V4), found(vec![a, b]), "an A answer leaves AAAA's order");
        assert_eq!(d.lookup(&[3], "api", Advance::V6), found(vec![a, b]));
        assert_eq!(d.lookup(&[3], "api", Advance::Both), found(vec![b, a]));
        assert_eq!(d.lookup(&[3], "api", Advance::None), found(vec![a, b]));
        let (x, y) = (Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 3));
        let Some(Found::Addresses { v4: first, .. }) = d.lookup(&[1], "api", Advance::V6) else { panic!() };
        let Some(Found::Addresses { v4: second, .. }) = d.lookup(&[1], "api", Advance::V4) else { panic!() };
        assert_eq!((first, second), (vec![x, y], vec![x, y]), "an AAAA answer leaves A's order");
    }

    #[test]
    fn ip6_arpa_names_of_the_scope_subnets() {
        let d = dual_stack();
        let name = reverse_name(v6("fd00:1::2"));
        assert_eq!(name, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa");
        assert_eq!(reverse_ipv6(&name), Some(v6("fd00:1::2")));
        assert_eq!(
            d.lookup(&[1], &format!("{}.", name.to_uppercase()), Advance::None),
            Some(Found::Pointer("web.app".into()))
        );
        assert_eq!(d.lookup(&[1], &reverse_name(v6("fd00:1::99")), Advance::None), Some(Found::NoSuchAddress));
        assert_eq!(d.lookup(&[1], &reverse_name(v6("fd00:3::2")), Advance::None), None, "not in the scope");
        assert_eq!(
            d.lookup(&[3], &reverse_name(v6("fd00:3::2")), Advance::None),
            Some(Found::Pointer("ns6.v6only".into()))
        );
        assert_eq!(d.lookup(&[1], &reverse_name(v6("2001:db8::1")), Advance::None), None);
        // Partial or malformed names are not ours.
        assert_eq!(reverse_ipv6(&name[2..]), None, "31 nibbles");
        assert_eq!(reverse_ipv6(&format!("0.{name}")), None, "33 nibbles");
        assert_eq!(reverse_ipv6(&name.replacen('2', "g", 1)), None);
        assert_eq!(reverse_ipv6(&name.replacen("2.", "20.", 1)), None);
        assert_eq!(reverse_ipv6("ip6.arpa"), None);
        assert_eq!(reverse_ipv6(".ip6.arpa"), None);
    }

    #[test]
    fn askers_own_either_family() {
        let mut d = dual_stack();
        let asker = Asker {
            address: None,
            address6: Some(v6("fd00:3::2")),
            network: 3,
            scope: vec![3],
            forwarding: true,
            upstreams: Arc::from(Vec::new()),
        };
        d.add_asker(9, asker.clone());
        assert!(d.owns_address(9, v6("fd00:3::2")));
        assert!(!d.owns_address(9, v6("fd00:3::3")));
        assert!(!d.owns_address(9, Ipv4Addr::UNSPECIFIED));
        assert_eq!(d.asker_by_address(3, v6("fd00:3::2")), Some(&asker));
        assert_eq!(d.asker_by_address(1, v6("fd00:3::2")), None);
        // Another address from a known port is foreign; any from an unknown port is not.
        assert!(!d.is_foreign_to(9, v6("fd00:3::2")));
        assert!(d.is_foreign_to(9, v6("fd00:3::3")));
        assert!(d.is_foreign_to(9, Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!d.is_foreign_to(10, v6("fd00:3::3")), "port 10 is not an endpoint the directory knows");
        d.forget_port(9);
        assert!(!d.is_foreign_to(9, v6("fd00:3::3")), "a removed port claims nothing");
        assert_eq!((d.asker(9), d.asker_by_address(3, v6("fd00:3::2"))), (None, None));
    }

    #[test]
    fn listing_aaaa_records() {
        let d = dual_stack();
        let rows = d.list(Some(3));
        let ns6: Vec<(&str, &str, &str)> = rows
            .iter()
            .filter(|r| r.sandbox == "ns6")
            .map(|r| (r.name.as_str(), r.record_type, r.value.as_str()))
            .collect();
        assert_eq!(
            ns6,
            [
                ("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.0.0.d.f.ip6.arpa", "PTR", "ns6.v6only"),
                ("api", "AAAA", "fd00:3::2"),
                ("api.v6only", "AAAA", "fd00:3::2"),
                ("ns6", "AAAA", "fd00:3::2"),
                ("ns6.v6only", "AAAA", "fd00:3::2"),
            ]
        );
    }
}
