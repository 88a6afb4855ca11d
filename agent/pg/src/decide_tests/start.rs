//! Stopped and starting nodes: how they start, and rewinds before following.

use super::fixtures::*;
use warden_ha::{decide, Action, DataState, StartAs};

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

/// `/history` entry: `timeline` left, `new_leader` promoted onto `timeline + 1`.
fn fork(timeline: u32, new_leader: &str) -> warden_consensus::types::HistoryEntry {
    warden_consensus::types::HistoryEntry {
        timeline,
        lsn: 1000,
        reason: "no recent leader".into(),
        timestamp: None,
        new_leader: Some(new_leader.into()),
    }
}

#[test]
fn former_primary_on_a_timeline_another_member_created_is_copied_afresh() {
    // Seen in the simulation: we promoted onto timeline 3 and died before recording it
    // in /history; n1 was then promoted onto "timeline 3" too. pg_rewind sees the same
    // timeline and rewinds nothing: only a fresh copy is safe.
    let mut c = cluster(Some("42"), Some("n1"));
    c.history = vec![fork(1, "n2"), fork(2, "n1")];
    c.members.get_mut("n1").unwrap().value.timeline = Some(3);
    let mut o = obs(Some(c), DataState::Initialized, None);
    o.local.was_primary = true;
    o.local.engine.stopped_timeline = Some(3);
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::Clone { from: "n1".into() },
            Action::Start(StartAs::Replica {
                upstream: Some("n1".into())
            })
        ],
        "{}",
        d.note
    );

    // Our own promotion (recorded as ours): rewind as usual.
    o.local.engine.stopped_timeline = Some(2);
    assert_eq!(
        decide(&o).actions.first(),
        Some(&Action::Repair { from: "n1".into() })
    );
    // Not a former primary, or already rewound: nothing to copy.
    o.local.engine.stopped_timeline = Some(3);
    o.local.was_primary = false;
    assert_ne!(
        decide(&o).actions.first(),
        Some(&Action::Clone { from: "n1".into() })
    );
    o.local.was_primary = true;
    o.local.engine.rewound = true;
    assert_ne!(
        decide(&o).actions.first(),
        Some(&Action::Clone { from: "n1".into() })
    );
}

#[test]
fn a_member_not_answering_yet_publishes_its_datas_timeline() {
    use warden_ha::Engine;
    let mut o = obs(None, DataState::Initialized, None);
    o.local.engine.stopped_timeline = Some(7);
    let fields = o.local.engine.member_fields();
    assert_eq!(fields.get("timeline"), Some(&serde_json::json!(7)));
    assert!(!fields.contains_key("xlog_location"));
    // Answering: the probe's timeline and position.
    o.local.engine.probe = Some(probe(false, 4242));
    let fields = o.local.engine.member_fields();
    assert_eq!(fields.get("xlog_location"), Some(&serde_json::json!(4242)));
}
