//! What sits behind a frame port, as the datapath loop uses it: read one
//! frame, write one frame, say which descriptor signals readiness. In the
//! manner of smoltcp's `phy::Device`, the loop does not know whether a
//! kernel TAP or an in-memory queue (the deterministic tests') is behind
//! it. Every frame, either way, is preceded by a 12-byte virtio-net header.
//!
//! A port's device is a trait object: one indirect call per read or write,
//! next to a system call for the real TAP, and nothing allocated per frame.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use crate::sys::tap::Tap;

/// A frame device behind a bridge port (see the module docs). Errors are
/// the TAP's: `WouldBlock` when no frame is queued (read) or the queue is
/// full (write), `EBADFD` once the device is unregistered.
pub(crate) trait PortDevice: Send {
    /// Reads one frame, virtio-net header first, into `buf`; returns the
    /// total length.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes one frame; `buf` starts with the virtio-net header.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;

    /// Writes one frame gathered from `bufs` (header, then frame).
    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// The descriptor to register with the event loop; `None` for a device
    /// whose readiness the caller signals itself.
    fn event_fd(&self) -> Option<RawFd>;

    /// The kernel TAP behind the device, handed back to the control plane
    /// when its port is removed (it deletes or keeps the device).
    fn into_tap(self: Box<Self>) -> Option<Tap>;
}

impl PortDevice for Tap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Tap::recv(self, buf)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        Tap::send(self, buf)
    }

    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Tap::send_vectored(self, bufs)
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }

    fn into_tap(self: Box<Self>) -> Option<Tap> {
        Some(*self)
    }
}
