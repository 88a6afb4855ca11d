//! The HA decision: a pure function from an [`Observation`] to actions.
//!
//! No I/O and no clock: everything time-dependent arrives as a fact in the observation
//! (e.g. `lease_valid`). Each branch returns a short note saying why, which the loop logs
//! and `/patroni` shows.

use crate::action::{Action, StartAs};
use crate::engine::{DataState, Db, Engine};
use crate::observation::{ManualTask, Observation};
use warden_consensus::Cluster;

use crate::race::*;
use crate::switchover::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub note: String,
}

pub(crate) fn decision(actions: Vec<Action>, note: impl Into<String>) -> Decision {
    Decision {
        actions,
        note: note.into(),
    }
}

pub fn decide<E: Engine>(o: &Observation<E>) -> Decision {
    let Some(c) = o.cluster.as_ref() else {
        return dcs_unreachable(o);
    };

    match c.initialize.as_deref() {
        None => return uninitialized_cluster(o, c),
        Some("") => {
            // Writable after initdb; read-only after a standby cluster's bootstrap (a
            // copy of the remote primary, following it).
            if o.bootstrapped_here && o.local.db().is_some() {
                let sysid = o.local.system_identifier.clone().unwrap_or_default();
                return decision(
                    vec![
                        Action::AcquireLeader,
                        Action::SetInitialize {
                            system_identifier: sysid,
                        },
                    ],
                    "bootstrapped a new cluster: taking the leader key",
                );
            }
            if o.local.data != DataState::Initialized {
                return decision(vec![], "waiting for the leader to bootstrap");
            }
        }
        Some(sysid) => {
            if let Some(mine) = o.local.system_identifier.as_deref().filter(|m| *m != sysid) {
                return decision(
                    vec![Action::Fatal(format!(
                        "the data directory belongs to another cluster: its system identifier is {mine}, \
                         the cluster's (the DCS `initialize` key) is {sysid}; move the data directory away \
                         to clone a fresh replica, or check scope and namespace"
                    ))],
                    "system identifier mismatch",
                );
            }
        }
    }

    if o.local.data != DataState::Initialized {
        return clone_replica(o, c);
    }
    if let Some(task) = &o.manual {
        return manual_task(o, c, task);
    }
    if c.is_paused() {
        return paused(o, c);
    }
    if !o.local.running {
        return start_stopped(o, c);
    }
    let Some(db) = o.local.db() else {
        if c.leader_name() == Some(o.me.as_str()) && o.local.was_primary {
            return primary_down(o, c, false);
        }
        return decision(vec![], "the database is starting");
    };
    match c.leader_name() {
        Some(l) if l == o.me => as_leader(o, c, &db),
        Some(l) => as_follower(o, c, &db, l),
        None => vacant_leader(o, c, &db),
    }
}

fn dcs_unreachable<E: Engine>(o: &Observation<E>) -> Decision {
    let primary = o.local.db().is_some_and(|d| d.writable);
    if primary && o.failsafe_confirmed == Some(true) {
        return decision(
            vec![Action::FailsafeHold],
            "DCS unreachable; every member confirmed us over REST (failsafe mode): staying primary",
        );
    }
    if primary && o.failsafe_confirmed == Some(false) {
        // Patroni's failsafe rule: one member that refuses (it runs as a primary, or
        // does not answer) is enough to step down now, not at the lease deadline.
        return decision(
            vec![Action::Demote { upstream: None }],
            "DCS unreachable and a member did not confirm us over REST (failsafe mode): demoting to read-only",
        );
    }
    if primary && !o.lease_valid {
        return decision(
            vec![Action::Demote { upstream: None }],
            "DCS unreachable and the lease deadline passed: demoting to read-only",
        );
    }
    if !o.local.running && o.local.data == DataState::Initialized {
        // Without the DCS we cannot know who leads: only ever come back read-only.
        return decision(
            vec![Action::Start(StartAs::Replica { upstream: None })],
            "DCS unreachable: starting the database read-only",
        );
    }
    decision(vec![], "DCS unreachable; keeping the current state")
}

