//! Flow hashing of inner frames and the outer UDP source port.
//!
//! RFC 7348 §5 recommends that the outer UDP source port be "a hash of fields
//! from the inner packet" so that underlay routers spreading traffic over
//! equal-cost paths keep each inner flow on one path (no reordering) while
//! different flows use different paths. [`flow_hash`] computes that hash and
//! [`source_port`] maps it into a port range like Linux's
//! `udp_flow_src_port`.
//!
//! The hash is deterministic: no random seed, so a flow gets the same hash in
//! every call and every process (and every version of this crate, unless the
//! key definition below changes). It is *not* collision resistant against an
//! adversary; it only has to spread flows.

use std::ops::RangeInclusive;

/// The source port range Linux uses for VXLAN by default (its ephemeral port
/// range, `net.ipv4.ip_local_port_range`).
pub const DEFAULT_SOURCE_PORTS: RangeInclusive<u16> = 32768..=60999;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_DCCP: u8 = 33;
const PROTO_SCTP: u8 = 132;
const PROTO_UDPLITE: u8 = 136;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;
/// Bound on the IPv6 extension headers walked before giving up on ports.
const IPV6_MAX_EXT_HEADERS: usize = 8;

/// Domain tags so that keys of different kinds never collide by construction.
mod tag {
    pub(super) const L2: u64 = 1;
    pub(super) const IPV4: u64 = 2;
    pub(super) const IPV6: u64 = 3;
}

/// A small deterministic hasher built on the folded 64x64→128 multiply.
struct FlowHasher(u64);

impl FlowHasher {
    const SEED: u64 = 0x243f_6a88_85a3_08d3;
    const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
    const FIN: u64 = 0xa076_1d64_78bd_642f;

    fn new(tag: u64) -> FlowHasher {
        FlowHasher(fold_mul(Self::SEED ^ tag, Self::MUL))
    }

    fn write(&mut self, word: u64) {
        self.0 = fold_mul(self.0 ^ word, Self::MUL);
    }

    fn finish(self) -> u32 {
        let h = fold_mul(self.0, Self::FIN);
        (h ^ (h >> 32)) as u32
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(s))
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_DCCP | PROTO_SCTP | PROTO_UDPLITE)
}

/// Source and destination ports (first 4 bytes of the transport header) as
/// one word, or 0 when the protocol has none or the header is truncated.
fn ports(l4: &[u8], proto: u8) -> u64 {
    if !has_ports(proto) {
        return 0;
    }
    l4.get(..4).map_or(0, |p| u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
}

/// Hashes the flow an inner Ethernet frame belongs to.
///
/// The key is, after up to two 802.1Q/802.1ad tags:
/// - IPv4 (IHL ≥ 5): source and destination addresses, protocol, and for TCP,
///   UDP, UDP-Lite, SCTP and DCCP non-fragments the source and destination
///   ports;
/// - IPv6: source and destination addresses, the upper-layer protocol after
///   hop-by-hop, routing, destination-options and fragment headers (at most
///   8), and the ports as for IPv4 when the packet is not a fragment;
/// - anything else (ARP, short or malformed IP headers, frames shorter than
///   an Ethernet header): the MAC addresses and the (inner) ethertype, or the
///   bytes there are.
///
/// Fragments hash without ports so that all fragments of a datagram stay on
/// one path. The VLAN ID is not part of the key. Never panics, whatever the
/// input.
pub fn flow_hash(inner_frame: &[u8]) -> u32 {
    let Some(mut ethertype) = be16(inner_frame, 12) else {
        return l2_hash(inner_frame, 0);
    };
    let mut off = 14;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        match be16(inner_frame, off + 2) {
            Some(inner) => {
                ethertype = inner;
                off += 4;
            }
            None => return l2_hash(inner_frame, ethertype),
        }
    }
    let l3 = &inner_frame[off..];
    let hash = match ethertype {
        ETHERTYPE_IPV4 => ipv4_hash(l3),
        ETHERTYPE_IPV6 => ipv6_hash(l3),
        _ => None,
    };
    hash.unwrap_or_else(|| l2_hash(inner_frame, ethertype))
}

