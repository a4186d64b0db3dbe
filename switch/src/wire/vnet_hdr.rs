//! The virtio-net header that prefixes every frame read from or written to a
//! TAP opened with `IFF_VNET_HDR`.
//!
//! Layout (`struct virtio_net_hdr_v1`, 12 bytes, the size we set with
//! `TUNSETVNETHDRSZ`):
//!
//! | offset | size | field         |
//! |--------|------|---------------|
//! | 0      | 1    | `flags`       |
//! | 1      | 1    | `gso_type`    |
//! | 2      | 2    | `hdr_len`     |
//! | 4      | 2    | `gso_size`    |
//! | 6      | 2    | `csum_start`  |
//! | 8      | 2    | `csum_offset` |
//! | 10     | 2    | `num_buffers` |
//!
//! Multi-byte fields are **little-endian**. The kernel uses the virtio
//! "legacy" native byte order unless `TUNSETVNETLE`/`TUNSETVNETBE` is set; on
//! the little-endian hosts vswitch supports (x86-64, aarch64) native is little
//! endian, so we never issue those ioctls.
//!
//! On reads the kernel fills only the first 10 bytes (`struct virtio_net_hdr`)
//! and skips `num_buffers`; the TAP reader (`Tap::recv` in `sys::tap`) zeroes
//! those two bytes first so they read as 0.
//!
//! The header is a frame format like the Ethernet view beside it: the offload
//! code (`offload/`) and the datapath read and write it without depending on
//! the TAP device that produces it.

use thiserror::Error;

/// A buffer was too short to hold a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("buffer of {len} bytes is shorter than the {} byte virtio-net header", VirtioNetHdr::LEN)]
pub struct VnetHdrTooShort {
    /// Length of the buffer that was offered.
    pub len: usize,
}

/// A parsed `virtio_net_hdr_v1` (see the module docs for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct VirtioNetHdr {
    /// `FLAG_*` bits.
    pub flags: u8,
    /// One of the `GSO_*` types, possibly or-ed with [`VirtioNetHdr::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + L4) that precede the GSO payload.
    pub hdr_len: u16,
    /// Payload bytes per segment when `gso_type` is not `GSO_NONE`.
    pub gso_size: u16,
    /// Offset from the start of the frame where checksumming starts
    /// (valid with [`VirtioNetHdr::FLAG_NEEDS_CSUM`]).
    pub csum_start: u16,
    /// Offset from `csum_start` where the checksum is stored
    /// (valid with [`VirtioNetHdr::FLAG_NEEDS_CSUM`]).
    pub csum_offset: u16,
    /// Number of merged receive buffers; not filled by the kernel on TAP reads.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Size of the header on the wire (the value passed to `TUNSETVNETHDRSZ`).
    pub const LEN: usize = 12;

    /// The L4 checksum is partial: complete it over `csum_start..` and store it
    /// at `csum_start + csum_offset`.
    pub const FLAG_NEEDS_CSUM: u8 = 1;
    /// The checksum has been validated already (receive side hint).
    pub const FLAG_DATA_VALID: u8 = 2;
    /// `csum_start`/`csum_offset` carry RSC coalescing info (not used by TAP).
    pub const FLAG_RSC_INFO: u8 = 4;

    /// Not a GSO frame.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 segmentation offload (TSO4).
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload (UFO, legacy).
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 segmentation offload (TSO6).
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation offload (USO, `UDP_SEGMENT`).
    pub const GSO_UDP_L4: u8 = 5;
    /// Bit or-ed into `gso_type`: the TCP segments carry ECN CWR.
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the first [`Self::LEN`] bytes of `buf`; `None` if it is shorter.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b: &[u8; Self::LEN] = buf.get(..Self::LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: u16_at(10),
        })
    }

    /// Writes the header into the first [`Self::LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), VnetHdrTooShort> {
        let len = buf.len();
        let b = buf.get_mut(..Self::LEN).ok_or(VnetHdrTooShort { len })?;
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        Ok(())
    }

    /// The header as a 12-byte array (handy for `send_vectored`).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        // Cannot fail: the array is exactly LEN bytes.
        let _ = self.emit(&mut out);
        out
    }

    /// The GSO type without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !Self::GSO_ECN
    }

    /// True when the frame is a GSO super-frame that must be segmented before
    /// it goes to a device without the matching offload.
    pub fn is_gso(&self) -> bool {
        self.gso_kind() != Self::GSO_NONE
    }

    /// True when the L4 checksum is still to be computed.
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::FLAG_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_known_bytes_little_endian() {
        let bytes = [1u8, 0x81, 0x36, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x01, 0x00];
        let h = VirtioNetHdr::parse(&bytes).unwrap();
        assert_eq!(
            h,
            VirtioNetHdr {
                flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
                gso_type: VirtioNetHdr::GSO_TCPV4 | VirtioNetHdr::GSO_ECN,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
                num_buffers: 1,
            }
        );
        assert!(h.is_gso());
        assert!(h.needs_csum());
        assert_eq!(h.gso_kind(), VirtioNetHdr::GSO_TCPV4);
        assert_eq!(h.to_bytes(), bytes);
    }

    #[test]
    fn short_buffers_are_rejected_without_panic() {
        for n in 0..VirtioNetHdr::LEN {
            let mut buf = vec![0u8; n];
            assert_eq!(VirtioNetHdr::parse(&buf), None);
            assert_eq!(VirtioNetHdr::default().emit(&mut buf), Err(VnetHdrTooShort { len: n }));
        }
        let plain = VirtioNetHdr::parse(&[0u8; 64]).unwrap();
        assert!(!plain.is_gso() && !plain.needs_csum());
    }

    proptest! {
        #[test]
        fn emit_parse_roundtrip(f in any::<u8>(), g in any::<u8>(), a in any::<u16>(), b in any::<u16>(),
                                c in any::<u16>(), d in any::<u16>(), e in any::<u16>(), tail in 0usize..8) {
            let h = VirtioNetHdr { flags: f, gso_type: g, hdr_len: a, gso_size: b, csum_start: c, csum_offset: d, num_buffers: e };
            let mut buf = vec![0xeeu8; VirtioNetHdr::LEN + tail];
            h.emit(&mut buf).unwrap();
            prop_assert_eq!(VirtioNetHdr::parse(&buf), Some(h));
            prop_assert!(buf[VirtioNetHdr::LEN..].iter().all(|&x| x == 0xee));
        }
    }
}
