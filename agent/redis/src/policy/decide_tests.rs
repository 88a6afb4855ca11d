//! The HA core (`warden_ha::decide`) deciding for Redis: scenarios built from the
//! `INFO` answers captured from Redis 7.0.15 (`fixtures/`) and the member keys the
//! Redis policy publishes from them, checked for the actions and their order (key
//! actions before database actions, so nothing becomes writable before this turn's key
//! write succeeded).
//!
//! The lineage in the fixtures: `n1` was the primary on [`OLD_ID`] (offset 116) with a
//! streaming replica; that replica was promoted (`REPLICAOF NO ONE`: [`NEW_ID`], the old
//! id kept as `replid2` up to 116) and took writes up to 168; the old primary was then
//! re-pointed at it and continued by a partial resync (both ids).

use super::*;
use warden_consensus::types::{Member, Role, Status, SyncState};
use warden_consensus::{DynamicConfig, LeaderKey, Versioned};
use warden_ha::{decide, Action, DataState, Decision, Local, Observation, Peer, StartAs, Tags};

const PRIMARY: &str = include_str!("fixtures/primary_with_replica.info");
const REPLICA: &str = include_str!("fixtures/replica_streaming.info");
const PROMOTED: &str = include_str!("fixtures/promoted.info");
const FOLLOWING: &str = include_str!("fixtures/former_primary_following.info");
const LINK_DOWN: &str = include_str!("fixtures/replica_link_down.info");

const OLD_ID: &str = "39d29b9e17074f8c17b69651954ee89822f6b180";
const NEW_ID: &str = "7ad191883fb56422512a87579253984947e69a97";
/// The cluster identity the adapter's marker file holds (Redis has none of its own).
const CLUSTER_ID: &str = "7311987543210987654";

fn local(info: &str) -> RedisLocal {
    RedisLocal {
        replication: Some(parse_info(info).unwrap()),
        ..RedisLocal::default()
    }
}

/// The streaming replica of the fixture, having received and processed `offset`.
fn replica_at(offset: u64) -> RedisLocal {
    let mut l = local(REPLICA);
    let r = l.replication.as_mut().unwrap();
    r.slave_read_repl_offset = Some(offset);
    r.slave_repl_offset = Some(offset);
    r.master_repl_offset = offset;
    l
}

/// A primary just created by a bootstrap: its own random id, nothing written yet.
fn fresh_primary() -> RedisLocal {
    let mut l = local(PRIMARY);
    let r = l.replication.as_mut().unwrap();
    r.replid = "d3c8a8a0c3a5b2f1e0f9d8c7b6a5f4e3d2c1b0a9".into();
    r.master_repl_offset = 0;
    r.replicas.clear();
    l
}

fn is_master(l: &RedisLocal) -> bool {
    l.replication
        .as_ref()
        .is_some_and(|r| r.role == ServerRole::Master)
}

/// A member key as the agent publishes it: the neutral fields, then the engine's.
fn member(l: &RedisLocal) -> Versioned<Member> {
    let role = if is_master(l) {
        Role::Primary
    } else {
        Role::Replica
    };
    let state = if l.replication.is_some() {
        "running"
    } else {
        "stopped"
    };
    let mut m = serde_json::json!({
        "conn_url": "redis://127.0.0.1:6379", "api_url": "http://127.0.0.1:8008/patroni",
        "state": state, "role": role.as_str(), "version": "4.0.0",
    });
    for (k, v) in l.member_fields() {
        m[k] = v;
    }
    Versioned {
        value: serde_json::from_value(m).unwrap(),
        mod_revision: 1,
    }
}

/// A cluster (initialized unless `initialize` says otherwise) whose members published
/// what `members` say.
fn cluster(
    initialize: Option<&str>,
    leader: Option<&str>,
    members: &[(&str, &RedisLocal)],
) -> Cluster {
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
    for (name, l) in members {
        c.members.insert((*name).into(), member(l));
    }
    c
}

