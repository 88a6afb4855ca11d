//! Named scenarios for the decision core: each builds an observation and checks the
//! actions. No processes, no clock.

use super::PgLocal;
use crate::sql::Probe;
use warden_consensus::types::{Member, Role, Status};
use warden_consensus::Cluster;
use warden_consensus::{DynamicConfig, LeaderKey, Versioned};
use warden_ha::race::candidate_needs_votes;
use warden_ha::{
    decide, Action, DataState, Decision, Local, ManualTask, Observation, Peer, PeerStatus, StartAs,
    Tags,
};

fn member(role: Role, state: &str) -> Versioned<Member> {
    let m: Member = serde_json::from_value(serde_json::json!({
        "conn_url": "postgres://127.0.0.1:5432/postgres",
        "api_url": "http://127.0.0.1:8008/patroni",
        "state": state, "role": role.as_str(), "version": "4.0.0",
    }))
    .unwrap();
    Versioned {
        value: m,
        mod_revision: 1,
    }
}

fn cluster(initialize: Option<&str>, leader: Option<&str>) -> Cluster {
    let mut c = Cluster {
        initialize: initialize.map(str::to_string),
        ..Cluster::default()
    };
    c.leader = leader.map(|l| LeaderKey {
        name: l.into(),
        create_revision: 7,
        mod_revision: 7,
        lease: 1,
    });
    for n in ["n1", "n2", "n3"] {
        let role = if Some(n) == leader {
            Role::Primary
        } else {
            Role::Replica
        };
        c.members.insert(n.into(), member(role, "running"));
    }
    c
}

fn probe(in_recovery: bool, wal: u64) -> Probe {
    Probe {
        in_recovery,
        wal_position: Some(wal),
        timeline: Some(1),
        streaming: in_recovery,
        ..Probe::default()
    }
}

fn obs(cluster: Option<Cluster>, data: DataState, probe: Option<Probe>) -> Observation<PgLocal> {
    Observation {
        now: chrono::DateTime::UNIX_EPOCH,
        manual: None,
        me: "n2".into(),
        tags: Tags::default(),
        cluster,
        lease_renewed: true,
        lease_valid: true,
        local: Local {
            data,
            system_identifier: (data == DataState::Initialized).then(|| "42".to_string()),
            was_primary: false,
            running: probe.is_some(),
            engine: PgLocal {
                probe,
                rewound: false,
                stopped_timeline: None,
                use_pg_rewind: true,
            },
        },
        peers: vec![],
        bootstrapped_here: false,
        primary_down_for: None,
        failsafe_confirmed: None,
        failsafe_leader_active: false,
        watchdog_missing: None,
        not_streaming_for: None,
    }
}

fn peer(name: &str, wal: u64, is_primary: bool) -> Peer {
    Peer {
        name: name.into(),
        status: Some(PeerStatus {
            is_primary,
            position: wal,
            generation: Some(1),
            may_become_leader: true,
            priority: 1,
        }),
    }
}

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
fn stopped_replica_restarts_following_the_leader() {
    let d = decide(&obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Initialized,
        None,
    ));
    assert_eq!(
        d.actions,
        vec![Action::Start(StartAs::Replica {
            upstream: Some("n1".into())
        })]
    );
}

#[test]
fn stopped_replica_behind_the_leaders_timeline_rewinds_before_following() {
    // Seen in chaos runs: a replica stopped for a rewind whose source then died
    // crash-looped on "requested timeline 2 does not contain minimum recovery point".
    let mut c = cluster(Some("42"), Some("n1"));
    c.members.get_mut("n1").unwrap().value.timeline = Some(2);
    let mut o = obs(Some(c), DataState::Initialized, None);
    o.local.engine.stopped_timeline = Some(1);
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::Repair { from: "n1".into() },
            Action::Start(StartAs::Replica {
                upstream: Some("n1".into())
            })
        ],
        "{}",
        d.note
    );
    o.local.engine.stopped_timeline = Some(2);
    assert_eq!(decide(&o).actions.len(), 1, "same timeline: just start");
    o.local.engine.stopped_timeline = Some(1);
    o.local.engine.use_pg_rewind = false;
    assert_eq!(decide(&o).actions.len(), 1, "use_pg_rewind off: just start");
}

#[test]
fn stopped_former_primary_holding_the_key_starts_as_primary() {
    let mut o = obs(
        Some(cluster(Some("42"), Some("n2"))),
        DataState::Initialized,
        None,
    );
    o.local.was_primary = true;
    assert_eq!(
        decide(&o).actions,
        vec![Action::RenewLeader, Action::Start(StartAs::Primary)]
    );
}

#[test]
fn starting_postgres_means_wait() {
    let mut o = obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Initialized,
        None,
    );
    o.local.running = true;
    assert!(decide(&o).actions.is_empty());
}

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

#[test]
fn primary_without_dcs_demotes_only_after_its_deadline() {
    let mut o = obs(None, DataState::Initialized, Some(probe(false, 100)));
    assert!(decide(&o).actions.is_empty());
    o.lease_valid = false;
    assert_eq!(decide(&o).actions, vec![Action::Demote { upstream: None }]);
}

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
fn former_primary_rewinds_before_following_the_new_leader() {
    let mut o = obs(
        Some(cluster(Some("42"), Some("n1"))),
        DataState::Initialized,
        None,
    );
    o.local.was_primary = true;
    let follow = Action::Start(StartAs::Replica {
        upstream: Some("n1".into()),
    });
    assert_eq!(
        decide(&o).actions,
        vec![Action::Repair { from: "n1".into() }, follow.clone()]
    );
    o.local.engine.rewound = true;
    assert_eq!(decide(&o).actions, vec![follow.clone()]);
    o.local.engine.rewound = false;
    o.local.engine.use_pg_rewind = false;
    assert_eq!(decide(&o).actions, vec![follow]);
}

