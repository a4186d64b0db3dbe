//! The etcd calls, retried when that is safe and likely to help.
//!
//! - A request whose connection could not even be opened was never seen by
//!   any member: etcd-client balances requests over every endpoint and, while
//!   one member is down, still picks it for some of them (measured: 28 of 50
//!   claims failed with one member of three down). Such a request is sent
//!   again at once, a few times.
//! - A request refused because the cluster is electing a leader ("no leader",
//!   "leader changed") is retried until most of the request timeout is spent,
//!   so a mutation rides over an election (about a second) and a store
//!   without quorum still fails with that clear reason. "leader changed" may
//!   come after a write was applied: every operation of this crate is safe to
//!   repeat (txns compare before they write, and `create_network` recognises
//!   its own network). "leader changed" also says the election is over: a
//!   request refused with it is sent once more even when that patience is
//!   spent (a read that waited out a long election comes back with it), the
//!   caller's request timeout still bounding it.
//! - Anything else is returned as is.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, DeleteOptions, DeleteResponse, Error, GetOptions, GetResponse, LeaseGrantResponse, LeaseKeepAliveStream,
    LeaseKeeper, LeaseRevokeResponse, PutOptions, PutResponse, Txn, TxnResponse, WatchOptions, WatchStream,
};

/// The etcd client with retries of never-sent requests.
#[derive(Clone)]
pub(crate) struct Kv {
    client: Client,
    /// Attempts for a request that was never sent.
    attempts: usize,
    /// How long a request is retried while the cluster elects a leader.
    patience: Duration,
}

/// Whether the store refused `e` because it has no leader (yet).
pub(crate) fn electing(e: &Error) -> bool {
    match e {
        Error::GRpcStatus(s) => {
            let m = s.message();
            m.contains("no leader") || m.contains("leader changed") || m.contains("not capable")
        }
        _ => false,
    }
}

/// Whether the store refused `e` because its leader changed while the
/// request waited: a new one has been elected.
fn leader_changed(e: &Error) -> bool {
    matches!(e, Error::GRpcStatus(s) if s.message().contains("leader changed"))
}

/// Whether `e` says the connection could not be opened (the request was not sent).
pub(crate) fn never_sent(e: &Error) -> bool {
    let root: &(dyn std::error::Error + 'static) = match e {
        Error::GRpcStatus(s) => s,
        Error::TransportError(t) => t,
        _ => return false,
    };
    let mut cause = Some(root);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if c.to_string().contains("tcp connect error") {
            return true;
        }
        cause = c.source();
    }
    false
}

impl Kv {
    /// Wraps `client`, which balances over `endpoints` endpoints; retries
    /// during an election for three quarters of `request_timeout`.
    pub(crate) fn new(client: Client, endpoints: usize, request_timeout: Duration) -> Kv {
        Kv { client, attempts: 2 * endpoints + 2, patience: request_timeout * 3 / 4 }
    }

    async fn retry<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(10);
        let mut attempt = 1;
        let mut sent_after_change = false;
        loop {
            match f(self.client.clone()).await {
                Err(e) if !sent_after_change && leader_changed(&e) && started.elapsed() + delay >= self.patience => {
                    // The election is over: once more, at once.
                    sent_after_change = true;
                    attempt += 1;
                }
                Err(e)
                    if (attempt < self.attempts && never_sent(&e))
                        || (electing(&e) && started.elapsed() + delay < self.patience) =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(200));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// etcd Range.
    pub(crate) async fn get(
        &mut self,
        key: impl Into<Vec<u8>>,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, Error> {
        let key = key.into();
        self.retry(|mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.get(key, options).await }
        })
        .await
    }

    /// etcd Put.
    pub(crate) async fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: Option<PutOptions>,
    ) -> Result<PutResponse, Error> {
        let (key, value) = (key.into(), value.into());
        self.retry(|mut c| {
            let (key, value, options) = (key.clone(), value.clone(), options.clone());
            async move { c.put(key, value, options).await }
        })
        .await
    }

    /// etcd DeleteRange.
    pub(crate) async fn delete(
        &mut self,
        key: impl Into<Vec<u8>>,
        options: Option<DeleteOptions>,
    ) -> Result<DeleteResponse, Error> {
        let key = key.into();
        self.retry(|mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.delete(key, options).await }
        })
        .await
    }

    /// etcd Txn.
    pub(crate) async fn txn(&mut self, txn: Txn) -> Result<TxnResponse, Error> {
        self.retry(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// etcd LeaseGrant.
    pub(crate) async fn lease_grant(&mut self, ttl: i64) -> Result<LeaseGrantResponse, Error> {
        self.retry(|mut c| async move { c.lease_grant(ttl, None).await }).await
    }

    /// etcd LeaseRevoke.
    pub(crate) async fn lease_revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        self.retry(|mut c| async move { c.lease_revoke(id).await }).await
    }

    /// etcd LeaseKeepAlive (a stream).
    pub(crate) async fn lease_keep_alive(&mut self, id: i64) -> Result<(LeaseKeeper, LeaseKeepAliveStream), Error> {
        self.retry(|mut c| async move { c.lease_keep_alive(id).await }).await
    }

    /// etcd Watch (a stream), with messages up to 64 MiB: a batch of events
    /// can be larger than one page of a read.
    pub(crate) async fn watch(&mut self, key: impl Into<Vec<u8>>, options: WatchOptions) -> Result<WatchStream, Error> {
        let key = key.into();
        self.retry(|c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.watch_client().max_decoding_message_size(64 << 20).watch(key, Some(options)).await }
        })
        .await
    }
}