fn with_config(mut c: Cluster, json: &serde_json::Value) -> Cluster {
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(json).unwrap(),
        mod_revision: 1,
    });
    c
}

/// `/status` as the last leader left it: its offset.
fn with_optime(mut c: Cluster, offset: u64) -> Cluster {
    c.status = Some(Status {
        optime: Some(offset),
        ..Status::default()
    });
    c
}

/// `me`'s turn on a node whose Redis runs (or not) as `engine` says.
fn obs(me: &str, c: Cluster, engine: RedisLocal) -> Observation<RedisLocal> {
    let running = engine.replication.is_some();
    Observation {
        now: chrono_epoch(),
        manual: None,
        me: me.into(),
        tags: Tags::default(),
        cluster: Some(c),
        lease_renewed: true,
        lease_valid: true,
        local: Local {
            data: DataState::Initialized,
            system_identifier: Some(CLUSTER_ID.into()),
            was_primary: is_master(&engine),
            running,
            engine,
        },
        peers: vec![],
        bootstrapped_here: false,
        primary_down_for: None,
        failsafe_confirmed: None,
        failsafe_leader_active: false,
        watchdog_missing: None,
        not_streaming_for: None,
        local_standby_cluster: false,
    }
}

/// The observation's clock is irrelevant here (no scheduled switchover); the crate
/// does not depend on `chrono`, so the type's default (the epoch) stands in.
fn chrono_epoch<T: Default>() -> T {
    T::default()
}

/// A peer's `/patroni` as the race reads it: a Redis member reports its offset and no
/// promotion counter.
fn peer(name: &str, offset: u64) -> Peer {
    Peer {
        name: name.into(),
        status: Some(warden_ha::PeerStatus {
            is_primary: false,
            position: offset,
            generation: None,
            may_become_leader: true,
            priority: 1,
        }),
    }
}

fn is_key_action(a: &Action) -> bool {
    matches!(
        a,
        Action::RaceInitialize
            | Action::SetInitialize { .. }
            | Action::AcquireLeader
            | Action::RenewLeader
            | Action::ReleaseLeader
            | Action::ClearFailover
    )
}

/// Decides, and checks that no key action comes after a database action.
fn run(o: &Observation<RedisLocal>) -> Decision {
    let d = decide(o);
    if let Some(first_db) = d.actions.iter().position(|a| !is_key_action(a)) {
        assert!(
            !d.actions[first_db..].iter().any(is_key_action),
            "a key action after a database action: {d:?}"
        );
    }
    d
}

fn is_promote(a: &Action) -> bool {
    matches!(a, Action::Promote { .. })
}

// --- Bootstrap -----------------------------------------------------------------------

#[test]
fn the_first_node_races_for_initialize_and_bootstraps_as_primary() {
    let mut o = obs("n1", Cluster::default(), RedisLocal::default());
    o.local.data = DataState::Missing;
    o.local.system_identifier = None;
    assert_eq!(
        run(&o).actions,
        vec![Action::RaceInitialize, Action::Bootstrap]
    );
    // A member that may never lead leaves the bootstrap to the others.
    o.tags.nofailover = true;
    assert_eq!(run(&o).actions, vec![]);

    // The race won and the new primary running: the leader key, then the identity.
    let mut o = obs("n1", cluster(Some(""), None, &[]), fresh_primary());
    o.bootstrapped_here = true;
    assert_eq!(
        run(&o).actions,
        vec![
            Action::AcquireLeader,
            Action::SetInitialize {
                system_identifier: CLUSTER_ID.into()
            }
        ]
    );
    // The leader renews from then on, as any leader.
    let c = cluster(Some(CLUSTER_ID), Some("n1"), &[("n1", &fresh_primary())]);
    let d = run(&obs("n1", c, fresh_primary()));
    assert_eq!(d.actions.first(), Some(&Action::RenewLeader), "{d:?}");
}

