//! vswitch datapath: the IEEE 802.1D learning bridge core and the vswitchd daemon.
//!
//! The core (`wire`, `fdb`, `bridge`) takes bytes and a timestamp and returns
//! forwarding decisions; it never touches a file descriptor. Only `sys` talks to
//! the kernel.

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
pub mod time;
pub mod wire;

pub use bridge::{Bridge, BridgeError, NetworkConfig, RxFrame, Transmit, TxPlan};
pub use counters::{DropReason, PortCounters};
pub use port::{NetworkId, PortConfig, PortId, PortKind};
pub use time::Timestamp;
pub use wire::MacAddr;
