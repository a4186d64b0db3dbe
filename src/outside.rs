//! Support for tests of the switch's L4 translator (egress, published
//! ports, services): an "outside world" ([`Outside`]) where `vswitchd` runs
//! in its own network namespace joined by a veth to an "outside" namespace,
//! servers that log who reached them ([`HttpServer`], [`UdpEcho`]), clients
//! ([`curl`], [`udp_query`], [`ping_once`]), byte streams checked end to
//! end ([`transfer_checked`]), firewall snapshots ([`Rulesets`]), and the
//! daemon's NAT verbs and counters.
//!
//! Addresses come from the benchmarking range 198.18.0.0/15 (RFC 2544),
//! picked per lab so parallel tests never share one: the veth is a /30 in
//! 198.18.0.0/16 (daemon side `.1`, outside `.2`), and the outside
//! namespace also holds a "far" address in 198.19.0.0/16 on its loopback,
//! reached from the daemon's namespace by a route through the veth (so it
//! is off every connected subnet, like a server on the internet). IPv6 the
//! same way, from the documentation prefix 2001:db8::/32: the veth is
//! `2001:db8:I::/64` (`::1` and `::2`) and the far address
//! `2001:db8:ff:I::1`, all without duplicate address detection so they are
//! usable at once. The daemon's namespace has no default route: anything
//! else is unreachable there. Nothing touches the test's own namespace;
//! everything is removed on drop, even when the test fails.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::Daemon;
use crate::names::unique_prefix;
use crate::netns::{NETNS_DIR, in_netns, netns_exec};
use crate::process::{output_with_timeout, text};
use crate::underlay::ip;
use crate::wait::{recv_within, wait_for};

/// The daemon side's interface toward the outside (in the daemon's namespace).
pub const UPLINK_IF: &str = "up0";
/// The outside namespace's interface toward the daemon.
pub const OUTSIDE_IF: &str = "eth0";
/// How long a server may take to start listening.
const SERVER_READY: Duration = Duration::from_secs(15);
/// Longest a cleanup command may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon, its namespace, and an outside namespace joined to it.
///
/// Field order is drop order: the daemon goes (and removes its sandboxes)
/// before the namespaces.
pub struct Outside {
    /// The daemon, running in [`Outside::daemon_ns`].
    pub daemon: Daemon,
    /// The daemon's namespace (`/run/netns/<name>`).
    pub daemon_ns: String,
    /// The outside namespace.
    pub outside_ns: String,
    /// The daemon namespace's address on the veth (what outside servers see
    /// as the client of egress flows).
    pub daemon_addr: Ipv4Addr,
    /// The outside namespace's address on the veth (a client's real address
    /// for published ports).
    pub outside_addr: Ipv4Addr,
    /// An address of the outside namespace off the veth's subnet, routed
    /// from the daemon's namespace through the veth.
    pub far_addr: Ipv4Addr,
    /// The daemon namespace's IPv6 address on the veth.
    pub daemon_addr6: Ipv6Addr,
    /// The outside namespace's IPv6 address on the veth.
    pub outside_addr6: Ipv6Addr,
    /// An IPv6 address of the outside namespace off the veth's prefix,
    /// routed from the daemon's namespace through the veth.
    pub far_addr6: Ipv6Addr,
    /// Firewall rules of the daemon's namespace before the daemon started.
    pub daemon_rules_before: Rulesets,
    /// Firewall rules of the test's own namespace when the lab was made.
    pub host_rules_before: Rulesets,
    _namespaces: Namespaces,
}

/// Namespaces removed when dropped (last field of [`Outside`]).
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            let mut c = Command::new("ip");
            c.args(["netns", "delete", ns]);
            let _ = output_with_timeout(&mut c, CLEANUP_TIMEOUT);
            let _ = std::fs::remove_file(Path::new(NETNS_DIR).join(ns));
        }
    }
}

/// A per-lab index: the process id and a counter, folded into 14 bits.
fn lab_index() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ((std::process::id().wrapping_mul(64).wrapping_add(n)) % (1 << 14)) as u16
}

