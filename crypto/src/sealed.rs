//! Epoch keys sealed to one node: how a network's keys travel through the
//! cluster store without a shared secret file.
//!
//! Every node has an X25519 [`NodeKeypair`], kept in a 0600 file in its
//! state directory; its public half is published in the node's store record.
//! The node that publishes an epoch draws a random [`NetworkKey`] and seals
//! it to each member's [`NodePublicKey`] with [`seal`]; each member opens its
//! copy with [`open`]. Nobody else (the store, its operators, a node that left
//! before the epoch was published) can read it.
//!
//! # Format
//!
//! A sealed key is [`SEALED_LEN`] = 112 bytes:
//!
//! | Offset | Length | Field                                              |
//! |--------|--------|----------------------------------------------------|
//! | 0      | 32     | Recipient's X25519 public key                      |
//! | 32     | 32     | Ephemeral X25519 public key (fresh per sealing)    |
//! | 64     | 32     | The epoch key, encrypted with ChaCha20             |
//! | 96     | 16     | Poly1305 tag over bytes 0..64 (AAD) and bytes 64..96 |
//!
//! - shared = X25519(ephemeral secret, recipient public) (refused when all
//!   zero: a low-order public key);
//! - key = HKDF-SHA256(salt = [`SEALED_SALT`], ikm = shared, info =
//!   [`SEALED_INFO`] || network id length (u32 BE) || network id || VNI (u32
//!   BE) || epoch (u32 BE) || recipient public || ephemeral public), 32 bytes;
//! - ChaCha20-Poly1305 under that key with an all-zero nonce (each key seals
//!   exactly one message, as the ephemeral key is never reused).
//!
//! The info binds the sealed key to its network, VNI, epoch and recipient: a
//! sealed key copied to another network's or epoch's record, or to another
//! node's entry, does not open. The recipient's public key travels in clear
//! so a publisher can tell a member whose key changed (a node that lost its
//! state directory) from one that holds the epoch ([`recipient`]).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::aead::{Aad, Nonce};
use ring::rand::{SecureRandom, SystemRandom};
use vxlan::Vni;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::{NodeKeyError, SealedKeyError};
use crate::keys::{KEY_LEN, NetworkKey, aead_key, hkdf_with_salt};
use crate::secret::{PrivateFileError, parse_hex32, read_private_file, to_hex};
use crate::wire::TAG_LEN;

/// Length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of a sealed epoch key: recipient and ephemeral public keys, the
/// encrypted key and the tag.
pub const SEALED_LEN: usize = 2 * PUBLIC_KEY_LEN + KEY_LEN + TAG_LEN;

/// HKDF salt of the sealing key.
pub const SEALED_SALT: &[u8] = b"vswitch sealed epoch key v1";

/// HKDF info prefix of the sealing key (see the module docs for the rest).
pub const SEALED_INFO: &[u8] = b"vswitch epoch key";

/// Where the encrypted key starts in a sealed key.
const CIPHERTEXT_AT: usize = 2 * PUBLIC_KEY_LEN;

/// A node's X25519 public key: published in its store record (in hex), to
/// which epoch keys are sealed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePublicKey([u8; PUBLIC_KEY_LEN]);

impl NodePublicKey {
    /// The public key in `bytes`.
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> NodePublicKey {
        NodePublicKey(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Parses 64 hexadecimal characters (either case).
    pub fn from_hex(text: &str) -> Result<NodePublicKey, NodeKeyError> {
        parse_hex32(text).map(|b| NodePublicKey(*b)).map_err(NodeKeyError::InvalidFormat)
    }

    /// The key in lowercase hex (64 characters): the node record's
    /// `public_key`.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0).to_string()
    }

    /// Whether keys can be sealed to it: false for the low-order points of
    /// Curve25519, with which the key exchange yields no secret (a node
    /// publishing one gets no keys).
    pub fn is_usable(&self) -> bool {
        // Any clamped scalar sends a low-order point to zero.
        StaticSecret::from([1; KEY_LEN]).diffie_hellman(&PublicKey::from(self.0)).was_contributory()
    }
}

impl fmt::Debug for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePublicKey({})", self.to_hex())
    }
}

impl fmt::Display for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A node's X25519 keypair. The secret half is zeroized on drop and never
/// shown by `Debug`.
#[derive(Clone)]
pub struct NodeKeypair {
    secret: StaticSecret,
    public: NodePublicKey,
}

impl NodeKeypair {
    /// A new random keypair from the system's secure random source.
    pub fn generate() -> Result<NodeKeypair, NodeKeyError> {
        random_secret().map(NodeKeypair::from_secret).map_err(|_| NodeKeyError::Random)
    }

