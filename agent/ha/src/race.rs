//! Who may be promoted (pure, part of the decision core): the leader race's refusals
//! (tags, synchronous and quorum mode, watchdog, lag, timelines, failsafe membership)
//! and which peer to leave the race to.

use crate::engine::{Db, Engine};
use crate::observation::{Observation, Peer, PeerStatus, Tags};
use crate::switchover::failover_request;
use warden_consensus::Cluster;

/// In failsafe mode only members the last leader listed in `/failsafe` (and so asked
/// for confirmation) may race; another could promote beside a leader holding on.
/// Unless every listed member answered this turn's probe as not running a primary:
/// nobody can be holding on then, and a list whose members cannot lead (e.g. they are
/// behind the cluster's timeline) must not keep the cluster without a leader forever.
pub(crate) fn cfg_failsafe_excludes<E: Engine>(o: &Observation<E>, c: &Cluster) -> bool {
    let Some(listed) = c.failsafe.as_ref() else {
        return false;
    };
    if !c.dynamic_config().failsafe_mode || listed.contains_key(&o.me) {
        return false;
    }
    let nobody_holds_on = listed.keys().all(|name| {
        o.peers
            .iter()
            .any(|p| p.name == *name && p.status.as_ref().is_some_and(|s| !s.is_primary))
    });
    !nobody_holds_on
}

/// The named candidate of a manual switchover races without deferring to peers (the old
/// leader confirmed it has all the WAL), but still only if it may lead and is not too
/// far behind the last leader position.
pub(crate) fn candidate_refusal<E: Engine>(
    o: &Observation<E>,
    c: &Cluster,
    db: &Db,
) -> Option<String> {
    let mine = db.position.unwrap_or(0);
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
pub(crate) fn promotable_refusal<E: Engine>(
    o: &Observation<E>,
    c: &Cluster,
    mine: u64,
) -> Option<String> {
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
                !s.is_primary && s.may_become_leader && s.position > 0 && s.position <= mine
            })
        })
        .count();
    (votes < quorum).then(|| {
        format!(
            "quorum commit: {votes} of the other /sync members answered and are not ahead of us; {quorum} needed to be sure we have every acknowledged commit"
        )
    })
}

pub(crate) fn sync_refusal(c: &Cluster, me: &str) -> Option<String> {
    (!sync_allows(c, me))
        .then(|| "synchronous mode is on and we are not a synchronous standby in /sync".to_string())
}

/// Why this replica must not race for the vacant leader key, or `None` if it may.
pub fn race_refusal<E: Engine>(o: &Observation<E>, c: &Cluster, db: &Db) -> Option<String> {
    let mine = db.position.unwrap_or(0);
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
    if let Some(why) = o.local.engine.promotion_refusal(c, &o.me) {
        return Some(why);
    }
    let optime = c.status.as_ref().and_then(|s| s.optime);
    // The same lag and timeline rules we apply to ourselves decide whether a peer
    // could win the race; only such a peer is worth deferring to.
    let peer_may_race = |name: &str, s: &PeerStatus| {
        let lag_ok =
            optime.is_none_or(|o| o.saturating_sub(s.position) <= cfg.maximum_lag_on_failover);
        lag_ok && o.local.engine.peer_refusal(c, name, s).is_none()
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

/// A peer we should leave the race to: a running primary, or an eligible peer that is
/// further ahead, or as far ahead with a higher `failover_priority`. Equal peers both
/// race and the create-only transaction picks one (deferring to a peer that may itself
/// be unable to race, e.g. by name, could leave the cluster without a leader).
pub(crate) fn better_peer(
    tags: &Tags,
    mine: u64,
    peers: &[Peer],
    peer_may_race: impl Fn(&str, &PeerStatus) -> bool,
) -> Option<String> {
    for p in peers {
        let Some(s) = p.status.as_ref() else { continue };
        if s.is_primary {
            return Some(format!("{} is still running as a primary", p.name));
        }
        if !s.may_become_leader || !peer_may_race(&p.name, s) {
            continue;
        }
        if s.position > mine {
            return Some(format!(
                "{} has received more WAL ({} > {mine})",
                p.name, s.position
            ));
        }
        if s.position == mine && s.priority > tags.priority() {
            return Some(format!(
                "{} is as far ahead with a higher failover_priority",
                p.name
            ));
        }
    }
    None
}
