//! The VXLAN underlay: UDP sockets that carry overlay frames between hosts.
//!
//! The kernel's UDP stack carries the packets (no raw sockets). One socket,
//! bound to the VTEP address and port (4789 by default), receives; a small
//! pool of sockets bound to ephemeral ports sends, so that each inner flow
//! leaves from its own UDP source port (underlay ECMP spreads flows, a flow
//! stays on one path), as Linux's `udp_flow_src_port` does. quinn-udp does
//! the batching: `recvmmsg` with UDP GRO on receive and `sendmsg` with UDP
//! GSO (`UDP_SEGMENT`) on send, probed once and degrading at run time where
//! the kernel lacks them. Its sockets set `IP_PMTUDISC_PROBE` (on IPv6
//! `IPV6_PMTUDISC_PROBE` and `IPV6_DONTFRAG`): outer packets carry DF and
//! are never fragmented.
//!
//! The underlay is IPv4 or IPv6, as the VTEP address is; the overhead
//! (50 or 70 bytes) and so every MTU derived from it follow
//! ([`Tunnel::inner_ip_mtu`]). IPv6 sockets are `IPV6_V6ONLY`: an IPv6 VTEP
//! never sees IPv4 as mapped addresses, and a peer of the other family is
//! refused when configured ([`vxlan::check_peer`]). UDP checksums are the
//! kernel's: it computes them for every datagram it sends (for each segment
//! of a GSO train too) and verifies them on receipt. vswitch never asks for
//! zero checksums (`UDP_NO_CHECK6_TX`), which RFC 6935 and RFC 8200 allow
//! on IPv6 tunnels only under conditions VXLAN's inner frames do not meet,
//! and Linux drops IPv6 datagrams that carry one.
//!
//! Before encapsulation a frame from a TAP becomes a real wire frame: TSO /
//! USO super-frames are segmented in software to the overlay MTU and partial
//! checksums completed ([`crate::offload`]), and the segments of one frame
//! leave in one GSO send.
//!
//! The sockets sit behind [`Underlay`] (the kernel's: [`Tunnel::open_group`]), so
//! the deterministic datapath tests run encapsulation, sealing and GSO
//! chunking over in-memory datagram queues instead.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use crypto::{InnerChecksum, NetworkCrypto, SealError};
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use vxlan::{HEADER_LEN, Vni};

use super::batch::{BUFFERS, RxBatch};
use crate::counters::{DropCounters, DropReason};
use crate::offload::{self, SegmentBuf, TooBig};
use crate::port::PortId;
use crate::sys::dgram::{self, MAX_SEND_BATCH, Outgoing};
use crate::sys::sockopt;
use crate::wire::VirtioNetHdr;

/// Sockets in the send pool (distinct UDP source ports).
pub(crate) const SOURCE_PORTS: usize = 32;
/// Largest UDP payload of one (GSO) send: an IPv4 packet's 65,535 bytes
/// minus its IP and UDP headers. IPv6's payload length does not count its
/// own header, so the same bound keeps an IPv6 send within 64 KiB too.
const MAX_UDP_PAYLOAD: usize = 65_535 - 20 - 8;
/// Socket buffer size asked for on every socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// Messages (datagrams or GSO trains) queued before they must leave.
const MAX_QUEUED: usize = 64;
/// Bytes of queued messages the out buffer holds (at least one sealed
/// 64 KiB frame with its per-segment overhead).
const OUT_BUFFER: usize = 256 * 1024;
/// A plain frame whose encapsulation is at most this long is copied out of
/// the arena to wait for the batch's `sendmmsg`; a longer one (a TSO
/// train) leaves at once with what is queued, rather than be copied.
const COPY_LIMIT: usize = 16 * 1024;

/// Configuration of the underlay endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtepConfig {
    /// Local address and port to receive VXLAN on.
    pub local: SocketAddr,
    /// Accept VXLAN from unknown addresses and make them peers.
    pub learn_peers: bool,
    /// MTU of the underlay interface holding `local`.
    pub underlay_mtu: u32,
}

/// Totals of the underlay endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// VXLAN datagrams received.
    pub rx_packets: u64,
    /// Bytes of VXLAN payload received.
    pub rx_bytes: u64,
    /// VXLAN datagrams sent.
    pub tx_packets: u64,
    /// Messages that carried them: a GSO train is one, as is a datagram
    /// sent alone.
    pub tx_sends: u64,
    /// System calls that sent those messages: a `sendmmsg` carries several.
    pub tx_calls: u64,
    /// Frames segmented and encapsulated: a frame flooded to several peers
    /// counts once (only its outer destination, or its seal, differs).
    pub tx_encapsulated: u64,
    /// Bytes of VXLAN payload sent.
    pub tx_bytes: u64,
    /// GSO frames that software GRO merged from received TCP segments and
    /// wrote into a TAP (one write each, instead of one per segment).
    pub gro_frames: u64,
    /// Received TCP segments those frames carried.
    pub gro_segments: u64,
    /// Datagrams dropped before reaching a tunnel port, by reason.
    pub drops: DropCounters,
}

impl TunnelCounters {
    /// Adds `other`'s totals (another worker's socket) to these.
    pub fn merge(&mut self, other: &TunnelCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_sends += other.tx_sends;
        self.tx_calls += other.tx_calls;
        self.tx_encapsulated += other.tx_encapsulated;
        self.tx_bytes += other.tx_bytes;
        self.gro_frames += other.gro_frames;
        self.gro_segments += other.gro_segments;
        self.drops.merge(&other.drops);
    }
}

