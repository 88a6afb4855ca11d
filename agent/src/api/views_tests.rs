//! The typed `/patroni` and `/cluster` bodies, byte for byte, in every state below
//! (`views_golden.txt`: the bodies as the `json!` builders they replaced wrote them).

use super::*;
use crate::ha::request::{RestartSpec, ScheduledRestart};
use serde_json::json;
use std::time::SystemTime;
use warden_consensus::cluster::{LeaderKey, Versioned};
use warden_consensus::types::{Failover, Member, Role, Status, SyncState};
use warden_consensus::DynamicConfig;
use warden_pg::sql::{Probe, ReplicationRow};

fn probe(in_recovery: bool) -> Probe {
    let mut p = Probe {
        in_recovery,
        timeline: Some(3),
        wal_position: Some(67_395_656),
        postmaster_start_time: "2024-08-28 19:39:26.352526+00:00".into(),
        server_version: 160_004,
        system_identifier: "7408277255830290455".into(),
        ..Probe::default()
    };
    if in_recovery {
        p.receive_lsn = Some(67_395_000);
        p.replay_lsn = Some(67_394_000);
        p.replay_timestamp = Some("2024-08-28 19:41:00.5+00:00".into());
        p.streaming = true;
    } else {
        p.replication = vec![
            ReplicationRow {
                usename: Some("replicator".into()),
                application_name: Some("node2".into()),
                client_addr: Some("127.0.0.1".into()),
                state: Some("streaming".into()),
                sync_state: Some("sync".into()),
                sync_priority: Some(1),
                write_lsn: Some(67_395_000),
                flush_lsn: Some(67_395_000),
                replay_lsn: Some(67_395_000),
            },
            ReplicationRow {
                usename: None,
                application_name: Some("node3".into()),
                client_addr: None,
                state: Some("startup".into()),
                sync_state: None,
                sync_priority: None,
                write_lsn: None,
                flush_lsn: None,
                replay_lsn: None,
            },
        ];
    }
    p
}

fn member(port: u16, state: &str) -> Member {
    serde_json::from_value(json!({
        "conn_url": format!("postgres://127.0.0.1:{port}/postgres"),
        "api_url": format!("http://127.0.0.1:{}/patroni", port + 3000),
        "state": state,
        "role": "replica",
        "version": "4.0.0",
    }))
    .unwrap()
}

fn versioned<T>(value: T) -> Versioned<T> {
    Versioned {
        value,
        mod_revision: 7,
    }
}

/// Three members: node1 leads, node2 streams (and is in /sync), node3 publishes no
/// position and no conn_url port.
fn cluster_view(mode: &str) -> Cluster {
    let mut n1 = member(5432, "running");
    n1.role = Role::Primary;
    n1.xlog_location = Some(67_395_656);
    n1.timeline = Some(3);
    let mut tags = serde_json::Map::new();
    tags.insert("clonefrom".into(), json!(true));
    n1.tags = Some(tags);
    let mut n2 = member(5433, "running");
    n2.receive_lsn = Some(67_395_000);
    n2.replay_lsn = Some(67_394_000);
    n2.xlog_location = Some(67_395_000);
    n2.replication_state = Some("streaming".into());
    n2.timeline = Some(3);
    n2.pending_restart = Some(true);
    let mut n3 = member(5434, "creating replica");
    n3.conn_url = "postgres://somewhere/postgres".into();
    let config = DynamicConfig::from_json(&json!({"synchronous_mode": mode})).unwrap();
    Cluster {
        config: Some(versioned(config)),
        leader: Some(LeaderKey {
            name: "node1".into(),
            create_revision: 42,
            mod_revision: 43,
            lease: 1,
        }),
        members: [("node1", n1), ("node2", n2), ("node3", n3)]
            .into_iter()
            .map(|(n, m)| (n.to_string(), versioned(m)))
            .collect(),
        sync: Some(versioned(SyncState {
            leader: Some("node1".into()),
            quorum: Some(1),
            sync_standby: Some("node2".into()),
            extra: serde_json::Map::new(),
        })),
        status: Some(Status {
            optime: Some(67_400_000),
            ..Status::default()
        }),
        ..Cluster::default()
    }
}

