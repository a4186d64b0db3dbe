//! ChaCha20-Poly1305 and AES-256-GCM on 1,400-byte inner frames, one core:
//! the `crypto` crate's framing (header, session key, nonce, replay window)
//! against the raw ring cipher on the same buffers, and the two ciphers
//! against each other, measured in the same run.
//!
//! Benchmarks (each over a ring of 64 buffers per iteration):
//! - `raw_seal_open` (baseline): ring `seal_in_place_separate_tag` then
//!   `open_in_place` of the 1,400 bytes, no header, no associated data.
//! - `seal_open`: `Sealer::seal_in_place` then `Opener::open` of the packet,
//!   everything a sender and a receiver do per frame.
//! - `raw_seal` (baseline for sealing alone) and `seal_in_place`.
//! - `seal_vec`: `Sealer::seal` appending the 64 packets to one reserved
//!   buffer, the batch (GSO) path.
//! - `raw_aes_seal_open` and `aes_seal_open`: `raw_seal_open` and
//!   `seal_open` with AES-256-GCM (`-o cipher=aes-256-gcm`).
//!
//! `cargo bench --bench crypto` prints criterion's throughput and then a
//! summary table of GB/s of inner frames with the ratio to the raw cipher.

mod support;
use std::hint::black_box;

use criterion::{Criterion, Throughput};
use crypto::{Cipher, ClusterSecret, ENCRYPTED_OVERHEAD, HEADER_LEN, InnerChecksum, NetworkKey, Opener, Sealer, Vni};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

const INNER_LEN: usize = 1400;
const RING: usize = 64;
const GROUP: &str = "crypto_1400B";
/// The framing must keep at least this share of the raw cipher's throughput.
const TARGET_RATIO: f64 = 0.8;

/// (benchmark, its raw-cipher baseline).
const PAIRS: [(&str, &str); 4] = [
    ("seal_open", "raw_seal_open"),
    ("seal_in_place", "raw_seal"),
    ("seal_vec", "raw_seal"),
    ("aes_seal_open", "raw_aes_seal_open"),
];
const BASELINES: [&str; 3] = ["raw_seal_open", "raw_seal", "raw_aes_seal_open"];

fn inner_frame(i: usize) -> Vec<u8> {
    (0..INNER_LEN).map(|j| (i * 7 + j) as u8).collect()
}

/// A packet buffer as the datapath lays it out: room for the header, the
/// inner frame, room for the tag. The raw cipher runs on the same layout
/// (bytes `HEADER_LEN..`), so only the framing differs.
fn packet_buffer(i: usize) -> Vec<u8> {
    let mut b = vec![0u8; INNER_LEN + ENCRYPTED_OVERHEAD];
    b[HEADER_LEN..HEADER_LEN + INNER_LEN].copy_from_slice(&inner_frame(i));
    b
}

