//! The agent's DCS client: node `n`'s `Dcs` over the etcd model. A request takes
//! effect when it is sent and answers 1–4 ms later; cut off from etcd it fails after the
//! agent's request timeout. A stopped agent sends nothing and reads no answer.

use super::*;
use async_trait::async_trait;
use tokio::sync::mpsc;
use warden_consensus::{Dcs, DcsError, LeaseId, Snapshot};

#[derive(Debug, Clone)]
pub(crate) struct SimDcs {
    pub(crate) sim: Sim,
    pub(crate) node: usize,
}

impl SimDcs {
    /// One request: `f` runs against the store if etcd is reachable.
    async fn call<T>(
        &self,
        f: impl FnOnce(&mut Store, u64) -> Result<T, DcsError>,
    ) -> Result<T, DcsError> {
        let n = self.node;
        self.sim
            .io(n, |w| {
                if !w.dcs_reachable(n) {
                    let t = w.nodes[n].dcs_timeout;
                    return (Err(DcsError::Timeout(t)), t.as_millis() as u64);
                }
                w.expire_leases();
                let now = w.now();
                let out = f(&mut w.store, now);
                w.dispatch_watch();
                (out, w.rng.range(1, 4))
            })
            .await
    }
}

#[async_trait]
impl Dcs for SimDcs {
    fn set_request_timeout(&self, timeout: Duration) {
        self.sim.with(|w| w.nodes[self.node].dcs_timeout = timeout);
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, DcsError> {
        self.call(|s, now| Ok(s.grant(now, ttl))).await
    }

    async fn keepalive(&self, lease: LeaseId) -> Result<Duration, DcsError> {
        self.call(|s, now| s.keepalive(now, lease)).await
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.call(|s, _| {
            s.revoke(lease.0);
            Ok(())
        })
        .await
    }

    async fn get_prefix(&self, prefix: &str) -> Result<Snapshot, DcsError> {
        self.sim.with(|w| w.stats.turns += 1);
        self.call(|s, _| Ok(s.get_prefix(prefix))).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), DcsError> {
        let n = self.node;
        self.sim.with(|w| {
            // A promotion recorded by an agent that no longer leads (it was stopped
            // between pg_promote and this write) rewrites the cluster's history.
            let leads = w.nodes[n]
                .proc
                .as_ref()
                .is_some_and(|p| p.shared.deadline.valid_at(w.node_now(n)));
            if key == w.store.keys.history() && !leads && w.dcs_reachable(n) {
                w.stats.stale_history_writes += 1;
                w.log(
                    Some(n),
                    "STALE /history WRITE: our lease deadline has passed".into(),
                );
            }
        });
        self.call(|s, _| s.put(key, value, lease)).await
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        self.call(|s, _| s.create(key, value, lease, None)).await
    }

    async fn create_unless_changed(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        guard: (&str, i64),
    ) -> Result<bool, DcsError> {
        let n = self.node;
        let won = self
            .call(|s, _| s.create(key, value, lease, Some(guard)))
            .await;
        if matches!(won, Ok(true)) {
            // Frozen right after taking the key is one of the riskiest moments.
            self.sim.with(|w| {
                w.log(Some(n), "took the leader key".into());
                w.aimed_pause(n, "after taking the leader key");
            });
        }
        won
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        value: Vec<u8>,
        mod_revision: i64,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        self.call(|s, _| s.compare_and_swap(key, value, mod_revision, lease))
            .await
    }

    async fn put_if_value(
        &self,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<bool, DcsError> {
        self.call(|s, _| s.put_if_value(key, expected, value, lease))
            .await
    }

    async fn delete_if_value(&self, key: &str, expected: &[u8]) -> Result<bool, DcsError> {
        self.call(|s, _| Ok(s.delete_if_value(key, expected))).await
    }

    async fn delete(&self, key: &str) -> Result<(), DcsError> {
        self.call(|s, _| {
            s.remove(key);
            Ok(())
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, DcsError> {
        self.call(|s, _| Ok(s.delete_prefix(prefix))).await
    }

    async fn watch(
        &self,
        _prefix: &str,
        _after_revision: i64,
    ) -> Result<mpsc::Receiver<WatchEvent>, DcsError> {
        let node = self.node;
        self.call(|s, _| {
            let (tx, rx) = mpsc::channel(warden_consensus::dcs::WATCH_QUEUE);
            s.watchers.push(Watcher {
                node,
                tx,
                pending: Vec::new(),
                broken: false,
            });
            Ok(rx)
        })
        .await
    }
}
