//! The test bench: a model [`Host`], frame builders for what sandboxes send
//! (with `etherparse`), and parsers and checksum checks for what the
//! translator sends back, IPv4 and IPv6 alike (a frame's family is its
//! addresses').

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{
    Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, NetHeaders, PacketBuilder, PacketBuilderStep, PacketHeaders,
    TcpHeader, TcpOptionElement, TransportHeader,
};

use crate::nat::{Counters, DataFrame, Emit, Family, FlowId, Host, Limits, ListenerId, NetView, Proto, Translator};
use crate::port::{NetworkId, PortId};
use crate::wire::MacAddr;
use crate::wire::VirtioNetHdr;

pub(super) const NET: NetworkId = NetworkId(0);
pub(super) const NET2: NetworkId = NetworkId(1);
pub(super) const GW_PORT: PortId = PortId(7);
pub(super) const GW2_PORT: PortId = PortId(9);
pub(super) const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub(super) const GW2_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x01];
pub(super) const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const GW2_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub(super) const GW6_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
pub(super) const GW26_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
pub(super) const SB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub(super) const SB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub(super) const SB6_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
pub(super) const MTU: u32 = 1500;
/// The MSS the switch offers on a 1500-byte network.
pub(super) const OUR_MSS: u16 = 1460;
/// The MSS the switch offers over IPv6 on a 1500-byte network.
pub(super) const OUR_MSS6: u16 = 1440;

pub(super) fn sa(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(ip), port))
}

/// A socket address of either family.
pub(super) fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The IPv4 address `ip` is (panics for IPv6).
pub(super) fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => panic!("{a} is not IPv4"),
    }
}

/// The IPv6 address `ip` is (panics for IPv4).
pub(super) fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("{a} is not IPv6"),
    }
}

/// An IPv6 socket address from the segments of its address.
pub(super) fn sa6(ip: [u16; 8], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::from(ip), port))
}

/// The sandbox's usual address and an outside server.
pub(super) fn sandbox(port: u16) -> SocketAddr {
    SocketAddr::from((SB_IP, port))
}

pub(super) fn remote() -> SocketAddr {
    sa([93, 184, 216, 34], 80)
}

/// The sandbox's IPv6 address and an outside IPv6 server.
pub(super) fn sandbox6(port: u16) -> SocketAddr {
    SocketAddr::from((SB6_IP, port))
}

pub(super) fn remote6() -> SocketAddr {
    sa6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80], 80)
}

pub(super) fn view() -> NetView {
    NetView { gateway: GW_PORT, mac: MacAddr(GW_MAC), address: Some(GW_IP), address6: Some(GW6_IP), mtu: MTU }
}

pub(super) fn view2() -> NetView {
    NetView { gateway: GW2_PORT, mac: MacAddr(GW2_MAC), address: Some(GW2_IP), address6: Some(GW26_IP), mtu: 9000 }
}

pub(super) fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// What the translator made of a train toward a sandbox: its one frame
/// (with the bytes written), if any, and the control frames it queued.
pub(super) type TrainIn = (Option<(DataFrame, Vec<u8>)>, Vec<Vec<u8>>);

// ---------------------------------------------------------------- the model host

/// One call the translator made on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    Open(FlowId, Proto, SocketAddr),
    Send(FlowId, Vec<u8>),
    SendTo(ListenerId, SocketAddr, Vec<u8>),
    /// A UDP GSO train: its bytes and segment size.
    SendTrain(FlowId, Vec<u8>, usize),
    SendTrainTo(ListenerId, SocketAddr, Vec<u8>, usize),
    ShutdownWrite(FlowId),
    Discard(FlowId, usize),
    Rewind(FlowId),
    Close(FlowId, bool),
}

/// A host socket's receive queue, peeked like `MSG_PEEK` with `SO_PEEK_OFF`.
#[derive(Debug, Default)]
pub(super) struct RecvQueue {
    pub(super) bytes: VecDeque<u8>,
    pub(super) peek_off: usize,
    pub(super) eof: bool,
}

