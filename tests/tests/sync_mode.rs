//! Synchronous mode against real processes: the leader makes one replica synchronous
//! (`synchronous_standby_names` and the `/sync` key agree, `/sync` and `/async` answer
//! accordingly), replaces it when it dies — a commit waits far less than `loop_wait`,
//! since the leader watches its synchronous standbys between turns — a crash of the
//! primary promotes only the synchronous standby and loses no acknowledged write, and
//! strict mode blocks commits rather than drop to asynchronous replication. Then the same
//! cluster switches to quorum commit (`ANY 1` of both replicas, `/sync` with quorum 1),
//! and a crash of the primary under a write stream again loses nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{http, sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const TABLE: &str = "sync_writes";
const QUORUM_TABLE: &str = "quorum_writes";

fn patch_config(cluster: &Cluster, node: usize, patch: &Value) {
    let url = format!("{}/config", cluster.node(node).api_url());
    let body = patch.to_string();
    let r = http::send(
        "PATCH",
        &url,
        Some(body.as_bytes()),
        None,
        Duration::from_secs(10),
    )
    .expect("PATCH /config");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Commits `INSERT INTO table (id) VALUES (id)` on `port` on its own thread (no
/// statement timeout: a cancelled wait for a synchronous standby would report success)
/// and returns how long it took to be acknowledged, or `None` if not within `bound`.
fn timed_commit(port: u16, table: &str, id: i64, bound: Duration) -> Option<Duration> {
    let (tx, rx) = std::sync::mpsc::channel();
    let sql = format!("SET statement_timeout = 0; INSERT INTO {table} (id) VALUES ({id})");
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let result =
            sql::connect(port).and_then(|mut c| c.batch_execute(&sql).map_err(anyhow::Error::from));
        let _ = tx.send(result.map(|()| t0.elapsed()));
    });
    match rx.recv_timeout(bound) {
        Ok(Ok(took)) => Some(took),
        Ok(Err(e)) => panic!("the commit failed: {e:#}"),
        Err(_) => None,
    }
}

/// The `wardenctl list -f json` role of every member.
fn roles(cluster: &Cluster) -> Vec<Value> {
    let mut cmd = warden_tests::bins::wardenctl_command().expect("wardenctl");
    cmd.arg("-c")
        .arg(cluster.node(0).config_path())
        .args(["list", "-f", "json"]);
    let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(30)).unwrap();
    serde_json::from_str(out.stdout.trim()).expect("list -f json")
}

fn role_of(rows: &[Value], name: &str) -> Option<Value> {
    rows.iter()
        .find(|r| r["Member"] == name)
        .map(|r| r["Role"].clone())
}

/// Quorum commit in force with `leader`: `ANY 1` of both other members in PostgreSQL,
/// the same two as voters with quorum 1 in `/sync`.
fn wait_quorum(cluster: &Cluster, leader: &str) -> Vec<String> {
    let li = cluster.index_of(leader).unwrap();
    let mut others: Vec<String> = (0..3)
        .filter(|&i| i != li)
        .map(|i| cluster.node(i).name().to_string())
        .collect();
    others.sort();
    // Patroni's rendering, which monitoring compares: no quotes for plain names, no spaces.
    let names = format!("ANY 1 ({},{})", others[0], others[1]);
    let voters = others.join(",");
    wait_until(T, "quorum commit over both replicas", || {
        let key = cluster.sync_key()?;
        let port = cluster.node(li).pg_port();
        let ssn = sql::query_text(port, "SHOW synchronous_standby_names").ok()??;
        (key["leader"] == leader
            && key["quorum"] == 1
            && key["sync_standby"] == voters.as_str()
            && ssn == names)
            .then_some(())
    });
    others
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
    let standby = cluster.wait_sync_standby(&leader, T);
    let si = cluster.index_of(&standby).unwrap();
    let other = (0..3).find(|&i| i != li && i != si).unwrap();
    let names = sql::query_text(cluster.node(li).pg_port(), "SHOW synchronous_standby_names")
        .unwrap()
        .unwrap();
    // Patroni's rendering of one synchronous standby: the bare name.
    assert_eq!(names, standby);
    assert_eq!(cluster.node(si).status("/sync"), Some(200));
    assert_eq!(cluster.node(si).status("/async"), Some(503));
    assert_eq!(cluster.node(other).status("/sync"), Some(503));
    assert_eq!(cluster.node(other).status("/async"), Some(200));
    // wardenctl list shows it.
    let rows = roles(&cluster);
    assert_eq!(
        role_of(&rows, &standby),
        Some(json!("Sync Standby")),
        "{rows:?}"
    );
    assert_eq!(
        role_of(&rows, cluster.node(other).name()),
        Some(json!("Replica"))
    );

    standby_loss_is_covered_between_turns(&mut cluster, &leader, si, other);
    paused_replay_is_replaced_under_remote_apply(&cluster, &leader);

    // The primary crashes under a write stream: only the synchronous standby may be
    // promoted, and it has every acknowledged write.
    let writer = writing(&cluster, li, TABLE, 1, 50);
    let sync_now = cluster.wait_sync_standby(&leader, T);
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

    strict_mode_blocks_commits(&mut cluster, ni);

    quorum_commit(&mut cluster, ni);
}