fn base(name: &str) -> NodeStatus {
    let mut s = NodeStatus::new("demo".into(), name.into(), serde_json::Map::new());
    s.dcs_last_seen = Some(1_724_874_545);
    s
}

/// Every state the bodies distinguish.
fn states() -> Vec<(&'static str, NodeStatus, bool)> {
    let mut out = Vec::new();
    let starting = NodeStatus::new("demo".into(), "node3".into(), serde_json::Map::new());
    out.push(("starting, no DCS", starting, false));

    let mut primary = base("node1");
    primary.state = "running".into();
    primary.running = true;
    primary.role = Role::Primary;
    primary.is_leader = true;
    primary.fencing_token = Some(42);
    primary.system_identifier = Some("7408277255830290455".into());
    primary.note = "holding the leader key".into();
    primary.probe = Some(crate::probe::ServerProbe::Postgres(Box::new(probe(false))));
    primary.cluster = Some(std::sync::Arc::new(cluster_view("off")));
    primary.tags.insert("zone".into(), json!("a"));
    primary.archiver = true;
    primary.archive = Some(warden_backup::archiver::stream::Status {
        last_uploaded: Some(("000000030000000000000003".into(), SystemTime::now())),
        archived_lsn: Some(67_108_864),
        failures: 1,
        last_error: Some("upload failed".into()),
        last_live_upload: None,
    });
    out.push(("primary with the archiver", primary.clone(), true));

    let mut bare = primary.clone();
    bare.archive = Some(warden_backup::archiver::stream::Status::default());
    if let Some(p) = bare
        .probe
        .as_mut()
        .and_then(crate::probe::ServerProbe::pg_mut)
    {
        p.replication.clear();
        p.timeline = None;
        p.wal_position = None;
    }
    out.push(("primary, nothing replicating", bare, false));

    let mut pending = primary;
    if let Some(p) = pending
        .probe
        .as_mut()
        .and_then(crate::probe::ServerProbe::pg_mut)
    {
        p.pending_restart = true;
        p.pending_restart_reason
            .insert("max_connections".into(), ("100".into(), "200".into()));
        p.pending_restart_reason
            .insert("shared_buffers".into(), ("128MB".into(), "1GB".into()));
    }
    pending.scheduled_restart = Some(ScheduledRestart {
        at: chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00+00:00")
            .unwrap()
            .with_timezone(&chrono::Utc),
        spec: RestartSpec {
            role: Some("primary".into()),
            postgres_version: Some(170_000),
            restart_pending: true,
            timeout: Some(std::time::Duration::from_secs(30)),
        },
    });
    out.push(("primary, pending and scheduled restart", pending, true));

    for (what, mode) in [
        ("sync standby", "on"),
        ("quorum standby", "quorum"),
        ("async replica", "off"),
    ] {
        let mut r = base("node2");
        r.state = "running".into();
        r.running = true;
        r.role = Role::Replica;
        r.system_identifier = Some("7408277255830290455".into());
        r.note = "following node1".into();
        r.probe = Some(crate::probe::ServerProbe::Postgres(Box::new(probe(true))));
        r.cluster = Some(std::sync::Arc::new(cluster_view(mode)));
        out.push((what, r, false));
    }

    let mut archive_replica = base("node2");
    archive_replica.probe = Some(crate::probe::ServerProbe::Postgres(Box::new(Probe {
        in_recovery: true,
        replay_paused: true,
        pending_restart: true,
        ..Probe::default()
    })));
    let mut c = cluster_view("on");
    c.leader = None;
    c.failover = Some(versioned(Failover {
        leader: Some("node1".into()),
        member: None,
        scheduled_at: Some("2030-01-01T00:00:00+00:00".into()),
        extra: serde_json::Map::new(),
    }));
    let paused = DynamicConfig::from_json(&json!({"pause": true})).unwrap();
    c.config = Some(versioned(paused));
    archive_replica.cluster = Some(std::sync::Arc::new(c));
    out.push((
        "replica in archive recovery, unlocked and paused cluster",
        archive_replica,
        false,
    ));

    let mut no_status = base("node2");
    let mut c = cluster_view("quorum");
    c.status = None;
    if let Some(m) = c.members.get_mut("node1") {
        m.value.xlog_location = None;
    }
    c.failover = Some(versioned(Failover {
        leader: None,
        member: Some("node3".into()),
        scheduled_at: None,
        extra: serde_json::Map::new(),
    }));
    no_status.cluster = Some(std::sync::Arc::new(c));
    out.push((
        "no cluster position, unscheduled failover key",
        no_status,
        false,
    ));
    out
}

