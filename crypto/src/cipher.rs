//! [`Cipher`]: which AEAD seals an encrypted overlay's packets.
//!
//! ChaCha20-Poly1305 is the default, as WireGuard's: fast everywhere, and
//! constant-time without hardware support. AES-GCM is the cipher family of
//! Docker's encrypted overlays (IPsec ESP, `rfc4106(gcm(aes))`, there with
//! 128-bit keys); AES-256-GCM is, on a
//! CPU with AES and carry-less multiply instructions (VAES and VPCLMULQDQ
//! on recent x86), about three times faster here: `cargo bench --bench
//! crypto` prints both against each other. Every host of a network must
//! use the same one; the cipher is carried in the (authenticated) type
//! byte, so a packet of the other cipher is refused by name
//! ([`crate::OpenError::CipherMismatch`]) rather than failing its tag.

use std::fmt;
use std::str::FromStr;

use ring::aead::{AES_256_GCM, Algorithm, CHACHA20_POLY1305};

use crate::wire::FLAG_AES_256_GCM;

/// The AEAD of an encrypted overlay. Both take 32-byte keys and 96-bit
/// nonces and add a 16-byte tag, so the wire format, the overhead and the
/// key schedule are the same; only the session keys' derivation info
/// differs ([`Cipher::session_info`]), so no key is ever used under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// ChaCha20-Poly1305 (RFC 8439): the default.
    #[default]
    ChaCha20Poly1305,
    /// AES-256 in Galois/Counter Mode (NIST SP 800-38D).
    Aes256Gcm,
}

/// The error of a cipher name that is none of [`Cipher::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cipher {0:?}: expected chacha20-poly1305 or aes-256-gcm")]
pub struct UnknownCipher(pub String);

impl Cipher {
    /// Every cipher, default first.
    pub const ALL: [Cipher; 2] = [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm];

    /// The names [`Cipher::from_str`] accepts, in [`Cipher::ALL`]'s order.
    pub const NAMES: [&'static str; 2] = ["chacha20-poly1305", "aes-256-gcm"];

    /// The cipher's name, as `-o cipher=NAME` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => Cipher::NAMES[0],
            Cipher::Aes256Gcm => Cipher::NAMES[1],
        }
    }

    /// ring's algorithm.
    pub(crate) fn algorithm(self) -> &'static Algorithm {
        match self {
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &AES_256_GCM,
        }
    }

    /// The type-byte bits that name the cipher: none for the default, so
    /// ChaCha20-Poly1305 packets are exactly those of earlier versions.
    pub(crate) fn type_bits(self) -> u8 {
        match self {
            Cipher::ChaCha20Poly1305 => 0,
            Cipher::Aes256Gcm => FLAG_AES_256_GCM,
        }
    }

    /// The cipher a type byte names (its other bits already checked).
    pub(crate) fn from_type_byte(type_byte: u8) -> Cipher {
        if type_byte & FLAG_AES_256_GCM != 0 { Cipher::Aes256Gcm } else { Cipher::ChaCha20Poly1305 }
    }

    /// The HKDF info prefix of a session key under this cipher, followed by
    /// the session id: [`crate::keys::SESSION_INFO`] for ChaCha20-Poly1305
    /// (as it always was), [`crate::keys::SESSION_INFO_AES_256_GCM`] for
    /// AES-256-GCM.
    pub(crate) fn session_info(self) -> &'static [u8] {
        match self {
            Cipher::ChaCha20Poly1305 => crate::keys::SESSION_INFO,
            Cipher::Aes256Gcm => crate::keys::SESSION_INFO_AES_256_GCM,
        }
    }
}

impl FromStr for Cipher {
    type Err = UnknownCipher;

    fn from_str(s: &str) -> Result<Cipher, UnknownCipher> {
        Cipher::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownCipher(s.to_owned()))
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for c in Cipher::ALL {
            assert_eq!(c.name().parse::<Cipher>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
            assert_eq!(Cipher::from_type_byte(crate::PACKET_TYPE | c.type_bits()), c);
        }
        assert_eq!(Cipher::default(), Cipher::ChaCha20Poly1305);
        for bad in ["", "aes", "AES-256-GCM", "chacha20poly1305", "aes-128-gcm"] {
            assert_eq!(bad.parse::<Cipher>(), Err(UnknownCipher(bad.into())), "{bad:?}");
        }
    }
}
