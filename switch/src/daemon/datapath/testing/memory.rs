//! In-memory stand-ins for the datapath's I/O: a frame port (queues of
//! frames in, a record of frames out), the underlay (datagrams in, a record
//! of every datagram sent and of each send call), and a virtual clock.
//!
//! Each is a cheap handle on shared state: the datapath owns one clone
//! (boxed behind its trait), the harness keeps another to inject and read.
//! The state sits behind a mutex only because the traits ask for `Send`;
//! nothing here runs on another thread.
//!
//! Readiness is edge-triggered, as the daemon's epoll is: putting input in
//! raises an edge, which the harness takes to mark the port (or the
//! underlay) ready before a wake-up.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use quinn_udp::RecvMeta;

use super::super::device::{DeviceDrops, PortDevice};
use crate::counters::DropReason;
use crate::daemon::tunnel::Underlay;
use crate::sys::dgram::Outgoing;
use crate::sys::tap::Tap;
use crate::time::{Clock, Timestamp};

/// An error a memory device returns in place of a frame or a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// No frame queued / the queue is full (`EAGAIN`).
    WouldBlock,
    /// A signal interrupted the call (`EINTR`).
    Interrupted,
    /// Any other OS error, e.g. `libc::EBADFD` (the device is gone) or
    /// `libc::EIO` (its link is down).
    Os(i32),
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::WouldBlock => io::ErrorKind::WouldBlock.into(),
            Fault::Interrupted => io::ErrorKind::Interrupted.into(),
            Fault::Os(code) => io::Error::from_raw_os_error(code),
        }
    }
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding it fails anyway.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Default)]
struct PortState {
    /// What the next reads return, in order.
    rx: VecDeque<Result<Vec<u8>, Fault>>,
    /// Every write, virtio-net header included.
    tx: Vec<Vec<u8>>,
    /// What the next writes fail with, in order.
    tx_faults: VecDeque<Fault>,
    /// The device is unregistered: reads (once `rx` is drained) and writes
    /// fail with `EBADFD`, as a TAP's do.
    gone: bool,
    /// New input since the harness last looked.
    edge: bool,
    /// Behaves like an AF_XDP socket: frames of at most this many bytes
    /// (header included), no GSO frames taken, writes held until a flush.
    small_frames: Option<usize>,
    /// Writes not yet flushed (small-frame mode).
    unflushed: Vec<Vec<u8>>,
    /// Flushes that handed frames over.
    flushes: u64,
    /// What the kernel's drop counter of the device says.
    kernel_drops: u64,
    /// What the device's own drop counters say.
    device_drops: DeviceDrops,
    /// Reads many frames per call, as a raw uplink's `recvmmsg` does.
    batch_reads: bool,
    /// Calls of `recv_batch`.
    batch_calls: u64,
}

/// An in-memory frame port: reads take queued frames (virtio-net header
/// first) or faults, `WouldBlock` once none is left; writes are recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryPort(Arc<Mutex<PortState>>);

impl MemoryPort {
    /// A port that behaves like an AF_XDP socket's device: reads return
    /// frames of at most `max_frame` bytes (header included) and are packed
    /// by the loop; GSO frames are not merged for it; writes reach
    /// [`take_tx`](Self::take_tx) only when the loop flushes.
    pub(crate) fn small_frames(max_frame: usize) -> MemoryPort {
        let port = MemoryPort::default();
        lock(&port.0).small_frames = Some(max_frame);
        port
    }

    /// A port whose device reads many frames per call
    /// ([`PortDevice::recv_batch`]), as a raw uplink does: an empty
    /// queued read stands for a frame the device dropped itself.
    pub(crate) fn batch_reads() -> MemoryPort {
        let port = MemoryPort::default();
        lock(&port.0).batch_reads = true;
        port
    }

    /// Calls of [`PortDevice::recv_batch`] so far.
    pub(crate) fn batch_calls(&self) -> u64 {
        lock(&self.0).batch_calls
    }

