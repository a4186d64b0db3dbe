//! VXLAN encapsulation and decapsulation of 1,450-byte inner frames (the
//! inner MTU of a 1,500-byte IPv4 underlay, so 1,458-byte UDP payloads), one
//! core, against a baseline measured in the same run: a plain
//! `copy_from_slice` of the 1,458-byte packet, the least any copying
//! datapath does per frame.
//!
//! Benchmarks (each over a ring of 64 distinct frames per iteration):
//! - `write_header`: the zero-copy encapsulation the datapath uses (the inner
//!   frame already sits 8 bytes into the buffer; write the header in front).
//! - `encap_zero_copy_full`: `flow_hash` + `source_port` + `write_header`,
//!   everything the datapath computes per frame to encapsulate.
//! - `encapsulate_into`: the copying form, header + 1,450-byte copy.
//! - `decapsulate`: header checks, returning the inner frame in place.
//! - `decapsulate_copy`: `decapsulate` followed by a copy of the inner frame.
//! - `baseline_copy_1458B`: `copy_from_slice` of 1,458 bytes.
//!
//! `cargo bench --bench vxlan` prints criterion's throughput and then a summary
//! table of frames/s with the ratio to the baseline.

mod support;
use std::hint::black_box;

use criterion::{Criterion, Throughput};
use vxlan::{
    DEFAULT_SOURCE_PORTS, HEADER_LEN, Vni, decapsulate, encapsulate_into, flow_hash, source_port, write_header,
};

const INNER_LEN: usize = 1450;
const PACKET_LEN: usize = HEADER_LEN + INNER_LEN;
const RING: usize = 64;
const GROUP: &str = "vxlan_1450B";
const TARGET_MFPS: f64 = 5.0;

const BENCHES: [&str; 5] =
    ["write_header", "encap_zero_copy_full", "encapsulate_into", "decapsulate", "decapsulate_copy"];
const BASELINE: &str = "baseline_copy_1458B";

/// An untagged IPv4/UDP inner frame of `INNER_LEN` bytes; flow `i` differs in
/// its UDP source port.
fn inner_frame(i: usize) -> [u8; INNER_LEN] {
    let mut f = [0u8; INNER_LEN];
    f[0..6].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((INNER_LEN - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    ip[20..22].copy_from_slice(&(40000 + i as u16).to_be_bytes());
    ip[22..24].copy_from_slice(&5201u16.to_be_bytes());
    for (j, b) in ip[28..].iter_mut().enumerate() {
        *b = (i + j) as u8;
    }
    f
}

/// Ring of buffers laid out like the datapath's: 8 bytes of room, then the
/// inner frame.
fn packets() -> Vec<[u8; PACKET_LEN]> {
    (0..RING)
        .map(|i| {
            let mut p = [0u8; PACKET_LEN];
            p[HEADER_LEN..].copy_from_slice(&inner_frame(i));
            encapsulate_into(Vni::new(42).unwrap(), &inner_frame(i), &mut p).unwrap();
            p
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let vni = Vni::new(42).unwrap();
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(RING as u64));

    let mut bufs = packets();
    group.bench_function("write_header", |b| {
        b.iter(|| {
            for p in bufs.iter_mut() {
                let (header, _) = p.split_first_chunk_mut::<HEADER_LEN>().unwrap();
                write_header(black_box(vni), header);
            }
            black_box(&mut bufs);
        })
    });

    let mut ports = [0u16; RING];
    group.bench_function("encap_zero_copy_full", |b| {
        b.iter(|| {
            for (p, port) in bufs.iter_mut().zip(ports.iter_mut()) {
                let (header, inner) = p.split_first_chunk_mut::<HEADER_LEN>().unwrap();
                *port = source_port(flow_hash(inner), DEFAULT_SOURCE_PORTS);
                write_header(black_box(vni), header);
            }
            black_box((&mut bufs, &mut ports));
        })
    });

    let inners: Vec<[u8; INNER_LEN]> = (0..RING).map(inner_frame).collect();
    let mut out = vec![[0u8; PACKET_LEN]; RING];
    group.bench_function("encapsulate_into", |b| {
        b.iter(|| {
            for (inner, o) in inners.iter().zip(out.iter_mut()) {
                black_box(encapsulate_into(black_box(vni), inner, o).unwrap());
            }
            black_box(&mut out);
        })
    });

    let received = packets();
    group.bench_function("decapsulate", |b| {
        b.iter(|| {
            for p in black_box(&received) {
                let (v, inner) = decapsulate(p).unwrap();
                black_box((v, inner.as_ptr(), inner.len()));
            }
        })
    });

    let mut tap = vec![[0u8; INNER_LEN]; RING];
    group.bench_function("decapsulate_copy", |b| {
        b.iter(|| {
            for (p, t) in black_box(&received).iter().zip(tap.iter_mut()) {
                let (v, inner) = decapsulate(p).unwrap();
                t.copy_from_slice(inner);
                black_box(v);
            }
            black_box(&mut tap);
        })
    });

    group.bench_function(BASELINE, |b| {
        b.iter(|| {
            for (p, o) in black_box(&received).iter().zip(out.iter_mut()) {
                o.copy_from_slice(p);
            }
            black_box(&mut out);
        })
    });
    group.finish();
}

/// Mean nanoseconds per iteration criterion recorded for one benchmark.
fn mean_ns(bench: &str) -> Option<f64> {
    support::criterion_mean_ns(GROUP, &[bench])
}

fn summary() {
    let mfps = |ns: f64| RING as f64 / ns * 1e3;
    println!("\nVXLAN frames per second, one core, {INNER_LEN}-byte inner frames ({PACKET_LEN}-byte UDP payloads):");
    let Some(base) = mean_ns(BASELINE) else {
        println!("  (no baseline estimate recorded; run without a filter)");
        return;
    };
    println!("{:>22}  {:>10}  {:>18}  {:>8}", "benchmark", "Mfps", "vs copy baseline", "target");
    println!("{:>22}  {:>10.1}  {:>17.2}x  {:>8}", BASELINE, mfps(base), 1.0, "");
    for name in BENCHES {
        let Some(ours) = mean_ns(name) else {
            println!("{name:>22}  (no estimate recorded; run without a filter)");
            continue;
        };
        let verdict = if mfps(ours) >= TARGET_MFPS { "ok" } else { "MISSED" };
        println!("{name:>22}  {:>10.1}  {:>17.2}x  {:>8}", mfps(ours), base / ours, verdict);
    }
    println!(
        "(ratio = baseline time / benchmark time: above 1 is faster than copying the packet; target {TARGET_MFPS} Mfps)"
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
