//! The HA decision: a pure function from an [`Observation`] to actions.
//!
//! No I/O and no clock: everything time-dependent arrives as a fact in the observation
//! (e.g. `lease_valid`). Each branch returns a short note saying why, which the loop logs
//! and `/patroni` shows.

use super::action::{Action, StartAs};
use super::observation::{ManualTask, Observation, Peer, PeerStatus, Tags};
use crate::pg::sql::Probe;
use crate::pg::DataDir;
use warden_consensus::types::Failover;
use warden_consensus::Cluster;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub note: String,
}

fn decision(actions: Vec<Action>, note: impl Into<String>) -> Decision {
    Decision {
        actions,
        note: note.into(),
    }
}

pub fn decide(o: &Observation) -> Decision {
    let Some(c) = o.cluster.as_ref() else {
        return dcs_unreachable(o);
    };

    match c.initialize.as_deref() {
        None => return uninitialized_cluster(o, c),
        Some("") => {
            if o.bootstrapped_here && o.local.probe.as_ref().is_some_and(|p| !p.in_recovery) {
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
            if o.local.data != DataDir::Initialized {
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

    if o.local.data != DataDir::Initialized {
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
    let Some(probe) = o.local.probe.as_ref() else {
        if c.leader_name() == Some(o.me.as_str()) && o.local.was_primary {
            return primary_down(o, c, false);
        }
        return decision(vec![], "PostgreSQL is starting");
    };
    match c.leader_name() {
        Some(l) if l == o.me => as_leader(o, c, probe),
        Some(l) => as_follower(o, c, probe, l),
        None => vacant_leader(o, c, probe),
    }
}

fn dcs_unreachable(o: &Observation) -> Decision {
    let primary = o.local.probe.as_ref().is_some_and(|p| !p.in_recovery);
    if primary && o.failsafe_confirmed == Some(true) {
        return decision(
            vec![Action::FailsafeHold],
            "DCS unreachable; every member confirmed us over REST (failsafe mode): staying primary",
        );
    }
    if primary && !o.lease_valid {
        return decision(
            vec![Action::Demote { upstream: None }],
            "DCS unreachable and the lease deadline passed: demoting to read-only",
        );
    }
    if !o.local.running && o.local.data == DataDir::Initialized {
        // Without the DCS we cannot know who leads: only ever come back read-only.
        return decision(
            vec![Action::StartPostgres(StartAs::Replica { upstream: None })],
            "DCS unreachable: starting PostgreSQL read-only",
        );
    }
    decision(vec![], "DCS unreachable; keeping the current state")
}

/// No `initialize` key: a brand-new cluster, or one whose DCS state was wiped.
fn uninitialized_cluster(o: &Observation, c: &Cluster) -> Decision {
    if o.local.data != DataDir::Initialized && !o.tags.may_become_leader() {
        // Patroni's rule: a member that may never lead does not bootstrap the cluster.
        return decision(
            vec![],
            "tagged nofailover: waiting for another member to bootstrap",
        );
    }
    if o.local.data != DataDir::Initialized {
        return decision(
            vec![Action::RaceInitialize, Action::Bootstrap],
            "racing to bootstrap a new cluster",
        );
    }
    // Existing data but no DCS record: a running primary re-registers the cluster.
    let primary = o.local.probe.as_ref().is_some_and(|p| !p.in_recovery);
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
            vec![Action::AcquireLeader, Action::StartPostgres(StartAs::Primary)],
            "DCS has no record of this cluster: restarting the former primary under the leader key",
        ),
        _ if !o.local.running => decision(
            vec![Action::StartPostgres(StartAs::Replica { upstream: None })],
            "starting PostgreSQL read-only from the existing data directory",
        ),
        _ => decision(vec![], "waiting for the DCS to be initialised"),
    }
}

fn clone_replica(o: &Observation, c: &Cluster) -> Decision {
    match clone_source(o, c) {
        Some(from) => decision(
            vec![Action::Clone { from: from.clone() }],
            format!("cloning a replica from {from}"),
        ),
        None => decision(vec![], "waiting for a running leader to clone from"),
    }
}

/// A running member tagged `clonefrom`, else the leader.
fn clone_source(o: &Observation, c: &Cluster) -> Option<String> {
    let running = |name: &str| c.member(name).is_some_and(|m| m.state == "running");
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
fn paused(o: &Observation, c: &Cluster) -> Decision {
    let probe = o.local.probe.as_ref();
    let primary = probe.is_some_and(|p| !p.in_recovery);
    let others: Vec<String> = c.members.keys().filter(|n| **n != o.me).cloned().collect();
    match c.leader_name() {
        Some(l) if l == o.me => {
            if !primary {
                return decision(
                    vec![Action::ReleaseLeader],
                    "paused: PostgreSQL is not running as primary; removing the leader key",
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
        Some(l) => match probe {
            Some(p) if p.in_recovery => decision(
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
            None => decision(vec![], "paused: PostgreSQL is not running; not starting it"),
        },
        None if primary && o.lease_renewed => decision(
            vec![
                Action::AcquireLeader,
                Action::EnsureSlots { members: others },
                Action::WriteStatus,
            ],
            "paused: the leader key is vacant and we run a primary: taking it",
        ),
        None => {
            let named =
                failover_request(c).and_then(|f| f.member.as_deref()) == Some(o.me.as_str());
            match probe {
                Some(p)
                    if p.in_recovery
                        && named
                        && o.lease_renewed
                        && o.tags.may_become_leader()
                        && sync_allows(c, &o.me)
                        && !(candidate_needs_votes(c)
                            && quorum_refusal(c, &o.me, p.wal_position.unwrap_or(0), &o.peers)
                                .is_some()) =>
                {
                    decision(
                        vec![
                            Action::AcquireLeader,
                            Action::Promote {
                                reason: "manual switchover".into(),
                            },
                            Action::EnsureSlots { members: others },
                            Action::WriteStatus,
                        ],
                        "paused: we are the candidate of a manual switchover: taking the leader key",
                    )
                }
                _ => decision(vec![], "paused: no leader; not promoting anyone automatically"),
            }
        }
    }
}

/// An operator request accepted by the loop (its filters already checked).
fn manual_task(o: &Observation, c: &Cluster, task: &ManualTask) -> Decision {
    let leads = c.leader_name() == Some(o.me.as_str());
    match task {
        ManualTask::Restart { timeout } => {
            let as_primary = o.local.probe.as_ref().is_some_and(|p| !p.in_recovery)
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
            decision(actions, "restarting PostgreSQL as requested")
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

/// The `failover` key's request, if there is one.
fn failover_request(c: &Cluster) -> Option<&Failover> {
    c.failover
        .as_ref()
        .map(|f| &f.value)
        .filter(|f| !f.is_empty())
}

/// Whether a scheduled switchover is due: `Ok(true)` now, `Ok(false)` later, `Err` stale
/// or unreadable (Patroni drops a request more than two loop_waits late).
fn schedule_due(o: &Observation, c: &Cluster, f: &Failover) -> Result<bool, String> {
    let Some(text) = f.scheduled_at.as_deref() else {
        return Ok(true);
    };
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("scheduled_at {text:?} is not an ISO 8601 time: {e}"))?
        .with_timezone(&chrono::Utc);
    let late = o.now.signed_duration_since(at);
    if late < chrono::TimeDelta::zero() {
        return Ok(false);
    }
    let grace = i64::from(c.dynamic_config().loop_wait.max(1)) * 2;
    if late.num_seconds() > grace {
        return Err(format!("the switchover scheduled at {text} is stale"));
    }
    Ok(true)
}

/// On the leader with a running primary: act on the `failover` key. `None` when there
/// is nothing to do (no request, or one scheduled for later).
fn leader_switchover(o: &Observation, c: &Cluster, paused: bool) -> Option<Decision> {
    let f = failover_request(c)?;
    let keep = |note: String| {
        Some(decision(
            vec![
                Action::RenewLeader,
                Action::ClearFailover,
                Action::WriteStatus,
            ],
            note,
        ))
    };
    if f.member.as_deref() == Some(o.me.as_str()) {
        return keep("we lead, as the switchover request asked: clearing it".into());
    }
    if let Some(l) = f.leader.as_deref().filter(|l| *l != o.me) {
        return keep(format!(
            "switchover request names {l} as leader, not us: clearing it"
        ));
    }
    if f.scheduled_at.is_some() && paused {
        return keep("scheduled switchovers are not carried out while paused: clearing it".into());
    }
    if f.member.is_none() && paused {
        return keep("while paused a switchover needs a named candidate: clearing it".into());
    }
    match schedule_due(o, c, f) {
        Err(why) => return keep(format!("{why}: clearing it")),
        Ok(false) => return None,
        Ok(true) => {}
    }
    match switchover_candidate(o, c, f.member.as_deref()) {
        Ok(candidate) => Some(decision(
            vec![Action::HandOver {
                candidate: candidate.clone(),
            }],
            format!("switchover: handing the leader key over to {candidate}"),
        )),
        Err(why) => keep(format!(
            "switchover is not possible: {why}; clearing the request"
        )),
    }
}

/// The member a switchover hands over to: the named one if it is a healthy replica close
/// enough to us, else (when none was named) the best such replica.
fn switchover_candidate(
    o: &Observation,
    c: &Cluster,
    named: Option<&str>,
) -> Result<String, String> {
    let max_lag = c.dynamic_config().maximum_lag_on_failover;
    let mine = o
        .local
        .probe
        .as_ref()
        .and_then(|p| p.wal_position)
        .unwrap_or(0);
    let check = |p: &Peer| -> Result<(), String> {
        if !sync_allows(c, &p.name) {
            return Err(format!("{} is not a synchronous standby", p.name));
        }
        let Some(s) = p.status.as_ref() else {
            return Err(format!("{} did not answer", p.name));
        };
        if s.is_primary {
            return Err(format!("{} runs as a primary", p.name));
        }
        if !s.may_become_leader {
            return Err(format!("{} is tagged nofailover", p.name));
        }
        let lag = mine.saturating_sub(s.wal_position);
        if lag > max_lag {
            return Err(format!(
                "{} is {lag} bytes behind, more than maximum_lag_on_failover ({max_lag})",
                p.name
            ));
        }
        Ok(())
    };
    if let Some(name) = named {
        let Some(peer) = o.peers.iter().find(|p| p.name == name) else {
            return Err(format!("candidate {name} is not a member of the cluster"));
        };
        return check(peer).map(|()| name.to_string());
    }
    o.peers
        .iter()
        .filter(|p| check(p).is_ok())
        .max_by_key(|p| {
            let s = p
                .status
                .as_ref()
                .map_or((0, 0), |s| (s.wal_position, s.priority));
            (s.0, s.1, std::cmp::Reverse(p.name.clone()))
        })
        .map(|p| p.name.clone())
        .ok_or_else(|| "no healthy replica to switch over to".to_string())
}

/// With the leader key vacant and a `failover` request present: `Some(true)` if we are
/// its candidate and should race regardless of peers, `Some(false)` if we must stay out
/// of the race, `None` if the request does not apply (normal race rules).
fn failover_race(o: &Observation, c: &Cluster) -> Option<bool> {
    let f = failover_request(c)?;
    if matches!(schedule_due(o, c, f), Ok(false)) {
        return None;
    }
    match f.member.as_deref() {
        Some(m) if m == o.me => Some(true),
        Some(m) if c.member(m).is_some_and(|x| x.state == "running") => Some(false),
        _ if f.leader.as_deref() == Some(o.me.as_str()) => Some(false),
        _ => None,
    }
}

fn start_stopped(o: &Observation, c: &Cluster) -> Decision {
    match c.leader_name() {
        Some(l) if l == o.me && o.local.was_primary => primary_down(o, c, true),
        Some(l) if l != o.me => {
            let start = Action::StartPostgres(StartAs::Replica {
                upstream: Some(l.to_string()),
            });
            if o.local.was_primary && !o.local.rewound && o.use_pg_rewind {
                // A former primary may have WAL the new leader never received: rewind
                // it onto the leader's timeline (a no-op when nothing diverged).
                return decision(
                    vec![
                        Action::Rewind {
                            from: l.to_string(),
                        },
                        start,
                    ],
                    format!("former primary rejoining: pg_rewind from {l}, then follow it"),
                );
            }
            let leader_tl = c.member(l).and_then(|m| m.timeline);
            if let (Some(mine), Some(theirs)) = (o.local.stopped_timeline, leader_tl) {
                if mine < theirs && o.use_pg_rewind {
                    // E.g. a replica stopped for a rewind that then failed (its source
                    // died): started as is it may never get past the fork point
                    // ("requested timeline does not contain minimum recovery point").
                    // pg_rewind is a no-op when nothing diverged.
                    return decision(
                        vec![
                            Action::Rewind {
                                from: l.to_string(),
                            },
                            start,
                        ],
                        format!(
                            "stopped on timeline {mine}, behind {l}'s {theirs}: pg_rewind from {l}, then follow it"
                        ),
                    );
                }
            }
            decision(
                vec![start],
                format!("starting PostgreSQL as a replica of {l}"),
            )
        }
        _ => decision(
            vec![Action::StartPostgres(StartAs::Replica { upstream: None })],
            "starting PostgreSQL read-only; no leader to follow yet",
        ),
    }
}

/// We hold the leader key but our primary is down (`stopped`) or not answering yet
/// (crash recovery). Restart in place while `primary_start_timeout` allows; after that
/// hand the key over so a replica can take over.
fn primary_down(o: &Observation, c: &Cluster, stopped: bool) -> Decision {
    let timeout =
        std::time::Duration::from_secs(u64::from(c.dynamic_config().primary_start_timeout));
    let down = o.primary_down_for.unwrap_or_default();
    if down >= timeout {
        return decision(
            vec![Action::ReleaseLeader],
            format!(
                "PostgreSQL has been down {}s, primary_start_timeout is {}s: releasing the leader key",
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
    if stopped {
        decision(
            vec![Action::RenewLeader, Action::StartPostgres(StartAs::Primary)],
            "restarting PostgreSQL as primary: we still hold the leader key",
        )
    } else {
        decision(
            vec![Action::RenewLeader],
            "PostgreSQL (primary) is starting; keeping the leader key",
        )
    }
}

fn as_leader(o: &Observation, c: &Cluster, probe: &Probe) -> Decision {
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
    if probe.in_recovery {
        if let Some(why) = timeline_refusal(c, probe.newest_timeline.or(probe.timeline)) {
            // E.g. we took the key on a snapshot that went stale while we were frozen,
            // and another node was promoted meanwhile: promoting would reuse its
            // timeline ID. Let a node that followed it lead.
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
                Action::EnsureSlots { members: others },
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
            Action::EnsureSlots { members: others },
            Action::WriteStatus,
        ],
        "no action: I am the leader with the lock",
    )
}

fn as_follower(o: &Observation, c: &Cluster, probe: &Probe, leader: &str) -> Decision {
    if !probe.in_recovery {
        return decision(
            vec![Action::Demote {
                upstream: Some(leader.to_string()),
            }],
            format!("demoting: {leader} holds the leader key"),
        );
    }
    // A replica left on an older timeline that cannot stream (its WAL went past the
    // leader's fork point, e.g. a former primary restarted read-only) never catches up
    // by itself: stop it, rewind it onto the leader's timeline, start it again.
    let leader_tl = c.member(leader).and_then(|m| m.timeline);
    let behind = matches!((probe.timeline, leader_tl), (Some(mine), Some(theirs)) if mine < theirs);
    let stuck = o
        .not_streaming_for
        .is_some_and(|d| d.as_secs() >= u64::from(c.dynamic_config().ttl));
    if behind && stuck && !probe.streaming && o.use_pg_rewind {
        let l = leader.to_string();
        return decision(
            vec![
                Action::Demote {
                    upstream: Some(l.clone()),
                },
                Action::Rewind { from: l.clone() },
                Action::StartPostgres(StartAs::Replica { upstream: Some(l) }),
            ],
            format!("replica stuck on an older timeline than {leader}: rewinding it"),
        );
    }
    decision(
        vec![Action::Follow {
            leader: leader.to_string(),
        }],
        format!("no action: streaming from leader {leader}"),
    )
}

fn vacant_leader(o: &Observation, c: &Cluster, probe: &Probe) -> Decision {
    if !o.lease_renewed {
        return decision(
            vec![],
            "leader key vacant but our lease was not renewed this turn",
        );
    }
    let others: Vec<String> = c.members.keys().filter(|n| **n != o.me).cloned().collect();
    if !probe.in_recovery {
        if let Some(why) = timeline_refusal(c, probe.timeline) {
            // Another node was promoted while we were away (frozen, cut off): our
            // primary's writes since are on a dead branch. Taking the key back would
            // discard that promotion.
            return decision(
                vec![Action::Demote { upstream: None }],
                format!("running as primary but not taking the vacant leader key: {why}; demoting"),
            );
        }
        return decision(
            vec![
                Action::AcquireLeader,
                Action::ConfigurePrimary,
                Action::EnsureSlots { members: others },
                Action::WriteStatus,
            ],
            "leader key vacant and we run as primary: taking it back",
        );
    }
    let refusal = match failover_race(o, c) {
        Some(false) => Some("a manual switchover names another member".to_string()),
        Some(true) => candidate_refusal(o, c, probe),
        None => race_refusal(o, c, probe),
    };
    match refusal {
        Some(why) => decision(vec![], format!("not racing for the leader key: {why}")),
        None => decision(
            vec![
                Action::AcquireLeader,
                Action::Promote {
                    reason: "no recovery target specified".into(),
                },
                Action::EnsureSlots { members: others },
                Action::WriteStatus,
            ],
            "leader key vacant and we are the healthiest replica: racing",
        ),
    }
}

/// In failsafe mode only members the last leader listed in `/failsafe` (and so asked
/// for confirmation) may race; another could promote beside a leader holding on.
fn cfg_failsafe_excludes(o: &Observation, c: &Cluster) -> bool {
    c.dynamic_config().failsafe_mode && c.failsafe.as_ref().is_some_and(|f| !f.contains_key(&o.me))
}

/// The named candidate of a manual switchover races without deferring to peers (the old
/// leader confirmed it has all the WAL), but still only if it may lead and is not too
/// far behind the last leader position.
fn candidate_refusal(o: &Observation, c: &Cluster, probe: &Probe) -> Option<String> {
    let mine = probe.wal_position.unwrap_or(0);
    if let Some(why) = promotable_refusal(o, c, mine) {
        return Some(why);
    }
    if let Some(lsn) = failover_request(c).and_then(|f| f.handover_lsn()) {
        if mine < lsn {
            return Some(format!(
                "the old leader handed over at {lsn}, but we hold WAL only up to {mine}"
            ));
        }
    }
    if candidate_needs_votes(c) {
        return quorum_refusal(c, &o.me, mine, &o.peers);
    }
    None
}

/// What rules out promoting us at all, racer or named candidate: tags, synchronous
/// mode, a required watchdog, and lag behind the last leader position (`mine` is our
/// WAL position).
fn promotable_refusal(o: &Observation, c: &Cluster, mine: u64) -> Option<String> {
    if !o.tags.may_become_leader() {
        return Some("tagged nofailover (or failover_priority 0)".into());
    }
    if let Some(why) = sync_refusal(c, &o.me) {
        return Some(why);
    }
    if let Some(why) = &o.watchdog_missing {
        return Some(format!(
            "watchdog.mode is required but the watchdog is unusable ({why})"
        ));
    }
    let max_lag = c.dynamic_config().maximum_lag_on_failover;
    let optime = c.status.as_ref().and_then(|s| s.optime)?;
    let lag = optime.saturating_sub(mine);
    (lag > max_lag).then(|| {
        format!(
            "lag {lag} bytes behind the last leader position exceeds maximum_lag_on_failover ({max_lag})"
        )
    })
}

/// Synchronous mode: only the last leader and the standbys listed in `/sync` may be
/// promoted automatically; they alone have every acknowledged commit.
pub fn sync_allows(c: &Cluster, name: &str) -> bool {
    if !c.dynamic_config().synchronous_mode.is_enabled() {
        return true;
    }
    c.sync.as_ref().is_some_and(|s| {
        s.value.leader.as_deref() == Some(name) || s.value.standbys().contains(&name)
    })
}

/// The `quorum` of `/sync` while synchronous mode is on: a candidate must see that many
/// `/sync` members (voters and the last leader) besides itself. Warden writes it only in
/// quorum mode, but honours it in any synchronous mode, so a key left by quorum mode
/// stays safe while the mode changes.
pub fn quorum_in_force(c: &Cluster) -> u32 {
    if !c.dynamic_config().synchronous_mode.is_enabled() {
        return 0;
    }
    c.sync.as_ref().and_then(|s| s.value.quorum).unwrap_or(0)
}

/// A named candidate needs quorum votes like any racer unless the old leader handed
/// over to it: then the old leader confirmed it received the shutdown checkpoint and
/// said so in the failover key. A manual failover (no leader), or a switchover whose
/// leader crashed before the hand-over, leaves nobody who confirmed that the candidate
/// has every commit.
pub fn candidate_needs_votes(c: &Cluster) -> bool {
    quorum_in_force(c) > 0 && failover_request(c).is_some_and(|f| f.handover_lsn().is_none())
}

/// Quorum commit (Patroni's rule): every acknowledged commit is on all but at most
/// `quorum` of the `/sync` members, so a candidate is sure to have it only after it
/// heard from `quorum` other members that are not ahead of it (each a vote; it counts
/// itself). The last leader needs no votes: it has every commit it acknowledged. Only
/// members that may be promoted and run PostgreSQL vote.
pub fn quorum_refusal(c: &Cluster, me: &str, mine: u64, peers: &[Peer]) -> Option<String> {
    let quorum = usize::try_from(quorum_in_force(c)).unwrap_or(usize::MAX);
    let sync = &c.sync.as_ref()?.value;
    if quorum == 0 || sync.leader.as_deref() == Some(me) {
        return None;
    }
    let mut members = sync.standbys();
    members.extend(sync.leader.as_deref());
    let votes = peers
        .iter()
        .filter(|p| p.name != me && members.contains(&p.name.as_str()))
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                !s.is_primary && s.may_become_leader && s.wal_position > 0 && s.wal_position <= mine
            })
        })
        .count();
    (votes < quorum).then(|| {
        format!(
            "quorum commit: {votes} of the other /sync members answered and are not ahead of us; {quorum} needed to be sure we have every acknowledged commit"
        )
    })
}

fn sync_refusal(c: &Cluster, me: &str) -> Option<String> {
    (!sync_allows(c, me))
        .then(|| "synchronous mode is on and we are not a synchronous standby in /sync".to_string())
}

/// Why this replica must not race for the vacant leader key, or `None` if it may.
pub fn race_refusal(o: &Observation, c: &Cluster, probe: &Probe) -> Option<String> {
    let mine = probe.wal_position.unwrap_or(0);
    if let Some(why) = promotable_refusal(o, c, mine) {
        return Some(why);
    }
    if cfg_failsafe_excludes(o, c) {
        return Some("failsafe mode is on and we are not listed in /failsafe".into());
    }
    // Only in failsafe mode: outside it no leader legitimately asks (the API refuses the
    // request with 502), and a stray confirmation must not hold off a failover.
    if o.failsafe_leader_active && c.dynamic_config().failsafe_mode {
        return Some("the leader confirmed itself to us in failsafe mode within ttl".into());
    }
    let cfg = c.dynamic_config();
    if let Some(why) = timeline_refusal(c, probe.newest_timeline.or(probe.timeline)) {
        return Some(why);
    }
    let optime = c.status.as_ref().and_then(|s| s.optime);
    // The same lag and timeline rules we apply to ourselves decide whether a peer
    // could win the race; only such a peer is worth deferring to.
    let peer_may_race = |s: &PeerStatus| {
        let lag_ok =
            optime.is_none_or(|o| o.saturating_sub(s.wal_position) <= cfg.maximum_lag_on_failover);
        lag_ok && timeline_refusal(c, s.timeline).is_none()
    };
    let peers: Vec<Peer> = o
        .peers
        .iter()
        // Only a peer that may itself be promoted is worth deferring to; a running
        // primary always blocks the race.
        .filter(|p| sync_allows(c, &p.name) || p.status.as_ref().is_some_and(|s| s.is_primary))
        .cloned()
        .collect();
    better_peer(&o.tags, mine, &peers, peer_may_race)
        .or_else(|| quorum_refusal(c, &o.me, mine, &o.peers))
}

/// Why a node on `timeline` must not be promoted automatically, if it must not.
///
/// Always (unlike Patroni, where this needs `check_timeline`): a node whose newest
/// known timeline is behind the cluster's has not followed the last promotion.
/// PostgreSQL would promote it onto the next timeline ID it knows to be free, which
/// the cluster has already used; two different histories under one timeline ID make
/// later rewinds and streaming go wrong (replicas stuck on "incorrect prev-link").
/// With `check_timeline` an unknown timeline is refused too, as in Patroni.
fn timeline_refusal(c: &Cluster, timeline: Option<u32>) -> Option<String> {
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

/// A peer we should leave the race to: a running primary, or an eligible peer that is
/// further ahead, or as far ahead with a higher `failover_priority`. Equal peers both
/// race and the create-only transaction picks one (deferring to a peer that may itself
/// be unable to race, e.g. by name, could leave the cluster without a leader).
fn better_peer(
    tags: &Tags,
    mine: u64,
    peers: &[Peer],
    peer_may_race: impl Fn(&PeerStatus) -> bool,
) -> Option<String> {
    for p in peers {
        let Some(s) = p.status.as_ref() else { continue };
        if s.is_primary {
            return Some(format!("{} is still running as a primary", p.name));
        }
        if !s.may_become_leader || !peer_may_race(s) {
            continue;
        }
        if s.wal_position > mine {
            return Some(format!(
                "{} has received more WAL ({} > {mine})",
                p.name, s.wal_position
            ));
        }
        if s.wal_position == mine && s.priority > tags.priority() {
            return Some(format!(
                "{} is as far ahead with a higher failover_priority",
                p.name
            ));
        }
    }
    None
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
