//! The frame bookkeeping of one AF_XDP socket over its four rings and its
//! UMEM, without system calls (the socket decides when to kick the kernel):
//!
//! - **Receive**: the kernel writes a frame into chunks it took from the
//!   fill ring and posts one `(addr, len, options)` descriptor per chunk on
//!   the RX ring; with multi-buffer (`XDP_USE_SG`) a frame longer than a
//!   chunk is a chain whose descriptors but the last carry `XDP_PKT_CONTD`.
//!   [`Queues::recv`] copies the whole chain out and puts its chunks straight
//!   back on the fill ring. Both rings are handed back every
//!   [`RELEASE_EVERY`] descriptors and when the RX ring runs dry, so a burst
//!   costs two stores, not two per frame. A chain that is too long, or a
//!   descriptor outside the UMEM, is dropped and counted, never trusted.
//! - **Transmit**: [`Queues::send`] copies a frame into as many free chunks
//!   as it needs (a chain with `XDP_PKT_CONTD` when it is longer than one),
//!   optionally with a TX metadata area in front of the first asking the
//!   kernel to complete the L4 checksum (`XDP_TX_METADATA`,
//!   `XDP_TXMD_FLAGS_CHECKSUM`), and queues the descriptors; the socket
//!   submits the TX ring once per batch. Chunks come back through the
//!   completion ring, drained whenever free chunks run low and after each
//!   kick.
//!
//! Chunks are split once: the first [`RX_CHUNKS`] circulate between the
//! fill and RX rings, the rest between the free list, TX and completion.
//! Nothing is allocated after [`Queues::new`].

use super::ring::Ring;

/// Bytes per UMEM chunk: one page, so a chunk never straddles pages.
pub const CHUNK_SIZE: u32 = 4096;
/// Chunks in the UMEM (16 MiB per socket, all pinned by the kernel when the
/// UMEM is registered, so they count in the daemon's RSS).
pub const CHUNKS: u32 = 4096;
/// Chunks lent to the kernel for receiving.
pub const RX_CHUNKS: u32 = CHUNKS / 2;
/// Entries of the RX, TX and completion rings.
pub const RING_SIZE: u32 = 2048;
/// Entries of the fill ring: room for every receive chunk twice. The kernel
/// publishes how far it consumed the fill ring lazily (native XDP: when it
/// flushes a NAPI batch, just after it published the RX descriptors of the
/// chunks it took; it also runs on a cached view of the ring), so a chunk
/// read off the RX ring may go back on the fill ring while its old entry
/// still looks unconsumed. With one slot per chunk that push found the ring
/// full, and the chunk was lost for good (counted as a bad descriptor; seen
/// once in 11 million frames of an AF_XDP TCP run); each chunk is in the
/// ring at most twice (its old entry and its new one), so twice is enough.
pub const FILL_RING_SIZE: u32 = 2 * RX_CHUNKS;
/// Descriptors read before the RX and fill rings are handed back.
pub(crate) const RELEASE_EVERY: u32 = 32;
/// The headroom the kernel keeps in front of a received frame in a chunk
/// (`XDP_PACKET_HEADROOM`).
pub const KERNEL_HEADROOM: u32 = 256;
/// The longest frame one chunk receives; a longer one needs multi-buffer
/// descriptors.
pub const CHUNK_FRAME_LEN: usize = (CHUNK_SIZE - KERNEL_HEADROOM) as usize;
/// The longest frame received or sent as a chain: a 64 KiB IP packet with
/// its Ethernet and VLAN headers (what a TAP read holds, header aside).
pub const MAX_FRAME_LEN: usize = 65_536 + 64;
/// A received chain of more descriptors than this is broken (the kernel
/// splits at most [`MAX_FRAME_LEN`] bytes into chunks of at least
/// [`CHUNK_FRAME_LEN`]: 18).
pub const MAX_RX_DESCS: u32 = 32;
/// The most descriptors one transmitted frame may span: copy mode builds an
/// skb of a head and at most `MAX_SKB_FRAGS - 1` more pages (17 in all).
pub const MAX_TX_DESCS: usize = 17;
/// Bytes of TX metadata in front of every transmitted frame when the UMEM
/// was registered with it (`struct xsk_tx_metadata`: flags, then
/// `csum_start`, `csum_offset` and `launch_time`).
pub const TX_METADATA_LEN: u32 = 24;

/// `XDP_PKT_CONTD`: more descriptors of this frame follow.
pub(super) const XDP_PKT_CONTD: u32 = 1;
/// `XDP_TX_METADATA`: the TX metadata in front of this frame is valid.
pub(super) const XDP_TX_METADATA: u32 = 1 << 1;
/// `XDP_TXMD_FLAGS_CHECKSUM`: the kernel completes the checksum described.
pub(super) const XDP_TXMD_FLAGS_CHECKSUM: u64 = 1 << 1;

