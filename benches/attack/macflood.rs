//! Ethernet frame flooder for `benches/attack/`: writes frames with random
//! source MAC addresses (and random unknown-unicast or broadcast
//! destinations) straight onto an interface through a raw `AF_PACKET`
//! socket, as a hostile container could, in batches of `sendmmsg(2)`.
//!
//! A standalone program (std only, built by the scripts with plain `rustc`,
//! like `benches/e2e/udpflood.rs`); run it inside the sandbox's namespace:
//!
//! ```text
//! macflood IFACE COUNT [--rate FPS] [--broadcast] [--size BYTES] [--seed N]
//! ```
//!
//! Sends COUNT frames (0: until killed) of SIZE bytes (default 60: the
//! minimum Ethernet frame without its FCS), as fast as the kernel takes
//! them, or at about FPS frames per second. Every frame has a new random
//! source MAC (an individual, locally administered address, never zero)
//! and, unless `--broadcast`, a new random individual destination, which
//! the switch has never learned: unknown unicast, flooded to every other
//! port of the network. The payload is an IPv4 ethertype with a zeroed
//! header that no stack accepts. The socket bypasses the interface's queuing
//! discipline (`PACKET_QDISC_BYPASS`), as a flood tool would. Prints
//! `sent=N secs=S fps=R errors=E` at the end (also on SIGINT/SIGTERM with
//! COUNT 0: the scripts stop it that way).

use std::io;
use std::os::raw::{c_int, c_uint, c_void};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "../support/mmsg.rs"]
mod mmsg;
use mmsg::{IoVec, MMsgHdr, MsgHdr, sendmmsg};

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;
/// `AF_PACKET`, `SOCK_RAW`, `ETH_P_ALL` (network byte order), `SOL_PACKET`,
/// `PACKET_QDISC_BYPASS` from the Linux headers.
const AF_PACKET: c_int = 17;
const SOCK_RAW: c_int = 3;
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();
const SOL_PACKET: c_int = 263;
const PACKET_QDISC_BYPASS: c_int = 20;
/// `SIGINT` and `SIGTERM`.
const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

/// `struct sockaddr_ll` from `<linux/if_packet.h>`.
#[repr(C)]
struct SockaddrLl {
    family: u16,
    protocol: u16,
    ifindex: c_int,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

unsafe extern "C" {
    fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    fn if_nametoindex(name: *const u8) -> c_uint;
    fn signal(sig: c_int, handler: extern "C" fn(c_int)) -> usize;
}

/// Set by SIGINT/SIGTERM: stop and report.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// xorshift64*: fast, and plenty random for addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random individual, locally administered, non-zero MAC.
    fn station(&mut self) -> [u8; 6] {
        let b = self.next().to_be_bytes();
        [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5] | 1]
    }
}

struct Options {
    iface: String,
    count: u64,
    rate: Option<f64>,
    broadcast: bool,
    size: usize,
    seed: u64,
}

fn parse(args: &[String]) -> Option<Options> {
    let [iface, count, rest @ ..] = args else { return None };
    let mut o = Options {
        iface: iface.clone(),
        count: count.parse().ok()?,
        rate: None,
        broadcast: false,
        size: 60,
        seed: u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--rate" => o.rate = Some(it.next()?.parse().ok().filter(|r: &f64| *r > 0.0)?),
            "--broadcast" => o.broadcast = true,
            "--size" => o.size = it.next()?.parse().ok().filter(|s| (14..=9000).contains(s))?,
            "--seed" => o.seed = it.next()?.parse::<u64>().ok()? | 1,
            _ => return None,
        }
    }
    Some(o)
}

/// A raw packet socket bound to `iface`, bypassing its qdisc.
fn open(iface: &str) -> io::Result<c_int> {
    let name: Vec<u8> = iface.bytes().chain([0]).collect();
    // SAFETY: `name` is NUL-terminated and alive for the call.
    let ifindex = unsafe { if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { socket(AF_PACKET, SOCK_RAW, c_int::from(ETH_P_ALL_BE)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = SockaddrLl {
        family: AF_PACKET as u16,
        protocol: ETH_P_ALL_BE,
        ifindex: ifindex as c_int,
        hatype: 0,
        pkttype: 0,
        halen: 0,
        addr: [0; 8],
    };
    // SAFETY: `addr` is a valid sockaddr_ll and the length matches its size.
    if unsafe { bind(fd, (&raw const addr).cast(), size_of::<SockaddrLl>() as u32) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let one: c_int = 1;
    // SAFETY: `one` is a live c_int and the length matches; failure only costs speed.
    if unsafe { setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, (&raw const one).cast(), 4) } != 0 {
        eprintln!("macflood: PACKET_QDISC_BYPASS: {}", io::Error::last_os_error());
    }
    Ok(fd)
}

fn run(o: &Options) -> io::Result<()> {
    let fd = open(&o.iface)?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
    let mut rng = Rng(o.seed);
    let mut bufs: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| {
            let mut f = vec![0u8; o.size];
            if o.size >= 14 {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            f
        })
        .collect();
    let mut iovs: Vec<IoVec> = bufs.iter_mut().map(|b| IoVec { base: b.as_mut_ptr().cast(), len: b.len() }).collect();
    let mut msgs: Vec<MMsgHdr> = iovs
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
    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) && (o.count == 0 || sent < o.count) {
        let want = if o.count == 0 { BATCH } else { BATCH.min((o.count - sent) as usize) };
        let want = match o.rate {
            // Paced: at most what the rate allows by now, at least one frame.
            Some(rate) => {
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                if due <= sent {
                    std::thread::sleep(Duration::from_secs_f64(((sent + 1) as f64 / rate - start.elapsed().as_secs_f64()).max(0.0)));
                    continue;
                }
                want.min((due - sent) as usize)
            }
            None => want,
        };
        for buf in &mut bufs[..want] {
            let dst = if o.broadcast { [0xff; 6] } else { rng.station() };
            buf[0..6].copy_from_slice(&dst);
            buf[6..12].copy_from_slice(&rng.station());
        }
        // SAFETY: `msgs[..want]` are valid headers whose iovecs point into `bufs`, alive for the
        // call; the socket is bound to the interface, so no address is needed.
        let n = unsafe { sendmmsg(fd, msgs.as_mut_ptr(), want as c_uint, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // A full device queue, a link without carrier (a TAP whose switch is down:
                // ENOBUFS) or an interrupted call: try again a little later.
                Some(105 | 4 | 11) => {
                    errors += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => return Err(e),
            }
        } else {
            sent += n as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("sent={sent} secs={secs:.3} fps={:.0} errors={errors}", sent as f64 / secs.max(1e-9));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(options) = parse(&args) else {
        eprintln!("usage: macflood IFACE COUNT [--rate FPS] [--broadcast] [--size BYTES] [--seed N]");
        return ExitCode::from(2);
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("macflood: {e}");
            ExitCode::FAILURE
        }
    }
}
