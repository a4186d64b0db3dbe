//! AF_XDP ports: a thin, commented wrapper over the kernel's `AF_XDP`
//! sockets (XSK), used instead of `xsk-rs`/libxdp (see the README's
//! "Dependencies").
//!
//! An [`XdpPort`] puts one interface's receive queues under the switch:
//!
//! 1. [`bpf::XdpRedirect`] creates an `XSKMAP` and loads a five-instruction
//!    XDP program that redirects each frame to the socket of its receive
//!    queue, falling back to the host stack (`XDP_PASS`) without one;
//! 2. the program is attached over rtnetlink (`IFLA_XDP`), natively
//!    (`XDP_FLAGS_DRV_MODE`) where the driver has XDP, else at the generic
//!    hook (`XDP_FLAGS_SKB_MODE`);
//! 3. an [`XskSocket`] registers a 16 MiB UMEM (4,096 chunks of a page, half for receiving,
//!    with a TX metadata area in front of each transmitted frame),
//!    sets up and maps its four rings and binds to a queue (one socket per
//!    receive queue in use, up to [`MAX_QUEUES`]), zero-copy
//!    (`XDP_ZEROCOPY`) where the driver supports it, copy mode otherwise,
//!    always with `XDP_USE_NEED_WAKEUP`: the socket never busy-polls. It
//!    waits in epoll for the RX ring, and system calls are made only when
//!    the kernel asks for a wake-up (fill ring) or frames wait to be sent
//!    (TX kick, once per batch);
//! 4. each socket goes into the map under its queue.
//!
//! The ring logic (`ring`, `queues`) is plain memory and is unit-tested
//! without a socket. The program is loaded frags-capable and the socket
//! bound with `XDP_USE_SG` where the kernel has them, so frames longer than a
//! chunk travel as descriptor chains (up to [`MAX_FRAME_LEN`]); the UMEM is
//! registered with TX metadata where the kernel has it, so the kernel
//! completes partial checksums ([`TxChecksum::Offload`]). Either falls back
//! (single-chunk frames, software checksums) on older kernels.

pub mod bpf;
mod queues;
mod ring;
#[cfg(test)]
mod root_tests;

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

pub use queues::{
    CHUNK_FRAME_LEN, CHUNK_SIZE, CHUNKS, FILL_RING_SIZE, KERNEL_HEADROOM, MAX_FRAME_LEN, MAX_RX_DESCS, MAX_TX_DESCS,
    QueueCounters, Queues, RING_SIZE, RX_CHUNKS, RxIssue, TX_METADATA_LEN, TxChecksum, TxIssue,
};
use ring::{Ring, RingOffsets};

use super::netlink::{Netlink, NetlinkError, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use super::sockopt;

/// `XDP_USE_SG` (bind flag): frames may span several chunks.
const XDP_USE_SG: u16 = 1 << 4;
/// `XDP_UMEM_TX_METADATA_LEN` (UMEM flag): `tx_metadata_len` is meant.
const XDP_UMEM_TX_METADATA_LEN: u32 = 1 << 2;

/// The most receive queues a port binds sockets to (a UMEM of 16 MiB
/// each): frames of higher queues take the program's `XDP_PASS` fallback.
pub const MAX_QUEUES: u32 = 16;

/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17+): how many descriptors one copy-mode
/// kick may transmit (32 otherwise).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Why an AF_XDP port could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// Looking the interface up or attaching the program failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The interface does not exist.
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    /// The map or the program could not be created.
    #[error("cannot load the XDP program: {0}")]
    Bpf(#[source] io::Error),
    /// A socket call failed.
    #[error("AF_XDP {op} failed: {source}")]
    Socket {
        /// The step (`socket`, `UMEM registration`, `bind`, ...).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// How the port's XDP program and socket run (shown by `show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpMode {
    /// The program runs in the driver (native XDP) rather than at the
    /// generic hook.
    pub native: bool,
    /// The socket is bound zero-copy (frames are DMA'd into the UMEM).
    pub zero_copy: bool,
    /// Frames may span several chunks (`XDP_USE_SG`): jumbo frames.
    pub multi_buffer: bool,
    /// The kernel completes partial checksums from TX metadata.
    pub csum_offload: bool,
    /// Receive queues with a socket.
    pub queues: u32,
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let copy = if self.zero_copy { "zero-copy" } else { "copy" };
        let hook = if self.native { "native" } else { "generic" };
        write!(f, "{copy}, {hook} XDP")?;
        if self.multi_buffer {
            f.write_str(", multi-buffer")?;
        }
        let csum = if self.csum_offload { "offloaded" } else { "software" };
        write!(f, ", TX checksum {csum}")?;
        if self.queues > 1 {
            write!(f, ", {} queues", self.queues)?;
        }
        Ok(())
    }
}