impl Outside {
    /// Makes the namespaces and the veth, snapshots the firewall rules, and
    /// starts the daemon in its namespace with `daemon_args`. Panics with
    /// the failing command's output if a step fails (what was made is still
    /// removed).
    pub fn start(daemon_args: &[&str]) -> Outside {
        let prefix = unique_prefix();
        let mut namespaces = Namespaces(Vec::new());
        let (dns, ons) = (format!("{prefix}d"), format!("{prefix}o"));
        for ns in [&dns, &ons] {
            ip(&["netns", "add", ns]);
            namespaces.0.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // A /30 in 198.18.0.0/16 and a /32 in 198.19.0.0/16, both from the index.
        let i = u32::from(lab_index());
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i * 4;
        let (daemon_addr, outside_addr) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let far_addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 1)) + i * 4);
        ip(&["-n", &dns, "link", "add", UPLINK_IF, "type", "veth", "peer", "name", OUTSIDE_IF, "netns", &ons]);
        ip(&["-n", &dns, "addr", "add", &format!("{daemon_addr}/30"), "dev", UPLINK_IF]);
        ip(&["-n", &ons, "addr", "add", &format!("{outside_addr}/30"), "dev", OUTSIDE_IF]);
        ip(&["-n", &ons, "addr", "add", &format!("{far_addr}/32"), "dev", "lo"]);
        ip(&["-n", &dns, "link", "set", UPLINK_IF, "up"]);
        ip(&["-n", &ons, "link", "set", OUTSIDE_IF, "up"]);
        ip(&["-n", &dns, "route", "add", &format!("{far_addr}/32"), "via", &outside_addr.to_string()]);
        let i6 = i as u16;
        let daemon_addr6 = Ipv6Addr::new(0x2001, 0xdb8, i6, 0, 0, 0, 0, 1);
        let outside_addr6 = Ipv6Addr::new(0x2001, 0xdb8, i6, 0, 0, 0, 0, 2);
        let far_addr6 = Ipv6Addr::new(0x2001, 0xdb8, 0xff, i6, 0, 0, 0, 1);
        ip(&["-n", &dns, "addr", "add", &format!("{daemon_addr6}/64"), "dev", UPLINK_IF, "nodad"]);
        ip(&["-n", &ons, "addr", "add", &format!("{outside_addr6}/64"), "dev", OUTSIDE_IF, "nodad"]);
        ip(&["-n", &ons, "addr", "add", &format!("{far_addr6}/128"), "dev", "lo", "nodad"]);
        ip(&["-n", &dns, "-6", "route", "add", &format!("{far_addr6}/128"), "via", &outside_addr6.to_string()]);
        let daemon_path = PathBuf::from(NETNS_DIR).join(&dns);
        let host_rules_before = Rulesets::snapshot(None);
        let daemon_rules_before = Rulesets::snapshot(Some(&daemon_path));
        let daemon = Daemon::builder().in_netns(&daemon_path).args(daemon_args).start();
        Outside {
            daemon,
            daemon_ns: dns,
            outside_ns: ons,
            daemon_addr,
            outside_addr,
            far_addr,
            daemon_addr6,
            outside_addr6,
            far_addr6,
            daemon_rules_before,
            host_rules_before,
            _namespaces: namespaces,
        }
    }

    /// Path of the daemon's namespace.
    pub fn daemon_netns_path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.daemon_ns)
    }

    /// Asserts that neither the daemon's namespace nor the test's own has a
    /// firewall rule (iptables, ip6tables, nftables) it did not have when
    /// the lab was made.
    #[track_caller]
    pub fn assert_rulesets_unchanged(&self) {
        let daemon_now = Rulesets::snapshot(Some(&self.daemon_netns_path()));
        self.daemon_rules_before.assert_same(&daemon_now, "the daemon's namespace");
        self.host_rules_before.assert_same(&Rulesets::snapshot(None), "the host (the test's own namespace)");
    }
}

// ---------------------------------------------------------------------------- tools

/// True if `python3`, `curl` and `ping` can run. Without them: panics when
/// `CI` is set, otherwise prints a loud SKIP line and returns false.
pub fn require_nat_tools(test: &str) -> bool {
    let missing: Vec<&str> = [("python3", "--version"), ("curl", "--version"), ("ping", "-V")]
        .into_iter()
        .filter(|(cmd, arg)| !runs(cmd, &[arg]))
        .map(|(cmd, _)| cmd)
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{test}: {missing:?} not installed, and CI is set");
    eprintln!("SKIP {test}: needs {} ==================", missing.join(", "));
    false
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    let mut c = Command::new(cmd);
    c.args(args);
    output_with_timeout(&mut c, Duration::from_secs(30)).is_ok_and(|o| o.status.success())
}

