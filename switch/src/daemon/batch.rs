//! Receive buffers for one datapath batch.
//!
//! A batch owns a fixed set of large buffers (each fits a 64 KiB GSO frame or
//! a GRO train of UDP datagrams) and a list of frames that live in them. A
//! TAP read fills one buffer with a 12-byte virtio-net header and one frame;
//! a tunnel read may yield several frames from one buffer (UDP GRO). Frames
//! that came with a virtio-net header keep it just in front of the frame so a
//! TAP-to-TAP copy is a single contiguous write.
//!
//! The buffers sit in one page-aligned block ([`PageBlock`]), each at the
//! same offset into its first page, so the frame after a TAP buffer's
//! header starts at [`FRAME_PAGE_OFFSET`] (64) into a page whatever the
//! heap looked like. Why that offset: on some CPUs (this project's AMD EPYC)
//! a kernel copy whose destination lies 1-15 bytes past its source modulo
//! 4096 runs 3-10x slower, and a TAP write copies the frame into an skb
//! whose linear data begins `NET_SKB_PAD` (64) bytes into a cache-line
//! aligned head (or a 64-byte aligned page fragment for small frames) and
//! whose rest goes to page fragments starting at page offset 0. With the
//! frame at page offset 64 the first copy's destination minus source is a
//! multiple of 64, and the second's source starts `64 + hdr_len` bytes
//! into a page (a few hundred at most), so neither can alias. Heap boxes,
//! as before, put some buffers anywhere, including in that window.

use std::ops::Range;

use crate::bridge::RxFrame;
use crate::offload::{self, ChecksumState};
use crate::port::PortId;
use crate::sys::mem::{PAGE_SIZE, PageBlock};
use crate::sys::tap::Tap;
use crate::wire::VirtioNetHdr;

/// Buffers per batch.
pub(crate) const BUFFERS: usize = 32;
/// Frames per batch (several may share a buffer).
pub(crate) const MAX_FRAMES: usize = 1024;
/// Length of the virtio-net header in front of TAP frames.
pub(crate) const HDR: usize = VirtioNetHdr::LEN;
/// Where the frame of a TAP read or write lies in its page (see the module
/// docs): a cache line in, so the kernel's copies to and from skbs never
/// see a destination 1-15 bytes past the source modulo the page.
pub(crate) const FRAME_PAGE_OFFSET: usize = 64;
/// Where each buffer (its virtio-net header first) starts in its page.
const BUF_PAGE_OFFSET: usize = FRAME_PAGE_OFFSET - HDR;
/// Distance between two buffers in the block: whole pages, so every buffer
/// starts at the same page offset.
const STRIDE: usize = (BUF_PAGE_OFFSET + Tap::RECV_BUF_LEN).next_multiple_of(PAGE_SIZE);

/// One frame of the batch.
#[derive(Debug, Clone)]
pub(crate) struct RxEntry {
    /// Which buffer holds it.
    pub(crate) buf: usize,
    /// Where the Ethernet frame lies in that buffer.
    pub(crate) frame: Range<usize>,
    /// The port it arrived on.
    pub(crate) port: PortId,
    /// Its virtio-net header's bytes sit at `frame.start - HDR` (a write to
    /// a TAP takes header and frame in one contiguous copy).
    pub(crate) has_vnet_hdr: bool,
    /// Its virtio-net header, parsed once when the frame entered the batch
    /// (as quinn's `RecvMeta` carries a datagram's ECN and GRO stride):
    /// offloads, bridge and egress take this value and never parse the
    /// bytes again. All zero for a frame that came without one.
    pub(crate) hdr: VirtioNetHdr,
    /// What is known of its TCP/UDP checksum: frames that came through an
    /// authenticated encrypted tunnel are as their sender made them, and
    /// their checksum may be partial.
    pub(crate) checksum: ChecksumState,
    /// Whether another worker placed this frame here to be written by this
    /// one (a spread network's new connection, see `datapath::spread`).
    pub(crate) placed: Placed,
}