/// No `initialize` key: a brand-new cluster, or one whose DCS state was wiped.
fn uninitialized_cluster<E: Engine>(o: &Observation<E>, c: &Cluster) -> Decision {
    if o.local.data != DataState::Initialized && !o.tags.may_become_leader() {
        // Patroni's rule: a member that may never lead does not bootstrap the cluster.
        return decision(
            vec![],
            "tagged nofailover: waiting for another member to bootstrap",
        );
    }
    if o.local.data != DataState::Initialized {
        return decision(
            vec![Action::RaceInitialize, Action::Bootstrap],
            "racing to bootstrap a new cluster",
        );
    }
    // Existing data but no DCS record: a running primary re-registers the cluster.
    let primary = o.local.db().is_some_and(|d| d.writable);
    match (o.local.system_identifier.clone(), c.leader_name()) {
        (Some(sysid), None) if primary => decision(
            vec![
                Action::AcquireLeader,
                Action::SetInitialize {
                    system_identifier: sysid,
                },
            ],
            "DCS has no record of this cluster: registering it from the running primary",
        ),
        (Some(sysid), Some(l)) if l == o.me => decision(
            vec![Action::SetInitialize {
                system_identifier: sysid,
            }],
            "recording the system identifier",
        ),
        _ if !o.local.running && o.local.was_primary && c.leader.is_none() && o.lease_renewed => decision(
            // A former primary re-registers the cluster: key first, so it starts under a
            // valid lease deadline.
            vec![Action::AcquireLeader, Action::Start(StartAs::Primary)],
            "DCS has no record of this cluster: restarting the former primary under the leader key",
        ),
        _ if !o.local.running => decision(
            vec![Action::Start(StartAs::Replica { upstream: None })],
            "starting the database read-only from the existing data directory",
        ),
        _ => decision(vec![], "waiting for the DCS to be initialised"),
    }
}

fn clone_replica<E: Engine>(o: &Observation<E>, c: &Cluster) -> Decision {
    match clone_source(o, c) {
        Some(from) => decision(
            vec![Action::Clone { from: from.clone() }],
            format!("cloning a replica from {from}"),
        ),
        None => decision(vec![], "waiting for a running leader to clone from"),
    }
}

/// A running member tagged `clonefrom`, else the leader.
fn clone_source<E: Engine>(o: &Observation<E>, c: &Cluster) -> Option<String> {
    let running = |name: &str| c.member(name).is_some_and(|m| m.state.is_running());
    let tagged = c.members.iter().find(|(n, m)| {
        n.as_str() != o.me
            && m.value.tag_bool("clonefrom")
            && running(n)
            && m.value.role.as_str() == "replica"
    });
    if let Some((n, _)) = tagged {
        return Some(n.clone());
    }
    c.leader_name()
        .filter(|l| *l != o.me && running(l))
        .map(str::to_string)
}

/// Maintenance mode (Patroni's semantics): PostgreSQL is never started, stopped,
/// promoted or demoted automatically. The leader keeps its key only while its primary
/// runs; a running primary without a leader takes the key; replicas are re-pointed at a
/// new leader; a manual switchover to a named candidate still works.
fn paused<E: Engine>(o: &Observation<E>, c: &Cluster) -> Decision {
    let db = o.local.db();
    let primary = db.is_some_and(|d| d.writable);
    let others: Vec<String> = c.members.keys().filter(|n| **n != o.me).cloned().collect();
    match c.leader_name() {
        Some(l) if l == o.me => {
            if !primary && is_standby_cluster(o, c) && db.is_some() {
                if failover_request(c).is_some() && o.lease_renewed {
                    // Patroni's paused standby leader leaves the request unanswered; the
                    // API refuses it, and one written anyway is cleared, not left to
                    // act later.
                    return decision(
                        vec![Action::RenewLeader, Action::ClearFailover],
                        "paused: a switchover is not carried out in a paused standby cluster; clearing the request",
                    );
                }
                return decision(
                    vec![Action::RenewLeader],
                    "paused: keeping the leader key as the standby leader",
                );
            }
            if !primary {
                return decision(
                    vec![Action::ReleaseLeader],
                    "paused: the database is not running as primary; removing the leader key",
                );
            }
            if !o.lease_renewed {
                return decision(vec![], "paused: lease not renewed this turn");
            }
            if let Some(d) = leader_switchover(o, c, true) {
                return d;
            }
            decision(
                vec![
                    Action::RenewLeader,
                    Action::SyncReplication,
                    Action::WriteStatus,
                ],
                "paused: keeping the leader key",
            )
        }
        Some(l) => match db {
            Some(d) if !d.writable => decision(
                vec![Action::Follow {
                    leader: l.to_string(),
                }],
                format!("paused: following leader {l}"),
            ),
            Some(_) => decision(
                vec![],
                format!(
                    "paused: running as a primary while {l} holds the leader key; not demoting"
                ),
            ),
            None => decision(
                vec![],
                "paused: the database is not running; not starting it",
            ),
        },
        None if primary && o.lease_renewed => decision(
            vec![
                Action::AcquireLeader,
                Action::Retain { members: others },
                Action::WriteStatus,
            ],
            "paused: the leader key is vacant and we run a primary: taking it",
        ),
        None => {
            let named =
                failover_request(c).and_then(|f| f.member.as_deref()) == Some(o.me.as_str());
            match db {
                Some(d)
                    if !d.writable
                        && named
                        && o.lease_renewed
                        && o.tags.may_become_leader()
                        && sync_allows(c, &o.me)
                        && !(candidate_needs_votes(c)
                            && quorum_refusal(c, &o.me, d.position.unwrap_or(0), &o.peers)
                                .is_some()) =>
                {
                    if is_standby_cluster(o, c) {
                        return decision(
                            vec![
                                Action::AcquireLeader,
                                Action::FollowRemote,
                                Action::Retain { members: others },
                                Action::WriteStatus,
                            ],
                            "paused: we are the candidate of a manual failover: taking the leader key, to lead the standby cluster following the remote primary",
                        );
                    }
                    decision(
                        vec![
                            Action::AcquireLeader,
                            Action::Promote {
                                reason: "manual switchover".into(),
                            },
                            Action::Retain { members: others },
                            Action::WriteStatus,
                        ],
                        "paused: we are the candidate of a manual switchover: taking the leader key",
                    )
                }
                _ => decision(
                    vec![],
                    "paused: no leader; not promoting anyone automatically",
                ),
            }
        }
    }
}