/// Runs `cmd args…` in the namespace at `netns` (`nsenter --net`, no
/// private mount namespace), or in the test's own when `None`.
fn run_in(netns: Option<&Path>, cmd: &str, args: &[&str]) -> Result<Output, String> {
    let mut c = match netns {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", p.display())).arg("--").arg(cmd);
            c
        }
        None => Command::new(cmd),
    };
    c.args(args);
    output_with_timeout(&mut c, Duration::from_secs(30))
}

// ---------------------------------------------------------------------------- firewall snapshots

/// The firewall rules of one namespace, as `iptables-save`,
/// `ip6tables-save` and `nft list ruleset` print them (comments and
/// counters removed); a tool that is not installed is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rulesets {
    /// `iptables-save` then `ip6tables-save`.
    pub iptables: Option<String>,
    /// `nft list ruleset`.
    pub nft: Option<String>,
}

impl Rulesets {
    /// Reads the rules of the namespace at `netns` (the test's own when
    /// `None`). A tool that is missing is noted loudly (and fails the test
    /// when `CI` is set: `scripts/test` installs `iptables` and `nftables`).
    pub fn snapshot(netns: Option<&Path>) -> Rulesets {
        let read = |cmd: &str, args: &[&str], pkg: &str| -> Option<String> {
            match run_in(netns, cmd, args) {
                Ok(o) if o.status.success() => Some(normalize_rules(&String::from_utf8_lossy(&o.stdout))),
                other => {
                    let why = match other {
                        Ok(o) => text(&o.stderr),
                        Err(e) => e,
                    };
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "`{cmd}` cannot run ({why}); CI is set and scripts/test installs {pkg}"
                    );
                    eprintln!("SKIP the {cmd} check: `{cmd}` cannot run ({why}); apt-get install {pkg} ==========");
                    None
                }
            }
        };
        let v4 = read("iptables-save", &[], "iptables");
        let v6 = read("ip6tables-save", &[], "iptables");
        let iptables = v4.map(|v4| format!("{v4}{}", v6.unwrap_or_default()));
        Rulesets { iptables, nft: read("nft", &["list", "ruleset"], "nftables") }
    }

    /// Asserts `now` has the same rules as `self` (tools missing in either
    /// snapshot are not compared).
    #[track_caller]
    pub fn assert_same(&self, now: &Rulesets, what: &str) {
        if let (Some(a), Some(b)) = (&self.iptables, &now.iptables) {
            assert_eq!(a, b, "iptables rules of {what} changed:\nbefore:\n{a}\nafter:\n{b}");
        }
        if let (Some(a), Some(b)) = (&self.nft, &now.nft) {
            assert_eq!(a, b, "nftables ruleset of {what} changed:\nbefore:\n{a}\nafter:\n{b}");
        }
    }
}

