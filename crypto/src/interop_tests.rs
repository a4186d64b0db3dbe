//! Cross-checks of ring's ChaCha20-Poly1305 and AES-256-GCM, as this crate
//! drives them, against RustCrypto's independent implementations
//! (chacha20poly1305, aes-gcm, hkdf, sha2), both ways, and a pinned packet.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use ring::aead::Aad;

use crate::Cipher;
use crate::keys::aead_key;
use crate::seal::Sealer;
use crate::wire::{ENCRYPTED_OVERHEAD, HEADER_LEN, Header, InnerChecksum, TAG_LEN};
use crate::{ClusterSecret, NetworkKey, OpenError, Opener, Vni};

fn secret_bytes() -> [u8; 32] {
    std::array::from_fn(|i| (i * 7 + 3) as u8)
}

fn secret() -> ClusterSecret {
    ClusterSecret::from_bytes(secret_bytes())
}

/// The session key by the documented key schedule, computed with RustCrypto's
/// HKDF rather than ring's.
fn documented_session_key(secret: &[u8; 32], vni: Vni, epoch: u32, session_id: u64) -> [u8; 32] {
    documented_key_of(secret, vni, epoch, b"vswitch session", session_id)
}

/// The session key by the documented key schedule with the session info
/// prefix `info` (AES-256-GCM's is `"vswitch session aes-256-gcm"`).
fn documented_key_of(secret: &[u8; 32], vni: Vni, epoch: u32, info: &[u8], session_id: u64) -> [u8; 32] {
    let salt = b"vswitch encrypted vxlan v1";
    let mut network = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), secret)
        .expand_multi_info(&[b"vswitch network", &vni.get().to_be_bytes(), &epoch.to_be_bytes()], &mut network)
        .unwrap();
    let mut session = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &network)
        .expand_multi_info(&[info, &session_id.to_be_bytes()], &mut session)
        .unwrap();
    session
}

fn vni() -> Vni {
    Vni::new(0x00_12_34).unwrap()
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 5) as u8).collect()
}

/// The raw primitive: same key, nonce and AAD give the same ciphertext and
/// tag, and each opens what the other sealed.
#[test]
fn raw_cipher_matches_rustcrypto_both_ways() {
    let key_bytes: [u8; 32] = std::array::from_fn(|i| i as u8 ^ 0x5a);
    let nonce = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let aad = b"header bytes";
    for len in [0, 1, 63, 64, 65, 1400] {
        let plain = frame(len);

        let mut by_ring = plain.clone();
        let ring_key = aead_key(&key_bytes, Cipher::ChaCha20Poly1305);
        let n = ring::aead::Nonce::assume_unique_for_key(nonce);
        let ring_tag = ring_key.seal_in_place_separate_tag(n, Aad::from(aad), &mut by_ring).unwrap();

        let rc = ChaCha20Poly1305::new(Key::from_slice(&key_bytes));
        let mut by_rc = plain.clone();
        let rc_tag = rc.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut by_rc).unwrap();

        assert_eq!(by_ring, by_rc, "ciphertext, len {len}");
        assert_eq!(ring_tag.as_ref(), rc_tag.as_slice(), "tag, len {len}");

        // RustCrypto opens ring's.
        let mut buf = by_ring.clone();
        rc.decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut buf, Tag::from_slice(ring_tag.as_ref()))
            .unwrap();
        assert_eq!(buf, plain);
        // ring opens RustCrypto's.
        let mut buf = by_rc.clone();
        buf.extend_from_slice(&rc_tag);
        let n = ring::aead::Nonce::assume_unique_for_key(nonce);
        let opened = ring_key.open_in_place(n, Aad::from(aad), &mut buf).unwrap();
        assert_eq!(opened, &plain[..]);
    }
}

