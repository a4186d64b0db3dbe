//! Address value types used by the model: IPv4 prefixes and MAC addresses.
//!
//! Both parse from and print to the usual text forms and serialize as those
//! strings, so the state file stays readable.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not an IPv4 prefix or a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAddrError {
    /// `{0:?}` is not an IPv4 prefix: expected a.b.c.d/len with len 0..=32
    #[error("{0:?} is not an IPv4 prefix: expected a.b.c.d/len with len 0..=32")]
    Prefix(String),
    /// `{0:?}` is not a MAC address: expected six hex octets like 02:42:ac:11:00:02
    #[error("{0:?} is not a MAC address: expected six hex octets like 02:42:ac:11:00:02")]
    Mac(String),
}

/// An IPv4 address with a prefix length, e.g. `10.1.0.0/24`.
///
/// The address part may have host bits set (`10.1.0.5/24` is a valid value);
/// [`Ipv4Net::is_network_address`] tells whether it names the network itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// Builds a prefix; `None` when `prefix_len > 32`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then_some(Self { addr, prefix_len })
    }

    /// The address part as given.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length (0..=32).
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask as a host-order integer.
    pub fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// This prefix with host bits cleared.
    pub fn trunc(&self) -> Self {
        Self { addr: self.network(), prefix_len: self.prefix_len }
    }

    /// Whether the address part has no host bits set.
    pub fn is_network_address(&self) -> bool {
        self.addr == self.network()
    }

    /// Whether `ip` lies inside this prefix (network and broadcast included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The first usable host address (network address + 1); `None` for /31 and /32.
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        (self.prefix_len <= 30).then(|| Ipv4Addr::from(u32::from(self.network()) + 1))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = ParseAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAddrError::Prefix(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let len: u8 = len.parse().map_err(|_| err())?;
        Ipv4Net::new(addr, len).ok_or_else(err)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The Docker-style address for an IPv4 endpoint: `02:42` followed by the
    /// four address bytes (locally administered, unicast).
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let [a, b, c, d] = ip.octets();
        Mac([0x02, 0x42, a, b, c, d])
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the group bit is set (multicast, including broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether every octet is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = ParseAddrError;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAddrError::Mac(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_parse_and_math() {
        let n: Ipv4Net = "10.1.2.3/24".parse().unwrap();
        assert_eq!(n.network(), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        assert!(!n.is_network_address());
        assert_eq!(n.trunc().to_string(), "10.1.2.0/24");
        assert!(n.contains(Ipv4Addr::new(10, 1, 2, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 1, 3, 0)));
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.mask(), 0);
        assert!(all.overlaps(&n) && n.overlaps(&all));
        let other: Ipv4Net = "10.1.3.0/24".parse().unwrap();
        assert!(!other.overlaps(&n));
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "10.0.0.0/+8", "x/8", "10.0.0.0/008"] {
            let e = bad.parse::<Ipv4Net>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn mac_parse_print_and_classes() {
        let m: Mac = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!("02-42-ac-11-00-02".parse::<Mac>().unwrap(), m);
        assert_eq!(Mac::from_ipv4(Ipv4Addr::new(172, 17, 0, 2)), m);
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!("00:00:00:00:00:00".parse::<Mac>().unwrap().is_zero());
        for bad in ["02:42:ac:11:00", "02:42:ac:11:00:02:03", "2:42:ac:11:00:02", "zz:42:ac:11:00:02", ""] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_uses_text_forms() {
        let n: Ipv4Net = "192.168.16.0/20".parse().unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"192.168.16.0/20\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>("\"192.168.16.0/20\"").unwrap(), n);
        let m = Mac([2, 0x42, 1, 2, 3, 4]);
        assert_eq!(serde_json::from_str::<Mac>(&serde_json::to_string(&m).unwrap()).unwrap(), m);
        assert!(serde_json::from_str::<Mac>("\"nope\"").is_err());
    }
}
