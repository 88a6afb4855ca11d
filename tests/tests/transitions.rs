//! `warden/transitions` on real processes: a 2-member cluster (with a `backup` section,
//! which `wardenctl dr-report` needs) goes through a switchover, then a failover (the
//! new leader's node killed with SIGKILL). Each promoted member appends its entry: the
//! key then holds both, oldest first, with plausible durations (the failover's
//! `detected_to_promoted` is positive and below ttl + loop_wait + a margin, and says
//! which ttl the old leader's key had), and
//! `wardenctl dr-report --format json` (and Markdown) shows them as the last switchover
//! and the last failover.
//!
//! A second test promotes a standby cluster (`promote-cluster --force` on site B while
//! site A runs, caught up): B's key holds a `cluster_promotion` from A's address with the
//! standby leader's lag just before.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use warden_tests::backupkit::{repository, start_formed, wardenctl, wardenctl_json};
use warden_tests::bins::wardenctl_command;
use warden_tests::process::run_bounded;
use warden_tests::workdir::WorkDir;
use warden_tests::{http, sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const STREAM_TIMEOUT: Duration = Duration::from_secs(90);
/// The record is written right after the promotion, on a task of its own.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// The `warden/transitions` list as stored (empty when absent).
fn transitions(cluster: &Cluster) -> Vec<Value> {
    cluster
        .etcd()
        .get(&format!("{}warden/transitions", cluster.key_prefix()))
        .ok()
        .flatten()
        .and_then(|kv| serde_json::from_str::<Value>(&kv.value).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn wait_entries(cluster: &Cluster, n: usize, timeout: Duration) -> Vec<Value> {
    wait_until(
        timeout,
        &format!("{n} entries in warden/transitions"),
        || {
            let list = transitions(cluster);
            (list.len() >= n).then_some(list)
        },
    )
}

fn fact<'a>(report: &'a Value, name: &str) -> &'a str {
    report["facts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["value"].as_str())
        .unwrap_or_else(|| panic!("no fact {name:?} in {report:#}"))
}

#[test]
fn switchover_and_failover_are_recorded_with_their_durations() {
    let work = WorkDir::temp().unwrap();
    let (_repo, yaml) = repository(work.path()).unwrap();
    let (mut cluster, p) = start_formed(2, yaml, FORM_TIMEOUT);
    cluster.wait_replicas_streaming(STREAM_TIMEOUT);
    let q = 1 - p;
    let (first, second) = (
        cluster.node(p).name().to_owned(),
        cluster.node(q).name().to_owned(),
    );
    // The survivor's config: wardenctl reads the DCS and the repository through it.
    let config = cluster.node(p).config_path();
    assert!(
        transitions(&cluster).is_empty(),
        "a bootstrap is no transition"
    );
    let ttl = cluster.ttl().as_secs_f64();
    let loop_wait = cluster.loop_wait().as_secs_f64();

    // 1. Switchover first -> second.
    let r = http::post_json(
        &format!("{}/switchover", cluster.node(p).api_url()),
        &json!({"leader": first, "candidate": second}),
    )
    .unwrap();
    assert_eq!(r.status, 200, "switchover: {}", r.body);
    let list = wait_entries(&cluster, 1, RECORD_TIMEOUT);
    let s = &list[0];
    println!("switchover recorded: {s}");
    assert_eq!(
        (&s["kind"], &s["from"], &s["to"]),
        (&json!("switchover"), &json!(first), &json!(second)),
        "{s}"
    );
    let took = s["detected_to_promoted"].as_f64().unwrap();
    assert!(took > 0.0 && took < 30.0, "switchover took {took} s: {s}");
    assert!(s["timeline"].as_u64().unwrap() >= 2, "{s}");

    // 2. Failover: the new leader's node killed outright; `first` must take over. Once
    // the new leader has cleared the request (its next turn): a request still naming
    // `first` as the leader keeps it out of the race.
    cluster.wait_replicas_streaming(STREAM_TIMEOUT);
    wait_until(RECORD_TIMEOUT, "the switchover request cleared", || {
        let key = format!("{}failover", cluster.key_prefix());
        let kv = cluster.etcd().get(&key).ok()?;
        kv.is_none_or(|kv| kv.value.trim().is_empty() || kv.value.trim() == "{}")
            .then_some(())
    });
    let t_kill = Instant::now();
    cluster
        .node_mut(q)
        .kill(Signal::SIGKILL)
        .expect("kill the node");
    let list = wait_entries(
        &cluster,
        2,
        Duration::from_secs_f64(3.0 * ttl) + RECORD_TIMEOUT,
    );
    let seen = t_kill.elapsed().as_secs_f64();
    let f = &list[1];
    println!("failover recorded {seen:.1} s after the kill: {f}");
    assert_eq!(list[0], *s, "the switchover's entry is kept");
    assert_eq!(
        (&f["kind"], &f["from"], &f["to"]),
        (&json!("failover"), &json!(second), &json!(first)),
        "{f}"
    );
    let took = f["detected_to_promoted"].as_f64().unwrap();
    assert!(
        took > 0.0 && took < ttl + loop_wait + 5.0,
        "failover took {took} s from detection: {f}"
    );
    // What the test saw bounds it: detection comes after the key expired.
    assert!(took < seen, "{took} s measured, {seen:.1} s since the kill");
    assert_eq!(f["ttl"].as_f64(), Some(ttl), "{f}");
    assert_eq!(
        f["timeline"].as_u64(),
        s["timeline"].as_u64().map(|t| t + 1),
        "{f}"
    );
    assert!(f["detected_at"].as_str().is_some() && f["at"].as_str().is_some());
    // /history names each timeline left once, in order: the failover's promotion left
    // the switchover's timeline (a replica's control file may still name the older one).
    let history = cluster
        .etcd()
        .get(&format!("{}history", cluster.key_prefix()))
        .expect("read /history")
        .expect("/history exists");
    let left: Vec<u64> = serde_json::from_str::<Vec<Value>>(&history.value)
        .expect("/history is a JSON list")
        .iter()
        .filter_map(|line| line[0].as_u64())
        .collect();
    assert_eq!(left, vec![1, 2], "/history: {}", history.value);

    // 3. The report shows both, and no region failover.
    let v = wardenctl_json(&config, &["dr-report", "--format", "json"]).expect("dr-report");
    assert_eq!(v["transitions"].as_array().map(Vec::len), Some(2), "{v:#}");
    let last_failover = fact(&v, "last failover");
    println!("last failover: {last_failover}");
    assert!(
        last_failover.starts_with(&format!("{second} to {first} (timeline "))
            && last_failover.contains("after it saw the leader key vacant at ")
            && last_failover.contains(&format!("ttl ({ttl}s)")),
        "{last_failover}"
    );
    let last_switchover = fact(&v, "last switchover");
    assert!(
        last_switchover.starts_with(&format!("{first} to {second} (timeline "))
            && last_switchover.contains("after the failover key named it"),
        "{last_switchover}"
    );
    assert_eq!(
        fact(&v, "last region failover (cluster promotion)"),
        "none recorded (warden/transitions)"
    );
    let md = wardenctl(&config, &["dr-report"]).unwrap();
    assert_eq!(md.code(), Some(0), "{}", md.describe());
    assert!(md.stdout.contains("| last failover | "), "{}", md.stdout);
}

#[test]
fn a_standby_cluster_promotion_is_recorded_with_its_lag() {
    let a = Cluster::start(ClusterSpec::new(1).scope("site-a").without_haproxy()).expect("A");
    a.wait_formed(FORM_TIMEOUT);
    let a_port = a.node(0).pg_port();
    let b = Cluster::start(
        ClusterSpec::new(1)
            .scope("site-b")
            .without_haproxy()
            .standby_of("127.0.0.1", a_port),
    )
    .expect("B");
    let b_name = b.node(0).name().to_owned();
    sql::execute(a_port, "CREATE TABLE t AS SELECT 1 AS x").unwrap();
    wait_until(FORM_TIMEOUT, "B's standby leader caught up with A", || {
        let p = b.node(0).patroni_json()?;
        let s = &p["standby_cluster"];
        (s["streaming"] == true
            && s["lag_bytes"] == 0
            && sql::is_in_recovery(b.node(0).pg_port()).ok()?)
        .then_some(())
    });
    assert!(transitions(&b).is_empty());
    let b_ctl = b.dir().join("ctl.yaml");
    b.write_ctl_config(&b_ctl).unwrap();
    let mut cmd = wardenctl_command().unwrap();
    cmd.arg("-c")
        .arg(&b_ctl)
        .args(["promote-cluster", "site-b", "--force"]);
    let out = run_bounded(&mut cmd, Duration::from_secs(120)).unwrap();
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let list = wait_entries(&b, 1, RECORD_TIMEOUT);
    let e = &list[0];
    println!("cluster promotion recorded: {e}");
    assert_eq!(
        (&e["kind"], &e["from"], &e["to"]),
        (
            &json!("cluster_promotion"),
            &json!(format!("127.0.0.1:{a_port}")),
            &json!(b_name)
        ),
        "{e}"
    );
    let took = e["detected_to_promoted"].as_f64().unwrap();
    assert!(took > 0.0 && took < 30.0, "{e}");
    // Caught up and idle: at most what A wrote since (its heartbeat-free idle WAL).
    assert!(e["lag_bytes"].as_u64().is_some_and(|b| b < 16 << 20), "{e}");
    assert!(e["lag_seconds"].as_f64().is_some(), "{e}");
    assert!(transitions(&a).is_empty(), "A recorded nothing");
}
