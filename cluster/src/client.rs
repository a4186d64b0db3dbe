//! [`Cluster`]: the etcd client on its own thread.
//!
//! tokio (which etcd-client needs) runs only on that thread, as a
//! current-thread runtime; the public API is blocking and thread-safe: a call
//! sends a job to the thread and waits for its answer, at most the request
//! timeout. Three activities share the runtime:
//! - the session (`session.rs`): lease, node record, keep-alive, and
//!   the endpoint records this node published (re-published after a lost
//!   lease);
//! - the watch (`watch.rs`): a full read, then a watch of the whole
//!   prefix from the read's revision, again after every outage or compaction;
//! - the jobs: one task per blocking call, so calls run concurrently.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio::sync::mpsc;

use crate::config::{ClusterConfig, TlsPem};
use crate::error::ClusterError;
use crate::mirror::Mirror;
use crate::schema::{AddressClaim, EndpointRecord, NetworkRecord, NodeRecord, ServiceRecord};
use crate::session::Session;

/// How the store looks from this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// The watch is established (the mirror follows the store).
    pub connected: bool,
    /// The last store revision the mirror reflects.
    pub revision: i64,
    /// The last failure talking to the store (cleared on a successful resync).
    pub last_error: Option<String>,
}

/// A handle on the cluster store; clones share one client thread, which stops
/// when the last clone is dropped (the node's lease then expires within the
/// TTL, as if the node had died).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Handle>,
}

/// What the clones share; dropping it closes the job channel, which ends the
/// client thread.
struct Handle {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
    request_timeout: Duration,
    node: String,
    /// The store's endpoints, comma-separated, for error messages.
    endpoints: String,
}

/// State shared between the client thread and the callers.
pub(crate) struct Shared {
    pub(crate) mirror: Mutex<Arc<Mirror>>,
    pub(crate) status: Mutex<StoreStatus>,
    subscribers: Mutex<Vec<Sender<()>>>,
}

impl Shared {
    /// Ticks every [`Cluster::changes`] receiver (coalescing: one pending tick
    /// per receiver), forgetting dropped ones.
    pub(crate) fn tick(&self) {
        lock(&self.subscribers)
            .retain(|tx| !matches!(tx.try_send(()), Err(crossbeam_channel::TrySendError::Disconnected(_))));
    }

    /// Records a failure; ticks when the status changed to disconnected.
    pub(crate) fn set_error(&self, error: &str, disconnected: bool) {
        let mut status = lock(&self.status);
        status.last_error = Some(error.to_string());
        let was = status.connected;
        if disconnected {
            status.connected = false;
        }
        drop(status);
        if was && disconnected {
            self.tick();
        }
    }
}

/// Locks a mutex, ignoring poisoning (the data are plain values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Job = Box<dyn FnOnce(Ctx) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What every task on the client thread works with.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) client: crate::rpc::Kv,
    pub(crate) config: Arc<ClusterConfig>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) session: Arc<tokio::sync::Mutex<Session>>,
    pub(crate) node_record: Arc<NodeRecord>,
    /// Network id → (network key, its create revision), as claims last found
    /// them: a claim then needs one round trip. A stale entry only makes a
    /// claim's txn fail its compare, which drops the entry and looks again.
    pub(crate) networks: Arc<Mutex<std::collections::HashMap<String, (String, i64)>>>,
}

impl Ctx {
    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// A clone of the etcd client that retries requests that were never sent
    /// (its methods take `&mut`).
    pub(crate) fn kv(&self) -> crate::rpc::Kv {
        self.client.clone()
    }

    /// Bounds one store operation by the request timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.config.request_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(timeout_error(&self.config, what)),
        }
    }
}

fn timeout_error(config: &ClusterConfig, what: &str) -> ClusterError {
    ClusterError::Unavailable(format!(
        "{what}: no answer from {} within {:?}",
        config.endpoints.join(","),
        config.request_timeout
    ))
}

