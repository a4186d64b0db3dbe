//! The VXLAN header (RFC 7348 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag must be 1 for a valid VNI. Reserved bits are sent as zero and
//! ignored on receipt.

use crate::{Vni, VxlanError};

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;

/// The IANA-assigned VXLAN UDP destination port (RFC 7348 §5).
pub const UDP_PORT: u16 = 4789;

/// The I flag: set when the VNI field is valid.
pub const FLAG_I: u8 = 0x08;

mod field {
    use std::ops::Range;
    pub(super) const FLAGS: usize = 0;
    pub(super) const RESERVED_1: Range<usize> = 1..4;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const RESERVED_2: usize = 7;
    pub(super) const PAYLOAD: usize = 8;
}

/// A view of a VXLAN packet (header + inner frame) in a byte buffer.
///
/// Construct with [`VxlanPacket::new_checked`]; afterwards every accessor is
/// in bounds and cannot panic. The view does not judge the flags: use
/// [`VxlanRepr::parse`] for the RFC's receive rules.
#[derive(Debug, Clone, Copy)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps `buffer` without checking its length; accessors may panic until
    /// [`VxlanPacket::check_len`] has passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds a full header.
    pub fn new_checked(buffer: T) -> Result<Self, VxlanError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer holds a full 8-byte header.
    pub fn check_len(&self) -> Result<(), VxlanError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN { Err(VxlanError::Truncated { len }) } else { Ok(()) }
    }

    /// Gives the underlying buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the I flag (valid VNI) is set.
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The VNI field, whatever the I flag says.
    pub fn vni(&self) -> Vni {
        let b = &self.buffer.as_ref()[field::VNI];
        Vni::from_be_bytes([b[0], b[1], b[2]])
    }

    /// True when any reserved bit (flags other than I, the 24 bits after the
    /// flags, the last byte) is set. Receivers ignore them; this is for tests
    /// and diagnostics.
    pub fn reserved_bits_set(&self) -> bool {
        let b = self.buffer.as_ref();
        b[field::FLAGS] & !FLAG_I != 0 || b[field::RESERVED_1].iter().any(|&x| x != 0) || b[field::RESERVED_2] != 0
    }

    /// The inner Ethernet frame after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI field.
    pub fn set_vni(&mut self, vni: Vni) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&vni.to_be_bytes());
    }

    /// Zeroes both reserved fields (the flags byte is left alone).
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::RESERVED_1].fill(0);
        b[field::RESERVED_2] = 0;
    }

    /// The inner Ethernet frame after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The meaning of a VXLAN header: just its VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// The network the inner frame belongs to.
    pub vni: Vni,
}

impl VxlanRepr {
    /// Applies the RFC 7348 receive rules: the I flag must be set; reserved
    /// bits are ignored.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &VxlanPacket<&T>) -> Result<VxlanRepr, VxlanError> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(VxlanError::FlagNotSet { flags: packet.flags() });
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    /// Length of the header this representation emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag set, every reserved bit zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanPacket<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }

    /// The 8 header bytes, for the zero-copy path.
    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let v = self.vni.to_be_bytes();
        [FLAG_I, 0, 0, 0, v[0], v[1], v[2], 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    #[test]
    fn matches_linux_kernel_header_for_vni_42() {
        // What the Linux vxlan driver puts on the wire for `id 42`
        // (vxh->vx_flags = VXLAN_HF_VNI = htonl(0x08000000), vx_vni = htonl(42 << 8)).
        let kernel = [0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00];
        assert_eq!(VxlanRepr { vni: vni(42) }.to_bytes(), kernel);

        let mut buf = [0xffu8; HEADER_LEN];
        VxlanRepr { vni: vni(42) }.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, kernel);

        let packet = VxlanPacket::new_checked(&kernel[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: vni(42) }));
        assert!(!packet.reserved_bits_set());
    }

    #[test]
    fn emit_writes_full_24_bit_vni_in_network_order() {
        let bytes = VxlanRepr { vni: vni(0xab_cdef) }.to_bytes();
        assert_eq!(bytes, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(VxlanRepr { vni: Vni::MAX }.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn parse_requires_i_flag() {
        let mut bytes = VxlanRepr { vni: vni(7) }.to_bytes();
        bytes[0] = 0x00;
        let err = VxlanRepr::parse(&VxlanPacket::new_checked(&bytes[..]).unwrap()).unwrap_err();
        assert_eq!(err, VxlanError::FlagNotSet { flags: 0 });
        // Every other flag bit set but not I: still rejected.
        bytes[0] = !FLAG_I;
        let err = VxlanRepr::parse(&VxlanPacket::new_checked(&bytes[..]).unwrap()).unwrap_err();
        assert_eq!(err, VxlanError::FlagNotSet { flags: 0xf7 });
    }

    #[test]
    fn parse_ignores_reserved_bits() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x02, 0xff];
        let packet = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.reserved_bits_set());
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: vni(0x0102) }));
    }

    #[test]
    fn parse_accepts_vni_zero() {
        let bytes = [0x08, 0, 0, 0, 0, 0, 0, 0];
        let packet = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&packet), Ok(VxlanRepr { vni: vni(0) }));
    }

    #[test]
    fn rejects_truncated_header() {
        for len in 0..HEADER_LEN {
            let bytes = vec![0x08; len];
            assert_eq!(VxlanPacket::new_checked(&bytes[..]).unwrap_err(), VxlanError::Truncated { len });
            // parse on an unchecked view checks too instead of panicking.
            assert_eq!(
                VxlanRepr::parse(&VxlanPacket::new_unchecked(&bytes[..])).unwrap_err(),
                VxlanError::Truncated { len }
            );
        }
        assert!(VxlanPacket::new_checked(&[0u8; HEADER_LEN][..]).is_ok());
    }

    #[test]
    fn emit_clears_reserved_and_keeps_payload() {
        let mut buf = [0xffu8; 12];
        let mut packet = VxlanPacket::new_checked(&mut buf[..]).unwrap();
        VxlanRepr { vni: vni(1) }.emit(&mut packet);
        assert!(!packet.reserved_bits_set());
        packet.payload_mut().copy_from_slice(b"abcd");
        assert_eq!(packet.payload(), b"abcd");
        assert_eq!(buf, [0x08, 0, 0, 0, 0, 0, 1, 0, b'a', b'b', b'c', b'd']);
    }
}
