//! What sits behind a frame port, as the datapath loop uses it: read one
//! frame, write one frame, say which descriptor signals readiness. In the
//! manner of smoltcp's `phy::Device`, the loop does not know whether a
//! kernel TAP or an in-memory queue (the deterministic tests') is behind
//! it. Every frame, either way, is preceded by a 12-byte virtio-net header.
//!
//! A port's device is a trait object: one indirect call per read or write,
//! next to a system call for the real TAP, and nothing allocated per frame.
//!
//! Three kernel devices implement it: TAP queues, AF_XDP sockets
//! ([`XskDevice`]: reads and writes are ring operations without system
//! calls; the loop calls [`PortDevice::flush`] once per batch to hand the
//! written frames to the kernel) and `AF_PACKET` sockets on host
//! interfaces ([`PacketDevice`], raw uplinks).

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use crate::counters::DropReason;
use crate::offload::{self, SegmentBuf};
use crate::sys::afxdp::{CHUNK_FRAME_LEN, MAX_FRAME_LEN, RxIssue, TxChecksum, TxIssue, XdpMode, XdpPort};
use crate::sys::packet::{self, PacketSocket, Received};
use crate::sys::tap::Tap;
use crate::wire::VirtioNetHdr;

/// Most frames [`PortDevice::recv_batch`] reads in one call.
pub(crate) const MAX_BATCH: usize = packet::MAX_BATCH;

/// Frames a device dropped itself, by cause (totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DeviceDrops {
    /// Received, longer than the largest frame the switch carries
    /// (`oversize`).
    pub(crate) too_long: u64,
    /// Received as a descriptor chain that is broken (`xsk_bad_descriptor`).
    pub(crate) broken: u64,
    /// Written and queued, then not taken by the kernel on flush: its queue
    /// was full (`tx_queue_full`).
    pub(crate) tx_queue_full: u64,
    /// Written and queued, then refused by the kernel on flush (`tx_error`).
    pub(crate) tx_error: u64,
}

/// A frame device behind a bridge port (see the module docs). Errors are
/// the TAP's: `WouldBlock` when no frame is queued (read) or the queue is
/// full (write), `EBADFD` once the device is unregistered.
pub(crate) trait PortDevice: Send {
    /// Reads one frame, virtio-net header first, into `buf`; returns the
    /// total length.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Reads up to `bufs.len()` (at most [`MAX_BATCH`]) frames with one
    /// system call, the `i`th into `bufs[i]` behind its virtio-net header;
    /// `lens[i]` is its total length, 0 for a frame the device dropped
    /// itself (counted in [`device_drops`](Self::device_drops)). Returns
    /// how many buffers were used; fewer than asked means the device is
    /// drained. `None` for devices that read one frame per call (the loop
    /// then uses [`recv`](Self::recv)).
    fn recv_batch(&self, _bufs: &mut [&mut [u8]], _lens: &mut [usize; MAX_BATCH]) -> Option<io::Result<usize>> {
        None
    }

    /// Whether [`recv_batch`](Self::recv_batch) reads (the loop asks once
    /// per ready port, without a system call).
    fn reads_batches(&self) -> bool {
        false
    }

    /// Writes one frame; `buf` starts with the virtio-net header.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;

    /// Writes one frame gathered from `bufs` (header, then frame).
    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Writes one frame whose virtio-net header the caller has parsed
    /// already (`hdr`, carried in its batch entry): `bytes` is the frame
    /// with those header bytes in front when `in_front`, else the bare
    /// frame, behind which `hdr` is written. A device that acts on the
    /// header (segmenting, completing checksums) takes `hdr` rather than
    /// parsing the bytes again; a TAP writes the bytes as they are.
    fn send_parsed(&self, hdr: &VirtioNetHdr, bytes: &[u8], in_front: bool) -> io::Result<usize> {
        if in_front {
            self.send(bytes)
        } else {
            self.send_vectored(&[IoSlice::new(&hdr.to_bytes()), IoSlice::new(bytes)])
        }
    }

    /// The descriptor to register with the event loop; `None` for a device
    /// whose readiness the caller signals itself.
    fn event_fd(&self) -> Option<RawFd>;

    /// The kernel TAP behind the device, handed back to the control plane
    /// when its port is removed (it deletes or keeps the device).
    fn into_tap(self: Box<Self>) -> Option<Tap>;