/// A whole packet: what the Sealer produces RustCrypto opens with the
/// documented key schedule, and a packet RustCrypto builds by the documented
/// format the Opener accepts.
#[test]
fn packets_interoperate_with_rustcrypto() {
    let network = NetworkKey::derive(&secret(), vni(), 9);
    let session_id = 0x1122_3344_5566_7788;
    let session_key = documented_session_key(&secret_bytes(), vni(), 9, session_id);
    assert_eq!(*network.session_key_bytes(session_id, Cipher::ChaCha20Poly1305), session_key);
    let rc = ChaCha20Poly1305::new(Key::from_slice(&session_key));
    let inner = frame(1400);

    // ring seals, RustCrypto opens.
    let mut sealer = Sealer::with_session_id(network.clone(), Cipher::ChaCha20Poly1305, session_id);
    let mut out = Vec::new();
    for counter in 0..3u64 {
        out.clear();
        sealer.seal(&inner, &mut out).unwrap();
        assert_eq!(out.len(), inner.len() + ENCRYPTED_OVERHEAD);
        let header = Header::parse(&out).unwrap();
        assert_eq!(
            header,
            Header {
                vni: vni(),
                epoch: 9,
                session_id,
                counter,
                checksum: InnerChecksum::AsSent,
                cipher: Cipher::ChaCha20Poly1305
            }
        );
        let (aad, rest) = out.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(inner.len());
        rc.decrypt_in_place_detached(Nonce::from_slice(&header.nonce_bytes()), aad, body, Tag::from_slice(tag))
            .unwrap();
        assert_eq!(body, &inner[..]);
    }

    // RustCrypto seals, ring opens.
    let mut opener = Opener::new(&secret(), vni(), 9);
    for (counter, checksum) in [(0u64, InnerChecksum::AsSent), (5, InnerChecksum::Partial), (2, InnerChecksum::AsSent)]
    {
        let header = Header { vni: vni(), epoch: 9, session_id, counter, checksum, cipher: Cipher::ChaCha20Poly1305 };
        let mut packet = header.to_bytes().to_vec();
        let mut body = inner.clone();
        let tag = rc.encrypt_in_place_detached(Nonce::from_slice(&header.nonce_bytes()), &packet, &mut body).unwrap();
        packet.extend_from_slice(&body);
        packet.extend_from_slice(&tag);
        let opened = opener.open(&mut packet).unwrap();
        assert_eq!((opened.session_id, opened.counter, opened.epoch), (session_id, counter, 9));
        assert_eq!(opened.checksum, checksum);
        assert_eq!(&packet[opened.inner], &inner[..]);
    }

    // A RustCrypto packet sealed under a key of another session id fails.
    let header = Header {
        vni: vni(),
        epoch: 9,
        session_id: session_id + 1,
        counter: 0,
        checksum: InnerChecksum::AsSent,
        cipher: Cipher::ChaCha20Poly1305,
    };
    let mut packet = header.to_bytes().to_vec();
    let mut body = inner.clone();
    let tag = rc.encrypt_in_place_detached(Nonce::from_slice(&header.nonce_bytes()), &packet, &mut body).unwrap();
    packet.extend_from_slice(&body);
    packet.extend_from_slice(&tag);
    assert_eq!(opener.open(&mut packet), Err(OpenError::AuthenticationFailed));
}

/// The exact bytes of one small packet, so that any change to the format or
/// the key schedule is deliberate (other implementations must follow it).
#[test]
fn pinned_packet() {
    let network = NetworkKey::derive(&secret(), vni(), 1);
    let mut sealer = Sealer::with_session_id(network, Cipher::ChaCha20Poly1305, 0x0102_0304_0506_0708);
    let mut out = Vec::new();
    sealer.seal(b"hello, overlay", &mut out).unwrap();
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(&hex[..HEADER_LEN * 2], "e10012340000000101020304050607080000000000000000");
    assert_eq!(out.len(), HEADER_LEN + 14 + TAG_LEN);
    assert_eq!(&hex[HEADER_LEN * 2..], PINNED_BODY_AND_TAG);

    // The pin itself, from RustCrypto and the documented key schedule.
    let key = documented_session_key(&secret_bytes(), vni(), 1, 0x0102_0304_0506_0708);
    let mut body = b"hello, overlay".to_vec();
    let tag = ChaCha20Poly1305::new(Key::from_slice(&key))
        .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &out[..HEADER_LEN], &mut body)
        .unwrap();
    body.extend_from_slice(&tag);
    assert_eq!(&out[HEADER_LEN..], &body[..]);
}

