//! What proxy ARP/ND costs the packet path: the check every frame of a
//! network with a cluster view pays (`may_ask` on a batch of 256 IPv4
//! frames), and a whole answer (parse, lookup in a table of 10,000 remote
//! endpoints, reply built in a caller buffer) to an ARP request and to a
//! neighbour solicitation.
//!
//! `cargo bench --bench proxy` prints criterion's times.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput};
use switch::MacAddr;
use switch::proxy::{MAX_ANSWER_LEN, ProxyTable, may_ask, solicited_node};

const BATCH: usize = 256;
const REMOTES: u32 = 10_000;
const LOCAL: [u8; 6] = [0x02, 0x42, 0xff, 0, 0, 2];

fn remote_mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

fn remote_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

fn remote_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(i))
}

fn table() -> ProxyTable {
    let mut t = ProxyTable::new();
    for i in 1..=REMOTES {
        t.insert_ipv4(remote_v4(i), remote_mac(i));
        t.insert_ipv6(remote_v6(i), remote_mac(i));
    }
    t
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&LOCAL);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&LOCAL);
    f.extend_from_slice(&[10, 255, 0, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A neighbour solicitation with a source link-layer option and a valid
/// checksum, to the target's solicited-node group.
fn neighbor_solicit(target: Ipv6Addr) -> Vec<u8> {
    let src: Ipv6Addr = "fd00::ff:2".parse().unwrap();
    let group = solicited_node(target);
    let g = group.octets();
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&LOCAL);
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&g);
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(&icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = vec![0x33, 0x33, g[12], g[13], g[14], g[15]];
    f.extend_from_slice(&LOCAL);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&g);
    f.extend_from_slice(&icmp);
    f
}

fn bench(c: &mut Criterion) {
    let t = table();
    let mut out = [0u8; MAX_ANSWER_LEN];

    let ipv4: Vec<[u8; 64]> = (0..BATCH)
        .map(|i| {
            let mut f = [0u8; 64];
            f[0..6].copy_from_slice(&remote_mac(i as u32 + 1).0);
            f[6..12].copy_from_slice(&LOCAL);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f
        })
        .collect();
    let mut group = c.benchmark_group("proxy_check");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("may_ask_ipv4_batch", |b| {
        b.iter(|| black_box(&ipv4).iter().filter(|f| may_ask(&f[..])).count())
    });
    group.finish();

    let arp: Vec<Vec<u8>> = (0..64).map(|i| arp_request(remote_v4(i * 150 + 1))).collect();
    let ns: Vec<Vec<u8>> = (0..64).map(|i| neighbor_solicit(remote_v6(i * 150 + 1))).collect();
    assert!(arp.iter().all(|f| t.answer(f, &mut out).is_some()), "every ARP request is answered");
    assert!(ns.iter().all(|f| t.answer(f, &mut out).is_some()), "every solicitation is answered");
    let mut group = c.benchmark_group("proxy_answer");
    group.throughput(Throughput::Elements(1));
    let mut n = 0;
    group.bench_function("arp_request_10k_remotes", |b| {
        b.iter(|| {
            n = (n + 1) % arp.len();
            black_box(t.answer(black_box(&arp[n]), &mut out))
        })
    });
    let mut n = 0;
    group.bench_function("neighbor_solicit_10k_remotes", |b| {
        b.iter(|| {
            n = (n + 1) % ns.len();
            black_box(t.answer(black_box(&ns[n]), &mut out))
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
