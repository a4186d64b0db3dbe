//! Proxy ARP and neighbour discovery for remote endpoints, sans-IO.
//!
//! On an overlay spread over a cluster, the switch knows the MAC of every
//! remote endpoint from the cluster store, so it answers a local sandbox's
//! ARP request (who has 10.0.0.7?) or IPv6 neighbour solicitation for a
//! remote address itself, with the remote MAC, rather than flooding the
//! request to every host of the network (as Linux's `neigh_suppress` and
//! EVPN ARP suppression do).
//!
//! [`ProxyTable::answer`] takes a frame and writes the answer into a
//! caller buffer: no allocation, no I/O. [`may_ask`] looks at three bytes,
//! so the datapath parses only ARP and neighbour solicitation frames and
//! looks only those up. A request the table cannot answer — an unknown
//! address, anything malformed (a bad ICMPv6 checksum, a hop limit other
//! than 255, a VLAN tag, a gratuitous ARP, duplicate address detection) —
//! gets `None` and goes on as before (flooded).

use std::net::{Ipv4Addr, Ipv6Addr};

use foldhash::fast::RandomState;
use hashbrown::HashMap;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Packet,
    Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

use crate::wire::{ETHERNET_HEADER_LEN, MacAddr};

/// The largest answer: a neighbour advertisement with its target
/// link-layer address option (14 + 40 + 32 bytes). An ARP reply is 42.
pub const MAX_ANSWER_LEN: usize = 86;

/// ARP's EtherType.
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// IPv6's EtherType.
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
/// Offset of the IPv6 next header field in an untagged frame.
const IPV6_NEXT_HEADER: usize = ETHERNET_HEADER_LEN + 6;
/// Offset of the ICMPv6 type in an untagged frame without extension headers.
const ICMPV6_TYPE: usize = ETHERNET_HEADER_LEN + 40;
/// ICMPv6's protocol number.
const ICMPV6: u8 = 58;
/// The ICMPv6 type of a neighbour solicitation.
const NEIGHBOR_SOLICIT: u8 = 135;

/// Which protocol an answer belongs to (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// An ARP reply.
    Arp,
    /// An IPv6 neighbour advertisement.
    Nd,
}

/// What the switch answered on one network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    /// ARP requests answered with a remote endpoint's MAC.
    pub arp_replies: u64,
    /// Neighbour solicitations answered with a remote endpoint's MAC.
    pub nd_replies: u64,
}

impl ProxyCounters {
    /// Counts one answer of `protocol`.
    pub fn count(&mut self, protocol: Protocol) {
        match protocol {
            Protocol::Arp => self.arp_replies += 1,
            Protocol::Nd => self.nd_replies += 1,
        }
    }
}

/// Whether `frame` may be an ARP request or a neighbour solicitation (an
/// untagged ARP frame, or an untagged IPv6 frame whose first header after
/// IPv6 is ICMPv6 of type 135): the only frames worth parsing. Three byte
/// compares; anything shorter than it needs is not.
#[inline]
pub fn may_ask(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some(t) if t == ETHERTYPE_ARP => true,
        Some(t) if t == ETHERTYPE_IPV6 => {
            frame.get(IPV6_NEXT_HEADER) == Some(&ICMPV6) && frame.get(ICMPV6_TYPE) == Some(&NEIGHBOR_SOLICIT)
        }
        _ => false,
    }
}

/// A valid request the proxy may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// An ARP request (who has `target`? tell `sender_ip`).
    Arp {
        /// The requester's hardware address (where the reply goes).
        sender_mac: MacAddr,
        /// The requester's IPv4 address (0.0.0.0 for an RFC 5227 probe).
        sender_ip: Ipv4Addr,
        /// The address asked for.
        target: Ipv4Addr,
    },
    /// A neighbour solicitation, multicast to the target's solicited-node
    /// group or unicast to the target.
    Neighbor {
        /// The Ethernet source of the solicitation (where the answer goes).
        sender_mac: MacAddr,
        /// Its IPv6 source (never unspecified: DAD is not answered).
        sender_ip: Ipv6Addr,
        /// The address asked for.
        target: Ipv6Addr,
    },
}

