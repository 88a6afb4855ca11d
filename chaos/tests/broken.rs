//! The checker can fail: a run on a deliberately broken cluster must end
//! with `VERDICT: FAIL` (exit 1) naming exactly the violations injected.
//!
//! Two faults, both deterministic by construction:
//!
//! 1. `partition-primary` in asynchronous mode with `--require-no-loss`: the
//!    primary is cut off from etcd and from its replicas, but HAProxy and the
//!    probes still reach it, and it keeps acknowledging writes until its
//!    lease deadline (several seconds, by design) — writes no replica
//!    receives. After the failover they are gone from the final primary: the
//!    lost-writes check must fail.
//! 2. `rogue-promote` (test-only, `--unsafe-test-rogue-primary`): a replica's
//!    agent is frozen and its PostgreSQL promoted with `pg_promote()` while
//!    the real primary runs; the harness holds this until the direct-write
//!    probes have seen both nodes acknowledge writes, then lets the agent
//!    clean up. The split-brain check must fail and name both nodes.
//!
//! The other checks must still pass (the agent demotes the rogue node, the
//! cluster converges, `/primary` never answered 200 twice in a round: the
//! frozen agent answers nothing), so the failure is the checker's finding,
//! not a broken run.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden_tests::process::run_bounded;

const RUN_TIMEOUT: Duration = Duration::from_secs(360);

#[test]
fn a_broken_cluster_fails_with_split_brain_and_lost_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden-chaos"));
    cmd.args([
        "--faults",
        "partition-primary,rogue-promote",
        "--unsafe-test-rogue-primary",
        "--require-no-loss",
        "--seed",
        "3",
        "--converge-timeout",
        "90",
        "--out",
    ])
    .arg(&out);
    let r = run_bounded(&mut cmd, RUN_TIMEOUT).unwrap();
    let last = r.stdout.lines().last().unwrap_or("").to_string();
    println!("{last}");
    assert_eq!(
        r.code(),
        Some(1),
        "expected FAIL (exit 1):\n{}",
        r.describe()
    );
    assert!(last.starts_with("VERDICT: FAIL: "), "{}", r.describe());
    assert!(last.contains("lost writes: "), "{}", r.describe());
    assert!(last.contains("split brain: "), "{}", r.describe());

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let checks = &report["checks"];
    assert_eq!(report["verdict"]["pass"], false);
    // (a) writes acknowledged by the partitioned primary are missing.
    assert_eq!(checks["lost_writes"]["ok"], false, "{checks:#}");
    assert!(checks["lost_writes"]["lost"].as_u64().unwrap() > 0);
    // (b) the rogue node and the real primary overlap.
    let overlaps = checks["split_brain"]["overlaps"].as_array().unwrap();
    assert!(!overlaps.is_empty(), "{checks:#}");
    let faults = checks["faults"].as_array().unwrap();
    let rogue = &faults[1];
    assert_eq!(rogue["kind"], "rogue-promote");
    let pair = |o: &Value| {
        let mut p = [o["a"].as_u64().unwrap(), o["b"].as_u64().unwrap()];
        p.sort_unstable();
        p
    };
    // The rogue node is named first in the target: "nodeN (replica ...)".
    let rogue_name = rogue["target"].as_str().unwrap().split(' ').next().unwrap();
    let rogue_node = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n["name"] == rogue_name)
        .unwrap_or_else(|| panic!("{rogue_name} is not a node")) as u64;
    let mut expected = [rogue["old_primary"].as_u64().unwrap(), rogue_node];
    expected.sort_unstable();
    assert!(
        overlaps.iter().any(|o| pair(o) == expected),
        "no overlap between nodes {expected:?}: {overlaps:#?}"
    );
    let injected = rogue["injected"].as_u64().unwrap();
    assert!(
        overlaps
            .iter()
            .all(|o| o["from"].as_u64().unwrap() >= injected),
        "an overlap before the rogue promotion: {overlaps:#?}"
    );
    // The rest holds: the failures are the checker's findings.
    assert_eq!(checks["two_primaries"]["ok"], true, "{checks:#}");
    assert_eq!(checks["convergence"]["ok"], true, "{checks:#}");
    let events: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("events.json")).unwrap()).unwrap();
    let records = events["faults"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|f| f["error"].is_null()),
        "a fault was not injected as planned: {records:#?}"
    );
    let reasons = report["verdict"]["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("lost writes")
                || r.as_str().unwrap().starts_with("split brain")),
        "unexpected reasons: {reasons:#?}"
    );
}
