//! The frame bookkeeping of one AF_XDP socket over its four rings and its
//! UMEM, without system calls (the socket decides when to kick the kernel):
//!
//! - **Receive**: the kernel writes a frame into a chunk it took from the
//!   fill ring and posts `(addr, len)` on the RX ring; [`Queues::recv`]
//!   copies the frame out and puts the chunk straight back on the fill
//!   ring. Both rings are handed back every [`RELEASE_EVERY`] frames and
//!   when the RX ring runs dry, so a burst costs two stores, not two per
//!   frame.
//! - **Transmit**: [`Queues::tx_chunk`] lends a free chunk to write a frame
//!   into, [`Queues::commit_tx`] queues its descriptor, and the socket
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
/// Chunks in the UMEM (16 MiB per socket, touched only as frames use them).
pub const CHUNKS: u32 = 4096;
/// Chunks lent to the kernel for receiving.
pub const RX_CHUNKS: u32 = CHUNKS / 2;
/// Entries of each ring.
pub const RING_SIZE: u32 = 2048;
/// Frames read before the RX and fill rings are handed back.
pub(crate) const RELEASE_EVERY: u32 = 32;
/// The headroom the kernel keeps in front of a received frame in a chunk
/// (`XDP_PACKET_HEADROOM`).
pub const KERNEL_HEADROOM: u32 = 256;
/// The longest frame a chunk carries (a frame larger than this needs
/// multi-buffer descriptors, which this socket does not use).
pub const MAX_FRAME_LEN: usize = (CHUNK_SIZE - KERNEL_HEADROOM) as usize;

/// What went wrong with a descriptor the kernel posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxIssue {
    /// The frame lies outside the UMEM or is longer than a chunk: dropped.
    BadDescriptor,
    /// The frame does not fit the caller's buffer: dropped.
    TooLong,
}

/// Counters of one socket's rings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Frames received.
    pub rx: u64,
    /// Frames queued for transmission.
    pub tx: u64,
    /// Transmissions refused for want of a free chunk or TX slot.
    pub tx_full: u64,
    /// Received descriptors dropped ([`RxIssue`]).
    pub rx_bad: u64,
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
    counters: QueueCounters,
}

// SAFETY: the UMEM pointer is owned by the socket that owns these queues
// and moves with them; no other thread of this process touches it.
unsafe impl Send for Queues {}

