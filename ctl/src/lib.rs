//! vswitch control protocol, client library and the `vswitchctl` admin tool.
//!
//! - [`proto`]: the wire protocol between `vswitchctl` and `vswitchd` (types and line codec).
//! - [`client`]: a blocking client for the ctl socket.
//! - [`addr`]: the small address types the protocol uses.
//! - [`publish`]: published ports (`-p` specs) and `docker port`'s output.
//! - [`impair`]: link impairment settings and their netem-style units.
//! - [`stack`]: stack files, the declarative desired state of `apply` and `export`.
//! - `filter` (with the `cli` feature): `network ls --filter`, Docker's network filters.

pub mod addr;
pub mod client;
#[cfg(feature = "cli")]
pub mod filter;
pub mod impair;
pub mod proto;
pub mod publish;
pub mod stack;

pub use addr::{AddrParseError, IpNet, Ipv4Net, Ipv6Net, MacAddr, MacParseError, parse_ipv4_net};
pub use impair::{ImpairCounters, Impairment};
pub use publish::{PortMapping, PortProto, PortSpecError, parse_publish};
