//! Opening arbitrary bytes never panics and never succeeds without the key.

use crypto::{
    ClusterSecret, FLAG_CSUM_PARTIAL, HEADER_LEN, Header, InnerChecksum, NetworkCrypto, Opener, PACKET_TYPE, Vni,
};
use proptest::prelude::*;

fn opener() -> Opener {
    Opener::new(&ClusterSecret::from_bytes([9; 32]), Vni::new(77).unwrap(), 100)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_open(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        prop_assert!(opener().open(&mut bytes).is_err());
    }

    /// Past the header checks, so the key derivation, replay window and tag
    /// check all see arbitrary input.
    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_open(
        epoch in 98u32..=102,
        session_id in any::<u64>(),
        counter in any::<u64>(),
        partial in any::<bool>(),
        aes in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let checksum = if partial { InnerChecksum::Partial } else { InnerChecksum::AsSent };
        let cipher = if aes { crypto::Cipher::Aes256Gcm } else { crypto::Cipher::ChaCha20Poly1305 };
        let header = Header { vni: Vni::new(77).unwrap(), epoch, session_id, counter, checksum, cipher };
        let mut packet = header.to_bytes().to_vec();
        packet.extend_from_slice(&body);
        prop_assert_eq!(packet[0] & !(FLAG_CSUM_PARTIAL | crypto::FLAG_AES_256_GCM), PACKET_TYPE);
        prop_assert!(opener().open(&mut packet).is_err());
    }

    /// Round trip for arbitrary frames, and truncating the packet anywhere
    /// is rejected.
    #[test]
    fn round_trip_and_truncation(inner in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..400) {
        let secret = ClusterSecret::from_bytes([9; 32]);
        let mut tx = NetworkCrypto::new(&secret, Vni::new(77).unwrap(), 100).unwrap();
        let mut out = Vec::new();
        tx.seal(0, &inner, &mut out).unwrap();
        let cut = cut.min(out.len() - 1);
        prop_assert!(opener().open(&mut out.clone()[..cut]).is_err());
        let mut rx = opener();
        let opened = rx.open(&mut out).unwrap();
        prop_assert_eq!(opened.inner.start, HEADER_LEN);
        prop_assert_eq!(&out[opened.inner], &inner[..]);
    }
}
