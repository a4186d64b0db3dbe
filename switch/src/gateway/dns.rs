//! The gateway's DNS port: which frames are DNS queries to the gateway,
//! the UDP answer frames, and the TCP server (a small pool of smoltcp
//! sockets on port 53).
//!
//! UDP queries bypass smoltcp (Firecracker's "detour before forwarding"):
//! the datapath knows the port a frame came in on, which is what identifies
//! the asker, and answers by building the reply frame directly to the
//! sender's MAC. TCP needs a real stack, so TCP port 53 is served by smoltcp
//! sockets; a client is identified by its address, which the datapath has
//! checked against its ingress port before the frame reaches the stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket, UdpRepr,
};

use crate::time::Timestamp;
use crate::wire::MacAddr;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// The gateway's UDP port for asking upstream servers that sit on the
/// network itself (a sandbox's `--dns` server in another sandbox): their
/// answers come back to it.
pub const UPSTREAM_PORT: u16 = 53_053;
/// TCP connections served at once per gateway. A new connection evicts the
/// one that has waited longest for its query when all are taken, so slow or
/// idle clients cannot lock others out.
const TCP_SLOTS: usize = 8;
/// smoltcp's buffers per connection; longer answers wait in the
/// connection's own queue.
const TCP_RX_BUFFER: usize = 2048;
const TCP_TX_BUFFER: usize = 16 * 1024;
/// Longest query accepted over TCP (a query is one question; this leaves
/// room for EDNS options).
pub const MAX_TCP_QUERY: usize = 4096;
/// Time a TCP client has, from connecting or from its last answer moving,
/// to send a whole query (and to read its answer).
const TCP_QUERY_DEADLINE_MS: u64 = 5_000;
/// Time a forwarded query may take before its connection is cut: twice
/// the forwarder's worst case (three upstreams of 1.5 s).
const TCP_FORWARD_DEADLINE_MS: u64 = 9_000;
/// Answer bytes queued per connection beyond smoltcp's buffer before the
/// server stops reading the client's queries.
const TCP_OUTBUF_LIMIT: usize = 16 * 1024;
/// smoltcp aborts a connection whose peer stops acknowledging after this.
const TCP_STACK_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(10);

/// What a frame delivered to the gateway is, as far as DNS is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFrame {
    /// A UDP datagram to the gateway's port 53.
    Udp(UdpQuery),
    /// A UDP datagram to the gateway's [`UPSTREAM_PORT`]: an on-network
    /// upstream's answer (the fields say who sent it).
    UpstreamAnswer(UdpQuery),
    /// An ICMP or ICMPv6 "destination unreachable" from `from` about a
    /// query the gateway sent from [`UPSTREAM_PORT`] to `server`: that
    /// upstream is not listening (or cannot be reached).
    UpstreamUnreachable {
        /// The ICMP error's sender.
        from: IpAddr,
        /// The upstream the quoted query was for.
        server: SocketAddr,
    },
    /// A TCP segment to the gateway's port 53 from `source`.
    Tcp {
        /// Its source address (IPv4 or IPv6).
        source: IpAddr,
    },
    /// Anything else (ARP, ping, other ports): for the gateway's stack.
    Other,
}

/// A UDP query as it arrived: where to answer and where the query lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpQuery {
    /// The sender's MAC address (the answer goes straight back to it).
    pub mac: MacAddr,
    /// The sender's address (IPv4 or IPv6).
    pub address: IpAddr,
    /// The sender's UDP port.
    pub port: u16,
    /// The DNS message's bytes within the frame.
    pub payload: Range<usize>,
}

/// Classifies an untagged Ethernet frame sent to the gateway at `gateway`
/// (IPv4) and `gateway6` (IPv6), either or both. IP fragments are not DNS
/// queries here (the stack drops them); over IPv6 only a UDP or TCP header
/// right after the IPv6 header is (no extension headers).
pub fn classify(frame: &[u8], gateway: Option<Ipv4Addr>, gateway6: Option<Ipv6Addr>) -> DnsFrame {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return DnsFrame::Other };
    match (eth.ethertype(), gateway, gateway6) {
        (EthernetProtocol::Ipv4, Some(gateway), _) => classify4(&eth, gateway),
        (EthernetProtocol::Ipv6, _, Some(gateway6)) => classify6(&eth, gateway6),
        _ => DnsFrame::Other,
    }
}

