//! Recording this member's promotions in `warden/transitions`, with the durations it can
//! honestly measure (`warden_consensus::transitions`).
//!
//! Each turn the [`Tracker`] notes, from the DCS view it just read, when this member
//! first saw the leader key vacant, the `failover` key naming it, or the config's
//! `standby_cluster` section removed. After a completed promotion the agent appends one
//! entry to the key on a task of its own: by compare-and-swap, bounded by a timeout, a
//! failure only logged. The turn never waits for it: the promotion is what matters, the
//! record is for the DR report.
//!
//! What it cannot measure: a failed leader's key expires up to `ttl` after its last
//! renewal, and the old primary may have stopped serving anywhere in that window, so a
//! failover's `detected_to_promoted` is the part of the outage after the expiry; the
//! entry carries `ttl` so a reader can bound the rest.

use super::observation::Local;
use super::run::Agent;
use super::LocalEngine;
use crate::state::Shared;
use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warden_consensus::transitions::{append, Transition, TransitionKind};
use warden_consensus::{Cluster, Dcs};
use warden_ha::Engine as _;

/// The whole append (read, compare-and-swap, retries) gives up after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Compare-and-swap attempts when another writer changed the key in between.
const WRITE_ATTEMPTS: usize = 5;

/// When a cause was first seen, on the monotonic clock and the wall clock, and the
/// leader (or remote) it concerned.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    wall: DateTime<Utc>,
    from: Option<String>,
}

impl Seen {
    fn now(at: Instant, from: Option<String>) -> Self {
        Self {
            at,
            wall: Utc::now(),
            from,
        }
    }
}

/// What the turns saw that may explain a coming promotion of this member.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The member last seen holding the leader key.
    last_leader: Option<String>,
    /// The leader key has been vacant since (in every view since).
    vacant: Option<Seen>,
    /// The `failover` key has named this member since; `from`: the leader it names.
    named: Option<Seen>,
    /// Whether the last config seen made this a standby cluster, and its remote.
    standby: Option<(bool, Option<String>)>,
    /// The `standby_cluster` section was seen removed, and no other member has held
    /// the leader key since; `from`: the remote it named.
    standby_removed: Option<Seen>,
    /// This turn's promotion, written at the end of the turn.
    pending: Option<Transition>,
}

impl Tracker {
    /// Notes this turn's DCS view, read at `now` (this node's clock).
    pub(super) fn observe(&mut self, cluster: Option<&Cluster>, me: &str, now: Instant) {
        let Some(c) = cluster else { return };
        // The config first: a removal seen while another member leads is that
        // member's promotion, which the leader check below then forgets.
        if let Some(cfg) = c.config.as_ref().map(|v| &v.value) {
            let is_standby = cfg.is_standby_cluster();
            let remote = cfg
                .standby_cluster
                .as_ref()
                .and_then(warden_consensus::dynamic_config::StandbyCluster::address)
                .map(|(h, p)| format!("{h}:{p}"));
            match &self.standby {
                Some((true, was_remote)) if !is_standby && self.standby_removed.is_none() => {
                    self.standby_removed = Some(Seen::now(now, was_remote.clone()));
                }
                _ => {}
            }
            if is_standby {
                self.standby_removed = None;
            }
            self.standby = Some((is_standby, remote));
        }
        match c.leader_name() {
            Some(l) => {
                self.vacant = None;
                if l != me {
                    // Another member leads: a removal we saw is that member's promotion.
                    self.standby_removed = None;
                }
                self.last_leader = Some(l.to_owned());
            }
            None => {
                if self.vacant.is_none() {
                    self.vacant = Some(Seen::now(now, self.last_leader.clone()));
                }
            }
        }
        match c.failover.as_ref().map(|f| &f.value) {
            Some(f) if f.member.as_deref() == Some(me) => {
                if self.named.is_none() {
                    let from = f.leader.clone().or_else(|| self.last_leader.clone());
                    self.named = Some(Seen::now(now, from));
                }
            }
            _ => self.named = None,
        }
    }

