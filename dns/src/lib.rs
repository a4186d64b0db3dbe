//! vswitch's embedded DNS, as sans-IO state machines: the switch answers
//! DNS at every network's gateway address, from the names of the endpoints
//! on the networks the asking sandbox is attached to, and forwards the rest
//! to upstream servers.
//!
//! - [`Directory`]: per network, the names (sandbox names and aliases) and
//!   addresses of its endpoints, and per asking port, which networks that
//!   sandbox sees.
//! - [`Resolver::resolve`]: query bytes and who asked in; an answer, "forward
//!   to these upstreams" or a drop out, each counted in [`Counters`].
//! - [`Forwarder`]: queries in flight to upstreams: ID rewriting, answer
//!   matching, failover on timeout/SERVFAIL/REFUSED, SERVFAIL when none
//!   answers. It says what to send; the daemon owns the sockets and the clock.
//!
//! Messages are parsed and encoded with hickory-proto (no tokio); nothing
//! here reads or writes a socket or a clock.

#![deny(unsafe_code)]

mod counters;
mod directory;
mod forward;
mod resolver;

pub use counters::Counters;
pub use directory::{Advance, Asker, Directory, Found, Listed, NetKey, PortKey, reverse_name};
pub use forward::{Action, ForwardError, Forwarder, MAX_UPSTREAMS, Token, UPSTREAM_TIMEOUT_MS, fit_udp};
pub use hickory_proto::op::ResponseCode;
pub use resolver::{EDNS_PAYLOAD, Outcome, Resolver, Source, TTL, Transport, error_response};
