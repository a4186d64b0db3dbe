//! The gateway as an IPv6 router on its link (RFC 4861), sans-IO: which
//! IPv6 frames the gateway's stack takes, router solicitations, the
//! router advertisement and when to send it, and the router flag of the
//! neighbour advertisements the stack sends.
//!
//! smoltcp (a host stack) answers neighbour solicitations for the
//! interface's addresses, learns the solicitor's link-layer address from
//! them, and answers echo requests; it neither sends router advertisements
//! nor sets the router flag on its neighbour advertisements (a host that
//! sees a router's advertisement lose its R flag drops the router from its
//! default router list, RFC 4861 §7.2.5), nor defends its addresses in
//! duplicate address detection. Those three are built here.

use std::net::Ipv6Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Message, Icmpv6Packet, Icmpv6Repr,
    IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscPrefixInfoFlags, NdiscPrefixInformation, NdiscRepr,
    NdiscRouterFlags, RawHardwareAddress,
};

use crate::wire::MacAddr;

/// All-nodes, the destination of unsolicited router advertisements.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers, where hosts send their router solicitations.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// RFC 4861 §6.2.1 default MaxRtrAdvInterval: the longest time between
/// unsolicited advertisements (ms).
pub const MAX_RTR_ADV_INTERVAL_MS: u64 = 600_000;
/// RFC 4861 §6.2.1 default MinRtrAdvInterval, 0.33 × MaxRtrAdvInterval (ms).
pub const MIN_RTR_ADV_INTERVAL_MS: u64 = 198_000;
/// RFC 4861 §10: the first advertisements come at most this far apart (ms).
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS: u64 = 16_000;
/// RFC 4861 §10: how many advertisements count as "the first".
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u8 = 3;
/// RFC 4861 §10: multicast advertisements are at least this far apart (ms).
pub const MIN_DELAY_BETWEEN_RAS_MS: u64 = 3_000;
/// RFC 4861 §10: an answer to a solicitation waits a random time up to this
/// (ms), so routers on one link do not answer in step.
pub const MAX_RA_DELAY_TIME_MS: u64 = 500;
/// RFC 4861 §6.2.1 default AdvDefaultLifetime, 3 × MaxRtrAdvInterval (s):
/// the router lifetime of a gateway that is the default router.
pub const ROUTER_LIFETIME_S: u64 = 1_800;
/// RFC 4861 §6.2.1 default AdvValidLifetime of the prefix (s).
pub const PREFIX_VALID_LIFETIME_S: u64 = 2_592_000;
/// RFC 4861 §6.2.1 default AdvPreferredLifetime of the prefix (s).
pub const PREFIX_PREFERRED_LIFETIME_S: u64 = 604_800;
/// The hop limit the advertisement tells hosts to use (AdvCurHopLimit).
pub const CUR_HOP_LIMIT: u8 = 64;

/// The gateway's IPv6 identity on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    /// The gateway's MAC address.
    pub mac: MacAddr,
    /// Its EUI-64 link-local address (the source of its advertisements).
    pub link_local: Ipv6Addr,
    /// Its address on the network (`gateway6`).
    pub address: Ipv6Addr,
    /// The on-link prefix's length.
    pub prefix_len: u8,
    /// Advertise a router lifetime (be the hosts' default router).
    pub default_route: bool,
    /// The link MTU to advertise.
    pub mtu: u32,
}

/// What the gateway does with an IPv6 frame the bridge delivered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// For the stack: traffic to the gateway's addresses, neighbour
    /// discovery, echo.
    Stack,
    /// A valid router solicitation: answer it at once, unicast, when it
    /// names its sender (an address and a source link-layer address
    /// option, as RFC 7772 §5.1 recommends, which radvd does by default);
    /// else schedule a multicast advertisement.
    RouterSolicit(Option<Solicitor>),
    /// Duplicate address detection for one of the gateway's own addresses
    /// (a neighbour solicitation from the unspecified address, RFC 4862
    /// §5.4.3): another host is about to take it. Answer with
    /// [`Router::defence`].
    Defend(Ipv6Addr),
    /// Not for the gateway (another host's multicast, a multicast group
    /// it has not joined, an advertisement of another router): ignored.
    Ignore,
    /// ICMPv6 for the gateway that fails its checksum, does not parse, or
    /// breaks neighbour discovery's validity rules (hop limit 255, code
    /// 0, RFC 4861 §6.1/§7.1): dropped and counted.
    Malformed,
}

