//! MTU arithmetic for VXLAN overlays.
//!
//! A VXLAN packet on the underlay is, for an inner IP packet of `n` bytes
//! (the overlay endpoint's MTU):
//!
//! ```text
//!   outer IPv4 header   20   (IPv6: 40; no options or extension headers)
//! + outer UDP header     8
//! + VXLAN header         8
//! + inner Ethernet      14   (untagged; an inner 802.1Q tag would add 4)
//! + inner IP packet      n
//! = 50 + n               (IPv6 underlay: 70 + n)
//! ```
//!
//! The underlay MTU counts from the outer IP header on (the Ethernet header
//! of the underlay is not part of it), so the overlay endpoints get
//! `underlay MTU - 50` over IPv4 (1450 on a 1500-byte underlay, the Linux and
//! Docker default) and `underlay MTU - 70` over IPv6 (1430).

/// Bytes VXLAN adds on an IPv4 underlay: outer IPv4 20 + UDP 8 + VXLAN 8 +
/// inner Ethernet 14.
pub const OVERHEAD_IPV4: u32 = 20 + 8 + 8 + 14;

/// Bytes VXLAN adds on an IPv6 underlay: outer IPv6 40 + UDP 8 + VXLAN 8 +
/// inner Ethernet 14.
pub const OVERHEAD_IPV6: u32 = 40 + 8 + 8 + 14;

/// The smallest MTU an IPv4 endpoint may be given (RFC 791: every host must
/// handle 68-byte datagrams unfragmented); below it an overlay is unusable.
pub const MIN_INNER_MTU: u32 = 68;

/// The IP version of the underlay (outer header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// Outer IPv4 header, 20 bytes.
    V4,
    /// Outer IPv6 header, 40 bytes.
    V6,
}

/// The encapsulation overhead on `underlay`: [`OVERHEAD_IPV4`] or
/// [`OVERHEAD_IPV6`].
pub const fn overhead(underlay: IpVersion) -> u32 {
    match underlay {
        IpVersion::V4 => OVERHEAD_IPV4,
        IpVersion::V6 => OVERHEAD_IPV6,
    }
}

/// The MTU to give the overlay network's endpoints so that their packets,
/// once encapsulated, fit the underlay MTU without fragmentation:
/// `underlay_mtu - overhead(underlay)`.
///
/// `None` when that would be below [`MIN_INNER_MTU`].
pub const fn inner_mtu(underlay_mtu: u32, underlay: IpVersion) -> Option<u32> {
    match underlay_mtu.checked_sub(overhead(underlay)) {
        Some(mtu) if mtu >= MIN_INNER_MTU => Some(mtu),
        _ => None,
    }
}

/// The inverse of [`inner_mtu`]: the underlay MTU needed to carry overlay
/// packets of `inner_mtu` bytes unfragmented, `inner_mtu + overhead(underlay)`.
///
/// `None` on overflow.
pub const fn underlay_mtu_for(inner_mtu: u32, underlay: IpVersion) -> Option<u32> {
    inner_mtu.checked_add(overhead(underlay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads() {
        assert_eq!(OVERHEAD_IPV4, 50);
        assert_eq!(OVERHEAD_IPV6, 70);
        assert_eq!(overhead(IpVersion::V4), 50);
        assert_eq!(overhead(IpVersion::V6), 70);
    }

    #[test]
    fn common_underlays() {
        assert_eq!(inner_mtu(1500, IpVersion::V4), Some(1450));
        assert_eq!(inner_mtu(1500, IpVersion::V6), Some(1430));
        assert_eq!(inner_mtu(9000, IpVersion::V4), Some(8950));
        assert_eq!(inner_mtu(9001, IpVersion::V6), Some(8931));
        assert_eq!(inner_mtu(65535, IpVersion::V4), Some(65485));
    }

    #[test]
    fn too_small_underlay() {
        assert_eq!(inner_mtu(0, IpVersion::V4), None);
        assert_eq!(inner_mtu(50, IpVersion::V4), None);
        assert_eq!(inner_mtu(117, IpVersion::V4), None);
        assert_eq!(inner_mtu(118, IpVersion::V4), Some(68));
        assert_eq!(inner_mtu(137, IpVersion::V6), None);
        assert_eq!(inner_mtu(138, IpVersion::V6), Some(68));
    }

    #[test]
    fn inverse() {
        for underlay in [IpVersion::V4, IpVersion::V6] {
            for mtu in [118, 576, 1280, 1500, 9000] {
                if let Some(inner) = inner_mtu(mtu, underlay) {
                    assert_eq!(underlay_mtu_for(inner, underlay), Some(mtu));
                }
            }
        }
        assert_eq!(underlay_mtu_for(1450, IpVersion::V4), Some(1500));
        assert_eq!(underlay_mtu_for(u32::MAX, IpVersion::V4), None);
    }
}
