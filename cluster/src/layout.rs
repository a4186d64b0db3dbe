//! Building and parsing the store's keys (the layout is documented in
//! [`crate::schema`]). Both directions live here so the client, the mirror and
//! the tests can never disagree on a key's spelling.

use std::net::IpAddr;

/// The kinds of key directly under the prefix.
pub const NODES: &str = "nodes";
/// Networks by name.
pub const NETWORKS: &str = "networks";
/// VNI claims.
pub const VNIS: &str = "vnis";
/// Subnet claims.
pub const SUBNETS: &str = "subnets";
/// Address claims.
pub const ADDRESSES: &str = "addresses";
/// Endpoint records.
pub const ENDPOINTS: &str = "endpoints";
/// Ingress services.
pub const SERVICES: &str = "services";
/// Key acknowledgements (written by the keys coordinator).
pub const KEYACKS: &str = "keyacks";

/// `P/KIND/` with the prefix's trailing `/` trimmed: the range of one kind.
pub fn kind_prefix(prefix: &str, kind: &str) -> String {
    format!("{}/{kind}/", prefix.trim_end_matches('/'))
}

/// `P/` : every key of the cluster.
pub fn root_prefix(prefix: &str) -> String {
    format!("{}/", prefix.trim_end_matches('/'))
}

/// `P/nodes/NODE`.
pub fn node_key(prefix: &str, node: &str) -> String {
    kind_prefix(prefix, NODES) + node
}

/// `P/networks/NAME`.
pub fn network_key(prefix: &str, name: &str) -> String {
    kind_prefix(prefix, NETWORKS) + name
}

/// `P/vnis/VNI`.
pub fn vni_key(prefix: &str, vni: u32) -> String {
    kind_prefix(prefix, VNIS) + &vni.to_string()
}

/// `P/subnets/CIDR` with the CIDR's `/` written as `_` (keys stay one level deep).
pub fn subnet_key(prefix: &str, subnet: &ipnet::IpNet) -> String {
    kind_prefix(prefix, SUBNETS) + &subnet.to_string().replace('/', "_")
}

/// `P/addresses/NETWORK_ID/` : every claim of one network.
pub fn addresses_prefix(prefix: &str, network_id: &str) -> String {
    format!("{}{network_id}/", kind_prefix(prefix, ADDRESSES))
}

/// `P/addresses/NETWORK_ID/IP`.
pub fn address_key(prefix: &str, network_id: &str, ip: IpAddr) -> String {
    addresses_prefix(prefix, network_id) + &ip.to_string()
}

/// `P/endpoints/NETWORK_ID/ENDPOINT_ID`.
pub fn endpoint_key(prefix: &str, network_id: &str, endpoint_id: &str) -> String {
    format!("{}{network_id}/{endpoint_id}", kind_prefix(prefix, ENDPOINTS))
}

/// `P/services/NAME`.
pub fn service_key(prefix: &str, name: &str) -> String {
    kind_prefix(prefix, SERVICES) + name
}

/// The etcd `range_end` that makes a range cover every key starting with `key`
/// (the key with its last byte incremented, as etcd's `WithPrefix` does).
pub fn prefix_range_end(key: &str) -> Vec<u8> {
    let mut end = key.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A key of the layout, parsed (relative to the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `nodes/NODE`.
    Node(String),
    /// `networks/NAME`.
    Network(String),
    /// `vnis/VNI`.
    Vni(u32),
    /// `subnets/CIDR`.
    Subnet(ipnet::IpNet),
    /// `addresses/NETWORK_ID/IP`.
    Address {
        /// The network's id.
        network_id: String,
        /// The claimed address.
        ip: IpAddr,
    },
    /// `endpoints/NETWORK_ID/ENDPOINT_ID`.
    Endpoint {
        /// The network's id.
        network_id: String,
        /// The endpoint's id.
        endpoint_id: String,
    },
    /// `services/NAME`.
    Service(String),
    /// Any other key under the prefix (key records, acks, ...), relative to it.
    Other(String),
}

/// Parses a full key; `None` when it is not under `prefix` or is malformed
/// (a bad address, VNI or CIDR, an empty or extra path element).
pub fn parse_key(prefix: &str, key: &str) -> Option<Key> {
    let rest = key.strip_prefix(&root_prefix(prefix))?;
    let (kind, tail) = rest.split_once('/')?;
    let one = |tail: &str| (!tail.is_empty() && !tail.contains('/')).then(|| tail.to_string());
    let two = |tail: &str| {
        let (a, b) = tail.split_once('/')?;
        (!a.is_empty() && !b.is_empty() && !b.contains('/')).then(|| (a.to_string(), b.to_string()))
    };
    match kind {
        NODES => one(tail).map(Key::Node),
        NETWORKS => one(tail).map(Key::Network),
        SERVICES => one(tail).map(Key::Service),
        VNIS => one(tail)?.parse().ok().map(Key::Vni),
        SUBNETS => one(tail)?.replace('_', "/").parse().ok().map(Key::Subnet),
        ADDRESSES => {
            let (network_id, ip) = two(tail)?;
            Some(Key::Address { network_id, ip: ip.parse().ok()? })
        }
        ENDPOINTS => {
            let (network_id, endpoint_id) = two(tail)?;
            Some(Key::Endpoint { network_id, endpoint_id })
        }
        _ => Some(Key::Other(rest.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/vswitch/v1";

    #[test]
    fn keys_round_trip() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let ip6: IpAddr = "fd00::7".parse().unwrap();
        let net: ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(parse_key(P, &node_key(P, "a")), Some(Key::Node("a".into())));
        assert_eq!(parse_key(P, &network_key(P, "web")), Some(Key::Network("web".into())));
        assert_eq!(parse_key(P, &service_key(P, "api")), Some(Key::Service("api".into())));
        assert_eq!(parse_key(P, &vni_key(P, 4096)), Some(Key::Vni(4096)));
        assert_eq!(subnet_key(P, &net), "/vswitch/v1/subnets/10.0.0.0_24");
        assert_eq!(parse_key(P, &subnet_key(P, &net)), Some(Key::Subnet(net)));
        for ip in [ip, ip6] {
            assert_eq!(parse_key(P, &address_key(P, "n1", ip)), Some(Key::Address { network_id: "n1".into(), ip }));
        }
        assert_eq!(
            parse_key(P, &endpoint_key(P, "n1", "e1")),
            Some(Key::Endpoint { network_id: "n1".into(), endpoint_id: "e1".into() })
        );
        assert_eq!(parse_key("/vswitch/v1/", &node_key(P, "a")), Some(Key::Node("a".into())));
    }

    #[test]
    fn malformed_and_foreign_keys() {
        assert_eq!(parse_key(P, "/other/nodes/a"), None);
        assert_eq!(parse_key(P, "/vswitch/v1/nodes/"), None);
        assert_eq!(parse_key(P, "/vswitch/v1/nodes/a/b"), None);
        assert_eq!(parse_key(P, "/vswitch/v1/vnis/x"), None);
        assert_eq!(parse_key(P, "/vswitch/v1/addresses/n1/not-an-ip"), None);
        assert_eq!(parse_key(P, "/vswitch/v1/endpoints/n1"), None);
        assert_eq!(parse_key(P, "/vswitch/v1/keycurrent/n1"), Some(Key::Other("keycurrent/n1".into())));
        assert_eq!(parse_key(P, "/vswitch/v1x/nodes/a"), None);
    }

    #[test]
    fn range_end_of_prefix() {
        assert_eq!(prefix_range_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_range_end(""), vec![0]);
    }
}
