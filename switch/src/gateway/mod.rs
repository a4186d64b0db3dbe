//! The switch's own presence on a bridge network: an internal port backed by
//! a smoltcp interface that owns the network's gateway addresses. It answers
//! ARP and ICMP echo for the IPv4 gateway, neighbour discovery and ICMPv6
//! echo for the IPv6 gateway and its link-local address, advertises itself
//! as the network's IPv6 router ([`ndp`]), and serves DNS on port 53 (UDP
//! queries are taken off before the stack, see [`dns`]; TCP is served by
//! the stack's sockets). Published ports will live on the same stack.
//!
//! The datapath hands it frames the bridge forwarded to the internal port and
//! injects whatever it answers back into the bridge as if received on that
//! port. It is a slow path (control traffic to the gateway), so frames are
//! queued as owned buffers.

pub mod dns;
#[cfg(test)]
mod dns_tests;
pub mod ndp;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress,
    IpAddress, IpCidr, Ipv4Cidr,
};

use crate::counters::DropReason;
use crate::time::Timestamp;
use crate::wire::MacAddr;
use dns::{TcpAnswer, TcpConn, TcpQuery, TcpServer};
use ndp::{Inbound, RaSchedule, Router};

/// Frames waiting for the stack beyond this are refused (`gateway_busy`).
const RX_QUEUE_LIMIT: usize = 256;
/// A solicitor gets at most one unicast router advertisement this often
/// (ms); sooner, it waits for the multicast schedule.
const UNICAST_RA_INTERVAL_MS: u64 = 1_000;
/// IPv6 neighbours the gateway remembers having told its stack about (and
/// solicitors it answered); each table starts afresh when full.
const NEIGHBOUR_HINTS: usize = 1024;
/// How long a neighbour the stack was told about stays told: well within
/// smoltcp's 60 s neighbour cache lifetime, so the stack never forgets a
/// neighbour that keeps sending.
const NEIGHBOUR_HINT_MS: u64 = 20_000;

/// The MAC address the switch uses for a network's gateway: locally
/// administered, derived from the gateway address so it is stable across
/// restarts and distinct from endpoint MACs (`02:42:…`).
pub fn gateway_mac(gateway: Ipv4Addr) -> MacAddr {
    let o = gateway.octets();
    MacAddr([0x02, 0x76, o[0], o[1], o[2], o[3]])
}

/// The MAC address of the gateway of an IPv6-only network: locally
/// administered, `02:77:` and 32 bits of an FNV-1a hash of the whole
/// gateway address, so it is stable across restarts and distinct from
/// endpoint MACs (`02:42:…`) and from IPv4 gateways' (`02:76:…`).
pub fn gateway_mac6(gateway: Ipv6Addr) -> MacAddr {
    let hash = gateway.octets().iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let h = hash.to_be_bytes();
    MacAddr([0x02, 0x77, h[0], h[1], h[2], h[3]])
}

/// The EUI-64 link-local address (fe80::/64) of `mac` (RFC 4291 App. A):
/// the gateway's IPv6 source for router advertisements and ICMPv6 errors.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// The IPv6 side of a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Config {
    /// The gateway's address.
    pub address: Ipv6Addr,
    /// The on-link prefix's length.
    pub prefix_len: u8,
    /// Advertise itself as the default router (not `--internal`).
    pub default_route: bool,
}

/// In-memory frame queues standing in for a NIC.
#[derive(Debug)]
struct FrameQueue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

/// Receive token: one queued frame.
struct RxToken(Vec<u8>);
/// Transmit token: appends to the output queue.
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl Device for FrameQueue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = Some(RX_QUEUE_LIMIT);
        // Frames come from the host's own TAPs, whose kernel may leave L4
        // checksums to offload (virtio NEEDS_CSUM): verify only what the
        // kernel always fills in, compute everything on transmit.
        let mut checksum = ChecksumCapabilities::default();
        checksum.udp = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// The IPv6 router state of a gateway.