impl Cluster {
    /// Spawns the client thread and returns at once; never fails because the
    /// store is unreachable (the daemon must start and forward on its local
    /// state); retries with backoff, registers the node under a lease
    /// (replacing a stale record of its own name), keeps the lease alive,
    /// watches the prefix (resuming from the last revision; full re-read when
    /// compacted) and updates the mirror.
    ///
    /// Fails only for a bad configuration or unreadable TLS files
    /// ([`ClusterError::Config`]).
    pub fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(|t| t.load()).transpose()?;
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let node_record = Arc::new(NodeRecord {
            name: config.node.clone(),
            vtep: config.vtep,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_unix,
            public_key: config.public_key.clone(),
        });
        let shared = Arc::new(Shared {
            mirror: Mutex::new(Arc::new(Mirror::default())),
            status: Mutex::new(StoreStatus::default()),
            subscribers: Mutex::new(Vec::new()),
        });
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(), ClusterError>>(1);
        let request_timeout = config.request_timeout;
        let node = config.node.clone();
        let endpoints = config.endpoints.join(",");
        let config = Arc::new(config);
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("cluster-{}", config.node))
            .spawn(move || run(config, tls, thread_shared, node_record, jobs_rx, ready_tx))
            .map_err(|e| ClusterError::Internal(format!("cannot spawn the cluster thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {
                Ok(Cluster { inner: Arc::new(Handle { shared, jobs: jobs_tx, request_timeout, node, endpoints }) })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClusterError::Internal("the cluster thread stopped while starting".into())),
        }
    }

    /// The store's connectivity and the mirror's revision.
    pub fn status(&self) -> StoreStatus {
        lock(&self.inner.shared.status).clone()
    }

    /// A snapshot of the mirror (cheap: shared until the next change).
    pub fn mirror(&self) -> Arc<Mirror> {
        lock(&self.inner.shared.mirror).clone()
    }

    /// A receiver that gets a tick after each applied watch batch, full
    /// re-read, connect and disconnect. Ticks coalesce: a receiver holds at
    /// most one, so a slow reader re-reads the mirror once for many changes.
    pub fn changes(&self) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        lock(&self.inner.shared.subscribers).push(tx);
        rx
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Runs `f` on the client thread and waits for its result, bounded by
    /// the request timeout.
    pub(crate) fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, ClusterError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClusterError>> + Send + 'static,
    {
        self.run(what, Some(self.inner.request_timeout), f)
    }

    /// Runs `f`, an operation of as many store requests as there are keys
    /// to go through (a page of a read, a txn of a chunk), on the client
    /// thread and waits for its result: `f` bounds each request by the
    /// request timeout ([`Ctx::bounded`]); the whole is not bounded, so a
    /// node holding thousands of keys is removed however long that takes.
    pub(crate) fn call_paged<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, ClusterError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClusterError>> + Send + 'static,
    {
        self.run(what, None, f)
    }

    /// Runs `f` on the client thread, bounded by `bound` if any.
    fn run<T, F, Fut>(&self, what: &'static str, bound: Option<Duration>, f: F) -> Result<T, ClusterError>
    where
        T: Send + 'static,
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClusterError>> + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |ctx: Ctx| {
            Box::pin(async move {
                let config = ctx.config.clone();
                let result = match bound {
                    Some(bound) => match tokio::time::timeout(bound, f(ctx)).await {
                        Ok(r) => r,
                        Err(_) => Err(timeout_error(&config, what)),
                    },
                    None => f(ctx).await,
                };
                let _ = tx.send(result);
            })
        });
        self.inner.jobs.send(job).map_err(|_| ClusterError::Internal("the cluster thread has stopped".into()))?;
        // The thread answers within the bound; the margin covers a loaded machine.
        let answer = match bound {
            Some(bound) => rx.recv_timeout(bound + Duration::from_secs(2)).map_err(|_| ()),
            None => rx.recv().map_err(|_| ()),
        };
        match answer {
            Ok(Err(ClusterError::Unavailable(m))) if !m.contains(&self.inner.endpoints) => {
                Err(ClusterError::Unavailable(format!("{m} (store {})", self.inner.endpoints)))
            }
            Ok(r) => r,
            Err(()) => Err(ClusterError::Unavailable(format!("{what}: the cluster thread did not answer"))),
        }
    }

    /// Creates a cluster-wide network in one txn: refuses a taken name
    /// (Conflict), a taken VNI (Conflict; vni 0 = allocate the lowest free
    /// from 4096 upward, retrying on races), a taken or overlapping subnet
    /// (Conflict). Returns the record as stored (with its VNI).
    pub fn create_network(&self, record: NetworkRecord) -> Result<NetworkRecord, ClusterError> {
        self.call("create network", move |ctx| async move { crate::txn::create_network(&ctx, record).await })
    }

    /// Deletes a network and its VNI/subnet claims in one txn; InUse while any
    /// address claim or endpoint record of it exists (race-free against
    /// concurrent claims, see [`crate::txn`]).
    pub fn remove_network(&self, name: &str) -> Result<(), ClusterError> {
        let name = name.to_string();
        self.call("remove network", move |ctx| async move { crate::txn::remove_network(&ctx, &name).await })
    }

    /// Claims `ip` in `network_id` (txn create-if-absent; Ok if already held
    /// by the same endpoint; Taken if held by another). Fails NotFound if the
    /// network record is gone (race-free vs remove_network).
    pub fn claim_address(&self, network_id: &str, ip: IpAddr, claim: AddressClaim) -> Result<(), ClusterError> {
        let network_id = network_id.to_string();
        self.call(
            "claim address",
            move |ctx| async move { crate::txn::claim_address(&ctx, &network_id, ip, claim).await },
        )
    }

    /// Releases `ip` in `network_id` if `endpoint_id` holds it: Ok when no one
    /// holds it, Conflict when another endpoint does (its claim is kept).
    pub fn release_address(&self, network_id: &str, ip: IpAddr, endpoint_id: &str) -> Result<(), ClusterError> {
        let (network_id, endpoint_id) = (network_id.to_string(), endpoint_id.to_string());
        self.call("release address", move |ctx| async move {
            crate::txn::release_address(&ctx, &network_id, ip, &endpoint_id).await
        })
    }

    /// Publishes one of this node's endpoints under the node's lease. The
    /// client remembers it and re-publishes it whenever it re-registers (after
    /// the lease was lost), so the daemon need not. Unavailable while the node
    /// is not registered (store unreachable since start).
    pub fn publish_endpoint(&self, record: EndpointRecord) -> Result<(), ClusterError> {
        self.call("publish endpoint", move |ctx| async move { crate::session::publish(&ctx, record).await })
    }

    /// Withdraws an endpoint record (Ok if absent) and forgets it.
    pub fn withdraw_endpoint(&self, network_id: &str, endpoint_id: &str) -> Result<(), ClusterError> {
        let (network_id, endpoint_id) = (network_id.to_string(), endpoint_id.to_string());
        self.call("withdraw endpoint", move |ctx| async move {
            crate::session::withdraw(&ctx, &network_id, &endpoint_id).await
        })
    }

    /// Creates an ingress service (`expected` None; Conflict when the name
    /// is taken) or replaces it (`expected` the record last read; Conflict
    /// when it changed meanwhile). NotFound when its network is gone.
    pub fn put_service(&self, record: ServiceRecord, expected: Option<ServiceRecord>) -> Result<(), ClusterError> {
        self.call("put service", move |ctx| async move { crate::txn::put_service(&ctx, record, expected).await })
    }

    /// Removes an ingress service (NotFound when there is none).
    pub fn remove_service(&self, name: &str) -> Result<(), ClusterError> {
        let name = name.to_string();
        self.call("remove service", move |ctx| async move { crate::txn::remove_service(&ctx, &name).await })
    }

    /// Leaves the cluster on a clean shutdown: revokes the node's lease, so
    /// its node and endpoint records vanish at once on every node (instead of
    /// after the TTL), and stops registering. Address claims stay (a restart
    /// finds them). After this, publishing fails Unavailable; the other calls
    /// and the mirror keep working.
    pub fn leave(&self) -> Result<(), ClusterError> {
        self.call("leave", move |ctx| async move { crate::session::leave(&ctx).await })
    }

    /// Releases every claim and record of a node that is not alive (InUse if
    /// its node record exists; NotFound if it holds nothing). Returns how many
    /// keys were deleted.
    pub fn remove_node(&self, name: &str) -> Result<usize, ClusterError> {
        let name = name.to_string();
        self.call_paged("remove node", move |ctx| async move { crate::txn::remove_node(&ctx, &name).await })
    }
}

