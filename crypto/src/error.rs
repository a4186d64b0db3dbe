//! Typed errors of opening, sealing and loading secrets.

use std::io;
use std::path::PathBuf;

use vxlan::Vni;

use crate::cipher::Cipher;
use crate::wire::{MIN_PACKET_LEN, PACKET_TYPE};

/// Why a received packet was not opened. Every variant is a drop the daemon
/// counts; none is worth a log line per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not an encrypted VXLAN packet: {0}.
    #[error("not an encrypted VXLAN packet: {0}")]
    Malformed(MalformedReason),
    /// Packet for VNI {found} handed to the keys of VNI {expected}.
    #[error("packet for VNI {found} handed to the keys of VNI {expected}")]
    VniMismatch {
        /// The VNI of the keys that were asked to open the packet.
        expected: Vni,
        /// The VNI in the packet's header.
        found: Vni,
    },
    /// The packet is sealed with another cipher than the network's: a host
    /// whose network was created with another `-o cipher`.
    #[error("packet sealed with {found}, but the network's cipher is {expected}")]
    CipherMismatch {
        /// The network's cipher.
        expected: Cipher,
        /// The cipher the packet's type byte names.
        found: Cipher,
    },
    /// Key epoch {epoch} is not the previous, current or next epoch of current epoch {current}.
    #[error("key epoch {epoch} is not the previous, current or next epoch of current epoch {current}")]
    UnknownEpoch {
        /// The epoch in the packet's header.
        epoch: u32,
        /// The receiver's current epoch.
        current: u32,
    },
    /// The packet belongs to one of this host's own sender sessions: it was
    /// sent back to the host that sealed it.
    #[error("packet of this host's own sender session, sent back to it")]
    Reflected,
    /// Authentication failed: wrong key, or the packet was altered.
    #[error("authentication failed: wrong key, or the packet was altered")]
    AuthenticationFailed,
    /// The packet's session is another thread's to open (see
    /// [`crate::lanes`]): only the thread its session id steers to keeps
    /// that session's replay window, so no other may accept it.
    #[error("packet of a session receiving thread {thread} opens")]
    OtherThread {
        /// The thread (index among the receiving threads) that opens it.
        thread: u32,
    },
    /// Packet counter {counter} of this session was already received (a replay).
    #[error("packet counter {counter} of this session was already received (a replay)")]
    Replayed {
        /// The packet's counter.
        counter: u64,
    },
    /// Packet counter {counter} is older than the anti-replay window (newest {newest}).
    #[error("packet counter {counter} is older than the anti-replay window (newest {newest})")]
    TooOld {
        /// The packet's counter.
        counter: u64,
        /// The newest counter received in this session.
        newest: u64,
    },
}

/// What is wrong with a packet that is not encrypted VXLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReason {
    /// {len} bytes is shorter than the 40-byte header and tag.
    #[error("{len} bytes is shorter than the {MIN_PACKET_LEN}-byte header and tag")]
    TooShort {
        /// Length of the UDP payload.
        len: usize,
    },
    /// Type byte {type_byte:#04x} is not 0xe1, 0xe3, 0xe5 or 0xe7.
    #[error("type byte {type_byte:#04x} is not {PACKET_TYPE:#04x}, 0xe3, 0xe5 or 0xe7")]
    WrongType {
        /// The first byte of the UDP payload.
        type_byte: u8,
    },
}

/// Why a frame could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Buffer of {len} bytes cannot hold the {needed}-byte encrypted packet.
    #[error("buffer of {len} bytes cannot hold the {needed}-byte encrypted packet")]
    BufferTooSmall {
        /// Length of the caller's buffer.
        len: usize,
        /// Length the packet needs (header, inner frame, tag).
        needed: usize,
    },
    /// Inner frame of {len} bytes is too long for the AEAD.
    #[error("inner frame of {len} bytes is too long for the AEAD")]
    TooLong {
        /// Length of the inner frame.
        len: usize,
    },
    /// The system random number generator failed to produce a session id.
    #[error("the system random number generator failed to produce a session id")]
    Random,
    /// No key is installed for epoch {epoch} (a network whose keys are
    /// installed, not derived): nothing is sent with an epoch whose key
    /// this host does not hold.
    #[error("no key is installed for epoch {epoch}")]
    NoKey {
        /// The epoch asked for.
        epoch: u32,
    },
}

/// Why a key could not be installed in a network's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The network derives its keys from the cluster secret.
    #[error("this network derives its keys from the cluster secret; keys cannot be installed in it")]
    Derived,
    /// The key is of another network.
    #[error("a key of VNI {found} cannot be installed in the keys of VNI {expected}")]
    VniMismatch {
        /// The network's VNI.
        expected: Vni,
        /// The key's VNI.
        found: Vni,
    },
    /// The system random number generator failed to start a sender session.
    #[error("the system random number generator failed to produce a session id")]
    Random,
}

/// Why a sealed epoch key could not be opened (or sealed). Never contains
/// key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedKeyError {
    /// The sealed key is not {expected} bytes long.
    #[error("a sealed key is {expected} bytes, not {len}")]
    Length {
        /// The length given.
        len: usize,
        /// The length of a sealed key.
        expected: usize,
    },
    /// The key was sealed to another node's public key.
    #[error("the key was sealed to another node's public key")]
    WrongRecipient,
    /// The key exchange gave an all-zero shared secret (a low-order public
    /// key): refused.
    #[error("the key exchange with a low-order public key was refused")]
    NonContributory,
    /// Authentication failed: altered, or sealed for another network, VNI or
    /// epoch.
    #[error("the sealed key does not authenticate: altered, or sealed for another network, VNI or epoch")]
    AuthenticationFailed,
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Why a node keypair could not be loaded, saved or generated. Never
/// contains secret key bytes.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    /// Cannot read or write the node key file {path}: {source}.
    #[error("cannot read or write the node key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Node key file {path} is not a regular file.
    #[error("node key file {} is not a regular file", path.display())]
    NotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// Node key file {path} has mode {mode:o}, open to group or others.
    #[error("node key file {} has mode {mode:o}, open to group or others: `chmod 600` it", path.display())]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The key is not 64 hexadecimal characters.
    #[error("a node key is not 64 hexadecimal characters: {0}")]
    InvalidFormat(&'static str),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Why a cluster secret could not be loaded or generated. Never contains
/// secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Cannot read the cluster secret file {path}: {source}.
    #[error("cannot read the cluster secret file {}: {source}", path.display())]
    Io {
        /// The secret file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Cluster secret file {path} is not a regular file.
    #[error("cluster secret file {} is not a regular file", path.display())]
    NotAFile {
        /// The secret file.
        path: PathBuf,
    },
    /// Cluster secret file {path} has mode {mode:o}, open to group or others: `chmod 600` it.
    #[error("cluster secret file {} has mode {mode:o}, open to group or others: `chmod 600` it", path.display())]
    InsecurePermissions {
        /// The secret file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The cluster secret is not 64 hexadecimal characters: {0}.
    #[error("the cluster secret is not 64 hexadecimal characters: {0}")]
    InvalidFormat(&'static str),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}