/// The daemon's sockets, as a model.
#[derive(Debug, Default)]
pub(super) struct ModelHost {
    pub(super) calls: Vec<Call>,
    /// Errors `open` returns, by destination (once each).
    pub(super) open_errors: HashMap<SocketAddr, i32>,
    /// The next `send` on a flow fails with this errno (once).
    pub(super) send_errors: HashMap<FlowId, i32>,
    /// How many more bytes a flow's socket takes before `WouldBlock`
    /// (no entry: unlimited).
    pub(super) capacity: HashMap<FlowId, usize>,
    /// Bytes each flow's socket took, in order.
    pub(super) written: HashMap<FlowId, Vec<u8>>,
    pub(super) recv: HashMap<FlowId, RecvQueue>,
    pub(super) closed: HashMap<FlowId, bool>,
    /// What `path_mtu` answers.
    pub(super) path_mtu: Option<u32>,
}

impl Host for ModelHost {
    fn open(&mut self, flow: FlowId, proto: Proto, to: SocketAddr) -> io::Result<()> {
        self.calls.push(Call::Open(flow, proto, to));
        // A slot reused by a new flow starts afresh.
        self.closed.remove(&flow);
        self.written.remove(&flow);
        self.recv.remove(&flow);
        match self.open_errors.remove(&to) {
            Some(e) => Err(errno(e)),
            None => Ok(()),
        }
    }

    fn send(&mut self, flow: FlowId, data: &[u8]) -> io::Result<usize> {
        assert!(!self.closed.contains_key(&flow), "send on closed flow {flow:?}");
        if let Some(e) = self.send_errors.remove(&flow) {
            self.calls.push(Call::Send(flow, data.to_vec()));
            return Err(errno(e));
        }
        let n = match self.capacity.get_mut(&flow) {
            Some(0) => {
                self.calls.push(Call::Send(flow, Vec::new()));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Some(cap) => {
                let n = data.len().min(*cap);
                *cap -= n;
                n
            }
            None => data.len(),
        };
        self.calls.push(Call::Send(flow, data[..n].to_vec()));
        self.written.entry(flow).or_default().extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn send_to(&mut self, listener: ListenerId, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.calls.push(Call::SendTo(listener, to, data.to_vec()));
        Ok(())
    }

    fn send_train(&mut self, flow: FlowId, data: &[u8], segment: usize) -> io::Result<()> {
        assert!(!self.closed.contains_key(&flow), "send on closed flow {flow:?}");
        self.calls.push(Call::SendTrain(flow, data.to_vec(), segment));
        match self.send_errors.remove(&flow) {
            Some(e) => Err(errno(e)),
            None => Ok(()),
        }
    }

    fn send_train_to(&mut self, listener: ListenerId, to: SocketAddr, data: &[u8], segment: usize) -> io::Result<()> {
        self.calls.push(Call::SendTrainTo(listener, to, data.to_vec(), segment));
        Ok(())
    }

    fn shutdown_write(&mut self, flow: FlowId) {
        self.calls.push(Call::ShutdownWrite(flow));
    }

    fn discard(&mut self, flow: FlowId, len: usize) {
        self.calls.push(Call::Discard(flow, len));
        let q = self.recv.entry(flow).or_default();
        assert!(len <= q.bytes.len(), "discard {len} of {} queued bytes", q.bytes.len());
        q.bytes.drain(..len);
        // The kernel moves the peek offset back by what was consumed.
        q.peek_off = q.peek_off.saturating_sub(len);
    }

    fn rewind(&mut self, flow: FlowId) {
        self.calls.push(Call::Rewind(flow));
        self.recv.entry(flow).or_default().peek_off = 0;
    }

    fn close(&mut self, flow: FlowId, reset: bool) {
        self.calls.push(Call::Close(flow, reset));
        let before = self.closed.insert(flow, reset);
        assert!(before.is_none(), "flow {flow:?} closed twice");
    }

    fn path_mtu(&mut self, _flow: FlowId) -> Option<u32> {
        self.path_mtu
    }
}

impl ModelHost {
    /// Bytes the remote end sends on `flow`'s socket.
    pub(super) fn deliver(&mut self, flow: FlowId, data: &[u8]) {
        self.recv.entry(flow).or_default().bytes.extend(data);
    }

    /// The remote end shut its side down.
    pub(super) fn deliver_eof(&mut self, flow: FlowId) {
        self.recv.entry(flow).or_default().eof = true;
    }

    /// Peeks up to `max` bytes at the peek offset and moves it on.
    pub(super) fn peek(&mut self, flow: FlowId, max: usize) -> Vec<u8> {
        let q = self.recv.entry(flow).or_default();
        let data: Vec<u8> = q.bytes.iter().skip(q.peek_off).take(max).copied().collect();
        q.peek_off += data.len();
        data
    }

    /// Bytes still in the receive queue (not discarded).
    pub(super) fn queued(&self, flow: FlowId) -> usize {
        self.recv.get(&flow).map_or(0, |q| q.bytes.len())
    }

    pub(super) fn written(&self, flow: FlowId) -> &[u8] {
        self.written.get(&flow).map_or(&[], Vec::as_slice)
    }

    /// The calls made since the last `take_calls`.
    pub(super) fn take_calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }
}

// ---------------------------------------------------------------- frames from sandboxes

/// TCP flags of a segment a test builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags {
    pub(super) syn: bool,
    pub(super) ack: bool,
    pub(super) fin: bool,
    pub(super) rst: bool,
    pub(super) psh: bool,
}