fn bench(c: &mut Criterion) {
    let secret = ClusterSecret::from_bytes([0x5c; 32]);
    let vni = Vni::new(42).unwrap();
    let network = NetworkKey::derive(&secret, vni, 1);
    let mut sealer = Sealer::new(network.clone()).unwrap();
    let mut opener = Opener::new(&secret, vni, 1);

    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Bytes((RING * INNER_LEN) as u64));

    // Raw cipher: a fixed nonce is fine for measuring.
    let raw_key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[0x5c; 32]).unwrap());
    let mut raw: Vec<Vec<u8>> = (0..RING).map(packet_buffer).collect();
    group.bench_function("raw_seal_open", |b| {
        b.iter(|| {
            for buf in raw.iter_mut() {
                let buf = &mut buf[HEADER_LEN..];
                raw_seal(&raw_key, buf);
                let n = Nonce::assume_unique_for_key([0; 12]);
                let plain = raw_key.open_in_place(n, Aad::empty(), buf).unwrap();
                black_box(plain.len());
            }
        })
    });
    assert_eq!(raw[5][HEADER_LEN..HEADER_LEN + INNER_LEN], inner_frame(5)[..], "raw round trip restores the frame");

    let mut packets: Vec<Vec<u8>> = (0..RING).map(packet_buffer).collect();
    group.bench_function("seal_open", |b| {
        b.iter(|| {
            for p in packets.iter_mut() {
                let n = sealer.seal_in_place(p, INNER_LEN, InnerChecksum::AsSent).unwrap();
                let opened = opener.open(&mut p[..n]).unwrap();
                black_box(opened.inner.len());
            }
        })
    });
    assert_eq!(packets[5][HEADER_LEN..HEADER_LEN + INNER_LEN], inner_frame(5)[..], "round trip restores the frame");

    group.bench_function("raw_seal", |b| {
        b.iter(|| {
            for buf in raw.iter_mut() {
                raw_seal(&raw_key, &mut buf[HEADER_LEN..]);
            }
            black_box(&mut raw);
        })
    });

    group.bench_function("seal_in_place", |b| {
        b.iter(|| {
            for p in packets.iter_mut() {
                black_box(sealer.seal_in_place(p, INNER_LEN, InnerChecksum::AsSent).unwrap());
            }
        })
    });

    let aes_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x5c; 32]).unwrap());
    group.bench_function("raw_aes_seal_open", |b| {
        b.iter(|| {
            for buf in raw.iter_mut() {
                let buf = &mut buf[HEADER_LEN..];
                raw_seal(&aes_key, buf);
                let n = Nonce::assume_unique_for_key([0; 12]);
                black_box(aes_key.open_in_place(n, Aad::empty(), buf).unwrap().len());
            }
        })
    });

    let mut aes_sealer = Sealer::with_cipher(network.clone(), Cipher::Aes256Gcm).unwrap();
    let mut aes_opener = Opener::new(&secret, vni, 1).with_cipher(Cipher::Aes256Gcm);
    let mut aes_packets: Vec<Vec<u8>> = (0..RING).map(packet_buffer).collect();
    group.bench_function("aes_seal_open", |b| {
        b.iter(|| {
            for p in aes_packets.iter_mut() {
                let n = aes_sealer.seal_in_place(p, INNER_LEN, InnerChecksum::AsSent).unwrap();
                black_box(aes_opener.open(&mut p[..n]).unwrap().inner.len());
            }
        })
    });
    assert_eq!(aes_packets[5][HEADER_LEN..HEADER_LEN + INNER_LEN], inner_frame(5)[..], "AES round trip");

    let frames: Vec<Vec<u8>> = (0..RING).map(inner_frame).collect();
    let mut out = Vec::with_capacity(RING * (INNER_LEN + ENCRYPTED_OVERHEAD));
    group.bench_function("seal_vec", |b| {
        b.iter(|| {
            out.clear();
            for f in &frames {
                black_box(sealer.seal(f, &mut out).unwrap());
            }
            black_box(&mut out);
        })
    });
    group.finish();
}

/// Seals `buf[..INNER_LEN]` with the raw cipher and a fixed nonce (fine for
/// measuring), writing the tag after it: the baseline without framing.
fn raw_seal(key: &LessSafeKey, buf: &mut [u8]) {
    let (body, tag_room) = buf.split_at_mut(INNER_LEN);
    let n = Nonce::assume_unique_for_key([0; 12]);
    let tag = key.seal_in_place_separate_tag(n, Aad::empty(), body).unwrap();
    tag_room[..tag.as_ref().len()].copy_from_slice(tag.as_ref());
}

/// Mean nanoseconds per iteration criterion recorded for one benchmark.
fn mean_ns(bench: &str) -> Option<f64> {
    support::criterion_mean_ns(GROUP, &[bench])
}

fn summary() {
    let gbps = |ns: f64| (RING * INNER_LEN) as f64 / ns;
    println!(
        "\nAEAD throughput, one core, {INNER_LEN}-byte inner frames (GB/s of inner frames; aes_* are AES-256-GCM,"
    );
    println!("the rest ChaCha20-Poly1305):");
    println!("{:>17}  {:>8}  {:>17}  {:>8}", "benchmark", "GB/s", "vs raw cipher", "target");
    for name in BASELINES {
        match mean_ns(name) {
            Some(ns) => println!("{name:>17}  {:>8.2}  {:>14.2}x  {:>8}", gbps(ns), 1.0, ""),
            None => println!("{name:>17}  (no estimate recorded; run without a filter)"),
        }
    }
    for (name, base) in PAIRS {
        let (Some(ours), Some(raw)) = (mean_ns(name), mean_ns(base)) else {
            println!("{name:>17}  (no estimate recorded for it or {base}; run without a filter)");
            continue;
        };
        let ratio = raw / ours;
        let verdict = if ratio >= TARGET_RATIO { "ok" } else { "MISSED" };
        println!("{name:>17}  {:>8.2}  {:>14.2}x  {:>8}  (vs {base})", gbps(ours), ratio, verdict);
    }
    println!("(ratio = raw time / framed time; target: framing keeps at least {TARGET_RATIO}x of the raw cipher)");
    if let (Some(chacha), Some(aes)) = (mean_ns("seal_open"), mean_ns("aes_seal_open")) {
        println!("AES-256-GCM seal+open against ChaCha20-Poly1305's, framed: {:.2}x the throughput", chacha / aes);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
