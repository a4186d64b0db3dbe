//! The sending side: [`Sealer`], one sender session of one network in one
//! key epoch.

use std::fmt;
use std::ops::Range;

use ring::aead::{Aad, LessSafeKey};
use ring::rand::{SecureRandom, SystemRandom};
use vxlan::Vni;

use crate::cipher::Cipher;
use crate::error::SealError;
use crate::keys::NetworkKey;
use crate::wire::{ENCRYPTED_OVERHEAD, HEADER_LEN, Header, InnerChecksum, TAG_LEN};

/// Seals inner frames into encrypted packets for one network in one key
/// epoch, as one sender session.
///
/// Each sealer draws a fresh random 64-bit session id (or, one of several
/// threads sealing for the network, an id of its lane: see
/// [`crate::lanes`]) and seals with the session key derived from it; its packet counter (the nonce) starts at 0
/// and only increases. A new sealer, as at every daemon start or epoch
/// change, is a new session with a new key, so a nonce is never used twice
/// under one key. Before the counter could wrap the sealer starts a new
/// session by itself.
///
/// A sealer is cheap to keep per flow slot and thread: a
/// [`crate::NetworkCrypto`] holds [`crate::FLOW_SESSIONS`] of them, and threads
/// sealing for the same network each hold their own (see [`crate::lanes`]).
pub struct Sealer {
    network: NetworkKey,
    cipher: Cipher,
    session_id: u64,
    key: LessSafeKey,
    /// The counter of the next packet; `u64::MAX` is never used.
    next_counter: u64,
}

impl Sealer {
    /// A new ChaCha20-Poly1305 sender session under `network`, with a
    /// random session id.
    pub fn new(network: NetworkKey) -> Result<Sealer, SealError> {
        Sealer::with_cipher(network, Cipher::ChaCha20Poly1305)
    }

    /// A new sender session under `network` sealing with `cipher`, with a
    /// random session id.
    pub fn with_cipher(network: NetworkKey, cipher: Cipher) -> Result<Sealer, SealError> {
        let session_id = random_session_id()?;
        Ok(Sealer::with_session_id(network, cipher, session_id))
    }

    /// A sealer for a given session id: a lane's (see [`crate::lanes`]), or a
    /// deterministic test's. A session id used twice under the same network
    /// key reuses nonces: the caller must never repeat one.
    pub(crate) fn with_session_id(network: NetworkKey, cipher: Cipher, session_id: u64) -> Sealer {
        let key = network.session_key(session_id, cipher);
        Sealer { network, cipher, session_id, key, next_counter: 0 }
    }

    /// The cipher this sealer seals with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The network this sealer seals for.
    pub fn vni(&self) -> Vni {
        self.network.vni()
    }

    /// The key epoch this sealer seals with.
    pub fn epoch(&self) -> u32 {
        self.network.epoch()
    }

    /// The current session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The counter the next packet will carry (packets sealed in this
    /// session so far).
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// Abandons the current session for a new one with a fresh random id (and
    /// key), its counter back at 0.
    pub fn new_session(&mut self) -> Result<(), SealError> {
        let session_id = random_session_id()?;
        self.key = self.network.session_key(session_id, self.cipher);
        self.session_id = session_id;
        self.next_counter = 0;
        Ok(())
    }

    /// The header of the next packet, consuming its counter; starts a new
    /// session rather than wrap the counter.
    pub(crate) fn next_header(&mut self, checksum: InnerChecksum) -> Result<Header, SealError> {
        if self.next_counter == u64::MAX {
            self.new_session()?;
        }
        let counter = self.next_counter;
        self.next_counter += 1;
        Ok(Header {
            vni: self.network.vni(),
            epoch: self.network.epoch(),
            session_id: self.session_id,
            counter,
            checksum,
            cipher: self.cipher,
        })
    }

