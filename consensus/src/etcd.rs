//! The etcd v3 implementation of [`Dcs`]; the only module that imports `etcd-client`.

use crate::dcs::{
    check_prefix, Dcs, DcsError, KeyValue, LeaseId, Snapshot, WatchEvent, WatchKind, WATCH_QUEUE,
};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// Upper bound of any single gRPC call, whatever the per-request deadline says.
const CHANNEL_TIMEOUT_CEILING: Duration = Duration::from_secs(60);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// etcd client with a per-request deadline.
/// The largest cluster snapshot (one prefix read) decoded: the cluster's keys are a few
/// KiB each, so this leaves room for thousands of members and still bounds memory.
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

pub struct EtcdDcs {
    client: Client,
    /// Per-request deadline in milliseconds; follows `retry_timeout` at run time.
    timeout_ms: AtomicU64,
    /// The open keep-alive stream of the lease we refresh, reused across refreshes so a
    /// renewal costs one round trip, not a new gRPC stream.
    keeper: Mutex<Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>>,
}

impl std::fmt::Debug for EtcdDcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDcs")
            .field("timeout", &self.timeout())
            .finish_non_exhaustive()
    }
}

impl EtcdDcs {
    /// Connects to any of `endpoints` (`host:port` or `http://host:port`). Requests go to
    /// whichever endpoint answers, so one dead etcd member does not stop the agent.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, DcsError> {
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let opts = ConnectOptions::new()
            // A ceiling only: each request is bounded by the (changeable) per-request
            // deadline below, which must be free to grow past the initial value.
            .with_timeout(timeout.max(CHANNEL_TIMEOUT_CEILING))
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout)
            .with_keep_alive_while_idle(true)
            // Never serve a request from a member cut off from the etcd leader: a stale
            // read could show us a leader key that has already expired.
            .with_require_leader(true);
        let client = bounded(timeout, || {
            Client::connect(urls.clone(), Some(opts.clone()))
        })
        .await?;
        Ok(Self {
            client,
            timeout_ms: AtomicU64::new(millis(timeout)),
            keeper: Mutex::new(None),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    async fn txn(&self, txn: Txn) -> Result<bool, DcsError> {
        let resp = bounded(self.timeout(), || {
            let mut c = self.client();
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
        Ok(resp.succeeded())
    }

    async fn keepalive_once(&self, lease: LeaseId) -> Result<Duration, DcsError> {
        let mut guard = self.keeper.lock().await;
        if guard.as_ref().is_none_or(|(id, _, _)| *id != lease.0) {
            let (keeper, stream) = bounded(self.timeout(), || {
                let mut c = self.client();
                async move { c.lease_keep_alive(lease.0).await }
            })
            .await?;
            *guard = Some((lease.0, keeper, stream));
        }
        let Some((_, keeper, stream)) = guard.as_mut() else {
            return Err(DcsError::Other("lease keeper vanished".into()));
        };
        let result = async {
            keeper.keep_alive().await.map_err(map_err)?;
            match stream.message().await.map_err(map_err)? {
                Some(resp) if resp.ttl() > 0 => Ok(Duration::from_secs(resp.ttl().unsigned_abs())),
                Some(_) => Err(DcsError::LeaseNotFound(lease.0)),
                None => Err(DcsError::Unavailable(
                    "lease keep-alive stream closed".into(),
                )),
            }
        };
        let out = match tokio::time::timeout(self.timeout(), result).await {
            Ok(r) => r,
            Err(_) => Err(DcsError::Timeout(self.timeout())),
        };
        if out.is_err() {
            // A failed stream may be half-broken; open a fresh one next time.
            *guard = None;
        }
        out
    }
}

/// One request with a deadline. A request refused at connect time (`Unavailable`) never
/// reached etcd, so it is retried at once, up to twice: the client's balancer may have
/// picked a dead member of a multi-member cluster, and the next pick is usually alive.
async fn bounded<T, F, Fut>(timeout: Duration, mut op: F) -> Result<T, DcsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match tokio::time::timeout_at(deadline, op()).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => return Err(DcsError::Timeout(timeout)),
        };
        match result {
            Err(DcsError::Unavailable(_)) if attempts < 3 => continue,
            other => return other,
        }
    }
}

fn map_err(e: etcd_client::Error) -> DcsError {
    match e {
        etcd_client::Error::TransportError(t) => {
            DcsError::Unavailable(with_sources(t.to_string(), &t))
        }
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                DcsError::Unavailable(with_sources(s.message().to_string(), &s))
            }
            _ if s.message().contains("requested lease not found") => DcsError::LeaseNotFound(0),
            _ => DcsError::Other(format!("{:?}: {}", s.code(), s.message())),
        },
        // Re-opening a keep-alive stream for an expired lease reports it this way.
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("not found") => {
            DcsError::LeaseNotFound(0)
        }
        other => DcsError::Other(other.to_string()),
    }
}