/// A memory mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned memory with no thread affinity.
unsafe impl Send for Mapping {}

impl Mapping {
    /// `mmap` of `len` bytes; `fd` and `offset` for a ring, `None` for
    /// anonymous memory (the UMEM).
    fn new(len: usize, fd: Option<RawFd>, offset: u64) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel; nothing is aliased.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, offset as libc::off_t)
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; nothing uses it after.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Kernel statistics of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than a full RX ring: in copy mode
    /// this includes every frame that found the fill ring empty.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (not frames: in copy
    /// mode each such frame is also in `rx_dropped`; in zero-copy mode the
    /// driver could not post a buffer, and the NIC counts what it drops).
    pub rx_fill_empty: u64,
}

impl XskStats {
    /// Frames the socket lost on their way in, each counted once. The
    /// kernel's copy-mode receive (`__xsk_rcv` in `net/xdp/xsk.c`) counts a
    /// frame that finds no chunk in the fill ring both in `rx_dropped` and,
    /// through the failed fill-ring read, in `rx_fill_empty`, so the two
    /// must not be added (they were: an overloaded port showed twice its
    /// loss).
    pub fn frames_dropped(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}

/// One bound AF_XDP socket with its UMEM and rings.
pub struct XskSocket {
    queues: Queues,
    fd: OwnedFd,
    // Unmapped after the socket is closed (fields drop in order).
    _rings: [Mapping; 4],
    _umem: Mapping,
    zero_copy: bool,
}

impl XskSocket {
    /// Creates a socket with its UMEM and rings and binds it to queue
    /// `queue` of interface `ifindex`, zero-copy if `zero_copy`.
    pub fn bind(ifindex: u32, queue: u32, zero_copy: bool) -> Result<XskSocket, XskError> {
        let err = |op| move |source| XskError::Socket { op, source };
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(err("socket")(io::Error::last_os_error()));
        }
        // SAFETY: a descriptor the kernel just returned; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let umem_len = (CHUNKS * CHUNK_SIZE) as usize;
        let umem = Mapping::new(umem_len, None, 0).map_err(err("UMEM mmap"))?;
        // TX metadata in front of every transmitted frame (Linux 6.8+, the
        // flag 6.11+), where the kernel completes checksums; without it,
        // software checksums.
        let mut reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: CHUNK_SIZE,
            headroom: 0,
            flags: XDP_UMEM_TX_METADATA_LEN,
            tx_metadata_len: TX_METADATA_LEN,
        };
        let tx_metadata = match sockopt::set(fd.as_fd(), libc::SOL_XDP, libc::XDP_UMEM_REG, &reg) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "no AF_XDP TX metadata; checksums in software");
                reg.flags = 0;
                reg.tx_metadata_len = 0;
                sockopt::set(fd.as_fd(), libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).map_err(err("UMEM registration"))?;
                false
            }
        };
        let sizes = [
            (libc::XDP_UMEM_FILL_RING, FILL_RING_SIZE),
            (libc::XDP_UMEM_COMPLETION_RING, RING_SIZE),
            (libc::XDP_RX_RING, RING_SIZE),
            (libc::XDP_TX_RING, RING_SIZE),
        ];
        for (ring, size) in sizes {
            sockopt::set(fd.as_fd(), libc::SOL_XDP, ring, &size).map_err(err("ring setup"))?;
        }
        // A larger copy-mode TX budget per kick where the kernel has it.
        let _ = sockopt::set(fd.as_fd(), libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &RING_SIZE);
        let off: libc::xdp_mmap_offsets =
            sockopt::get(fd.as_fd(), libc::SOL_XDP, libc::XDP_MMAP_OFFSETS).map_err(err("ring offsets"))?;
        let offsets = |o: libc::xdp_ring_offset| RingOffsets {
            producer: o.producer as usize,
            consumer: o.consumer as usize,
            flags: o.flags as usize,
            desc: o.desc as usize,
        };
        let map_ring = |o: libc::xdp_ring_offset, entries: u32, entry: usize, pgoff: u64| {
            Mapping::new(o.desc as usize + entries as usize * entry, Some(raw), pgoff).map_err(err("ring mmap"))
        };
        let fill_map = map_ring(off.fr, FILL_RING_SIZE, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp_map = map_ring(off.cr, RING_SIZE, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let rx_map = map_ring(off.rx, RING_SIZE, 16, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx_map = map_ring(off.tx, RING_SIZE, 16, libc::XDP_PGOFF_TX_RING as u64)?;
        // SAFETY: each mapping is the kernel's ring of the size set above,
        // laid out at the offsets it reported, and lives in `_rings` as long
        // as the queues; the UMEM likewise lives in `_umem`.
        let mut queues = unsafe {
            Queues::new(
                Ring::new(fill_map.ptr, offsets(off.fr), FILL_RING_SIZE),
                Ring::new(comp_map.ptr, offsets(off.cr), RING_SIZE),
                Ring::new(rx_map.ptr, offsets(off.rx), RING_SIZE),
                Ring::new(tx_map.ptr, offsets(off.tx), RING_SIZE),
                umem.ptr.as_ptr(),
                umem_len,
                tx_metadata,
            )
        };
        queues.release_rx();
        let mode = if zero_copy { libc::XDP_ZEROCOPY } else { libc::XDP_COPY };
        let bind = |flags: u16| {
            let addr = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: libc::XDP_USE_NEED_WAKEUP | mode | flags,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            // SAFETY: `addr` is a valid `sockaddr_xdp` of the size passed.
            let r = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
        };
        // Multi-buffer (Linux 6.6+; for zero-copy, drivers that have it);
        // without it frames are at most one chunk.
        let multi_buffer = match bind(XDP_USE_SG) {
            Ok(()) => true,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                tracing::debug!(error = %e, "no AF_XDP multi-buffer; frames of one chunk");
                bind(0).map_err(err("bind"))?;
                false
            }
            Err(e) => return Err(err("bind")(e)),
        };
        let options: libc::xdp_options =
            sockopt::get(fd.as_fd(), libc::SOL_XDP, libc::XDP_OPTIONS).map_err(err("options"))?;
        let zero_copy = options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        // Copy mode builds an skb from the metadata's checksum request for
        // every device; a zero-copy driver may lack the hook and would
        // send the pseudo-header sum, so zero-copy sockets checksum in
        // software.
        queues.configure(multi_buffer, tx_metadata && !zero_copy);
        Ok(XskSocket { queues, fd, _rings: [fill_map, comp_map, rx_map, tx_map], _umem: umem, zero_copy })
    }

    /// The ring bookkeeping.
    pub fn queues(&mut self) -> &mut Queues {
        &mut self.queues
    }

    /// Bound zero-copy.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Hands read RX slots and refilled chunks back, waking the kernel if
    /// it stopped for want of fill-ring chunks.
    pub fn release_rx(&mut self) {
        self.queues.release_rx();
        if self.queues.fill_needs_wakeup() {
            // SAFETY: a zero-length non-blocking receive: the documented way
            // to wake the kernel's fill-ring processing.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// Submits queued TX descriptors and kicks the kernel until it took
    /// them all or stops making progress; then drains completions. Returns
    /// the kick's error other than "try again".
    pub fn flush_tx(&mut self) -> io::Result<()> {
        if self.queues.tx_unsubmitted() > 0 {
            self.queues.submit_tx();
        }
        let mut result = Ok(());
        let mut before = self.queues.tx_in_flight();
        while before > 0 && (self.queues.tx_needs_wakeup() || !self.zero_copy) {
            // SAFETY: a zero-length non-blocking send: the kick that makes the
            // kernel transmit the TX ring.
            let r = unsafe {
                libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS)) {
                    result = Err(e);
                    break;
                }
            }
            let after = self.queues.tx_in_flight();
            if after >= before {
                break;
            }
            before = after;
        }
        self.queues.drain_completions();
        result
    }

    /// The socket's pending error (`SO_ERROR`), e.g. `ENETDOWN` once its
    /// interface was unregistered.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        sockopt::take_error(self.fd.as_fd())
    }

    /// The kernel's drop counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        let s: libc::xdp_statistics = sockopt::get(self.fd.as_fd(), libc::SOL_XDP, libc::XDP_STATISTICS)?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_empty: s.rx_fill_ring_empty_descs,
        })
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An interface's receive queues under the switch: program, map, and one
/// socket per queue (see the module docs).
///
/// Every queue's frames reach the switch: the program redirects by
/// `rx_queue_index`, and the map holds a socket for each queue in use (a
/// multi-queue NIC spreads flows over them by RSS, a multi-queue veth by
/// the sender's transmit queue). Each socket has its own UMEM and rings;
/// frames are sent on queue 0's socket. With more than one socket, an
/// epoll instance watches them all and stands for the port in the
/// caller's event loop ([`XdpPort::event_fd`]).
pub struct XdpPort {
    /// One per receive queue, in queue order.
    sockets: Vec<XskSocket>,
    /// Watches every socket when there are several.
    poll: Option<mio::Poll>,
    /// Shared by the parts of a [split](XdpPort::split) port: the map and
    /// program stay while any part reads.
    prog: Arc<bpf::XdpRedirect>,
    ifname: String,
    native: bool,
}

