//! Ethernet II frames with an optional IEEE 802.1Q tag.

use super::{MacAddr, WireError};

/// Length of an untagged Ethernet II header: destination, source, ethertype.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of one IEEE 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

mod field {
    use std::ops::Range;
    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const VLAN_TCI: Range<usize> = 14..16;
    pub(super) const VLAN_ETHERTYPE: Range<usize> = 16..18;
}

/// Well-known ethertypes the switch looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
}

/// The fields of an IEEE 802.1Q tag control information word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

/// A read-only view of an Ethernet frame in a byte buffer.
///
/// Construct with [`EthernetFrame::new_checked`]; afterwards every accessor
/// is in bounds and cannot panic.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds a full header, including the
    /// 802.1Q tag when the outer ethertype announces one.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < ETHERNET_HEADER_LEN {
            return Err(WireError::Truncated { len, needed: ETHERNET_HEADER_LEN });
        }
        let frame = EthernetFrame { buffer };
        let needed = frame.header_len();
        if len < needed {
            return Err(WireError::Truncated { len, needed });
        }
        Ok(frame)
    }

    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.bytes()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The destination MAC address.
    pub fn destination(&self) -> MacAddr {
        let b = &self.bytes()[field::DESTINATION];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The source MAC address.
    pub fn source(&self) -> MacAddr {
        let b = &self.bytes()[field::SOURCE];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The outer ethertype (`0x8100` for a tagged frame).
    pub fn outer_ethertype(&self) -> EtherType {
        EtherType(self.u16_at(field::ETHERTYPE))
    }

    /// True when the frame carries an 802.1Q tag.
    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype() == EtherType::VLAN
    }

    /// The 802.1Q tag, if present.
    pub fn vlan(&self) -> Option<VlanTag> {
        self.is_tagged().then(|| {
            let tci = self.u16_at(field::VLAN_TCI);
            VlanTag { pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0, vid: tci & 0x0fff }
        })
    }

    /// The ethertype of the payload (after the 802.1Q tag, if any).
    pub fn ethertype(&self) -> EtherType {
        if self.is_tagged() { EtherType(self.u16_at(field::VLAN_ETHERTYPE)) } else { self.outer_ethertype() }
    }

    /// Length of the header: 14 bytes, or 18 with an 802.1Q tag.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() { ETHERNET_HEADER_LEN + VLAN_TAG_LEN } else { ETHERNET_HEADER_LEN }
    }

    /// The payload after the header (and tag).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tagged: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        if tagged {
            f.extend_from_slice(&[0x81, 0x00, 0xa0 | 0x10, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_untagged() {
        let bytes = frame(false, b"hello");
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.destination().to_string(), "02:00:00:00:00:02");
        assert_eq!(f.source().to_string(), "02:00:00:00:00:01");
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.vlan(), None);
        assert_eq!(f.payload(), b"hello");
    }

    #[test]
    fn parses_tagged() {
        let bytes = frame(true, b"x");
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.vlan(), Some(VlanTag { pcp: 5, dei: true, vid: 5 }));
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), b"x");
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            WireError::Truncated { len: 13, needed: 14 }
        );
        let tagged = frame(true, b"");
        assert_eq!(
            EthernetFrame::new_checked(&tagged[..16]).unwrap_err(),
            WireError::Truncated { len: 16, needed: 18 }
        );
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let bytes = frame(true, b"payload");
        for len in 0..=bytes.len() {
            if let Ok(f) = EthernetFrame::new_checked(&bytes[..len]) {
                let _ = (f.destination(), f.source(), f.vlan(), f.ethertype(), f.payload());
            }
        }
    }
}
