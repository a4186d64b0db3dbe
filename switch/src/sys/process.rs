//! Process-wide settings.

/// Sets the process's file mode creation mask and returns the previous one.
/// The daemon narrows it around `bind` so its ctl socket is never created
/// with looser permissions than it ends up with.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask(2) only swaps an integer in the process; it cannot fail
    // and touches no memory of ours.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}
