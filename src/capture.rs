//! Seeing and making raw Ethernet frames on an interface inside a namespace,
//! with an `AF_PACKET` socket (no tcpdump needed): [`Capture`] records every
//! frame the interface receives, [`inject_frame`] transmits one.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::in_netns;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The whole Ethernet frame, starting at the destination MAC.
    pub bytes: Vec<u8>,
    /// True if the interface sent it, false if it received it.
    pub outgoing: bool,
}

impl Frame {
    /// Destination MAC.
    pub fn dst(&self) -> [u8; 6] {
        self.mac_at(0)
    }

    /// Source MAC.
    pub fn src(&self) -> [u8; 6] {
        self.mac_at(6)
    }

    /// EtherType (0 for runts).
    pub fn ethertype(&self) -> u16 {
        match self.bytes.get(12..14) {
            Some(t) => u16::from_be_bytes([t[0], t[1]]),
            None => 0,
        }
    }

    fn mac_at(&self, at: usize) -> [u8; 6] {
        let mut m = [0u8; 6];
        if let Some(b) = self.bytes.get(at..at + 6) {
            m.copy_from_slice(b);
        }
        m
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
        write!(
            f,
            "{} {} -> {} type {:04x} len {}",
            if self.outgoing { "out" } else { "in " },
            mac(self.src()),
            mac(self.dst()),
            self.ethertype(),
            self.bytes.len()
        )
    }
}

/// How long [`Capture::frames`], [`Capture::stop`] and [`Capture::wait_for`]
/// wait for the reader thread to confirm that it has read everything queued.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Receive buffer asked for (`SO_RCVBUFFORCE`, we are root): room for the
/// bursts of a bulk TCP transfer while the reader thread is not scheduled.
const RECV_BUFFER: libc::c_int = 64 << 20;
/// Largest frame read whole: a 64 KiB GSO packet and its headers.
const MAX_FRAME: usize = 128 * 1024;
/// Frames read before they are handed over, under a steady stream.
const PUBLISH_EVERY: usize = 64;

/// A running capture on one interface; frames are collected on a thread
/// until [`Capture::stop`] (or drop).
///
/// The socket is bound to the interface before [`Capture::start`] returns,
/// so every frame the interface sends or receives after that is queued for
/// the capture. [`Capture::frames`], [`Capture::wait_for`] and
/// [`Capture::stop`] first have the reader thread read everything queued
/// until then (until the socket would block), so what they return includes
/// every frame that reached the interface before they were called, with no
/// guessed delay. A capture that lost frames (its socket buffer overflowed)
/// cannot vouch for the absence of a frame: [`Capture::stop`] panics then.
pub struct Capture {
    what: String,
    shared: Arc<Shared>,
    /// Written to wake the reader thread (an eventfd).
    wake: Arc<OwnedFd>,
    reader: Option<thread::JoinHandle<()>>,
}

/// What the reader thread and the test share.
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever frames were added or a sync request was served.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    /// Sync requests made so far (each a number, in order).
    requested: u64,
    /// Requests served: the socket was read until empty after they were made.
    served: u64,
    /// Set to stop the reader after its next sync.
    stop: bool,
    /// The reader has ended (stopped, or failed).
    done: bool,
    /// Why the reader failed, if it did.
    error: Option<String>,
    /// Frames the kernel dropped for want of buffer space.
    dropped: u64,
}

