//! The store's transactions: networks, address claims, node removal.
//!
//! # Why `remove_network` and `claim_address` cannot both win
//!
//! A claim's txn compares the network key's `create_revision` with the one it
//! read (the network exists, and is the same incarnation, not a network of
//! the same name created since) and that the address key is absent; only then
//! does it put the claim. A removal's txn compares the network key's
//! `mod_revision` with the one it read and that no key exists in the
//! network's claims range (`P/addresses/ID/`, a compare with `range_end` on
//! `create_revision == 0`, which etcd evaluates over every key of the range and
//! holds for an empty one); only then does it delete. etcd serializes txns:
//! if the claim commits first, the removal sees the claim and answers InUse;
//! if the removal commits first, the claim sees the network key gone and
//! answers NotFound. No per-network counter key is needed, so claims of
//! different addresses never contend on one key.
//!
//! Subnet overlap is checked the same way: `create_network` reads every
//! subnet claim at revision R, checks overlaps, and its txn requires that no
//! key of the subnets range was written after R (`mod_revision < R + 1` over
//! the range); otherwise it reads again.

use std::net::IpAddr;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use crate::client::{Ctx, lock, read_prefix, store_error};
use crate::error::ClusterError;
use crate::layout::{
    ADDRESSES, ENDPOINTS, KEYACKS, Key, SUBNETS, VNIS, address_key, addresses_prefix, kind_prefix, network_key,
    node_key, parse_key, prefix_range_end, service_key, subnet_key, vni_key,
};
use crate::schema::{AddressClaim, EndpointRecord, NetworkRecord, ServiceRecord};

/// The first VNI allocated when a network asks for VNI 0.
pub const FIRST_AUTO_VNI: u32 = 4096;
/// The largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 0xff_ffff;
/// How many times an operation re-reads and retries after losing a race.
const RETRIES: usize = 64;
/// At most this many keys are deleted per txn (etcd's default limit is 128 ops).
const TXN_CHUNK: usize = 60;

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(value).map_err(|e| ClusterError::Internal(format!("cannot encode a record: {e}")))
}

fn check_name(what: &str, name: &str) -> Result<(), ClusterError> {
    if name.is_empty() || name.contains('/') {
        return Err(ClusterError::Conflict(format!("bad {what} {name:?}: must be non-empty and without '/'")));
    }
    Ok(())
}

