//! Returning freed heap memory to the system.
//!
//! glibc keeps what a thread frees in its arena for reuse, so a one-off
//! peak (10,000 connections closed, a `nat ls` of all of them) would stay
//! in the daemon's RSS for good. Whoever frees a lot calls [`owe_trim`];
//! a background thread ([`spawn_trimmer`]) then asks the allocator to give
//! free pages back, off the packet path.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A trim is owed, and the trimmer's wake-up.
static OWED: Mutex<bool> = Mutex::new(false);
static WAKE: Condvar = Condvar::new();

/// How long the trimmer lets frees settle before trimming.
const SETTLE: Duration = Duration::from_millis(300);

/// Notes that a lot of memory was freed; the trimmer returns it soon.
pub fn owe_trim() {
    *OWED.lock().unwrap_or_else(|p| p.into_inner()) = true;
    WAKE.notify_one();
}

/// Starts the thread that trims the heap when a trim is owed.
pub fn spawn_trimmer() -> std::io::Result<()> {
    std::thread::Builder::new().name("trim".into()).stack_size(64 * 1024).spawn(|| {
        loop {
            let mut owed = OWED.lock().unwrap_or_else(|p| p.into_inner());
            while !*owed {
                owed = WAKE.wait(owed).unwrap_or_else(|p| p.into_inner());
            }
            *owed = false;
            drop(owed);
            std::thread::sleep(SETTLE);
            let released = trim_heap();
            tracing::debug!(released, "returned free heap memory to the system");
        }
    })?;
    Ok(())
}

/// Allocations from this size up get their own mapping, unmapped on free.
const MMAP_THRESHOLD: i32 = 256 * 1024;
/// Free memory above this at the top of an arena is returned on free.
const TRIM_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's thresholds for mapping and trimming, which are otherwise
/// raised at run time by every large block freed: after one `nat ls` of
/// 10,000 flows (a 4 MB reply) glibc would keep up to 8 MB free at the top
/// of each thread's arena for good, where `malloc_trim` cannot reach (it
/// trims only the main arena's top). Call once, before threads start.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt sets allocator parameters; it takes no pointers.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// Asks the C allocator to give free heap pages back to the system (glibc's
/// `malloc_trim`: the top of each arena and whole free pages inside it).
/// Returns whether any memory was released; a no-op elsewhere than glibc.
pub fn trim_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; it
        // takes no pointers from us.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Asks the CPU to start loading the cache line holding `value` into all
/// cache levels, without waiting for it. The forwarding decision hashes a
/// whole batch of MACs first and prefetches their FDB buckets with this, so
/// the memory latency of one frame's lookup overlaps with the others' (as
/// VPP and DPDK do). A hint only: it never faults and changes no state a
/// program can observe; on targets without a prefetch instruction it does
/// nothing.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` is unsafe only because it is a
        // `#[target_feature(enable = "sse")]` function; SSE is part of the
        // x86_64 baseline, and a prefetch never dereferences its pointer in a
        // way that can fault (here it is a valid reference anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = value;
    }
}

/// The page size the datapath's buffers are laid out for. Larger pages
/// (arm64's 16 or 64 KiB) only make a [`PageBlock`] more aligned than it
/// needs to be, never less.
pub const PAGE_SIZE: usize = 4096;

/// A zeroed block of memory that starts on a [`PAGE_SIZE`] boundary, for
/// buffers whose address modulo the page matters: on some CPUs a kernel
/// copy whose destination lies 1-15 bytes past its source modulo 4096 runs
/// several times slower (4K aliasing of loads behind stores), and a heap
/// block's address modulo 4096 depends on whatever was allocated before it.
/// Owns its memory like a `Box<[u8]>` and frees it on drop.
pub struct PageBlock {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: a PageBlock owns its memory exclusively (like Box<[u8]>); shared
// access only reads it, mutation needs `&mut`.
unsafe impl Send for PageBlock {}
// SAFETY: as above.
unsafe impl Sync for PageBlock {}

impl PageBlock {
    /// Allocates `len` (at least 1) zeroed bytes starting on a page
    /// boundary; aborts like `Box` when memory runs out.
    pub fn zeroed(len: usize) -> PageBlock {
        let layout = std::alloc::Layout::from_size_align(len.max(1), PAGE_SIZE).expect("block size overflows isize");
        // SAFETY: the layout's size is non-zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(ptr) else { std::alloc::handle_alloc_error(layout) };
        PageBlock { ptr, layout }
    }
}

impl std::ops::Deref for PageBlock {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `layout.size()` initialised (zeroed) bytes
        // that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl std::ops::DerefMut for PageBlock {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for PageBlock {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with exactly this layout
        // and is freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for PageBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBlock").field("len", &self.layout.size()).finish()
    }
}

/// The size of a transparent huge page on x86_64 and arm64 (with 4 KiB
/// base pages).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// A fixed-length table of `T` for data read at random on the packet path
/// (the FDB's buckets): from one huge page up it gets its own anonymous
/// mapping, aligned to [`HUGE_PAGE_SIZE`] and marked `MADV_HUGEPAGE`, so the
/// kernel backs it with transparent huge pages where it can (the system's
/// setting `madvise`, Debian's default, or `always`). Random lookups in an
/// 8 MiB table on 4 KiB pages miss the TLB on almost every access and each
/// costs a page walk on top of the cache miss; with 2 MiB pages the whole
/// table needs four TLB entries (DPDK and VPP keep their tables in huge
/// pages for the same reason). Smaller tables, or a kernel that refuses the
/// advice, are ordinary memory: the advice is a hint. Every element starts
/// as `T::default()`, written at allocation, so the memory is faulted in
/// then, not on the packet path.
pub struct HugeTable<T: Copy + Default> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
    /// The mapping's length, or 0 when the elements are a heap `Box<[T]>`.
    mapped: usize,
}