    /// Sets the device's kernel drop counter (an AF_XDP socket's full ring,
    /// or, for a [`batch_reads`](Self::batch_reads) port, a raw uplink's
    /// full receive buffer).
    pub(crate) fn set_kernel_drops(&self, total: u64) {
        lock(&self.0).kernel_drops = total;
    }

    /// Sets the device's own drop counters (an AF_XDP socket's oversized
    /// or broken descriptor chains).
    pub(crate) fn set_device_drops(&self, drops: DeviceDrops) {
        lock(&self.0).device_drops = drops;
    }

    /// Flushes that handed written frames over.
    pub(crate) fn flushes(&self) -> u64 {
        lock(&self.0).flushes
    }

    /// Written frames still held for a flush.
    pub(crate) fn unflushed(&self) -> usize {
        lock(&self.0).unflushed.len()
    }

    /// Queues exactly what one read returns (header and frame, or less).
    pub(crate) fn push_rx(&self, bytes: Vec<u8>) {
        let mut state = lock(&self.0);
        state.rx.push_back(Ok(bytes));
        state.edge = true;
    }

    /// Makes the read after the frames already queued fail with `fault`.
    pub(crate) fn push_rx_fault(&self, fault: Fault) {
        let mut state = lock(&self.0);
        state.rx.push_back(Err(fault));
        state.edge = true;
    }

    /// Makes the next writes fail with `fault`, `count` times.
    pub(crate) fn fail_writes(&self, fault: Fault, count: usize) {
        lock(&self.0).tx_faults.extend(std::iter::repeat_n(fault, count));
    }

    /// Unregisters the device, as when its namespace ends: reads and writes
    /// fail with `EBADFD` from now on (and the event loop is told).
    pub(crate) fn unplug(&self) {
        let mut state = lock(&self.0);
        state.gone = true;
        state.edge = true;
    }

    /// Every write since the last call, in order.
    pub(crate) fn take_tx(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut lock(&self.0).tx)
    }

    /// Frames (and faults) queued and not yet read.
    pub(crate) fn rx_pending(&self) -> usize {
        lock(&self.0).rx.len()
    }

    /// Whether input arrived since the last call (a readiness edge).
    pub(crate) fn take_edge(&self) -> bool {
        std::mem::take(&mut lock(&self.0).edge)
    }

    fn write(&self, bytes: impl FnOnce() -> Vec<u8>) -> io::Result<usize> {
        let mut state = lock(&self.0);
        if let Some(fault) = state.tx_faults.pop_front() {
            return Err(fault.error());
        }
        if state.gone {
            return Err(io::Error::from_raw_os_error(libc::EBADFD));
        }
        let bytes = bytes();
        let len = bytes.len();
        if state.small_frames.is_some() {
            state.unflushed.push(bytes);
        } else {
            state.tx.push(bytes);
        }
        Ok(len)
    }
}