/// An epoll instance watching `sockets` when there are several, so that
/// one descriptor stands for them in the caller's loop.
fn watch(sockets: &[XskSocket]) -> Result<Option<mio::Poll>, XskError> {
    if sockets.len() < 2 {
        return Ok(None);
    }
    let err = |source| XskError::Socket { op: "epoll", source };
    let poll = mio::Poll::new().map_err(err)?;
    for (i, socket) in sockets.iter().enumerate() {
        let fd = socket.as_raw_fd();
        poll.registry().register(&mut mio::unix::SourceFd(&fd), mio::Token(i), mio::Interest::READABLE).map_err(err)?;
    }
    Ok(Some(poll))
}

impl XdpPort {
    /// Attaches the redirect program to `ifname` (in the caller's
    /// namespace) and binds a socket to each of its receive queues,
    /// choosing native XDP and zero-copy where they work.
    pub fn open(ifname: &str) -> Result<XdpPort, XskError> {
        let mut nl = Netlink::open()?;
        let link = nl.link(ifname)?.ok_or_else(|| XskError::NoSuchInterface(ifname.to_owned()))?;
        let queues = link.rx_queues.unwrap_or(1).clamp(1, MAX_QUEUES);
        let prog = bpf::XdpRedirect::load(queues).map_err(XskError::Bpf)?;
        let native = match nl.set_xdp(ifname, Some(prog.prog_fd()), XDP_FLAGS_DRV_MODE) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(interface = ifname, error = %e, "no native XDP; using the generic hook");
                nl.set_xdp(ifname, Some(prog.prog_fd()), XDP_FLAGS_SKB_MODE)?;
                false
            }
        };
        let first = match native.then(|| XskSocket::bind(link.index, 0, true)) {
            Some(Ok(socket)) => socket,
            Some(Err(e)) => {
                tracing::debug!(interface = ifname, error = %e, "no zero-copy AF_XDP; using copy mode");
                XskSocket::bind(link.index, 0, false)?
            }
            None => XskSocket::bind(link.index, 0, false)?,
        };
        let zero_copy = first.is_zero_copy();
        prog.insert(0, first.as_raw_fd()).map_err(XskError::Bpf)?;
        let mut sockets = vec![first];
        // The other queues in use, in the mode queue 0 got; the kernel
        // refuses a queue past those in use (`EINVAL`), which ends them.
        for queue in 1..queues {
            let socket = match XskSocket::bind(link.index, queue, zero_copy) {
                Ok(socket) => socket,
                Err(XskError::Socket { op: "bind", source }) if source.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => {
                    tracing::warn!(interface = ifname, queue, error = %e, "no AF_XDP socket for this queue and the ones after it: their frames go to the host stack");
                    break;
                }
            };
            prog.insert(queue, socket.as_raw_fd()).map_err(XskError::Bpf)?;
            sockets.push(socket);
        }
        let poll = watch(&sockets)?;
        Ok(XdpPort { sockets, poll, prog: Arc::new(prog), ifname: ifname.to_owned(), native })
    }

    /// Splits the port into at most `parts` ports, one per worker that
    /// reads its own receive queues: part `j` holds the sockets of queues
    /// `q` with `q % parts == j` (and transmits on the first of them), so
    /// part 0 has queue 0. Parts without a queue are left out. The parts
    /// share the program's and map's descriptors (the program stays
    /// attached to the interface after they close, until it is detached or
    /// replaced); each socket leaves the map when its part is dropped.
    pub fn split(self, parts: usize) -> Result<Vec<XdpPort>, XskError> {
        let parts = parts.clamp(1, self.sockets.len());
        let mut groups: Vec<Vec<XskSocket>> = (0..parts).map(|_| Vec::new()).collect();
        for (queue, socket) in self.sockets.into_iter().enumerate() {
            groups[queue % parts].push(socket);
        }
        let (prog, ifname, native) = (self.prog, self.ifname, self.native);
        groups
            .into_iter()
            .map(|sockets| {
                let poll = watch(&sockets)?;
                Ok(XdpPort { sockets, poll, prog: Arc::clone(&prog), ifname: ifname.clone(), native })
            })
            .collect()
    }

    /// Queue 0's socket, which also transmits.
    pub fn socket(&mut self) -> &mut XskSocket {
        &mut self.sockets[0]
    }

    /// Queue 0's socket, shared.
    pub fn socket_ref(&self) -> &XskSocket {
        &self.sockets[0]
    }

    /// Every queue's socket, in queue order.
    pub fn sockets(&mut self) -> &mut [XskSocket] {
        &mut self.sockets
    }

    /// Every queue's socket, shared.
    pub fn sockets_ref(&self) -> &[XskSocket] {
        &self.sockets
    }

    /// The descriptor that becomes readable when any queue has frames: the
    /// socket's own with one queue, else the epoll instance watching them.
    pub fn event_fd(&self) -> RawFd {
        match &self.poll {
            Some(poll) => poll.as_raw_fd(),
            None => self.sockets[0].as_raw_fd(),
        }
    }

    /// The interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// How the program and sockets run.
    pub fn mode(&self) -> XdpMode {
        let q = &self.sockets[0].queues;
        XdpMode {
            native: self.native,
            zero_copy: self.sockets[0].is_zero_copy(),
            multi_buffer: q.multi_buffer(),
            csum_offload: q.csum_offload(),
            queues: self.sockets.len() as u32,
        }
    }

    /// Takes the program off the interface (an uplink given back to the
    /// host); the sockets close when the port is dropped.
    pub fn detach(&self) -> Result<(), NetlinkError> {
        let flags = if self.native { XDP_FLAGS_DRV_MODE } else { XDP_FLAGS_SKB_MODE };
        Netlink::open()?.set_xdp(&self.ifname, None, flags)
    }
}