pub(super) const SYN: Flags = Flags { syn: true, ack: false, fin: false, rst: false, psh: false };
pub(super) const SYN_ACK: Flags = Flags { syn: true, ack: true, fin: false, rst: false, psh: false };
pub(super) const ACK: Flags = Flags { syn: false, ack: true, fin: false, rst: false, psh: false };
pub(super) const PSH_ACK: Flags = Flags { syn: false, ack: true, fin: false, rst: false, psh: true };
pub(super) const FIN_ACK: Flags = Flags { syn: false, ack: true, fin: true, rst: false, psh: false };
pub(super) const RST: Flags = Flags { syn: false, ack: false, fin: false, rst: true, psh: false };
pub(super) const RST_ACK: Flags = Flags { syn: false, ack: true, fin: false, rst: true, psh: false };

/// The builder of a frame from `src_mac` to the gateway with `src` and
/// `dst`'s IP header (IPv4 or IPv6, as the addresses are).
pub(super) fn ip_builder(src_mac: [u8; 6], src: IpAddr, dst: IpAddr) -> PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(src_mac, GW_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        other => panic!("addresses of two families: {other:?}"),
    }
}

/// A TCP segment from `src` (MAC `src_mac`) to `dst`, through the gateway.
#[allow(clippy::too_many_arguments)]
pub(super) fn tcp_frame_from(
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: Flags,
    window: u16,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ip_builder(src_mac, src.ip(), dst.ip()).tcp(src.port(), dst.port(), seq, window);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(ack);
    }
    if flags.fin {
        b = b.fin();
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.psh {
        b = b.psh();
    }
    if !options.is_empty() {
        b = b.options(options).expect("options fit");
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("frame builds");
    v
}

#[allow(clippy::too_many_arguments)]
pub(super) fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: Flags,
    window: u16,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    tcp_frame_from(SB_MAC, src, dst, seq, ack, flags, window, options, payload)
}

pub(super) fn udp_frame_from(src_mac: [u8; 6], src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    ip_builder(src_mac, src.ip(), dst.ip()).udp(src.port(), dst.port()).write(&mut v, payload).expect("frame builds");
    v
}

pub(super) fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_frame_from(SB_MAC, src, dst, payload)
}

/// An ICMP echo request (ICMPv6 between IPv6 addresses).
pub(super) fn echo_frame(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (src.into(), dst.into());
    let mut v = Vec::new();
    let b = ip_builder(SB_MAC, src, dst);
    match src {
        IpAddr::V4(_) => b.icmpv4_echo_request(id, seq).write(&mut v, payload),
        IpAddr::V6(_) => b.icmpv6_echo_request(id, seq).write(&mut v, payload),
    }
    .expect("frame builds");
    v
}

// ---------------------------------------------------------------- frames toward sandboxes

/// The ones'-complement sum of `data` (big-endian words), folded.
pub(super) fn ones_sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// A TCP segment toward a sandbox, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seg {
    pub(super) src_mac: [u8; 6],
    pub(super) dst_mac: [u8; 6],
    pub(super) src: SocketAddr,
    pub(super) dst: SocketAddr,
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) syn: bool,
    pub(super) ack_flag: bool,
    pub(super) fin: bool,
    pub(super) rst: bool,
    pub(super) psh: bool,
    pub(super) window: u16,
    pub(super) mss: Option<u16>,
    pub(super) wscale: Option<u8>,
    pub(super) payload: Vec<u8>,
}

/// What a frame toward a sandbox is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Out {
    Tcp(Seg),
    Udp { src_mac: [u8; 6], dst_mac: [u8; 6], src: SocketAddr, dst: SocketAddr, payload: Vec<u8> },
    Icmp { src: Ipv4Addr, dst: Ipv4Addr, icmp_type: Icmpv4Type, payload: Vec<u8> },
    Icmp6 { src: Ipv6Addr, dst: Ipv6Addr, icmp_type: Icmpv6Type, payload: Vec<u8> },
}

