//! Receive buffers for one datapath batch.
//!
//! A batch owns a fixed set of large buffers (each fits a 64 KiB GSO frame or
//! a GRO train of UDP datagrams) and a list of frames that live in them. A
//! TAP read fills one buffer with a 12-byte virtio-net header and one frame;
//! a tunnel read may yield several frames from one buffer (UDP GRO). Frames
//! that came with a virtio-net header keep it just in front of the frame so a
//! TAP-to-TAP copy is a single contiguous write.

use std::ops::Range;

use crate::bridge::RxFrame;
use crate::offload::{self, ChecksumState};
use crate::port::PortId;
use crate::sys::tap::Tap;
use crate::wire::VirtioNetHdr;

/// Buffers per batch.
pub(crate) const BUFFERS: usize = 32;
/// Frames per batch (several may share a buffer).
pub(crate) const MAX_FRAMES: usize = 1024;
/// Length of the virtio-net header in front of TAP frames.
pub(crate) const HDR: usize = VirtioNetHdr::LEN;

/// One frame of the batch.
#[derive(Debug, Clone)]
pub(crate) struct RxEntry {
    /// Which buffer holds it.
    pub(crate) buf: usize,
    /// Where the Ethernet frame lies in that buffer.
    pub(crate) frame: Range<usize>,
    /// The port it arrived on.
    pub(crate) port: PortId,
    /// Its virtio-net header sits at `frame.start - HDR`.
    pub(crate) has_vnet_hdr: bool,
    /// The header says GSO (a super-frame to be segmented later).
    pub(crate) gso: bool,
    /// What is known of its TCP/UDP checksum: frames that came through an
    /// authenticated encrypted tunnel are as their sender made them, and
    /// their checksum may be partial.
    pub(crate) checksum: ChecksumState,
}

/// Buffers and the frames read into them.
pub(crate) struct RxBatch {
    bufs: Vec<Box<[u8]>>,
    used: usize,
    entries: Vec<RxEntry>,
    /// The buffer small frames are packed into, and how much of it is used.
    pack: Option<(usize, usize)>,
}

impl RxBatch {
    pub(crate) fn new() -> RxBatch {
        RxBatch {
            bufs: (0..BUFFERS).map(|_| vec![0u8; Tap::RECV_BUF_LEN].into_boxed_slice()).collect(),
            used: 0,
            entries: Vec::with_capacity(MAX_FRAMES),
            pack: None,
        }
    }