    /// The keypair whose secret key is `bytes` (clamped by X25519).
    pub fn from_secret_bytes(bytes: [u8; KEY_LEN]) -> NodeKeypair {
        NodeKeypair::from_secret(StaticSecret::from(bytes))
    }

    fn from_secret(secret: StaticSecret) -> NodeKeypair {
        let public = NodePublicKey(PublicKey::from(&secret).to_bytes());
        NodeKeypair { secret, public }
    }

    /// The public half.
    pub fn public(&self) -> NodePublicKey {
        self.public
    }

    /// Loads a keypair from a file holding the secret key in hex (64
    /// characters, optionally a line ending), as [`NodeKeypair::save`]
    /// writes it. Refuses a file that is not a regular file or whose mode
    /// gives group or others any access, like the cluster secret's.
    pub fn load(path: impl AsRef<Path>) -> Result<NodeKeypair, NodeKeyError> {
        let path = path.as_ref();
        let text = read_private_file(path).map_err(|e| match e {
            PrivateFileError::Io(source) => NodeKeyError::Io { path: path.to_owned(), source },
            PrivateFileError::NotAFile => NodeKeyError::NotAFile { path: path.to_owned() },
            PrivateFileError::Insecure(mode) => NodeKeyError::InsecurePermissions { path: path.to_owned(), mode },
            PrivateFileError::Format(reason) => NodeKeyError::InvalidFormat(reason),
        })?;
        let bytes = parse_hex32(&text).map_err(NodeKeyError::InvalidFormat)?;
        Ok(NodeKeypair::from_secret_bytes(*bytes))
    }

    /// Saves the secret key in hex to `path`, mode 0600, atomically: written
    /// to a temporary file beside it (created 0600, so the key is never
    /// readable by others), synced, then renamed over `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), NodeKeyError> {
        let path = path.as_ref();
        let io_error = |source| NodeKeyError::Io { path: path.to_owned(), source };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(e)),
            _ => {}
        }
        let mut text = to_hex(self.secret.as_bytes());
        text.push('\n');
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(io_error)
    }

    /// Loads the keypair at `path`, or, when no file is there, generates one
    /// and saves it there: a node's keypair survives restarts. Returns it
    /// and whether it was generated now.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<(NodeKeypair, bool), NodeKeyError> {
        let path = path.as_ref();
        match NodeKeypair::load(path) {
            Err(NodeKeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let keypair = NodeKeypair::generate()?;
                keypair.save(path)?;
                Ok((keypair, true))
            }
            loaded => loaded.map(|k| (k, false)),
        }
    }
}

impl fmt::Debug for NodeKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeypair")
            .field("public", &self.public)
            .field("secret", &format_args!("..redacted.."))
            .finish()
    }
}

/// 32 random bytes as an X25519 secret.
fn random_secret() -> Result<StaticSecret, SealedKeyError> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new().fill(&mut bytes[..]).map_err(|_| SealedKeyError::Random)?;
    Ok(StaticSecret::from(*bytes))
}

/// The ChaCha20-Poly1305 key sealing `key` of `network_id` from `ephemeral`
/// to `recipient`, given their X25519 shared secret.
fn sealing_key(
    shared: &x25519_dalek::SharedSecret,
    network_id: &str,
    vni: Vni,
    epoch: u32,
    recipient: &[u8; PUBLIC_KEY_LEN],
    ephemeral: &[u8; PUBLIC_KEY_LEN],
) -> Result<ring::aead::LessSafeKey, SealedKeyError> {
    if !shared.was_contributory() {
        return Err(SealedKeyError::NonContributory);
    }
    let id_len = u32::try_from(network_id.len()).unwrap_or(u32::MAX).to_be_bytes();
    let info: [&[u8]; 7] = [
        SEALED_INFO,
        &id_len,
        network_id.as_bytes(),
        &vni.get().to_be_bytes(),
        &epoch.to_be_bytes(),
        recipient,
        ephemeral,
    ];
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_with_salt(SEALED_SALT, shared.as_bytes(), &info, &mut bytes[..]);
    Ok(aead_key(&bytes, crate::Cipher::ChaCha20Poly1305))
}