#[derive(Debug)]
struct Ipv6Side {
    router: Router,
    ra: RaSchedule,
    /// Senders the stack was last told about (see [`ndp::neighbour_hint`]):
    /// their MAC and when.
    hinted: HashMap<Ipv6Addr, (MacAddr, Timestamp)>,
    /// When each solicitor last got a unicast advertisement: one a second
    /// at most, the rest wait for the multicast schedule.
    answered: HashMap<MacAddr, Timestamp>,
}

/// The userspace gateway of one network.
pub struct Gateway {
    iface: Interface,
    device: FrameQueue,
    sockets: SocketSet<'static>,
    mac: MacAddr,
    ipv4: Option<(Ipv4Addr, u8)>,
    ipv6: Option<Ipv6Side>,
    dns_tcp: TcpServer,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("mac", &self.mac)
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6.as_ref().map(|v6| v6.router.address))
            .finish()
    }
}

fn instant(now: Timestamp) -> Instant {
    Instant::from_millis(now.0 as i64)
}

/// An Ethernet ARP request's sender (hardware and protocol address) and
/// target protocol address.
fn arp_request(frame: &[u8]) -> Option<(EthernetAddress, Ipv4Addr, Ipv4Addr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => Some((source_hardware_addr, source_protocol_addr, target_protocol_addr)),
        _ => None,
    }
}

impl Gateway {
    /// An IPv4-only gateway owning `address/prefix_len` on a network whose
    /// MTU is `mtu`.
    pub fn new(address: Ipv4Addr, prefix_len: u8, mtu: u32, now: Timestamp) -> Gateway {
        Gateway::dual(Some((address, prefix_len)), None, mtu, now)
    }