    /// Whether the device takes GSO super-frames (a TAP does; an AF_XDP
    /// socket takes frames of at most one MTU, so the loop does not merge
    /// segments for it and the device segments what it is given).
    fn takes_gso(&self) -> bool {
        true
    }

    /// The longest frame a read returns, virtio-net header included, when
    /// it is far below a GSO frame (then the loop packs many frames into
    /// one batch buffer); `None` for devices that read GSO frames.
    fn max_frame(&self) -> Option<usize> {
        None
    }

    /// Whether frames written stay queued until [`flush`](Self::flush).
    fn wants_flush(&self) -> bool {
        false
    }

    /// Hands the frames written since the last flush to the kernel.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Frames the kernel dropped on their way in, in all (an AF_XDP
    /// socket's full RX or empty fill ring, a raw uplink's full receive
    /// buffer); read once a second.
    fn kernel_drops(&self) -> u64 {
        0
    }

    /// Whether this is a TAP queue: on a spread network every worker has a
    /// queue of the same TAP, and tun steers a flow's next frames to the
    /// queue that wrote it, so a connection can be placed or moved by
    /// writing its frames from another worker. An AF_XDP port's queues are
    /// spread too, but the sender's hash alone picks its queue: not one.
    fn is_spread_queue(&self) -> bool {
        false
    }

    /// The reason [`kernel_drops`](Self::kernel_drops) are counted under.
    fn kernel_drop_reason(&self) -> DropReason {
        DropReason::XskRxDropped
    }

    /// Frames the device itself dropped on their way in, in all: too long
    /// for the switch, or malformed by the kernel (an AF_XDP descriptor
    /// chain); read once a second.
    fn device_drops(&self) -> DeviceDrops {
        DeviceDrops::default()
    }

    /// A pending error of a device whose failure epoll does not report
    /// (an AF_XDP socket whose interface was unregistered); checked once a
    /// second.
    fn check(&self) -> io::Result<()> {
        Ok(())
    }
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

    fn is_spread_queue(&self) -> bool {
        true
    }
}

/// An AF_XDP port as a frame device: a veth end or a host interface under
/// an XDP redirect program, with its socket's rings.
///
/// Reads copy a frame (one chunk, or a multi-buffer chain) out of the UMEM
/// behind an all-zero virtio-net header (the frame's checksums are
/// complete: see `sys::ethtool`). Writes copy into free UMEM chunks
/// (chained when the frame is longer than one), segmenting GSO frames
/// (which a TAP sandbox sends) to their MSS; a partial checksum is left to
/// the kernel through TX metadata where the socket has it, else completed
/// in software. Nothing reaches the kernel until [`PortDevice::flush`].
pub(crate) struct XskDevice {
    inner: RefCell<XskInner>,
    fd: RawFd,
    mode: XdpMode,
    /// A local sandbox's port: its frames' complete TCP/UDP checksums are
    /// handed on partial (`offload::make_partial`), as a TAP sandbox sends
    /// them, so no receiver verifies them again. Not for uplinks: a LAN's
    /// frames are checked by whoever receives them.
    sandbox: bool,
}

struct XskInner {
    port: XdpPort,
    /// The queue whose socket is read next (several with a multi-queue
    /// interface).
    rx_next: usize,
    /// Segments of the GSO frame being written.
    segments: SegmentBuf,
}

/// A read whose frame does not fit the rest of the caller's buffer: the
/// frame stays queued for a read into a fresh one (see
/// [`PortDevice::max_frame`]).
pub(crate) fn no_room() -> io::Error {
    io::Error::from_raw_os_error(libc::EMSGSIZE)
}

/// Whether `e` is [`no_room`].
pub(crate) fn is_no_room(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMSGSIZE)
}

// A fresh batch buffer holds the longest chain an AF_XDP read returns.
const _: () = assert!(Tap::RECV_BUF_LEN >= VirtioNetHdr::LEN + MAX_FRAME_LEN);

impl XskDevice {
    /// Wraps an opened port; `sandbox`: a local sandbox's endpoint (see
    /// the field), not an uplink.
    pub(crate) fn new(port: XdpPort, sandbox: bool) -> XskDevice {
        let fd = port.event_fd();
        let mode = port.mode();
        XskDevice {
            inner: RefCell::new(XskInner {
                port,
                rx_next: 0,
                segments: SegmentBuf::with_capacity(Tap::RECV_BUF_LEN * 2, 64),
            }),
            fd,
            mode,
            sandbox,
        }
    }

