//! vswitch's cluster store: node membership, cluster-wide networks, address
//! claims and endpoint records on etcd.
//!
//! - [`schema`]: the etcd key layout and the JSON records stored under it;
//!   [`layout`] builds and parses the keys.
//! - [`mirror`]: a sans-IO mirror of the store, fed by watch events.
//! - [`client`]: [`Cluster`], the etcd client on its own control-plane thread
//!   (tokio lives only there; the API is blocking and thread-safe).
//!
//! This crate knows nothing of the daemon: it depends on neither `switch` nor
//! `ctl`.

pub mod client;
pub mod config;
pub mod error;
pub mod keys;
pub mod keys_store;
pub mod layout;
pub mod mirror;
mod rpc;
pub mod schema;
mod session;
pub mod txn;
mod watch;

pub use client::{Cluster, StoreStatus};
pub use config::{ClusterConfig, DEFAULT_LEASE_TTL, DEFAULT_REQUEST_TIMEOUT, TlsFiles, parse_store_url};
pub use error::ClusterError;
pub use mirror::{KvEvent, Mirror};
pub use schema::{AddressClaim, DEFAULT_PREFIX, EndpointRecord, NetworkRecord, NodeRecord, ServiceRecord};