/// What became of a frame handed to [`Tunnel::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxOutcome {
    /// Encapsulated and queued: it leaves with its train (a failure is
    /// reported by [`Tunnel::take_failures`]).
    Queued,
    /// Too big for the overlay and DF (or IPv6): answer with ICMP.
    TooBig(TooBig),
    /// Dropped for this reason.
    Dropped(DropReason),
}

/// The underlay's datagram sockets as the tunnel uses them: one receiving
/// socket, read in batches (with UDP GRO), and a pool of sending sockets,
/// one per UDP source port, each taking GSO trains. The kernel's are
/// [`UdpUnderlay`]; tests put in-memory queues in their place. One call
/// per receive batch and per (GSO) send.
pub(crate) trait Underlay: Send {
    /// Receives datagrams into `bufs`, describing each buffer's in `meta`
    /// (a buffer may hold a GRO train of `stride`-sized datagrams); returns
    /// how many buffers were filled, `WouldBlock` when none is queued.
    fn recv(&mut self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize>;

    /// Most datagrams one receive buffer may hold (1 without UDP GRO).
    fn gro_segments(&self) -> usize;

    /// Sockets in the send pool.
    fn senders(&self) -> usize;

    /// Most segments one GSO send of sender `sender` may carry.
    fn max_gso_segments(&self, sender: usize) -> usize;

    /// Sends `msgs` (each one datagram, or a GSO train) from sender
    /// `sender`, in order, in one call (`sendmmsg`). Returns how many left:
    /// fewer than all when one failed (the next call, starting with it,
    /// reports why); an error when the first failed.
    fn send_batch(&mut self, sender: usize, msgs: &[Outgoing<'_>]) -> io::Result<usize>;

    /// The UDP source port of sender `sender` (for captures of the underlay).
    fn sender_port(&self, sender: usize) -> u16;

    /// The receiving socket's descriptor, to register with the event loop;
    /// `None` when the caller signals readiness itself.
    fn event_fd(&self) -> Option<RawFd>;

    /// Packets the kernel dropped on their way into the receiving socket
    /// since it was opened (its receive buffer was full); wraps at 2^32.
    fn receive_drops(&self) -> io::Result<u32>;
}

struct TxSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    /// The UDP port it is bound to.
    port: u16,
    /// A GSO send failed as drivers without UDP GSO make it fail: trains
    /// are not sent from this socket any more.
    gso_off: bool,
}

/// The kernel's UDP sockets, batched by quinn-udp.
struct UdpUnderlay {
    rx: UdpSocket,
    rx_state: UdpSocketState,
    tx: Vec<TxSocket>,
}

impl Underlay for UdpUnderlay {
    fn recv(&mut self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.rx_state.recv(UdpSockRef::from(&self.rx), bufs, meta)
    }

    fn gro_segments(&self) -> usize {
        self.rx_state.gro_segments()
    }

    fn senders(&self) -> usize {
        self.tx.len()
    }

    fn max_gso_segments(&self, sender: usize) -> usize {
        let socket = &self.tx[sender];
        if socket.gso_off { 1 } else { socket.state.max_gso_segments() }
    }

    fn send_batch(&mut self, sender: usize, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
        let socket = &mut self.tx[sender];
        let sent = dgram::send_batch(socket.socket.as_fd(), msgs);
        // Some drivers refuse UDP GSO only when a train is sent (EIO, or
        // EINVAL): send datagrams one by one from then on, as quinn-udp does.
        if let Err(e) = &sent
            && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
            && msgs.first().is_some_and(|m| m.segment_size.is_some())
            && !socket.gso_off
        {
            tracing::info!(error = %e, port = socket.port, "UDP GSO send failed; sending datagrams singly");
            socket.gso_off = true;
        }
        sent
    }

    fn sender_port(&self, sender: usize) -> u16 {
        self.tx[sender].port
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.rx.as_raw_fd())
    }

    fn receive_drops(&self) -> io::Result<u32> {
        sockopt::receive_drops(self.rx.as_fd())
    }
}

/// The underlay sockets and the scratch buffers of encapsulation.
pub(crate) struct Tunnel {
    io: Box<dyn Underlay>,
    config: VtepConfig,
    counters: TunnelCounters,
    segments: SegmentBuf,
    metas: [RecvMeta; BUFFERS],
    /// What the segment arena holds.
    cached: Option<CacheKey>,
    /// What the arena's segments say of their inner checksum.
    inner_checksum: InnerChecksum,
    /// The bytes of queued messages that are not the arena's (never grown
    /// past [`OUT_BUFFER`]: no allocation after start).
    out: Vec<u8>,
    /// The messages waiting for [`Tunnel::flush`], in plan order.
    queue: Vec<Queued>,
    /// Scratch of [`Tunnel::flush`]: (socket, message) pairs.
    order: Vec<(u16, u16)>,
    /// Frames whose message failed to send, by tunnel port and reason.
    failures: Vec<(PortId, DropReason)>,
    /// Where the last queued frame's datagrams are.
    last: LastQueued,
    /// The datagrams of the last receive.
    received: Vec<Received>,
    /// The receiving socket's kernel drop total when last read.
    kernel_drops_seen: u32,
}

/// One datagram the underlay received: where it lies in the batch's
/// buffers, and who sent it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The batch buffer holding it.
    pub(crate) buf: usize,
    /// Its bytes in that buffer (a GRO train is cut into its datagrams).
    pub(crate) range: Range<usize>,
    /// The sender's address and port.
    pub(crate) from: SocketAddr,
}

