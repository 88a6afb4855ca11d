//! The seam a database engine plugs into: the neutral state the core decides on
//! ([`Db`], [`DataState`]) and the few engine-specific rules it asks about ([`Engine`]).
//!
//! The decision core knows leases, members, races, switchovers and synchronous mode (the
//! DCS layout is Patroni's and engine-neutral). What differs between databases — how a
//! node proves it followed the last promotion, how a diverged former primary is made a
//! replica again — the core asks the engine. PostgreSQL's answers (timelines,
//! `pg_rewind`) live in `warden_pg::policy`.

use crate::observation::PeerStatus;
use warden_consensus::Cluster;

/// What is on disk where the engine keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataState {
    Missing,
    /// Exists but holds no database (empty, or a leftover from a failed clone).
    NoCluster,
    Initialized,
}

/// The running database as every engine reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Db {
    /// Accepts writes (PostgreSQL: not in recovery).
    pub writable: bool,
    /// Bytes of the replication stream this node holds: a primary's write position, a
    /// replica's received or replayed position, whichever is larger (PostgreSQL: LSN).
    pub position: Option<u64>,
    /// A replica receiving from an upstream right now.
    pub streaming: bool,
}

/// An engine's own facts about the local database and the rules the neutral core asks
/// about them. Pure: implementations read only `self` and the arguments (no I/O, no
/// clock). The I/O half of an engine is the daemon's adapter.
pub trait Engine: Clone + std::fmt::Debug + PartialEq {
    /// The database's neutral state; `None` when it did not answer this turn.
    fn db(&self) -> Option<Db>;

    /// Why this node must not be promoted (or, holding the key while read-only, must not
    /// promote): e.g. it has not followed the cluster's last promotion.
    /// `me`: our member name (a generation the cluster reserved for our own promotion,
    /// which never happened, does not count against us).
    fn promotion_refusal(&self, cluster: &Cluster, me: &str) -> Option<String>;

    /// Why this node, running writable while the leader key is vacant, must not take the
    /// key back (another node was promoted while it was away).
    fn primary_refusal(&self, cluster: &Cluster) -> Option<String>;

    /// Why `peer` (member `name`) could not win a race (so it is not worth deferring
    /// to). The name lets an engine look at what the peer's member key says, e.g. a
    /// history it does not report over `/patroni`.
    fn peer_refusal(&self, cluster: &Cluster, name: &str, peer: &PeerStatus) -> Option<String>;

    /// A stopped node about to start as a replica of `leader`: `Some(why)` when its data
    /// must first be repaired from the leader ([`crate::Action::Repair`]), e.g. a former
    /// primary that may hold writes the leader never received.
    fn repair_before_following(
        &self,
        was_primary: bool,
        cluster: &Cluster,
        leader: &str,
    ) -> Option<String>;

    /// Whether the engine can run a standby cluster (`standby_cluster`: the leader
    /// follows a remote primary). Default: no, and the core then ignores the section.
    fn supports_standby_cluster(&self) -> bool {
        false
    }

    /// A stopped node about to start as its standby cluster's leader, following the
    /// remote primary: `Some(why)` when its data must first be repaired from the remote
    /// ([`crate::Action::RepairFromRemote`]), e.g. a former primary whose cluster became
    /// a standby of another that may have forked from it. Default: never.
    fn repair_before_following_remote(&self, was_primary: bool) -> Option<String> {
        let _ = was_primary;
        None
    }

    /// A stopped node about to follow `leader` whose data cannot be repaired in place
    /// and must be copied afresh ([`crate::Action::Clone`], the old data kept aside):
    /// e.g. a former primary whose history the cluster has since given, under the same
    /// name, to another member's promotion. Checked before
    /// [`Engine::repair_before_following`]. Default: never.
    fn recopy_before_following(
        &self,
        was_primary: bool,
        cluster: &Cluster,
        me: &str,
        leader: &str,
    ) -> Option<String> {
        let _ = (was_primary, cluster, me, leader);
        None
    }

    /// We hold the leader key and our database is stopped: `Some(why)` when restarting
    /// it as the primary would lose what a replica holds, so the key is released for a
    /// replica to take over instead (Redis: a restart loads only what was on disk, and
    /// replicas that resync from it discard the rest). `me`: our member name. Default:
    /// never (PostgreSQL restarts with every committed transaction, from its WAL).
    fn restart_refusal(&self, cluster: &Cluster, me: &str) -> Option<String> {
        let _ = (cluster, me);
        None
    }

    /// A running replica of `leader` that has not streamed for `ttl` (`stuck`):
    /// `Some(why)` when it cannot catch up by itself and must be stopped, repaired and
    /// started again.
    fn repair_stuck_replica(&self, cluster: &Cluster, leader: &str, stuck: bool) -> Option<String>;

    /// Where promoting this replica forks the history, for the cluster's `/history`
    /// key: the generation it leaves and the position it forks at. `None`: the engine
    /// keeps no numbered history, and no entry is written.
    fn fork_point(&self) -> Option<(u32, u64)> {
        None
    }

    /// The engine's own fields in our member key (beside the neutral `state`, `role`,
    /// `api_url`, tags), e.g. PostgreSQL's `xlog_location` and `timeline` in Patroni's
    /// layout.
    fn member_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}
