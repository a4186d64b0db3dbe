//! Encapsulation and decapsulation of whole packets.
//!
//! All three functions work on the UDP payload only: the caller's socket adds
//! and strips the outer IP and UDP headers.

use crate::{ETHERNET_HEADER_LEN, HEADER_LEN, Vni, VxlanError, VxlanPacket, VxlanRepr};

/// Splits a received UDP payload into its VNI and inner Ethernet frame.
///
/// Applies the RFC 7348 receive rules (I flag required, reserved bits
/// ignored) and rejects inner frames shorter than an Ethernet header. The
/// returned frame borrows from `udp_payload`; nothing is copied.
pub fn decapsulate(udp_payload: &[u8]) -> Result<(Vni, &[u8]), VxlanError> {
    let packet = VxlanPacket::new_checked(udp_payload)?;
    let repr = VxlanRepr::parse(&packet)?;
    let inner = &udp_payload[HEADER_LEN..];
    if inner.len() < ETHERNET_HEADER_LEN {
        return Err(VxlanError::InnerTruncated { len: inner.len() });
    }
    Ok((repr.vni, inner))
}

/// Writes a VXLAN header for `vni` followed by a copy of `inner` into `out`
/// and returns the number of bytes written (`8 + inner.len()`): the UDP
/// payload to send.
///
/// Fails when `inner` is shorter than an Ethernet header or `out` is too
/// small. The datapath avoids the copy with [`write_header`].
pub fn encapsulate_into(vni: Vni, inner: &[u8], out: &mut [u8]) -> Result<usize, VxlanError> {
    if inner.len() < ETHERNET_HEADER_LEN {
        return Err(VxlanError::InnerTruncated { len: inner.len() });
    }
    let needed = HEADER_LEN + inner.len();
    let Some(out) = out.get_mut(..needed) else {
        return Err(VxlanError::BufferTooSmall { len: out.len(), needed });
    };
    let (header, payload) = out.split_at_mut(HEADER_LEN);
    header.copy_from_slice(&VxlanRepr { vni }.to_bytes());
    payload.copy_from_slice(inner);
    Ok(needed)
}

/// Writes the 8-byte VXLAN header for `vni` in place: I flag set, reserved
/// bits zero.
///
/// The zero-copy encapsulation path: the datapath reads each inner frame at
/// offset [`HEADER_LEN`] of its buffer and writes the header into the 8 bytes
/// in front of it, so the whole buffer is the UDP payload to send.
#[inline]
pub fn write_header(vni: Vni, header: &mut [u8; HEADER_LEN]) {
    *header = VxlanRepr { vni }.to_bytes();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    #[test]
    fn round_trip() {
        let inner = frame(1450);
        let mut out = vec![0u8; 2000];
        let n = encapsulate_into(vni(5001), &inner, &mut out).unwrap();
        assert_eq!(n, 1458);
        assert_eq!(&out[..8], &[0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0]);
        let (v, got) = decapsulate(&out[..n]).unwrap();
        assert_eq!(v, vni(5001));
        assert_eq!(got, &inner[..]);
    }

    #[test]
    fn in_place_write_header_round_trip() {
        let inner = frame(64);
        let mut buf = vec![0xeeu8; HEADER_LEN + inner.len()];
        buf[HEADER_LEN..].copy_from_slice(&inner);
        let (header, _) = buf.split_first_chunk_mut::<HEADER_LEN>().unwrap();
        write_header(vni(42), header);
        assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
        assert_eq!(decapsulate(&buf).unwrap(), (vni(42), &inner[..]));
    }

    #[test]
    fn decapsulate_errors() {
        assert_eq!(decapsulate(&[]), Err(VxlanError::Truncated { len: 0 }));
        assert_eq!(decapsulate(&[0x08, 0, 0, 0, 0, 0, 1]), Err(VxlanError::Truncated { len: 7 }));
        let mut pkt = vec![0u8; HEADER_LEN + ETHERNET_HEADER_LEN];
        assert_eq!(decapsulate(&pkt), Err(VxlanError::FlagNotSet { flags: 0 }));
        pkt[0] = 0x08;
        assert!(decapsulate(&pkt).is_ok());
        // Header fine, inner frame one byte short of an Ethernet header.
        assert_eq!(decapsulate(&pkt[..pkt.len() - 1]), Err(VxlanError::InnerTruncated { len: 13 }));
        assert_eq!(decapsulate(&pkt[..HEADER_LEN]), Err(VxlanError::InnerTruncated { len: 0 }));
    }

    #[test]
    fn decapsulate_ignores_reserved_bits() {
        let mut pkt = vec![0u8; HEADER_LEN + ETHERNET_HEADER_LEN];
        pkt[..8].copy_from_slice(&[0xff, 0xaa, 0xbb, 0xcc, 0x00, 0x00, 0x2a, 0xdd]);
        assert_eq!(decapsulate(&pkt).unwrap().0, vni(42));
    }

    #[test]
    fn encapsulate_errors() {
        let mut out = [0u8; 64];
        assert_eq!(encapsulate_into(vni(1), &frame(13), &mut out), Err(VxlanError::InnerTruncated { len: 13 }));
        assert_eq!(
            encapsulate_into(vni(1), &frame(57), &mut out),
            Err(VxlanError::BufferTooSmall { len: 64, needed: 65 })
        );
        assert_eq!(encapsulate_into(vni(1), &frame(56), &mut out), Ok(64));
        // A too-small buffer is left untouched.
        let mut small = [0x55u8; 10];
        assert!(encapsulate_into(vni(1), &frame(14), &mut small).is_err());
        assert_eq!(small, [0x55; 10]);
    }
}