    /// How the port's program and socket run.
    #[allow(dead_code)]
    pub(crate) fn mode(&self) -> XdpMode {
        self.mode
    }
}

impl XskInner {
    /// Queues one frame, its checksum as `csum` says.
    fn write(&mut self, frame: &[u8], csum: TxChecksum) -> io::Result<usize> {
        let socket = self.port.socket();
        if !socket.queues().tx_room(frame.len()) {
            // Every chunk is in flight: kick, take the completions, retry.
            let _ = socket.flush_tx();
        }
        match socket.queues().send(frame, csum) {
            Ok(()) => Ok(frame.len()),
            Err(TxIssue::Full) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TxIssue::TooLong) => Err(io::Error::from_raw_os_error(libc::EMSGSIZE)),
        }
    }

    /// What a frame's `NEEDS_CSUM` checksum needs: the kernel's
    /// completion where the socket offers it, else the value computed here.
    fn checksum(&mut self, frame: &[u8], hdr: &VirtioNetHdr) -> io::Result<TxChecksum> {
        let invalid = |_| io::Error::from(io::ErrorKind::InvalidData);
        if !hdr.needs_csum() {
            return Ok(TxChecksum::AsIs);
        }
        if self.port.socket().queues().csum_offload() {
            let (start, offset) = (hdr.csum_start, hdr.csum_offset);
            if usize::from(start) + usize::from(offset) + 2 > frame.len() {
                return Err(io::ErrorKind::InvalidData.into());
            }
            return Ok(TxChecksum::Offload { start, offset });
        }
        Ok(match offload::checksum_to_complete(frame, hdr).map_err(invalid)? {
            Some((at, value)) => TxChecksum::Store { at, value },
            None => TxChecksum::AsIs,
        })
    }

    /// Writes `frame`, whose header is `hdr`, segmenting a GSO frame.
    fn send(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> io::Result<usize> {
        if !hdr.is_gso() {
            let csum = self.checksum(frame, hdr)?;
            return self.write(frame, csum).map(|n| n + VirtioNetHdr::LEN);
        }
        let mut segments = std::mem::take(&mut self.segments);
        // With checksum offload the segments keep partial checksums, each
        // at the place the GSO frame's header names.
        let partial = self.port.socket().queues().csum_offload() && hdr.needs_csum();
        let result = if partial {
            offload::segment_to_mtu_partial(frame, hdr, u16::MAX, &mut segments)
        } else {
            offload::segment(frame, hdr, &mut segments)
        };
        let result = result.map_err(|_| io::Error::from(io::ErrorKind::InvalidData)).and_then(|_| {
            let csum = if partial {
                TxChecksum::Offload { start: hdr.csum_start, offset: hdr.csum_offset }
            } else {
                TxChecksum::AsIs
            };
            segments.iter().try_for_each(|seg| self.write(seg, csum).map(drop))
        });
        segments.clear();
        self.segments = segments;
        result.map(|()| VirtioNetHdr::LEN + frame.len())
    }
}