/// The expected body of `endpoint` (`/patroni` or `/cluster`) in state `what`.
fn golden(what: &str, endpoint: &str) -> String {
    let text = include_str!("views_golden.txt");
    let header = format!("## {what} | {endpoint}");
    let mut lines = text.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "views_golden.txt has no {header:?}");
    let body = lines
        .next()
        .unwrap_or_else(|| panic!("{header:?} has no body"));
    body.replace("{warden_version}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn patroni_bodies_are_byte_for_byte_the_expected_ones() {
    let mut all = String::new();
    for (what, s, lease_valid) in states() {
        let typed = serde_json::to_string(&patroni(&s, lease_valid)).unwrap();
        assert_eq!(typed, golden(what, "/patroni"), "{what}");
        all.push_str(&typed);
    }
    // The states cover every field that is sometimes there.
    for field in [
        r#""cluster_unlocked":true"#,
        r#""database_system_identifier""#,
        r#""dcs_last_seen":null"#,
        r#""pause":true"#,
        r#""pending_restart":true"#,
        r#""pending_restart_reason":{"max_connections""#,
        r#""postmaster_start_time""#,
        r#""quorum_standby":true"#,
        r#""sync_standby":true"#,
        r#""replication":[]"#,
        r#""replication":[{"#,
        r#""replication_state":"in archive recovery""#,
        r#""replication_state":"streaming""#,
        r#""scheduled_restart":{"postgres_version":"170000""#,
        r#""tags":{"zone":"a"}"#,
        r#""timeline":3"#,
        r#""archive":{"archived_lsn":67108864"#,
        r#""archive":{"archived_lsn":null"#,
        r#""xlog":{"location":0}"#,
        r#""xlog":{"paused":true,"received_location":0"#,
        r#""replayed_timestamp":null"#,
    ] {
        assert!(all.contains(field), "no state writes {field}");
    }
}

#[test]
fn cluster_bodies_are_byte_for_byte_the_expected_ones() {
    let mut all = String::new();
    for (what, s, _) in states() {
        let typed = serde_json::to_string(&cluster(&s)).unwrap();
        assert_eq!(typed, golden(what, "/cluster"), "{what}");
        all.push_str(&typed);
    }
    for field in [
        r#"{"members":[],"scope":"demo"}"#,
        r#""role":"leader""#,
        r#""role":"sync_standby""#,
        r#""role":"quorum_standby""#,
        r#""lag":4344"#,
        r#""lag":"unknown""#,
        r#""pending_restart":true"#,
        r#""host":"127.0.0.1""#,
        r#""receive_lsn":"0/4045DB8""#,
        r#""replay_lag":6000"#,
        r#""receive_lsn":"unknown""#,
        r#""pause":true"#,
        r#""scheduled_switchover":{"at":"2030-01-01T00:00:00+00:00","from":"node1","to":null}"#,
    ] {
        assert!(all.contains(field), "no state writes {field}");
    }
}

#[test]
fn scheduled_restart_is_the_member_keys() {
    for (what, s, _) in states() {
        if let Some(r) = &s.scheduled_restart {
            assert_eq!(
                serde_json::to_value(scheduled_restart(r)).unwrap(),
                r.to_member_json(),
                "{what}"
            );
        }
    }
}

#[test]
fn bodies_read_back_through_the_types() {
    for (what, s, lease_valid) in states() {
        let p = patroni(&s, lease_valid);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(PatroniStatus::from_json(&v).unwrap(), p, "{what}");
        let c = cluster(&s);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(ClusterStatus::from_json(&v).unwrap(), c, "{what}");
    }
}