/// Creates a network: name, VNI and subnet claims in one txn.
pub(crate) async fn create_network(ctx: &Ctx, mut record: NetworkRecord) -> Result<NetworkRecord, ClusterError> {
    check_name("network name", &record.name)?;
    check_name("network id", &record.id)?;
    if record.vni > MAX_VNI {
        return Err(ClusterError::Conflict(format!("VNI {} is above the 24-bit maximum {MAX_VNI}", record.vni)));
    }
    let p = ctx.prefix();
    let mut kv = ctx.kv();
    let auto_vni = record.vni == 0;
    let net_key = network_key(p, &record.name);
    for _ in 0..RETRIES {
        let subnets_prefix = kind_prefix(p, SUBNETS);
        let read = kv
            .get(subnets_prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| store_error("read subnets", e))?;
        let read_revision = read.header().map(|h| h.revision()).unwrap_or(0);
        for claimed in read.kvs() {
            let Some(Key::Subnet(taken)) = parse_key(p, claimed.key_str().unwrap_or_default()) else { continue };
            for subnet in &record.subnets {
                if taken.contains(&subnet.network()) || subnet.contains(&taken.network()) {
                    let holder = String::from_utf8_lossy(claimed.value());
                    return Err(ClusterError::Conflict(format!(
                        "subnet {subnet} overlaps {taken} of network {holder}"
                    )));
                }
            }
        }
        if auto_vni {
            let vnis = kv
                .get(kind_prefix(p, VNIS), Some(GetOptions::new().with_prefix().with_keys_only()))
                .await
                .map_err(|e| store_error("read VNIs", e))?;
            let taken: std::collections::BTreeSet<u32> = vnis
                .kvs()
                .iter()
                .filter_map(|kv| match parse_key(p, kv.key_str().ok()?) {
                    Some(Key::Vni(v)) => Some(v),
                    _ => None,
                })
                .collect();
            record.vni = (FIRST_AUTO_VNI..=MAX_VNI)
                .find(|v| !taken.contains(v))
                .ok_or_else(|| ClusterError::Conflict("no free VNI left".into()))?;
        }
        let vni_key = vni_key(p, record.vni);
        let mut compares = vec![
            Compare::create_revision(net_key.as_str(), CompareOp::Equal, 0),
            Compare::create_revision(vni_key.as_str(), CompareOp::Equal, 0),
            Compare::mod_revision(subnets_prefix.as_str(), CompareOp::Less, read_revision + 1)
                .with_range(prefix_range_end(&subnets_prefix)),
        ];
        let mut puts = vec![
            TxnOp::put(net_key.as_str(), json(&record)?, None),
            TxnOp::put(vni_key.as_str(), record.name.as_bytes(), None),
        ];
        for subnet in &record.subnets {
            let key = subnet_key(p, subnet);
            compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
            puts.push(TxnOp::put(key, record.name.as_bytes(), None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(puts)
            .or_else(vec![TxnOp::get(net_key.as_str(), None), TxnOp::get(vni_key.as_str(), None)]);
        let response = kv.txn(txn).await.map_err(|e| store_error("create network", e))?;
        if response.succeeded() {
            return Ok(record);
        }
        let found = |i: usize| match response.op_responses().get(i) {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => None,
        };
        if let Some(existing) = found(0) {
            // A retried txn (after "leader changed") may find its own write.
            if let Ok(existing) = serde_json::from_str::<NetworkRecord>(&existing)
                && existing.id == record.id
            {
                return Ok(existing);
            }
            return Err(ClusterError::Conflict(format!("network {} already exists in the cluster", record.name)));
        }
        if let Some(holder) = found(1)
            && !auto_vni
        {
            return Err(ClusterError::Conflict(format!("VNI {} is taken by network {holder}", record.vni)));
        }
        // A VNI allocated meanwhile, or a subnet claimed meanwhile: read again.
    }
    Err(ClusterError::Unavailable(format!("create network {}: too much contention, try again", record.name)))
}

/// Removes a network and its VNI/subnet claims; InUse while it has claims.
pub(crate) async fn remove_network(ctx: &Ctx, name: &str) -> Result<(), ClusterError> {
    check_name("network name", name)?;
    let p = ctx.prefix();
    let mut kv = ctx.kv();
    let net_key = network_key(p, name);
    for _ in 0..RETRIES {
        let read = kv.get(net_key.as_str(), None).await.map_err(|e| store_error("read network", e))?;
        let Some(current) = read.kvs().first() else {
            return Err(ClusterError::NotFound(format!("no network {name} in the cluster")));
        };
        let record: NetworkRecord = serde_json::from_slice(current.value())
            .map_err(|e| ClusterError::Internal(format!("network {name}'s record does not parse: {e}")))?;
        let claims = addresses_prefix(p, &record.id);
        let endpoints = format!("{}{}/", kind_prefix(p, ENDPOINTS), record.id);
        let mut deletes = vec![TxnOp::delete(net_key.as_str(), None)];
        // The VNI and subnet claims are this network's (create_network refuses taken ones).
        deletes.push(TxnOp::delete(vni_key(p, record.vni), None));
        for subnet in &record.subnets {
            deletes.push(TxnOp::delete(subnet_key(p, subnet), None));
        }
        let txn = Txn::new()
            .when(vec![
                Compare::mod_revision(net_key.as_str(), CompareOp::Equal, current.mod_revision()),
                Compare::create_revision(claims.as_str(), CompareOp::Equal, 0).with_range(prefix_range_end(&claims)),
                Compare::create_revision(endpoints.as_str(), CompareOp::Equal, 0)
                    .with_range(prefix_range_end(&endpoints)),
            ])
            .and_then(deletes)
            .or_else(vec![
                TxnOp::get(claims.as_str(), Some(GetOptions::new().with_prefix())),
                TxnOp::get(endpoints.as_str(), Some(GetOptions::new().with_prefix())),
            ]);
        let response = kv.txn(txn).await.map_err(|e| store_error("remove network", e))?;
        if response.succeeded() {
            return Ok(());
        }
        let mut nodes = std::collections::BTreeSet::new();
        let mut count = 0;
        for op in response.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                for kv in g.kvs() {
                    count += 1;
                    if let Ok(c) = serde_json::from_slice::<AddressClaim>(kv.value()) {
                        nodes.insert(c.node);
                    } else if let Ok(e) = serde_json::from_slice::<EndpointRecord>(kv.value()) {
                        nodes.insert(e.node);
                    }
                }
            }
        }
        if count > 0 {
            let nodes: Vec<String> = nodes.into_iter().collect();
            return Err(ClusterError::InUse(format!(
                "network {name} has endpoints (address claims) on node(s) {}",
                nodes.join(", ")
            )));
        }
        // The network record changed meanwhile: read again.
    }
    Err(ClusterError::Unavailable(format!("remove network {name}: too much contention, try again")))
}

/// The network key and its create revision for a network id: from the mirror
/// (by name) when it knows the id, else by scanning the networks in the store.
async fn find_network(ctx: &Ctx, network_id: &str) -> Result<(String, i64), ClusterError> {
    let p = ctx.prefix();
    let mut kv = ctx.kv();
    let known = lock(&ctx.shared.mirror).network_by_id(network_id).map(|n| n.name.clone());
    if let Some(name) = known {
        let key = network_key(p, &name);
        let read = kv.get(key.as_str(), None).await.map_err(|e| store_error("read network", e))?;
        if let Some(current) = read.kvs().first()
            && serde_json::from_slice::<NetworkRecord>(current.value()).is_ok_and(|r| r.id == network_id)
        {
            return Ok((key, current.create_revision()));
        }
    }
    let all = kv
        .get(kind_prefix(p, crate::layout::NETWORKS), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| store_error("read networks", e))?;
    for current in all.kvs() {
        if serde_json::from_slice::<NetworkRecord>(current.value()).is_ok_and(|r| r.id == network_id) {
            let key = current.key_str().map_err(|e| ClusterError::Internal(e.to_string()))?;
            return Ok((key.to_string(), current.create_revision()));
        }
    }
    Err(ClusterError::NotFound(format!("no network with id {network_id} in the cluster")))
}

/// Claims an address if absent and the network exists (see the module doc).
pub(crate) async fn claim_address(
    ctx: &Ctx,
    network_id: &str,
    ip: IpAddr,
    claim: AddressClaim,
) -> Result<(), ClusterError> {
    check_name("network id", network_id)?;
    check_name("node name", &claim.node)?;
    let key = address_key(ctx.prefix(), network_id, ip);
    let mut kv = ctx.kv();
    for _ in 0..RETRIES {
        let cached = lock(&ctx.networks).get(network_id).cloned();
        let (net_key, created) = match cached {
            Some(found) => found,
            None => {
                let found = find_network(ctx, network_id).await?;
                lock(&ctx.networks).insert(network_id.to_string(), found.clone());
                found
            }
        };
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(net_key.as_str(), CompareOp::Equal, created),
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            ])
            .and_then(vec![TxnOp::put(key.as_str(), json(&claim)?, None)])
            .or_else(vec![TxnOp::get(key.as_str(), None)]);
        let response = kv.txn(txn).await.map_err(|e| store_error("claim address", e))?;
        if response.succeeded() {
            return Ok(());
        }
        let holder = match response.op_responses().first() {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| serde_json::from_slice::<AddressClaim>(kv.value())),
            _ => None,
        };
        match holder {
            Some(Ok(holder)) if holder == claim => return Ok(()),
            Some(Ok(holder)) => return Err(ClusterError::Taken { ip, holder }),
            Some(Err(e)) => {
                return Err(ClusterError::Internal(format!("the claim of {ip} does not parse: {e}")));
            }
            // The address is free, so the network changed: look it up again.
            None => {
                lock(&ctx.networks).remove(network_id);
            }
        }
    }
    Err(ClusterError::Unavailable(format!("claim {ip}: too much contention, try again")))
}