impl Question {
    /// The request in `frame`, if it is a valid ARP request or neighbour
    /// solicitation (RFC 826; RFC 4861 §7.1.1: hop limit 255, code 0, a
    /// valid checksum, a unicast target, sent to the target's
    /// solicited-node group or to the target itself, from a unicast
    /// address). Gratuitous ARP and duplicate address detection are not
    /// questions for the proxy.
    pub fn parse(frame: &[u8]) -> Option<Question> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let source = eth.src_addr();
        if !source.is_unicast() {
            return None;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let dst = eth.dst_addr();
                let packet = ArpPacket::new_checked(eth.payload()).ok()?;
                let ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                } = ArpRepr::parse(&packet).ok()?
                else {
                    return None;
                };
                // Announcements (sender = target) need no answer; a request
                // sent to another station's unicast MAC is that station's.
                if source_protocol_addr == target_protocol_addr || !source_hardware_addr.is_unicast() {
                    return None;
                }
                if !dst.is_broadcast() && !dst.is_unicast() {
                    return None;
                }
                Some(Question::Arp {
                    sender_mac: MacAddr(source_hardware_addr.0),
                    sender_ip: source_protocol_addr,
                    target: target_protocol_addr,
                })
            }
            EthernetProtocol::Ipv6 => {
                let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
                if ip.version() != 6 || ip.next_header() != IpProtocol::Icmpv6 || ip.hop_limit() != 255 {
                    return None;
                }
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                if src.is_unspecified() || src.is_multicast() {
                    return None;
                }
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                if icmp.msg_code() != 0 {
                    return None;
                }
                let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()).ok()?;
                let Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, .. }) = repr else { return None };
                if target_addr.is_multicast() || target_addr.is_unspecified() {
                    return None;
                }
                if dst != target_addr && dst != solicited_node(target_addr) {
                    return None;
                }
                Some(Question::Neighbor { sender_mac: MacAddr(source.0), sender_ip: src, target: target_addr })
            }
            _ => None,
        }
    }

    /// Writes the answer saying the target is at `mac` into `out` (at
    /// least [`MAX_ANSWER_LEN`] bytes); returns its length and protocol,
    /// `None` when `out` is too small.
    ///
    /// An ARP reply goes from `mac` to the requester, the target's MAC as
    /// the sender hardware address. A neighbour advertisement goes from
    /// (`mac`, target) to the solicitor, hop limit 255, flags solicited
    /// and override (the answer is the target's own MAC, not a proxy's),
    /// with the target link-layer address option and its checksum.
    pub fn answer(&self, mac: MacAddr, out: &mut [u8]) -> Option<(usize, Protocol)> {
        match *self {
            Question::Arp { sender_mac, sender_ip, target } => {
                let arp = ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: EthernetAddress(mac.0),
                    source_protocol_addr: target,
                    target_hardware_addr: EthernetAddress(sender_mac.0),
                    target_protocol_addr: sender_ip,
                };
                let eth = EthernetRepr {
                    src_addr: EthernetAddress(mac.0),
                    dst_addr: EthernetAddress(sender_mac.0),
                    ethertype: EthernetProtocol::Arp,
                };
                let len = eth.buffer_len() + arp.buffer_len();
                let mut frame = EthernetFrame::new_unchecked(out.get_mut(..len)?);
                eth.emit(&mut frame);
                arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
                Some((len, Protocol::Arp))
            }
            Question::Neighbor { sender_mac, sender_ip, target } => {
                let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                    target_addr: target,
                    lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac.0))),
                });
                let ip = Ipv6Repr {
                    src_addr: target,
                    dst_addr: sender_ip,
                    next_header: IpProtocol::Icmpv6,
                    payload_len: icmp.buffer_len(),
                    hop_limit: 255,
                };
                let eth = EthernetRepr {
                    src_addr: EthernetAddress(mac.0),
                    dst_addr: EthernetAddress(sender_mac.0),
                    ethertype: EthernetProtocol::Ipv6,
                };
                let len = eth.buffer_len() + ip.buffer_len() + icmp.buffer_len();
                let mut frame = EthernetFrame::new_unchecked(out.get_mut(..len)?);
                eth.emit(&mut frame);
                let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
                ip.emit(&mut packet);
                let caps = ChecksumCapabilities::default();
                icmp.emit(&target, &sender_ip, &mut Icmpv6Packet::new_unchecked(packet.payload_mut()), &caps);
                Some((len, Protocol::Nd))
            }
        }
    }
}