/// [`classify`] for IPv6.
fn classify6(eth: &EthernetFrame<&[u8]>, gateway: Ipv6Addr) -> DnsFrame {
    let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else { return DnsFrame::Other };
    if ip.version() != 6 || ip.dst_addr() != gateway {
        return DnsFrame::Other;
    }
    let l4_start = EthernetFrame::<&[u8]>::header_len() + ip.header_len();
    match ip.next_header() {
        IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
            Ok(udp) => udp_datagram(eth, ip.src_addr().into(), &udp, l4_start),
            _ => DnsFrame::Other,
        },
        IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
            Ok(tcp) if tcp.dst_port() == DNS_PORT => DnsFrame::Tcp { source: ip.src_addr().into() },
            _ => DnsFrame::Other,
        },
        IpProtocol::Icmpv6 => upstream_unreachable6(ip.payload(), ip.src_addr(), gateway),
        _ => DnsFrame::Other,
    }
}

/// A UDP datagram to the gateway whose header starts at `l4_start` in the
/// frame: a query to its port 53, an on-network upstream's answer to its
/// [`UPSTREAM_PORT`], or nothing of DNS's.
fn udp_datagram(eth: &EthernetFrame<&[u8]>, source: IpAddr, udp: &UdpPacket<&[u8]>, l4_start: usize) -> DnsFrame {
    let datagram = UdpQuery {
        mac: MacAddr(eth.src_addr().0),
        address: source,
        port: udp.src_port(),
        payload: l4_start + 8..l4_start + usize::from(udp.len()),
    };
    match udp.dst_port() {
        DNS_PORT => DnsFrame::Udp(datagram),
        UPSTREAM_PORT => DnsFrame::UpstreamAnswer(datagram),
        _ => DnsFrame::Other,
    }
}

/// [`classify`] for IPv4.
fn classify4(eth: &EthernetFrame<&[u8]>, gateway: Ipv4Addr) -> DnsFrame {
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return DnsFrame::Other };
    if ip.version() != 4 || ip.header_len() < 20 {
        return DnsFrame::Other;
    }
    if ip.dst_addr() != gateway || ip.more_frags() || ip.frag_offset() != 0 {
        return DnsFrame::Other;
    }
    let l4_start = EthernetFrame::<&[u8]>::header_len() + usize::from(ip.header_len());
    match ip.next_header() {
        IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
            Ok(udp) => udp_datagram(eth, ip.src_addr().into(), &udp, l4_start),
            _ => DnsFrame::Other,
        },
        IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
            Ok(tcp) if tcp.dst_port() == DNS_PORT => DnsFrame::Tcp { source: ip.src_addr().into() },
            _ => DnsFrame::Other,
        },
        IpProtocol::Icmp => upstream_unreachable(ip.payload(), ip.src_addr(), gateway),
        _ => DnsFrame::Other,
    }
}

/// An ICMP "destination unreachable" (type 3) quoting a UDP datagram the
/// gateway sent from [`UPSTREAM_PORT`]: which server it was for.
fn upstream_unreachable(icmp: &[u8], from: Ipv4Addr, gateway: Ipv4Addr) -> DnsFrame {
    const DEST_UNREACHABLE: u8 = 3;
    // Type, code, checksum, unused: 8 bytes, then the quoted IP header.
    if icmp.len() < 8 || icmp[0] != DEST_UNREACHABLE {
        return DnsFrame::Other;
    }
    // The quote is cut short (its length field says more than is there), so
    // it cannot be a checked packet; the fixed header fields are read once
    // 20 bytes are known to be present.
    let quote = &icmp[8..];
    if quote.len() < 20 {
        return DnsFrame::Other;
    }
    let quoted = Ipv4Packet::new_unchecked(quote);
    let l4 = &quote[usize::from(quoted.header_len()).min(quote.len())..];
    if quoted.version() != 4
        || quoted.header_len() < 20
        || quoted.src_addr() != gateway
        || quoted.next_header() != IpProtocol::Udp
        || l4.len() < 4
        || u16::from_be_bytes([l4[0], l4[1]]) != UPSTREAM_PORT
    {
        return DnsFrame::Other;
    }
    let server = SocketAddr::from((quoted.dst_addr(), u16::from_be_bytes([l4[2], l4[3]])));
    DnsFrame::UpstreamUnreachable { from: from.into(), server }
}

