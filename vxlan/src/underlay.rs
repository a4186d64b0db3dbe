//! Which addresses an underlay may use: the VTEP's own, its peers', and the
//! underlay MTU, for IPv4 and IPv6 underlays alike.
//!
//! An overlay's underlay is one address family: a VTEP bound to an IPv4
//! address sends and receives only IPv4, one bound to an IPv6 address only
//! IPv6 (its sockets are `IPV6_V6ONLY`, so IPv4 never arrives as an
//! IPv4-mapped address). A peer of the other family could never be reached
//! and is refused up front ([`check_peer`]) rather than failing packet by
//! packet.
//!
//! IPv6 link-local addresses (`fe80::/10`) are refused as VTEPs and peers:
//! they need an interface scope that vswitch's configuration does not carry.
//! Give the underlay a global or unique local (`fd00::/8`) address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::IpVersion;

/// The smallest MTU of an IPv6 link (RFC 8200 §5): an IPv6 underlay whose
/// MTU is below it is misconfigured.
pub const IPV6_MIN_MTU: u32 = 1280;

/// Why an address or MTU cannot serve the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnderlayError {
    /// Peer {peer} is {peer_family} but this host's VTEP {vtep} is {vtep_family}: an overlay's underlay is one address family.
    #[error(
        "peer {peer} is {peer_family} but this host's VTEP {vtep} is {vtep_family}: an overlay's underlay is one \
         address family (give the peer's {vtep_family} address, or start vswitchd with an {peer_family} --vtep)"
    )]
    MixedFamilies {
        /// This host's VTEP.
        vtep: SocketAddr,
        /// Its family's name.
        vtep_family: IpVersion,
        /// The peer refused.
        peer: SocketAddr,
        /// Its family's name.
        peer_family: IpVersion,
    },
    /// {0} is an IPv6 link-local address, which needs an interface scope: use a global or unique local address.
    #[error("{0} is an IPv6 link-local address, which needs an interface scope: use a global or unique local address")]
    LinkLocal(Ipv6Addr),
    /// {0} is an IPv4-mapped IPv6 address: give the IPv4 address itself.
    #[error("{0} is an IPv4-mapped IPv6 address: give the IPv4 address itself")]
    Ipv4Mapped(Ipv6Addr),
    /// {0} is a multicast address: a VTEP needs a unicast address.
    #[error("{0} is a multicast address: a VTEP needs a unicast address")]
    Multicast(IpAddr),
    /// An IPv6 underlay MTU of {0} bytes is below IPv6's minimum of 1280 (RFC 8200).
    #[error("an IPv6 underlay MTU of {0} bytes is below IPv6's minimum of {IPV6_MIN_MTU} (RFC 8200)")]
    Ipv6MtuTooSmall(u32),
}

impl IpVersion {
    /// The version of `ip`'s header (an IPv4-mapped IPv6 address is IPv6).
    pub const fn of(ip: IpAddr) -> IpVersion {
        match ip {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
}

impl std::fmt::Display for IpVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpVersion::V4 => "IPv4",
            IpVersion::V6 => "IPv6",
        })
    }
}

/// Rules common to a VTEP's and a peer's address.
fn check_address(ip: IpAddr) -> Result<IpVersion, UnderlayError> {
    if ip.is_multicast() {
        return Err(UnderlayError::Multicast(ip));
    }
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Err(UnderlayError::Ipv4Mapped(v6));
        }
        if v6.is_unicast_link_local() {
            return Err(UnderlayError::LinkLocal(v6));
        }
    }
    Ok(IpVersion::of(ip))
}

/// Checks the address a VTEP binds and returns the underlay's family.
///
/// The unspecified address (`0.0.0.0`, `::`) is allowed: the VTEP then
/// receives on every address of its family.
pub fn check_vtep(vtep: SocketAddr) -> Result<IpVersion, UnderlayError> {
    check_address(vtep.ip())
}

/// Checks that `peer` can be reached from the VTEP `vtep`: the same family,
/// and an address [`check_vtep`] would accept. (The control plane refuses
/// unspecified addresses and port 0 on its own.)
pub fn check_peer(vtep: SocketAddr, peer: SocketAddr) -> Result<(), UnderlayError> {
    let peer_family = check_address(peer.ip())?;
    let vtep_family = IpVersion::of(vtep.ip());
    if peer_family != vtep_family {
        return Err(UnderlayError::MixedFamilies { vtep, vtep_family, peer, peer_family });
    }
    Ok(())
}