/// The client thread: builds the etcd client, starts the session and watch
/// tasks and serves jobs until every [`Cluster`] clone is dropped.
fn run(
    config: Arc<ClusterConfig>,
    tls: Option<TlsPem>,
    shared: Arc<Shared>,
    node_record: Arc<NodeRecord>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: Sender<Result<(), ClusterError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(ClusterError::Internal(format!("cannot build the cluster runtime: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.request_timeout)
            // HTTP/2 pings notice a dead store (e.g. a partition) on an idle watch.
            .with_keep_alive(Duration::from_secs(2), config.request_timeout)
            .with_keep_alive_while_idle(true)
            // A member cut off from its cluster's leader fails requests and
            // cancels watches instead of serving stale data silently.
            .with_require_leader(true);
        if let Some(tls) = tls {
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(tls.ca))
                    .identity(Identity::from_pem(tls.cert, tls.key)),
            );
        }
        // The connection is lazy: this fails only for a bad endpoint or TLS setup.
        let client = match Client::connect(&config.endpoints, Some(options)).await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(ClusterError::Config(format!("cannot set up the store client: {e}"))));
                return;
            }
        };
        let ctx = Ctx {
            client: crate::rpc::Kv::new(client, config.endpoints.len(), config.request_timeout),
            config,
            shared,
            session: Arc::new(tokio::sync::Mutex::new(Session::default())),
            node_record,
            networks: Default::default(),
        };
        let _ = ready.send(Ok(()));
        let session = tokio::spawn(crate::session::run(ctx.clone()));
        let watch = tokio::spawn(crate::watch::run(ctx.clone()));
        while let Some(job) = jobs.recv().await {
            tokio::spawn(job(ctx.clone()));
        }
        session.abort();
        watch.abort();
        tracing::debug!(node = ctx.config.node, "cluster client stopped");
    });
}