impl Capture {
    /// Starts capturing every frame on `ifname` in namespace `ns`. When this
    /// returns the socket is bound to the interface and receiving: frames
    /// that reach the interface from then on are all seen.
    pub fn start(ns: &str, ifname: &str) -> io::Result<Capture> {
        let what = format!("capture on {ifname} in {ns}");
        let name = ifname.to_owned();
        let fd = in_netns(ns, move || capture_socket(&name))??;
        // SAFETY: plain eventfd(2) call with constant arguments.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let reader = {
            let (shared, wake) = (shared.clone(), wake.clone());
            thread::Builder::new().name("capture".into()).spawn(move || read_loop(&fd, &wake, &shared))?
        };
        Ok(Capture { what, shared, wake, reader: Some(reader) })
    }

    /// Every frame seen so far, in order, including every frame queued
    /// before this call; the capture goes on.
    pub fn frames(&self) -> Vec<Frame> {
        self.sync_or_panic();
        self.state().frames.clone()
    }

    /// Waits until `cond` holds for the frames seen so far (checked on every
    /// new frame) or `timeout` passes; returns whether it held. The capture
    /// goes on either way.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&[Frame]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if cond(&state.frames) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || state.done {
                break;
            }
            state = self.shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(state);
        // Whatever was queued at the deadline counts too.
        self.sync_or_panic();
        cond(&self.state().frames)
    }

    /// Stops the capture and returns every frame seen, in order: all those
    /// queued on the socket when it is called are read first. Panics if the
    /// capture failed or lost frames.
    pub fn stop(mut self) -> Vec<Frame> {
        self.halt();
        let mut state = self.state();
        if let Some(e) = &state.error {
            panic!("{} failed: {e}", self.what);
        }
        assert!(
            state.dropped == 0,
            "{} lost {} frames (socket buffer full): it cannot vouch for what it did not see",
            self.what,
            state.dropped
        );
        std::mem::take(&mut state.frames)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Has the reader read the socket until it would block, after this call
    /// began, and waits until it says it has (or has ended); false if it did
    /// not within [`SYNC_TIMEOUT`].
    fn sync(&self) -> bool {
        let ticket = {
            let mut state = self.state();
            if state.done {
                return true;
            }
            state.requested += 1;
            state.requested
        };
        self.wake();
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut state = self.state();
        while state.served < ticket && !state.done {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// [`Capture::sync`], or a panic saying the reader fell behind.
    fn sync_or_panic(&self) {
        assert!(self.sync(), "{}: the reader thread did not catch up within {SYNC_TIMEOUT:?}", self.what);
    }

    fn wake(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64 to an open eventfd. It
        // cannot fail short of the counter overflowing.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Reads what is queued, then ends the reader thread.
    fn halt(&mut self) {
        let Some(reader) = self.reader.take() else { return };
        self.state().stop = true;
        if !self.sync() {
            self.state().error.get_or_insert_with(|| format!("the reader did not catch up within {SYNC_TIMEOUT:?}"));
        }
        if reader.join().is_err() {
            self.state().error.get_or_insert_with(|| "the reader thread panicked".into());
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The reader thread: waits for frames or a sync request; on either, reads
/// the socket until it would block, then publishes what it read and which
/// requests that served. Ends after serving a request made with `stop` set,
/// or on an error.
fn read_loop(fd: &OwnedFd, wake: &OwnedFd, shared: &Shared) {
    let mut buf = vec![0u8; MAX_FRAME];
    let finish = |error: Option<String>| {
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.done = true;
        if state.error.is_none() {
            state.error = error;
        }
        drop(state);
        shared.changed.notify_all();
    };
    loop {
        if let Err(e) = wait_readable(fd, wake) {
            return finish(Some(format!("poll: {e}")));
        }
        // Reset the eventfd before reading the request counter: a request
        // made after this wakes the next poll.
        let mut counter = 0u64;
        // SAFETY: reads 8 bytes into a valid u64 from an open, non-blocking
        // eventfd; EAGAIN (nothing written) is fine.
        unsafe { libc::read(wake.as_raw_fd(), (&raw mut counter).cast(), 8) };
        // The requests this pass serves: those made before the socket is
        // read until it would block.
        let (ticket, stop) = {
            let state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            (state.requested, state.stop)
        };
        let mut got = Vec::new();
        let result = loop {
            match recv_frame(fd, &mut buf) {
                Ok(frame) => {
                    got.push(frame);
                    // Under a steady stream, publish as it goes (for
                    // `wait_for`), without serving requests yet.
                    if got.len() >= PUBLISH_EVERY {
                        publish(shared, &mut got, None, 0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reported once when the interface goes down; frames come
                // again when it comes back up.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {}
                Err(e) => break Err(e),
            }
        };
        let dropped = match dropped_frames(fd) {
            Ok(n) => n,
            Err(e) => return finish(Some(format!("PACKET_STATISTICS: {e}"))),
        };
        publish(shared, &mut got, result.is_ok().then_some(ticket), dropped);
        if let Err(e) = result {
            return finish(Some(format!("recv: {e}")));
        }
        if stop {
            return finish(None);
        }
    }
}

/// Adds `frames` to what the capture has seen, marks the requests up to
/// `served` as served, and wakes whoever waits.
fn publish(shared: &Shared, frames: &mut Vec<Frame>, served: Option<u64>, dropped: u64) {
    {
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.frames.append(frames);
        if let Some(ticket) = served {
            state.served = state.served.max(ticket);
        }
        state.dropped += dropped;
    }
    shared.changed.notify_all();
}

/// Blocks until the capture socket or the eventfd is readable (or has an
/// error to report).
fn wait_readable(fd: &OwnedFd, wake: &OwnedFd) -> io::Result<()> {
    let mut fds = [
        libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        // SAFETY: polls two valid pollfd structs for open fds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Frames the kernel dropped on this socket since the last call (the
/// counters reset when read).
fn dropped_frames(fd: &OwnedFd) -> io::Result<u64> {
    // SAFETY: tpacket_stats is plain old data; all-zero is a valid value.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: reads PACKET_STATISTICS into a tpacket_stats of the stated size.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, (&raw mut stats).cast(), &mut len)
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(u64::from(stats.tp_drops)) }
}

/// Sends one raw Ethernet frame out of `ifname` in namespace `ns`.
pub fn inject_frame(ns: &str, ifname: &str, frame: &[u8]) -> io::Result<()> {
    let ifname = ifname.to_owned();
    let frame = frame.to_vec();
    in_netns(ns, move || -> io::Result<()> {
        let fd = packet_socket(&ifname)?;
        // SAFETY: sends from a valid buffer of the given length on an open socket.
        let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    })?
}

/// Sends raw Ethernet frames out of `ifname` in namespace `ns`, one after
/// another on one socket (a burst, within a few milliseconds). Returns how
/// many the kernel took; stops at the first refusal.
pub fn inject_frames(ns: &str, ifname: &str, frames: &[Vec<u8>]) -> io::Result<usize> {
    let ifname = ifname.to_owned();
    let frames = frames.to_vec();
    in_netns(ns, move || -> io::Result<usize> {
        let fd = packet_socket(&ifname)?;
        for (sent, frame) in frames.iter().enumerate() {
            // SAFETY: sends from a valid buffer of the given length on an open socket.
            let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if sent == 0 { Err(e) } else { Ok(sent) };
            }
        }
        Ok(frames.len())
    })?
}

/// An `AF_PACKET`/`SOCK_RAW` socket for all protocols, bound to `ifname` in
/// the calling thread's namespace.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let index = if_index(ifname)?;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    bind_packet(&fd, index, proto)?;
    Ok(fd)
}

/// A non-blocking `AF_PACKET`/`SOCK_RAW` socket that receives every frame
/// `ifname` (in the calling thread's namespace) sends or receives, and only
/// those: it is made with protocol 0, so it receives nothing until `bind`
/// gives the protocol and the interface together (a socket made for
/// `ETH_P_ALL` would queue frames of every interface until bound). Its
/// drop counters are cleared, so they count from the bind.
fn capture_socket(ifname: &str) -> io::Result<OwnedFd> {
    let index = if_index(ifname)?;
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Best effort: without it the default buffer is used (and any loss is
    // still reported).
    let _ = set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECV_BUFFER)
        .or_else(|_| set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECV_BUFFER));
    bind_packet(&fd, index, (libc::ETH_P_ALL as u16).to_be())?;
    dropped_frames(&fd)?;
    Ok(fd)
}

/// The index of `ifname` in the calling thread's namespace.
fn if_index(ifname: &str) -> io::Result<u32> {
    let name = CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in ifname"))?;
    // SAFETY: if_nametoindex reads a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")));
    }
    Ok(index)
}

/// Binds a packet socket to interface `index` and protocol `proto` (network
/// byte order); from then on it receives that interface's frames.
fn bind_packet(fd: &OwnedFd, index: u32, proto: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds an open socket to a fully initialised sockaddr_ll of the stated size.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn set_int_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: sets an int-valued socket option from a valid c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Receives one frame (`WouldBlock` when none is queued).
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Frame> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: receives into a valid buffer and a sockaddr_ll of the stated size.
    let n = unsafe {
        libc::recvfrom(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0, (&raw mut sll).cast(), &mut len)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let outgoing = sll.sll_pkttype == libc::PACKET_OUTGOING;
    Ok(Frame { bytes: buf[..n as usize].to_vec(), outgoing })
}