/// [`upstream_unreachable`] for ICMPv6: a "destination unreachable" (type 1)
/// quoting a UDP datagram the gateway sent from [`UPSTREAM_PORT`] right
/// after its IPv6 header (the gateway sends no extension headers).
fn upstream_unreachable6(icmp: &[u8], from: Ipv6Addr, gateway: Ipv6Addr) -> DnsFrame {
    const DEST_UNREACHABLE: u8 = 1;
    const IPV6_HEADER: usize = 40;
    // Type, code, checksum, unused: 8 bytes, then as much of the offending
    // packet as fits (at least its IPv6 and UDP headers' ports here).
    if icmp.len() < 8 + IPV6_HEADER + 4 || icmp[0] != DEST_UNREACHABLE {
        return DnsFrame::Other;
    }
    let quote = &icmp[8..];
    // The quote may be cut short, so the fixed header is read unchecked
    // once its 40 bytes are known to be present.
    let quoted = Ipv6Packet::new_unchecked(quote);
    let l4 = &quote[IPV6_HEADER..];
    if quoted.version() != 6
        || quoted.src_addr() != gateway
        || quoted.next_header() != IpProtocol::Udp
        || u16::from_be_bytes([l4[0], l4[1]]) != UPSTREAM_PORT
    {
        return DnsFrame::Other;
    }
    let server = SocketAddr::from((quoted.dst_addr(), u16::from_be_bytes([l4[2], l4[3]])));
    DnsFrame::UpstreamUnreachable { from: from.into(), server }
}

/// Builds the Ethernet frame carrying `payload` from the gateway
/// (`gateway_mac`, `gateway`, port 53) back to the sender of `query`, into
/// `out` (cleared first), with full IP and UDP checksums. False (and `out`
/// empty) when `gateway` is not of the query's family.
pub fn udp_answer_frame(
    gateway_mac: MacAddr,
    gateway: IpAddr,
    query: &UdpQuery,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    udp_frame(gateway_mac, gateway, DNS_PORT, query, payload, out)
}

/// Builds the Ethernet frame carrying `payload` from the gateway's UDP
/// port `source_port` to `to` (its MAC, address and port), into `out`
/// (cleared first), with full IP and UDP checksums (IPv4 or IPv6, as
/// `gateway` and `to` are). False (and `out` empty) when the two
/// addresses are of different families.
pub fn udp_frame(
    gateway_mac: MacAddr,
    gateway: IpAddr,
    source_port: u16,
    to: &UdpQuery,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let query = to;
    let udp = UdpRepr { src_port: source_port, dst_port: query.port };
    let udp_len = udp.header_len() + payload.len();
    let (ethertype, ip_len) = match (gateway, query.address) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (EthernetProtocol::Ipv4, 20),
        (IpAddr::V6(_), IpAddr::V6(_)) => (EthernetProtocol::Ipv6, 40),
        _ => {
            out.clear();
            return false;
        }
    };
    let eth =
        EthernetRepr { src_addr: EthernetAddress(gateway_mac.0), dst_addr: EthernetAddress(query.mac.0), ethertype };
    out.clear();
    out.resize(eth.buffer_len() + ip_len + udp_len, 0);
    let checksums = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut out[..]);
    eth.emit(&mut frame);
    let (src, dst) = (IpAddress::from(gateway), IpAddress::from(query.address));
    let l4 = match (gateway, query.address) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
            let ip = Ipv4Repr { src_addr, dst_addr, next_header: IpProtocol::Udp, payload_len: udp_len, hop_limit: 64 };
            let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
            ip.emit(&mut packet, &checksums);
            &mut out[14 + 20..]
        }
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
            let ip = Ipv6Repr { src_addr, dst_addr, next_header: IpProtocol::Udp, payload_len: udp_len, hop_limit: 64 };
            let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
            ip.emit(&mut packet);
            &mut out[14 + 40..]
        }
        _ => return false,
    };
    let mut datagram = UdpPacket::new_unchecked(l4);
    udp.emit(&mut datagram, &src, &dst, payload.len(), |buf| buf.copy_from_slice(payload), &checksums);
    true
}

/// A TCP connection of the DNS server, as handed out with its query: the
/// slot and which connection in that slot (slots are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConn {
    slot: usize,
    generation: u32,
}

