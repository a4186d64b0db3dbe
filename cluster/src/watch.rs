//! Keeps the mirror in step with the store: a full read of the prefix, then a
//! watch from the read's revision + 1, applying each batch of events. Any
//! break (an outage, a restarted store, a compacted revision) starts over with
//! a full read that replaces the mirror, so deletes missed meanwhile (expired
//! leases) are never lost and the mirror never goes back in time relative to
//! what it replaced.

use std::sync::Arc;

use etcd_client::{EventType, WatchOptions};

use crate::client::{Backoff, Ctx, lock, read_prefix, store_error};
use crate::error::ClusterError;
use crate::layout::root_prefix;
use crate::mirror::{KvEvent, Mirror};

/// Runs until the client stops.
pub(crate) async fn run(ctx: Ctx) {
    let mut backoff = Backoff::new();
    loop {
        let error = match sync_and_watch(&ctx, &mut backoff).await {
            Ok(reason) => reason,
            Err(e) => e.to_string(),
        };
        tracing::debug!(node = ctx.config.node, error, "cluster watch: starting over");
        ctx.shared.set_error(&error, true);
        backoff.wait().await;
    }
}

/// One full read plus the watch that follows it; returns why the watch ended.
async fn sync_and_watch(ctx: &Ctx, backoff: &mut Backoff) -> Result<String, ClusterError> {
    let root = root_prefix(ctx.prefix());
    let (revision, kvs) = read_prefix(ctx, &root).await?;
    let count = kvs.len();
    let kvs = kvs.into_iter().filter_map(|kv| {
        let (key, value) = kv.into_key_value();
        Some((String::from_utf8(key).ok()?, value))
    });
    let mirror = Mirror::from_kvs(ctx.prefix(), revision, kvs);
    tracing::debug!(node = ctx.config.node, revision, keys = count, "cluster: full read");

    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut watch = ctx.kv();
    let mut stream = ctx
        .bounded("watch the store", async {
            watch.watch(root.as_str(), options).await.map_err(|e| store_error("watch the store", e))
        })
        .await?;
    *lock(&ctx.shared.mirror) = Arc::new(mirror);
    {
        let mut status = lock(&ctx.shared.status);
        status.connected = true;
        status.revision = revision;
        status.last_error = None;
    }
    ctx.shared.tick();
    backoff.reset();

    loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok("the watch stream ended".into()),
            Err(e) => return Err(store_error("watch", e)),
        };
        if response.compact_revision() > 0 {
            return Ok(format!("watch revision compacted (compacted up to {})", response.compact_revision()));
        }
        if response.canceled() {
            return Ok(format!("watch canceled: {}", response.cancel_reason()));
        }
        if response.events().is_empty() {
            continue;
        }
        let revision = {
            let mut guard = lock(&ctx.shared.mirror);
            let mirror = Arc::make_mut(&mut guard);
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                let key = key.to_string();
                let mod_revision = kv.mod_revision();
                let event = match event.event_type() {
                    EventType::Put => KvEvent::Put { key, value: kv.value().to_vec(), mod_revision },
                    EventType::Delete => KvEvent::Delete { key, mod_revision },
                };
                mirror.apply(ctx.prefix(), event);
            }
            mirror.revision
        };
        lock(&ctx.shared.status).revision = revision;
        ctx.shared.tick();
    }
}