/// A UDP socket bound to `addr`, set up for quinn-udp's batching. An IPv6
/// socket is `IPV6_V6ONLY`: the underlay is one address family.
fn open(addr: SocketAddr) -> io::Result<(UdpSocket, UdpSocketState)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    set_up(UdpSocket::from(socket))
}

/// Sets a bound socket up for quinn-udp's batching (UDP GRO on receive, GSO
/// probing, `IP_PMTUDISC_PROBE`) with large buffers: every socket of the
/// underlay, each worker's receiving socket too, goes through here. The
/// buffers are forced past `net.core.rmem_max`/`wmem_max` where those are
/// lower (208 KiB on a default host would hold a few milliseconds of
/// small-frame traffic).
fn set_up(socket: UdpSocket) -> io::Result<(UdpSocket, UdpSocketState)> {
    let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
    // Best effort: a smaller buffer only costs throughput (and drops,
    // which are counted).
    match sockopt::force_buffer_sizes(socket.as_fd(), SOCKET_BUFFER) {
        Ok(sizes) => tracing::debug!(receive = sizes.receive, send = sizes.send, "underlay socket buffers"),
        Err(e) => tracing::debug!(error = %e, "underlay socket buffers left as they were"),
    }
    Ok((socket, state))
}

impl UdpUnderlay {
    /// Binds the receive socket to `local` and a pool of `senders` sending
    /// sockets to ephemeral ports of the same address.
    #[cfg(test)]
    fn open(local: SocketAddr, senders: usize) -> io::Result<UdpUnderlay> {
        let (rx, _) = open(local)?;
        UdpUnderlay::with_rx(rx, local, senders)
    }