/// Seals `key` (of the network whose store id is `network_id`) to the node
/// whose public key is `recipient`, with a fresh ephemeral key.
pub fn seal(key: &NetworkKey, network_id: &str, recipient: &NodePublicKey) -> Result<[u8; SEALED_LEN], SealedKeyError> {
    let ephemeral = random_secret()?;
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(recipient.0));
    let aead = sealing_key(&shared, network_id, key.vni(), key.epoch(), &recipient.0, &ephemeral_public)?;
    let mut sealed = [0u8; SEALED_LEN];
    sealed[..PUBLIC_KEY_LEN].copy_from_slice(&recipient.0);
    sealed[PUBLIC_KEY_LEN..CIPHERTEXT_AT].copy_from_slice(&ephemeral_public);
    let (aad, body) = sealed.split_at_mut(CIPHERTEXT_AT);
    body[..KEY_LEN].copy_from_slice(key.bytes());
    let (plain, tag_out) = body.split_at_mut(KEY_LEN);
    let nonce = Nonce::assume_unique_for_key([0; 12]);
    // ChaCha20-Poly1305 refuses only inputs longer than 256 GiB.
    let tag = aead.seal_in_place_separate_tag(nonce, Aad::from(&*aad), plain).expect("sealing 32 bytes");
    tag_out.copy_from_slice(tag.as_ref());
    Ok(sealed)
}

/// The public key a sealed key was sealed to, if `sealed` has the length
/// of one.
pub fn recipient(sealed: &[u8]) -> Option<NodePublicKey> {
    (sealed.len() == SEALED_LEN).then(|| NodePublicKey(sealed[..PUBLIC_KEY_LEN].try_into().expect("32 bytes")))
}

