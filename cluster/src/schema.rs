//! The etcd key layout (under a prefix, default [`DEFAULT_PREFIX`]) and the
//! JSON records stored under it.
//!
//! | Key                                   | Value            | Lease |
//! |---------------------------------------|------------------|-------|
//! | `P/nodes/NODE`                        | [`NodeRecord`]   | node's |
//! | `P/networks/NAME`                     | [`NetworkRecord`]| none  |
//! | `P/vnis/VNI`                          | network name     | none  |
//! | `P/subnets/CIDR` (`/` written as `_`) | network name     | none  |
//! | `P/addresses/NETWORK_ID/IP`           | [`AddressClaim`] | none (survives a node's restart) |
//! | `P/endpoints/NETWORK_ID/ENDPOINT_ID`  | [`EndpointRecord`]| node's |
//! | `P/services/NAME`                     | [`ServiceRecord`]| none  |
//! | `P/keys/NETWORK_ID/EPOCH`             | key record (issue 13 keys) | none |
//! | `P/keyacks/NETWORK_ID/EPOCH/NODE`     | empty            | node's |
//! | `P/keycurrent/NETWORK_ID`             | epoch (decimal)  | none  |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/vswitch/v1";

/// One vswitchd in the cluster, present while its lease lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `--node-name`.
    pub name: String,
    /// The VTEP other nodes send overlay traffic to (`--advertise-addr`).
    pub vtep: SocketAddr,
    /// vswitchd's version.
    pub version: String,
    /// When this incarnation registered, Unix seconds.
    pub started_unix: u64,
    /// The node's X25519 public key (hex), to which overlay keys are sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// A cluster-wide (overlay) network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The network's id (64 hex digits), the same on every node.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The VXLAN network identifier, unique in the cluster.
    pub vni: u32,
    /// The network's subnets (one per family), unique in the cluster.
    pub subnets: Vec<ipnet::IpNet>,
    /// The node that created it.
    pub created_by: String,
    /// The rest of the network as the daemon's model serializes it: opaque
    /// to the store, so the store never repeats the model's field list.
    pub spec: serde_json::Value,
}

/// Who holds an address of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressClaim {
    /// The node whose endpoint holds it.
    pub node: String,
    /// The endpoint's id.
    pub endpoint_id: String,
}

/// One endpoint, published by the node that owns it, under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The network's id.
    pub network_id: String,
    /// The endpoint's id.
    pub endpoint_id: String,
    /// The owning node.
    pub node: String,
    /// The sandbox's (container's) name: its DNS name.
    pub name: String,
    /// Further DNS names on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The endpoint's MAC, `02:42:..` form.
    pub mac: String,
    /// IPv4 address.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// The ingress service this endpoint is a replica of (`network connect
    /// --service NAME`): every node balances the service's published ports
    /// over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// A service published in ingress mode (the routing mesh): every node with
/// the network listens on its ports and balances new connections over all
/// its replicas in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Unique name.
    pub name: String,
    /// The id of the (cluster) network its replicas are on.
    pub network_id: String,
    /// Its published ports, as the daemon's model serializes them: opaque
    /// to the store.
    pub ports: serde_json::Value,
    /// `ingress` (the only mode the store holds; `host` services stay
    /// local to their node).
    pub mode: String,
    /// The node that created it.
    pub created_by: String,
}

/// `IpAddr` is used by address claims' keys.
pub type ClaimedAddress = IpAddr;
