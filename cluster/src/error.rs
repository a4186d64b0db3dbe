//! The cluster store's errors.

use std::net::IpAddr;

use crate::schema::AddressClaim;

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The store cannot be reached (or did not answer within the request
    /// timeout); nothing was changed by this node.
    #[error("cluster store unavailable: {0}")]
    Unavailable(String),
    /// A name, VNI or subnet is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The object is still in use (a network with address claims, a live node).
    #[error("{0}")]
    InUse(String),
    /// No such object in the store.
    #[error("{0}")]
    NotFound(String),
    /// The address is held by another endpoint.
    #[error("address {ip} is taken by endpoint {} on node {}", holder.endpoint_id, holder.node)]
    Taken {
        /// The address.
        ip: IpAddr,
        /// Who holds it.
        holder: AddressClaim,
    },
    /// A bad configuration: store URL, TLS files, node name.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The store answered something this client does not expect.
    #[error("cluster store: {0}")]
    Internal(String),
}
