//! Planned leadership changes through the REST API, under a write stream through
//! HAProxy: a switchover to a named candidate, a failover to another, a scheduled
//! switchover that fires at its time, and a scheduled one cancelled with
//! `DELETE /switchover`. Each ends with the requested leader, every replica streaming
//! from it, and no acknowledged write missing.

use std::time::{Duration, Instant};

use serde_json::json;
use warden_tests::http::{self, HttpResponse};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
const TABLE: &str = "switchover_writes";

fn post(cluster: &Cluster, node: usize, path: &str, body: &serde_json::Value) -> HttpResponse {
    let url = format!("{}{path}", cluster.node(node).api_url());
    let body = body.to_string();
    http::send("POST", &url, Some(body.as_bytes()), None, REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("POST {url}: {e:#}"))
}

fn leader_name(cluster: &Cluster) -> String {
    cluster.wait_leader(T).0
}

/// Longest stretch without an acknowledged write between `from` and `to`.
fn longest_gap(acks: &[workload::Ack], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = acks
        .iter()
        .map(|a| a.acked)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    times.sort();
    let mut gap = Duration::ZERO;
    let mut prev = from;
    for t in times.into_iter().chain([to]) {
        gap = gap.max(t - prev);
        prev = t;
    }
    gap
}

/// Checks the cluster converged on `want` and reports the write gap around `t0`.
fn settle(cluster: &Cluster, writer: &Writer, want: &str, t0: Instant, what: &str) {
    let converged = cluster.assert_converged(T);
    assert_eq!(
        cluster.node(converged.primary).name(),
        want,
        "{what}: the cluster converged on another leader"
    );
    wait_until(T, "writes acknowledged by the new primary", || {
        let port = cluster.node(converged.primary).pg_port();
        writer
            .acks_since(t0)
            .iter()
            .any(|a| a.server_port == port)
            .then_some(())
    });
    let gap = longest_gap(&writer.acks(), t0, Instant::now());
    println!("{what}: longest write gap {:.3} s", gap.as_secs_f64());
}

#[test]
fn switchover_failover_and_scheduled_switchover_keep_every_write() {
    let cluster = Cluster::start(ClusterSpec::new(3)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let writer = Writer::start(cluster.write_port(), TABLE, WriterOptions::default())
        .expect("start writing through HAProxy");
    wait_until(Duration::from_secs(20), "writes acknowledged", || {
        (writer.acks().len() >= 20).then_some(())
    });

    // 1. Switchover to a named candidate.
    let old = leader_name(&cluster);
    let p = cluster.index_of(&old).unwrap();
    let candidate = cluster.node((p + 1) % 3).name().to_string();
    let t0 = Instant::now();
    let r = post(
        &cluster,
        p,
        "/switchover",
        &json!({"leader": old, "candidate": candidate}),
    );
    assert_eq!(r.status, 200, "switchover: {}", r.body);
    assert_eq!(
        r.body.trim(),
        format!("Successfully switched over to \"{candidate}\"")
    );
    settle(&cluster, &writer, &candidate, t0, "switchover");
    let old_node = cluster.node(p);
    assert!(
        old_node.failed_data_dirs().is_empty(),
        "the old primary was re-cloned instead of following the candidate"
    );

    // 2. Failover to the third node (asked of a replica: any member forwards nothing,
    // it writes the request to the DCS like Patroni).
    let third = cluster.node((p + 2) % 3).name().to_string();
    let t1 = Instant::now();
    let r = post(&cluster, p, "/failover", &json!({"candidate": third}));
    assert_eq!(r.status, 200, "failover: {}", r.body);
    assert_eq!(
        r.body.trim(),
        format!("Successfully failed over to \"{third}\"")
    );
    settle(&cluster, &writer, &third, t1, "failover");

    // Refusals leave the leader in place.
    let leader = third;
    let li = cluster.index_of(&leader).unwrap();
    let r = post(
        &cluster,
        li,
        "/switchover",
        &json!({"leader": leader, "candidate": "nobody"}),
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let r = post(
        &cluster,
        li,
        "/switchover",
        &json!({"leader": "not-the-leader"}),
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let r = post(
        &cluster,
        li,
        "/switchover",
        &json!({"leader": leader, "candidate": leader}),
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // 3. A scheduled switchover fires at its time, not before.
    let target = old;
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(6);
    let r = post(
        &cluster,
        li,
        "/switchover",
        &json!({"leader": leader, "candidate": target, "scheduled_at": at.to_rfc3339()}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body.trim(), "Switchover scheduled");
    let t2 = Instant::now();
    let changed = wait_until(T, "the scheduled switchover happens", || {
        let (name, _) = cluster.wait_leader(T);
        (name == target).then(chrono::Utc::now)
    });
    assert!(
        changed >= at,
        "the switchover happened at {changed}, before its time {at}"
    );
    println!(
        "scheduled switchover: new leader seen {:.2} s after the scheduled time",
        (changed - at).num_milliseconds() as f64 / 1000.0
    );
    settle(&cluster, &writer, &target, t2, "scheduled switchover");

    // 4. DELETE /switchover cancels a scheduled one.
    scheduled_switchover_can_be_cancelled(&cluster, &target);

    // Every acknowledged write survived the three changes of leader.
    let outcomes = writer.stop();
    let acks = workload::acks_of(&outcomes);
    let primary = cluster.assert_converged(T).primary;
    let present = workload::ids_in(cluster.node(primary).pg_port(), TABLE).unwrap();
    let lost = workload::lost(&acks, &present);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    println!("{} acknowledged writes, none lost", acks.len());
}

fn scheduled_switchover_can_be_cancelled(cluster: &Cluster, leader: &str) {
    let li = cluster.index_of(leader).unwrap();
    let other = cluster.node((li + 1) % 3).name().to_string();
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(600);
    let r = post(
        cluster,
        li,
        "/switchover",
        &json!({"leader": leader, "candidate": other, "scheduled_at": at.to_rfc3339()}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let delete = |node: usize| {
        let url = format!("{}/switchover", cluster.node(node).api_url());
        http::send("DELETE", &url, None, None, REQUEST_TIMEOUT).expect("DELETE /switchover")
    };
    let r = delete(li);
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "scheduled switchover deleted")
    );
    let r = delete(li);
    assert_eq!(
        (r.status, r.body.trim()),
        (404, "no switchover is scheduled")
    );
    let key = format!("{}failover", cluster.key_prefix());
    let value = cluster.etcd().get(&key).unwrap().map(|kv| kv.value);
    assert_eq!(
        value.as_deref(),
        Some("{}"),
        "the failover key was not cleared"
    );
    assert_eq!(leader_name(cluster), leader);
}