/// The sender of a router solicitation that named itself: where a unicast
/// advertisement answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicitor {
    /// Its IPv6 address (the solicitation's source).
    pub address: Ipv6Addr,
    /// Its link-layer address (the solicitation's option).
    pub mac: MacAddr,
}

/// The solicited-node multicast address of `address` (RFC 4291 §2.7.1).
pub fn solicited_node(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// Whether `address` is a solicited-node multicast address
/// (ff02::1:ff00:0/104).
fn is_solicited_node(address: Ipv6Addr) -> bool {
    prefix_of(address, 104) == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0)
}

/// The network part of `address/prefix_len`.
pub fn prefix_of(address: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let bits = u128::from(address);
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len.min(128))).unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

/// The Ethernet multicast address of IPv6 group `group` (RFC 2464 §7).
fn multicast_mac(group: Ipv6Addr) -> EthernetAddress {
    let o = group.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

impl Router {
    /// The gateway's own unicast addresses.
    fn owns(&self, address: Ipv6Addr) -> bool {
        address == self.address || address == self.link_local
    }

    /// Multicast groups the gateway listens to.
    fn listens(&self, group: Ipv6Addr) -> bool {
        group == ALL_NODES
            || group == ALL_ROUTERS
            || group == solicited_node(self.address)
            || group == solicited_node(self.link_local)
    }

    /// Sorts an IPv6 frame delivered to the gateway (see [`Inbound`]).
    /// Frames that are not IPv6 are for the stack.
    pub fn inspect(&self, frame: &[u8]) -> Inbound {
        let Ok(eth) = EthernetFrame::new_checked(frame) else { return Inbound::Ignore };
        if eth.ethertype() != EthernetProtocol::Ipv6 {
            return Inbound::Stack;
        }
        let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else { return Inbound::Ignore };
        if ip.version() != 6 {
            return Inbound::Ignore;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let unicast = self.owns(dst);
        if !unicast && !self.listens(dst) {
            return Inbound::Ignore;
        }
        if ip.next_header() != IpProtocol::Icmpv6 {
            // TCP and UDP to the gateway's addresses; nothing that is not
            // ICMPv6 is answered on a multicast group (RFC 4443 §2.4 (e)).
            return if unicast { Inbound::Stack } else { Inbound::Ignore };
        }
        let payload = ip.payload();
        let Ok(icmp) = Icmpv6Packet::new_checked(payload) else { return Inbound::Malformed };
        let kind = icmp.msg_type();
        let known = matches!(
            kind,
            Icmpv6Message::DstUnreachable
                | Icmpv6Message::PktTooBig
                | Icmpv6Message::TimeExceeded
                | Icmpv6Message::ParamProblem
                | Icmpv6Message::EchoRequest
                | Icmpv6Message::EchoReply
        ) || kind.is_ndisc();
        if !known {
            // Unknown informational messages are silently discarded (RFC
            // 4443 §2.4 (b)); MLD is not the gateway's business.
            return Inbound::Ignore;
        }
        let Ok(repr) = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()) else {
            return Inbound::Malformed;
        };
        let Icmpv6Repr::Ndisc(ndisc) = repr else {
            return Inbound::Stack;
        };
        // RFC 4861 §6.1.1, §7.1.1: hop limit 255 (not forwarded by a
        // router); the code and option lengths were checked by the parse.
        if ip.hop_limit() != 255 {
            return Inbound::Malformed;
        }
        match ndisc {
            NdiscRepr::RouterSolicit { lladdr } => {
                // A solicitation from the unspecified address carries no
                // source link-layer address option.
                if src.is_unspecified() && lladdr.is_some() {
                    return Inbound::Malformed;
                }
                if src.is_multicast() {
                    return Inbound::Malformed;
                }
                // Answered unicast only where the frame came from: the
                // option must name the frame's own source MAC (a forged
                // one would aim the answer at another station, or flood
                // it), and the source must be a host's unicast address.
                let mac = lladdr.and_then(|l| <[u8; 6]>::try_from(l.as_bytes()).ok()).map(MacAddr);
                let sender = MacAddr(eth.src_addr().0);
                let solicitor = mac
                    .filter(|m| *m == sender && !m.is_group() && !m.is_zero())
                    .filter(|_| !src.is_unspecified() && !src.is_loopback() && !self.owns(src))
                    .map(|mac| Solicitor { address: src, mac });
                Inbound::RouterSolicit(solicitor)
            }
            NdiscRepr::NeighborSolicit { target_addr, lladdr } => {
                if target_addr.is_multicast() {
                    Inbound::Malformed
                } else if src.is_unspecified() {
                    // Duplicate address detection: sent to the target's
                    // solicited-node group, without a source link-layer
                    // address (RFC 4861 §7.1.1).
                    if lladdr.is_some() || !is_solicited_node(dst) {
                        Inbound::Malformed
                    } else if dst != solicited_node(target_addr) {
                        // Valid, but not the target's group: meaningless.
                        Inbound::Ignore
                    } else if self.owns(target_addr) {
                        Inbound::Defend(target_addr)
                    } else {
                        Inbound::Ignore
                    }
                } else {
                    Inbound::Stack
                }
            }
            NdiscRepr::NeighborAdvert { target_addr, .. } => {
                if target_addr.is_multicast() {
                    Inbound::Malformed
                } else {
                    Inbound::Stack
                }
            }
            // Another router's advertisement or a redirect: the gateway is
            // the network's router and takes neither.
            NdiscRepr::RouterAdvert { .. } | NdiscRepr::Redirect { .. } => Inbound::Ignore,
        }
    }

    /// The router advertisement, from the link-local address to all nodes:
    /// the current hop limit, router lifetime ([`ROUTER_LIFETIME_S`] when
    /// the gateway is the default router, else 0), the source link-layer
    /// address, the link MTU and the on-link prefix (L=1, A=0: hosts keep
    /// their static addresses, nothing is autoconfigured).
    pub fn advertisement(&self) -> Vec<u8> {
        self.advertisement_to(None)
    }

    /// [`Router::advertisement`], to `solicitor` alone when given (the
    /// unicast answer to its solicitation), else to all nodes.
    pub fn advertisement_to(&self, solicitor: Option<Solicitor>) -> Vec<u8> {
        let prefix = NdiscPrefixInformation {
            prefix_len: self.prefix_len,
            flags: NdiscPrefixInfoFlags::ON_LINK,
            valid_lifetime: Duration::from_secs(PREFIX_VALID_LIFETIME_S),
            preferred_lifetime: Duration::from_secs(PREFIX_PREFERRED_LIFETIME_S),
            prefix: prefix_of(self.address, self.prefix_len),
        };
        let lifetime = if self.default_route { ROUTER_LIFETIME_S } else { 0 };
        let icmp = Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
            hop_limit: CUR_HOP_LIMIT,
            flags: NdiscRouterFlags::empty(),
            router_lifetime: Duration::from_secs(lifetime),
            reachable_time: Duration::from_millis(0),
            retrans_time: Duration::from_millis(0),
            lladdr: Some(RawHardwareAddress::from(EthernetAddress(self.mac.0))),
            mtu: Some(self.mtu),
            prefix_info: Some(prefix),
        });
        let (mac, dst) = match solicitor {
            Some(s) => (EthernetAddress(s.mac.0), s.address),
            None => (multicast_mac(ALL_NODES), ALL_NODES),
        };
        icmpv6_frame(self.mac, mac, self.link_local, dst, 255, &icmp)
    }
}