/// Creates (`expected` None: Conflict if the name is taken) or replaces
/// (`expected` Some: Conflict unless the store still holds exactly that
/// record) an ingress service, while its network exists (NotFound
/// otherwise; the same incarnation it was looked up as).
pub(crate) async fn put_service(
    ctx: &Ctx,
    record: ServiceRecord,
    expected: Option<ServiceRecord>,
) -> Result<(), ClusterError> {
    check_name("service name", &record.name)?;
    check_name("network id", &record.network_id)?;
    let key = service_key(ctx.prefix(), &record.name);
    let (net_key, created) = find_network(ctx, &record.network_id).await?;
    let current = match &expected {
        None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
        Some(old) => Compare::value(key.as_str(), CompareOp::Equal, json(old)?),
    };
    let txn = Txn::new()
        .when(vec![Compare::create_revision(net_key.as_str(), CompareOp::Equal, created), current])
        .and_then(vec![TxnOp::put(key.as_str(), json(&record)?, None)]);
    let mut kv = ctx.kv();
    if kv.txn(txn).await.map_err(|e| store_error("put service", e))?.succeeded() {
        return Ok(());
    }
    // Which compare failed: the network went, or the service changed.
    find_network(ctx, &record.network_id).await?;
    Err(ClusterError::Conflict(match expected {
        None => format!("service {} already exists in the cluster", record.name),
        Some(_) => format!("service {} changed meanwhile; try again", record.name),
    }))
}

