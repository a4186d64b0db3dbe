//! The 24-bit VXLAN Network Identifier.

use std::fmt;

/// A VXLAN Network Identifier (RFC 7348 §5): a 24-bit value naming one
/// overlay segment.
///
/// Any 24-bit value, 0 included, can be parsed from the wire (the Linux kernel
/// accepts VNI 0); [`Vni::new`] only rejects values wider than 24 bits. Whether
/// VNI 0 may be *configured* is the control plane's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

/// A value does not fit in the 24 bits of a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("VNI {0} does not fit in 24 bits (max {max})", max = Vni::MAX.get())]
pub struct VniOutOfRange(pub u32);

impl Vni {
    /// The largest VNI, 2^24 - 1.
    pub const MAX: Vni = Vni(0xff_ffff);

    /// The VNI `value`, or `None` when it does not fit in 24 bits.
    pub const fn new(value: u32) -> Option<Vni> {
        if value <= Self::MAX.0 { Some(Vni(value)) } else { None }
    }

    /// The VNI as a number (always at most [`Vni::MAX`]).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The VNI from its 3 network-order bytes on the wire.
    pub const fn from_be_bytes(b: [u8; 3]) -> Vni {
        Vni(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// The 3 network-order bytes of the VNI on the wire.
    pub const fn to_be_bytes(self) -> [u8; 3] {
        let b = self.0.to_be_bytes();
        [b[1], b[2], b[3]]
    }
}

impl TryFrom<u32> for Vni {
    type Error = VniOutOfRange;

    fn try_from(value: u32) -> Result<Vni, VniOutOfRange> {
        Vni::new(value).ok_or(VniOutOfRange(value))
    }
}

impl From<Vni> for u32 {
    fn from(vni: Vni) -> u32 {
        vni.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(Vni::new(0).map(Vni::get), Some(0));
        assert_eq!(Vni::new(1).map(Vni::get), Some(1));
        assert_eq!(Vni::new(0xff_ffff), Some(Vni::MAX));
        assert_eq!(Vni::new(0x100_0000), None);
        assert_eq!(Vni::new(u32::MAX), None);
        assert_eq!(Vni::try_from(0x100_0000), Err(VniOutOfRange(0x100_0000)));
        assert_eq!(Vni::try_from(42).map(u32::from), Ok(42));
    }

    #[test]
    fn bytes_round_trip() {
        let vni = Vni::new(0x12_3456).unwrap();
        assert_eq!(vni.to_be_bytes(), [0x12, 0x34, 0x56]);
        assert_eq!(Vni::from_be_bytes([0x12, 0x34, 0x56]), vni);
        assert_eq!(Vni::from_be_bytes([0xff; 3]), Vni::MAX);
    }

    #[test]
    fn displays_as_decimal() {
        assert_eq!(Vni::new(42).unwrap().to_string(), "42");
        assert_eq!(VniOutOfRange(1 << 24).to_string(), "VNI 16777216 does not fit in 24 bits (max 16777215)");
    }
}
