//! One AF_XDP ring: a power-of-two array of descriptors with a producer and
//! a consumer index that the kernel and the process share through `mmap`.
//!
//! The side that produces (the process for the fill and TX rings) owns the
//! producer index and only reads the consumer index; the other side the
//! other way round. Each side keeps cached copies of both indices and
//! touches the shared ones only when its cache runs out (a refresh, with
//! `Acquire`) or when it hands a whole batch over (one `Release` store), as
//! libxdp's `xsk_ring_prod__reserve`/`__submit` and `xsk_ring_cons__peek`/
//! `__release` do. Indices are free-running `u32`s: `prod - cons` (wrapping)
//! is the number of filled entries even across the wrap at 2^32.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a ring's parts lie in its mapping (the kernel's `xdp_ring_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingOffsets {
    /// Byte offset of the producer index.
    pub(crate) producer: usize,
    /// Byte offset of the consumer index.
    pub(crate) consumer: usize,
    /// Byte offset of the flags word (`XDP_RING_NEED_WAKEUP`).
    pub(crate) flags: usize,
    /// Byte offset of the first descriptor.
    pub(crate) desc: usize,
}

/// A ring over memory that outlives it (the owner of the mapping keeps
/// both alive together; see [`super::XskSocket`]).
pub(crate) struct Ring<T: Copy> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    /// Our view of the producer index (exact on the producing side).
    cached_prod: u32,
    /// Our view of the consumer index (exact on the consuming side).
    cached_cons: u32,
}

