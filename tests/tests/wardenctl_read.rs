//! `wardenctl` against a real 3-node cluster: it reads the DCS as patronictl does
//! (`list`, `show-config`, `history`), edits the config by compare-and-swap
//! (`edit-config`), refuses bad values, asks before `remove`, and reaches each
//! member's REST API (`version`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_tests::process::{run_bounded_input, RunOutput};
use warden_tests::wait::poll_until;
use warden_tests::{bins, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(30);

/// `wardenctl ARGS` with nothing from the caller's environment choosing a config.
fn wardenctl(args: &[&str], input: Option<&str>) -> RunOutput {
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    cmd.args(args);
    run_bounded_input(&mut cmd, input, RUN).expect("run wardenctl")
}

fn rows_of(out: &RunOutput) -> Option<Vec<Value>> {
    serde_json::from_str(out.stdout.trim()).ok()
}

/// One Leader and two streaming Replicas, all on one timeline.
fn healthy(rows: &[Value]) -> bool {
    let role = |r: &str| rows.iter().filter(|m| m["Role"] == r).count();
    rows.len() == 3
        && role("Leader") == 1
        && role("Replica") == 2
        && rows
            .iter()
            .filter(|m| m["Role"] == "Replica")
            .all(|m| m["State"] == "streaming" && m["Lag in MB"].is_u64())
        && rows
            .iter()
            .all(|m| m["TL"].is_u64() && m["TL"] == rows[0]["TL"])
}

fn config_key(cluster: &Cluster) -> (Value, i64) {
    let kv = cluster
        .etcd()
        .get(&format!("{}config", cluster.key_prefix()))
        .expect("read config key")
        .expect("config key exists");
    (
        serde_json::from_str(&kv.value).expect("config key is JSON"),
        kv.mod_revision,
    )
}

fn config_path(cluster: &Cluster) -> String {
    let p: &Path = &cluster.node(0).config_path();
    p.display().to_string()
}

#[test]
fn wardenctl_reads_and_edits_a_real_cluster() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let scope = cluster.scope().to_string();
    let cfg = config_path(&cluster);
    let dcs = format!("etcd3://{}", cluster.etcd().member(0).endpoint());

    // list from the agent's own (full) config file.
    let mut last = String::new();
    let rows = poll_until(T, || {
        let out = wardenctl(&["-c", &cfg, "list", "-f", "json"], None);
        last = out.describe();
        rows_of(&out).filter(|r| healthy(r))
    })
    .unwrap_or_else(|| {
        panic!(
            "wardenctl list never showed a leader and two streaming replicas\nlast: {last}\n{}",
            cluster.dump_logs()
        )
    });
    let primary = cluster.primary().expect("primary");
    let leader = rows.iter().find(|m| m["Role"] == "Leader").unwrap();
    assert_eq!(leader["Member"], primary.name(), "{last}");
    assert_eq!(
        leader["Host"],
        format!("127.0.0.1:{}", primary.pg_port()),
        "{last}"
    );
    assert!(
        rows.iter().all(|m| m["Cluster"] == scope.as_str()),
        "{last}"
    );

    // -d etcd3://... with CLUSTER_NAME, no config file; the table as a user sees it.
    let out = wardenctl(&["-d", &dcs, "list", &scope], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.starts_with(&format!("+ Cluster: {scope} (")),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("| Leader ").count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("| Lag in MB |"), "{}", out.stdout);
    let out = wardenctl(&["-d", &dcs, "topology", &scope], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout.matches("| + node").count(), 2, "{}", out.stdout);

    // show-config: the dynamic config as YAML.
    let out = wardenctl(&["-c", &cfg, "show-config"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.lines().any(|l| l == "ttl: 10"), "{}", out.stdout);

    edit_config_writes_by_compare_and_swap(&cluster, &cfg);

    // Bad usage is exit code 2.
    let out = wardenctl(&["-c", &cfg, "list", "--format", "xml"], None);
    assert_eq!(out.code(), Some(2), "{}", out.describe());

    // history: a freshly bootstrapped cluster has no promotions yet; the table and
    // the JSON list still come out.
    let out = wardenctl(&["-c", &cfg, "history"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout
            .contains("| TL | LSN | Reason | Timestamp | New Leader |"),
        "{}",
        out.stdout
    );
    let out = wardenctl(&["-c", &cfg, "history", "-f", "json"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(rows_of(&out).is_some(), "{}", out.describe());

    // version reaches every member's REST API.
    let out = wardenctl(&["-c", &cfg, "version", &scope], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    for n in cluster.nodes() {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{}: Patroni ", n.name()))
                    && l.contains("PostgreSQL 15.")),
            "{}",
            out.stdout
        );
    }

    remove_asks_and_deletes_only_its_cluster(&cluster, &cfg, &dcs, &scope);

    // An unreachable etcd is named, and the wait for it is bounded.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let out = wardenctl(
        &["-d", &format!("etcd3://127.0.0.1:{dead}"), "list", &scope],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{dead}")) && out.stderr.contains("unreachable"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// edit-config -s: written to the config key; a bad value is refused with the key's
/// name, and nothing is written.
fn edit_config_writes_by_compare_and_swap(cluster: &Cluster, cfg: &str) {
    let (before, rev0) = config_key(cluster);
    assert_ne!(before["loop_wait"], 3, "{before}");
    let out = wardenctl(
        &["-c", cfg, "edit-config", "-s", "loop_wait=3", "--force"],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("+loop_wait: 3"), "{}", out.stdout);
    let (after, rev1) = config_key(cluster);
    assert_eq!(after["loop_wait"], 3, "{after}");
    assert_eq!(after["ttl"], before["ttl"], "{after}");
    assert!(rev1 > rev0);

    // A bad value is refused with the key's name, and nothing is written.
    let out = wardenctl(
        &["-c", cfg, "edit-config", "-s", "ttl=abc", "--force"],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("ttl: expected an integer"),
        "{}",
        out.stderr
    );
    assert_eq!(
        config_key(cluster).1,
        rev1,
        "a refused edit wrote the config key"
    );
}

fn remove_asks_and_deletes_only_its_cluster(cluster: &Cluster, cfg: &str, dcs: &str, scope: &str) {
    // remove with a mistyped name refuses and deletes nothing.
    let prefix = cluster.key_prefix();
    let keys_before = cluster.etcd().get_prefix(&prefix).unwrap().len();
    let out = wardenctl(&["-c", cfg, "remove", scope], Some("not-the-name\n"));
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("do not match"), "{}", out.stderr);
    assert_eq!(
        cluster.etcd().get_prefix(&prefix).unwrap().len(),
        keys_before
    );
    assert!(cluster.leader_key().unwrap().is_some());

    // remove confirmed three times wipes exactly that cluster's prefix (a ghost one).
    let ghost = "/service/ghost/";
    cluster
        .etcd()
        .put(&format!("{ghost}config"), r#"{"ttl":30}"#)
        .unwrap();
    cluster
        .etcd()
        .put(&format!("{ghost}initialize"), "123")
        .unwrap();
    let out = wardenctl(
        &["-d", dcs, "remove", "ghost"],
        Some("ghost\nYes I am aware\n"),
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(cluster.etcd().get_prefix(ghost).unwrap().is_empty());
    assert_eq!(
        cluster.etcd().get_prefix(&prefix).unwrap().len(),
        keys_before
    );
}