impl Out {
    pub(super) fn tcp(self) -> Seg {
        match self {
            Out::Tcp(s) => s,
            other => panic!("expected a TCP segment, got {other:?}"),
        }
    }
}

/// The addresses of a parsed IP header, and a checksum calculator for its
/// transport over the right pseudo-header.
enum Ip {
    V4(etherparse::Ipv4Header),
    V6(etherparse::Ipv6Header),
}

impl Ip {
    fn addrs(&self) -> (IpAddr, IpAddr) {
        match self {
            Ip::V4(ip) => (Ipv4Addr::from(ip.source).into(), Ipv4Addr::from(ip.destination).into()),
            Ip::V6(ip) => (Ipv6Addr::from(ip.source).into(), Ipv6Addr::from(ip.destination).into()),
        }
    }

    fn tcp_checksum(&self, t: &TcpHeader, payload: &[u8]) -> u16 {
        match self {
            Ip::V4(ip) => t.calc_checksum_ipv4(ip, payload).unwrap(),
            Ip::V6(ip) => t.calc_checksum_ipv6(ip, payload).unwrap(),
        }
    }

    fn udp_checksum(&self, u: &etherparse::UdpHeader, payload: &[u8]) -> u16 {
        match self {
            Ip::V4(ip) => u.calc_checksum_ipv4(ip, payload).unwrap(),
            Ip::V6(ip) => u.calc_checksum_ipv6(ip, payload).unwrap(),
        }
    }
}