    /// Forgets every frame; the buffers are reused.
    pub(crate) fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
        self.pack = None;
    }

    /// Number of frames.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no frame is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when no buffer or frame slot is left.
    pub(crate) fn is_full(&self) -> bool {
        self.used == BUFFERS || self.entries.len() == MAX_FRAMES
    }

    /// Frames that may still be added.
    pub(crate) fn frames_left(&self) -> usize {
        MAX_FRAMES - self.entries.len()
    }

    /// Buffers not yet used, in order, with the index of the first.
    pub(crate) fn free_buffers(&mut self) -> (usize, &mut [Box<[u8]>]) {
        (self.used, &mut self.bufs[self.used..])
    }

    /// Marks `n` more buffers as used (after filling them from `free_buffers`).
    pub(crate) fn use_buffers(&mut self, n: usize) {
        self.used = (self.used + n).min(BUFFERS);
    }

    /// The next free buffer, marked used.
    pub(crate) fn take_buffer(&mut self) -> Option<(usize, &mut [u8])> {
        if self.is_full() {
            return None;
        }
        let index = self.used;
        self.used += 1;
        Some((index, &mut self.bufs[index]))
    }

    /// Gives back the buffer most recently taken (nothing was read into it).
    pub(crate) fn return_buffer(&mut self) {
        self.used = self.used.saturating_sub(1);
    }

    /// Adds a frame that lives in a buffer of this batch.
    pub(crate) fn push(&mut self, entry: RxEntry) -> bool {
        if self.entries.len() == MAX_FRAMES {
            return false;
        }
        self.entries.push(entry);
        true
    }

    /// Reads up to `limit` frames of at most `max_frame` bytes (virtio-net
    /// header included) from one port into one buffer, back to back, with
    /// `recv` (a device read into the slice it is given). Devices whose
    /// frames are at most one MTU (AF_XDP sockets) fill a batch this way
    /// with hundreds of small frames rather than one per 64 KiB buffer.
    /// Returns the frames read and the error that stopped the reads
    /// (`WouldBlock` once the device is drained); `None` when the buffer or
    /// the batch filled up first. Reads shorter than the header are counted
    /// in `short`.
    pub(crate) fn read_packed(
        &mut self,
        port: PortId,
        max_frame: usize,
        limit: usize,
        short: &mut u64,
        mut recv: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> (usize, Option<std::io::Error>) {
        if self.is_full() {
            return (0, None);
        }
        let buf = self.used;
        self.used += 1;
        let bytes = &mut self.bufs[buf];
        let mut used = 0;
        let mut read = 0;
        let mut stopped = None;
        while read < limit && self.entries.len() < MAX_FRAMES && bytes.len() - used >= max_frame {
            match recv(&mut bytes[used..]) {
                Ok(len) if len >= HDR => {
                    self.entries.push(RxEntry {
                        buf,
                        frame: used + HDR..used + len,
                        port,
                        has_vnet_hdr: true,
                        gso: false,
                        checksum: ChecksumState::Unverified,
                    });
                    // Keep the next frame's header 8-byte aligned.
                    used = (used + len).next_multiple_of(8);
                    read += 1;
                }
                Ok(_) => *short += 1,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        if read == 0 {
            self.used -= 1;
        }
        (read, stopped)
    }

    /// Copies a frame made inside the switch (e.g. by a gateway) into a
    /// fresh buffer, behind a zero virtio-net header.
    pub(crate) fn push_local(&mut self, port: PortId, frame: &[u8]) -> bool {
        if HDR + frame.len() > Tap::RECV_BUF_LEN || self.entries.len() == MAX_FRAMES {
            return false;
        }
        let Some((buf, bytes)) = self.take_buffer() else { return false };
        bytes[..HDR].fill(0);
        bytes[HDR..HDR + frame.len()].copy_from_slice(frame);
        self.push(RxEntry {
            buf,
            frame: HDR..HDR + frame.len(),
            port,
            has_vnet_hdr: true,
            gso: false,
            checksum: ChecksumState::Unverified,
        })
    }

    /// Copies a small frame made inside the switch (a TCP ACK, an ICMP
    /// error) behind a zero virtio-net header, packing many into one
    /// buffer.
    pub(crate) fn push_small(&mut self, port: PortId, frame: &[u8]) -> bool {
        let need = HDR + frame.len();
        if need > Tap::RECV_BUF_LEN || self.entries.len() == MAX_FRAMES {
            return false;
        }
        let (buf, used) = match self.pack {
            Some((buf, used)) if used + need <= Tap::RECV_BUF_LEN => (buf, used),
            _ => match self.take_buffer() {
                Some((buf, _)) => (buf, 0),
                None => return false,
            },
        };
        let bytes = &mut self.bufs[buf][used..used + need];
        bytes[..HDR].fill(0);
        bytes[HDR..].copy_from_slice(frame);
        self.pack = Some((buf, used + need));
        self.push(RxEntry {
            buf,
            frame: used + HDR..used + need,
            port,
            has_vnet_hdr: true,
            gso: false,
            checksum: ChecksumState::Unverified,
        })
    }

    /// Forgets frames `sorted` (indices in increasing order); the others
    /// keep their order. Their buffers stay used until the batch is cleared.
    pub(crate) fn remove_frames(&mut self, sorted: &[usize]) {
        let mut next = sorted.iter().peekable();
        let mut index = 0;
        self.entries.retain(|_| {
            let gone = next.next_if_eq(&&index).is_some();
            index += 1;
            !gone
        });
    }

    /// Bytes `range` of buffer `buf`, mutable (decryption works in place).
    pub(crate) fn buffer_mut(&mut self, buf: usize, range: Range<usize>) -> &mut [u8] {
        &mut self.bufs[buf][range]
    }

    /// The entry of frame `i`.
    pub(crate) fn entry(&self, i: usize) -> &RxEntry {
        &self.entries[i]
    }

    /// The Ethernet bytes of frame `i`.
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        let e = &self.entries[i];
        &self.bufs[e.buf][e.frame.clone()]
    }

    /// Frame `i` with its virtio-net header in front, if it came with one.
    pub(crate) fn with_vnet_hdr(&self, i: usize) -> Option<&[u8]> {
        let e = &self.entries[i];
        e.has_vnet_hdr.then(|| &self.bufs[e.buf][e.frame.start - HDR..e.frame.end])
    }

    /// The virtio-net header of frame `i`: its own, or for a frame without
    /// one, `NEEDS_CSUM` where its checksum is partial and all zero
    /// otherwise.
    pub(crate) fn vnet_hdr(&self, i: usize) -> VirtioNetHdr {
        match self.with_vnet_hdr(i) {
            Some(bytes) => VirtioNetHdr::parse(bytes).unwrap_or_default(),
            None if self.entries[i].checksum == ChecksumState::Partial => {
                offload::partial_checksum_hdr(self.frame(i)).unwrap_or_default()
            }
            None => VirtioNetHdr::default(),
        }
    }

    /// The Ethernet bytes of frame `i`, mutable (for in-place fixes).
    pub(crate) fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let e = &self.entries[i];
        &mut self.bufs[e.buf][e.frame.clone()]
    }

    /// The frames as the bridge sees them.
    pub(crate) fn frames(&self) -> impl Iterator<Item = RxFrame<'_>> {
        self.entries.iter().map(|e| RxFrame { port: e.port, bytes: &self.bufs[e.buf][e.frame.clone()], gso: e.gso })
    }
}
