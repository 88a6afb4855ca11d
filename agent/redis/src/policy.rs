//! Redis's answers to the HA core's engine questions ([`warden_ha::Engine`]):
//! replication ids and offsets decide who has followed the last promotion; Redis
//! resynchronises a former primary by itself, so nothing is ever repaired.
//!
//! Redis names a history by a replication id (`master_replid`, 40 hex digits, random)
//! and counts bytes in it by an offset that continues across promotions. `REPLICAOF NO
//! ONE` starts a new id and keeps the old one as `master_replid2`, valid up to
//! `second_repl_offset`; a replica that continues from a primary by a partial resync
//! takes over both. So a member publishing `replid2 = X` beside another `replid` says
//! "history X was continued by a promotion": a node still on X has not followed it.
//! Ids are random, not numbered, so Redis keeps no `/history` entries
//! ([`Engine::fork_point`] is `None`) and the evidence is what the members' keys
//! publish ([`RedisLocal::member_fields`]).

mod info;

pub use info::{parse_info, ConnectedReplica, InfoError, Replication, ServerRole};

use warden_consensus::Cluster;
use warden_ha::{Db, Engine, PeerStatus};

/// The member-key fields the Redis engine publishes (beside the neutral `role`,
/// `state`, `api_url`, tags): the replication id, the previous one and where it ended,
/// the offset. `xlog_location` repeats the offset for Patroni's readers (`wardenctl
/// list`'s lag column).
pub mod fields {
    pub const REPLID: &str = "replid";
    pub const REPLID2: &str = "replid2";
    pub const SECOND_OFFSET: &str = "second_offset";
    pub const OFFSET: &str = "offset";
    pub const XLOG_LOCATION: &str = "xlog_location";
    pub const REPLICATION_STATE: &str = "replication_state";
}

/// Which history a node's data belongs to, and how far into it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lineage {
    /// `master_replid`.
    pub replid: String,
    /// `master_replid2`, when the node continued an older history (it was promoted, or
    /// followed a promoted primary by a partial resync).
    #[serde(default)]
    pub replid2: Option<String>,
    /// `second_repl_offset`: the first offset of `replid`; `replid2` is valid before it.
    #[serde(default)]
    pub second_offset: Option<u64>,
    /// The node's replication offset.
    pub offset: u64,
}

/// The local Redis's own facts this turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisLocal {
    /// `Some` when the server answered `INFO` this turn.
    pub replication: Option<Replication>,
    /// The agent paused writes (`CLIENT PAUSE WRITE`, for fencing or a switchover) and
    /// the pause has not ended: a primary is then not writable. Redis 7.0's `INFO` does
    /// not show a pause, so the adapter reports its own.
    pub writes_paused: bool,
    /// The server did not answer: the lineage it last reported (kept in the agent's
    /// marker file), so its member key still says which history its data is on.
    pub last_known: Option<Lineage>,
}

impl RedisLocal {
    /// The lineage of the data: the server's, or the last known one when it is down.
    pub fn lineage(&self) -> Option<Lineage> {
        match &self.replication {
            Some(r) => Some(r.lineage()),
            None => self.last_known.clone(),
        }
    }
}

impl Engine for RedisLocal {
    /// Writable: a master whose writes the agent has not paused. Position: the offset
    /// it holds (a replica: what it read from its primary). Streaming: a replica whose
    /// link to its primary is up.
    fn db(&self) -> Option<Db> {
        self.replication.as_ref().map(|r| Db {
            writable: r.role == ServerRole::Master && !self.writes_paused,
            position: Some(r.position()),
            streaming: r.role == ServerRole::Replica && r.link_up,
        })
    }

    /// A node whose replication id another member continued under a new id (a
    /// promotion off our history, or a member that followed one) has not followed the
    /// last promotion: promoted, it would fork the cluster's history there and drop
    /// every write made since. Without an answer from the server nothing is known, as
    /// PostgreSQL's policy says.
    fn promotion_refusal(&self, cluster: &Cluster, me: &str) -> Option<String> {
        let mine = self.replication.as_ref()?.lineage();
        superseded(cluster, Some(me), &mine.replid).map(|s| s.refusal(&mine.replid))
    }

    /// A primary whose history another member continued was demoted or cut off while
    /// someone else was promoted: taking the key back would discard that promotion.
    fn primary_refusal(&self, cluster: &Cluster) -> Option<String> {
        let mine = self.replication.as_ref()?.lineage();
        superseded(cluster, None, &mine.replid).map(|s| s.refusal(&mine.replid))
    }

