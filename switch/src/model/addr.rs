//! Address rules the model needs on top of the control-plane types
//! [`Ipv4Net`], [`Ipv6Net`] (`ipnet`) and [`MacAddr`] (all from `ctl`, so
//! the state file and the ctl protocol share one text form).

use std::net::{Ipv4Addr, Ipv6Addr};

use ctl::{Ipv4Net, Ipv6Net, MacAddr};

/// Subnet arithmetic the model needs beyond what `ipnet` offers.
pub(crate) trait SubnetExt {
    /// Whether the address part has no host bits set (`10.1.0.0/24`, not `10.1.0.5/24`).
    fn is_network_address(&self) -> bool;

    /// Whether the two prefixes share at least one address.
    fn overlaps(&self, other: &Ipv4Net) -> bool;

    /// The first usable host address (network address + 1); `None` for /31 and /32.
    fn first_host(&self) -> Option<Ipv4Addr>;
}

impl SubnetExt for Ipv4Net {
    fn is_network_address(&self) -> bool {
        self.addr() == self.network()
    }

    fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(&other.network()) || other.contains(&self.network())
    }

    fn first_host(&self) -> Option<Ipv4Addr> {
        (self.prefix_len() <= 30).then(|| Ipv4Addr::from(u32::from(self.network()) + 1))
    }
}

/// Subnet arithmetic for IPv6 prefixes, the counterpart of [`SubnetExt`].
pub(crate) trait Subnet6Ext {
    /// Whether the address part has no host bits set (`fd00::/64`, not `fd00::5/64`).
    fn is_network_address(&self) -> bool;

    /// Whether the two prefixes share at least one address.
    fn overlaps(&self, other: &Ipv6Net) -> bool;

    /// The first address after the subnet-router anycast address (the
    /// network address, `::0`); `None` for a /128.
    fn first_host(&self) -> Option<Ipv6Addr>;
}

impl Subnet6Ext for Ipv6Net {
    fn is_network_address(&self) -> bool {
        self.addr() == self.network()
    }

    fn overlaps(&self, other: &Ipv6Net) -> bool {
        self.contains(&other.network()) || other.contains(&self.network())
    }

    fn first_host(&self) -> Option<Ipv6Addr> {
        (self.prefix_len() < 128).then(|| Ipv6Addr::from(u128::from(self.network()) + 1))
    }
}

/// The unique local /64 (RFC 4193) of a network created with `--ipv6` and
/// no IPv6 subnet: `fd` followed by 40 bits of the network's random id as
/// the global id, subnet id 0. `id` is 64 hex digits (its first 10 are used).
pub(crate) fn ula_for_id(id: &str) -> Option<Ipv6Net> {
    let global = u64::from_str_radix(id.get(..10)?, 16).ok()?;
    let prefix = (0xfd_u128 << 120) | (u128::from(global) << 80);
    Ipv6Net::new(Ipv6Addr::from(prefix), 64).ok()
}

/// The MAC address of an endpoint without IPv4 (IPv6-only network):
/// `02:42` followed by the IPv6 address's last four bytes, the counterpart
/// of [`mac_for_ipv4`].
pub(crate) fn mac_for_ipv6(ip: Ipv6Addr) -> MacAddr {
    let [.., a, b, c, d] = ip.octets();
    MacAddr([0x02, 0x42, a, b, c, d])
}

/// The Docker-style MAC address for an IPv4 endpoint: `02:42` followed by the
/// four address bytes (locally administered, unicast).
pub(crate) fn mac_for_ipv4(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr([0x02, 0x42, a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_math() {
        let n = net("10.1.2.3/24");
        assert_eq!(n.network(), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        assert!(!n.is_network_address());
        assert!(n.trunc().is_network_address());
        assert_eq!(n.trunc().to_string(), "10.1.2.0/24");
        assert!(n.contains(&Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!n.contains(&Ipv4Addr::new(10, 1, 3, 0)));
        let all = net("0.0.0.0/0");
        assert!(all.is_network_address());
        assert!(all.overlaps(&n) && n.overlaps(&all));
        let other = net("10.1.3.0/24");
        assert!(!other.overlaps(&n) && !n.overlaps(&other));
        assert!(net("10.1.2.128/25").overlaps(&n) && n.overlaps(&net("10.1.2.128/25")));
        assert_eq!(n.first_host(), Some(Ipv4Addr::new(10, 1, 2, 1)));
        assert_eq!(net("10.0.0.0/30").first_host(), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(net("10.0.0.0/31").first_host(), None);
        assert_eq!(net("10.0.0.0/32").first_host(), None);
    }

    #[test]
    fn prefix_math_v6() {
        let n: Ipv6Net = "fd00:1::5/64".parse().unwrap();
        assert!(!n.is_network_address());
        assert!(n.trunc().is_network_address());
        assert_eq!(n.trunc().first_host(), Some("fd00:1::1".parse().unwrap()));
        assert_eq!("fd00::/128".parse::<Ipv6Net>().unwrap().first_host(), None);
        let wide: Ipv6Net = "fd00::/16".parse().unwrap();
        assert!(wide.overlaps(&n) && n.overlaps(&wide));
        assert!(!n.overlaps(&"fd00:2::/64".parse().unwrap()));
    }

    #[test]
    fn ula_from_the_network_id() {
        let id = "0123456789abcdef".repeat(4);
        let ula = ula_for_id(&id).unwrap();
        assert_eq!(ula.to_string(), "fd01:2345:6789::/64");
        assert!(ula.is_network_address());
        let other = ula_for_id(&"ffffffffff".repeat(7)).unwrap();
        assert_eq!(other.to_string(), "fdff:ffff:ffff::/64");
        assert_eq!(ula_for_id("12"), None);
        assert_eq!(ula_for_id("zzzzzzzzzz"), None);
    }

    #[test]
    fn mac_of_an_ipv6_only_endpoint() {
        let m = mac_for_ipv6("fd00:1::a:2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:00:0a:00:02");
        assert!(!m.is_group() && !m.is_zero());
    }

    #[test]
    fn docker_style_mac() {
        let m = mac_for_ipv4(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert!(!m.is_group() && !m.is_zero());
    }

    #[test]
    fn serde_uses_text_forms() {
        let n = net("192.168.16.0/20");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"192.168.16.0/20\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>("\"192.168.16.0/20\"").unwrap(), n);
        let m = MacAddr([2, 0x42, 1, 2, 3, 4]);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:42:01:02:03:04\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&serde_json::to_string(&m).unwrap()).unwrap(), m);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
