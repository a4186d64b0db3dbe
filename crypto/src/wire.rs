//! The encrypted VXLAN header: constants, a parsed representation and the
//! nonce derived from it.

use std::ops::Range;

use ring::aead::{NONCE_LEN, Nonce};
use vxlan::Vni;

use crate::cipher::Cipher;
use crate::error::{MalformedReason, OpenError};

/// First byte of an encrypted packet: "vswitch encrypted VXLAN, version 1".
///
/// Bit 0x08 (the RFC 7348 I flag) is clear, so no VXLAN implementation
/// mistakes it for a plain VXLAN packet (the Linux kernel drops VXLAN packets
/// without the I flag), and vswitch tells the two apart by this byte alone.
pub const PACKET_TYPE: u8 = 0xE1;

/// Flag bit of the type byte: the inner frame's TCP/UDP checksum is partial
/// ([`InnerChecksum::Partial`]). A packet with it set has type byte `0xE3`.
pub const FLAG_CSUM_PARTIAL: u8 = 0x02;

/// Flag bit of the type byte: the packet is sealed with AES-256-GCM
/// ([`Cipher::Aes256Gcm`]); clear, with ChaCha20-Poly1305. Type bytes
/// `0xE5` and `0xE7` (with [`FLAG_CSUM_PARTIAL`]).
pub const FLAG_AES_256_GCM: u8 = 0x04;

/// The type-byte bits that may be set besides [`PACKET_TYPE`]'s.
const TYPE_FLAGS: u8 = FLAG_CSUM_PARTIAL | FLAG_AES_256_GCM;

/// What the sender left in the inner frame's TCP/UDP checksum field, carried
/// in the (authenticated) type byte.
///
/// A frame a sandbox hands to its TAP with a partial checksum (virtio-net
/// `NEEDS_CSUM`, Linux's `CHECKSUM_PARTIAL`: the field holds only the
/// pseudo-header sum) need not be checksummed before sealing: the AEAD tag
/// already proves the frame arrives exactly as the sending switch read it,
/// so the receiving switch hands it on still partial, as a kernel bridge or
/// veth pair does between local sandboxes. That saves the sender a pass
/// over every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InnerChecksum {
    /// The frame is exactly as the sending sandbox made it (any checksum in
    /// it was complete, or deliberately wrong): deliver it as it is.
    #[default]
    AsSent,
    /// The frame is TCP or UDP over IPv4 or IPv6 and its checksum field, at
    /// its standard place, holds the pseudo-header sum: the receiver
    /// completes it, or hands the frame on marked partial.
    Partial,
}

/// Length of the encrypted VXLAN header, all of it authenticated as AEAD
/// associated data.
pub const HEADER_LEN: usize = 24;

/// Length of the authentication tag after the ciphertext (Poly1305's or
/// GCM's: both are 16 bytes).
pub const TAG_LEN: usize = 16;

/// Bytes an encrypted packet adds around the inner Ethernet frame (header and
/// tag): the UDP payload is `inner.len() + ENCRYPTED_OVERHEAD` bytes.
pub const ENCRYPTED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// How many more bytes an encrypted packet takes than a plain VXLAN packet
/// carrying the same inner frame: lower the overlay MTU by this much on
/// encrypted networks.
pub const OVERHEAD_OVER_VXLAN: usize = ENCRYPTED_OVERHEAD - vxlan::HEADER_LEN;

/// The shortest well-formed encrypted packet: a header and a tag around an
/// empty inner frame.
pub const MIN_PACKET_LEN: usize = HEADER_LEN + TAG_LEN;

/// Byte offsets of the header fields.
mod field {
    use std::ops::Range;

    pub(super) const TYPE: usize = 0;
    pub(super) const VNI: Range<usize> = 1..4;
    pub(super) const EPOCH: Range<usize> = 4..8;
    pub(super) const SESSION: Range<usize> = 8..16;
    pub(super) const COUNTER: Range<usize> = 16..24;
}

/// Whether a UDP payload received on the VXLAN port is an encrypted packet
/// (its first byte is [`PACKET_TYPE`], with or without
/// [`FLAG_CSUM_PARTIAL`] and [`FLAG_AES_256_GCM`]) rather than plain VXLAN.
pub fn is_encrypted(udp_payload: &[u8]) -> bool {
    udp_payload.first().is_some_and(|&b| is_packet_type(b))
}

/// A type byte of an encrypted packet.
fn is_packet_type(type_byte: u8) -> bool {
    type_byte & !TYPE_FLAGS == PACKET_TYPE
}

/// The fields of an encrypted VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The overlay network the inner frame belongs to.
    pub vni: Vni,
    /// The key epoch the sender sealed with.
    pub epoch: u32,
    /// The sender's random session id, which selects the session key.
    pub session_id: u64,
    /// The sender's packet counter in that session: the AEAD nonce.
    pub counter: u64,
    /// What the inner frame's TCP/UDP checksum holds.
    pub checksum: InnerChecksum,
    /// The cipher the packet is sealed with.
    pub cipher: Cipher,
}

impl Header {
    /// Parses the header of a whole encrypted packet (header, ciphertext and
    /// tag), checking that the packet is long enough to hold a header and a
    /// tag and that it starts with [`PACKET_TYPE`]. Never panics.
    pub fn parse(packet: &[u8]) -> Result<Header, OpenError> {
        let Some(type_byte) = packet.first().copied() else {
            return Err(OpenError::Malformed(MalformedReason::TooShort { len: 0 }));
        };
        if !is_packet_type(type_byte) {
            return Err(OpenError::Malformed(MalformedReason::WrongType { type_byte }));
        }
        let Some(header) = packet.first_chunk::<HEADER_LEN>().filter(|_| packet.len() >= MIN_PACKET_LEN) else {
            return Err(OpenError::Malformed(MalformedReason::TooShort { len: packet.len() }));
        };
        Ok(Header::from_bytes(header))
    }

