//! Switchover and failover requests inside a standby cluster (Patroni's behaviour): the
//! standby leader hands its key to the candidate, which follows the remote primary (no
//! promotion); requests it cannot carry out are cleared, and a stale or unfit request
//! never holds back the race; a deleted `config` key falls back to the member's own
//! `bootstrap.dcs` instead of promoting the standby leader.

use super::fixtures::*;
use warden_consensus::{Cluster, DynamicConfig, Versioned};
use warden_ha::{decide, Action, DataState};

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

fn promotes(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Promote { .. }))
}

#[test]
fn standby_leader_hands_its_key_over_to_the_switchover_candidate() {
    let c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        Some("n2"),
        Some("n3"),
        None,
    );
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    o.peers = vec![peer("n1", 900, false), peer("n3", 1000, false)];
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![Action::HandOver {
            candidate: "n3".into()
        }],
        "{d:?}"
    );
    // A failover request (candidate, no leader) is carried out the same way.
    let c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        None,
        Some("n3"),
        None,
    );
    o.cluster = Some(c);
    assert!(matches!(decide(&o).actions[..], [Action::HandOver { .. }]));
}

#[test]
fn standby_leader_clears_requests_it_cannot_carry_out() {
    // Names another leader.
    let c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        Some("n1"),
        Some("n3"),
        None,
    );
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLeader,
            Action::ClearFailover,
            Action::WriteStatus
        ],
        "{d:?}"
    );
    // The candidate is tagged nofailover.
    let c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        Some("n2"),
        Some("n3"),
        None,
    );
    o.cluster = Some(c);
    let mut n3 = peer("n3", 1000, false);
    if let Some(s) = n3.status.as_mut() {
        s.may_become_leader = false;
    }
    o.peers = vec![n3];
    let d = decide(&o);
    assert!(d.actions.contains(&Action::ClearFailover), "{d:?}");
    // Scheduled too long ago: stale.
    let c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        Some("n2"),
        Some("n3"),
        Some("2026-01-01T12:00:00Z"),
    );
    o.cluster = Some(c);
    o.peers = vec![peer("n3", 1000, false)];
    o.now = "2026-01-01T13:00:00Z".parse().unwrap();
    assert!(decide(&o).actions.contains(&Action::ClearFailover));
}

#[test]
fn candidate_takes_the_key_and_follows_the_remote_then_clears_the_request() {
    let c = with_failover(
        standby(cluster(Some("42"), None)),
        Some("n1"),
        Some("n2"),
        None,
    );
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    // The candidate races although n3 reports more WAL.
    o.peers = vec![peer("n3", 5000, false)];
    let d = decide(&o);
    assert_eq!(
        d.actions[..2],
        [Action::AcquireLeader, Action::FollowRemote]
    );
    assert!(!promotes(&d.actions), "{d:?}");
    // Next turn, as the standby leader: the request is done.
    let c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        Some("n1"),
        Some("n2"),
        None,
    );
    o.cluster = Some(c);
    let d = decide(&o);
    assert!(d.actions.contains(&Action::ClearFailover), "{d:?}");
    assert!(!promotes(&d.actions), "{d:?}");
}

#[test]
fn a_stale_or_unfit_request_does_not_hold_back_the_race() {
    // The standby leader n1 died; the request names n3, which answers that it may not
    // lead (tagged nofailover since): n2 races.
    let c = with_failover(
        standby(cluster(Some("42"), None)),
        Some("n1"),
        Some("n3"),
        None,
    );
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    let mut n3 = peer("n3", 1000, false);
    if let Some(s) = n3.status.as_mut() {
        s.may_become_leader = false;
    }
    o.peers = vec![n3];
    let d = decide(&o);
    assert_eq!(
        d.actions[..2],
        [Action::AcquireLeader, Action::FollowRemote],
        "{d:?}"
    );
    // n3 does not answer at all: the same.
    o.peers = vec![warden_ha::Peer {
        name: "n3".into(),
        status: None,
    }];
    assert_eq!(decide(&o).actions[0], Action::AcquireLeader);
    // A scheduled switchover nobody carried out in time: the usual race.
    let c = with_failover(
        standby(cluster(Some("42"), None)),
        Some("n1"),
        Some("n3"),
        Some("2026-01-01T12:00:00Z"),
    );
    o.cluster = Some(c);
    o.peers = vec![peer("n3", 1000, false)];
    o.now = "2026-01-01T13:00:00Z".parse().unwrap();
    assert_eq!(decide(&o).actions[0], Action::AcquireLeader);
}

#[test]
fn paused_standby_leader_clears_a_request_and_a_paused_candidate_follows_the_remote() {
    let mut c = with_failover(
        standby(cluster(Some("42"), Some("n2"))),
        Some("n2"),
        Some("n3"),
        None,
    );
    if let Some(v) = c.config.as_mut() {
        v.value.pause = true;
    }
    let mut o = obs(
        Some(c.clone()),
        DataState::Initialized,
        Some(probe(true, 1000)),
    );
    assert_eq!(
        decide(&o).actions,
        vec![Action::RenewLeader, Action::ClearFailover]
    );
    // No standby leader, paused, a failover to us: take the key, no promotion.
    c.leader = None;
    c.failover.as_mut().unwrap().value.member = Some("n2".into());
    o.cluster = Some(c);
    let d = decide(&o);
    assert_eq!(
        d.actions[..2],
        [Action::AcquireLeader, Action::FollowRemote],
        "{d:?}"
    );
    assert!(!promotes(&d.actions));
}

#[test]
fn a_missing_config_key_falls_back_to_the_local_standby_cluster() {
    // The `config` key was deleted: the member's bootstrap.dcs says standby cluster.
    let mut o = obs(
        Some(cluster(Some("42"), Some("n2"))),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.local_standby_cluster = true;
    let d = decide(&o);
    assert_eq!(
        d.actions[..2],
        [Action::RenewLeader, Action::FollowRemote],
        "{d:?}"
    );
    assert!(!promotes(&d.actions), "{d:?}");
    // A config key without standby_cluster still ends the standby cluster.
    let mut c = cluster(Some("42"), Some("n2"));
    c.config = Some(Versioned {
        value: DynamicConfig::default(),
        mod_revision: 1,
    });
    o.cluster = Some(c);
    assert!(promotes(&decide(&o).actions));
}
