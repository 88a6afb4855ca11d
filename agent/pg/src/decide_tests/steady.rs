//! The steady state: the leader renews, replicas follow, a stray primary demotes.

use super::fixtures::*;
use warden_ha::{decide, Action, DataState};

#[test]
fn steady_leader_renews_and_publishes() {
    let o = obs(
        Some(cluster(Some("42"), Some("n2"))),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLeader,
            Action::ConfigurePrimary,
            Action::SyncReplication,
            Action::Retain {
                members: vec!["n1".into(), "n3".into()]
            },
            Action::WriteStatus
        ]
    );
}

#[test]
fn leader_without_renewal_does_nothing() {
    let mut o = obs(
        Some(cluster(Some("42"), Some("n2"))),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    o.lease_renewed = false;
    assert!(decide(&o).actions.is_empty());
}

#[test]
fn steady_replica_follows_leader() {
    let o = obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    assert_eq!(
        decide(&o).actions,
        vec![Action::Follow {
            leader: "n1".into()
        }]
    );
}

#[test]
fn primary_that_is_not_leader_demotes() {
    let o = obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    assert_eq!(
        decide(&o).actions,
        vec![Action::Demote {
            upstream: Some("n1".into())
        }]
    );
}

#[test]
fn primary_without_dcs_demotes_only_after_its_deadline() {
    let mut o = obs(None, DataState::Initialized, Some(probe(false, 100)));
    assert!(decide(&o).actions.is_empty());
    o.lease_valid = false;
    assert_eq!(decide(&o).actions, vec![Action::Demote { upstream: None }]);
}

#[test]
fn required_watchdog_missing_means_never_lead() {
    let mut o = obs(
        Some(cluster(Some("42"), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.watchdog_missing = Some("/dev/watchdog: No such file or directory".into());
    assert!(decide(&o).actions.is_empty());
    let mut o = obs(
        Some(cluster(Some("42"), Some("n2"))),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    o.watchdog_missing = Some("/dev/watchdog: No such file or directory".into());
    assert_eq!(decide(&o).actions, vec![Action::ReleaseLeader]);
}