impl Router {
    /// The neighbour advertisement that defends `address` (one of the
    /// gateway's) against a host's duplicate address detection: from
    /// `address` to all nodes, as RFC 4861 §7.2.4 answers a solicitation
    /// from the unspecified address (solicited flag clear), with the router
    /// and override flags and the gateway's link-layer address. The host
    /// then gives the address up (Linux marks it `dadfailed`).
    pub fn defence(&self, address: Ipv6Addr) -> Vec<u8> {
        let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE,
            target_addr: address,
            lladdr: Some(RawHardwareAddress::from(EthernetAddress(self.mac.0))),
        });
        icmpv6_frame(self.mac, multicast_mac(ALL_NODES), address, ALL_NODES, 255, &icmp)
    }
}

/// Builds an Ethernet frame carrying ICMPv6 message `icmp` with its
/// checksum.
fn icmpv6_frame(
    src_mac: MacAddr,
    dst_mac: EthernetAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: &Icmpv6Repr<'_>,
) -> Vec<u8> {
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit,
    };
    let eth =
        EthernetRepr { src_addr: EthernetAddress(src_mac.0), dst_addr: dst_mac, ethertype: EthernetProtocol::Ipv6 };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + icmp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    icmp.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(packet.payload_mut()), &ChecksumCapabilities::default());
    buf
}