#[test]
fn the_others_wait_for_the_bootstrap_then_clone_from_the_leader() {
    let empty = |c: Cluster| {
        let mut o = obs("n2", c, RedisLocal::default());
        o.local.data = DataState::Missing;
        o.local.system_identifier = None;
        o
    };
    let d = run(&empty(cluster(Some(""), None, &[])));
    assert_eq!(d.actions, vec![]);
    assert!(d.note.contains("bootstrap"), "{}", d.note);
    // Initialized, but the leader's Redis is not running yet: nothing to copy from.
    let mut stopped_leader = local(PRIMARY);
    stopped_leader.replication = None;
    let c = cluster(Some(CLUSTER_ID), Some("n1"), &[("n1", &stopped_leader)]);
    assert_eq!(run(&empty(c)).actions, vec![]);
    // No leader at all: wait too.
    let c = cluster(Some(CLUSTER_ID), None, &[("n1", &local(PRIMARY))]);
    assert_eq!(run(&empty(c)).actions, vec![]);
    // The leader runs: copy from it.
    let c = cluster(Some(CLUSTER_ID), Some("n1"), &[("n1", &local(PRIMARY))]);
    assert_eq!(
        run(&empty(c.clone())).actions,
        vec![Action::Clone { from: "n1".into() }]
    );
    // The copy is on disk, not running: start as the leader's replica, no repair.
    let mut o = obs("n2", c.clone(), RedisLocal::default());
    o.local.running = false;
    assert_eq!(
        run(&o).actions,
        vec![Action::Start(StartAs::Replica {
            upstream: Some("n1".into())
        })]
    );
    // Started and still receiving the first full copy: keep following.
    let mut syncing = local(LINK_DOWN);
    let r = syncing.replication.as_mut().unwrap();
    r.sync_in_progress = true;
    r.master = Some(("127.0.0.1".into(), 27101));
    assert_eq!(
        run(&obs("n2", c, syncing)).actions,
        vec![Action::Follow {
            leader: "n1".into()
        }]
    );
}

// --- Steady state --------------------------------------------------------------------

#[test]
fn the_leader_renews_its_key_before_configuring_its_primary() {
    let c = cluster(
        Some(CLUSTER_ID),
        Some("n1"),
        &[("n1", &local(PRIMARY)), ("n2", &local(REPLICA))],
    );
    assert_eq!(
        run(&obs("n1", c, local(PRIMARY))).actions,
        vec![
            Action::RenewLeader,
            Action::ConfigurePrimary,
            Action::SyncReplication,
            Action::Retain {
                members: vec!["n2".into()]
            },
            Action::WriteStatus,
        ]
    );
}

#[test]
fn a_replica_follows_the_leader_wherever_it_points_now() {
    let c = cluster(
        Some(CLUSTER_ID),
        Some("n1"),
        &[("n1", &local(PRIMARY)), ("n2", &local(REPLICA))],
    );
    let follow_n1 = vec![Action::Follow {
        leader: "n1".into(),
    }];
    // Streaming from the leader: `Follow` finds the configuration already right.
    let d = run(&obs("n2", c.clone(), local(REPLICA)));
    assert_eq!(d.actions, follow_n1);
    // Pointed at another node (here a former primary on another port, link down for
    // ten minutes): the same `Follow`, which re-points it (`REPLICAOF` the leader). No
    // stop, repair and restart as for a stuck PostgreSQL replica: Redis retries the
    // sync every second by itself.
    let mut elsewhere = local(LINK_DOWN);
    elsewhere.replication.as_mut().unwrap().master = Some(("127.0.0.1".into(), 27199));
    let mut o = obs("n2", c.clone(), elsewhere);
    o.not_streaming_for = Some(std::time::Duration::from_secs(600));
    assert_eq!(run(&o).actions, follow_n1);
    // A master that does not hold the key is demoted towards the leader.
    let d = run(&obs("n3", c, local(PROMOTED)));
    assert_eq!(
        d.actions,
        vec![Action::Demote {
            upstream: Some("n1".into())
        }]
    );
}

