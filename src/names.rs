//! Root detection and unique names for the kernel objects tests create.

use std::sync::atomic::{AtomicU32, Ordering};

/// True if the test may proceed as root. Without root: panics when `CI` is
/// set (CI must really run these tests), otherwise prints a loud SKIP line
/// and returns false.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: needs root, and CI is set");
    eprintln!("SKIP {test}: needs root ==================================");
    false
}

/// A prefix unique to this process and call, `vt<pid, 6 hex digits><counter
/// hex>x` (at most 13 characters), so names built from it stay within the
/// kernel's 15-byte link-name limit when a short suffix is added. The pid's
/// fixed width (Linux pids stay below 2^22) keeps process 0x1a2's third
/// prefix apart from process 0x1a's 0x23rd; the trailing `x` keeps `vt1a2`
/// from being a prefix of `vt1a23`'s names.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("vt{:06x}{:x}x", std::process::id(), n)
}