    /// A peer's `/patroni` carries no replication id (Redis has no promotion counter
    /// for `PeerStatus::generation`), so its member key says which history it is on:
    /// a peer another member shows as abandoned would refuse itself, and deferring to
    /// it (say, ahead by offset on the old history) would leave the cluster without a
    /// leader.
    fn peer_refusal(&self, cluster: &Cluster, name: &str, _: &PeerStatus) -> Option<String> {
        let replid = cluster
            .member(name)?
            .extra
            .get(fields::REPLID)?
            .as_str()?
            .to_string();
        superseded(cluster, Some(name), &replid).map(|s| s.refusal(&replid))
    }

    /// Never: started as a replica, Redis asks its primary for a partial resync from
    /// its own id and offset (`PSYNC`), which the primary grants only if that is a
    /// prefix of its history (its `replid`, or its `replid2` up to
    /// `second_repl_offset`, still in its backlog); otherwise it sends a full copy and
    /// the replica discards its own data — writes a former primary took after the fork
    /// included. Nothing has to be done beforehand.
    fn repair_before_following(&self, _: bool, _: &Cluster, _: &str) -> Option<String> {
        None
    }

    /// A stopped primary comes back with what its disk held (nothing without
    /// persistence, an older snapshot otherwise) under a new replication id, and every
    /// replica that follows it resyncs in full and drops what it had, writes `WAIT`
    /// confirmed included. So while another member still runs on our history (its
    /// `replid` is ours: it received what we acknowledged), the key goes to the race
    /// instead; only a primary nobody else has a copy of restarts in place.
    fn restart_refusal(&self, cluster: &Cluster, me: &str) -> Option<String> {
        let mine = self.lineage()?;
        let (holder, _) = cluster.members.iter().find(|(name, m)| {
            name.as_str() != me
                && m.value.state == warden_consensus::types::MemberState::Running
                && m.value
                    .extra
                    .get(fields::REPLID)
                    .and_then(serde_json::Value::as_str)
                    == Some(mine.replid.as_str())
        })?;
        Some(format!(
            "our redis-server is down and {holder} holds our history (replication id {}): \
             releasing the leader key rather than restart from what the disk holds",
            mine.replid
        ))
    }

    /// Never: a Redis replica retries the sync every second by itself, and a restart
    /// would not change what its primary answers.
    fn repair_stuck_replica(&self, _: &Cluster, _: &str, _: bool) -> Option<String> {
        None
    }

    /// `replid`, `replid2` with `second_offset`, `offset` (also as `xlog_location`)
    /// and on a replica `replication_state` (`streaming`, `syncing`, `disconnected`).
    /// A stopped server publishes the lineage it last reported: a promoted node that
    /// stopped still shows that it continued the old history.
    fn member_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let mut m = serde_json::Map::new();
        let Some(lineage) = self.lineage() else {
            return m;
        };
        m.insert(fields::REPLID.into(), json!(lineage.replid));
        if let Some(id2) = &lineage.replid2 {
            m.insert(fields::REPLID2.into(), json!(id2));
            if let Some(o) = lineage.second_offset {
                m.insert(fields::SECOND_OFFSET.into(), json!(o));
            }
        }
        let offset = self
            .replication
            .as_ref()
            .map_or(lineage.offset, Replication::position);
        m.insert(fields::OFFSET.into(), json!(offset));
        m.insert(fields::XLOG_LOCATION.into(), json!(offset));
        if let Some(r) = self.replication.as_ref() {
            if r.role == ServerRole::Replica {
                let state = if r.link_up {
                    "streaming"
                } else if r.sync_in_progress {
                    "syncing"
                } else {
                    "disconnected"
                };
                m.insert(fields::REPLICATION_STATE.into(), json!(state));
            }
        }
        m
    }
}

/// Another member's key showing that history `replid` was continued under a new id.
struct Supersession {
    member: String,
    new_id: String,
    from_offset: Option<u64>,
}

impl Supersession {
    fn refusal(&self, replid: &str) -> String {
        let at = self
            .from_offset
            .map_or(String::new(), |o| format!(" at offset {o}"));
        format!(
            "replication id {replid} was continued as {}{at} (member {}): this node has not followed the last promotion",
            self.new_id, self.member
        )
    }
}

/// A member (other than `me`, when given) whose key publishes `replid` as its previous
/// replication id under a different current one.
fn superseded(c: &Cluster, me: Option<&str>, replid: &str) -> Option<Supersession> {
    c.members
        .iter()
        .filter(|(name, _)| me != Some(name.as_str()))
        .find_map(|(name, m)| {
            let extra = &m.value.extra;
            let id = extra.get(fields::REPLID)?.as_str()?;
            let id2 = extra.get(fields::REPLID2)?.as_str()?;
            (id2 == replid && id != replid).then(|| Supersession {
                member: name.clone(),
                new_id: id.to_string(),
                from_offset: extra
                    .get(fields::SECOND_OFFSET)
                    .and_then(serde_json::Value::as_u64),
            })
        })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod decide_tests;
