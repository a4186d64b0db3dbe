//! RFC 7348 VXLAN for vswitch: pure functions over bytes, no sockets, no clock.
//!
//! - [`header`]: the 8-byte VXLAN header as a wire view ([`VxlanPacket`]) and a
//!   plain representation ([`VxlanRepr`]).
//! - [`encap`]: [`decapsulate`], [`encapsulate_into`] and the zero-copy
//!   [`write_header`] the datapath uses to put a header in front of an inner
//!   frame in place.
//! - [`flow`]: [`flow_hash`] over the inner frame's flow and [`source_port`],
//!   which turns it into the outer UDP source port so the underlay can spread
//!   flows over ECMP paths (RFC 7348 §5, "Source Port").
//! - [`mtu`]: the encapsulation overhead and the MTU to give overlay endpoints.
//! - [`peers`]: [`PeerTable`], the registry of remote VTEPs of one switch, with
//!   static and learned peers aged on a timestamp the caller passes in.
//! - [`underlay`]: which addresses a VTEP and its peers may have (one
//!   address family per underlay) and the smallest IPv6 underlay MTU.
//!
//! Every function takes bytes and caller-owned buffers and returns what to do;
//! the daemon owns the sockets and the clock.

#![deny(unsafe_code)]

pub mod encap;
pub mod error;
pub mod flow;
pub mod header;
pub mod mtu;
pub mod peers;
pub mod underlay;
pub mod vni;

pub use encap::{decapsulate, encapsulate_into, write_header};
pub use error::VxlanError;
pub use flow::{DEFAULT_SOURCE_PORTS, flow_hash, source_port};
pub use header::{HEADER_LEN, UDP_PORT, VxlanPacket, VxlanRepr};
pub use mtu::{IpVersion, MIN_INNER_MTU, OVERHEAD_IPV4, OVERHEAD_IPV6, inner_mtu, overhead, underlay_mtu_for};
pub use peers::{AgedPeer, Peer, PeerError, PeerKind, PeerTable, PeerTableConfig};
pub use underlay::{IPV6_MIN_MTU, UnderlayError, check_peer, check_underlay_mtu, check_vtep};
pub use vni::{Vni, VniOutOfRange};

/// Length of an untagged Ethernet II header (destination, source, ethertype):
/// the shortest inner frame VXLAN carries.
pub const ETHERNET_HEADER_LEN: usize = 14;