/// Deletes an ingress service (NotFound if absent).
pub(crate) async fn remove_service(ctx: &Ctx, name: &str) -> Result<(), ClusterError> {
    check_name("service name", name)?;
    let key = service_key(ctx.prefix(), name);
    let mut kv = ctx.kv();
    let deleted = kv.delete(key.as_str(), None).await.map_err(|e| store_error("remove service", e))?;
    if deleted.deleted() == 0 {
        return Err(ClusterError::NotFound(format!("no service {name} in the cluster")));
    }
    Ok(())
}

/// Releases an address held by `endpoint_id`.
pub(crate) async fn release_address(
    ctx: &Ctx,
    network_id: &str,
    ip: IpAddr,
    endpoint_id: &str,
) -> Result<(), ClusterError> {
    check_name("network id", network_id)?;
    let key = address_key(ctx.prefix(), network_id, ip);
    let mut kv = ctx.kv();
    for _ in 0..RETRIES {
        let read = kv.get(key.as_str(), None).await.map_err(|e| store_error("read claim", e))?;
        let Some(current) = read.kvs().first() else { return Ok(()) };
        if let Ok(holder) = serde_json::from_slice::<AddressClaim>(current.value())
            && holder.endpoint_id != endpoint_id
        {
            return Err(ClusterError::Conflict(format!(
                "address {ip} is held by endpoint {} on node {}, not by {endpoint_id}",
                holder.endpoint_id, holder.node
            )));
        }
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, current.mod_revision())])
            .and_then(vec![TxnOp::delete(key.as_str(), None)]);
        if kv.txn(txn).await.map_err(|e| store_error("release address", e))?.succeeded() {
            return Ok(());
        }
    }
    Err(ClusterError::Unavailable(format!("release {ip}: too much contention, try again")))
}

/// Deletes every claim, endpoint record and key ack of a node without a live
/// record, in txns that each re-check the node is still absent and that each
/// key is unchanged since read.
pub(crate) async fn remove_node(ctx: &Ctx, name: &str) -> Result<usize, ClusterError> {
    check_name("node name", name)?;
    let p = ctx.prefix();
    let mut kv = ctx.kv();
    let node = node_key(p, name);
    let mut removed = 0;
    for _ in 0..RETRIES {
        // Each request bounded on its own: the whole (`Cluster::call_paged`) is not.
        let read = kv.get(node.as_str(), None);
        let alive = ctx.bounded("read node", async { read.await.map_err(|e| store_error("read node", e)) }).await?;
        if !alive.kvs().is_empty() {
            return Err(ClusterError::InUse(format!(
                "node {name} is alive (its record is present): stop it, or wait for its lease to expire"
            )));
        }
        let mut doomed: Vec<(String, i64)> = Vec::new();
        for kind in [ADDRESSES, ENDPOINTS, KEYACKS] {
            let (_, read) = read_prefix(ctx, &kind_prefix(p, kind)).await?;
            for item in &read {
                let Ok(key) = item.key_str() else { continue };
                let owned = match kind {
                    ADDRESSES => serde_json::from_slice::<AddressClaim>(item.value()).is_ok_and(|c| c.node == name),
                    ENDPOINTS => serde_json::from_slice::<EndpointRecord>(item.value()).is_ok_and(|e| e.node == name),
                    // P/keyacks/NETWORK_ID/EPOCH/NODE
                    _ => key.rsplit('/').next() == Some(name),
                };
                if owned {
                    doomed.push((key.to_string(), item.mod_revision()));
                }
            }
        }
        if doomed.is_empty() {
            if removed > 0 {
                return Ok(removed);
            }
            return Err(ClusterError::NotFound(format!("node {name} holds nothing in the cluster")));
        }
        let mut lost_race = false;
        for chunk in doomed.chunks(TXN_CHUNK) {
            let mut compares = vec![Compare::create_revision(node.as_str(), CompareOp::Equal, 0)];
            compares.extend(chunk.iter().map(|(k, rev)| Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev)));
            let deletes: Vec<TxnOp> = chunk.iter().map(|(k, _)| TxnOp::delete(k.as_str(), None)).collect();
            let txn = Txn::new().when(compares).and_then(deletes);
            let request = kv.txn(txn);
            let done = ctx.bounded("remove node", async { request.await.map_err(|e| store_error("remove node", e)) });
            if done.await?.succeeded() {
                removed += chunk.len();
            } else {
                lost_race = true;
                break;
            }
        }
        if !lost_race {
            return Ok(removed);
        }
        // The node came back or a key changed: read again (the loop re-checks liveness).
    }
    Err(ClusterError::Unavailable(format!("remove node {name}: too much contention, try again")))
}
