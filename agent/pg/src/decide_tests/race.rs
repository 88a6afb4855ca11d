//! The race for a vacant leader key: who races, who defers, who never may.

use super::fixtures::*;
use warden_consensus::types::Status;
use warden_consensus::{Cluster, Versioned};
use warden_ha::{decide, Action, DataState, Engine, Peer, StartAs};

#[test]
fn healthiest_replica_races_for_vacant_key() {
    let mut o = obs(
        Some(cluster(Some("42"), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.peers = vec![
        peer("n1", 50, false),
        Peer {
            name: "n3".into(),
            status: None,
        },
    ];
    let d = decide(&o);
    assert_eq!(d.actions[0], Action::AcquireLeader);
    assert!(matches!(d.actions[1], Action::Promote { .. }));
}

#[test]
fn replica_behind_a_peer_does_not_race() {
    let mut o = obs(
        Some(cluster(Some("42"), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.peers = vec![peer("n3", 200, false)];
    let d = decide(&o);
    assert!(d.actions.is_empty());
    assert!(d.note.contains("n3"), "{}", d.note);
}

#[test]
fn equal_peers_both_race_and_priority_breaks_ties() {
    let mut o = obs(
        Some(cluster(Some("42"), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.peers = vec![peer("n1", 100, false), peer("n3", 100, false)];
    assert_eq!(
        decide(&o).actions[0],
        Action::AcquireLeader,
        "equal peers: the create-only race decides"
    );
    let mut better = peer("n1", 100, false);
    better.status.as_mut().unwrap().priority = 5;
    o.peers = vec![better];
    assert!(
        decide(&o).actions.is_empty(),
        "n1 has a higher failover_priority"
    );
}

#[test]
fn peer_that_could_not_win_is_not_deferred_to() {
    // check_timeline: the cluster history is at timeline 1, so a peer still on timeline
    // 1 cannot win; we (timeline 2) must not defer to it even though it is ahead.
    let mut c = cluster(Some("42"), None);
    c.config = Some(Versioned {
        value: warden_consensus::DynamicConfig::from_json(
            &serde_json::json!({"check_timeline": true}),
        )
        .unwrap(),
        mod_revision: 1,
    });
    c.history = vec![warden_consensus::types::HistoryEntry {
        timeline: 1,
        lsn: 50,
        reason: "no recovery target specified".into(),
        timestamp: None,
        new_leader: None,
    }];
    let mut me = probe(true, 100);
    me.timeline = Some(2);
    let mut o = obs(Some(c), DataState::Initialized, Some(me));
    o.peers = vec![peer("n3", 200, false)];
    assert_eq!(
        decide(&o).actions[0],
        Action::AcquireLeader,
        "{}",
        decide(&o).note
    );
    o.peers[0].status.as_mut().unwrap().generation = Some(2);
    assert!(
        decide(&o).note.contains("n3"),
        "an eligible peer further ahead wins"
    );
}

fn history_up_to(ended: u32) -> Vec<warden_consensus::types::HistoryEntry> {
    (1..=ended)
        .map(|t| warden_consensus::types::HistoryEntry {
            timeline: t,
            lsn: u64::from(t) * 10,
            reason: "no recovery target specified".into(),
            timestamp: None,
            new_leader: None,
        })
        .collect()
}

#[test]
fn replica_behind_the_cluster_timeline_never_races() {
    // Seen in chaos runs: a former primary (timeline 1, never rewound) came back while
    // the leaders of timelines 2 and 3 were killed in turn. It has the highest LSN, but
    // promoting it would reuse timeline 2. Not racing, even without check_timeline.
    let mut c = cluster(Some("42"), None);
    c.history = history_up_to(2);
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 500)));
    o.peers = vec![peer("n1", 100, false)];
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(
        d.note
            .contains("timeline 1 is behind the cluster's timeline 3"),
        "{}",
        d.note
    );
    // On the current timeline it races, and it does not defer to a peer that is ahead
    // by LSN but behind by timeline.
    o.local.engine.probe.as_mut().unwrap().timeline = Some(3);
    o.peers = vec![peer("n1", 900, false)];
    assert_eq!(
        decide(&o).actions[0],
        Action::AcquireLeader,
        "{}",
        decide(&o).note
    );
    // A replica whose control file still names timeline 1 (no restartpoint since the
    // switch) but which holds the history file of timeline 3 promotes onto 4: it races.
    o.local.engine.probe.as_mut().unwrap().timeline = Some(1);
    o.local.engine.probe.as_mut().unwrap().newest_timeline = Some(3);
    assert_eq!(
        decide(&o).actions[0],
        Action::AcquireLeader,
        "{}",
        decide(&o).note
    );
    // Its promotion leaves timeline 3 (what recovery follows), not the control file's 1.
    assert_eq!(o.local.engine.fork_point().map(|f| f.0), Some(3));
    // A timeline known only from a member key (its promotion not yet in /history) counts.
    let c = o.cluster.as_mut().unwrap();
    c.members.get_mut("n1").unwrap().value.timeline = Some(4);
    assert!(decide(&o).actions.is_empty(), "{}", decide(&o).note);
}

#[test]
fn leader_behind_the_cluster_timeline_releases_the_key_instead_of_promoting() {
    // Simulation seed 785: a node raced on a snapshot that went stale while it was
    // frozen, won the key, and next turn would have promoted onto a used timeline.
    let mut c = cluster(Some("42"), Some("n2"));
    c.history = history_up_to(6);
    let mut me = probe(true, 500);
    me.timeline = Some(6);
    let mut o = obs(Some(c), DataState::Initialized, Some(me));
    let d = decide(&o);
    assert_eq!(d.actions, vec![Action::ReleaseLeader], "{}", d.note);
    o.local.engine.probe.as_mut().unwrap().timeline = Some(7);
    assert!(
        matches!(decide(&o).actions[1], Action::Promote { .. }),
        "{}",
        decide(&o).note
    );
}

#[test]
fn running_primary_behind_the_cluster_timeline_demotes_instead_of_taking_the_key() {
    let mut c = cluster(Some("42"), None);
    c.history = history_up_to(1);
    let o = obs(Some(c), DataState::Initialized, Some(probe(false, 500)));
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![Action::Demote { upstream: None }],
        "{}",
        d.note
    );
    let mut o = o;
    o.local.engine.probe.as_mut().unwrap().timeline = Some(2);
    assert_eq!(decide(&o).actions[0], Action::AcquireLeader);
}

#[test]
fn nofailover_never_races() {
    let mut o = obs(
        Some(cluster(Some("42"), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.tags.nofailover = true;
    assert!(decide(&o).actions.is_empty());
}

#[test]
fn lagging_replica_does_not_race() {
    let mut c = cluster(Some("42"), None);
    c.status = Some(Status {
        optime: Some(100 + 2 * 1_048_576),
        ..Status::default()
    });
    let o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
    let d = decide(&o);
    assert!(d.actions.is_empty());
    assert!(d.note.contains("maximum_lag_on_failover"), "{}", d.note);
}

#[test]
fn running_old_primary_blocks_the_race() {
    let mut o = obs(
        Some(cluster(Some("42"), None)),
        DataState::Initialized,
        Some(probe(true, 100)),
    );
    o.peers = vec![peer("n1", 10, true)];
    assert!(decide(&o).actions.is_empty());
}

fn with_start_timeout(mut c: Cluster, secs: u32) -> Cluster {
    let cfg = warden_consensus::DynamicConfig::from_json(
        &serde_json::json!({ "primary_start_timeout": secs }),
    )
    .unwrap();
    c.config = Some(Versioned {
        value: cfg,
        mod_revision: 1,
    });
    c
}

#[test]
fn crashed_primary_releases_the_key_after_primary_start_timeout() {
    let c = with_start_timeout(cluster(Some("42"), Some("n2")), 30);
    let mut o = obs(Some(c), DataState::Initialized, None);
    o.local.was_primary = true;
    o.primary_down_for = Some(std::time::Duration::from_secs(29));
    assert_eq!(
        decide(&o).actions,
        vec![Action::RenewLeader, Action::Start(StartAs::Primary)]
    );
    o.primary_down_for = Some(std::time::Duration::from_secs(30));
    assert_eq!(decide(&o).actions, vec![Action::ReleaseLeader]);
}

#[test]
fn zero_primary_start_timeout_fails_over_at_once() {
    let c = with_start_timeout(cluster(Some("42"), Some("n2")), 0);
    let mut o = obs(Some(c), DataState::Initialized, None);
    o.local.was_primary = true;
    o.primary_down_for = Some(std::time::Duration::ZERO);
    assert_eq!(decide(&o).actions, vec![Action::ReleaseLeader]);
}

#[test]
fn primary_in_crash_recovery_keeps_the_key_within_the_timeout() {
    let c = with_start_timeout(cluster(Some("42"), Some("n2")), 30);
    let mut o = obs(Some(c), DataState::Initialized, None);
    o.local.was_primary = true;
    o.local.running = true;
    o.primary_down_for = Some(std::time::Duration::from_secs(3));
    assert_eq!(decide(&o).actions, vec![Action::RenewLeader]);
    o.primary_down_for = Some(std::time::Duration::from_secs(31));
    assert_eq!(decide(&o).actions, vec![Action::ReleaseLeader]);
}

#[test]
fn our_own_reservation_of_a_promotion_that_never_happened_does_not_hold_us_back() {
    // A promotion is reserved in /history before pg_promote. We (n2) reserved timeline 3
    // off timeline 2 and stopped before promoting: still on 2, we may race (and promote
    // onto 3, which nobody else can have used), while another member's reservation of
    // the same kind holds us back.
    let reserve = |new_leader: &str| warden_consensus::types::HistoryEntry {
        timeline: 2,
        lsn: 20,
        reason: "no recovery target specified".into(),
        timestamp: None,
        new_leader: Some(new_leader.into()),
    };
    let mut c = cluster(Some("42"), None);
    c.history = history_up_to(1);
    c.history.push(reserve("n2"));
    let mut me = probe(true, 500);
    me.timeline = Some(2);
    let mut o = obs(Some(c), DataState::Initialized, Some(me));
    o.peers = vec![peer("n1", 100, false)];
    let d = decide(&o);
    assert_eq!(
        d.actions.first(),
        Some(&Action::AcquireLeader),
        "{}",
        d.note
    );

    let c = o.cluster.as_mut().unwrap();
    c.history.pop();
    c.history.push(reserve("n3"));
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(
        d.note.contains("behind the cluster's timeline 3"),
        "{}",
        d.note
    );
}
