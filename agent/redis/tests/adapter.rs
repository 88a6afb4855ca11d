//! The Redis adapter driving real `redis-server`s on loopback ports: bootstrap, copy,
//! promotion and resync of the former primary, write pauses, stops, passwords, and the
//! parameters Warden refuses.

mod common;

use common::{dynamic, node, start, Deadline};
use redis::AsyncCommands;
use std::time::Duration;
use warden_consensus::Cluster;
use warden_ha::{DataState, Database, Engine, RoleConfig, StopMode};
use warden_redis::adapter::{Redis, RedisError};
use warden_redis::policy::ServerRole;

const WAIT: Duration = Duration::from_secs(20);

fn cluster_with(initialize: &str) -> Cluster {
    Cluster {
        initialize: Some(initialize.into()),
        ..Cluster::default()
    }
}

/// The whole life of a two-member cluster with an ACL user and a password: bootstrap,
/// copy, a clean stop of the primary, promotion of the replica, the former primary
/// re-pointed at it and resynced partially.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn bootstrap_copy_promote_and_resync_the_former_primary() {
    let mut a = node(Some("warden"), Some("s3cret pw"));
    let mut b = node(Some("warden"), Some("s3cret pw"));
    assert_eq!(a.redis.data_state(), DataState::Missing);
    a.redis.bootstrap(&dynamic()).await.unwrap();
    let la = a.redis.observe(false, &dynamic()).await;
    assert_eq!(la.data, DataState::Initialized);
    assert!(la.running && la.was_primary);
    let id = la
        .system_identifier
        .clone()
        .expect("a bootstrap makes an identity");
    assert!(la.db().unwrap().writable);

    // AUTH: without a password nothing is allowed; the ACL user works.
    let mut anon = a.client_as(None, None).await.unwrap();
    let refused: redis::RedisResult<Option<String>> = anon.get("k").await;
    assert!(
        refused.unwrap_err().to_string().contains("NOAUTH"),
        "an unauthenticated client must be refused"
    );
    let mut ca = a.client().await;
    for i in 0..100 {
        let () = ca.set(format!("k{i}"), i).await.unwrap();
    }

    // Copy: b follows a until the link is up (masterauth/masteruser), then stops.
    b.redis.clone_from("127.0.0.1", a.port, WAIT).await.unwrap();
    assert!(!b.redis.is_running(), "a copy leaves the server stopped");
    assert_eq!(b.redis.data_state(), DataState::Initialized);
    let lb = b.redis.observe(false, &dynamic()).await;
    assert_eq!(lb.system_identifier, None, "learnt from the DCS, not yet");
    assert!(!lb.was_primary);
    let changed = b
        .redis
        .configure(
            &RoleConfig::Replica {
                source: Some(a.source("a")),
            },
            Some(&cluster_with(&id)),
            &dynamic(),
        )
        .unwrap();
    assert!(changed);
    start(&mut b).await;
    let () = ca.set("after-copy", 1).await.unwrap();
    let mut cb = b.client().await;
    let deadline = Deadline::new(WAIT, "b streams from a and has every key");
    loop {
        let l = b.redis.observe(false, &dynamic()).await;
        let got: Option<i64> = cb.get("after-copy").await.unwrap();
        if l.db().is_some_and(|d| d.streaming && !d.writable) && got == Some(1) {
            break;
        }
        deadline.tick().await;
    }
    let lb = b.redis.observe(false, &dynamic()).await;
    assert_eq!(lb.system_identifier.as_deref(), Some(id.as_str()));
    let fields = lb.engine.member_fields();
    assert_eq!(fields["replication_state"], "streaming");
    let a_replid = a.redis.info(WAIT).await.unwrap().replid;
    assert_eq!(
        fields["replid"],
        a_replid.as_str(),
        "a replica takes its primary's id"
    );
    let k99: i64 = cb.get("k99").await.unwrap();
    assert_eq!(k99, 99);
    // The restart after the copy continued with a partial resync.
    assert_eq!(
        a.info_field("stats", "sync_partial_ok").await.as_deref(),
        Some("1")
    );
    // a lists b with its offset; b's received offset is asked over the network.
    let a_info = a.redis.info(WAIT).await.unwrap();
    assert_eq!(a_info.replicas.len(), 1);
    assert_eq!(a_info.replicas[0].port, b.port);

    // A clean stop of a: its last offset is recorded; b received it.
    a.redis.stop(StopMode::Fast, WAIT).await.unwrap();
    assert!(!a.redis.is_running());
    let final_offset = a.redis.shutdown_position().await.unwrap();
    assert!(final_offset > 0);
    let received = b
        .redis
        .received_by("127.0.0.1", b.port, WAIT)
        .await
        .unwrap();
    assert!(received >= final_offset, "{received} < {final_offset}");
    let stopped = a.redis.observe(false, &dynamic()).await;
    assert!(stopped.was_primary && !stopped.running);
    assert_eq!(
        stopped.engine.member_fields()["replid"],
        a_replid.as_str(),
        "a stopped member publishes its last lineage"
    );

    // Promote b: a new id, the old one kept as replid2.
    b.redis.promote(WAIT).await.unwrap();
    let pb = b.redis.info(WAIT).await.unwrap();
    assert_eq!(pb.role, ServerRole::Master);
    assert_eq!(pb.replid2.as_deref(), Some(a_replid.as_str()));
    let () = cb.set("after-promotion", 2).await.unwrap();
    assert!(received_err(&b).await, "a primary is not a replica to ask");

    // The former primary is re-pointed at b and resyncs partially.
    a.redis
        .configure(
            &RoleConfig::Replica {
                source: Some(b.source("b")),
            },
            Some(&cluster_with(&id)),
            &dynamic(),
        )
        .unwrap();
    start(&mut a).await;
    let mut ca = a.client().await;
    let deadline = Deadline::new(WAIT, "a follows b and has b's new write");
    loop {
        let l = a.redis.observe(false, &dynamic()).await;
        let got: Option<i64> = ca.get("after-promotion").await.unwrap();
        if l.db().is_some_and(|d| d.streaming) && got == Some(2) {
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(
        b.info_field("stats", "sync_partial_ok").await.as_deref(),
        Some("1"),
        "the former primary continued b's history without a full copy"
    );
    assert_eq!(
        b.info_field("stats", "sync_full").await.as_deref(),
        Some("0")
    );
    let la = a.redis.observe(false, &dynamic()).await;
    assert!(!la.was_primary, "following now");
    assert_eq!(la.engine.replication.as_ref().unwrap().replid, pb.replid);
    // `configure` once more with the same role: nothing changed.
    let again = a
        .redis
        .configure(
            &RoleConfig::Replica {
                source: Some(b.source("b")),
            },
            Some(&cluster_with(&id)),
            &dynamic(),
        )
        .unwrap();
    assert!(!again);
}

async fn received_err(n: &common::Node) -> bool {
    n.redis
        .received_by("127.0.0.1", n.port, WAIT)
        .await
        .is_err()
}

/// A running primary demoted to follow nobody (`reload` after `configure`) stops
/// taking writes, and is re-pointed at a leader while running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_primary_is_demoted_and_repointed_by_reload() {
    let mut a = node(None, None);
    let mut b = node(None, None);
    a.redis.bootstrap(&dynamic()).await.unwrap();
    b.redis.bootstrap(&dynamic()).await.unwrap();
    let mut cb = b.client().await;
    let () = cb.set("only-on-b", 1).await.unwrap();
    let changed = b
        .redis
        .configure(&RoleConfig::Replica { source: None }, None, &dynamic())
        .unwrap();
    assert!(changed);
    b.redis.reload().await.unwrap();
    let r: redis::RedisResult<()> = cb.set("x", 1).await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("read only replica"), "{e}");
    let lb = b.redis.observe(false, &dynamic()).await;
    assert!(!lb.db().unwrap().writable && !lb.db().unwrap().streaming);
    let mut ca = a.client().await;
    let () = ca.set("from-a", 7).await.unwrap();
    b.redis
        .configure(
            &RoleConfig::Replica {
                source: Some(a.source("a")),
            },
            None,
            &dynamic(),
        )
        .unwrap();
    b.redis.reload().await.unwrap();
    let deadline = Deadline::new(WAIT, "b follows a");
    while cb.get::<_, Option<i64>>("from-a").await.unwrap() != Some(7) {
        deadline.tick().await;
    }
    let gone: Option<i64> = cb.get("only-on-b").await.unwrap();
    assert_eq!(gone, None, "a full copy from a replaced b's own data");
}