/// The synchronous standby dies while the leader sleeps through a 10 s loop_wait: it
/// watches its synchronous standbys between turns, so a commit waits for the
/// replacement well under loop_wait. (Patroni's defaults, ttl 30 and loop_wait 10.)
/// Once the leader holds its key under a lease with the new ttl, its next turn is
/// loop_wait away: before that it turns every third of the old lease's ttl.
fn standby_loss_is_covered_between_turns(
    cluster: &mut Cluster,
    leader: &str,
    si: usize,
    other: usize,
) {
    let li = cluster.index_of(leader).unwrap();
    sql::execute(
        cluster.node(li).pg_port(),
        &format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} \
             (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        ),
    )
    .expect("create the table");
    let lease = cluster.leader_key().unwrap().unwrap().lease;
    patch_config(cluster, li, &json!({"loop_wait": 10, "ttl": 30}));
    wait_until(T, "the leader key under a lease with ttl 30", || {
        let kv = cluster.leader_key().ok()??;
        (kv.value == leader && kv.lease != lease).then_some(())
    });
    // Writes go on back to back through the kill: the longest gap between two
    // acknowledgements is how long commits were blocked.
    let writer = writing(cluster, li, TABLE, 5_000_000, 20);
    let kill = Instant::now();
    cluster.node_mut(si).kill_hard();
    let killed = kill.elapsed();
    let commit = timed_commit(cluster.node(li).pg_port(), TABLE, -2, T)
        .expect("a commit completes once the standby is replaced");
    let acks = workload::acks_of(&writer.stop());
    let stall = acks
        .windows(2)
        .map(|w| w[1].acked.duration_since(w[0].acked))
        .max()
        .unwrap_or_default();
    // Measured from the start of the kill: the standby may be gone before it returns.
    let took = killed + commit;
    println!(
        "synchronous standby killed (loop_wait 10 s): writes on the primary stalled {:.2} s at most; a commit sent after the kill ({:.2} s) returned was acknowledged {:.2} s after the kill began",
        stall.as_secs_f64(),
        killed.as_secs_f64(),
        took.as_secs_f64()
    );
    assert!(
        stall < Duration::from_secs(5) && took < Duration::from_secs(5),
        "commits waited up to {stall:?} (a new commit {took:?}), not well under loop_wait (10 s)"
    );
    let replacement = cluster.wait_sync_standby(leader, T);
    assert_eq!(replacement, cluster.node(other).name());
    patch_config(cluster, li, &json!({"loop_wait": 1, "ttl": 10}));
    cluster
        .node_mut(si)
        .start()
        .expect("restart the killed node");
    cluster.assert_converged(T);
}