    /// The entry for a promotion of `me` completed at `now`, and the causes reset.
    fn promoted(
        &mut self,
        me: &str,
        now: Instant,
        timeline: Option<u32>,
        ttl: u32,
        standby_lag: Option<warden_api::patroni::StandbyClusterStatus>,
    ) -> Transition {
        let named = self.named.take();
        let vacant = self.vacant.take();
        let (kind, seen) = match self.standby_removed.take() {
            Some(s) => (TransitionKind::ClusterPromotion, Some(s)),
            None if named.is_some() => (TransitionKind::Switchover, named),
            None => (TransitionKind::Failover, vacant),
        };
        let (lag_bytes, lag_seconds) = match (kind, standby_lag) {
            (TransitionKind::ClusterPromotion, Some(l)) => (l.lag_bytes, l.lag_seconds),
            _ => (None, None),
        };
        Transition {
            kind,
            from: seen.as_ref().and_then(|s| s.from.clone()),
            to: me.to_owned(),
            timeline,
            at: rfc3339(Utc::now()),
            detected_at: seen.as_ref().map(|s| rfc3339(s.wall)),
            // Milliseconds are all the loop's timing can mean.
            detected_to_promoted: seen.map(|s| {
                (now.saturating_duration_since(s.at).as_secs_f64() * 1000.0).round() / 1000.0
            }),
            ttl: Some(ttl),
            lag_bytes,
            lag_seconds,
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The standby leader's distance from the remote primary as `/patroni` shows it now
/// (taken just before a promotion: afterwards there is no remote to be behind).
pub(super) fn standby_lag(shared: &Shared) -> Option<warden_api::patroni::StandbyClusterStatus> {
    shared.snapshot().standby_lag()
}

impl<D: LocalEngine> Agent<D> {
    /// After a completed promotion: the transition, kept until the end of the turn
    /// ([`Agent::write_transition`]).
    pub(super) fn note_promotion(
        &mut self,
        fork: Option<(u32, u64)>,
        standby_lag: Option<warden_api::patroni::StandbyClusterStatus>,
        cluster: Option<&Cluster>,
    ) {
        let ttl = self.dynamic(cluster).ttl;
        let now = self.env.clock.now();
        // PostgreSQL's promotion starts a timeline after the one it forks (replaced by
        // the one the server reports at the end of the turn).
        let timeline = fork.map(|(t, _)| t.saturating_add(1));
        let entry = self
            .transitions
            .promoted(&self.cfg.name, now, timeline, ttl, standby_lag);
        self.transitions.pending = Some(entry);
    }

    /// At the end of a turn that promoted us: the transition, with the timeline the
    /// promoted server reports, appended to `warden/transitions` on a task of its own
    /// (best effort; the loop goes on at once).
    pub(super) fn write_transition(&mut self, local: &Local<D::Facts>) {
        let Some(mut entry) = self.transitions.pending.take() else {
            return;
        };
        // The fork point comes from a replica's probe, whose timeline can lag (the
        // checkpoint's, with no receiver left); a primary reports its WAL's.
        if local.db().is_some_and(|d| d.writable) {
            if let Some(t) = local
                .engine
                .member_fields()
                .get("timeline")
                .and_then(serde_json::Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
            {
                entry.timeline = Some(t);
            }
        }
        tracing::info!(
            kind = entry.kind.as_str(),
            from = ?entry.from,
            timeline = ?entry.timeline,
            detected_to_promoted = ?entry.detected_to_promoted,
            "recording the leadership transition"
        );
        let dcs = Arc::clone(&self.dcs);
        let key = self.keys.transitions();
        tokio::spawn(async move {
            match tokio::time::timeout(WRITE_TIMEOUT, append_to_key(dcs.as_ref(), &key, entry))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, key, "cannot record the leadership transition")
                }
                Err(_) => tracing::warn!(
                    key,
                    "cannot record the leadership transition: no answer within {WRITE_TIMEOUT:?}"
                ),
            }
        });
    }
}

/// Appends `entry` to the list in `key` by compare-and-swap, re-reading when another
/// writer got in between. A value that is not a list is replaced (and said so).
async fn append_to_key(dcs: &dyn Dcs, key: &str, entry: Transition) -> Result<(), String> {
    for _ in 0..WRITE_ATTEMPTS {
        let snap = dcs.get_prefix(key).await.map_err(|e| e.to_string())?;
        let (list, revision) = match snap.kvs.iter().find(|kv| kv.key == key) {
            None => (Vec::new(), 0),
            Some(kv) => match serde_json::from_slice::<Vec<Transition>>(&kv.value) {
                Ok(list) => (list, kv.mod_revision),
                Err(e) => {
                    tracing::warn!(key, error = %e, "the transitions key is not a list of transitions; starting it afresh");
                    (Vec::new(), kv.mod_revision)
                }
            },
        };
        let body = serde_json::to_vec(&append(&list, entry.clone())).map_err(|e| e.to_string())?;
        if dcs
            .compare_and_swap(key, body, revision, None)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
    }
    Err(format!(
        "the key changed under each of {WRITE_ATTEMPTS} attempts"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_consensus::memory::MemoryDcs;
    use warden_consensus::types::Failover;
    use warden_consensus::{LeaderKey, Versioned};

    fn leader(name: &str) -> Option<LeaderKey> {
        Some(LeaderKey {
            name: name.into(),
            create_revision: 1,
            mod_revision: 1,
            lease: 1,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn classifies_and_times_what_it_saw() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let mut c = Cluster {
            leader: leader("n1"),
            ..Cluster::default()
        };
        t.observe(Some(&c), "n2", t0);
        c.leader = None;
        t.observe(Some(&c), "n2", t0 + Duration::from_secs(1));
        t.observe(Some(&c), "n2", t0 + Duration::from_secs(2));
        let e = t.promoted("n2", t0 + Duration::from_millis(3500), Some(2), 10, None);
        assert_eq!(e.kind, TransitionKind::Failover);
        assert_eq!(e.from.as_deref(), Some("n1"));
        assert_eq!(
            e.detected_to_promoted,
            Some(2.5),
            "from the first vacant view"
        );
        assert_eq!((e.timeline, e.ttl), (Some(2), Some(10)));

        // A switchover: the failover key names us, then the key is handed over.
        c.leader = leader("n2");
        t.observe(Some(&c), "n1", t0);
        c.failover = Some(Versioned {
            value: Failover {
                leader: Some("n2".into()),
                member: Some("n1".into()),
                ..Failover::default()
            },
            mod_revision: 2,
        });
        t.observe(Some(&c), "n1", t0 + Duration::from_secs(1));
        c.leader = None;
        t.observe(Some(&c), "n1", t0 + Duration::from_secs(2));
        let e = t.promoted("n1", t0 + Duration::from_secs(4), Some(3), 10, None);
        assert_eq!(e.kind, TransitionKind::Switchover);
        assert_eq!(e.from.as_deref(), Some("n2"));
        assert_eq!(e.detected_to_promoted, Some(3.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_leader_promoted_after_the_section_went_is_a_cluster_promotion() {
        let t0 = Instant::now();
        let standby = warden_consensus::DynamicConfig::from_json(&serde_json::json!({
            "standby_cluster": {"host": "10.0.0.1", "port": 5433}
        }))
        .unwrap();
        let mut c = Cluster {
            leader: leader("b1"),
            config: Some(Versioned {
                value: standby,
                mod_revision: 1,
            }),
            ..Cluster::default()
        };
        let mut t = Tracker::default();
        t.observe(Some(&c), "b1", t0);
        c.config = Some(Versioned {
            value: warden_consensus::DynamicConfig::default(),
            mod_revision: 2,
        });
        t.observe(Some(&c), "b1", t0 + Duration::from_secs(1));
        let lag = warden_api::patroni::StandbyClusterStatus {
            lag_bytes: Some(0),
            lag_seconds: Some(0.0),
            ..Default::default()
        };
        let e = t.promoted(
            "b1",
            t0 + Duration::from_millis(1200),
            Some(2),
            10,
            Some(lag),
        );
        assert_eq!(e.kind, TransitionKind::ClusterPromotion);
        assert_eq!(e.from.as_deref(), Some("10.0.0.1:5433"));
        assert_eq!((e.detected_to_promoted, e.lag_bytes), (Some(0.2), Some(0)));
        // A replica that saw the section go while another member led records nothing
        // of it: that member's promotion was the cluster's; a later failover is one.
        let mut t = Tracker::default();
        let removed = c.config.clone();
        c.config = Some(Versioned {
            value: warden_consensus::DynamicConfig::from_json(&serde_json::json!({
                "standby_cluster": {"host": "10.0.0.1", "port": 5433}
            }))
            .unwrap(),
            mod_revision: 1,
        });
        t.observe(Some(&c), "b2", t0);
        c.config = removed;
        t.observe(Some(&c), "b2", t0);
        c.leader = None;
        t.observe(Some(&c), "b2", t0);
        let e = t.promoted("b2", t0 + Duration::from_secs(1), None, 10, None);
        assert_eq!(e.kind, TransitionKind::Failover);
        assert_eq!(e.from.as_deref(), Some("b1"));
    }

    #[tokio::test]
    async fn appends_by_compare_and_swap_to_a_bounded_list() {
        let dcs = MemoryDcs::new();
        let key = "/service/demo/warden/transitions";
        let mut t = Tracker::default();
        for i in 0..22 {
            let e = t.promoted(&format!("n{i}"), Instant::now(), None, 10, None);
            append_to_key(&dcs, key, e).await.unwrap();
        }
        let snap = dcs.get_prefix(key).await.unwrap();
        let list: Vec<Transition> = serde_json::from_slice(&snap.kvs[0].value).unwrap();
        assert_eq!(list.len(), 20);
        assert_eq!((list[0].to.as_str(), list[19].to.as_str()), ("n2", "n21"));
    }
}