/// MACs + ethertype, or the first up-to-12 bytes of a runt frame.
fn l2_hash(frame: &[u8], ethertype: u16) -> u32 {
    let mut macs = [0u8; 16];
    let n = frame.len().min(12);
    macs[..n].copy_from_slice(&frame[..n]);
    let mut h = FlowHasher::new(tag::L2);
    h.write(u64::from_le_bytes([macs[0], macs[1], macs[2], macs[3], macs[4], macs[5], macs[6], macs[7]]));
    h.write(
        u64::from_le_bytes([macs[8], macs[9], macs[10], macs[11], 0, 0, 0, 0])
            | u64::from(ethertype) << 32
            | (n as u64) << 48,
    );
    h.finish()
}

fn ipv4_hash(ip: &[u8]) -> Option<u32> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let proto = ip[9];
    // More-fragments flag or a non-zero fragment offset.
    let fragment = be16(ip, 6)? & 0x3fff != 0;
    let mut h = FlowHasher::new(tag::IPV4);
    h.write(u64::from(be32(ip, 12)?) << 32 | u64::from(be32(ip, 16)?));
    let ports = if fragment { 0 } else { ports(ip.get(ihl..).unwrap_or(&[]), proto) };
    h.write(u64::from(proto) << 32 | ports);
    Some(h.finish())
}

fn ipv6_hash(ip: &[u8]) -> Option<u32> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let mut h = FlowHasher::new(tag::IPV6);
    for at in [8, 16, 24, 32] {
        h.write(be64(ip, at)?);
    }
    let mut next = ip[6];
    let mut off = 40;
    let mut ports_known = true;
    let mut ext = 0;
    while matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_FRAGMENT) {
        ext += 1;
        let Some(hdr) = ip.get(off..off + 8).filter(|_| ext <= IPV6_MAX_EXT_HEADERS) else {
            // Truncated or too long a chain: the protocol is unknown.
            ports_known = false;
            break;
        };
        if next == IPV6_FRAGMENT {
            next = hdr[0];
            // Offset (13 bits) or the M flag: a real fragment, ports only in
            // the first one, so leave them out for all. Otherwise an atomic
            // fragment (RFC 6946): keep walking.
            if u16::from_be_bytes([hdr[2], hdr[3]]) & 0xfff9 != 0 {
                ports_known = false;
                break;
            }
            off += 8;
        } else {
            next = hdr[0];
            off += (usize::from(hdr[1]) + 1) * 8;
        }
    }
    let ports = if ports_known { ports(ip.get(off..).unwrap_or(&[]), next) } else { 0 };
    h.write(u64::from(next) << 32 | ports);
    Some(h.finish())
}

