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
}
