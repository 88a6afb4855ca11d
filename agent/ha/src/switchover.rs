//! Planned switchovers and manual failovers (pure, part of the decision core): the
//! `failover` key's request, its schedule, the leader's hand-over and the candidate's
//! race.

use crate::action::Action;
use crate::decide::{decision, Decision};
use crate::engine::Engine;
use crate::observation::{Observation, Peer};
use crate::race::sync_allows;
use warden_consensus::types::Failover;
use warden_consensus::Cluster;

/// The `failover` key's request, if there is one.
pub(crate) fn failover_request(c: &Cluster) -> Option<&Failover> {
    c.failover
        .as_ref()
        .map(|f| &f.value)
        .filter(|f| !f.is_empty())
}

/// Whether a scheduled switchover is due: `Ok(true)` now, `Ok(false)` later, `Err` stale
/// or unreadable (Patroni drops a request more than two loop_waits late).
pub(crate) fn schedule_due<E: Engine>(
    o: &Observation<E>,
    c: &Cluster,
    f: &Failover,
) -> Result<bool, String> {
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
pub(crate) fn leader_switchover<E: Engine>(
    o: &Observation<E>,
    c: &Cluster,
    paused: bool,
) -> Option<Decision> {
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
pub(crate) fn switchover_candidate<E: Engine>(
    o: &Observation<E>,
    c: &Cluster,
    named: Option<&str>,
) -> Result<String, String> {
    let max_lag = c.dynamic_config().maximum_lag_on_failover;
    let mine = o.local.db().and_then(|d| d.position).unwrap_or(0);
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
        let lag = mine.saturating_sub(s.position);
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
                .map_or((0, 0), |s| (s.position, s.priority));
            (s.0, s.1, std::cmp::Reverse(p.name.clone()))
        })
        .map(|p| p.name.clone())
        .ok_or_else(|| "no healthy replica to switch over to".to_string())
}

/// With the leader key vacant and a `failover` request present: `Some(true)` if we are
/// its candidate and should race regardless of peers, `Some(false)` if we must stay out
/// of the race, `None` if the request does not apply (normal race rules).
pub(crate) fn failover_race<E: Engine>(o: &Observation<E>, c: &Cluster) -> Option<bool> {
    let f = failover_request(c)?;
    // Not due yet, or stale (nobody carried it out in time): a stale request must never
    // hold back a failover, so the usual race decides.
    if !matches!(schedule_due(o, c, f), Ok(true)) {
        return None;
    }
    // Patroni's rule: a named candidate that did not answer our probe, or answered that
    // it may not lead, is no reason for the others to stay out of the race.
    let unfit = |m: &str| {
        o.peers
            .iter()
            .find(|p| p.name == m)
            .is_some_and(|p| p.status.as_ref().is_none_or(|s| !s.may_become_leader))
    };
    match f.member.as_deref() {
        Some(m) if m == o.me => Some(true),
        Some(m) if c.member(m).is_some_and(|x| x.state.is_running()) && !unfit(m) => Some(false),
        // The former leader stays out while another member could take over; when none
        // answered that it may lead (the candidate died before clearing the request),
        // staying out would leave the cluster without a leader: the usual race decides.
        _ if f.leader.as_deref() == Some(o.me.as_str()) => {
            let another_may_lead = o
                .peers
                .iter()
                .any(|p| p.status.as_ref().is_some_and(|s| s.may_become_leader));
            another_may_lead.then_some(false)
        }
        _ => None,
    }
}
