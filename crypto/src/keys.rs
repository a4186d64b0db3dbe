//! Key derivation (HKDF-SHA256): cluster secret → network key per (VNI,
//! epoch) → session key per sender session; and [`KeySource`], where a
//! network's keys come from: derived from the cluster secret, or installed
//! one epoch at a time (cluster mode, keys distributed through the store).

use std::collections::BTreeMap;
use std::fmt;

use ring::aead::{LessSafeKey, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use vxlan::Vni;
use zeroize::{Zeroize, Zeroizing};

use crate::cipher::Cipher;
use crate::error::SealError;
use crate::secret::ClusterSecret;

/// HKDF salt of every derivation.
pub const HKDF_SALT: &[u8] = b"vswitch encrypted vxlan v1";

/// HKDF info prefix of a network key, followed by the VNI (u32, big-endian)
/// and the epoch (u32, big-endian).
pub const NETWORK_INFO: &[u8] = b"vswitch network";

/// HKDF info prefix of a ChaCha20-Poly1305 session key, followed by the
/// session id (u64, big-endian).
pub const SESSION_INFO: &[u8] = b"vswitch session";

/// HKDF info prefix of an AES-256-GCM session key, followed by the session
/// id (u64, big-endian): another prefix than [`SESSION_INFO`], so a key
/// is never used under both ciphers.
pub const SESSION_INFO_AES_256_GCM: &[u8] = b"vswitch session aes-256-gcm";

/// Length of every derived key.
pub const KEY_LEN: usize = 32;

/// The key of one overlay network in one key epoch: derived from the cluster
/// secret so that hosts that created the same overlay independently agree on
/// it ([`NetworkKey::derive`]), or drawn at random by one node and handed to
/// the others sealed ([`NetworkKey::generate`], [`NetworkKey::from_bytes`],
/// [`crate::sealed`]). It never encrypts packets itself: each sender session
/// derives its own key from it. Zeroized on drop; its `Debug` never shows the
/// bytes.
#[derive(Clone)]
pub struct NetworkKey {
    vni: Vni,
    epoch: u32,
    bytes: [u8; KEY_LEN],
}

impl NetworkKey {
    /// `HKDF-SHA256(salt = HKDF_SALT, ikm = secret, info = NETWORK_INFO ||
    /// vni || epoch)`, 32 bytes.
    pub fn derive(secret: &ClusterSecret, vni: Vni, epoch: u32) -> NetworkKey {
        let mut bytes = [0u8; KEY_LEN];
        hkdf(secret.bytes(), &[NETWORK_INFO, &vni.get().to_be_bytes(), &epoch.to_be_bytes()], &mut bytes);
        NetworkKey { vni, epoch, bytes }
    }

    /// The key of `vni` at `epoch` given explicitly: an epoch key distributed
    /// through the cluster store (see [`crate::sealed`]). `bytes` should be
    /// uniformly random ([`NetworkKey::generate`]); the caller's copy is its
    /// own to zeroize.
    pub fn from_bytes(vni: Vni, epoch: u32, bytes: [u8; KEY_LEN]) -> NetworkKey {
        NetworkKey { vni, epoch, bytes }
    }

    /// A fresh random key of `vni` at `epoch` from the system's secure random
    /// source: what the node publishing an epoch seals to every member.
    pub fn generate(vni: Vni, epoch: u32) -> Result<NetworkKey, SealError> {
        let mut key = NetworkKey { vni, epoch, bytes: [0u8; KEY_LEN] };
        SystemRandom::new().fill(&mut key.bytes).map_err(|_| SealError::Random)?;
        Ok(key)
    }

    /// The network this key belongs to.
    pub fn vni(&self) -> Vni {
        self.vni
    }

    /// The key epoch this key belongs to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The key bytes, for sealing the key to a node ([`crate::sealed`]).
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Whether `other` is the same key (network, epoch and bytes).
    pub(crate) fn same_as(&self, other: &NetworkKey) -> bool {
        self.vni == other.vni
            && self.epoch == other.epoch
            // No early exit on the first differing byte.
            && self.bytes.iter().zip(other.bytes).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// The bytes of the session key of `session_id` under `cipher`:
    /// `HKDF-SHA256(salt = HKDF_SALT, ikm = network key, info =
    /// SESSION_INFO || session_id)` for ChaCha20-Poly1305, with
    /// [`SESSION_INFO_AES_256_GCM`] for AES-256-GCM.
    pub(crate) fn session_key_bytes(&self, session_id: u64, cipher: Cipher) -> Zeroizing<[u8; KEY_LEN]> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hkdf(&self.bytes, &[cipher.session_info(), &session_id.to_be_bytes()], &mut bytes[..]);
        bytes
    }

    /// The `cipher` key of the session `session_id`.
    pub(crate) fn session_key(&self, session_id: u64, cipher: Cipher) -> LessSafeKey {
        aead_key(&self.session_key_bytes(session_id, cipher), cipher)
    }
}

/// A `cipher` key from 32 key bytes.
pub(crate) fn aead_key(bytes: &[u8; KEY_LEN], cipher: Cipher) -> LessSafeKey {
    // Both ciphers take keys of exactly KEY_LEN bytes, so this cannot fail.
    LessSafeKey::new(UnboundKey::new(cipher.algorithm(), bytes).expect("a 32-byte AEAD key"))
}

/// Output length of an HKDF expansion.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 of `ikm` with [`HKDF_SALT`] and `info`, filling `out`.
fn hkdf(ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    hkdf_with_salt(HKDF_SALT, ikm, info, out);
}

/// HKDF-SHA256 of `ikm` with `salt` and `info` (concatenated), filling `out`
/// (at most 255 * 32 bytes).
pub(crate) fn hkdf_with_salt(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    // HKDF-SHA256 expands up to 255 * 32 bytes; callers ask for 32.
    prk.expand(info, Len(out.len())).and_then(|okm| okm.fill(out)).expect("HKDF-SHA256 expands 32 bytes");
}

/// Where the keys of one network come from.
///
/// - [`KeySource::Derived`]: every epoch's key derives from the cluster
///   secret (`--secret-file`): any epoch is available at any time, and
///   hosts agree without talking.
/// - [`KeySource::Installed`]: only the epochs whose keys were installed
///   explicitly exist (cluster mode: one node draws each epoch's key and
///   seals it to every member through the store). A host neither sends nor
///   accepts an epoch it has no key for.
#[derive(Clone)]
pub enum KeySource {
    /// Keys derived from the cluster secret.
    Derived(ClusterSecret),
    /// Keys installed by epoch.
    Installed(BTreeMap<u32, NetworkKey>),
}

impl KeySource {
    /// The key of `vni` at `epoch`, if this source has one.
    pub fn key(&self, vni: Vni, epoch: u32) -> Option<NetworkKey> {
        match self {
            KeySource::Derived(secret) => Some(NetworkKey::derive(secret, vni, epoch)),
            KeySource::Installed(keys) => keys.get(&epoch).filter(|k| k.vni == vni).cloned(),
        }
    }

    /// Whether keys are installed rather than derived.
    pub fn is_installed(&self) -> bool {
        matches!(self, KeySource::Installed(_))
    }

    /// The epochs installed, lowest first (none for a derived source, which
    /// has every epoch).
    pub fn installed_epochs(&self) -> Vec<u32> {
        match self {
            KeySource::Derived(_) => Vec::new(),
            KeySource::Installed(keys) => keys.keys().copied().collect(),
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Derived(_) => f.write_str("Derived(..redacted..)"),
            KeySource::Installed(keys) => f.debug_tuple("Installed").field(&keys.keys().collect::<Vec<_>>()).finish(),
        }
    }
}

impl Drop for NetworkKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkKey")
            .field("vni", &self.vni)
            .field("epoch", &self.epoch)
            .field("key", &format_args!("..redacted.."))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: u8) -> ClusterSecret {
        ClusterSecret::from_bytes([fill; 32])
    }

    #[test]
    fn derivation_depends_on_every_input_and_is_deterministic() {
        let vni = Vni::new(42).unwrap();
        let base = NetworkKey::derive(&secret(1), vni, 7);
        assert_eq!(base.bytes, NetworkKey::derive(&secret(1), vni, 7).bytes);
        assert_ne!(base.bytes, NetworkKey::derive(&secret(2), vni, 7).bytes);
        assert_ne!(base.bytes, NetworkKey::derive(&secret(1), Vni::new(43).unwrap(), 7).bytes);
        assert_ne!(base.bytes, NetworkKey::derive(&secret(1), vni, 8).bytes);
        assert_ne!(
            *base.session_key_bytes(1, Cipher::ChaCha20Poly1305),
            *base.session_key_bytes(2, Cipher::ChaCha20Poly1305)
        );
        assert_ne!(*base.session_key_bytes(1, Cipher::ChaCha20Poly1305), base.bytes);
        assert_eq!(
            *base.session_key_bytes(1, Cipher::ChaCha20Poly1305),
            *base.session_key_bytes(1, Cipher::ChaCha20Poly1305)
        );
    }

    /// RFC 5869 test case 1 through the same ring calls, with its salt and
    /// info in place of ours: the HKDF plumbing is HKDF-SHA256.
    #[test]
    fn hkdf_plumbing_matches_rfc5869() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        Salt::new(HKDF_SHA256, &salt).extract(&ikm).expand(&[&info], Len(42)).unwrap().fill(&mut okm).unwrap();
        let expected = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
        let got: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn explicit_and_generated_keys() {
        let vni = Vni::new(42).unwrap();
        let key = NetworkKey::from_bytes(vni, 9, [3; KEY_LEN]);
        assert_eq!((key.vni(), key.epoch(), key.bytes), (vni, 9, [3; KEY_LEN]));
        let (a, b) = (NetworkKey::generate(vni, 1).unwrap(), NetworkKey::generate(vni, 1).unwrap());
        assert_ne!(a.bytes, b.bytes, "random");
        assert!(a.same_as(&a.clone()) && !a.same_as(&b));
        assert!(!key.same_as(&NetworkKey::from_bytes(vni, 10, [3; KEY_LEN])), "the epoch counts");
    }

    #[test]
    fn an_installed_source_has_only_its_epochs_of_its_network() {
        let vni = Vni::new(42).unwrap();
        let source = KeySource::Installed([(4, NetworkKey::from_bytes(vni, 4, [4; KEY_LEN]))].into());
        assert_eq!(source.key(vni, 4).map(|k| k.bytes), Some([4; KEY_LEN]));
        assert!(source.key(vni, 5).is_none());
        assert!(source.key(Vni::new(43).unwrap(), 4).is_none());
        assert_eq!(source.installed_epochs(), vec![4]);
        let derived = KeySource::Derived(secret(1));
        assert_eq!(derived.key(vni, 77).map(|k| k.bytes), Some(NetworkKey::derive(&secret(1), vni, 77).bytes));
        let debug = format!("{source:?} {derived:?}");
        assert!(!debug.contains("4, 4") && debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn debug_is_redacted() {
        let key = NetworkKey::derive(&secret(1), Vni::new(42).unwrap(), 7);
        let debug = format!("{key:?}");
        let hex: String = key.bytes[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert!(debug.contains("..redacted..") && debug.contains("42"), "{debug}");
        assert!(!debug.contains(&hex), "{debug}");
        assert!(!debug.contains('['), "no byte array printed: {debug}");
    }
}
