//! The `Dcs` trait: the handful of etcd operations the agent needs.
//!
//! Every method is bounded: implementations must return [`DcsError::Timeout`] rather
//! than wait longer than the timeout they were built with.

use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::mpsc;

/// An etcd lease id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

/// One key with the revisions Patroni's protocol relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was created; the leader key's is the fencing token.
    pub create_revision: i64,
    /// Revision of the last write; compare-and-swap compares against it.
    pub mod_revision: i64,
    /// Lease the key is bound to, 0 for none.
    pub lease: i64,
}

impl KeyValue {
    pub fn value_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.value)
    }
}

/// A consistent read of every key under a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Store revision the read was served at.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// The key was created.
    Create,
    /// An existing key was overwritten (e.g. the leader re-asserting its key).
    Update,
    Delete,
}

/// A change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Change {
        kind: WatchKind,
        key: String,
    },
    /// The watch ended (connection lost, compaction); the watcher should re-read and re-watch.
    Broken(String),
}

/// Capacity of a watch's event queue. A watcher that falls behind only needs to know
/// "something changed", so events beyond this are dropped, never buffered unboundedly.
pub const WATCH_QUEUE: usize = 64;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DcsError {
    #[error("DCS request timed out after {0:?}")]
    Timeout(Duration),
    #[error("DCS unavailable: {0}")]
    Unavailable(String),
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(i64),
    #[error("DCS error: {0}")]
    Other(String),
}

/// Guard of [`Dcs::delete_prefix`]: an empty prefix (or `/`) names the whole store.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), DcsError> {
    if prefix.trim_matches('/').is_empty() {
        return Err(DcsError::Other(format!(
            "refusing to delete the prefix {prefix:?}: it covers the whole store"
        )));
    }
    Ok(())
}

#[async_trait]
pub trait Dcs: Send + Sync + std::fmt::Debug {
    /// Changes the deadline of each later request (the agent follows `retry_timeout`
    /// from the dynamic config). Implementations without deadlines ignore it.
    fn set_request_timeout(&self, _timeout: Duration) {}
    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1).
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, DcsError>;
    /// Refreshes a lease; returns the TTL the server granted again.
    async fn keepalive(&self, lease: LeaseId) -> Result<Duration, DcsError>;
    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError>;
    /// Linearizable read of all keys under `prefix`.
    async fn get_prefix(&self, prefix: &str) -> Result<Snapshot, DcsError>;
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), DcsError>;
    /// Writes only if the key does not exist (`create_revision == 0`). Returns whether it wrote.
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError>;
    /// [`Dcs::create`], and only if `guard`'s `mod_revision` still equals the one given
    /// (0: absent). The leader race uses it with `/history`, so that a racer whose view
    /// went stale (another member promoted meanwhile) cannot take the key.
    async fn create_unless_changed(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        guard: (&str, i64),
    ) -> Result<bool, DcsError>;
    /// Writes only if the key's `mod_revision` still equals `mod_revision` (0: key absent).
    async fn compare_and_swap(
        &self,
        key: &str,
        value: Vec<u8>,
        mod_revision: i64,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError>;
    /// Writes only if the key currently holds `expected` (the leader's renewal check).
    async fn put_if_value(
        &self,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError>;
    /// Deletes only if the key currently holds `expected` (leader release).
    async fn delete_if_value(&self, key: &str, expected: &[u8]) -> Result<bool, DcsError>;
    async fn delete(&self, key: &str) -> Result<(), DcsError>;
    /// Deletes every key under `prefix` in one request and returns how many were
    /// deleted (`wardenctl remove`). An empty prefix is refused: it would wipe the
    /// whole store, never what a caller holding a cluster prefix means.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, DcsError>;
    /// Watches `prefix` for changes after `after_revision`. Events arrive on a bounded queue.
    async fn watch(
        &self,
        prefix: &str,
        after_revision: i64,
    ) -> Result<mpsc::Receiver<WatchEvent>, DcsError>;
}