/// Parses a frame toward a sandbox and checks that its IP header is sound
/// (IPv4: checksum, DF, TTL 64; IPv6: no extension header, hop limit 64;
/// the length covering the frame) and its checksums (L4 when
/// `l4_complete`) are right.
pub(super) fn parse_out(frame: &[u8], l4_complete: bool) -> Out {
    let h = PacketHeaders::from_ethernet_slice(frame).expect("frame toward a sandbox parses");
    let Some(etherparse::LinkHeader::Ethernet2(eth)) = h.link else { panic!("no Ethernet header") };
    let ip = match h.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IPv4 header checksum");
            assert_eq!(usize::from(ip.total_len), frame.len() - 14, "IPv4 total length covers the frame");
            assert!(ip.dont_fragment, "DF set");
            assert_eq!(ip.time_to_live, 64);
            Ip::V4(ip)
        }
        Some(NetHeaders::Ipv6(ip, ext)) => {
            assert!(ext.is_empty(), "no extension header");
            assert_eq!(usize::from(ip.payload_length), frame.len() - 54, "IPv6 payload length covers the frame");
            assert_eq!(ip.hop_limit, 64);
            assert_eq!((ip.traffic_class, ip.flow_label.value()), (0, 0));
            Ip::V6(ip)
        }
        other => panic!("not IP: {other:?}"),
    };
    let payload = h.payload.slice().to_vec();
    let (src, dst) = ip.addrs();
    match h.transport.expect("a transport header") {
        TransportHeader::Tcp(t) => {
            if l4_complete {
                assert_eq!(t.checksum, ip.tcp_checksum(&t, &payload), "TCP checksum");
            }
            let (mut mss, mut wscale) = (None, None);
            for o in t.options_iterator() {
                match o.expect("options parse") {
                    TcpOptionElement::MaximumSegmentSize(m) => mss = Some(m),
                    TcpOptionElement::WindowScale(s) => wscale = Some(s),
                    _ => {}
                }
            }
            Out::Tcp(Seg {
                src_mac: eth.source,
                dst_mac: eth.destination,
                src: SocketAddr::new(src, t.source_port),
                dst: SocketAddr::new(dst, t.destination_port),
                seq: t.sequence_number,
                ack: t.acknowledgment_number,
                syn: t.syn,
                ack_flag: t.ack,
                fin: t.fin,
                rst: t.rst,
                psh: t.psh,
                window: t.window_size,
                mss,
                wscale,
                payload,
            })
        }
        TransportHeader::Udp(u) => {
            if l4_complete {
                assert_eq!(u.checksum, ip.udp_checksum(&u, &payload), "UDP checksum");
            }
            assert_eq!(usize::from(u.length), 8 + payload.len());
            Out::Udp {
                src_mac: eth.source,
                dst_mac: eth.destination,
                src: SocketAddr::new(src, u.source_port),
                dst: SocketAddr::new(dst, u.destination_port),
                payload,
            }
        }
        TransportHeader::Icmpv4(i) => {
            let expected = Icmpv4Header::with_checksum(i.icmp_type.clone(), &payload);
            assert_eq!(i.checksum, expected.checksum, "ICMP checksum");
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else { panic!("ICMPv4 over IPv6") };
            Out::Icmp { src, dst, icmp_type: i.icmp_type, payload }
        }
        TransportHeader::Icmpv6(i) => {
            let (IpAddr::V6(src), IpAddr::V6(dst)) = (src, dst) else { panic!("ICMPv6 over IPv4") };
            let expected = Icmpv6Header::with_checksum(i.icmp_type, src.octets(), dst.octets(), &payload);
            assert_eq!(i.checksum, expected.unwrap().checksum, "ICMPv6 checksum (pseudo-header included)");
            Out::Icmp6 { src, dst, icmp_type: i.icmp_type, payload }
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

/// Checks a data frame's virtio-net header, completes its partial
/// checksum as the sandbox's kernel would, and parses it.
pub(super) fn complete_data(frame: &mut [u8], hdr: &VirtioNetHdr, mss: Option<u16>) -> Out {
    assert_eq!(hdr.flags, VirtioNetHdr::FLAG_NEEDS_CSUM, "partial checksum asked");
    let family = if frame[12..14] == [0x86, 0xdd] { Family::V6 } else { Family::V4 };
    assert_eq!(usize::from(hdr.csum_start), family.icmp_message(), "checksum starts at L4");
    let proto = match family {
        Family::V4 => frame[23],
        Family::V6 => frame[20],
    };
    let tcp = proto == 6;
    let payload_len = frame.len() - if tcp { family.tcp_payload() } else { family.udp_payload() };
    if tcp {
        assert_eq!(hdr.csum_offset, 16);
        let mss = mss.expect("TCP frames are checked against an MSS");
        if payload_len > usize::from(mss) {
            let gso = match family {
                Family::V4 => VirtioNetHdr::GSO_TCPV4,
                Family::V6 => VirtioNetHdr::GSO_TCPV6,
            };
            assert_eq!(hdr.gso_type, gso, "a run longer than the MSS is GSO of its family");
            assert_eq!(hdr.gso_size, mss, "segments of the sandbox's MSS");
            assert_eq!(usize::from(hdr.hdr_len), family.tcp_payload());
        } else {
            assert_eq!(hdr.gso_type, VirtioNetHdr::GSO_NONE, "no GSO within one MSS");
        }
    } else {
        assert_eq!(proto, 17, "UDP");
        assert_eq!(hdr.csum_offset, 6);
        assert_eq!(hdr.gso_type, VirtioNetHdr::GSO_NONE);
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    let mut check = !(ones_sum(0, &frame[start..]) as u16);
    if !tcp && check == 0 {
        check = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
    parse_out(frame, true)
}

// ---------------------------------------------------------------- the fixture

/// A translator with one network (and a second one for some tests), a
/// model host, an emit arena and a clock.
pub(super) struct Bench {
    pub(super) tr: Translator,
    pub(super) host: ModelHost,
    pub(super) out: Emit,
    pub(super) now: u64,
}

impl Bench {
    pub(super) fn new() -> Bench {
        Bench::with(Limits::default(), 0x1234_5678)
    }

    pub(super) fn with(limits: Limits, seed: u64) -> Bench {
        let mut tr = Translator::new(limits, seed);
        tr.set_network(NET, Some(view()));
        tr.set_network(NET2, Some(view2()));
        Bench { tr, host: ModelHost::default(), out: Emit::default(), now: 1_000 }
    }

    /// Feeds a frame from a sandbox on `NET`.
    /// (A batch of one frame: datagrams held for a train leave at once.)
    pub(super) fn send(&mut self, frame: &[u8]) {
        self.tr.from_sandbox(NET, frame, None, self.now, &mut self.host, &mut self.out).expect("frame is supported");
        self.tr.flush_datagrams(&mut self.host, &mut self.out);
    }

    /// Feeds frames from a sandbox on `NET` as one batch: held datagrams
    /// leave after the last.
    pub(super) fn send_batch(&mut self, frames: &[Vec<u8>]) {
        for frame in frames {
            self.tr
                .from_sandbox(NET, frame, None, self.now, &mut self.host, &mut self.out)
                .expect("frame is supported");
        }
        self.tr.flush_datagrams(&mut self.host, &mut self.out);
    }

    /// Feeds a UDP GSO train (a `GSO_UDP_L4` frame of `segment`-byte
    /// datagrams) from a sandbox on `NET`.
    pub(super) fn send_train(&mut self, frame: &[u8], segment: u16) -> Result<(), crate::nat::Unsupported> {
        let r = self.tr.from_sandbox(NET, frame, Some(segment), self.now, &mut self.host, &mut self.out);
        self.tr.flush_datagrams(&mut self.host, &mut self.out);
        r
    }

    pub(super) fn send_on(&mut self, net: NetworkId, frame: &[u8]) {
        self.tr.from_sandbox(net, frame, None, self.now, &mut self.host, &mut self.out).expect("frame is supported");
        self.tr.flush_datagrams(&mut self.host, &mut self.out);
    }

    /// The control frames emitted since the last call, with their ports
    /// checked to be `port` and their checksums verified.
    pub(super) fn frames_on(&mut self, port: PortId) -> Vec<Out> {
        let v = self
            .out
            .frames()
            .map(|(p, f)| {
                assert_eq!(p, port, "frame enters at the gateway port");
                parse_out(f, true)
            })
            .collect();
        self.out.clear();
        v
    }

    pub(super) fn frames(&mut self) -> Vec<Out> {
        self.frames_on(GW_PORT)
    }

    /// The only control frame emitted, as a TCP segment.
    pub(super) fn one_seg(&mut self) -> Seg {
        let mut f = self.frames();
        assert_eq!(f.len(), 1, "exactly one frame: {f:?}");
        f.remove(0).tcp()
    }

    pub(super) fn no_frames(&mut self) {
        let f = self.frames_on(GW_PORT);
        assert!(f.is_empty(), "no frame expected, got {f:?}");
    }

    pub(super) fn flush(&mut self) -> Vec<Out> {
        self.tr.flush_acks(&mut self.out);
        self.frames()
    }

    pub(super) fn poll(&mut self, at: u64) {
        self.now = at;
        self.tr.poll_timers(at, &mut self.host, &mut self.out);
    }

    pub(super) fn counters(&self, net: NetworkId) -> Counters {
        self.tr.counters().into_iter().find(|(n, _)| *n == net).map(|(_, c)| c).unwrap_or_default()
    }

    /// Lets the translator peek host data for sandboxes the way the daemon
    /// does: every sendable flow is peeked up to the room it is given;
    /// returns the data frames (checksums completed and checked against
    /// `mss`), and calls `tcp_eof`/`tcp_drained` when the queue runs dry.
    pub(super) fn pump(&mut self, mss: u16) -> Vec<(FlowId, Seg)> {
        let mut segs = Vec::new();
        let mut rounds = 0;
        while let Some((id, room)) = self.tr.next_sendable() {
            rounds += 1;
            assert!(rounds < 10_000, "next_sendable loops");
            assert!(room > 0, "a sendable flow has room");
            let data = self.host.peek(id, room);
            let at = self.tr.payload_offset(id).expect("a sendable flow has an offset");
            if data.is_empty() {
                if self.host.recv.get(&id).is_some_and(|q| q.eof) {
                    self.tr.tcp_eof(id, self.now, &mut self.host, &mut self.out);
                } else {
                    self.tr.tcp_drained(id);
                }
                continue;
            }
            let mut buf = vec![0u8; at + data.len()];
            buf[at..].copy_from_slice(&data);
            let DataFrame { port, len, hdr } =
                self.tr.tcp_peeked(id, &mut buf, data.len(), self.now).expect("frame for a sendable flow");
            assert_eq!(len, buf.len());
            assert!(port == GW_PORT || port == GW2_PORT);
            let seg = complete_data(&mut buf[..len], &hdr, Some(mss)).tcp();
            assert_eq!(seg.payload, data);
            segs.push((id, seg));
            // A short read: the daemon reads on and finds the end of the
            // stream, or nothing for now.
            if data.len() < room {
                let q = self.host.recv.entry(id).or_default();
                if q.eof && q.peek_off == q.bytes.len() {
                    self.tr.tcp_eof(id, self.now, &mut self.host, &mut self.out);
                } else {
                    self.tr.tcp_drained(id);
                }
            }
        }
        segs
    }

    /// A UDP datagram arrived on `id`'s socket: the frame the translator
    /// writes around it, checked.
    pub(super) fn datagram_in(&mut self, id: FlowId, payload: &[u8]) -> Option<(DataFrame, Out)> {
        let at = self.tr.payload_offset(id)?;
        let mut buf = vec![0u8; at + payload.len()];
        buf[at..].copy_from_slice(payload);
        let df = self.tr.datagram_in(id, &mut buf, payload.len(), None, self.now, &mut self.out)?;
        let out = complete_data(&mut buf[..df.len], &df.hdr, None);
        Some((df, out))
    }

    /// A train of UDP datagrams of `segment` bytes (UDP GRO) arrived on
    /// `id`'s socket: the translator's one frame for it, if it made one,
    /// and the control frames it queued instead.
    pub(super) fn train_in(&mut self, id: FlowId, train: &[u8], segment: u16) -> TrainIn {
        let at = self.tr.payload_offset(id).expect("a datagram flow");
        let mut buf = vec![0u8; at + train.len()];
        buf[at..].copy_from_slice(train);
        let made = self.tr.datagram_in(id, &mut buf, train.len(), Some(segment), self.now, &mut self.out);
        let queued: Vec<Vec<u8>> = self.out.frames().map(|(_, f)| f.to_vec()).collect();
        self.out.drain_while(|_, _| true);
        (made.map(|df| (df, buf[..df.len].to_vec())), queued)
    }

    /// A UDP datagram too big for the network's MTU arrived on `id`'s
    /// socket: the translator emits fragments instead of one frame. Checks
    /// that each fits the MTU and that they make the datagram whole, its
    /// UDP checksum complete; returns how many there were and the payload.
    pub(super) fn datagram_in_fragmented(&mut self, id: FlowId, payload: &[u8]) -> (usize, Vec<u8>) {
        use crate::nat::reassembly::{Outcome, Reassembler};
        use crate::offload::csum;
        let at = self.tr.payload_offset(id).expect("a datagram flow");
        let mut buf = vec![0u8; at + payload.len()];
        buf[at..].copy_from_slice(payload);
        let single = self.tr.datagram_in(id, &mut buf, payload.len(), None, self.now, &mut self.out);
        assert!(single.is_none(), "one frame over the MTU");
        let frames: Vec<Vec<u8>> = self.out.frames().map(|(_, f)| f.to_vec()).collect();
        self.out.drain_while(|_, _| true);
        let mut reassembly = Reassembler::new();
        let mut whole = None;
        for f in &frames {
            assert!(f.len() - 14 <= MTU as usize, "a fragment of {} bytes is over the MTU", f.len());
            if let Outcome::Complete(w) = reassembly.add(f, 0, 0) {
                whole = Some(w);
            }
        }
        let whole = whole.expect("the fragments make the datagram whole");
        let (l4, pseudo) = if whole[12..14] == [0x86, 0xdd] {
            (&whole[54..], csum::pseudo_v6(&whole[22..38], &whole[38..54], 17, whole.len() - 54))
        } else {
            (&whole[34..], csum::pseudo_v4(&whole[26..30], &whole[30..34], 17, whole.len() - 34))
        };
        assert_eq!(csum::finish(csum::add(pseudo, l4)), 0, "the UDP checksum is complete and right");
        (frames.len(), l4[8..].to_vec())
    }

    /// An ICMP echo reply `message` arrived on `id`'s ping socket.
    pub(super) fn echo_in(&mut self, id: FlowId, message: &[u8]) -> Option<(DataFrame, Out)> {
        let at = self.tr.payload_offset(id)?;
        let mut buf = vec![0u8; at + message.len()];
        buf[at..].copy_from_slice(message);
        let df = self.tr.datagram_in(id, &mut buf, message.len(), None, self.now, &mut self.out)?;
        let out = parse_out(&buf[..df.len], true);
        Some((df, out))
    }

    /// A datagram, or with `segment` a UDP GRO train, from `client` on
    /// published port `l`: the frame the translator wrote, unchecked.
    pub(super) fn udp_inbound_raw(
        &mut self,
        l: ListenerId,
        client: SocketAddr,
        payload: &[u8],
        segment: Option<u16>,
    ) -> Option<DataFrame> {
        let at = Family::of(client.ip()).udp_payload();
        let mut buf = vec![0u8; Family::V6.udp_payload() + payload.len()];
        buf[at..at + payload.len()].copy_from_slice(payload);
        self.tr.udp_inbound(l, client, &mut buf, payload.len(), segment, self.now, &mut self.out)
    }

    pub(super) fn udp_inbound(
        &mut self,
        l: ListenerId,
        client: SocketAddr,
        payload: &[u8],
    ) -> Option<(DataFrame, Out)> {
        // Room for either family's headers: the payload may move.
        let at = Family::of(client.ip()).udp_payload();
        let mut buf = vec![0u8; Family::V6.udp_payload() + payload.len()];
        buf[at..at + payload.len()].copy_from_slice(payload);
        let df = self.tr.udp_inbound(l, client, &mut buf, payload.len(), None, self.now, &mut self.out)?;
        let out = complete_data(&mut buf[..df.len], &df.hdr, None);
        Some((df, out))
    }
}

// ---------------------------------------------------------------- connections

/// One egress TCP connection as the sandbox sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Conn {
    pub(super) id: FlowId,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    /// The sandbox's next sequence number.
    pub(super) snd: u32,
    /// The next sequence number the sandbox expects from the switch.
    pub(super) rcv: u32,
    /// The sandbox's MSS (frames toward it are cut to it).
    pub(super) mss: u16,
}

impl Conn {
    /// A segment of this connection from the sandbox.
    pub(super) fn seg(&self, seq: u32, flags: Flags, window: u16, payload: &[u8]) -> Vec<u8> {
        tcp_frame(self.local, self.remote, seq, self.rcv, flags, window, &[], payload)
    }

    /// An ACK of everything received so far, with window `window`.
    pub(super) fn ack(&self, window: u16) -> Vec<u8> {
        self.seg(self.snd, ACK, window, &[])
    }

    /// In-order data; advances `snd`.
    pub(super) fn data(&mut self, payload: &[u8]) -> Vec<u8> {
        let f = self.seg(self.snd, PSH_ACK, 65535, payload);
        self.snd = self.snd.wrapping_add(payload.len() as u32);
        f
    }

    pub(super) fn fin(&mut self) -> Vec<u8> {
        let f = self.seg(self.snd, FIN_ACK, 65535, &[]);
        self.snd = self.snd.wrapping_add(1);
        f
    }
}

pub(super) fn syn_options(mss: u16, shift: Option<u8>) -> Vec<TcpOptionElement> {
    let mut o = vec![TcpOptionElement::MaximumSegmentSize(mss)];
    if let Some(s) = shift {
        o.push(TcpOptionElement::Noop);
        o.push(TcpOptionElement::WindowScale(s));
    }
    o
}

impl Bench {
    /// The sandbox sends SYN from `local` to `remote`; returns the flow the
    /// host was asked to open.
    pub(super) fn syn(&mut self, local: SocketAddr, remote: SocketAddr, isn: u32, shift: Option<u8>) -> FlowId {
        let before = self.host.calls.len();
        let f = tcp_frame(local, remote, isn, 0, SYN, 64240, &syn_options(1460, shift), &[]);
        self.send(&f);
        let opened = self.host.calls[before..].iter().find_map(|c| match c {
            Call::Open(id, Proto::Tcp, to) if *to == remote => Some(*id),
            _ => None,
        });
        opened.expect("SYN opens a host socket")
    }

    /// A full egress handshake; returns the connection with the switch's
    /// ISS learnt from its SYN-ACK. The sandbox offers MSS 1460 and, if
    /// given, a window shift.
    pub(super) fn connect(&mut self, local: SocketAddr, isn: u32, shift: Option<u8>) -> Conn {
        self.connect_to(local, remote(), isn, shift)
    }

    pub(super) fn connect_to(&mut self, local: SocketAddr, remote: SocketAddr, isn: u32, shift: Option<u8>) -> Conn {
        let id = self.syn(local, remote, isn, shift);
        self.no_frames();
        self.tr.connected(id, Ok(()), self.now, &mut self.host, &mut self.out);
        let sa = self.one_seg();
        assert!(sa.syn && sa.ack_flag, "SYN-ACK: {sa:?}");
        assert_eq!(sa.ack, isn.wrapping_add(1));
        let mut c = Conn { id, local, remote, snd: isn.wrapping_add(1), rcv: sa.seq.wrapping_add(1), mss: 1460 };
        let f = c.ack(65535);
        self.send(&f);
        assert!(self.flush().is_empty(), "a bare ACK of the SYN-ACK is not answered");
        c.snd = isn.wrapping_add(1);
        c
    }
}
