//! The 48-bit IEEE 802 MAC address, one type for the whole workspace.
//!
//! It sits below both users: the switch's zero-copy frame views (`switch::wire`)
//! read it out of Ethernet headers, and the control protocol (`ctl`) carries it in
//! JSON as the string `"02:42:ac:11:00:02"`. Keeping it here means the frame views
//! import no control protocol and nothing converts between two spellings of the
//! same six bytes.
//!
//! Text form: parsing accepts six two-digit hex octets separated all by `:` or all
//! by `-`, in any case (`02:42:AC:11:00:02`, `02-42-ac-11-00-02`); display (and
//! serde, which is the control protocol's wire format) writes lower case with
//! colons. `Debug` prints the same text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit IEEE 802 MAC address, most significant octet first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address, never valid as a station address.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from the first six bytes of `bytes`.
    ///
    /// Returns `None` when fewer than six bytes are given.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        bytes.get(..6)?.try_into().ok().map(MacAddr)
    }

    /// The six octets, most significant first.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for group (multicast or broadcast) addresses: the I/G bit is set.
    pub const fn is_group(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for the all-zero address, which no interface may use.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// True when the address may appear as a frame's source: an individual,
    /// non-zero address (as Linux's `is_valid_ether_addr`).
    pub fn is_valid_station(&self) -> bool {
        !self.is_group() && !self.is_zero()
    }

    /// True for the IEEE 802.1D reserved group addresses
    /// `01:80:c2:00:00:00`–`01:80:c2:00:00:0f` (BPDUs, pause, LACP, LLDP,
    /// 802.1X), which a bridge must never forward.
    pub const fn is_reserved_group(&self) -> bool {
        let b = self.0;
        b[0] == 0x01 && b[1] == 0x80 && b[2] == 0xc2 && b[3] == 0 && b[4] == 0 && b[5] & 0xf0 == 0
    }

    /// The address as the low 48 bits of a `u64`, a cheap hash-table key.
    pub const fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The inverse of [`MacAddr::to_u64`]; the top 16 bits are ignored.
    pub const fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a MAC address in `aa:bb:cc:dd:ee:ff` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:42:ac:11:00:02")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacParseError(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for slot in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(Self(out)),
        }
    }
}

/// Serializes as the display string (`"02:42:ac:11:00:02"`), the control
/// protocol's wire format.
impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Deserializes from the string form; anything else (numbers, arrays, bad
/// text) is an error.
impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        assert!(MacAddr::BROADCAST.is_group());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::BROADCAST.is_valid_station());
        assert!(!MacAddr::ZERO.is_valid_station());
        assert!(MacAddr::ZERO.is_zero());
        assert!(MacAddr([0x02, 0x42, 0xac, 0x11, 0, 2]).is_valid_station());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_group());
        for last in 0..=0x0f {
            assert!(MacAddr([0x01, 0x80, 0xc2, 0, 0, last]).is_reserved_group());
        }
        assert!(!MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x10]).is_reserved_group());
        assert!(!MacAddr([0x01, 0x80, 0xc2, 0, 1, 0]).is_reserved_group());
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]), Some(MacAddr([1, 2, 3, 4, 5, 6])));
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
    }

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac.octets(), [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        assert_eq!(format!("{mac:?}"), "02:42:ac:11:00:02");
        assert_eq!("02-42-ac-11-00-02".parse::<MacAddr>().unwrap(), mac);
        assert_eq!(MacAddr::from_u64(mac.to_u64()), mac);
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "2:42:ac:11:00:02",
            "002:42:ac:11:00:02",
            "zz:42:ac:11:00:02",
            "02:42-ac:11:00:02",
            "+2:42:ac:11:00:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} should not parse");
        }
        assert_eq!(
            "nope".parse::<MacAddr>().unwrap_err().to_string(),
            "invalid MAC address \"nope\": expected six hex octets like 02:42:ac:11:00:02"
        );
    }

    #[test]
    fn serde_as_the_colon_string() {
        let m: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:42:ac:11:00:02\"");
        assert_eq!(serde_json::from_str::<MacAddr>("\"02:42:AC:11:00:02\"").unwrap(), m);
        assert_eq!(serde_json::from_str::<MacAddr>("\"02-42-ac-11-00-02\"").unwrap(), m);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
        assert!(serde_json::from_str::<MacAddr>("17").is_err());
        assert!(serde_json::from_str::<MacAddr>("[2,66,172,17,0,2]").is_err());
    }
}
