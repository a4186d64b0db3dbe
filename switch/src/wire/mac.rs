//! IEEE 802 MAC addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit IEEE 802 MAC address.
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

    /// True for group (multicast or broadcast) addresses: the I/G bit is set.
    pub const fn is_group(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for the all-zero address.
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
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The control plane's MAC type (`ctl`, used by the model and the ctl protocol).
impl From<ctl::MacAddress> for MacAddr {
    fn from(mac: ctl::MacAddress) -> Self {
        MacAddr(mac.octets())
    }
}

impl From<MacAddr> for ctl::MacAddress {
    fn from(mac: MacAddr) -> Self {
        ctl::MacAddress(mac.0)
    }
}

/// A string that is not a MAC address in `aa:bb:cc:dd:ee:ff` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:42:ac:11:00:02")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        assert!(MacAddr::BROADCAST.is_group());
        assert!(!MacAddr::BROADCAST.is_valid_station());
        assert!(!MacAddr::ZERO.is_valid_station());
        assert!(MacAddr([0x02, 0x42, 0xac, 0x11, 0, 2]).is_valid_station());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_group());
        for last in 0..=0x0f {
            assert!(MacAddr([0x01, 0x80, 0xc2, 0, 0, last]).is_reserved_group());
        }
        assert!(!MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x10]).is_reserved_group());
        assert!(!MacAddr([0x01, 0x80, 0xc2, 0, 1, 0]).is_reserved_group());
    }

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        assert_eq!(MacAddr::from_u64(mac.to_u64()), mac);
        for bad in ["", "02:42:ac:11:00", "02:42:ac:11:00:02:03", "zz:42:ac:11:00:02", "002:42:ac:11:00:02"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn converts_to_and_from_the_control_plane_type() {
        let ctl_mac: ctl::MacAddress = "02:42:ac:11:00:02".parse().unwrap();
        let wire = MacAddr::from(ctl_mac);
        assert_eq!(wire, MacAddr([0x02, 0x42, 0xac, 0x11, 0, 2]));
        assert_eq!(ctl::MacAddress::from(wire), ctl_mac);
        assert_eq!(wire.to_string(), ctl_mac.to_string());
    }
}