/// AES-256-GCM, as this crate drives ring's: the raw primitive agrees with
/// RustCrypto's aes-gcm both ways, and whole packets follow the documented
/// format (type byte with [`crate::FLAG_AES_256_GCM`], session keys with
/// their own info prefix) both ways.
#[test]
fn aes_256_gcm_interoperates_with_rustcrypto() {
    use aes_gcm::aead::AeadInPlace as _;
    use aes_gcm::{Aes256Gcm, KeyInit as _};
    let key_bytes: [u8; 32] = std::array::from_fn(|i| i as u8 ^ 0xa5);
    let nonce = [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1];
    for len in [0, 1, 15, 16, 17, 1400] {
        let plain = frame(len);
        let mut by_ring = plain.clone();
        let n = ring::aead::Nonce::assume_unique_for_key(nonce);
        let ring_tag = aead_key(&key_bytes, Cipher::Aes256Gcm)
            .seal_in_place_separate_tag(n, Aad::from(b"aad"), &mut by_ring)
            .unwrap();
        let rc = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&key_bytes));
        let mut by_rc = plain.clone();
        let rc_tag = rc.encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&nonce), b"aad", &mut by_rc).unwrap();
        assert_eq!((by_ring, ring_tag.as_ref()), (by_rc, rc_tag.as_slice()), "len {len}");
    }

    let network = NetworkKey::derive(&secret(), vni(), 4);
    let session_id = 0x0a0b_0c0d_0e0f_1011;
    let key = documented_key_of(&secret_bytes(), vni(), 4, b"vswitch session aes-256-gcm", session_id);
    assert_eq!(*network.session_key_bytes(session_id, Cipher::Aes256Gcm), key);
    assert_ne!(*network.session_key_bytes(session_id, Cipher::ChaCha20Poly1305), key, "one key per cipher");
    let rc = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&key));
    let inner = frame(1400);

    // ring seals, RustCrypto opens.
    let mut sealer = Sealer::with_session_id(network, Cipher::Aes256Gcm, session_id);
    let mut out = Vec::new();
    sealer.seal(&inner, &mut out).unwrap();
    assert_eq!(out[0], 0xE5, "the AES-256-GCM type byte");
    let header = Header::parse(&out).unwrap();
    assert_eq!((header.cipher, header.counter), (Cipher::Aes256Gcm, 0));
    let (aad, rest) = out.split_at_mut(HEADER_LEN);
    let (body, tag) = rest.split_at_mut(inner.len());
    rc.decrypt_in_place_detached(
        aes_gcm::Nonce::from_slice(&header.nonce_bytes()),
        aad,
        body,
        aes_gcm::Tag::from_slice(tag),
    )
    .expect("RustCrypto opens it");
    assert_eq!(body, &inner[..]);

    // RustCrypto seals, ring opens; the default cipher's opener refuses it by name.
    let header = Header {
        vni: vni(),
        epoch: 4,
        session_id,
        counter: 3,
        checksum: InnerChecksum::Partial,
        cipher: Cipher::Aes256Gcm,
    };
    let mut packet = header.to_bytes().to_vec();
    assert_eq!(packet[0], 0xE7);
    let mut body = inner.clone();
    let tag =
        rc.encrypt_in_place_detached(aes_gcm::Nonce::from_slice(&header.nonce_bytes()), &packet, &mut body).unwrap();
    packet.extend_from_slice(&body);
    packet.extend_from_slice(&tag);
    assert_eq!(
        Opener::new(&secret(), vni(), 4).open(&mut packet.clone()),
        Err(OpenError::CipherMismatch { expected: Cipher::ChaCha20Poly1305, found: Cipher::Aes256Gcm })
    );
    let mut opener = Opener::new(&secret(), vni(), 4).with_cipher(Cipher::Aes256Gcm);
    let opened = opener.open(&mut packet).expect("ring opens it");
    assert_eq!((opened.counter, opened.checksum), (3, InnerChecksum::Partial));
    assert_eq!(&packet[opened.inner], &inner[..]);
}