/// tonic's errors say only "tcp connect error"; the cause ("Connection refused (os
/// error 111)") is in their sources, and is what an operator needs to read.
fn with_sources(mut text: String, e: &dyn std::error::Error) -> String {
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn put_opts(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l.0))
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

#[async_trait]
impl Dcs for EtcdDcs {
    fn set_request_timeout(&self, timeout: Duration) {
        let new = millis(timeout);
        if self.timeout_ms.swap(new, Ordering::Relaxed) != new {
            tracing::info!(?timeout, "DCS request timeout changed");
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, DcsError> {
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = bounded(self.timeout(), || {
            let mut c = self.client();
            async move { c.lease_grant(secs, None).await }
        })
        .await?;
        Ok(LeaseId(resp.id()))
    }

    async fn keepalive(&self, lease: LeaseId) -> Result<Duration, DcsError> {
        self.keepalive_once(lease).await.map_err(|e| match e {
            DcsError::LeaseNotFound(_) => DcsError::LeaseNotFound(lease.0),
            other => other,
        })
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        let revoke = bounded(self.timeout(), || {
            let mut c = self.client();
            async move { c.lease_revoke(lease.0).await }
        });
        match revoke.await {
            Ok(_) | Err(DcsError::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Snapshot, DcsError> {
        let resp = bounded(self.timeout(), || {
            let c = self.client();
            let prefix = prefix.to_string();
            async move {
                // An explicit ceiling (gRPC's default is 4 MiB): a cluster's keys fit
                // many times over, and an oversized reply is a named error, not memory.
                c.kv_client()
                    .max_decoding_message_size(MAX_SNAPSHOT_BYTES)
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
        Ok(Snapshot {
            revision: resp.header().map_or(0, |h| h.revision()),
            kvs: resp.kvs().iter().map(convert).collect(),
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), DcsError> {
        bounded(self.timeout(), || {
            let mut c = self.client();
            let (key, value) = (key.to_string(), value.clone());
            async move { c.put(key, value, put_opts(lease)).await }
        })
        .await
        .map(|_| ())
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, put_opts(lease))]);
        self.txn(txn).await
    }

    async fn create_unless_changed(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        guard: (&str, i64),
    ) -> Result<bool, DcsError> {
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Equal, 0),
                Compare::mod_revision(guard.0, CompareOp::Equal, guard.1),
            ])
            .and_then([TxnOp::put(key, value, put_opts(lease))]);
        self.txn(txn).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        value: Vec<u8>,
        mod_revision: i64,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::put(key, value, put_opts(lease))]);
        self.txn(txn).await
    }

    async fn put_if_value(
        &self,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, expected.to_vec())])
            .and_then([TxnOp::put(key, value, put_opts(lease))]);
        self.txn(txn).await
    }

    async fn delete_if_value(&self, key: &str, expected: &[u8]) -> Result<bool, DcsError> {
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, expected.to_vec())])
            .and_then([TxnOp::delete(key, None)]);
        self.txn(txn).await
    }

    async fn delete(&self, key: &str) -> Result<(), DcsError> {
        bounded(self.timeout(), || {
            let mut c = self.client();
            let key = key.to_string();
            async move { c.delete(key, None).await }
        })
        .await
        .map(|_| ())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, DcsError> {
        check_prefix(prefix)?;
        let resp = bounded(self.timeout(), || {
            let mut c = self.client();
            let prefix = prefix.to_string();
            async move {
                c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
        Ok(u64::try_from(resp.deleted()).unwrap_or(0))
    }

    async fn watch(
        &self,
        prefix: &str,
        after_revision: i64,
    ) -> Result<mpsc::Receiver<WatchEvent>, DcsError> {
        let mut stream = bounded(self.timeout(), || {
            let mut c = self.client();
            let prefix = prefix.to_string();
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(after_revision + 1);
            async move { c.watch(prefix, Some(opts)).await }
        })
        .await?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(async move {
            let reason = loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            break format!(
                                "watch cancelled by etcd (compact revision {})",
                                resp.compact_revision()
                            );
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let kind = match ev.event_type() {
                                EventType::Put if kv.create_revision() == kv.mod_revision() => {
                                    WatchKind::Create
                                }
                                EventType::Put => WatchKind::Update,
                                EventType::Delete => WatchKind::Delete,
                            };
                            let event = WatchEvent::Change {
                                kind,
                                key: String::from_utf8_lossy(kv.key()).into_owned(),
                            };
                            // A full queue means the watcher is already due to re-read; dropping is safe.
                            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
                                return;
                            }
                        }
                    }
                    Ok(None) => break "watch stream ended".to_string(),
                    Err(e) => break format!("watch stream failed: {e}"),
                }
            };
            // Make sure the watcher learns the watch is gone, even if its queue is full.
            let _ = tx.send(WatchEvent::Broken(reason)).await;
        });
        Ok(rx)
    }
}
