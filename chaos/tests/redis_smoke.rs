//! Redis mode, short: `warden-chaos --redis --sync --faults kill-primary,switchover`
//! (seed 14: the kill is held 15.6 s, past the lease ttl, so a replica takes over)
//! must PASS — no `WAIT`-confirmed write lost across a failover and a switchover, no
//! two nodes accepting `SET`s at once, no two 200s on `/primary`, converged after each —
//! and its report must show a Redis run whose writes moved to another node both times.
//!
//! Bounded: the run is killed (with everything it started) after [`RUN_TIMEOUT`]; it
//! takes about 45 s on two cores.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_tests::process::run_bounded;

const RUN_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn a_redis_failover_and_switchover_pass_in_synchronous_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden-chaos"));
    cmd.args([
        "--redis",
        "--sync",
        "--seed",
        "14",
        "--faults",
        "kill-primary,switchover",
    ])
    .arg("--out")
    .arg(&out);
    let t = Instant::now();
    let r = run_bounded(&mut cmd, RUN_TIMEOUT).unwrap();
    let last = r.stdout.lines().last().unwrap_or("");
    println!(
        "redis chaos run took {:.1} s: {last}",
        t.elapsed().as_secs_f64()
    );
    let logs = || {
        let md = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
        format!("{}\n--- summary.md ---\n{md}", r.describe())
    };
    assert_eq!(
        r.code(),
        Some(0),
        "redis chaos run did not pass:\n{}",
        logs()
    );
    assert!(
        last.starts_with("VERDICT: PASS seed=14 mode=sync engine=redis faults=2 "),
        "{}",
        logs()
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["redis"], true, "{report:#}");
    assert_eq!(report["checks"]["lost_writes"]["required"], true);
    assert_eq!(report["checks"]["lost_writes"]["lost"], 0);
    assert_eq!(report["checks"]["lost_writes"]["probe_lost"], 0);
    for f in report["checks"]["faults"].as_array().unwrap() {
        assert!(
            f["failover"].as_u64().is_some() && f["new_primary"] != f["old_primary"],
            "writes did not move to another node: {f}"
        );
    }
    assert!(report["counts"]["writes_acknowledged"].as_u64().unwrap() > 100);
    assert!(report["counts"]["probe_acknowledged"].as_u64().unwrap() > 10);
    assert!(
        out.join("logs").join("node1-redis.log").is_file(),
        "redis-server's log missing"
    );
}
