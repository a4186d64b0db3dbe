//! [`Container`]: a process alone in a new network namespace (`unshare
//! -n`), as a container started with no network is, for tests of sandboxes
//! adopted with `sandbox create --netns /proc/PID/ns/net` whose container
//! then exits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process alone in a new network namespace, killed on drop.
pub struct Container(Child);

impl Container {
    /// Starts `unshare --net sleep 600` and waits until the process is in
    /// a namespace other than the test's. Panics if it cannot.
    pub fn start() -> Container {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare --net sleep");
        let c = Container(child);
        // unshare execs sleep once the namespace exists: wait until the
        // process is in a namespace other than ours.
        let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(c.netns()).ok().is_none_or(|ns| ns == ours) {
            assert!(Instant::now() < deadline, "unshare did not enter a new namespace");
            std::thread::yield_now();
        }
        c
    }

    /// The path of its namespace, for `sandbox create --netns`.
    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    /// Ends the process, and with it the namespace.
    pub fn exit(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.exit();
    }
}