impl PortDevice for MemoryPort {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = lock(&self.0);
        match state.rx.pop_front() {
            // As an AF_XDP device: a frame longer than the rest of a packed
            // buffer stays queued for a fresh one.
            Some(Ok(bytes)) if state.small_frames.is_some() && bytes.len() > buf.len() => {
                state.rx.push_front(Ok(bytes));
                Err(super::super::device::no_room())
            }
            Some(Ok(bytes)) => {
                let len = bytes.len().min(buf.len());
                buf[..len].copy_from_slice(&bytes[..len]);
                Ok(len)
            }
            Some(Err(fault)) => Err(fault.error()),
            None if state.gone => Err(io::Error::from_raw_os_error(libc::EBADFD)),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn recv_batch(
        &self,
        bufs: &mut [&mut [u8]],
        lens: &mut [usize; super::super::device::MAX_BATCH],
    ) -> Option<io::Result<usize>> {
        let mut state = lock(&self.0);
        if !state.batch_reads {
            return None;
        }
        state.batch_calls += 1;
        let mut n = 0;
        while n < bufs.len().min(lens.len()) {
            match state.rx.pop_front() {
                Some(Ok(bytes)) => {
                    let len = bytes.len().min(bufs[n].len());
                    bufs[n][..len].copy_from_slice(&bytes[..len]);
                    lens[n] = len;
                    n += 1;
                }
                // A fault after frames: those frames first, as recvmmsg.
                Some(Err(fault)) if n > 0 => {
                    state.rx.push_front(Err(fault));
                    break;
                }
                Some(Err(fault)) => return Some(Err(fault.error())),
                None if n > 0 => break,
                None if state.gone => return Some(Err(io::Error::from_raw_os_error(libc::EBADFD))),
                None => return Some(Err(io::ErrorKind::WouldBlock.into())),
            }
        }
        Some(Ok(n))
    }

    fn reads_batches(&self) -> bool {
        lock(&self.0).batch_reads
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(|| buf.to_vec())
    }

    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write(|| bufs.iter().flat_map(|b| b.iter().copied()).collect())
    }

    fn event_fd(&self) -> Option<RawFd> {
        None
    }

    fn into_tap(self: Box<Self>) -> Option<Tap> {
        None
    }

    fn takes_gso(&self) -> bool {
        lock(&self.0).small_frames.is_none()
    }

    fn max_frame(&self) -> Option<usize> {
        lock(&self.0).small_frames
    }

    fn wants_flush(&self) -> bool {
        let state = lock(&self.0);
        state.small_frames.is_some() || state.batch_reads
    }

    fn kernel_drops(&self) -> u64 {
        lock(&self.0).kernel_drops
    }

    fn is_spread_queue(&self) -> bool {
        let state = lock(&self.0);
        state.small_frames.is_none() && !state.batch_reads
    }

    fn kernel_drop_reason(&self) -> DropReason {
        if lock(&self.0).batch_reads { DropReason::UplinkRxDropped } else { DropReason::XskRxDropped }
    }

    fn device_drops(&self) -> DeviceDrops {
        lock(&self.0).device_drops
    }

    fn flush(&self) -> io::Result<()> {
        let mut state = lock(&self.0);
        if !state.unflushed.is_empty() {
            let held = std::mem::take(&mut state.unflushed);
            state.tx.extend(held);
            state.flushes += 1;
        }
        Ok(())
    }
}

/// One datagram the tunnel sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Datagram {
    /// The send pool socket it left from (its UDP source port).
    pub(crate) sender: usize,
    /// Where it went.
    pub(crate) to: SocketAddr,
    /// Which message carried it (datagrams of one GSO train share it).
    pub(crate) send: usize,
    /// Which send call (`sendmmsg`) carried that message.
    pub(crate) call: usize,
    /// The UDP payload: VXLAN or encrypted header, then the inner frame.
    pub(crate) bytes: Vec<u8>,
}

/// One send call the tunnel made (a `sendmmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendCall {
    /// The send pool socket.
    pub(crate) sender: usize,
    /// Messages (datagrams or GSO trains) it carried.
    pub(crate) messages: usize,
    /// Datagrams those messages held.
    pub(crate) datagrams: usize,
}

#[derive(Debug)]
struct UnderlayState {
    /// Datagrams to receive (source, payload), or faults.
    rx: VecDeque<Result<(SocketAddr, Vec<u8>), Fault>>,
    tx: Vec<Datagram>,
    sends: usize,
    /// Every send call so far.
    calls: Vec<SendCall>,
    tx_faults: VecDeque<Fault>,
    /// Datagrams of one source and size a receive buffer may hold (UDP GRO).
    gro_segments: usize,
    /// Segments one GSO send may carry.
    gso_segments: usize,
    senders: usize,
    edge: bool,
    /// A GSO train makes a send fail with this error and turns GSO off,
    /// as a driver without UDP GSO makes the kernel's sockets do.
    refuse_gso: Option<i32>,
    /// What the receiving socket's kernel drop counter says.
    kernel_drops: u32,
}