/// What went wrong with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxIssue {
    /// A descriptor lies outside the UMEM or its chunk, or a chain runs
    /// past [`MAX_RX_DESCS`]: dropped.
    BadDescriptor,
    /// The frame is longer than [`MAX_FRAME_LEN`]: dropped.
    TooLong,
    /// The frame does not fit the rest of the caller's buffer: left on the
    /// ring for the next call (with a buffer of [`MAX_FRAME_LEN`] bytes it
    /// fits).
    NoRoom,
}

/// Why a frame was not queued for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxIssue {
    /// No free chunk or TX slot for the whole frame (counted `tx_full`).
    Full,
    /// The frame needs more chunks than one frame may span (or more than
    /// one without multi-buffer), or is empty (counted `tx_too_long`).
    TooLong,
}

/// What the L4 checksum of a transmitted frame needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxChecksum {
    /// Nothing: the frame is sent as it is.
    #[default]
    AsIs,
    /// Software: store this (complete) checksum, big-endian, at this offset
    /// of the frame after copying it.
    Store {
        /// Offset of the checksum field in the frame.
        at: usize,
        /// The checksum.
        value: u16,
    },
    /// The kernel completes it from `start` (the field at `start + offset`
    /// holds the pseudo-header sum); only on a UMEM with TX metadata.
    Offload {
        /// Where the checksummed bytes start.
        start: u16,
        /// Where the field lies, from `start`.
        offset: u16,
    },
}

/// Counters of one socket's rings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Frames received.
    pub rx: u64,
    /// Frames queued for transmission.
    pub tx: u64,
    /// Of those, frames that spanned more than one chunk (either way).
    pub multi_buffer: u64,
    /// Transmissions refused for want of a free chunk or TX slot.
    pub tx_full: u64,
    /// Transmissions refused as too long ([`TxIssue::TooLong`]).
    pub tx_too_long: u64,
    /// Received frames dropped as broken ([`RxIssue::BadDescriptor`]).
    pub rx_bad: u64,
    /// Received frames dropped as too long ([`RxIssue::TooLong`]).
    pub rx_too_long: u64,
    /// Frames sent with the kernel completing their checksum.
    pub tx_csum_offloaded: u64,
    /// Completion-ring entries refused: an address outside the TX chunks,
    /// or of a chunk already free (a driver completing a frame twice). The
    /// chunk is not reused for them.
    pub tx_bad_completions: u64,
}

/// TX chunks, as bits of [`Queues`]'s map of free ones.
const TX_CHUNKS: usize = (CHUNKS - RX_CHUNKS) as usize;
const _: () = assert!(TX_CHUNKS.is_multiple_of(64), "the free map is whole words");

/// Which TX chunk (0 to [`TX_CHUNKS`] − 1) starts at UMEM offset `chunk`;
/// `None` for a receive chunk or an offset past the UMEM.
fn tx_chunk_index(chunk: u64) -> Option<usize> {
    let index = chunk.checked_sub(u64::from(RX_CHUNKS * CHUNK_SIZE))? / u64::from(CHUNK_SIZE);
    usize::try_from(index).ok().filter(|&i| i < TX_CHUNKS)
}

/// The four rings and the UMEM of one socket (see the module docs).
pub struct Queues {
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: *mut u8,
    umem_len: usize,
    /// TX chunks not lent to the kernel.
    free: Vec<u64>,
    /// The same as bits (by TX chunk index): the kernel's completions are
    /// checked against it, so a chunk is never free twice.
    free_map: [u64; TX_CHUNKS / 64],
    /// Where a transmitted frame starts in its chunk: after the TX
    /// metadata area when the UMEM has one.
    tx_offset: u32,
    /// Frames may span several chunks (`XDP_USE_SG`).
    multi_buffer: bool,
    /// The kernel honours [`TxChecksum::Offload`] on this socket.
    csum_offload: bool,
    counters: QueueCounters,
}

// SAFETY: the UMEM pointer is owned by the socket that owns these queues
// and moves with them; no other thread of this process touches it.
unsafe impl Send for Queues {}

impl Queues {
    /// Bookkeeping over rings and a UMEM of `umem_len` bytes at `umem`;
    /// puts the receive chunks on the fill ring (not yet submitted).
    /// `tx_metadata`: the UMEM was registered with [`TX_METADATA_LEN`].
    /// Single-chunk frames and software checksums until
    /// [`configure`](Self::configure).
    ///
    /// # Safety
    /// `umem` must point to `umem_len` (= [`CHUNKS`] × [`CHUNK_SIZE`])
    /// bytes that stay mapped while the queues exist, read and written
    /// only by the kernel and these queues.
    pub(crate) unsafe fn new(
        fill: Ring<u64>,
        comp: Ring<u64>,
        rx: Ring<libc::xdp_desc>,
        tx: Ring<libc::xdp_desc>,
        umem: *mut u8,
        umem_len: usize,
        tx_metadata: bool,
    ) -> Queues {
        let mut q = Queues {
            fill,
            comp,
            rx,
            tx,
            umem,
            umem_len,
            free: Vec::with_capacity(TX_CHUNKS),
            free_map: [u64::MAX; TX_CHUNKS / 64],
            tx_offset: if tx_metadata { TX_METADATA_LEN } else { 0 },
            multi_buffer: false,
            csum_offload: false,
            counters: QueueCounters::default(),
        };
        for chunk in 0..RX_CHUNKS {
            q.fill.push(u64::from(chunk * CHUNK_SIZE));
        }
        q.free.extend((RX_CHUNKS..CHUNKS).rev().map(|c| u64::from(c * CHUNK_SIZE)));
        q
    }

