//! What the decision core asks the executor to do. Key actions (the leader key,
//! `initialize`, `failover`) come before database actions in every decision, and the
//! executor stops at the first failed key action, so nothing becomes writable before
//! this turn's key write succeeded.

/// How a started database should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAs {
    Primary,
    /// A replica streaming from the named member, or from nobody (read-only, waiting).
    Replica {
        upstream: Option<String>,
    },
    /// Read-only, as the standby leader of a standby cluster: following the remote
    /// primary the dynamic config's `standby_cluster` names (or replaying its archive).
    StandbyLeader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create `initialize` with an empty value: we win the right to run initdb.
    RaceInitialize,
    /// Create a new database (PostgreSQL: initdb, start, create roles); runs while the
    /// lease keeps being renewed.
    Bootstrap,
    /// Record the new cluster's identity in `initialize`.
    SetInitialize {
        system_identifier: String,
    },
    /// Copy the data from the named member (PostgreSQL: pg_basebackup or a configured
    /// replica method).
    Clone {
        from: String,
    },
    /// Take the vacant leader key (create-only, bound to our lease).
    AcquireLeader,
    /// Re-assert the leader key we hold (value == our name) on our current lease.
    RenewLeader,
    Start(StartAs),
    /// Promote our replica; `reason` goes into `history`.
    Promote {
        reason: String,
    },
    /// Stop the primary. With no upstream (the DCS is gone) it restarts at once as a
    /// read-only replica; with one, the next turn rewinds if needed and follows it.
    Demote {
        upstream: Option<String>,
    },
    /// Failsafe mode: every member confirmed us while the DCS is unreachable; extend
    /// our local deadline from the start of that confirmation round.
    FailsafeHold,
    /// Give up the leader key (our primary could not be restarted in time).
    ReleaseLeader,
    /// Make the stopped local data a valid replica of the named member (PostgreSQL:
    /// pg_rewind; if that fails, move the data directory aside and clone afresh).
    Repair {
        from: String,
    },
    /// Replica: make sure we stream from `leader` (rewrites config and reloads if needed).
    Follow {
        leader: String,
    },
    /// Standby leader: make sure we follow the remote primary of `standby_cluster`
    /// (rewrites config and reloads if needed). Never promotes.
    FollowRemote,
    /// Stop the writable database and keep the leader key: the cluster became a
    /// standby cluster, and its primary restarts as the standby leader (the next turn
    /// repairs it from the remote if needed).
    StopPrimary,
    /// Make the stopped local data (a former primary) a valid standby of the remote
    /// primary of `standby_cluster` (PostgreSQL: pg_rewind from it; if that fails, move
    /// the data aside and copy the remote afresh).
    RepairFromRemote,
    /// Primary: make sure the config is the primary's (no recovery settings).
    ConfigurePrimary,
    /// Primary: keep what each other member needs to catch up from us (PostgreSQL: one
    /// physical replication slot per member).
    Retain {
        members: Vec<String>,
    },
    /// Primary: publish our WAL position to `status`.
    WriteStatus,
    /// Primary: manage synchronous replication (the engine's setting and the `/sync` key,
    /// in the safe order), or clear both when synchronous mode is off.
    SyncReplication,
    /// Planned switchover from this primary: CHECKPOINT, fast shutdown, wait until the
    /// candidate has received the shutdown checkpoint, hand the leader key over, and
    /// restart as the candidate's replica (no rewind needed). Aborts (restarting as
    /// primary, still holding the key) if the candidate does not confirm in time.
    HandOver {
        candidate: String,
    },
    /// Clear the `failover` key (write `{}` by compare-and-swap): the request was carried
    /// out, is stale, or cannot be carried out.
    ClearFailover,
    /// Operator-requested restart of PostgreSQL in its current role.
    Restart {
        as_primary: bool,
        timeout: Option<std::time::Duration>,
    },
    /// Operator-requested re-clone of this replica from the named member.
    Reinitialize {
        from: String,
    },
    /// Stop the agent: a condition an operator must resolve.
    Fatal(String),
}
