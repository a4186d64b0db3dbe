//! The cluster secret: 32 random bytes shared by every host of a cluster,
//! from which all network keys derive.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

use crate::error::SecretError;

/// Length of the cluster secret in bytes.
pub const SECRET_LEN: usize = 32;

/// Longest secret file read: 64 hex characters and a line ending, with room
/// for stray whitespace. Longer files are refused without reading further.
const MAX_FILE_LEN: u64 = 128;

/// The cluster secret. Zeroized on drop; its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct ClusterSecret([u8; SECRET_LEN]);

impl ClusterSecret {
    /// The secret in `bytes`.
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> ClusterSecret {
        ClusterSecret(bytes)
    }

    /// Parses a secret written as 64 hexadecimal characters (either case),
    /// optionally followed by a line ending.
    pub fn from_hex(text: &str) -> Result<ClusterSecret, SecretError> {
        parse_hex32(text).map(|bytes| ClusterSecret(*bytes)).map_err(SecretError::InvalidFormat)
    }

    /// Loads the secret from a file holding it in hex (see
    /// [`ClusterSecret::from_hex`]).
    ///
    /// Refuses a file that is not a regular file, or whose mode gives group or
    /// others any access (`mode & 0o077 != 0`): the secret protects every
    /// encrypted network of the cluster.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClusterSecret, SecretError> {
        let path = path.as_ref();
        let text = read_private_file(path).map_err(|e| match e {
            PrivateFileError::Io(source) => SecretError::Io { path: path.to_owned(), source },
            PrivateFileError::NotAFile => SecretError::NotAFile { path: path.to_owned() },
            PrivateFileError::Insecure(mode) => SecretError::InsecurePermissions { path: path.to_owned(), mode },
            PrivateFileError::Format(reason) => SecretError::InvalidFormat(reason),
        })?;
        ClusterSecret::from_hex(&text)
    }

    /// A new random secret from the system's secure random source, in hex
    /// with no line ending: what `vswitchctl secret generate` prints for the
    /// operator to install (mode 0600) on every host.
    pub fn generate() -> Result<Zeroizing<String>, SecretError> {
        let mut secret = ClusterSecret([0u8; SECRET_LEN]);
        SystemRandom::new().fill(&mut secret.0).map_err(|_| SecretError::Random)?;
        Ok(secret.to_hex())
    }

    /// The secret in lowercase hex (64 characters).
    pub fn to_hex(&self) -> Zeroizing<String> {
        to_hex(&self.0)
    }

    /// The secret bytes, for key derivation.
    pub(crate) fn bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

/// What is wrong with a private key file (see [`read_private_file`]).
pub(crate) enum PrivateFileError {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// Not a regular file.
    NotAFile,
    /// Its mode (`& 0o7777`) gives group or others access.
    Insecure(u32),
    /// Not text, or too long.
    Format(&'static str),
}

/// Reads a small private file holding a key in hex: refuses a file that is
/// not a regular file, whose mode gives group or others any access
/// (`mode & 0o077 != 0`), that is not text or longer than 128 bytes.
pub(crate) fn read_private_file(path: &Path) -> Result<Zeroizing<String>, PrivateFileError> {
    let file = std::fs::File::open(path).map_err(PrivateFileError::Io)?;
    // Checked on the opened file, so the file read is the file checked.
    let meta = file.metadata().map_err(PrivateFileError::Io)?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotAFile);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Insecure(mode));
    }
    let mut text = Zeroizing::new(String::with_capacity(MAX_FILE_LEN as usize + 1));
    file.take(MAX_FILE_LEN + 1).read_to_string(&mut text).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            PrivateFileError::Format("not text")
        } else {
            PrivateFileError::Io(e)
        }
    })?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(PrivateFileError::Format("file too long"));
    }
    Ok(text)
}

/// Parses 32 bytes written as 64 hexadecimal characters (either case),
/// optionally followed by a line ending.
pub(crate) fn parse_hex32(text: &str) -> Result<Zeroizing<[u8; SECRET_LEN]>, &'static str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.len() != 2 * SECRET_LEN {
        return Err("wrong length");
    }
    let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err("not a hexadecimal digit");
        };
        *byte = hi << 4 | lo;
    }
    Ok(bytes)
}