    /// The counters so far.
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }

    /// What the bound socket supports: frames spanning several chunks
    /// (`XDP_USE_SG`), the kernel completing checksums from TX metadata
    /// (only with a UMEM that has it).
    pub(crate) fn configure(&mut self, multi_buffer: bool, csum_offload: bool) {
        self.multi_buffer = multi_buffer;
        self.csum_offload = csum_offload && self.tx_offset > 0;
    }

    /// Whether frames may span several chunks.
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// Whether the kernel completes checksums ([`TxChecksum::Offload`]).
    pub fn csum_offload(&self) -> bool {
        self.csum_offload
    }

    /// A descriptor the kernel posted lies inside one chunk of the UMEM.
    fn desc_ok(&self, d: &libc::xdp_desc) -> bool {
        let (start, len) = (d.addr as usize, d.len as usize);
        let in_chunk = start % CHUNK_SIZE as usize + len <= CHUNK_SIZE as usize;
        in_chunk && start.checked_add(len).is_some_and(|end| end <= self.umem_len)
    }

    /// Puts the chunk of a received descriptor back on the fill ring.
    fn refill(&mut self, desc: &libc::xdp_desc) {
        // Aligned mode: any address inside a chunk names the chunk.
        let chunk = desc.addr & !u64::from(CHUNK_SIZE - 1);
        // Every RX chunk came off the fill ring, which has room for all of
        // them; a descriptor the kernel never lent (it does not happen)
        // would find the ring full and its chunk is not recycled.
        if chunk as usize >= self.umem_len || !self.fill.push(chunk) {
            self.counters.rx_bad += 1;
        }
    }

    /// Copies the next received frame (all of its chain) into `out`; `None`
    /// when the RX ring is empty (after handing both rings back). The
    /// frame's chunks go back on the fill ring at once, except when it does
    /// not fit `out` ([`RxIssue::NoRoom`]): then it stays on the ring.
    pub fn recv(&mut self, out: &mut [u8]) -> Option<Result<usize, RxIssue>> {
        let Some(first) = self.rx.peek(0) else {
            self.release_rx();
            return None;
        };
        // The chain: its descriptor count, length and soundness.
        let (mut n, mut total, mut broken, mut last) = (1u32, first.len as usize, !self.desc_ok(&first), first);
        while last.options & XDP_PKT_CONTD != 0 {
            if n == MAX_RX_DESCS {
                broken = true;
                break;
            }
            // The kernel publishes a frame's descriptors together; a chain
            // cut short by the producer index is not complete yet.
            let Some(d) = self.rx.peek(n) else {
                self.release_rx();
                return None;
            };
            broken |= !self.desc_ok(&d);
            total += d.len as usize;
            n += 1;
            last = d;
        }
        let mut result = if broken {
            Err(RxIssue::BadDescriptor)
        } else if total > MAX_FRAME_LEN {
            Err(RxIssue::TooLong)
        } else if total > out.len() {
            return Some(Err(RxIssue::NoRoom));
        } else {
            Ok(total)
        };
        let mut at = 0;
        for _ in 0..n {
            let Some(desc) = self.rx.pop() else { break };
            if result.is_ok() {
                // Checked again as read now (the ring is shared memory): a
                // descriptor is only used as the one that was checked.
                let (start, len) = (desc.addr as usize, desc.len as usize);
                match out.get_mut(at..at + len) {
                    Some(to) if self.desc_ok(&desc) => {
                        // SAFETY: `start..start + len` lies inside the UMEM
                        // (`desc_ok` on this very copy of the descriptor),
                        // and the kernel does not write a chunk it posted
                        // on the RX ring until it gets it back through the
                        // fill ring.
                        let piece = unsafe { std::slice::from_raw_parts(self.umem.add(start), len) };
                        to.copy_from_slice(piece);
                        at += len;
                    }
                    _ => result = Err(RxIssue::BadDescriptor),
                }
            }
            self.refill(&desc);
        }
        // A chain longer than any frame was cut at MAX_RX_DESCS: the rest of
        // it goes too (the kernel publishes a frame's descriptors together),
        // or it would be read as a frame of its own starting mid-packet.
        if broken && last.options & XDP_PKT_CONTD != 0 {
            while let Some(desc) = self.rx.pop() {
                self.refill(&desc);
                if desc.options & XDP_PKT_CONTD == 0 {
                    break;
                }
            }
        }
        match result {
            Ok(_) if n > 1 => {
                self.counters.rx += 1;
                self.counters.multi_buffer += 1;
            }
            Ok(_) => self.counters.rx += 1,
            Err(RxIssue::TooLong) => self.counters.rx_too_long += 1,
            Err(_) => self.counters.rx_bad += 1,
        }
        if self.rx.unreleased() >= RELEASE_EVERY {
            self.release_rx();
        }
        Some(result)
    }

    /// Hands read RX slots and refilled chunks back to the kernel.
    pub fn release_rx(&mut self) {
        if self.rx.unreleased() > 0 {
            self.rx.release();
        }
        if self.fill.unsubmitted() > 0 {
            self.fill.submit();
        }
    }

    /// The kernel waits for a wake-up before it takes fill-ring chunks again.
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// The kernel waits for a kick before it transmits.
    pub fn tx_needs_wakeup(&self) -> bool {
        self.tx.needs_wakeup()
    }

    /// Returns completed TX chunks to the free list; how many.
    pub fn drain_completions(&mut self) -> u32 {
        let mut n = 0;
        while let Some(addr) = self.comp.pop() {
            // The kernel echoes the addresses it was given; anything else
            // (outside the TX chunks, or a chunk already free) is refused,
            // as a received descriptor would be.
            let chunk = addr & !u64::from(CHUNK_SIZE - 1);
            match tx_chunk_index(chunk) {
                Some(i) if self.free_map[i / 64] & (1 << (i % 64)) == 0 => {
                    self.free_map[i / 64] |= 1 << (i % 64);
                    self.free.push(chunk);
                }
                _ => self.counters.tx_bad_completions += 1,
            }
            n += 1;
        }
        if n > 0 {
            self.comp.release();
        }
        n
    }

    /// Bytes of a frame one TX chunk carries.
    pub fn tx_chunk_capacity(&self) -> usize {
        (CHUNK_SIZE - self.tx_offset) as usize
    }

    /// Whether a frame of `len` bytes would fit free chunks and TX slots
    /// now (draining completions if that helps).
    pub fn tx_room(&mut self, len: usize) -> bool {
        let n = len.div_ceil(self.tx_chunk_capacity()).max(1);
        if self.free.len() < n {
            self.drain_completions();
        }
        self.free.len() >= n && self.tx.free(n as u32) as usize >= n
    }

    /// Copies `frame` into free chunks (one, or a chain) and queues its
    /// descriptors, with its checksum as `csum` says. Until the socket
    /// submits the ring, nothing is visible to the kernel.
    pub fn send(&mut self, frame: &[u8], csum: TxChecksum) -> Result<(), TxIssue> {
        let cap = self.tx_chunk_capacity();
        let n = frame.len().div_ceil(cap);
        let offload = matches!(csum, TxChecksum::Offload { .. });
        if n == 0 || n > MAX_TX_DESCS || (n > 1 && !self.multi_buffer) || (offload && !self.csum_offload) {
            self.counters.tx_too_long += 1;
            return Err(TxIssue::TooLong);
        }
        if !self.tx_room(frame.len()) {
            self.counters.tx_full += 1;
            return Err(TxIssue::Full);
        }
        for (i, piece) in frame.chunks(cap).enumerate() {
            let Some(chunk) = self.free.pop() else { unreachable!("tx_room counted the chunks") };
            if let Some(i) = tx_chunk_index(chunk) {
                self.free_map[i / 64] &= !(1 << (i % 64));
            }
            let addr = chunk + u64::from(self.tx_offset);
            // SAFETY: the chunk was on the free list, which holds only TX
            // chunks of the UMEM, each once (completions are checked against
            // the free map), so neither the kernel nor another borrow uses
            // it; `tx_offset + cap` is its size.
            let out = unsafe { std::slice::from_raw_parts_mut(self.umem.add(addr as usize), piece.len()) };
            out.copy_from_slice(piece);
            let mut options = if i + 1 < n { XDP_PKT_CONTD } else { 0 };
            match csum {
                TxChecksum::Store { at, value } => {
                    for (k, byte) in value.to_be_bytes().into_iter().enumerate() {
                        if let Some(b) = (at + k).checked_sub(i * cap).and_then(|o| out.get_mut(o)) {
                            *b = byte;
                        }
                    }
                }
                TxChecksum::Offload { start, offset } if i == 0 => {
                    let mut meta = [0u8; TX_METADATA_LEN as usize];
                    meta[..8].copy_from_slice(&XDP_TXMD_FLAGS_CHECKSUM.to_ne_bytes());
                    meta[8..10].copy_from_slice(&start.to_ne_bytes());
                    meta[10..12].copy_from_slice(&offset.to_ne_bytes());
                    // SAFETY: the metadata area is the first `tx_offset`
                    // bytes of the same free chunk.
                    let area = unsafe { std::slice::from_raw_parts_mut(self.umem.add(chunk as usize), meta.len()) };
                    area.copy_from_slice(&meta);
                    options |= XDP_TX_METADATA;
                }
                _ => {}
            }
            // `tx_room` saw a slot for every piece.
            self.tx.push(libc::xdp_desc { addr, len: piece.len() as u32, options });
        }
        self.counters.tx += 1;
        if n > 1 {
            self.counters.multi_buffer += 1;
        }
        if offload {
            self.counters.tx_csum_offloaded += 1;
        }
        Ok(())
    }

    /// Descriptors queued since the last [`submit_tx`](Self::submit_tx).
    pub fn tx_unsubmitted(&self) -> u32 {
        self.tx.unsubmitted()
    }

    /// Hands queued TX descriptors to the kernel.
    pub fn submit_tx(&mut self) {
        self.tx.submit();
    }

    /// TX descriptors the kernel has not taken yet.
    pub fn tx_in_flight(&mut self) -> u32 {
        self.tx.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ring::tests::HeapRing;
    use super::*;

    /// Queues over heap rings and a heap UMEM, with the kernel's side
    /// driven by hand.
    struct Fake {
        fill: HeapRing,
        /// Fill-ring entries the kernel took but has not published as
        /// consumed yet (see [`FILL_RING_SIZE`]).
        taken: u32,
        comp: HeapRing,
        rx: HeapRing,
        tx: HeapRing,
        umem: Vec<u8>,
    }

    /// A transmitted frame as the kernel reads it.
    #[derive(Debug, PartialEq, Eq)]
    struct Sent {
        frame: Vec<u8>,
        descs: usize,
        /// `(csum_start, csum_offset)` from valid TX metadata.
        offload: Option<(u16, u16)>,
    }

    impl Fake {
        fn new() -> (Fake, Queues) {
            Fake::with(false, false)
        }

        fn with(tx_metadata: bool, multi_buffer: bool) -> (Fake, Queues) {
            let mut f = Fake {
                fill: HeapRing::new::<u64>(FILL_RING_SIZE),
                taken: 0,
                comp: HeapRing::new::<u64>(RING_SIZE),
                rx: HeapRing::new::<libc::xdp_desc>(RING_SIZE),
                tx: HeapRing::new::<libc::xdp_desc>(RING_SIZE),
                umem: vec![0; (CHUNKS * CHUNK_SIZE) as usize],
            };
            let len = f.umem.len();
            // SAFETY: the heap UMEM outlives the queues in every test.
            let q = unsafe {
                Queues::new(
                    f.fill.ring(),
                    f.comp.ring(),
                    f.rx.ring(),
                    f.tx.ring(),
                    f.umem.as_mut_ptr(),
                    len,
                    tx_metadata,
                )
            };
            let mut q = q;
            q.configure(multi_buffer, tx_metadata);
            (f, q)
        }

        /// Posts a descriptor without publishing it.
        fn post(&mut self, desc: libc::xdp_desc, at: u32) {
            self.rx.set_entry(at, desc);
        }

        /// The kernel receives `frame`: takes chunks off the fill ring,
        /// writes the frame after the headroom in pieces of at most
        /// [`CHUNK_FRAME_LEN`] and posts the chain on the RX ring.
        fn deliver(&mut self, frame: &[u8]) -> bool {
            self.deliver_publishing(frame, true)
        }

        /// As [`Fake::deliver`]; `publish_fill`: false leaves the chunks it
        /// takes off the fill ring unpublished as consumed (as the kernel
        /// does until it flushes), true publishes them and any taken before.
        fn deliver_publishing(&mut self, frame: &[u8], publish_fill: bool) -> bool {
            let pieces: Vec<&[u8]> =
                if frame.is_empty() { vec![frame] } else { frame.chunks(CHUNK_FRAME_LEN).collect() };
            let (cons, prod) = (self.fill.cons() + self.taken, self.fill.prod());
            if prod.wrapping_sub(cons) < pieces.len() as u32 {
                return false;
            }
            let mut at = self.rx.prod();
            for (i, piece) in pieces.iter().enumerate() {
                let chunk: u64 = self.fill.entry(cons + i as u32);
                let addr = chunk + u64::from(KERNEL_HEADROOM);
                self.umem[addr as usize..addr as usize + piece.len()].copy_from_slice(piece);
                let options = if i + 1 < pieces.len() { XDP_PKT_CONTD } else { 0 };
                self.post(libc::xdp_desc { addr, len: piece.len() as u32, options }, at);
                at += 1;
            }
            if publish_fill {
                self.fill.set_cons(cons + pieces.len() as u32);
                self.taken = 0;
            } else {
                self.taken += pieces.len() as u32;
            }
            self.rx.set_prod(at);
            true
        }

        /// The kernel transmits every submitted TX descriptor: returns the
        /// frames (chains joined) and completes their chunks.
        fn transmit(&mut self) -> Vec<Sent> {
            let mut out = Vec::new();
            let mut current: Option<Sent> = None;
            while self.tx.cons() != self.tx.prod() {
                let at = self.tx.cons();
                let d: libc::xdp_desc = self.tx.entry(at);
                let sent = current.get_or_insert_with(|| Sent { frame: Vec::new(), descs: 0, offload: None });
                if sent.descs == 0 && d.options & XDP_TX_METADATA != 0 {
                    let m = &self.umem[d.addr as usize - TX_METADATA_LEN as usize..d.addr as usize];
                    let flags = u64::from_ne_bytes(m[..8].try_into().unwrap());
                    if flags & XDP_TXMD_FLAGS_CHECKSUM != 0 {
                        let start = u16::from_ne_bytes([m[8], m[9]]);
                        sent.offload = Some((start, u16::from_ne_bytes([m[10], m[11]])));
                    }
                }
                assert!(d.addr as usize % CHUNK_SIZE as usize + d.len as usize <= CHUNK_SIZE as usize);
                sent.frame.extend_from_slice(&self.umem[d.addr as usize..d.addr as usize + d.len as usize]);
                sent.descs += 1;
                if d.options & XDP_PKT_CONTD == 0 {
                    out.extend(current.take());
                }
                self.tx.set_cons(at + 1);
                let c = self.comp.prod();
                self.comp.set_entry(c, d.addr);
                self.comp.set_prod(c + 1);
            }
            assert!(current.is_none(), "a chain was left open");
            out
        }
    }

    fn frame_of(len: usize, seed: u32) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed) as u8).collect()
    }

    #[test]
    fn a_chunk_back_from_the_rx_ring_before_the_kernel_publishes_its_fill_consumer_is_kept() {
        let (mut k, mut q) = Fake::new();
        q.release_rx();
        let mut buf = [0u8; 2048];
        // Every receive chunk waits on the fill ring; the kernel takes and
        // fills 100 of them, publishing the RX descriptors but not (yet)
        // how far it consumed the fill ring, and the worker reads them.
        for round in 0..3u8 {
            for i in 0..100u8 {
                assert!(k.deliver_publishing(&[i ^ round; 60], false));
            }
            for i in 0..100u8 {
                assert_eq!(q.recv(&mut buf), Some(Ok(60)));
                assert_eq!(buf[..60], [i ^ round; 60]);
            }
            assert_eq!(q.recv(&mut buf), None);
            assert_eq!(q.counters().rx_bad, 0, "no chunk lost (round {round})");
        }
        // The kernel publishes at last: all 2,048 chunks are lent again,
        // 300 of them twice in the ring's view until then.
        assert!(k.deliver_publishing(b"y", true));
        assert_eq!(q.recv(&mut buf), Some(Ok(1)));
        assert_eq!(q.recv(&mut buf), None);
        assert_eq!(k.fill.prod().wrapping_sub(k.fill.cons()), RX_CHUNKS, "every receive chunk on the fill ring");
        let chunks: std::collections::BTreeSet<u64> =
            (k.fill.cons()..k.fill.prod()).map(|i| k.fill.entry::<u64>(i)).collect();
        assert_eq!(chunks.len(), RX_CHUNKS as usize, "each once");
    }

    #[test]
    fn received_frames_are_copied_out_and_their_chunks_refilled_in_batches() {
        let (mut k, mut q) = Fake::new();
        assert!(!k.deliver(b"x"), "nothing submitted to the fill ring yet");
        q.release_rx();
        assert_eq!(k.fill.prod(), RX_CHUNKS);
        let mut buf = [0u8; 2048];
        assert_eq!(q.recv(&mut buf), None);
        for i in 0..40u8 {
            assert!(k.deliver(&[i; 60]));
        }
        for i in 0..40u8 {
            assert_eq!(q.recv(&mut buf), Some(Ok(60)));
            assert_eq!(buf[..60], [i; 60]);
        }
        // 32 were handed back in one go; the other 8 when the ring ran dry.
        assert_eq!(k.rx.cons(), 32);
        assert_eq!(q.recv(&mut buf), None);
        assert_eq!(k.rx.cons(), 40);
        assert_eq!(k.fill.prod(), RX_CHUNKS + 40, "every chunk went back on the fill ring");
        assert_eq!(q.counters().rx, 40);
        // The receive chunks circulate for ever: many times the ring size.
        for round in 0..(3 * RX_CHUNKS) {
            assert!(k.deliver(&round.to_be_bytes()), "round {round}");
            assert_eq!(q.recv(&mut buf), Some(Ok(4)));
            assert_eq!(buf[..4], round.to_be_bytes());
        }
    }

    #[test]
    fn bad_descriptors_are_dropped_and_their_chunk_kept_and_a_short_buffer_waits() {
        let (mut k, mut q) = Fake::new();
        q.release_rx();
        // The kernel takes a chunk and posts a descriptor past the UMEM's end.
        k.fill.set_cons(k.fill.cons() + 1);
        let at = k.rx.prod();
        k.post(libc::xdp_desc { addr: u64::from(CHUNKS * CHUNK_SIZE) - 10, len: 60, options: 0 }, at);
        k.rx.set_prod(at + 1);
        assert!(k.deliver(&[7; 100]));
        let mut small = [0u8; 50];
        assert_eq!(q.recv(&mut small), Some(Err(RxIssue::BadDescriptor)));
        assert_eq!(q.recv(&mut small), Some(Err(RxIssue::NoRoom)));
        assert_eq!(q.recv(&mut small), Some(Err(RxIssue::NoRoom)), "still there");
        let mut big = [0u8; 100];
        assert_eq!(q.recv(&mut big), Some(Ok(100)));
        assert_eq!(big, [7; 100]);
        assert_eq!(q.counters().rx_bad, 1);
        assert_eq!(q.recv(&mut small), None);
        assert_eq!(k.fill.prod(), RX_CHUNKS + 2);
    }

    #[test]
    fn a_multi_buffer_chain_is_received_whole_and_all_its_chunks_refilled() {
        let (mut k, mut q) = Fake::with(false, true);
        q.release_rx();
        let jumbo = frame_of(9014, 1);
        let small = frame_of(60, 2);
        assert!(k.deliver(&jumbo) && k.deliver(&small) && k.deliver(&jumbo));
        assert_eq!(k.rx.prod(), 7, "three descriptors, one, three");
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        // The first chain does not fit the rest of a packed buffer: it waits.
        assert_eq!(q.recv(&mut buf[..5000]), Some(Err(RxIssue::NoRoom)));
        assert_eq!(q.recv(&mut buf), Some(Ok(9014)));
        assert_eq!(buf[..9014], jumbo[..]);
        assert_eq!(q.recv(&mut buf), Some(Ok(60)));
        assert_eq!(buf[..60], small[..]);
        assert_eq!(q.recv(&mut buf), Some(Ok(9014)));
        assert_eq!(buf[..9014], jumbo[..]);
        assert_eq!(q.recv(&mut buf), None);
        assert_eq!(k.rx.cons(), 7);
        assert_eq!(k.fill.prod(), RX_CHUNKS + 7, "every chunk of every chain refilled");
        let c = q.counters();
        assert_eq!((c.rx, c.multi_buffer, c.rx_bad), (3, 2, 0));
        // The largest frame a chain carries, 18 chunks.
        let max = frame_of(MAX_FRAME_LEN, 3);
        assert!(k.deliver(&max));
        assert_eq!(q.recv(&mut buf), Some(Ok(MAX_FRAME_LEN)));
        assert!(buf == max);
    }

    #[test]
    fn an_unfinished_chain_waits_and_broken_or_oversized_chains_are_dropped_whole() {
        let (mut k, mut q) = Fake::with(false, true);
        q.release_rx();
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        // Two descriptors of a chain published, the third not yet.
        assert!(k.deliver(&frame_of(9014, 4)));
        k.rx.set_prod(2);
        assert_eq!(q.recv(&mut buf), None, "not complete yet");
        k.rx.set_prod(3);
        assert_eq!(q.recv(&mut buf), Some(Ok(9014)));

        // A chain whose second descriptor points outside its chunk.
        let base = k.rx.prod();
        let chunk = |k: &Fake, i: u32| -> u64 { k.fill.entry(k.fill.cons() + i) };
        let (c0, c1) = (chunk(&k, 0), chunk(&k, 1));
        k.fill.set_cons(k.fill.cons() + 2);
        k.post(libc::xdp_desc { addr: c0 + 256, len: 3000, options: XDP_PKT_CONTD }, base);
        k.post(libc::xdp_desc { addr: c1 + 4000, len: 3000, options: 0 }, base + 1);
        k.rx.set_prod(base + 2);
        assert_eq!(q.recv(&mut buf), Some(Err(RxIssue::BadDescriptor)));

        // A chain that never ends within MAX_RX_DESCS descriptors.
        let base = k.rx.prod();
        for i in 0..MAX_RX_DESCS + 1 {
            let c = chunk(&k, i);
            k.post(libc::xdp_desc { addr: c + 256, len: 100, options: XDP_PKT_CONTD }, base + i);
        }
        k.fill.set_cons(k.fill.cons() + MAX_RX_DESCS + 1);
        k.rx.set_prod(base + MAX_RX_DESCS + 1);
        assert_eq!(q.recv(&mut buf), Some(Err(RxIssue::BadDescriptor)), "dropped whole");
        // Its 33rd descriptor went with it: it does not head another chain.
        assert_eq!(q.recv(&mut buf), None);
        assert!(k.deliver(&[9; 60]));
        assert_eq!(q.recv(&mut buf), Some(Ok(60)), "the next frame is itself alone");

        // A frame longer than MAX_FRAME_LEN.
        assert!(k.deliver(&frame_of(MAX_FRAME_LEN + 1, 5)));
        assert_eq!(q.recv(&mut buf), Some(Err(RxIssue::TooLong)));
        assert_eq!(q.recv(&mut buf), None);
        let c = q.counters();
        assert_eq!((c.rx, c.rx_bad, c.rx_too_long), (2, 2, 1));
        assert_eq!(k.fill.prod().wrapping_sub(k.fill.cons()), RX_CHUNKS, "no chunk lost");
    }

    #[test]
    fn transmit_lends_free_chunks_and_gets_them_back_through_completions() {
        let (mut k, mut q) = Fake::new();
        let tx_chunks = CHUNKS - RX_CHUNKS;
        for i in 0..tx_chunks {
            q.send(&i.to_be_bytes(), TxChecksum::AsIs).expect("a free chunk");
            if i % 100 == 99 {
                q.submit_tx();
            }
        }
        assert_eq!(q.send(&[1], TxChecksum::AsIs), Err(TxIssue::Full), "all TX chunks lent");
        assert_eq!(q.counters().tx_full, 1);
        q.submit_tx();
        assert_eq!(q.tx_in_flight(), RING_SIZE);
        let sent = k.transmit();
        assert_eq!(sent.len(), tx_chunks as usize);
        assert!(sent.iter().enumerate().all(|(i, f)| f.frame[..] == (i as u32).to_be_bytes() && f.descs == 1));
        // A chunk is reused only after its completion was drained.
        for _ in 0..10 {
            q.send(&[1], TxChecksum::AsIs).unwrap();
        }
        assert_eq!(q.drain_completions(), 0, "send drained them already");
        assert_eq!(q.tx_unsubmitted(), 10);
        q.submit_tx();
        assert_eq!(k.transmit().len(), 10);
        assert_eq!(q.counters().tx, u64::from(tx_chunks) + 10);
        // Without multi-buffer a frame must fit one chunk.
        assert_eq!(q.send(&frame_of(CHUNK_SIZE as usize + 1, 0), TxChecksum::AsIs), Err(TxIssue::TooLong));
        assert_eq!(q.send(&[], TxChecksum::AsIs), Err(TxIssue::TooLong));
        assert_eq!(q.counters().tx_too_long, 2);
    }

    #[test]
    fn completions_outside_the_tx_chunks_or_of_a_free_chunk_are_refused() {
        let (mut k, mut q) = Fake::new();
        q.send(&[7; 60], TxChecksum::AsIs).unwrap();
        q.submit_tx();
        let sent_from = {
            let c = k.comp.prod();
            k.transmit();
            k.comp.entry(c)
        };
        // Besides the real one: a receive chunk, an address past the UMEM,
        // and the sent chunk once more.
        for addr in [0, u64::from(CHUNKS * CHUNK_SIZE), sent_from] {
            let c = k.comp.prod();
            k.comp.set_entry(c, addr);
            k.comp.set_prod(c + 1);
        }
        assert_eq!(q.drain_completions(), 4);
        assert_eq!(q.counters().tx_bad_completions, 3);
        // Every TX chunk is free once, no more.
        for i in 0..TX_CHUNKS {
            assert_eq!(q.send(&[1], TxChecksum::AsIs), Ok(()), "chunk {i}");
        }
        assert_eq!(q.send(&[1], TxChecksum::AsIs), Err(TxIssue::Full));
    }

    #[test]
    fn long_frames_leave_as_chains_with_the_checksum_stored_or_offloaded() {
        let (mut k, mut q) = Fake::with(true, true);
        let cap = q.tx_chunk_capacity();
        assert_eq!(cap, (CHUNK_SIZE - TX_METADATA_LEN) as usize);
        let jumbo = frame_of(9014, 6);
        q.send(&jumbo, TxChecksum::Offload { start: 34, offset: 16 }).unwrap();
        // A software checksum stored across a chunk boundary.
        let mut stored = frame_of(2 * cap + 10, 7);
        q.send(&stored, TxChecksum::Store { at: cap - 1, value: 0xabcd }).unwrap();
        stored[cap - 1..cap + 1].copy_from_slice(&[0xab, 0xcd]);
        q.send(&[5; 64], TxChecksum::AsIs).unwrap();
        q.submit_tx();
        let sent = k.transmit();
        assert_eq!(
            sent,
            [
                Sent { frame: jumbo, descs: 3, offload: Some((34, 16)) },
                Sent { frame: stored, descs: 3, offload: None },
                Sent { frame: vec![5; 64], descs: 1, offload: None },
            ]
        );
        let c = q.counters();
        assert_eq!((c.tx, c.multi_buffer, c.tx_csum_offloaded), (3, 2, 1));
        // The longest chain, and one chunk more.
        assert_eq!(q.send(&frame_of(MAX_TX_DESCS * cap, 8), TxChecksum::AsIs), Ok(()));
        assert_eq!(q.send(&frame_of(MAX_TX_DESCS * cap + 1, 8), TxChecksum::AsIs), Err(TxIssue::TooLong));
        // A frame that needs more chunks than are free is refused whole.
        q.submit_tx();
        k.transmit();
        q.drain_completions();
        let free = (CHUNKS - RX_CHUNKS) as usize;
        for _ in 0..free - 2 {
            q.send(&[1], TxChecksum::AsIs).unwrap();
        }
        assert_eq!(q.send(&frame_of(3 * cap, 9), TxChecksum::AsIs), Err(TxIssue::Full));
        assert_eq!(q.send(&frame_of(2 * cap, 9), TxChecksum::AsIs), Ok(()));
        assert_eq!(q.tx_unsubmitted() as usize, free);
    }

    #[test]
    fn offload_needs_a_umem_with_tx_metadata() {
        let (_k, mut q) = Fake::with(false, true);
        assert!(!q.csum_offload());
        assert_eq!(q.send(&[0; 64], TxChecksum::Offload { start: 34, offset: 16 }), Err(TxIssue::TooLong));
    }
}
