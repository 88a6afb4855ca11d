//! The etcd v3 implementation of [`Dcs`]; the only module that imports `etcd-client`.

use crate::dcs::{
    check_prefix, Dcs, DcsError, KeyValue, LeaseId, Snapshot, WatchEvent, WatchKind, WATCH_QUEUE,
};
use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

mod security;
pub use security::{EtcdSecurity, EtcdTls, EtcdUser};

/// What etcd answers to `Authenticate` when its authentication is switched off.
const AUTH_NOT_ENABLED: &str = "authentication is not enabled";

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
    /// Whether the client authenticates as an etcd user (and so can re-authenticate).
    has_user: bool,
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
    /// Connects to any of `endpoints` (`host:port`, `http://host:port` or
    /// `https://host:port`) with `security`'s TLS and user. Requests go to whichever
    /// endpoint answers, so one dead etcd member does not stop the agent.
    pub async fn connect(
        endpoints: &[String],
        security: &EtcdSecurity,
        timeout: Duration,
    ) -> Result<Self, DcsError> {
        let urls = security::endpoint_urls(endpoints, security)?;
        let base = ConnectOptions::new()
            // A ceiling only: each request is bounded by the (changeable) per-request
            // deadline below, which must be free to grow past the initial value.
            .with_timeout(timeout.max(CHANNEL_TIMEOUT_CEILING))
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout)
            .with_keep_alive_while_idle(true)
            // Never serve a request from a member cut off from the etcd leader: a stale
            // read could show us a leader key that has already expired.
            .with_require_leader(true);
        let opts = apply_security(base.clone(), &urls, security)?;
        let connected = bounded(timeout, || {
            Client::connect(urls.clone(), Some(opts.clone()))
        })
        .await;
        let (client, has_user) = match connected {
            Ok(c) => (c, security.user.is_some()),
            // Patroni carries on when etcd has authentication switched off; so do we
            // (TLS, if configured, still applies: only the user is dropped).
            Err(DcsError::Other(m)) if m.contains(AUTH_NOT_ENABLED) => {
                tracing::warn!(
                    "etcd3.username is set but etcd has authentication disabled; \
                     connecting without a user"
                );
                let no_user = EtcdSecurity {
                    user: None,
                    ..security.clone()
                };
                let opts = apply_security(base, &urls, &no_user)?;
                let c = bounded(timeout, || {
                    Client::connect(urls.clone(), Some(opts.clone()))
                })
                .await?;
                (c, false)
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            client,
            has_user,
            timeout_ms: AtomicU64::new(millis(timeout)),
            keeper: Mutex::new(None),
        })
    }

    /// One request with a deadline and the retries of [`classify`]: a request refused
    /// at connect time is retried at once (up to twice), and a refused auth token gets
    /// one explicit re-authentication, all within the one deadline.
    async fn call<T, F, Fut>(&self, mut op: F) -> Result<T, DcsError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let timeout = self.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempts = 0;
        let mut reauthenticated = false;
        loop {
            attempts += 1;
            let err = match tokio::time::timeout_at(deadline, op(self.client())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => return Err(DcsError::Timeout(timeout)),
            };
            match classify(&err) {
                Fault::Unreached if attempts < 3 => {}
                Fault::StaleToken if self.has_user && !reauthenticated => {
                    reauthenticated = true;
                    tracing::info!(reason = %err, "re-authenticating to etcd");
                    match tokio::time::timeout_at(deadline, self.client.refresh_token()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(map_err(e)),
                        Err(_) => return Err(DcsError::Timeout(timeout)),
                    }
                }
                _ => return Err(map_err(err)),
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    async fn txn(&self, txn: Txn) -> Result<bool, DcsError> {
        let resp = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }

    async fn keepalive_once(&self, lease: LeaseId) -> Result<Duration, DcsError> {
        let mut guard = self.keeper.lock().await;
        if guard.as_ref().is_none_or(|(id, _, _)| *id != lease.0) {
            let (keeper, stream) = self
                .call(|mut c| async move { c.lease_keep_alive(lease.0).await })
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

/// Adds TLS and the user to `opts`. An https endpoint without TLS settings gets the
/// system trust store, never an unchecked connection.
fn apply_security(
    mut opts: ConnectOptions,
    urls: &[String],
    security: &EtcdSecurity,
) -> Result<ConnectOptions, DcsError> {
    if urls.iter().any(|u| u.starts_with("https://")) {
        let pem = security::load(&security.tls.clone().unwrap_or_default())?;
        let mut tls = TlsOptions::new();
        tls = match pem.ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = pem.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(tls);
    }
    if let Some(user) = &security.user {
        opts = opts
            .with_user(user.username.clone(), user.password.clone())
            // etcd's simple tokens expire (5 minutes idle by default, and on an etcd
            // restart): the client re-authenticates once when a call is refused for it.
            .with_auto_token_refresh(true);
    }
    Ok(opts)
}

/// The connection itself, with a deadline: a refused connection (`Unavailable`) never
/// reached etcd, so it is retried at once, up to twice — the client's balancer may have
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
        let err = match tokio::time::timeout_at(deadline, op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => return Err(DcsError::Timeout(timeout)),
        };
        match classify(&err) {
            Fault::Unreached if attempts < 3 => {}
            _ => return Err(map_err(err)),
        }
    }
}

/// What a failed request means for retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Never reached etcd (refused connection, no leader): worth another try at once.
    Unreached,
    /// etcd refused our auth token: it expired (simple tokens live 5 minutes without
    /// use, so an agent cut off longer has a dead one), etcd restarted, or the auth
    /// store changed. Authenticating again fixes it.
    StaleToken,
    /// Anything else: reported as it is.
    Final,
}

/// etcd's message for an expired or unknown token, and for one issued before the
/// auth store changed (users, roles, permissions).
const INVALID_TOKEN: &str = "invalid auth token";
const OLD_AUTH_REVISION: &str = "revision of auth store is old";
/// etcd's answer to a request without a token when authentication is on.
const USER_EMPTY: &str = "user name is empty";

fn classify(e: &etcd_client::Error) -> Fault {
    match e {
        etcd_client::Error::TransportError(_) => Fault::Unreached,
        etcd_client::Error::GRpcStatus(s) => classify_status(s.code(), s.message()),
        _ => Fault::Final,
    }
}

fn classify_status(code: tonic::Code, message: &str) -> Fault {
    match code {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Fault::Unreached,
        tonic::Code::Unauthenticated => Fault::StaleToken,
        _ if [INVALID_TOKEN, OLD_AUTH_REVISION, USER_EMPTY]
            .iter()
            .any(|m| message.contains(m)) =>
        {
            Fault::StaleToken
        }
        _ => Fault::Final,
    }
}

fn map_err(e: etcd_client::Error) -> DcsError {
    match e {
        etcd_client::Error::TransportError(t) => {
            DcsError::Unavailable(with_hint(with_sources(t.to_string(), &t)))
        }
        etcd_client::Error::GRpcStatus(s) => status_error(s.code(), s.message(), &s),
        // Re-opening a keep-alive stream for an expired lease reports it this way.
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("not found") => {
            DcsError::LeaseNotFound(0)
        }
        other => DcsError::Other(other.to_string()),
    }
}

fn status_error(code: tonic::Code, message: &str, source: &dyn std::error::Error) -> DcsError {
    match code {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            DcsError::Unavailable(with_hint(with_sources(message.to_string(), source)))
        }
        _ if message.contains("requested lease not found") => DcsError::LeaseNotFound(0),
        // The operator must fix etcd's roles; say which permission is missing.
        tonic::Code::PermissionDenied => DcsError::Other(format!(
            "{message}: the etcd user (etcd3.username, or the client certificate's CN) \
             lacks read/write permission on the cluster's keys; grant its role readwrite \
             on the prefix /<namespace>/<scope>/"
        )),
        _ if message.contains(USER_EMPTY) => DcsError::Other(format!(
            "{message}: etcd has authentication on; set etcd3.username and etcd3.password \
             (or present a client certificate whose CN is an etcd user)"
        )),
        _ if message.contains("authentication failed") => DcsError::Other(format!(
            "{message}: check etcd3.username and etcd3.password"
        )),
        _ if classify_status(code, message) == Fault::StaleToken => DcsError::Unavailable(format!(
            "{message}: etcd refused the auth token (expired or etcd restarted)"
        )),
        // A failed handshake surfaces as `Unknown: transport error`; the reason (a
        // certificate etcd refused) is in the sources.
        _ => DcsError::Other(with_hint(format!(
            "{code:?}: {}",
            with_sources(message.to_string(), source)
        ))),
    }
}