/// An operator request accepted by the loop (its filters already checked).
fn manual_task<E: Engine>(o: &Observation<E>, c: &Cluster, task: &ManualTask) -> Decision {
    let leads = c.leader_name() == Some(o.me.as_str());
    match task {
        ManualTask::Restart { timeout } => {
            let as_primary = o.local.db().is_some_and(|d| d.writable)
                || (!o.local.running && leads && o.local.was_primary);
            if as_primary && !(leads && o.lease_renewed) {
                return decision(
                    vec![],
                    "restart requested, but a primary restarts only while we hold the leader key with a renewed lease",
                );
            }
            let mut actions = Vec::new();
            if as_primary {
                actions.push(Action::RenewLeader);
            }
            actions.push(Action::Restart {
                as_primary,
                timeout: *timeout,
            });
            decision(actions, "restarting the database as requested")
        }
        ManualTask::Reinitialize { from } => {
            if leads {
                return decision(vec![], "reinitialize refused: we hold the leader key");
            }
            decision(
                vec![Action::Reinitialize { from: from.clone() }],
                format!("reinitializing from {from} as requested"),
            )
        }
    }
}

fn start_stopped<E: Engine>(o: &Observation<E>, c: &Cluster) -> Decision {
    match c.leader_name() {
        Some(l) if l == o.me && is_standby_cluster(o, c) => standby_leader_start(o),
        Some(l) if l == o.me && o.local.was_primary => primary_down(o, c, true),
        Some(l) if l != o.me => {
            let start = Action::Start(StartAs::Replica {
                upstream: Some(l.to_string()),
            });
            if let Some(why) =
                o.local
                    .engine
                    .recopy_before_following(o.local.was_primary, c, &o.me, l)
            {
                return decision(
                    vec![
                        Action::Clone {
                            from: l.to_string(),
                        },
                        start,
                    ],
                    why,
                );
            }
            if let Some(why) = o
                .local
                .engine
                .repair_before_following(o.local.was_primary, c, l)
            {
                return decision(
                    vec![
                        Action::Repair {
                            from: l.to_string(),
                        },
                        start,
                    ],
                    why,
                );
            }
            decision(
                vec![start],
                format!("starting the database as a replica of {l}"),
            )
        }
        _ => decision(
            vec![Action::Start(StartAs::Replica { upstream: None })],
            "starting the database read-only; no leader to follow yet",
        ),
    }
}

