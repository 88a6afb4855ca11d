//! PostgreSQL's answers to the HA core's engine questions ([`warden_ha::Engine`]):
//! timelines decide who has followed the last promotion, and `pg_rewind` repairs a
//! former primary (or a replica stranded on an older timeline) before it follows.

use crate::sql::Probe;
use warden_consensus::Cluster;
use warden_ha::{Db, Engine, PeerStatus};

/// The local PostgreSQL's own facts this turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PgLocal {
    /// `Some` when PostgreSQL answered the status queries.
    pub probe: Option<Probe>,
    /// Since it last ran as primary, this data directory was rewound (or found not to
    /// need it), so it may follow the new leader.
    pub rewound: bool,
    /// Stopped (not a fresh clone): the newest timeline the data names: its control
    /// file's (last checkpoint, minimum recovery point) or, newer, a timeline history
    /// file in `pg_wal` (a promotion that crashed before its first checkpoint). Behind
    /// the leader's, the data may hold WAL past the fork point; PostgreSQL then
    /// refuses to start on the leader's timeline until pg_rewind has run.
    pub stopped_timeline: Option<u32>,
    /// `postgresql.use_pg_rewind` in force.
    pub use_pg_rewind: bool,
}

impl Engine for PgLocal {
    fn db(&self) -> Option<Db> {
        self.probe.as_ref().map(|p| Db {
            writable: !p.in_recovery,
            position: p.wal_position,
            streaming: p.streaming,
        })
    }

    /// PostgreSQL promotes onto the next timeline ID after the newest one it knows, so
    /// the newest known timeline is what must not be behind.
    fn promotion_refusal(&self, cluster: &Cluster, me: &str) -> Option<String> {
        let p = self.probe.as_ref()?;
        let newest = p.newest_timeline.or(p.timeline);
        timeline_refusal(&without_own_reservation(cluster, me, newest), newest)
    }

    fn primary_refusal(&self, cluster: &Cluster) -> Option<String> {
        timeline_refusal(cluster, self.probe.as_ref()?.timeline)
    }

    fn peer_refusal(&self, cluster: &Cluster, _: &str, peer: &PeerStatus) -> Option<String> {
        timeline_refusal(cluster, peer.generation)
    }

    /// The timeline we leave and the LSN replayed (or written) when promoted; a node
    /// that did not answer forks timeline 1 at 0, as Patroni records it. The timeline
    /// left is the newest one known: recovery follows it (`latest`) and PostgreSQL
    /// promotes onto the next ID, while the control file's timeline lags behind until a
    /// restartpoint (reserving that one would record a fork twice and skip a timeline).
    fn fork_point(&self) -> Option<(u32, u64)> {
        let p = self.probe.as_ref();
        Some((
            p.and_then(|p| p.newest_timeline.max(p.timeline))
                .unwrap_or(1),
            p.and_then(|p| p.replay_lsn.or(p.wal_position)).unwrap_or(0),
        ))
    }

