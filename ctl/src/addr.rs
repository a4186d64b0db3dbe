//! The address value types used by the protocol: an IPv4 prefix (`10.0.0.0/24`, the `ipnet`
//! crate's [`Ipv4Net`]) and an Ethernet MAC address (`02:42:ac:11:00:02`, [`MacAddr`] from the
//! `netaddr` crate). Both serialize as their string form.

use std::net::Ipv4Addr;

/// Why an address string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrParseError {
    /// The CIDR string has no `/prefix` part.
    #[error("invalid CIDR {0:?}: expected ADDRESS/PREFIX, e.g. 10.0.0.0/24")]
    MissingPrefix(String),
    /// The address part of a CIDR string is not a dotted-quad IPv4 address.
    #[error("invalid CIDR {0:?}: address is not an IPv4 address")]
    BadAddress(String),
    /// The prefix length is not a number in 0..=32.
    #[error("invalid CIDR {0:?}: prefix length must be a number from 0 to 32")]
    BadPrefix(String),
}

/// An IPv4 address with a prefix length, e.g. `10.0.0.0/24` (a subnet) or `10.0.0.2/24`
/// (an interface address): [`ipnet::Ipv4Net`]. Host bits are preserved; `trunc()` clears them.
/// It serializes as its `a.b.c.d/n` string form.
pub use ipnet::Ipv4Net;

/// An IPv6 address with a prefix length, e.g. `fd00:1::/64` (a subnet) or `fd00:1::2/64` (an
/// interface address): [`ipnet::Ipv6Net`]. Host bits are preserved; `trunc()` clears them. It
/// serializes as its `addr/n` string form.
pub use ipnet::Ipv6Net;

/// A prefix of either family ([`ipnet::IpNet`]), for what is said of IPv4 and IPv6 alike
/// (errors, Docker's `IPAM.Config`). It serializes as its `addr/n` string form.
pub use ipnet::IpNet;

/// Parses `ADDRESS/PREFIX` (e.g. `10.0.0.0/24`) strictly, as user input should be: the address
/// in the standard dotted-quad form (no leading zeros), the prefix one or two decimal digits up
/// to 32. Host bits are kept. Unlike `str::parse`, the error says which part is wrong.
pub fn parse_ipv4_net(s: &str) -> Result<Ipv4Net, AddrParseError> {
    let (addr, prefix) = s.split_once('/').ok_or_else(|| AddrParseError::MissingPrefix(s.to_owned()))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| AddrParseError::BadAddress(s.to_owned()))?;
    let prefix_ok = !prefix.is_empty() && prefix.len() <= 2 && prefix.bytes().all(|b| b.is_ascii_digit());
    let prefix_len: u8 = if prefix_ok { prefix.parse().unwrap_or(u8::MAX) } else { u8::MAX };
    Ipv4Net::new(addr, prefix_len).map_err(|_| AddrParseError::BadPrefix(s.to_owned()))
}

/// A 48-bit Ethernet MAC address (`02:42:ac:11:00:02`): the workspace's one MAC type,
/// [`netaddr::MacAddr`], shared with the switch's frame views. Parses `aa:bb:cc:dd:ee:ff` or
/// `aa-bb-cc-dd-ee-ff` (any case); displays and serializes lower-case with colons.
pub use netaddr::{MacAddr, MacParseError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_rejects() {
        let n = parse_ipv4_net("10.1.2.3/24").unwrap();
        assert_eq!(n, "10.1.2.3/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(n.addr(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(n.prefix_len(), 24);
        assert_eq!(n.to_string(), "10.1.2.3/24");
        assert_eq!(n.trunc().to_string(), "10.1.2.0/24");
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(n.contains(&Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!n.contains(&Ipv4Addr::new(10, 1, 3, 1)));
        let all = parse_ipv4_net("0.0.0.0/0").unwrap();
        assert!(all.contains(&Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        for bad in ["10.0.0.0", "10.0.0/24", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+1", "a/b", "/24", "10.0.0.0/999"] {
            assert!(parse_ipv4_net(bad).is_err(), "{bad} should not parse");
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad} should not parse as ipnet");
        }
        // Strict user input: std's dotted-quad rules (no leading zeros), one or two prefix digits.
        for bad in ["010.0.0.0/8", "10.0.0.0/008"] {
            assert!(parse_ipv4_net(bad).is_err(), "{bad} should not parse");
        }
        assert!(matches!(parse_ipv4_net("1.2.3.4"), Err(AddrParseError::MissingPrefix(_))));
        assert!(matches!(parse_ipv4_net("1.2.3/4"), Err(AddrParseError::BadAddress(_))));
        assert!(matches!(parse_ipv4_net("1.2.3.4/33"), Err(AddrParseError::BadPrefix(_))));
        assert_eq!(
            parse_ipv4_net("10.0.0/24").unwrap_err().to_string(),
            "invalid CIDR \"10.0.0/24\": address is not an IPv4 address"
        );
    }

    #[test]
    fn mac_parses_and_rejects() {
        let m: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(m.octets(), [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!("02-42-ac-11-00-02".parse::<MacAddr>().unwrap(), m);
        assert!(!m.is_group());
        assert!(!m.is_zero());
        assert!(MacAddr([0; 6]).is_zero());
        assert!("ff:ff:ff:ff:ff:ff".parse::<MacAddr>().unwrap().is_group());
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "2:42:ac:11:00:02",
            "02:42:ac:11:00:zz",
            "02:42-ac:11:00:02",
            "+2:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn serde_as_strings() {
        let n: Ipv4Net = "192.168.0.0/16".parse().unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"192.168.0.0/16\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>("\"192.168.0.0/16\"").unwrap(), n);
        let host: Ipv4Net = "10.10.0.5/24".parse().unwrap();
        assert_eq!(serde_json::to_string(&host).unwrap(), "\"10.10.0.5/24\"", "host bits are kept");
        assert!(serde_json::from_str::<Ipv4Net>("\"10.0.0.0/33\"").is_err());
        assert!(serde_json::from_str::<Ipv4Net>("24").is_err());
        let m: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:42:ac:11:00:02\"");
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
        assert!(serde_json::from_str::<MacAddr>("17").is_err());
    }
}