impl PortDevice for XskDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let hdr = VirtioNetHdr::LEN;
        if buf.len() < hdr {
            return Err(no_room());
        }
        let mut inner = self.inner.borrow_mut();
        let XskInner { port, rx_next, .. } = &mut *inner;
        let sockets = port.sockets();
        // Each queue's socket until one has a frame; WouldBlock once every
        // one came up empty in a row.
        let mut empty = 0;
        while empty < sockets.len() {
            let socket = &mut sockets[*rx_next % sockets.len()];
            match socket.queues().recv(&mut buf[hdr..]) {
                Some(Ok(len)) => {
                    let partial = if self.sandbox { offload::make_partial(&mut buf[hdr..hdr + len]) } else { None };
                    buf[..hdr].copy_from_slice(&partial.unwrap_or_default().to_bytes());
                    return Ok(hdr + len);
                }
                Some(Err(RxIssue::NoRoom)) => return Err(no_room()),
                // Counted by the queues (`device_drops`); the next frame
                // may be fine.
                Some(Err(_)) => empty = 0,
                None => {
                    socket.release_rx();
                    *rx_next = (*rx_next + 1) % sockets.len();
                    empty += 1;
                }
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let hdr = VirtioNetHdr::LEN;
        if buf.len() < hdr {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let parsed = VirtioNetHdr::parse(buf).unwrap_or_default();
        self.inner.borrow_mut().send(&parsed, &buf[hdr..])
    }

    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match bufs {
            [hdr, frame] if hdr.len() == VirtioNetHdr::LEN => {
                self.inner.borrow_mut().send(&VirtioNetHdr::parse(hdr).unwrap_or_default(), frame)
            }
            _ => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    fn send_parsed(&self, hdr: &VirtioNetHdr, bytes: &[u8], in_front: bool) -> io::Result<usize> {
        let frame = if in_front { bytes.get(VirtioNetHdr::LEN..).ok_or(io::ErrorKind::InvalidInput)? } else { bytes };
        self.inner.borrow_mut().send(hdr, frame)
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn into_tap(self: Box<Self>) -> Option<Tap> {
        None
    }

    fn takes_gso(&self) -> bool {
        false
    }

    fn max_frame(&self) -> Option<usize> {
        // What one chunk holds; a multi-buffer frame that does not fit the
        // rest of a packed buffer waits for a fresh one (`no_room`).
        Some(VirtioNetHdr::LEN + CHUNK_FRAME_LEN)
    }

    fn wants_flush(&self) -> bool {
        true
    }

    fn flush(&self) -> io::Result<()> {
        let mut inner = self.inner.borrow_mut();
        let socket = inner.port.socket();
        if socket.queues().tx_unsubmitted() == 0 && socket.queues().tx_in_flight() == 0 {
            return Ok(());
        }
        socket.flush_tx()
    }

    fn kernel_drops(&self) -> u64 {
        let inner = self.inner.borrow();
        let stats = inner.port.sockets_ref().iter().map(|s| s.stats().unwrap_or_default());
        stats.map(|s| s.frames_dropped()).sum()
    }

    fn device_drops(&self) -> DeviceDrops {
        let mut inner = self.inner.borrow_mut();
        let mut drops = DeviceDrops::default();
        for socket in inner.port.sockets() {
            let c = socket.queues().counters();
            drops.too_long += c.rx_too_long;
            // A refused completion loses no frame, but is the same kind of
            // kernel answer a broken descriptor is.
            drops.broken += c.rx_bad + c.tx_bad_completions;
        }
        drops
    }

    fn check(&self) -> io::Result<()> {
        let inner = self.inner.borrow();
        for socket in inner.port.sockets_ref() {
            if let Some(e) = socket.take_error()? {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A raw uplink: an `AF_PACKET` socket on a host interface, frames with
/// the TAPs' virtio-net header (see `sys::packet`), read and written in
/// batches.
///
/// Reads: one `recvmmsg` of up to [`MAX_BATCH`] frames straight into the
/// datapath's batch buffers. Writes: a frame of at most [`TX_SLOT`] bytes
/// (header included: any frame of a 1,500-byte MTU, VLAN tag and all) is
/// copied into a slot of a staging area and the slots go out with one
/// `sendmmsg` per batch ([`PortDevice::flush`]) or when all are full; a
/// longer frame (a GSO super-frame, a jumbo frame) goes out at once with
/// its own `writev`, after the queued ones, so frames keep their order.
/// One system call per 64 KiB GSO frame costs little; copying it would
/// cost more.
pub(crate) struct PacketDevice {
    socket: PacketSocket,
    tx: RefCell<TxStaging>,
    drops: Cell<DeviceDrops>,
    /// The kernel's drops of the socket so far (`PACKET_STATISTICS` resets
    /// on every read, the loop wants totals).
    kernel_dropped: Cell<u64>,
}

/// Room per staged frame, virtio-net header included.
pub(crate) const TX_SLOT: usize = 2048;

/// Frames waiting for the next `sendmmsg`.
struct TxStaging {
    slots: Box<[u8]>,
    lens: [usize; MAX_BATCH],
    queued: usize,
}

impl PacketDevice {
    /// Wraps an opened socket.
    pub(crate) fn new(socket: PacketSocket) -> PacketDevice {
        PacketDevice {
            socket,
            tx: RefCell::new(TxStaging {
                slots: vec![0; TX_SLOT * MAX_BATCH].into_boxed_slice(),
                lens: [0; MAX_BATCH],
                queued: 0,
            }),
            drops: Cell::new(DeviceDrops::default()),
            kernel_dropped: Cell::new(0),
        }
    }

    fn count(&self, edit: impl FnOnce(&mut DeviceDrops)) {
        let mut drops = self.drops.get();
        edit(&mut drops);
        self.drops.set(drops);
    }

    /// Queues a frame gathered from `parts` (`len` bytes in all) in the
    /// next free slot, sending the staged frames first when none is free.
    fn stage(&self, parts: &[&[u8]], len: usize) {
        if self.tx.borrow().queued == MAX_BATCH {
            self.send_staged();
        }
        let mut tx = self.tx.borrow_mut();
        let slot = tx.queued;
        let mut at = slot * TX_SLOT;
        for part in parts {
            tx.slots[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        tx.lens[slot] = len;
        tx.queued += 1;
    }

    /// Sends every staged frame with as few `sendmmsg` calls as the kernel
    /// allows; a frame it refuses is counted and skipped, and once its
    /// queue is full the rest are counted as `tx_queue_full` (retrying
    /// would spin).
    fn send_staged(&self) {
        let mut tx = self.tx.borrow_mut();
        let queued = std::mem::take(&mut tx.queued);
        if queued == 0 {
            return;
        }
        let mut frames: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        for (i, frame) in frames[..queued].iter_mut().enumerate() {
            *frame = &tx.slots[i * TX_SLOT..i * TX_SLOT + tx.lens[i]];
        }
        let mut done = 0;
        while done < queued {
            match self.socket.send_batch(&frames[done..queued]) {
                Ok(n) => done += n,
                Err(e) if queue_full(&e) => {
                    let left = (queued - done) as u64;
                    self.count(|d| d.tx_queue_full += left);
                    break;
                }
                Err(_) => {
                    self.count(|d| d.tx_error += 1);
                    done += 1;
                }
            }
        }
    }
}

/// Whether a write failed because the interface's queue is full
/// (`EAGAIN`; `ENOBUFS` from a driver queue that `PACKET_QDISC_BYPASS`
/// found stopped).
fn queue_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

impl PortDevice for PacketDevice {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv(buf)
    }

    fn recv_batch(&self, bufs: &mut [&mut [u8]], lens: &mut [usize; MAX_BATCH]) -> Option<io::Result<usize>> {
        let mut got = [Received::default(); MAX_BATCH];
        let n = match self.socket.recv_batch(bufs, &mut got) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        for (len, r) in lens.iter_mut().zip(&got[..n]) {
            *len = if r.truncated { 0 } else { r.len };
        }
        let cut = got[..n].iter().filter(|r| r.truncated).count() as u64;
        if cut > 0 {
            self.count(|d| d.too_long += cut);
        }
        Some(Ok(n))
    }

    fn reads_batches(&self) -> bool {
        true
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() <= TX_SLOT {
            self.stage(&[buf], buf.len());
            return Ok(buf.len());
        }
        self.send_staged();
        self.socket.send(buf)
    }

    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len <= TX_SLOT {
            let mut parts: [&[u8]; 4] = [&[]; 4];
            if bufs.len() <= parts.len() {
                for (part, b) in parts.iter_mut().zip(bufs) {
                    *part = b;
                }
                self.stage(&parts[..bufs.len()], len);
                return Ok(len);
            }
        }
        self.send_staged();
        self.socket.send_vectored(bufs)
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.socket.as_raw_fd())
    }

    fn into_tap(self: Box<Self>) -> Option<Tap> {
        None
    }

    fn wants_flush(&self) -> bool {
        true
    }

    fn flush(&self) -> io::Result<()> {
        self.send_staged();
        Ok(())
    }

    fn device_drops(&self) -> DeviceDrops {
        self.drops.get()
    }

    fn kernel_drops(&self) -> u64 {
        match self.socket.take_drops() {
            Ok(new) => self.kernel_dropped.set(self.kernel_dropped.get() + new),
            Err(e) => {
                tracing::debug!(ifname = self.socket.ifname(), error = %e, "reading the uplink socket's drops failed")
            }
        }
        self.kernel_dropped.get()
    }

    fn kernel_drop_reason(&self) -> DropReason {
        DropReason::UplinkRxDropped
    }

    fn check(&self) -> io::Result<()> {
        match self.socket.take_error()? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
