//! Fuzzes the L4 translator with what sandboxes and host sockets could do:
//! arbitrary frames routed through the gateway (some read as UDP GSO
//! trains), interleaved with socket events (connects that succeed or
//! fail, bytes to peek, end of stream,
//! writable sockets, published-port clients of both families) and time
//! passing, on a dual-stack network (IPv4 and IPv6 frames, extension
//! headers, ICMPv6 errors and packet too big). Nothing may panic, and the
//! flow table stays within its bound.
//!
//! Input: a sequence of records `[op, len, bytes...]`.

#![no_main]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use switch::nat::{Backend, Emit, Family, FlowId, Host, Limits, ListenerId, NetView, Proto, Translator};
use switch::{MacAddr, NetworkId, PortId};

const NET: NetworkId = NetworkId(0);
const MAX_FLOWS: usize = 64;

/// Sockets that take whatever they are given, a little at a time.
#[derive(Default)]
struct Sink {
    budget: usize,
}

impl Host for Sink {
    fn open(&mut self, flow: FlowId, _: Proto, _: SocketAddr) -> io::Result<()> {
        if flow.0 % 5 == 4 { Err(io::Error::from_raw_os_error(libc_enetunreach())) } else { Ok(()) }
    }
    fn send(&mut self, _: FlowId, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.budget);
        self.budget = self.budget.saturating_sub(n).max(1000);
        Ok(n)
    }
    fn send_to(&mut self, _: ListenerId, _: SocketAddr, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn path_mtu(&mut self, flow: FlowId) -> Option<u32> {
        (flow.0 % 3 != 0).then_some(flow.0 * 100)
    }
    fn shutdown_write(&mut self, _: FlowId) {}
    fn discard(&mut self, _: FlowId, _: usize) {}
    fn rewind(&mut self, _: FlowId) {}
    fn close(&mut self, _: FlowId, _: bool) {}
}

fn libc_enetunreach() -> i32 {
    101
}

fuzz_target!(|data: &[u8]| {
    let mut tr = Translator::new(Limits { max_flows: MAX_FLOWS }, 7);
    let mac = MacAddr([0x02, 0x76, 10, 0, 0, 1]);
    let address6 = Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    tr.set_network(NET, Some(NetView { gateway: PortId(1), mac, address: Some(Ipv4Addr::new(10, 0, 0, 1)), address6, mtu: 1500 }));
    let ipv4 = Some(Ipv4Addr::new(10, 0, 0, 2));
    let ipv6 = Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
    let mac2 = MacAddr([2, 0x42, 10, 0, 0, 2]);
    // A dual-stack backend, and one with IPv4 only (IPv6 clients cross over).
    let backends = vec![
        Backend { network: NET, ipv4, ipv6, mac: mac2, port: 80, via_mesh: false },
        Backend { network: NET, ipv4, ipv6: None, mac: mac2, port: 81, via_mesh: false },
    ];
    let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080));
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080));
    tr.set_listener(ListenerId(0), Proto::Tcp, any4, backends.clone());
    tr.set_listener(ListenerId(1), Proto::Udp, any4, backends.clone());
    tr.set_listener(ListenerId(2), Proto::Tcp, any6, backends.clone());
    tr.set_listener(ListenerId(3), Proto::Udp, any6, backends);
    let mut host = Sink { budget: 5000 };
    let mut out = Emit::default();
    let mut buf = vec![0u8; 70_000];
    let mut now = 1_000u64;
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let flow = FlowId(u32::from(bytes.first().copied().unwrap_or(0)) % (MAX_FLOWS as u32 + 2));
        match op % 9 {
            0 => {
                let _ = tr.from_sandbox(NET, bytes, None, now, &mut host, &mut out);
            }
            1 => {
                // As a UDP GSO train, its segment size from the op byte.
                let segment = u16::from(*op / 9) * 7;
                let _ = tr.from_sandbox(NET, bytes, Some(segment), now, &mut host, &mut out);
            }
            2 => tr.connected(flow, if len % 2 == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(111)) }, now, &mut host, &mut out),
            3 if len % 2 == 0 => tr.readable(flow),
            3 => {
                // A socket error: EMSGSIZE (packet too big), refused, net or host unreachable.
                let errno = [90, 111, 101, 113][len % 4];
                tr.datagram_error(flow, &io::Error::from_raw_os_error(errno), &mut host, &mut out);
            }
            4 => {
                while let Some((id, room)) = tr.next_sendable() {
                    let at = tr.payload_offset(id).unwrap_or(Family::V6.tcp_payload());
                    let n = room.min(len * 97 + 1).min(buf.len() - at);
                    let _ = tr.tcp_peeked(id, &mut buf, n, now);
                }
            }
            5 => tr.tcp_eof(flow, now, &mut host, &mut out),
            6 => tr.writable(flow, &mut host, &mut out),
            7 => {
                let host = bytes.get(1).copied().unwrap_or(1);
                let port = 40_000 + len as u16;
                // Odd third bytes: an IPv6 client (loopback, link-local or global).
                let (client, l) = match bytes.get(2).copied().unwrap_or(0) {
                    b if b % 2 == 0 => (SocketAddr::from((Ipv4Addr::new(198, 51, 100, host), port)), 0),
                    b if b % 6 == 1 => (SocketAddr::from((Ipv6Addr::LOCALHOST, port)), 2),
                    b if b % 6 == 3 => (SocketAddr::from((Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, host.into()), port)), 2),
                    _ => (SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host.into()), port)), 2),
                };
                if len % 2 == 0 {
                    let _ = tr.accept(ListenerId(l), client, now, &mut out);
                } else {
                    // A fourth byte makes it a train (UDP GRO) of segments
                    // of 8 times its value, some wider than the MTU.
                    let (n, segment) = match bytes.get(3) {
                        Some(&b) => ((len * 257).min(65_000), Some(u16::from(b) * 8)),
                        None => (len, None),
                    };
                    let _ = tr.udp_inbound(ListenerId(l + 1), client, &mut buf, n, segment, now, &mut out);
                }
            }
            _ => {
                now += u64::from(bytes.first().copied().unwrap_or(1)) * 100;
                tr.poll_timers(now, &mut host, &mut out);
            }
        }
        // A batch ends every few records: held datagrams leave.
        if len % 4 == 0 {
            tr.flush_datagrams(&mut host, &mut out);
        }
        tr.flush_acks(&mut out);
        out.clear();
        assert!(tr.len() <= MAX_FLOWS);
    }
});
