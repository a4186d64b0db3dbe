//! The datapath's end of the L4 translator ([`crate::nat`]): the host
//! sockets of flows and published ports, their event-loop registrations,
//! and moving bytes between them and batch buffers.
//!
//! Every socket is non-blocking and registered once with the datapath's
//! epoll (edge-triggered): flows under [`FLOW_TOKENS`] + flow id, published
//! ports under [`LISTENER_TOKENS`] + listener id. No thread or process per
//! port or connection. Bytes from host sockets are read straight into the
//! batch's frame buffers behind room for the headers, so a 64 KiB read is
//! one frame toward the sandbox and no copy.
//!
//! IPv4 and IPv6 flows alike: a flow's socket is of its destination's
//! family, a published port's of its address's (IPv6 ones take IPv6 only,
//! `IPV6_V6ONLY`, so `0.0.0.0` and `[::]` are two sockets as in Docker).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;

use super::handle::DatapathError;
use super::{Datapath, PortIo};
use crate::counters::DropReason;
use crate::daemon::batch::{HDR, Placed, RxEntry};
use crate::nat::reassembly::{Outcome, Reassembler, is_fragment};
use crate::nat::{
    DataFrame, Emit, Family, FlowId, FlowInfo, Host, Limits, ListenerId, MAX_UDP_PAYLOAD, NetView, Proto, Publication,
    TCP_PAYLOAD, Translator, Unsupported, each_datagram,
};
use crate::offload::ChecksumState;
use crate::port::{NetworkId, PortId};
use crate::sys::tap::Tap;
use crate::sys::{dgram, stream};
use crate::wire::VirtioNetHdr;

/// Token ranges of flow sockets and listening sockets.
pub(super) const FLOW_TOKENS: usize = 1 << 40;
pub(super) const LISTENER_TOKENS: usize = 1 << 39;
/// Connections accepted per listener per pass (the rest wait for the next).
const ACCEPTS_PER_PASS: usize = 64;
/// Listen backlog of published TCP ports.
const BACKLOG: i32 = 4096;

/// A flow's host socket.
#[derive(Debug)]
enum FlowSocket {
    /// TCP, connecting (egress) or connected.
    Tcp { stream: TcpStream, connecting: bool },
    /// A connected UDP socket, or an ICMP ping socket (both are datagram
    /// sockets for `send`/`recv`). Trains are tried on it only with
    /// segments below `trains_below`: the smallest the kernel refused (a
    /// segment over the path MTU, a route that cannot checksum), whose
    /// trains then go one datagram at a time without a failed call each.
    Datagram { socket: UdpSocket, trains_below: usize },
    /// A raw ICMP (ICMPv6) socket connected to the destination, where ping
    /// sockets are not allowed (`net.ipv4.ping_group_range`, which governs
    /// both families); it sees every ICMP message from that address, so
    /// replies are matched by type and echo id. Raw ICMPv4 sockets read
    /// the IP header too, ICMPv6 ones do not.
    RawIcmp { socket: UdpSocket, id: u16, family: Family },
}

impl FlowSocket {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            FlowSocket::Tcp { stream, .. } => stream.as_fd(),
            FlowSocket::Datagram { socket, .. } | FlowSocket::RawIcmp { socket, .. } => socket.as_fd(),
        }
    }
}

/// A published port's socket.
#[derive(Debug)]
enum ListenerSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl ListenerSocket {
    fn raw_fd(&self) -> i32 {
        match self {
            ListenerSocket::Tcp(l) => l.as_raw_fd(),
            ListenerSocket::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// The translator with its sockets.
pub(super) struct NatIo {
    pub(super) translator: Translator,
    sockets: Vec<Option<FlowSocket>>,
    listeners: Vec<Option<ListenerSocket>>,
    by_address: HashMap<(Proto, SocketAddr), ListenerId>,
    /// Control frames waiting to enter the bridge.
    pub(super) out: Emit,
    /// Datagram flows with something to read.
    datagrams_ready: ReadyFlows,
    /// What the kernel and the ports allow the flow sockets.
    options: SocketOptions,
    skipped: Vec<u8>,
    listeners_ready: Vec<ListenerId>,
    /// Fragmented datagrams from sandboxes, made whole before translation.
    reassembly: Reassembler,
}

impl NatIo {
    /// The translator, the sockets it works through (as its `Host`) and
    /// its arena of control frames, borrowed apart for one call that needs
    /// all three.
    fn parts<'a>(&'a mut self, registry: &'a Registry) -> (&'a mut Translator, Sockets<'a>, &'a mut Emit) {
        let NatIo { translator, sockets, listeners, out, options, .. } = self;
        (translator, Sockets { sockets, listeners, registry, options: *options }, out)
    }

    /// Forgets the fragments port `port` sent (removed: its id may be
    /// reused), uncounted.
    pub(super) fn forget_fragments_of(&mut self, port: PortId) {
        self.reassembly.forget_port(port.0);
    }

    pub(super) fn new(limits: Limits, seed: u64) -> NatIo {
        // Trains reach sandboxes as GSO_UDP_L4 frames, which TAPs and
        // packet sockets take from Linux 6.2. `VSWITCH_NO_UDP_GRO=1`:
        // datagrams from the host one by one; `VSWITCH_NO_UDP_GSO=1`:
        // datagrams to the host one by one (for paths that lose UDP GSO
        // packets, and A/B benchmarks).
        let trains = crate::sys::tap::kernel_takes_uso();
        let options = SocketOptions {
            peek_offset: peek_offset_usable(),
            udp_gro: trains && std::env::var_os("VSWITCH_NO_UDP_GRO").is_none(),
            udp_gso: trains && std::env::var_os("VSWITCH_NO_UDP_GSO").is_none(),
        };
        let mut translator = Translator::new(limits, seed);
        translator.set_hold_datagrams(options.udp_gso);
        NatIo {
            translator,
            sockets: Vec::new(),
            listeners: Vec::new(),
            by_address: HashMap::new(),
            out: Emit::default(),
            datagrams_ready: ReadyFlows::default(),
            listeners_ready: Vec::new(),
            options,
            skipped: Vec::new(),
            reassembly: Reassembler::new(),
        }
    }

    /// After a peak of flows has ended: lets go of per-flow memory and
    /// returns free heap memory to the system, so the daemon's RSS goes
    /// back down (glibc keeps freed small blocks otherwise).
    pub(super) fn release_memory(&mut self) {
        if !self.translator.take_emptied() {
            return;
        }
        self.sockets = Vec::new();
        self.out = Emit::default();
        self.datagrams_ready = ReadyFlows::default();
        crate::sys::mem::owe_trim();
    }

    /// The local addresses of the published ports' sockets.
    #[cfg(test)]
    pub(super) fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .flatten()
            .filter_map(|l| match l {
                ListenerSocket::Tcp(s) => s.local_addr().ok(),
                ListenerSocket::Udp(s) => s.local_addr().ok(),
            })
            .collect()
    }

    /// Something waits to be read or sent.
    pub(super) fn has_work(&self) -> bool {
        !self.out.is_empty()
            || !self.datagrams_ready.list.is_empty()
            || !self.listeners_ready.is_empty()
            || self.translator.has_sendable()
    }
}

/// Datagram flows with something to read, each listed once however many
/// readiness events it had (the event loop is edge-triggered: a socket
/// that is flooded gets one per arrival), served in turn: a flow that still
/// has datagrams when a batch fills goes after the flows not yet served.
#[derive(Debug, Default)]
struct ReadyFlows {
    list: Vec<FlowId>,
    /// By flow id: listed.
    listed: Vec<bool>,
}

impl ReadyFlows {
    /// Lists flow `id` unless it is listed.
    fn push(&mut self, id: FlowId) {
        let i = id.0 as usize;
        if self.listed.len() <= i {
            self.listed.resize(i + 1, false);
        }
        if !self.listed[i] {
            self.listed[i] = true;
            self.list.push(id);
        }
    }

