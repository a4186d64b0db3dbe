//! Waiting on conditions, never on fixed sleeps: [`wait_for`] polls a
//! check until it holds or a deadline passes, [`wait_until`] does the same
//! and panics with what it was waiting for when the deadline passes.
//! [`recv_within`] bounds a wait on a socket by a deadline that a stop
//! and continue of the process neither breaks nor extends.

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

/// A socket whose waits are bounded by a receive timeout (`SO_RCVTIMEO`).
pub trait ReadTimeout {
    /// Sets the receive timeout, as the standard library's sockets do.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

macro_rules! read_timeout {
    ($($socket:ty),*) => {$(
        impl ReadTimeout for $socket {
            fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
                <$socket>::set_read_timeout(self, timeout)
            }
        }
    )*};
}
read_timeout!(std::net::UdpSocket, std::net::TcpStream, std::os::unix::net::UnixStream);

/// Runs `op`, one wait on `socket` (a `recv`, `recv_from`, `read`), for
/// at most `timeout` in all.
///
/// Such a wait is not restarted by the kernel when the process is stopped
/// and continued (job control, a debugger, the cgroup freezer of a CI
/// runner; signal(7)): it fails with `EINTR` although nothing went wrong,
/// and the standard library resumes it only inside `read_exact`,
/// `read_to_end` and `write_all` (there with the whole timeout again). Here
/// it is resumed with what is left of `timeout`, so an interruption neither
/// fails the wait nor makes it longer. Once `timeout` has passed:
/// `TimedOut`.
pub fn recv_within<S: ReadTimeout, T>(
    socket: &S,
    timeout: Duration,
    mut op: impl FnMut(&S) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let what = format!("nothing arrived within {timeout:?}");
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, what));
        }
        socket.set_read_timeout(Some(left))?;
        match op(socket) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}