/// `bytes` in lowercase hex.
pub(crate) fn to_hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = Zeroizing::new(String::with_capacity(2 * bytes.len()));
    for &b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    text
}

/// The value of one hexadecimal digit.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Drop for ClusterSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..redacted..)")
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, Permissions};
    use std::path::PathBuf;

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// A file in a fresh temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str, mode: u32) -> TempFile {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("vswitch-crypto-{}-{n}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
            if let Some(dir) = self.0.parent() {
                let _ = fs::remove_dir(dir);
            }
        }
    }

    #[test]
    fn hex_round_trip() {
        let s = ClusterSecret::from_hex(HEX).unwrap();
        assert_eq!(s.bytes(), &std::array::from_fn::<u8, 32, _>(|i| i as u8));
        assert_eq!(s.to_hex().as_str(), HEX);
        let upper = ClusterSecret::from_hex(&HEX.to_uppercase()).unwrap();
        assert_eq!(upper.bytes(), s.bytes());
        assert!(ClusterSecret::from_hex(&format!("{HEX}\n")).is_ok());
        assert!(ClusterSecret::from_hex(&format!("{HEX}\r\n")).is_ok());
    }

    #[test]
    fn bad_hex_is_refused() {
        for bad in [
            "",
            "\n",
            &HEX[..63],
            &format!("{HEX}0"),
            &format!("{HEX}\n\n"),
            &format!(" {}", &HEX[1..]),
            &format!("{}g", &HEX[..63]),
            &format!("{}é", &HEX[..62]),
            &format!("0x{}", &HEX[2..]),
        ] {
            assert!(matches!(ClusterSecret::from_hex(bad), Err(SecretError::InvalidFormat(_))), "{bad:?} was accepted");
        }
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let s = ClusterSecret::from_hex(HEX).unwrap();
        let debug = format!("{s:?} {:?}", Some(s.clone()));
        assert!(debug.contains("ClusterSecret(..redacted..)"));
        assert!(!debug.contains(&HEX[..16]), "{debug}");
        assert!(!debug.contains("0, 1, 2"), "{debug}");
        let err = ClusterSecret::from_hex(&format!("{}z", &HEX[..63])).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(&HEX[..16]));
    }

    #[test]
    fn generate_is_random_hex_that_parses() {
        let a = ClusterSecret::generate().unwrap();
        let b = ClusterSecret::generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(*a, *b);
        assert_eq!(ClusterSecret::from_hex(&a).unwrap().to_hex(), a);
    }

    #[test]
    fn from_file_accepts_owner_only_modes() {
        for mode in [0o600, 0o400] {
            let f = TempFile::new("secret", &format!("{HEX}\n"), mode);
            let s = ClusterSecret::from_file(&f.0).unwrap_or_else(|e| panic!("mode {mode:o}: {e}"));
            assert_eq!(s.to_hex().as_str(), HEX);
        }
    }

    #[test]
    fn from_file_refuses_group_or_other_access() {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601] {
            let f = TempFile::new("secret", HEX, mode);
            match ClusterSecret::from_file(&f.0) {
                Err(SecretError::InsecurePermissions { mode: got, .. }) => assert_eq!(got, mode),
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        let f = TempFile::new("secret", HEX, 0o640);
        let message = ClusterSecret::from_file(&f.0).unwrap_err().to_string();
        assert!(message.contains("640") && message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn from_file_refuses_bad_contents_and_non_files() {
        let f = TempFile::new("secret", "not a secret\n", 0o600);
        assert!(matches!(ClusterSecret::from_file(&f.0), Err(SecretError::InvalidFormat(_))));
        let long = HEX.repeat(4);
        let f = TempFile::new("secret", &long, 0o600);
        assert!(matches!(ClusterSecret::from_file(&f.0), Err(SecretError::InvalidFormat(_))));
        let dir = f.0.parent().unwrap();
        assert!(matches!(ClusterSecret::from_file(dir), Err(SecretError::NotAFile { .. } | SecretError::Io { .. })));
        assert!(matches!(ClusterSecret::from_file(dir.join("missing")), Err(SecretError::Io { .. })));
    }
}
