//! Errors of VXLAN parsing and encapsulation.

use crate::{ETHERNET_HEADER_LEN, HEADER_LEN};

/// Why a packet could not be decapsulated or a frame encapsulated.
///
/// Non-exhaustive: later formats sharing the VXLAN UDP port (for example the
/// daemon's encrypted tunnel traffic) will get their own variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VxlanError {
    /// UDP payload of {len} bytes is shorter than the 8-byte VXLAN header.
    #[error("UDP payload of {len} bytes is shorter than the {HEADER_LEN}-byte VXLAN header")]
    Truncated {
        /// Length of the UDP payload received.
        len: usize,
    },
    /// VXLAN I flag not set (flags byte {flags:#04x}): RFC 7348 requires it for a valid VNI.
    #[error("VXLAN I flag not set (flags byte {flags:#04x}): RFC 7348 requires it for a valid VNI")]
    FlagNotSet {
        /// The flags byte received.
        flags: u8,
    },
    /// Inner frame of {len} bytes is shorter than a 14-byte Ethernet header.
    #[error("inner frame of {len} bytes is shorter than a {ETHERNET_HEADER_LEN}-byte Ethernet header")]
    InnerTruncated {
        /// Length of the inner frame.
        len: usize,
    },
    /// Output buffer of {len} bytes cannot hold the {needed}-byte packet.
    #[error("output buffer of {len} bytes cannot hold the {needed}-byte packet")]
    BufferTooSmall {
        /// Length of the caller's buffer.
        len: usize,
        /// Length the packet needs.
        needed: usize,
    },
}
