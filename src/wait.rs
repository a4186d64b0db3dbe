//! Waiting on conditions, never on fixed sleeps: [`wait_for`] polls a
//! check until it holds or a deadline passes, [`wait_until`] does the same
//! and panics with what it was waiting for when the deadline passes.

use std::time::{Duration, Instant};

/// Pause between two checks of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Some` or `timeout`
/// passes (it is always called at least once, and once more at the deadline).
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Like [`wait_for`], but panics when `timeout` passes, saying what was
/// awaited (`what` is only evaluated then, so it can describe the state
/// that was reached instead).
pub fn wait_until<T>(timeout: Duration, what: impl FnOnce() -> String, f: impl FnMut() -> Option<T>) -> T {
    wait_for(timeout, f).unwrap_or_else(|| panic!("gave up after {timeout:?} waiting for {}", what()))
}
