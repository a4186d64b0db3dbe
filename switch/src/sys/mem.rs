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