/// Whether a frame was handed to this worker to be written by it: the
/// opening of a TCP connection on a spread network, placed on the worker
/// that should carry the connection. Such a frame is not placed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Placed {
    /// Read from a device (or made by the switch).
    #[default]
    No,
    /// Handed over by a replica to its owner to be decided: its opening
    /// was not seen by the worker whose queue it came from, so it is not
    /// placed (that worker would not know where its SYN-ACK belongs).
    Handed,
    /// Placed by the network's owner, which already offered it to captures
    /// as received.
    ByOwner,
    /// Placed by a replica, which offered it to no capture.
    ByReplica,
}

/// Where buffer `buf` lies in the block.
fn span(buf: usize) -> Range<usize> {
    let start = buf * STRIDE + BUF_PAGE_OFFSET;
    start..start + Tap::RECV_BUF_LEN
}

impl RxEntry {
    /// A frame a port's device read into buffer `buf`: `len` bytes from
    /// the buffer's start, its virtio-net header first, `hdr` that header
    /// parsed (the frame's one parse).
    pub(crate) fn from_device(buf: usize, port: PortId, len: usize, hdr: VirtioNetHdr) -> RxEntry {
        RxEntry {
            buf,
            frame: HDR..len,
            port,
            has_vnet_hdr: true,
            hdr,
            checksum: ChecksumState::Unverified,
            placed: Placed::No,
        }
    }

    /// The header says GSO (a super-frame to be segmented later).
    pub(crate) fn gso(&self) -> bool {
        self.hdr.is_gso()
    }
}

/// Buffers and the frames read into them.
pub(crate) struct RxBatch {
    /// [`BUFFERS`] buffers of [`Tap::RECV_BUF_LEN`], [`STRIDE`] apart, the
    /// first at [`BUF_PAGE_OFFSET`].
    block: PageBlock,
    used: usize,
    entries: Vec<RxEntry>,
    /// The buffer small frames are packed into, and how much of it is used.
    pack: Option<(usize, usize)>,
}

impl RxBatch {
    pub(crate) fn new() -> RxBatch {
        RxBatch {
            block: PageBlock::zeroed(BUFFERS * STRIDE),
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
    pub(crate) fn free_buffers(&mut self) -> (usize, impl ExactSizeIterator<Item = &mut [u8]>) {
        let free = self.block[self.used * STRIDE..].chunks_exact_mut(STRIDE);
        (self.used, free.map(|chunk| &mut chunk[BUF_PAGE_OFFSET..BUF_PAGE_OFFSET + Tap::RECV_BUF_LEN]))
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
        Some((index, &mut self.block[span(index)]))
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
        let bytes = &mut self.block[span(buf)];
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
                        hdr: VirtioNetHdr::parse(&bytes[used..]).unwrap_or_default(),
                        checksum: ChecksumState::Unverified,
                        placed: Placed::No,
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
            hdr: VirtioNetHdr::default(),
            checksum: ChecksumState::Unverified,
            placed: Placed::No,
        })
    }

    /// Copies a frame another worker read (virtio-net header first, as a
    /// TAP delivers it) into a fresh buffer, its header parsed once here.
    /// `placed` says whether it was placed here to be written (see [`Placed`]).
    pub(crate) fn push_received(&mut self, port: PortId, bytes: &[u8], placed: Placed) -> bool {
        if bytes.len() < HDR || bytes.len() > Tap::RECV_BUF_LEN || self.entries.len() == MAX_FRAMES {
            return false;
        }
        let Some((buf, into)) = self.take_buffer() else { return false };
        into[..bytes.len()].copy_from_slice(bytes);
        let hdr = VirtioNetHdr::parse(bytes).unwrap_or_default();
        self.push(RxEntry { placed, ..RxEntry::from_device(buf, port, bytes.len(), hdr) })
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
        let bytes = &mut self.block[span(buf)][used..used + need];
        bytes[..HDR].fill(0);
        bytes[HDR..].copy_from_slice(frame);
        self.pack = Some((buf, used + need));
        self.push(RxEntry {
            buf,
            frame: used + HDR..used + need,
            port,
            has_vnet_hdr: true,
            hdr: VirtioNetHdr::default(),
            checksum: ChecksumState::Unverified,
            placed: Placed::No,
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
        &mut self.block[span(buf)][range]
    }

    /// The entry of frame `i`.
    pub(crate) fn entry(&self, i: usize) -> &RxEntry {
        &self.entries[i]
    }

    /// The Ethernet bytes of frame `i`.
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        let e = &self.entries[i];
        &self.block[span(e.buf)][e.frame.clone()]
    }

    /// Frame `i` with its virtio-net header in front, if it came with one.
    pub(crate) fn with_vnet_hdr(&self, i: usize) -> Option<&[u8]> {
        let e = &self.entries[i];
        e.has_vnet_hdr.then(|| &self.block[span(e.buf)][e.frame.start - HDR..e.frame.end])
    }

    /// The virtio-net header of frame `i`: its own (parsed when it entered
    /// the batch), or for a frame without one, `NEEDS_CSUM` where its
    /// checksum is partial and all zero otherwise.
    pub(crate) fn vnet_hdr(&self, i: usize) -> VirtioNetHdr {
        let e = &self.entries[i];
        if !e.has_vnet_hdr && e.checksum == ChecksumState::Partial {
            return offload::partial_checksum_hdr(self.frame(i)).unwrap_or_default();
        }
        e.hdr
    }

    /// The Ethernet bytes of frame `i`, mutable (for in-place fixes).
    pub(crate) fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let e = &self.entries[i];
        &mut self.block[span(e.buf)][e.frame.clone()]
    }

