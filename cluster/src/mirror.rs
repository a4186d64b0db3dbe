//! A sans-IO mirror of the store: fed key events (from the watch or a full
//! read), answers the queries the daemon's reconciler and allocator ask.
//! It never does I/O and never panics on what the store holds: a value that
//! does not parse is logged and skipped (and whatever the key held before is
//! forgotten, since the store no longer holds a valid record there).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::de::DeserializeOwned;

use crate::layout::{Key, parse_key};
use crate::schema::{AddressClaim, EndpointRecord, NetworkRecord, NodeRecord, ServiceRecord};

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
    /// Ingress services by name.
    pub services: BTreeMap<String, ServiceRecord>,
    /// Raw values of the keys this mirror does not interpret (key records,
    /// key acks, `keycurrent`, ...), by key relative to the prefix (for
    /// example `keycurrent/NETWORK_ID`). VNI and subnet claims are not kept:
    /// the network records carry them.
    pub other: BTreeMap<String, Vec<u8>>,
}

impl Mirror {
    /// A mirror built from a full read of the prefix at `revision`.
    pub fn from_kvs(prefix: &str, revision: i64, kvs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Mirror {
        let mut mirror = Mirror::default();
        for (key, value) in kvs {
            mirror.apply(prefix, KvEvent::Put { key, value, mod_revision: 0 });
        }
        mirror.revision = revision;
        mirror
    }

    /// Applies one event under `prefix`. Keys outside the prefix or of an
    /// unknown shape are ignored; a value that does not parse is logged and
    /// skipped (the key's previous value is dropped).
    pub fn apply(&mut self, prefix: &str, event: KvEvent) {
        let (key, value, revision) = match event {
            KvEvent::Put { key, value, mod_revision } => (key, Some(value), mod_revision),
            KvEvent::Delete { key, mod_revision } => (key, None, mod_revision),
        };
        self.revision = self.revision.max(revision);
        let Some(parsed) = parse_key(prefix, &key) else {
            tracing::debug!(key, "cluster mirror: ignoring a key outside the layout");
            return;
        };
        let value = value.as_deref();
        match parsed {
            Key::Node(name) => {
                set(&mut self.nodes, name.clone(), decode::<NodeRecord>(&key, value), |r| r.name == name)
            }
            Key::Network(name) => {
                set(&mut self.networks, name.clone(), decode::<NetworkRecord>(&key, value), |r| r.name == name)
            }
            Key::Endpoint { network_id, endpoint_id } => {
                let record = decode::<EndpointRecord>(&key, value);
                let ok = |r: &EndpointRecord| r.network_id == network_id && r.endpoint_id == endpoint_id;
                set(&mut self.endpoints, (network_id.clone(), endpoint_id.clone()), record, ok)
            }
            Key::Service(name) => {
                set(&mut self.services, name.clone(), decode::<ServiceRecord>(&key, value), |r| r.name == name)
            }
            Key::Address { network_id, ip } => {
                set(&mut self.addresses, (network_id, ip), decode::<AddressClaim>(&key, value), |_| true)
            }
            // Derived from the network records.
            Key::Vni(_) | Key::Subnet(_) => {}
            Key::Other(rest) => match value {
                Some(v) => {
                    self.other.insert(rest, v.to_vec());
                }
                None => {
                    self.other.remove(&rest);
                }
            },
        }
    }

    /// The network with this id.
    pub fn network_by_id(&self, id: &str) -> Option<&NetworkRecord> {
        self.networks.values().find(|n| n.id == id)
    }

    /// Whether `node` has a live record (its lease is alive).
    pub fn is_alive(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Every endpoint record of one network (any node, live or not).
    pub fn endpoints_of_network<'a>(&'a self, network_id: &str) -> impl Iterator<Item = &'a EndpointRecord> + use<'a> {
        let network_id = network_id.to_string();
        self.endpoints
            .range((network_id.clone(), String::new())..)
            .take_while(move |((net, _), _)| *net == network_id)
            .map(|(_, record)| record)
    }

    /// The VTEPs to which `local_node` tunnels on a network (lazy extension):
    /// those of live nodes other than itself with at least one endpoint record
    /// on it. Sorted, without duplicates.
    pub fn peers(&self, network_id: &str, local_node: &str) -> Vec<SocketAddr> {
        let vteps: BTreeSet<SocketAddr> = self
            .remote_endpoints(network_id, local_node)
            .filter_map(|e| self.nodes.get(&e.node).map(|n| n.vtep))
            .collect();
        vteps.into_iter().collect()
    }

    /// The endpoints of a network owned by live nodes other than `local_node`.
    pub fn remote_endpoints<'a>(
        &'a self,
        network_id: &str,
        local_node: &str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + use<'a> {
        let local_node = local_node.to_string();
        self.endpoints_of_network(network_id).filter(move |e| e.node != local_node && self.nodes.contains_key(&e.node))
    }

