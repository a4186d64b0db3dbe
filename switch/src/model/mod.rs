//! The container network model: networks, sandboxes, endpoints, IPAM and
//! their persistence. Pure state; no packet I/O.
//!
//! The daemon validates and records every ctl change here before it
//! performs side effects (TAP devices, namespaces, netlink). Every
//! [`Model`] operation validates fully before mutating, so a refused request
//! changes nothing; [`Store`] persists each accepted change atomically.
//!
//! Docker-like behaviour worth knowing:
//! - fresh models hold the predefined `bridge` (172.17.0.0/16), `host` and
//!   `none` networks, which cannot be removed or created again;
//! - connecting to `host` or `none` is refused: `host` is the host's own
//!   stack, and a sandbox with no endpoints already is what `none` means
//!   (loopback only);
//! - a network is IPv4 (the default), dual-stack (`--ipv6`) or IPv6-only
//!   (`--ipv6 --ipv4=false`); each family has its own subnet, gateway and
//!   range, and endpoints get an address of each family the network has
//!   (IPv6: `::2` up, the gateway being `::1`; a ULA /64 derived from the
//!   network id when no IPv6 subnet is given);
//! - removing a sandbox removes its endpoints and returns them for teardown;
//! - indexes (`network_index`, `port_index`) and `eth<n>` slots are the lowest
//!   free values, so they are reused after removal: the datapath must flush
//!   state keyed by a port index when that port goes away.

mod addr;
mod config_networks;
mod endpoints;
mod error;
mod fdb_config;
mod ids;
mod impair;
pub(crate) use ids::rfc3339_millis;
mod networks;
mod peers;
mod publish;
mod stack;
mod state;
pub mod store;
mod types;
mod uplinks;
mod validate;

#[cfg(test)]
mod tests;

pub use config_networks::ConfigNetwork;
pub use endpoints::NETNS_DIR;
pub use error::ModelError;
pub use fdb_config::{MAX_AGING_SECS, MIN_AGING_SECS};
pub use ids::now_rfc3339;
pub use networks::{DEFAULT_MTU, FIRST_AUTO_VNI, MAX_VNI, default_pool_subnets, fold_docker_options};
pub use peers::{tunnel_port_name, tunnel_port_peer};
pub use publish::PortOwner;
pub use stack::{PortChange, ServiceChange, StackDefaults, StackPlan, StackRefusal};
pub use state::{Model, STATE_VERSION};
pub use store::{ApplyError, Store, StoreError};
pub use types::{
    CIPHER_OPTION, Config, Connect, CreateNetwork, CreateSandbox, DOCKER_MTU_OPTION, DOCKER_VNI_OPTION, Disconnected,
    EGRESS_OPTION, ENCRYPTED_OPTION, Endpoint, FLOOD_LIMIT_OPTION, HOST_BINDING_OPTION, ICC_OPTION,
    KEY_ROTATION_OPTION, MASQUERADE_OPTION, MIN_KEY_ROTATION_SECS, MSS_CLAMP_OPTION, Network, PARENT_OPTION,
    PORT_TYPE_OPTION, Peer, RemovedSandbox, SPREAD_OPTION, Sandbox, Service, StaticFdbEntry, Uplink, bound, bound_one,
    pinned,
};
pub use uplinks::macvlan_port_type;