    /// Marks flow `id` as no longer listed (it was drained, or is gone).
    fn unlist(&mut self, id: FlowId) {
        if let Some(listed) = self.listed.get_mut(id.0 as usize) {
            *listed = false;
        }
    }

    /// The list, to serve (still listed: pushes meanwhile are dropped).
    fn take(&mut self) -> Vec<FlowId> {
        std::mem::take(&mut self.list)
    }

    /// Puts back what [`ReadyFlows::take`] gave, after serving its first
    /// `visited` flows, of which the first `kept` slots now hold those
    /// still to be read (the others were unlisted): the flows not visited
    /// go first, then the kept ones, then those pushed meanwhile.
    fn put_back(&mut self, mut ready: Vec<FlowId>, kept: usize, visited: usize) {
        ready.drain(kept..visited);
        ready.rotate_left(kept);
        ready.append(&mut self.list);
        self.list = ready;
    }
}

/// Bytes in flight toward a sandbox that a kernel without `SO_PEEK_OFF` can
/// skip when peeking (the scratch buffer's size).
const MAX_SKIPPED: usize = 512 << 10;

/// Whether TCP peek offsets can be used: the kernel has them and
/// `VSWITCH_NO_PEEK_OFFSET` (for testing the fallback) is not set.
fn peek_offset_usable() -> bool {
    let usable = std::env::var_os("VSWITCH_NO_PEEK_OFFSET").is_none() && stream::tcp_peek_offset_supported();
    if !usable {
        tracing::info!("TCP sockets have no peek offset (SO_PEEK_OFF, Linux 6.10): peeks start at the queue's front");
    }
    usable
}

/// The [`Host`] the translator works through: the flow sockets and the
/// registry they are registered with.
struct Sockets<'a> {
    sockets: &'a mut Vec<Option<FlowSocket>>,
    listeners: &'a [Option<ListenerSocket>],
    registry: &'a Registry,
    options: SocketOptions,
}

/// How the translator's sockets are set up.
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketOptions {
    /// The kernel keeps a peek offset on TCP sockets (`SO_PEEK_OFF`, Linux
    /// 6.10); without it every peek starts at the queue's front and the
    /// bytes already sent are peeked into `skipped` again.
    peek_offset: bool,
    /// UDP sockets coalesce what arrives into trains (`UDP_GRO`), which
    /// reach sandboxes as `GSO_UDP_L4` frames: on from Linux 6.2, whose
    /// TAPs and packet sockets take those.
    udp_gro: bool,
    /// Trains of a sandbox's datagrams leave as UDP GSO sends
    /// (`UDP_SEGMENT`): on from Linux 6.2 (the kernel has had it since
    /// 4.18); off, one `send` per datagram.
    udp_gso: bool,
}

impl Sockets<'_> {
    fn get(&self, flow: FlowId) -> io::Result<&FlowSocket> {
        self.sockets
            .get(flow.0 as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn store(&mut self, flow: FlowId, socket: FlowSocket, interest: Interest) -> io::Result<()> {
        let fd = socket.fd().as_raw_fd();
        self.registry.register(&mut SourceFd(&fd), Token(FLOW_TOKENS + flow.0 as usize), interest)?;
        let i = flow.0 as usize;
        if self.sockets.len() <= i {
            self.sockets.resize_with(i + 1, || None);
        }
        self.sockets[i] = Some(socket);
        Ok(())
    }
}

fn open_icmp(to: SocketAddr, id: u16) -> io::Result<FlowSocket> {
    let family = Family::of(to.ip());
    let (domain, protocol) = match family {
        Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
        Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
    };
    let to = SockAddr::from(to);
    match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(socket) => {
            socket.set_nonblocking(true)?;
            socket.connect(&to)?;
            Ok(FlowSocket::Datagram { socket: socket.into(), trains_below: usize::MAX })
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
            let socket = Socket::new(domain, Type::RAW, Some(protocol))?;
            socket.set_nonblocking(true)?;
            socket.connect(&to)?;
            Ok(FlowSocket::RawIcmp { socket: socket.into(), id, family })
        }
        Err(e) => Err(e),
    }
}

/// Sends a train of a sandbox's datagrams from `fd` as one (one system
/// call, one skb the kernel cuts, or passes on whole where the route's
/// device takes UDP GSO). `Err` when the kernel refuses it as a train
/// (see [`dgram::send_train`]), with the error when it was `EMSGSIZE`: its
/// datagrams then go one at a time, each with its own outcome (a too-big
/// one gets its ICMP error). A full send buffer (`WouldBlock`) loses the
/// whole train, as it would each of its datagrams sent alone.
fn send_as_train(
    fd: BorrowedFd<'_>,
    to: Option<SocketAddr>,
    data: &[u8],
    segment: usize,
) -> Result<io::Result<()>, Option<io::Error>> {
    let segment = u16::try_from(segment).map_err(|_| None)?;
    match dgram::send_train(fd, to, data, segment) {
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Err(Some(e)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO)) => Err(None),
        sent => Ok(sent),
    }
}