    /// Every address of a network that is claimed (or published by an
    /// endpoint record, in case a claim is not yet seen).
    pub fn taken_addresses(&self, network_id: &str) -> BTreeSet<IpAddr> {
        let claimed = self
            .addresses
            .range((network_id.to_string(), IpAddr::from([0u8; 4]))..)
            .take_while(|((net, _), _)| net == network_id)
            .map(|((_, ip), _)| *ip);
        let published = self
            .endpoints_of_network(network_id)
            .flat_map(|e| [e.ipv4.map(IpAddr::V4), e.ipv6.map(IpAddr::V6)])
            .flatten();
        claimed.chain(published).collect()
    }

    /// The replicas of ingress service `service` on `network_id` owned by
    /// live nodes other than `local_node` (endpoint records naming it).
    pub fn remote_replicas<'a>(
        &'a self,
        network_id: &'a str,
        service: &'a str,
        local_node: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.remote_endpoints(network_id, local_node).filter(move |e| e.service.as_deref() == Some(service))
    }

    /// Who holds `ip` in a network.
    pub fn claim(&self, network_id: &str, ip: IpAddr) -> Option<&AddressClaim> {
        self.addresses.get(&(network_id.to_string(), ip))
    }

    /// The endpoint records a node has published (on every network).
    pub fn endpoints_of_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a EndpointRecord> + use<'a> {
        let node = node.to_string();
        self.endpoints.values().filter(move |e| e.node == node)
    }

    /// The address claims a node holds: `(network id, address, claim)`.
    pub fn claims_of_node<'a>(
        &'a self,
        node: &str,
    ) -> impl Iterator<Item = (&'a str, IpAddr, &'a AddressClaim)> + use<'a> {
        let node = node.to_string();
        self.addresses.iter().filter(move |(_, c)| c.node == node).map(|((net, ip), c)| (net.as_str(), *ip, c))
    }

    /// Every node name the cluster knows: live ones and those that only hold
    /// claims (dead, shown `down` until `node rm`).
    pub fn known_nodes(&self) -> BTreeSet<&str> {
        let live = self.nodes.keys().map(String::as_str);
        live.chain(self.addresses.values().map(|c| c.node.as_str())).collect()
    }
}

/// Decodes a put's value; `None` for a delete. `Some(None)` for a value that
/// does not parse (logged).
fn decode<T: DeserializeOwned>(key: &str, value: Option<&[u8]>) -> Option<Option<T>> {
    let value = value?;
    match serde_json::from_slice(value) {
        Ok(record) => Some(Some(record)),
        Err(e) => {
            tracing::warn!(key, error = %e, "cluster mirror: skipping a value that does not parse");
            Some(None)
        }
    }
}

