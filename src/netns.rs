//! Acting inside a named network namespace (`/run/netns/NAME`): running
//! tools there with `ip netns exec`, and running Rust code there on a thread
//! that has joined the namespace (sockets keep the namespace they were
//! created in, so they can be used from any thread afterwards).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::output_with_timeout;
use crate::wait::recv_within;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Longest a tool run in a namespace may take.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd args…` inside namespace `ns` (`ip netns exec`). A timeout is
/// reported as a failed `Output` with the reason on stderr.
pub fn netns_exec(ns: &str, cmd: &str, args: &[&str]) -> Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, cmd]).args(args);
    output_with_timeout(&mut c, EXEC_TIMEOUT).unwrap_or_else(|e| {
        use std::os::unix::process::ExitStatusExt;
        Output { status: std::process::ExitStatus::from_raw(1 << 8), stdout: Vec::new(), stderr: e.into_bytes() }
    })
}

/// Runs `cmd args…` inside namespace `ns`, panics with its output unless it
/// succeeds, and returns its stdout.
pub fn netns_exec_ok(ns: &str, cmd: &str, args: &[&str]) -> String {
    let out = netns_exec(ns, cmd, args);
    assert!(
        out.status.success(),
        "`{cmd} {}` in {ns} failed ({}): {}\nstdout: {}",
        args.join(" "),
        out.status,
        crate::process::text(&out.stderr),
        crate::process::text(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends each of `payloads` as one UDP datagram from address `src` (any
/// port) in namespace `ns` to `dst`.
pub fn udp_send(ns: &str, src: Ipv4Addr, dst: SocketAddr, payloads: &[Vec<u8>]) -> io::Result<()> {
    let socket = in_netns(ns, move || UdpSocket::bind(SocketAddr::from((src, 0))))??;
    for p in payloads {
        socket.send_to(p, dst)?;
    }
    Ok(())
}

/// Pings `ip` from namespace `ns` with `count` echo requests (200 ms apart,
/// 1 s wait for the last reply); true if any reply came back. An IPv6
/// address is pinged with `ping -6`. When none did, what ping said goes to
/// stderr (shown with a failing test's output: no reply at all,
/// "Destination Host Unreachable" after a failed ARP or neighbour
/// resolution, or `ip netns exec` itself failing).
pub fn ping(ns: &str, ip: impl Into<IpAddr>, count: u32) -> bool {
    let ip = ip.into();
    let family: &[&str] = if ip.is_ipv6() { &["-6"] } else { &[] };
    let ip = ip.to_string();
    let count = count.to_string();
    let args: Vec<&str> = family.iter().copied().chain(["-n", "-c", &count, "-i", "0.2", "-W", "1", &ip]).collect();
    let out = netns_exec(ns, "ping", &args);
    if !out.status.success() {
        eprintln!(
            "ping {ip} from {ns}: {} (no reply)\n{}\n{}",
            out.status,
            crate::process::text(&out.stdout),
            crate::process::text(&out.stderr)
        );
    }
    out.status.success()
}

/// Pings `ip` from `ns` once per attempt until a reply arrives or `timeout`
/// passes; returns how long it took.
pub fn wait_for_ping(ns: &str, ip: impl Into<IpAddr>, timeout: Duration) -> Option<Duration> {
    let ip = ip.into();
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ping(ns, ip, 1) {
            return Some(start.elapsed());
        }
    }
    None
}

/// Runs `f` on a fresh thread that has joined the network namespace
/// `/run/netns/<ns>`. The calling thread's namespace is untouched.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let path = std::path::Path::new(NETNS_DIR).join(ns);
    let handle = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    thread::spawn(move || -> io::Result<T> {
        // SAFETY: setns on a valid, open namespace fd; it only changes this
        // thread's network namespace, and the thread ends after `f`.
        if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("thread in netns panicked"))?
}

/// Result of [`tcp_transfer`].
#[derive(Debug, Clone, Copy)]
pub struct TransferReport {
    /// Bytes the server received.
    pub bytes: u64,
    /// True if the server received exactly the bytes sent (length and hash).
    pub intact: bool,
    /// Time from connect to the server's end of stream.
    pub elapsed: Duration,
}

impl TransferReport {
    /// Throughput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Sends `len` bytes of seeded pseudo-random data over TCP from namespace
/// `client_ns` to a listener on `server_ip` (IPv4 or IPv6) in `server_ns`,
/// and checks that exactly those bytes arrive (length and 64-bit FNV-1a hash).
pub fn tcp_transfer(
    server_ns: &str,
    server_ip: impl Into<IpAddr>,
    client_ns: &str,
    len: u64,
) -> io::Result<TransferReport> {
    tcp_transfer_paced(server_ns, server_ip, client_ns, len, Duration::ZERO)
}

/// Like [`tcp_transfer`], but over one connection that lasts at least
/// `spread`: the client sends in 64 KiB chunks and waits before each one
/// until its share of `spread` has passed, so a modest stream can run
/// alongside something else (a key rotation, say) without hogging the CPU.
pub fn tcp_transfer_paced(
    server_ns: &str,
    server_ip: impl Into<IpAddr>,
    client_ns: &str,
    len: u64,
    spread: Duration,
) -> io::Result<TransferReport> {
    let server_ip = server_ip.into();
    let listener = in_netns(server_ns, move || TcpListener::bind(SocketAddr::from((server_ip, 0))))??;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> io::Result<(u64, u64)> {
        let (s, _) = accept_timeout(&listener, Duration::from_secs(20))?;
        let mut hash = Fnv::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = recv_within(&s, Duration::from_secs(20), |mut s| s.read(&mut buf))?;
            if n == 0 {
                return Ok((total, hash.0));
            }
            hash.update(&buf[..n]);
            total += n as u64;
        }
    });
    let start = Instant::now();
    let mut client = in_netns(client_ns, move || TcpStream::connect_timeout(&addr, Duration::from_secs(10)))??;
    client.set_write_timeout(Some(Duration::from_secs(20)))?;
    let mut expected = Fnv::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; if spread.is_zero() { 256 * 1024 } else { 64 * 1024 }];
    let mut left = len;
    while left > 0 {
        if !spread.is_zero() {
            // Due time of the next byte: its share of `spread`.
            let due = spread.mul_f64((len - left) as f64 / len as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
        let n = left.min(chunk.len() as u64) as usize;
        for word in chunk[..n].chunks_mut(8) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            word.copy_from_slice(&rng.to_le_bytes()[..word.len()]);
        }
        client.write_all(&chunk[..n])?;
        expected.update(&chunk[..n]);
        left -= n as u64;
    }
    client.shutdown(std::net::Shutdown::Write)?;
    let (bytes, hash) = server.join().map_err(|_| io::Error::other("server thread panicked"))??;
    let elapsed = start.elapsed();
    Ok(TransferReport { bytes, intact: bytes == len && hash == expected.0, elapsed })
}

/// Most connections [`transfers_until`] makes before it gives up.
pub const MAX_HASHED_CONNECTIONS: u64 = 40;

/// Makes TCP connections of `len` bytes from `client_ns` to `server` (a
/// namespace and an address), each checked to arrive intact, until `done`
/// holds (checked before each one); returns how many it made.
///
/// For checks of how the kernel or the switch spreads connections: each new
/// connection is hashed by its ports (to a queue, a socket, a sender
/// session), so it reaches the awaited one with even odds or better, and
/// [`MAX_HASHED_CONNECTIONS`] all missing it is a bug, not bad luck. Then it
/// panics with `what()`, which can describe the state reached.
pub fn transfers_until(
    server: (&str, IpAddr),
    client_ns: &str,
    len: u64,
    mut done: impl FnMut() -> bool,
    what: impl Fn() -> String,
) -> u64 {
    let mut made = 0;
    while !done() {
        assert!(made < MAX_HASHED_CONNECTIONS, "{MAX_HASHED_CONNECTIONS} connections and {}", what());
        let r = tcp_transfer(server.0, server.1, client_ns, len).expect("a TCP transfer");
        assert!(r.intact, "TCP corrupted on the way to {}: {r:?}", server.1);
        made += 1;
    }
    made
}

/// A TCP stream from `client_ns` to a server in `server_ns` that sends
/// as fast as the path takes it (the same buffer again and again, nothing
/// generated or checked, so the sender is not the bottleneck even in a debug
/// build) until [`TcpBlast::stop`]: load on whatever forwards it.
pub struct TcpBlast {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: thread::JoinHandle<io::Result<u64>>,
    server: thread::JoinHandle<io::Result<u64>>,
}

impl TcpBlast {
    /// Connects and starts sending.
    pub fn start(server_ns: &str, server_ip: impl Into<IpAddr>, client_ns: &str) -> io::Result<TcpBlast> {
        let server_ip = server_ip.into();
        let listener = in_netns(server_ns, move || TcpListener::bind(SocketAddr::from((server_ip, 0))))??;
        let addr = listener.local_addr()?;
        let server = thread::spawn(move || -> io::Result<u64> {
            let (s, _) = accept_timeout(&listener, Duration::from_secs(20))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match recv_within(&s, Duration::from_secs(20), |mut s| s.read(&mut buf))? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        });
        let mut conn = in_netns(client_ns, move || TcpStream::connect_timeout(&addr, Duration::from_secs(10)))??;
        conn.set_write_timeout(Some(Duration::from_secs(20)))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let client = thread::spawn(move || -> io::Result<u64> {
            let chunk = vec![0x5a_u8; 256 * 1024];
            let mut sent = 0u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                conn.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
            conn.shutdown(std::net::Shutdown::Write)?;
            Ok(sent)
        });
        Ok(TcpBlast { stop, client, server })
    }

    /// Stops sending; returns the bytes the server received, which must
    /// be all the client sent.
    pub fn stop(self) -> io::Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = self.client.join().map_err(|_| io::Error::other("blast client panicked"))??;
        let received = self.server.join().map_err(|_| io::Error::other("blast server panicked"))??;
        if sent != received {
            return Err(io::Error::other(format!("sent {sent} bytes, the server received {received}")));
        }
        Ok(received)
    }
}

/// `accept` with a deadline (the listener is polled non-blocking).
fn accept_timeout(l: &TcpListener, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false)?;
                return Ok((s, a));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection arrived"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// `ip -j addr show dev IFNAME` inside `ns`: the interface's JSON object, or
/// None if it does not exist there.
pub fn link_info(ns: &str, ifname: &str) -> Option<serde_json::Value> {
    let out = netns_exec(ns, "ip", &["-j", "addr", "show", "dev", ifname]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.first().cloned()
}

/// Names of all interfaces inside `ns`.
pub fn link_names(ns: &str) -> Vec<String> {
    let out = netns_exec(ns, "ip", &["-j", "link", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array().map(|a| a.iter().filter_map(|l| l["ifname"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// The IPv4 addresses (`a.b.c.d/n`) of `ifname` in `ns`.
pub fn ipv4_addrs(ns: &str, ifname: &str) -> Vec<String> {
    addrs(ns, ifname, |x| x["family"] == "inet")
}

/// The global IPv6 addresses (`x::y/n`) of `ifname` in `ns` (not the
/// link-local one every interface has).
pub fn ipv6_addrs(ns: &str, ifname: &str) -> Vec<String> {
    addrs(ns, ifname, |x| x["family"] == "inet6" && x["scope"] == "global")
}

fn addrs(ns: &str, ifname: &str, keep: impl Fn(&serde_json::Value) -> bool) -> Vec<String> {
    let Some(info) = link_info(ns, ifname) else { return Vec::new() };
    info["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| keep(x))
                .map(|x| format!("{}/{}", x["local"].as_str().unwrap_or("?"), x["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Moves the calling thread into the network namespace `/run/netns/<ns>`
/// for good; threads it spawns afterwards start there too. For benchmark
/// binaries whose every socket (an etcd client's, say) must live in a
/// namespace the benchmark made: call it first thing on the main thread.
pub fn join_netns(ns: &str) -> io::Result<()> {
    let path = std::path::Path::new(NETNS_DIR).join(ns);
    let handle = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    // SAFETY: setns on a valid, open namespace fd; it changes only this
    // thread's network namespace, which the caller asked for.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
