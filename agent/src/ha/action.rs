//! What the decision core asks the executor to do.

/// How a started PostgreSQL should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAs {
    Primary,
    /// A replica streaming from the named member, or from nobody (read-only, waiting).
    Replica {
        upstream: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create `initialize` with an empty value: we win the right to run initdb.
    RaceInitialize,
    /// initdb, start, create roles (runs while the lease keeps being renewed).
    Bootstrap,
    /// Record the new cluster's system identifier in `initialize`.
    SetInitialize {
        system_identifier: String,
    },
    /// pg_basebackup from the named member.
    Clone {
        from: String,
    },
    /// Take the vacant leader key (create-only, bound to our lease).
    AcquireLeader,
    /// Re-assert the leader key we hold (value == our name) on our current lease.
    RenewLeader,
    StartPostgres(StartAs),
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
    /// pg_rewind the stopped former primary from the named member; if that fails,
    /// move the data directory aside and clone afresh.
    Rewind {
        from: String,
    },
    /// Replica: make sure we stream from `leader` (rewrites config and reloads if needed).
    Follow {
        leader: String,
    },
    /// Primary: make sure the config is the primary's (no recovery settings).
    ConfigurePrimary,
    /// Primary: one physical slot per other member.
    EnsureSlots {
        members: Vec<String>,
    },
    /// Primary: publish our WAL position to `status`.
    WriteStatus,
    /// Primary: manage synchronous replication (`synchronous_standby_names` and the
    /// `/sync` key, in the safe order), or clear both when synchronous mode is off.
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
        timeout: Option<u64>,
    },
    /// Operator-requested re-clone of this replica from the named member.
    Reinitialize {
        from: String,
    },
    /// Stop the agent: a condition an operator must resolve.
    Fatal(String),
}