    /// The frames as the bridge sees them.
    pub(crate) fn frames(&self) -> impl Iterator<Item = RxFrame<'_>> {
        self.entries.iter().map(|e| RxFrame {
            port: e.port,
            bytes: &self.block[span(e.buf)][e.frame.clone()],
            gso: e.gso(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_offset(bytes: &[u8]) -> usize {
        bytes.as_ptr() as usize % PAGE_SIZE
    }

    #[test]
    fn every_buffer_puts_its_frame_a_cache_line_into_a_page() {
        let mut batch = RxBatch::new();
        let (first, free) = batch.free_buffers();
        assert_eq!((first, free.len()), (0, BUFFERS));
        let mut starts = Vec::new();
        for buf in free {
            assert_eq!(buf.len(), Tap::RECV_BUF_LEN);
            assert_eq!(page_offset(&buf[HDR..]), FRAME_PAGE_OFFSET);
            starts.push(buf.as_ptr() as usize);
        }
        assert!(starts.windows(2).all(|w| w[1] - w[0] >= Tap::RECV_BUF_LEN), "buffers do not overlap");
        // The same through the other ways of filling a batch.
        assert!(batch.push_local(PortId(1), &[0xab; 60]));
        let (buf, bytes) = batch.take_buffer().expect("a free buffer");
        assert_eq!((buf, page_offset(&bytes[HDR..])), (1, FRAME_PAGE_OFFSET));
        assert_eq!(page_offset(batch.frame(0)), FRAME_PAGE_OFFSET);
        assert_eq!(batch.frame(0), &[0xab; 60][..]);
        let with_hdr = batch.with_vnet_hdr(0).expect("a local frame has a header");
        assert_eq!(page_offset(with_hdr), FRAME_PAGE_OFFSET - HDR);
        batch.clear();
        let (first, mut free) = batch.free_buffers();
        assert_eq!(first, 0);
        assert_eq!(free.next().map(|b| page_offset(&b[HDR..])), Some(FRAME_PAGE_OFFSET));
    }

    #[test]
    fn the_kernels_skb_copies_cannot_alias() {
        // The copy into an skb's linear part: its destination is a multiple
        // of 64 into a page, so is the frame; their distance too.
        assert_eq!(FRAME_PAGE_OFFSET % 64, 0);
        // The copy of what lies past the headers (`hdr_len`, at most
        // Ethernet + VLAN + IPv6 with extension headers + TCP with options,
        // far below 1 KiB) into page fragments that begin at page offset 0:
        // destination minus source, modulo the page, stays out of 1..=15.
        for hdr_len in 14..1024 {
            let source = (FRAME_PAGE_OFFSET + hdr_len) % PAGE_SIZE;
            let distance = (PAGE_SIZE - source) % PAGE_SIZE;
            assert!(!(1..=15).contains(&distance), "hdr_len {hdr_len}");
        }
    }
}
