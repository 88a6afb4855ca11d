//! Standby clusters (`standby_cluster`): the key holder follows the remote primary and
//! is never promoted; removing the section promotes it; setting it on a primary cluster
//! stops, repairs and restarts the primary as the standby leader.

use super::fixtures::*;
use warden_consensus::{Cluster, DynamicConfig, Versioned};
use warden_ha::{decide, Action, DataState, StartAs};

fn standby(mut c: Cluster) -> Cluster {
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(
            &serde_json::json!({"standby_cluster": {"host": "10.0.0.9", "port": 5432}}),
        )
        .unwrap(),
        mod_revision: 1,
    });
    c
}

fn others() -> Action {
    Action::Retain {
        members: vec!["n1".into(), "n3".into()],
    }
}

#[test]
fn standby_leader_follows_the_remote_and_never_promotes() {
    let o = obs(
        Some(standby(cluster(Some("42"), Some("n2")))),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLeader,
            Action::FollowRemote,
            others(),
            Action::WriteStatus
        ],
        "{d:?}"
    );
    assert!(d.note.contains("standby leader"), "{}", d.note);
}

#[test]
fn removing_standby_cluster_promotes_the_standby_leader() {
    let o = obs(
        Some(cluster(Some("42"), Some("n2"))),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    let d = decide(&o);
    assert_eq!(d.actions[0], Action::RenewLeader, "{d:?}");
    assert!(matches!(d.actions[1], Action::Promote { .. }), "{d:?}");
}

#[test]
fn setting_standby_cluster_stops_the_primary_keeping_the_key() {
    let o = leader_obs(standby(cluster(Some("42"), Some("n2"))));
    assert_eq!(
        decide(&o).actions,
        vec![Action::RenewLeader, Action::StopPrimary]
    );
}

#[test]
fn stopped_former_primary_is_rewound_from_the_remote_then_started_as_standby_leader() {
    let mut o = obs(
        Some(standby(cluster(Some("42"), Some("n2")))),
        DataState::Initialized,
        None,
    );
    o.local.was_primary = true;
    assert_eq!(
        decide(&o).actions,
        vec![
            Action::RenewLeader,
            Action::RepairFromRemote,
            Action::Start(StartAs::StandbyLeader)
        ]
    );
    // Rewound already, or never a primary: started as is.
    o.local.engine.rewound = true;
    assert_eq!(
        decide(&o).actions,
        vec![Action::RenewLeader, Action::Start(StartAs::StandbyLeader)]
    );
    o.local.engine.rewound = false;
    o.local.was_primary = false;
    assert_eq!(
        decide(&o).actions,
        vec![Action::RenewLeader, Action::Start(StartAs::StandbyLeader)]
    );
    // Without a renewal this turn, nothing starts under the key.
    o.lease_renewed = false;
    assert!(decide(&o).actions.is_empty());
}

#[test]
fn failover_inside_a_standby_cluster_follows_the_remote_without_promotion() {
    let mut o = obs(
        Some(standby(cluster(Some("42"), None))),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.peers = vec![peer("n1", 50, false)];
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::AcquireLeader,
            Action::FollowRemote,
            others(),
            Action::WriteStatus
        ],
        "{d:?}"
    );
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Action::Promote { .. })));
    // The usual race rules still apply: a better peer wins.
    o.peers = vec![peer("n1", 500, false)];
    assert!(decide(&o).actions.is_empty());
}

#[test]
fn a_primary_in_a_standby_cluster_without_a_leader_takes_the_key_to_stop() {
    let o = obs(
        Some(standby(cluster(Some("42"), None))),
        DataState::Initialized,
        Some(probe(false, 100)),
    );
    assert_eq!(
        decide(&o).actions,
        vec![Action::AcquireLeader, Action::StopPrimary]
    );
}

#[test]
fn replicas_cascade_from_the_standby_leader() {
    let o = obs(
        Some(standby(cluster(Some("42"), Some("n1")))),
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
fn bootstrapped_standby_leader_takes_the_key_read_only() {
    let mut o = obs(
        Some(cluster(Some(""), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.bootstrapped_here = true;
    assert_eq!(
        decide(&o).actions,
        vec![
            Action::AcquireLeader,
            Action::SetInitialize {
                system_identifier: "42".into()
            }
        ]
    );
}

#[test]
fn paused_standby_leader_keeps_its_key() {
    let mut c = standby(cluster(Some("42"), Some("n2")));
    if let Some(v) = c.config.as_mut() {
        v.value.pause = true;
    }
    let o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
    assert_eq!(decide(&o).actions, vec![Action::RenewLeader]);
}
