//! vswitch datapath: the IEEE 802.1D learning bridge core and the vswitchd daemon.
//!
//! The cores are sans-IO: `wire` (frame views, the MAC address, the virtio-net
//! header), `fdb`, `bridge`, `offload`, `nat`, `gateway`, `proxy`, `impair`,
//! `counters` and `time` take bytes and a timestamp and return decisions; they
//! open no file descriptor and read no clock (`impair` and `gateway` draw
//! random numbers from `fastrand`; `nat` reads errno values out of the
//! `io::Error`s the daemon hands it).
//!
//! What talks to the kernel:
//! - `sys`: the thin wrappers over kernel interfaces that need ioctls, raw
//!   sockets or `unsafe` — TAP devices, AF_PACKET and AF_XDP sockets, netlink
//!   (links, addresses, routes, namespaces), ethtool, process and memory helpers.
//! - `daemon`, directly through safe std and crate APIs rather than `sys`: the
//!   event loop (mio `Poll`/`Waker`) and its threads; the overlay's UDP sockets
//!   (`daemon::tunnel`, socket2 and quinn-udp for GSO/GRO); the NAT's host-side
//!   sockets and published-port listeners (`daemon::datapath::nat`); the DNS
//!   forwarder's upstream sockets and its read of `resolv.conf`
//!   (`daemon::dns_forward`); the ctl Unix socket and the metrics HTTP listener
//!   (`daemon::server`, tiny_http); files (the apply journal in the state
//!   directory, the sandboxes' `/etc/netns/NAME/resolv.conf` written by
//!   `daemon::plumbing`); the monotonic clock (`time::MonotonicClock`, read by
//!   the loops and passed down to the cores as a `Timestamp`; `Instant`s for
//!   ingress grace periods) and the wall clock (event and capture timestamps,
//!   cluster key epochs).
//! - `model::store` (the persisted state file: lock, write to a temporary file,
//!   rename) and `model::ids` (the wall clock, for IDs and creation times).
//! - `daemon::capture::filter` calls into libpcap to compile capture filters
//!   (no I/O), and the `vswitchd` binary installs signal handlers.

#![deny(unsafe_code)]

pub mod model;
pub mod nat;
pub mod sys;

pub mod bridge;
pub mod counters;
pub mod daemon;
pub mod events;
pub mod fdb;
pub mod gateway;
pub mod impair;
pub mod offload;
pub mod port;
pub mod proxy;
pub mod replica;
pub mod time;
pub mod wire;

pub use bridge::{Bridge, BridgeError, NetworkConfig, RxFrame, Transmit, TxPlan};
pub use counters::{DropReason, PortCounters};
pub use port::{NetworkId, PortConfig, PortId, PortKind};
pub use time::Timestamp;
pub use wire::MacAddr;