/// A whole query read from a TCP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpQuery {
    /// The connection to answer on.
    pub conn: TcpConn,
    /// The client's address (IPv4 or IPv6).
    pub client: IpAddr,
    /// The DNS message (without its length prefix).
    pub message: Vec<u8>,
}

/// What the datapath does with a query read from a TCP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpAnswer {
    /// Send this answer now.
    Now(Vec<u8>),
    /// The query was forwarded: the answer comes through
    /// [`TcpServer::answer`].
    Later,
    /// Not a query: close the connection.
    Close,
}

/// One slot of the TCP server.
#[derive(Debug)]
struct Slot {
    handle: SocketHandle,
    /// A connection occupies the slot.
    active: bool,
    generation: u32,
    /// Bytes read and not yet a whole query.
    inbuf: Vec<u8>,
    /// Answer bytes (length-prefixed) not yet taken by the socket.
    outbuf: Vec<u8>,
    /// A query was forwarded; its answer has not come back.
    waiting: bool,
    /// When the client must have sent its next whole query, or read its
    /// answer, or the forwarded answer must be back (ms).
    deadline: u64,
    /// A forwarded answer arrived since the last pass.
    answered: bool,
    /// Answer bytes smoltcp held unacknowledged after the last pass.
    unacked: usize,
}

/// The gateway's TCP DNS server.
#[derive(Debug)]
pub struct TcpServer {
    slots: Vec<Slot>,
    /// Connections cut for idling or slowness, or evicted (oversize queries
    /// are counted apart).
    closed_idle: u64,
    /// Length prefixes announcing queries over [`MAX_TCP_QUERY`].
    oversize: u64,
}

