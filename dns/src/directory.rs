//! What the embedded DNS knows: per network, the names of its endpoints
//! (sandbox names and aliases) and their addresses, and per asking port,
//! which networks the asker may see names of.
//!
//! The control plane builds a fresh [`Directory`] from its model after every
//! change and hands it to the datapath, which owns it from then on (only the
//! round-robin positions change afterwards).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::Ipv4Net;

/// The caller's id of a network (the datapath's network index).
pub type NetKey = u32;
/// The caller's id of the port a query arrived on (the datapath's port id).
pub type PortKey = u32;

/// One sandbox's view, as seen from one of its ports: who it is and which
/// names it may resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    /// The endpoint's address on the port's network: a query from this port
    /// with another source address is refused (spoofed).
    pub address: Ipv4Addr,
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

/// The addresses one name stands for on one network.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// In endpoint order; answers rotate through them.
    addresses: Vec<Ipv4Addr>,
    /// Where the next answer's rotation starts (a `Cell`: lookups move it
    /// through a shared reference, the directory being owned by one thread).
    next: Cell<usize>,
    /// The sandboxes the addresses belong to (for listings), parallel to
    /// `addresses`.
    sandboxes: Vec<String>,
}

/// One network's names.
#[derive(Debug, Clone)]
struct Zone {
    /// Lowercase network name: `NAME.NETWORK` resolves on this network.
    name: String,
    /// The subnet: the switch answers reverse lookups of its addresses.
    subnet: Ipv4Net,
    /// Lowercase name → addresses.
    names: HashMap<String, Entry>,
    /// Address → (`sandbox.network` lowercase, for PTR; the sandbox's name
    /// as given, for listings).
    reverse: HashMap<Ipv4Addr, (String, String)>,
}