// --- Failover ------------------------------------------------------------------------

/// The leader key is vacant: `n1` (the primary, last at offset `last`) is gone; `n2`
/// and `n3` were its replicas.
fn vacant(last: u64) -> Cluster {
    with_optime(
        cluster(
            Some(CLUSTER_ID),
            None,
            &[("n2", &local(REPLICA)), ("n3", &local(REPLICA))],
        ),
        last,
    )
}

#[test]
fn the_replica_with_the_highest_offset_takes_the_key_then_promotes() {
    let mut o = obs("n2", vacant(116), replica_at(116));
    o.peers = vec![
        peer("n3", 100),
        Peer {
            name: "n1".into(),
            status: None,
        },
    ];
    let d = run(&o);
    assert_eq!(d.actions.len(), 4, "{d:?}");
    assert_eq!(d.actions[0], Action::AcquireLeader);
    assert!(is_promote(&d.actions[1]), "{d:?}");
    assert_eq!(
        d.actions[2..],
        [
            Action::Retain {
                members: vec!["n3".into()]
            },
            Action::WriteStatus
        ]
    );
    // Redis keeps no numbered history: no `/history` entry is due.
    assert_eq!(o.local.engine.fork_point(), None);
}

#[test]
fn a_replica_with_a_lower_offset_than_a_healthy_peer_does_not_race() {
    let mut o = obs("n2", vacant(116), replica_at(100));
    o.peers = vec![peer("n3", 116)];
    let d = run(&o);
    assert_eq!(d.actions, vec![]);
    assert!(
        d.note.contains("n3") && d.note.contains("116"),
        "{}",
        d.note
    );
    // One byte more is enough to go first.
    o.peers = vec![peer("n3", 99)];
    assert_eq!(run(&o).actions[0], Action::AcquireLeader);
    // As far: both race (the create-only key decides) unless the peer has a higher
    // failover_priority.
    o.peers = vec![peer("n3", 100)];
    assert_eq!(run(&o).actions[0], Action::AcquireLeader);
    o.peers[0].status.as_mut().unwrap().priority = 5;
    assert_eq!(run(&o).actions, vec![]);
    // A peer further ahead that may not lead, or that ran a primary, changes things
    // differently: the first is ignored, the second stops the race.
    o.peers = vec![peer("n3", 500)];
    o.peers[0].status.as_mut().unwrap().may_become_leader = false;
    assert_eq!(run(&o).actions[0], Action::AcquireLeader);
    o.peers = vec![peer("n3", 50)];
    o.peers[0].status.as_mut().unwrap().is_primary = true;
    let d = run(&o);
    assert_eq!(d.actions, vec![]);
    assert!(d.note.contains("primary"), "{}", d.note);
}

#[test]
fn a_replica_that_may_not_lead_never_races() {
    for tags in [
        Tags {
            nofailover: true,
            ..Tags::default()
        },
        Tags {
            failover_priority: Some(0),
            ..Tags::default()
        },
    ] {
        let mut o = obs("n2", vacant(116), replica_at(116));
        o.tags = tags;
        let d = run(&o);
        assert_eq!(d.actions, vec![], "{d:?}");
        assert!(d.note.contains("nofailover"), "{}", d.note);
    }
}

#[test]
fn a_replica_over_the_lag_limit_in_offset_bytes_does_not_race() {
    let limited = |last| {
        with_config(
            vacant(last),
            &serde_json::json!({"maximum_lag_on_failover": 1000}),
        )
    };
    // 1001 bytes of the replication stream behind the last leader's offset.
    let d = run(&obs("n2", limited(1116), replica_at(115)));
    assert_eq!(d.actions, vec![]);
    assert!(
        d.note.contains("maximum_lag_on_failover") && d.note.contains("1001"),
        "{}",
        d.note
    );
    // Exactly at the limit is allowed.
    assert_eq!(
        run(&obs("n2", limited(1116), replica_at(116))).actions[0],
        Action::AcquireLeader
    );
    // What counts is what the replica received (`slave_read_repl_offset`), even when it
    // has processed less of it.
    let mut received = replica_at(116);
    received.replication.as_mut().unwrap().slave_repl_offset = Some(16);
    assert_eq!(
        run(&obs("n2", limited(1116), received)).actions[0],
        Action::AcquireLeader
    );
}

