//! `/patroni` bodies: Warden's, byte for byte as the server wrote them before the
//! types (with `json!`, keys in `serde_json::Map` order), and Patroni 4's, read with
//! the fields Warden does not know.

use super::*;

/// A running primary with a streaming replica, the archiver and a tag, as
/// `agent/src/api/views.rs` wrote it with `json!`.
const WARDEN_PRIMARY: &str = concat!(
    r#"{"database_system_identifier":"7408277255830290455","dcs_last_seen":1724874545,"#,
    r#""patroni":{"name":"node1","scope":"demo","version":"4.0.0","warden_version":"0.1.0"},"#,
    r#""postmaster_start_time":"2024-08-28 19:39:26.352526+00:00","#,
    r#""replication":[{"application_name":"node2","client_addr":"127.0.0.1","flush_lsn":67395656,"#,
    r#""state":"streaming","sync_priority":0,"sync_state":"async","usename":"replicator"},"#,
    r#"{"application_name":"node3","client_addr":null,"flush_lsn":null,"state":"startup","#,
    r#""sync_priority":0,"sync_state":"async","usename":"replicator"}],"#,
    r#""role":"primary","server_version":160004,"state":"running","#,
    r#""tags":{"clonefrom":true,"zone":"a"},"timeline":3,"#,
    r#""warden":{"archive":{"archived_lsn":67108864,"failures":0,"last_error":null,"#,
    r#""last_segment":"000000030000000000000003"},"archiver":true,"fencing_token":42,"#,
    r#""leader":true,"lease_valid":true,"note":"holding the leader key"},"#,
    r#""xlog":{"location":67395656}}"#
);

/// A streaming synchronous replica with a pending and a scheduled restart.
const WARDEN_REPLICA: &str = concat!(
    r#"{"database_system_identifier":"7408277255830290455","dcs_last_seen":1724874546,"#,
    r#""patroni":{"name":"node2","scope":"demo","version":"4.0.0","warden_version":"0.1.0"},"#,
    r#""pending_restart":true,"#,
    r#""pending_restart_reason":{"max_connections":{"new_value":"200","old_value":"100"}},"#,
    r#""postmaster_start_time":"2024-08-28 19:40:01.1+00:00","#,
    r#""replication_state":"streaming","role":"replica","#,
    r#""scheduled_restart":{"postgres_version":"170000","restart_pending":true,"role":"replica","#,
    r#""schedule":"2030-01-01T00:00:00+00:00","timeout":30},"#,
    r#""server_version":160004,"state":"running","sync_standby":true,"timeline":3,"#,
    r#""warden":{"archiver":false,"fencing_token":null,"leader":false,"lease_valid":false,"#,
    r#""note":"following node1"},"#,
    r#""xlog":{"paused":false,"received_location":67419744,"replayed_location":67419000,"#,
    r#""replayed_timestamp":"2024-08-28 19:41:00.5+00:00"}}"#
);

/// A member that has not started PostgreSQL and never reached the DCS.
const WARDEN_STARTING: &str = concat!(
    r#"{"dcs_last_seen":null,"#,
    r#""patroni":{"name":"node3","scope":"demo","version":"4.0.0","warden_version":"0.1.0"},"#,
    r#""role":"uninitialized","state":"starting","#,
    r#""warden":{"archiver":false,"fencing_token":null,"leader":false,"lease_valid":false,"note":""}}"#
);

fn info(name: &str) -> PatroniInfo {
    PatroniInfo {
        name: name.into(),
        scope: "demo".into(),
        version: "4.0.0".into(),
        warden_version: Some("0.1.0".into()),
    }
}

fn primary() -> PatroniStatus {
    let mut tags = Map::new();
    tags.insert("zone".into(), "a".into());
    tags.insert("clonefrom".into(), true.into());
    PatroniStatus {
        database_system_identifier: Some("7408277255830290455".into()),
        dcs_last_seen: Some(1_724_874_545),
        patroni: info("node1"),
        postmaster_start_time: Some("2024-08-28 19:39:26.352526+00:00".into()),
        replication: Some(vec![
            ReplicationRow {
                application_name: Some("node2".into()),
                client_addr: Some("127.0.0.1".into()),
                flush_lsn: Some(67_395_656),
                state: Some("streaming".into()),
                sync_priority: Some(0),
                sync_state: Some("async".into()),
                usename: Some("replicator".into()),
            },
            ReplicationRow {
                application_name: Some("node3".into()),
                state: Some("startup".into()),
                sync_priority: Some(0),
                sync_state: Some("async".into()),
                usename: Some("replicator".into()),
                ..ReplicationRow::default()
            },
        ]),
        role: "primary".into(),
        server_version: Some(160_004),
        state: "running".into(),
        tags: Some(tags),
        timeline: Some(3),
        warden: Some(WardenStatus {
            archive: Some(ArchiveStatus {
                archived_lsn: Some(67_108_864),
                failures: 0,
                last_error: None,
                last_segment: Some("000000030000000000000003".into()),
            }),
            archiver: true,
            fencing_token: Some(42),
            leader: true,
            lease_valid: true,
            note: "holding the leader key".into(),
        }),
        xlog: Some(Xlog::Primary {
            location: 67_395_656,
        }),
        ..PatroniStatus::default()
    }
}