/// Sending sockets of a [`MemoryUnderlay`]: as many as the daemon's send pool.
pub(crate) const MEMORY_SENDERS: usize = crate::daemon::tunnel::SOURCE_PORTS;

/// In-memory underlay sockets: receives take queued datagrams, sends are
/// recorded datagram by datagram (GSO trains cut at their segment size).
#[derive(Debug, Clone)]
pub(crate) struct MemoryUnderlay(Arc<Mutex<UnderlayState>>);

impl Default for MemoryUnderlay {
    fn default() -> Self {
        MemoryUnderlay(Arc::new(Mutex::new(UnderlayState {
            rx: VecDeque::new(),
            tx: Vec::new(),
            sends: 0,
            calls: Vec::new(),
            tx_faults: VecDeque::new(),
            gro_segments: 1,
            gso_segments: 64,
            senders: MEMORY_SENDERS,
            edge: false,
            refuse_gso: None,
            kernel_drops: 0,
        })))
    }
}

impl MemoryUnderlay {
    /// Queues a datagram from `from`.
    pub(crate) fn push_rx(&self, from: SocketAddr, payload: Vec<u8>) {
        let mut state = lock(&self.0);
        state.rx.push_back(Ok((from, payload)));
        state.edge = true;
    }

    /// Makes the receive after the datagrams already queued fail.
    pub(crate) fn push_rx_fault(&self, fault: Fault) {
        let mut state = lock(&self.0);
        state.rx.push_back(Err(fault));
        state.edge = true;
    }

    /// Makes the next sends fail with `fault`, `count` times.
    pub(crate) fn fail_sends(&self, fault: Fault, count: usize) {
        lock(&self.0).tx_faults.extend(std::iter::repeat_n(fault, count));
    }

    /// Receives up to `segments` equal-sized datagrams of one source into
    /// one buffer, as UDP GRO does (1: off).
    pub(crate) fn set_gro_segments(&self, segments: usize) {
        lock(&self.0).gro_segments = segments.max(1);
    }

    /// Lets one GSO send carry at most `segments` datagrams (1: no GSO).
    pub(crate) fn set_gso_segments(&self, segments: usize) {
        lock(&self.0).gso_segments = segments.max(1);
    }

    /// Makes the first GSO train sent fail with OS error `code` (the
    /// messages before it in its call leave) and GSO turn off from then
    /// on, as the kernel's sockets do over a driver without UDP GSO.
    pub(crate) fn refuse_gso(&self, code: i32) {
        lock(&self.0).refuse_gso = Some(code);
    }

    /// Every datagram sent since the last call, in order.
    pub(crate) fn take_tx(&self) -> Vec<Datagram> {
        std::mem::take(&mut lock(&self.0).tx)
    }

    /// Messages sent so far (a GSO train is one).
    pub(crate) fn sends(&self) -> usize {
        lock(&self.0).sends
    }

    /// Every send call so far (each a `sendmmsg`), in order.
    pub(crate) fn calls(&self) -> Vec<SendCall> {
        lock(&self.0).calls.clone()
    }

    /// Sets the total the kernel reports as dropped at the receiving
    /// socket (its receive buffer full).
    pub(crate) fn set_kernel_drops(&self, total: u32) {
        lock(&self.0).kernel_drops = total;
    }

    /// Whether input arrived since the last call (a readiness edge).
    pub(crate) fn take_edge(&self) -> bool {
        std::mem::take(&mut lock(&self.0).edge)
    }
}