// --- The replication-id rule ---------------------------------------------------------

/// After the fixtures' promotion: `n1` (the old primary) followed the promoted node by a
/// partial resync and publishes both ids; the promoted node is gone (key vacant); `n2`
/// is still on the old id.
fn after_promotion(n2: &RedisLocal) -> Cluster {
    with_optime(
        cluster(
            Some(CLUSTER_ID),
            None,
            &[("n1", &local(FOLLOWING)), ("n2", n2)],
        ),
        168,
    )
}

#[test]
fn a_replica_on_an_abandoned_history_is_not_promoted_and_says_why() {
    // Even alone and ahead of everyone by offset: its bytes past 116 are on a branch
    // the promotion left behind.
    for n2 in [local(REPLICA), replica_at(500)] {
        let d = run(&obs("n2", after_promotion(&n2), n2));
        assert_eq!(d.actions, vec![], "{d:?}");
        assert!(d.note.contains("not racing"), "{}", d.note);
        assert!(
            d.note.contains(OLD_ID) && d.note.contains(NEW_ID) && d.note.contains("member n1"),
            "{}",
            d.note
        );
    }
    // The member that followed the promotion races, ahead of n2.
    let c = after_promotion(&local(REPLICA));
    let mut o = obs("n1", c.clone(), local(FOLLOWING));
    o.peers = vec![peer("n2", 116)];
    let d = run(&o);
    assert_eq!(d.actions[0], Action::AcquireLeader, "{d:?}");
    assert!(is_promote(&d.actions[1]));
    // Holding the key (won on a stale view) while on the old id: give it back rather
    // than promote.
    let mut c = c;
    c.leader = Some(LeaderKey {
        name: "n2".into(),
        create_revision: 8,
        mod_revision: 8,
        lease: 2,
    });
    let d = run(&obs("n2", c, local(REPLICA)));
    assert_eq!(d.actions, vec![Action::ReleaseLeader]);
    assert!(d.note.contains(NEW_ID), "{}", d.note);
}

#[test]
fn a_cut_off_primary_on_an_abandoned_history_does_not_take_the_key_back() {
    // n2 runs as a master on the old id (it was the primary, cut off while another was
    // promoted): demote, without an upstream, rather than take the vacant key.
    let d = run(&obs("n2", after_promotion(&local(PRIMARY)), local(PRIMARY)));
    assert_eq!(d.actions, vec![Action::Demote { upstream: None }]);
    assert!(d.note.contains(OLD_ID), "{}", d.note);
    // Nobody continued its history: it takes its key back, key first.
    let c = cluster(
        Some(CLUSTER_ID),
        None,
        &[("n2", &local(PRIMARY)), ("n3", &local(REPLICA))],
    );
    assert_eq!(
        run(&obs("n2", c, local(PRIMARY))).actions,
        vec![
            Action::AcquireLeader,
            Action::ConfigurePrimary,
            Action::Retain {
                members: vec!["n3".into()]
            },
            Action::WriteStatus,
        ]
    );
}