/// Under `synchronous_commit = remote_apply` a commit waits for the synchronous standby
/// to replay it, so a standby whose replay is paused holds up every commit although it
/// receives and flushes all WAL. Its lag is measured on replay (Patroni's rule), so it
/// exceeds `maximum_lag_on_syncnode` and the leader names the other replica instead,
/// which releases the waiting commit. Measured on flush, the stalled standby would look
/// current and the commit would wait for ever.
fn paused_replay_is_replaced_under_remote_apply(cluster: &Cluster, leader: &str) {
    let li = cluster.index_of(leader).unwrap();
    let port = cluster.node(li).pg_port();
    sql::execute(port, "CREATE TABLE IF NOT EXISTS apply_pad (v text)").expect("create");
    patch_config(
        cluster,
        li,
        &json!({"maximum_lag_on_syncnode": 1_048_576,
                "postgresql": {"parameters": {"synchronous_commit": "remote_apply"}}}),
    );
    wait_until(T, "synchronous_commit = remote_apply on the leader", || {
        (sql::query_text(port, "SHOW synchronous_commit")
            .ok()??
            .as_str()
            == "remote_apply")
            .then_some(())
    });
    let stalled = cluster.wait_sync_standby(leader, T);
    let si = cluster.index_of(&stalled).unwrap();
    sql::execute(cluster.node(si).pg_port(), "SELECT pg_wal_replay_pause()").expect("pause");
    // About 4 MB of WAL in one commit: well past the 1 MB limit once flushed.
    let (tx, rx) = std::sync::mpsc::channel();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let r = sql::connect(port).and_then(|mut c| {
            c.batch_execute(
                "SET statement_timeout = 0; \
                 INSERT INTO apply_pad SELECT repeat('x', 1000) FROM generate_series(1, 4000)",
            )
            .map_err(anyhow::Error::from)
        });
        let _ = tx.send(r.map(|()| t0.elapsed()));
    });
    let took = match rx.recv_timeout(T) {
        Ok(Ok(took)) => took,
        Ok(Err(e)) => panic!("the commit failed: {e:#}"),
        Err(_) => panic!(
            "a remote_apply commit still waits for {stalled}, whose replay is paused, after {T:?}"
        ),
    };
    let replacement = cluster.wait_sync_standby(leader, T);
    assert_ne!(
        replacement, stalled,
        "the paused standby is still synchronous"
    );
    println!(
        "remote_apply: the standby with paused replay was replaced; the waiting commit \
         returned after {:.2} s",
        took.as_secs_f64()
    );
    sql::execute(cluster.node(si).pg_port(), "SELECT pg_wal_replay_resume()").expect("resume");
    patch_config(
        cluster,
        li,
        &json!({"maximum_lag_on_syncnode": null,
                "postgresql": {"parameters": {"synchronous_commit": null}}}),
    );
    wait_until(T, "synchronous_commit back to on", || {
        (sql::query_text(port, "SHOW synchronous_commit")
            .ok()??
            .as_str()
            == "on")
            .then_some(())
    });
    cluster.assert_converged(T);
}

