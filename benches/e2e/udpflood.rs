//! Batched UDP load generator and sink for `benches/e2e.sh`.
//!
//! A standalone program (std only, built by the script with plain `rustc`): iperf3 sends one
//! datagram per syscall and tops out near 170 kpps on this machine kind, which hides the
//! difference between fast paths. This tool sends batches with `sendmmsg(2)` and drains with
//! `recvmmsg(2)`.
//!
//! ```text
//! udpflood send ADDR:PORT SECONDS [SIZE [RATE [TRAIN]]]  # prints "sent=N secs=S"; RATE in datagrams/s, 0 = flat out
//! udpflood recv ADDR:PORT IDLE_MS          # prints "received=N span=S" when IDLE_MS pass without traffic
//! ```
//!
//! `recv` waits for the first datagram without limit (the script kills it if the sender fails)
//! and stops once no datagram arrived for IDLE_MS after that.
//!
//! With a RATE the sender paces itself: batches of `PACED_BATCH` datagrams, each sent when the
//! running total falls behind `RATE × elapsed` (the script's loss-onset sweep).
//!
//! With a TRAIN above 1 every message is a UDP GSO train of TRAIN datagrams of SIZE bytes
//! (`UDP_SEGMENT`), as QUIC servers send; `sent` still counts datagrams.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_uint, c_void};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[path = "../support/mmsg.rs"]
mod mmsg;
use mmsg::{IoVec, MMsgHdr, MsgHdr, sendmmsg};

/// Datagrams per `sendmmsg`/`recvmmsg` call.
const BATCH: usize = 64;
/// Datagrams per `sendmmsg` when paced (short bursts, so queues see the rate, not the batch).
const PACED_BATCH: usize = 16;
/// `MSG_WAITFORONE` from `<sys/socket.h>`: block for the first datagram only.
const MSG_WAITFORONE: c_int = 0x10000;
/// Socket buffer size requested for both ends (the kernel caps it at `net.core.*mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

unsafe extern "C" {
    fn recvmmsg(fd: c_int, msgs: *mut MMsgHdr, vlen: c_uint, flags: c_int, timeout: *mut c_void) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
}

/// `SOL_SOCKET`, `SO_SNDBUF`, `SO_RCVBUF` from `<asm-generic/socket.h>`.
const SOL_SOCKET: c_int = 1;
const SO_SNDBUF: c_int = 7;
const SO_RCVBUF: c_int = 8;
/// `SOL_UDP` and `UDP_SEGMENT` from `<linux/udp.h>`.
const SOL_UDP: c_int = 17;
const UDP_SEGMENT: c_int = 103;

/// One batch of message headers pointing at `BATCH` buffers of `size` bytes each.
struct Batch {
    _bufs: Vec<Vec<u8>>,
    _iovs: Vec<IoVec>,
    msgs: Vec<MMsgHdr>,
}