/// A peer on an abandoned history, ahead by offset, is not worth deferring to: its
/// member key shows the history another member continued (`Engine::peer_refusal`
/// gets the peer's name), and it refuses itself. Deferring to it would leave the
/// cluster without a leader for as long as its offset stayed ahead.
#[test]
fn a_peer_on_an_abandoned_history_ahead_by_offset_does_not_hold_off_the_race() {
    let n2 = replica_at(500);
    let c = after_promotion(&n2);
    assert!(
        local(FOLLOWING)
            .peer_refusal(&c, "n2", &peer("n2", 500).status.unwrap())
            .is_some_and(|why| why.contains(OLD_ID)),
        "n2's member key shows the abandoned id"
    );
    let mut o = obs("n1", c.clone(), local(FOLLOWING));
    o.peers = vec![peer("n2", 500)];
    let d = run(&o);
    assert_eq!(d.actions[0], Action::AcquireLeader, "{d:?}");
    assert!(is_promote(&d.actions[1]), "{d:?}");
    // ... while n2 refuses itself.
    let mut o = obs("n2", c, n2);
    o.peers = vec![peer("n1", 168)];
    assert_eq!(run(&o).actions, vec![]);
}

// --- A former primary returns ----------------------------------------------------------

#[test]
fn a_former_primary_returning_follows_the_new_leader_without_repair() {
    // n1 (the old primary, OLD_ID) comes back while n2, promoted, leads.
    let c = cluster(
        Some(CLUSTER_ID),
        Some("n2"),
        &[("n1", &local(PRIMARY)), ("n2", &local(PROMOTED))],
    );
    // Stopped, its last lineage known from the marker: start as n2's replica; Redis
    // resynchronises by itself (partially, or with a full copy that drops its own
    // writes), so no repair comes first.
    let stopped = RedisLocal {
        last_known: local(PRIMARY).lineage(),
        ..RedisLocal::default()
    };
    assert_eq!(stopped.repair_before_following(true, &c, "n2"), None);
    assert_eq!(stopped.recopy_before_following(true, &c, "n1", "n2"), None);
    let mut o = obs("n1", c.clone(), stopped);
    o.local.was_primary = true;
    assert_eq!(
        run(&o).actions,
        vec![Action::Start(StartAs::Replica {
            upstream: Some("n2".into())
        })]
    );
    // Still running as a master: demoted towards n2 first ...
    assert_eq!(
        run(&obs("n1", c.clone(), local(PRIMARY))).actions,
        vec![Action::Demote {
            upstream: Some("n2".into())
        }]
    );
    // ... then it follows (here after the partial resync), and a link that stays down
    // is never a reason to repair.
    let mut o = obs("n1", c.clone(), local(FOLLOWING));
    assert_eq!(
        run(&o).actions,
        vec![Action::Follow {
            leader: "n2".into()
        }]
    );
    o.local.engine = local(LINK_DOWN);
    o.not_streaming_for = Some(std::time::Duration::from_secs(3600));
    let d = run(&o);
    assert!(
        !d.actions.iter().any(|a| matches!(a, Action::Repair { .. })),
        "{d:?}"
    );
    assert_eq!(local(PRIMARY).repair_stuck_replica(&c, "n2", true), None);
}

// --- A primary that lost its lease -------------------------------------------------------

#[test]
fn a_primary_without_a_renewed_lease_acts_as_no_leader_and_is_demoted() {
    let c = cluster(
        Some(CLUSTER_ID),
        Some("n1"),
        &[("n1", &local(PRIMARY)), ("n2", &local(REPLICA))],
    );
    // Still holding the key, but not renewed this turn: no leader action at all (the
    // fencing deadline makes it read-only if the renewal does not come back).
    let mut o = obs("n1", c.clone(), local(PRIMARY));
    o.lease_renewed = false;
    assert_eq!(run(&o).actions, vec![]);
    // The key is gone and the lease was not renewed: demote before anything else.
    let mut gone = c;
    gone.leader = None;
    o.cluster = Some(gone.clone());
    assert_eq!(run(&o).actions, vec![Action::Demote { upstream: None }]);
    // The DCS is unreachable: nothing until the lease deadline passes, then demote.
    o.cluster = None;
    assert_eq!(run(&o).actions, vec![]);
    o.lease_valid = false;
    assert_eq!(run(&o).actions, vec![Action::Demote { upstream: None }]);
    // Current behaviour: a master whose writes the agent paused counts as not
    // writable, so while the pause lasts it is not demoted (it cannot take writes
    // either); it is demoted at the first turn after the pause lapses.
    let mut paused = local(PRIMARY);
    paused.writes_paused = true;
    let mut o = obs("n1", gone, paused);
    o.lease_renewed = false;
    assert_eq!(run(&o).actions, vec![]);
    o.local.engine.writes_paused = false;
    assert_eq!(run(&o).actions, vec![Action::Demote { upstream: None }]);
}

