//! The L4 translator: carries sandboxes' TCP, UDP and ICMP echo to the world
//! outside the switch's networks (egress) and clients of published ports to
//! sandboxes, through the daemon's own kernel sockets, without iptables.
//!
//! It is sans-IO: it takes frames and the time, and asks a [`Host`] (the
//! daemon's sockets, or a model in tests) to open, write, shut down and
//! close sockets; it builds the frames toward sandboxes itself.

mod types;

pub use types::{Backend, Counters, Direction, FlowInfo, Proto, Publication};
