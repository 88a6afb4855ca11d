//! Maintenance mode: no automatic action, a dead primary is left alone.

use super::fixtures::*;
use warden_consensus::{DynamicConfig, Versioned};
use warden_ha::{decide, Action, DataState};

#[test]
fn paused_cluster_takes_no_automatic_action() {
    let mut c = cluster(Some("42"), None);
    c.config = Some(Versioned {
        value: warden_consensus::DynamicConfig::from_json(&serde_json::json!({"pause": true}))
            .unwrap(),
        mod_revision: 1,
    });
    let o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
    assert!(decide(&o).actions.is_empty());
}

#[test]
fn paused_leader_with_dead_postgres_releases_the_key_and_replicas_do_not_race() {
    let mut c = cluster(Some("42"), Some("n2"));
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(&serde_json::json!({"pause": true})).unwrap(),
        mod_revision: 1,
    });
    let mut o = obs(Some(c.clone()), DataState::Initialized, None);
    o.local.was_primary = true;
    assert_eq!(decide(&o).actions, vec![Action::ReleaseLeader]);
    c.leader = None;
    let mut o = obs(
        Some(c.clone()),
        DataState::Initialized,
        Some(probe(true, 1000)),
    );
    o.me = "n3".into();
    assert!(decide(&o).actions.is_empty());
    // ... except the candidate of a manual switchover.
    let c = with_failover(c, Some("n2"), Some("n3"), None);
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    o.me = "n3".into();
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
}

#[test]
fn paused_replica_follows_a_new_leader_but_a_stopped_one_is_not_started() {
    let mut c = cluster(Some("42"), Some("n1"));
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(&serde_json::json!({"pause": true})).unwrap(),
        mod_revision: 1,
    });
    let d = decide(&obs(
        Some(c.clone()),
        DataState::Initialized,
        Some(probe(true, 10)),
    ));
    assert_eq!(
        d.actions,
        vec![Action::Follow {
            leader: "n1".into()
        }]
    );
    let d = decide(&obs(Some(c), DataState::Initialized, None));
    assert!(d.actions.is_empty(), "{d:?}");
}
