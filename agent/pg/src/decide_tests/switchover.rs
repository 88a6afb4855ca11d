//! Switchover and failover requests, immediate and scheduled, and manual restarts.

use super::fixtures::*;
use warden_ha::{decide, Action, DataState, ManualTask, Peer};

#[test]
fn switchover_hands_over_to_a_healthy_named_candidate() {
    let c = with_failover(
        cluster(Some("42"), Some("n2")),
        Some("n2"),
        Some("n3"),
        None,
    );
    let mut o = leader_obs(c);
    o.peers = vec![peer("n1", 1000, false), peer("n3", 990, false)];
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![Action::HandOver {
            candidate: "n3".into()
        }]
    );
}

#[test]
fn switchover_to_an_unfit_candidate_is_dropped_and_the_leader_stays() {
    let c = with_failover(
        cluster(Some("42"), Some("n2")),
        Some("n2"),
        Some("n3"),
        None,
    );
    // (candidate's answer, our WAL position): silent; a primary; more than
    // maximum_lag_on_failover (1 MiB) behind us.
    for (bad, ours) in [
        (
            Peer {
                name: "n3".into(),
                status: None,
            },
            1000,
        ),
        (peer("n3", 1000, true), 1000),
        (peer("n3", 1000, false), 1000 + 2 * 1024 * 1024),
    ] {
        let mut o = leader_obs(c.clone());
        o.local.engine.probe = Some(probe(false, ours));
        o.peers = vec![bad.clone()];
        let d = decide(&o);
        assert!(
            d.actions.contains(&Action::ClearFailover) && d.actions.contains(&Action::RenewLeader),
            "{bad:?}: {d:?}"
        );
        assert!(!d
            .actions
            .iter()
            .any(|a| matches!(a, Action::HandOver { .. })));
    }
}

#[test]
fn switchover_without_candidate_picks_the_most_advanced_replica() {
    let c = with_failover(cluster(Some("42"), Some("n2")), Some("n2"), None, None);
    let mut o = leader_obs(c);
    o.peers = vec![peer("n1", 900, false), peer("n3", 990, false)];
    assert_eq!(
        decide(&o).actions,
        vec![Action::HandOver {
            candidate: "n3".into()
        }]
    );
}

#[test]
fn scheduled_switchover_waits_for_its_time_then_fires() {
    let c = with_failover(
        cluster(Some("42"), Some("n2")),
        Some("n2"),
        Some("n3"),
        Some("2026-01-01T12:00:00+00:00"),
    );
    let mut o = leader_obs(c);
    o.peers = vec![peer("n3", 1000, false)];
    o.now = "2026-01-01T11:59:59Z".parse().unwrap();
    let d = decide(&o);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::HandOver { .. } | Action::ClearFailover)),
        "{d:?}"
    );
    o.now = "2026-01-01T12:00:00Z".parse().unwrap();
    assert_eq!(
        decide(&o).actions,
        vec![Action::HandOver {
            candidate: "n3".into()
        }]
    );
    // Far too late (loop_wait 10 → more than 20 s): stale, dropped.
    o.now = "2026-01-01T12:01:00Z".parse().unwrap();
    assert!(decide(&o).actions.contains(&Action::ClearFailover));
}

#[test]
fn request_naming_another_leader_is_cleared() {
    let c = with_failover(
        cluster(Some("42"), Some("n2")),
        Some("n1"),
        Some("n3"),
        None,
    );
    assert!(decide(&leader_obs(c))
        .actions
        .contains(&Action::ClearFailover));
}

#[test]
fn named_candidate_races_without_deferring_and_others_stay_out() {
    let c = with_failover(cluster(Some("42"), None), Some("n1"), Some("n2"), None);
    // n2 is the candidate: races although n3 reports more WAL.
    let mut o = obs(
        Some(c.clone()),
        DataState::Initialized,
        Some(probe(true, 1000)),
    );
    o.peers = vec![peer("n3", 5000, false)];
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
    // n3 is not: stays out while the candidate runs.
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 5000)));
    o.me = "n3".into();
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn former_leader_of_a_switchover_does_not_race_while_another_may_lead() {
    let mut c = with_failover(cluster(Some("42"), None), Some("n2"), None, None);
    c.members.remove("n3");
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 1000)));
    o.peers = vec![peer("n1", 1000, false)];
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    // The new leader died before clearing the request and nobody else answers: the
    // former leader races rather than leave the cluster without one (Patroni's rule).
    o.peers = vec![Peer {
        name: "n1".into(),
        status: None,
    }];
    let d = decide(&o);
    assert_eq!(d.actions.first(), Some(&Action::AcquireLeader), "{d:?}");
}

#[test]
fn new_leader_clears_the_request_that_named_it() {
    let c = with_failover(
        cluster(Some("42"), Some("n2")),
        Some("n1"),
        Some("n2"),
        None,
    );
    let d = decide(&leader_obs(c));
    assert!(d.actions.contains(&Action::ClearFailover));
    assert!(
        d.note.contains("as the switchover request asked"),
        "{}",
        d.note
    );
}

#[test]
fn manual_restart_of_the_leader_renews_first_and_reinit_is_refused_to_it() {
    let mut o = leader_obs(cluster(Some("42"), Some("n2")));
    o.manual = Some(ManualTask::Restart {
        timeout: Some(std::time::Duration::from_secs(5)),
    });
    assert_eq!(
        decide(&o).actions,
        vec![
            Action::RenewLeader,
            Action::Restart {
                as_primary: true,
                timeout: Some(std::time::Duration::from_secs(5))
            }
        ]
    );
    o.manual = Some(ManualTask::Reinitialize { from: "n1".into() });
    assert!(decide(&o).actions.is_empty());
    let mut o = obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Initialized,
        Some(probe(true, 5)),
    );
    o.manual = Some(ManualTask::Reinitialize { from: "n1".into() });
    assert_eq!(
        decide(&o).actions,
        vec![Action::Reinitialize { from: "n1".into() }]
    );
}