/// A name matched in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The name's addresses, rotated for this answer (DNS round robin).
    Addresses(Vec<Ipv4Addr>),
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
    /// `"A"` or `"PTR"`.
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
    by_address: HashMap<(NetKey, Ipv4Addr), PortKey>,
    /// Hardware addresses of the endpoints, for asking a server that runs
    /// in a sandbox on the network.
    macs: HashMap<(NetKey, Ipv4Addr), [u8; 6]>,
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

    /// Adds a network whose gateway serves DNS.
    pub fn add_network(&mut self, network: NetKey, name: &str, subnet: Ipv4Net) {
        let zone = Zone { name: key(name), subnet, names: HashMap::new(), reverse: HashMap::new() };
        self.zones.insert(network, zone);
    }

    /// Adds the endpoint of `sandbox` on `network` at `address`: its sandbox
    /// name and `aliases` resolve to `address` on that network, and
    /// `address` resolves back to `sandbox.network`. Unknown networks are
    /// ignored.
    pub fn add_endpoint(&mut self, network: NetKey, sandbox: &str, aliases: &[String], address: Ipv4Addr) {
        let Some(zone) = self.zones.get_mut(&network) else { return };
        let mut names: Vec<String> =
            std::iter::once(sandbox).chain(aliases.iter().map(String::as_str)).map(key).collect();
        names.sort();
        names.dedup();
        for name in names {
            let entry = zone.names.entry(name).or_default();
            if !entry.addresses.contains(&address) {
                entry.addresses.push(address);
                entry.sandboxes.push(sandbox.to_owned());
            }
        }
        zone.reverse.insert(address, (format!("{}.{}", key(sandbox), zone.name), sandbox.to_owned()));
    }

    /// Records that `address` on `network` is at hardware address `mac`.
    pub fn add_mac(&mut self, network: NetKey, address: Ipv4Addr, mac: [u8; 6]) {
        self.macs.insert((network, address), mac);
    }

    /// The hardware address of endpoint `address` on `network`, if known.
    pub fn mac_of(&self, network: NetKey, address: Ipv4Addr) -> Option<[u8; 6]> {
        self.macs.get(&(network, address)).copied()
    }

    /// Registers the port a sandbox asks from.
    pub fn add_asker(&mut self, port: PortKey, asker: Asker) {
        self.by_address.insert((asker.network, asker.address), port);
        self.askers.insert(port, asker);
    }

    /// The asker behind `port`, if the port is an endpoint the switch knows.
    pub fn asker(&self, port: PortKey) -> Option<&Asker> {
        self.askers.get(&port)
    }

    /// The asker holding `address` on `network` (TCP clients are known by
    /// address; the datapath has checked that frames to the DNS port carry
    /// their port's own address).
    pub fn asker_by_address(&self, network: NetKey, address: Ipv4Addr) -> Option<&Asker> {
        self.by_address.get(&(network, address)).and_then(|p| self.askers.get(p))
    }

    /// Whether `address` belongs to endpoint `port`: frames to the DNS
    /// server from a port with another source address are spoofed.
    pub fn owns_address(&self, port: PortKey, address: Ipv4Addr) -> bool {
        self.askers.get(&port).is_some_and(|a| a.address == address)
    }

    /// Looks `name` (any case, trailing dot or not) up in the networks of
    /// `scope`, in order: a plain name on any of them first, then
    /// `NAME.NETWORK` on a network of the scope. Reverse names
    /// (`in-addr.arpa`) of the scope's subnets are answered too. With
    /// `advance`, a hit on a name with several addresses moves its rotation
    /// on (only answers that carry the addresses should: a client asking for
    /// A and AAAA together must still see the order change).
    pub fn lookup(&self, scope: &[NetKey], name: &str, advance: bool) -> Option<Found> {
        let name = key(name);
        if let Some(address) = reverse_ipv4(&name) {
            return self.lookup_reverse(scope, address);
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
        let n = entry.addresses.len().max(1);
        let start = entry.next.get() % n;
        if advance {
            entry.next.set((start + 1) % n);
        }
        let mut rotated = entry.addresses.clone();
        rotated.rotate_left(start);
        Some(Found::Addresses(rotated))
    }

    fn lookup_reverse(&self, scope: &[NetKey], address: Ipv4Addr) -> Option<Found> {
        let mut inside = false;
        for zone in scope.iter().filter_map(|n| self.zones.get(n)) {
            if let Some((target, _)) = zone.reverse.get(&address) {
                return Some(Found::Pointer(target.clone()));
            }
            inside |= zone.subnet.contains(&address);
        }
        inside.then_some(Found::NoSuchAddress)
    }

    /// Every record, sorted by network and name; only `network` if given.
    pub fn list(&self, network: Option<NetKey>) -> Vec<Listed> {
        let mut out = Vec::new();
        for (&net, zone) in self.zones.iter().filter(|(n, _)| network.is_none_or(|want| want == **n)) {
            for (name, entry) in &zone.names {
                for (address, sandbox) in entry.addresses.iter().zip(&entry.sandboxes) {
                    for owner in [name.clone(), format!("{name}.{}", zone.name)] {
                        out.push(Listed {
                            network: net,
                            name: owner,
                            record_type: "A",
                            value: address.to_string(),
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

/// The reverse name of `address`, without the trailing dot.
pub fn reverse_name(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
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
        let web = Some(Found::Addresses(vec![Ipv4Addr::new(10, 10, 0, 2)]));
        assert_eq!(d.lookup(&[1], "WEB.", true), web);
        assert_eq!(d.lookup(&[1], "web.app", true), web);
        assert_eq!(d.lookup(&[1], "web.APP.", true), web);
        assert_eq!(d.lookup(&[1], "pg", true), None, "pg lives on db only");
        assert_eq!(d.lookup(&[1], "pg.db", true), None, "naming the network does not widen the scope");
        assert_eq!(d.lookup(&[1, 2], "pg", true), Some(Found::Addresses(vec![Ipv4Addr::new(10, 20, 0, 2)])));
        assert_eq!(d.lookup(&[1], "web.db", true), None);
        assert_eq!(d.lookup(&[1], "app", true), None);
    }

    #[test]
    fn shared_aliases_rotate() {
        let d = two_networks();
        let (a, b) = (Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 3));
        assert_eq!(d.lookup(&[1], "api", false), Some(Found::Addresses(vec![a, b])), "AAAA and friends do not rotate");
        assert_eq!(d.lookup(&[1], "api", true), Some(Found::Addresses(vec![a, b])));
        assert_eq!(d.lookup(&[1], "api", true), Some(Found::Addresses(vec![b, a])));
        assert_eq!(d.lookup(&[1], "api.app", true), Some(Found::Addresses(vec![a, b])));
    }

    #[test]
    fn reverse_names_of_the_scope_subnets() {
        let d = two_networks();
        assert_eq!(d.lookup(&[1], "2.0.10.10.in-addr.arpa.", true), Some(Found::Pointer("web.app".into())));
        assert_eq!(d.lookup(&[1], "9.0.10.10.in-addr.arpa", true), Some(Found::NoSuchAddress));
        assert_eq!(
            d.lookup(&[1], "2.0.20.10.in-addr.arpa", true),
            None,
            "another network's subnet is not ours to answer"
        );
        assert_eq!(d.lookup(&[1], "8.8.8.8.in-addr.arpa", true), None);
        assert_eq!(d.lookup(&[1], "0.10.10.in-addr.arpa", true), None, "partial reverse names are forwarded");
        assert_eq!(d.lookup(&[1], "02.0.10.10.in-addr.arpa", true), None);
        assert_eq!(reverse_ipv4("1.2.3.4.5.in-addr.arpa"), None);
    }

    #[test]
    fn askers_by_port_and_address() {
        let mut d = two_networks();
        let asker = Asker {
            address: Ipv4Addr::new(10, 10, 0, 2),
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
}
