//! The node's session: a lease, the node record under it, the keep-alive, and
//! the endpoint records this node published.
//!
//! The lease is lost when the store did not hear from this node for a TTL (an
//! outage longer than the TTL, a stalled process): etcd then deleted the node
//! record and the endpoint records. The session notices (a keep-alive answers
//! "lease not found"), grants a new lease and registers again, re-publishing
//! every endpoint record it holds in [`Session::published`]: the daemon does
//! not have to. Registration and publishing hold the session's lock, so an
//! endpoint is never published under a lease that is being replaced.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::PutOptions;

use crate::client::{Backoff, Ctx, is_lease_not_found, lock, store_error};
use crate::error::ClusterError;
use crate::layout::{endpoint_key, node_key};
use crate::schema::EndpointRecord;

/// The lease and what lives under it.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The current lease, `None` until registered (and after it was lost).
    lease: Option<i64>,
    /// The endpoint records this node published, by (network id, endpoint id).
    published: BTreeMap<(String, String), EndpointRecord>,
    /// [`leave`] was called: never register again.
    left: bool,
}

impl Session {
    /// The current lease, if registered (for other records under it, such
    /// as key acknowledgements).
    pub(crate) fn lease(&self) -> Option<i64> {
        self.lease
    }
}

/// Registers, keeps the lease alive, re-registers when it is lost. Runs
/// until the client stops.
pub(crate) async fn run(ctx: Ctx) {
    let mut backoff = Backoff::new();
    loop {
        let (lease, left) = {
            let session = ctx.session.lock().await;
            (session.lease, session.left)
        };
        if left {
            return;
        }
        let Some(lease) = lease else {
            match register(&ctx).await {
                Ok(id) => {
                    tracing::info!(node = ctx.config.node, lease = id, "registered with the cluster store");
                    backoff.reset();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: registration failed, retrying");
                    ctx.shared.set_error(&e.to_string(), false);
                    backoff.wait().await;
                }
            }
            continue;
        };
        match keep_alive(&ctx, lease, &mut backoff).await {
            KeepAliveEnd::LeaseLost => {
                tracing::warn!(node = ctx.config.node, lease, "cluster lease lost: registering again");
                let mut session = ctx.session.lock().await;
                if session.lease == Some(lease) {
                    session.lease = None;
                }
            }
            KeepAliveEnd::Failed(e) => {
                tracing::debug!(error = %e, "cluster: keep-alive failed, retrying");
                ctx.shared.set_error(&e, false);
                backoff.wait().await;
            }
        }
    }
}

/// Grants a lease, writes the node record under it (replacing a stale one of
/// the same name, whose key moves to the new lease) and re-publishes the
/// endpoint records this client holds. A previous incarnation's records that
/// are not published again stay under its dead lease and vanish within the
/// TTL; deleting them here would make the endpoints the daemon is about to
/// re-publish flap on the other nodes.
///
/// Each request is bounded by the request timeout, and the lease is the
/// session's as soon as it is granted. A write cut short by the bound may
/// still have landed (a store electing a leader answers late): had the
/// lease been dropped then, the node record would have stood under a lease
/// nobody kept alive, the node seen alive by every other node while its
/// own publishing was refused, until the TTL ended. Now a write that failed
/// is put back by [`repair`] from the keep-alive, as one deleted by hand.
async fn register(ctx: &Ctx) -> Result<i64, ClusterError> {
    let mut session = ctx.session.lock().await;
    if session.left {
        return Err(ClusterError::Unavailable("this node has left the cluster".into()));
    }
    let mut kv = ctx.kv();
    let ttl = ctx.config.lease_ttl.as_secs().max(1) as i64;
    let grant = async { kv.lease_grant(ttl).await.map_err(|e| store_error("grant lease", e)) };
    let lease = ctx.bounded("grant lease", grant).await?.id();
    session.lease = Some(lease);
    let record = serde_json::to_vec(&*ctx.node_record).map_err(|e| ClusterError::Internal(e.to_string()))?;
    let put = PutOptions::new().with_lease(lease);
    let node = async {
        kv.put(node_key(ctx.prefix(), &ctx.config.node), record, Some(put))
            .await
            .map_err(|e| store_error("register node", e))
    };
    ctx.bounded("register node", node).await?;
    for record in session.published.values() {
        ctx.bounded("publish endpoint", put_endpoint(ctx, &mut kv, record, lease)).await?;
    }
    Ok(lease)
}

async fn put_endpoint(
    ctx: &Ctx,
    kv: &mut crate::rpc::Kv,
    record: &EndpointRecord,
    lease: i64,
) -> Result<(), ClusterError> {
    let value = serde_json::to_vec(record).map_err(|e| ClusterError::Internal(e.to_string()))?;
    let key = endpoint_key(ctx.prefix(), &record.network_id, &record.endpoint_id);
    match kv.put(key, value, Some(PutOptions::new().with_lease(lease))).await {
        Ok(_) => Ok(()),
        Err(e) if is_lease_not_found(&e) => {
            Err(ClusterError::Unavailable("this node's lease was lost; registering again".into()))
        }
        Err(e) => Err(store_error("publish endpoint", e)),
    }
}

enum KeepAliveEnd {
    /// The store says the lease is gone.
    LeaseLost,
    /// The store could not be reached; the lease may still be alive.
    Failed(String),
}

