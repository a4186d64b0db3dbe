//! [`Daemon`]: a guard that runs one `vswitchd` with its own socket and
//! state dir in a temp dir, drives it with `vswitchctl`, and on drop kills it
//! and removes every namespace and link the test made through it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ctl::proto::{EndpointInfo, NetworkInfo, SandboxInfo};
use serde::de::DeserializeOwned;

use crate::bins::Binaries;
use crate::names::unique_prefix;
use crate::netns::NETNS_DIR;
use crate::process::{output_with_timeout, text, wait_deadline};

/// How long the daemon may take to answer its first `ping`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one `vswitchctl` call may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Where per-namespace files for `ip netns exec` live (`resolv.conf`).
const ETC_NETNS_DIR: &str = "/etc/netns";

/// One running `vswitchd` owned by a test.
pub struct Daemon {
    prefix: String,
    dir: PathBuf,
    child: Option<Child>,
    /// TAP (port) names of endpoints seen through this daemon, for cleanup.
    ports: Mutex<BTreeSet<String>>,
    /// Network namespace the daemon runs in (`None`: the test's own).
    netns: Option<PathBuf>,
    /// Extra command-line arguments (e.g. `--vtep ADDR`), on every start.
    args: Vec<OsString>,
    /// Extra environment variables, on every start.
    env: Vec<(OsString, OsString)>,
}