/// Strict mode: with no replica left, commits block instead of going asynchronous.
fn strict_mode_blocks_commits(cluster: &mut Cluster, ni: usize) {
    patch_config(cluster, ni, &json!({"synchronous_mode_strict": true}));
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

/// Quorum commit on the running cluster: `ANY 1` of both replicas and quorum 1 in
/// `/sync`, the endpoints and `wardenctl list` as Patroni's, and a crash of the
/// primary under a write stream that loses no acknowledged write.
fn quorum_commit(cluster: &mut Cluster, li: usize) {
    let t0 = Instant::now();
    patch_config(
        cluster,
        li,
        &json!({"synchronous_mode": "quorum", "synchronous_mode_strict": false}),
    );
    let leader = cluster.node(li).name().to_string();
    let voters = wait_quorum(cluster, &leader);
    println!(
        "quorum commit in force {:.1} s after the switch: ANY 1 of {voters:?}",
        t0.elapsed().as_secs_f64()
    );
    let rows = roles(cluster);
    for v in &voters {
        let i = cluster.index_of(v).unwrap();
        assert_eq!(cluster.node(i).status("/quorum"), Some(200), "{v}");
        assert_eq!(
            cluster.node(i).status("/read-only-quorum"),
            Some(200),
            "{v}"
        );
        // As Patroni: /sync is for `synchronous_mode: on`.
        assert_eq!(cluster.node(i).status("/sync"), Some(503), "{v}");
        assert_eq!(cluster.node(i).status("/async"), Some(503), "{v}");
        assert_eq!(role_of(&rows, v), Some(json!("Quorum Standby")), "{rows:?}");
    }
    assert_eq!(cluster.node(li).status("/read-only-quorum"), Some(200));
    assert_eq!(cluster.node(li).status("/quorum"), Some(503));

    // The primary crashes under a write stream: a voter that heard from the other is
    // promoted, with every acknowledged write.
    let writer = writing(cluster, li, QUORUM_TABLE, 1, 50);
    cluster.node_mut(li).kill_hard();
    let killed = Instant::now();
    let acks = workload::acks_of(&writer.stop());
    let new_leader = voter_takes_over(cluster, &voters, Some(&leader), &acks);
    println!(
        "quorum commit: {new_leader} primary {:.1} s after the crash",
        killed.elapsed().as_secs_f64()
    );
    println!(
        "quorum commit: {} acknowledged writes, none lost after the crash",
        acks.len()
    );
    cluster
        .node_mut(li)
        .start()
        .expect("restart the old primary");
    cluster.assert_converged(T);
    let voters = wait_quorum(cluster, &new_leader);
    println!("quorum commit: converged again, ANY 1 of {voters:?}");
    lone_voter_waits_for_a_quorum(cluster, &new_leader, &voters);
}

/// A writer on node `i`'s PostgreSQL inserting ids from `first_id` into `table`, once
/// it has `acks` acknowledgements.
fn writing(cluster: &Cluster, i: usize, table: &str, first_id: i64, acks: usize) -> Writer {
    let writer = Writer::start(
        cluster.node(i).pg_port(),
        table,
        WriterOptions {
            first_id,
            ..WriterOptions::default()
        },
    )
    .expect("start writing to the primary");
    wait_until(Duration::from_secs(20), "writes acknowledged", || {
        (writer.acks().len() >= acks).then_some(())
    });
    writer
}

/// Waits for a leader other than `old` to answer as primary, checks it was a voter
/// and holds every acknowledged write of `QUORUM_TABLE`; returns its name.
fn voter_takes_over(
    cluster: &Cluster,
    voters: &[String],
    old: Option<&str>,
    acks: &[workload::Ack],
) -> String {
    let new_leader = wait_until(T, "a new leader", || {
        cluster
            .leader_key()
            .ok()
            .flatten()
            .map(|kv| kv.value)
            .filter(|v| Some(v.as_str()) != old)
    });
    assert!(voters.contains(&new_leader), "{new_leader} was not a voter");
    let ni = cluster.index_of(&new_leader).unwrap();
    wait_until(T, "the new primary answers", || {
        cluster.node(ni).is_primary().then_some(())
    });
    let present = workload::ids_in(cluster.node(ni).pg_port(), QUORUM_TABLE).unwrap();
    let lost = workload::lost(acks, &present);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    new_leader
}

/// ANY 1 of (a, b), quorum 1: the primary and b crash. a alone cannot tell whether a
/// commit was acknowledged by b only, so it must not be promoted; once b is back one of
/// them is, with every acknowledged write.
fn lone_voter_waits_for_a_quorum(cluster: &mut Cluster, leader: &str, voters: &[String]) {
    let li = cluster.index_of(leader).unwrap();
    let (a, b) = (
        cluster.index_of(&voters[0]).unwrap(),
        cluster.index_of(&voters[1]).unwrap(),
    );
    let writer = writing(cluster, li, QUORUM_TABLE, 1_000_000, 50);
    // The primary first: killed second, it could still see b stop streaming and drop it
    // from /sync (correctly: later commits then need only a), and a would rightly be
    // promoted. With the primary gone, nobody can be promoted before its lease expires,
    // long after b is dead too.
    cluster.node_mut(li).kill_hard();
    cluster.node_mut(b).kill_hard();
    let acks = workload::acks_of(&writer.stop());
    // a says why it stays out of the race (its decision note is in /patroni) ...
    let refused = wait_until(T, "the lone voter refuses to race", || {
        let note = cluster.node(a).patroni()?.note().to_string();
        note.contains("quorum commit").then_some(note)
    });
    println!("quorum commit: {} alone: {refused}", voters[0]);
    // ... while the leader key is vacant: nobody was promoted.
    assert!(
        cluster.leader_key().unwrap().is_none(),
        "a leader was elected without a quorum"
    );
    cluster.node_mut(b).start().expect("restart the voter");
    let back = Instant::now();
    let new_leader = voter_takes_over(cluster, voters, None, &acks);
    println!(
        "quorum commit: {new_leader} primary {:.1} s after the second voter came back",
        back.elapsed().as_secs_f64()
    );
    println!(
        "quorum commit: {} acknowledged writes, none lost after losing the primary and a voter",
        acks.len()
    );
    cluster
        .node_mut(li)
        .start()
        .expect("restart the old primary");
    cluster.assert_converged(T);
}
