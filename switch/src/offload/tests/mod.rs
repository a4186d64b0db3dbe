//! Tests of the software offloads. Frames are built by hand here, and every
//! result is checked with independent parsers and checksum code (etherparse
//! and smoltcp), never with this module's own helpers.

mod checksum;
mod gro;
mod icmp;
mod malformed;
mod mss;
mod partial;
mod segment;
mod wire_len;

use crate::wire::VirtioNetHdr;

pub(super) const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub(super) const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub(super) const SRC4: [u8; 4] = [10, 0, 0, 2];
pub(super) const DST4: [u8; 4] = [10, 0, 1, 3];
pub(super) const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub(super) const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3];

pub(super) const FIN: u8 = 0x01;
pub(super) const SYN: u8 = 0x02;
pub(super) const PSH: u8 = 0x08;
pub(super) const ACK: u8 = 0x10;
pub(super) const ECE: u8 = 0x40;
pub(super) const CWR: u8 = 0x80;

/// The transport of a test packet.
#[derive(Clone, Debug)]
pub(super) enum L4Spec {
    /// TCP with raw options (a multiple of 4 bytes), flags and sequence number.
    Tcp { options: Vec<u8>, flags: u8, seq: u32 },
    /// UDP.
    Udp,
    /// Any other protocol number; the payload follows the IP header directly.
    Raw(u8),
}

/// A test packet description.
#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub(super) vlan: Option<u16>,
    pub(super) v6: bool,
    /// IPv4 options (a multiple of 4 bytes).
    pub(super) ip_options: Vec<u8>,
    pub(super) df: bool,
    pub(super) ip_id: u16,
    pub(super) l4: L4Spec,
    pub(super) payload: Vec<u8>,
}

impl Spec {
    pub(super) fn tcp4(payload_len: usize) -> Self {
        Spec {
            vlan: None,
            v6: false,
            ip_options: Vec::new(),
            df: true,
            ip_id: 0xfffe,
            l4: L4Spec::Tcp { options: timestamps(), flags: ACK | PSH, seq: 0xffff_f000 },
            payload: pattern(payload_len),
        }
    }

    pub(super) fn tcp6(payload_len: usize) -> Self {
        Spec { v6: true, ..Self::tcp4(payload_len) }
    }

    pub(super) fn udp4(payload_len: usize) -> Self {
        Spec { l4: L4Spec::Udp, ..Self::tcp4(payload_len) }
    }

    pub(super) fn udp6(payload_len: usize) -> Self {
        Spec { l4: L4Spec::Udp, ..Self::tcp6(payload_len) }
    }
}

/// NOP, NOP, timestamps (kind 8, len 10): 12 bytes, as Linux sends them.
pub(super) fn timestamps() -> Vec<u8> {
    vec![1, 1, 8, 10, 0x00, 0x01, 0xe2, 0x40, 0x12, 0x34, 0x56, 0x78]
}

/// Non-repeating-ish payload so misplaced chunks are detected.
pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A built frame and where its parts are.
pub(super) struct Built {
    pub(super) frame: Vec<u8>,
    pub(super) l3_off: usize,
    pub(super) l4_off: usize,
    pub(super) payload_off: usize,
    /// Offset of the L4 checksum from `l4_off`.
    pub(super) csum_offset: usize,
}

impl Built {
    /// The virtio-net header a Linux TAP would give this frame: NEEDS_CSUM
    /// with the pseudo-header sum in place (see [`build`]).
    pub(super) fn vnet(&self, gso_type: u8, gso_size: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VirtioNetHdr::FLAG_NEEDS_CSUM,
            gso_type,
            hdr_len: self.payload_off as u16,
            gso_size,
            csum_start: self.l4_off as u16,
            csum_offset: self.csum_offset as u16,
            num_buffers: 0,
        }
    }
}

/// Plain 16-bit word sum, written independently of `offload::csum`.
pub(super) fn word_sum(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    for (i, b) in data.iter().enumerate() {
        sum += if i % 2 == 0 { u32::from(*b) << 8 } else { u32::from(*b) };
    }
    sum
}

pub(super) fn fold16(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Builds the frame. The IPv4 header checksum is valid (computed by
/// etherparse); the L4 checksum field holds the folded, uncomplemented
/// pseudo-header sum, as a sender using checksum offload leaves it.
pub(super) fn build(spec: &Spec) -> Built {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    if let Some(vid) = spec.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(0x2000 | vid).to_be_bytes());
    }
    let (proto, l4_hdr): (u8, Vec<u8>) = match &spec.l4 {
        L4Spec::Tcp { options, flags, seq } => {
            assert_eq!(options.len() % 4, 0);
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&5201u16.to_be_bytes());
            h[4..8].copy_from_slice(&seq.to_be_bytes());
            h[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
            h[12] = (((20 + options.len()) / 4) << 4) as u8;
            h[13] = *flags;
            h[14..16].copy_from_slice(&502u16.to_be_bytes());
            h.extend_from_slice(options);
            (6, h)
        }
        L4Spec::Udp => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&40000u16.to_be_bytes());
            h[2..4].copy_from_slice(&4789u16.to_be_bytes());
            (17, h)
        }
        L4Spec::Raw(p) => (*p, Vec::new()),
    };
    let l4_len = l4_hdr.len() + spec.payload.len();
    let l3_off;
    let (src, dst): (&[u8], &[u8]);
    if spec.v6 {
        f.extend_from_slice(&[0x86, 0xdd]);
        l3_off = f.len();
        f.extend_from_slice(&[0x60, 0x0a, 0xbc, 0xde]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&SRC6);
        f.extend_from_slice(&DST6);
        (src, dst) = (&SRC6, &DST6);
    } else {
        assert_eq!(spec.ip_options.len() % 4, 0);
        f.extend_from_slice(&[0x08, 0x00]);
        l3_off = f.len();
        let ihl = (20 + spec.ip_options.len()) / 4;
        f.push(0x40 | ihl as u8);
        f.push(0);
        f.extend_from_slice(&((ihl * 4 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&spec.ip_id.to_be_bytes());
        f.extend_from_slice(&(if spec.df { 0x4000u16 } else { 0 }).to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0]);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
        f.extend_from_slice(&spec.ip_options);
        let hdr = etherparse::Ipv4HeaderSlice::from_slice(&f[l3_off..]).unwrap().to_header();
        let check = hdr.calc_header_checksum();
        f[l3_off + 10..l3_off + 12].copy_from_slice(&check.to_be_bytes());
        (src, dst) = (&SRC4, &DST4);
    }
    let l4_off = f.len();
    let csum_offset = match spec.l4 {
        L4Spec::Tcp { .. } => 16,
        L4Spec::Udp => {
            let mut h = l4_hdr.clone();
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&h);
            6
        }
        L4Spec::Raw(_) => 2,
    };
    if !matches!(spec.l4, L4Spec::Udp) {
        f.extend_from_slice(&l4_hdr);
    }
    let payload_off = f.len();
    f.extend_from_slice(&spec.payload);
    if !matches!(spec.l4, L4Spec::Raw(_)) {
        let pseudo = fold16(word_sum(src) + word_sum(dst) + u32::from(proto) + l4_len as u32);
        f[l4_off + csum_offset..l4_off + csum_offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    }
    Built { frame: f, l3_off, l4_off, payload_off, csum_offset }
}

/// A plain (non-GSO, no NEEDS_CSUM) header.
pub(super) fn plain() -> VirtioNetHdr {
    VirtioNetHdr::default()
}
