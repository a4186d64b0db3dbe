//! Fuzzes opening encrypted VXLAN packets with a fixed key, under each
//! cipher: never panics, a packet that opens has its inner frame between the
//! header and the tag, and the same bytes a second time are a replay.
//!
//! The key (secret 32 × 0x5a, VNI 4242, current epoch 7) is the one the seeds
//! in `fuzz/corpus/crypto_open/` were sealed with (`crypto/tests/fuzz_corpus.rs`).

#![no_main]

use crypto::{Cipher, ClusterSecret, HEADER_LEN, OpenError, Opener, TAG_LEN, Vni};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = ClusterSecret::from_bytes([0x5a; 32]);
    let vni = Vni::new(4242).expect("a 24-bit VNI");
    for cipher in Cipher::ALL {
        let mut opener = Opener::new(&secret, vni, 7).with_cipher(cipher);
        let mut packet = data.to_vec();
        let Ok(opened) = opener.open(&mut packet) else {
            continue;
        };
        assert_eq!(opened.inner, HEADER_LEN..data.len() - TAG_LEN);
        assert!(opener.accepted_epochs().contains(&opened.epoch));
        let mut again = data.to_vec();
        assert_eq!(opener.open(&mut again), Err(OpenError::Replayed { counter: opened.counter }));
    }
});
