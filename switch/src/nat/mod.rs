//! The L4 translator: carries sandboxes' TCP, UDP and ICMP echo to the world
//! outside the switch's networks (egress) and clients of published ports to
//! sandboxes, through the daemon's own kernel sockets, without iptables.
//! IPv4 and IPv6 alike: flows are keyed by socket addresses of either
//! family, and only the packet layer ([`Family`]) knows how their headers
//! differ.
//!
//! It is sans-IO: it takes frames, socket events and the time, asks a
//! [`Host`] (the daemon's sockets, or a model in tests) to open, write,
//! shut down and close sockets, and writes the frames toward sandboxes.
//! Per-packet cost does not depend on the number of flows: one hash lookup
//! by 5-tuple, timers in a heap. Fragmented datagrams are made whole
//! first ([`reassembly`]).

mod flow;
mod packet;
pub mod reassembly;
mod tcp;
#[cfg(test)]
mod tests;
mod translator;
mod types;

pub use flow::{FlowId, ListenerId};
pub use packet::{Family, ICMP_MESSAGE, MAX_TCP_PAYLOAD, MAX_UDP_PAYLOAD, TCP_PAYLOAD, UDP_PAYLOAD, Unsupported};
pub use translator::{DataFrame, Emit, Host, Limits, NetView, Translator, each_datagram};
pub use types::{Backend, Counters, Direction, FlowInfo, Mesh, Proto, Publication};