/// Maps a flow hash into `range` (inclusive) to use as the outer UDP source
/// port, the way Linux's `udp_flow_src_port` does: fold the low half of the
/// hash into the high half, then scale by multiplication (no division, no
/// modulo bias worth mentioning).
///
/// An empty range (`start > end`) yields `start`.
pub fn source_port(hash: u32, range: RangeInclusive<u16>) -> u16 {
    let (lo, hi) = (*range.start(), *range.end());
    if hi <= lo {
        return lo;
    }
    let span = u64::from(hi - lo) + 1;
    let hash = hash ^ (hash << 16);
    // (hash * span) >> 32 < span, so the sum stays within lo..=hi.
    lo + ((u64::from(hash) * span) >> 32) as u16
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    fn eth(vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = [DST, SRC].concat();
        if let Some(vid) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0];
        ip.extend_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(&[64, proto, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend_from_slice(l4);
        ip
    }

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, body: &[u8]) -> Vec<u8> {
        let mut l4 = [sport.to_be_bytes(), dport.to_be_bytes(), [0, 8], [0, 0]].concat();
        l4.extend_from_slice(body);
        eth(None, ETHERTYPE_IPV4, &ipv4(src, dst, PROTO_UDP, 0, &l4))
    }

    fn ipv6(next: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        ip.extend_from_slice(&[0xfd; 16]);
        ip.extend_from_slice(&[0xfe; 16]);
        ip.extend_from_slice(ext);
        ip.extend_from_slice(l4);
        eth(None, ETHERTYPE_IPV6, &ip)
    }

    fn ports_l4(sport: u16, dport: u16) -> Vec<u8> {
        [sport.to_be_bytes(), dport.to_be_bytes(), [0, 0], [0, 0]].concat()
    }

    #[test]
    fn same_flow_same_hash() {
        let a = udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53, b"query one");
        let b = udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53, b"another, longer query");
        assert_eq!(flow_hash(&a), flow_hash(&a));
        // Payload, length and TTL-like fields are not part of the flow.
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn hash_is_stable_across_processes() {
        // A fixed value: if this changes, every deployed VTEP's source ports
        // change (harmless, but it must not happen by accident, e.g. through a
        // random seed).
        let a = udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53, b"");
        assert_eq!(flow_hash(&a), 0x250d_a175, "flow hash changed: {:#x}", flow_hash(&a));
    }

    #[test]
    fn every_key_field_matters() {
        let base = flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53, b""));
        assert_ne!(base, flow_hash(&udp4([10, 0, 0, 3], [10, 0, 0, 2], 40000, 53, b"")));
        assert_ne!(base, flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 3], 40000, 53, b"")));
        assert_ne!(base, flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 40001, 53, b"")));
        assert_ne!(base, flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 54, b"")));
        let tcp = eth(None, ETHERTYPE_IPV4, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], PROTO_TCP, 0, &ports_l4(40000, 53)));
        assert_ne!(base, flow_hash(&tcp));
    }

    #[test]
    fn many_flows_spread_over_buckets_and_ports() {
        // 1000 flows differing only in the client port.
        let hashes: Vec<u32> =
            (0..1000u16).map(|i| flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 33000 + i, 443, b""))).collect();
        let distinct: HashSet<u32> = hashes.iter().copied().collect();
        assert_eq!(distinct.len(), 1000, "collisions among 1000 flows");
        // 16 ECMP buckets: every bucket used, none with more than twice its share.
        let mut buckets = [0u32; 16];
        for h in &hashes {
            buckets[(h >> 28) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (20..=125).contains(&n)), "uneven buckets: {buckets:?}");
        // Source ports: nearly all distinct out of 28,232.
        let ports: HashSet<u16> = hashes.iter().map(|&h| source_port(h, DEFAULT_SOURCE_PORTS)).collect();
        assert!(ports.len() >= 950, "only {} distinct source ports", ports.len());
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], PROTO_UDP, 0, &ports_l4(1, 2));
        let untagged = eth(None, ETHERTYPE_IPV4, &ip);
        let tagged = eth(Some(100), ETHERTYPE_IPV4, &ip);
        assert_eq!(flow_hash(&untagged), flow_hash(&tagged));
        let mut qinq = [DST, SRC].concat();
        qinq.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        qinq.extend_from_slice(&ip);
        assert_eq!(flow_hash(&untagged), flow_hash(&qinq));
    }

    #[test]
    fn ipv4_fragments_hash_without_ports() {
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        // First fragment (MF set) carries ports; a later one (offset 185) does not.
        let first = eth(None, ETHERTYPE_IPV4, &ipv4(src, dst, PROTO_UDP, 0x2000, &ports_l4(1000, 2000)));
        let later = eth(None, ETHERTYPE_IPV4, &ipv4(src, dst, PROTO_UDP, 185, b"whatever bytes"));
        assert_eq!(flow_hash(&first), flow_hash(&later));
        let whole = eth(None, ETHERTYPE_IPV4, &ipv4(src, dst, PROTO_UDP, 0, &ports_l4(1000, 2000)));
        assert_ne!(flow_hash(&whole), flow_hash(&first));
        // DF alone is not fragmentation.
        let df = eth(None, ETHERTYPE_IPV4, &ipv4(src, dst, PROTO_UDP, 0x4000, &ports_l4(1000, 2000)));
        assert_eq!(flow_hash(&whole), flow_hash(&df));
    }

    #[test]
    fn ipv4_options_are_skipped_to_reach_ports() {
        let mut ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], PROTO_TCP, 0, &[]);
        ip[0] = 0x46; // IHL 6: one 4-byte option word.
        ip.extend_from_slice(&[1, 1, 1, 0]);
        ip.extend_from_slice(&ports_l4(5, 6));
        let plain = ipv4([10, 0, 0, 1], [10, 0, 0, 2], PROTO_TCP, 0, &ports_l4(5, 6));
        assert_eq!(flow_hash(&eth(None, ETHERTYPE_IPV4, &ip)), flow_hash(&eth(None, ETHERTYPE_IPV4, &plain)));
    }

    #[test]
    fn ipv6_ports_and_extension_headers() {
        let plain = ipv6(PROTO_TCP, &[], &ports_l4(80, 5000));
        assert_ne!(flow_hash(&plain), flow_hash(&ipv6(PROTO_TCP, &[], &ports_l4(80, 5001))));
        // Hop-by-hop (8 bytes) then TCP: same flow as without it.
        let hbh = ipv6(IPV6_HOP_BY_HOP, &[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0], &ports_l4(80, 5000));
        assert_eq!(flow_hash(&plain), flow_hash(&hbh));
        // Atomic fragment (offset 0, M clear): ports still used.
        let atomic = ipv6(IPV6_FRAGMENT, &[PROTO_TCP, 0, 0, 0, 0, 0, 0, 1], &ports_l4(80, 5000));
        assert_eq!(flow_hash(&plain), flow_hash(&atomic));
        // Real fragments: first (M set) and later (offset 1) hash alike, without ports.
        let first = ipv6(IPV6_FRAGMENT, &[PROTO_TCP, 0, 0, 1, 0, 0, 0, 1], &ports_l4(80, 5000));
        let later = ipv6(IPV6_FRAGMENT, &[PROTO_TCP, 0, 0, 8, 0, 0, 0, 1], b"middle of the datagram");
        assert_eq!(flow_hash(&first), flow_hash(&later));
        assert_ne!(flow_hash(&first), flow_hash(&plain));
    }

    #[test]
    fn non_ip_uses_macs_and_ethertype() {
        let arp = eth(None, 0x0806, &[0u8; 28]);
        let mut other_src = arp.clone();
        other_src[11] = 9;
        let mut other_type = arp.clone();
        other_type[13] = 0x35; // RARP
        assert_eq!(flow_hash(&arp), flow_hash(&eth(None, 0x0806, &[1u8; 28])));
        assert_ne!(flow_hash(&arp), flow_hash(&other_src));
        assert_ne!(flow_hash(&arp), flow_hash(&other_type));
        // A truncated IPv4 header falls back to the L2 key rather than failing.
        let short_ip = eth(None, ETHERTYPE_IPV4, &[0x45, 0, 0]);
        assert_eq!(flow_hash(&short_ip), flow_hash(&eth(None, ETHERTYPE_IPV4, &[0x45; 19])));
    }

    #[test]
    fn short_and_garbage_frames_do_not_panic() {
        let f = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x");
        for len in 0..=f.len() {
            flow_hash(&f[..len]);
        }
        let v6 = ipv6(IPV6_ROUTING, &[IPV6_DEST_OPTS, 255], &[]);
        for len in 0..=v6.len() {
            flow_hash(&v6[..len]);
        }
        // A chain of more extension headers than we walk.
        let chain: Vec<u8> = (0..10).flat_map(|_| [IPV6_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]).collect();
        flow_hash(&ipv6(IPV6_DEST_OPTS, &chain, &ports_l4(1, 2)));
        assert_ne!(flow_hash(&[]), flow_hash(&[1]));
    }

    #[test]
    fn source_port_stays_in_range() {
        for h in [0, 1, 0xffff, 0x1_0000, 0x8000_0000, u32::MAX, 0xdead_beef] {
            assert!(DEFAULT_SOURCE_PORTS.contains(&source_port(h, DEFAULT_SOURCE_PORTS)));
            assert_eq!(source_port(h, 4789..=4789), 4789);
            assert!((1000..=1001).contains(&source_port(h, 1000..=1001)));
        }
        assert_eq!(source_port(0, DEFAULT_SOURCE_PORTS), 32768);
        assert_eq!(source_port(u32::MAX ^ (u32::MAX << 16), 0..=u16::MAX), u16::MAX);
        // Empty range: start.
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 100..=50;
        assert_eq!(source_port(12345, empty), 100);
    }

    #[test]
    fn source_port_reaches_both_ends() {
        let ports: Vec<u16> = (0..=u16::MAX).map(|i| source_port(u32::from(i) << 16 | 0x1234, 10..=13)).collect();
        for p in 10..=13 {
            assert!(ports.contains(&p), "port {p} never chosen");
        }
    }
}
