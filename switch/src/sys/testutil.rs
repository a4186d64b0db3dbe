//! Test support: root detection and a guard that hands out unique names for
//! namespaces/links and removes them on drop, even when a test fails.

use std::sync::atomic::{AtomicU32, Ordering};

use super::netlink::Netlink;
use super::netns::NetNs;

/// True if the test may proceed as root. Without root: panics when `CI` is
/// set, otherwise prints a loud SKIP line and returns false.
pub(crate) fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: needs root, and CI is set");
    eprintln!("SKIP {test}: needs root ==================================");
    false
}

/// Owns every namespace and host link a test creates, by name.
pub(crate) struct NetGuard {
    prefix: String,
    next: u32,
    netns: Vec<String>,
    host_links: Vec<String>,
}

impl NetGuard {
    /// A guard with a prefix unique to this process and guard:
    /// `vst<pid-hex><guard-hex>_`.
    pub(crate) fn new() -> Self {
        static NEXT_GUARD: AtomicU32 = AtomicU32::new(0);
        let g = NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("vst{:x}{:x}_", std::process::id(), g);
        Self { prefix, next: 0, netns: Vec::new(), host_links: Vec::new() }
    }

    /// The prefix of every name this guard hands out.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A fresh unique name (at most 15 bytes, usable for links).
    pub(crate) fn name(&mut self) -> String {
        let n = format!("{}{:x}", self.prefix, self.next);
        self.next += 1;
        assert!(n.len() <= 15, "test name {n} too long for a link");
        n
    }

    /// Creates a named namespace that is removed on drop.
    pub(crate) fn netns(&mut self) -> NetNs {
        let name = self.name();
        self.netns.push(name.clone());
        NetNs::create_named(&name).expect("create netns")
    }

    /// Registers a host-namespace link (e.g. a persistent TAP) for deletion.
    pub(crate) fn host_link(&mut self, name: &str) {
        self.host_links.push(name.to_owned());
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Ok(mut nl) = Netlink::open() {
            for l in &self.host_links {
                if nl.link_exists(l).unwrap_or(false) {
                    let _ = nl.delete_link(l);
                }
            }
        }
        for ns in &self.netns {
            // Deleting the namespace deletes the links inside it.
            let _ = NetNs::remove_named(ns);
        }
    }
}

/// Runs `op`, one wait on a socket whose receive timeout `set_timeout`
/// sets, for at most `timeout` in all.
///
/// A wait with a timeout (`SO_RCVTIMEO`) fails with `EINTR` when the
/// process is stopped and continued (job control, a debugger, a CI
/// runner's cgroup freezer; signal(7)); here it is resumed with what is
/// left, so an interruption neither fails the wait nor makes it longer.
/// Once `timeout` has passed: `TimedOut`. (The root crate's test support
/// has the same for the end-to-end tests: this crate cannot use it.)
pub(crate) fn recv_within<T>(
    timeout: std::time::Duration,
    set_timeout: impl Fn(Option<std::time::Duration>) -> std::io::Result<()>,
    mut op: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("nothing within {timeout:?}")));
        }
        set_timeout(Some(left))?;
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}