fn replica() -> PatroniStatus {
    PatroniStatus {
        database_system_identifier: Some("7408277255830290455".into()),
        dcs_last_seen: Some(1_724_874_546),
        patroni: info("node2"),
        pending_restart: true,
        pending_restart_reason: Some(BTreeMap::from([(
            "max_connections".to_string(),
            PendingChange {
                new_value: "200".into(),
                old_value: "100".into(),
            },
        )])),
        postmaster_start_time: Some("2024-08-28 19:40:01.1+00:00".into()),
        replication_state: Some("streaming".into()),
        role: "replica".into(),
        scheduled_restart: Some(ScheduledRestart {
            postgres_version: Some("170000".into()),
            restart_pending: true,
            role: Some("replica".into()),
            schedule: "2030-01-01T00:00:00+00:00".into(),
            timeout: Some(30),
        }),
        server_version: Some(160_004),
        state: "running".into(),
        sync_standby: true,
        timeline: Some(3),
        warden: Some(WardenStatus {
            note: "following node1".into(),
            ..WardenStatus::default()
        }),
        xlog: Some(Xlog::Replica {
            paused: false,
            received_location: Some(67_419_744),
            replayed_location: Some(67_419_000),
            replayed_timestamp: Some("2024-08-28 19:41:00.5+00:00".into()),
        }),
        ..PatroniStatus::default()
    }
}

fn starting() -> PatroniStatus {
    PatroniStatus {
        patroni: info("node3"),
        role: "uninitialized".into(),
        state: "starting".into(),
        warden: Some(WardenStatus::default()),
        ..PatroniStatus::default()
    }
}

#[test]
fn warden_bodies_are_byte_for_byte_what_the_server_wrote() {
    for (typed, wire) in [
        (primary(), WARDEN_PRIMARY),
        (replica(), WARDEN_REPLICA),
        (starting(), WARDEN_STARTING),
    ] {
        assert_eq!(serde_json::to_string(&typed).unwrap(), wire);
        // What json! built went through a serde_json::Value: same bytes that way too.
        assert_eq!(serde_json::to_value(&typed).unwrap().to_string(), wire);
        let back: PatroniStatus = serde_json::from_str(wire).unwrap();
        assert_eq!(back, typed);
    }
}

#[test]
fn accessors() {
    let p = primary();
    assert!(p.is_primary() && p.is_running() && p.is_archiver());
    assert_eq!(p.wal_position(), Some(67_395_656));
    assert_eq!(p.note(), "holding the leader key");
    assert_eq!(p.tag("zone"), Some(&Value::from("a")));
    let r = replica();
    assert!(!r.is_primary() && !r.is_archiver());
    assert_eq!(r.wal_position(), Some(67_419_744));
    let x = r.xlog.unwrap();
    assert_eq!(x.received_location(), Some(67_419_744));
    assert_eq!(x.replayed_location(), Some(67_419_000));
    assert_eq!(x.location(), None);
    assert_eq!(starting().wal_position(), None);
    assert_eq!(PatroniStatus::default().note(), "");
}

/// Patroni 4.0's `GET /patroni` of a primary (docs/rest_api.rst), with the fields a
/// newer Patroni adds (`latest_end_lsn`, `logger_queue_size`, an unknown object).
const PATRONI4_PRIMARY: &str = r#"{
  "state": "running",
  "postmaster_start_time": "2024-08-28 19:39:26.352526+00:00",
  "role": "primary",
  "server_version": 160004,
  "xlog": {"location": 67395656},
  "timeline": 1,
  "replication": [
    {"usename": "replicator", "application_name": "patroni2", "client_addr": "10.89.0.6",
     "state": "streaming", "sync_state": "async", "sync_priority": 0},
    {"usename": "replicator", "application_name": "patroni3", "client_addr": null,
     "state": "streaming", "sync_state": "quorum", "sync_priority": 1}
  ],
  "dcs_last_seen": 1692356718,
  "tags": {"clonefrom": true, "failover_priority": 2},
  "database_system_identifier": "7268616322854375442",
  "pending_restart": true,
  "pending_restart_reason": {"max_connections": {"old_value": "100", "new_value": "101"}},
  "scheduled_restart": {"schedule": "2030-09-24T10:36:00+02:00", "role": "primary",
                        "postgres_version": "16.5", "restart_pending": false, "timeout": 60},
  "watchdog_failed": true,
  "logger_queue_size": 1200,
  "logger_records_lost": 3,
  "citus": {"group": 0},
  "patroni": {"version": "4.0.0", "scope": "demo", "name": "patroni1", "fork": "x"}
}"#;

