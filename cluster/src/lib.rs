//! vswitch's cluster store (skeleton: the contract helpers build against).
//!
//! - [`schema`]: the etcd key layout and the JSON records stored under it.
//! - [`mirror`]: a sans-IO mirror of the store, fed by watch events.
//! - [`client`]: the etcd client on its own control-plane thread (tokio lives only there).

pub mod schema;
pub mod mirror;
pub mod keys;

pub use mirror::{KvEvent, Mirror};
pub use schema::{AddressClaim, EndpointRecord, NetworkRecord, NodeRecord};
