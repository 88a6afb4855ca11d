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