/// Drops comment lines and packet/byte counters, which change with traffic.
fn normalize_rules(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines().filter(|l| !l.trim_start().starts_with('#')) {
        // iptables-save chain lines: `:INPUT ACCEPT [12:345]`.
        let line = match line.rfind(" [") {
            Some(i) if line.starts_with(':') => &line[..i],
            _ => line,
        };
        // nft: `counter packets 12 bytes 345`.
        let mut words: Vec<&str> = Vec::new();
        let mut it = line.split_whitespace().peekable();
        while let Some(w) = it.next() {
            if (w == "packets" || w == "bytes") && it.peek().is_some_and(|n| n.parse::<u64>().is_ok()) {
                it.next();
                continue;
            }
            words.push(w);
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------- servers

/// A python3 process in a namespace, killed on drop; its stdout goes to a
/// log file the test reads.
struct PyServer {
    child: Option<Child>,
    log: PathBuf,
}

impl PyServer {
    /// Starts `python3 -u -c SCRIPT args…` in `ns` and waits until it
    /// prints `listening`.
    fn start(ns: &str, script: &str, args: &[String]) -> PyServer {
        let s = PyServer::spawn(ns, script, args);
        s.wait_line("listening", SERVER_READY);
        s
    }

    /// Starts `python3 -u -c SCRIPT args…` in `ns`, its stdin a pipe.
    fn spawn(ns: &str, script: &str, args: &[String]) -> PyServer {
        let log = std::env::temp_dir().join(format!("vswitch-py-{}.log", unique_prefix()));
        let file = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = file.try_clone().unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        // nsenter execs python: the child's pid is python's.
        let child = Command::new("nsenter")
            .arg(format!("--net={NETNS_DIR}/{ns}"))
            .args(["--", "python3", "-u", "-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 in {ns}: {e}"));
        PyServer { child: Some(child), log }
    }

    /// Waits until the process prints the line `line` (panics with its
    /// output if it exits first or `timeout` passes).
    fn wait_line(&self, line: &str, timeout: Duration) {
        let mut child = self.child.as_ref().map(Child::id);
        let ready = wait_for(timeout, || {
            if self.output().lines().any(|l| l == line) {
                return Some(true);
            }
            // Still running? (A zombie until reaped: look at its state.)
            let alive = child.is_some_and(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|st| st.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
            });
            if !alive {
                child = None;
                return Some(false);
            }
            None
        });
        assert_eq!(
            ready,
            Some(true),
            "python did not print {line:?} within {timeout:?}; it printed:\n{}",
            self.output()
        );
    }

    /// Writes one line to its stdin.
    fn send_line(&mut self, line: &str) {
        if let Some(stdin) = self.child.as_mut().and_then(|c| c.stdin.as_mut()) {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Every `client A:P` (`client [A]:P` for IPv6) a server logged, in order.
fn logged_peers(output: &str, tag: &str) -> Vec<SocketAddr> {
    output.lines().filter_map(|l| l.strip_prefix(tag)?.split_whitespace().next()?.parse().ok()).collect()
}

/// The IPv4 ones of `peers`.
fn v4_only(peers: Vec<SocketAddr>) -> Vec<SocketAddrV4> {
    peers
        .into_iter()
        .filter_map(|p| match p {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        })
        .collect()
}

/// Python: the text of a peer address, `A:P` or `[A]:P`.
const PY_PEER: &str = r#"
def peer(a):
    return ("[%s]:%d" if ":" in a[0] else "%s:%d") % (a[0], a[1])
"#;

const HTTP_SERVER: &str = r#"
import http.server, socket, sys
addr, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("client %s %s" % (peer(self.client_address), fmt % args), flush=True)
class S(http.server.ThreadingHTTPServer):
    # An IPv6 address listens on IPv6 (`::` on both families, as Linux's
    # default is).
    address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
srv = S((addr, port), H)
srv.daemon_threads = True
print("listening", flush=True)
srv.serve_forever()
"#;

/// An HTTP server (python3 `http.server`) in a namespace that answers
/// every GET with its name and a newline, and logs each client's address
/// and port. Killed on drop.
pub struct HttpServer {
    py: PyServer,
    /// What it answers.
    pub name: String,
}

impl HttpServer {
    /// Starts it in `ns` on `addr:port` (`0.0.0.0` for every IPv4 address,
    /// `::` for every address of both families) and waits until it listens.
    pub fn start(ns: &str, addr: impl Into<IpAddr>, port: u16, name: &str) -> HttpServer {
        let args = [addr.into().to_string(), port.to_string(), name.to_owned()];
        let script = format!("{PY_PEER}{HTTP_SERVER}");
        HttpServer { py: PyServer::start(ns, &script, &args), name: name.to_owned() }
    }

    /// The address and port of every IPv4 client it answered, in order.
    pub fn clients(&self) -> Vec<SocketAddrV4> {
        v4_only(self.client_addrs())
    }

    /// The address and port of every client it answered, IPv4 or IPv6, in
    /// order.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        logged_peers(&self.py.output(), "client ")
    }

    /// Its log.
    pub fn log(&self) -> String {
        self.py.output()
    }

    /// Stops it: its port then refuses connections.
    pub fn stop(&mut self) {
        self.py.stop();
    }
}

const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, p = s.recvfrom(65535)
    print("peer %s" % peer(p), flush=True)
    s.sendto(("%s " % peer(p)).encode() + data, p)
"#;

/// A UDP echo server (python3) in a namespace: it answers each datagram
/// with `A:P ` (`[A]:P ` for IPv6: the sender's address and port as it
/// saw them) followed by the datagram, and logs each sender. Killed on
/// drop.
pub struct UdpEcho {
    py: PyServer,
}

impl UdpEcho {
    /// Starts it in `ns` on `addr:port` and waits until it listens.
    pub fn start(ns: &str, addr: impl Into<IpAddr>, port: u16) -> UdpEcho {
        let script = format!("{PY_PEER}{UDP_ECHO}");
        UdpEcho { py: PyServer::start(ns, &script, &[addr.into().to_string(), port.to_string()]) }
    }

    /// Every IPv4 sender it saw, in order.
    pub fn peers(&self) -> Vec<SocketAddrV4> {
        v4_only(self.peer_addrs())
    }

    /// Every sender it saw, IPv4 or IPv6, in order.
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        logged_peers(&self.py.output(), "peer ")
    }
}

const TCP_HOLDER: &str = r#"
import socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
t0 = time.monotonic()
try:
    for i in range(n):
        socks.append(socket.create_connection((ip, port), timeout=10))
        if (i + 1) % 2000 == 0:
            print("%d open after %.2f s" % (i + 1, time.monotonic() - t0), flush=True)
except OSError as e:
    print("failed after %d connections: %s" % (len(socks), e), flush=True)
    sys.exit(1)
print("held", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
sys.stdin.readline()
"#;

/// `n` TCP connections opened from a namespace by a python3 process (its
/// own open-file limit, not the test's) and held until [`TcpHolder::close`]
/// or drop.
pub struct TcpHolder {
    py: PyServer,
}

impl TcpHolder {
    /// Opens `n` connections from `ns` to `target` one after the other
    /// and waits (up to `timeout`) until all are open.
    pub fn open(ns: &str, target: SocketAddr, n: usize, timeout: Duration) -> TcpHolder {
        let args = [target.ip().to_string(), target.port().to_string(), n.to_string()];
        let py = PyServer::spawn(ns, TCP_HOLDER, &args);
        py.wait_line("held", timeout);
        TcpHolder { py }
    }

    /// What the python process printed (progress, errors).
    pub fn log(&self) -> String {
        self.py.output()
    }

    /// Closes every connection and waits until they are closed.
    pub fn close(mut self) {
        self.py.send_line("close");
        self.py.wait_line("closed", Duration::from_secs(60));
    }
}

const TCP_SINK: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port))
l.listen(4096)
print("listening", flush=True)
conns = []
while len(conns) < n:
    conns.append(l.accept()[0])
l.close()
print("accepted", flush=True)
sys.stdin.readline()
for c in conns:
    c.close()
print("closed", flush=True)
sys.stdin.readline()
"#;

/// A listener in a namespace (a python3 process) that accepts `n` TCP
/// connections and holds them until [`TcpSink::close`] or drop.
pub struct TcpSink {
    py: PyServer,
}

impl TcpSink {
    /// Starts it on `addr:port` in `ns` and waits until it listens.
    pub fn start(ns: &str, addr: Ipv4Addr, port: u16, n: usize) -> TcpSink {
        TcpSink { py: PyServer::start(ns, TCP_SINK, &[addr.to_string(), port.to_string(), n.to_string()]) }
    }

    /// Waits (up to `timeout`) until it has accepted all `n`.
    pub fn wait_accepted(&self, timeout: Duration) {
        self.py.wait_line("accepted", timeout);
    }

    /// Closes every connection it accepted and waits until they are closed.
    pub fn close(mut self) {
        self.py.send_line("close");
        self.py.wait_line("closed", Duration::from_secs(60));
    }
}

// ---------------------------------------------------------------------------- clients

/// What one `curl` run did.
#[derive(Debug, Clone)]
pub struct Curl {
    /// The command (for messages).
    pub command: String,
    /// True if curl exited with status 0 and the HTTP status was 200.
    pub ok: bool,
    /// The body (the server's name and a newline, for [`HttpServer`]).
    pub body: String,
    /// The local port of the connection, as curl reports it.
    pub local_port: Option<u16>,
    /// curl's stderr (its error message).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl std::fmt::Display for Curl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` after {:?}: ok={} body={:?} stderr={:?}",
            self.command, self.elapsed, self.ok, self.body, self.stderr
        )
    }
}