/// Options for starting a [`Daemon`]: [`Daemon::builder`]`().in_netns(p).args(&[..]).start()`.
#[derive(Debug, Default, Clone)]
pub struct DaemonBuilder {
    netns: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl DaemonBuilder {
    /// Runs the daemon inside the network namespace at `path` (e.g.
    /// `/run/netns/HOST`) with `nsenter --net=PATH`, so it shares the test's
    /// mount namespace and the sandboxes it creates under `/run/netns` are
    /// visible to the test.
    pub fn in_netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// Adds command-line arguments (after `--ctl-socket` and `--state-dir`),
    /// used on every (re)start.
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the daemon (e.g. a test hook), on
    /// every (re)start.
    pub fn env(mut self, key: impl AsRef<std::ffi::OsStr>, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Starts the daemon with a fresh temp dir (socket + state dir) and
    /// waits until it answers `ping`. Panics (with the daemon's log) on
    /// failure.
    pub fn start(self) -> Daemon {
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("vswitch-e2e-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut d = Daemon {
            prefix,
            dir,
            child: None,
            ports: Mutex::new(BTreeSet::new()),
            netns: self.netns,
            args: self.args,
            env: self.env,
        };
        d.spawn_and_wait();
        d
    }
}

impl Daemon {
    /// Starts a daemon in the test's own namespace with default options and
    /// a fresh temp dir (socket + state dir) and waits until it answers
    /// `ping`. Panics (with the daemon's log) on failure.
    pub fn start() -> Daemon {
        Daemon::builder().start()
    }

    /// Options for a daemon that runs in another namespace or with extra
    /// arguments.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// The network namespace the daemon runs in, if not the test's own.
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Prefix of every name this test should use for sandboxes and networks.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`: a name the guard will clean up.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The ctl socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The daemon's stderr log (all runs, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("vswitchd.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// True while the daemon process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A `vswitchd` command line using this daemon's socket and state dir
    /// (and its namespace and extra arguments, if any), with stderr/stdout
    /// appended to the log.
    pub fn daemon_command(&self, socket: &Path, state_dir: &Path) -> Command {
        let log = self.open_log();
        let vswitchd = &Binaries::get().vswitchd;
        let mut cmd = match &self.netns {
            // nsenter execs vswitchd: the child's pid is the daemon's.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--").arg(vswitchd);
                c
            }
            None => Command::new(vswitchd),
        };
        cmd.arg("--ctl-socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state_dir)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .stderr(Stdio::from(log));
        cmd
    }

    fn open_log(&self) -> File {
        let path = self.log_path();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    fn spawn_and_wait(&mut self) {
        let _ = writeln!(self.open_log(), "==== test support: starting vswitchd ====");
        let mut cmd = self.daemon_command(&self.socket(), &self.state_dir());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let out = self.ctl(&["ping"]);
            if out.status.success() {
                return;
            }
            if !self.is_running() {
                panic!("vswitchd exited before becoming ready; log:\n{}", self.log());
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!(
                    "vswitchd did not answer ping within {READY_TIMEOUT:?}; last ping: {}\nlog:\n{}",
                    text(&out.stderr),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `vswitchctl --socket S args…` and returns its output (never panics
    /// on a non-zero exit; a timeout is a failed output).
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_within(args, CTL_TIMEOUT)
    }

    /// [`Daemon::ctl`] with its own guard against a daemon that never
    /// answers: for a request that waits in line behind many others (the
    /// daemon carries requests out one at a time).
    pub fn ctl_within(&self, args: &[&str], guard: Duration) -> Output {
        let mut cmd = Command::new(&Binaries::get().vswitchctl);
        cmd.arg("--socket").arg(self.socket()).args(args).env_remove("VSWITCH_CTL_SOCKET");
        let out = output_with_timeout(&mut cmd, guard).unwrap_or_else(|e| {
            use std::os::unix::process::ExitStatusExt;
            Output { status: std::process::ExitStatus::from_raw(124 << 8), stdout: Vec::new(), stderr: e.into_bytes() }
        });
        if out.status.success() && args.first() == Some(&"network") && args.get(1) == Some(&"connect") {
            self.remember_ports();
        }
        out
    }

    /// Runs `vswitchctl args…`, asserts success and returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vswitchctl {args:?} failed ({}): {}\nstdout: {}",
            out.status,
            text(&out.stderr),
            text(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `vswitchctl --json args…`, asserts success and decodes stdout.
    pub fn ctl_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let stdout = self.ctl_ok(&full);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("vswitchctl {args:?}: cannot decode reply as JSON ({e}):\n{stdout}"))
    }

    /// Runs `vswitchctl args…`, asserts it fails with exit code 1 and an
    /// `Error: …` line, and returns stderr.
    pub fn ctl_err(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "vswitchctl {args:?} should fail with exit code 1; stdout: {} stderr: {stderr}",
            text(&out.stdout)
        );
        assert!(stderr.starts_with("Error: "), "vswitchctl {args:?}: stderr should start with 'Error: ': {stderr}");
        stderr
    }

    /// `network create NAME --subnet SUBNET`.
    pub fn network_create(&self, name: &str, subnet: &str) -> NetworkInfo {
        self.ctl_json(&["network", "create", name, "--subnet", subnet])
    }

    /// `sandbox create NAME`.
    pub fn sandbox_create(&self, name: &str) -> SandboxInfo {
        self.ctl_json(&["sandbox", "create", name])
    }

    /// `network connect NET SANDBOX [--ip IP]`.
    pub fn connect(&self, network: &str, sandbox: &str, ip: Option<&str>) -> EndpointInfo {
        let mut args = vec!["network", "connect", network, sandbox];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        self.ctl_json(&args)
    }

    /// Creates each of `sandboxes` and connects it to `network` (addresses
    /// from the network's pool); their endpoints, in order.
    pub fn sandboxes_on(&self, network: &str, sandboxes: &[&str]) -> Vec<EndpointInfo> {
        sandboxes
            .iter()
            .map(|s| {
                self.sandbox_create(s);
                self.connect(network, s, None)
            })
            .collect()
    }

    /// Records the TAP names of all endpoints, so they can be removed even if
    /// the daemon dies.
    pub fn remember_ports(&self) {
        let mut cmd = Command::new(&Binaries::get().vswitchctl);
        cmd.arg("--socket").arg(self.socket()).args(["--json", "sandbox", "ls"]);
        let Ok(out) = output_with_timeout(&mut cmd, CTL_TIMEOUT) else { return };
        if let Ok(sandboxes) = serde_json::from_slice::<Vec<SandboxInfo>>(&out.stdout) {
            let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
            ports.extend(sandboxes.iter().flat_map(|s| s.endpoints.iter().map(|e| e.port.clone())));
        }
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        self.remember_ports();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the daemon (SIGKILL) if running, starts it again with the same
    /// socket and state dir, and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn_and_wait();
    }

    /// Stops the daemon with SIGTERM, waiting up to `timeout`; returns its
    /// exit status, or None if it had to be killed.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.remember_ports();
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let status = wait_deadline(&mut c, timeout);
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status
    }

    /// Namespaces under `/run/netns` whose names start with the prefix.
    pub fn leftover_netns(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
        rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(&self.prefix)).collect()
    }

    fn cleanup(&mut self) {
        if self.is_running() {
            self.remember_ports();
            // Let the daemon tear down what it made (also exercises sandbox rm).
            let mut cmd = Command::new(&Binaries::get().vswitchctl);
            cmd.arg("--socket").arg(self.socket()).args(["--json", "sandbox", "ls"]);
            if let Ok(out) = output_with_timeout(&mut cmd, CTL_TIMEOUT)
                && let Ok(sandboxes) = serde_json::from_slice::<Vec<SandboxInfo>>(&out.stdout)
            {
                for s in sandboxes.iter().filter(|s| s.name.starts_with(&self.prefix)) {
                    let _ = self.ctl(&["sandbox", "rm", &s.name]);
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.leftover_netns() {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).output();
            let _ = std::fs::remove_file(Path::new(NETNS_DIR).join(&ns));
        }
        // Resolver files the daemon wrote for our sandboxes (`/etc/netns/NAME/`)
        // and did not remove (it died, or a sandbox rm failed).
        if let Ok(rd) = std::fs::read_dir(ETC_NETNS_DIR) {
            for e in rd.filter_map(Result::ok) {
                if e.file_name().to_str().is_some_and(|n| n.starts_with(&self.prefix)) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let ports = std::mem::take(&mut *self.ports.lock().unwrap_or_else(|p| p.into_inner()));
        for port in ports {
            match &self.netns {
                // The daemon's namespace: a port it left there goes with its link.
                Some(ns) => {
                    let _ = Command::new("nsenter")
                        .arg(format!("--net={}", ns.display()))
                        .args(["--", "ip", "link", "delete", &port])
                        .stderr(Stdio::null())
                        .output();
                }
                None if Path::new("/sys/class/net").join(&port).exists() => {
                    let _ = Command::new("ip").args(["link", "delete", &port]).output();
                }
                None => {}
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cleanup();
        if std::thread::panicking() {
            eprintln!(
                "==== vswitchd log ({}) ====\n{}==== end of vswitchd log ====",
                self.log_path().display(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
