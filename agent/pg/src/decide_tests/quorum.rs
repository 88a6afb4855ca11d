//! Quorum commit: a voter races only with enough votes.

use super::fixtures::*;
use warden_consensus::types::Role;
use warden_consensus::{Cluster, DynamicConfig, Versioned};
use warden_ha::race::candidate_needs_votes;
use warden_ha::{decide, Action, DataState, Decision, Peer};

/// Quorum mode: n1 led, `/sync` lists `voters` with `quorum`.
fn with_quorum(c: Cluster, voters: &str, quorum: u32) -> Cluster {
    let mut c = with_sync(c, "n1", Some(voters));
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(&serde_json::json!({"synchronous_mode": "quorum"}))
            .unwrap(),
        mod_revision: 1,
    });
    if let Some(s) = c.sync.as_mut() {
        s.value.quorum = Some(quorum);
    }
    c
}

/// n2 (a voter) at WAL 1000, the leader key vacant.
fn quorum_racer(c: Cluster, peers: Vec<Peer>) -> Decision {
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    o.peers = peers;
    decide(&o)
}

#[test]
fn quorum_mode_a_voter_races_only_with_enough_votes() {
    // ANY 1 (n2, n3): a commit may be on n3 alone, so n2 must hear from n3.
    let c = with_quorum(cluster(Some("42"), None), "n2,n3", 1);
    let d = quorum_racer(c.clone(), vec![peer("n3", 900, false)]);
    assert!(d.actions.contains(&Action::AcquireLeader), "{d:?}");
    // n3 does not answer: n2 cannot tell whether it misses acknowledged commits.
    let silent = Peer {
        name: "n3".into(),
        status: None,
    };
    let d = quorum_racer(c.clone(), vec![silent]);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("quorum commit"), "{}", d.note);
    // n3 is ahead: it is the one to race.
    let d = quorum_racer(c.clone(), vec![peer("n3", 1100, false)]);
    assert!(d.actions.is_empty(), "{d:?}");
    // The old leader, back as a replica and not ahead, is a vote too.
    let d = quorum_racer(c, vec![peer("n1", 1000, false)]);
    assert!(d.actions.contains(&Action::AcquireLeader), "{d:?}");
}

#[test]
fn quorum_mode_votes_come_only_from_sync_members_that_may_be_promoted_and_run() {
    let c = with_quorum(cluster(Some("42"), None), "n2,n3", 1);
    let mut c4 = c.clone();
    c4.members
        .insert("n4".into(), member(Role::Replica, "running"));
    // n4 is not in /sync: its answer is no vote.
    let d = quorum_racer(c4, vec![peer("n4", 900, false)]);
    assert!(d.actions.is_empty(), "{d:?}");
    let mut nofailover = peer("n3", 900, false);
    if let Some(s) = nofailover.status.as_mut() {
        s.may_become_leader = false;
    }
    let d = quorum_racer(c.clone(), vec![nofailover]);
    assert!(d.actions.is_empty(), "{d:?}");
    // PostgreSQL not running (no WAL position): no vote.
    let d = quorum_racer(c, vec![peer("n3", 0, false)]);
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn quorum_mode_with_quorum_0_every_voter_has_every_commit() {
    // ANY 2 (n2, n3): both acknowledge every commit.
    let c = with_quorum(cluster(Some("42"), None), "n2,n3", 0);
    let silent = Peer {
        name: "n3".into(),
        status: None,
    };
    let d = quorum_racer(c, vec![silent]);
    assert!(d.actions.contains(&Action::AcquireLeader), "{d:?}");
}

#[test]
fn quorum_mode_non_voters_do_not_race_and_the_former_leader_needs_no_votes() {
    let c = with_quorum(cluster(Some("42"), None), "n3", 1);
    let d = quorum_racer(c.clone(), vec![peer("n3", 900, false)]);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("synchronous"), "{}", d.note);
    // n1 led: it has every commit it acknowledged.
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    o.me = "n1".into();
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
}

#[test]
fn a_quorum_left_in_sync_binds_on_mode_too() {
    let mut c = with_quorum(cluster(Some("42"), None), "n2,n3", 1);
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(&serde_json::json!({"synchronous_mode": true})).unwrap(),
        mod_revision: 1,
    });
    let d = quorum_racer(c, vec![]);
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn quorum_mode_candidate_needs_votes_unless_the_old_leader_handed_over() {
    let c = with_quorum(cluster(Some("42"), None), "n2,n3", 1);
    // POST /failover {candidate: n2}: nobody confirmed n2 has every commit.
    let failover = with_failover(c.clone(), None, Some("n2"), None);
    assert!(candidate_needs_votes(&failover));
    let d = quorum_racer(failover.clone(), vec![]);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("quorum commit"), "{}", d.note);
    let d = quorum_racer(failover, vec![peer("n3", 1000, false)]);
    assert!(d.actions.contains(&Action::AcquireLeader), "{d:?}");
    // A switchover from n1 whose leader vanished before handing over (crashed): nobody
    // confirmed n2 has every commit either.
    let mut switchover = with_failover(c, Some("n1"), Some("n2"), None);
    assert!(candidate_needs_votes(&switchover));
    let d = quorum_racer(switchover.clone(), vec![]);
    assert!(d.actions.is_empty(), "{d:?}");
    // n1 handed over: it confirmed n2 holds its shutdown checkpoint and marked it.
    let f = switchover.failover.as_mut().unwrap();
    f.value.set_handover_lsn(1000);
    assert!(!candidate_needs_votes(&switchover));
    let d = quorum_racer(switchover.clone(), vec![]);
    assert!(d.actions.contains(&Action::AcquireLeader), "{d:?}");
    // A mark past what we hold: refused (never expected: the old leader checked it).
    let f = switchover.failover.as_mut().unwrap();
    f.value.set_handover_lsn(5000);
    let d = quorum_racer(switchover, vec![]);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("handed over at 5000"), "{}", d.note);
}
