//! Authenticated encryption of vswitch's VXLAN overlay: ChaCha20-Poly1305
//! (or AES-256-GCM, [`Cipher`]) framing of inner Ethernet frames, pure functions over bytes and
//! caller-owned buffers (no sockets, no clock).
//!
//! - [`wire`]: the packet format ([`Header`], [`PACKET_TYPE`], overheads).
//! - [`secret`]: the [`ClusterSecret`] every host loads from a 0600 file.
//! - [`keys`]: HKDF-SHA256 derivation of [`NetworkKey`]s and session keys, and
//!   [`KeySource`]: keys derived from the secret, or installed by epoch.
//! - [`sealed`]: epoch keys sealed to a node's X25519 public key
//!   ([`NodeKeypair`]), for cluster mode.
//! - [`seal`]: [`Sealer`], one sender session.
//! - [`open`]: [`Opener`], authentication, decryption and anti-replay.
//! - [`replay`]: the RFC 6479 sliding window ([`ReplayWindow`]).
//! - [`network`]: [`NetworkCrypto`], one network's sealers (one per flow
//!   slot) and opener, and key rotation.
//! - [`lanes`]: how session ids are drawn so that receivers can spread a
//!   host's flows over threads, and one network sealed by several threads
//!   of a host ([`SessionLane`], [`HostSessions`], [`FLOW_SESSIONS`]).
//!
//! - [`cipher`]: [`Cipher`], the network's AEAD.
//!
//! The cipher is ring's assembly ChaCha20-Poly1305 by default, or ring's
//! AES-256-GCM for networks created with `-o cipher=aes-256-gcm`.
//!
//! # Wire format
//!
//! An encrypted packet is the whole payload of a UDP datagram sent to the
//! VXLAN port, in place of a VXLAN header and inner frame:
//!
//! | Offset      | Length | Field                                                         |
//! |-------------|--------|---------------------------------------------------------------|
//! | 0           | 1      | Type: `0xE1` = vswitch encrypted VXLAN, version 1; `0xE3` with [`FLAG_CSUM_PARTIAL`]; `0xE5`/`0xE7` with [`FLAG_AES_256_GCM`] |
//! | 1           | 3      | VNI, 24 bits, big-endian                                      |
//! | 4           | 4      | Key epoch, u32 big-endian                                     |
//! | 8           | 8      | Sender session id, u64 big-endian (random per sender session) |
//! | 16          | 8      | Packet counter, u64 big-endian (starts at 0 per session)      |
//! | 24          | n      | Inner Ethernet frame, encrypted with ChaCha20 (or AES-256-CTR) |
//! | 24 + n      | 16     | Poly1305 (or GCM) tag over bytes 0..24 (associated data) and the ciphertext |
//!
//! Bytes 0..24 are the AEAD associated data: the header is authenticated, not
//! encrypted. The type byte has bit `0x08` clear, so it can never be a valid
//! RFC 7348 VXLAN header (whose I flag is `0x08`; the Linux kernel drops VXLAN
//! packets without it): plain and encrypted VXLAN share the port and are told
//! apart by the first byte ([`is_encrypted`]).
//!
//! Overhead: [`ENCRYPTED_OVERHEAD`] = 40 bytes around the inner frame, which
//! is [`OVERHEAD_OVER_VXLAN`] = 32 bytes more than plain VXLAN's 8-byte header:
//! the overlay MTU of an encrypted network is 32 bytes below a plain one's.
//!
//! # Keys
//!
//! All derivations are HKDF-SHA256 with salt [`keys::HKDF_SALT`]
//! (`"vswitch encrypted vxlan v1"`) and 32-byte output:
//!
//! - network key = HKDF(ikm = cluster secret, info = `"vswitch network"` ||
//!   VNI as u32 BE || epoch as u32 BE). Hosts holding the same secret agree on
//!   every network's keys without talking to each other.
//! - session key = HKDF(ikm = network key, info = `"vswitch session"` ||
//!   session id as u64 BE); for AES-256-GCM, info =
//!   `"vswitch session aes-256-gcm"` || session id, so no key serves both
//!   ciphers. Only session keys encrypt.
//! - nonce = 4 zero bytes || packet counter as u64 BE.
//!
//! In cluster mode (`vswitchd --cluster-store`) there is no cluster secret:
//! one node draws each epoch's network key at random, seals it to every
//! member node's X25519 public key ([`sealed`]) and publishes it in the
//! store; each node installs the keys it can open
//! ([`NetworkCrypto::with_installed_keys`], [`NetworkCrypto::install`]) and
//! switches its send epoch only when told that every member holds the new
//! key. Session keys and nonces are then as above.
//!
//! Each sender draws fresh 64-bit session ids whenever it starts (every
//! daemon start, every epoch change; the high 32 bits random, the low 32
//! bits in a lane with a random base, [`lanes`]) and counts packets from 0
//! in each, never wrapping (it starts a new session first), so a nonce is
//! never reused under a key, across restarts included. A sender holds
//! [`FLOW_SESSIONS`] sessions at once and seals each flow in the one its
//! outer source port picks, so a receiver that steers packets to threads by
//! session spreads even a one-thread sender's flows. Several threads of one
//! host sealing for one network are each a sender of their own, drawing ids
//! in lanes that never repeat within a run.
//!
//! # Receiving
//!
//! The receiver accepts the previous, current and next epoch of its current
//! one, so hosts rotating one by one, in any order, lose no packets. With
//! installed keys it accepts only those of them whose key it holds. Per
//! (epoch, session) it keeps the session key and a sliding anti-replay window
//! of [`REPLAY_WINDOW`] packets, updated only after a packet authenticates.
//!
//! # Secrets in memory
//!
//! [`ClusterSecret`], [`NetworkKey`] and [`NodeKeypair`] secret bytes, and
//! session key bytes before they are handed to ring, are zeroized when
//! dropped, and their `Debug` output is redacted. ring's expanded cipher key state is not zeroized.

#![deny(unsafe_code)]

pub mod cipher;
pub mod error;
pub mod keys;
pub mod lanes;
pub mod network;
pub mod open;
pub mod replay;
pub mod seal;
pub mod sealed;
pub mod secret;
pub mod wire;

pub use cipher::{Cipher, UnknownCipher};
pub use error::{KeyError, MalformedReason, NodeKeyError, OpenError, SealError, SealedKeyError, SecretError};
pub use keys::{KeySource, NetworkKey};
pub use lanes::{FLOW_SESSIONS, HostSessions, SessionLane};
pub use network::NetworkCrypto;
pub use open::{DEFAULT_MAX_SESSIONS, Opened, Opener, SessionRun};
pub use replay::{REPLAY_WINDOW, ReplayWindow};
pub use seal::Sealer;
pub use sealed::{NodeKeypair, NodePublicKey};
pub use secret::{ClusterSecret, SECRET_LEN};
pub use vxlan::Vni;
pub use wire::{
    ENCRYPTED_OVERHEAD, FLAG_AES_256_GCM, FLAG_CSUM_PARTIAL, HEADER_LEN, Header, InnerChecksum, MIN_PACKET_LEN,
    OVERHEAD_OVER_VXLAN, PACKET_TYPE, TAG_LEN, is_encrypted,
};

#[cfg(test)]
mod interop_tests;