    /// An underlay receiving on `rx` (already bound to `local`, perhaps as
    /// one socket of a worker group) with its own pool of `senders`.
    fn with_rx(rx: UdpSocket, local: SocketAddr, senders: usize) -> io::Result<UdpUnderlay> {
        let (rx, rx_state) = set_up(rx)?;
        let tx = (0..senders.max(1))
            .map(|_| {
                let (socket, state) = open(SocketAddr::new(local.ip(), 0))?;
                let port = socket.local_addr()?.port();
                Ok(TxSocket { socket, state, port, gso_off: false })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(UdpUnderlay { rx, rx_state, tx })
    }
}

impl Tunnel {
    /// One tunnel per datapath worker: their receiving sockets share the
    /// VTEP address and port as a reuseport group that hands each datagram
    /// to socket `VNI % workers` ([`crate::sys::reuseport`]), so each worker
    /// receives its own overlays' packets; each has its own send pool. The
    /// group's steering (with more than one worker) changes as overlays are
    /// spread.
    pub(crate) fn open_group(
        config: VtepConfig,
        workers: usize,
    ) -> io::Result<(Vec<Tunnel>, Option<crate::sys::reuseport::Steering>)> {
        let (group, steering) = crate::sys::reuseport::bind_steered(config.local, workers)?;
        let tunnels = group.into_iter().map(|rx| Tunnel::open_with(config, rx)).collect::<io::Result<_>>()?;
        Ok((tunnels, steering))
    }

    /// A tunnel receiving on `rx`, bound to `config.local`.
    fn open_with(config: VtepConfig, rx: UdpSocket) -> io::Result<Tunnel> {
        let io = UdpUnderlay::with_rx(rx, config.local, SOURCE_PORTS)?;
        tracing::info!(
            vtep = %config.local,
            underlay = %vxlan::IpVersion::of(config.local.ip()),
            overhead = vxlan::overhead(vxlan::IpVersion::of(config.local.ip())),
            gso_segments = io.tx[0].state.max_gso_segments(),
            gro_segments = io.rx_state.gro_segments(),
            "VXLAN underlay ready"
        );
        Ok(Tunnel::with_underlay(config, Box::new(io)))
    }

    /// A tunnel over `io`, configured as `config` says (whose address `io`
    /// stands for).
    pub(crate) fn with_underlay(config: VtepConfig, io: Box<dyn Underlay>) -> Tunnel {
        Tunnel {
            io,
            config,
            counters: TunnelCounters::default(),
            segments: SegmentBuf::with_capacity(128 * 1024, offload::MAX_SEGMENTS),
            metas: [RecvMeta::default(); BUFFERS],
            cached: None,
            inner_checksum: InnerChecksum::AsSent,
            out: Vec::with_capacity(OUT_BUFFER),
            queue: Vec::with_capacity(MAX_QUEUED),
            order: Vec::with_capacity(MAX_QUEUED),
            failures: Vec::with_capacity(64),
            last: LastQueued::default(),
            received: Vec::with_capacity(super::batch::MAX_FRAMES),
            kernel_drops_seen: 0,
        }
    }

    /// The receiving socket's descriptor, for event registration.
    pub(crate) fn event_fd(&self) -> Option<RawFd> {
        self.io.event_fd()
    }

    /// The configuration it was opened with.
    pub(crate) fn config(&self) -> VtepConfig {
        self.config
    }

    /// Its totals.
    pub(crate) fn counters(&self) -> TunnelCounters {
        self.counters
    }

    /// Counts the packets the kernel dropped at the receiving socket since
    /// the last call as `tunnel_rx_dropped` (called once a second: one
    /// `getsockopt`).
    pub(crate) fn count_kernel_drops(&mut self) {
        match self.io.receive_drops() {
            Ok(total) => {
                let new = total.wrapping_sub(self.kernel_drops_seen);
                self.kernel_drops_seen = total;
                if new > 0 {
                    self.counters.drops.add(DropReason::TunnelRxDropped, u64::from(new));
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the underlay socket's drops failed"),
        }
    }

    /// The largest inner IP packet a tunnel carries without fragmenting the
    /// outer packet: the underlay MTU less 50 bytes over IPv4, 70 over IPv6.
    pub(crate) fn inner_ip_mtu(&self) -> u32 {
        let version = vxlan::IpVersion::of(self.config.local.ip());
        vxlan::inner_mtu(self.config.underlay_mtu, version).unwrap_or(vxlan::MIN_INNER_MTU)
    }

    /// The largest inner IP packet a tunnel of a plain (`encrypted`: an
    /// encrypted) overlay carries: [`Tunnel::inner_ip_mtu`], less the
    /// encryption's 32 bytes on an encrypted one. What sends are checked
    /// against, SYNs clamped to and ICMP too-big messages announce.
    pub(crate) fn ip_mtu(&self, encrypted: bool) -> u32 {
        let extra = if encrypted { crypto::OVERHEAD_OVER_VXLAN as u32 } else { 0 };
        self.inner_ip_mtu().saturating_sub(extra)
    }

    /// The datagrams (UDP payloads) of the last frame [`Tunnel::send`]
    /// queued, and the address they leave from.
    pub(crate) fn last_queued(&self) -> (SocketAddr, std::slice::Chunks<'_, u8>) {
        let LastQueued { sender, size, range } = &self.last;
        let source = SocketAddr::new(self.config.local.ip(), self.io.sender_port(*sender));
        let bytes = match range {
            Some(range) => self.out.get(range.clone()).unwrap_or_default(),
            None => self.segments.datagrams(),
        };
        (source, bytes.chunks((*size).max(1)))
    }

    /// Counts a GSO frame software GRO merged from `segments` received
    /// segments and wrote into a TAP.
    pub(crate) fn count_gro(&mut self, segments: usize) {
        self.counters.gro_frames += 1;
        self.counters.gro_segments += segments as u64;
    }

    /// Counts a received datagram the datapath refused.
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.counters.drops.count(reason);
    }

    /// Reads datagrams into the batch's free buffers (marking them used)
    /// and records where each lies ([`Tunnel::received`]); a GRO train is
    /// cut into its datagrams. Nothing is classified here: that is the
    /// caller's pure step, applied after the whole batch. Returns
    /// `Ok(false)` once the socket is drained.
    pub(crate) fn receive(&mut self, batch: &mut RxBatch) -> io::Result<bool> {
        self.received.clear();
        // With GRO one buffer may hold many datagrams: take only as many
        // buffers as the batch has frame slots for, whatever they carry.
        let frames_left = batch.frames_left() / self.io.gro_segments().max(1);
        let (first, free) = batch.free_buffers();
        let wanted = free.len().min(frames_left);
        if wanted == 0 {
            return Ok(true);
        }
        let mut iter = free;
        let mut slices: [IoSliceMut<'_>; BUFFERS] =
            std::array::from_fn(|_| IoSliceMut::new(iter.next().unwrap_or(&mut [][..])));
        let received = match self.io.recv(&mut slices[..wanted], &mut self.metas) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        drop((slices, iter));
        batch.use_buffers(received);
        for (i, meta) in self.metas[..received].iter().enumerate() {
            let stride = meta.stride.max(1);
            let mut start = 0;
            while start < meta.len {
                let end = (start + stride).min(meta.len);
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += (end - start) as u64;
                self.received.push(Received { buf: first + i, range: start..end, from: meta.addr });
                start = end;
            }
        }
        Ok(true)
    }

    /// The datagrams of the last [`Tunnel::receive`], in arrival order.
    pub(crate) fn received(&self) -> &[Received] {
        &self.received
    }

    /// Encapsulates `tx.frame` for `tx.vni` (sealed with `seal` on an
    /// encrypted network) and queues it for `tx.dest`, segmenting and
    /// checksumming it first if its virtio-net header asks for that.
    ///
    /// Sends are batched twice. The datagrams of consecutive calls for one
    /// (tunnel port, sending socket) join one GSO train while their sizes
    /// allow it (equal segments, a shorter one only last, at most one GSO
    /// send's worth). Trains (and single datagrams) that cannot join are
    /// queued as messages and leave together at [`Tunnel::flush`], one
    /// `sendmmsg` per sending socket: mixed sizes, sealed packets and the
    /// per-peer copies of a flood cost one system call, not one each.
    /// Calls with the same `tx.frame_id` (a flood to several peers) segment
    /// and encapsulate the frame once: a plain frame's datagrams are queued
    /// as they are for every peer (the messages share their bytes); an
    /// encrypted frame's plaintext segments are copied and sealed per peer,
    /// each copy with a fresh counter of the flow's sender session (one of
    /// `crypto::FLOW_SESSIONS`, picked by the sending socket), so
    /// no nonce is ever used twice. An encrypted frame longer than 16 KiB
    /// encapsulated (a TSO train) that starts a message is sealed where it
    /// was cut instead, without that copy; a flood's next peer then has it
    /// segmented again. Sealed segments keep a partial checksum
    /// partial ([`InnerChecksum::Partial`]): the tag vouches for them, and
    /// the receiver hands them on as partial.
    ///
    /// A send that fails later is reported by [`Tunnel::take_failures`],
    /// one entry per frame of the message.
    pub(crate) fn send(&mut self, tx: TunnelTx<'_>, seal: Option<&mut NetworkCrypto>) -> TxOutcome {
        let encrypted = seal.is_some();
        let ip_mtu = self.ip_mtu(encrypted).min(u32::from(u16::MAX)) as u16;
        if let Some(kind) = offload::exceeds_mtu(tx.frame, tx.hdr, ip_mtu) {
            return TxOutcome::TooBig(kind);
        }
        let sender = vxlan::flow_hash(tx.frame) as usize % self.io.senders();
        let key = CacheKey { frame: tx.frame_id, vni: tx.vni, encrypted, ip_mtu };
        if self.cached != Some(key) {
            // The segment arena is about to be overwritten: messages still
            // in it move to the out buffer, or leave.
            self.release_arena();
            self.cached = None;
            if let Err(reason) = self.encapsulate(tx.vni, tx.frame, tx.hdr, ip_mtu, encrypted) {
                return TxOutcome::Dropped(reason);
            }
            self.cached = Some(key);
            self.counters.tx_encapsulated += 1;
        }
        let count = self.segments.len();
        let bytes = self.segments.datagrams().len();
        let Some(size) = self.segments.get_with_room_mut(0).map(|room| room.len()) else {
            return TxOutcome::Dropped(DropReason::OffloadFailed);
        };
        let last_len = bytes - (count - 1) * size;
        let room = OUT_BUFFER - self.out.len();
        let joins = self.queue.last().is_some_and(|q| {
            // The train must end the out buffer to grow there.
            let moved = match &q.loc {
                Loc::Out(r) if r.end == self.out.len() => 0,
                Loc::Out(r) => r.len(),
                Loc::Arena => bytes,
            };
            q.port == tx.port
                && q.dest == tx.dest
                && q.sender == sender
                && !q.closed
                && if count == 1 { size <= q.size } else { size == q.size }
                && q.datagrams + count <= self.per_send(sender, q.size)
                && moved + bytes <= room
        });
        // A large sealed frame (a TSO train) that starts a message is
        // sealed where it was cut, not copied to the out buffer first; the
        // arena then holds ciphertext, so a flood's next copy segments the
        // frame again (rare for a frame this large).
        let seal_in_arena = encrypted && !joins && bytes > COPY_LIMIT;
        if !joins && (self.queue.len() == MAX_QUEUED || (encrypted && !seal_in_arena && bytes > room)) {
            self.flush();
        }
        let train_start = if joins { self.move_last_to_end() } else { self.out.len() };
        let start = self.out.len();
        if let Some(keys) = seal {
            let checksum = self.inner_checksum;
            let (head, tail) = (crypto::HEADER_LEN, crypto::TAG_LEN);
            if seal_in_arena {
                self.cached = None;
            }
            for i in 0..count {
                let Some(room) = self.segments.get_with_room_mut(i) else { break };
                let inner_len = room.len() - head - tail;
                let sealed = if seal_in_arena {
                    keys.seal_in_place(sender, room, inner_len, checksum)
                } else {
                    let at = self.out.len();
                    self.out.extend_from_slice(room);
                    keys.seal_in_place(sender, &mut self.out[at..], inner_len, checksum)
                };
                if let Err(e) = sealed {
                    self.out.truncate(start);
                    let reason = if matches!(e, SealError::NoKey { .. }) {
                        DropReason::NoSendKey
                    } else {
                        DropReason::SealFailed
                    };
                    return TxOutcome::Dropped(reason);
                }
            }
        } else if joins {
            self.out.extend_from_slice(self.segments.datagrams());
        }
        let in_arena = (!encrypted || seal_in_arena) && !joins;
        self.last = LastQueued { sender, size, range: if in_arena { None } else { Some(start..self.out.len()) } };
        match self.queue.last_mut() {
            Some(q) if joins => {
                q.datagrams += count;
                q.frames += 1;
                q.closed = last_len < q.size;
                q.loc = Loc::Out(train_start..self.out.len());
            }
            _ => {
                self.queue.push(Queued {
                    port: tx.port,
                    dest: tx.dest,
                    sender,
                    size,
                    datagrams: count,
                    frames: 1,
                    closed: last_len < size,
                    loc: if in_arena { Loc::Arena } else { Loc::Out(start..self.out.len()) },
                    failed: None,
                });
            }
        }
        TxOutcome::Queued
    }

    /// Makes the last queued message's bytes end the out buffer (copying
    /// them there from the arena, or from earlier in the buffer, where a
    /// flood's copies share them), so that a frame can join it; returns
    /// where they now start. The caller checked the room.
    fn move_last_to_end(&mut self) -> usize {
        let Some(q) = self.queue.last_mut() else { return self.out.len() };
        let start = self.out.len();
        match &q.loc {
            Loc::Out(r) if r.end == start => return r.start,
            Loc::Out(r) => self.out.extend_from_within(r.clone()),
            Loc::Arena => self.out.extend_from_slice(self.segments.datagrams()),
        }
        q.loc = Loc::Out(start..self.out.len());
        start
    }

    /// Before the arena is reused for another frame: the queued messages
    /// that are still its bytes (one plain frame, perhaps for several
    /// peers) get a copy of them in the out buffer, shared by all of them,
    /// if the frame is small and there is room; otherwise everything
    /// queued leaves now (copying a 64 KiB train costs more than the
    /// system call it would save).
    fn release_arena(&mut self) {
        if !self.queue.iter().any(|q| q.loc == Loc::Arena) {
            return;
        }
        let bytes = self.segments.datagrams().len();
        if bytes > COPY_LIMIT || self.out.len() + bytes > OUT_BUFFER {
            self.flush();
            return;
        }
        let start = self.out.len();
        self.out.extend_from_slice(self.segments.datagrams());
        let range = start..self.out.len();
        for q in self.queue.iter_mut().filter(|q| q.loc == Loc::Arena) {
            q.loc = Loc::Out(range.clone());
        }
        if self.last.range.is_none() {
            self.last.range = Some(range);
        }
    }

    /// Segments `frame` into the arena with room for the encapsulation,
    /// checks every segment against the overlay MTU and, on a plain
    /// overlay, writes the VXLAN header in front of each.
    fn encapsulate(
        &mut self,
        vni: Vni,
        frame: &[u8],
        hdr: &VirtioNetHdr,
        ip_mtu: u16,
        encrypted: bool,
    ) -> Result<(), DropReason> {
        // Segments are cut with room for the encapsulation around each, so
        // headers (and tags) are written in place and the arena is the GSO
        // payload: one copy of the frame in all (two when sealed).
        let (head, tail) = if encrypted { (crypto::HEADER_LEN, crypto::TAG_LEN) } else { (HEADER_LEN, 0) };
        self.segments.set_room(head, tail);
        self.inner_checksum = InnerChecksum::AsSent;
        let cut = if encrypted && hdr.needs_csum() {
            // Left partial wherever the receiver can find the checksum again
            // (the tag vouches for the frame); completed otherwise.
            match offload::segment_to_mtu_partial(frame, hdr, ip_mtu, &mut self.segments) {
                Ok(n) => {
                    self.inner_checksum = InnerChecksum::Partial;
                    Ok(n)
                }
                Err(_) => offload::segment_to_mtu(frame, hdr, ip_mtu, &mut self.segments),
            }
        } else if hdr.is_gso() || hdr.needs_csum() {
            offload::segment_to_mtu(frame, hdr, ip_mtu, &mut self.segments)
        } else {
            offload::segment(frame, hdr, &mut self.segments)
        };
        let Ok(count) = cut else { return Err(DropReason::OffloadFailed) };
        if count == 0 {
            return Err(DropReason::OffloadFailed);
        }
        let max_frame = usize::from(ip_mtu) + vxlan::ETHERNET_HEADER_LEN;
        let header = vxlan::VxlanRepr { vni }.to_bytes();
        for i in 0..count {
            let Some(room) = self.segments.get_with_room_mut(i) else { break };
            if room.len() - head - tail > max_frame {
                return Err(DropReason::Oversize);
            }
            if !encrypted {
                room[..HEADER_LEN].copy_from_slice(&header);
            }
        }
        Ok(())
    }

    /// Datagrams of `size` bytes one send from `sender` may carry: the
    /// kernel's GSO segment limit and 64 KiB of UDP payload.
    fn per_send(&self, sender: usize, size: usize) -> usize {
        self.io.max_gso_segments(sender).min(MAX_UDP_PAYLOAD / size.max(1)).max(1)
    }

    /// Sends every queued message: per sending socket, in the order they
    /// were queued, as many per system call as the underlay takes
    /// (`sendmmsg`); a message with more datagrams than one GSO send
    /// carries (one big frame) is cut into several. A failure is recorded
    /// for every frame of the message it hit ([`Tunnel::take_failures`]); a
    /// full socket buffer fails the rest of that socket's messages too.
    pub(crate) fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        // Messages grouped by socket, each group in queue order: sorting
        // (socket, index) pairs keeps every flow's order without allocating.
        self.order.clear();
        self.order.extend((0..self.queue.len()).map(|i| (self.queue[i].sender as u16, i as u16)));
        self.order.sort_unstable();
        let mut msgs = [Outgoing::EMPTY; MAX_SEND_BATCH];
        let mut owners = [0u16; MAX_SEND_BATCH];
        let mut at = 0;
        while at < self.order.len() {
            let sender = usize::from(self.order[at].0);
            let group_end = at + self.order[at..].iter().take_while(|&&(s, _)| usize::from(s) == sender).count();
            let mut n = 0;
            let mut blocked = false;
            for &(_, index) in &self.order[at..group_end] {
                let (size, dest) = (self.queue[usize::from(index)].size, self.queue[usize::from(index)].dest);
                let per_send = size * self.per_send(sender, size);
                let payload = match &self.queue[usize::from(index)].loc {
                    Loc::Arena => self.segments.datagrams(),
                    Loc::Out(r) => &self.out[r.clone()],
                };
                for chunk in payload.chunks(per_send) {
                    if n == MAX_SEND_BATCH {
                        let (msgs, owners) = (&msgs[..n], &owners[..n]);
                        blocked = send_group(
                            &mut *self.io,
                            &mut self.counters,
                            &mut self.queue,
                            sender,
                            msgs,
                            owners,
                            blocked,
                        );
                        n = 0;
                    }
                    let segment_size = (chunk.len() > size).then_some(size as u16);
                    msgs[n] = Outgoing { to: dest, contents: chunk, segment_size };
                    owners[n] = index;
                    n += 1;
                }
            }
            send_group(&mut *self.io, &mut self.counters, &mut self.queue, sender, &msgs[..n], &owners[..n], blocked);
            at = group_end;
        }
        for q in self.queue.drain(..) {
            if let Some(reason) = q.failed {
                self.failures.extend(std::iter::repeat_n((q.port, reason), q.frames as usize));
            }
        }
        self.out.clear();
    }

    /// The frames whose send failed since the last call, by tunnel port
    /// and reason (one entry per frame).
    pub(crate) fn take_failures(&mut self) -> std::vec::Drain<'_, (PortId, DropReason)> {
        self.failures.drain(..)
    }
}

/// Sends `msgs` (of queued messages `owners`) from `sender` in as few
/// calls as the underlay needs, counting what left and marking the owners
/// of what failed. After a full socket buffer (`blocked`: already earlier)
/// nothing more is tried. Returns whether the socket is now blocked.
fn send_group(
    io: &mut dyn Underlay,
    counters: &mut TunnelCounters,
    queue: &mut [Queued],
    sender: usize,
    msgs: &[Outgoing<'_>],
    owners: &[u16],
    mut blocked: bool,
) -> bool {
    let mut at = 0;
    while at < msgs.len() {
        let gso = io.max_gso_segments(sender) > 1;
        let result = if blocked {
            Err(io::ErrorKind::WouldBlock.into())
        } else if !gso && msgs[at].segment_size.is_some() {
            // A train built before the underlay turned GSO off.
            match send_singly(io, counters, sender, &msgs[at]) {
                Ok(()) => {
                    at += 1;
                    continue;
                }
                Err(e) => Err(e),
            }
        } else {
            io.send_batch(sender, &msgs[at..])
        };
        match result {
            Ok(sent) if sent > 0 => {
                counters.tx_calls += 1;
                for msg in &msgs[at..at + sent] {
                    let size = msg.segment_size.map_or(msg.contents.len(), usize::from).max(1);
                    counters.tx_sends += 1;
                    counters.tx_packets += msg.contents.len().div_ceil(size) as u64;
                    counters.tx_bytes += msg.contents.len() as u64;
                }
                at += sent;
            }
            // The underlay refused this train and turned GSO off (a driver
            // without UDP GSO): it leaves again, as single datagrams,
            // rather than be lost.
            Err(ref e) if gso && e.kind() != io::ErrorKind::WouldBlock && io.max_gso_segments(sender) == 1 => {}
            Ok(_) | Err(_) => {
                let e = result.err().unwrap_or_else(|| io::ErrorKind::WouldBlock.into());
                blocked = e.kind() == io::ErrorKind::WouldBlock;
                let reason = if blocked { DropReason::TxQueueFull } else { DropReason::TxError };
                // A full buffer refuses the rest as well; any other error
                // is this message's (its destination's) alone.
                let failed = if blocked { msgs.len() } else { at + 1 };
                for &owner in &owners[at..failed] {
                    if let Some(q) = queue.get_mut(usize::from(owner)) {
                        q.failed.get_or_insert(reason);
                    }
                }
                at = failed;
            }
        }
    }
    blocked
}

/// Sends GSO train `msg` as single datagrams, from `sender`, in as few
/// calls as the underlay takes, counting each call, datagram and byte
/// that left: the underlay turned GSO off after the train was built.
/// Fails when a call sends nothing (the rest of the train is lost).
fn send_singly(
    io: &mut dyn Underlay,
    counters: &mut TunnelCounters,
    sender: usize,
    msg: &Outgoing<'_>,
) -> io::Result<()> {
    let size = msg.segment_size.map_or(msg.contents.len(), usize::from).max(1);
    let mut singles = [Outgoing::EMPTY; MAX_SEND_BATCH];
    let mut chunks = msg.contents.chunks(size).peekable();
    while chunks.peek().is_some() {
        let mut n = 0;
        for chunk in chunks.by_ref().take(MAX_SEND_BATCH) {
            singles[n] = Outgoing { to: msg.to, contents: chunk, segment_size: None };
            n += 1;
        }
        let mut done = 0;
        while done < n {
            let sent = io.send_batch(sender, &singles[done..n])?;
            if sent == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            counters.tx_calls += 1;
            for single in &singles[done..done + sent] {
                counters.tx_sends += 1;
                counters.tx_packets += 1;
                counters.tx_bytes += single.contents.len() as u64;
            }
            done += sent;
        }
    }
    Ok(())
}

/// One frame for [`Tunnel::send`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TunnelTx<'a> {
    /// The tunnel port it leaves through (one per network and peer).
    pub(crate) port: PortId,
    /// The network's VNI.
    pub(crate) vni: Vni,
    /// The peer's VTEP.
    pub(crate) dest: SocketAddr,
    /// Which frame this is: calls with the same id carry the same frame
    /// (a flood), which is segmented and encapsulated once. The caller
    /// makes ids unique per batch and frame.
    pub(crate) frame_id: u64,
    /// The Ethernet frame.
    pub(crate) frame: &'a [u8],
    /// Its virtio-net header (or the one a TAP would have given it).
    pub(crate) hdr: &'a VirtioNetHdr,
}

/// What the segment arena holds: the frame, and how it was encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    frame: u64,
    vni: Vni,
    encrypted: bool,
    ip_mtu: u16,
}

/// A message waiting for [`Tunnel::flush`]: a datagram or a GSO train for
/// one (tunnel port, sending socket); the last one queued may still grow.
#[derive(Debug, Clone)]
struct Queued {
    port: PortId,
    dest: SocketAddr,
    sender: usize,
    /// The segment size: every datagram's but the last.
    size: usize,
    datagrams: usize,
    /// Frames in it (each dropped if the send fails).
    frames: u32,
    /// Its last datagram is shorter than `size`: nothing may follow.
    closed: bool,
    /// Where its bytes are.
    loc: Loc,
    /// Why its send failed, if it did.
    failed: Option<DropReason>,
}

/// Where a queued message's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loc {
    /// The whole segment arena: one plain frame, not copied (several
    /// messages share it when the frame is flooded).
    Arena,
    /// This range of the out buffer (flood copies may share one).
    Out(Range<usize>),
}

