//! The etcd model: revisions, leases with a TTL, create-only and guarded
//! transactions, keys that vanish with their lease, and the changes a watch reports.

use super::*;
use warden_consensus::{DcsError, LeaseId, Snapshot, WatchKind};

impl Store {
    pub(crate) fn new() -> Self {
        let keys = Keys::new("/service/", "sim");
        // The keys whose changes the loop acts on (`run.rs`: `wait_for_wakeup`); the
        // others it reads and ignores, so they are not sent at all.
        let relevant = vec![
            keys.leader(),
            keys.failover(),
            keys.config(),
            keys.initialize(),
            keys.sync(),
        ];
        Self {
            keys,
            revision: 1,
            next_lease: 0,
            leases: BTreeMap::new(),
            kvs: BTreeMap::new(),
            relevant,
            changes: Vec::new(),
            watchers: Vec::new(),
        }
    }

    /// etcd revokes an expired lease and deletes its keys.
    pub(crate) fn expire(&mut self, now: u64) {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.revoke(id);
        }
    }

    pub(crate) fn revoke(&mut self, id: i64) {
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

    fn touched(&mut self, key: &str, kind: WatchKind) {
        if self.relevant.iter().any(|w| w == key) {
            self.changes.push(WatchEvent::Change {
                kind,
                key: key.to_string(),
            });
        }
    }

    fn write(&mut self, key: &str, value: Vec<u8>, lease: i64) {
        self.revision += 1;
        let rev = self.revision;
        let existing = self.kvs.get(key).map(|kv| kv.create_revision);
        self.kvs.insert(
            key.to_string(),
            KeyValue {
                key: key.to_string(),
                value,
                create_revision: existing.unwrap_or(rev),
                mod_revision: rev,
                lease,
            },
        );
        let kind = if existing.is_some() {
            WatchKind::Update
        } else {
            WatchKind::Create
        };
        self.touched(key, kind);
    }

    pub(crate) fn remove(&mut self, key: &str) -> bool {
        if self.kvs.remove(key).is_none() {
            return false;
        }
        self.revision += 1;
        self.touched(key, WatchKind::Delete);
        true
    }

    fn lease_id(&self, lease: Option<LeaseId>) -> Result<i64, DcsError> {
        match lease {
            None => Ok(0),
            Some(id) if self.leases.contains_key(&id.0) => Ok(id.0),
            Some(id) => Err(DcsError::LeaseNotFound(id.0)),
        }
    }

    pub(crate) fn grant(&mut self, now: u64, ttl: Duration) -> LeaseId {
        self.next_lease += 1;
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let ttl_ms = secs.max(1) * 1000;
        self.leases.insert(self.next_lease, (ttl_ms, now + ttl_ms));
        LeaseId(self.next_lease)
    }

    pub(crate) fn keepalive(&mut self, now: u64, id: LeaseId) -> Result<Duration, DcsError> {
        let (ttl, exp) = self
            .leases
            .get_mut(&id.0)
            .ok_or(DcsError::LeaseNotFound(id.0))?;
        *exp = now + *ttl;
        Ok(Duration::from_millis(*ttl))
    }

    pub(crate) fn get_prefix(&self, prefix: &str) -> Snapshot {
        Snapshot {
            revision: self.revision,
            kvs: self
                .kvs
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    pub(crate) fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<(), DcsError> {
        let lease = self.lease_id(lease)?;
        self.write(key, value, lease);
        Ok(())
    }

    /// `create_revision == 0` transaction, also guarded by another key's
    /// `mod_revision` when `guard` is given.
    pub(crate) fn create(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        guard: Option<(&str, i64)>,
    ) -> Result<bool, DcsError> {
        let lease = self.lease_id(lease)?;
        let guard_ok =
            guard.is_none_or(|(g, rev)| self.kvs.get(g).map_or(0, |kv| kv.mod_revision) == rev);
        if self.kvs.contains_key(key) || !guard_ok {
            return Ok(false);
        }
        self.write(key, value, lease);
        Ok(true)
    }

    pub(crate) fn compare_and_swap(
        &mut self,
        key: &str,
        value: Vec<u8>,
        mod_revision: i64,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let lease = self.lease_id(lease)?;
        if self.kvs.get(key).map_or(0, |kv| kv.mod_revision) != mod_revision {
            return Ok(false);
        }
        self.write(key, value, lease);
        Ok(true)
    }

    pub(crate) fn put_if_value(
        &mut self,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        let lease = self.lease_id(lease)?;
        if self.kvs.get(key).is_none_or(|kv| kv.value != expected) {
            return Ok(false);
        }
        self.write(key, value, lease);
        Ok(true)
    }

    pub(crate) fn delete_if_value(&mut self, key: &str, expected: &[u8]) -> bool {
        if self.kvs.get(key).is_none_or(|kv| kv.value != expected) {
            return false;
        }
        self.remove(key)
    }

    pub(crate) fn delete_prefix(&mut self, prefix: &str) -> u64 {
        let keys: Vec<String> = self
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.remove(k);
        }
        keys.len() as u64
    }

    /// Who holds the leader key and until when its lease runs, as the server sees it.
    pub(crate) fn leader_at(&self, now: u64) -> Option<(&str, u64)> {
        let kv = self.kvs.get(&self.keys.leader())?;
        let (_, exp) = *self.leases.get(&kv.lease)?;
        (exp > now).then(|| (std::str::from_utf8(&kv.value).unwrap_or("?"), exp))
    }
}