/// Stores or removes a decoded record: a delete, a bad value and a record
/// whose contents contradict its key all leave the key absent.
fn set<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, record: Option<Option<V>>, consistent: impl Fn(&V) -> bool) {
    match record {
        Some(Some(record)) if consistent(&record) => {
            map.insert(key, record);
        }
        Some(Some(_)) => {
            tracing::warn!("cluster mirror: skipping a record whose contents contradict its key");
            map.remove(&key);
        }
        _ => {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{address_key, endpoint_key, network_key, node_key};

    const P: &str = "/vswitch/v1";

    fn node(name: &str, vtep: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            vtep: vtep.parse().unwrap(),
            version: "0.1.0".into(),
            started_unix: 1,
            public_key: None,
        }
    }

    fn endpoint(net: &str, id: &str, node: &str, ip: &str) -> EndpointRecord {
        EndpointRecord {
            network_id: net.into(),
            endpoint_id: id.into(),
            node: node.into(),
            name: format!("c-{id}"),
            aliases: vec![],
            mac: "02:42:0a:00:00:02".into(),
            ipv4: Some(ip.parse().unwrap()),
            ipv6: None,
            service: None,
        }
    }

    fn put(m: &mut Mirror, key: String, value: &impl serde::Serialize, rev: i64) {
        let value = serde_json::to_vec(value).unwrap();
        m.apply(P, KvEvent::Put { key, value, mod_revision: rev });
    }

    fn del(m: &mut Mirror, key: String, rev: i64) {
        m.apply(P, KvEvent::Delete { key, mod_revision: rev });
    }

    fn mirror_with_three_nodes() -> Mirror {
        let mut m = Mirror::default();
        put(&mut m, node_key(P, "a"), &node("a", "10.1.0.1:4789"), 1);
        put(&mut m, node_key(P, "b"), &node("b", "10.1.0.2:4789"), 2);
        put(&mut m, node_key(P, "c"), &node("c", "10.1.0.3:4789"), 3);
        put(&mut m, endpoint_key(P, "n1", "ea"), &endpoint("n1", "ea", "a", "10.0.0.2"), 4);
        put(&mut m, endpoint_key(P, "n1", "eb"), &endpoint("n1", "eb", "b", "10.0.0.3"), 5);
        put(&mut m, endpoint_key(P, "n1", "eb2"), &endpoint("n1", "eb2", "b", "10.0.0.4"), 6);
        put(&mut m, endpoint_key(P, "n2", "ec"), &endpoint("n2", "ec", "c", "10.0.1.2"), 7);
        m
    }

    #[test]
    fn peers_are_live_remote_nodes_with_endpoints_on_the_network() {
        let mut m = mirror_with_three_nodes();
        assert_eq!(m.revision, 7);
        // c has no endpoint on n1 (lazy extension); a is local.
        assert_eq!(m.peers("n1", "a"), vec!["10.1.0.2:4789".parse().unwrap()]);
        assert_eq!(m.peers("n1", "c"), vec!["10.1.0.1:4789".parse().unwrap(), "10.1.0.2:4789".parse().unwrap()]);
        assert_eq!(m.peers("n2", "a"), vec!["10.1.0.3:4789".parse().unwrap()]);
        assert!(m.peers("n2", "c").is_empty());
        assert!(m.peers("unknown", "a").is_empty());
        let remote: Vec<_> = m.remote_endpoints("n1", "a").map(|e| e.endpoint_id.as_str()).collect();
        assert_eq!(remote, ["eb", "eb2"]);

        // b dies (its node record goes with its lease, endpoints may lag).
        del(&mut m, node_key(P, "b"), 8);
        assert!(m.peers("n1", "a").is_empty());
        assert_eq!(m.remote_endpoints("n1", "a").count(), 0);
        assert_eq!(m.peers("n1", "c"), vec!["10.1.0.1:4789".parse().unwrap()]);
        assert_eq!(m.endpoints_of_node("b").count(), 2);
        assert!(!m.is_alive("b"));
    }

    #[test]
    fn deletes_remove_endpoints_and_claims() {
        let mut m = mirror_with_three_nodes();
        let ip: IpAddr = "10.0.0.3".parse().unwrap();
        let claim = AddressClaim { node: "b".into(), endpoint_id: "eb".into() };
        put(&mut m, address_key(P, "n1", ip), &claim, 8);
        assert_eq!(m.claim("n1", ip), Some(&claim));
        assert_eq!(m.claims_of_node("b").count(), 1);
        del(&mut m, endpoint_key(P, "n1", "eb"), 9);
        del(&mut m, endpoint_key(P, "n1", "eb2"), 10);
        assert!(m.peers("n1", "a").is_empty());
        // The claim outlives the endpoint record (no lease).
        assert!(m.taken_addresses("n1").contains(&ip));
        del(&mut m, address_key(P, "n1", ip), 11);
        assert_eq!(m.claim("n1", ip), None);
        assert_eq!(m.taken_addresses("n1"), ["10.0.0.2".parse().unwrap()].into_iter().collect());
        // Deleting what was never there is harmless.
        del(&mut m, endpoint_key(P, "n9", "zz"), 12);
        assert_eq!(m.revision, 12);
    }

    #[test]
    fn taken_addresses_are_per_network_and_include_published_ones() {
        let mut m = mirror_with_three_nodes();
        let claim = AddressClaim { node: "a".into(), endpoint_id: "x".into() };
        put(&mut m, address_key(P, "n1", "10.0.0.9".parse().unwrap()), &claim, 8);
        put(&mut m, address_key(P, "n1", "fd00::9".parse().unwrap()), &claim, 9);
        put(&mut m, address_key(P, "n10", "10.0.0.10".parse().unwrap()), &claim, 10);
        let taken: Vec<String> = m.taken_addresses("n1").iter().map(|ip| ip.to_string()).collect();
        assert_eq!(taken, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.9", "fd00::9"]);
        assert_eq!(m.taken_addresses("n10").len(), 1);
        assert!(m.taken_addresses("n").is_empty());
    }

    #[test]
    fn bad_json_is_skipped_and_forgets_the_old_value() {
        let mut m = mirror_with_three_nodes();
        m.apply(P, KvEvent::Put { key: node_key(P, "a"), value: b"{not json".to_vec(), mod_revision: 8 });
        assert!(!m.is_alive("a"));
        m.apply(P, KvEvent::Put { key: network_key(P, "web"), value: b"[]".to_vec(), mod_revision: 9 });
        assert!(m.networks.is_empty());
        m.apply(P, KvEvent::Put { key: endpoint_key(P, "n1", "ea"), value: vec![0xff, 0], mod_revision: 10 });
        assert_eq!(m.endpoints_of_network("n1").count(), 2);
        // A record that contradicts its key is refused too.
        put(&mut m, node_key(P, "d"), &node("not-d", "10.1.0.4:4789"), 11);
        assert!(!m.is_alive("d") && !m.is_alive("not-d"));
        put(&mut m, endpoint_key(P, "n1", "ee"), &endpoint("n2", "ee", "c", "10.0.0.5"), 12);
        assert_eq!(m.endpoints_of_network("n2").count(), 1);
        assert_eq!(m.revision, 12);
    }

    #[test]
    fn services_and_their_remote_replicas() {
        let mut m = mirror_with_three_nodes();
        let service = ServiceRecord {
            name: "api".into(),
            network_id: "n1".into(),
            ports: serde_json::json!([]),
            mode: "ingress".into(),
            created_by: "a".into(),
        };
        put(&mut m, crate::layout::service_key(P, "api"), &service, 8);
        assert_eq!(m.services.get("api"), Some(&service));
        let mut replica = endpoint("n1", "eb3", "b", "10.0.0.5");
        replica.service = Some("api".into());
        put(&mut m, endpoint_key(P, "n1", "eb3"), &replica, 9);
        let mut local = endpoint("n1", "ea2", "a", "10.0.0.6");
        local.service = Some("api".into());
        put(&mut m, endpoint_key(P, "n1", "ea2"), &local, 10);
        let ids: Vec<_> = m.remote_replicas("n1", "api", "a").map(|e| e.endpoint_id.as_str()).collect();
        assert_eq!(ids, ["eb3"], "b's replica; a's own is local; eb and eb2 are no replicas");
        // An old record without the field still parses (no service).
        let old = br#"{"network_id":"n1","endpoint_id":"eo","node":"c","name":"x","mac":"02:42:0a:00:00:09"}"#;
        m.apply(P, KvEvent::Put { key: endpoint_key(P, "n1", "eo"), value: old.to_vec(), mod_revision: 11 });
        assert_eq!(m.endpoints.get(&("n1".into(), "eo".into())).map(|e| e.service.clone()), Some(None));
        // b dies: its replica leaves the balancing.
        del(&mut m, node_key(P, "b"), 12);
        assert_eq!(m.remote_replicas("n1", "api", "a").count(), 0);
        // A record that contradicts its key is refused; a delete removes it.
        put(&mut m, crate::layout::service_key(P, "web"), &service, 13);
        assert!(!m.services.contains_key("web"));
        del(&mut m, crate::layout::service_key(P, "api"), 14);
        assert!(m.services.is_empty());
    }

    #[test]
    fn unknown_and_foreign_keys() {
        let mut m = Mirror::default();
        m.apply(P, KvEvent::Put { key: "/elsewhere/nodes/a".into(), value: b"{}".to_vec(), mod_revision: 3 });
        m.apply(P, KvEvent::Put { key: format!("{P}/nodes/a/b"), value: b"{}".to_vec(), mod_revision: 4 });
        m.apply(P, KvEvent::Put { key: format!("{P}/keycurrent/n1"), value: b"7".to_vec(), mod_revision: 5 });
        m.apply(P, KvEvent::Put { key: format!("{P}/vnis/4096"), value: b"web".to_vec(), mod_revision: 6 });
        assert!(m.nodes.is_empty());
        assert_eq!(m.other.get("keycurrent/n1"), Some(&b"7".to_vec()));
        m.apply(P, KvEvent::Delete { key: format!("{P}/keycurrent/n1"), mod_revision: 7 });
        assert!(m.other.is_empty());
        assert_eq!(m.revision, 7);
    }

    #[test]
    fn networks_by_id_and_full_read() {
        let net = NetworkRecord {
            id: "ab".repeat(32),
            name: "web".into(),
            vni: 4096,
            subnets: vec!["10.0.0.0/24".parse().unwrap()],
            created_by: "a".into(),
            spec: serde_json::json!({"driver": "overlay"}),
        };
        let kvs = vec![
            (network_key(P, "web"), serde_json::to_vec(&net).unwrap()),
            (node_key(P, "a"), serde_json::to_vec(&node("a", "10.1.0.1:4789")).unwrap()),
            (node_key(P, "junk"), b"junk".to_vec()),
        ];
        let m = Mirror::from_kvs(P, 42, kvs);
        assert_eq!(m.revision, 42);
        assert_eq!(m.network_by_id(&net.id), Some(&net));
        assert_eq!(m.network_by_id("cd"), None);
        assert_eq!(m.nodes.len(), 1);
        assert_eq!(m.known_nodes().into_iter().collect::<Vec<_>>(), ["a"]);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Keys of every shape: valid ones, near misses and noise.
        fn key() -> impl Strategy<Value = String> {
            let id = prop_oneof![Just("n1".to_string()), Just("n2".to_string()), "[a-z/]{0,4}"];
            let kind = prop_oneof![
                Just("nodes"),
                Just("networks"),
                Just("endpoints"),
                Just("addresses"),
                Just("vnis"),
                Just("subnets"),
                Just("keycurrent"),
                Just("x"),
            ];
            let tail = prop_oneof![
                id.clone(),
                (id.clone(), id).prop_map(|(a, b)| format!("{a}/{b}")),
                Just("n1/10.0.0.2".to_string())
            ];
            prop_oneof![(kind, tail).prop_map(|(k, t)| format!("{P}/{k}/{t}")), ".{0,20}"]
        }

        /// Values: records of every kind (consistent with some keys or not) and noise.
        fn value() -> impl Strategy<Value = Vec<u8>> {
            let node = Just(serde_json::to_vec(&node("n1", "10.1.0.1:4789")).unwrap());
            let ep = Just(serde_json::to_vec(&endpoint("n1", "n2", "n1", "10.0.0.2")).unwrap());
            let claim =
                Just(serde_json::to_vec(&AddressClaim { node: "n1".into(), endpoint_id: "n2".into() }).unwrap());
            prop_oneof![node, ep, claim, proptest::collection::vec(any::<u8>(), 0..16)]
        }

        fn event() -> impl Strategy<Value = KvEvent> {
            prop_oneof![
                (key(), value(), 0..100i64).prop_map(|(key, value, mod_revision)| KvEvent::Put {
                    key,
                    value,
                    mod_revision
                }),
                (key(), 0..100i64).prop_map(|(key, mod_revision)| KvEvent::Delete { key, mod_revision }),
            ]
        }

        proptest! {
            /// Whatever the store holds, applying it never panics, every kept
            /// record agrees with its key, and the queries stay consistent.
            #[test]
            fn any_events_keep_the_mirror_consistent(events in proptest::collection::vec(event(), 0..40)) {
                let mut m = Mirror::default();
                let max = events.iter().map(|e| match e {
                    KvEvent::Put { mod_revision, .. } | KvEvent::Delete { mod_revision, .. } => *mod_revision,
                }).max().unwrap_or(0);
                for e in events {
                    m.apply(P, e);
                }
                prop_assert_eq!(m.revision, max);
                for (name, n) in &m.nodes {
                    prop_assert_eq!(name, &n.name);
                }
                for ((net, id), e) in &m.endpoints {
                    prop_assert_eq!((net, id), (&e.network_id, &e.endpoint_id));
                }
                for local in ["n1", "n2"] {
                    for peer in m.peers("n1", local) {
                        prop_assert!(m.nodes.values().any(|n| n.vtep == peer && n.name != local));
                    }
                    for e in m.remote_endpoints("n1", local) {
                        prop_assert!(e.node != local && m.is_alive(&e.node));
                    }
                }
            }
        }
    }
}