/// Separates the body from curl's `-w` trailer.
const CURL_TRAILER: &str = "\n@@curl@@";

/// `curl -sS --max-time MAX http://ADDR/` from namespace `ns` (`-g`: an
/// IPv6 address in brackets is no glob).
pub fn curl(ns: &str, addr: SocketAddr, max: Duration) -> Curl {
    let url = format!("http://{addr}/");
    let max_s = format!("{:.1}", max.as_secs_f64());
    let trailer = format!("{CURL_TRAILER} %{{http_code}} %{{local_port}}");
    let args = ["-gsS", "--max-time", &max_s, "-w", &trailer, &url];
    let start = Instant::now();
    let out = netns_exec(ns, "curl", &args);
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once(CURL_TRAILER).unwrap_or((&stdout, ""));
    let mut tail = tail.split_whitespace();
    let code = tail.next().unwrap_or("");
    let local_port = tail.next().and_then(|p| p.parse().ok()).filter(|&p| p != 0);
    Curl {
        command: format!("curl {} (in {ns})", args.join(" ")),
        ok: out.status.success() && code == "200",
        body: body.to_owned(),
        local_port,
        stderr: text(&out.stderr),
        elapsed,
    }
}

/// Sends `payload` over UDP from `ns` (bound to `bind`, any port) to `dst`
/// and waits up to `timeout` for one answer: (the local address used, the
/// answer as text).
pub fn udp_query(
    ns: &str,
    bind: impl Into<IpAddr>,
    dst: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> io::Result<(SocketAddr, String)> {
    let payload = payload.to_vec();
    let bind = bind.into();
    in_netns(ns, move || -> io::Result<(SocketAddr, String)> {
        let s = UdpSocket::bind(SocketAddr::from((bind, 0)))?;
        s.send_to(&payload, dst)?;
        let mut buf = vec![0u8; 65536];
        let (n, _) = recv_within(&s, timeout, |s| s.recv_from(&mut buf))?;
        Ok((s.local_addr()?, String::from_utf8_lossy(&buf[..n]).into_owned()))
    })?
}

/// `ping -n -c 1 -W WAIT ip` (`ping -6` for IPv6) from `ns`: its output
/// (stdout and stderr) and how long it ran.
pub fn ping_once(ns: &str, ip: impl Into<IpAddr>, wait: Duration) -> (Output, Duration) {
    let ip = ip.into();
    let w = wait.as_secs().max(1).to_string();
    let family = if ip.is_ipv6() { "-6" } else { "-4" };
    let start = Instant::now();
    let out = netns_exec(ns, "ping", &[family, "-n", "-c", "1", "-W", &w, &ip.to_string()]);
    (out, start.elapsed())
}

// ---------------------------------------------------------------------------- byte streams

/// Byte `i` of the test stream: a pattern that no segment boundary lines
/// up with, so a lost, repeated or reordered byte shows.
pub fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Writes `len` bytes of the test stream to `s` from offset 0.
pub fn send_stream(s: &mut TcpStream, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = stream_byte(at + k as u64);
        }
        s.write_all(&buf[..n])?;
        at += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
}