impl TcpServer {
    /// Adds the server's sockets, listening on port 53, to `sockets`.
    pub fn new(sockets: &mut SocketSet<'static>) -> TcpServer {
        let slots = (0..TCP_SLOTS)
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER]),
                );
                socket.set_timeout(Some(TCP_STACK_TIMEOUT));
                // A fresh socket is closed, so listening cannot fail.
                let _ = socket.listen(DNS_PORT);
                Slot {
                    handle: sockets.add(socket),
                    active: false,
                    generation: 0,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    waiting: false,
                    deadline: 0,
                    answered: false,
                    unacked: 0,
                }
            })
            .collect();
        TcpServer { slots, closed_idle: 0, oversize: 0 }
    }

    /// Connections cut for idling or slowness, or evicted.
    pub fn closed_idle(&self) -> u64 {
        self.closed_idle
    }

    /// Queries refused for announcing more than [`MAX_TCP_QUERY`] bytes.
    pub fn oversize(&self) -> u64 {
        self.oversize
    }

    /// Moves every connection on: reads whole queries and hands them to
    /// `answer`, which says what to do with each; writes pending answers; closes
    /// finished, slow and idle connections; keeps one socket listening.
    /// Returns whether it wrote or closed anything (the stack then has
    /// segments to send).
    pub fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Timestamp,
        answer: &mut dyn FnMut(TcpQuery) -> TcpAnswer,
    ) -> bool {
        let mut listening = 0;
        let mut changed = false;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            if !socket.is_open() {
                slot.reset();
                socket.abort();
                let _ = socket.listen(DNS_PORT);
            }
            if socket.is_listening() {
                // A reset in SYN-RECEIVED sends smoltcp's socket back to LISTEN.
                if slot.active {
                    slot.reset();
                }
                listening += 1;
                continue;
            }
            if !slot.active {
                slot.active = true;
                slot.generation = slot.generation.wrapping_add(1);
                slot.deadline = now.0 + TCP_QUERY_DEADLINE_MS;
            }
            if std::mem::take(&mut slot.answered) {
                slot.deadline = now.0 + TCP_QUERY_DEADLINE_MS;
            }
            // Backpressure: a client that does not read its answers gets no
            // more read from it, so the queue stays bounded.
            let mut chunk = [0u8; 1024];
            while socket.can_recv() && slot.outbuf.len() < TCP_OUTBUF_LIMIT && slot.inbuf.len() < 2 + MAX_TCP_QUERY {
                let room = (2 + MAX_TCP_QUERY - slot.inbuf.len()).min(chunk.len());
                match socket.recv_slice(&mut chunk[..room]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => slot.inbuf.extend_from_slice(&chunk[..n]),
                }
            }
            while !slot.waiting && slot.outbuf.len() < TCP_OUTBUF_LIMIT && slot.inbuf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([slot.inbuf[0], slot.inbuf[1]]));
                if len == 0 || len > MAX_TCP_QUERY {
                    self.oversize += 1;
                    socket.abort();
                    slot.reset();
                    break;
                }
                if slot.inbuf.len() < 2 + len {
                    break;
                }
                let message = slot.inbuf[2..2 + len].to_vec();
                slot.inbuf.drain(..2 + len);
                let client = socket.remote_endpoint().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |e| e.addr.into());
                let conn = TcpConn { slot: index, generation: slot.generation };
                match answer(TcpQuery { conn, client, message }) {
                    TcpAnswer::Now(bytes) => {
                        slot.queue(&bytes);
                        slot.deadline = now.0 + TCP_QUERY_DEADLINE_MS;
                    }
                    TcpAnswer::Later => {
                        slot.waiting = true;
                        slot.deadline = now.0 + TCP_FORWARD_DEADLINE_MS;
                    }
                    TcpAnswer::Close => {
                        socket.abort();
                        slot.reset();
                        break;
                    }
                }
            }
            if !slot.active {
                changed = true;
                continue;
            }
            let mut progress = false;
            if !slot.outbuf.is_empty()
                && socket.can_send()
                && let Ok(n) = socket.send_slice(&slot.outbuf)
                && n > 0
            {
                slot.outbuf.drain(..n);
                progress = true;
                changed = true;
            }
            // The client acknowledged answer bytes since the last pass.
            progress |= socket.send_queue() < slot.unacked;
            slot.unacked = socket.send_queue();
            if progress && !slot.waiting {
                // The client's time for its next query runs from its answer.
                slot.deadline = now.0 + TCP_QUERY_DEADLINE_MS;
            }
            let finished = slot.outbuf.is_empty() && !slot.waiting;
            if finished && socket.state() == tcp::State::CloseWait {
                socket.close();
                changed = true;
            } else if now.0 >= slot.deadline {
                // Idle, too slow to send its query or to read its answer,
                // or its forwarded query never came back.
                self.closed_idle += 1;
                socket.abort();
                slot.reset();
                changed = true;
            }
        }
        if listening == 0 {
            self.evict(sockets);
            changed = true;
        }
        changed
    }

    /// With every slot taken, cuts the connection that has waited longest
    /// for its client's query and listens on its socket again.
    fn evict(&mut self, sockets: &mut SocketSet<'static>) {
        let oldest = self.slots.iter_mut().filter(|s| s.active && !s.waiting).min_by_key(|s| s.deadline);
        if let Some(slot) = oldest {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            socket.abort();
            slot.reset();
            self.closed_idle += 1;
        }
    }

    /// Puts sockets closed since the last call back to listening. Called
    /// after the stack has sent the resets of aborted connections (a
    /// socket reset before that never sends its RST).
    pub fn relisten(&mut self, sockets: &mut SocketSet<'static>) {
        for slot in &mut self.slots {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            if !socket.is_open() {
                slot.reset();
                let _ = socket.listen(DNS_PORT);
            }
        }
    }

    /// Queues the answer to a forwarded query on its connection, unless the
    /// connection is gone (then the answer is dropped).
    pub fn answer(&mut self, conn: TcpConn, bytes: &[u8]) {
        if let Some(slot) = self.slots.get_mut(conn.slot)
            && slot.active
            && slot.generation == conn.generation
            && slot.waiting
        {
            slot.waiting = false;
            slot.answered = true;
            slot.queue(bytes);
        }
    }
}

impl Slot {
    fn reset(&mut self) {
        self.active = false;
        self.waiting = false;
        self.answered = false;
        self.unacked = 0;
        self.inbuf.clear();
        self.outbuf.clear();
    }

    /// Queues one answer with its two-byte length (answers longer than
    /// 65,535 bytes cannot be framed and are dropped).
    fn queue(&mut self, bytes: &[u8]) {
        if let Ok(len) = u16::try_from(bytes.len()) {
            self.outbuf.extend_from_slice(&len.to_be_bytes());
            self.outbuf.extend_from_slice(bytes);
        }
    }
}