/// Opens a key sealed to `keypair` for network `network_id` (VNI `vni`) at
/// `epoch`. Fails when it was sealed to another node, for another network,
/// VNI or epoch, or altered.
pub fn open(
    sealed: &[u8],
    network_id: &str,
    vni: Vni,
    epoch: u32,
    keypair: &NodeKeypair,
) -> Result<NetworkKey, SealedKeyError> {
    if sealed.len() != SEALED_LEN {
        return Err(SealedKeyError::Length { len: sealed.len(), expected: SEALED_LEN });
    }
    if recipient(sealed) != Some(keypair.public) {
        return Err(SealedKeyError::WrongRecipient);
    }
    let ephemeral: [u8; PUBLIC_KEY_LEN] = sealed[PUBLIC_KEY_LEN..CIPHERTEXT_AT].try_into().expect("32 bytes");
    let shared = keypair.secret.diffie_hellman(&PublicKey::from(ephemeral));
    let aead = sealing_key(&shared, network_id, vni, epoch, &keypair.public.0, &ephemeral)?;
    let mut body = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
    body.copy_from_slice(&sealed[CIPHERTEXT_AT..]);
    let nonce = Nonce::assume_unique_for_key([0; 12]);
    let plain = aead
        .open_in_place(nonce, Aad::from(&sealed[..CIPHERTEXT_AT]), &mut body[..])
        .map_err(|_| SealedKeyError::AuthenticationFailed)?;
    let bytes: [u8; KEY_LEN] = plain.try_into().expect("a 32-byte key");
    Ok(NetworkKey::from_bytes(vni, epoch, bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    const NET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn vni() -> Vni {
        Vni::new(4242).unwrap()
    }

    fn key(epoch: u32) -> NetworkKey {
        NetworkKey::generate(vni(), epoch).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_for_its_recipient_only() {
        let (alice, bob) = (NodeKeypair::generate().unwrap(), NodeKeypair::generate().unwrap());
        let k = key(7);
        let sealed = seal(&k, NET, &alice.public()).unwrap();
        assert_eq!(recipient(&sealed), Some(alice.public()));
        let opened = open(&sealed, NET, vni(), 7, &alice).unwrap();
        assert!(opened.same_as(&k));
        assert!(!sealed.windows(8).any(|w| w == &k.bytes()[..8]), "the key is not in clear");
        assert_eq!(open(&sealed, NET, vni(), 7, &bob).unwrap_err(), SealedKeyError::WrongRecipient);
        // Bob claiming to be Alice (her public key in the header) gets nowhere.
        let mut forged = sealed;
        forged[..32].copy_from_slice(bob.public().as_bytes());
        assert_eq!(open(&forged, NET, vni(), 7, &bob).unwrap_err(), SealedKeyError::AuthenticationFailed);
        // Every sealing is fresh.
        assert_ne!(seal(&k, NET, &alice.public()).unwrap(), sealed);
    }

    #[test]
    fn any_altered_byte_fails() {
        let alice = NodeKeypair::generate().unwrap();
        let sealed = seal(&key(1), NET, &alice.public()).unwrap();
        for i in 0..SEALED_LEN {
            let mut bad = sealed;
            bad[i] ^= 0x10;
            let err = open(&bad, NET, vni(), 1, &alice).unwrap_err();
            let expected = if i < 32 { SealedKeyError::WrongRecipient } else { SealedKeyError::AuthenticationFailed };
            assert_eq!(err, expected, "byte {i}");
        }
        assert!(matches!(open(&sealed[1..], NET, vni(), 1, &alice), Err(SealedKeyError::Length { len: 111, .. })));
    }

    #[test]
    fn a_sealed_key_is_bound_to_network_vni_and_epoch() {
        let alice = NodeKeypair::generate().unwrap();
        let sealed = seal(&key(5), NET, &alice.public()).unwrap();
        let other_net = NET.replace('0', "1");
        for (net, v, epoch) in [(&*other_net, vni(), 5), (NET, Vni::new(4243).unwrap(), 5), (NET, vni(), 6)] {
            assert_eq!(open(&sealed, net, v, epoch, &alice).unwrap_err(), SealedKeyError::AuthenticationFailed);
        }
        assert!(open(&sealed, NET, vni(), 5, &alice).is_ok());
    }

    proptest::proptest! {
        /// Arbitrary bytes, and arbitrary bodies behind the right recipient,
        /// never open (and never panic).
        #[test]
        fn arbitrary_sealed_keys_never_open(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let alice = NodeKeypair::from_secret_bytes([5; 32]);
            proptest::prop_assert!(open(&bytes, NET, vni(), 1, &alice).is_err());
            let mut aimed = [0u8; SEALED_LEN];
            aimed[..32].copy_from_slice(alice.public().as_bytes());
            for (a, b) in aimed[32..].iter_mut().zip(&bytes) {
                *a = *b;
            }
            proptest::prop_assert!(open(&aimed, NET, vni(), 1, &alice).is_err());
        }
    }

    #[test]
    fn a_low_order_public_key_is_refused() {
        let zero = NodePublicKey::from_bytes([0; 32]);
        assert!(!zero.is_usable());
        let mut one = [0; 32];
        one[0] = 1;
        assert!(!NodePublicKey::from_bytes(one).is_usable(), "the point of order 1");
        assert!(NodeKeypair::generate().unwrap().public().is_usable());
        assert_eq!(seal(&key(1), NET, &zero).unwrap_err(), SealedKeyError::NonContributory);
    }

    #[test]
    fn public_keys_in_hex() {
        let alice = NodeKeypair::from_secret_bytes([9; 32]);
        let hex = alice.public().to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(NodePublicKey::from_hex(&hex).unwrap(), alice.public());
        assert_eq!(NodePublicKey::from_hex(&hex.to_uppercase()).unwrap(), alice.public());
        assert!(matches!(NodePublicKey::from_hex(&hex[1..]), Err(NodeKeyError::InvalidFormat(_))));
        assert_eq!(NodeKeypair::from_secret_bytes([9; 32]).public(), alice.public(), "deterministic");
    }

    /// A fresh temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("vswitch-nodekey-{}-{n}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_keypair_survives_save_and_load_in_a_private_file() {
        let dir = TempDir::new();
        let path = dir.0.join("node.key");
        let (made, created) = NodeKeypair::load_or_generate(&path).unwrap();
        assert!(created);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        let (again, created) = NodeKeypair::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), made.public());
        // A key sealed before the restart opens after it.
        let sealed = seal(&key(3), NET, &made.public()).unwrap();
        assert!(open(&sealed, NET, vni(), 3, &NodeKeypair::load(&path).unwrap()).is_ok());
        // Saving over it replaces it, still 0600.
        let other = NodeKeypair::generate().unwrap();
        other.save(&path).unwrap();
        assert_eq!(NodeKeypair::load(&path).unwrap().public(), other.public());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        assert!(!dir.0.join("node.key.tmp").exists());
    }

    #[test]
    fn a_readable_or_bad_key_file_is_refused() {
        let dir = TempDir::new();
        let path = dir.0.join("node.key");
        NodeKeypair::generate().unwrap().save(&path).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            match NodeKeypair::load(&path) {
                Err(NodeKeyError::InsecurePermissions { mode: got, .. }) => assert_eq!(got, mode),
                other => panic!("mode {mode:o}: {other:?}"),
            }
            assert!(NodeKeypair::load_or_generate(&path).is_err(), "not replaced by a new key");
        }
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(NodeKeypair::load(&path), Err(NodeKeyError::InvalidFormat(_))));
        assert!(matches!(NodeKeypair::load(&dir.0), Err(NodeKeyError::NotAFile { .. } | NodeKeyError::Io { .. })));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let pair = NodeKeypair::from_secret_bytes([0x77; 32]);
        let debug = format!("{pair:?}");
        assert!(debug.contains("redacted") && debug.contains(&pair.public().to_hex()), "{debug}");
        assert!(!debug.contains("7777"), "{debug}");
    }
}