/// Reads `s` to its end, after a pause that lets the sender fill every
/// buffer on the way (the translator parks bytes and closes its window);
/// returns how many bytes matched the test stream before the first
/// mismatch, and the total.
pub fn check_stream(s: &mut TcpStream, pause: Duration) -> io::Result<(u64, u64)> {
    std::thread::sleep(pause);
    let mut buf = vec![0u8; 256 * 1024];
    let (mut total, mut good) = (0u64, None);
    loop {
        let n = recv_within(&*s, Duration::from_secs(30), |mut s| s.read(&mut buf))?;
        if n == 0 {
            return Ok((good.unwrap_or(total), total));
        }
        if good.is_none()
            && let Some(k) = buf[..n].iter().enumerate().position(|(k, &b)| b != stream_byte(total + k as u64))
        {
            good = Some(total + k as u64);
        }
        total += n as u64;
    }
}

/// Moves `len` bytes from a server in `server_ns` (listening on `listen`,
/// sending when `server_sends`) to a client in `client_ns` connecting to
/// `target`, or the other way, and asserts every byte arrived in order.
pub fn transfer_checked(
    what: &str,
    server_ns: &str,
    listen: SocketAddr,
    client_ns: &str,
    target: SocketAddr,
    len: u64,
    server_sends: bool,
) {
    let listener = in_netns(server_ns, move || TcpListener::bind(listen))
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: bind {listen} in {server_ns}: {e}"));
    let server = std::thread::spawn(move || -> io::Result<(u64, u64)> {
        let (mut s, _) = listener.accept()?;
        if server_sends {
            send_stream(&mut s, len).map(|()| (len, len))
        } else {
            check_stream(&mut s, Duration::from_millis(300))
        }
    });
    let client = in_netns(client_ns, move || -> io::Result<(u64, u64)> {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
        if server_sends {
            check_stream(&mut s, Duration::from_millis(300))
        } else {
            send_stream(&mut s, len).map(|()| (len, len))
        }
    })
    .unwrap();
    let client = client.unwrap_or_else(|e| panic!("{what}: client: {e}"));
    let server = server.join().unwrap().unwrap_or_else(|e| panic!("{what}: server: {e}"));
    let (good, total) = if server_sends { client } else { server };
    assert_eq!((good, total), (len, len), "{what}: bytes intact before the first mismatch, and bytes received");
}