/// The IPv6 source address and MAC of a frame for the stack, when the
/// stack should learn that the one is at the other: a unicast sender on
/// the link (link-local, or inside the on-link prefix) of anything but
/// neighbour discovery (which the stack learns from by itself).
pub fn sender(frame: &[u8], router: &Router) -> Option<(Ipv6Addr, MacAddr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 || !eth.src_addr().is_unicast() {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let src = ip.src_addr();
    let on_link =
        is_link_local(src) || prefix_of(src, router.prefix_len) == prefix_of(router.address, router.prefix_len);
    if !on_link || src.is_unspecified() || src.is_multicast() || router.owns(src) {
        return None;
    }
    if ip.next_header() == IpProtocol::Icmpv6
        && Icmpv6Packet::new_checked(ip.payload())
            .is_ok_and(|icmp| matches!(icmp.msg_type(), Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert))
    {
        return None;
    }
    Some((src, MacAddr(eth.src_addr().0)))
}

/// Whether `address` is link-local (fe80::/10).
fn is_link_local(address: Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

/// A neighbour advertisement, as if `address` at `mac` had sent it to the
/// gateway, for the stack only: smoltcp learns neighbours from neighbour
/// discovery alone and drops what it sends to a neighbour it must resolve
/// first, so a host that learned the gateway's MAC from a router
/// advertisement (and never solicited it) would lose the gateway's first
/// answer. Override set, so a changed MAC replaces the old one.
pub fn neighbour_hint(router: &Router, address: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    let to = if is_link_local(address) { router.link_local } else { router.address };
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: address,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac.0))),
    });
    icmpv6_frame(mac, EthernetAddress(router.mac.0), address, to, 255, &icmp)
}

/// Sets the router and override flags of a neighbour advertisement the
/// stack sent (smoltcp, a host stack, sets only "solicited") and fixes its
/// checksum; leaves every other frame alone.
pub fn mark_router(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut frame[..]) else { return };
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return;
    }
    let Ok(mut ip) = Ipv6Packet::new_checked(eth.payload_mut()) else { return };
    if ip.next_header() != IpProtocol::Icmpv6 {
        return;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(mut icmp) = Icmpv6Packet::new_checked(ip.payload_mut()) else { return };
    if icmp.msg_type() != Icmpv6Message::NeighborAdvert {
        return;
    }
    let flags = icmp.neighbor_flags() | NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE;
    icmp.set_neighbor_flags(flags);
    icmp.fill_checksum(&src, &dst);
}

/// When the gateway sends its router advertisements (RFC 4861 §6.2.4 and
/// §6.2.6), on the datapath's clock (ms): the first ones
/// [`MAX_INITIAL_RTR_ADVERT_INTERVAL_MS`] apart, then at random intervals
/// between [`MIN_RTR_ADV_INTERVAL_MS`] and [`MAX_RTR_ADV_INTERVAL_MS`];
/// a solicitation brings one forward by a random delay up to
/// [`MAX_RA_DELAY_TIME_MS`], never sooner than [`MIN_DELAY_BETWEEN_RAS_MS`]
/// after the last one.
#[derive(Debug)]
pub struct RaSchedule {
    /// The next unsolicited advertisement.
    periodic: u64,
    /// The answer to a solicitation, if one is waiting.
    solicited: Option<u64>,
    /// When the last advertisement went out.
    last: Option<u64>,
    /// Advertisements sent so far, up to [`MAX_INITIAL_RTR_ADVERTISEMENTS`].
    sent: u8,
    rng: fastrand::Rng,
}

impl RaSchedule {
    /// A schedule whose first advertisement is due at `now`; `seed` makes
    /// its random intervals repeatable.
    pub fn new(now: u64, seed: u64) -> RaSchedule {
        RaSchedule { periodic: now, solicited: None, last: None, sent: 0, rng: fastrand::Rng::with_seed(seed) }
    }

    /// When the next advertisement is due (ms).
    pub fn deadline(&self) -> u64 {
        self.solicited.map_or(self.periodic, |s| s.min(self.periodic))
    }