impl Batch {
    fn new(size: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; size]).collect();
        let mut iovs: Vec<IoVec> =
            bufs.iter_mut().map(|b| IoVec { base: b.as_mut_ptr().cast(), len: b.len() }).collect();
        let msgs = iovs
            .iter_mut()
            .map(|iov| MMsgHdr {
                hdr: MsgHdr {
                    name: std::ptr::null_mut(),
                    namelen: 0,
                    iov,
                    iovlen: 1,
                    control: std::ptr::null_mut(),
                    controllen: 0,
                    flags: 0,
                },
                len: 0,
            })
            .collect();
        Batch { _bufs: bufs, _iovs: iovs, msgs }
    }

    /// Sends the first `count` (at most `BATCH`) datagrams on a connected socket; returns how
    /// many the kernel took.
    fn send(&mut self, sock: &UdpSocket, count: usize) -> io::Result<usize> {
        // SAFETY: `msgs` holds BATCH valid headers whose iovecs point into `_bufs`, all owned by
        // `self` and alive for the call; the socket is connected so no address is needed.
        let n = unsafe { sendmmsg(sock.as_raw_fd(), self.msgs.as_mut_ptr(), count.min(BATCH) as c_uint, 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Receives up to a batch, blocking (up to the socket's read timeout) for the first datagram.
    fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        // SAFETY: as in `send`; the kernel writes at most `len` bytes into each buffer, and a
        // null timeout is allowed.
        let n = unsafe {
            recvmmsg(sock.as_raw_fd(), self.msgs.as_mut_ptr(), BATCH as c_uint, MSG_WAITFORONE, std::ptr::null_mut())
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

/// Sets an integer `SOL_SOCKET` option; failure is not fatal for a benchmark, so it only warns.
fn set_buffer(sock: &UdpSocket, opt: c_int) {
    let value = SOCKET_BUFFER as c_int;
    // SAFETY: `value` is a live c_int and the length passed matches its size.
    let rc = unsafe { setsockopt(sock.as_raw_fd(), SOL_SOCKET, opt, (&raw const value).cast(), 4) };
    if rc != 0 {
        eprintln!("udpflood: setsockopt({opt}): {}", io::Error::last_os_error());
    }
}

fn send(dst: SocketAddr, secs: f64, size: usize, rate: u64, train: usize) -> io::Result<()> {
    let sock = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(dst)?;
    set_buffer(&sock, SO_SNDBUF);
    if train > 1 {
        let segment = size as c_int;
        // SAFETY: `segment` is a live c_int and the length passed matches its size.
        let rc = unsafe { setsockopt(sock.as_raw_fd(), SOL_UDP, UDP_SEGMENT, (&raw const segment).cast(), 4) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut batch = Batch::new(size * train);
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    let count = if rate > 0 { PACED_BATCH } else { BATCH };
    loop {
        let elapsed = start.elapsed();
        if elapsed >= limit {
            break;
        }
        if rate > 0 {
            // Where the total should be now; sleep until the next batch is due.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if due > elapsed {
                std::thread::sleep(due - elapsed);
                continue;
            }
        }
        match batch.send(&sock, count) {
            Ok(n) => sent += (n * train) as u64,
            // ICMP port unreachable (receiver not up yet) or a full device queue: keep going.
            Err(e) if matches!(e.raw_os_error(), Some(libc_errno::ECONNREFUSED | libc_errno::ENOBUFS)) => errors += 1,
            Err(e) => return Err(e),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("sent={sent} secs={elapsed:.3} errors={errors}");
    Ok(())
}

fn recv(bind: SocketAddr, idle: Duration) -> io::Result<()> {
    let sock = UdpSocket::bind(bind)?;
    set_buffer(&sock, SO_RCVBUF);
    let mut batch = Batch::new(2048);
    // Ready: the script waits for this line before starting the sender.
    println!("listening");
    let mut received: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        // Block indefinitely before the first datagram, then only for `idle`.
        sock.set_read_timeout(first.map(|_| idle))?;
        match batch.recv(&sock) {
            Ok(n) => {
                received += n as u64;
                last = Instant::now();
                first.get_or_insert(last);
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let span = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!("received={received} span={span:.3}");
    Ok(())
}

/// The few errno values this tool tells apart (Linux numbering).
mod libc_errno {
    /// Connection refused.
    pub(crate) const ECONNREFUSED: i32 = 111;
    /// No buffer space available.
    pub(crate) const ENOBUFS: i32 = 105;
}

fn usage() -> ExitCode {
    eprintln!("usage: udpflood send ADDR:PORT SECONDS [SIZE [RATE [TRAIN]]] | udpflood recv ADDR:PORT IDLE_MS");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["send", addr, secs, rest @ ..] if rest.len() <= 3 => {
            let size = rest.first().map_or(Ok(64), |s| s.parse());
            let rate = rest.get(1).map_or(Ok(0), |s| s.parse());
            let train = rest.get(2).map_or(Ok(1), |s| s.parse::<usize>());
            match (addr.parse(), secs.parse(), size, rate, train) {
                (Ok(a), Ok(s), Ok(z), Ok(r), Ok(t)) if z > 0 && t > 0 && z * t <= 65507 => Some(send(a, s, z, r, t)),
                _ => None,
            }
        }
        ["recv", addr, idle] => match (addr.parse(), idle.parse()) {
            (Ok(a), Ok(ms)) => Some(recv(a, Duration::from_millis(ms))),
            _ => None,
        },
        _ => None,
    };
    match parsed {
        None => usage(),
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("udpflood: {e}");
            ExitCode::FAILURE
        }
    }
}