impl Underlay for MemoryUnderlay {
    fn recv(&mut self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let mut state = lock(&self.0);
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let (from, first) = match state.rx.pop_front() {
                Some(Ok(datagram)) => datagram,
                Some(Err(fault)) if filled == 0 => return Err(fault.error()),
                Some(Err(fault)) => {
                    // Reported by the next call, as a socket would.
                    state.rx.push_front(Err(fault));
                    break;
                }
                None if filled == 0 => return Err(io::ErrorKind::WouldBlock.into()),
                None => break,
            };
            let buf = &mut bufs[filled];
            let stride = first.len();
            let mut len = first.len().min(buf.len());
            buf[..len].copy_from_slice(&first[..len]);
            // GRO: later datagrams of the same source join while they are
            // as long as the first (the last may be shorter).
            for _ in 1..state.gro_segments {
                let joins = matches!(state.rx.front(), Some(Ok((f, d)))
                    if *f == from && d.len() <= stride && len + d.len() <= buf.len() && len % stride == 0);
                if !joins {
                    break;
                }
                let Some(Ok((_, next))) = state.rx.pop_front() else { break };
                buf[len..len + next.len()].copy_from_slice(&next);
                len += next.len();
            }
            meta[filled] = RecvMeta { addr: from, len, stride, ..RecvMeta::default() };
            filled += 1;
        }
        Ok(filled)
    }

    fn gro_segments(&self) -> usize {
        lock(&self.0).gro_segments
    }

    fn receive_drops(&self) -> io::Result<u32> {
        Ok(lock(&self.0).kernel_drops)
    }

    fn senders(&self) -> usize {
        lock(&self.0).senders
    }

    fn max_gso_segments(&self, _sender: usize) -> usize {
        lock(&self.0).gso_segments
    }

    fn send_batch(&mut self, sender: usize, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
        let mut state = lock(&self.0);
        if let Some(fault) = state.tx_faults.pop_front() {
            return Err(fault.error());
        }
        // As sendmmsg: at most 64 messages per call.
        let mut msgs = &msgs[..msgs.len().min(crate::sys::dgram::MAX_SEND_BATCH)];
        if let Some(code) = state.refuse_gso
            && let Some(train) = msgs.iter().position(|m| m.segment_size.is_some())
        {
            if train == 0 {
                state.refuse_gso = None;
                state.gso_segments = 1;
                return Err(io::Error::from_raw_os_error(code));
            }
            // Those before it leave; the next call reports the error.
            msgs = &msgs[..train];
        }
        let call = state.calls.len();
        state.calls.push(SendCall { sender, messages: msgs.len(), datagrams: 0 });
        for msg in msgs {
            let size = msg.segment_size.map_or(msg.contents.len(), usize::from).max(1);
            let send = state.sends;
            state.sends += 1;
            for chunk in msg.contents.chunks(size) {
                state.tx.push(Datagram { sender, to: msg.to, send, call, bytes: chunk.to_vec() });
            }
            state.calls[call].datagrams += msg.contents.len().div_ceil(size);
        }
        Ok(msgs.len())
    }

    fn event_fd(&self) -> Option<RawFd> {
        None
    }

    /// Sender `i` sends from port 40000 + `i`.
    fn sender_port(&self, sender: usize) -> u16 {
        40_000 + sender as u16
    }
}

/// A clock that moves only when told: monotonic milliseconds from zero,
/// and a wall clock that keeps step with it from a fixed Unix time.
#[derive(Debug, Clone)]
pub(crate) struct VirtualClock {
    millis: Arc<AtomicU64>,
    unix_origin: u64,
}

impl VirtualClock {
    /// Starts at monotonic zero, at Unix time `unix_origin` (seconds).
    pub(crate) fn new(unix_origin: u64) -> VirtualClock {
        VirtualClock { millis: Arc::new(AtomicU64::new(0)), unix_origin }
    }

    /// Moves time forward by `by`.
    pub(crate) fn advance(&self, by: Duration) {
        self.millis.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::Relaxed))
    }

    fn unix_secs(&self) -> u64 {
        self.unix_origin + self.millis.load(Ordering::Relaxed) / 1000
    }
}
