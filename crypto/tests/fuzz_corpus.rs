//! The committed fuzz seed corpus (`fuzz/corpus/crypto_open/`) holds the
//! packets its file names claim under the fuzz target's fixed key, so the
//! fuzzer starts from packets that open.
//!
//! Regenerate it (new random session ids each time) with
//! `VSWITCH_REGENERATE_SEEDS=1 cargo test -p crypto --test fuzz_corpus -- --ignored`.

use crypto::{
    ClusterSecret, ENCRYPTED_OVERHEAD, HEADER_LEN, InnerChecksum, MalformedReason, NetworkKey, OpenError, Opener,
    Sealer, Vni,
};

/// The fuzz target's key: keep in step with `fuzz/fuzz_targets/crypto_open.rs`.
const SECRET: [u8; 32] = [0x5a; 32];
const VNI: u32 = 4242;
const CURRENT_EPOCH: u32 = 7;

#[path = "../../fuzz/harness/corpus.rs"]
mod corpus;

fn corpus() -> corpus::Corpus {
    corpus::Corpus::new(env!("CARGO_MANIFEST_DIR"), "crypto_open")
}

fn seed(name: &str) -> Vec<u8> {
    corpus().read(name)
}

fn opener() -> Opener {
    Opener::new(&ClusterSecret::from_bytes(SECRET), Vni::new(VNI).unwrap(), CURRENT_EPOCH)
}

/// An untagged IPv4/UDP frame of `len` bytes (at least 42).
fn ipv4_udp(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0x42, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f
}

/// An ARP request frame.
fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x42, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0x42, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f
}

#[test]
fn seeds_open_as_named() {
    let mut o = opener();
    for (name, epoch, ethertype) in [
        ("ipv4_udp_1400_epoch7", 7, Some([0x08, 0x00])),
        ("arp_epoch8_next", 8, Some([0x08, 0x06])),
        ("empty_inner_epoch6_previous", 6, None),
    ] {
        let mut packet = seed(name);
        let opened = o.open(&mut packet).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(opened.epoch, epoch, "{name}");
        assert_eq!(opened.checksum, InnerChecksum::AsSent, "{name}");
        assert_eq!(packet[opened.inner].get(12..14), ethertype.as_ref().map(|e| &e[..]), "{name}");
    }
    let mut packet = seed("ipv4_udp_csum_partial_epoch7");
    assert_eq!(packet[0], 0xE3);
    let opened = o.open(&mut packet).expect("ipv4_udp_csum_partial_epoch7");
    assert_eq!((opened.epoch, opened.checksum), (7, InnerChecksum::Partial));
    let cases = [
        ("unknown_epoch9", OpenError::UnknownEpoch { epoch: 9, current: CURRENT_EPOCH }),
        ("tampered_ciphertext_epoch7", OpenError::AuthenticationFailed),
        ("plain_vxlan", OpenError::Malformed(MalformedReason::WrongType { type_byte: 0x08 })),
        ("truncated_39", OpenError::Malformed(MalformedReason::TooShort { len: 39 })),
    ];
    for (name, error) in cases {
        assert_eq!(opener().open(&mut seed(name)), Err(error), "{name}");
    }
}

/// The seeds, by name (new random session ids on every call).
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let secret = ClusterSecret::from_bytes(SECRET);
    let vni = Vni::new(VNI).unwrap();
    let sealed = |epoch: u32, inner: &[u8]| {
        let mut out = Vec::new();
        Sealer::new(NetworkKey::derive(&secret, vni, epoch)).unwrap().seal(inner, &mut out).unwrap();
        out
    };
    let mut partial = vec![0u8; 300 + ENCRYPTED_OVERHEAD];
    partial[HEADER_LEN..HEADER_LEN + 300].copy_from_slice(&ipv4_udp(300));
    let mut sealer = Sealer::new(NetworkKey::derive(&secret, vni, 7)).unwrap();
    sealer.seal_in_place(&mut partial, 300, InnerChecksum::Partial).unwrap();
    let mut tampered = sealed(7, &ipv4_udp(200));
    tampered[100] ^= 0x01;
    let mut plain_vxlan = vec![0x08, 0, 0, 0, 0x00, 0x10, 0x92, 0];
    plain_vxlan.extend_from_slice(&arp());
    vec![
        ("ipv4_udp_1400_epoch7", sealed(7, &ipv4_udp(1400))),
        ("ipv4_udp_csum_partial_epoch7", partial),
        ("arp_epoch8_next", sealed(8, &arp())),
        ("empty_inner_epoch6_previous", sealed(6, &[])),
        ("unknown_epoch9", sealed(9, &arp())),
        ("tampered_ciphertext_epoch7", tampered),
        ("plain_vxlan", plain_vxlan),
        ("truncated_39", sealed(7, &[])[..39].to_vec()),
    ]
}

#[test]
fn the_corpus_holds_exactly_the_seeds() {
    // Sealing draws a random session id, so only the names can be compared.
    corpus().assert_names(seeds().iter().map(|(name, _)| *name));
}

#[test]
#[ignore = "writes the seed corpus; run with VSWITCH_REGENERATE_SEEDS=1"]
fn regenerate_seeds() {
    corpus().regenerate(seeds);
}