// --- Synchronous mode ------------------------------------------------------------------

fn with_sync(c: Cluster, standby: Option<&str>) -> Cluster {
    let mut c = with_config(c, &serde_json::json!({"synchronous_mode": true}));
    c.sync = Some(Versioned {
        value: SyncState {
            leader: Some("n1".into()),
            quorum: Some(0),
            sync_standby: standby.map(str::to_string),
            extra: serde_json::Map::new(),
        },
        mod_revision: 3,
    });
    c
}

#[test]
fn synchronous_mode_promotes_only_the_standby_named_in_sync() {
    // The core applies `/sync` to any engine: n2 is further ahead but not named, so it
    // does not race, while n3 races without deferring to n2.
    let c = with_sync(vacant(200), Some("n3"));
    let mut o = obs("n2", c.clone(), replica_at(200));
    o.peers = vec![peer("n3", 150)];
    let d = run(&o);
    assert_eq!(d.actions, vec![]);
    assert!(d.note.contains("synchronous"), "{}", d.note);
    let mut o = obs("n3", c, replica_at(150));
    o.peers = vec![peer("n2", 200)];
    assert_eq!(run(&o).actions[0], Action::AcquireLeader);
    // Current behaviour: the Redis adapter plans no synchronous replication (the
    // default `plan_synchronous`), so a Redis leader never names a standby in `/sync`,
    // and with synchronous mode on nobody is promoted automatically.
    for me in ["n2", "n3"] {
        let d = run(&obs(me, with_sync(vacant(200), None), replica_at(200)));
        assert_eq!(d.actions, vec![], "{d:?}");
    }
    let mut c = with_sync(vacant(200), None);
    c.sync = None;
    assert_eq!(run(&obs("n2", c, replica_at(200))).actions, vec![]);
}

/// The primary's redis-server stopped while its agent holds the key: what it last
/// reported (the marker), no answer now.
fn stopped_primary() -> RedisLocal {
    RedisLocal {
        replication: None,
        writes_paused: false,
        last_known: Some(local(PRIMARY).lineage().unwrap()),
    }
}

/// n1's turn: it last ran as the primary (the marker says so), its server is down.
fn stopped_leader_obs(c: Cluster) -> Observation<RedisLocal> {
    let mut o = obs("n1", c, stopped_primary());
    o.local.was_primary = true;
    o
}

#[test]
fn a_stopped_primary_whose_history_a_replica_holds_releases_the_key() {
    // The replica runs on the primary's replication id: it has what the primary
    // acknowledged, and a restart from the primary's disk would make it drop that.
    let c = cluster(
        Some(CLUSTER_ID),
        Some("n1"),
        &[("n1", &stopped_primary()), ("n2", &local(REPLICA))],
    );
    let d = run(&stopped_leader_obs(c));
    assert_eq!(d.actions, vec![Action::ReleaseLeader], "{}", d.note);
    assert!(d.note.contains("n2 holds our history"), "{}", d.note);
}

#[test]
fn a_stopped_primary_nobody_else_has_a_copy_of_restarts_in_place() {
    // The only other member is down: restarting from the disk is all there is.
    let mut gone = local(REPLICA);
    gone.replication = None;
    let c = cluster(
        Some(CLUSTER_ID),
        Some("n1"),
        &[("n1", &stopped_primary()), ("n2", &gone)],
    );
    let d = run(&stopped_leader_obs(c));
    assert_eq!(
        d.actions,
        vec![Action::RenewLeader, Action::Start(StartAs::Primary)],
        "{}",
        d.note
    );
}
