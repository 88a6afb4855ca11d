//! An in-memory [`Dcs`] with etcd's semantics (revisions, leases, transactions, watches),
//! for unit tests and simulation of the agent's logic. Lease expiry follows
//! `tokio::time::Instant`, so tests with a paused tokio clock control it exactly.

use crate::dcs::{
    check_prefix, Dcs, DcsError, KeyValue, LeaseId, Snapshot, WatchEvent, WatchKind, WATCH_QUEUE,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct State {
    revision: i64,
    next_lease: i64,
    kvs: BTreeMap<String, KeyValue>,
    leases: HashMap<i64, (Duration, Instant)>,
    watchers: Vec<(String, mpsc::Sender<WatchEvent>)>,
    /// While set, every call fails as if etcd were unreachable.
    unreachable: bool,
}

/// Shared handle; clones see the same store.
#[derive(Debug, Clone, Default)]
pub struct MemoryDcs {
    state: Arc<Mutex<State>>,
}

impl MemoryDcs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates losing (or regaining) the connection to etcd.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a test assertion; the state
        // is still consistent, so keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Locks the store after expiring due leases, failing if it is "unreachable".
    fn live(&self) -> Result<MutexGuard<'_, State>, DcsError> {
        let mut st = self.lock();
        if st.unreachable {
            return Err(DcsError::Unavailable("simulated partition".into()));
        }
        st.expire(Instant::now());
        Ok(st)
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.drop_lease(id);
        }
    }

    fn drop_lease(&mut self, id: i64) {
        self.leases.remove(&id);
        let keys: Vec<String> = self
            .kvs
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }

    fn check_lease(&self, lease: Option<LeaseId>) -> Result<i64, DcsError> {
        match lease {
            None => Ok(0),
            Some(l) if self.leases.contains_key(&l.0) => Ok(l.0),
            Some(l) => Err(DcsError::LeaseNotFound(l.0)),
        }
    }

    fn write(&mut self, key: &str, value: Vec<u8>, lease: i64) {
        self.revision += 1;
        let rev = self.revision;
        let existed = self.kvs.contains_key(key);
        let create_revision = self.kvs.get(key).map_or(rev, |kv| kv.create_revision);
        self.kvs.insert(
            key.to_string(),
            KeyValue {
                key: key.to_string(),
                value,
                create_revision,
                mod_revision: rev,
                lease,
            },
        );
        self.notify(
            key,
            if existed {
                WatchKind::Update
            } else {
                WatchKind::Create
            },
        );
    }

    fn remove(&mut self, key: &str) -> bool {
        if self.kvs.remove(key).is_some() {
            self.revision += 1;
            self.notify(key, WatchKind::Delete);
            true
        } else {
            false
        }
    }

    fn notify(&mut self, key: &str, kind: WatchKind) {
        self.watchers.retain(|(prefix, tx)| {
            if !key.starts_with(prefix.as_str()) {
                return !tx.is_closed();
            }
            !matches!(
                tx.try_send(WatchEvent::Change {
                    kind,
                    key: key.to_string()
                }),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}

#[async_trait]
impl Dcs for MemoryDcs {
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, DcsError> {
        let mut st = self.live()?;
        st.next_lease += 1;
        let id = st.next_lease;
        let ttl = ttl.max(Duration::from_secs(1));
        st.leases.insert(id, (ttl, Instant::now() + ttl));
        Ok(LeaseId(id))
    }

    async fn keepalive(&self, lease: LeaseId) -> Result<Duration, DcsError> {
        let mut st = self.live()?;
        let entry = st
            .leases
            .get_mut(&lease.0)
            .ok_or(DcsError::LeaseNotFound(lease.0))?;
        entry.1 = Instant::now() + entry.0;
        Ok(entry.0)
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.live()?.drop_lease(lease.0);
        Ok(())
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Snapshot, DcsError> {
        let st = self.live()?;
        Ok(Snapshot {
            revision: st.revision,
            kvs: st
                .kvs
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone())
                .collect(),
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), DcsError> {
        let mut st = self.live()?;
        let lease = st.check_lease(lease)?;
        st.write(key, value, lease);
        Ok(())
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let mut st = self.live()?;
        let lease = st.check_lease(lease)?;
        if st.kvs.contains_key(key) {
            return Ok(false);
        }
        st.write(key, value, lease);
        Ok(true)
    }

    async fn create_unless_changed(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        guard: (&str, i64),
    ) -> Result<bool, DcsError> {
        let mut st = self.live()?;
        let lease = st.check_lease(lease)?;
        let guard_rev = st.kvs.get(guard.0).map_or(0, |kv| kv.mod_revision);
        if st.kvs.contains_key(key) || guard_rev != guard.1 {
            return Ok(false);
        }
        st.write(key, value, lease);
        Ok(true)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        value: Vec<u8>,
        mod_revision: i64,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let mut st = self.live()?;
        let lease = st.check_lease(lease)?;
        if st.kvs.get(key).map_or(0, |kv| kv.mod_revision) != mod_revision {
            return Ok(false);
        }
        st.write(key, value, lease);
        Ok(true)
    }

    async fn put_if_value(
        &self,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let mut st = self.live()?;
        let lease = st.check_lease(lease)?;
        if st.kvs.get(key).is_none_or(|kv| kv.value != expected) {
            return Ok(false);
        }
        st.write(key, value, lease);
        Ok(true)
    }

    async fn delete_if_value(&self, key: &str, expected: &[u8]) -> Result<bool, DcsError> {
        let mut st = self.live()?;
        if st.kvs.get(key).is_none_or(|kv| kv.value != expected) {
            return Ok(false);
        }
        Ok(st.remove(key))
    }

    async fn delete(&self, key: &str) -> Result<(), DcsError> {
        self.live()?.remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, DcsError> {
        check_prefix(prefix)?;
        let mut st = self.live()?;
        let keys: Vec<String> = st
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        // One request, one revision, as etcd does for a ranged delete.
        st.revision += 1;
        for k in &keys {
            st.kvs.remove(k);
            st.notify(k, WatchKind::Delete);
        }
        Ok(keys.len() as u64)
    }

    async fn watch(
        &self,
        prefix: &str,
        _after_revision: i64,
    ) -> Result<mpsc::Receiver<WatchEvent>, DcsError> {
        let mut st = self.live()?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        st.watchers.push((prefix.to_string(), tx));
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_unless_changed_needs_the_key_absent_and_the_guard_unchanged() {
        let dcs = MemoryDcs::new();
        let guard = "/s/c/history";
        // Absent guard: revision 0.
        assert!(!dcs
            .create_unless_changed("/s/c/leader", b"n1".to_vec(), None, (guard, 7))
            .await
            .unwrap());
        dcs.put(guard, b"[]".to_vec(), None).await.unwrap();
        let rev = dcs.get_prefix(guard).await.unwrap().kvs[0].mod_revision;
        assert!(!dcs
            .create_unless_changed("/s/c/leader", b"n1".to_vec(), None, (guard, 0))
            .await
            .unwrap());
        assert!(dcs
            .create_unless_changed("/s/c/leader", b"n1".to_vec(), None, (guard, rev))
            .await
            .unwrap());
        assert!(!dcs
            .create_unless_changed("/s/c/leader", b"n2".to_vec(), None, (guard, rev))
            .await
            .unwrap());
        let kvs = dcs.get_prefix("/s/c/leader").await.unwrap().kvs;
        assert_eq!(kvs[0].value, b"n1");
    }

    #[tokio::test(start_paused = true)]
    async fn leased_keys_vanish_when_the_lease_expires() {
        let dcs = MemoryDcs::new();
        let lease = dcs.grant_lease(Duration::from_secs(10)).await.unwrap();
        assert!(dcs
            .create("/s/c/leader", b"n1".to_vec(), Some(lease))
            .await
            .unwrap());
        assert!(!dcs
            .create("/s/c/leader", b"n2".to_vec(), None)
            .await
            .unwrap());
        tokio::time::advance(Duration::from_secs(9)).await;
        dcs.keepalive(lease).await.unwrap();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(dcs.get_prefix("/s/c/").await.unwrap().kvs.len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(dcs.get_prefix("/s/c/").await.unwrap().kvs.is_empty());
        assert_eq!(
            dcs.keepalive(lease).await,
            Err(DcsError::LeaseNotFound(lease.0))
        );
    }

    #[tokio::test]
    async fn cas_and_value_guards() {
        let dcs = MemoryDcs::new();
        assert!(dcs
            .compare_and_swap("/k", b"a".to_vec(), 0, None)
            .await
            .unwrap());
        let rev = dcs.get_prefix("/k").await.unwrap().kvs[0].mod_revision;
        assert!(!dcs
            .compare_and_swap("/k", b"b".to_vec(), rev - 1, None)
            .await
            .unwrap());
        assert!(dcs
            .compare_and_swap("/k", b"b".to_vec(), rev, None)
            .await
            .unwrap());
        assert!(!dcs.delete_if_value("/k", b"a").await.unwrap());
        assert!(dcs
            .put_if_value("/k", b"b", b"c".to_vec(), None)
            .await
            .unwrap());
        assert!(dcs.delete_if_value("/k", b"c").await.unwrap());
        assert!(dcs.get_prefix("/k").await.unwrap().kvs.is_empty());
    }

    #[tokio::test]
    async fn watch_sees_changes_under_prefix_only() {
        let dcs = MemoryDcs::new();
        let mut rx = dcs.watch("/a/", 0).await.unwrap();
        dcs.put("/b/x", vec![], None).await.unwrap();
        dcs.put("/a/x", vec![], None).await.unwrap();
        dcs.delete("/a/x").await.unwrap();
        assert_eq!(
            rx.recv().await,
            Some(WatchEvent::Change {
                kind: WatchKind::Create,
                key: "/a/x".into()
            })
        );
        assert_eq!(
            rx.recv().await,
            Some(WatchEvent::Change {
                kind: WatchKind::Delete,
                key: "/a/x".into()
            })
        );
    }

    #[tokio::test]
    async fn delete_prefix_removes_only_that_prefix_in_one_revision() {
        let dcs = MemoryDcs::new();
        for k in [
            "/service/a/leader",
            "/service/a/members/n1",
            "/service/ab/leader",
            "/x",
        ] {
            dcs.put(k, b"v".to_vec(), None).await.unwrap();
        }
        let before = dcs.get_prefix("/").await.unwrap().revision;
        let mut rx = dcs.watch("/service/", 0).await.unwrap();
        assert_eq!(dcs.delete_prefix("/service/a/").await.unwrap(), 2);
        let snap = dcs.get_prefix("/").await.unwrap();
        let left: Vec<&str> = snap.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(left, vec!["/service/ab/leader", "/x"]);
        assert_eq!(snap.revision, before + 1);
        for _ in 0..2 {
            assert!(matches!(
                rx.recv().await,
                Some(WatchEvent::Change {
                    kind: WatchKind::Delete,
                    ..
                })
            ));
        }
        assert_eq!(dcs.delete_prefix("/service/a/").await.unwrap(), 0);
        assert!(matches!(
            dcs.delete_prefix("").await,
            Err(DcsError::Other(_))
        ));
        assert_eq!(dcs.get_prefix("/").await.unwrap().kvs.len(), 2);
    }

    #[tokio::test]
    async fn unreachable_store_fails_every_call() {
        let dcs = MemoryDcs::new();
        dcs.set_unreachable(true);
        assert!(matches!(
            dcs.get_prefix("/").await,
            Err(DcsError::Unavailable(_))
        ));
        dcs.set_unreachable(false);
        assert!(dcs.get_prefix("/").await.is_ok());
    }
}