/// We hold the leader key but our primary is down (`stopped`) or not answering yet
/// (crash recovery). Restart in place while `primary_start_timeout` allows; after that
/// hand the key over so a replica can take over.
fn primary_down<E: Engine>(o: &Observation<E>, c: &Cluster, stopped: bool) -> Decision {
    let timeout = c.dynamic_config().primary_start_timeout_duration();
    let down = o.primary_down_for.unwrap_or_default();
    if down >= timeout {
        return decision(
            vec![Action::ReleaseLeader],
            format!(
                "the database has been down {}s, primary_start_timeout is {}s: releasing the leader key",
                down.as_secs(),
                timeout.as_secs()
            ),
        );
    }
    if !o.lease_renewed {
        return decision(
            vec![],
            "our primary is down and our lease was not renewed this turn; waiting",
        );
    }
    if let Some(why) = stopped
        .then(|| o.local.engine.restart_refusal(c, &o.me))
        .flatten()
    {
        return decision(vec![Action::ReleaseLeader], why);
    }
    if stopped {
        decision(
            vec![Action::RenewLeader, Action::Start(StartAs::Primary)],
            "restarting the database as primary: we still hold the leader key",
        )
    } else {
        decision(
            vec![Action::RenewLeader],
            "the database (primary) is starting; keeping the leader key",
        )
    }
}

fn as_leader<E: Engine>(o: &Observation<E>, c: &Cluster, db: &Db) -> Decision {
    if let Some(why) = &o.watchdog_missing {
        return decision(
            vec![Action::ReleaseLeader],
            format!("watchdog.mode is required but the watchdog is unusable ({why}): releasing the leader key"),
        );
    }
    if !o.lease_renewed {
        // Without a renewal this turn we cannot be sure the key outlives this turn.
        return decision(
            vec![],
            "lease not renewed this turn; taking no leader action",
        );
    }
    let others: Vec<String> = c.members.keys().filter(|n| **n != o.me).cloned().collect();
    if is_standby_cluster(o, c) {
        return standby_leader(o, c, db, others);
    }
    if !db.writable {
        if let Some(why) = o.local.engine.promotion_refusal(c, &o.me) {
            // E.g. we took the key on a snapshot that went stale while we were frozen,
            // and another node was promoted meanwhile (PostgreSQL: promoting would reuse
            // its timeline ID). Let a node that followed it lead.
            return decision(
                vec![Action::ReleaseLeader],
                format!("holding the leader key but not promoting: {why}; releasing the key"),
            );
        }
        return decision(
            vec![
                Action::RenewLeader,
                Action::Promote {
                    reason: "promoted: holds the leader key".into(),
                },
                Action::Retain { members: others },
                Action::WriteStatus,
            ],
            "holding the leader key: promoting",
        );
    }
    if let Some(d) = leader_switchover(o, c, false) {
        return d;
    }
    decision(
        vec![
            Action::RenewLeader,
            Action::ConfigurePrimary,
            Action::SyncReplication,
            Action::Retain { members: others },
            Action::WriteStatus,
        ],
        "no action: I am the leader with the lock",
    )
}

fn as_follower<E: Engine>(o: &Observation<E>, c: &Cluster, db: &Db, leader: &str) -> Decision {
    if db.writable {
        return decision(
            vec![Action::Demote {
                upstream: Some(leader.to_string()),
            }],
            format!("demoting: {leader} holds the leader key"),
        );
    }
    // A `nostream` member replays the archive only: never streaming is its normal.
    let stuck = !db.streaming
        && !o.tags.nostream
        && o.not_streaming_for
            .is_some_and(|d| d.as_secs() >= u64::from(c.dynamic_config().ttl));
    if let Some(why) = o.local.engine.repair_stuck_replica(c, leader, stuck) {
        let l = leader.to_string();
        return decision(
            vec![
                Action::Demote {
                    upstream: Some(l.clone()),
                },
                Action::Repair { from: l.clone() },
                Action::Start(StartAs::Replica { upstream: Some(l) }),
            ],
            why,
        );
    }
    decision(
        vec![Action::Follow {
            leader: leader.to_string(),
        }],
        format!("no action: streaming from leader {leader}"),
    )
}