/// The outcome of a refused train sent one datagram at a time (`singly`).
/// A train is never too large (the translator bounds it), so `EMSGSIZE`
/// for it was the socket's pending error (an ICMP packet too big or
/// fragmentation needed that arrived since the last call), which the
/// train's call took: the sandbox still gets told, as after a single send.
fn after_refusal(refused: Option<io::Error>, singly: io::Result<()>) -> io::Result<()> {
    match refused {
        Some(pending) => singly.and(Err(pending)),
        None => singly,
    }
}

impl Host for Sockets<'_> {
    fn open(&mut self, flow: FlowId, proto: Proto, to: SocketAddr) -> io::Result<()> {
        let addr = SockAddr::from(to);
        let domain = Domain::for_address(to);
        match proto {
            Proto::Tcp => {
                let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
                socket.set_nonblocking(true)?;
                socket.set_tcp_nodelay(true)?;
                if self.options.peek_offset {
                    stream::set_peek_offset(socket.as_fd(), 0)?;
                }
                match socket.connect(&addr) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
                let stream = FlowSocket::Tcp { stream: socket.into(), connecting: true };
                self.store(flow, stream, Interest::READABLE | Interest::WRITABLE)
            }
            Proto::Udp => {
                let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
                socket.set_nonblocking(true)?;
                if self.options.udp_gro {
                    // Best effort: without it datagrams come one by one.
                    let _ = dgram::set_udp_gro(socket.as_fd());
                }
                socket.connect(&addr)?;
                self.store(
                    flow,
                    FlowSocket::Datagram { socket: socket.into(), trains_below: usize::MAX },
                    Interest::READABLE,
                )
            }
            // The echo id is known only from the first request: the raw
            // fallback learns it in `send`.
            Proto::Icmp => self.store(flow, open_icmp(to, 0)?, Interest::READABLE),
        }
    }

    fn send(&mut self, flow: FlowId, data: &[u8]) -> io::Result<usize> {
        let i = flow.0 as usize;
        match self.sockets.get_mut(i).and_then(Option::as_mut) {
            Some(FlowSocket::Tcp { stream, .. }) => stream::send(stream.as_fd(), data),
            Some(FlowSocket::Datagram { socket, .. }) => socket.send(data),
            Some(FlowSocket::RawIcmp { socket, id, .. }) => {
                if data.len() >= 6 {
                    *id = u16::from_be_bytes([data[4], data[5]]);
                }
                socket.send(data)
            }
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn send_to(&mut self, listener: ListenerId, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        match self.listeners.get(listener.0 as usize).and_then(Option::as_ref) {
            Some(ListenerSocket::Udp(socket)) => socket.send_to(data, to).map(drop),
            _ => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn send_train(&mut self, flow: FlowId, data: &[u8], segment: usize) -> io::Result<()> {
        let socket = self.sockets.get_mut(flow.0 as usize).and_then(Option::as_mut);
        let refused = match socket {
            Some(FlowSocket::Datagram { socket, trains_below }) if self.options.udp_gso && segment < *trains_below => {
                match send_as_train(socket.as_fd(), None, data, segment) {
                    Ok(sent) => return sent,
                    Err(refused) => {
                        // EMSGSIZE was a pending error, not the train's.
                        if refused.is_none() {
                            *trains_below = segment;
                        }
                        refused
                    }
                }
            }
            _ => None,
        };
        after_refusal(refused, each_datagram(data, segment, |d| self.send(flow, d).map(drop)))
    }

    fn send_train_to(&mut self, listener: ListenerId, to: SocketAddr, data: &[u8], segment: usize) -> io::Result<()> {
        let refused = match self.listeners.get(listener.0 as usize) {
            Some(Some(ListenerSocket::Udp(socket))) if self.options.udp_gso => {
                match send_as_train(socket.as_fd(), Some(to), data, segment) {
                    Ok(sent) => return sent,
                    Err(refused) => refused,
                }
            }
            _ => None,
        };
        after_refusal(refused, each_datagram(data, segment, |d| self.send_to(listener, to, d)))
    }

    fn shutdown_write(&mut self, flow: FlowId) {
        if let Ok(FlowSocket::Tcp { stream, .. }) = self.get(flow) {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    }

    fn discard(&mut self, flow: FlowId, len: usize) {
        if let Ok(FlowSocket::Tcp { stream, .. }) = self.get(flow) {
            let mut left = len;
            while left > 0 {
                match stream::discard(stream.as_fd(), left) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n,
                }
            }
        }
    }

    fn rewind(&mut self, flow: FlowId) {
        // Without a peek offset every peek starts at the front anyway.
        if !self.options.peek_offset {
            return;
        }
        if let Ok(FlowSocket::Tcp { stream, .. }) = self.get(flow) {
            let _ = stream::set_peek_offset(stream.as_fd(), 0);
        }
    }

    fn close(&mut self, flow: FlowId, reset: bool) {
        let Some(socket) = self.sockets.get_mut(flow.0 as usize).and_then(Option::take) else { return };
        let fd = socket.fd().as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        if reset && let FlowSocket::Tcp { stream, .. } = &socket {
            let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    fn path_mtu(&mut self, flow: FlowId) -> Option<u32> {
        match self.get(flow).ok()? {
            FlowSocket::Datagram { socket, .. } | FlowSocket::RawIcmp { socket, .. } => {
                dgram::ipv6_path_mtu(socket.as_fd()).ok()
            }
            FlowSocket::Tcp { .. } => None,
        }
    }
}

/// Binds a published port's socket (an IPv6 one for IPv6 only); a UDP one
/// coalesces what arrives into trains with `udp_gro` (see
/// [`SocketOptions::udp_gro`]).
fn bind(proto: Proto, addr: SocketAddr, udp_gro: bool) -> io::Result<ListenerSocket> {
    let sockaddr = SockAddr::from(addr);
    let domain = Domain::for_address(addr);
    match proto {
        Proto::Tcp => {
            let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&sockaddr)?;
            socket.listen(BACKLOG)?;
            Ok(ListenerSocket::Tcp(socket.into()))
        }
        Proto::Udp => {
            let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            if addr.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.set_nonblocking(true)?;
            if udp_gro {
                // Best effort: without it datagrams come one by one.
                let _ = dgram::set_udp_gro(socket.as_fd());
            }
            socket.bind(&sockaddr)?;
            Ok(ListenerSocket::Udp(socket.into()))
        }
        Proto::Icmp => Err(io::Error::from(io::ErrorKind::Unsupported)),
    }
}

/// The IP source address of an Ethernet frame carrying IPv4 or IPv6 (no
/// VLAN tag), if it is long enough to hold one.
fn ip_source(frame: &[u8]) -> Option<IpAddr> {
    match frame.get(12..14)? {
        [0x08, 0x00] => <[u8; 4]>::try_from(frame.get(26..30)?).ok().map(|a| IpAddr::V4(a.into())),
        [0x86, 0xdd] => <[u8; 16]>::try_from(frame.get(22..38)?).ok().map(|a| IpAddr::V6(a.into())),
        _ => None,
    }
}

/// `addr` with an IPv4-mapped IPv6 address as the IPv4 address it maps.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether a bind failure of an optional listener (the `[::]` companion of
/// a mapping on every address) means the host has no IPv6 to listen on.
fn no_ipv6(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT))
}

impl Datapath {
    /// Opens listeners for new publications, updates the backends of open
    /// ones; all or nothing.
    pub(super) fn publish(&mut self, publications: Vec<Publication>) -> Result<(), DatapathError> {
        let mut opened: Vec<ListenerId> = Vec::new();
        for p in &publications {
            if self.nat.by_address.contains_key(&(p.proto, p.host)) {
                continue;
            }
            let result = bind(p.proto, p.host, self.nat.options.udp_gro).and_then(|socket| {
                let id = self.free_listener_slot();
                let fd = socket.raw_fd();
                self.poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(LISTENER_TOKENS + id.0 as usize),
                    Interest::READABLE,
                )?;
                self.nat.listeners[id.0 as usize] = Some(socket);
                self.nat.by_address.insert((p.proto, p.host), id);
                Ok(id)
            });
            match result {
                Ok(id) => opened.push(id),
                Err(source) if p.optional && no_ipv6(&source) => {
                    tracing::info!(proto = %p.proto, addr = %p.host, error = %source, "no IPv6 on this host: not listening");
                }
                Err(source) => {
                    for id in opened {
                        self.close_listener(id);
                    }
                    return Err(DatapathError::Listen { proto: p.proto, addr: p.host, source });
                }
            }
        }
        for p in publications {
            let Some(&id) = self.nat.by_address.get(&(p.proto, p.host)) else { continue };
            tracing::info!(proto = %p.proto, addr = %p.host, backends = p.backends.len(), "published port");
            self.nat.translator.set_listener(id, p.proto, p.host, p.backends);
            // Clients may be queued already (a restart): accept them.
            self.nat.listeners_ready.push(id);
        }
        Ok(())
    }

    fn free_listener_slot(&mut self) -> ListenerId {
        let slot = self.nat.listeners.iter().position(Option::is_none).unwrap_or_else(|| {
            self.nat.listeners.push(None);
            self.nat.listeners.len() - 1
        });
        ListenerId(slot as u32)
    }

    fn close_listener(&mut self, id: ListenerId) {
        if let Some(socket) = self.nat.listeners.get_mut(id.0 as usize).and_then(Option::take) {
            let fd = socket.raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.nat.by_address.retain(|_, l| *l != id);
        self.with_translator(|translator, host| translator.remove_listener(id, host));
    }

    /// Runs `f` on the translator with the sockets it works through.
    fn with_translator<R>(&mut self, f: impl FnOnce(&mut Translator, &mut Sockets<'_>) -> R) -> R {
        let (translator, mut host, _) = self.nat.parts(self.poll.registry());
        f(translator, &mut host)
    }

    /// Closes published ports.
    pub(super) fn unpublish(&mut self, keys: &[(Proto, SocketAddr)]) {
        for key in keys {
            if let Some(&id) = self.nat.by_address.get(key) {
                tracing::info!(proto = %key.0, addr = %key.1, "unpublished port");
                self.close_listener(id);
            }
        }
    }

    /// Ends the flows of the endpoint with `mac` and `addresses` on
    /// `network` (see `Translator::forget_endpoint`).
    pub(super) fn nat_forget(&mut self, network: NetworkId, mac: crate::wire::MacAddr, addresses: &[IpAddr]) -> usize {
        self.with_translator(|translator, host| translator.forget_endpoint(network, mac, addresses, host))
    }

    /// Forgets removed network `network` in the translator, ending its
    /// flows.
    pub(super) fn nat_forget_network(&mut self, network: NetworkId) -> usize {
        self.with_translator(|translator, host| translator.forget_network(network, host))
    }

    /// The live flows, with their sockets' local addresses.
    pub(super) fn nat_flows(&self) -> Vec<FlowInfo> {
        let now = self.clock.now().0;
        let mut flows = self.nat.translator.flows(now);
        for (id, info) in &mut flows {
            let local = match self.nat.sockets.get(id.0 as usize).and_then(Option::as_ref) {
                Some(FlowSocket::Tcp { stream, .. }) => stream.local_addr().ok(),
                Some(FlowSocket::Datagram { socket, .. } | FlowSocket::RawIcmp { socket, .. }) => {
                    socket.local_addr().ok()
                }
                None => None,
            };
            info.outer_local = local.map(canonical).or(info.outer_local);
        }
        flows.into_iter().map(|(_, info)| info).collect()
    }

    /// Tells the translator about a network's gateway (or that it went).
    pub(super) fn nat_network(&mut self, network: NetworkId, gateway: Option<PortId>) {
        let view = gateway.and_then(|port| match self.ports.get(port.index()) {
            Some(Some(PortIo::Gateway(gw))) => {
                let mtu = self.nets.get(network.index()).and_then(Option::as_ref).map_or(1500, |n| n.mtu);
                Some(NetView { gateway: port, mac: gw.mac(), address: gw.ipv4(), address6: gw.ipv6(), mtu })
            }
            _ => None,
        });
        self.nat.translator.set_network(network, view);
    }

    /// A readiness event for token `token` (a flow's or a listener's socket).
    pub(super) fn nat_event(&mut self, token: usize, event: &mio::event::Event) {
        if token >= FLOW_TOKENS {
            self.flow_event(FlowId((token - FLOW_TOKENS) as u32), event);
        } else {
            self.nat.listeners_ready.push(ListenerId((token - LISTENER_TOKENS) as u32));
        }
    }

    fn flow_event(&mut self, id: FlowId, event: &mio::event::Event) {
        let now = self.clock.now().0;
        let NatIo { translator, sockets, listeners, out, datagrams_ready, options, .. } = &mut self.nat;
        let mut host = Sockets { sockets, listeners, registry: self.poll.registry(), options: *options };
        match host.sockets.get_mut(id.0 as usize).and_then(Option::as_mut) {
            Some(FlowSocket::Tcp { stream, connecting }) => {
                if *connecting {
                    if !(event.is_writable() || event.is_error() || event.is_write_closed()) {
                        return;
                    }
                    let result = match stream.take_error() {
                        Ok(None) => match stream.peer_addr() {
                            Ok(_) => Ok(()),
                            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                            Err(e) => Err(e),
                        },
                        Ok(Some(e)) | Err(e) => Err(e),
                    };
                    *connecting = false;
                    translator.connected(id, result, now, &mut host, out);
                    translator.readable(id);
                    return;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    translator.readable(id);
                }
                if event.is_writable() {
                    translator.writable(id, &mut host, out);
                }
            }
            Some(_) => datagrams_ready.push(id),
            None => {}
        }
    }

    /// Runs the translator's timers, and gives up the fragmented datagrams
    /// that timed out (counted as `nat_fragments` on their ports).
    pub(super) fn nat_timers(&mut self) {
        let now = self.clock.now().0;
        if self.nat.reassembly.next_deadline().is_some_and(|at| at <= now) {
            self.nat.reassembly.expire(now);
            self.count_given_up_fragments();
        }
        if self.nat.translator.next_deadline().is_none_or(|at| at > now) {
            return;
        }
        let (translator, mut host, out) = self.nat.parts(self.poll.registry());
        translator.poll_timers(now, &mut host, out);
    }

    /// Milliseconds until the translator's next timer (or a fragmented
    /// datagram's timeout), if any.
    pub(super) fn nat_deadline(&self) -> Option<u64> {
        let next = match (self.nat.translator.next_deadline(), self.nat.reassembly.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| at.saturating_sub(self.clock.now().0))
    }

    /// Counts the fragmented datagrams reassembly gave up on their ports.
    fn count_given_up_fragments(&mut self) {
        for port in self.nat.reassembly.take_given_up() {
            self.bridge.count_drop(PortId(port), DropReason::NatFragments);
        }
    }

    /// Takes frame `i`, sent to `gateway`'s MAC, if the translator carries
    /// it: IPv4 or IPv6 routed through the gateway to an address outside
    /// every network (with egress on; IPv6 where the network has it), or a
    /// reply within a published flow. Returns false for frames the gateway
    /// (or `no_route`) handles.
    pub(super) fn nat_from_sandbox(&mut self, gateway: PortId, i: usize) -> bool {
        let Some(Some(PortIo::Gateway(gw))) = self.ports.get(gateway.index()) else { return false };
        let (gw_mac, gw_address, gw_address6) = (gw.mac(), gw.ipv4(), gw.ipv6());
        let frame = self.batch.frame(i);
        if frame.len() < 14 {
            return false;
        }
        let Ok(network) = self.bridge.port_config(gateway).map(|c| c.network) else { return false };
        if frame[..6] != gw_mac.0 {
            return self.nat_to_mesh(network, i);
        }
        let net = self.nets.get(network.index()).and_then(Option::as_ref);
        let (source, destination, gateway_address, routed) = match frame[12..14] {
            [0x08, 0x00] if frame.len() >= 34 => {
                let s = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
                let d = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
                let routed = !(d.is_broadcast() || d.is_multicast() || d.is_unspecified() || d.is_loopback());
                (IpAddr::V4(s), IpAddr::V4(d), gw_address.map(IpAddr::V4), routed)
            }
            [0x86, 0xdd] if frame.len() >= 54 => {
                let s = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap_or_default());
                let d = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap_or_default());
                // Link-local addresses are on the link, never routed.
                let routed = !(d.is_multicast()
                    || d.is_unspecified()
                    || d.is_loopback()
                    || d.segments()[0] & 0xffc0 == 0xfe80
                    || d.to_ipv4_mapped().is_some());
                (IpAddr::V6(s), IpAddr::V6(d), gw_address6.map(IpAddr::V6), routed)
            }
            _ => return false,
        };
        // No gateway of that family: the gateway's own stack answers.
        let Some(gateway_address) = gateway_address else { return false };
        let to_gateway = destination == gateway_address;
        // A fragment's ports are in its first fragment only: whether a
        // fragmented datagram to the gateway is a flow's is known once whole.
        if to_gateway {
            if !is_fragment(frame) && !self.nat.translator.owns(network, frame) {
                return false;
            }
        } else if !(net.is_some_and(|n| n.egress) && routed) || self.is_switch_address(destination) {
            return false;
        }
        let entry = self.batch.entry(i);
        let ingress = entry.port;
        // A sandbox translates only its own addresses: flows belong to the
        // source address, and another's would outlive that endpoint. Its
        // address on another of its networks is its own (Linux's weak host
        // model: a socket bound to it, routed through this gateway); such a
        // flow ends when either endpoint goes.
        if self.dns.directory.is_foreign_to_sandbox(ingress.0, source) {
            self.bridge.count_drop(ingress, DropReason::NatSpoofedSource);
            return true;
        }
        // TSO frames carry a stream's bytes; a UDP GSO train is sent on as
        // one (its segment size with it).
        let tso = if destination.is_ipv4() { VirtioNetHdr::GSO_TCPV4 } else { VirtioNetHdr::GSO_TCPV6 };
        let udp_segment = match entry.hdr.gso_kind() {
            _ if !entry.gso() => None,
            kind if kind == tso => None,
            VirtioNetHdr::GSO_UDP_L4 => Some(entry.hdr.gso_size),
            _ => {
                self.bridge.count_drop(ingress, DropReason::NatUnsupported);
                return true;
            }
        };
        let now = self.clock.now().0;
        let (translator, mut host, out) = self.nat.parts(self.poll.registry());
        match translator.from_sandbox(network, self.batch.frame(i), udp_segment, now, &mut host, out) {
            Ok(()) => true,
            Err(Unsupported::Protocol) => false,
            Err(Unsupported::Fragment) => {
                self.nat_fragment(network, to_gateway, ingress, i, now);
                true
            }
            Err(Unsupported::Malformed) => {
                self.bridge.count_drop(ingress, DropReason::NatUnsupported);
                true
            }
            Err(Unsupported::Extension) => {
                self.bridge.count_drop(ingress, DropReason::NatIpv6Extension);
                true
            }
        }
    }

    /// Sends what the translator held back of the batch's datagrams (one
    /// train per run of a flow's datagrams, see `Translator::flush_datagrams`).
    pub(super) fn flush_nat_datagrams(&mut self) {
        let (translator, mut host, out) = self.nat.parts(self.poll.registry());
        translator.flush_datagrams(&mut host, out);
    }

    /// Frame `i` from `ingress` is a fragment of a datagram routed through
    /// `network`'s gateway, or sent to the gateway's own address
    /// (`to_gateway`): held until its datagram is whole, which is
    /// then translated as one frame. Fragments refused, datagrams given up
    /// (timed out, or evicted when reassembly is full), and whole
    /// datagrams to the gateway's address that belong to no flow are
    /// counted as `nat_fragments` on the port they came from.
    fn nat_fragment(&mut self, network: NetworkId, to_gateway: bool, ingress: PortId, i: usize, now: u64) {
        let outcome = self.nat.reassembly.add(self.batch.frame(i), ingress.0, now);
        self.count_given_up_fragments();
        let whole = match outcome {
            Outcome::Held => return,
            Outcome::Refused(_) => {
                self.bridge.count_drop(ingress, DropReason::NatFragments);
                return;
            }
            Outcome::Complete(whole) => whole,
        };
        // To the gateway's own address, only a flow's datagram (a published
        // port's answer) is the translator's; the gateway's stack takes no
        // fragments (as before reassembly existed), so nothing else is.
        if to_gateway && !self.nat.translator.owns(network, &whole) {
            self.bridge.count_drop(ingress, DropReason::NatFragments);
            return;
        }
        let (translator, mut host, out) = self.nat.parts(self.poll.registry());
        match translator.from_sandbox(network, &whole, None, now, &mut host, out) {
            Ok(()) => {}
            Err(Unsupported::Extension) => self.bridge.count_drop(ingress, DropReason::NatIpv6Extension),
            Err(_) => self.bridge.count_drop(ingress, DropReason::NatUnsupported),
        }
    }

    /// Takes frame `i`, sent to `network`'s gateway port but not to the
    /// gateway's MAC: a frame to this node's mesh station goes to the
    /// translator when it belongs to one of its flows (a remote replica's
    /// answer) and is dropped as `mesh_stray` otherwise. Returns false
    /// for frames to any other MAC (the gateway's stack drops them).
    fn nat_to_mesh(&mut self, network: NetworkId, i: usize) -> bool {
        let Some(mesh) = self.nat.translator.mesh(network) else { return false };
        let frame = self.batch.frame(i);
        if frame[..6] != mesh.mac.0 {
            return false;
        }
        let ingress = self.batch.entry(i).port;
        // Answers of remote replicas come through tunnels; a local endpoint
        // may not pass for one.
        if ip_source(frame).is_some_and(|source| self.dns.directory.is_foreign_to(ingress.0, source)) {
            self.bridge.count_drop(ingress, DropReason::NatSpoofedSource);
            return true;
        }
        if self.batch.entry(i).gso() || !self.nat.translator.owns(network, frame) {
            self.bridge.count_drop(ingress, DropReason::MeshStray);
            return true;
        }
        let now = self.clock.now().0;
        let (translator, mut host, out) = self.nat.parts(self.poll.registry());
        if translator.from_sandbox(network, self.batch.frame(i), None, now, &mut host, out).is_err() {
            self.bridge.count_drop(ingress, DropReason::MeshStray);
        }
        true
    }

    /// Sets this node's mesh station on `network` (see
    /// [`crate::nat::Mesh`]): the translator's source for flows to remote
    /// replicas, a static FDB entry that brings frames to its MAC to the
    /// gateway port, and the bridge's leave for them to cross between the
    /// gateway port and tunnels. `None` removes all of it. Refused for a
    /// network without a gateway or with a group MAC.
    pub(super) fn set_mesh(&mut self, network: NetworkId, mesh: Option<crate::nat::Mesh>) -> Result<(), DatapathError> {
        let gateway = self
            .nets
            .get(network.index())
            .and_then(Option::as_ref)
            .ok_or(crate::bridge::BridgeError::NoSuchNetwork(network))?
            .gateway
            .ok_or(DatapathError::NoGateway(network))?;
        if let Some(m) = mesh
            && !m.mac.is_valid_station()
        {
            return Err(DatapathError::BadMeshMac(m.mac));
        }
        let old = self.nat.translator.mesh(network);
        if let Some(old) = old
            && mesh.is_none_or(|m| m.mac != old.mac)
            && self.bridge.static_port(network, old.mac) == Some(gateway)
        {
            let _ = self.bridge.remove_entry(network, old.mac);
        }
        if let Some(m) = mesh {
            let now = self.clock.now();
            self.bridge.add_static(network, m.mac, gateway, now)?;
        }
        self.bridge.set_mesh_station(network, mesh.map(|m| m.mac))?;
        self.nat.translator.set_mesh(network, mesh);
        Ok(())
    }

    /// Is `address` inside one of the switch's networks (another bridge
    /// domain, which isolation keeps apart)?
    fn is_switch_address(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(address) => {
                self.nets.iter().flatten().filter_map(|n| n.gateway).any(|port| match self.ports.get(port.index()) {
                    Some(Some(PortIo::Gateway(gw))) => {
                        let Some((net, prefix)) = gw.subnet() else { return false };
                        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                        u32::from(address) & mask == u32::from(net) & mask
                    }
                    _ => false,
                })
            }
            IpAddr::V6(address) => {
                self.nets.iter().flatten().filter_map(|n| n.gateway).any(|port| match self.ports.get(port.index()) {
                    Some(Some(PortIo::Gateway(gw))) => {
                        let Some((net, prefix)) = gw.subnet6() else { return false };
                        let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
                        u128::from(address) & mask == u128::from(net) & mask
                    }
                    _ => false,
                })
            }
        }
    }

    /// Moves the translator's control frames into the batch, as many as fit;
    /// the rest wait for the next batch (a lost SYN or ACK would cost the
    /// connection a retransmission timeout).
    pub(super) fn push_nat_out(&mut self) {
        let batch = &mut self.batch;
        self.nat.out.drain_while(|port, frame| batch.push_small(port, frame));
    }

    /// While datagrams for sandboxes are read: what the translator queued
    /// for the one just read (its IP fragments, or a train's datagrams one
    /// by one) enters the batch before the next one, so a flow's datagrams
    /// keep their order, as far as the batch has room. `keep` frame slots
    /// stay free for this datagram's frame and those of the same read
    /// still to come (the read was sized to them): what does not fit
    /// waits in the queue.
    fn push_queued_before_next(&mut self, keep: usize) {
        if self.nat.out.is_empty() {
            return;
        }
        let batch = &mut self.batch;
        self.nat.out.drain_while(|port, frame| batch.frames_left() > keep && batch.push_small(port, frame));
    }

    /// Fills the batch from host sockets: bytes the sandboxes' windows
    /// allow, datagrams, new connections on published ports.
    pub(super) fn read_nat(&mut self) {
        self.push_nat_out();
        self.read_streams();
        self.read_datagrams();
        self.accept_published();
        self.push_nat_out();
    }

    fn read_streams(&mut self) {
        let now = self.clock.now().0;
        while !self.batch.is_full() {
            let Some((id, room)) = self.nat.translator.next_sendable() else { break };
            let Some((buf, bytes)) = self.batch.take_buffer() else { break };
            let NatIo { translator, sockets, listeners, out, options, skipped, .. } = &mut self.nat;
            let at = translator.payload_offset(id).unwrap_or(TCP_PAYLOAD);
            let mut room = room.min(bytes.len() - HDR - at);
            // Without a peek offset, the bytes in flight are peeked again
            // into a scratch buffer, and what follows into the frame.
            let in_flight = if options.peek_offset { 0 } else { translator.unacked(id) };
            if !options.peek_offset {
                room = room.min(MAX_SKIPPED.saturating_sub(in_flight));
                if skipped.len() < in_flight {
                    skipped.resize(MAX_SKIPPED.min(in_flight.next_power_of_two()), 0);
                }
            }
            let mut host = Sockets { sockets, listeners, registry: self.poll.registry(), options: *options };
            let Ok(FlowSocket::Tcp { stream, .. }) = host.get(id) else {
                self.batch.return_buffer();
                continue;
            };
            if room == 0 {
                // Too much in flight to skip: wait for the sandbox's ACKs.
                self.batch.return_buffer();
                continue;
            }
            let frame = &mut bytes[HDR..];
            let payload = &mut frame[at..at + room];
            let peeked = if host.options.peek_offset {
                stream::peek(stream.as_fd(), payload)
            } else {
                stream::peek_after(stream.as_fd(), &mut skipped[..in_flight], payload)
            };
            match peeked {
                Ok(0) => {
                    self.batch.return_buffer();
                    translator.tcp_eof(id, now, &mut host, out);
                }
                Ok(n) => {
                    let made = translator.tcp_peeked(id, frame, n, now);
                    push_data(&mut self.batch, buf, made);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                    self.batch.return_buffer();
                    translator.tcp_drained(id);
                }
                Err(_) => {
                    self.batch.return_buffer();
                    translator.host_failed(id, &mut host, out);
                }
            }
        }
    }

    fn read_datagrams(&mut self) {
        let now = self.clock.now().0;
        let mut ready = self.nat.datagrams_ready.take();
        // Visited flows that still have datagrams are kept at the front
        // (`kept` of them), in order; `k` flows were visited.
        let (mut k, mut kept) = (0, 0);
        while k < ready.len() {
            let id = ready[k];
            k += 1;
            let mut drained = false;
            if let Some(Some(FlowSocket::Datagram { .. })) = self.nat.sockets.get(id.0 as usize) {
                drained = self.receive_flow_datagrams(id, now);
            }
            while !drained && !self.batch.is_full() {
                let Some((buf, bytes)) = self.batch.take_buffer() else { break };
                let (translator, mut host, out) = self.nat.parts(self.poll.registry());
                let frame = &mut bytes[HDR..];
                // Only raw ICMP sockets are read here, one message at a
                // time (they need filtering); datagram sockets went above.
                let received = match host.get(id) {
                    Ok(FlowSocket::RawIcmp { socket, id: echo_id, family }) => {
                        // A raw ICMPv4 socket gets the IP header too; both
                        // get every ICMP message from the address: keep
                        // our echo replies.
                        let (echo_id, family) = (*echo_id, *family);
                        let at = family.icmp_message();
                        socket.recv(&mut frame[at..at + MAX_UDP_PAYLOAD]).map(|n| {
                            let packet = &frame[at..at + n];
                            let (ihl, reply) = match family {
                                Family::V4 => (usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4, 0),
                                Family::V6 => (0, 129),
                            };
                            let icmp = packet.get(ihl..).unwrap_or_default();
                            (icmp.len() >= 8 && icmp[0] == reply && u16::from_be_bytes([icmp[4], icmp[5]]) == echo_id)
                                .then_some((n - ihl, ihl, at))
                        })
                    }
                    _ => {
                        self.batch.return_buffer();
                        drained = true;
                        break;
                    }
                };
                match received {
                    Ok(Some((n, skip, at))) => {
                        frame.copy_within(at + skip..at + skip + n, at);
                        let made = translator.datagram_in(id, frame, n, None, now, out);
                        push_data(&mut self.batch, buf, made);
                    }
                    Ok(None) => self.batch.return_buffer(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.batch.return_buffer();
                        drained = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => self.batch.return_buffer(),
                    Err(e) => {
                        self.batch.return_buffer();
                        translator.datagram_error(id, &e, &mut host, out);
                    }
                }
                // The fragments of a reply wider than the network's MTU
                // enter the batch before the next reply can overtake them.
                self.push_queued_before_next(0);
            }
            if drained {
                self.nat.datagrams_ready.unlist(id);
            } else {
                ready[kept] = id;
                kept += 1;
            }
            if self.batch.is_full() {
                break;
            }
        }
        self.nat.datagrams_ready.put_back(ready, kept, k);
    }

    /// Receives a flow's datagrams (UDP payloads, or echo replies from a
    /// ping socket) into the batch, a `recvmmsg` at a time; true once its
    /// socket is drained.
    fn receive_flow_datagrams(&mut self, id: FlowId, now: u64) -> bool {
        let mut got = [dgram::Datagram::EMPTY; dgram::MAX_BATCH];
        let Some(at) = self.nat.translator.payload_offset(id) else { return true };
        let max_payload = self.nat.translator.datagram_room(id).unwrap_or(MAX_UDP_PAYLOAD);
        let offset = HDR + at;
        loop {
            let Some(Some(FlowSocket::Datagram { socket, .. })) = self.nat.sockets.get(id.0 as usize) else {
                return true;
            };
            let room = self.batch.frames_left();
            let (first, free) = self.batch.free_buffers();
            let want = free.len().min(room);
            if want == 0 {
                return false;
            }
            match dgram::recv_batch(socket.as_fd(), free.take(want), offset, max_payload, &mut got) {
                Ok(n) => {
                    self.batch.use_buffers(n);
                    for (i, d) in got[..n].iter().enumerate() {
                        let frame = self.batch.buffer_mut(first + i, HDR..Tap::RECV_BUF_LEN);
                        let made = self.nat.translator.datagram_in(id, frame, d.len, d.segment, now, &mut self.nat.out);
                        self.push_queued_before_next(n - i);
                        if let Some(made) = made {
                            push_frame(&mut self.batch, first + i, made);
                        }
                    }
                    if n < want {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error the remote sent (reported once, then cleared).
                Err(e) => {
                    let (translator, mut host, out) = self.nat.parts(self.poll.registry());
                    translator.datagram_error(id, &e, &mut host, out);
                }
            }
        }
    }

    fn accept_published(&mut self) {
        let now = self.clock.now().0;
        let mut ready = std::mem::take(&mut self.nat.listeners_ready);
        ready.sort_unstable();
        ready.dedup();
        let mut again = Vec::new();
        for id in ready {
            let more = match self.nat.listeners.get(id.0 as usize).and_then(Option::as_ref) {
                Some(ListenerSocket::Tcp(_)) => self.accept_tcp(id, now),
                Some(ListenerSocket::Udp(_)) => self.receive_udp(id, now),
                None => false,
            };
            if more {
                again.push(id);
            }
        }
        self.nat.listeners_ready.append(&mut again);
    }

    /// Accepts up to a pass's worth of connections; true if more may wait.
    fn accept_tcp(&mut self, listener: ListenerId, now: u64) -> bool {
        for _ in 0..ACCEPTS_PER_PASS {
            let Some(Some(ListenerSocket::Tcp(socket))) = self.nat.listeners.get(listener.0 as usize) else {
                return false;
            };
            let (stream, client) = match socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {
                    continue;
                }
                Err(e) => {
                    // EMFILE and the like: the connection stays queued.
                    tracing::warn!(error = %e, "accept on a published port failed");
                    return false;
                }
            };
            let client = canonical(client);
            let (translator, mut host, out) = self.nat.parts(self.poll.registry());
            let peek_offset = host.options.peek_offset;
            let prepared = stream
                .set_nonblocking(true)
                .and_then(|()| stream.set_nodelay(true))
                .and_then(|()| if peek_offset { stream::set_peek_offset(stream.as_fd(), 0) } else { Ok(()) });
            let flow = prepared.ok().and_then(|()| translator.accept(listener, client, now, out));
            let Some(id) = flow else {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
                continue;
            };
            let socket = FlowSocket::Tcp { stream, connecting: false };
            if host.store(id, socket, Interest::READABLE | Interest::WRITABLE).is_err() {
                translator.host_failed(id, &mut host, out);
            }
        }
        true
    }

    /// Receives datagrams from a published UDP port into the batch, a
    /// `recvmmsg` at a time; true if more may wait.
    fn receive_udp(&mut self, listener: ListenerId, now: u64) -> bool {
        let mut got = [dgram::Datagram::EMPTY; dgram::MAX_BATCH];
        // Clients are of the socket's family: their payloads go where a
        // frame of that family has them.
        let family = match self.nat.translator.listener(listener) {
            Some((_, host)) => Family::of(host.ip()),
            None => return false,
        };
        loop {
            let Some(Some(ListenerSocket::Udp(socket))) = self.nat.listeners.get(listener.0 as usize) else {
                return false;
            };
            let room = self.batch.frames_left();
            let (first, free) = self.batch.free_buffers();
            let want = free.len().min(room);
            if want == 0 {
                return true;
            }
            let offset = HDR + family.udp_payload();
            let max_payload = family.max_udp_payload();
            let n = match dgram::recv_batch(socket.as_fd(), free.take(want), offset, max_payload, &mut got) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            self.batch.use_buffers(n);
            for (i, d) in got[..n].iter().enumerate() {
                let buf = first + i;
                let frame = self.batch.buffer_mut(buf, HDR..Tap::RECV_BUF_LEN);
                let made = self.nat.translator.udp_inbound(
                    listener,
                    canonical(d.from),
                    frame,
                    d.len,
                    d.segment,
                    now,
                    &mut self.nat.out,
                );
                self.push_queued_before_next(n - i);
                // A datagram no backend takes leaves its buffer unused
                // until the batch is cleared.
                if let Some(made) = made {
                    push_frame(&mut self.batch, buf, made);
                }
            }
            if n < want {
                return false;
            }
        }
    }
}

/// Adds a data frame the translator wrote into buffer `buf` (at `HDR`) to
/// the batch, with its virtio-net header in front; gives the buffer back
/// when there is no frame.
fn push_data(batch: &mut crate::daemon::batch::RxBatch, buf: usize, made: Option<DataFrame>) {
    match made {
        Some(frame) => push_frame(batch, buf, frame),
        None => batch.return_buffer(),
    }
}

/// Adds a data frame the translator wrote into buffer `buf` (at `HDR`) to
/// the batch, with its virtio-net header in front.
fn push_frame(batch: &mut crate::daemon::batch::RxBatch, buf: usize, frame: DataFrame) {
    let bytes = batch.buffer_mut(buf, 0..HDR);
    bytes.copy_from_slice(&frame.hdr.to_bytes());
    batch.push(RxEntry {
        buf,
        frame: HDR..HDR + frame.len,
        port: frame.port,
        has_vnet_hdr: true,
        hdr: frame.hdr,
        checksum: ChecksumState::Unverified,
        placed: Placed::No,
    });
}

#[cfg(test)]
mod tests {
    use super::ReadyFlows;
    use crate::nat::FlowId;

    #[test]
    fn ready_flows_are_listed_once_and_served_in_turn() {
        let mut r = ReadyFlows::default();
        for id in [1, 2, 1, 3, 2] {
            r.push(FlowId(id));
        }
        assert_eq!(r.list, [FlowId(1), FlowId(2), FlowId(3)], "each once, however many events");
        let mut ready = r.take();
        // Flow 1 still has datagrams when the batch fills; an event for it
        // meanwhile adds nothing, one for flow 4 does.
        r.push(FlowId(1));
        r.push(FlowId(4));
        ready[0] = FlowId(1);
        r.put_back(ready, 1, 1);
        assert_eq!(r.list, [FlowId(2), FlowId(3), FlowId(1), FlowId(4)], "the others first");
        // Flows 2 and 3 drained, 1 not.
        let mut ready = r.take();
        r.unlist(FlowId(2));
        r.unlist(FlowId(3));
        ready[0] = FlowId(1);
        r.put_back(ready, 1, 3);
        assert_eq!(r.list, [FlowId(4), FlowId(1)]);
        r.push(FlowId(2));
        assert_eq!(r.list, [FlowId(4), FlowId(1), FlowId(2)], "a drained flow is listed again by its next event");
    }
}
