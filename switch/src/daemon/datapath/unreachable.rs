//! Packets a sandbox routes through its gateway to addresses outside its
//! networks that egress does not carry (egress off, another network of the
//! switch, or IPv6, which egress does not carry yet): the gateway answers
//! each with ICMP "network unreachable" or ICMPv6 "no route to
//! destination", so `ping` and `connect` fail at once with a clear message
//! instead of timing out, and the drop is counted (`no_route`) on the
//! sender's port. Both families share one rate limit.

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet};

use super::{Datapath, PortIo};
use crate::counters::DropReason;
use crate::offload;
use crate::port::PortId;
use crate::time::Timestamp;

/// ICMP errors the gateways may send in a burst, and per millisecond after
/// it (Linux's `icmp_msgs_burst` and `icmp_msgs_per_sec` defaults).
const BURST: u32 = 50;
const PER_MS: u32 = 1;

/// A token bucket bounding the ICMP errors the switch sends.
#[derive(Debug)]
pub(super) struct IcmpBudget {
    tokens: u32,
    last: Timestamp,
}

impl IcmpBudget {
    pub(super) fn new() -> IcmpBudget {
        IcmpBudget { tokens: BURST, last: Timestamp(0) }
    }

    /// Takes one token if there is one.
    fn take(&mut self, now: Timestamp) -> bool {
        let refill = now.millis_since(self.last).saturating_mul(u64::from(PER_MS));
        if refill > 0 {
            self.tokens = (u64::from(self.tokens) + refill).min(u64::from(BURST)) as u32;
            self.last = now;
        }
        let ok = self.tokens > 0;
        self.tokens = self.tokens.saturating_sub(1);
        ok
    }
}

/// The IPv4 destination of an untagged frame sent to `mac`, if it is one.
fn routed_ipv4_destination(frame: &[u8], mac: [u8; 6]) -> Option<Ipv4Addr> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.dst_addr().0 != mac || eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    Some(Ipv4Packet::new_checked(eth.payload()).ok()?.dst_addr())
}

/// The IPv6 source and destination of an untagged frame sent to `mac`, if
/// it is one.
fn routed_ipv6(frame: &[u8], mac: [u8; 6]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.dst_addr().0 != mac || eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    Some((ip.src_addr(), ip.dst_addr()))
}

/// Whether `address` is link-local (fe80::/10): never routed.
fn is_link_local(address: Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

impl Datapath {
    /// Handles frame `i`, sent to `gateway`, if it is an IP packet sent to
    /// the gateway's MAC for another address (routed through it): drops it,
    /// counted, and answers ICMP network unreachable (ICMPv6 no route)
    /// within the budget. Returns false for frames the gateway's own stack
    /// takes.
    pub(super) fn no_route(&mut self, gateway: PortId, i: usize) -> bool {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return false };
        let frame = self.batch.frame(i);
        if let Some((source, destination)) = routed_ipv6(frame, gw.mac().0) {
            return self.no_route6(gateway, i, source, destination);
        }
        let Some(destination) = routed_ipv4_destination(frame, gw.mac().0) else { return false };
        let Some(address) = gw.ipv4() else { return false };
        if destination == address || destination.is_broadcast() || destination.is_multicast() {
            return false;
        }
        let ingress = self.batch.entry(i).port;
        self.bridge.count_drop(ingress, DropReason::NoRoute);
        if self.icmp_budget.take(self.clock.now()) {
            let mut answer = Vec::new();
            if offload::icmp_net_unreachable(frame, gw.mac().0, address, &mut answer).is_some() {
                self.injected.push((gateway, answer));
            }
        }
        true
    }

    /// [`Datapath::no_route`] for an IPv6 packet from `source` to
    /// `destination`: answered from the gateway's address (its link-local
    /// one when the sender used its own link-local address).
    fn no_route6(&mut self, gateway: PortId, i: usize, source: Ipv6Addr, destination: Ipv6Addr) -> bool {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return false };
        let Some(address) = gw.ipv6() else { return false };
        if destination == address
            || destination == gw.link_local()
            || destination.is_multicast()
            || destination.is_unspecified()
            || destination.is_loopback()
            || is_link_local(destination)
        {
            return false;
        }
        let from = if is_link_local(source) { gw.link_local() } else { address };
        let ingress = self.batch.entry(i).port;
        self.bridge.count_drop(ingress, DropReason::NoRoute);
        if self.icmp_budget.take(self.clock.now()) {
            let mut answer = Vec::new();
            let frame = self.batch.frame(i);
            if offload::icmpv6_unreachable(frame, offload::Unreachable6::NoRoute, gw.mac().0, from, &mut answer)
                .is_some()
            {
                self.injected.push((gateway, answer));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_one_per_millisecond() {
        let mut b = IcmpBudget::new();
        let now = Timestamp(10_000);
        assert!(b.take(now), "refilled after a long idle");
        let granted = (0..100).filter(|_| b.take(now)).count();
        assert_eq!(granted, BURST as usize - 1);
        assert!(!b.take(now));
        assert!(b.take(Timestamp(10_001)));
        assert!(!b.take(Timestamp(10_001)));
        assert!(b.take(Timestamp(10_003)) && b.take(Timestamp(10_003)) && !b.take(Timestamp(10_003)));
    }

    #[test]
    fn only_unicast_ipv4_to_the_gateway_mac_is_routed() {
        let mac = [0x02, 0x76, 10, 0, 0, 1];
        let mut frame = vec![0u8; 14 + 20];
        frame[..6].copy_from_slice(&mac);
        frame[6..12].copy_from_slice(&[0x02, 0x42, 10, 0, 0, 2]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&20u16.to_be_bytes());
        frame[30..34].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(routed_ipv4_destination(&frame, mac), Some(Ipv4Addr::new(192, 0, 2, 1)));
        let mut broadcast = frame.clone();
        broadcast[..6].fill(0xff);
        assert_eq!(routed_ipv4_destination(&broadcast, mac), None, "not sent to the gateway's MAC");
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(routed_ipv4_destination(&arp, mac), None);
        assert_eq!(routed_ipv4_destination(&frame[..20], mac), None, "truncated");
    }
}