/// Ciphertext of "hello, overlay" and the tag, as ring and RustCrypto both
/// produce them (see `packets_interoperate_with_rustcrypto`).
const PINNED_BODY_AND_TAG: &str = "b26ed3377fedb177b899b488049adb0dd458b285a4f72543d977edd20564";

/// A sealed epoch key opened by the documented construction with RustCrypto's
/// HKDF and ChaCha20-Poly1305 (and dalek's X25519 from the recipient's side),
/// then one sealed that way opened by [`crate::sealed::open`].
#[test]
fn sealed_keys_follow_the_documented_construction() {
    use crate::sealed::{self, NodeKeypair, SEALED_LEN};
    let network_id = "9a".repeat(32);
    let recipient_secret = [0x21u8; 32];
    let recipient = NodeKeypair::from_secret_bytes(recipient_secret);
    let key = NetworkKey::from_bytes(vni(), 11, [0x3c; 32]);
    let documented_key = |ephemeral: &[u8; 32]| {
        let shared = x25519_dalek::StaticSecret::from(recipient_secret)
            .diffie_hellman(&x25519_dalek::PublicKey::from(*ephemeral));
        let mut k = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"vswitch sealed epoch key v1"), shared.as_bytes())
            .expand_multi_info(
                &[
                    b"vswitch epoch key",
                    &(network_id.len() as u32).to_be_bytes(),
                    network_id.as_bytes(),
                    &vni().get().to_be_bytes(),
                    &11u32.to_be_bytes(),
                    recipient.public().as_bytes(),
                    ephemeral,
                ],
                &mut k,
            )
            .unwrap();
        ChaCha20Poly1305::new(Key::from_slice(&k))
    };

    let sealed = sealed::seal(&key, &network_id, &recipient.public()).unwrap();
    assert_eq!(sealed.len(), SEALED_LEN);
    assert_eq!(&sealed[..32], recipient.public().as_bytes());
    let ephemeral: [u8; 32] = sealed[32..64].try_into().unwrap();
    let mut body = sealed[64..96].to_vec();
    documented_key(&ephemeral)
        .decrypt_in_place_detached(
            Nonce::from_slice(&[0; 12]),
            &sealed[..64],
            &mut body,
            Tag::from_slice(&sealed[96..]),
        )
        .expect("RustCrypto opens it");
    assert_eq!(body, [0x3c; 32]);

    // The other way: sealed by hand, opened by the crate.
    let ephemeral_secret = x25519_dalek::StaticSecret::from([0x44u8; 32]);
    let ephemeral = x25519_dalek::PublicKey::from(&ephemeral_secret).to_bytes();
    let mut by_hand = [0u8; SEALED_LEN];
    by_hand[..32].copy_from_slice(recipient.public().as_bytes());
    by_hand[32..64].copy_from_slice(&ephemeral);
    by_hand[64..96].copy_from_slice(&[0x3c; 32]);
    let (aad, rest) = by_hand.split_at_mut(64);
    let (plain, tag) = rest.split_at_mut(32);
    let t = documented_key(&ephemeral).encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), aad, plain).unwrap();
    tag.copy_from_slice(&t);
    let opened = sealed::open(&by_hand, &network_id, vni(), 11, &recipient).expect("the crate opens it");
    assert_eq!((opened.vni(), opened.epoch()), (vni(), 11));
    assert!(opened.same_as(&key));
}