    /// Appends one encrypted packet carrying `inner` to `out` and returns its
    /// range in `out`. Allocates only when `out` lacks the capacity (reserve
    /// `inner.len() + ENCRYPTED_OVERHEAD` per packet to seal a batch without
    /// allocating). On error `out` is left as it was.
    pub fn seal(&mut self, inner: &[u8], out: &mut Vec<u8>) -> Result<Range<usize>, SealError> {
        let start = out.len();
        let header = self.next_header(InnerChecksum::AsSent)?;
        out.reserve(inner.len() + ENCRYPTED_OVERHEAD);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(inner);
        let (aad, body) = out[start..].split_at_mut(HEADER_LEN);
        match self.key.seal_in_place_separate_tag(header.nonce(), Aad::from(&*aad), body) {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(start..out.len())
            }
            Err(_) => {
                out.truncate(start);
                Err(SealError::TooLong { len: inner.len() })
            }
        }
    }

    /// Seals in place the inner frame at `packet[HEADER_LEN..HEADER_LEN +
    /// inner_len]`: writes the header in front of it, encrypts it and writes
    /// the tag after it. Returns the length of the encrypted packet,
    /// `inner_len + ENCRYPTED_OVERHEAD`, from the start of `packet`.
    ///
    /// This is the zero-copy path: read the frame from the TAP device
    /// `HEADER_LEN` bytes into a buffer with `TAG_LEN` bytes of room after
    /// it. `checksum` says what the frame's TCP/UDP checksum holds; the
    /// header carries it, authenticated.
    pub fn seal_in_place(
        &mut self,
        packet: &mut [u8],
        inner_len: usize,
        checksum: InnerChecksum,
    ) -> Result<usize, SealError> {
        let needed = inner_len.checked_add(ENCRYPTED_OVERHEAD).ok_or(SealError::TooLong { len: inner_len })?;
        if packet.len() < needed {
            return Err(SealError::BufferTooSmall { len: packet.len(), needed });
        }
        let header = self.next_header(checksum)?;
        let (aad, rest) = packet.split_at_mut(HEADER_LEN);
        aad.copy_from_slice(&header.to_bytes());
        let (body, tag_room) = rest.split_at_mut(inner_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(header.nonce(), Aad::from(&*aad), body)
            .map_err(|_| SealError::TooLong { len: inner_len })?;
        tag_room[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(needed)
    }
}

/// A random session id from the system's secure random source.
fn random_session_id() -> Result<u64, SealError> {
    let mut id = [0u8; 8];
    SystemRandom::new().fill(&mut id).map_err(|_| SealError::Random)?;
    Ok(u64::from_be_bytes(id))
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("vni", &self.network.vni())
            .field("epoch", &self.network.epoch())
            .field("cipher", &self.cipher)
            .field("session_id", &format_args!("{:#018x}", self.session_id))
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::secret::ClusterSecret;

    fn network() -> NetworkKey {
        NetworkKey::derive(&ClusterSecret::from_bytes([7; 32]), Vni::new(42).unwrap(), 3)
    }

    #[test]
    fn seal_and_seal_in_place_agree() {
        let inner: Vec<u8> = (0..200u8).collect();
        let mut a = Sealer::with_session_id(network(), Cipher::ChaCha20Poly1305, 99);
        let mut b = Sealer::with_session_id(network(), Cipher::ChaCha20Poly1305, 99);
        let mut out = vec![0xAA; 5];
        let range = a.seal(&inner, &mut out).unwrap();
        assert_eq!(range, 5..5 + inner.len() + ENCRYPTED_OVERHEAD);
        assert_eq!(out[..5], [0xAA; 5]);
        let mut buf = vec![0u8; HEADER_LEN + inner.len() + TAG_LEN + 10];
        buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
        let n = b.seal_in_place(&mut buf, inner.len(), InnerChecksum::AsSent).unwrap();
        assert_eq!(&buf[..n], &out[range]);
        assert_ne!(&buf[HEADER_LEN..HEADER_LEN + inner.len()], &inner[..], "encrypted");
    }

    #[test]
    fn seal_in_place_checks_room() {
        let mut s = Sealer::with_session_id(network(), Cipher::ChaCha20Poly1305, 1);
        let mut buf = vec![0u8; HEADER_LEN + 100 + TAG_LEN - 1];
        assert_eq!(
            s.seal_in_place(&mut buf, 100, InnerChecksum::AsSent),
            Err(SealError::BufferTooSmall { len: buf.len(), needed: 140 })
        );
        assert_eq!(
            s.seal_in_place(&mut buf, usize::MAX, InnerChecksum::AsSent),
            Err(SealError::TooLong { len: usize::MAX })
        );
        assert_eq!(s.next_counter(), 0, "a refused seal consumes no counter");
    }

    #[test]
    fn counter_never_wraps() {
        let mut s = Sealer::with_session_id(network(), Cipher::ChaCha20Poly1305, 1);
        s.next_counter = u64::MAX - 2;
        assert_eq!(s.next_header(InnerChecksum::AsSent).unwrap().counter, u64::MAX - 2);
        assert_eq!(s.next_header(InnerChecksum::AsSent).unwrap().counter, u64::MAX - 1);
        let h = s.next_header(InnerChecksum::AsSent).unwrap();
        assert_ne!(h.session_id, 1, "a new session instead of wrapping");
        assert_eq!(h.counter, 0);
        assert_eq!(s.session_id(), h.session_id);
        assert_eq!(s.next_counter(), 1);
    }

    /// Ten million packets' nonces across 1,000 sender restarts: session ids
    /// never repeat and counters strictly increase within a session, so no
    /// (session key, nonce) pair repeats. Nonces are drawn exactly as
    /// sealing draws them, without encrypting payloads.
    #[test]
    fn nonces_unique_over_ten_million_packets() {
        let mut sessions = HashSet::new();
        let mut packets = 0u64;
        for _restart in 0..1_000 {
            let mut s = Sealer::new(network()).unwrap();
            assert!(sessions.insert(s.session_id()), "session id repeated");
            let mut last = None;
            for _ in 0..10_000 {
                let h = s.next_header(InnerChecksum::AsSent).unwrap();
                assert_eq!(h.session_id, s.session_id());
                assert!(last.is_none_or(|l| h.counter > l), "counter not increasing");
                last = Some(h.counter);
                packets += 1;
            }
            assert_eq!(last, Some(9_999));
        }
        assert_eq!(packets, 10_000_000);
        assert_eq!(sessions.len(), 1_000);
    }

    #[test]
    fn debug_has_no_key() {
        let s = Sealer::with_session_id(network(), Cipher::ChaCha20Poly1305, 0xabc);
        let debug = format!("{s:?}");
        assert!(debug.contains("0x0000000000000abc") && !debug.contains("key"), "{debug}");
    }
}