fn vacant_leader<E: Engine>(o: &Observation<E>, c: &Cluster, db: &Db) -> Decision {
    if !o.lease_renewed && db.writable {
        // Our key is gone (it expired, e.g. after holding on in failsafe mode) and we
        // cannot take it back without a renewal: a primary with neither key nor
        // deadline has nothing left to fence it, and another member may be promoted.
        return decision(
            vec![Action::Demote { upstream: None }],
            "running as primary without the leader key, and our lease was not renewed this turn: demoting",
        );
    }
    if !o.lease_renewed {
        return decision(
            vec![],
            "leader key vacant but our lease was not renewed this turn",
        );
    }
    let others: Vec<String> = c.members.keys().filter(|n| **n != o.me).cloned().collect();
    if db.writable {
        if let Some(why) = o.local.engine.primary_refusal(c) {
            // Another node was promoted while we were away (frozen, cut off): our
            // primary's writes since are on a dead branch. Taking the key back would
            // discard that promotion.
            return decision(
                vec![Action::Demote { upstream: None }],
                format!("running as primary but not taking the vacant leader key: {why}; demoting"),
            );
        }
        if is_standby_cluster(o, c) {
            return decision(
                vec![Action::AcquireLeader, Action::StopPrimary],
                "leader key vacant and we run as primary in a standby cluster: taking it, to restart as the standby leader",
            );
        }
        return decision(
            vec![
                Action::AcquireLeader,
                Action::ConfigurePrimary,
                Action::Retain { members: others },
                Action::WriteStatus,
            ],
            "leader key vacant and we run as primary: taking it back",
        );
    }
    let refusal = match failover_race(o, c) {
        Some(false) => Some("a manual switchover names another member".to_string()),
        Some(true) => candidate_refusal(o, c, db),
        None => race_refusal(o, c, db),
    };
    match refusal {
        Some(why) => decision(vec![], format!("not racing for the leader key: {why}")),
        // A standby cluster's new leader follows the remote primary: no promotion, so no
        // new timeline and nothing reserved in /history.
        None if is_standby_cluster(o, c) => decision(
            vec![
                Action::AcquireLeader,
                Action::FollowRemote,
                Action::Retain { members: others },
                Action::WriteStatus,
            ],
            "leader key vacant and we are the healthiest replica: racing, to lead the standby cluster following the remote primary",
        ),
        None => decision(
            vec![
                Action::AcquireLeader,
                Action::Promote {
                    reason: "no recovery target specified".into(),
                },
                Action::Retain { members: others },
                Action::WriteStatus,
            ],
            "leader key vacant and we are the healthiest replica: racing",
        ),
    }
}

/// The config makes this cluster a standby of another (`standby_cluster`), and the
/// engine can run one: its leader follows the remote primary and is never promoted.
/// Without a `config` key in the DCS (deleted, or a wiped DCS) the member's own
/// `bootstrap.dcs` answers, as Patroni's global config falls back to the local one: a
/// missing key must never promote a standby leader.
fn is_standby_cluster<E: Engine>(o: &Observation<E>, c: &Cluster) -> bool {
    o.local.engine.supports_standby_cluster()
        && c.config
            .as_ref()
            .map_or(o.local_standby_cluster, |v| v.value.is_standby_cluster())
}

/// We hold the key of a standby cluster (lease renewed this turn).
fn standby_leader<E: Engine>(
    o: &Observation<E>,
    c: &Cluster,
    db: &Db,
    others: Vec<String>,
) -> Decision {
    if db.writable {
        // `standby_cluster` was set on a primary cluster (`demote-cluster`): stop, then
        // start following the remote (repaired first where it forked from us).
        return decision(
            vec![Action::RenewLeader, Action::StopPrimary],
            "the cluster became a standby cluster: stopping the primary to restart it as the standby leader",
        );
    }
    // Patroni's standby leader acts on the `failover` key as a primary does: a
    // switchover hands the key to the candidate, which then follows the remote (no
    // promotion); a request that cannot be carried out is cleared, so no stale key is
    // left to hold back a later race.
    if let Some(d) = leader_switchover(o, c, false) {
        return d;
    }
    decision(
        vec![
            Action::RenewLeader,
            Action::FollowRemote,
            Action::Retain { members: others },
            Action::WriteStatus,
        ],
        "no action: I am the standby leader with the lock, following the remote primary",
    )
}

/// We hold a standby cluster's key and our database is stopped: start it following the
/// remote primary, after a repair where the engine says the data may have forked.
fn standby_leader_start<E: Engine>(o: &Observation<E>) -> Decision {
    if !o.lease_renewed {
        return decision(
            vec![],
            "the standby leader's database is stopped and our lease was not renewed this turn; waiting",
        );
    }
    let start = Action::Start(StartAs::StandbyLeader);
    match o
        .local
        .engine
        .repair_before_following_remote(o.local.was_primary)
    {
        Some(why) => decision(
            vec![Action::RenewLeader, Action::RepairFromRemote, start],
            why,
        ),
        None => decision(
            vec![Action::RenewLeader, start],
            "starting the database as the standby leader, following the remote primary",
        ),
    }
}