/// Checks an underlay MTU for the underlay's family: IPv6 links carry at
/// least [`IPV6_MIN_MTU`] bytes. (How much of it is left for the overlay is
/// [`crate::inner_mtu`].)
pub fn check_underlay_mtu(mtu: u32, underlay: IpVersion) -> Result<(), UnderlayError> {
    match underlay {
        IpVersion::V6 if mtu < IPV6_MIN_MTU => Err(UnderlayError::Ipv6MtuTooSmall(mtu)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn vteps_of_either_family() {
        assert_eq!(check_vtep(sa("192.0.2.1:4789")), Ok(IpVersion::V4));
        assert_eq!(check_vtep(sa("0.0.0.0:4789")), Ok(IpVersion::V4));
        assert_eq!(check_vtep(sa("[2001:db8::1]:4789")), Ok(IpVersion::V6));
        assert_eq!(check_vtep(sa("[fd00:1::1]:8472")), Ok(IpVersion::V6));
        assert_eq!(check_vtep(sa("[::]:4789")), Ok(IpVersion::V6));
    }

    #[test]
    fn unusable_vteps_are_refused_with_the_reason() {
        let cases = [
            ("[fe80::1]:4789", "link-local"),
            ("[febf::1]:4789", "link-local"),
            ("[::ffff:192.0.2.1]:4789", "IPv4-mapped IPv6 address: give the IPv4 address itself"),
            ("[ff02::1]:4789", "multicast"),
            ("239.1.1.1:4789", "multicast"),
        ];
        for (addr, needle) in cases {
            let message = check_vtep(sa(addr)).unwrap_err().to_string();
            assert!(message.contains(needle), "{addr}: {message:?} lacks {needle:?}");
        }
        // fec0::/10 (deprecated site-local) is not link-local.
        assert_eq!(check_vtep(sa("[fec0::1]:4789")), Ok(IpVersion::V6));
    }

    #[test]
    fn peers_must_share_the_vteps_family() {
        let (v4, v6) = (sa("192.0.2.1:4789"), sa("[2001:db8::1]:4789"));
        assert_eq!(check_peer(v4, sa("192.0.2.2:4789")), Ok(()));
        assert_eq!(check_peer(v6, sa("[2001:db8::2]:4790")), Ok(()));
        assert_eq!(check_peer(sa("[::]:4789"), sa("[fd00::2]:4789")), Ok(()));
        let mixed = check_peer(v4, sa("[2001:db8::2]:4789")).unwrap_err();
        assert_eq!(
            mixed,
            UnderlayError::MixedFamilies {
                vtep: v4,
                vtep_family: IpVersion::V4,
                peer: sa("[2001:db8::2]:4789"),
                peer_family: IpVersion::V6
            }
        );
        assert_eq!(
            mixed.to_string(),
            "peer [2001:db8::2]:4789 is IPv6 but this host's VTEP 192.0.2.1:4789 is IPv4: an overlay's underlay is \
             one address family (give the peer's IPv4 address, or start vswitchd with an IPv6 --vtep)"
        );
        let message = check_peer(v6, sa("192.0.2.2:4789")).unwrap_err().to_string();
        assert!(message.contains("is IPv4 but this host's VTEP [2001:db8::1]:4789 is IPv6"), "{message}");
        // A mapped address is IPv4 in disguise: named as such on either VTEP.
        for vtep in [v4, v6] {
            let mapped = check_peer(vtep, sa("[::ffff:192.0.2.2]:4789")).unwrap_err();
            assert_eq!(mapped, UnderlayError::Ipv4Mapped("::ffff:192.0.2.2".parse().unwrap()));
        }
        assert!(matches!(check_peer(v6, sa("[fe80::2]:4789")), Err(UnderlayError::LinkLocal(_))));
        assert!(matches!(check_peer(v6, sa("[ff05::2]:4789")), Err(UnderlayError::Multicast(_))));
    }

    #[test]
    fn ipv6_underlays_carry_at_least_1280_bytes() {
        assert_eq!(check_underlay_mtu(1280, IpVersion::V6), Ok(()));
        assert_eq!(check_underlay_mtu(9000, IpVersion::V6), Ok(()));
        assert_eq!(check_underlay_mtu(1279, IpVersion::V6), Err(UnderlayError::Ipv6MtuTooSmall(1279)));
        // IPv4 keeps its old behaviour: whatever the interface says.
        assert_eq!(check_underlay_mtu(576, IpVersion::V4), Ok(()));
        // The smallest IPv6 underlay still leaves a usable overlay.
        assert_eq!(crate::inner_mtu(IPV6_MIN_MTU, IpVersion::V6), Some(1210));
    }
}