/// Refreshes the lease every third of the TTL until that fails. Also puts the
/// node record back if the mirror (in sync with the store) lacks it.
async fn keep_alive(ctx: &Ctx, lease: i64, backoff: &mut Backoff) -> KeepAliveEnd {
    let answer_within = ctx.config.request_timeout.min(ctx.config.lease_ttl);
    let mut kv = ctx.kv();
    let opened = tokio::time::timeout(answer_within, kv.lease_keep_alive(lease)).await;
    let (mut keeper, mut stream) = match opened {
        Err(_) => return KeepAliveEnd::Failed("lease keep-alive: no answer".into()),
        Ok(Err(e)) if is_lease_not_found(&e) => return KeepAliveEnd::LeaseLost,
        Ok(Err(e)) => return KeepAliveEnd::Failed(format!("lease keep-alive: {e}")),
        Ok(Ok(pair)) => pair,
    };
    backoff.reset();
    let interval = (ctx.config.lease_ttl / 3).max(Duration::from_millis(300));
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = keeper.keep_alive().await {
            return KeepAliveEnd::Failed(format!("lease keep-alive: {e}"));
        }
        match tokio::time::timeout(answer_within, stream.message()).await {
            Err(_) => return KeepAliveEnd::Failed("lease keep-alive: no answer".into()),
            Ok(Err(e)) if is_lease_not_found(&e) => return KeepAliveEnd::LeaseLost,
            Ok(Err(e)) => return KeepAliveEnd::Failed(format!("lease keep-alive: {e}")),
            Ok(Ok(None)) => return KeepAliveEnd::Failed("lease keep-alive: stream closed".into()),
            Ok(Ok(Some(resp))) if resp.ttl() <= 0 => return KeepAliveEnd::LeaseLost,
            Ok(Ok(Some(_))) => {}
        }
        if let Err(e) = repair(ctx, lease).await {
            return KeepAliveEnd::Failed(e.to_string());
        }
    }
}

/// Puts the node record and the published endpoints back when the mirror, in
/// sync with the store, shows them missing while the lease lives (deleted by
/// hand, or by a `node rm` racing a restart).
async fn repair(ctx: &Ctx, lease: i64) -> Result<(), ClusterError> {
    let connected = lock(&ctx.shared.status).connected;
    if !connected {
        return Ok(());
    }
    let mirror = lock(&ctx.shared.mirror).clone();
    let session = ctx.session.lock().await;
    if session.lease != Some(lease) {
        return Ok(());
    }
    let node_missing = !mirror.is_alive(&ctx.config.node);
    let missing: Vec<&EndpointRecord> =
        session.published.iter().filter(|(k, _)| !mirror.endpoints.contains_key(k)).map(|(_, r)| r).collect();
    if !node_missing && missing.is_empty() {
        return Ok(());
    }
    // The mirror may just lag the write that created them: re-check the store.
    let mut kv = ctx.kv();
    let node_key = node_key(ctx.prefix(), &ctx.config.node);
    let present = kv.get(node_key.as_str(), None).await.map_err(|e| store_error("check node record", e))?;
    if present.kvs().is_empty() {
        tracing::warn!(node = ctx.config.node, "cluster: node record missing; writing it again");
        let record = serde_json::to_vec(&*ctx.node_record).map_err(|e| ClusterError::Internal(e.to_string()))?;
        kv.put(node_key, record, Some(PutOptions::new().with_lease(lease)))
            .await
            .map_err(|e| store_error("register node", e))?;
    }
    for record in missing {
        let key = endpoint_key(ctx.prefix(), &record.network_id, &record.endpoint_id);
        let present = kv.get(key, None).await.map_err(|e| store_error("check endpoint record", e))?;
        if present.kvs().is_empty() {
            put_endpoint(ctx, &mut kv, record, lease).await?;
        }
    }
    Ok(())
}

/// Publishes one of this node's endpoints under the lease and remembers it.
pub(crate) async fn publish(ctx: &Ctx, record: EndpointRecord) -> Result<(), ClusterError> {
    if record.node != ctx.config.node {
        return Err(ClusterError::Conflict(format!(
            "endpoint record names node {:?}; this node is {:?}",
            record.node, ctx.config.node
        )));
    }
    for (what, id) in [("network id", &record.network_id), ("endpoint id", &record.endpoint_id)] {
        if id.is_empty() || id.contains('/') {
            return Err(ClusterError::Conflict(format!("bad {what} {id:?}")));
        }
    }
    let mut session = ctx.session.lock().await;
    let Some(lease) = session.lease else {
        if session.left {
            return Err(ClusterError::Unavailable("this node has left the cluster".into()));
        }
        return Err(ClusterError::Unavailable("this node is not registered with the cluster store (yet)".into()));
    };
    put_endpoint(ctx, &mut ctx.kv(), &record, lease).await?;
    session.published.insert((record.network_id.clone(), record.endpoint_id.clone()), record);
    Ok(())
}

/// Deletes an endpoint record and forgets it (Ok if absent).
pub(crate) async fn withdraw(ctx: &Ctx, network_id: &str, endpoint_id: &str) -> Result<(), ClusterError> {
    let mut session = ctx.session.lock().await;
    ctx.kv()
        .delete(endpoint_key(ctx.prefix(), network_id, endpoint_id), None)
        .await
        .map_err(|e| store_error("withdraw endpoint", e))?;
    session.published.remove(&(network_id.to_string(), endpoint_id.to_string()));
    Ok(())
}

/// Leaves the cluster: revokes the lease (the node record and every endpoint
/// record go at once instead of after the TTL) and stops registering.
pub(crate) async fn leave(ctx: &Ctx) -> Result<(), ClusterError> {
    let mut session = ctx.session.lock().await;
    session.left = true;
    session.published.clear();
    let Some(lease) = session.lease.take() else { return Ok(()) };
    match ctx.kv().lease_revoke(lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_lease_not_found(&e) => Ok(()),
        Err(e) => Err(store_error("revoke the lease (the records expire within the TTL)", e)),
    }
}
