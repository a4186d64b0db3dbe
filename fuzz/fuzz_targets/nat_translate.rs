//! Fuzzes the L4 translator with what sandboxes and host sockets could do:
//! arbitrary frames routed through the gateway, interleaved with socket
//! events (connects that succeed or fail, bytes to peek, end of stream,
//! writable sockets, published-port clients) and time passing. Nothing may
//! panic, and the flow table stays within its bound.
//!
//! Input: a sequence of records `[op, len, bytes...]`.

#![no_main]

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use switch::nat::{Backend, Emit, FlowId, Host, Limits, ListenerId, NetView, Proto, TCP_PAYLOAD, Translator};
use switch::{MacAddr, NetworkId, PortId};

const NET: NetworkId = NetworkId(0);
const MAX_FLOWS: usize = 64;

/// Sockets that take whatever they are given, a little at a time.
#[derive(Default)]
struct Sink {
    budget: usize,
}

impl Host for Sink {
    fn open(&mut self, flow: FlowId, _: Proto, _: SocketAddrV4) -> io::Result<()> {
        if flow.0 % 5 == 4 { Err(io::Error::from_raw_os_error(libc_enetunreach())) } else { Ok(()) }
    }
    fn send(&mut self, _: FlowId, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.budget);
        self.budget = self.budget.saturating_sub(n).max(1000);
        Ok(n)
    }
    fn send_to(&mut self, _: ListenerId, _: SocketAddrV4, _: &[u8]) -> io::Result<()> {
        Ok(())
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
    tr.set_network(NET, Some(NetView { gateway: PortId(1), mac, address: Ipv4Addr::new(10, 0, 0, 1), mtu: 1500 }));
    let backend = Backend { network: NET, address: Ipv4Addr::new(10, 0, 0, 2), mac: MacAddr([2, 0x42, 10, 0, 0, 2]), port: 80 };
    tr.set_listener(ListenerId(0), Proto::Tcp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080), vec![backend]);
    tr.set_listener(ListenerId(1), Proto::Udp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5353), vec![backend]);
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
            0 | 1 => {
                let _ = tr.from_sandbox(NET, bytes, now, &mut host, &mut out);
            }
            2 => tr.connected(flow, if len % 2 == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(111)) }, now, &mut host, &mut out),
            3 => tr.readable(flow),
            4 => {
                while let Some((id, room)) = tr.next_sendable() {
                    let n = room.min(len * 97 + 1).min(buf.len() - TCP_PAYLOAD);
                    let _ = tr.tcp_peeked(id, &mut buf, n, now);
                }
            }
            5 => tr.tcp_eof(flow, now, &mut host, &mut out),
            6 => tr.writable(flow, &mut host, &mut out),
            7 => {
                let client = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, bytes.get(1).copied().unwrap_or(1)), 40_000 + len as u16);
                if len % 2 == 0 {
                    let _ = tr.accept(ListenerId(0), client, now, &mut out);
                } else {
                    let _ = tr.udp_inbound(ListenerId(1), client, &mut buf, len, now);
                }
            }
            _ => {
                now += u64::from(bytes.first().copied().unwrap_or(1)) * 100;
                tr.poll_timers(now, &mut host, &mut out);
            }
        }
        tr.flush_acks(&mut out);
        out.clear();
        assert!(tr.len() <= MAX_FLOWS);
    }
});
