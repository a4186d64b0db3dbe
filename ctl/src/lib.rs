//! vswitch control protocol, client library and the `vswitchctl` admin tool.
//!
//! - [`proto`]: the wire protocol between `vswitchctl` and `vswitchd` (types and line codec).
//! - [`client`]: a blocking client for the ctl socket.
//! - [`addr`]: the small address types the protocol uses.
//! - [`publish`]: published ports (`-p` specs) and `docker port`'s output.

pub mod addr;
pub mod client;
pub mod proto;
pub mod publish;

pub use addr::{AddrParseError, Ipv4Net, MacAddress, parse_ipv4_net};
pub use publish::{PortMapping, PortProto, PortSpecError, parse_publish};
