//! The CI smoke run: `warden-chaos --smoke` (a fixed seed: a primary kill, a
//! partition of the primary, a kill of the etcd raft leader and a switchover,
//! under the full workload) must end with `VERDICT: PASS` and exit 0, and
//! leave its report files behind.
//!
//! Bounded: the run is killed (with everything it started) after
//! [`RUN_TIMEOUT`]; it takes about a minute and a half on two cores.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_tests::process::run_bounded;

const RUN_TIMEOUT: Duration = Duration::from_secs(360);

#[test]
fn the_smoke_run_passes_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden-chaos"));
    cmd.arg("--smoke").arg("--out").arg(&out);
    let t = Instant::now();
    let r = run_bounded(&mut cmd, RUN_TIMEOUT).unwrap();
    let took = t.elapsed();
    let last = r.stdout.lines().last().unwrap_or("");
    println!("smoke run took {:.1} s: {last}", took.as_secs_f64());
    let logs = || {
        let md = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
        format!("{}\n--- summary.md ---\n{md}", r.describe())
    };
    assert_eq!(r.code(), Some(0), "smoke run did not pass:\n{}", logs());
    assert!(last.starts_with("VERDICT: PASS seed="), "{}", logs());
    assert!(last.contains("faults=4"), "{}", logs());

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"]["pass"], true, "{report:#}");
    assert_eq!(report["verdict_line"], last);
    let kinds: Vec<&str> = report["checks"]["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "kill-primary",
            "partition-primary",
            "kill-etcd-leader",
            "switchover"
        ]
    );
    // The primary kill and the switchover each moved the primary, and the
    // writer saw it through HAProxy.
    for f in report["checks"]["faults"].as_array().unwrap() {
        if f["kind"] == "switchover" || f["kind"] == "kill-primary" {
            assert!(
                f["failover"].as_u64().is_some(),
                "no failover measured: {f}"
            );
        }
    }
    assert!(report["counts"]["writes_acknowledged"].as_u64().unwrap() > 100);
    assert!(report["counts"]["probe_acknowledged"].as_u64().unwrap() > 10);

    let events: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("events.json")).unwrap()).unwrap();
    assert_eq!(events["nodes"].as_array().unwrap().len(), 3);
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    for lane in ["lane-node1", "lane-node2", "lane-node3", "lane-writes"] {
        assert!(svg.contains(lane), "{lane} missing from the timeline");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.starts_with("# Warden chaos run: PASS"), "{md}");
    for log in [
        "node1-warden.log",
        "node1-postgresql.log",
        "etcd1.log",
        "haproxy.log",
    ] {
        assert!(out.join("logs").join(log).is_file(), "logs/{log} missing");
    }
}