/// The solicited-node multicast group of `address` (RFC 4291 §2.7.1).
pub fn solicited_node(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// The remote addresses one network's proxy answers for, and their MACs.
#[derive(Debug, Clone, Default)]
pub struct ProxyTable {
    ipv4: HashMap<Ipv4Addr, MacAddr, RandomState>,
    ipv6: HashMap<Ipv6Addr, MacAddr, RandomState>,
}

impl ProxyTable {
    /// An empty table.
    pub fn new() -> ProxyTable {
        ProxyTable::default()
    }

    /// Answers `ipv4` with `mac` from now on (replacing an earlier MAC).
    pub fn insert_ipv4(&mut self, ipv4: Ipv4Addr, mac: MacAddr) {
        self.ipv4.insert(ipv4, mac);
    }

    /// Answers `ipv6` with `mac` from now on (replacing an earlier MAC).
    pub fn insert_ipv6(&mut self, ipv6: Ipv6Addr, mac: MacAddr) {
        self.ipv6.insert(ipv6, mac);
    }

    /// Whether the table answers nothing.
    pub fn is_empty(&self) -> bool {
        self.ipv4.is_empty() && self.ipv6.is_empty()
    }

    /// Number of addresses answered (IPv4 and IPv6).
    pub fn len(&self) -> usize {
        self.ipv4.len() + self.ipv6.len()
    }

    /// The MAC the table gives for the target of `question`.
    pub fn lookup(&self, question: &Question) -> Option<MacAddr> {
        match question {
            Question::Arp { target, .. } => self.ipv4.get(target).copied(),
            Question::Neighbor { target, .. } => self.ipv6.get(target).copied(),
        }
    }

    /// The answer to `frame`, written into `out`: its length and protocol,
    /// or `None` when `frame` is no valid request for an address of the
    /// table (or asks for the requester's own MAC).
    pub fn answer(&self, frame: &[u8], out: &mut [u8]) -> Option<(usize, Protocol)> {
        if self.is_empty() || !may_ask(frame) {
            return None;
        }
        let question = Question::parse(frame)?;
        let mac = self.lookup(&question)?;
        let requester = match question {
            Question::Arp { sender_mac, .. } | Question::Neighbor { sender_mac, .. } => sender_mac,
        };
        if mac == requester {
            return None;
        }
        question.answer(mac, out)
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{Icmpv6Type, PacketBuilder};

    use super::*;

    const LOCAL: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 2]);
    const REMOTE: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 7]);

    fn arp(op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr, dst: MacAddr) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&sha.0);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&sha.0);
        f.extend_from_slice(&spa.octets());
        f.extend_from_slice(&tha.0);
        f.extend_from_slice(&tpa.octets());
        f
    }

    fn request(target: Ipv4Addr) -> Vec<u8> {
        arp(1, LOCAL, Ipv4Addr::new(10, 0, 0, 2), MacAddr::ZERO, target, MacAddr::BROADCAST)
    }

    fn ns(src: Ipv6Addr, dst: Ipv6Addr, dst_mac: MacAddr, hop_limit: u8, target: Ipv6Addr) -> Vec<u8> {
        let mut payload = target.octets().to_vec();
        payload.extend_from_slice(&[1, 1]);
        payload.extend_from_slice(&LOCAL.0);
        let b = PacketBuilder::ethernet2(LOCAL.0, dst_mac.0)
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(Icmpv6Type::NeighborSolicitation);
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        f
    }

    fn group_mac(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    fn table() -> ProxyTable {
        let mut t = ProxyTable::new();
        t.insert_ipv4(Ipv4Addr::new(10, 0, 0, 7), REMOTE);
        t.insert_ipv6("fd00::7".parse().unwrap(), REMOTE);
        t
    }

    #[test]
    fn an_arp_request_for_a_known_address_gets_the_exact_reply() {
        let mut out = [0u8; MAX_ANSWER_LEN];
        let (len, kind) = table().answer(&request(Ipv4Addr::new(10, 0, 0, 7)), &mut out).expect("an answer");
        assert_eq!(kind, Protocol::Arp);
        let expected = arp(2, REMOTE, Ipv4Addr::new(10, 0, 0, 7), LOCAL, Ipv4Addr::new(10, 0, 0, 2), LOCAL);
        assert_eq!(&out[..len], &expected[..]);
        assert_eq!(len, 42);
    }

    #[test]
    fn unknown_malformed_and_uninteresting_arp_gets_no_answer() {
        let t = table();
        let mut out = [0u8; MAX_ANSWER_LEN];
        assert_eq!(t.answer(&request(Ipv4Addr::new(10, 0, 0, 8)), &mut out), None, "unknown address");
        let reply = arp(2, LOCAL, Ipv4Addr::new(10, 0, 0, 2), REMOTE, Ipv4Addr::new(10, 0, 0, 7), REMOTE);
        assert_eq!(t.answer(&reply, &mut out), None, "a reply is no question");
        let known = Ipv4Addr::new(10, 0, 0, 7);
        let gratuitous = arp(1, LOCAL, known, MacAddr::ZERO, known, MacAddr::BROADCAST);
        assert_eq!(t.answer(&gratuitous, &mut out), None, "an announcement");
        let req = request(known);
        assert_eq!(t.answer(&req[..40], &mut out), None, "truncated");
        let mut bad = req.clone();
        bad[18] = 5; // hardware length
        assert_eq!(t.answer(&bad, &mut out), None, "not Ethernet/IPv4 ARP");
        let mut group_src = req.clone();
        group_src[6] = 0x03;
        assert_eq!(t.answer(&group_src, &mut out), None, "a group source MAC");
        // Asking for one's own MAC (a remote record claiming the asker's MAC).
        let mut own = ProxyTable::new();
        own.insert_ipv4(known, LOCAL);
        assert_eq!(own.answer(&req, &mut out), None);
        // A buffer too small.
        assert_eq!(t.answer(&req, &mut [0u8; 41]), None);
        // A probe (sender 0.0.0.0) is answered: the address is in use.
        let probe = arp(1, LOCAL, Ipv4Addr::UNSPECIFIED, MacAddr::ZERO, known, MacAddr::BROADCAST);
        let (len, _) = t.answer(&probe, &mut out).expect("a probe is answered");
        assert_eq!(&out[len - 4..len], &[0, 0, 0, 0]);
    }

    /// Checks the NA in `frame` with etherparse: addresses, hop limit,
    /// checksum, flags, target and its link-layer option.
    fn check_na(frame: &[u8], to: (MacAddr, Ipv6Addr), target: Ipv6Addr) {
        let sliced = etherparse::SlicedPacket::from_ethernet(frame).expect("an Ethernet frame");
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sliced.link else { panic!("not Ethernet II") };
        assert_eq!((eth.source(), eth.destination()), (REMOTE.0, to.0.0));
        let (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Icmpv6(icmp))) =
            (&sliced.net, &sliced.transport)
        else {
            panic!("not ICMPv6")
        };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination_addr(), h.hop_limit()), (target, to.1, 255));
        assert!(icmp.is_checksum_valid(h.source_addr().octets(), h.destination_addr().octets()), "checksum");
        let Icmpv6Type::NeighborAdvertisement(na) = icmp.icmp_type() else {
            panic!("not an NA: {:?}", icmp.icmp_type())
        };
        assert!(na.solicited && na.r#override && !na.router, "{na:?}");
        let mut payload = target.octets().to_vec();
        payload.extend_from_slice(&[2, 1]);
        payload.extend_from_slice(&REMOTE.0);
        assert_eq!(icmp.payload(), &payload[..], "target and its link-layer address option");
    }

    #[test]
    fn a_neighbour_solicitation_multicast_or_unicast_gets_a_valid_advertisement() {
        let t = table();
        let (me, target): (Ipv6Addr, Ipv6Addr) = ("fd00::2".parse().unwrap(), "fd00::7".parse().unwrap());
        let group = solicited_node(target);
        assert_eq!(group, "ff02::1:ff00:7".parse::<Ipv6Addr>().unwrap());
        let mut out = [0u8; MAX_ANSWER_LEN];
        for request in [ns(me, group, group_mac(group), 255, target), ns(me, target, REMOTE, 255, target)] {
            assert!(may_ask(&request));
            let (len, kind) = t.answer(&request, &mut out).expect("an answer");
            assert_eq!((len, kind), (MAX_ANSWER_LEN, Protocol::Nd));
            check_na(&out[..len], (LOCAL, me), target);
        }
        // From a link-local address too.
        let ll: Ipv6Addr = "fe80::42:ff:fe00:2".parse().unwrap();
        let (len, _) = t.answer(&ns(ll, group, group_mac(group), 255, target), &mut out).expect("an answer");
        check_na(&out[..len], (LOCAL, ll), target);
    }

    #[test]
    fn invalid_or_unknown_solicitations_get_no_answer() {
        let t = table();
        let (me, target): (Ipv6Addr, Ipv6Addr) = ("fd00::2".parse().unwrap(), "fd00::7".parse().unwrap());
        let group = solicited_node(target);
        let mut out = [0u8; MAX_ANSWER_LEN];
        let unknown: Ipv6Addr = "fd00::8".parse().unwrap();
        let g8 = solicited_node(unknown);
        assert_eq!(t.answer(&ns(me, g8, group_mac(g8), 255, unknown), &mut out), None, "unknown");
        assert_eq!(t.answer(&ns(me, group, group_mac(group), 64, target), &mut out), None, "hop limit");
        let dad = ns(Ipv6Addr::UNSPECIFIED, group, group_mac(group), 255, target);
        assert_eq!(t.answer(&dad, &mut out), None, "duplicate address detection");
        let other = solicited_node("fd00::9".parse().unwrap());
        assert_eq!(t.answer(&ns(me, other, group_mac(other), 255, target), &mut out), None, "wrong group");
        let mut bad_sum = ns(me, group, group_mac(group), 255, target);
        bad_sum[56] ^= 0xff;
        assert!(may_ask(&bad_sum));
        assert_eq!(t.answer(&bad_sum, &mut out), None, "bad checksum");
        let mut code = ns(me, group, group_mac(group), 255, target);
        code[55] = 1;
        assert_eq!(t.answer(&code, &mut out), None, "code 1");
        let good = ns(me, group, group_mac(group), 255, target);
        assert_eq!(t.answer(&good[..70], &mut out), None, "truncated");
        // An echo request is not even looked at.
        let b = PacketBuilder::ethernet2(LOCAL.0, REMOTE.0)
            .ipv6(me.octets(), target.octets(), 64)
            .icmpv6_echo_request(1, 1);
        let mut echo = Vec::new();
        b.write(&mut echo, &[]).unwrap();
        assert!(!may_ask(&echo));
        assert_eq!(t.answer(&echo, &mut out), None);
    }

    /// Valid requests for known addresses, to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        let (me, target): (Ipv6Addr, Ipv6Addr) = ("fd00::2".parse().unwrap(), "fd00::7".parse().unwrap());
        let group = solicited_node(target);
        vec![
            request(Ipv4Addr::new(10, 0, 0, 7)),
            ns(me, group, group_mac(group), 255, target),
            ns(me, target, REMOTE, 255, target),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        /// Whatever a sandbox sends, the proxy neither panics nor writes
        /// past its answer, and every answer is a well-formed ARP reply or
        /// a neighbour advertisement with a valid checksum.
        #[test]
        fn mutated_requests_never_panic_and_answers_stay_well_formed(
            seed in 0..3usize,
            flips in proptest::collection::vec((0..100usize, proptest::prelude::any::<u8>()), 0..4),
            cut in 0..100usize,
        ) {
            let t = table();
            let mut frame = seeds()[seed].clone();
            for (at, byte) in flips {
                if let Some(b) = frame.get_mut(at) {
                    *b = byte;
                }
            }
            frame.truncate(frame.len() - cut.min(frame.len()));
            let mut out = [0xaau8; MAX_ANSWER_LEN + 8];
            if let Some((len, kind)) = t.answer(&frame, &mut out[..MAX_ANSWER_LEN]) {
                proptest::prop_assert!(out[MAX_ANSWER_LEN..].iter().all(|&b| b == 0xaa));
                match kind {
                    Protocol::Arp => proptest::prop_assert_eq!(len, 42),
                    Protocol::Nd => {
                        let sliced = etherparse::SlicedPacket::from_ethernet(&out[..len]).unwrap();
                        let (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Icmpv6(icmp))) =
                            (&sliced.net, &sliced.transport)
                        else {
                            panic!("not ICMPv6");
                        };
                        let h = ip.header();
                        proptest::prop_assert!(icmp.is_checksum_valid(h.source_addr().octets(), h.destination_addr().octets()));
                    }
                }
            }
        }
    }

    #[test]
    fn only_arp_and_neighbour_solicitations_are_worth_parsing() {
        assert!(may_ask(&request(Ipv4Addr::new(10, 0, 0, 9))));
        let mut tagged = request(Ipv4Addr::new(10, 0, 0, 7));
        tagged.splice(12..12, [0x81, 0x00, 0, 5]);
        assert!(!may_ask(&tagged), "VLAN-tagged frames are left alone");
        assert!(!may_ask(&[0u8; 13]));
        let mut ipv4 = request(Ipv4Addr::new(10, 0, 0, 7));
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(!may_ask(&ipv4));
        assert_eq!(ProxyTable::new().answer(&request(Ipv4Addr::new(10, 0, 0, 7)), &mut [0; 86]), None);
    }
}