// SAFETY: a HugeTable owns its elements exclusively (like Box<[T]>); shared
// access only reads them, mutation needs `&mut`.
unsafe impl<T: Copy + Default + Send> Send for HugeTable<T> {}
// SAFETY: as above.
unsafe impl<T: Copy + Default + Sync> Sync for HugeTable<T> {}

impl<T: Copy + Default> HugeTable<T> {
    /// `len` elements, each `T::default()`; aborts like `Box` when memory
    /// runs out.
    pub fn new(len: usize) -> HugeTable<T> {
        // At most isize::MAX bytes, as for any allocation, so that the
        // rounding below and the mapping's extra page cannot overflow.
        let bytes = std::alloc::Layout::array::<T>(len).expect("table size overflows").size();
        if bytes < HUGE_PAGE_SIZE || std::mem::align_of::<T>() > HUGE_PAGE_SIZE {
            return Self::on_heap(len);
        }
        let mapped = bytes.next_multiple_of(HUGE_PAGE_SIZE);
        let Some(start) = map_aligned(mapped) else { return Self::on_heap(len) };
        let ptr = start.cast::<T>();
        for i in 0..len {
            // SAFETY: the mapping holds `mapped >= len * size_of::<T>()`
            // writable bytes from `ptr`, aligned for T (a huge page's
            // alignment exceeds T's, checked above); each element is
            // written once before any is read.
            unsafe { ptr.as_ptr().add(i).write(T::default()) };
        }
        HugeTable { ptr, len, mapped }
    }

    fn on_heap(len: usize) -> HugeTable<T> {
        let boxed: Box<[T]> = vec![T::default(); len].into_boxed_slice();
        let ptr = std::ptr::NonNull::new(Box::into_raw(boxed).cast::<T>()).expect("Box pointers are non-null");
        HugeTable { ptr, len, mapped: 0 }
    }

    /// Whether the elements live in their own huge-page-aligned mapping
    /// (advised `MADV_HUGEPAGE`) rather than on the heap.
    pub fn is_mapped(&self) -> bool {
        self.mapped != 0
    }
}

/// Maps `len` (a multiple of [`HUGE_PAGE_SIZE`]) bytes of anonymous memory
/// starting on a huge-page boundary and advises huge pages for them; `None`
/// when the kernel refuses the mapping.
fn map_aligned(len: usize) -> Option<std::ptr::NonNull<u8>> {
    // Map one huge page more than needed, then unmap what lies before the
    // first boundary and after the table.
    let over = len + HUGE_PAGE_SIZE;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let base = raw as usize;
    let start = base.next_multiple_of(HUGE_PAGE_SIZE);
    let (head, tail) = (start - base, base + over - (start + len));
    // SAFETY: both ranges lie inside the mapping just made (page-aligned:
    // the base is, and so are the boundary and `len`), outside the part
    // kept; madvise only hints about the part kept.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    std::ptr::NonNull::new(start as *mut u8)
}

impl<T: Copy + Default> std::ops::Deref for HugeTable<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised elements that live as
        // long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy + Default> std::ops::DerefMut for HugeTable<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy + Default> Drop for HugeTable<T> {
    fn drop(&mut self) {
        if self.mapped == 0 {
            // SAFETY: the pointer and length came from `Box::into_raw` of a
            // `Box<[T]>` in `on_heap`, freed once here.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len)) });
        } else {
            // SAFETY: `ptr..ptr + mapped` is the mapping `map_aligned` kept,
            // unmapped once here; T is Copy, so no element needs dropping.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped) };
        }
    }
}

impl<T: Copy + Default> std::fmt::Debug for HugeTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeTable").field("len", &self.len).field("mapped", &self.is_mapped()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_block_is_aligned_zeroed_and_writable() {
        for len in [1, 4095, 4096, 3 * 4096 + 52] {
            let mut block = PageBlock::zeroed(len);
            assert_eq!(block.as_ptr() as usize % PAGE_SIZE, 0, "len {len}");
            assert_eq!(block.len(), len);
            assert!(block.iter().all(|&b| b == 0));
            block[len - 1] = 7;
            assert_eq!(block[len - 1], 7);
        }
    }

    #[test]
    fn huge_tables_map_from_one_huge_page_up_and_start_at_default() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct Cell(u64, u32);
        impl Default for Cell {
            fn default() -> Cell {
                Cell(7, 9)
            }
        }
        for (len, mapped) in [(10, false), (HUGE_PAGE_SIZE / 16, true), (HUGE_PAGE_SIZE / 16 * 3 + 5, true)] {
            let mut table = HugeTable::<Cell>::new(len);
            assert_eq!((table.len(), table.is_mapped()), (len, mapped), "len {len}");
            if mapped {
                assert_eq!(table.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
            }
            assert!(table.iter().all(|c| *c == Cell(7, 9)));
            table[len - 1] = Cell(1, 2);
            assert_eq!(table[len - 1], Cell(1, 2));
        }
    }
}