impl Queues {
    /// Bookkeeping over rings and a UMEM of `umem_len` bytes at `umem`;
    /// puts the receive chunks on the fill ring (not yet submitted).
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
    ) -> Queues {
        let mut q = Queues {
            fill,
            comp,
            rx,
            tx,
            umem,
            umem_len,
            free: Vec::with_capacity((CHUNKS - RX_CHUNKS) as usize),
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

    /// Copies the next received frame into `out`; `None` when the RX ring
    /// is empty (after handing both rings back). The frame's chunk goes
    /// back on the fill ring at once.
    pub fn recv(&mut self, out: &mut [u8]) -> Option<Result<usize, RxIssue>> {
        let Some(desc) = self.rx.pop() else {
            self.release_rx();
            return None;
        };
        let (start, len) = (desc.addr as usize, desc.len as usize);
        let result = if start.checked_add(len).is_none_or(|end| end > self.umem_len) || len > MAX_FRAME_LEN {
            Err(RxIssue::BadDescriptor)
        } else if len > out.len() {
            Err(RxIssue::TooLong)
        } else {
            // SAFETY: `start..start + len` lies inside the UMEM (checked
            // above), and the kernel does not write a chunk it posted on the
            // RX ring until it gets it back through the fill ring.
            let frame = unsafe { std::slice::from_raw_parts(self.umem.add(start), len) };
            out[..len].copy_from_slice(frame);
            Ok(len)
        };
        match result {
            Ok(_) => self.counters.rx += 1,
            Err(_) => self.counters.rx_bad += 1,
        }
        // Aligned mode: any address inside a chunk names the chunk.
        let chunk = desc.addr & !u64::from(CHUNK_SIZE - 1);
        // Every RX chunk came off the fill ring, which has room for all of
        // them; a descriptor the kernel never lent (it does not happen) would
        // find the ring full and its chunk is not recycled.
        if !self.fill.push(chunk) {
            self.counters.rx_bad += 1;
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
            self.free.push(addr & !u64::from(CHUNK_SIZE - 1));
            n += 1;
        }
        if n > 0 {
            self.comp.release();
        }
        n
    }

    /// A free chunk to write a frame of up to [`CHUNK_SIZE`] bytes into, and
    /// its address; `None` (counted) when every TX chunk or slot is taken.
    /// Until [`commit_tx`](Self::commit_tx) the chunk stays free.
    pub fn tx_chunk(&mut self) -> Option<(u64, &mut [u8])> {
        if self.free.is_empty() {
            self.drain_completions();
        }
        let (Some(&addr), true) = (self.free.last(), self.tx.free(1) > 0) else {
            self.counters.tx_full += 1;
            return None;
        };
        // SAFETY: `addr` is a chunk of the UMEM that is on the free list, so
        // neither the kernel nor another borrow uses it.
        let chunk = unsafe { std::slice::from_raw_parts_mut(self.umem.add(addr as usize), CHUNK_SIZE as usize) };
        Some((addr, chunk))
    }

    /// Queues the frame of `len` bytes written into the chunk at `addr` (the
    /// last one [`tx_chunk`](Self::tx_chunk) lent) for transmission.
    pub fn commit_tx(&mut self, addr: u64, len: u32) {
        debug_assert_eq!(self.free.last(), Some(&addr));
        if self.tx.push(libc::xdp_desc { addr, len, options: 0 }) {
            self.free.pop();
            self.counters.tx += 1;
        }
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
        comp: HeapRing,
        rx: HeapRing,
        tx: HeapRing,
        umem: Vec<u8>,
    }

    impl Fake {
        fn new() -> (Fake, Queues) {
            let mut f = Fake {
                fill: HeapRing::new::<u64>(RING_SIZE),
                comp: HeapRing::new::<u64>(RING_SIZE),
                rx: HeapRing::new::<libc::xdp_desc>(RING_SIZE),
                tx: HeapRing::new::<libc::xdp_desc>(RING_SIZE),
                umem: vec![0; (CHUNKS * CHUNK_SIZE) as usize],
            };
            let len = f.umem.len();
            // SAFETY: the heap UMEM outlives the queues in every test.
            let q = unsafe {
                Queues::new(f.fill.ring(), f.comp.ring(), f.rx.ring(), f.tx.ring(), f.umem.as_mut_ptr(), len)
            };
            (f, q)
        }

        /// The kernel receives `frame`: takes a chunk off the fill ring,
        /// writes it after the headroom and posts it on the RX ring.
        fn deliver(&mut self, frame: &[u8]) -> bool {
            let (cons, prod) = (self.fill.cons(), self.fill.prod());
            if cons == prod {
                return false;
            }
            let chunk: u64 = self.fill.entry(cons);
            self.fill.set_cons(cons + 1);
            let addr = chunk + u64::from(KERNEL_HEADROOM);
            self.umem[addr as usize..addr as usize + frame.len()].copy_from_slice(frame);
            let at = self.rx.prod();
            self.rx.set_entry(at, libc::xdp_desc { addr, len: frame.len() as u32, options: 0 });
            self.rx.set_prod(at + 1);
            true
        }

        /// The kernel transmits every submitted TX descriptor: returns the
        /// frames and completes their chunks.
        fn transmit(&mut self) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            while self.tx.cons() != self.tx.prod() {
                let at = self.tx.cons();
                let d: libc::xdp_desc = self.tx.entry(at);
                out.push(self.umem[d.addr as usize..d.addr as usize + d.len as usize].to_vec());
                self.tx.set_cons(at + 1);
                let c = self.comp.prod();
                self.comp.set_entry(c, d.addr);
                self.comp.set_prod(c + 1);
            }
            out
        }
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
    fn bad_descriptors_and_short_buffers_are_dropped_and_their_chunk_kept() {
        let (mut k, mut q) = Fake::new();
        q.release_rx();
        // The kernel takes a chunk and posts a descriptor past the UMEM's end.
        k.fill.set_cons(k.fill.cons() + 1);
        let at = k.rx.prod();
        k.rx.set_entry(at, libc::xdp_desc { addr: (CHUNKS * CHUNK_SIZE) as u64 - 10, len: 60, options: 0 });
        k.rx.set_prod(at + 1);
        assert!(k.deliver(&[7; 100]));
        let mut small = [0u8; 50];
        assert_eq!(q.recv(&mut small), Some(Err(RxIssue::BadDescriptor)));
        assert_eq!(q.recv(&mut small), Some(Err(RxIssue::TooLong)));
        assert_eq!(q.counters().rx_bad, 2);
        assert_eq!(q.recv(&mut small), None);
        assert_eq!(k.fill.prod(), RX_CHUNKS + 2);
    }

    #[test]
    fn transmit_lends_free_chunks_and_gets_them_back_through_completions() {
        let (mut k, mut q) = Fake::new();
        let tx_chunks = CHUNKS - RX_CHUNKS;
        for i in 0..tx_chunks {
            let (addr, chunk) = q.tx_chunk().expect("a free chunk");
            chunk[..4].copy_from_slice(&i.to_be_bytes());
            q.commit_tx(addr, 4);
            if i % 100 == 99 {
                q.submit_tx();
            }
        }
        assert!(q.tx_chunk().is_none(), "all TX chunks lent");
        assert_eq!(q.counters().tx_full, 1);
        q.submit_tx();
        assert_eq!(q.tx_in_flight(), RING_SIZE);
        let sent = k.transmit();
        assert_eq!(sent.len(), tx_chunks as usize);
        assert!(sent.iter().enumerate().all(|(i, f)| f[..] == (i as u32).to_be_bytes()));
        // A chunk is reused only after its completion was drained.
        assert!(q.tx_chunk().is_some());
        assert_eq!(q.drain_completions(), 0, "tx_chunk drained them already");
        for _ in 0..10 {
            let (addr, chunk) = q.tx_chunk().unwrap();
            chunk[0] = 1;
            q.commit_tx(addr, 1);
        }
        assert_eq!(q.tx_unsubmitted(), 10);
        q.submit_tx();
        assert_eq!(k.transmit().len(), 10);
        assert_eq!(q.counters().tx, u64::from(tx_chunks) + 10);
    }
}