    /// Whether an advertisement is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        now >= self.deadline()
    }

    /// A router solicitation arrived at `now`.
    pub fn solicit(&mut self, now: u64) {
        let delay = self.rng.u64(0..=MAX_RA_DELAY_TIME_MS);
        let at = match self.last {
            Some(last) if now < last + MIN_DELAY_BETWEEN_RAS_MS => last + MIN_DELAY_BETWEEN_RAS_MS + delay,
            _ => now + delay,
        };
        // An advertisement already due sooner answers this one too.
        if at < self.deadline() {
            self.solicited = Some(at);
        }
    }

    /// An advertisement went out at `now`: the next unsolicited one is
    /// scheduled from it.
    pub fn sent(&mut self, now: u64) {
        self.solicited = None;
        self.last = Some(now);
        self.sent = self.sent.saturating_add(1);
        let interval = self.rng.u64(MIN_RTR_ADV_INTERVAL_MS..=MAX_RTR_ADV_INTERVAL_MS);
        let interval = if self.sent < MAX_INITIAL_RTR_ADVERTISEMENTS {
            interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL_MS)
        } else {
            interval
        };
        self.periodic = now + interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv6Address, NdiscRepr};

    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
    const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
    const HOST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x42, 0xff, 0xfe00, 2);
    const HOST_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0, 2];

    fn router(default_route: bool) -> Router {
        let mac = MacAddr([0x02, 0x77, 1, 2, 3, 4]);
        Router {
            mac,
            link_local: super::super::link_local(mac),
            address: GW6,
            prefix_len: 64,
            default_route,
            mtu: 1450,
        }
    }

    fn from_host(dst: Ipv6Addr, hop_limit: u8, icmp: &Icmpv6Repr<'_>) -> Vec<u8> {
        let dst_mac = if dst.is_multicast() { multicast_mac(dst) } else { EthernetAddress([0x02, 0x77, 1, 2, 3, 4]) };
        let src = if matches!(icmp, Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit { .. })) { HOST_LL } else { HOST6 };
        icmpv6_frame(MacAddr(HOST_MAC), dst_mac, src, dst, hop_limit, icmp)
    }

    /// Recomputes the ICMPv6 checksum of an edited frame.
    fn reseal(frame: &mut [u8]) {
        let mut eth = EthernetFrame::new_unchecked(frame);
        let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        Icmpv6Packet::new_unchecked(ip.payload_mut()).fill_checksum(&src, &dst);
    }

    fn rs(lladdr: bool) -> Icmpv6Repr<'static> {
        Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit {
            lladdr: lladdr.then(|| RawHardwareAddress::from(EthernetAddress(HOST_MAC))),
        })
    }

    #[test]
    fn solicited_node_and_prefix() {
        assert_eq!(
            solicited_node("fd00:1::12:3456".parse().unwrap()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(prefix_of("fd00:1:2:3:4:5:6:7".parse().unwrap(), 48), "fd00:1:2::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(prefix_of(GW6, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(prefix_of(GW6, 200), GW6);
    }

    /// A duplicate address detection probe: a neighbour solicitation for
    /// `target` from the unspecified address to `dst`.
    fn dad_probe(target: Ipv6Addr, dst: Ipv6Addr, lladdr: bool) -> Vec<u8> {
        let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: lladdr.then(|| RawHardwareAddress::from(EthernetAddress(HOST_MAC))),
        });
        icmpv6_frame(MacAddr(HOST_MAC), multicast_mac(dst), Ipv6Addr::UNSPECIFIED, dst, 255, &icmp)
    }

    #[test]
    fn the_gateway_defends_its_addresses_against_duplicate_address_detection() {
        let r = router(true);
        for own in [GW6, r.link_local] {
            assert_eq!(r.inspect(&dad_probe(own, solicited_node(own), false)), Inbound::Defend(own));
        }
        // Another host's probe is not the gateway's business; a probe with a
        // source link-layer address, or not to the target's group, is invalid.
        assert_eq!(r.inspect(&dad_probe(HOST6, solicited_node(HOST6), false)), Inbound::Ignore);
        assert_eq!(r.inspect(&dad_probe(GW6, solicited_node(GW6), true)), Inbound::Malformed);
        assert_eq!(r.inspect(&dad_probe(GW6, ALL_NODES, false)), Inbound::Malformed);
        assert_eq!(r.inspect(&dad_probe(GW6, solicited_node(HOST6), false)), Inbound::Ignore, "another group");

        let frame = r.defence(GW6);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]), "to all nodes");
        assert_eq!(eth.src_addr(), EthernetAddress(r.mac.0));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (GW6, ALL_NODES, 255));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp, &ChecksumCapabilities::default());
        let Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags, target_addr, lladdr })) = repr else {
            panic!("not a neighbour advertisement: {repr:?}");
        };
        assert_eq!(target_addr, GW6);
        assert_eq!(flags, NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::OVERRIDE, "not solicited");
        assert_eq!(lladdr, Some(RawHardwareAddress::from(EthernetAddress(r.mac.0))));
    }

    #[test]
    fn router_solicitations_are_recognised_and_checked() {
        let r = router(true);
        let named = Solicitor { address: HOST_LL, mac: MacAddr(HOST_MAC) };
        assert_eq!(r.inspect(&from_host(ALL_ROUTERS, 255, &rs(true))), Inbound::RouterSolicit(Some(named)));
        assert_eq!(r.inspect(&from_host(ALL_ROUTERS, 255, &rs(false))), Inbound::RouterSolicit(None), "no option");
        // An option naming another MAC than the frame's source: multicast.
        let mut forged = from_host(ALL_ROUTERS, 255, &rs(true));
        forged[6..12].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 9]);
        assert_eq!(r.inspect(&forged), Inbound::RouterSolicit(None), "forged option");
        let multicast_source =
            icmpv6_frame(MacAddr(HOST_MAC), multicast_mac(ALL_ROUTERS), ALL_NODES, ALL_ROUTERS, 255, &rs(false));
        assert_eq!(r.inspect(&multicast_source), Inbound::Malformed, "a multicast source");
        assert_eq!(r.inspect(&from_host(ALL_ROUTERS, 64, &rs(true))), Inbound::Malformed, "hop limit not 255");
        let mut bad_sum = from_host(ALL_ROUTERS, 255, &rs(true));
        bad_sum[14 + 40 + 2] ^= 0xff;
        assert_eq!(r.inspect(&bad_sum), Inbound::Malformed, "checksum");
        let mut bad_code = from_host(ALL_ROUTERS, 255, &rs(false));
        bad_code[14 + 40 + 1] = 1;
        reseal(&mut bad_code);
        assert_eq!(r.inspect(&bad_code), Inbound::Malformed, "code 1");
        let mut zero_opt = from_host(ALL_ROUTERS, 255, &rs(true));
        zero_opt[14 + 40 + 8 + 1] = 0;
        reseal(&mut zero_opt);
        assert_eq!(r.inspect(&zero_opt), Inbound::Malformed, "zero-length option");
        // From the unspecified address, no link-layer option is allowed.
        let unspecified = icmpv6_frame(
            MacAddr(HOST_MAC),
            multicast_mac(ALL_ROUTERS),
            Ipv6Addr::UNSPECIFIED,
            ALL_ROUTERS,
            255,
            &rs(true),
        );
        assert_eq!(r.inspect(&unspecified), Inbound::Malformed);
        let unspecified = icmpv6_frame(
            MacAddr(HOST_MAC),
            multicast_mac(ALL_ROUTERS),
            Ipv6Addr::UNSPECIFIED,
            ALL_ROUTERS,
            255,
            &rs(false),
        );
        assert_eq!(r.inspect(&unspecified), Inbound::RouterSolicit(None));
    }

    #[test]
    fn what_goes_to_the_stack() {
        let r = router(true);
        let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: GW6,
            lladdr: Some(RawHardwareAddress::from(EthernetAddress(HOST_MAC))),
        });
        assert_eq!(r.inspect(&from_host(solicited_node(GW6), 255, &ns)), Inbound::Stack);
        assert_eq!(r.inspect(&from_host(GW6, 255, &ns)), Inbound::Stack, "unicast (reachability probe)");
        let other = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x99);
        let ns_other = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr: other, lladdr: None });
        assert_eq!(r.inspect(&from_host(solicited_node(other), 255, &ns_other)), Inbound::Ignore);
        let echo = Icmpv6Repr::EchoRequest { ident: 1, seq_no: 2, data: b"x" };
        assert_eq!(r.inspect(&from_host(GW6, 64, &echo)), Inbound::Stack);
        assert_eq!(r.inspect(&from_host(r.link_local, 64, &echo)), Inbound::Stack);
        assert_eq!(r.inspect(&from_host(ALL_NODES, 64, &echo)), Inbound::Stack);
        assert_eq!(r.inspect(&from_host(other, 64, &echo)), Inbound::Ignore, "another host's");
        let ra = Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert {
            hop_limit: 64,
            flags: NdiscRouterFlags::empty(),
            router_lifetime: Duration::from_secs(1800),
            reachable_time: Duration::from_secs(0),
            retrans_time: Duration::from_secs(0),
            lladdr: None,
            mtu: None,
            prefix_info: None,
        });
        assert_eq!(r.inspect(&from_host(ALL_NODES, 255, &ra)), Inbound::Ignore, "a rogue router's");
        let mut echo_bad = from_host(GW6, 64, &echo);
        let last = echo_bad.len() - 1;
        echo_bad[last] ^= 1;
        assert_eq!(r.inspect(&echo_bad), Inbound::Malformed);
        let mut short = from_host(GW6, 64, &echo);
        // An ICMPv6 message of 3 bytes.
        short[14 + 4..14 + 6].copy_from_slice(&3u16.to_be_bytes());
        short.truncate(14 + 40 + 3);
        assert_eq!(r.inspect(&short), Inbound::Malformed);
        let mut arp = from_host(GW6, 64, &echo);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(r.inspect(&arp), Inbound::Stack, "not IPv6: the stack's");
        assert_eq!(r.inspect(&arp[..10]), Inbound::Ignore);
    }

    #[test]
    fn senders_worth_a_neighbour_hint() {
        let r = router(true);
        let echo = Icmpv6Repr::EchoRequest { ident: 1, seq_no: 2, data: b"x" };
        assert_eq!(sender(&from_host(GW6, 64, &echo), &r), Some((HOST6, MacAddr(HOST_MAC))));
        let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr: GW6, lladdr: None });
        assert_eq!(sender(&from_host(GW6, 255, &ns), &r), None, "the stack learns from NDP itself");
        let outside = icmpv6_frame(
            MacAddr(HOST_MAC),
            EthernetAddress(r.mac.0),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            GW6,
            64,
            &echo,
        );
        assert_eq!(sender(&outside, &r), None, "not on the link");
        let from_ll = icmpv6_frame(MacAddr(HOST_MAC), EthernetAddress(r.mac.0), HOST_LL, r.link_local, 64, &echo);
        assert_eq!(sender(&from_ll, &r), Some((HOST_LL, MacAddr(HOST_MAC))));
        // The hint is a valid advertisement from the sender, override set.
        let hint = neighbour_hint(&r, HOST_LL, MacAddr(HOST_MAC));
        let eth = EthernetFrame::new_checked(&hint[..]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (HOST_LL, r.link_local, 255));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv6Repr::parse(&HOST_LL, &r.link_local, &icmp, &ChecksumCapabilities::default()).unwrap();
        let Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags, target_addr, lladdr }) = repr else { panic!() };
        assert_eq!((flags, target_addr), (NdiscNeighborFlags::OVERRIDE, HOST_LL));
        assert_eq!(lladdr, Some(RawHardwareAddress::from(EthernetAddress(HOST_MAC))));
    }

    #[test]
    fn a_solicitor_that_names_itself_is_answered_unicast() {
        let r = router(true);
        let to = Solicitor { address: HOST_LL, mac: MacAddr(HOST_MAC) };
        let frame = r.advertisement_to(Some(to));
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress(HOST_MAC));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (r.link_local, HOST_LL, 255));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp, &ChecksumCapabilities::default()).unwrap();
        let multicast = r.advertisement();
        let eth_m = EthernetFrame::new_checked(&multicast[..]).unwrap();
        let ip_m = Ipv6Packet::new_checked(eth_m.payload()).unwrap();
        let icmp_m = Icmpv6Packet::new_checked(ip_m.payload()).unwrap();
        let repr_m =
            Icmpv6Repr::parse(&ip_m.src_addr(), &ip_m.dst_addr(), &icmp_m, &ChecksumCapabilities::default()).unwrap();
        assert_eq!(repr, repr_m, "the same advertisement, addressed to the solicitor");
    }

    #[test]
    fn the_advertisement_parses_back() {
        for default_route in [true, false] {
            let r = router(default_route);
            let frame = r.advertisement();
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.dst_addr(), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]));
            assert_eq!(eth.src_addr(), EthernetAddress(r.mac.0));
            let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
            assert_eq!((ip.src_addr(), ip.dst_addr(), ip.hop_limit()), (r.link_local, ALL_NODES, 255));
            let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
            let src: Ipv6Address = ip.src_addr();
            let repr = Icmpv6Repr::parse(&src, &ip.dst_addr(), &icmp, &ChecksumCapabilities::default()).unwrap();
            let Icmpv6Repr::Ndisc(NdiscRepr::RouterAdvert { router_lifetime, lladdr, mtu, prefix_info, flags, .. }) =
                repr
            else {
                panic!("not an RA: {repr:?}")
            };
            let expected = if default_route { ROUTER_LIFETIME_S } else { 0 };
            assert_eq!(router_lifetime, Duration::from_secs(expected));
            assert_eq!(flags, NdiscRouterFlags::empty(), "no DHCPv6");
            assert_eq!(lladdr, Some(RawHardwareAddress::from(EthernetAddress(r.mac.0))));
            assert_eq!(mtu, Some(1450));
            let prefix = prefix_info.expect("a prefix information option");
            assert_eq!((prefix.prefix, prefix.prefix_len), (Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0), 64));
            assert_eq!(prefix.flags, NdiscPrefixInfoFlags::ON_LINK, "L=1, A=0");
        }
    }

    #[test]
    fn neighbour_advertisements_get_the_router_flag() {
        let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::SOLICITED,
            target_addr: GW6,
            lladdr: None,
        });
        let mut frame = icmpv6_frame(MacAddr([2, 0x77, 1, 2, 3, 4]), EthernetAddress(HOST_MAC), GW6, HOST6, 255, &na);
        mark_router(&mut frame);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let repr = Icmpv6Repr::parse(&GW6, &HOST6, &icmp, &ChecksumCapabilities::default()).expect("checksum fixed");
        let Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags, .. }) = repr else { panic!("{repr:?}") };
        assert_eq!(flags, NdiscNeighborFlags::ROUTER | NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE);
        // Anything else is left alone.
        let echo = Icmpv6Repr::EchoReply { ident: 1, seq_no: 1, data: b"" };
        let original = icmpv6_frame(MacAddr([2, 0x77, 1, 2, 3, 4]), EthernetAddress(HOST_MAC), GW6, HOST6, 64, &echo);
        let mut copy = original.clone();
        mark_router(&mut copy);
        assert_eq!(copy, original);
        mark_router(&mut copy[..20]);
    }

    #[test]
    fn advertisements_follow_rfc_4861_intervals() {
        let mut s = RaSchedule::new(1_000, 7);
        assert!(s.due(1_000), "the first at once");
        s.sent(1_000);
        // The initial ones: MAX_INITIAL_RTR_ADVERT_INTERVAL apart.
        assert_eq!(s.deadline(), 1_000 + MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
        s.sent(s.deadline());
        assert_eq!(s.deadline(), 1_000 + 2 * MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
        s.sent(s.deadline());
        // Then between MinRtrAdvInterval and MaxRtrAdvInterval.
        for _ in 0..50 {
            let last = s.last.unwrap();
            let gap = s.deadline() - last;
            assert!((MIN_RTR_ADV_INTERVAL_MS..=MAX_RTR_ADV_INTERVAL_MS).contains(&gap), "{gap}");
            s.sent(s.deadline());
        }
    }

    #[test]
    fn solicitations_bring_one_forward_within_the_rate_limit() {
        let mut s = RaSchedule::new(0, 9);
        for _ in 0..3 {
            s.sent(s.deadline());
        }
        let last = s.last.unwrap();
        // Right after an advertisement: no sooner than 3 s after it.
        s.solicit(last + 100);
        let at = s.deadline();
        assert!(
            (last + MIN_DELAY_BETWEEN_RAS_MS..=last + MIN_DELAY_BETWEEN_RAS_MS + MAX_RA_DELAY_TIME_MS).contains(&at)
        );
        // Another solicitation does not push it back.
        s.solicit(last + 200);
        assert_eq!(s.deadline(), at);
        s.sent(at);
        // Long after: within MAX_RA_DELAY_TIME.
        let now = at + 60_000;
        s.solicit(now);
        assert!((now..=now + MAX_RA_DELAY_TIME_MS).contains(&s.deadline()));
        assert!(!s.due(now.saturating_sub(1)));
        s.sent(s.deadline());
        // The periodic timer restarted from the solicited one.
        assert!(s.deadline() - s.last.unwrap() >= MIN_RTR_ADV_INTERVAL_MS);
    }
}