    /// A gateway owning the IPv4 address `ipv4` (address, prefix length)
    /// and the IPv6 side `ipv6`, either or both, on a network whose MTU is
    /// `mtu`. Its MAC is derived from the IPv4 address, or from the IPv6
    /// one on an IPv6-only network; with IPv6 it also owns its MAC's
    /// link-local address and sends its first router advertisement at
    /// once.
    pub fn dual(ipv4: Option<(Ipv4Addr, u8)>, ipv6: Option<Ipv6Config>, mtu: u32, now: Timestamp) -> Gateway {
        let mac = match (ipv4, ipv6) {
            (Some((address, _)), _) => gateway_mac(address),
            (None, Some(v6)) => gateway_mac6(v6.address),
            (None, None) => gateway_mac(Ipv4Addr::UNSPECIFIED),
        };
        let seed = u64::from_be_bytes([0, 0, mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5]]);
        let mut device = FrameQueue { rx: VecDeque::new(), tx: Vec::new(), mtu: mtu as usize };
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, instant(now));
        let ipv6 = ipv6.map(|v6| Ipv6Side {
            router: Router {
                mac,
                link_local: link_local(mac),
                address: v6.address,
                prefix_len: v6.prefix_len,
                default_route: v6.default_route,
                mtu,
            },
            ra: RaSchedule::new(now.0, seed),
            hinted: HashMap::new(),
            answered: HashMap::new(),
        });
        iface.update_ip_addrs(|addrs| {
            // At most three addresses; the interface holds three
            // (`iface-max-addr-count-3`).
            if let Some((address, prefix_len)) = ipv4 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(address), prefix_len));
            }
            if let Some(v6) = &ipv6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(v6.router.address), v6.router.prefix_len));
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(v6.router.link_local), 64));
            }
        });
        let mut sockets = SocketSet::new(Vec::new());
        let dns_tcp = TcpServer::new(&mut sockets);
        Gateway { iface, device, sockets, mac, ipv4, ipv6, dns_tcp }
    }

    /// The gateway's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The gateway's IPv4 address, if the network has IPv4.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4.map(|(address, _)| address)
    }

    /// The gateway's IPv4 address and its subnet's prefix length.
    pub fn subnet(&self) -> Option<(Ipv4Addr, u8)> {
        self.ipv4
    }

    /// The gateway's IPv6 address, if the network has IPv6.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6.as_ref().map(|v6| v6.router.address)
    }

    /// The gateway's IPv6 address and its prefix length.
    pub fn subnet6(&self) -> Option<(Ipv6Addr, u8)> {
        self.ipv6.as_ref().map(|v6| (v6.router.address, v6.router.prefix_len))
    }

    /// The gateway's link-local address (derived from its MAC), owned
    /// when the network has IPv6.
    pub fn link_local(&self) -> Ipv6Addr {
        link_local(self.mac)
    }

    /// Queues a frame the bridge delivered to the gateway, at `now`. A
    /// router solicitation schedules an advertisement instead; IPv6 that
    /// is not for the gateway is ignored (all of it when the network has
    /// no IPv6). `Err` names why a frame was refused: a malformed ICMPv6
    /// message for the gateway, or [`DropReason::GatewayBusy`] for a frame
    /// (or a defence it asks for) beyond the stack's queue's room.
    pub fn deliver(&mut self, frame: &[u8], now: Timestamp) -> Result<(), DropReason> {
        let ipv6 = frame.get(12..14) == Some(&[0x86, 0xdd][..]);
        if ipv6 {
            let Some(v6) = &mut self.ipv6 else { return Ok(()) };
            match v6.router.inspect(frame) {
                Inbound::Stack => {
                    if let Some((address, mac)) = ndp::sender(frame, &v6.router) {
                        let known = v6
                            .hinted
                            .get(&address)
                            .is_some_and(|(m, at)| *m == mac && now.millis_since(*at) < NEIGHBOUR_HINT_MS);
                        if !known && self.device.rx.len() < RX_QUEUE_LIMIT {
                            if v6.hinted.len() >= NEIGHBOUR_HINTS {
                                v6.hinted.clear();
                            }
                            v6.hinted.insert(address, (mac, now));
                            self.device.rx.push_back(ndp::neighbour_hint(&v6.router, address, mac));
                        }
                    }
                }
                Inbound::Ignore => return Ok(()),
                Inbound::Malformed => return Err(DropReason::Icmpv6Malformed),
                Inbound::RouterSolicit(None) => {
                    v6.ra.solicit(now.0);
                    return Ok(());
                }
                Inbound::RouterSolicit(Some(solicitor)) => {
                    // At once, without RFC 4861's random 0–500 ms: that
                    // delay keeps several routers of a link out of step,
                    // and a network has one (radvd answers at once too).
                    // One a second per solicitor; more solicitations wait
                    // for the multicast schedule.
                    let recent = v6
                        .answered
                        .get(&solicitor.mac)
                        .is_some_and(|at| now.millis_since(*at) < UNICAST_RA_INTERVAL_MS);
                    if recent {
                        v6.ra.solicit(now.0);
                        return Ok(());
                    }
                    // Sent with the stack's own frames at the next poll.
                    if self.device.tx.len() >= RX_QUEUE_LIMIT {
                        return Err(DropReason::GatewayBusy);
                    }
                    if v6.answered.len() >= NEIGHBOUR_HINTS {
                        v6.answered.clear();
                    }
                    v6.answered.insert(solicitor.mac, now);
                    self.device.tx.push(v6.router.advertisement_to(Some(solicitor)));
                    return Ok(());
                }
                Inbound::Defend(address) => {
                    // Sent with the stack's own frames at the next poll.
                    if self.device.tx.len() >= RX_QUEUE_LIMIT {
                        return Err(DropReason::GatewayBusy);
                    }
                    self.device.tx.push(v6.router.defence(address));
                    return Ok(());
                }
            }
        }
        if self.device.rx.len() >= RX_QUEUE_LIMIT {
            return Err(DropReason::GatewayBusy);
        }
        self.device.rx.push_back(frame.to_vec());
        Ok(())
    }

    /// The sender's address of `frame` if it is an ARP request for the
    /// gateway's IPv4 address from a unicast sender outside its subnet,
    /// which smoltcp ignores. Linux asks that way when it routes a packet
    /// through this gateway from its address on another network (the weak
    /// host model; with the default `arp_announce` 0 the request carries
    /// the packet's source address), and a host router answers it: see
    /// [`Gateway::answer_off_subnet_arp`], for the caller to use once it
    /// knows the sender may claim that address.
    pub fn off_subnet_arp_sender(&self, frame: &[u8]) -> Option<Ipv4Addr> {
        let (address, prefix_len) = self.ipv4?;
        let (sender_mac, sender, target) = arp_request(frame)?;
        let subnet = Ipv4Cidr::new(address, prefix_len);
        let odd = sender.is_broadcast()
            || sender.is_multicast()
            || sender.is_unspecified()
            || sender.is_loopback()
            || sender.is_link_local();
        (target == address && !subnet.contains_addr(&sender) && sender_mac.is_unicast() && !odd).then_some(sender)
    }

    /// Queues the gateway's reply to the ARP request `frame` (one
    /// [`Gateway::off_subnet_arp_sender`] named), sent with the stack's
    /// frames at the next poll. The stack learns nothing from it: it never
    /// sends to such a sender, the translator answers its flows.
    pub fn answer_off_subnet_arp(&mut self, frame: &[u8]) -> Result<(), DropReason> {
        let Some(reply) = self.arp_reply(frame) else { return Ok(()) };
        if self.device.tx.len() >= RX_QUEUE_LIMIT {
            return Err(DropReason::GatewayBusy);
        }
        self.device.tx.push(reply);
        Ok(())
    }

    /// The reply to the ARP request `frame` for the gateway's address.
    fn arp_reply(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let (address, _) = self.ipv4?;
        let (source_hardware_addr, source_protocol_addr, target) = arp_request(frame)?;
        if target != address {
            return None;
        }
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(self.mac.0),
            source_protocol_addr: address,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let repr = EthernetRepr {
            src_addr: EthernetAddress(self.mac.0),
            dst_addr: source_hardware_addr,
            ethertype: EthernetProtocol::Arp,
        };
        let mut reply = vec![0u8; repr.buffer_len() + arp.buffer_len()];
        let mut out = EthernetFrame::new_unchecked(&mut reply[..]);
        repr.emit(&mut out);
        arp.emit(&mut ArpPacket::new_unchecked(out.payload_mut()));
        Some(reply)
    }

    /// When the gateway next needs [`Gateway::poll`] for a timer of its
    /// own (a router advertisement), if it has one.
    pub fn next_timer(&self) -> Option<Timestamp> {
        self.ipv6.as_ref().map(|v6| Timestamp(v6.ra.deadline()))
    }

    /// Runs the stack and moves every frame it wants to send into `out`,
    /// with a router advertisement when one is due.
    /// Whole DNS queries that arrived over TCP go to `dns`, which answers
    /// at once, or later through [`Gateway::dns_tcp_answer`].
    pub fn poll(&mut self, now: Timestamp, out: &mut Vec<Vec<u8>>, dns: &mut dyn FnMut(TcpQuery) -> TcpAnswer) {
        self.iface.poll(instant(now), &mut self.device, &mut self.sockets);
        if self.dns_tcp.service(&mut self.sockets, now, dns) {
            // Send what the DNS server just wrote, and its resets.
            self.iface.poll(instant(now), &mut self.device, &mut self.sockets);
            self.dns_tcp.relisten(&mut self.sockets);
        }
        if let Some(v6) = &mut self.ipv6 {
            for frame in &mut self.device.tx {
                ndp::mark_router(frame);
            }
            if v6.ra.due(now.0) {
                self.device.tx.push(v6.router.advertisement());
                v6.ra.sent(now.0);
            }
        }
        out.append(&mut self.device.tx);
    }

    /// Queues the answer to a DNS query that came over TCP and was
    /// forwarded; it goes out at the next [`Gateway::poll`].
    pub fn dns_tcp_answer(&mut self, conn: TcpConn, bytes: &[u8]) {
        self.dns_tcp.answer(conn, bytes);
    }

    /// The TCP DNS server's counters: connections cut (idle, slow,
    /// evicted) and queries refused as oversize.
    pub fn dns_tcp_counters(&self) -> (u64, u64) {
        (self.dns_tcp.closed_idle(), self.dns_tcp.oversize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};

    const GW: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
    const HOST_MAC: [u8; 6] = [0x02, 0x42, 172, 17, 0, 2];

    fn ethernet(dst: EthernetAddress, ethertype: EthernetProtocol, payload_len: usize) -> (Vec<u8>, EthernetRepr) {
        let repr = EthernetRepr { src_addr: EthernetAddress(HOST_MAC), dst_addr: dst, ethertype };
        (vec![0u8; repr.buffer_len() + payload_len], repr)
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(HOST_MAC),
            source_protocol_addr: HOST,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let (mut buf, eth) = ethernet(EthernetAddress::BROADCAST, EthernetProtocol::Arp, arp.buffer_len());
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        eth.emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        buf
    }

    #[test]
    fn answers_arp_for_the_gateway_only() {
        let mut gw = Gateway::new(GW, 16, 1500, Timestamp(0));
        let mut out = Vec::new();
        gw.deliver(&arp_request(Ipv4Addr::new(172, 17, 0, 9)), Timestamp(1)).unwrap();
        gw.poll(Timestamp(1), &mut out, &mut |_| TcpAnswer::Close);
        assert!(out.is_empty(), "no answer for another address");
        gw.deliver(&arp_request(GW), Timestamp(1)).unwrap();
        gw.poll(Timestamp(2), &mut out, &mut |_| TcpAnswer::Close);
        let reply = EthernetFrame::new_checked(&out[0][..]).unwrap();
        assert_eq!(reply.dst_addr(), EthernetAddress(HOST_MAC));
        assert_eq!(reply.src_addr(), EthernetAddress(gateway_mac(GW).0));
        let arp = ArpRepr::parse(&ArpPacket::new_checked(reply.payload()).unwrap()).unwrap();
        match arp {
            ArpRepr::EthernetIpv4 { operation, source_protocol_addr, .. } => {
                assert_eq!(operation, ArpOperation::Reply);
                assert_eq!(source_protocol_addr, GW);
            }
            _ => panic!("unexpected {arp:?}"),
        }
    }

    #[test]
    fn answers_arp_from_a_sender_outside_its_subnet_only_when_asked_to() {
        let mut gw = Gateway::new(GW, 16, 1500, Timestamp(0));
        let mut out = Vec::new();
        // Linux asks from its address on another network when a socket
        // bound to it routes through this gateway (weak host model).
        let elsewhere = Ipv4Addr::new(10, 9, 0, 2);
        let with_sender = |sender: Ipv4Addr, target: Ipv4Addr| {
            let mut request = arp_request(target);
            ArpPacket::new_unchecked(&mut request[14..]).set_source_protocol_addr(&sender.octets());
            request
        };
        let request = with_sender(elsewhere, GW);
        assert_eq!(gw.off_subnet_arp_sender(&request), Some(elsewhere));
        // The stack alone ignores it.
        gw.deliver(&request, Timestamp(1)).unwrap();
        gw.poll(Timestamp(1), &mut out, &mut |_| TcpAnswer::Close);
        assert!(out.is_empty(), "smoltcp answered an off-subnet sender: {out:?}");
        gw.answer_off_subnet_arp(&request).unwrap();
        gw.poll(Timestamp(2), &mut out, &mut |_| TcpAnswer::Close);
        assert_eq!(out.len(), 1, "one reply");
        let reply = EthernetFrame::new_checked(&out[0][..]).unwrap();
        assert_eq!(reply.dst_addr(), EthernetAddress(HOST_MAC));
        let arp = ArpRepr::parse(&ArpPacket::new_checked(reply.payload()).unwrap()).unwrap();
        let expected = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(gateway_mac(GW).0),
            source_protocol_addr: GW,
            target_hardware_addr: EthernetAddress(HOST_MAC),
            target_protocol_addr: elsewhere,
        };
        assert_eq!(arp, expected);
        // Not the gateway's to answer this way: its own subnet's senders
        // (the stack answers them), other targets, senders no host has.
        for (sender, target) in [
            (HOST, GW),
            (elsewhere, Ipv4Addr::new(172, 17, 0, 9)),
            (Ipv4Addr::BROADCAST, GW),
            (Ipv4Addr::UNSPECIFIED, GW),
            (Ipv4Addr::LOCALHOST, GW),
            (Ipv4Addr::new(169, 254, 1, 1), GW),
            (Ipv4Addr::new(224, 0, 0, 1), GW),
        ] {
            assert_eq!(gw.off_subnet_arp_sender(&with_sender(sender, target)), None, "{sender} asking for {target}");
        }
        assert_eq!(gw.off_subnet_arp_sender(&arp_request(GW)), None);
    }

    #[test]
    fn frames_beyond_the_stacks_queue_are_refused_by_name() {
        let mut gw = Gateway::new(GW, 16, 1500, Timestamp(0));
        for _ in 0..RX_QUEUE_LIMIT {
            gw.deliver(&arp_request(GW), Timestamp(1)).unwrap();
        }
        assert_eq!(gw.deliver(&arp_request(GW), Timestamp(1)), Err(DropReason::GatewayBusy));
        let mut out = Vec::new();
        gw.poll(Timestamp(2), &mut out, &mut |_| TcpAnswer::Close);
        assert!(!out.is_empty(), "the queued frames were answered");
        gw.deliver(&arp_request(GW), Timestamp(3)).expect("room again after a poll");
    }

    #[test]
    fn answers_ping_to_the_gateway() {
        let mut gw = Gateway::new(GW, 16, 1500, Timestamp(0));
        let mut out = Vec::new();
        // As a real host does, the sender resolves the gateway first, which
        // teaches the gateway the sender's MAC.
        gw.deliver(&arp_request(GW), Timestamp(1)).unwrap();
        gw.poll(Timestamp(1), &mut out, &mut |_| TcpAnswer::Close);
        out.clear();
        let data = b"vswitch-ping";
        let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 3, data };
        let ip = Ipv4Repr {
            src_addr: HOST,
            dst_addr: GW,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let (mut buf, eth) =
            ethernet(EthernetAddress(gateway_mac(GW).0), EthernetProtocol::Ipv4, ip.buffer_len() + icmp.buffer_len());
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        eth.emit(&mut frame);
        let mut ipp = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut ipp, &ChecksumCapabilities::default());
        icmp.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &ChecksumCapabilities::default());
        gw.deliver(&buf, Timestamp(2)).unwrap();
        gw.poll(Timestamp(2), &mut out, &mut |_| TcpAnswer::Close);
        let reply = out
            .iter()
            .filter_map(|f| {
                let eth = EthernetFrame::new_checked(&f[..]).ok()?;
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
                let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).ok()?;
                match repr {
                    Icmpv4Repr::EchoReply { ident, seq_no, data: d } if d == data => {
                        Some((ident, seq_no, ip.dst_addr()))
                    }
                    _ => None,
                }
            })
            .next();
        assert_eq!(reply, Some((7, 3, HOST)), "frames out: {}", out.len());
    }
}