/// Exponential backoff for reconnecting: 100 ms doubling to 1 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    /// Starts at the shortest delay.
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    /// Back to the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }

    /// Sleeps, then lengthens the next delay.
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
    }
}

/// Maps an etcd client error: anything about reaching the store is
/// Unavailable, the rest Internal.
pub(crate) fn store_error(what: &str, e: etcd_client::Error) -> ClusterError {
    use etcd_client::Error as E;
    use tonic::Code;
    // The transport's messages are terse ("tcp connect error", "operation was
    // canceled"): add their causes (refused, TLS handshake, ...).
    let with_causes = |message: String| {
        let mut message = message;
        let inner: Option<&(dyn std::error::Error + 'static)> = match &e {
            E::GRpcStatus(s) => Some(s),
            E::TransportError(t) => Some(t),
            E::IoError(io) => Some(io),
            _ => None,
        };
        let mut source = inner.and_then(|i| i.source());
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        message
    };
    match &e {
        E::GRpcStatus(s)
            if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown) =>
        {
            ClusterError::Unavailable(with_causes(format!("{what}: {}", s.message())))
        }
        E::TransportError(_) | E::IoError(_) => ClusterError::Unavailable(with_causes(format!("{what}: {e}"))),
        _ => ClusterError::Internal(format!("{what}: {e}")),
    }
}

/// Whether an etcd error says a lease does not exist (expired or revoked).
pub(crate) fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::NotFound || s.message().contains("lease not found")
        }
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

/// Keys read per request by [`read_prefix`]: far below gRPC's 4 MiB message
/// limit even with large records, so a big cluster's full read never fails.
const PAGE: i64 = 1000;

/// Reads every key under `prefix` at one revision, page by page, each page
/// bounded by the request timeout (the whole read is not: a big cluster's
/// takes as many pages as it needs); returns the revision and the keys with
/// their values.
pub(crate) async fn read_prefix(ctx: &Ctx, prefix: &str) -> Result<(i64, Vec<etcd_client::KeyValue>), ClusterError> {
    use etcd_client::GetOptions;
    let mut kv = ctx.kv();
    let end = crate::layout::prefix_range_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut all = Vec::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let request = kv.get(from.clone(), Some(options));
        let mut page = ctx
            .bounded("read the store", async { request.await.map_err(|e| store_error("read the store", e)) })
            .await?;
        if revision == 0 {
            revision = page.header().map(|h| h.revision()).unwrap_or(0);
        }
        let more = page.more();
        let kvs = page.take_kvs();
        match kvs.last() {
            Some(last) if more => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => {
                all.extend(kvs);
                return Ok((revision, all));
            }
        }
        all.extend(kvs);
    }
}