#[test]
fn without_dcs_a_stopped_node_only_starts_read_only() {
    let mut o = obs(None, DataState::Initialized, None);
    o.local.was_primary = true;
    assert_eq!(
        decide(&o).actions,
        vec![Action::Start(StartAs::Replica { upstream: None })]
    );
}

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

#[test]
fn nofailover_member_does_not_bootstrap() {
    let mut o = obs(Some(Cluster::default()), DataState::Missing, None);
    o.tags.nofailover = true;
    assert!(decide(&o).actions.is_empty());
}

#[test]
fn replica_stuck_on_an_older_timeline_is_rewound() {
    let mut c = cluster(Some("42"), Some("n1"));
    c.members.get_mut("n1").unwrap().value.timeline = Some(3);
    let mut p = probe(true, 100);
    p.timeline = Some(2);
    p.streaming = false;
    let mut o = obs(Some(c), DataState::Initialized, Some(p));
    o.not_streaming_for = Some(std::time::Duration::from_secs(5));
    assert_eq!(
        decide(&o).actions,
        vec![Action::Follow {
            leader: "n1".into()
        }],
        "give it ttl first"
    );
    o.not_streaming_for = Some(std::time::Duration::from_secs(40));
    assert_eq!(
        decide(&o).actions,
        vec![
            Action::Demote {
                upstream: Some("n1".into())
            },
            Action::Repair { from: "n1".into() },
            Action::Start(StartAs::Replica {
                upstream: Some("n1".into())
            }),
        ]
    );
    o.local.engine.probe.as_mut().unwrap().timeline = Some(3);
    assert_eq!(
        decide(&o).actions,
        vec![Action::Follow {
            leader: "n1".into()
        }],
        "same timeline: just follow"
    );
}

fn with_failover(
    mut c: Cluster,
    leader: Option<&str>,
    member: Option<&str>,
    at: Option<&str>,
) -> Cluster {
    c.failover = Some(Versioned {
        value: warden_consensus::types::Failover {
            leader: leader.map(str::to_string),
            member: member.map(str::to_string),
            scheduled_at: at.map(str::to_string),
            extra: serde_json::Map::new(),
        },
        mod_revision: 9,
    });
    c
}

/// n2 leads with a running primary at WAL 1000.
fn leader_obs(c: Cluster) -> Observation<PgLocal> {
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(false, 1000)));
    o.local.was_primary = true;
    o
}

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
fn former_leader_of_a_switchover_does_not_race() {
    let mut c = with_failover(cluster(Some("42"), None), Some("n2"), None, None);
    c.members.remove("n3");
    let d = decide(&obs(
        Some(c),
        DataState::Initialized,
        Some(probe(true, 1000)),
    ));
    assert!(d.actions.is_empty(), "{d:?}");
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

fn with_sync(mut c: Cluster, leader: &str, standbys: Option<&str>) -> Cluster {
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(&serde_json::json!({"synchronous_mode": true})).unwrap(),
        mod_revision: 1,
    });
    c.sync = Some(Versioned {
        value: warden_consensus::types::SyncState {
            leader: Some(leader.into()),
            quorum: Some(0),
            sync_standby: standbys.map(str::to_string),
            extra: serde_json::Map::new(),
        },
        mod_revision: 3,
    });
    c
}

#[test]
fn synchronous_mode_promotes_only_a_listed_standby() {
    // n1 (the leader) is gone; n3 is the synchronous standby.
    let c = with_sync(cluster(Some("42"), None), "n1", Some("n3"));
    // n2 is further ahead but not in /sync: it must not race ...
    let mut o = obs(
        Some(c.clone()),
        DataState::Initialized,
        Some(probe(true, 5000)),
    );
    o.peers = vec![peer("n3", 4000, false)];
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("synchronous"), "{}", d.note);
    // ... while n3 races, without deferring to n2's larger position.
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 4000)));
    o.me = "n3".into();
    o.peers = vec![peer("n2", 5000, false)];
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
}

#[test]
fn synchronous_mode_without_a_sync_standby_promotes_nobody() {
    let c = with_sync(cluster(Some("42"), None), "n1", None);
    for me in ["n2", "n3"] {
        let mut o = obs(
            Some(c.clone()),
            DataState::Initialized,
            Some(probe(true, 100)),
        );
        o.me = me.into();
        assert!(decide(&o).actions.is_empty());
    }
    // Off again: the normal race.
    let mut c = c;
    c.config = None;
    let o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
}

#[test]
fn synchronous_mode_switchover_only_to_a_sync_standby() {
    let c = with_failover(
        with_sync(cluster(Some("42"), Some("n2")), "n2", Some("n1")),
        Some("n2"),
        Some("n3"),
        None,
    );
    let mut o = leader_obs(c);
    o.peers = vec![peer("n1", 1000, false), peer("n3", 1000, false)];
    let d = decide(&o);
    assert!(d.actions.contains(&Action::ClearFailover), "{d:?}");
    assert!(d.note.contains("not a synchronous standby"), "{}", d.note);
}

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
