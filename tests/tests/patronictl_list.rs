//! Interoperability: Patroni's own `patronictl` (from PyPI) reads the etcd
//! keys Warden writes and shows the cluster correctly.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden_tests::process::{run_bounded, RunOutput};
use warden_tests::wait::poll_until;
use warden_tests::{bins, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

fn patronictl(cluster: &Cluster, dcs: &str, json: bool) -> RunOutput {
    let ctl = bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    // An empty config of our own, so no user patronictl.yaml applies.
    let cfg = cluster.dir().join("patronictl.yaml");
    std::fs::write(&cfg, "{}\n").expect("write patronictl.yaml");
    let scope = cluster.scope();
    let mut cmd = Command::new(ctl);
    cmd.env("PATRONICTL_CONFIG_FILE", &cfg);
    cmd.args(["-d", dcs, "list", scope]);
    if json {
        cmd.args(["-f", "json"]);
    }
    run_bounded(&mut cmd, Duration::from_secs(30)).expect("run patronictl")
}

/// The rows if they show one Leader and two streaming Replicas, all on the
/// same timeline, replicas with zero receive and replay lag.
fn healthy(rows: &[Value]) -> bool {
    let role = |r: &str| rows.iter().filter(|m| m["Role"] == r).count();
    let tl = rows[0]["TL"].as_u64();
    rows.len() == 3
        && role("Leader") == 1
        && role("Replica") == 2
        && tl.is_some()
        && rows.iter().all(|m| m["TL"].as_u64() == tl)
        && rows.iter().filter(|m| m["Role"] == "Replica").all(|m| {
            m["State"] == "streaming"
                && m["Receive Lag"].as_u64() == Some(0)
                && m["Replay Lag"].as_u64() == Some(0)
        })
}

#[test]
fn patronictl_list_shows_leader_and_two_streaming_replicas() {
    // Fail (not skip) early with a clear message if patronictl is missing.
    bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let dcs = format!("etcd3://{}", cluster.etcd().member(0).endpoint());

    let mut last = String::new();
    let rows = poll_until(T, || {
        let out = patronictl(&cluster, &dcs, true);
        last = out.describe();
        let rows: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
        healthy(&rows).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "patronictl list -f json never showed 1 Leader + 2 streaming Replicas on one timeline with lag 0\n\
             last output: {last}\n{}",
            cluster.dump_logs()
        )
    });
    let leader = rows.iter().find(|m| m["Role"] == "Leader").unwrap();
    let primary = cluster.primary().expect("primary");
    assert_eq!(leader["Member"], primary.name(), "{last}");
    assert_eq!(
        leader["Host"],
        format!("127.0.0.1:{}", primary.pg_port()),
        "{last}"
    );
    assert_eq!(leader["State"], "running", "{last}");
    for m in &rows {
        assert_eq!(m["Cluster"], cluster.scope(), "{last}");
    }

    // The default table too, as a user sees it.
    let out = patronictl(&cluster, &dcs, false);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("| Leader "), 1, "{}", out.stdout);
    assert_eq!(count("| Replica "), 2, "{}", out.stdout);
    assert_eq!(count("| streaming "), 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("Cluster: {}", cluster.scope())),
        "{}",
        out.stdout
    );
}
