//! Failsafe mode: a primary confirmed by every member keeps running without the DCS.

use super::fixtures::*;
use warden_consensus::{Cluster, Versioned};
use warden_ha::{decide, Action, DataState};

#[test]
fn failsafe_confirmation_keeps_the_primary_without_dcs() {
    let mut o = obs(None, DataState::Initialized, Some(probe(false, 100)));
    o.lease_valid = false;
    o.failsafe_confirmed = Some(true);
    assert_eq!(decide(&o).actions, vec![Action::FailsafeHold]);
    o.failsafe_confirmed = Some(false);
    assert_eq!(decide(&o).actions, vec![Action::Demote { upstream: None }]);
    // A refusal demotes at once, while the lease is still valid (Patroni's rule);
    // without failsafe mode (no round) the primary holds until the deadline.
    o.lease_valid = true;
    assert_eq!(decide(&o).actions, vec![Action::Demote { upstream: None }]);
    o.failsafe_confirmed = None;
    assert_eq!(decide(&o).actions, vec![]);
}

fn failsafe_cluster(failsafe_mode: bool) -> Cluster {
    let mut c = cluster(Some("42"), None);
    c.config = Some(Versioned {
        value: warden_consensus::DynamicConfig {
            failsafe_mode,
            ..Default::default()
        },
        mod_revision: 1,
    });
    c
}

#[test]
fn replica_does_not_race_while_the_leader_is_in_failsafe() {
    let mut o = obs(
        Some(failsafe_cluster(true)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.failsafe_leader_active = true;
    let d = decide(&o);
    assert!(d.actions.is_empty());
    assert!(d.note.contains("failsafe"), "{}", d.note);
}

#[test]
fn a_failsafe_confirmation_outside_failsafe_mode_does_not_hold_off_the_race() {
    // Whoever got a member to accept a `POST /failsafe` while failsafe_mode is off
    // (it should have been refused) must not be able to stop a failover with it.
    for c in [cluster(Some("42"), None), failsafe_cluster(false)] {
        let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
        o.failsafe_leader_active = true;
        let d = decide(&o);
        assert!(
            d.actions.contains(&Action::AcquireLeader),
            "{:?}: {}",
            d.actions,
            d.note
        );
    }
}

#[test]
fn a_member_not_in_failsafe_races_only_once_every_listed_member_runs_no_primary() {
    // Simulation seed 1149: /failsafe listed only n1, which then fell behind the
    // cluster's timeline and could not lead; no other member might race, and the
    // cluster stayed without a leader after every fault had healed.
    let mut c = failsafe_cluster(true);
    c.failsafe = Some([("n1".to_string(), "http://n1/patroni".to_string())].into());
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
    // n1 did not answer: it may be a primary holding on through failsafe.
    o.peers = vec![warden_ha::Peer {
        name: "n1".into(),
        status: None,
    }];
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("not listed in /failsafe"), "{}", d.note);
    // n1 answers as a primary: still not.
    o.peers = vec![peer("n1", 50, true)];
    assert!(decide(&o).actions.is_empty());
    // n1 answers as a replica: nobody can be holding on, so we may race.
    o.peers = vec![peer("n1", 50, false)];
    let d = decide(&o);
    assert_eq!(
        d.actions.first(),
        Some(&Action::AcquireLeader),
        "{}",
        d.note
    );
}

#[test]
fn a_primary_whose_key_expired_demotes_when_it_cannot_renew() {
    // Simulation seed 3164: a leader held on through failsafe confirmations, the DCS came
    // back with its key expired, and its lease renewal failed: it kept running writable
    // with no key, no deadline and a disarmed guard while another member was promoted.
    let mut o = obs(
        Some(failsafe_cluster(true)),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    o.lease_renewed = false;
    o.lease_valid = false;
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![Action::Demote { upstream: None }],
        "{}",
        d.note
    );
    // A replica in the same turn just waits.
    o.local.engine.probe = Some(probe(true, 100));
    assert!(decide(&o).actions.is_empty());
}
