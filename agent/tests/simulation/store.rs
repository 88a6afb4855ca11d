//! The etcd model: revisions, leases with a TTL, create-only and guarded
//! transactions, keys that vanish with their lease, the watch, and the cached
//! parse of the key space into a `Cluster`.

use super::*;

impl Store {
    pub(crate) fn new() -> Self {
        let keys = Keys::new("/service/", "sim");
        let watched = vec![
            keys.leader(),
            keys.failover(),
            keys.config(),
            keys.initialize(),
            keys.sync(),
        ];
        Self {
            leader_key: keys.leader(),
            keys,
            revision: 1,
            next_lease: 0,
            leases: BTreeMap::new(),
            kvs: BTreeMap::new(),
            watched,
            watched_changed: false,
            parsed: BTreeMap::new(),
            cache: None,
            reads: 0,
        }
    }

    /// etcd revokes an expired lease and deletes its keys.
    pub(crate) fn expire(&mut self, now: u64) {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, exp)| **exp <= now)
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

    pub(crate) fn touched(&mut self, key: &str) {
        if self.watched.iter().any(|w| w == key) {
            self.watched_changed = true;
        }
    }

    pub(crate) fn write(&mut self, key: &str, value: Vec<u8>, lease: i64) {
        self.revision += 1;
        let rev = self.revision;
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
        self.touched(key);
    }

    pub(crate) fn remove(&mut self, key: &str) -> bool {
        if self.kvs.remove(key).is_none() {
            return false;
        }
        self.revision += 1;
        self.touched(key);
        true
    }

    pub(crate) fn lease_id(&self, lease: Option<i64>) -> Result<i64, DcsError> {
        match lease {
            None => Ok(0),
            Some(id) if self.leases.contains_key(&id) => Ok(id),
            Some(_) => Err(DcsError::LeaseNotFound),
        }
    }

    pub(crate) fn grant(&mut self, now: u64) -> i64 {
        self.next_lease += 1;
        let ttl_ms = TTL.as_millis() as u64;
        self.leases.insert(self.next_lease, now + ttl_ms);
        self.next_lease
    }

    pub(crate) fn keepalive(&mut self, now: u64, id: i64) -> Result<(), DcsError> {
        let ttl_ms = TTL.as_millis() as u64;
        let exp = self.leases.get_mut(&id).ok_or(DcsError::LeaseNotFound)?;
        *exp = now + ttl_ms;
        Ok(())
    }

    pub(crate) fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<(), DcsError> {
        let lease = self.lease_id(lease)?;
        self.write(key, value, lease);
        Ok(())
    }

    /// `create_revision == 0` and `mod_revision(guard) == rev` transaction.
    pub(crate) fn create_unless_changed(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
        guard: (&str, i64),
    ) -> Result<bool, DcsError> {
        if self.kvs.get(guard.0).map_or(0, |kv| kv.mod_revision) != guard.1 {
            self.lease_id(lease)?;
            return Ok(false);
        }
        self.create(key, value, lease)
    }

    /// `create_revision == 0` transaction.
    pub(crate) fn create(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<bool, DcsError> {
        let lease = self.lease_id(lease)?;
        if self.kvs.contains_key(key) {
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
        lease: Option<i64>,
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

    /// A prefix read, parsed by the agent's own code (`Cluster::from_snapshot`).
    ///
    /// Each key is parsed on its own and the views are merged, so an unchanged key is
    /// not parsed again; every 16th read also parses the whole snapshot at once and
    /// checks that both agree.
    pub(crate) fn cluster(&mut self) -> Cluster {
        if let Some((rev, c)) = &self.cache {
            if *rev == self.revision {
                return c.clone();
            }
        }
        let mut c = Cluster {
            revision: self.revision,
            ..Cluster::default()
        };
        for kv in self.kvs.values() {
            let stale = self
                .parsed
                .get(&kv.key)
                .is_none_or(|(rev, _)| *rev != kv.mod_revision);
            if stale {
                let one = Snapshot {
                    revision: self.revision,
                    kvs: vec![kv.clone()],
                };
                let part = Cluster::from_snapshot(&self.keys, &one);
                self.parsed.insert(kv.key.clone(), (kv.mod_revision, part));
            }
            merge(&mut c, &self.parsed[&kv.key].1);
        }
        self.parsed.retain(|k, _| self.kvs.contains_key(k));
        assert!(
            c.errors.is_empty(),
            "the model wrote a value the agent cannot read: {:?}",
            c.errors
        );
        self.reads += 1;
        if self.reads.is_multiple_of(16) {
            let snap = Snapshot {
                revision: self.revision,
                kvs: self.kvs.values().cloned().collect(),
            };
            assert_eq!(
                c,
                Cluster::from_snapshot(&self.keys, &snap),
                "per-key parsing diverged"
            );
        }
        self.cache = Some((self.revision, c.clone()));
        c
    }

    /// Who holds the leader key and until when its lease runs, as the server sees it.
    pub(crate) fn leader_at(&self, now: u64) -> Option<(&str, u64)> {
        let kv = self.kvs.get(&self.leader_key)?;
        let exp = *self.leases.get(&kv.lease)?;
        (exp > now).then(|| (std::str::from_utf8(&kv.value).unwrap_or("?"), exp))
    }
}

/// Adds the one key parsed into `part` to the view `into`.
pub(crate) fn merge(into: &mut Cluster, part: &Cluster) {
    if part.initialize.is_some() {
        into.initialize.clone_from(&part.initialize);
    }
    if part.config.is_some() {
        into.config.clone_from(&part.config);
    }
    if part.leader.is_some() {
        into.leader.clone_from(&part.leader);
    }
    for (name, m) in &part.members {
        into.members.insert(name.clone(), m.clone());
    }
    if part.failover.is_some() {
        into.failover.clone_from(&part.failover);
    }
    if part.sync.is_some() {
        into.sync.clone_from(&part.sync);
    }
    if part.history_revision != 0 {
        into.history.clone_from(&part.history);
        into.history_revision = part.history_revision;
    }
    if part.status.is_some() {
        into.status.clone_from(&part.status);
    }
    if part.failsafe.is_some() {
        into.failsafe.clone_from(&part.failsafe);
    }
    into.errors.extend(part.errors.iter().cloned());
}
