//! The HA decision: a pure function from an [`Observation`] to actions.
//!
//! No I/O and no clock: everything time-dependent arrives as a fact in the observation
//! (e.g. `lease_valid`). Each branch returns a short note saying why, which the loop logs
//! and `/patroni` shows.

use super::action::{Action, StartAs};
use super::observation::{Observation, Peer, PeerStatus, Tags};
use crate::pg::sql::Probe;
use crate::pg::DataDir;
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

fn paused(o: &Observation, c: &Cluster) -> Decision {
    let leader = c.leader_name();
    if leader == Some(o.me.as_str()) && o.local.probe.as_ref().is_some_and(|p| !p.in_recovery) {
        return decision(
            vec![Action::RenewLeader, Action::WriteStatus],
            "paused: keeping the leader key",
        );
    }
    decision(vec![], "paused: no automatic actions")
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
    decision(
        vec![
            Action::RenewLeader,
            Action::ConfigurePrimary,
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
    match race_refusal(o, c, probe) {
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

/// Why this replica must not race for the vacant leader key, or `None` if it may.
pub fn race_refusal(o: &Observation, c: &Cluster, probe: &Probe) -> Option<String> {
    if !o.tags.may_become_leader() {
        return Some("tagged nofailover (or failover_priority 0)".into());
    }
    if let Some(why) = &o.watchdog_missing {
        return Some(format!(
            "watchdog.mode is required but the watchdog is unusable ({why})"
        ));
    }
    if cfg_failsafe_excludes(o, c) {
        return Some("failsafe mode is on and we are not listed in /failsafe".into());
    }
    if o.failsafe_leader_active {
        return Some("the leader confirmed itself to us in failsafe mode within ttl".into());
    }
    let cfg = c.dynamic_config();
    let mine = probe.wal_position.unwrap_or(0);
    if let Some(optime) = c.status.as_ref().and_then(|s| s.optime) {
        let lag = optime.saturating_sub(mine);
        if lag > cfg.maximum_lag_on_failover {
            return Some(format!(
                "lag {lag} bytes behind the last leader position exceeds maximum_lag_on_failover ({})",
                cfg.maximum_lag_on_failover
            ));
        }
    }
    if cfg.check_timeline {
        if let (Some(hist), Some(tl)) = (c.history_timeline(), probe.timeline) {
            if tl <= hist {
                return Some(format!(
                    "timeline {tl} is not ahead of the cluster history ({hist})"
                ));
            }
        }
    }
    let optime = c.status.as_ref().and_then(|s| s.optime);
    let history_tl = c.history_timeline();
    // The same lag and timeline rules we apply to ourselves decide whether a peer
    // could win the race; only such a peer is worth deferring to.
    let peer_may_race = |s: &PeerStatus| {
        let lag_ok =
            optime.is_none_or(|o| o.saturating_sub(s.wal_position) <= cfg.maximum_lag_on_failover);
        let tl_ok = !cfg.check_timeline
            || matches!((history_tl, s.timeline), (Some(h), Some(t)) if t > h)
            || history_tl.is_none();
        lag_ok && tl_ok
    };
    better_peer(&o.tags, mine, &o.peers, peer_may_race)
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
