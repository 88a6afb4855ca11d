//! An empty cluster is bootstrapped once; a new member clones, or waits for a leader.

use super::fixtures::*;
use warden_consensus::Cluster;
use warden_ha::{decide, Action, DataState};

#[test]
fn empty_cluster_empty_node_races_to_bootstrap() {
    let d = decide(&obs(Some(Cluster::default()), DataState::Missing, None));
    assert_eq!(d.actions, vec![Action::RaceInitialize, Action::Bootstrap]);
}

#[test]
fn bootstrap_in_progress_elsewhere_means_wait() {
    let d = decide(&obs(
        Some(cluster(Some(""), None)),
        DataState::Missing,
        None,
    ));
    assert!(d.actions.is_empty());
    assert!(d.note.contains("bootstrap"), "{}", d.note);
}

#[test]
fn bootstrap_winner_takes_leader_and_records_sysid() {
    let mut o = obs(
        Some(cluster(Some(""), None)),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    o.bootstrapped_here = true;
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::AcquireLeader,
            Action::SetInitialize {
                system_identifier: "42".into()
            }
        ]
    );
}

#[test]
fn new_member_clones_from_running_leader() {
    let d = decide(&obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Missing,
        None,
    ));
    assert_eq!(d.actions, vec![Action::Clone { from: "n1".into() }]);
}

#[test]
fn new_member_prefers_clonefrom_replica() {
    let mut c = cluster(Some("42"), Some("n1"));
    c.members.get_mut("n3").unwrap().value.tags =
        Some(serde_json::from_str(r#"{"clonefrom":true}"#).unwrap());
    let d = decide(&obs(Some(c), DataState::Missing, None));
    assert_eq!(d.actions, vec![Action::Clone { from: "n3".into() }]);
}

#[test]
fn new_member_without_leader_waits() {
    let d = decide(&obs(
        Some(cluster(Some("42"), None)),
        DataState::Missing,
        None,
    ));
    assert!(d.actions.is_empty());
}

#[test]
fn foreign_data_directory_is_fatal() {
    let d = decide(&obs(
        Some(cluster(Some("99"), Some("n1"))),
        DataState::Initialized,
        None,
    ));
    match d.actions.as_slice() {
        [Action::Fatal(msg)] => assert!(msg.contains("42") && msg.contains("99"), "{msg}"),
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[test]
fn nofailover_member_does_not_bootstrap() {
    let mut o = obs(Some(Cluster::default()), DataState::Missing, None);
    o.tags.nofailover = true;
    assert!(decide(&o).actions.is_empty());
}