/// A TLS failure reads as a transport error; name the settings that decide it.
fn with_hint(text: String) -> String {
    if text.contains("certificate") || text.contains("Certificate") {
        format!("{text} (TLS to etcd: check etcd3.cacert, etcd3.cert and etcd3.key)")
    } else {
        text
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
        let resp = self
            .call(|mut c| async move { c.lease_grant(secs, None).await })
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
        let revoke = self.call(|mut c| async move { c.lease_revoke(lease.0).await });
        match revoke.await {
            Ok(_) | Err(DcsError::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Snapshot, DcsError> {
        let resp = self
            .call(|c| {
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
        self.call(|mut c| {
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
        self.call(|mut c| {
            let key = key.to_string();
            async move { c.delete(key, None).await }
        })
        .await
        .map(|_| ())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, DcsError> {
        check_prefix(prefix)?;
        let resp = self
            .call(|mut c| {
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
        let mut stream = self
            .call(|mut c| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn status(code: Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(Status::new(code, msg))
    }

    #[test]
    fn refused_tokens_are_re_authenticated() {
        // What etcd 3.4 answers once a simple token expired or etcd restarted.
        assert_eq!(
            classify(&status(
                Code::Unauthenticated,
                "etcdserver: invalid auth token"
            )),
            Fault::StaleToken
        );
        // The Lock/Election services lose the code but keep the message.
        assert_eq!(
            classify(&status(Code::Unknown, "etcdserver: invalid auth token")),
            Fault::StaleToken
        );
        assert_eq!(
            classify(&status(
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old"
            )),
            Fault::StaleToken
        );
        assert_eq!(
            classify(&status(
                Code::InvalidArgument,
                "etcdserver: user name is empty"
            )),
            Fault::StaleToken
        );
    }

    #[test]
    fn other_failures_are_not_retried_as_auth() {
        assert_eq!(
            classify(&status(Code::Unavailable, "etcdserver: no leader")),
            Fault::Unreached
        );
        assert_eq!(
            classify(&status(
                Code::PermissionDenied,
                "etcdserver: permission denied"
            )),
            Fault::Final
        );
        assert_eq!(
            classify(&status(
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password"
            )),
            Fault::Final
        );
        assert_eq!(
            classify(&status(
                Code::FailedPrecondition,
                "etcdserver: key not found"
            )),
            Fault::Final
        );
    }

    #[test]
    fn errors_name_what_to_fix() {
        let e = map_err(status(
            Code::PermissionDenied,
            "etcdserver: permission denied",
        ));
        let text = e.to_string();
        assert!(matches!(e, DcsError::Other(_)), "{e:?}");
        assert!(
            text.contains("permission denied") && text.contains("readwrite"),
            "{text}"
        );
        let e = map_err(status(
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ));
        assert!(e.to_string().contains("etcd3.password"), "{e}");
        let e = map_err(status(
            Code::InvalidArgument,
            "etcdserver: user name is empty",
        ));
        assert!(e.to_string().contains("etcd3.username"), "{e}");
        let e = map_err(status(
            Code::Unauthenticated,
            "etcdserver: invalid auth token",
        ));
        assert!(matches!(e, DcsError::Unavailable(_)), "{e:?}");
        assert!(
            with_hint("invalid peer certificate: UnknownIssuer".into()).contains("etcd3.cacert")
        );
        assert_eq!(with_hint("connection refused".into()), "connection refused");
    }

    #[tokio::test]
    async fn an_http_endpoint_beside_tls_settings_is_refused() {
        let security = EtcdSecurity {
            tls: Some(EtcdTls::default()),
            user: None,
        };
        let e = EtcdDcs::connect(
            &["http://127.0.0.1:1".to_string()],
            &security,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
    }
}