/// Where the datagrams of the last queued frame are, for captures.
#[derive(Debug, Clone, Default)]
struct LastQueued {
    sender: usize,
    size: usize,
    /// Their range in the out buffer; `None`: the whole segment arena.
    range: Option<Range<usize>>,
}

#[cfg(test)]
mod tests {
    //! The kernel's sockets over the IPv6 loopback: no root needed.

    use std::time::{Duration, Instant};

    use socket2::SockRef;

    use super::*;

    /// Binds an underlay on `addr`; `None` (and a note) on a host without IPv6.
    fn bind(addr: &str, senders: usize) -> Option<UdpUnderlay> {
        match UdpUnderlay::open(addr.parse().expect("a socket address"), senders) {
            Ok(u) => Some(u),
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                eprintln!("SKIPPED: no IPv6 loopback here ({e})");
                None
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }

    /// Receives until `want` datagrams arrived (cut at each buffer's GRO
    /// stride), or 10 s passed: (source, datagram) in arrival order.
    fn receive(u: &mut UdpUnderlay, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let mut bufs = vec![vec![0u8; 65_536]; 4];
        let mut metas = [RecvMeta::default(); 4];
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < want && Instant::now() < deadline {
            let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match u.recv(&mut slices, &mut metas) {
                Ok(n) => {
                    for (meta, buf) in metas[..n].iter().zip(&bufs) {
                        for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                            got.push((meta.addr, datagram.to_vec()));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("recv: {e}"),
            }
        }
        got
    }

    #[test]
    fn an_ipv6_underlay_is_v6only_and_carries_gso_trains() {
        let (Some(mut a), Some(mut b)) = (bind("[::1]:0", 2), bind("[::]:0", 1)) else { return };
        for socket in std::iter::once(&a.rx).chain(a.tx.iter().map(|t| &t.socket)).chain([&b.rx]) {
            assert!(SockRef::from(socket).only_v6().expect("IPV6_V6ONLY"), "{socket:?} takes IPv4 too");
        }
        // IPv4 on the same port is someone else's: the wildcard IPv6 VTEP
        // does not hold it (it would, as mapped addresses, without V6ONLY).
        let port = b.rx.local_addr().expect("bound").port();
        let v4 = UdpSocket::bind(("0.0.0.0", port)).expect("IPv4 on the IPv6 VTEP's port is free");
        drop(v4);

        // A GSO train of three 1,000-byte datagrams and a 300-byte one,
        // from sender 1 to b, in one sendmmsg: they arrive as four
        // datagrams from sender 1's port, GRO or not.
        let dest = SocketAddr::new("::1".parse().expect("loopback"), port);
        let train: Vec<u8> = (0..3000u32).map(|i| (i / 1000) as u8 + 1).collect();
        let segment_size = (a.max_gso_segments(1) > 1).then_some(1000);
        let single = [9u8; 300];
        let mut msgs: Vec<Outgoing<'_>> = match segment_size {
            Some(size) => vec![Outgoing { to: dest, contents: &train, segment_size: Some(size) }],
            None => train.chunks(1000).map(|c| Outgoing { to: dest, contents: c, segment_size: None }).collect(),
        };
        msgs.push(Outgoing { to: dest, contents: &single, segment_size: None });
        assert_eq!(a.send_batch(1, &msgs).expect("a sendmmsg"), msgs.len());
        let got = receive(&mut b, 4);
        let source = SocketAddr::new("::1".parse().expect("loopback"), a.sender_port(1));
        let expected: Vec<(SocketAddr, Vec<u8>)> =
            vec![(source, vec![1; 1000]), (source, vec![2; 1000]), (source, vec![3; 1000]), (source, single.to_vec())];
        assert_eq!(got, expected, "GSO segments {:?}, GRO segments {}", segment_size, b.gro_segments());
    }

    #[test]
    fn a_tunnel_over_ipv6_encapsulates_for_its_peer_and_allows_70_bytes_less() {
        let (Some(a), Some(mut b)) = (bind("[::1]:0", 2), bind("[::1]:0", 1)) else { return };
        let local = a.rx.local_addr().expect("bound");
        let mut tunnel =
            Tunnel::with_underlay(VtepConfig { local, learn_peers: false, underlay_mtu: 1500 }, Box::new(a));
        assert_eq!((tunnel.inner_ip_mtu(), tunnel.ip_mtu(true)), (1430, 1398));
        let dest = b.rx.local_addr().expect("bound");
        let vni = Vni::new(4242).expect("a VNI");
        // An IPv4 packet of 1430 bytes fits; 1431 does not (and is not sent).
        let frame = |ip_len: usize| {
            let mut f = vec![0u8; 14 + ip_len];
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
            f[20] = 0x40; // DF
            f[23] = 17;
            f
        };
        let hdr = VirtioNetHdr::default();
        let (big, fits) = (frame(1431), frame(1430));
        let tx = |frame_id, frame| TunnelTx { port: PortId(7), vni, dest, frame_id, frame, hdr: &hdr };
        assert_eq!(tunnel.send(tx(1, &big), None), TxOutcome::TooBig(TooBig::Ipv4));
        assert_eq!(tunnel.send(tx(2, &fits), None), TxOutcome::Queued);
        tunnel.flush();
        assert_eq!(tunnel.take_failures().count(), 0);
        let (source, mut sent) = tunnel.last_queued();
        assert_eq!(source.ip(), local.ip());
        assert_eq!(sent.next().map(<[u8]>::len), Some(8 + 14 + 1430));
        let got = receive(&mut b, 1);
        assert_eq!(got.len(), 1, "the datagram crossed the IPv6 loopback");
        assert_eq!(got[0].0, source, "from the send pool's address and port");
        assert_eq!(vxlan::decapsulate(&got[0].1), Ok((vni, &frame(1430)[..])));
        assert_eq!((tunnel.counters().tx_packets, tunnel.counters().tx_sends), (1, 1));
    }
}