    /// The header fields of 24 header bytes of a checked type byte.
    fn from_bytes(h: &[u8; HEADER_LEN]) -> Header {
        let vni = Vni::from_be_bytes([h[field::VNI.start], h[field::VNI.start + 1], h[field::VNI.start + 2]]);
        let partial = h[field::TYPE] & FLAG_CSUM_PARTIAL != 0;
        Header {
            vni,
            epoch: u32::from_be_bytes(array(h, field::EPOCH)),
            session_id: u64::from_be_bytes(array(h, field::SESSION)),
            counter: u64::from_be_bytes(array(h, field::COUNTER)),
            checksum: if partial { InnerChecksum::Partial } else { InnerChecksum::AsSent },
            cipher: Cipher::from_type_byte(h[field::TYPE]),
        }
    }

    /// The 24 wire bytes of this header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[field::TYPE] = match self.checksum {
            InnerChecksum::AsSent => PACKET_TYPE,
            InnerChecksum::Partial => PACKET_TYPE | FLAG_CSUM_PARTIAL,
        } | self.cipher.type_bits();
        h[field::VNI].copy_from_slice(&self.vni.to_be_bytes());
        h[field::EPOCH].copy_from_slice(&self.epoch.to_be_bytes());
        h[field::SESSION].copy_from_slice(&self.session_id.to_be_bytes());
        h[field::COUNTER].copy_from_slice(&self.counter.to_be_bytes());
        h
    }

    /// The 96-bit AEAD nonce of this packet: 4 zero bytes, then
    /// the counter big-endian.
    pub fn nonce_bytes(&self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }

    /// [`Header::nonce_bytes`] as a ring nonce.
    pub(crate) fn nonce(&self) -> Nonce {
        Nonce::assume_unique_for_key(self.nonce_bytes())
    }
}

/// The bytes of `range` of a header as a fixed-size array.
fn array<const N: usize>(h: &[u8; HEADER_LEN], range: Range<usize>) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&h[range]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads() {
        assert_eq!(ENCRYPTED_OVERHEAD, 40);
        assert_eq!(OVERHEAD_OVER_VXLAN, 32);
        for type_byte in (0..=TYPE_FLAGS).map(|flags| PACKET_TYPE | (flags & TYPE_FLAGS)) {
            assert_eq!(type_byte & 0x08, 0, "the type byte must not look like a VXLAN I flag");
        }
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = Header {
            vni: Vni::new(0x01_02_03).unwrap(),
            epoch: 0x0405_0607,
            session_id: 0x0809_0a0b_0c0d_0e0f,
            counter: 0x1011_1213_1415_1617,
            checksum: InnerChecksum::AsSent,
            cipher: Cipher::ChaCha20Poly1305,
        };
        let bytes = h.to_bytes();
        let expected: Vec<u8> = std::iter::once(0xE1).chain(1..24).collect();
        assert_eq!(bytes.as_slice(), expected.as_slice());
        let mut packet = bytes.to_vec();
        packet.extend_from_slice(&[0u8; TAG_LEN]);
        assert_eq!(Header::parse(&packet), Ok(h));
        assert_eq!(h.nonce_bytes(), [0, 0, 0, 0, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);

        let partial = Header { checksum: InnerChecksum::Partial, ..h };
        let mut packet = partial.to_bytes().to_vec();
        assert_eq!(packet[0], 0xE3);
        assert_eq!(packet[1..], bytes[1..], "only the type byte differs");
        packet.extend_from_slice(&[0u8; TAG_LEN]);
        assert_eq!(Header::parse(&packet), Ok(partial));
        assert!(is_encrypted(&packet));

        for checksum in [InnerChecksum::AsSent, InnerChecksum::Partial] {
            let aes = Header { checksum, cipher: Cipher::Aes256Gcm, ..h };
            let mut packet = aes.to_bytes().to_vec();
            let partial = checksum == InnerChecksum::Partial;
            assert_eq!(packet[0], if partial { 0xE7 } else { 0xE5 });
            packet.extend_from_slice(&[0u8; TAG_LEN]);
            assert_eq!(Header::parse(&packet), Ok(aes));
        }
    }

    #[test]
    fn parse_rejects_short_and_wrong_type() {
        let header = Header {
            vni: Vni::MAX,
            epoch: 1,
            session_id: 2,
            counter: 3,
            checksum: InnerChecksum::AsSent,
            cipher: Cipher::ChaCha20Poly1305,
        };
        let mut packet = header.to_bytes().to_vec();
        packet.extend_from_slice(&[0u8; TAG_LEN]);
        assert!(Header::parse(&packet).is_ok());
        assert_eq!(
            Header::parse(&packet[..MIN_PACKET_LEN - 1]),
            Err(OpenError::Malformed(MalformedReason::TooShort { len: MIN_PACKET_LEN - 1 }))
        );
        assert_eq!(Header::parse(&[]), Err(OpenError::Malformed(MalformedReason::TooShort { len: 0 })));
        packet[0] = 0x08; // a plain VXLAN flags byte
        assert_eq!(Header::parse(&packet), Err(OpenError::Malformed(MalformedReason::WrongType { type_byte: 0x08 })));
        assert!(!is_encrypted(&packet));
        assert!(!is_encrypted(&[]));
        assert!(is_encrypted(&[PACKET_TYPE]));
        for other_flag in [0x08, 0x10] {
            packet[0] = PACKET_TYPE | other_flag;
            assert!(!is_encrypted(&packet) && Header::parse(&packet).is_err(), "{:#x}", packet[0]);
        }
    }
}