/// `pause_writes` blocks a write (it does not complete while paused) and shows the
/// primary not writable; `unpause_writes` lets it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_writes_wait_until_unpaused() {
    let mut a = node(None, Some("pw"));
    a.redis.bootstrap(&dynamic()).await.unwrap();
    a.redis.pause_writes(Duration::from_secs(30)).await.unwrap();
    let l = a.redis.observe(false, &dynamic()).await;
    assert!(!l.db().unwrap().writable, "paused: not writable");
    let mut c = a.client().await;
    let read: Option<String> = c.get("k").await.unwrap();
    assert_eq!(read, None, "reads go on");
    let mut writer = a.client().await;
    let write = tokio::spawn(async move {
        let r: redis::RedisResult<()> = writer.set("k", "v").await;
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "a write must wait while paused");
    a.redis.unpause_writes().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("the write completes after the pause")
        .unwrap()
        .unwrap();
    let v: Option<String> = c.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    assert!(
        a.redis
            .observe(false, &dynamic())
            .await
            .db()
            .unwrap()
            .writable
    );
}

/// Immediate is SIGKILL: no clean-shutdown position. `disconnect_clients` drops other
/// clients, not the agent's own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_stop_leaves_no_shutdown_position() {
    let mut a = node(None, None);
    a.redis.bootstrap(&dynamic()).await.unwrap();
    let mut c = a.client().await;
    let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert!(a.redis.disconnect_clients().await.unwrap() >= 1);
    let after: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
    assert!(after.is_err(), "the client was disconnected");
    let pid = a.redis.server_pid().unwrap();
    a.redis
        .stop(StopMode::Immediate, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!a.redis.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
        }
    );
    assert!(a.redis.shutdown_position().await.is_err());
    // Data and identity stay; a restart as a primary works.
    let l = a.redis.observe(false, &dynamic()).await;
    assert_eq!(l.data, DataState::Initialized);
    assert!(l.was_primary);
    a.redis
        .configure(&RoleConfig::Primary, None, &dynamic())
        .unwrap();
    start(&mut a).await;
    assert!(
        a.redis
            .observe(false, &dynamic())
            .await
            .db()
            .unwrap()
            .writable
    );
    a.redis.stop(StopMode::Fast, WAIT).await.unwrap();
    assert!(a.redis.shutdown_position().await.is_ok());
    // Set aside: renamed, never deleted.
    let aside = a.redis.set_aside().unwrap().unwrap();
    assert!(std::path::Path::new(&aside)
        .join("warden-redis.json")
        .exists());
    assert_eq!(a.redis.data_state(), DataState::Missing);
}

#[test]
fn parameters_warden_owns_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for key in [
        "port",
        "replicaof",
        "requirepass",
        "daemonize",
        "dir",
        "masterauth",
    ] {
        let mut s = common::settings(dir.path(), 1);
        s.parameters.insert(key.into(), "x".into());
        let e = Redis::new(s).unwrap_err();
        assert!(
            matches!(&e, RedisError::OwnedParameter(k) if k == key),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
    }
}

/// The configuration file carries the password: it is private, and the password is in
/// no process argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_in_a_private_file_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut a = node(None, Some("hunter2-secret"));
    a.redis.bootstrap(&dynamic()).await.unwrap();
    let conf = a.redis.settings().conf_path();
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pid = a.redis.server_pid().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("hunter2"));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("hunter2"));
    assert!(
        environ
            .split('\0')
            .all(|v| v.is_empty() || v.starts_with("PATH=") || v.starts_with("HOME=")),
        "scrubbed environment: {environ}"
    );
}