    /// Patroni's member fields: `xlog_location`, `timeline`; on a replica
    /// `receive_lsn`, `replay_lsn` and `replication_state`; `pending_restart` (and its
    /// reason) when a parameter waits for a restart. A server not answering reports the
    /// timeline its data is on: a former primary whose promotion `/history` never
    /// recorded must not see another member promoted onto the same timeline ID while
    /// it starts (members behind the highest reported timeline are not promoted).
    fn member_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let mut m = serde_json::Map::new();
        let Some(p) = &self.probe else {
            if let Some(t) = self.stopped_timeline {
                m.insert("timeline".into(), json!(t));
            }
            return m;
        };
        if let Some(x) = p.wal_position {
            m.insert("xlog_location".into(), json!(x));
        }
        if let Some(t) = p.timeline {
            m.insert("timeline".into(), json!(t));
        }
        if p.in_recovery {
            if let Some(r) = p.receive_lsn {
                m.insert("receive_lsn".into(), json!(r));
            }
            if let Some(r) = p.replay_lsn {
                m.insert("replay_lsn".into(), json!(r));
            }
            let state = if p.streaming {
                "streaming"
            } else {
                "in archive recovery"
            };
            m.insert("replication_state".into(), json!(state));
        }
        if p.pending_restart {
            m.insert("pending_restart".into(), json!(true));
            if let Some(reason) = p.pending_restart_reason_json() {
                m.insert("pending_restart_reason".into(), reason);
            }
        }
        m
    }

    /// A former primary on timeline T that `/history` says another member created: two
    /// promotions took the same timeline ID (ours was never recorded: we died or lost
    /// the lease right after `pg_promote`). pg_rewind sees one timeline and rewinds
    /// nothing, and streaming would mix two histories, so the data is copied afresh.
    fn recopy_before_following(
        &self,
        was_primary: bool,
        cluster: &Cluster,
        me: &str,
        leader: &str,
    ) -> Option<String> {
        if !was_primary || self.rewound {
            return None;
        }
        let mine = self.stopped_timeline?;
        let creator = cluster
            .history
            .iter()
            .rev()
            .find(|h| h.timeline.checked_add(1) == Some(mine))?
            .new_leader
            .as_deref()?;
        (creator != me).then(|| {
            format!(
                "timeline {mine} is {creator}'s promotion, not ours: our data is another history under the same timeline ID; copying afresh from {leader} (the old data is kept aside)"
            )
        })
    }

    fn repair_before_following(
        &self,
        was_primary: bool,
        cluster: &Cluster,
        leader: &str,
    ) -> Option<String> {
        if !self.use_pg_rewind {
            return None;
        }
        if was_primary && !self.rewound {
            // A former primary may have WAL the new leader never received: rewind it
            // onto the leader's timeline (a no-op when nothing diverged).
            return Some(format!(
                "former primary rejoining: pg_rewind from {leader}, then follow it"
            ));
        }
        let theirs = cluster.member(leader).and_then(|m| m.timeline)?;
        let mine = self.stopped_timeline?;
        // E.g. a replica stopped for a rewind that then failed (its source died):
        // started as is it may never get past the fork point ("requested timeline does
        // not contain minimum recovery point"). pg_rewind is a no-op when nothing
        // diverged.
        (mine < theirs).then(|| {
            format!(
                "stopped on timeline {mine}, behind {leader}'s {theirs}: pg_rewind from {leader}, then follow it"
            )
        })
    }

    fn supports_standby_cluster(&self) -> bool {
        true
    }

    /// A former primary whose cluster became a standby cluster may hold WAL past the
    /// point where the remote forked from it (the remote was promoted off our
    /// timeline): rewind onto the remote's timeline (a no-op when nothing diverged).
    fn repair_before_following_remote(&self, was_primary: bool) -> Option<String> {
        (was_primary && !self.rewound && self.use_pg_rewind).then(|| {
            "former primary becoming the standby leader: pg_rewind from the remote primary, then follow it"
                .to_string()
        })
    }

    /// A replica left on an older timeline that cannot stream (its WAL went past the
    /// leader's fork point, e.g. a former primary restarted read-only) never catches up
    /// by itself: stop it, rewind it onto the leader's timeline, start it again.
    fn repair_stuck_replica(&self, cluster: &Cluster, leader: &str, stuck: bool) -> Option<String> {
        let mine = self.probe.as_ref()?.timeline?;
        let theirs = cluster.member(leader).and_then(|m| m.timeline)?;
        (stuck && mine < theirs && self.use_pg_rewind)
            .then(|| format!("replica stuck on an older timeline than {leader}: rewinding it"))
    }
}

/// The cluster as a node on `timeline` may judge its own promotion: without `/history`
/// entries by which it reserved a promotion off that very timeline (a promotion is
/// reserved before `pg_promote`; one that never happened, because we stopped in
/// between, must not hold us back, or nobody could ever lead again).
fn without_own_reservation(c: &Cluster, me: &str, timeline: Option<u32>) -> Cluster {
    let mut c = c.clone();
    if let Some(tl) = timeline {
        let mine = |h: &warden_consensus::types::HistoryEntry| {
            h.timeline >= tl && h.new_leader.as_deref() == Some(me)
        };
        // Only a reservation at the end of the history: a later entry by someone
        // else means the cluster moved on past it.
        while c.history.last().is_some_and(mine) {
            c.history.pop();
        }
    }
    c
}

/// Why a node on `timeline` must not be promoted automatically, if it must not.
///
/// Always (unlike Patroni, where this needs `check_timeline`): a node whose newest
/// known timeline is behind the cluster's has not followed the last promotion.
/// PostgreSQL would promote it onto the next timeline ID it knows to be free, which
/// the cluster has already used; two different histories under one timeline ID make
/// later rewinds and streaming go wrong (replicas stuck on "incorrect prev-link").
/// With `check_timeline` an unknown timeline is refused too, as in Patroni.
pub fn timeline_refusal(c: &Cluster, timeline: Option<u32>) -> Option<String> {
    let cluster_tl = c.timeline()?;
    match timeline {
        Some(tl) if tl < cluster_tl => Some(format!(
            "timeline {tl} is behind the cluster's timeline {cluster_tl}: this node has not followed the last promotion"
        )),
        None if c.dynamic_config().check_timeline => {
            Some("check_timeline is on and our timeline is unknown".into())
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "decide_tests/mod.rs"]
mod decide_tests;
