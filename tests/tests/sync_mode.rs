//! Synchronous mode against real processes: the leader makes one replica synchronous
//! (`synchronous_standby_names` and the `/sync` key agree, `/sync` and `/async` answer
//! accordingly), replaces it when it dies, a crash of the primary promotes only the
//! synchronous standby and loses no acknowledged write, and strict mode blocks commits
//! rather than drop to asynchronous replication.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{http, sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const TABLE: &str = "sync_writes";

fn sync_key(cluster: &Cluster) -> Option<Value> {
    let kv = cluster
        .etcd()
        .get(&format!("{}sync", cluster.key_prefix()))
        .ok()??;
    serde_json::from_str(&kv.value).ok()
}

/// `(leader, standby)` once `/sync` names exactly one synchronous standby and the
/// leader's PostgreSQL reports that standby as `sync`.
fn wait_sync_standby(cluster: &Cluster, leader: &str) -> String {
    wait_until(T, "one confirmed synchronous standby", || {
        let key = sync_key(cluster)?;
        if key["leader"] != leader {
            return None;
        }
        let standby = key["sync_standby"].as_str()?.to_string();
        let port = cluster.node(cluster.index_of(leader)?).pg_port();
        let state = sql::query_text(
            port,
            &format!(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{standby}'"
            ),
        )
        .ok()??;
        (state == "sync").then_some(standby)
    })
}

#[test]
fn synchronous_mode_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(
        ClusterSpec::new(3)
            .without_haproxy()
            .customize(|_, c| c.set("bootstrap.dcs.synchronous_mode", true)),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();

    // One synchronous standby, named the same way in PostgreSQL and in /sync.
    let standby = wait_sync_standby(&cluster, &leader);
    let si = cluster.index_of(&standby).unwrap();
    let other = (0..3).find(|&i| i != li && i != si).unwrap();
    let names = sql::query_text(cluster.node(li).pg_port(), "SHOW synchronous_standby_names")
        .unwrap()
        .unwrap();
    assert_eq!(names, format!("FIRST 1 (\"{standby}\")"));
    assert_eq!(cluster.node(si).status("/sync"), Some(200));
    assert_eq!(cluster.node(si).status("/async"), Some(503));
    assert_eq!(cluster.node(other).status("/sync"), Some(503));
    assert_eq!(cluster.node(other).status("/async"), Some(200));
    // wardenctl list shows it.
    let mut cmd = warden_tests::bins::wardenctl_command().expect("wardenctl");
    cmd.arg("-c")
        .arg(cluster.node(0).config_path())
        .args(["list", "-f", "json"]);
    let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(30)).unwrap();
    let rows: Vec<Value> = serde_json::from_str(out.stdout.trim()).expect("list -f json");
    let role_of = |name: &str| {
        rows.iter()
            .find(|r| r["Member"] == name)
            .map(|r| r["Role"].clone())
    };
    assert_eq!(role_of(&standby), Some(json!("Sync Standby")), "{rows:?}");
    assert_eq!(role_of(cluster.node(other).name()), Some(json!("Replica")));

    // The synchronous standby dies: the other replica takes its place; writes go on.
    cluster.node_mut(si).kill_hard();
    let t0 = Instant::now();
    let replacement = wait_sync_standby(&cluster, &leader);
    assert_eq!(replacement, cluster.node(other).name());
    println!(
        "synchronous standby replaced after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    cluster
        .node_mut(si)
        .start()
        .expect("restart the killed node");
    cluster.assert_converged(T);

    // The primary crashes under a write stream: only the synchronous standby may be
    // promoted, and it has every acknowledged write.
    let writer = Writer::start(cluster.node(li).pg_port(), TABLE, WriterOptions::default())
        .expect("start writing to the primary");
    wait_until(Duration::from_secs(20), "writes acknowledged", || {
        (writer.acks().len() >= 50).then_some(())
    });
    let sync_now = wait_sync_standby(&cluster, &leader);
    cluster.node_mut(li).kill_hard();
    let acks = workload::acks_of(&writer.stop());
    let (new_leader, _) = wait_until(T, "a new leader", || {
        cluster
            .leader_key()
            .ok()
            .flatten()
            .filter(|kv| kv.value != leader)
            .map(|kv| (kv.value, kv.create_revision))
    });
    assert_eq!(
        new_leader, sync_now,
        "a non-synchronous replica was promoted"
    );
    let ni = cluster.index_of(&new_leader).unwrap();
    wait_until(T, "the new primary answers", || {
        cluster.node(ni).is_primary().then_some(())
    });
    let present = workload::ids_in(cluster.node(ni).pg_port(), TABLE).unwrap();
    let lost = workload::lost(&acks, &present);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    println!(
        "{} acknowledged writes, none lost after the crash",
        acks.len()
    );
    cluster
        .node_mut(li)
        .start()
        .expect("restart the old primary");
    cluster.assert_converged(T);
    println!("converged after the crash");

    // Strict mode: with no replica left, commits block instead of going asynchronous.
    let url = format!("{}/config", cluster.node(ni).api_url());
    let patch = json!({"synchronous_mode_strict": true}).to_string();
    let r = http::send(
        "PATCH",
        &url,
        Some(patch.as_bytes()),
        None,
        Duration::from_secs(10),
    )
    .expect("PATCH /config");
    assert_eq!(r.status, 200, "{}", r.body);
    let replicas: Vec<usize> = (0..3).filter(|&i| i != ni).collect();
    for &i in &replicas {
        cluster.node_mut(i).kill_hard();
    }
    let port = cluster.node(ni).pg_port();
    wait_until(
        T,
        "strict mode's synchronous_standby_names in force",
        || {
            let names = sql::query_text(port, "SHOW synchronous_standby_names").ok()??;
            (names == "*").then_some(())
        },
    );
    // A commit now waits for a standby (a cancelled wait would report success with a
    // warning, so no statement timeout: the commit runs on its own thread).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = sql::connect(port).and_then(|mut c| {
            c.batch_execute(&format!(
                "SET statement_timeout = 0; INSERT INTO {TABLE} (id) VALUES (-1)"
            ))
            .map_err(anyhow::Error::from)
        });
        let _ = tx.send(result.map_err(|e| format!("{e:#}")));
    });
    // Observation window, not synchronisation: the commit must still be waiting.
    let early = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(early, Err(std::sync::mpsc::RecvTimeoutError::Timeout)),
        "a commit without any synchronous standby returned: {early:?}"
    );
    // A replica comes back: the waiting commit completes.
    cluster
        .node_mut(replicas[0])
        .start()
        .expect("restart a replica");
    let done = rx.recv_timeout(T).expect("the waiting commit completes");
    assert!(done.is_ok(), "the waiting commit failed: {done:?}");
    cluster
        .node_mut(replicas[1])
        .start()
        .expect("restart the other replica");
    cluster.assert_converged(T);
}