// SAFETY: a ring is plain pointers into a mapping that its owner keeps
// alive and moves together with it; nothing is shared with another thread
// of this process (the kernel synchronises through the atomics).
unsafe impl<T: Copy + Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// A ring of `size` entries (a power of two) laid out at `offsets` in
    /// the memory starting at `base`.
    ///
    /// # Safety
    /// `base` must point to at least `offsets.desc + size * size_of::<T>()`
    /// bytes (and past each index and the flags word), suitably aligned,
    /// that stay mapped and are accessed only through this ring (and the
    /// kernel) for as long as the ring exists.
    pub(crate) unsafe fn new(base: NonNull<u8>, offsets: RingOffsets, size: u32) -> Ring<T> {
        debug_assert!(size.is_power_of_two());
        // SAFETY: the caller guarantees that every offset lies inside the mapping.
        let at = |off: usize| unsafe { base.add(off) };
        let producer = at(offsets.producer).cast::<AtomicU32>();
        let consumer = at(offsets.consumer).cast::<AtomicU32>();
        let mut ring = Ring {
            producer,
            consumer,
            flags: at(offsets.flags).cast::<AtomicU32>(),
            descs: at(offsets.desc).cast::<T>(),
            mask: size - 1,
            cached_prod: 0,
            cached_cons: 0,
        };
        ring.cached_prod = ring.producer().load(Ordering::Relaxed);
        ring.cached_cons = ring.consumer().load(Ordering::Relaxed);
        ring
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: valid and aligned for the ring's life (see `new`).
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    /// Entries in the ring.
    pub(crate) fn size(&self) -> u32 {
        self.mask + 1
    }

    /// The kernel asks to be woken (`XDP_RING_NEED_WAKEUP`) before it
    /// looks at this ring again.
    pub(crate) fn needs_wakeup(&self) -> bool {
        // The producer index stored just before (`submit`) must be visible
        // before the flag is read, or the kernel may set the flag after
        // looking at the old index and a wake-up be missed: a store then a
        // load may be reordered even on x86 without a full fence.
        std::sync::atomic::fence(Ordering::SeqCst);
        // SAFETY: as above.
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producing side (fill, TX) ----------------------------------------

    /// Free slots, refreshing the consumer index only when fewer than
    /// `wanted` are known to be free.
    pub(crate) fn free(&mut self, wanted: u32) -> u32 {
        let free = self.size() - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= wanted {
            return free;
        }
        self.cached_cons = self.consumer().load(Ordering::Acquire);
        self.size() - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes `desc` into the next slot (not yet visible to the kernel);
    /// false when the ring is full.
    pub(crate) fn push(&mut self, desc: T) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        let slot = (self.cached_prod & self.mask) as usize;
        // SAFETY: `slot` is inside the descriptor array, and a free slot is
        // not read by the kernel until the producer index passes it.
        unsafe { self.descs.add(slot).write(desc) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
        true
    }

    /// Entries pushed but not yet handed over.
    pub(crate) fn unsubmitted(&self) -> u32 {
        self.cached_prod.wrapping_sub(self.producer().load(Ordering::Relaxed))
    }

    /// Hands every pushed entry over (one `Release` store).
    pub(crate) fn submit(&mut self) {
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    /// Entries handed over that the kernel has not consumed yet.
    pub(crate) fn in_flight(&mut self) -> u32 {
        self.cached_cons = self.consumer().load(Ordering::Acquire);
        self.producer().load(Ordering::Relaxed).wrapping_sub(self.cached_cons)
    }

    // ---- consuming side (RX, completion) ----------------------------------

    /// Entries ready to read, refreshing the producer index only when none
    /// is known.
    pub(crate) fn available(&mut self) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready > 0 {
            return ready;
        }
        self.cached_prod = self.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Reads the next entry; `None` when the ring is empty. The slot goes
    /// back to the kernel at the next [`release`](Self::release).
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.available() == 0 {
            return None;
        }
        let slot = (self.cached_cons & self.mask) as usize;
        // SAFETY: `slot` is inside the descriptor array, and the kernel does
        // not write an entry the consumer index has not passed.
        let desc = unsafe { self.descs.add(slot).read() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        Some(desc)
    }

    /// The entry `n` places after the next one to read, without taking it;
    /// `None` when the kernel has not produced it yet.
    pub(crate) fn peek(&mut self, n: u32) -> Option<T> {
        if self.available() <= n {
            self.cached_prod = self.producer().load(Ordering::Acquire);
            if self.cached_prod.wrapping_sub(self.cached_cons) <= n {
                return None;
            }
        }
        let slot = (self.cached_cons.wrapping_add(n) & self.mask) as usize;
        // SAFETY: as in `pop`: the slot is inside the array and produced.
        Some(unsafe { self.descs.add(slot).read() })
    }

    /// Entries read but not yet given back.
    pub(crate) fn unreleased(&self) -> u32 {
        self.cached_cons.wrapping_sub(self.consumer().load(Ordering::Relaxed))
    }

    /// Gives every read slot back (one `Release` store).
    pub(crate) fn release(&mut self) {
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ring's shared memory on the heap, with a hand-driven "kernel" side,
    /// so the ring logic is tested without AF_XDP (and without root).
    pub(crate) struct HeapRing {
        mem: Box<[u64]>,
        size: u32,
    }

    pub(crate) const OFFSETS: RingOffsets = RingOffsets { producer: 0, consumer: 64, flags: 128, desc: 192 };

    impl HeapRing {
        pub(crate) fn new<T: Copy>(size: u32) -> HeapRing {
            let bytes = OFFSETS.desc + size as usize * size_of::<T>();
            HeapRing { mem: vec![0u64; bytes.div_ceil(8)].into_boxed_slice(), size }
        }

        pub(crate) fn ring<T: Copy>(&mut self) -> Ring<T> {
            let base = NonNull::new(self.mem.as_mut_ptr().cast::<u8>()).unwrap();
            // SAFETY: the heap block is large enough (see `new`), 8-aligned,
            // and outlives the ring in every test.
            unsafe { Ring::new(base, OFFSETS, self.size) }
        }

        fn word(&self, off: usize) -> &AtomicU32 {
            // SAFETY: in bounds and aligned; the test is single-threaded.
            unsafe { &*self.mem.as_ptr().cast::<u8>().add(off).cast::<AtomicU32>() }
        }

        /// The kernel's producer index.
        pub(crate) fn prod(&self) -> u32 {
            self.word(OFFSETS.producer).load(Ordering::Acquire)
        }

        /// The kernel's consumer index.
        pub(crate) fn cons(&self) -> u32 {
            self.word(OFFSETS.consumer).load(Ordering::Acquire)
        }

        pub(crate) fn set_prod(&self, v: u32) {
            self.word(OFFSETS.producer).store(v, Ordering::Release)
        }

        pub(crate) fn set_cons(&self, v: u32) {
            self.word(OFFSETS.consumer).store(v, Ordering::Release)
        }

        pub(crate) fn set_flags(&self, v: u32) {
            self.word(OFFSETS.flags).store(v, Ordering::Release)
        }

        /// Entry `i` (modulo the size) as the kernel sees it.
        pub(crate) fn entry<T: Copy>(&self, i: u32) -> T {
            let slot = (i & (self.size - 1)) as usize;
            // SAFETY: in bounds.
            unsafe { self.mem.as_ptr().cast::<u8>().add(OFFSETS.desc).cast::<T>().add(slot).read() }
        }

        pub(crate) fn set_entry<T: Copy>(&mut self, i: u32, v: T) {
            let slot = (i & (self.size - 1)) as usize;
            // SAFETY: in bounds.
            unsafe { self.mem.as_mut_ptr().cast::<u8>().add(OFFSETS.desc).cast::<T>().add(slot).write(v) }
        }
    }

    #[test]
    fn producer_entries_are_invisible_until_submitted_and_stop_when_full() {
        let mut mem = HeapRing::new::<u64>(4);
        let mut ring = mem.ring::<u64>();
        for v in 10..14 {
            assert!(ring.push(v));
        }
        assert!(!ring.push(99), "four slots, four entries");
        assert_eq!(mem.prod(), 0, "nothing handed over before submit");
        assert_eq!(ring.unsubmitted(), 4);
        ring.submit();
        assert_eq!(mem.prod(), 4);
        assert_eq!((0..4).map(|i| mem.entry::<u64>(i)).collect::<Vec<_>>(), [10, 11, 12, 13]);
        // The kernel consumes two: two slots free again, the new ones wrap.
        mem.set_cons(2);
        assert_eq!(ring.free(1), 2);
        assert!(ring.push(14) && ring.push(15) && !ring.push(16));
        ring.submit();
        assert_eq!(ring.in_flight(), 4);
        assert_eq!([mem.entry::<u64>(4), mem.entry::<u64>(5)], [14, 15]);
    }

    #[test]
    fn consumer_reads_what_the_kernel_produced_and_releases_in_one_store() {
        let mut mem = HeapRing::new::<libc::xdp_desc>(8);
        let mut ring = mem.ring::<libc::xdp_desc>();
        assert!(ring.pop().is_none());
        for i in 0..3u32 {
            mem.set_entry(i, libc::xdp_desc { addr: u64::from(i) * 4096, len: 60 + i, options: 0 });
        }
        mem.set_prod(3);
        let lens: Vec<u32> = std::iter::from_fn(|| ring.pop()).map(|d| d.len).collect();
        assert_eq!(lens, [60, 61, 62]);
        assert_eq!(mem.cons(), 0, "slots stay the process's until released");
        assert_eq!(ring.unreleased(), 3);
        ring.release();
        assert_eq!(mem.cons(), 3);
        assert!(!ring.needs_wakeup());
        mem.set_flags(libc::XDP_RING_NEED_WAKEUP);
        assert!(ring.needs_wakeup());
    }

    #[test]
    fn indices_wrap_at_two_to_the_32() {
        let mut mem = HeapRing::new::<u64>(4);
        mem.set_prod(u32::MAX - 1);
        mem.set_cons(u32::MAX - 1);
        let mut ring = mem.ring::<u64>();
        for v in 0..4 {
            assert!(ring.push(v), "entry {v}");
        }
        assert!(!ring.push(4));
        ring.submit();
        assert_eq!(mem.prod(), 2, "wrapped past 2^32");
        mem.set_cons(1);
        assert_eq!(ring.free(4), 3);
        // The consuming side across the wrap too.
        let mut rx_mem = HeapRing::new::<u64>(4);
        rx_mem.set_prod(u32::MAX);
        rx_mem.set_cons(u32::MAX);
        let mut rx = rx_mem.ring::<u64>();
        rx_mem.set_entry(u32::MAX, 7u64);
        rx_mem.set_entry(0, 8u64);
        rx_mem.set_prod(1);
        assert_eq!([rx.pop(), rx.pop(), rx.pop()], [Some(7), Some(8), None]);
        rx.release();
        assert_eq!(rx_mem.cons(), 1);
    }
}
