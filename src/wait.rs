//! Waiting on conditions, never on fixed sleeps: [`wait_for`] polls a
//! check until it holds or a deadline passes, [`wait_until`] does the same
//! and panics with what it was waiting for when the deadline passes.
//! [`uninterrupted`] resumes a blocking socket call that a stop and
//! continue of the process cut short.

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

/// Runs `op` again for as long as it fails with `EINTR`.
///
/// A socket call that waits with a timeout (`SO_RCVTIMEO`: `recv`,
/// `recv_from`, `read` on a socket) is not restarted by the kernel when the
/// process is stopped and continued (job control, a debugger, the cgroup
/// freezer of a CI runner; signal(7)): it fails with `EINTR` although
/// nothing went wrong. The standard library resumes such calls only inside
/// `read_exact`, `read_to_end` and `write_all`; every other wait on a
/// socket with a timeout that expects an answer goes through this. Each
/// retry waits the socket's whole timeout again: a wait toward a deadline
/// sets the timeout to what is left and retries itself instead.
pub fn uninterrupted<T>(mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}