// ---------------------------------------------------------------------------- process limits

/// Raises this process's soft open-file limit toward `n` (at most to the
/// hard limit: raising that needs `CAP_SYS_RESOURCE`, which containers
/// often lack); children started afterwards, the daemon included, inherit
/// it. Returns the soft limit now in force.
pub fn raise_nofile(n: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= n {
        return Ok(lim.rlim_cur);
    }
    let mut want = libc::rlimit { rlim_cur: n, rlim_max: lim.rlim_max.max(n) };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
        want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(want.rlim_cur)
}

/// A process's resident set (`VmRSS` of `/proc/PID/status`) in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
}

/// A process's anonymous resident memory (`RssAnon` of `/proc/PID/status`:
/// its heap and stacks, not the pages of its binary) in KiB.
pub fn rss_anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("RssAnon:")?.split_whitespace().next()?.parse().ok())
}

// ---------------------------------------------------------------------------- daemon verbs

impl Daemon {
    /// `network connect NET SANDBOX [-p SPEC]…`, asserting success.
    pub fn connect_publish(&self, network: &str, sandbox: &str, publish: &[&str]) -> ctl::proto::EndpointInfo {
        let mut args = vec!["network", "connect", network, sandbox];
        for p in publish {
            args.extend(["-p", p]);
        }
        self.ctl_json(&args)
    }

    /// `nat ls [NET] --json`: the live flows as JSON objects.
    pub fn nat_flows(&self, network: Option<&str>) -> Vec<Value> {
        let mut args = vec!["nat", "ls"];
        args.extend(network);
        args.push("--json");
        let out = self.ctl_ok(&args);
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(v)) => v,
            other => panic!("nat ls --json: expected a JSON array, got {other:?}:\n{out}"),
        }
    }

    /// `stats --prometheus`: the sum of every sample of metric `name` (over
    /// all label sets); None if there is none.
    pub fn metric_sum(&self, name: &str) -> Option<f64> {
        let text = self.ctl_ok(&["stats", "--prometheus"]);
        prometheus_sum(&text, name)
    }
}

/// The sum of every sample of `name` in Prometheus text (`name{…} V` or
/// `name V`); None if there is none.
pub fn prometheus_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let value = match rest.chars().next() {
            Some('{') => rest.rsplit_once('}').map(|(_, v)| v),
            Some(' ') => Some(rest),
            _ => None,
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// A flow field as text: strings as they are, anything else as JSON.
pub fn field(flow: &Value, key: &str) -> String {
    match &flow[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// Writes `s` to stderr at once (test progress, shown with `--nocapture`).
pub fn note(s: &str) {
    let _ = writeln!(io::stderr(), "{s}");
}
