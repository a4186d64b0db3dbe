//! A sans-IO mirror of the store (skeleton).

use std::collections::BTreeMap;

use crate::schema::{AddressClaim, EndpointRecord, NetworkRecord, NodeRecord};

/// One change seen by a watch (or one key of a full read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEvent {
    /// A key was written.
    Put {
        /// The full key.
        key: String,
        /// Its value.
        value: Vec<u8>,
        /// The revision that wrote it.
        mod_revision: i64,
    },
    /// A key was deleted (or its lease expired).
    Delete {
        /// The full key.
        key: String,
        /// The revision that deleted it.
        mod_revision: i64,
    },
}

/// What the store holds, as far as this node has seen.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    /// The last revision applied.
    pub revision: i64,
    /// Live nodes by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Networks by name.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Endpoint records by (network id, endpoint id).
    pub endpoints: BTreeMap<(String, String), EndpointRecord>,
    /// Address claims by (network id, address).
    pub addresses: BTreeMap<(String, std::net::IpAddr), AddressClaim>,
}