/// Patroni 4 replica in an unlocked cluster, in failsafe mode, as a quorum standby.
const PATRONI4_REPLICA: &str = r#"{
  "state": "running",
  "postmaster_start_time": "2024-08-28 19:39:26.352526+00:00",
  "role": "replica",
  "server_version": 160004,
  "xlog": {"received_location": 67419744, "replayed_location": 67419000,
           "replayed_timestamp": null, "paused": false},
  "timeline": null,
  "latest_end_lsn": 67419744,
  "replication_state": "streaming",
  "quorum_standby": true,
  "cluster_unlocked": true,
  "failsafe_mode_is_active": true,
  "pause": true,
  "dcs_last_seen": 1692356928,
  "database_system_identifier": "7268616322854375442",
  "patroni": {"version": "4.0.0", "scope": "demo", "name": "patroni2"}
}"#;

#[test]
fn patroni_4_bodies_parse_with_fields_warden_does_not_know() {
    let p: PatroniStatus = serde_json::from_str(PATRONI4_PRIMARY).unwrap();
    assert!(p.is_primary() && p.is_running());
    assert_eq!(p.wal_position(), Some(67_395_656));
    assert_eq!(p.timeline, Some(1));
    assert_eq!(p.server_version, Some(160_004));
    assert_eq!(p.dcs_last_seen, Some(1_692_356_718));
    assert_eq!(p.patroni.name, "patroni1");
    assert_eq!(p.patroni.version, "4.0.0");
    assert_eq!(p.patroni.warden_version, None);
    assert!(p.warden.is_none() && !p.is_archiver() && p.note().is_empty());
    let rows = p.replication.as_ref().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].client_addr.as_deref(), Some("10.89.0.6"));
    assert_eq!(rows[1].client_addr, None);
    assert_eq!(rows[1].sync_priority, Some(1));
    assert_eq!(rows[0].flush_lsn, None);
    assert!(p.pending_restart && p.watchdog_failed);
    assert_eq!(
        p.pending_restart_reason.as_ref().unwrap()["max_connections"],
        PendingChange {
            new_value: "101".into(),
            old_value: "100".into()
        }
    );
    let s = p.scheduled_restart.as_ref().unwrap();
    assert_eq!(s.schedule, "2030-09-24T10:36:00+02:00");
    assert_eq!(s.postgres_version.as_deref(), Some("16.5"));
    assert_eq!(s.timeout, Some(60));
    assert!(!s.restart_pending);
    assert_eq!(p.tag("failover_priority"), Some(&Value::from(2)));

    let r: PatroniStatus = serde_json::from_str(PATRONI4_REPLICA).unwrap();
    assert!(!r.is_primary());
    assert_eq!(r.wal_position(), Some(67_419_744));
    assert_eq!(r.timeline, None);
    assert_eq!(r.latest_end_lsn, Some(67_419_744));
    assert_eq!(r.replication_state.as_deref(), Some("streaming"));
    assert!(r.quorum_standby && !r.sync_standby);
    assert!(r.cluster_unlocked && r.failsafe_mode_is_active && r.pause);
    assert!(r.replication.is_none() && r.tags.is_none());
}

#[test]
fn sparse_and_odd_bodies_still_parse() {
    // Patroni when PostgreSQL is down: state and role only (plus the common fields).
    let down: PatroniStatus = serde_json::from_str(
        r#"{"state": "stopped", "role": "replica", "dcs_last_seen": 0, "patroni": {"version": "3.3.0", "scope": "demo", "name": "p"}}"#,
    )
    .unwrap();
    assert_eq!(down.state, "stopped");
    assert!(down.xlog.is_none() && down.server_version.is_none());
    // Patroni 2's role name; Python's None where a flag or text was expected.
    let old: PatroniStatus = serde_json::from_str(
        r#"{"state": null, "role": "master", "pause": null, "xlog": {"location": 5}}"#,
    )
    .unwrap();
    assert!(old.is_primary() && !old.pause && old.state.is_empty());
    assert_eq!(old.wal_position(), Some(5));
    // A replica's xlog with nulls.
    let x: Xlog = serde_json::from_str(
        r#"{"received_location": null, "replayed_location": 7, "paused": null}"#,
    )
    .unwrap();
    assert_eq!(x.position(), 7);
    assert_eq!(
        serde_json::from_str::<PatroniStatus>("{}").unwrap(),
        PatroniStatus::default()
    );
}
