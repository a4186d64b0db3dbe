//! Seeing and making raw Ethernet frames on an interface inside a namespace,
//! with an `AF_PACKET` socket (no tcpdump needed): [`Capture`] records every
//! frame the interface receives, [`inject_frame`] transmits one.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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

/// A running capture on one interface; frames are collected on a thread
/// until [`Capture::stop`] (or drop).
pub struct Capture {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Frame>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing every frame on `ifname` in namespace `ns`. Frames
    /// that are already queued when this returns are not lost.
    pub fn start(ns: &str, ifname: &str) -> io::Result<Capture> {
        let ifname = ifname.to_owned();
        let fd = in_netns(ns, move || packet_socket(&ifname))??;
        set_recv_timeout(&fd, Duration::from_millis(50))?;
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (s, f) = (stop.clone(), frames.clone());
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(frame) = recv_frame(&fd, &mut buf) {
                    f.lock().unwrap_or_else(|p| p.into_inner()).push(frame);
                }
            }
        });
        Ok(Capture { stop, frames, reader: Some(reader) })
    }

    /// Every frame seen so far, in order; the capture goes on (for waiting
    /// until an expected frame arrives).
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the capture and returns every frame seen, in order.
    pub fn stop(mut self) -> Vec<Frame> {
        self.halt();
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
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

/// An `AF_PACKET`/`SOCK_RAW` socket for all protocols, bound to `ifname` in
/// the calling thread's namespace.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let name = CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in ifname"))?;
    // SAFETY: if_nametoindex reads a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname}")));
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds an open socket to a fully initialised sockaddr_ll of the stated size.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn set_recv_timeout(fd: &OwnedFd, t: Duration) -> io::Result<()> {
    let tv = libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros() as libc::suseconds_t };
    // SAFETY: sets SO_RCVTIMEO from a valid timeval of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Receives one frame (or times out with `WouldBlock`).
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
